//! How a running transaction looks: progress bars on a terminal, plain lines otherwise, nothing
//! in JSON mode (the result is printed whole at the end). Every mode keeps the same account of
//! the packages (what each goes through, where its bytes came from), which the summary line
//! reads: bytes taken from the cache are shown and counted as such, never as downloaded.
//!
//! On a terminal: one line per package (`waiting`, `downloading` or `cached`, `unpacking`,
//! `unpacked`, `installing`, `done`; a removal `waiting`, `removing`, `done`) with its bytes and,
//! while they move, their rate and time left; below them the total line (elapsed time, packages
//! done, bytes, overall rate and time left). Rates are spkctl's own measure ([`Rate`]).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use spk_dbus::{Activity, HookState, Kind};

use crate::rate::{Rate, clock};

/// Where the figures go.
enum Out {
    Bars {
        multi: MultiProgress,
        /// The whole transaction, below the packages.
        overall: Option<ProgressBar>,
        /// Terminal columns when the display started; narrow terminals get short lines.
        width: usize,
        /// While a question is asked the bars are hidden; the lines printed meanwhile wait here.
        held: Option<Vec<String>>,
    },
    Plain,
    Quiet,
}

/// One package as the display knows it.
struct Package {
    name: String,
    activity: Activity,
    /// Bytes of its tarball streamed so far.
    done: u64,
    /// Its tarball's size (0: a removal, or not known).
    size: u64,
    /// Its bytes came (or come) from the download cache.
    from_cache: bool,
    /// A stream of it was seen (`downloading` or `cached`), so `from_cache` is known.
    streamed: bool,
    rate: Rate,
    /// What became of it: "installed 1".
    outcome: Option<String>,
    bar: Option<ProgressBar>,
}

pub struct Display {
    out: Out,
    kind: Option<Kind>,
    packages: Vec<Package>,
    /// Packages the transaction is known to change (more may show up).
    expected: usize,
    percentage: u32,
    bytes_done: u64,
    bytes_total: u64,
    rate: Rate,
    started: Instant,
}

/// `257.32 KiB`. Never four digits before the point (`1021.95 KiB` is `1.00 MiB`), so that a
/// column of figures keeps its width and reads at a glance.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// What the bytes of a transaction were: (downloaded, taken from the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    pub downloaded: u64,
    pub cached: u64,
}

impl Display {
    pub fn new(json: bool, no_progress: bool) -> Display {
        let color_ok = std::env::var_os("NO_COLOR").is_none();
        let out = if json {
            Out::Quiet
        } else if !no_progress && color_ok && std::io::stderr().is_terminal() {
            Out::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
                overall: None,
                width: stderr_width(),
                held: None,
            }
        } else {
            Out::Plain
        };
        Display::with(out)
    }

    /// Shows nothing (but still keeps the account).
    pub fn quiet() -> Display {
        Display::with(Out::Quiet)
    }

    fn with(out: Out) -> Display {
        Display {
            out,
            kind: None,
            packages: Vec::new(),
            expected: 0,
            percentage: 0,
            bytes_done: 0,
            bytes_total: 0,
            rate: Rate::default(),
            started: Instant::now(),
        }
    }

    /// What the followed transaction does, and how many packages it is known to change.
    pub fn follow(&mut self, kind: Kind, packages: usize) {
        self.kind = Some(kind);
        self.expected = packages;
    }

    fn removes(&self) -> bool {
        self.kind == Some(Kind::Remove)
    }

    fn index(&mut self, name: &str) -> usize {
        match self.packages.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.packages.push(Package {
                    name: name.to_owned(),
                    activity: Activity::Waiting,
                    done: 0,
                    size: 0,
                    from_cache: false,
                    streamed: false,
                    rate: Rate::default(),
                    outcome: None,
                    bar: None,
                });
                self.packages.len() - 1
            }
        }
    }

    /// A `Progress(package, stage, done, total)` signal.
    pub fn progress(&mut self, package: &str, activity: Activity, done: u64, total: u64) {
        let removes = self.removes() || activity == Activity::Removing;
        let i = self.index(package);
        let p = &mut self.packages[i];
        let changed = p.activity != activity;
        p.activity = activity;
        if activity.is_streaming() {
            p.from_cache = activity == Activity::Cached;
            p.streamed = true;
            p.size = total;
            p.done = done;
            p.rate.sample(Instant::now(), done);
        } else {
            p.rate.stop();
            if activity == Activity::Waiting && !removes {
                p.size = total;
            } else if matches!(activity, Activity::Unpacking | Activity::Unpacked) {
                // A monitor may meet the package here first: these carry its size too.
                if p.size == 0 {
                    p.size = total;
                }
                p.done = p.size.max(done);
            }
        }
        if changed && let Out::Plain = self.out {
            let size = human_bytes(p.size);
            let line = match activity {
                Activity::Downloading => Some(format!("{package}: downloading {size}")),
                Activity::Cached => Some(format!("{package}: {size} from the cache")),
                Activity::Waiting | Activity::Done => None,
                other => Some(format!("{package}: {other}")),
            };
            if let Some(line) = line {
                println!("{line}");
            }
        }
        self.draw_package(i, changed);
        self.draw_total();
    }

    /// The whole transaction: spkd's `Percentage`, `BytesDone` and `BytesTotal`.
    pub fn overall(&mut self, percentage: u32, bytes_done: u64, bytes_total: u64) {
        self.percentage = percentage.min(100);
        self.bytes_done = bytes_done;
        self.bytes_total = bytes_total;
        self.rate.sample(Instant::now(), bytes_done);
        self.draw_total();
    }

    /// Redraw what changes with time alone (elapsed time, rates of streams that stopped).
    pub fn tick(&mut self) {
        if let Out::Bars { .. } = self.out {
            for i in 0..self.packages.len() {
                if self.packages[i].activity.is_streaming() {
                    self.draw_package(i, false);
                }
            }
            self.draw_total();
        }
    }

    /// Whether [`Display::overall`] shows anything (only bars do).
    pub fn has_bars(&self) -> bool {
        matches!(self.out, Out::Bars { .. })
    }

    /// A `PackageDone(name, version)` signal: `verb` is what happened ("installed").
    pub fn package_done(&mut self, verb: &str, name: &str, version: &str) {
        let i = self.index(name);
        let p = &mut self.packages[i];
        p.activity = Activity::Done;
        p.rate.stop();
        p.outcome = Some(format!("{verb} {version}"));
        if let Out::Plain = self.out {
            println!("{verb} {name} {version}");
        }
        self.draw_package(i, true);
        self.draw_total();
    }

    /// Packages that ended `done` without a `PackageDone`: fetched into the cache only.
    pub fn fetched(&self) -> Vec<String> {
        self.packages
            .iter()
            .filter(|p| p.activity == Activity::Done && p.outcome.is_none())
            .map(|p| p.name.clone())
            .collect()
    }

    /// Where the transaction's `bytes_total` streamed bytes came from: those of packages seen
    /// streaming from the cache are cached, the rest downloaded (a monitor that joined after a
    /// package's stream counts it as downloaded).
    pub fn transfer(&self, bytes_total: u64) -> Transfer {
        let cached: u64 = self
            .packages
            .iter()
            .filter(|p| p.streamed && p.from_cache)
            .map(|p| p.size)
            .sum();
        let seen: u64 = self.packages.iter().map(|p| p.size).sum();
        Transfer {
            downloaded: bytes_total.max(seen).saturating_sub(cached),
            cached,
        }
    }

    fn done_count(&self) -> usize {
        self.packages
            .iter()
            .filter(|p| p.activity == Activity::Done)
            .count()
    }

    /// Draw package `i`; `changed`: it entered another stage.
    fn draw_package(&mut self, i: usize, changed: bool) {
        let removes = self.removes();
        let Out::Bars {
            multi,
            overall,
            width,
            ..
        } = &mut self.out
        else {
            return;
        };
        let p = &mut self.packages[i];
        let fresh = p.bar.is_none();
        let bar = p.bar.get_or_insert_with(|| unshown_bar(*width)).clone();
        let narrow = *width < NARROW;
        let (len, pos) = if removes || p.size == 0 {
            (1, u64::from(p.activity == Activity::Done))
        } else if p.activity.is_streaming() || p.activity == Activity::Waiting {
            (p.size, p.done.min(p.size))
        } else {
            (p.size, p.size)
        };
        let phase = p.activity.as_str();
        // Words first, then the figures that draw the bar: a bar is never drawn without them.
        if narrow {
            bar.set_prefix(format!("{} {phase}", p.name));
        } else {
            bar.set_prefix(format!("{:>16} {phase:<11}", p.name));
            let mut tail = String::new();
            if !removes && p.size > 0 {
                tail = format!(
                    "{:>21}",
                    format!("{}/{}", human_bytes(pos), human_bytes(p.size))
                );
                let extra = if p.activity.is_streaming() {
                    p.rate.text(Instant::now(), p.size.saturating_sub(p.done))
                } else if p.streamed && p.from_cache && p.activity != Activity::Waiting {
                    "from cache".to_owned()
                } else {
                    String::new()
                };
                if !extra.is_empty() {
                    tail.push(' ');
                    tail.push_str(&extra);
                }
            }
            if let Some(outcome) = &p.outcome {
                tail.push_str(if tail.is_empty() { "" } else { ", " });
                tail.push_str(outcome);
            }
            bar.set_message(format!("{tail:<TAIL$}"));
        }
        bar.set_length(len);
        bar.set_position(pos);
        if fresh {
            // Shown once it has its words and figures, above the overall line.
            match overall {
                Some(o) => multi.insert_before(o, bar.clone()),
                None => multi.add(bar.clone()),
            };
        }
        if p.activity == Activity::Done && !bar.is_finished() {
            bar.finish();
        } else if changed {
            // A new stage is drawn at once, however short: the draw rate limit would skip it.
            bar.force_draw();
        }
    }

    fn draw_total(&mut self) {
        let moving = self.packages.iter().any(|p| p.activity.is_streaming());
        let known = self.expected.max(self.packages.len());
        let done = self.done_count();
        let elapsed = clock(self.started.elapsed());
        let Out::Bars {
            multi,
            overall,
            width,
            ..
        } = &mut self.out
        else {
            return;
        };
        let fresh = overall.is_none();
        let bar = overall.get_or_insert_with(|| unshown_bar(*width)).clone();
        bar.set_length(100);
        let count = if known == 0 {
            String::new()
        } else {
            format!("{done} of {known} done")
        };
        if *width < NARROW {
            bar.set_prefix(format!("total {elapsed} {count}"));
            bar.set_position(u64::from(self.percentage));
            if fresh {
                multi.add(bar);
            }
            return;
        }
        bar.set_prefix(format!("{:>16} {count:<11}", format!("total {elapsed}")));
        let mut tail = String::new();
        if self.bytes_total > 0 {
            tail = format!(
                "{:>21}",
                format!(
                    "{}/{}",
                    human_bytes(self.bytes_done),
                    human_bytes(self.bytes_total)
                )
            );
            let rate = if moving {
                self.rate.text(
                    Instant::now(),
                    self.bytes_total.saturating_sub(self.bytes_done),
                )
            } else {
                String::new()
            };
            if !rate.is_empty() {
                tail.push(' ');
                tail.push_str(&rate);
            }
        }
        bar.set_message(format!("{tail:<TAIL$}"));
        bar.set_position(u64::from(self.percentage));
        if fresh {
            multi.add(bar);
        }
    }

    /// A transaction hook: a line when it starts, what it printed when it ends (indented), and
    /// how it ended unless it succeeded.
    pub fn hook(&mut self, description: &str, state: HookState, output: &str) {
        let mut lines = Vec::new();
        match state {
            HookState::Running => lines.push(format!("running hook: {description}")),
            HookState::Succeeded => {}
            HookState::Skipped if output.is_empty() => {
                lines.push("  (skipped: its tool is not installed)".to_owned())
            }
            other => lines.push(format!("  hook {other}")),
        }
        if state != HookState::Running {
            lines.extend(
                output
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("  {l}")),
            );
        }
        for line in lines {
            match self.out {
                Out::Bars { .. } => self.bars_line(line),
                Out::Plain => println!("{line}"),
                Out::Quiet => {}
            }
        }
    }

    /// A line above the bars (held back while they are hidden).
    fn bars_line(&mut self, line: String) {
        if let Out::Bars { multi, held, .. } = &mut self.out {
            match held {
                Some(held) => held.push(line),
                None => {
                    let _ = multi.println(line);
                }
            }
        }
    }

    /// Clear what is drawn (before a question, when nothing is following the figures).
    pub fn suspend(&mut self) {
        if let Out::Bars { multi, .. } = &self.out {
            let _ = multi.clear();
        }
    }

    /// Take the bars off the screen while a question is asked: they keep following the
    /// transaction out of sight until [`Display::show`].
    pub fn hide(&mut self) {
        let drawn = !self.packages.is_empty();
        if let Out::Bars {
            multi,
            held,
            overall,
            ..
        } = &mut self.out
            && held.is_none()
        {
            if drawn || overall.is_some() {
                // The terminal echoed Ctrl-C as `^C` after the last bar line, which indicatif
                // fills to the right margin: the echo went to a line of its own below the bars.
                // Wipe it and go back up, so that clearing takes the bars' lines.
                if ctrl_c_echoed() {
                    eprint!("\r\x1b[2K\x1b[1A");
                }
            }
            let _ = multi.clear();
            multi.set_draw_target(ProgressDrawTarget::hidden());
            *held = Some(Vec::new());
        }
    }

    /// Draw the bars again, with their current figures, below the lines held back meanwhile.
    pub fn show(&mut self) {
        if let Out::Bars { multi, held, .. } = &mut self.out
            && let Some(lines) = held.take()
        {
            multi.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            for line in lines {
                let _ = multi.println(line);
            }
        }
    }

    /// The transaction ended: when it `succeeded` the bars stay with their last figures, else
    /// they are removed so that the error is the last thing on screen.
    pub fn finish(&mut self, succeeded: bool) {
        self.show();
        for p in &mut self.packages {
            p.rate.stop();
        }
        self.rate.stop();
        if succeeded {
            // spkd sets 100 % as it finishes; its announcement may still be on its way.
            self.percentage = 100;
            self.bytes_done = self.bytes_total;
            for i in 0..self.packages.len() {
                self.draw_package(i, false);
            }
            self.draw_total();
        }
        let bars: Vec<ProgressBar> = self.packages.iter().filter_map(|p| p.bar.clone()).collect();
        if let Out::Bars { multi, overall, .. } = &mut self.out {
            for bar in bars.iter().chain(overall.iter()) {
                if !bar.is_finished() {
                    if succeeded {
                        bar.finish();
                    } else {
                        bar.abandon();
                    }
                }
            }
            if !succeeded {
                let _ = multi.clear();
            } else if !bars.is_empty() || overall.is_some() {
                // The last line drawn may fill the terminal's width, the cursor still on it:
                // what follows starts on a line of its own.
                eprintln!();
            }
        }
    }
}

/// Below this many columns the byte counts, rate and time left do not fit beside a useful bar.
const NARROW: usize = 80;

/// Columns of the figures right of a bar (`128.00 KiB/256.00 KiB 160.00 KiB/s, 0:01 left`),
/// kept the same as they change so that the bar does not change its width.
const TAIL: usize = 47;

/// Every line: its prefix (name and stage, or the total's elapsed time and count), then on a
/// wide terminal the bar and the figures spkctl formats itself.
fn template(width: usize) -> &'static str {
    if width < NARROW {
        "{prefix} {percent:>3}%"
    } else {
        "{prefix} [{wide_bar}] {msg}"
    }
}

/// A bar drawn nowhere until it is added to the display's [`MultiProgress`].
fn unshown_bar(width: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::hidden());
    bar.set_style(style(template(width)));
    bar
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Whether the terminal shows a typed Ctrl-C (as `^C`).
fn ctrl_c_echoed() -> bool {
    use rustix::termios::LocalModes;
    rustix::termios::tcgetattr(rustix::stdio::stdin()).is_ok_and(|t| {
        t.local_modes
            .contains(LocalModes::ECHO | LocalModes::ECHOCTL | LocalModes::ISIG)
    })
}

/// Columns of the terminal the bars are drawn on (stderr).
fn stderr_width() -> usize {
    if let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stderr())
        && ws.ws_col > 0
    {
        return usize::from(ws.ws_col);
    }
    NARROW
}
