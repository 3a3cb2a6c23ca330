//! `mmgen verify`: report the evidence of every provenance layer in files.
//!
//! Exit status: 0 provenance found and consistent (an intact file, or a
//! modified copy traced through its watermark), 1 nothing found, 2 error,
//! 3 evidence of tampering. With several files the most serious outcome
//! wins: tampering, then error, then found, then nothing found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use mmgen::engine::InversionOptions;
use mmgen::verify::{Report, Verdict, Verifier};
use mmgen::watermark::{self, WatermarkKey};

use super::paths::expand;
use super::verify_print::print_report;
use super::{Context, error_text, printable};

/// Exit status when a file could not be verified.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files to verify; a directory stands for the image files in it.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    paths: Vec<PathBuf>,

    /// Print one JSON report per file, one per line.
    #[arg(long)]
    json: bool,

    /// PEM file of root certificates; a manifest whose chain ends in one
    /// of them is reported as trusted. Default: trust-anchors.pem in the
    /// mmgen home, if present.
    #[arg(long, value_name = "PEM")]
    trust_anchors: Option<PathBuf>,

    /// DDIM inversion steps for the watermark. Default: the model's
    /// detection steps (its sampling steps unless its configuration sets
    /// `inversion_steps`).
    #[arg(long, value_name = "N")]
    inversion_steps: Option<usize>,

    /// Corrected p-value at or below which a watermark counts as found.
    #[arg(long, default_value_t = watermark::DEFAULT_THRESHOLD, value_name = "P")]
    threshold: f64,

    /// Write the manifest that the ledger keeps for the file's generation
    /// to FILE (a C2PA manifest store, `.c2pa`). Works for one input file
    /// that traces to a signed ledger record; FILE must not exist.
    #[arg(long, value_name = "FILE")]
    export_manifest: Option<PathBuf>,
}

pub fn run(args: VerifyArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if !(args.threshold > 0.0 && args.threshold < 1.0) {
        anyhow::bail!(
            "threshold {} is out of range; use a p-value between 0 and 1, such as 1e-6",
            args.threshold
        );
    }
    if let Some(steps) = args.inversion_steps {
        if steps == 0 || steps > 1000 {
            anyhow::bail!("inversion steps {steps} is out of range; use 1 to 1000");
        }
    }
    let files = expand(&args.paths)?;
    if args.export_manifest.is_some() && files.len() != 1 {
        anyhow::bail!(
            "--export-manifest needs exactly one input file, but {} were given",
            files.len()
        );
    }
    let trust_anchors = read_trust_anchors(args.trust_anchors.as_deref(), ctx)?;
    let keys: Vec<WatermarkKey> = ctx
        .load_keys_if_present()?
        .map(|k| WatermarkKey::new(k.watermark_secret))
        .into_iter()
        .collect();
    let ledger = ctx.open_ledger_if_present()?;
    let model = ctx.load_model()?;
    let verifier = Verifier {
        model: &model,
        ledger: ledger.as_ref(),
        keys: &keys,
        trust_anchors: trust_anchors.as_deref(),
        inversion: InversionOptions {
            steps: args
                .inversion_steps
                .unwrap_or(model.config().detection_steps()),
            refinements: 0,
        },
        threshold: args.threshold,
    };

    let mut outcomes = Vec::with_capacity(files.len());
    for file in &files {
        let name = file.display().to_string();
        let result = mmgen::media::read_file(file)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| verifier.verify(&name, &bytes).map_err(anyhow::Error::from));
        let printed = match result {
            Ok(report) => {
                if let Some(path) = &args.export_manifest {
                    export_manifest(&report, path)?;
                }
                outcomes.push(Some(report.verdict));
                if args.json {
                    outln!("{}", serde_json::to_string(&report)?)
                } else {
                    print_report(&report)
                }
            }
            Err(err) => {
                outcomes.push(None);
                if args.json {
                    let value = serde_json::json!({ "file": name, "verdict": "error", "error": error_text(&err) });
                    outln!("{value}")
                } else {
                    errln!("mmgen: {}: {}", printable(&name), error_text(&err));
                    Ok(())
                }
            }
        };
        // A reader that stops early (`| head`) ends the run, but the exit
        // status still reports what was verified so far.
        match printed {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other?,
        }
    }
    Ok(ExitCode::from(overall_exit(&outcomes)))
}

/// The exit status of a run: tampering, then error, then found, then
/// nothing found.
fn overall_exit(outcomes: &[Option<Verdict>]) -> u8 {
    if outcomes.contains(&Some(Verdict::Tampered)) {
        return Verdict::Tampered.exit_code();
    }
    if outcomes.contains(&None) {
        return EXIT_ERROR;
    }
    if outcomes
        .iter()
        .any(|o| matches!(o, Some(Verdict::Intact | Verdict::ModifiedCopy)))
    {
        return 0;
    }
    Verdict::NothingFound.exit_code()
}

fn read_trust_anchors(explicit: Option<&Path>, ctx: &Context) -> anyhow::Result<Option<String>> {
    let default = ctx.home.trust_anchors_path();
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None if default.is_file() => default,
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read trust anchors {}; pass a PEM file of root certificates",
            path.display()
        )
    })?;
    let certificates = count_certificates(&text).with_context(|| {
        format!(
            "invalid trust anchors {}; pass a PEM file of root certificates",
            path.display()
        )
    })?;
    if certificates == 0 {
        anyhow::bail!(
            "{} contains no PEM certificates; pass a PEM file of root certificates",
            path.display()
        );
    }
    Ok(Some(text))
}

/// Counts the certificates of a PEM file, failing on any that does not
/// parse. Blocks of other types (a private key, say) are not certificates.
fn count_certificates(text: &str) -> anyhow::Result<usize> {
    let mut count = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.context("malformed PEM block")?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        pem.parse_x509()
            .context("a CERTIFICATE block is not a valid X.509 certificate")?;
        count += 1;
    }
    Ok(count)
}

/// Writes the manifest of the ledger record that `report` traced the file
/// to. An existing file is never replaced.
fn export_manifest(report: &Report, path: &Path) -> anyhow::Result<()> {
    let Some(finding) = &report.ledger else {
        anyhow::bail!(
            "{} traces to no ledger record, so there is no stored manifest to export",
            printable(&report.file)
        );
    };
    let record = &finding.record;
    if record.manifest.is_empty() {
        anyhow::bail!(
            "generation {} was not signed, so its ledger record keeps no manifest",
            record.serial
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {}; choose a path that does not exist yet",
                path.display()
            )
        })?;
    std::io::Write::write_all(&mut file, &record.manifest)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    errln!(
        "mmgen: wrote the manifest of generation {} to {}",
        record.serial,
        path.display()
    );
    Ok(())
}
