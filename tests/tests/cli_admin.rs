//! spkctl as an admin and an installer use it: `--root` with no bus at all, `monitor` and
//! `cancel` of transactions started elsewhere, `history` across restarts, `verify`, the `--json`
//! shapes, `--dry-run`, and a terminal session (prompt, progress, summary, Ctrl-C, `NO_COLOR`)
//! under a real pseudo-terminal ([`spk_tests::terminal`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use spk_tests::client::TRANSACTION;
use spk_tests::daemon::binary;
use spk_tests::fixture::index_config;
use spk_tests::repo::noise;
use spk_tests::terminal::{
    self, drawn_lines, on_terminal, on_terminal_sized, read_until, strip_escapes,
};
use spk_tests::{Env, Fault, HttpServer, Package, Repo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLASMA_TARBALL: &str = "/repo/plasma.tar.xz";

fn plasma(version: &str) -> Package {
    Package::new("plasma", version)
        .description("KDE Plasma desktop")
        .file("usr/bin/plasmashell", noise(1, 256 * 1024), 0o755)
        .file("usr/share/plasma/version", format!("{version}\n"), 0o644)
}

fn qt6() -> Package {
    Package::new("qt6", "6.10.1-1")
        .system()
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Processes named spkd whose command line mentions `root`.
fn spkd_processes_for(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_spkd = args
            .first()
            .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "spkd"));
        if is_spkd && args.iter().any(|a| a.contains(&root)) {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                args.join(" ")
            ));
        }
    }
    found
}

#[tokio::test]
async fn root_install_works_with_no_bus_at_all() {
    let server = HttpServer::start();
    Repo::new().with(plasma("1")).with(qt6()).publish(&server);
    let dir = tempfile::Builder::new()
        .prefix("spk-root-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("target");
    std::fs::create_dir_all(root.join("etc/spk")).unwrap();
    std::fs::write(root.join("etc/spk/spk.toml"), index_config(&server)).unwrap();
    let run_with = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(binary("spkctl"))
            .envs(env.iter().copied())
            .arg("--root")
            .arg(&root)
            .args(["--no-progress", "--yes"])
            .args(args)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("SPK_BUS_ADDRESS")
            .env_remove("SPKD")
            .stdin(Stdio::null())
            .output()
            .expect("run spkctl --root");
        let text = format!(
            "$ spkctl --root {} {}\nexit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            root.display(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    };
    let run = |args: &[&str]| run_with(&[], args);

    let (out, text) = run(&["install", "plasma", "qt6"]);

    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Installed 2 packages (") && text.contains(" downloaded."),
        "{text}"
    );
    let version = std::fs::read(root.join("usr/share/plasma/version")).expect("files landed");
    assert_eq!(version, b"1\n");
    assert_eq!(
        std::fs::read(root.join("usr/lib/libQt6Core.so.6")).unwrap(),
        b"qt core\n"
    );
    assert!(
        root.join("var/log/spkd.log").is_file(),
        "the private spkd logs to ROOT/var/log/spkd.log"
    );
    let left = spkd_processes_for(&root);
    assert!(left.is_empty(), "the private spkd still runs: {left:?}");

    // The same root again: the database remembered, and removal works too.
    let (out, text) = run(&["--json", "list", "--installed"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let names: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .expect("JSON list")
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert!(
        names.contains(&json!("plasma")) && names.contains(&json!("qt6")),
        "{text}"
    );
    let (out, text) = run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // An upgrade: the replaced version's files go before the private spkd exits, not with a
    // thread killed on the way (the root may be an image about to be packed).
    Repo::new().with(plasma("2")).with(qt6()).publish(&server);
    // Deleting them made slow: a second more.
    let (out, text) = run_with(&[("SPKD_FAILPOINTS", "trash.delete=pause")], &["upgrade"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        std::fs::read(root.join("usr/share/plasma/version")).unwrap(),
        b"2\n"
    );
    for dir in ["var/lib/spk/trash", "var/lib/spk/staging"] {
        let left: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir} keeps {left:?}\n{text}");
    }
    let (out, text) = run(&["remove", "qt6"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!root.join("usr/lib/libQt6Core.so.6").exists());
    let left = spkd_processes_for(&root);
    assert!(left.is_empty(), "the private spkd still runs: {left:?}");
}

#[tokio::test]
async fn root_reports_a_private_spkd_that_dies_at_start_up() {
    let dir = tempfile::Builder::new()
        .prefix("spk-root-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("target");
    std::fs::create_dir_all(root.join("etc/spk")).unwrap();
    // A typo'd key: spkd refuses the configuration and exits before answering.
    std::fs::write(
        root.join("etc/spk/spk.toml"),
        "frobnicate = 1\n[[repo]]\nname = \"test\"\nkind = \"index\"\n\
         url = \"http://127.0.0.1:9/repo/\"\n",
    )
    .unwrap();
    let before = spk_tests::Snapshot::take(&root);
    let child = tokio::process::Command::new(binary("spkctl"))
        .arg("--root")
        .arg(&root)
        .args(["--no-progress", "list"])
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("SPK_BUS_ADDRESS")
        .env_remove("SPKD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run spkctl --root");

    // A guard against the old hang, not a measure of speed.
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("spkctl --root hung after its spkd died")
        .expect("wait for spkctl");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "daemon unreachable:\n{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: the private spkd for {} exited before answering (exit status: 1)",
            root.display()
        )),
        "{stderr}"
    );
    // spkd's own words: the file, and the key it does not know.
    assert!(
        stderr.contains(&format!(
            "spkd: configuration {}: ",
            root.join("etc/spk/spk.toml").display()
        )) && stderr.contains("unknown field `frobnicate`"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left = spkd_processes_for(&root);
    assert!(left.is_empty(), "an spkd still runs: {left:?}");
    // Only its log was written.
    let mut after = spk_tests::Snapshot::take(&root);
    after.nodes.retain(|path, _| !path.starts_with("var"));
    before.assert_untouched(&after);
}

#[tokio::test]
async fn monitor_follows_a_transaction_started_by_another_client() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    let idle = env.spkctl(&["monitor"]).await;
    idle.assert_success();
    assert!(idle.stdout.contains("No transaction is running."), "{idle}");

    let (installing, path) = env
        .spawn_held(
            &["install", "plasma"],
            PLASMA_TARBALL,
            Duration::from_secs(3),
        )
        .await;

    let (plain, json) = tokio::join!(env.spkctl(&["monitor"]), env.spkctl_json(&["monitor"]));

    plain.assert_success();
    let following = plain
        .stdout
        .lines()
        .find(|l| l.starts_with("Following "))
        .unwrap_or_else(|| panic!("no `Following` line:\n{plain}"));
    let number = path.as_str().rsplit('/').next().unwrap();
    assert_eq!(
        following,
        format!("Following transaction {number}: install plasma (uid 0)"),
        "{plain}"
    );
    assert!(
        plain.stdout.contains("installed plasma 1"),
        "monitor shows the progress of the followed transaction:\n{plain}"
    );
    assert!(
        plain.stdout.lines().last().is_some_and(|l| l
            .starts_with("Installed 1 package (plasma 1), followed for ")
            && l.ends_with(" downloaded.")),
        "it ends with the summary line of the command that started it:\n{plain}"
    );
    json.assert_success();
    assert_eq!(
        json.json(),
        json!([{"transaction": path.as_str(), "state": "finished", "error-message": ""}]),
        "{json}"
    );
    let out = installing.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
}

#[tokio::test]
async fn history_is_kept_across_a_daemon_restart() {
    let mut env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;
    let started = now();
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&Repo::new().with(plasma("2")).with(qt6()));
    env.spkctl(&["upgrade"]).await.assert_success();
    env.spkctl(&["install", "qt6"]).await.assert_success();
    env.spkctl(&["install", "--dry-run", "plasma", "qt6"])
        .await
        .assert_success();
    env.spkctl(&["remove", "qt6"]).await.assert_success();
    env.spkctl(&["install", "no-such-package"])
        .await
        .assert_code(1);

    env.restart_spkd().await;
    let run = env.spkctl_json(&["history"]).await;

    run.assert_success();
    let entries = run.json();
    let entries = entries
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{run}"));
    let summary: Vec<(Value, Value, Value, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].clone(),
                e["packages"].clone(),
                e["state"].clone(),
                e["changes"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                json!("remove"),
                json!(["qt6"]),
                json!("finished"),
                json!([{"name": "qt6", "from": "6.10.1-1", "to": ""}])
            ),
            (
                json!("install"),
                json!(["qt6"]),
                json!("finished"),
                json!([{"name": "qt6", "from": "", "to": "6.10.1-1"}])
            ),
            (
                json!("upgrade"),
                json!([]),
                json!("finished"),
                json!([{"name": "plasma", "from": "1", "to": "2"}])
            ),
            (
                json!("install"),
                json!(["plasma"]),
                json!("finished"),
                json!([{"name": "plasma", "from": "", "to": "1"}])
            ),
        ],
        "newest first, no dry run, no unknown package:\n{run}"
    );
    for (i, e) in entries.iter().enumerate() {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        for key in [
            "id", "started", "finished", "uid", "kind", "packages", "state", "error", "changes",
        ] {
            assert!(keys.contains(&key), "entry {i} lacks {key}: {e}");
        }
        assert_eq!(e["uid"], 0, "{e}");
        let (s, f) = (
            e["started"].as_u64().unwrap(),
            e["finished"].as_u64().unwrap(),
        );
        assert!(
            started <= s + 1 && s <= f && f <= now() + 1,
            "times out of order: {e}"
        );
        if let Some(next) = entries.get(i + 1) {
            assert!(e["id"].as_u64() > next["id"].as_u64(), "ids: {run}");
        }
    }
    assert_eq!(entries[0]["error"], "", "{run}");

    let limited = env.spkctl_json(&["history", "--limit", "2"]).await;
    limited.assert_success();
    assert_eq!(
        limited.json().as_array().map(Vec::len),
        Some(2),
        "{limited}"
    );
    let text = env.spkctl(&["history"]).await;
    text.assert_success();
    assert!(
        text.stdout.lines().next().is_some_and(|l| l.contains("ID"))
            && text.stdout.contains("plasma 1 -> 2"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_names_every_file_that_differs_and_exits_1() {
    let env = Env::new(
        &Repo::new().with(qt6()).with(
            Package::new("plasma", "1")
                .file("usr/bin/plasmashell", "#!/bin/sh\n", 0o755)
                .file("usr/share/plasma/gone", "gone\n", 0o644)
                .file("usr/share/plasma/same-size", "bbbb\n", 0o644)
                .file("usr/share/plasma/resized", "ccccc\n", 0o644)
                .file("usr/lib/libplasma.so.6", "lib\n", 0o755)
                .symlink("usr/lib/libplasma.so", "libplasma.so.6")
                .file("usr/lib/plugin", "plugin\n", 0o644),
        ),
    )
    .await;
    env.spkctl(&["install", "plasma", "qt6"])
        .await
        .assert_success();
    let clean = env.spkctl(&["verify"]).await;
    clean.assert_success();
    assert!(
        clean
            .stdout
            .contains("All installed files match their packages."),
        "{clean}"
    );
    assert_eq!(env.spkctl_json(&["verify"]).await.json(), json!([]));

    let path = |rel: &str| env.path(rel);
    std::fs::remove_file(path("usr/share/plasma/gone")).unwrap();
    std::fs::write(path("usr/share/plasma/same-size"), "BBBB\n").unwrap();
    std::fs::write(path("usr/share/plasma/resized"), "c\n").unwrap();
    std::fs::set_permissions(
        path("usr/bin/plasmashell"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(path("usr/lib/libplasma.so")).unwrap();
    std::os::unix::fs::symlink("/tmp/evil.so", path("usr/lib/libplasma.so")).unwrap();
    std::fs::remove_file(path("usr/lib/plugin")).unwrap();
    std::fs::create_dir(path("usr/lib/plugin")).unwrap();
    let sha = |text: &str| spk_tests::repo::sha256_hex(text.as_bytes());

    let run = env.spkctl(&["verify"]).await;

    run.assert_code(1);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "plasma: /usr/bin/plasmashell: mode 0600, expected 0755".to_string(),
            "plasma: /usr/lib/libplasma.so: symlink points to '/tmp/evil.so', expected 'libplasma.so.6'".to_string(),
            "plasma: /usr/lib/plugin: is no longer a regular file".to_string(),
            "plasma: /usr/share/plasma/gone: missing".to_string(),
            "plasma: /usr/share/plasma/resized: content changed (size 2, expected 6)".to_string(),
            format!(
                "plasma: /usr/share/plasma/same-size: content changed (sha256 {}, expected {})",
                sha("BBBB\n"),
                sha("bbbb\n")
            ),
        ],
        "{run}"
    );
    assert_eq!(
        run.error_line(),
        "error: 6 files differ from their packages",
        "{run}"
    );

    let json = env.spkctl_json(&["verify", "plasma"]).await;
    json.assert_code(1);
    let problems = json.json();
    let problems = problems.as_array().expect("an array");
    assert_eq!(problems.len(), 6, "{json}");
    for p in problems {
        assert_eq!(p["package"], "plasma", "{p}");
        assert!(
            p["path"].as_str().is_some_and(|s| s.starts_with("usr/")),
            "{p}"
        );
        assert!(p["problem"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
        assert!(p["kind"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    }
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == "usr/share/plasma/gone" && p["problem"] == "missing"),
        "{json}"
    );
    // Another package is still clean.
    env.spkctl(&["verify", "qt6"]).await.assert_success();
}

#[tokio::test]
async fn json_outputs_have_their_documented_shape() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;

    let check = env.spkctl_json(&["check"]).await;
    check.assert_success();
    assert_eq!(
        check.json(),
        json!({"updates": 0, "packages": [], "held": [], "repositories": [{
            "name": "test", "kind": "index", "location": env.server.url("/repo/"),
            "release": "2026.11.25", "timestamp": 0, "signed": false, "proxy": "none",
        }]}),
        "{check}"
    );

    let install = env.spkctl_json(&["install", "plasma", "qt6"]).await;
    install.assert_success();
    let report = install.json();
    assert_eq!(
        keys(&report),
        [
            "error-message",
            "error-name",
            "notices",
            "packages",
            "state",
            "transaction"
        ],
        "{install}"
    );
    assert_eq!(report["notices"], json!([]), "{install}");
    assert_eq!(report["state"], "finished");
    assert_eq!(report["error-name"], "");
    let mut packages = report["packages"].as_array().unwrap().clone();
    packages.sort_by_key(|p| p["name"].as_str().unwrap().to_string());
    assert_eq!(
        packages,
        [
            json!({"name": "plasma", "version": "1"}),
            json!({"name": "qt6", "version": "6.10.1-1"})
        ]
    );

    let list = env.spkctl_json(&["list"]).await;
    list.assert_success();
    for row in list.json().as_array().unwrap() {
        for key in [
            "name",
            "kind",
            "state",
            "installed-version",
            "available-version",
            "size",
            "installed-size",
            "description",
            "repo",
            "verified-by",
            "files",
            "problem",
        ] {
            assert!(row.get(key).is_some(), "list row lacks {key}: {row}");
        }
    }
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    let info = info.json();
    assert_eq!(info["repo"], "test");
    assert_eq!(info["files"], 2, "{info}");
    assert_eq!(info["verified-by"], "index sha256 (unsigned index)");

    env.publish(&Repo::new().with(plasma("2")).with(qt6()));
    let check = env.spkctl_json(&["check"]).await;
    check.assert_code(100);
    let updates = check.json();
    assert_eq!(updates["updates"], 1, "{check}");
    assert_eq!(updates["packages"][0]["name"], "plasma", "{check}");
    assert_eq!(updates["packages"][0]["available-version"], "2", "{check}");

    let verify = env.spkctl_json(&["verify"]).await;
    verify.assert_success();
    assert_eq!(verify.json(), json!([]));

    let history = env.spkctl_json(&["history"]).await;
    history.assert_success();
    assert_eq!(
        history.json().as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    let about = env.spkctl_json(&["about"]).await;
    about.assert_success();
    let about = about.json();
    assert_eq!(
        keys(&about),
        [
            "cpu",
            "gpus",
            "kernel",
            "memory",
            "repositories",
            "root",
            "signatures",
            "spkctl-version",
            "spkd-version"
        ],
        "{about}"
    );
    assert_eq!(about["root"], env.root.to_string_lossy().as_ref());
    assert_eq!(about["spkctl-version"], about["spkd-version"]);
    assert!(about["gpus"].is_array(), "{about}");
    assert_eq!(
        about["repositories"],
        json!([{"name": "test", "kind": "index", "location": env.server.url("/repo/"),
            "release": "2026.11.25", "timestamp": 0, "signed": false, "proxy": "none"}]),
        "{about}"
    );
    assert_eq!(
        about["signatures"],
        json!({"on": false, "keys": []}),
        "{about}"
    );

    let removed = env.spkctl_json(&["remove", "qt6"]).await;
    removed.assert_success();
    assert_eq!(
        removed.json()["packages"],
        json!([{"name": "qt6", "version": "6.10.1-1"}]),
        "{removed}"
    );
}

/// The sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn dry_runs_show_the_plan_and_change_nothing() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;
    let size = |repo: &Repo| repo.get("plasma").size;

    let before = env.snapshot();
    let install = env.spkctl(&["install", "--dry-run", "plasma"]).await;
    install.assert_success();
    assert!(
        install
            .stdout
            .starts_with("Packages (1):\n  install   plasma  1\nDownload "),
        "{install}"
    );
    assert!(install.stdout.contains("; installed size "), "{install}");
    before.assert_untouched(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty(), "a dry run downloaded");
    assert_eq!(
        env.spkctl_json(&["info", "plasma"]).await.json()["state"],
        "available"
    );

    env.spkctl(&["install", "plasma"]).await.assert_success();
    let v2 = Repo::new().with(plasma("2")).with(qt6());
    env.publish(&v2);
    env.server.clear_requests();
    let before = env.snapshot();

    let upgrade = env.spkctl(&["upgrade", "--dry-run"]).await;
    upgrade.assert_success();
    assert!(
        upgrade.stdout.contains("  upgrade   plasma  1 -> 2\n"),
        "{upgrade}"
    );
    let json = env.spkctl_json(&["upgrade", "--dry-run"]).await;
    json.assert_success();
    assert_eq!(
        json.json(),
        json!({
            "changes": [{
                "name": "plasma", "action": "upgrade", "from": "1", "to": "2",
                "download": size(&v2), "installed-size": v2.get("plasma").installed_size,
            }],
            "download": size(&v2),
        }),
        "{json}"
    );
    let remove = env.spkctl(&["remove", "--dry-run", "plasma"]).await;
    remove.assert_success();
    assert!(
        remove
            .stdout
            .starts_with("Packages (1):\n  remove    plasma  1\nFrees about "),
        "{remove}"
    );
    // Through D-Bus: option `dry-run` finishes without touching anything.
    let client = env.client().await;
    let mut watch = client.watch().await;
    let options = HashMap::from([("dry-run", zbus::zvariant::Value::from(true))]);
    let path = client.install(&["qt6"], options).await.unwrap();
    let log = watch
        .until_finished(path.as_str(), Duration::from_secs(60))
        .await;
    assert_eq!(log.finished.0, "finished", "{log:#?}");
    assert!(log.package_done.is_empty(), "{log:#?}");

    before.assert_untouched(&env.snapshot());
    assert!(
        env.server.tarball_gets().is_empty(),
        "a dry run downloaded: {:?}",
        env.server.tarball_gets()
    );
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(info.json()["installed-version"], "1", "{info}");
}

/// A mirror slow enough (160 KiB/s, 1.6 s for plasma) that progress is drawn mid-download.
fn slow_mirror_for_bars(env: &Env) {
    env.server.set_fault_times(
        PLASMA_TARBALL,
        Fault::Throttle {
            chunk: 16 * 1024,
            every: Duration::from_millis(100),
        },
        1,
    );
}

#[tokio::test]
async fn answering_no_at_the_prompt_changes_nothing() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    let before = env.snapshot();

    let run = on_terminal(&env, &["install", "plasma"], "n\n", &[]).await;

    assert_eq!(run.code, Some(1), "{run}");
    for shown in [
        "Packages (1):",
        "install   plasma  1",
        "Download ",
        "Proceed? [Y/n]",
        "Nothing was changed.",
    ] {
        assert!(run.screen.contains(shown), "{shown:?} not shown: {run}");
    }
    before.assert_untouched(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty(), "{run}");
}

#[tokio::test]
async fn answering_yes_at_the_prompt_installs() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;

    let run = on_terminal(&env, &["install", "plasma"], "y\n", &[]).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.screen.contains("Proceed? [Y/n]"), "{run}");
    assert!(
        run.screen.contains("Installed 1 package (plasma 1) in "),
        "{run}"
    );
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
}

#[tokio::test]
async fn a_terminal_shows_progress_and_one_summary_line() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    slow_mirror_for_bars(&env);

    let run = on_terminal(&env, &["--yes", "install", "plasma"], "", &[]).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.screen.contains('\x1b'),
        "a progress bar redraws with escape codes: {run}"
    );
    let plain = strip_escapes(&run.screen);
    let bar_lines: Vec<&str> = plain
        .split(['\r', '\n'])
        .filter(|l| {
            l.contains("plasma")
                && l.contains("downloading")
                && l.contains('[')
                && l.contains("KiB/")
        })
        .collect();
    assert!(
        !bar_lines.is_empty(),
        "no progress line with the package, its stage, a bar and its bytes: {run}"
    );
    assert!(
        plain
            .split(['\r', '\n'])
            .any(|l| l.trim_start().starts_with("total ")
                && l.contains(" of 1 done")
                && l.contains('[')),
        "no total line with the packages done and a bar: {run}"
    );
    let summary: Vec<&str> = plain
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("Installed 1 package (plasma 1) in "))
        .collect();
    assert_eq!(summary.len(), 1, "one summary line: {run}");
    let summary = summary[0];
    assert!(
        summary.contains(" s, ") && summary.ends_with(" downloaded."),
        "{summary:?}"
    );
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
}

#[tokio::test]
async fn a_narrow_terminal_gets_progress_lines_that_fit() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    slow_mirror_for_bars(&env);

    let run = on_terminal_sized(&env, &["--yes", "install", "plasma"], "", &[], 50).await;

    assert_eq!(run.code, Some(0), "{run}");
    let lines = drawn_lines(&run.screen, 50);
    let progress: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("plasma downloading") || l.trim_start().starts_with("total"))
        .collect();
    assert!(
        progress.iter().any(|l| l.contains("plasma downloading")),
        "{run}"
    );
    for line in &progress {
        assert!(
            line.chars().count() <= 50 && line.contains('%'),
            "a progress line wider than the 50-column terminal, or without its percentage: {line:?}"
        );
    }
    assert!(
        strip_escapes(&run.screen).contains("Installed 1 package (plasma 1) in "),
        "{run}"
    );
}

#[tokio::test]
async fn no_color_on_a_terminal_means_no_escape_codes() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.server
        .set_fault_times(PLASMA_TARBALL, Fault::Stall(Duration::from_millis(500)), 1);

    let run = on_terminal(&env, &["install", "plasma"], "y\n", &[("NO_COLOR", "1")]).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.screen.contains("Proceed? [Y/n]"), "{run}");
    assert!(
        run.screen.contains("Installed 1 package (plasma 1) in "),
        "{run}"
    );
    assert!(
        !run.screen.contains('\x1b'),
        "escape codes despite NO_COLOR: {run}"
    );
}

#[tokio::test]
async fn ctrl_c_on_a_terminal_asks_before_cancelling() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;
    let before = env.snapshot();
    // A slow mirror (5 KiB/s): the download makes progress and is far from done.
    env.server.set_fault(
        PLASMA_TARBALL,
        Fault::Throttle {
            chunk: 1024,
            every: Duration::from_millis(200),
        },
    );
    let mut child = terminal::spkctl(
        &env,
        &["--yes", "install", "plasma"],
        &[],
        terminal::COLUMNS,
    )
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    // The bar appears once spkctl follows the transaction (its Ctrl-C handler is in place).
    read_until(&mut stdout, &mut seen, "plasma").await;

    // Ctrl-C, then "no": the transaction goes on.
    stdin.write_all(b"\x03").await.unwrap();
    read_until(
        &mut stdout,
        &mut seen,
        "Cancel the running transaction? [y/N]",
    )
    .await;
    stdin.write_all(b"n\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = env.client().await;
    let path = client.transactions().await.pop().expect("a transaction");
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "downloading",
        "answering no must not cancel:\n{seen}"
    );

    // Ctrl-C, then "yes": cancelled, and spkctl exits 1.
    let asked = seen.matches("Cancel the running transaction?").count();
    stdin.write_all(b"\x03").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.matches("Cancel the running transaction?").count() == asked {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("asked only once:\n{seen}"))
            .unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    stdin.write_all(b"y\n").await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("spkctl did not end after cancelling:\n{seen}"))
        .unwrap();
    seen.push_str(&rest);
    let status = child.wait().await.unwrap();

    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(seen.contains("Cancelling"), "{seen}");
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "cancelled"
    );
    before.assert_untouched(&env.snapshot());
    drop(stdin);
}

/// Read the terminal until it has shown nothing new for `quiet` (or for at most 5 s), adding
/// what is read to `seen`.
async fn read_while_drawing(
    stdout: &mut tokio::process::ChildStdout,
    seen: &mut String,
    quiet: Duration,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while tokio::time::Instant::now() < deadline
        && let Ok(read) = tokio::time::timeout(quiet, stdout.read(&mut buf)).await
    {
        let n = read.unwrap();
        if n == 0 {
            return;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Read the terminal to its end (spkctl exited) and wait for the exit status; panic after 20 s.
async fn read_to_exit(
    child: &mut tokio::process::Child,
    stdout: &mut tokio::process::ChildStdout,
    seen: &mut String,
) -> std::process::ExitStatus {
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("spkctl did not end:\n{seen}"))
        .unwrap();
    seen.push_str(&rest);
    child.wait().await.unwrap()
}

#[tokio::test]
async fn ctrl_c_at_the_prompt_changes_nothing() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    let before = env.snapshot();
    let mut child = terminal::spkctl(&env, &["install", "plasma"], &[], terminal::COLUMNS)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "Proceed? [Y/n]").await;

    stdin.write_all(b"\x03").await.unwrap();
    let status = read_to_exit(&mut child, &mut stdout, &mut seen).await;

    assert_eq!(status.code(), Some(1), "{seen}");
    let after = &seen[seen.find("Proceed? [Y/n]").unwrap()..];
    assert!(after.contains("Nothing was changed."), "{seen}");
    before.assert_untouched(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty(), "{seen}");
    drop(stdin);
}

#[tokio::test]
async fn ctrl_c_then_no_asks_on_a_line_of_its_own_and_the_bars_come_back() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    // 80 KiB/s: about 3 s for plasma, time enough to ask.
    env.server.set_fault_times(
        PLASMA_TARBALL,
        Fault::Throttle {
            chunk: 8 * 1024,
            every: Duration::from_millis(100),
        },
        1,
    );
    let mut child = terminal::spkctl(
        &env,
        &["--yes", "install", "plasma"],
        &[],
        terminal::COLUMNS,
    )
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "downloading").await;

    stdin.write_all(b"\x03").await.unwrap();
    let question = "Cancel the running transaction? [y/N]";
    read_until(&mut stdout, &mut seen, question).await;
    // The download goes on while the question waits; nothing is drawn over it.
    read_while_drawing(&mut stdout, &mut seen, Duration::from_millis(700)).await;
    let asked = seen.rfind(question).unwrap();
    let meanwhile = &seen[asked + question.len()..];
    assert!(
        !meanwhile.contains("plasma") && !meanwhile.contains('\x1b'),
        "the bars were drawn over the question: {:?}",
        seen.escape_debug()
    );
    stdin.write_all(b"n\n").await.unwrap();
    let status = read_to_exit(&mut child, &mut stdout, &mut seen).await;

    assert_eq!(status.code(), Some(0), "{seen}");
    assert_eq!(seen.matches(question).count(), 1, "{seen}");
    let lines = drawn_lines(&seen, usize::from(terminal::COLUMNS));
    let asking: Vec<&String> = lines.iter().filter(|l| l.contains(question)).collect();
    assert_eq!(asking.len(), 1, "{lines:#?}");
    assert!(
        asking[0].starts_with(question) && matches!(asking[0][question.len()..].trim(), "" | "n"),
        "the question is not on a line of its own: {lines:#?}"
    );
    let after = strip_escapes(&seen[asked..]);
    assert!(
        after.contains("plasma") && after.contains("total"),
        "the bars did not come back after the answer: {after:?}"
    );
    assert!(
        after.contains("Installed 1 package (plasma 1) in "),
        "{seen}"
    );
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
    drop(stdin);
}

#[tokio::test]
async fn ctrl_c_twice_cancels_without_asking_again() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    let before = env.snapshot();
    // 5 KiB/s: far from done when cancelled.
    env.server.set_fault(
        PLASMA_TARBALL,
        Fault::Throttle {
            chunk: 1024,
            every: Duration::from_millis(200),
        },
    );
    let mut child = terminal::spkctl(
        &env,
        &["--yes", "install", "plasma"],
        &[],
        terminal::COLUMNS,
    )
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "downloading").await;

    stdin.write_all(b"\x03").await.unwrap();
    let question = "Cancel the running transaction? [y/N]";
    read_until(&mut stdout, &mut seen, question).await;
    stdin.write_all(b"\x03").await.unwrap();
    let status = read_to_exit(&mut child, &mut stdout, &mut seen).await;

    assert_eq!(status.code(), Some(1), "{seen}");
    assert_eq!(seen.matches(question).count(), 1, "asked twice:\n{seen}");
    assert!(seen.contains("Cancelling"), "{seen}");
    let client = env.client().await;
    let path = client.transactions().await.pop().expect("a transaction");
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "cancelled",
        "{seen}"
    );
    before.assert_untouched(&env.snapshot());
    drop(stdin);
}
