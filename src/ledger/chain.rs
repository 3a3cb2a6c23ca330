//! Verification of the hash chain over all stored records.

use serde::Serialize;
use tracing::debug;

use super::encoding::{self, Fields};
use super::read::{RECORD_COLUMNS, decode_row};
use super::{Ledger, LedgerError, to_hex};

/// Result of [`Ledger::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Records that passed, counted from leaf 0 up to the first fault.
    pub verified: u64,
    /// Hash of the last record that passed, in hex; `None` when none did.
    pub head_hash: Option<String>,
    /// First record that failed, or `None` when the whole chain is intact.
    pub first_fault: Option<ChainFault>,
}

impl ChainReport {
    /// Whether every stored record passed.
    pub fn is_intact(&self) -> bool {
        self.first_fault.is_none()
    }
}

/// The first record that broke the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainFault {
    /// Leaf index where the chain broke. For a missing record this is the
    /// index that should have been there.
    pub leaf_index: u64,
    /// Serial of the stored record at that point, if it could be read.
    pub serial: Option<u64>,
    /// What is wrong.
    pub problem: ChainProblem,
}

/// Why a record failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChainProblem {
    /// The stored `record_hash` is not the hash of the stored fields: a
    /// field was edited, or rows were swapped.
    HashMismatch {
        /// Hash in the row, in hex.
        stored: String,
        /// Hash recomputed from the row's fields, in hex.
        computed: String,
    },
    /// The stored `prev_hash` is not the previous record's hash: a record
    /// before this one was replaced or removed, or rows were swapped.
    PrevHashMismatch {
        /// `prev_hash` in the row, in hex.
        stored: String,
        /// Hash of the previous record, in hex.
        expected: String,
    },
    /// No record has this leaf index, but later ones exist: a row was
    /// deleted.
    MissingLeaf {
        /// Leaf index of the next stored record.
        next_stored: u64,
    },
    /// The row cannot be decoded into a record.
    Unreadable {
        /// Which column failed and how.
        reason: String,
    },
}

impl Ledger {
    /// Recomputes every record hash and link in leaf order and reports the
    /// first bad record.
    ///
    /// NOTE: the chain alone cannot show that the newest records were
    /// removed, because what remains is still a valid chain. Only a signed
    /// checkpoint of the tree size shows that.
    pub fn verify_chain(&self) -> Result<ChainReport, LedgerError> {
        let fail = |source| self.sql_error("verify chain", source);
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records ORDER BY leaf_index");
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;

        let mut expected_index = 0u64;
        let mut prev_hash = [0u8; 32];
        while let Some(row) = rows.next().map_err(fail)? {
            let fault = match decode_row(row) {
                Err(row_fault) => Some(ChainFault {
                    leaf_index: u64::try_from(row_fault.leaf_index).unwrap_or(expected_index),
                    serial: None,
                    problem: ChainProblem::Unreadable {
                        reason: row_fault.reason,
                    },
                }),
                Ok(record) => check_record(&record, expected_index, &prev_hash).err(),
            };
            if let Some(fault) = fault {
                debug!(leaf_index = fault.leaf_index, "ledger chain is broken");
                return Ok(report(expected_index, &prev_hash, Some(fault)));
            }
            let record_hash: Vec<u8> = row.get(19).map_err(fail)?;
            prev_hash.copy_from_slice(&record_hash);
            expected_index += 1;
        }

        debug!(records = expected_index, "ledger chain is intact");
        Ok(report(expected_index, &prev_hash, None))
    }
}

/// Checks one decoded record against its expected position and link.
fn check_record(
    record: &super::Record,
    expected_index: u64,
    prev_hash: &[u8; 32],
) -> Result<(), ChainFault> {
    let fault = |leaf_index, problem| ChainFault {
        leaf_index,
        serial: Some(record.serial),
        problem,
    };
    if record.leaf_index != expected_index {
        return Err(ChainFault {
            leaf_index: expected_index,
            serial: None,
            problem: ChainProblem::MissingLeaf {
                next_stored: record.leaf_index,
            },
        });
    }
    if record.prev_hash != *prev_hash {
        let problem = ChainProblem::PrevHashMismatch {
            stored: to_hex(&record.prev_hash),
            expected: to_hex(prev_hash),
        };
        return Err(fault(record.leaf_index, problem));
    }
    let computed = encoding::record_hash(&Fields::from_record(record));
    if computed != record.record_hash {
        let problem = ChainProblem::HashMismatch {
            stored: to_hex(&record.record_hash),
            computed: to_hex(&computed),
        };
        return Err(fault(record.leaf_index, problem));
    }
    Ok(())
}

fn report(verified: u64, head: &[u8; 32], first_fault: Option<ChainFault>) -> ChainReport {
    ChainReport {
        verified,
        head_hash: (verified > 0).then(|| to_hex(head)),
        first_fault,
    }
}
