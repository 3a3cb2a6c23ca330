//! Probe: how much detection evidence do better readings of a suspect
//! image carry, and how much of it survives a 0.6 centre crop?
//!
//! For marked outputs of the built-in model (the prompts and seeds of
//! `bench_watermark`), it prints the raw log10 p-value of the true
//! pattern's weighted reading under several ways of reading the latent:
//!
//! - `reader, empty`: the latent reader and an empty-prompt inversion, as
//!   `verify` does;
//! - `reader, record`: the same latent, inverted under the generation's
//!   own prompt, planned layout and guidance (`Model::invert_as_sampled`);
//! - `fitted, ...`: the reader's latent refined by gradient descent on the
//!   decoder's pixel error over the shown pixels (`Model::fit_latents`);
//! - `exact, ...` (unattacked only): the sampler's own clean latents, the
//!   ceiling of any latent reader.
//!
//! With `--crop-cells`, unattacked readings are also scored over only the
//! cells a 0.6 crop keeps, which separates what the crop costs from what
//! those cells carry. A row counts the outputs that a 200-record ledger
//! with 18 planned readings would detect at 1e-6.
//!
//! Run: `cargo run --release --example probe_rereading -- [--outputs 32]
//! [--attack "crop 0.6"] [--fit-steps 40] [--fit-lr 0.03] [--crop-cells]`

use candle_core::{Device, Tensor};
use clap::Parser;
use image::RgbImage;
use mmgen::engine::{InversionOptions, SampleOptions, builtin};
use mmgen::watermark::attack::benchmark_suite;
use mmgen::watermark::scan::{self, Hypothesis};
use mmgen::watermark::{self, Candidates, Reading, WatermarkKey, detect_readings};
use mmgen::world;

#[derive(Parser)]
struct Args {
    /// Marked outputs.
    #[arg(long, default_value_t = 32)]
    outputs: u64,
    /// Attack of the suite, undone by the matching hypothesis (identity,
    /// crop 0.8, crop 0.6, the combination, rotate 5 or rotate 10).
    #[arg(long, default_value = "identity")]
    attack: String,
    /// Adam steps of the decoder fit.
    #[arg(long, default_value_t = 40)]
    fit_steps: usize,
    /// Adam step size of the decoder fit.
    #[arg(long, default_value_t = 0.03)]
    fit_lr: f64,
    /// Also score unattacked readings over the cells a 0.6 crop keeps.
    #[arg(long)]
    crop_cells: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.outputs == 0 {
        anyhow::bail!("--outputs 0 leaves nothing to score; pass at least 1");
    }
    let hypothesis = match args.attack.as_str() {
        "identity" => Hypothesis::Identity,
        "crop 0.8" => Hypothesis::CentreCrop(0.8),
        "crop 0.6" => Hypothesis::CentreCrop(0.6),
        "jpeg 60+crop 0.71+bright 0.5" => Hypothesis::CentreCrop(0.71),
        "rotate 5" => Hypothesis::Rotation(5.0),
        "rotate 10" => Hypothesis::Rotation(10.0),
        other => anyhow::bail!(
            "unsupported attack {other:?}: pass identity, crop 0.8, crop 0.6, \
             jpeg 60+crop 0.71+bright 0.5, rotate 5 or rotate 10"
        ),
    };
    let attack = benchmark_suite()
        .into_iter()
        .find(|a| a.name == args.attack)
        .ok_or_else(|| anyhow::anyhow!("attack {:?} not found in the suite", args.attack))?;
    let model = builtin::load_dir_or_builtin(None)?;
    let key = WatermarkKey::new([7u8; 32]);
    let config = model.config();
    let (c, h, w) = config.latent_shape();
    let size = config.image_size as u32;
    let sample = SampleOptions {
        steps: config.default_steps,
        guidance: config.default_guidance,
        layout: true,
    };
    let inversion = InversionOptions {
        steps: config.detection_steps(),
        refinements: 0,
    };
    let serials: Vec<u64> = (1..=args.outputs).collect();
    let texts = world::benchmark_captions(&serials, 1000);
    let values: Vec<f32> = serials
        .iter()
        .flat_map(|&id| watermark::initial_latent(&key, id, 1000 + id, c * h * w))
        .collect();
    let noise = Tensor::from_vec(values, (serials.len(), c, h, w), &Device::Cpu)?;
    let exact = model.sample(&noise, &texts, &sample, &mut |_| {})?;
    let undone: Vec<RgbImage> = model
        .decode_latents(&exact)?
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let input = mmgen::media::to_model_input(&attack.apply(image, i as u64), size);
            scan::undo(&input, hypothesis, (c, h, w)).0
        })
        .collect();

    // The fit weighs only the pixels the undone image shows, because a
    // crop's mirrored border carries no mark.
    let shown_pixels: Vec<f32> = (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f32 + 0.5, (i / size) as f32 + 0.5);
            let Hypothesis::CentreCrop(share) = hypothesis else {
                return 1.0;
            };
            let edge = (size as f32 * share).round();
            let low = (size as f32 - edge) / 2.0;
            let inside = |v: f32| v >= low && v < low + edge;
            if inside(x) && inside(y) { 1.0 } else { 0.0 }
        })
        .collect();
    let shown_pixels = Tensor::from_vec(
        shown_pixels,
        (1, 1, size as usize, size as usize),
        &Device::Cpu,
    )?;
    let read = model.read_latents(&undone)?;
    let fitted = model.fit_latents(
        &read,
        &undone,
        Some(&shown_pixels),
        args.fit_steps,
        args.fit_lr,
    )?;

    let mut rows = vec![
        ("reader, empty", model.invert(&read, &inversion)?),
        (
            "reader, record",
            model.invert_as_sampled(&read, &noise, &texts, &sample, &inversion)?,
        ),
        ("fitted, empty", model.invert(&fitted, &inversion)?),
        (
            "fitted, record",
            model.invert_as_sampled(&fitted, &noise, &texts, &sample, &inversion)?,
        ),
    ];
    if hypothesis == Hypothesis::Identity {
        rows.push(("exact, empty", model.invert(&exact, &inversion)?));
        rows.push((
            "exact, record",
            model.invert_as_sampled(&exact, &noise, &texts, &sample, &inversion)?,
        ));
    }
    let mut scorings = vec![("", scan::coverage(size, hypothesis, (c, h, w)))];
    if args.crop_cells && hypothesis == Hypothesis::Identity {
        let crop_coverage = scan::coverage(size, Hypothesis::CentreCrop(0.6), (c, h, w));
        scorings.push((" (0.6 crop cells)", crop_coverage));
    }
    let needed = -6.0 - (200.0f64 * 18.0).log10();
    println!(
        "{} outputs, attack {:?}, read as {:?}; detected means raw log10 p <= {needed:.2}",
        serials.len(),
        args.attack,
        hypothesis.name()
    );
    for (name, inverted) in rows {
        let inverted: Vec<Vec<f32>> = inverted.flatten_from(1)?.to_vec2()?;
        for (suffix, coverage) in &scorings {
            let mut logs: Vec<f64> = inverted
                .iter()
                .zip(&serials)
                .map(|(values, &serial)| {
                    let reading = Reading::weighted("probe", values, coverage);
                    let serials = [serial];
                    let candidates = [Candidates {
                        key: &key,
                        serials: &serials,
                    }];
                    detect_readings(&[reading], 1, &candidates, 1.0).log10_p_value
                })
                .collect();
            logs.sort_by(f64::total_cmp);
            let detected = logs.iter().filter(|&&l| l <= needed).count();
            println!(
                "{:<34} detected {detected:>3}/{}  log10 p median {:>6.1}  worst {:>6.1}",
                format!("{name}{suffix}"),
                logs.len(),
                logs[logs.len() / 2],
                logs[logs.len() - 1],
            );
        }
    }
    Ok(())
}
