//! The `tree` table: stored hashes of complete subtrees, numbered as
//! [`frontier::node_number`] describes.

use rusqlite::{Connection, OptionalExtension};

use super::frontier::{self, Frontier};
use super::merkle::{Hash, HashReader, SubtreeId};
use super::{LedgerError, Location};

/// Number of records, which is the tree size: one more than the highest
/// leaf index. Reads one row of the primary key.
pub(crate) fn size(conn: &Connection) -> rusqlite::Result<u64> {
    let last: Option<i64> = conn
        .query_row(
            "SELECT leaf_index FROM records ORDER BY leaf_index DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(last.map_or(0, |index| index.max(-1).wrapping_add(1).unsigned_abs()))
}

/// Loads the right edge of the tree of `size` leaves, in one read of
/// popcount(size) hashes.
pub(crate) fn load_frontier(
    conn: &Connection,
    at: &Location,
    size: u64,
) -> Result<Frontier, LedgerError> {
    let reader = StoredTree { conn, at };
    let roots = reader.read_hashes(&frontier::edge_subtrees(size))?;
    Frontier::from_roots(size, roots).ok_or_else(|| LedgerError::CorruptTree {
        path: at.path().to_path_buf(),
        reason: format!("the right edge of the tree of {size} leaves is incomplete"),
    })
}

/// Inserts newly completed subtree hashes.
pub(crate) fn insert_nodes(
    conn: &Connection,
    at: &Location,
    nodes: &[(u64, Hash)],
) -> Result<(), LedgerError> {
    let fail = at.sql("store tree hashes");
    let mut statement = conn
        .prepare_cached("INSERT INTO tree (node, hash) VALUES (?1, ?2)")
        .map_err(&fail)?;
    for (number, hash) in nodes {
        // Node numbers fit an i64: `node_number` checks it, and a tree
        // below 2^61 leaves has fewer nodes.
        statement
            .execute(rusqlite::params![*number as i64, hash.as_slice()])
            .map_err(&fail)?;
    }
    Ok(())
}

/// Stored subtree hashes, read one indexed row per hash.
pub(crate) struct StoredTree<'a> {
    pub conn: &'a Connection,
    pub at: &'a Location,
}

impl HashReader for StoredTree<'_> {
    type Error = LedgerError;

    fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, LedgerError> {
        let corrupt = |reason: String| LedgerError::CorruptTree {
            path: self.at.path().to_path_buf(),
            reason,
        };
        let mut statement = self
            .conn
            .prepare_cached("SELECT hash FROM tree WHERE node = ?1")
            .map_err(self.at.sql("read tree hashes"))?;
        let mut hashes = Vec::with_capacity(ids.len());
        for id in ids {
            let number = frontier::node_number(*id).ok_or_else(|| {
                corrupt(format!(
                    "the subtree at level {}, index {} is beyond any tree",
                    id.level, id.index
                ))
            })?;
            let bytes: Option<Vec<u8>> = statement
                .query_row([number as i64], |row| row.get(0))
                .optional()
                .map_err(self.at.sql("read tree hashes"))?;
            let bytes = bytes.ok_or_else(|| {
                corrupt(format!(
                    "node {number} (level {}, index {}) is missing",
                    id.level, id.index
                ))
            })?;
            let hash: Hash = bytes
                .try_into()
                .map_err(|_| corrupt(format!("node {number} is not 32 bytes")))?;
            hashes.push(hash);
        }
        Ok(hashes)
    }
}
