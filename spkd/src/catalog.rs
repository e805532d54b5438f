//! What the configured repositories offer: per repository the last index fetched (persisted in
//! the database so spkd knows it after a restart), merged by name in config order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::index::IndexEntry;

/// One package a repository offers, with where to download it (in the order to try).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Available {
    pub repo: String,
    pub entry: IndexEntry,
    pub urls: Vec<String>,
    /// What vouches for `entry.sha256` (e.g. "index", "github digest").
    pub verified_by: String,
}

/// A repository's last successful refresh.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoSnapshot {
    pub release: String,
    pub packages: Vec<Available>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Repository name → snapshot, for every repository refreshed at least once.
    pub repos: BTreeMap<String, RepoSnapshot>,
    /// Config order of repository names (earlier wins a name).
    pub order: Vec<String>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Available> {
        self.order
            .iter()
            .filter_map(|r| self.repos.get(r))
            .find_map(|s| s.packages.iter().find(|a| a.entry.name == name))
    }

    /// Every offered name with the winning offer.
    pub fn all(&self) -> BTreeMap<&str, &Available> {
        let mut out = BTreeMap::new();
        for snapshot in self.order.iter().filter_map(|r| self.repos.get(r)) {
            for a in &snapshot.packages {
                out.entry(a.entry.name.as_str()).or_insert(a);
            }
        }
        out
    }
}
