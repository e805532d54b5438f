//! Snapshots of a target root, for "nothing changed" and "nothing was rewritten" assertions.
//!
//! A [`Snapshot`] records every entry below the root with its type, permission bits, content
//! hash or link target, inode and mtime. spkd's own state (`var/lib/spk`, `var/cache/spk`,
//! `etc/spk`) is left out, and so are the directories that merely lead to it (`var`, `var/lib`,
//! ...), whose presence depends on when spkd created its state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::repo::sha256_hex;

/// Paths (relative to the root) that belong to spkd, not to packages.
pub const EXCLUDED: &[&str] = &["var/lib/spk", "var/cache/spk", "etc/spk"];

/// What a path is and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { sha256: String, size: u64 },
    Dir,
    Symlink { target: String },
    Other,
}

/// One recorded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    pub inode: u64,
    pub mtime_ns: i128,
    pub nlink: u64,
}

/// The state of a root, keyed by relative path (`usr/bin/plasma`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, Node>,
}

impl Snapshot {
    /// Record everything below `root` except [`EXCLUDED`].
    pub fn take(root: &Path) -> Snapshot {
        let mut nodes = BTreeMap::new();
        walk(root, "", &mut nodes);
        Snapshot { nodes }
    }

    /// Lines describing how `after` differs from `self` in content, type and mode.
    pub fn content_diff(&self, after: &Snapshot) -> Vec<String> {
        self.diff(after, false)
    }

    /// Like [`Snapshot::content_diff`], also reporting files and symlinks that were rewritten
    /// (new inode or mtime) and directories that were replaced (new inode).
    pub fn identity_diff(&self, after: &Snapshot) -> Vec<String> {
        self.diff(after, true)
    }

    fn diff(&self, after: &Snapshot, identity: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (path, old) in &self.nodes {
            match after.nodes.get(path) {
                None => out.push(format!("- {path} ({})", describe(old))),
                Some(new) => {
                    if old.kind != new.kind || old.mode != new.mode {
                        out.push(format!("~ {path}: {} -> {}", describe(old), describe(new)));
                    } else if identity {
                        let rewritten = old.inode != new.inode
                            || (old.kind != Kind::Dir && old.mtime_ns != new.mtime_ns);
                        if rewritten {
                            out.push(format!(
                                "~ {path}: rewritten (inode {} -> {}, mtime {} -> {})",
                                old.inode, new.inode, old.mtime_ns, new.mtime_ns
                            ));
                        }
                    }
                }
            }
        }
        for (path, new) in &after.nodes {
            if !self.nodes.contains_key(path) {
                out.push(format!("+ {path} ({})", describe(new)));
            }
        }
        out
    }

    /// Panic with a readable diff unless `after` has the same content, types and modes.
    #[track_caller]
    pub fn assert_same_content(&self, after: &Snapshot) {
        let diff = self.content_diff(after);
        assert!(diff.is_empty(), "the root changed:\n{}", diff.join("\n"));
    }

    /// Panic with a readable diff unless nothing in `after` was changed or rewritten.
    #[track_caller]
    pub fn assert_untouched(&self, after: &Snapshot) {
        let diff = self.identity_diff(after);
        assert!(
            diff.is_empty(),
            "the root was modified:\n{}",
            diff.join("\n")
        );
    }

    /// All recorded paths, one per line (for failure messages).
    pub fn listing(&self) -> String {
        let mut s = String::new();
        for (path, node) in &self.nodes {
            let _ = writeln!(s, "{path} ({})", describe(node));
        }
        s
    }
}

fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::File { sha256, size } => {
            format!(
                "file {:o}, {size} bytes, sha256 {}",
                node.mode,
                &sha256[..12]
            )
        }
        Kind::Dir => format!("dir {:o}", node.mode),
        Kind::Symlink { target } => format!("symlink -> {target}"),
        Kind::Other => format!("special {:o}", node.mode),
    }
}

fn walk(root: &Path, rel: &str, nodes: &mut BTreeMap<String, Node>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if EXCLUDED.iter().any(|e| *e == path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: std::fs::read_link(entry.path())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }
        } else if ft.is_file() {
            let content = std::fs::read(entry.path()).unwrap_or_default();
            Kind::File {
                sha256: sha256_hex(&content),
                size: meta.len(),
            }
        } else {
            Kind::Other
        };
        let leads_to_excluded =
            ft.is_dir() && EXCLUDED.iter().any(|e| e.starts_with(&format!("{path}/")));
        if !leads_to_excluded {
            nodes.insert(
                path.clone(),
                Node {
                    kind: kind.clone(),
                    mode: meta.mode() & 0o7777,
                    inode: meta.ino(),
                    mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
                    nlink: meta.nlink(),
                },
            );
        }
        if kind == Kind::Dir {
            walk(root, &path, nodes);
        }
    }
}
