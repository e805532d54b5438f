//! Fetching and unpacking one package into its staging directory: bytes flow once — socket (or
//! cache file) → size/sha256 check (teed into the cache) → xz decoder → tar checks → files in
//! the staging directory. Only when the whole stream matched the index is the package
//! considered unpacked, and only then does the tarball enter the cache under its sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_compression::tokio::bufread::XzDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;

use crate::catalog::Available;
use crate::error::{Error, Result};
use crate::fetch;
use crate::progress::{PackageProgress, Reporter};
use crate::unpack::{self, Limits, UnpackError, Unpacked};
use crate::verify::{ByteCounter, Mismatch, Tee, TooLong, Verified};

/// Most memory one xz decoder may use: enough for `xz -9` (64 MiB dictionary), refusing streams
/// crafted to make the daemon allocate without bound.
const XZ_MEMORY_LIMIT: u64 = 80 << 20;

/// Decoded bytes allowed after the tar end marker (padding); more is refused as a bomb.
const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// What [`fetch_and_unpack`] does with a package's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only fetch the tarball into the cache (download-only).
    Fetch,
    /// Decode and unpack in one task: the least CPU per package, for when other packages keep
    /// every core busy anyway.
    Unpack,
    /// Decode on a thread of its own beside the unpacker: this package unpacks faster (the
    /// checks, hashes and writes overlap with decoding) at some CPU cost, worth it when a core
    /// would otherwise idle (the last packages of a transaction).
    UnpackThreaded,
}

/// What every package of one transaction is fetched with: built once per transaction, cloned
/// into each package's task (every field is a handle or small).
#[derive(Clone)]
pub struct FetchContext {
    pub http: reqwest::Client,
    pub retry: fetch::RetryPolicy,
    /// The download cache, where verified tarballs are kept by sha256.
    pub cache_dir: PathBuf,
    /// The transaction's progress; each package reports through its own [`PackageProgress`].
    pub reporter: Reporter,
    /// Cancelled with the transaction, or when another package failed.
    pub cancel: CancellationToken,
}

/// One package to fetch and unpack.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub pkg: &'a Available,
    /// Its staging directory (created here).
    pub dir: &'a Path,
    pub mode: Mode,
    pub progress: &'a PackageProgress,
}

/// Fetch `target.pkg` and unpack it into `target.dir`: from the cache when it holds the
/// tarball, else from the network (resuming a `.part` left by an interrupted download).
pub async fn fetch_and_unpack(ctx: &FetchContext, target: Target<'_>) -> Result<Unpacked> {
    let FetchContext {
        http,
        retry,
        cache_dir,
        cancel,
        ..
    } = ctx;
    let Target {
        pkg, dir, progress, ..
    } = target;
    let name = &pkg.entry.name;
    if pkg.is_unverified() {
        // No digest (allowed by `allow_unverified`): never read from or put into the cache,
        // which is named by verified sha256, and no `.part` resumed across transactions, as
        // nothing could tell a stale part from a good one.
        progress.start(false);
        let download = fetch::start(http, &pkg.urls, 0, retry);
        let source = Source {
            url: download.url.clone(),
        };
        return verify_and_unpack(target, download.body, &source, None, cancel).await;
    }
    let cached = crate::cache::file(cache_dir, &pkg.entry.sha256);
    if let Ok(file) = tokio::fs::File::open(&cached).await {
        progress.start(true);
        let source = Source::fixed(cached.display().to_string());
        match verify_and_unpack(target, Box::new(file), &source, None, cancel).await {
            Ok(records) => return Ok(records),
            // Nowhere else to get it (a rollback): the damaged copy is the end of it.
            Err(e) if e.kind() == crate::error::ErrorKind::Verification && pkg.urls.is_empty() => {
                tracing::warn!(package = %name, error = %e, "cached tarball is damaged");
                let _ = std::fs::remove_dir_all(dir);
                return Err(Error::DamagedCache {
                    package: name.clone(),
                    version: pkg.entry.version.clone(),
                    path: cached.display().to_string(),
                    reason: e.to_string(),
                });
            }
            Err(e) if e.kind() == crate::error::ErrorKind::Verification => {
                // A damaged cache entry is not the repository's fault: drop it, fetch anew (a
                // hostile archive is refused again from the download).
                tracing::warn!(package = %name, error = %e, "cached tarball is damaged; downloading again");
                let _ = std::fs::remove_file(&cached);
                let _ = std::fs::remove_dir_all(dir);
                progress.restart();
            }
            Err(e) => return Err(e),
        }
    }
    if pkg.urls.is_empty() {
        return Err(Error::NotKept(format!(
            "{name} {}: its tarball is no longer in the cache",
            pkg.entry.version
        )));
    }
    progress.start(false);
    create_dir(cache_dir)?;
    let part = cached.with_extension("xz.part");
    let (body, tee, source, validator) = resume_or_start(ctx, pkg, &part).await?;
    let result = verify_and_unpack(target, body, &source, Some(tee), cancel).await;
    let kept_validator = part_validator(&part);
    match result {
        Ok(records) => {
            let _ = std::fs::remove_file(&kept_validator);
            std::fs::rename(&part, &cached)
                .map_err(|e| Error::io(format!("caching {}", cached.display()), e))?;
            Ok(records)
        }
        // What arrived so far is good: keep it, with what identifies the file it is the start
        // of, so the next attempt resumes (`If-Range`) or, if the file changed, starts over.
        Err(e @ (Error::Download { .. } | Error::Cancelled)) => {
            let kept = validator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            match kept {
                Some(v) => {
                    let _ = std::fs::write(&kept_validator, v);
                }
                None => {
                    let _ = std::fs::remove_file(&kept_validator);
                }
            }
            Err(e)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&kept_validator);
            Err(e)
        }
    }
}

/// Beside `NAME.part`: the validator (ETag or Last-Modified) of the file whose start it holds.
fn part_validator(part: &Path) -> std::path::PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(".validator");
    name.into()
}

/// The validator kept for a `.part`, if it looks like one (a header value, short).
fn read_part_validator(part: &Path) -> Option<String> {
    let text = std::fs::read_to_string(part_validator(part)).ok()?;
    let ok =
        !text.is_empty() && text.len() <= 256 && text.bytes().all(|b| (0x20..0x7f).contains(&b));
    ok.then_some(text)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Where the bytes come from, for error messages: the URL serving them now.
struct Source {
    url: Arc<std::sync::Mutex<String>>,
}

impl Source {
    fn fixed(s: String) -> Source {
        Source {
            url: Arc::new(std::sync::Mutex::new(s)),
        }
    }

    fn get(&self) -> String {
        self.url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

type Body = Box<dyn AsyncRead + Unpin + Send>;

/// The download's validator, shared with its task (see [`fetch::Download::validator`]).
type SharedValidator = Arc<std::sync::Mutex<Option<String>>>;

/// The byte stream of a package: the `.part` already on disk (if any), then the network from
/// where it ends, when the server confirms the file is the same (`If-Range` with the kept
/// validator); else the whole file from the network, the `.part` started over. Returns the
/// stream, the tee into the `.part`, the source for messages and the download's validator.
async fn resume_or_start(
    ctx: &FetchContext,
    pkg: &Available,
    part: &Path,
) -> Result<(Body, Tee, Source, SharedValidator)> {
    let FetchContext {
        http,
        retry,
        cancel,
        ..
    } = ctx;
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let have = if have >= pkg.entry.size { 0 } else { have };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(|e| Error::io(format!("opening {}", part.display()), e))?;
    let mut download = if have == 0 {
        fetch::start(http, &pkg.urls, 0, retry)
    } else {
        let validator = read_part_validator(part);
        tracing::info!(package = %pkg.entry.name, bytes = have, ?validator, "resuming an interrupted download");
        fetch::resume(http, &pkg.urls, have, validator, retry)
    };
    let have = tokio::select! {
        at = download.start_offset() => at,
        () = cancel.cancelled() => return Err(Error::Cancelled),
    };
    if have == 0 {
        file.set_len(0)
            .map_err(|e| Error::io(format!("truncating {}", part.display()), e))?;
    }
    let source = Source {
        url: download.url.clone(),
    };
    let validator = download.validator.clone();
    let body: Body = if have > 0 {
        let on_disk = tokio::fs::File::open(part)
            .await
            .map_err(|e| Error::io(format!("opening {}", part.display()), e))?
            .take(have);
        Box::new(on_disk.chain(download.body))
    } else {
        download.body
    };
    Ok((body, Tee { file, from: have }, source, validator))
}

/// Check `body` against the index entry while unpacking it (per `target.mode`), reporting
/// progress; the result stands only if the whole stream matched.
async fn verify_and_unpack(
    target: Target<'_>,
    body: Body,
    source: &Source,
    tee: Option<Tee>,
    cancel: &CancellationToken,
) -> Result<Unpacked> {
    let Target {
        pkg,
        dir,
        mode,
        progress,
    } = target;
    let counter = Arc::new(ByteCounter::default());
    let verified = Verified::new(body, pkg.entry.size, counter.clone(), tee);
    let work = pipeline(pkg, verified, dir, mode);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let outcome = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => {
                let done = counter.get();
                progress.bytes(done);
                if done >= pkg.entry.size && mode != Mode::Fetch {
                    progress.unpacking();
                }
            }
            () = cancel.cancelled() => return Err(Error::Cancelled),
        }
    };
    progress.bytes(counter.get());
    let name = &pkg.entry.name;
    let source = source.get();
    let source = source.as_str();
    let (records, verified) = outcome.map_err(|e| classify(e, pkg, source, counter.get()))?;
    let expected = (!pkg.is_unverified()).then_some(pkg.entry.sha256.as_str());
    match verified.finish(expected) {
        // No fsync of the cache entry: a crash can leave it short or garbled, but a cached
        // tarball is verified again every time it is read (and dropped when it does not match),
        // and the commit's syncfs of the file system flushes it anyway.
        Ok(_) => Ok(records),
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

async fn pipeline(
    pkg: &Available,
    verified: Verified<Body>,
    dir: &Path,
    mode: Mode,
) -> Result<(Unpacked, Verified<Body>), UnpackError> {
    if mode == Mode::Fetch {
        let mut verified = verified;
        tokio::io::copy(&mut verified, &mut tokio::io::sink())
            .await
            .map_err(UnpackError::Read)?;
        return Ok((Unpacked::default(), verified));
    }
    // Root's alone (and so are its parents in the staging area): no local user can reach into
    // a package while it unpacks.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| UnpackError::Write {
                path: dir.to_owned(),
                error,
            })?;
    }
    if mode == Mode::Unpack {
        let decoder = XzDecoder::with_mem_limit(
            BufReader::with_capacity(128 * 1024, verified),
            XZ_MEMORY_LIMIT,
        );
        let (records, decoder) = unpack_all(decoder, pkg, dir).await?;
        // Then hash whatever follows the xz stream: the digest covers the whole file.
        let mut buffered = decoder.into_inner();
        tokio::io::copy(&mut buffered, &mut tokio::io::sink())
            .await
            .map_err(UnpackError::Read)?;
        return Ok((records, buffered.into_inner()));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let input = SyncIoBridge::new(verified);
    let decoder = tokio::task::spawn_blocking(move || decode(input, &tx));
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    // On failure the reader goes, and with it the channel: the decoder thread stops.
    let (records, tar) = unpack_all(StreamReader::new(chunks), pkg, dir).await?;
    drop(tar);
    match decoder.await {
        Ok(Some(verified)) => Ok((records, verified)),
        // The decoder reports its failures through the channel, read above; this is only
        // reached if its thread died.
        Ok(None) | Err(_) => Err(UnpackError::Read(std::io::Error::other(
            "the xz decoder stopped unexpectedly",
        ))),
    }
}

/// Unpack the decoded tar stream, then read it to its end, so that the xz stream's own
/// integrity check is verified; a little padding may follow the tar end marker, more is
/// refused. Gives the decoded stream back, at its end.
async fn unpack_all<R: AsyncRead + Unpin + Send>(
    tar: R,
    pkg: &Available,
    dir: &Path,
) -> Result<(Unpacked, R), UnpackError> {
    let limits = Limits::for_package(&pkg.entry);
    let (records, tar) = unpack::unpack_tar(tar, dir, &pkg.entry, &limits).await?;
    let mut rest = tar.take(MAX_TRAILING_BYTES + 1);
    let trailing = tokio::io::copy(&mut rest, &mut tokio::io::sink())
        .await
        .map_err(UnpackError::Read)?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(UnpackError::Refused {
            entry: "(end of archive)".into(),
            reason: "more than 1 MiB of data after the end of the tar archive".into(),
        });
    }
    Ok((records, rest.into_inner()))
}

/// Decoded bytes travel from the decoder thread to the unpacker in chunks of this size; a few
/// in flight keep both sides busy and bound the memory a package takes (~1.5 MiB).
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = std::io::Result<std::io::Cursor<Vec<u8>>>;

/// The decoder thread: verified bytes in, decoded tar bytes out through `tx`, any error as the
/// last item. After the xz stream's end (its check verified by liblzma), whatever follows it is
/// read too, so that the digest covers the whole file. Gives the verifier back on success;
/// `None` when it failed or the unpacker went away.
fn decode(
    input: SyncIoBridge<Verified<Body>>,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> Option<Verified<Body>> {
    let fail = |e: std::io::Error| {
        let _ = tx.blocking_send(Err(e));
        None
    };
    // The same decoder as the inline path's (async-compression's: liblzma's auto decoder), so
    // that what a package may be does not depend on which path it took.
    let stream = match liblzma::stream::Stream::new_auto_decoder(XZ_MEMORY_LIMIT, 0) {
        Ok(s) => s,
        Err(e) => return fail(e.into()),
    };
    let input = std::io::BufReader::with_capacity(128 * 1024, input);
    let mut decoder = liblzma::bufread::XzDecoder::new_stream(input, stream);
    loop {
        let mut chunk = vec![0; CHUNK];
        match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                chunk.truncate(n);
                if tx.blocking_send(Ok(std::io::Cursor::new(chunk))).is_err() {
                    return None;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return fail(e),
        }
    }
    let mut after = decoder.into_inner();
    if let Err(e) = std::io::copy(&mut after, &mut std::io::sink()) {
        return fail(e);
    }
    Some(after.into_inner().into_inner())
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
            if error
                .get_ref()
                .is_some_and(|i| i.is::<crate::verify::CacheWrite>())
            {
                // The disk is full (or failing) under the cache: not the archive's fault.
                return Error::io(
                    format!("{package}: writing its tarball into the cache"),
                    error,
                );
            }
            if let Some(too_long) = error.get_ref().and_then(|i| i.downcast_ref::<TooLong>()) {
                return Error::SizeMismatch {
                    package,
                    url: source.to_owned(),
                    expected: too_long.0,
                    actual: too_long.1,
                };
            }
            if let Some(failed) = fetch::download_failure(&error) {
                return Error::Download {
                    package,
                    url: failed.url.clone(),
                    reason: failed.reason.clone(),
                };
            }
            if seen < pkg.entry.size && error.kind() == std::io::ErrorKind::UnexpectedEof {
                return Error::Download {
                    package,
                    url: source.to_owned(),
                    reason: format!("connection closed after {seen} of {} bytes", pkg.entry.size),
                };
            }
            // liblzma's own words are terse ("lzma data error"): say what they mean.
            let raw = error.to_string();
            let reason = match raw.as_str() {
                r if r.contains("memory limit") => format!(
                    "the xz stream needs more than {} MiB of memory to decode",
                    XZ_MEMORY_LIMIT >> 20
                ),
                "lzma data error" | "corrupt xz stream" => {
                    format!("the xz data is damaged or its check does not match ({raw})")
                }
                "stream/file format not recognized" => format!("not an xz file ({raw})"),
                _ => raw,
            };
            Error::CorruptArchive { package, reason }
        }
    }
}
