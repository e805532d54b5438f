//! The notifier's two small files, both `key = value` lines (`#` starts a comment):
//!
//! - its settings, written by the user: `$XDG_CONFIG_HOME/spk-notifier.conf` (default
//!   `~/.config/spk-notifier.conf`), with `default_install = auto | now | restart`;
//! - what it remembers between logins: `$XDG_STATE_HOME/spk-notifier/state` (default
//!   `~/.local/state/spk-notifier/state`), rewritten whole (a temporary file renamed into
//!   place) when it changes.
//!
//! A missing file means the defaults; a line it cannot read is logged and skipped, never fatal.

use std::path::{Path, PathBuf};

use crate::offline::{DefaultInstall, Remembered};

/// The user's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub default_install: DefaultInstall,
}

/// `$XDG_CONFIG_HOME/spk-notifier.conf`.
pub fn settings_path() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|dir| dir.join("spk-notifier.conf"))
}

/// `$XDG_STATE_HOME/spk-notifier/state`.
pub fn state_path() -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state").map(|dir| dir.join("spk-notifier/state"))
}

/// The settings in `path` (defaults for what it does not say).
pub fn load_settings(path: &Path) -> Settings {
    let mut settings = Settings::default();
    for (key, value) in read_pairs(path) {
        match key.as_str() {
            "default_install" => match value.parse() {
                Ok(choice) => settings.default_install = choice,
                Err(e) => tracing::warn!(path = %path.display(), "{e}"),
            },
            other => tracing::warn!(path = %path.display(), key = other, "unknown setting"),
        }
    }
    settings
}

/// What an earlier login remembered in `path`.
pub fn load_remembered(path: &Path) -> Remembered {
    let mut remembered = Remembered::default();
    for (key, value) in read_pairs(path) {
        let number = value.parse::<u64>().ok();
        match key.as_str() {
            "announced_boot_update" => remembered.announced_boot_update = number,
            "prepared_at" => remembered.prepared_at = number,
            _ => {}
        }
    }
    remembered
}

/// Write `remembered` to `path` (creating its directory).
pub fn save_remembered(path: &Path, remembered: &Remembered) -> std::io::Result<()> {
    let mut text = String::from("# spk-notifier's memory between logins (rewritten by it)\n");
    if let Some(id) = remembered.announced_boot_update {
        text.push_str(&format!("announced_boot_update = {id}\n"));
    }
    if let Some(secs) = remembered.prepared_at {
        text.push_str(&format!("prepared_at = {secs}\n"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// `$VAR` when set to an absolute path, else `$HOME/fallback`.
fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Some(dir),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)),
    }
}

/// The `key = value` lines of `path` (none when it cannot be read).
fn read_pairs(path: &Path) -> Vec<(String, String)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read");
            return Vec::new();
        }
    };
    parse_pairs(&text)
        .inspect(|line| {
            if let Err(line) = line {
                tracing::warn!(path = %path.display(), line, "not a 'key = value' line");
            }
        })
        .filter_map(Result::ok)
        .collect()
}

/// Each meaningful line of `text` as `(key, value)`, or the line it could not read.
fn parse_pairs(text: &str) -> impl Iterator<Item = Result<(String, String), &str>> {
    text.lines()
        .map(|line| {
            line.split_once('#')
                .map_or(line, |(before, _)| before)
                .trim()
        })
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once('=') {
            Some((key, value)) => Ok((key.trim().to_owned(), value.trim().to_owned())),
            None => Err(line),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_key_value_lines_with_comments() {
        let pairs: Vec<_> =
            parse_pairs("# mine\ndefault_install = restart # always\n\nbogus\n").collect();
        assert_eq!(
            pairs,
            vec![
                Ok(("default_install".to_owned(), "restart".to_owned())),
                Err("bogus")
            ]
        );
    }

    #[test]
    fn what_is_remembered_survives_a_new_login() {
        let dir = std::env::temp_dir().join(format!("spk-notifier-state-{}", std::process::id()));
        let path = dir.join("spk-notifier/state");
        assert_eq!(load_remembered(&path), Remembered::default());
        let remembered = Remembered {
            announced_boot_update: Some(7),
            prepared_at: Some(1_796_204_554),
        };
        save_remembered(&path, &remembered).expect("save");
        assert_eq!(load_remembered(&path), remembered);
        std::fs::write(dir.join("spk-notifier.conf"), "default_install = now\n").expect("write");
        assert_eq!(
            load_settings(&dir.join("spk-notifier.conf")).default_install,
            DefaultInstall::Now
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
