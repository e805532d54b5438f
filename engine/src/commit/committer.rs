//! Running one package's journaled commit or removal against the live root and the database,
//! and recovering the ones a crash (or a panic) interrupted. The journal entry is bound to its
//! transaction: its steps, its staging areas and its verified manifest. Recovery finishes a
//! commit only from that same staging, verified again; otherwise it undoes it; and what can be
//! neither finished nor undone is recorded as a broken package instead of stopping spkd.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::apply::{self, StepError};
use super::cleanup;
use super::plan::Plan;
use super::prepare;
use super::{Intent, IntentAction, Phase, sync_filesystem};
use crate::db::{Database, InstalledPackage, Recorded};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::live::{Live, Tree, split};
use crate::mounts::{self, MountTable};
use crate::notice::Notice;
use crate::writeback::{self, Durability};

pub struct Committer<'a> {
    pub root: &'a Path,
    pub db: &'a Database,
}

impl Committer<'_> {
    fn tree(&self) -> Result<Tree> {
        Tree::open(self.root).map_err(|e| Error::io(format!("opening {}", self.root.display()), e))
    }

    /// Commit `package` (its records are replaced by the plan's) as `plan` says. `area` is the
    /// package's root-relative area on the staging file system.
    pub fn install(
        &self,
        tx: u64,
        mut package: InstalledPackage,
        plan: Plan,
        area: &str,
    ) -> Result<Vec<Notice>> {
        let name = package.name.clone();
        package.files = plan.records;
        let mut areas = vec![area.to_owned()];
        areas.extend(plan.areas);
        let mut intent = Intent {
            tx,
            action: IntentAction::Install,
            phase: Phase::Preparing,
            package,
            steps: plan.steps,
            areas,
            created: plan.created,
            dropped: plan.dropped,
            read_modes: Vec::new(),
        };
        let mut notices = plan.notices;
        let clock = std::time::Instant::now();
        let mounts = MountTable::read();
        self.check_space(&name, &plan.copies, &mounts)?;
        let mut tree = self.tree()?;
        if !plan.copies.is_empty() {
            // Areas on other file systems exist from here on: the journal knows them.
            self.db.begin(&name, &intent)?;
        }
        let prepared = match prepare::prepare(
            &mut tree,
            self.root,
            &name,
            &plan.copies,
            &intent.steps,
            &mounts,
        ) {
            Ok(p) => p,
            Err(e) => {
                self.remove_areas(&intent.areas);
                self.db.abandon(&name)?;
                return Err(e);
            }
        };
        intent.read_modes = plan
            .foreign
            .iter()
            .filter(|(mount, _)| prepared.modeless.contains(mount))
            .map(|(_, path)| path.clone())
            .collect();
        if let Err(e) = apply::record_inodes(&mut tree, &mut intent.steps) {
            self.remove_areas(&intent.areas);
            self.db.abandon(&name)?;
            return Err(Error::io(format!("{name}: staging {}", e.path), e.error));
        }
        failpoint::hit("commit.before-journal");
        let prepared_ms = clock.elapsed().as_millis() as u64;
        intent.phase = Phase::Placing;
        self.db.begin(&name, &intent)?;
        let journaled_ms = clock.elapsed().as_millis() as u64;
        let placed = apply::forward(&mut tree, &intent.steps, || {
            if failpoint::error("commit.mid-place") {
                return Err(StepError {
                    path: intent
                        .steps
                        .get(intent.steps.len() / 2)
                        .map_or_else(String::new, |s| s.live.clone()),
                    op: "failpoint commit.mid-place",
                    error: std::io::Error::other("failpoint"),
                });
            }
            failpoint::hit("commit.mid-place");
            Ok(())
        });
        if let Err(failed) = placed {
            tracing::warn!(package = %name, error = %failed, "commit failed; restoring the previous version");
            let restored = self.undo(&mut tree, &mut intent).is_ok();
            return Err(Error::Commit {
                package: name,
                path: failed.path,
                reason: if failed.op.starts_with("failpoint") {
                    failed.op.to_owned()
                } else {
                    format!("{}: {}", failed.op, failed.error)
                },
                restored,
            });
        }
        failpoint::hit("commit.after-place");
        tracing::debug!(
            package = %name,
            prepared_ms,
            journaled_ms,
            placed_ms = clock.elapsed().as_millis() as u64,
            "commit placed"
        );
        notices.extend(self.finish(&mut tree, intent)?);
        Ok(notices)
    }

    /// Remove the installed `package`.
    pub fn remove(&self, tx: u64, package: InstalledPackage) -> Result<Vec<Notice>> {
        let name = package.name.clone();
        let intent = Intent {
            tx,
            action: IntentAction::Remove,
            phase: Phase::Placing,
            package,
            steps: Vec::new(),
            areas: Vec::new(),
            created: Vec::new(),
            dropped: Vec::new(),
            read_modes: Vec::new(),
        };
        self.db.begin(&name, &intent)?;
        let mut tree = self.tree()?;
        self.finish(&mut tree, intent)
    }

    /// Every step ran: read back what the disk made of modes, flush, record the new state,
    /// then clean up.
    fn finish(&self, tree: &mut Tree, mut intent: Intent) -> Result<Vec<Notice>> {
        if !intent.read_modes.is_empty() {
            let paths: HashSet<&str> = intent.read_modes.iter().map(String::as_str).collect();
            for r in intent
                .package
                .files
                .iter_mut()
                .filter(|r| paths.contains(r.path.as_str()))
            {
                if let Ok(Some(st)) = tree.stat(&r.path) {
                    r.mode = st.mode;
                    r.uid = st.uid;
                    r.gid = st.gid;
                }
            }
        }
        set_dir_times(tree, &intent);
        let clock = std::time::Instant::now();
        // The renames must be durable before the journal entry that could redo them changes.
        self.sync(&intent)?;
        let synced_ms = clock.elapsed().as_millis() as u64;
        failpoint::hit("commit.before-complete");
        let gone: &[crate::manifest::FileRecord] = match intent.action {
            IntentAction::Install => &intent.dropped,
            IntentAction::Remove => &intent.package.files,
        };
        let mut next = intent.clone();
        next.phase = Phase::Cleanup;
        self.db.complete(
            &Recorded {
                name: &intent.package.name,
                package: (intent.action == IntentAction::Install).then_some(&intent.package),
                gone,
                created: &intent.created,
            },
            &next,
        )?;
        let recorded_ms = clock.elapsed().as_millis() as u64;
        let notices = self.cleanup(tree, &next)?;
        tracing::debug!(
            package = %intent.package_name(),
            synced_ms,
            recorded_ms,
            cleaned_ms = clock.elapsed().as_millis() as u64,
            "commit finished"
        );
        Ok(notices)
    }

    /// Make the commit's renames durable: on the root's file system the directories they
    /// changed (when it orders its metadata: [`writeback`]), else every file system the commit
    /// renamed on, whole: the root's, staging's and those of the areas on other file systems.
    fn sync(&self, intent: &Intent) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let device_of = |dir: &Path| std::fs::metadata(dir).map(|m| m.dev()).ok();
        let mut synced = HashSet::new();
        if writeback::durability(self.root) == Durability::Targeted {
            let changed = intent
                .steps
                .iter()
                .flat_map(|s| [&s.live, &s.staged, &s.backup])
                .filter(|p| !p.is_empty())
                .map(String::as_str);
            writeback::sync_dirs(self.root, changed).map_err(|e| {
                Error::io(
                    format!("syncing the renames under {}", self.root.display()),
                    e,
                )
            })?;
            synced.insert(device_of(self.root));
        }
        let mut dirs = vec![self.root.to_path_buf()];
        dirs.extend(intent.areas.iter().map(|a| existing_ancestor(self.root, a)));
        for dir in dirs {
            if synced.insert(device_of(&dir)) {
                sync_filesystem(&dir)
                    .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
            }
        }
        Ok(())
    }

    /// Remove what the package no longer has, then its areas, then the journal entry.
    fn cleanup(&self, tree: &mut Tree, intent: &Intent) -> Result<Vec<Notice>> {
        let name = intent.package_name();
        let gone = match intent.action {
            IntentAction::Install => &intent.dropped,
            IntentAction::Remove => &intent.package.files,
        };
        let owners = self.db.ownership()?;
        let cleaned = cleanup::remove(tree, name, gone, &owners)?;
        drop(owners);
        // The first area is the package's staging, which the end of the transaction clears
        // with the rest of staging, off the user's wait (it holds the replaced version's
        // files); what it leaves after a crash goes with staging at the next start.
        self.remove_areas(intent.areas.get(1..).unwrap_or_default());
        self.db.finish(name, &cleaned.removed_dirs)?;
        Ok(cleaned.notices)
    }

    fn remove_areas(&self, areas: &[String]) {
        for area in areas {
            let path = self.root.join(area);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a staging area")
                }
            }
        }
    }

    /// Undo the steps of `intent`. `Err` carries why the package could not be restored (it is
    /// then recorded as broken).
    fn undo(&self, tree: &mut Tree, intent: &mut Intent) -> Result<(), String> {
        let name = intent.package_name().to_owned();
        intent.phase = Phase::RollingBack;
        if let Err(e) = self.db.begin(&name, intent) {
            tracing::warn!(package = %name, error = %e, "could not journal the rollback");
        }
        let failed = apply::rollback(tree, &intent.steps);
        self.remove_areas(&intent.areas);
        if failed.is_empty() {
            if let Err(e) = self.db.abandon(&name) {
                tracing::warn!(package = %name, error = %e, "could not drop the journal entry");
            }
            tracing::info!(package = %name, "previous version restored");
            return Ok(());
        }
        let list: Vec<String> = failed.iter().map(ToString::to_string).collect();
        let reason = format!(
            "an interrupted commit could not be undone ({}); reinstall the package",
            list.join("; ")
        );
        tracing::error!(package = %name, %reason, "package left broken");
        let record = match self.db.package(&name) {
            Ok(Some(old)) => old,
            _ => intent.package.clone(),
        };
        if let Err(e) = self.db.mark_broken(&record, &reason) {
            tracing::error!(package = %name, error = %e, "could not record the broken package");
        }
        Err(reason)
    }

    /// Finish or undo every commit the journal holds (after a crash, or a panic in the
    /// transaction that ran it). Never fails for one package's sake: what cannot be repaired
    /// is recorded as broken. Returns how many entries there were.
    pub fn recover(&self) -> Result<usize> {
        let entries: Vec<Intent> = self.db.journal()?;
        for mut intent in entries.iter().cloned() {
            let name = intent.package_name().to_owned();
            let mut tree = self.tree()?;
            match intent.phase {
                Phase::Preparing => {
                    tracing::warn!(package = %name, tx = intent.tx, "dropping a commit interrupted before it began");
                    self.remove_areas(&intent.areas);
                    self.db.abandon(&name)?;
                }
                Phase::Placing => {
                    let intact = match intent.action {
                        IntentAction::Remove => Ok(()),
                        IntentAction::Install => {
                            apply::staged_intact(&mut tree, &intent.steps, &intent.package.files)
                        }
                    };
                    match intact {
                        Ok(()) => {
                            tracing::warn!(package = %name, tx = intent.tx, "finishing a commit interrupted by a crash");
                            match apply::forward(&mut tree, &intent.steps, || Ok(())) {
                                Ok(()) => {
                                    if let Err(e) = self.finish(&mut tree, intent.clone()) {
                                        tracing::error!(package = %name, error = %e, "could not finish the interrupted commit");
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(package = %name, error = %e, "cannot finish the interrupted commit; undoing it");
                                    let _ = self.undo(&mut tree, &mut intent);
                                }
                            }
                        }
                        Err(why) => {
                            tracing::warn!(package = %name, tx = intent.tx, %why, "staging of the interrupted commit is not intact; undoing it");
                            let _ = self.undo(&mut tree, &mut intent);
                        }
                    }
                }
                Phase::RollingBack => {
                    tracing::warn!(package = %name, tx = intent.tx, "finishing an interrupted rollback");
                    let _ = self.undo(&mut tree, &mut intent);
                }
                Phase::Cleanup => {
                    tracing::warn!(package = %name, tx = intent.tx, "finishing the cleanup of an interrupted commit");
                    if let Err(e) = self.cleanup(&mut tree, &intent) {
                        tracing::error!(package = %name, error = %e, "could not finish the cleanup");
                    }
                }
            }
        }
        Ok(entries.len())
    }

    /// Refuse early when a file system the plan copies to lacks room.
    fn check_space(
        &self,
        name: &str,
        copies: &[super::plan::Copy],
        mounts: &MountTable,
    ) -> Result<()> {
        let mut needed: BTreeMap<u64, (u64, &str)> = BTreeMap::new();
        for copy in copies {
            let size = match &copy.kind {
                crate::manifest::FileKind::File { size, .. } => *size,
                _ => 0,
            };
            let entry = needed.entry(copy.mount).or_insert((0, copy.to.as_str()));
            entry.0 += size + 4096;
        }
        for (mount, (bytes, area)) in needed {
            let dir = existing_ancestor(self.root, area);
            let free = mounts::free_bytes(&dir)
                .map_err(|e| Error::io(format!("checking free space of {}", dir.display()), e))?;
            if free < bytes {
                return Err(Error::NoSpace {
                    place: mounts.describe(mount, self.root, &dir),
                    what: name.to_owned(),
                    needed: bytes,
                    free,
                });
            }
        }
        Ok(())
    }
}

/// Directories the commit created get the archive's times once everything in them is placed
/// (those moved in whole already have them; those made on other file systems do not).
fn set_dir_times(tree: &mut Tree, intent: &Intent) {
    if intent.action != IntentAction::Install {
        return;
    }
    let created: HashSet<&str> = intent.created.iter().map(String::as_str).collect();
    let mut dirs: Vec<&crate::manifest::FileRecord> = intent
        .package
        .files
        .iter()
        .filter(|r| r.is_dir() && r.mtime != 0 && created.contains(r.path.as_str()))
        .collect();
    dirs.sort_by(|a, b| b.path.cmp(&a.path));
    for r in dirs {
        let t = rustix::fs::Timespec {
            tv_sec: r.mtime,
            tv_nsec: i64::from(r.mtime_ns),
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        let done = tree.at(&r.path).and_then(|(dir, name)| {
            rustix::fs::utimensat(dir, name, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        });
        if let Err(e) = done {
            tracing::debug!(path = %r.path, error = %e, "could not set the directory's time");
        }
    }
}

/// The nearest existing directory at or above the root-relative `path`.
pub fn existing_ancestor(root: &Path, path: &str) -> std::path::PathBuf {
    let mut cur = path;
    loop {
        let p = root.join(cur);
        if p.is_dir() || cur.is_empty() {
            return p;
        }
        cur = split(cur).0;
    }
}

/// Canonical forms of `package`'s recorded paths in `live` (for databases written before
/// paths were resolved).
pub fn canonicalize(live: &mut Live, package: &mut InstalledPackage) {
    for r in &mut package.files {
        let resolved = if r.is_dir() {
            live.dir(&r.path).map(|d| d.path)
        } else {
            let (dir, name) = split(&r.path);
            live.dir(dir).map(|d| crate::live::join(&d.path, name))
        };
        if let Ok(path) = resolved {
            r.path = path;
        }
    }
    let mut seen = HashSet::new();
    package.files.retain(|r| seen.insert(r.path.clone()));
}
