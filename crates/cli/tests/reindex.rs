//! `chartroom reindex`: an index written by another build (or damaged) is detected, searches
//! refuse to run on it, and the command rebuilds it from the stored resources.

use std::process::Command;

use serde_json::json;
use store::{SearchQuery, SqliteStore, Store, StoreOptions};

fn chartroom(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn family_query(family: &str) -> SearchQuery {
    let key = fhir::search_parameters::search_parameters().get("Patient", "family").unwrap().key;
    SearchQuery {
        resource_type: "Patient".into(),
        filters: vec![store::search::Filter::Param {
            key,
            any: vec![store::search::Condition::String {
                value: family.into(),
                mode: store::search::StringMode::Prefix,
            }],
        }],
        sort: Vec::new(),
        count: 10,
        cursor: None,
        total: store::Total::None,
    }
}

#[test]
fn reindex_rebuilds_a_stale_or_damaged_index() {
    let dir = testkit::temp_dir("cli-reindex");
    let input = dir.join("Patient.ndjson");
    let lines: Vec<String> = ["Okafor", "Lindqvist", "Okafor"]
        .iter()
        .enumerate()
        .map(|(i, family)| {
            json!({"resourceType": "Patient", "id": format!("p{i}"), "name": [{"family": family}]})
                .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    assert!(chartroom(&["import", input.to_str().unwrap(), "--data", data_arg, "--quiet"]).status.success());

    // Damage the index and mark it as written by another format.
    {
        let db = rusqlite::Connection::open(data.join("chartroom.db")).unwrap();
        db.execute_batch(
            "DELETE FROM idx_string; UPDATE store_meta SET value = '0:0' WHERE key = 'index_format';",
        )
        .unwrap();
    }
    {
        let store = SqliteStore::open(&data, StoreOptions::default()).unwrap();
        assert!(store.index_is_stale());
        assert!(matches!(store.search(&family_query("okafor")), Err(store::Error::IndexStale)));
    }

    let output = chartroom(&["reindex", "--data", data_arg]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("reindexed 3 resources"), "{stdout}");

    let store = SqliteStore::open(&data, StoreOptions::default()).unwrap();
    assert!(!store.index_is_stale());
    let page = store.search(&family_query("okafor")).unwrap();
    let mut ids: Vec<String> = page.matches.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["p0", "p2"]);
}
