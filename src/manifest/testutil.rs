//! Shared helpers for the manifest tests: a fresh key set, test images
//! and the third-party fixture folder.

use std::io::Cursor;
use std::path::PathBuf;

use image::{ImageFormat, Rgb, RgbImage};

use super::GenerationClaim;
use crate::keys::{KeySet, KeyStore};

/// A fresh key set in a temporary directory, kept alive by the guard.
pub fn key_set() -> (tempfile::TempDir, KeySet) {
    let tmp = tempfile::tempdir().unwrap();
    let set = KeyStore::new(&tmp.path().join("keys")).init().unwrap();
    (tmp, set)
}

/// A 64x64 gradient encoded as `format`.
pub fn image_bytes(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 128]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn claim() -> GenerationClaim {
    GenerationClaim {
        model_name: "builtin".into(),
        weights_sha256: [7; 32],
        watermark_payload: "mmgen-wm1:0102030405060708:42".into(),
        serial: 42,
        steps: 20,
        guidance: 7.5,
        seed: 1234,
        prompt_sha256: [9; 32],
        prompt: None,
        width: 64,
        height: 64,
        title: "out.png".into(),
    }
}

/// The `c2pa` fixture folder beside the repository: `../shared` for a
/// clone, `../../shared` for a worktree under `wt/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/fixtures/c2pa"),
        root.join("../../shared/fixtures/c2pa"),
    ];
    let Some(dir) = candidates.iter().find(|d| d.is_dir()) else {
        panic!("fixture folder not found; tried {candidates:?}");
    };
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}

/// Builds a 64x64 PNG with an XMP packet (an iTXt chunk) whose `rdf:RDF`
/// contains `description`.
pub fn png_with_xmp(description: &str) -> Vec<u8> {
    let xmp = format!(
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{description}</rdf:RDF></x:xmpmeta>"#
    );
    let mut contents = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    contents.extend_from_slice(xmp.as_bytes());
    let png = image_bytes(ImageFormat::Png);
    let mut png = img_parts::png::Png::from_bytes(png.into()).unwrap();
    let chunk = img_parts::png::PngChunk::new(*b"iTXt", contents.into());
    png.chunks_mut().insert(1, chunk);
    png.encoder().bytes().to_vec()
}
