//! Authorization decided by a real polkitd (see `spk_tests::polkit`), on a bus configured like
//! the system bus, for `nobody` (via `setpriv`): the rules of this file let nobody install,
//! upgrade, remove and refresh without a password, as a distribution lets its desktop users.
//! Even then, taking over files (`force`, `adopt`) needs `xyz.smech.spk.force`, which always
//! asks for an admin password; and nobody may have at most 4 transactions queued or running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use spk_tests::client::{Client, TRANSACTION, TRANSACTION_TIMEOUT};
use spk_tests::daemon::Spkd;
use spk_tests::fixture::index_config;
use spk_tests::polkit::Polkit;
use spk_tests::system_bus::{SystemBus, as_nobody, binary_for_everyone};
use spk_tests::{Fault, HttpServer, Package, Repo, Snapshot};

/// nobody may do what an active desktop user may on a typical system, without a password;
/// nothing is said of `xyz.smech.spk.force`, so its defaults hold.
const RULES: &str = r#"
polkit.addRule(function(action, subject) {
    var allowed = ["xyz.smech.spk.install", "xyz.smech.spk.upgrade",
                   "xyz.smech.spk.remove", "xyz.smech.spk.refresh"];
    if (subject.user == "nobody" && allowed.indexOf(action.id) >= 0) {
        return polkit.Result.YES;
    }
});
"#;

/// spkd on a system-like bus with a real polkitd, its repository, and spkctl for nobody.
struct Scene {
    spkd: Spkd,
    server: HttpServer,
    polkit: Polkit,
    bus: SystemBus,
    root: PathBuf,
    spkctl: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scene {
    async fn new(repo: &Repo) -> Scene {
        let dir = tempfile::Builder::new()
            .prefix("spk-polkit-")
            .tempdir()
            .expect("temporary directory");
        let server = HttpServer::start();
        repo.publish(&server);
        let root = dir.path().join("root");
        let config = root.join("etc/spk/spk.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, index_config(&server)).unwrap();
        let bus = SystemBus::start_with_polkit(dir.path());
        let polkit = Polkit::start(&bus, dir.path(), RULES).await;
        let spkd = Spkd::start(&root, &config, bus.address(), &dir.path().join("spkd.log")).await;
        let spkctl = binary_for_everyone("spkctl", dir.path());
        Scene {
            spkd,
            server,
            polkit,
            bus,
            root,
            spkctl,
            _dir: dir,
        }
    }

    /// `spkctl --bus ADDR --no-progress --yes ARGS` as nobody.
    async fn spkctl_as_nobody(&self, args: &[&str]) -> Output {
        let mut command = as_nobody(&self.spkctl);
        command
            .args(["--bus", self.bus.address(), "--no-progress", "--yes"])
            .args(args);
        tokio::task::spawn_blocking(move || command.output().expect("run spkctl as nobody"))
            .await
            .unwrap()
    }

    /// `spkctl --bus ADDR --no-progress --yes ARGS` as root.
    async fn spkctl_as_root(&self, args: &[&str]) -> spk_tests::daemon::CtlOutput {
        let mut all = vec!["--bus", self.bus.address(), "--no-progress", "--yes"];
        all.extend_from_slice(args);
        spk_tests::daemon::spkctl(&all).await
    }

    /// A Manager method called by nobody with a plain D-Bus client (`gdbus`): the reply as
    /// gdbus prints it, or the D-Bus error.
    async fn call_as_nobody(&self, method: &str, args: &[&str]) -> Result<String, String> {
        let mut command = as_nobody(Path::new("/usr/bin/gdbus"));
        command
            .args(["call", "--address", self.bus.address()])
            .args([
                "--dest",
                "xyz.smech.Spk1",
                "--object-path",
                "/xyz/smech/Spk1",
            ])
            .args(["--method", &format!("xyz.smech.Spk1.Manager.{method}")])
            .args(args);
        let out = tokio::task::spawn_blocking(move || command.output().expect("run gdbus"))
            .await
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(show(&out))
        }
    }

    /// `Install([name], {})` by nobody: the transaction's path.
    async fn install_as_nobody(&self, name: &str) -> Result<String, String> {
        let reply = self
            .call_as_nobody("Install", &[&format!("['{name}']"), "{}"])
            .await?;
        Ok(object_path(&reply))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.root)
    }

    fn context(&self) -> String {
        format!(
            "bus log:\n{}\npolkitd log:\n{}\nspkd log:\n{}",
            self.bus.log(),
            self.polkit.log(),
            self.spkd.log()
        )
    }
}

/// The path in gdbus's `(objectpath '/xyz/smech/Spk1/transaction/3',)`.
fn object_path(reply: &str) -> String {
    reply
        .split('\'')
        .nth(1)
        .unwrap_or_else(|| panic!("no object path in {reply:?}"))
        .to_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn plasma() -> Package {
    Package::new("plasma", "1").file("usr/share/plasma/version", "1\n", 0o644)
}

/// Ships a file that plasma owns.
fn plasma_fork() -> Package {
    Package::new("plasma-fork", "1").file("usr/share/plasma/version", "fork\n", 0o644)
}

fn qt6() -> Package {
    Package::new("qt6", "1").file("usr/lib/libQt6Core.so.6", "qt\n", 0o755)
}

#[tokio::test]
async fn force_and_adopt_need_an_admin_even_when_installing_needs_nothing() {
    let scene = Scene::new(&Repo::new().with(plasma()).with(plasma_fork()).with(qt6())).await;

    // polkit loaded the action from the shipped policy: an admin password, every time.
    let action = scene.polkit.describe_action("xyz.smech.spk.force");
    for line in [
        "implicit any:      auth_admin\n",
        "implicit inactive: auth_admin\n",
        "implicit active:   auth_admin\n",
    ] {
        assert!(action.contains(line), "{line:?} not in:\n{action}");
    }

    // nobody may install (the rules say yes to xyz.smech.spk.install).
    let out = scene.spkctl_as_nobody(&["install", "plasma"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        show(&out),
        scene.context()
    );
    assert_eq!(
        std::fs::read(scene.root.join("usr/share/plasma/version")).unwrap(),
        b"1\n"
    );
    // A file on disk that no package owns, and differs from qt6's.
    std::fs::create_dir_all(scene.root.join("usr/lib")).unwrap();
    std::fs::write(scene.root.join("usr/lib/libQt6Core.so.6"), "old tool's\n").unwrap();
    let before = scene.snapshot();
    scene.server.clear_requests();

    // Taking files over is refused, naming the uid and the action; nothing is downloaded.
    for args in [
        &["install", "--force-overwrite", "plasma-fork"][..],
        &["install", "--adopt", "qt6"][..],
        &["upgrade", "--force-overwrite", "plasma"][..],
    ] {
        let out = scene.spkctl_as_nobody(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(
            stderr
                .contains("error: uid 65534 may not take over files of other packages or of none")
                && stderr.contains("xyz.smech.spk.force"),
            "{args:?}: {}\n{}",
            show(&out),
            scene.context()
        );
    }
    before.assert_untouched(&scene.snapshot());
    assert!(
        scene.server.tarball_gets().is_empty(),
        "a refused caller made spkd download: {:?}",
        scene.server.tarball_gets()
    );
    // A plain D-Bus client sees the NotAuthorized error itself.
    let reply = scene
        .call_as_nobody("Install", &["['plasma-fork']", "{'force': <true>}"])
        .await
        .expect_err("force by nobody");
    assert!(
        reply.contains(
            "GDBus.Error:xyz.smech.Spk1.Error.NotAuthorized: uid 65534 may not take over"
        ),
        "{reply}"
    );

    // Without the options, the install is authorized and meets the conflict itself.
    let out = scene.spkctl_as_nobody(&["install", "plasma-fork"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is owned by package plasma"),
        "{}",
        show(&out)
    );
    before.assert_untouched(&scene.snapshot());

    // Root needs no polkit.
    scene
        .spkctl_as_root(&["install", "--force-overwrite", "plasma-fork"])
        .await
        .assert_success();
    assert_eq!(
        std::fs::read(scene.root.join("usr/share/plasma/version")).unwrap(),
        b"fork\n"
    );
}

#[tokio::test]
async fn a_user_may_have_four_transactions_queued_or_running_and_no_more() {
    let scene = Scene::new(&Repo::new().with(plasma()).with(qt6())).await;
    // The first install's download hangs (until cancelled): the others queue behind it.
    scene.server.set_fault(
        "/repo/plasma.tar.xz",
        Fault::Stall(Duration::from_secs(600)),
    );
    let client = Client {
        conn: scene.bus.connect().await,
    };
    let mut watch = client.watch().await;

    let mut mine = Vec::new();
    for _ in 0..4 {
        let path = scene
            .install_as_nobody("plasma")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", scene.context()));
        mine.push(path);
    }
    let distinct: std::collections::BTreeSet<&String> = mine.iter().collect();
    assert_eq!(distinct.len(), 4, "{mine:?}");

    // The fifth is refused at once, and so is a Refresh (none is running to join).
    let busy = "GDBus.Error:xyz.smech.Spk1.Error.Busy: uid 65534 already has 4 transactions \
                queued or running; wait for them to finish";
    let fifth = scene.install_as_nobody("qt6").await.expect_err("a fifth");
    assert!(fifth.contains(busy), "{fifth}");
    let refresh = scene
        .call_as_nobody("Refresh", &["{}"])
        .await
        .expect_err("a refresh beyond the limit");
    assert!(refresh.contains(busy), "{refresh}");
    // spkctl says the same, and fails.
    let out = scene.spkctl_as_nobody(&["install", "qt6"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "error: uid 65534 already has 4 transactions queued or running; wait for them to finish"
        ),
        "{}",
        show(&out)
    );

    // Root is not limited.
    let roots: String = client
        .install(&["qt6"], HashMap::new())
        .await
        .expect("root may queue more")
        .as_str()
        .to_owned();

    // Once one of nobody's transactions ends, nobody may queue one more, and no more.
    scene.server.wait_for_gets("/repo/plasma.tar.xz", 1).await;
    client
        .call(&mine[0], TRANSACTION, "Cancel", &())
        .await
        .expect("root cancels nobody's first transaction");
    let ended = watch.until_finished(&mine[0], TRANSACTION_TIMEOUT).await;
    assert_eq!(ended.finished.0, "cancelled", "{ended:#?}");
    let again = scene
        .install_as_nobody("plasma")
        .await
        .unwrap_or_else(|e| panic!("a slot was free: {e}\n{}", scene.context()));
    assert!(!mine.contains(&again), "{again} {mine:?}");
    let sixth = scene
        .install_as_nobody("qt6")
        .await
        .expect_err("full again");
    assert!(sixth.contains(busy), "{sixth}");

    // Nothing was installed meanwhile; end everything.
    for path in mine[1..].iter().chain([&again, &roots]) {
        let _ = client.call(path, TRANSACTION, "Cancel", &()).await;
    }
    for path in mine[1..].iter().chain([&again, &roots]) {
        let ended = watch.until_finished(path, TRANSACTION_TIMEOUT).await;
        assert_eq!(ended.finished.0, "cancelled", "{path}: {ended:#?}");
    }
    assert!(!scene.root.join("usr/share/plasma/version").exists());
    assert!(!scene.root.join("usr/lib/libQt6Core.so.6").exists());
}
