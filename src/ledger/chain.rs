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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    use super::*;
    use crate::ledger::test_support::{fill, temp_ledger};

    /// A direct connection with the immutability triggers dropped, as a
    /// person editing the file would have.
    fn tamper(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open for tampering");
        conn.execute_batch(
            "DROP TRIGGER records_reject_update; DROP TRIGGER records_reject_delete;",
        )
        .expect("drop triggers");
        conn
    }

    fn fault_of(report: &ChainReport) -> &ChainFault {
        report.first_fault.as_ref().expect("chain must be broken")
    }

    #[test]
    fn intact_chain_reports_head() {
        let (_dir, _path, mut ledger) = temp_ledger();
        let empty = ledger.verify_chain().expect("verify empty");
        assert!(empty.is_intact());
        assert_eq!(empty.verified, 0);
        assert_eq!(empty.head_hash, None);

        let records = fill(&mut ledger, 5);
        let report = ledger.verify_chain().expect("verify");
        assert!(report.is_intact());
        assert_eq!(report.verified, 5);
        assert_eq!(report.head_hash, Some(to_hex(&records[4].record_hash)));
    }

    #[test]
    fn edited_field_breaks_its_hash() {
        let (_dir, path, mut ledger) = temp_ledger();
        let records = fill(&mut ledger, 5);
        tamper(&path)
            .execute(
                "UPDATE records SET seed = seed + 1 WHERE leaf_index = 2",
                [],
            )
            .expect("edit seed");

        let report = ledger.verify_chain().expect("verify");
        let fault = fault_of(&report);
        assert_eq!(report.verified, 2);
        assert_eq!(fault.leaf_index, 2);
        assert_eq!(fault.serial, Some(records[2].serial));
        assert!(
            matches!(fault.problem, ChainProblem::HashMismatch { .. }),
            "{fault:?}"
        );
    }

    #[test]
    fn edited_field_with_new_hash_breaks_next_link() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 5);
        let conn = tamper(&path);
        conn.execute("UPDATE records SET prompt = NULL WHERE leaf_index = 1", [])
            .expect("edit prompt");
        let mut edited = ledger.get(2).expect("get").expect("serial 2 exists");
        edited.prompt = None;
        let new_hash = encoding::record_hash(&Fields::from_record(&edited));
        conn.execute(
            "UPDATE records SET record_hash = ?1 WHERE leaf_index = 1",
            [new_hash.as_slice()],
        )
        .expect("store recomputed hash");

        let report = ledger.verify_chain().expect("verify");
        let fault = fault_of(&report);
        assert_eq!(fault.leaf_index, 2);
        assert!(
            matches!(fault.problem, ChainProblem::PrevHashMismatch { .. }),
            "{fault:?}"
        );
    }

    #[test]
    fn deleted_row_is_missing_leaf() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 5);
        tamper(&path)
            .execute("DELETE FROM records WHERE leaf_index = 3", [])
            .expect("delete row");

        let report = ledger.verify_chain().expect("verify");
        let fault = fault_of(&report);
        assert_eq!(report.verified, 3);
        assert_eq!(fault.leaf_index, 3);
        assert_eq!(fault.problem, ChainProblem::MissingLeaf { next_stored: 4 });
    }

    #[test]
    fn deleted_first_row_is_missing_leaf_zero() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 2);
        tamper(&path)
            .execute("DELETE FROM records WHERE leaf_index = 0", [])
            .expect("delete row");

        let report = ledger.verify_chain().expect("verify");
        assert_eq!(fault_of(&report).leaf_index, 0);
        assert_eq!(report.verified, 0);
    }

    #[test]
    fn swapped_rows_break_first_of_them() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 5);
        let conn = tamper(&path);
        // Move leaf 1 aside, put leaf 3 in its place and leaf 1 in leaf 3's.
        conn.execute_batch(
            "UPDATE records SET leaf_index = -1 WHERE leaf_index = 1;
             UPDATE records SET leaf_index = 1 WHERE leaf_index = 3;
             UPDATE records SET leaf_index = 3 WHERE leaf_index = -1;",
        )
        .expect("swap rows");

        let report = ledger.verify_chain().expect("verify");
        let fault = fault_of(&report);
        assert_eq!(report.verified, 1);
        assert_eq!(fault.leaf_index, 1);
        assert!(
            matches!(fault.problem, ChainProblem::PrevHashMismatch { .. }),
            "{fault:?}"
        );
    }

    #[test]
    fn unreadable_row_is_reported() {
        let (_dir, path, mut ledger) = temp_ledger();
        fill(&mut ledger, 3);
        tamper(&path)
            .execute(
                "UPDATE records SET output_sha256 = x'00' WHERE leaf_index = 1",
                [],
            )
            .expect("shorten hash");

        let report = ledger.verify_chain().expect("verify");
        let fault = fault_of(&report);
        assert_eq!(fault.leaf_index, 1);
        match &fault.problem {
            ChainProblem::Unreadable { reason } => assert!(reason.contains("output_sha256")),
            other => panic!("expected Unreadable, got {other:?}"),
        }
    }
}
