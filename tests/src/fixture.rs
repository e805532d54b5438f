//! The shared fixture of the end-to-end tests: one private bus, one HTTP server with a
//! published repository, and one spkd serving a temporary root.
//!
//! `Env::new(&repo)` builds all of it in a few milliseconds so each test reads as a story.
//! Dropping the `Env` stops spkd, the bus and the server and deletes the root; when the test
//! is failing, spkd's log is printed first.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::bus::Bus;
use crate::client::Client;
use crate::daemon::{CtlOutput, Launch, Spkd, spkctl};
use crate::http::HttpServer;
use crate::namespace::MountNamespace;
use crate::repo::{GITHUB_API_PATH, GITHUB_OWNER, GITHUB_REPO, REPO_PATH, Repo, SigningKey};
use crate::snapshot::Snapshot;

/// `spk.toml` text for one `index` repository named `test` at [`REPO_PATH`] on `server`.
pub fn index_config(server: &HttpServer) -> String {
    format!(
        "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{}\"\nmirrors = []\n",
        server.url(REPO_PATH)
    )
}

/// `spk.toml` text for one `github` repository named `smechdeploy` whose `api` is the
/// GitHub-shaped API on `server` (see [`crate::repo::GithubRelease`]).
pub fn github_config(server: &HttpServer) -> String {
    format!(
        "[[repo]]\nname = \"smechdeploy\"\nkind = \"github\"\nowner = \"{GITHUB_OWNER}\"\n\
         repo = \"{GITHUB_REPO}\"\napi = \"{}\"\n",
        server.url(GITHUB_API_PATH)
    )
}

/// A complete test environment.
pub struct Env {
    pub spkd: Spkd,
    /// How spkd is (re)started: root, config, bus, log, and the mount namespace prefix.
    pub(crate) launch: Launch,
    pub bus: Bus,
    pub server: HttpServer,
    /// The target root as the test reads it: `DIR/root`, which is also what spkd is given;
    /// for a root with real mounts ([`Env::builder`]), that path seen through the mount
    /// namespace (`/proc/PID/root/DIR/root`).
    pub root: PathBuf,
    /// The tmpfs mounted on the root, if any, kept for its `Drop` (declared before `dir`:
    /// unmounted before the directory is removed).
    pub(crate) _tmpfs: Option<Tmpfs>,
    /// The mount namespace spkd runs in, if any (dropped after spkd, before `dir`).
    pub(crate) namespace: Option<MountNamespace>,
    pub(crate) dir: TempDir,
}

/// A tmpfs mounted for a test; lazily unmounted on drop (spkd may still hold it open then).
pub(crate) struct Tmpfs {
    point: PathBuf,
}

impl Tmpfs {
    fn mount(point: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(point).expect("create the mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed ({status}): the disk-full tests run as root",
            point.display()
        );
        Tmpfs {
            point: point.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&self.point)
            .status();
    }
}

impl Env {
    /// Publish `repo`, then start a bus and an spkd whose config points at it.
    pub async fn new(repo: &Repo) -> Env {
        let server = HttpServer::start();
        repo.publish(&server);
        Env::with_server(server).await
    }

    /// Start a bus and spkd against whatever `server` serves under `/repo/`.
    pub async fn with_server(server: HttpServer) -> Env {
        let config = index_config(&server);
        Env::with_config(server, &config).await
    }

    /// Start a bus and spkd with this `spk.toml` text (see [`index_config`],
    /// [`github_config`]; append tunables such as `stall_timeout = 1`).
    pub async fn with_config(server: HttpServer, config_text: &str) -> Env {
        Env::start(server, config_text, None).await
    }

    /// Like [`Env::new`], with the root on its own tmpfs of `size` (as `mount -o size=`
    /// takes it, e.g. `4m`), mounted before spkd starts: staging and cache live under the
    /// root, so this is a disk that fills up. Unmounted when the `Env` is dropped.
    pub async fn on_tmpfs(repo: &Repo, size: &str) -> Env {
        let server = HttpServer::start();
        repo.publish(&server);
        let config = index_config(&server);
        Env::start(server, &config, Some(size)).await
    }

    async fn start(server: HttpServer, config_text: &str, tmpfs_size: Option<&str>) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("spk-e2e-")
            .tempdir()
            .expect("temporary directory");
        let root = dir.path().join("root");
        let tmpfs = tmpfs_size.map(|size| Tmpfs::mount(&root, size));
        let config = root.join("etc/spk/spk.toml");
        std::fs::create_dir_all(config.parent().expect("etc/spk")).expect("create etc/spk");
        std::fs::write(&config, config_text).expect("write spk.toml");
        let bus = Bus::start(dir.path());
        let launch = Launch {
            prefix: Vec::new(),
            root: root.clone(),
            config,
            bus_address: bus.address().to_string(),
            log: dir.path().join("spkd.log"),
        };
        let spkd = Spkd::launch(&launch, &[]).await;
        Env {
            spkd,
            launch,
            bus,
            server,
            root,
            _tmpfs: tmpfs,
            namespace: None,
            dir,
        }
    }

    /// Stop spkd with SIGTERM (if it still runs) and start a new one on the same root,
    /// config and bus (and in the same mount namespace), with these variables added to its
    /// environment (e.g. `[("SPKD_FAILPOINTS", "commit.mid-place")]`).
    pub async fn restart_spkd_with_env(&mut self, env: &[(&str, &str)]) {
        self.spkd
            .terminate(std::time::Duration::from_secs(15))
            .await;
        self.spkd = Spkd::launch(&self.launch, env).await;
    }

    /// A boot that applies the prepared update: spkd stops (the machine goes down), OpenRC's
    /// spk-offline-update runs `spkd --apply-offline-update` on the root (with `env` added,
    /// e.g. a failpoint), then spkd starts again. What the boot printed, and its exit status.
    pub async fn boot_applying_offline_update(
        &mut self,
        env: &[(&str, &str)],
    ) -> std::process::Output {
        self.spkd
            .terminate(std::time::Duration::from_secs(15))
            .await;
        let out = tokio::process::Command::new(crate::daemon::binary("spkd"))
            .arg("--root")
            .arg(&self.launch.root)
            .arg("--config")
            .arg(&self.launch.config)
            .arg("--apply-offline-update")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run spkd --apply-offline-update");
        self.spkd = Spkd::launch(&self.launch, &[]).await;
        out
    }

    /// Stop spkd with SIGTERM (if it still runs) and start a new one on the same root,
    /// config and bus.
    pub async fn restart_spkd(&mut self) {
        self.restart_spkd_with_env(&[]).await;
    }

    /// Trust `key`: write its public key to `ROOT/etc/spk/keys/NAME.pub` (read at every
    /// refresh, so no restart is needed).
    pub fn trust_key(&self, key: &SigningKey) {
        let dir = self.path("etc/spk/keys");
        std::fs::create_dir_all(&dir).expect("create etc/spk/keys");
        std::fs::write(dir.join(key.file_name()), &key.public).expect("write public key");
    }

    /// The temporary directory holding the root, the bus socket and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Publish `repo` in place of the current one (a new release on the mirror).
    pub fn publish(&self, repo: &Repo) {
        repo.publish(&self.server);
    }

    /// Run `spkctl --bus ADDR --no-progress --yes ARGS`.
    pub async fn spkctl(&self, args: &[&str]) -> CtlOutput {
        let mut all = vec!["--bus", self.bus.address(), "--no-progress", "--yes"];
        all.extend_from_slice(args);
        spkctl(&all).await
    }

    /// Start `spkctl --bus ADDR --no-progress --yes ARGS` as a child process (stdin not a
    /// terminal, output piped), for tests that act while it runs.
    pub fn spawn_spkctl(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(crate::daemon::binary("spkctl"))
            .args(["--bus", self.bus.address(), "--no-progress", "--yes"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn spkctl")
    }

    /// Start `spkctl ARGS` (see [`Env::spawn_spkctl`]) with the download of `tarball` held for
    /// `stall` once, and wait until it is held: the child and the path of its transaction.
    pub async fn spawn_held(
        &self,
        args: &[&str],
        tarball: &str,
        stall: std::time::Duration,
    ) -> (tokio::process::Child, zbus::zvariant::OwnedObjectPath) {
        self.server
            .set_fault_times(tarball, crate::http::Fault::Stall(stall), 1);
        let child = self.spawn_spkctl(args);
        self.server.wait_for_gets(tarball, 1).await;
        let path = self
            .client()
            .await
            .transactions()
            .await
            .pop()
            .expect("a running transaction");
        (child, path)
    }

    /// Run `spkctl --bus ADDR --no-progress --yes --json ARGS`.
    pub async fn spkctl_json(&self, args: &[&str]) -> CtlOutput {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.spkctl(&all).await
    }

    /// A fresh D-Bus client connection.
    pub async fn client(&self) -> Client {
        Client::connect(self.bus.address()).await
    }

    /// `ROOT/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The state of the root now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.root)
    }

    /// Whether the verified tarball with this sha256 is in spkd's cache.
    pub fn cached(&self, sha256: &str) -> bool {
        self.path(&format!("var/cache/spk/{sha256}.tar.xz"))
            .is_file()
    }

    /// The sha256 names of the tarballs in spkd's cache (`var/cache/spk/<sha256>.tar.xz`),
    /// sorted.
    pub fn cached_tarballs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("var/cache/spk"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".tar.xz"))
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The installed version of package `name` as `spkctl info` shows it, `None` when it is
    /// not installed.
    pub async fn installed_version(&self, name: &str) -> Option<String> {
        let info = self.spkctl_json(&["info", name]).await;
        info.assert_success();
        let json = info.json();
        match json["state"].as_str() {
            Some("installed" | "upgradable" | "broken") => Some(
                json["installed-version"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no installed-version: {info}"))
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Panic unless `rel` is a regular file with exactly this content and permission bits.
    #[track_caller]
    pub fn assert_file(&self, rel: &str, content: &[u8], mode: u32) {
        let path = self.path(rel);
        let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| {
            panic!(
                "{rel} is missing ({e}); the root holds:\n{}",
                self.snapshot().listing()
            )
        });
        assert!(
            meta.file_type().is_file(),
            "{rel} is not a regular file: {meta:?}"
        );
        let actual = std::fs::read(&path).expect("read file");
        assert!(
            actual == content,
            "{rel} has content {:?}, expected {:?}",
            String::from_utf8_lossy(&actual),
            String::from_utf8_lossy(content)
        );
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            mode,
            "{rel} has mode {:o}, expected {mode:o}",
            meta.permissions().mode() & 0o7777
        );
    }

    /// Panic unless `rel` is a regular file with exactly this content (whatever its mode: on
    /// FAT every file shows the same permission bits).
    #[track_caller]
    pub fn assert_content(&self, rel: &str, content: &[u8]) {
        let actual = std::fs::read(self.path(rel)).unwrap_or_else(|e| {
            panic!(
                "{rel} is missing ({e}); the root holds:\n{}",
                self.snapshot().listing()
            )
        });
        assert!(
            actual == content,
            "{rel} has content {:?}, expected {:?}",
            String::from_utf8_lossy(&actual),
            String::from_utf8_lossy(content)
        );
    }

    /// Panic unless `rel` is a directory with these permission bits.
    #[track_caller]
    pub fn assert_dir(&self, rel: &str, mode: u32) {
        let meta = std::fs::symlink_metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("directory {rel} is missing ({e})"));
        assert!(meta.is_dir(), "{rel} is not a directory");
        assert_eq!(
            meta.mode() & 0o7777,
            mode,
            "{rel} has mode {:o}, expected {mode:o}",
            meta.mode() & 0o7777
        );
    }

    /// Panic unless `rel` is a symlink pointing at `target`.
    #[track_caller]
    pub fn assert_symlink(&self, rel: &str, target: &str) {
        let link = std::fs::read_link(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel} is not a symlink ({e})"));
        assert_eq!(
            link,
            Path::new(target),
            "{rel} points at {link:?}, expected {target}"
        );
    }

    /// Panic unless `a` and `b` are the same inode (a hard link pair).
    #[track_caller]
    pub fn assert_hard_linked(&self, a: &str, b: &str) {
        let ma = std::fs::symlink_metadata(self.path(a)).expect("first link");
        let mb = std::fs::symlink_metadata(self.path(b)).expect("second link");
        assert_eq!(
            (ma.dev(), ma.ino()),
            (mb.dev(), mb.ino()),
            "{a} and {b} are not the same file"
        );
        assert!(ma.nlink() >= 2, "{a} has link count {}", ma.nlink());
    }

    /// Panic if anything exists at `rel` (not even a dangling symlink).
    #[track_caller]
    pub fn assert_absent(&self, rel: &str) {
        if let Ok(meta) = std::fs::symlink_metadata(self.path(rel)) {
            panic!(
                "{rel} should not exist, but it is there: {:?}",
                meta.file_type()
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== spkd log ({}) =====\n{}\n===== end of spkd log =====",
                self.dir.path().join("spkd.log").display(),
                self.spkd.log()
            );
            let requests = self.server.requests();
            eprintln!("===== HTTP requests =====");
            for r in requests {
                eprintln!(
                    "{} {} -> {} {}",
                    r.method,
                    r.path,
                    r.status,
                    r.header("range")
                        .map(|v| format!("(Range: {v})"))
                        .unwrap_or_default()
                );
            }
        }
    }
}
