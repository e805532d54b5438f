//! Fetching what a repository offers: `index` sources (a base URL with `index.json` and its
//! minisign signature, then mirrors in order) and `github` sources (a release's assets through
//! the REST API, or the signed index the release carries).
//!
//! What is trusted: with keys in `etc/spk/keys/`, only an index signed by one of them, not older
//! than the last one accepted (see [`crate::signature`]); without keys, an index's sha256 fields
//! or GitHub's asset digests; an asset with neither only when `allow_unverified = true`.
//! What is unsigned is trusted only as far as the transport vouches for it: an unsigned index
//! or a GitHub digest must come over https (or from a loopback address, where nothing crosses
//! a network), unless the repository says `allow_insecure = true`.
//! Every fetch is conditional on the validators of the last one (`If-None-Match`,
//! `If-Modified-Since`), so an unchanged repository costs one request answered 304, no body.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

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
    /// The exact `index.json` the packages came from, when there was one (an `index` source,
    /// or a GitHub release carrying one); `None` for a 304 and for digests-only releases.
    pub index: Option<OriginIndex>,
}

/// An `index.json` as its origin served it, byte for byte (what a mirror passes on).
#[derive(Debug, Clone)]
pub struct OriginIndex {
    pub url: String,
    pub bytes: Vec<u8>,
    /// The text of `index.json.minisig`: verified when there were trusted keys; without keys
    /// fetched only by [`fetch_origin`], unchecked, and `None` when the origin has none.
    pub signature: Option<Vec<u8>>,
}

/// Refresh repository `repo`; `previous` is its last accepted snapshot (for the conditional
/// request and the rollback guard). `in_flight` always holds the URL being fetched, for the
/// message of a caller that gives up waiting.
pub async fn fetch(
    http: &reqwest::Client,
    repo: &str,
    source: &SourceConfig,
    trust: Trust<'_>,
    allow_insecure: bool,
    previous: Option<&RepoSnapshot>,
    in_flight: &Mutex<String>,
) -> Result<Fetched> {
    let ctx = Ctx {
        http,
        repo,
        keep_signature: false,
        // A stored snapshot is reused only under the same trust settings and the same source
        // (a new mirror must appear in the download URLs).
        state: format!(
            "{} source:{source:?} allow_insecure:{allow_insecure}",
            trust.fingerprint()
        ),
        trust,
        allow_insecure,
        previous,
        in_flight,
    };
    ctx.fetch(source).await
}

/// What a mirror copies from its origin: the release [`fetch`] would offer (checked the same
/// way, unconditionally), with the origin's index and its signature as served. Without
/// trusted keys the signature is fetched too (unchecked), so that the mirror can pass it on
/// to machines that check it themselves.
pub async fn fetch_origin(
    http: &reqwest::Client,
    name: &str,
    source: &SourceConfig,
    trust: Trust<'_>,
    allow_insecure: bool,
) -> Result<Fetched> {
    let in_flight = Mutex::new(String::new());
    let ctx = Ctx {
        http,
        repo: name,
        keep_signature: true,
        state: String::new(),
        trust,
        allow_insecure,
        previous: None,
        in_flight: &in_flight,
    };
    ctx.fetch(source).await
}

impl Ctx<'_> {
    async fn fetch(&self, source: &SourceConfig) -> Result<Fetched> {
        match source {
            SourceConfig::Index { urls } => self.fetch_index(urls).await,
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
                self.fetch_github(&url).await
            }
        }
    }
}

/// Join a base URL and a file name (the base may or may not end in `/`).
pub fn join(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

/// Whether what `url` serves can only have been changed by its server: https, or plain http
/// to a loopback address (127.0.0.0/8, ::1), where nothing crosses a network (the tests, a
/// local mirror process). A host name, even `localhost`, is not trusted to resolve there.
pub fn is_secure_transport(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            host.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
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
        /// Whether it came over a secure transport (see [`is_secure_transport`]), judged by
        /// the URL that answered after any redirect.
        secure: bool,
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
    let secure = is_secure_transport(resp.url());
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
        secure,
    })
}

/// An index that passed the trust checks.
struct CheckedIndex {
    index: Index,
    /// The exact bytes and signature it was read from.
    origin: OriginIndex,
    verified_by: String,
    /// Whether a trusted key signed it.
    signed: bool,
    /// Its signed time: the `timestamp` field, else the trusted comment's `timestamp:`
    /// (`None` when unsigned, or signed without either).
    signed_time: Option<u64>,
}

impl CheckedIndex {
    /// When it says it was published (signed, or as the unsigned index claims).
    fn published(&self) -> Option<u64> {
        self.signed_time.or(self.index.timestamp)
    }
}

/// The parts of GitHub's release JSON that spk reads.
#[derive(Debug, Deserialize)]
struct Release {
    tag_name: String,
    #[serde(default)]
    assets: Vec<Asset>,
    /// `2026-11-25T12:00:00Z` (absent for a draft).
    #[serde(default)]
    published_at: Option<String>,
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
    /// Fetch `index.json.minisig` even without trusted keys (for [`fetch_origin`]).
    keep_signature: bool,
    /// What a snapshot was accepted under; see [`Validators::trust`].
    state: String,
    trust: Trust<'a>,
    /// The repository's `allow_insecure`.
    allow_insecure: bool,
    previous: Option<&'a RepoSnapshot>,
    in_flight: &'a Mutex<String>,
}

impl Ctx<'_> {
    /// [`get_document`], noting the URL as the one in flight.
    async fn get(
        &self,
        url: &str,
        validators: Option<&Validators>,
        github: bool,
        limit: usize,
    ) -> std::result::Result<Document, FetchFailure> {
        url.clone_into(
            &mut self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        get_document(self.http, url, validators, github, limit).await
    }

    /// GET a small document unconditionally: its bytes and whether the transport was secure.
    async fn get_small(&self, url: &str) -> std::result::Result<(Vec<u8>, bool), FetchFailure> {
        match self.get(url, None, false, MAX_INDEX_BYTES).await? {
            Document::Fresh { bytes, secure, .. } => Ok((bytes, secure)),
            Document::NotModified => unreachable!("an unconditional GET is never answered 304"),
        }
    }

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
            index: None,
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

    /// Check `bytes`, fetched from `url` (over a secure transport or not), as an index: with
    /// trusted keys, its signature (from `signature_url`, `None` when there is none) and its
    /// signed time first.
    async fn check_index(
        &self,
        url: &str,
        bytes: &[u8],
        secure: bool,
        signature_url: Option<&str>,
    ) -> Result<CheckedIndex> {
        let bad = |reason: String| Error::BadIndex {
            url: url.to_owned(),
            reason,
        };
        let keys = self.trust.keys;
        if keys.is_empty() {
            if !secure && !self.allow_insecure {
                return Err(bad(format!(
                    "an unsigned index over plain http is refused: anyone on the way could \
                     change it and the packages it lists. Use an https URL, trust the \
                     publisher's key (a *.pub file in {}), or set allow_insecure = true for \
                     repository '{}'",
                    keys.dir.display(),
                    self.repo
                )));
            }
            let index = Index::parse(bytes).map_err(bad)?;
            let signature = match signature_url {
                Some(signature_url) if self.keep_signature => {
                    self.optional_signature(signature_url).await?
                }
                _ => None,
            };
            return Ok(CheckedIndex {
                index,
                origin: OriginIndex {
                    url: url.to_owned(),
                    bytes: bytes.to_vec(),
                    signature,
                },
                verified_by: UNSIGNED_INDEX.to_owned(),
                signed: false,
                signed_time: None,
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
        let signature = match self
            .get(signature_url, None, false, MAX_SIGNATURE_BYTES)
            .await
        {
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
        let verified = keys.verify(bytes, &signature).map_err(&bad)?;
        let verified_by = format!("signed index (key {})", verified.key.name());
        let index = Index::parse(bytes).map_err(&bad)?;
        // The index's own field wins; an index without one is dated by the signature.
        let signed_time = index
            .timestamp
            .or_else(|| signature::trusted_comment_timestamp(&verified.trusted_comment));
        let seen = self.previous.and_then(|p| p.signed_timestamp);
        signature::check_not_rolled_back(seen, signed_time).map_err(&bad)?;
        Ok(CheckedIndex {
            index,
            origin: OriginIndex {
                url: url.to_owned(),
                bytes: bytes.to_vec(),
                signature: Some(signature),
            },
            verified_by,
            signed: true,
            signed_time,
        })
    }

    /// `index.json.minisig` at `url` if the origin has one (404 says it has not).
    async fn optional_signature(&self, url: &str) -> Result<Option<Vec<u8>>> {
        match self.get(url, None, false, MAX_SIGNATURE_BYTES).await {
            Ok(Document::Fresh { bytes, .. }) => Ok(Some(bytes)),
            Ok(Document::NotModified) => unreachable!("an unconditional GET is never answered 304"),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(Error::Index {
                url: url.to_owned(),
                reason: f.reason,
            }),
        }
    }

    /// The rollback guard after accepting `checked`: it only rises (and an undated index
    /// leaves it where it was).
    fn signed_timestamp(&self, checked: Option<&CheckedIndex>) -> Option<u64> {
        let before = self
            .previous
            .and_then(|p| p.signed_timestamp)
            .filter(|&t| t > 0);
        let now = checked.and_then(|c| c.signed_time);
        before.max(now)
    }

    async fn fetch_index(&self, bases: &[String]) -> Result<Fetched> {
        let mut failures = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let url = join(base, "index.json");
            let document = self
                .get(&url, self.validators_for(&url), false, MAX_INDEX_BYTES)
                .await;
            let (bytes, etag, last_modified, secure) = match document {
                Ok(Document::NotModified) => return Ok(self.unchanged(&url)),
                Ok(Document::Fresh {
                    bytes,
                    etag,
                    last_modified,
                    secure,
                }) => (bytes, etag, last_modified, secure),
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
            let checked = match self
                .check_index(&url, &bytes, secure, Some(&signature_url))
                .await
            {
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
            let (published, signed) = (checked.published(), checked.signed_time.is_some());
            let origin = checked.origin;
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
                    published,
                    signed,
                    validators: Some(self.validators(&url, etag, last_modified)),
                },
                changed: true,
                index: Some(origin),
            });
        }
        Err(most_telling(failures)
            .unwrap_or_else(|| Error::InvalidArgs(format!("repo '{}' has no URL", self.repo))))
    }

    async fn fetch_github(&self, url: &str) -> Result<Fetched> {
        let document = self
            .get(url, self.validators_for(url), true, MAX_INDEX_BYTES)
            .await
            .map_err(|f| Error::Index {
                url: url.to_owned(),
                reason: f.reason,
            })?;
        let (bytes, etag, last_modified, secure) = match document {
            Document::NotModified => return Ok(self.unchanged(url)),
            Document::Fresh {
                bytes,
                etag,
                last_modified,
                secure,
            } => (bytes, etag, last_modified, secure),
        };
        // A digest is only as good as the channel it came through.
        let digests_trusted = secure || self.allow_insecure;
        let release: Release = serde_json::from_slice(&bytes).map_err(|e| Error::BadIndex {
            url: url.to_owned(),
            reason: format!("not a GitHub release: {e}"),
        })?;
        let asset = |name: &str| release.assets.iter().find(|a| a.name == name);

        // A signed index among the assets wins; with trusted keys it is required.
        let checked = match asset("index.json") {
            Some(index_asset) => {
                let index_url = &index_asset.browser_download_url;
                let (bytes, index_secure) =
                    self.get_small(index_url).await.map_err(|f| Error::Index {
                        url: index_url.clone(),
                        reason: f.reason,
                    })?;
                let signature_url =
                    asset("index.json.minisig").map(|a| a.browser_download_url.as_str());
                Some((
                    index_url.clone(),
                    self.check_index(index_url, &bytes, index_secure, signature_url)
                        .await?,
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
        let signed = checked.as_ref().is_some_and(|(_, c)| c.signed);
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
            let digest = asset.sha256().filter(|_| digests_trusted);
            let (sha256, verified_by) = match digest {
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
                    tracing::warn!(asset = %asset.name, "asset has no trusted digest; offered unverified (allow_unverified = true)");
                    (String::new(), UNVERIFIED)
                }
                None if asset.sha256().is_some() => {
                    refused.push(Refused {
                        name: name.to_owned(),
                        url: url.to_owned(),
                        reason: format!(
                            "the digest of release asset {} came over plain http, where anyone \
                             on the way could change it; refused (use an https api URL, a \
                             signed index, or set allow_insecure = true for repository '{}')",
                            asset.name, self.repo
                        ),
                    });
                    continue;
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
                    owners: Vec::new(),
                    capabilities: Default::default(),
                },
                urls: vec![asset.browser_download_url.clone()],
                verified_by: verified_by.to_owned(),
            });
        }
        for r in &refused {
            tracing::warn!(repo = %self.repo, package = %r.name, reason = %r.reason, "package refused");
        }
        let signed_timestamp = self.signed_timestamp(checked.as_ref().map(|(_, c)| c));
        let signed_time = checked.as_ref().and_then(|(_, c)| c.signed_time);
        let published = checked
            .as_ref()
            .and_then(|(_, c)| c.published())
            .or_else(|| {
                release
                    .published_at
                    .as_deref()
                    .and_then(signature::parse_utc)
            });
        let (release_name, origin) = match checked {
            Some((_, c)) => (c.index.release, Some(c.origin)),
            None => (release.tag_name, None),
        };
        Ok(Fetched {
            snapshot: RepoSnapshot {
                release: release_name,
                packages,
                refused,
                signed_timestamp,
                published,
                signed: signed_time.is_some(),
                validators: Some(self.validators(url, etag, last_modified)),
            },
            changed: true,
            index: origin,
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
