//! `spkctl verify`: compare what is on disk with what the database says each package installed
//! (type, mode, content hash, symlink target). Read-only; reports every difference by path. A
//! configuration file the admin edited is reported as such, not as damage. Directories are
//! checked for being directories only: an existing one keeps the mode it had before spk.
//!
//! Verify is open to every local user and reads as root, so what it reports depends on who
//! asks ([`Detail`]): only root sees hashes, sizes, modes and link targets.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::commit::is_config;
use crate::db::InstalledPackage;
use crate::manifest::FileKind;

/// What is wrong with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Missing,
    /// Content differs.
    Content,
    Mode,
    /// No longer the type the package installed.
    Type,
    /// A symlink points elsewhere.
    Target,
    /// Another owner or group than the package gave it.
    Owner,
    /// Other file capabilities than the signed index gave it (or some it gave none).
    Caps,
    Unreadable,
    /// A configuration file changed locally: expected, not damage.
    Config,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Content => "content",
            ProblemKind::Mode => "mode",
            ProblemKind::Type => "type",
            ProblemKind::Target => "target",
            ProblemKind::Owner => "owner",
            ProblemKind::Caps => "caps",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Config => "config",
        }
    }

    /// Whether this means the installed system is not what the package put there.
    pub fn is_damage(self) -> bool {
        self != ProblemKind::Config
    }
}

/// How much a report may say about what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything: the file's sha256 and size, its mode, a symlink's target (for root).
    Full,
    /// The kind of difference only ("content changed"): the sha256 or the length of a 0600
    /// secret that the caller could not read itself makes a short one guessable offline.
    Redacted,
}

/// One difference between the disk and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub package: String,
    pub path: String,
    pub kind: ProblemKind,
    pub problem: String,
}

/// Check every file of `packages` under `root`, saying as much as `detail` allows.
pub fn check(root: &Path, packages: &[InstalledPackage], detail: Detail) -> Vec<Problem> {
    let mut out = Vec::new();
    for package in packages {
        if let Some(why) = &package.broken {
            out.push(Problem {
                package: package.name.clone(),
                path: String::new(),
                kind: ProblemKind::Type,
                problem: format!("the package is broken: {why}"),
            });
        }
        for record in &package.files {
            let path = root.join(&record.path);
            let problem = match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some((ProblemKind::Missing, "missing".to_owned()))
                }
                Err(e) => Some((ProblemKind::Unreadable, format!("cannot be read: {e}"))),
                Ok(meta) => compare(&path, &meta, &record.kind, record.mode).or_else(|| {
                    // Directories keep the owner they had before spk (see compare).
                    (!record.is_dir() && (meta.uid(), meta.gid()) != (record.uid, record.gid))
                        .then(|| {
                            (
                                ProblemKind::Owner,
                                format!(
                                    "owner {}:{}, expected {}:{}",
                                    meta.uid(),
                                    meta.gid(),
                                    record.uid,
                                    record.gid
                                ),
                            )
                        })
                        .or_else(|| caps_problem(&path, record))
                }),
            };
            if let Some((mut kind, mut problem)) = problem {
                if kind == ProblemKind::Content && is_config(&record.path) {
                    // The same detail, in words that say it is expected.
                    kind = ProblemKind::Config;
                    problem = problem.replacen(
                        "content changed",
                        "configuration file changed locally",
                        1,
                    );
                }
                if detail == Detail::Redacted {
                    problem = redacted(kind, problem);
                }
                out.push(Problem {
                    package: package.name.clone(),
                    path: record.path.clone(),
                    kind,
                    problem,
                });
            }
        }
    }
    out
}

/// A regular file whose capabilities are not those the package's index gave it (none when it
/// gave none: a file that gained some is as much a problem as one that lost them).
fn caps_problem(
    path: &Path,
    record: &crate::manifest::FileRecord,
) -> Option<(ProblemKind, String)> {
    if !matches!(record.kind, FileKind::File { .. }) {
        return None;
    }
    let expected = record
        .caps
        .as_deref()
        .and_then(|t| crate::fcaps::parse(t).ok())
        .filter(|c| !c.is_empty());
    let file = std::fs::File::open(path).ok()?;
    let actual = crate::fcaps::get(&file)
        .ok()
        .flatten()
        .filter(|c| !c.is_empty());
    if expected == actual {
        return None;
    }
    let text =
        |c: &Option<crate::fcaps::FileCaps>| c.as_ref().map_or("none".to_owned(), |c| c.to_text());
    Some((
        ProblemKind::Caps,
        format!(
            "file capabilities {}, expected {}",
            text(&actual),
            text(&expected)
        ),
    ))
}

/// `problem` without what the caller could not see for itself (see [`Detail::Redacted`]).
fn redacted(kind: ProblemKind, problem: String) -> String {
    match kind {
        ProblemKind::Content => "content changed".to_owned(),
        ProblemKind::Config => "configuration file changed locally".to_owned(),
        ProblemKind::Mode => "mode changed".to_owned(),
        ProblemKind::Target => "symlink target changed".to_owned(),
        ProblemKind::Owner => "owner changed".to_owned(),
        ProblemKind::Caps => "file capabilities changed".to_owned(),
        ProblemKind::Missing | ProblemKind::Type | ProblemKind::Unreadable => problem,
    }
}

fn compare(
    path: &Path,
    meta: &std::fs::Metadata,
    kind: &FileKind,
    mode: u32,
) -> Option<(ProblemKind, String)> {
    let ft = meta.file_type();
    let actual_mode = meta.permissions().mode() & 0o7777;
    let mode_problem = || {
        (actual_mode != mode).then(|| {
            (
                ProblemKind::Mode,
                format!("mode {actual_mode:04o}, expected {mode:04o}"),
            )
        })
    };
    let wrong_type = |what: &str| Some((ProblemKind::Type, format!("is no longer {what}")));
    match kind {
        FileKind::Dir if ft.is_dir() => None,
        FileKind::Dir => wrong_type("a directory"),
        FileKind::Symlink { target } if ft.is_symlink() => match std::fs::read_link(path) {
            Ok(t) if t.as_os_str() == target.as_str() => None,
            Ok(t) => Some((
                ProblemKind::Target,
                format!("symlink points to '{}', expected '{target}'", t.display()),
            )),
            Err(e) => Some((ProblemKind::Unreadable, format!("cannot read symlink: {e}"))),
        },
        FileKind::Symlink { .. } => wrong_type("a symlink"),
        FileKind::File { size, sha256 } if ft.is_file() => {
            if meta.size() != *size {
                return Some((
                    ProblemKind::Content,
                    format!("content changed (size {}, expected {size})", meta.size()),
                ));
            }
            match std::fs::File::open(path).and_then(crate::live::hash_reader) {
                Ok((_, h)) if &h == sha256 => mode_problem(),
                Ok((_, h)) => Some((
                    ProblemKind::Content,
                    format!("content changed (sha256 {h}, expected {sha256})"),
                )),
                Err(e) => Some((ProblemKind::Unreadable, format!("cannot be read: {e}"))),
            }
        }
        FileKind::File { .. } => wrong_type("a regular file"),
    }
}
