//! The claims audit against the synthetic population's planted truth.
//!
//! `ground-truth/billing.ndjson` lists each billing defect the generator planted (rule, claim,
//! code or procedure), and the disagreements between bill and record that its planted
//! data-quality defects cause (a Condition recoded, a stay's diagnosis list dropped: marked with
//! a `cause`). `unbilled.ndjson` lists every visit not final-billed on the as-of date.
//!
//! - Recall: every planted billing defect is found by its rule (100%).
//! - Precision: of the reconciliation findings, at least 95% are listed (planted or caused).
//! - The DNFB accounts are exactly the unbilled visits, with their coding state and charges.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chartroom_analytics::billing::{AuditOptions, Finding, RULES, audit};
use serde_json::Value;
use support::FileStore;

const PATIENTS: usize = 3_000;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

fn strip<'a>(reference: &'a str, prefix: &str) -> &'a str {
    reference.strip_prefix(prefix).unwrap_or(reference)
}

/// How a listed line and a finding are matched: rule, claim, and the code or procedure.
fn truth_key(line: &Value) -> (String, String, String) {
    let detail = line["code"]
        .as_str()
        .map(str::to_string)
        .or_else(|| line["procedure"].as_str().map(|p| strip(p, "Procedure/").to_string()))
        .unwrap_or_default();
    (
        line["rule"].as_str().unwrap().to_string(),
        strip(line["claim"].as_str().unwrap(), "Claim/").to_string(),
        detail,
    )
}

fn finding_key(finding: &Finding) -> (String, String, String) {
    let detail = match finding.rule.as_str() {
        "undocumented-diagnosis" | "unbilled-diagnosis" => finding.code.clone().unwrap_or_default(),
        "unbilled-procedure" => {
            finding.evidence.first().map(|p| strip(p, "Procedure/").to_string()).unwrap_or_default()
        }
        _ => String::new(),
    };
    (finding.rule.clone(), finding.claim.clone(), detail)
}

#[test]
fn planted_billing_defects_are_found_and_little_else_is() {
    let dir = std::env::temp_dir().join(format!("chartroom-billing-truth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Completion deficiencies take notes away, which the audit rightly reads as undocumented
    // diagnoses; they are measured on their own.
    let truth = synth::TruthOptions {
        billing_defect_rate: 0.1,
        completion_defect_rate: 0.0,
        ..synth::TruthOptions::default()
    };
    synth::generate(&synth::GenerateOptions { patients: PATIENTS, seed: 11, truth }, &dir, &|_| {})
        .expect("generate");
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth/parameters.json")).unwrap())
            .unwrap();
    let as_of = parameters["asOf"].as_str().unwrap().to_string();
    let listed = lines(&dir.join("ground-truth/billing.ndjson"));
    let unbilled = lines(&dir.join("ground-truth/unbilled.ndjson"));
    let defects = lines(&dir.join("ground-truth/defects.ndjson"));
    let store = FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    let report = audit(&store, &AuditOptions::as_of(&as_of, 3).unwrap()).expect("audit");

    // Recall over the planted defects, per rule.
    let found: BTreeSet<(String, String, String)> = report.findings.iter().map(finding_key).collect();
    let planted: Vec<&Value> = listed.iter().filter(|l| l["cause"].is_null()).collect();
    let mut per_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for line in &planted {
        let key = truth_key(line);
        let entry = per_rule.entry(key.0.clone()).or_default();
        entry.1 += 1;
        if found.contains(&key) {
            entry.0 += 1;
        } else {
            missed.push(key);
        }
    }
    eprintln!("recall per rule (found, planted): {per_rule:?}");
    assert_eq!(per_rule.len(), 6, "every kind planted: {per_rule:?}");
    assert!(planted.len() >= 250, "{} planted", planted.len());
    assert!(missed.is_empty(), "missed: {missed:?}");

    // Precision over the reconciliation findings (the coding edits have their own suite).
    let expected: BTreeSet<(String, String, String)> = listed.iter().map(truth_key).collect();
    // A stay whose diagnosis list was dropped documents only what was recorded at it.
    let undocumented_stays: BTreeSet<String> = defects
        .iter()
        .filter(|d| d["class"] == "missing-diagnosis")
        .map(|d| strip(d["resource"].as_str().unwrap(), "Encounter/").to_string())
        .collect();
    let reconciliation: Vec<&Finding> =
        report.findings.iter().filter(|f| RULES.iter().any(|(rule, _)| *rule == f.rule)).collect();
    let unexpected: Vec<&&Finding> = reconciliation
        .iter()
        .filter(|f| !expected.contains(&finding_key(f)))
        .filter(|f| {
            !(f.rule == "undocumented-diagnosis"
                && f.encounter.as_ref().is_some_and(|e| undocumented_stays.contains(e)))
        })
        .collect();
    let precision = 1.0 - unexpected.len() as f64 / reconciliation.len().max(1) as f64;
    eprintln!(
        "{} reconciliation findings, {} not listed (precision {precision:.4}); first: {:?}",
        reconciliation.len(),
        unexpected.len(),
        unexpected.iter().take(5).map(|f| (&f.rule, &f.claim, &f.code, &f.message)).collect::<Vec<_>>()
    );
    assert!(precision >= 0.95, "precision {precision}");

    // The DNFB accounts are the unbilled visits.
    let accounts: HashMap<&str, &chartroom_analytics::billing::Account> =
        report.revenue.accounts.iter().map(|a| (a.encounter.as_str(), a)).collect();
    assert_eq!(accounts.len(), unbilled.len(), "DNFB accounts");
    for visit in &unbilled {
        let encounter = strip(visit["encounter"].as_str().unwrap(), "Encounter/");
        let account = accounts.get(encounter).unwrap_or_else(|| panic!("{encounter} is not DNFB"));
        assert_eq!(account.coded, visit["coded"].as_bool().unwrap(), "{encounter} coded");
        match visit["charges"].as_f64() {
            Some(charges) => {
                assert!((account.charges.unwrap() - charges).abs() < 0.005, "{encounter} charges")
            }
            None => assert!(account.charges.is_none(), "{encounter} has no charges on file"),
        }
    }
    let backlog = unbilled.iter().filter(|v| v["coded"] == false).count() as u64;
    assert_eq!(report.revenue.coding_backlog.count, backlog);
    assert_eq!(report.revenue.dnfb.count, unbilled.len() as u64);
    assert!(report.revenue.dnfb.count > 50, "{:?}", report.revenue.dnfb);
    eprintln!(
        "findings by rule: {:?}",
        report.by_rule.iter().map(|(r, c)| (r, c.findings)).collect::<Vec<_>>()
    );
    eprintln!(
        "DNFB {} accounts, {:.2} on file, mean age {:.1} days; coding backlog {}",
        report.revenue.dnfb.count,
        report.revenue.dnfb.amount,
        report.revenue.dnfb.average_age_days,
        report.revenue.coding_backlog.count
    );
}
