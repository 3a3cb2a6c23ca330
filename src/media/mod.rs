//! Decoding and encoding image files within size limits.
