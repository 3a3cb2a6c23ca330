//! The Merkle tree over the ledger's leaf hashes, as pure functions.
//!
//! The tree is the SHA-256 Merkle tree of RFC 9162 section 2.1, the same
//! tree as RFC 6962's, so verifiers written for Certificate Transparency
//! can check its proofs. Proofs come in Prove/Check pairs:
//! [`inclusion_proof`] with [`check_inclusion`], and [`consistency_proof`]
//! with [`check_consistency`]. The Prove functions take every leaf hash in
//! memory. [`HashReader`] and the `*_from` functions build the same proofs
//! from stored hashes of complete subtrees and read O(log n) of them.
//!
//! The tests compare the root and every proof of every tree of 1 to 300
//! leaves with the independent ct-merkle crate.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: of a leaf, of an interior node or of a whole tree.
pub type Hash = [u8; 32];

/// Prefix byte of a leaf hash preimage (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Prefix byte of an interior node hash preimage (RFC 9162 section 2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Errors from building or checking a proof.
///
/// A bad size or index is the caller's fault. A length error or a mismatch
/// means that the proof, the leaf or a root is not the one the caller
/// meant, or was altered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error(
        "leaf index {index} is out of range for a tree of {size} leaves; \
         pass an index below the tree size"
    )]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Number of leaves in the tree.
        size: u64,
    },

    /// A consistency proof was requested or checked from the empty tree.
    #[error(
        "a consistency proof needs an old tree of at least 1 leaf, but the \
         old size is 0; every tree of {new_size} leaves extends the empty \
         tree, so no proof is needed"
    )]
    EmptyOldTree {
        /// Number of leaves in the new tree.
        new_size: u64,
    },

    /// The old tree of a consistency proof is larger than the new tree.
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}; \
         pass the earlier checkpoint as the old tree"
    )]
    OldTreeLarger {
        /// Number of leaves in the old tree.
        old_size: u64,
        /// Number of leaves in the new tree.
        new_size: u64,
    },

    /// An inclusion proof has the wrong number of hashes for its index and
    /// tree size.
    #[error(
        "inclusion proof for leaf {index} in a tree of {size} leaves has \
         {actual} hashes, expected {expected}; the proof is truncated, \
         padded or for another index or tree size"
    )]
    InclusionProofLength {
        /// Leaf index that the proof was checked for.
        index: u64,
        /// Tree size that the proof was checked for.
        size: u64,
        /// Number of hashes that the index and size require.
        expected: usize,
        /// Number of hashes in the proof.
        actual: usize,
    },

    /// A consistency proof has the wrong number of hashes for its tree
    /// sizes.
    #[error(
        "consistency proof from {old_size} to {new_size} leaves has \
         {actual} hashes, expected {expected}; the proof is truncated, \
         padded or for other tree sizes"
    )]
    ConsistencyProofLength {
        /// Old tree size that the proof was checked for.
        old_size: u64,
        /// New tree size that the proof was checked for.
        new_size: u64,
        /// Number of hashes that the sizes require.
        expected: usize,
        /// Number of hashes in the proof.
        actual: usize,
    },

    /// An inclusion proof does not lead from the leaf to the root.
    #[error(
        "inclusion proof for leaf {index} in a tree of {size} leaves does \
         not lead to the given root; the leaf hash, the proof or the root \
         is wrong"
    )]
    InclusionMismatch {
        /// Leaf index that the proof was checked for.
        index: u64,
        /// Tree size that the proof was checked for.
        size: u64,
    },

    /// A consistency proof does not lead to both roots.
    #[error(
        "consistency proof from {old_size} to {new_size} leaves does not \
         match the given roots; the new tree does not extend the old one, \
         or a root or the proof is wrong"
    )]
    ConsistencyMismatch {
        /// Old tree size that the proof was checked for.
        old_size: u64,
        /// New tree size that the proof was checked for.
        new_size: u64,
    },

    /// A [`HashReader`] returned another number of hashes than requested.
    #[error(
        "hash reader returned {actual} hashes for {expected} requested \
         subtrees; the stored subtree hashes are incomplete, so rebuild \
         them from the leaves"
    )]
    ReadCount {
        /// Number of subtree hashes requested.
        expected: usize,
        /// Number of hashes returned.
        actual: usize,
    },
}

/// Hashes one leaf: SHA-256(0x00 || leaf), RFC 9162 section 2.1.1.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// Hashes an interior node: SHA-256(0x01 || left || right), RFC 9162
/// section 2.1.1.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Computes the Merkle Tree Hash (MTH, RFC 9162 section 2.1.1) of a tree
/// whose leaves have the given leaf hashes.
///
/// The tree of n > 1 leaves splits at k, the largest power of two below n:
/// MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])). One leaf is
/// its leaf hash, and the empty tree is SHA-256 of no bytes. Costs n - 1
/// node hashes.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => Sha256::digest([]).into(),
        [leaf] => *leaf,
        _ => {
            let split = split_point(leaf_hashes.len() as u64) as usize;
            let (left, right) = leaf_hashes.split_at(split);
            node_hash(&root(left), &root(right))
        }
    }
}

/// Builds the inclusion proof (audit path, RFC 9162 section 2.1.3.1) of the
/// leaf at `index` in the tree of all `leaf_hashes`.
///
/// The proof lists sibling subtree hashes from the leaf up to the root, at
/// most ceil(log2 n) of them. Costs O(n) hashes, because every leaf lies in
/// one of the siblings.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let size = leaf_hashes.len() as u64;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }

    let spans = inclusion_spans(index, size);
    Ok(spans.iter().map(|span| span.root(leaf_hashes)).collect())
}

/// Checks that `proof` leads from the leaf hash `leaf` at `index` to
/// `root`, the root of a tree of `size` leaves (RFC 9162 section 2.1.3.2).
///
/// NOTE: the proof and root do not fix the size by themselves. A proof for
/// leaf 0 of 4 also passes as leaf 0 of 3 against the same root, because
/// both paths take the same turns. Take `size` and `root` from one signed
/// checkpoint.
pub fn check_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_spans(index, size).len();
    if proof.len() != expected {
        return Err(MerkleError::InclusionProofLength {
            index,
            size,
            expected,
            actual: proof.len(),
        });
    }
    let mismatch = MerkleError::InclusionMismatch { index, size };

    // `node` (fn in the RFC) is the index of the current node on its
    // level, and `last` (sn) is the index of the last node on that level.
    // A node that is odd or last has its sibling on the left. A last node
    // that is even has no sibling on its level and moves up unchanged.
    let mut node = index;
    let mut last = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if last == 0 {
            return Err(mismatch);
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }

    if last != 0 || hash != *root {
        return Err(mismatch);
    }
    Ok(())
}

/// Builds the consistency proof (RFC 9162 section 2.1.4.1) that the tree of
/// the first `old_size` leaf hashes is a prefix of the tree of all
/// `leaf_hashes`.
///
/// The proof has at most ceil(log2 n) + 1 hashes, and none when the sizes
/// are equal. Costs O(n) hashes.
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64) -> Result<Vec<Hash>, MerkleError> {
    let new_size = leaf_hashes.len() as u64;
    check_sizes(old_size, new_size)?;

    let spans = consistency_spans(old_size, new_size);
    Ok(spans.iter().map(|span| span.root(leaf_hashes)).collect())
}

/// Checks that `proof` shows the tree of `old_size` leaves with root
/// `old_root` to be a prefix of the tree of `new_size` leaves with root
/// `new_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots.
///
/// NOTE: as with [`check_inclusion`], a proof can pass for sizes other
/// than the ones it was built for when the paths take the same turns, so
/// take each size and root from one signed checkpoint.
pub fn check_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    check_sizes(old_size, new_size)?;
    let expected = consistency_spans(old_size, new_size).len();
    if proof.len() != expected {
        return Err(MerkleError::ConsistencyProofLength {
            old_size,
            new_size,
            expected,
            actual: proof.len(),
        });
    }
    let mismatch = MerkleError::ConsistencyMismatch { old_size, new_size };
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(mismatch)
        };
    }

    // An old tree of 2^k leaves is one complete subtree of the new tree,
    // so the proof leaves out its hash and the check starts from the old
    // root.
    let mut path = proof.iter();
    let start = if old_size.is_power_of_two() {
        old_root
    } else {
        match path.next() {
            Some(first) => first,
            None => return Err(mismatch),
        }
    };

    // `node` (fn in the RFC) walks up from the old tree's last leaf and
    // `last` (sn) from the new tree's last leaf. `old_hash` (fr) rebuilds
    // the old root and `new_hash` (sr) the new root from the same path.
    let mut node = old_size - 1;
    let mut last = new_size - 1;
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let mut old_hash = *start;
    let mut new_hash = *start;
    for sibling in path {
        if last == 0 {
            return Err(mismatch);
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }

    if last != 0 || old_hash != *old_root || new_hash != *new_root {
        return Err(mismatch);
    }
    Ok(())
}

/// Rejects old sizes that no consistency proof exists for.
fn check_sizes(old_size: u64, new_size: u64) -> Result<(), MerkleError> {
    if old_size == 0 {
        return Err(MerkleError::EmptyOldTree { new_size });
    }
    if old_size > new_size {
        return Err(MerkleError::OldTreeLarger { old_size, new_size });
    }
    Ok(())
}

/// Returns the largest power of two strictly below `size`, where the tree
/// of `size` >= 2 leaves splits into its left and right subtrees.
fn split_point(size: u64) -> u64 {
    debug_assert!(size >= 2);
    1 << (u64::BITS - 1 - (size - 1).leading_zeros())
}

/// The leaves `start..end` of a tree, whose hash is one proof element.
///
/// Every span that the RFC's recursion produces is aligned: `start` is a
/// multiple of the smallest power of two >= `end - start`, so the span
/// splits into complete subtrees without carrying across them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    /// Computes the span's Merkle Tree Hash from the leaf hashes of the
    /// whole tree, which contains the span.
    fn root(self, leaf_hashes: &[Hash]) -> Hash {
        root(&leaf_hashes[self.start as usize..self.end as usize])
    }
}

/// Lists the spans whose hashes form the inclusion proof of leaf `index`
/// in a tree of `size` leaves, lowest first: RFC 9162's PATH(m, D[n]),
/// unrolled from the root down.
///
/// The caller ensures `index < size`.
fn inclusion_spans(index: u64, size: u64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut end = size;
    while end - start > 1 {
        let middle = start + split_point(end - start);
        if index < middle {
            spans.push(Span { start: middle, end });
            end = middle;
        } else {
            spans.push(Span { start, end: middle });
            start = middle;
        }
    }
    spans.reverse();
    spans
}

/// Lists the spans whose hashes form the consistency proof from `old_size`
/// to `new_size` leaves, lowest first: RFC 9162's SUBPROOF(m, D[n], true),
/// unrolled from the root down.
///
/// The caller ensures `0 < old_size <= new_size`.
fn consistency_spans(old_size: u64, new_size: u64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut end = new_size;
    // The RFC's flag b: whether the current span starts at leaf 0, so
    // that the verifier already has the old tree's hash when the span is
    // the whole old tree.
    let mut at_left_edge = true;
    loop {
        if old_size == end {
            if !at_left_edge {
                spans.push(Span { start, end });
            }
            break;
        }
        let middle = start + split_point(end - start);
        if old_size <= middle {
            spans.push(Span { start: middle, end });
            end = middle;
        } else {
            spans.push(Span { start, end: middle });
            start = middle;
            at_left_edge = false;
        }
    }
    spans.reverse();
    spans
}

/// A complete subtree: the 2^`level` leaves from `index` × 2^`level` on.
///
/// Level 0 contains single leaves. A tree of n leaves has 2n - popcount(n)
/// complete subtrees, and the append of leaf i completes
/// 1 + trailing_ones(i) of them (see [`completed_subtrees`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubtreeId {
    /// Height of the subtree, 0 to 63.
    pub level: u8,
    /// Position of the subtree among the subtrees of its level.
    pub index: u64,
}

/// Storage of complete subtree hashes, from which proofs are built without
/// holding every leaf hash in memory.
pub trait HashReader {
    /// Error of the storage. A [`MerkleError`] converts into it, so that
    /// the `*_from` functions return one error type.
    type Error: From<MerkleError>;

    /// Reads the stored hashes of `ids`, in the order requested.
    ///
    /// A subtree that is not stored must give an error or a shorter
    /// result, which the callers reject as [`MerkleError::ReadCount`].
    fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Computes the root of the first `size` leaves from stored subtree hashes,
/// in one read of popcount(size) hashes, at most 64.
pub fn root_from<R: HashReader>(reader: &R, size: u64) -> Result<Hash, R::Error> {
    let whole = Span {
        start: 0,
        end: size,
    };
    let mut roots = span_roots_from(reader, &[whole])?;
    Ok(roots.pop().unwrap_or_else(|| root(&[])))
}

/// Builds the same proof as [`inclusion_proof`] from stored subtree hashes,
/// in one read of at most 2 ceil(log2 size) hashes.
///
/// The bound follows because only the first sibling above the right edge of
/// the tree can be an incomplete subtree, and it splits into at most
/// ceil(log2 size) complete ones.
pub fn inclusion_proof_from<R: HashReader>(
    reader: &R,
    size: u64,
    index: u64,
) -> Result<Vec<Hash>, R::Error> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    span_roots_from(reader, &inclusion_spans(index, size))
}

/// Builds the same proof as [`consistency_proof`] from stored subtree
/// hashes, in one read of at most 2 ceil(log2 new_size) + 1 hashes, for the
/// same reason as in [`inclusion_proof_from`].
pub fn consistency_proof_from<R: HashReader>(
    reader: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, R::Error> {
    check_sizes(old_size, new_size)?;
    span_roots_from(reader, &consistency_spans(old_size, new_size))
}

/// Computes the subtree hashes that appending the leaf hash `leaf` at
/// `index` completes, for the caller to store beside the earlier ones.
///
/// The leaf completes the level-0 subtree `index` and, for every trailing
/// one bit of `index`, the subtree one level up, whose hash is
/// SHA-256(0x01 || left sibling || the hash below). The left siblings are
/// read in one call of trailing_ones(index) hashes, at most 63.
/// Returns the new subtrees from level 0 up.
pub fn completed_subtrees<R: HashReader>(
    reader: &R,
    index: u64,
    leaf: &Hash,
) -> Result<Vec<(SubtreeId, Hash)>, R::Error> {
    // The tree after the append has index + 1 leaves, which must fit u64.
    if index == u64::MAX {
        return Err(MerkleError::IndexOutOfRange {
            index,
            size: u64::MAX,
        }
        .into());
    }

    let levels = index.trailing_ones();
    let siblings: Vec<SubtreeId> = (0..levels)
        .map(|level| SubtreeId {
            level: level as u8,
            index: (index >> level) - 1,
        })
        .collect();
    let sibling_hashes = read_exactly(reader, &siblings)?;

    let mut completed = Vec::with_capacity(siblings.len() + 1);
    let mut hash = *leaf;
    completed.push((SubtreeId { level: 0, index }, hash));
    for (level, sibling) in (1..=levels).zip(&sibling_hashes) {
        hash = node_hash(sibling, &hash);
        let id = SubtreeId {
            level: level as u8,
            index: index >> level,
        };
        completed.push((id, hash));
    }
    Ok(completed)
}

impl Span {
    /// Lists the complete subtrees that make up this aligned span, largest
    /// first. There are popcount(end - start) of them.
    fn subtrees(self) -> Vec<SubtreeId> {
        let mut ids = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let level = u64::BITS - 1 - (self.end - start).leading_zeros();
            debug_assert_eq!(start % (1 << level), 0, "span {self:?} is not aligned");
            ids.push(SubtreeId {
                level: level as u8,
                index: start >> level,
            });
            start += 1 << level;
        }
        ids
    }
}

/// Computes the Merkle Tree Hash of each span from stored subtree hashes,
/// in one read.
fn span_roots_from<R: HashReader>(reader: &R, spans: &[Span]) -> Result<Vec<Hash>, R::Error> {
    let parts: Vec<Vec<SubtreeId>> = spans.iter().map(|span| span.subtrees()).collect();
    let ids: Vec<SubtreeId> = parts.iter().flatten().copied().collect();
    let hashes = read_exactly(reader, &ids)?;

    let mut rest = hashes.as_slice();
    let mut roots = Vec::with_capacity(spans.len());
    for part in &parts {
        let (own, tail) = rest.split_at(part.len());
        roots.push(join_subtrees(own));
        rest = tail;
    }
    Ok(roots)
}

/// Reads `ids` and rejects a result of the wrong length. Skips the read
/// when `ids` is empty.
fn read_exactly<R: HashReader>(reader: &R, ids: &[SubtreeId]) -> Result<Vec<Hash>, R::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(ids)?;
    if hashes.len() != ids.len() {
        return Err(MerkleError::ReadCount {
            expected: ids.len(),
            actual: hashes.len(),
        }
        .into());
    }
    Ok(hashes)
}

/// Computes the Merkle Tree Hash of an aligned span from its complete
/// subtrees, largest first.
///
/// The span splits at its largest subtree, because that is the largest
/// power of two below its size, so the hash nests to the right:
/// SHA-256(0x01 || c0 || SHA-256(0x01 || c1 || ...)). No subtrees make the
/// empty tree.
fn join_subtrees(subtrees: &[Hash]) -> Hash {
    let Some((last, rest)) = subtrees.split_last() else {
        return root(&[]);
    };
    rest.iter()
        .rev()
        .fold(*last, |right, left| node_hash(left, &right))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    use super::*;

    /// Largest tree that the comparisons with ct-merkle cover.
    const MAX_COMPARED_SIZE: u64 = 300;

    /// Largest tree that the tampering tests cover.
    const MAX_TAMPERED_SIZE: u64 = 40;

    type ReferenceTree = MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

    /// Builds the leaf data of the known-answer tests: "leaf 0", "leaf 1", ...
    fn leaf_data(index: u64) -> Vec<u8> {
        format!("leaf {index}").into_bytes()
    }

    fn leaf_hashes(size: u64) -> Vec<Hash> {
        (0..size)
            .map(|index| leaf_hash(&leaf_data(index)))
            .collect()
    }

    fn from_hex(text: &str) -> Hash {
        let mut hash = [0; 32];
        assert_eq!(text.len(), 64, "hex hash {text} is not 64 digits");
        for (byte, pair) in hash.iter_mut().zip(text.as_bytes().chunks(2)) {
            let digits = std::str::from_utf8(pair).expect("hex digits are ASCII");
            *byte = u8::from_str_radix(digits, 16).expect("valid hex digits");
        }
        hash
    }

    fn ceil_log2(size: u64) -> usize {
        if size <= 1 {
            0
        } else {
            (u64::BITS - (size - 1).leading_zeros()) as usize
        }
    }

    fn flip_bit(hash: &Hash, bit: usize) -> Hash {
        let mut flipped = *hash;
        flipped[bit / 8] ^= 1 << (bit % 8);
        flipped
    }

    /// Stored subtree hashes in a map, counting how they are read.
    #[derive(Default)]
    struct StoredTree {
        hashes: HashMap<SubtreeId, Hash>,
        reads: Cell<usize>,
        hashes_read: Cell<usize>,
    }

    impl StoredTree {
        /// Stores the subtrees of `leaf_hashes` by appending one at a time.
        fn build(leaf_hashes: &[Hash]) -> Self {
            let mut tree = StoredTree::default();
            for (index, leaf) in (0..).zip(leaf_hashes) {
                let completed = completed_subtrees(&tree, index, leaf).expect("stored siblings");
                tree.hashes.extend(completed);
            }
            tree.reset_counts();
            tree
        }

        fn reset_counts(&self) {
            self.reads.set(0);
            self.hashes_read.set(0);
        }
    }

    impl HashReader for StoredTree {
        type Error = MerkleError;

        fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, MerkleError> {
            self.reads.set(self.reads.get() + 1);
            self.hashes_read.set(self.hashes_read.get() + ids.len());
            Ok(ids
                .iter()
                .filter_map(|id| self.hashes.get(id))
                .copied()
                .collect())
        }
    }

    #[test]
    fn leaf_hash_of_empty_leaf() {
        let expected = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
        assert_eq!(leaf_hash(b""), from_hex(expected));
    }

    #[test]
    fn node_hash_uses_node_prefix() {
        let left = leaf_hash(b"leaf 0");
        let right = leaf_hash(b"leaf 1");
        let expected = "fc5f6b88ff8554f75bb2f9e6f39c31b1936d44b69276edf7b1205a955b9761e3";
        assert_eq!(node_hash(&left, &right), from_hex(expected));
        assert_ne!(node_hash(&right, &left), from_hex(expected));
    }

    #[test]
    fn roots_match_known_answers() {
        // Computed with Python's hashlib from the RFC 9162 definition of
        // MTH, over the leaves "leaf 0", "leaf 1", ...
        let expected = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "1bb97dcc21635d47e2663efdfd0a174686d98dd701352dd2cd06e8b43fd3d305",
            "fc5f6b88ff8554f75bb2f9e6f39c31b1936d44b69276edf7b1205a955b9761e3",
            "d4f92c8fbb89720eb3b55677c7d7efaddfeb10d11a1a84a0ba8f1a23337faa95",
            "4f631084a157c54f54fcfb23ff5eb8650c4ba160c295bb13a9832b109d52677e",
            "341515982d650e23520dbd54d7fcf0afa1b70cc3a16a411d464dc9c1ac96c301",
            "8363c3821ce41ebb46222116a42cc83dba753984b23cfca26aaad0a6867336ea",
            "5a61fc2b54f9cfa71774f2432143dd40c6cb2b11947faf65a7d3da5cb65199c8",
            "c5c2c820ed342fdda8ce896b6b9cf5b8c00a21cc4b20714cc6e5d3c05c35240b",
        ];
        for (size, hex) in (0..).zip(expected) {
            assert_eq!(
                root(&leaf_hashes(size)),
                from_hex(hex),
                "root of {size} leaves"
            );
        }
    }

    #[test]
    fn proofs_match_known_answers() {
        // Computed with Python's hashlib from the RFC 9162 definitions of
        // PATH and SUBPROOF, over the leaves "leaf 0" to "leaf 6".
        let leaves = leaf_hashes(7);
        let leaves_3_to_4 = "ab37ba34d1dfe29015de717a6d5764a8fb029c3a7a0f5b64b93b54351885bf7c";
        let leaf_3 = "58bd1496e1684aac9201c2e687ee7ae4f51c96a8b0d81ef3583628b93d3cd345";
        let leaves_0_to_2 = "fc5f6b88ff8554f75bb2f9e6f39c31b1936d44b69276edf7b1205a955b9761e3";
        let leaves_4_to_7 = "01571b557bc70672650d467c7bad8337e09a7f354a72051f23b43a782c0f48e6";

        let inclusion = inclusion_proof(&leaves, 2).expect("index 2 is in range");
        let expected: Vec<Hash> = [leaf_3, leaves_0_to_2, leaves_4_to_7]
            .map(from_hex)
            .to_vec();
        assert_eq!(inclusion, expected, "inclusion proof of leaf 2 in 7");

        let from_3 = consistency_proof(&leaves, 3).expect("3 <= 7");
        let expected: Vec<Hash> = [leaves_3_to_4, leaf_3, leaves_0_to_2, leaves_4_to_7]
            .map(from_hex)
            .to_vec();
        assert_eq!(from_3, expected, "consistency proof from 3 to 7");

        let from_4 = consistency_proof(&leaves, 4).expect("4 <= 7");
        assert_eq!(from_4, vec![from_hex(leaves_4_to_7)], "from 4 to 7");
    }

    #[test]
    fn empty_tree_root_is_hash_of_nothing() {
        let expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(root(&[]), from_hex(expected));
        assert_eq!(root_from(&StoredTree::default(), 0), Ok(from_hex(expected)));
    }

    #[test]
    fn roots_and_inclusion_match_ct_merkle() {
        let mut reference = ReferenceTree::new();
        let mut leaves = Vec::new();
        for size in 1..=MAX_COMPARED_SIZE {
            let data = leaf_data(size - 1);
            leaves.push(leaf_hash(&data));
            reference.push(data);
            let tree_root = root(&leaves);
            assert_eq!(
                tree_root[..],
                reference.root().as_bytes()[..],
                "root of {size}"
            );

            for index in 0..size {
                let proof = inclusion_proof(&leaves, index).expect("index in range");
                let expected = reference.prove_inclusion(index as usize);
                assert_eq!(
                    proof.concat(),
                    expected.as_bytes(),
                    "leaf {index} of {size}"
                );
                let leaf = &leaves[index as usize];
                let checked = check_inclusion(leaf, index, size, &proof, &tree_root);
                assert_eq!(checked, Ok(()), "check of leaf {index} of {size}");
            }
        }
    }

    #[test]
    fn consistency_matches_ct_merkle() {
        let mut reference = ReferenceTree::new();
        let mut leaves = Vec::new();
        let mut roots = Vec::new();
        for new_size in 1..=MAX_COMPARED_SIZE {
            let data = leaf_data(new_size - 1);
            leaves.push(leaf_hash(&data));
            reference.push(data);
            roots.push(root(&leaves));
            let new_root = &roots[new_size as usize - 1];

            for old_size in 1..=new_size {
                let proof = consistency_proof(&leaves, old_size).expect("sizes in order");
                let expected = reference.prove_consistency((new_size - old_size) as usize);
                let sizes = format!("{old_size} to {new_size}");
                assert_eq!(proof.concat(), expected.as_bytes(), "proof from {sizes}");
                let old_root = &roots[old_size as usize - 1];
                let checked = check_consistency(old_size, new_size, old_root, new_root, &proof);
                assert_eq!(checked, Ok(()), "check from {sizes}");
            }
        }
    }

    #[test]
    fn proof_lengths_stay_within_bounds() {
        for size in 1..=MAX_COMPARED_SIZE {
            let bound = ceil_log2(size);
            for index in 0..size {
                assert!(
                    inclusion_spans(index, size).len() <= bound,
                    "leaf {index} of {size}"
                );
            }
            for old_size in 1..=size {
                let length = consistency_spans(old_size, size).len();
                assert!(length <= bound + 1, "from {old_size} to {size}: {length}");
            }
        }
    }

    /// Lists, from the leaf up, whether each proof element of leaf `index`
    /// in a tree of `size` lies left of the leaf.
    fn inclusion_turns(index: u64, size: u64) -> Vec<bool> {
        let spans = inclusion_spans(index, size);
        spans.iter().map(|span| span.end <= index).collect()
    }

    #[test]
    fn tampered_inclusion_proofs_rejected() {
        for size in 1..=MAX_TAMPERED_SIZE {
            let leaves = leaf_hashes(size);
            let tree_root = root(&leaves);
            for index in 0..size {
                let leaf = &leaves[index as usize];
                let proof = inclusion_proof(&leaves, index).expect("index in range");
                let case = format!("leaf {index} of {size}");
                let mismatch = Err(MerkleError::InclusionMismatch { index, size });

                for position in 0..proof.len() {
                    for bit in [0, 131, 255] {
                        let mut flipped = proof.clone();
                        flipped[position] = flip_bit(&proof[position], bit);
                        let checked = check_inclusion(leaf, index, size, &flipped, &tree_root);
                        assert_eq!(checked, mismatch, "{case}, bit {bit} of hash {position}");
                    }
                }

                let short = &proof[..proof.len().saturating_sub(1)];
                if !proof.is_empty() {
                    let checked = check_inclusion(leaf, index, size, short, &tree_root);
                    let expected = Err(MerkleError::InclusionProofLength {
                        index,
                        size,
                        expected: proof.len(),
                        actual: proof.len() - 1,
                    });
                    assert_eq!(checked, expected, "{case} without its last hash");
                }

                let mut long = proof.clone();
                long.push(tree_root);
                let checked = check_inclusion(leaf, index, size, &long, &tree_root);
                let is_length_error = matches!(
                    checked,
                    Err(MerkleError::InclusionProofLength { actual, .. }) if actual == long.len()
                );
                assert!(is_length_error, "{case} with an extra hash: {checked:?}");

                let wrong_leaf = leaf_hash(b"not a leaf");
                let checked = check_inclusion(&wrong_leaf, index, size, &proof, &tree_root);
                assert_eq!(checked, mismatch, "{case} with another leaf");

                let wrong_root = flip_bit(&tree_root, 7);
                let checked = check_inclusion(leaf, index, size, &proof, &wrong_root);
                assert_eq!(checked, mismatch, "{case} against another root");
            }
        }
    }

    #[test]
    fn inclusion_at_wrong_index_rejected() {
        for size in 2..=MAX_TAMPERED_SIZE {
            let leaves = leaf_hashes(size);
            let tree_root = root(&leaves);
            for index in 0..size {
                let leaf = &leaves[index as usize];
                let proof = inclusion_proof(&leaves, index).expect("index in range");
                for other in (0..size).filter(|&other| other != index) {
                    let checked = check_inclusion(leaf, other, size, &proof, &tree_root);
                    let case = format!("leaf {index} of {size} checked as leaf {other}");
                    assert!(checked.is_err(), "{case} passed");
                }
                let checked = check_inclusion(leaf, size, size, &proof, &tree_root);
                let expected = Err(MerkleError::IndexOutOfRange { index: size, size });
                assert_eq!(
                    checked, expected,
                    "leaf {index} of {size} checked past the end"
                );
            }
        }
    }

    #[test]
    fn wrong_size_passes_on_same_path() {
        for size in 1..=MAX_TAMPERED_SIZE {
            let leaves = leaf_hashes(size);
            let tree_root = root(&leaves);
            for index in 0..size {
                let leaf = &leaves[index as usize];
                let proof = inclusion_proof(&leaves, index).expect("index in range");
                let turns = inclusion_turns(index, size);
                for other in (index + 1..=size + 8).filter(|&other| other != size) {
                    let checked = check_inclusion(leaf, index, other, &proof, &tree_root);
                    let same_path = inclusion_turns(index, other) == turns;
                    let case = format!("leaf {index} of {size} checked in {other}");
                    assert_eq!(checked.is_ok(), same_path, "{case}: {checked:?}");
                }
            }
        }

        // The documented example: both paths turn right twice.
        let leaves = leaf_hashes(4);
        let proof = inclusion_proof(&leaves, 0).expect("index in range");
        let checked = check_inclusion(&leaves[0], 0, 3, &proof, &root(&leaves));
        assert_eq!(checked, Ok(()), "leaf 0 of 4 checked in 3");
    }

    #[test]
    fn tampered_consistency_proofs_rejected() {
        for new_size in 1..=MAX_TAMPERED_SIZE {
            let leaves = leaf_hashes(new_size);
            let new_root = root(&leaves);
            for old_size in 1..=new_size {
                let old_root = root(&leaves[..old_size as usize]);
                let proof = consistency_proof(&leaves, old_size).expect("sizes in order");
                let case = format!("from {old_size} to {new_size}");
                let mismatch = Err(MerkleError::ConsistencyMismatch { old_size, new_size });
                let check = |proof: &[Hash], old_root: &Hash, new_root: &Hash| {
                    check_consistency(old_size, new_size, old_root, new_root, proof)
                };

                for position in 0..proof.len() {
                    for bit in [0, 131, 255] {
                        let mut flipped = proof.clone();
                        flipped[position] = flip_bit(&proof[position], bit);
                        let checked = check(&flipped, &old_root, &new_root);
                        assert_eq!(checked, mismatch, "{case}, bit {bit} of hash {position}");
                    }
                }

                if !proof.is_empty() {
                    let checked = check(&proof[..proof.len() - 1], &old_root, &new_root);
                    let expected = Err(MerkleError::ConsistencyProofLength {
                        old_size,
                        new_size,
                        expected: proof.len(),
                        actual: proof.len() - 1,
                    });
                    assert_eq!(checked, expected, "{case} without its last hash");
                }

                let mut long = proof.clone();
                long.push(new_root);
                let checked = check(&long, &old_root, &new_root);
                let is_length_error = matches!(
                    checked,
                    Err(MerkleError::ConsistencyProofLength { actual, .. }) if actual == long.len()
                );
                assert!(is_length_error, "{case} with an extra hash: {checked:?}");

                let wrong_old = flip_bit(&old_root, 3);
                let checked = check(&proof, &wrong_old, &new_root);
                assert_eq!(checked, mismatch, "{case} with another old root");

                let wrong_new = flip_bit(&new_root, 200);
                let checked = check(&proof, &old_root, &wrong_new);
                assert_eq!(checked, mismatch, "{case} with another new root");
            }
        }
    }

    #[test]
    fn consistency_at_wrong_sizes_rejected() {
        let leaves = leaf_hashes(7);
        let new_root = root(&leaves);
        let old_root = root(&leaves[..3]);
        let proof = consistency_proof(&leaves, 3).expect("3 <= 7");
        for (old_size, new_size) in [(2, 7), (4, 7), (3, 4), (3, 9), (5, 7)] {
            let checked = check_consistency(old_size, new_size, &old_root, &new_root, &proof);
            assert!(
                checked.is_err(),
                "proof from 3 to 7 passed as {old_size} to {new_size}"
            );
        }

        let checked = check_consistency(7, 3, &new_root, &old_root, &proof);
        let expected = Err(MerkleError::OldTreeLarger {
            old_size: 7,
            new_size: 3,
        });
        assert_eq!(checked, expected, "sizes swapped");

        let checked = check_consistency(0, 7, &root(&[]), &new_root, &[]);
        assert_eq!(checked, Err(MerkleError::EmptyOldTree { new_size: 7 }));
    }

    #[test]
    fn consistency_of_equal_sizes() {
        let leaves = leaf_hashes(5);
        let tree_root = root(&leaves);
        assert_eq!(consistency_proof(&leaves, 5), Ok(Vec::new()));
        assert_eq!(check_consistency(5, 5, &tree_root, &tree_root, &[]), Ok(()));

        let other_root = root(&leaves[..4]);
        let checked = check_consistency(5, 5, &other_root, &tree_root, &[]);
        let expected = Err(MerkleError::ConsistencyMismatch {
            old_size: 5,
            new_size: 5,
        });
        assert_eq!(checked, expected, "equal sizes with different roots");

        let checked = check_consistency(5, 5, &tree_root, &tree_root, &[tree_root]);
        let is_length_error = matches!(
            checked,
            Err(MerkleError::ConsistencyProofLength {
                expected: 0,
                actual: 1,
                ..
            })
        );
        assert!(is_length_error, "equal sizes with a hash: {checked:?}");
    }

    #[test]
    fn bad_sizes_rejected_when_proving() {
        let leaves = leaf_hashes(4);
        let expected = Err(MerkleError::IndexOutOfRange { index: 4, size: 4 });
        assert_eq!(inclusion_proof(&leaves, 4), expected);
        let expected = Err(MerkleError::IndexOutOfRange { index: 0, size: 0 });
        assert_eq!(inclusion_proof(&[], 0), expected);
        let expected = Err(MerkleError::EmptyOldTree { new_size: 4 });
        assert_eq!(consistency_proof(&leaves, 0), expected);
        let expected = Err(MerkleError::OldTreeLarger {
            old_size: 5,
            new_size: 4,
        });
        assert_eq!(consistency_proof(&leaves, 5), expected);
    }

    #[test]
    fn huge_sizes_rejected_without_panic() {
        let leaf = leaf_hash(b"leaf 0");
        let proof = vec![leaf; 64];
        let checked = check_inclusion(&leaf, u64::MAX - 1, u64::MAX, &proof, &leaf);
        assert!(
            checked.is_err(),
            "a forged proof in the largest tree passed"
        );
        let checked = check_consistency(u64::MAX - 1, u64::MAX, &leaf, &leaf, &proof);
        assert!(checked.is_err(), "a forged consistency proof passed");

        let store = StoredTree::default();
        let appended = completed_subtrees(&store, u64::MAX, &leaf);
        let expected = Err(MerkleError::IndexOutOfRange {
            index: u64::MAX,
            size: u64::MAX,
        });
        assert_eq!(appended, expected);
    }

    #[test]
    fn stored_tree_has_every_subtree() {
        for size in [1, 2, 3, 7, 8, 100, 255, 256] {
            let stored = StoredTree::build(&leaf_hashes(size));
            let expected = 2 * size - u64::from(size.count_ones());
            assert_eq!(
                stored.hashes.len() as u64,
                expected,
                "subtrees of {size} leaves"
            );
        }
    }

    #[test]
    fn stored_proofs_match_memory_proofs() {
        let leaves = leaf_hashes(MAX_COMPARED_SIZE);
        let stored = StoredTree::build(&leaves);
        for size in 1..=MAX_COMPARED_SIZE {
            let prefix = &leaves[..size as usize];
            let bound = 2 * ceil_log2(size);

            stored.reset_counts();
            assert_eq!(root_from(&stored, size), Ok(root(prefix)), "root of {size}");
            assert_eq!(stored.reads.get(), 1, "reads for the root of {size}");
            assert!(
                stored.hashes_read.get() <= 64,
                "hashes for the root of {size}"
            );

            for index in 0..size {
                stored.reset_counts();
                let proof = inclusion_proof_from(&stored, size, index);
                let case = format!("leaf {index} of {size}");
                assert_eq!(proof, inclusion_proof(prefix, index), "{case}");
                assert!(stored.reads.get() <= 1, "reads for {case}");
                assert!(stored.hashes_read.get() <= bound, "hashes for {case}");
            }

            for old_size in 1..=size {
                stored.reset_counts();
                let proof = consistency_proof_from(&stored, old_size, size);
                let case = format!("from {old_size} to {size}");
                assert_eq!(proof, consistency_proof(prefix, old_size), "{case}");
                assert!(stored.reads.get() <= 1, "reads for {case}");
                assert!(stored.hashes_read.get() <= bound + 1, "hashes for {case}");
            }
        }
    }

    #[test]
    fn missing_stored_hash_rejected() {
        let leaves = leaf_hashes(6);
        let mut stored = StoredTree::build(&leaves);
        stored.hashes.remove(&SubtreeId { level: 2, index: 0 });

        // Each of the root, the inclusion proof of leaf 5 and the
        // consistency proof from 5 needs the hash of leaves 0 to 3.
        let short_read = |expected| MerkleError::ReadCount {
            expected,
            actual: expected - 1,
        };
        assert_eq!(root_from(&stored, 6), Err(short_read(2)), "root of 6");
        let proof = inclusion_proof_from(&stored, 6, 5);
        assert_eq!(proof, Err(short_read(2)), "leaf 5 of 6");
        let proof = consistency_proof_from(&stored, 5, 6);
        assert_eq!(proof, Err(short_read(3)), "from 5 to 6");
    }

    #[test]
    fn stored_proofs_reject_bad_sizes() {
        let stored = StoredTree::build(&leaf_hashes(4));
        let expected = Err(MerkleError::IndexOutOfRange { index: 4, size: 4 });
        assert_eq!(inclusion_proof_from(&stored, 4, 4), expected);
        let expected = Err(MerkleError::EmptyOldTree { new_size: 4 });
        assert_eq!(consistency_proof_from(&stored, 0, 4), expected);
        assert_eq!(stored.reads.get(), 0, "bad sizes read nothing");
    }
}
