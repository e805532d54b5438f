//! Staging one package: bytes flow once — socket (or cache file) → size/sha256 check (teed into
//! the cache) → xz decoder → tar checks → files in the staging directory. Only when the whole
//! stream matched the index is the package considered staged, and only then does the tarball
//! enter the cache under its sha256.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_compression::tokio::bufread::XzDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::catalog::Available;
use crate::error::{Error, Result};
use crate::fetch;
use crate::manifest::FileRecord;
use crate::progress::PackageProgress;
use crate::unpack::{self, Limits, UnpackError};
use crate::verify::{ByteCounter, Mismatch, TooLong, Verified};

/// Decoded bytes allowed after the tar end marker (padding); more is refused as a bomb.
const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// Where verified tarballs are kept, by sha256.
pub fn cache_file(cache_dir: &Path, sha256: &str) -> PathBuf {
    cache_dir.join(format!("{sha256}.tar.xz"))
}

/// Stage `pkg` into `dir` (created here), from the cache when it holds the tarball, else from
/// the network. With `unpack == false` (download-only) the tarball is only fetched into the cache.
pub async fn stage(
    http: &reqwest::Client,
    cache_dir: &Path,
    pkg: &Available,
    dir: &Path,
    unpack: bool,
    progress: &PackageProgress,
    cancel: &CancellationToken,
) -> Result<Vec<FileRecord>> {
    let name = &pkg.entry.name;
    let cached = cache_file(cache_dir, &pkg.entry.sha256);
    if let Ok(file) = tokio::fs::File::open(&cached).await {
        let source = cached.display().to_string();
        match run(
            pkg,
            Box::new(file),
            &source,
            None,
            dir,
            unpack,
            progress,
            cancel,
        )
        .await
        {
            Ok(records) => return Ok(records),
            Err(e @ (Error::HashMismatch { .. } | Error::SizeMismatch { .. })) => {
                // A damaged cache entry is not the repository's fault: drop it, fetch anew.
                tracing::warn!(package = %name, error = %e, "cached tarball is damaged; downloading again");
                let _ = std::fs::remove_file(&cached);
                progress.restart();
            }
            Err(e) => return Err(e),
        }
    }
    let download = tokio::select! {
        d = fetch::open(http, name, &pkg.urls) => d?,
        () = cancel.cancelled() => return Err(Error::Cancelled),
    };
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| Error::io(format!("creating {}", cache_dir.display()), e))?;
    let part = cached.with_extension("xz.part");
    let tee = std::fs::File::create(&part)
        .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
    let result = run(
        pkg,
        download.body,
        &download.url,
        Some(tee),
        dir,
        unpack,
        progress,
        cancel,
    )
    .await;
    match result {
        Ok(records) => {
            std::fs::rename(&part, &cached)
                .map_err(|e| Error::io(format!("caching {}", cached.display()), e))?;
            Ok(records)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    pkg: &Available,
    body: Box<dyn AsyncRead + Unpin + Send>,
    source: &str,
    tee: Option<std::fs::File>,
    dir: &Path,
    unpack: bool,
    progress: &PackageProgress,
    cancel: &CancellationToken,
) -> Result<Vec<FileRecord>> {
    let counter = Arc::new(ByteCounter::default());
    let verified = Verified::new(body, pkg.entry.size, counter.clone(), tee);
    let work = pipeline(pkg, verified, dir, unpack);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let outcome = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => progress.bytes(counter.get()),
            () = cancel.cancelled() => return Err(Error::Cancelled),
        }
    };
    progress.bytes(counter.get());
    let name = &pkg.entry.name;
    let (records, verified) = outcome.map_err(|e| classify(e, pkg, source, counter.get()))?;
    match verified.finish(&pkg.entry.sha256) {
        Ok(tee) => {
            if let Some(file) = tee {
                // The cache entry must be whole before it is named by its hash.
                file.sync_data()
                    .map_err(|e| Error::io(format!("{name}: writing cache"), e))?;
            }
            Ok(records)
        }
        Err(Mismatch::Size { expected, actual }) => Err(Error::SizeMismatch {
            package: name.clone(),
            url: source.to_owned(),
            expected,
            actual,
        }),
        Err(Mismatch::Hash { expected, actual }) => Err(Error::HashMismatch {
            package: name.clone(),
            url: source.to_owned(),
            expected,
            actual,
        }),
    }
}

type Body = Box<dyn AsyncRead + Unpin + Send>;

async fn pipeline(
    pkg: &Available,
    verified: Verified<Body>,
    dir: &Path,
    unpack: bool,
) -> Result<(Vec<FileRecord>, Verified<Body>), UnpackError> {
    if !unpack {
        let mut verified = verified;
        tokio::io::copy(&mut verified, &mut tokio::io::sink())
            .await
            .map_err(UnpackError::Read)?;
        return Ok((Vec::new(), verified));
    }
    std::fs::create_dir_all(dir).map_err(|error| UnpackError::Write {
        path: dir.to_owned(),
        error,
    })?;
    let decoder = XzDecoder::new(BufReader::with_capacity(128 * 1024, verified));
    let limits = Limits::for_package(&pkg.entry);
    let (records, decoder) = unpack::stage(decoder, dir, &pkg.entry, &limits).await?;
    // Read the xz stream to its end so its own integrity check is verified.
    let mut rest = decoder.take(MAX_TRAILING_BYTES + 1);
    let trailing = tokio::io::copy(&mut rest, &mut tokio::io::sink())
        .await
        .map_err(UnpackError::Read)?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(UnpackError::Refused {
            entry: "(end of archive)".into(),
            reason: "more than 1 MiB of data after the end of the tar archive".into(),
        });
    }
    // Then hash whatever follows the xz stream: the digest covers the whole file.
    let mut buffered = rest.into_inner().into_inner();
    tokio::io::copy(&mut buffered, &mut tokio::io::sink())
        .await
        .map_err(UnpackError::Read)?;
    Ok((records, buffered.into_inner()))
}

fn classify(e: UnpackError, pkg: &Available, source: &str, seen: u64) -> Error {
    let package = pkg.entry.name.clone();
    match e {
        UnpackError::Refused { entry, reason } => Error::UnsafeEntry {
            package,
            entry,
            reason,
        },
        UnpackError::Write { path, error } => {
            Error::io(format!("{package}: writing {}", path.display()), error)
        }
        UnpackError::Read(error) => {
            if let Some(too_long) = error.get_ref().and_then(|i| i.downcast_ref::<TooLong>()) {
                return Error::SizeMismatch {
                    package,
                    url: source.to_owned(),
                    expected: too_long.0,
                    actual: too_long.1,
                };
            }
            if let Some(reason) = fetch::is_network_error(&error) {
                return Error::Download {
                    package,
                    url: source.to_owned(),
                    reason,
                };
            }
            if seen < pkg.entry.size && error.kind() == std::io::ErrorKind::UnexpectedEof {
                return Error::Download {
                    package,
                    url: source.to_owned(),
                    reason: format!("connection closed after {seen} of {} bytes", pkg.entry.size),
                };
            }
            Error::CorruptArchive {
                package,
                reason: error.to_string(),
            }
        }
    }
}
