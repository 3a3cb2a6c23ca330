//! Exports: records as JSON Lines or CSV, and the audit bundle that lets
//! a third party run `ledger verify` with public keys alone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::checkpoint::CheckpointVerifier;
use super::read::ListFilter;
use super::record::{Record, RecordDetails};
use super::{Ledger, LedgerError, to_hex};

/// File names inside an audit bundle.
pub mod bundle_files {
    /// Read-only copy of the ledger database.
    pub const LEDGER: &str = "ledger.sqlite";
    /// Every record, one JSON object per line.
    pub const RECORDS: &str = "records.jsonl";
    /// Every stored checkpoint, one JSON object per line.
    pub const CHECKPOINTS: &str = "checkpoints.jsonl";
    /// The newest checkpoint note.
    pub const LATEST_CHECKPOINT: &str = "checkpoint.txt";
    /// The checkpoint verifier key text.
    pub const VERIFIER_KEY: &str = "checkpoint.vkey";
    /// The checkpoint public key as a PEM SubjectPublicKeyInfo.
    pub const PUBLIC_KEY: &str = "checkpoint.pub.pem";
    /// SHA-256 of every other file, in `sha256sum` format.
    pub const CHECKSUMS: &str = "SHA256SUMS";
    /// Description of the bundle and of how to check it.
    pub const README: &str = "README.txt";
}

/// Public material for a bundle: the checkpoint key and the certificates
/// that readers of the C2PA manifests need.
#[derive(Debug, Clone)]
pub struct BundleKeys {
    /// Verifier of the log's checkpoints.
    pub verifier: CheckpointVerifier,
    /// PEM certificate files as (file name, contents), such as the local
    /// CA certificate and the signer chain.
    pub certificates: Vec<(String, String)>,
}

/// Columns of the CSV export, in order.
pub const CSV_COLUMNS: [&str; 23] = [
    "leaf_index",
    "serial",
    "kind",
    "created_at",
    "encoding_version",
    "leaf_hash",
    "output_sha256",
    "output_mime",
    "manifest_bytes",
    "manifest_sha256",
    "model_name",
    "weights_sha256",
    "prompt",
    "prompt_sha256",
    "seed",
    "steps",
    "guidance",
    "width",
    "height",
    "watermark_key_id",
    "watermark_payload",
    "input_sha256",
    "digital_source_type",
];

impl Ledger {
    /// Writes the selected records as JSON Lines, in the form of
    /// `ledger list --json`, and returns how many were written.
    pub fn export_jsonl(
        &self,
        filter: &ListFilter,
        out: &mut dyn Write,
        out_path: &Path,
    ) -> Result<u64, LedgerError> {
        let io = |source| LedgerError::Io {
            path: out_path.to_path_buf(),
            source,
        };
        let mut count = 0;
        self.for_each(filter, |record| {
            let line = serde_json::to_string(&record).map_err(|e| io(e.into()))?;
            writeln!(out, "{line}").map_err(io)?;
            count += 1;
            Ok(())
        })?;
        out.flush().map_err(io)?;
        Ok(count)
    }

    /// Writes the selected records as CSV with a header row of
    /// [`CSV_COLUMNS`], and returns how many were written. The manifest is
    /// given by its size and SHA-256; the JSON export has its bytes.
    pub fn export_csv(
        &self,
        filter: &ListFilter,
        out: &mut dyn Write,
        out_path: &Path,
    ) -> Result<u64, LedgerError> {
        let csv_error = |error: csv::Error| LedgerError::Io {
            path: out_path.to_path_buf(),
            source: std::io::Error::other(error),
        };
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(CSV_COLUMNS).map_err(csv_error)?;
        let mut count = 0;
        self.for_each(filter, |record| {
            writer.write_record(csv_row(&record)).map_err(csv_error)?;
            count += 1;
            Ok(())
        })?;
        writer.flush().map_err(|source| LedgerError::Io {
            path: out_path.to_path_buf(),
            source,
        })?;
        Ok(count)
    }

    /// Writes an audit bundle into `dir`, which must not exist yet: a
    /// consistent read-only copy of the database, the records and
    /// checkpoints as JSON Lines, the newest checkpoint, the public keys
    /// and certificates, a README and checksums. No private key is
    /// written.
    pub fn export_bundle(&self, dir: &Path, keys: &BundleKeys) -> Result<(), LedgerError> {
        use bundle_files as files;
        let io = |path: PathBuf| move |source| LedgerError::Io { path, source };
        fs::create_dir(dir).map_err(io(dir.to_path_buf()))?;

        let copy = super::open::sqlite_path(&dir.join(files::LEDGER));
        let copy_text = copy.to_str().ok_or_else(|| LedgerError::Io {
            path: copy.clone(),
            source: std::io::Error::other("the path is not UTF-8"),
        })?;
        self.conn
            .execute("VACUUM INTO ?1", [copy_text])
            .map_err(|source| self.sql_error("copy ledger", source))?;
        // A copy in rollback-journal mode opens read-only without -wal and
        // -shm files beside it.
        let copy_conn = rusqlite::Connection::open(&copy)
            .map_err(|source| self.sql_error("copy ledger", source))?;
        let _mode: String = copy_conn
            .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
            .map_err(|source| self.sql_error("copy ledger", source))?;
        drop(copy_conn);

        let copied = Ledger::open_read_only(&copy)?;
        let mut written = copied.derived_bundle_files(&keys.verifier, dir)?;
        for (name, pem) in &keys.certificates {
            written.push((name.clone(), pem.clone().into_bytes()));
        }
        for (name, bytes) in &written {
            let path = dir.join(name);
            fs::write(&path, bytes).map_err(io(path.clone()))?;
        }

        let mut sums = String::new();
        let mut names: Vec<String> = written.into_iter().map(|(name, _)| name).collect();
        names.push(files::LEDGER.into());
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let bytes = fs::read(&path).map_err(io(path.clone()))?;
            sums.push_str(&format!("{}  {name}\n", to_hex(&Sha256::digest(&bytes))));
        }
        let sums_path = dir.join(files::CHECKSUMS);
        fs::write(&sums_path, sums).map_err(io(sums_path.clone()))?;
        Ok(())
    }

    /// Returns the bundle files that follow from this ledger and the
    /// verifier key alone, as (file name, contents): the records, the
    /// checkpoints, the newest checkpoint, the verifier key, the public
    /// key and the README. `dir` is the bundle's path, for errors.
    fn derived_bundle_files(
        &self,
        verifier: &CheckpointVerifier,
        dir: &Path,
    ) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        use bundle_files as files;
        let mut records = Vec::new();
        self.export_jsonl(
            &ListFilter::default(),
            &mut records,
            &dir.join(files::RECORDS),
        )?;
        let mut checkpoints = String::new();
        for checkpoint in self.checkpoints(&ListFilter::default())? {
            let line = serde_json::to_string(&checkpoint).map_err(|e| LedgerError::Io {
                path: dir.join(files::CHECKPOINTS),
                source: e.into(),
            })?;
            checkpoints.push_str(&line);
            checkpoints.push('\n');
        }
        let latest = self
            .latest_checkpoint()?
            .map(|c| c.note)
            .unwrap_or_default();
        let public_pem = verifier
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| LedgerError::Io {
                path: dir.join(files::PUBLIC_KEY),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(vec![
            (files::RECORDS.into(), records),
            (files::CHECKPOINTS.into(), checkpoints.into_bytes()),
            (files::LATEST_CHECKPOINT.into(), latest.into_bytes()),
            (
                files::VERIFIER_KEY.into(),
                format!("{}\n", verifier.to_text()).into_bytes(),
            ),
            (files::PUBLIC_KEY.into(), public_pem.into_bytes()),
            (files::README.into(), readme(verifier).into_bytes()),
        ])
    }

    /// Checks the files of the audit bundle in `dir`, whose ledger copy
    /// this ledger is: each file that follows from the ledger and
    /// `verifier` must have the contents they give, and each file must
    /// match its line in SHA256SUMS. Returns the files that do not.
    ///
    /// The ledger copy itself is checked by [`Ledger::audit_with`], and a
    /// copy whose records or checkpoints cannot be read leaves only the
    /// SHA256SUMS check. The certificates and the README are checked
    /// against SHA256SUMS alone, which anyone who edits the bundle can
    /// rewrite.
    ///
    /// NOTE: the derived files are compared byte for byte with what this
    /// mmgen writes, so a bundle from a release with another JSON export
    /// reads as a mismatch.
    pub fn check_bundle(&self, dir: &Path, verifier: &CheckpointVerifier) -> Vec<BundleMismatch> {
        use bundle_files as files;
        let mut mismatches = Vec::new();
        // A copy that cannot be read is a fault that the audit reports,
        // so its derived files are not compared.
        let derived = self.derived_bundle_files(verifier, dir).unwrap_or_default();
        for (name, expected) in derived {
            // The README is prose for people, so SHA256SUMS alone covers it.
            if name == files::README {
                continue;
            }
            match fs::read(dir.join(&name)) {
                Ok(bytes) if bytes == expected => {}
                Ok(_) => mismatches.push(BundleMismatch::new(
                    &name,
                    "differs from what ledger.sqlite and the verifier key give",
                )),
                Err(error) => mismatches.push(BundleMismatch::new(
                    &name,
                    format!("cannot be read: {error}"),
                )),
            }
        }
        let required = [
            files::LEDGER,
            files::RECORDS,
            files::CHECKPOINTS,
            files::LATEST_CHECKPOINT,
            files::VERIFIER_KEY,
            files::PUBLIC_KEY,
            files::README,
        ];
        check_checksums(dir, &required, &mut mismatches);
        mismatches
    }
}

/// A file of an audit bundle that differs from what the bundle's ledger
/// copy and verifier key give, or from its line in SHA256SUMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleMismatch {
    /// File name inside the bundle.
    pub file: String,
    /// What is wrong with the file.
    pub problem: String,
}

impl BundleMismatch {
    fn new(file: &str, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            problem: problem.into(),
        }
    }
}

/// Checks every line of the bundle's SHA256SUMS against the file it names,
/// and that it lists each of the `required` files.
fn check_checksums(dir: &Path, required: &[&str], mismatches: &mut Vec<BundleMismatch>) {
    use bundle_files::CHECKSUMS;
    let text = match fs::read_to_string(dir.join(CHECKSUMS)) {
        Ok(text) => text,
        Err(error) => {
            mismatches.push(BundleMismatch::new(
                CHECKSUMS,
                format!("cannot be read: {error}"),
            ));
            return;
        }
    };
    let mut listed = Vec::new();
    for line in text.lines() {
        let Some((digest, name)) = line.split_once("  ") else {
            mismatches.push(BundleMismatch::new(
                CHECKSUMS,
                format!("has line {line:?}, which is not `SHA-256  FILE`"),
            ));
            continue;
        };
        listed.push(name);
        if name.contains(['/', '\\']) || name == ".." {
            mismatches.push(BundleMismatch::new(
                CHECKSUMS,
                format!("lists {name:?}, which is not a file name inside the bundle"),
            ));
            continue;
        }
        match fs::read(dir.join(name)) {
            Ok(bytes) => {
                let actual = to_hex(&Sha256::digest(&bytes));
                if actual != digest {
                    mismatches.push(BundleMismatch::new(
                        CHECKSUMS,
                        format!("lists SHA-256 {digest} for {name}, but the file has {actual}"),
                    ));
                }
            }
            Err(error) => mismatches.push(BundleMismatch::new(
                CHECKSUMS,
                format!("lists {name}, which cannot be read: {error}"),
            )),
        }
    }
    for name in required {
        if !listed.contains(name) {
            mismatches.push(BundleMismatch::new(
                CHECKSUMS,
                format!("does not list {name}"),
            ));
        }
    }
}

fn readme(verifier: &CheckpointVerifier) -> String {
    format!(
        "mmgen ledger audit bundle\n\
         \n\
         Log origin:   {origin}\n\
         Verifier key: {vkey}\n\
         \n\
         Compare the verifier key with the one the provider published. Then run\n\
         \n\
         \x20   mmgen ledger verify --bundle DIR --key '{vkey}'\n\
         \n\
         which recomputes every record's leaf hash and the Merkle tree from\n\
         ledger.sqlite, checks the signature of every checkpoint with the key,\n\
         and checks that each checkpoint's root matches the records. It also\n\
         checks the other files against ledger.sqlite and SHA256SUMS. Add\n\
         --checkpoint FILE to also check a checkpoint you kept from earlier.\n\
         records.jsonl has every record and checkpoints.jsonl every checkpoint;\n\
         SHA256SUMS lists the SHA-256 of each file. docs/ledger.md in the mmgen\n\
         source describes every format byte for byte.\n",
        origin = verifier.origin(),
        vkey = verifier.to_text(),
    )
}

/// One CSV row in the order of [`CSV_COLUMNS`].
fn csv_row(record: &Record) -> Vec<String> {
    let mut row = vec![
        record.leaf_index.to_string(),
        record.serial.to_string(),
        record.kind().name().to_string(),
        record
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        record.encoding_version.to_string(),
        to_hex(&record.leaf_hash),
        to_hex(&record.output_sha256),
        record.output_mime.clone(),
        record.manifest.len().to_string(),
        to_hex(&Sha256::digest(&record.manifest)),
    ];
    match &record.details {
        RecordDetails::Generation(g) => {
            row.extend([
                g.model_name.clone(),
                to_hex(&g.weights_sha256),
                g.prompt.clone().unwrap_or_default(),
                to_hex(&g.prompt_sha256),
                g.seed.to_string(),
                g.steps.to_string(),
                g.guidance.to_string(),
                g.width.to_string(),
                g.height.to_string(),
                to_hex(&g.watermark_key_id),
                g.watermark_payload.clone(),
                String::new(),
                String::new(),
            ]);
        }
        RecordDetails::Stamp(s) => {
            row.extend(std::iter::repeat_n(String::new(), 11));
            row.extend([to_hex(&s.input_sha256), s.digital_source_type.clone()]);
        }
    }
    row
}
