//! Where spk keeps its files under a target root (DESIGN.md, "Files on the target"). The staging
//! area sits under the root so that a commit is (mostly) a rename on one file system; paths on
//! other file systems go through areas of their own (see `commit::prepare`).

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
            staging: root.join(STAGING),
            state,
            cache: root.join("var/cache/spk"),
        }
    }
}

/// The staging area, relative to the root: `STAGING/<transaction>/<package>/tree` holds a
/// package unpacked but not yet committed.
pub const STAGING: &str = "var/lib/spk/staging";

/// Where the installer and build host mount a SmechOS system under construction.
pub const BUILD_ROOT: &str = "/mnt/smechos";

/// The root to manage when none is given: `/mnt/smechos` when it is a mount point and this
/// host is not SmechOS itself (the build host case), else `/`. The reason is returned so the
/// daemon can say it in its log.
pub fn default_root() -> (PathBuf, Option<String>) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if is_mount_point(&mountinfo, BUILD_ROOT) && !is_smechos(&os_release) {
        let why = format!(
            "{BUILD_ROOT} is a mount point and this host is not SmechOS: managing {BUILD_ROOT} \
             (pass --root / to manage this host)"
        );
        return (PathBuf::from(BUILD_ROOT), Some(why));
    }
    (PathBuf::from("/"), None)
}

/// Whether `path` is a mount point according to /proc/self/mountinfo (field 5).
fn is_mount_point(mountinfo: &str, path: &str) -> bool {
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path))
}

fn is_smechos(os_release: &str) -> bool {
    os_release
        .lines()
        .filter_map(|l| l.strip_prefix("ID="))
        .any(|id| id.trim_matches('"') == "smechos")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_host_detection_reads_mountinfo_and_os_release() {
        let mounts = "36 25 0:32 / /mnt/smechos rw,relatime shared:1 - ext4 /dev/sdb1 rw\n";
        assert!(is_mount_point(mounts, "/mnt/smechos"));
        assert!(!is_mount_point(mounts, "/mnt"));
        assert!(is_smechos("NAME=SmechOS\nID=smechos\n"));
        assert!(is_smechos("ID=\"smechos\"\n"));
        assert!(!is_smechos("ID=debian\n"));
    }
}
