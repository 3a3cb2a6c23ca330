//! Images and fixture paths shared by the media tests.

use std::path::PathBuf;

use image::RgbImage;

/// Draws a smooth gradient with a fine pattern on top, so that lossy codecs have
/// both flat and detailed regions to get right.
pub(crate) fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let fine = if (x + y) % 2 == 0 { 16 } else { 0 };
        image::Rgb([
            ((x * 255) / width.max(1)) as u8,
            ((y * 255) / height.max(1)) as u8,
            (128 + fine) as u8,
        ])
    })
}

/// A third-party fixture folder (`photos`, `c2pa`), looked up beside the
/// clone and beside the worktree. Panics when it is missing, so tests that
/// need it fail rather than pass without it.
pub(crate) fn fixtures_dir(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/fixtures").join(name),
        root.join("../../shared/fixtures").join(name),
    ];
    let found = candidates.iter().find(|path| path.is_dir());
    match found {
        Some(path) => path.clone(),
        None => panic!("fixture folder shared/fixtures/{name} is missing; tried {candidates:?}"),
    }
}

/// Reads one file of a third-party fixture folder.
pub(crate) fn fixture_bytes(folder: &str, name: &str) -> Vec<u8> {
    let path = fixtures_dir(folder).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
