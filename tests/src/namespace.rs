//! A private mount namespace, so a test can give its target root real mounts (tmpfs, a FAT
//! file system, bind mounts) without touching the host's mount table.
//!
//! [`MountNamespace::new`] starts a holder process (`unshare --mount --propagation private --
//! sleep infinity`) whose namespace every later command enters with `nsenter -t PID -m`: the
//! setup shell commands, the FAT driver (`fusefat`, a FUSE file system with real FAT semantics:
//! no symlinks, no hard links, no modes; the kernel has no vfat here) and spkd itself (see
//! [`MountNamespace::command_prefix`]). The test reads the namespace's view of a path through
//! `/proc/PID/root` ([`MountNamespace::view`]). Dropping it stops the FAT drivers and the
//! holder; the kernel then tears the mounts down with the last process inside.
//!
//! Needs root, `unshare`/`nsenter`/`setpriv` (util-linux), and for FAT `mkfs.vfat` (dosfstools)
//! and `fusefat` with `/dev/fuse`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the holder and a FUSE driver may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A mount namespace kept alive by a holder process.
pub struct MountNamespace {
    /// FAT drivers (`fusefat -f`), one per FAT mount; stopped before the holder.
    fat_drivers: Vec<Child>,
    holder: Child,
}

impl MountNamespace {
    /// Start a holder in a new, private mount namespace (a copy of the host's mounts; nothing
    /// mounted inside propagates out).
    pub fn new() -> MountNamespace {
        let holder = Command::new("setpriv")
            // Should the test die, the namespace dies with it.
            .args(["--pdeathsig", "KILL", "unshare", "--mount"])
            .args(["--propagation", "private", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let namespace = MountNamespace {
            fat_drivers: Vec::new(),
            holder,
        };
        // setpriv execs unshare, which unshares and execs sleep: same pid. Until unshare has
        // run, the pid is still in the host's namespace, and entering it would mount there.
        let ours = std::fs::read_link("/proc/self/ns/mnt").expect("read our mount namespace");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", namespace.pid()));
            if theirs.as_ref().is_ok_and(|ns| *ns != ours) {
                return namespace;
            }
            assert!(
                Instant::now() < deadline,
                "unshare --mount did not enter a new mount namespace within {READY_TIMEOUT:?} \
                 ({theirs:?}): the real-root tests run as root"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Host pid of the holder (what `nsenter -t` takes).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `nsenter -t PID -m --`: put this before a command to run it inside the namespace
    /// (nsenter execs it, so the child's pid is the command's own).
    pub fn command_prefix(&self) -> Vec<OsString> {
        ["nsenter", "-t", &self.pid().to_string(), "-m", "--"]
            .iter()
            .map(OsString::from)
            .collect()
    }

    /// Where the test reads `abs` (an absolute path as seen inside) from outside:
    /// `/proc/PID/root/abs`, which resolves through the namespace's mounts.
    pub fn view(&self, abs: &Path) -> PathBuf {
        assert!(abs.is_absolute(), "{} is not absolute", abs.display());
        let mut view = PathBuf::from(format!("/proc/{}/root", self.pid()));
        view.push(abs.strip_prefix("/").expect("absolute"));
        view
    }

    /// Run `sh -euc SCRIPT sh ARGS...` inside the namespace; the output, whatever the exit.
    pub fn try_sh(&self, script: &str, args: &[&OsStr]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-m", "--", "sh", "-euc"])
            .arg(script)
            .arg("sh")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter (util-linux)")
    }

    /// [`MountNamespace::try_sh`], panicking with the output unless it succeeds.
    #[track_caller]
    pub fn sh(&self, script: &str, args: &[&OsStr]) -> Output {
        let output = self.try_sh(script, args);
        assert!(
            output.status.success(),
            "in the mount namespace, `{script}` {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Mount a tmpfs of `size` (as `mount -o size=` takes it) at `point`, creating it.
    pub fn mount_tmpfs(&self, point: &Path, size: &str) {
        self.sh(
            r#"mkdir -p "$1"; mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1""#,
            &[point.as_os_str(), OsStr::new(size)],
        );
    }

    /// Make a FAT image of `size` (as `truncate -s` takes it, e.g. `8M`) at `image` and mount
    /// it at `point` (created if absent) with `fusefat -o rw+`; returns once it is mounted.
    pub fn mount_fat(&mut self, image: &Path, point: &Path, size: &str) {
        self.sh(
            r#"truncate -s "$2" "$1"; mkfs.vfat "$1" >/dev/null; mkdir -p "$3""#,
            &[image.as_os_str(), OsStr::new(size), point.as_os_str()],
        );
        let driver = Command::new("setpriv")
            .args(["--pdeathsig", "KILL"])
            .args(self.command_prefix())
            .args(["fusefat", "-f", "-o", "rw+"])
            .arg(image)
            .arg(point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run fusefat (Debian package fusefat)");
        self.fat_drivers.push(driver);
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.fstype(point).as_deref() != Some("fuse.fusefat") {
            assert!(
                Instant::now() < deadline,
                "fusefat did not mount {} within {READY_TIMEOUT:?}",
                point.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Bind-mount the file or directory `source` onto `point` (which must exist).
    pub fn bind(&self, source: &Path, point: &Path) {
        self.sh(
            r#"mount --bind "$1" "$2""#,
            &[source.as_os_str(), point.as_os_str()],
        );
    }

    /// Make the directory `point` a read-only bind mount of itself.
    pub fn bind_read_only(&self, point: &Path) {
        self.sh(
            r#"mount --bind "$1" "$1"; mount -o remount,bind,ro "$1""#,
            &[point.as_os_str()],
        );
    }

    /// Unmount whatever is mounted on `point` (the topmost mount).
    pub fn unmount(&self, point: &Path) {
        self.sh(r#"umount "$1""#, &[point.as_os_str()]);
    }

    /// The file system type (mountinfo's field after ` - `, e.g. `tmpfs`, `fuse.fusefat`) of the
    /// topmost mount whose mount point is exactly `point`, or `None` if it is not a mount point.
    pub fn fstype(&self, point: &Path) -> Option<String> {
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))
            .expect("read the namespace's mountinfo");
        // Without a trailing `/`, as mountinfo writes it.
        let point: PathBuf = point.components().collect();
        let point = point.to_str().expect("UTF-8 mount point");
        mountinfo
            .lines()
            .filter(|line| line.split(' ').nth(4) == Some(point))
            .filter_map(|line| line.split(" - ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_string)
            .next_back()
    }
}

impl Default for MountNamespace {
    fn default() -> Self {
        MountNamespace::new()
    }
}

impl Drop for MountNamespace {
    fn drop(&mut self) {
        // SIGTERM makes fusefat unmount and flush its image; then the holder goes, and with
        // the last process inside, the namespace and its mounts.
        for driver in &mut self.fat_drivers {
            if let Some(pid) = rustix::process::Pid::from_raw(driver.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(driver.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
