//! `chartroom surveil`, `chartroom survival` and `chartroom cohort`, run as the binary: raw
//! series and survival tables from CSV (R's and lifelines' names and output), and the
//! reports over a generated data directory (JSON and HTML).

mod support;

use support::{chartroom, path, run};

use serde_json::Value;

fn refused(args: &[&str]) -> String {
    let output = run(args);
    assert!(!output.status.success(), "chartroom {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_series_is_judged_as_r_judges_it_with_r_defaults() {
    let Some(dir) = testkit::shared_dir("data/surveillance") else { return };
    let input = dir.join("series_salmonella_agona_weekly.csv");
    let expected = std::fs::read_to_string(dir.join("salmonella_agona_expected.csv")).unwrap();
    // R's rows for EARS C1 with its defaults: t, upperbound, alarm.
    let r_rows: Vec<(usize, f64, u8)> = expected
        .lines()
        .filter(|l| l.contains("\"earsC_C1\",\"default("))
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            let n = fields.len();
            // series, method, params (with commas), t, observed, upperbound, alarm, then 6 more.
            (fields[n - 10].parse().unwrap(), fields[n - 8].parse().unwrap(), fields[n - 7].parse().unwrap())
        })
        .collect();
    assert!(r_rows.len() > 300, "{} rows of R's output", r_rows.len());
    let out = chartroom(&["surveil", "series", "--input", path(&input), "--method", "ears-c1"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("t,observed,upperbound,alarm"));
    let ours: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(ours.len(), r_rows.len());
    for (row, (t, bound, alarm)) in ours.iter().zip(&r_rows) {
        assert_eq!(row[0].parse::<usize>().unwrap(), *t);
        assert!(
            (row[2].parse::<f64>().unwrap() - bound).abs() < 1e-9,
            "t={t}: {} against R's {bound}",
            row[2]
        );
        assert_eq!(row[3].parse::<u8>().unwrap(), *alarm, "t={t}");
    }
    // --range judges only those periods; every control parameter is a flag.
    let out = chartroom(&[
        "surveil",
        "series",
        "--input",
        path(&input),
        "--method",
        "ears-c2",
        "--range",
        "100:104",
        "--min-sigma",
        "0.5",
        "--alpha",
        "0.05",
    ]);
    assert_eq!(out.lines().count(), 6);
    let out = chartroom(&[
        "surveil",
        "series",
        "--input",
        path(&input),
        "--method",
        "cusum",
        "--range",
        "105:312",
        "--trans",
        "rossi",
    ]);
    assert_eq!(out.lines().count(), 209);
    let out = chartroom(&[
        "surveil",
        "series",
        "--input",
        path(&input),
        "--method",
        "farrington",
        "--b",
        "4",
        "--no-periods",
        "10",
        "--past-weeks-not-included",
        "26",
        "--p-threshold-trend",
        "1",
        "--threshold-method",
        "nbPlugin",
        "--alpha",
        "0.1",
    ]);
    assert!(out.lines().count() > 10);
    // Bad input is refused saying what and where.
    assert!(
        refused(&["surveil", "series", "--input", path(&input), "--method", "ears-c1", "--column", "cases"])
            .contains("no column 'cases'")
    );
    assert!(
        refused(&["surveil", "series", "--input", path(&input), "--method", "ears-c1", "--k", "2"])
            .contains("--k")
    );
    assert!(
        refused(&["surveil", "series", "--input", path(&input), "--method", "ears-c1", "--range", "0:5"])
            .contains("range")
    );
    assert!(refused(&["surveil", "series", "--input", path(&input), "--method", "nope"]).contains("nope"));
}

#[test]
fn survival_tables_answer_with_lifelines_names() {
    let dir = testkit::temp_dir("cli-survival");
    let input = dir.join("follow-up.csv");
    // Arm a: events at 1 and 2, censored at 3; arm b: event at 2, censored at 4 and 5.
    std::fs::write(&input, "time,died,arm,age\n1,1,a,60\n2,1,a,70\n3,0,a,65\n2,1,b,50\n4,0,b,72\n5,0,b,58\n")
        .unwrap();
    let km: Value = serde_json::from_str(&chartroom(&[
        "survival",
        "km",
        "--input",
        path(&input),
        "--duration",
        "time",
        "--event",
        "died",
    ]))
    .unwrap();
    assert_eq!(km["timeline"], serde_json::json!([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    let s = km["survival_function"].as_array().unwrap();
    // 6 at risk: 5/6 after t=1, then 5/6 * 3/5 = 1/2 after t=2.
    assert!(
        (s[1].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-12 && (s[2].as_f64().unwrap() - 0.5).abs() < 1e-12,
        "{km}"
    );
    // The median is the first point at or below one half, as lifelines finds it.
    let first_half = km["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .zip(s)
        .find(|(_, s)| s.as_f64().unwrap() <= 0.5)
        .map(|(t, _)| t.clone());
    assert_eq!(Some(km["median_survival_time"].clone()), first_half.or(Some(Value::from("inf"))));
    assert!(km["confidence_interval"]["lower"].is_array());
    let grouped: Value = serde_json::from_str(&chartroom(&[
        "survival",
        "km",
        "--input",
        path(&input),
        "--duration",
        "time",
        "--event",
        "died",
        "--group",
        "arm",
    ]))
    .unwrap();
    assert!(grouped["groups"]["a"]["survival_function"].is_array() && grouped["groups"]["b"].is_object());
    let test: Value = serde_json::from_str(&chartroom(&[
        "survival",
        "logrank",
        "--input",
        path(&input),
        "--duration",
        "time",
        "--event",
        "died",
        "--group",
        "arm",
    ]))
    .unwrap();
    assert!(
        test["test_statistic"].as_f64().unwrap() > 0.0 && test["p_value"].as_f64().unwrap() < 1.0,
        "{test}"
    );
    let cox: Value = serde_json::from_str(&chartroom(&[
        "survival",
        "cox",
        "--input",
        path(&input),
        "--duration",
        "time",
        "--event",
        "died",
        "--covariates",
        "age",
        "--format",
        "json",
    ]))
    .unwrap();
    for key in
        ["params", "standard_errors", "hazard_ratios", "p_values", "concordance_index", "log_likelihood"]
    {
        assert!(!cox[key].is_null(), "{key} missing: {cox}");
    }
    assert!(cox["params"]["age"].is_number());
    assert!(
        refused(&["survival", "logrank", "--input", path(&input), "--duration", "time", "--event", "died"])
            .contains("--group")
    );
    assert!(
        refused(&["survival", "km", "--input", path(&input), "--duration", "days", "--event", "died"])
            .contains("no column 'days'")
    );
}

#[test]
fn reports_over_a_data_directory_in_json_and_html() {
    let dir = testkit::temp_dir("cli-analytics-reports");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&[
        "generate",
        "--patients",
        "150",
        "--seed",
        "3",
        "--cohort-rate",
        "0.5",
        "--outbreaks",
        "2",
        "--attack-rate",
        "0.5",
        "--out",
        path(&ndjson),
    ]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let bundle: Value =
        serde_json::from_str(&chartroom(&["surveil", "run", "--data", path(&data), "--place", "state"]))
            .unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert!(
        bundle["entry"].as_array().unwrap().iter().any(|e| e["resource"]["resourceType"] == "MeasureReport")
    );
    let html_path = dir.join("surveillance.html");
    chartroom(&["surveil", "run", "--data", path(&data), "--format", "html", "--out", path(&html_path)]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("Outbreak early warning") && html.contains("<svg"), "no epidemic curve");
    let csv = chartroom(&["surveil", "run", "--data", path(&data), "--format", "csv", "--method", "cusum"]);
    assert!(csv.starts_with("syndrome,place,t,period,observed,upperbound,alarm\n"));
    let listed = chartroom(&["surveil", "syndromes"]);
    assert!(listed.contains("gastrointestinal") && listed.contains("influenza-like-illness"));

    let study = dir.join("study.json");
    std::fs::write(&study, serde_json::json!({
        "name": "lung", "condition": ["C34"],
        "arms": [
            { "name": "A", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048" }] },
            { "name": "B", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545" }] }
        ],
        "censoring": { "cutoff": "2026-01-01" }
    }).to_string()).unwrap();
    let answer: Value = serde_json::from_str(&chartroom(&[
        "cohort",
        "compare",
        "--data",
        path(&data),
        "--study",
        path(&study),
    ]))
    .unwrap();
    assert_eq!(answer["resourceType"], "Parameters");
    let names: Vec<&str> =
        answer["parameter"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["cohort", "arm", "logRank", "cox"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let report = dir.join("cohort.html");
    chartroom(&[
        "cohort",
        "compare",
        "--data",
        path(&data),
        "--study",
        path(&study),
        "--format",
        "html",
        "--out",
        path(&report),
    ]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Kaplan") && html.contains("Numbers at risk") && html.contains("<svg"));
    std::fs::write(&study, "{\"name\": \"x\"}").unwrap();
    assert!(
        refused(&["cohort", "compare", "--data", path(&data), "--study", path(&study)])
            .contains("study definition")
    );
}
