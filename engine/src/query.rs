//! Read-only questions about the root and the repositories: packages (list, info, updates),
//! the history, the configured repositories and their keys, and verification of installed
//! files against their manifests.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use crate::catalog::{Available, Refused};
use crate::db::{HistoryEntry, InstalledPackage, Summary};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::check_package_name;
use crate::request::{PackageInfo, PackageState, RepoInfo};
use crate::signature::{self, Keyring};

impl Engine {
    /// Compare installed files with their manifests (all packages when `names` is empty),
    /// saying as much as `detail` allows.
    pub fn verify(
        &self,
        names: &[String],
        detail: crate::integrity::Detail,
    ) -> Result<Vec<crate::integrity::Problem>> {
        let installed = self.db.installed()?;
        let packages = if names.is_empty() {
            installed.into_values().collect()
        } else {
            let mut out = Vec::new();
            for name in names {
                check_package_name(name).map_err(Error::InvalidArgs)?;
                out.push(
                    installed
                        .get(name)
                        .cloned()
                        .ok_or_else(|| Error::NotInstalled(name.clone()))?,
                );
            }
            out
        };
        Ok(crate::integrity::check(
            &self.layout.root,
            &packages,
            detail,
        ))
    }

    /// The configured repositories in priority order, with the release and date of the index
    /// in use.
    pub fn repositories(&self) -> Vec<RepoInfo> {
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        self.config
            .repos
            .iter()
            .map(|r| {
                // The URL whose proxy is shown: the index's first base, or the GitHub API.
                let mut target = String::new();
                let (kind, location) = match r.source() {
                    Ok(crate::config::SourceConfig::Index { urls }) => {
                        target = urls.first().cloned().unwrap_or_default();
                        ("index", urls.join(" "))
                    }
                    Ok(crate::config::SourceConfig::Github {
                        api,
                        owner,
                        repo,
                        tag,
                    }) => {
                        let location = format!(
                            "{api}/repos/{owner}/{repo} ({})",
                            tag.as_deref().unwrap_or("latest release")
                        );
                        target = api;
                        ("github", location)
                    }
                    Err(e) => ("invalid", e),
                };
                let snapshot = catalog.repos.get(&r.name);
                RepoInfo {
                    name: r.name.clone(),
                    kind: kind.to_owned(),
                    location,
                    release: snapshot.map(|s| s.release.clone()).unwrap_or_default(),
                    published: snapshot.and_then(|s| s.published).unwrap_or(0),
                    signed: snapshot.is_some_and(|s| s.signed),
                    proxy: crate::proxy::ProxySetting::of(&self.config, r).describe(&target),
                }
            })
            .collect()
    }

    /// The trusted keys of `etc/spk/keys/` as they are now (read again at every refresh).
    pub fn trusted_keys(&self) -> Result<Keyring> {
        Keyring::load(&self.keys_dir())
    }

    /// Where the trusted keys live (`ROOT/etc/spk/keys`).
    pub fn keys_dir(&self) -> std::path::PathBuf {
        signature::keys_dir(&self.layout.root)
    }

    /// Past modifying transactions, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        self.db.history(limit)
    }

    /// Installed packages whose repository offers a different build, held ones left out.
    pub fn updates(&self) -> Result<Vec<String>> {
        let installed = self.db.summaries()?;
        let held = self.held()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        Ok(installed
            .values()
            .filter(|p| {
                !held.contains(&p.name)
                    && catalog
                        .get(&p.name)
                        .is_some_and(|a| !a.is_build(&p.sha256, &p.version, p.size))
            })
            .map(|p| p.name.clone())
            .collect())
    }

    pub fn list(&self) -> Result<Vec<PackageInfo>> {
        let installed = self.db.summaries()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.all();
        let mut names: Vec<&str> = offered.keys().copied().collect();
        names.extend(installed.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        let held = self.held()?;
        Ok(names
            .into_iter()
            .map(|name| {
                let mut info = describe(name, installed.get(name), offered.get(name).copied());
                info.held = held.contains(name);
                info
            })
            .collect())
    }

    pub fn info(&self, name: &str) -> Result<PackageInfo> {
        let installed = self.db.summaries()?.get(name).cloned();
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.get(name);
        if installed.is_none() && offered.is_none() {
            return Err(catalog
                .refusal(name)
                .map_or_else(|| unknown(name), Refused::error));
        }
        let mut info = describe(name, installed.as_ref(), offered);
        info.held = self.held()?.contains(name);
        Ok(info)
    }

    /// Installed packages by name (for history, verify, clients).
    pub fn installed(&self) -> Result<BTreeMap<String, InstalledPackage>> {
        self.db.installed()
    }
}

/// The package that upstream ships broken; refused while no release lists it.
const BROKEN_UPSTREAM: &str = "base-system";

pub(crate) fn unknown(name: &str) -> Error {
    if name == BROKEN_UPSTREAM {
        Error::BrokenUpstream
    } else {
        Error::UnknownPackage(name.to_owned())
    }
}

fn describe(name: &str, installed: Option<&Summary>, offered: Option<&Available>) -> PackageInfo {
    let state = match (installed, offered) {
        (Some(i), _) if i.broken.is_some() => PackageState::Broken,
        (Some(i), Some(a)) if !a.is_build(&i.sha256, &i.version, i.size) => {
            PackageState::Upgradable
        }
        (Some(_), _) => PackageState::Installed,
        _ => PackageState::Available,
    };
    PackageInfo {
        name: name.to_owned(),
        kind: offered
            .map(|a| a.entry.kind)
            .or(installed.map(|i| i.kind))
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        state,
        installed_version: installed.map(|i| i.version.clone()).unwrap_or_default(),
        available_version: offered.map(|a| a.entry.version.clone()).unwrap_or_default(),
        size: offered.map_or(installed.map_or(0, |i| i.size), |a| a.entry.size),
        installed_size: offered.map_or(installed.map_or(0, |i| i.installed_size), |a| {
            a.entry.installed_size
        }),
        description: offered
            .map(|a| a.entry.description.clone())
            .or(installed.map(|i| i.description.clone()))
            .unwrap_or_default(),
        repo: offered
            .map(|a| a.repo.clone())
            .or(installed.map(|i| i.repo.clone()))
            .unwrap_or_default(),
        verified_by: offered.map(|a| a.verified_by.clone()).unwrap_or_default(),
        files: installed.map_or(0, |i| i.files),
        problem: installed.and_then(|i| i.broken.clone()).unwrap_or_default(),
        held: false,
        capabilities: match installed {
            Some(i) => i.capabilities.clone(),
            None => offered
                .map(|a| a.entry.capabilities.clone())
                .unwrap_or_default(),
        },
    }
}
