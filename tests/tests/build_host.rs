//! The build host: a SmechOS system mounted at /mnt/smechos on a host that is not SmechOS is
//! what spkd (and spkctl, when no spkd runs on the system bus) manage by default. Each test
//! runs in a private mount namespace with tmpfs on /mnt, so the host's /mnt is never touched.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spk_tests::bus::Bus;
use spk_tests::daemon::binary;

/// Shell prelude run inside `unshare --mount`: a private /mnt with /mnt/smechos mounted.
const MOUNT_BUILD_ROOT: &str = "mount --make-rprivate / && mount -t tmpfs none /mnt && \
     mkdir /mnt/smechos && mount -t tmpfs none /mnt/smechos && mkdir -p /mnt/smechos/etc/spk";

fn in_namespace(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    // --kill-child: when the test kills unshare, spkd inside goes with it.
    cmd.args(["--mount", "--fork", "--kill-child", "sh", "-c"])
        .arg(script);
    cmd
}

async fn root_property(bus: &Bus) -> Option<String> {
    let conn = bus.connect().await;
    let proxy = zbus::Proxy::new(
        &conn,
        "xyz.smech.Spk1",
        "/xyz/smech/Spk1",
        "xyz.smech.Spk1.Manager",
    )
    .await
    .ok()?;
    proxy.get_property::<String>("Root").await.ok()
}

async fn wait_for_root(bus: &Bus) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(root) = root_property(bus).await {
            return root;
        }
        assert!(Instant::now() < deadline, "spkd never came up on the bus");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config_text() -> &'static str {
    "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"http://127.0.0.1:9/\"\n"
}

#[tokio::test]
async fn spkd_manages_a_mounted_build_root_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let config = dir.path().join("spk.toml");
    std::fs::write(&config, config_text()).unwrap();
    let log = dir.path().join("spkd.log");
    let script = format!(
        "{MOUNT_BUILD_ROOT} && exec {} --config {} --bus '{}'",
        binary("spkd").display(),
        config.display(),
        bus.address()
    );
    let mut child = in_namespace(&script)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let root = wait_for_root(&bus).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(root, "/mnt/smechos", "log:\n{log}");
    assert!(
        log.contains("/mnt/smechos is a mount point and this host is not SmechOS"),
        "log:\n{log}"
    );
    assert!(
        !std::path::Path::new("/mnt/smechos/var/lib/spk").exists(),
        "the host's /mnt must be untouched"
    );
}

#[tokio::test]
async fn an_explicit_root_overrides_the_build_root() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let config = dir.path().join("spk.toml");
    std::fs::write(&config, config_text()).unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let script = format!(
        "{MOUNT_BUILD_ROOT} && exec {} --root {} --config {} --bus '{}'",
        binary("spkd").display(),
        target.display(),
        config.display(),
        bus.address()
    );
    let mut child = in_namespace(&script).stderr(Stdio::null()).spawn().unwrap();
    let root = wait_for_root(&bus).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(root, target.display().to_string());
}

#[tokio::test]
async fn spkctl_without_a_system_spkd_manages_the_build_root_privately() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spk.toml");
    std::fs::write(&config, config_text()).unwrap();
    // No spkd answers on this "system bus"; /mnt/smechos is mounted and has a config.
    let script = format!(
        "{MOUNT_BUILD_ROOT} && cp {} /mnt/smechos/etc/spk/spk.toml && \
         DBUS_SYSTEM_BUS_ADDRESS=unix:path={}/no-bus {} --json about",
        config.display(),
        dir.path().display(),
        binary("spkctl").display(),
    );
    let out = in_namespace(&script)
        .env_remove("SPK_BUS_ADDRESS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let about: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(about["root"], "/mnt/smechos");
    assert!(
        stderr.contains("managing it with a private spkd"),
        "{stderr}"
    );
}
