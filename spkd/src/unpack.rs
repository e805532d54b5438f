//! Unpack a tar stream into a package's staging directory, checking every entry before anything
//! is created: only regular files, directories, symlinks and hard links to earlier files of the
//! same package; safe names; masked modes; caps on entries and sizes. Any refused entry fails the
//! whole package (never a silent skip). Returns the manifest of what was staged.

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_tar::{Archive, EntryType};

use crate::entry_path::{check_symlink_target, enclosed_path};
use crate::index::{IndexEntry, PackageKind};
use crate::manifest::{FileKind, FileRecord};

/// The umask spkd runs with. Modes are created through it and fixed up with an explicit chmod
/// only when a package asks for bits it masks (rare: group/other-writable), saving a syscall
/// per file.
pub const UMASK: u32 = 0o022;

fn masked(mode: u32) -> bool {
    mode & UMASK != 0
}

/// Caps against decompression bombs and absurd archives.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_entries: u64,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl Limits {
    /// Caps for one package: the index's `installed_size` (plus slack) bounds the total when
    /// known, so a small package cannot unpack into gigabytes.
    pub fn for_package(entry: &IndexEntry) -> Limits {
        const ABSOLUTE_TOTAL: u64 = 64 << 30;
        let total = if entry.installed_size > 0 {
            entry
                .installed_size
                .saturating_add(entry.installed_size / 10)
                .saturating_add(1 << 20)
                .min(ABSOLUTE_TOTAL)
        } else {
            ABSOLUTE_TOTAL
        };
        Limits {
            max_entries: 500_000,
            max_file_bytes: 16 << 30,
            max_total_bytes: total,
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

/// Unpack `reader` (an uncompressed tar stream) into `staging`, which must exist and be empty.
/// Gives the reader back so the caller can drain it (checksums at the end of the stream).
pub async fn stage<R: AsyncRead + Unpin + Send>(
    reader: R,
    staging: &Path,
    package: &IndexEntry,
    limits: &Limits,
) -> Result<(Vec<FileRecord>, R), UnpackError> {
    let mut archive = Archive::new(reader);
    let mut stager = Stager::new(staging, package, limits);
    {
        let mut entries = archive.entries().map_err(UnpackError::Read)?;
        while let Some(entry) = entries.next().await {
            let mut entry = entry.map_err(UnpackError::Read)?;
            stager.entry(&mut entry).await?;
            if stager.records.len() == 2 {
                crate::failpoint::hit("stage.mid-unpack");
            }
        }
    }
    let reader = archive
        .into_inner()
        .map_err(|_| UnpackError::Read(std::io::Error::other("tar reader still in use")))?;
    Ok((stager.records, reader))
}

struct Stager<'a> {
    staging: &'a Path,
    package: &'a IndexEntry,
    limits: &'a Limits,
    records: Vec<FileRecord>,
    /// Path → index in `records`, to refuse duplicates and resolve hard links.
    seen: HashMap<PathBuf, usize>,
    /// Symlinks of this package: nothing may be written beneath one.
    symlinks: HashSet<PathBuf>,
    total_bytes: u64,
    buf: Vec<u8>,
}

impl<'a> Stager<'a> {
    fn new(staging: &'a Path, package: &'a IndexEntry, limits: &'a Limits) -> Self {
        Stager {
            staging,
            package,
            limits,
            records: Vec::new(),
            seen: HashMap::new(),
            symlinks: HashSet::new(),
            total_bytes: 0,
            buf: vec![0; 256 * 1024],
        }
    }

    async fn entry<R: AsyncRead + Unpin + Send>(
        &mut self,
        entry: &mut tokio_tar::Entry<R>,
    ) -> Result<(), UnpackError> {
        let raw_name = entry.path_bytes().map_err(UnpackError::Read)?.into_owned();
        let shown = String::from_utf8_lossy(&raw_name)
            .escape_debug()
            .to_string();
        if self.records.len() as u64 >= self.limits.max_entries {
            return Err(refuse(
                shown,
                format!("archive has more than {} entries", self.limits.max_entries),
            ));
        }
        let Some(rel) = enclosed_path(&raw_name).map_err(|r| refuse(&shown, r))? else {
            // `./` names the root itself; its mode on the live system is not the package's.
            return Ok(());
        };
        if self.seen.contains_key(&rel) {
            return Err(refuse(shown, "duplicate entry"));
        }
        if let Some(link) = rel.ancestors().skip(1).find(|a| self.symlinks.contains(*a)) {
            return Err(refuse(
                shown,
                format!("would be written through the symlink '{}'", link.display()),
            ));
        }
        if is_pax_sparse(entry).await? {
            return Err(refuse(shown, "sparse files are not allowed"));
        }
        let header = entry.header();
        let mode = self.mode(&shown, &rel, header.mode().map_err(UnpackError::Read)?)?;
        let entry_type = header.entry_type();
        self.ensure_parents(&rel)?;
        let dest = self.staging.join(&rel);
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.effective_size();
                if size > self.limits.max_file_bytes {
                    return Err(refuse(
                        shown,
                        format!("file is larger than {} bytes", self.limits.max_file_bytes),
                    ));
                }
                self.total_bytes = self.total_bytes.saturating_add(size);
                if self.total_bytes > self.limits.max_total_bytes {
                    return Err(refuse(
                        shown,
                        format!(
                            "package unpacks to more than {} bytes (index says {})",
                            self.limits.max_total_bytes, self.package.installed_size
                        ),
                    ));
                }
                let sha256 = self.write_file(entry, &dest, mode, size).await?;
                FileKind::File { size, sha256 }
            }
            EntryType::Directory => {
                match DirBuilder::new().mode(mode).create(&dest) {
                    Ok(()) if masked(mode) => set_mode(&dest, mode)?,
                    Ok(()) => {}
                    // Created earlier as an implicit parent: give it the mode the archive says.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {
                        set_mode(&dest, mode)?;
                        if let Some(&i) = self.seen.get(&rel) {
                            self.records[i].mode = mode;
                            return Ok(());
                        }
                    }
                    Err(error) => return Err(UnpackError::Write { path: dest, error }),
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
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|error| UnpackError::Write { path: dest, error })?;
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
                let kind = match self.seen.get(&target_rel).map(|&i| &self.records[i].kind) {
                    Some(k @ FileKind::File { .. }) => k.clone(),
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
                std::fs::hard_link(self.staging.join(&target_rel), &dest)
                    .map_err(|error| UnpackError::Write { path: dest, error })?;
                let i = self.seen[&target_rel];
                let mode = self.records[i].mode;
                self.push(rel, kind, mode);
                return Ok(());
            }
            other => {
                return Err(refuse(
                    shown,
                    format!("entry type {} is not allowed", describe(other)),
                ));
            }
        };
        self.push(rel, kind, mode);
        Ok(())
    }

    fn push(&mut self, rel: PathBuf, kind: FileKind, mode: u32) {
        self.seen.insert(rel.clone(), self.records.len());
        self.records.push(FileRecord {
            path: rel.to_string_lossy().into_owned(),
            kind,
            mode,
        });
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

    /// Create missing parent directories (archives need not list them) as 0755 and record them,
    /// so that commit creates them on the live system too.
    fn ensure_parents(&mut self, rel: &Path) -> Result<(), UnpackError> {
        let mut missing: Vec<PathBuf> = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| !self.seen.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in missing {
            if let Some(&i) = self.seen.get(&dir) {
                if !self.records[i].is_dir() {
                    return Err(refuse(
                        rel.to_string_lossy(),
                        format!("parent '{}' is not a directory", dir.display()),
                    ));
                }
                continue;
            }
            let dest = self.staging.join(&dir);
            DirBuilder::new()
                .mode(0o755)
                .create(&dest)
                .map_err(|error| UnpackError::Write { path: dest, error })?;
            self.push(dir, FileKind::Dir, 0o755);
        }
        // A parent listed earlier as a file or symlink cannot hold children.
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty())
            && let Some(&i) = self.seen.get(parent)
            && !self.records[i].is_dir()
        {
            return Err(refuse(
                rel.to_string_lossy(),
                format!("parent '{}' is not a directory", parent.display()),
            ));
        }
        Ok(())
    }

    async fn write_file<R: AsyncRead + Unpin>(
        &mut self,
        entry: &mut R,
        dest: &Path,
        mode: u32,
        size: u64,
    ) -> Result<String, UnpackError> {
        let werr = |error| UnpackError::Write {
            path: dest.to_owned(),
            error,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dest)
            .map_err(werr)?;
        if masked(mode) {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(werr)?;
        }
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
        Ok(hex::encode(hasher.finalize()))
    }
}

/// GNU sparse files written as pax (`GNU.sparse.*` keys) look like regular files otherwise.
async fn is_pax_sparse<R: AsyncRead + Unpin + Send>(
    entry: &mut tokio_tar::Entry<R>,
) -> Result<bool, UnpackError> {
    let Some(extensions) = entry.pax_extensions().await.map_err(UnpackError::Read)? else {
        return Ok(false);
    };
    for ext in extensions {
        if ext
            .map_err(UnpackError::Read)?
            .key_bytes()
            .starts_with(b"GNU.sparse")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), UnpackError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|error| {
        UnpackError::Write {
            path: path.to_owned(),
            error,
        }
    })
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
