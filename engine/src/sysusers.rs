//! System users and groups from `sysusers.d(5)` files, created in a TARGET ROOT (the root is
//! always a parameter: on a build host spk installs into `/mnt/smechos`, whose `etc/passwd`
//! has nothing to do with the host's).
//!
//! How the engine uses it:
//! - [`parse`] each `usr/lib/sysusers.d/*.conf` of a package early (a syntax error is the
//!   package's fault and names the file and line);
//! - [`plan`] tells, without writing, which users and groups a set of files would create, and
//!   [`Accounts::with_planned`] gives the name→id view the unpacker may check owners against
//!   ("unknown user, unless the same transaction creates it");
//! - [`apply`] creates them before the package's files are committed, and [`Accounts::load`]
//!   then resolves the archive's `uname`/`gname` in the target.
//!
//! [`apply`] follows `systemd-sysusers`: it creates users, groups and memberships that are
//! missing and never changes or removes anything else (a group line only gains members). New
//! users get `x` in passwd, a locked `!*` password in shadow with `lastchg` = today, home `/`
//! and shell `/usr/sbin/nologin` unless the line says otherwise (`/bin/sh` for uid 0). Ids are
//! allocated downwards from `SYS_UID_MAX`/`SYS_GID_MAX` to `SYS_UID_MIN`/`SYS_GID_MIN` of
//! ROOT/etc/login.defs, skipping every id any user or group of the root uses; a user and the
//! group of the same name get the same number when it is free for both. The defaults are those
//! of shadow-utils' `useradd -r` (101 to `UID_MIN - 1` = 999), which is what the non-systemd
//! tools (opensysusers, plain `useradd`) allocate from on the same root; systemd-sysusers'
//! compiled-in minimum is 1, which would hand out ids distributions keep for static use.
//!
//! Safety, as shadow-utils and systemd-sysusers do it: the whole read-plan-write runs under an
//! exclusive lock of ROOT/etc/.pwd.lock (an open-file-description `fcntl` lock, which conflicts
//! with glibc's `lckpwdf` used by useradd/groupadd and with systemd's lock, and — unlike a
//! classic POSIX lock — also between threads of this daemon); each changed file is written as a
//! temporary file in ROOT/etc, given the old file's mode and owner, fsynced and renamed over
//! the old one (gshadow, group, shadow, passwd: secrets first, a user's group before the user),
//! and only files whose bytes change are written. ROOT/etc and the four files are opened
//! without following symlinks: a symlink there is refused, never followed out of the root.
//! Files that do not exist are created: passwd and group 0644 root:root; shadow and gshadow
//! 0640 root:shadow when the root has a `shadow` group (Debian, Alpine), else 0600 root:root
//! (Arch). No `passwd-` backups are written.
//!
//! Deliberate limits: `r` lines (id ranges) and unknown line types are skipped with a warning;
//! specifiers other than `%%` are refused (packages do not use them and they would expand to
//! the host's values); NSS (LDAP…) is not consulted, only the root's files.
//!
//! Errors are this module's own [`Error`]; [`Error::into_engine`] turns one into the engine's
//! error with the package name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Where the shadow-utils lock lives, relative to the root's `etc`.
const LOCK_NAME: &str = ".pwd.lock";
/// How long [`apply`] waits for another holder of the lock by default (glibc's `lckpwdf` waits
/// 15 s too).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(15);
/// The shell of new users that name none.
pub const NOLOGIN: &str = "/usr/sbin/nologin";
/// Target tools [`run_target_tool`] looks for, in this order.
pub const TARGET_TOOLS: [&str; 2] = ["usr/bin/systemd-sysusers", "usr/bin/sysusers"];

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong; every variant names the file (and line) a person needs to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sysusers.d line that is not valid.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A valid line the root cannot satisfy (its group does not exist, no id is free).
    #[error("{file}:{line}: {message}")]
    Unsatisfiable {
        file: String,
        line: usize,
        message: String,
    },
    /// A path in the root spk will not use (a symlink, not a regular file or directory).
    #[error("{}: {reason}", path.display())]
    Unsafe { path: PathBuf, reason: String },
    /// Another program held ROOT/etc/.pwd.lock for longer than we were willing to wait.
    #[error(
        "{}: another program (useradd, groupadd, systemd-sysusers, …) holds the lock; \
         gave up after {} ms",
        path.display(),
        waited.as_millis()
    )]
    Locked { path: PathBuf, waited: Duration },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The target's own tool failed (or could not be given the lines safely).
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
}

impl Error {
    fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The engine's error for this failure while installing `package`: a bad line is a broken
    /// package (Verification), an unsatisfiable one or an unsafe path a conflict with the root
    /// (Conflict), the rest I/O.
    pub fn into_engine(self, package: &str) -> crate::Error {
        let package = package.to_owned();
        match self {
            Error::Syntax { .. } => crate::Error::CorruptArchive {
                package,
                reason: format!("sysusers.d: {self}"),
            },
            Error::Unsatisfiable {
                ref file,
                line,
                ref message,
            } => crate::Error::PathConflict {
                package,
                path: file.clone(),
                reason: format!("line {line}: {message}"),
            },
            Error::Unsafe { path, reason } => crate::Error::PathConflict {
                package,
                path: path.display().to_string(),
                reason,
            },
            Error::Io { context, source } => crate::Error::Io {
                context: format!("{package}: {context}"),
                source,
            },
            other @ (Error::Locked { .. } | Error::Tool { .. }) => crate::Error::Io {
                context: package,
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sysusers.d format

/// One `u`, `g` or `m` line, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub line: usize,
    pub item: Item,
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `u NAME ID "GECOS" HOME SHELL`; `locked` for `u!` (the account also expires, so it can
    /// never log in, even with a key).
    User {
        name: String,
        id: UserId,
        gecos: Option<String>,
        home: Option<String>,
        shell: Option<String>,
        locked: bool,
    },
    /// `g NAME ID`.
    Group { name: String, id: GroupId },
    /// `m USER GROUP`.
    Member { user: String, group: String },
}

/// The ID field of a `u` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserId {
    /// `-`: allocate (the user's own group gets the same number when it can).
    Auto,
    /// A number (used when free, else allocated with a warning).
    Uid(u32),
    /// An absolute path in the root: its owner's uid (and group's gid) when it exists.
    Path(String),
    /// `UID:GID` or `UID:GROUP` (UID may be `-`): the primary group is that one, which must
    /// exist or be created by a `g` line; no group named after the user is created.
    WithGroup { uid: Option<u32>, group: GroupRef },
}

/// The primary group of a `u NAME UID:GROUP` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Gid(u32),
    Name(String),
}

/// The ID field of a `g` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupId {
    Auto,
    Gid(u32),
    Path(String),
}

/// The lines of one file, and the lines skipped with a note (`file:line: why`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

/// Parse one sysusers.d file (`file` is its name, for messages). Comments and blank lines are
/// skipped; `r` lines and unknown types become warnings; anything invalid is an
/// [`Error::Syntax`] naming the file and line.
pub fn parse(file: &str, content: &str) -> Result<Parsed, Error> {
    let mut parsed = Parsed::default();
    for (n, raw) in content.lines().enumerate() {
        let line = n + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let err = |message: String| Error::Syntax {
            file: file.to_owned(),
            line,
            message,
        };
        let fields = split_fields(text).map_err(&err)?;
        let kind = fields[0].as_str();
        if !matches!(kind, "u" | "u!" | "g" | "m") {
            let why = if kind == "r" {
                "'r' (id range) lines are not supported and were skipped; ids come from \
                 etc/login.defs"
                    .to_owned()
            } else {
                format!("unknown line type '{kind}', line skipped")
            };
            parsed.warnings.push(format!("{file}:{line}: {why}"));
            continue;
        }
        if fields.len() > 6 {
            return Err(err(format!(
                "too many fields (a {kind} line has at most 6): '{}'",
                fields[6]
            )));
        }
        let mut f: Vec<Option<String>> = Vec::with_capacity(6);
        for (i, value) in fields.iter().enumerate() {
            f.push(if i > 0 && value == "-" {
                None
            } else {
                Some(expand_specifiers(value).map_err(&err)?)
            });
        }
        f.resize(6, None);
        let name = f[1]
            .clone()
            .ok_or_else(|| err(format!("a {kind} line needs a name")))?;
        check_name(&name).map_err(&err)?;
        let item = match kind {
            "u" | "u!" => {
                let id = match f[2].as_deref() {
                    None => UserId::Auto,
                    Some(p) if p.starts_with('/') => {
                        UserId::Path(check_path(p, "ID").map_err(&err)?)
                    }
                    Some(pair) if pair.contains(':') => {
                        let (uid, group) = pair.split_once(':').unwrap_or_default();
                        let uid = match uid {
                            "-" => None,
                            n => Some(parse_id(n).map_err(&err)?),
                        };
                        let group = if group.bytes().all(|b| b.is_ascii_digit()) {
                            GroupRef::Gid(parse_id(group).map_err(&err)?)
                        } else {
                            check_name(group).map_err(&err)?;
                            GroupRef::Name(group.to_owned())
                        };
                        UserId::WithGroup { uid, group }
                    }
                    Some(n) => UserId::Uid(parse_id(n).map_err(&err)?),
                };
                let gecos = match f[3].take() {
                    Some(g) if g.contains(':') || g.chars().any(char::is_control) => {
                        return Err(err(format!(
                            "GECOS \"{g}\" may not contain ':' or control characters"
                        )));
                    }
                    other => other,
                };
                let home = f[4]
                    .take()
                    .map(|h| check_path(&h, "home"))
                    .transpose()
                    .map_err(&err)?;
                let shell = f[5]
                    .take()
                    .map(|s| check_path(&s, "shell"))
                    .transpose()
                    .map_err(&err)?;
                Item::User {
                    name,
                    id,
                    gecos,
                    home,
                    shell,
                    locked: kind == "u!",
                }
            }
            "g" => {
                no_user_fields(kind, &f).map_err(&err)?;
                let id = match f[2].as_deref() {
                    None => GroupId::Auto,
                    Some(p) if p.starts_with('/') => {
                        GroupId::Path(check_path(p, "ID").map_err(&err)?)
                    }
                    Some(n) => GroupId::Gid(parse_id(n).map_err(&err)?),
                };
                Item::Group { name, id }
            }
            _ => {
                no_user_fields(kind, &f).map_err(&err)?;
                let group = f[2]
                    .clone()
                    .ok_or_else(|| err("an m line needs a group: m USER GROUP".to_owned()))?;
                check_name(&group).map_err(&err)?;
                Item::Member { user: name, group }
            }
        };
        parsed.entries.push(Entry {
            file: file.to_owned(),
            line,
            item,
        });
    }
    Ok(parsed)
}

/// Split a line into fields: whitespace separates, "double" and 'single' quotes group, a
/// backslash takes the next character literally (not inside single quotes).
fn split_fields(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut field = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => field.push(c),
                (_, '\\') => field.push(
                    chars
                        .next()
                        .ok_or_else(|| "a backslash ends the line".to_owned())?,
                ),
                (_, c) => field.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q}quote{q}"));
        }
        fields.push(field);
    }
    Ok(fields)
}

/// `%%` is a percent sign; other specifiers (`%H`, `%m`, …) would expand to the host's values,
/// not the target's, so they are refused.
fn expand_specifiers(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(s) => return Err(format!("specifier %{s} in '{value}' is not supported")),
            None => return Err(format!("'{value}' ends with a lone %")),
        }
    }
    Ok(out)
}

/// sysusers.d(5): a-z, A-Z, 0-9, `_` and `-`, not starting with a digit or `-`, 1–31 bytes.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user or group name '{name}' (letters, digits, '_' and '-', not starting \
             with a digit or '-', at most 31)"
        ))
    }
}

fn check_path(path: &str, what: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.contains(':') || path.chars().any(char::is_control) {
        return Err(format!(
            "{what} '{path}' must be an absolute path without ':' or control characters"
        ));
    }
    Ok(path.to_owned())
}

/// A decimal uid/gid; 65535 and 4294967295 are placeholders ("nobody" of 16-bit ids, -1).
fn parse_id(text: &str) -> Result<u32, String> {
    let id: u32 = text
        .parse()
        .ok()
        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("invalid id '{text}' (a number, '-', UID:GID or a path)"))?;
    if id == 65535 || id == u32::MAX {
        return Err(format!("id {id} is reserved and cannot be used"));
    }
    Ok(id)
}

fn no_user_fields(kind: &str, f: &[Option<String>]) -> Result<(), String> {
    for (i, what) in [(3, "GECOS"), (4, "home"), (5, "shell")] {
        if let Some(v) = &f[i] {
            return Err(format!(
                "'{kind}' lines take no {what} field (got '{v}'; use '-')"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accounts: the root's passwd and group, for resolving names

/// Users and groups of a root, from ROOT/etc/passwd and ROOT/etc/group (NIS `+`/`-` lines and
/// malformed lines are ignored; the first entry of a name or id wins, as for `getpwnam`).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: HashMap<String, (u32, u32)>,
    uid_names: HashMap<u32, String>,
    groups: HashMap<String, u32>,
    gid_names: HashMap<u32, String>,
    members: HashMap<String, Vec<String>>,
}

impl Accounts {
    /// Load ROOT/etc/passwd and ROOT/etc/group (missing files are empty; a symlinked one is an
    /// error, never followed).
    pub fn load(root: &Path) -> Result<Accounts, Error> {
        let Some(etc) = Etc::open(root, false)? else {
            return Ok(Accounts::default());
        };
        let passwd = etc.read("passwd")?.map(|f| f.bytes).unwrap_or_default();
        let group = etc.read("group")?.map(|f| f.bytes).unwrap_or_default();
        Ok(Accounts::from_files(&passwd, &group))
    }

    /// Parse the contents of a passwd and a group file.
    pub fn from_files(passwd: &[u8], group: &[u8]) -> Accounts {
        let mut acc = Accounts::default();
        for line in lines(passwd) {
            let f = fields(line);
            if f.len() < 4 || is_nis(line) {
                continue;
            }
            if let (Ok(uid), Ok(gid)) = (num(f[2]), num(f[3])) {
                acc.add_user(&String::from_utf8_lossy(f[0]), uid, gid);
            }
        }
        for line in lines(group) {
            let f = fields(line);
            if f.len() < 3 || is_nis(line) {
                continue;
            }
            if let Ok(gid) = num(f[2]) {
                let name = String::from_utf8_lossy(f[0]).into_owned();
                acc.add_group(&name, gid);
                if let Some(m) = f.get(3) {
                    let list = acc.members.entry(name).or_default();
                    for user in m.split(|&b| b == b',').filter(|u| !u.is_empty()) {
                        list.push(String::from_utf8_lossy(user).into_owned());
                    }
                }
            }
        }
        acc
    }

    /// These accounts plus what `applied` created (or, from [`plan`], would create).
    pub fn with_planned(mut self, applied: &Applied) -> Accounts {
        for g in &applied.groups {
            self.add_group(&g.name, g.gid);
        }
        for u in &applied.users {
            self.add_user(&u.name, u.uid, u.gid);
        }
        for (user, group) in &applied.memberships {
            self.members
                .entry(group.clone())
                .or_default()
                .push(user.clone());
        }
        self
    }

    /// The uid of user `name`.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.users.get(name).map(|&(uid, _)| uid)
    }

    /// The primary gid of user `name`.
    pub fn primary_gid_of(&self, name: &str) -> Option<u32> {
        self.users.get(name).map(|&(_, gid)| gid)
    }

    /// The gid of group `name`.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied()
    }

    /// The name of the (first) user with `uid`.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.uid_names.get(&uid).map(String::as_str)
    }

    /// The name of the (first) group with `gid`.
    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.gid_names.get(&gid).map(String::as_str)
    }

    /// Whether `user` is listed as a member of `group` (primary groups are not listed).
    pub fn is_member(&self, user: &str, group: &str) -> bool {
        self.members
            .get(group)
            .is_some_and(|m| m.iter().any(|u| u == user))
    }

    fn add_user(&mut self, name: &str, uid: u32, gid: u32) {
        self.users.entry(name.to_owned()).or_insert((uid, gid));
        self.uid_names.entry(uid).or_insert_with(|| name.to_owned());
    }

    fn add_group(&mut self, name: &str, gid: u32) {
        self.groups.entry(name.to_owned()).or_insert(gid);
        self.gid_names.entry(gid).or_insert_with(|| name.to_owned());
    }

    /// `uid` is free for user `name`: no user has it and (with `check_gid`) no group of
    /// another name has it as gid.
    fn uid_free(&self, uid: u32, name: &str, check_gid: bool) -> bool {
        !self.uid_names.contains_key(&uid)
            && (!check_gid || self.gid_names.get(&uid).is_none_or(|g| g == name))
    }

    /// `gid` is free for group `name`: no group has it, and no user of another name has it as
    /// uid or as primary gid (a dangling primary gid would make that user a member).
    fn gid_free(&self, gid: u32, name: &str) -> bool {
        !self.gid_names.contains_key(&gid)
            && self.uid_names.get(&gid).is_none_or(|u| u == name)
            && !self
                .users
                .iter()
                .any(|(user, &(_, primary))| primary == gid && user != name)
    }
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v
}

fn fields(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b':').collect()
}

fn first_field(line: &[u8]) -> &[u8] {
    fields(line)[0]
}

fn is_nis(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'+' | b'-'))
}

fn num(field: &[u8]) -> Result<u32, ()> {
    std::str::from_utf8(field)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(())
}

// ---------------------------------------------------------------------------------------------
// Allocation ranges

/// The system id ranges of a root, from ROOT/etc/login.defs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    pub uid_min: u32,
    pub uid_max: u32,
    pub gid_min: u32,
    pub gid_max: u32,
}

impl Default for Ranges {
    /// shadow-utils' defaults for `useradd -r`/`groupadd -r`: 101 to 999.
    fn default() -> Self {
        Ranges {
            uid_min: 101,
            uid_max: 999,
            gid_min: 101,
            gid_max: 999,
        }
    }
}

impl Ranges {
    /// Read `SYS_UID_MIN`, `SYS_UID_MAX`, `SYS_GID_MIN`, `SYS_GID_MAX` (and `UID_MIN`/`GID_MIN`,
    /// whose value minus one is the default maximum, as in shadow-utils) from a login.defs
    /// text. Unparsable values and inverted or zero-based ranges fall back to the defaults,
    /// with a warning.
    pub fn from_login_defs(text: &str) -> (Ranges, Vec<String>) {
        let mut warnings = Vec::new();
        let mut get = |key: &str| -> Option<u32> {
            let value = text.lines().rev().find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(key)).then(|| words.next().unwrap_or(""))
            })?;
            match value.parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => {
                    warnings.push(format!(
                        "login.defs: {key} '{value}' is not a number, ignored"
                    ));
                    None
                }
            }
        };
        let d = Ranges::default();
        let uid_top = get("UID_MIN").map_or(d.uid_max, |v| v.saturating_sub(1));
        let gid_top = get("GID_MIN").map_or(d.gid_max, |v| v.saturating_sub(1));
        let mut r = Ranges {
            uid_min: get("SYS_UID_MIN").unwrap_or(d.uid_min),
            uid_max: get("SYS_UID_MAX").unwrap_or(uid_top),
            gid_min: get("SYS_GID_MIN").unwrap_or(d.gid_min),
            gid_max: get("SYS_GID_MAX").unwrap_or(gid_top),
        };
        if r.uid_min == 0 || r.uid_min > r.uid_max {
            warnings.push(format!(
                "login.defs: system uid range {}-{} is not usable, using {}-{}",
                r.uid_min, r.uid_max, d.uid_min, d.uid_max
            ));
            (r.uid_min, r.uid_max) = (d.uid_min, d.uid_max);
        }
        if r.gid_min == 0 || r.gid_min > r.gid_max {
            warnings.push(format!(
                "login.defs: system gid range {}-{} is not usable, using {}-{}",
                r.gid_min, r.gid_max, d.gid_min, d.gid_max
            ));
            (r.gid_min, r.gid_max) = (d.gid_min, d.gid_max);
        }
        (r, warnings)
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// A user [`apply`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// `u!`: the shadow entry also expires the account.
    pub locked: bool,
}

/// A group [`apply`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub gid: u32,
}

/// What [`apply`] created (or [`plan`] would create), for the log and for resolving owners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub users: Vec<NewUser>,
    pub groups: Vec<NewGroup>,
    /// (user, group) pairs added to a group's member list.
    pub memberships: Vec<(String, String)>,
    /// Lines skipped, suggested ids that were taken, login.defs oddities (`file:line: why`).
    pub warnings: Vec<String>,
    /// Files of ROOT/etc replaced (or, from [`plan`], that would be), in the order written.
    pub written: Vec<String>,
    /// The target's tool that did the work, when [`Options::use_target_tool`] let it.
    pub by_tool: Option<String>,
}

impl Applied {
    /// Nothing was (or would be) created.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.memberships.is_empty()
    }
}

impl fmt::Display for Applied {
    /// One line for the log: "group polkitd (997), user polkitd (997:997), polkitd in proc".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(
            self.groups
                .iter()
                .map(|g| format!("group {} ({})", g.name, g.gid)),
        );
        parts.extend(
            self.users
                .iter()
                .map(|u| format!("user {} ({}:{})", u.name, u.uid, u.gid)),
        );
        parts.extend(
            self.memberships
                .iter()
                .map(|(u, g)| format!("{u} in group {g}")),
        );
        if parts.is_empty() {
            f.write_str("no users or groups to create")
        } else {
            write!(f, "created {}", parts.join(", "))?;
            if let Some(tool) = &self.by_tool {
                write!(f, " (by {tool})")?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Planning

/// What to do, given the root's files as they are.
struct Plan {
    applied: Applied,
    accounts: Accounts,
}

fn parse_all(confs: &[(String, String)]) -> Result<(Vec<Entry>, Vec<String>), Error> {
    // sysusers.d(5): files are taken in the order of their names, whatever their directory.
    let mut sorted: Vec<&(String, String)> = confs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (file, content) in sorted {
        let p = parse(file, content)?;
        entries.extend(p.entries);
        warnings.extend(p.warnings);
    }
    Ok((entries, warnings))
}

struct UserDecl<'a> {
    entry: &'a Entry,
    name: &'a str,
    id: UserId,
    gecos: Option<&'a str>,
    home: Option<&'a str>,
    shell: Option<&'a str>,
    locked: bool,
    /// Declared only by an `m` line.
    implicit: bool,
}

fn make_plan(
    entries: &[Entry],
    mut warnings: Vec<String>,
    accounts: Accounts,
    ranges: Ranges,
    root: &RootFd,
) -> Result<Plan, Error> {
    // Declarations: the first of a name wins, later ones are noted (sysusers.d(5)).
    let mut users: Vec<UserDecl> = Vec::new();
    let mut groups: Vec<(&Entry, &str, GroupId)> = Vec::new();
    let mut members: Vec<(&Entry, &str, &str)> = Vec::new();
    let mut seen_users: HashMap<&str, &Entry> = HashMap::new();
    let mut seen_groups: HashMap<&str, &Entry> = HashMap::new();
    let dup = |e: &Entry, what: &str, name: &str, first: &Entry| {
        format!(
            "{}:{}: {what} {name} is already declared at {}:{}; this line is ignored",
            e.file, e.line, first.file, first.line
        )
    };
    for e in entries {
        match &e.item {
            Item::User {
                name,
                id,
                gecos,
                home,
                shell,
                locked,
            } => {
                if let Some(first) = seen_users.get(name.as_str()) {
                    warnings.push(dup(e, "user", name, first));
                    continue;
                }
                seen_users.insert(name, e);
                users.push(UserDecl {
                    entry: e,
                    name,
                    id: id.clone(),
                    gecos: gecos.as_deref(),
                    home: home.as_deref(),
                    shell: shell.as_deref(),
                    locked: *locked,
                    implicit: false,
                });
            }
            Item::Group { name, id } => {
                if let Some(first) = seen_groups.get(name.as_str()) {
                    warnings.push(dup(e, "group", name, first));
                    continue;
                }
                seen_groups.insert(name, e);
                groups.push((e, name, id.clone()));
            }
            Item::Member { user, group } => {
                if !members.iter().any(|(_, u, g)| u == user && g == group) {
                    members.push((e, user, group));
                }
            }
        }
    }
    // m lines create the user and the group they name when nothing else declares them.
    for &(e, user, group) in &members {
        if !seen_users.contains_key(user) {
            seen_users.insert(user, e);
            users.push(UserDecl {
                entry: e,
                name: user,
                id: UserId::Auto,
                gecos: None,
                home: None,
                shell: None,
                locked: false,
                implicit: true,
            });
        }
        if !seen_groups.contains_key(group) && !seen_users.contains_key(group) {
            seen_groups.insert(group, e);
            groups.push((e, group, GroupId::Auto));
        }
    }

    let mut p = Planner {
        acc: accounts,
        ranges,
        root,
        applied: Applied::default(),
    };
    p.applied.warnings = warnings;

    // Groups first: those of g lines, then those u lines imply, then the users.
    for (e, name, id) in &groups {
        let uid_hint = users
            .iter()
            .find(|u| u.name == *name)
            .and_then(|u| match u.id {
                UserId::Uid(n) => Some(n),
                _ => None,
            });
        p.ensure_group(e, name, id, uid_hint)?;
    }
    for u in &users {
        // An existing user named only by an m line is left as it is, group or not.
        if matches!(u.id, UserId::WithGroup { .. })
            || seen_groups.contains_key(u.name)
            || (u.implicit && p.acc.uid_of(u.name).is_some())
        {
            continue;
        }
        let (id, hint) = match &u.id {
            UserId::Uid(n) => (GroupId::Auto, Some(*n)),
            UserId::Path(path) => (GroupId::Path(path.clone()), None),
            _ => (GroupId::Auto, None),
        };
        // An existing user whose group is missing gets it back with its primary gid.
        let hint = p.acc.primary_gid_of(u.name).or(hint);
        p.ensure_group(u.entry, u.name, &id, hint)?;
    }
    for u in &users {
        p.ensure_user(u)?;
    }
    for &(e, user, group) in &members {
        if p.acc.is_member(user, group) {
            continue;
        }
        if p.acc.gid_of(group).is_none() {
            // A group named only by `u NAME UID:GROUP` lines is never created.
            return Err(Error::Unsatisfiable {
                file: e.file.clone(),
                line: e.line,
                message: format!("group {group} does not exist and no line creates it"),
            });
        }
        p.acc
            .members
            .entry(group.to_owned())
            .or_default()
            .push(user.to_owned());
        p.applied
            .memberships
            .push((user.to_owned(), group.to_owned()));
    }
    Ok(Plan {
        applied: p.applied,
        accounts: p.acc,
    })
}

struct Planner<'a> {
    acc: Accounts,
    ranges: Ranges,
    root: &'a RootFd,
    applied: Applied,
}

impl Planner<'_> {
    fn warn(&mut self, e: &Entry, message: String) {
        self.applied
            .warnings
            .push(format!("{}:{}: {message}", e.file, e.line));
    }

    fn ensure_group(
        &mut self,
        e: &Entry,
        name: &str,
        id: &GroupId,
        hint: Option<u32>,
    ) -> Result<(), Error> {
        if self.acc.gid_of(name).is_some() {
            return Ok(());
        }
        let mut gid = None;
        match id {
            GroupId::Gid(n) if self.acc.gid_free(*n, name) => gid = Some(*n),
            GroupId::Gid(n) => {
                let owner = self
                    .acc
                    .group_name(*n)
                    .or(self.acc.user_name(*n))
                    .unwrap_or("?");
                self.warn(
                    e,
                    format!("gid {n} for group {name} is taken by {owner}; allocating another"),
                );
            }
            GroupId::Path(path) => {
                gid = self.root.owner_of(path).map(|(_, g)| g).filter(|&g| {
                    g != 0
                        && (self.ranges.gid_min..=self.ranges.gid_max).contains(&g)
                        && self.acc.gid_free(g, name)
                });
            }
            GroupId::Auto => {}
        }
        if gid.is_none() {
            gid = hint.filter(|&h| self.acc.gid_free(h, name));
        }
        if gid.is_none() {
            gid = (self.ranges.gid_min..=self.ranges.gid_max)
                .rev()
                .find(|&g| self.acc.gid_free(g, name));
        }
        let Some(gid) = gid else {
            return Err(Error::Unsatisfiable {
                file: e.file.clone(),
                line: e.line,
                message: format!(
                    "no free system gid in {}-{} for group {name}",
                    self.ranges.gid_min, self.ranges.gid_max
                ),
            });
        };
        self.acc.add_group(name, gid);
        self.applied.groups.push(NewGroup {
            name: name.to_owned(),
            gid,
        });
        Ok(())
    }

    fn ensure_user(&mut self, u: &UserDecl) -> Result<(), Error> {
        if self.acc.uid_of(u.name).is_some() {
            return Ok(());
        }
        let e = u.entry;
        let unsatisfiable = |message: String| Error::Unsatisfiable {
            file: e.file.clone(),
            line: e.line,
            message,
        };
        let (gid, own_group) = match &u.id {
            UserId::WithGroup {
                group: GroupRef::Gid(g),
                ..
            } => match self.acc.group_name(*g) {
                Some(_) => (*g, false),
                None => {
                    return Err(unsatisfiable(format!(
                        "primary gid {g} of user {} is no group of the root and no g line \
                         creates it",
                        u.name
                    )));
                }
            },
            UserId::WithGroup {
                group: GroupRef::Name(g),
                ..
            } => match self.acc.gid_of(g) {
                Some(gid) => (gid, false),
                None => {
                    return Err(unsatisfiable(format!(
                        "primary group {g} of user {} does not exist and no line creates it",
                        u.name
                    )));
                }
            },
            _ => match self.acc.gid_of(u.name) {
                Some(gid) => (gid, true),
                None => return Err(unsatisfiable(format!("group {} was not created", u.name))),
            },
        };
        let r = self.ranges;
        let in_range = move |id: u32| (r.uid_min..=r.uid_max).contains(&id);
        let mut uid = None;
        let suggested = match &u.id {
            UserId::Uid(n) => Some((*n, true)),
            // uid:gid asks for both numbers: the uid need not avoid other groups' gids.
            UserId::WithGroup { uid: Some(n), .. } => Some((*n, false)),
            _ => None,
        };
        if let Some((n, check_gid)) = suggested {
            if self.acc.uid_free(n, u.name, check_gid) {
                uid = Some(n);
            } else {
                let owner = self
                    .acc
                    .user_name(n)
                    .or(self.acc.group_name(n))
                    .unwrap_or("?");
                self.warn(
                    e,
                    format!(
                        "uid {n} for user {} is taken by {owner}; allocating another",
                        u.name
                    ),
                );
            }
        }
        if uid.is_none()
            && let UserId::Path(path) = &u.id
        {
            uid = self
                .root
                .owner_of(path)
                .map(|(o, _)| o)
                .filter(|&o| o != 0 && in_range(o) && self.acc.uid_free(o, u.name, true));
        }
        // The user's own group's number, when free: within the uid range, or chosen outside
        // the gid allocation range on purpose (`g NAME 50`).
        let chosen = !(self.ranges.gid_min..=self.ranges.gid_max).contains(&gid);
        if uid.is_none()
            && own_group
            && (in_range(gid) || chosen)
            && self.acc.uid_free(gid, u.name, true)
        {
            uid = Some(gid);
        }
        if uid.is_none() {
            uid = (self.ranges.uid_min..=self.ranges.uid_max)
                .rev()
                .find(|&id| self.acc.uid_free(id, u.name, true));
        }
        let Some(uid) = uid else {
            return Err(unsatisfiable(format!(
                "no free system uid in {}-{} for user {}",
                self.ranges.uid_min, self.ranges.uid_max, u.name
            )));
        };
        self.acc.add_user(u.name, uid, gid);
        let default_shell = if uid == 0 { "/bin/sh" } else { NOLOGIN };
        self.applied.users.push(NewUser {
            name: u.name.to_owned(),
            uid,
            gid,
            gecos: u.gecos.unwrap_or("").to_owned(),
            home: u.home.unwrap_or("/").to_owned(),
            shell: u.shell.unwrap_or(default_shell).to_owned(),
            locked: u.locked,
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The root's files

/// The target root, opened once (paths of `u NAME /path` lines resolve inside it).
struct RootFd {
    path: PathBuf,
    fd: OwnedFd,
}

impl RootFd {
    fn open(root: &Path) -> Result<RootFd, Error> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening the root {}", root.display()), e))?;
        Ok(RootFd {
            path: root.to_owned(),
            fd,
        })
    }

    /// Owner uid and gid of an absolute path of the root, resolved as if chrooted (symlinks
    /// cannot leave the root); None when it does not exist.
    fn owner_of(&self, path: &str) -> Option<(u32, u32)> {
        let fd = rustix::fs::openat2(
            &self.fd,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        Some((st.st_uid, st.st_gid))
    }

    /// Read a file of the root, resolved as if chrooted; None when missing.
    fn read_in_root(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let shown = self.path.join(path.trim_start_matches('/'));
        match rustix::fs::openat2(
            &self.fd,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let mut bytes = Vec::new();
                std::fs::File::from(fd)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(format!("reading {}", shown.display()), e))?;
                Ok(Some(bytes))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io(format!("opening {}", shown.display()), e)),
        }
    }
}

/// A file of ROOT/etc as read: its bytes and, when it existed, its mode and owner.
struct EtcFile {
    bytes: Vec<u8>,
    meta: Option<(u32, u32, u32)>,
}

/// ROOT/etc, opened without following a symlink.
struct Etc {
    path: PathBuf,
    fd: OwnedFd,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Etc {
    /// Open ROOT/etc; None when it is missing and `create` is false.
    fn open(root: &Path, create: bool) -> Result<Option<Etc>, Error> {
        let rootfd = RootFd::open(root)?;
        Self::open_in(&rootfd, create)
    }

    fn open_in(root: &RootFd, create: bool) -> Result<Option<Etc>, Error> {
        let path = root.path.join("etc");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&root.fd, "etc", flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&root.fd, "etc", Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
                }
                rustix::fs::openat(&root.fd, "etc", flags, Mode::empty())
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(Error::Unsafe {
                    path,
                    reason: "is a symbolic link or not a directory; spk does not follow it"
                        .to_owned(),
                });
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        Ok(Some(Etc { path, fd }))
    }

    /// Read ROOT/etc/NAME; None when missing. A symlink or a non-regular file is refused.
    fn read(&self, name: &str) -> Result<Option<EtcFile>, Error> {
        let path = self.path.join(name);
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(Error::Unsafe {
                    path,
                    reason: "is a symbolic link; spk does not follow it (it could lead out of \
                             the root)"
                        .to_owned(),
                });
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(Error::Unsafe {
                path,
                reason: "is not a regular file".to_owned(),
            });
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Some(EtcFile {
            bytes,
            meta: Some((st.st_mode & 0o7777, st.st_uid, st.st_gid)),
        }))
    }

    /// Write `bytes` to a new temporary file in etc with `mode` and owner, fsynced; returns
    /// its name (renamed into place later, or removed).
    fn write_temp(
        &self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<String, Error> {
        let (fd, temp) = loop {
            let temp = format!(
                ".{name}.spk-{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            match rustix::fs::openat(
                &self.fd,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (fd, temp),
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("creating a temporary file in {}", self.path.display()),
                        e,
                    ));
                }
            }
        };
        let shown = self.path.join(&temp);
        let result = (|| -> io::Result<()> {
            rustix::fs::fchown(
                &fd,
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(e) = result {
            let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
            return Err(Error::io(format!("writing {}", shown.display()), e));
        }
        Ok(temp)
    }

    fn rename(&self, temp: &str, name: &str) -> Result<(), Error> {
        rustix::fs::renameat(&self.fd, temp, &self.fd, name).map_err(|e| {
            Error::io(
                format!("renaming {} over {name}", self.path.join(temp).display()),
                e,
            )
        })
    }

    fn unlink(&self, temp: &str) {
        let _ = rustix::fs::unlinkat(&self.fd, temp, AtFlags::empty());
    }

    fn sync(&self) -> Result<(), Error> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
    }
}

// ---------------------------------------------------------------------------------------------
// The lock

/// An exclusive hold of ROOT/etc/.pwd.lock, released when dropped. It excludes
/// useradd/groupadd/passwd (glibc's `lckpwdf`), systemd-sysusers and other spk threads.
#[derive(Debug)]
pub struct PwdLock {
    // Only held: closing it releases the lock.
    _fd: OwnedFd,
    path: PathBuf,
}

impl PwdLock {
    /// Take the lock of `root` (creating ROOT/etc and the lock file, mode 0600, if missing),
    /// waiting up to `timeout` for another holder ([`Error::Locked`] after that; zero = try
    /// once).
    pub fn acquire(root: &Path, timeout: Duration) -> Result<PwdLock, Error> {
        let rootfd = RootFd::open(root)?;
        let etc = Etc::open_in(&rootfd, true)?
            .ok_or_else(|| Error::io("opening etc", io::Error::from(io::ErrorKind::NotFound)))?;
        Self::acquire_in(&etc, timeout)
    }

    fn acquire_in(etc: &Etc, timeout: Duration) -> Result<PwdLock, Error> {
        let path = etc.path.join(LOCK_NAME);
        let fd = match rustix::fs::openat(
            &etc.fd,
            LOCK_NAME,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(Error::Unsafe {
                    path,
                    reason: "is a symbolic link; spk does not follow it".to_owned(),
                });
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let start = Instant::now();
        loop {
            match ofd_lock(&fd) {
                Ok(()) => return Ok(PwdLock { _fd: fd, path }),
                Err(e)
                    if e.raw_os_error() == Some(libc::EAGAIN)
                        || e.raw_os_error() == Some(libc::EACCES) =>
                {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(Error::Locked { path, waited });
                    }
                    std::thread::sleep((timeout - waited).min(Duration::from_millis(100)));
                }
                Err(e) => return Err(Error::io(format!("locking {}", path.display()), e)),
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A write lock of the whole file owned by this open file description (F_OFD_SETLK): it
/// conflicts with glibc's lckpwdf (F_SETLKW) in other processes, and with other descriptions
/// in this one. Closing the fd releases it.
fn ofd_lock(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks.
    // SAFETY: fcntl with F_OFD_SETLK reads the `flock` we pass and nothing else.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---------------------------------------------------------------------------------------------
// Apply

/// How [`apply`] works.
#[derive(Debug, Clone)]
pub struct Options {
    /// Let the target's own `systemd-sysusers`/`sysusers` do it when the root has one
    /// ([`run_target_tool`]); our implementation otherwise. Default false.
    pub use_target_tool: bool,
    /// How long to wait for another holder of ROOT/etc/.pwd.lock. Default 15 s.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            use_target_tool: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// What [`apply`] would create in `root` now, writing nothing (not even the lock file).
/// `Applied::written` lists the files that would change.
pub fn plan(root: &Path, confs: &[(String, String)]) -> Result<Applied, Error> {
    let (entries, warnings) = parse_all(confs)?;
    let rootfd = RootFd::open(root)?;
    let etc = Etc::open_in(&rootfd, false)?;
    let files = read_files(&rootfd, etc.as_ref())?;
    let (plan, changes) = compute(&entries, warnings, &rootfd, &files)?;
    let mut applied = plan.applied;
    applied.written = changes.into_iter().map(|c| c.name.to_owned()).collect();
    Ok(applied)
}

/// Create in `root` the users, groups and memberships `confs` (file name, content) declare
/// and the root lacks, as described in the module docs. Nothing is written when nothing is
/// missing; an error leaves every file as it was (all checks happen before the first rename).
pub fn apply(root: &Path, confs: &[(String, String)], options: &Options) -> Result<Applied, Error> {
    let (entries, warnings) = parse_all(confs)?;
    if options.use_target_tool
        && let Some(tool) = find_target_tool(root)?
    {
        let before = Accounts::load(root)?;
        if run_target_tool(root, confs)? {
            let after = Accounts::load(root)?;
            let mut applied = diff(&before, &after, &entries);
            applied.warnings = warnings;
            applied.by_tool = Some(tool);
            return Ok(applied);
        }
    }
    // Plan without the lock first: when nothing is missing (the usual case on upgrades),
    // nothing is touched, not even etc/.pwd.lock.
    let rootfd = RootFd::open(root)?;
    let etc = Etc::open_in(&rootfd, false)?;
    let files = read_files(&rootfd, etc.as_ref())?;
    let (plan, changes) = compute(&entries, warnings.clone(), &rootfd, &files)?;
    if changes.is_empty() {
        return Ok(plan.applied);
    }
    drop(etc);
    let etc = Etc::open_in(&rootfd, true)?
        .ok_or_else(|| Error::io("opening etc", io::Error::from(io::ErrorKind::NotFound)))?;
    let _lock = PwdLock::acquire_in(&etc, options.lock_timeout)?;
    // Under the lock, from the files as they are now.
    let files = read_files(&rootfd, Some(&etc))?;
    let (plan, changes) = compute(&entries, warnings, &rootfd, &files)?;
    write_changes(&etc, &changes)?;
    let mut applied = plan.applied;
    applied.written = changes.into_iter().map(|c| c.name.to_owned()).collect();
    Ok(applied)
}

const FILES: [&str; 4] = ["passwd", "group", "shadow", "gshadow"];

struct Files {
    passwd: Option<EtcFile>,
    group: Option<EtcFile>,
    shadow: Option<EtcFile>,
    gshadow: Option<EtcFile>,
    login_defs: Option<Vec<u8>>,
}

fn read_files(root: &RootFd, etc: Option<&Etc>) -> Result<Files, Error> {
    let Some(etc) = etc else {
        return Ok(Files {
            passwd: None,
            group: None,
            shadow: None,
            gshadow: None,
            login_defs: None,
        });
    };
    Ok(Files {
        passwd: etc.read(FILES[0])?,
        group: etc.read(FILES[1])?,
        shadow: etc.read(FILES[2])?,
        gshadow: etc.read(FILES[3])?,
        // Only read: resolved inside the root, so a symlink there is followed within it.
        login_defs: root.read_in_root("/etc/login.defs")?,
    })
}

/// One file to replace.
struct Change {
    name: &'static str,
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn compute(
    entries: &[Entry],
    mut warnings: Vec<String>,
    root: &RootFd,
    files: &Files,
) -> Result<(Plan, Vec<Change>), Error> {
    let bytes = |f: &Option<EtcFile>| f.as_ref().map(|f| f.bytes.clone()).unwrap_or_default();
    let (passwd, group, shadow, gshadow) = (
        bytes(&files.passwd),
        bytes(&files.group),
        bytes(&files.shadow),
        bytes(&files.gshadow),
    );
    let (ranges, defs_warnings) = match &files.login_defs {
        Some(text) => Ranges::from_login_defs(&String::from_utf8_lossy(text)),
        None => (Ranges::default(), Vec::new()),
    };
    warnings.extend(defs_warnings);
    let plan = make_plan(
        entries,
        warnings,
        Accounts::from_files(&passwd, &group),
        ranges,
        root,
    )?;
    let a = &plan.applied;
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);

    let new_passwd = insert_before_nis(
        &passwd,
        a.users
            .iter()
            .map(|u| {
                format!(
                    "{}:x:{}:{}:{}:{}:{}",
                    u.name, u.uid, u.gid, u.gecos, u.home, u.shell
                )
                .into_bytes()
            })
            .collect(),
    );
    let shadow_names: HashSet<&[u8]> = lines(&shadow).into_iter().map(first_field).collect();
    let new_shadow = insert_before_nis(
        &shadow,
        a.users
            .iter()
            // An old shadow line of the name is kept as it is (never change existing entries).
            .filter(|u| !shadow_names.contains(u.name.as_bytes()))
            .map(|u| {
                // name:password:lastchg:min:max:warn:inactive:expire:reserved
                let expire = if u.locked { "1" } else { "" };
                format!("{}:!*:{days}:::::{expire}:", u.name).into_bytes()
            })
            .collect(),
    );
    let new_members = |group: &str| -> Vec<&str> {
        a.memberships
            .iter()
            .filter(|(_, g)| g == group)
            .map(|(u, _)| u.as_str())
            .collect()
    };
    let created: HashSet<&str> = a.groups.iter().map(|g| g.name.as_str()).collect();
    let add_members = |text: &[u8], members_field: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for line in lines(text) {
            let name = String::from_utf8_lossy(first_field(line));
            let add = if is_nis(line) || created.contains(name.as_ref()) {
                Vec::new()
            } else {
                new_members(&name)
            };
            if add.is_empty() {
                out.extend_from_slice(line);
            } else {
                let mut f: Vec<Vec<u8>> = fields(line).into_iter().map(<[u8]>::to_vec).collect();
                f.resize(f.len().max(members_field + 1), Vec::new());
                let list = &mut f[members_field];
                for user in add {
                    if !list.is_empty() {
                        list.push(b',');
                    }
                    list.extend_from_slice(user.as_bytes());
                }
                out.extend_from_slice(&f.join(&b':'));
            }
            out.push(b'\n');
        }
        out
    };
    let group_base = if a.memberships.is_empty() {
        group.clone()
    } else {
        add_members(&group, 3)
    };
    let new_group = insert_before_nis(
        &group_base,
        a.groups
            .iter()
            .map(|g| {
                format!("{}:x:{}:{}", g.name, g.gid, new_members(&g.name).join(",")).into_bytes()
            })
            .collect(),
    );
    let gshadow_names: HashSet<&[u8]> = lines(&gshadow).into_iter().map(first_field).collect();
    let gshadow_base = if a.memberships.is_empty() {
        gshadow.clone()
    } else {
        add_members(&gshadow, 3)
    };
    let new_gshadow = insert_before_nis(
        &gshadow_base,
        a.groups
            .iter()
            .filter(|g| !gshadow_names.contains(g.name.as_bytes()))
            .map(|g| format!("{}:!*::{}", g.name, new_members(&g.name).join(",")).into_bytes())
            .collect(),
    );

    // Secret files of a new root: readable by group shadow where the root has one.
    let secret_owner = match plan.accounts.gid_of("shadow") {
        Some(gid) => (0o640, 0, gid),
        None => (0o600, 0, 0),
    };
    let mut changes = Vec::new();
    // The order of the renames: secrets first, a group before the user that needs it.
    for (name, old, new, fresh) in [
        ("gshadow", &files.gshadow, new_gshadow, secret_owner),
        ("group", &files.group, new_group, (0o644, 0, 0)),
        ("shadow", &files.shadow, new_shadow, secret_owner),
        ("passwd", &files.passwd, new_passwd, (0o644, 0, 0)),
    ] {
        let unchanged = match old {
            Some(f) => f.bytes == new,
            None => new.is_empty(),
        };
        if unchanged {
            continue;
        }
        let (mode, uid, gid) = old.as_ref().and_then(|f| f.meta).unwrap_or(fresh);
        changes.push(Change {
            name,
            bytes: new,
            mode,
            uid,
            gid,
        });
    }
    Ok((plan, changes))
}

/// `text` with `new` lines inserted before its first NIS (`+`/`-`) line, or at its end; a
/// missing final newline is added. `text` comes back unchanged when `new` is empty.
fn insert_before_nis(text: &[u8], new: Vec<Vec<u8>>) -> Vec<u8> {
    if new.is_empty() {
        return text.to_vec();
    }
    let old = lines(text);
    let at = old.iter().position(|l| is_nis(l)).unwrap_or(old.len());
    let mut out = Vec::with_capacity(text.len() + new.iter().map(|l| l.len() + 1).sum::<usize>());
    for line in old[..at]
        .iter()
        .copied()
        .chain(new.iter().map(Vec::as_slice))
        .chain(old[at..].iter().copied())
    {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn write_changes(etc: &Etc, changes: &[Change]) -> Result<(), Error> {
    let mut temps: Vec<String> = Vec::new();
    for c in changes {
        match etc.write_temp(c.name, &c.bytes, c.mode, c.uid, c.gid) {
            Ok(t) => temps.push(t),
            Err(e) => {
                temps.iter().for_each(|t| etc.unlink(t));
                return Err(e);
            }
        }
    }
    for (i, (c, temp)) in changes.iter().zip(&temps).enumerate() {
        if let Err(e) = etc.rename(temp, c.name) {
            temps[i..].iter().for_each(|t| etc.unlink(t));
            return Err(e);
        }
    }
    etc.sync()
}

/// What changed between two loads of the accounts, for the report of a target tool's run.
fn diff(before: &Accounts, after: &Accounts, entries: &[Entry]) -> Applied {
    let mut applied = Applied::default();
    let mut groups: Vec<NewGroup> = after
        .groups
        .iter()
        .filter(|(name, _)| !before.groups.contains_key(*name))
        .map(|(name, &gid)| NewGroup {
            name: name.clone(),
            gid,
        })
        .collect();
    groups.sort_by(|a, b| b.gid.cmp(&a.gid).then(a.name.cmp(&b.name)));
    applied.groups = groups;
    let mut users: Vec<NewUser> = after
        .users
        .iter()
        .filter(|(name, _)| !before.users.contains_key(*name))
        .map(|(name, &(uid, gid))| {
            let decl = entries.iter().find_map(|e| match &e.item {
                Item::User {
                    name: n,
                    gecos,
                    home,
                    shell,
                    locked,
                    ..
                } if n == name => Some((gecos.clone(), home.clone(), shell.clone(), *locked)),
                _ => None,
            });
            let (gecos, home, shell, locked) = decl.unwrap_or_default();
            NewUser {
                name: name.clone(),
                uid,
                gid,
                gecos: gecos.unwrap_or_default(),
                home: home.unwrap_or_else(|| "/".to_owned()),
                shell: shell.unwrap_or_else(|| NOLOGIN.to_owned()),
                locked,
            }
        })
        .collect();
    users.sort_by(|a, b| b.uid.cmp(&a.uid).then(a.name.cmp(&b.name)));
    applied.users = users;
    let mut memberships: BTreeSet<(String, String)> = BTreeSet::new();
    for (group, list) in &after.members {
        for user in list {
            if !before.is_member(user, group) {
                memberships.insert((user.clone(), group.clone()));
            }
        }
    }
    applied.memberships = memberships.into_iter().collect();
    applied
}

// ---------------------------------------------------------------------------------------------
// The target's own tool

/// The target's sysusers tool (path inside the root, e.g. `/usr/bin/systemd-sysusers`), if it
/// has an executable one. Looked up as if chrooted.
pub fn find_target_tool(root: &Path) -> Result<Option<String>, Error> {
    let rootfd = RootFd::open(root)?;
    for tool in TARGET_TOOLS {
        let Ok(fd) = rustix::fs::openat2(
            &rootfd.fd,
            tool,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            continue;
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
            && st.st_mode & 0o111 != 0
        {
            return Ok(Some(format!("/{tool}")));
        }
    }
    Ok(None)
}

/// The lines given to a target tool: each `u`/`g`/`m` entry re-written in a canonical form
/// with single-quoted fields (opensysusers `eval`s its lines in a shell, so nothing from a
/// package may reach it unquoted); `r` and unknown lines are not passed. A field holding `'`,
/// `\` or `%` cannot be quoted the same way for every tool and is refused.
pub fn tool_lines(entries: &[Entry]) -> Result<Vec<String>, Error> {
    let quote = |e: &Entry, v: &str| -> Result<String, Error> {
        if v.contains(['\'', '\\', '%']) {
            return Err(Error::Tool {
                tool: "sysusers".to_owned(),
                message: format!(
                    "{}:{}: '{v}' cannot be passed to the target's tool safely (it holds ', \\ \
                     or %)",
                    e.file, e.line
                ),
            });
        }
        Ok(format!("'{v}'"))
    };
    let opt = |e: &Entry, v: &Option<String>| match v {
        Some(v) => quote(e, v),
        None => Ok("-".to_owned()),
    };
    let mut out = Vec::new();
    for e in entries {
        out.push(match &e.item {
            Item::User {
                name,
                id,
                gecos,
                home,
                shell,
                locked,
            } => {
                let id = match id {
                    UserId::Auto => "-".to_owned(),
                    UserId::Uid(n) => n.to_string(),
                    UserId::Path(p) => quote(e, p)?,
                    UserId::WithGroup { uid, group } => format!(
                        "{}:{}",
                        uid.map_or("-".to_owned(), |u| u.to_string()),
                        match group {
                            GroupRef::Gid(g) => g.to_string(),
                            GroupRef::Name(g) => g.clone(),
                        }
                    ),
                };
                format!(
                    "{} {name} {id} {} {} {}",
                    if *locked { "u!" } else { "u" },
                    opt(e, gecos)?,
                    opt(e, home)?,
                    opt(e, shell)?
                )
            }
            Item::Group { name, id } => {
                let id = match id {
                    GroupId::Auto => "-".to_owned(),
                    GroupId::Gid(n) => n.to_string(),
                    GroupId::Path(p) => quote(e, p)?,
                };
                format!("g {name} {id}")
            }
            Item::Member { user, group } => format!("m {user} {group}"),
        });
    }
    Ok(out)
}

/// Run the target's own `systemd-sysusers` or `sysusers` (opensysusers) with `confs`' lines
/// (`--inline`, see [`tool_lines`]), chrooted into `root` unless it is `/`. Ok(false) when the
/// root has no such tool; an error when it fails (its stderr in the message). The lines are
/// parsed and checked first, so a bad file is refused the same way with or without a tool.
/// Do not hold a [`PwdLock`] while calling this: the tool takes the lock itself.
pub fn run_target_tool(root: &Path, confs: &[(String, String)]) -> Result<bool, Error> {
    let (entries, _) = parse_all(confs)?;
    let Some(tool) = find_target_tool(root)? else {
        return Ok(false);
    };
    let lines = tool_lines(&entries)?;
    if lines.is_empty() {
        return Ok(true);
    }
    let chroot = std::fs::canonicalize(root)
        .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
    let mut cmd = Command::new(&tool);
    cmd.arg("--inline")
        .args(&lines)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if chroot != Path::new("/") {
        let dir = chroot.clone();
        // SAFETY: between fork and exec only chroot(2) and chdir(2) run, both
        // async-signal-safe system calls; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::chroot(&dir)?;
                rustix::process::chdir("/")?;
                Ok(())
            });
        }
    }
    let shown = if chroot == Path::new("/") {
        tool.clone()
    } else {
        format!("{} (chrooted into {})", tool, chroot.display())
    };
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut message: String = stderr.trim().chars().take(2000).collect();
        if message.is_empty() {
            message = "(no message)".to_owned();
        }
        return Err(Error::Tool {
            tool: shown,
            message: format!("{}: {message}", out.status),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use tempfile::TempDir;

    fn conf(name: &str, text: &str) -> (String, String) {
        (name.to_owned(), text.to_owned())
    }

    /// A root whose etc holds `files` (name, content, mode).
    fn root_with(files: &[(&str, &[u8], u32)]) -> TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        for (name, content, mode) in files {
            let path = root.path().join("etc").join(name);
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        root
    }

    fn read(root: &Path, name: &str) -> String {
        fs::read_to_string(root.join("etc").join(name)).unwrap()
    }

    fn meta(root: &Path, name: &str) -> fs::Metadata {
        fs::symlink_metadata(root.join("etc").join(name)).unwrap()
    }

    fn today() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
    }

    fn no_wait() -> Options {
        Options {
            lock_timeout: Duration::ZERO,
            ..Options::default()
        }
    }

    fn etc_listing(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn user(name: &str, id: UserId) -> Item {
        Item::User {
            name: name.to_owned(),
            id,
            gecos: None,
            home: None,
            shell: None,
            locked: false,
        }
    }

    #[test]
    fn parses_every_line_form() {
        let text = r#"# Type Name ID GECOS Home Shell

u polkitd - "PolicyKit daemon"
u! locked 450 "Locked one" /var/lib/locked /bin/false
u pair 460:470
u named -:utmp
u byname 480:utmp "x" - -
u file /usr/bin/thing
  g input -
g kvm 78
g owned /dev/kvm
m polkitd input
r - 500-900
x weird line
u pct - "100%% sure"
u 'quoted' - 'single "quoted"' "/home/with space" -
u esc - a\ b\"c
"#;
        let p = parse("test.conf", text).unwrap();
        let got: Vec<(usize, Item)> = p.entries.iter().map(|e| (e.line, e.item.clone())).collect();
        let expected = vec![
            (
                3,
                Item::User {
                    name: "polkitd".into(),
                    id: UserId::Auto,
                    gecos: Some("PolicyKit daemon".into()),
                    home: None,
                    shell: None,
                    locked: false,
                },
            ),
            (
                4,
                Item::User {
                    name: "locked".into(),
                    id: UserId::Uid(450),
                    gecos: Some("Locked one".into()),
                    home: Some("/var/lib/locked".into()),
                    shell: Some("/bin/false".into()),
                    locked: true,
                },
            ),
            (
                5,
                user(
                    "pair",
                    UserId::WithGroup {
                        uid: Some(460),
                        group: GroupRef::Gid(470),
                    },
                ),
            ),
            (
                6,
                user(
                    "named",
                    UserId::WithGroup {
                        uid: None,
                        group: GroupRef::Name("utmp".into()),
                    },
                ),
            ),
            (
                7,
                Item::User {
                    name: "byname".into(),
                    id: UserId::WithGroup {
                        uid: Some(480),
                        group: GroupRef::Name("utmp".into()),
                    },
                    gecos: Some("x".into()),
                    home: None,
                    shell: None,
                    locked: false,
                },
            ),
            (8, user("file", UserId::Path("/usr/bin/thing".into()))),
            (
                9,
                Item::Group {
                    name: "input".into(),
                    id: GroupId::Auto,
                },
            ),
            (
                10,
                Item::Group {
                    name: "kvm".into(),
                    id: GroupId::Gid(78),
                },
            ),
            (
                11,
                Item::Group {
                    name: "owned".into(),
                    id: GroupId::Path("/dev/kvm".into()),
                },
            ),
            (
                12,
                Item::Member {
                    user: "polkitd".into(),
                    group: "input".into(),
                },
            ),
            (
                15,
                Item::User {
                    name: "pct".into(),
                    id: UserId::Auto,
                    gecos: Some("100% sure".into()),
                    home: None,
                    shell: None,
                    locked: false,
                },
            ),
            (
                16,
                Item::User {
                    name: "quoted".into(),
                    id: UserId::Auto,
                    gecos: Some("single \"quoted\"".into()),
                    home: Some("/home/with space".into()),
                    shell: None,
                    locked: false,
                },
            ),
            (
                17,
                Item::User {
                    name: "esc".into(),
                    id: UserId::Auto,
                    gecos: Some("a b\"c".into()),
                    home: None,
                    shell: None,
                    locked: false,
                },
            ),
        ];
        assert_eq!(got, expected);
        assert!(p.entries.iter().all(|e| e.file == "test.conf"));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].starts_with("test.conf:13: 'r'"),
            "{:?}",
            p.warnings
        );
        assert!(
            p.warnings[1].starts_with("test.conf:14: unknown line type 'x'"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        for (line, says) in [
            ("u 1abc -", "invalid user or group name '1abc'"),
            ("u -abc -", "invalid user or group name '-abc'"),
            ("u a.b -", "invalid user or group name 'a.b'"),
            (
                "u abcdefghijklmnopqrstuvwxyz0123456 -",
                "invalid user or group name",
            ),
            ("u -", "a u line needs a name"),
            ("u foo abc", "invalid id 'abc'"),
            ("u foo 99999999999", "invalid id"),
            ("u foo -1", "invalid id"),
            ("u foo 65535", "id 65535 is reserved"),
            ("u foo 4294967295", "reserved"),
            ("u foo 5:1x", "invalid user or group name '1x'"),
            ("u foo 5:", "invalid id ''"),
            ("u foo - \"a:b\"", "may not contain ':'"),
            (
                "u foo - - relative",
                "home 'relative' must be an absolute path",
            ),
            (
                "u foo - - / nologin",
                "shell 'nologin' must be an absolute path",
            ),
            ("u foo - - / /bin/sh extra", "too many fields"),
            ("u foo - \"%H\"", "specifier %H"),
            ("u foo - \"unterminated", "unterminated"),
            ("u foo - trailing\\", "backslash"),
            ("g foo - \"gecos\"", "'g' lines take no GECOS field"),
            ("g foo - - /home", "take no home field"),
            ("g foo 1:2", "invalid id '1:2'"),
            ("m foo", "an m line needs a group"),
            ("m foo -", "an m line needs a group"),
            ("m foo bar baz", "'m' lines take no GECOS field"),
        ] {
            let text = format!("# first line\n{line}\n");
            let err = parse("bad.conf", &text).expect_err(line);
            assert!(
                matches!(err, Error::Syntax { line: 2, .. }),
                "{line}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.starts_with("bad.conf:2: "), "{line}: {msg}");
            assert!(msg.contains(says), "{line}: {msg}");
            let engine = err.into_engine("polkit");
            assert_eq!(engine.kind(), crate::ErrorKind::Verification);
            assert!(engine.to_string().starts_with("polkit: "), "{engine}");
        }
    }

    /// An empty root (no etc at all) gets etc and all four files, with the documented modes.
    #[test]
    fn creates_into_an_empty_root() {
        let root = tempfile::tempdir().unwrap();
        let confs = [conf(
            "polkit.conf",
            "g utmp -\nu polkitd - \"PolicyKit daemon\" /var/lib/polkit-1\nm polkitd utmp\n",
        )];
        let applied = apply(root.path(), &confs, &no_wait()).unwrap();
        let r = root.path();
        assert_eq!(
            applied.groups,
            vec![
                NewGroup {
                    name: "utmp".into(),
                    gid: 999
                },
                NewGroup {
                    name: "polkitd".into(),
                    gid: 998
                }
            ]
        );
        assert_eq!(
            applied.users,
            vec![NewUser {
                name: "polkitd".into(),
                uid: 998,
                gid: 998,
                gecos: "PolicyKit daemon".into(),
                home: "/var/lib/polkit-1".into(),
                shell: NOLOGIN.into(),
                locked: false,
            }]
        );
        assert_eq!(
            applied.memberships,
            vec![("polkitd".to_owned(), "utmp".to_owned())]
        );
        assert_eq!(applied.written, ["gshadow", "group", "shadow", "passwd"]);
        assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);
        assert_eq!(
            applied.to_string(),
            "created group utmp (999), group polkitd (998), user polkitd (998:998), \
             polkitd in group utmp"
        );
        assert_eq!(
            read(r, "passwd"),
            "polkitd:x:998:998:PolicyKit daemon:/var/lib/polkit-1:/usr/sbin/nologin\n"
        );
        assert_eq!(read(r, "group"), "utmp:x:999:polkitd\npolkitd:x:998:\n");
        assert_eq!(read(r, "shadow"), format!("polkitd:!*:{}::::::\n", today()));
        assert_eq!(read(r, "gshadow"), "utmp:!*::polkitd\npolkitd:!*::\n");
        for (name, mode) in [
            ("passwd", 0o644),
            ("group", 0o644),
            ("shadow", 0o600),
            ("gshadow", 0o600),
            (".pwd.lock", 0o600),
        ] {
            let m = meta(r, name);
            assert_eq!(m.mode() & 0o7777, mode, "{name}");
            assert_eq!((m.uid(), m.gid()), (0, 0), "{name}");
        }
        // No temporary file is left behind.
        assert_eq!(
            etc_listing(r),
            [".pwd.lock", "group", "gshadow", "passwd", "shadow"]
        );
        // What the unpacker resolves afterwards.
        let acc = Accounts::load(r).unwrap();
        assert_eq!(acc.uid_of("polkitd"), Some(998));
        assert_eq!(acc.gid_of("polkitd"), Some(998));
        assert_eq!(acc.gid_of("utmp"), Some(999));
        assert_eq!(acc.user_name(998), Some("polkitd"));
        assert_eq!(acc.group_name(999), Some("utmp"));
        assert!(acc.is_member("polkitd", "utmp"));
    }

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
messagebus:x:999:999::/nonexistent:/usr/sbin/nologin\n\
old:x:997:100:Caf\xe9 owner:/:/bin/sh\n\
+::::::\n";
    const GROUP: &[u8] = b"root:x:0:\nmessagebus:x:999:\nutmp:x:998:\nusers:x:100:\nshadow:x:42:\n";
    const SHADOW: &[u8] = b"root:*:19000:0:99999:7:::\nmessagebus:!:19000::::::\n";
    const GSHADOW: &[u8] = b"root:*::\nutmp:!::\n";

    fn existing_root() -> TempDir {
        let root = root_with(&[
            ("passwd", PASSWD, 0o644),
            ("group", GROUP, 0o644),
            ("shadow", SHADOW, 0o640),
            ("gshadow", GSHADOW, 0o640),
        ]);
        for name in ["shadow", "gshadow"] {
            std::os::unix::fs::chown(root.path().join("etc").join(name), Some(0), Some(42))
                .unwrap();
        }
        root
    }

    /// Existing entries stay byte for byte, their ids are skipped, NIS lines stay last, and a
    /// second run changes nothing at all.
    #[test]
    fn existing_entries_are_kept_and_their_ids_skipped() {
        let root = existing_root();
        let r = root.path();
        let confs = [conf(
            "pkg.conf",
            "u polkitd -\n\
             u messagebus 500 \"would change it\" /home/mb /bin/sh\n\
             g utmp 5\n\
             u fixed 450\n\
             u taken 999\n",
        )];
        let applied = apply(r, &confs, &no_wait()).unwrap();
        let ids: Vec<(&str, u32, u32)> = applied
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.uid, u.gid))
            .collect();
        // 999 and 998 are messagebus' and utmp's gids, 997 is old's uid.
        assert_eq!(
            ids,
            [
                ("polkitd", 996, 996),
                ("fixed", 450, 450),
                ("taken", 995, 995)
            ]
        );
        let groups: Vec<(&str, u32)> = applied
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.gid))
            .collect();
        assert_eq!(groups, [("polkitd", 996), ("fixed", 450), ("taken", 995)]);
        assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
        assert!(
            applied.warnings[0]
                .contains("pkg.conf:5: uid 999 for user taken is taken by messagebus"),
            "{:?}",
            applied.warnings
        );

        let passwd = fs::read(r.join("etc/passwd")).unwrap();
        let kept = &PASSWD[..PASSWD.len() - b"+::::::\n".len()];
        assert!(
            passwd.starts_with(kept),
            "{}",
            String::from_utf8_lossy(&passwd)
        );
        assert_eq!(
            &passwd[kept.len()..],
            b"polkitd:x:996:996::/:/usr/sbin/nologin\n\
fixed:x:450:450::/:/usr/sbin/nologin\n\
taken:x:995:995::/:/usr/sbin/nologin\n\
+::::::\n"
        );
        assert_eq!(
            read(r, "group"),
            format!(
                "{}polkitd:x:996:\nfixed:x:450:\ntaken:x:995:\n",
                String::from_utf8_lossy(GROUP)
            )
        );
        let d = today();
        assert_eq!(
            read(r, "shadow"),
            format!(
                "{}polkitd:!*:{d}::::::\nfixed:!*:{d}::::::\ntaken:!*:{d}::::::\n",
                String::from_utf8_lossy(SHADOW)
            )
        );
        assert_eq!(
            read(r, "gshadow"),
            format!(
                "{}polkitd:!*::\nfixed:!*::\ntaken:!*::\n",
                String::from_utf8_lossy(GSHADOW)
            )
        );
        // Modes and owners of the files are those they had.
        for (name, mode, gid) in [
            ("passwd", 0o644, 0),
            ("group", 0o644, 0),
            ("shadow", 0o640, 42),
            ("gshadow", 0o640, 42),
        ] {
            let m = meta(r, name);
            assert_eq!(
                (m.mode() & 0o7777, m.uid(), m.gid()),
                (mode, 0, gid),
                "{name}"
            );
        }

        // Second run: nothing to do, no file written (same inode, same mtime), no lock taken.
        let before: Vec<(u64, i64, i64)> = FILES
            .iter()
            .map(|n| {
                let m = meta(r, n);
                (m.ino(), m.mtime(), m.mtime_nsec())
            })
            .collect();
        let listing = etc_listing(r);
        let again = apply(r, &confs, &no_wait()).unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert!(again.written.is_empty());
        assert_eq!(again.to_string(), "no users or groups to create");
        let after: Vec<(u64, i64, i64)> = FILES
            .iter()
            .map(|n| {
                let m = meta(r, n);
                (m.ino(), m.mtime(), m.mtime_nsec())
            })
            .collect();
        assert_eq!(before, after);
        assert_eq!(etc_listing(r), listing);
    }

    #[test]
    fn memberships_are_added_once() {
        let root = root_with(&[
            (
                "passwd",
                b"alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
                0o644,
            ),
            ("group", b"utmp:x:998:alice\nnoshadow:x:997:\n", 0o644),
            ("gshadow", b"utmp:!::alice\n", 0o600),
        ]);
        let r = root.path();
        let confs = [conf(
            "m.conf",
            "m bob utmp\nm alice utmp\nm bob utmp\nm bob noshadow\n",
        )];
        let applied = apply(r, &confs, &no_wait()).unwrap();
        assert_eq!(
            applied.memberships,
            [
                ("bob".to_owned(), "utmp".to_owned()),
                ("bob".to_owned(), "noshadow".to_owned())
            ]
        );
        assert!(applied.users.is_empty() && applied.groups.is_empty());
        assert_eq!(applied.written, ["gshadow", "group"]);
        assert_eq!(
            read(r, "group"),
            "utmp:x:998:alice,bob\nnoshadow:x:997:bob\n"
        );
        // A group without a gshadow line gets none.
        assert_eq!(read(r, "gshadow"), "utmp:!::alice,bob\n");
        assert!(!r.join("etc/shadow").exists());
        let again = apply(r, &confs, &no_wait()).unwrap();
        assert!(again.is_empty() && again.written.is_empty(), "{again:?}");
        assert_eq!(
            read(r, "group"),
            "utmp:x:998:alice,bob\nnoshadow:x:997:bob\n"
        );

        // An m line for a user and a group nobody declares creates both, as systemd does.
        let applied = apply(r, &[conf("n.conf", "m newuser newgroup\n")], &no_wait()).unwrap();
        let groups: Vec<&str> = applied.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(groups, ["newgroup", "newuser"]);
        assert_eq!(applied.users.len(), 1);
        assert_eq!(applied.users[0].name, "newuser");
        let acc = Accounts::load(r).unwrap();
        assert!(acc.is_member("newuser", "newgroup"));
        assert_eq!(acc.primary_gid_of("newuser"), acc.gid_of("newuser"));
    }

    #[test]
    fn login_defs_ranges_are_used() {
        let root = root_with(&[(
            "login.defs",
            b"# comment\nSYS_UID_MIN 200\nSYS_UID_MAX 201\nSYS_GID_MIN\t300\nSYS_GID_MAX   301\n",
            0o644,
        )]);
        let r = root.path();
        let applied = apply(r, &[conf("a.conf", "u a -\nu b -\n")], &no_wait()).unwrap();
        let ids: Vec<(&str, u32, u32)> = applied
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.uid, u.gid))
            .collect();
        // Separate ranges: the group's number is not reused as uid outside the uid range.
        assert_eq!(ids, [("a", 201, 301), ("b", 200, 300)]);

        // Ranges exhausted: an error naming the line, and nothing written.
        let listing = etc_listing(r);
        let passwd = read(r, "passwd");
        let err = apply(r, &[conf("c.conf", "u c -\n")], &no_wait()).unwrap_err();
        assert!(matches!(err, Error::Unsatisfiable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "c.conf:1: no free system gid in 300-301 for group c"
        );
        assert_eq!(etc_listing(r), listing);
        assert_eq!(read(r, "passwd"), passwd);
        assert!(matches!(
            err.into_engine("pkg").kind(),
            crate::ErrorKind::Conflict
        ));

        // login.defs as a symlink is resolved inside the root, never on the host.
        let root = root_with(&[]);
        let r = root.path();
        fs::create_dir_all(r.join("usr/share")).unwrap();
        fs::write(
            r.join("usr/share/login.defs"),
            "SYS_UID_MAX 555\nSYS_GID_MAX 555\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/share/login.defs", r.join("etc/login.defs")).unwrap();
        let applied = apply(r, &[conf("d.conf", "u d -\n")], &no_wait()).unwrap();
        assert_eq!((applied.users[0].uid, applied.users[0].gid), (555, 555));
    }

    #[test]
    fn login_defs_parsing() {
        let (r, w) = Ranges::from_login_defs("UID_MIN 500\nGID_MIN 600\n");
        assert_eq!(
            r,
            Ranges {
                uid_min: 101,
                uid_max: 499,
                gid_min: 101,
                gid_max: 599
            }
        );
        assert!(w.is_empty());
        let (r, w) = Ranges::from_login_defs("");
        assert_eq!(r, Ranges::default());
        assert!(w.is_empty());
        let (r, w) = Ranges::from_login_defs("SYS_UID_MIN 0\nSYS_GID_MIN 900\nSYS_GID_MAX 800\n");
        assert_eq!(r, Ranges::default());
        assert_eq!(w.len(), 2, "{w:?}");
        let (r, w) = Ranges::from_login_defs("SYS_UID_MAX lots\n#SYS_UID_MIN 5\n");
        assert_eq!(r, Ranges::default());
        assert!(w[0].contains("SYS_UID_MAX 'lots'"), "{w:?}");
    }

    #[test]
    fn id_pairs_group_names_and_paths() {
        let root = root_with(&[("group", b"users:x:100:\n", 0o644)]);
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("usr/bin/thing"), "").unwrap();
        std::os::unix::fs::chown(r.join("usr/bin/thing"), Some(321), Some(322)).unwrap();
        fs::write(r.join("usr/bin/other"), "").unwrap();
        std::os::unix::fs::chown(r.join("usr/bin/other"), Some(0), Some(333)).unwrap();
        // A symlink to an absolute path resolves inside the root.
        std::os::unix::fs::symlink("/usr/bin/other", r.join("usr/bin/link")).unwrap();
        let confs = [conf(
            "ids.conf",
            "g grp 600\n\
             u x 601:600\n\
             u y -:grp\n\
             u z -:users\n\
             u thing /usr/bin/thing\n\
             u nofile /usr/bin/missing\n\
             g linked /usr/bin/link\n",
        )];
        let applied = apply(r, &confs, &no_wait()).unwrap();
        let ids: Vec<(&str, u32, u32)> = applied
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.uid, u.gid))
            .collect();
        assert_eq!(
            ids,
            [
                ("x", 601, 600),
                ("y", 998, 600),
                ("z", 997, 100),
                ("thing", 321, 322),
                ("nofile", 999, 999)
            ]
        );
        let groups: Vec<(&str, u32)> = applied
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.gid))
            .collect();
        // No group x, y or z: their lines name their primary group.
        assert_eq!(
            groups,
            [
                ("grp", 600),
                ("linked", 333),
                ("thing", 322),
                ("nofile", 999)
            ]
        );

        for (line, says) in [
            (
                "u bad 700:nosuch\n",
                "ids.conf:1: primary group nosuch of user bad does not exist",
            ),
            (
                "u bad -:12345\n",
                "ids.conf:1: primary gid 12345 of user bad",
            ),
        ] {
            let err = apply(r, &[conf("ids.conf", line)], &no_wait()).unwrap_err();
            assert!(err.to_string().starts_with(says), "{err}");
        }
    }

    #[test]
    fn symlinks_are_refused_never_followed() {
        // etc/passwd pointing out of the root (here: to a file outside it).
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("passwd");
        fs::write(&target, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let root = root_with(&[]);
        let r = root.path();
        std::os::unix::fs::symlink(&target, r.join("etc/passwd")).unwrap();
        let confs = [conf("p.conf", "u polkitd -\n")];
        let err = apply(r, &confs, &no_wait()).unwrap_err();
        assert!(
            matches!(&err, Error::Unsafe { path, .. } if path.ends_with("etc/passwd")),
            "{err:?}"
        );
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            Error::Unsafe {
                path: r.join("etc/passwd"),
                reason: "x".into()
            }
            .into_engine("p")
            .kind(),
            crate::ErrorKind::Conflict
        );
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        assert!(matches!(Accounts::load(r), Err(Error::Unsafe { .. })));
        assert!(matches!(plan(r, &confs), Err(Error::Unsafe { .. })));
        assert!(
            fs::symlink_metadata(r.join("etc/passwd"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        // etc itself a symlink out of the root.
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("etc")).unwrap();
        let err = apply(root.path(), &confs, &no_wait()).unwrap_err();
        assert!(
            matches!(&err, Error::Unsafe { path, .. } if path.ends_with("etc")),
            "{err:?}"
        );
        assert!(!outside.path().join("group").exists());
        assert!(!outside.path().join(".pwd.lock").exists());
        assert!(matches!(
            PwdLock::acquire(root.path(), Duration::ZERO),
            Err(Error::Unsafe { .. })
        ));

        // A FIFO is not read (it would block).
        let root = root_with(&[]);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.path().join("etc/group"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = apply(root.path(), &confs, &no_wait()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    /// Files keep odd modes and owners; new secret files follow the root's shadow group.
    #[test]
    fn modes_and_owners_are_kept() {
        let root = root_with(&[
            ("passwd", b"root:x:0:0::/root:/bin/sh\n", 0o600),
            ("group", b"root:x:0:\nshadow:x:42:\n", 0o664),
        ]);
        let r = root.path();
        std::os::unix::fs::chown(r.join("etc/passwd"), Some(1), Some(2)).unwrap();
        std::os::unix::fs::chown(r.join("etc/group"), Some(3), Some(4)).unwrap();
        apply(r, &[conf("a.conf", "u! daemonish -\n")], &no_wait()).unwrap();
        for (name, want) in [
            ("passwd", (0o600, 1, 2)),
            ("group", (0o664, 3, 4)),
            ("shadow", (0o640, 0, 42)),
            ("gshadow", (0o640, 0, 42)),
        ] {
            let m = meta(r, name);
            assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), want, "{name}");
        }
        // u! also expires the account (expire = 1).
        assert_eq!(
            read(r, "shadow"),
            format!("daemonish:!*:{}:::::1:\n", today())
        );
    }

    /// The name of the environment variable that turns `lock_helper_process` into the second
    /// process of the lock tests.
    const HELPER: &str = "SPK_SYSUSERS_LOCK_HELPER";

    /// Not a test of its own: run by the lock tests as a second process. It takes the lock
    /// file the way glibc's lckpwdf does (a classic POSIX write lock of the whole file,
    /// F_SETLK) and says `LOCKED` or `BUSY`; with `hold`, it keeps the lock until its stdin
    /// closes.
    #[test]
    fn lock_helper_process() {
        let Some(spec) = std::env::var_os(HELPER) else {
            return;
        };
        let spec = spec.into_string().unwrap();
        let (mode, path) = spec.split_once(':').unwrap();
        let f = fs::OpenOptions::new().write(true).open(path).unwrap();
        let locked =
            rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        // On a line of its own: libtest writes "test NAME ... " before it.
        println!(
            "\nlock-helper: {}",
            if locked.is_ok() { "LOCKED" } else { "BUSY" }
        );
        io::stdout().flush().unwrap();
        if mode == "hold" {
            let mut sink = Vec::new();
            io::stdin().read_to_end(&mut sink).unwrap();
        }
    }

    fn helper(mode: &str, lock: &Path) -> (std::process::Child, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "sysusers::tests::lock_helper_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER, format!("{mode}:{}", lock.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the helper ended without saying: {said}"
            );
            if let Some(word) = line.trim().strip_prefix("lock-helper: ") {
                said = word.to_owned();
                break;
            }
            said.push_str(&line);
        }
        // The rest of libtest's output goes nowhere, and the helper never blocks on it.
        std::thread::spawn(move || io::copy(&mut out, &mut io::sink()));
        (child, said)
    }

    /// While another process holds etc/.pwd.lock (as useradd would), apply waits and then
    /// fails without touching anything; while spk holds it, another process cannot take it.
    #[test]
    fn the_shadow_utils_lock_excludes_other_processes() {
        let root = root_with(&[]);
        let r = root.path();
        let lock_path = r.join("etc/.pwd.lock");
        fs::write(&lock_path, "").unwrap();
        let confs = [conf("p.conf", "u polkitd -\n")];

        let (mut holder, said) = helper("hold", &lock_path);
        assert_eq!(said, "LOCKED");
        let err = apply(r, &confs, &no_wait()).unwrap_err();
        assert!(
            matches!(&err, Error::Locked { path, .. } if *path == lock_path),
            "{err:?}"
        );
        assert!(err.to_string().contains("holds the lock"), "{err}");
        assert_eq!(err.into_engine("p").kind(), crate::ErrorKind::Io);
        assert_eq!(etc_listing(r), [".pwd.lock"]);
        drop(holder.stdin.take());
        assert!(holder.wait().unwrap().success());
        // Waiting briefly, as spkd does: an OFD lock belongs to the open file description,
        // and a child that another test forks meanwhile holds a copy of it until it execs
        // (seen once in 20 runs of the whole suite, with no wait).
        let wait = Options {
            lock_timeout: Duration::from_secs(5),
            ..Options::default()
        };
        apply(r, &confs, &wait).unwrap();
        assert!(read(r, "passwd").starts_with("polkitd:"));

        let lock = PwdLock::acquire(r, Duration::from_secs(5)).unwrap();
        assert_eq!(lock.path(), lock_path);
        let (mut probe, said) = helper("probe", &lock_path);
        assert_eq!(said, "BUSY");
        assert!(probe.wait().unwrap().success());
        // Also another holder inside this process (another thread of spkd).
        assert!(matches!(
            PwdLock::acquire(r, Duration::ZERO),
            Err(Error::Locked { .. })
        ));
        drop(lock);
        let (mut probe, said) = helper("probe", &lock_path);
        assert_eq!(said, "LOCKED");
        assert!(probe.wait().unwrap().success());
    }

    #[test]
    fn plan_writes_nothing_and_feeds_the_resolver() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let confs = [conf("p.conf", "u polkitd - \"PolicyKit\"\ng utmp 43\n")];
        let planned = plan(r, &confs).unwrap();
        assert_eq!(planned.written, ["gshadow", "group", "shadow", "passwd"]);
        assert_eq!(fs::read_dir(r).unwrap().count(), 0, "plan wrote something");
        let acc = Accounts::load(r).unwrap();
        assert_eq!(acc.uid_of("polkitd"), None);
        let acc = acc.with_planned(&planned);
        assert_eq!(acc.uid_of("polkitd"), Some(999));
        assert_eq!(acc.gid_of("utmp"), Some(43));
        assert_eq!(acc.user_name(999), Some("polkitd"));
        assert_eq!(acc.group_name(43), Some("utmp"));
        // apply does what plan said.
        let applied = apply(r, &confs, &no_wait()).unwrap();
        assert_eq!(applied, planned);
    }

    #[test]
    fn accounts_read_the_files_like_getpwnam() {
        let acc = Accounts::from_files(
            b"root:x:0:0::/root:/bin/sh\n+nisuser::::::\nbroken\ndup:x:5:5::/:/bin/sh\n\
              dup:x:6:6::/:/bin/sh\nsame:x:5:7::/:/bin/sh\nbad:x:abc:1::/:/bin/sh\n",
            b"root:x:0:\nwheel:x:10:root,dup\n-nis\nwheel:x:11:\n",
        );
        assert_eq!(acc.uid_of("root"), Some(0));
        assert_eq!(acc.uid_of("dup"), Some(5));
        assert_eq!(acc.primary_gid_of("dup"), Some(5));
        assert_eq!(acc.user_name(5), Some("dup"));
        assert_eq!(acc.uid_of("same"), Some(5));
        assert_eq!(acc.uid_of("nisuser"), None);
        assert_eq!(acc.uid_of("+nisuser"), None);
        assert_eq!(acc.uid_of("bad"), None);
        assert_eq!(acc.uid_of("broken"), None);
        assert_eq!(acc.gid_of("wheel"), Some(10));
        assert_eq!(acc.group_name(11), Some("wheel"));
        assert_eq!(acc.group_name(12), None);
        assert!(acc.is_member("dup", "wheel"));
        assert!(!acc.is_member("same", "wheel"));
        // A root without etc has no accounts, and that is not an error.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(Accounts::load(empty.path()).unwrap().uid_of("root"), None);
    }

    /// Files are taken in the order of their names; the first declaration of a name wins.
    #[test]
    fn first_file_by_name_wins() {
        let root = tempfile::tempdir().unwrap();
        let confs = [
            conf("b.conf", "u shared 500 \"from b\"\n"),
            conf("a.conf", "u shared 501 \"from a\"\n"),
        ];
        let applied = apply(root.path(), &confs, &no_wait()).unwrap();
        assert_eq!(applied.users.len(), 1);
        assert_eq!(
            (applied.users[0].uid, applied.users[0].gecos.as_str()),
            (501, "from a")
        );
        assert_eq!(
            applied.warnings,
            ["b.conf:1: user shared is already declared at a.conf:1; this line is ignored"]
        );
        // root (uid 0) gets /bin/sh, as in systemd-sysusers.
        let applied = apply(
            root.path(),
            &[conf("r.conf", "u root 0 \"Super User\" /root\n")],
            &no_wait(),
        )
        .unwrap();
        assert_eq!(applied.users[0].shell, "/bin/sh");
        assert_eq!((applied.users[0].uid, applied.users[0].gid), (0, 0));
    }

    #[test]
    fn target_tool_lines_and_absence() {
        let root = tempfile::tempdir().unwrap();
        let confs = [conf("p.conf", "u polkitd -\n")];
        assert_eq!(find_target_tool(root.path()).unwrap(), None);
        assert!(!run_target_tool(root.path(), &confs).unwrap());
        // Asked to prefer the tool, apply does the work itself when there is none.
        let options = Options {
            use_target_tool: true,
            ..no_wait()
        };
        let applied = apply(root.path(), &confs, &options).unwrap();
        assert_eq!(applied.by_tool, None);
        assert_eq!(applied.users.len(), 1);
        // A non-executable file is no tool.
        fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        fs::write(root.path().join("usr/bin/sysusers"), "").unwrap();
        assert_eq!(find_target_tool(root.path()).unwrap(), None);
        fs::set_permissions(
            root.path().join("usr/bin/sysusers"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            find_target_tool(root.path()).unwrap().as_deref(),
            Some("/usr/bin/sysusers")
        );

        // The lines handed to the tool are canonical, single-quoted, and mean the same.
        let text =
            "u! a 5:grp \"The A\" /var/a /bin/false\nu b /x/y\ng c -\nm a c\nr - 1-2\nu d -:7\n";
        let parsed = parse("t.conf", text).unwrap();
        let lines = tool_lines(&parsed.entries).unwrap();
        assert_eq!(
            lines,
            [
                "u! a 5:grp 'The A' '/var/a' '/bin/false'",
                "u b '/x/y' - - -",
                "g c -",
                "m a c",
                "u d -:7 - - -"
            ]
        );
        let again = parse("t.conf", &lines.join("\n")).unwrap();
        let items = |p: &Parsed| p.entries.iter().map(|e| e.item.clone()).collect::<Vec<_>>();
        assert_eq!(items(&again), items(&parsed));
        // What a shell would expand, or a tool unquote differently, is refused.
        for bad in ["u e - \"it's\"", "u e - \"50%%\"", "u e - 'a\\b'"] {
            let p = parse("t.conf", bad).unwrap();
            let err = tool_lines(&p.entries).unwrap_err();
            assert!(err.to_string().contains("cannot be passed"), "{bad}: {err}");
        }
    }

    /// A root holding a static busybox (busybox-static) and, as its sysusers tool, a script
    /// that records its arguments and adds a user the way a real tool would.
    fn root_with_tool(script: &str) -> TempDir {
        let root = root_with(&[
            ("passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644),
            ("group", b"root:x:0:\n", 0o644),
        ]);
        let r = root.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::copy("/bin/busybox", r.join("bin/busybox"))
            .expect("a static /bin/busybox (busybox-static) is needed for this test");
        let tool = r.join("usr/bin/sysusers");
        fs::write(&tool, format!("#!/bin/busybox sh\n{script}")).unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        root
    }

    /// apply with `use_target_tool` runs the root's tool chrooted, with the canonical lines,
    /// and reports what it created.
    #[test]
    fn the_target_tool_runs_chrooted() {
        let root = root_with_tool(
            "for a in \"$@\"; do /bin/busybox echo \"$a\"; done > /tool-args\n\
             /bin/busybox echo polkitd:x:990:990::/:/usr/sbin/nologin >> /etc/passwd\n\
             /bin/busybox echo polkitd:x:990: >> /etc/group\n",
        );
        let r = root.path();
        let confs = [conf(
            "polkit.conf",
            "u polkitd - \"PolicyKit daemon\"\nr - 1-2\n",
        )];
        let options = Options {
            use_target_tool: true,
            ..no_wait()
        };
        let applied = apply(r, &confs, &options).unwrap();
        assert_eq!(applied.by_tool.as_deref(), Some("/usr/bin/sysusers"));
        assert_eq!(
            applied.users,
            [NewUser {
                name: "polkitd".into(),
                uid: 990,
                gid: 990,
                gecos: "PolicyKit daemon".into(),
                home: "/".into(),
                shell: NOLOGIN.into(),
                locked: false,
            }]
        );
        assert_eq!(
            applied.groups,
            [NewGroup {
                name: "polkitd".into(),
                gid: 990
            }]
        );
        assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
        assert!(applied.to_string().ends_with("(by /usr/bin/sysusers)"));
        // It ran inside the root: its "/" was the root.
        assert_eq!(
            fs::read_to_string(r.join("tool-args")).unwrap(),
            "--inline\nu polkitd - 'PolicyKit daemon' - -\n"
        );
        // Without the flag, our own implementation does the work (nothing left to do here).
        let own = apply(r, &confs, &no_wait()).unwrap();
        assert!(own.is_empty() && own.by_tool.is_none(), "{own:?}");
    }

    #[test]
    fn a_failing_target_tool_is_an_error_with_its_message() {
        let root = root_with_tool("/bin/busybox echo \"sysusers: no way\" >&2\nexit 3\n");
        let err = run_target_tool(root.path(), &[conf("p.conf", "u polkitd -\n")]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Tool { .. }), "{err:?}");
        assert!(msg.contains("/usr/bin/sysusers (chrooted into"), "{msg}");
        assert!(msg.contains("exit status: 3: sysusers: no way"), "{msg}");
        // A bad file is refused before the tool runs, as without it.
        let err = run_target_tool(root.path(), &[conf("p.conf", "u 9bad -\n")]).unwrap_err();
        assert!(matches!(err, Error::Syntax { .. }), "{err:?}");
    }
}
