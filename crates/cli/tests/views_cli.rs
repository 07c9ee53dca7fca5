//! `chartroom view list|run|save` and `chartroom sql`, run as the binary over a small
//! generated population.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn chartroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A generated population (NDJSON) and a data directory it was imported into.
fn population(name: &str) -> (PathBuf, PathBuf) {
    let dir = testkit::temp_dir(name);
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    let generated =
        chartroom(&["generate", "--patients", "30", "--seed", "7", "--clean", "--out", path(&ndjson)]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let imported = chartroom(&["import", "--data", path(&data), path(&ndjson)]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    (ndjson, data)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lines_of(ndjson: &Path, resource_type: &str) -> Vec<Value> {
    std::fs::read_to_string(ndjson.join(format!("{resource_type}.ndjson")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn views_run_over_a_data_directory_and_over_files_alike() {
    let (ndjson, data) = population("cli-views-run");
    let listed = stdout(&chartroom(&["view", "list"]));
    for name in ["patients", "encounters", "diagnoses", "claim_lines"] {
        assert!(listed.lines().any(|l| l.starts_with(name)), "{listed}");
    }
    let from_store = chartroom(&["view", "run", "encounters", "--data", path(&data), "--format", "json"]);
    assert!(from_store.status.success(), "{}", stderr(&from_store));
    let from_files = chartroom(&["view", "run", "encounters", "--input", path(&ndjson), "--format", "json"]);
    let mut store_rows: Vec<Value> = serde_json::from_slice(&from_store.stdout).unwrap();
    let mut file_rows: Vec<Value> = serde_json::from_slice(&from_files.stdout).unwrap();
    let key = |row: &Value| row["id"].as_str().unwrap().to_string();
    store_rows.sort_by_key(key);
    file_rows.sort_by_key(key);
    assert_eq!(store_rows, file_rows);
    assert_eq!(store_rows.len(), lines_of(&ndjson, "Encounter").len());
    // One patient's rows only.
    let patient = lines_of(&ndjson, "Patient")[0]["id"].as_str().unwrap().to_string();
    let mine = chartroom(&[
        "view",
        "run",
        "encounters",
        "--data",
        path(&data),
        "--format",
        "ndjson",
        "--patient",
        &patient,
    ]);
    let mine = stdout(&mine);
    assert!(!mine.is_empty());
    assert!(
        mine.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["patient_id"] == patient.as_str())
    );
    // CSV and Parquet to a file.
    let out = data.join("patients.parquet");
    let parquet = chartroom(&[
        "view",
        "run",
        "patients",
        "--data",
        path(&data),
        "--format",
        "parquet",
        "--out",
        path(&out),
    ]);
    assert!(parquet.status.success(), "{}", stderr(&parquet));
    assert!(std::fs::read(&out).unwrap().starts_with(b"PAR1"));
    let csv = stdout(&chartroom(&["view", "run", "patients", "--input", path(&ndjson)]));
    assert_eq!(csv.lines().count(), 1 + lines_of(&ndjson, "Patient").len());
}

#[test]
fn an_invalid_view_exits_non_zero_saying_what_is_wrong() {
    let dir = testkit::temp_dir("cli-views-invalid");
    let view = dir.join("bad.json");
    std::fs::write(
        &view,
        r#"{"resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
            "select": [{"column": [{"name": "id", "path": "id"}, {"name": "bad name", "path": "gender"}]}]}"#,
    )
    .unwrap();
    let output = chartroom(&["view", "run", path(&view), "--input", path(&dir)]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("select[0].column[1].name"), "{}", stderr(&output));
    let unknown = chartroom(&["view", "run", "no_such_view", "--input", path(&dir)]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no_such_view"), "{}", stderr(&unknown));
}

#[test]
fn input_of_other_types_is_skipped_but_must_be_json() {
    let dir = testkit::temp_dir("cli-views-mixed");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Escaped, the type's name is not in the line as written: it is still read.
    std::fs::write(
        input.join("mixed.ndjson"),
        concat!(
            r#"{"resourceType": "Patient", "id": "p1", "gender": "female"}"#,
            "\n",
            r#"{"resourceType": "Device", "id": "d1"}"#,
            "\n",
            r#"{"resourceType": "Pati\u0065nt", "id": "p2", "gender": "male"}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.join("patients.csv");
    let output = chartroom(&["view", "run", "patients", "--input", path(&input), "--out", path(&out)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = std::fs::read_to_string(&out).unwrap();
    let ids: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(ids, ["p1", "p2"], "{csv}");
    std::fs::write(input.join("broken.ndjson"), "{\"resourceType\": \"Device\", broken\n").unwrap();
    let output = chartroom(&["view", "run", "patients", "--input", path(&input), "--out", path(&out)]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("broken.ndjson:1"), "{}", stderr(&output));
}

#[test]
fn sql_over_the_views_materializes_them_once_per_change_of_the_record() {
    let (ndjson, data) = population("cli-views-sql");
    let count =
        chartroom(&["sql", "--data", path(&data), "--format", "csv", "SELECT count(*) AS n FROM patients"]);
    assert!(count.status.success(), "{}", stderr(&count));
    let patients = lines_of(&ndjson, "Patient").len();
    assert_eq!(stdout(&count), format!("n\r\n{patients}\r\n"));
    assert!(stderr(&count).contains("patients:"), "{}", stderr(&count));
    // The record has not changed: the table is reused.
    let again =
        chartroom(&["sql", "--data", path(&data), "--format", "csv", "SELECT count(*) AS n FROM patients"]);
    assert!(!stderr(&again).contains("materialized"), "{}", stderr(&again));
    // A join of two views: the ICD-10-CM code of every principal diagnosis.
    let joined = chartroom(&[
        "sql",
        "--data",
        path(&data),
        "--format",
        "json",
        "SELECT ed.encounter_id, d.icd10cm_code FROM encounter_diagnoses ed JOIN diagnoses d ON d.id = ed.condition_id WHERE ed.rank = 1",
    ]);
    let rows: Vec<Value> = serde_json::from_slice(&joined.stdout).unwrap();
    let expected: usize = lines_of(&ndjson, "Encounter")
        .iter()
        .flat_map(|e| e["diagnosis"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["rank"] == 1)
        .count();
    assert_eq!(rows.len(), expected);
    assert!(rows.iter().all(|r| r["icd10cm_code"].as_str().is_some_and(|c| c.len() >= 3)));
    // A new patient changes the record: the table is rebuilt and counts it.
    let extra = data.join("extra.json");
    std::fs::write(&extra, r#"{"resourceType": "Patient", "id": "extra-1", "gender": "female"}"#).unwrap();
    assert!(chartroom(&["import", "--data", path(&data), path(&extra)]).status.success());
    let after =
        chartroom(&["sql", "--data", path(&data), "--format", "csv", "SELECT count(*) AS n FROM patients"]);
    assert_eq!(stdout(&after), format!("n\r\n{}\r\n", patients + 1));
    // SQL reads only; a bad statement is an error.
    let write = chartroom(&["sql", "--data", path(&data), "DELETE FROM patients"]);
    assert!(!write.status.success());
    let bad = chartroom(&["sql", "--data", path(&data), "SELEC nonsense"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("does not compile"), "{}", stderr(&bad));
}

#[test]
fn a_saved_view_is_known_to_run_and_sql() {
    let (_, data) = population("cli-views-save");
    let file = data.join("sexes.json");
    std::fs::write(
        &file,
        r#"{"resourceType": "ViewDefinition", "name": "sexes", "resource": "Patient", "status": "active",
            "select": [{"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "sex", "path": "gender"}]}]}"#,
    )
    .unwrap();
    let saved = chartroom(&["view", "save", path(&file), "--data", path(&data)]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(stdout(&chartroom(&["view", "list", "--data", path(&data)])).contains("sexes"));
    let counted = chartroom(&[
        "sql",
        "--data",
        path(&data),
        "--format",
        "csv",
        "SELECT count(*) FROM sexes WHERE sex IS NOT NULL",
    ]);
    assert!(counted.status.success(), "{}", stderr(&counted));
    let builtin = chartroom(&["view", "save", path(&file), "--data", path(&data), "--name", "patients"]);
    assert!(!builtin.status.success());
}

#[test]
fn view_export_writes_hive_partitions_by_type_and_month_holding_every_row() {
    let (ndjson, data) = population("view-export");
    let out = data.parent().unwrap().join("parquet");
    let exported =
        chartroom(&["view", "export", "--data", path(&data), "--out", path(&out), "--view", "encounters"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let root = out.join("encounters").join("resource_type=Encounter");
    let mut months: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    months.sort();
    assert!(!months.is_empty());
    for month in &months {
        let value = month.strip_prefix("month=").expect("month=YYYY-MM");
        assert!(
            value.len() == 7 && value.as_bytes()[4] == b'-' || value == "__HIVE_DEFAULT_PARTITION__",
            "{month}"
        );
        assert!(root.join(month).join("part-0.parquet").is_file(), "{month}");
    }
    // Every encounter is in the month of its period's start.
    let encounters = lines_of(&ndjson, "Encounter");
    let mut expected: Vec<String> = encounters
        .iter()
        .map(|e| format!("month={}", &e["period"]["start"].as_str().unwrap()[..7]))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(months, expected);
    // The partitions hold every row once: the report says so, and a rerun replaces them.
    let report = stdout(&exported);
    assert!(report.contains(&format!("{} rows", encounters.len())), "{report}");
    let again =
        chartroom(&["view", "export", "--data", path(&data), "--out", path(&out), "--view", "encounters"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let unknown =
        chartroom(&["view", "export", "--data", path(&data), "--out", path(&out), "--view", "nope"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no view is named nope"), "{}", stderr(&unknown));
}
