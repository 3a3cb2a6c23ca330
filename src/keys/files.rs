//! File names inside `keys/` and atomic, non-clobbering writes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::KeyError;

/// PKCS#8 PEM private key of the local CA.
pub const CA_KEY: &str = "ca.key.pem";
/// PEM certificate of the local CA.
pub const CA_CERT: &str = "ca.cert.pem";
/// PKCS#8 PEM private key of the C2PA signer.
pub const SIGNER_KEY: &str = "signer.key.pem";
/// PEM chain of the C2PA signer: end-entity certificate first, then the CA.
pub const SIGNER_CHAIN: &str = "signer.chain.pem";
/// The 256-bit watermark secret as 64 hex digits.
pub const WATERMARK_KEY: &str = "watermark.key";
/// PKCS#8 PEM private key that signs ledger checkpoints.
pub const CHECKPOINT_KEY: &str = "checkpoint.key.pem";

/// Every file of a key set, in the order `init` writes them.
pub const ALL: [&str; 6] = [
    CA_KEY,
    CA_CERT,
    SIGNER_KEY,
    SIGNER_CHAIN,
    WATERMARK_KEY,
    CHECKPOINT_KEY,
];

/// Largest key file accepted when reading; real files are under 2 KiB.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Access mode of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Mode 0600: private keys and secrets.
    Private,
    /// Mode 0644: certificates.
    Public,
}

/// Writes `contents` to `dir/name` through a temporary file in `dir`,
/// then links it into place; an existing file is never replaced.
pub fn write_new(
    dir: &Path,
    name: &str,
    contents: &[u8],
    visibility: Visibility,
) -> Result<(), KeyError> {
    let path = dir.join(name);
    let io_err = |source| KeyError::Io {
        path: path.clone(),
        source,
    };

    // tempfile creates the file with mode 0600 on Unix.
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    temp.write_all(contents).map_err(io_err)?;
    #[cfg(unix)]
    if visibility == Visibility::Public {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::Permissions::from_mode(0o644);
        fs::set_permissions(temp.path(), mode).map_err(io_err)?;
    }
    temp.as_file().sync_all().map_err(io_err)?;

    temp.persist_noclobber(&path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Reads `dir/name` as UTF-8 text, rejecting files over 64 KiB.
pub fn read_text(dir: &Path, name: &str) -> Result<String, KeyError> {
    let path = dir.join(name);
    let io_err = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    let len = fs::metadata(&path).map_err(io_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(KeyError::Corrupt {
            path,
            reason: format!("file is {len} bytes, more than a key file can be"),
        });
    }
    let bytes = fs::read(&path).map_err(io_err)?;
    String::from_utf8(bytes).map_err(|_| KeyError::Corrupt {
        path: path.clone(),
        reason: "file is not UTF-8 text".into(),
    })
}

/// Returns the key files that exist in `dir`.
pub fn present(dir: &Path) -> Vec<PathBuf> {
    ALL.iter()
        .map(|name| dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        write_new(dir.path(), "a", b"first", Visibility::Private).unwrap();
        let second = write_new(dir.path(), "a", b"second", Visibility::Private);
        assert!(matches!(second, Err(KeyError::Io { .. })));
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"first");
    }

    #[cfg(unix)]
    #[test]
    fn write_new_sets_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_new(dir.path(), "k", b"x", Visibility::Private).unwrap();
        write_new(dir.path(), "c", b"x", Visibility::Public).unwrap();
        let mode = |n: &str| {
            fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("k"), 0o600);
        assert_eq!(mode("c"), 0o644);
    }

    #[test]
    fn read_text_rejects_huge_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("big"), vec![b'a'; 65 * 1024]).unwrap();
        let err = read_text(dir.path(), "big").unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
    }
}
