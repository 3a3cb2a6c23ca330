//! `mmgen ledger` through the real binary, including edits made to the
//! SQLite file behind mmgen's back.

mod common;

use common::{Sandbox, json_lines, stderr, stdout, text};

#[test]
fn list_show_and_verify_after_generation() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&[
        "generate",
        "a cyan circle",
        "-n",
        "2",
        "-o",
        "c.png",
        "--seed",
        "2",
    ]);
    let records = json_lines(&sandbox.run_ok(&["ledger", "list", "--json"]));
    assert_eq!(records.len(), 2);
    let serial = records[0]["serial"].as_u64().unwrap().to_string();
    let shown = sandbox.run_ok(&["ledger", "show", &serial]);
    assert!(stdout(&shown).contains("a cyan circle"), "{}", text(&shown));
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

#[test]
fn edited_record_fails_verification() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&[
        "generate",
        "a cyan circle",
        "-n",
        "2",
        "-o",
        "c.png",
        "--seed",
        "2",
    ]);
    let db = rusqlite::Connection::open(sandbox.home().join("ledger.sqlite")).unwrap();
    // mmgen's triggers reject edits; someone with the file can drop them.
    db.execute_batch("DROP TRIGGER prompts_reject_update")
        .unwrap();
    let changed = db
        .execute(
            "UPDATE prompts SET prompt = 'something else' WHERE leaf_index = 1",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(3), "{}", text(&verified));
    assert!(
        stdout(&verified).contains("BROKEN at leaf 1"),
        "{}",
        text(&verified)
    );
}

#[test]
fn missing_ledger_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["ledger", "list"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("ledger"), "{}", text(&output));
}

#[test]
fn unknown_serial_is_a_clear_error() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a cyan circle", "-o", "c.png", "--seed", "2"]);
    let output = sandbox.run(&["ledger", "show", "999999"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(stderr(&output).contains("999999"), "{}", text(&output));
}

/// Generates two runs, so that the ledger has 3 records and 2 checkpoints.
fn two_runs() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&[
        "generate",
        "a red circle",
        "-n",
        "2",
        "-o",
        "a.png",
        "--seed",
        "1",
    ]);
    sandbox.run_ok(&["generate", "a blue square", "-o", "b.png", "--seed", "2"]);
    sandbox
}

/// Runs SQL on the sandbox's ledger with the immutability triggers
/// dropped, as someone editing the file behind mmgen's back would.
fn tamper(sandbox: &Sandbox, sql: &str) {
    let db = rusqlite::Connection::open(sandbox.home().join("ledger.sqlite")).unwrap();
    db.execute_batch(
        "DROP TRIGGER records_reject_update; DROP TRIGGER records_reject_delete;
         DROP TRIGGER tree_reject_update; DROP TRIGGER tree_reject_delete;
         DROP TRIGGER checkpoints_reject_update; DROP TRIGGER checkpoints_reject_delete;
         PRAGMA foreign_keys = OFF;",
    )
    .unwrap();
    db.execute_batch(sql).unwrap();
}

#[test]
fn verify_catches_every_kind_of_edit() {
    let original = two_runs();
    let intact = original.run(&["ledger", "verify"]);
    assert_eq!(intact.status.code(), Some(0), "{}", text(&intact));
    assert!(
        stdout(&intact).contains("ledger intact: 3 records, 2 checkpoints"),
        "{}",
        text(&intact)
    );

    let cases = [
        (
            "edited leaf",
            "UPDATE records SET leaf = substr(leaf, 1, length(leaf) - 1) || x'39' WHERE leaf_index = 1",
            "at leaf 1",
        ),
        (
            "deleted record",
            "DELETE FROM prompts WHERE leaf_index = 1; DELETE FROM records WHERE leaf_index = 1",
            "at leaf 1",
        ),
        (
            "reordered records",
            "UPDATE records SET leaf_index = -1 WHERE leaf_index = 0;
             UPDATE records SET leaf_index = 0 WHERE leaf_index = 2;
             UPDATE records SET leaf_index = 2 WHERE leaf_index = -1;",
            "at leaf 0",
        ),
        (
            "truncated records",
            "DELETE FROM prompts WHERE leaf_index = 2; DELETE FROM records WHERE leaf_index = 2",
            "records were removed",
        ),
        (
            "deleted checkpoint",
            "DELETE FROM checkpoints WHERE id = 2",
            "not covered by a signed checkpoint",
        ),
        (
            "edited checkpoint",
            "UPDATE checkpoints SET note = replace(note, char(10) || '3' || char(10), char(10) || '4' || char(10)) WHERE id = 2",
            "does not verify",
        ),
        (
            "truncated checkpoints",
            "DELETE FROM checkpoints",
            "not covered by a signed checkpoint",
        ),
    ];
    for (case, sql, expected) in cases {
        let sandbox = original.copy();
        tamper(&sandbox, sql);
        let verified = sandbox.run(&["ledger", "verify"]);
        assert_eq!(
            verified.status.code(),
            Some(3),
            "{case}: {}",
            text(&verified)
        );
        let out = stdout(&verified);
        assert!(out.contains("ledger BROKEN"), "{case}: {out}");
        assert!(
            out.contains(expected),
            "{case}: expected {expected:?} in {out}"
        );
    }
}

#[test]
fn receipt_checks_offline_with_public_key() {
    let sandbox = two_runs();
    let serial = json_lines(&sandbox.run_ok(&["ledger", "list", "--json"]))[2]["serial"]
        .as_u64()
        .unwrap()
        .to_string();
    sandbox.run_ok(&["ledger", "proof", &serial, "-o", "receipt.tlog-proof"]);
    sandbox.run_ok(&["ledger", "export", "--bundle", "bundle"]);
    let vkey = std::fs::read_to_string(sandbox.path("bundle/checkpoint.vkey")).unwrap();

    // A third party: another home with no keys, only the verifier key.
    let auditor = Sandbox::new();
    let receipt = sandbox.path("receipt.tlog-proof");
    let receipt = receipt.to_str().unwrap();
    let image = sandbox.path("b.png");
    let image = image.to_str().unwrap();
    let checked = auditor.run(&[
        "ledger",
        "check-proof",
        receipt,
        "--key",
        vkey.trim(),
        "--file",
        image,
    ]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert!(
        stdout(&checked).contains("receipt valid"),
        "{}",
        text(&checked)
    );
    assert!(
        stdout(&checked).contains("the file is the logged output"),
        "{}",
        text(&checked)
    );

    let other_image = sandbox.path("a-1.png");
    let other = auditor.run(&[
        "ledger",
        "check-proof",
        receipt,
        "--key",
        vkey.trim(),
        "--file",
        other_image.to_str().unwrap(),
    ]);
    assert_eq!(other.status.code(), Some(3), "{}", text(&other));

    let edited = std::fs::read_to_string(sandbox.path("receipt.tlog-proof"))
        .unwrap()
        .replacen("index 2", "index 1", 1);
    std::fs::write(auditor.path("edited.tlog-proof"), edited).unwrap();
    let rejected = auditor.run(&[
        "ledger",
        "check-proof",
        "edited.tlog-proof",
        "--key",
        vkey.trim(),
    ]);
    assert_eq!(rejected.status.code(), Some(3), "{}", text(&rejected));
    assert!(stdout(&rejected).contains("INVALID"), "{}", text(&rejected));
}

#[test]
fn consistency_proof_links_old_checkpoint() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a red circle", "-o", "a.png", "--seed", "1"]);
    let old = sandbox.run_ok(&["ledger", "checkpoint"]);
    std::fs::write(sandbox.path("old.txt"), &old.stdout).unwrap();
    sandbox.run_ok(&[
        "generate",
        "a blue square",
        "-n",
        "2",
        "-o",
        "b.png",
        "--seed",
        "2",
    ]);

    sandbox.run_ok(&["ledger", "consistency", "old.txt", "-o", "proof.txt"]);
    let checked = sandbox.run(&[
        "ledger",
        "check-proof",
        "proof.txt",
        "--old-checkpoint",
        "old.txt",
    ]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    assert!(
        stdout(&checked).contains("tree of 3 records extends the tree of 1"),
        "{}",
        text(&checked)
    );
    let missing_old = sandbox.run(&["ledger", "check-proof", "proof.txt"]);
    assert_eq!(missing_old.status.code(), Some(2), "{}", text(&missing_old));
    assert!(
        stderr(&missing_old).contains("--old-checkpoint"),
        "{}",
        text(&missing_old)
    );
}

#[test]
fn bundle_verifies_without_private_keys() {
    let sandbox = two_runs();
    let before = sandbox.run_ok(&["ledger", "checkpoint"]);
    std::fs::write(sandbox.path("kept.txt"), &before.stdout).unwrap();
    sandbox.run_ok(&["ledger", "export", "--bundle", "bundle"]);
    let again = sandbox.run(&["ledger", "export", "--bundle", "bundle"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        text(&again)
    );
    let bundle = sandbox.path("bundle");
    for name in [
        "ledger.sqlite",
        "records.jsonl",
        "checkpoints.jsonl",
        "checkpoint.txt",
        "checkpoint.vkey",
        "checkpoint.pub.pem",
        "ca.cert.pem",
        "signer.chain.pem",
        "README.txt",
        "SHA256SUMS",
    ] {
        assert!(
            bundle.join(name).is_file(),
            "{name} missing from the bundle"
        );
    }
    let all_text: String = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect();
    assert!(
        !all_text.contains("PRIVATE KEY"),
        "a private key is in the bundle"
    );

    let auditor = Sandbox::new();
    let bundle_arg = bundle.to_str().unwrap();
    let kept = sandbox.path("kept.txt");
    let verified = auditor.run(&[
        "ledger",
        "verify",
        "--bundle",
        bundle_arg,
        "--checkpoint",
        kept.to_str().unwrap(),
    ]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        stdout(&verified).contains("ledger intact: 3 records"),
        "{}",
        text(&verified)
    );
    assert!(
        stderr(&verified).contains("compare it with the one the provider"),
        "{}",
        text(&verified)
    );
    assert!(
        !auditor.home().join("keys").exists(),
        "verify must not create keys"
    );

    // A well-formed verifier key of the same origin but another key: every
    // checkpoint signature must fail.
    let stranger = Sandbox::new();
    stranger.run_ok(&["keys", "init"]);
    let shown = stranger.run_ok(&["keys", "show", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    let public_hex = shown["checkpoint_public_key"].as_str().unwrap();
    let public: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&public_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let vkey = std::fs::read_to_string(bundle.join("checkpoint.vkey")).unwrap();
    let origin = vkey.split('+').next().unwrap();
    let wrong = verifier_key(origin, &public);
    let rejected = auditor.run(&["ledger", "verify", "--bundle", bundle_arg, "--key", &wrong]);
    assert_eq!(rejected.status.code(), Some(3), "{}", text(&rejected));
    assert!(
        stdout(&rejected).contains("no signature by key"),
        "{}",
        text(&rejected)
    );

    let malformed = auditor.run(&[
        "ledger",
        "verify",
        "--bundle",
        bundle_arg,
        "--key",
        "name-only",
    ]);
    assert_eq!(malformed.status.code(), Some(2), "{}", text(&malformed));

    let edited = rusqlite::Connection::open(bundle.join("ledger.sqlite")).unwrap();
    edited
        .execute_batch(
            "DROP TRIGGER records_reject_update;
             UPDATE records SET leaf = substr(leaf, 1, length(leaf) - 1) || x'39' WHERE leaf_index = 2;",
        )
        .unwrap();
    drop(edited);
    let broken = auditor.run(&["ledger", "verify", "--bundle", bundle_arg]);
    assert_eq!(broken.status.code(), Some(3), "{}", text(&broken));
    assert!(
        stdout(&broken).contains("BROKEN at leaf 2"),
        "{}",
        text(&broken)
    );
}

/// Formats a verifier key text, `NAME+KEYID+base64(0x01 || key)`.
fn verifier_key(name: &str, public: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut encoded = vec![1u8];
    encoded.extend_from_slice(public);
    let mut preimage = name.as_bytes().to_vec();
    preimage.push(b'\n');
    preimage.extend_from_slice(&encoded);
    let digest = sha2::Sha256::digest(&preimage);
    let key_id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let key = base64::engine::general_purpose::STANDARD.encode(encoded);
    format!("{name}+{key_id:08x}+{key}")
}

#[test]
fn redacted_prompt_still_verifies() {
    let sandbox = two_runs();
    let records = json_lines(&sandbox.run_ok(&["ledger", "list", "--json"]));
    let serial = records[0]["serial"].as_u64().unwrap().to_string();
    let redacted = sandbox.run_ok(&["ledger", "redact", &serial]);
    assert!(
        stdout(&redacted).contains("redacted 1 prompts"),
        "{}",
        text(&redacted)
    );

    let shown = sandbox.run_ok(&["ledger", "show", &serial]);
    assert!(stdout(&shown).contains("(redacted)"), "{}", text(&shown));
    assert!(!stdout(&shown).contains("a red circle"), "{}", text(&shown));
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        stdout(&verified).contains("keep only the SHA-256"),
        "{}",
        text(&verified)
    );
}

#[test]
fn export_formats_and_time_filters() {
    let sandbox = two_runs();
    let jsonl = sandbox.run_ok(&["ledger", "export", "--format", "jsonl"]);
    let lines = json_lines(&jsonl);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "generation");
    assert_eq!(lines[0]["leaf_hash"].as_str().map(str::len), Some(64));

    sandbox.run_ok(&["ledger", "export", "--format", "csv", "-o", "records.csv"]);
    let csv = std::fs::read_to_string(sandbox.path("records.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[0].starts_with("leaf_index,serial,kind,created_at"),
        "{csv}"
    );
    assert!(rows[1].contains(",generation,"), "{csv}");

    let future = sandbox.run_ok(&[
        "ledger",
        "list",
        "--since",
        "2999-01-01T00:00:00Z",
        "--json",
    ]);
    assert!(json_lines(&future).is_empty());
    let past = sandbox.run_ok(&["ledger", "export", "--until", "2000-01-01T00:00:00Z"]);
    assert!(json_lines(&past).is_empty());
    let checkpoints = sandbox.run_ok(&["ledger", "checkpoint", "--all", "--json"]);
    let checkpoints = json_lines(&checkpoints);
    assert_eq!(checkpoints.len(), 2);
    assert_eq!(checkpoints[1]["tree_size"], 3);
    let none = sandbox.run(&["ledger", "checkpoint", "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
}

#[test]
fn concurrent_generations_share_one_ledger() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["keys", "init"]);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let output = format!("p{i}.png");
            let seed = i.to_string();
            sandbox.spawn(&[
                "generate",
                "a green star",
                "-n",
                "2",
                "-o",
                &output,
                "--seed",
                &seed,
            ])
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a generate process failed");
    }

    let records = json_lines(&sandbox.run_ok(&["ledger", "list", "--json"]));
    assert_eq!(records.len(), 8);
    let serials: std::collections::BTreeSet<u64> = records
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials.len(), 8, "a serial was used twice: {serials:?}");
    for i in 0..4 {
        for j in 1..=2 {
            assert!(sandbox.path(&format!("p{i}-{j}.png")).is_file());
        }
    }
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        stdout(&verified).contains("8 records, 4 checkpoints"),
        "{}",
        text(&verified)
    );
}

#[test]
fn outputs_never_replace_home_files() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a red circle", "-o", "a.png", "--seed", "1"]);
    let home = sandbox.home();
    let ledger = home.join("ledger.sqlite");
    let signer_key = home.join("keys").join("signer.key.pem");
    let ledger_before = std::fs::read(&ledger).unwrap();
    let key_before = std::fs::read(&signer_key).unwrap();
    let ledger_arg = ledger.to_str().unwrap();
    let key_arg = signer_key.to_str().unwrap();

    let attempts: [&[&str]; 6] = [
        &[
            "generate",
            "a blue square",
            "-o",
            ledger_arg,
            "--format",
            "png",
            "--force",
        ],
        &[
            "stamp",
            "a.png",
            "-o",
            ledger_arg,
            "--force",
            "--source-type",
            "digitalCapture",
        ],
        &[
            "stamp",
            "a.png",
            "-o",
            key_arg,
            "--force",
            "--source-type",
            "digitalCapture",
        ],
        &["ledger", "export", "-o", ledger_arg],
        &["ledger", "export", "--format", "csv", "-o", key_arg],
        &["ledger", "proof", "1", "-o", ledger_arg],
    ];
    for args in attempts {
        let output = sandbox.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            stderr(&output).contains("a file of the mmgen home"),
            "{args:?}: {}",
            text(&output)
        );
    }
    assert!(
        std::fs::read(&ledger).unwrap() == ledger_before,
        "the ledger changed"
    );
    assert!(
        std::fs::read(&signer_key).unwrap() == key_before,
        "the key changed"
    );
    let verified = sandbox.run(&["ledger", "verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

#[test]
fn consistency_proof_keeps_old_checkpoint() {
    let sandbox = Sandbox::new();
    sandbox.run_ok(&["generate", "a red circle", "-o", "a.png", "--seed", "1"]);
    let note = stdout(&sandbox.run_ok(&["ledger", "checkpoint"]));
    std::fs::write(sandbox.path("old.txt"), &note).unwrap();

    let output = sandbox.run(&["ledger", "consistency", "old.txt", "-o", "old.txt"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        stderr(&output).contains("is the old checkpoint itself"),
        "{}",
        text(&output)
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.path("old.txt")).unwrap(),
        note
    );
}

#[test]
fn edited_bundle_files_fail_verification() {
    let sandbox = two_runs();
    sandbox.run_ok(&["ledger", "export", "--bundle", "bundle"]);
    let intact = sandbox.run(&["ledger", "verify", "--bundle", "bundle"]);
    assert_eq!(intact.status.code(), Some(0), "{}", text(&intact));

    let edits: [(&str, fn(&str) -> String); 4] = [
        ("records.jsonl", |text| {
            text.replacen("a red circle", "a blue circle", 1)
        }),
        ("checkpoints.jsonl", |text| {
            text.lines().skip(1).map(|l| format!("{l}\n")).collect()
        }),
        ("checkpoint.txt", |text| text.replacen("\n3\n", "\n4\n", 1)),
        ("SHA256SUMS", |text| {
            text.replacen("  README.txt", "  README.TXT", 1)
        }),
    ];
    for (name, edit) in edits {
        let copy = sandbox.path(&format!("edited-{name}"));
        copy_bundle(&sandbox.path("bundle"), &copy);
        let path = copy.join(name);
        let original = std::fs::read_to_string(&path).unwrap();
        let changed = edit(&original);
        assert_ne!(changed, original, "{name}: the edit changed nothing");
        std::fs::write(&path, changed).unwrap();

        let verified = sandbox.run(&["ledger", "verify", "--bundle", copy.to_str().unwrap()]);
        assert_eq!(
            verified.status.code(),
            Some(3),
            "{name}: {}",
            text(&verified)
        );
        assert!(
            stdout(&verified).contains(&format!("bundle file {name}")),
            "{name}: {}",
            text(&verified)
        );
    }
}

fn copy_bundle(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn bundle_without_ledger_is_named() {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path("empty")).unwrap();
    for bundle in ["empty", "missing"] {
        let output = sandbox.run(&["ledger", "verify", "--bundle", bundle]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let err = stderr(&output);
        assert!(err.contains("is not an audit bundle"), "{err}");
        assert!(!err.contains("generate an image"), "{err}");
    }
}

#[test]
fn relative_paths_that_look_like_uris() {
    let sandbox = Sandbox::new();
    let generated = sandbox.run(&[
        "--home",
        "file:home",
        "generate",
        "a red circle",
        "-o",
        "a.png",
    ]);
    assert_eq!(generated.status.code(), Some(0), "{}", text(&generated));
    assert!(sandbox.path("file:home/ledger.sqlite").is_file());

    let exported = sandbox.run(&[
        "--home",
        "file:home",
        "ledger",
        "export",
        "--bundle",
        "file:bundle",
    ]);
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let verified = sandbox.run(&["ledger", "verify", "--bundle", "file:bundle"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}
