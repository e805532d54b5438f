//! Making a commit's renames durable without waiting for what others wrote.
//!
//! `syncfs` waits for every dirty page of the file system, other programs' too. A transaction
//! needs it once, for the staged files' data before the first rename: there it writes
//! thousands of small files as one batch, faster than flushing them one by one from here
//! (measured: 9,151 files, 310 MB: 190–340 ms against 310–560 ms with `sync_file_range` per
//! file, every write queued before the first wait). Each package's commit then only needs its
//! renames durable: `fsync` of the directories they changed. On a journaling file system (ext4,
//! XFS) that commits the journal, and with it every earlier metadata change in order. Elsewhere
//! (btrfs, f2fs, ext2…) a commit keeps `syncfs`, which needs no such ordering to hold.

use std::collections::BTreeSet;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::live::split;

/// How a commit's renames on one file system are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the directories the renames changed.
    Targeted,
    /// `syncfs`: the file system gives no ordering that `fsync` of directories could rely on.
    WholeFs,
}

const EXT4_SUPER_MAGIC: i64 = 0xEF53;
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How to make renames on the file system holding `path` durable.
pub fn durability(path: &Path) -> Durability {
    let Ok(st) = rustix::fs::statfs(path) else {
        return Durability::WholeFs;
    };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
    match st.f_type as i64 {
        EXT4_SUPER_MAGIC | XFS_SUPER_MAGIC | TMPFS_MAGIC => Durability::Targeted,
        _ => Durability::WholeFs,
    }
}

/// `fsync` each directory of `root` holding one of `paths` (root-relative): makes renames,
/// links and removals there durable.
pub fn sync_dirs<'a>(root: &Path, paths: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
    let parents: BTreeSet<&str> = paths.into_iter().map(|p| split(p).0).collect();
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for dir in parents {
        let fd = rustix::fs::openat2(
            &root_fd,
            if dir.is_empty() { "." } else { dir },
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        match fd {
            Ok(fd) => rustix::fs::fsync(&fd)?,
            // A directory the commit removed (or a parent that never existed): nothing to flush.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_dirs_flushes_the_parents_and_skips_missing_ones() {
        let tmp = std::env::temp_dir().join(format!("spk-writeback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("usr/lib")).unwrap();
        std::fs::write(tmp.join("usr/lib/a.so"), b"x").unwrap();
        sync_dirs(&tmp, ["usr/lib/a.so", "gone/x", "top", "usr/lib/a.so/x"]).unwrap();
        // Not beneath the root: refused, not followed.
        assert!(sync_dirs(&tmp, ["../x/y"]).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
