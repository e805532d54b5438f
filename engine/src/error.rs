//! The engine's one error type. Every variant says what failed and carries the package, path or
//! URL a person needs to act on it; [`Error::kind`] sorts them into the few classes that the
//! D-Bus layer turns into `xyz.smech.Spk1.Error.*` names.

use std::path::PathBuf;

/// The class of a failure, as clients see it (one D-Bus error name per class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    UnknownPackage,
    NotAuthorized,
    Network,
    Verification,
    Conflict,
    Cancelled,
    Io,
    InvalidArgs,
    NotAvailable,
    /// The caller has as many transactions queued or running as it may.
    Busy,
}

impl ErrorKind {
    /// The suffix of the D-Bus error name, e.g. `Verification`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::UnknownPackage => "UnknownPackage",
            ErrorKind::NotAuthorized => "NotAuthorized",
            ErrorKind::Network => "Network",
            ErrorKind::Verification => "Verification",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Cancelled => "Cancelled",
            ErrorKind::Io => "Io",
            ErrorKind::InvalidArgs => "InvalidArgs",
            ErrorKind::NotAvailable => "NotAvailable",
            ErrorKind::Busy => "Busy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown package '{0}': no configured repository offers it")]
    UnknownPackage(String),

    #[error(
        "base-system is known to be broken upstream and is not offered by the current release; \
         spk refuses it until a release lists it again"
    )]
    BrokenUpstream,

    #[error("package '{0}' is not installed")]
    NotInstalled(String),

    #[error("{0}")]
    InvalidArgs(String),

    #[error("configuration {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{package}: download of {url} failed: {reason}")]
    Download {
        package: String,
        url: String,
        reason: String,
    },

    #[error("fetching {url} failed: {reason}")]
    Index { url: String, reason: String },

    #[error("{url}: {reason}")]
    BadIndex { url: String, reason: String },

    #[error(
        "repository '{repo}': no complete answer from {url} within refresh_timeout ({secs} s); \
         gave up (the server is too slow or stalls; raise refresh_timeout in spk.toml if it is \
         only slow)"
    )]
    RefreshTimeout {
        repo: String,
        url: String,
        secs: u64,
    },

    // The next step: a stale index is the common cause (refresh fixes it); a mirror serving
    // another file is the rare one, and only its maintainer can fix it.
    #[error(
        "{package}: sha256 mismatch for {url}: expected {expected}, got {actual}; the download \
         was discarded and nothing changed. Run `spkctl check` and try again; if it fails again, \
         the server holds a file its index does not describe: tell the repository's maintainer"
    )]
    HashMismatch {
        package: String,
        url: String,
        expected: String,
        actual: String,
    },

    #[error(
        "{package}: size mismatch for {url}: expected {expected} bytes, got {actual}; the \
         download was discarded and nothing changed. Run `spkctl check` and try again; if it \
         fails again, the server holds a file its index does not describe: tell the \
         repository's maintainer"
    )]
    SizeMismatch {
        package: String,
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error("{package}: refused archive entry '{entry}': {reason}")]
    UnsafeEntry {
        package: String,
        entry: String,
        reason: String,
    },

    #[error("{package}: corrupt archive: {reason}")]
    CorruptArchive { package: String, reason: String },

    #[error(
        "{package}: {path} belongs to {what} '{name}', which the target root does not have \
         (nor does a sysusers.d file of this transaction create it)"
    )]
    UnknownOwner {
        package: String,
        path: String,
        what: String,
        name: String,
    },

    #[error(
        "{package} {version}: its cached tarball {path} is damaged, and no repository offers \
         this version to download again: {reason}"
    )]
    DamagedCache {
        package: String,
        version: String,
        path: String,
        reason: String,
    },

    /// A rollback target that the cache no longer holds.
    #[error("{0}")]
    NotKept(String),

    /// A prepared update no longer fits the installed packages (discarded).
    #[error("{0}")]
    Stale(String),

    #[error("hook {hook} stopped the transaction before anything changed: {reason}")]
    HookAborted { hook: String, reason: String },

    #[error("{package}: {path} is owned by package {owner}")]
    FileConflict {
        package: String,
        path: String,
        owner: String,
    },

    #[error(
        "{package}: files on disk that no package owns would be overwritten: {} \
         (install with --adopt to take them over)",
        list_paths(paths)
    )]
    Unowned { package: String, paths: Vec<String> },

    #[error("{package}: could not place {path}: {reason}; {}", if *restored {
        "the previous version was restored"
    } else {
        "it could not be put back either: the package is marked broken, reinstall it"
    })]
    Commit {
        package: String,
        path: String,
        reason: String,
        restored: bool,
    },

    #[error(
        "not enough free space on {place} for {what}: needs {}, {} free ({} short)",
        human_bytes(*needed),
        human_bytes(*free),
        human_bytes(needed.saturating_sub(*free))
    )]
    NoSpace {
        place: String,
        what: String,
        needed: u64,
        free: u64,
    },

    #[error("{package}: cannot place {path}: {reason}")]
    PathConflict {
        package: String,
        path: String,
        reason: String,
    },

    #[error("{0}")]
    NotAuthorized(String),

    #[error("transaction cancelled")]
    Cancelled,

    #[error(
        "uid {uid} already has {limit} transactions queued or running; wait for them to finish"
    )]
    TooManyTransactions { uid: u32, limit: usize },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("package database: {0}")]
    Database(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownPackage(_) | Error::NotInstalled(_) => ErrorKind::UnknownPackage,
            Error::BrokenUpstream | Error::NotKept(_) | Error::Stale(_) => ErrorKind::NotAvailable,
            Error::InvalidArgs(_) | Error::Config { .. } => ErrorKind::InvalidArgs,
            Error::Download { .. } | Error::Index { .. } | Error::RefreshTimeout { .. } => {
                ErrorKind::Network
            }
            Error::BadIndex { .. }
            | Error::HashMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::UnsafeEntry { .. }
            | Error::CorruptArchive { .. }
            | Error::DamagedCache { .. } => ErrorKind::Verification,
            Error::FileConflict { .. }
            | Error::PathConflict { .. }
            | Error::Unowned { .. }
            | Error::UnknownOwner { .. }
            | Error::HookAborted { .. } => ErrorKind::Conflict,
            Error::Commit { .. } | Error::NoSpace { .. } => ErrorKind::Io,
            Error::NotAuthorized(_) => ErrorKind::NotAuthorized,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::TooManyTransactions { .. } => ErrorKind::Busy,
            Error::Io { .. } | Error::Database(_) => ErrorKind::Io,
        }
    }

    /// The message for clients, logs and the history: at most [`MAX_MESSAGE`] bytes, as parts
    /// of it (entry names, server replies, URLs) come from archives and servers.
    pub fn message(&self) -> String {
        bounded(self.to_string())
    }

    /// Wrap an I/O error with what was being done (and to which path).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Longest message spkd passes on (D-Bus errors, `ErrorMessage`, history, log lines).
pub const MAX_MESSAGE: usize = 1024;

/// `text` cut to [`MAX_MESSAGE`] bytes (on a character boundary), marked with "…" when cut.
pub fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Paths for a message: all of them up to 20, then how many more.
fn list_paths(paths: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = paths
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        text.push_str(&format!(", … and {} more", paths.len() - SHOWN));
    }
    text
}

/// `12.3 MiB`, `512 B`: sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Database(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Database(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
