//! A reader that checks a package stream as it flows: it hashes and counts every byte, stops at
//! once when more bytes arrive than the index announced, and can tee the bytes into the cache
//! file. The archive is unpacked only into staging while it flows; [`Verified::finish`] decides
//! whether it may go further.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// Counts bytes for progress reporting while the reader itself is owned by the decoder chain.
#[derive(Debug, Default)]
pub struct ByteCounter(AtomicU64);

impl ByteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Verified<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
    counter: Arc<ByteCounter>,
    tee: Option<Tee>,
}

/// Where the stream is copied (the cache's `.part` file), from byte `from` on: a resumed
/// download re-reads the part already on disk, which must not be written twice.
pub struct Tee {
    pub file: std::fs::File,
    pub from: u64,
}

/// Why the stream was not what the index promised.
#[derive(Debug)]
pub enum Mismatch {
    Size { expected: u64, actual: u64 },
    Hash { expected: String, actual: String },
}

/// Carried inside the `io::Error` when copying the stream into the cache failed (a full disk):
/// the stream itself was fine.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CacheWrite(pub std::io::Error);

/// Marker carried inside the `io::Error` when a stream exceeds its announced size.
#[derive(Debug, thiserror::Error)]
#[error("stream is longer than the {0} bytes the index announced")]
pub struct TooLong(pub u64, pub u64);

impl<R> Verified<R> {
    pub fn new(inner: R, expected_size: u64, counter: Arc<ByteCounter>, tee: Option<Tee>) -> Self {
        Verified {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit: expected_size,
            counter,
            tee,
        }
    }

    /// Bytes seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Compare what flowed with what the index says; the tee file is flushed by the caller.
    /// `expected_sha256` is `None` only for an unverified package (allowed by the config):
    /// then the size is all that is checked.
    pub fn finish(self, expected_sha256: Option<&str>) -> Result<Option<Tee>, Mismatch> {
        if self.count != self.limit {
            return Err(Mismatch::Size {
                expected: self.limit,
                actual: self.count,
            });
        }
        let Some(expected_sha256) = expected_sha256 else {
            return Ok(self.tee);
        };
        let actual = hex::encode(self.hasher.finalize());
        if actual != expected_sha256 {
            return Err(Mismatch::Hash {
                expected: expected_sha256.to_owned(),
                actual,
            });
        }
        Ok(self.tee)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verified<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                let start = this.count;
                this.count += fresh.len() as u64;
                if this.count > this.limit {
                    // Hand back nothing of the excess read: the caller sees only the error.
                    buf.set_filled(before);
                    return Poll::Ready(Err(std::io::Error::other(TooLong(
                        this.limit, this.count,
                    ))));
                }
                this.hasher.update(fresh);
                this.counter
                    .0
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                if let Some(tee) = this.tee.as_mut() {
                    let skip = tee.from.saturating_sub(start).min(fresh.len() as u64) as usize;
                    // The cache file sits on a local disk: a synchronous write to the page
                    // cache is cheaper than a round-trip through a blocking pool.
                    if let Err(e) = tee.file.write_all(&fresh[skip..]) {
                        return Poll::Ready(Err(std::io::Error::new(e.kind(), CacheWrite(e))));
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn accepts_exact_and_refuses_long_or_wrong() {
        let data = b"hello world".to_vec();
        let sha = hex::encode(Sha256::digest(&data));

        let mut ok = Verified::new(&data[..], 11, Arc::default(), None);
        let mut sink = Vec::new();
        ok.read_to_end(&mut sink).await.unwrap();
        assert!(ok.finish(Some(&sha)).is_ok());

        let mut long = Verified::new(&data[..], 5, Arc::default(), None);
        assert!(long.read_to_end(&mut Vec::new()).await.is_err());

        let mut wrong = Verified::new(&data[..], 11, Arc::default(), None);
        wrong.read_to_end(&mut Vec::new()).await.unwrap();
        assert!(matches!(
            wrong.finish(Some(&"0".repeat(64))),
            Err(Mismatch::Hash { .. })
        ));
    }
}
