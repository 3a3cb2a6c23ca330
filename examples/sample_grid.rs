//! Draws a grid of samples from a model, one row per prompt and one column
//! per seed, to look at what the model follows.
//!
//! Run: `cargo run --release --example sample_grid -- OUT.png [MODEL_DIR|builtin] [GUIDANCE]
//! [LAYOUT_STRENGTH LAYOUT_SHARE]` (without MODEL_DIR, the built-in model; without the
//! others, the model's defaults).

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use image::RgbImage;
use mmgen::engine::layout::LayoutGuidance;
use mmgen::engine::{SampleOptions, builtin};
use mmgen::watermark::plain_latent;

const PROMPTS: [&str; 8] = [
    "a large red circle",
    "a small blue square",
    "a large yellow triangle",
    "a large green star",
    "a red circle above a blue square",
    "a yellow triangle left of a purple circle",
    "一个大蓝色圆",
    "一个小红色正方形在大黄色圆的右边",
];

const SEEDS: u64 = 6;

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).context(
        "usage: sample_grid OUT.png [MODEL_DIR] [GUIDANCE] [LAYOUT_STRENGTH LAYOUT_SHARE]",
    )?;
    let dir = args.get(2).filter(|dir| *dir != "builtin").map(Path::new);
    let mut model = builtin::load_dir_or_builtin(dir)?;
    if let (Some(strength), Some(share)) = (args.get(4), args.get(5)) {
        model.set_layout_guidance(Some(LayoutGuidance {
            strength: strength
                .parse()
                .with_context(|| format!("invalid layout strength {strength:?}"))?,
            share: share
                .parse()
                .with_context(|| format!("invalid layout share {share:?}"))?,
            candidates: 16,
            probe: 0.2,
        }))?;
    }
    let config = model.config().clone();
    let (c, h, w) = config.latent_shape();
    let options = SampleOptions {
        steps: config.default_steps,
        guidance: match args.get(3) {
            Some(text) => text
                .parse()
                .with_context(|| format!("invalid guidance {text:?}"))?,
            None => config.default_guidance,
        },
        layout: true,
    };
    let edge = config.image_size as u32;
    let mut grid = RgbImage::new(edge * SEEDS as u32, edge * PROMPTS.len() as u32);
    for (row, prompt) in PROMPTS.iter().enumerate() {
        let noise: Vec<f32> = (0..SEEDS)
            .flat_map(|seed| plain_latent(seed, c * h * w))
            .collect();
        let noise = Tensor::from_vec(noise, (SEEDS as usize, c, h, w), &Device::Cpu)?;
        let prompts = vec![*prompt; SEEDS as usize];
        let latents = model.sample(&noise, &prompts, &options, &mut |_| {})?;
        for (col, image) in model.decode_latents(&latents)?.iter().enumerate() {
            image::imageops::replace(
                &mut grid,
                image,
                (col as u32 * edge) as i64,
                (row as u32 * edge) as i64,
            );
        }
        println!("row {row}: {prompt}");
    }
    grid.save(out).with_context(|| format!("writing {out}"))?;
    println!("wrote {out}");
    Ok(())
}
