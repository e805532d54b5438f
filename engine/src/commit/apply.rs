//! Running a commit's journaled steps forward, or back. Both directions are idempotent and
//! decide what is left to do from the disk alone (a staged path that is gone was placed; a
//! backup that exists holds what stood there), so recovery after a crash simply runs one of
//! them again. Backups are hard links where the file system has them: the live path is
//! replaced by one atomic rename and never goes missing.

use rustix::fs::{AtFlags, Mode, RenameFlags};
use rustix::io::Errno;

use super::{Op, Step};
use crate::live::{Tree, split};
use crate::manifest::{FileKind, FileRecord};

/// A step that failed, with the path and the operation.
#[derive(Debug)]
pub struct StepError {
    pub path: String,
    pub op: &'static str,
    pub error: std::io::Error,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.op, self.error)
    }
}

fn fail(path: &str, op: &'static str, e: Errno) -> StepError {
    StepError {
        path: path.to_owned(),
        op,
        error: e.into(),
    }
}

/// Errors meaning "this file system cannot do that" (FAT has no hard links, FUSE file
/// systems may lack rename flags).
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::PERM | Errno::XDEV | Errno::MLINK | Errno::NOTSUP | Errno::NOSYS | Errno::INVAL
    )
}

fn rename(tree: &mut Tree, from: &str, to: &str, flags: RenameFlags) -> Result<(), Errno> {
    let (fd, fname, td, tname) = tree.two(from, to)?;
    match rustix::fs::renameat_with(fd, fname, td, tname, flags) {
        Err(Errno::INVAL) if flags.contains(RenameFlags::NOREPLACE) => {
            // No RENAME_NOREPLACE here (some FUSE file systems): check, then rename.
            if rustix::fs::statat(td, tname, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return Err(Errno::EXIST);
            }
            rustix::fs::renameat(fd, fname, td, tname)
        }
        r => r,
    }
}

/// Keep what stands at `live` at `backup` before `staged` replaces it: a hard link (the live
/// path never goes missing), or where the file system has none, a rename. Nothing to do when
/// the backup exists (an earlier run made it), or nothing stands at `live`.
fn keep(tree: &mut Tree, live: &str, backup: &str, staged: &str) -> Result<(), Errno> {
    let (ld, lname, bd, bname) = tree.two(live, backup)?;
    match rustix::fs::linkat(ld, lname, bd, bname, AtFlags::empty()) {
        Ok(()) | Err(Errno::EXIST | Errno::NOENT) => Ok(()),
        Err(e) if unsupported(e) => {
            // Only while the new content is still staged: afterwards `live` is the new file.
            if tree.exists(backup)? || !tree.exists(staged)? {
                return Ok(());
            }
            match rename(tree, live, backup, RenameFlags::NOREPLACE) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether `step` (Place, MoveTree) was carried out: `live` holds the staged inode. Without a
/// recorded inode, whether the staged content is gone.
fn placed(tree: &mut Tree, step: &Step) -> Result<bool, StepError> {
    let live = step.live.as_str();
    if step.ino == 0 {
        return Ok(!tree
            .exists(&step.staged)
            .map_err(|e| fail(live, "stat staged", e))?);
    }
    Ok(tree
        .stat(live)
        .map_err(|e| fail(live, "stat", e))?
        .is_some_and(|st| st.ino == step.ino))
}

/// Record the inode of each step's staged content (before the first step runs).
pub fn record_inodes(tree: &mut Tree, steps: &mut [Step]) -> Result<(), StepError> {
    for step in steps
        .iter_mut()
        .filter(|s| matches!(s.op, Op::Place | Op::MoveTree))
    {
        let st = tree
            .stat(&step.staged)
            .map_err(|e| fail(&step.live, "stat staged", e))?
            .ok_or_else(|| fail(&step.live, "stat staged", Errno::NOENT))?;
        step.ino = st.ino;
    }
    Ok(())
}

/// Carry out `steps` from wherever an earlier run stopped. `midway` is called once, half-way
/// (the crash tests' failpoint).
pub fn forward(
    tree: &mut Tree,
    steps: &[Step],
    mut midway: impl FnMut() -> Result<(), StepError>,
) -> Result<(), StepError> {
    for (i, step) in steps.iter().enumerate() {
        if i == steps.len() / 2 {
            midway()?;
        }
        forward_one(tree, step)?;
    }
    if steps.is_empty() {
        midway()?;
    }
    Ok(())
}

fn forward_one(tree: &mut Tree, step: &Step) -> Result<(), StepError> {
    let live = step.live.as_str();
    match step.op {
        Op::Place => {
            if placed(tree, step)? {
                return Ok(());
            }
            let flags = if step.backup.is_empty() {
                RenameFlags::NOREPLACE
            } else {
                keep(tree, live, &step.backup, &step.staged)
                    .map_err(|e| fail(live, "keep a backup of", e))?;
                RenameFlags::empty()
            };
            match rename(tree, &step.staged, live, flags) {
                Ok(()) => {}
                // Gone without an inode to tell: placed by an earlier run.
                Err(Errno::NOENT) if step.ino == 0 => {}
                Err(e) => return Err(fail(live, "rename into place", e)),
            }
        }
        Op::MoveTree => {
            if placed(tree, step)? {
                return Ok(());
            }
            match rename(tree, &step.staged, live, RenameFlags::NOREPLACE) {
                Ok(()) => {}
                Err(Errno::NOENT) if step.ino == 0 => {}
                Err(e) => return Err(fail(live, "rename into place", e)),
            }
            tree.forget(&step.staged);
        }
        Op::MakeDir => {
            let (dir, name) = tree.at(live).map_err(|e| fail(live, "open parent", e))?;
            match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(step.mode)) {
                Ok(()) => {
                    // mkdir applies the umask and ignores special bits; best effort on file
                    // systems without modes (the record takes what the disk shows).
                    let _ = rustix::fs::chmodat(
                        dir,
                        name,
                        Mode::from_raw_mode(step.mode),
                        AtFlags::empty(),
                    );
                }
                Err(Errno::EXIST)
                    if tree.stat(live).ok().flatten().is_some_and(|st| st.is_dir()) => {}
                Err(e) => return Err(fail(live, "create directory", e)),
            }
        }
        Op::MoveAside => {
            if tree
                .exists(&step.backup)
                .map_err(|e| fail(live, "stat backup", e))?
                || !tree.exists(live).map_err(|e| fail(live, "stat", e))?
            {
                return Ok(());
            }
            rename(tree, live, &step.backup, RenameFlags::NOREPLACE)
                .map_err(|e| fail(live, "move aside", e))?;
            tree.forget(live);
        }
    }
    Ok(())
}

/// Undo `steps` (last first), as far as they were carried out. Returns the paths that could
/// not be put back; the others are exactly as before the commit.
pub fn rollback(tree: &mut Tree, steps: &[Step]) -> Vec<StepError> {
    let mut failed = Vec::new();
    for step in steps.iter().rev() {
        if let Err(e) = back_one(tree, step) {
            failed.push(e);
        }
    }
    failed
}

fn back_one(tree: &mut Tree, step: &Step) -> Result<(), StepError> {
    let live = step.live.as_str();
    let stat = |tree: &mut Tree, p: &str| tree.stat(p).map_err(|e| fail(p, "stat", e));
    match step.op {
        Op::Place => {
            let placed = placed(tree, step)?;
            let backup = if step.backup.is_empty() {
                None
            } else {
                stat(tree, &step.backup)?
            };
            match backup {
                // What stood there comes back (over the new file, in one rename), unless the
                // backup is a link to what stands there still.
                Some(b) => {
                    let same = stat(tree, live)?.is_some_and(|l| l.ino == b.ino);
                    if same && !placed {
                        let (dir, name) = tree
                            .at(&step.backup)
                            .map_err(|e| fail(live, "open backup", e))?;
                        rustix::fs::unlinkat(dir, name, AtFlags::empty())
                            .map_err(|e| fail(live, "drop backup", e))?;
                    } else {
                        rename(tree, &step.backup, live, RenameFlags::empty())
                            .map_err(|e| fail(live, "restore", e))?;
                    }
                }
                // Nothing stood there: the new file goes.
                None if placed && step.backup.is_empty() => {
                    let (dir, name) = tree.at(live).map_err(|e| fail(live, "open parent", e))?;
                    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(fail(live, "remove", e)),
                    }
                }
                // What stood there is gone with its backup: it cannot come back.
                None if placed || stat(tree, live)?.is_none() => {
                    return Err(fail(live, "restore (the backup is gone)", Errno::NOENT));
                }
                None => {}
            }
        }
        Op::MoveTree => {
            if placed(tree, step)? {
                // Back where it was staged (the area may be gone: made again, deleted later).
                make_dirs(tree, split(&step.staged).0)?;
                rename(tree, live, &step.staged, RenameFlags::NOREPLACE)
                    .map_err(|e| fail(live, "take back", e))?;
                tree.forget(live);
            }
        }
        Op::MakeDir => {
            let (dir, name) = tree.at(live).map_err(|e| fail(live, "open parent", e))?;
            match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => tree.forget(live),
                Err(e) => return Err(fail(live, "remove directory", e)),
            }
        }
        Op::MoveAside => {
            if stat(tree, &step.backup)?.is_some() {
                rename(tree, &step.backup, live, RenameFlags::empty())
                    .map_err(|e| fail(live, "restore", e))?;
                tree.forget(live);
            }
        }
    }
    Ok(())
}

/// Before finishing an interrupted commit: whether everything not yet placed is still staged
/// exactly as verified (content hashes, link targets). `records` are the package's records
/// (canonical paths); a step's record is found by its live path (or the path its `.spknew`
/// stands for).
pub fn staged_intact(
    tree: &mut Tree,
    steps: &[Step],
    records: &[FileRecord],
) -> Result<(), String> {
    let by_path: std::collections::HashMap<&str, &FileRecord> =
        records.iter().map(|r| (r.path.as_str(), r)).collect();
    for step in steps {
        if !matches!(step.op, Op::Place | Op::MoveTree)
            || placed(tree, step).map_err(|e| e.to_string())?
        {
            continue;
        }
        if step.op == Op::Place {
            let record = by_path
                .get(step.live.as_str())
                .or_else(|| {
                    step.live
                        .strip_suffix(".spknew")
                        .and_then(|p| by_path.get(p))
                })
                .ok_or_else(|| format!("{} is not in the package", step.live))?;
            check_staged(tree, &step.staged, record)?;
        } else {
            for r in records
                .iter()
                .filter(|r| r.path == step.live || crate::live::is_beneath(&r.path, &step.live))
            {
                let staged = format!("{}{}", step.staged, &r.path[step.live.len()..]);
                check_staged(tree, &staged, r)?;
            }
        }
    }
    Ok(())
}

fn check_staged(tree: &mut Tree, staged: &str, r: &FileRecord) -> Result<(), String> {
    let damaged = |why: &str| format!("staged {} {why}", r.path);
    let Some(st) = tree.stat(staged).map_err(|e| e.to_string())? else {
        return Err(damaged("is missing"));
    };
    match &r.kind {
        FileKind::Dir if st.is_dir() => Ok(()),
        FileKind::File { size, sha256 } if st.kind == rustix::fs::FileType::RegularFile => {
            if st.size != *size {
                return Err(damaged("has the wrong size"));
            }
            let (_, hash) = tree.hash(staged).map_err(|e| damaged(&e.to_string()))?;
            if &hash == sha256 {
                Ok(())
            } else {
                Err(damaged("has changed"))
            }
        }
        FileKind::Symlink { target } if st.kind == rustix::fs::FileType::Symlink => {
            match tree.read_link(staged) {
                Ok(t) if &t == target => Ok(()),
                _ => Err(damaged("points elsewhere")),
            }
        }
        _ => Err(damaged("has the wrong type")),
    }
}

/// Create the directory `dir` and its missing parents, 0700 (spk's own areas).
pub fn make_dirs(tree: &mut Tree, dir: &str) -> Result<(), StepError> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.is_empty() && !tree.exists(cur).map_err(|e| fail(cur, "stat", e))? {
        missing.push(cur);
        cur = split(cur).0;
    }
    for d in missing.into_iter().rev() {
        let (fd, name) = tree.at(d).map_err(|e| fail(d, "open parent", e))?;
        match rustix::fs::mkdirat(fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail(d, "create directory", e)),
        }
    }
    Ok(())
}
