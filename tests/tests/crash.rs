//! Crash safety: spkd killed (abort, like `kill -9` or a power cut) at each named point of an
//! upgrade, install or removal, then started again, leaves every package wholly its old or
//! wholly its new version, the database agreeing with the disk (`spkctl verify` is clean), no
//! staging debris, and a daemon that runs the next transaction. A panic at such a point fails
//! only its transaction.

use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
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

/// The crashes, one row each: the failpoint spkd aborts at, the spkctl command it aborts in,
/// plasma's version once spkd is started again (`None`: not installed), and what the user
/// finds. An `upgrade` goes from plasma 1 to 2, an `install` is plasma 1's first, a `remove`
/// removes plasma 1.
#[rustfmt::skip]
const CASES: &[(&str, &[&str], Option<u32>, &str)] = &[
    // failpoint               command                   version   what the user finds
    ("stage.mid-unpack",       &["upgrade"],             Some(1),  "a crash while unpacking leaves the old version"),
    ("commit.before-journal",  &["upgrade"],             Some(1),  "a crash before the journal entry leaves the old version"),
    ("commit.mid-place",       &["upgrade"],             Some(2),  "a crash with half the files in place rolls forward to the new version"),
    ("commit.after-place",     &["upgrade"],             Some(2),  "a crash after placing the files rolls forward to the new version"),
    ("commit.before-complete", &["upgrade"],             Some(2),  "a crash before the database records the commit rolls forward"),
    ("commit.mid-place",       &["install", "plasma"],   Some(1),  "a crash in the middle of a first install rolls forward"),
    ("commit.before-complete", &["remove", "plasma"],    None,     "a crash during a removal rolls forward to removed"),
];

/// One row of [`CASES`]: set the root up for `command`, crash spkd at `point` in it, start spkd
/// again, and check that plasma is wholly at `expected` and the next transaction works.
async fn crash_case(point: &str, command: &[&str], expected: Option<u32>) {
    let mut env = Env::new(&repo(1)).await;
    match command[0] {
        "upgrade" => {
            env.spkctl(&["install", "plasma"]).await.assert_success();
            env.publish(&repo(2));
        }
        "install" => {}
        "remove" => {
            env.spkctl(&["install", "plasma"]).await.assert_success();
        }
        other => panic!("no set-up for a crash in `spkctl {other}`"),
    }

    crash_at(&mut env, point, command).await;

    match expected {
        Some(version) => assert_root_is(&env, &[plasma(version)]),
        None => assert_root_is(&env, &[]),
    }
    assert_consistent(&env, expected).await;
    match expected {
        Some(_) => next_upgrade_works(&env).await,
        None => {
            env.spkctl(&["install", "plasma"]).await.assert_success();
            assert_root_is(&env, &[plasma(1)]);
        }
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|m| (*m).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

#[tokio::test]
async fn a_crash_at_each_failpoint_leaves_one_whole_version() {
    let mut failed = Vec::new();
    for &(point, command, expected, outcome) in CASES {
        let case = AssertUnwindSafe(crash_case(point, command, expected))
            .catch_unwind()
            .await;
        if let Err(panic) = case {
            let version = expected.map_or("not installed".to_owned(), |v| format!("{v}.0-1"));
            failed.push(format!(
                "failpoint {point} in `spkctl {}` (expected plasma {version}: {outcome}):\n{}",
                command.join(" "),
                panic_message(&*panic)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} crash cases failed:\n\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n\n")
    );
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
