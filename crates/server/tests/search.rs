//! Search over HTTP against a small population whose expected matches are written out by hand
//! below each query: every parameter type, prefix, modifier, chain, include and paging rule.

mod common;

use common::{TestServer, expect_outcome, json, start};
use reqwest::Method;
use serde_json::{Value, json};

/// The population. Comments give the facts the expectations rely on.
fn population() -> Vec<Value> {
    vec![
        json!({"resourceType": "Organization", "id": "o1", "name": "Acme General Hospital"}),
        json!({"resourceType": "Organization", "id": "o2", "name": "Beta Clinic"}),
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Smith", "given": ["Anna"]}]}),
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true, "name": "Chalmers family"}),
        // p1: Chalmers, Peter James; male; 1974-12-25; MRN 12345 (type MR); Springfield; o1.
        json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {
                "tag": [{"system": "http://example.org/tags", "code": "vip"}],
                "profile": ["http://example.org/StructureDefinition/special-patient"],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]
            },
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter Chalmers</div>"},
            "identifier": [{
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "http://hospital.example.org/mrn", "value": "12345"
            }],
            "active": true,
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
            "telecom": [{"system": "phone", "value": "555-0100"}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "address": [{"city": "Springfield"}],
            "contact": [{"name": {"family": "Chalmers", "given": ["Mary"]}}],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}}],
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "managingOrganization": {"reference": "Organization/o1"}
        }),
        // p2: Chalmers, Jane; female; born in March 1980 (month precision); MRN 67890; o2.
        json!({
            "resourceType": "Patient", "id": "p2",
            "identifier": [{"system": "http://hospital.example.org/mrn", "value": "67890"}],
            "name": [{"family": "Chalmers", "given": ["Jane"]}],
            "gender": "female", "birthDate": "1980-03",
            "address": [{"city": "Shelbyville"}],
            "managingOrganization": {"reference": "Organization/o2"}
        }),
        // p3: Müller, Åsa; female; 2001-07-04; no identifier; o1.
        json!({
            "resourceType": "Patient", "id": "p3",
            "name": [{"family": "Müller", "given": ["Åsa"]}],
            "gender": "female", "birthDate": "2001-07-04",
            "managingOrganization": {"reference": "Organization/o1"}
        }),
        // p4: Peterson, Carl; no gender; born 1950 (year precision).
        json!({
            "resourceType": "Patient", "id": "p4",
            "name": [{"family": "Peterson", "given": ["Carl"]}],
            "birthDate": "1950"
        }),
        // e1: p1's visit on 2021-06-01.
        json!({
            "resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2021-06-01T09:00:00Z", "end": "2021-06-01T10:00:00Z"}
        }),
        // obs1: p1 heart rate 72 /min on 2020-03-15, final, tagged vip.
        observation(
            "obs1",
            "Patient/p1",
            "8867-4",
            "Heart rate",
            "final",
            json!({"effectiveDateTime": "2020-03-15T10:00:00Z"}),
            Some((72, "/min")),
        ),
        // obs2: p1 systolic 130 mm[Hg] on 2021-06-01 in e1; the subject also carries p1's MRN.
        {
            let mut o = observation(
                "obs2",
                "Patient/p1",
                "8480-6",
                "Systolic blood pressure",
                "final",
                json!({"effectiveDateTime": "2021-06-01"}),
                Some((130, "mm[Hg]")),
            );
            o["subject"]["identifier"] =
                json!({"system": "http://hospital.example.org/mrn", "value": "12345"});
            o["encounter"] = json!({"reference": "Encounter/e1"});
            o
        },
        // obs3: p2 heart rate 88 /min over March 2020 (a Period), preliminary.
        observation(
            "obs3",
            "Patient/p2",
            "8867-4",
            "Heart rate",
            "preliminary",
            json!({"effectivePeriod": {"start": "2020-03-01", "end": "2020-03-31"}}),
            Some((88, "/min")),
        ),
        // obs4: p3 body weight 70000 g (= 70 kg) on 2019-12-31.
        observation(
            "obs4",
            "Patient/p3",
            "29463-7",
            "Body weight",
            "final",
            json!({"effectiveDateTime": "2019-12-31T23:30:00Z"}),
            Some((70000, "g")),
        ),
        // obs5: p2 body height 165 cm, amended, no effective date.
        observation("obs5", "Patient/p2", "8302-2", "Body height", "amended", json!({}), Some((165, "cm"))),
        // obs6: the group g1's heart rate 60 /min on 2022-01-01.
        observation(
            "obs6",
            "Group/g1",
            "8867-4",
            "Heart rate",
            "final",
            json!({"effectiveDateTime": "2022-01-01"}),
            Some((60, "/min")),
        ),
        // obs7: p4 blood pressure panel on 2020-03-20: systolic 140, diastolic 90 mm[Hg].
        {
            let mut o = observation(
                "obs7",
                "Patient/p4",
                "85354-9",
                "Blood pressure panel",
                "final",
                json!({"effectiveDateTime": "2020-03-20"}),
                None,
            );
            o["component"] = json!([
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 140, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 90, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
            ]);
            o
        },
        // c1: p1 diabetes (E11.9); c2: p2 hypertension (I10).
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}}),
        json!({"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
               "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]}}),
        // Canonical URLs for uri searches.
        json!({"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://example.org/fhir/ValueSet/vs1"}),
        json!({"resourceType": "ValueSet", "id": "vs2", "status": "active", "url": "http://example.org/fhir/ValueSet/vs2"}),
        json!({"resourceType": "ValueSet", "id": "vs3", "status": "active", "url": "http://other.org/ValueSet/x"}),
    ]
}

fn observation(
    id: &str,
    subject: &str,
    code: &str,
    display: &str,
    status: &str,
    effective: Value,
    value: Option<(i64, &str)>,
) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "id": id, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": subject}
    });
    for (name, value) in effective.as_object().unwrap() {
        o[name] = value.clone();
    }
    if let Some((amount, unit)) = value {
        o["valueQuantity"] =
            json!({"value": amount, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit});
    }
    if id == "obs1" {
        o["meta"] = json!({"tag": [{"system": "http://example.org/tags", "code": "vip"}]});
    }
    o
}

async fn loaded(name: &str) -> TestServer {
    let server = start(name).await;
    for resource in population() {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let response = server.put(&path, &resource).await;
        assert_eq!(response.status(), 201, "{path}: {}", response.text().await.unwrap());
    }
    server
}

/// `Type/id` of the entries with this search mode, sorted.
fn entries(bundle: &Value, mode: &str) -> Vec<String> {
    let mut found: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

/// `Type/id` of the entries in bundle order.
fn in_order(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

async fn search(server: &TestServer, query: &str) -> Value {
    let response = server.get(query).await;
    let status = response.status();
    let body = json(response).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["type"], "searchset");
    body
}

/// Asserts the matches of a search, given as `Type/id`s.
async fn expect(server: &TestServer, query: &str, expected: &[&str]) {
    let bundle = search(server, query).await;
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(entries(&bundle, "match"), expected, "{query}");
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == relation)?["url"].as_str().map(str::to_string)
}

/// A link URL as a path relative to the server base.
fn relative(server: &TestServer, url: &str) -> String {
    url.strip_prefix(&format!("{}/", server.base))
        .unwrap_or_else(|| panic!("{url} is not under {}", server.base))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_parameters() {
    let s = loaded("search-string").await;
    expect(&s, "Patient?name=chal", &["Patient/p1", "Patient/p2"]).await;
    // Case and accents are ignored by default.
    expect(&s, "Patient?name=MULLER", &["Patient/p3"]).await;
    expect(&s, "Patient?given=asa", &["Patient/p3"]).await;
    expect(&s, "Patient?name:exact=Chalmers", &["Patient/p1", "Patient/p2"]).await;
    expect(&s, "Patient?name:exact=chalmers", &[]).await;
    expect(&s, "Patient?family:exact=Müller", &["Patient/p3"]).await;
    // Peter, Peterson.
    expect(&s, "Patient?name:contains=ETE", &["Patient/p1", "Patient/p4"]).await;
    // Comma is OR, repetition is AND.
    expect(&s, "Patient?family=Chalmers,Peterson", &["Patient/p1", "Patient/p2", "Patient/p4"]).await;
    expect(&s, "Patient?given=peter&family=chalmers", &["Patient/p1"]).await;
    expect(&s, "Patient?given=jane&family=peterson", &[]).await;
    expect(&s, "Patient?address-city=springfield", &["Patient/p1"]).await;
    expect(&s, "Organization?name=acme", &["Organization/o1"]).await;
    // An escaped comma is part of the value.
    expect(&s, "Patient?family=Chalmers%5C,Peterson", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_parameters() {
    let s = loaded("search-token").await;
    expect(&s, "Patient?gender=female", &["Patient/p2", "Patient/p3"]).await;
    expect(&s, "Patient?identifier=http://hospital.example.org/mrn|12345", &["Patient/p1"]).await;
    expect(&s, "Patient?identifier=12345", &["Patient/p1"]).await;
    expect(&s, "Patient?identifier=http://other.example.org|12345", &[]).await;
    // system| : any code in the system.
    expect(&s, "Patient?identifier=http://hospital.example.org/mrn|", &["Patient/p1", "Patient/p2"]).await;
    expect(
        &s,
        "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
        &["Patient/p1"],
    )
    .await;
    expect(&s, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|67890", &[])
        .await;
    expect(
        &s,
        "Observation?code=http://loinc.org|8867-4",
        &["Observation/obs1", "Observation/obs3", "Observation/obs6"],
    )
    .await;
    expect(
        &s,
        "Observation?code=8867-4,8302-2",
        &["Observation/obs1", "Observation/obs3", "Observation/obs5", "Observation/obs6"],
    )
    .await;
    expect(&s, "Observation?code:text=heart", &["Observation/obs1", "Observation/obs3", "Observation/obs6"])
        .await;
    expect(&s, "Observation?code:text=blood pressure", &["Observation/obs2", "Observation/obs7"]).await;
    expect(&s, "Observation?status:not=final", &["Observation/obs3", "Observation/obs5"]).await;
    expect(&s, "Patient?active=true", &["Patient/p1"]).await;
    expect(&s, "Patient?gender:missing=true", &["Patient/p4"]).await;
    expect(&s, "Patient?gender:missing=false", &["Patient/p1", "Patient/p2", "Patient/p3"]).await;
    expect(&s, "Observation?_tag=http://example.org/tags|vip", &["Observation/obs1"]).await;
    expect(&s, "Patient?_tag=vip", &["Patient/p1"]).await;
    expect(&s, "Patient?_profile=http://example.org/StructureDefinition/special-patient", &["Patient/p1"])
        .await;
    expect(
        &s,
        "Patient?_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R",
        &["Patient/p1"],
    )
    .await;
    expect(&s, "Patient?_id=p1,p3", &["Patient/p1", "Patient/p3"]).await;
    expect(&s, "Condition?code=http://hl7.org/fhir/sid/icd-10-cm|I10", &["Condition/c2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_parameters_and_prefixes() {
    let s = loaded("search-date").await;
    expect(&s, "Patient?birthdate=1974-12-25", &["Patient/p1"]).await;
    expect(&s, "Patient?birthdate=1974", &["Patient/p1"]).await;
    // eq: the search range must contain the value's whole range (March 1980 is not in one day).
    expect(&s, "Patient?birthdate=1980-03-15", &[]).await;
    expect(&s, "Patient?birthdate=1980-03", &["Patient/p2"]).await;
    expect(&s, "Patient?birthdate=1980", &["Patient/p2"]).await;
    expect(&s, "Patient?birthdate=ne1974-12-25", &["Patient/p2", "Patient/p3", "Patient/p4"]).await;
    expect(&s, "Patient?birthdate=lt1975", &["Patient/p1", "Patient/p4"]).await;
    expect(&s, "Patient?birthdate=le1974-12-25", &["Patient/p1", "Patient/p4"]).await;
    expect(&s, "Patient?birthdate=ge2001-07-04", &["Patient/p3"]).await;
    // gt: some of the value's range lies after the search range (the rest of March 1980).
    expect(&s, "Patient?birthdate=gt1980-03-15", &["Patient/p2", "Patient/p3"]).await;
    // sa/eb: the whole value lies after/before.
    expect(&s, "Patient?birthdate=sa1980-03-15", &["Patient/p3"]).await;
    expect(&s, "Patient?birthdate=eb1975-01-01", &["Patient/p1", "Patient/p4"]).await;
    let approximate = entries(&search(&s, "Patient?birthdate=ap1974-12-24").await, "match");
    assert!(
        approximate.contains(&"Patient/p1".to_string()) && !approximate.contains(&"Patient/p3".to_string())
    );
    // Two prefixes on one parameter: a range. obs3's Period lies in March 2020.
    expect(
        &s,
        "Observation?date=ge2020-03-01&date=lt2020-04-01",
        &["Observation/obs1", "Observation/obs3", "Observation/obs7"],
    )
    .await;
    expect(&s, "Observation?date=2020-03", &["Observation/obs1", "Observation/obs3", "Observation/obs7"])
        .await;
    expect(&s, "Observation?date=2020-03-15T10:00:00Z", &["Observation/obs1"]).await;
    expect(&s, "Observation?date=2020-03-15T10:00:00%2B02:00", &[]).await;
    expect(&s, "Observation?date=gt2021-06-01", &["Observation/obs6"]).await;
    expect(&s, "Observation?date=ge2021-06-01", &["Observation/obs2", "Observation/obs6"]).await;
    expect(&s, "Observation?date:missing=true", &["Observation/obs5"]).await;
    expect(&s, "Encounter?date=2021-06-01", &["Encounter/e1"]).await;
    // _lastUpdated: everything was written in the last minute.
    let all_patients = ["Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"];
    expect(&s, "Patient?_lastUpdated=gt2020-01-01", &all_patients).await;
    expect(&s, "Patient?_lastUpdated=lt2020-01-01", &[]).await;
    expect(&s, "Patient?_lastUpdated=gt2020-01-01&_lastUpdated=lt2999-01-01", &all_patients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantity_number_uri_and_composite_parameters() {
    let s = loaded("search-quantity").await;
    // No unit: the value as written (72 means [71.5, 72.5)).
    expect(&s, "Observation?value-quantity=72", &["Observation/obs1"]).await;
    expect(&s, "Observation?value-quantity=72.4", &[]).await;
    expect(&s, "Observation?value-quantity=72|http://unitsofmeasure.org|/min", &["Observation/obs1"]).await;
    // UCUM units convert: 70 kg is 70000 g.
    expect(&s, "Observation?value-quantity=70|http://unitsofmeasure.org|kg", &["Observation/obs4"]).await;
    expect(&s, "Observation?value-quantity=gt80||/min", &["Observation/obs3"]).await;
    expect(
        &s,
        "Observation?value-quantity=le72|http://unitsofmeasure.org|/min",
        &["Observation/obs1", "Observation/obs6"],
    )
    .await;
    // ap: within 10% (63..77).
    expect(&s, "Observation?value-quantity=ap70|http://unitsofmeasure.org|/min", &["Observation/obs1"]).await;
    expect(
        &s,
        "Observation?component-value-quantity=140|http://unitsofmeasure.org|mm[Hg]",
        &["Observation/obs7"],
    )
    .await;
    // Composite: both parts must hold for the same component.
    expect(
        &s,
        "Observation?code-value-quantity=http://loinc.org|8867-4$gt70|http://unitsofmeasure.org|/min",
        &["Observation/obs1", "Observation/obs3"],
    )
    .await;
    expect(&s, "Observation?component-code-value-quantity=http://loinc.org|8462-4$90|http://unitsofmeasure.org|mm[Hg]", &["Observation/obs7"]).await;
    expect(&s, "Observation?component-code-value-quantity=http://loinc.org|8480-6$90|http://unitsofmeasure.org|mm[Hg]", &[]).await;
    // uri: exact, :below (a prefix of the value), :above (the value is a prefix of the search).
    expect(&s, "ValueSet?url=http://example.org/fhir/ValueSet/vs1", &["ValueSet/vs1"]).await;
    expect(&s, "ValueSet?url:below=http://example.org/fhir", &["ValueSet/vs1", "ValueSet/vs2"]).await;
    expect(&s, "ValueSet?url:above=http://example.org/fhir/ValueSet/vs1/extra", &["ValueSet/vs1"]).await;
    expect(&s, "ValueSet?url=http://example.org/fhir", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_parameters_chains_and_reverse_chains() {
    let s = loaded("search-reference").await;
    expect(&s, "Observation?subject=Patient/p1", &["Observation/obs1", "Observation/obs2"]).await;
    expect(&s, "Observation?subject=p1", &["Observation/obs1", "Observation/obs2"]).await;
    expect(&s, "Observation?subject:Patient=p1", &["Observation/obs1", "Observation/obs2"]).await;
    expect(&s, "Observation?subject:Group=g1", &["Observation/obs6"]).await;
    expect(
        &s,
        &format!("Observation?subject={}/Patient/p1", s.base),
        &["Observation/obs1", "Observation/obs2"],
    )
    .await;
    expect(&s, "Observation?patient=p2", &["Observation/obs3", "Observation/obs5"]).await;
    expect(&s, "Observation?subject:identifier=http://hospital.example.org/mrn|12345", &["Observation/obs2"])
        .await;
    expect(&s, "Observation?encounter:missing=false", &["Observation/obs2"]).await;
    // Chains.
    expect(
        &s,
        "Observation?subject.name=chalmers",
        &["Observation/obs1", "Observation/obs2", "Observation/obs3", "Observation/obs5"],
    )
    .await;
    expect(
        &s,
        "Observation?subject:Patient.birthdate=lt1975",
        &["Observation/obs1", "Observation/obs2", "Observation/obs7"],
    )
    .await;
    expect(
        &s,
        "Observation?subject:Patient.organization.name=acme",
        &["Observation/obs1", "Observation/obs2", "Observation/obs4"],
    )
    .await;
    expect(&s, "Encounter?subject.gender=male", &["Encounter/e1"]).await;
    expect(
        &s,
        "Observation?subject:Patient.name=chalmers&code=8867-4",
        &["Observation/obs1", "Observation/obs3"],
    )
    .await;
    // Reverse chains.
    expect(&s, "Patient?_has:Observation:patient:code=8867-4", &["Patient/p1", "Patient/p2"]).await;
    expect(&s, "Patient?_has:Observation:subject:status=preliminary", &["Patient/p2"]).await;
    expect(&s, "Patient?_has:Condition:subject:code=E11.9&gender=male", &["Patient/p1"]).await;
    expect(
        &s,
        "Organization?_has:Patient:organization:_has:Observation:subject:code=29463-7",
        &["Organization/o1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn includes_and_reverse_includes() {
    let s = loaded("search-include").await;
    let bundle = search(&s, "Observation?_id=obs1&_include=Observation:subject").await;
    assert_eq!(entries(&bundle, "match"), ["Observation/obs1"]);
    assert_eq!(entries(&bundle, "include"), ["Patient/p1"]);
    // A target type narrows: the group is not included.
    let bundle = search(&s, "Observation?code=8867-4&_include=Observation:subject:Patient").await;
    assert_eq!(entries(&bundle, "include"), ["Patient/p1", "Patient/p2"]);
    let bundle = search(&s, "Observation?code=8867-4&_include=Observation:subject").await;
    assert_eq!(entries(&bundle, "include"), ["Group/g1", "Patient/p1", "Patient/p2"]);
    let bundle = search(&s, "Observation?_id=obs2&_include=Observation:*").await;
    assert_eq!(entries(&bundle, "include"), ["Encounter/e1", "Patient/p1"]);
    let bundle = search(&s, "Patient?_id=p1&_revinclude=Observation:subject").await;
    assert_eq!(entries(&bundle, "match"), ["Patient/p1"]);
    assert_eq!(entries(&bundle, "include"), ["Observation/obs1", "Observation/obs2"]);
    // :iterate follows the included resources' references too.
    let bundle =
        search(&s, "Patient?_id=p1&_revinclude=Observation:subject&_include:iterate=Observation:encounter")
            .await;
    assert_eq!(entries(&bundle, "include"), ["Encounter/e1", "Observation/obs1", "Observation/obs2"]);
    let bundle =
        search(&s, "Observation?_id=obs2&_include=Observation:encounter&_include:iterate=Encounter:subject")
            .await;
    assert_eq!(entries(&bundle, "include"), ["Encounter/e1", "Patient/p1"]);
    // Without :iterate, the second step is not taken.
    let bundle =
        search(&s, "Observation?_id=obs2&_include=Observation:encounter&_include=Encounter:subject").await;
    assert_eq!(entries(&bundle, "include"), ["Encounter/e1"]);
    // * on its own: every reference of the matches, every resource referring to them.
    let bundle = search(&s, "Patient?_id=p1&_include=*").await;
    assert_eq!(entries(&bundle, "include"), ["Organization/o1", "Practitioner/dr1"]);
    let bundle = search(&s, "Patient?_id=p2&_revinclude=*").await;
    assert_eq!(entries(&bundle, "include"), ["Condition/c2", "Observation/obs3", "Observation/obs5"]);
    let bad = s.get("Patient?_include=Patient:name").await;
    expect_outcome(bad, 400, "not-supported", "not a reference parameter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorting() {
    let s = loaded("search-sort").await;
    let order = |bundle: &Value| in_order(bundle);
    assert_eq!(
        order(&search(&s, "Patient?_sort=birthdate").await),
        ["Patient/p4", "Patient/p1", "Patient/p2", "Patient/p3"]
    );
    assert_eq!(
        order(&search(&s, "Patient?_sort=-birthdate").await),
        ["Patient/p3", "Patient/p2", "Patient/p1", "Patient/p4"]
    );
    // Ties on the first key are broken by the second: the Chalmers, younger first.
    assert_eq!(
        order(&search(&s, "Patient?_sort=family,-birthdate").await),
        ["Patient/p2", "Patient/p1", "Patient/p3", "Patient/p4"]
    );
    // Resources without a value come last in both directions.
    assert_eq!(
        order(&search(&s, "Observation?_sort=date").await),
        [
            "Observation/obs4",
            "Observation/obs3",
            "Observation/obs1",
            "Observation/obs7",
            "Observation/obs2",
            "Observation/obs6",
            "Observation/obs5"
        ]
    );
    assert_eq!(
        order(&search(&s, "Observation?_sort=-date").await),
        [
            "Observation/obs6",
            "Observation/obs2",
            "Observation/obs7",
            "Observation/obs1",
            "Observation/obs3",
            "Observation/obs4",
            "Observation/obs5"
        ]
    );
    assert_eq!(
        order(&search(&s, "Patient?_sort=-_id").await),
        ["Patient/p4", "Patient/p3", "Patient/p2", "Patient/p1"]
    );
    // Written in population order.
    assert_eq!(
        order(&search(&s, "Patient?_sort=_lastUpdated").await),
        ["Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"]
    );
    expect_outcome(s.get("Patient?_sort=nonsense").await, 400, "not-supported", "nonsense").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_links_are_stable_while_data_changes() {
    let s = loaded("search-paging").await;
    // Unsorted: next and previous walk the same order.
    let first = search(&s, "Patient?_count=3").await;
    assert_eq!(first["entry"].as_array().unwrap().len(), 3);
    assert!(link(&first, "previous").is_none());
    let second = search(&s, &relative(&s, &link(&first, "next").unwrap())).await;
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert!(link(&second, "next").is_none());
    let mut all = in_order(&first);
    all.extend(in_order(&second));
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, ["Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4"]);
    let back = search(&s, &relative(&s, &link(&second, "previous").unwrap())).await;
    assert_eq!(in_order(&back), in_order(&first));

    // Sorted by date, two per page: obs4, obs3 | obs1, obs7 | obs2, obs6 | obs5.
    let page1 = search(&s, "Observation?_sort=date&_count=2").await;
    assert_eq!(in_order(&page1), ["Observation/obs4", "Observation/obs3"]);
    // Meanwhile a new observation sorts before everything, and obs7 is deleted.
    let early = observation(
        "obs0",
        "Patient/p1",
        "8867-4",
        "Heart rate",
        "final",
        json!({"effectiveDateTime": "2000-01-01"}),
        Some((70, "/min")),
    );
    assert_eq!(s.put("Observation/obs0", &early).await.status(), 201);
    assert_eq!(s.delete("Observation/obs7").await.status(), 204);
    // The next page continues after obs3: nothing repeated, nothing skipped.
    let page2 = search(&s, &relative(&s, &link(&page1, "next").unwrap())).await;
    assert_eq!(in_order(&page2), ["Observation/obs1", "Observation/obs2"]);
    let page3 = search(&s, &relative(&s, &link(&page2, "next").unwrap())).await;
    assert_eq!(in_order(&page3), ["Observation/obs6", "Observation/obs5"]);
    assert!(link(&page3, "next").is_none());
    // Previous from page 3 gives the two before obs6 in the current order.
    let back = search(&s, &relative(&s, &link(&page3, "previous").unwrap())).await;
    assert_eq!(in_order(&back), ["Observation/obs1", "Observation/obs2"]);
    // The self link reproduces the page.
    let again = search(&s, &relative(&s, &link(&page2, "self").unwrap())).await;
    assert_eq!(in_order(&again), in_order(&page2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_elements_and_total() {
    let s = loaded("search-summary").await;
    let count = search(&s, "Patient?_summary=count").await;
    assert_eq!(count["total"], 4);
    assert!(count.get("entry").is_none());
    let bundle = search(&s, "Patient?_id=p1&_summary=true").await;
    let patient = &bundle["entry"][0]["resource"];
    assert_eq!(patient["birthDate"], "1974-12-25");
    assert!(
        patient.get("contact").is_none()
            && patient.get("communication").is_none()
            && patient.get("text").is_none()
    );
    assert!(patient["meta"]["tag"].as_array().unwrap().iter().any(|t| t["code"] == "SUBSETTED"));
    let bundle = search(&s, "Patient?_id=p1&_summary=data").await;
    let patient = &bundle["entry"][0]["resource"];
    assert!(patient.get("text").is_none() && patient.get("contact").is_some());
    let bundle = search(&s, "Patient?_id=p1&_summary=text").await;
    let patient = &bundle["entry"][0]["resource"];
    assert!(patient.get("text").is_some() && patient.get("birthDate").is_none());
    let bundle = search(&s, "Patient?_id=p1&_elements=birthDate,gender").await;
    let patient = &bundle["entry"][0]["resource"];
    assert_eq!(patient["gender"], "male");
    assert!(patient.get("name").is_none() && patient.get("id").is_some());
    // _total: accurate on a partial page; none leaves it out.
    assert_eq!(search(&s, "Patient?_count=1&_total=accurate").await["total"], 4);
    assert!(search(&s, "Patient?_count=1&_total=none").await.get("total").is_none());
    // Reads shape the same way.
    let read = json(s.get("Patient/p1?_elements=gender").await).await;
    assert!(read.get("name").is_none() && read["gender"] == "male");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_update_and_delete() {
    let s = loaded("search-conditional").await;
    let mrn = "http://hospital.example.org/mrn";
    let new_patient = json!({"resourceType": "Patient", "name": [{"family": "Newman"}],
                             "identifier": [{"system": mrn, "value": "55555"}]});
    // One match: nothing created, the existing one returned.
    let existing = s
        .send(
            Method::POST,
            "Patient",
            Some(&new_patient),
            &[("If-None-Exist", &format!("identifier={mrn}|12345"))],
        )
        .await;
    assert_eq!(existing.status(), 200);
    assert_eq!(json(existing).await["id"], "p1");
    // No match: created.
    let created = s
        .send(
            Method::POST,
            "Patient",
            Some(&new_patient),
            &[("If-None-Exist", &format!("identifier={mrn}|55555"))],
        )
        .await;
    assert_eq!(created.status(), 201);
    let again = s
        .send(
            Method::POST,
            "Patient",
            Some(&new_patient),
            &[("If-None-Exist", &format!("identifier={mrn}|55555"))],
        )
        .await;
    assert_eq!(again.status(), 200, "the second identical conditional create finds the first");
    // Several matches: 412.
    let several =
        s.send(Method::POST, "Patient", Some(&new_patient), &[("If-None-Exist", "family=chalmers")]).await;
    expect_outcome(several, 412, "multiple-matches", "").await;

    // Conditional update: one match updates it, whatever id the body lacks.
    let mut jane = json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Jane", "Q"]}],
                          "identifier": [{"system": mrn, "value": "67890"}], "gender": "female"});
    let updated = s.put(&format!("Patient?identifier={mrn}|67890"), &jane).await;
    assert_eq!(updated.status(), 200);
    let updated = json(updated).await;
    assert_eq!((updated["id"].as_str(), updated["meta"]["versionId"].as_str()), (Some("p2"), Some("2")));
    // A body id that is not the match's: 400.
    jane["id"] = json!("someone-else");
    expect_outcome(s.put(&format!("Patient?identifier={mrn}|67890"), &jane).await, 400, "invalid", "").await;
    // No match: created.
    let lone = json!({"resourceType": "Patient", "identifier": [{"system": mrn, "value": "77777"}]});
    assert_eq!(s.put(&format!("Patient?identifier={mrn}|77777"), &lone).await.status(), 201);
    // Several: 412.
    expect_outcome(s.put("Patient?family=chalmers", &lone).await, 412, "multiple-matches", "").await;

    // Conditional delete: several refused, one deleted, none is a no-op.
    expect_outcome(s.delete("Patient?family=chalmers").await, 412, "multiple-matches", "").await;
    assert_eq!(s.delete(&format!("Patient?identifier={mrn}|12345")).await.status(), 204);
    assert_eq!(s.get("Patient/p1").await.status(), 410);
    assert_eq!(s.delete(&format!("Patient?identifier={mrn}|12345")).await.status(), 204);
    expect(&s, "Patient?family=chalmers", &["Patient/p2"]).await;
    // A condition that cannot be evaluated is refused, never ignored.
    expect_outcome(s.delete("Patient?no-such-parameter=1").await, 400, "not-supported", "no-such-parameter")
        .await;
    expect_outcome(s.delete("Patient?_count=1").await, 400, "required", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_and_compartments() {
    let s = loaded("search-everything").await;
    let bundle = json(s.get("Patient/p1/$everything").await).await;
    // The patient, its compartment, and what those refer to.
    let mut all = in_order(&bundle);
    all.sort();
    assert_eq!(
        all,
        [
            "Condition/c1",
            "Encounter/e1",
            "Observation/obs1",
            "Observation/obs2",
            "Organization/o1",
            "Patient/p1",
            "Practitioner/dr1"
        ]
    );
    let only = json(s.get("Patient/p1/$everything?_type=Observation,Condition").await).await;
    let mut only = in_order(&only);
    only.sort();
    assert_eq!(only, ["Condition/c1", "Observation/obs1", "Observation/obs2"]);
    // Paging.
    let page = json(s.get("Patient/p1/$everything?_count=4").await).await;
    assert_eq!(page["entry"].as_array().unwrap().len(), 4);
    let rest = json(s.get(&relative(&s, &link(&page, "next").unwrap())).await).await;
    let mut paged = in_order(&page);
    paged.extend(in_order(&rest));
    paged.sort();
    assert_eq!(paged, all);
    // _since: only what changed since.
    let now = chrono_now(&s).await;
    let mut changed = population().into_iter().find(|r| r["id"] == "obs2").unwrap();
    changed["status"] = json!("amended");
    assert_eq!(s.put("Observation/obs2", &changed).await.status(), 200);
    let since = json(s.get(&format!("Patient/p1/$everything?_since={now}")).await).await;
    assert_eq!(in_order(&since), ["Observation/obs2"]);
    assert_eq!(s.get("Patient/nobody/$everything").await.status(), 404);
    // Compartment search.
    expect(&s, "Patient/p1/Observation", &["Observation/obs1", "Observation/obs2"]).await;
    expect(&s, "Patient/p1/Observation?code=8480-6", &["Observation/obs2"]).await;
    expect(&s, "Patient/p2/Condition", &["Condition/c2"]).await;
    expect_outcome(s.get("Patient/p1/Organization").await, 400, "", "compartment").await;
}

/// The server's clock, read from a fresh write's lastUpdated (so `_since` needs no sleeping).
async fn chrono_now(s: &TestServer) -> String {
    let marker = json!({"resourceType": "Basic", "code": {"text": "clock"}});
    let created = json(s.post("Basic", &marker).await).await;
    created["meta"]["lastUpdated"].as_str().unwrap().replace('+', "%2B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_lenient_or_strict_and_post_search() {
    let s = loaded("search-strict").await;
    // Lenient by default: ignored, and the self link shows what was used.
    let bundle = search(&s, "Patient?foo=bar&family=peterson").await;
    assert_eq!(entries(&bundle, "match"), ["Patient/p4"]);
    let self_link = link(&bundle, "self").unwrap();
    assert!(self_link.contains("family=peterson") && !self_link.contains("foo"), "{self_link}");
    let strict = s.send(Method::GET, "Patient?foo=bar", None, &[("Prefer", "handling=strict")]).await;
    expect_outcome(strict, 400, "not-supported", "foo").await;
    // Bad values are always an error.
    expect_outcome(s.get("Patient?birthdate=yesterday").await, 400, "", "birthdate").await;
    expect_outcome(s.get("Patient?_count=many").await, 400, "", "_count").await;
    expect_outcome(s.get("Patient?family:fuzzy=x").await, 400, "", "fuzzy").await;
    expect_outcome(s.get("Observation?value-quantity=lots").await, 400, "", "value-quantity").await;
    expect_outcome(s.get("Observation?value-quantity=72||/min|x").await, 400, "", "4 parts").await;
    // `_has` is never a parameter of its own: without its parts it is malformed, not unknown.
    expect_outcome(s.get("Patient?_has=x").await, 400, "", "_has:Type:reference:parameter").await;
    // POST [type]/_search with a form body.
    let response = s
        .client
        .post(s.url("Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=chalmers&gender=female")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(entries(&json(response).await, "match"), ["Patient/p2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_updates_and_deletes() {
    let s = loaded("search-updates").await;
    let mut carl = population().into_iter().find(|r| r["id"] == "p4").unwrap();
    carl["name"][0]["family"] = json!("Petersen");
    carl["gender"] = json!("male");
    assert_eq!(s.put("Patient/p4", &carl).await.status(), 200);
    expect(&s, "Patient?family=peterson", &[]).await;
    expect(&s, "Patient?family=petersen", &["Patient/p4"]).await;
    expect(&s, "Patient?gender=male", &["Patient/p1", "Patient/p4"]).await;
    expect(&s, "Patient?gender:missing=true", &[]).await;
    assert_eq!(s.delete("Patient/p4").await.status(), 204);
    expect(&s, "Patient?family=petersen", &[]).await;
    expect(&s, "Patient?birthdate=1950", &[]).await;
    expect(&s, "Observation?subject=Patient/p4", &["Observation/obs7"]).await;
    expect(&s, "Observation?subject:Patient.name=petersen", &[]).await;
    // Re-created after the delete: found again.
    assert_eq!(s.put("Patient/p4", &carl).await.status(), 201);
    expect(&s, "Patient?family=petersen", &["Patient/p4"]).await;
}
