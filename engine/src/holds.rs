//! Held packages: `upgrade` leaves them alone unless named. Kept as a JSON list in the
//! database's metadata.

use std::sync::PoisonError;

use crate::engine::{Engine, HELD};
use crate::error::{Error, Result};
use crate::index::check_package_name;
use crate::notice::Notice;

impl Engine {
    /// Packages `upgrade` leaves alone unless named.
    pub fn held(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .db
            .meta(HELD)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Hold (or with `hold` false, release) the installed packages `names`.
    pub fn set_held(&self, names: &[String], hold: bool) -> Result<()> {
        let mut held = self.held()?;
        for name in names {
            check_package_name(name).map_err(Error::InvalidArgs)?;
            if hold {
                if self.db.package(name)?.is_none() {
                    return Err(Error::NotInstalled(name.clone()));
                }
                held.insert(name.clone());
            } else {
                held.remove(name);
            }
        }
        let bytes = serde_json::to_vec(&held).map_err(|e| Error::Database(e.to_string()))?;
        self.db.set_meta(HELD, &bytes)?;
        tracing::info!(?names, hold, "holds changed");
        Ok(())
    }

    /// What `upgrade` without names leaves out: a notice per held package that a repository
    /// offers another build of, so that "nothing to do" does not hide a held update.
    pub(crate) fn held_back(&self) -> Result<Vec<Notice>> {
        let held = self.held()?;
        let installed = self.db.summaries()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        Ok(held
            .iter()
            .filter_map(|name| {
                let old = installed.get(name)?;
                let new = catalog.get(name)?;
                (!new.is_build(&old.sha256, &old.version, old.size))
                    .then(|| Notice::held_back(name, &old.version, &new.entry.version))
            })
            .collect())
    }
}
