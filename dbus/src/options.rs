//! The `a{sv}` options of the Manager's methods: every option but `undo` (a history id, `t`) is
//! a boolean, sent only when true; spkd refuses an option it does not know, or one of the wrong
//! type, naming it.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use zbus::zvariant::{OwnedValue, Signature, Type, Value};

/// Options of `Refresh`, `Install`, `Upgrade`, `Remove` and `Plan`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeOptions {
    /// Install again what is installed already.
    pub reinstall: bool,
    /// Fetch into the cache only.
    pub download_only: bool,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Take over files other packages own (and files of none, as `adopt`).
    pub force: bool,
    /// Take over files on disk that no package owns.
    pub adopt: bool,
    /// `Install`/`Upgrade`: download, verify and unpack now; install at the next boot.
    pub offline: bool,
    /// `Rollback` only: undo the history entry with this id (names then empty).
    pub undo: Option<u64>,
}

impl ChangeOptions {
    const UNDO: &'static str = "undo";

    /// Each option with its key (the one place the keys are spelled).
    fn slots(&mut self) -> [(&'static str, &mut bool); 6] {
        [
            ("reinstall", &mut self.reinstall),
            ("download-only", &mut self.download_only),
            ("dry-run", &mut self.dry_run),
            ("force", &mut self.force),
            ("adopt", &mut self.adopt),
            ("offline", &mut self.offline),
        ]
    }

    fn values(&self) -> [(&'static str, bool); 6] {
        let mut copy = *self;
        copy.slots().map(|(key, value)| (key, *value))
    }

    /// Read the options a caller sent; the error is the message for `InvalidArgs`.
    pub fn from_dict(dict: &HashMap<String, OwnedValue>) -> Result<ChangeOptions, String> {
        let known = ChangeOptions::default().values().map(|(k, _)| k).join(", ");
        let known = format!("{known}, {}", Self::UNDO);
        let mut out = ChangeOptions::default();
        for (key, value) in dict {
            if key == Self::UNDO {
                out.undo = Some(match &**value {
                    Value::U64(id) => *id,
                    Value::U32(id) => u64::from(*id),
                    v => {
                        return Err(format!(
                            "option 'undo' must be a history id (t), not '{}'",
                            v.value_signature()
                        ));
                    }
                });
                continue;
            }
            let mut slots = out.slots();
            let Some((_, slot)) = slots.iter_mut().find(|(k, _)| k == key) else {
                return Err(format!(
                    "unknown option '{}' (known: {known})",
                    key.escape_debug()
                ));
            };
            **slot = match &**value {
                Value::Bool(b) => *b,
                v => {
                    return Err(format!(
                        "option '{key}' must be a boolean, not '{}'",
                        v.value_signature()
                    ));
                }
            };
        }
        Ok(out)
    }
}

/// Options of `Clean`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanOptions {
    /// Drop the installed versions' tarballs too.
    pub all: bool,
}

impl CleanOptions {
    const ALL: &'static str = "all";

    fn values(&self) -> [(&'static str, bool); 1] {
        [(Self::ALL, self.all)]
    }

    /// Read the options a caller sent; the error is the message for `InvalidArgs`.
    pub fn from_dict(dict: &HashMap<String, OwnedValue>) -> Result<CleanOptions, String> {
        let mut out = CleanOptions::default();
        for (key, value) in dict {
            match (key.as_str(), &**value) {
                (Self::ALL, Value::Bool(b)) => out.all = *b,
                _ => {
                    return Err(format!(
                        "unknown or mistyped option '{}' (known: {}, a boolean)",
                        key.escape_debug(),
                        Self::ALL
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `[(key, value)]` as `a{sv}`, with only the true options in it.
fn serialize_flags<S: serde::Serializer>(flags: &[(&str, bool)], s: S) -> Result<S::Ok, S::Error> {
    let set: Vec<&str> = flags.iter().filter(|(_, v)| *v).map(|(k, _)| *k).collect();
    let mut map = s.serialize_map(Some(set.len()))?;
    for key in set {
        map.serialize_entry(key, &Value::Bool(true))?;
    }
    map.end()
}

impl serde::Serialize for ChangeOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let flags = self.values();
        let set: Vec<&str> = flags.iter().filter(|(_, v)| *v).map(|(k, _)| *k).collect();
        let mut map = s.serialize_map(Some(set.len() + usize::from(self.undo.is_some())))?;
        for key in set {
            map.serialize_entry(key, &Value::Bool(true))?;
        }
        if let Some(id) = self.undo {
            map.serialize_entry(Self::UNDO, &Value::U64(id))?;
        }
        map.end()
    }
}

impl serde::Serialize for CleanOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_flags(&self.values(), s)
    }
}

impl Type for ChangeOptions {
    const SIGNATURE: &'static Signature = <HashMap<String, OwnedValue> as Type>::SIGNATURE;
}

impl Type for CleanOptions {
    const SIGNATURE: &'static Signature = <HashMap<String, OwnedValue> as Type>::SIGNATURE;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, Value<'_>)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.try_to_owned().unwrap()))
            .collect()
    }

    #[test]
    fn options_read_back_what_a_client_sends() {
        let sent = ChangeOptions {
            download_only: true,
            adopt: true,
            ..ChangeOptions::default()
        };
        let keys: Vec<&str> = sent
            .values()
            .iter()
            .filter(|(_, v)| *v)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys, ["download-only", "adopt"]);
        let received = dict(&[("download-only", true.into()), ("adopt", true.into())]);
        assert_eq!(ChangeOptions::from_dict(&received), Ok(sent));
    }

    #[test]
    fn unknown_and_mistyped_options_are_refused_by_name() {
        let e = ChangeOptions::from_dict(&dict(&[("bogus", true.into())])).unwrap_err();
        assert_eq!(
            e,
            "unknown option 'bogus' (known: reinstall, download-only, dry-run, force, adopt, offline, undo)"
        );
        let e = ChangeOptions::from_dict(&dict(&[("undo", "7".into())])).unwrap_err();
        assert_eq!(e, "option 'undo' must be a history id (t), not 's'");
        let undo = ChangeOptions::from_dict(&dict(&[("undo", 7u64.into())])).unwrap();
        assert_eq!(undo.undo, Some(7));
        let e = ChangeOptions::from_dict(&dict(&[("force", 1u32.into())])).unwrap_err();
        assert_eq!(e, "option 'force' must be a boolean, not 'u'");
        let e = CleanOptions::from_dict(&dict(&[("all", "yes".into())])).unwrap_err();
        assert_eq!(
            e,
            "unknown or mistyped option 'all' (known: all, a boolean)"
        );
    }
}
