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
