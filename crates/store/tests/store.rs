//! Behaviour of the stores through the `Store` trait: each case on SQLite, and on PostgreSQL
//! where a test server is given (`CHARTROOM_TEST_POSTGRES`; required under `CI=true`).

use std::sync::Arc;

use chartroom_store::{
    Error, HistoryQuery, HistoryScope, PostgresStore, Precondition, PreparedResource, SqliteStore, Store,
    StoreOptions, WriteMethod, WriteOp, WriteOutcome, WriteUnit,
};
use fhir::Resource;
use serde_json::{Value, json};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chartroom-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh store of each backend this run tests.
fn stores(name: &str) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> =
        vec![("sqlite", Arc::new(SqliteStore::open(&temp_dir(name), StoreOptions::default()).unwrap()))];
    if let Some(options) = testkit::postgres_options(name) {
        stores.push(("postgres", Arc::new(PostgresStore::open(options).unwrap())));
    }
    stores
}

fn prepared(value: Value) -> PreparedResource {
    PreparedResource::new(&Resource::from_value(value).unwrap()).unwrap()
}

fn patient(id: &str, family: &str) -> PreparedResource {
    prepared(json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}))
}

fn update(resource: PreparedResource, if_match: Option<u64>) -> WriteUnit {
    WriteUnit::single(WriteOp::Update { resource, if_match: if_match.map(version) })
}

fn version(number: u64) -> Precondition {
    Precondition::Versions(vec![number])
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn every_write_is_a_new_version_and_old_versions_stay() {
    for (backend, store) in stores("versions") {
        eprintln!("every_write_is_a_new_version_and_old_versions_stay on {backend}");
        let first = store.submit(update(patient("p1", "Chalmers"), None)).wait_blocking().unwrap();
        assert!(matches!(first[0].outcome, WriteOutcome::Stored { version: 1, created: true, .. }));
        let second = store.submit(update(patient("p1", "Chalmerz"), None)).wait_blocking().unwrap();
        assert!(matches!(second[0].outcome, WriteOutcome::Stored { version: 2, created: false, .. }));

        let current = store.read("Patient", "p1").unwrap().unwrap();
        assert_eq!(current.version, 2);
        let json = body_json(current.body.as_ref().unwrap());
        assert_eq!(json["meta"]["versionId"], "2");
        assert_eq!(json["name"][0]["family"], "Chalmerz");
        let old = store.vread("Patient", "p1", 1).unwrap().unwrap();
        assert_eq!(body_json(old.body.as_ref().unwrap())["name"][0]["family"], "Chalmers");
        assert!(store.vread("Patient", "p1", 3).unwrap().is_none());
        assert!(store.read("Patient", "nope").unwrap().is_none());
        assert!(store.read("Observation", "p1").unwrap().is_none());
    }
}

#[test]
fn delete_writes_a_tombstone_and_keeps_history() {
    for (backend, store) in stores("delete") {
        eprintln!("delete_writes_a_tombstone_and_keeps_history on {backend}");
        store.submit(update(patient("p1", "A"), None)).wait_blocking().unwrap();
        let delete = |if_match: Option<Precondition>| {
            store
                .submit(WriteUnit::single(WriteOp::Delete {
                    resource_type: "Patient".into(),
                    id: "p1".into(),
                    if_match,
                }))
                .wait_blocking()
        };
        assert!(
            matches!(delete(Some(version(7))), Err(Error::VersionConflict { expected, .. }) if expected == "7")
        );
        let deleted = delete(Some(version(1))).unwrap();
        assert!(matches!(deleted[0].outcome, WriteOutcome::Deleted { version: 2, .. }));
        let current = store.read("Patient", "p1").unwrap().unwrap();
        assert!(current.is_deleted());
        assert_eq!(current.version, 2);
        assert!(store.vread("Patient", "p1", 1).unwrap().unwrap().body.is_some());
        // Deleting again changes nothing.
        assert_eq!(delete(None).unwrap()[0].outcome, WriteOutcome::NothingToDelete);
        assert_eq!(store.count_live().unwrap(), 0);
        // An update brings it back as version 3, reported as a (re)creation.
        let back = store.submit(update(patient("p1", "B"), None)).wait_blocking().unwrap();
        assert!(matches!(back[0].outcome, WriteOutcome::Stored { version: 3, created: true, .. }));
        let history = store
            .history(
                &HistoryScope::Instance { resource_type: "Patient".into(), id: "p1".into() },
                &HistoryQuery { count: 10, ..Default::default() },
            )
            .unwrap();
        let versions: Vec<(u64, WriteMethod)> =
            history.versions.iter().map(|v| (v.version, v.method)).collect();
        assert_eq!(
            versions,
            vec![(3, WriteMethod::UpdateCreate), (2, WriteMethod::Delete), (1, WriteMethod::UpdateCreate)]
        );
        assert_eq!(history.total, Some(3));
    }
}

#[test]
fn create_refuses_an_existing_id() {
    for (backend, store) in stores("create") {
        eprintln!("create_refuses_an_existing_id on {backend}");
        store.submit(WriteUnit::single(WriteOp::Create(patient("p1", "A")))).wait_blocking().unwrap();
        let again = store.submit(WriteUnit::single(WriteOp::Create(patient("p1", "B")))).wait_blocking();
        assert!(matches!(again, Err(Error::AlreadyExists(_))));
        assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 1);
    }
}

#[test]
fn a_failing_unit_leaves_no_trace_and_does_not_disturb_its_neighbours() {
    for (backend, store) in stores("atomic") {
        eprintln!("a_failing_unit_leaves_no_trace_and_does_not_disturb_its_neighbours on {backend}");
        store.submit(update(patient("p1", "A"), None)).wait_blocking().unwrap();
        // Submitted together so they share a commit: the middle unit fails on its last op.
        let ok_before = store.submit(update(patient("p2", "B"), None));
        let failing = store.submit(WriteUnit {
            ops: vec![
                WriteOp::Update { resource: patient("p3", "C"), if_match: None },
                WriteOp::Update { resource: patient("p1", "A2"), if_match: None },
                WriteOp::Update { resource: patient("p1", "A3"), if_match: Some(version(1)) },
            ],
        });
        let ok_after = store.submit(update(patient("p4", "D"), None));
        assert!(ok_before.wait_blocking().is_ok());
        assert!(matches!(failing.wait_blocking(), Err(Error::VersionConflict { .. })));
        assert!(ok_after.wait_blocking().is_ok());
        assert!(store.read("Patient", "p3").unwrap().is_none());
        assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 1);
        assert!(store.read("Patient", "p2").unwrap().is_some());
        assert!(store.read("Patient", "p4").unwrap().is_some());
        // The sequence has no holes visible to history: 3 versions in all.
        let all =
            store.history(&HistoryScope::System, &HistoryQuery { count: 100, ..Default::default() }).unwrap();
        assert_eq!(all.versions.len(), 3);
    }
}

#[test]
fn concurrent_conditional_updates_of_one_version_let_exactly_one_win() {
    for (backend, store) in stores("race") {
        eprintln!("concurrent_conditional_updates_of_one_version_let_exactly_one_win on {backend}");
        store.submit(update(patient("p1", "A"), None)).wait_blocking().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.submit(update(patient("p1", &format!("editor{i}")), Some(1))).wait_blocking()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert_eq!(results.iter().filter(|r| matches!(r, Err(Error::VersionConflict { .. }))).count(), 7);
        assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 2);
    }
}

#[test]
fn history_pages_by_sequence_and_filters_by_time() {
    for (backend, store) in stores("history") {
        eprintln!("history_pages_by_sequence_and_filters_by_time on {backend}");
        for i in 0..5 {
            store.submit(update(patient(&format!("p{i}"), "A"), None)).wait_blocking().unwrap();
        }
        store
            .submit(WriteUnit::single(WriteOp::Update {
                resource: prepared(json!({"resourceType": "Observation", "id": "o1", "status": "final",
                                          "code": {"text": "x"}})),
                if_match: None,
            }))
            .wait_blocking()
            .unwrap();
        let page = |scope: &HistoryScope, before_seq| {
            store.history(scope, &HistoryQuery { count: 2, before_seq, ..Default::default() }).unwrap()
        };
        let patients = HistoryScope::Type("Patient".into());
        let first = page(&patients, None);
        let ids: Vec<&str> = first.versions.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, vec!["p4", "p3"]);
        // A write after the first page does not shift the following pages.
        store.submit(update(patient("p9", "late"), None)).wait_blocking().unwrap();
        let second = page(&patients, first.next_before_seq);
        let ids: Vec<&str> = second.versions.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, vec!["p2", "p1"]);
        let third = page(&patients, second.next_before_seq);
        assert_eq!(third.versions.len(), 1);
        assert_eq!(third.next_before_seq, None);

        let system = page(&HistoryScope::System, None);
        assert_eq!(system.versions[0].id, "p9");
        assert_eq!(system.versions[1].resource_type, "Observation");

        let future = store
            .history(
                &HistoryScope::System,
                &HistoryQuery { count: 10, since: Some(i64::MAX / 2), ..Default::default() },
            )
            .unwrap();
        assert!(future.versions.is_empty());
        let latest = store.read("Patient", "p9").unwrap().unwrap().last_updated;
        let since = store
            .history(
                &HistoryScope::System,
                &HistoryQuery { count: 10, since: Some(latest), ..Default::default() },
            )
            .unwrap();
        assert!(since.versions.iter().all(|v| v.last_updated >= latest));
        assert!(since.versions.iter().any(|v| v.id == "p9"));
    }
}

#[test]
fn data_survives_reopen_and_the_directory_is_exclusive() {
    let dir = temp_dir("reopen");
    {
        let store = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
        store.submit(update(patient("p1", "A"), None)).wait_blocking().unwrap();
        assert!(SqliteStore::open(&dir, StoreOptions::default()).is_err());
    }
    let store = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 1);
    let next = store.submit(update(patient("p2", "B"), None)).wait_blocking().unwrap();
    assert!(matches!(next[0].outcome, WriteOutcome::Stored { version: 1, .. }));
    let all =
        store.history(&HistoryScope::System, &HistoryQuery { count: 10, ..Default::default() }).unwrap();
    let seqs: Vec<i64> = all.versions.iter().map(|v| v.seq).collect();
    assert_eq!(seqs, vec![2, 1]);
}

#[test]
fn writes_after_close_fail_cleanly() {
    let dir = temp_dir("closed");
    let store = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
    store.close();
    assert!(matches!(store.submit(update(patient("p1", "A"), None)).wait_blocking(), Err(Error::Closed)));
}

#[test]
fn if_match_star_and_lists() {
    for (backend, store) in stores("if-match-forms") {
        eprintln!("if_match_star_and_lists on {backend}");
        let put = |family: &str, if_match| {
            store
                .submit(WriteUnit::single(WriteOp::Update { resource: patient("p1", family), if_match }))
                .wait_blocking()
        };
        assert!(matches!(put("A", Some(Precondition::Exists)), Err(Error::VersionConflict { .. })));
        put("A", None).unwrap();
        put("B", Some(Precondition::Exists)).unwrap();
        assert!(put("C", Some(Precondition::Versions(vec![1, 3]))).is_err());
        put("C", Some(Precondition::Versions(vec![1, 2]))).unwrap();
        assert_eq!(store.read("Patient", "p1").unwrap().unwrap().version, 3);
    }
}

/// Injects a failure into the database from outside, the way a full disk or an I/O error
/// would strike the writer in the middle of a commit.
fn inject_failure(dir: &std::path::Path, resource_type: &str, action: &str) {
    let connection = rusqlite::Connection::open(dir.join("chartroom.db")).unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TRIGGER fail_{resource_type} BEFORE INSERT ON versions WHEN NEW.res_type = '{resource_type}'
             BEGIN SELECT RAISE({action}, 'injected failure'); END;"
        ))
        .unwrap();
}

fn basic(id: &str) -> PreparedResource {
    prepared(json!({"resourceType": "Basic", "id": id, "code": {"text": "x"}}))
}

#[test]
fn a_database_error_in_one_unit_fails_only_that_unit() {
    let dir = temp_dir("unit-error");
    let store = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
    inject_failure(&dir, "Basic", "ABORT");
    let before = store.submit(update(patient("p1", "A"), None));
    let failing = store.submit(WriteUnit::single(WriteOp::Update { resource: basic("b1"), if_match: None }));
    let after = store.submit(update(patient("p2", "B"), None));
    assert!(before.wait_blocking().is_ok());
    assert!(matches!(failing.wait_blocking(), Err(Error::Database(_))));
    assert!(after.wait_blocking().is_ok());
    assert!(store.read("Basic", "b1").unwrap().is_none());
    assert_eq!(store.count_live().unwrap(), 2);
}

#[test]
fn a_lost_transaction_fails_its_whole_group_and_the_writer_recovers() {
    let dir = temp_dir("lost-transaction");
    let store = SqliteStore::open(&dir, StoreOptions::default()).unwrap();
    store.submit(update(patient("p0", "Before"), None)).wait_blocking().unwrap();
    // RAISE(ROLLBACK) ends the whole transaction, as SQLite does on disk-full or I/O errors.
    inject_failure(&dir, "Basic", "ROLLBACK");
    let pending: Vec<_> = (0..20)
        .map(|i| {
            if i == 10 {
                store.submit(WriteUnit::single(WriteOp::Update { resource: basic("b1"), if_match: None }))
            } else {
                store.submit(update(patient(&format!("p{}", i + 1), "Group"), None))
            }
        })
        .collect();
    let results: Vec<_> = pending.into_iter().map(|p| p.wait_blocking()).collect();
    assert!(results[10].is_err());
    // Whatever was acknowledged is stored; whatever failed is not.
    for (i, result) in results.iter().enumerate() {
        if i == 10 {
            continue;
        }
        let stored = store.read("Patient", &format!("p{}", i + 1)).unwrap().is_some();
        assert_eq!(result.is_ok(), stored, "unit {i}: acknowledged={} stored={stored}", result.is_ok());
    }
    // The writer's counters were reloaded: later writes succeed and history is intact.
    store.submit(update(patient("after", "After"), None)).wait_blocking().unwrap();
    store.submit(update(patient("p0", "Changed"), None)).wait_blocking().unwrap();
    assert_eq!(store.read("Patient", "p0").unwrap().unwrap().version, 2);
    let all =
        store.history(&HistoryScope::System, &HistoryQuery { count: 100, ..Default::default() }).unwrap();
    let mut seqs: Vec<i64> = all.versions.iter().map(|v| v.seq).collect();
    let count = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), count, "no sequence number was reused");
}

#[test]
fn a_type_scan_sees_the_live_current_versions_of_that_type_only() {
    for (backend, store) in stores("scan-type") {
        eprintln!("a_type_scan_sees_the_live_current_versions_of_that_type_only on {backend}");
        for (id, family) in [("p1", "A"), ("p2", "B"), ("p3", "C")] {
            store.submit(update(patient(id, family), None)).wait_blocking().unwrap();
        }
        store.submit(update(patient("p2", "B2"), None)).wait_blocking().unwrap();
        store
            .submit(WriteUnit::single(WriteOp::Delete {
                resource_type: "Patient".into(),
                id: "p3".into(),
                if_match: None,
            }))
            .wait_blocking()
            .unwrap();
        store
            .submit(update(
                prepared(
                    json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}),
                ),
                None,
            ))
            .wait_blocking()
            .unwrap();
        let scan = |since: Option<i64>| {
            let mut seen = Vec::new();
            let visited = store
                .scan_type("Patient", since, &mut |resource_type, id, body| {
                    assert_eq!(resource_type, "Patient");
                    seen.push((
                        id.to_string(),
                        body_json(body)["name"][0]["family"].as_str().unwrap().to_string(),
                    ));
                    Ok(())
                })
                .unwrap();
            assert_eq!(visited as usize, seen.len());
            seen
        };
        assert_eq!(scan(None), [("p1".to_string(), "A".to_string()), ("p2".to_string(), "B2".to_string())]);
        // Only what changed since the update of p2.
        let p2 = store.read("Patient", "p2").unwrap().unwrap();
        assert_eq!(
            scan(Some(p2.last_updated)).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().last(),
            Some(&"p2")
        );
        assert!(scan(Some(p2.last_updated + 60_000)).is_empty());
    }
}

#[test]
fn a_replica_serves_searches_once_it_has_replayed_what_this_process_wrote() {
    let Some(options) = testkit::postgres_options("replica") else { return };
    let Some(replica) = testkit::postgres_replica_url() else { return };
    let store =
        PostgresStore::open(chartroom_store::PostgresOptions { replica_url: Some(replica), ..options })
            .unwrap();
    let by_id = |id: &str| chartroom_store::SearchQuery {
        resource_type: "Patient".into(),
        filters: vec![chartroom_store::search::Filter::Ids(vec![id.to_string()])],
        sort: Vec::new(),
        count: 10,
        cursor: None,
        total: chartroom_store::Total::None,
    };
    // Read your writes: every write is found by the search right after its acknowledgement,
    // whether the replica has replayed it yet or the search went to the primary.
    for i in 0..50 {
        let id = format!("r{i}");
        store.submit(update(patient(&id, "Replica"), None)).wait_blocking().unwrap();
        let page = store.search(&by_id(&id)).unwrap();
        assert_eq!(page.matches.len(), 1, "{id} written, then not found");
    }
    // Once the replica has replayed them, searches go to it (and still find them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let before = store.replica_searches();
    loop {
        assert_eq!(store.search(&by_id("r49")).unwrap().matches.len(), 1);
        if store.replica_searches() > before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replica never answered a search");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_search_for_no_ids_finds_nothing_on_every_backend() {
    for (backend, store) in stores("no-ids") {
        store.submit(update(patient("p1", "A"), None)).wait_blocking().unwrap();
        let query = chartroom_store::SearchQuery {
            resource_type: "Patient".into(),
            filters: vec![chartroom_store::search::Filter::Ids(Vec::new())],
            sort: Vec::new(),
            count: 10,
            cursor: None,
            total: chartroom_store::Total::Accurate,
        };
        let page = store.search(&query).unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(page.matches.is_empty(), "{backend}");
        assert_eq!(page.total, Some(0), "{backend}");
    }
}
