//! `make install` of this repository into a temporary `DESTDIR`, as a distribution package
//! build does it, using the binaries of the profile the tests run with (`PROFILE=debug` for
//! `cargo test`), so no release build is needed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::daemon::{binary, workspace_root};

/// A tree `make install` wrote.
pub struct InstalledTree {
    /// The `DESTDIR`.
    pub dest: PathBuf,
    /// What `make install` printed (stdout and stderr).
    pub output: String,
}

impl InstalledTree {
    /// `make install DESTDIR=dest PREFIX=prefix` (plus `extra` variables); panics with make's
    /// output when it fails.
    pub fn make_install(dest: &Path, prefix: &str, extra: &[&str]) -> InstalledTree {
        // Build (or find) the binaries of this test's profile first: `make install` installs
        // what is built and only builds what is missing.
        let spkd = binary("spkd");
        binary("spkctl");
        let profile_dir = spkd.parent().expect("target/<profile>");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile directory name");
        let target_dir = profile_dir.parent().expect("target directory");
        // make writes the man pages and completions under target/<profile>/ before installing
        // them: one make at a time, across test threads and processes.
        let lock = std::fs::File::create(profile_dir.join(".make-install.lock"))
            .expect("create make install lock");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .expect("lock make install");
        let output = Command::new("make")
            .arg("--no-print-directory")
            .arg("-C")
            .arg(workspace_root())
            .arg("install")
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!("PREFIX={prefix}"))
            .arg(format!("PROFILE={profile}"))
            .arg(format!("TARGET_DIR={}", target_dir.display()))
            .args(extra)
            // Make's own variables come from the command line, not from the test's environment.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .stdin(Stdio::null())
            .output()
            .expect("run make (is the make package installed?)");
        drop(lock);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "make install failed ({}):\n{text}",
            output.status
        );
        InstalledTree {
            dest: dest.to_path_buf(),
            output: text,
        }
    }

    /// `DESTDIR/abs` for an absolute installed path such as `/usr/sbin/spkd`.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dest.join(abs.trim_start_matches('/'))
    }

    /// The installed file's text, or a panic naming it.
    #[track_caller]
    pub fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs))
            .unwrap_or_else(|e| panic!("{abs} is not installed ({e}):\n{}", self.listing()))
    }

    /// Panic unless `abs` is a regular file with permission bits `mode`.
    #[track_caller]
    pub fn assert_file(&self, abs: &str, mode: u32) {
        let meta = std::fs::symlink_metadata(self.path(abs))
            .unwrap_or_else(|e| panic!("{abs} is not installed ({e}):\n{}", self.listing()));
        assert!(meta.is_file(), "{abs} is not a regular file: {meta:?}");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            mode,
            "{abs} has mode {:o}, expected {mode:o}",
            meta.permissions().mode() & 0o7777
        );
    }

    /// Panic unless `abs` is a directory with permission bits `mode`.
    #[track_caller]
    pub fn assert_dir(&self, abs: &str, mode: u32) {
        let meta = std::fs::symlink_metadata(self.path(abs))
            .unwrap_or_else(|e| panic!("{abs} is not installed ({e}):\n{}", self.listing()));
        assert!(meta.is_dir(), "{abs} is not a directory");
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            mode,
            "{abs} has mode {:o}, expected {mode:o}",
            meta.permissions().mode() & 0o7777
        );
    }

    /// Every installed path with its mode, one a line (for failure messages).
    pub fn listing(&self) -> String {
        let mut lines = Vec::new();
        let mut stack = vec![self.dest.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let rel = path.strip_prefix(&self.dest).unwrap_or(&path);
                lines.push(format!(
                    "{:o} /{}",
                    meta.permissions().mode() & 0o7777,
                    rel.display()
                ));
                if meta.is_dir() {
                    stack.push(path);
                }
            }
        }
        lines.sort_by(|a, b| {
            a.split_once(' ')
                .map(|x| x.1)
                .cmp(&b.split_once(' ').map(|x| x.1))
        });
        lines.join("\n")
    }
}
