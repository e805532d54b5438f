//! How a running transaction looks: progress bars on a terminal, plain lines otherwise, nothing
//! in JSON mode (the result is printed whole at the end).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use spk_dbus::{Activity, HookState};

pub enum Display {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
        /// The whole transaction (percentage and bytes, from spkd), below the packages.
        overall: Option<ProgressBar>,
        /// Terminal columns when the display started; narrow terminals get short lines.
        width: usize,
        /// While a question is asked the bars are hidden; the lines printed meanwhile wait here.
        held: Option<Vec<String>>,
    },
    Plain {
        seen: HashMap<String, Activity>,
    },
    Quiet,
}

pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

impl Display {
    pub fn new(json: bool, no_progress: bool) -> Display {
        let color_ok = std::env::var_os("NO_COLOR").is_none();
        if json {
            Display::Quiet
        } else if !no_progress && color_ok && std::io::stderr().is_terminal() {
            Display::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
                bars: HashMap::new(),
                overall: None,
                width: stderr_width(),
                held: None,
            }
        } else {
            Display::Plain {
                seen: HashMap::new(),
            }
        }
    }

    pub fn progress(&mut self, package: &str, activity: Activity, done: u64, total: u64) {
        match self {
            Display::Bars {
                multi,
                bars,
                overall,
                width,
                ..
            } => {
                let bar = bars.entry(package.to_owned()).or_insert_with(|| {
                    let bar = match overall {
                        // Packages above the overall line.
                        Some(o) => multi.insert_before(o, ProgressBar::new(total)),
                        None => multi.add(ProgressBar::new(total)),
                    };
                    bar.set_style(style(package_template(*width)));
                    bar.set_prefix(package.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                if activity == Activity::Downloading {
                    bar.set_length(total);
                    bar.set_position(done);
                } else {
                    bar.set_position(bar.length().unwrap_or(0));
                }
                bar.set_message(activity.as_str());
            }
            Display::Plain { seen } => {
                if seen.get(package) != Some(&activity) {
                    seen.insert(package.to_owned(), activity);
                    if activity == Activity::Downloading {
                        println!("{package}: downloading {}", human_bytes(total));
                    } else {
                        println!("{package}: {activity}");
                    }
                }
            }
            Display::Quiet => {}
        }
    }

    /// The whole transaction: spkd's `Percentage`, `BytesDone` and `BytesTotal`.
    pub fn overall(&mut self, percentage: u32, bytes_done: u64, bytes_total: u64) {
        if let Display::Bars {
            multi,
            overall,
            width,
            ..
        } = self
        {
            let bar = overall.get_or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(100));
                bar.set_style(style(overall_template(*width)));
                bar.set_prefix("total");
                bar
            });
            bar.set_position(u64::from(percentage.min(100)));
            bar.set_message(format!(
                "{}/{}",
                human_bytes(bytes_done),
                human_bytes(bytes_total)
            ));
        }
    }

    /// Whether [`Display::overall`] shows anything (only bars do).
    pub fn has_bars(&self) -> bool {
        matches!(self, Display::Bars { .. })
    }

    pub fn package_done(&mut self, verb: &str, name: &str, version: &str) {
        match self {
            Display::Bars { bars, .. } => match bars.get(name) {
                Some(bar) => bar.finish_with_message(format!("{verb} {version}")),
                None => self.bars_line(format!("{verb} {name} {version}")),
            },
            Display::Plain { .. } => println!("{verb} {name} {version}"),
            Display::Quiet => {}
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
            match self {
                Display::Bars { .. } => self.bars_line(line),
                Display::Plain { .. } => println!("{line}"),
                Display::Quiet => {}
            }
        }
    }

    /// A line above the bars (held back while they are hidden).
    fn bars_line(&mut self, line: String) {
        if let Display::Bars { multi, held, .. } = self {
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
        if let Display::Bars { multi, .. } = self {
            let _ = multi.clear();
        }
    }

    /// Take the bars off the screen while a question is asked: they keep following the
    /// transaction out of sight until [`Display::show`].
    pub fn hide(&mut self) {
        if let Display::Bars {
            multi,
            held,
            bars,
            overall,
            ..
        } = self
            && held.is_none()
        {
            if !bars.is_empty() || overall.is_some() {
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
        if let Display::Bars { multi, held, .. } = self
            && let Some(lines) = held.take()
        {
            multi.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            for line in lines {
                let _ = multi.println(line);
            }
        }
    }

    /// Remove unfinished bars (failure or cancel) so the error is the last thing on screen.
    pub fn finish(&mut self) {
        self.show();
        if let Display::Bars {
            bars,
            multi,
            overall,
            ..
        } = self
        {
            for bar in bars.values().chain(overall.iter()) {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let _ = multi.clear();
        }
    }
}

/// Below this many columns the byte counts, rate and ETA do not fit beside a useful bar.
const NARROW: usize = 80;

fn package_template(width: usize) -> &'static str {
    if width < NARROW {
        "{prefix:.bold} {msg} {percent:>3}%"
    } else {
        "{prefix:>16.bold} {msg:<11} [{wide_bar}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}"
    }
}

fn overall_template(width: usize) -> &'static str {
    if width < NARROW {
        "{prefix:.bold} {pos:>3}% {msg}"
    } else {
        "{prefix:>16.bold} {pos:>3}%        [{wide_bar}] {msg:>21} {elapsed_precise:>12} {eta:>4}"
    }
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
