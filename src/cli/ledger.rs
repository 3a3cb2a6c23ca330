//! `mmgen ledger`: list, show and verify ledger records.

use std::process::ExitCode;

use clap::Subcommand;
use mmgen::ledger::{ChainProblem, ChainReport, ListFilter, Record};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// List records, oldest first.
    List {
        /// Only records at or after this UTC time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// Only records before this UTC time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<OffsetDateTime>,
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
    /// Recompute every record's hash and chain link; exit 3 on the first
    /// record that differs.
    Verify,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("invalid time {text:?} ({e}); use RFC 3339, for example 2026-12-01T00:00:00Z")
    })
}

pub fn run(command: LedgerCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::List {
            since,
            until,
            limit,
            json,
        } => {
            let ledger = ctx.open_existing_ledger()?;
            let records = ledger.list(&ListFilter {
                since,
                until,
                limit,
            })?;
            for record in &records {
                if json {
                    outln!("{}", serde_json::to_string(record)?)?;
                } else {
                    outln!("{}", summary(record))?;
                }
            }
            if records.is_empty() && !json {
                eprintln!("no records");
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Show { serial, json } => {
            let ledger = ctx.open_existing_ledger()?;
            let Some(record) = ledger.get(serial)? else {
                anyhow::bail!(
                    "no record with serial {serial}; `mmgen ledger list` shows the serials"
                );
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&record)?)?;
            } else {
                print_record(&record)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Verify => {
            let ledger = ctx.open_existing_ledger()?;
            let report = ledger.verify_chain()?;
            print_chain_report(&report)?;
            Ok(if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

fn summary(record: &Record) -> String {
    let prompt = record.prompt.as_deref().unwrap_or("(prompt redacted)");
    format!(
        "{:>6}  {}  {}  {}  {prompt:?}",
        record.serial,
        super::time_text(&record.created_at),
        record.model_name,
        record.watermark_payload
    )
}

fn print_record(record: &Record) -> std::io::Result<()> {
    let hex = mmgen::generation::hex;
    outln!("serial           {}", record.serial)?;
    outln!("leaf index       {}", record.leaf_index)?;
    outln!("created          {}", super::time_text(&record.created_at))?;
    let model = super::printable(&record.model_name);
    outln!(
        "model            {model} (weights sha256 {})",
        hex(&record.weights_sha256)
    )?;
    outln!(
        "prompt           {}",
        super::printable(record.prompt.as_deref().unwrap_or("(redacted)"))
    )?;
    outln!("prompt sha256    {}", hex(&record.prompt_sha256))?;
    outln!("seed             {}", record.seed)?;
    outln!("steps            {}", record.steps)?;
    outln!("guidance         {}", record.guidance)?;
    outln!("size             {}x{}", record.width, record.height)?;
    outln!("watermark        {}", record.watermark_payload)?;
    outln!(
        "output           {} sha256 {}",
        record.output_mime,
        hex(&record.output_sha256)
    )?;
    outln!("manifest         {} bytes", record.manifest.len())?;
    outln!("record hash      {}", hex(&record.record_hash))?;
    outln!("previous hash    {}", hex(&record.prev_hash))?;
    Ok(())
}

fn print_chain_report(report: &ChainReport) -> std::io::Result<()> {
    let Some(fault) = &report.first_fault else {
        let head = report.head_hash.as_deref().unwrap_or("(empty ledger)");
        outln!(
            "ledger intact: {} records, head hash {head}",
            report.verified
        )?;
        return Ok(());
    };
    let serial = fault
        .serial
        .map(|s| format!(" (serial {s})"))
        .unwrap_or_default();
    let problem = match &fault.problem {
        ChainProblem::HashMismatch { stored, computed } => {
            format!(
                "its fields do not hash to the stored record hash (stored {stored}, computed {computed})"
            )
        }
        ChainProblem::PrevHashMismatch { stored, expected } => {
            format!(
                "it does not link to the previous record (stored {stored}, expected {expected})"
            )
        }
        ChainProblem::MissingLeaf { next_stored } => {
            format!("the record is missing; the next stored record is at leaf {next_stored}")
        }
        ChainProblem::Unreadable { reason } => format!("the row cannot be read: {reason}"),
    };
    outln!(
        "ledger BROKEN at leaf {}{serial}: {problem}; {} records before it verified",
        fault.leaf_index,
        report.verified
    )?;
    Ok(())
}
