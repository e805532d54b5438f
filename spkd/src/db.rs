//! The package database (redb): installed packages with their manifests, which package owns
//! which path, the commit journal, and small metadata (cached indexes, last refresh). Every
//! change is one ACID redb transaction; after each, a plain-text JSON dump of the installed state
//! is rewritten beside it, from which the database can be rebuilt by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::PackageKind;
use crate::manifest::{FileKind, FileRecord};

const PACKAGES: TableDefinition<&str, &str> = TableDefinition::new("packages");
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");
const JOURNAL: TableDefinition<&str, &str> = TableDefinition::new("journal");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const HISTORY: TableDefinition<u64, &str> = TableDefinition::new("history");

/// One installed package, as recorded after its commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub kind: PackageKind,
    pub sha256: String,
    pub repo: String,
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    /// Unix seconds.
    pub installed_at: u64,
    pub files: Vec<FileRecord>,
}

/// One modifying transaction as `spkctl history` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Assigned when recorded: 1, 2, 3…
    pub id: u64,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub uid: u32,
    /// install | upgrade | remove
    pub action: String,
    /// The names as requested (empty: upgrade everything).
    pub names: Vec<String>,
    /// finished | failed | cancelled
    pub state: String,
    pub error: String,
    /// What changed on disk (also for a transaction that failed after some commits).
    pub changes: Vec<crate::engine::Change>,
}

/// A commit in progress, written durably before the first rename so that start-up recovery can
/// finish it (roll forward): the live root then holds wholly the new version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Intent {
    Install {
        staging: PathBuf,
        package: InstalledPackage,
        /// Files of the previous version that the new one no longer ships.
        dropped: Vec<FileRecord>,
    },
    Remove {
        package: InstalledPackage,
    },
}

impl Intent {
    pub fn package_name(&self) -> &str {
        match self {
            Intent::Install { package, .. } | Intent::Remove { package } => &package.name,
        }
    }
}

pub struct Database {
    db: redb::Database,
    dump_path: PathBuf,
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Database(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Database(format!("corrupt record: {e}")))
}

/// Memory redb may use to cache pages of the database.
const DB_CACHE_BYTES: usize = 4 << 20;

impl Database {
    /// Open (or create) the database at `dir/packages.redb`.
    pub fn open(dir: &Path) -> Result<Database> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // redb caches up to 1 GiB by default, which a daemon idling between transactions would
        // keep; the file is small and in the page cache anyway.
        let db = redb::Builder::new()
            .set_cache_size(DB_CACHE_BYTES)
            .create(dir.join("packages.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(PACKAGES)?;
        txn.open_table(OWNERS)?;
        txn.open_table(JOURNAL)?;
        txn.open_table(META)?;
        txn.open_table(HISTORY)?;
        txn.commit()?;
        Ok(Database {
            db,
            dump_path: dir.join("installed.json"),
        })
    }

    pub fn installed(&self) -> Result<BTreeMap<String, InstalledPackage>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PACKAGES)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_owned(), parse(v.value())?);
        }
        Ok(out)
    }

    pub fn package(&self, name: &str) -> Result<Option<InstalledPackage>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PACKAGES)?;
        table.get(name)?.map(|v| parse(v.value())).transpose()
    }

    /// Paths among `records` that another installed package owns: `(path, owner)`.
    pub fn conflicts(
        &self,
        package: &str,
        records: &[FileRecord],
    ) -> Result<Vec<(String, String)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OWNERS)?;
        let mut out = Vec::new();
        for r in records.iter().filter(|r| !r.is_dir()) {
            if let Some(owner) = table.get(r.path.as_str())?
                && owner.value() != package
            {
                out.push((r.path.clone(), owner.value().to_owned()));
            }
        }
        Ok(out)
    }

    pub fn journal(&self) -> Result<Vec<Intent>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOURNAL)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(parse(row?.1.value())?);
        }
        Ok(out)
    }

    /// Durably note a commit about to start.
    pub fn begin(&self, intent: &Intent) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?
            .insert(intent.package_name(), json(intent)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Record the outcome of a finished commit and drop its journal entry, atomically.
    pub fn complete(&self, intent: &Intent) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut packages = txn.open_table(PACKAGES)?;
            let mut owners = txn.open_table(OWNERS)?;
            match intent {
                Intent::Install {
                    package, dropped, ..
                } => {
                    for r in dropped.iter().filter(|r| !r.is_dir()) {
                        remove_owner(&mut owners, &r.path, &package.name)?;
                    }
                    // Paths taken over from another package (forced): it no longer has them.
                    let mut taken: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for r in package.files.iter().filter(|r| !r.is_dir()) {
                        let previous = owners
                            .insert(r.path.as_str(), package.name.as_str())?
                            .map(|o| o.value().to_owned());
                        if let Some(previous) = previous.filter(|p| p != &package.name) {
                            taken.entry(previous).or_default().push(r.path.clone());
                        }
                    }
                    for (owner, paths) in taken {
                        let record = packages.get(owner.as_str())?.map(|v| v.value().to_owned());
                        if let Some(record) = record {
                            let mut other: InstalledPackage = parse(&record)?;
                            other.files.retain(|f| !paths.contains(&f.path));
                            packages.insert(owner.as_str(), json(&other)?.as_str())?;
                        }
                    }
                    packages.insert(package.name.as_str(), json(package)?.as_str())?;
                }
                Intent::Remove { package } => {
                    for r in package.files.iter().filter(|r| !r.is_dir()) {
                        remove_owner(&mut owners, &r.path, &package.name)?;
                    }
                    packages.remove(package.name.as_str())?;
                }
            }
            txn.open_table(JOURNAL)?.remove(intent.package_name())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Forget a journal entry whose commit never started touching the root.
    pub fn abandon(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?.remove(name)?;
        txn.commit()?;
        Ok(())
    }

    /// Append to the history; returns the entry's id.
    pub fn add_history(&self, mut entry: HistoryEntry) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let id;
        {
            let mut table = txn.open_table(HISTORY)?;
            id = table.last()?.map_or(1, |(k, _)| k.value() + 1);
            entry.id = id;
            table.insert(id, json(&entry)?.as_str())?;
        }
        txn.commit()?;
        Ok(id)
    }

    /// The newest `limit` history entries, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(HISTORY)?;
        let mut out = Vec::new();
        for row in table.iter()?.rev().take(limit) {
            out.push(parse(row?.1.value())?);
        }
        Ok(out)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Rewrite `installed.json` (write to a temporary name, then rename: never half a file).
    /// Called once per transaction (not per package): it serializes every manifest.
    pub fn write_dump(&self) -> Result<()> {
        let all = self.installed()?;
        let text = serde_json::to_vec_pretty(&all).map_err(|e| Error::Database(e.to_string()))?;
        let tmp = self.dump_path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.dump_path))
            .map_err(|e| Error::io(format!("writing {}", self.dump_path.display()), e))
    }
}

/// Drop `path`'s owner entry only if `package` still owns it (a forced overwrite may have
/// given it to another package since).
fn remove_owner(owners: &mut redb::Table<&str, &str>, path: &str, package: &str) -> Result<()> {
    let owned = owners.get(path)?.is_some_and(|o| o.value() == package);
    if owned {
        owners.remove(path)?;
    }
    Ok(())
}

/// Files of `old` that `new` no longer ships (what an upgrade must delete).
pub fn dropped_files(old: &[FileRecord], new: &[FileRecord]) -> Vec<FileRecord> {
    let keep: std::collections::HashSet<&str> = new.iter().map(|r| r.path.as_str()).collect();
    old.iter()
        .filter(|r| !keep.contains(r.path.as_str()))
        .cloned()
        .collect()
}

/// Count of regular files and symlinks (what `info` shows as the package's files).
pub fn file_count(files: &[FileRecord]) -> usize {
    files
        .iter()
        .filter(|r| !matches!(r.kind, FileKind::Dir))
        .count()
}

impl Database {
    /// The records among `records` that `package` still owns (directories always count: they
    /// are removed only when empty).
    pub fn owned_by(&self, package: &str, records: &[FileRecord]) -> Result<Vec<FileRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OWNERS)?;
        let mut out = Vec::new();
        for r in records {
            let mine = r.is_dir()
                || table
                    .get(r.path.as_str())?
                    .is_none_or(|o| o.value() == package);
            if mine {
                out.push(r.clone());
            }
        }
        Ok(out)
    }
}
