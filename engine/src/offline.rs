//! Offline updates ("install at restart"): an Install/Upgrade with option `offline` downloads,
//! verifies and unpacks as usual, then keeps its staging in `var/lib/spk/offline/` with what it
//! was planned against instead of committing. [`Action::ApplyPrepared`](crate::Action) commits
//! it later (spkd `--apply-offline-update`, run by OpenRC at boot before the desktop) through
//! the same commit path and journal as any transaction, with its hooks. A prepared update whose
//! plan no longer matches the installed packages is discarded, never applied.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::engine::{Engine, now};
use crate::error::{Error, Result};
use crate::fetch_all::Staged;
use crate::request::{Options, Outcome};
use crate::transact::Work;

/// The record of a prepared update (`offline/prepared.json`).
#[derive(Serialize, Deserialize)]
struct Prepared {
    prepared_at: u64,
    /// What each package goes from and to.
    changes: Vec<Change>,
    /// Each package unpacked in `offline/staged/<name>/tree`, with its manifest and owners.
    staged: Vec<Staged>,
    /// name → "version sha256" of every installed package when it was prepared: the state the
    /// plan holds for.
    installed: BTreeMap<String, String>,
}

/// A prepared update as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedUpdate {
    /// Unix seconds.
    pub prepared_at: u64,
    pub changes: Vec<Change>,
    /// Bytes the staged packages take on disk, unpacked.
    pub installed_size: u64,
    /// Why it can no longer be applied (it will be discarded), else empty.
    pub stale: String,
}

const PREPARED: &str = "prepared.json";
const STAGED: &str = "staged";

impl Engine {
    fn offline_dir(&self) -> PathBuf {
        self.layout.state.join("offline")
    }

    /// The installed state a prepared update is checked against; from the summaries in
    /// memory (`PreparedUpdate` is read after every transaction: no manifest is decoded).
    fn installed_state(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .db
            .summaries()?
            .values()
            .map(|p| (p.name.clone(), format!("{} {}", p.version, p.sha256)))
            .collect())
    }

    /// A prepare that was killed before it recorded itself leaves unpacked packages with no
    /// record: nothing can apply them, so they go (at start-up, with the staging area).
    pub(crate) fn drop_unrecorded_prepare(&self) {
        let dir = self.offline_dir();
        if dir.is_dir() && !dir.join(PREPARED).exists() {
            tracing::info!("dropping an update whose preparation was interrupted");
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(error = %e, "could not remove {}", dir.display());
            }
        }
    }

    /// Keep transaction `tx`'s staging as the prepared update (replacing any earlier one).
    pub(crate) fn keep_prepared(
        &self,
        staged: Vec<Staged>,
        changes: Vec<Change>,
        tx: u64,
    ) -> Result<()> {
        self.discard_prepared()?;
        let dir = self.offline_dir();
        let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io("creating", e))?;
        }
        // Same file system (both under var/lib/spk): a rename, however large the update.
        let staging = self.layout.root.join(&self.staging).join(tx.to_string());
        std::fs::rename(&staging, dir.join(STAGED)).map_err(|e| io("keeping the staging in", e))?;
        let record = Prepared {
            prepared_at: now(),
            changes,
            staged,
            installed: self.installed_state()?,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| Error::Database(e.to_string()))?;
        // The unpacked files must survive a power cut before the record says they are there.
        crate::commit::sync_filesystem(&dir).map_err(|e| io("syncing", e))?;
        let tmp = dir.join("prepared.json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, dir.join(PREPARED)))
            .and_then(|()| std::fs::File::open(&dir)?.sync_all())
            .map_err(|e| io("recording the prepared update in", e))?;
        tracing::info!(
            packages = record.staged.len(),
            "update prepared for the next boot"
        );
        Ok(())
    }

    fn read_prepared(&self) -> Result<Option<Prepared>> {
        let path = self.offline_dir().join(PREPARED);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Database(format!("{}: {e}", path.display())))
    }

    /// Why `p` can no longer be applied, if it cannot.
    fn why_stale(&self, p: &Prepared) -> Result<Option<String>> {
        if !self.offline_dir().join(STAGED).is_dir() {
            return Ok(Some(
                "an earlier attempt to install it was interrupted (what it had installed then \
                 stays installed; the rest keeps its old version)"
                    .into(),
            ));
        }
        let now = self.installed_state()?;
        let mut names: Vec<&String> = now.keys().chain(p.installed.keys()).collect();
        names.sort();
        names.dedup();
        let changed: Vec<String> = names
            .into_iter()
            .filter(|n| now.get(*n) != p.installed.get(*n))
            .map(|n| {
                let version = |m: &BTreeMap<String, String>| {
                    m.get(n)
                        .and_then(|v| v.split(' ').next())
                        .unwrap_or("not installed")
                        .to_owned()
                };
                format!(
                    "{n} ({} then, {} now)",
                    version(&p.installed),
                    version(&now)
                )
            })
            .collect();
        Ok((!changed.is_empty()).then(|| {
            format!(
                "the installed packages changed since it was prepared: {}",
                changed.join(", ")
            )
        }))
    }

    /// The prepared update, if any.
    pub fn prepared(&self) -> Result<Option<PreparedUpdate>> {
        let Some(p) = self.read_prepared()? else {
            return Ok(None);
        };
        Ok(Some(PreparedUpdate {
            prepared_at: p.prepared_at,
            installed_size: p
                .staged
                .iter()
                .map(|s| s.planned.available.entry.installed_size)
                .sum(),
            stale: self.why_stale(&p)?.unwrap_or_default(),
            changes: p.changes,
        }))
    }

    /// Drop the prepared update and its unpacked packages; whether there was one.
    pub fn discard_prepared(&self) -> Result<bool> {
        let dir = self.offline_dir();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!("prepared update discarded");
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// Commit the prepared update (the transaction `work`), then forget it, applied or not: a
    /// failure leaves the packages not yet committed at their old version, and is not retried
    /// at every boot.
    pub(crate) async fn apply_prepared(&self, work: &mut Work<'_>) -> Result<Outcome> {
        let Some(p) = self.read_prepared()? else {
            return Ok(Outcome::default());
        };
        if let Some(why) = self.why_stale(&p)? {
            self.discard_prepared()?;
            return Err(Error::Stale(format!(
                "the update prepared on {} was discarded: {why}",
                crate::signature::describe_time(p.prepared_at)
            )));
        }
        let staging = self
            .layout
            .root
            .join(&self.staging)
            .join(work.tx.to_string());
        let result = match std::fs::rename(self.offline_dir().join(STAGED), &staging) {
            Err(e) => Err(Error::io("moving the prepared packages into staging", e)),
            Ok(()) => self.commit_prepared(p, work).await,
        };
        self.discard_prepared()?;
        result
    }

    async fn commit_prepared(&self, p: Prepared, work: &mut Work<'_>) -> Result<Outcome> {
        let streams: Vec<(String, u64)> = Vec::new();
        work.reporter.plan(&streams, p.staged.len());
        work.reporter.state(crate::progress::TxState::Installing);
        self.commit_then_hooks(p.staged, &p.changes, &Options::default(), work)
            .await
    }
}
