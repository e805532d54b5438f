//! Hostile bytes before they are verified: a package streams through xz and the tar reader while
//! it downloads, and its sha256 is known only at its end. Nothing in such a stream may make spkd
//! use unbounded memory or write unbounded text to its log, its history or a D-Bus message (the
//! tarballs here are small, but declare gigantic names and sizes, and the index's sha256 is
//! wrong, as anyone altering bytes on a mirror or an http link could do). And nothing a local
//! user does while a package unpacks can reach into its staging tree.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use spk_tests::repo::{RawTar, xz};
use spk_tests::system_bus::as_nobody;
use spk_tests::{Env, Fault, Package, Repo};

const VERIFICATION: &str = "xyz.smech.Spk1.Error.Verification";
const IO: &str = "xyz.smech.Spk1.Error.Io";
const BLOCK: usize = 512;
/// What spkd may use at its peak, whatever it is fed (the benchmark's promise).
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

/// `VmHWM` (peak resident memory) of process `pid`, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// An xz stream of a tar archive written piece by piece (never whole in memory): `write` gets
/// the encoder.
fn xz_streamed(write: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
    write(&mut enc);
    enc.finish().expect("xz finish")
}

/// `len` bytes of `byte`, written in chunks.
fn write_filler(w: &mut dyn Write, byte: u8, len: u64) {
    let chunk = vec![byte; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
}

/// Zeros after `len` bytes of entry data, up to the tar block size.
fn write_padding(w: &mut dyn Write, len: u64) {
    let pad = (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64;
    w.write_all(&vec![0; pad as usize]).expect("pad");
}

/// A tarball whose one extension entry (type `kind`: `L` GNU long name, `x` pax) carries `len`
/// bytes, followed by an ordinary file.
fn extension_bomb(kind: u8, len: u64) -> Vec<u8> {
    xz_streamed(|w| {
        let name: &[u8] = if kind == b'L' {
            b"././@LongLink"
        } else {
            b"PaxHeaders/bomb"
        };
        w.write_all(&RawTar::header(name, kind, 0o644, len, b""))
            .expect("write");
        if kind == b'x' {
            // One pax record, "LEN path=aaaa…\n", as long as `len`.
            let prefix = format!("{len} path=");
            w.write_all(prefix.as_bytes()).expect("write");
            write_filler(w, b'a', len - prefix.len() as u64 - 1);
            w.write_all(b"\n").expect("write");
        } else {
            write_filler(w, b'a', len - 1);
            w.write_all(b"\0").expect("write");
        }
        write_padding(w, len);
        w.write_all(&RawTar::header(b"placeholder", b'0', 0o644, 2, b""))
            .expect("write");
        w.write_all(b"x\n").expect("write");
        w.write_all(&[0; BLOCK - 2 + 2 * BLOCK]).expect("write");
    })
}

/// Publish `tarball` as package `name` whose index entry's sha256 is wrong (all zeros) and
/// whose installed size is 64 KiB: what spkd refuses, it refuses before it could know.
fn lying_repo(name: &str, tarball: Vec<u8>) -> Repo {
    let mut repo = Repo::new();
    let published = repo.add(Package::new(name, "1"));
    published.set_tarball(tarball);
    published.sha256 = "0".repeat(64);
    published.installed_size = 64 * 1024;
    repo
}

/// Install `name` from `repo` and expect it refused with `error_name` and `expected` in the
/// message, spkd's peak memory under the bound, and its log, history and message small.
async fn refused_within_bounds(
    env: &Env,
    repo: &Repo,
    name: &str,
    error_name: &str,
    expected: &str,
) {
    env.publish(repo);
    let before = env.snapshot();
    let log_before = env.spkd.log().len();
    let db = env.path("var/lib/spk/packages.redb");
    let db_before = size_of(&db);

    let run = env.spkctl_json(&["install", name]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert_eq!(report["error-name"], error_name, "{run}");
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {error_name}: {message}");
    assert!(message.contains(expected), "{run}");
    assert!(
        message.len() <= 1024,
        "a message of {} bytes",
        message.len()
    );
    let peak = peak_memory_kib(env.spkd.pid());
    eprintln!("spkd peak memory: {} KiB", peak);
    assert!(
        peak < MEMORY_BOUND_KIB,
        "spkd peaked at {peak} KiB (bound {MEMORY_BOUND_KIB} KiB)"
    );
    let log_growth = env.spkd.log().len() - log_before;
    assert!(log_growth < 64 * 1024, "the log grew by {log_growth} bytes");
    let db_growth = size_of(&db).saturating_sub(db_before);
    assert!(
        db_growth < 1 << 20,
        "the database grew by {db_growth} bytes"
    );
    let history = env.spkctl_json(&["history"]).await;
    assert!(
        history.stdout.len() < 8 * 1024,
        "history of {} bytes",
        history.stdout.len()
    );
    before.assert_same_content(&env.snapshot());
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_gnu_long_name_of_100_mib_is_refused_at_its_header() {
    let env = Env::new(&Repo::new()).await;
    let tarball = extension_bomb(b'L', 100 << 20);
    eprintln!("bomb: {} bytes of xz", tarball.len());
    refused_within_bounds(
        &env,
        &lying_repo("evil-long-bomb", tarball),
        "evil-long-bomb",
        VERIFICATION,
        "evil-long-bomb: refused archive entry '(archive headers)': archive header data larger \
         than 262144 bytes",
    )
    .await;
}

#[tokio::test]
async fn a_pax_record_of_100_mib_is_refused_at_its_header() {
    let env = Env::new(&Repo::new()).await;
    let tarball = extension_bomb(b'x', 100 << 20);
    refused_within_bounds(
        &env,
        &lying_repo("evil-pax-bomb", tarball),
        "evil-pax-bomb",
        VERIFICATION,
        "evil-pax-bomb: refused archive entry '(archive headers)'",
    )
    .await;
}

#[tokio::test]
async fn sizes_declared_by_directories_and_links_count_against_the_package() {
    let env = Env::new(&Repo::new()).await;
    // A directory declaring 8 GiB of data: the reader would skip (decode) all of it.
    let header = RawTar::header(b"usr/", b'5', 0o755, 0o77_777_777_777, b"");
    let tarball = xz(&RawTar::new().block(header).finish());
    refused_within_bounds(
        &env,
        &lying_repo("evil-dir-size", tarball),
        "evil-dir-size",
        VERIFICATION,
        "evil-dir-size: refused archive entry 'usr/': package unpacks to more than",
    )
    .await;
}

#[tokio::test]
async fn a_package_of_too_many_long_names_is_refused() {
    let env = Env::new(&Repo::new()).await;
    // 5,000 files of 4,000-byte paths: 20 MB of names the manifest would keep in memory.
    let deep: String = (0..15)
        .map(|i| format!("{}/", format!("{i:x}").repeat(250)))
        .collect();
    let tarball = xz_streamed(|w| {
        for i in 0..5_000 {
            let name = format!("usr/{deep}f{i:05}");
            let mut long = name.clone().into_bytes();
            long.push(0);
            w.write_all(&RawTar::header(
                b"././@LongLink",
                b'L',
                0o644,
                long.len() as u64,
                b"",
            ))
            .expect("write");
            w.write_all(&long).expect("write");
            w.write_all(&vec![0; (BLOCK - long.len() % BLOCK) % BLOCK])
                .expect("write");
            w.write_all(&RawTar::header(b"placeholder", b'0', 0o644, 1, b""))
                .expect("write");
            let mut data = vec![0; BLOCK];
            data[0] = b'x';
            w.write_all(&data).expect("write");
        }
        w.write_all(&[0; 2 * BLOCK]).expect("write");
    });
    refused_within_bounds(
        &env,
        &lying_repo("evil-many-names", tarball),
        "evil-many-names",
        VERIFICATION,
        "the archive's paths take more than 16777216 bytes together",
    )
    .await;
}

/// Run `program ARGS` as nobody; its exit status and stderr.
fn nobody_runs(program: &str, args: &[&Path]) -> (bool, String) {
    let out = as_nobody(Path::new(program))
        .args(args)
        .output()
        .expect("run as nobody");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn nobody_cannot_reach_into_a_package_while_it_unpacks() {
    // The package ships a world-writable, non-sticky directory (a mistake, or bait), then a
    // large file, so that it is still unpacking while nobody tries to plant a symlink in it.
    let package = Package::new("www", "1").dir("opt/www", 0o777).file(
        "opt/www/zz-big",
        spk_tests::repo::noise(7, 1 << 20),
        0o644,
    );
    let env = Env::new(&Repo::new().with(package)).await;
    // Let nobody walk to the root (the test's temporary directory is 0700).
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = env.dir().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tarball = env.server.url("/repo/www.tar.xz");
    let path = tarball
        .trim_start_matches(&env.server.base_url())
        .to_owned();
    env.server.set_fault(
        &path,
        Fault::Throttle {
            chunk: 64 * 1024,
            every: Duration::from_millis(100),
        },
    );

    let mut install = env.spawn_spkctl(&["install", "www"]);
    let staging = env.path("var/lib/spk/staging");
    let www = loop {
        let found = std::fs::read_dir(&staging).ok().and_then(|txs| {
            txs.flatten()
                .map(|tx| tx.path().join("www/tree/opt/www"))
                .find(|p| p.is_dir())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            install.try_wait().unwrap().is_none(),
            "the install ended before its staging tree appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Staging is root's alone, at every level.
    let meta = std::fs::metadata(&staging).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, 0));
    let tx = www.ancestors().nth(4).unwrap();
    assert_eq!(std::fs::metadata(tx).unwrap().mode() & 0o7777, 0o700);
    let (planted, why) = nobody_runs("/bin/ln", &[Path::new("-s"), &victim, &www.join("evil")]);
    assert!(!planted, "nobody planted a symlink in the staging tree");
    assert!(why.contains("Permission denied"), "{why}");
    let (listed, _) = nobody_runs("/bin/ls", &[&www]);
    assert!(!listed, "nobody could list a staging directory");

    env.server.clear_fault(&path);
    let status = install.wait().await.unwrap();
    assert!(status.success(), "the install failed");
    env.assert_dir("opt/www", 0o777);
    env.assert_absent("opt/www/evil");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().mode() & 0o7777,
        0o700,
        "the victim directory was chmod-ed"
    );
    assert!(std::fs::read_dir(&victim).unwrap().next().is_none());
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_full_disk_under_the_cache_is_a_disk_full_error_not_a_corrupt_archive() {
    // The root is a 12 MiB tmpfs; the package downloads 4 MiB (xz cannot shrink it). While the
    // download is held up, a filler takes the free space, so the cache write fails.
    let big =
        Package::new("big", "1").file("usr/share/big", spk_tests::repo::noise(3, 4 << 20), 0o644);
    let env = Env::on_tmpfs(&Repo::new().with(big), "12m").await;
    let path = "/repo/big.tar.xz";
    env.server.set_fault(
        path,
        Fault::Throttle {
            chunk: 256 * 1024,
            every: Duration::from_millis(200),
        },
    );
    let before = env.snapshot();

    let install = env.spawn_spkctl(&["--json", "install", "big"]);
    env.server.wait_for_gets(path, 1).await;
    let filler = env.path("home/filler");
    std::fs::create_dir_all(filler.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xa5; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    drop(file);
    env.server.clear_fault(path);
    let out = install.wait_with_output().await.unwrap();

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["state"], "failed", "{report}");
    assert_eq!(report["error-name"], IO, "{report}");
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {message}");
    // Whichever write meets the full disk first (the tarball into the cache, or a file into
    // staging), it says so, and not that the archive is corrupt.
    assert!(
        message.starts_with("big: writing ")
            && message.contains(": No space left on device (os error 28)"),
        "{report}"
    );
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_dir(filler.parent().unwrap()).unwrap();
    before.assert_same_content(&env.snapshot());
}
