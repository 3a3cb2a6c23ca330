//! Times the whole provenance pipeline on the built-in model: `generate`
//! (sampling, decoding, encoding, signing, ledger append) for one image
//! and for a batch, and `verify` (decoding, C2PA read, VAE encoding, DDIM
//! inversion, watermark test, ledger look-up) for one file.
//!
//! Run: `cargo run --release --example bench_pipeline -- [--iters 5] [--batch 8]`

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use mmgen::engine::{InversionOptions, builtin};
use mmgen::generation::{self, GenerationRequest, Provenance};
use mmgen::keys::KeyStore;
use mmgen::ledger::{CheckpointSigner, Ledger};
use mmgen::media::MediaFormat;
use mmgen::verify::Verifier;
use mmgen::watermark::{self, WatermarkKey};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let iters = arg("--iters", 5);
    let batch = arg("--batch", 8);
    let dir = tempfile::tempdir()?;
    let keys = KeyStore::new(&dir.path().join("keys")).init()?;
    let watermark_key = WatermarkKey::new(keys.watermark_secret);
    let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite"))?;

    let started = Instant::now();
    let model = builtin::load(&Device::Cpu)?;
    println!(
        "model load                         {:>8.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "embedded weights                   {:>8.2} MB",
        builtin::weights_len() as f64 / 1e6
    );
    let config = model.config().clone();
    println!(
        "default steps {}, inversion steps {}, guidance {}, image {}x{}, threads {}",
        config.default_steps,
        config.detection_steps(),
        config.default_guidance,
        config.image_size,
        config.image_size,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
    );

    let checkpoint =
        CheckpointSigner::new("bench-host/mmgen-ledger/0", keys.checkpoint_key.clone())?;
    let provenance = Provenance {
        watermark: &watermark_key,
        signer: Some(&keys.signer),
        checkpoint: &checkpoint,
    };
    let mut request = GenerationRequest {
        prompt: "a red circle above a blue square".into(),
        count: 1,
        seed: Some(1),
        steps: None,
        guidance: None,
        output: None,
        format: MediaFormat::Png,
        overwrite: false,
        log_prompt: true,
        prompt_in_manifest: false,
    };
    let mut files = Vec::new();
    let mut run = |request: &GenerationRequest, ledger: &mut Ledger| -> anyhow::Result<f64> {
        let start = Instant::now();
        let images = generation::generate(&model, ledger, &provenance, request, &mut |_, _| {})?;
        let elapsed = start.elapsed().as_secs_f64();
        files.extend(images.into_iter().map(|i| i.path));
        Ok(elapsed)
    };

    // One image at a time, the first run discarded as warm-up.
    std::env::set_current_dir(dir.path())?;
    run(&request, &mut ledger)?;
    let mut single = Vec::new();
    for i in 0..iters {
        request.seed = Some(10 + i as u64);
        single.push(run(&request, &mut ledger)?);
    }
    let per_image = median(&mut single);
    println!("generate, 1 image (signed)         {per_image:>8.3} s/image (median of {iters})");

    request.count = batch;
    request.seed = Some(100);
    let batch_time = run(&request, &mut ledger)?;
    println!(
        "generate, batch of {batch:<3}             {:>8.3} s/image, {:.2} images/s",
        batch_time / batch as f64,
        batch as f64 / batch_time
    );

    let verifier = Verifier {
        model: &model,
        ledger: Some(&ledger),
        keys: std::slice::from_ref(&watermark_key),
        trust_anchors: None,
        inversion: InversionOptions {
            steps: config.detection_steps(),
            refinements: 0,
        },
        threshold: watermark::DEFAULT_THRESHOLD,
    };
    let mut verify_times = Vec::new();
    let mut detected = 0;
    for file in files.iter().take(iters.max(1)) {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let start = Instant::now();
        let report = verifier.verify(&file.display().to_string(), &bytes)?;
        verify_times.push(start.elapsed().as_secs_f64());
        if let mmgen::verify::WatermarkFinding::Checked(d) = &report.watermark {
            detected += usize::from(d.detected);
        }
    }
    let count = verify_times.len();
    println!(
        "verify, 1 file                     {:>8.3} s/file (median of {count}; watermark found in {detected} of {count})",
        median(&mut verify_times)
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
