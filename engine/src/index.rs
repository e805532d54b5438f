//! `index.json` (format 1): the list of packages a repository offers, with the size and sha256
//! that every download is checked against. Parsing validates every field, so the rest of the
//! engine can trust names (safe as path components) and digests (64 lowercase hex digits).

use serde::{Deserialize, Serialize};

/// The whole index file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Index {
    pub format: u32,
    pub release: String,
    /// When the release was published (unix seconds). In a signed index it is the rollback
    /// guard: spk refuses a signed index older than the newest one it has already accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    pub packages: Vec<IndexEntry>,
}

/// What the index says about one package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    #[serde(default = "default_kind")]
    pub kind: PackageKind,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub installed_size: u64,
    #[serde(default)]
    pub description: String,
    /// Paths that may keep a setuid/setgid bit (never honoured in `userland` packages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setuid: Vec<String>,
    /// Paths a `userland` package may give to another owner than root (a `system` package may
    /// for any path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// File capabilities: path → the text `setcap` takes (`cap_sys_nice=ep`). The only source
    /// of capabilities: the archive's own extended attributes are never applied.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub capabilities: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    System,
    Userland,
}

fn default_kind() -> PackageKind {
    PackageKind::Userland
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::System => "system",
            PackageKind::Userland => "userland",
        }
    }
}

/// Packages that write the base system rather than user-facing software: their default kind
/// is `system` (for GitHub assets, which carry no kind, and in the publisher tool).
pub const SYSTEM_PACKAGES: &[&str] = &[
    "kernel-modules",
    "firmware",
    "bootloader-grub",
    "base-system",
];

impl PackageKind {
    /// The kind a package has when nothing says otherwise.
    pub fn default_for(name: &str) -> PackageKind {
        if SYSTEM_PACKAGES.contains(&name) {
            PackageKind::System
        } else {
            PackageKind::Userland
        }
    }
}

/// Largest index accepted (a release lists a handful of packages; this is generous).
pub const MAX_INDEX_BYTES: usize = 8 << 20;

impl Index {
    /// Parse and validate; the error says which package and field is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(format!("index is larger than {MAX_INDEX_BYTES} bytes"));
        }
        let index: Index = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if index.format != 1 {
            return Err(format!(
                "unsupported index format {} (this spk reads format 1)",
                index.format
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &index.packages {
            check_package_name(&p.name)?;
            if !seen.insert(p.name.as_str()) {
                return Err(format!("package '{}' is listed twice", p.name));
            }
            if p.version.is_empty()
                || p.version.len() > 128
                || p.version
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(format!("package '{}': invalid version", p.name));
            }
            if !is_sha256_hex(&p.sha256) {
                return Err(format!(
                    "package '{}': sha256 must be 64 lowercase hex digits",
                    p.name
                ));
            }
            if p.file.is_empty()
                || p.file.len() > 255
                || p.file.starts_with('.')
                || p.file
                    .chars()
                    .any(|c| c == '/' || c == '\\' || c.is_control())
            {
                return Err(format!(
                    "package '{}': file '{}' is not a plain file name",
                    p.name, p.file
                ));
            }
            for path in p
                .setuid
                .iter()
                .chain(&p.owners)
                .chain(p.capabilities.keys())
            {
                if crate::entry_path::enclosed_path(path.as_bytes())
                    .ok()
                    .flatten()
                    .is_none()
                {
                    return Err(format!(
                        "package '{}': '{}' is not a relative path inside the root",
                        p.name,
                        path.escape_debug()
                    ));
                }
            }
            for text in p.capabilities.values() {
                if text.len() > 1024 || text.chars().any(char::is_control) {
                    return Err(format!("package '{}': invalid capability text", p.name));
                }
            }
        }
        Ok(index)
    }
}

/// Package names are path components and D-Bus strings: keep them boring.
pub fn check_package_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-._".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid package name '{}': use 1-64 of a-z 0-9 + - . _, starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(name: &str, sha: &str, file: &str) -> String {
        format!(
            r#"{{"format":1,"release":"r","packages":[{{"name":"{name}","version":"1","kind":"system","file":"{file}","sha256":"{sha}","size":1}}]}}"#
        )
    }

    #[test]
    fn accepts_a_good_index() {
        let sha = "a".repeat(64);
        let i = Index::parse(index_with("plasma", &sha, "plasma.tar.xz").as_bytes()).unwrap();
        assert_eq!(i.packages[0].kind, PackageKind::System);
    }

    #[test]
    fn refuses_bad_fields() {
        let sha = "a".repeat(64);
        for (name, sha, file) in [
            ("../x", sha.as_str(), "x.tar.xz"),
            ("Plasma", sha.as_str(), "x.tar.xz"),
            ("plasma", "abc", "x.tar.xz"),
            ("plasma", sha.as_str(), "../x.tar.xz"),
            ("plasma", sha.as_str(), "a/b.tar.xz"),
        ] {
            assert!(
                Index::parse(index_with(name, sha, file).as_bytes()).is_err(),
                "{name} {sha} {file}"
            );
        }
    }

    #[test]
    fn timestamp_is_optional_and_round_trips() {
        let sha = "a".repeat(64);
        let without = Index::parse(index_with("plasma", &sha, "plasma.tar.xz").as_bytes()).unwrap();
        assert_eq!(without.timestamp, None);
        let text = serde_json::to_string(&Index {
            timestamp: Some(1_764_000_000),
            ..without
        })
        .unwrap();
        assert!(text.contains(r#""timestamp":1764000000"#), "{text}");
        assert_eq!(
            Index::parse(text.as_bytes()).unwrap().timestamp,
            Some(1_764_000_000)
        );
    }

    #[test]
    fn refuses_other_formats() {
        let e = Index::parse(br#"{"format":2,"release":"r","packages":[]}"#).unwrap_err();
        assert!(e.contains("format 2"), "{e}");
    }
}
