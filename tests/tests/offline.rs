//! Offline updates: `spkctl upgrade --offline` prepares now (download, verify, unpack), and the
//! next boot installs before the desktop starts (`spkd --apply-offline-update`, what OpenRC's
//! spk-offline-update runs).

use spk_tests::{Env, Package, Repo};

fn editor(version: &str, says: &str) -> Package {
    Package::new("kate", version)
        .file("usr/bin/kate", format!("#!/bin/sh\necho {says}\n"), 0o755)
        .file("usr/share/kate/plugin.so", says, 0o644)
}

fn editor_v2() -> Package {
    editor("2.0-1", "kate 2").file("usr/share/kate/new-plugin.so", "new\n", 0o644)
}

/// kate 1 installed, kate 2 on the mirror, prepared for the next boot.
async fn prepared() -> Env {
    let env = Env::new(&Repo::new().with(editor("1.0-1", "kate 1"))).await;
    env.spkctl(&["install", "kate"]).await.assert_success();
    env.publish(&Repo::new().with(editor_v2()));
    let run = env.spkctl(&["upgrade", "--offline"]).await;
    run.assert_success();
    assert!(
        run.stdout.contains(
            "Prepared 1 update (kate 1.0-1 -> 2.0-1): they will be installed at the next restart"
        ),
        "{run}"
    );
    env
}

fn assert_kate_1(env: &Env) {
    env.assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 1\n", 0o755);
    env.assert_absent("usr/share/kate/new-plugin.so");
}

fn assert_kate_2(env: &Env) {
    env.assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 2\n", 0o755);
    env.assert_file("usr/share/kate/new-plugin.so", b"new\n", 0o644);
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn newest_history(env: &Env) -> serde_json::Value {
    let h = env.spkctl_json(&["history"]).await;
    h.assert_success();
    h.json()[0].clone()
}

#[tokio::test]
async fn an_offline_upgrade_is_prepared_now_and_installed_at_the_next_boot() {
    let mut env = prepared().await;
    // Nothing changed yet: the files, the database, the history.
    assert_kate_1(&env);
    assert_eq!(
        env.installed_version("kate").await.as_deref(),
        Some("1.0-1")
    );
    let history = env.spkctl_json(&["history"]).await;
    assert_eq!(
        history.json().as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    let status = env.spkctl(&["offline", "status"]).await;
    status.assert_success();
    assert!(status.stdout.contains("Update prepared "), "{status}");
    assert!(
        status.stdout.contains("  kate 1.0-1 -> 2.0-1\n"),
        "{status}"
    );
    assert!(
        status
            .stdout
            .contains("It will be installed at the next restart"),
        "{status}"
    );
    let json = env.spkctl_json(&["offline"]).await;
    assert_eq!(json.json()["prepared"], true, "{json}");
    assert_eq!(json.json()["stale"], "", "{json}");
    assert_eq!(
        json.json()["changes"],
        serde_json::json!([{"name": "kate", "from": "1.0-1", "to": "2.0-1"}])
    );

    let boot = env.boot_applying_offline_update(&[]).await;
    let console = stdout(&boot);
    assert!(boot.status.success(), "{console}");
    assert!(
        console.contains("* Installing updates (1/1): kate 2.0-1 …\n"),
        "{console}"
    );
    assert!(console.contains("* Installed 1 update\n"), "{console}");

    assert_kate_2(&env);
    assert_eq!(
        env.installed_version("kate").await.as_deref(),
        Some("2.0-1")
    );
    let entry = newest_history(&env).await;
    assert_eq!(entry["kind"], "offline-update", "{entry}");
    assert_eq!(entry["state"], "finished", "{entry}");
    let status = env.spkctl(&["offline"]).await;
    assert!(status.stdout.contains("No update is prepared."), "{status}");
    assert!(!env.path("var/lib/spk/offline").exists());
}

#[tokio::test]
async fn a_boot_with_nothing_prepared_changes_nothing() {
    let mut env = Env::new(&Repo::new().with(editor("1.0-1", "kate 1"))).await;
    env.spkctl(&["install", "kate"]).await.assert_success();
    let before = env.snapshot();
    let boot = env.boot_applying_offline_update(&[]).await;
    assert!(boot.status.success());
    assert_eq!(stdout(&boot), "");
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn a_prepared_update_the_system_moved_away_from_is_discarded_not_applied() {
    let mut env = prepared().await;
    // Since then, the admin installed something else.
    env.publish(
        &Repo::new()
            .with(editor_v2())
            .with(Package::new("okular", "1.0-1").file("usr/bin/okular", "okular\n", 0o755)),
    );
    env.spkctl(&["install", "okular"]).await.assert_success();
    let status = env.spkctl(&["offline", "status"]).await;
    assert!(
        status.stdout.contains(
            "It can no longer be installed and will be discarded at the next restart: the \
             installed packages changed since it was prepared: okular (not installed then, \
             1.0-1 now)"
        ),
        "{status}"
    );

    let boot = env.boot_applying_offline_update(&[]).await;
    let console = stdout(&boot);
    assert!(!boot.status.success(), "{console}");
    assert!(
        console.contains("* The prepared updates were not installed: the update prepared on "),
        "{console}"
    );
    assert!(
        console.contains("was discarded: the installed packages changed"),
        "{console}"
    );
    assert_kate_1(&env);
    let entry = newest_history(&env).await;
    assert_eq!(entry["kind"], "offline-update", "{entry}");
    assert_eq!(entry["state"], "failed", "{entry}");
    assert!(!env.path("var/lib/spk/offline").exists());
}

#[tokio::test]
async fn cancelling_a_prepared_update_frees_its_space_and_the_boot_does_nothing() {
    let mut env = prepared().await;
    assert!(env.path("var/lib/spk/offline/staged/kate/tree").is_dir());
    let cancel = env.spkctl(&["offline", "cancel"]).await;
    cancel.assert_success();
    assert!(
        cancel.stdout.contains("The prepared update was discarded"),
        "{cancel}"
    );
    assert!(!env.path("var/lib/spk/offline").exists());
    let again = env.spkctl(&["offline", "cancel"]).await;
    assert!(again.stdout.contains("No update is prepared."), "{again}");
    let before = env.snapshot();
    let boot = env.boot_applying_offline_update(&[]).await;
    assert!(boot.status.success());
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn a_package_that_cannot_be_installed_keeps_its_old_version_and_the_boot_goes_on() {
    let mut env = prepared().await;
    // Since it was prepared, a file no package owns appeared where kate 2 puts one.
    std::fs::write(env.path("usr/share/kate/new-plugin.so"), "the admin's\n").expect("write");
    let boot = env.boot_applying_offline_update(&[]).await;
    let console = stdout(&boot);
    assert!(!boot.status.success(), "{console}");
    assert!(
        console.contains("* The prepared updates were not installed: ")
            && console.contains("usr/share/kate/new-plugin.so"),
        "{console}"
    );
    env.assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 1\n", 0o755);
    env.assert_content("usr/share/kate/new-plugin.so", b"the admin's\n");
    assert_eq!(
        env.installed_version("kate").await.as_deref(),
        Some("1.0-1")
    );
    let entry = newest_history(&env).await;
    assert_eq!(entry["state"], "failed", "{entry}");
    // Not retried at every boot.
    assert!(!env.path("var/lib/spk/offline").exists());
}

#[tokio::test]
async fn a_crash_in_the_middle_of_the_apply_is_recovered_by_the_next_start() {
    let mut env = prepared().await;
    let boot = env
        .boot_applying_offline_update(&[("SPKD_FAILPOINTS", "commit.mid-place")])
        .await;
    assert!(!boot.status.success(), "{}", stdout(&boot));
    // spkd started again after it: the interrupted commit was finished, as after any crash.
    assert_kate_2(&env);
    assert_eq!(
        env.installed_version("kate").await.as_deref(),
        Some("2.0-1")
    );
    env.spkctl(&["verify"]).await.assert_success();
    // What is left of the prepared update is dropped at the next boot, with a reason.
    let boot = env.boot_applying_offline_update(&[]).await;
    let console = stdout(&boot);
    assert!(console.contains("was interrupted"), "{console}");
    assert!(!env.path("var/lib/spk/offline").exists());
    assert_kate_2(&env);
}

/// An spkd whose `spk.toml` starts with `tunables`, serving `repo`.
async fn env_with(tunables: &str, repo: &Repo) -> Env {
    let server = spk_tests::HttpServer::start();
    repo.publish(&server);
    let config = format!("{tunables}{}", spk_tests::fixture::index_config(&server));
    Env::with_config(server, &config).await
}

/// The prepared update as `spkctl offline --json` shows it, once spkd has one (or panics
/// after 30 s).
async fn wait_for_prepared(env: &Env) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = env.spkctl_json(&["offline"]).await;
        if status.json()["prepared"] == true {
            return status.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing prepared: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_auto_prepare_a_check_that_finds_updates_prepares_them_once() {
    let env = env_with(
        "auto_prepare = true\n",
        &Repo::new().with(editor("1.0-1", "kate 1")),
    )
    .await;
    env.spkctl(&["install", "kate"]).await.assert_success();
    env.publish(&Repo::new().with(editor_v2()));
    env.spkctl(&["check"]).await.assert_code(100);
    let prepared = wait_for_prepared(&env).await;
    assert_eq!(
        prepared["changes"],
        serde_json::json!([{"name": "kate", "from": "1.0-1", "to": "2.0-1"}])
    );
    assert_kate_1(&env);
    // A later check finds the same updates: the prepared one stays as it is.
    env.spkctl(&["check"]).await.assert_code(100);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let again = env.spkctl_json(&["offline"]).await;
    assert_eq!(
        again.json()["prepared-at"],
        prepared["prepared-at"],
        "{again}"
    );
    assert_eq!(
        env.spkd
            .log()
            .matches("auto_prepare: preparing the updates")
            .count(),
        1,
        "{}",
        env.spkd.log()
    );
}

#[tokio::test]
async fn with_offline_reboot_a_new_kernel_asks_the_boot_to_restart_once_more() {
    let kernel = |v: &str| {
        Package::new("kernel-modules", &format!("6.{v}-1"))
            .system()
            .file("usr/lib/modules/version", format!("6.{v}\n"), 0o644)
    };
    let mut env = env_with(
        "offline_reboot = true\n",
        &Repo::new()
            .with(kernel("1"))
            .with(editor("1.0-1", "kate 1")),
    )
    .await;
    env.spkctl(&["install", "kernel-modules", "kate"])
        .await
        .assert_success();
    // Only kate changes: no restart.
    env.publish(&Repo::new().with(kernel("1")).with(editor_v2()));
    env.spkctl(&["upgrade", "--offline"]).await.assert_success();
    let boot = env.boot_applying_offline_update(&[]).await;
    assert_eq!(boot.status.code(), Some(0), "{}", stdout(&boot));
    // The kernel changes: exit status 3, which the OpenRC service answers with a restart.
    env.publish(&Repo::new().with(kernel("2")).with(editor_v2()));
    env.spkctl(&["upgrade", "--offline"]).await.assert_success();
    let boot = env.boot_applying_offline_update(&[]).await;
    let console = stdout(&boot);
    assert_eq!(boot.status.code(), Some(3), "{console}");
    assert!(
        console.contains(" * The kernel or the boot loader changed: restarting once more"),
        "{console}"
    );
    env.assert_content("usr/lib/modules/version", b"6.2\n");
}
