//! Offline proofs: inclusion receipts and consistency proofs, built from
//! the stored subtree hashes in O(log n) reads and checked with the
//! public checkpoint key alone.
//!
//! A receipt is a C2SP tlog-proof: the line `c2sp.org/tlog-proof@v1`, an
//! `extra` line with the base64 leaf (the record's canonical encoding),
//! `index N`, the inclusion proof as one base64 hash per line, a blank
//! line and the checkpoint note. A consistency proof has the same shape
//! with the first line `mmgen/ledger-consistency-proof@v1`, `old N` for
//! the old tree size, the consistency proof, a blank line and the new
//! checkpoint note.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointVerifier};
use super::encoding::{self, LeafError};
use super::merkle::{self, Hash, MerkleError};
use super::record::Record;
use super::tree::StoredTree;
use super::{Ledger, LedgerError};

/// First line of a receipt.
pub const RECEIPT_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// First line of a consistency proof.
pub const CONSISTENCY_HEADER: &str = "mmgen/ledger-consistency-proof@v1";

/// Largest receipt or proof text that `parse` accepts: a leaf with the
/// largest manifest (16 MiB) is about 22 MB in base64.
const MAX_PROOF_TEXT: usize = 24 * 1024 * 1024;

/// Errors from parsing or checking a receipt or a consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The text is not in the expected form.
    #[error("malformed proof: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint in or beside the proof does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The receipt's leaf does not decode.
    #[error("the receipt's record does not decode: {0}")]
    Leaf(#[from] LeafError),
    /// The hashes do not lead to the checkpoint's root.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The receipt's index differs from the leaf index in its record.
    #[error("the receipt is for index {receipt}, but its record has leaf index {record}")]
    IndexMismatch {
        /// Index line of the receipt.
        receipt: u64,
        /// Leaf index inside the record.
        record: u64,
    },
}

/// An inclusion receipt: a record, its inclusion proof and the signed
/// checkpoint whose root the proof leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Leaf index of the record.
    pub index: u64,
    /// The record's canonical encoding.
    pub leaf: Vec<u8>,
    /// Inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: String,
}

/// What a receipt proves once checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckedReceipt {
    /// The logged record (a version 2 generation without its prompt).
    pub record: Record,
    /// The signed checkpoint that includes it.
    pub checkpoint: Checkpoint,
}

impl Receipt {
    /// Formats the receipt as a C2SP tlog-proof.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{RECEIPT_HEADER}\nextra {}\nindex {}\n",
            STANDARD.encode(&self.leaf),
            self.index
        );
        push_hashes(&mut text, &self.proof);
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a receipt's text.
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let (head, checkpoint) = split_proof(text, RECEIPT_HEADER)?;
        let mut lines = head.iter().copied();
        let extra = lines
            .next()
            .and_then(|line| line.strip_prefix("extra "))
            .ok_or_else(|| malformed("the second line must be `extra <base64 record>`"))?;
        let leaf = STANDARD
            .decode(extra)
            .map_err(|e| malformed(&format!("the extra line is not base64 ({e})")))?;
        let index = lines
            .next()
            .and_then(|line| line.strip_prefix("index "))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed("the third line must be `index <decimal>`"))?;
        Ok(Self {
            index,
            leaf,
            proof: parse_hashes(lines)?,
            checkpoint,
        })
    }

    /// Checks the checkpoint's signature, decodes the record and checks
    /// that the proof leads from its leaf hash to the checkpoint's root.
    pub fn check(&self, verifier: &CheckpointVerifier) -> Result<CheckedReceipt, ProofError> {
        let checkpoint = verifier.open(&self.checkpoint)?;
        let record = encoding::decode(&self.leaf)?;
        if record.leaf_index != self.index {
            return Err(ProofError::IndexMismatch {
                receipt: self.index,
                record: record.leaf_index,
            });
        }
        merkle::check_inclusion(
            &record.leaf_hash,
            self.index,
            checkpoint.tree_size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(CheckedReceipt { record, checkpoint })
    }
}

/// A proof that the tree of `old_size` leaves is a prefix of the tree of a
/// newer signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Size of the old tree.
    pub old_size: u64,
    /// Consistency proof hashes (RFC 9162 section 2.1.4).
    pub proof: Vec<Hash>,
    /// The new checkpoint note, verbatim.
    pub checkpoint: String,
}

/// The two checkpoints that a consistency proof links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedConsistency {
    /// The old checkpoint.
    pub old: Checkpoint,
    /// The new checkpoint.
    pub new: Checkpoint,
}

impl ConsistencyProof {
    /// Formats the proof as text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{CONSISTENCY_HEADER}\nold {}\n", self.old_size);
        push_hashes(&mut text, &self.proof);
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a consistency proof's text.
    pub fn parse(text: &str) -> Result<Self, ProofError> {
        let (head, checkpoint) = split_proof(text, CONSISTENCY_HEADER)?;
        let mut lines = head.iter().copied();
        let old_size = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed("the second line must be `old <decimal>`"))?;
        Ok(Self {
            old_size,
            proof: parse_hashes(lines)?,
            checkpoint,
        })
    }

    /// Checks both checkpoint notes' signatures and that the proof leads
    /// from the old root to the new one.
    pub fn check(
        &self,
        verifier: &CheckpointVerifier,
        old_note: &str,
    ) -> Result<CheckedConsistency, ProofError> {
        let old = verifier.open(old_note)?;
        let new = verifier.open(&self.checkpoint)?;
        if old.tree_size != self.old_size {
            return Err(malformed(&format!(
                "the proof starts at size {}, but the old checkpoint has size {}",
                self.old_size, old.tree_size
            )));
        }
        merkle::check_consistency(
            old.tree_size,
            new.tree_size,
            &old.root,
            &new.root,
            &self.proof,
        )?;
        Ok(CheckedConsistency { old, new })
    }
}

impl Ledger {
    /// Builds the receipt of the record with this serial against the
    /// newest checkpoint, reading at most 2 ceil(log2 n) stored hashes,
    /// and checks it before returning it.
    pub fn prove_inclusion(&self, serial: u64) -> Result<Receipt, LedgerError> {
        let record = self
            .get(serial)?
            .ok_or_else(|| LedgerError::RecordNotFound {
                path: self.at.path.clone(),
                serial,
            })?;
        let (note, checkpoint) = self.latest_parsed()?;
        let tree = StoredTree {
            conn: &self.conn,
            at: &self.at,
        };
        let proof = merkle::inclusion_proof_from(&tree, checkpoint.tree_size, record.leaf_index)?;
        let leaf: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT leaf FROM records WHERE leaf_index = ?1",
                [record.leaf_index as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.sql_error("read leaf", source))?;
        let receipt = Receipt {
            index: record.leaf_index,
            leaf: leaf.unwrap_or_default(),
            proof,
            checkpoint: note,
        };
        let leaf_hash = encoding::leaf_hash(&receipt.leaf);
        merkle::check_inclusion(
            &leaf_hash,
            receipt.index,
            checkpoint.tree_size,
            &receipt.proof,
            &checkpoint.root,
        )
        .map_err(|error| self.damaged_tree(error))?;
        Ok(receipt)
    }

    /// Builds the consistency proof from the tree of `old_size` leaves to
    /// the newest checkpoint, reading at most 2 ceil(log2 n) + 1 stored
    /// hashes.
    pub fn prove_consistency(&self, old_size: u64) -> Result<ConsistencyProof, LedgerError> {
        let (note, checkpoint) = self.latest_parsed()?;
        let tree = StoredTree {
            conn: &self.conn,
            at: &self.at,
        };
        let proof = merkle::consistency_proof_from(&tree, old_size, checkpoint.tree_size)?;
        Ok(ConsistencyProof {
            old_size,
            proof,
            checkpoint: note,
        })
    }

    /// The newest checkpoint note and its parsed text, unverified: the
    /// provider's own ledger is the source of both.
    fn latest_parsed(&self) -> Result<(String, Checkpoint), LedgerError> {
        let latest = self
            .latest_checkpoint()?
            .ok_or_else(|| LedgerError::NoCheckpoint {
                path: self.at.path.clone(),
            })?;
        let text = latest
            .note
            .rfind("\n\n")
            .map(|split| &latest.note[..split + 1])
            .unwrap_or_default();
        let checkpoint =
            Checkpoint::parse(text).map_err(|error| LedgerError::CorruptCheckpoint {
                path: self.at.path.clone(),
                reason: format!("checkpoint {}: {error}", latest.id),
            })?;
        Ok((latest.note, checkpoint))
    }

    fn damaged_tree(&self, error: MerkleError) -> LedgerError {
        LedgerError::CorruptTree {
            path: self.at.path.clone(),
            reason: format!("a proof built from it does not check ({error})"),
        }
    }
}

fn malformed(reason: &str) -> ProofError {
    ProofError::Malformed {
        reason: reason.to_string(),
    }
}

fn push_hashes(text: &mut String, hashes: &[Hash]) {
    for hash in hashes {
        text.push_str(&STANDARD.encode(hash));
        text.push('\n');
    }
}

/// Splits a proof text at its first blank line into the lines after the
/// header and the checkpoint note that follows.
fn split_proof<'a>(text: &'a str, header: &str) -> Result<(Vec<&'a str>, String), ProofError> {
    if text.len() > MAX_PROOF_TEXT {
        return Err(malformed("the text is larger than 24 MiB"));
    }
    let Some((head, checkpoint)) = text.split_once("\n\n") else {
        return Err(malformed(
            "no blank line separates the proof from the checkpoint",
        ));
    };
    let mut lines = head.split('\n');
    if lines.next() != Some(header) {
        return Err(malformed(&format!("the first line must be {header}")));
    }
    Ok((lines.collect(), checkpoint.to_string()))
}

fn parse_hashes<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<Hash>, ProofError> {
    let mut hashes = Vec::new();
    for line in lines {
        let hash: Hash = STANDARD
            .decode(line)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed(&format!("proof line {line:?} is not a base64 SHA-256")))?;
        hashes.push(hash);
    }
    if hashes.len() > 130 {
        return Err(malformed("the proof has more than 130 hashes"));
    }
    Ok(hashes)
}

fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    use super::*;
    use crate::ledger::test_support::{fill, sample_record, temp_ledger, test_signer};

    type ReferenceTree = MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

    /// Largest ledger whose receipts are compared with ct-merkle.
    const MAX_COMPARED_SIZE: u64 = 300;

    #[test]
    fn receipts_match_ct_merkle_for_every_size() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let signer = test_signer();
        let verifier = signer.verifier();
        let mut reference = ReferenceTree::new();
        let mut serials = Vec::new();
        for size in 1..=MAX_COMPARED_SIZE {
            let serial = ledger.reserve_serial().expect("reserve");
            let record = ledger
                .append(sample_record(serial, size), &signer)
                .expect("append");
            reference.push(record.canonical_encoding());
            serials.push(serial);

            let checkpoint = verifier
                .open(
                    &ledger
                        .latest_checkpoint()
                        .expect("read")
                        .expect("exists")
                        .note,
                )
                .expect("checkpoint verifies");
            assert_eq!(checkpoint.tree_size, size);
            assert_eq!(
                checkpoint.root[..],
                reference.root().as_bytes()[..],
                "root of {size}"
            );
            // Every leaf of small trees, and a spread of leaves of larger ones.
            let step = if size <= 64 { 1 } else { 7 };
            for (index, serial) in serials.iter().enumerate().step_by(step) {
                let receipt = ledger.prove_inclusion(*serial).expect("prove");
                let expected = reference.prove_inclusion(index);
                assert_eq!(
                    receipt.proof.concat(),
                    expected.as_bytes(),
                    "leaf {index} of {size}"
                );
                let parsed = Receipt::parse(&receipt.to_text()).expect("parse");
                assert_eq!(parsed, receipt);
                let checked = parsed.check(&verifier).expect("receipt checks");
                assert_eq!(checked.record.serial, *serial);
            }
        }
    }

    #[test]
    fn consistency_proofs_match_ct_merkle() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let signer = test_signer();
        let verifier = signer.verifier();
        let records = fill(&mut ledger, 40);
        let mut reference = ReferenceTree::new();
        for record in &records {
            reference.push(record.canonical_encoding());
        }
        let notes: Vec<String> = ledger
            .checkpoints(&Default::default())
            .expect("list")
            .into_iter()
            .map(|c| c.note)
            .collect();

        for old_size in 1..=40u64 {
            let proof = ledger.prove_consistency(old_size).expect("prove");
            let expected = reference.prove_consistency((40 - old_size) as usize);
            assert_eq!(proof.proof.concat(), expected.as_bytes(), "from {old_size}");
            let parsed = ConsistencyProof::parse(&proof.to_text()).expect("parse");
            assert_eq!(parsed, proof);
            let old_note = &notes[old_size as usize - 1];
            let checked = parsed.check(&verifier, old_note).expect("checks");
            assert_eq!(checked.old.tree_size, old_size);
            assert_eq!(checked.new.tree_size, 40);
        }
        let wrong_old = &notes[4];
        let proof = ledger.prove_consistency(3).expect("prove");
        assert!(proof.check(&verifier, wrong_old).is_err());
    }

    #[test]
    fn tampered_receipts_are_rejected() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 9);
        let verifier = test_signer().verifier();
        let receipt = ledger.prove_inclusion(records[5].serial).expect("prove");
        assert!(receipt.check(&verifier).is_ok());

        let mut other_leaf = receipt.clone();
        let last = other_leaf.leaf.len() - 1;
        other_leaf.leaf[last] ^= 1;
        assert!(matches!(
            other_leaf.check(&verifier),
            Err(ProofError::Merkle(MerkleError::InclusionMismatch { .. }))
        ));

        let mut other_index = receipt.clone();
        other_index.index = 4;
        assert!(matches!(
            other_index.check(&verifier),
            Err(ProofError::IndexMismatch { .. })
        ));

        let mut other_hash = receipt.clone();
        other_hash.proof[0][0] ^= 1;
        assert!(other_hash.check(&verifier).is_err());

        let mut short = receipt.clone();
        short.proof.pop();
        assert!(short.check(&verifier).is_err());

        let foreign = crate::ledger::CheckpointSigner::new(
            test_signer().origin(),
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        )
        .expect("valid origin");
        assert!(matches!(
            receipt.check(&foreign.verifier()),
            Err(ProofError::Checkpoint(_))
        ));
    }

    #[test]
    fn receipt_text_has_tlog_proof_form() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 3);
        let receipt = ledger.prove_inclusion(records[0].serial).expect("prove");
        let text = receipt.to_text();
        let lines: Vec<&str> = text.lines().collect();

        assert_eq!(lines[0], "c2sp.org/tlog-proof@v1");
        assert!(lines[1].starts_with("extra "));
        assert_eq!(lines[2], "index 0");
        assert_eq!(lines.len(), 3 + 2 + 1 + 3 + 1 + 1);
        assert_eq!(lines[5], "");
        assert_eq!(lines[6], test_signer().origin());
        assert_eq!(lines[7], "3");

        for (case, bad) in [
            ("header", text.replacen("tlog-proof@v1", "tlog-proof@v2", 1)),
            ("index", text.replacen("index 0", "index 00", 1)),
            ("hash", text.replacen(lines[3], "AAAA", 1)),
            ("no blank line", text.replacen("\n\n", "\n", 1)),
        ] {
            assert!(Receipt::parse(&bad).is_err(), "{case} parsed");
        }
    }

    #[test]
    fn proofs_need_a_record_and_a_checkpoint() {
        let (_dir, _path, mut ledger) = temp_ledger();
        assert!(matches!(
            ledger.prove_consistency(1),
            Err(LedgerError::NoCheckpoint { .. })
        ));
        fill(&mut ledger, 2);
        assert!(matches!(
            ledger.prove_inclusion(77),
            Err(LedgerError::RecordNotFound { serial: 77, .. })
        ));
        assert!(matches!(
            ledger.prove_consistency(3),
            Err(LedgerError::Proof(MerkleError::OldTreeLarger { .. }))
        ));
    }
}
