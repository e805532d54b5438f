//! After a package's new state is recorded: the files its old version had and the new one
//! does not (or all of them, for a removal) leave the live root. A changed configuration file
//! is kept as `.spksave`; a mount point, a path another package now owns, or a directory that
//! replaced one of the files stays. Directories go only when spk created them, no package
//! lists them any more, they are empty, not a mount point and not part of the system's
//! skeleton ([`super::PROTECTED_DIRS`]). Nothing here can fail the transaction: what cannot be
//! removed is left in place and reported.

use rustix::fs::{AtFlags, FileType, RenameFlags};
use rustix::io::Errno;

use super::{PROTECTED_DIRS, is_config};
use crate::db::Owners;
use crate::error::Result;
use crate::live::Tree;
use crate::manifest::{FileKind, FileRecord};
use crate::notice::Notice;

/// What cleaning up did.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub notices: Vec<Notice>,
    /// Directories removed (their database entries go too).
    pub removed_dirs: Vec<String>,
}

/// Remove `dropped` (canonical records of `package`) from the live root.
pub fn remove(
    tree: &mut Tree,
    package: &str,
    dropped: &[FileRecord],
    owners: &dyn Owners,
) -> Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    for r in dropped.iter().filter(|r| !r.is_dir()) {
        if owners.file_owner(&r.path)?.is_some() {
            continue;
        }
        if let Err(e) = remove_file(tree, package, r, &mut cleaned.notices) {
            tracing::warn!(package, path = %r.path, error = %e, "could not remove");
            cleaned
                .notices
                .push(Notice::left_behind(package, &r.path, &e.to_string()));
        }
    }
    let mut dirs: Vec<&FileRecord> = dropped.iter().filter(|r| r.is_dir()).collect();
    dirs.sort_by(|a, b| b.path.cmp(&a.path));
    for r in dirs {
        if PROTECTED_DIRS.contains(&r.path.as_str()) {
            continue;
        }
        let Some(info) = owners.dir(&r.path)? else {
            continue;
        };
        if !info.created || !info.users.is_empty() {
            continue;
        }
        match remove_dir(tree, &r.path) {
            Ok(true) => cleaned.removed_dirs.push(r.path.clone()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(package, path = %r.path, error = %e, "could not remove directory");
                cleaned
                    .notices
                    .push(Notice::left_behind(package, &r.path, &e.to_string()));
            }
        }
    }
    Ok(cleaned)
}

fn remove_file(
    tree: &mut Tree,
    package: &str,
    r: &FileRecord,
    notices: &mut Vec<Notice>,
) -> std::io::Result<()> {
    let Some(st) = tree.stat(&r.path)? else {
        return Ok(());
    };
    if st.mount_root || st.is_dir() {
        return Ok(());
    }
    if let FileKind::File { sha256, .. } = &r.kind
        && is_config(&r.path)
        && st.kind == FileType::RegularFile
        && &tree.hash(&r.path)?.1 != sha256
    {
        let save = format!("{}.spksave", r.path);
        let (dir, name, save_dir, save_name) = tree.two(&r.path, &save)?;
        rustix::fs::renameat_with(dir, name, save_dir, save_name, RenameFlags::empty())?;
        notices.push(Notice::spksave(package, &r.path));
        return Ok(());
    }
    let (dir, name) = tree.at(&r.path)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove the empty directory `path`. `true` when it is gone (or was: its record can go too);
/// `false` when it stays: not empty, or a mount point.
fn remove_dir(tree: &mut Tree, path: &str) -> std::io::Result<bool> {
    match tree.stat(path)? {
        Some(st) if st.mount_root => return Ok(false),
        Some(st) if st.is_dir() => {}
        _ => return Ok(true),
    }
    tree.forget(path);
    let (dir, name) = tree.at(path)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(true),
        Err(Errno::NOTEMPTY | Errno::EXIST | Errno::BUSY) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
