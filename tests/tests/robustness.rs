//! What users and clients do to a running daemon: cancel a download (through D-Bus, `spkctl
//! cancel`, or Ctrl-C in a script), walk away mid-transaction, fill the disk, or send malformed
//! arguments. The root stays whole and spkd keeps serving.

use std::collections::HashMap;
use std::time::Duration;

use spk_tests::client::{MANAGER, MANAGER_PATH, TRANSACTION, TRANSACTION_TIMEOUT};
use spk_tests::repo::noise;
use spk_tests::{Env, Fault, Package, Repo};
use tokio::io::AsyncReadExt;
use zbus::zvariant::Value;

const TARBALL: &str = "/repo/plasma.tar.xz";
const INVALID_ARGS: &str = "xyz.smech.Spk1.Error.InvalidArgs";

fn plasma(version: &str, payload: usize) -> Package {
    Package::new("plasma", version)
        .file("usr/share/plasma/version", format!("{version}\n"), 0o644)
        .file(
            "usr/lib/libplasma.so",
            noise(payload as u64, payload),
            0o755,
        )
}

#[tokio::test]
async fn cancelling_an_upgrade_mid_download_keeps_the_old_version() {
    let env = Env::new(&Repo::new().with(plasma("1", 1024))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let before = env.snapshot();
    env.publish(&Repo::new().with(plasma("2", 256 * 1024)));
    env.server
        .set_fault(TARBALL, Fault::Stall(Duration::from_secs(60)));
    let client = env.client().await;
    let mut watch = client.watch().await;

    let path = client.upgrade(&[], HashMap::new()).await.unwrap();
    env.server.wait_for_gets(TARBALL, 1).await;
    let asked = std::time::Instant::now();
    client
        .call(path.as_str(), TRANSACTION, "Cancel", &())
        .await
        .expect("Cancel");
    let log = watch
        .until_finished(path.as_str(), Duration::from_secs(20))
        .await;

    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the download did not stop at once ({:?})",
        asked.elapsed()
    );
    assert_eq!(log.finished.0, "cancelled", "{log:#?}");
    assert_eq!(log.finished.1, "xyz.smech.Spk1.Error.Cancelled", "{log:#?}");
    let props = client.properties(path.as_str(), TRANSACTION).await;
    assert_eq!(props["State"], "cancelled", "{props:#}");
    before.assert_untouched(&env.snapshot());
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(info.json()["installed-version"], "1", "{info}");

    env.server.clear_fault(TARBALL);
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/share/plasma/version", b"2\n", 0o644);
}

#[tokio::test]
async fn spkctl_cancel_stops_a_transaction_started_elsewhere() {
    let env = Env::new(&Repo::new().with(plasma("1", 64 * 1024))).await;
    env.server
        .set_fault(TARBALL, Fault::Stall(Duration::from_secs(60)));
    let before = env.snapshot();
    let installing = env.spawn_spkctl(&["--json", "install", "plasma"]);
    env.server.wait_for_gets(TARBALL, 1).await;
    let client = env.client().await;
    let path = client.transactions().await.pop().expect("a transaction");
    let number = path.as_str().rsplit('/').next().unwrap().to_string();

    let cancel = env.spkctl(&["cancel", &number]).await;

    cancel.assert_success();
    assert!(
        cancel
            .stdout
            .contains(&format!("Cancelling transaction {number}")),
        "{cancel}"
    );
    let out = tokio::time::timeout(Duration::from_secs(20), installing.wait_with_output())
        .await
        .expect("the installing spkctl ends once cancelled")
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["state"], "cancelled", "{report}");
    before.assert_untouched(&env.snapshot());

    // With nothing running, `cancel` says so.
    let idle = env.spkctl(&["cancel"]).await;
    idle.assert_success();
    assert!(idle.stdout.contains("No transaction is running."), "{idle}");
}

#[tokio::test]
async fn ctrl_c_in_a_script_cancels_the_running_install() {
    let env = Env::new(&Repo::new().with(plasma("1", 64 * 1024))).await;
    // A slow mirror (about 10 KiB/s): the download makes progress and is far from done.
    env.server.set_fault(
        TARBALL,
        Fault::Throttle {
            chunk: 1024,
            every: Duration::from_millis(100),
        },
    );
    let before = env.snapshot();
    let mut installing = env.spawn_spkctl(&["install", "plasma"]);
    let mut stdout = installing.stdout.take().unwrap();
    // spkctl prints the download's first progress once it follows the transaction (and so
    // has its Ctrl-C handler in place).
    let mut shown = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !shown.contains("plasma: downloading") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("spkctl showed no download: {shown:?}"))
            .unwrap();
        assert!(n > 0, "spkctl closed its output: {shown:?}");
        shown.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // "downloading" is announced as the request goes out: wait until the server has it.
    env.server.wait_for_gets(TARBALL, 1).await;

    // stdin is not a terminal: SIGINT cancels at once, without asking.
    let pid = rustix::process::Pid::from_raw(installing.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), installing.wait_with_output())
        .await
        .expect("spkctl ends soon after SIGINT")
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "spkctl exits 1 after cancelling:\n{shown}\n{stderr}"
    );
    assert!(
        stderr.contains("error: transaction cancelled"),
        "{shown}\n{stderr}"
    );
    assert!(!stderr.contains("[y/N]"), "a script is not asked: {stderr}");
    let client = env.client().await;
    let path = client.transactions().await.pop().expect("the transaction");
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "cancelled"
    );
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_stop_its_transaction() {
    let env = Env::new(&Repo::new().with(plasma("1", 64 * 1024))).await;
    env.server
        .set_fault_times(TARBALL, Fault::Stall(Duration::from_secs(2)), 1);
    let client = env.client().await;
    let mut watch = client.watch().await;
    let mut installing = env.spawn_spkctl(&["install", "plasma"]);
    env.server.wait_for_gets(TARBALL, 1).await;
    let path = client.transactions().await.pop().expect("a transaction");

    installing.kill().await.expect("kill spkctl");

    let log = watch
        .until_finished(path.as_str(), TRANSACTION_TIMEOUT)
        .await;
    assert_eq!(log.finished.0, "finished", "{log:#?}");
    assert_eq!(log.package_done, [("plasma".into(), "1".into())]);
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_full_disk_fails_the_upgrade_and_keeps_the_installed_version() {
    // A 16 MiB root with 10 MiB taken: version 2 (4 MiB that xz cannot shrink) needs its
    // tarball in the cache and its files in staging, 8 MiB, where about 5 are free. spkd sees
    // it before downloading anything.
    let env = Env::on_tmpfs(&Repo::new().with(plasma("1", 16 * 1024)), "16m").await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let filler = env.path("home/filler");
    std::fs::create_dir_all(filler.parent().unwrap()).unwrap();
    std::fs::write(&filler, vec![0xa5; 10 << 20]).expect("write the filler");
    let before = env.snapshot();
    env.publish(&Repo::new().with(plasma("2", 4 << 20)));
    env.server.clear_requests();

    let run = env.spkctl(&["upgrade"]).await;

    run.assert_code(1);
    let line = run.error_line();
    assert!(
        line.contains("not enough free space on")
            && line.contains("(tmpfs) for downloading and unpacking plasma: needs 8.0 MiB")
            && line.contains("MiB short)"),
        "{run}"
    );
    assert!(
        env.server.tarball_gets().is_empty(),
        "nothing may be downloaded onto a disk without room: {:?}",
        env.server.tarball_gets()
    );
    before.assert_untouched(&env.snapshot());
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(info.json()["installed-version"], "1", "{info}");
    env.spkctl(&["verify"]).await.assert_success();
    let staging: Vec<_> = std::fs::read_dir(env.path("var/lib/spk/staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        staging.is_empty(),
        "staging debris fills the disk: {staging:?}"
    );

    std::fs::remove_file(&filler).unwrap();
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/share/plasma/version", b"2\n", 0o644);
    env.spkctl(&["verify"]).await.assert_success();
}

/// Expect the call to fail at once with `InvalidArgs` and a message containing `expected`.
#[track_caller]
fn assert_invalid_args<T: std::fmt::Debug>(result: zbus::Result<T>, expected: &str) {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            assert_eq!(name.as_str(), INVALID_ARGS, "message: {message:?}");
            let message = message.unwrap_or_default();
            assert!(
                message.contains(expected),
                "the message {message:?} lacks {expected:?}"
            );
        }
        other => panic!("expected InvalidArgs ({expected}), got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_arguments_are_refused_as_invalid_args() {
    let env = Env::new(&Repo::new().with(plasma("1", 1024))).await;
    let before = env.snapshot();
    let client = env.client().await;
    let none = HashMap::new;

    assert_invalid_args(
        client.install(&[], none()).await,
        "install needs at least one package name",
    );
    assert_invalid_args(
        client.remove(&[], none()).await,
        "remove needs at least one package name",
    );
    assert_invalid_args(
        client.install(&[""], none()).await,
        "invalid package name ''",
    );
    let many: Vec<String> = (0..10_000).map(|i| format!("pkg-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_invalid_args(
        client.install(&many, none()).await,
        "too many package names (10000; at most 1024)",
    );
    for bad in ["usr/bin", "../../etc/passwd", "/", "plasma/../x"] {
        assert_invalid_args(
            client.install(&[bad], none()).await,
            &format!("invalid package name '{bad}'"),
        );
        assert_invalid_args(
            client.upgrade(&["plasma", bad], none()).await,
            &format!("invalid package name '{bad}'"),
        );
        assert_invalid_args(
            client.remove(&[bad], none()).await,
            &format!("invalid package name '{bad}'"),
        );
    }
    assert_invalid_args(
        client
            .install(
                &["plasma"],
                HashMap::from([("frobnicate", Value::from(true))]),
            )
            .await,
        "unknown option 'frobnicate' (known: reinstall, download-only, dry-run, force, adopt, offline, undo)",
    );
    assert_invalid_args(
        client
            .install(
                &["plasma"],
                HashMap::from([("reinstall", Value::from("yes"))]),
            )
            .await,
        "option 'reinstall' must be a boolean, not 's'",
    );
    assert_invalid_args(
        client
            .upgrade(&[], HashMap::from([("force", Value::from(1u32))]))
            .await,
        "option 'force' must be a boolean, not 'u'",
    );
    let refresh = client
        .call(
            MANAGER_PATH,
            MANAGER,
            "Refresh",
            &(HashMap::from([
                ("dry-run", Value::from(true)),
                ("bogus", Value::from(true)),
            ]),),
        )
        .await;
    assert_invalid_args(refresh, "unknown option 'bogus'");
    let plan = client
        .call(
            MANAGER_PATH,
            MANAGER,
            "Plan",
            &(
                "frobnicate",
                vec!["plasma"],
                HashMap::<&str, Value<'_>>::new(),
            ),
        )
        .await;
    assert_invalid_args(plan, "cannot plan 'frobnicate'");

    // Nothing was started, nothing changed, and spkd serves on.
    assert!(client.transactions().await.is_empty());
    before.assert_untouched(&env.snapshot());
    env.spkctl(&["install", "plasma"]).await.assert_success();
    assert_eq!(client.list_packages().await[0]["state"], "installed");
}

/// An upgrade's replaced files (kept as backups until the new version is recorded) go after
/// the transaction, with the rest of staging, on a thread of spkd's own: nothing of them is
/// left in `var/lib/spk`, and staging moved aside when spkd was stopped goes at its next start.
#[tokio::test]
async fn an_upgrade_leaves_no_staging_behind_and_a_restart_clears_what_was_moved_aside() {
    let mut env = Env::new(&Repo::new().with(plasma("1", 64 * 1024))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&Repo::new().with(plasma("2", 64 * 1024)));

    env.spkctl(&["upgrade"]).await.assert_success();

    env.assert_file("usr/share/plasma/version", b"2\n", 0o644);
    let root = env.path("");
    let listing = |dir: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(root.join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert_emptied(&listing, "var/lib/spk/trash").await;
    assert_eq!(
        listing("var/lib/spk/staging"),
        Vec::<std::path::PathBuf>::new()
    );

    // What a stop (or crash) left moved aside: a replaced version's file among it.
    let left = env.path("var/lib/spk/trash/123-0/1/plasma/backup/usr/lib");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("libplasma.so"), b"old").unwrap();
    env.restart_spkd().await;
    assert_emptied(&listing, "var/lib/spk/trash").await;
    env.spkctl(&["verify"]).await.assert_success();
}

/// Wait (up to 10 s: the deletion runs on a thread of spkd's own) until `dir` holds nothing.
async fn assert_emptied(listing: &impl Fn(&str) -> Vec<std::path::PathBuf>, dir: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !listing(dir).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listing(dir), Vec::<std::path::PathBuf>::new(), "{dir}");
}
