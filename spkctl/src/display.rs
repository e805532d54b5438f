//! How a running transaction looks: progress bars on a terminal, plain lines otherwise, nothing
//! in JSON mode (the result is printed whole at the end).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Display {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Plain {
        seen: HashMap<String, String>,
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
            }
        } else {
            Display::Plain {
                seen: HashMap::new(),
            }
        }
    }

    pub fn progress(&mut self, package: &str, stage: &str, done: u64, total: u64) {
        match self {
            Display::Bars { multi, bars } => {
                let bar = bars.entry(package.to_owned()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(total));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>16.bold} {msg:<11} [{wide_bar}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(package.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                if stage == "downloading" {
                    bar.set_length(total);
                    bar.set_position(done);
                } else {
                    bar.set_position(bar.length().unwrap_or(0));
                }
                bar.set_message(stage.to_owned());
            }
            Display::Plain { seen } => {
                if seen.get(package).map(String::as_str) != Some(stage) {
                    seen.insert(package.to_owned(), stage.to_owned());
                    if stage == "downloading" {
                        println!("{package}: downloading {}", human_bytes(total));
                    } else {
                        println!("{package}: {stage}");
                    }
                }
            }
            Display::Quiet => {}
        }
    }

    pub fn package_done(&mut self, verb: &str, name: &str, version: &str) {
        match self {
            Display::Bars { bars, multi } => {
                let line = format!("{verb} {name} {version}");
                match bars.get(name) {
                    Some(bar) => bar.finish_with_message(format!("{verb} {version}")),
                    None => {
                        let _ = multi.println(line);
                    }
                }
            }
            Display::Plain { .. } => println!("{verb} {name} {version}"),
            Display::Quiet => {}
        }
    }

    /// Stop redrawing for a moment (a question is being asked).
    pub fn suspend(&mut self) {
        if let Display::Bars { multi, .. } = self {
            let _ = multi.clear();
        }
    }

    /// Remove unfinished bars (failure or cancel) so the error is the last thing on screen.
    pub fn finish(&mut self) {
        if let Display::Bars { bars, multi } = self {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            let _ = multi.clear();
        }
    }
}
