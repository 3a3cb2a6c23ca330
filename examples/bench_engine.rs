//! Times the engine's networks on this machine: UNet forward and training
//! step, VAE forward and training step, and one default generation.
//!
//! Run: `cargo run --release --example bench_engine -- [--batch 32] [--iters 5]`
//! (with `MMGEN_CANDLE_OPS=1`, on candle's own CPU operations instead of
//! the engine's kernels).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mmgen::engine::clip::TextEncoderConfig;
use mmgen::engine::schedule::{NoiseSchedule, PredictionType};
use mmgen::engine::tokenizer::Tokenizer;
use mmgen::engine::unet::UNetConfig;
use mmgen::engine::vae::VaeConfig;
use mmgen::train::diffusion::{DiffusionTrainer, DiffusionTraining};
use mmgen::train::optim::LrSchedule;
use mmgen::train::vae::{VaeTrainer, VaeTraining};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn time<F: FnMut()>(label: &str, iters: usize, mut f: F) {
    f();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed().as_secs_f64() / iters as f64;
    println!("{label:<40} {:>8.1} ms", per * 1e3);
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let batch = arg("--batch", 32);
    let iters = arg("--iters", 5);
    let device = Device::Cpu;
    let lr = LrSchedule {
        peak: 1e-4,
        floor: 1e-5,
        warmup_steps: 10,
        total_steps: 100,
    };
    let kernels = if mmgen::engine::ops::enabled(&device) {
        "mmgen kernels"
    } else {
        "candle operations"
    };
    println!(
        "batch {batch}, {iters} iterations, threads {}, {kernels}",
        rayon_threads()
    );

    let unet_cfg = UNetConfig::default();
    let text_cfg = TextEncoderConfig::default();
    let words: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    let tokenizer = Tokenizer::new(&words, text_cfg.max_position_embeddings);
    let settings = DiffusionTraining {
        caption_dropout: 0.1,
        prediction: PredictionType::VPrediction,
        lr,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        ema_decay: 0.999,
        noisy_share: 0.0,
        noisy_from: 0,
        layout_dropout: 0.0,
    };
    let mut trainer = DiffusionTrainer::new(
        &text_cfg,
        &unet_cfg,
        tokenizer,
        NoiseSchedule::cosine(1000),
        settings,
        1,
        &device,
    )?;
    let params: usize = trainer
        .adam
        .vars()
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    println!("text encoder + UNet parameters: {params}");
    let latents = Tensor::randn(0f32, 1.0, (batch, 4, 16, 16), &device)?;
    let captions = vec!["w1 w2 w3 w4 w5 w6"; batch];
    let ids = Tensor::zeros(
        (batch, text_cfg.max_position_embeddings),
        DType::U32,
        &device,
    )?;
    let t = Tensor::full(500f32, batch, &device)?;
    time("text encoder + UNet forward", iters, || {
        let ctx = trainer.text_encoder.forward(&ids).unwrap();
        trainer.unet.forward(&latents, &t, &ctx).unwrap();
    });
    time("UNet training step", iters, || {
        trainer.step(&latents, &captions).unwrap();
    });

    let vae_cfg = VaeConfig::default();
    let vae_settings = VaeTraining {
        kl_weight: 1e-4,
        lr,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        ema_decay: 0.999,
    };
    let mut vae = VaeTrainer::new(&vae_cfg, vae_settings, 1, &device)?;
    let vae_params: usize = vae.adam.vars().iter().map(|(_, v)| v.elem_count()).sum();
    println!("VAE parameters: {vae_params}");
    let images = Tensor::randn(0f32, 0.5, (batch, 3, 64, 64), &device)?;
    time("VAE encode", iters, || {
        vae.vae.encode(&images).unwrap();
    });
    let z = Tensor::randn(0f32, 1.0, (batch, 4, 16, 16), &device)?;
    time("VAE decode", iters, || {
        vae.vae.decode(&z).unwrap();
    });
    time("VAE training step", iters, || {
        vae.step(&images).unwrap();
    });
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}
