//! What a package put on disk: one record per path, enough to commit it, remove it again, and
//! verify it later (type, mode, content hash, owner, file capabilities), and the modification
//! time the archive gave it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// Relative to the target root, without a leading `/` or `./`.
    pub path: String,
    #[serde(flatten)]
    pub kind: FileKind,
    /// Permission bits (including setuid/setgid/sticky where allowed).
    pub mode: u32,
    /// Modification time from the archive: seconds since the epoch (0: the archive had none).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub mtime: i64,
    /// Nanoseconds of `mtime` (from a pax `mtime` record).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_ns: u32,
    /// Owner and group as resolved in the target root (0: root).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    /// File capabilities as `setcap` text; only the signed index gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FileKind {
    Dir,
    File { size: u64, sha256: String },
    Symlink { target: String },
}

impl FileRecord {
    /// A record with no time, owned by root, without capabilities.
    pub fn new(path: String, kind: FileKind, mode: u32) -> FileRecord {
        FileRecord {
            path,
            kind,
            mode,
            mtime: 0,
            mtime_ns: 0,
            uid: 0,
            gid: 0,
            caps: None,
        }
    }

    /// The same record at another path.
    pub fn at(&self, path: String) -> FileRecord {
        FileRecord {
            path,
            ..self.clone()
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, FileKind::Dir)
    }
}

/// Order records so that every directory comes before what it contains (a parent path is a
/// prefix of its children's, so plain byte order does it).
pub fn sort_for_commit(records: &mut [FileRecord]) {
    records.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
}
