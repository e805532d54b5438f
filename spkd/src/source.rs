//! Fetching what a repository offers: `index` sources (a base URL with `index.json` and its
//! minisign signature, then mirrors in order) and `github` sources (a release's assets through
//! the REST API, or the signed index the release carries).
//!
//! What is trusted: with keys in `etc/spk/keys/`, only an index signed by one of them, not older
//! than the last one accepted (see [`crate::signature`]); without keys, an index's sha256 fields
//! or GitHub's asset digests; an asset with neither only when `allow_unverified = true`.
//! Every fetch is conditional on the validators of the last one (`If-None-Match`,
//! `If-Modified-Since`), so an unchanged repository costs one request answered 304, no body.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::Deserialize;

use crate::catalog::{Available, Refused, RepoSnapshot, UNVERIFIED, Validators};
use crate::config::SourceConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::index::{Index, IndexEntry, MAX_INDEX_BYTES, PackageKind, check_package_name};
use crate::signature::{self, Keyring, MAX_SIGNATURE_BYTES};

/// `verified_by` of packages from an index that no key vouches for.
const UNSIGNED_INDEX: &str = "index sha256 (unsigned index)";
/// `verified_by` of packages whose sha256 is GitHub's asset digest.
const GITHUB_DIGEST: &str = "GitHub asset digest";

/// What a refresh may trust: the keys of `etc/spk/keys/` and the `allow_unverified` setting.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub keys: &'a Keyring,
    pub allow_unverified: bool,
}

impl Trust<'_> {
    /// Changes whenever what is trusted changes (then no stored snapshot is reused).
    fn fingerprint(&self) -> String {
        format!(
            "keys:{} allow_unverified:{}",
            self.keys.fingerprint(),
            self.allow_unverified
        )
    }
}

/// One repository refreshed.
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: RepoSnapshot,
    /// False when the server answered 304 and `snapshot` is the previous one, unchanged.
    pub changed: bool,
}

/// Refresh repository `repo`; `previous` is its last accepted snapshot (for the conditional
/// request and the rollback guard).
pub async fn fetch(
    http: &reqwest::Client,
    repo: &str,
    source: &SourceConfig,
    trust: Trust<'_>,
    previous: Option<&RepoSnapshot>,
) -> Result<Fetched> {
    let ctx = Ctx {
        http,
        repo,
        // A stored snapshot is reused only under the same trust settings and the same source
        // (a new mirror must appear in the download URLs).
        state: format!("{} source:{source:?}", trust.fingerprint()),
        trust,
        previous,
    };
    match source {
        SourceConfig::Index { urls } => ctx.fetch_index(urls).await,
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
            ctx.fetch_github(&url).await
        }
    }
}

/// Join a base URL and a file name (the base may or may not end in `/`).
pub fn join(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

/// A GET that failed: the HTTP status when there was one, and a sentence.
#[derive(Debug)]
struct FetchFailure {
    status: Option<StatusCode>,
    reason: String,
}

impl FetchFailure {
    fn is_not_found(&self) -> bool {
        matches!(self.status, Some(StatusCode::NOT_FOUND | StatusCode::GONE))
    }
}

/// The answer to a (possibly conditional) GET of a small document.
enum Document {
    NotModified,
    Fresh {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// GET a small document (index, signature, release JSON), refusing anything over `limit`
/// bytes; with `validators`, ask only for a changed one.
async fn get_document(
    http: &reqwest::Client,
    url: &str,
    validators: Option<&Validators>,
    github: bool,
    limit: usize,
) -> std::result::Result<Document, FetchFailure> {
    let failed = |reason: String| FetchFailure {
        status: None,
        reason,
    };
    let mut request = http.get(url);
    if github {
        request = request
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
    }
    if let Some(v) = validators {
        if let Some(etag) = &v.etag {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        if let Some(date) = &v.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date.as_str());
        }
    }
    let mut resp = request
        .send()
        .await
        .map_err(|e| failed(crate::fetch::describe_reqwest(&e)))?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED && validators.is_some() {
        return Ok(Document::NotModified);
    }
    if !status.is_success() {
        return Err(FetchFailure {
            status: Some(status),
            reason: crate::fetch::describe_status(status),
        });
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| failed(crate::fetch::describe_reqwest(&e)))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            return Err(failed(format!("larger than {limit} bytes")));
        }
    }
    Ok(Document::Fresh {
        bytes,
        etag,
        last_modified,
    })
}

/// GET a small document unconditionally.
async fn get_small(
    http: &reqwest::Client,
    url: &str,
) -> std::result::Result<Vec<u8>, FetchFailure> {
    match get_document(http, url, None, false, MAX_INDEX_BYTES).await? {
        Document::Fresh { bytes, .. } => Ok(bytes),
        Document::NotModified => unreachable!("an unconditional GET is never answered 304"),
    }
}

/// An index that passed the trust checks.
struct CheckedIndex {
    index: Index,
    verified_by: String,
    /// The index's timestamp when a trusted key signed it.
    signed_timestamp: Option<u64>,
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

impl Asset {
    /// The sha256 of a `digest: "sha256:<hex>"` field, if that is what it holds.
    fn sha256(&self) -> Option<&str> {
        self.digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
            .filter(|h| crate::index::is_sha256_hex(h))
    }
}

struct Ctx<'a> {
    http: &'a reqwest::Client,
    repo: &'a str,
    /// What a snapshot was accepted under; see [`Validators::trust`].
    state: String,
    trust: Trust<'a>,
    previous: Option<&'a RepoSnapshot>,
}

impl Ctx<'_> {
    /// The previous answer's validators, when it came from `url` under today's trust.
    fn validators_for(&self, url: &str) -> Option<&Validators> {
        self.previous
            .and_then(|p| p.validators.as_ref())
            .filter(|v| v.url == url && v.trust == self.state)
    }

    fn unchanged(&self, url: &str) -> Fetched {
        tracing::debug!(repo = %self.repo, %url, "not modified since the last refresh");
        Fetched {
            snapshot: self.previous.cloned().unwrap_or_default(),
            changed: false,
        }
    }

    fn validators(
        &self,
        url: &str,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Validators {
        Validators {
            url: url.to_owned(),
            etag,
            last_modified,
            trust: self.state.clone(),
        }
    }

    /// Check `bytes`, fetched from `url`, as an index: with trusted keys, its signature (from
    /// `signature_url`, `None` when there is none) and its timestamp first.
    async fn check_index(
        &self,
        url: &str,
        bytes: &[u8],
        signature_url: Option<&str>,
    ) -> Result<CheckedIndex> {
        let bad = |reason: String| Error::BadIndex {
            url: url.to_owned(),
            reason,
        };
        let keys = self.trust.keys;
        if keys.is_empty() {
            let index = Index::parse(bytes).map_err(bad)?;
            return Ok(CheckedIndex {
                index,
                verified_by: UNSIGNED_INDEX.to_owned(),
                signed_timestamp: None,
            });
        }
        let unsigned = |why: String| {
            bad(format!(
                "{why}; the trusted keys ({}) accept only a signed index",
                keys.files()
            ))
        };
        let Some(signature_url) = signature_url else {
            return Err(unsigned("no index.json.minisig next to it".to_owned()));
        };
        let signature =
            match get_document(self.http, signature_url, None, false, MAX_SIGNATURE_BYTES).await {
                Ok(Document::Fresh { bytes, .. }) => bytes,
                Ok(Document::NotModified) => {
                    unreachable!("an unconditional GET is never answered 304")
                }
                Err(f) if f.is_not_found() => {
                    return Err(unsigned(format!(
                        "no signature at {signature_url} ({})",
                        f.reason
                    )));
                }
                Err(f) => {
                    return Err(Error::Index {
                        url: signature_url.to_owned(),
                        reason: f.reason,
                    });
                }
            };
        let key = keys.verify(bytes, &signature).map_err(&bad)?;
        let verified_by = format!("signed index (key {})", key.name());
        let index = Index::parse(bytes).map_err(&bad)?;
        let seen = self.previous.and_then(|p| p.signed_timestamp);
        signature::check_not_rolled_back(seen, index.timestamp).map_err(&bad)?;
        Ok(CheckedIndex {
            signed_timestamp: Some(index.timestamp.unwrap_or(0)),
            index,
            verified_by,
        })
    }

    /// The newest signed timestamp after accepting `checked`.
    fn signed_timestamp(&self, checked: Option<&CheckedIndex>) -> Option<u64> {
        let before = self.previous.and_then(|p| p.signed_timestamp);
        let now = checked.and_then(|c| c.signed_timestamp);
        before.max(now)
    }

    async fn fetch_index(&self, bases: &[String]) -> Result<Fetched> {
        let mut failures = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let url = join(base, "index.json");
            let document = get_document(
                self.http,
                &url,
                self.validators_for(&url),
                false,
                MAX_INDEX_BYTES,
            )
            .await;
            let (bytes, etag, last_modified) = match document {
                Ok(Document::NotModified) => return Ok(self.unchanged(&url)),
                Ok(Document::Fresh {
                    bytes,
                    etag,
                    last_modified,
                }) => (bytes, etag, last_modified),
                Err(f) => {
                    tracing::warn!(%url, reason = %f.reason, "index fetch failed, trying the next mirror");
                    failures.push(Error::Index {
                        url,
                        reason: f.reason,
                    });
                    continue;
                }
            };
            let signature_url = join(base, "index.json.minisig");
            let checked = match self.check_index(&url, &bytes, Some(&signature_url)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "index refused, trying the next mirror");
                    failures.push(e);
                    continue;
                }
            };
            // Download from the base that answered first, then the others in order.
            let mut order: Vec<&String> = bases[i..].iter().collect();
            order.extend(&bases[..i]);
            let signed_timestamp = self.signed_timestamp(Some(&checked));
            let packages = checked
                .index
                .packages
                .into_iter()
                .map(|entry| Available {
                    repo: self.repo.to_owned(),
                    urls: order.iter().map(|b| join(b, &entry.file)).collect(),
                    entry,
                    verified_by: checked.verified_by.clone(),
                })
                .collect();
            return Ok(Fetched {
                snapshot: RepoSnapshot {
                    release: checked.index.release,
                    packages,
                    refused: Vec::new(),
                    signed_timestamp,
                    validators: Some(self.validators(&url, etag, last_modified)),
                },
                changed: true,
            });
        }
        Err(most_telling(failures)
            .unwrap_or_else(|| Error::InvalidArgs(format!("repo '{}' has no URL", self.repo))))
    }

    async fn fetch_github(&self, url: &str) -> Result<Fetched> {
        let document = get_document(
            self.http,
            url,
            self.validators_for(url),
            true,
            MAX_INDEX_BYTES,
        )
        .await
        .map_err(|f| Error::Index {
            url: url.to_owned(),
            reason: f.reason,
        })?;
        let (bytes, etag, last_modified) = match document {
            Document::NotModified => return Ok(self.unchanged(url)),
            Document::Fresh {
                bytes,
                etag,
                last_modified,
            } => (bytes, etag, last_modified),
        };
        let release: Release = serde_json::from_slice(&bytes).map_err(|e| Error::BadIndex {
            url: url.to_owned(),
            reason: format!("not a GitHub release: {e}"),
        })?;
        let asset = |name: &str| release.assets.iter().find(|a| a.name == name);

        // A signed index among the assets wins; with trusted keys it is required.
        let checked = match asset("index.json") {
            Some(index_asset) => {
                let index_url = &index_asset.browser_download_url;
                let bytes = get_small(self.http, index_url)
                    .await
                    .map_err(|f| Error::Index {
                        url: index_url.clone(),
                        reason: f.reason,
                    })?;
                let signature_url =
                    asset("index.json.minisig").map(|a| a.browser_download_url.as_str());
                Some((
                    index_url.clone(),
                    self.check_index(index_url, &bytes, signature_url).await?,
                ))
            }
            None if !self.trust.keys.is_empty() => {
                return Err(Error::BadIndex {
                    url: url.to_owned(),
                    reason: format!(
                        "the release carries no index.json, and the trusted keys ({}) accept \
                         only packages listed in a signed index",
                        self.trust.keys.files()
                    ),
                });
            }
            None => None,
        };

        let mut packages: Vec<Available> = Vec::new();
        let mut refused: Vec<Refused> = Vec::new();
        let mut covered: HashSet<&str> = HashSet::new();
        if let Some((index_url, checked)) = &checked {
            for entry in &checked.index.packages {
                covered.insert(&entry.file);
                let Some(asset) = asset(&entry.file) else {
                    refused.push(Refused {
                        name: entry.name.clone(),
                        url: index_url.clone(),
                        reason: format!(
                            "listed in index.json, but the release has no asset {}",
                            entry.file
                        ),
                    });
                    continue;
                };
                packages.push(Available {
                    repo: self.repo.to_owned(),
                    entry: entry.clone(),
                    urls: vec![asset.browser_download_url.clone()],
                    verified_by: checked.verified_by.clone(),
                });
            }
        }
        let signed = checked
            .as_ref()
            .is_some_and(|(_, c)| c.signed_timestamp.is_some());
        for asset in &release.assets {
            let Some(name) = asset.name.strip_suffix(".tar.xz") else {
                continue;
            };
            if covered.contains(asset.name.as_str())
                || packages.iter().any(|p| p.entry.name == name)
            {
                continue;
            }
            if check_package_name(name).is_err() {
                tracing::warn!(asset = %asset.name, "asset name is not a valid package name; ignored");
                continue;
            }
            let (sha256, verified_by) = match asset.sha256() {
                _ if signed => {
                    refused.push(Refused {
                        name: name.to_owned(),
                        url: url.to_owned(),
                        reason: format!(
                            "release asset {} is not listed in the signed index.json; refused",
                            asset.name
                        ),
                    });
                    continue;
                }
                Some(sha256) => (sha256.to_owned(), GITHUB_DIGEST),
                None if self.trust.allow_unverified => {
                    tracing::warn!(asset = %asset.name, "asset has no digest; offered unverified (allow_unverified = true)");
                    (String::new(), UNVERIFIED)
                }
                None => {
                    refused.push(Refused {
                        name: name.to_owned(),
                        url: url.to_owned(),
                        reason: format!(
                            "release asset {} has no sha256 digest and no signed index entry; \
                             refused (set allow_unverified = true in spk.toml to accept \
                             unverified packages)",
                            asset.name
                        ),
                    });
                    continue;
                }
            };
            packages.push(Available {
                repo: self.repo.to_owned(),
                entry: IndexEntry {
                    name: name.to_owned(),
                    version: release.tag_name.clone(),
                    kind: PackageKind::default_for(name),
                    file: asset.name.clone(),
                    sha256,
                    size: asset.size,
                    installed_size: 0,
                    description: String::new(),
                    setuid: Vec::new(),
                },
                urls: vec![asset.browser_download_url.clone()],
                verified_by: verified_by.to_owned(),
            });
        }
        for r in &refused {
            tracing::warn!(repo = %self.repo, package = %r.name, reason = %r.reason, "package refused");
        }
        let signed_timestamp = self.signed_timestamp(checked.as_ref().map(|(_, c)| c));
        let release_name = match checked {
            Some((_, c)) => c.index.release,
            None => release.tag_name,
        };
        Ok(Fetched {
            snapshot: RepoSnapshot {
                release: release_name,
                packages,
                refused,
                signed_timestamp,
                validators: Some(self.validators(url, etag, last_modified)),
            },
            changed: true,
        })
    }
}

/// Of the failures of all mirrors, the one to show: a refused index (someone may be tampering)
/// before a network failure, else the last network failure.
fn most_telling(failures: Vec<Error>) -> Option<Error> {
    let mut last = None;
    for e in failures {
        if e.kind() == ErrorKind::Verification {
            return Some(e);
        }
        last = Some(e);
    }
    last
}
