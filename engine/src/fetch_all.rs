//! Getting every planned package of a transaction into staging: each downloaded (or read from
//! the cache), verified and unpacked in a task of its own, a few at once.

use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fetch_unpack::{self, FetchContext, Target};
use crate::manifest::FileRecord;
use crate::planning::Planned;
use crate::progress::Stage;
use crate::transact::Work;

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Staged {
    pub(crate) planned: Planned,
    pub(crate) files: Vec<FileRecord>,
    /// Entries the archive gives to another owner than root (resolved before commit).
    pub(crate) owners: Vec<crate::unpack::Owner>,
}

/// Everything one package's fetch-and-unpack task owns.
struct PackageJob {
    ctx: FetchContext,
    dir: std::path::PathBuf,
    mode: fetch_unpack::Mode,
}

impl PackageJob {
    async fn run(self, planned: Planned) -> Result<Staged> {
        let name = planned.available.entry.name.clone();
        let _ = std::fs::remove_dir_all(&self.dir);
        let progress = self
            .ctx
            .reporter
            .package(&name, planned.available.entry.size);
        self.ctx.reporter.current(&name);
        let started = std::time::Instant::now();
        let target = Target {
            pkg: &planned.available,
            dir: &self.dir,
            mode: self.mode,
            progress: &progress,
        };
        let unpacked = fetch_unpack::fetch_and_unpack(&self.ctx, target)
            .instrument(tracing::info_span!("stage", package = %name))
            .await?;
        progress.finished(if self.mode == fetch_unpack::Mode::Fetch {
            Stage::Done
        } else {
            Stage::Unpacked
        });
        tracing::info!(
            package = %name,
            files = unpacked.records.len(),
            ms = started.elapsed().as_millis() as u64,
            "staged"
        );
        Ok(Staged {
            planned,
            files: unpacked.records,
            owners: unpacked.owners,
        })
    }
}

impl Engine {
    /// Download, verify and unpack every planned package into staging, up to `parallelism()`
    /// at once. Each package streams in its own task so that decoders run on separate cores
    /// (xz decoding is most of an install's CPU time). The first failure stops the others.
    pub(crate) async fn fetch_and_unpack_all(
        &self,
        plan: Vec<Planned>,
        work: &Work<'_>,
        unpack: bool,
    ) -> Result<Vec<Staged>> {
        let stream_cancel = work.cancel.child_token();
        let ctx = FetchContext {
            http: self.http.for_repo("").clone(),
            retry: self.config.retry_policy(),
            cache_dir: self.layout.cache.clone(),
            reporter: work.reporter.clone(),
            cancel: stream_cancel.clone(),
        };
        let slots = self.config.parallelism();
        let mut pending = plan.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut staged = Vec::new();
        let mut flushing = false;
        loop {
            // Start packages in plan order (largest first) while slots are free.
            while running.len() < slots
                && let Some(planned) = pending.next()
            {
                let mode = if !unpack {
                    fetch_unpack::Mode::Fetch
                } else if pending.len() < slots {
                    // Nothing will wait for this slot any more: as packages finish, cores
                    // go idle unless the last ones decode on threads of their own.
                    fetch_unpack::Mode::UnpackThreaded
                } else {
                    fetch_unpack::Mode::Unpack
                };
                let area = self.area(work.tx, &planned.available.entry.name);
                let mut ctx = ctx.clone();
                // Through the proxy of the repository that offers it.
                ctx.http = self.http.for_repo(&planned.available.repo).clone();
                let job = PackageJob {
                    ctx,
                    dir: self.layout.root.join(area).join("tree"),
                    mode,
                };
                running.spawn(job.run(planned));
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let result = joined.unwrap_or_else(|e| {
                Err(Error::io(
                    "internal error while staging",
                    std::io::Error::other(e.to_string()),
                ))
            });
            match result {
                Ok(s) => {
                    staged.push(s);
                    if unpack && !flushing && pending.len() == 0 && running.len() == 1 {
                        // One package left, and a core to spare: what is staged starts on its
                        // way to disk now, so that the commit's flush waits only for the rest.
                        flushing = true;
                        let staging = self.layout.root.join(&self.staging);
                        tokio::task::spawn_blocking(move || {
                            let _ = crate::commit::sync_filesystem(&staging);
                        });
                    }
                }
                Err(e) => {
                    // One failure fails the transaction before anything is committed.
                    stream_cancel.cancel();
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        Ok(staged)
    }
}
