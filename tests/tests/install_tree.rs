//! `make install DESTDIR=… PREFIX=…` lays out spk as a SmechOS package ships it: binaries,
//! OpenRC scripts and settings, D-Bus policy, activation file and interface, polkit actions,
//! the applet's autostart entry, a default spk.toml that spkd accepts, man pages that render
//! without warnings and shell completions (bash's completing package names from a running
//! spkd); a second install keeps changed configuration; every path follows PREFIX.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spk_tests::bus::Bus;
use spk_tests::daemon::{BUS_NAME, binary, workspace_root};
use spk_tests::make_install::InstalledTree;
use spk_tests::system_bus::name_owner_pid;
use spk_tests::{Env, Package, Repo};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("spk-install-")
        .tempdir()
        .expect("temporary directory")
}

/// The value of `KEY=` in a shell script or desktop/service file (quotes removed).
fn assignment(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim_matches('"').to_string())
}

#[track_caller]
fn assert_parses_as_xml(tree: &InstalledTree, abs: &str) -> String {
    let text = tree.read(abs);
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    if let Err(e) = roxmltree::Document::parse_with_options(&text, options) {
        panic!("{abs} is not well-formed XML: {e}");
    }
    text
}

#[test]
fn make_install_places_every_file_with_its_mode() {
    let dir = tempdir();
    let tree = InstalledTree::make_install(&dir.path().join("dest"), "/usr", &[]);

    for (path, mode) in [
        ("/usr/bin/spkctl", 0o755),
        ("/usr/sbin/spkd", 0o755),
        ("/etc/init.d/spkd", 0o755),
        ("/etc/init.d/spk-boot-check", 0o755),
        ("/etc/init.d/spk-offline-update", 0o755),
        ("/etc/conf.d/spkd", 0o644),
        ("/etc/conf.d/spk-boot-check", 0o644),
        ("/etc/conf.d/spk-offline-update", 0o644),
        ("/etc/spk/spk.toml", 0o644),
        ("/usr/share/dbus-1/system.d/xyz.smech.Spk1.conf", 0o644),
        (
            "/usr/share/dbus-1/system-services/xyz.smech.Spk1.service",
            0o644,
        ),
        ("/usr/share/dbus-1/interfaces/xyz.smech.Spk1.xml", 0o644),
        ("/usr/share/polkit-1/actions/xyz.smech.spk.policy", 0o644),
        ("/usr/share/man/man8/spkd.8", 0o644),
        ("/usr/share/man/man1/spkctl.1", 0o644),
        ("/usr/share/man/man1/spk-notifier.1", 0o644),
        ("/usr/share/man/man1/spk-publish.1", 0o644),
        ("/usr/share/man/man5/spk.toml.5", 0o644),
        ("/usr/share/bash-completion/completions/spkctl", 0o644),
        ("/usr/share/zsh/site-functions/_spkctl", 0o644),
        ("/usr/share/fish/vendor_completions.d/spkctl.fish", 0o644),
        ("/usr/share/man/man5/spk-hooks.5", 0o644),
        ("/usr/share/spk/hooks/ldconfig.hook", 0o644),
        ("/usr/share/spk/hooks/depmod.hook", 0o644),
        ("/usr/share/spk/hooks/depmod-changed", 0o755),
        ("/usr/share/spk/hooks/grub-reminder", 0o755),
    ] {
        tree.assert_file(path, mode);
    }
    // Every hook of the repository is installed; the helper scripts are valid sh.
    for entry in std::fs::read_dir(workspace_root().join("hooks")).expect("hooks/") {
        let name = entry.expect("hooks/ entry").file_name();
        let installed = format!("/usr/share/spk/hooks/{}", name.to_string_lossy());
        let is_hook = name.to_string_lossy().ends_with(".hook");
        tree.assert_file(&installed, if is_hook { 0o644 } else { 0o755 });
        if !is_hook {
            let syntax = Command::new("sh")
                .arg("-n")
                .arg(tree.path(&installed))
                .output()
                .expect("run sh -n");
            assert!(syntax.status.success(), "{installed} is not valid sh");
        }
    }
    tree.assert_dir("/etc/spk/keys", 0o755);
    assert_eq!(
        std::fs::read_dir(tree.path("/etc/spk/keys"))
            .expect("keys")
            .count(),
        0,
        "/etc/spk/keys is not empty"
    );

    // The applet: its binary when the workspace built it, its autostart entry from applet/.
    let notifier = binary("spkd").with_file_name("spk-notifier");
    if notifier.is_file() {
        tree.assert_file("/usr/bin/spk-notifier", 0o755);
    }
    // The publisher, beside them (its manual is spk-publish(1)).
    if binary("spkd").with_file_name("spk-publish").is_file() {
        tree.assert_file("/usr/bin/spk-publish", 0o755);
    }
    if workspace_root()
        .join("applet/spk-notifier.desktop")
        .is_file()
    {
        tree.assert_file("/etc/xdg/autostart/spk-notifier.desktop", 0o644);
        let desktop = tree.read("/etc/xdg/autostart/spk-notifier.desktop");
        assert!(desktop.starts_with("[Desktop Entry]"), "{desktop}");
        let exec = assignment(&desktop, "Exec").expect("Exec= in the desktop file");
        assert!(exec.contains("spk-notifier"), "Exec={exec}");
    }

    // The OpenRC scripts run the installed binaries and are valid sh.
    for script in [
        "/etc/init.d/spkd",
        "/etc/init.d/spk-boot-check",
        "/etc/init.d/spk-offline-update",
    ] {
        let text = tree.read(script);
        assert!(text.starts_with("#!/sbin/openrc-run\n"), "{script}: {text}");
        let syntax = Command::new("sh")
            .arg("-n")
            .arg(tree.path(script))
            .output()
            .expect("run sh -n");
        assert!(
            syntax.status.success(),
            "{script} is not valid sh: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
    }
    let initd = tree.read("/etc/init.d/spkd");
    assert_eq!(
        assignment(&initd, "command").as_deref(),
        Some("/usr/sbin/spkd")
    );
    assert_eq!(
        assignment(&initd, "supervisor").as_deref(),
        Some("supervise-daemon")
    );
    assert!(initd.contains("need dbus") && initd.contains("use net"));
    assert!(
        tree.read("/etc/init.d/spk-boot-check")
            .contains("/usr/bin/spkctl ")
    );

    // D-Bus activation starts the spkd the Makefile installed.
    let service = tree.read("/usr/share/dbus-1/system-services/xyz.smech.Spk1.service");
    assert_eq!(assignment(&service, "Name").as_deref(), Some(BUS_NAME));
    assert_eq!(assignment(&service, "User").as_deref(), Some("root"));
    assert_eq!(
        assignment(&service, "Exec").as_deref(),
        Some("/usr/sbin/spkd --system")
    );

    // The XML files are well-formed; the interface is the repository's contract.
    assert_parses_as_xml(&tree, "/usr/share/dbus-1/system.d/xyz.smech.Spk1.conf");
    let interface = assert_parses_as_xml(&tree, "/usr/share/dbus-1/interfaces/xyz.smech.Spk1.xml");
    assert_eq!(
        interface,
        std::fs::read_to_string(workspace_root().join("dbus/xyz.smech.Spk1.xml")).unwrap()
    );
    let policy = assert_parses_as_xml(&tree, "/usr/share/polkit-1/actions/xyz.smech.spk.policy");
    for action in ["refresh", "install", "upgrade", "remove", "clean", "force"] {
        assert!(policy.contains(&format!("id=\"xyz.smech.spk.{action}\"")));
    }

    // Every page of man/ is installed in its section and renders without warnings;
    // completions are for spkctl and bash can read them.
    for entry in std::fs::read_dir(workspace_root().join("man")).expect("man/") {
        let name = entry.expect("man/ entry").file_name();
        let name = name.to_string_lossy();
        let section = name.rsplit('.').next().expect("NAME.SECTION");
        let page = format!("/usr/share/man/man{section}/{name}");
        tree.assert_file(&page, 0o644);
        assert_renders_without_warnings(&tree.path(&page));
    }
    let bash = Command::new("bash")
        .arg("-n")
        .arg(tree.path("/usr/share/bash-completion/completions/spkctl"))
        .output()
        .expect("run bash -n");
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    assert!(
        tree.read("/usr/share/zsh/site-functions/_spkctl")
            .starts_with("#compdef spkctl")
    );
    assert!(
        tree.read("/usr/share/fish/vendor_completions.d/spkctl.fish")
            .contains("spkctl")
    );

    // The default spk.toml points at SmechDeploy, and the installed spkd accepts it.
    let toml = tree.read("/etc/spk/spk.toml");
    for line in [
        "kind = \"github\"",
        "owner = \"Smech-Labs\"",
        "repo = \"SmechDeploy\"",
    ] {
        assert!(toml.contains(line), "spk.toml lacks {line}:\n{toml}");
    }
    assert_installed_spkd_accepts_the_default_config(&tree, dir.path());
}

/// Panic unless groff (and man-db's `man`, when installed) formats `page` without a warning.
#[track_caller]
fn assert_renders_without_warnings(page: &Path) {
    let groff = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("run groff (groff-base)");
    assert!(
        groff.status.success() && groff.stderr.is_empty(),
        "{}: {}",
        page.display(),
        String::from_utf8_lossy(&groff.stderr)
    );
    let Ok(man) = Command::new("man")
        .args(["--warnings", "-l", "-Tutf8"])
        .arg(page)
        .stdout(Stdio::null())
        .output()
    else {
        return;
    };
    assert!(
        man.status.success() && man.stderr.is_empty(),
        "man --warnings {}: {}",
        page.display(),
        String::from_utf8_lossy(&man.stderr)
    );
}

/// The installed spkd accepts the default spk.toml, and the same file with every commented
/// example (`# key = value`, `# [[repo]]`) switched on: the examples are real keys.
fn assert_installed_spkd_accepts_the_default_config(tree: &InstalledTree, dir: &Path) {
    let default = tree.path("/etc/spk/spk.toml");
    assert_spkd_starts_with(tree, &default, &dir.join("default"));
    let all = dir.join("spk-all-examples.toml");
    let uncommented: String = tree
        .read("/etc/spk/spk.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest == "[[repo]]"
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    for key in [
        "parallel_downloads",
        "allow_unverified",
        "refresh_timeout",
        "max_index_age",
        "allow_insecure",
        "tag",
        "api",
        "mirrors",
    ] {
        assert!(
            uncommented
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))),
            "spk.toml has no commented example of {key}:\n{uncommented}"
        );
    }
    std::fs::write(&all, uncommented).expect("write spk.toml with every example");
    assert_spkd_starts_with(tree, &all, &dir.join("all-examples"));
}

/// Start the installed spkd with `config` on a private bus, in a network namespace of its own
/// (the config names GitHub; nothing may leave this machine), wait until it serves its name,
/// then stop it.
fn assert_spkd_starts_with(tree: &InstalledTree, config: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bus = Bus::start(dir);
        let log = dir.join("spkd.log");
        let mut spkd = Command::new("unshare")
            .arg("--net")
            .arg(tree.path("/usr/sbin/spkd"))
            .arg("--root")
            .arg(dir.join("target"))
            .arg("--config")
            .arg(config)
            .arg("--bus")
            .arg(bus.address())
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("spkd log"))
            .spawn()
            .expect("run unshare --net spkd");
        let conn = bus.connect().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while name_owner_pid(&conn, BUS_NAME).await.is_none() {
            if let Ok(Some(status)) = spkd.try_wait() {
                panic!(
                    "the installed spkd refused {} ({status}):\n{}\n--- config ---\n{}",
                    config.display(),
                    std::fs::read_to_string(&log).unwrap_or_default(),
                    std::fs::read_to_string(config).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "spkd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = rustix::process::Pid::from_raw(spkd.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let status = spkd.wait().expect("wait for spkd");
        assert!(status.success(), "spkd exited with {status}");
    });
}

#[test]
fn a_second_install_keeps_changed_configuration_and_puts_the_new_default_beside_it() {
    let dir = tempdir();
    let dest = dir.path().join("dest");
    let first = InstalledTree::make_install(&dest, "/usr", &[]);
    assert!(!kept_lines(&first.output), "{}", first.output);
    let mine = "[[repo]]\nname = \"mine\"\nkind = \"index\"\nurl = \"https://mirror.example/\"\n";
    std::fs::write(first.path("/etc/spk/spk.toml"), mine).expect("edit spk.toml");
    std::fs::write(first.path("/etc/conf.d/spkd"), "SPKD_LOGLEVEL=debug\n").expect("edit conf.d");

    let second = InstalledTree::make_install(&dest, "/usr", &[]);

    assert_eq!(second.read("/etc/spk/spk.toml"), mine);
    assert_eq!(second.read("/etc/conf.d/spkd"), "SPKD_LOGLEVEL=debug\n");
    let repo = workspace_root();
    assert_eq!(
        second.read("/etc/spk/spk.toml.new"),
        std::fs::read_to_string(repo.join("etc/spk.toml")).unwrap()
    );
    assert_eq!(
        second.read("/etc/conf.d/spkd.new"),
        std::fs::read_to_string(repo.join("openrc/spkd.confd")).unwrap()
    );
    assert!(
        kept_lines(&second.output) && second.output.contains("spk.toml.new"),
        "make install did not say it kept the configuration:\n{}",
        second.output
    );
    // An unchanged configuration file is simply replaced.
    assert!(!second.path("/etc/conf.d/spk-boot-check.new").exists());
    // Programs and scripts are replaced.
    second.assert_file("/usr/sbin/spkd", 0o755);
    second.assert_file("/etc/init.d/spkd", 0o755);
}

/// Whether make said it kept a configuration file.
fn kept_lines(make_output: &str) -> bool {
    make_output.lines().any(|l| l.starts_with("kept "))
}

#[test]
fn every_installed_path_follows_prefix() {
    let dir = tempdir();
    let tree = InstalledTree::make_install(&dir.path().join("dest"), "/usr/local", &[]);

    tree.assert_file("/usr/local/sbin/spkd", 0o755);
    tree.assert_file("/usr/local/bin/spkctl", 0o755);
    tree.assert_file(
        "/usr/local/share/dbus-1/system.d/xyz.smech.Spk1.conf",
        0o644,
    );
    tree.assert_file("/usr/local/share/man/man8/spkd.8", 0o644);
    // Hooks that run a helper script name it where it was installed.
    let grub = tree.read("/usr/local/share/spk/hooks/grub-mkconfig.hook");
    assert!(
        grub.contains("Exec = /usr/local/share/spk/hooks/grub-reminder"),
        "{grub}"
    );
    // Init scripts stay in /etc and run the binaries where they are.
    let initd = tree.read("/etc/init.d/spkd");
    assert_eq!(
        assignment(&initd, "command").as_deref(),
        Some("/usr/local/sbin/spkd")
    );
    let boot_check = tree.read("/etc/init.d/spk-boot-check");
    assert!(
        boot_check.contains("/usr/local/bin/spkctl "),
        "{boot_check}"
    );
    assert!(!boot_check.contains("/usr/bin/spkctl"), "{boot_check}");
    let service = tree.read("/usr/local/share/dbus-1/system-services/xyz.smech.Spk1.service");
    assert_eq!(
        assignment(&service, "Exec").as_deref(),
        Some("/usr/local/sbin/spkd --system")
    );
    assert!(!tree.path("/usr/sbin/spkd").exists());
}

/// What the installed bash completion offers for `spkctl WORDS…` (the last word is the one
/// being completed), run by `bash -c` as bash's programmable completion would, with the spkd
/// on `bus`.
fn bash_completion(tree: &InstalledTree, bus: &str, words: &[&str]) -> Vec<String> {
    let script = r#"
source "$1"
shift
spec=$(complete -p spkctl) || exit 1
function=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$function" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(tree.path("/usr/share/bash-completion/completions/spkctl"))
        .arg(tree.path("/usr/bin/spkctl"))
        .args(words)
        .env("SPK_BUS_ADDRESS", bus)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn bash_completes_package_names_from_spkd() {
    let repo = Repo::new()
        .with(Package::new("plasma", "6.6.5-1").file("usr/share/plasma/version", "6.6.5\n", 0o644))
        .with(Package::new("plymouth", "24.004-1").file("usr/bin/plymouth", "p\n", 0o755))
        .with(Package::new("qt6", "6.10.1-1").file("usr/lib/libQt6Core.so.6", "qt\n", 0o755));
    let env = Env::new(&repo).await;
    env.spkctl(&["check"]).await.assert_success();
    env.spkctl(&["install", "qt6"]).await.assert_success();
    let dir = tempdir();
    let tree = tokio::task::spawn_blocking({
        let dest = dir.path().join("dest");
        move || InstalledTree::make_install(&dest, "/usr", &[])
    })
    .await
    .expect("make install");
    let bus = env.bus.address();

    assert_eq!(
        bash_completion(&tree, bus, &["install", "pl"]),
        ["plasma", "plymouth"]
    );
    assert_eq!(
        bash_completion(&tree, bus, &["--yes", "install", "plas"]),
        ["plasma"]
    );
    // remove, upgrade, hold…: installed packages only.
    assert_eq!(bash_completion(&tree, bus, &["remove", ""]), ["qt6"]);
    assert_eq!(bash_completion(&tree, bus, &["hold", "q"]), ["qt6"]);
    assert_eq!(bash_completion(&tree, bus, &["info", "q"]), ["qt6"]);
    // Options and commands are clap's completion, as before.
    assert!(bash_completion(&tree, bus, &["install", "--dry"]).contains(&"--dry-run".to_string()));
    assert!(bash_completion(&tree, bus, &["ins"]).contains(&"install".to_string()));
}
