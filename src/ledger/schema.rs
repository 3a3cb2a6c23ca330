//! The SQLite schema of the ledger, its version and the checks that tell
//! a ledger apart from any other SQLite file.

use rusqlite::Connection;

/// `PRAGMA application_id` of every mmgen ledger, ASCII "mmLG".
pub const APPLICATION_ID: i32 = 0x6D6D_4C47;

/// Schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

/// Tables, indexes and triggers of schema version 1.
///
/// The triggers reject UPDATE and DELETE on records so that no mmgen code
/// path can change history by mistake. They are no defence against a
/// person who edits the file; `verify_chain` and signed checkpoints are.
const SCHEMA_V1: &str = "
CREATE TABLE serials (
    serial      INTEGER PRIMARY KEY AUTOINCREMENT,
    reserved_ns INTEGER NOT NULL
);
CREATE TABLE records (
    leaf_index        INTEGER PRIMARY KEY,
    serial            INTEGER NOT NULL UNIQUE REFERENCES serials(serial),
    kind              INTEGER NOT NULL,
    created_ns        INTEGER NOT NULL,
    model_name        TEXT    NOT NULL,
    weights_sha256    BLOB    NOT NULL,
    prompt            TEXT,
    prompt_sha256     BLOB    NOT NULL,
    seed              INTEGER NOT NULL,
    steps             INTEGER NOT NULL,
    guidance          REAL    NOT NULL,
    width             INTEGER NOT NULL,
    height            INTEGER NOT NULL,
    watermark_key_id  BLOB    NOT NULL,
    watermark_payload TEXT    NOT NULL,
    output_sha256     BLOB    NOT NULL,
    output_mime       TEXT    NOT NULL,
    manifest          BLOB    NOT NULL,
    prev_hash         BLOB    NOT NULL,
    record_hash       BLOB    NOT NULL
);
CREATE INDEX records_by_key ON records (watermark_key_id, serial);
CREATE INDEX records_by_output ON records (output_sha256);
CREATE INDEX records_by_time ON records (created_ns);
CREATE TRIGGER records_reject_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
CREATE TRIGGER records_reject_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
";

/// What an opened SQLite file contains.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// No tables and no identifiers: a new or zero-length file.
    Empty,
    /// An mmgen ledger with this schema version.
    Ledger(i64),
    /// Some other database; the text says why.
    Foreign(String),
}

/// Reads the identifiers of the open database without writing to it.
pub(crate) fn inspect(conn: &Connection) -> rusqlite::Result<Contents> {
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let objects: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;

    if application_id == APPLICATION_ID {
        return Ok(Contents::Ledger(user_version));
    }
    if application_id == 0 && user_version == 0 && objects == 0 {
        return Ok(Contents::Empty);
    }
    Ok(Contents::Foreign(format!(
        "application_id {application_id:#x}, user_version {user_version}, {objects} schema objects"
    )))
}

/// Creates schema version 1 in an empty database. The caller runs this
/// inside a write transaction.
pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA_V1)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}
