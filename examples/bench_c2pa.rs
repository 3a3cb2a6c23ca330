//! Times signing and reading a C2PA manifest per format, for a 64x64 and
//! a 2048x2048 image. Signing is `manifest::sign_generated`, which
//! includes the read-back check that every output gets; reading is
//! `manifest::read`, as `verify` does it. Encoding the image is not timed.
//!
//! Run: `cargo run --release --example bench_c2pa -- [--small-iters 50] [--large-iters 5]`

use std::time::Instant;

use image::{Rgb, RgbImage};
use mmgen::keys::KeyStore;
use mmgen::manifest::{self, GenerationClaim};
use mmgen::media::{self, MediaFormat};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Draws an image with smooth gradients and fine texture, so that the
/// codecs neither collapse it to nothing nor meet pure noise.
fn test_image(side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| {
        let texture = ((x * 7 + y * 13) % 17) as u8;
        Rgb([
            ((x * 255) / side) as u8 ^ texture,
            ((y * 255) / side) as u8,
            (((x + y) * 127) / side) as u8 + texture,
        ])
    })
}

fn claim(side: u32) -> GenerationClaim {
    GenerationClaim {
        model_name: "builtin".into(),
        weights_sha256: [7; 32],
        watermark_payload: "mmgen-wm1:0102030405060708:1".into(),
        serial: 1,
        steps: 25,
        guidance: 7.5,
        seed: 1,
        prompt_sha256: [9; 32],
        prompt: None,
        width: side,
        height: side,
        title: "bench".into(),
    }
}

/// Returns the median and the mean of `samples`, in milliseconds.
fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (median, mean)
}

fn main() -> anyhow::Result<()> {
    let small_iters = arg("--small-iters", 50).max(1);
    let large_iters = arg("--large-iters", 5).max(1);
    let dir = tempfile::tempdir()?;
    let keys = KeyStore::new(&dir.path().join("keys")).init()?;

    println!("| format | size | file bytes | sign (median / mean) | read (median / mean) | runs |");
    println!("|---|---|---|---|---|---|");
    for (side, iters) in [(64, small_iters), (2048, large_iters)] {
        let image = test_image(side);
        for format in [MediaFormat::Png, MediaFormat::Jpeg, MediaFormat::Webp] {
            let encoded = media::encode(&image, format, 95)?;
            let claim = claim(side);
            let mut sign_ms = Vec::with_capacity(iters);
            let mut signed = None;
            for _ in 0..iters {
                let started = Instant::now();
                let result =
                    manifest::sign_generated(&encoded, format.mime(), &claim, &keys.signer)?;
                sign_ms.push(started.elapsed().as_secs_f64() * 1e3);
                signed = Some(result);
            }
            let bytes = signed.map(|s| s.bytes).unwrap_or_default();
            let mut read_ms = Vec::with_capacity(iters);
            for _ in 0..iters {
                let started = Instant::now();
                let outcome = manifest::read(&bytes, format.mime(), None)?;
                read_ms.push(started.elapsed().as_secs_f64() * 1e3);
                anyhow::ensure!(
                    outcome.embedded().is_some(),
                    "{format} {side}: no manifest read back"
                );
            }
            let (sign_median, sign_mean) = summary(sign_ms);
            let (read_median, read_mean) = summary(read_ms);
            println!(
                "| {format} | {side}x{side} | {} | {sign_median:.2} / {sign_mean:.2} ms | \
                 {read_median:.2} / {read_mean:.2} ms | {iters} |",
                bytes.len()
            );
        }
    }
    Ok(())
}
