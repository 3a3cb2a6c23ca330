//! The ledger: an append-only SQLite log of every output, a Merkle tree
//! over its records and signed checkpoints, in the manner of Certificate
//! Transparency.
//!
//! Each record is stored as its canonical encoding (docs/ledger.md), which
//! is a leaf of the RFC 9162 Merkle tree. Every append or batch of appends
//! stores the hashes of the subtrees it completes and a checkpoint note
//! signed with the home's checkpoint key, in the same transaction. Records
//! are never updated or deleted; a prompt can be redacted, because the
//! leaf commits to its SHA-256 only.
//!
//! Serials are reserved before an output is made, because a generation's
//! watermark payload encodes the serial. A reservation that never gets a
//! record leaves a gap in the serials, never in the leaf indices.
//!
//! [`Ledger::audit`] recomputes every leaf, the tree and each checkpoint's
//! root and signature, and reports the first record that differs.
//! [`proof`] builds inclusion and consistency proofs from the stored
//! subtree hashes and checks them offline.

mod audit;
pub mod checkpoint;
mod encoding;
mod error;
pub mod export;
pub mod frontier;
pub mod merkle;
mod open;
pub mod proof;
mod read;
mod record;
mod redact;
mod schema;
mod tree;
mod upgrade;
mod validate;
mod write;

#[cfg(test)]
mod test_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub use audit::{AuditFault, AuditProblem, AuditReport};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointSigner, CheckpointVerifier, StoredCheckpoint,
};
pub use encoding::{
    ENCODING_VERSION, LeafError, MAGIC, MAX_MANIFEST_BYTES, MAX_MIME_BYTES, MAX_MODEL_NAME_BYTES,
    MAX_PAYLOAD_BYTES, MAX_PROMPT_BYTES, MAX_SOURCE_TYPE_BYTES, decode as decode_leaf,
};
pub use error::LedgerError;
pub use read::ListFilter;
pub use record::{Generation, NewRecord, Record, RecordDetails, RecordKind, Stamp};
pub use schema::SCHEMA_VERSION;
pub use write::MAX_BATCH;

/// Busy timeout of a newly opened ledger: how long a write waits for
/// another process's write transaction before it fails with
/// [`LedgerError::Busy`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open ledger database. One value holds one SQLite connection, so each
/// thread opens its own.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    at: Location,
}

/// The file a ledger was opened from, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    path: PathBuf,
    busy_timeout: Duration,
}

impl Location {
    /// Returns a function that maps a SQLite error during `operation` to
    /// the ledger error that names the fix.
    pub(crate) fn sql(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError {
        let path = self.path.clone();
        let busy_timeout = self.busy_timeout;
        move |source| map_sql_error(&path, busy_timeout, operation, source)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Ledger {
    /// Maps a SQLite error to the ledger error that names the fix.
    fn sql_error(&self, operation: &'static str, source: rusqlite::Error) -> LedgerError {
        self.at.sql(operation)(source)
    }

    /// Starts an immediate write transaction, which waits up to the busy
    /// timeout for other writers.
    fn write_transaction(
        &mut self,
        operation: &'static str,
    ) -> Result<(rusqlite::Transaction<'_>, &Location), LedgerError> {
        let Ledger { conn, at } = self;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(at.sql(operation))?;
        Ok((tx, at))
    }
}

/// Maps busy and not-a-database failures to their own variants, and any
/// other failure to [`LedgerError::Sqlite`].
fn map_sql_error(
    path: &Path,
    busy_timeout: Duration,
    operation: &'static str,
    source: rusqlite::Error,
) -> LedgerError {
    use rusqlite::ErrorCode;
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => LedgerError::Busy {
            path: path.to_path_buf(),
            waited: busy_timeout,
        },
        Some(ErrorCode::NotADatabase) => LedgerError::NotSqlite {
            path: path.to_path_buf(),
        },
        _ => LedgerError::Sqlite {
            path: path.to_path_buf(),
            operation,
            source,
        },
    }
}

/// Lowercase hex of a byte string, as used in JSON and messages.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    text
}
