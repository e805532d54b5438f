//! Hostile archives and indexes, each built by the test itself: whatever the mirror serves, spkd
//! refuses the whole package with a message naming the package and the entry, writes nothing in
//! the root or beside it, and leaves no staging debris. (The first cases — `..`, writing through
//! a symlink, a character device, setuid in userland — are in `safety.rs`.) Also: a file owned
//! by another package is a conflict unless the user forces it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use spk_tests::repo::{RawTar, noise, xz, xz_with_dictionary};
use spk_tests::{Env, Package, Repo, Snapshot};

const VERIFICATION: &str = "xyz.smech.Spk1.Error.Verification";
const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";
const CANARY: &[u8] = b"canary: nothing may touch this file\n";

/// A root, and beside it (`DIR/outside`, a sibling of `DIR/root`) a directory holding a canary
/// file that hostile entries aim at.
struct Scene {
    env: Env,
    outside: PathBuf,
}

impl Scene {
    async fn new() -> Scene {
        Scene::with_env(Env::new(&Repo::new()).await)
    }

    /// A scene whose root is a tmpfs of `size`.
    async fn on_tmpfs(size: &str) -> Scene {
        Scene::with_env(Env::on_tmpfs(&Repo::new(), size).await)
    }

    fn with_env(env: Env) -> Scene {
        let outside = env.dir().join("outside");
        std::fs::create_dir(&outside).expect("create the outside directory");
        std::fs::write(outside.join("canary"), CANARY).expect("write the canary");
        Scene { env, outside }
    }

    /// The absolute path of the canary, as bytes for archive names.
    fn canary(&self) -> Vec<u8> {
        self.outside
            .join("canary")
            .into_os_string()
            .into_encoded_bytes()
    }

    /// Publish `repo`, run `spkctl --json install NAME`, and expect exit 1, a failed
    /// transaction with `error_name` whose message contains every fragment of `expected`, and
    /// no change at all in the root, beside it, or in the staging area.
    async fn install_fails(
        &self,
        repo: &Repo,
        name: &str,
        error_name: &str,
        expected: &[&str],
    ) -> String {
        self.env.publish(repo);
        let root_before = self.env.snapshot();
        let outside_before = Snapshot::take(&self.outside);

        let run = self.env.spkctl_json(&["install", name]).await;

        run.assert_code(1);
        let report = run.json();
        assert_eq!(report["state"], "failed", "{run}");
        assert_eq!(report["error-name"], error_name, "{run}");
        let message = report["error-message"].as_str().unwrap_or_default();
        // What the user sees (`cargo test --test hostile -- --nocapture` lists every case).
        eprintln!("user sees: {error_name}: {message}");
        for fragment in expected {
            assert!(
                message.contains(fragment),
                "the message lacks {fragment:?}:\n{run}"
            );
        }
        root_before.assert_untouched(&self.env.snapshot());
        outside_before.assert_untouched(&Snapshot::take(&self.outside));
        assert_eq!(
            std::fs::read(self.outside.join("canary")).expect("the canary is still there"),
            CANARY
        );
        self.assert_no_staging_debris();
        message.to_string()
    }

    /// Expect `NAME: refused archive entry 'ENTRY…': REASON` (a `Verification` error) for
    /// package `name` published as this raw archive.
    async fn refused(&self, name: &str, tar: RawTar, entry: &str, reason: &str) -> String {
        let repo = raw_repo(name, tar.tarball());
        let message = self
            .install_fails(
                &repo,
                name,
                VERIFICATION,
                &[&format!("{name}: refused archive entry '{entry}"), reason],
            )
            .await;
        assert!(
            message.starts_with(&format!("{name}: ")),
            "the message starts with the package: {message}"
        );
        message
    }

    #[track_caller]
    fn assert_no_staging_debris(&self) {
        let staging = self.env.path("var/lib/spk/staging");
        let left: Vec<String> = std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "staging debris in {staging:?}: {left:?}");
    }
}

/// A repository whose package `name` (version 1, userland) is exactly `tarball`, with an index
/// entry that matches its bytes.
fn raw_repo(name: &str, tarball: Vec<u8>) -> Repo {
    let mut repo = Repo::new();
    repo.add(Package::new(name, "1")).set_tarball(tarball);
    repo
}

/// An archive that starts like an honest package (a directory and a readme).
fn honest_start(name: &str) -> RawTar {
    RawTar::new().dir(b"usr/").dir(b"usr/share/").file(
        format!("usr/share/{name}.txt").as_bytes(),
        b"harmless\n",
        0o644,
    )
}

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}

#[tokio::test]
async fn an_absolute_path_fails_the_package() {
    let scene = Scene::new().await;
    let pwned = bytes(&scene.outside.join("pwned"));
    let tar = honest_start("evil-abs").file(&pwned, b"pwned\n", 0o644);

    let message = scene
        .refused(
            "evil-abs",
            tar,
            &String::from_utf8_lossy(&pwned),
            "absolute path",
        )
        .await;
    assert!(
        message.contains("evil-abs: refused archive entry '/"),
        "{message}"
    );

    // The same through a GNU long name, overwriting the canary; and as a plain-text run.
    let canary = scene.canary();
    let tar = honest_start("evil-abs-long").gnu_long_name(&canary).file(
        b"placeholder",
        b"pwned\n",
        0o644,
    );
    scene.env.publish(&raw_repo("evil-abs-long", tar.tarball()));
    let run = scene.env.spkctl(&["install", "evil-abs-long"]).await;
    run.assert_code(1);
    let expected = format!(
        "error: evil-abs-long: refused archive entry '{}': absolute path",
        String::from_utf8_lossy(&canary)
    );
    assert_eq!(run.error_line(), expected, "{run}");
    assert_eq!(std::fs::read(scene.outside.join("canary")).unwrap(), CANARY);
    scene.env.assert_absent("usr/share/evil-abs-long.txt");
}

#[tokio::test]
async fn a_name_with_a_nul_or_control_character_fails_the_package() {
    let scene = Scene::new().await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("evil-newline", b"usr/bin/evil\nname", "usr/bin/evil\\nname"),
        (
            "evil-escape",
            b"usr/bin/\x1b[2Jred",
            "usr/bin/\\u{1b}[2Jred",
        ),
        ("evil-del", b"usr/bin/del\x7f", "usr/bin/del\\u{7f}"),
        ("evil-tab", b"usr/bin/a\tb", "usr/bin/a\\tb"),
    ];
    for (name, raw, shown) in cases {
        let tar = honest_start(name).file(raw, b"x\n", 0o644);
        scene
            .refused(name, tar, shown, "name contains a NUL or control character")
            .await;
    }

    // A NUL can only hide in a pax `path` record: "usr/bin/nul\0../../../outside/canary".
    let mut path = b"usr/bin/nul\0".to_vec();
    path.extend_from_slice(b"../../../outside/canary");
    let tar = honest_start("evil-nul").pax(&[("path", &path)]).file(
        b"usr/bin/innocent",
        b"pwned\n",
        0o644,
    );
    scene
        .refused(
            "evil-nul",
            tar,
            "usr/bin/nul\\0",
            "name contains a NUL or control character",
        )
        .await;
}

#[tokio::test]
async fn a_name_that_is_not_utf8_fails_the_package() {
    let scene = Scene::new().await;
    let tar = honest_start("evil-latin1").file(b"usr/share/caf\xe9\xff", b"x\n", 0o644);

    scene
        .refused(
            "evil-latin1",
            tar,
            "usr/share/caf\u{fffd}\u{fffd}",
            "name is not valid UTF-8",
        )
        .await;
}

#[tokio::test]
async fn overlong_names_and_components_fail_the_package() {
    let scene = Scene::new().await;
    // 21 components of 200 bytes: each is fine, the whole is longer than PATH_MAX.
    let long_path = format!("usr/{}x", format!("{}/", "d".repeat(200)).repeat(21));
    assert!(long_path.len() > 4096);
    let tar = honest_start("evil-long-path")
        .gnu_long_name(long_path.as_bytes())
        .file(b"placeholder", b"x\n", 0o644);
    scene
        .refused(
            "evil-long-path",
            tar,
            "usr/dddd",
            "name longer than 4096 bytes",
        )
        .await;

    let long_name = format!("usr/share/{}", "x".repeat(300));
    let tar = honest_start("evil-long-name")
        .gnu_long_name(long_name.as_bytes())
        .file(b"placeholder", b"x\n", 0o644);
    scene
        .refused(
            "evil-long-name",
            tar,
            "usr/share/xxxx",
            "path component longer than 255 bytes",
        )
        .await;
}

#[tokio::test]
async fn a_duplicate_entry_fails_the_package() {
    let scene = Scene::new().await;
    let tar = honest_start("evil-twice")
        .file(b"usr/bin/tool", b"first\n", 0o755)
        .file(b"usr/bin/tool", b"second\n", 0o755);
    scene
        .refused("evil-twice", tar, "usr/bin/tool", "duplicate entry")
        .await;

    // The same path spelled twice (`./` prefix) is still the same entry.
    let tar = honest_start("evil-spelled-twice")
        .file(b"usr/bin/tool", b"first\n", 0o755)
        .file(b"./usr/bin/tool", b"second\n", 0o4755);
    scene
        .refused(
            "evil-spelled-twice",
            tar,
            "./usr/bin/tool",
            "duplicate entry",
        )
        .await;
}

#[tokio::test]
async fn a_symlink_climbing_above_the_root_fails_the_package() {
    let scene = Scene::new().await;
    let cases: [(&str, &[u8], &[u8]); 3] = [
        ("evil-climb", b"usr/lib/escape", b"../../../outside"),
        ("evil-climb-top", b"escape", b"../outside/canary"),
        (
            "evil-climb-twisty",
            b"usr/lib/escape",
            b"../../usr/../../outside",
        ),
    ];
    for (name, link, target) in cases {
        let tar = honest_start(name)
            .dir(b"usr/lib/")
            .symlink(link, target)
            .file(b"usr/lib/escape/pwned", b"pwned\n", 0o644);
        let target = String::from_utf8_lossy(target);
        scene
            .refused(
                name,
                tar,
                &String::from_utf8_lossy(link),
                &format!("symlink target '{target}' points outside the root"),
            )
            .await;
    }
}

#[tokio::test]
async fn a_hard_link_to_anything_but_an_earlier_file_of_the_package_fails_it() {
    let scene = Scene::new().await;
    // Another package's file, already installed.
    let victim = Repo::new().with(Package::new("victim", "1").file(
        "usr/share/victim/data",
        "victim data\n",
        0o644,
    ));
    scene.env.publish(&victim);
    scene
        .env
        .spkctl(&["install", "victim"])
        .await
        .assert_success();

    let canary = scene.canary();
    let not_earlier = "which is not an earlier file of this package";
    let cases: Vec<(&str, RawTar, &str)> = vec![
        (
            "evil-link-abs",
            honest_start("evil-link-abs").hardlink(b"usr/bin/h", &canary),
            "hard link target: absolute path",
        ),
        (
            "evil-link-up",
            honest_start("evil-link-up").hardlink(b"usr/bin/h", b"../outside/canary"),
            "hard link target: path contains '..'",
        ),
        (
            "evil-link-later",
            honest_start("evil-link-later")
                .hardlink(b"usr/bin/h", b"usr/bin/later")
                .file(b"usr/bin/later", b"later\n", 0o755),
            not_earlier,
        ),
        (
            "evil-link-dir",
            honest_start("evil-link-dir").hardlink(b"usr/bin/h", b"usr/share"),
            not_earlier,
        ),
        (
            "evil-link-symlink",
            honest_start("evil-link-symlink")
                .symlink(b"usr/bin/s", b"/etc/shadow")
                .hardlink(b"usr/bin/h", b"usr/bin/s"),
            not_earlier,
        ),
        (
            "evil-link-victim",
            honest_start("evil-link-victim").hardlink(b"usr/bin/h", b"usr/share/victim/data"),
            not_earlier,
        ),
    ];
    for (name, tar, reason) in cases {
        scene.refused(name, tar, "usr/bin/h", reason).await;
    }
    let data = std::fs::metadata(scene.env.path("usr/share/victim/data")).unwrap();
    assert_eq!(data.nlink(), 1, "another package's file gained a link");
    assert_eq!(
        std::fs::metadata(scene.outside.join("canary"))
            .unwrap()
            .nlink(),
        1
    );
}

#[tokio::test]
async fn a_block_device_fails_the_package() {
    let scene = Scene::new().await;
    let tar = honest_start("evil-block").block_device(b"usr/share/disk", 8, 0);

    scene
        .refused(
            "evil-block",
            tar,
            "usr/share/disk",
            "entry type block device is not allowed",
        )
        .await;
}

#[tokio::test]
async fn a_fifo_fails_the_package() {
    let scene = Scene::new().await;
    let tar = honest_start("evil-fifo").fifo(b"usr/share/pipe");

    scene
        .refused(
            "evil-fifo",
            tar,
            "usr/share/pipe",
            "entry type FIFO is not allowed",
        )
        .await;
}

#[tokio::test]
async fn sparse_entries_fail_the_package() {
    let scene = Scene::new().await;
    // Old GNU sparse format: type `S` with the map in the header.
    let tar = honest_start("evil-sparse").gnu_sparse(b"usr/share/holes", b"data\n", 1 << 20);
    scene
        .refused(
            "evil-sparse",
            tar,
            "usr/share/holes",
            "entry type GNU sparse file is not allowed",
        )
        .await;

    // pax GNU sparse 1.0: a regular entry whose pax records carry `GNU.sparse.*`.
    let tar = honest_start("evil-pax-sparse")
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"usr/share/holes"),
            ("GNU.sparse.realsize", b"1049088"),
        ])
        .file(
            b"usr/share/GNUSparseFile.0/holes",
            b"1\n1048576\n512\n",
            0o644,
        );
    scene
        .refused(
            "evil-pax-sparse",
            tar,
            "usr/share/",
            "sparse files are not allowed",
        )
        .await;
}

#[tokio::test]
async fn a_system_package_keeps_setuid_only_where_its_index_allows_it() {
    let scene = Scene::new().await;
    let mut repo = Repo::new();
    repo.add(Package::new("shadow-utils", "1").system().file(
        "usr/bin/su",
        "#!/bin/sh\n",
        0o4755,
    ))
    .setuid = vec!["usr/bin/su".into()];
    scene.env.publish(&repo);

    scene
        .env
        .spkctl(&["install", "shadow-utils"])
        .await
        .assert_success();
    scene.env.assert_file("usr/bin/su", b"#!/bin/sh\n", 0o4755);

    // A setgid file the index does not list: the whole package is refused.
    let mut repo = Repo::new();
    repo.add(
        Package::new("sneaky-system", "1")
            .system()
            .file("usr/bin/allowed", "#!/bin/sh\n", 0o4755)
            .file("usr/bin/sneaky", "#!/bin/sh\n", 0o2755),
    )
    .setuid = vec!["usr/bin/allowed".into()];
    scene
        .install_fails(
            &repo,
            "sneaky-system",
            VERIFICATION,
            &["sneaky-system: refused archive entry 'usr/bin/sneaky': setuid/setgid bit (2755) not allowed in this system package"],
        )
        .await;
    scene.env.assert_absent("usr/bin/allowed");
}

#[tokio::test]
async fn a_userland_package_is_refused_setuid_even_where_its_index_lists_it() {
    let scene = Scene::new().await;
    let mut repo = Repo::new();
    repo.add(Package::new("sneaky", "1").file("usr/bin/sneaky", "#!/bin/sh\nid\n", 0o4755))
        .setuid = vec!["usr/bin/sneaky".into()];

    scene
        .install_fails(
            &repo,
            "sneaky",
            VERIFICATION,
            &["sneaky: refused archive entry 'usr/bin/sneaky': setuid/setgid bit (4755) not allowed in this userland package"],
        )
        .await;
}

#[tokio::test]
async fn only_a_system_package_may_ship_hooks_that_run_as_root() {
    let scene = Scene::new().await;
    let hook = "[Trigger]\nType = Package\nOperation = Install\nTarget = *\n\n[Action]\n\
                When = PostTransaction\nExec = /usr/bin/true\n";
    let mut repo = Repo::new();
    repo.add(Package::new("game", "1").file("usr/share/spk/hooks/game.hook", hook, 0o644));
    scene
        .install_fails(
            &repo,
            "game",
            VERIFICATION,
            &["game: refused archive entry 'usr/share/spk/hooks/game.hook': hooks run as root: only a system package may ship them, not this userland package"],
        )
        .await;
    scene.env.assert_absent("usr/share/spk/hooks/game.hook");

    // A symlink above the hooks directory would move where spkd reads them from.
    let mut repo = Repo::new();
    repo.add(Package::new("redirect", "1").symlink("usr/share/spk", "/tmp"));
    scene
        .install_fails(
            &repo,
            "redirect",
            VERIFICATION,
            &["redirect: refused archive entry 'usr/share/spk': hooks run as root"],
        )
        .await;
    scene.env.assert_absent("usr/share/spk");

    // The same hook in a system package installs.
    let mut repo = Repo::new();
    repo.add(Package::new("base-hooks", "1").system().file(
        "usr/share/spk/hooks/base.hook",
        hook,
        0o644,
    ));
    scene.env.publish(&repo);
    scene
        .env
        .spkctl(&["install", "base-hooks"])
        .await
        .assert_success();
    scene
        .env
        .assert_file("usr/share/spk/hooks/base.hook", hook.as_bytes(), 0o644);
}

#[tokio::test]
async fn an_archive_of_more_than_500000_entries_fails_the_package() {
    // On a tmpfs: staging half a million files on a journaled disk takes minutes.
    let scene = Scene::on_tmpfs("1g").await;
    // A directory and 500,000 empty files: 500,001 entries, 256 MB of headers.
    const FILES: usize = 500_000;
    let template = RawTar::header(b"d/0000000", b'0', 0o644, 0, b"");
    let template_sum: u32 = template[..148]
        .iter()
        .chain(&template[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    let mut tar = Vec::with_capacity((FILES + 3) * 512);
    tar.extend_from_slice(&RawTar::header(b"d/", b'5', 0o755, 0, b""));
    for i in 0..FILES {
        let mut header = template;
        let digits = format!("{i:07}");
        header[2..9].copy_from_slice(digits.as_bytes());
        let sum = template_sum
            + digits
                .bytes()
                .map(|b| u32::from(b) - u32::from(b'0'))
                .sum::<u32>();
        header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
        tar.extend_from_slice(&header);
    }
    tar.extend_from_slice(&[0; 1024]);
    let repo = raw_repo("evil-many", xz_fast(&tar));

    scene
        .install_fails(
            &repo,
            "evil-many",
            VERIFICATION,
            &["evil-many: refused archive entry 'd/0499999': archive has more than 500000 entries"],
        )
        .await;
}

/// xz at preset 0 with the system's `xz` (optimised and threaded: the test harness's own
/// liblzma is built without optimisation), for the one archive of hundreds of megabytes.
fn xz_fast(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("xz")
        .args(["-0", "-T2", "--stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run xz (package xz-utils)");
    let mut stdin = child.stdin.take().expect("xz stdin");
    let feed = {
        let data = data.to_vec();
        std::thread::spawn(move || stdin.write_all(&data))
    };
    let out = child.wait_with_output().expect("xz output");
    feed.join().expect("feeding xz").expect("write to xz");
    assert!(out.status.success(), "xz failed");
    out.stdout
}

#[tokio::test]
async fn a_file_claiming_more_than_16_gib_fails_the_package() {
    let scene = Scene::new().await;
    // The header alone: the cap is checked before a byte of content is read.
    let size = 17u64 << 30;
    let tar =
        honest_start("evil-huge").block(RawTar::header(b"usr/share/huge", b'0', 0o644, size, b""));

    scene
        .refused(
            "evil-huge",
            tar,
            "usr/share/huge",
            "file is larger than 17179869184 bytes",
        )
        .await;
}

#[tokio::test]
async fn a_package_unpacking_to_more_than_its_index_says_fails() {
    let scene = Scene::new().await;
    // 4 MiB of zeros: a few hundred bytes of xz, but the index says 1000 bytes installed.
    let mut repo = Repo::new();
    repo.add(
        Package::new("evil-bomb", "1")
            .file("usr/share/doc/readme", "small\n", 0o644)
            .file("usr/share/bomb", vec![0u8; 4 << 20], 0o644),
    )
    .installed_size = 1000;
    assert!(repo.get("evil-bomb").size < 64 * 1024);

    scene
        .install_fails(
            &repo,
            "evil-bomb",
            VERIFICATION,
            &["evil-bomb: refused archive entry 'usr/share/bomb': package unpacks to more than 1049676 bytes (index says 1000)"],
        )
        .await;
}

#[tokio::test]
async fn more_than_1_mib_after_the_tar_end_marker_fails_the_package() {
    let scene = Scene::new().await;
    let raw = honest_start("evil-trailer").finish_with_trailing(&vec![0u8; 2 << 20]);
    let repo = raw_repo("evil-trailer", xz(&raw));

    scene
        .install_fails(
            &repo,
            "evil-trailer",
            VERIFICATION,
            &["evil-trailer: refused archive entry '(end of archive)': more than 1 MiB of data after the end of the tar archive"],
        )
        .await;
}

#[tokio::test]
async fn an_xz_stream_needing_more_than_80_mib_of_memory_fails_the_package() {
    let scene = Scene::new().await;
    // A tiny archive whose xz header asks for a 128 MiB dictionary.
    let tarball = xz_with_dictionary(&honest_start("evil-xz-memory").finish(), 128 << 20);
    assert!(tarball.len() < 4096);
    let repo = raw_repo("evil-xz-memory", tarball);

    let message = scene
        .install_fails(&repo, "evil-xz-memory", VERIFICATION, &["evil-xz-memory: "])
        .await;
    assert!(
        message.to_lowercase().contains("memory"),
        "the message says that the stream needs too much memory: {message}"
    );
}

#[tokio::test]
async fn a_corrupt_xz_stream_fails_the_package() {
    let scene = Scene::new().await;
    let package = Package::new("evil-corrupt", "1")
        .file("usr/share/doc/readme", "hello\n".repeat(2000), 0o644)
        .file("usr/lib/libdata.so", noise(3, 32 * 1024), 0o755);
    let mut tarball = package.tarball();
    // Flip a byte in the middle of the compressed data; the index describes the damaged file,
    // so only xz itself (its data or its check) can tell.
    let middle = tarball.len() / 2;
    tarball[middle] ^= 0x55;
    let mut repo = Repo::new();
    repo.add(package).set_tarball(tarball);

    let message = scene
        .install_fails(
            &repo,
            "evil-corrupt",
            VERIFICATION,
            &["evil-corrupt: corrupt archive: the xz data is damaged or its check does not match"],
        )
        .await;
    assert!(!message.contains("sha256 mismatch"), "{message}");
}

#[tokio::test]
async fn an_index_with_an_invalid_package_name_is_refused_whole() {
    let scene = Scene::new().await;
    let good = Repo::new().with(Package::new("plasma", "1").file(
        "usr/share/plasma/version",
        "1\n",
        0o644,
    ));
    let url = scene.env.server.url("/repo/index.json");
    for bad in [
        "../../outside",
        "Plasma",
        "a/b",
        "",
        "-plasma",
        "plasma shell",
        &"x".repeat(65),
    ] {
        let mut index = good.index();
        let mut entry = index["packages"][0].clone();
        entry["name"] = json!(bad);
        entry["file"] = json!("evil.tar.xz");
        index["packages"].as_array_mut().unwrap().push(entry);
        // The good tarball, and the doctored index in place of the good one.
        scene.env.publish(&good);
        scene
            .env
            .server
            .put("/repo/index.json", serde_json::to_vec(&index).unwrap());
        scene.env.server.clear_requests();

        let before = scene.env.snapshot();
        let run = scene.env.spkctl_json(&["install", "plasma"]).await;

        run.assert_code(1);
        let report = run.json();
        assert_eq!(report["error-name"], VERIFICATION, "{run}");
        let message = report["error-message"].as_str().unwrap_or_default();
        let shown = bad.escape_debug().to_string();
        assert!(
            message.contains(&url) && message.contains(&format!("invalid package name '{shown}'")),
            "the message names the index and the bad name {bad:?}:\n{run}"
        );
        before.assert_untouched(&scene.env.snapshot());
        assert!(
            scene.env.server.tarball_gets().is_empty(),
            "nothing is downloaded from a refused index"
        );
    }
}

/// Two packages that both carry `usr/share/common/theme`.
fn rivals() -> Repo {
    Repo::new()
        .with(
            Package::new("breeze", "1")
                .file("usr/share/common/theme", "breeze\n", 0o644)
                .file("usr/share/breeze/only", "breeze only\n", 0o644),
        )
        .with(
            Package::new("oxygen", "1")
                .file("usr/share/common/theme", "oxygen\n", 0o644)
                .file("usr/share/oxygen/only", "oxygen only\n", 0o644),
        )
}

#[tokio::test]
async fn a_file_of_another_package_is_a_conflict_unless_forced() {
    let scene = Scene::new().await;
    let repo = rivals();
    scene.env.publish(&repo);
    scene
        .env
        .spkctl(&["install", "breeze"])
        .await
        .assert_success();

    scene
        .install_fails(
            &repo,
            "oxygen",
            CONFLICT,
            &["oxygen: usr/share/common/theme is owned by package breeze"],
        )
        .await;
    let plain = scene.env.spkctl(&["install", "oxygen"]).await;
    plain.assert_code(1);
    assert!(
        plain.error_line().contains("oxygen") && plain.error_line().contains("breeze"),
        "{plain}"
    );

    scene
        .env
        .spkctl(&["install", "--force-overwrite", "oxygen"])
        .await
        .assert_success();
    scene
        .env
        .assert_file("usr/share/common/theme", b"oxygen\n", 0o644);
    scene
        .env
        .assert_file("usr/share/oxygen/only", b"oxygen only\n", 0o644);
    scene.env.spkctl(&["verify"]).await.assert_success();

    // The file moved to oxygen: removing breeze leaves it, removing oxygen takes it.
    scene
        .env
        .spkctl(&["remove", "breeze"])
        .await
        .assert_success();
    scene
        .env
        .assert_file("usr/share/common/theme", b"oxygen\n", 0o644);
    scene.env.assert_absent("usr/share/breeze/only");
    scene
        .env
        .spkctl(&["remove", "oxygen"])
        .await
        .assert_success();
    scene.env.assert_absent("usr/share/common/theme");
}

#[tokio::test]
async fn the_force_option_on_dbus_takes_the_file_over() {
    let scene = Scene::new().await;
    scene.env.publish(&rivals());
    scene
        .env
        .spkctl(&["install", "breeze"])
        .await
        .assert_success();
    let client = scene.env.client().await;
    let mut watch = client.watch().await;

    let refused = client.install(&["oxygen"], HashMap::new()).await.unwrap();
    let log = watch
        .until_finished(refused.as_str(), std::time::Duration::from_secs(60))
        .await;
    assert_eq!(log.finished.0, "failed", "{log:#?}");
    assert_eq!(log.finished.1, CONFLICT, "{log:#?}");
    assert!(
        log.finished.2.contains("is owned by package breeze"),
        "{log:#?}"
    );

    let options = HashMap::from([("force", zbus::zvariant::Value::from(true))]);
    let forced = client.install(&["oxygen"], options).await.unwrap();
    let log = watch
        .until_finished(forced.as_str(), std::time::Duration::from_secs(60))
        .await;
    assert_eq!(log.finished.0, "finished", "{log:#?}");
    scene
        .env
        .assert_file("usr/share/common/theme", b"oxygen\n", 0o644);
}
