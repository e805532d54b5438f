//! File work shared by the commands: hashing, the installed size of a `.tar.xz`, minisign
//! signing, and writes that land whole or not at all.

use std::io::{Read, Write};
use std::path::Path;

use async_compression::tokio::bufread::XzDecoder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// Size and sha256 of a file, read once.
pub fn hash_file(path: &Path) -> Result<(u64, String), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The sum of the regular files' sizes in a `.tar.xz`, by decoding it (what unpacking takes).
pub async fn installed_size(path: &Path) -> Result<u64, String> {
    let what = |e: std::io::Error| format!("{}: not a readable .tar.xz: {e}", path.display());
    let file = tokio::fs::File::open(path).await.map_err(what)?;
    let decoder = XzDecoder::new(tokio::io::BufReader::with_capacity(128 * 1024, file));
    let mut archive = tokio_tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(what)?;
    let mut total = 0u64;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(what)?;
        if entry.header().entry_type().is_file() {
            total = total.saturating_add(entry.effective_size());
        }
    }
    Ok(total)
}

/// The minisign signature (text of `index.json.minisig`) of `data`.
pub fn sign(key_file: &Path, data: &[u8], release: &str, timestamp: u64) -> Result<String, String> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("reading {}: {e}", key_file.display()))?;
    let unencrypted = minisign::SecretKey::from_unencrypted_box(text.clone().into());
    let secret = match unencrypted {
        Ok(key) => key,
        Err(_) => {
            let password = std::env::var("MINISIGN_PASSWORD").map_err(|_| {
                format!(
                    "{} is an encrypted (or unreadable) minisign secret key: set \
                     MINISIGN_PASSWORD, or use a key made with `minisign -G -W`",
                    key_file.display()
                )
            })?;
            minisign::SecretKey::from_box(text.into(), Some(password))
                .map_err(|e| format!("{}: {e}", key_file.display()))?
        }
    };
    let public = minisign::PublicKey::from_secret_key(&secret)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let trusted_comment = format!("timestamp:{timestamp}\tfile:index.json\trelease:{release}");
    let signature = minisign::sign(
        Some(&public),
        &secret,
        std::io::Cursor::new(data),
        Some(&trusted_comment),
        Some("signature from spk-publish"),
    )
    .map_err(|e| format!("signing with {}: {e}", key_file.display()))?;
    Ok(signature.into_string())
}

/// Write `path` as a whole or not at all: a temporary file beside it, flushed to disk, renamed
/// over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}
