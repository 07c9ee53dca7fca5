//! The operation registry: the CapabilityStatement lists exactly the registered operations,
//! each with its OperationDefinition; every operation refuses a parameter it does not declare
//! and a mistyped one; the access policy decides on each operation's declared rights.

use std::sync::Arc;

use chartroom_api::{Api, ApiConfig, Caller, Method, Request, Response};
use privacy::{Identity, Role};
use serde_json::Value;

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = testkit::temp_dir(name);
        let store = testkit::open_store("registry", &dir);
        let config = ApiConfig { export_dir: Some(dir.join("exports")), ..ApiConfig::default() };
        Fixture {
            api: Api::new(store, config),
            runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
        }
    }

    fn call(&self, caller: Option<&Arc<Caller>>, method: Method, path: &str, query: &str) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            caller: caller.cloned(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    fn json(&self, path: &str) -> Value {
        let response = self.call(None, Method::Get, path, "");
        assert_eq!(response.status, 200, "{path}: {}", response.body_text());
        serde_json::from_slice(response.body.as_deref().unwrap()).unwrap()
    }
}

/// (name, definition URL) of every operation the CapabilityStatement lists, and for each the
/// paths it may be invoked at.
fn listed(statement: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut found: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut add = |operation: &Value, path: String| {
        let name = operation["name"].as_str().unwrap().to_string();
        let definition = operation["definition"].as_str().unwrap().to_string();
        match found.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, paths)) => paths.push(path),
            None => found.push((name, definition, vec![path])),
        }
    };
    let rest = &statement["rest"][0];
    for operation in rest["operation"].as_array().unwrap() {
        add(operation, String::new());
    }
    for resource in rest["resource"].as_array().unwrap() {
        let resource_type = resource["type"].as_str().unwrap();
        for operation in resource["operation"].as_array().into_iter().flatten() {
            add(operation, resource_type.to_string());
        }
    }
    found
}

#[test]
fn the_capability_statement_lists_every_registered_operation_with_its_definition() {
    let f = Fixture::new("registry-capabilities");
    let statement = f.json("metadata");
    let operations = listed(&statement);
    let mut names: Vec<&str> = operations.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "amend-decide",
            "amend-disagree",
            "amend-extend",
            "amend-overdue",
            "amend-request",
            "billing-audit",
            "coding-edits",
            "coding-worklist",
            "cohort-compare",
            "comorbidity",
            "completion-report",
            "completion-scan",
            "data-quality",
            "decide-duplicate",
            "disclosures",
            "duplicates",
            "everything",
            "expand",
            "export",
            "high-risk",
            "hl7v2",
            "hold-place",
            "hold-release",
            "import",
            "import-status",
            "lookup",
            "match",
            "merge",
            "operations-report",
            "retention-purge",
            "retention-report",
            "roi-extend",
            "roi-overdue",
            "roi-release",
            "roi-request",
            "run",
            "sql",
            "subsumes",
            "suggest-codes",
            "surveillance",
            "unmerge",
            "validate",
            "validate-code",
        ]
    );
    for (name, definition, _) in &operations {
        let served = f.json(&format!("OperationDefinition/{name}"));
        assert_eq!(served["resourceType"], "OperationDefinition");
        assert_eq!(served["code"], name.as_str());
        assert_eq!(served["url"], definition.as_str(), "{name}: the definition the statement names");
        assert!(served["extension"][0]["url"] == "urn:chartroom:operation-access", "{name}");
    }
    // Chartroom's own definitions are served where the statement says.
    assert!(
        operations
            .iter()
            .any(|(n, d, _)| n == "data-quality" && d == "http://test/fhir/OperationDefinition/data-quality")
    );
    assert_eq!(f.call(None, Method::Get, "OperationDefinition/nope", "").status, 404);
}

/// A path at which an operation may run, from its OperationDefinition.
fn invocation(definition: &Value) -> String {
    let name = definition["code"].as_str().unwrap();
    let first_type = definition["resource"][0].as_str().unwrap_or("Resource");
    if definition["system"] == true {
        format!("${name}")
    } else if definition["type"] == true {
        format!("{first_type}/${name}")
    } else {
        format!("{first_type}/x1/${name}")
    }
}

#[test]
fn every_operation_refuses_a_parameter_it_does_not_declare() {
    let f = Fixture::new("registry-parameters");
    let statement = f.json("metadata");
    for (name, _, _) in listed(&statement) {
        let definition = f.json(&format!("OperationDefinition/{name}"));
        let path = invocation(&definition);
        // Operations that change the record are invoked with POST only.
        let method = if definition["affectsState"] == true { Method::Post } else { Method::Get };
        let response = f.call(None, method, &path, "spurious=1");
        assert_eq!(response.status, 400, "{path}: {}", response.body_text());
        assert!(
            response.body_text().contains("has no parameter 'spurious'"),
            "{path}: {}",
            response.body_text()
        );
        let definition = f.json(&format!("OperationDefinition/{name}"));
        // A declared integer parameter given as words is refused too.
        for parameter in definition["parameter"].as_array().into_iter().flatten() {
            if parameter["type"] == "integer" {
                let query = format!("{}=several", parameter["name"].as_str().unwrap());
                let response = f.call(None, method, &path, &query);
                assert_eq!(response.status, 400, "{path}?{query}: {}", response.body_text());
            }
        }
    }
}

#[test]
fn the_policy_decides_on_each_operations_declared_rights() {
    let f = Fixture::new("registry-rights");
    let statement = f.json("metadata");
    let patient = Arc::new(Caller::new(Identity {
        user: "alice".into(),
        role: Role::Patient,
        patient: Some("pa".into()),
        scopes: Role::Patient.scopes(),
        fhir_user: None,
    }));
    for (name, _, _) in listed(&statement) {
        let definition = f.json(&format!("OperationDefinition/{name}"));
        let declared = definition["extension"][0]["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == "patient")
            .and_then(|e| e["valueCode"].as_str())
            .unwrap()
            .to_string();
        let path = invocation(&definition).replace("x1", "pa");
        let path = if declared == "own-record" && !path.starts_with("Patient") {
            format!("Patient/pa/${name}")
        } else {
            path
        };
        let method = if definition["affectsState"] == true { Method::Post } else { Method::Get };
        let response = f.call(Some(&patient), method, &path, "");
        let refused = response.status == 403;
        match declared.as_str() {
            "refused" => assert!(refused, "{path}: a patient's token ran it: {}", response.status),
            "allowed" | "own-record" => assert!(!refused, "{path}: {}", response.body_text()),
            other => panic!("{name}: {other}"),
        }
    }
}
