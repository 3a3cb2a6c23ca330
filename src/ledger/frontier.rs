//! The right edge of the Merkle tree, which appends and `ledger verify`
//! extend one leaf at a time.
//!
//! A tree of n leaves splits into popcount(n) complete subtrees, one for
//! each set bit of n, largest first. Their roots are all that an append
//! needs: the new leaf merges with the smaller roots, and the tree's root
//! is their right fold (see [`Frontier::root`]).
//!
//! Complete subtrees are stored in the `tree` table under a node number:
//! their position in the order that appends complete them. Leaf i
//! completes the subtrees at levels 0 to trailing_ones(i), and the leaves
//! before it completed 2i - popcount(i) subtrees, so the subtree at level
//! L completed by leaf i has node number 2i - popcount(i) + L.

use super::merkle::{self, Hash, SubtreeId};

/// Returns the node number of a complete subtree, or `None` if it does
/// not fit an i64 (more than 2^61 leaves).
pub fn node_number(id: SubtreeId) -> Option<u64> {
    let level = u32::from(id.level);
    let completing_leaf = id
        .index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(level)?)?
        .checked_sub(1)?;
    let before = completing_leaf.checked_mul(2)? - u64::from(completing_leaf.count_ones());
    let number = before.checked_add(u64::from(level))?;
    (number <= i64::MAX as u64).then_some(number)
}

/// Returns the number of complete subtrees in a tree of `size` leaves,
/// which is also the next free node number.
pub fn node_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// Lists the complete subtrees whose roots make up the tree of `size`
/// leaves, largest first.
pub fn edge_subtrees(size: u64) -> Vec<SubtreeId> {
    let mut ids = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1 << level) != 0 {
            ids.push(SubtreeId {
                level,
                index: start >> level,
            });
            start += 1 << level;
        }
    }
    ids
}

/// Roots of the complete subtrees along the right edge of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of [`edge_subtrees`] of `size`, largest first.
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn empty() -> Self {
        Self {
            size: 0,
            roots: Vec::new(),
        }
    }

    /// Builds the frontier of a tree of `size` leaves from the roots of its
    /// [`edge_subtrees`], or returns `None` if their number is wrong.
    pub fn from_roots(size: u64, roots: Vec<Hash>) -> Option<Self> {
        (roots.len() == size.count_ones() as usize).then_some(Self { size, roots })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash and adds the subtrees it completes to
    /// `completed`, as (node number, hash), level 0 first.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(u64, Hash)>) {
        let index = self.size;
        let first = node_count(index);
        let mut hash = leaf;
        completed.push((first, hash));
        for level in 1..=u64::from(index.trailing_ones()) {
            // The roots of a tree with trailing ones hold one root per low
            // level, so a left sibling is always there.
            let Some(left) = self.roots.pop() else { break };
            hash = merkle::node_hash(&left, &hash);
            completed.push((first + level, hash));
        }
        self.roots.push(hash);
        self.size += 1;
    }

    /// Computes the Merkle Tree Hash of the whole tree: the right fold
    /// SHA-256(0x01 || r0 || SHA-256(0x01 || r1 || ...)) over the roots,
    /// largest first, in popcount(size) - 1 node hashes.
    pub fn root(&self) -> Hash {
        let Some((last, rest)) = self.roots.split_last() else {
            return merkle::root(&[]);
        };
        rest.iter()
            .rev()
            .fold(*last, |right, left| merkle::node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|i| merkle::leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// Stored subtree hashes keyed by id, for `completed_subtrees`.
    struct Map(HashMap<SubtreeId, Hash>);

    impl merkle::HashReader for Map {
        type Error = merkle::MerkleError;

        fn read_hashes(&self, ids: &[SubtreeId]) -> Result<Vec<Hash>, Self::Error> {
            Ok(ids
                .iter()
                .filter_map(|id| self.0.get(id))
                .copied()
                .collect())
        }
    }

    #[test]
    fn roots_match_merkle_root() {
        let all = leaves(300);
        let mut frontier = Frontier::empty();
        assert_eq!(frontier.root(), merkle::root(&[]));
        let mut completed = Vec::new();
        for (size, leaf) in (1..).zip(&all) {
            frontier.push(*leaf, &mut completed);
            assert_eq!(frontier.size(), size);
            assert_eq!(
                frontier.root(),
                merkle::root(&all[..size as usize]),
                "root of {size}"
            );
        }
    }

    #[test]
    fn completed_nodes_match_merkle_subtrees() {
        let all = leaves(300);
        let mut frontier = Frontier::empty();
        let mut stored = Map(HashMap::new());
        let mut numbers = Vec::new();
        for (index, leaf) in (0..).zip(&all) {
            let mut completed = Vec::new();
            frontier.push(*leaf, &mut completed);
            let expected = merkle::completed_subtrees(&stored, index, leaf).expect("siblings");
            assert_eq!(completed.len(), expected.len(), "leaf {index}");
            for ((number, hash), (id, expected_hash)) in completed.iter().zip(&expected) {
                assert_eq!(hash, expected_hash, "leaf {index}, {id:?}");
                assert_eq!(node_number(*id), Some(*number), "number of {id:?}");
                numbers.push(*number);
            }
            stored.0.extend(expected);
        }
        let expected_numbers: Vec<u64> = (0..node_count(300)).collect();
        assert_eq!(numbers, expected_numbers, "node numbers are dense");
    }

    #[test]
    fn frontier_rebuilds_from_stored_roots() {
        let all = leaves(100);
        let mut frontier = Frontier::empty();
        let mut by_number = HashMap::new();
        let mut completed = Vec::new();
        for (size, leaf) in (1..).zip(&all) {
            frontier.push(*leaf, &mut completed);
            by_number.extend(completed.drain(..));
            let roots: Vec<Hash> = edge_subtrees(size)
                .into_iter()
                .map(|id| by_number[&node_number(id).expect("fits")])
                .collect();
            let rebuilt = Frontier::from_roots(size, roots).expect("right count");
            assert_eq!(rebuilt, frontier, "frontier of {size}");
        }
        assert_eq!(Frontier::from_roots(3, vec![[0; 32]]), None);
    }

    #[test]
    fn node_numbers_of_huge_trees_do_not_overflow() {
        let top = SubtreeId {
            level: 63,
            index: 1,
        };
        assert_eq!(node_number(top), None);
        let last = SubtreeId {
            level: 0,
            index: u64::MAX,
        };
        assert_eq!(node_number(last), None);
    }
}
