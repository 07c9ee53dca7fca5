//! `chartroom billing audit`, run as the binary over a generated data directory with billing
//! defects planted: every planted defect is in the report, in JSON, CSV and HTML, and the
//! unbilled visits are the DNFB accounts.

mod support;

use support::{chartroom, path, run};

use serde_json::Value;

#[test]
fn the_audit_reports_every_planted_billing_defect_and_the_unbilled_visits() {
    let dir = testkit::temp_dir("cli-billing");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&[
        "generate",
        "--patients",
        "120",
        "--seed",
        "5",
        "--billing-defect-rate",
        "0.25",
        "--out",
        path(&ndjson),
    ]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let audit: Value = serde_json::from_str(&chartroom(&[
        "billing",
        "audit",
        "--data",
        path(&data),
        "--as-of",
        "2026-01-01",
    ]))
    .unwrap();
    let truth = std::fs::read_to_string(ndjson.join("ground-truth/billing.ndjson")).unwrap();
    let planted: Vec<Value> = truth
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["cause"].is_null())
        .collect();
    assert!(planted.len() >= 25, "{} planted", planted.len());
    let findings = audit["findings"].as_array().unwrap();
    for line in &planted {
        let claim = line["claim"].as_str().unwrap().trim_start_matches("Claim/");
        assert!(
            findings.iter().any(|f| f["rule"] == line["rule"] && f["claim"] == claim),
            "{line} not reported"
        );
    }
    let unbilled =
        std::fs::read_to_string(ndjson.join("ground-truth/unbilled.ndjson")).unwrap().lines().count();
    assert_eq!(audit["revenue"]["dnfb"]["count"], unbilled as u64);

    let csv =
        chartroom(&["billing", "audit", "--data", path(&data), "--as-of", "2026-01-01", "--format", "csv"]);
    assert!(csv.starts_with("rule,severity,claim,encounter,patient,code,amount,message,evidence\n"), "{csv}");
    assert_eq!(csv.lines().count(), findings.len() + 1);
    let html =
        chartroom(&["billing", "audit", "--data", path(&data), "--as-of", "2026-01-01", "--format", "html"]);
    assert!(html.contains("Discharged, not final-billed") && html.contains("void-encounter"), "{html}");
    assert!(!html.contains("<script"));
    for bad in [&["--as-of", "soon"][..], &["--bill-hold", "-3"][..]] {
        let mut args = vec!["billing", "audit", "--data", path(&data)];
        args.extend(bad.iter());
        assert!(!run(&args).status.success(), "{args:?}");
    }
}
