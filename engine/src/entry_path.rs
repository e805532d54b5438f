//! Validation of archive entry names and link targets: the one place that decides whether a path
//! from an untrusted tarball may exist under the target root.

use std::path::{Component, Path, PathBuf};

/// Longest accepted path (bytes), like Linux's PATH_MAX.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path component (bytes), like NAME_MAX.
pub const MAX_NAME_BYTES: usize = 255;

/// Turn a raw entry name into a normal relative path (leading `./` removed), or say why not.
/// Returns `Ok(None)` for the archive's root entry (`.` or `./`), which names the root itself.
pub fn enclosed_path(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    if raw.is_empty() {
        return Err("empty name".into());
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(format!("name longer than {MAX_PATH_BYTES} bytes"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_owned())?;
    if text.chars().any(|c| c.is_control()) {
        return Err("name contains a NUL or control character".into());
    }
    if text.starts_with('/') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => {
                if part.len() > MAX_NAME_BYTES {
                    return Err(format!("path component longer than {MAX_NAME_BYTES} bytes"));
                }
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Check a symlink target: it may be absolute (resolved inside the target root when used) or
/// relative, but a relative target must not climb above the root from where the link sits.
pub fn check_symlink_target(link: &Path, target: &[u8]) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty symlink target".into());
    }
    if target.len() > MAX_PATH_BYTES {
        return Err(format!("symlink target longer than {MAX_PATH_BYTES} bytes"));
    }
    let text = std::str::from_utf8(target).map_err(|_| "symlink target is not UTF-8".to_owned())?;
    if text.chars().any(|c| c.is_control()) {
        return Err("symlink target contains a NUL or control character".into());
    }
    if text.starts_with('/') {
        return Ok(());
    }
    // Depth of the directory holding the link, then walk the target lexically.
    let mut depth = link.components().count() as i64 - 1;
    for component in Path::new(text).components() {
        match component {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("symlink target '{text}' points outside the root"));
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses() {
        assert_eq!(
            enclosed_path(b"./usr/bin/x").unwrap(),
            Some(PathBuf::from("usr/bin/x"))
        );
        assert_eq!(enclosed_path(b"./").unwrap(), None);
        for bad in [
            &b"/etc/passwd"[..],
            b"usr/../../etc",
            b"..",
            b"a\nb",
            b"a\0b",
            b"",
        ] {
            assert!(enclosed_path(bad).is_err(), "{bad:?}");
        }
        assert!(enclosed_path("a/".repeat(3000).as_bytes()).is_err());
        assert!(enclosed_path("x".repeat(300).as_bytes()).is_err());
    }

    #[test]
    fn symlink_targets() {
        let link = Path::new("usr/lib/libfoo.so");
        assert!(check_symlink_target(link, b"libfoo.so.1").is_ok());
        assert!(check_symlink_target(link, b"../../etc/foo").is_ok());
        assert!(check_symlink_target(link, b"/usr/lib/libfoo.so.1").is_ok());
        assert!(check_symlink_target(link, b"../../../etc/shadow").is_err());
        assert!(check_symlink_target(Path::new("x"), b"../y").is_err());
    }
}
