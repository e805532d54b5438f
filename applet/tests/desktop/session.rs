//! The real `spk-notifier` process, and a [`Session`]: spkd (the `spk-tests` fixture), a
//! headless desktop and the notifier between them.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Desktop, Item, Process, eventually};

/// The running spk-notifier.
pub struct Notifier {
    process: Process,
    log: PathBuf,
}

impl Notifier {
    /// Start `spk-notifier --bus SPKD_BUS` on `desktop`'s session bus, with the session's own
    /// settings and state directories (`DIR/config`, `DIR/state`), kept from one start to the
    /// next like a user's home.
    pub fn start(desktop: &Desktop, spkd_bus: &str) -> Notifier {
        let log = desktop.dir.join("spk-notifier.log");
        let process = Process::spawn(
            "spk-notifier",
            Command::new(env!("CARGO_BIN_EXE_spk-notifier"))
                .args(["--bus", spkd_bus, "--log-level", "debug"])
                .env("DBUS_SESSION_BUS_ADDRESS", desktop.bus.address())
                .env("XDG_CONFIG_HOME", desktop.dir.join("config"))
                .env("XDG_STATE_HOME", desktop.dir.join("state"))
                .env_remove("SPK_BUS_ADDRESS")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("notifier log")),
        );
        Notifier { process, log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panic with the log if the notifier exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        let log = self.log.clone();
        self.process.assert_running(&log);
    }
}

/// spkd with its repository and bus (the `spk-tests` fixture), a headless desktop, and
/// spk-notifier between them. On a failing test, every process's log is printed.
pub struct Session {
    pub notifier: Notifier,
    pub desktop: Desktop,
    pub env: spk_tests::Env,
}

impl Session {
    /// Publish `repo`, install `installed` from it, start the desktop and the notifier.
    pub async fn start(repo: &spk_tests::Repo, installed: &[&str]) -> Session {
        let env = spk_tests::Env::new(repo).await;
        if !installed.is_empty() {
            let mut args = vec!["install"];
            args.extend_from_slice(installed);
            env.spkctl(&args).await.assert_success();
        }
        let desktop = Desktop::start(&env.dir().join("session")).await;
        let notifier = Notifier::start(&desktop, env.bus.address());
        Session {
            notifier,
            desktop,
            env,
        }
    }

    /// The notifier's item, once the watcher lists it.
    pub async fn item(&mut self) -> Item {
        let desktop = &self.desktop;
        let notifier = &mut self.notifier;
        let entry = eventually("the watcher to list the notifier's item", || {
            notifier.assert_running();
            async move {
                let items = desktop.registered_items().await;
                items.first().cloned().ok_or_else(|| format!("{items:?}"))
            }
        })
        .await;
        Item::parse(&entry)
    }

    /// The session ends: the notifier is killed, and gone from the watcher's list.
    pub async fn stop_notifier(&mut self) {
        self.notifier.process.kill();
        let desktop = &self.desktop;
        eventually("the watcher to forget the notifier's item", || async move {
            let items = desktop.registered_items().await;
            if items.is_empty() {
                Ok(())
            } else {
                Err(format!("{items:?}"))
            }
        })
        .await;
    }

    /// The next login: a new notifier on the same desktop, settings and state (its log
    /// starts anew).
    pub fn start_notifier(&mut self) {
        self.notifier = Notifier::start(&self.desktop, self.env.bus.address());
    }

    /// Wait until the item's `Status` is `status` and its tooltip title is `title`.
    pub async fn wait_for(&self, item: &Item, status: &str, title: &str) -> (String, String) {
        let desktop = &self.desktop;
        eventually(
            &format!("the item to be {status} with {title:?}"),
            || async move {
                let now = (item.status(desktop).await, item.tooltip(desktop).await);
                if now.0 == status && now.1.0 == title {
                    Ok(now.1)
                } else {
                    Err(format!("{now:?}"))
                }
            },
        )
        .await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== spk-notifier log =====\n{}\n===== desktop logs =====\n{}",
                self.notifier.log(),
                self.desktop.logs()
            );
        }
    }
}
