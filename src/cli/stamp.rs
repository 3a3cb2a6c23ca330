//! `mmgen stamp`: sign media that mmgen did not generate, for publishers.
//!
//! Each file is signed, logged in the ledger with a signed checkpoint,
//! and only then written, as generated images are. Exit status: 0 when
//! every file was stamped, 2 when any failed. A file that fails is
//! reported on stderr and skipped, and the others go on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mmgen::keys::Signer;
use mmgen::label::{Corner, DEFAULT_HEIGHT_FRACTION, LabelKind, LabelSpec, Language};
use mmgen::ledger::{CheckpointSigner, Ledger};
use mmgen::manifest::SourceType;
use mmgen::media::{self, MediaFormat};
use mmgen::stamp::{self, StampOptions, Stamped, Titles};

use super::paths::{check_not_home_file, expand};
use super::{Context, error_text, printable};

/// Exit status when any file could not be stamped.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Args)]
pub struct StampArgs {
    /// Files to stamp; a directory stands for the image files in it.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    paths: Vec<PathBuf>,

    /// IPTC digital source type of the media: digitalCapture,
    /// computationalCapture, negativeFilm, positiveFilm, print, humanEdits,
    /// compositeWithTrainedAlgorithmicMedia, algorithmicallyEnhanced,
    /// digitalCreation, dataDrivenMedia, trainedAlgorithmicMedia,
    /// algorithmicMedia, screenCapture, virtualRecording, composite,
    /// compositeCapture or compositeSynthetic (or the full IPTC URI).
    #[arg(long, value_name = "TYPE", value_parser = parse_source_type)]
    source_type: SourceType,

    /// Output file for one input, else an output directory (created when
    /// missing). Default: STEM.stamped.EXT beside each input.
    #[arg(short, long, value_name = "OUT", conflicts_with = "in_place")]
    output: Option<PathBuf>,

    /// Replace each input with its stamped version.
    #[arg(long, conflicts_with = "label")]
    in_place: bool,

    /// Replace existing output files (never an input, unless --in-place).
    #[arg(long)]
    force: bool,

    /// Draw a visible label into a corner: "AI GENERATED" or
    /// "AI MODIFIED". The original stays untouched as the parent
    /// ingredient.
    #[arg(long, value_enum, value_name = "KIND")]
    label: Option<LabelArg>,

    /// Corner of the label: top-left, top-right, bottom-left or
    /// bottom-right.
    #[arg(long, default_value = "bottom-right", value_name = "CORNER", value_parser = parse_corner)]
    label_corner: Corner,

    /// Height of the label as a fraction of the image's shorter side
    /// (above 0, at most 0.5); at least 12 pixels.
    #[arg(long, default_value_t = DEFAULT_HEIGHT_FRACTION, value_name = "FRACTION")]
    label_size: f32,

    /// Language of the label: en, de, fr, es, it, nl, pt or pl.
    #[arg(long, default_value = "en", value_name = "CODE", value_parser = parse_language)]
    label_language: Language,

    /// Print one JSON line per file.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LabelArg {
    Generated,
    Modified,
}

fn parse_source_type(text: &str) -> Result<SourceType, String> {
    text.parse()
        .map_err(|e: mmgen::manifest::source_type::UnknownSourceType| e.to_string())
}

fn parse_corner(text: &str) -> Result<Corner, String> {
    text.parse()
}

fn parse_language(text: &str) -> Result<Language, String> {
    text.parse()
        .map_err(|e: mmgen::label::UnknownLanguage| e.to_string())
}

/// One input and where its stamped version goes.
struct Job {
    input: PathBuf,
    output: PathBuf,
}

pub fn run(args: StampArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let label = args.label.map(|kind| LabelSpec {
        kind: match kind {
            LabelArg::Generated => LabelKind::Generated,
            LabelArg::Modified => LabelKind::Modified,
        },
        corner: args.label_corner,
        language: args.label_language,
        height_fraction: args.label_size,
    });
    if let Some(spec) = &label {
        let size = spec.height_fraction;
        if !(size > 0.0 && size <= mmgen::label::MAX_HEIGHT_FRACTION) {
            anyhow::bail!(
                "--label-size {size} is out of range; use a fraction above 0 and at most 0.5"
            );
        }
    }
    let jobs = plan(&args)?;
    let keys = ctx.load_or_init_keys(args.json)?;
    ctx.check_signer_expiry(&keys)?;
    let mut ledger = ctx.open_ledger()?;
    for job in &jobs {
        check_not_home_file(&ctx.home, &job.output)?;
    }
    let checkpoint = super::ledger::checkpoint_signer(ctx, &keys, &ledger)?;
    let mut log = Log {
        ledger: &mut ledger,
        checkpoint: &checkpoint,
        signer: &keys.signer,
    };
    let options = StampOptions {
        source_type: args.source_type,
        label,
    };

    let bar = progress_bar(args.json || jobs.len() < 2, jobs.len());
    let mut failed = 0;
    for job in &jobs {
        let result = stamp_one(job, &options, &mut log, &args);
        bar.inc(1);
        let printed = match result {
            Ok(stamped) => bar.suspend(|| report(job, &stamped, &args)),
            Err(err) => {
                failed += 1;
                bar.suspend(|| report_error(job, &err, args.json))
            }
        };
        match printed {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other?,
        }
    }
    bar.finish_and_clear();
    if failed > 0 {
        errln!(
            "mmgen: stamped {} of {} files; {failed} failed (see above)",
            jobs.len() - failed,
            jobs.len()
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::SUCCESS)
}

/// Decides where each input's stamped version goes.
fn plan(args: &StampArgs) -> anyhow::Result<Vec<Job>> {
    let files = expand(&args.paths)?;
    let single_file = files.len() == 1 && !args.paths[0].is_dir();
    let into_dir = match &args.output {
        Some(out) if !single_file || out.is_dir() => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create the output directory {}", out.display()))?;
            Some(out.clone())
        }
        _ => None,
    };
    let jobs = files
        .into_iter()
        .map(|input| {
            let output = if args.in_place {
                input.clone()
            } else if let Some(dir) = &into_dir {
                dir.join(input.file_name().unwrap_or_default())
            } else if let Some(out) = &args.output {
                out.clone()
            } else {
                beside(&input)
            };
            Job { input, output }
        })
        .collect();
    Ok(jobs)
}

/// Returns `STEM.stamped.EXT` in the input's directory.
fn beside(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = input
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    input.with_file_name(format!("{stem}.stamped{extension}"))
}

/// The signers and the ledger that every stamp goes through.
struct Log<'a> {
    ledger: &'a mut Ledger,
    checkpoint: &'a CheckpointSigner,
    signer: &'a Signer,
}

fn stamp_one(
    job: &Job,
    options: &StampOptions,
    log: &mut Log<'_>,
    args: &StampArgs,
) -> anyhow::Result<Stamped> {
    check_output(job, args)?;
    let bytes = media::read_file(&job.input)?;
    if let Some(format) = MediaFormat::sniff(&bytes) {
        check_extension(&job.output, format)?;
    }
    let titles = Titles {
        input: &file_name(&job.input),
        output: &file_name(&job.output),
    };
    let serial = log.ledger.reserve_serial()?;
    let stamped = stamp::stamp(&bytes, titles, options, serial, log.signer)?;
    // The record goes in first, so that no stamped file is released
    // without it; a failed write leaves a record without a file.
    log.ledger.append(stamped.record(), log.checkpoint)?;
    let overwrite = args.force || args.in_place;
    mmgen::output::release(&job.output, &stamped.bytes, overwrite).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; pass --force to replace it or choose another -o",
                job.output.display()
            )
        } else {
            anyhow::Error::new(err).context(format!("cannot write {}", job.output.display()))
        }
    })?;
    Ok(stamped)
}

/// Rejects an output that would replace the input without --in-place,
/// or an existing file without --force, before any work.
fn check_output(job: &Job, args: &StampArgs) -> anyhow::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(&job.output) else {
        return Ok(());
    };
    if args.in_place {
        return Ok(());
    }
    let same = match (job.input.canonicalize(), job.output.canonicalize()) {
        (Ok(input), Ok(output)) => input == output,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "the output {} is the input itself; pass --in-place to replace it, or choose another -o",
            job.output.display()
        );
    }
    if !metadata.file_type().is_file() {
        anyhow::bail!(
            "{} exists and is not a regular file; mmgen replaces only regular files",
            job.output.display()
        );
    }
    if !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to replace it or choose another -o",
            job.output.display()
        );
    }
    Ok(())
}

/// Rejects an output name whose extension names another format, because
/// the stamped file keeps the input's format.
fn check_extension(output: &Path, format: MediaFormat) -> anyhow::Result<()> {
    let extension = output
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase());
    let named = match extension.as_deref() {
        Some("png") => Some(MediaFormat::Png),
        Some("jpg" | "jpeg") => Some(MediaFormat::Jpeg),
        Some("webp") => Some(MediaFormat::Webp),
        _ => None,
    };
    match named {
        Some(named) if named != format => anyhow::bail!(
            "the output {} names {named} but the input is {format}; stamping keeps the format, \
             so use the .{} extension",
            output.display(),
            format.extension()
        ),
        _ => Ok(()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn progress_bar(hidden: bool, files: usize) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64);
    let style = ProgressStyle::with_template("stamping {bar:30} {pos}/{len} files {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn report(job: &Job, stamped: &Stamped, args: &StampArgs) -> std::io::Result<()> {
    if args.json {
        let value = serde_json::json!({
            "input": job.input.display().to_string(),
            "output": job.output.display().to_string(),
            "format": stamped.format,
            "source_type": args.source_type.uri(),
            "input_sha256": mmgen::generation::hex(&stamped.input_sha256),
            "output_sha256": mmgen::generation::hex(&stamped.output_sha256),
            "input_manifest": stamped.input_manifest,
            "label": stamped.label,
            "ledger_serial": stamped.serial,
        });
        return outln!("{value}");
    }
    let mut notes = vec![
        args.source_type.name().to_string(),
        format!("ledger record {}", stamped.serial),
    ];
    match &stamped.input_manifest {
        stamp::InputManifest::None => {}
        stamp::InputManifest::Embedded { .. } => {
            notes.push("its existing manifest is kept as the parent ingredient".into())
        }
        stamp::InputManifest::Remote { url } => notes.push(format!(
            "it points to a remote manifest at {}, which was not fetched or kept",
            printable(url)
        )),
    }
    if let Some(label) = &stamped.label {
        notes.push(format!(
            "label \"{}\" in the {} corner",
            label.text, label.corner
        ));
    }
    outln!(
        "stamped {} -> {} ({})",
        printable(&job.input.display().to_string()),
        printable(&job.output.display().to_string()),
        notes.join("; ")
    )
}

fn report_error(job: &Job, err: &anyhow::Error, json: bool) -> std::io::Result<()> {
    let name = job.input.display().to_string();
    if json {
        let value = serde_json::json!({ "input": name, "error": error_text(err) });
        return outln!("{value}");
    }
    errln!("mmgen: {}: {}", printable(&name), error_text(err));
    Ok(())
}
