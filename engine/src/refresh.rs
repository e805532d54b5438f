//! Refreshing the repositories: every index fetched at once (conditionally), checked against
//! the trusted keys and its age, and kept; and whether a transaction may go on with the last
//! good index of a repository whose refresh failed.

use std::sync::PoisonError;

use tokio_util::sync::CancellationToken;

use crate::catalog::RepoSnapshot;
use crate::engine::{Engine, LAST_REFRESH, now, repo_key};
use crate::error::{Error, Result};
use crate::notice::Notice;
use crate::request::{Action, RepoFailure, Request};
use crate::signature;
use crate::source;
use crate::transact::Work;

impl Engine {
    /// Fetch every repository's index (conditionally: an unchanged one costs a 304) and
    /// check it against the trusted keys of `etc/spk/keys/`; returns the names with updates,
    /// or the first repository's failure (the others are refreshed all the same).
    pub async fn refresh(&self, cancel: &CancellationToken) -> Result<Vec<String>> {
        if let Some(failure) = self.refresh_repos(cancel).await?.into_iter().next() {
            return Err(failure.error);
        }
        self.updates()
    }

    /// Refresh every repository at once, each within `refresh_timeout`, and keep what each
    /// accepted; returns the repositories that failed (in config order). Only cancellation and
    /// the database fail the whole. Refreshes run one at a time, so the rollback guard of each
    /// repository only rises.
    pub async fn refresh_repos(&self, cancel: &CancellationToken) -> Result<Vec<RepoFailure>> {
        let _one_at_a_time = tokio::select! {
            guard = self.refreshing.lock() => guard,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let keys = self.trusted_keys()?;
        let trust = source::Trust {
            keys: &keys,
            allow_unverified: self.config.allow_unverified,
        };
        let previous = self
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .repos
            .clone();
        let deadline = self.config.refresh_timeout();
        let fetches = self.config.repos.iter().map(|repo| {
            let previous = previous.get(&repo.name);
            async move {
                let source = repo.source().map_err(Error::InvalidArgs)?;
                let in_flight = std::sync::Mutex::new(String::new());
                let fetch = source::fetch(
                    self.http.for_repo(&repo.name),
                    &repo.name,
                    &source,
                    trust,
                    repo.allow_insecure,
                    previous,
                    &in_flight,
                );
                let fetched = match tokio::time::timeout(deadline, fetch).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(Error::RefreshTimeout {
                            repo: repo.name.clone(),
                            url: in_flight
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clone(),
                            secs: deadline.as_secs(),
                        });
                    }
                };
                // Also for an unchanged (304) index: a frozen mirror answers just that.
                self.check_age(&fetched.snapshot)?;
                Ok::<_, Error>(fetched)
            }
        });
        // Dropping the fetches on cancellation drops their connections.
        let results = tokio::select! {
            results = futures_util::future::join_all(fetches) => results,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let mut failures = Vec::new();
        for (repo, result) in self.config.repos.iter().zip(results) {
            match result {
                Ok(fetched) if !fetched.changed => {}
                Ok(fetched) => {
                    let bytes = serde_json::to_vec(&fetched.snapshot)
                        .map_err(|e| Error::Database(e.to_string()))?;
                    self.db.set_meta(&repo_key(&repo.name), &bytes)?;
                    self.catalog
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .repos
                        .insert(repo.name.clone(), fetched.snapshot);
                }
                Err(error) => {
                    tracing::warn!(repo = %repo.name, %error, "refresh failed");
                    failures.push(RepoFailure {
                        repo: repo.name.clone(),
                        error,
                    });
                }
            }
        }
        if failures.is_empty() {
            self.db.set_meta(LAST_REFRESH, &now().to_le_bytes())?;
        }
        Ok(failures)
    }

    /// Refuse an index older than `max_index_age` allows.
    fn check_age(&self, snapshot: &RepoSnapshot) -> Result<()> {
        signature::check_age(snapshot.published, self.config.max_index_age_secs(), now()).map_err(
            |reason| Error::BadIndex {
                url: snapshot
                    .validators
                    .as_ref()
                    .map(|v| v.url.clone())
                    .unwrap_or_default(),
                reason: format!("release {}: {reason}", snapshot.release),
            },
        )
    }

    /// An install or upgrade goes on without the repositories whose refresh failed only when
    /// it needs nothing from them: each has a last good index, not older than
    /// `max_index_age`, and none of the packages concerned is (or might be) theirs. Then the
    /// client is told that a last good index was used; else the repository's error fails the
    /// transaction.
    pub(crate) fn tolerate(
        &self,
        req: &Request,
        failures: Vec<RepoFailure>,
        work: &mut Work<'_>,
    ) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = if req.action == Action::Upgrade && req.names.is_empty() {
            self.db.installed()?.into_keys().collect()
        } else {
            req.names.clone()
        };
        let mut notices = Vec::new();
        {
            let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
            for failure in failures {
                let Some(snapshot) = catalog.repos.get(&failure.repo) else {
                    return Err(failure.error);
                };
                if let Err(too_old) = self.check_age(snapshot) {
                    tracing::warn!(repo = %failure.repo, error = %too_old, "the last good index is too old to stand in");
                    return Err(failure.error);
                }
                // A name no repository offers might be the failed one's.
                let needed = names.iter().find(|name| {
                    catalog
                        .get(name)
                        .is_none_or(|offer| offer.repo == failure.repo)
                });
                if let Some(name) = needed {
                    tracing::warn!(repo = %failure.repo, package = %name, "needed from a repository that could not be refreshed");
                    return Err(failure.error);
                }
                let mut using = format!("release {}", snapshot.release);
                if let Some(date) = snapshot.published {
                    using.push_str(&format!(", dated {}", signature::describe_time(date)));
                }
                tracing::warn!(repo = %failure.repo, error = %failure.error, "refresh failed; using the last good index ({using})");
                let url = snapshot
                    .validators
                    .as_ref()
                    .map(|v| v.url.clone())
                    .unwrap_or_default();
                notices.push(Notice::stale_index(
                    &failure.repo,
                    &url,
                    &failure.error.to_string(),
                    &using,
                ));
            }
        }
        work.notice_all(notices);
        Ok(())
    }
}
