//! `spk-publish DIR --release NAME`: for a directory of `NAME.tar.xz` packages, write
//! `index.json` (format 1: size, sha256, installed size, version, kind and description of each)
//! and, with `--sign`, its minisign signature `index.json.minisig`. The directory is then what a
//! mirror serves, or what a GitHub release carries as assets.
//!
//! A package whose tarball did not change since the previous index (`DIR/index.json` as it was,
//! or `--previous FILE`) keeps that index's version, so a new release does not offer the same
//! bytes again as an update; new and changed tarballs get `--version`, a line of `--versions
//! FILE`, or the release name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use spk_engine::index::{Index, IndexEntry, PackageKind, check_package_name};

use crate::files::{hash_file, installed_size, sign, write_atomically};

#[derive(Debug, Parser)]
#[command(
    name = "spk-publish",
    about = "Write index.json (and sign it) for a directory of SmechOS package tarballs",
    after_help = "To copy a release into a mirror directory: spk-publish mirror --help",
    disable_version_flag = true
)]
pub struct Args {
    /// Directory holding the NAME.tar.xz packages; index.json is written into it
    dir: PathBuf,
    /// Release name, e.g. 2026.11.25 (also the version of a new or changed package that is
    /// given none)
    #[arg(long)]
    release: String,
    /// Release time in unix seconds, the rollback guard of signed indexes [default: now]
    #[arg(long, value_name = "SECS")]
    timestamp: Option<u64>,
    /// Kind of a package: NAME=system or NAME=userland [default: system for kernel-modules,
    /// firmware, bootloader-grub and base-system, userland for the rest]
    #[arg(long = "kind", value_name = "NAME=KIND")]
    kinds: Vec<String>,
    /// Version of a package (repeatable) [default: its version in --versions FILE, else its
    /// version in the previous index when its tarball is unchanged, else the release name]
    #[arg(long = "version", value_name = "NAME=VERSION")]
    versions: Vec<String>,
    /// Versions of packages, one "NAME VERSION" a line (# starts a comment); --version wins
    #[arg(long = "versions", value_name = "FILE")]
    versions_file: Option<PathBuf>,
    /// The previous index, whose versions unchanged tarballs keep [default: DIR/index.json,
    /// when it exists]
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
    /// One-line description of a package
    #[arg(long = "description", value_name = "NAME=TEXT")]
    descriptions: Vec<String>,
    /// A path of a system package that keeps its setuid/setgid bit (repeatable)
    #[arg(long = "setuid", value_name = "NAME=PATH")]
    setuid: Vec<String>,
    /// A path a userland package may give to another owner than root (repeatable; a system
    /// package may for any path)
    #[arg(long = "owner-path", value_name = "NAME=PATH")]
    owner_paths: Vec<String>,
    /// File capabilities of a path, in the text setcap(8) takes (repeatable), e.g.
    /// plasma=usr/bin/kwin_wayland:cap_sys_nice=ep. A file DIR/NAME.capabilities with lines
    /// "PATH TEXT" gives them too.
    #[arg(long = "capability", value_name = "NAME=PATH:TEXT")]
    capabilities: Vec<String>,
    /// Sign index.json with this minisign secret key, writing index.json.minisig (an
    /// encrypted key takes its password from MINISIGN_PASSWORD)
    #[arg(long, value_name = "SECRET_KEY_FILE")]
    sign: Option<PathBuf>,
}

pub async fn publish(args: &Args) -> Result<(), String> {
    let tarballs = tarballs(&args.dir)?;
    let names: Vec<&str> = tarballs.iter().map(|(name, _)| name.as_str()).collect();
    let kinds = per_package("--kind", &args.kinds, &names)?;
    let mut versions = match &args.versions_file {
        Some(file) => versions_file(file, &names)?,
        None => BTreeMap::new(),
    };
    versions.extend(per_package("--version", &args.versions, &names)?);
    let previous = previous_versions(args)?;
    let descriptions = per_package("--description", &args.descriptions, &names)?;
    let setuid = per_package_all("--setuid", &args.setuid, &names)?;
    let owner_paths = per_package_all("--owner-path", &args.owner_paths, &names)?;
    let mut capabilities: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, spec) in per_package_all("--capability", &args.capabilities, &names)?
        .into_iter()
        .flat_map(|(n, specs)| specs.into_iter().map(move |s| (n, s)))
    {
        let Some((path, text)) = spec.split_once(':') else {
            return Err(format!(
                "--capability {name}={spec}: expected NAME=PATH:TEXT"
            ));
        };
        capabilities
            .entry(name.to_owned())
            .or_default()
            .insert(path.to_owned(), text.to_owned());
    }
    for name in &names {
        let file = args.dir.join(format!("{name}.capabilities"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, caps)) = line.split_once(char::is_whitespace) else {
                return Err(format!("{}:{}: expected PATH TEXT", file.display(), n + 1));
            };
            capabilities
                .entry((*name).to_owned())
                .or_default()
                .insert(path.to_owned(), caps.trim().to_owned());
        }
    }

    for (name, caps) in &mut capabilities {
        for (path, text) in caps.iter_mut() {
            // Written as getcap prints it: what spkd records and `spkctl info` shows.
            *text = spk_engine::fcaps::parse(text)
                .map_err(|e| format!("capabilities of {name}: {path}: {e}"))?
                .to_text();
        }
    }
    let mut packages = Vec::new();
    for (name, path) in &tarballs {
        let (size, sha256) = hash_file(path)?;
        let installed_size = installed_size(path).await?;
        let kind = match kinds.get(name.as_str()).map(String::as_str) {
            None => PackageKind::default_for(name),
            Some("system") => PackageKind::System,
            Some("userland") => PackageKind::Userland,
            Some(other) => {
                return Err(format!(
                    "--kind {name}={other}: the kind is system or userland"
                ));
            }
        };
        let unchanged = previous.get(&(name.clone(), sha256.clone()));
        let version = match (versions.get(name.as_str()), unchanged) {
            (Some(given), _) => given.clone(),
            (None, Some(kept)) => kept.clone(),
            (None, None) => args.release.clone(),
        };
        let kept = !versions.contains_key(name.as_str()) && unchanged.is_some();
        let entry = IndexEntry {
            name: name.clone(),
            version,
            kind,
            file: format!("{name}.tar.xz"),
            sha256,
            size,
            installed_size,
            description: descriptions.get(name.as_str()).cloned().unwrap_or_default(),
            setuid: setuid.get(name.as_str()).cloned().unwrap_or_default(),
            owners: owner_paths.get(name.as_str()).cloned().unwrap_or_default(),
            capabilities: capabilities.remove(name).unwrap_or_default(),
        };
        println!(
            "{} {} ({}): {} bytes, {} bytes installed, sha256 {}{}",
            entry.name,
            entry.version,
            entry.kind.as_str(),
            entry.size,
            entry.installed_size,
            entry.sha256,
            if kept {
                " (unchanged: version kept)"
            } else {
                ""
            }
        );
        packages.push(entry);
    }
    let timestamp = args.timestamp.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let index = Index {
        format: 1,
        release: args.release.clone(),
        timestamp: Some(timestamp),
        packages,
    };
    let mut bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    // What spkd would refuse is refused here, before anything is written.
    Index::parse(&bytes).map_err(|e| format!("the index would be invalid: {e}"))?;

    let index_path = args.dir.join("index.json");
    let signature_path = args.dir.join("index.json.minisig");
    write_atomically(&index_path, &bytes)?;
    println!(
        "wrote {} ({} packages, release {}, timestamp {timestamp})",
        index_path.display(),
        index.packages.len(),
        index.release
    );
    match &args.sign {
        Some(key_file) => {
            let signature = sign(key_file, &bytes, &index.release, timestamp)?;
            write_atomically(&signature_path, signature.as_bytes())?;
            println!("wrote {}", signature_path.display());
        }
        None => {
            // A signature of an older index next to this one would only be refused.
            match std::fs::remove_file(&signature_path) {
                Ok(()) => println!("removed the stale {}", signature_path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", signature_path.display())),
            }
        }
    }
    Ok(())
}

/// Every `NAME.tar.xz` in `dir` as (NAME, path), sorted by name.
fn tarballs(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_suffix(".tar.xz") else {
            continue;
        };
        if !entry.file_type().map_err(|e| e.to_string())?.is_file() {
            continue;
        }
        check_package_name(name).map_err(|e| format!("{file_name}: {e}"))?;
        out.push((name.to_owned(), entry.path()));
    }
    if out.is_empty() {
        return Err(format!("no NAME.tar.xz packages in {}", dir.display()));
    }
    out.sort();
    Ok(out)
}

/// The versions of the previous index (`--previous`, else `DIR/index.json` if there is one), by
/// name and sha256: what an unchanged tarball keeps.
fn previous_versions(args: &Args) -> Result<BTreeMap<(String, String), String>, String> {
    let (path, required) = match &args.previous {
        Some(path) => (path.clone(), true),
        None => (args.dir.join("index.json"), false),
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(BTreeMap::new());
        }
        Err(e) => {
            return Err(format!(
                "reading the previous index {}: {e}",
                path.display()
            ));
        }
    };
    let index = Index::parse(&bytes).map_err(|e| {
        format!(
            "the previous index {} is not valid ({e}); remove it to give every package the \
             release's version",
            path.display()
        )
    })?;
    Ok(index
        .packages
        .into_iter()
        .map(|p| ((p.name, p.sha256), p.version))
        .collect())
}

/// `--versions FILE`: lines `NAME VERSION`; blank lines and `#` comments are skipped; every
/// NAME must be one of the packages.
fn versions_file<'a>(file: &Path, names: &[&'a str]) -> Result<BTreeMap<&'a str, String>, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", file.display(), n + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(version), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{}: expected NAME VERSION", at()));
        };
        let Some(name) = names.iter().find(|known| **known == name) else {
            return Err(format!(
                "{}: there is no {name}.tar.xz in the directory",
                at()
            ));
        };
        out.insert(*name, version.to_owned());
    }
    Ok(out)
}

/// Parse repeated `NAME=VALUE` options; every NAME must be one of the packages.
fn per_package<'a>(
    option: &str,
    values: &'a [String],
    names: &[&str],
) -> Result<BTreeMap<&'a str, String>, String> {
    let mut out = BTreeMap::new();
    for value in values {
        let Some((name, v)) = value.split_once('=') else {
            return Err(format!("{option} {value}: expected NAME=VALUE"));
        };
        if !names.contains(&name) {
            return Err(format!(
                "{option} {value}: there is no {name}.tar.xz in the directory"
            ));
        }
        out.insert(name, v.to_owned());
    }
    Ok(out)
}

/// `NAME=VALUE` options that may repeat: every value per package.
fn per_package_all<'a>(
    option: &str,
    values: &'a [String],
    names: &[&str],
) -> Result<BTreeMap<&'a str, Vec<String>>, String> {
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for value in values {
        let Some((name, v)) = value.split_once('=') else {
            return Err(format!("{option} {value}: expected NAME=VALUE"));
        };
        if !names.contains(&name) {
            return Err(format!(
                "{option} {value}: there is no {name}.tar.xz in the directory"
            ));
        }
        out.entry(name).or_default().push(v.to_owned());
    }
    Ok(out)
}
