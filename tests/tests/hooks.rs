//! Transaction hooks (spk-hooks(5)): files in the target root trigger on the paths and packages
//! a transaction changes, run before or after the commits, chrooted into the root, once each,
//! in name order, with their targets on stdin when they ask. A pre-transaction hook with
//! AbortOnFail stops the transaction before anything changed; any other failure, a timeout or a
//! missing tool is a note, never an undone commit.
//!
//! The roots here hold a static busybox as `/bin/sh`, so hook scripts run chrooted as they would
//! on SmechOS (Debian's busybox-static; `.ci/run` installs it).

use std::path::Path;

use spk_tests::{Env, Package, Repo};

const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";

/// Give the root a shell: a static busybox at `bin/busybox`, `bin/sh` and the few applets the
/// hook scripts here use.
fn give_shell(env: &Env) {
    std::fs::create_dir_all(env.path("bin")).unwrap();
    std::fs::copy("/bin/busybox", env.path("bin/busybox")).expect("a static /bin/busybox");
    for applet in ["sh", "cat", "echo", "sleep", "test", "sed", "sort", "ls"] {
        std::os::unix::fs::symlink("busybox", env.path(&format!("bin/{applet}"))).unwrap();
    }
    std::fs::create_dir_all(env.path("var/log")).unwrap();
}

/// Write the admin's hook `name` (`etc/spk/hooks.d/NAME.hook`).
fn admin_hook(env: &Env, name: &str, text: &str) {
    let dir = env.path("etc/spk/hooks.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.hook")), text).unwrap();
}

/// An executable script at `rel` in the root.
fn script(env: &Env, rel: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = env.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What the recording hooks wrote into `var/log/hooks`.
fn record(env: &Env) -> String {
    std::fs::read_to_string(env.path("var/log/hooks")).unwrap_or_default()
}

/// A hook running `/usr/bin/record NAME` when `when`, on `trigger` lines.
fn recording_hook(name: &str, when: &str, trigger: &str, extra: &str) -> String {
    format!(
        "[Trigger]\n{trigger}\n\n[Action]\nDescription = Recording {name}...\nWhen = {when}\n\
         Exec = /usr/bin/record {name}\n{extra}"
    )
}

const RECORD: &str = "echo \"$1 ran; libfoo there: $(test -e /usr/lib/libfoo.so.1 && echo yes || echo no)\" >> /var/log/hooks\n\
                      while read -r line; do echo \"  $line\" >> /var/log/hooks; done\n";

fn libs(version: &str) -> Package {
    let p = Package::new("foo", version)
        .file("usr/lib/libfoo.so.1", format!("foo {version}\n"), 0o755)
        .file("usr/share/doc/foo/README", "foo\n", 0o644);
    if version == "1" {
        p.file("usr/lib/libfoo-old.so.1", "old\n", 0o755)
    } else {
        p
    }
}

#[tokio::test]
async fn hooks_run_once_in_order_before_and_after_with_their_targets() {
    let env = Env::new(&Repo::new().with(libs("1"))).await;
    give_shell(&env);
    script(&env, "usr/bin/record", RECORD);
    let libraries = "Type = Path\nOperation = Install\nOperation = Upgrade\nOperation = Remove\nTarget = usr/lib/*.so*";
    admin_hook(
        &env,
        "20-after",
        &recording_hook("20-after", "PostTransaction", libraries, "NeedsTargets\n"),
    );
    admin_hook(
        &env,
        "10-after",
        &recording_hook("10-after", "PostTransaction", libraries, ""),
    );
    admin_hook(
        &env,
        "05-before",
        &recording_hook("05-before", "PreTransaction", libraries, "NeedsTargets\n"),
    );
    admin_hook(
        &env,
        "30-docs",
        &recording_hook(
            "30-docs",
            "PostTransaction",
            "Type = Path\nOperation = Install\nTarget = usr/share/icons/*",
            "",
        ),
    );

    let run = env.spkctl(&["install", "foo"]).await;

    run.assert_success();
    assert_eq!(
        record(&env),
        "05-before ran; libfoo there: no\n  usr/lib/libfoo-old.so.1\n  usr/lib/libfoo.so.1\n\
         10-after ran; libfoo there: yes\n\
         20-after ran; libfoo there: yes\n  usr/lib/libfoo-old.so.1\n  usr/lib/libfoo.so.1\n",
        "{run}"
    );
    for line in [
        "running hook: Recording 05-before...",
        "running hook: Recording 10-after...",
        "running hook: Recording 20-after...",
    ] {
        assert!(run.stdout.contains(line), "{run}");
    }
    assert!(!run.stdout.contains("30-docs"), "{run}");

    // An upgrade: the kept library is an Upgrade, the dropped one a Remove.
    std::fs::remove_file(env.path("var/log/hooks")).unwrap();
    admin_hook(
        &env,
        "40-removed",
        &recording_hook(
            "40-removed",
            "PostTransaction",
            "Type = Path\nOperation = Remove\nTarget = usr/lib/*",
            "NeedsTargets\n",
        ),
    );
    env.publish(&Repo::new().with(libs("2")));
    env.spkctl(&["upgrade"]).await.assert_success();
    let log = record(&env);
    assert!(
        log.contains("40-removed ran; libfoo there: yes\n  usr/lib/libfoo-old.so.1\n"),
        "{log}"
    );
    assert!(
        log.starts_with("05-before ran; libfoo there: yes\n"),
        "{log}"
    );
}

#[tokio::test]
async fn a_pre_transaction_hook_with_abort_on_fail_stops_before_anything_changed() {
    let env = Env::new(&Repo::new().with(libs("1"))).await;
    give_shell(&env);
    script(
        &env,
        "usr/bin/check-power",
        "echo 'on battery: refusing to upgrade'\nexit 1\n",
    );
    admin_hook(
        &env,
        "power",
        "[Trigger]\nType = Package\nOperation = Install\nOperation = Upgrade\nTarget = *\n\n\
         [Action]\nDescription = Checking the power supply...\nWhen = PreTransaction\n\
         Exec = /usr/bin/check-power\nAbortOnFail\n",
    );
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "foo"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], CONFLICT, "{run}");
    assert_eq!(
        run.json()["error-message"],
        "hook power stopped the transaction before anything changed: failed with exit code 1: \
         on battery: refusing to upgrade",
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(
        env.spkctl_json(&["info", "foo"]).await.json()["state"] == "available",
        "nothing was installed"
    );
}

#[tokio::test]
async fn a_failing_or_hanging_post_hook_is_a_warning_and_the_commit_stays() {
    let server = spk_tests::HttpServer::start();
    Repo::new().with(libs("1")).publish(&server);
    let config = format!(
        "hook_timeout = 2\n{}",
        spk_tests::fixture::index_config(&server)
    );
    let env = Env::with_config(server, &config).await;
    give_shell(&env);
    script(
        &env,
        "usr/bin/fail",
        "echo 'cache is corrupt' >&2\nexit 3\n",
    );
    script(&env, "usr/bin/hang", "sleep 60\n");
    let any = "Type = Package\nOperation = Install\nTarget = foo";
    admin_hook(
        &env,
        "fail",
        &format!("[Trigger]\n{any}\n\n[Action]\nWhen = PostTransaction\nExec = /usr/bin/fail\n"),
    );
    admin_hook(
        &env,
        "hang",
        &format!("[Trigger]\n{any}\n\n[Action]\nWhen = PostTransaction\nExec = /usr/bin/hang\n"),
    );
    admin_hook(
        &env,
        "missing",
        &format!(
            "[Trigger]\n{any}\n\n[Action]\nDescription = Using a tool that is not there...\nWhen = PostTransaction\nExec = /usr/bin/not-installed\n"
        ),
    );
    let started = std::time::Instant::now();

    let run = env.spkctl(&["install", "foo"]).await;

    run.assert_success();
    eprintln!("{run}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "the hang was not cut short"
    );
    assert!(
        run.stderr
            .contains("warning: hook fail: failed with exit code 3: cache is corrupt"),
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "warning: hook hang: did not finish within hook_timeout (2 s) and was killed"
        ),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("running hook: Using a tool that is not there...\n  (skipped"),
        "{run}"
    );
    assert!(!run.stderr.contains("hook missing"), "{run}");
    env.assert_file("usr/lib/libfoo.so.1", b"foo 1\n", 0o755);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn the_admins_empty_hook_disables_the_shipped_one() {
    let env = Env::new(&Repo::new().with(libs("1"))).await;
    give_shell(&env);
    script(&env, "usr/bin/record", RECORD);
    let shipped = env.path("usr/share/spk/hooks");
    std::fs::create_dir_all(&shipped).unwrap();
    let any = "Type = Package\nOperation = Install\nTarget = foo";
    for name in ["kept", "disabled"] {
        std::fs::write(
            shipped.join(format!("{name}.hook")),
            recording_hook(name, "PostTransaction", any, ""),
        )
        .unwrap();
    }
    admin_hook(&env, "disabled", "");

    env.spkctl(&["install", "foo"]).await.assert_success();

    assert_eq!(record(&env), "kept ran; libfoo there: yes\n");
}

/// The repository's own hooks, installed into the root as `make install` puts them.
fn ship_repository_hooks(env: &Env) {
    let dest = env.path("usr/share/spk/hooks");
    std::fs::create_dir_all(&dest).unwrap();
    let src = spk_tests::daemon::workspace_root().join("hooks");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn the_shipped_ldconfig_hook_runs_the_real_ldconfig_in_the_root() {
    // A real shared library (the host's zlib) in a package.
    let libz = std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libz.so.1").expect("zlib");
    let file = libz.file_name().unwrap().to_string_lossy().into_owned();
    let package = Package::new("zlib", "1")
        .file(
            &format!("usr/lib/{file}"),
            std::fs::read(&libz).unwrap(),
            0o755,
        )
        .symlink("usr/lib/libz.so.1", &file);
    let env = Env::new(&Repo::new().with(package)).await;
    ship_repository_hooks(&env);
    // SmechOS keeps ldconfig in /usr/bin (Debian's is static: it runs chrooted as it is).
    std::fs::create_dir_all(env.path("usr/bin")).unwrap();
    std::fs::copy("/sbin/ldconfig", env.path("usr/bin/ldconfig")).unwrap();
    std::fs::create_dir_all(env.path("etc")).unwrap();
    std::fs::write(env.path("etc/ld.so.conf"), "/usr/lib\n").unwrap();

    let run = env.spkctl(&["install", "zlib"]).await;

    run.assert_success();
    assert!(
        run.stdout
            .contains("running hook: Updating the shared library cache..."),
        "{run}"
    );
    let cache = std::fs::read(env.path("etc/ld.so.cache")).expect("ldconfig wrote ld.so.cache");
    let text = String::from_utf8_lossy(&cache);
    assert!(text.contains("libz.so.1"), "the cache names the library");
    assert!(text.contains("/usr/lib/libz.so.1"), "{}", text.len());
}

#[tokio::test]
async fn the_shipped_depmod_hook_runs_depmod_for_each_changed_kernel_only() {
    let modules = |version: &str| {
        Package::new("kernel-modules", version).system().file(
            &format!("usr/lib/modules/6.18.{version}/kernel/drivers/x.ko"),
            format!("module {version}\n"),
            0o644,
        )
    };
    let env = Env::new(&Repo::new().with(modules("1"))).await;
    give_shell(&env);
    ship_repository_hooks(&env);
    // A stand-in depmod (the real one needs kmod's libraries in the root) records its calls.
    script(
        &env,
        "usr/bin/depmod",
        "echo \"depmod $*\" >> /var/log/hooks\n",
    );
    std::fs::create_dir_all(env.path("usr/lib/modules/6.17.9/kernel")).unwrap();

    let run = env.spkctl(&["install", "kernel-modules"]).await;

    run.assert_success();
    assert!(
        run.stdout
            .contains("running hook: Updating module dependencies..."),
        "{run}"
    );
    assert_eq!(record(&env), "depmod 6.18.1\n", "{run}");
    env.publish(&Repo::new().with(modules("2")));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_eq!(
        record(&env),
        "depmod 6.18.1\ndepmod 6.18.2\n",
        "6.18.1's tree changed (its module went), so did 6.18.2's; 6.17.9 was not touched"
    );
}

#[tokio::test]
async fn hooks_run_chrooted_into_a_root_given_with_dash_dash_root() {
    let server = spk_tests::HttpServer::start();
    Repo::new().with(libs("1")).publish(&server);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("target");
    std::fs::create_dir_all(root.join("etc/spk")).unwrap();
    std::fs::write(
        root.join("etc/spk/spk.toml"),
        spk_tests::fixture::index_config(&server),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join(format!("bin/{applet}"))).unwrap();
    }
    std::fs::create_dir_all(root.join("etc/spk/hooks.d")).unwrap();
    // The hook sees the target as its `/`: it lists `/` into a file of the target.
    std::fs::write(
        root.join("etc/spk/hooks.d/where.hook"),
        "[Trigger]\nType = Package\nOperation = Install\nTarget = foo\n\n[Action]\n\
         When = PostTransaction\nExec = /bin/sh -c 'ls / > /where'\n",
    )
    .unwrap();

    let out = std::process::Command::new(spk_tests::daemon::binary("spkctl"))
        .arg("--root")
        .arg(&root)
        .args(["--no-progress", "--yes", "install", "foo"])
        .env_remove("SPK_BUS_ADDRESS")
        .output()
        .unwrap();

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = std::fs::read_to_string(root.join("where")).expect("the hook ran in the root");
    let names: Vec<&str> = listing.lines().collect();
    assert!(
        names.contains(&"etc") && names.contains(&"usr") && names.contains(&"bin"),
        "{names:?}"
    );
    assert!(
        !Path::new("/where").exists(),
        "the hook must not run on the host"
    );
}
