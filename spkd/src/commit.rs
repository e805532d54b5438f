//! Moving a staged package into the live root, and taking an old one out. Every live path is
//! reached through `openat2(RESOLVE_IN_ROOT)`, so a symlink in the live root (even an absolute
//! one, or a hostile one) is resolved inside the root and never leads outside it; the final
//! component is placed with `renameat`, which replaces a file atomically and never follows a
//! symlink. All steps are idempotent, so recovery after a crash can simply run them again.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::manifest::{FileKind, FileRecord};

/// Why a path could not be placed or removed.
#[derive(Debug)]
pub struct PlaceError {
    pub path: String,
    pub reason: String,
    pub errno: Option<Errno>,
}

impl PlaceError {
    fn io(path: &str, what: &str, e: Errno) -> Self {
        PlaceError {
            path: path.to_owned(),
            reason: format!("{what}: {}", std::io::Error::from(e)),
            errno: Some(e),
        }
    }
}

/// Directory handles of one tree, opened without ever leaving it, cached by relative path.
struct Tree {
    root: OwnedFd,
    resolve: ResolveFlags,
    dirs: HashMap<String, OwnedFd>,
}

impl Tree {
    fn open(path: &Path, resolve: ResolveFlags) -> Result<Tree, PlaceError> {
        let root = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| PlaceError::io(&path.display().to_string(), "open", e))?;
        Ok(Tree {
            root,
            resolve,
            dirs: HashMap::new(),
        })
    }

    /// The live root: symlinks are followed, but only inside the root.
    fn live(path: &Path) -> Result<Tree, PlaceError> {
        Self::open(path, ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS)
    }

    /// The staging tree is ours: no symlink is ever followed in it.
    fn staging(path: &Path) -> Result<Tree, PlaceError> {
        Self::open(path, ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS)
    }

    /// Handle of the directory `dir` (relative; "" is the root).
    fn dir(&mut self, dir: &str) -> Result<&OwnedFd, Errno> {
        if dir.is_empty() {
            return Ok(&self.root);
        }
        if !self.dirs.contains_key(dir) {
            // Bounded cache: commits walk sorted paths, so recent parents are what matter.
            if self.dirs.len() > 256 {
                self.dirs.clear();
            }
            let fd = rustix::fs::openat2(
                &self.root,
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                self.resolve,
            )?;
            self.dirs.insert(dir.to_owned(), fd);
        }
        Ok(&self.dirs[dir])
    }

    fn forget(&mut self, dir: &str) {
        self.dirs.remove(dir);
    }

    fn file_type(&mut self, path: &str) -> Result<Option<FileType>, Errno> {
        let (dir, name) = split(path);
        let fd = match self.dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether `path` lies strictly beneath the directory `dir`.
fn is_beneath(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Check, before anything moves, that every record can be placed: no file where a directory
/// stands, no directory where a file stands.
pub fn preflight(root: &Path, records: &[FileRecord]) -> Result<(), PlaceError> {
    let mut live = Tree::live(root)?;
    // A directory missing from the live root: nothing beneath it can clash.
    let mut missing: Option<String> = None;
    for r in records {
        if missing.as_deref().is_some_and(|m| is_beneath(&r.path, m)) {
            continue;
        }
        let existing = live
            .file_type(&r.path)
            .map_err(|e| PlaceError::io(&r.path, "stat", e))?;
        if existing.is_none() && r.is_dir() {
            missing = Some(r.path.clone());
        }
        let clash = match (&r.kind, existing) {
            (_, None) => None,
            (FileKind::Dir, Some(FileType::Directory)) => None,
            // A symlink to a directory (e.g. merged /usr) serves as the directory.
            (FileKind::Dir, Some(FileType::Symlink)) => match live.dir(&r.path) {
                Ok(_) => None,
                Err(_) => Some("a symlink that does not lead to a directory stands there"),
            },
            (FileKind::Dir, Some(_)) => Some("a file stands where the package has a directory"),
            (_, Some(FileType::Directory)) => {
                Some("a directory stands where the package has a file")
            }
            (_, Some(_)) => None,
        };
        if let Some(reason) = clash {
            return Err(PlaceError {
                path: r.path.clone(),
                reason: reason.to_owned(),
                errno: None,
            });
        }
    }
    Ok(())
}

/// Move every staged record into the live root. `records` must be sorted parents-first.
/// A record whose staged file is already gone was moved by an earlier (interrupted) run.
pub fn place(root: &Path, staging: &Path, records: &[FileRecord]) -> Result<(), PlaceError> {
    let mut live = Tree::live(root)?;
    let mut staged = Tree::staging(staging)?;
    // A directory new to the live root moves in whole, with everything beneath it.
    let mut moved: Option<String> = None;
    for (i, r) in records.iter().enumerate() {
        if i == records.len() / 2 {
            crate::failpoint::hit("commit.mid-place");
        }
        if moved.as_deref().is_some_and(|m| is_beneath(&r.path, m)) {
            continue;
        }
        let (dir, name) = split(&r.path);
        let live_dir = live
            .dir(dir)
            .map_err(|e| PlaceError::io(&r.path, "open parent", e))?;
        if r.is_dir() {
            let absent = matches!(
                rustix::fs::statat(live_dir, name, AtFlags::SYMLINK_NOFOLLOW),
                Err(Errno::NOENT)
            );
            if absent && let Ok(staged_dir) = staged.dir(dir) {
                let live_dir = live
                    .dir(dir)
                    .map_err(|e| PlaceError::io(&r.path, "open parent", e))?;
                // RENAME_NOREPLACE: never replace something that appeared meanwhile.
                match rustix::fs::renameat_with(
                    staged_dir,
                    name,
                    live_dir,
                    name,
                    rustix::fs::RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {
                        moved = Some(r.path.clone());
                        continue;
                    }
                    // Already moved by an interrupted run, or not staged: create it below.
                    Err(Errno::NOENT | Errno::EXIST) => {}
                    Err(e) => return Err(PlaceError::io(&r.path, "rename into place", e)),
                }
            }
            let live_dir = live
                .dir(dir)
                .map_err(|e| PlaceError::io(&r.path, "open parent", e))?;
            let mode = Mode::from_raw_mode(r.mode);
            match rustix::fs::mkdirat(live_dir, name, mode) {
                Ok(()) if r.mode & crate::unpack::UMASK != 0 => {
                    rustix::fs::chmodat(live_dir, name, mode, AtFlags::empty())
                        .map_err(|e| PlaceError::io(&r.path, "chmod", e))?;
                }
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let st = rustix::fs::statat(live_dir, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| PlaceError::io(&r.path, "stat", e))?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory
                        && st.st_mode & 0o7777 != r.mode
                    {
                        rustix::fs::chmodat(live_dir, name, mode, AtFlags::empty())
                            .map_err(|e| PlaceError::io(&r.path, "chmod", e))?;
                    }
                }
                Err(e) => return Err(PlaceError::io(&r.path, "mkdir", e)),
            }
            continue;
        }
        let staged_dir = match staged.dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(PlaceError::io(&r.path, "open staged parent", e)),
        };
        // Re-borrow: `live` and `staged` are distinct trees.
        let live_dir = live
            .dir(dir)
            .map_err(|e| PlaceError::io(&r.path, "open parent", e))?;
        match rustix::fs::renameat(staged_dir, name, live_dir, name) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(PlaceError::io(&r.path, "rename into place", e)),
        }
    }
    Ok(())
}

/// Remove `records` from the live root: files and symlinks first, then directories deepest
/// first and only when empty (another package may still have files in them).
pub fn remove(root: &Path, records: &[FileRecord]) -> Result<(), PlaceError> {
    let mut live = Tree::live(root)?;
    let mut dirs = Vec::new();
    for r in records {
        if r.is_dir() {
            dirs.push(r.path.as_str());
            continue;
        }
        let (dir, name) = split(&r.path);
        let fd = match live.dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => continue,
            Err(e) => return Err(PlaceError::io(&r.path, "open parent", e)),
        };
        // Never unlink a directory that replaced one of our files.
        match rustix::fs::unlinkat(fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) | Err(Errno::ISDIR) => {}
            Err(e) => return Err(PlaceError::io(&r.path, "remove", e)),
        }
    }
    dirs.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for path in dirs {
        let (dir, name) = split(path);
        live.forget(path);
        let Ok(fd) = live.dir(dir) else { continue };
        // Only a real, empty directory goes; a symlink standing in for it stays.
        if let Ok(st) = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(st.st_mode) != FileType::Directory
        {
            continue;
        }
        match rustix::fs::unlinkat(fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST) => {}
            Err(e) => return Err(PlaceError::io(path, "remove directory", e)),
        }
    }
    Ok(())
}

/// Flush everything written on the file system holding `path` (one call for a whole staged
/// tree instead of an fsync per file).
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::syncfs(fd.as_fd())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: FileKind, mode: u32) -> FileRecord {
        FileRecord {
            path: path.into(),
            kind,
            mode,
        }
    }

    #[test]
    fn place_stays_inside_root_through_hostile_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        let staging = tmp.path().join("staging");
        std::fs::create_dir_all(root.join("usr")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(staging.join("usr/lib")).unwrap();
        std::fs::write(staging.join("usr/lib/x"), b"new").unwrap();
        // The live root has `usr/lib` pointing at an absolute path outside it.
        std::os::unix::fs::symlink(&outside, root.join("usr/lib")).unwrap();
        let records = vec![
            rec("usr", FileKind::Dir, 0o755),
            rec("usr/lib", FileKind::Dir, 0o755),
            rec(
                "usr/lib/x",
                FileKind::File {
                    size: 3,
                    sha256: String::new(),
                },
                0o644,
            ),
        ];
        // Resolved inside the root, `usr/lib` leads nowhere: refused, and nothing outside.
        let _ = preflight(&root, &records);
        let _ = place(&root, &staging, &records);
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }

    #[test]
    fn place_then_remove_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let staging = tmp.path().join("staging");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(staging.join("opt")).unwrap();
        std::fs::write(staging.join("opt/a"), b"a").unwrap();
        std::os::unix::fs::symlink("a", staging.join("opt/b")).unwrap();
        let records = vec![
            rec("opt", FileKind::Dir, 0o750),
            rec(
                "opt/a",
                FileKind::File {
                    size: 1,
                    sha256: String::new(),
                },
                0o644,
            ),
            rec("opt/b", FileKind::Symlink { target: "a".into() }, 0o777),
        ];
        preflight(&root, &records).unwrap();
        place(&root, &staging, &records).unwrap();
        assert_eq!(std::fs::read(root.join("opt/b")).unwrap(), b"a");
        // Running again (crash recovery) is harmless.
        place(&root, &staging, &records).unwrap();
        remove(&root, &records).unwrap();
        assert!(!root.join("opt").exists());
    }
}
