//! Debian's real squid as a caching HTTP proxy on 127.0.0.1, for the fleet tests: many spkd
//! behind one proxy in front of the loopback origin ([`crate::http::HttpServer`]).
//!
//! [`Squid::start`] writes a `squid.conf` into its own temporary directory (a `ufs` cache
//! there, logs there, a free port), makes the cache (`squid -z`) and runs `squid -N` in the
//! foreground; dropping the [`Squid`] stops it. The configuration is the one README.md
//! recommends to fleets ([`RECOMMENDED`]): indexes fresh for a minute, tarballs (whose names
//! do not change between releases) revalidated at every request, concurrent misses collapsed
//! into one origin request. Its access log records what each client sent (the headers that
//! decide whether a shared cache can answer).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long squid may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The caching rules README.md gives fleets (squid's `refresh_pattern`: min minutes, percent,
/// max minutes). An index is served from the cache for one minute, then revalidated with the
/// origin (`If-None-Match`/`If-Modified-Since`, a 304 when unchanged): a check costs the origin
/// at most one small request per index per minute and proxy. Tarballs keep their names from
/// one release to the next (`NAME.tar.xz`), so the cache asks the origin whether its copy is
/// still current before every answer (a 304 of a few hundred bytes) and never serves an old
/// release's bytes under a new index. `collapsed_forwarding` turns machines that ask for the
/// same missing file at once into one origin request.
pub const RECOMMENDED: &str = "\
collapsed_forwarding on
refresh_pattern -i /index\\.json(\\.minisig)?$ 1 0% 1
refresh_pattern -i \\.tar\\.xz$ 0 0% 0
maximum_object_size 4 GB
";

/// One line of squid's access log, as [`Squid`] configures it.
#[derive(Debug, Clone)]
pub struct Access {
    /// Squid's verdict, e.g. `TCP_MISS`, `TCP_HIT`, `TCP_REFRESH_UNMODIFIED`.
    pub result: String,
    /// The status squid answered the client with.
    pub status: u16,
    /// Bytes squid sent the client.
    pub bytes: u64,
    pub method: String,
    pub url: String,
    pub user_agent: Option<String>,
    pub cache_control: Option<String>,
    pub pragma: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

/// A running squid; dropping it stops it.
pub struct Squid {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// squid's own `-` for a header the client did not send.
fn header(field: &str) -> Option<String> {
    (field != "-" && !field.is_empty()).then(|| field.to_owned())
}

impl Squid {
    /// Start squid in `dir` (created; holds its config, cache and logs).
    pub fn start(dir: &Path) -> Squid {
        std::fs::create_dir_all(dir.join("cache")).expect("create the squid directory");
        let port = free_port();
        let d = dir.display();
        // Fields are separated by `|`, which none of the logged headers contain here.
        let conf = format!(
            "http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
logformat spk %Ss|%>Hs|%<st|%rm|%ru|%{{User-Agent}}>h|%{{Cache-Control}}>h|%{{Pragma}}>h|%{{Range}}>h|%{{If-Range}}>h|%{{If-None-Match}}>h|%{{If-Modified-Since}}>h
access_log stdio:{d}/access.log spk
cache_store_log none
coredump_dir {d}
cache_dir ufs {d}/cache 100 16 256
cache_mem 64 MB
maximum_object_size_in_memory 8 MB
# squid drops root for this user (Debian's squid user); the cache and logs must be its.
cache_effective_user proxy
acl PURGE method PURGE
http_access allow PURGE localhost
http_access allow localhost
http_access deny all
# Stop at once when the test ends (no grace period for open connections).
shutdown_lifetime 0 seconds
# The test's origin is 127.0.0.1 too: no DNS, no peers.
dns_nameservers 127.0.0.1
{RECOMMENDED}"
        );
        let conf_path = dir.join("squid.conf");
        std::fs::write(&conf_path, conf).expect("write squid.conf");
        // squid runs as `proxy` once started: its directory must be writable for it.
        let chown = Command::new("chown")
            .args(["-R", "proxy:proxy"])
            .arg(dir)
            .status()
            .expect("run chown");
        assert!(chown.success(), "chown -R proxy:proxy {d} failed");
        let made = Command::new("squid")
            .args(["-N", "-z", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .output()
            .expect("run squid -z (Debian package squid)");
        assert!(
            made.status.success(),
            "squid -z failed: {}{}",
            String::from_utf8_lossy(&made.stdout),
            String::from_utf8_lossy(&made.stderr)
        );
        let out = std::fs::File::create(dir.join("squid.out")).expect("squid.out");
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start squid");
        let mut squid = Squid {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
        };
        squid.wait_ready();
        squid
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("squid exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "squid did not listen on {} within {READY_TIMEOUT:?}:\n{}",
                self.addr,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`: what `proxy =` of spk.toml says.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its cache log and output, for a failure message.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- squid output ---\n{}--- cache.log ---\n{}",
            read("squid.out"),
            read("cache.log")
        )
    }

    /// Every request squid logged so far, in order. (squid writes its log line when it has
    /// answered; a moment passes between an answer and its line, see [`Squid::settle`].)
    pub fn accesses(&self) -> Vec<Access> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split('|').collect();
                // A connection that sent no request (the readiness probe) is no access.
                (f.len() == 12 && f[3] != "-").then(|| Access {
                    result: f[0].to_owned(),
                    status: f[1].parse().unwrap_or(0),
                    bytes: f[2].parse().unwrap_or(0),
                    method: f[3].to_owned(),
                    url: f[4].to_owned(),
                    user_agent: header(f[5]),
                    cache_control: header(f[6]),
                    pragma: header(f[7]),
                    range: header(f[8]),
                    if_range: header(f[9]),
                    if_none_match: header(f[10]),
                    if_modified_since: header(f[11]),
                })
            })
            .collect()
    }

    /// Wait until squid logged `n` requests (its log lags its answers slightly), up to 10 s.
    pub fn settle(&self, n: usize) -> Vec<Access> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.accesses();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Drop `url` from the cache (`PURGE`), as a publisher does after replacing a file whose
    /// cached copy would otherwise be served until it expires. Returns squid's status.
    pub fn purge(&self, url: &str) -> u16 {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(self.addr).expect("connect to squid");
        write!(
            stream,
            "PURGE {url} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send PURGE");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        // SIGTERM: squid shuts down at once (shutdown_lifetime 0) and removes its pid file.
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
