//! Measures tracing: from an inverted latent to its ledger serial, in a
//! synthetic ledger of many generation records that share one watermark
//! key. The ledger is built once in `--dir` and reused by later runs.
//!
//! The time covers what `mmgen verify` does after the inversion: reading
//! the key's serials from the ledger, and testing every serial's pattern
//! against every reading of the default scan (nine hypotheses, each with
//! one weighted reading).
//!
//! Run: `cargo run --release --example bench_trace -- [--records 1000000]
//! [--dir /tmp/mmgen-trace]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use ed25519_dalek::SigningKey;
use mmgen::ledger::{CheckpointSigner, Generation, Ledger, NewRecord, RecordDetails};
use mmgen::watermark::scan::{self, ScanSettings};
use mmgen::watermark::{self, Candidates, Reading, WatermarkKey, detect_readings};
use sha2::{Digest, Sha256};

/// Records appended per transaction while building.
const BATCH: usize = 10_000;

/// Elements of the built-in model's latent.
const LATENT_LEN: usize = 1024;

#[derive(Parser)]
struct Args {
    /// Generation records in the ledger.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Directory for the ledger file.
    #[arg(long, default_value = "/tmp/mmgen-trace")]
    dir: PathBuf,
    /// Traced latents, timed one after another.
    #[arg(long, default_value_t = 5)]
    traces: usize,
}

fn main() -> anyhow::Result<()> {
    mmgen::alloc::retain_freed_pages();
    let args = Args::parse();
    let key = WatermarkKey::new([7u8; 32]);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let path = args.dir.join(format!("trace-{}.sqlite", args.records));
    let mut ledger = Ledger::open(&path)?;
    let have = ledger.len()? as usize;
    if have < args.records {
        build(&mut ledger, &key, args.records - have)?;
    }
    println!(
        "ledger {} with {} records; threads {}",
        path.display(),
        ledger.len()?,
        rayon::current_num_threads()
    );

    let settings = ScanSettings::standard(mmgen::engine::InversionOptions {
        steps: 10,
        refinements: 0,
    });
    let planned = scan::planned_readings(&settings);
    for trace in 0..args.traces {
        let target = 1 + (trace as u64 * 7919 * 104_729) % args.records as u64;
        let readings = noisy_readings(&key, target, planned as usize);
        let started = Instant::now();
        let serials = ledger.serials_for_key(&key.id())?;
        let read = started.elapsed().as_secs_f64();
        let candidates = [Candidates {
            key: &key,
            serials: &serials,
        }];
        let detection = detect_readings(&readings, planned, &candidates, settings.threshold);
        let total = started.elapsed().as_secs_f64();
        println!(
            "serial {target}: found {:?}, log10 p {:.1}, {} candidates x {} readings; \
             read serials {read:.3} s, total {total:.3} s",
            detection.payload.map(|p| p.serial),
            detection.log10_p_value,
            detection.candidates,
            detection.readings
        );
    }
    Ok(())
}

/// Appends `count` generation records marked with `key`.
fn build(ledger: &mut Ledger, key: &WatermarkKey, count: usize) -> anyhow::Result<()> {
    let signer = CheckpointSigner::new(
        "bench-host/mmgen-ledger/00000000",
        SigningKey::from_bytes(&[9; 32]),
    )?;
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let serials = ledger.reserve_serials(BATCH.min(count - done))?;
        let records = serials.iter().map(|&s| record(s, key)).collect();
        ledger.append_batch(records, &signer)?;
        done += serials.len();
        if done % 100_000 < BATCH {
            println!("  {done} records, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn record(serial: u64, key: &WatermarkKey) -> NewRecord {
    let prompt = format!("a small red circle, number {serial}");
    NewRecord {
        serial,
        created_at: time::OffsetDateTime::now_utc(),
        output_sha256: Sha256::digest(serial.to_be_bytes()).into(),
        output_mime: "image/png".into(),
        manifest: Vec::new(),
        details: RecordDetails::Generation(Generation {
            model_name: "mmgen-shapes-2".into(),
            weights_sha256: [0x5A; 32],
            prompt_sha256: Sha256::digest(prompt.as_bytes()).into(),
            prompt: None,
            seed: serial,
            steps: 25,
            guidance: 3.0,
            width: 64,
            height: 64,
            watermark_key_id: key.id(),
            watermark_payload: watermark::Payload {
                key_id: key.id(),
                serial,
            }
            .to_string(),
        }),
    }
}

/// Readings of a latent marked with `serial` whose signs are 70% right,
/// weighted as the scan weighs them, as many as the scan makes.
fn noisy_readings(key: &WatermarkKey, serial: u64, count: usize) -> Vec<Reading> {
    let mut latent = watermark::initial_latent(key, serial, serial, LATENT_LEN);
    for (index, value) in latent.iter_mut().enumerate() {
        if index % 10 < 3 {
            *value = -*value;
        }
    }
    let whole = vec![1.0; latent.len()];
    (0..count)
        .map(|i| Reading::weighted(&format!("reading {i}"), &latent, &whole))
        .collect()
}
