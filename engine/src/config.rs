//! `spk.toml`: the package sources and the daemon's tunables. Unknown keys are refused so a typo
//! is a clear start-up error naming the key instead of a silently ignored setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Package sources, in priority order: the first one offering a name wins.
    #[serde(default, rename = "repo")]
    pub repos: Vec<RepoConfig>,
    /// How many packages are downloaded and unpacked at once (default: number of CPUs, ≥ 2).
    #[serde(default)]
    pub parallel_downloads: Option<usize>,
    /// Seconds without any received byte before a download is abandoned (default 30).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: u64,
    /// Further attempts of a failed download per mirror, resuming where it stopped (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds to establish a connection (default 15).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
    /// Accept GitHub release assets that have neither a sha256 digest nor a signed index
    /// entry (only their size is checked; `spkctl info` says "unverified"). Default false.
    #[serde(default)]
    pub allow_unverified: bool,
    /// Seconds between spkd's own update checks, counted from the last refresh (which
    /// survives restarts); 0 turns them off. Default 21600 (6 h).
    #[serde(default = "default_check_interval")]
    pub check_interval: u64,
    /// spkd's own checks never run closer together than this many seconds, whatever
    /// `check_interval` says (default 3600), so a fleet stays cheap for the mirror.
    #[serde(default = "default_min_check_interval")]
    pub min_check_interval: u64,
    /// Tarballs kept in `var/cache/spk` per package: the installed version's and the ones
    /// before it, up to this many (default 2; 0 keeps none).
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
    /// Seconds a transaction hook may run before it is killed (default 300).
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: u64,
    /// Seconds one repository's refresh may take in all (index, signature, mirrors), however
    /// slowly the server trickles bytes; then it fails naming the repository and URL
    /// (default 120).
    #[serde(default = "default_refresh_timeout")]
    pub refresh_timeout: u64,
    /// Refuse an index dated more than this many days ago (a mirror could otherwise hold a
    /// machine on an old release for ever, replaying a validly signed index). Default: none.
    #[serde(default)]
    pub max_index_age: Option<u64>,
    /// When a refresh (spkd's own check, the boot check, any `check`) finds updates, prepare
    /// them for the next restart at once, as `spkctl upgrade --offline` would. Default false.
    #[serde(default)]
    pub auto_prepare: bool,
    /// After the boot installed a prepared update that changed `kernel-modules` or
    /// `bootloader-grub`, restart once more so the new kernel or boot loader runs.
    /// Default false.
    #[serde(default)]
    pub offline_reboot: bool,
    /// The HTTP proxy of every repository (`http://HOST:PORT`, credentials allowed), or
    /// `"none"`; a repository's own `proxy` wins. Default: spkd's environment (`http_proxy`,
    /// `https_proxy`, `no_proxy`…). See [`crate::proxy`].
    #[serde(default)]
    pub proxy: Option<String>,
}

/// One `[[repo]]` table as written; [`RepoConfig::source`] gives its checked, typed form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub name: String,
    pub kind: RepoKind,
    /// `index`: base URL holding `index.json` and the tarballs.
    #[serde(default)]
    pub url: Option<String>,
    /// `index`: further base URLs with the same files, tried in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// `github`: repository owner and name.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    /// `github`: a release tag; default the latest release.
    #[serde(default)]
    pub tag: Option<String>,
    /// `github`: API base URL; default `https://api.github.com`.
    #[serde(default)]
    pub api: Option<String>,
    /// Trust what this repository serves over plain `http` from another machine: an
    /// unsigned index, or GitHub asset digests. Default false: anyone on the path could
    /// change them (loopback addresses are exempt; nothing crosses a network there).
    #[serde(default)]
    pub allow_insecure: bool,
    /// This repository's HTTP proxy, or `"none"`; wins over the global `proxy`.
    #[serde(default)]
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Index,
    Github,
}

/// Where a repository's packages come from, after the config was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// Base URLs (first the primary, then mirrors), each holding `index.json` and the tarballs.
    Index { urls: Vec<String> },
    /// A GitHub release (`releases/latest` or a pinned tag).
    Github {
        api: String,
        owner: String,
        repo: String,
        tag: Option<String>,
    },
}

impl RepoConfig {
    pub fn source(&self) -> std::result::Result<SourceConfig, String> {
        let need = |v: &Option<String>, key: &str| {
            v.clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("repo '{}': key '{key}' is required", self.name))
        };
        match self.kind {
            RepoKind::Index => {
                let mut urls = vec![need(&self.url, "url")?];
                urls.extend(self.mirrors.iter().cloned());
                for u in &urls {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(format!(
                            "repo '{}': url '{u}' must start with http:// or https://",
                            self.name
                        ));
                    }
                }
                Ok(SourceConfig::Index { urls })
            }
            RepoKind::Github => Ok(SourceConfig::Github {
                api: self
                    .api
                    .clone()
                    .unwrap_or_else(|| "https://api.github.com".to_owned()),
                owner: need(&self.owner, "owner")?,
                repo: need(&self.repo, "repo")?,
                tag: self.tag.clone(),
            }),
        }
    }
}

fn default_stall_timeout() -> u64 {
    30
}
fn default_check_interval() -> u64 {
    6 * 3600
}
fn default_min_check_interval() -> u64 {
    3600
}
fn default_hook_timeout() -> u64 {
    300
}
fn default_keep_versions() -> usize {
    2
}
fn default_retries() -> u32 {
    3
}
fn default_connect_timeout() -> u64 {
    15
}
fn default_refresh_timeout() -> u64 {
    120
}

impl Default for Config {
    fn default() -> Self {
        Config {
            repos: Vec::new(),
            parallel_downloads: None,
            stall_timeout: default_stall_timeout(),
            connect_timeout: default_connect_timeout(),
            retries: default_retries(),
            allow_unverified: false,
            check_interval: default_check_interval(),
            min_check_interval: default_min_check_interval(),
            keep_versions: default_keep_versions(),
            hook_timeout: default_hook_timeout(),
            refresh_timeout: default_refresh_timeout(),
            max_index_age: None,
            auto_prepare: false,
            offline_reboot: false,
            proxy: None,
        }
    }
}

impl Config {
    /// Read and check a config file; a missing file is an error (spkd without sources is useless).
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for repo in &self.repos {
            if repo.name.is_empty() || !seen.insert(repo.name.as_str()) {
                return Err(bad(format!(
                    "repo.name '{}' is empty or used twice",
                    repo.name
                )));
            }
            repo.source().map_err(bad)?;
            if let Some(proxy) = &repo.proxy {
                crate::proxy::check(proxy)
                    .map_err(|e| bad(format!("repo '{}': {e}", repo.name)))?;
            }
        }
        if let Some(proxy) = &self.proxy {
            crate::proxy::check(proxy).map_err(bad)?;
        }
        if self.parallel_downloads == Some(0) {
            return Err(bad("parallel_downloads must be at least 1".into()));
        }
        if self.refresh_timeout == 0 {
            return Err(bad("refresh_timeout must be at least 1 (seconds)".into()));
        }
        if self.max_index_age == Some(0) {
            return Err(bad(
                "max_index_age must be at least 1 (days), or left out for no limit".into(),
            ));
        }
        Ok(())
    }

    pub fn parallelism(&self) -> usize {
        self.parallel_downloads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        })
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout.max(1))
    }

    pub fn retry_policy(&self) -> crate::fetch::RetryPolicy {
        crate::fetch::RetryPolicy {
            retries: self.retries,
            backoff: Duration::from_millis(250),
        }
    }

    /// Period of the daemon's own update checks, if any (never below `min_check_interval`).
    pub fn check_period(&self) -> Option<Duration> {
        (self.check_interval > 0)
            .then(|| Duration::from_secs(self.check_interval.max(self.min_check_interval)))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.max(1))
    }

    /// The overall deadline of one repository's refresh.
    pub fn refresh_timeout(&self) -> Duration {
        Duration::from_secs(self.refresh_timeout.max(1))
    }

    /// `max_index_age` in seconds, if set.
    pub fn max_index_age_secs(&self) -> Option<u64> {
        self.max_index_age.map(|days| days.saturating_mul(86_400))
    }
}

/// Where the config lives for a target root.
pub fn default_path(root: &Path) -> PathBuf {
    root.join("etc/spk/spk.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_source_kinds() {
        let text = r#"
            [[repo]]
            name = "smechdeploy"
            kind = "github"
            owner = "Smech-Labs"
            repo = "SmechDeploy"

            [[repo]]
            name = "local"
            kind = "index"
            url = "https://mirror.example/smechos/"
            mirrors = ["https://mirror2.example/smechos/"]
        "#;
        let c = Config::parse(text, Path::new("spk.toml")).unwrap();
        assert_eq!(c.repos.len(), 2);
        assert!(matches!(c.repos[1].source(), Ok(SourceConfig::Index { urls }) if urls.len() == 2));
    }

    #[test]
    fn allow_unverified_defaults_to_false_and_must_be_a_boolean() {
        let c = Config::parse("", Path::new("spk.toml")).unwrap();
        assert!(!c.allow_unverified);
        let c = Config::parse("allow_unverified = true\n", Path::new("spk.toml")).unwrap();
        assert!(c.allow_unverified);
        let err = Config::parse("allow_unverified = \"yes\"\n", Path::new("spk.toml")).unwrap_err();
        assert!(err.to_string().contains("allow_unverified"), "{err}");
    }

    #[test]
    fn refresh_timeout_max_index_age_and_allow_insecure_have_defaults() {
        let c = Config::parse(
            "[[repo]]\nname = \"m\"\nkind = \"index\"\nurl = \"http://m.example/\"\n",
            Path::new("spk.toml"),
        )
        .unwrap();
        assert_eq!(c.refresh_timeout, 120);
        assert_eq!(c.max_index_age, None);
        assert!(!c.repos[0].allow_insecure);
        let c = Config::parse(
            "refresh_timeout = 5\nmax_index_age = 30\n[[repo]]\nname = \"m\"\nkind = \"index\"\n\
             url = \"http://m.example/\"\nallow_insecure = true\n",
            Path::new("spk.toml"),
        )
        .unwrap();
        assert_eq!(c.refresh_timeout(), Duration::from_secs(5));
        assert_eq!(c.max_index_age_secs(), Some(30 * 86_400));
        assert!(c.repos[0].allow_insecure);
        for bad in ["refresh_timeout = 0\n", "max_index_age = 0\n"] {
            let e = Config::parse(bad, Path::new("spk.toml")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("paralel_downloads = 3\n", Path::new("spk.toml")).unwrap_err();
        assert!(err.to_string().contains("paralel_downloads"), "{err}");
    }
}
