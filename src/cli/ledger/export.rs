//! `ledger export` and `ledger redact`.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use mmgen::ledger::export::BundleKeys;

use super::keys::home_verifier;
use super::{ExportFormat, TimeWindow};
use crate::cli::Context;
use crate::cli::paths::check_not_home_file;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Record format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl, conflicts_with = "bundle")]
    format: ExportFormat,
    /// Write an audit bundle into this new directory instead: a copy of the
    /// ledger, records, checkpoints, public keys and certificates.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Write the records to this file instead of stdout.
    #[arg(short, long, value_name = "FILE", conflicts_with = "bundle")]
    output: Option<PathBuf>,
    #[command(flatten)]
    window: TimeWindow,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["serials", "until"]))]
pub struct RedactArgs {
    /// Serials of the records whose prompts to delete.
    serials: Vec<u64>,
    /// Delete the prompts of every record created before this UTC time
    /// (RFC 3339).
    #[arg(long, value_parser = super::parse_time)]
    until: Option<time::OffsetDateTime>,
}

pub fn export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let ledger = ctx.open_existing_ledger()?;
    if let Some(dir) = &args.bundle {
        if dir.exists() {
            anyhow::bail!(
                "{} already exists; name a new directory for the bundle",
                dir.display()
            );
        }
        let verifier = home_verifier(ctx, &ledger)?;
        let keys_dir = ctx.home.keys_dir();
        let mut certificates = Vec::new();
        for name in ["ca.cert.pem", "signer.chain.pem"] {
            let path = keys_dir.join(name);
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the certificate {}", path.display()))?;
            certificates.push((name.to_string(), pem));
        }
        ledger.export_bundle(
            dir,
            &BundleKeys {
                verifier,
                certificates,
            },
        )?;
        errln!("wrote the audit bundle {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }

    let filter = args.window.filter(None);
    let (mut out, out_path): (Box<dyn std::io::Write>, PathBuf) = match &args.output {
        Some(path) => {
            check_not_home_file(&ctx.home, path)?;
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            (Box::new(BufWriter::new(file)), path.clone())
        }
        None => (Box::new(std::io::stdout().lock()), PathBuf::from("stdout")),
    };
    let count = match args.format {
        ExportFormat::Jsonl => ledger.export_jsonl(&filter, &mut out, &out_path)?,
        ExportFormat::Csv => ledger.export_csv(&filter, &mut out, &out_path)?,
    };
    if args.output.is_some() {
        errln!("exported {count} records to {}", out_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn redact(ctx: &Context, args: &RedactArgs) -> anyhow::Result<ExitCode> {
    let mut ledger = ctx.open_ledger()?;
    let mut deleted = 0;
    if !args.serials.is_empty() {
        deleted += ledger.redact_prompts(&args.serials)?;
    }
    if let Some(until) = args.until {
        deleted += ledger.redact_prompts_before(until)?;
    }
    outln!("redacted {deleted} prompts; their SHA-256 stays in the records")?;
    Ok(ExitCode::SUCCESS)
}
