//! What a staged package gets beyond its content, before it is committed: the owners its
//! archive names, resolved in the *target* root's `etc/passwd` and `etc/group` (never the
//! host's: on a build host the same name may have another number), and the file capabilities
//! its signed index lists (the archive's own extended attributes are never applied). Both
//! survive the renames of the commit.
//!
//! Order matters: a `chown` clears setuid/setgid bits and capabilities, so the mode is set
//! again after it, and capabilities last.

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Error, Result};
use crate::fcaps;
use crate::index::IndexEntry;
use crate::live::Tree;
use crate::manifest::{FileKind, FileRecord};
use crate::sysusers::Accounts;
use crate::unpack::Owner;

/// Give the staged files of `package` (their records in staging order, as unpacked) their
/// owners and capabilities, recording both in the records.
pub fn apply(
    tree: &mut Tree,
    package: &IndexEntry,
    records: &mut [FileRecord],
    owners: &[Owner],
    accounts: &Accounts,
) -> Result<()> {
    let name = &package.name;
    for owner in owners {
        let Some(record) = records.get_mut(owner.record) else {
            continue;
        };
        let uid = resolve(
            name,
            &record.path,
            "user",
            owner.user.as_deref(),
            owner.uid,
            |n| accounts.uid_of(n),
        )?;
        let gid = resolve(
            name,
            &record.path,
            "group",
            owner.group.as_deref(),
            owner.gid,
            |n| accounts.gid_of(n),
        )?;
        let io = |e: rustix::io::Errno| {
            Error::io(
                format!("{name}: giving {} to {uid}:{gid}", record.path),
                e.into(),
            )
        };
        let (dir, last) = tree.at(&record.path).map_err(io)?;
        rustix::fs::chownat(
            dir,
            last,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io)?;
        if !matches!(record.kind, FileKind::Symlink { .. }) && record.mode & 0o6000 != 0 {
            // The chown cleared them.
            let fd = rustix::fs::openat(
                dir,
                last,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(record.mode)).map_err(io)?;
        }
        record.uid = uid;
        record.gid = gid;
    }
    for (path, text) in &package.capabilities {
        let path = path.trim_start_matches("./").trim_end_matches('/');
        let invalid = |why: String| Error::UnsafeEntry {
            package: name.clone(),
            entry: path.to_owned(),
            reason: why,
        };
        let caps = fcaps::parse(text)
            .map_err(|e| invalid(format!("the index gives it invalid capabilities: {e}")))?;
        let Some(record) = records.iter_mut().find(|r| r.path == path) else {
            return Err(invalid(
                "the index gives it capabilities, but the package has no such file".into(),
            ));
        };
        if !matches!(record.kind, FileKind::File { .. }) {
            return Err(invalid(
                "the index gives it capabilities, but it is not a regular file".into(),
            ));
        }
        let file = tree.open_file(path).map_err(|e| {
            Error::io(
                format!("{name}: opening {path} to set its capabilities"),
                e.into(),
            )
        })?;
        fcaps::set(&file, &caps)
            .map_err(|e| Error::io(format!("{name}: setting the capabilities of {path}"), e))?;
        record.caps = (!caps.is_empty()).then(|| caps.to_text());
    }
    Ok(())
}

/// The number of the owner named `name` (or, when the archive has none, `id`): `root` is 0 in
/// every root, others must exist in the target.
fn resolve(
    package: &str,
    path: &str,
    what: &str,
    name: Option<&str>,
    id: u64,
    lookup: impl Fn(&str) -> Option<u32>,
) -> Result<u32> {
    match name {
        Some("root") => Ok(lookup("root").unwrap_or(0)),
        Some(n) => lookup(n).ok_or_else(|| Error::UnknownOwner {
            package: package.to_owned(),
            path: path.to_owned(),
            what: what.to_owned(),
            name: n.to_owned(),
        }),
        None => u32::try_from(id).map_err(|_| Error::UnsafeEntry {
            package: package.to_owned(),
            entry: path.to_owned(),
            reason: format!("{what} id {id} is out of range"),
        }),
    }
}
