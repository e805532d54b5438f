//! The engine's use of the download cache: pruning it to `keep_versions` per package after a
//! transaction, and `spkctl clean`.

use crate::cache::Cache;
use crate::engine::Engine;
use crate::error::Result;

impl Engine {
    pub(crate) fn cache(&self) -> Cache<'_> {
        Cache {
            dir: &self.layout.cache,
            db: &self.db,
        }
    }

    /// Keep `keep_versions` tarballs of each of `names` (a failure to prune is only logged).
    pub(crate) fn prune_cache<'n>(&self, names: impl Iterator<Item = &'n str>) {
        for name in names {
            let installed = self.db.package(name).ok().flatten();
            let (sha, keep) = match &installed {
                Some(p) => (Some(p.sha256.as_str()), self.config.keep_versions),
                // Removed: only its last tarball stays (to reinstall it without a download).
                None => (None, self.config.keep_versions.min(1)),
            };
            if let Err(e) = self.cache().prune(name, sha, keep) {
                tracing::warn!(package = %name, error = %e, "could not prune the cache");
            }
        }
    }

    /// `spkctl clean`: drop cached tarballs but the installed versions' (all with `all`).
    pub async fn clean(&self, all: bool) -> Result<(u32, u64)> {
        let _turn = self.modify.lock().await;
        let installed = self.db.installed()?;
        let (files, bytes) = self.cache().clean(&installed, all)?;
        tracing::info!(files, bytes, all, "cache cleaned");
        Ok((files, bytes))
    }
}
