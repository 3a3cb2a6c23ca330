//! Tampering tests of `Ledger::audit`: each edit made to the SQLite file
//! behind mmgen's back must be found, at the record where it was made.

use std::path::Path;

use rusqlite::Connection;

use super::*;
use crate::ledger::test_support::{fill, sample_record, temp_ledger, test_signer};

/// A direct connection with every immutability trigger dropped, as a
/// person editing the file would have.
fn tamper(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open for tampering");
    conn.execute_batch(
        "DROP TRIGGER records_reject_update; DROP TRIGGER records_reject_delete;
         DROP TRIGGER tree_reject_update; DROP TRIGGER tree_reject_delete;
         DROP TRIGGER checkpoints_reject_update; DROP TRIGGER checkpoints_reject_delete;
         DROP TRIGGER prompts_reject_update;",
    )
    .expect("drop triggers");
    conn
}

fn audit(ledger: &Ledger) -> AuditReport {
    ledger.audit(&test_signer().verifier()).expect("audit runs")
}

fn first(report: &AuditReport) -> &AuditFault {
    report.first_fault().expect("the audit must find a fault")
}

/// Reads the leaf of `leaf_index` straight from the file.
fn leaf_of(conn: &Connection, leaf_index: i64) -> Vec<u8> {
    conn.query_row(
        "SELECT leaf FROM records WHERE leaf_index = ?1",
        [leaf_index],
        |row| row.get(0),
    )
    .expect("read leaf")
}

#[test]
fn intact_ledger_passes() {
    let (_dir, _path, mut ledger) = temp_ledger();
    let empty = audit(&ledger);
    assert!(empty.is_intact(), "{empty:?}");
    assert_eq!(empty.records, 0);

    let records = fill(&mut ledger, 7);
    let report = audit(&ledger);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 7);
    assert_eq!(report.checkpoints, 7);
    assert_eq!(report.latest_checkpoint_size, Some(7));
    let leaves: Vec<Hash> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(report.root, to_hex(&crate::ledger::merkle::root(&leaves)));
}

#[test]
fn edited_leaf_is_found_at_its_record() {
    let (_dir, path, mut ledger) = temp_ledger();
    let records = fill(&mut ledger, 6);
    let conn = tamper(&path);
    let mut leaf = leaf_of(&conn, 3);
    // The seed's last byte sits 8 + 4 + 8 + 4 + 4 + 8 + 4 + 5 bytes from
    // the end of a generation leaf with a 5-byte payload ("wm1:4").
    let seed_end = leaf.len() - (8 + 4 + 4 + 8 + 4 + 9);
    leaf[seed_end - 1] ^= 1;
    conn.execute("UPDATE records SET leaf = ?1 WHERE leaf_index = 3", [&leaf])
        .expect("edit leaf");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(3));
    assert_eq!(fault.serial, Some(records[3].serial));
    assert!(
        matches!(fault.problem, AuditProblem::TreeMismatch { level: 0, .. }),
        "{fault:?}"
    );
    let root_mismatch = report
        .faults
        .iter()
        .any(|f| matches!(f.problem, AuditProblem::RootMismatch { tree_size: 4, .. }));
    assert!(root_mismatch, "{report:?}");
}

#[test]
fn edited_leaf_with_rebuilt_tree_fails_checkpoint_root() {
    let (_dir, path, mut ledger) = temp_ledger();
    let serials = ledger.reserve_serials(6).expect("reserve");
    let signer = test_signer();
    let first_batch = serials[..3].iter().map(|&s| sample_record(s, s)).collect();
    ledger.append_batch(first_batch, &signer).expect("append");
    let second_batch = serials[3..].iter().map(|&s| sample_record(s, s)).collect();
    ledger.append_batch(second_batch, &signer).expect("append");

    // Change leaf 4 and store the tree recomputed from the changed leaves,
    // as a careful forger would; only the signed root can catch this.
    let conn = tamper(&path);
    let mut leaf = leaf_of(&conn, 4);
    let last = leaf.len() - 1;
    leaf[last] = b'9';
    conn.execute("UPDATE records SET leaf = ?1 WHERE leaf_index = 4", [&leaf])
        .expect("edit leaf");
    let mut frontier = Frontier::empty();
    let mut nodes = Vec::new();
    for index in 0..6 {
        let hash = crate::ledger::merkle::leaf_hash(&leaf_of(&conn, index));
        frontier.push(hash, &mut nodes);
    }
    for (number, hash) in nodes {
        conn.execute(
            "UPDATE tree SET hash = ?1 WHERE node = ?2",
            rusqlite::params![hash.as_slice(), number as i64],
        )
        .expect("rewrite tree");
    }

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(3), "{report:?}");
    assert_eq!(fault.checkpoint_id, Some(2));
    assert_eq!(
        fault.problem,
        AuditProblem::RootMismatch {
            tree_size: 6,
            first_suspect: 3,
            last_suspect: 5
        }
    );
    assert_eq!(report.faults.len(), 1, "{report:?}");
}

#[test]
fn deleted_record_is_missing_leaf() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 5);
    tamper(&path)
        .execute_batch(
            "DELETE FROM prompts WHERE leaf_index = 2; DELETE FROM records WHERE leaf_index = 2;",
        )
        .expect("delete row");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(2));
    assert_eq!(fault.problem, AuditProblem::MissingLeaf { next_stored: 3 });
    assert_eq!(report.records, 2);
}

#[test]
fn swapped_records_are_found() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 5);
    tamper(&path)
        .execute_batch(
            "PRAGMA foreign_keys = OFF;
             UPDATE records SET leaf_index = -1 WHERE leaf_index = 1;
             UPDATE records SET leaf_index = 1 WHERE leaf_index = 3;
             UPDATE records SET leaf_index = 3 WHERE leaf_index = -1;",
        )
        .expect("swap rows");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(1));
    assert!(
        matches!(
            fault.problem,
            AuditProblem::ColumnMismatch {
                column: "leaf_index",
                ..
            }
        ),
        "{fault:?}"
    );
}

#[test]
fn truncated_records_fail_newer_checkpoints() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 5);
    tamper(&path)
        .execute_batch(
            "DELETE FROM prompts WHERE leaf_index >= 3;
             DELETE FROM records WHERE leaf_index >= 3;
             DELETE FROM tree WHERE node >= 6;",
        )
        .expect("truncate");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(3));
    assert_eq!(fault.checkpoint_id, Some(4));
    assert_eq!(
        fault.problem,
        AuditProblem::Truncated {
            tree_size: 4,
            records: 3
        }
    );
}

#[test]
fn truncation_with_checkpoints_needs_a_kept_checkpoint() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 5);
    let kept = ledger.latest_checkpoint().expect("read").expect("exists");
    tamper(&path)
        .execute_batch(
            "DELETE FROM prompts WHERE leaf_index >= 3;
             DELETE FROM records WHERE leaf_index >= 3;
             DELETE FROM tree WHERE node >= 4;
             DELETE FROM checkpoints WHERE tree_size > 3;",
        )
        .expect("roll back");

    // NOTE: a consistent rollback of records, tree and checkpoints passes
    // on its own; a checkpoint kept outside the ledger exposes it.
    let alone = audit(&ledger);
    assert!(alone.is_intact(), "{alone:?}");
    let report = ledger
        .audit_with(&test_signer().verifier(), &[kept.note])
        .expect("audit");
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(3));
    assert_eq!(fault.checkpoint_id, None);
    assert!(
        matches!(fault.problem, AuditProblem::Truncated { tree_size: 5, .. }),
        "{fault:?}"
    );
}

#[test]
fn deleted_newest_checkpoint_leaves_records_uncovered() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 4);
    tamper(&path)
        .execute("DELETE FROM checkpoints WHERE id = 4", [])
        .expect("delete checkpoint");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(3));
    assert_eq!(
        fault.problem,
        AuditProblem::Uncovered {
            covered: 3,
            last: 3
        }
    );
}

#[test]
fn deleted_middle_checkpoint_is_missing() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 4);
    tamper(&path)
        .execute("DELETE FROM checkpoints WHERE id = 2", [])
        .expect("delete checkpoint");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.checkpoint_id, Some(3));
    assert_eq!(
        fault.problem,
        AuditProblem::CheckpointMissing {
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn edited_checkpoint_note_fails_signature() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 3);
    let conn = tamper(&path);
    let note: String = conn
        .query_row("SELECT note FROM checkpoints WHERE id = 2", [], |row| {
            row.get(0)
        })
        .expect("read note");
    let edited = note.replacen("\n2\n", "\n1\n", 1);
    conn.execute("UPDATE checkpoints SET note = ?1 WHERE id = 2", [edited])
        .expect("edit note");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.checkpoint_id, Some(2));
    assert!(
        matches!(&fault.problem, AuditProblem::CheckpointInvalid { reason } if reason.contains("does not verify")),
        "{fault:?}"
    );
}

#[test]
fn reordered_checkpoints_are_found() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 3);
    tamper(&path)
        .execute_batch(
            "UPDATE checkpoints SET id = 100 WHERE id = 1;
             UPDATE checkpoints SET id = 1 WHERE id = 3;
             UPDATE checkpoints SET id = 3 WHERE id = 100;",
        )
        .expect("swap checkpoints");

    let report = audit(&ledger);
    let order = report
        .faults
        .iter()
        .find(|f| matches!(f.problem, AuditProblem::CheckpointOrder { .. }));
    assert_eq!(
        order.map(|f| &f.problem),
        Some(&AuditProblem::CheckpointOrder {
            tree_size: 2,
            previous: 3
        }),
        "{report:?}"
    );
}

#[test]
fn checkpoint_size_column_must_match_note() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 2);
    tamper(&path)
        .execute("UPDATE checkpoints SET tree_size = 7 WHERE id = 2", [])
        .expect("edit size");

    let report = audit(&ledger);
    assert_eq!(
        first(&report).problem,
        AuditProblem::CheckpointSizeMismatch {
            stored: 7,
            signed: 2
        }
    );
}

#[test]
fn foreign_signature_fails_every_checkpoint() {
    let (_dir, _path, mut ledger) = temp_ledger();
    fill(&mut ledger, 2);
    let other = crate::ledger::CheckpointSigner::new(
        test_signer().origin(),
        ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    )
    .expect("valid origin");

    let report = ledger.audit(&other.verifier()).expect("audit");
    let invalid = report
        .faults
        .iter()
        .filter(|f| matches!(f.problem, AuditProblem::CheckpointInvalid { .. }))
        .count();
    assert_eq!(invalid, 2, "{report:?}");
}

#[test]
fn edited_tree_node_is_found() {
    let (_dir, path, mut ledger) = temp_ledger();
    let records = fill(&mut ledger, 4);
    // Node 2 is the subtree of leaves 0 and 1, completed by leaf 1.
    tamper(&path)
        .execute("UPDATE tree SET hash = zeroblob(32) WHERE node = 2", [])
        .expect("edit node");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(1));
    assert_eq!(fault.serial, Some(records[1].serial));
    assert_eq!(
        fault.problem,
        AuditProblem::TreeMismatch { node: 2, level: 1 }
    );
}

#[test]
fn edited_lookup_column_is_found() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 3);
    tamper(&path)
        .execute(
            "UPDATE records SET created_ns = created_ns + 1 WHERE leaf_index = 1",
            [],
        )
        .expect("edit time");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(1));
    assert!(
        matches!(
            fault.problem,
            AuditProblem::ColumnMismatch {
                column: "created_ns",
                ..
            }
        ),
        "{fault:?}"
    );
    assert_eq!(report.faults.len(), 1, "{report:?}");
}

#[test]
fn redacted_prompt_passes_and_changed_prompt_fails() {
    let (_dir, path, mut ledger) = temp_ledger();
    let records = fill(&mut ledger, 3);

    let deleted = ledger.redact_prompts(&[records[0].serial]).expect("redact");
    assert_eq!(deleted, 1);
    let redacted = audit(&ledger);
    assert!(redacted.is_intact(), "{redacted:?}");
    assert_eq!(redacted.prompts_absent, 1);
    let read = ledger.get(records[0].serial).expect("get").expect("exists");
    assert_eq!(read.generation().and_then(|g| g.prompt.clone()), None);
    assert_eq!(read.leaf_hash, records[0].leaf_hash);

    tamper(&path)
        .execute(
            "UPDATE prompts SET prompt = 'a blue circle' WHERE leaf_index = 2",
            [],
        )
        .expect("change prompt");
    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(2));
    assert!(
        matches!(fault.problem, AuditProblem::PromptMismatch { .. }),
        "{fault:?}"
    );
}

#[test]
fn redaction_by_time_keeps_newer_prompts() {
    let (_dir, _path, mut ledger) = temp_ledger();
    // Record i is created at 15:00:00 + i seconds.
    let records = fill(&mut ledger, 4);
    let until = records[2].created_at;

    let deleted = ledger.redact_prompts_before(until).expect("redact");
    assert_eq!(deleted, 2);
    let prompts: Vec<bool> = ledger
        .list(&Default::default())
        .expect("list")
        .iter()
        .map(|r| r.generation().is_some_and(|g| g.prompt.is_some()))
        .collect();
    assert_eq!(prompts, vec![false, false, true, true]);
    assert!(audit(&ledger).is_intact());
}

#[test]
fn negative_checkpoint_size_is_named() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 2);
    tamper(&path)
        .execute("UPDATE checkpoints SET tree_size = -1 WHERE id = 2", [])
        .expect("edit size");

    let report = audit(&ledger);
    let text = first(&report).problem.to_string();
    assert!(text.contains("tree size -1"), "{text}");
}

#[test]
fn negative_leaf_index_is_named() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 2);
    tamper(&path)
        .execute_batch(
            "PRAGMA foreign_keys = OFF;
             UPDATE records SET leaf_index = -5 WHERE leaf_index = 1;",
        )
        .expect("edit leaf index");

    let report = audit(&ledger);
    let text = first(&report).problem.to_string();
    assert!(text.contains("column leaf_index holds -5"), "{text}");
    assert!(!text.contains("Ok("), "{text}");
}

#[test]
fn undecodable_leaf_stops_the_scan() {
    let (_dir, path, mut ledger) = temp_ledger();
    fill(&mut ledger, 3);
    tamper(&path)
        .execute(
            "UPDATE records SET leaf = x'4d474c5202' WHERE leaf_index = 1",
            [],
        )
        .expect("damage leaf");

    let report = audit(&ledger);
    let fault = first(&report);
    assert_eq!(fault.leaf_index, Some(1));
    assert!(
        matches!(&fault.problem, AuditProblem::Unreadable { reason } if reason.contains("does not decode")),
        "{fault:?}"
    );
    assert_eq!(report.records, 1);
}

#[test]
fn many_checkpoints_check_in_chunks() {
    let (_dir, _path, mut ledger) = temp_ledger();
    let signer = test_signer();
    let serials = ledger.reserve_serials(4200).expect("reserve");
    // One checkpoint per record, more than one verification chunk.
    for serial in &serials {
        ledger
            .append(sample_record(*serial, *serial), &signer)
            .expect("append");
    }
    let report = audit(&ledger);
    assert!(report.is_intact(), "{:?}", report.first_fault());
    assert_eq!(report.checkpoints, 4200);
}
