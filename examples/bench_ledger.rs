//! Measures the ledger: appends per second (one per transaction and in
//! batches), `ledger verify` over the whole ledger, and the size and time
//! of inclusion and consistency proofs. Figures go in docs/benchmarks.md.
//!
//! ```text
//! cargo run --release --example bench_ledger -- --records 1000000 --single 2000 \
//!     --manifest-bytes 0 --dir /tmp/mmgen-bench
//! ```
//!
//! Every ledger uses the settings of the product (WAL, synchronous =
//! FULL), on the file system of `--dir`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use mmgen::ledger::proof::Receipt;
use mmgen::ledger::{CheckpointSigner, Generation, Ledger, ListFilter, NewRecord, RecordDetails};
use sha2::{Digest, Sha256};

/// Records per batch in the batched run.
const BATCH: usize = 1000;

/// Proofs of each kind that are timed.
const PROOFS: usize = 1000;

struct Options {
    records: u64,
    single: u64,
    manifest_bytes: usize,
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    std::fs::create_dir_all(&options.dir)
        .with_context(|| format!("cannot create {}", options.dir.display()))?;
    let signer = CheckpointSigner::new(
        "bench-host/mmgen-ledger/00000000",
        SigningKey::from_bytes(&[9; 32]),
    )?;
    println!(
        "records {}, single appends {}, manifest {} bytes, dir {}",
        options.records,
        options.single,
        options.manifest_bytes,
        options.dir.display()
    );

    let single_path = fresh(&options.dir.join("single.sqlite"))?;
    let mut single = Ledger::open(&single_path)?;
    let serials = single.reserve_serials(options.single as usize)?;
    let start = Instant::now();
    for &serial in &serials {
        single.append(record(serial, options.manifest_bytes), &signer)?;
    }
    report_rate(
        "append, one per transaction",
        options.single,
        start.elapsed(),
    );
    time_verify(&single, &signer)?;

    let batch_path = fresh(&options.dir.join("batch.sqlite"))?;
    let mut ledger = Ledger::open(&batch_path)?;
    let mut reserve_time = Duration::ZERO;
    let mut append_time = Duration::ZERO;
    let mut written = 0u64;
    while written < options.records {
        let count = BATCH.min((options.records - written) as usize);
        let start = Instant::now();
        let serials = ledger.reserve_serials(count)?;
        reserve_time += start.elapsed();
        let batch = serials
            .iter()
            .map(|&serial| record(serial, options.manifest_bytes))
            .collect();
        let start = Instant::now();
        ledger.append_batch(batch, &signer)?;
        append_time += start.elapsed();
        written += count as u64;
    }
    report_rate("append, batches of 1000", written, append_time);
    report_rate(
        "reserve and append, batches of 1000",
        written,
        append_time + reserve_time,
    );
    let bytes = file_bytes(&batch_path);
    println!(
        "database size: {:.1} MB ({:.0} bytes per record)",
        bytes as f64 / 1e6,
        bytes as f64 / written as f64
    );

    time_verify(&ledger, &signer)?;
    time_proofs(&ledger, &signer, written)?;
    Ok(())
}

fn time_verify(ledger: &Ledger, signer: &CheckpointSigner) -> anyhow::Result<()> {
    let start = Instant::now();
    let report = ledger.audit(&signer.verifier())?;
    let elapsed = start.elapsed();
    if !report.is_intact() {
        bail!(
            "the benchmark ledger does not verify: {:?}",
            report.first_fault()
        );
    }
    println!(
        "verify: {} records, {} checkpoints in {:.2} s ({:.0} records/s)",
        report.records,
        report.checkpoints,
        elapsed.as_secs_f64(),
        report.records as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn time_proofs(ledger: &Ledger, signer: &CheckpointSigner, size: u64) -> anyhow::Result<()> {
    let verifier = signer.verifier();
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |bound: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % bound
    };
    let first = ledger
        .list(&ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        })?
        .first()
        .map_or(1, |record| record.serial);

    let mut prove_time = Duration::ZERO;
    let mut check_time = Duration::ZERO;
    let mut hashes = 0;
    let mut max_hashes = 0;
    let mut text_bytes = 0;
    for _ in 0..PROOFS {
        let serial = first + next(size);
        let start = Instant::now();
        let receipt = ledger.prove_inclusion(serial)?;
        prove_time += start.elapsed();
        let text = receipt.to_text();
        let start = Instant::now();
        Receipt::parse(&text)?.check(&verifier)?;
        check_time += start.elapsed();
        hashes += receipt.proof.len();
        max_hashes = max_hashes.max(receipt.proof.len());
        text_bytes += text.len() - receipt.leaf.len().div_ceil(3) * 4;
    }
    let n = PROOFS as f64;
    println!(
        "inclusion proof: {:.1} hashes on average, at most {max_hashes} ({:.0} bytes of \
         receipt besides the record); build {:.3} ms, parse and check {:.3} ms",
        hashes as f64 / n,
        text_bytes as f64 / n,
        prove_time.as_secs_f64() * 1e3 / n,
        check_time.as_secs_f64() * 1e3 / n
    );

    let mut prove_time = Duration::ZERO;
    let mut hashes = 0;
    let mut max_hashes = 0;
    for _ in 0..PROOFS {
        let old_size = 1 + next(size);
        let start = Instant::now();
        let proof = ledger.prove_consistency(old_size)?;
        prove_time += start.elapsed();
        hashes += proof.proof.len();
        max_hashes = max_hashes.max(proof.proof.len());
    }
    println!(
        "consistency proof: {:.1} hashes on average, at most {max_hashes}; build {:.3} ms",
        hashes as f64 / n,
        prove_time.as_secs_f64() * 1e3 / n
    );
    Ok(())
}

/// A generation record like the ones `mmgen generate` writes, with a
/// manifest of `manifest_bytes` filler bytes.
fn record(serial: u64, manifest_bytes: usize) -> NewRecord {
    let prompt = format!("a red circle above a blue square, number {serial}");
    NewRecord {
        serial,
        created_at: time::OffsetDateTime::now_utc(),
        output_sha256: Sha256::digest(serial.to_be_bytes()).into(),
        output_mime: "image/png".into(),
        manifest: vec![0xC2; manifest_bytes],
        details: RecordDetails::Generation(Generation {
            model_name: "mmgen-builtin-v1".into(),
            weights_sha256: [0x5A; 32],
            prompt_sha256: Sha256::digest(prompt.as_bytes()).into(),
            prompt: Some(prompt),
            seed: serial,
            steps: 25,
            guidance: 7.5,
            width: 64,
            height: 64,
            watermark_key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            watermark_payload: format!("mmgen-wm1:0102030405060708:{serial}"),
        }),
    }
}

fn report_rate(what: &str, count: u64, elapsed: Duration) {
    println!(
        "{what}: {count} records in {:.2} s, {:.0} records/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

/// Removes a ledger file and its WAL files, and returns its path.
fn fresh(path: &Path) -> anyhow::Result<PathBuf> {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
        }
    }
    Ok(path.to_path_buf())
}

fn file_bytes(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|metadata| metadata.len())
        .sum()
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        records: 1_000_000,
        single: 2000,
        manifest_bytes: 0,
        dir: std::env::temp_dir().join("mmgen-bench-ledger"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--records" => options.records = value.parse().context("--records")?,
            "--single" => options.single = value.parse().context("--single")?,
            "--manifest-bytes" => {
                options.manifest_bytes = value.parse().context("--manifest-bytes")?
            }
            "--dir" => options.dir = PathBuf::from(value),
            other => bail!(
                "unknown option {other}; use --records N, --single N, --manifest-bytes N, --dir DIR"
            ),
        }
    }
    if options.records == 0 || options.single == 0 {
        bail!("--records and --single must be at least 1");
    }
    Ok(options)
}
