//! Argument parsing, dispatch, logging set-up and the mapping from errors
//! to exit statuses.
//!
//! Exit statuses shared by every subcommand: 0 success, 2 error (bad
//! arguments, unreadable files, a failed layer). `verify` adds its own
//! (see `verify.rs`). A closed stdout (for example `mmgen ledger list |
//! head`) is not an error.

mod keys;
mod ledger;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mmgen::home::Home;

/// Provenance for generated images: generate with a watermark, a C2PA
/// manifest and a ledger record; verify and trace any file.
#[derive(Debug, Parser)]
#[command(name = "mmgen", version, about, long_about = None)]
pub struct Cli {
    /// The mmgen home directory (ledger, keys, configuration).
    /// Defaults to the platform data directory, e.g. ~/.local/share/mmgen.
    #[arg(long, global = true, env = "MMGEN_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Log more: -v for decisions, -vv for per-step detail. RUST_LOG
    /// overrides this.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, show or rotate the local signing and watermark keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Inspect, prove and audit the generation ledger.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
}

/// Values that every subcommand needs.
pub struct Context {
    /// The resolved mmgen home.
    pub home: Home,
}

/// Parses arguments, runs one subcommand and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = Home::resolve(cli.home.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|home| run(cli.command, &Context { home }));
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mmgen: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keys { command } => keys::run(command, ctx),
        Command::Ledger { command } => ledger::run(command, ctx),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "mmgen=debug,warn",
        _ => "mmgen=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
