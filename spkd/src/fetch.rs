//! HTTP downloads that survive a bad network: a background task fetches the body, resuming
//! with `Range` + `If-Range` after a cut or stall, retrying transient failures with backoff, and
//! falling through the mirrors in order. The consumer sees one continuous byte stream (through a
//! bounded channel, so a slow disk slows the socket rather than filling memory).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

pub fn client(connect_timeout: Duration, stall_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("spk/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        // Per read: a stalled connection is abandoned, a slow but moving one is not.
        .read_timeout(stall_timeout)
        .build()
        .map_err(|e| Error::InvalidArgs(format!("HTTP client: {e}")))
}

/// A human sentence for a failed request: the innermost cause is usually the useful one.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out waiting for the server".to_owned();
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
}

impl Download {
    pub fn current_url(&self) -> String {
        self.url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Start downloading `urls` (mirrors in order) from byte `offset`.
pub fn start(
    http: &reqwest::Client,
    urls: &[String],
    offset: u64,
    policy: &RetryPolicy,
) -> Download {
    // A few chunks of read-ahead: enough to keep the socket busy while the decoder works,
    // little enough that two downloads in flight stay far below the memory budget.
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let url = Arc::new(Mutex::new(urls.first().cloned().unwrap_or_default()));
    let task = Task {
        http: http.clone(),
        urls: urls.to_vec(),
        offset,
        policy: policy.clone(),
        tx,
        current: url.clone(),
        validator: None,
    };
    tokio::spawn(task.run());
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Download {
        body: Box::new(tokio_util::io::StreamReader::new(Box::pin(stream))),
        url,
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
            self.validator = validator;
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
