//! The terminology operations over HTTP, on built-in terminology (ICD-10-CM, R4 code systems
//! and value sets) and on a ValueSet stored on the server; and the token search modifiers that
//! use them (`:below`, `:above`, `:in`, `:not-in`).

mod common;

use common::{TestServer, expect_outcome, json, start};
use serde_json::{Value, json};

const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const GENDER_CS: &str = "http://hl7.org/fhir/administrative-gender";
const GENDER_VS: &str = "http://hl7.org/fhir/ValueSet/administrative-gender";

fn encode(text: &str) -> String {
    form_encode(text)
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the output parameter `name` (its first `value[x]`).
fn parameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a Value> {
    parameters["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
}

fn expansion_codes(value_set: &Value) -> Vec<String> {
    value_set["expansion"]["contains"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["code"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

async fn server_with_value_set(name: &str) -> TestServer {
    let server = start(name).await;
    // Type 2 diabetes and essential hypertension, by hierarchy and by list.
    let value_set = json!({
        "resourceType": "ValueSet", "id": "cardiometabolic", "status": "active",
        "url": "http://example.org/fhir/ValueSet/cardiometabolic",
        "compose": {"include": [
            {"system": ICD, "filter": [{"property": "concept", "op": "is-a", "value": "E11"}]},
            {"system": ICD, "concept": [{"code": "I10"}]}
        ]}
    });
    assert!(server.put("ValueSet/cardiometabolic", &value_set).await.status().is_success());
    server
}

#[tokio::test]
async fn lookup_on_icd10cm_and_r4_code_systems() {
    let server = start("terminology-lookup").await;
    let response = server.get(&format!("CodeSystem/$lookup?system={}&code=E11.9", encode(ICD))).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(parameter(&body, "display").unwrap(), "Type 2 diabetes mellitus without complications");
    let properties: Vec<(String, String)> = body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "property")
        .map(|p| {
            let parts = p["part"].as_array().unwrap();
            let code = parts.iter().find(|x| x["name"] == "code").unwrap()["valueCode"]
                .as_str()
                .unwrap()
                .to_string();
            let value = parts
                .iter()
                .find(|x| x["name"] == "value")
                .and_then(|x| {
                    x.as_object()
                        .unwrap()
                        .iter()
                        .find(|(k, _)| k.starts_with("value"))
                        .map(|(_, v)| v.to_string())
                })
                .unwrap_or_default();
            (code, value)
        })
        .collect();
    assert!(properties.contains(&("parent".to_string(), "\"E11\"".to_string())), "{properties:?}");
    // E11's Excludes1 applies to E11.9.
    assert!(properties.iter().any(|(c, v)| c == "excludes1" && v.contains("E10.-")), "{properties:?}");
    // An R4 code system, by POSTed Parameters.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "system", "valueUri": GENDER_CS}, {"name": "code", "valueCode": "female"}
    ]});
    let body = json(server.post("CodeSystem/$lookup", &parameters).await).await;
    assert_eq!(parameter(&body, "display").unwrap(), "Female");
    // Unknown code, unknown system, missing code.
    expect_outcome(
        server.get(&format!("CodeSystem/$lookup?system={}&code=E11.99X", encode(ICD))).await,
        404,
        "",
        "E11.99X",
    )
    .await;
    expect_outcome(
        server.get("CodeSystem/$lookup?system=http%3A%2F%2Fexample.org%2Fnone&code=x").await,
        404,
        "",
        "",
    )
    .await;
    expect_outcome(server.get(&format!("CodeSystem/$lookup?system={}", encode(ICD))).await, 400, "", "code")
        .await;
}

#[tokio::test]
async fn validate_code_against_built_in_and_stored_value_sets() {
    let server = server_with_value_set("terminology-validate").await;
    let check = |url: &str, system: &str, code: &str| {
        format!("ValueSet/$validate-code?url={}&system={}&code={}", encode(url), encode(system), encode(code))
    };
    let yes = json(server.get(&check(GENDER_VS, GENDER_CS, "female")).await).await;
    assert_eq!(parameter(&yes, "result"), Some(&json!(true)));
    let no = json(server.get(&check(GENDER_VS, GENDER_CS, "woman")).await).await;
    assert_eq!(parameter(&no, "result"), Some(&json!(false)));
    assert!(parameter(&no, "message").is_some());
    // A wrong display is not valid, and the right one is reported.
    let wrong_display =
        json(server.get(&format!("{}&display=Mann", check(GENDER_VS, GENDER_CS, "male"))).await).await;
    assert_eq!(parameter(&wrong_display, "result"), Some(&json!(false)));
    assert_eq!(parameter(&wrong_display, "display"), Some(&json!("Male")));
    // The stored value set, by URL and as an instance.
    let stored = "http://example.org/fhir/ValueSet/cardiometabolic";
    assert_eq!(
        parameter(&json(server.get(&check(stored, ICD, "E11.65")).await).await, "result"),
        Some(&json!(true))
    );
    assert_eq!(
        parameter(&json(server.get(&check(stored, ICD, "I10")).await).await, "result"),
        Some(&json!(true))
    );
    assert_eq!(
        parameter(&json(server.get(&check(stored, ICD, "E10.9")).await).await, "result"),
        Some(&json!(false))
    );
    let instance = json(
        server
            .get(&format!("ValueSet/cardiometabolic/$validate-code?system={}&code=E11.9", encode(ICD)))
            .await,
    )
    .await;
    assert_eq!(parameter(&instance, "result"), Some(&json!(true)));
    expect_outcome(
        server.get(&check("http://example.org/none", ICD, "E11.9")).await,
        404,
        "",
        "example.org/none",
    )
    .await;
    // CodeSystem/$validate-code: membership of the code system itself.
    let in_system = |code: &str| format!("CodeSystem/$validate-code?url={}&code={code}", encode(ICD));
    assert_eq!(
        parameter(&json(server.get(&in_system("S72.001A")).await).await, "result"),
        Some(&json!(true))
    );
    assert_eq!(
        parameter(&json(server.get(&in_system("S72.001Z")).await).await, "result"),
        Some(&json!(false))
    );
    expect_outcome(server.get("CodeSystem/$validate-code?code=E11.9").await, 400, "", "url").await;
}

#[tokio::test]
async fn expand_with_filters_paging_and_implicit_value_sets() {
    let server = server_with_value_set("terminology-expand").await;
    // Implicit: E11 and everything below it.
    let url = format!("{ICD}?fhir_vs=isa/E11");
    let page =
        json(server.get(&format!("ValueSet/$expand?url={}&count=5&offset=0", encode(&url))).await).await;
    let total = page["expansion"]["total"].as_u64().unwrap();
    assert!(total > 50, "{total}");
    let first = expansion_codes(&page);
    assert_eq!(first.len(), 5);
    let next =
        json(server.get(&format!("ValueSet/$expand?url={}&count=5&offset=5", encode(&url))).await).await;
    let second = expansion_codes(&next);
    assert_eq!(second.len(), 5);
    assert!(first.iter().all(|c| !second.contains(c)));
    assert!(first.iter().chain(&second).all(|c| c.starts_with("E11")));
    // A text filter over all of ICD-10-CM.
    let filtered = json(
        server
            .get(&format!(
                "ValueSet/$expand?url={}&filter={}&count=100",
                encode(&format!("{ICD}?fhir_vs")),
                encode("fracture neck right femur initial closed")
            ))
            .await,
    )
    .await;
    assert!(expansion_codes(&filtered).contains(&"S72.001A".to_string()), "{filtered}");
    // The whole of ICD-10-CM without paging is refused as too costly.
    expect_outcome(
        server.get(&format!("ValueSet/$expand?url={}", encode(&format!("{ICD}?fhir_vs")))).await,
        400,
        "",
        "too costly",
    )
    .await;
    // A stored value set as an instance.
    let stored = json(server.get("ValueSet/cardiometabolic/$expand?count=1000").await).await;
    let codes = expansion_codes(&stored);
    assert!(codes.contains(&"I10".to_string()) && codes.contains(&"E11.9".to_string()));
    assert!(!codes.iter().any(|c| c.starts_with("E10")));
    // A value set in the body.
    let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": {
        "resourceType": "ValueSet", "status": "active",
        "compose": {"include": [{"system": GENDER_CS, "concept": [{"code": "male"}, {"code": "female"}]}]}
    }}]});
    let posted = json(server.post("ValueSet/$expand", &parameters).await).await;
    assert_eq!(expansion_codes(&posted), vec!["male", "female"]);
    expect_outcome(server.get("ValueSet/$expand").await, 400, "", "").await;
}

#[tokio::test]
async fn subsumes_gives_all_four_outcomes() {
    let server = start("terminology-subsumes").await;
    let outcome =
        |a: &str, b: &str| format!("CodeSystem/$subsumes?system={}&codeA={a}&codeB={b}", encode(ICD));
    for (a, b, expected) in [
        ("E11", "E11.9", "subsumes"),
        ("E11.9", "E11", "subsumed-by"),
        ("E11.9", "E11.9", "equivalent"),
        ("E11.9", "I10", "not-subsumed"),
    ] {
        let body = json(server.get(&outcome(a, b)).await).await;
        assert_eq!(parameter(&body, "outcome"), Some(&json!(expected)), "{a} {b}");
    }
}

#[tokio::test]
async fn token_search_modifiers_use_the_terminology() {
    let server = server_with_value_set("terminology-search").await;
    for (id, code) in [
        ("dm", "E11.9"),
        ("dm-kidney", "E11.21"),
        ("t1", "E10.9"),
        ("htn", "I10"),
        ("flu", "J10.1"),
        ("hip", "S72.001A"),
    ] {
        let condition = json!({
            "resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": ICD, "code": code}]}
        });
        assert!(server.put(&format!("Condition/{id}"), &condition).await.status().is_success());
    }
    let ids = |body: Value| -> Vec<String> {
        let mut ids: Vec<String> = body["entry"]
            .as_array()
            .map(|e| e.iter().map(|x| x["resource"]["id"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let search = |query: String| {
        let server = &server;
        async move { ids(json(server.get(&format!("Condition?{query}")).await).await) }
    };
    assert_eq!(
        search(format!("code:below={}", encode(&format!("{ICD}|E11")))).await,
        vec!["dm", "dm-kidney"]
    );
    // E11.21 is below E11.2, which is below E11: a search for E11.21 and its ancestors finds only
    // records coded with one of those.
    assert_eq!(search(format!("code:above={}", encode(&format!("{ICD}|E11.21")))).await, vec!["dm-kidney"]);
    let stored = encode("http://example.org/fhir/ValueSet/cardiometabolic");
    assert_eq!(search(format!("code:in={stored}")).await, vec!["dm", "dm-kidney", "htn"]);
    assert_eq!(search(format!("code:not-in={stored}")).await, vec!["flu", "hip", "t1"]);
    // Thousands of codes (S72 with its seventh characters) are one query.
    assert_eq!(search(format!("code:below={}", encode(&format!("{ICD}|S72")))).await, vec!["hip"]);
    assert_eq!(search(format!("code:below={}", encode(&format!("{ICD}|S70-S79")))).await, vec!["hip"]);
    let s72 = encode(&format!("{ICD}?fhir_vs=isa/S72"));
    assert_eq!(search(format!("code:not-in={s72}")).await, vec!["dm", "dm-kidney", "flu", "htn", "t1"]);
    // A literal reference to a stored value set works as well as its canonical URL.
    assert_eq!(search("code:in=ValueSet/cardiometabolic".to_string()).await, vec!["dm", "dm-kidney", "htn"]);
    // Unknown value set and a :below without a system are refused.
    expect_outcome(server.get("Condition?code:in=http%3A%2F%2Fexample.org%2Fnone").await, 400, "", "none")
        .await;
    expect_outcome(server.get("Condition?code:below=E11").await, 400, "", "system|code").await;
}
