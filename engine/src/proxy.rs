//! Which HTTP proxy each repository's requests go through: `proxy` of its `[[repo]]` table,
//! else the global `proxy` of `spk.toml`, else the usual environment variables of spkd
//! (`http_proxy`, `https_proxy`, `all_proxy`, upper case first, as curl reads them).
//! `no_proxy` (or `NO_PROXY`) from the environment is honoured in every case: a host it names
//! is reached directly, whichever proxy was set. `proxy = "none"` connects directly and ignores
//! the environment.
//!
//! One HTTP client is built per distinct setting, so repositories that share a proxy share its
//! connection pool.

use std::collections::HashMap;

use crate::config::{Config, RepoConfig};
use crate::error::{Error, Result};

/// The word that turns proxies off for a repository (or all of them).
pub const DIRECT: &str = "none";

/// Where one repository's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProxySetting {
    /// As spkd's environment says (no proxy when it says nothing).
    Environment,
    /// `proxy = "none"`: always directly.
    Direct,
    /// `proxy = "URL"` of spk.toml (checked by [`check`]).
    Url(String),
}

impl ProxySetting {
    /// The setting for `repo`: its own `proxy`, else the global one, else the environment.
    pub fn of(config: &Config, repo: &RepoConfig) -> ProxySetting {
        ProxySetting::from_value(repo.proxy.as_deref().or(config.proxy.as_deref()))
    }

    /// What a `proxy` value of spk.toml (or its absence) means.
    fn from_value(value: Option<&str>) -> ProxySetting {
        match value {
            None => ProxySetting::Environment,
            Some(DIRECT) => ProxySetting::Direct,
            Some(url) => ProxySetting::Url(url.to_owned()),
        }
    }

    /// What a request to `target` goes through, for people: the proxy URL with its password
    /// hidden and where the setting comes from, or `none`.
    pub fn describe(&self, target: &str) -> String {
        let Ok(target_uri) = target.parse::<http::Uri>() else {
            return "none".to_owned();
        };
        let no_proxy = env_first(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        match self {
            ProxySetting::Direct => "none (proxy = \"none\" in spk.toml)".to_owned(),
            ProxySetting::Url(url) => {
                let matcher = hyper_util::client::proxy::matcher::Matcher::builder()
                    .all(url.clone())
                    .no(no_proxy)
                    .build();
                match matcher.intercept(&target_uri) {
                    Some(_) => format!("{} (spk.toml)", redact(url)),
                    None => "none (no_proxy)".to_owned(),
                }
            }
            ProxySetting::Environment => {
                let https = target_uri.scheme_str() == Some("https");
                let (var, value) = if https {
                    env_named(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
                } else {
                    env_named(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
                }
                .unwrap_or_default();
                if value.is_empty() {
                    return "none".to_owned();
                }
                let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
                match matcher.intercept(&target_uri) {
                    Some(_) => format!("{} (environment: {var})", redact(&value)),
                    None => "none (no_proxy)".to_owned(),
                }
            }
        }
    }
}

fn env_named(names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| ((*n).to_owned(), v))
    })
}

fn env_first(names: &[&str]) -> Option<String> {
    env_named(names).map(|(_, v)| v)
}

/// Check a `proxy` value of spk.toml: `none`, or an http(s) URL with a host.
pub fn check(value: &str) -> std::result::Result<(), String> {
    if value == DIRECT {
        return Ok(());
    }
    let url = reqwest::Url::parse(value).map_err(|e| {
        format!(
            "proxy '{}' is not a URL ({e}); write http://HOST:PORT or \"none\"",
            redact(value)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "proxy '{}' must be an http:// or https:// URL with a host, or \"none\"",
            redact(value)
        ));
    }
    Ok(())
}

/// `http://user:secret@host:3128` → `http://user:***@host:3128`: a proxy's password is never
/// shown or logged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_authority(url);
    };
    format!("{scheme}://{}", redact_authority(rest))
}

fn redact_authority(rest: &str) -> String {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{hidden}@{host}{path}")
        }
        None => rest.to_owned(),
    }
}

/// The HTTP clients of an engine: one per distinct proxy setting among the repositories.
pub struct Clients {
    /// For what belongs to no configured repository (the global setting).
    default: reqwest::Client,
    by_repo: HashMap<String, reqwest::Client>,
}

impl Clients {
    pub fn new(config: &Config) -> Result<Clients> {
        let (connect, stall) = (config.connect_timeout(), config.stall_timeout());
        let global = ProxySetting::from_value(config.proxy.as_deref());
        let mut built: HashMap<ProxySetting, reqwest::Client> = HashMap::new();
        let default = crate::fetch::client(connect, stall, &global)?;
        built.insert(global, default.clone());
        let mut by_repo = HashMap::new();
        for repo in &config.repos {
            let setting = ProxySetting::of(config, repo);
            let client = match built.get(&setting) {
                Some(c) => c.clone(),
                None => {
                    let c = crate::fetch::client(connect, stall, &setting)?;
                    built.insert(setting, c.clone());
                    c
                }
            };
            by_repo.insert(repo.name.clone(), client);
        }
        Ok(Clients { default, by_repo })
    }

    /// The client for repository `name`'s requests.
    pub fn for_repo(&self, name: &str) -> &reqwest::Client {
        self.by_repo.get(name).unwrap_or(&self.default)
    }
}

/// Apply `setting` to a client being built.
pub(crate) fn configure(
    builder: reqwest::ClientBuilder,
    setting: &ProxySetting,
) -> Result<reqwest::ClientBuilder> {
    Ok(match setting {
        // reqwest reads the environment itself (the same variables, the same rules).
        ProxySetting::Environment => builder,
        ProxySetting::Direct => builder.no_proxy(),
        ProxySetting::Url(url) => {
            let proxy = reqwest::Proxy::all(url.as_str())
                .map_err(|e| Error::InvalidArgs(format!("proxy {}: {e}", redact(url))))?
                .no_proxy(reqwest::NoProxy::from_env());
            builder.proxy(proxy)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("http://user:pass@squid.lan:3128"),
            "http://user:***@squid.lan:3128"
        );
        assert_eq!(
            redact("http://user:p%40ss@squid.lan:3128/"),
            "http://user:***@squid.lan:3128/"
        );
        assert_eq!(redact("http://user@squid:3128"), "http://user@squid:3128");
        assert_eq!(redact("http://squid:3128"), "http://squid:3128");
        assert_eq!(redact("u:secret@squid:3128"), "u:***@squid:3128");
    }

    #[test]
    fn proxy_values_are_checked() {
        assert!(check("http://squid.lan:3128").is_ok());
        assert!(check("https://squid.lan").is_ok());
        assert!(check("none").is_ok());
        let e = check("socks5://u:secret@h:1080").unwrap_err();
        assert!(e.contains("u:***@h") && !e.contains("secret"), "{e}");
        assert!(check("squid:3128").is_err());
        assert!(check("").is_err());
    }

    #[test]
    fn a_repository_setting_wins_over_the_global_one() {
        let text = "proxy = \"http://global:3128\"\n\
                    [[repo]]\nname = \"a\"\nkind = \"index\"\nurl = \"http://a.example/\"\n\
                    [[repo]]\nname = \"b\"\nkind = \"index\"\nurl = \"http://b.example/\"\n\
                    proxy = \"http://u:pw@own:8080\"\n\
                    [[repo]]\nname = \"c\"\nkind = \"index\"\nurl = \"http://c.example/\"\n\
                    proxy = \"none\"\n";
        let config = Config::parse(text, std::path::Path::new("spk.toml")).unwrap();
        let setting = |i: usize| ProxySetting::of(&config, &config.repos[i]);
        assert_eq!(setting(0), ProxySetting::Url("http://global:3128".into()));
        assert_eq!(setting(1), ProxySetting::Url("http://u:pw@own:8080".into()));
        assert_eq!(setting(2), ProxySetting::Direct);
        assert_eq!(
            setting(1).describe("http://b.example/index.json"),
            "http://u:***@own:8080 (spk.toml)"
        );
        assert!(Clients::new(&config).is_ok());
        let bad = Config::parse(
            "[[repo]]\nname = \"a\"\nkind = \"index\"\nurl = \"http://a/\"\nproxy = \"ftp://x\"\n",
            std::path::Path::new("spk.toml"),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("repo 'a': proxy"), "{bad}");
    }
}
