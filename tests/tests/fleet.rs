//! A fleet behind a shared caching proxy: N machines (each its own root with its own private
//! spkd, started by `spkctl --root`, as an installer or a build host runs it) install, check
//! and upgrade the same 7 packages through Debian's real squid, in front of the loopback origin.
//! What the origin served is read from its own request log: every tarball must leave it once
//! per release, every index once per change, and a check round of the whole fleet may cost it
//! one conditional request per index, not one per machine. What the machines sent the proxy is
//! read from squid's access log: nothing that keeps a shared cache from answering (no
//! `Cache-Control`, no `Pragma`, no query string, one `User-Agent` for all).
//!
//! `SPK_FLEET_MACHINES` sets N (default 10); `bench/fleet` runs N = 1, 10, 50 and reads the
//! `fleet:` lines this prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use spk_tests::daemon::{CtlOutput, binary};
use spk_tests::http::Request;
use spk_tests::repo::{REPO_PATH, SigningKey, noise};
use spk_tests::squid::{Access, Squid};
use spk_tests::{Fault, HttpServer, Package, Repo};

/// The 7 SmechOS packages, small.
const NAMES: [&str; 7] = [
    "kernel-modules",
    "kde-frameworks",
    "plasma",
    "qt6",
    "firmware",
    "mesa-graphics",
    "bootloader-grub",
];
/// Rebuilt in release 2.
const CHANGED: [&str; 2] = ["plasma", "mesa-graphics"];
/// Machines working at once (this runs on small CI machines; a real fleet is not in step).
const AT_ONCE: usize = 4;
/// How long one machine's spkctl may take.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(120);
/// Signed times of the two releases (trusted comments), 2026-11-25 and a day later.
const RELEASE_1_TIME: u64 = 1_764_028_800;
const RELEASE_2_TIME: u64 = RELEASE_1_TIME + 86_400;

fn machines() -> usize {
    std::env::var("SPK_FLEET_MACHINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10)
}

/// Release `version` of every package; those in `changed` carry `version`, the others "1".
fn release(version: &str, changed: &[&str]) -> Repo {
    let mut repo = Repo::new().release(&format!("2026.11.{}", 24 + version.len()));
    for (i, name) in NAMES.iter().enumerate() {
        let v = if changed.contains(name) { version } else { "1" };
        let seed = (i as u64) * 1000 + v.len() as u64 * 7 + v.as_bytes()[0] as u64;
        repo.add(
            Package::new(name, &format!("{v}-1"))
                .file(
                    &format!("usr/share/smechos/packages/{name}.version"),
                    format!("{v}\n"),
                    0o644,
                )
                // Incompressible: the tarball's size is what crosses the network.
                .file(
                    &format!("usr/lib/{name}/blob"),
                    noise(seed, 48 * 1024),
                    0o644,
                ),
        );
    }
    repo
}

fn publish(repo: &Repo, server: &HttpServer, key: &SigningKey, time: u64) {
    let index = serde_json::to_vec_pretty(&repo.index()).expect("index json");
    repo.publish_signed_bytes(
        server,
        key,
        &index,
        &format!("timestamp:{time} file:index.json"),
    );
}

/// The machines, the proxy and the origin.
struct Fleet {
    server: HttpServer,
    squid: Squid,
    roots: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn new(n: usize, repo: &Repo, key: &SigningKey) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("spk-fleet-")
            // SPK_FLEET_KEEP=1 keeps the machines' logs and squid's for a look afterwards.
            .disable_cleanup(std::env::var_os("SPK_FLEET_KEEP").is_some())
            .tempdir()
            .expect("temporary directory");
        let server = HttpServer::start();
        publish(repo, &server, key, RELEASE_1_TIME);
        let squid = Squid::start(&dir.path().join("squid"));
        let roots = (0..n)
            .map(|i| {
                let root = dir.path().join(format!("machine-{i:03}"));
                let etc = root.join("etc/spk");
                std::fs::create_dir_all(etc.join("keys")).expect("create etc/spk/keys");
                std::fs::write(etc.join("keys").join(key.file_name()), &key.public)
                    .expect("write the public key");
                std::fs::write(
                    etc.join("spk.toml"),
                    format!(
                        "proxy = \"{}\"\n[[repo]]\nname = \"smechos\"\nkind = \"index\"\nurl = \"{}\"\n",
                        squid.url(),
                        server.url(REPO_PATH)
                    ),
                )
                .expect("write spk.toml");
                root
            })
            .collect();
        Fleet {
            server,
            squid,
            roots,
            _dir: dir,
        }
    }

    /// `spkctl --root ROOT ARGS` on every machine, [`AT_ONCE`] at a time; results in machine
    /// order.
    async fn run_all(&self, args: &[&str]) -> Vec<CtlOutput> {
        let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, root) in self.roots.iter().enumerate() {
            let gate = gate.clone();
            let root = root.clone();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            tasks.spawn(async move {
                let _slot = gate.acquire_owned().await.expect("semaphore");
                (i, machine(&root, &args).await)
            });
        }
        let mut out: Vec<Option<CtlOutput>> = (0..self.roots.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.expect("machine task");
            out[i] = Some(result);
        }
        out.into_iter()
            .map(|o| o.expect("every machine ran"))
            .collect()
    }

    /// What the proxy and the origin saw during `step`.
    async fn round(&self, name: &str, args: &[&str]) -> Round {
        self.server.clear_requests();
        let before = self.squid.accesses().len();
        let results = self.run_all(args).await;
        // Machines ask (at least) for the index each: wait until squid logged them all.
        let proxy = self.squid.settle(before + self.roots.len())[before..].to_vec();
        Round {
            name: name.to_owned(),
            machines: self.roots.len(),
            results,
            origin: self.server.requests(),
            proxy,
        }
    }
}

/// `spkctl --root ROOT ARGS`, with no proxy from the test's own environment.
async fn machine(root: &Path, args: &[String]) -> CtlOutput {
    machine_with_env(root, args, &[]).await
}

/// [`machine`] with these variables in spkctl's (and so its private spkd's) environment.
async fn machine_with_env(root: &Path, args: &[String], env: &[(&str, &str)]) -> CtlOutput {
    let mut argv = vec![
        "--root".to_owned(),
        root.display().to_string(),
        "--no-progress".to_owned(),
        "--yes".to_owned(),
    ];
    argv.extend(args.iter().cloned());
    let mut command = tokio::process::Command::new(binary("spkctl"));
    command.args(&argv);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spkctl");
    let output = tokio::time::timeout(MACHINE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("spkctl {} did not finish", argv.join(" ")))
        .expect("wait for spkctl");
    CtlOutput {
        args: argv,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One step of the whole fleet.
struct Round {
    name: String,
    machines: usize,
    results: Vec<CtlOutput>,
    origin: Vec<Request>,
    proxy: Vec<Access>,
}

impl Round {
    /// Every machine exited with `code`.
    #[track_caller]
    fn assert_code(&self, code: i32) -> &Round {
        for r in &self.results {
            r.assert_code(code);
        }
        self
    }

    /// The origin's answers to GETs of `file` (under the repository), as statuses.
    fn origin_statuses(&self, file: &str) -> Vec<u16> {
        let path = format!("{REPO_PATH}{file}");
        self.origin
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .map(|r| r.status)
            .collect()
    }

    fn origin_bytes(&self) -> u64 {
        self.origin.iter().map(|r| r.sent_bytes).sum()
    }

    /// `fleet:` line of bench/fleet, and a table for people.
    fn report(&self) -> String {
        let mut by_file: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
        for r in &self.origin {
            *by_file
                .entry(r.path.clone())
                .or_default()
                .entry(r.status)
                .or_default() += 1;
        }
        let mut text = format!(
            "fleet: machines={} round={} origin_requests={} origin_bytes={} \
             origin_requests_per_machine={:.2} origin_bytes_per_machine={:.0} proxy_requests={} proxy_bytes={}\n",
            self.machines,
            self.name,
            self.origin.len(),
            self.origin_bytes(),
            self.origin.len() as f64 / self.machines as f64,
            self.origin_bytes() as f64 / self.machines as f64,
            self.proxy.len(),
            self.proxy.iter().map(|a| a.bytes).sum::<u64>(),
        );
        for (file, statuses) in by_file {
            let s: Vec<String> = statuses.iter().map(|(s, n)| format!("{n}×{s}")).collect();
            text.push_str(&format!("    origin {file}: {}\n", s.join(", ")));
        }
        text
    }
}

/// What every machine sent the proxy can be answered from a shared cache.
#[track_caller]
fn assert_cacheable_requests(proxy: &[Access]) {
    let agent = format!("spk/{}", env!("CARGO_PKG_VERSION"));
    for a in proxy {
        assert_eq!(a.user_agent.as_deref(), Some(agent.as_str()), "{a:?}");
        assert_eq!(
            a.cache_control, None,
            "a client asked the cache to step aside: {a:?}"
        );
        assert_eq!(a.pragma, None, "{a:?}");
        assert!(
            !a.url.contains('?'),
            "a query string makes every URL new: {a:?}"
        );
    }
}

fn version_of(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(format!("usr/share/smechos/packages/{name}.version")))
        .unwrap_or_else(|e| format!("(unreadable: {e})"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_fleet_behind_squid_costs_the_origin_one_download_per_release() {
    let n = machines();
    let key = SigningKey::generate("smechos");
    let first = release("1", &[]);
    let fleet = Fleet::new(n, &first, &key);
    let mut reports = String::new();

    // 1. Every machine installs the 7 packages.
    let args = [&["install"][..], &NAMES[..]].concat();
    let install = fleet.round("install", &args).await;
    reports.push_str(&install.report());
    install.assert_code(0);
    for root in &fleet.roots {
        for name in NAMES {
            assert_eq!(version_of(root, name), "1", "{name} on {}", root.display());
        }
    }
    assert_cacheable_requests(&install.proxy);
    for p in &first.packages {
        let statuses = install.origin_statuses(&p.file);
        assert_eq!(
            statuses.iter().filter(|&&s| s == 200).count(),
            1,
            "{} left the origin more than once (or never): {statuses:?}\n{}{}",
            p.file,
            install.report(),
            fleet.squid.logs()
        );
        // Later machines' copies were checked with the origin (unchanged: 304), not fetched.
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 304),
            "{statuses:?}"
        );
    }
    assert_eq!(
        install.origin_statuses("index.json"),
        [200],
        "{}",
        install.report()
    );
    assert_eq!(
        install.origin_statuses("index.json.minisig"),
        [200],
        "{}",
        install.report()
    );
    let tarball_bytes: u64 = install
        .origin
        .iter()
        .filter(|r| r.path.ends_with(".tar.xz"))
        .map(|r| r.body_bytes)
        .sum();
    let sizes: u64 = first.packages.iter().map(|p| p.size).sum();
    assert_eq!(tarball_bytes, sizes, "{}", install.report());

    // 2. Every machine checks again: the proxy answers; the origin sees at most one
    // conditional request for the index (when the proxy's copy became stale), never a body.
    let check = fleet.round("check", &["check"]).await;
    reports.push_str(&check.report());
    check.assert_code(0);
    assert_cacheable_requests(&check.proxy);
    let index = check.origin_statuses("index.json");
    assert!(
        index.len() <= 1 && index.iter().all(|&s| s == 304),
        "{}",
        check.report()
    );
    assert_eq!(
        check.origin.len(),
        index.len(),
        "a check fetched more than the index:\n{}",
        check.report()
    );
    // The machines revalidated their own copies: squid answered 304 without a body.
    assert!(
        check
            .proxy
            .iter()
            .filter(|a| a.url.ends_with("/index.json"))
            .all(|a| a.if_none_match.is_some() && a.status == 304),
        "{:?}",
        check.proxy
    );

    // 3. Release 2 rebuilds two packages. The publisher purges the index from the proxy (else
    // it is served for up to a minute more); the machines upgrade.
    let second = release("2", &CHANGED);
    publish(&second, &fleet.server, &key, RELEASE_2_TIME);
    for file in ["index.json", "index.json.minisig"] {
        let status = fleet
            .squid
            .purge(&fleet.server.url(&format!("{REPO_PATH}{file}")));
        assert_eq!(status, 200, "PURGE of {file}:\n{}", fleet.squid.logs());
    }
    let upgrade = fleet.round("upgrade", &["upgrade"]).await;
    reports.push_str(&upgrade.report());
    upgrade.assert_code(0);
    assert_cacheable_requests(&upgrade.proxy);
    for root in &fleet.roots {
        for name in NAMES {
            let want = if CHANGED.contains(&name) { "2" } else { "1" };
            assert_eq!(version_of(root, name), want, "{name} on {}", root.display());
        }
    }
    assert_eq!(
        upgrade.origin_statuses("index.json"),
        [200],
        "{}",
        upgrade.report()
    );
    assert_eq!(
        upgrade.origin_statuses("index.json.minisig"),
        [200],
        "{}",
        upgrade.report()
    );
    for p in &second.packages {
        let statuses = upgrade.origin_statuses(&p.file);
        if CHANGED.contains(&p.package.name.as_str()) {
            assert_eq!(
                statuses.iter().filter(|&&s| s == 200).count(),
                1,
                "{}: {statuses:?}\n{}",
                p.file,
                upgrade.report()
            );
        } else {
            assert!(statuses.is_empty(), "{}: {statuses:?}", p.file);
        }
    }

    println!("{reports}");
}

#[tokio::test]
async fn a_download_cut_through_the_proxy_resumes_with_a_range() {
    let key = SigningKey::generate("smechos");
    let repo = release("1", &[]);
    let fleet = Fleet::new(1, &repo, &key);
    let plasma = repo.get("plasma");
    let path = format!("{REPO_PATH}{}", plasma.file);
    // The origin cuts the first answer half-way; squid passes the cut on.
    fleet
        .server
        .set_fault_times(&path, Fault::CutAt(plasma.size / 2), 1);

    let install = fleet.round("install", &["install", "plasma"]).await;
    install.assert_code(0);
    assert_eq!(version_of(&fleet.roots[0], "plasma"), "1");
    let resumed = install
        .proxy
        .iter()
        .find(|a| a.url.ends_with(&plasma.file) && a.range.is_some())
        .unwrap_or_else(|| panic!("no range request reached squid: {:?}", install.proxy));
    assert!(
        resumed
            .range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes="))
            && resumed.if_range.is_some(),
        "{resumed:?}"
    );
    assert_eq!(resumed.status, 206, "{resumed:?}");
    let origin: Vec<&Request> = install.origin.iter().filter(|r| r.path == path).collect();
    assert!(
        origin
            .iter()
            .any(|r| r.status == 206 && r.header("if-range").is_some()),
        "the origin never served the rest: {origin:?}"
    );
}

/// `spkctl --root ROOT about --json`'s proxy of each repository, by name.
async fn proxies(root: &Path, env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let about = machine_with_env(root, &["about".into(), "--json".into()], env).await;
    about.assert_code(0);
    about.json()["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["proxy"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn proxies_come_from_spk_toml_then_the_environment_and_passwords_stay_hidden() {
    let key = SigningKey::generate("smechos");
    let repo = release("1", &[]);
    let fleet = Fleet::new(1, &repo, &key);
    let root = &fleet.roots[0];
    let config = root.join("etc/spk/spk.toml");
    let squid = fleet.squid.url();
    let port = squid.rsplit(':').next().expect("port");
    let with_password = format!("http://fleet:s3cret@127.0.0.1:{port}");
    let origin = fleet.server.url(REPO_PATH);
    // A dead proxy in the environment: spk.toml's must win over it.
    let dead = [("http_proxy", "http://127.0.0.1:9")];

    // Global proxy with a password; the second repository connects directly.
    std::fs::write(
        &config,
        format!(
            "proxy = \"{with_password}\"\n\
             [[repo]]\nname = \"smechos\"\nkind = \"index\"\nurl = \"{origin}\"\n\
             [[repo]]\nname = \"local\"\nkind = \"index\"\nurl = \"{origin}\"\nproxy = \"none\"\n"
        ),
    )
    .expect("write spk.toml");
    let shown = proxies(root, &dead).await;
    assert_eq!(
        shown["smechos"],
        format!("http://fleet:***@127.0.0.1:{port} (spk.toml)")
    );
    assert_eq!(shown["local"], "none (proxy = \"none\" in spk.toml)");
    let text = machine_with_env(root, &["about".into()], &dead).await;
    text.assert_code(0);
    assert!(
        text.stdout.contains(&format!(
            "              proxy: http://fleet:***@127.0.0.1:{port} (spk.toml)\n"
        )),
        "{text}"
    );
    assert!(!text.stdout.contains("s3cret"), "{text}");
    let before = fleet.squid.accesses().len();
    fleet.server.clear_requests();
    machine_with_env(root, &["check".into()], &dead)
        .await
        .assert_code(0);
    // smechos came through squid; local went straight to the origin.
    let through: Vec<Access> = fleet.squid.settle(before + 2)[before..].to_vec();
    assert_eq!(
        through
            .iter()
            .filter(|a| a.url.ends_with("/index.json"))
            .count(),
        1,
        "{through:?}"
    );
    assert_eq!(fleet.server.gets(&format!("{REPO_PATH}index.json")), 2);

    // No proxy in spk.toml: the environment's, unless no_proxy names the host.
    std::fs::write(
        &config,
        format!("[[repo]]\nname = \"smechos\"\nkind = \"index\"\nurl = \"{origin}\"\n"),
    )
    .expect("write spk.toml");
    let env_proxy = [("http_proxy", with_password.as_str())];
    let shown = proxies(root, &env_proxy).await;
    assert_eq!(
        shown["smechos"],
        format!("http://fleet:***@127.0.0.1:{port} (environment: http_proxy)")
    );
    let before = fleet.squid.accesses().len();
    machine_with_env(root, &["check".into()], &env_proxy)
        .await
        .assert_code(0);
    assert!(
        fleet.squid.settle(before + 1).len() > before,
        "the check did not go through http_proxy"
    );
    let bypass = [
        ("HTTP_PROXY", with_password.as_str()),
        ("no_proxy", "localhost,127.0.0.1"),
    ];
    assert_eq!(proxies(root, &bypass).await["smechos"], "none (no_proxy)");
    let before = fleet.squid.accesses().len();
    fleet.server.clear_requests();
    machine_with_env(root, &["check".into()], &bypass)
        .await
        .assert_code(0);
    assert_eq!(fleet.server.gets(&format!("{REPO_PATH}index.json")), 1);
    assert_eq!(
        fleet.squid.accesses().len(),
        before,
        "no_proxy was not honoured"
    );
    assert_eq!(proxies(root, &[]).await["smechos"], "none");
}
