//! What the configured repositories offer: per repository the last index fetched (persisted in
//! the database so spkd knows it after a restart), merged by name in config order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::index::IndexEntry;

/// `verified_by` of a package whose release asset had no digest and no signed index entry,
/// accepted only because the config says `allow_unverified = true`.
pub const UNVERIFIED: &str = "unverified";

/// One package a repository offers, with where to download it (in the order to try).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Available {
    pub repo: String,
    /// `entry.sha256` is empty for an unverified package (see [`Available::is_unverified`]).
    pub entry: IndexEntry,
    pub urls: Vec<String>,
    /// What vouches for `entry.sha256`: "signed index (key K)", "index sha256 (unsigned
    /// index)", "GitHub asset digest", or [`UNVERIFIED`].
    pub verified_by: String,
}

impl Available {
    /// Nothing vouches for the bytes: only the size is checked, and the tarball is never cached
    /// (the cache is named by verified sha256).
    pub fn is_unverified(&self) -> bool {
        self.entry.sha256.is_empty()
    }

    /// Whether the installed build (recorded with this sha256, version and size) is the one
    /// offered. Without a digest the version and size are all there is to compare.
    pub fn is_build(&self, sha256: &str, version: &str, size: u64) -> bool {
        if self.is_unverified() {
            sha256.is_empty() && version == self.entry.version && size == self.entry.size
        } else {
            sha256 == self.entry.sha256
        }
    }
}

/// A package a repository lists but spk refuses to offer, with the reason (shown when someone
/// asks for it by name instead of a bare "unknown package").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    /// The URL of the document that listed it (release JSON or index).
    pub url: String,
    pub reason: String,
}

impl Refused {
    /// The error for someone who asks for this package (a `Verification` failure).
    pub fn error(&self) -> crate::error::Error {
        crate::error::Error::BadIndex {
            url: self.url.clone(),
            reason: format!("{}: {}", self.name, self.reason),
        }
    }
}

/// How to ask the server "has it changed?" next time (RFC 9110 conditional requests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validators {
    /// The URL whose answer the snapshot was built from (index.json or the release JSON).
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Fingerprint of the trust settings (keys, `allow_unverified`) and the source config the
    /// snapshot was accepted under: when they change, the next refresh fetches and checks
    /// everything again.
    pub trust: String,
}

/// A repository's last successful refresh.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoSnapshot {
    pub release: String,
    pub packages: Vec<Available>,
    /// Listed, but refused (no digest, no signed entry).
    #[serde(default)]
    pub refused: Vec<Refused>,
    /// The newest signed time of an index accepted from this repository (the rollback
    /// guard); kept across refreshes, whatever later indexes carry. `None` while no accepted
    /// signed index had a time.
    #[serde(default)]
    pub signed_timestamp: Option<u64>,
    /// When the index in use was published (unix seconds), if it says: its signed time, else
    /// the `timestamp` of an unsigned index, else a GitHub release's `published_at`.
    #[serde(default)]
    pub published: Option<u64>,
    /// Whether `published` is signed by a trusted key.
    #[serde(default)]
    pub signed: bool,
    /// For the conditional request of the next refresh.
    #[serde(default)]
    pub validators: Option<Validators>,
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

    /// Why no repository offers `name` although one lists it (checked after [`Catalog::get`]).
    pub fn refusal(&self, name: &str) -> Option<&Refused> {
        self.order
            .iter()
            .filter_map(|r| self.repos.get(r))
            .find_map(|s| s.refused.iter().find(|r| r.name == name))
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
