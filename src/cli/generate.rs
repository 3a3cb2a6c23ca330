//! `mmgen generate`: make images with the built-in model, each with a
//! latent watermark, a ledger record and, with `--sign`, a C2PA manifest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mmgen::generation::{self, GenerationRequest, Provenance};
use mmgen::media::MediaFormat;
use mmgen::watermark::WatermarkKey;

use super::Context;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Text prompt in English or Chinese, for example
    /// "a small red circle above a large blue square". The built-in
    /// model was trained on captions that give every shape's size.
    prompt: String,

    /// Sign each output with a C2PA manifest (creates a local key set on
    /// first use).
    #[arg(long)]
    sign: bool,

    /// Output file. With -n, image i goes to STEM-i.EXT. Default:
    /// mmgen-SERIAL.EXT in the current directory.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Number of images, denoised together as one batch.
    #[arg(short = 'n', long = "count", default_value_t = 1, value_name = "COUNT")]
    count: usize,

    /// Seed of the first image (image i uses SEED + i). Default: random.
    #[arg(long)]
    seed: Option<u64>,

    /// DDIM sampling steps. Default: the model's (25 for the built-in model).
    #[arg(long)]
    steps: Option<usize>,

    /// Classifier-free guidance scale. Default: the model's.
    #[arg(long)]
    guidance: Option<f64>,

    /// Output file format. Default: from the output file's extension, else PNG.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,

    /// Replace existing output files.
    #[arg(long)]
    force: bool,

    /// Keep only the prompt's SHA-256 in the ledger, not its text.
    #[arg(long)]
    redact_prompt: bool,

    /// Write the prompt text into the C2PA manifest, where anyone holding
    /// the file can read it. By default the manifest carries only the
    /// prompt's SHA-256.
    #[arg(long, conflicts_with = "redact_prompt")]
    prompt_in_manifest: bool,

    /// Print a machine-readable summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Png,
    Jpeg,
    Webp,
}

impl From<FormatArg> for MediaFormat {
    fn from(value: FormatArg) -> Self {
        match value {
            FormatArg::Png => MediaFormat::Png,
            FormatArg::Jpeg => MediaFormat::Jpeg,
            FormatArg::Webp => MediaFormat::Webp,
        }
    }
}

/// Records in the key directory that the watermark key marks outputs of
/// this home's ledger, so that a later run rejects starting a new ledger
/// with the same key (see `Context::open_ledger`).
fn mark_watermark_used(ctx: &Context) -> anyhow::Result<()> {
    let path = ctx.home.watermark_used_path();
    if path.exists() {
        return Ok(());
    }
    let text = format!(
        "This watermark key has marked outputs logged in {}.\n\
         A new ledger with this key would reuse their serials; keep the two together.\n",
        ctx.home.ledger_path().display()
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: GenerateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let keys = ctx.load_or_init_keys(args.json)?;
    if args.sign {
        ctx.check_signer_expiry(&keys)?;
    }
    let watermark = WatermarkKey::new(keys.watermark_secret);
    let mut ledger = ctx.open_ledger()?;
    mark_watermark_used(ctx)?;
    if let Some(output) = &args.output {
        for path in generation::output_paths(output, args.count) {
            super::paths::check_not_home_file(&ctx.home, &path)?;
        }
    }
    let model = ctx.load_model()?;
    let request = GenerationRequest {
        prompt: args.prompt.clone(),
        count: args.count,
        seed: args.seed,
        steps: args.steps,
        guidance: args.guidance,
        output: args.output.clone(),
        format: output_format(args.format, args.output.as_deref())?,
        overwrite: args.force,
        log_prompt: !args.redact_prompt,
        prompt_in_manifest: args.prompt_in_manifest,
    };
    let checkpoint = super::ledger::checkpoint_signer(ctx, &keys, &ledger)?;
    let provenance = Provenance {
        watermark: &watermark,
        signer: args.sign.then_some(&keys.signer),
        checkpoint: &checkpoint,
    };
    warn_unknown_words(&model, &args);

    let bar = progress_bar(args.json);
    let images = generation::generate(
        &model,
        &mut ledger,
        &provenance,
        &request,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();

    if args.json {
        outln!("{}", serde_json::to_string_pretty(&images)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for image in &images {
        outln!("wrote {}", image.path.display())?;
        outln!("  ledger serial  {}", image.serial)?;
        outln!("  watermark      {}", image.watermark_payload)?;
        outln!("  seed           {}", image.seed)?;
        outln!("  sha256         {}", image.sha256)?;
    }
    if args.sign {
        outln!(
            "signed with a C2PA manifest by the local CA in {}; no one else trusts that CA until you give them its certificate",
            ctx.home.keys_dir().display()
        )?;
    } else {
        outln!(
            "unsigned: watermarked and logged, but no C2PA manifest; pass --sign to add Content Credentials"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("sampling {bar:30} {pos}/{len} steps {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Returns the format named by `--format`, else by the output's
/// extension, else PNG. A `--format` that contradicts the extension is an
/// error.
fn output_format(
    explicit: Option<FormatArg>,
    output: Option<&Path>,
) -> anyhow::Result<MediaFormat> {
    let extension = output
        .and_then(|p| p.extension())
        .map(|e| e.to_string_lossy().to_lowercase());
    let from_extension = match extension.as_deref() {
        Some("png") => Some(MediaFormat::Png),
        Some("jpg" | "jpeg") => Some(MediaFormat::Jpeg),
        Some("webp") => Some(MediaFormat::Webp),
        _ => None,
    };
    match (explicit.map(MediaFormat::from), from_extension) {
        (Some(format), Some(implied)) if format != implied => anyhow::bail!(
            "--format {} contradicts the output extension .{}; change one of them",
            format.mime().trim_start_matches("image/"),
            extension.unwrap_or_default()
        ),
        (Some(format), _) => Ok(format),
        (None, Some(implied)) => Ok(implied),
        (None, None) => Ok(MediaFormat::Png),
    }
}

/// Warns once about prompt words the model does not know, naming at most
/// a few of them, and none when the prompt is to be kept private.
fn warn_unknown_words(model: &mmgen::engine::Model, args: &GenerateArgs) {
    let unknown = model.tokenizer().encode(&args.prompt).unknown;
    if unknown.is_empty() {
        return;
    }
    if args.redact_prompt {
        errln!(
            "mmgen: warning: {} words of the prompt are unknown to the model and ignored",
            unknown.len()
        );
        return;
    }
    let shown: Vec<String> = unknown
        .iter()
        .take(5)
        .map(|w| format!("{:?}", super::printable(w)))
        .collect();
    let more = if unknown.len() > 5 {
        format!(" and {} more", unknown.len() - 5)
    } else {
        String::new()
    };
    errln!(
        "mmgen: warning: the model does not know {}{more}; unknown words are ignored",
        shown.join(", ")
    );
}
