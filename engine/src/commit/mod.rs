//! Committing a staged package into the live root, and taking an installed one out.
//!
//! A commit is planned first ([`plan`]: read-only; every conflict is found before anything
//! changes), then files bound for other file systems are copied next to their destination
//! ([`prepare`]: a rename only works within one mount), then the journaled steps run
//! ([`apply`]): each replaced path is kept as a backup on its own file system until the package
//! is recorded, so a failed step puts every path back exactly, and a crash is finished or undone
//! at the next start. Files the new version dropped go last ([`cleanup`]), after the database
//! holds the new state.

pub mod apply;
pub mod cleanup;
pub mod committer;
pub mod plan;
pub mod prepare;

use serde::{Deserialize, Serialize};

use crate::db::InstalledPackage;
use crate::manifest::FileRecord;

/// What one journaled step does to one live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Rename the staged file or symlink onto `live`; what stood there is kept at `backup`
    /// (a hard link, so the live path never goes missing) until the package is recorded.
    Place,
    /// Rename a whole staged directory, new to the root, into place.
    MoveTree,
    /// Create the directory `live` (on a file system other than staging's).
    MakeDir,
    /// Move what stands at `live` to `backup` (a type change: the old version's directory or
    /// symlink makes way for the new version's file or directory).
    MoveAside,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub op: Op,
    /// Root-relative canonical path the step changes.
    pub live: String,
    /// Root-relative path of the staged content (Place, MoveTree).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub staged: String,
    /// Root-relative path where what stood at `live` is kept (Place, MoveAside); empty when
    /// nothing stood there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backup: String,
    /// Mode of a directory to create (MakeDir).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: u32,
    /// Inode of the staged content (Place, MoveTree), recorded before the first step: a rename
    /// keeps it, so `live` holding this inode means the step was carried out, whatever became
    /// of the staging since.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub ino: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// A package's commit (or removal) in progress, written durably before the live root changes,
/// bound to its transaction and to the steps and staged files planned for it. Start-up
/// recovery reads it to finish the commit (only from that same, verified staging) or undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// The transaction (its staging areas are named after it).
    pub tx: u64,
    pub action: IntentAction,
    pub phase: Phase,
    /// Install: the new record (canonical paths, the verified manifest). Remove: the record
    /// being removed.
    pub package: InstalledPackage,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Root-relative directories holding this commit's staged files and backups.
    #[serde(default)]
    pub areas: Vec<String>,
    /// Directories the commit creates.
    #[serde(default)]
    pub created: Vec<String>,
    /// Records to remove once the new state is recorded.
    #[serde(default)]
    pub dropped: Vec<FileRecord>,
    /// Live paths whose file system does not keep modes: their records take the mode the disk
    /// shows once placed.
    #[serde(default)]
    pub read_modes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentAction {
    Install,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Copying to other file systems' areas: nothing live changed yet.
    Preparing,
    /// Steps are running: finish them (if the staging is intact) or undo them.
    Placing,
    /// Undoing the steps: go on undoing.
    RollingBack,
    /// The new state is recorded: remove dropped files, then the areas.
    Cleanup,
}

impl Intent {
    pub fn package_name(&self) -> &str {
        &self.package.name
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Directories spk never removes, even when it created them and they are empty: the skeleton
/// of every system, which other software expects to exist.
pub const PROTECTED_DIRS: &[&str] = &[
    "",
    "bin",
    "boot",
    "boot/efi",
    "dev",
    "etc",
    "home",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/include",
    "usr/lib",
    "usr/lib32",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/sbin",
    "usr/share",
    "usr/src",
    "var",
    "var/cache",
    "var/lib",
    "var/log",
    "var/opt",
    "var/spool",
    "var/tmp",
    "var/lib/spk",
    "var/cache/spk",
    "etc/spk",
];

/// Files under `etc/` are the admin's to edit: their changes survive upgrades and removal.
pub fn is_config(path: &str) -> bool {
    path.starts_with("etc/")
}

/// Flush everything written on the file system holding `path`.
pub fn sync_filesystem(path: &std::path::Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::syncfs(&fd)?;
    Ok(())
}
