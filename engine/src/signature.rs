//! Trusted keys and signed indexes. The keys are minisign (Ed25519) public keys, one `.pub` file
//! each in `ROOT/etc/spk/keys/`. With at least one key, an `index.json` is accepted only with a
//! `index.json.minisig` that one of them verifies over its exact bytes, and only if its signed
//! time is not older than the newest signed index already accepted from that repository (so a
//! mirror cannot replay an old release with known holes). The signed time is the index's
//! `timestamp` field, or, when the index has none, the `timestamp:` of the signature's trusted
//! comment (which minisign signs too, and which `minisign -S` and spk-publish always write).
//! With no key, indexes are read unsigned and only their per-package sha256 guards the
//! tarballs.

use std::path::{Path, PathBuf};

use minisign_verify::{PublicKey, Signature};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest signature file accepted (a minisign signature is about 300 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// Where the trusted public keys of a target root live.
pub fn keys_dir(root: &Path) -> PathBuf {
    root.join("etc/spk/keys")
}

/// One trusted public key and the file it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub path: PathBuf,
    key: PublicKey,
}

impl TrustedKey {
    /// The file name (`smechos.pub`), as `verified_by` shows it.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A signature that one of the trusted keys verified.
#[derive(Debug)]
pub struct Verified<'a> {
    pub key: &'a TrustedKey,
    /// The signature's trusted comment (signed with it).
    pub trusted_comment: String,
}

/// The keys an index may be signed with.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub dir: PathBuf,
    keys: Vec<TrustedKey>,
    /// sha256 over the key files' names and contents.
    fingerprint: String,
}

impl Keyring {
    /// Read every `*.pub` in `dir` (a missing directory is an empty keyring). A `.pub` file that
    /// is not a minisign public key is an error, not a skipped key: silently dropping the only
    /// key would turn signature checks off.
    pub fn load(dir: &Path) -> Result<Keyring> {
        let mut keyring = Keyring {
            dir: dir.to_owned(),
            ..Keyring::default()
        };
        let paths = key_files(dir)?;
        let mut contents = Vec::new();
        for path in paths {
            let bad = |message: String| Error::Config {
                path: path.clone(),
                message,
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(format!("cannot read this trusted key: {e}")))?;
            let key = PublicKey::decode(&text)
                .or_else(|_| PublicKey::from_base64(text.trim()))
                .map_err(|e| bad(format!("not a minisign public key: {e}")))?;
            contents.push((path.clone(), text));
            keyring.keys.push(TrustedKey { path, key });
        }
        keyring.fingerprint = fingerprint(&contents);
        Ok(keyring)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Changes whenever a key is added, removed or replaced.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key files, for messages: `/etc/spk/keys/a.pub, /etc/spk/keys/b.pub`.
    pub fn files(&self) -> String {
        let names: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.path.display().to_string())
            .collect();
        names.join(", ")
    }

    /// Check `signature` (the text of `index.json.minisig`) over `index`; returns the key that
    /// verified it with the signed trusted comment, or why none did (naming the key files).
    pub fn verify(
        &self,
        index: &[u8],
        signature: &[u8],
    ) -> std::result::Result<Verified<'_>, String> {
        let text = std::str::from_utf8(signature)
            .ok()
            .filter(|_| signature.len() <= MAX_SIGNATURE_BYTES);
        let signature = text
            .and_then(|t| Signature::decode(t).ok())
            .ok_or_else(|| "index.json.minisig is not a minisign signature".to_owned())?;
        let mut key_id_matched = false;
        for trusted in &self.keys {
            match trusted.key.verify(index, &signature, false) {
                Ok(()) => {
                    return Ok(Verified {
                        key: trusted,
                        trusted_comment: signature.trusted_comment().to_owned(),
                    });
                }
                Err(minisign_verify::Error::UnexpectedKeyId) => {}
                Err(_) => key_id_matched = true,
            }
        }
        Err(if key_id_matched {
            format!(
                "signature does not match the index (tampered or damaged) for trusted key {}",
                self.files()
            )
        } else {
            format!(
                "signed by a key that is not trusted (trusted keys: {})",
                self.files()
            )
        })
    }
}

/// The `*.pub` files of `dir`, sorted: the trusted keys (a missing directory holds none).
/// Nothing else in the directory counts, so a directory without one means signatures are off.
pub fn key_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    Ok(paths)
}

fn fingerprint(contents: &[(PathBuf, String)]) -> String {
    let mut h = Sha256::new();
    for (path, text) in contents {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(text.trim().as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The `timestamp:` of a minisign trusted comment (`timestamp:1764072000\tfile:index.json`),
/// if it has one: the first whitespace-separated field that starts with `timestamp:` and holds
/// only decimal digits after it.
pub fn trusted_comment_timestamp(comment: &str) -> Option<u64> {
    let value = comment
        .split_ascii_whitespace()
        .find_map(|field| field.strip_prefix("timestamp:"))?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Refuse a signed index older than the newest signed index seen before (`seen`). An index
/// with no signed time (`index` is `None`) is refused only when an earlier one had a time:
/// it can then not be told from an old release replayed. `seen` of 0 is what spkd stored for
/// an undated index before signed times worked; it counts as none.
pub fn check_not_rolled_back(
    seen: Option<u64>,
    index: Option<u64>,
) -> std::result::Result<(), String> {
    let Some(seen) = seen.filter(|&t| t > 0) else {
        return Ok(());
    };
    match index {
        Some(t) if t >= seen => Ok(()),
        Some(t) => Err(format!(
            "signed index is older than the one already accepted: its timestamp is {}, \
             the newest seen is {}; refusing a rollback to an older release",
            describe_time(t),
            describe_time(seen)
        )),
        None => Err(format!(
            "signed index has no time (no timestamp field, and no timestamp: in its \
             signature's trusted comment), but one from {} was already accepted; refusing \
             what may be an older release replayed",
            describe_time(seen)
        )),
    }
}

/// Refuse an index dated more than `max_age` seconds before `now` (`max_index_age`), or one
/// with no date at all when there is a limit: it could not be told from a frozen mirror.
pub fn check_age(
    date: Option<u64>,
    max_age: Option<u64>,
    now: u64,
) -> std::result::Result<(), String> {
    let Some(max_age) = max_age else {
        return Ok(());
    };
    let days = max_age / 86_400;
    let Some(date) = date else {
        return Err(format!(
            "the index carries no date, so max_index_age = {days} (days) cannot be checked; \
             refused"
        ));
    };
    let age = now.saturating_sub(date);
    if age > max_age {
        return Err(format!(
            "the index is dated {}, {} ago, older than max_index_age = {days} (days) allows; \
             a mirror may be holding this machine on an old release",
            describe_time(date),
            describe_age(age)
        ));
    }
    Ok(())
}

/// `3 days`, `5 hours`, `12 minutes`, `less than a minute`: an age for people.
pub fn describe_age(secs: u64) -> String {
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..60 => "less than a minute".to_owned(),
        60..3600 => unit(secs / 60, "minute"),
        3600..86_400 => unit(secs / 3600, "hour"),
        _ => unit(secs / 86_400, "day"),
    }
}

/// Unix seconds of an RFC 3339 UTC time as GitHub writes it (`2026-11-25T12:00:00Z`).
pub fn parse_utc(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// (year, month, day) → days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25 12:00:00 UTC (1764072000)`.
pub fn describe_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC ({secs})",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair made with the minisign crate (the publisher's side).
    fn keypair() -> (String, minisign::SecretKey) {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        (kp.pk.to_box().unwrap().into_string(), kp.sk)
    }

    fn sign(sk: &minisign::SecretKey, data: &[u8]) -> Vec<u8> {
        minisign::sign(None, sk, std::io::Cursor::new(data), None, None)
            .unwrap()
            .into_string()
            .into_bytes()
    }

    fn keyring_with(keys: &[(&str, &str)]) -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in keys {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let keyring = Keyring::load(dir.path()).unwrap();
        (dir, keyring)
    }

    #[test]
    fn a_good_signature_names_its_key_and_a_changed_byte_fails() {
        let (pk, sk) = keypair();
        let (_dir, keyring) = keyring_with(&[("smechos.pub", &pk), ("README", "not a key")]);
        let index = br#"{"format":1,"release":"r","packages":[]}"#;
        let sig = sign(&sk, index);
        let verified = keyring.verify(index, &sig).unwrap();
        assert_eq!(verified.key.name(), "smechos.pub");
        assert!(
            verified.trusted_comment.starts_with("timestamp:"),
            "minisign writes a timestamp by default: {}",
            verified.trusted_comment
        );

        let mut tampered = index.to_vec();
        tampered[12] = b'X';
        let e = keyring.verify(&tampered, &sig).unwrap_err();
        assert!(e.contains("tampered") && e.contains("smechos.pub"), "{e}");
    }

    #[test]
    fn a_signature_by_another_key_names_the_trusted_keys() {
        let (pk, _) = keypair();
        let (_, other) = keypair();
        let (_dir, keyring) = keyring_with(&[("smechos.pub", &pk)]);
        let e = keyring.verify(b"x", &sign(&other, b"x")).unwrap_err();
        assert!(
            e.contains("not trusted") && e.contains("smechos.pub"),
            "{e}"
        );
        let e = keyring.verify(b"x", b"garbage").unwrap_err();
        assert!(e.contains("not a minisign signature"), "{e}");
    }

    #[test]
    fn a_broken_key_file_is_an_error_and_a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.pub"), "nonsense\n").unwrap();
        let e = Keyring::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad.pub"), "{e}");
        let empty = Keyring::load(&dir.path().join("none")).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn older_timestamps_are_rollbacks_and_undated_indexes_never_lock_out() {
        assert!(check_not_rolled_back(None, None).is_ok());
        // What spkd stored for an undated index before: not a guard.
        assert!(check_not_rolled_back(Some(0), None).is_ok());
        assert!(check_not_rolled_back(Some(0), Some(5)).is_ok());
        assert!(check_not_rolled_back(Some(10), Some(10)).is_ok());
        assert!(check_not_rolled_back(Some(10), Some(11)).is_ok());
        let e = check_not_rolled_back(Some(1_764_072_000), Some(1_700_000_000)).unwrap_err();
        assert!(
            e.contains("2023-11-14 22:13:20 UTC (1700000000)")
                && e.contains("2025-11-25 12:00:00 UTC (1764072000)"),
            "{e}"
        );
        assert!(check_not_rolled_back(Some(10), None).is_err());
    }

    #[test]
    fn trusted_comments_give_their_timestamp() {
        assert_eq!(
            trusted_comment_timestamp("timestamp:1764072000\tfile:index.json\thashed"),
            Some(1_764_072_000)
        );
        assert_eq!(
            trusted_comment_timestamp("file:x timestamp:42 release:r"),
            Some(42)
        );
        assert_eq!(trusted_comment_timestamp("timestamp:"), None);
        assert_eq!(trusted_comment_timestamp("timestamp:-1"), None);
        assert_eq!(
            trusted_comment_timestamp("timestamp:99999999999999999999999"),
            None
        );
        assert_eq!(trusted_comment_timestamp("no time here"), None);
    }

    #[test]
    fn ages_and_dates() {
        let day = 86_400;
        assert!(check_age(None, None, 100).is_ok());
        assert!(check_age(Some(0), Some(30 * day), 30 * day).is_ok());
        let e = check_age(
            Some(1_764_072_000),
            Some(30 * day),
            1_764_072_000 + 31 * day,
        )
        .unwrap_err();
        assert!(
            e.contains("2025-11-25 12:00:00 UTC") && e.contains("31 days ago") && e.contains("30"),
            "{e}"
        );
        assert!(
            check_age(None, Some(day), 0)
                .unwrap_err()
                .contains("no date")
        );
        assert_eq!(describe_age(59), "less than a minute");
        assert_eq!(describe_age(3 * day + 5), "3 days");
        assert_eq!(describe_age(3600), "1 hour");
        assert_eq!(parse_utc("2025-11-25T12:00:00Z"), Some(1_764_072_000));
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2025-13-25T12:00:00Z"), None);
        assert_eq!(parse_utc("2025-11-25 12:00:00"), None);
    }
}
