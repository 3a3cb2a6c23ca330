//! Helpers shared by the integration tests: running the real binary on a
//! temporary home, and finding the third-party fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary mmgen home and working directory, removed on drop.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `mmgen ARGS` with this sandbox's home, in its directory.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mmgen"))
            .args(args)
            .env("MMGEN_HOME", self.home())
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .output()
            .expect("run mmgen")
    }

    /// Runs `mmgen ARGS` and asserts that it succeeded.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "mmgen {args:?} failed:\n{}",
            text(&output)
        );
        output
    }
}

/// stdout and stderr of a run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The third-party fixtures folder, `shared/fixtures` beside the
/// repository. Panics with a clear message when it is missing, so that a
/// test never passes without its fixtures.
pub fn fixtures() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [
        root.join("../shared/fixtures"),
        root.join("../../shared/fixtures"),
    ] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "the fixtures folder shared/fixtures is missing beside {}; these tests need it",
        root.display()
    );
}

/// Parses JSON Lines output into values.
pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect()
}

impl Sandbox {
    /// Starts `mmgen ARGS` with this sandbox's home, in its directory,
    /// with stdout and stderr discarded.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_mmgen"))
            .args(args)
            .env("MMGEN_HOME", self.home())
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mmgen")
    }

    /// A new sandbox whose home is a copy of this one's.
    pub fn copy(&self) -> Sandbox {
        let copy = Sandbox::new();
        copy_dir(&self.home(), &copy.home());
        copy
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("list directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// SHA-256 of a file, in lowercase hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read file");
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
