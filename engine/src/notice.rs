//! Things a transaction did that the admin should know about although nothing failed: a
//! changed configuration file kept beside the new one, a mount point left alone, a repository
//! that could not be refreshed and whose last good index was used. Clients show each one; the
//! history keeps them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// The admin's file was kept; the package's version is `PATH.spknew`.
    Spknew,
    /// A removed package's changed file was kept as `PATH.spksave`.
    Spksave,
    /// The path is a mount point: never replaced; the package's version is `PATH.spknew`.
    MountPoint,
    /// Something could not be cleaned up (left on disk, harmless).
    LeftBehind,
    /// A transaction hook failed, timed out or could not run; nothing was undone.
    Hook,
    /// A held package was upgraded because it was named.
    Held,
    /// A repository's refresh failed; its last good index was used (package: empty, path:
    /// the repository's URL).
    StaleIndex,
}

impl NoticeKind {
    /// The word on the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Spknew => "spknew",
            NoticeKind::Spksave => "spksave",
            NoticeKind::MountPoint => "mount-point",
            NoticeKind::LeftBehind => "left-behind",
            NoticeKind::Hook => "hook",
            NoticeKind::Held => "held",
            NoticeKind::StaleIndex => "stale-index",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub package: String,
    pub kind: NoticeKind,
    /// The path concerned (relative to the root, as the root resolves it).
    pub path: String,
    pub message: String,
}

impl Notice {
    pub fn spknew(package: &str, path: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::Spknew,
            path: path.to_owned(),
            message: format!(
                "{path} was changed locally and kept; the new version is {path}.spknew"
            ),
        }
    }

    pub fn spksave(package: &str, path: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::Spksave,
            path: path.to_owned(),
            message: format!("{path} was changed locally; saved as {path}.spksave"),
        }
    }

    pub fn mount_point(package: &str, path: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::MountPoint,
            path: path.to_owned(),
            message: format!(
                "{path} is a mount point and was not replaced; the new version is {path}.spknew"
            ),
        }
    }

    /// `hook` (a hook's name) went wrong: `what` says how.
    pub fn hook(hook: &str, what: &str) -> Notice {
        Notice {
            package: String::new(),
            kind: NoticeKind::Hook,
            path: hook.to_owned(),
            message: format!("hook {hook}: {what}"),
        }
    }

    pub fn held(package: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::Held,
            path: String::new(),
            message: "is held, and was upgraded because it was named".to_owned(),
        }
    }

    pub fn held_back(package: &str, from: &str, to: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::Held,
            path: String::new(),
            message: format!(
                "held back ({from} -> {to}); `spkctl unhold {package}` releases it, \
                 `spkctl upgrade {package}` upgrades it once"
            ),
        }
    }

    pub fn left_behind(package: &str, path: &str, why: &str) -> Notice {
        Notice {
            package: package.to_owned(),
            kind: NoticeKind::LeftBehind,
            path: path.to_owned(),
            message: format!("{path} could not be removed ({why}); it was left in place"),
        }
    }

    /// Repository `repo` (at `url`) could not be refreshed (`error`); `using` says which of
    /// its indexes was used instead.
    pub fn stale_index(repo: &str, url: &str, error: &str, using: &str) -> Notice {
        Notice {
            package: String::new(),
            kind: NoticeKind::StaleIndex,
            path: url.to_owned(),
            message: format!(
                "repository '{repo}' could not be refreshed ({error}); using its last good \
                 index ({using})"
            ),
        }
    }
}
