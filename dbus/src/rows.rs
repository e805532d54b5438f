//! The structured values of the API: the `a{sv}` rows of `ListPackages`, `GetHistory` and
//! `GetRepositories` (one field per key, every key always sent), and the structs of `Plan`,
//! `Verify`, history changes and notices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{DeserializeDict, OwnedValue, SerializeDict, Type, Value};

use crate::words::{ChangeAction, Kind, NoticeKind, PackageState, ProblemKind, State};

/// One package of `ListPackages`.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "kebab-case",
    crate = "zbus::zvariant"
)]
pub struct PackageRow {
    pub name: String,
    /// `system` or `userland`.
    pub kind: String,
    pub state: PackageState,
    /// Empty when not installed.
    pub installed_version: String,
    /// Empty when no repository offers it.
    pub available_version: String,
    /// Bytes of the tarball.
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    /// The repository offering it (else the one it was installed from).
    pub repo: String,
    /// What vouches for the offered tarball, e.g. `signed index (key …)`.
    pub verified_by: String,
    /// Installed regular files and symlinks.
    pub files: u64,
    /// Why it is broken (state `broken`); empty otherwise.
    pub problem: String,
    /// File capabilities, path → `setcap` text (from the signed index).
    pub capabilities: BTreeMap<String, String>,
    /// Held: upgrades leave it alone unless it is named.
    pub held: bool,
}

/// One past transaction of `GetHistory`.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "kebab-case",
    crate = "zbus::zvariant"
)]
pub struct HistoryRow {
    pub id: u64,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub uid: u32,
    pub kind: Kind,
    /// The names as requested (empty: upgrade everything).
    pub packages: Vec<String>,
    /// `finished`, `failed` or `cancelled`.
    pub state: State,
    pub error: String,
    /// What changed on disk.
    pub changes: Vec<HistoryChange>,
}

/// A configured repository of `GetRepositories`.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDict, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "kebab-case",
    crate = "zbus::zvariant"
)]
pub struct RepositoryRow {
    pub name: String,
    /// `index`, `github`, or `invalid`.
    pub kind: String,
    pub location: String,
    /// Release of the index in use; empty until the first successful refresh.
    pub release: String,
    /// When that index was published (unix seconds; 0 = it does not say).
    pub timestamp: u64,
    /// Whether `timestamp` is signed by a trusted key.
    pub signed: bool,
    /// The HTTP proxy its requests go through, with any password shown as `***`, and where it
    /// is set (`(spk.toml)`, `(environment: http_proxy)`); `none` when they go directly.
    pub proxy: String,
}

/// The Manager's `PreparedUpdate`: the update an `offline` Install/Upgrade prepared for the
/// next boot. No update is prepared when `prepared_at` is 0 (and `changes` empty).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, SerializeDict, DeserializeDict, Type, Value, OwnedValue,
)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "kebab-case",
    crate = "zbus::zvariant"
)]
pub struct PreparedRow {
    /// Unix seconds.
    pub prepared_at: u64,
    /// What each package goes from and to.
    pub changes: Vec<HistoryChange>,
    /// Bytes the unpacked packages take (on disk until installed or cancelled).
    pub installed_size: u64,
    /// Why it can no longer be installed (it will be discarded at boot), else empty.
    pub stale: String,
}

impl PreparedRow {
    /// Whether an update is prepared.
    pub fn is_prepared(&self) -> bool {
        self.prepared_at != 0
    }
}

/// One package's change in a history row: `(name, from, to)`; `from` is empty for an
/// install, `to` for a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value)]
#[zvariant(crate = "zbus::zvariant")]
pub struct HistoryChange {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// One row of `Plan`: `(name, action, from, to, download, installed_size)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value)]
#[zvariant(crate = "zbus::zvariant")]
pub struct PlannedChange {
    pub name: String,
    pub action: ChangeAction,
    pub from: String,
    pub to: String,
    /// Bytes to download (0 when the cache holds the tarball).
    pub download: u64,
    pub installed_size: u64,
}

/// One row of `Verify`: `(package, path, kind, problem)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value)]
#[zvariant(crate = "zbus::zvariant")]
pub struct Problem {
    pub package: String,
    /// Relative to the root.
    pub path: String,
    pub kind: ProblemKind,
    /// What differs, for people (details only for root).
    pub problem: String,
}

/// A `Notice` signal, or one row of the `Notices` property: `(package, kind, path, message)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value)]
#[zvariant(crate = "zbus::zvariant")]
pub struct Notice {
    /// Empty for a repository's notice.
    pub package: String,
    pub kind: NoticeKind,
    pub path: String,
    pub message: String,
}
