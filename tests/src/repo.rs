//! Builds package repositories: real `.tar.xz` archives and an `index.json` (format 1).
//!
//! A [`Package`] lists its entries (files with content and mode, directories, symlinks, hard
//! links); [`Package::tarball`] writes them as a ustar archive compressed with xz, adding the
//! parent directories a real `tar -c` would contain. A [`Repo`] is the set of packages of one
//! release; [`Repo::publish`] puts the index and the tarballs on an [`HttpServer`].

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::http::HttpServer;

/// Where the repository lives on the test server.
pub const REPO_PATH: &str = "/repo/";

/// Fixed modification time written into archive headers (2023-11-14).
/// The modification time of every entry of a [`Package`] unless [`Package::with_mtime`] says
/// otherwise.
pub const MTIME: u64 = 1_700_000_000;

/// What an archive entry carries beyond its type and content (see [`Package::with_mtime`],
/// [`Package::owned_by`], [`Package::with_xattr`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Seconds; with nanoseconds, written as a pax `mtime` record too.
    pub mtime: Option<(u64, u32)>,
    /// Owner name and id, group name and id (ustar `uname`/`gname`, `uid`/`gid`).
    pub owner: Option<(String, u64, String, u64)>,
    /// Extended attributes as pax `SCHILY.xattr.*` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// One entry of a package archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        path: String,
        content: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    HardLink {
        path: String,
        target: String,
    },
    /// A character device node (which spk must refuse).
    CharDevice {
        path: String,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Dir { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::HardLink { path, .. }
            | Entry::CharDevice { path, .. } => path,
        }
    }
}

/// A package: its index metadata and its archive entries.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `userland` or `system`.
    pub kind: String,
    pub description: String,
    pub entries: Vec<Entry>,
    /// Write entry names as `./usr/...` instead of `usr/...`.
    pub dot_prefix: bool,
    /// Leave out the parent directory entries `tar -c` would write (an archive that ships
    /// `tmp/x` but no `tmp/`).
    pub no_parent_entries: bool,
    /// Per path: time, owner and xattrs beyond the defaults.
    pub meta: std::collections::BTreeMap<String, EntryMeta>,
}

impl Package {
    /// A `userland` package with no entries.
    pub fn new(name: &str, version: &str) -> Package {
        Package {
            name: name.to_string(),
            version: version.to_string(),
            kind: "userland".to_string(),
            description: format!("{name} {version} test package"),
            entries: Vec::new(),
            dot_prefix: false,
            no_parent_entries: false,
            meta: Default::default(),
        }
    }

    /// Mark the package as `system`.
    pub fn system(mut self) -> Package {
        self.kind = "system".to_string();
        self
    }

    pub fn description(mut self, text: &str) -> Package {
        self.description = text.to_string();
        self
    }

    /// Name entries `./path` like `tar -C dir -c .` does.
    pub fn dot_prefixed(mut self) -> Package {
        self.dot_prefix = true;
        self
    }

    /// Write no directory entries but those declared with [`Package::dir`]: the archive
    /// holds `tmp/x` without `tmp/`.
    pub fn without_parent_entries(mut self) -> Package {
        self.no_parent_entries = true;
        self
    }

    /// Give the entry at `path` this modification time (with `nanos`, also as a pax record).
    pub fn with_mtime(mut self, path: &str, secs: u64, nanos: u32) -> Package {
        self.meta.entry(path.to_string()).or_default().mtime = Some((secs, nanos));
        self
    }

    /// Give the entry at `path` this owner: names (empty for none) and numeric ids.
    pub fn owned_by(mut self, path: &str, user: &str, uid: u64, group: &str, gid: u64) -> Package {
        self.meta.entry(path.to_string()).or_default().owner =
            Some((user.to_string(), uid, group.to_string(), gid));
        self
    }

    /// Give the entry at `path` the extended attribute `key` (as GNU tar writes it, a pax
    /// `SCHILY.xattr.KEY` record).
    pub fn with_xattr(mut self, path: &str, key: &str, value: &[u8]) -> Package {
        self.meta
            .entry(path.to_string())
            .or_default()
            .xattrs
            .push((key.to_string(), value.to_vec()));
        self
    }

    /// A regular file with this content and permission bits.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Package {
        self.entries.push(Entry::File {
            path: path.to_string(),
            content: content.into(),
            mode,
        });
        self
    }

    /// A directory with explicit permission bits (parents without one get 0755).
    pub fn dir(mut self, path: &str, mode: u32) -> Package {
        self.entries.push(Entry::Dir {
            path: path.to_string(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Package {
        self.entries.push(Entry::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        });
        self
    }

    /// A hard link to `target`, an earlier file of the same package (archive-relative path).
    pub fn hardlink(mut self, path: &str, target: &str) -> Package {
        self.entries.push(Entry::HardLink {
            path: path.to_string(),
            target: target.to_string(),
        });
        self
    }

    /// A character device node `major:minor` (no legitimate package carries one).
    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> Package {
        self.entries.push(Entry::CharDevice {
            path: path.to_string(),
            major,
            minor,
        });
        self
    }

    /// A copy of this package with another version (same entries).
    pub fn with_version(&self, version: &str) -> Package {
        let mut p = self.clone();
        p.version = version.to_string();
        p
    }

    /// The sum of regular file sizes (hard links counted once).
    pub fn installed_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::File { content, .. } => content.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// The entries in archive order: every missing parent directory (mode 0755) before
    /// the first entry below it (unless [`Package::without_parent_entries`]), then the
    /// entries as declared.
    fn archive_entries(&self) -> Vec<Entry> {
        let mut emitted: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        for entry in &self.entries {
            let path = entry.path().trim_end_matches('/');
            let mut parent = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                if self.no_parent_entries {
                    break;
                }
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                if !emitted.contains(&parent) {
                    emitted.insert(parent.clone());
                    let mode = self
                        .entries
                        .iter()
                        .find_map(|e| match e {
                            Entry::Dir { path, mode } if path.trim_end_matches('/') == parent => {
                                Some(*mode)
                            }
                            _ => None,
                        })
                        .unwrap_or(0o755);
                    out.push(Entry::Dir {
                        path: parent.clone(),
                        mode,
                    });
                }
            }
            if let Entry::Dir { .. } = entry
                && emitted.contains(path)
            {
                continue;
            }
            // Whatever the entry is, it now exists: no implicit directory replaces it.
            emitted.insert(path.to_string());
            out.push(entry.clone());
        }
        out
    }

    /// The package as `.tar.xz` bytes (ustar, uid/gid 0, fixed mtime).
    pub fn tarball(&self) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Complete);
        let name = |path: &str, dir: bool| {
            let mut n = if self.dot_prefix {
                format!("./{path}")
            } else {
                path.to_string()
            };
            if dir && !n.ends_with('/') {
                n.push('/');
            }
            n
        };
        for entry in self.archive_entries() {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            let meta = self.meta.get(entry.path()).cloned().unwrap_or_default();
            let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some((secs, nanos)) = meta.mtime {
                header.set_mtime(secs);
                if nanos != 0 {
                    pax.push(("mtime".into(), format!("{secs}.{nanos:09}").into_bytes()));
                }
            }
            if let Some((user, uid, group, gid)) = &meta.owner {
                header.set_uid(*uid);
                header.set_gid(*gid);
                header.set_username(user).expect("user name");
                header.set_groupname(group).expect("group name");
            }
            for (key, value) in &meta.xattrs {
                pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
            }
            if !pax.is_empty() {
                tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .expect("append pax records");
            }
            match &entry {
                Entry::File {
                    path,
                    content,
                    mode,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(content.len() as u64);
                    set_raw_name(&mut header, &name(path, false));
                    header.set_cksum();
                    tar.append(&header, content.as_slice())
                        .expect("append file");
                }
                Entry::Dir { path, mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    set_raw_name(&mut header, &name(path, true));
                    header.set_cksum();
                    tar.append(&header, std::io::empty()).expect("append dir");
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_link_name(target).expect("symlink target");
                    set_raw_name(&mut header, &name(path, false));
                    header.set_cksum();
                    tar.append(&header, std::io::empty())
                        .expect("append symlink");
                }
                Entry::HardLink { path, target } => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_mode(0o644);
                    header.set_size(0);
                    set_raw_link_name(&mut header, &name(target, false));
                    set_raw_name(&mut header, &name(path, false));
                    header.set_cksum();
                    tar.append(&header, std::io::empty())
                        .expect("append hard link");
                }
                Entry::CharDevice { path, major, minor } => {
                    header.set_entry_type(tar::EntryType::Char);
                    header.set_mode(0o666);
                    header.set_size(0);
                    header.set_device_major(*major).expect("device major");
                    header.set_device_minor(*minor).expect("device minor");
                    set_raw_name(&mut header, &name(path, false));
                    header.set_cksum();
                    tar.append(&header, std::io::empty())
                        .expect("append device");
                }
            }
        }
        let raw = tar.into_inner().expect("finish tar");
        xz(&raw)
    }
}

/// Write `name` byte for byte into the ustar name field (the `tar` crate would strip `./`).
fn set_raw_name(header: &mut tar::Header, name: &str) {
    let bytes = name.as_bytes();
    let ustar = header.as_ustar_mut().expect("ustar header");
    assert!(
        bytes.len() <= ustar.name.len(),
        "test entry name too long for ustar: {name}"
    );
    ustar.name.fill(0);
    ustar.name[..bytes.len()].copy_from_slice(bytes);
}

fn set_raw_link_name(header: &mut tar::Header, name: &str) {
    let bytes = name.as_bytes();
    let ustar = header.as_ustar_mut().expect("ustar header");
    assert!(
        bytes.len() <= ustar.linkname.len(),
        "link name too long: {name}"
    );
    ustar.linkname.fill(0);
    ustar.linkname[..bytes.len()].copy_from_slice(bytes);
}

/// `len` bytes that xz cannot shrink (a deterministic xorshift stream), to make archives
/// large enough that a download has a middle to cut or resume.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Compress with xz (preset 6), as a publisher would.
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).expect("xz write");
    enc.finish().expect("xz finish")
}

/// Compress with xz using an LZMA2 dictionary of `dict_bytes`: the stream's header then tells a
/// decoder to reserve about that much memory, however small the content is.
pub fn xz_with_dictionary(data: &[u8], dict_bytes: u32) -> Vec<u8> {
    use liblzma::stream::{Check, Filters, LzmaOptions, Stream};
    let mut options = LzmaOptions::new_preset(0).expect("xz preset 0");
    options.dict_size(dict_bytes);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let stream = Stream::new_stream_encoder(&filters, Check::Crc64).expect("xz encoder");
    let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data).expect("xz write");
    enc.finish().expect("xz finish")
}

/// Size of a tar block.
const BLOCK: usize = 512;

/// A tar archive written header by header, for the hostile archives that the `tar` crate
/// refuses to write: absolute names, `..`, control characters and non-UTF-8 bytes, names of
/// any length (GNU `L` entries), FIFOs and block devices, GNU sparse entries (type `S` and pax
/// `GNU.sparse.*`), headers claiming sizes that no content follows, data after the end marker.
/// Headers are ustar (GNU for sparse entries) with correct checksums, uid/gid 0.
#[derive(Debug, Clone, Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// One ustar header block. `name` (at most 100 bytes) and `link` (at most 100 bytes) are
    /// written byte for byte; `size` larger than 11 octal digits is written in GNU base-256.
    pub fn header(name: &[u8], typeflag: u8, mode: u32, size: u64, link: &[u8]) -> [u8; BLOCK] {
        assert!(
            name.len() <= 100,
            "raw name longer than 100 bytes: use gnu_long_name"
        );
        assert!(link.len() <= 100, "raw link name longer than 100 bytes");
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        if size < 8u64.pow(11) {
            octal(&mut h[124..136], size);
        } else {
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        octal(&mut h[136..148], MTIME);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        set_checksum(&mut h);
        h
    }

    /// Append a header block as is (see [`RawTar::header`]), e.g. one whose content never
    /// follows.
    pub fn block(mut self, header: [u8; BLOCK]) -> RawTar {
        self.bytes.extend_from_slice(&header);
        self
    }

    /// Append raw bytes (padded to a block), e.g. data after the end marker.
    pub fn raw(mut self, data: &[u8]) -> RawTar {
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let rest = self.bytes.len() % BLOCK;
        if rest != 0 {
            self.bytes.resize(self.bytes.len() + BLOCK - rest, 0);
        }
    }

    /// An entry of any type with this content.
    pub fn entry(self, name: &[u8], typeflag: u8, mode: u32, link: &[u8], data: &[u8]) -> RawTar {
        let header = RawTar::header(name, typeflag, mode, data.len() as u64, link);
        self.block(header).raw(data)
    }

    pub fn file(self, name: &[u8], data: &[u8], mode: u32) -> RawTar {
        self.entry(name, b'0', mode, b"", data)
    }

    pub fn dir(self, name: &[u8]) -> RawTar {
        self.entry(name, b'5', 0o755, b"", b"")
    }

    pub fn symlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.entry(name, b'2', 0o777, target, b"")
    }

    pub fn hardlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.entry(name, b'1', 0o644, target, b"")
    }

    pub fn fifo(self, name: &[u8]) -> RawTar {
        self.entry(name, b'6', 0o644, b"", b"")
    }

    /// A block device node `major:minor`.
    pub fn block_device(self, name: &[u8], major: u32, minor: u32) -> RawTar {
        let mut header = RawTar::header(name, b'4', 0o660, 0, b"");
        octal(&mut header[329..337], u64::from(major));
        octal(&mut header[337..345], u64::from(minor));
        set_checksum(&mut header);
        self.block(header)
    }

    /// A GNU long-name entry (`././@LongLink`, type `L`): the next entry's name, of any length
    /// and any bytes.
    pub fn gnu_long_name(self, name: &[u8]) -> RawTar {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(b"././@LongLink", b'L', 0o644, b"", &data)
    }

    /// A pax extended header (type `x`) with these records, applying to the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> RawTar {
        let mut data = Vec::new();
        for (key, value) in records {
            // "LEN KEY=VALUE\n", where LEN counts the whole record including its own digits.
            let body = key.len() + value.len() + 3;
            let mut len = body + body.to_string().len();
            if len.to_string().len() != body.to_string().len() {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.entry(b"PaxHeaders/entry", b'x', 0o644, b"", &data)
    }

    /// A GNU sparse file (type `S`, GNU header): `data` (at most 512 bytes) stored at offset
    /// `hole` of a file of `hole + 512` bytes whose beginning is a hole.
    pub fn gnu_sparse(self, name: &[u8], data: &[u8], hole: u64) -> RawTar {
        assert!(data.len() <= BLOCK);
        let mut header = RawTar::header(name, b'S', 0o644, BLOCK as u64, b"");
        // GNU magic and version instead of ustar's.
        header[257..265].copy_from_slice(b"ustar  \0");
        // sparse[0] = (offset, numbytes), then isextended = 0, then the real size.
        octal(&mut header[386..398], hole);
        octal(&mut header[398..410], BLOCK as u64);
        octal(&mut header[483..495], hole + BLOCK as u64);
        set_checksum(&mut header);
        let mut block = data.to_vec();
        block.resize(BLOCK, 0);
        self.block(header).raw(&block)
    }

    /// The archive bytes: the entries, then the end marker (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.pad();
        self.bytes.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.bytes
    }

    /// [`RawTar::finish`], then `trailing` bytes after the end marker.
    pub fn finish_with_trailing(self, trailing: &[u8]) -> Vec<u8> {
        let mut bytes = self.finish();
        bytes.extend_from_slice(trailing);
        bytes
    }

    /// The archive as `.tar.xz` bytes.
    pub fn tarball(self) -> Vec<u8> {
        xz(&self.finish())
    }
}

/// Write `value` as zero-padded octal filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    assert!(
        digits.len() < field.len(),
        "{value} does not fit in {} octal digits",
        field.len() - 1
    );
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
}

/// The header checksum: the byte sum with the checksum field as spaces, as 6 octal digits,
/// NUL, space.
fn set_checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    header[154] = 0;
    header[155] = b' ';
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A package as published: its archive and the index entry that describes it.
/// The index fields are public so a test can make the index lie (wrong hash or size).
#[derive(Debug, Clone)]
pub struct Published {
    pub package: Package,
    pub file: String,
    pub tarball: Vec<u8>,
    pub sha256: String,
    pub size: u64,
    pub installed_size: u64,
    /// Paths the index allows to keep a setuid/setgid bit (`"setuid"`, left out when empty).
    pub setuid: Vec<String>,
    /// Paths a userland package may give to another owner (`"owners"`, left out when empty).
    pub owners: Vec<String>,
    /// Path → `setcap` text (`"capabilities"`, left out when empty).
    pub capabilities: std::collections::BTreeMap<String, String>,
}

impl Published {
    fn of(package: Package) -> Published {
        let tarball = package.tarball();
        Published {
            file: format!("{}.tar.xz", package.name),
            sha256: sha256_hex(&tarball),
            size: tarball.len() as u64,
            installed_size: package.installed_size(),
            setuid: Vec::new(),
            owners: Vec::new(),
            capabilities: Default::default(),
            tarball,
            package,
        }
    }

    /// Publish these bytes as the package's archive (e.g. a [`RawTar`] or a damaged stream),
    /// with an index entry that matches them (sha256 and size), so that whatever spkd refuses
    /// is refused for what the archive holds.
    pub fn set_tarball(&mut self, tarball: Vec<u8>) -> &mut Published {
        self.sha256 = sha256_hex(&tarball);
        self.size = tarball.len() as u64;
        self.tarball = tarball;
        self
    }

    /// The URL path of the tarball on the test server.
    pub fn path(&self) -> String {
        format!("{REPO_PATH}{}", self.file)
    }

    fn index_entry(&self) -> Value {
        let mut entry = json!({
            "name": self.package.name,
            "version": self.package.version,
            "kind": self.package.kind,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "installed_size": self.installed_size,
            "description": self.package.description,
        });
        if !self.setuid.is_empty() {
            entry["setuid"] = json!(self.setuid);
        }
        if !self.owners.is_empty() {
            entry["owners"] = json!(self.owners);
        }
        if !self.capabilities.is_empty() {
            entry["capabilities"] = json!(self.capabilities);
        }
        entry
    }
}

/// The packages of one release.
#[derive(Debug, Clone)]
pub struct Repo {
    pub release: String,
    pub packages: Vec<Published>,
}

impl Default for Repo {
    fn default() -> Self {
        Repo::new()
    }
}

impl Repo {
    pub fn new() -> Repo {
        Repo {
            release: "2026.11.25".to_string(),
            packages: Vec::new(),
        }
    }

    /// Add (or replace, by name) a package; builds its archive now.
    pub fn with(mut self, package: Package) -> Repo {
        self.add(package);
        self
    }

    /// Add (or replace, by name) a package; builds its archive now.
    pub fn add(&mut self, package: Package) -> &mut Published {
        self.packages.retain(|p| p.package.name != package.name);
        self.packages.push(Published::of(package));
        self.packages.last_mut().expect("just pushed")
    }

    pub fn release(mut self, release: &str) -> Repo {
        self.release = release.to_string();
        self
    }

    /// The published record of package `name`.
    pub fn get(&self, name: &str) -> &Published {
        self.packages
            .iter()
            .find(|p| p.package.name == name)
            .unwrap_or_else(|| panic!("no package {name} in test repo"))
    }

    /// The record of package `name`, to make the index lie about it.
    pub fn get_mut(&mut self, name: &str) -> &mut Published {
        self.packages
            .iter_mut()
            .find(|p| p.package.name == name)
            .unwrap_or_else(|| panic!("no package {name} in test repo"))
    }

    /// `index.json` as a JSON value.
    pub fn index(&self) -> Value {
        json!({
            "format": 1,
            "release": self.release,
            "packages": self.packages.iter().map(Published::index_entry).collect::<Vec<_>>(),
        })
    }

    /// Put `index.json` and every tarball under [`REPO_PATH`] on `server`.
    pub fn publish(&self, server: &HttpServer) {
        self.publish_at(server, REPO_PATH);
    }

    /// Put `index.json` and every tarball under `base` (`/extra/`: starts and ends with `/`)
    /// on `server`: a second repository on the same server.
    pub fn publish_at(&self, server: &HttpServer, base: &str) {
        for p in &self.packages {
            server.put(&format!("{base}{}", p.file), p.tarball.clone());
        }
        server.put(
            &format!("{base}index.json"),
            serde_json::to_vec_pretty(&self.index()).expect("index json"),
        );
    }

    /// Put the tarballs, `index` (the exact bytes of an `index.json`) and its signature by
    /// `key` with this trusted comment under [`REPO_PATH`] on `server` (as a publisher using
    /// `minisign -S -t COMMENT` would).
    pub fn publish_signed_bytes(
        &self,
        server: &HttpServer,
        key: &SigningKey,
        index: &[u8],
        trusted_comment: &str,
    ) {
        for p in &self.packages {
            server.put(&p.path(), p.tarball.clone());
        }
        server.put(&format!("{REPO_PATH}index.json"), index.to_vec());
        server.put(
            &format!("{REPO_PATH}index.json.minisig"),
            key.sign(index, trusted_comment),
        );
    }
}

/// A minisign key pair to sign test repositories with, made by the minisign crate; the secret
/// key is unencrypted (like `minisign -G -W`), as a CI release step would use it.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The key's file name without `.pub` (what spkd names in messages).
    pub name: String,
    /// The text of the `.pub` file.
    pub public: String,
    /// The text of the secret key file.
    pub secret: String,
}

impl SigningKey {
    pub fn generate(name: &str) -> SigningKey {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().expect("minisign key pair");
        SigningKey {
            name: name.to_string(),
            public: pair.pk.to_box().expect("public key box").into_string(),
            secret: pair.sk.to_box(None).expect("secret key box").into_string(),
        }
    }

    /// The public key's file name in `etc/spk/keys/`.
    pub fn file_name(&self) -> String {
        format!("{}.pub", self.name)
    }

    /// The text of a `.minisig` of `data` whose trusted comment is `trusted_comment` (what
    /// `minisign -S -t COMMENT` writes).
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Vec<u8> {
        let secret = minisign::SecretKey::from_unencrypted_box(self.secret.clone().into())
            .expect("unencrypted secret key");
        let public = minisign::PublicKey::from_secret_key(&secret).expect("public key");
        minisign::sign(
            Some(&public),
            &secret,
            std::io::Cursor::new(data),
            Some(trusted_comment),
            Some("signature from a test"),
        )
        .expect("sign")
        .into_string()
        .into_bytes()
    }
}

/// What `spk-publish` wrote for a repository.
#[derive(Debug, Clone)]
pub struct IndexFiles {
    pub index: Vec<u8>,
    /// `index.json.minisig`, when signed.
    pub signature: Option<Vec<u8>>,
}

impl Repo {
    /// Run the real `spk-publish` over this repository's tarballs (with every package's kind,
    /// version and description) and return what it wrote, signed with `key` when given.
    pub fn run_publisher(&self, key: Option<&SigningKey>, timestamp: u64) -> IndexFiles {
        let dir = tempfile::tempdir().expect("publisher directory");
        let mut cmd = std::process::Command::new(crate::daemon::binary("spk-publish"));
        cmd.arg(dir.path())
            .args(["--release", &self.release])
            .args(["--timestamp", &timestamp.to_string()]);
        for p in &self.packages {
            std::fs::write(dir.path().join(&p.file), &p.tarball).expect("write tarball");
            let name = &p.package.name;
            cmd.arg(format!("--kind={name}={}", p.package.kind))
                .arg(format!("--version={name}={}", p.package.version))
                .arg(format!("--description={name}={}", p.package.description));
        }
        if let Some(key) = key {
            let secret = dir.path().join("secret.key");
            std::fs::write(&secret, &key.secret).expect("write secret key");
            cmd.arg("--sign").arg(&secret);
        }
        let out = cmd.output().expect("run spk-publish");
        assert!(
            out.status.success(),
            "spk-publish failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        IndexFiles {
            index: std::fs::read(dir.path().join("index.json")).expect("index.json written"),
            signature: key.map(|_| {
                std::fs::read(dir.path().join("index.json.minisig")).expect("signature written")
            }),
        }
    }

    /// Put the tarballs, and the `index.json` + `index.json.minisig` that `spk-publish` signed
    /// with `key`, under [`REPO_PATH`] on `server`.
    pub fn publish_signed(
        &self,
        server: &HttpServer,
        key: &SigningKey,
        timestamp: u64,
    ) -> IndexFiles {
        let files = self.run_publisher(Some(key), timestamp);
        for p in &self.packages {
            server.put(&p.path(), p.tarball.clone());
        }
        server.put(&format!("{REPO_PATH}index.json"), files.index.clone());
        server.put(
            &format!("{REPO_PATH}index.json.minisig"),
            files.signature.clone().expect("signed"),
        );
        files
    }
}

/// Where the GitHub-shaped REST API lives on the test server (`api` in spk.toml).
pub const GITHUB_API_PATH: &str = "/api";
pub const GITHUB_OWNER: &str = "Smech-Labs";
pub const GITHUB_REPO: &str = "SmechDeploy";

/// One asset of a GitHub release.
#[derive(Debug, Clone)]
pub struct Asset {
    pub name: String,
    pub bytes: Vec<u8>,
    /// `sha256:<hex>`, as GitHub reports it; `None` for assets uploaded before GitHub kept
    /// digests.
    pub digest: Option<String>,
}

/// A release in the public GitHub REST shape, served as `releases/latest` and
/// `releases/tags/TAG`, its assets under `/download/TAG/` (their `browser_download_url`).
#[derive(Debug, Clone)]
pub struct GithubRelease {
    pub tag: String,
    pub assets: Vec<Asset>,
}

impl GithubRelease {
    /// Every package of `repo` as a `NAME.tar.xz` asset with its sha256 digest; the tag is the
    /// repository's release name.
    pub fn of(repo: &Repo) -> GithubRelease {
        GithubRelease {
            tag: repo.release.clone(),
            assets: repo
                .packages
                .iter()
                .map(|p| Asset {
                    name: p.file.clone(),
                    bytes: p.tarball.clone(),
                    digest: Some(format!("sha256:{}", p.sha256)),
                })
                .collect(),
        }
    }

    /// Remove the digest of asset `name` (e.g. `plasma.tar.xz`).
    pub fn without_digest(mut self, name: &str) -> GithubRelease {
        let asset = self
            .assets
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no asset {name}"));
        asset.digest = None;
        self
    }

    /// Add `index.json` and `index.json.minisig`, written and signed by `spk-publish`.
    pub fn with_signed_index(
        mut self,
        repo: &Repo,
        key: &SigningKey,
        timestamp: u64,
    ) -> GithubRelease {
        let files = repo.run_publisher(Some(key), timestamp);
        for (name, bytes) in [
            ("index.json", files.index),
            ("index.json.minisig", files.signature.expect("signed")),
        ] {
            self.assets.push(Asset {
                name: name.to_string(),
                digest: Some(format!("sha256:{}", sha256_hex(&bytes))),
                bytes,
            });
        }
        self
    }

    /// `/api/repos/OWNER/REPO/releases/latest`.
    pub fn latest_path() -> String {
        format!("{GITHUB_API_PATH}/repos/{GITHUB_OWNER}/{GITHUB_REPO}/releases/latest")
    }

    /// The URL path of asset `name` (its `browser_download_url` on the test server).
    pub fn asset_path(&self, name: &str) -> String {
        format!("/download/{}/{name}", self.tag)
    }

    /// The release as GitHub's API returns it.
    pub fn json(&self, server: &HttpServer) -> Value {
        let api = server.url(GITHUB_API_PATH);
        let repo_api = format!("{api}/repos/{GITHUB_OWNER}/{GITHUB_REPO}");
        let assets: Vec<Value> = self
            .assets
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({
                    "url": format!("{repo_api}/releases/assets/{}", 1000 + i),
                    "id": 1000 + i,
                    "node_id": format!("RA_test{i}"),
                    "name": a.name,
                    "label": "",
                    "content_type": "application/x-xz",
                    "state": "uploaded",
                    "size": a.bytes.len(),
                    "digest": a.digest,
                    "download_count": 0,
                    "created_at": "2026-11-25T12:00:00Z",
                    "updated_at": "2026-11-25T12:00:00Z",
                    "browser_download_url": server.url(&self.asset_path(&a.name)),
                })
            })
            .collect();
        json!({
            "url": format!("{repo_api}/releases/1"),
            "html_url": format!("https://github.com/{GITHUB_OWNER}/{GITHUB_REPO}/releases/tag/{}", self.tag),
            "assets_url": format!("{repo_api}/releases/1/assets"),
            "id": 1,
            "node_id": "RE_test",
            "tag_name": self.tag,
            "target_commitish": "main",
            "name": self.tag,
            "draft": false,
            "prerelease": false,
            "created_at": "2026-11-25T12:00:00Z",
            "published_at": "2026-11-25T12:00:00Z",
            "body": "",
            "assets": assets,
        })
    }

    /// Serve the release JSON (as the latest release and under its tag) and its assets.
    pub fn publish(&self, server: &HttpServer) {
        let json = serde_json::to_vec_pretty(&self.json(server)).expect("release json");
        server.put(&Self::latest_path(), json.clone());
        server.put(
            &format!(
                "{GITHUB_API_PATH}/repos/{GITHUB_OWNER}/{GITHUB_REPO}/releases/tags/{}",
                self.tag
            ),
            json,
        );
        for a in &self.assets {
            server.put(&self.asset_path(&a.name), a.bytes.clone());
        }
    }
}
