//! Measures how well a model follows captions. It samples scenes of the
//! procedural world and generates each from its English and its Chinese
//! caption with the same initial noise. Then it reads the images back with
//! `mmgen::eval` and prints the accuracy of each attribute per language.
//!
//! Run: `cargo run --release --example eval -- [--prompts 200] [--seed 1]
//! [--model DIR] [--train-split] [--watermark] [--guidance G]` (without
//! --model, the built-in model). With --watermark the initial noise carries
//! the latent watermark (one key, serial i+1 for scene i), which shows
//! whether the watermark costs any accuracy.
//!
//! For scenes of two or more shapes it also prints the share in which both
//! related shapes were found, and the relation accuracy over those alone.
//! The two figures separate a missing shape from a misplaced one.

use std::path::PathBuf;

use candle_core::Tensor;
use clap::Parser;
use mmgen::engine::layout::LayoutGuidance;
use mmgen::engine::{Model, SampleOptions, builtin};
use mmgen::eval::{Tally, evaluate};
use mmgen::watermark::{WatermarkKey, initial_latent, plain_latent};
use mmgen::world::{Language, SceneSampler, SceneSpec, Split, caption};

/// Images generated per model call.
const BATCH: usize = 16;

#[derive(Parser)]
struct Args {
    /// Number of scenes; each is generated once per language.
    #[arg(long, default_value_t = 200)]
    prompts: usize,
    /// Seed of the scene sampler and of the initial noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Model directory (config.json and model.safetensors); the built-in
    /// model when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Evaluate training-split scenes instead of held-out ones.
    #[arg(long)]
    train_split: bool,
    /// Sample the initial noise with the latent watermark.
    #[arg(long)]
    watermark: bool,
    /// Classifier-free guidance scale; the model's default when absent.
    #[arg(long)]
    guidance: Option<f64>,
    /// Sample from the prompt text alone, without the model's layout
    /// guidance.
    #[arg(long)]
    no_layout: bool,
    /// Layout guidance strength, replacing the model's.
    #[arg(long)]
    layout_strength: Option<f64>,
    /// Share of the sampling steps that carry layout guidance.
    #[arg(long)]
    layout_share: Option<f64>,
    /// Candidate layouts per prompt.
    #[arg(long)]
    layout_candidates: Option<usize>,
    /// Share of the sampling steps that probe where the noise puts colours.
    #[arg(long)]
    layout_probe: Option<f64>,
}

/// Formats a percentage, or "-" when nothing was counted.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}%"))
}

/// Generates one image per caption, `BATCH` at a time; caption `i` starts
/// from the noise of `noise_seeds[i]`, marked for serial i+1 when `key`
/// is given.
fn generate(
    model: &Model,
    captions: &[String],
    noise_seeds: &[u64],
    key: Option<&WatermarkKey>,
    options: &SampleOptions,
) -> anyhow::Result<Vec<image::RgbImage>> {
    let (c, h, w) = model.config().latent_shape();
    let mut images = Vec::with_capacity(captions.len());
    let len = c * h * w;
    for (chunk, (prompts, seeds)) in captions
        .chunks(BATCH)
        .zip(noise_seeds.chunks(BATCH))
        .enumerate()
    {
        let noise: Vec<f32> = seeds
            .iter()
            .enumerate()
            .flat_map(|(i, &seed)| match key {
                Some(key) => initial_latent(key, (chunk * BATCH + i + 1) as u64, seed, len),
                None => plain_latent(seed, len),
            })
            .collect();
        let noise = Tensor::from_vec(noise, (seeds.len(), c, h, w), model.device())?;
        let latents = model.sample(&noise, prompts, options, &mut |_| {})?;
        images.extend(model.decode_latents(&latents)?);
    }
    Ok(images)
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let args = Args::parse();
    let mut model = builtin::load_dir_or_builtin(args.model.as_deref())?;
    let overrides = [args.layout_strength, args.layout_share, args.layout_probe];
    if overrides.iter().any(Option::is_some) || args.layout_candidates.is_some() {
        let mut layout = model.config().layout_guidance.unwrap_or(LayoutGuidance {
            strength: 0.0,
            share: 0.0,
            candidates: 1,
            probe: 0.0,
        });
        layout.strength = args.layout_strength.unwrap_or(layout.strength);
        layout.share = args.layout_share.unwrap_or(layout.share);
        layout.candidates = args.layout_candidates.unwrap_or(layout.candidates);
        layout.probe = args.layout_probe.unwrap_or(layout.probe);
        model.set_layout_guidance(Some(layout))?;
    }
    let options = SampleOptions {
        steps: model.config().default_steps,
        guidance: args.guidance.unwrap_or(model.config().default_guidance),
        layout: !args.no_layout,
    };
    let layout = match model.config().layout_guidance.filter(|_| options.layout) {
        Some(g) => format!(
            "layout strength {} share {} candidates {} probe {}",
            g.strength, g.share, g.candidates, g.probe
        ),
        None => "no layout guidance".to_string(),
    };
    let split = if args.train_split {
        Split::Train
    } else {
        Split::HeldOut
    };
    let mut sampler = SceneSampler::new(args.seed);
    let specs: Vec<SceneSpec> = (0..args.prompts)
        .map(|_| *sampler.sample(split).spec())
        .collect();
    // The same noise for both captions of a scene, so that the languages are
    // compared on equal terms.
    let noise_seeds: Vec<u64> = (0..args.prompts as u64)
        .map(|i| (args.seed << 32) | i)
        .collect();

    let key = args.watermark.then(|| WatermarkKey::new([7u8; 32]));
    println!(
        "{} {split:?} scenes, seed {}, model {}, guidance {}, {layout}, {}",
        args.prompts,
        args.seed,
        model.config().name,
        options.guidance,
        if key.is_some() {
            "watermarked"
        } else {
            "unmarked"
        }
    );
    println!(
        "{:<9} {:>8} {:>8} {:>9} {:>8} {:>11} {:>15}",
        "language", "shape", "colour", "relation", "all", "pair found", "relation|found"
    );
    for language in [Language::English, Language::Chinese] {
        let captions: Vec<String> = specs.iter().map(|s| caption(s, language)).collect();
        let images = generate(&model, &captions, &noise_seeds, key.as_ref(), &options)?;
        let mut tally = Tally::default();
        for (image, spec) in images.iter().zip(&specs) {
            tally.add(&evaluate(image, spec)?);
        }
        println!(
            "{:<9} {:>8} {:>8} {:>9} {:>8} {:>11} {:>15}",
            format!("{language:?}"),
            percent(tally.shape_percent()),
            percent(tally.colour_percent()),
            percent(tally.relation_percent()),
            percent(tally.all_percent()),
            percent(tally.pairs_found_percent()),
            percent(tally.relation_found_percent()),
        );
    }
    Ok(())
}
