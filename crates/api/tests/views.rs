//! `ViewDefinition/$run` and the known views, over a small record whose expected rows are
//! written out below.

use chartroom_api::{Api, ApiConfig, Method, Request, Response};
use serde_json::{Value, json};

fn record() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-02",
            "name": [{"family": "Okafor", "given": ["Ada"]}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1985-06-30",
            "name": [{"family": "Lind", "given": ["Bo"]}]}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2024-03-01T10:00:00Z", "end": "2024-03-05T09:00:00Z"}}),
        json!({"resourceType": "Encounter", "id": "e2", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p2"},
            "period": {"start": "2024-04-01T10:00:00Z", "end": "2024-04-01T10:30:00Z"}}),
    ]
}

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
    views: std::path::PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = testkit::temp_dir(name);
        let views = dir.join("views");
        std::fs::create_dir_all(&views).unwrap();
        let store = testkit::open_store("views", &dir.join("data"));
        let api = Api::new(store, ApiConfig { views_dir: Some(views.clone()), ..ApiConfig::default() });
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fixture = Fixture { api, runtime, views };
        for resource in record() {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            let response = fixture.call(Method::Put, &path, "", Some(&resource));
            assert!(response.status < 300, "{path}: {}", text(&response));
        }
        fixture
    }

    fn call(&self, method: Method, path: &str, query: &str, body: Option<&Value>) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            body: body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    fn get(&self, path: &str, query: &str) -> Response {
        self.call(Method::Get, path, query, None)
    }

    fn get_accepting(&self, path: &str, query: &str, accept: &str) -> Response {
        let request = Request {
            method: Some(Method::Get),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            accept: Some(accept.into()),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(response.body.as_deref().unwrap_or_default()).into_owned()
}

fn rows(response: &Response) -> Vec<Value> {
    assert_eq!(response.status, 200, "{}", text(response));
    serde_json::from_slice::<Value>(response.body.as_deref().unwrap()).unwrap().as_array().unwrap().clone()
}

#[test]
fn a_builtin_view_runs_over_the_record_in_each_format() {
    let fixture = Fixture::new("views-builtin");
    let patients = rows(&fixture.get("ViewDefinition/patients/$run", ""));
    let ids: Vec<&str> = patients.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(patients[0]["family"], "Okafor");
    assert_eq!(patients[0]["birth_date"], "1970-01-02");

    let encounters = rows(&fixture.get("ViewDefinition/encounters/$run", ""));
    let stay = encounters.iter().find(|r| r["id"] == "e1").unwrap();
    assert_eq!(stay["patient_id"], "p1");
    assert_eq!(stay["length_of_stay_days"], 4);

    let csv = fixture.get("ViewDefinition/patients/$run", "_format=csv");
    assert_eq!(csv.content_type, Some("text/csv"));
    let csv = text(&csv);
    assert!(csv.lines().next().unwrap().starts_with("id,mrn,family"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
    let ndjson = fixture.get("ViewDefinition/patients/$run", "_format=ndjson");
    assert_eq!(text(&ndjson).lines().count(), 2);
    let parquet = fixture.get("ViewDefinition/patients/$run", "_format=parquet");
    assert!(parquet.body.as_deref().unwrap().starts_with(b"PAR1"));
}

/// Without `_format`, `Accept` chooses: the first listed format of `$run`, by quality; a
/// `_format` wins over it; an Accept naming none of them is a 406.
#[test]
fn accept_chooses_the_format_when_format_is_not_given() {
    let fixture = Fixture::new("views-accept");
    let run = "ViewDefinition/patients/$run";
    let csv = fixture.get_accepting(run, "", "text/csv");
    assert_eq!((csv.status, csv.content_type), (200, Some("text/csv")));
    assert!(text(&csv).starts_with("id,mrn,family"));
    let ndjson = fixture.get_accepting(run, "", "application/x-ndjson");
    assert_eq!(text(&ndjson).lines().count(), 2);
    let parquet = fixture.get_accepting(run, "", "application/vnd.apache.parquet");
    assert!(parquet.body.as_deref().unwrap().starts_with(b"PAR1"));
    let preferred = fixture.get_accepting(run, "", "application/json;q=0.5, text/csv;q=0.9");
    assert_eq!(preferred.content_type, Some("text/csv"));
    assert_eq!(rows(&fixture.get_accepting(run, "", "*/*")).len(), 2);
    assert_eq!(rows(&fixture.get_accepting(run, "_format=json", "text/csv")).len(), 2);
    let refused = fixture.get_accepting(run, "", "application/xml");
    assert_eq!(refused.status, 406, "{}", text(&refused));
    assert!(text(&refused).contains("text/csv"));
}

#[test]
fn a_run_can_be_limited_to_a_patient_a_time_and_a_number_of_rows() {
    let fixture = Fixture::new("views-scope");
    let mine = rows(&fixture.get("ViewDefinition/encounters/$run", "patient=Patient/p2"));
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], "e2");
    assert_eq!(rows(&fixture.get("ViewDefinition/patients/$run", "patient=p1")).len(), 1);
    assert_eq!(rows(&fixture.get("ViewDefinition/patients/$run", "_limit=1")).len(), 1);
    assert!(rows(&fixture.get("ViewDefinition/patients/$run", "_since=2999-01-01T00:00:00Z")).is_empty());
    assert_eq!(rows(&fixture.get("ViewDefinition/patients/$run", "_since=2000-01-01T00:00:00Z")).len(), 2);
}

#[test]
fn inline_and_saved_views_and_inline_resources() {
    let fixture = Fixture::new("views-inline");
    let view = json!({"resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [{"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "sex", "path": "gender"}]}]});
    let run = fixture.call(Method::Post, "ViewDefinition/$run", "", Some(&view));
    assert_eq!(rows(&run), [json!({"id": "p1", "sex": "female"}), json!({"id": "p2", "sex": "male"})]);
    // As a Parameters body, over inline resources instead of the record.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": view},
        {"name": "resource", "resource": {"resourceType": "Patient", "id": "x9", "gender": "other"}},
        {"name": "resource", "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "t"}}}
    ]});
    let run = fixture.call(Method::Post, "ViewDefinition/$run", "", Some(&parameters));
    assert_eq!(rows(&run), [json!({"id": "x9", "sex": "other"})]);
    // Saved in the views folder: listed, readable, runnable by name or by reference.
    std::fs::write(fixture.views.join("sexes.json"), serde_json::to_vec(&view).unwrap()).unwrap();
    let listed: Value =
        serde_json::from_slice(fixture.get("ViewDefinition", "").body.as_deref().unwrap()).unwrap();
    let names: Vec<&str> =
        listed["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"ViewDefinition/patients") && names.contains(&"ViewDefinition/sexes"),
        "{names:?}"
    );
    assert_eq!(fixture.get("ViewDefinition/sexes", "").status, 200);
    assert_eq!(rows(&fixture.get("ViewDefinition/sexes/$run", "")).len(), 2);
    let by_reference = json!({"resourceType": "Parameters", "parameter": [{"name": "viewReference", "valueReference": {"reference": "ViewDefinition/sexes"}}]});
    let run = fixture.call(Method::Post, "ViewDefinition/$run", "", Some(&by_reference));
    assert_eq!(rows(&run).len(), 2, "{}", text(&run));
}

#[test]
fn bad_views_and_inputs_are_refused_saying_what_is_wrong() {
    let fixture = Fixture::new("views-errors");
    let expect = |response: Response, status: u16, says: &str| {
        assert_eq!(response.status, status, "{}", text(&response));
        let outcome = text(&response);
        assert!(outcome.contains("OperationOutcome") && outcome.contains(says), "{outcome}");
    };
    expect(fixture.get("ViewDefinition/nonesuch/$run", ""), 404, "nonesuch");
    expect(fixture.get("ViewDefinition/a.b/$run", ""), 404, "not known");
    expect(fixture.get("ViewDefinition/patients/$run", "_format=xml"), 400, "_format");
    expect(fixture.get("ViewDefinition/patients/$run", "_since=yesterday"), 400, "_since");
    expect(fixture.get("ViewDefinition/patients/$run", "_limit=-1"), 400, "_limit");
    expect(fixture.get("ViewDefinition/$run", ""), 400, "viewResource");
    let broken = json!({"resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [{"column": [{"name": "id", "path": "id"}, {"name": "id", "path": "gender"}]}]});
    expect(fixture.call(Method::Post, "ViewDefinition/$run", "", Some(&broken)), 400, "select[0].column[1]");
    let many = json!({"resourceType": "ViewDefinition", "resource": "Patient", "status": "active",
        "select": [{"column": [{"name": "given", "path": "name.given"}]}]});
    // One Patient has one given name; a second one makes the column several values.
    let resource = json!({"resourceType": "Patient", "id": "p1", "name": [{"given": ["A", "B"]}]});
    assert!(fixture.call(Method::Put, "Patient/p1", "", Some(&resource)).status < 300);
    expect(fixture.call(Method::Post, "ViewDefinition/$run", "", Some(&many)), 422, "Patient/p1");
}
