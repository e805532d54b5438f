//! Where spk keeps its files under a target root (DESIGN.md, "Files on the target"). The staging
//! area sits under the root so that a commit is a rename on one file system.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    /// `var/lib/spk`: the database and its plain-text dump.
    pub state: PathBuf,
    /// `var/lib/spk/staging`: packages unpacked but not yet committed.
    pub staging: PathBuf,
    /// `var/cache/spk`: verified tarballs by sha256.
    pub cache: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        let state = root.join("var/lib/spk");
        Layout {
            root: root.to_owned(),
            staging: state.join("staging"),
            state,
            cache: root.join("var/cache/spk"),
        }
    }

    /// Staging directory of one package (one modifying transaction runs at a time).
    pub fn staging_for(&self, package: &str) -> PathBuf {
        self.staging.join(package)
    }
}
