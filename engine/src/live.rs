//! The target root as it is on disk. Paths of a package are decided on the path as the root
//! resolves it: directory symlinks inside the root (`lib -> usr/lib`, `bin -> usr/bin`, even
//! absolute ones) are followed the way the kernel follows them from inside the root, so two
//! spellings of one file are one path to spk. Resolved ("canonical") paths contain no symlink,
//! and every operation on them goes through `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`:
//! a symlink that appears in one later (a race, a hostile local user) makes the operation fail
//! instead of leading it elsewhere.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Most symlinks followed while resolving one path (the kernel's own limit).
const MAX_SYMLINKS: u32 = 40;

/// Directory handles of the root, opened beneath it without following any symlink, cached
/// by (canonical, relative) path.
pub struct Tree {
    root: OwnedFd,
    dirs: HashMap<String, OwnedFd>,
}

impl Tree {
    pub fn open(root: &Path) -> std::io::Result<Tree> {
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root,
            dirs: HashMap::new(),
        })
    }

    /// Handle of the directory `dir` ("" is the root).
    pub fn dir(&mut self, dir: &str) -> Result<BorrowedFd<'_>, Errno> {
        if dir.is_empty() {
            return Ok(self.root.as_fd());
        }
        if !self.dirs.contains_key(dir) {
            // Bounded: work walks sorted paths, so recent parents are what matter.
            if self.dirs.len() > 256 {
                self.dirs.clear();
            }
            let fd = rustix::fs::openat2(
                &self.root,
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )?;
            self.dirs.insert(dir.to_owned(), fd);
        }
        Ok(self.dirs[dir].as_fd())
    }

    /// The parents' handles and last components of `a` and `b` (for rename and link).
    pub fn two<'p>(
        &mut self,
        a: &'p str,
        b: &'p str,
    ) -> Result<(BorrowedFd<'_>, &'p str, BorrowedFd<'_>, &'p str), Errno> {
        let ((da, na), (db, nb)) = (split(a), split(b));
        self.dir(da)?;
        self.dir(db)?;
        if !da.is_empty() && !self.dirs.contains_key(da) {
            // Evicted by the second lookup.
            self.dir(da)?;
        }
        let fd = |d: &str| {
            if d.is_empty() {
                self.root.as_fd()
            } else {
                self.dirs[d].as_fd()
            }
        };
        Ok((fd(da), na, fd(db), nb))
    }

    /// The parent's handle and the last component of `path`.
    pub fn at<'a>(&mut self, path: &'a str) -> Result<(BorrowedFd<'_>, &'a str), Errno> {
        let (dir, name) = split(path);
        Ok((self.dir(dir)?, name))
    }

    /// Drop cached handles of `path` and everything beneath it (it moved or went away).
    pub fn forget(&mut self, path: &str) {
        self.dirs.retain(|d, _| !(d == path || is_beneath(d, path)));
    }

    /// `lstat` of `path`; `None` when it (or a parent) does not exist.
    pub fn stat(&mut self, path: &str) -> Result<Option<Stat>, Errno> {
        if path.is_empty() {
            let st = rustix::fs::statx(
                &self.root,
                "",
                AtFlags::EMPTY_PATH,
                StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
            )?;
            return Ok(Some(Stat::from(&st)));
        }
        let (dir, name) = match self.at(path) {
            Ok(x) => x,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statx(
            dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
        ) {
            Ok(st) => Ok(Some(Stat::from(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&mut self, path: &str) -> Result<bool, Errno> {
        Ok(self.stat(path)?.is_some())
    }

    pub fn read_link(&mut self, path: &str) -> Result<String, Errno> {
        let (dir, name) = self.at(path)?;
        let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Open the regular file `path` for reading (never through a symlink).
    pub fn open_file(&mut self, path: &str) -> Result<std::fs::File, Errno> {
        let (dir, name) = self.at(path)?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// Size and sha256 of the regular file `path`.
    pub fn hash(&mut self, path: &str) -> std::io::Result<(u64, String)> {
        let file = self.open_file(path)?;
        hash_reader(file)
    }
}

/// Size and sha256 of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 128 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// What `lstat` says of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileType,
    /// Permission bits, with setuid/setgid/sticky.
    pub mode: u32,
    pub size: u64,
    pub ino: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// The mount this path lives on (`/proc/self/mountinfo`'s first field).
    pub mnt_id: u64,
    /// The path is itself a mount point (a bind-mounted file counts).
    pub mount_root: bool,
}

impl From<&rustix::fs::Statx> for Stat {
    fn from(st: &rustix::fs::Statx) -> Stat {
        let mode = u32::from(st.stx_mode);
        Stat {
            kind: FileType::from_raw_mode(mode),
            mode: mode & 0o7777,
            size: st.stx_size,
            ino: st.stx_ino,
            nlink: st.stx_nlink,
            uid: st.stx_uid,
            gid: st.stx_gid,
            mnt_id: st.stx_mnt_id,
            mount_root: st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        }
    }
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// A directory of the root, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical path: no symlink in it.
    pub path: String,
    /// Whether it exists now (a missing one is created by the commit).
    pub exists: bool,
}

/// Why a path cannot be resolved to a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolvable {
    /// The canonical path where resolution stopped.
    pub path: String,
    pub reason: String,
}

fn unresolvable(path: &str, reason: impl Into<String>) -> Unresolvable {
    Unresolvable {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The live root with a resolver for directory paths. One per plan: it caches what it saw.
pub struct Live {
    pub tree: Tree,
    path: PathBuf,
    /// Logical directory path → where it resolves.
    dirs: HashMap<String, Resolved>,
    /// Canonical directory → mount id (of it, or of its nearest existing ancestor).
    mounts: HashMap<String, u64>,
}

impl Live {
    pub fn open(root: &Path) -> std::io::Result<Live> {
        Ok(Live {
            tree: Tree::open(root)?,
            path: root.to_owned(),
            dirs: HashMap::new(),
            mounts: HashMap::new(),
        })
    }

    /// The root's path as spkd sees it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the directory `logical` (relative, `/`-separated, no `.` or `..`) resolves.
    pub fn dir(&mut self, logical: &str) -> Result<Resolved, Unresolvable> {
        if logical.is_empty() {
            return Ok(Resolved {
                path: String::new(),
                exists: true,
            });
        }
        if let Some(r) = self.dirs.get(logical) {
            return Ok(r.clone());
        }
        let (parent, name) = split(logical);
        let parent = self.dir(parent)?;
        let candidate = join(&parent.path, name);
        let resolved = if !parent.exists {
            Resolved {
                path: candidate,
                exists: false,
            }
        } else {
            self.step(&candidate, 0)?
        };
        self.dirs.insert(logical.to_owned(), resolved.clone());
        Ok(resolved)
    }

    /// Declare that the directory `logical` will be `resolved` (created, or a symlink there
    /// replaced by a directory): what lies beneath it resolves from there.
    pub fn set_dir(&mut self, logical: &str, resolved: Resolved) {
        self.dirs.insert(logical.to_owned(), resolved);
    }

    /// Resolve the existing-parent path `candidate` one component further.
    fn step(&mut self, candidate: &str, depth: u32) -> Result<Resolved, Unresolvable> {
        let st = self
            .tree
            .stat(candidate)
            .map_err(|e| unresolvable(candidate, format!("stat: {}", std::io::Error::from(e))))?;
        match st {
            None => Ok(Resolved {
                path: candidate.to_owned(),
                exists: false,
            }),
            Some(st) if st.is_dir() => Ok(Resolved {
                path: candidate.to_owned(),
                exists: true,
            }),
            Some(st) if st.kind == FileType::Symlink => {
                let target = self.tree.read_link(candidate).map_err(|e| {
                    unresolvable(candidate, format!("readlink: {}", std::io::Error::from(e)))
                })?;
                self.follow(split(candidate).0, &target, depth + 1)
                    .map_err(|mut e| {
                        e.path = candidate.to_owned();
                        e
                    })
            }
            Some(_) => Err(unresolvable(
                candidate,
                "a file stands where the package has a directory",
            )),
        }
    }

    /// Resolve a symlink's `target` found in the canonical directory `base`, inside the root
    /// (`..` stops at the root; an absolute target starts there). It must lead to an existing
    /// directory.
    fn follow(&mut self, base: &str, target: &str, depth: u32) -> Result<Resolved, Unresolvable> {
        const NOT_A_DIR: &str = "a symlink that does not lead to a directory stands there";
        if depth > MAX_SYMLINKS {
            return Err(unresolvable(base, "too many levels of symbolic links"));
        }
        let mut cur = if target.starts_with('/') {
            String::new()
        } else {
            base.to_owned()
        };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => cur = split(&cur).0.to_owned(),
                name => {
                    let next = self.step(&join(&cur, name), depth)?;
                    if !next.exists {
                        return Err(unresolvable(&next.path, NOT_A_DIR));
                    }
                    cur = next.path;
                }
            }
        }
        Ok(Resolved {
            path: cur,
            exists: true,
        })
    }

    /// The mount a new entry in the canonical directory `dir` lands on: that of `dir`, or of
    /// its nearest existing ancestor.
    pub fn mount_of(&mut self, dir: &str) -> Result<u64, Errno> {
        if let Some(&id) = self.mounts.get(dir) {
            return Ok(id);
        }
        let id = match self.tree.stat(dir)? {
            Some(st) if st.is_dir() => st.mnt_id,
            _ if dir.is_empty() => return Err(Errno::NOENT),
            _ => self.mount_of(split(dir).0)?,
        };
        self.mounts.insert(dir.to_owned(), id);
        Ok(id)
    }

    /// The top-most existing directory of the root that lies on the same mount as the canonical
    /// directory `dir`: where spk may keep files that must be renamed within that mount.
    pub fn mount_top(&mut self, dir: &str) -> Result<String, Errno> {
        let id = self.mount_of(dir)?;
        let mut cur = dir.to_owned();
        while !self.tree.exists(&cur)? {
            cur = split(&cur).0.to_owned();
        }
        while !cur.is_empty() {
            let parent = split(&cur).0.to_owned();
            if self.mount_of(&parent)? != id {
                break;
            }
            cur = parent;
        }
        Ok(cur)
    }
}

/// `(parent, last component)` of a relative path; the parent of a top-level name is "".
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` lies strictly beneath the directory `dir` ("" holds everything).
pub fn is_beneath(path: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn resolved(path: &str, exists: bool) -> Resolved {
        Resolved {
            path: path.into(),
            exists,
        }
    }

    #[test]
    fn resolves_merged_usr_and_absolute_links_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("usr/lib/modules")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr/bin", root.join("bin")).unwrap();
        symlink("../../../../usr/bin", root.join("usr/lib/escape")).unwrap();
        symlink("bin", root.join("sbin")).unwrap();
        let mut live = Live::open(root).unwrap();
        assert_eq!(
            live.dir("lib/modules").unwrap(),
            resolved("usr/lib/modules", true)
        );
        assert_eq!(live.dir("bin").unwrap(), resolved("usr/bin", true));
        assert_eq!(live.dir("sbin").unwrap(), resolved("usr/bin", true));
        // `..` stops at the root, as with RESOLVE_IN_ROOT.
        assert_eq!(
            live.dir("usr/lib/escape").unwrap(),
            resolved("usr/bin", true)
        );
        assert_eq!(
            live.dir("lib/new/deeper").unwrap(),
            resolved("usr/lib/new/deeper", false)
        );
    }

    #[test]
    fn refuses_dangling_links_files_and_loops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("file"), b"x").unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let mut live = Live::open(root).unwrap();
        assert_eq!(live.dir("dangling/x").unwrap_err().path, "dangling");
        assert!(
            live.dir("file/x")
                .unwrap_err()
                .reason
                .contains("a file stands")
        );
        assert!(live.dir("loop").unwrap_err().reason.contains("levels"));
    }

    #[test]
    fn mount_top_of_a_single_mount_root_is_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        let mut live = Live::open(tmp.path()).unwrap();
        assert_eq!(live.mount_top("a/b/new").unwrap(), "");
        assert_eq!(
            live.mount_of("a/b/new").unwrap(),
            live.mount_of("").unwrap()
        );
    }
}
