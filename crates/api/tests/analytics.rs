//! `$surveillance` and `$cohort-compare` over a small record whose answers are worked out by
//! hand below: one city's gastrointestinal cases with a spike in one week, and a lung-cancer
//! cohort with one patient of each exclusion.

use chartroom_api::{Api, ApiConfig, Method, Request, Response};
use serde_json::{Value, json};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

fn patient(id: &str, city: &str, birth: &str, deceased: Option<&str>) -> Value {
    let mut patient = json!({ "resourceType": "Patient", "id": id, "gender": "female", "birthDate": birth,
        "address": [{ "use": "home", "city": city, "state": "OH", "postalCode": "43215" }] });
    if let Some(when) = deceased {
        patient["deceasedDateTime"] = json!(when);
    }
    patient
}

fn condition(id: &str, patient: &str, code: &str, onset: &str) -> Value {
    json!({ "resourceType": "Condition", "id": id, "subject": { "reference": format!("Patient/{patient}") },
        "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code }] },
        "onsetDateTime": onset })
}

fn order(id: &str, patient: &str, code: &str, authored: &str) -> Value {
    json!({ "resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "subject": { "reference": format!("Patient/{patient}") },
        "medicationCodeableConcept": { "coding": [{ "system": RXNORM, "code": code }] },
        "authoredOn": authored })
}

/// Weeks from Monday 2024-01-01: the spike's six patients fall ill in week 14 (2024-04-01).
fn record() -> Vec<Value> {
    let mut record = Vec::new();
    for n in 1..=8 {
        let city = if n <= 6 { "Alpha" } else { "Beta" };
        let deceased = (n == 1).then_some("2023-06-01T00:00:00Z");
        record.push(patient(&format!("p{n}"), city, "1950-01-01", deceased));
    }
    // A quiet baseline: one case every other week in Alpha, weeks 1 to 13.
    for week in (1..=13).step_by(2) {
        let day = fhir_date(week, 0);
        record.push(condition(&format!("gi-base-{week}"), "p6", "A08.4", &day));
    }
    for n in 1..=6 {
        record.push(condition(&format!("gi-spike-{n}"), &format!("p{n}"), "A08.4", &fhir_date(14, 1)));
    }
    // The cohort: p1 and p2 on arm A, p3 on arm B, p4 on both, p5 on neither.
    for n in 1..=5 {
        record.push(condition(&format!("lung-{n}"), &format!("p{n}"), "C34.90", "2023-01-01"));
    }
    record.push(order("m1", "p1", "40048", "2023-01-02T10:00:00Z"));
    record.push(order("m2", "p2", "56946", "2023-01-03T10:00:00Z"));
    record.push(order("m3", "p3", "1547545", "2023-01-02T10:00:00Z"));
    record.push(order("m4a", "p4", "40048", "2023-01-02T10:00:00Z"));
    record.push(order("m4b", "p4", "1547545", "2023-02-02T10:00:00Z"));
    record
}

/// The date `days` into ISO week `week` of 2024 (week 1 starts on Monday 2024-01-01).
fn fhir_date(week: i64, days: i64) -> String {
    let day = 1 + (week - 1) * 7 + days;
    let (month, day) = [31, 29, 31, 30]
        .iter()
        .fold((1, day), |(m, d), len| if d > *len { (m + 1, d - len) } else { (m, d) });
    format!("2024-{month:02}-{day:02}")
}

fn study() -> Value {
    json!({
        "name": "lung",
        "condition": ["C34"],
        "arms": [
            { "name": "A", "codes": [{ "system": RXNORM, "code": "40048" }, { "system": RXNORM, "code": "56946" }] },
            { "name": "B", "codes": [{ "system": RXNORM, "code": "1547545" }] }
        ],
        "censoring": { "cutoff": "2024-01-01" },
        "covariates": [],
        "survivalAt": [100, 200]
    })
}

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = testkit::temp_dir(name);
        let store = testkit::open_store("analytics", &dir.join("data"));
        let api =
            Api::new(store, ApiConfig { syndromes_dir: Some(dir.join("syndromes")), ..ApiConfig::default() });
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fixture = Fixture { api, runtime };
        for resource in record() {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            let response = fixture.call(Method::Put, &path, "", Some(&resource));
            assert!(response.status < 300, "{path}: {}", body(&response));
        }
        fixture
    }

    fn call(&self, method: Method, path: &str, query: &str, payload: Option<&Value>) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            body: payload.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }
}

fn body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null)
}

fn as_parameters(study: &Value) -> Value {
    json!({ "resourceType": "Parameters", "parameter": [{ "name": "study", "valueString": study.to_string() }] })
}

fn part<'a>(parameter: &'a Value, name: &str) -> &'a Value {
    parameter["part"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or(&Value::Null)
}

#[test]
fn the_spike_is_alarmed_in_its_city_and_week() {
    let f = Fixture::new("api-surveillance");
    let response = f.call(Method::Get, "$surveillance", "syndrome=gastrointestinal", None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let bundle = body(&response);
    assert_eq!(bundle["resourceType"], "Bundle");
    let reports: Vec<&Value> = bundle["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).collect();
    let alpha = reports
        .iter()
        .find(|r| r["resourceType"] == "MeasureReport" && r["extension"][0]["valueCoding"]["code"] == "Alpha")
        .expect("Alpha's series");
    assert_eq!(alpha["group"][0]["code"]["coding"][0]["code"], "gastrointestinal");
    // 7 baseline cases and 6 in the spike.
    assert_eq!(alpha["group"][0]["population"][0]["count"], 13);
    let strata = alpha["group"][0]["stratifier"][0]["stratum"].as_array().unwrap();
    // EARS C2 judges from week 10 (a 7-week baseline behind a 2-week guard) to week 14.
    let labels: Vec<&str> = strata.iter().map(|s| s["value"]["text"].as_str().unwrap()).collect();
    assert_eq!(labels, ["2024-W10", "2024-W11", "2024-W12", "2024-W13", "2024-W14"]);
    let alarmed: Vec<&str> = strata
        .iter()
        .filter(|s| s["extension"][1]["valueBoolean"] == true)
        .map(|s| s["value"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(alarmed, ["2024-W14"]);
    let issues: Vec<&&Value> = reports.iter().filter(|r| r["resourceType"] == "DetectedIssue").collect();
    assert_eq!(issues.len(), 1, "{bundle}");
    assert_eq!(issues[0]["identifiedDateTime"], "2024-04-01");
    assert!(issues[0]["detail"].as_str().unwrap().contains("6 cases"), "{}", issues[0]);
}

#[test]
fn bad_parameters_are_refused_saying_which() {
    let f = Fixture::new("api-surveillance-bad");
    for (query, expected) in [
        ("method=nope", "method 'nope'"),
        ("method=ears-c2&k=2", "'k' does not apply"),
        ("syndrome=nope", "no syndrome is named 'nope'"),
        ("by=month", "by 'month'"),
        ("method=ears-c1&alpha=2", "alpha"),
        ("method=farrington&limit54=5", "limit54"),
    ] {
        let response = f.call(Method::Get, "$surveillance", query, None);
        assert_eq!(response.status, 400, "{query}: {}", body(&response));
        let outcome = body(&response);
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
        assert!(text.contains(expected), "{query}: {text}");
    }
    let response = f.call(Method::Post, "$cohort-compare", "", None);
    assert_eq!(response.status, 400, "{}", body(&response));
    let mut one_arm = study();
    one_arm["arms"].as_array_mut().unwrap().pop();
    let response = f.call(Method::Post, "$cohort-compare", "", Some(&as_parameters(&one_arm)));
    assert_eq!(response.status, 400, "{}", body(&response));
    assert!(body(&response)["issue"][0]["diagnostics"].as_str().unwrap().contains("exactly two"));
}

#[test]
fn the_cohort_counts_each_exclusion_and_follows_each_arm() {
    let f = Fixture::new("api-cohort");
    let response = f.call(Method::Post, "$cohort-compare", "", Some(&as_parameters(&study())));
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    let parameters = answer["parameter"].as_array().unwrap();
    let cohort = parameters.iter().find(|p| p["name"] == "cohort").unwrap();
    assert_eq!(part(cohort, "diagnosed")["valueInteger"], 5);
    assert_eq!(part(cohort, "included")["valueInteger"], 3);
    let excluded: Vec<(String, i64)> = cohort["part"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "excluded")
        .map(|p| {
            (
                part(p, "reason")["valueCode"].as_str().unwrap().to_string(),
                part(p, "count")["valueInteger"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(excluded, [("not-exposed".to_string(), 1), ("both-arms".to_string(), 1)]);
    let arms: Vec<&Value> = parameters.iter().filter(|p| p["name"] == "arm").collect();
    // Arm A: p1 dies 150 days after 2023-01-02T10:00 (2023-06-01), p2 is followed to the
    // cut-off; so survival is 1/2 from day 149.58 on.
    assert_eq!(part(arms[0], "patients")["valueInteger"], 2);
    assert_eq!(part(arms[0], "events")["valueInteger"], 1);
    let at_200 =
        arms[0]["part"].as_array().unwrap().iter().filter(|p| p["name"] == "survivalAt").nth(1).unwrap();
    assert_eq!(part(at_200, "survival")["valueDecimal"], 0.5);
    let at_100 = arms[0]["part"].as_array().unwrap().iter().find(|p| p["name"] == "survivalAt").unwrap();
    assert_eq!(part(at_100, "survival")["valueDecimal"], 1.0);
    assert_eq!(part(arms[1], "patients")["valueInteger"], 1);
    assert_eq!(part(arms[1], "events")["valueInteger"], 0);
    // The study itself as the body is no Parameters: refused, saying so.
    let response = f.call(Method::Post, "$cohort-compare", "", Some(&study()));
    assert_eq!(response.status, 400, "{}", body(&response));
}

#[test]
fn comorbidity_is_scored_per_patient_and_over_the_record() {
    let f = Fixture::new("api-comorbidity");
    // p1 has lung cancer (C34.90: any malignancy, 2 points under Charlson's weights) and, born
    // in 1950, is 73 on 2024-01-01: three decades over 40 add 3.
    let response = f.call(Method::Get, "Patient/p1/$comorbidity", "asOf=2024-01-01", None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    let patient =
        answer["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "patient").unwrap().clone();
    assert_eq!(part(&patient, "charlson")["valueDecimal"], 2.0);
    assert_eq!(part(&patient, "charlsonAgeAdjusted")["valueDecimal"], 5.0);
    assert_eq!(part(&patient, "charlsonCategory")["valueCode"], "canc");
    assert_eq!(part(&patient, "hfrsCategory")["valueCode"], "Low");
    // Before the diagnosis it counts nothing.
    let before = body(&f.call(Method::Get, "Patient/p1/$comorbidity", "asOf=2022-12-31", None));
    let patient =
        before["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "patient").unwrap().clone();
    assert_eq!(part(&patient, "charlson")["valueDecimal"], 0.0);
    // Every patient, highest first, limited by _count.
    let all = body(&f.call(Method::Get, "$comorbidity", "asOf=2024-01-01&_count=3", None));
    let listed: Vec<&Value> =
        all["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "patient").collect();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|p| part(p, "charlson")["valueDecimal"] == 2.0), "{all}");
    assert_eq!(f.call(Method::Get, "Patient/nobody/$comorbidity", "", None).status, 404);
    assert_eq!(f.call(Method::Get, "$comorbidity", "asOf=soon", None).status, 400);
    // No model trained: $high-risk says so.
    let response = f.call(Method::Get, "$high-risk", "", None);
    assert!(response.status == 422 || response.status == 400, "{}", body(&response));
}

#[test]
fn the_operations_report_answers_as_parameters_or_html() {
    let f = Fixture::new("api-operations");
    let stay = json!({ "resourceType": "Encounter", "id": "stay1", "status": "finished", "class": { "code": "IMP" },
        "subject": { "reference": "Patient/p2" }, "period": { "start": "2024-03-01T10:00:00Z", "end": "2024-03-04T11:00:00Z" } });
    assert!(f.call(Method::Put, "Encounter/stay1", "", Some(&stay)).status < 300);
    let response = f.call(Method::Get, "$operations-report", "from=2024-03-01&to=2024-03-31", None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    let total =
        answer["parameter"].as_array().unwrap().iter().find(|p| p["name"] == "total").unwrap().clone();
    assert_eq!(part(&total, "bedDays")["valueInteger"], 3);
    assert_eq!(part(&total, "averageLengthOfStay")["valueDecimal"], 3.0);
    let html = f.call(Method::Get, "$operations-report", "from=2024-03-01&to=2024-03-31&_format=html", None);
    assert_eq!((html.status, html.content_type), (200, Some("text/html; charset=utf-8")));
    assert!(html.body_text().contains("Daily census"));
    assert_eq!(f.call(Method::Get, "$operations-report", "from=2024-03-01", None).status, 400);
    assert_eq!(
        f.call(Method::Get, "$operations-report", "from=2024-03-01&to=2024-03-31&by=ward", None).status,
        400
    );
    assert_eq!(
        f.call(Method::Get, "$operations-report", "from=2024-03-01&to=2024-03-31&_format=xml", None).status,
        406
    );
}

#[test]
fn the_billing_audit_names_each_bad_bill_and_counts_the_unbilled() {
    let f = Fixture::new("api-billing");
    let icd = "http://hl7.org/fhir/sid/icd-10-cm";
    let visit = |id: &str, status: &str| {
        json!({ "resourceType": "Encounter", "id": id, "status": status, "class": { "code": "AMB" },
            "subject": { "reference": "Patient/p2" }, "period": { "start": "2024-03-01T10:00:00Z", "end": "2024-03-01T11:00:00Z" },
            "reasonCode": [{ "coding": [{ "system": icd, "code": "J06.9" }] }] })
    };
    let bill = |id: &str, status: &str, encounter: &str, total: f64| {
        json!({ "resourceType": "Claim", "id": id, "status": status, "use": "claim", "created": "2024-03-04T00:00:00Z",
            "type": { "coding": [{ "code": "professional" }] }, "priority": { "coding": [{ "code": "normal" }] },
            "patient": { "reference": "Patient/p2" }, "provider": { "reference": "Organization/o1" },
            "insurance": [{ "sequence": 1, "focal": true, "coverage": { "reference": "Coverage/c1" } }],
            "diagnosis": [{ "sequence": 1, "diagnosisCodeableConcept": { "coding": [{ "system": icd, "code": "J06.9" }] } }],
            "item": [{ "sequence": 1, "productOrService": { "coding": [{ "code": "99213" }] },
                       "encounter": [{ "reference": format!("Encounter/{encounter}") }], "net": { "value": 150.0 } }],
            "total": { "value": total } })
    };
    for resource in [
        visit("v1", "finished"),
        visit("v2", "cancelled"),
        visit("v3", "finished"),
        bill("b1", "active", "v1", 175.0),
        bill("b2", "active", "v2", 150.0),
        bill("b3", "draft", "v3", 150.0),
    ] {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let response = f.call(Method::Put, &path, "", Some(&resource));
        assert!(response.status < 300, "{path}: {}", body(&response));
    }
    let response = f.call(Method::Get, "$billing-audit", "asOf=2024-03-10", None);
    assert_eq!(response.status, 200, "{}", body(&response));
    let answer = body(&response);
    let parameters = answer["parameter"].as_array().unwrap();
    let findings: Vec<(String, String)> = parameters
        .iter()
        .filter(|p| p["name"] == "finding")
        .map(|p| (text(part(p, "rule"), "valueCode"), text(part(p, "claim"), "valueReference")))
        .collect();
    assert_eq!(
        findings,
        vec![
            ("total-mismatch".to_string(), "Claim/b1".to_string()),
            ("void-encounter".into(), "Claim/b2".into())
        ]
    );
    let cycle = parameters.iter().find(|p| p["name"] == "revenueCycle").unwrap();
    let dnfb = part(cycle, "dnfb");
    assert_eq!(part(dnfb, "count")["valueInteger"], 1, "{cycle}");
    assert_eq!(part(dnfb, "amount")["valueDecimal"], 150.0);
    let account = parameters.iter().find(|p| p["name"] == "dnfbAccount").unwrap();
    assert_eq!(part(account, "ageDays")["valueInteger"], 9);
    assert_eq!(part(account, "coded")["valueBoolean"], true);
    for bad in ["asOf=soon", "billHold=-2", "billHold=400", "_count=many"] {
        let response = f.call(Method::Get, "$billing-audit", bad, None);
        assert_eq!(response.status, 400, "{bad}: {}", body(&response));
        assert_eq!(body(&response)["resourceType"], "OperationOutcome");
    }
}

fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        other => other["reference"].as_str().unwrap_or_default().to_string(),
    }
}
