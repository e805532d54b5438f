//! spk's OpenRC services, run by a real OpenRC (Debian's `openrc` package) in a throw-away
//! mount and pid namespace: the init scripts `make install` placed start spkd under
//! supervise-daemon, which restarts it after a crash; the boot check makes spkd refresh; the
//! service stops cleanly. The transcript of every `rc-service` run is printed (run with
//! `--nocapture` to see it).

use std::path::Path;
use std::time::{Duration, Instant};

use spk_tests::bus::Bus;
use spk_tests::daemon::BUS_NAME;
use spk_tests::make_install::InstalledTree;
use spk_tests::openrc::{OpenRc, RcOutput};
use spk_tests::repo::REPO_PATH;
use spk_tests::system_bus::name_owner_pid;
use spk_tests::{HttpServer, Package, Repo};

/// How long spkd may take to appear on the bus, or to be restarted.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every command run and what it printed, in order.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn record(&mut self, out: RcOutput) -> RcOutput {
        self.0.push_str(&out.to_string());
        out
    }

    /// What the test observed between two commands.
    fn note(&mut self, text: &str) {
        self.0.push_str(&format!("  -> {text}\n"));
    }
}

#[tokio::test]
async fn openrc_starts_spkd_restarts_it_after_a_kill_refreshes_at_boot_and_stops_it() {
    let dir = tempfile::Builder::new()
        .prefix("spk-openrc-")
        .tempdir()
        .expect("temporary directory");
    let installed = InstalledTree::make_install(&dir.path().join("dest"), "/usr", &[]);
    // What the OpenRC system shares with the test: the bus socket and spkd's target root.
    let shared = dir.path().join("shared");
    let target = shared.join("target");
    std::fs::create_dir_all(target.join("etc/spk")).expect("create target root");
    let server = HttpServer::start();
    Repo::new()
        .with(Package::new("plasma", "6.6.5-1").file("usr/share/plasma/version", "6.6.5\n", 0o644))
        .publish(&server);
    let config = target.join("etc/spk/spk.toml");
    std::fs::write(
        &config,
        format!(
            "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{}\"\n",
            server.url(REPO_PATH)
        ),
    )
    .expect("write spk.toml");
    let bus = Bus::start(&shared);
    let rc = OpenRc::boot(&dir.path().join("openrc"), &installed, &shared);
    rc.append_conf(
        "spkd",
        &format!(
            "SPKD_BUS=\"--bus {}\"\nSPKD_OPTS=\"--root {} --config {}\"\nSPKD_LOGLEVEL=debug\nrespawn_delay=1\n\
             export http_proxy=\"http://fleet:s3cret@127.0.0.1:9\"\nexport no_proxy=\"127.0.0.1\"\n",
            bus.address(),
            target.display(),
            config.display()
        ),
    );
    rc.append_conf(
        "spk-boot-check",
        &format!(
            "SPK_BOOT_CHECK_DELAY_MAX=0\nSPK_BOOT_CHECK_OPTS=\"--bus {}\"\n",
            bus.address()
        ),
    );
    let conn = bus.connect().await;
    let mut log = Transcript::default();
    let spkd_log = rc.path("/var/log/spkd.log");

    // Enabled as a distribution enables them.
    log.record(rc.run(&["rc-update", "add", "spkd", "default"]).await)
        .assert_code(0);
    log.record(
        rc.run(&["rc-update", "add", "spk-boot-check", "default"])
            .await,
    )
    .assert_code(0);

    // rc-service spkd start: dbus first (need), then spkd under supervise-daemon.
    log.record(rc.run(&["rc-service", "spkd", "start"]).await)
        .assert_code(0)
        .assert_output_contains("Starting spkd");
    let first = wait_for_owner(&conn, None, &spkd_log).await;
    assert!(
        rc.owns_process(first),
        "the owner of {BUS_NAME} (pid {first}) is not the OpenRC system's spkd"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{first}/cmdline"))
        .expect("spkd's command line")
        .replace('\0', " ");
    assert!(
        cmdline.starts_with("/usr/sbin/spkd --bus ") && cmdline.contains("--log-level debug"),
        "spkd was not started as the init script says: {cmdline}"
    );
    log.note(&format!(
        "pid {first} owns {BUS_NAME}: {}",
        cmdline.trim_end()
    ));
    // The proxy exported in /etc/conf.d/spkd reaches spkd (its no_proxy keeps the loopback
    // repository direct, so the refresh below still works).
    let environ = std::fs::read(format!("/proc/{first}/environ")).expect("spkd's environment");
    let environ = String::from_utf8_lossy(&environ);
    for var in [
        "http_proxy=http://fleet:s3cret@127.0.0.1:9",
        "no_proxy=127.0.0.1",
    ] {
        assert!(
            environ.split('\0').any(|v| v == var),
            "{var} from /etc/conf.d/spkd is not in spkd's environment: {environ:?}"
        );
    }
    log.record(rc.run(&["rc-service", "spkd", "status"]).await)
        .assert_code(0)
        .assert_output_contains("status: started");

    // A crash: supervise-daemon starts a new spkd, which owns the name again.
    kill(first, rustix::process::Signal::KILL);
    let second = wait_for_owner(&conn, Some(first), &spkd_log).await;
    assert!(rc.owns_process(second));
    log.note(&format!(
        "kill -KILL {first}; supervise-daemon restarted spkd: pid {second} owns {BUS_NAME}"
    ));
    log.record(rc.run(&["rc-service", "spkd", "status"]).await)
        .assert_code(0)
        .assert_output_contains("status: started");

    // The boot check (no delay) asks spkd to refresh; spkd logs the transaction.
    log.record(rc.run(&["rc-service", "spk-boot-check", "start"]).await)
        .assert_code(0)
        .assert_output_contains("Checking for updates");
    let check_log = rc.path("/var/log/spk-boot-check.log");
    wait_for_text(&spkd_log, "action=\"refresh\"").await;
    // spkctl check exits 0 (no updates) or 100 (updates available): both are a success.
    let result = wait_for_text(&check_log, "spk-boot-check: ").await;
    assert!(
        !result.contains("check failed"),
        "the boot check failed:\n{result}"
    );
    let queued = std::fs::read_to_string(&spkd_log).expect("spkd.log");
    let queued = queued
        .lines()
        .find(|l| l.contains("action=\"refresh\""))
        .expect("refresh line");
    log.note(&format!("spkd.log: {queued}"));
    log.note(&format!(
        "spk-boot-check.log: {}",
        result.lines().collect::<Vec<_>>().join(" | ")
    ));

    // With the default delay (up to SPK_BOOT_CHECK_DELAY_MAX seconds) the check waits in the
    // background: boot goes on at once, and stopping the service cancels the waiting check.
    rc.append_conf("spk-boot-check", "SPK_BOOT_CHECK_DELAY_MAX=3600\n");
    let started = Instant::now();
    let restart = log.record(rc.run(&["rc-service", "spk-boot-check", "restart"]).await);
    restart.assert_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the boot check held up its start for {:?}",
        started.elapsed()
    );
    let delay: u32 = restart
        .output
        .split("Checking for updates in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no delay in:\n{restart}"));
    assert!(delay <= 3600, "delay {delay}s is above the maximum");
    let stop = log.record(rc.run(&["rc-service", "spk-boot-check", "stop"]).await);
    stop.assert_code(0);
    if delay > 0 {
        stop.assert_output_contains("Cancelling the pending check for updates");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Every line of a transaction names it (`transaction{id=N action="refresh" …}`):
        // count the refreshes, not their lines.
        let log = std::fs::read_to_string(&spkd_log).expect("spkd.log");
        let refreshes = log
            .lines()
            .filter(|l| l.contains("action=\"refresh\""))
            .filter_map(|l| l.split("transaction{id=").nth(1)?.split([' ', '}']).next())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(refreshes, 1, "the cancelled check still refreshed");
    }

    // rc-service spkd stop: SIGTERM, spkd finishes and exits, the name is released.
    log.record(rc.run(&["rc-service", "spkd", "stop"]).await)
        .assert_code(0)
        .assert_output_contains("Stopping spkd");
    assert_eq!(name_owner_pid(&conn, BUS_NAME).await, None);
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "spkd (pid {second}) still runs after rc-service spkd stop"
    );
    let text = std::fs::read_to_string(&spkd_log).expect("spkd.log");
    assert!(
        text.trim_end().ends_with("stopped"),
        "spkd did not stop cleanly; its log:\n{text}"
    );
    log.note(&format!(
        "{BUS_NAME} released, pid {second} gone; spkd.log ends: {}",
        text.lines()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    log.record(rc.run(&["rc-service", "spkd", "status"]).await)
        .assert_code(3)
        .assert_output_contains("status: stopped");

    println!("===== OpenRC transcript =====\n{}=====", log.0);
}

/// The pid of the process owning [`BUS_NAME`], once it is owned by another process than
/// `previous`.
async fn wait_for_owner(conn: &zbus::Connection, previous: Option<u32>, log: &Path) -> u32 {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        match name_owner_pid(conn, BUS_NAME).await {
            Some(pid) if Some(pid) != previous => return pid,
            _ if Instant::now() > deadline => panic!(
                "no new owner of {BUS_NAME} within {SERVICE_TIMEOUT:?} (previous: {previous:?}); \
                 spkd.log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Wait until the file at `path` contains `text`; returns the file's content.
async fn wait_for_text(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not contain {text:?} within {SERVICE_TIMEOUT:?}:\n{content}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kill(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, signal).expect("send signal");
}

/// Boots twice through Debian's OpenRC: the first applies the update `spkctl upgrade --offline`
/// prepared (spk-offline-update, as in the boot runlevel), the second finds nothing to do.
#[tokio::test]
async fn the_boot_service_installs_a_prepared_update_before_the_desktop() {
    let dir = tempfile::Builder::new()
        .prefix("spk-openrc-offline-")
        .tempdir()
        .expect("temporary directory");
    let installed = InstalledTree::make_install(&dir.path().join("dest"), "/usr", &[]);
    let shared = dir.path().join("shared");
    let target = shared.join("target");
    std::fs::create_dir_all(target.join("etc/spk")).expect("create target root");
    let server = HttpServer::start();
    let kate = |v: &str| {
        Package::new("kate", &format!("{v}.0-1")).file(
            "usr/share/kate/version",
            format!("{v}\n"),
            0o644,
        )
    };
    Repo::new().with(kate("1")).publish(&server);
    let config = target.join("etc/spk/spk.toml");
    std::fs::write(
        &config,
        format!(
            "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{}\"\n",
            server.url(REPO_PATH)
        ),
    )
    .expect("write spk.toml");
    // Before the restart: the user prepares the update with spkd on the bus.
    let bus = Bus::start(&shared);
    let mut spkd = spk_tests::daemon::Spkd::start(
        &target,
        &config,
        bus.address(),
        &dir.path().join("spkd.log"),
    )
    .await;
    let ctl = |args: &[&str]| {
        let mut all = vec!["--bus", bus.address(), "--yes", "--no-progress"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    spk_tests::daemon::spkctl(&ctl(&["install", "kate"]))
        .await
        .assert_success();
    Repo::new().with(kate("2")).publish(&server);
    spk_tests::daemon::spkctl(&ctl(&["upgrade", "--offline"]))
        .await
        .assert_success();
    assert_eq!(
        std::fs::read_to_string(target.join("usr/share/kate/version")).expect("read"),
        "1\n"
    );
    spkd.terminate(SERVICE_TIMEOUT).await;

    // The restart: OpenRC runs spk-offline-update before the display manager.
    let rc = OpenRc::boot(&dir.path().join("openrc"), &installed, &shared);
    rc.append_conf(
        "spk-offline-update",
        &format!("SPK_OFFLINE_ROOT=\"{}\"\n", target.display()),
    );
    let mut log = Transcript::default();
    log.record(rc.run(&["rc-service", "spk-offline-update", "start"]).await)
        .assert_code(0)
        .assert_output_contains("Installing the updates prepared for this restart")
        .assert_output_contains("* Installing updates (1/1): kate 2.0-1 …")
        .assert_output_contains("* Installed 1 update");
    assert_eq!(
        std::fs::read_to_string(target.join("usr/share/kate/version")).expect("read"),
        "2\n"
    );
    assert!(!target.join("var/lib/spk/offline").exists());
    // The next boot: nothing prepared, nothing said.
    log.record(rc.run(&["rc-service", "spk-offline-update", "stop"]).await);
    let again = log.record(rc.run(&["rc-service", "spk-offline-update", "start"]).await);
    again.assert_code(0);
    assert!(!again.to_string().contains("Installing"), "{again}");
    println!("{}", log.0);
}
