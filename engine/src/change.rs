//! The record of what a transaction did to one package: the engine reports it, and the
//! history keeps it (so both the engine and the database depend on this, not on each other).

use serde::{Deserialize, Serialize};

/// What a transaction (would) do to one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub name: String,
    /// Installed version before; empty when it was not installed.
    pub from: String,
    /// Version after; empty when removed.
    pub to: String,
    /// Bytes to download (0 when the cache has it or nothing is downloaded).
    #[serde(default)]
    pub download: u64,
    #[serde(default)]
    pub installed_size: u64,
}

impl Change {
    /// The removal of the installed `version` of `name`: nothing to download.
    pub fn removal(name: &str, version: &str, installed_size: u64) -> Change {
        Change {
            name: name.to_owned(),
            from: version.to_owned(),
            to: String::new(),
            download: 0,
            installed_size,
        }
    }

    /// install | upgrade | reinstall | remove
    pub fn action(&self) -> &'static str {
        match (self.from.is_empty(), self.to.is_empty()) {
            (true, _) => "install",
            (false, true) => "remove",
            (false, false) if self.from == self.to => "reinstall",
            (false, false) => "upgrade",
        }
    }
}
