//! The views library as the API, the command line and the analyses call it: a run's scope and
//! limits, the failures each caller must tell apart, and the materialized tables kept current
//! by their stamps and never written by a query.

use std::sync::Arc;

use chartroom_views as views;
use serde_json::{Value, json};
use sof::Format;
use store::{PreparedResource, SqliteStore, Store, StoreOptions, WriteOp, WriteUnit};
use views::{Error, Tables, ViewScope, find_view, known_views, run_inline, run_view};

fn put(store: &SqliteStore, resource: Value) {
    let resource = fhir::Resource::from_value(resource).unwrap();
    let op = WriteOp::Update { resource: PreparedResource::new(&resource).unwrap(), if_match: None };
    store.submit(WriteUnit::single(op)).wait_blocking().unwrap();
}

fn store_with_patients(name: &str, patients: usize) -> (std::path::PathBuf, Arc<SqliteStore>) {
    let dir = testkit::temp_dir(name);
    let store = Arc::new(SqliteStore::open(&dir.join("data"), StoreOptions::default()).unwrap());
    for n in 0..patients {
        put(
            &store,
            json!({"resourceType": "Patient", "id": format!("p{n}"), "gender": "female", "birthDate": "1970-01-01"}),
        );
        put(
            &store,
            json!({"resourceType": "Condition", "id": format!("c{n}"), "subject": {"reference": format!("Patient/p{n}")},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}}),
        );
    }
    (dir, store)
}

fn ndjson_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn a_run_keeps_to_its_patient_and_its_limit() {
    let (_dir, store) = store_with_patients("views-run-scope", 5);
    let patients = find_view("patients", None).unwrap().view;
    let (all, run) =
        run_view(store.as_ref(), &patients, &ViewScope::default(), Format::Ndjson, Vec::new()).unwrap();
    assert_eq!((run.resources, run.rows), (5, 5));
    assert_eq!(ndjson_lines(&all).len(), 5);

    let one = ViewScope { patient: Some("p3".into()), ..Default::default() };
    let (rows, run) = run_view(store.as_ref(), &patients, &one, Format::Ndjson, Vec::new()).unwrap();
    assert_eq!(run.rows, 1);
    assert!(String::from_utf8_lossy(&rows).contains("p3"));

    let two = ViewScope { limit: Some(2), ..Default::default() };
    let (rows, run) = run_view(store.as_ref(), &patients, &two, Format::Ndjson, Vec::new()).unwrap();
    assert_eq!((run.rows, ndjson_lines(&rows).len()), (2, 2));
}

#[test]
fn inline_resources_of_other_types_and_patients_are_passed_over() {
    let view = find_view("patients", None).unwrap().view;
    let resources = [
        json!({"resourceType": "Patient", "id": "a"}),
        json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}),
        json!({"resourceType": "Patient", "id": "b"}),
    ];
    let refs: Vec<&Value> = resources.iter().collect();
    let scope = ViewScope { patient: Some("b".into()), ..Default::default() };
    let (rows, run) = run_inline(&view, &refs, &scope, Format::Ndjson, Vec::new()).unwrap();
    assert_eq!((run.resources, run.rows), (1, 1));
    assert!(String::from_utf8_lossy(&rows).contains("\"b\""));
}

#[test]
fn each_failure_says_whose_it_is() {
    assert!(matches!(find_view("no-such-view", None), Err(Error::Unknown(name)) if name == "no-such-view"));
    // A name that could escape the views folder is just unknown.
    assert!(matches!(find_view("../secrets", Some(std::path::Path::new("/tmp"))), Err(Error::Unknown(_))));
    assert!(matches!(
        views::view_definition(&json!({"resourceType": "ViewDefinition"})),
        Err(Error::Invalid(_))
    ));

    let (dir, store) = store_with_patients("views-run-deadline", 2);
    let patients = find_view("patients", None).unwrap().view;
    let past = ViewScope { deadline: Some(std::time::Instant::now()), ..Default::default() };
    std::thread::sleep(std::time::Duration::from_millis(2));
    let outcome = run_view(store.as_ref(), &patients, &past, Format::Csv, Vec::new());
    assert!(matches!(outcome, Err(Error::TooLong)), "a run past its deadline stops");

    // A saved view that no longer parses is the server's fault, not the caller's.
    let saved = dir.join("views");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("broken.json"), b"{not json").unwrap();
    assert!(matches!(find_view("broken", Some(&saved)), Err(Error::Broken(_))));
    assert!(known_views(Some(&saved)).iter().all(|v| v.name != "broken"), "listing leaves it out");
}

#[test]
fn tables_are_rebuilt_only_when_the_record_changed_and_queries_cannot_write() {
    let (dir, store) = store_with_patients("views-tables", 3);
    let known = known_views(None);
    let mut tables = Tables::open(&views::tables::tables_path(&dir)).unwrap();
    let query = "SELECT count(*) AS n FROM patients";

    let rebuilt = tables.refresh_for_query(query, &known, store.as_ref(), false).unwrap();
    assert_eq!(rebuilt.iter().map(|r| (r.view.as_str(), r.rows)).collect::<Vec<_>>(), [("patients", 3)]);
    assert!(tables.refresh_for_query(query, &known, store.as_ref(), false).unwrap().is_empty(), "current");
    assert_eq!(tables.refresh_for_query(query, &known, store.as_ref(), true).unwrap().len(), 1, "forced");
    let answer = tables.query(query).unwrap();
    assert_eq!(answer.columns, ["n"]);
    assert_eq!(answer.rows, [[views::tables::Value::Integer(3)]]);

    put(&store, json!({"resourceType": "Patient", "id": "p-new"}));
    let rebuilt = tables.refresh_for_query(query, &known, store.as_ref(), false).unwrap();
    assert_eq!(rebuilt.first().map(|r| r.rows), Some(4), "a new commit makes the table stale");

    for statement in ["DELETE FROM patients", "PRAGMA query_only = OFF", "DROP TABLE _materialized"] {
        let _ = tables.query(statement);
        assert_eq!(tables.query(query).unwrap().rows, [[views::tables::Value::Integer(4)]], "{statement}");
    }
    assert!(matches!(tables.query("DELETE FROM patients"), Err(Error::Query(_))));
    assert!(matches!(tables.query("SELEC nonsense"), Err(Error::Query(_))));
    assert!(
        tables.refresh_for_query(query, &known, store.as_ref(), false).unwrap().is_empty(),
        "stamps intact"
    );
}
