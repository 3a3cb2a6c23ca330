//! `ledger verify`: recompute every leaf, the tree and each checkpoint's
//! root, check every checkpoint's signature, and report what differs.
//!
//! The records are read once, in leaf order, beside the stored subtree
//! hashes. Each leaf is decoded and hashed, and its lookup columns and
//! prompt are checked against it. Its hash extends a [`Frontier`], whose
//! completed subtrees must equal the stored ones, and whose root must
//! equal the root of every checkpoint of that size. Because every valid
//! checkpoint must match a prefix of the same recomputed tree, each later
//! checkpoint is consistent with each earlier one.

mod checkpoints;
mod report;
#[cfg(test)]
mod tests;

use rusqlite::Row;
use sha2::{Digest, Sha256};

use super::checkpoint::CheckpointVerifier;
use super::frontier::Frontier;
use super::merkle::Hash;
use super::read::{RECORD_COLUMNS, RECORD_TABLES, RowFault, check_row, read_leaf};
use super::record::Record;
use super::{Ledger, LedgerError, Location, to_hex};
use checkpoints::Signed;

pub use report::{AuditFault, AuditProblem, AuditReport, MAX_FAULTS};

impl Ledger {
    /// Verifies the whole ledger against the log's public checkpoint key.
    /// See [`Ledger::audit_with`].
    pub fn audit(&self, verifier: &CheckpointVerifier) -> Result<AuditReport, LedgerError> {
        self.audit_with(verifier, &[])
    }

    /// Verifies the whole ledger, and also checks that the records extend
    /// each of the signed checkpoint notes in `external`, such as one that
    /// an auditor kept from an earlier visit. A stored ledger that was
    /// rolled back below such a checkpoint fails, even when its own
    /// checkpoints were rolled back with it.
    pub fn audit_with(
        &self,
        verifier: &CheckpointVerifier,
        external: &[String],
    ) -> Result<AuditReport, LedgerError> {
        let mut faults = Faults::default();
        if let Some(stored) = self.origin()?
            && stored != verifier.origin()
        {
            faults.push(AuditFault {
                leaf_index: None,
                serial: None,
                checkpoint_id: None,
                problem: AuditProblem::OriginMismatch {
                    stored,
                    expected: verifier.origin().to_string(),
                },
            });
        }
        let pass = self.check_checkpoints(verifier, external)?;
        for fault in pass.faults {
            faults.push(fault);
        }
        let scan = self.scan_records(&pass.signed, &mut faults)?;
        let latest = pass
            .signed
            .iter()
            .filter(|signed| signed.id.is_some())
            .map(|signed| signed.tree_size)
            .max();
        if !scan.stopped_early {
            check_coverage(&pass.signed, scan.records, &mut faults);
        }
        Ok(faults.into_report(scan, pass.stored, latest))
    }

    /// Reads every record in leaf order and checks it, the stored tree and
    /// the roots of `signed`, which is ordered by tree size.
    fn scan_records(&self, signed: &[Signed], faults: &mut Faults) -> Result<Scan, LedgerError> {
        let fail = |source| self.sql_error("verify ledger", source);
        let sql = format!("SELECT {RECORD_COLUMNS} FROM {RECORD_TABLES} ORDER BY r.leaf_index");
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;
        let mut node_statement = self
            .conn
            .prepare("SELECT node, hash FROM tree ORDER BY node")
            .map_err(fail)?;
        let rows_of_tree = node_statement.query([]).map_err(fail)?;
        let mut nodes = NodeStream::new(rows_of_tree, &self.at)?;

        let mut state = ScanState::new(signed);
        state.check_roots(faults);
        while let Some(row) = rows.next().map_err(fail)? {
            let Some(record) = state.place(row, faults) else {
                return state.finish(&mut nodes, true, faults);
            };
            state.frontier_push(&record, &mut nodes, faults)?;
            state.check_roots(faults);
        }
        state.finish(&mut nodes, false, faults)
    }
}

/// Outcome of the record scan.
struct Scan {
    records: u64,
    root: Hash,
    prompts_absent: u64,
    /// Whether a record could not be placed in the tree, so that later
    /// records were not read.
    stopped_early: bool,
}

/// The running state of the record scan.
struct ScanState<'a> {
    frontier: Frontier,
    signed: std::iter::Peekable<std::slice::Iter<'a, Signed>>,
    /// Size of the largest checkpoint whose root matched so far.
    matched_size: u64,
    root_failed: bool,
    tree_failed: bool,
    /// SHA-256 of the previous leaf when it was a version 1 leaf.
    previous_v1: Option<Hash>,
    prompts_absent: u64,
    completed: Vec<(u64, Hash)>,
}

impl<'a> ScanState<'a> {
    fn new(signed: &'a [Signed]) -> Self {
        Self {
            frontier: Frontier::empty(),
            signed: signed.iter().peekable(),
            matched_size: 0,
            root_failed: false,
            tree_failed: false,
            previous_v1: None,
            prompts_absent: 0,
            completed: Vec::new(),
        }
    }

    /// Decodes a row and checks it, or returns `None` when the record
    /// cannot be placed at the next leaf index.
    fn place(&mut self, row: &Row<'_>, faults: &mut Faults) -> Option<Record> {
        let expected = self.frontier.size();
        let column: Result<i64, _> = row.get(0);
        let fault = |serial, problem| AuditFault {
            leaf_index: Some(expected),
            serial,
            checkpoint_id: None,
            problem,
        };
        match column {
            Ok(index) if index == expected as i64 => {}
            Ok(index) if index > expected as i64 => {
                let next_stored = index.unsigned_abs();
                faults.push(fault(None, AuditProblem::MissingLeaf { next_stored }));
                return None;
            }
            Ok(index) => {
                let reason = format!(
                    "column leaf_index holds {index}, below the next leaf index {expected}"
                );
                faults.push(fault(None, AuditProblem::Unreadable { reason }));
                return None;
            }
            Err(error) => {
                let reason = format!("column leaf_index cannot be read: {error}");
                faults.push(fault(None, AuditProblem::Unreadable { reason }));
                return None;
            }
        }
        let mut record = match read_leaf(row) {
            Ok(record) => record,
            Err(RowFault { problem, .. }) => {
                faults.push(fault(None, problem));
                return None;
            }
        };
        if let Err(RowFault { problem, .. }) = check_row(row, &mut record) {
            faults.push(fault(Some(record.serial), problem));
        }
        self.check_chain(row, &record, faults);
        if let Some(generation) = record.generation()
            && generation.prompt.is_none()
            && record.encoding_version >= 2
        {
            self.prompts_absent += 1;
        }
        Some(record)
    }

    /// Checks the `prev_hash` link of a version 1 record.
    fn check_chain(&mut self, row: &Row<'_>, record: &Record, faults: &mut Faults) {
        let Some(stored) = record.prev_hash else {
            self.previous_v1 = None;
            return;
        };
        let expected = match (record.leaf_index, self.previous_v1) {
            (0, _) => Some([0; 32]),
            (_, previous) => previous,
        };
        if expected != Some(stored) {
            faults.push(AuditFault {
                leaf_index: Some(record.leaf_index),
                serial: Some(record.serial),
                checkpoint_id: None,
                problem: AuditProblem::ChainMismatch {
                    stored: to_hex(&stored),
                    expected: expected
                        .map_or("a version 1 record before it".into(), |h| to_hex(&h)),
                },
            });
        }
        let leaf: Vec<u8> = row.get(6).unwrap_or_default();
        self.previous_v1 = Some(Sha256::digest(&leaf).into());
    }

    /// Adds the record's leaf hash to the tree and compares the subtrees
    /// it completes with the stored ones.
    fn frontier_push(
        &mut self,
        record: &Record,
        nodes: &mut NodeStream<'_>,
        faults: &mut Faults,
    ) -> Result<(), LedgerError> {
        self.completed.clear();
        self.frontier.push(record.leaf_hash, &mut self.completed);
        for (level, (number, hash)) in (0u32..).zip(&self.completed) {
            let problem = match nodes.take(*number)? {
                Some(stored) if stored == *hash => continue,
                Some(_) => AuditProblem::TreeMismatch {
                    node: *number,
                    level,
                },
                None => AuditProblem::TreeNodeMissing { node: *number },
            };
            if !self.tree_failed {
                self.tree_failed = true;
                faults.push(AuditFault {
                    leaf_index: Some(record.leaf_index),
                    serial: Some(record.serial),
                    checkpoint_id: None,
                    problem,
                });
            } else {
                faults.count_hidden();
            }
        }
        Ok(())
    }

    /// Compares the root with every checkpoint of the current size.
    fn check_roots(&mut self, faults: &mut Faults) {
        let size = self.frontier.size();
        while let Some(signed) = self.signed.next_if(|signed| signed.tree_size <= size) {
            if signed.tree_size < size || self.root_failed {
                continue;
            }
            if self.frontier.root() == signed.root {
                self.matched_size = size;
                continue;
            }
            self.root_failed = true;
            faults.push(AuditFault {
                leaf_index: Some(self.matched_size),
                serial: None,
                checkpoint_id: signed.id,
                problem: AuditProblem::RootMismatch {
                    tree_size: size,
                    first_suspect: self.matched_size,
                    last_suspect: size.saturating_sub(1),
                },
            });
        }
    }

    fn finish(
        self,
        nodes: &mut NodeStream<'_>,
        stopped_early: bool,
        faults: &mut Faults,
    ) -> Result<Scan, LedgerError> {
        let records = self.frontier.size();
        let extra = nodes.count_rest()?;
        if extra > 0 && !stopped_early {
            faults.push(AuditFault {
                leaf_index: None,
                serial: None,
                checkpoint_id: None,
                problem: AuditProblem::ExtraTreeNodes {
                    count: extra,
                    records,
                },
            });
        }
        Ok(Scan {
            records,
            root: self.frontier.root(),
            prompts_absent: self.prompts_absent,
            stopped_early,
        })
    }
}

/// Flags checkpoints beyond the records (truncation) and records beyond
/// the newest checkpoint.
fn check_coverage(signed: &[Signed], records: u64, faults: &mut Faults) {
    if let Some(beyond) = signed.iter().find(|signed| signed.tree_size > records) {
        faults.push(AuditFault {
            leaf_index: Some(records),
            serial: None,
            checkpoint_id: beyond.id,
            problem: AuditProblem::Truncated {
                tree_size: beyond.tree_size,
                records,
            },
        });
        return;
    }
    let covered = signed.last().map_or(0, |signed| signed.tree_size);
    if covered < records {
        faults.push(AuditFault {
            leaf_index: Some(covered),
            serial: None,
            checkpoint_id: None,
            problem: AuditProblem::Uncovered {
                covered,
                last: records - 1,
            },
        });
    }
}

/// Stored tree rows in node order, compared with the recomputed nodes.
struct NodeStream<'a> {
    rows: rusqlite::Rows<'a>,
    next: Option<(i64, Vec<u8>)>,
    at: &'a Location,
}

impl<'a> NodeStream<'a> {
    fn new(mut rows: rusqlite::Rows<'a>, at: &'a Location) -> Result<Self, LedgerError> {
        let next = Self::read(&mut rows, at)?;
        Ok(Self { rows, next, at })
    }

    fn read(
        rows: &mut rusqlite::Rows<'a>,
        at: &Location,
    ) -> Result<Option<(i64, Vec<u8>)>, LedgerError> {
        let row = rows.next().map_err(at.sql("read tree"))?;
        let Some(row) = row else { return Ok(None) };
        let number: i64 = row.get(0).unwrap_or(-1);
        let hash: Vec<u8> = row.get(1).unwrap_or_default();
        Ok(Some((number, hash)))
    }

    /// Returns the stored hash of node `number`, or `None` if it is not
    /// stored, skipping rows of lower numbers. A hash of the wrong length
    /// comes back as all ones, which never matches.
    fn take(&mut self, number: u64) -> Result<Option<Hash>, LedgerError> {
        let number = number as i64;
        while let Some((stored, hash)) = &self.next {
            if *stored > number {
                return Ok(None);
            }
            let found =
                (*stored == number).then(|| hash.as_slice().try_into().unwrap_or([0xFF; 32]));
            self.next = Self::read(&mut self.rows, self.at)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Counts the rows not yet taken.
    fn count_rest(&mut self) -> Result<u64, LedgerError> {
        let mut count = 0;
        while self.next.is_some() {
            count += 1;
            self.next = Self::read(&mut self.rows, self.at)?;
        }
        Ok(count)
    }
}

/// Faults collected during an audit, listed up to [`MAX_FAULTS`].
#[derive(Default)]
struct Faults {
    listed: Vec<AuditFault>,
    count: u64,
}

impl Faults {
    fn push(&mut self, fault: AuditFault) {
        self.count += 1;
        if self.listed.len() < MAX_FAULTS {
            self.listed.push(fault);
        }
    }

    /// Counts a fault that follows from one already listed.
    fn count_hidden(&mut self) {
        self.count += 1;
    }

    fn into_report(mut self, scan: Scan, checkpoints: u64, latest: Option<u64>) -> AuditReport {
        self.listed
            .sort_by_key(|fault| (fault.leaf_index.is_none(), fault.leaf_index));
        AuditReport {
            records: scan.records,
            checkpoints,
            root: to_hex(&scan.root),
            latest_checkpoint_size: latest,
            prompts_absent: scan.prompts_absent,
            faults: self.listed,
            fault_count: self.count,
        }
    }
}
