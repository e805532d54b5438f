//! The real-root fixture itself: `Env::builder` makes the mounts and the existing entries it
//! is asked for, spkd runs inside that mount namespace and keeps it across restarts, nothing
//! leaks into the host's mount table, and dropping the `Env` ends it all.

use std::os::unix::fs::MetadataExt;

use spk_tests::{Env, Package, Repo};

fn hello() -> Package {
    Package::new("hello", "1")
        .file("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755)
        .file("usr/share/hello/greeting", "hello\n", 0o644)
}

/// The mounts of the host (this test's own namespace), as text.
fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("read our mountinfo")
}

#[tokio::test]
async fn the_builder_makes_mounts_and_existing_entries_before_spkd_starts() {
    let env = Env::builder(&Repo::new().with(hello()))
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .dir_owned("opt", 0o750, 1000, 1000)
        .file("etc/hostname", "box\n", 0o600)
        .symlink("lib", "usr/lib")
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .bind_file("etc/hosts", "127.0.0.1 localhost\n")
        .tmpfs("var", "32m")
        .start()
        .await;

    env.assert_dir("tmp", 0o1777);
    env.assert_dir("root", 0o700);
    env.assert_dir("opt", 0o750);
    env.assert_owner("opt", 1000, 1000);
    env.assert_file("etc/hostname", b"box\n", 0o600);
    env.assert_symlink("lib", "usr/lib");
    env.assert_mount("", "tmpfs");
    env.assert_mount("boot", "tmpfs");
    env.assert_mount("boot/efi", "fuse.fusefat");
    env.assert_mount("var", "tmpfs");
    assert!(
        env.fstype("etc/hosts").is_some(),
        "etc/hosts is not a mount point"
    );
    assert_eq!(env.fstype("usr"), None);
    env.assert_content("etc/hosts", b"127.0.0.1 localhost\n");

    // The FAT mount has FAT's semantics, as seen from inside the namespace.
    let fat = env.in_namespace(
        r#"cd "$ROOT/boot/efi"
        echo data > file
        ln -s file link 2>/dev/null && echo symlink-made || echo no-symlink
        ln file hard 2>/dev/null && echo hardlink-made || echo no-hardlink
        chmod 0644 file 2>/dev/null && echo chmod-done || echo no-chmod"#,
    );
    assert_eq!(fat, "no-symlink\nno-hardlink\nno-chmod\n");
    env.assert_content("boot/efi/file", b"data\n");

    // spkd runs in the namespace; the host sees none of its mounts.
    let spkd_mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", env.spkd.pid()))
        .expect("spkd's mountinfo");
    let efi = env.spkd_path("boot/efi");
    assert!(
        spkd_mounts.contains(&format!(" {} ", efi.display())),
        "spkd does not see boot/efi mounted:\n{spkd_mounts}"
    );
    assert!(
        !host_mountinfo().contains(&env.dir().display().to_string()),
        "a mount leaked into the host:\n{}",
        host_mountinfo()
    );
}

#[tokio::test]
async fn spkd_installs_into_the_namespace_root_and_keeps_it_across_restarts() {
    let mut env = Env::builder(&Repo::new().with(hello()))
        .tmpfs("boot", "16m")
        .start()
        .await;
    let namespace = env.namespace().pid();

    env.spkctl(&["install", "hello"]).await.assert_success();
    env.restart_spkd().await;

    assert_eq!(env.namespace().pid(), namespace);
    env.assert_mount("boot", "tmpfs");
    env.assert_files_are(&[&hello()], &[]);
    assert_eq!(env.installed_version("hello").await.as_deref(), Some("1"));
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
    // The files are on the root's own tmpfs, not on the host's disk below it.
    let on_host = env.dir().join("root/usr/bin/hello");
    assert!(!on_host.exists(), "{} is on the host", on_host.display());
    let meta = std::fs::metadata(env.path("usr/bin/hello")).expect("usr/bin/hello");
    let host = std::fs::metadata(env.dir()).expect("the test directory");
    assert_ne!(meta.dev(), host.dev());
}

#[tokio::test]
async fn dropping_the_env_ends_the_namespace_its_fat_driver_and_its_mounts() {
    let env = Env::builder(&Repo::new())
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .start()
        .await;
    let holder = env.namespace().pid();
    let dir = env.dir().display().to_string();

    drop(env);

    assert!(
        !std::path::Path::new(&format!("/proc/{holder}")).exists(),
        "the namespace holder {holder} still runs"
    );
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    assert!(survivors.is_empty(), "processes survive: {survivors:?}");
    assert!(!host_mountinfo().contains(&dir));
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was not removed"
    );
}

#[tokio::test]
async fn staging_debris_is_found_on_every_mount() {
    let env = Env::builder(&Repo::new())
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .start()
        .await;
    env.assert_staging_clean();
    let debris_panics = |env: &Env| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.assert_staging_clean()))
            .is_err()
    };

    // (what a crashed transaction might leave, what to delete afterwards)
    for (debris, top) in [
        ("var/lib/spk/staging/7/plasma", "var/lib/spk/staging/7"),
        ("boot/.spk-staging-7", "boot/.spk-staging-7"),
        ("boot/efi/.spk-staging-7/EFI", "boot/efi/.spk-staging-7"),
        ("usr/share/.spk-staging-7", "usr"),
    ] {
        env.in_namespace(&format!(r#"mkdir -p "$ROOT/{debris}""#));
        assert!(debris_panics(&env), "{debris} was not found");
        env.in_namespace(&format!(r#"rm -r "$ROOT/{top}""#));
        env.assert_staging_clean();
    }
}

#[tokio::test]
async fn file_modes_are_not_compared_on_fat() {
    let efi = Package::new("efi", "1").file("boot/efi/EFI/x.efi", "MZ\n", 0o644);
    let env = Env::builder(&Repo::new())
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .start()
        .await;
    env.in_namespace(
        r#"mkdir -p "$ROOT/boot/efi/EFI"; printf 'MZ\n' > "$ROOT/boot/efi/EFI/x.efi""#,
    );

    assert!(env.on_fat("boot/efi/EFI/x.efi"));
    assert!(!env.on_fat("boot/grub"));
    env.assert_files_are(&[&efi], &[]);
}

#[test]
fn notes_are_the_lines_after_the_summary() {
    let run = |stdout: &str| spk_tests::daemon::CtlOutput {
        args: Vec::new(),
        code: Some(0),
        stdout: stdout.to_string(),
        stderr: String::new(),
    };
    let plain = run(
        "foo: downloading 1 KiB\nUpgraded 1 package (foo 2) in 0.1 s.\n\
                     note: foo: etc/a was changed locally and kept; the new version is etc/a.spknew\n\
                     note: foo: etc/b was changed locally and kept; the new version is etc/b.spknew\n",
    );
    assert_eq!(plain.notes().len(), 2);
    assert!(
        run("Removed 1 package (foo 1) in 0.1 s.\n")
            .notes()
            .is_empty()
    );
    let misplaced = run("note: foo: too early\nUpgraded 1 package (foo 2) in 0.1 s.\n");
    assert!(std::panic::catch_unwind(|| misplaced.notes().len()).is_err());
}
