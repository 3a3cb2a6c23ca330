//! `mmgen keys` through the real binary.

mod common;

use common::{Sandbox, stderr, stdout, text};

#[test]
fn init_creates_keys_once() {
    let sandbox = Sandbox::new();
    let first = sandbox.run_ok(&["keys", "init"]);
    assert!(
        stdout(&first).contains("not trusted by anyone else"),
        "{}",
        text(&first)
    );
    let before = std::fs::read(sandbox.home().join("keys/signer.key.pem")).unwrap();

    let second = sandbox.run(&["keys", "init"]);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        stderr(&second).contains("already exists"),
        "{}",
        text(&second)
    );
    let after = std::fs::read(sandbox.home().join("keys/signer.key.pem")).unwrap();
    assert_eq!(before, after, "keys init replaced an existing key");
}

#[test]
fn show_prints_no_private_key() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["keys", "init"]);
    let output = sandbox.run_ok(&["keys", "show", "--json"]);
    let out = stdout(&output);
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let secret = std::fs::read_to_string(sandbox.home().join("keys/watermark.key")).unwrap();
    assert!(
        !out.contains(secret.trim()),
        "keys show printed the watermark secret"
    );
    let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        value["watermark_key_id"].as_str().map(str::len),
        Some(16),
        "{value:#}"
    );
}

#[test]
fn show_without_keys_says_how_to_create_them() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["keys", "show"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("mmgen keys init"),
        "{}",
        text(&output)
    );
}
