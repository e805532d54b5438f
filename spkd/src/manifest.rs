//! What a package put on disk: one record per path, enough to commit it, remove it again, and
//! verify it later (type, mode, content hash).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// Relative to the target root, without a leading `/` or `./`.
    pub path: String,
    #[serde(flatten)]
    pub kind: FileKind,
    /// Permission bits (including setuid/setgid/sticky where allowed).
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FileKind {
    Dir,
    File { size: u64, sha256: String },
    Symlink { target: String },
}

impl FileRecord {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, FileKind::Dir)
    }
}

/// Order records so that every directory comes before what it contains (a parent path is a
/// prefix of its children's, so plain byte order does it).
pub fn sort_for_commit(records: &mut [FileRecord]) {
    records.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
}
