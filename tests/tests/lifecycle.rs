//! The daemon's life under OpenRC: it stops cleanly on SIGTERM (even mid-download, leaving
//! the root whole), remembers what is installed across restarts, and writes a plain log.

use std::collections::HashMap;
use std::time::Duration;

use spk_tests::{Env, Fault, Package, Repo};

fn plasma() -> Package {
    Package::new("plasma", "6.6.5-1").file("usr/share/plasma/version", "6.6.5\n", 0o644)
}

#[tokio::test]
async fn spkd_exits_with_status_0_on_sigterm() {
    let mut env = Env::new(&Repo::new().with(plasma())).await;

    let status = env.spkd.terminate(Duration::from_secs(15)).await;

    assert!(
        status.success(),
        "spkd exited with {status}:\n{}",
        env.spkd.log()
    );
}

#[tokio::test]
async fn sigterm_during_a_download_leaves_the_root_whole_and_the_install_can_be_retried() {
    let mut env = Env::new(&Repo::new().with(plasma())).await;
    env.server
        .set_fault("/repo/plasma.tar.xz", Fault::Stall(Duration::from_secs(60)));
    let before = env.snapshot();
    let client = env.client().await;
    client.install(&["plasma"], HashMap::new()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.server.tarball_gets().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no download started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = env.spkd.terminate(Duration::from_secs(15)).await;

    assert!(
        status.success(),
        "spkd exited with {status}:\n{}",
        env.spkd.log()
    );
    before.assert_same_content(&env.snapshot());

    env.server.clear_fault("/repo/plasma.tar.xz");
    env.restart_spkd().await;
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    assert_eq!(info.json()["state"], "available", "{info}");
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/share/plasma/version", b"6.6.5\n", 0o644);
}

#[tokio::test]
async fn installed_packages_are_remembered_across_a_restart() {
    let mut env = Env::new(&Repo::new().with(plasma())).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.restart_spkd().await;

    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    assert_eq!(info.json()["state"], "installed", "{info}");
    assert_eq!(info.json()["installed-version"], "6.6.5-1", "{info}");
    let before = env.snapshot();
    env.server.clear_requests();
    env.spkctl(&["upgrade"]).await.assert_success();
    assert!(
        env.server.tarball_gets().is_empty(),
        "nothing to fetch after a restart"
    );
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn spkd_writes_a_plain_log_when_stderr_is_a_file() {
    // OpenRC's supervise-daemon sends stderr to /var/log/spkd.log: no terminal colours there.
    let env = Env::new(&Repo::new().with(plasma())).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();

    let log = env.spkd.log();

    assert!(!log.is_empty(), "spkd logged nothing");
    let first = log
        .lines()
        .find(|l| l.contains('\x1b'))
        .map(|l| l.escape_debug().to_string());
    assert!(
        first.is_none(),
        "escape codes in the log file, e.g.: {}",
        first.unwrap_or_default()
    );
}
