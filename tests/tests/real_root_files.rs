//! Files spk does not own: an existing file no package owns is a conflict naming every such
//! path, and the root stays as it was; a byte-identical one (or a symlink with the same target)
//! is adopted silently; with `--adopt` (or `--force-overwrite`) files outside `etc/` are
//! replaced and the admin's files under `etc/` are kept, the package's version beside them as
//! `FILE.spknew`. A root installed by the old tool (every file present, no database) becomes
//! managed with `spkctl install --adopt`.

use std::collections::HashMap;

use spk_tests::client::{Notice, TRANSACTION_TIMEOUT};
use spk_tests::{Env, Package, Repo};

const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";

/// base-files: a hostname, a tool, an editor symlink and a readme.
fn base_files() -> Package {
    Package::new("base-files", "1")
        .file("etc/hostname", "smechos\n", 0o644)
        .file("usr/bin/tool", "#!/bin/sh\necho shipped\n", 0o755)
        .symlink("usr/bin/editor", "vim")
        .file("usr/share/base-files/readme", "SmechOS base files\n", 0o644)
}

fn repo() -> Repo {
    Repo::new().with(base_files())
}

#[tokio::test]
async fn unowned_files_that_differ_are_a_conflict_and_nothing_changes() {
    let env = Env::builder(&repo())
        .file("etc/hostname", "myhost\n", 0o644)
        .file("usr/bin/tool", "#!/bin/sh\necho the admin's own\n", 0o755)
        .symlink("usr/bin/editor", "nano")
        .start()
        .await;
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "base-files"]).await;

    run.assert_code(1);
    let expected = "base-files: files on disk that no package owns would be overwritten: \
                    etc/hostname, usr/bin/editor, usr/bin/tool \
                    (install with --adopt to take them over)";
    assert_eq!(run.json()["state"], "failed", "{run}");
    assert_eq!(run.json()["error-name"], CONFLICT, "{run}");
    assert_eq!(run.json()["error-message"], expected, "{run}");
    before.assert_untouched(&env.snapshot());
    env.assert_staging_clean();
    assert_eq!(env.installed_version("base-files").await, None);

    // What a user at a terminal sees.
    let run = env.spkctl(&["install", "base-files"]).await;
    run.assert_code(1);
    assert_eq!(run.error_line(), format!("error: {expected}"), "{run}");
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn a_conflict_lists_twenty_paths_and_counts_the_rest() {
    let mut generated = Package::new("generated", "1");
    let mut builder = Env::builder(&Repo::new());
    for i in 0..23 {
        let path = format!("usr/share/generated/file-{i:02}");
        generated = generated.file(&path, format!("shipped {i}\n"), 0o644);
        builder = builder.file(&path, format!("local {i}\n"), 0o644);
    }
    let env = builder.start().await;
    env.publish(&Repo::new().with(generated));
    let before = env.snapshot();

    let run = env.spkctl(&["install", "generated"]).await;

    run.assert_code(1);
    let listed: Vec<String> = (0..20)
        .map(|i| format!("usr/share/generated/file-{i:02}"))
        .collect();
    assert_eq!(
        run.error_line(),
        format!(
            "error: generated: files on disk that no package owns would be overwritten: {}, … \
             and 3 more (install with --adopt to take them over)",
            listed.join(", ")
        ),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_staging_clean();
}

#[tokio::test]
async fn identical_unowned_files_are_adopted_and_removed_with_the_package() {
    let env = Env::builder(&repo())
        // Same content, another mode: the package's mode is applied.
        .file("etc/hostname", "smechos\n", 0o600)
        .file("usr/bin/tool", "#!/bin/sh\necho shipped\n", 0o755)
        .symlink("usr/bin/editor", "vim")
        .start()
        .await;

    let run = env.spkctl(&["install", "base-files"]).await;

    run.assert_success();
    assert_eq!(run.notes(), Vec::<&str>::new(), "{run}");
    env.assert_files_are(&[&base_files()], &[]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();

    // Adopted files are owned: removing the package removes them.
    env.spkctl(&["remove", "base-files"]).await.assert_success();
    env.assert_absent("etc/hostname");
    env.assert_absent("usr/bin/tool");
    env.assert_absent("usr/bin/editor");
    env.assert_files_are(&[], &[]);
}

/// The admin's hostname and tool, which base-files would overwrite.
fn admins_root(repo: &Repo) -> spk_tests::RootBuilder {
    Env::builder(repo)
        .file("etc/hostname", "myhost\n", 0o644)
        .file("usr/bin/tool", "#!/bin/sh\necho the admin's own\n", 0o700)
}

/// What `--adopt` and `--force-overwrite` do with base-files on [`admins_root`].
async fn adopting_keeps_etc_and_replaces_the_rest(flag: &str) {
    let env = admins_root(&repo()).start().await;

    let run = env.spkctl(&["install", flag, "base-files"]).await;

    run.assert_success();
    let notes = run.notes();
    assert_eq!(notes.len(), 1, "{run}");
    assert!(
        notes[0].starts_with("note: base-files: ")
            && notes[0].contains("etc/hostname")
            && notes[0].contains("etc/hostname.spknew"),
        "{run}"
    );
    // Under etc/ the admin's file stays and the package's goes beside it.
    env.assert_file("etc/hostname", b"myhost\n", 0o644);
    env.assert_file("etc/hostname.spknew", b"smechos\n", 0o644);
    // Outside etc/ the package's version replaces the admin's.
    env.assert_file("usr/bin/tool", b"#!/bin/sh\necho shipped\n", 0o755);
    let mut shipped = base_files();
    shipped.entries.retain(|e| e.path() != "etc/hostname");
    env.assert_files_are(&[&shipped], &["etc/hostname", "etc/hostname.spknew"]);
    // The kept hostname is the admin's changed configuration, not damage.
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_success();
    assert!(
        verify.stdout.lines().any(|l| l.starts_with("base-files: ")
            && l.contains("etc/hostname: configuration file changed locally (")),
        "{verify}"
    );
    env.assert_staging_clean();

    // It counts as owned: on remove, the admin's hostname is saved, not lost.
    let run = env.spkctl(&["remove", "base-files"]).await;
    run.assert_success();
    assert_eq!(
        run.notes(),
        ["note: base-files: etc/hostname was changed locally; saved as etc/hostname.spksave"],
        "{run}"
    );
    env.assert_absent("etc/hostname");
    env.assert_file("etc/hostname.spksave", b"myhost\n", 0o644);
    env.assert_absent("usr/bin/tool");
}

#[tokio::test]
async fn with_adopt_an_unowned_config_is_kept_and_the_new_one_goes_beside_it() {
    adopting_keeps_etc_and_replaces_the_rest("--adopt").await;
}

#[tokio::test]
async fn force_overwrite_adopts_unowned_files_as_adopt_does() {
    adopting_keeps_etc_and_replaces_the_rest("--force-overwrite").await;
}

#[tokio::test]
async fn with_adopt_an_unowned_file_outside_etc_is_replaced() {
    let tools = Package::new("tools", "1")
        .file("usr/bin/tool", "#!/bin/sh\necho shipped\n", 0o755)
        .symlink("usr/bin/editor", "vim");
    let env = Env::builder(&Repo::new().with(tools.clone()))
        .file("usr/bin/tool", "#!/bin/sh\necho the admin's own\n", 0o700)
        .symlink("usr/bin/editor", "nano")
        .start()
        .await;

    let run = env.spkctl(&["install", "--adopt", "tools"]).await;

    run.assert_success();
    assert_eq!(run.notes(), Vec::<&str>::new(), "{run}");
    env.assert_files_are(&[&tools], &[]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();

    env.spkctl(&["remove", "tools"]).await.assert_success();
    env.assert_files_are(&[], &[]);
}

#[tokio::test]
async fn an_upgrade_onto_an_unowned_file_needs_adopt() {
    let v1 = Package::new("tools", "1").file("usr/bin/tool", "#!/bin/sh\necho 1\n", 0o755);
    let v2 = Package::new("tools", "2")
        .file("usr/bin/tool", "#!/bin/sh\necho 2\n", 0o755)
        .file("usr/bin/helper", "#!/bin/sh\necho helper 2\n", 0o755);
    let env = Env::builder(&Repo::new().with(v1))
        .file(
            "usr/bin/helper",
            "#!/bin/sh\necho the admin's helper\n",
            0o755,
        )
        .start()
        .await;
    env.spkctl(&["install", "tools"]).await.assert_success();
    env.publish(&Repo::new().with(v2.clone()));
    let before = env.snapshot();

    let run = env.spkctl(&["upgrade"]).await;

    run.assert_code(1);
    let line = run.error_line();
    assert!(
        line.starts_with(
            "error: tools: files on disk that no package owns would be overwritten: \
             usr/bin/helper ("
        ) && line.contains("--adopt"),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    assert_eq!(env.installed_version("tools").await.as_deref(), Some("1"));
    env.assert_staging_clean();

    env.spkctl(&["upgrade", "--adopt"]).await.assert_success();

    env.assert_files_are(&[&v2], &[]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}

#[tokio::test]
async fn the_adopt_option_on_dbus_reports_the_spknew_file() {
    let env = admins_root(&repo()).start().await;
    let client = env.client().await;
    let mut watch = client.watch().await;

    let refused = client
        .install(&["base-files"], HashMap::new())
        .await
        .expect("Install");
    let log = watch
        .until_finished(refused.as_str(), TRANSACTION_TIMEOUT)
        .await;
    assert_eq!(log.finished.0, "failed", "{log:#?}");
    assert_eq!(log.finished.1, CONFLICT, "{log:#?}");

    let options = HashMap::from([("adopt", zbus::zvariant::Value::from(true))]);
    let adopted = client
        .install(&["base-files"], options)
        .await
        .expect("Install");
    let log = watch
        .until_finished(adopted.as_str(), TRANSACTION_TIMEOUT)
        .await;

    assert_eq!(log.finished.0, "finished", "{log:#?}");
    assert_eq!(log.notices.len(), 1, "{log:#?}");
    let notice = &log.notices[0];
    assert_eq!(
        (
            notice.package.as_str(),
            notice.kind.as_str(),
            notice.path.as_str()
        ),
        ("base-files", "spknew", "etc/hostname"),
        "{log:#?}"
    );
    assert!(notice.message.contains("etc/hostname.spknew"), "{log:#?}");
    assert_eq!(client.notices(adopted.as_str()).await, log.notices);
    assert_eq!(client.notices(refused.as_str()).await, Vec::<Notice>::new());
    env.assert_file("etc/hostname", b"myhost\n", 0o644);
    env.assert_file("etc/hostname.spknew", b"smechos\n", 0o644);
}

/// plasma as the old tool left it on a machine, and as the repository has it.
fn plasma() -> Package {
    Package::new("plasma", "6.2-1")
        .file("usr/bin/plasmashell", "#!/bin/sh\necho plasma 6.2\n", 0o755)
        .symlink("usr/bin/plasma", "plasmashell")
        .file("usr/lib/plasma/libplasma.so.6", "plasma library\n", 0o644)
        .file("usr/share/plasma/theme", "breeze\n", 0o644)
        .file("etc/plasma/plasmarc", "[General]\nlock=true\n", 0o644)
}

fn kwin() -> Package {
    Package::new("kwin", "6.2-1")
        .file("usr/bin/kwin", "#!/bin/sh\necho kwin\n", 0o755)
        .file("etc/kwinrc", "[Compositing]\nEnabled=true\n", 0o644)
}

#[tokio::test]
async fn a_root_installed_by_the_old_tool_becomes_managed_with_install_adopt() {
    let repo = Repo::new().with(plasma()).with(kwin());
    // Every file is there (no database): most as shipped, the admin changed the lock setting
    // and kwin's config, and a hot-fix replaced libplasma.
    let env = Env::builder(&repo)
        .file("usr/bin/plasmashell", "#!/bin/sh\necho plasma 6.2\n", 0o755)
        .symlink("usr/bin/plasma", "plasmashell")
        .file(
            "usr/lib/plasma/libplasma.so.6",
            "hot-fixed library\n",
            0o644,
        )
        .file("usr/share/plasma/theme", "breeze\n", 0o644)
        .file("etc/plasma/plasmarc", "[General]\nlock=false\n", 0o644)
        .file("usr/bin/kwin", "#!/bin/sh\necho kwin\n", 0o755)
        .file("etc/kwinrc", "[Compositing]\nEnabled=false\n", 0o644)
        .start()
        .await;
    let before = env.snapshot();

    // Without --adopt: refused, naming the changed files, and nothing happens.
    let run = env.spkctl(&["install", "plasma", "kwin"]).await;
    run.assert_code(1);
    assert!(
        run.error_line()
            .contains("files on disk that no package owns would be overwritten"),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());

    let run = env.spkctl(&["install", "--adopt", "plasma", "kwin"]).await;

    run.assert_success();
    let mut notes = run.notes();
    notes.sort();
    assert_eq!(notes.len(), 2, "{run}");
    assert!(
        notes[0].starts_with("note: kwin: ") && notes[0].contains("etc/kwinrc.spknew"),
        "{run}"
    );
    assert!(
        notes[1].starts_with("note: plasma: ") && notes[1].contains("etc/plasma/plasmarc.spknew"),
        "{run}"
    );
    env.assert_file("etc/plasma/plasmarc", b"[General]\nlock=false\n", 0o644);
    env.assert_file(
        "etc/plasma/plasmarc.spknew",
        b"[General]\nlock=true\n",
        0o644,
    );
    env.assert_file("etc/kwinrc", b"[Compositing]\nEnabled=false\n", 0o644);
    env.assert_file("etc/kwinrc.spknew", b"[Compositing]\nEnabled=true\n", 0o644);
    env.assert_file("usr/lib/plasma/libplasma.so.6", b"plasma library\n", 0o644);
    // Identical files were adopted as they are.
    env.assert_file(
        "usr/bin/plasmashell",
        b"#!/bin/sh\necho plasma 6.2\n",
        0o755,
    );
    env.assert_symlink("usr/bin/plasma", "plasmashell");
    env.assert_file("usr/share/plasma/theme", b"breeze\n", 0o644);
    env.assert_file("usr/bin/kwin", b"#!/bin/sh\necho kwin\n", 0o755);
    env.assert_files_are(
        &[],
        &[
            "etc/kwinrc",
            "etc/kwinrc.spknew",
            "etc/plasma/plasmarc",
            "etc/plasma/plasmarc.spknew",
            "usr/bin/kwin",
            "usr/bin/plasma",
            "usr/bin/plasmashell",
            "usr/lib/plasma/libplasma.so.6",
            "usr/share/plasma/theme",
        ],
    );
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_success();
    let config_lines: Vec<&str> = verify
        .stdout
        .lines()
        .filter(|l| l.contains(": configuration file changed locally ("))
        .collect();
    assert_eq!(config_lines.len(), 2, "{verify}");
    let list = env.spkctl_json(&["list", "--installed"]).await;
    list.assert_success();
    assert_eq!(list.json().as_array().map(Vec::len), Some(2), "{list}");
    env.assert_staging_clean();
}
