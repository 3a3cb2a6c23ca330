//! Key material: the signing CA and certificate, the watermark key and
//! the ledger checkpoint key, kept in the mmgen home.
