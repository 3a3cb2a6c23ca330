//! The SQLite schema of the ledger, its version and the checks that tell
//! a ledger apart from any other SQLite file.

use rusqlite::Connection;

/// `PRAGMA application_id` of every mmgen ledger, ASCII "mmLG".
pub const APPLICATION_ID: i32 = 0x6D6D_4C47;

/// Schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

/// The serials table, unchanged since schema version 1.
pub(crate) const SERIALS: &str = "
CREATE TABLE serials (
    serial      INTEGER PRIMARY KEY AUTOINCREMENT,
    reserved_ns INTEGER NOT NULL
);
";

/// Every other table, index and trigger of schema version 2.
///
/// `records.leaf` contains the canonical encoding, the one source of truth;
/// the other columns of `records` repeat leaf fields for lookups, and
/// reads and `ledger verify` check that they agree with the leaf. `tree`
/// holds the hash of every complete subtree, numbered in the order that
/// appends complete them (docs/ledger.md), and `checkpoints` every signed
/// checkpoint note.
///
/// The triggers reject UPDATE and DELETE wherever mmgen only appends, so
/// that no mmgen code path can change history by mistake. `prompts`
/// accepts DELETE, which is how a prompt is redacted. The triggers are no
/// defence against a person who edits the file; `ledger verify` is.
pub(crate) const TABLES_V2: &str = "
CREATE TABLE records (
    leaf_index       INTEGER PRIMARY KEY,
    serial           INTEGER NOT NULL UNIQUE REFERENCES serials(serial),
    kind             INTEGER NOT NULL,
    created_ns       INTEGER NOT NULL,
    output_sha256    BLOB    NOT NULL,
    watermark_key_id BLOB,
    leaf             BLOB    NOT NULL
);
CREATE INDEX records_by_key ON records (watermark_key_id, serial);
CREATE INDEX records_by_output ON records (output_sha256);
CREATE INDEX records_by_time ON records (created_ns);
CREATE TABLE prompts (
    leaf_index INTEGER PRIMARY KEY REFERENCES records(leaf_index),
    prompt     TEXT NOT NULL
);
CREATE TABLE tree (
    node INTEGER PRIMARY KEY,
    hash BLOB    NOT NULL
);
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tree_size  INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    note       TEXT    NOT NULL
);
CREATE INDEX checkpoints_by_size ON checkpoints (tree_size);
CREATE INDEX checkpoints_by_time ON checkpoints (created_ns);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER records_reject_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
CREATE TRIGGER records_reject_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'ledger records are immutable'); END;
CREATE TRIGGER prompts_reject_update BEFORE UPDATE ON prompts
BEGIN SELECT RAISE(ABORT, 'ledger prompts can be redacted (deleted) but never changed'); END;
CREATE TRIGGER tree_reject_update BEFORE UPDATE ON tree
BEGIN SELECT RAISE(ABORT, 'the ledger tree is append-only'); END;
CREATE TRIGGER tree_reject_delete BEFORE DELETE ON tree
BEGIN SELECT RAISE(ABORT, 'the ledger tree is append-only'); END;
CREATE TRIGGER checkpoints_reject_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger checkpoints are immutable'); END;
CREATE TRIGGER checkpoints_reject_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger checkpoints are immutable'); END;
CREATE TRIGGER serials_reject_update BEFORE UPDATE ON serials
BEGIN SELECT RAISE(ABORT, 'ledger serials are never reassigned'); END;
CREATE TRIGGER serials_reject_delete BEFORE DELETE ON serials
BEGIN SELECT RAISE(ABORT, 'ledger serials are never reassigned'); END;
CREATE TRIGGER meta_reject_update BEFORE UPDATE ON meta
BEGIN SELECT RAISE(ABORT, 'ledger settings are written once'); END;
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

/// Creates the current schema in an empty database. The caller runs this
/// inside a write transaction.
pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SERIALS)?;
    conn.execute_batch(TABLES_V2)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}
