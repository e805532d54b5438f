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
const MTIME: u64 = 1_700_000_000;

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
    /// the first entry below it, then the entries as declared.
    fn archive_entries(&self) -> Vec<Entry> {
        let mut emitted: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        for entry in &self.entries {
            let path = entry.path().trim_end_matches('/');
            let mut parent = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
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
}

impl Published {
    fn of(package: Package) -> Published {
        let tarball = package.tarball();
        Published {
            file: format!("{}.tar.xz", package.name),
            sha256: sha256_hex(&tarball),
            size: tarball.len() as u64,
            installed_size: package.installed_size(),
            tarball,
            package,
        }
    }

    /// The URL path of the tarball on the test server.
    pub fn path(&self) -> String {
        format!("{REPO_PATH}{}", self.file)
    }

    fn index_entry(&self) -> Value {
        json!({
            "name": self.package.name,
            "version": self.package.version,
            "kind": self.package.kind,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "installed_size": self.installed_size,
            "description": self.package.description,
        })
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
        for p in &self.packages {
            server.put(&p.path(), p.tarball.clone());
        }
        server.put(
            &format!("{REPO_PATH}index.json"),
            serde_json::to_vec_pretty(&self.index()).expect("index json"),
        );
    }
}
