//! The generation ledger: an append-only SQLite log of every output, a
//! Merkle tree over its records and signed checkpoints.
