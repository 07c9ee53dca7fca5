//! The claims audit's rules on a small record worked out by hand: a note that names a code
//! documents it, a refuted Condition documents nothing, a corrected claim is not a duplicate,
//! a Procedure billed by its own code is billed, lines are checked against quantity and unit
//! price, and the DNFB figures count claims by when they were created.

mod support;

use chartroom_analytics::billing::{AuditOptions, BillingAudit, Severity, audit};
use serde_json::{Value, json};
use support::FileStore;

const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const CPT: &str = "http://www.ama-assn.org/go/cpt";

fn encounter(id: &str, status: &str, end: &str, conditions: &[&str]) -> Value {
    let diagnosis: Vec<Value> = conditions
        .iter()
        .map(|c| json!({ "condition": { "reference": format!("Condition/{c}") } }))
        .collect();
    json!({ "resourceType": "Encounter", "id": id, "status": status, "class": { "code": "AMB" },
            "subject": { "reference": "Patient/p" }, "period": { "start": "2025-03-01T09:00:00Z", "end": end },
            "diagnosis": diagnosis })
}

fn condition(id: &str, code: &str, status: &str) -> Value {
    json!({ "resourceType": "Condition", "id": id, "subject": { "reference": "Patient/p" },
            "verificationStatus": { "coding": [{ "code": status }] },
            "code": { "coding": [{ "system": ICD, "code": code }] } })
}

fn line(code: &str, net: f64) -> Value {
    json!({ "productOrService": { "coding": [{ "system": CPT, "code": code }] }, "net": { "value": net } })
}

fn claim(
    id: &str,
    status: &str,
    encounter: &str,
    created: &str,
    codes: &[&str],
    items: Vec<Value>,
    total: f64,
) -> Value {
    let diagnosis: Vec<Value> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| json!({ "sequence": i + 1, "diagnosisCodeableConcept": { "coding": [{ "system": ICD, "code": c }] } }))
        .collect();
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            item["encounter"] = json!([{ "reference": format!("Encounter/{encounter}") }]);
            item
        })
        .collect();
    json!({ "resourceType": "Claim", "id": id, "status": status, "use": "claim", "patient": { "reference": "Patient/p" },
            "created": created, "billablePeriod": { "start": "2025-03-01" }, "provider": { "reference": "Organization/o" },
            "diagnosis": diagnosis, "item": items, "total": { "value": total } })
}

fn note(encounter: &str, text: &str) -> Value {
    json!({ "resourceType": "DocumentReference", "id": format!("doc-{encounter}"), "status": "current",
            "content": [{ "attachment": { "contentType": "text/plain", "data": fhir::base64_encode(text.as_bytes()) } }],
            "context": { "encounter": [{ "reference": format!("Encounter/{encounter}") }] } })
}

fn run(test: &str, resources: &[Value], as_of: &str) -> BillingAudit {
    let dir = std::env::temp_dir().join(format!("chartroom-billing-rules-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut by_type: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for resource in resources {
        by_type.entry(resource["resourceType"].as_str().unwrap()).or_default().push(resource.to_string());
    }
    for (kind, lines) in by_type {
        std::fs::write(dir.join(format!("{kind}.ndjson")), lines.join("\n")).unwrap();
    }
    let store = FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    audit(&store, &AuditOptions::as_of(as_of, 3).unwrap()).unwrap()
}

fn rules(audit: &BillingAudit) -> Vec<(String, String, Option<String>)> {
    let mut found: Vec<_> =
        audit.findings.iter().map(|f| (f.rule.clone(), f.claim.clone(), f.code.clone())).collect();
    found.sort();
    found
}

fn patient() -> Value {
    json!({ "resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1960-01-01" })
}

#[test]
fn what_documents_a_billed_code() {
    let resources = [
        patient(),
        // e1 documents E11.9 by a Condition, N17.9 only in its note, and refutes I10.
        encounter("e1", "finished", "2025-03-01T10:00:00Z", &["c1", "c2"]),
        condition("c1", "E11.9", "confirmed"),
        condition("c2", "I10", "refuted"),
        note(
            "e1",
            "Assessment: type 2 diabetes. Acute kidney failure, unspecified, resolving. Also n17.91 ruled out.",
        ),
        claim(
            "k1",
            "active",
            "e1",
            "2025-03-04T00:00:00Z",
            &["E11.9", "N17.9", "I10", "E43"],
            vec![line("99213", 150.0)],
            150.0,
        ),
    ];
    let audit = run("documents", &resources, "2025-06-30");
    assert_eq!(
        rules(&audit),
        vec![
            ("undocumented-diagnosis".into(), "k1".into(), Some("E43".into())),
            ("undocumented-diagnosis".into(), "k1".into(), Some("I10".into())),
        ]
    );
    let finding = &audit.findings[0];
    assert_eq!(finding.severity, Severity::Error);
    assert!(finding.evidence.iter().any(|e| e.contains("E11.9 (Condition/c1)")), "{:?}", finding.evidence);
    assert_eq!(finding.encounter.as_deref(), Some("e1"));
}

#[test]
fn duplicates_totals_and_unbilled_work() {
    let mut corrected =
        claim("k3", "active", "e2", "2025-03-09T00:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0);
    corrected["related"] = json!([{ "claim": { "reference": "Claim/k2" } }]);
    let mut priced = line("90471", 70.0);
    priced["quantity"] = json!({ "value": 2 });
    priced["unitPrice"] = json!({ "value": 35.0 });
    let mut mispriced = line("90471", 40.0);
    mispriced["unitPrice"] = json!({ "value": 35.0 });
    let mut procedure_by_code = json!({ "resourceType": "Procedure", "id": "pr1", "status": "completed",
        "encounter": { "reference": "Encounter/e3" }, "code": { "coding": [{ "system": CPT, "code": "45378" }] } });
    let procedure_unbilled = json!({ "resourceType": "Procedure", "id": "pr2", "status": "completed",
        "encounter": { "reference": "Encounter/e3" }, "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "71651007" }], "text": "mammogram" } });
    let not_done = json!({ "resourceType": "Procedure", "id": "pr3", "status": "not-done",
        "encounter": { "reference": "Encounter/e3" }, "code": { "text": "not done" } });
    procedure_by_code["code"]["text"] = json!("colonoscopy");
    let resources = [
        patient(),
        encounter("e2", "finished", "2025-03-01T10:00:00Z", &["c3"]),
        condition("c3", "J06.9", "confirmed"),
        // k2 and its correction k3; k4 the same bill again.
        claim("k2", "active", "e2", "2025-03-04T00:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0),
        corrected,
        claim("k4", "active", "e2", "2025-03-12T00:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0),
        encounter("e3", "finished", "2025-03-01T10:00:00Z", &["c4", "c5"]),
        condition("c4", "Z12.11", "confirmed"),
        condition("c5", "Z12.31", "confirmed"),
        procedure_by_code,
        procedure_unbilled,
        not_done,
        claim(
            "k5",
            "active",
            "e3",
            "2025-03-04T00:00:00Z",
            &["Z12.11"],
            vec![line("45378", 1650.0), priced, mispriced],
            1800.0,
        ),
        // e4 was cancelled but billed; k6 names no encounter at all.
        encounter("e4", "cancelled", "2025-03-01T10:00:00Z", &[]),
        claim("k6", "active", "e4", "2025-03-04T00:00:00Z", &["E43"], vec![line("99213", 150.0)], 150.0),
    ];
    let mut resources = resources.to_vec();
    let mut orphan =
        claim("k7", "active", "none", "2025-03-04T00:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0);
    orphan["item"][0].as_object_mut().unwrap().remove("encounter");
    resources.push(orphan);
    let audit = run("duplicates", &resources, "2025-06-30");
    assert_eq!(
        rules(&audit),
        vec![
            ("duplicate-claim".into(), "k4".into(), None),
            ("encounter-missing".into(), "k7".into(), None),
            ("line-net-mismatch".into(), "k5".into(), None),
            ("total-mismatch".into(), "k5".into(), None),
            ("unbilled-diagnosis".into(), "k5".into(), Some("Z12.31".into())),
            ("unbilled-procedure".into(), "k5".into(), Some("71651007".into())),
            ("void-encounter".into(), "k6".into(), None),
        ]
    );
    let total = audit.findings.iter().find(|f| f.rule == "total-mismatch").unwrap();
    assert!(total.message.contains("1800.00") && total.message.contains("1760.00"), "{}", total.message);
    assert_eq!(audit.final_claims, 6);
    assert_eq!(audit.claims_with_findings, 4);
}

#[test]
fn discharged_not_final_billed_counts_claims_created_by_the_as_of_day() {
    let resources = [
        patient(),
        // Billed on March 4: DNFB as of March 3 (age 2, coded draft), billed as of March 4.
        encounter("a", "finished", "2025-03-01T10:00:00Z", &[]),
        claim(
            "ka-draft",
            "draft",
            "a",
            "2025-03-01T11:00:00Z",
            &["J06.9"],
            vec![line("99213", 150.0)],
            150.0,
        ),
        claim("ka", "active", "a", "2025-03-04T08:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0),
        // Never billed: a draft without diagnoses (coding backlog), and one whose only claim
        // was cancelled (no charges on file, not coded).
        encounter("b", "finished", "2025-02-20T10:00:00Z", &[]),
        claim("kb", "draft", "b", "2025-02-20T11:00:00Z", &[], vec![line("99285", 1250.0)], 1250.0),
        encounter("c", "finished", "2025-01-01T10:00:00Z", &[]),
        // A cancelled bill does not bill; an encounter still going on is not discharged.
        claim("kc", "cancelled", "c", "2025-01-03T00:00:00Z", &["J06.9"], vec![line("99213", 150.0)], 150.0),
        json!({ "resourceType": "Encounter", "id": "d", "status": "in-progress", "class": { "code": "IMP" },
                "subject": { "reference": "Patient/p" }, "period": { "start": "2025-03-01T09:00:00Z" } }),
    ];
    let before = run("dnfb-before", &resources, "2025-03-03").revenue;
    assert_eq!(before.discharged, 3);
    assert_eq!(before.dnfb.count, 3);
    let ages: Vec<(&str, i64, bool, Option<f64>)> =
        before.accounts.iter().map(|a| (a.encounter.as_str(), a.age_days, a.coded, a.charges)).collect();
    assert_eq!(
        ages,
        vec![("c", 61, false, None), ("b", 11, false, Some(1250.0)), ("a", 2, true, Some(150.0))]
    );
    assert_eq!(before.coding_backlog.count, 2);
    assert_eq!(before.dnfb_beyond_hold.count, 2);
    assert!((before.dnfb.amount - 1400.0).abs() < 1e-9);
    assert_eq!(before.brackets[0].dnfb.count, 1);
    assert_eq!(before.brackets[2].dnfb.count, 1);
    assert_eq!(before.brackets[5].dnfb.count, 1);
    let after = run("dnfb-after", &resources, "2025-03-04").revenue;
    assert_eq!((after.final_billed, after.dnfb.count), (1, 2));
}

#[test]
fn references_uncertainty_payers_corrections_and_negations() {
    let mut by_reference =
        claim("r1", "active", "e5", "2025-03-04T00:00:00Z", &[], vec![line("99213", 150.0)], 150.0);
    by_reference["diagnosis"] =
        json!([{ "sequence": 1, "diagnosisReference": { "reference": "Condition/c6" } }]);
    // The same services billed to a second payer, and a chain of corrections.
    let mut secondary =
        claim("r2", "active", "e5", "2025-03-05T00:00:00Z", &[], vec![line("99213", 150.0)], 150.0);
    secondary["diagnosis"] = by_reference["diagnosis"].clone();
    secondary["insurer"] = json!({ "reference": "Organization/second-payer" });
    let mut corrected = by_reference.clone();
    corrected["id"] = json!("r3");
    corrected["created"] = json!("2025-03-06T00:00:00Z");
    corrected["related"] = json!([{ "claim": { "reference": "Claim/r1" } }]);
    let mut corrected_again = by_reference.clone();
    corrected_again["id"] = json!("r4");
    corrected_again["created"] = json!("2025-03-07T00:00:00Z");
    corrected_again["related"] = json!([{ "claim": { "reference": "Claim/r3" } }]);
    let mut visit = encounter("e6", "finished", "2025-03-01T10:00:00Z", &[]);
    visit["partOf"] = json!({ "reference": "Encounter/e5" });
    let resources = [
        patient(),
        encounter("e5", "finished", "2025-03-01T10:00:00Z", &["c6", "c7"]),
        condition("c6", "J06.9", "confirmed"),
        // Provisional: documents R50.9, but is not to be billed as a diagnosis.
        condition("c7", "R50.9", "provisional"),
        note("e5", "Fever. No dehydration on exam."),
        by_reference,
        secondary,
        corrected,
        corrected_again,
        claim(
            "r5",
            "active",
            "e5",
            "2025-03-08T00:00:00Z",
            &["J06.9", "E86.0"],
            vec![line("99214", 225.0)],
            225.0,
        ),
        // A part of e5, billed on its account: not DNFB.
        visit,
    ];
    let audit = run("references", &resources, "2025-06-30");
    assert_eq!(rules(&audit), vec![("undocumented-diagnosis".into(), "r5".into(), Some("E86.0".into()))]);
    assert_eq!(audit.revenue.dnfb.count, 0);
}

#[test]
fn the_as_of_date_and_hold_are_checked() {
    assert!(AuditOptions::as_of("March", 3).is_err());
    assert!(AuditOptions::as_of("2025-03-01", -1).is_err());
    assert!(AuditOptions::as_of("2025-03-01", 3).is_ok());
}
