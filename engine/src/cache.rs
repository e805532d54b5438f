//! The download cache, `var/cache/spk/<sha256>.tar.xz`: tarballs that passed verification,
//! named by their digest. Each package keeps the tarball of its installed version and of the
//! one before (`keep_versions`, default 2), so that a reinstall or going back needs no
//! download; older ones are pruned after every transaction. Which tarballs belong to which
//! package is recorded in the database (newest first).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::db::{Database, InstalledPackage};
use crate::error::{Error, Result};

const KEY_PREFIX: &str = "cache/";

pub struct Cache<'a> {
    pub dir: &'a Path,
    pub db: &'a Database,
}

/// Where the tarball with digest `sha256` is kept.
pub fn file(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.tar.xz"))
}

impl Cache<'_> {
    fn list(&self, package: &str) -> Result<Vec<String>> {
        Ok(self
            .db
            .meta(&format!("{KEY_PREFIX}{package}"))?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    fn set_list(&self, package: &str, list: &[String]) -> Result<()> {
        let bytes = serde_json::to_vec(list).map_err(|e| Error::Database(e.to_string()))?;
        self.db.set_meta(&format!("{KEY_PREFIX}{package}"), &bytes)
    }

    /// Note that `package`'s tarball `sha256` is now in the cache (its newest).
    pub fn remember(&self, package: &str, sha256: &str) -> Result<()> {
        let mut list = self.list(package)?;
        list.retain(|s| s != sha256);
        list.insert(0, sha256.to_owned());
        self.set_list(package, &list)
    }

    /// Keep at most `keep` of `package`'s tarballs: the installed one first, then the newest.
    pub fn prune(&self, package: &str, installed: Option<&str>, keep: usize) -> Result<()> {
        let list = self.list(package)?;
        let mut kept: Vec<String> = Vec::new();
        if keep > 0
            && let Some(i) = installed.filter(|i| list.iter().any(|s| s == i))
        {
            kept.push(i.to_owned());
        }
        for s in &list {
            if kept.len() >= keep {
                break;
            }
            if !kept.contains(s) {
                kept.push(s.clone());
            }
        }
        let others = self.others(package)?;
        for s in list
            .iter()
            .filter(|s| !kept.contains(s) && !others.contains(*s))
        {
            self.delete(s);
        }
        self.set_list(package, &kept)
    }

    /// Tarballs other packages' lists hold (a digest could be shared).
    fn others(&self, package: &str) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for (key, bytes) in self.db.meta_with_prefix(KEY_PREFIX)? {
            if key[KEY_PREFIX.len()..] == *package {
                continue;
            }
            let list: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_default();
            out.extend(list);
        }
        Ok(out)
    }

    fn delete(&self, sha256: &str) {
        let path = file(self.dir, sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "pruned from the cache"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not prune"),
        }
    }

    /// `spkctl clean`: delete every cached file but the installed versions' tarballs (all of
    /// them with `all`). Returns how many files and bytes went.
    pub fn clean(
        &self,
        installed: &BTreeMap<String, InstalledPackage>,
        all: bool,
    ) -> Result<(u32, u64)> {
        let keep: HashSet<String> = if all {
            HashSet::new()
        } else {
            installed
                .values()
                .filter(|p| !p.sha256.is_empty())
                .map(|p| format!("{}.tar.xz", p.sha256))
                .collect()
        };
        let mut files = 0u32;
        let mut bytes = 0u64;
        let entries = match std::fs::read_dir(self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(Error::io(format!("reading {}", self.dir.display()), e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() || keep.contains(&name) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    files += 1;
                    bytes += meta.len();
                }
                Err(e) => {
                    return Err(Error::io(format!("removing {}", entry.path().display()), e));
                }
            }
        }
        for (key, _) in self.db.meta_with_prefix(KEY_PREFIX)? {
            let package = &key[KEY_PREFIX.len()..];
            let list: Vec<String> = installed
                .get(package)
                .filter(|p| !all && !p.sha256.is_empty())
                .map(|p| vec![p.sha256.clone()])
                .unwrap_or_default();
            self.set_list(package, &list)?;
        }
        Ok((files, bytes))
    }
}
