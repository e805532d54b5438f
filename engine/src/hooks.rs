//! Transaction hooks, in the format of pacman's `alpm-hooks(5)` (documented in `spk-hooks(5)`):
//! files `*.hook` in `ROOT/usr/share/spk/hooks/` (shipped by packages) and
//! `ROOT/etc/spk/hooks.d/` (the admin's: the same name overrides, an empty file disables). A hook
//! triggers on the paths or packages a transaction changed, runs once per transaction before or
//! after the commits, and may get its matched targets on stdin. It runs inside the target root
//! (chrooted when that is not `/`), is skipped with a note when the target cannot run it (its
//! program is missing), and is killed when it outlives its timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where packages ship hooks, and where the admin overrides them (relative to the root).
pub const SHIPPED: &str = "usr/share/spk/hooks";
pub const ADMIN: &str = "etc/spk/hooks.d";

/// Most output of one hook kept for the log and the transaction.
const MAX_OUTPUT: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Install,
    Upgrade,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// Paths of files (relative to the root, no leading `/`).
    Path,
    /// Package names.
    Package,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    PreTransaction,
    PostTransaction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub operations: Vec<Operation>,
    /// Globs; one starting with `!` excludes what it matches.
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The file name without `.hook`: hooks run in this order.
    pub name: String,
    pub triggers: Vec<Trigger>,
    pub description: String,
    pub when: When,
    /// The program and its arguments (shell-like quoting, no shell).
    pub exec: Vec<String>,
    pub abort_on_fail: bool,
    pub needs_targets: bool,
}

impl Hook {
    /// The program's path as the hook names it.
    pub fn program(&self) -> &str {
        self.exec.first().map_or("", String::as_str)
    }
}

/// Parse one hook file (`name` without `.hook`).
pub fn parse(name: &str, text: &str) -> Result<Hook, String> {
    let mut triggers: Vec<Trigger> = Vec::new();
    let mut section = "";
    let mut description = String::new();
    let mut when = None;
    let mut exec = None;
    let mut abort_on_fail = false;
    let mut needs_targets = false;
    // Partial trigger: kind, operations, targets.
    let mut current: Option<(Option<TriggerKind>, Vec<Operation>, Vec<String>)> = None;
    let finish = |current: &mut Option<(Option<TriggerKind>, Vec<Operation>, Vec<String>)>,
                  triggers: &mut Vec<Trigger>,
                  line: usize|
     -> Result<(), String> {
        if let Some((kind, operations, targets)) = current.take() {
            let kind = kind.ok_or(format!("line {line}: a [Trigger] needs a Type"))?;
            if operations.is_empty() {
                return Err(format!("line {line}: a [Trigger] needs an Operation"));
            }
            if targets.is_empty() {
                return Err(format!("line {line}: a [Trigger] needs a Target"));
            }
            triggers.push(Trigger {
                kind,
                operations,
                targets,
            });
        }
        Ok(())
    };
    for (n, raw) in text.lines().enumerate() {
        let n = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            finish(&mut current, &mut triggers, n)?;
            section = match &line[1..line.len() - 1] {
                "Trigger" => {
                    current = Some((None, Vec::new(), Vec::new()));
                    "Trigger"
                }
                "Action" => "Action",
                other => return Err(format!("line {n}: unknown section [{other}]")),
            };
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, ""),
        };
        match (section, key) {
            ("Trigger", "Type") => {
                let kind = match value {
                    "Path" | "File" => TriggerKind::Path,
                    "Package" => TriggerKind::Package,
                    other => return Err(format!("line {n}: unknown Type '{other}'")),
                };
                if let Some(c) = current.as_mut() {
                    c.0 = Some(kind);
                }
            }
            ("Trigger", "Operation") => {
                let op = match value {
                    "Install" => Operation::Install,
                    "Upgrade" => Operation::Upgrade,
                    "Remove" => Operation::Remove,
                    other => return Err(format!("line {n}: unknown Operation '{other}'")),
                };
                if let Some(c) = current.as_mut() {
                    c.1.push(op);
                }
            }
            ("Trigger", "Target") => {
                if value.is_empty() {
                    return Err(format!("line {n}: empty Target"));
                }
                if let Some(c) = current.as_mut() {
                    c.2.push(value.trim_start_matches('/').to_owned());
                }
            }
            ("Action", "Description") => description = value.to_owned(),
            ("Action", "When") => {
                when = Some(match value {
                    "PreTransaction" => When::PreTransaction,
                    "PostTransaction" => When::PostTransaction,
                    other => return Err(format!("line {n}: unknown When '{other}'")),
                })
            }
            ("Action", "Exec") => {
                let words = shlex::split(value)
                    .filter(|w| !w.is_empty())
                    .ok_or(format!("line {n}: Exec is not valid shell-like words"))?;
                exec = Some(words);
            }
            ("Action", "AbortOnFail") => abort_on_fail = true,
            ("Action", "NeedsTargets") => needs_targets = true,
            // Known to alpm, without meaning here (spk has no package dependencies).
            ("Action", "Depends") => {}
            (_, key) => return Err(format!("line {n}: unknown key '{key}' in [{section}]")),
        }
    }
    finish(&mut current, &mut triggers, text.lines().count())?;
    if triggers.is_empty() {
        return Err("no [Trigger]".into());
    }
    let when = when.ok_or("[Action] needs When")?;
    let exec = exec.ok_or("[Action] needs Exec")?;
    if abort_on_fail && when != When::PreTransaction {
        return Err("AbortOnFail is only for PreTransaction hooks".into());
    }
    Ok(Hook {
        name: name.to_owned(),
        triggers,
        description,
        when,
        exec,
        abort_on_fail,
        needs_targets,
    })
}

/// The hooks of the root, by name (admin's over shipped; an empty admin file disables), and the
/// files that could not be read or parsed (`file: why`).
pub fn load(root: &Path) -> (Vec<Hook>, Vec<String>) {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in [SHIPPED, ADMIN] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".hook") {
                files.insert(name.to_owned(), entry.path());
            }
        }
    }
    let mut hooks = Vec::new();
    let mut problems = Vec::new();
    for (name, path) in files {
        let text = match std::fs::read(&path) {
            Ok(t) if t.len() > 64 * 1024 => {
                problems.push(format!("{}: larger than 64 KiB", path.display()));
                continue;
            }
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse(&name, &text) {
            Ok(hook) => hooks.push(hook),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    (hooks, problems)
}

/// What a transaction changes (or changed): paths and packages, each with its operation.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub paths: BTreeMap<String, Operation>,
    pub packages: BTreeMap<String, Operation>,
}

impl Changes {
    /// Record one package going from the files `old` to the files `new` (empty: not
    /// installed before / removed).
    pub fn package<'a>(
        &mut self,
        name: &str,
        old: impl IntoIterator<Item = &'a str>,
        new: impl IntoIterator<Item = &'a str>,
        installed_before: bool,
        installed_after: bool,
    ) {
        let op = match (installed_before, installed_after) {
            (false, _) => Operation::Install,
            (true, true) => Operation::Upgrade,
            (true, false) => Operation::Remove,
        };
        self.packages.insert(name.to_owned(), op);
        let old: BTreeSet<&str> = old.into_iter().collect();
        let new: BTreeSet<&str> = new.into_iter().collect();
        for p in &new {
            let op = if old.contains(p) {
                Operation::Upgrade
            } else {
                Operation::Install
            };
            self.paths.insert((*p).to_owned(), op);
        }
        for p in old.difference(&new) {
            self.paths.insert((*p).to_owned(), Operation::Remove);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Add what `other` records.
    pub fn extend(&mut self, other: Changes) {
        self.paths.extend(other.paths);
        self.packages.extend(other.packages);
    }
}

impl Trigger {
    /// The targets of `changes` this trigger matches.
    fn matches<'a>(&self, changes: &'a Changes) -> Vec<&'a str> {
        let candidates = match self.kind {
            TriggerKind::Path => &changes.paths,
            TriggerKind::Package => &changes.packages,
        };
        candidates
            .iter()
            .filter(|(_, op)| self.operations.contains(op))
            .map(|(t, _)| t.as_str())
            .filter(|t| {
                // The last matching glob decides, as in alpm (a `!` one excludes).
                let mut matched = false;
                for glob in &self.targets {
                    match glob.strip_prefix('!') {
                        Some(g) if fnmatch(g, t) => matched = false,
                        None if fnmatch(glob, t) => matched = true,
                        _ => {}
                    }
                }
                matched
            })
            .collect()
    }
}

/// The hooks of `hooks` that run at `when` for `changes`, in name order, each with its sorted
/// matched targets.
pub fn triggered<'h>(
    hooks: &'h [Hook],
    when: When,
    changes: &Changes,
) -> Vec<(&'h Hook, Vec<String>)> {
    hooks
        .iter()
        .filter(|h| h.when == when)
        .filter_map(|h| {
            let targets: BTreeSet<String> = h
                .triggers
                .iter()
                .flat_map(|t| t.matches(changes))
                .map(str::to_owned)
                .collect();
            (!targets.is_empty()).then(|| (h, targets.into_iter().collect()))
        })
        .collect()
}

/// `fnmatch(3)` without flags: `*` and `?` match any character (`/` too), `[…]` a class.
pub fn fnmatch(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() {
            match g[gi] {
                '*' => {
                    star = Some((gi, ti));
                    gi += 1;
                    continue;
                }
                '?' => {
                    gi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&g, gi, t[ti])
                        && matched
                    {
                        gi = next;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if gi + 1 < g.len() && g[gi + 1] == t[ti] => {
                    gi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    gi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sg, st)) => {
                gi = sg + 1;
                ti = st + 1;
                star = Some((sg, st + 1));
            }
            None => return false,
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// Whether `c` is in the class starting at `g[start]` (`[`), and the index after it; `None`
/// when the class is not closed (then `[` is literal).
fn class(g: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(g.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < g.len() {
        if g[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < g.len() && g[i + 1] == '-' && g[i + 2] != ']' {
            if g[i] <= c && c <= g[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if g[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Succeeded,
    /// Exited non-zero (the code) or by a signal (None).
    Failed(Option<i32>),
    /// Killed after the timeout.
    TimedOut,
    /// Not run: its program is not installed in the target (every shipped hook runs only
    /// where its tool exists).
    Missing(String),
    /// Not run: the target cannot run it (why).
    Skipped(String),
}

/// What one hook did: how it ended and what it printed (the last 16 KiB).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ran: Ran,
    pub output: String,
}

/// Run `hook` in `root` (chrooted into it when it is not `/`) with `targets` on stdin when it
/// needs them, killing it (and what it started) after `timeout`.
pub async fn run(root: &Path, hook: &Hook, targets: &[String], timeout: Duration) -> Outcome {
    let skipped = |why: String| Outcome {
        ran: Ran::Skipped(why),
        output: String::new(),
    };
    let program = hook.program();
    if !program.starts_with('/') {
        return skipped(format!("its program '{program}' is not an absolute path"));
    }
    let in_root = root.join(program.trim_start_matches('/'));
    if !in_root.is_file() {
        return Outcome {
            ran: Ran::Missing(format!("{program} is not installed")),
            output: String::new(),
        };
    }
    let chrooted = root != Path::new("/");
    let mut command = tokio::process::Command::new(if chrooted {
        PathBuf::from(program)
    } else {
        in_root.clone()
    });
    command
        .args(&hook.exec[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(if hook.needs_targets {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if chrooted {
        let root = root.to_owned();
        // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                rustix::process::chroot(&root)?;
                rustix::process::chdir("/")?;
                Ok(())
            });
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return skipped(format!("the target cannot run {program}: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let mut text = targets.join("\n");
        text.push('\n');
        // A hook that does not read its stdin must not block us.
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
        });
    }
    let pgid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    let (ran, output) = match tokio::time::timeout(timeout, collect).await {
        Ok((Ok(status), out)) if status.success() => (Ran::Succeeded, out),
        Ok((Ok(status), out)) => (Ran::Failed(status.code()), out),
        Ok((Err(e), out)) => (Ran::Skipped(format!("waiting for it failed: {e}")), out),
        Err(_) => {
            if let Some(pid) = pgid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            (Ran::TimedOut, Vec::new())
        }
    };
    let start = output.len().saturating_sub(MAX_OUTPUT);
    Outcome {
        ran,
        output: String::from_utf8_lossy(&output[start..]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDCONFIG: &str = "[Trigger]\nType = Path\nOperation = Install\nOperation = Upgrade\n\
        Operation = Remove\nTarget = usr/lib/*.so*\nTarget = !usr/lib/*/*\n\n[Action]\n\
        Description = Updating the shared library cache…\nWhen = PostTransaction\n\
        Exec = /usr/bin/ldconfig\n";

    #[test]
    fn parses_an_alpm_hook() {
        let hook = parse("ldconfig", LDCONFIG).unwrap();
        assert_eq!(hook.when, When::PostTransaction);
        assert_eq!(hook.exec, ["/usr/bin/ldconfig"]);
        assert_eq!(hook.triggers[0].operations.len(), 3);
        assert_eq!(hook.triggers[0].targets, ["usr/lib/*.so*", "!usr/lib/*/*"]);
        let quoted = parse(
            "q",
            "[Trigger]\nType=Package\nOperation=Install\nTarget=plasma\n[Action]\nWhen=PreTransaction\nExec=/bin/sh -c 'echo \"a b\"'\nAbortOnFail\nNeedsTargets\n",
        )
        .unwrap();
        assert_eq!(quoted.exec, ["/bin/sh", "-c", "echo \"a b\""]);
        assert!(quoted.abort_on_fail && quoted.needs_targets);
        for bad in [
            "",
            "[Action]\nWhen=PostTransaction\nExec=/bin/true\n",
            "[Trigger]\nType=Path\nOperation=Install\n[Action]\nWhen=PostTransaction\nExec=/x\n",
            "[Trigger]\nType=Nope\n",
            "[Trigger]\nType=Path\nOperation=Install\nTarget=x\n[Action]\nWhen=PostTransaction\nExec=/x\nAbortOnFail\n",
            "[Trigger]\nType=Path\nOperation=Install\nTarget=x\n[Action]\nWhen=PostTransaction\n",
        ] {
            assert!(parse("bad", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(fnmatch("usr/lib/*.so*", "usr/lib/libfoo.so.1"));
        assert!(fnmatch("usr/lib/*.so*", "usr/lib/x/libfoo.so"));
        assert!(!fnmatch("usr/lib/*.so", "usr/lib/libfoo.so.1"));
        assert!(fnmatch("usr/lib/modules/*/", "usr/lib/modules/6.18/"));
        assert!(fnmatch(
            "usr/share/icons/*/index.theme",
            "usr/share/icons/breeze/index.theme"
        ));
        assert!(fnmatch("a?c", "abc") && !fnmatch("a?c", "ac"));
        assert!(fnmatch("[a-c]x", "bx") && !fnmatch("[!a-c]x", "bx"));
        assert!(fnmatch("*", "") && fnmatch("**", "x/y"));
    }

    #[test]
    fn triggers_pick_operations_targets_and_exclusions() {
        let hook = parse("ldconfig", LDCONFIG).unwrap();
        let mut changes = Changes::default();
        changes.package(
            "qt6",
            ["usr/lib/libold.so.1", "usr/lib/libkept.so.6"],
            [
                "usr/lib/libkept.so.6",
                "usr/lib/libnew.so.6",
                "usr/lib/qt6/plugin.so",
            ],
            true,
            true,
        );
        let hooks = [hook];
        let run = triggered(&hooks, When::PostTransaction, &changes);
        assert_eq!(run.len(), 1);
        assert_eq!(
            run[0].1,
            [
                "usr/lib/libkept.so.6",
                "usr/lib/libnew.so.6",
                "usr/lib/libold.so.1"
            ]
        );
        assert!(triggered(&hooks, When::PreTransaction, &changes).is_empty());
    }

    #[test]
    fn every_hook_the_repository_ships_parses_and_its_helpers_exist() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".hook") else {
                continue;
            };
            let hook = parse(stem, &std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(helper) = hook.exec[0].strip_prefix("/usr/share/spk/hooks/") {
                assert!(dir.join(helper).is_file(), "{name} runs a missing {helper}");
            }
            seen += 1;
        }
        assert!(seen >= 8, "only {seen} hooks in {}", dir.display());
    }
}
