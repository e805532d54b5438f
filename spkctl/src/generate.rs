//! Man pages and shell completions generated from the clap definitions (for `make install`).

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::connect::Failure;

pub fn man(dir: &Path) -> Result<u8, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::failed(format!("creating {}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| Failure::failed(format!("writing man pages: {e}")))?;
    Ok(0)
}

pub fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "spkctl", &mut std::io::stdout());
    Ok(0)
}
