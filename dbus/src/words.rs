//! The words of the wire: every string-valued property, signal argument and row field that has
//! a fixed set of values is an enum here, spelled once (`as_str`), sent as a D-Bus string (`s`).
//! A word a client does not know fails to decode rather than passing as some default.

use std::fmt;

use zbus::zvariant::{self, OwnedValue, Signature, Type, Value};

/// A string that is none of the words of an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// The enum, e.g. `State`.
    pub of: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a {} word",
            self.word.escape_debug(),
            self.of
        )
    }
}

impl std::error::Error for UnknownWord {}

/// An enum whose variants travel as fixed strings: `as_str`/`FromStr`/`Display`, serde as a
/// string, D-Bus type `s`, and conversions from and to `Value`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $( $word => Ok($name::$variant), )+
                    _ => Err(UnknownWord { of: stringify!($name), word: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <String as serde::Deserialize>::deserialize(d)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Type for $name {
            const SIGNATURE: &'static Signature = &Signature::Str;
        }

        impl<'a> From<$name> for Value<'a> {
            fn from(v: $name) -> Value<'a> {
                Value::from(v.as_str())
            }
        }

        impl TryFrom<Value<'_>> for $name {
            type Error = zvariant::Error;

            fn try_from(v: Value<'_>) -> Result<Self, zvariant::Error> {
                match v {
                    Value::Str(s) => s.as_str().parse().map_err(|_| zvariant::Error::IncorrectType),
                    _ => Err(zvariant::Error::IncorrectType),
                }
            }
        }

        impl TryFrom<&Value<'_>> for $name {
            type Error = zvariant::Error;

            fn try_from(v: &Value<'_>) -> Result<Self, zvariant::Error> {
                match v {
                    Value::Str(s) => s.as_str().parse().map_err(|_| zvariant::Error::IncorrectType),
                    _ => Err(zvariant::Error::IncorrectType),
                }
            }
        }

        impl TryFrom<OwnedValue> for $name {
            type Error = zvariant::Error;

            fn try_from(v: OwnedValue) -> Result<Self, zvariant::Error> {
                Self::try_from(&*v)
            }
        }
    };
}

wire_enum! {
    /// A transaction's `State` (and the `state` of `Finished` and of history rows, which are
    /// one of the final three).
    pub enum State {
        Queued = "queued",
        Resolving = "resolving",
        Downloading = "downloading",
        Installing = "installing",
        Finished = "finished",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl State {
    /// Whether the transaction is over.
    pub fn is_final(self) -> bool {
        matches!(self, State::Finished | State::Failed | State::Cancelled)
    }
}

wire_enum! {
    /// What a transaction does: its `Kind`, a history row's `kind`, `Plan`'s `kind` argument.
    pub enum Kind {
        Refresh = "refresh",
        Install = "install",
        Upgrade = "upgrade",
        Remove = "remove",
        /// Back to an earlier build from the cache (named packages, or option `undo`).
        Rollback = "rollback",
        /// An update prepared with option `offline`, installed at boot (history rows only).
        OfflineUpdate = "offline-update",
    }
}

wire_enum! {
    /// What one package is going through: the `stage` argument of `Progress`. An install goes
    /// `waiting → downloading | cached → unpacking → unpacked → installing → done` (download
    /// only: `waiting → downloading | cached → done`), a removal `waiting → removing → done`.
    /// `done`/`total` are the tarball's bytes while they stream (`downloading`, `cached`), else
    /// a step count (0 or 1 of 1) or the bytes already streamed.
    pub enum Activity {
        /// Its bytes come from the network.
        Downloading = "downloading",
        Installing = "installing",
        Removing = "removing",
        /// Planned; its turn has not come yet.
        Waiting = "waiting",
        /// Its bytes come from the download cache: nothing of it is downloaded.
        Cached = "cached",
        /// Every byte is in; the last of them are being unpacked.
        Unpacking = "unpacking",
        /// Verified and unpacked into staging; its commit comes next.
        Unpacked = "unpacked",
        /// Committed, removed, or (download only) kept in the cache.
        Done = "done",
    }
}

impl Activity {
    /// Whether the package's tarball bytes are moving (`done` of `total` bytes).
    pub fn is_streaming(self) -> bool {
        matches!(self, Activity::Downloading | Activity::Cached)
    }
}

wire_enum! {
    /// A package's `state` in `ListPackages`.
    pub enum PackageState {
        Available = "available",
        Installed = "installed",
        /// Installed, and a repository offers another build.
        Upgradable = "upgradable",
        /// An interrupted commit could be neither finished nor undone (see `problem`).
        Broken = "broken",
    }
}

wire_enum! {
    /// What `Plan` says will happen to one package.
    pub enum ChangeAction {
        Install = "install",
        Upgrade = "upgrade",
        Reinstall = "reinstall",
        Remove = "remove",
    }
}

wire_enum! {
    /// The `kind` of a `Notice`.
    pub enum NoticeKind {
        /// A changed configuration file was kept; the package's version is `PATH.spknew`.
        Spknew = "spknew",
        /// A removed package's changed file was kept as `PATH.spksave`.
        Spksave = "spksave",
        /// `PATH` is a mount point, never replaced; the new version is `PATH.spknew`.
        MountPoint = "mount-point",
        /// Something could not be cleaned up (left on disk, harmless).
        LeftBehind = "left-behind",
        /// A repository's refresh failed and its last good index was used (package empty,
        /// path the repository's URL).
        StaleIndex = "stale-index",
        /// A transaction hook failed, timed out or could not run (path: its name); nothing
        /// was undone.
        Hook = "hook",
        /// A held package was upgraded because it was named.
        Held = "held",
    }
}

wire_enum! {
    /// The `state` of a `Hook` signal.
    pub enum HookState {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Not run: the target cannot run it, or its tool is missing.
        Skipped = "skipped",
        /// Killed after `hook_timeout`.
        TimedOut = "timed-out",
    }
}

wire_enum! {
    /// The `kind` of a `Verify` row: what differs between the disk and the manifest.
    pub enum ProblemKind {
        Missing = "missing",
        Content = "content",
        Mode = "mode",
        Type = "type",
        Target = "target",
        Owner = "owner",
        Caps = "caps",
        Unreadable = "unreadable",
        /// A configuration file changed locally: kept on purpose, not damage.
        Config = "config",
    }
}

impl ProblemKind {
    /// Whether this means the installed system is not what the package put there.
    pub fn is_damage(self) -> bool {
        self != ProblemKind::Config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_its_value() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(*s));
            assert_eq!(State::try_from(Value::from(*s)), Ok(*s));
        }
        for n in NoticeKind::ALL {
            assert_eq!(n.as_str().parse::<NoticeKind>(), Ok(*n));
        }
        assert!("Finished".parse::<State>().is_err());
        assert_eq!(
            State::try_from(Value::from(3u32)),
            Err(zvariant::Error::IncorrectType)
        );
    }
}
