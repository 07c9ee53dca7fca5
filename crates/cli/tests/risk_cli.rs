//! `chartroom risk comorbidity`, run as the binary: the raw mode over a CSV of diagnoses
//! (hand-computed from the published tables) and every patient's indices over a generated
//! data directory.

mod support;

use support::{chartroom, path, run};

use serde_json::Value;

#[test]
fn raw_mode_scores_a_csv_of_diagnoses() {
    let dir = testkit::temp_dir("cli-risk-raw");
    let input = dir.join("codes.csv");
    std::fs::write(&input, "id,code,age\na,I21,70\na,K703,70\nb,C78,30\nc,F001,80\nc,F002,80\n").unwrap();
    let charlson = chartroom(&[
        "risk",
        "comorbidity",
        "--input",
        path(&input),
        "--score",
        "charlson",
        "--weighting",
        "charlson",
        "--age",
    ]);
    let lines: Vec<&str> = charlson.lines().collect();
    assert_eq!(lines[0], "id,measure,value");
    assert_eq!(&lines[1..3], &["a,score,2", "a,age_adj,5"]);
    let survival: f64 = lines[3].rsplit(',').next().unwrap().parse().unwrap();
    assert!((survival - 0.983f64.powf((0.9f64 * 5.0).exp())).abs() < 1e-12, "{charlson}");
    assert!(charlson.contains("b,score,6\nb,age_adj,6\n") && charlson.contains("c,score,1\n"), "{charlson}");
    let frailty = chartroom(&["risk", "comorbidity", "--input", path(&input), "--score", "hfrs"]);
    assert!(frailty.contains("c,score,14.2\nc,hfrs_category,Intermediate"), "{frailty}");
    let elixhauser = chartroom(&[
        "risk",
        "comorbidity",
        "--input",
        path(&input),
        "--score",
        "elixhauser",
        "--format",
        "json",
    ]);
    let rows: Value = serde_json::from_str(&elixhauser).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    // Bad choices are refused, saying what is allowed.
    for args in [
        vec!["--score", "charlson", "--variant", "german"],
        vec!["--score", "elixhauser", "--weighting", "charlson"],
        vec!["--score", "charlson", "--weighting", "quan", "--age"],
        vec!["--score", "apgar"],
    ] {
        let mut all = vec!["risk", "comorbidity", "--input", path(&input)];
        all.extend(args.iter());
        let output = run(&all);
        assert!(!output.status.success(), "{all:?}");
    }
}

#[test]
fn every_patient_of_the_record_is_scored_as_of_a_date() {
    let dir = testkit::temp_dir("cli-risk-record");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&["generate", "--patients", "60", "--seed", "3", "--clean", "--out", path(&ndjson)]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let csv = chartroom(&["risk", "comorbidity", "--data", path(&data), "--as-of", "2026-01-01"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("patient,age,charlson,"), "{csv}");
    assert_eq!(lines.len(), 61, "one line per patient");
    let json: Value =
        serde_json::from_str(&chartroom(&["risk", "comorbidity", "--data", path(&data), "--format", "json"]))
            .unwrap();
    let all = json.as_array().unwrap();
    assert!(all.iter().any(|p| p["charlson"].as_f64().unwrap() > 0.0), "someone has a comorbidity");
    // Highest first; before anyone was born, nobody has anything.
    assert!(all.windows(2).all(|w| w[0]["charlson"].as_f64() >= w[1]["charlson"].as_f64()));
    let early = chartroom(&["risk", "comorbidity", "--data", path(&data), "--as-of", "1900-01-01"]);
    assert!(early.lines().skip(1).all(|l| l.split(',').nth(2) == Some("0")), "{early}");
    assert!(!run(&["risk", "comorbidity", "--data", path(&data), "--as-of", "yesterday"]).status.success());

    // How resources were used over the record's years, as JSON, CSV and HTML.
    let json: Value = serde_json::from_str(&chartroom(&[
        "report",
        "operations",
        "--data",
        path(&data),
        "--from",
        "2015-01-01",
        "--to",
        "2025-12-31",
    ]))
    .unwrap();
    let total = &json["total"];
    assert!(total["admissions"].as_u64().unwrap() > 0 && total["bedDays"].as_u64().unwrap() > 0, "{total}");
    assert_eq!(json["months"].as_array().unwrap().len(), 11 * 12);
    assert!(
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| !g["label"].as_str().unwrap().starts_with("Organization/")),
        "facilities by name"
    );
    let csv = chartroom(&[
        "report",
        "operations",
        "--data",
        path(&data),
        "--from",
        "2015-01-01",
        "--to",
        "2025-12-31",
        "--format",
        "csv",
        "--by",
        "service",
    ]);
    assert!(
        csv.starts_with("kind,label,admissions")
            && csv.contains("\nmonth,2024-06,")
            && csv.contains("\nservice,inpatient,"),
        "{csv}"
    );
    let html = chartroom(&[
        "report",
        "operations",
        "--data",
        path(&data),
        "--from",
        "2024-01-01",
        "--to",
        "2024-12-31",
        "--format",
        "html",
    ]);
    assert!(html.contains("<svg") && html.contains("Daily census") && !html.contains("<script"), "{html}");
    assert!(
        !run(&["report", "operations", "--data", path(&data), "--from", "2024-12-31", "--to", "2024-01-01"])
            .status
            .success()
    );
}

#[test]
fn the_readmission_model_is_trained_kept_and_ranks_the_worklist() {
    let dir = testkit::temp_dir("cli-risk-train");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&["generate", "--patients", "600", "--seed", "4", "--out", path(&ndjson)]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(ndjson.join("ground-truth/parameters.json")).unwrap())
            .unwrap();
    let as_of = parameters["asOf"].as_str().unwrap();
    // No model yet: the worklist says to train one.
    let missing = run(&["risk", "worklist", "--data", path(&data)]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("risk train"));
    let trained = chartroom(&["risk", "train", "--data", path(&data), "--as-of", as_of]);
    assert!(trained.contains("held-out AUC") && trained.contains("LACE AUC"), "{trained}");
    let model: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("risk/readmission-model.json")).unwrap())
            .unwrap();
    assert_eq!(model["asOf"], as_of);
    assert_eq!(model["coefficients"].as_array().unwrap().len(), model["features"].as_array().unwrap().len());
    assert_eq!(model["heldOut"]["calibration"].as_array().unwrap().len(), 10);
    let worklist =
        chartroom(&["risk", "worklist", "--data", path(&data), "--limit", "5", "--format", "json"]);
    let entries: Value = serde_json::from_str(&worklist).unwrap();
    let entries = entries.as_array().unwrap();
    assert!(!entries.is_empty() && entries.len() <= 5, "{worklist}");
    assert!(entries.windows(2).all(|w| w[0]["risk"].as_f64() >= w[1]["risk"].as_f64()));
    assert!(entries.iter().all(|e| e["factors"].as_array().unwrap().len() <= 3));
}
