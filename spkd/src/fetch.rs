//! HTTP: one client for the daemon, and opening a package download on the first mirror that
//! answers. Bodies are streamed, never buffered whole.

use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::io::AsyncRead;

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

pub fn describe_status(status: reqwest::StatusCode) -> String {
    format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}

/// An open download: the body as a byte stream, and the URL that served it.
pub struct Download {
    pub url: String,
    pub body: Box<dyn AsyncRead + Unpin + Send>,
}

/// GET the first of `urls` that answers 200, trying mirrors in order.
pub async fn open(http: &reqwest::Client, package: &str, urls: &[String]) -> Result<Download> {
    let mut last = None;
    for url in urls {
        let reason = match http.get(url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let stream = resp.bytes_stream().map_err(std::io::Error::other);
                return Ok(Download {
                    url: url.clone(),
                    body: Box::new(tokio_util::io::StreamReader::new(stream)),
                });
            }
            Ok(resp) => describe_status(resp.status()),
            Err(e) => describe_reqwest(&e),
        };
        tracing::warn!(%url, %reason, "download failed, trying next mirror");
        last = Some(Error::Download {
            package: package.to_owned(),
            url: url.clone(),
            reason,
        });
    }
    Err(last.unwrap_or_else(|| Error::InvalidArgs(format!("{package}: no download URL"))))
}

/// Whether an I/O error came from the network stream (as opposed to decoding the bytes).
pub fn is_network_error(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        .map(describe_reqwest)
}
