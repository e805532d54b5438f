//! A real `polkitd` for one test, on a [`SystemBus`] started with
//! [`SystemBus::start_with_polkit`], so spkd's authorization is decided by polkit itself.
//!
//! polkitd reads its actions from `/usr/share/polkit-1/actions` and its rules from
//! `/etc/polkit-1/rules.d` and `/usr/share/polkit-1/rules.d`, paths fixed at build time. It runs
//! here in a private mount namespace (`unshare --mount`) where those three are bind mounts of the
//! test's directories: the actions are the repository's `dbus/xyz.smech.spk.policy` alone, the
//! rules are the test's own. The host's polkit configuration is neither read nor touched. As on
//! a real system, polkitd starts as root and switches to the user `polkitd` itself.
//!
//! With no authentication agent registered, an action whose answer is `auth_admin` (or
//! `auth_self`) is refused, as a script without a desktop session is refused on a real system.
//!
//! Needs root, util-linux (`unshare`, `setpriv`) and Debian's `polkitd` package
//! (`/usr/lib/polkit-1/polkitd`, the `polkitd` user, `pkaction`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::workspace_root;
use crate::system_bus::SystemBus;

/// Where Debian's `polkitd` package installs the daemon.
pub const POLKITD: &str = "/usr/lib/polkit-1/polkitd";
/// polkit's name on the system bus.
pub const NAME: &str = "org.freedesktop.PolicyKit1";
/// How long polkitd may take to load its rules and own its name.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running polkitd; killed on drop.
pub struct Polkit {
    child: Child,
    log: PathBuf,
    address: String,
}

impl Polkit {
    /// Start polkitd on `bus` with spk's actions and `rules` (JavaScript, as a file of
    /// `rules.d`), its files under `dir` (which the user `polkitd` must be able to read: the
    /// [`SystemBus`] directory is).
    pub async fn start(bus: &SystemBus, dir: &Path, rules: &str) -> Polkit {
        let base = dir.join("polkit");
        let (actions, rules_dir, empty) = (
            base.join("actions"),
            base.join("rules.d"),
            base.join("empty"),
        );
        for d in [&actions, &rules_dir, &empty] {
            std::fs::create_dir_all(d).expect("create polkit directories");
        }
        std::fs::copy(
            workspace_root().join("dbus/xyz.smech.spk.policy"),
            actions.join("xyz.smech.spk.policy"),
        )
        .expect("copy dbus/xyz.smech.spk.policy");
        std::fs::write(rules_dir.join("50-spk-test.rules"), rules).expect("write polkit rules");
        let log = base.join("polkitd.log");
        let script = format!(
            "mount --bind '{}' /usr/share/polkit-1/actions && \
             mount --bind '{}' /etc/polkit-1/rules.d && \
             mount --bind '{}' /usr/share/polkit-1/rules.d && exec {POLKITD}",
            actions.display(),
            rules_dir.display(),
            empty.display()
        );
        let out = std::fs::File::create(&log).expect("create polkitd log");
        let child = Command::new("setpriv")
            // Should the test die before dropping this, polkitd exits with the bus anyway.
            .args(["--pdeathsig", "KILL", "unshare", "--mount"])
            .args(["--propagation", "private", "--", "sh", "-c", &script])
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("polkitd log"))
            .stderr(out)
            .spawn()
            .expect("run unshare (util-linux)");
        let mut polkit = Polkit {
            child,
            log,
            address: bus.address().to_owned(),
        };
        polkit.wait_ready(bus).await;
        polkit
    }

    async fn wait_ready(&mut self, bus: &SystemBus) {
        let conn = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .expect("org.freedesktop.DBus proxy");
        let name = zbus::names::BusName::try_from(NAME).expect("bus name");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if dbus.name_has_owner(name.clone()).await.unwrap_or(false) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "polkitd exited ({status}) before owning {NAME} (is Debian's polkitd \
                     installed, {POLKITD}?):\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "polkitd did not own {NAME} within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What polkitd logged (rules loaded, errors of rules).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// `pkaction --verbose --action-id ID` asked of this polkitd: the action as polkit loaded
    /// it (description, implicit authorizations).
    pub fn describe_action(&self, id: &str) -> String {
        let out = Command::new("pkaction")
            .args(["--verbose", "--action-id", id])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .output()
            .expect("run pkaction (polkitd package)");
        assert!(
            out.status.success(),
            "pkaction --action-id {id} failed ({}): {}\npolkitd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Polkit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
