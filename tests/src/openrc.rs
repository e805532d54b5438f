//! A throw-away OpenRC system for testing spk's init scripts for real, never touching the
//! host's init.
//!
//! [`OpenRc::boot`] builds a root directory holding Debian's `openrc` (its packages are
//! downloaded with `apt-get download` once into `target/openrc-debs/` and unpacked with
//! `dpkg-deb -x`, never installed), the files `make install` placed, and stand-in `dbus`,
//! `network` and `localmount` services (the test runs its own bus; `network` provides `net`). It then starts a
//! mount and pid namespace whose first process is chrooted into that root: `/usr` is a
//! read-only overlay of the installed tree, openrc and the host's `/usr`; `/run` is a private
//! tmpfs with the `/run/openrc` state OpenRC expects after boot (softlevel `default`), and the
//! test's `shared` directory (bus socket, spkd's target root) appears at its own path. Each
//! [`OpenRc::run`] enters the namespace with `nsenter` and runs `rc-service` or `rc-update`
//! there. Dropping the [`OpenRc`] kills the namespace's first process, which ends every process
//! in it (supervise-daemon, spkd).

use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::workspace_root;
use crate::make_install::InstalledTree;

/// Debian packages holding OpenRC's programs and libraries.
const PACKAGES: [&str; 3] = ["openrc", "librc1", "libeinfo1"];
/// How long one `rc-service` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Mounts the root inside the new namespaces, then becomes its pid 1: a shell that reaps
/// orphans (supervise-daemon detaches) and exits on SIGTERM.
const NAMESPACE_INIT: &str = r#"
root=$1 installed=$2 openrc=$3 shared=$4
mount -t overlay spk-openrc-usr -o "ro,lowerdir=$installed/usr:$openrc/usr:/usr" "$root/usr"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root$shared"
mount --bind "$shared" "$root$shared"
for d in daemons exclusive failed hotplugged inactive options scheduled started starting \
    stopping tmp wasinactive; do
  mkdir -p "$root/run/openrc/$d"
done
echo default > "$root/run/openrc/softlevel"
echo ready
exec chroot "$root" /bin/sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
"#;

/// A stand-in for the system bus service, which the test runs itself.
const DBUS_STANDIN: &str = r#"#!/sbin/openrc-run
description="stand-in for the D-Bus system bus (the test runs its own dbus-daemon)"
start() {
	ebegin "Using the test's message bus"
	eend 0
}
"#;

/// A stand-in network service: loopback is all the test needs.
const NETWORK_STANDIN: &str = r#"#!/sbin/openrc-run
description="stand-in network service"
depend() {
	provide net
}
start() {
	ebegin "Bringing up the network (loopback)"
	eend 0
}
"#;

/// A stand-in for mounting the local file systems: the namespace has them mounted already.
const LOCALMOUNT_STANDIN: &str = r#"#!/sbin/openrc-run
description="stand-in for localmount (the test's namespace has its file systems mounted)"
start() {
	ebegin "Mounting local filesystems"
	eend 0
}
"#;

/// An OpenRC system in a mount and pid namespace.
pub struct OpenRc {
    unshare: Child,
    /// Host pid of the namespace's first process (chrooted into `root`).
    init_pid: u32,
    root: PathBuf,
}

impl OpenRc {
    /// Build the root in `dir` from `installed` and start its namespaces; `shared` is visible
    /// inside at the same path.
    pub fn boot(dir: &Path, installed: &InstalledTree, shared: &Path) -> OpenRc {
        assert!(
            std::fs::read_link("/bin").is_ok() && std::fs::read_link("/lib").is_ok(),
            "the OpenRC test needs a host with a merged /usr (/bin -> usr/bin)"
        );
        let openrc = unpack_openrc(&dir.join("openrc-pkg"));
        let root = dir.join("root");
        build_root(&root, &openrc, installed);

        let mut unshare = Command::new("setpriv")
            // Should the test die, its namespace dies with it.
            .args([
                "--pdeathsig",
                "KILL",
                "unshare",
                "--mount",
                "--pid",
                "--fork",
            ])
            .args(["--kill-child", "sh", "-euc", NAMESPACE_INIT, "sh"])
            .arg(&root)
            .arg(&installed.dest)
            .arg(&openrc)
            .arg(shared)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(unshare.stdout.take().expect("unshare stdout"))
            .read_line(&mut line)
            .expect("read from the namespace");
        if line.trim() != "ready" {
            let _ = unshare.kill();
            let output = unshare.wait_with_output().expect("wait for unshare");
            panic!(
                "setting up the OpenRC namespace failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let init_pid = child_of(unshare.id());
        // "ready" comes just before `exec chroot`: nsenter --root takes the root the process
        // has when it runs, so wait for the chroot (a busy machine may take a moment).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::read_link(format!("/proc/{init_pid}/root"))
            .is_ok_and(|r| r == Path::new("/"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the OpenRC namespace's first process did not chroot"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        OpenRc {
            unshare,
            init_pid,
            root,
        }
    }

    /// The host path of `abs` inside the OpenRC root (e.g. `/var/log/spkd.log`); files the
    /// services write there are visible from outside.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Append settings to `/etc/conf.d/SERVICE`.
    pub fn append_conf(&self, service: &str, text: &str) {
        use std::io::Write;
        let path = self.path(&format!("/etc/conf.d/{service}"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        write!(file, "\n# Added by the test.\n{text}").expect("write conf.d");
    }

    /// Run `argv` (e.g. `rc-service spkd start`) inside the namespace, as OpenRC would run at
    /// boot: a clean environment and no terminal. Output is stdout and stderr in order.
    pub async fn run(&self, argv: &[&str]) -> RcOutput {
        let child = tokio::process::Command::new("nsenter")
            .arg(format!("--target={}", self.init_pid))
            .args(["--mount", "--pid", "--root", "--wd", "--"])
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .args(["TERM=dumb", "LANG=C.UTF-8"])
            .args(["/bin/sh", "-c", r#"exec "$@" 2>&1"#, "sh"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run nsenter (util-linux)");
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish in {COMMAND_TIMEOUT:?}", argv.join(" ")))
            .expect("wait for nsenter");
        RcOutput {
            command: argv.join(" "),
            code: output.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Whether process `pid` (a host pid) lives in this OpenRC system's pid namespace.
    pub fn owns_process(&self, pid: u32) -> bool {
        let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
        ns(pid).is_some() && ns(pid) == ns(self.init_pid)
    }
}

impl Drop for OpenRc {
    fn drop(&mut self) {
        // unshare --kill-child passes SIGKILL on to the namespace's first process; the kernel
        // then kills everything else in the namespace.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// What one command printed inside the OpenRC system.
#[derive(Debug)]
pub struct RcOutput {
    pub command: String,
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    /// stdout and stderr, interleaved as written.
    pub output: String,
}

impl RcOutput {
    /// Panic with the output unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &RcOutput {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// Panic unless the output contains `text`.
    #[track_caller]
    pub fn assert_output_contains(&self, text: &str) -> &RcOutput {
        assert!(self.output.contains(text), "no {text:?} in:\n{self}");
        self
    }
}

impl fmt::Display for RcOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {}", self.command)?;
        write!(f, "{}", self.output)?;
        if !self.output.ends_with('\n') && !self.output.is_empty() {
            writeln!(f)?;
        }
        match self.code {
            Some(0) => Ok(()),
            Some(code) => writeln!(f, "(exit code {code})"),
            None => writeln!(f, "(killed by a signal)"),
        }
    }
}

/// Debian's OpenRC packages, unpacked into `dir` and laid out for a merged `/usr`
/// (`dir/usr/sbin/openrc-run`, `dir/usr/lib/rc/`, ...). Returns `dir`.
fn unpack_openrc(dir: &Path) -> PathBuf {
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("create openrc unpack directory");
    for deb in openrc_debs() {
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    }
    let usr = dir.join("usr");
    for (from, to) in [
        ("lib", "lib"),
        ("sbin", "sbin"),
        ("bin", "bin"),
        ("usr", ""),
    ] {
        let from = unpacked.join(from);
        if from.is_dir() {
            let to = usr.join(to);
            std::fs::create_dir_all(&to).expect("create openrc usr");
            copy_tree(&from, &to);
        }
    }
    assert!(
        usr.join("sbin/openrc-run").is_file() && usr.join("lib/rc/sh/openrc-run.sh").is_file(),
        "the openrc package does not have the expected layout: {}",
        unpacked.display()
    );
    dir.to_path_buf()
}

/// The `.deb` files of [`PACKAGES`], downloaded once into `target/openrc-debs/`; tests running
/// side by side wait for one download (another would rewrite the files while one unpacks them).
fn openrc_debs() -> Vec<PathBuf> {
    static DEBS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    DEBS.get_or_init(download_openrc_debs).clone()
}

fn download_openrc_debs() -> Vec<PathBuf> {
    let cache = workspace_root().join("target/openrc-debs");
    std::fs::create_dir_all(&cache).expect("create target/openrc-debs");
    let find = || -> Option<Vec<PathBuf>> {
        PACKAGES
            .iter()
            .map(|name| {
                std::fs::read_dir(&cache)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.starts_with(&format!("{name}_")) && n.ends_with(".deb")
                        })
                    })
            })
            .collect()
    };
    if let Some(debs) = find() {
        return debs;
    }
    let download = || {
        Command::new("apt-get")
            .args(["-qq", "-o", "APT::Sandbox::User=root", "download"])
            .args(PACKAGES)
            .current_dir(&cache)
            .stdin(Stdio::null())
            .output()
            .expect("run apt-get download")
    };
    let mut output = download();
    if !output.status.success() {
        // A machine whose package lists were never fetched knows no openrc yet.
        run(Command::new("apt-get").args(["-qq", "update"]));
        output = download();
    }
    assert!(
        output.status.success(),
        "apt-get download {} failed:\n{}",
        PACKAGES.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    find().expect("apt-get download left the .deb files in target/openrc-debs")
}

/// The root the namespace chroots into: mount points, merged-/usr links, a minimal `/etc` with
/// OpenRC's `rc.conf`, the installed init scripts and conf.d files, and the stand-ins.
fn build_root(root: &Path, openrc: &Path, installed: &InstalledTree) {
    for d in [
        "usr",
        "proc",
        "dev",
        "run",
        "root",
        "etc/init.d",
        "etc/conf.d",
        "etc/insserv.conf.d",
        "etc/runlevels/sysinit",
        "etc/runlevels/boot",
        "etc/runlevels/default",
        "etc/runlevels/shutdown",
        "var/lib",
        "var/cache",
        "var/log",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("create root directory");
    }
    for d in ["tmp", "var/tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("create tmp");
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("var/run", "../run"),
    ] {
        symlink(target, root.join(link)).expect("create merged-/usr link");
    }
    // Names for checkpath --owner, name resolution for 127.0.0.1, and the CA certificates the
    // HTTP client loads at start.
    for f in ["passwd", "group", "hosts", "nsswitch.conf"] {
        std::fs::copy(Path::new("/etc").join(f), root.join("etc").join(f))
            .unwrap_or_else(|e| panic!("copy /etc/{f}: {e}"));
    }
    if Path::new("/etc/ssl").is_dir() {
        copy_tree(Path::new("/etc/ssl"), &root.join("etc/ssl"));
    }
    std::fs::copy(
        openrc.join("unpacked/etc/rc.conf"),
        root.join("etc/rc.conf"),
    )
    .expect("copy rc.conf");
    // Debian's OpenRC reads insserv's configuration to understand LSB init scripts.
    std::fs::write(root.join("etc/insserv.conf"), "").expect("write insserv.conf");
    copy_tree(&installed.path("/etc/init.d"), &root.join("etc/init.d"));
    copy_tree(&installed.path("/etc/conf.d"), &root.join("etc/conf.d"));
    for (name, script) in [
        ("dbus", DBUS_STANDIN),
        ("network", NETWORK_STANDIN),
        ("localmount", LOCALMOUNT_STANDIN),
    ] {
        let path = root.join("etc/init.d").join(name);
        std::fs::write(&path, script).expect("write stand-in service");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod stand-in service");
    }
}

/// `cp -a FROM/. TO/`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(format!("{}/", to.display())));
}

/// Run a setup command; panic with its output when it fails.
fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The pid of the only child of `parent`.
fn child_of(parent: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    if let Some(pid) = children.split_whitespace().next() {
        return pid.parse().expect("pid");
    }
    // Kernels without CONFIG_PROC_CHILDREN: look for the process whose parent it is.
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            return pid;
        }
    }
    panic!("unshare (pid {parent}) has no child");
}
