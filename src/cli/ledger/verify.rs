//! `ledger verify`: audit the home's ledger or an export bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use mmgen::ledger::export::{BundleMismatch, bundle_files};
use mmgen::ledger::{AuditFault, AuditReport, CheckpointVerifier, Ledger};

use super::keys::{home_verifier, verifier_from_arg};
use crate::cli::Context;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Verify the ledger copy in this audit bundle (from `ledger export
    /// --bundle`) instead of the home's ledger, and the bundle's other files
    /// against that copy and SHA256SUMS; nothing is written.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// The log's verifier key, NAME+KEYID+KEY, or a file that contains it.
    /// Default: the home's checkpoint key, or the bundle's checkpoint.vkey.
    #[arg(long, value_name = "VKEY")]
    key: Option<String>,
    /// Also check that the ledger extends this signed checkpoint note, such
    /// as one kept from an earlier audit or receipt. Repeatable.
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let (ledger, verifier) = open(ctx, args)?;
    let mut external = Vec::with_capacity(args.checkpoint.len());
    for path in &args.checkpoint {
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the checkpoint file {}", path.display()))?;
        external.push(note);
    }
    let report = ledger.audit_with(&verifier, &external)?;
    let mismatches = match &args.bundle {
        Some(bundle) => ledger.check_bundle(bundle, &verifier),
        None => Vec::new(),
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if args.bundle.is_some() {
            value["bundle_mismatches"] = serde_json::to_value(&mismatches)?;
        }
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        print_report(&report, &verifier)?;
        print_mismatches(&mismatches)?;
    }
    Ok(if report.is_intact() && mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::FAILED)
    })
}

/// Opens the ledger to verify and the verifier of its checkpoints.
fn open(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<(Ledger, CheckpointVerifier)> {
    let Some(bundle) = &args.bundle else {
        let ledger = ctx.open_existing_ledger()?;
        let verifier = match &args.key {
            Some(key) => verifier_from_arg(key)?,
            None => home_verifier(ctx, &ledger)?,
        };
        return Ok((ledger, verifier));
    };
    let copy = bundle.join(bundle_files::LEDGER);
    if !copy.is_file() {
        anyhow::bail!(
            "{} is not an audit bundle, because it has no {}; pass a directory that \
             `mmgen ledger export --bundle` wrote",
            bundle.display(),
            bundle_files::LEDGER
        );
    }
    let ledger = Ledger::open_read_only(&copy)?;
    let verifier = match &args.key {
        Some(key) => verifier_from_arg(key)?,
        None => {
            let path = bundle.join(bundle_files::VERIFIER_KEY);
            let verifier = verifier_from_arg(&path.to_string_lossy())?;
            errln!(
                "mmgen: using the verifier key in {}; compare it with the one the provider \
                 published: {}",
                path.display(),
                verifier.to_text()
            );
            verifier
        }
    };
    Ok((ledger, verifier))
}

fn print_report(report: &AuditReport, verifier: &CheckpointVerifier) -> std::io::Result<()> {
    let Some(first) = report.first_fault() else {
        outln!(
            "ledger intact: {} records, {} checkpoints signed by {} (key id {:08x}), root {}",
            report.records,
            report.checkpoints,
            verifier.origin(),
            verifier.key_id(),
            report.root
        )?;
        if report.prompts_absent > 0 {
            outln!(
                "{} generation records keep only the SHA-256 of their prompt",
                report.prompts_absent
            )?;
        }
        return Ok(());
    };
    outln!("ledger BROKEN {}", describe(first))?;
    for fault in report.faults.iter().skip(1) {
        outln!("  also {}", describe(fault))?;
    }
    let unlisted = report.fault_count - report.faults.len() as u64;
    if unlisted > 0 {
        outln!("  and {unlisted} more faults that follow from those above")?;
    }
    outln!(
        "{} records and {} checkpoints read",
        report.records,
        report.checkpoints
    )?;
    Ok(())
}

fn print_mismatches(mismatches: &[BundleMismatch]) -> std::io::Result<()> {
    if mismatches.is_empty() {
        return Ok(());
    }
    outln!("bundle BROKEN: its files do not match ledger.sqlite or SHA256SUMS")?;
    for mismatch in mismatches {
        outln!("  bundle file {} {}", mismatch.file, mismatch.problem)?;
    }
    Ok(())
}

fn describe(fault: &AuditFault) -> String {
    let mut place = match (fault.leaf_index, fault.checkpoint_id) {
        (Some(leaf), _) => format!("at leaf {leaf}"),
        (None, Some(id)) => format!("at checkpoint {id}"),
        (None, None) => "in the ledger".to_string(),
    };
    if let Some(serial) = fault.serial {
        place.push_str(&format!(" (serial {serial})"));
    }
    if let (Some(_), Some(id)) = (fault.leaf_index, fault.checkpoint_id) {
        place.push_str(&format!(" (checkpoint {id})"));
    }
    format!("{place}: {}", fault.problem)
}
