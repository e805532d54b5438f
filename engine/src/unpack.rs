//! Unpack a tar stream into a package's staging directory, checking every entry before anything
//! is created: only regular files, directories, symlinks and hard links to earlier files of the
//! same package; safe names; masked modes; caps on entries and sizes. Any refused entry fails the
//! whole package (never a silent skip). Returns the manifest of what was staged.
//!
//! The stream is not verified yet while it unpacks (its sha256 is known only at its end), so
//! nothing in it may make spkd use unbounded memory: between two entries the tar reader may
//! consume only the previous entry's unread data plus [`HEADER_ALLOWANCE`] (GNU long names and
//! pax records are read whole into memory by the tar library, so they are capped before they
//! are read), every entry's declared size counts against the package's limits, and so do the
//! bytes of its names. Every file is created relative to directory handles of the staging tree,
//! never through a symlink.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_tar::{Archive, EntryType};

use crate::entry_path::{check_symlink_target, enclosed_path};
use crate::index::{IndexEntry, PackageKind};
use crate::live::Tree;
use crate::manifest::{FileKind, FileRecord};

/// The umask spkd runs with. Modes are created through it and fixed up with an explicit chmod
/// only when a package asks for bits it masks (rare: group/other-writable), saving a syscall
/// per file.
pub const UMASK: u32 = 0o022;

fn masked(mode: u32) -> bool {
    mode & UMASK != 0
}

/// What the tar reader may consume between two entries beyond the previous entry's unread
/// data: its padding, the headers, and GNU long name / long link / pax extension records.
pub const HEADER_ALLOWANCE: u64 = 256 * 1024;

/// Most a package of unknown installed size may unpack to, per byte of its tarball.
pub const MAX_RATIO: u64 = 200;

/// Caps against decompression bombs and absurd archives.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_entries: u64,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    /// Bytes of all the package's paths together (what the manifest keeps in memory).
    pub max_name_bytes: u64,
}

impl Limits {
    /// Caps for one package: the index's `installed_size` (plus slack) bounds the total when
    /// known, so a small package cannot unpack into gigabytes; when unknown (a GitHub asset),
    /// [`MAX_RATIO`] times the tarball's size does (real packages stay far below it; a stream of
    /// zeros declared as content does not).
    pub fn for_package(entry: &IndexEntry) -> Limits {
        const ABSOLUTE_TOTAL: u64 = 64 << 30;
        let total = if entry.installed_size > 0 {
            entry
                .installed_size
                .saturating_add(entry.installed_size / 10)
                .saturating_add(1 << 20)
        } else {
            entry.size.saturating_mul(MAX_RATIO).max(16 << 20)
        }
        .min(ABSOLUTE_TOTAL);
        Limits {
            max_entries: 500_000,
            max_file_bytes: 16 << 30,
            max_total_bytes: total,
            max_name_bytes: 16 << 20,
        }
    }
}

/// A failure while unpacking: either the archive broke a rule, or reading/writing failed.
#[derive(Debug)]
pub enum UnpackError {
    /// An entry was refused; `entry` is its name as found in the archive.
    Refused { entry: String, reason: String },
    /// The stream could not be read (corrupt xz/tar, network, or the verifier's size cap).
    Read(std::io::Error),
    /// Writing into staging failed (e.g. ENOSPC).
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn refuse(entry: impl Into<String>, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: entry.into(),
        reason: reason.into(),
    }
}

/// An archive entry owned by someone else than root: by name (resolved in the target root
/// before commit, once the package's system users exist) or, when the archive has no names,
/// by number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Index of the record in the package's manifest.
    pub record: usize,
    pub user: Option<String>,
    pub group: Option<String>,
    pub uid: u64,
    pub gid: u64,
}

/// What unpacking produced: the manifest and the entries with other owners than root.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub records: Vec<FileRecord>,
    pub owners: Vec<Owner>,
}

/// Unpack `reader` (an uncompressed tar stream) into `staging`, which must exist and be empty.
/// Gives the reader back so the caller can drain it (checksums at the end of the stream).
pub async fn unpack_tar<R: AsyncRead + Unpin + Send>(
    reader: R,
    staging: &Path,
    package: &IndexEntry,
    limits: &Limits,
) -> Result<(Unpacked, R), UnpackError> {
    let budget = Arc::new(AtomicU64::new(HEADER_ALLOWANCE));
    let mut archive = Archive::new(Budgeted {
        inner: reader,
        budget: budget.clone(),
    });
    let tree = Tree::open(staging).map_err(|error| UnpackError::Write {
        path: staging.to_owned(),
        error,
    })?;
    let mut unpacker = Unpacker::new(tree, staging, package, limits);
    {
        let mut entries = archive.entries().map_err(UnpackError::Read)?;
        loop {
            budget.store(
                unpacker.unread.saturating_add(HEADER_ALLOWANCE),
                Ordering::Relaxed,
            );
            let Some(entry) = entries.next().await else {
                break;
            };
            budget.store(u64::MAX, Ordering::Relaxed);
            let mut entry = entry.map_err(over_budget)?;
            unpacker.entry(&mut entry).await?;
            if unpacker.records.len() == 2 {
                crate::failpoint::hit("stage.mid-unpack");
            }
        }
    }
    budget.store(u64::MAX, Ordering::Relaxed);
    unpacker.set_dir_times()?;
    let reader = archive
        .into_inner()
        .map_err(|_| UnpackError::Read(std::io::Error::other("tar reader still in use")))?;
    Ok((
        Unpacked {
            records: unpacker.records,
            owners: unpacker.owners,
        },
        reader.inner,
    ))
}

/// `(seconds, nanoseconds)` as the timestamps to set (access time = modification time, as
/// the archive has only the one).
fn timestamps(secs: i64, nanos: u32) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: i64::from(nanos),
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The tar reader went beyond what headers and extension records may take.
#[derive(Debug, thiserror::Error)]
#[error(
    "archive header data larger than {HEADER_ALLOWANCE} bytes (a GNU long name, long link or pax record)"
)]
struct OverBudget;

fn over_budget(e: std::io::Error) -> UnpackError {
    if e.get_ref().is_some_and(|i| i.is::<OverBudget>()) {
        return refuse("(archive headers)", OverBudget.to_string());
    }
    UnpackError::Read(e)
}

/// Counts what the tar reader consumes against a budget the unpacker sets between entries
/// (`u64::MAX`: unlimited, while an entry's data is read by the unpacker itself).
struct Budgeted<R> {
    inner: R,
    budget: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Budgeted<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let left = this.budget.load(Ordering::Relaxed);
        if left == u64::MAX {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(std::io::Error::other(OverBudget)));
        }
        // Never read past the budget (what is read here may end up in memory): read into a
        // small buffer of at most the budget, then hand it on.
        let mut small = [0u8; 8192];
        let room = small
            .len()
            .min(buf.remaining())
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut limited = ReadBuf::new(&mut small[..room]);
        let result = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
        if let Poll::Ready(Ok(())) = result {
            let n = limited.filled().len();
            buf.put_slice(limited.filled());
            this.budget.store(left - n as u64, Ordering::Relaxed);
        }
        result
    }
}

/// The manifest's records by path, without a second copy of the names: they may take up to
/// `Limits::max_name_bytes`, and a map keyed by path would hold them twice until commit.
#[derive(Default)]
struct PathIndex {
    table: hashbrown::HashTable<usize>,
    hasher: RandomState,
}

impl PathIndex {
    fn get(&self, records: &[FileRecord], rel: &Path) -> Option<usize> {
        let key = rel.as_os_str().as_encoded_bytes();
        self.table
            .find(self.hasher.hash_one(key), |&i| {
                records[i].path.as_bytes() == key
            })
            .copied()
    }

    fn insert(&mut self, records: &[FileRecord], index: usize) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(records[index].path.as_bytes());
        self.table.insert_unique(hash, index, |&i| {
            hasher.hash_one(records[i].path.as_bytes())
        });
    }
}

struct Unpacker<'a> {
    /// Directory handles of the staging tree: nothing is ever reached through a symlink.
    tree: Tree,
    staging: &'a Path,
    package: &'a IndexEntry,
    limits: &'a Limits,
    records: Vec<FileRecord>,
    /// Path → index in `records`, to refuse duplicates and resolve hard links.
    /// The records by path.
    seen: PathIndex,
    /// Symlinks of this package: nothing may be written beneath one.
    symlinks: HashSet<PathBuf>,
    /// Declared sizes of every entry so far (directories and links too).
    total_bytes: u64,
    /// Bytes of the paths recorded so far.
    name_bytes: u64,
    /// Data of the last entry the unpacker did not read (the tar reader skips it).
    unread: u64,
    owners: Vec<Owner>,
    buf: Vec<u8>,
}

fn write_error(path: PathBuf) -> impl FnOnce(rustix::io::Errno) -> UnpackError {
    move |e| UnpackError::Write {
        path,
        error: e.into(),
    }
}

impl<'a> Unpacker<'a> {
    fn new(tree: Tree, staging: &'a Path, package: &'a IndexEntry, limits: &'a Limits) -> Self {
        Unpacker {
            tree,
            staging,
            package,
            limits,
            records: Vec::new(),
            seen: PathIndex::default(),
            symlinks: HashSet::new(),
            total_bytes: 0,
            name_bytes: 0,
            unread: 0,
            owners: Vec::new(),
            buf: vec![0; 256 * 1024],
        }
    }

    async fn entry<R: AsyncRead + Unpin + Send>(
        &mut self,
        entry: &mut tokio_tar::Entry<R>,
    ) -> Result<(), UnpackError> {
        let declared = entry.effective_size();
        // Whatever happens below, the tar reader skips what was not read of this entry.
        self.unread = declared;
        let raw_name = entry.path_bytes().map_err(UnpackError::Read)?.into_owned();
        let shown = shown_name(&raw_name);
        if self.records.len() as u64 >= self.limits.max_entries {
            return Err(refuse(
                shown,
                format!("archive has more than {} entries", self.limits.max_entries),
            ));
        }
        if declared > self.limits.max_file_bytes {
            let what = match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => "file is larger than",
                _ => "entry declares more data than",
            };
            return Err(refuse(
                shown,
                format!("{what} {} bytes", self.limits.max_file_bytes),
            ));
        }
        self.count_bytes(&shown, declared)?;
        let Some(rel) = enclosed_path(&raw_name).map_err(|r| refuse(&shown, r))? else {
            // `./` names the root itself; its mode on the live system is not the package's.
            return Ok(());
        };
        if self.index_of(&rel).is_some() {
            return Err(refuse(shown, "duplicate entry"));
        }
        if let Some(link) = rel.ancestors().skip(1).find(|a| self.symlinks.contains(*a)) {
            return Err(refuse(
                shown,
                format!("would be written through the symlink '{}'", link.display()),
            ));
        }
        let pax = pax_info(entry).await?;
        if pax.sparse {
            return Err(refuse(shown, "sparse files are not allowed"));
        }
        let header = entry.header();
        let mode = self.mode(&shown, &rel, header.mode().map_err(UnpackError::Read)?)?;
        let entry_type = header.entry_type();
        self.hooks_allowed(&shown, &rel, entry_type)?;
        let (mtime, mtime_ns) = match pax.mtime {
            Some(t) => t,
            None => (
                i64::try_from(header.mtime().map_err(UnpackError::Read)?).unwrap_or(i64::MAX),
                0,
            ),
        };
        let owner = self.owner(&shown, &rel, entry)?;
        self.ensure_parents(&rel)?;
        let name = rel.to_string_lossy().into_owned();
        let dest = self.staging.join(&rel);
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                let times = timestamps(mtime, mtime_ns);
                let sha256 = self
                    .write_file(entry, &name, &dest, mode, declared, &times)
                    .await?;
                self.unread = 0;
                FileKind::File {
                    size: declared,
                    sha256,
                }
            }
            EntryType::Directory => {
                let (dir, last) = self.tree.at(&name).map_err(write_error(dest.clone()))?;
                match rustix::fs::mkdirat(dir, last, Mode::from_raw_mode(mode)) {
                    Ok(()) if masked(mode) => self.set_dir_mode(&name, &dest, mode)?,
                    Ok(()) => {}
                    // Created earlier as an implicit parent: give it the mode the archive says.
                    Err(rustix::io::Errno::EXIST) if self.index_of(&rel).is_some() => {
                        self.set_dir_mode(&name, &dest, mode)?;
                        if let Some(i) = self.index_of(&rel) {
                            self.records[i].mode = mode;
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(write_error(dest)(e)),
                }
                FileKind::Dir
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refuse(&shown, "symlink without target"))?
                    .into_owned();
                check_symlink_target(&rel, &target).map_err(|r| refuse(&shown, r))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                let (dir, last) = self.tree.at(&name).map_err(write_error(dest.clone()))?;
                rustix::fs::symlinkat(target.as_str(), dir, last)
                    .map_err(write_error(dest.clone()))?;
                rustix::fs::utimensat(
                    dir,
                    last,
                    &timestamps(mtime, mtime_ns),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(write_error(dest))?;
                self.symlinks.insert(rel.clone());
                FileKind::Symlink { target }
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refuse(&shown, "hard link without target"))?
                    .into_owned();
                let target_rel = enclosed_path(&target)
                    .map_err(|r| refuse(&shown, format!("hard link target: {r}")))?
                    .ok_or_else(|| refuse(&shown, "hard link to the root"))?;
                let linked_index = self.index_of(&target_rel);
                let (i, kind) = match linked_index.map(|i| (i, &self.records[i].kind)) {
                    Some((i, k @ FileKind::File { .. })) => (i, k.clone()),
                    _ => {
                        return Err(refuse(
                            shown,
                            format!(
                                "hard link to '{}', which is not an earlier file of this package",
                                target_rel.display()
                            ),
                        ));
                    }
                };
                let target_name = target_rel.to_string_lossy().into_owned();
                let (from_dir, from, to_dir, to) = self
                    .tree
                    .two(&target_name, &name)
                    .map_err(write_error(dest.clone()))?;
                rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty())
                    .map_err(write_error(dest))?;
                let linked = self.records[i].clone();
                let record = self.push(rel, kind, linked.mode)?;
                self.records[record].mtime = linked.mtime;
                self.records[record].mtime_ns = linked.mtime_ns;
                if let Some(o) = self.owners.iter().find(|o| o.record == i).cloned() {
                    self.owners.push(Owner { record, ..o });
                }
                return Ok(());
            }
            other => {
                return Err(refuse(
                    shown,
                    format!("entry type {} is not allowed", describe(other)),
                ));
            }
        };
        let record = self.push(rel, kind, mode)?;
        self.records[record].mtime = mtime;
        self.records[record].mtime_ns = mtime_ns;
        if let Some(owner) = owner {
            self.owners.push(Owner { record, ..owner });
        }
        Ok(())
    }

    /// Who the archive says owns the entry, when not root. Only a `system` package, or a path
    /// the index lists, may give a file to someone else (as with setuid: a userland package
    /// must never hand a user a file that root runs).
    fn owner<R: AsyncRead + Unpin>(
        &self,
        shown: &str,
        rel: &Path,
        entry: &tokio_tar::Entry<R>,
    ) -> Result<Option<Owner>, UnpackError> {
        let header = entry.header();
        let name = |v: Option<&[u8]>| {
            v.filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
        };
        let user = name(entry.username_bytes());
        let group = name(entry.groupname_bytes());
        let uid = header.uid().map_err(UnpackError::Read)?;
        let gid = header.gid().map_err(UnpackError::Read)?;
        let is_root = |n: &Option<String>, id: u64| match n {
            Some(n) => n == "root",
            None => id == 0,
        };
        if is_root(&user, uid) && is_root(&group, gid) {
            return Ok(None);
        }
        let listed = self
            .package
            .owners
            .iter()
            .any(|p| Path::new(p.trim_start_matches("./")) == rel);
        if self.package.kind != PackageKind::System && !listed {
            let who = format!(
                "{}:{}",
                user.clone().unwrap_or_else(|| uid.to_string()),
                group.clone().unwrap_or_else(|| gid.to_string())
            );
            return Err(refuse(
                shown,
                format!(
                    "owner {who} not allowed in this {} package",
                    self.package.kind.as_str()
                ),
            ));
        }
        Ok(Some(Owner {
            record: 0,
            user,
            group,
            uid,
            gid,
        }))
    }

    /// Give the directories the archive listed their times, deepest first (creating what they
    /// hold changed them).
    fn set_dir_times(&mut self) -> Result<(), UnpackError> {
        let mut dirs: Vec<(String, i64, u32)> = self
            .records
            .iter()
            .filter(|r| r.is_dir() && r.mtime != 0)
            .map(|r| (r.path.clone(), r.mtime, r.mtime_ns))
            .collect();
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, secs, nanos) in dirs {
            let dest = self.staging.join(&path);
            let (dir, last) = self.tree.at(&path).map_err(write_error(dest.clone()))?;
            rustix::fs::utimensat(
                dir,
                last,
                &timestamps(secs, nanos),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(write_error(dest))?;
        }
        Ok(())
    }

    /// Count `declared` bytes (any entry's: a directory or a link may declare data too) against
    /// the package's limit.
    fn count_bytes(&mut self, shown: &str, declared: u64) -> Result<(), UnpackError> {
        self.total_bytes = self.total_bytes.saturating_add(declared);
        if self.total_bytes > self.limits.max_total_bytes {
            return Err(refuse(
                shown,
                format!(
                    "package unpacks to more than {} bytes (index says {})",
                    self.limits.max_total_bytes, self.package.installed_size
                ),
            ));
        }
        Ok(())
    }

    /// The index in the manifest of the record of `rel`, if any.
    fn index_of(&self, rel: &Path) -> Option<usize> {
        self.seen.get(&self.records, rel)
    }

    /// Record `rel`; returns its index in the manifest.
    fn push(&mut self, rel: PathBuf, kind: FileKind, mode: u32) -> Result<usize, UnpackError> {
        let path = rel.to_string_lossy().into_owned();
        // The manifest lives in memory until commit: its names are capped too.
        self.name_bytes = self.name_bytes.saturating_add(path.len() as u64);
        if self.name_bytes > self.limits.max_name_bytes {
            return Err(refuse(
                shown_name(path.as_bytes()),
                format!(
                    "the archive's paths take more than {} bytes together (too many or too long names)",
                    self.limits.max_name_bytes
                ),
            ));
        }
        let index = self.records.len();
        self.records.push(FileRecord::new(path, kind, mode));
        self.seen.insert(&self.records, index);
        Ok(index)
    }

    fn set_dir_mode(&mut self, name: &str, dest: &Path, mode: u32) -> Result<(), UnpackError> {
        let (dir, last) = self.tree.at(name).map_err(write_error(dest.to_owned()))?;
        let fd = rustix::fs::openat(
            dir,
            last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(write_error(dest.to_owned()))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(write_error(dest.to_owned()))
    }

    /// Permission bits to apply; setuid/setgid only where the index allows it, never in
    /// userland packages.
    fn mode(&self, shown: &str, rel: &Path, raw: u32) -> Result<u32, UnpackError> {
        let mode = raw & 0o7777;
        if mode & 0o6000 != 0 {
            let allowed = self.package.kind == PackageKind::System
                && self
                    .package
                    .setuid
                    .iter()
                    .any(|p| Path::new(p.trim_start_matches("./")) == rel);
            if !allowed {
                return Err(refuse(
                    shown,
                    format!(
                        "setuid/setgid bit ({mode:o}) not allowed in this {} package",
                        self.package.kind.as_str()
                    ),
                ));
            }
        }
        Ok(mode)
    }

    /// Hooks run as root during transactions (spk-hooks(5)): like setuid bits, only a `system`
    /// package may ship them, so that installing a userland application never runs its code as
    /// root. The directories themselves are harmless; anything in them, or anything but a
    /// directory in their place or above them, is refused.
    fn hooks_allowed(&self, shown: &str, rel: &Path, kind: EntryType) -> Result<(), UnpackError> {
        if self.package.kind == PackageKind::System {
            return Ok(());
        }
        for dir in [crate::hooks::SHIPPED, crate::hooks::ADMIN] {
            let dir = Path::new(dir);
            let inside = rel.starts_with(dir) && rel != dir;
            // A symlink at the directory or above it would move where spkd reads hooks from.
            let replaces = dir.starts_with(rel) && kind != EntryType::Directory;
            if inside || replaces {
                return Err(refuse(
                    shown,
                    format!(
                        "hooks run as root: only a system package may ship them, not this {} \
                         package",
                        self.package.kind.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Create missing parent directories (archives need not list them) as 0755 and record them,
    /// so that commit creates them on the live system too.
    fn ensure_parents(&mut self, rel: &Path) -> Result<(), UnpackError> {
        let mut missing: Vec<PathBuf> = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| self.index_of(a).is_none())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in missing {
            if let Some(i) = self.index_of(&dir) {
                if !self.records[i].is_dir() {
                    return Err(refuse(
                        shown_name(rel.as_os_str().as_encoded_bytes()),
                        format!("parent '{}' is not a directory", dir.display()),
                    ));
                }
                continue;
            }
            let name = dir.to_string_lossy().into_owned();
            let dest = self.staging.join(&dir);
            let (parent, last) = self.tree.at(&name).map_err(write_error(dest.clone()))?;
            rustix::fs::mkdirat(parent, last, Mode::from_raw_mode(0o755))
                .map_err(write_error(dest))?;
            // An implicit parent: no time of its own in the archive.
            self.push(dir, FileKind::Dir, 0o755)?;
        }
        // A parent listed earlier as a file or symlink cannot hold children.
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty())
            && let Some(i) = self.index_of(parent)
            && !self.records[i].is_dir()
        {
            return Err(refuse(
                shown_name(rel.as_os_str().as_encoded_bytes()),
                format!("parent '{}' is not a directory", parent.display()),
            ));
        }
        Ok(())
    }

    async fn write_file<R: AsyncRead + Unpin>(
        &mut self,
        entry: &mut R,
        name: &str,
        dest: &Path,
        mode: u32,
        size: u64,
        times: &rustix::fs::Timestamps,
    ) -> Result<String, UnpackError> {
        let werr = |error| UnpackError::Write {
            path: dest.to_owned(),
            error,
        };
        let (dir, last) = self.tree.at(name).map_err(|e| werr(e.into()))?;
        let fd = rustix::fs::openat(
            dir,
            last,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| werr(e.into()))?;
        if masked(mode) {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| werr(e.into()))?;
        }
        let mut file = std::fs::File::from(fd);
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        loop {
            let n = entry.read(&mut self.buf).await.map_err(UnpackError::Read)?;
            if n == 0 {
                break;
            }
            hasher.update(&self.buf[..n]);
            file.write_all(&self.buf[..n]).map_err(werr)?;
            written += n as u64;
        }
        if written != size {
            return Err(UnpackError::Read(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ends after {written} of {size} bytes", dest.display()),
            )));
        }
        rustix::fs::futimens(&file, times).map_err(|e| werr(e.into()))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// An entry's name for messages: escaped, and when long, its start and end around "…" (the
/// reason that follows it must stay readable within a bounded message).
fn shown_name(raw: &[u8]) -> String {
    const HEAD: usize = 200;
    const TAIL: usize = 40;
    let escaped = String::from_utf8_lossy(raw).escape_debug().to_string();
    let chars: Vec<char> = escaped.chars().collect();
    if chars.len() <= HEAD + TAIL + 1 {
        return escaped;
    }
    let head: String = chars[..HEAD].iter().collect();
    let tail: String = chars[chars.len() - TAIL..].iter().collect();
    format!("{head}…{tail}")
}

/// What the entry's pax records say that matters here.
#[derive(Debug, Default)]
struct PaxInfo {
    /// GNU sparse files written as pax (`GNU.sparse.*` keys) look like regular files otherwise.
    sparse: bool,
    /// `mtime` with its fraction: (seconds, nanoseconds).
    mtime: Option<(i64, u32)>,
}

async fn pax_info<R: AsyncRead + Unpin + Send>(
    entry: &mut tokio_tar::Entry<R>,
) -> Result<PaxInfo, UnpackError> {
    let mut info = PaxInfo::default();
    let Some(extensions) = entry.pax_extensions().await.map_err(UnpackError::Read)? else {
        return Ok(info);
    };
    for ext in extensions {
        let ext = ext.map_err(UnpackError::Read)?;
        let key = ext.key_bytes();
        if key.starts_with(b"GNU.sparse") {
            info.sparse = true;
        } else if key == b"mtime" {
            info.mtime = std::str::from_utf8(ext.value_bytes())
                .ok()
                .and_then(parse_pax_time);
        }
    }
    Ok(info)
}

/// A pax time, `SECONDS[.FRACTION]` (SECONDS may be negative).
pub fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    if text.starts_with('-') && nanos > 0 {
        // -1.5 is one and a half seconds before the epoch.
        return Some((secs.checked_sub(1)?, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

fn describe(t: EntryType) -> &'static str {
    match t {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "GNU sparse file",
        EntryType::XGlobalHeader => "global pax header",
        _ => "unsupported",
    }
}
