//! Fetching what a repository offers: `index` sources (a base URL with `index.json`, then
//! mirrors in order) and `github` sources (a release's assets through the REST API).

use serde::Deserialize;

use crate::catalog::{Available, RepoSnapshot};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::index::{Index, IndexEntry, MAX_INDEX_BYTES, PackageKind, check_package_name};

/// Packages that write the base system rather than user-facing software.
const SYSTEM_PACKAGES: &[&str] = &[
    "kernel-modules",
    "firmware",
    "bootloader-grub",
    "base-system",
];

pub async fn fetch(
    http: &reqwest::Client,
    repo: &str,
    source: &SourceConfig,
) -> Result<RepoSnapshot> {
    match source {
        SourceConfig::Index { urls } => fetch_index(http, repo, urls).await,
        SourceConfig::Github {
            api,
            owner,
            repo: gh_repo,
            tag,
        } => {
            let base = api.trim_end_matches('/');
            let url = match tag {
                Some(tag) => format!("{base}/repos/{owner}/{gh_repo}/releases/tags/{tag}"),
                None => format!("{base}/repos/{owner}/{gh_repo}/releases/latest"),
            };
            fetch_github(http, repo, &url).await
        }
    }
}

/// Join a base URL and a file name (the base may or may not end in `/`).
pub fn join(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

async fn fetch_index(http: &reqwest::Client, repo: &str, bases: &[String]) -> Result<RepoSnapshot> {
    let mut last = None;
    for (i, base) in bases.iter().enumerate() {
        let url = join(base, "index.json");
        match get_small(http, &url).await {
            Ok(bytes) => {
                let index = Index::parse(&bytes).map_err(|reason| Error::BadIndex {
                    url: url.clone(),
                    reason,
                })?;
                // Download from the base that answered first, then the others in order.
                let mut order: Vec<&String> = bases[i..].iter().collect();
                order.extend(&bases[..i]);
                let packages = index
                    .packages
                    .into_iter()
                    .map(|entry| Available {
                        repo: repo.to_owned(),
                        urls: order.iter().map(|b| join(b, &entry.file)).collect(),
                        entry,
                        verified_by: "index sha256".to_owned(),
                    })
                    .collect();
                return Ok(RepoSnapshot {
                    release: index.release,
                    packages,
                });
            }
            Err(reason) => {
                tracing::warn!(%url, %reason, "index fetch failed, trying next mirror");
                last = Some(Error::Index { url, reason });
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidArgs(format!("repo '{repo}' has no URL"))))
}

/// GET a small document (index, release JSON), refusing anything absurdly large.
pub async fn get_small(http: &reqwest::Client, url: &str) -> std::result::Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| crate::fetch::describe_reqwest(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(crate::fetch::describe_status(status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::fetch::describe_reqwest(&e))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_INDEX_BYTES {
            return Err(format!("larger than {MAX_INDEX_BYTES} bytes"));
        }
    }
    Ok(body)
}

/// The parts of GitHub's release JSON that spk reads.
#[derive(Debug, Deserialize)]
struct Release {
    tag_name: String,
    #[serde(default)]
    assets: Vec<Asset>,
}

#[derive(Debug, Deserialize)]
struct Asset {
    name: String,
    size: u64,
    #[serde(default)]
    digest: Option<String>,
    browser_download_url: String,
}

async fn fetch_github(http: &reqwest::Client, repo: &str, url: &str) -> Result<RepoSnapshot> {
    let bytes = get_small(http, url).await.map_err(|reason| Error::Index {
        url: url.to_owned(),
        reason,
    })?;
    let release: Release = serde_json::from_slice(&bytes).map_err(|e| Error::BadIndex {
        url: url.to_owned(),
        reason: format!("not a GitHub release: {e}"),
    })?;
    let mut packages = Vec::new();
    for asset in &release.assets {
        let Some(name) = asset.name.strip_suffix(".tar.xz") else {
            continue;
        };
        if check_package_name(name).is_err() {
            tracing::warn!(asset = %asset.name, "asset name is not a valid package name; ignored");
            continue;
        }
        let sha256 = asset
            .digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
            .filter(|h| crate::index::is_sha256_hex(h));
        let Some(sha256) = sha256 else {
            tracing::warn!(asset = %asset.name, "asset has no sha256 digest; refused");
            continue;
        };
        let kind = if SYSTEM_PACKAGES.contains(&name) {
            PackageKind::System
        } else {
            PackageKind::Userland
        };
        packages.push(Available {
            repo: repo.to_owned(),
            entry: IndexEntry {
                name: name.to_owned(),
                version: release.tag_name.clone(),
                kind,
                file: asset.name.clone(),
                sha256: sha256.to_owned(),
                size: asset.size,
                installed_size: 0,
                description: String::new(),
                setuid: Vec::new(),
            },
            urls: vec![asset.browser_download_url.clone()],
            verified_by: "GitHub asset digest".to_owned(),
        });
    }
    Ok(RepoSnapshot {
        release: release.tag_name,
        packages,
    })
}
