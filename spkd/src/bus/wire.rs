//! Where the engine's vocabulary meets the wire's: engine values become spk-dbus's typed rows
//! and words, and the options and kinds callers send become engine requests. The words
//! themselves are spelled once, in spk-dbus.

use spk_dbus::{
    Activity, ChangeAction, ChangeOptions, HistoryChange, HistoryRow, HookState, Kind, NoticeKind,
    PackageRow, PackageState, PlannedChange, PreparedRow, Problem, ProblemKind, RepositoryRow,
    State,
};
use spk_engine::db::{HistoryEntry, HistoryState};
use spk_engine::integrity::ProblemKind as EngineProblem;
use spk_engine::notice::{Notice as EngineNotice, NoticeKind as EngineNoticeKind};
use spk_engine::offline::PreparedUpdate;
use spk_engine::{Action, Change, Options, PackageInfo, RepoInfo, Stage, TxState};
use spk_engine::{HookState as EngineHookState, PackageState as EnginePackageState};

use super::errors::BusError;

pub fn kind(action: Action) -> Kind {
    match action {
        Action::Refresh => Kind::Refresh,
        Action::Install => Kind::Install,
        Action::Upgrade => Kind::Upgrade,
        Action::Remove => Kind::Remove,
        Action::Rollback => Kind::Rollback,
        Action::ApplyPrepared => Kind::OfflineUpdate,
    }
}

pub fn action(kind: Kind) -> Action {
    match kind {
        Kind::Refresh => Action::Refresh,
        Kind::Install => Action::Install,
        Kind::Upgrade => Action::Upgrade,
        Kind::Remove => Action::Remove,
        Kind::Rollback => Action::Rollback,
        Kind::OfflineUpdate => Action::ApplyPrepared,
    }
}

pub fn options(o: ChangeOptions) -> Options {
    Options {
        reinstall: o.reinstall,
        download_only: o.download_only,
        dry_run: o.dry_run,
        force: o.force,
        adopt: o.adopt,
        undo: o.undo,
        offline: o.offline,
    }
}

pub fn state(s: TxState) -> State {
    match s {
        TxState::Queued => State::Queued,
        TxState::Resolving => State::Resolving,
        TxState::Downloading => State::Downloading,
        TxState::Installing => State::Installing,
        TxState::Finished => State::Finished,
        TxState::Failed => State::Failed,
        TxState::Cancelled => State::Cancelled,
    }
}

pub fn activity(s: Stage) -> Activity {
    match s {
        Stage::Waiting => Activity::Waiting,
        Stage::Downloading => Activity::Downloading,
        Stage::Cached => Activity::Cached,
        Stage::Unpacking => Activity::Unpacking,
        Stage::Unpacked => Activity::Unpacked,
        Stage::Installing => Activity::Installing,
        Stage::Removing => Activity::Removing,
        Stage::Done => Activity::Done,
    }
}

pub fn notice(n: EngineNotice) -> spk_dbus::Notice {
    let kind = match n.kind {
        EngineNoticeKind::Spknew => NoticeKind::Spknew,
        EngineNoticeKind::Spksave => NoticeKind::Spksave,
        EngineNoticeKind::MountPoint => NoticeKind::MountPoint,
        EngineNoticeKind::LeftBehind => NoticeKind::LeftBehind,
        EngineNoticeKind::Hook => NoticeKind::Hook,
        EngineNoticeKind::Held => NoticeKind::Held,
        EngineNoticeKind::StaleIndex => NoticeKind::StaleIndex,
    };
    spk_dbus::Notice {
        package: n.package,
        kind,
        path: n.path,
        message: n.message,
    }
}

pub fn hook_state(s: EngineHookState) -> HookState {
    match s {
        EngineHookState::Running => HookState::Running,
        EngineHookState::Succeeded => HookState::Succeeded,
        EngineHookState::Failed => HookState::Failed,
        EngineHookState::Skipped => HookState::Skipped,
        EngineHookState::TimedOut => HookState::TimedOut,
    }
}

fn problem_kind(k: EngineProblem) -> ProblemKind {
    match k {
        EngineProblem::Missing => ProblemKind::Missing,
        EngineProblem::Content => ProblemKind::Content,
        EngineProblem::Mode => ProblemKind::Mode,
        EngineProblem::Type => ProblemKind::Type,
        EngineProblem::Target => ProblemKind::Target,
        EngineProblem::Owner => ProblemKind::Owner,
        EngineProblem::Caps => ProblemKind::Caps,
        EngineProblem::Unreadable => ProblemKind::Unreadable,
        EngineProblem::Config => ProblemKind::Config,
    }
}

pub fn problem(p: spk_engine::integrity::Problem) -> Problem {
    Problem {
        package: p.package,
        path: p.path,
        kind: problem_kind(p.kind),
        problem: p.problem,
    }
}

/// A word the engine produced that the contract does not know: a bug, reported as one.
fn unknown(what: &str, word: &str) -> BusError {
    BusError::Io(format!("internal error: spkd has no {what} word '{word}'"))
}

pub fn package(p: PackageInfo) -> PackageRow {
    PackageRow {
        state: match p.state {
            EnginePackageState::Available => PackageState::Available,
            EnginePackageState::Installed => PackageState::Installed,
            EnginePackageState::Upgradable => PackageState::Upgradable,
            EnginePackageState::Broken => PackageState::Broken,
        },
        name: p.name,
        kind: p.kind,
        installed_version: p.installed_version,
        available_version: p.available_version,
        size: p.size,
        installed_size: p.installed_size,
        description: p.description,
        repo: p.repo,
        verified_by: p.verified_by,
        files: p.files,
        problem: p.problem,
        capabilities: p.capabilities,
        held: p.held,
    }
}

pub fn planned(c: Change) -> Result<PlannedChange, BusError> {
    Ok(PlannedChange {
        action: c
            .action()
            .parse::<ChangeAction>()
            .map_err(|_| unknown("change", c.action()))?,
        name: c.name,
        from: c.from,
        to: c.to,
        download: c.download,
        installed_size: c.installed_size,
    })
}

pub fn history(h: HistoryEntry) -> Result<HistoryRow, BusError> {
    Ok(HistoryRow {
        kind: h
            .action
            .parse::<Kind>()
            .map_err(|_| unknown("history kind", &h.action))?,
        state: match h.state {
            HistoryState::Finished => State::Finished,
            HistoryState::Failed => State::Failed,
            HistoryState::Cancelled => State::Cancelled,
        },
        id: h.id,
        started: h.started,
        finished: h.finished,
        uid: h.uid,
        packages: h.names,
        error: h.error,
        changes: h.changes.into_iter().map(history_change).collect(),
    })
}

fn history_change(c: Change) -> HistoryChange {
    HistoryChange {
        name: c.name,
        from: c.from,
        to: c.to,
    }
}

pub fn prepared(p: Option<PreparedUpdate>) -> PreparedRow {
    let Some(p) = p else {
        return PreparedRow::default();
    };
    PreparedRow {
        prepared_at: p.prepared_at,
        changes: p.changes.into_iter().map(history_change).collect(),
        installed_size: p.installed_size,
        stale: p.stale,
    }
}

pub fn repository(r: RepoInfo) -> RepositoryRow {
    RepositoryRow {
        name: r.name,
        kind: r.kind,
        location: r.location,
        release: r.release,
        timestamp: r.published,
        signed: r.signed,
        proxy: r.proxy,
    }
}
