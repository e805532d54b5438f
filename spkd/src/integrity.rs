//! `spkctl verify`: compare what is on disk with what the database says each package installed
//! (type, mode, content hash, symlink target). Read-only; reports every difference by path.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::db::InstalledPackage;
use crate::manifest::FileKind;

/// One difference between the disk and the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub package: String,
    pub path: String,
    pub problem: String,
}

/// Check every file of `packages` under `root`.
pub fn check(root: &Path, packages: &[InstalledPackage]) -> Vec<Problem> {
    let mut out = Vec::new();
    for package in packages {
        for record in &package.files {
            let path = root.join(&record.path);
            let problem = match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_owned()),
                Err(e) => Some(format!("cannot be read: {e}")),
                Ok(meta) => compare(&path, &meta, &record.kind, record.mode),
            };
            if let Some(problem) = problem {
                out.push(Problem {
                    package: package.name.clone(),
                    path: record.path.clone(),
                    problem,
                });
            }
        }
    }
    out
}

fn compare(path: &Path, meta: &std::fs::Metadata, kind: &FileKind, mode: u32) -> Option<String> {
    let ft = meta.file_type();
    let actual_mode = meta.permissions().mode() & 0o7777;
    let mode_problem =
        || (actual_mode != mode).then(|| format!("mode {actual_mode:04o}, expected {mode:04o}"));
    match kind {
        FileKind::Dir if ft.is_dir() => mode_problem(),
        FileKind::Dir => Some("is no longer a directory".into()),
        FileKind::Symlink { target } if ft.is_symlink() => match std::fs::read_link(path) {
            Ok(t) if t.as_os_str() == target.as_str() => None,
            Ok(t) => Some(format!(
                "symlink points to '{}', expected '{target}'",
                t.display()
            )),
            Err(e) => Some(format!("cannot read symlink: {e}")),
        },
        FileKind::Symlink { .. } => Some("is no longer a symlink".into()),
        FileKind::File { size, sha256 } if ft.is_file() => {
            if meta.size() != *size {
                return Some(format!(
                    "content changed (size {}, expected {size})",
                    meta.size()
                ));
            }
            match hash_file(path) {
                Ok(h) if &h == sha256 => mode_problem(),
                Ok(h) => Some(format!("content changed (sha256 {h}, expected {sha256})")),
                Err(e) => Some(format!("cannot be read: {e}")),
            }
        }
        FileKind::File { .. } => Some("is no longer a regular file".into()),
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
