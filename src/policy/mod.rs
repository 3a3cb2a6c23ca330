//! Provider policies: which layers a generation must carry and what the
//! ledger may keep of a prompt.
