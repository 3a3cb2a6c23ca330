//! Checkpoints and the log origin in the database.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use time::OffsetDateTime;

use super::super::read::ListFilter;
use super::super::{Ledger, LedgerError, Location, tree};
use super::{CheckpointError, CheckpointSigner, unix_nanos_clamped};

/// Name of the log origin in the `meta` table.
const ORIGIN: &str = "origin";

/// A checkpoint row: the signed note and when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// Row id, 1 for the first checkpoint, then contiguous.
    pub id: u64,
    /// Tree size that the note signs, as stored beside it.
    pub tree_size: u64,
    /// Time the checkpoint was written. It is not part of the signed
    /// note, so it is informative only.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// The signed note, in the C2SP tlog-checkpoint form.
    pub note: String,
}

fn rfc3339<S: serde::Serializer>(time: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = time
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

const COLUMNS: &str = "id, tree_size, created_ns, note";

fn decode(row: &Row<'_>) -> rusqlite::Result<Result<StoredCheckpoint, String>> {
    let id: i64 = row.get(0)?;
    let tree_size: i64 = row.get(1)?;
    let created_ns: i64 = row.get(2)?;
    let note: String = row.get(3)?;
    let (Ok(id), Ok(tree_size)) = (u64::try_from(id), u64::try_from(tree_size)) else {
        return Ok(Err(format!(
            "checkpoint {id} has a negative id or tree size"
        )));
    };
    let Ok(created_at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ns)) else {
        return Ok(Err(format!("checkpoint {id} has an invalid time")));
    };
    Ok(Ok(StoredCheckpoint {
        id,
        tree_size,
        created_at,
        note,
    }))
}

impl Ledger {
    /// Returns the newest checkpoint, or `None` before the first append.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let sql = format!("SELECT {COLUMNS} FROM checkpoints ORDER BY id DESC LIMIT 1");
        self.query_checkpoints(&sql, []).map(|mut list| list.pop())
    }

    /// Lists checkpoints written in `[since, until)`, oldest first.
    pub fn checkpoints(&self, filter: &ListFilter) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let since = filter.since.map_or(i64::MIN, unix_nanos_clamped);
        let until = filter.until.map_or(i64::MAX, unix_nanos_clamped);
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {COLUMNS} FROM checkpoints \
             WHERE created_ns >= ?1 AND (created_ns < ?2 OR ?3) ORDER BY id LIMIT ?4"
        );
        let open_end = filter.until.is_none();
        self.query_checkpoints(&sql, params![since, until, open_end, limit])
    }

    /// Returns the log origin, set by the first checkpoint.
    pub fn origin(&self) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [ORIGIN], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.sql_error("read origin", source))
    }

    /// Signs and stores a checkpoint of the whole tree unless the newest
    /// checkpoint already has its size, and returns the newest checkpoint.
    ///
    /// Appends write their own checkpoints; this is for a ledger upgraded
    /// from schema 1, whose records have none yet.
    pub fn sign_checkpoint(
        &mut self,
        signer: &CheckpointSigner,
    ) -> Result<StoredCheckpoint, LedgerError> {
        {
            let (tx, at) = self.write_transaction("sign checkpoint")?;
            let fail = at.sql("sign checkpoint");
            let size = tree::size(&tx).map_err(&fail)?;
            if latest_size(&tx).map_err(&fail)? != Some(size) {
                let frontier = tree::load_frontier(&tx, at, size)?;
                write(&tx, at, signer, size, &frontier.root())?;
                tx.commit().map_err(&fail)?;
            }
        }
        self.latest_checkpoint()?
            .ok_or_else(|| LedgerError::NoCheckpoint {
                path: self.at.path.clone(),
            })
    }

    fn query_checkpoints(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let fail = |source| self.sql_error("read checkpoints", source);
        let mut statement = self.conn.prepare(sql).map_err(fail)?;
        let rows = statement.query_map(params, decode).map_err(fail)?;
        let mut list = Vec::new();
        for row in rows {
            let checkpoint =
                row.map_err(fail)?
                    .map_err(|reason| LedgerError::CorruptCheckpoint {
                        path: self.at.path.clone(),
                        reason,
                    })?;
            list.push(checkpoint);
        }
        Ok(list)
    }
}

/// Tree size of the newest checkpoint, if any.
pub(crate) fn latest_size(conn: &rusqlite::Connection) -> rusqlite::Result<Option<u64>> {
    let size: Option<i64> = conn
        .query_row(
            "SELECT tree_size FROM checkpoints ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(size.map(|size| size.max(0).unsigned_abs()))
}

/// Stores the origin on the first checkpoint, then signs the checkpoint
/// of a tree and stores it. Fails if the signer's origin differs from the
/// stored one, or its key from the key that signed the newest checkpoint.
pub(crate) fn write(
    conn: &rusqlite::Connection,
    at: &Location,
    signer: &CheckpointSigner,
    tree_size: u64,
    root: &[u8; 32],
) -> Result<(), LedgerError> {
    let fail = at.sql("write checkpoint");
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [ORIGIN], |row| {
            row.get(0)
        })
        .optional()
        .map_err(&fail)?;
    match stored {
        Some(origin) if origin != signer.origin() => {
            return Err(LedgerError::OriginMismatch {
                path: at.path().to_path_buf(),
                stored: origin,
                offered: signer.origin().to_string(),
            });
        }
        Some(_) => check_signer_key(conn, at, signer)?,
        None => {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                params![ORIGIN, signer.origin()],
            )
            .map_err(&fail)?;
        }
    }
    let note = signer.sign(tree_size, root);
    let now = unix_nanos_clamped(OffsetDateTime::now_utc());
    // Tree sizes are below 2^62, because leaf indices are SQLite rowids.
    conn.execute(
        "INSERT INTO checkpoints (tree_size, created_ns, note) VALUES (?1, ?2, ?3)",
        params![tree_size as i64, now, note],
    )
    .map_err(&fail)?;
    Ok(())
}

/// Rejects a signer whose key did not sign the newest checkpoint, such as a
/// checkpoint key restored from another home. A newest checkpoint that
/// does not open for other reasons (an edited note) is left to the audit.
fn check_signer_key(
    conn: &rusqlite::Connection,
    at: &Location,
    signer: &CheckpointSigner,
) -> Result<(), LedgerError> {
    let note: Option<String> = conn
        .query_row(
            "SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(at.sql("read checkpoints"))?;
    let Some(note) = note else {
        return Ok(());
    };
    let verifier = signer.verifier();
    match verifier.open(&note) {
        Err(CheckpointError::NoKnownSignature { .. }) => Err(LedgerError::CheckpointKeyMismatch {
            path: at.path().to_path_buf(),
            origin: signer.origin().to_string(),
            key_id: verifier.key_id(),
        }),
        _ => Ok(()),
    }
}
