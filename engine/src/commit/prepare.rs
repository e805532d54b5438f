//! Before a commit: files bound for another file system than staging's (a separate `/boot`,
//! `/boot/efi`, `/var`, a bind mount) are copied into an area on that file system, so that the
//! commit is again a rename there. This is also where such a file system shows what it cannot
//! hold (FAT: no symlinks, no hard links, no modes): refused here, before anything changed.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::apply::make_dirs;
use super::plan::Copy;
use super::{Step, sync_filesystem};
use crate::error::{Error, Result};
use crate::live::{Tree, split};
use crate::manifest::FileKind;
use crate::mounts::MountTable;

/// What the copies found out about the file systems they went to.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Mounts that do not keep the modes spk sets (FAT): the records there take the mode the
    /// disk shows once placed.
    pub modeless: HashSet<u64>,
}

/// Copy every staged file of `copies` to its area, create the backup directories `steps`
/// need, and flush the file systems written.
pub fn prepare(
    tree: &mut Tree,
    root: &Path,
    package: &str,
    copies: &[Copy],
    steps: &[Step],
    mounts: &MountTable,
) -> Result<Prepared> {
    let io = |what: &str, path: &str, e: std::io::Error| {
        Error::io(format!("{package}: {what} {path}"), e)
    };
    let mut prepared = Prepared::default();
    // Staged inode → first copy: hard links stay hard links.
    let mut linked: HashMap<(u64, u64), String> = HashMap::new();
    let unwritable = |mount: u64, path: &str, e: std::io::Error| {
        Error::io(
            format!(
                "{package}: cannot write to the file system at {} (for {path})",
                mounts.describe(mount, root, &root.join(path))
            ),
            e,
        )
    };
    for copy in copies {
        let cannot = |what: &str| Error::PathConflict {
            package: package.to_owned(),
            path: copy.live.clone(),
            reason: format!(
                "the file system at {} cannot hold {what}",
                mounts.describe(copy.mount, root, &root.join(&copy.live))
            ),
        };
        make_dirs(tree, split(&copy.to).0)
            .map_err(|e| unwritable(copy.mount, &copy.live, e.error))?;
        match &copy.kind {
            FileKind::Symlink { target } => {
                let (dir, name) = tree
                    .at(&copy.to)
                    .map_err(|e| io("opening", &copy.to, e.into()))?;
                match rustix::fs::symlinkat(target.as_str(), dir, name) {
                    Ok(()) => {}
                    Err(Errno::PERM | Errno::NOSYS | Errno::NOTSUP | Errno::INVAL) => {
                        return Err(cannot("symlinks"));
                    }
                    Err(e) => return Err(io("writing", &copy.live, e.into())),
                }
                let (dir, name) = tree
                    .at(&copy.to)
                    .map_err(|e| io("opening", &copy.to, e.into()))?;
                if copy.uid != 0 || copy.gid != 0 {
                    rustix::fs::chownat(
                        dir,
                        name,
                        Some(rustix::process::Uid::from_raw(copy.uid)),
                        Some(rustix::process::Gid::from_raw(copy.gid)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io("writing", &copy.live, e.into()))?;
                }
                if let Some(times) = copy.times() {
                    rustix::fs::utimensat(dir, name, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io("writing", &copy.live, e.into()))?;
                }
            }
            FileKind::File { .. } => {
                let st = tree
                    .stat(&copy.from)
                    .map_err(|e| io("reading", &copy.from, e.into()))?
                    .ok_or_else(|| io("reading", &copy.from, Errno::NOENT.into()))?;
                if let Some(first) = linked.get(&(copy.mount, st.ino)) {
                    let first = first.clone();
                    let (fd, fname, td, tname) = tree
                        .two(&first, &copy.to)
                        .map_err(|e| io("opening", &copy.to, e.into()))?;
                    match rustix::fs::linkat(fd, fname, td, tname, rustix::fs::AtFlags::empty()) {
                        Ok(()) => {}
                        Err(Errno::PERM | Errno::NOSYS | Errno::NOTSUP | Errno::MLINK) => {
                            return Err(cannot("hard links"));
                        }
                        Err(e) => return Err(io("writing", &copy.live, e.into())),
                    }
                } else {
                    if st.nlink > 1 {
                        linked.insert((copy.mount, st.ino), copy.to.clone());
                    }
                    let honoured = copy_file(tree, copy).map_err(|e| {
                        if e.raw_os_error() == Some(Errno::NOTSUP.raw_os_error()) {
                            cannot("file capabilities")
                        } else {
                            io("copying", &copy.live, e)
                        }
                    })?;
                    if !honoured {
                        if copy.mode & 0o7000 != 0 {
                            return Err(cannot("setuid/setgid bits"));
                        }
                        prepared.modeless.insert(copy.mount);
                    }
                }
            }
            FileKind::Dir => {}
        }
    }
    for step in steps.iter().filter(|s| !s.backup.is_empty()) {
        make_dirs(tree, split(&step.backup).0).map_err(|e| {
            Error::io(
                format!(
                    "{package}: cannot keep a backup of {} at {}",
                    step.live, e.path
                ),
                e.error,
            )
        })?;
    }
    let mut flushed = HashSet::new();
    for copy in copies {
        if flushed.insert(copy.mount) {
            let area = root.join(split(&copy.to).0);
            sync_filesystem(&area).map_err(|e| io("syncing", &copy.to, e))?;
        }
    }
    Ok(prepared)
}

/// Copy one staged file; whether the file system kept its mode.
fn copy_file(tree: &mut Tree, copy: &Copy) -> std::io::Result<bool> {
    let mut from = tree.open_file(&copy.from)?;
    let (dir, name) = tree.at(&copy.to)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut to = std::fs::File::from(fd);
    std::io::copy(&mut from, &mut to)?;
    // Owner first: a chown clears setuid bits and capabilities, set after it.
    let mut honoured = true;
    if copy.uid != 0 || copy.gid != 0 {
        match rustix::fs::fchown(
            &to,
            Some(rustix::process::Uid::from_raw(copy.uid)),
            Some(rustix::process::Gid::from_raw(copy.gid)),
        ) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::NOSYS | Errno::NOTSUP) => honoured = false,
            Err(e) => return Err(e.into()),
        }
    }
    let chmod = rustix::fs::fchmod(&to, Mode::from_raw_mode(copy.mode));
    let shown = rustix::fs::fstat(&to)?.st_mode & 0o7777;
    match chmod {
        Ok(()) => honoured &= shown == copy.mode,
        Err(Errno::PERM | Errno::NOSYS | Errno::NOTSUP) => honoured = false,
        Err(e) => return Err(e.into()),
    }
    if let Some(text) = &copy.caps {
        let caps = crate::fcaps::parse(text).map_err(std::io::Error::other)?;
        crate::fcaps::set(&to, &caps)?;
    }
    if let Some(times) = copy.times() {
        rustix::fs::futimens(&to, &times)?;
    }
    Ok(honoured)
}
