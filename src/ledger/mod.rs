//! The generation ledger: an append-only SQLite log of every output, a
//! Merkle tree over its records and signed checkpoints.
//!
//! Each record is chained to the one before it: `record_hash` is SHA-256
//! over the record's canonical encoding (docs/ledger.md), and that encoding
//! contains the previous record's hash. Records are never updated or
//! deleted. Serials are reserved before a generation starts, because the
//! watermark payload encodes the serial; a reservation that never gets a
//! record leaves a gap in the serials, never in the leaf indices.
//!
//! [`Ledger::verify_chain`] recomputes the chain and reports the first bad
//! record.

mod chain;
mod encoding;
mod error;
pub mod merkle;
mod open;
mod read;
mod record;
mod schema;
mod write;

#[cfg(test)]
mod test_support;

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;

pub use chain::{ChainFault, ChainProblem, ChainReport};
pub use encoding::{ENCODING_VERSION, MAGIC};
pub use error::LedgerError;
pub use read::ListFilter;
pub use record::{NewRecord, Record, RecordKind};
pub use schema::SCHEMA_VERSION;

/// Busy timeout of a newly opened ledger: how long a write waits for
/// another process's write transaction before it fails with
/// [`LedgerError::Busy`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open ledger database. One value holds one SQLite connection, so each
/// thread opens its own.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    busy_timeout: Duration,
}

impl Ledger {
    /// Maps a SQLite error to the ledger error that names the fix.
    fn sql_error(&self, operation: &'static str, source: rusqlite::Error) -> LedgerError {
        map_sql_error(&self.path, self.busy_timeout, operation, source)
    }
}

/// Maps busy and not-a-database failures to their own variants, and any
/// other failure to [`LedgerError::Sqlite`].
fn map_sql_error(
    path: &std::path::Path,
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
