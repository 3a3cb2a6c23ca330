//! Measures watermark detection on the built-in model: for several
//! generations and a few image changes, the share of signs recovered by
//! DDIM inversion, the detection rate at the default threshold and the
//! false positives on the photos in `../shared/fixtures/photos`, for each
//! number of inversion steps.
//!
//! Run: `cargo run --release --example bench_watermark -- [--images 16] [--steps 10,25,50] [--refinements 0]`

use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use image::RgbImage;
use mmgen::engine::{InversionOptions, Model, SampleOptions, builtin};
use mmgen::media::{self, MediaFormat};
use mmgen::watermark::{self, Candidates, WatermarkKey};

const PROMPTS: [&str; 4] = [
    "a large red circle",
    "a small blue square above a yellow star",
    "一个大绿色三角形",
    "a purple circle left of a cyan triangle",
];

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// An image change applied before detection.
struct Attack {
    name: &'static str,
    apply: fn(&RgbImage) -> anyhow::Result<RgbImage>,
}

fn jpeg(image: &RgbImage, quality: u8) -> anyhow::Result<RgbImage> {
    let bytes = media::encode(image, MediaFormat::Jpeg, quality)?;
    Ok(media::decode(&bytes)?.image)
}

fn attacks() -> Vec<Attack> {
    vec![
        Attack {
            name: "identity",
            apply: |i| Ok(i.clone()),
        },
        Attack {
            name: "jpeg 80",
            apply: |i| jpeg(i, 80),
        },
        Attack {
            name: "jpeg 50",
            apply: |i| jpeg(i, 50),
        },
        Attack {
            name: "resize 0.5 and back",
            apply: |i| {
                let small = image::imageops::resize(
                    i,
                    i.width() / 2,
                    i.height() / 2,
                    image::imageops::FilterType::Triangle,
                );
                Ok(image::imageops::resize(
                    &small,
                    i.width(),
                    i.height(),
                    image::imageops::FilterType::CatmullRom,
                ))
            },
        },
    ]
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let count: usize = arg("--images", "16").parse().context("--images")?;
    let steps: Vec<usize> = arg("--steps", "10,25,50")
        .split(',')
        .map(|s| s.parse().context("--steps"))
        .collect::<anyhow::Result<_>>()?;
    let refinements: usize = arg("--refinements", "0").parse().context("--refinements")?;
    let model = builtin::load(&Device::Cpu)?;
    let key = WatermarkKey::new([7u8; 32]);
    let serials: Vec<u64> = (1..=count as u64).collect();
    let images = generate(&model, &key, &serials)?;
    let photos = read_photos()?;
    let candidates = [Candidates {
        key: &key,
        serials: &serials,
    }];

    println!(
        "{count} generations, {} photos, threshold {:e}, {refinements} refinements per inversion step",
        photos.len(),
        watermark::DEFAULT_THRESHOLD
    );
    println!(
        "{:<22} {:>6} {:>10} {:>9} {:>8} {:>10}",
        "attack", "steps", "agreement", "detected", "serial", "s/detect"
    );
    for &inversion_steps in &steps {
        let options = InversionOptions {
            steps: inversion_steps,
            refinements,
        };
        for attack in attacks() {
            let mut agreement = 0.0;
            let mut detected = 0;
            let mut right_serial = 0;
            let started = Instant::now();
            for (image, &serial) in images.iter().zip(&serials) {
                let changed = (attack.apply)(image)?;
                let latent = invert(&model, &changed, &options)?;
                let detection =
                    watermark::detect(&latent, &candidates, watermark::DEFAULT_THRESHOLD);
                let pattern = watermark::sign_pattern(&key, serial, latent.len());
                agreement += pattern.agreement(&watermark::BitPattern::from_signs(&latent)) as f64
                    / latent.len() as f64;
                detected += usize::from(detection.detected);
                right_serial += usize::from(
                    detection
                        .payload
                        .as_ref()
                        .is_some_and(|p| p.serial == serial),
                );
            }
            let per = started.elapsed().as_secs_f64() / count as f64;
            println!(
                "{:<22} {inversion_steps:>6} {:>10.3} {:>5}/{count:<3} {:>4}/{count:<3} {per:>10.3}",
                attack.name,
                agreement / count as f64,
                detected,
                right_serial
            );
        }
        let mut false_positives = 0;
        for photo in &photos {
            let detection = watermark::detect(
                &invert(&model, photo, &options)?,
                &candidates,
                watermark::DEFAULT_THRESHOLD,
            );
            false_positives += usize::from(detection.detected);
        }
        println!(
            "{:<22} {inversion_steps:>6} false positives {false_positives}/{}",
            "photos",
            photos.len()
        );
    }
    Ok(())
}

fn generate(model: &Model, key: &WatermarkKey, serials: &[u64]) -> anyhow::Result<Vec<RgbImage>> {
    let config = model.config();
    let (c, h, w) = config.latent_shape();
    let values: Vec<f32> = serials
        .iter()
        .flat_map(|&serial| watermark::initial_latent(key, serial, 1000 + serial, c * h * w))
        .collect();
    let noise = Tensor::from_vec(values, (serials.len(), c, h, w), &Device::Cpu)?;
    let prompts: Vec<&str> = (0..serials.len())
        .map(|i| PROMPTS[i % PROMPTS.len()])
        .collect();
    let options = SampleOptions {
        steps: config.default_steps,
        guidance: config.default_guidance,
    };
    let latents = model.sample(&noise, &prompts, &options, &mut |_| {})?;
    Ok(model.decode_latents(&latents)?)
}

fn invert(model: &Model, image: &RgbImage, options: &InversionOptions) -> anyhow::Result<Vec<f32>> {
    let input = media::to_model_input(image, model.config().image_size as u32);
    let latents = model.encode_images(&[input])?;
    Ok(model
        .invert(&latents, options)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn read_photos() -> anyhow::Result<Vec<RgbImage>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(dir) = [
        root.join("../shared/fixtures/photos"),
        root.join("../../shared/fixtures/photos"),
    ]
    .into_iter()
    .find(|d| d.is_dir()) else {
        anyhow::bail!(
            "the photos folder shared/fixtures/photos is missing beside {}",
            root.display()
        );
    };
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        photos.push(media::decode(&media::read_file(&path)?)?.image);
    }
    Ok(photos)
}
