//! `spk-publish mirror`: copy a release into a static directory that nginx or a CDN serves to
//! many machines as an `index` source, so that they do not each ask GitHub.
//!
//! The origin is read by the engine's own source code ([`source::fetch_origin`]): the same
//! checks spkd makes (a signed index, or GitHub's asset digests over https), the same digests.
//! Every tarball is downloaded through the engine's resuming download and verified on the
//! stream against them; one that is already in the mirror with the right size and sha256 is
//! kept, not fetched again.
//!
//! What the mirror guarantees: a run that fails (a digest mismatch, a network error) leaves the
//! directory as it was, because downloads land in a staging directory first; only when all are
//! verified are they renamed into place, and `index.json` is written last (temporary file,
//! rename), so a client never reads an index naming a tarball that is not there yet. Its
//! `file` fields are plain names, so a client fetches every tarball from the mirror.
//!
//! The index served is the origin's signed index byte for byte (machines keep trusting the
//! origin's key), or with `--sign-key` the same index signed by the mirror operator; a GitHub
//! release without an index gets one written from the asset digests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use spk_engine::catalog::Available;
use spk_engine::config::SourceConfig;
use spk_engine::fetch::{self, RetryPolicy};
use spk_engine::index::Index;
use spk_engine::signature::Keyring;
use spk_engine::source::{self, Fetched, Trust};
use spk_engine::verify::{Mismatch, Tee, TooLong, Verified};

use crate::files::{hash_file, installed_size, sign, write_atomically};

/// Where downloads wait inside the mirror directory until all of them are verified (the same
/// file system, so that moving them into place is a rename).
const STAGING: &str = ".spk-mirror.partial";
/// Held (flock) while a run writes, so that two runs (a slow one and the next cron job) never
/// mix their files.
const LOCK: &str = ".spk-mirror.lock";

#[derive(Debug, Parser)]
#[command(
    name = "spk-publish mirror",
    bin_name = "spk-publish mirror",
    about = "Copy a SmechOS release into a static directory served as an `index` source",
    disable_version_flag = true
)]
pub struct Args {
    /// What to copy: github:OWNER/REPO (the latest release), github:OWNER/REPO@TAG, or the URL
    /// of an `index` source (its base URL, or the URL of its index.json)
    #[arg(long, value_name = "SOURCE")]
    from: String,
    /// The mirror directory (created when missing); serve it as the `url` of an `index` source
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// The GitHub REST API of a github: source
    #[arg(long, value_name = "URL", default_value = "https://api.github.com")]
    api: String,
    /// A directory of trusted minisign public keys (*.pub, like /etc/spk/keys): the origin's
    /// index must be signed by one of them [default: none; the origin's signature is passed on
    /// unchecked, and the digests are trusted because they came over https]
    #[arg(long, value_name = "DIR")]
    keys: Option<PathBuf>,
    /// Sign the mirror's index.json with this minisign secret key (the mirror operator's, in
    /// the format of `spk-publish --sign`) instead of passing the origin's signature on
    #[arg(long, value_name = "SECRET_KEY_FILE")]
    sign_key: Option<PathBuf>,
    /// Remove tarballs that the new index no longer lists [default: keep them, and say so]
    #[arg(long)]
    prune: bool,
    /// Trust an unsigned index or GitHub's digests fetched over plain http from another
    /// machine (anyone on the way could change them)
    #[arg(long)]
    allow_insecure: bool,
}

/// How the mirror's `index.json` is vouched for.
enum Signing {
    /// The origin's `index.json.minisig`, passed on with the origin's exact bytes.
    Origin { checked: bool },
    /// Signed here with `--sign-key`.
    Operator(PathBuf),
    /// No signature (the origin has none, and no `--sign-key`).
    Unsigned,
}

pub async fn run(args: &Args) -> Result<(), String> {
    let source = parse_from(&args.from, &args.api)?;
    let keys = match &args.keys {
        Some(dir) => {
            let keys = Keyring::load(dir).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                return Err(format!("--keys {}: no *.pub key in it", dir.display()));
            }
            keys
        }
        None => {
            // Named in the engine's advice to trust the publisher's key.
            let mut none = Keyring::default();
            none.dir = PathBuf::from("--keys DIR");
            none
        }
    };
    // The operator's http_proxy/https_proxy/no_proxy apply, as they do to curl.
    let http = fetch::client(
        Duration::from_secs(15),
        Duration::from_secs(30),
        &spk_engine::proxy::ProxySetting::Environment,
    )
    .map_err(|e| e.to_string())?;
    let trust = Trust {
        keys: &keys,
        allow_unverified: false,
    };
    let fetched = source::fetch_origin(&http, &args.from, &source, trust, args.allow_insecure)
        .await
        .map_err(|e| {
            // The engine advises spk.toml's setting; here it is an option.
            let setting = format!("set allow_insecure = true for repository '{}'", args.from);
            e.to_string().replace(&setting, "give --allow-insecure")
        })?;
    let Fetched {
        snapshot, index, ..
    } = fetched;
    let signed_unchecked = keys.is_empty() && index.as_ref().is_some_and(|i| i.signature.is_some());
    let verified_by = match snapshot.packages.first() {
        _ if signed_unchecked => "a signed index; its signature is not checked without --keys",
        Some(package) => package.verified_by.as_str(),
        None => "no packages",
    };
    println!(
        "origin {}: release {}, {} packages ({verified_by})",
        args.from,
        snapshot.release,
        snapshot.packages.len()
    );
    // A package the origin's index lists but cannot serve would make the mirror's index name
    // a missing tarball; anything else refused is only left out.
    for refused in &snapshot.refused {
        let listed = index
            .as_ref()
            .and_then(|i| Index::parse(&i.bytes).ok())
            .is_some_and(|i| i.packages.iter().any(|p| p.name == refused.name));
        if listed {
            return Err(format!(
                "{}: {}: {}; nothing in {} was changed",
                refused.url,
                refused.name,
                refused.reason,
                args.to.display()
            ));
        }
        println!("not mirrored: {}: {}", refused.name, refused.reason);
    }
    if snapshot.packages.is_empty() {
        return Err(format!("{}: the origin offers no package", args.from));
    }

    let dir = &args.to;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let _lock = lock(dir)?;
    let staging = dir.join(STAGING);
    remove_staging(&staging)?;

    // What is there already, by sha256 (what a previous run, or an operator, put there).
    let mut kept = Vec::new();
    let mut wanted = Vec::new();
    for package in &snapshot.packages {
        if is_present(&dir.join(&package.entry.file), package)? {
            kept.push(package);
        } else {
            wanted.push(package);
        }
    }
    let mut staged = Vec::new();
    if !wanted.is_empty() {
        std::fs::create_dir(&staging)
            .map_err(|e| format!("creating {}: {e}", staging.display()))?;
    }
    for package in &wanted {
        match download(&http, package, &staging).await {
            Ok(path) => staged.push((*package, path)),
            Err(reason) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(format!(
                    "{reason}; nothing in {} was changed",
                    dir.display()
                ));
            }
        }
    }

    let signing = match (&args.sign_key, &index) {
        (Some(key), _) => Signing::Operator(key.clone()),
        (None, Some(origin)) if origin.signature.is_some() => Signing::Origin {
            checked: !keys.is_empty(),
        },
        _ => Signing::Unsigned,
    };
    // The index the mirror serves, and its signature; until they are ready nothing has moved,
    // so a failure here too leaves the mirror as it was.
    let prepared = async {
        let index_bytes = match &index {
            Some(origin) => origin.bytes.clone(),
            None => written_index(dir, &snapshot, &staged).await?,
        };
        let parsed =
            Index::parse(&index_bytes).map_err(|e| format!("the index is invalid: {e}"))?;
        check_not_older(dir, &parsed)?;
        let signature = match &signing {
            Signing::Origin { .. } => index.as_ref().and_then(|i| i.signature.clone()),
            Signing::Operator(key) => {
                let timestamp = parsed.timestamp.or(snapshot.published).unwrap_or_else(now);
                Some(sign(key, &index_bytes, &parsed.release, timestamp)?.into_bytes())
            }
            Signing::Unsigned => None,
        };
        Ok::<_, String>((index_bytes, parsed, signature))
    };
    let (index_bytes, parsed, signature) = match prepared.await {
        Ok(prepared) => prepared,
        Err(reason) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(format!(
                "{reason}; nothing in {} was changed",
                dir.display()
            ));
        }
    };

    // Everything is verified: move the tarballs into place, then the signature, index last.
    for (package, path) in &staged {
        let target = dir.join(&package.entry.file);
        std::fs::rename(path, &target)
            .map_err(|e| format!("moving {} into place: {e}", target.display()))?;
    }
    sync_dir(dir)?;
    let _ = std::fs::remove_dir_all(&staging);
    for (package, _) in &staged {
        println!(
            "fetched {} ({} bytes, sha256 {})",
            package.entry.file, package.entry.size, package.entry.sha256
        );
    }
    for package in &kept {
        println!("kept {} (sha256 matches)", package.entry.file);
    }
    let index_path = dir.join("index.json");
    let signature_path = dir.join("index.json.minisig");
    let unchanged = std::fs::read(&index_path).is_ok_and(|b| b == index_bytes)
        && std::fs::read(&signature_path).ok() == signature;
    if !unchanged {
        if let Some(signature) = &signature {
            write_atomically(&signature_path, signature)?;
        }
        write_atomically(&index_path, &index_bytes)?;
    }
    if signature.is_none() {
        match std::fs::remove_file(&signature_path) {
            Ok(()) => println!("removed the stale {}", signature_path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", signature_path.display())),
        }
    }
    sync_dir(dir)?;
    let how = match &signing {
        Signing::Origin { checked: true } => {
            "the origin's signed index, as served (signature checked with --keys)".to_owned()
        }
        Signing::Origin { checked: false } => {
            "the origin's signed index, as served (signature passed on unchecked)".to_owned()
        }
        Signing::Operator(key) => format!("signed with {}", key.display()),
        Signing::Unsigned => "unsigned".to_owned(),
    };
    if unchanged {
        println!("index.json unchanged: {how}");
    } else {
        println!("wrote index.json: {how}");
    }

    let listed: BTreeSet<&str> = parsed.packages.iter().map(|p| p.file.as_str()).collect();
    let removed = prune(dir, &listed, args.prune)?;
    println!(
        "mirror {}: release {}, {} packages: {} fetched, {} kept, {} removed",
        dir.display(),
        parsed.release,
        parsed.packages.len(),
        staged.len(),
        kept.len(),
        removed
    );
    Ok(())
}

/// `github:OWNER/REPO[@TAG]`, or an `index` source's base URL (or its `index.json` URL).
fn parse_from(from: &str, api: &str) -> Result<SourceConfig, String> {
    if let Some(spec) = from.strip_prefix("github:") {
        let (path, tag) = match spec.split_once('@') {
            Some((path, tag)) => (path, Some(tag.to_owned())),
            None => (spec, None),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        return match path.split_once('/') {
            Some((owner, repo)) if valid(owner) && valid(repo) && tag.as_deref() != Some("") => {
                Ok(SourceConfig::Github {
                    api: api.to_owned(),
                    owner: owner.to_owned(),
                    repo: repo.to_owned(),
                    tag,
                })
            }
            _ => Err(format!(
                "--from {from}: expected github:OWNER/REPO or github:OWNER/REPO@TAG"
            )),
        };
    }
    if !(from.starts_with("http://") || from.starts_with("https://")) {
        return Err(format!(
            "--from {from}: expected github:OWNER/REPO[@TAG] or an http:// or https:// URL"
        ));
    }
    let base = from.strip_suffix("index.json").unwrap_or(from);
    Ok(SourceConfig::Index {
        urls: vec![base.to_owned()],
    })
}

/// Hold the mirror directory's lock for the run.
fn lock(dir: &Path) -> Result<std::fs::File, String> {
    let path = dir.join(LOCK);
    let file =
        std::fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another spk-publish mirror is writing {} (it holds {})",
            dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("locking {}: {e}", path.display())),
    }
}

/// Remove what an interrupted run left in the staging directory.
fn remove_staging(staging: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(staging) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", staging.display())),
    }
}

/// Whether `path` already holds the package's tarball (its size, then its sha256).
fn is_present(path: &Path, package: &Available) -> Result<bool, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == package.entry.size => {
            Ok(hash_file(path)?.1 == package.entry.sha256)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Download a package into `staging`, checking size and sha256 on the stream; the error names
/// the URL (and, for a mismatch, both hashes).
async fn download(
    http: &reqwest::Client,
    package: &Available,
    staging: &Path,
) -> Result<PathBuf, String> {
    let path = staging.join(&package.entry.file);
    let file =
        std::fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let policy = RetryPolicy {
        retries: 3,
        backoff: Duration::from_millis(250),
    };
    let mut download = fetch::start(http, &package.urls, 0, &policy);
    let body = std::mem::replace(&mut download.body, Box::new(tokio::io::empty()));
    let mut verified = Verified::new(
        body,
        package.entry.size,
        Arc::default(),
        Some(Tee { file, from: 0 }),
    );
    let copied = tokio::io::copy(&mut verified, &mut tokio::io::sink()).await;
    let url = download.current_url();
    if let Err(e) = copied {
        if let Some(failed) = fetch::download_failure(&e) {
            return Err(format!("downloading {}: {}", failed.url, failed.reason));
        }
        if let Some(TooLong(limit, _)) = e.get_ref().and_then(|i| i.downcast_ref::<TooLong>()) {
            return Err(format!(
                "{url}: longer than the {limit} bytes the origin's index says {} has",
                package.entry.name
            ));
        }
        return Err(format!("downloading {url}: {e}"));
    }
    let tee = match verified.finish(Some(&package.entry.sha256)) {
        Ok(tee) => tee,
        Err(Mismatch::Size { expected, actual }) => {
            return Err(format!(
                "{url}: {actual} bytes, but the origin says {} has {expected}",
                package.entry.name
            ));
        }
        Err(Mismatch::Hash { expected, actual }) => {
            return Err(format!(
                "sha256 mismatch for {url}: the origin ({}) says {expected}, the download is \
                 {actual}",
                package.verified_by
            ));
        }
    };
    if let Some(tee) = tee {
        tee.file
            .sync_all()
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// `index.json` for a release that carries none (GitHub's digests): its packages as the engine
/// read them, with the installed size of each tarball (kept from the mirror's previous index
/// when the tarball is the same, so an unchanged release is not decoded again).
async fn written_index(
    dir: &Path,
    snapshot: &spk_engine::catalog::RepoSnapshot,
    staged: &[(&Available, PathBuf)],
) -> Result<Vec<u8>, String> {
    let previous: BTreeMap<(String, String), u64> = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| Index::parse(&b).ok())
        .map(|i| {
            i.packages
                .into_iter()
                .map(|p| ((p.name, p.sha256), p.installed_size))
                .collect()
        })
        .unwrap_or_default();
    let mut packages = Vec::new();
    for package in &snapshot.packages {
        let mut entry = package.entry.clone();
        let key = (entry.name.clone(), entry.sha256.clone());
        entry.installed_size = match previous.get(&key) {
            Some(&size) if size > 0 => size,
            _ => {
                let path = staged
                    .iter()
                    .find(|(p, _)| p.entry.name == entry.name)
                    .map_or_else(|| dir.join(&entry.file), |(_, path)| path.clone());
                installed_size(&path).await?
            }
        };
        packages.push(entry);
    }
    let index = Index {
        format: 1,
        release: snapshot.release.clone(),
        timestamp: snapshot.published,
        packages,
    };
    let mut bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Refuse to replace the mirror's index with an older one (an origin replaying an old release,
/// or a `--from` pointing at an older tag by mistake): machines would refuse it anyway.
fn check_not_older(dir: &Path, new: &Index) -> Result<(), String> {
    let path = dir.join("index.json");
    let Some(old) = std::fs::read(&path)
        .ok()
        .and_then(|b| Index::parse(&b).ok())
    else {
        return Ok(());
    };
    match (old.timestamp, new.timestamp) {
        (Some(old_time), Some(new_time)) if new_time < old_time => Err(format!(
            "the origin's release {} (timestamp {new_time}) is older than the mirror's release \
             {} (timestamp {old_time}); refusing to roll the mirror back (remove {} to do it \
             anyway)",
            new.release,
            old.release,
            path.display()
        )),
        _ => Ok(()),
    }
}

/// The `*.tar.xz` files of `dir` that `listed` does not name: removed with `--prune`, else
/// reported. Returns how many were removed.
fn prune(dir: &Path, listed: &BTreeSet<&str>, remove: bool) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut unlisted = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && name.ends_with(".tar.xz") && !listed.contains(name.as_str()) {
            unlisted.push(name);
        }
    }
    unlisted.sort();
    let mut removed = 0;
    for name in unlisted {
        if remove {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
            println!("removed {name} (no longer listed)");
            removed += 1;
        } else {
            println!("not listed any more: {name} (kept; --prune removes it)");
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Make the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dir.display()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
