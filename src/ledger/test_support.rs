//! Helpers shared by the ledger's unit tests.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use time::macros::datetime;

use super::{CheckpointSigner, Generation, Ledger, NewRecord, RecordDetails, Stamp};

/// The checkpoint signer of the tests: a fixed key and origin.
pub fn test_signer() -> CheckpointSigner {
    CheckpointSigner::new(
        "test-host/mmgen-ledger/00000000",
        SigningKey::from_bytes(&[42; 32]),
    )
    .expect("valid origin")
}

/// A valid generation record for `serial`; `seed` varies the content.
pub fn sample_record(serial: u64, seed: u64) -> NewRecord {
    let prompt = format!("a red square, variant {seed}");
    NewRecord {
        serial,
        created_at: datetime!(2026-12-04 15:00:00 UTC) + time::Duration::seconds(seed as i64),
        output_sha256: Sha256::digest(seed.to_be_bytes()).into(),
        output_mime: "image/png".into(),
        manifest: vec![0xC2; 100],
        details: RecordDetails::Generation(Generation {
            model_name: "mmgen-builtin-v1".into(),
            weights_sha256: [0x5A; 32],
            prompt_sha256: Sha256::digest(prompt.as_bytes()).into(),
            prompt: Some(prompt),
            seed,
            steps: 20,
            guidance: 7.5,
            width: 64,
            height: 64,
            watermark_key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            watermark_payload: format!("wm1:{serial}"),
        }),
    }
}

/// A valid stamp record for `serial`; `variant` varies the content.
pub fn sample_stamp(serial: u64, variant: u64) -> NewRecord {
    NewRecord {
        serial,
        created_at: datetime!(2026-12-05 09:00:00 UTC) + time::Duration::seconds(variant as i64),
        output_sha256: Sha256::digest(format!("stamped {variant}")).into(),
        output_mime: "image/jpeg".into(),
        manifest: vec![0xC3; 50],
        details: RecordDetails::Stamp(Stamp {
            input_sha256: Sha256::digest(format!("photo {variant}")).into(),
            digital_source_type: "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
                .into(),
        }),
    }
}

/// A fresh ledger file in its own temporary directory.
pub fn temp_ledger() -> (tempfile::TempDir, PathBuf, Ledger) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&path).expect("open new ledger");
    (dir, path, ledger)
}

/// Reserves a serial and appends a sample record for it, `count` times,
/// one append (and checkpoint) each.
pub fn fill(ledger: &mut Ledger, count: u64) -> Vec<super::Record> {
    let signer = test_signer();
    (0..count)
        .map(|i| {
            let serial = ledger.reserve_serial().expect("reserve serial");
            ledger
                .append(sample_record(serial, i), &signer)
                .expect("append record")
        })
        .collect()
}
