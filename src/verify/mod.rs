//! Verification: combines the evidence of every layer into one report.
