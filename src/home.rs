//! The mmgen home: the one directory that holds a provider's ledger, keys
//! and configuration.
//!
//! Resolution order: the `--home` flag, then `MMGEN_HOME`, then the
//! platform data directory (for example `~/.local/share/mmgen` on Linux).

use std::fs;
use std::path::{Path, PathBuf};

/// Errors while locating or creating the home directory.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `--home` nor `MMGEN_HOME` was given and the platform has no
    /// data directory for this user (no `HOME`, for instance).
    #[error("cannot find a data directory for mmgen; pass --home DIR or set MMGEN_HOME")]
    NoDataDir,
    /// The directory could not be created or its permissions set.
    #[error(
        "cannot create directory {path}: {source}; check that the parent exists and is writable, or pass another --home"
    )]
    Create {
        /// Directory that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
}

/// Paths inside one mmgen home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Resolves the home from an explicit path, else `MMGEN_HOME`, else the
    /// platform data directory. Nothing is created on disk.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, HomeError> {
        if let Some(path) = explicit {
            return Ok(Self::at(path));
        }
        if let Some(path) = std::env::var_os("MMGEN_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(Path::new(&path)));
        }
        let dirs = directories::ProjectDirs::from("", "", "mmgen").ok_or(HomeError::NoDataDir)?;
        Ok(Self::at(dirs.data_dir()))
    }

    /// A home rooted at `root`.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ledger database, `ledger.sqlite`.
    pub fn ledger_path(&self) -> PathBuf {
        self.root.join("ledger.sqlite")
    }

    /// The key directory, `keys/`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Returns the path of `keys/watermark.used`, the marker that the
    /// home's watermark key has marked outputs logged in its ledger.
    pub fn watermark_used_path(&self) -> PathBuf {
        self.keys_dir().join("watermark.used")
    }

    /// The optional configuration file, `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The optional trust list of C2PA root certificates, `trust-anchors.pem`.
    pub fn trust_anchors_path(&self) -> PathBuf {
        self.root.join("trust-anchors.pem")
    }

    /// Creates the home directory (mode 0700 on Unix) if it is missing.
    pub fn ensure(&self) -> Result<(), HomeError> {
        create_private_dir(&self.root)
    }

    /// Returns whether writing to `path` would replace a file that this
    /// home keeps: the ledger and its SQLite side files, a lock file, the
    /// configuration, the trust list, or anything under `keys/`.
    ///
    /// Both the path's directory and, when it exists, the path itself are
    /// resolved through symbolic links, because a rename replaces a link
    /// but a plain write follows it. A home that does not exist yet keeps
    /// no files.
    pub fn is_home_file(&self, path: &Path) -> bool {
        let Ok(root) = self.root.canonicalize() else {
            return false;
        };
        let keys = root.join("keys");
        resolved_forms(path).iter().any(|form| {
            let top_level_name = form
                .parent()
                .filter(|parent| *parent == root.as_path())
                .and_then(|_| form.file_name())
                .and_then(|name| name.to_str());
            form.starts_with(&keys) || top_level_name.is_some_and(|n| STATE_FILES.contains(&n))
        })
    }
}

/// Creates `path` and its parents; the last component gets mode 0700 on
/// Unix because it holds private keys and prompts.
pub fn create_private_dir(path: &Path) -> Result<(), HomeError> {
    let err = |source| HomeError::Create {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Ok(());
    }
    if path.exists() {
        return Err(err(std::io::Error::other(
            "it exists and is not a directory",
        )));
    }
    fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Files that mmgen keeps directly in the home directory.
const STATE_FILES: [&str; 8] = [
    "ledger.sqlite",
    "ledger.sqlite-wal",
    "ledger.sqlite-shm",
    "ledger.sqlite-journal",
    "ledger.lock",
    "keys.lock",
    "config.toml",
    "trust-anchors.pem",
];

/// Returns the absolute forms of `path` that a write can reach: the path
/// with every symbolic link resolved when it exists, and otherwise its
/// nearest existing ancestor resolved, joined with the rest of the path.
fn resolved_forms(path: &Path) -> Vec<PathBuf> {
    let mut forms = Vec::new();
    if let Ok(full) = path.canonicalize() {
        forms.push(full);
    }
    for ancestor in path.ancestors().skip(1) {
        let directory = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        if let Ok(resolved) = directory.canonicalize() {
            let rest = path.strip_prefix(ancestor).unwrap_or(path);
            forms.push(resolved.join(rest));
            break;
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins() {
        let home = Home::resolve(Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(home.root(), Path::new("/tmp/x"));
        assert_eq!(home.ledger_path(), Path::new("/tmp/x/ledger.sqlite"));
        assert_eq!(home.keys_dir(), Path::new("/tmp/x/keys"));
    }

    #[test]
    fn home_files_are_recognised() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(&tmp.path().join("home"));
        home.ensure().unwrap();
        fs::create_dir(home.keys_dir()).unwrap();
        fs::write(home.ledger_path(), b"ledger").unwrap();
        let outside = tmp.path().join("out.png");

        assert!(home.is_home_file(&home.ledger_path()));
        assert!(home.is_home_file(&home.root().join("ledger.sqlite-wal")));
        assert!(home.is_home_file(&home.keys_dir().join("signer.key.pem")));
        assert!(home.is_home_file(&home.keys_dir().join("retired/x/signer.key.pem")));
        assert!(home.is_home_file(&home.root().join("keys/../ledger.sqlite")));
        assert!(!home.is_home_file(&outside));
        assert!(!home.is_home_file(&home.root().join("picture.png")));
        assert!(!home.is_home_file(&home.root().join("sub/ledger.sqlite")));
    }

    #[cfg(unix)]
    #[test]
    fn home_file_behind_symlink_is_recognised() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(&tmp.path().join("home"));
        home.ensure().unwrap();
        fs::write(home.ledger_path(), b"ledger").unwrap();
        let link = tmp.path().join("link.png");
        std::os::unix::fs::symlink(home.ledger_path(), &link).unwrap();
        let linked_dir = tmp.path().join("linked-home");
        std::os::unix::fs::symlink(home.root(), &linked_dir).unwrap();

        assert!(home.is_home_file(&link));
        assert!(home.is_home_file(&linked_dir.join("ledger.sqlite")));
        assert!(home.is_home_file(&linked_dir.join("keys.lock")));
    }

    #[test]
    fn missing_home_has_no_files() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(&tmp.path().join("absent"));
        assert!(!home.is_home_file(&home.ledger_path()));
    }

    #[cfg(unix)]
    #[test]
    fn ensure_creates_private_dir() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(&tmp.path().join("a/b"));
        home.ensure().unwrap();
        let mode = fs::metadata(home.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
