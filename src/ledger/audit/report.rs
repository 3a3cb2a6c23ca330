//! What `ledger verify` reports.

use serde::Serialize;

/// Result of [`crate::ledger::Ledger::audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Records read, from leaf 0 up to the end or to the first record
    /// that could not be placed in the tree.
    pub records: u64,
    /// Stored checkpoints read.
    pub checkpoints: u64,
    /// Root hash recomputed from the records, in hex.
    pub root: String,
    /// Tree size of the newest checkpoint whose signature verified.
    pub latest_checkpoint_size: Option<u64>,
    /// Generation records that keep only their prompt's SHA-256, because
    /// the prompt was never logged or was redacted.
    pub prompts_absent: u64,
    /// Faults found, ordered by leaf index (faults of no record last).
    /// At most [`MAX_FAULTS`] are listed.
    pub faults: Vec<AuditFault>,
    /// Number of faults found, including those not listed.
    pub fault_count: u64,
}

/// Maximum number of faults that a report lists.
pub const MAX_FAULTS: usize = 100;

impl AuditReport {
    /// Whether every check passed.
    pub fn is_intact(&self) -> bool {
        self.fault_count == 0
    }

    /// The fault of the lowest leaf index, or the first fault of no record.
    pub fn first_fault(&self) -> Option<&AuditFault> {
        self.faults.first()
    }
}

/// One thing that `ledger verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditFault {
    /// First record that differs or may differ, if the fault concerns
    /// records.
    pub leaf_index: Option<u64>,
    /// Serial of that record, when its row could be read.
    pub serial: Option<u64>,
    /// Row id of the checkpoint concerned, if any.
    pub checkpoint_id: Option<u64>,
    /// What is wrong.
    pub problem: AuditProblem,
}

/// Why a record, the tree or a checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AuditProblem {
    /// No record has this leaf index, but later ones exist: a row was
    /// deleted or moved.
    #[error("the record is missing; the next stored record is at leaf {next_stored}")]
    MissingLeaf {
        /// Leaf index of the next stored record.
        next_stored: u64,
    },
    /// A row or its leaf cannot be decoded.
    #[error("the record cannot be read: {reason}")]
    Unreadable {
        /// What failed.
        reason: String,
    },
    /// A lookup column disagrees with the leaf: the row was edited, or
    /// rows were swapped.
    #[error("column {column} holds {stored}, but the record's leaf has {in_leaf}")]
    ColumnMismatch {
        /// Column name.
        column: &'static str,
        /// Value in the column.
        stored: String,
        /// Value in the leaf.
        in_leaf: String,
    },
    /// A stored prompt does not match the leaf's prompt hash.
    #[error("the stored prompt was changed: {reason}")]
    PromptMismatch {
        /// Details.
        reason: String,
    },
    /// A version 1 record does not link to the record before it.
    #[error("the version 1 hash chain is broken: prev_hash is {stored}, expected {expected}")]
    ChainMismatch {
        /// `prev_hash` in the leaf, in hex.
        stored: String,
        /// SHA-256 of the previous leaf, in hex.
        expected: String,
    },
    /// A stored subtree hash is not the hash of its leaves.
    #[error(
        "stored tree node {node} (level {level}) differs from the hash recomputed from the \
         records, so this record or the stored tree was changed"
    )]
    TreeMismatch {
        /// Node number.
        node: u64,
        /// Height of the subtree.
        level: u32,
    },
    /// A subtree hash that the records complete is not stored.
    #[error("stored tree node {node} is missing")]
    TreeNodeMissing {
        /// Node number.
        node: u64,
    },
    /// The tree has nodes that no record completes.
    #[error("the stored tree has {count} nodes beyond the {records} records")]
    ExtraTreeNodes {
        /// Number of extra nodes.
        count: u64,
        /// Number of records.
        records: u64,
    },
    /// A checkpoint's signature or text does not verify.
    #[error("the checkpoint does not verify: {reason}")]
    CheckpointInvalid {
        /// Why.
        reason: String,
    },
    /// A checkpoint's stored tree size differs from the size it signs.
    #[error("the checkpoint row says tree size {stored}, but its note signs {signed}")]
    CheckpointSizeMismatch {
        /// `tree_size` column, which an edit can make negative.
        stored: i64,
        /// Size in the note.
        signed: u64,
    },
    /// Checkpoint row ids are not contiguous: a checkpoint was deleted.
    #[error("checkpoint {expected} is missing; the next stored checkpoint is {found}")]
    CheckpointMissing {
        /// Row id that should have come next.
        expected: u64,
        /// Row id that came next.
        found: u64,
    },
    /// A checkpoint is for a smaller tree than the one before it.
    #[error(
        "the checkpoint signs {tree_size} records, fewer than the {previous} of the \
         checkpoint before it; checkpoints were reordered or the log was rolled back"
    )]
    CheckpointOrder {
        /// Size in this checkpoint.
        tree_size: u64,
        /// Size in the previous checkpoint.
        previous: u64,
    },
    /// The records no longer hash to a checkpoint's root.
    #[error(
        "the records do not hash to the root that the checkpoint signed for {tree_size} \
         records: a record from leaf {first_suspect} to {last_suspect} was changed, \
         removed or reordered after it was signed"
    )]
    RootMismatch {
        /// Size that the checkpoint signs.
        tree_size: u64,
        /// First leaf that the previous matching checkpoint does not cover.
        first_suspect: u64,
        /// Last leaf that the checkpoint covers.
        last_suspect: u64,
    },
    /// A checkpoint signs more records than the ledger has.
    #[error(
        "the checkpoint signs {tree_size} records, but the ledger has {records}: \
         records were removed"
    )]
    Truncated {
        /// Size that the checkpoint signs.
        tree_size: u64,
        /// Records found.
        records: u64,
    },
    /// The newest records are not covered by a signed checkpoint, so
    /// their removal would go unnoticed.
    #[error(
        "records {covered} to {last} are not covered by a signed checkpoint; mmgen signs a \
         checkpoint with every append, so checkpoints were deleted, or run \
         `mmgen ledger checkpoint --sign` on a ledger upgraded from schema 1"
    )]
    Uncovered {
        /// Records covered by the newest valid checkpoint.
        covered: u64,
        /// Last leaf index.
        last: u64,
    },
    /// The ledger's stored origin is not the verifier key's name.
    #[error(
        "the ledger's origin is {stored:?}, but the verifier key is for {expected:?}; \
         use the verifier key of this log"
    )]
    OriginMismatch {
        /// Origin in the `meta` table.
        stored: String,
        /// Name of the verifier key.
        expected: String,
    },
}
