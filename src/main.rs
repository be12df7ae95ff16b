//! The `cairn` binary: parse, run one library call, print, exit with a named code.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

/// Exit codes, for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// The command failed; the message says why.
    Failure = 1,
    /// Backup: a snapshot was written, but some files could not be read.
    Incomplete = 3,
    /// Another cairn process holds the repository lock.
    Locked = 11,
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<std::io::Error>() {
            // Output piped into `head` and the like: stop quietly.
            Some(io) if io.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
            _ => {
                eprintln!("cairn: {}", commands::explain_chain(&e));
                match e.downcast_ref::<cairn::Error>().map(cairn::Error::unhinted) {
                    Some(cairn::Error::Locked { .. }) => Exit::Locked,
                    _ => Exit::Failure,
                }
            }
        },
    };
    ExitCode::from(code as u8)
}
