//! AuditEvent searches over the trail: each parameter finds exactly the entries it names,
//! pages walk the whole result once in order, and the index beside the chain can neither
//! hide an entry unnoticed nor make a search return the wrong one.

use std::path::Path;

use chartroom_privacy::audit_search::{Page, Query, read, search};
use chartroom_privacy::{Access, AuditLog, Error, Tamper, audit};
use rusqlite::Connection;
use serde_json::Value;

/// Access `n` of the trail: three users, four patients, a create every tenth, a refusal
/// every seventh.
fn access(n: usize) -> Access {
    let create = n.is_multiple_of(10);
    Access {
        user: format!("user{}", n % 3),
        role: "clinician".into(),
        interaction: if create { "create" } else { "read" }.into(),
        action: if create { "C" } else { "R" },
        status: if n.is_multiple_of(7) {
            403
        } else if create {
            201
        } else {
            200
        },
        patients: vec![format!("Patient/p{}", n % 4)],
        resources: vec![format!("Observation/o{n}")],
        ..Access::default()
    }
}

/// Entries 1..=250, then (after `between`) 251..=300 by `late-user`.
fn trail(name: &str) -> (std::path::PathBuf, String) {
    let dir = testkit::temp_dir(name);
    let log = AuditLog::open(&dir).unwrap();
    for n in 1..=250 {
        log.record(access(n));
    }
    log.flush();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let between = fhir::DateTime::now_utc().to_string();
    std::thread::sleep(std::time::Duration::from_millis(5));
    for n in 251..=300 {
        log.record(Access { user: "late-user".into(), ..access(n) });
    }
    log.flush();
    log.close();
    (dir, between)
}

fn run(dir: &Path, pairs: &[(&str, &str)]) -> Page {
    search(dir, &Query::parse(pairs.iter().copied()).unwrap()).unwrap()
}

fn seq(event: &Value) -> usize {
    audit::parse_event_id(event["id"].as_str().unwrap()).unwrap() as usize
}

/// Every entry of a search, page by page.
fn all(dir: &Path, pairs: &[(&str, &str)]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut with_cursor: Vec<(&str, &str)> = pairs.to_vec();
        if let Some(cursor) = &cursor {
            with_cursor.push(("_cursor", cursor));
        }
        let page = run(dir, &with_cursor);
        found.extend(page.events.iter().map(seq));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return found,
        }
    }
    panic!("paging does not end");
}

fn newest_first(filter: impl Fn(usize) -> bool) -> Vec<usize> {
    (1..=300).rev().filter(|n| filter(*n)).collect()
}

#[test]
fn each_parameter_finds_exactly_its_entries_page_by_page() {
    let (dir, between) = trail("audit-search-params");
    assert_eq!(all(&dir, &[("patient", "p1"), ("_count", "7")]), newest_first(|n| n % 4 == 1));
    assert_eq!(
        all(&dir, &[("patient", "Patient/p1,p2"), ("_count", "40")]),
        newest_first(|n| n % 4 == 1 || n % 4 == 2)
    );
    assert_eq!(all(&dir, &[("entity", "Observation/o17")]), vec![17]);
    assert_eq!(
        all(&dir, &[("agent", "user1"), ("action", "C"), ("_count", "3")]),
        newest_first(|n| n <= 250 && n % 3 == 1 && n % 10 == 0)
    );
    assert_eq!(
        all(&dir, &[("agent:identifier", "urn:chartroom:user|user2")]),
        newest_first(|n| n <= 250 && n % 3 == 2)
    );
    assert_eq!(all(&dir, &[("agent-name", "USER")]).len(), 250, "prefix, any case");
    assert_eq!(all(&dir, &[("agent-name:contains", "ate-us")]), newest_first(|n| n > 250));
    assert!(all(&dir, &[("agent-name:exact", "user")]).is_empty());
    assert_eq!(all(&dir, &[("outcome", "4"), ("subtype", "create")]), newest_first(|n| n % 70 == 0));
    assert_eq!(
        all(&dir, &[("action", "http://hl7.org/fhir/audit-event-action|C,U")]),
        newest_first(|n| n % 10 == 0)
    );
    assert!(all(&dir, &[("action", "http://elsewhere|C")]).is_empty());
    assert_eq!(all(&dir, &[("type", "rest"), ("_count", "1000")]).len(), 300);
    assert!(all(&dir, &[("type", "login")]).is_empty());

    // Dates: the 50 late entries are after `between`, the rest before; a day holds all.
    let after = format!("gt{between}");
    let before = format!("lt{between}");
    assert_eq!(all(&dir, &[("date", &after), ("_count", "20")]), newest_first(|n| n > 250));
    assert_eq!(all(&dir, &[("date", &before), ("patient", "p3")]), newest_first(|n| n <= 250 && n % 4 == 3));
    let today = &between[..10];
    assert_eq!(all(&dir, &[("date", today), ("_count", "1000")]).len(), 300);
    assert_eq!(
        all(&dir, &[("date", &format!("ge{today}")), ("date", &format!("lt{today}"))]),
        Vec::<usize>::new()
    );
    let tomorrow_or_later = format!("gt{today}");
    assert!(all(&dir, &[("date", &tomorrow_or_later)]).is_empty());

    // Oldest first, totals, ids.
    let mut oldest: Vec<usize> = newest_first(|n| n % 4 == 1);
    oldest.reverse();
    assert_eq!(all(&dir, &[("patient", "p1"), ("_sort", "date"), ("_count", "9")]), oldest);
    let counted = run(&dir, &[("patient", "p1"), ("_total", "accurate"), ("_count", "2")]);
    assert_eq!((counted.total, counted.events.len()), (Some(75), 2));
    assert_eq!(run(&dir, &[("_total", "accurate"), ("_count", "0")]).total, Some(300));
    // `_count=0` alone asks how many (as clients count); a page holding every match says it.
    assert_eq!(run(&dir, &[("_count", "0")]).total, Some(300));
    assert_eq!(run(&dir, &[("patient", "p1"), ("_count", "100")]).total, Some(75));
    assert_eq!(all(&dir, &[("_id", "audit-5,audit-9,audit-900,x"), ("patient", "p1")]), vec![9, 5]);
    let page = run(&dir, &[("_id", "audit-42")]);
    assert_eq!(page.events.len(), 1);
    assert_eq!(Some(&page.events[0]), read(&dir, "audit-42").unwrap().as_ref(), "read = search");
    assert_eq!(page.events[0]["entity"][0]["what"]["reference"], "Patient/p2");
    assert_eq!(page.events[0]["meta"]["versionId"], "1");
    assert!(read(&dir, "audit-301").unwrap().is_none());
    assert!(read(&dir, "audit-042").unwrap().is_none(), "one id per entry");
    // The accounting of disclosures is the same entries, oldest first.
    let disclosures: Vec<usize> =
        audit::events_for_patient(&dir, "Patient/p1").unwrap().iter().map(seq).collect();
    assert_eq!(disclosures, oldest);
}

#[test]
fn the_index_cannot_hide_or_misattribute_entries_unnoticed() {
    let (dir, _) = trail("audit-search-index");
    let sql = |statement: &str| {
        Connection::open(dir.join("privacy.sqlite")).unwrap().execute_batch(statement).unwrap()
    };
    assert!(audit::verify(&dir).unwrap().problems.is_empty());

    // Removing an entry's index rows hides it from searches: verify says so.
    sql("DELETE FROM audit_terms WHERE seq = 21 AND term = 'entity|Patient/p1'");
    assert!(!all(&dir, &[("patient", "p1")]).contains(&21));
    assert_eq!(audit::verify(&dir).unwrap().problems, vec![Tamper::Unindexed { seq: 21 }]);
    sql("DELETE FROM audit_agents WHERE name = 'late-user'");
    let problems = audit::verify(&dir).unwrap().problems;
    assert_eq!(problems.len(), 51, "every late-user entry too: {problems:?}");
    assert!(
        problems[0].to_string().contains("entry 21: its search index rows were removed or altered"),
        "{}",
        problems[0]
    );

    // Index rows pointed at other entries do not make a search return them.
    sql("UPDATE audit_terms SET seq = seq + 1 WHERE term = 'entity|Patient/p2'");
    assert_eq!(all(&dir, &[("patient", "p2")]), Vec::<usize>::new());
    let problems = audit::verify(&dir).unwrap().problems;
    assert_eq!(
        problems[..3],
        [Tamper::Unindexed { seq: 2 }, Tamper::Unindexed { seq: 3 }, Tamper::Unindexed { seq: 6 }]
    );

    // Rebuilt from the lines when gone (as for a trail written before the index existed).
    sql("DELETE FROM audit_terms; DELETE FROM audit_agents; DELETE FROM audit_meta;");
    assert_eq!(all(&dir, &[("patient", "p1")]), newest_first(|n| n % 4 == 1));
    assert_eq!(all(&dir, &[("patient", "p2")]), newest_first(|n| n % 4 == 2));
    assert_eq!(all(&dir, &[("agent-name", "late")]).len(), 50);
    assert!(audit::verify(&dir).unwrap().problems.is_empty());
    // And the writer goes on indexing after a rebuild.
    let log = AuditLog::open(&dir).unwrap();
    log.record(access(301));
    log.flush();
    assert_eq!(all(&dir, &[("entity", "Observation/o301")]), vec![301]);
}

#[test]
fn malformed_and_unsupported_searches_say_what_is_wrong() {
    let dir = testkit::temp_dir("audit-search-errors");
    let query = Query::parse([("_elements", "id"), ("patient:missing", "true")]);
    match query {
        Err(Error::Search { code, message }) => {
            assert_eq!(code, fhir::IssueType::NotSupported);
            assert!(message.contains("_elements, patient:missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(Query::parse([("date", "yesterday")]).unwrap_err().to_string().contains("date=yesterday"));
    // An empty trail answers an empty page.
    let page = search(&dir, &Query::parse([("patient", "p1")]).unwrap()).unwrap();
    assert!(page.events.is_empty() && page.next.is_none());
}

#[test]
fn a_search_indexes_what_the_busy_writer_left_behind() {
    // The writer indexes only while idle; entries committed but not yet indexed (more than
    // one chunk of them) must still be found, and the index must then verify.
    let dir = testkit::temp_dir("audit-index-behind");
    let log = AuditLog::open(&dir).unwrap();
    for n in 1..=4_500 {
        log.record(access(n));
    }
    log.flush();
    log.close();
    let connection = Connection::open(dir.join("privacy.sqlite")).unwrap();
    // As a busy writer leaves it: entries appended, the index behind.
    connection.execute("DELETE FROM audit_terms WHERE seq > 100", []).unwrap();
    connection.execute("UPDATE audit_meta SET value = 100 WHERE name = 'indexed'", []).unwrap();
    drop(connection);
    let expected = newest_first_upto(4_500, |n| n % 4 == 1);
    assert_eq!(all(&dir, &[("patient", "Patient/p1"), ("_count", "1000")]), expected);
    let verification = audit::verify(&dir).unwrap();
    assert!(verification.problems.is_empty(), "{:?}", verification.problems);
}

fn newest_first_upto(last: usize, filter: impl Fn(usize) -> bool) -> Vec<usize> {
    (1..=last).rev().filter(|&n| filter(n)).collect()
}

#[test]
fn a_trail_snapshot_reads_without_writing_and_finds_entries_the_index_has_not_reached() {
    let (dir, _) = trail("audit-snapshot");
    let expected: Vec<usize> =
        audit::events_for_patient(&dir, "Patient/p1").unwrap().iter().map(seq).collect();
    // As if the writer had not indexed the last 100 entries yet.
    let sql = |statement: &str| {
        Connection::open(dir.join("privacy.sqlite")).unwrap().execute_batch(statement).unwrap()
    };
    sql("DELETE FROM audit_terms WHERE seq > 200; UPDATE audit_meta SET value = 200 WHERE name = 'indexed';");
    let snapshot = chartroom_privacy::TrailSnapshot::open(&dir).unwrap();
    let found: Vec<usize> = snapshot.events_for_patient("Patient/p1").unwrap().iter().map(seq).collect();
    assert_eq!(found, expected);
    assert_eq!(snapshot.entries().unwrap().len(), 300);
    // Reading wrote nothing: the index is where it was left.
    let indexed: i64 = Connection::open(dir.join("privacy.sqlite"))
        .unwrap()
        .query_row("SELECT value FROM audit_meta WHERE name = 'indexed'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexed, 200);
    // Entries appended after the snapshot was taken are not in it.
    let log = AuditLog::open(&dir).unwrap();
    log.record(access(5));
    log.flush();
    assert_eq!(snapshot.entries().unwrap().len(), 300);
    log.close();
    drop(snapshot);
    let fresh = chartroom_privacy::TrailSnapshot::open(&dir).unwrap();
    assert!(fresh.entries().unwrap().len() > 300);

    let missing = dir.join("no-trail-here");
    let refused = chartroom_privacy::TrailSnapshot::open(&missing).err().unwrap();
    assert!(
        matches!(refused, Error::Invalid(ref message) if message.contains("has no audit trail")),
        "{refused}"
    );
    assert!(!missing.exists());
}
