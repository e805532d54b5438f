//! A private `dbus-daemon` for one test.
//!
//! The bus listens on a unix socket inside the test's temporary directory, accepts EXTERNAL
//! authentication and allows everything, so spkd can own `xyz.smech.Spk1` on it without the
//! system bus policy. The daemon is killed when the [`Bus`] is dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running private message bus.
pub struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    /// Start `dbus-daemon` with a generated configuration in `dir`.
    pub fn start(dir: &Path) -> Bus {
        let socket = dir.join("bus");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("write bus config");
        Bus::with_config(&config, &dir.join("bus.log"))
    }

    /// Start `dbus-daemon` with the configuration file `config`, logging to `log`.
    pub(crate) fn with_config(config: &Path, log: &Path) -> Bus {
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).expect("create bus log"))
            .spawn()
            .expect("start dbus-daemon (is the dbus-daemon package installed?)");
        let stdout = child.stdout.take().expect("dbus-daemon stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read dbus-daemon address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address (got {line:?}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Bus { child, address }
    }

    /// The bus address, e.g. `unix:path=/tmp/.../bus,guid=...`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A new client connection to this bus.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the private bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
