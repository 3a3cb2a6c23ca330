//! Trains the built-in model from scratch on the procedural world and
//! exports it; every stage resumes from its latest checkpoint.
//!
//! ```text
//! cargo run --release --example train -- vae --run runs/vae --steps 4000
//! cargo run --release --example train -- diffusion --run runs/diffusion --vae runs/vae --steps 20000
//! cargo run --release --example train -- export --vae runs/vae --diffusion runs/diffusion --out src/engine/builtin
//! ```
//!
//! The same seed and step counts reproduce the same weights on the same
//! machine and thread count. `--minutes` stops a stage cleanly (with a
//! checkpoint) so a long run can span several sittings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use clap::{Args, Parser, Subcommand};
use image::RgbImage;
use mmgen::engine::clip::TextEncoderConfig;
use mmgen::engine::layout::LayoutGuidance;
use mmgen::engine::model::{ModelConfig, images_to_tensor, tensor_to_images};
use mmgen::engine::schedule::{NoiseSchedule, PredictionType};
use mmgen::engine::unet::UNetConfig;
use mmgen::engine::vae::{AutoEncoderKl, VaeConfig};
use mmgen::train::StepStats;
use mmgen::train::checkpoint::{self, RunState};
use mmgen::train::dataset::LatentDataset;
use mmgen::train::diffusion::{DiffusionTrainer, DiffusionTraining};
use mmgen::train::optim::LrSchedule;
use mmgen::train::reader::{
    DistortionMix, ReaderTrainer, ReaderTraining, coverage_tensor, distort_for_reader,
};
use mmgen::train::vae::{VaeTrainer, VaeTraining};
use mmgen::watermark::noise::NoiseStream;
use mmgen::world::{self, SceneSampler, Split};

/// Name of the model this program trains.
const MODEL_NAME: &str = "mmgen-shapes-3";
/// DDIM inversion steps of detection, chosen from the detection-against-
/// steps curve in docs/benchmarks.md.
const DEFAULT_INVERSION_STEPS: usize = 10;

/// Layout guidance of exported models (see `engine::layout`).
const DEFAULT_LAYOUT_GUIDANCE: LayoutGuidance = LayoutGuidance {
    strength: 20.0,
    share: 0.4,
    candidates: 16,
    probe: 0.2,
};
/// Edge of the images, in pixels.
const IMAGE_SIZE: usize = 64;
/// Steps of the training noise schedule.
const TRAIN_STEPS: usize = 1000;

#[derive(Parser)]
#[command(about = "Train mmgen's built-in model")]
struct Cli {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Subcommand)]
enum Stage {
    /// Train the autoencoder.
    Vae(VaeArgs),
    /// Train the text encoder and UNet on the autoencoder's latents.
    Diffusion(DiffusionArgs),
    /// Train the latent reader that watermark detection uses.
    Reader(ReaderArgs),
    /// Combine the stages' averaged weights into config.json and model.safetensors.
    Export(ExportArgs),
}

#[derive(Args)]
struct Common {
    /// Run directory for checkpoints (created if missing; resumed if present).
    #[arg(long)]
    run: PathBuf,
    /// Total optimisation steps of the run.
    #[arg(long)]
    steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of initialisation, data and noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 250)]
    save_every: usize,
    /// Stop (after saving) once this many minutes have passed.
    #[arg(long)]
    minutes: Option<f64>,
    /// Stop (after saving) at this step, keeping the learning-rate schedule
    /// of --steps: reproduces a run that a time limit ended early.
    #[arg(long)]
    stop_at: Option<usize>,
}

impl Common {
    /// Returns the step this invocation trains up to.
    fn last_step(&self) -> usize {
        self.stop_at.map_or(self.steps, |stop| stop.min(self.steps))
    }
}

#[derive(Args)]
struct VaeArgs {
    #[command(flatten)]
    common: Common,
    /// Edge of the random crops trained on (the autoencoder is convolutional,
    /// so crops cost less and teach the same local statistics).
    #[arg(long, default_value_t = 32)]
    crop: usize,
    /// Weight of the KL term.
    #[arg(long, default_value_t = 1e-4)]
    kl_weight: f64,
}

#[derive(Args)]
struct DiffusionArgs {
    #[command(flatten)]
    common: Common,
    /// Run directory of the trained autoencoder, or an exported model
    /// whose autoencoder to use.
    #[arg(long)]
    vae: PathBuf,
    /// Exported model whose text encoder and UNet a new run starts from
    /// instead of random weights (ignored when the run resumes).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Give the UNet's input convolution two channels holding each latent
    /// cell's column and row (zeros in the starting weights when --init
    /// names a model without them).
    #[arg(long)]
    coordinate_channels: bool,
    /// Give the UNet's input convolution one channel per scene object
    /// (three) containing the disc where the object lies, in caption order
    /// (zeros in the starting weights when --init names a model without
    /// them).
    #[arg(long)]
    layout_channels: bool,
    /// Probability of zeroing the layout of an example that keeps its
    /// caption (with --layout-channels); examples with the empty caption
    /// always get a zero layout.
    #[arg(long, default_value_t = 0.1)]
    layout_dropout: f64,
    /// Share of examples trained at the noisiest timesteps (from
    /// --noisy-from on), where an image's layout is decided.
    #[arg(long, default_value_t = 0.0)]
    noisy_share: f64,
    /// First training timestep counted as noisiest (of 1,000).
    #[arg(long, default_value_t = 600)]
    noisy_from: usize,
    /// Probability of training on the empty prompt instead of the caption.
    #[arg(long, default_value_t = 0.1)]
    caption_dropout: f64,
    /// Training scenes, encoded once and cached in the run directory.
    #[arg(long, default_value_t = 50_000)]
    scenes: usize,
}

#[derive(Args)]
struct ReaderArgs {
    #[command(flatten)]
    common: Common,
    /// Run directory of the trained autoencoder, or an exported model
    /// whose autoencoder to use.
    #[arg(long)]
    vae: PathBuf,
    /// Training scenes, encoded once and cached in the run directory.
    #[arg(long, default_value_t = 20_000)]
    scenes: usize,
    /// Share of images distorted before reading; the rest stay clean.
    #[arg(long, default_value_t = 0.75)]
    distorted: f64,
    /// Share of images also cropped or rotated, then undone as a scan
    /// undoes them; the loss counts only the cells still covered.
    #[arg(long, default_value_t = 0.4)]
    geometric: f64,
}

#[derive(Args)]
struct ExportArgs {
    /// Run directory of the autoencoder (or an exported model holding one).
    #[arg(long)]
    vae: PathBuf,
    /// Run directory of the diffusion stage (or an exported model).
    #[arg(long)]
    diffusion: PathBuf,
    /// Run directory of the latent reader (or an exported model holding
    /// one), if one was trained.
    #[arg(long)]
    reader: Option<PathBuf>,
    /// Output directory for config.json and model.safetensors.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    match Cli::parse().stage {
        Stage::Vae(args) => train_vae(&args),
        Stage::Diffusion(args) => train_diffusion(&args),
        Stage::Reader(args) => train_reader(&args),
        Stage::Export(args) => export(&args),
    }
}

fn vae_config() -> VaeConfig {
    VaeConfig::default()
}

fn lr_schedule(common: &Common) -> LrSchedule {
    LrSchedule {
        peak: common.lr,
        floor: common.lr * 0.05,
        warmup_steps: (common.steps / 20).clamp(1, 500),
        total_steps: common.steps,
    }
}

/// Renders the images of step `step`: a fresh sampler per step makes the
/// data stream resumable without saving sampler state.
fn scenes_for_step(seed: u64, step: usize, batch: usize) -> Vec<world::Scene> {
    let mut sampler = SceneSampler::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
    (0..batch).map(|_| sampler.sample(Split::Train)).collect()
}

fn random_crops(images: &Tensor, crop: usize, seed: u64, step: usize) -> anyhow::Result<Tensor> {
    let (batch, _, height, width) = images.dims4()?;
    if crop >= height {
        return Ok(images.clone());
    }
    let mut rng =
        mmgen::watermark::noise::NoiseStream::with_domain(b"mmgen train crops", seed ^ step as u64);
    let crops = (0..batch)
        .map(|i| {
            let y = rng.next_below((height - crop + 1) as u64) as usize;
            let x = rng.next_below((width - crop + 1) as u64) as usize;
            images
                .narrow(0, i, 1)?
                .narrow(2, y, crop)?
                .narrow(3, x, crop)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&crops, 0)?)
}

struct Progress {
    start: Instant,
    first_step: usize,
    total: usize,
    deadline: Option<f64>,
}

impl Progress {
    fn new(first_step: usize, total: usize, minutes: Option<f64>) -> Self {
        Self {
            start: Instant::now(),
            first_step,
            total,
            deadline: minutes.map(|m| m * 60.0),
        }
    }

    fn report(&self, stats: &StepStats) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let done = stats.step - self.first_step;
        let per_step = elapsed / done.max(1) as f64;
        let eta = per_step * (self.total - stats.step) as f64 / 60.0;
        let parts: String = stats
            .parts
            .iter()
            .map(|(name, v)| format!(" {name} {v:.5}"))
            .collect();
        println!(
            "step {:>6}/{} loss {:.5}{parts} grad {:.3} lr {:.2e} | {:.2} s/step, eta {eta:.0} min",
            stats.step, self.total, stats.loss, stats.grad_norm, stats.lr, per_step
        );
    }

    fn out_of_time(&self) -> bool {
        self.deadline
            .is_some_and(|limit| self.start.elapsed().as_secs_f64() > limit)
    }
}

fn train_vae(args: &VaeArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let common = &args.common;
    let settings = VaeTraining {
        kl_weight: args.kl_weight,
        lr: lr_schedule(common),
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        ema_decay: 0.999,
    };
    let mut trainer = VaeTrainer::new(&vae_config(), settings, common.seed, &device)?;
    let mut state = resume(
        &common.run,
        "vae",
        common.seed,
        &mut trainer.adam,
        &mut trainer.ema,
        &device,
    )?;
    let progress = Progress::new(state.step, common.steps, common.minutes);
    while state.step < common.last_step() {
        let scenes = scenes_for_step(common.seed, state.step, common.batch);
        let images: Vec<_> = scenes
            .iter()
            .map(|s| world::render(s, IMAGE_SIZE as u32))
            .collect();
        let pixels = images_to_tensor(&images, IMAGE_SIZE, &device)?;
        let pixels = random_crops(&pixels, args.crop, common.seed, state.step)?;
        let stats = trainer.step(&pixels)?;
        if after_step(
            common,
            &progress,
            &mut state,
            &stats,
            &trainer.adam,
            &trainer.ema,
        )? {
            return Ok(());
        }
    }
    println!("autoencoder done at step {}", state.step);
    Ok(())
}

/// Records a finished step, reports it every 10 steps and saves a
/// checkpoint when one is due. Returns true when the time limit ended the
/// run, after saving.
fn after_step(
    common: &Common,
    progress: &Progress,
    state: &mut RunState,
    stats: &StepStats,
    adam: &mmgen::train::optim::AdamW,
    ema: &mmgen::train::optim::Ema,
) -> anyhow::Result<bool> {
    state.step = stats.step;
    state.losses.push((stats.step, stats.loss));
    if stats.step % 10 == 0 {
        progress.report(stats);
    }
    let stop = progress.out_of_time();
    if stats.step % common.save_every == 0 || stats.step == common.last_step() || stop {
        checkpoint::save(&common.run, state, adam, ema)?;
    }
    if stop {
        println!(
            "time limit reached at step {}; rerun the same command to resume",
            state.step
        );
    }
    Ok(stop)
}

fn resume(
    run: &Path,
    stage: &str,
    seed: u64,
    adam: &mut mmgen::train::optim::AdamW,
    ema: &mut mmgen::train::optim::Ema,
    device: &Device,
) -> anyhow::Result<RunState> {
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    match checkpoint::latest(run)? {
        Some(folder) => {
            let state = checkpoint::restore(&folder, adam, ema, device)?;
            if state.stage != stage || state.seed != seed {
                bail!(
                    "{} contains a {} run with seed {}, not {stage} with seed {seed}",
                    run.display(),
                    state.stage,
                    state.seed
                );
            }
            println!("resuming {stage} from step {}", state.step);
            Ok(state)
        }
        None => Ok(RunState {
            stage: stage.into(),
            step: 0,
            seed,
            losses: Vec::new(),
        }),
    }
}

/// Checks whether `path` contains an exported model (config.json and
/// model.safetensors) rather than a run's checkpoints.
fn is_export(path: &Path) -> bool {
    path.join("config.json").is_file() && path.join("model.safetensors").is_file()
}

/// Returns the file a stage's weights are read from: an exported model's
/// model.safetensors, or the moving average of a run's newest checkpoint.
fn stage_weights_file(path: &Path) -> anyhow::Result<PathBuf> {
    if is_export(path) {
        return Ok(path.join("model.safetensors"));
    }
    let folder = checkpoint::latest(path)?
        .with_context(|| format!("no checkpoint or exported model in {}", path.display()))?;
    Ok(folder.join("ema.safetensors"))
}

/// Returns the F32 tensors whose names start with one of `prefixes`, from
/// a run directory or an exported model (see [`stage_weights_file`]).
fn stage_tensors(
    path: &Path,
    prefixes: &[&str],
    device: &Device,
) -> anyhow::Result<HashMap<String, Tensor>> {
    let file = stage_weights_file(path)?;
    let tensors: HashMap<String, Tensor> = checkpoint::load_tensors(&file, device)?
        .into_iter()
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
        .collect::<candle_core::Result<_>>()?;
    if tensors.is_empty() {
        bail!(
            "{} contains no tensor under {prefixes:?}; pass a run directory or exported model that has this stage",
            file.display()
        );
    }
    Ok(tensors)
}

/// Loads the averaged autoencoder weights of a finished run, or those of
/// an exported model.
fn load_vae(
    source: &Path,
    device: &Device,
) -> anyhow::Result<(AutoEncoderKl, HashMap<String, Tensor>)> {
    let tensors = stage_tensors(source, &["vae."], device)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
    Ok((AutoEncoderKl::new(&vae_config(), vb.pp("vae"))?, tensors))
}

/// Returns the latent scaling factor: an exported model's own, so that a UNet
/// trained further gets the latents it was trained on, or else measured
/// on the run's autoencoder.
fn latent_scaling(
    source: &Path,
    vae: &AutoEncoderKl,
    seed: u64,
    device: &Device,
) -> anyhow::Result<f64> {
    if is_export(source) {
        let path = source.join("config.json");
        let config: ModelConfig = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        return Ok(config.vae.scaling_factor);
    }
    measure_scaling(vae, seed, device)
}

/// 1 / standard deviation of the autoencoder's latent means over training
/// images: the factor that gives the diffusion model unit-variance inputs.
fn measure_scaling(vae: &AutoEncoderKl, seed: u64, device: &Device) -> anyhow::Result<f64> {
    let scenes = scenes_for_step(seed ^ 0x5CA1E, 0, 256);
    let images: Vec<_> = scenes
        .iter()
        .map(|s| world::render(s, IMAGE_SIZE as u32))
        .collect();
    let mut sum = 0.0;
    let mut sum_sq = 0.0;
    let mut count = 0usize;
    for chunk in images.chunks(32) {
        let mean = vae
            .encode(&images_to_tensor(chunk, IMAGE_SIZE, device)?)?
            .mean;
        let values = mean.flatten_all()?.to_vec1::<f32>()?;
        count += values.len();
        for v in values {
            sum += v as f64;
            sum_sq += (v as f64) * (v as f64);
        }
    }
    let mean = sum / count as f64;
    let std = (sum_sq / count as f64 - mean * mean).sqrt();
    Ok(1.0 / std)
}

fn vocabulary() -> Vec<String> {
    world::vocabulary().iter().map(|w| w.to_string()).collect()
}

/// Layout channels of a UNet trained with --layout-channels: one per
/// object of the largest scenes of the world.
const LAYOUT_CHANNELS: usize = 3;

fn model_config(
    scaling_factor: f64,
    coordinate_channels: bool,
    layout_channels: usize,
) -> ModelConfig {
    let vocabulary = vocabulary();
    let text_encoder = TextEncoderConfig {
        vocab_size: vocabulary.len() + 4,
        ..TextEncoderConfig::default()
    };
    ModelConfig {
        name: MODEL_NAME.into(),
        image_size: IMAGE_SIZE,
        text_encoder,
        unet: UNetConfig {
            coordinate_channels,
            layout_channels,
            ..UNetConfig::default()
        },
        vae: VaeConfig {
            scaling_factor,
            ..vae_config()
        },
        vocabulary,
        train_steps: TRAIN_STEPS,
        prediction_type: PredictionType::VPrediction,
        default_steps: 25,
        default_guidance: 3.0,
        latent_reader: false,
        inversion_steps: Some(DEFAULT_INVERSION_STEPS),
        layout_guidance: Some(DEFAULT_LAYOUT_GUIDANCE),
    }
}

fn train_diffusion(args: &DiffusionArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let common = &args.common;
    let (vae, _) = load_vae(&args.vae, &device)?;
    let scaling = latent_scaling(&args.vae, &vae, common.seed, &device)?;
    println!("latent scaling factor {scaling:.4}");
    if !(0.0..=1.0).contains(&args.layout_dropout) {
        bail!(
            "--layout-dropout is {}; use a probability from 0 to 1",
            args.layout_dropout
        )
    }
    let layout_channels = if args.layout_channels {
        LAYOUT_CHANNELS
    } else {
        0
    };
    let config = model_config(scaling, args.coordinate_channels, layout_channels);
    let settings = DiffusionTraining {
        caption_dropout: args.caption_dropout,
        prediction: config.prediction_type,
        lr: lr_schedule(common),
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        ema_decay: 0.999,
        noisy_share: args.noisy_share,
        noisy_from: args.noisy_from,
        layout_dropout: args.layout_dropout,
    };
    let mut trainer = DiffusionTrainer::new(
        &config.text_encoder,
        &config.unet,
        config.tokenizer(),
        NoiseSchedule::cosine(TRAIN_STEPS),
        settings,
        common.seed,
        &device,
    )?;
    if let Some(init) = &args.init
        && checkpoint::latest(&common.run)?.is_none()
    {
        let tensors = stage_tensors(init, &["text_model.", "unet."], &device)?;
        let set = trainer.start_from(&tensors)?;
        println!(
            "starting from the {set} text encoder and UNet tensors of {}",
            init.display()
        );
    }
    let mut state = resume(
        &common.run,
        "diffusion",
        common.seed,
        &mut trainer.adam,
        &mut trainer.ema,
        &device,
    )?;
    let dataset = latent_dataset(
        &common.run,
        &args.vae,
        &vae,
        scaling,
        common.seed ^ 0xD1FF,
        args.scenes,
        &device,
    )?;
    let progress = Progress::new(state.step, common.steps, common.minutes);
    while state.step < common.last_step() {
        let (latents, captions) = dataset.batch(state.step, common.batch)?;
        let stats = if layout_channels > 0 {
            let layouts = dataset.layouts(state.step, common.batch)?;
            trainer.step_with_layouts(&latents, &captions, Some(&layouts))?
        } else {
            trainer.step(&latents, &captions)?
        };
        if after_step(
            common,
            &progress,
            &mut state,
            &stats,
            &trainer.adam,
            &trainer.ema,
        )? {
            return Ok(());
        }
    }
    println!("diffusion done at step {}", state.step);
    Ok(())
}

/// Loads a run's encoded training scenes, or builds and caches them.
fn latent_dataset(
    run: &Path,
    vae_run: &Path,
    vae: &AutoEncoderKl,
    scaling: f64,
    seed: u64,
    scenes: usize,
    device: &Device,
) -> anyhow::Result<LatentDataset> {
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let vae_weights = stage_weights_file(vae_run)?;
    let path = LatentDataset::cache_path(run, &vae_weights, seed, scenes)
        .with_context(|| format!("reading {}", vae_weights.display()))?;
    if path.exists() {
        println!("loading encoded scenes from {}", path.display());
        return Ok(LatentDataset::load(&path, seed, device)?);
    }
    println!("encoding {scenes} training scenes");
    let start = Instant::now();
    let dataset = LatentDataset::build(
        vae,
        scaling,
        IMAGE_SIZE,
        seed,
        scenes,
        device,
        &mut |done| {
            if done % 5_000 < 64 {
                println!(
                    "  {done} scenes encoded, {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    dataset.save(&path)?;
    println!("saved {}", path.display());
    Ok(dataset)
}

fn train_reader(args: &ReaderArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let common = &args.common;
    let (vae, vae_tensors) = load_vae(&args.vae, &device)?;
    let settings = ReaderTraining {
        lr: lr_schedule(common),
        max_grad_norm: 1.0,
        ema_decay: 0.999,
    };
    let mut trainer = ReaderTrainer::from_encoder(&vae_config(), &vae_tensors, settings, &device)?;
    let mut state = resume(
        &common.run,
        "reader",
        common.seed,
        &mut trainer.adam,
        &mut trainer.ema,
        &device,
    )?;
    // Unscaled latents: the reader's target is the autoencoder's own mean.
    let dataset = latent_dataset(
        &common.run,
        &args.vae,
        &vae,
        1.0,
        common.seed ^ 0x12EAD,
        args.scenes,
        &device,
    )?;
    let mix = DistortionMix {
        distorted: args.distorted,
        geometric: args.geometric,
    };
    let progress = Progress::new(state.step, common.steps, common.minutes);
    while state.step < common.last_step() {
        let (latents, _) = dataset.batch(state.step, common.batch)?;
        let decoded = tensor_to_images(&vae.decode(&latents)?)?;
        let mut rng =
            NoiseStream::with_domain(b"mmgen train reader", common.seed ^ state.step as u64);
        let (_, channels, rows, cols) = latents.dims4()?;
        let latent_shape = (channels, rows, cols);
        let (distorted, covered): (Vec<RgbImage>, Vec<Vec<bool>>) = decoded
            .iter()
            .map(|image| distort_for_reader(image, mix, latent_shape, &mut rng))
            .unzip();
        let pixels = images_to_tensor(&distorted, IMAGE_SIZE, &device)?;
        let covered = coverage_tensor(&covered, latent_shape, &device)?;
        let stats = trainer.step(&pixels, &latents, &covered)?;
        if after_step(
            common,
            &progress,
            &mut state,
            &stats,
            &trainer.adam,
            &trainer.ema,
        )? {
            return Ok(());
        }
    }
    println!("latent reader done at step {}", state.step);
    Ok(())
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let (vae, vae_tensors) = load_vae(&args.vae, &device)?;
    let seed = match checkpoint::latest(&args.diffusion)? {
        Some(folder) => {
            let state: RunState =
                serde_json::from_slice(&std::fs::read(folder.join("state.json"))?)?;
            state.seed
        }
        None => 1,
    };
    let scaling = latent_scaling(&args.vae, &vae, seed, &device)?;
    let mut tensors = stage_tensors(&args.diffusion, &["text_model.", "unet."], &device)?;
    // A UNet trained with coordinate channels has two more inputs, one
    // with layout channels three more; the sums 2, 3 and 5 tell them apart.
    let unet_inputs = match tensors.get("unet.conv_in.weight") {
        Some(weight) => weight.dim(1)?,
        None => bail!(
            "{} contains no unet.conv_in.weight; pass a diffusion run or an exported model",
            args.diffusion.display()
        ),
    };
    let latent_channels = UNetConfig::default().in_channels;
    let (coordinates, layout_channels) = match unet_inputs.checked_sub(latent_channels) {
        Some(0) => (false, 0),
        Some(2) => (true, 0),
        Some(LAYOUT_CHANNELS) => (false, LAYOUT_CHANNELS),
        Some(extra) if extra == 2 + LAYOUT_CHANNELS => (true, LAYOUT_CHANNELS),
        _ => bail!(
            "unet.conv_in.weight of {} takes {unet_inputs} input channels; expected {latent_channels} \
             plus 0, 2 (coordinates), {LAYOUT_CHANNELS} (layout) or {} (both)",
            args.diffusion.display(),
            2 + LAYOUT_CHANNELS
        ),
    };
    let mut config = model_config(scaling, coordinates, layout_channels);
    tensors.extend(vae_tensors);
    if let Some(reader) = &args.reader {
        tensors.extend(stage_tensors(reader, &["latent_reader."], &device)?);
        config.latent_reader = true;
    }
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F16)?)))
        .collect::<candle_core::Result<_>>()?;
    std::fs::create_dir_all(&args.out)?;
    candle_core::safetensors::save(&tensors, args.out.join("model.safetensors"))?;
    std::fs::write(
        args.out.join("config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    println!("wrote {} ({} tensors)", args.out.display(), tensors.len());
    Ok(())
}
