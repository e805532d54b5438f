//! Shell completions generated from the clap definitions (`make install` installs them), with
//! package names completed from spkd through the hidden `__complete-packages` command.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};
use crate::connect::Failure;

/// Bash: complete the package names of the commands that take them, else clap's completion.
/// `_spkctl` is the function clap_complete writes; the bus, root and config on the command line
/// being completed are passed on, so the names come from the spkd that command would talk to.
const BASH_PACKAGES: &str = r#"
# Package names, asked of spkd (`spkctl __complete-packages`), for the commands that take them.
_spkctl_packages() {
    local i word command="" which="" opts=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --bus|--root|--config) opts+=("$word" "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --bus=*|--root=*|--config=*) opts+=("$word") ;;
            -*) ;;
            *) command="$word"; break ;;
        esac
    done
    local cur="${COMP_WORDS[COMP_CWORD]}"
    case "$command" in
        install|system-install|userland-install) which=available ;;
        remove|upgrade|entire-system-upgrade|rollback|hold|unhold|verify) which=installed ;;
        info) which="" ;;
        *) _spkctl "$@"; return ;;
    esac
    if [[ "$cur" == -* ]]; then
        _spkctl "$@"
        return
    fi
    local names
    names="$("${COMP_WORDS[0]}" "${opts[@]}" __complete-packages $which 2>/dev/null)"
    COMPREPLY=($(compgen -W "$names" -- "$cur"))
}
complete -F _spkctl_packages -o bashdefault -o default spkctl
"#;

/// Fish: the same package names, beside clap's completions.
const FISH_PACKAGES: &str = r#"
# Package names, asked of spkd (`spkctl __complete-packages`), for the commands that take them.
complete -c spkctl -n "__fish_seen_subcommand_from install system-install userland-install" -f -a "(spkctl __complete-packages available 2>/dev/null)"
complete -c spkctl -n "__fish_seen_subcommand_from remove upgrade entire-system-upgrade rollback hold unhold verify" -f -a "(spkctl __complete-packages installed 2>/dev/null)"
complete -c spkctl -n "__fish_seen_subcommand_from info" -f -a "(spkctl __complete-packages 2>/dev/null)"
"#;

/// spkctl's command line without its hidden commands, which clap_complete would offer too.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("spkctl")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned())
}

/// Print the completion script of `shell` on stdout.
pub fn completions(shell: CompletionShell) -> Result<u8, Failure> {
    let (generator, extra) = match shell {
        CompletionShell::Bash => (clap_complete::Shell::Bash, BASH_PACKAGES),
        CompletionShell::Zsh => (clap_complete::Shell::Zsh, ""),
        CompletionShell::Fish => (clap_complete::Shell::Fish, FISH_PACKAGES),
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut visible_command(), "spkctl", &mut script);
    script.extend_from_slice(extra.as_bytes());
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Failure::failed(format!("writing the completion script: {e}")))?;
    Ok(0)
}
