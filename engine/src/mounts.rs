//! The mounts a target root spans, as `/proc/self/mountinfo` lists them: where each is mounted
//! and what file system it is, for messages ("/boot/efi (vfat)") and free-space checks. Mount
//! ids are the ones `statx(STATX_MNT_ID)` reports, so a path's mount is found by its id.

use std::collections::HashMap;
use std::path::Path;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute mount point as spkd sees it.
    pub point: String,
    /// File system type (`ext4`, `vfat`, `tmpfs`, `fuse.fusefat`…).
    pub fstype: String,
}

/// Mounts by id.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    mounts: HashMap<u64, Mount>,
}

impl MountTable {
    /// The mounts of spkd's own mount namespace (empty if mountinfo cannot be read).
    pub fn read() -> MountTable {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        MountTable::parse(&text)
    }

    pub fn parse(text: &str) -> MountTable {
        let mut mounts = HashMap::new();
        for line in text.lines() {
            // id parent major:minor root point options [optional…] - fstype source super
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(id), Some(point), Some(fstype)) = (
                fields.first().and_then(|f| f.parse::<u64>().ok()),
                fields.get(4),
                fields.get(sep + 1),
            ) else {
                continue;
            };
            mounts.insert(
                id,
                Mount {
                    point: unescape(point),
                    fstype: (*fstype).to_owned(),
                },
            );
        }
        MountTable { mounts }
    }

    pub fn get(&self, id: u64) -> Option<&Mount> {
        self.mounts.get(&id)
    }

    /// "MOUNT POINT (FSTYPE)" for messages, the mount point as the target `root` sees it
    /// (`/boot/efi`; `/` for the mount holding the root itself), or, for an unknown mount, the
    /// directory `fallback`.
    pub fn describe(&self, id: u64, root: &Path, fallback: &Path) -> String {
        let Some(m) = self.get(id) else {
            return fallback.display().to_string();
        };
        let point = Path::new(&m.point);
        let seen = match point.strip_prefix(root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) if root.starts_with(point) => "/".to_owned(),
            Err(_) => m.point.clone(),
        };
        format!("{seen} ({})", m.fstype)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes free for ordinary use on the file system holding `path` (root could also use the
/// reserved blocks, but spk leaves those to the rest of the system).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_types_and_escapes() {
        let table = MountTable::parse(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             66 46 0:40 / /mnt/my\\040efi rw,nosuid shared:5 - fuse.fusefat fusefat rw\n\
             garbage\n",
        );
        assert_eq!(table.get(22).unwrap().point, "/proc");
        let efi = table.get(66).unwrap();
        assert_eq!(efi.point, "/mnt/my efi");
        assert_eq!(efi.fstype, "fuse.fusefat");
        let root = Path::new("/mnt");
        assert_eq!(
            table.describe(66, root, Path::new("x")),
            "/my efi (fuse.fusefat)"
        );
        assert_eq!(
            table.describe(22, Path::new("/"), Path::new("x")),
            "/proc (proc)"
        );
        assert_eq!(
            table.describe(22, Path::new("/proc/x"), Path::new("x")),
            "/ (proc)"
        );
        assert_eq!(
            table.describe(66, Path::new("/srv"), Path::new("x")),
            "/mnt/my efi (fuse.fusefat)"
        );
        assert_eq!(table.describe(7, root, Path::new("/x")), "/x");
    }
}
