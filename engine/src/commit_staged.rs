//! Committing the staged packages of a transaction: their users, groups, owners and
//! capabilities set first, every package checked against the root before the first one
//! changes it, then each committed in turn.

use crate::catalog::Available;
use crate::change::Change;
use crate::commit::plan::{self as commit_plan, Plan};
use crate::db::InstalledPackage;
use crate::engine::{Engine, now};
use crate::error::{Error, Result};
use crate::fetch_all::Staged;
use crate::live::Live;
use crate::manifest::{FileRecord, sort_for_commit};
use crate::progress::Stage;
use crate::request::{Options, Outcome};
use crate::transact::{Work, record_change};

impl Engine {
    /// Commit `staged`, then run the post-transaction hooks for what was committed, even when
    /// a later package failed (the commit's error comes first).
    pub(crate) async fn commit_then_hooks(
        &self,
        staged: Vec<Staged>,
        planned: &[Change],
        options: &Options,
        work: &mut Work<'_>,
    ) -> Result<Outcome> {
        let mut post = crate::hooks::Changes::default();
        let result = self
            .commit_all(staged, planned, options, work, &mut post)
            .await;
        let hooked = self
            .run_hooks(crate::hooks::When::PostTransaction, &post, work)
            .await;
        result?;
        hooked?;
        Ok(Outcome {
            changed: work.done.clone(),
            ..Outcome::default()
        })
    }

    /// Commit every staged package, in order; `planned` holds each one's change for `done`.
    /// `post` collects what was committed, for the post-transaction hooks.
    pub(crate) async fn commit_all(
        &self,
        mut staged: Vec<Staged>,
        planned: &[Change],
        options: &Options,
        work: &mut Work<'_>,
        post: &mut crate::hooks::Changes,
    ) -> Result<()> {
        self.prepare_owners(&mut staged, work.tx)?;
        // Check every package before the first one changes the root (each is planned again
        // right before its commit: earlier ones change what it finds).
        let mut claimed: std::collections::HashMap<String, String> = Default::default();
        let mut first_plan = None;
        let mut pre = crate::hooks::Changes::default();
        for s in &mut staged {
            sort_for_commit(&mut s.files);
            let name = s.planned.available.entry.name.clone();
            let plan = self.plan_commit(s, work.tx, options)?;
            record_change(&mut pre, &name, s.planned.old.as_ref(), Some(&plan.records));
            for r in plan.records.iter().filter(|r| !r.is_dir()) {
                if let Some(owner) = claimed.insert(r.path.clone(), name.clone()) {
                    return Err(Error::FileConflict {
                        package: name,
                        path: r.path.clone(),
                        owner,
                    });
                }
            }
            first_plan.get_or_insert(plan);
        }
        self.run_hooks(crate::hooks::When::PreTransaction, &pre, work)
            .await?;
        // Staged bytes must be on disk before renames make them live. `syncfs` writes them as
        // one batch: measured faster than flushing the staged files one by one (see
        // `crate::writeback`).
        let started = std::time::Instant::now();
        crate::commit::sync_filesystem(&self.layout.root.join(&self.staging))
            .map_err(|e| Error::io("syncing staged files", e))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "staged files synced"
        );
        for s in staged {
            if work.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let entry = &s.planned.available.entry;
            let plan = match first_plan.take() {
                Some(p) => p,
                None => self.plan_commit(&s, work.tx, options)?,
            };
            work.reporter.current(&entry.name);
            work.reporter.stage(&entry.name, Stage::Installing, 0, 1);
            let package = InstalledPackage {
                name: entry.name.clone(),
                version: entry.version.clone(),
                kind: entry.kind,
                sha256: entry.sha256.clone(),
                repo: s.planned.available.repo.clone(),
                size: entry.size,
                installed_size: entry.installed_size,
                description: entry.description.clone(),
                installed_at: now(),
                files: Vec::new(),
                broken: None,
            };
            let started = std::time::Instant::now();
            let paths: Vec<FileRecord> = plan.records.clone();
            let notices = self.committer().install(
                work.tx,
                package,
                plan,
                &self.area(work.tx, &entry.name),
            )?;
            record_change(post, &entry.name, s.planned.old.as_ref(), Some(&paths));
            self.remember_build(&s.planned.available);
            tracing::info!(
                package = %entry.name,
                version = %entry.version,
                ms = started.elapsed().as_millis() as u64,
                "committed"
            );
            work.notice_all(notices);
            work.reporter.stage(&entry.name, Stage::Done, 1, 1);
            work.reporter.package_done(&entry.name, &entry.version);
            if let Some(change) = planned.iter().find(|c| c.name == entry.name) {
                work.done.push(change.clone());
            }
        }
        Ok(())
    }

    /// Plan the commit of one staged package against the live root as it is now.
    fn plan_commit(&self, s: &Staged, tx: u64, options: &Options) -> Result<Plan> {
        let name = &s.planned.available.entry.name;
        let mut live = Live::open(&self.layout.root)
            .map_err(|e| Error::io(format!("opening {}", self.layout.root.display()), e))?;
        let area = self.area(tx, name);
        let tree = format!("{area}/tree");
        let staging_mount = live.mount_of(&tree).map_err(|e| {
            Error::io(
                format!("{name}: finding the file system of {tree}"),
                e.into(),
            )
        })?;
        let owners = self.db.ownership()?;
        let input = commit_plan::Input {
            name,
            records: &s.files,
            old: s.planned.old.as_ref(),
            tree: &tree,
            area: &area,
            tx,
            adopt: options.adopt,
            force: options.force,
        };
        commit_plan::plan(&input, &mut live, &owners, staging_mount)
    }

    /// Before anything is committed: create the system users and groups the staged packages
    /// declare (`usr/lib/sysusers.d/*.conf`) in the target root, then give the staged files
    /// the owners their archives name, resolved in the target root, and the capabilities their
    /// index entries list.
    fn prepare_owners(&self, staged: &mut [Staged], tx: u64) -> Result<()> {
        let options = crate::sysusers::Options {
            use_target_tool: true,
            ..Default::default()
        };
        let root = &self.layout.root;
        for s in staged.iter() {
            let name = &s.planned.available.entry.name;
            let confs = self.sysusers_confs(s, tx)?;
            if confs.is_empty() {
                continue;
            }
            let applied =
                crate::sysusers::apply(root, &confs, &options).map_err(|e| e.into_engine(name))?;
            if !applied.is_empty() {
                tracing::info!(package = %name, "{applied}");
            }
        }
        if staged
            .iter()
            .all(|s| s.owners.is_empty() && s.planned.available.entry.capabilities.is_empty())
        {
            return Ok(());
        }
        let accounts = crate::sysusers::Accounts::load(root)
            .map_err(|e| e.into_engine("(accounts of the target root)"))?;
        for s in staged.iter_mut() {
            let entry = &s.planned.available.entry;
            let tree = root.join(self.area(tx, &entry.name)).join("tree");
            let mut tree = crate::live::Tree::open(&tree)
                .map_err(|e| Error::io(format!("opening {}", tree.display()), e))?;
            crate::ownership::apply(&mut tree, entry, &mut s.files, &s.owners, &accounts)?;
        }
        Ok(())
    }

    /// The sysusers.d files a staged package ships: (file name, content).
    fn sysusers_confs(&self, s: &Staged, tx: u64) -> Result<Vec<(String, String)>> {
        const MAX_CONF: u64 = 1 << 20;
        let entry = &s.planned.available.entry;
        let mut confs = Vec::new();
        let mut tree = None;
        for r in &s.files {
            let Some(file) = ["usr/lib/sysusers.d/", "lib/sysusers.d/"]
                .iter()
                .find_map(|d| r.path.strip_prefix(d))
                .filter(|f| f.ends_with(".conf") && !f.contains('/'))
            else {
                continue;
            };
            if !matches!(r.kind, crate::manifest::FileKind::File { size, .. } if size <= MAX_CONF) {
                continue;
            }
            let dir = self
                .layout
                .root
                .join(self.area(tx, &entry.name))
                .join("tree");
            let tree = match &mut tree {
                Some(t) => t,
                None => tree.insert(
                    crate::live::Tree::open(&dir)
                        .map_err(|e| Error::io(format!("opening {}", dir.display()), e))?,
                ),
            };
            let mut text = String::new();
            use std::io::Read;
            tree.open_file(&r.path)
                .map_err(std::io::Error::from)
                .and_then(|f| f.take(MAX_CONF).read_to_string(&mut text))
                .map_err(|e| Error::io(format!("{}: reading {}", entry.name, r.path), e))?;
            confs.push((file.to_owned(), text));
        }
        Ok(confs)
    }

    /// Remember a committed build (what rollback goes back to); a failure is only logged.
    fn remember_build(&self, available: &Available) {
        let builds = crate::builds::Builds { db: &self.db };
        if let Err(e) = builds.remember(available) {
            tracing::warn!(package = %available.entry.name, error = %e, "could not remember the build");
        }
    }
}
