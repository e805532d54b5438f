//! Property tests of the engine's gatekeepers of untrusted input, `spk_engine::index::Index::parse`
//! (the index a mirror serves) and `spk_engine::entry_path` (every archive entry name and link
//! target): on arbitrary bytes and generated near-valid inputs they never panic, and whatever
//! they accept is safe. Each property runs a bounded number of cases (a few seconds in CI).

use std::path::{Component, Path, PathBuf};

use proptest::prelude::*;
use serde_json::{Value, json};
use spk_engine::entry_path::{MAX_NAME_BYTES, MAX_PATH_BYTES, check_symlink_target, enclosed_path};
use spk_engine::index::Index;

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// One path component as a hostile archive might write it.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("usr".to_owned()),
        Just("é".to_owned()),
        Just("a\0b".to_owned()),
        Just("new\nline".to_owned()),
        Just("del\x7f".to_owned()),
        Just("\u{85}".to_owned()),
        Just("x".repeat(MAX_NAME_BYTES)),
        Just("x".repeat(MAX_NAME_BYTES + 1)),
        "[a-z0-9._-]{1,12}",
        "\\PC{1,6}",
        any::<String>(),
    ]
}

/// A name or link target: components joined by `/`, maybe absolute or `./`-prefixed, maybe
/// with a trailing slash.
fn path_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(""), Just("/"), Just("./"), Just("//")],
        prop::collection::vec(component(), 0..8),
        any::<bool>(),
    )
        .prop_map(|(prefix, parts, trailing)| {
            let mut s = format!("{prefix}{}", parts.join("/"));
            if trailing {
                s.push('/');
            }
            s
        })
}

/// Raw entry-name bytes: path-like text, arbitrary bytes, or text with invalid UTF-8 inside.
fn raw_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => path_text().prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..80),
        1 => (path_text(), any::<u8>(), path_text()).prop_map(|(a, b, c)| {
            let mut v = a.into_bytes();
            v.push(0x80 | b);
            v.extend(c.into_bytes());
            v
        }),
        1 => (1usize..3, "[a-z]{1,200}").prop_map(|(n, part)| {
            format!("{part}/").repeat(MAX_PATH_BYTES / (part.len() + 1) + n).into_bytes()
        }),
    ]
}

/// What `enclosed_path` must do, written independently: `Ok(Some(normal path))`, `Ok(None)`
/// for the root itself, or `Err` (the reason is not compared).
fn enclosed_model(raw: &[u8]) -> Result<Option<PathBuf>, ()> {
    if raw.is_empty() || raw.len() > MAX_PATH_BYTES {
        return Err(());
    }
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    if text.chars().any(char::is_control) || text.starts_with('/') {
        return Err(());
    }
    let mut out = PathBuf::new();
    for part in text.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." || part.len() > MAX_NAME_BYTES {
            return Err(());
        }
        out.push(part);
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

#[test]
fn enclosed_path_accepts_only_normal_relative_paths() {
    proptest!(config(), |(raw in raw_name())| {
        let got = enclosed_path(&raw);
        prop_assert_eq!(got.clone().map_err(|_| ()), enclosed_model(&raw), "for {:?}", String::from_utf8_lossy(&raw));
        if let Ok(Some(path)) = got {
            prop_assert!(path.is_relative());
            prop_assert!(path.as_os_str().len() <= MAX_PATH_BYTES);
            let text = path.to_str().expect("accepted paths are UTF-8");
            prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
            for c in path.components() {
                match c {
                    Component::Normal(part) => prop_assert!(part.len() <= MAX_NAME_BYTES),
                    other => prop_assert!(false, "component {:?} in {:?}", other, path),
                }
            }
            let root = Path::new("/target/root");
            prop_assert!(root.join(&path).starts_with(root));
        }
    });
}

/// Whether `target`, read relative to the directory of `link`, stays inside the root when
/// resolved lexically (a stack of components, `..` popping one).
fn stays_inside(link: &Path, target: &str) -> bool {
    let mut depth = link.components().count() - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// A link path as `enclosed_path` returns them.
fn link_path() -> impl Strategy<Value = PathBuf> {
    prop::collection::vec("[a-z0-9]{1,8}", 1..6).prop_map(|parts| parts.iter().collect())
}

/// A link target: mostly `..`-heavy relative paths.
fn link_target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(
            prop_oneof![Just(".."), Just("."), Just(""), Just("lib"), Just("x")],
            0..10
        )
        .prop_map(|parts| parts.join("/").into_bytes()),
        2 => raw_name(),
    ]
}

#[test]
fn symlink_targets_never_climb_above_the_root() {
    proptest!(config(), |(link in link_path(), target in link_target())| {
        let got = check_symlink_target(&link, &target);
        let text = std::str::from_utf8(&target).ok();
        let expected = match text {
            None => false,
            Some(t) if t.is_empty() || t.len() > MAX_PATH_BYTES => false,
            Some(t) if t.chars().any(char::is_control) => false,
            Some(t) if t.starts_with('/') => true,
            Some(t) => stays_inside(&link, t),
        };
        prop_assert_eq!(got.is_ok(), expected, "{:?} -> {:?}: {:?}", link, String::from_utf8_lossy(&target), got);
    });
}

/// A package name, mostly valid.
fn package_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9+._-]{0,63}",
        1 => Just("../evil".to_owned()),
        1 => Just("Plasma".to_owned()),
        1 => Just(String::new()),
        1 => Just("a".repeat(65)),
        1 => "\\PC{0,10}",
    ]
}

fn sha256_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9a-f]{64}",
        1 => "[0-9A-F]{64}",
        1 => "[0-9a-f]{63}",
        1 => "[0-9a-g]{64}",
        1 => any::<String>(),
    ]
}

fn any_json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
    ]
}

/// An index entry whose every field is usually plausible and sometimes wrong.
fn index_entry() -> impl Strategy<Value = Value> {
    (
        package_name(),
        prop_oneof![4 => "[0-9][0-9a-z.+~-]{0,20}", 1 => any::<String>()],
        prop_oneof![Just(json!("system")), Just(json!("userland")), Just(json!("other")), any_json_scalar()],
        prop_oneof![4 => "[a-z0-9-]{1,20}\\.tar\\.xz", 1 => any::<String>(), 1 => Just("../x.tar.xz".to_owned())],
        sha256_text(),
        prop_oneof![4 => any::<u64>().prop_map(Value::from), 1 => any_json_scalar()],
        any::<u64>(),
        any::<String>(),
        prop::collection::vec(any::<String>(), 0..3),
    )
        .prop_map(|(name, version, kind, file, sha, size, installed, description, setuid)| {
            json!({
                "name": name, "version": version, "kind": kind, "file": file, "sha256": sha,
                "size": size, "installed_size": installed, "description": description,
                "setuid": setuid,
            })
        })
}

fn index_json() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => Just(json!(1)), 1 => any_json_scalar()],
        any::<String>(),
        prop::option::of(any::<u64>()),
        prop::collection::vec(index_entry(), 0..4),
    )
        .prop_map(|(format, release, timestamp, packages)| {
            let mut index = json!({"format": format, "release": release, "packages": packages});
            if let Some(t) = timestamp {
                index["timestamp"] = json!(t);
            }
            index
        })
}

/// The serialized index, sometimes damaged by one edit (a byte dropped, replaced or inserted).
fn index_text() -> impl Strategy<Value = Vec<u8>> {
    (
        index_json(),
        0u8..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(index, edit, at, byte)| {
            let mut text = serde_json::to_vec(&index).unwrap();
            let i = at.index(text.len());
            match edit {
                0 => {
                    text.remove(i);
                }
                1 => text[i] = byte,
                2 => text.insert(i, byte),
                _ => {}
            }
            text
        })
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && !b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(c))
}

/// Panic-free, and whatever is accepted is what the rest of the engine relies on.
fn assert_accepted_index_is_safe(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(index) = Index::parse(bytes) else {
        return Ok(());
    };
    prop_assert_eq!(index.format, 1);
    let mut names = std::collections::HashSet::new();
    for p in &index.packages {
        prop_assert!(valid_name(&p.name), "accepted name {:?}", p.name);
        prop_assert!(names.insert(p.name.clone()), "{:?} listed twice", p.name);
        prop_assert!(
            p.sha256.len() == 64
                && p.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "accepted sha256 {:?}",
            p.sha256
        );
        prop_assert!(
            !p.file.is_empty()
                && !p.file.starts_with('.')
                && !p.file.contains('/')
                && !p.file.contains('\\')
                && !p.file.chars().any(char::is_control),
            "accepted file {:?}",
            p.file
        );
        prop_assert!(
            !p.version.is_empty()
                && !p
                    .version
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace()),
            "accepted version {:?}",
            p.version
        );
    }
    Ok(())
}

#[test]
fn the_index_parser_never_panics_on_arbitrary_bytes() {
    proptest!(config(), |(bytes in prop::collection::vec(any::<u8>(), 0..512))| {
        assert_accepted_index_is_safe(&bytes)?;
    });
}

#[test]
fn an_accepted_index_has_valid_names_and_digests() {
    proptest!(config(), |(bytes in index_text())| {
        assert_accepted_index_is_safe(&bytes)?;
    });
}

#[test]
fn a_well_formed_index_is_accepted_as_written() {
    let entry = (
        "[a-z0-9][a-z0-9+._-]{0,63}",
        "[0-9][0-9a-z.+~-]{0,20}",
        "[0-9a-f]{64}",
        any::<u64>(),
    );
    proptest!(config(), |(entries in prop::collection::vec(entry, 0..5), release in any::<String>())| {
        let mut seen = std::collections::HashSet::new();
        let packages: Vec<Value> = entries
            .iter()
            .filter(|(name, ..)| seen.insert(name.clone()))
            .map(|(name, version, sha, size)| json!({
                "name": name, "version": version, "kind": "userland",
                "file": format!("{name}.tar.xz"), "sha256": sha, "size": size,
            }))
            .collect();
        let text = serde_json::to_vec(&json!({"format": 1, "release": release, "packages": packages})).unwrap();
        let index = Index::parse(&text);
        prop_assert!(index.is_ok(), "refused: {:?}", index);
        let index = index.unwrap();
        prop_assert_eq!(index.packages.len(), packages.len());
        for (p, v) in index.packages.iter().zip(&packages) {
            prop_assert_eq!(&p.name, v["name"].as_str().unwrap());
            prop_assert_eq!(&p.sha256, v["sha256"].as_str().unwrap());
            prop_assert_eq!(p.size, v["size"].as_u64().unwrap());
        }
    });
}

// Trusted comments: the signed time of an index without a `timestamp` field is the
// `timestamp:` of its signature's trusted comment (`spk_engine::signature`).

/// A field of a trusted comment that is not a `timestamp:` one.
fn other_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("file:index.json".to_owned()),
        Just("hashed".to_owned()),
        Just("timestamp".to_owned()),
        Just("stamp:1".to_owned()),
        "[a-z]{1,8}:[!-~]{0,12}",
        "[!-~]{1,16}",
    ]
    .prop_filter("not a timestamp field", |f| !f.starts_with("timestamp:"))
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\t"), Just(" "), Just("\t\t"), Just(" \t ")]
}

#[test]
fn trusted_comment_parsing_never_panics() {
    proptest!(config(), |(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..256))| {
        let _ = spk_engine::signature::trusted_comment_timestamp(&text);
        let _ = spk_engine::signature::trusted_comment_timestamp(&String::from_utf8_lossy(&bytes));
        let _ = spk_engine::signature::trusted_comment_timestamp(&format!("timestamp:{text}"));
    });
}

#[test]
fn the_timestamp_of_a_trusted_comment_is_found_among_other_fields() {
    proptest!(config(), |(
        before in prop::collection::vec((other_field(), separator()), 0..4),
        time in any::<u64>(),
        after in prop::collection::vec((separator(), "[!-~]{0,16}"), 0..4),
        lead in prop_oneof![Just(""), Just(" "), Just("\t")],
    )| {
        let mut comment = lead.to_owned();
        for (field, sep) in &before {
            comment.push_str(field);
            comment.push_str(sep);
        }
        comment.push_str(&format!("timestamp:{time}"));
        for (sep, field) in &after {
            comment.push_str(sep);
            comment.push_str(field);
        }
        prop_assert_eq!(
            spk_engine::signature::trusted_comment_timestamp(&comment),
            Some(time),
            "{:?}", comment
        );
    });
}

#[test]
fn a_malformed_first_timestamp_field_gives_no_time() {
    // The first `timestamp:` field decides: a comment that says two things is not believed.
    proptest!(config(), |(
        bad in "[!-~]{0,12}".prop_filter("not all digits", |s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit())),
        later in any::<u64>(),
        none in prop::collection::vec(other_field(), 0..5),
    )| {
        let comment = format!("timestamp:{bad}\ttimestamp:{later}");
        prop_assert_eq!(spk_engine::signature::trusted_comment_timestamp(&comment), None, "{:?}", comment);
        let without = none.join("\t");
        prop_assert_eq!(spk_engine::signature::trusted_comment_timestamp(&without), None, "{:?}", without);
        // More digits than a u64 holds is no time either.
        let huge = format!("timestamp:{later}{}", "9".repeat(20));
        prop_assert_eq!(spk_engine::signature::trusted_comment_timestamp(&huge), None);
    });
}

#[test]
fn a_signed_trusted_comment_comes_back_verified_with_its_time() {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("smechos.pub"),
        pair.pk.to_box().unwrap().into_string(),
    )
    .unwrap();
    let keyring = spk_engine::signature::Keyring::load(dir.path()).unwrap();
    let cases = ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    };
    proptest!(cases, |(
        data in prop::collection::vec(any::<u8>(), 0..256),
        time in prop::option::of(any::<u64>()),
        fields in prop::collection::vec(other_field(), 0..3),
    )| {
        let mut parts = fields.clone();
        if let Some(t) = time {
            parts.insert(0, format!("timestamp:{t}"));
        }
        let comment = parts.join("\t");
        let signature = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            std::io::Cursor::new(&data),
            Some(&comment),
            None,
        )
        .unwrap()
        .into_string();
        let verified = keyring.verify(&data, signature.as_bytes());
        prop_assert!(verified.is_ok(), "{:?}", verified.err());
        let verified = verified.unwrap();
        prop_assert_eq!(&verified.trusted_comment, &comment);
        prop_assert_eq!(
            spk_engine::signature::trusted_comment_timestamp(&verified.trusted_comment),
            time
        );
        // The comment is signed: changing it breaks the signature.
        let forged = signature.replacen("\ntrusted comment: ", "\ntrusted comment: timestamp:1\t", 1);
        prop_assert!(keyring.verify(&data, forged.as_bytes()).is_err());
    });
}

// The keys of spk.toml that bound refreshes and say what the transport may vouch for:
// whatever value is written, spkd either takes it as written or refuses it naming the key.

#[test]
fn refresh_and_transport_keys_are_taken_as_written_or_refused_by_name() {
    proptest!(config(), |(
        timeout in prop_oneof![Just(0u64), any::<u64>()],
        age in prop::option::of(prop_oneof![Just(0u64), any::<u64>()]),
        insecure in prop_oneof![Just("true".to_owned()), Just("false".to_owned()), Just("\"yes\"".to_owned()), Just("1".to_owned())],
    )| {
        let mut text = format!("refresh_timeout = {}\n", timeout.min(i64::MAX as u64));
        if let Some(age) = age {
            text.push_str(&format!("max_index_age = {}\n", age.min(i64::MAX as u64)));
        }
        text.push_str(&format!(
            "[[repo]]\nname = \"m\"\nkind = \"index\"\nurl = \"http://m.example/\"\nallow_insecure = {insecure}\n"
        ));
        let parsed = spk_engine::config::Config::parse(&text, Path::new("spk.toml"));
        // A mistyped value is refused as the file is read, a zero when it is checked.
        let bad_key = if insecure != "true" && insecure != "false" {
            Some("allow_insecure")
        } else if timeout == 0 {
            Some("refresh_timeout")
        } else if age == Some(0) {
            Some("max_index_age")
        } else {
            None
        };
        match (parsed, bad_key) {
            (Ok(c), None) => {
                prop_assert_eq!(c.refresh_timeout, timeout.min(i64::MAX as u64));
                prop_assert_eq!(c.max_index_age, age.map(|a| a.min(i64::MAX as u64)));
                prop_assert_eq!(c.repos[0].allow_insecure, insecure == "true");
                prop_assert!(c.refresh_timeout().as_secs() >= 1);
                // Days in seconds never overflow.
                let _ = c.max_index_age_secs();
            }
            (Err(e), Some(key)) => prop_assert!(e.to_string().contains(key), "{e}"),
            (other, key) => prop_assert!(false, "{text:?}: {other:?}, expected a refusal of {key:?}"),
        }
    });
}

/// One entry of a generated tar stream: its type flag, the size its header declares, and how
/// many data bytes actually follow (a lying header declares more or less than it carries).
#[derive(Debug, Clone)]
struct TarPiece {
    typeflag: u8,
    declared: u64,
    carried: usize,
}

fn tar_piece() -> impl Strategy<Value = TarPiece> {
    let typeflag = prop_oneof![
        Just(b'0'),
        Just(b'5'),
        Just(b'2'),
        Just(b'L'),
        Just(b'K'),
        Just(b'x'),
        Just(b'g'),
        Just(b'7'),
    ];
    let declared = prop_oneof![
        0u64..2048,
        Just(spk_engine::unpack::HEADER_ALLOWANCE - 1),
        Just(spk_engine::unpack::HEADER_ALLOWANCE + 1),
        Just(1u64 << 20),
        Just(0o77_777_777_777u64),
    ];
    (typeflag, declared, 0usize..4096).prop_map(|(typeflag, declared, extra)| TarPiece {
        typeflag,
        declared,
        // Usually what it declares (when that is small), sometimes less.
        carried: if declared <= 4096 {
            declared as usize
        } else {
            extra
        },
    })
}

/// A tar stream of `pieces` (names `e0`, `e1`…; link targets `e0`), then the end marker.
fn tar_of(pieces: &[TarPiece]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let mut header = [0u8; 512];
        let name = format!("e{i}");
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(format!("{:011o}", p.declared).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = p.typeflag;
        if p.typeflag == b'2' {
            header[157..159].copy_from_slice(b"e0");
        }
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&header);
        out.extend(std::iter::repeat_n(b'a', p.carried));
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

#[test]
fn unpacking_any_tar_stream_stays_within_the_declared_limits() {
    use spk_engine::index::{IndexEntry, PackageKind};
    use spk_engine::unpack::{self, HEADER_ALLOWANCE, Limits};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let package = IndexEntry {
        name: "p".into(),
        version: "1".into(),
        kind: PackageKind::Userland,
        file: "p.tar.xz".into(),
        sha256: "0".repeat(64),
        size: 1000,
        installed_size: 8192,
        description: String::new(),
        setuid: Vec::new(),
        owners: Vec::new(),
        capabilities: Default::default(),
    };
    let limits = Limits::for_package(&package);
    let config = ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    };
    proptest!(config, |(pieces in prop::collection::vec(tar_piece(), 0..6))| {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_of(&pieces);
        let result = runtime.block_on(unpack::unpack_tar(bytes.as_slice(), dir.path(), &package, &limits));
        let oversized_extension = pieces.iter().any(|p| {
            matches!(p.typeflag, b'L' | b'K' | b'x') && p.declared > HEADER_ALLOWANCE
        });
        if let Ok((records, _)) = &result {
            // Whatever is accepted declared no more than the package may hold, and no
            // extension record larger than the allowance was read.
            let declared: u64 = pieces.iter().map(|p| p.declared).sum();
            prop_assert!(declared <= limits.max_total_bytes + HEADER_ALLOWANCE * 6, "{pieces:?}");
            prop_assert!(!oversized_extension, "accepted {pieces:?}");
            for r in &records.records {
                if let spk_engine::manifest::FileKind::File { size, .. } = r.kind {
                    prop_assert!(size <= limits.max_total_bytes);
                }
            }
        }
    });
}
