//! A headless desktop session for spk-notifier's end-to-end tests.
//!
//! [`Desktop`] starts a private session bus (the same generated configuration as the spkd
//! test bus), `Xvfb`, the real notification server `dunst` on that display and bus, and the
//! real StatusNotifierWatcher `status-notifier-watcher` (Debian package
//! `haskell-status-notifier-item-utils`). dunst is configured so a test can see and use what a
//! user would: a rule script records every notification of "Software Updates" as dunst
//! received it, and its context menu ("dmenu") is a script that logs the offered actions and
//! picks "Install updates now" (or what [`Desktop::pick`] names). [`session::Notifier`]
//! runs the real `spk-notifier` binary against both buses, [`Session`] puts it together with
//! the `spk-tests` fixture, [`Item`] reads and clicks the tray item as Plasma's tray would, and
//! [`CallMonitor`] shows the header flags of calls on spkd's bus. Everything is killed on drop; the logs are printed when a test fails.

mod item;
mod monitor;
mod session;

pub use item::Item;
pub use monitor::CallMonitor;
pub use session::Session;

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spk_tests::bus::Bus;
use zbus::Connection;
use zbus::zvariant::OwnedValue;

/// The bus name of a StatusNotifierWatcher.
pub const WATCHER: &str = "org.kde.StatusNotifierWatcher";
/// How long one expected change may take to show.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A child process killed on drop.
pub(crate) struct Process {
    name: &'static str,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Kill it now (a session ending), and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn spawn(name: &'static str, command: &mut Command) -> Process {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}); run .ci/run to install it"));
        Process { name, child }
    }

    #[track_caller]
    pub(crate) fn assert_running(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}; its log:\n{}",
                self.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// One notification as dunst received it (from its rule script's environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub app_name: String,
    pub summary: String,
    pub body: String,
    pub id: String,
    pub urgency: String,
    pub desktop_entry: String,
    pub timeout: String,
    /// The `value` hint dunst draws as a progress bar ("-1": none).
    pub progress: String,
}

/// Xvfb + dunst + status-notifier-watcher on a private session bus.
pub struct Desktop {
    pub(crate) dir: PathBuf,
    // Dropped in this order: clients first, the bus last.
    pub conn: Connection,
    watcher: Process,
    dunst: Process,
    _xvfb: Process,
    pub bus: Bus,
}

impl Desktop {
    /// Start the session in `dir` (created) and wait until the watcher and the notification
    /// server own their names.
    pub async fn start(dir: &Path) -> Desktop {
        std::fs::create_dir_all(dir).expect("session directory");
        let bus = Bus::start(dir);

        let mut xvfb = Process::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-nolisten",
                    "tcp",
                    "-screen",
                    "0",
                    "800x600x24",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(File::create(dir.join("xvfb.log")).expect("xvfb log")),
        );
        // Xvfb writes the display number it chose once it accepts clients.
        let mut line = String::new();
        let stdout = xvfb.child.stdout.take().expect("Xvfb stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read Xvfb display");
        let display = format!(":{}", line.trim());
        assert!(line.trim().parse::<u32>().is_ok(), "Xvfb printed {line:?}");

        let dmenu = script(
            dir,
            "dmenu.sh",
            &format!(
                "#!/bin/sh\n# dunst's context menu: log what is offered, pick Install \
                 updates now or what pick.txt names.\n\
                 cat > '{log}'\nwanted=$(cat '{pick}' 2>/dev/null || echo 'Install updates now')\n\
                 grep -m1 -F \"#$wanted\" '{log}'\n",
                log = dir.join("menu.txt").display(),
                pick = dir.join("pick.txt").display()
            ),
        );
        let record = script(
            dir,
            "record.sh",
            &format!(
                "#!/bin/sh\n# A dunst rule script: one record per notification, NUL-separated.\n\
                 printf 'app=%s\\0summary=%s\\0body=%s\\0id=%s\\0urgency=%s\\0desktop=%s\\0timeout=%s\\0progress=%s\\036' \
                 \"$DUNST_APP_NAME\" \"$DUNST_SUMMARY\" \"$DUNST_BODY\" \"$DUNST_ID\" \"$DUNST_URGENCY\" \
                 \"$DUNST_DESKTOP_ENTRY\" \"$DUNST_TIMEOUT\" \"$DUNST_PROGRESS\" >> '{}'\n",
                dir.join("notifications.log").display()
            ),
        );
        let dunstrc = dir.join("dunstrc");
        std::fs::write(
            &dunstrc,
            format!(
                "[global]\ndmenu = {}\n\n[software-updates]\nappname = \"Software Updates\"\n\
                 script = {}\n# stay on screen for the whole test\ntimeout = 0\n",
                dmenu.display(),
                record.display()
            ),
        )
        .expect("write dunstrc");
        let dunst = Process::spawn(
            "dunst",
            Command::new("dunst")
                .arg("-config")
                .arg(&dunstrc)
                .env("DISPLAY", &display)
                .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.join("dunst.log")).expect("dunst log")),
        );
        let watcher = Process::spawn(
            "status-notifier-watcher",
            Command::new("status-notifier-watcher")
                .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.join("watcher.log")).expect("watcher log")),
        );
        let conn = bus.connect().await;
        let mut desktop = Desktop {
            dir: dir.to_path_buf(),
            conn,
            watcher,
            dunst,
            _xvfb: xvfb,
            bus,
        };
        for name in [WATCHER, "org.freedesktop.Notifications"] {
            let deadline = Instant::now() + TIMEOUT;
            while !desktop.has_owner(name).await {
                desktop.dunst.assert_running(&dir.join("dunst.log"));
                desktop.watcher.assert_running(&dir.join("watcher.log"));
                assert!(
                    Instant::now() < deadline,
                    "nothing owns {name} on the session bus"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        desktop
    }

    /// Whether `name` has an owner on the session bus.
    pub async fn has_owner(&self, name: &str) -> bool {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn)
            .await
            .expect("DBus proxy");
        let name = zbus::names::BusName::try_from(name.to_owned()).expect("bus name");
        dbus.name_has_owner(name).await.unwrap_or(false)
    }

    /// `dunstctl ARGS` on this session; its stdout.
    pub fn dunstctl(&self, args: &[&str]) -> String {
        let out = Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address())
            .output()
            .expect("run dunstctl");
        assert!(
            out.status.success(),
            "dunstctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The notifications dunst received, in order.
    pub fn received(&self) -> Vec<Received> {
        let raw = std::fs::read(self.dir.join("notifications.log")).unwrap_or_default();
        let raw = String::from_utf8_lossy(&raw);
        raw.split('\u{1e}')
            .filter(|r| !r.is_empty())
            .map(|record| {
                let fields: HashMap<&str, &str> = record
                    .split('\0')
                    .filter_map(|f| f.split_once('='))
                    .collect();
                let get = |k: &str| fields.get(k).copied().unwrap_or_default().to_owned();
                Received {
                    app_name: get("app"),
                    summary: get("summary"),
                    body: get("body"),
                    id: get("id"),
                    urgency: get("urgency"),
                    desktop_entry: get("desktop"),
                    timeout: get("timeout"),
                    progress: get("progress"),
                }
            })
            .collect()
    }

    /// Make dunst's context menu pick the action labelled `label` (instead of "Install updates
    /// now").
    pub fn pick(&self, label: &str) {
        std::fs::write(self.dir.join("pick.txt"), label).expect("write pick.txt");
    }

    /// What dunst's context menu offered (the lines it gave "dmenu"), once it was opened.
    pub fn context_menu(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("menu.txt")).ok()
    }

    /// The watcher's `RegisteredStatusNotifierItems`.
    pub async fn registered_items(&self) -> Vec<String> {
        let value = self
            .get_property(
                WATCHER,
                "/StatusNotifierWatcher",
                WATCHER,
                "RegisteredStatusNotifierItems",
            )
            .await
            .expect("watcher property");
        <Vec<String>>::try_from(value).expect("as")
    }

    /// `Properties.Get` on the session bus.
    pub async fn get_property(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        name: &str,
    ) -> zbus::Result<OwnedValue> {
        let reply = self
            .conn
            .call_method(
                Some(dest),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(iface, name),
            )
            .await?;
        reply.body().deserialize::<OwnedValue>()
    }

    /// The logs of the desktop's processes.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["dunst.log", "watcher.log", "xvfb.log", "menu.txt"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            all.push_str(&format!("----- {name} -----\n{text}\n"));
        }
        all
    }
}

/// Write an executable script.
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Poll `probe` every 50 ms until it returns `Ok`, or panic after [`TIMEOUT`] saying what
/// was awaited and what the last probe saw.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
