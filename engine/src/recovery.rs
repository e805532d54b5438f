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

    /// Empty staging: moved aside in one rename, then deleted on a thread of its own. After an
    /// upgrade it holds the replaced version's files, and deleting thousands of files is no
    /// reason to keep the user waiting. What a crash leaves aside goes at the next start.
    pub(crate) fn clear_staging(&self) {
        let staging = self.layout.root.join(&self.staging);
        // Beside staging, so on its file system (a rename cannot cross one).
        let trash = staging.with_file_name(TRASH);
        let aside = trash.join(format!(
            "{}-{}",
            std::process::id(),
            TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let moved = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&trash)
                .and_then(|()| std::fs::rename(&staging, &aside))
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !staging.exists() => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot move staging aside; clearing it in place");
                if let Err(e) = std::fs::remove_dir_all(&staging)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, "could not clear the staging area");
                }
            }
        }
        let spawned = std::thread::Builder::new()
            .name("spkd-trash".into())
            .spawn(move || empty_trash(&trash));
        match spawned {
            Ok(thread) => {
                if let Ok(mut threads) = self.sweeping.lock() {
                    threads.retain(|t| !t.is_finished());
                    threads.push(thread);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not start clearing the staging area"),
        }
    }
}

/// `var/lib/spk/trash`: staging moved aside, being deleted.
const TRASH: &str = "trash";

/// Names what one spkd moves aside apart.
static TRASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn empty_trash(trash: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return;
    };
    for entry in entries.flatten() {
        crate::failpoint::pause("trash.delete");
        // Another sweep may be deleting the same entry: what it leaves goes at the next one.
        if let Err(e) = std::fs::remove_dir_all(entry.path())
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::debug!(path = %entry.path().display(), error = %e, "could not delete staging moved aside");
        }
    }
}
