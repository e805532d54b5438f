//! The builds each package had on this root, newest first: what `spkctl rollback` and
//! `spkctl history undo` go back to. A build is its index entry as it was verified when
//! installed (version, sha256, size, kind, setuid/owners/capabilities), so that going back
//! needs neither the repository nor its index: the tarball comes from the cache and is checked
//! against that recorded sha256.

use serde::{Deserialize, Serialize};

use crate::catalog::Available;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::index::IndexEntry;

const KEY_PREFIX: &str = "builds/";
/// Builds remembered per package (more than the cache keeps: the history can name them).
const REMEMBERED: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub repo: String,
    pub entry: IndexEntry,
    /// What vouched for the sha256 when it was installed.
    pub verified_by: String,
}

impl Build {
    /// The build as a package to install again: no URL, so only the cache can provide it.
    pub fn available(&self) -> Available {
        Available {
            repo: self.repo.clone(),
            entry: self.entry.clone(),
            urls: Vec::new(),
            verified_by: format!(
                "sha256 recorded when {} was installed ({})",
                self.entry.version, self.verified_by
            ),
        }
    }
}

pub struct Builds<'a> {
    pub db: &'a Database,
}

impl Builds<'_> {
    /// `package`'s builds, newest first.
    pub fn list(&self, package: &str) -> Result<Vec<Build>> {
        Ok(self
            .db
            .meta(&format!("{KEY_PREFIX}{package}"))?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Note that `available` was just installed.
    pub fn remember(&self, available: &Available) -> Result<()> {
        if available.is_unverified() {
            // Nothing to check a cached copy against: never a rollback target.
            return Ok(());
        }
        let name = &available.entry.name;
        let mut list = self.list(name)?;
        list.retain(|b| b.entry.sha256 != available.entry.sha256);
        list.insert(
            0,
            Build {
                repo: available.repo.clone(),
                entry: available.entry.clone(),
                verified_by: available.verified_by.clone(),
            },
        );
        list.truncate(REMEMBERED);
        let bytes = serde_json::to_vec(&list).map_err(|e| Error::Database(e.to_string()))?;
        self.db.set_meta(&format!("{KEY_PREFIX}{name}"), &bytes)
    }

    /// The newest build of `package` other than the one with `installed` sha256 whose tarball
    /// `cached` says is in the cache.
    pub fn previous(
        &self,
        package: &str,
        installed: &str,
        cached: impl Fn(&str) -> bool,
    ) -> Result<Option<Build>> {
        Ok(self
            .list(package)?
            .into_iter()
            .find(|b| b.entry.sha256 != installed && cached(&b.entry.sha256)))
    }

    /// `package`'s build of `version` (the newest one, should a version have had two builds).
    pub fn of_version(&self, package: &str, version: &str) -> Result<Option<Build>> {
        Ok(self
            .list(package)?
            .into_iter()
            .find(|b| b.entry.version == version))
    }
}
