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
