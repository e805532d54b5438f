//! A small HTTP/1.1 file server on 127.0.0.1 with fault injection.
//!
//! It serves an in-memory map of URL path → bytes, speaks GET and HEAD with `Content-Length`,
//! `ETag`, `If-None-Match`, `Range: bytes=N-` / `bytes=N-M` and `If-Range`, and records every
//! request so tests can count what a client fetched. Faults (forced status, connection cut at a
//! body offset, stall, slow body, replaced body, redirect) are set per path while it runs; the
//! validators (`ETag`) can be turned off as a whole. It is bounded (a cap on
//! connections, read timeouts) and stops itself when dropped.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Granularity with which the accept loop and stalls notice that the server stops.
const POLL: Duration = Duration::from_millis(10);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string, e.g. `/repo/index.json`.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The status the server answered with.
    pub status: u16,
    /// Bytes of the request head the server read (request line and headers).
    pub received_bytes: u64,
    /// Body bytes the server sent (or began to send) in its answer.
    pub body_bytes: u64,
    /// All bytes of the answer: status line, headers and body.
    pub sent_bytes: u64,
}

impl Request {
    /// The value of header `name` (case-insensitive), if the client sent it.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A misbehaviour injected for one path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (e.g. 404 or 500) and a short text body.
    Status(u16),
    /// Send the headers for the whole body, then the body only up to this byte offset of the
    /// file, then close the connection. The offset is absolute, so a resumed `Range` request
    /// that starts at or past it is cut at once: the download can never complete.
    CutAt(u64),
    /// Send the headers, then nothing for this long, then the body.
    Stall(Duration),
    /// Serve these bytes instead of the stored file (with their own length and ETag).
    Body(Vec<u8>),
    /// Send the headers, then the body `chunk` bytes at a time, one chunk every `every`: a
    /// slow mirror, so that a download stays in flight, making progress, while a test acts.
    Throttle { chunk: usize, every: Duration },
    /// Answer `302 Found` with this `Location` (a full URL).
    Redirect(String),
}

struct FaultSlot {
    fault: Fault,
    /// `None` = every request; `Some(n)` = the next n requests, then the fault is gone.
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Vec<u8>>>,
    faults: Mutex<HashMap<String, FaultSlot>>,
    log: Mutex<Vec<Request>>,
    /// Send no `ETag` and ignore `If-None-Match` / `If-Range` (a server without validators).
    no_validators: AtomicBool,
    stop: AtomicBool,
    connections: AtomicUsize,
}

/// Lock a mutex, ignoring poisoning: a panicking test thread must not hide the server state.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running server; dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Start serving an empty map on a random port of 127.0.0.1.
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn acceptor")
        };
        HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address it listens on (127.0.0.1 and a random port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// Serve `body` at `path` (which starts with `/`), replacing what was there.
    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        lock(&self.shared.files).insert(path.to_string(), body.into());
    }

    /// Stop serving `path` (it answers 404 afterwards).
    pub fn delete(&self, path: &str) {
        lock(&self.shared.files).remove(path);
    }

    /// Inject `fault` for every request of `path` until cleared.
    pub fn set_fault(&self, path: &str, fault: Fault) {
        lock(&self.shared.faults).insert(
            path.to_string(),
            FaultSlot {
                fault,
                remaining: None,
            },
        );
    }

    /// Inject `fault` for the next `times` requests of `path` only.
    pub fn set_fault_times(&self, path: &str, fault: Fault, times: usize) {
        lock(&self.shared.faults).insert(
            path.to_string(),
            FaultSlot {
                fault,
                remaining: Some(times),
            },
        );
    }

    /// Send `ETag`s and honour validators (`true`, the default), or behave like a server that
    /// has none (`false`): no `ETag`, `If-None-Match` and `If-Range` ignored.
    pub fn set_validators(&self, on: bool) {
        self.shared.no_validators.store(!on, Ordering::SeqCst);
    }

    /// Remove the fault of `path`.
    pub fn clear_fault(&self, path: &str) {
        lock(&self.shared.faults).remove(path);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Forget the recorded requests (e.g. after setting a fixture up).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Number of GET requests for `path`.
    pub fn gets(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }

    /// Wait (up to 30 s, else panic) until `n` GETs of `path` have arrived: e.g. a download
    /// is in flight.
    pub async fn wait_for_gets(&self, path: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.gets(path) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} was requested {} times, not {n}, within 30 s",
                self.gets(path)
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Paths of all GET requests for tarballs (`*.tar.xz`), in order, with repeats.
    pub fn tarball_gets(&self) -> Vec<String> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(".tar.xz"))
            .map(|r| r.path.clone())
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.connections.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = shared.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            let _ = serve_connection(stream, &conn_shared);
                            release_connection(&conn_shared);
                        });
                if spawned.is_err() {
                    // The closure (and its stream) was dropped without running.
                    release_connection(&shared);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Count one connection as finished.
fn release_connection(shared: &Shared) {
    shared.connections.fetch_sub(1, Ordering::SeqCst);
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    close: bool,
    /// Bytes of the head as read.
    bytes: u64,
}

/// Read one request head; `Ok(None)` on a clean end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut line = String::new();
    // Skip stray empty lines between requests.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        total += line.len();
        if total > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too big"));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let connection = headers
        .iter()
        .find(|(n, _)| n == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let close = match connection.as_deref() {
        Some(v) if v.contains("close") => true,
        Some(v) if v.contains("keep-alive") => false,
        _ => version != "HTTP/1.1",
    };
    Ok(Some(Head {
        method,
        path,
        headers,
        close,
        bytes: total as u64,
    }))
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let keep_open = respond(&mut writer, &head, shared)?;
        if head.close || !keep_open {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

/// What the server decided to send for one request.
struct Plan {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// The body bytes to send (already ranged).
    body: Vec<u8>,
    /// Absolute file offset at which `body` starts.
    offset: u64,
    /// Send `body` only up to this absolute offset, then close.
    cut_at: Option<u64>,
    stall: Option<Duration>,
    /// Send the body in chunks of this size with this pause after each.
    throttle: Option<(usize, Duration)>,
}

/// Sleep for `pause`, waking early when the server stops.
fn pause_unless_stopped(shared: &Shared, pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL.min(pause));
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Parse `bytes=N-` or `bytes=N-M` into an inclusive range within `len`.
/// `Err(())` means unsatisfiable; `Ok(None)` means "ignore the header".
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        // Suffix range: the last N bytes.
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = start.parse().map_err(|_| ())?;
    if start >= len {
        return Err(());
    }
    let end = if end.is_empty() {
        len - 1
    } else {
        end.parse::<u64>().map_err(|_| ())?.min(len - 1)
    };
    if end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn take_fault(shared: &Shared, path: &str) -> Option<Fault> {
    let mut faults = lock(&shared.faults);
    let slot = faults.get_mut(path)?;
    let fault = slot.fault.clone();
    if let Some(n) = slot.remaining.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            faults.remove(path);
        }
    }
    Some(fault)
}

fn plan(head: &Head, shared: &Shared) -> Plan {
    let text = |status: u16, extra: Vec<(&'static str, String)>| Plan {
        status,
        headers: {
            let mut h = vec![("Content-Type", "text/plain".to_string())];
            h.extend(extra);
            h
        },
        body: format!("{} {}\n", status, reason(status)).into_bytes(),
        offset: 0,
        cut_at: None,
        stall: None,
        throttle: None,
    };
    if head.method != "GET" && head.method != "HEAD" {
        return text(405, vec![("Allow", "GET, HEAD".into())]);
    }
    let fault = take_fault(shared, &head.path);
    let stored = lock(&shared.files).get(&head.path).cloned();
    let (mut cut_at, mut stall, mut throttle) = (None, None, None);
    let content = match fault {
        Some(Fault::Status(code)) => return text(code, vec![]),
        Some(Fault::Redirect(location)) => return text(302, vec![("Location", location)]),
        Some(Fault::Body(body)) => Some(body),
        Some(Fault::CutAt(n)) => {
            cut_at = Some(n);
            stored
        }
        Some(Fault::Stall(d)) => {
            stall = Some(d);
            stored
        }
        Some(Fault::Throttle { chunk, every }) => {
            throttle = Some((chunk.max(1), every));
            stored
        }
        None => stored,
    };
    let Some(content) = content else {
        return text(404, vec![]);
    };
    let etag = etag_of(&content);
    let len = content.len() as u64;
    let validators = !shared.no_validators.load(Ordering::SeqCst);
    let header = |name: &str| {
        if !validators && (name == "if-none-match" || name == "if-range") {
            return None;
        }
        head.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(inm) = header("if-none-match")
        && inm.split(',').any(|t| t.trim() == etag || t.trim() == "*")
    {
        return Plan {
            status: 304,
            headers: vec![("ETag", etag)],
            body: Vec::new(),
            offset: 0,
            cut_at: None,
            stall: None,
            throttle: None,
        };
    }
    let range_applies = match header("if-range") {
        Some(tag) => tag.trim() == etag,
        None => true,
    };
    let range = match header("range") {
        Some(r) if range_applies => parse_range(&r, len),
        _ => Ok(None),
    };
    let mut base = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if validators {
        base.push(("ETag", etag));
    }
    match range {
        Err(()) => {
            let mut headers = base;
            headers.push(("Content-Range", format!("bytes */{len}")));
            Plan {
                status: 416,
                headers,
                body: Vec::new(),
                offset: 0,
                cut_at: None,
                stall: None,
                throttle: None,
            }
        }
        Ok(Some((start, end))) => {
            let mut headers = base;
            headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
            Plan {
                status: 206,
                headers,
                body: content[start as usize..=end as usize].to_vec(),
                offset: start,
                cut_at,
                stall,
                throttle,
            }
        }
        Ok(None) => Plan {
            status: 200,
            headers: base,
            body: content,
            offset: 0,
            cut_at,
            stall,
            throttle,
        },
    }
}

/// Answer one request; returns whether the connection may stay open.
fn respond(out: &mut TcpStream, head: &Head, shared: &Shared) -> io::Result<bool> {
    let plan = plan(head, shared);
    let mut text = format!("HTTP/1.1 {} {}\r\n", plan.status, reason(plan.status));
    for (name, value) in &plan.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    // A 304 has no body, and RFC 9110 forbids a Content-Length other than the full file's in
    // it: a cache (squid) would take a 0 for the length of the copy it keeps serving.
    if plan.status != 304 {
        text.push_str(&format!("Content-Length: {}\r\n", plan.body.len()));
    }
    if head.close {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    let body_bytes = match (head.method.as_str(), plan.cut_at) {
        ("HEAD", _) => 0,
        (_, Some(cut)) => cut.saturating_sub(plan.offset).min(plan.body.len() as u64),
        (_, None) => plan.body.len() as u64,
    };
    lock(&shared.log).push(Request {
        method: head.method.clone(),
        path: head.path.clone(),
        headers: head.headers.clone(),
        status: plan.status,
        received_bytes: head.bytes,
        body_bytes,
        sent_bytes: text.len() as u64 + body_bytes,
    });
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if let Some(stall) = plan.stall {
        let until = Instant::now() + stall;
        while Instant::now() < until {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }
    if head.method == "HEAD" {
        return Ok(true);
    }
    match plan.cut_at {
        Some(cut) => {
            let keep = cut.saturating_sub(plan.offset).min(plan.body.len() as u64) as usize;
            out.write_all(&plan.body[..keep])?;
            out.flush()?;
            let _ = out.shutdown(Shutdown::Both);
            Ok(false)
        }
        None => {
            // Write in chunks so a slow reader sees a stream, not one huge write.
            let (size, pause) = plan.throttle.unwrap_or((16 * 1024, Duration::ZERO));
            for chunk in plan.body.chunks(size) {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                out.write_all(chunk)?;
                if !pause.is_zero() {
                    out.flush()?;
                    pause_unless_stopped(shared, pause);
                }
            }
            out.flush()?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=4-", 10), Ok(Some((4, 9))));
        assert_eq!(parse_range("bytes=4-6", 10), Ok(Some((4, 6))));
        assert_eq!(parse_range("bytes=4-60", 10), Ok(Some((4, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("items=1-", 10), Ok(None));
    }
}
