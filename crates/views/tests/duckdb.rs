//! The Parquet a view run writes (`run_files`, as `chartroom view run observations --input DIR
//! --format parquet` does) read by real analytics tools: `tests/duckdb_check.py`, run with the
//! Python in `CHARTROOM_TEST_PYTHON` (a virtual environment with the script's pinned duckdb
//! and pyarrow), checks the column types with pyarrow and groups by `date_trunc('year',
//! effective)` and `year(birth_date)` in DuckDB without a cast. The expected groups are
//! computed here from the same view's JSON output, the dates as written.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chartroom_views::{ViewScope, find_view, run_files};
use fhir::datetime::civil_from_days;
use fhir::{DateTime, DateTimeKind};
use serde_json::{Value, json};
use sof::Format;

const PYTHON_VARIABLE: &str = "CHARTROOM_TEST_PYTHON";

/// The interpreter to run the check with; `None` to skip (never under `CI=true`).
fn python() -> Option<String> {
    match std::env::var(PYTHON_VARIABLE) {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{PYTHON_VARIABLE} is missing: under CI=true it must name a Python with the duckdb and \
             pyarrow pinned at the top of crates/views/tests/duckdb_check.py"
        ),
        _ => {
            println!("skipped: {PYTHON_VARIABLE} not set");
            None
        }
    }
}

fn observations() -> Vec<Value> {
    let observation = |id: &str, effective: Value| {
        let mut observation = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "issued": "2024-02-29T12:34:56.789012+01:00",
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
        if let (Some(target), Some(effective)) = (observation.as_object_mut(), effective.as_object()) {
            target.extend(effective.clone());
        }
        observation
    };
    vec![
        observation("o1", json!({"effectiveDateTime": "2019-06-01T10:00:00+02:00"})),
        // 2021 where it was taken, 2020 in UTC.
        observation("o2", json!({"effectiveDateTime": "2021-01-01T01:00:00+02:00"})),
        observation("o3", json!({"effectiveDateTime": "2020"})),
        observation("o4", json!({"effectiveDateTime": "2020-07"})),
        observation("o5", json!({"effectiveInstant": "2021-03-04T05:06:07.123456Z"})),
        // 2021 where it was taken, 2022 in UTC.
        observation("o6", json!({"effectivePeriod": {"start": "2021-12-31T23:30:00-01:00"}})),
        observation("o7", json!({"effectiveDateTime": "2021-05-05"})),
        observation("o8", json!({})),
        // From a file no one validated.
        observation("o9", json!({"effectiveDateTime": "last spring"})),
    ]
}

fn patients() -> Vec<Value> {
    let patient = |id: &str, birth: Option<&str>| {
        let mut patient = json!({"resourceType": "Patient", "id": id, "gender": "female"});
        if let Some(birth) = birth {
            patient["birthDate"] = json!(birth);
        }
        patient
    };
    let mut patients = vec![
        patient("p1", Some("1970-06-15")),
        patient("p2", Some("1970")),
        patient("p3", Some("1985-02")),
        patient("p4", None),
        patient("p5", Some("1985-12-31")),
        patient("p6", Some("unknown")),
    ];
    patients[0]["deceasedDateTime"] = json!("2020-03-04T10:00:00+02:00");
    patients[1]["deceasedDateTime"] = json!("2019-05-01");
    patients
}

fn write_ndjson(path: &Path, resources: &[Value]) {
    let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write input");
}

/// The view over `input` as Parquet in `out`, and its rows as the JSON output gives them.
fn run(view: &str, input: &Path, out: &Path) -> Vec<Value> {
    let view = find_view(view, None).expect("built-in view").view;
    let file = std::fs::File::create(out).expect("create Parquet file");
    run_files(&view, input, &ViewScope::default(), Format::Parquet, file).expect("Parquet run");
    let (json, _) =
        run_files(&view, input, &ViewScope::default(), Format::Json, Vec::new()).expect("JSON run");
    serde_json::from_slice(&json).expect("JSON rows")
}

/// Rows per value of `key`, as `[value, count]` pairs.
fn counts<K: Ord + Into<Value>>(keys: impl Iterator<Item = K>) -> Value {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0u64) += 1;
    }
    Value::Array(counts.into_iter().map(|(key, n)| json!([key.into(), n])).collect())
}

fn parse(text: Option<&str>) -> Option<DateTime> {
    text.and_then(|text| DateTime::parse(text, DateTimeKind::Partial).ok())
}

#[test]
fn duckdb_and_pyarrow_read_dates_natively() {
    let Some(python) = python() else { return };
    let dir = testkit::temp_dir("views-duckdb");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("input directory");
    write_ndjson(&input.join("Observation.ndjson"), &observations());
    write_ndjson(&input.join("Patient.ndjson"), &patients());
    let (observations_parquet, patients_parquet) =
        (dir.join("observations.parquet"), dir.join("patients.parquet"));
    let observation_rows = run("observations", &input, &observations_parquet);
    let patient_rows = run("patients", &input, &patients_parquet);

    // The year in UTC of the start of what the text names: the search bounds' arithmetic,
    // not the Parquet writer's.
    let effective_years = counts(observation_rows.iter().map(|row| {
        parse(row["effective"].as_str()).map(|value| {
            let (year, _, _) = civil_from_days(value.lower_bound_millis().div_euclid(86_400_000));
            format!("{year:04}-01-01 00:00:00+00")
        })
    }));
    let birth_years =
        counts(patient_rows.iter().map(|row| parse(row["birth_date"].as_str()).map(|d| d.year)));
    assert_eq!(
        effective_years,
        json!([
            [null, 2],
            ["2019-01-01 00:00:00+00", 1],
            ["2020-01-01 00:00:00+00", 3],
            ["2021-01-01 00:00:00+00", 2],
            ["2022-01-01 00:00:00+00", 1]
        ]),
        "the data cover what the check is for"
    );
    assert_eq!(birth_years, json!([[null, 2], [1970, 2], [1985, 2]]));
    let expected = dir.join("expected.json");
    let expected_json = json!({"effective_years": effective_years, "birth_years": birth_years});
    std::fs::write(&expected, expected_json.to_string()).expect("write expected");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duckdb_check.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([&observations_parquet, &patients_parquet, &expected])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({PYTHON_VARIABLE}): {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "duckdb_check.py failed:\n{stdout}{stderr}");
    println!("{stdout}");
}
