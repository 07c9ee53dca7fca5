//! The audit trail detects every kind of tampering done directly in the database file, at
//! the right position, and an untouched trail verifies.

use std::path::Path;

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

/// A trail of ten entries.
fn trail(name: &str) -> std::path::PathBuf {
    let dir = testkit::temp_dir(name);
    let log = AuditLog::open(&dir).unwrap();
    for n in 1..=10 {
        log.record(access(n));
    }
    log.flush();
    log.close();
    dir
}

fn sql(dir: &Path, statement: &str) {
    Connection::open(dir.join("privacy.sqlite")).unwrap().execute_batch(statement).unwrap();
}

#[test]
fn an_untouched_trail_verifies_and_keeps_growing() {
    let dir = trail("audit-clean");
    let result = audit::verify(&dir).unwrap();
    assert_eq!(result.entries, 10);
    assert!(result.problems.is_empty(), "{:?}", result.problems);
    // Reopened, the chain continues.
    let log = AuditLog::open(&dir).unwrap();
    log.record(access(11));
    log.flush();
    let result = audit::verify(&dir).unwrap();
    assert_eq!((result.entries, result.problems.len()), (11, 0));
    let events = audit::events_for_patient(&dir, "Patient/p1").unwrap();
    assert_eq!(events.len(), 3, "accesses 1, 5, 9 and 11 % 4 == 3 is not p1");
    assert_eq!(events[0]["resourceType"], "AuditEvent");
    assert_eq!(events[0]["agent"][0]["who"]["identifier"]["value"], "user1");
}

#[test]
fn an_edited_entry_is_reported_at_its_position() {
    let dir = trail("audit-edit");
    sql(&dir, "UPDATE audit SET user = 'nobody' WHERE seq = 5");
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Edited { seq: 5 }]);
    let dir = trail("audit-edit-event");
    sql(&dir, "UPDATE audit SET event = replace(event, 'Observation/o7', 'Observation/xx') WHERE seq = 7");
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Edited { seq: 7 }]);
}

#[test]
fn a_deleted_entry_is_reported_including_at_the_end() {
    let dir = trail("audit-delete");
    sql(&dir, "DELETE FROM audit WHERE seq = 4");
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Missing { from: 4, to: 4 }]);
    let dir = trail("audit-delete-tail");
    sql(&dir, "DELETE FROM audit WHERE seq >= 9");
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Missing { from: 9, to: 10 }]);
}

#[test]
fn an_inserted_entry_is_reported() {
    let dir = trail("audit-insert");
    sql(
        &dir,
        "INSERT INTO audit (seq, recorded, user, patients, event, prev, hash)
         SELECT 11, recorded, user, patients, event, hash, hash FROM audit WHERE seq = 10",
    );
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Inserted { seq: 11 }]);
    // In the middle: the entries after it renumbered to make room.
    let dir = trail("audit-insert-middle");
    sql(
        &dir,
        "UPDATE audit SET seq = seq + 100 WHERE seq >= 6; UPDATE audit SET seq = seq - 99 WHERE seq >= 106;
         INSERT INTO audit (seq, recorded, user, patients, event, prev, hash)
         SELECT 6, recorded, 'intruder', patients, event, prev, hash FROM audit WHERE seq = 5",
    );
    let problems = audit::verify(&dir).unwrap().problems;
    assert_eq!(problems[0], Tamper::Edited { seq: 6 }, "{problems:?}");
    assert_eq!(problems[1], Tamper::Moved { seq: 7, from: 6 }, "{problems:?}");
    assert!(
        problems.contains(&Tamper::Inserted { seq: 11 })
            || problems.contains(&Tamper::Moved { seq: 11, from: 10 }),
        "{problems:?}"
    );
}

#[test]
fn reordered_entries_are_reported_as_moved() {
    let dir = trail("audit-reorder");
    sql(
        &dir,
        "UPDATE audit SET seq = 100 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 100;",
    );
    assert_eq!(
        audit::verify(&dir).unwrap().problems,
        vec![Tamper::Moved { seq: 3, from: 4 }, Tamper::Moved { seq: 4, from: 3 }]
    );
}

#[test]
fn a_forged_end_of_the_chain_is_refused() {
    let dir = trail("audit-head");
    std::fs::write(dir.join("audit.head"), "3 0000 0000").unwrap();
    assert!(audit::verify(&dir).is_err());
}

#[test]
fn an_entry_moved_to_a_far_position_is_found_at_once() {
    let dir = trail("audit-far");
    // Moved past the end, to a position no search could reach by counting.
    sql(&dir, "UPDATE audit SET seq = 9000000000000000000 WHERE seq = 6");
    let problems = audit::verify(&dir).unwrap().problems;
    assert!(problems.contains(&Tamper::Missing { from: 6, to: 6 }), "{problems:?}");
    assert!(problems.contains(&Tamper::Moved { seq: 9_000_000_000_000_000_000, from: 6 }), "{problems:?}");
}

#[test]
fn a_trail_that_could_not_be_written_for_a_while_keeps_no_gap() {
    let dir = trail("audit-retry");
    // The table refuses writes for a moment, as a full disk or a held lock would.
    sql(&dir, "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END;");
    let log = AuditLog::open(&dir).unwrap();
    log.record(access(11));
    std::thread::sleep(std::time::Duration::from_millis(60));
    sql(&dir, "DROP TRIGGER refuse;");
    log.flush();
    log.record(access(12));
    log.flush();
    log.close();
    let result = audit::verify(&dir).unwrap();
    assert_eq!(result.entries, 12);
    assert!(result.problems.is_empty(), "{:?}", result.problems);
}
