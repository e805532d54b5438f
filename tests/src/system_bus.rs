//! A private `dbus-daemon` configured like the real system bus, to test spk's bus files.
//!
//! Its default policy is the one of Debian's `/usr/share/dbus-1/system.conf`: anyone may
//! connect, nobody may own a name and method calls are refused unless a service's policy file
//! punches a hole. That file is the repository's `dbus/xyz.smech.Spk1.conf`, included as the
//! system bus includes `system.d/*.conf`. With a service directory the bus also activates
//! services itself, as `dbus-daemon-launch-helper` does on a real system: it runs the `Exec=`
//! line with `DBUS_SYSTEM_BUS_ADDRESS` set to this bus.
//!
//! The socket and the directory holding it are open to every user, so a test can use the bus
//! as `nobody` ([`as_nobody`]). The daemon is killed when the [`SystemBus`] is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bus::{Bus, BusConfig};
use crate::daemon::{binary, workspace_root};

/// The default policy of Debian's `/usr/share/dbus-1/system.conf`.
const SYSTEM_DEFAULT_POLICY: &str = r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
"#;

/// polkit's policy file (the one Debian's `polkitd` installs in `system.d/`).
const POLKIT_POLICY: &str = r#"  <policy user="polkitd">
    <allow own="org.freedesktop.PolicyKit1"/>
    <allow send_interface="org.freedesktop.PolicyKit1.AuthenticationAgent"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
"#;

/// The uid and gid of `nobody`, the unprivileged caller of the policy tests.
pub const NOBODY: u32 = 65534;

/// A running system-like message bus.
pub struct SystemBus {
    bus: Bus,
    log: PathBuf,
}

impl SystemBus {
    /// Start a bus in `dir` (made world-readable) with spk's policy file.
    pub fn start(dir: &Path) -> SystemBus {
        SystemBus::start_with_services(dir, None)
    }

    /// Like [`SystemBus::start`], activating the services described in `servicedir`.
    pub fn start_with_services(dir: &Path, servicedir: Option<&Path>) -> SystemBus {
        SystemBus::start_with(dir, servicedir, &[])
    }

    /// Like [`SystemBus::start`], with polkit's policy file too (the one Debian's `polkitd`
    /// installs in `system.d/`): the user `polkitd` may own `org.freedesktop.PolicyKit1` and
    /// everyone may call it. See [`crate::polkit::Polkit`].
    pub fn start_with_polkit(dir: &Path) -> SystemBus {
        let policy = dir.join("org.freedesktop.PolicyKit1.conf");
        BusConfig {
            policies: POLKIT_POLICY,
            ..BusConfig::default()
        }
        .write(&policy);
        SystemBus::start_with(dir, None, &[&policy])
    }

    fn start_with(dir: &Path, servicedir: Option<&Path>, includes: &[&Path]) -> SystemBus {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("open the bus directory to other users");
        let config = dir.join("system-bus.conf");
        // What /usr/share/dbus-1/system.d/ holds once spk is installed, then any other files.
        let spk_policy = workspace_root().join("dbus/xyz.smech.Spk1.conf");
        let includes: Vec<&Path> = std::iter::once(spk_policy.as_path())
            .chain(includes.iter().copied())
            .collect();
        BusConfig {
            bus_type: Some("system"),
            listen: Some(&dir.join("system_bus_socket")),
            servicedir,
            policies: SYSTEM_DEFAULT_POLICY,
            includes: &includes,
        }
        .write(&config);
        let log = dir.join("system-bus.log");
        SystemBus {
            bus: Bus::with_config(&config, &log),
            log,
        }
    }

    /// The bus address.
    pub fn address(&self) -> &str {
        self.bus.address()
    }

    /// A new client connection (as the test's own user, root).
    pub async fn connect(&self) -> zbus::Connection {
        self.bus.connect().await
    }

    /// What dbus-daemon logged (activations, rejected messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

/// `setpriv` running `program` as `nobody` (uid and gid 65534, no supplementary groups).
pub fn as_nobody(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program)
        .stdin(Stdio::null());
    command
}

/// This workspace's binary `name`, linked (or copied) into `dir` so that `nobody` can run it
/// whatever the permissions of the checkout's directories.
pub fn binary_for_everyone(name: &str, dir: &Path) -> PathBuf {
    let built = binary(name);
    let path = dir.join(name);
    if std::fs::hard_link(&built, &path).is_err() {
        std::fs::copy(&built, &path).expect("copy binary");
    }
    path
}

/// The process id of the connection owning `name`, if any.
pub async fn name_owner_pid(conn: &zbus::Connection, name: &str) -> Option<u32> {
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .expect("org.freedesktop.DBus proxy");
    let name = zbus::names::BusName::try_from(name).expect("bus name");
    if !dbus.name_has_owner(name.clone()).await.ok()? {
        return None;
    }
    dbus.get_connection_unix_process_id(name).await.ok()
}
