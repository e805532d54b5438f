//! Progress of a transaction as events for whoever watches it (the D-Bus layer turns them into
//! properties and signals). The overall percentage weighs the streaming phase (download, verify,
//! unpack: 90 %) and the commits (10 %), and never goes down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Queued,
    Resolving,
    Downloading,
    Installing,
    Finished,
    Failed,
    Cancelled,
}

impl TxState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Queued => "queued",
            TxState::Resolving => "resolving",
            TxState::Downloading => "downloading",
            TxState::Installing => "installing",
            TxState::Finished => "finished",
            TxState::Failed => "failed",
            TxState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TxState::Finished | TxState::Failed | TxState::Cancelled
        )
    }
}

/// What a package is going through, as named in `Progress` signals. A package installs
/// `Waiting → Downloading | Cached → Unpacking → Unpacked → Installing → Done` (download-only:
/// `Waiting → Downloading | Cached → Done`) and is removed `Waiting → Removing → Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Planned; its turn has not come yet.
    Waiting,
    /// Its bytes come from the network (done/total: bytes of the tarball).
    Downloading,
    /// Its bytes come from the download cache: nothing is downloaded.
    Cached,
    /// Every byte is in; the decoder and unpacker finish the last of them.
    Unpacking,
    /// Verified and unpacked into staging; waits for its commit.
    Unpacked,
    Installing,
    Removing,
    /// Committed, removed, or (download-only) in the cache.
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Downloading => "downloading",
            Stage::Cached => "cached",
            Stage::Unpacking => "unpacking",
            Stage::Unpacked => "unpacked",
            Stage::Installing => "installing",
            Stage::Removing => "removing",
            Stage::Done => "done",
        }
    }
}

/// Where a transaction hook is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    Running,
    Succeeded,
    Failed,
    /// Not run: its tool is missing, or the target cannot run it.
    Skipped,
    /// Killed after `hook_timeout`.
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    State(TxState),
    /// The transaction took the root: [`crate::Engine::busy`] is true from now until it ends.
    RootTaken,
    Progress {
        package: String,
        stage: Stage,
        done: u64,
        total: u64,
    },
    Overall {
        percentage: u32,
        bytes_done: u64,
        bytes_total: u64,
    },
    Current(String),
    PackageDone {
        name: String,
        version: String,
    },
    /// Something the admin should know although nothing failed.
    Notice(crate::notice::Notice),
    /// A transaction hook started or ended, with the end of what it printed.
    Hook {
        name: String,
        description: String,
        state: HookState,
        output: String,
    },
}

#[derive(Default)]
struct Totals {
    bytes: HashMap<String, (u64, u64)>,
    commits_done: u32,
    commits_total: u32,
    last_percentage: u32,
}

impl Totals {
    fn percentage(&mut self) -> (u32, u64, u64) {
        let done: u64 = self.bytes.values().map(|(d, _)| *d).sum();
        let total: u64 = self.bytes.values().map(|(_, t)| *t).sum();
        let commit_share = if self.commits_total == 0 {
            0.0
        } else {
            f64::from(self.commits_done) / f64::from(self.commits_total)
        };
        let pct = if total == 0 {
            100.0 * commit_share
        } else {
            90.0 * (done as f64 / total as f64).min(1.0) + 10.0 * commit_share
        };
        // 100 is only reached by `finish`; until then the work is not done.
        let pct = (pct as u32).min(99).max(self.last_percentage);
        self.last_percentage = pct;
        (pct, done, total)
    }
}

/// Sends a transaction's events; cheap to clone into concurrent package tasks.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Event>,
    totals: Arc<Mutex<Totals>>,
}

impl Reporter {
    pub fn new() -> (Reporter, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Reporter {
                tx,
                totals: Arc::default(),
            },
            rx,
        )
    }

    fn send(&self, event: Event) {
        // A watcher that went away is not the transaction's problem.
        let _ = self.tx.send(event);
    }

    pub fn state(&self, state: TxState) {
        self.send(Event::State(state));
    }

    pub fn root_taken(&self) {
        self.send(Event::RootTaken);
    }

    pub fn current(&self, name: &str) {
        self.send(Event::Current(name.to_owned()));
    }

    /// Announce the work: bytes to stream per package, and how many commits follow.
    pub fn plan(&self, streams: &[(String, u64)], commits: usize) {
        let mut t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, size) in streams {
            t.bytes.insert(name.clone(), (0, *size));
        }
        t.commits_total = u32::try_from(commits).unwrap_or(u32::MAX);
        drop(t);
        self.overall();
    }

    fn overall(&self) {
        let (percentage, bytes_done, bytes_total) = self
            .totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .percentage();
        self.send(Event::Overall {
            percentage,
            bytes_done,
            bytes_total,
        });
    }

    pub fn package(&self, name: &str, total: u64) -> PackageProgress {
        PackageProgress {
            reporter: self.clone(),
            name: name.to_owned(),
            total,
            from_cache: AtomicBool::new(false),
            unpacking: AtomicBool::new(false),
        }
    }

    /// One package committed (or removed): `PackageDone` and the commit share of the percentage.
    pub fn package_done(&self, name: &str, version: &str) {
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .commits_done += 1;
        self.send(Event::PackageDone {
            name: name.to_owned(),
            version: version.to_owned(),
        });
        self.overall();
    }

    pub fn hook(&self, name: &str, description: &str, state: HookState, output: &str) {
        self.send(Event::Hook {
            name: name.to_owned(),
            description: description.to_owned(),
            state,
            output: output.to_owned(),
        });
    }

    pub fn notice(&self, notice: crate::notice::Notice) {
        self.send(Event::Notice(notice));
    }

    pub fn stage(&self, name: &str, stage: Stage, done: u64, total: u64) {
        self.send(Event::Progress {
            package: name.to_owned(),
            stage,
            done,
            total,
        });
    }
}

/// Progress of one package's stream.
pub struct PackageProgress {
    reporter: Reporter,
    name: String,
    total: u64,
    /// The bytes come from the download cache (else from the network).
    from_cache: AtomicBool,
    /// `Unpacking` was announced for the current stream.
    unpacking: AtomicBool,
}

impl PackageProgress {
    /// The stage its bytes are in while they stream: from the cache or the network.
    fn streaming(&self) -> Stage {
        if self.from_cache.load(Ordering::Relaxed) {
            Stage::Cached
        } else {
            Stage::Downloading
        }
    }

    /// Announce the package's stream before its first byte (a stalled server shows too):
    /// `from_cache` says where the bytes come from.
    pub fn start(&self, from_cache: bool) {
        self.from_cache.store(from_cache, Ordering::Relaxed);
        self.unpacking.store(false, Ordering::Relaxed);
        self.reporter
            .stage(&self.name, self.streaming(), 0, self.total);
    }

    /// Every byte is in; the unpacker finishes (announced once per stream).
    pub fn unpacking(&self) {
        if !self.unpacking.swap(true, Ordering::Relaxed) {
            self.reporter
                .stage(&self.name, Stage::Unpacking, self.total, self.total);
        }
    }

    /// The stream ended and passed every check: staged (`unpacked`), or in the cache for a
    /// download-only transaction (`done`).
    pub fn finished(&self, stage: Stage) {
        self.reporter
            .stage(&self.name, stage, self.total, self.total);
    }

    pub fn bytes(&self, done: u64) {
        {
            let mut t = self
                .reporter
                .totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = t.bytes.entry(self.name.clone()).or_insert((0, self.total));
            if entry.0 == done {
                return;
            }
            entry.0 = done;
        }
        if !self.unpacking.load(Ordering::Relaxed) {
            self.reporter
                .stage(&self.name, self.streaming(), done, self.total);
        }
        self.reporter.overall();
    }

    /// The stream starts over (damaged cache entry): the package's bytes count from zero again;
    /// the overall percentage holds until they catch up.
    pub fn restart(&self) {
        let mut t = self
            .reporter
            .totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        t.bytes.insert(self.name.clone(), (0, self.total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentage_never_decreases() {
        let (r, mut rx) = Reporter::new();
        r.plan(&[("a".into(), 100), ("b".into(), 100)], 2);
        let a = r.package("a", 100);
        a.bytes(100);
        a.restart();
        a.bytes(10);
        r.package_done("a", "1");
        let mut last = 0;
        while let Ok(ev) = rx.try_recv() {
            if let Event::Overall { percentage, .. } = ev {
                assert!(percentage >= last, "{percentage} < {last}");
                last = percentage;
            }
        }
        assert!((45..100).contains(&last), "{last}");
    }

    #[test]
    fn a_stream_says_where_its_bytes_come_from_and_when_they_are_all_in() {
        let (r, mut rx) = Reporter::new();
        let a = r.package("a", 100);
        a.start(true);
        a.bytes(50);
        a.bytes(100);
        a.unpacking();
        a.unpacking();
        a.finished(Stage::Unpacked);
        let mut stages = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if let Event::Progress { stage, done, .. } = ev {
                stages.push((stage, done));
            }
        }
        assert_eq!(
            stages,
            [
                (Stage::Cached, 0),
                (Stage::Cached, 50),
                (Stage::Cached, 100),
                (Stage::Unpacking, 100),
                (Stage::Unpacked, 100),
            ]
        );
    }
}
