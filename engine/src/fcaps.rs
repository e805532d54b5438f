//! File capabilities: the text `setcap(8)` takes (libcap's `cap_from_text(3)` syntax), the
//! `security.capability` extended attribute the kernel reads at `execve`, and back.
//!
//! An index entry carries e.g. `"capabilities": {"usr/bin/kwin_wayland": "cap_sys_nice=ep"}`;
//! the engine parses the text with [`parse`] (so a bad index is refused before anything is
//! staged), sets it with [`set`] on the staged file, and `verify` compares [`get`] with the
//! parsed value (`FileCaps` compares by meaning, not by spelling).
//!
//! What a file capability can say is narrower than what the text can: the xattr holds a
//! permitted and an inheritable set and ONE effective flag (raise everything permitted at exec,
//! or nothing). libcap's `cap_set_file` therefore refuses (EINVAL) an effective set that is
//! non-empty and does not cover permitted ∪ inheritable (`cap_a+ep cap_b=p`); [`parse`] refuses
//! the same, and also an effective set that names capabilities outside permitted ∪ inheritable
//! (`cap_net_raw=e`), which setcap accepts but silently turns into an empty set — a publisher
//! who wrote that made a mistake we would rather name than hide.
//!
//! Differences from libcap's parser, all stricter: capabilities are given by name only (libcap
//! also takes numbers); flags are lower-case `e`, `i`, `p` (as in libcap; names are
//! case-insensitive, as in libcap). `all` means the 41 capabilities up to
//! `cap_checkpoint_restore` (40), which is what libcap means on a kernel that knows no more.
//!
//! Errors are plain `String`s (what was wrong, quoting the text) for [`parse`] and
//! [`FileCaps::from_xattr`]; the fd functions return `std::io::Error`. Callers wrap them into
//! the engine's error with the package and path.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::str::FromStr;

use rustix::fs::XattrFlags;

/// The extended attribute holding file capabilities.
pub const XATTR_NAME: &str = "security.capability";

/// Names of the Linux capabilities, by number (linux/capability.h), without the `cap_` prefix.
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Highest capability number spk knows (`cap_checkpoint_restore`).
pub const LAST_CAP: u32 = 40;

/// Every known capability, as a mask.
const ALL: u64 = (1u64 << (LAST_CAP + 1)) - 1;

const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// The capabilities of one file: what `security.capability` can hold.
///
/// Invariant: `effective` is false when both sets are empty, so equal meanings compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileCaps {
    permitted: u64,
    inheritable: u64,
    effective: bool,
}

impl FileCaps {
    /// File caps from masks (bit N = capability N). Errors on bits above [`LAST_CAP`].
    pub fn new(permitted: u64, inheritable: u64, effective: bool) -> Result<Self, String> {
        let unknown = (permitted | inheritable) & !ALL;
        if unknown != 0 {
            return Err(format!(
                "unknown capability number {}",
                unknown.trailing_zeros()
            ));
        }
        Ok(FileCaps {
            permitted,
            inheritable,
            effective: effective && (permitted | inheritable) != 0,
        })
    }

    /// The permitted set (bit N = capability N).
    pub fn permitted(&self) -> u64 {
        self.permitted
    }

    /// The inheritable set (bit N = capability N).
    pub fn inheritable(&self) -> u64 {
        self.inheritable
    }

    /// Whether the permitted and inheritable capabilities become effective at exec.
    pub fn effective(&self) -> bool {
        self.effective
    }

    /// No capability at all (what a file without the xattr has).
    pub fn is_empty(&self) -> bool {
        self.permitted == 0 && self.inheritable == 0
    }

    /// The `security.capability` value: always `VFS_CAP_REVISION_2` (20 bytes: magic_etc, then
    /// permitted and inheritable of capabilities 0–31, then of 32–63, all 32-bit
    /// little-endian), exactly what `setcap` writes outside a user namespace.
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut magic = VFS_CAP_REVISION_2;
        if self.effective {
            magic |= VFS_CAP_FLAGS_EFFECTIVE;
        }
        let words = [
            magic,
            self.permitted as u32,
            self.inheritable as u32,
            (self.permitted >> 32) as u32,
            (self.inheritable >> 32) as u32,
        ];
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Parse a `security.capability` value: revision 1 (12 bytes), 2 (20 bytes) or 3 (24 bytes;
    /// the trailing namespace root uid is not kept: within the namespace that wrote it, it means
    /// the same capabilities).
    pub fn from_xattr(value: &[u8]) -> Result<Self, String> {
        let word = |i: usize| -> u32 {
            u32::from_le_bytes([
                value[4 * i],
                value[4 * i + 1],
                value[4 * i + 2],
                value[4 * i + 3],
            ])
        };
        if value.len() < 4 {
            return Err(format!(
                "{XATTR_NAME} value of {} bytes is too short",
                value.len()
            ));
        }
        let magic = word(0);
        let expected = match magic & VFS_CAP_REVISION_MASK {
            VFS_CAP_REVISION_1 => 12,
            VFS_CAP_REVISION_2 => 20,
            VFS_CAP_REVISION_3 => 24,
            other => {
                return Err(format!("{XATTR_NAME}: unknown revision {:#010x}", other));
            }
        };
        if value.len() != expected {
            return Err(format!(
                "{XATTR_NAME}: revision {} takes {expected} bytes, the value has {}",
                magic >> 24,
                value.len()
            ));
        }
        let flags = magic & !VFS_CAP_REVISION_MASK;
        if flags & !VFS_CAP_FLAGS_EFFECTIVE != 0 {
            return Err(format!("{XATTR_NAME}: unknown flags {flags:#x}"));
        }
        let (mut permitted, mut inheritable) = (u64::from(word(1)), u64::from(word(2)));
        if expected >= 20 {
            permitted |= u64::from(word(3)) << 32;
            inheritable |= u64::from(word(4)) << 32;
        }
        FileCaps::new(permitted, inheritable, flags & VFS_CAP_FLAGS_EFFECTIVE != 0)
            .map_err(|e| format!("{XATTR_NAME}: {e}"))
    }

    /// The canonical text, exactly as libcap's `cap_to_text` (and so `getcap`) prints it:
    /// `cap_net_raw=ep`, `cap_setgid,cap_setuid=ep`, `=ep` for every capability, `=` for none.
    pub fn to_text(&self) -> String {
        // libcap's algorithm: flag combinations as bits (e=1, p=2, i=4); the combination most
        // capabilities share (ties go to the smaller, so usually "none") is said once with "=",
        // then each other combination, from the largest down, lists its capabilities and the
        // flags to add (+) and drop (-) relative to it. "= a,b+ep" is shortened to "a,b=ep".
        const E: usize = 1;
        const P: usize = 2;
        const I: usize = 4;
        let state = |n: u32| -> usize {
            let bit = 1u64 << n;
            let mut f = 0;
            if self.effective && (self.permitted | self.inheritable) & bit != 0 {
                f |= E;
            }
            if self.inheritable & bit != 0 {
                f |= I;
            }
            if self.permitted & bit != 0 {
                f |= P;
            }
            f
        };
        let flags = |f: usize| -> String {
            let mut s = String::new();
            if f & E != 0 {
                s.push('e');
            }
            if f & I != 0 {
                s.push('i');
            }
            if f & P != 0 {
                s.push('p');
            }
            s
        };
        let mut histo = [0usize; 8];
        for n in 0..=LAST_CAP {
            histo[state(n)] += 1;
        }
        let mut m = 7;
        for t in (0..7).rev() {
            if histo[t] >= histo[m] {
                m = t;
            }
        }
        let mut out = format!("={}", flags(m));
        for t in (0..8).rev() {
            if t == m || histo[t] == 0 {
                continue;
            }
            let names: Vec<String> = (0..=LAST_CAP)
                .filter(|&n| state(n) == t)
                .map(|n| format!("cap_{}", NAMES[n as usize]))
                .collect();
            out.push(' ');
            out.push_str(&names.join(","));
            let add = t & !m;
            if add != 0 {
                if out.starts_with("= ") {
                    out.drain(..2);
                    out.push('=');
                } else {
                    out.push('+');
                }
                out.push_str(&flags(add));
            }
            let drop = !t & m;
            if drop != 0 {
                out.push('-');
                out.push_str(&flags(drop));
            }
        }
        out
    }
}

impl fmt::Display for FileCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for FileCaps {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse(text)
    }
}

/// The number of a capability name (`cap_net_raw`, any case), or None.
pub fn from_name(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_")?;
    NAMES.iter().position(|n| *n == bare).map(|n| n as u32)
}

/// The name of capability number `n` (`cap_net_raw`), or None above [`LAST_CAP`].
pub fn name(n: u32) -> Option<String> {
    NAMES.get(n as usize).map(|s| format!("cap_{s}"))
}

/// Parse the text `setcap` takes: whitespace-separated clauses `NAMES OP FLAGS [OP FLAGS]…`,
/// NAMES a comma list of `cap_*` names (any case) or `all` (empty before `=` also means all),
/// OP `=` (set exactly), `+` (raise), `-` (lower), also `=+`/`=-`; FLAGS from `e`, `i`, `p`.
/// Refuses what a file capability cannot hold (see the module docs).
pub fn parse(text: &str) -> Result<FileCaps, String> {
    let (mut e, mut i, mut p) = (0u64, 0u64, 0u64);
    for clause in text.split_ascii_whitespace() {
        let bad = |why: String| format!("capabilities \"{text}\": {why}");
        let start = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| bad(format!("'{clause}' has no operator (=, + or -)")))?;
        let (list, mut rest) = clause.split_at(start);
        let listed = !list.is_empty();
        let caps = if listed {
            let mut mask = 0u64;
            for name in list.split(',') {
                if name.eq_ignore_ascii_case("all") {
                    mask |= ALL;
                } else if name.is_empty() {
                    return Err(bad(format!("empty capability name in '{list}'")));
                } else {
                    let n = from_name(name)
                        .ok_or_else(|| bad(format!("unknown capability '{name}'")))?;
                    mask |= 1 << n;
                }
            }
            mask
        } else {
            ALL
        };
        let mut first = true;
        while let Some(op) = rest.chars().next() {
            rest = &rest[1..];
            let mut op = op;
            if first {
                if op != '=' && !listed {
                    return Err(bad(format!("'{clause}': + and - need capability names")));
                }
                if op == '=' && (rest.starts_with('+') || rest.starts_with('-')) {
                    if !listed {
                        return Err(bad(format!("'{clause}': =+ and =- need capability names")));
                    }
                    // "=+" and "=-": clear the listed capabilities, then raise or lower.
                    e &= !caps;
                    i &= !caps;
                    p &= !caps;
                    op = if rest.starts_with('+') { '+' } else { '-' };
                    rest = &rest[1..];
                }
            } else if op == '=' {
                return Err(bad(format!("'{clause}': '=' can only come first")));
            }
            first = false;
            let end = rest.find(['=', '+', '-']).unwrap_or(rest.len());
            let (flags, next) = rest.split_at(end);
            rest = next;
            let (mut fe, mut fi, mut fp) = (false, false, false);
            for f in flags.chars() {
                match f {
                    'e' => fe = true,
                    'i' => fi = true,
                    'p' => fp = true,
                    other => {
                        return Err(bad(format!(
                            "'{clause}': unknown flag '{other}' (flags are e, i, p)"
                        )));
                    }
                }
            }
            if op != '=' && flags.is_empty() {
                return Err(bad(format!("'{clause}': '{op}' needs flags (e, i, p)")));
            }
            match op {
                '=' => {
                    e &= !caps;
                    i &= !caps;
                    p &= !caps;
                    apply(&mut e, &mut i, &mut p, caps, (fe, fi, fp), true);
                }
                '+' => apply(&mut e, &mut i, &mut p, caps, (fe, fi, fp), true),
                _ => apply(&mut e, &mut i, &mut p, caps, (fe, fi, fp), false),
            }
        }
    }
    let held = p | i;
    if e != 0 && e != held {
        return Err(format!(
            "capabilities \"{text}\": a file has one effective flag for all its capabilities: \
             the effective set (e) must be empty or name exactly the permitted and inheritable \
             ones (e.g. cap_net_raw=ep); here it names {} and they are {}",
            names_of(e),
            names_of(held)
        ));
    }
    FileCaps::new(p, i, e != 0)
}

/// "cap_a,cap_b" for a mask, "none" when empty.
fn names_of(mask: u64) -> String {
    let names: Vec<String> = (0..=LAST_CAP)
        .filter(|n| mask & (1 << n) != 0)
        .filter_map(name)
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

fn apply(e: &mut u64, i: &mut u64, p: &mut u64, caps: u64, f: (bool, bool, bool), raise: bool) {
    for (set, on) in [(e, f.0), (i, f.1), (p, f.2)] {
        if on {
            if raise {
                *set |= caps;
            } else {
                *set &= !caps;
            }
        }
    }
}

/// Set `caps` on an open file (not an `O_PATH` fd), replacing any capabilities it had; empty
/// `caps` remove the attribute instead (no xattr, rather than an empty one).
///
/// The kernel drops `security.capability` when the file is written or its owner changes, so
/// call this after the last write and after `fchown`. Needs CAP_SETFCAP.
pub fn set<Fd: AsFd>(fd: Fd, caps: &FileCaps) -> io::Result<()> {
    if caps.is_empty() {
        return clear(fd);
    }
    rustix::fs::fsetxattr(fd, XATTR_NAME, &caps.to_xattr(), XattrFlags::empty())?;
    Ok(())
}

/// The capabilities of an open file; None when it has none (or its file system keeps no
/// xattrs). A value the kernel would not accept either is an `InvalidData` error.
pub fn get<Fd: AsFd>(fd: Fd) -> io::Result<Option<FileCaps>> {
    let mut buf = [0u8; 64];
    match rustix::fs::fgetxattr(fd, XATTR_NAME, &mut buf[..]) {
        Ok(len) => FileCaps::from_xattr(&buf[..len])
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::OPNOTSUPP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Remove any file capabilities from an open file (no error when it had none).
pub fn clear<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    match rustix::fs::fremovexattr(fd, XATTR_NAME) {
        Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::path::Path;
    use std::process::Command;

    fn caps(text: &str) -> FileCaps {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn bit(name: &str) -> u64 {
        1 << from_name(name).unwrap()
    }

    #[test]
    fn every_name_up_to_checkpoint_restore() {
        assert_eq!(from_name("cap_chown"), Some(0));
        assert_eq!(from_name("cap_net_raw"), Some(13));
        assert_eq!(from_name("cap_sys_nice"), Some(23));
        assert_eq!(from_name("cap_setfcap"), Some(31));
        assert_eq!(from_name("cap_perfmon"), Some(38));
        assert_eq!(from_name("cap_bpf"), Some(39));
        assert_eq!(from_name("CAP_Checkpoint_Restore"), Some(40));
        assert_eq!(from_name("cap_nonesuch"), None);
        assert_eq!(from_name("net_raw"), None);
        for n in 0..=LAST_CAP {
            assert_eq!(from_name(&name(n).unwrap()), Some(n));
        }
        assert_eq!(name(41), None);
    }

    #[test]
    fn parses_and_prints_the_usual_examples() {
        for (text, canonical, permitted) in [
            ("cap_sys_nice=ep", "cap_sys_nice=ep", bit("cap_sys_nice")),
            ("cap_net_raw=ep", "cap_net_raw=ep", bit("cap_net_raw")),
            ("cap_setuid=ep", "cap_setuid=ep", bit("cap_setuid")),
            (
                "cap_setuid,cap_setgid+ep",
                "cap_setgid,cap_setuid=ep",
                bit("cap_setuid") | bit("cap_setgid"),
            ),
            ("all=ep", "=ep", ALL),
            ("=ep", "=ep", ALL),
            ("CAP_NET_RAW=pe", "cap_net_raw=ep", bit("cap_net_raw")),
            ("cap_net_raw=p", "cap_net_raw=p", bit("cap_net_raw")),
            ("cap_net_raw+ep-e", "cap_net_raw=p", bit("cap_net_raw")),
            ("cap_net_raw=+ep", "cap_net_raw=ep", bit("cap_net_raw")),
            ("  cap_net_raw=ep \t", "cap_net_raw=ep", bit("cap_net_raw")),
            (
                "all=ep cap_chown-ep",
                "=ep cap_chown-ep",
                ALL & !bit("cap_chown"),
            ),
            (
                "cap_net_raw=ep cap_chown=ep",
                "cap_chown,cap_net_raw=ep",
                bit("cap_net_raw") | bit("cap_chown"),
            ),
        ] {
            let c = caps(text);
            assert_eq!(c.to_text(), canonical, "{text}");
            assert_eq!(c.permitted(), permitted, "{text}");
            assert_eq!(c.inheritable(), 0, "{text}");
            assert_eq!(
                c.effective(),
                canonical.split('=').nth(1).unwrap().contains('e'),
                "{text}"
            );
            // The canonical text means the same.
            assert_eq!(caps(canonical), c, "{canonical}");
            assert_eq!(canonical.parse::<FileCaps>().unwrap(), c);
            assert_eq!(c.to_string(), canonical);
        }
    }

    #[test]
    fn inheritable_and_mixed_flags_print_like_libcap() {
        let c = caps("cap_net_raw,cap_chown=i cap_kill=p");
        assert_eq!(c.to_text(), "cap_chown,cap_net_raw=i cap_kill+p");
        assert_eq!(c.inheritable(), bit("cap_net_raw") | bit("cap_chown"));
        assert_eq!(c.permitted(), bit("cap_kill"));
        assert!(!c.effective());
        let c = caps("cap_net_raw=ep cap_chown=eip");
        assert_eq!(c.to_text(), "cap_chown=eip cap_net_raw+ep");
        assert_eq!(caps(&c.to_text()), c);
        assert_eq!(caps("cap_net_raw=ei").to_text(), "cap_net_raw=ei");
    }

    #[test]
    fn clearing_gives_no_capabilities() {
        for text in [
            "=",
            "",
            "   ",
            "cap_net_raw=ep cap_net_raw=",
            "all=ep all-eip",
        ] {
            let c = caps(text);
            assert!(c.is_empty(), "{text}");
            assert!(!c.effective(), "{text}");
            assert_eq!(c.to_text(), "=", "{text}");
            assert_eq!(c, FileCaps::default());
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        for (text, says) in [
            ("cap_nonesuch=ep", "unknown capability 'cap_nonesuch'"),
            ("cap_net_raw,cap_bogus+ep", "unknown capability 'cap_bogus'"),
            ("13=ep", "unknown capability '13'"),
            ("cap_net_raw", "no operator"),
            ("cap_net_raw=EP", "unknown flag 'E'"),
            ("cap_net_raw=epx", "unknown flag 'x'"),
            ("cap_net_raw+", "'+' needs flags"),
            ("+ep", "need capability names"),
            ("=+ep", "need capability names"),
            ("cap_net_raw,=ep", "empty capability name"),
            ("cap_net_raw=ep=p", "'=' can only come first"),
            // One effective flag per file: what setcap refuses (EINVAL) ...
            ("cap_net_raw+ep cap_chown=p", "one effective flag"),
            // ... and what it silently empties.
            ("cap_net_raw=e", "one effective flag"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains(&format!("\"{text}\"")), "{text}: {err}");
        }
    }

    #[test]
    fn xattr_layout_and_round_trip() {
        let c = caps("cap_net_raw=ep");
        assert_eq!(
            c.to_xattr(),
            [
                0x01, 0, 0, 0x02, // magic: revision 2 | effective
                0, 0x20, 0, 0, // permitted 0-31: bit 13
                0, 0, 0, 0, // inheritable 0-31
                0, 0, 0, 0, // permitted 32-63
                0, 0, 0, 0, // inheritable 32-63
            ]
        );
        let high = caps("cap_checkpoint_restore,cap_bpf=ip");
        let x = high.to_xattr();
        assert_eq!(x[..4], [0, 0, 0, 0x02]); // no effective flag
        assert_eq!(x[12..16], 0x180u32.to_le_bytes()); // permitted 32-63: bits 39, 40
        assert_eq!(x[16..20], 0x180u32.to_le_bytes()); // inheritable 32-63
        for text in [
            "cap_net_raw=ep",
            "=ep",
            "cap_bpf,cap_kill=ip",
            "cap_chown=i",
            "=",
        ] {
            let c = caps(text);
            assert_eq!(FileCaps::from_xattr(&c.to_xattr()).unwrap(), c, "{text}");
        }
        // Revision 3 (a namespace root uid after the sets) and revision 1 read back too.
        let mut v3 = c.to_xattr();
        v3[3] = 0x03;
        v3.extend_from_slice(&1000u32.to_le_bytes());
        assert_eq!(FileCaps::from_xattr(&v3).unwrap(), c);
        let v1 = [&[0x01, 0, 0, 0x01][..], &0x2000u32.to_le_bytes(), &[0; 4]].concat();
        assert_eq!(FileCaps::from_xattr(&v1).unwrap(), c);
        // Malformed values are errors, not guesses.
        assert!(FileCaps::from_xattr(&[1, 2]).is_err());
        assert!(FileCaps::from_xattr(&c.to_xattr()[..16]).is_err());
        assert!(FileCaps::from_xattr(&v3[..20]).is_err());
        let mut odd = c.to_xattr();
        odd[3] = 0x04;
        assert!(FileCaps::from_xattr(&odd).unwrap_err().contains("revision"));
        let mut unknown_bit = c.to_xattr();
        unknown_bit[12] = 0x00;
        unknown_bit[13] = 0x02; // capability 41
        assert!(
            FileCaps::from_xattr(&unknown_bit)
                .unwrap_err()
                .contains("41")
        );
    }

    fn tool(name: &str, args: &[&str]) -> String {
        let out = Command::new(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{name} (libcap2-bin) must be installed: {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn raw_xattr(path: &Path) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = rustix::fs::getxattr(path, XATTR_NAME, &mut buf[..]).unwrap();
        buf[..n].to_vec()
    }

    const REAL_EXAMPLES: [&str; 9] = [
        "cap_sys_nice=ep",
        "cap_net_raw=ep",
        "cap_setuid=ep",
        "cap_setuid,cap_setgid+ep",
        "all=ep",
        "cap_net_raw=p",
        "cap_net_raw,cap_chown=i cap_kill=p",
        "cap_net_raw=ep cap_chown=eip",
        "cap_bpf,cap_perfmon,cap_checkpoint_restore=ep",
    ];

    /// Ours set, the real getcap reads: same text, same bytes as the real setcap writes.
    #[test]
    fn set_matches_real_setcap_and_getcap() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let theirs = dir.path().join("theirs");
        for text in REAL_EXAMPLES {
            let c = caps(text);
            let f = File::create(&ours).unwrap();
            set(&f, &c).unwrap();
            drop(f);
            File::create(&theirs).unwrap();
            tool("setcap", &[text, theirs.to_str().unwrap()]);
            assert_eq!(raw_xattr(&ours), raw_xattr(&theirs), "{text}");
            assert_eq!(raw_xattr(&ours), c.to_xattr(), "{text}");
            let printed = tool("getcap", &[ours.to_str().unwrap()]);
            assert_eq!(
                printed.trim(),
                format!("{} {}", ours.display(), c.to_text()),
                "{text}"
            );
        }
    }

    /// The real setcap sets, ours reads; clear removes; empty caps write no xattr.
    #[test]
    fn get_reads_what_real_setcap_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(get(&f).unwrap(), None);
        for text in REAL_EXAMPLES {
            tool("setcap", &[text, path.to_str().unwrap()]);
            assert_eq!(get(&f).unwrap(), Some(caps(text)), "{text}");
        }
        clear(&f).unwrap();
        assert_eq!(get(&f).unwrap(), None);
        assert_eq!(tool("getcap", &[path.to_str().unwrap()]).trim(), "");
        clear(&f).unwrap(); // nothing to clear is fine
        set(&f, &caps("cap_net_raw=ep")).unwrap();
        set(&f, &caps("=")).unwrap();
        assert_eq!(get(&f).unwrap(), None);
    }
}
