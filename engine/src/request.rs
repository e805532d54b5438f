//! What callers ask the engine for and what they get back: the request (action, names,
//! options), its outcome, and the package and repository descriptions the daemon puts on the
//! bus; with the check of a request's arguments.

use std::collections::BTreeMap;

use crate::change::Change;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::check_package_name;
use crate::notice::Notice;

/// Most names one request may carry.
pub const MAX_NAMES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Refresh,
    Install,
    Upgrade,
    Remove,
    /// Back to the previous build of each named package, or (option `undo`) undo what one
    /// past transaction changed; from the cache, never the network.
    Rollback,
    /// Commit the update an offline Install/Upgrade prepared (at boot, before the desktop).
    ApplyPrepared,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refresh => "refresh",
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Remove => "remove",
            Action::Rollback => "rollback",
            Action::ApplyPrepared => "offline-update",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub reinstall: bool,
    pub download_only: bool,
    pub dry_run: bool,
    /// Take over files owned by another package (and files of none, like `adopt`).
    pub force: bool,
    /// Take over files on disk that no package owns (a system installed by the old tool).
    pub adopt: bool,
    /// Rollback: undo what the history entry with this id changed (instead of named packages).
    pub undo: Option<u64>,
    /// Install/Upgrade: download, verify and unpack now, commit at the next boot
    /// ([`Action::ApplyPrepared`]).
    pub offline: bool,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub action: Action,
    pub names: Vec<String>,
    pub options: Options,
    /// uid of who asked (recorded in the history).
    pub requester: u32,
}

/// What a finished transaction did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Each package installed, upgraded or removed (for a dry run: what would be).
    pub changed: Vec<Change>,
    /// After a refresh: names with an update available.
    pub updates: Vec<String>,
    /// What the admin should know (kept configuration files, mount points left alone).
    pub notices: Vec<Notice>,
}

/// A configured repository as clients see it (`GetRepositories`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub name: String,
    /// `index`, `github`, or `invalid`.
    pub kind: String,
    pub location: String,
    /// Release of the index in use; empty until the first successful refresh.
    pub release: String,
    /// When that index was published (unix seconds; 0 = it does not say).
    pub published: u64,
    /// Whether `published` is signed by a trusted key.
    pub signed: bool,
    /// The proxy its requests go through (password hidden) and where that is set, or `none`.
    pub proxy: String,
}

/// A repository whose refresh failed, in a refresh that goes on with the others.
#[derive(Debug)]
pub struct RepoFailure {
    pub repo: String,
    pub error: Error,
}

/// Where a package stands, as `ListPackages` and `info` say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageState {
    /// Offered, not installed.
    Available,
    Installed,
    /// Installed, and its repository offers a different build.
    Upgradable,
    /// Installed, but an interrupted commit could be neither finished nor undone.
    Broken,
}

/// A package as `ListPackages` and `info` show it.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    pub kind: String,
    pub state: PackageState,
    pub installed_version: String,
    pub available_version: String,
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    pub repo: String,
    pub verified_by: String,
    pub files: u64,
    /// Why the package is broken (state `broken`), else empty.
    pub problem: String,
    /// File capabilities: path → `setcap` text (of the installed version, else the offered).
    pub capabilities: BTreeMap<String, String>,
    /// `upgrade` leaves it alone unless named.
    pub held: bool,
}

impl Engine {
    /// Check a request's arguments before it becomes a transaction.
    pub fn validate(&self, req: &Request) -> Result<()> {
        match req.action {
            Action::Refresh if !req.names.is_empty() => {
                return Err(Error::InvalidArgs("Refresh takes no package names".into()));
            }
            Action::Rollback if req.options.undo.is_some() && !req.names.is_empty() => {
                return Err(Error::InvalidArgs(
                    "rollback takes package names or a history entry to undo, not both".into(),
                ));
            }
            Action::Rollback if req.options.undo.is_none() && req.names.is_empty() => {
                return Err(Error::InvalidArgs(
                    "rollback needs package names or a history entry to undo".into(),
                ));
            }
            Action::Refresh | Action::Remove | Action::Rollback | Action::ApplyPrepared
                if req.options.offline =>
            {
                return Err(Error::InvalidArgs(format!(
                    "{} cannot be prepared for the next boot: only install and upgrade can",
                    req.action.as_str()
                )));
            }
            _ if req.options.offline && req.options.download_only => {
                return Err(Error::InvalidArgs(
                    "offline and download-only exclude each other".into(),
                ));
            }
            Action::ApplyPrepared if !req.names.is_empty() => {
                return Err(Error::InvalidArgs(
                    "the prepared update takes no package names".into(),
                ));
            }
            Action::Install | Action::Remove if req.names.is_empty() => {
                return Err(Error::InvalidArgs(format!(
                    "{} needs at least one package name",
                    req.action.as_str()
                )));
            }
            _ => {}
        }
        if req.names.len() > MAX_NAMES {
            return Err(Error::InvalidArgs(format!(
                "too many package names ({}; at most {MAX_NAMES})",
                req.names.len()
            )));
        }
        for name in &req.names {
            check_package_name(name).map_err(Error::InvalidArgs)?;
        }
        Ok(())
    }
}
