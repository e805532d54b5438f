//! Target roots that look like a real machine's, not like an empty directory: real mounts
//! (a tmpfs `/boot`, a FAT `/boot/efi`, a separate `/var`, a bind-mounted `/etc/hosts`) and
//! what an installed system already holds before spk touches it (`/tmp` 1777, `/root` 0700,
//! `/etc/hostname`, `lib -> usr/lib`).
//!
//! `Env::builder(&repo)` lists the mounts and the existing entries in the order they are made,
//! then [`RootBuilder::start`] builds them in a private mount namespace (see
//! [`crate::namespace`]) and starts spkd inside it. The root itself is always a tmpfs of its own
//! there, so spk's staging under `var/lib/spk` and the root's files share a file system unless
//! the test mounts `var` separately. The test reads the root through the namespace
//! ([`Env::root`] is that view), so [`Env::path`], the `assert_*` helpers and snapshots see
//! the mounts as spkd does.
//!
//! ```text
//! let env = Env::builder(&repo)
//!     .dir("tmp", 0o1777)
//!     .file("etc/hostname", "box\n", 0o644)
//!     .tmpfs("boot", "16m")
//!     .fat("boot/efi", "8M")
//!     .start()
//!     .await;
//! ```

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::bus::Bus;
use crate::daemon::{Launch, Spkd};
use crate::fixture::{Env, index_config};
use crate::http::HttpServer;
use crate::namespace::MountNamespace;
use crate::repo::{Entry, Package, Repo};
use crate::snapshot::Kind;

/// Size of the root's own tmpfs unless [`RootBuilder::root_size`] says otherwise.
const DEFAULT_ROOT_SIZE: &str = "256m";

/// One thing that exists in the root before spkd starts, made in declaration order.
#[derive(Debug, Clone)]
enum Step {
    Dir {
        rel: String,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    File {
        rel: String,
        content: Vec<u8>,
        mode: u32,
    },
    Symlink {
        rel: String,
        target: String,
    },
    Tmpfs {
        rel: String,
        size: String,
    },
    Fat {
        rel: String,
        size: String,
    },
    BindFile {
        rel: String,
        content: Vec<u8>,
    },
}

/// A root with mounts and pre-existing entries, to start an [`Env`] on.
#[derive(Debug, Clone)]
pub struct RootBuilder {
    repo: Repo,
    root_size: String,
    /// Top-level `spk.toml` lines (before the `[[repo]]` table).
    settings: Vec<String>,
    steps: Vec<Step>,
}

impl Env {
    /// Describe a root with real mounts and existing entries for `repo` (published when
    /// the environment starts); see [`RootBuilder`].
    pub fn builder(repo: &Repo) -> RootBuilder {
        RootBuilder {
            repo: repo.clone(),
            root_size: DEFAULT_ROOT_SIZE.to_string(),
            settings: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl RootBuilder {
    /// The size of the root's tmpfs (as `mount -o size=` takes it, e.g. `8m`): a small one is
    /// a disk that fills up.
    pub fn root_size(mut self, size: &str) -> RootBuilder {
        self.root_size = size.to_string();
        self
    }

    /// A top-level `spk.toml` line, e.g. `keep_versions = 1`.
    pub fn setting(mut self, line: &str) -> RootBuilder {
        self.settings.push(line.to_string());
        self
    }

    /// A directory with these permission bits (parents 0755), owned by root.
    pub fn dir(self, rel: &str, mode: u32) -> RootBuilder {
        self.step(Step::Dir {
            rel: rel.to_string(),
            mode,
            owner: None,
        })
    }

    /// A directory with these permission bits, owned by `uid:gid`.
    pub fn dir_owned(self, rel: &str, mode: u32, uid: u32, gid: u32) -> RootBuilder {
        self.step(Step::Dir {
            rel: rel.to_string(),
            mode,
            owner: Some((uid, gid)),
        })
    }

    /// A regular file (parents 0755 where absent).
    pub fn file(self, rel: &str, content: impl Into<Vec<u8>>, mode: u32) -> RootBuilder {
        self.step(Step::File {
            rel: rel.to_string(),
            content: content.into(),
            mode,
        })
    }

    /// A symlink `rel -> target` (parents 0755 where absent), e.g. `lib -> usr/lib`.
    pub fn symlink(self, rel: &str, target: &str) -> RootBuilder {
        self.step(Step::Symlink {
            rel: rel.to_string(),
            target: target.to_string(),
        })
    }

    /// A tmpfs of `size` mounted at `rel` (a separate `/boot` or `/var`).
    pub fn tmpfs(self, rel: &str, size: &str) -> RootBuilder {
        self.step(Step::Tmpfs {
            rel: rel.to_string(),
            size: size.to_string(),
        })
    }

    /// A FAT file system of `size` (e.g. `8M`) mounted at `rel`, as `/boot/efi` is on every
    /// EFI machine (`fusefat`: its fstype is `fuse.fusefat`).
    pub fn fat(self, rel: &str, size: &str) -> RootBuilder {
        self.step(Step::Fat {
            rel: rel.to_string(),
            size: size.to_string(),
        })
    }

    /// A file of the host bind-mounted on `rel`, holding `content` (as a chroot's
    /// `/etc/hosts` is).
    pub fn bind_file(self, rel: &str, content: impl Into<Vec<u8>>) -> RootBuilder {
        self.step(Step::BindFile {
            rel: rel.to_string(),
            content: content.into(),
        })
    }

    fn step(mut self, step: Step) -> RootBuilder {
        self.steps.push(step);
        self
    }

    /// Build the root in a new mount namespace, publish the repository, start a bus and an
    /// spkd inside the namespace.
    pub async fn start(self) -> Env {
        let server = HttpServer::start();
        self.repo.publish(&server);
        let dir = tempfile::Builder::new()
            .prefix("spk-real-root-")
            .tempdir()
            .expect("temporary directory");
        let abs_root = dir.path().join("root");
        std::fs::create_dir(&abs_root).expect("create the root's mount point");
        let mut namespace = MountNamespace::new();
        namespace.mount_tmpfs(&abs_root, &self.root_size);
        let root = namespace.view(&abs_root);
        for step in &self.steps {
            apply(step, &mut namespace, dir.path(), &abs_root, &root);
        }

        let config = abs_root.join("etc/spk/spk.toml");
        let mut config_text: String = self.settings.iter().map(|l| format!("{l}\n")).collect();
        config_text.push_str(&index_config(&server));
        let config_view = namespace.view(&config);
        std::fs::create_dir_all(config_view.parent().expect("etc/spk")).expect("create etc/spk");
        std::fs::write(&config_view, config_text).expect("write spk.toml");

        let bus = Bus::start(dir.path());
        let launch = Launch {
            prefix: namespace.command_prefix(),
            root: abs_root,
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
            _tmpfs: None,
            namespace: Some(namespace),
            dir,
        }
    }
}

/// Make one step in the root: `abs_root` is its path inside the namespace, `view` the same
/// seen from the test.
fn apply(step: &Step, namespace: &mut MountNamespace, dir: &Path, abs_root: &Path, view: &Path) {
    match step {
        Step::Dir { rel, mode, owner } => {
            let path = view.join(rel);
            std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {rel}: {e}"));
            set_mode(&path, *mode);
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))
                    .unwrap_or_else(|e| panic!("chown {rel}: {e}"));
            }
        }
        Step::File { rel, content, mode } => {
            let path = view.join(rel);
            create_parents(&path);
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {rel}: {e}"));
            set_mode(&path, *mode);
        }
        Step::Symlink { rel, target } => {
            let path = view.join(rel);
            create_parents(&path);
            std::os::unix::fs::symlink(target, &path)
                .unwrap_or_else(|e| panic!("symlink {rel}: {e}"));
        }
        Step::Tmpfs { rel, size } => namespace.mount_tmpfs(&abs_root.join(rel), size),
        Step::Fat { rel, size } => {
            let image = dir.join(format!("{}.fat", rel.replace('/', "_")));
            namespace.mount_fat(&image, &abs_root.join(rel), size);
        }
        Step::BindFile { rel, content } => bind_file(namespace, dir, abs_root, view, rel, content),
    }
}

/// Write `content` to a host file beside the root and bind-mount it on `rel` (created empty
/// first if absent).
fn bind_file(
    namespace: &MountNamespace,
    dir: &Path,
    abs_root: &Path,
    view: &Path,
    rel: &str,
    content: &[u8],
) {
    let source = dir.join(format!("bind-{}", rel.replace('/', "_")));
    std::fs::write(&source, content).expect("write the bind mount's source");
    let target = view.join(rel);
    if std::fs::symlink_metadata(&target).is_err() {
        create_parents(&target);
        std::fs::write(&target, b"").unwrap_or_else(|e| panic!("create {rel}: {e}"));
    }
    namespace.bind(&source, &abs_root.join(rel));
}

fn create_parents(path: &Path) {
    let parent = path.parent().expect("a path below the root");
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Mounts and checks of a root built by [`Env::builder`].
impl Env {
    /// The mount namespace spkd runs in (only for [`Env::builder`] roots).
    #[track_caller]
    pub fn namespace(&self) -> &MountNamespace {
        self.namespace
            .as_ref()
            .expect("this Env has no mount namespace: build it with Env::builder")
    }

    /// `rel` as spkd sees it (inside the namespace): `DIR/root/rel`.
    pub fn spkd_path(&self, rel: &str) -> PathBuf {
        self.launch.root.join(rel)
    }

    /// Run `sh -euc SCRIPT` inside the mount namespace, with `$ROOT` set to the root as spkd
    /// sees it (e.g. `mount -t tmpfs tmpfs "$ROOT/opt/data/mnt"`); panics unless it succeeds.
    #[track_caller]
    pub fn in_namespace(&self, script: &str) -> String {
        let script = format!("ROOT=\"$1\"\n{script}");
        let output = self
            .namespace()
            .sh(&script, &[self.launch.root.as_os_str()]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Mount a tmpfs of `size` at `rel` now (e.g. under a package's directory).
    pub fn mount_tmpfs(&self, rel: &str, size: &str) {
        self.namespace().mount_tmpfs(&self.spkd_path(rel), size);
    }

    /// Bind-mount a host file holding `content` on `rel` now (created empty first if absent).
    pub fn bind_file(&self, rel: &str, content: &[u8]) {
        bind_file(
            self.namespace(),
            self.dir(),
            &self.launch.root,
            &self.root,
            rel,
            content,
        );
    }

    /// Make the directory `rel` a read-only bind mount of itself.
    pub fn make_read_only(&self, rel: &str) {
        self.namespace().bind_read_only(&self.spkd_path(rel));
    }

    /// Unmount the topmost mount at `rel`.
    pub fn unmount(&self, rel: &str) {
        self.namespace().unmount(&self.spkd_path(rel));
    }

    /// The file system type mounted at `rel` (`tmpfs`, `fuse.fusefat`), or `None` if `rel` is
    /// not a mount point.
    pub fn fstype(&self, rel: &str) -> Option<String> {
        self.namespace().fstype(&self.spkd_path(rel))
    }

    /// Whether `rel` lies on a FAT mount (where every file shows the same permission bits).
    pub fn on_fat(&self, rel: &str) -> bool {
        let Some(namespace) = &self.namespace else {
            return false;
        };
        let path = self.spkd_path(rel);
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", namespace.pid()))
            .expect("read the namespace's mountinfo");
        mountinfo
            .lines()
            .filter(|line| line.contains(" - fuse.fusefat "))
            .filter_map(|line| line.split(' ').nth(4))
            .any(|point| path.starts_with(point))
    }

    /// Panic unless `rel` is still a mount point of type `fstype`.
    #[track_caller]
    pub fn assert_mount(&self, rel: &str, fstype: &str) {
        assert_eq!(
            self.fstype(rel).as_deref(),
            Some(fstype),
            "{rel} is no longer a {fstype} mount point; the namespace's mounts:\n{}",
            std::fs::read_to_string(format!("/proc/{}/mountinfo", self.namespace().pid()))
                .unwrap_or_default()
        );
    }

    /// Panic unless `rel` is owned by `uid:gid`.
    #[track_caller]
    pub fn assert_owner(&self, rel: &str, uid: u32, gid: u32) {
        let meta = std::fs::symlink_metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel} is missing ({e})"));
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "{rel} is owned by {}:{}, expected {uid}:{gid}",
            meta.uid(),
            meta.gid()
        );
    }

    /// Panic unless the directory `rel` holds exactly these names (sorted).
    #[track_caller]
    pub fn assert_dir_holds(&self, rel: &str, names: &[&str]) {
        let mut actual: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap_or_else(|e| panic!("read directory {rel}: {e}"))
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        actual.sort();
        assert_eq!(actual, names, "{rel} holds {actual:?}, expected {names:?}");
    }

    /// Panic unless the files and symlinks of the root (not directories) are exactly those of
    /// `packages`, with their content, modes (but on FAT) and targets, plus the paths in
    /// `others` (files that were there before, `.spknew` files, ...), whose content is not
    /// checked here.
    #[track_caller]
    pub fn assert_files_are(&self, packages: &[&Package], others: &[&str]) {
        let mut expected: Vec<String> = others.iter().map(|p| p.to_string()).collect();
        for package in packages {
            for entry in &package.entries {
                match entry {
                    Entry::File {
                        path,
                        content,
                        mode,
                    } => {
                        if self.on_fat(path) {
                            self.assert_content(path, content);
                        } else {
                            self.assert_file(path, content, *mode);
                        }
                        expected.push(path.clone());
                    }
                    Entry::Symlink { path, target } => {
                        self.assert_symlink(path, target);
                        expected.push(path.clone());
                    }
                    Entry::HardLink { path, .. } => expected.push(path.clone()),
                    _ => {}
                }
            }
        }
        expected.sort();
        let snapshot = self.snapshot();
        let actual: Vec<String> = snapshot
            .nodes
            .iter()
            .filter(|(_, node)| node.kind != Kind::Dir)
            .map(|(path, _)| path.clone())
            .collect();
        assert_eq!(
            actual,
            expected,
            "the root's files are not exactly those expected; it holds:\n{}",
            snapshot.listing()
        );
    }

    /// Panic unless no transaction left anything behind: `var/lib/spk/staging` is empty or
    /// absent, and no `.spk-staging-*` directory is anywhere in the root (each mount's own
    /// staging lives at its mount point).
    #[track_caller]
    pub fn assert_staging_clean(&self) {
        let staging = self.path("var/lib/spk/staging");
        let left: Vec<String> = std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "staging debris in var/lib/spk/staging: {left:?}"
        );
        let mut debris = Vec::new();
        find_staging_dirs(&self.root, "", &mut debris);
        assert!(debris.is_empty(), "staging debris in the root: {debris:?}");
    }
}

/// Collect the paths of `.spk-staging-*` entries below `root/rel` (not following symlinks).
fn find_staging_dirs(root: &Path, rel: &str, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let path = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        if name.as_encoded_bytes().starts_with(b".spk-staging-") {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_staging_dirs(root, &path, found);
        }
    }
}
