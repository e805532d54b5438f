//! Who may do what, on a bus configured like the system bus (with spk's policy file) and without
//! polkit: root may do everything; `nobody` may read (list, info, and verify, without hashes,
//! sizes or modes) but every change is refused by spkd with `NotAuthorized`, naming the uid and
//! the action, and the root stays as it was. The uid comes from the bus, so the tests run
//! `spkctl` (and a plain D-Bus client) as nobody. With a real polkit: `polkit.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use spk_tests::client::{Client, TRANSACTION, TRANSACTION_TIMEOUT};
use spk_tests::daemon::Spkd;
use spk_tests::fixture::index_config;
use spk_tests::system_bus::{SystemBus, as_nobody, binary_for_everyone};
use spk_tests::{Fault, HttpServer, Package, Repo, Snapshot};

/// spkd on a system-like bus, its repository, and spkctl where nobody can run it.
struct SystemScene {
    spkd: Spkd,
    server: HttpServer,
    bus: SystemBus,
    root: PathBuf,
    spkctl: PathBuf,
    /// Holds the bus socket and the root; deleted on drop.
    _dir: tempfile::TempDir,
}

impl SystemScene {
    async fn new(repo: &Repo) -> SystemScene {
        let dir = tempfile::Builder::new()
            .prefix("spk-auth-")
            .tempdir()
            .expect("temporary directory");
        let server = HttpServer::start();
        repo.publish(&server);
        let root = dir.path().join("root");
        let config = root.join("etc/spk/spk.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, index_config(&server)).unwrap();
        let bus = SystemBus::start(dir.path());
        let spkd = Spkd::start(&root, &config, bus.address(), &dir.path().join("spkd.log")).await;
        let spkctl = binary_for_everyone("spkctl", dir.path());
        SystemScene {
            spkd,
            server,
            bus,
            root,
            spkctl,
            _dir: dir,
        }
    }

    /// `spkctl --bus ADDR --no-progress --yes ARGS` as root.
    async fn as_root(&self, args: &[&str]) -> spk_tests::daemon::CtlOutput {
        let mut all = vec!["--bus", self.bus.address(), "--no-progress", "--yes"];
        all.extend_from_slice(args);
        spk_tests::daemon::spkctl(&all).await
    }

    /// `spkctl --bus ADDR --no-progress --yes ARGS` as nobody.
    async fn as_nobody(&self, args: &[&str]) -> Output {
        let mut command = as_nobody(&self.spkctl);
        command
            .args(["--bus", self.bus.address(), "--no-progress", "--yes"])
            .args(args);
        tokio::task::spawn_blocking(move || command.output().expect("run spkctl as nobody"))
            .await
            .unwrap()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.root)
    }

    fn context(&self) -> String {
        format!(
            "bus log:\n{}\nspkd log:\n{}",
            self.bus.log(),
            self.spkd.log()
        )
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn repo() -> Repo {
    Repo::new()
        .with(Package::new("plasma", "1").file("usr/share/plasma/version", "1\n", 0o644))
        .with(Package::new("qt6", "1").file("usr/lib/libQt6Core.so.6", "qt\n", 0o755))
}

#[tokio::test]
async fn nobody_may_read_but_every_change_is_not_authorized() {
    let scene = SystemScene::new(&repo()).await;
    scene.as_root(&["install", "plasma"]).await.assert_success();
    scene.server.put(
        "/repo/index.json",
        serde_json::to_vec(
            &Repo::new()
                .with(Package::new("plasma", "2").file("usr/share/plasma/version", "2\n", 0o644))
                .index(),
        )
        .unwrap(),
    );
    let before = scene.snapshot();
    scene.server.clear_requests();

    // Reading is open to all.
    let list = scene.as_nobody(&["--json", "list"]).await;
    assert!(
        list.status.success(),
        "{}\n{}",
        show(&list),
        scene.context()
    );
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON list");
    assert!(
        rows.as_array().is_some_and(|r| r
            .iter()
            .any(|p| p["name"] == "plasma" && p["state"] == "installed")),
        "{rows}"
    );
    let info = scene.as_nobody(&["--json", "info", "plasma"]).await;
    assert!(info.status.success(), "{}", show(&info));

    // Every change is refused by spkd, naming the uid and the action.
    for (args, action) in [
        (&["install", "qt6"][..], "install"),
        (&["upgrade"][..], "upgrade"),
        (&["upgrade", "plasma"][..], "upgrade"),
        (&["remove", "plasma"][..], "remove"),
        (&["check"][..], "refresh"),
    ] {
        let out = scene.as_nobody(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(
            stderr.contains(&format!("error: uid 65534 may not {action}: ")),
            "{args:?}: {}\n{}",
            show(&out),
            scene.context()
        );
    }
    before.assert_untouched(&scene.snapshot());
    assert!(
        scene.server.tarball_gets().is_empty(),
        "a refused caller made spkd download"
    );

    // What a D-Bus client running as nobody receives: the NotAuthorized error itself.
    let reply = call_install_as_nobody(&scene).await;
    assert!(
        reply.contains("GDBus.Error:xyz.smech.Spk1.Error.NotAuthorized: uid 65534 may not install"),
        "{reply}"
    );
    before.assert_untouched(&scene.snapshot());
}

#[tokio::test]
async fn nobody_may_not_cancel_a_transaction_of_root() {
    let scene = SystemScene::new(&repo()).await;
    scene.server.set_fault_times(
        "/repo/plasma.tar.xz",
        Fault::Stall(Duration::from_secs(3)),
        1,
    );
    let conn = scene.bus.connect().await;
    let client = Client { conn };
    let mut watch = client.watch().await;
    let path = client
        .install(&["plasma"], HashMap::new())
        .await
        .expect("root may install");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while scene.server.tarball_gets().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no download started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let number = path.as_str().rsplit('/').next().unwrap().to_string();
    let out = scene.as_nobody(&["cancel", &number]).await;

    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("uid 65534 may not cancel another user's transaction"),
        "{}",
        show(&out)
    );
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "downloading"
    );
    let log = watch
        .until_finished(path.as_str(), TRANSACTION_TIMEOUT)
        .await;
    assert_eq!(log.finished.0, "finished", "{log:#?}");
    assert!(scene.root.join("usr/share/plasma/version").is_file());
}

/// Call `Install(["qt6"], {})` as nobody with a plain D-Bus client (`gdbus`, not spkctl), so
/// the error name the bus delivers is seen as any client would see it.
async fn call_install_as_nobody(scene: &SystemScene) -> String {
    let mut command = as_nobody(Path::new("/usr/bin/gdbus"));
    command.args([
        "call",
        "--address",
        scene.bus.address(),
        "--dest",
        "xyz.smech.Spk1",
        "--object-path",
        "/xyz/smech/Spk1",
        "--method",
        "xyz.smech.Spk1.Manager.Install",
        "['qt6']",
        "{}",
    ]);
    let out = tokio::task::spawn_blocking(move || command.output().expect("run gdbus"))
        .await
        .unwrap();
    show(&out)
}

/// `spkctl --json verify` output as `(path, kind, problem)` rows, sorted by path.
fn verify_rows(stdout: &[u8]) -> Vec<(String, String, String)> {
    let rows: serde_json::Value = serde_json::from_slice(stdout).expect("verify --json");
    let mut out: Vec<(String, String, String)> = rows
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (field("path"), field("kind"), field("problem"))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn verify_tells_nobody_what_changed_but_no_hash_size_or_mode() {
    let secret = "psk=\"hunter2\"\n";
    let wifi = Package::new("wifi", "1")
        .file("etc/wifi/psk.conf", secret, 0o600)
        .file("usr/share/wifi/resized", "12345\n", 0o644)
        .file("usr/share/wifi/same-size", "abcd\n", 0o644)
        .file("usr/bin/wifi", "#!/bin/sh\n", 0o755);
    let scene = SystemScene::new(&Repo::new().with(wifi)).await;
    scene.as_root(&["install", "wifi"]).await.assert_success();
    // The admin sets the real key (root-only, like the one shipped), and other files change.
    std::fs::write(
        scene.root.join("etc/wifi/psk.conf"),
        "psk=\"correct horse\"\n",
    )
    .unwrap();
    std::fs::write(scene.root.join("usr/share/wifi/resized"), "12\n").unwrap();
    std::fs::write(scene.root.join("usr/share/wifi/same-size"), "wxyz\n").unwrap();
    std::fs::set_permissions(
        scene.root.join("usr/bin/wifi"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();

    let nobody = scene.as_nobody(&["--json", "verify"]).await;
    let root = scene.as_root(&["--json", "verify"]).await;

    // Both see which files changed, and how (the same exit code: damage outside etc/).
    assert_eq!(nobody.status.code(), Some(1), "{}", show(&nobody));
    root.assert_code(1);
    let shown = verify_rows(&nobody.stdout);
    assert_eq!(
        shown,
        [
            (
                "etc/wifi/psk.conf",
                "config",
                "configuration file changed locally"
            ),
            ("usr/bin/wifi", "mode", "mode changed"),
            ("usr/share/wifi/resized", "content", "content changed"),
            ("usr/share/wifi/same-size", "content", "content changed"),
        ]
        .map(|(p, k, m)| (p.to_owned(), k.to_owned(), m.to_owned())),
        "{}\n{}",
        show(&nobody),
        scene.context()
    );
    // No hash, size or mode: no digit at all.
    for (path, _, problem) in &shown {
        assert!(
            !problem.contains(|c: char| c.is_ascii_digit()) && !problem.contains("expected"),
            "{path}: {problem:?} shown to nobody"
        );
    }
    // The plain listing is the same, as a person reads it.
    let plain = scene.as_nobody(&["verify"]).await;
    assert!(
        String::from_utf8_lossy(&plain.stdout)
            .contains("wifi: /etc/wifi/psk.conf: configuration file changed locally\n"),
        "{}",
        show(&plain)
    );

    // Root is told the detail.
    let told = verify_rows(root.stdout.as_bytes());
    let problem = |path: &str| {
        told.iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("{path} not reported to root: {told:?}"))
    };
    assert_eq!(
        problem("etc/wifi/psk.conf"),
        format!(
            "configuration file changed locally (size 20, expected {})",
            secret.len()
        )
    );
    assert_eq!(problem("usr/bin/wifi"), "mode 0700, expected 0755");
    assert_eq!(
        problem("usr/share/wifi/resized"),
        "content changed (size 3, expected 6)"
    );
    assert!(
        problem("usr/share/wifi/same-size").starts_with("content changed (sha256 "),
        "{told:?}"
    );
}
