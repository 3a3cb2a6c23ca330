//! Input and output paths of the commands that read and write files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mmgen::home::Home;

/// Expands directories into the image files directly inside them, sorted.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image_name(p))
            .collect();
        found.sort();
        if found.is_empty() {
            anyhow::bail!("no PNG, JPEG or WebP files in {}", path.display());
        }
        files.extend(found);
    }
    Ok(files)
}

fn is_image_name(path: &Path) -> bool {
    let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
    matches!(extension.as_deref(), Some("png" | "jpg" | "jpeg" | "webp"))
}

/// Rejects an output path that would replace a file of the mmgen home,
/// such as the ledger or a key, even with `--force`.
pub fn check_not_home_file(home: &Home, output: &Path) -> anyhow::Result<()> {
    if home.is_home_file(output) {
        anyhow::bail!(
            "the output {} is a file of the mmgen home {} (its ledger, keys or settings); \
             choose an output path outside them",
            output.display(),
            home.root().display()
        );
    }
    Ok(())
}
