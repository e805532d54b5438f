//! What a transaction will do, decided before anything is fetched or changed: the packages to
//! install (from the catalog, or for a rollback from the cache), those to remove, the changes
//! clients are shown, and whether the disks have room.

use std::sync::PoisonError;

use crate::cache;
use crate::catalog::{Available, Refused};
use crate::change::Change;
use crate::commit::committer;
use crate::db::InstalledPackage;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::live::Live;
use crate::mounts::{self, MountTable};
use crate::query::unknown;
use crate::request::{Action, Request};

/// A package the plan installs: the build to install and what is installed now (`None`: a
/// new install).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Planned {
    pub(crate) available: Available,
    pub(crate) old: Option<InstalledPackage>,
}

impl Engine {
    /// The packages an install or upgrade `req` (re)installs, in the order named.
    pub(crate) fn plan(&self, req: &Request) -> Result<Vec<Planned>> {
        let installed = self.db.installed()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let mut plan = Vec::new();
        let names: Vec<String> = if req.action == Action::Upgrade && req.names.is_empty() {
            // Held packages are upgraded only when named.
            let held = self.held()?;
            installed
                .keys()
                .filter(|n| !held.contains(*n))
                .cloned()
                .collect()
        } else {
            req.names.clone()
        };
        for name in names {
            if plan
                .iter()
                .any(|p: &Planned| p.available.entry.name == name)
            {
                continue;
            }
            let old = installed.get(&name).cloned();
            if req.action == Action::Upgrade && old.is_none() {
                return Err(Error::NotInstalled(name));
            }
            let Some(available) = catalog.get(&name).cloned() else {
                if req.action == Action::Upgrade {
                    // Installed, but no longer offered: nothing to upgrade it to.
                    tracing::info!(package = %name, "no repository offers it any more; kept");
                    continue;
                }
                return Err(catalog
                    .refusal(&name)
                    .map_or_else(|| unknown(&name), Refused::error));
            };
            // A broken package is always reinstalled: that is how it is repaired.
            let same = old.as_ref().is_some_and(|o| {
                o.broken.is_none() && available.is_build(&o.sha256, &o.version, o.size)
            });
            if same && !req.options.reinstall {
                continue;
            }
            plan.push(Planned { available, old });
        }
        Ok(plan)
    }

    /// What `req` would do with the indexes as they are now (no refresh, no change).
    pub fn plan_changes(&self, req: &Request) -> Result<Vec<Change>> {
        self.validate(req)?;
        match req.action {
            Action::Refresh => Ok(Vec::new()),
            Action::Remove => Ok(self
                .removals(req)?
                .iter()
                .map(|p| Change::removal(&p.name, &p.version, p.installed_size))
                .collect()),
            Action::Install | Action::Upgrade => {
                Ok(self.plan(req)?.iter().map(|p| self.change_of(p)).collect())
            }
            Action::Rollback => {
                let (installs, removes) = self.rollback_plan(req)?;
                let mut changes: Vec<Change> = installs.iter().map(|p| self.change_of(p)).collect();
                changes.extend(
                    removes
                        .iter()
                        .map(|p| Change::removal(&p.name, &p.version, p.installed_size)),
                );
                Ok(changes)
            }
            Action::ApplyPrepared => Ok(self.prepared()?.map(|p| p.changes).unwrap_or_default()),
        }
    }

    pub(crate) fn change_of(&self, p: &Planned) -> Change {
        let e = &p.available.entry;
        let cached =
            !p.available.is_unverified() && cache::file(&self.layout.cache, &e.sha256).is_file();
        Change {
            name: e.name.clone(),
            from: p
                .old
                .as_ref()
                .map(|o| o.version.clone())
                .unwrap_or_default(),
            to: e.version.clone(),
            download: if cached { 0 } else { e.size },
            installed_size: e.installed_size,
        }
    }

    /// What a rollback does: the builds to install again (from the cache) and the packages to
    /// remove (undoing an install).
    pub(crate) fn rollback_plan(
        &self,
        req: &Request,
    ) -> Result<(Vec<Planned>, Vec<InstalledPackage>)> {
        let builds = crate::builds::Builds { db: &self.db };
        let cached = |sha: &str| cache::file(&self.layout.cache, sha).is_file();
        let keep = self.config.keep_versions;
        let no_earlier = |name: &str| {
            Error::NotKept(format!(
                "there is no earlier version of {name} in the cache to go back to \
                 (it keeps keep_versions = {keep} per package)"
            ))
        };
        let not_kept = |name: &str, version: &str| {
            Error::NotKept(format!(
                "{name} {version} is no longer in the cache (it keeps keep_versions = {keep} \
                 per package)"
            ))
        };
        let mut installs = Vec::new();
        let mut removes = Vec::new();
        let Some(id) = req.options.undo else {
            for name in &req.names {
                let old = self
                    .db
                    .package(name)?
                    .ok_or_else(|| Error::NotInstalled(name.clone()))?;
                let build = builds
                    .previous(name, &old.sha256, cached)?
                    .ok_or_else(|| no_earlier(name))?;
                if installs
                    .iter()
                    .all(|p: &Planned| p.available.entry.name != *name)
                {
                    installs.push(Planned {
                        available: build.available(),
                        old: Some(old),
                    });
                }
            }
            return Ok((installs, removes));
        };
        let entry = self
            .db
            .history(usize::MAX)?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| Error::InvalidArgs(format!("there is no history entry {id}")))?;
        for change in &entry.changes {
            let old = self.db.package(&change.name)?;
            if change.from.is_empty() {
                // Installed then: remove it (if it is still there).
                if let Some(old) = old {
                    removes.push(old);
                }
                continue;
            }
            if old
                .as_ref()
                .is_some_and(|o| o.version == change.from && o.broken.is_none())
            {
                continue;
            }
            let build = builds
                .of_version(&change.name, &change.from)?
                .filter(|b| cached(&b.entry.sha256))
                .ok_or_else(|| not_kept(&change.name, &change.from))?;
            installs.push(Planned {
                available: build.available(),
                old,
            });
        }
        Ok((installs, removes))
    }

    /// The installed packages `req` names, each once.
    pub(crate) fn removals(&self, req: &Request) -> Result<Vec<InstalledPackage>> {
        let mut packages: Vec<InstalledPackage> = Vec::new();
        for name in &req.names {
            let package = self
                .db
                .package(name)?
                .ok_or_else(|| Error::NotInstalled(name.clone()))?;
            if !packages.iter().any(|p| &p.name == name) {
                packages.push(package);
            }
        }
        Ok(packages)
    }

    /// Refuse before downloading when the cache's or staging's file system lacks room.
    pub(crate) fn check_space(
        &self,
        plan: &[Planned],
        changes: &[Change],
        download_only: bool,
    ) -> Result<()> {
        let download: u64 = changes.iter().map(|c| c.download).sum();
        let unpacked: u64 = if download_only {
            0
        } else {
            plan.iter().map(|p| p.available.entry.installed_size).sum()
        };
        let cache_dir = committer::existing_ancestor(&self.layout.root, "var/cache/spk");
        let staging_dir = committer::existing_ancestor(&self.layout.root, &self.staging);
        let device = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).map(|m| m.dev()).ok()
        };
        let names = plan
            .iter()
            .map(|p| p.available.entry.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut needs = vec![(cache_dir.clone(), download, format!("downloading {names}"))];
        if device(&cache_dir) == device(&staging_dir) {
            needs[0].1 += unpacked;
            if unpacked > 0 {
                needs[0].2 = format!("downloading and unpacking {names}");
            }
        } else {
            needs.push((staging_dir, unpacked, format!("unpacking {names}")));
        }
        let table = MountTable::read();
        for (dir, bytes, what) in needs {
            if bytes == 0 {
                continue;
            }
            let free = mounts::free_bytes(&dir)
                .map_err(|e| Error::io(format!("checking free space of {}", dir.display()), e))?;
            if free < bytes {
                let id = Live::open(&dir)
                    .ok()
                    .and_then(|mut l| l.mount_of("").ok())
                    .unwrap_or(0);
                return Err(Error::NoSpace {
                    place: table.describe(id, &self.layout.root, &dir),
                    what,
                    needed: bytes,
                    free,
                });
            }
        }
        Ok(())
    }
}
