//! The error type of the ledger store.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from opening, writing or reading a ledger.
///
/// Every variant that concerns the database file names its path, and the
/// message says what to do next. Bad input never panics and never changes
/// the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The directory that should contain the ledger file does not exist.
    /// The caller's fault: the home directory was not created.
    #[error(
        "cannot create ledger {path}: directory {directory} does not exist; \
         create it or pass --home to choose another mmgen home"
    )]
    MissingDirectory {
        /// Ledger file that was requested.
        path: PathBuf,
        /// Missing parent directory.
        directory: PathBuf,
    },

    /// A read-only command asked for a ledger that was never created.
    #[error(
        "no ledger at {path}; generate an image first to create one, \
         or pass --home to point at the mmgen home that has it"
    )]
    NotFound {
        /// Ledger file that was requested.
        path: PathBuf,
    },

    /// The file exists but is not an SQLite database.
    #[error(
        "{path} is not an SQLite database, so it is not an mmgen ledger; \
         move it away or pass --home to choose another mmgen home"
    )]
    NotSqlite {
        /// File that failed to open.
        path: PathBuf,
    },

    /// The file is an SQLite database that some other program made.
    #[error(
        "{path} is an SQLite database but not an mmgen ledger ({reason}); \
         move it away or pass --home to choose another mmgen home"
    )]
    NotALedger {
        /// File that failed to open.
        path: PathBuf,
        /// What identified it as foreign.
        reason: String,
    },

    /// The ledger was written by a newer mmgen with a newer schema.
    #[error(
        "ledger {path} has schema version {found}, but this mmgen supports \
         versions up to {supported}; upgrade mmgen to read it"
    )]
    NewerSchema {
        /// Ledger file.
        path: PathBuf,
        /// `PRAGMA user_version` in the file.
        found: i64,
        /// Highest schema version this build knows.
        supported: i64,
    },

    /// Another connection held the write lock for longer than the busy
    /// timeout.
    #[error(
        "ledger {path} is locked by another process (waited {waited:?}); \
         wait for the other mmgen command to finish and try again"
    )]
    Busy {
        /// Ledger file.
        path: PathBuf,
        /// Busy timeout that expired.
        waited: Duration,
    },

    /// `append` got a serial that `reserve_serial` never returned.
    #[error(
        "serial {serial} was never reserved in ledger {path}; \
         call reserve_serial before starting the generation"
    )]
    SerialNotReserved {
        /// Ledger file.
        path: PathBuf,
        /// Serial in the rejected record.
        serial: u64,
    },

    /// `append` got a serial that already has a record.
    #[error(
        "serial {serial} already has record {leaf_index} in ledger {path}; \
         reserve a new serial for every output"
    )]
    SerialAlreadyUsed {
        /// Ledger file.
        path: PathBuf,
        /// Serial in the rejected record.
        serial: u64,
        /// Leaf index of the existing record.
        leaf_index: u64,
    },

    /// A field of a new record is out of range; nothing was written.
    #[error("invalid ledger record for serial {serial}: {field} {reason}")]
    InvalidRecord {
        /// Serial in the rejected record.
        serial: u64,
        /// Name of the field that failed.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// A stored row cannot be decoded into a record: the file was edited
    /// or damaged outside mmgen.
    #[error(
        "ledger {path}: record at leaf index {leaf_index} is damaged ({reason}); \
         run `mmgen ledger verify` and restore the ledger from a backup"
    )]
    CorruptRecord {
        /// Ledger file.
        path: PathBuf,
        /// Leaf index of the damaged row.
        leaf_index: i64,
        /// Which column failed and how.
        reason: String,
    },

    /// The stored subtree hashes needed to append or prove are missing or
    /// malformed: the file was edited or damaged outside mmgen.
    #[error(
        "ledger {path}: the stored Merkle tree is damaged ({reason}); \
         run `mmgen ledger verify` and restore the ledger from a backup"
    )]
    CorruptTree {
        /// Ledger file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// A stored checkpoint row cannot be read.
    #[error(
        "ledger {path}: a checkpoint is damaged ({reason}); \
         run `mmgen ledger verify` and restore the ledger from a backup"
    )]
    CorruptCheckpoint {
        /// Ledger file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The ledger has no checkpoint yet, so nothing can be proved.
    #[error(
        "ledger {path} has no signed checkpoint yet; append a record, or run \
         `mmgen ledger checkpoint --sign` on a ledger upgraded from schema 1"
    )]
    NoCheckpoint {
        /// Ledger file.
        path: PathBuf,
    },

    /// No record has the requested serial.
    #[error(
        "ledger {path} has no record with serial {serial}; `mmgen ledger list` shows the serials"
    )]
    RecordNotFound {
        /// Ledger file.
        path: PathBuf,
        /// Requested serial.
        serial: u64,
    },

    /// The checkpoint signer names another log than the one stored.
    #[error(
        "ledger {path} has origin {stored:?}, but the checkpoint signer is for \
         {offered:?}; a log keeps one origin, so sign with the origin the ledger has"
    )]
    OriginMismatch {
        /// Ledger file.
        path: PathBuf,
        /// Origin in the ledger.
        stored: String,
        /// Origin of the signer.
        offered: String,
    },

    /// The newest checkpoint has no signature by the signer's key, so the
    /// signer has another key than the one that signed the log.
    #[error(
        "the newest checkpoint of ledger {path} has no signature by the offered checkpoint \
         key (log {origin}, key id {key_id:08x}); checkpoints signed with another key would \
         not verify with the log's published key, so restore the key that signed the log \
         (keys/checkpoint.key.pem in the mmgen home) from a backup"
    )]
    CheckpointKeyMismatch {
        /// Ledger file.
        path: PathBuf,
        /// Origin of the log.
        origin: String,
        /// Key id of the offered key.
        key_id: u32,
    },

    /// A schema 1 ledger could not be upgraded; it was left unchanged.
    #[error(
        "ledger {path} (schema 1) cannot be upgraded: {reason}; the file is unchanged. \
         Restore it from a backup, or keep using the mmgen release that wrote it"
    )]
    UpgradeFailed {
        /// Ledger file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// A proof could not be built.
    #[error(transparent)]
    Proof(#[from] super::merkle::MerkleError),

    /// Writing an export failed.
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Io {
        /// File being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Any other SQLite failure (disk full, read-only file, I/O error).
    #[error("ledger {path}: {operation} failed: {source}")]
    Sqlite {
        /// Ledger file.
        path: PathBuf,
        /// What the store was doing, such as "append record".
        operation: &'static str,
        /// Error from SQLite.
        source: rusqlite::Error,
    },
}
