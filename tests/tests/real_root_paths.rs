//! Paths as the root resolves them, and paths that change type. On a merged-/usr root
//! (`lib -> usr/lib`, `bin -> usr/bin`, `sbin -> usr/bin`) `lib/libfoo.so.1` and
//! `usr/lib/libfoo.so.1` are one file: two packages cannot both own it, and removing one never
//! removes the other's. Within one package, a directory that becomes a symlink or a file (and
//! back) upgrades cleanly to exactly what a fresh install of the new version gives.

use spk_tests::{Env, Package, Repo};

const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";

/// A merged-/usr root: the top-level `lib`, `bin` and `sbin` are symlinks into `usr`.
fn merged_usr(repo: &Repo) -> spk_tests::RootBuilder {
    Env::builder(repo)
        .dir("usr/bin", 0o755)
        .dir("usr/lib", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("bin", "usr/bin")
        .symlink("sbin", "usr/bin")
}

#[track_caller]
fn assert_merged_usr(env: &Env) {
    env.assert_symlink("lib", "usr/lib");
    env.assert_symlink("bin", "usr/bin");
    env.assert_symlink("sbin", "usr/bin");
    env.assert_dir("usr/bin", 0o755);
    env.assert_dir("usr/lib", 0o755);
}

/// Package `a` ships `lib/libfoo.so.1`, package `b` ships `usr/lib/libfoo.so.1`.
fn a_and_b() -> Repo {
    Repo::new()
        .with(Package::new("a", "1").file("lib/libfoo.so.1", "libfoo of a\n", 0o644))
        .with(Package::new("b", "1").file("usr/lib/libfoo.so.1", "libfoo of b\n", 0o644))
}

#[tokio::test]
async fn a_file_under_lib_and_under_usr_lib_is_one_file_that_one_package_owns() {
    let env = merged_usr(&a_and_b()).start().await;
    env.spkctl(&["install", "a"]).await.assert_success();
    assert_merged_usr(&env);
    env.assert_file("usr/lib/libfoo.so.1", b"libfoo of a\n", 0o644);
    env.spkctl(&["verify"]).await.assert_success();
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "b"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], CONFLICT, "{run}");
    assert_eq!(
        run.json()["error-message"],
        "b: usr/lib/libfoo.so.1 is owned by package a",
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_staging_clean();
    assert_eq!(env.installed_version("b").await, None);
}

#[tokio::test]
async fn the_other_spelling_installed_second_is_a_conflict_too() {
    let env = merged_usr(&a_and_b()).start().await;
    env.spkctl(&["install", "b"]).await.assert_success();
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "a"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], CONFLICT, "{run}");
    let message = run.json()["error-message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("a: ")
            && message.contains("libfoo.so.1")
            && message.ends_with(" is owned by package b"),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    assert_merged_usr(&env);
    env.assert_staging_clean();
}

#[tokio::test]
async fn removing_one_spelling_never_removes_the_other_packages_file() {
    let env = merged_usr(&a_and_b()).start().await;
    env.spkctl(&["install", "a"]).await.assert_success();
    // b takes the file over, as the user asked.
    env.spkctl(&["install", "--force-overwrite", "b"])
        .await
        .assert_success();
    env.assert_file("usr/lib/libfoo.so.1", b"libfoo of b\n", 0o644);

    env.spkctl(&["remove", "a"]).await.assert_success();

    env.assert_file("usr/lib/libfoo.so.1", b"libfoo of b\n", 0o644);
    assert_merged_usr(&env);
    assert_eq!(env.installed_version("a").await, None);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();

    env.spkctl(&["remove", "b"]).await.assert_success();
    env.assert_absent("usr/lib/libfoo.so.1");
    assert_merged_usr(&env);
}

#[tokio::test]
async fn paths_through_the_roots_symlinks_land_in_usr_and_leave_the_symlinks_alone() {
    let tools = Package::new("tools", "1")
        .file("bin/tool", "#!/bin/sh\necho tool\n", 0o755)
        .file("sbin/toold", "#!/bin/sh\necho daemon\n", 0o755)
        .file("lib/libtool.so.1", "libtool\n", 0o644);
    let env = merged_usr(&Repo::new().with(tools)).start().await;

    env.spkctl(&["install", "tools"]).await.assert_success();

    assert_merged_usr(&env);
    env.assert_file("usr/bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    env.assert_file("usr/bin/toold", b"#!/bin/sh\necho daemon\n", 0o755);
    env.assert_file("usr/lib/libtool.so.1", b"libtool\n", 0o644);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();

    env.spkctl(&["remove", "tools"]).await.assert_success();

    assert_merged_usr(&env);
    env.assert_dir_holds("usr/bin", &[]);
    env.assert_dir_holds("usr/lib", &[]);
    env.spkctl(&["verify"]).await.assert_success();
}

/// Install `old`, upgrade to `new` (same name), and expect exactly what a fresh install of
/// `new` gives, with verify clean.
async fn upgrade_changes_type(old: Package, new: Package) {
    let name = old.name.clone();
    let env = Env::builder(&Repo::new().with(old)).start().await;
    env.spkctl(&["install", &name]).await.assert_success();
    env.publish(&Repo::new().with(new.clone()));

    env.spkctl(&["upgrade"]).await.assert_success();

    assert_eq!(
        env.installed_version(&name).await.as_deref(),
        Some(new.version.as_str())
    );
    env.assert_files_are(&[&new], &[]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
    let fresh = Env::builder(&Repo::new().with(new)).start().await;
    fresh.spkctl(&["install", &name]).await.assert_success();
    let diff = fresh.snapshot().content_diff(&env.snapshot());
    assert!(
        diff.is_empty(),
        "the upgraded root differs from a fresh install:\n{}",
        diff.join("\n")
    );
}

#[tokio::test]
async fn a_directory_that_becomes_a_symlink_upgrades_cleanly() {
    upgrade_changes_type(
        Package::new("app", "1")
            .file("usr/share/app/data/a", "a 1\n", 0o644)
            .file("usr/share/app/data/b", "b 1\n", 0o644),
        Package::new("app", "2")
            .symlink("usr/share/app/data", "../app-data")
            .file("usr/share/app-data/a", "a 2\n", 0o644),
    )
    .await;
}

#[tokio::test]
async fn a_symlink_that_becomes_a_directory_upgrades_cleanly() {
    upgrade_changes_type(
        Package::new("app", "1")
            .symlink("usr/share/app/data", "../app-data")
            .file("usr/share/app-data/a", "a 1\n", 0o644),
        Package::new("app", "2")
            .file("usr/share/app/data/a", "a 2\n", 0o644)
            .file("usr/share/app/data/b", "b 2\n", 0o644),
    )
    .await;
}

#[tokio::test]
async fn a_file_that_becomes_a_directory_upgrades_cleanly() {
    upgrade_changes_type(
        Package::new("app", "1").file("usr/lib/app/plugins", "one plugin\n", 0o644),
        Package::new("app", "2")
            .file("usr/lib/app/plugins/one.so", "one\n", 0o644)
            .file("usr/lib/app/plugins/two.so", "two\n", 0o644),
    )
    .await;
}

#[tokio::test]
async fn a_directory_that_becomes_a_file_upgrades_cleanly() {
    upgrade_changes_type(
        Package::new("app", "1")
            .file("usr/lib/app/plugins/one.so", "one\n", 0o644)
            .file("usr/lib/app/plugins/two.so", "two\n", 0o644),
        Package::new("app", "2").file("usr/lib/app/plugins", "one plugin\n", 0o644),
    )
    .await;
}
