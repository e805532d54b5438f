//! Installing and removing packages with spkctl, as a user at a shell would.

use spk_tests::{Env, Package, Repo};

fn plasma() -> Package {
    Package::new("plasma", "6.6.5-1")
        .description("KDE Plasma 6.6.5 desktop")
        .file(
            "usr/bin/plasmashell",
            "#!/bin/sh\necho plasmashell\n",
            0o755,
        )
        .file(
            "usr/share/plasma/theme.conf",
            "[Theme]\nname=Breeze\n",
            0o644,
        )
        .dir("usr/share/plasma/private", 0o700)
        .file("usr/share/plasma/private/token", "secret\n", 0o600)
        .symlink("usr/bin/plasma", "plasmashell")
        .hardlink("usr/bin/startplasma", "usr/bin/plasmashell")
}

fn qt6() -> Package {
    Package::new("qt6", "6.10.1-1")
        .system()
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
        .file("usr/share/qt6/qt.conf", "[Paths]\n", 0o644)
        .symlink("usr/lib/libQt6Core.so", "libQt6Core.so.6")
}

fn mesa() -> Package {
    Package::new("mesa-graphics", "25.3.0-1")
        .system()
        .file("usr/lib/libGL.so.1", "mesa gl\n", 0o755)
        .file("usr/share/mesa/drirc", "<driconf/>\n", 0o644)
}

#[tokio::test]
async fn install_puts_files_modes_symlinks_and_hard_links_on_disk() {
    let repo = Repo::new().with(plasma());
    let env = Env::new(&repo).await;

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file(
        "usr/bin/plasmashell",
        b"#!/bin/sh\necho plasmashell\n",
        0o755,
    );
    env.assert_file(
        "usr/share/plasma/theme.conf",
        b"[Theme]\nname=Breeze\n",
        0o644,
    );
    env.assert_dir("usr/share/plasma/private", 0o700);
    env.assert_file("usr/share/plasma/private/token", b"secret\n", 0o600);
    env.assert_symlink("usr/bin/plasma", "plasmashell");
    env.assert_hard_linked("usr/bin/startplasma", "usr/bin/plasmashell");
    assert!(
        env.cached(&repo.get("plasma").sha256),
        "the verified tarball is kept in var/cache/spk/<sha256>.tar.xz"
    );
}

#[tokio::test]
async fn install_accepts_archives_whose_entries_start_with_dot_slash() {
    let kernel = Package::new("kernel-modules", "6.18.1-1")
        .system()
        .dot_prefixed()
        .file(
            "lib/modules/6.18.1/modules.dep",
            "kernel/fs/ext4.ko:\n",
            0o644,
        )
        .file("usr/bin/depmod-wrapper", "#!/bin/sh\n", 0o755);
    let env = Env::new(&Repo::new().with(kernel)).await;

    env.spkctl(&["install", "kernel-modules"])
        .await
        .assert_success();

    env.assert_file(
        "lib/modules/6.18.1/modules.dep",
        b"kernel/fs/ext4.ko:\n",
        0o644,
    );
    env.assert_file("usr/bin/depmod-wrapper", b"#!/bin/sh\n", 0o755);
}

#[tokio::test]
async fn install_several_packages_in_one_call() {
    let repo = Repo::new().with(plasma()).with(qt6()).with(mesa());
    let env = Env::new(&repo).await;

    env.spkctl(&["install", "qt6", "mesa-graphics"])
        .await
        .assert_success();

    env.assert_file("usr/lib/libQt6Core.so.6", b"qt core\n", 0o755);
    env.assert_symlink("usr/lib/libQt6Core.so", "libQt6Core.so.6");
    env.assert_file("usr/lib/libGL.so.1", b"mesa gl\n", 0o755);
    env.assert_file("usr/share/mesa/drirc", b"<driconf/>\n", 0o644);
    env.assert_absent("usr/bin/plasmashell");
    let mut fetched = env.server.tarball_gets();
    fetched.sort();
    assert_eq!(
        fetched,
        ["/repo/mesa-graphics.tar.xz", "/repo/qt6.tar.xz"],
        "each requested package is downloaded exactly once, nothing else"
    );
}

#[tokio::test]
async fn remove_deletes_the_package_files_and_leaves_other_packages_alone() {
    let repo = Repo::new().with(plasma()).with(qt6());
    let env = Env::new(&repo).await;
    env.spkctl(&["install", "qt6"]).await.assert_success();
    let with_qt6_only = env.snapshot();
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file(
        "usr/bin/plasmashell",
        b"#!/bin/sh\necho plasmashell\n",
        0o755,
    );

    env.spkctl(&["remove", "plasma"]).await.assert_success();

    env.assert_absent("usr/bin/plasmashell");
    env.assert_absent("usr/bin/plasma");
    env.assert_absent("usr/bin/startplasma");
    env.assert_absent("usr/share/plasma");
    // Back to exactly the root with qt6 alone: its files neither changed nor rewritten,
    // plasma's now-empty directories gone, except usr/bin: part of every system's skeleton,
    // which spk never removes once it exists.
    assert_eq!(
        with_qt6_only.identity_diff(&env.snapshot()),
        ["+ usr/bin (dir 755)"],
        "the root differs from the one with qt6 alone in more than usr/bin"
    );
}

#[tokio::test]
async fn install_of_an_unknown_package_fails_and_changes_nothing() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    let before = env.snapshot();

    let run = env.spkctl(&["install", "no-such-package"]).await;

    run.assert_code(1);
    assert!(
        run.error_line()
            .contains("unknown package 'no-such-package'"),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
}

#[tokio::test]
async fn base_system_is_refused_while_the_release_does_not_list_it() {
    let env = Env::new(&Repo::new().with(plasma()).with(qt6())).await;
    let before = env.snapshot();

    let run = env.spkctl(&["install", "base-system"]).await;

    run.assert_code(1);
    let line = run.error_line();
    assert!(
        line.contains("base-system") && line.contains("broken"),
        "{run}"
    );
    let json = env.spkctl_json(&["install", "base-system"]).await;
    json.assert_code(1);
    assert_eq!(
        json.json()["error-name"],
        "xyz.smech.Spk1.Error.NotAvailable",
        "{json}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
}

#[tokio::test]
async fn a_file_owned_by_another_package_is_a_conflict() {
    let breeze = Package::new("breeze", "6.6.5-1").file(
        "usr/share/icons/default/index.theme",
        "Inherits=breeze\n",
        0o644,
    );
    let oxygen = Package::new("oxygen", "6.6.5-1")
        .file("usr/share/icons/oxygen/index.theme", "oxygen\n", 0o644)
        .file(
            "usr/share/icons/default/index.theme",
            "Inherits=oxygen\n",
            0o644,
        );
    let env = Env::new(&Repo::new().with(breeze).with(oxygen)).await;
    env.spkctl(&["install", "breeze"]).await.assert_success();
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "oxygen"]).await;

    run.assert_code(1);
    assert_eq!(
        run.json()["error-name"],
        "xyz.smech.Spk1.Error.Conflict",
        "{run}"
    );
    assert!(
        run.json()["error-message"]
            .as_str()
            .is_some_and(|m| m.contains("usr/share/icons/default/index.theme")),
        "the message names the contested file:\n{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_file(
        "usr/share/icons/default/index.theme",
        b"Inherits=breeze\n",
        0o644,
    );
}
