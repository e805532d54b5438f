//! Trusted keys and signed indexes. The keys are minisign (Ed25519) public keys, one `.pub` file
//! each in `ROOT/etc/spk/keys/`. With at least one key, an `index.json` is accepted only with a
//! `index.json.minisig` that one of them verifies over its exact bytes, and only if its
//! `timestamp` is not older than the newest signed index already accepted from that repository
//! (so a mirror cannot replay an old release with known holes). With no key, indexes are read
//! unsigned and only their per-package sha256 guards the tarballs.

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
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                keyring.fingerprint = fingerprint(&[]);
                return Ok(keyring);
            }
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        paths.sort();
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
    /// verified it, or why none did (naming the key files).
    pub fn verify(
        &self,
        index: &[u8],
        signature: &[u8],
    ) -> std::result::Result<&TrustedKey, String> {
        let text = std::str::from_utf8(signature)
            .ok()
            .filter(|_| signature.len() <= MAX_SIGNATURE_BYTES);
        let signature = text
            .and_then(|t| Signature::decode(t).ok())
            .ok_or_else(|| "index.json.minisig is not a minisign signature".to_owned())?;
        let mut key_id_matched = false;
        for trusted in &self.keys {
            match trusted.key.verify(index, &signature, false) {
                Ok(()) => return Ok(trusted),
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

/// Refuse a signed index older than the newest signed index seen before (`seen`). An index
/// without a timestamp counts as older than any that had one.
pub fn check_not_rolled_back(
    seen: Option<u64>,
    index: Option<u64>,
) -> std::result::Result<(), String> {
    let Some(seen) = seen else {
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
            "signed index has no timestamp, but one from {} was already accepted; \
             refusing a rollback to an older release",
            describe_time(seen)
        )),
    }
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
        assert_eq!(keyring.verify(index, &sig).unwrap().name(), "smechos.pub");

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
    fn older_or_missing_timestamps_are_rollbacks() {
        assert!(check_not_rolled_back(None, None).is_ok());
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
}
