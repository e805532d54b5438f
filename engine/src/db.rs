//! The package database (redb): installed packages with their manifests, which package owns
//! which path, which directories packages list (and which spk created), the commit journal, and small metadata (cached indexes, last refresh). Every
//! change is one ACID redb transaction; after each, a plain-text JSON dump of the installed state
//! is rewritten beside it, from which the database can be rebuilt by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::error::{Error, Result};
use crate::index::PackageKind;
use crate::manifest::{FileKind, FileRecord};

const PACKAGES: TableDefinition<&str, &str> = TableDefinition::new("packages");
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");
/// Directories packages list: canonical path → [`DirInfo`] as JSON.
const DIRS: TableDefinition<&str, &str> = TableDefinition::new("dirs");
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
    /// Why the package is broken (an interrupted commit that could be neither finished nor
    /// undone); a reinstall repairs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

/// An installed package without its file list: what listings (`ListPackages`, `UpdateCount`,
/// `info`) need. Parsing every manifest (each holds every file record) per call made those cost
/// as much as the installed files; these are kept in memory instead (see
/// [`Database::summaries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub name: String,
    pub version: String,
    pub kind: PackageKind,
    pub sha256: String,
    pub repo: String,
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    /// Regular files and symlinks ([`file_count`]).
    pub files: u64,
    pub broken: Option<String>,
    /// File capabilities: path → `setcap` text.
    pub capabilities: BTreeMap<String, String>,
}

impl Summary {
    pub fn of(p: &InstalledPackage) -> Summary {
        Summary {
            name: p.name.clone(),
            version: p.version.clone(),
            kind: p.kind,
            sha256: p.sha256.clone(),
            repo: p.repo.clone(),
            size: p.size,
            installed_size: p.installed_size,
            description: p.description.clone(),
            files: file_count(&p.files) as u64,
            capabilities: p
                .files
                .iter()
                .filter_map(|r| r.caps.clone().map(|c| (r.path.clone(), c)))
                .collect(),
            broken: p.broken.clone(),
        }
    }
}

/// One modifying transaction as `spkctl history` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The transaction's number ([`Database::next_tx`]): the N of its bus object. Numbers of
    /// transactions that left no entry (refreshes, dry runs, no-ops) are gaps.
    pub id: u64,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub uid: u32,
    /// install | upgrade | remove
    pub action: String,
    /// The names as requested (empty: upgrade everything).
    pub names: Vec<String>,
    pub state: HistoryState,
    pub error: String,
    /// What changed on disk (also for a transaction that failed after some commits).
    pub changes: Vec<Change>,
    /// What the admin was told (kept configuration files…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<crate::notice::Notice>,
}

/// How a recorded transaction ended. Stored (and put on the bus) as `finished`, `failed` or
/// `cancelled`: the words databases already hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryState {
    Finished,
    Failed,
    Cancelled,
}

impl HistoryState {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryState::Finished => "finished",
            HistoryState::Failed => "failed",
            HistoryState::Cancelled => "cancelled",
        }
    }
}

/// What spk knows of a directory of the root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirInfo {
    /// spk created it (so it may remove it again once empty and unneeded).
    pub created: bool,
    /// Installed packages listing it.
    pub users: Vec<String>,
}

pub struct Database {
    db: redb::Database,
    dump_path: PathBuf,
    /// [`Summary`] of every installed package, filled on first use and dropped by every write
    /// to the packages table. Filled and dropped under this lock, and dropped only after the
    /// write committed: a fill racing a write is either dropped or saw the write.
    summaries: Mutex<Option<Arc<BTreeMap<String, Summary>>>>,
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Database(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Database(format!("corrupt record: {e}")))
}

/// Memory redb may use to cache pages of the database.
const DB_CACHE_BYTES: usize = 4 << 20;

/// Version of the tables' meaning. 2: paths are canonical (as the root resolves them) and
/// directories are tracked in `dirs`.
const SCHEMA: u64 = 2;
const SCHEMA_KEY: &str = "schema";
const NEXT_TX: &str = "next-tx";

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
        txn.open_table(DIRS)?;
        txn.open_table(JOURNAL)?;
        txn.open_table(META)?;
        txn.open_table(HISTORY)?;
        txn.commit()?;
        Ok(Database {
            db,
            dump_path: dir.join("installed.json"),
            summaries: Mutex::new(None),
        })
    }

    /// Whether the database predates canonical paths and directory tracking (then
    /// [`Database::rebuild`] converts it).
    pub fn needs_rebuild(&self) -> Result<bool> {
        let schema = self
            .meta(SCHEMA_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes);
        if schema == Some(SCHEMA) {
            return Ok(false);
        }
        if self.installed()?.is_empty() {
            self.set_meta(SCHEMA_KEY, &SCHEMA.to_le_bytes())?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Replace every package record, and rebuild owners and directories from them (directories
    /// of unknown origin count as not created by spk: never removed).
    pub fn rebuild(&self, packages: &BTreeMap<String, InstalledPackage>) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            txn.delete_table(OWNERS)?;
            txn.delete_table(DIRS)?;
            let mut table = txn.open_table(PACKAGES)?;
            let mut owners = txn.open_table(OWNERS)?;
            let mut dirs = txn.open_table(DIRS)?;
            for (name, package) in packages {
                table.insert(name.as_str(), json(package)?.as_str())?;
                for r in &package.files {
                    if r.is_dir() {
                        let mut info: DirInfo = match dirs.get(r.path.as_str())? {
                            Some(v) => parse(v.value())?,
                            None => DirInfo::default(),
                        };
                        if !info.users.contains(name) {
                            info.users.push(name.clone());
                        }
                        dirs.insert(r.path.as_str(), json(&info)?.as_str())?;
                    } else {
                        owners.insert(r.path.as_str(), name.as_str())?;
                    }
                }
            }
            txn.open_table(META)?
                .insert(SCHEMA_KEY, SCHEMA.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        self.forget_summaries();
        Ok(())
    }

    /// A new transaction number, never reused: it is the transaction's bus object
    /// (`/xyz/smech/Spk1/transaction/N`), its history id, and the name of its staging areas.
    /// Above every history id recorded so far, also those of databases whose history numbered
    /// itself apart from this counter.
    pub fn next_tx(&self) -> Result<u64> {
        let txn = self.db.begin_write()?;
        let id;
        {
            let mut meta = txn.open_table(META)?;
            let counted = meta
                .get(NEXT_TX)?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map_or(1, u64::from_le_bytes);
            let recorded = txn
                .open_table(HISTORY)?
                .last()?
                .map_or(1, |(k, _)| k.value() + 1);
            id = counted.max(recorded);
            meta.insert(NEXT_TX, (id + 1).to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(id)
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

    /// Every installed package's [`Summary`], from memory once read.
    pub fn summaries(&self) -> Result<Arc<BTreeMap<String, Summary>>> {
        let mut cached = self
            .summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = &*cached {
            return Ok(s.clone());
        }
        let fresh: BTreeMap<String, Summary> = self
            .installed()?
            .into_iter()
            .map(|(name, p)| (name, Summary::of(&p)))
            .collect();
        let fresh = Arc::new(fresh);
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// The packages table changed: the next [`Database::summaries`] reads it again.
    fn forget_summaries(&self) {
        *self
            .summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn package(&self, name: &str) -> Result<Option<InstalledPackage>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PACKAGES)?;
        table.get(name)?.map(|v| parse(v.value())).transpose()
    }

    /// Who owns what, as of now (a consistent snapshot).
    pub fn ownership(&self) -> Result<Ownership> {
        let txn = self.db.begin_read()?;
        Ok(Ownership {
            owners: txn.open_table(OWNERS)?,
            dirs: txn.open_table(DIRS)?,
        })
    }

    /// The journal: commits in progress, by package.
    pub fn journal<T: for<'de> Deserialize<'de>>(&self) -> Result<Vec<T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOURNAL)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(parse(row?.1.value())?);
        }
        Ok(out)
    }

    /// Durably note `name`'s commit about to start (or moving to its next phase).
    pub fn begin<T: Serialize>(&self, name: &str, entry: &T) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?
            .insert(name, json(entry)?.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Record the outcome of a commit whose steps all ran, atomically with replacing its
    /// journal entry by `next` (its cleanup phase).
    pub fn complete<T: Serialize>(&self, change: &Recorded<'_>, next: &T) -> Result<()> {
        let name = change.name;
        let txn = self.db.begin_write()?;
        {
            let mut packages = txn.open_table(PACKAGES)?;
            let mut owners = txn.open_table(OWNERS)?;
            let mut dirs = txn.open_table(DIRS)?;
            for r in change.gone {
                if r.is_dir() {
                    leave_dir(&mut dirs, &r.path, name)?;
                } else {
                    remove_owner(&mut owners, &r.path, name)?;
                }
            }
            let kept: &[FileRecord] = change.package.map_or(&[], |p| &p.files);
            // Paths taken over from another package (forced): it no longer has them.
            let mut taken: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in kept {
                if r.is_dir() {
                    let mut info: DirInfo = match dirs.get(r.path.as_str())? {
                        Some(v) => parse(v.value())?,
                        None => DirInfo::default(),
                    };
                    info.created |= change.created.contains(&r.path);
                    if !info.users.iter().any(|u| u == name) {
                        info.users.push(name.to_owned());
                    }
                    dirs.insert(r.path.as_str(), json(&info)?.as_str())?;
                    continue;
                }
                let previous = owners
                    .insert(r.path.as_str(), name)?
                    .map(|o| o.value().to_owned());
                if let Some(previous) = previous.filter(|p| p != name) {
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
            match change.package {
                Some(package) => {
                    packages.insert(name, json(package)?.as_str())?;
                }
                None => {
                    packages.remove(name)?;
                }
            }
            txn.open_table(JOURNAL)?
                .insert(name, json(next)?.as_str())?;
        }
        txn.commit()?;
        self.forget_summaries();
        Ok(())
    }

    /// The commit of `name` is over: drop its journal entry, and the entries of the
    /// directories its cleanup removed.
    pub fn finish(&self, name: &str, removed_dirs: &[String]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut dirs = txn.open_table(DIRS)?;
            for d in removed_dirs {
                dirs.remove(d.as_str())?;
            }
            txn.open_table(JOURNAL)?.remove(name)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Forget a journal entry (its commit was undone, or never touched the root).
    pub fn abandon(&self, name: &str) -> Result<()> {
        self.finish(name, &[])
    }

    /// An interrupted commit could be neither finished nor undone: record `package` (the
    /// version most of the disk holds) as broken, with why, and drop the journal entry. A
    /// reinstall repairs it.
    pub fn mark_broken(&self, package: &InstalledPackage, reason: &str) -> Result<()> {
        let mut record = package.clone();
        record.broken = Some(reason.to_owned());
        let txn = self.db.begin_write()?;
        {
            let mut owners = txn.open_table(OWNERS)?;
            for r in record.files.iter().filter(|r| !r.is_dir()) {
                if owners.get(r.path.as_str())?.is_none() {
                    owners.insert(r.path.as_str(), record.name.as_str())?;
                }
            }
            txn.open_table(PACKAGES)?
                .insert(record.name.as_str(), json(&record)?.as_str())?;
            txn.open_table(JOURNAL)?.remove(record.name.as_str())?;
        }
        txn.commit()?;
        self.forget_summaries();
        Ok(())
    }

    /// Record a transaction in the history, under its transaction number (`entry.id`, from
    /// [`Database::next_tx`]).
    pub fn add_history(&self, entry: &HistoryEntry) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(HISTORY)?
            .insert(entry.id, json(entry)?.as_str())?;
        txn.commit()?;
        Ok(())
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

    /// Every metadata entry whose key starts with `prefix`.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let mut out = Vec::new();
        for row in table.range(prefix..)? {
            let (k, v) = row?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
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

/// Who owns what, as the database says.
pub trait Owners {
    /// The package owning the file or symlink `path`.
    fn file_owner(&self, path: &str) -> Result<Option<String>>;
    /// What spk knows of the directory `path`: whether it created it, which packages list it.
    fn dir(&self, path: &str) -> Result<Option<DirInfo>>;

    /// The packages listing the directory `path`.
    fn dir_users(&self, path: &str) -> Result<Vec<String>> {
        Ok(self.dir(path)?.map(|d| d.users).unwrap_or_default())
    }
}

/// What a finished commit changes in the records.
pub struct Recorded<'a> {
    pub name: &'a str,
    /// The new record; `None` for a removal.
    pub package: Option<&'a InstalledPackage>,
    /// Records the package no longer has.
    pub gone: &'a [FileRecord],
    /// Directories the commit created.
    pub created: &'a [String],
}

/// A read-only view of who owns which path.
pub struct Ownership {
    owners: redb::ReadOnlyTable<&'static str, &'static str>,
    dirs: redb::ReadOnlyTable<&'static str, &'static str>,
}

impl Owners for Ownership {
    fn file_owner(&self, path: &str) -> Result<Option<String>> {
        Ok(self.owners.get(path)?.map(|v| v.value().to_owned()))
    }

    fn dir(&self, path: &str) -> Result<Option<DirInfo>> {
        self.dirs.get(path)?.map(|v| parse(v.value())).transpose()
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

/// `package` no longer lists the directory `path`; an entry with no users that spk did not
/// create goes.
fn leave_dir(dirs: &mut redb::Table<&str, &str>, path: &str, package: &str) -> Result<()> {
    let Some(mut info) = dirs
        .get(path)?
        .map(|v| parse::<DirInfo>(v.value()))
        .transpose()?
    else {
        return Ok(());
    };
    info.users.retain(|u| u != package);
    if info.users.is_empty() && !info.created {
        dirs.remove(path)?;
    } else {
        dirs.insert(path, json(&info)?.as_str())?;
    }
    Ok(())
}

/// Count of regular files and symlinks (what `info` shows as the package's files).
pub fn file_count(files: &[FileRecord]) -> usize {
    files
        .iter()
        .filter(|r| !matches!(r.kind, FileKind::Dir))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> HistoryEntry {
        HistoryEntry {
            id,
            started: 1,
            finished: 2,
            uid: 0,
            action: "install".into(),
            names: vec!["a".into()],
            state: HistoryState::Finished,
            error: String::new(),
            changes: Vec::new(),
            notices: Vec::new(),
        }
    }

    /// A transaction's number is its history id: entries stay under it, gaps and all, and a
    /// database whose history numbered itself apart from the counter gets numbers above its
    /// newest entry, after a reopen too.
    #[test]
    fn transaction_numbers_are_history_ids_and_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.next_tx().unwrap(), 1);
        // An older spkd's history ran ahead of the counter.
        db.add_history(&entry(5)).unwrap();
        let tx = db.next_tx().unwrap();
        assert_eq!(tx, 6);
        db.add_history(&entry(tx)).unwrap();
        drop(db);
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(db.next_tx().unwrap(), 7);
        assert_eq!(db.next_tx().unwrap(), 8);
        let ids: Vec<u64> = db.history(10).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, [6, 5]);
    }

    /// History records written when the state was a plain string still read, and are written
    /// back with the same words.
    #[test]
    fn history_state_keeps_its_words() {
        for (word, state) in [
            ("finished", HistoryState::Finished),
            ("failed", HistoryState::Failed),
            ("cancelled", HistoryState::Cancelled),
        ] {
            let stored = format!(
                r#"{{"id":3,"started":1,"finished":2,"uid":0,"action":"install","names":["a"],"state":"{word}","error":"","changes":[{{"name":"a","from":"","to":"1"}}]}}"#
            );
            let entry: HistoryEntry = parse(&stored).expect("an old record reads");
            assert_eq!(entry.state, state);
            assert_eq!(state.as_str(), word);
            let written = json(&entry).expect("serializes");
            assert!(
                written.contains(&format!(r#""state":"{word}""#)),
                "{written}"
            );
        }
        assert!(parse::<HistoryEntry>(r#"{"id":1,"started":1,"finished":2,"uid":0,"action":"install","names":[],"state":"done","error":"","changes":[]}"#).is_err());
    }
}
