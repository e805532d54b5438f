//! spk's files for the D-Bus system bus, on a private bus configured like the real one
//! (Debian's deny-by-default `system.conf` plus `dbus/xyz.smech.Spk1.conf`): only root may own
//! `xyz.smech.Spk1`, anyone may call it (spkd itself refuses changes from other users), and
//! `dbus/xyz.smech.Spk1.service` starts spkd on the first call.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use spk_tests::daemon::{BUS_NAME, Spkd, binary, workspace_root};
use spk_tests::system_bus::{NOBODY, SystemBus, as_nobody, binary_for_everyone, name_owner_pid};

/// A target root with a config whose only source is a closed loopback port: spkd starts
/// without touching the network.
fn target_root(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("root");
    let config = root.join("etc/spk/spk.toml");
    std::fs::create_dir_all(config.parent().expect("etc/spk")).expect("create etc/spk");
    std::fs::write(
        &config,
        "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"http://127.0.0.1:9/repo/\"\n",
    )
    .expect("write spk.toml");
    (root, config)
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temporary directory")
}

#[tokio::test]
async fn only_root_may_own_the_spkd_name_and_anyone_may_call_it() {
    let dir = tempdir("spk-policy-");
    let bus = SystemBus::start(dir.path());
    let conn = bus.connect().await;

    // spkd as nobody, on a root nobody may write: the bus refuses it the name.
    let (nobody_root, nobody_config) = target_root(&dir.path().join("nobody"));
    for p in [dir.path().join("nobody"), nobody_root.clone()] {
        std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    }
    let output = as_nobody(&binary_for_everyone("spkd", dir.path()))
        .arg("--root")
        .arg(&nobody_root)
        .arg("--config")
        .arg(&nobody_config)
        .arg("--bus")
        .arg(bus.address())
        .output()
        .expect("run spkd as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(&format!("cannot own {BUS_NAME}")),
        "spkd as nobody was not refused the name ({}):\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("AccessDenied"),
        "not refused by the bus policy:\n{stderr}"
    );
    assert_eq!(name_owner_pid(&conn, BUS_NAME).await, None);

    // spkd as root owns it.
    let (root, config) = target_root(&dir.path().join("root-owned"));
    let spkd = Spkd::start(&root, &config, bus.address(), &dir.path().join("spkd.log")).await;
    assert_eq!(name_owner_pid(&conn, BUS_NAME).await, Some(spkd.pid()));

    // nobody may call it: `spkctl list` works; `spkctl check` reaches spkd, which refuses
    // (no polkit here), rather than the bus.
    let spkctl = binary_for_everyone("spkctl", dir.path());
    let list = as_nobody(&spkctl)
        .args(["--bus", bus.address(), "--json", "list"])
        .output()
        .expect("run spkctl as nobody");
    assert!(
        list.status.success(),
        "nobody could not list packages ({}):\n{}\nbus log:\n{}",
        list.status,
        String::from_utf8_lossy(&list.stderr),
        bus.log()
    );
    let check = as_nobody(&spkctl)
        .args(["--bus", bus.address(), "check"])
        .output()
        .expect("run spkctl as nobody");
    let refused = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.code() == Some(1) && refused.contains("uid 65534 may not refresh"),
        "spkd did not refuse a refresh by nobody ({}):\n{refused}\nbus log:\n{}",
        check.status,
        bus.log()
    );
}

#[tokio::test]
async fn the_first_call_activates_spkd_from_its_service_file() {
    let dir = tempdir("spk-activation-");
    // The activation file as shipped: it starts /usr/sbin/spkd --system as root.
    let shipped = std::fs::read_to_string(workspace_root().join("dbus/xyz.smech.Spk1.service"))
        .expect("read dbus/xyz.smech.Spk1.service");
    let entries = service_entries(&shipped);
    assert_eq!(entries.get("Name").map(String::as_str), Some(BUS_NAME));
    assert_eq!(entries.get("User").map(String::as_str), Some("root"));
    let exec = entries.get("Exec").expect("Exec= line");
    let (program, args) = exec.split_once(' ').unwrap_or((exec, ""));
    assert_eq!(
        program, "/usr/sbin/spkd",
        "the Makefile installs spkd there"
    );
    assert_eq!(args, "--system");

    // The same file with Exec= pointing at this build's spkd, through a wrapper that adds a
    // temporary root. The bus sets DBUS_SYSTEM_BUS_ADDRESS for it, so --system reaches it.
    let (root, config) = target_root(dir.path());
    let log = dir.path().join("spkd.log");
    let wrapper = dir.path().join("spkd-for-test");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" --root '{}' --config '{}' --log-level debug 2>>'{}'\n",
            binary("spkd").display(),
            root.display(),
            config.display(),
            log.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod wrapper");
    let services = dir.path().join("system-services");
    std::fs::create_dir(&services).expect("create service directory");
    std::fs::write(
        services.join("xyz.smech.Spk1.service"),
        shipped.replace(program, &wrapper.display().to_string()),
    )
    .expect("write service file");
    let bus = SystemBus::start_with_services(dir.path(), Some(&services));
    let conn = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus proxy");
    let activatable = dbus
        .list_activatable_names()
        .await
        .expect("ListActivatableNames");
    assert!(
        activatable.iter().any(|n| n.as_str() == BUS_NAME),
        "{BUS_NAME} is not activatable: {activatable:?}\n{}",
        bus.log()
    );
    assert_eq!(
        name_owner_pid(&conn, BUS_NAME).await,
        None,
        "spkd runs before any call"
    );

    let reply = conn
        .call_method(
            Some(BUS_NAME),
            "/xyz/smech/Spk1",
            Some("xyz.smech.Spk1.Manager"),
            "ListPackages",
            &(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "ListPackages did not activate spkd: {e}\nbus log:\n{}\nspkd log:\n{}",
                bus.log(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let packages: Vec<HashMap<String, zbus::zvariant::OwnedValue>> =
        reply.body().deserialize().expect("aa{sv}");
    assert!(packages.is_empty(), "{packages:?}");

    let pid = name_owner_pid(&conn, BUS_NAME)
        .await
        .expect("spkd owns the name after the call");
    let _stop = StopOnDrop(pid);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .expect("spkd's command line")
        .replace('\0', " ");
    assert!(
        cmdline.starts_with(&format!("{} --system ", binary("spkd").display())),
        "the activated process is not spkd --system: {cmdline}"
    );
    assert!(
        bus.log()
            .contains("Successfully activated service 'xyz.smech.Spk1'"),
        "{}",
        bus.log()
    );

    // A second spkd (e.g. OpenRC starting it now) exits at once with a clear error.
    let (second_root, second_config) = target_root(&dir.path().join("second"));
    let second = Command::new(binary("spkd"))
        .arg("--root")
        .arg(&second_root)
        .arg("--config")
        .arg(&second_config)
        .arg("--bus")
        .arg(bus.address())
        .stdin(Stdio::null())
        .output()
        .expect("run a second spkd");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && stderr.contains("another spkd"),
        "a second spkd did not refuse to start ({}):\n{stderr}",
        second.status
    );
    assert_eq!(name_owner_pid(&conn, BUS_NAME).await, Some(pid));
}

/// `Key=value` lines of the `[D-BUS Service]` group of a service file.
fn service_entries(text: &str) -> HashMap<String, String> {
    let mut in_group = false;
    let mut entries = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_group = line == "[D-BUS Service]";
        } else if in_group && let Some((key, value)) = line.split_once('=') {
            entries.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    assert!(
        !entries.is_empty(),
        "no [D-BUS Service] group in the service file:\n{text}"
    );
    entries
}

/// Sends SIGTERM to the activated spkd (a child of dbus-daemon, not of the test) and waits for
/// it to exit.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while Path::new(&format!("/proc/{}", self.0)).exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
