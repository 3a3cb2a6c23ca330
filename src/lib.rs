//! mmgen: provenance for generated images.
//!
//! Every image that the built-in latent diffusion engine makes carries three
//! independent layers: a watermark in the initial latent, a signed C2PA
//! manifest, and a record in a tamper-evident ledger. The modules below are
//! those layers and the engine itself; `src/main.rs` is the command line.

pub mod alloc;
pub mod engine;
pub mod eval;
pub mod generation;
pub mod home;
pub mod keys;
pub mod label;
pub mod ledger;
pub mod manifest;
pub mod media;
pub mod output;
pub mod stamp;
pub mod train;
pub mod verify;
pub mod watermark;
pub mod world;
