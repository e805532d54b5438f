//! Usage errors as clap reports them, minus suggestions that are not near what was typed.
//!
//! clap suggests the known flag most similar to an unknown one (Jaro similarity above 0.7) and
//! counts the global options among every subcommand's flags, so `spkctl list --foo` was told
//! "a similar argument exists: '--root'": "foo" and "root" share two letters out of three. A
//! suggestion is kept here only when a few edits turn the typed flag into it; clap also shows
//! the usage with the suggested flag in it ("Usage: spkctl list --root <DIR>"), so that goes
//! back to the command's own usage.

use std::ffi::OsString;

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, Error, ErrorKind};

use crate::cli::Cli;

/// `error` without its suggested flag when that flag is too far from the unknown one.
pub fn without_far_suggestion(mut error: Error) -> Error {
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let (Some(ContextValue::String(typed)), Some(ContextValue::String(suggested))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::SuggestedArg),
    ) else {
        return error;
    };
    if !near(flag_name(typed), flag_name(suggested)) {
        error.remove(ContextKind::SuggestedArg);
        let usage = command_usage(std::env::args_os().skip(1));
        error.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    }
    error
}

/// The usage of the (sub)command the arguments name, e.g. `Usage: spkctl list [OPTIONS]`.
fn command_usage(args: impl Iterator<Item = OsString>) -> clap::builder::StyledStr {
    let mut command = Cli::command();
    command.build();
    let mut path = Vec::new();
    let mut args = args.peekable();
    let mut current = &command;
    while let Some(arg) = args.next() {
        let Some(word) = arg.to_str() else { continue };
        if word == "--" {
            break;
        }
        if let Some(name) = word.strip_prefix("--") {
            // Skip the value of an option that takes one (`--root DIR`), unless given as `=`.
            let takes_value = current
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .is_some_and(|a| a.get_action().takes_values());
            if takes_value {
                args.next();
            }
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        match current.find_subcommand(word) {
            Some(sub) => {
                path.push(sub.get_name().to_owned());
                current = sub;
            }
            None => break,
        }
    }
    let mut target = &mut command;
    for name in &path {
        target = target
            .find_subcommand_mut(name)
            .expect("a subcommand found above");
    }
    target.render_usage()
}

/// `--name=value` → `name`.
fn flag_name(arg: &str) -> &str {
    let arg = arg.trim_start_matches('-');
    arg.split_once('=').map_or(arg, |(name, _)| name)
}

/// Whether `suggested` is within a typo of `typed`: one edit for every three characters typed
/// (at least one), counting a swap of two neighbours as one.
fn near(typed: &str, suggested: &str) -> bool {
    edit_distance(typed, suggested) <= (typed.chars().count() / 3).max(1)
}

/// Insertions, deletions, substitutions and swaps of neighbours that turn `a` into `b`
/// (optimal string alignment distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_near_and_other_words_are_not() {
        assert!(near("instaled", "installed"));
        assert!(near("jsno", "json"));
        assert!(near("dryrun", "dry-run"));
        assert!(near("upgradeable", "upgradable"));
        assert!(!near("foo", "root"));
        assert!(!near("no-such-flag", "no-progress"));
    }
}
