//! The coder's operations over HTTP: `$coding-edits`, `Encounter/$coding-worklist` and
//! `$suggest-codes`, against a small population whose expected results are written out below.

mod common;

use common::{TestServer, expect_outcome, json, start};
use serde_json::{Value, json};

fn icd(code: &str) -> Value {
    json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]})
}

fn encounter(id: &str, status: &str, patient: &str, end: &str) -> Value {
    json!({
        "resourceType": "Encounter", "id": id, "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": format!("{end}T08:00:00Z"), "end": format!("{end}T16:00:00Z")}
    })
}

fn condition(id: &str, patient: &str, encounter: &str, code: Value) -> Value {
    json!({
        "resourceType": "Condition", "id": id,
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{encounter}")},
        "code": code
    })
}

/// The population; the comments say what the worklist must make of each encounter.
fn population() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "pm", "gender": "male", "birthDate": "1980-05-01"}),
        json!({"resourceType": "Patient", "id": "pf", "gender": "female", "birthDate": "1990-02-02"}),
        // Discharged 2024-01-10, nothing coded: on the list, first.
        encounter("e-old", "finished", "pm", "2024-01-10"),
        // Discharged 2024-02-01, E11.9 coded: clean, not on the list.
        encounter("e-ok", "finished", "pf", "2024-02-01"),
        condition("c-ok", "pf", "e-ok", icd("E11.9")),
        // Discharged 2024-01-20, G63 ranked before the amyloidosis its code-first note names.
        json!({
            "resourceType": "Encounter", "id": "e-order", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/pm"},
            "period": {"start": "2024-01-18T08:00:00Z", "end": "2024-01-20T16:00:00Z"},
            "diagnosis": [
                {"condition": {"reference": "Condition/c-g63"}, "rank": 1},
                {"condition": {"reference": "Condition/c-e85"}, "rank": 2}
            ]
        }),
        condition("c-g63", "pm", "e-order", icd("G63")),
        condition("c-e85", "pm", "e-order", icd("E85.4")),
        // Discharged 2024-03-05: prostatic hyperplasia on a female patient.
        encounter("e-sex", "finished", "pf", "2024-03-05"),
        condition("c-n40", "pf", "e-sex", icd("N40.0")),
        // Discharged 2024-01-15: only a SNOMED CT code, so not ICD-10-CM coded.
        encounter("e-snomed", "finished", "pm", "2024-01-15"),
        condition(
            "c-snomed",
            "pm",
            "e-snomed",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]}),
        ),
        // Still in progress: never on the list.
        encounter("e-open", "in-progress", "pm", "2024-01-01"),
        // Discharged 2024-01-12 with no Condition, but billed with I10: coded, clean.
        encounter("e-billed", "finished", "pm", "2024-01-12"),
        json!({
            "resourceType": "Claim", "id": "claim-billed", "status": "active", "use": "claim",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": "Patient/pm"}, "created": "2024-01-13",
            "provider": {"reference": "Organization/clinic"}, "priority": {"coding": [{"code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "self-pay"}}],
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": icd("I10")}],
            "item": [{"sequence": 1, "productOrService": {"text": "office visit"},
                      "encounter": [{"reference": "Encounter/e-billed"}]}]
        }),
        // A clinical note, inline as base64 text.
        json!({
            "resourceType": "DocumentReference", "id": "note1", "status": "current",
            "subject": {"reference": "Patient/pm"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64(
                "Assessment: Type 2 diabetes mellitus without complications. Essential hypertension. Denies chest pain."
            )}}]
        }),
    ]
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn loaded(name: &str) -> TestServer {
    let server = start(name).await;
    for resource in population() {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let response = server.put(&path, &resource).await;
        let status = response.status();
        assert!(status.is_success(), "PUT {path}: {status} {}", response.text().await.unwrap_or_default());
    }
    server
}

fn edit_codes(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["details"]["coding"][0]["code"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_worklist_lists_uncoded_and_failing_encounters_oldest_discharge_first() {
    let server = loaded("coding-worklist").await;
    let response = server.get("Encounter/$coding-worklist").await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["resourceType"], "Parameters");
    let items: Vec<(String, Vec<String>)> = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let parts = item["part"].as_array().unwrap();
            let encounter = parts[0]["valueReference"]["reference"].as_str().unwrap().to_string();
            let reasons = parts
                .iter()
                .filter(|p| p["name"] == "reason")
                .map(|p| p["part"][0]["valueCode"].as_str().unwrap().to_string())
                .collect();
            (encounter, reasons)
        })
        .collect();
    let expected = vec![
        ("Encounter/e-old".to_string(), vec!["not-coded".to_string()]),
        ("Encounter/e-snomed".to_string(), vec!["not-coded".to_string()]),
        (
            "Encounter/e-order".to_string(),
            vec!["icd-manifestation-first-listed".to_string(), "icd-code-first-order".to_string()],
        ),
        ("Encounter/e-sex".to_string(), vec!["icd-sex-conflict".to_string()]),
    ];
    assert_eq!(items, expected);
    // _count limits the list.
    let first = json(server.get("Encounter/$coding-worklist?_count=1").await).await;
    assert_eq!(first["parameter"].as_array().unwrap().len(), 1);
    expect_outcome(server.get("Encounter/$coding-worklist?_count=x").await, 400, "value", "_count").await;
    // Chartroom's own operations refuse parameters they do not define.
    expect_outcome(server.get("Encounter/$coding-worklist?_cuont=1").await, 400, "not-supported", "'_cuont'")
        .await;
}

#[tokio::test]
async fn coding_edits_on_stored_and_posted_records() {
    let server = loaded("coding-edits").await;
    // A stored Condition, checked with its patient (female) in mind.
    let outcome = json(server.get("Condition/c-n40/$coding-edits").await).await;
    assert_eq!(edit_codes(&outcome), vec!["icd-sex-conflict"]);
    assert_eq!(outcome["issue"][0]["severity"], "error");
    assert_eq!(outcome["issue"][0]["expression"][0], "Condition.code.coding[0]");
    // A clean one.
    let clean = json(server.get("Condition/c-ok/$coding-edits").await).await;
    assert_eq!(clean["issue"][0]["severity"], "information");
    assert!(edit_codes(&clean).is_empty());
    // A stored Encounter: its ranked diagnoses.
    let order = json(server.get("Encounter/e-order/$coding-edits").await).await;
    assert_eq!(edit_codes(&order), vec!["icd-manifestation-first-listed", "icd-code-first-order"]);
    // A claim in the body, not stored: a header code cannot be billed, and the posted
    // claim's patient is read from the store.
    let claim = json!({
        "resourceType": "Claim", "status": "active", "use": "claim",
        "patient": {"reference": "Patient/pm"}, "created": "2024-02-01",
        "diagnosis": [
            {"sequence": 1, "diagnosisCodeableConcept": icd("E11")},
            {"sequence": 2, "diagnosisCodeableConcept": icd("O80")}
        ]
    });
    let response = server.post("Claim/$coding-edits", &claim).await;
    assert_eq!(response.status(), 200);
    let outcome = json(response).await;
    assert_eq!(edit_codes(&outcome), vec!["icd-header-code-on-claim", "icd-sex-conflict"]);
    assert_eq!(outcome["issue"][0]["expression"][0], "Claim.diagnosis[0].diagnosisCodeableConcept.coding[0]");
    // The same claim as the `resource` of a Parameters body.
    let wrapped =
        json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": claim}]});
    let outcome = json(server.post("Claim/$coding-edits", &wrapped).await).await;
    assert_eq!(edit_codes(&outcome), vec!["icd-header-code-on-claim", "icd-sex-conflict"]);
    // Nothing was stored by checking: the population's one claim only.
    let claims = json(server.get("Claim").await).await;
    assert_eq!(
        claims["total"].as_u64().unwrap_or(claims["entry"].as_array().map_or(0, |e| e.len() as u64)),
        1
    );
    // Bad requests.
    expect_outcome(
        server.post("Patient/$coding-edits", &json!({"resourceType": "Patient"})).await,
        400,
        "",
        "Condition",
    )
    .await;
    expect_outcome(
        server.post("Claim/$coding-edits", &json!({"resourceType": "Patient"})).await,
        400,
        "invalid",
        "Patient",
    )
    .await;
    expect_outcome(server.get("Condition/nope/$coding-edits").await, 404, "not-found", "Condition/nope")
        .await;
}

#[tokio::test]
async fn code_suggestions_for_text_and_documents() {
    let server = loaded("coding-suggest").await;
    let body = json(
        server.get("$suggest-codes?text=type%202%20diabetes%20mellitus%20without%20complications").await,
    )
    .await;
    let first = &body["parameter"][0]["part"];
    assert_eq!(first[0]["valueCoding"]["code"], "E11.9", "{body}");
    assert!(first.as_array().unwrap().iter().any(|p| p["name"] == "matchedWord"));
    // A stored note: both assessed conditions, and nothing from the denied chest pain.
    let note = json(server.get("DocumentReference/note1/$suggest-codes?count=10").await).await;
    let codes: Vec<&str> = note["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["part"][0]["valueCoding"]["code"].as_str())
        .collect();
    assert!(codes.contains(&"E11.9"), "{codes:?}");
    assert!(codes.contains(&"I10"), "{codes:?}");
    assert!(!codes.iter().any(|c| c.starts_with("R07")), "{codes:?}");
    // The same document POSTed.
    let posted = json(server.post("DocumentReference/$suggest-codes", &population()[15]).await).await;
    assert_eq!(posted["parameter"].as_array().map(Vec::len), note["parameter"].as_array().map(Vec::len));
    // The subject's record says who the note is about: right breast cancer is coded to the
    // female breast for a woman and to the male breast for a man.
    for (patient, expected) in [("pf", "C50.911"), ("pm", "C50.921")] {
        let document = json!({
            "resourceType": "DocumentReference", "status": "current", "date": "2024-03-01T10:00:00Z",
            "subject": {"reference": format!("Patient/{patient}")},
            "content": [{"attachment": {"contentType": "text/plain",
                "data": base64("Assessment:\n1. Carcinoma of the right breast, followed by oncology.\n")}}]
        });
        let answer = json(server.post("DocumentReference/$suggest-codes", &document).await).await;
        assert_eq!(answer["parameter"][0]["part"][0]["valueCoding"]["code"], expected, "{patient}: {answer}");
    }
    // Parameters body.
    let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "text", "valueString": "essential hypertension"}]});
    let by_parameters = json(server.post("$suggest-codes", &parameters).await).await;
    assert_eq!(by_parameters["parameter"][0]["part"][0]["valueCoding"]["code"], "I10");
    expect_outcome(server.get("$suggest-codes").await, 400, "required", "text").await;
    expect_outcome(
        server.get("$suggest-codes?text=asthma&limit=3").await,
        400,
        "not-supported",
        "it takes text, count, document",
    )
    .await;
    expect_outcome(server.get("Patient/$nonsense").await, 400, "not-supported", "$nonsense").await;
}

/// Admission order is not discharge order: a long stay admitted first and discharged late must
/// still be listed by its discharge, also when the list stops early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_orders_by_discharge_across_pages() {
    let server = start("coding-worklist-pages").await;
    let day = |n: i64| {
        let (y, m, d) = civil(18_262 + n); // 2020-01-01 + n days
        format!("{y:04}-{m:02}-{d:02}")
    };
    let mut entries = vec![json!({
        "resource": {"resourceType": "Encounter", "id": "long", "status": "finished",
            "class": {"code": "IMP"},
            "period": {"start": "2020-01-01T08:00:00Z", "end": "2020-12-31T12:00:00Z"}},
        "request": {"method": "PUT", "url": "Encounter/long"}
    })];
    for i in 1..=1200 {
        entries.push(json!({
            "resource": {"resourceType": "Encounter", "id": format!("short-{i}"), "status": "finished",
                "class": {"code": "IMP"},
                "period": {"start": format!("{}T08:00:00Z", day(i)), "end": format!("{}T10:00:00Z", day(i))}},
            "request": {"method": "PUT", "url": format!("Encounter/short-{i}")}
        }));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    assert_eq!(server.post("", &bundle).await.status(), 200);
    let order = |body: Value| -> Vec<String> {
        body["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["part"][0]["valueReference"]["reference"].as_str().unwrap().to_string())
            .collect()
    };
    let first = order(json(server.get("Encounter/$coding-worklist?_count=3").await).await);
    assert_eq!(first, vec!["Encounter/short-1", "Encounter/short-2", "Encounter/short-3"]);
    let many = order(json(server.get("Encounter/$coding-worklist?_count=400").await).await);
    // Discharged 2020-01-02 .. 2020-12-31 10:00 (365 short stays), then the long stay.
    assert_eq!(many.len(), 400);
    assert_eq!(many[364], "Encounter/short-365");
    assert_eq!(many[365], "Encounter/long");
    assert_eq!(many[366], "Encounter/short-366");
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
