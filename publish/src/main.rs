//! spk-publish: the release step of a SmechOS repository, and the copy a fleet serves.
//!
//! - `spk-publish DIR --release NAME [--sign KEY]` writes (and signs) `index.json` for a
//!   directory of `NAME.tar.xz` packages ([`index_dir`]).
//! - `spk-publish mirror --from SOURCE --to DIR` copies a release (a GitHub release or an
//!   `index` source) into a static directory that nginx or a CDN serves as an `index` source
//!   ([`mirror`]).
//!
//! Both reuse the engine's index types, checks and downloads, so what they write is exactly
//! what spkd reads.

mod files;
mod index_dir;
mod mirror;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `mirror` is a word of its own rather than a clap subcommand, so that the older form
    // `spk-publish DIR --release NAME` keeps working unchanged.
    let mirror = std::env::args_os().nth(1).is_some_and(|a| a == "mirror");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("spk-publish: error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if mirror {
        let args = mirror::Args::parse_from(std::env::args_os().skip(1));
        runtime.block_on(mirror::run(&args))
    } else {
        let args = index_dir::Args::parse();
        runtime.block_on(index_dir::publish(&args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("spk-publish: error: {message}");
            ExitCode::FAILURE
        }
    }
}
