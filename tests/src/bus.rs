//! A private `dbus-daemon` for one test.
//!
//! The bus listens on a unix socket inside the test's temporary directory, accepts EXTERNAL
//! authentication and allows everything, so spkd can own `xyz.smech.Spk1` on it without the
//! system bus policy. The daemon is killed when the [`Bus`] is dropped.
//!
//! [`BusConfig`] is the one template of `dbus-daemon` configuration files: this bus, the
//! system-like bus of [`crate::system_bus`] and the policy files it includes are written from it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The policy of the private bus: anyone may own any name, send anything and eavesdrop.
const ALLOW_EVERYTHING: &str = r#"  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
"#;

/// A `dbus-daemon` configuration file (or a policy file it includes, with neither `bus_type`
/// nor `listen`): the one template every bus and policy file of the tests is written from.
#[derive(Debug, Default, Clone, Copy)]
pub struct BusConfig<'a> {
    /// `<type>`: `"session"` or `"system"`.
    pub bus_type: Option<&'a str>,
    /// The unix socket the bus listens on (`<listen>unix:path=…`), with EXTERNAL authentication.
    pub listen: Option<&'a Path>,
    /// A directory of `.service` files the bus activates itself (`<servicedir>`).
    pub servicedir: Option<&'a Path>,
    /// The `<policy>` elements (and comments), verbatim, each line indented by two spaces.
    pub policies: &'a str,
    /// Policy files included after `policies`, as the system bus includes `system.d/*.conf`.
    pub includes: &'a [&'a Path],
}

impl BusConfig<'_> {
    /// The configuration as XML.
    pub fn xml(&self) -> String {
        let mut xml = String::from(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
"#,
        );
        if let Some(bus_type) = self.bus_type {
            xml.push_str(&format!("  <type>{bus_type}</type>\n"));
        }
        if let Some(socket) = self.listen {
            xml.push_str(&format!(
                "  <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n",
                socket.display()
            ));
        }
        if let Some(dir) = self.servicedir {
            xml.push_str(&format!("  <servicedir>{}</servicedir>\n", dir.display()));
        }
        xml.push_str(self.policies);
        for include in self.includes {
            xml.push_str(&format!("  <include>{}</include>\n", include.display()));
        }
        xml.push_str("</busconfig>\n");
        xml
    }

    /// Write the configuration to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.xml())
            .unwrap_or_else(|e| panic!("write bus configuration {}: {e}", path.display()));
    }
}

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
        BusConfig {
            bus_type: Some("session"),
            listen: Some(&socket),
            policies: ALLOW_EVERYTHING,
            ..BusConfig::default()
        }
        .write(&config);
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
