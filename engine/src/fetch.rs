//! HTTP downloads that survive a bad network: a background task fetches the body, resuming
//! with `Range` + `If-Range` after a cut or stall, retrying transient failures with backoff, and
//! falling through the mirrors in order. The consumer sees one continuous byte stream (through a
//! bounded channel, so a slow disk slows the socket rather than filling memory).
//!
//! The client never follows a redirect from https to plain http: what a TLS connection
//! vouches for must not be handed to one that vouches for nothing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Most redirects followed for one request (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A redirect refused by [`redirect_policy`]; its text is the whole story.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RedirectRefused(String);

/// Follow up to [`MAX_REDIRECTS`] redirects, but never from https to anything else: once a
/// chain was on https, a plain http hop would hand its trust to whoever sits on the way.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let message = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(RedirectRefused(message));
        }
        let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if from_https && attempt.url().scheme() != "https" {
            let from = attempt
                .previous()
                .last()
                .map(ToString::to_string)
                .unwrap_or_default();
            let message = format!(
                "refused a redirect from {from} to {}: spk never follows https to plain http",
                attempt.url()
            );
            return attempt.error(RedirectRefused(message));
        }
        attempt.follow()
    })
}

/// The HTTP client of repositories with this proxy setting. What it sends is the same on every
/// machine (a fixed `User-Agent`, no `Cache-Control`, `Pragma` or machine id), so that a shared
/// caching proxy can answer a fleet from one copy.
pub fn client(
    connect_timeout: Duration,
    stall_timeout: Duration,
    proxy: &crate::proxy::ProxySetting,
) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder();
    crate::proxy::configure(builder, proxy)?
        .user_agent(concat!("spk/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        // Per read: a stalled connection is abandoned, a slow but moving one is not.
        .read_timeout(stall_timeout)
        .redirect(redirect_policy())
        .build()
        .map_err(|e| Error::InvalidArgs(format!("HTTP client: {e}")))
}

/// A human sentence for a failed request: the innermost cause is usually the useful one.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out waiting for the server".to_owned();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RedirectRefused>() {
            return refused.0.clone();
        }
        source = s.source();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

pub fn describe_status(status: StatusCode) -> String {
    format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// How hard to try before giving up on a download.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Further attempts after the first, per mirror.
    pub retries: u32,
    /// First pause between attempts; doubles each time, up to 8 s.
    pub backoff: Duration,
}

/// The download failed for good: carried inside the stream's `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("download of {url} failed: {reason}")]
pub struct DownloadFailed {
    pub url: String,
    pub reason: String,
}

/// A download in progress: its bytes, from `offset` on, and the URL serving them now.
pub struct Download {
    pub body: Box<dyn AsyncRead + Unpin + Send>,
    pub url: Arc<Mutex<String>>,
    /// The validator (strong ETag, else Last-Modified) of what the server sends, once it
    /// answered: kept beside an interrupted `.part` so that its resume can ask `If-Range`.
    pub validator: Arc<Mutex<Option<String>>>,
    /// Where the body starts, once the first answer came (see [`Download::start_offset`]).
    starts_at: Option<oneshot::Receiver<u64>>,
    /// What `start_offset` says when no answer ever came (the body then carries the error).
    planned_start: u64,
}

impl Download {
    pub fn current_url(&self) -> String {
        self.url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The validator of what was served, if the server gave one.
    pub fn validator(&self) -> Option<String> {
        self.validator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The offset of the file at which `body` starts: the offset asked for when the server
    /// confirmed the range (206 to `Range` + `If-Range`), else 0 (the file changed, the server
    /// ignores ranges, or there was no validator to ask with). Waits for the first answer.
    pub async fn start_offset(&mut self) -> u64 {
        match self.starts_at.take() {
            Some(rx) => rx.await.unwrap_or(self.planned_start),
            None => self.planned_start,
        }
    }
}

/// Start downloading `urls` (mirrors in order) from byte `offset`.
pub fn start(
    http: &reqwest::Client,
    urls: &[String],
    offset: u64,
    policy: &RetryPolicy,
) -> Download {
    spawn(http, urls, offset, None, policy)
}

/// Go on with a download whose first `offset` bytes are on disk already, served before with
/// `validator`. The server is asked for the rest only if the file is still the same
/// (`If-Range`); without a validator nothing can tell, and the download starts over at 0.
/// Either way, [`Download::start_offset`] says where the body starts.
pub fn resume(
    http: &reqwest::Client,
    urls: &[String],
    offset: u64,
    validator: Option<String>,
    policy: &RetryPolicy,
) -> Download {
    if validator.is_none() && offset > 0 {
        tracing::info!(
            bytes = offset,
            "no validator kept for the interrupted download; starting over rather than resuming blind"
        );
    }
    let offset = if validator.is_some() { offset } else { 0 };
    spawn(http, urls, offset, validator, policy)
}

fn spawn(
    http: &reqwest::Client,
    urls: &[String],
    offset: u64,
    validator: Option<String>,
    policy: &RetryPolicy,
) -> Download {
    // A few chunks of read-ahead: enough to keep the socket busy while the decoder works,
    // little enough that two downloads in flight stay far below the memory budget.
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let (starts_tx, starts_rx) = oneshot::channel();
    let url = Arc::new(Mutex::new(urls.first().cloned().unwrap_or_default()));
    let shared_validator = Arc::new(Mutex::new(validator.clone()));
    let task = Task {
        http: http.clone(),
        urls: urls.to_vec(),
        offset,
        policy: policy.clone(),
        tx,
        current: url.clone(),
        validator,
        shared_validator: shared_validator.clone(),
        starts_at: Some(starts_tx),
    };
    tokio::spawn(task.run());
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Download {
        body: Box::new(tokio_util::io::StreamReader::new(Box::pin(stream))),
        url,
        validator: shared_validator,
        starts_at: Some(starts_rx),
        planned_start: offset,
    }
}

struct Task {
    http: reqwest::Client,
    urls: Vec<String>,
    offset: u64,
    policy: RetryPolicy,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    current: Arc<Mutex<String>>,
    /// ETag (or Last-Modified) of what was served so far, for `If-Range`.
    validator: Option<String>,
    /// The same, for the consumer (see [`Download::validator`]).
    shared_validator: Arc<Mutex<Option<String>>>,
    /// Told where the body starts at the first answer; `None` afterwards.
    starts_at: Option<oneshot::Sender<u64>>,
}

/// What one attempt came to.
enum Attempt {
    /// The body ended cleanly (whether its size is right is the verifier's call).
    Complete,
    /// The consumer went away (cancelled, or it failed on its own).
    Abandoned,
    /// Worth trying again (cut, stall, 5xx): resume from `offset`.
    Transient(String),
    /// This mirror will not serve it (404, 403…): go to the next one.
    Permanent(String),
}

impl Task {
    async fn run(mut self) {
        let mut last = (String::new(), "no download URL".to_owned());
        for i in 0..self.urls.len() {
            let url = self.urls[i].clone();
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) = url.clone();
            let mut pause = self.policy.backoff;
            for attempt in 0..=self.policy.retries {
                if attempt > 0 {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
                match self.attempt(&url).await {
                    Attempt::Complete | Attempt::Abandoned => return,
                    Attempt::Transient(reason) => {
                        tracing::warn!(%url, %reason, offset = self.offset, "download interrupted; retrying");
                        last = (url.clone(), reason);
                    }
                    Attempt::Permanent(reason) => {
                        tracing::warn!(%url, %reason, "download refused; trying the next mirror");
                        last = (url.clone(), reason);
                        break;
                    }
                }
            }
        }
        let failed = DownloadFailed {
            url: last.0,
            reason: last.1,
        };
        let _ = self.tx.send(Err(std::io::Error::other(failed))).await;
    }

    async fn attempt(&mut self, url: &str) -> Attempt {
        let mut request = self.http.get(url);
        if self.offset > 0 {
            request = request.header(RANGE, format!("bytes={}-", self.offset));
            if let Some(v) = &self.validator {
                request = request.header(IF_RANGE, v.as_str());
            }
        }
        let mut resp = match request.send().await {
            Ok(r) => r,
            // A refused redirect is this mirror's answer, not a hiccup.
            Err(e) if e.is_redirect() => return Attempt::Permanent(describe_reqwest(&e)),
            Err(e) => return Attempt::Transient(describe_reqwest(&e)),
        };
        let status = resp.status();
        // Bytes of the body that were already delivered (a 200 answer to a range request).
        let mut skip = 0;
        match status {
            StatusCode::PARTIAL_CONTENT if self.offset > 0 => {
                let starts_right = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&format!("bytes {}-", self.offset)));
                if !starts_right {
                    return Attempt::Permanent("server answered a different byte range".into());
                }
                if let Some(tx) = self.starts_at.take() {
                    let _ = tx.send(self.offset);
                }
            }
            StatusCode::OK if self.starts_at.is_some() => {
                // The first answer, and the whole file: the part on disk is not the start
                // of it (it changed, or this server ignores ranges). Start over.
                if self.offset > 0 {
                    tracing::info!(%url, offset = self.offset, "the server sent the whole file, not the rest: starting over");
                }
                self.offset = 0;
                if let Some(tx) = self.starts_at.take() {
                    let _ = tx.send(0);
                }
            }
            StatusCode::OK => skip = self.offset,
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                return Attempt::Transient(describe_status(s));
            }
            s => return Attempt::Permanent(describe_status(s)),
        }
        let headers = resp.headers();
        let validator = headers
            .get(ETAG)
            .filter(|v| !v.as_bytes().starts_with(b"W/"))
            .or_else(|| headers.get(LAST_MODIFIED))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if validator.is_some() {
            self.validator.clone_from(&validator);
            *self
                .shared_validator
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = validator;
        }
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                // HTTP framing (Content-Length, chunked) tells a cut connection, which is an
                // error here, from a body that ended: a file of the wrong size is the
                // verifier's to report, not a reason to retry.
                Ok(None) => return Attempt::Complete,
                Err(e) => return Attempt::Transient(describe_reqwest(&e)),
            };
            let chunk = if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk.slice(n as usize..)
            } else {
                chunk
            };
            if chunk.is_empty() {
                continue;
            }
            self.offset += chunk.len() as u64;
            if self.tx.send(Ok(chunk)).await.is_err() {
                return Attempt::Abandoned;
            }
        }
    }
}

/// The final failure of a download, if that is what this stream error is.
pub fn download_failure(e: &std::io::Error) -> Option<&DownloadFailed> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DownloadFailed>())
}
