//! The test harness tests itself: the HTTP server speaks HTTP as a client expects, the
//! repository builder writes archives GNU tar reads, the private bus works, and snapshots
//! notice changes. These run without spkd, so a harness bug is not mistaken for a spkd bug.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use spk_tests::bus::Bus;
use spk_tests::repo::sha256_hex;
use spk_tests::{Fault, HttpServer, Package, Repo, Snapshot};

/// A response read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send one request with `Connection: close` and read the whole answer.
fn request(server: &HttpServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let addr = server.base_url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[test]
fn http_server_serves_whole_files_ranges_and_conditional_requests() {
    let server = HttpServer::start();
    server.put("/repo/a.bin", b"0123456789".to_vec());

    let full = request(&server, "GET", "/repo/a.bin", &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, b"0123456789");
    assert_eq!(full.header("Content-Length"), Some("10"));
    let etag = full.header("ETag").expect("ETag").to_string();

    let head = request(&server, "HEAD", "/repo/a.bin", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("10"));
    assert!(head.body.is_empty());

    let ranged = request(&server, "GET", "/repo/a.bin", &[("Range", "bytes=4-")]);
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, b"456789");
    assert_eq!(ranged.header("Content-Range"), Some("bytes 4-9/10"));

    let if_range = request(
        &server,
        "GET",
        "/repo/a.bin",
        &[("Range", "bytes=4-"), ("If-Range", &etag)],
    );
    assert_eq!(if_range.status, 206, "matching If-Range keeps the range");
    let stale = request(
        &server,
        "GET",
        "/repo/a.bin",
        &[("Range", "bytes=4-"), ("If-Range", "\"old\"")],
    );
    assert_eq!(stale.status, 200, "stale If-Range sends the whole file");
    assert_eq!(stale.body, b"0123456789");

    let unsatisfiable = request(&server, "GET", "/repo/a.bin", &[("Range", "bytes=10-")]);
    assert_eq!(unsatisfiable.status, 416);

    let not_modified = request(&server, "GET", "/repo/a.bin", &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    assert_eq!(request(&server, "GET", "/repo/missing", &[]).status, 404);

    let log = server.requests();
    assert_eq!(log.len(), 8);
    assert_eq!(log[2].header("range"), Some("bytes=4-"));
    assert_eq!(server.gets("/repo/a.bin"), 6);
}

#[test]
fn http_server_injects_faults_per_path() {
    let server = HttpServer::start();
    server.put("/f", b"abcdefghij".to_vec());

    server.set_fault("/f", Fault::Status(500));
    assert_eq!(request(&server, "GET", "/f", &[]).status, 500);
    assert_eq!(request(&server, "GET", "/f", &[]).status, 500);
    server.set_fault("/f", Fault::Status(404));
    assert_eq!(request(&server, "GET", "/f", &[]).status, 404);

    server.set_fault("/f", Fault::CutAt(4));
    let cut = request(&server, "GET", "/f", &[]);
    assert_eq!(cut.header("Content-Length"), Some("10"));
    assert_eq!(cut.body, b"abcd", "body stops at the cut");
    let resumed = request(&server, "GET", "/f", &[("Range", "bytes=4-")]);
    assert_eq!(resumed.status, 206);
    assert!(resumed.body.is_empty(), "the cut is at an absolute offset");

    server.set_fault("/f", Fault::Body(b"XYZ".to_vec()));
    assert_eq!(request(&server, "GET", "/f", &[]).body, b"XYZ");

    server.set_fault_times("/f", Fault::Status(503), 1);
    assert_eq!(request(&server, "GET", "/f", &[]).status, 503);
    assert_eq!(
        request(&server, "GET", "/f", &[]).status,
        200,
        "one-shot fault is gone"
    );

    server.set_fault("/f", Fault::Stall(Duration::from_millis(300)));
    let start = Instant::now();
    let stalled = request(&server, "GET", "/f", &[]);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(stalled.body, b"abcdefghij");

    server.clear_fault("/f");
    assert_eq!(request(&server, "GET", "/f", &[]).body, b"abcdefghij");
}

#[test]
fn repository_builder_writes_archives_gnu_tar_reads() {
    let package = Package::new("demo", "1.0-1")
        .file("usr/bin/demo", "#!/bin/sh\necho demo\n", 0o755)
        .file("usr/share/demo/data.txt", "data\n", 0o644)
        .dir("usr/share/demo/private", 0o700)
        .symlink("usr/bin/demo-link", "demo")
        .hardlink("usr/bin/demo-hard", "usr/bin/demo");
    let repo = Repo::new().with(package.clone());
    let published = repo.get("demo");
    assert_eq!(published.sha256, sha256_hex(&published.tarball));
    assert_eq!(published.size, published.tarball.len() as u64);
    assert_eq!(published.installed_size, 25);

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("demo.tar.xz");
    std::fs::write(&archive, &published.tarball).unwrap();
    let listing = Command::new("tar")
        .arg("-tvJf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8(listing.stdout).unwrap();
    let expect = [
        ("drwxr-xr-x", "usr/"),
        ("drwxr-xr-x", "usr/bin/"),
        ("-rwxr-xr-x", "usr/bin/demo"),
        ("-rw-r--r--", "usr/share/demo/data.txt"),
        ("drwx------", "usr/share/demo/private/"),
        ("lrwxrwxrwx", "usr/bin/demo-link -> demo"),
        ("hrw-r--r--", "usr/bin/demo-hard link to usr/bin/demo"),
    ];
    for (mode, name) in expect {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(name)),
            "{mode} {name} not in listing:\n{listing}"
        );
    }

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .arg("-xJpf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("usr/bin/demo")).unwrap(),
        "#!/bin/sh\necho demo\n"
    );

    let index = repo.index();
    assert_eq!(index["format"], 1);
    assert_eq!(index["packages"][0]["name"], "demo");
    assert_eq!(index["packages"][0]["kind"], "userland");
    assert_eq!(index["packages"][0]["file"], "demo.tar.xz");
    assert_eq!(index["packages"][0]["sha256"], published.sha256.as_str());

    let dotted = Package::new("dotted", "1")
        .dot_prefixed()
        .file("etc/x.conf", "x", 0o644);
    std::fs::write(&archive, dotted.tarball()).unwrap();
    let listing = Command::new("tar")
        .arg("-tJf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(listing, "./etc/\n./etc/x.conf\n");
}

#[tokio::test]
async fn private_bus_accepts_clients_and_name_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path());
    let conn = bus.connect().await;
    conn.request_name("xyz.smech.Spk1.HarnessCheck")
        .await
        .unwrap();
    let other = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&other).await.unwrap();
    let name = zbus::names::BusName::try_from("xyz.smech.Spk1.HarnessCheck").unwrap();
    assert!(dbus.name_has_owner(name).await.unwrap());
}

#[test]
fn snapshot_reports_added_removed_changed_and_rewritten_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/spk")).unwrap();
    std::fs::write(root.join("usr/bin/a"), "a").unwrap();
    std::fs::write(root.join("usr/bin/b"), "b").unwrap();
    let before = Snapshot::take(root);
    assert!(before.nodes.contains_key("usr/bin/a"));
    assert!(
        !before.nodes.contains_key("var"),
        "paths leading to spkd state are left out"
    );

    std::fs::write(root.join("var/lib/spk/db"), "state").unwrap();
    before.assert_untouched(&Snapshot::take(root));

    std::fs::remove_file(root.join("usr/bin/b")).unwrap();
    std::fs::write(root.join("usr/bin/c"), "c").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/a"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let diff = before.content_diff(&Snapshot::take(root));
    assert_eq!(diff.len(), 3, "{diff:?}");
    assert!(diff.iter().any(|l| l.starts_with("- usr/bin/b")));
    assert!(diff.iter().any(|l| l.starts_with("+ usr/bin/c")));
    assert!(diff.iter().any(|l| l.starts_with("~ usr/bin/a")));

    let before = Snapshot::take(root);
    std::fs::write(root.join("usr/bin/c.new"), "c").unwrap();
    std::fs::rename(root.join("usr/bin/c.new"), root.join("usr/bin/c")).unwrap();
    let after = Snapshot::take(root);
    assert!(before.content_diff(&after).is_empty(), "same content");
    assert_eq!(before.identity_diff(&after).len(), 1, "but rewritten");
}
