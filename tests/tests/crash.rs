//! Crash safety: spkd killed (abort, like `kill -9` or a power cut) at each named point of an
//! upgrade, install or removal, then started again, leaves every package wholly its old or
//! wholly its new version, the database agreeing with the disk (`spkctl verify` is clean), no
//! staging debris, and a daemon that runs the next transaction. A panic at such a point fails
//! only its transaction.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use spk_tests::repo::Entry;
use spk_tests::{Env, Package, Repo};

const FAILPOINTS: &str = "SPKD_FAILPOINTS";

/// Plasma at `version`: a dozen files whose content names the version, a symlink, and a file
/// only version 1 has (an upgrade must remove it) or only later versions have.
fn plasma(version: u32) -> Package {
    let mut p = Package::new("plasma", &format!("{version}.0-1"))
        .file(
            "usr/bin/plasmashell",
            format!("#!/bin/sh\necho plasma {version}\n"),
            0o755,
        )
        .symlink("usr/bin/plasma", "plasmashell");
    for i in 0..10 {
        p = p.file(
            &format!("usr/share/plasma/part-{i:02}"),
            format!("plasma {version} part {i}\n"),
            0o644,
        );
    }
    if version == 1 {
        p.file("usr/share/plasma/only-in-1", "old\n", 0o644)
    } else {
        p.file(
            &format!("usr/share/plasma/new-in-{version}"),
            "new\n",
            0o644,
        )
    }
}

fn repo(version: u32) -> Repo {
    Repo::new().with(plasma(version))
}

/// Panic unless the files and symlinks of the root are exactly those of `packages`, with their
/// content and modes (directories are not compared: parents may stay behind).
#[track_caller]
fn assert_root_is(env: &Env, packages: &[Package]) {
    let snapshot = env.snapshot();
    let mut expected = Vec::new();
    for package in packages {
        for entry in &package.entries {
            match entry {
                Entry::File {
                    path,
                    content,
                    mode,
                } => {
                    env.assert_file(path, content, *mode);
                    expected.push(path.clone());
                }
                Entry::Symlink { path, target } => {
                    env.assert_symlink(path, target);
                    expected.push(path.clone());
                }
                _ => {}
            }
        }
    }
    expected.sort();
    let actual: Vec<String> = snapshot
        .nodes
        .iter()
        .filter(|(_, node)| node.kind != spk_tests::snapshot::Kind::Dir)
        .map(|(path, _)| path.clone())
        .collect();
    assert_eq!(
        actual,
        expected,
        "the root is neither wholly one version nor the other:\n{}",
        snapshot.listing()
    );
}

/// Restart spkd armed with `point`, run `spkctl ARGS`, and expect spkd to die there.
async fn crash_at(env: &mut Env, point: &str, args: &[&str]) {
    env.restart_spkd_with_env(&[(FAILPOINTS, point)]).await;

    let run = env.spkctl(args).await;

    assert_ne!(
        run.code,
        Some(0),
        "the transaction cannot have succeeded:\n{run}"
    );
    let status = env
        .spkd
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("spkd did not crash at {point}:\n{run}"));
    assert_eq!(
        status.signal(),
        Some(libc_sigabrt()),
        "spkd should have aborted at {point} ({status}):\n{}",
        env.spkd.log()
    );
    assert!(
        env.spkd
            .log()
            .contains(&format!("failpoint {point}: aborting")),
        "spkd died, but not at {point}:\n{}",
        env.spkd.log()
    );
    // Started again without the failpoint: recovery runs at start-up.
    env.restart_spkd().await;
}

fn libc_sigabrt() -> i32 {
    rustix::process::Signal::ABORT.as_raw()
}

/// After recovery: the database agrees with the disk, nothing is left in staging, and
/// `plasma` is installed at `version` (or not at all for `None`).
async fn assert_consistent(env: &Env, version: Option<u32>) {
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_success();
    let staging = env.path("var/lib/spk/staging");
    let debris: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(debris.is_empty(), "staging debris: {debris:?}");
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    match version {
        Some(v) => {
            let state = info.json()["state"].clone();
            assert!(state == "installed" || state == "upgradable", "{info}");
            assert_eq!(
                info.json()["installed-version"],
                format!("{v}.0-1"),
                "{info}"
            );
        }
        None => assert_eq!(info.json()["state"], "available", "{info}"),
    }
}

/// The next transaction works: an upgrade to version 3 installs it whole.
async fn next_upgrade_works(env: &Env) {
    env.publish(&repo(3));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_root_is(env, &[plasma(3)]);
    env.spkctl(&["verify"]).await.assert_success();
}

/// Upgrade plasma 1 → 2 with spkd crashing at `point`; return the environment after the
/// restart, and what the root held before.
async fn upgrade_crashing_at(point: &str) -> Env {
    let mut env = Env::new(&repo(1)).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&repo(2));

    crash_at(&mut env, point, &["upgrade"]).await;
    env
}

#[tokio::test]
async fn a_crash_while_unpacking_leaves_the_old_version() {
    let env = upgrade_crashing_at("stage.mid-unpack").await;

    assert_root_is(&env, &[plasma(1)]);
    assert_consistent(&env, Some(1)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_before_the_journal_entry_leaves_the_old_version() {
    let env = upgrade_crashing_at("commit.before-journal").await;

    assert_root_is(&env, &[plasma(1)]);
    assert_consistent(&env, Some(1)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_with_half_the_files_in_place_rolls_forward_to_the_new_version() {
    let env = upgrade_crashing_at("commit.mid-place").await;

    assert_root_is(&env, &[plasma(2)]);
    assert_consistent(&env, Some(2)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_after_placing_the_files_rolls_forward_to_the_new_version() {
    let env = upgrade_crashing_at("commit.after-place").await;

    assert_root_is(&env, &[plasma(2)]);
    assert_consistent(&env, Some(2)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_before_the_database_records_the_commit_rolls_forward() {
    let env = upgrade_crashing_at("commit.before-complete").await;

    assert_root_is(&env, &[plasma(2)]);
    assert_consistent(&env, Some(2)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_first_install_rolls_forward() {
    let mut env = Env::new(&repo(1)).await;

    crash_at(&mut env, "commit.mid-place", &["install", "plasma"]).await;

    assert_root_is(&env, &[plasma(1)]);
    assert_consistent(&env, Some(1)).await;
    next_upgrade_works(&env).await;
}

#[tokio::test]
async fn a_crash_during_a_removal_rolls_forward_to_removed() {
    let mut env = Env::new(&repo(1)).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();

    crash_at(&mut env, "commit.before-complete", &["remove", "plasma"]).await;

    assert_root_is(&env, &[]);
    assert_consistent(&env, None).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    assert_root_is(&env, &[plasma(1)]);
}

#[tokio::test]
async fn a_panic_while_unpacking_fails_only_that_transaction() {
    let mut env = Env::new(&repo(1)).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let before = env.snapshot();
    env.publish(&repo(2));
    env.restart_spkd_with_env(&[(FAILPOINTS, "stage.mid-unpack=panic")])
        .await;

    let run = env.spkctl_json(&["upgrade"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert!(
        report["error-name"]
            .as_str()
            .is_some_and(|n| n.starts_with("xyz.smech.Spk1.Error.")),
        "{run}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{run}"
    );
    assert!(
        env.spkd
            .wait_exit(Duration::from_millis(200))
            .await
            .is_none(),
        "spkd died of a panic in a transaction:\n{}",
        env.spkd.log()
    );
    before.assert_same_content(&env.snapshot());
    // The same daemon serves the next transactions (which do not unpack).
    env.spkctl(&["check"]).await.assert_code(100);
    env.spkctl(&["remove", "plasma"]).await.assert_success();
    assert_root_is(&env, &[]);

    env.restart_spkd().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    assert_root_is(&env, &[plasma(2)]);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_panic_in_the_middle_of_a_commit_fails_only_that_transaction() {
    let mut env = Env::new(&repo(1)).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&repo(2));
    env.restart_spkd_with_env(&[(FAILPOINTS, "commit.mid-place=panic")])
        .await;

    let run = env.spkctl_json(&["upgrade"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["state"], "failed", "{run}");
    assert!(
        env.spkd
            .wait_exit(Duration::from_millis(200))
            .await
            .is_none(),
        "spkd died of a panic in a transaction:\n{}",
        env.spkd.log()
    );
    let list = env.spkctl_json(&["list"]).await;
    list.assert_success();

    // Once restarted (as OpenRC's supervisor or the next boot would), the interrupted commit
    // is wholly one version, and everything works.
    env.restart_spkd().await;
    let info = env.spkctl_json(&["info", "plasma"]).await;
    let version = info.json()["installed-version"].clone();
    let expected = if version == "1.0-1" { 1 } else { 2 };
    assert_root_is(&env, &[plasma(expected)]);
    assert_consistent(&env, Some(expected)).await;
    next_upgrade_works(&env).await;
}
