//! Releasing output files: written beside their destination, flushed,
//! then renamed into place, so that a reader never sees half a file.

use std::io::{self, Write};
use std::path::Path;

/// Returns the directory a file is written in ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` through a flushed temporary file in the same
/// directory. An existing file is replaced only with `overwrite`, and
/// then atomically; otherwise the call fails with `AlreadyExists`.
pub fn release(path: &Path, bytes: &[u8], overwrite: bool) -> io::Result<()> {
    let staged = stage(path, bytes)?;
    if overwrite {
        staged.persist(path).map_err(|e| e.error)?;
    } else {
        staged.persist_noclobber(path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file in the destination's directory and
/// flushes it to disk.
fn stage(path: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".mmgen-").suffix(".part");
    // Created with 0666 less the umask, as any new file, not tempfile's 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut file = builder.tempfile_in(parent_dir(path))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_never_replaces_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.png");
        release(&path, b"first", false).unwrap();
        let err = release(&path, b"second", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        release(&path, b"third", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "a temporary file was left behind");
    }
}
