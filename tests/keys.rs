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

#[test]
fn organization_names_the_signer() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["keys", "init", "--organization", "Example News Ltd"]);
    let output = sandbox.run_ok(&["keys", "show", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let subject = value["signer_subject"].as_str().unwrap();
    assert!(subject.contains("O=Example News Ltd"), "{subject}");

    let bad = Sandbox::new();
    let output = bad.run(&["keys", "init", "--organization", ""]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("organisation name"),
        "{}",
        text(&output)
    );
}

#[test]
fn rotate_issues_a_new_signer() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["keys", "init"]);
    let show = |sandbox: &Sandbox| -> serde_json::Value {
        let output = sandbox.run_ok(&["keys", "show", "--json"]);
        serde_json::from_str(&stdout(&output)).expect("JSON")
    };
    let before = show(&sandbox);
    let output = sandbox.run_ok(&["keys", "rotate", "--lifetime-days", "30"]);
    assert!(
        stdout(&output).contains("keys/retired/"),
        "{}",
        text(&output)
    );
    let after = show(&sandbox);
    assert_ne!(after["signer_sha256"], before["signer_sha256"]);
    assert_eq!(after["ca_sha256"], before["ca_sha256"]);
    assert_eq!(after["watermark_key_id"], before["watermark_key_id"]);
    assert_eq!(after["signer_days_left"], 29);

    // Thirty days is inside the renewal warning window.
    let output = sandbox.run_ok(&[
        "generate",
        "a red square",
        "--sign",
        "-o",
        "w.png",
        "--seed",
        "1",
    ]);
    let err = stderr(&output);
    assert!(err.contains("expires in 29 days"), "{err}");
    assert!(err.contains("mmgen keys rotate"), "{err}");

    let output = sandbox.run(&["keys", "rotate", "--lifetime-days", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = sandbox.run(&["keys", "rotate", "--lifetime-days", "9000"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("outlive its CA"),
        "{}",
        text(&output)
    );
}

#[test]
fn rotation_never_breaks_a_concurrent_stamp() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a red square", "-o", "a.png", "--seed", "1"]);
    for round in 0..8 {
        let output = format!("stamped-{round}.png");
        let mut rotate = sandbox.spawn(&["keys", "rotate"]);
        let mut stamp = sandbox.spawn(&[
            "stamp",
            "a.png",
            "-o",
            &output,
            "--source-type",
            "digitalCapture",
        ]);
        let stamped = stamp.wait().unwrap();
        let rotated = rotate.wait().unwrap();
        assert!(
            stamped.success(),
            "round {round}: stamp failed during a rotation"
        );
        assert!(rotated.success(), "round {round}: rotate failed");
    }
    let shown = sandbox.run(&["keys", "show"]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
}
