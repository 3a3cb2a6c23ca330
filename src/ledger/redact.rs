//! Redaction of stored prompts, the one change the ledger allows.
//!
//! A version 2 leaf commits to the prompt's SHA-256 only, and the prompt
//! text sits in the `prompts` table beside the record. Deleting that row
//! blanks the prompt without touching the leaf, the tree or any
//! checkpoint. `ledger verify` accepts a record with no stored prompt,
//! and rejects one whose stored prompt does not hash to the leaf's
//! `prompt_sha256`. Version 1 leaves contain the prompt itself, so the
//! prompts of records kept from a schema 1 ledger cannot be redacted.

use time::OffsetDateTime;

use super::validate::unix_nanos;
use super::{Ledger, LedgerError};

impl Ledger {
    /// Deletes the stored prompts of the records with these serials, in one
    /// transaction, and returns how many prompts were deleted. A record
    /// that has no stored prompt is left as it is.
    ///
    /// Fails, deleting nothing, when a serial has no record or its record
    /// has a version 1 leaf.
    pub fn redact_prompts(&mut self, serials: &[u64]) -> Result<u64, LedgerError> {
        let mut leaf_indices = Vec::with_capacity(serials.len());
        for &serial in serials {
            let record = self
                .get(serial)?
                .ok_or_else(|| LedgerError::RecordNotFound {
                    path: self.at.path.clone(),
                    serial,
                })?;
            if record.encoding_version == 1 {
                return Err(LedgerError::InvalidRecord {
                    serial,
                    field: "prompt",
                    reason: "is inside the record's version 1 leaf, so it cannot be redacted \
                             without breaking the leaf hash"
                        .into(),
                });
            }
            leaf_indices.push(record.leaf_index);
        }

        let (tx, at) = self.write_transaction("redact prompts")?;
        let fail = at.sql("redact prompts");
        let mut deleted = 0;
        {
            let mut statement = tx
                .prepare("DELETE FROM prompts WHERE leaf_index = ?1")
                .map_err(&fail)?;
            for leaf_index in leaf_indices {
                // Leaf indices are SQLite rowids, below 2^63.
                deleted += statement.execute([leaf_index as i64]).map_err(&fail)? as u64;
            }
        }
        tx.commit().map_err(&fail)?;
        tracing::info!(deleted, "redacted ledger prompts");
        Ok(deleted)
    }

    /// Deletes the stored prompts of every record created before `until`,
    /// and returns how many were deleted. Records with version 1 leaves
    /// keep their prompts.
    pub fn redact_prompts_before(&mut self, until: OffsetDateTime) -> Result<u64, LedgerError> {
        let until_ns = unix_nanos(until).unwrap_or(if until.year() < 1970 {
            i64::MIN
        } else {
            i64::MAX
        });
        let (tx, at) = self.write_transaction("redact prompts")?;
        let fail = at.sql("redact prompts");
        let deleted = tx
            .execute(
                "DELETE FROM prompts WHERE leaf_index IN \
                 (SELECT leaf_index FROM records WHERE created_ns < ?1)",
                [until_ns],
            )
            .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        tracing::info!(deleted, "redacted ledger prompts");
        Ok(deleted as u64)
    }
}
