//! Measures the latent watermark of the built-in model under the fixed
//! attack suite of `mmgen::watermark::attack`.
//!
//! Positives are generations from the world's captions (English and
//! Chinese, training and held-out scenes) with varied seeds, each marked
//! with its own serial. Negatives are unmarked generations, the photos in
//! `../shared/fixtures/photos` and rendered scenes of the procedural world.
//! Every image goes through every attack, and every attacked image is read
//! under every geometric hypothesis of the default scan. For each attack
//! the program prints the true positive rate at the threshold, the rate of
//! exact serial recovery, the mean bit accuracy of the true pattern (the
//! best of the image's readings), the false positives among the
//! negatives, and the true positive rate that a ledger of 1,000,000
//! records would leave. Last, it times the real `scan` per image.
//!
//! Run: `cargo run --release --example bench_watermark -- [--generations 200]
//! [--unmarked 200] [--procedural 800] [--steps 10] [--attacks all]
//! [--timing 20] [--model DIR]`
//! (`--steps 5,10,25` prints one table per number of inversion steps).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Parser;
use image::RgbImage;
use mmgen::engine::{InversionOptions, Model, SampleOptions, builtin};
use mmgen::media;
use mmgen::watermark::attack::{AttackChain, benchmark_suite};
use mmgen::watermark::scan::{self, ScanSettings};
use mmgen::watermark::{self, Candidates, Reading, WatermarkKey, detect_readings};
use mmgen::world::{self, SceneSampler, Split};

/// Images per call of the sampler.
const BATCH: usize = 32;

#[derive(Parser)]
struct Args {
    /// Marked generations (positives).
    #[arg(long, default_value_t = 200)]
    generations: usize,
    /// Unmarked generations among the negatives.
    #[arg(long, default_value_t = 200)]
    unmarked: usize,
    /// Rendered world scenes among the negatives.
    #[arg(long, default_value_t = 800)]
    procedural: usize,
    /// Inversion steps, comma-separated; one table each.
    #[arg(long, default_value = "10")]
    steps: String,
    /// Attacks to run, comma-separated names from the suite, or `all`.
    #[arg(long, default_value = "all")]
    attacks: String,
    /// Images timed with the real scan (half positives, half negatives).
    #[arg(long, default_value_t = 20)]
    timing: usize,
    /// Model directory (config.json and model.safetensors); the built-in
    /// model when absent.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let args = Args::parse();
    let model = builtin::load_dir_or_builtin(args.model.as_deref())?;
    let key = WatermarkKey::new([7u8; 32]);
    let serials: Vec<u64> = (1..=args.generations as u64).collect();
    let started = Instant::now();
    let positives = generate(&model, Some(&key), &serials, 1000)?;
    let unmarked_ids: Vec<u64> = (1..=args.unmarked as u64).collect();
    let mut negatives = generate(&model, None, &unmarked_ids, 50_000)?;
    negatives.extend(read_photos()?);
    negatives.extend(procedural(
        args.procedural,
        model.config().image_size as u32,
    ));
    println!(
        "{} marked generations, {} negatives ({} unmarked generations, photos, {} scenes); \
         images made in {:.0} s; threshold {:e}; model has a latent reader: {}",
        positives.len(),
        negatives.len(),
        args.unmarked,
        args.procedural,
        started.elapsed().as_secs_f64(),
        watermark::DEFAULT_THRESHOLD,
        model.has_latent_reader()
    );
    let candidates = [Candidates {
        key: &key,
        serials: &serials,
    }];
    let suite: Vec<AttackChain> = benchmark_suite()
        .into_iter()
        .filter(|a| args.attacks == "all" || args.attacks.split(',').any(|n| n == a.name))
        .collect();

    for steps in args.steps.split(',') {
        let steps: usize = steps.trim().parse().context("--steps")?;
        let settings = ScanSettings::standard(InversionOptions {
            steps,
            refinements: 0,
        });
        println!("\ninversion steps {steps}");
        println!(
            "{:<30} {:>7} {:>7} {:>8} {:>9} {:>9} {:>7}",
            "attack", "TPR", "serial", "bit acc", "FP", "TPR@1M", "s/img"
        );
        for attack in &suite {
            let row = measure(
                &model,
                &key,
                &serials,
                &candidates,
                &positives,
                &negatives,
                attack,
                &settings,
            )?;
            println!("{row}");
        }
        kept_agreement(&model, &key, &serials, &positives, &settings.inversion)?;
        time_scan(
            &model,
            &candidates,
            &positives,
            &negatives,
            &settings,
            args.timing,
        )?;
    }
    Ok(())
}

/// Generates one image per id from world captions; with a key, image `i`
/// is marked with serial `ids[i]`. Seeds start at `seed_base`.
fn generate(
    model: &Model,
    key: Option<&WatermarkKey>,
    ids: &[u64],
    seed_base: u64,
) -> anyhow::Result<Vec<RgbImage>> {
    let config = model.config();
    let (c, h, w) = config.latent_shape();
    let options = SampleOptions {
        steps: config.default_steps,
        guidance: config.default_guidance,
        layout: true,
    };
    let captions = world::benchmark_captions(ids, seed_base);
    let mut images = Vec::with_capacity(ids.len());
    for (chunk, prompts) in ids.chunks(BATCH).zip(captions.chunks(BATCH)) {
        let values: Vec<f32> = chunk
            .iter()
            .flat_map(|&id| match key {
                Some(key) => watermark::initial_latent(key, id, seed_base + id, c * h * w),
                None => watermark::plain_latent(seed_base + id, c * h * w),
            })
            .collect();
        let noise = Tensor::from_vec(values, (chunk.len(), c, h, w), &Device::Cpu)?;
        let latents = model.sample(&noise, prompts, &options, &mut |_| {})?;
        images.extend(model.decode_latents(&latents)?);
    }
    Ok(images)
}

fn read_photos() -> anyhow::Result<Vec<RgbImage>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/photos");
    let mut photos = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {} (the third-party photos)", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        photos.push(media::decode(&bytes)?.image);
    }
    photos.sort_by_key(|p| (p.width(), p.height()));
    Ok(photos)
}

fn procedural(count: usize, size: u32) -> Vec<RgbImage> {
    let mut sampler = SceneSampler::new(777);
    (0..count)
        .map(|_| world::render(&sampler.sample(Split::Train), size))
        .collect()
}

/// One row of the table.
struct Row {
    name: String,
    positives: usize,
    detected: usize,
    right_serial: usize,
    bit_accuracy: f64,
    negatives: usize,
    false_positives: usize,
    detected_at_million: usize,
    seconds_per_image: f64,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |n: usize| n as f64 / self.positives.max(1) as f64;
        write!(
            f,
            "{:<30} {:>7.3} {:>7.3} {:>8.3} {:>4}/{:<4} {:>9.3} {:>7.3}",
            self.name,
            rate(self.detected),
            self.right_serial as f64 / self.detected.max(1) as f64,
            self.bit_accuracy,
            self.false_positives,
            self.negatives,
            rate(self.detected_at_million),
            self.seconds_per_image
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    model: &Model,
    key: &WatermarkKey,
    serials: &[u64],
    candidates: &[Candidates],
    positives: &[RgbImage],
    negatives: &[RgbImage],
    attack: &AttackChain,
    settings: &ScanSettings,
) -> anyhow::Result<Row> {
    let planned = scan::planned_readings(settings);
    let started = Instant::now();
    let attacked: Vec<RgbImage> = positives
        .iter()
        .enumerate()
        .map(|(i, image)| attack.apply(image, i as u64))
        .collect();
    let readings = scan::read_batch(model, &attacked, settings)?;
    let mut row = Row {
        name: attack.name.clone(),
        positives: positives.len(),
        detected: 0,
        right_serial: 0,
        bit_accuracy: 0.0,
        negatives: negatives.len(),
        false_positives: 0,
        detected_at_million: 0,
        seconds_per_image: 0.0,
    };
    let len = model.config().latent_len();
    for (readings, &serial) in readings.iter().zip(serials) {
        let detection = detect_readings(readings, planned, candidates, settings.threshold);
        row.detected += usize::from(detection.detected);
        row.right_serial += usize::from(detection.payload.is_some_and(|p| p.serial == serial));
        // A ledger of 1,000,000 records multiplies the correction by
        // 1,000,000 / (candidates tested).
        let extra = (1e6 / detection.candidates.max(1) as f64).log10();
        row.detected_at_million +=
            usize::from(detection.log10_p_value + extra <= settings.threshold.log10());
        row.bit_accuracy += best_accuracy(readings, &watermark::sign_pattern(key, serial, len));
    }
    row.bit_accuracy /= positives.len().max(1) as f64;

    let attacked: Vec<RgbImage> = negatives
        .iter()
        .enumerate()
        .map(|(i, image)| attack.apply(image, 1_000_000 + i as u64))
        .collect();
    for readings in scan::read_batch(model, &attacked, settings)? {
        let detection = detect_readings(&readings, planned, candidates, settings.threshold);
        row.false_positives += usize::from(detection.detected);
    }
    row.seconds_per_image =
        started.elapsed().as_secs_f64() / (positives.len() + negatives.len()).max(1) as f64;
    Ok(row)
}

/// The highest share of counted signs that agree with `pattern` over the
/// readings that count at least a quarter of the latent.
fn best_accuracy(readings: &[Reading], pattern: &watermark::BitPattern) -> f64 {
    readings
        .iter()
        .filter(|r| r.elements() as usize >= pattern.len() / 4)
        .map(|r| r.agreement_with(pattern) as f64 / r.elements().max(1) as f64)
        .fold(0.0, f64::max)
}

/// Prints the agreement of the unattacked positives over all latent cells
/// and over the cells that each centre crop of the default scan keeps. Set
/// against a crop's bit accuracy in the table, it separates what the crop
/// costs from what the kept cells carry to begin with.
fn kept_agreement(
    model: &Model,
    key: &WatermarkKey,
    serials: &[u64],
    positives: &[RgbImage],
    inversion: &InversionOptions,
) -> anyhow::Result<()> {
    let shape = model.config().latent_shape();
    let len = model.config().latent_len();
    let latents = model.read_latents(positives)?;
    let values: Vec<f32> = model
        .invert(&latents, inversion)?
        .flatten_all()?
        .to_vec1()?;
    let patterns: Vec<watermark::BitPattern> = serials
        .iter()
        .map(|&serial| watermark::sign_pattern(key, serial, len))
        .collect();
    let blank = RgbImage::new(
        model.config().image_size as u32,
        model.config().image_size as u32,
    );
    let mut masks = vec![("all cells".to_string(), vec![true; len])];
    for hypothesis in scan::default_hypotheses() {
        if let scan::Hypothesis::CentreCrop(share) = hypothesis {
            let (_, covered) = scan::undo(&blank, hypothesis, shape);
            masks.push((format!("cells a {share} crop keeps"), covered));
        }
    }
    for (name, mask) in masks {
        let (mut agree, mut count) = (0usize, 0usize);
        for (index, pattern) in patterns.iter().enumerate() {
            for (element, _) in mask.iter().enumerate().filter(|(_, kept)| **kept) {
                let positive = values[index * len + element] > 0.0;
                agree += usize::from(Some(positive) == pattern.bit(element));
                count += 1;
            }
        }
        println!(
            "unattacked agreement over {name}: {:.3} ({} per image)",
            agree as f64 / count.max(1) as f64,
            count / patterns.len().max(1)
        );
    }
    Ok(())
}

/// Times `scan` itself, which stops early on a detection, on unattacked
/// positives and negatives.
fn time_scan(
    model: &Model,
    candidates: &[Candidates],
    positives: &[RgbImage],
    negatives: &[RgbImage],
    settings: &ScanSettings,
    count: usize,
) -> anyhow::Result<()> {
    let half = count / 2;
    for (label, images) in [("marked", positives), ("unmarked", negatives)] {
        let images = &images[..half.min(images.len())];
        let started = Instant::now();
        for image in images {
            scan::scan(model, image, candidates, settings)?;
        }
        println!(
            "scan of one {label} image: {:.3} s (mean of {})",
            started.elapsed().as_secs_f64() / images.len().max(1) as f64,
            images.len()
        );
    }
    Ok(())
}
