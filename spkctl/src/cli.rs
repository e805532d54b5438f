//! Command-line interface definition (clap).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spkctl",
    version,
    about = "Install, upgrade and remove SmechOS packages through spkd",
    after_help = "Examples:\n  spkctl check                         # exit 100 when updates are available\n  spkctl upgrade                       # install all updates\n  spkctl install plasma qt6\n  spkctl upgrade --dry-run             # show the plan only\n  spkctl --root /mnt/smechos install plasma   # no system bus needed\n  spkctl list --upgradable --json\n\nExit codes: 0 success, 1 operation failed, 2 usage error, 3 daemon unreachable,\n100 updates available (check)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars, even on a terminal
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Answer yes to every question
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// D-Bus address of the bus spkd is on [default: the system bus]
    #[arg(
        long,
        global = true,
        value_name = "ADDRESS",
        env = "SPK_BUS_ADDRESS",
        conflicts_with = "root"
    )]
    pub bus: Option<String>,
    /// Manage the system under DIR with a private spkd (no system bus needed: installer,
    /// chroot, build host)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,
    /// Configuration for the private spkd of --root [default: DIR/etc/spk/spk.toml]
    #[arg(long, global = true, value_name = "FILE", requires = "root")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ChangeOptions {
    /// Install again even when the same build is installed
    #[arg(long)]
    pub reinstall: bool,
    /// Only download and verify into the cache
    #[arg(long)]
    pub download_only: bool,
    /// Show what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Take over files that another installed package owns (and files of none, as --adopt);
    /// users other than root need an administrator's password (polkit xyz.smech.spk.force)
    #[arg(long)]
    pub force_overwrite: bool,
    /// Take over files already on disk that no package owns (a system installed by the old
    /// spk); a changed file under /etc is kept and the package's version written beside it as
    /// FILE.spknew; users other than root need an administrator's password (polkit
    /// xyz.smech.spk.force)
    #[arg(long)]
    pub adopt: bool,
    /// Download, verify and unpack now, install at the next restart, before the desktop
    /// starts (OpenRC service spk-offline-update); `spkctl offline` shows or cancels it
    #[arg(long, conflicts_with = "download_only")]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum OfflineAction {
    /// Show the update prepared for the next restart (the default)
    Status,
    /// Discard it and free the space its unpacked packages take
    Cancel,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Revert what transaction ID changed: what it installed is removed, what it upgraded goes
    /// back to the version before, what it removed comes back (from the cache)
    Undo {
        #[arg(value_name = "ID")]
        id: u64,
        /// Show what would happen, change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install packages
    #[command(visible_alias = "system-install", visible_alias = "userland-install")]
    Install {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        #[command(flatten)]
        options: ChangeOptions,
    },
    /// Upgrade the named packages, or all installed ones
    #[command(visible_alias = "entire-system-upgrade")]
    Upgrade {
        #[arg(value_name = "PKG")]
        packages: Vec<String>,
        #[command(flatten)]
        options: ChangeOptions,
    },
    /// Remove packages
    Remove {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        /// Show what would happen, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Install the previous version of each package again, from the cache (even when the
    /// repository no longer offers it)
    Rollback {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
        /// Show what would happen, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep packages at their installed version: `upgrade` leaves them alone unless named
    Hold {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// Let `upgrade` upgrade held packages again
    Unhold {
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// Refresh the package indexes and show each one's release and age; exit 100 when updates
    /// are available, 0 when none (Ctrl-C cancels the refresh)
    Check,
    /// List the packages spkd knows (from the indexes of the last `check`, and the installed
    /// ones)
    List {
        /// Installed packages only (upgradable ones included)
        #[arg(long, group = "filter")]
        installed: bool,
        /// Packages with an update only
        #[arg(long, group = "filter")]
        upgradable: bool,
        /// Packages offered but not installed only
        #[arg(long, group = "filter")]
        available: bool,
        /// Held packages only
        #[arg(long, group = "filter")]
        held: bool,
    },
    /// Show one package
    Info {
        #[arg(value_name = "PKG")]
        package: String,
    },
    /// Check installed files against their recorded type, mode and sha256 (all packages by
    /// default); exit 1 when anything differs (configuration files changed locally are shown
    /// but are not damage). Only root is told hashes, sizes, modes and link targets
    Verify {
        #[arg(value_name = "PKG")]
        packages: Vec<String>,
    },
    /// The update prepared for the next restart (`upgrade --offline`): show it or cancel it
    Offline {
        #[command(subcommand)]
        action: Option<OfflineAction>,
    },
    /// Past install, upgrade, remove and rollback transactions, in local time, by the number
    /// their transaction had (as `monitor`, `cancel` and the log show it); `history undo ID`
    /// reverts one
    History {
        /// How many, newest first
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(subcommand)]
        action: Option<HistoryAction>,
    },
    /// Follow running transactions (started by anyone), or the one given by number or object
    /// path, until they finish
    Monitor {
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
    /// Cancel a transaction (by number or object path), or every running one
    Cancel {
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
    /// Delete cached package files, except those of the installed versions
    Clean {
        /// Delete every cached package file, the installed versions' too
        #[arg(long)]
        all: bool,
    },
    /// Versions, root, sources (with their index's release and age), whether signatures are
    /// checked, this machine, credits
    About,
    /// Print the completion script of a shell (`make install` installs bash, zsh and fish's)
    GenerateCompletions {
        #[arg(value_name = "SHELL")]
        shell: CompletionShell,
    },
    /// Package names for the shell completions, one a line: installed ones, those a
    /// repository offers, or (no argument) every known one
    #[command(name = "__complete-packages", hide = true)]
    CompletePackages {
        #[arg(value_name = "WHICH")]
        which: Option<PackageSet>,
    },
}

/// The shells `generate-completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Which names `__complete-packages` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PackageSet {
    /// Installed packages (what remove, upgrade, hold, unhold, rollback, verify take)
    Installed,
    /// Packages a repository offers (what install takes)
    Available,
}
