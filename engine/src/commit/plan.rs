//! Deciding what committing one staged package does to each live path, before anything
//! changes. Every record of the package is resolved the way the root resolves it (see
//! [`crate::live`]) and compared with what stands there:
//!
//! - a directory that exists is left exactly as it is (mode, owner); a missing one is created,
//!   and remembered as spk's;
//! - a file of another package is a conflict; a file of no package is a conflict unless it is
//!   byte-identical (adopted) or the user asked to adopt or force;
//! - a configuration file (`etc/`) the admin changed is kept, the package's version written
//!   beside it as `.spknew`; a mount point is never renamed over;
//! - a path of the old version that changes type (directory ↔ symlink ↔ file) is moved aside;
//! - a path on another file system than staging's is copied there first (see [`super::prepare`]).

use std::collections::{HashMap, HashSet};

use rustix::fs::FileType;

use super::{Op, Step, is_config};
use crate::db::{InstalledPackage, Owners};
use crate::error::{Error, Result};
use crate::live::{Live, Resolved, Stat, is_beneath, join, split};
use crate::manifest::{FileKind, FileRecord};
use crate::notice::Notice;

/// One package to plan.
pub struct Input<'a> {
    pub name: &'a str,
    /// As staged: logical paths, sorted parents first.
    pub records: &'a [FileRecord],
    /// The installed version being replaced (its paths are canonical).
    pub old: Option<&'a InstalledPackage>,
    /// Root-relative canonical path of the package's staged tree.
    pub tree: &'a str,
    /// Root-relative canonical path of the package's area on the staging file system (its
    /// backups go to `area/backup`).
    pub area: &'a str,
    /// The transaction, naming areas on other file systems.
    pub tx: u64,
    /// Take over files no package owns.
    pub adopt: bool,
    /// Take over files other packages own.
    pub force: bool,
}

/// A staged file or symlink to copy onto another file system before the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Root-relative path in the staged tree.
    pub from: String,
    /// Root-relative path in the other file system's area.
    pub to: String,
    /// Where it finally goes (for messages).
    pub live: String,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub caps: Option<String>,
    pub mount: u64,
}

impl Copy {
    /// The archive's time for the copy, if it had one.
    pub fn times(&self) -> Option<rustix::fs::Timestamps> {
        (self.mtime != 0).then(|| {
            let t = rustix::fs::Timespec {
                tv_sec: self.mtime,
                tv_nsec: i64::from(self.mtime_ns),
            };
            rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            }
        })
    }
}

/// What committing the package does.
#[derive(Debug, Default)]
pub struct Plan {
    /// The package's records with canonical paths: its manifest once committed.
    pub records: Vec<FileRecord>,
    pub steps: Vec<Step>,
    /// Directories the commit creates.
    pub created: Vec<String>,
    /// Records of the old version the new one no longer has.
    pub dropped: Vec<FileRecord>,
    pub notices: Vec<Notice>,
    pub copies: Vec<Copy>,
    /// Areas on other file systems (root-relative), to create first and delete after.
    pub areas: Vec<String>,
    /// Live paths on other file systems than staging's, with their mount.
    pub foreign: Vec<(u64, String)>,
}

/// Plan the commit of `input` into `live`. `staging_mount` is the mount id of the staging
/// area.
pub fn plan(
    input: &Input<'_>,
    live: &mut Live,
    owners: &dyn Owners,
    staging_mount: u64,
) -> Result<Plan> {
    let mut planner = Planner {
        input,
        live,
        owners,
        staging_mount,
        plan: Plan::default(),
        old: input
            .old
            .map(|o| o.files.iter().map(|r| (r.path.as_str(), r)).collect())
            .unwrap_or_default(),
        seen: HashMap::new(),
        areas: HashMap::new(),
        backups: 0,
        unowned: Vec::new(),
        moved: None,
    };
    for record in input.records {
        planner.record(record)?;
    }
    if !planner.unowned.is_empty() {
        let mut paths = std::mem::take(&mut planner.unowned);
        paths.sort();
        return Err(Error::Unowned {
            package: input.name.to_owned(),
            paths,
        });
    }
    let mut plan = planner.plan;
    let kept: HashSet<&str> = plan.records.iter().map(|r| r.path.as_str()).collect();
    if let Some(old) = input.old {
        plan.dropped = old
            .files
            .iter()
            .filter(|r| !kept.contains(r.path.as_str()))
            .cloned()
            .collect();
    }
    Ok(plan)
}

struct Planner<'a, 'b> {
    input: &'a Input<'a>,
    live: &'b mut Live,
    owners: &'b dyn Owners,
    staging_mount: u64,
    plan: Plan,
    /// The old version's records by canonical path.
    old: HashMap<&'a str, &'a FileRecord>,
    /// Canonical path → the logical path that claimed it, and whether it is a directory.
    seen: HashMap<String, (String, bool)>,
    /// Mount id → this package's area on it.
    areas: HashMap<u64, String>,
    backups: usize,
    unowned: Vec<String>,
    /// A directory moved in whole: (logical, canonical); what lies beneath needs no step.
    moved: Option<(String, String)>,
}

fn path_conflict(package: &str, path: &str, reason: impl Into<String>) -> Error {
    Error::PathConflict {
        package: package.to_owned(),
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl Planner<'_, '_> {
    fn name(&self) -> &str {
        self.input.name
    }

    fn io(&self, path: &str, what: &str, e: rustix::io::Errno) -> Error {
        Error::io(
            format!("{}: {what} {path}", self.name()),
            std::io::Error::from(e),
        )
    }

    fn record(&mut self, r: &FileRecord) -> Result<()> {
        if let Some((logical, canonical)) = &self.moved
            && is_beneath(&r.path, logical)
        {
            let path = format!("{canonical}{}", &r.path[logical.len()..]);
            if r.is_dir() {
                self.plan.created.push(path.clone());
            }
            return self.keep(r, path);
        }
        let (dir, name) = split(&r.path);
        let parent = self
            .live
            .dir(dir)
            .map_err(|e| path_conflict(self.input.name, &e.path, e.reason))?;
        let path = join(&parent.path, name);
        let stat = if parent.exists {
            self.live
                .tree
                .stat(&path)
                .map_err(|e| self.io(&path, "stat", e))?
        } else {
            None
        };
        if r.is_dir() {
            self.dir(r, path, &parent, stat)
        } else {
            self.file(r, path, &parent, stat)
        }
    }

    /// Add `r` at canonical `path` to the manifest.
    fn keep(&mut self, r: &FileRecord, path: String) -> Result<()> {
        if let Some(first) = self.seen.get(&path) {
            // Two spellings of one directory (bin and sbin on a merged /usr) are one directory.
            if r.is_dir() && first.1 {
                return Ok(());
            }
            return Err(path_conflict(
                self.input.name,
                &path,
                format!("the package has it twice, as {} and {}", first.0, r.path),
            ));
        }
        self.seen.insert(path.clone(), (r.path.clone(), r.is_dir()));
        self.plan.records.push(r.at(path));
        Ok(())
    }

    fn owned_by_old(&self, path: &str) -> Result<bool> {
        Ok(self.old.contains_key(path)
            && self.owners.file_owner(path)?.as_deref() == Some(self.input.name))
    }

    fn dir(
        &mut self,
        r: &FileRecord,
        path: String,
        parent: &Resolved,
        stat: Option<Stat>,
    ) -> Result<()> {
        match stat {
            None => self.create_dir(r, path, parent),
            Some(st) if st.is_dir() => {
                self.live.set_dir(
                    &r.path,
                    Resolved {
                        path: path.clone(),
                        exists: true,
                    },
                );
                self.keep(r, path)
            }
            Some(st) if st.kind == FileType::Symlink && !self.owned_by_old(&path)? => {
                // A link to a directory (merged /usr) serves as the directory.
                let resolved = self
                    .live
                    .dir(&r.path)
                    .map_err(|e| path_conflict(self.input.name, &e.path, e.reason))?;
                self.keep(r, resolved.path)
            }
            Some(st)
                if matches!(st.kind, FileType::Symlink | FileType::RegularFile)
                    && !st.mount_root
                    && self.owned_by_old(&path)? =>
            {
                // The old version's file or symlink makes way for the new directory.
                self.move_aside(&path, parent)?;
                self.create_dir(r, path, parent)
            }
            Some(_) => Err(path_conflict(
                self.input.name,
                &path,
                "a file stands where the package has a directory",
            )),
        }
    }

    fn create_dir(&mut self, r: &FileRecord, path: String, parent: &Resolved) -> Result<()> {
        self.live.set_dir(
            &r.path,
            Resolved {
                path: path.clone(),
                exists: false,
            },
        );
        let mount = self.mount(&parent.path)?;
        if mount == self.staging_mount {
            self.plan.steps.push(Step {
                op: Op::MoveTree,
                live: path.clone(),
                staged: join(self.input.tree, &r.path),
                backup: String::new(),
                mode: 0,
                ino: 0,
            });
            self.moved = Some((r.path.clone(), path.clone()));
        } else {
            self.plan.steps.push(Step {
                op: Op::MakeDir,
                live: path.clone(),
                staged: String::new(),
                backup: String::new(),
                mode: r.mode,
                ino: 0,
            });
            self.plan.foreign.push((mount, path.clone()));
        }
        self.plan.created.push(path.clone());
        self.keep(r, path)
    }

    fn mount(&mut self, dir: &str) -> Result<u64> {
        self.live
            .mount_of(dir)
            .map_err(|e| self.io(dir, "find the file system of", e))
    }

    /// The package's area on mount `mount` (which holds the canonical directory `dir`).
    fn area(&mut self, mount: u64, dir: &str) -> Result<String> {
        if mount == self.staging_mount {
            return Ok(self.input.area.to_owned());
        }
        if let Some(a) = self.areas.get(&mount) {
            return Ok(a.clone());
        }
        let top = self
            .live
            .mount_top(dir)
            .map_err(|e| self.io(dir, "find the top of the file system of", e))?;
        let root = join(&top, &format!(".spk-staging-{}", self.input.tx));
        let area = join(&root, self.input.name);
        self.plan.areas.push(root);
        self.areas.insert(mount, area.clone());
        Ok(area)
    }

    fn backup_path(&mut self, dir: &str) -> Result<String> {
        let mount = self.mount(dir)?;
        let area = self.area(mount, dir)?;
        self.backups += 1;
        Ok(format!("{area}/backup/{}", self.backups))
    }

    fn move_aside(&mut self, path: &str, parent: &Resolved) -> Result<()> {
        let backup = self.backup_path(&parent.path)?;
        self.plan.steps.push(Step {
            op: Op::MoveAside,
            live: path.to_owned(),
            staged: String::new(),
            backup,
            mode: 0,
            ino: 0,
        });
        Ok(())
    }

    /// A Place step putting `r`'s staged content at the canonical `target` (the record's path,
    /// or its `.spknew`), keeping what stands there when `replaces`.
    fn place(
        &mut self,
        r: &FileRecord,
        target: &str,
        parent: &Resolved,
        replaces: bool,
    ) -> Result<()> {
        let mount = self.mount(&parent.path)?;
        let backup = if replaces {
            self.backup_path(&parent.path)?
        } else {
            String::new()
        };
        let from = join(self.input.tree, &r.path);
        let staged = if mount == self.staging_mount {
            from
        } else {
            let area = self.area(mount, &parent.path)?;
            let to = format!("{area}/tree/{}", self.plan.copies.len() + 1);
            self.plan.copies.push(super::plan::Copy {
                from,
                to: to.clone(),
                live: target.to_owned(),
                kind: r.kind.clone(),
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                mtime: r.mtime,
                mtime_ns: r.mtime_ns,
                caps: r.caps.clone(),
                mount,
            });
            self.plan.foreign.push((mount, target.to_owned()));
            to
        };
        self.plan.steps.push(Step {
            op: Op::Place,
            live: target.to_owned(),
            staged,
            backup,
            mode: 0,
            ino: 0,
        });
        Ok(())
    }

    /// The package's `.spknew` beside the kept `path`.
    fn place_beside(&mut self, r: &FileRecord, path: &str, parent: &Resolved) -> Result<()> {
        let spknew = format!("{path}.spknew");
        let exists = self
            .live
            .tree
            .exists(&spknew)
            .map_err(|e| self.io(&spknew, "stat", e))?;
        self.place(r, &spknew, parent, exists)
    }

    fn file(
        &mut self,
        r: &FileRecord,
        path: String,
        parent: &Resolved,
        stat: Option<Stat>,
    ) -> Result<()> {
        let Some(st) = stat else {
            self.place(r, &path, parent, false)?;
            return self.keep(r, path);
        };
        let owner = if matches!(st.kind, FileType::RegularFile | FileType::Symlink) {
            self.owners.file_owner(&path)?
        } else {
            None
        };
        if let Some(owner) = owner.as_ref().filter(|o| *o != self.input.name)
            && !self.input.force
        {
            return Err(Error::FileConflict {
                package: self.input.name.to_owned(),
                path,
                owner: owner.clone(),
            });
        }
        if st.mount_root {
            if !self.identical(&path, &st, r)? {
                self.place_beside(r, &path, parent)?;
                self.plan
                    .notices
                    .push(Notice::mount_point(self.input.name, &path));
            }
            return self.keep(r, path);
        }
        match st.kind {
            FileType::Directory => {
                if !self.dir_of_old_version(&path)? {
                    return Err(path_conflict(
                        self.input.name,
                        &path,
                        "a directory stands where the package has a file",
                    ));
                }
                self.move_aside(&path, parent)?;
                self.place(r, &path, parent, false)?;
            }
            FileType::RegularFile | FileType::Symlink => match owner {
                // Another package's, and forced: taken over.
                Some(owner) if owner != self.input.name => self.place(r, &path, parent, true)?,
                Some(_) => self.upgrade_file(r, &path, parent, &st)?,
                None => self.adopt(r, &path, parent, &st)?,
            },
            _ => {
                return Err(path_conflict(
                    self.input.name,
                    &path,
                    "a special file (device, FIFO or socket) stands where the package has a file",
                ));
            }
        }
        self.keep(r, path)
    }

    /// A path the old version of this package has: replaced, unless it is a configuration
    /// file the admin changed.
    fn upgrade_file(
        &mut self,
        r: &FileRecord,
        path: &str,
        parent: &Resolved,
        st: &Stat,
    ) -> Result<()> {
        let old = self.old.get(path).map(|o| &o.kind);
        let (
            Some(FileKind::File {
                sha256: shipped, ..
            }),
            FileKind::File { sha256: new, .. },
        ) = (old, &r.kind)
        else {
            return self.place(r, path, parent, true);
        };
        if !is_config(path) || st.kind != FileType::RegularFile {
            return self.place(r, path, parent, true);
        }
        let (_, current) = self
            .live
            .tree
            .hash(path)
            .map_err(|e| Error::io(format!("{}: reading {path}", self.input.name), e))?;
        if &current == shipped {
            self.place(r, path, parent, true)
        } else if &current == new || shipped == new {
            // Already the new content, or the package did not change it: the admin's stays.
            Ok(())
        } else {
            self.plan
                .notices
                .push(Notice::spknew(self.input.name, path));
            self.place_beside(r, path, parent)
        }
    }

    /// A path no package owns.
    fn adopt(&mut self, r: &FileRecord, path: &str, parent: &Resolved, st: &Stat) -> Result<()> {
        if self.identical(path, st, r)? {
            return self.place(r, path, parent, true);
        }
        if !(self.input.adopt || self.input.force) {
            self.unowned.push(path.to_owned());
            return Ok(());
        }
        if is_config(path) {
            self.plan
                .notices
                .push(Notice::spknew(self.input.name, path));
            self.place_beside(r, path, parent)
        } else {
            self.place(r, path, parent, true)
        }
    }

    /// Whether what stands at `path` is what `r` would put there (content or link target).
    fn identical(&mut self, path: &str, st: &Stat, r: &FileRecord) -> Result<bool> {
        match (&r.kind, st.kind) {
            (FileKind::File { size, sha256 }, FileType::RegularFile) if st.size == *size => {
                let (_, hash) =
                    self.live.tree.hash(path).map_err(|e| {
                        Error::io(format!("{}: reading {path}", self.input.name), e)
                    })?;
                Ok(&hash == sha256)
            }
            (FileKind::Symlink { target }, FileType::Symlink) => {
                let current = self
                    .live
                    .tree
                    .read_link(path)
                    .map_err(|e| self.io(path, "readlink", e))?;
                Ok(&current == target)
            }
            _ => Ok(false),
        }
    }

    /// Whether the directory at `path` holds only what the old version of this package put
    /// there (and no mount point), so it may move aside for the new version's file.
    fn dir_of_old_version(&mut self, path: &str) -> Result<bool> {
        let me = self.input.name;
        let ours = |users: Vec<String>| users.iter().all(|u| u == me);
        if !self.old.contains_key(path) || !ours(self.owners.dir_users(path)?) {
            return Ok(false);
        }
        let mut pending = vec![path.to_owned()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(self.live.path().join(&dir)) else {
                return Ok(false);
            };
            for entry in entries {
                let Some(name) = entry
                    .ok()
                    .and_then(|e| e.file_name().to_str().map(str::to_owned))
                else {
                    return Ok(false);
                };
                let child = join(&dir, &name);
                let Ok(Some(st)) = self.live.tree.stat(&child) else {
                    return Ok(false);
                };
                if st.mount_root || !self.old.contains_key(child.as_str()) {
                    return Ok(false);
                }
                if st.is_dir() {
                    if !ours(self.owners.dir_users(&child)?) {
                        return Ok(false);
                    }
                    pending.push(child);
                } else if self.owners.file_owner(&child)?.as_deref() != Some(me) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
