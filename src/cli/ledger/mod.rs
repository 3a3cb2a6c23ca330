//! `mmgen ledger`: list, show, verify, prove, export and redact.
//!
//! Exit statuses: 0 success, 2 error, 3 when `verify` or `check-proof`
//! finds the ledger or the proof does not check.

mod export;
mod keys;
mod proof;
mod show;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use mmgen::ledger::ListFilter;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Context;

pub use keys::checkpoint_signer;

/// Exit status of a verification that found a fault.
const FAILED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// List records, oldest first.
    List {
        #[command(flatten)]
        window: TimeWindow,
        /// At most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Print one JSON object per record, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one record in full.
    Show {
        /// The record's serial.
        serial: u64,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest signed checkpoint (C2SP tlog-checkpoint note).
    Checkpoint {
        #[command(flatten)]
        window: TimeWindow,
        /// Print every checkpoint in the time window, not only the newest.
        #[arg(long)]
        all: bool,
        /// Print one JSON object per checkpoint, one per line.
        #[arg(long)]
        json: bool,
        /// Sign a checkpoint of the whole tree first if the newest one
        /// does not cover it (after an upgrade from schema 1).
        #[arg(long)]
        sign: bool,
    },
    /// Recompute every leaf and the Merkle tree, check every checkpoint's
    /// signature and root; exit 3 and name the first bad record on failure.
    Verify(verify::VerifyArgs),
    /// Print an offline receipt for a record: its inclusion proof and the
    /// newest checkpoint (C2SP tlog-proof).
    Proof {
        /// The record's serial.
        serial: u64,
        /// Write the receipt to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a consistency proof from an older checkpoint to the newest.
    Consistency {
        /// File with the older checkpoint note.
        old_checkpoint: PathBuf,
        /// Write the proof to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check a receipt or a consistency proof offline, with the log's
    /// public key alone; exit 3 when it does not check.
    CheckProof(proof::CheckArgs),
    /// Export records as JSON Lines or CSV, or write an audit bundle.
    Export(export::ExportArgs),
    /// Delete stored prompts, keeping their SHA-256 in the records.
    Redact(export::RedactArgs),
}

/// A `[since, until)` window of UTC times.
#[derive(Debug, Clone, clap::Args)]
pub struct TimeWindow {
    /// Only entries at or after this UTC time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Only entries before this UTC time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
}

impl TimeWindow {
    fn filter(&self, limit: Option<u64>) -> ListFilter {
        ListFilter {
            since: self.since,
            until: self.until,
            limit,
        }
    }
}

/// Output formats of `ledger export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per record, as `ledger list --json` prints.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("invalid time {text:?} ({e}); use RFC 3339, for example 2026-12-01T00:00:00Z")
    })
}

pub fn run(command: LedgerCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::List {
            window,
            limit,
            json,
        } => show::list(ctx, &window.filter(limit), json),
        LedgerCommand::Show { serial, json } => show::show(ctx, serial, json),
        LedgerCommand::Checkpoint {
            window,
            all,
            json,
            sign,
        } => show::checkpoint(ctx, &window, all, json, sign),
        LedgerCommand::Verify(args) => verify::run(ctx, &args),
        LedgerCommand::Proof { serial, output } => proof::prove(ctx, serial, output.as_deref()),
        LedgerCommand::Consistency {
            old_checkpoint,
            output,
        } => proof::consistency(ctx, &old_checkpoint, output.as_deref()),
        LedgerCommand::CheckProof(args) => proof::check(ctx, &args),
        LedgerCommand::Export(args) => export::export(ctx, &args),
        LedgerCommand::Redact(args) => export::redact(ctx, &args),
    }
}

/// Writes `text` to `output`, or to stdout when it is `None`. An output
/// that is a file of the mmgen home is rejected.
fn write_output(ctx: &Context, output: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match output {
        Some(path) => {
            super::paths::check_not_home_file(&ctx.home, path)?;
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}
