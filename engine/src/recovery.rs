//! Recovery: commits a crash (or a panic) interrupted are finished or undone, and staging
//! left over is removed; at start-up and before a transaction.

use crate::engine::Engine;
use crate::error::Result;

impl Engine {
    /// Finish or undo commits a crash (or a panic) interrupted, then drop staging left over.
    pub(crate) fn recover(&self) -> Result<()> {
        if self.committer().recover()? > 0 {
            self.db.write_dump()?;
        }
        self.clear_staging();
        self.drop_unrecorded_prepare();
        Ok(())
    }

    pub(crate) fn clear_staging(&self) {
        let staging = self.layout.root.join(&self.staging);
        if let Err(e) = std::fs::remove_dir_all(&staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not clear the staging area");
        }
    }
}
