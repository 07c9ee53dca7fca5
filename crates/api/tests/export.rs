//! Bulk export (`$export`): kick-off, polling, the manifest and its files, per scope.

use std::time::Duration;

use chartroom_api::{Api, ApiConfig, Method, Request, Response};
use serde_json::{Value, json};

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    /// Where this fixture's exports are written.
    fn api_config_export_dir(&self) -> std::path::PathBuf {
        EXPORTS.with(|dir| dir.borrow().clone().unwrap())
    }
}

thread_local! {
    /// The export directory of the fixture made last on this thread.
    static EXPORTS: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

fn record() -> Vec<Value> {
    let mut resources = vec![
        json!({"resourceType": "Organization", "id": "org1", "name": "General"}),
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/p2"}}]}),
    ];
    for patient in ["p1", "p2", "p3"] {
        resources.push(json!({"resourceType": "Patient", "id": patient, "managingOrganization": {"reference": "Organization/org1"}}));
        for n in 0..2 {
            resources.push(
                json!({"resourceType": "Observation", "id": format!("{patient}-o{n}"), "status": "final",
                "code": {"text": "pulse"}, "subject": {"reference": format!("Patient/{patient}")}}),
            );
        }
        resources
            .push(json!({"resourceType": "Encounter", "id": format!("{patient}-e"), "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": format!("Patient/{patient}")}}));
    }
    resources
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = testkit::temp_dir(name);
        let store = testkit::open_store("export", &dir.join("data"));
        EXPORTS.with(|exports| *exports.borrow_mut() = Some(dir.join("exports")));
        let api =
            Api::new(store, ApiConfig { export_dir: Some(dir.join("exports")), ..ApiConfig::default() });
        let fixture =
            Fixture { api, runtime: tokio::runtime::Builder::new_current_thread().build().unwrap() };
        for resource in record() {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            assert!(fixture.call(Method::Put, &path, "", Some(&resource), None).status < 300);
        }
        fixture
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Value>,
        prefer: Option<&str>,
    ) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            prefer: prefer.map(str::to_string),
            body: body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    /// Kicks off an export and polls it to its manifest.
    fn export(&self, path: &str, query: &str) -> Value {
        let kickoff = self.call(Method::Get, path, query, None, Some("respond-async"));
        assert_eq!(kickoff.status, 202, "{}", kickoff.body_text());
        let status_url = kickoff.location.clone().unwrap();
        let status_path = status_url.strip_prefix("http://test/fhir/").unwrap().to_string();
        for _ in 0..200 {
            let status = self.call(Method::Get, &status_path, "", None, None);
            match status.status {
                202 => {
                    // Bulk Data clients show X-Progress and wait Retry-After seconds.
                    let header =
                        |name: &str| status.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
                    assert!(header("x-progress").is_some_and(|p| p.contains("resources written")));
                    assert!(header("retry-after").is_some_and(|r| r.parse::<u32>().is_ok()));
                    std::thread::sleep(Duration::from_millis(20))
                }
                200 => return serde_json::from_slice(status.body.as_deref().unwrap()).unwrap(),
                other => panic!("status {other}: {}", status.body_text()),
            }
        }
        panic!("the export did not finish");
    }

    /// Every resource of a manifest's files, as (type, id).
    fn exported(&self, manifest: &Value) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for output in manifest["output"].as_array().unwrap() {
            let url = output["url"].as_str().unwrap();
            let file = self.call(Method::Get, url.strip_prefix("http://test/fhir/").unwrap(), "", None, None);
            assert_eq!(file.status, 200);
            assert_eq!(file.content_type, Some("application/fhir+ndjson"));
            let lines: Vec<Value> =
                file.body_text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
            for line in lines {
                assert_eq!(line["resourceType"], output["type"]);
                found.push((
                    line["resourceType"].as_str().unwrap().to_string(),
                    line["id"].as_str().unwrap().to_string(),
                ));
            }
        }
        found.sort();
        found
    }
}

#[test]
fn a_system_export_holds_every_resource_and_type_filters_narrow_it() {
    let fixture = Fixture::new("export-system");
    let manifest = fixture.export("$export", "");
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["transactionTime"].as_str().is_some());
    assert_eq!(fixture.exported(&manifest).len(), record().len());
    let observations = fixture.export("$export", "_type=Observation");
    let found = fixture.exported(&observations);
    assert_eq!(found.len(), 6);
    assert!(found.iter().all(|(t, _)| t == "Observation"));
    // Nothing changed since the future.
    let later = fixture.export("$export", "_since=2999-01-01T00:00:00Z");
    assert!(fixture.exported(&later).is_empty());
}

#[test]
fn patient_and_group_exports_hold_those_patients_records_only() {
    let fixture = Fixture::new("export-patients");
    // The types of the Patient compartment (Group is one, by its members); Organization is not.
    let all = fixture.exported(&fixture.export("Patient/$export", ""));
    assert_eq!(all.iter().filter(|(t, _)| t == "Patient").count(), 3);
    assert_eq!(all.iter().filter(|(t, _)| t == "Observation").count(), 6);
    assert!(!all.iter().any(|(t, _)| t == "Organization"), "{all:?}");
    // One patient: their resources and what those refer to.
    let one = fixture.exported(&fixture.export("Patient/p1/$export", ""));
    let expected: Vec<(String, String)> = [
        ("Encounter", "p1-e"),
        ("Observation", "p1-o0"),
        ("Observation", "p1-o1"),
        ("Organization", "org1"),
        ("Patient", "p1"),
    ]
    .iter()
    .map(|(t, i)| (t.to_string(), i.to_string()))
    .collect();
    assert_eq!(one, expected);
    let by_parameter = fixture.exported(&fixture.export("Patient/$export", "patient=Patient/p1"));
    assert_eq!(by_parameter, expected);
    let group = fixture.exported(&fixture.export("Group/g1/$export", ""));
    assert!(
        group.iter().all(|(t, id)| t == "Organization" || t == "Group" || id.starts_with("p2")),
        "{group:?}"
    );
    assert!(group.contains(&("Patient".to_string(), "p2".to_string())));
}

#[test]
fn kickoffs_and_polls_that_cannot_be_served_say_why() {
    let fixture = Fixture::new("export-errors");
    let expect = |response: Response, status: u16, says: &str| {
        assert_eq!(response.status, status, "{}", response.body_text());
        assert!(response.body_text().contains(says), "{}", response.body_text());
    };
    expect(fixture.call(Method::Get, "$export", "", None, None), 400, "respond-async");
    expect(
        fixture.call(Method::Get, "$export", "_outputFormat=text/csv", None, Some("respond-async")),
        400,
        "_outputFormat",
    );
    expect(
        fixture.call(Method::Get, "$export", "_type=Nonsense", None, Some("respond-async")),
        400,
        "Nonsense",
    );
    expect(fixture.call(Method::Get, "$export", "_since=soon", None, Some("respond-async")), 400, "_since");
    expect(
        fixture.call(Method::Get, "Patient/nobody/$export", "", None, Some("respond-async")),
        404,
        "nobody",
    );
    expect(
        fixture.call(Method::Get, "$export-status/00000000-0000-0000-0000-000000000000", "", None, None),
        404,
        "not known",
    );
    let escape = fixture.call(Method::Get, "$export-status/../../etc", "", None, None);
    assert!((400..500).contains(&escape.status), "{}", escape.body_text());
    // A finished export can be deleted; then it is gone.
    let kickoff = fixture.call(Method::Get, "$export", "", None, Some("respond-async"));
    let status_path = kickoff.location.unwrap().strip_prefix("http://test/fhir/").unwrap().to_string();
    let job = status_path.rsplit('/').next().unwrap().to_string();
    let escape = fixture.call(Method::Get, &format!("$export-file/{job}/../../x.ndjson"), "", None, None);
    assert!((400..500).contains(&escape.status), "{}", escape.body_text());
    while fixture.call(Method::Get, &status_path, "", None, None).status == 202 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fixture.call(Method::Delete, &status_path, "", None, None).status, 202);
    assert_eq!(fixture.call(Method::Get, &status_path, "", None, None).status, 404);
    // Without an export directory there is no bulk export.
    let dir = testkit::temp_dir("export-none");
    let store = testkit::open_store("export", &dir);
    let api = Api::new(store, ApiConfig::default());
    let request = Request {
        method: Some(Method::Get),
        path: "$export".into(),
        prefer: Some("respond-async".into()),
        ..Default::default()
    };
    let response = fixture.runtime.block_on(api.handle(&request));
    assert_eq!(response.status, 400);
    assert!(response.body_text().contains("not-supported"));
}

/// `_typeFilter`: a type named keeps only what matches one of its queries (repeated or
/// comma-separated, values with commas still encoded); other types are whole; a query of a
/// type the export does not write, of no type, or with an unknown parameter is a 400.
#[test]
fn type_filters_keep_what_matches_their_queries() {
    let fixture = Fixture::new("export-type-filter");
    let ids = |manifest: &Value| -> Vec<String> {
        fixture.exported(manifest).into_iter().map(|(t, id)| format!("{t}/{id}")).collect()
    };
    let one = fixture
        .export("$export", "_type=Observation,Patient&_typeFilter=Observation%3Fsubject%3DPatient%2Fp1");
    let kept = ids(&one);
    assert_eq!(
        kept.iter().filter(|k| k.starts_with("Observation/")).collect::<Vec<_>>(),
        ["Observation/p1-o0", "Observation/p1-o1"]
    );
    assert_eq!(kept.iter().filter(|k| k.starts_with("Patient/")).count(), 3, "{kept:?}");
    // Two queries of one type (OR), one of them with an encoded comma (OR within a value).
    let two = fixture.export(
        "$export",
        "_type=Observation&_typeFilter=Observation%3F_id%3Dp2-o0%252Cp3-o1,Observation%3Fsubject%3DPatient%2Fp1",
    );
    assert_eq!(
        ids(&two),
        ["Observation/p1-o0", "Observation/p1-o1", "Observation/p2-o0", "Observation/p3-o1"]
    );
    // A patient's export narrowed the same way.
    let own = fixture.export("Patient/p2/$export", "_typeFilter=Observation%3F_id%3Dp2-o1");
    let own = ids(&own);
    assert!(
        own.contains(&"Observation/p2-o1".to_string()) && !own.contains(&"Observation/p2-o0".to_string()),
        "{own:?}"
    );
    assert!(own.contains(&"Patient/p2".to_string()), "{own:?}");
    for (query, says) in [
        ("_type=Patient&_typeFilter=Observation%3Fcode%3Dx", "not among the types"),
        ("_typeFilter=Observation", "Type?parameters"),
        ("_typeFilter=Nothing%3Fx%3D1", "not a resource type"),
        ("_typeFilter=Observation%3Fnonsense%3D1", "nonsense"),
    ] {
        let refused = fixture.call(Method::Get, "$export", query, None, Some("respond-async"));
        assert_eq!(refused.status, 400, "{query}: {}", refused.body_text());
        assert!(refused.body_text().contains(says), "{query}: {}", refused.body_text());
    }
}

#[test]
fn a_deidentified_export_holds_codes_and_years_and_counts_what_it_removed() {
    let fixture = Fixture::new("export-deidentified");
    let patient = json!({"resourceType": "Patient", "id": "p9",
        "name": [{"family": "Quintero", "given": ["Rosalind"]}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-41-2231"}],
        "telecom": [{"system": "phone", "value": "312-555-0187"}],
        "address": [{"line": ["88 Larkspur Lane"], "city": "Evanston", "state": "IL", "postalCode": "60201"}],
        "birthDate": "1950-03-04"});
    assert!(fixture.call(Method::Put, "Patient/p9", "", Some(&patient), None).status < 300);
    let note = json!({"resourceType": "Observation", "id": "p9-note", "status": "final", "code": {"text": "note"},
        "subject": {"reference": "Patient/p9"}, "effectiveDateTime": "2024-05-06T10:00:00Z",
        "valueString": "Rosalind Quintero seen 2024-05-06; call 312-555-0187."});
    assert!(fixture.call(Method::Put, "Observation/p9-note", "", Some(&note), None).status < 300);

    let manifest = fixture.export("$export", "_deidentify=safe-harbor");
    let report = &manifest["extension"]["https://chartroom.dev/fhir/bulk/deidentification"];
    assert_eq!(report["profile"], "safe-harbor");
    let class = |code: &str| {
        report["classes"].as_array().unwrap().iter().find(|c| c["class"] == code).unwrap().clone()
    };
    assert!(class("names")["structured"].as_u64().unwrap() >= 1);
    assert!(class("names")["text"].as_u64().unwrap() >= 2);
    assert!(class("ssn")["structured"].as_u64().unwrap() >= 1);
    let mut text = String::new();
    for output in manifest["output"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        text.push_str(
            fixture
                .call(Method::Get, url.strip_prefix("http://test/fhir/").unwrap(), "", None, None)
                .body_text(),
        );
    }
    for gone in [
        "p9",
        "Quintero",
        "Rosalind",
        "999-41-2231",
        "555-0187",
        "Larkspur",
        "Evanston",
        "1950-03-04",
        "2024-05-06",
        "60201",
    ] {
        assert!(!text.contains(gone), "{gone} in the de-identified export:\n{text}");
    }
    assert!(text.contains("\"birthDate\":\"1950\"") && text.contains("\"postalCode\":\"602\""), "{text}");
    // Every patient and observation is there under a code.
    assert_eq!(text.matches("\"resourceType\":\"Patient\"").count(), 4);
    assert_eq!(text.matches("\"resourceType\":\"Observation\"").count(), 7);

    let unknown =
        fixture.call(Method::Get, "$export", "_deidentify=k-anonymity", None, Some("respond-async"));
    assert_eq!(unknown.status, 400, "{}", unknown.body_text());
    assert!(unknown.body_text().contains("k-anonymity"));
    // Without the record's key, no date-shifted extract.
    let no_key = fixture.call(Method::Get, "$export", "_deidentify=date-shift", None, Some("respond-async"));
    assert_eq!(no_key.status, 400, "{}", no_key.body_text());
    assert!(no_key.body_text().contains("key"));
}

/// Kicks off `$import` of `inputs` ((type, url)) on `fixture` and polls it to its manifest.
fn import(fixture: &Fixture, inputs: &[(String, String)]) -> Value {
    let body = json!({
        "resourceType": "Parameters",
        "parameter": std::iter::once(json!({"name": "inputFormat", "valueCode": "application/fhir+ndjson"}))
            .chain(std::iter::once(json!({"name": "inputSource", "valueUri": "http://source.example/fhir"})))
            .chain(inputs.iter().map(|(t, url)| json!({"name": "input", "part": [
                {"name": "type", "valueCode": t}, {"name": "url", "valueUri": url}]})))
            .collect::<Vec<_>>(),
    });
    let kickoff = fixture.call(Method::Post, "$import", "", Some(&body), Some("respond-async"));
    assert_eq!(kickoff.status, 202, "{}", kickoff.body_text());
    let status_url = kickoff.location.clone().unwrap();
    let (path, query) = status_url.strip_prefix("http://test/fhir/").unwrap().split_once('?').unwrap();
    for _ in 0..500 {
        let status = fixture.call(Method::Get, path, query, None, None);
        match status.status {
            202 => std::thread::sleep(Duration::from_millis(20)),
            200 => return serde_json::from_slice(status.body.as_deref().unwrap()).unwrap(),
            other => panic!("status {other}: {}", status.body_text()),
        }
    }
    panic!("the import did not finish");
}

/// Every current resource of a store without its meta, by type and id.
fn everything(fixture: &Fixture) -> std::collections::BTreeMap<String, Value> {
    let mut all = std::collections::BTreeMap::new();
    for resource in record().iter().chain([json!({"resourceType": "Observation", "id": "bad"})].iter()) {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let read = fixture.call(Method::Get, &path, "", None, None);
        if read.status == 200 {
            let mut body: Value = serde_json::from_slice(read.body.as_deref().unwrap()).unwrap();
            body.as_object_mut().unwrap().remove("meta");
            all.insert(path, body);
        }
    }
    all
}

#[test]
fn an_export_imported_into_a_fresh_server_gives_the_same_resources() {
    let source = Fixture::new("import-source");
    let manifest = source.export("$export", "");
    let exports = source.api_config_export_dir();
    // The destination reads files from the source's export directory.
    let dir = testkit::temp_dir("import-destination");
    let store = testkit::open_store("export", &dir.join("data"));
    let destination = Fixture {
        api: Api::new(
            store,
            ApiConfig {
                import_dir: Some(dir.join("imports")),
                import_roots: vec![exports.clone()],
                ..ApiConfig::default()
            },
        ),
        runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
    };
    let job = manifest["output"][0]["url"].as_str().unwrap().split('/').rev().nth(1).unwrap().to_string();
    let inputs: Vec<(String, String)> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = o["url"].as_str().unwrap().rsplit('/').next().unwrap();
            (
                o["type"].as_str().unwrap().to_string(),
                format!("file://{}", exports.join(&job).join(name).display()),
            )
        })
        .collect();
    let result = import(&destination, &inputs);
    let stored: u64 = result["output"].as_array().unwrap().iter().map(|o| o["count"].as_u64().unwrap()).sum();
    assert_eq!(stored, record().len() as u64, "{result}");
    assert_eq!(result["error"].as_array().unwrap().len(), 0, "{result}");
    assert_eq!(everything(&source), everything(&destination));

    // A file outside the import directories, a bad line, a scheme not read: each says so.
    let outside = destination.call(
        Method::Post,
        "$import",
        "",
        Some(&json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
            {"name": "type", "valueCode": "Patient"}, {"name": "url", "valueUri": "file:///etc/passwd"}]}]})),
        Some("respond-async"),
    );
    assert_eq!(outside.status, 403, "{}", outside.body_text());
    let ftp = destination.call(
        Method::Post,
        "$import",
        "",
        Some(&json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
            {"name": "url", "valueUri": "ftp://example.org/Patient.ndjson"}]}]})),
        Some("respond-async"),
    );
    assert_eq!(ftp.status, 400, "{}", ftp.body_text());
    let broken = exports.join("broken.ndjson");
    std::fs::write(
        &broken,
        "{\"resourceType\":\"Observation\",\"id\":\"bad\",\"status\":\"nonsense\"}\nnot json\n",
    )
    .unwrap();
    let result = import(&destination, &[("Observation".into(), format!("file://{}", broken.display()))]);
    assert_eq!(result["error"][0]["count"], 2, "{result}");
    assert_eq!(
        result["extension"]["https://chartroom.dev/fhir/bulk/import-rejections"].as_array().unwrap().len(),
        2
    );
    assert_eq!(destination.call(Method::Get, "Observation/bad", "", None, None).status, 404);
}
