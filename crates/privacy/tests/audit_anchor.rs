//! The end of the audit trail is anchored: entries removed from the end are reported whether
//! or not `audit.head` is removed with them.

use std::path::{Path, PathBuf};

use chartroom_privacy::{Access, AuditLog, Tamper, audit};
use rusqlite::Connection;

fn access(n: usize) -> Access {
    Access {
        user: format!("user{}", n % 3),
        role: "clinician".into(),
        interaction: "read".into(),
        action: "R",
        status: 200,
        patients: vec![format!("Patient/p{}", n % 4)],
        resources: vec![format!("Observation/o{n}")],
        ..Access::default()
    }
}

/// A trail of twenty entries, committed and closed.
fn trail(name: &str) -> PathBuf {
    let dir = testkit::temp_dir(name);
    let log = AuditLog::open(&dir).unwrap();
    for n in 1..=20 {
        log.record(access(n));
    }
    log.flush();
    log.close();
    let clean = audit::verify(&dir).unwrap();
    assert_eq!((clean.entries, clean.problems.len()), (20, 0), "{:?}", clean.problems);
    dir
}

fn sql(dir: &Path, statement: &str) {
    Connection::open(dir.join("privacy.sqlite")).unwrap().execute_batch(statement).unwrap();
}

/// Whether `verify` reports anything (a problem, or a refusal to vouch for the trail).
fn tampering_reported(dir: &Path) -> Result<(), String> {
    match audit::verify(dir) {
        Ok(result) if result.problems.is_empty() => {
            Err(format!("verify found nothing wrong with {} entries", result.entries))
        }
        Ok(_) | Err(_) => Ok(()),
    }
}

#[test]
fn a_truncated_tail_is_reported_while_the_head_file_remains() {
    let dir = trail("anchor-tail-head-kept");
    sql(&dir, "DELETE FROM audit WHERE seq > 15");
    tampering_reported(&dir).unwrap();
}

#[test]
fn a_truncated_tail_is_reported_when_the_head_file_is_deleted_too() {
    let dir = trail("anchor-tail-head-deleted");
    std::fs::remove_file(dir.join("audit.head")).unwrap();
    sql(&dir, "DELETE FROM audit WHERE seq > 15");
    tampering_reported(&dir).unwrap();
}

#[test]
fn both_anchors_removed_with_the_tail_are_reported_by_which_is_missing() {
    let dir = trail("anchor-both-gone");
    std::fs::remove_file(dir.join("audit.head")).unwrap();
    sql(&dir, "DELETE FROM audit WHERE seq > 15; DELETE FROM audit_anchor");
    let found = audit::verify(&dir).unwrap();
    let said: Vec<String> = found.problems.iter().map(ToString::to_string).collect();
    assert!(said.iter().any(|p| p.contains("audit.head is missing")), "{said:?}");
    assert!(said.iter().any(|p| p.contains("the database's anchor is missing")), "{said:?}");
}

#[test]
fn a_run_that_ended_without_closing_the_trail_is_recorded_at_the_next_start() {
    let dir = trail("anchor-unclean");
    // What a killed run leaves: its claim on the trail, never released.
    sql(&dir, "INSERT INTO audit_meta (name, value) VALUES ('running', 42), ('running-since', 0)");
    let log = AuditLog::open(&dir).unwrap();
    log.flush();
    log.close();
    let entries = audit::entries(&dir).unwrap();
    let (_, _, note) =
        entries.iter().find(|(_, _, a)| a.interaction == audit::UNCLEAN_SHUTDOWN).expect("a note");
    assert_eq!(note.user, "chartroom");
    assert!(note.outcome_text.as_deref().unwrap_or("").contains("last entry is 20"), "{note:?}");
    // A note, not tampering: the trail still verifies.
    assert!(audit::verify(&dir).unwrap().problems.is_empty());
    // A clean close leaves no claim: the next start notes nothing.
    let log = AuditLog::open(&dir).unwrap();
    log.close();
    let notes = audit::entries(&dir)
        .unwrap()
        .iter()
        .filter(|(_, _, a)| a.interaction == audit::UNCLEAN_SHUTDOWN)
        .count();
    assert_eq!(notes, 1);
}

#[test]
fn an_end_that_disagrees_with_its_anchors_at_start_stays_reported() {
    let dir = trail("anchor-mismatch-at-start");
    sql(&dir, "DELETE FROM audit WHERE seq > 15");
    // The next run finds it, says so in an entry, and anchors again where the trail ends.
    let log = AuditLog::open(&dir).unwrap();
    log.flush();
    log.close();
    let found = audit::verify(&dir).unwrap();
    assert!(
        found.problems.iter().any(|p| matches!(p, Tamper::FoundAtStart { detail, .. } if detail.contains("entries were removed from the end"))),
        "{:?}",
        found.problems
    );
}
