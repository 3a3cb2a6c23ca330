//! `ledger proof`, `ledger consistency` and `ledger check-proof`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use mmgen::generation::hex;
use mmgen::ledger::proof::{CONSISTENCY_HEADER, ConsistencyProof, RECEIPT_HEADER, Receipt};
use mmgen::ledger::{Checkpoint, CheckpointVerifier};
use sha2::{Digest, Sha256};

use super::keys::{home_verifier, verifier_from_arg};
use crate::cli::Context;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The receipt (from `ledger proof`) or consistency proof (from
    /// `ledger consistency`) to check.
    proof: PathBuf,
    /// The log's verifier key, NAME+KEYID+KEY, or a file that contains it.
    /// Default: the checkpoint key of the home, if it has one.
    #[arg(long, value_name = "VKEY")]
    key: Option<String>,
    /// For a consistency proof: the older checkpoint note it starts from.
    #[arg(long, value_name = "FILE")]
    old_checkpoint: Option<PathBuf>,
    /// For a receipt: also check that this file is the logged output.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

pub fn prove(ctx: &Context, serial: u64, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = ctx.open_existing_ledger()?;
    let receipt = ledger.prove_inclusion(serial)?;
    super::write_output(ctx, output, &receipt.to_text())?;
    Ok(ExitCode::SUCCESS)
}

pub fn consistency(
    ctx: &Context,
    old_checkpoint: &Path,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let note = read(old_checkpoint, "checkpoint")?;
    let text = note
        .rfind("\n\n")
        .map(|split| &note[..split + 1])
        .unwrap_or(&note);
    let old = Checkpoint::parse(text)
        .with_context(|| format!("{} is not a checkpoint note", old_checkpoint.display()))?;
    if let Some(output) = output
        && same_file(output, old_checkpoint)
    {
        anyhow::bail!(
            "the output {} is the old checkpoint itself; keep that checkpoint and choose another -o",
            output.display()
        );
    }
    let ledger = ctx.open_existing_ledger()?;
    let proof = ledger.prove_consistency(old.tree_size)?;
    super::write_output(ctx, output, &proof.to_text())?;
    Ok(ExitCode::SUCCESS)
}

pub fn check(ctx: &Context, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let text = read(&args.proof, "proof")?;
    let verifier = verifier(ctx, args)?;
    let outcome = if text.starts_with(RECEIPT_HEADER) {
        check_receipt(&text, &verifier, args)
    } else if text.starts_with(CONSISTENCY_HEADER) {
        check_consistency(&text, &verifier, args)
    } else {
        anyhow::bail!(
            "{} is neither a receipt ({RECEIPT_HEADER}) nor a consistency proof \
             ({CONSISTENCY_HEADER})",
            args.proof.display()
        );
    };
    match outcome? {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(reason) => {
            outln!("proof INVALID: {reason}")?;
            Ok(ExitCode::from(super::FAILED))
        }
    }
}

/// Checks a receipt; the inner error explains why it does not check.
fn check_receipt(
    text: &str,
    verifier: &CheckpointVerifier,
    args: &CheckArgs,
) -> anyhow::Result<Result<(), String>> {
    let receipt = match Receipt::parse(text) {
        Ok(receipt) => receipt,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let checked = match receipt.check(verifier) {
        Ok(checked) => checked,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let record = &checked.record;
    if let Some(file) = &args.file {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest != record.output_sha256 {
            return Ok(Err(format!(
                "{} has SHA-256 {}, but the record logs output {}",
                file.display(),
                hex(&digest),
                hex(&record.output_sha256)
            )));
        }
    }
    outln!(
        "receipt valid: {} record, serial {}, leaf {} of {}, output sha256 {}",
        record.kind().name(),
        record.serial,
        record.leaf_index,
        checked.checkpoint.tree_size,
        hex(&record.output_sha256)
    )?;
    outln!(
        "signed by {} (key id {:08x})",
        verifier.origin(),
        verifier.key_id()
    )?;
    if args.file.is_some() {
        outln!("the file is the logged output")?;
    }
    Ok(Ok(()))
}

/// Checks a consistency proof; the inner error explains why it does not check.
fn check_consistency(
    text: &str,
    verifier: &CheckpointVerifier,
    args: &CheckArgs,
) -> anyhow::Result<Result<(), String>> {
    let Some(old_path) = &args.old_checkpoint else {
        anyhow::bail!(
            "a consistency proof is checked against an older checkpoint; pass --old-checkpoint FILE"
        );
    };
    let old = read(old_path, "checkpoint")?;
    let proof = match ConsistencyProof::parse(text) {
        Ok(proof) => proof,
        Err(error) => return Ok(Err(error.to_string())),
    };
    match proof.check(verifier, &old) {
        Ok(checked) => {
            outln!(
                "consistency proof valid: the tree of {} records extends the tree of {}",
                checked.new.tree_size,
                checked.old.tree_size
            )?;
            Ok(Ok(()))
        }
        Err(error) => Ok(Err(error.to_string())),
    }
}

fn verifier(ctx: &Context, args: &CheckArgs) -> anyhow::Result<CheckpointVerifier> {
    if let Some(key) = &args.key {
        return verifier_from_arg(key);
    }
    match ctx.open_ledger_if_present()? {
        Some(ledger) => home_verifier(ctx, &ledger),
        None => anyhow::bail!("pass --key with the log's verifier key (NAME+KEYID+KEY or a file)"),
    }
}

/// Returns whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))
}
