//! The checkpoint half of an audit: signatures, row ids and order.

use rayon::prelude::*;

use super::report::{AuditFault, AuditProblem};
use crate::ledger::checkpoint::CheckpointVerifier;
use crate::ledger::merkle::Hash;
use crate::ledger::{Ledger, LedgerError};

/// Checkpoints read before their signatures are checked in parallel.
const CHUNK: usize = 4096;

/// Checkpoints whose signatures are checked in one batch verification.
const BATCH: usize = 256;

/// A checkpoint whose signature verified, to compare with the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Signed {
    /// Row id, or `None` for a checkpoint supplied by the caller.
    pub id: Option<u64>,
    pub tree_size: u64,
    pub root: Hash,
}

/// What the checkpoint pass found.
pub(super) struct CheckpointPass {
    /// Valid checkpoints, ordered by tree size.
    pub signed: Vec<Signed>,
    /// Number of stored checkpoint rows.
    pub stored: u64,
    pub faults: Vec<AuditFault>,
}

/// A stored checkpoint row before its signature is checked.
struct Row {
    id: i64,
    tree_size: i64,
    note: String,
}

impl Ledger {
    /// Checks every stored checkpoint's signature, row id and order, and
    /// the caller's `external` notes, with signatures checked in parallel.
    pub(super) fn check_checkpoints(
        &self,
        verifier: &CheckpointVerifier,
        external: &[String],
    ) -> Result<CheckpointPass, LedgerError> {
        let fail = |source| self.sql_error("read checkpoints", source);
        let mut statement = self
            .conn
            .prepare("SELECT id, tree_size, note FROM checkpoints ORDER BY id")
            .map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;

        let mut pass = CheckpointPass {
            signed: Vec::new(),
            stored: 0,
            faults: Vec::new(),
        };
        let mut order = Order::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let row = rows.next().map_err(fail)?;
            if let Some(row) = row {
                chunk.push(Row {
                    id: row.get(0).map_err(fail)?,
                    tree_size: row.get(1).map_err(fail)?,
                    note: row.get(2).map_err(fail)?,
                });
                if chunk.len() < CHUNK {
                    continue;
                }
            }
            pass.stored += chunk.len() as u64;
            let opened: Vec<_> = chunk
                .par_chunks(BATCH)
                .flat_map_iter(|rows| {
                    let notes: Vec<&str> = rows.iter().map(|row| row.note.as_str()).collect();
                    verifier.open_batch(&notes)
                })
                .collect();
            for (row, result) in chunk.drain(..).zip(opened) {
                order.check(&row, result, &mut pass);
            }
            if row.is_none() {
                break;
            }
        }

        for note in external {
            match verifier.open(note) {
                Ok(checkpoint) => pass.signed.push(Signed {
                    id: None,
                    tree_size: checkpoint.tree_size,
                    root: checkpoint.root,
                }),
                Err(error) => pass.faults.push(AuditFault {
                    leaf_index: None,
                    serial: None,
                    checkpoint_id: None,
                    problem: AuditProblem::CheckpointInvalid {
                        reason: format!("supplied checkpoint: {error}"),
                    },
                }),
            }
        }
        pass.signed.sort_by_key(|signed| signed.tree_size);
        Ok(pass)
    }
}

/// Row-id and size order of the stored checkpoints seen so far.
#[derive(Default)]
struct Order {
    previous_id: i64,
    previous_size: u64,
}

impl Order {
    fn check(
        &mut self,
        row: &Row,
        opened: Result<crate::ledger::Checkpoint, crate::ledger::CheckpointError>,
        pass: &mut CheckpointPass,
    ) {
        let id = row.id.max(0).unsigned_abs();
        let mut fault = |problem| {
            pass.faults.push(AuditFault {
                leaf_index: None,
                serial: None,
                checkpoint_id: Some(id),
                problem,
            })
        };
        if row.id != self.previous_id + 1 {
            fault(AuditProblem::CheckpointMissing {
                expected: (self.previous_id + 1).max(0).unsigned_abs(),
                found: id,
            });
        }
        self.previous_id = row.id;
        let checkpoint = match opened {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                fault(AuditProblem::CheckpointInvalid {
                    reason: error.to_string(),
                });
                return;
            }
        };
        if u64::try_from(row.tree_size) != Ok(checkpoint.tree_size) {
            fault(AuditProblem::CheckpointSizeMismatch {
                stored: row.tree_size,
                signed: checkpoint.tree_size,
            });
        }
        if checkpoint.tree_size < self.previous_size {
            fault(AuditProblem::CheckpointOrder {
                tree_size: checkpoint.tree_size,
                previous: self.previous_size,
            });
        }
        self.previous_size = self.previous_size.max(checkpoint.tree_size);
        pass.signed.push(Signed {
            id: Some(id),
            tree_size: checkpoint.tree_size,
            root: checkpoint.root,
        });
    }
}
