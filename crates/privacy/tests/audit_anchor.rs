//! The end of the audit trail is anchored: entries removed from the end are reported whether
//! or not `audit.head` is removed with them.

use std::path::{Path, PathBuf};

use chartroom_privacy::{Access, AuditLog, audit};
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
