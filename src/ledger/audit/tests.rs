//! Tampering tests of `ledger verify`: each edit made to the SQLite file
//! behind mmgen's back must be found.
