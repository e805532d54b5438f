//! Programs run on a real pseudo-terminal, as a person at a terminal runs them: util-linux
//! `script -qfec` gives the program a terminal of a set size (`TERM=xterm-256color`, no
//! `NO_COLOR` unless asked for), what the test writes to its stdin is typed at that terminal
//! (`\x03` is Ctrl-C), and its stdout is everything the terminal showed. The helpers that read
//! the screen ([`strip_escapes`], [`drawn_lines`]) are here too.
//!
//! Needs util-linux `script` on `PATH`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Env;
use crate::daemon::binary;

/// The width of the terminal of [`on_terminal`].
pub const COLUMNS: u16 = 100;

/// The height of every terminal.
pub const ROWS: u16 = 30;

/// What a terminal showed.
pub struct TermRun {
    /// The program's exit code.
    pub code: Option<i32>,
    /// Everything written to the terminal (stdout and stderr, with `\r\n` line ends).
    pub screen: String,
}

impl std::fmt::Display for TermRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}; the terminal showed:\n{}",
            self.code,
            self.screen.escape_debug()
        )
    }
}

/// Quote for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `script` running `program ARGS` on a `cols`x[`ROWS`] pseudo-terminal, with `vars` added to
/// the environment (and `NO_COLOR` removed unless given); what is written to `stdin` is typed
/// at the terminal. The program is killed when the child is dropped.
pub fn command(
    program: &Path,
    args: &[&str],
    vars: &[(&str, &str)],
    cols: u16,
) -> tokio::process::Command {
    let mut line = format!(
        "stty cols {cols} rows {ROWS}; exec {}",
        sh_quote(&program.to_string_lossy())
    );
    for a in args {
        line.push(' ');
        line.push_str(&sh_quote(a));
    }
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-qfec", &line, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// [`command`] running `spkctl --bus ADDR ARGS` against `env`'s daemon.
pub fn spkctl(
    env: &Env,
    args: &[&str],
    vars: &[(&str, &str)],
    cols: u16,
) -> tokio::process::Command {
    let mut all = vec!["--bus", env.bus.address()];
    all.extend_from_slice(args);
    command(&binary("spkctl"), &all, vars, cols)
}

/// Run `command` (from [`command`]) to its end, typing `typed`; panic after 60 s.
pub async fn run(mut command: tokio::process::Command, typed: &str) -> TermRun {
    let mut child = command.spawn().expect("run script");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(typed.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the program on a terminal did not finish in 60 s")
        .unwrap();
    TermRun {
        code: out.status.code(),
        screen: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

/// Run spkctl on a [`COLUMNS`]-column terminal, typing `typed`, to its end.
pub async fn on_terminal(env: &Env, args: &[&str], typed: &str, vars: &[(&str, &str)]) -> TermRun {
    on_terminal_sized(env, args, typed, vars, COLUMNS).await
}

/// Run spkctl on a `cols`-column terminal, typing `typed`, to its end.
pub async fn on_terminal_sized(
    env: &Env,
    args: &[&str],
    typed: &str,
    vars: &[(&str, &str)],
    cols: u16,
) -> TermRun {
    run(spkctl(env, args, vars, cols), typed).await
}

/// Read the terminal until it shows `text` (or panic after 30 s), adding what is read to
/// `seen`.
pub async fn read_until(stdout: &mut tokio::process::ChildStdout, seen: &mut String, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.contains(text) {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("the terminal never showed {text:?}:\n{seen}"))
            .unwrap();
        assert!(
            n > 0,
            "the terminal closed before showing {text:?}:\n{seen}"
        );
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// `text` without ANSI control sequences (`ESC [ … final byte`, and other `ESC x` pairs).
pub fn strip_escapes(text: &str) -> String {
    replace_escapes(text, "")
}

/// The lines a terminal `cols` wide draws: control sequences that move the cursor end a line,
/// and so does reaching the right margin (indicatif pads a line with spaces to the full width
/// to clear it, and the terminal wraps there); the padding is cut.
pub fn drawn_lines(text: &str, cols: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for piece in replace_escapes(text, "\n").split(['\r', '\n']) {
        let chars: Vec<char> = piece.chars().collect();
        for line in chars.chunks(cols) {
            let line: String = line.iter().collect();
            let line = line.trim_end();
            if !line.is_empty() {
                lines.push(line.to_owned());
            }
        }
    }
    lines
}

/// `text` with every ANSI control sequence replaced by `with`, but colours and weights (SGR,
/// `ESC [ … m`) simply dropped: they do not move the cursor.
fn replace_escapes(text: &str, with: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            let mut last = None;
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    last = Some(c);
                    break;
                }
            }
            if last != Some('m') {
                out.push_str(with);
            }
        } else {
            chars.next();
            out.push_str(with);
        }
    }
    out
}
