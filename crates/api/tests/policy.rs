//! The access policy as the API applies it, without HTTP: for every resource type in the
//! Patient compartment, a patient's token gets nothing of another patient's record by any
//! read, search modifier or result parameter (`_elements`, each `_summary`, `_include`,
//! `_revinclude`, `_has`, chains, compartments of every kind, conditional reads, history,
//! `$everything`); and the roles without write scopes write nothing, whatever the Bundle
//! entry's URL looks like.

use std::sync::Arc;

use chartroom_api::{Api, ApiConfig, Caller, Method, Request, Response};
use fhir::search_parameters::search_parameters;
use privacy::{Identity, Role};
use serde_json::{Map, Value, json};
use store::{PreparedResource, Store, WriteOp, WriteUnit};

const BASE: &str = "http://test/fhir";
/// Every id of the other patient's record carries this, so a leak shows in the text.
const SECRET: &str = "secret-b";

struct Fixture {
    api: Api,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn call(
        &self,
        caller: Option<&Arc<Caller>>,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let mut request = Request {
            method: Some(method),
            base: BASE.into(),
            path: path.into(),
            query: query.into(),
            body: body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            caller: caller.cloned(),
            ..Default::default()
        };
        for (name, value) in headers {
            match *name {
                "if-none-match" => request.if_none_match = Some(value.to_string()),
                "if-modified-since" => request.if_modified_since = Some(value.to_string()),
                "if-match" => request.if_match = Some(value.to_string()),
                "content-type" => request.content_type = Some(value.to_string()),
                other => panic!("header {other}"),
            }
        }
        self.runtime.block_on(self.api.handle(&request))
    }

    /// `POST [path]` with a form body.
    fn form(&self, caller: Option<&Arc<Caller>>, path: &str, form: &str) -> Response {
        let request = Request {
            method: Some(Method::Post),
            base: BASE.into(),
            path: path.into(),
            body: form.as_bytes().to_vec(),
            caller: caller.cloned(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    fn put(&self, resource: Value) {
        let resource = fhir::Resource::from_value(resource).unwrap();
        let op = WriteOp::Update { resource: PreparedResource::new(&resource).unwrap(), if_match: None };
        self.runtime.block_on(self.store.submit(WriteUnit::single(op)).wait()).unwrap();
    }
}

/// Builds the JSON an element path needs to hold a reference: `Observation.performer` ->
/// `{"performer": [{"reference": ...}]}`; `None` for paths this cannot follow.
fn place_reference(resource_type: &str, expression: &str, reference: &str) -> Option<Map<String, Value>> {
    let first = expression.split('|').next()?.trim().trim_start_matches('(').trim_end_matches(')');
    let path = first.strip_prefix(&format!("{resource_type}."))?;
    // `.where(resolve() is Patient)` and `.as(Reference)` narrow; they add no element.
    let mut names: Vec<&str> = Vec::new();
    for part in path.split('.') {
        if part.contains('(') || part.contains(')') || part.contains(' ') {
            if names.is_empty() {
                return None;
            }
            continue;
        }
        names.push(part);
    }
    let defs = fhir::definitions();
    let mut element_path = resource_type.to_string();
    let mut value = json!({ "reference": reference });
    let mut steps = Vec::new();
    for name in &names {
        element_path = format!("{element_path}.{name}");
        let element = defs.element(&element_path)?;
        steps.push((name.to_string(), element.max != Some(1)));
    }
    for (index, (name, repeats)) in steps.iter().enumerate().rev() {
        if *repeats {
            value = Value::Array(vec![value]);
        }
        if index == 0 {
            let mut object = Map::new();
            object.insert(name.clone(), value);
            return Some(object);
        }
        value = json!({ name.clone(): value });
    }
    None
}

/// Every string in `value` outside its `link`s (which echo the query).
fn body_without_links(response: &Response) -> String {
    let mut value: Value =
        serde_json::from_slice(response.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("link");
    }
    value.to_string()
}

fn leaks(response: &Response) -> bool {
    (200..300).contains(&response.status) && body_without_links(response).contains(SECRET)
        || response.status == 304
}

fn caller(role: Role, patient: Option<&str>) -> Arc<Caller> {
    Arc::new(Caller::new(Identity {
        user: format!("{}-user", role.as_str()),
        role,
        patient: patient.map(str::to_string),
        scopes: role.scopes(),
        fhir_user: None,
    }))
}

#[test]
fn a_patients_token_gets_nothing_of_another_patient_by_any_route() {
    let dir = testkit::temp_dir("api-policy-patient");
    let store = testkit::open_store("policy", &dir);
    let api = Api::new(store.clone(), ApiConfig::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let f = Fixture { api, store, runtime };
    let b = format!("pb-{SECRET}");
    f.put(json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }] }));
    f.put(json!({ "resourceType": "Patient", "id": b, "name": [{ "family": "Baker" }],
                  "link": [{ "other": { "reference": "Patient/pa" }, "type": "seealso" }] }));
    // Resources of the other compartments, named by both records.
    f.put(json!({ "resourceType": "Practitioner", "id": "prac-1" }));
    f.put(json!({ "resourceType": "Device", "id": "dev-1" }));
    f.put(json!({ "resourceType": "RelatedPerson", "id": "rp-1", "patient": { "reference": "Patient/pa" } }));
    f.put(json!({ "resourceType": "Encounter", "id": "enc-a", "status": "finished", "subject": { "reference": "Patient/pa" } }));
    f.put(json!({ "resourceType": "Encounter", "id": format!("enc-{SECRET}"), "status": "finished",
                  "subject": { "reference": format!("Patient/{b}") } }));

    let compartment = fhir::definitions().compartment("Patient").unwrap();
    let mut types: Vec<&str> =
        compartment.keys().copied().filter(|t| !matches!(*t, "Patient" | "AuditEvent")).collect();
    types.sort();
    // For each type, a resource of each patient through each compartment parameter that a
    // plain element path reaches, also naming the other compartments' resources.
    let mut covered: Vec<(&str, &str, String)> = Vec::new();
    for t in &types {
        for code in &compartment[t] {
            let Some(applied) = search_parameters().get(t, code) else { continue };
            let Some(expression) = applied.expression.as_deref() else { continue };
            let (Some(mine), Some(theirs)) = (
                place_reference(t, expression, "Patient/pa"),
                place_reference(t, expression, &format!("Patient/{b}")),
            ) else {
                continue;
            };
            let id_a = format!("a-{t}-{code}").to_lowercase().replace('_', "-");
            let id_b = format!("{SECRET}-{t}-{code}").to_lowercase().replace('_', "-");
            for (id, mut object) in [(id_a.clone(), mine), (id_b.clone(), theirs)] {
                object.insert("resourceType".into(), json!(t));
                object.insert("id".into(), json!(id));
                for (name, target) in [("encounter", "Encounter/enc-a"), ("performer", "Practitioner/prac-1")]
                {
                    if !object.contains_key(name)
                        && fhir::definitions().element(&format!("{t}.{name}")).is_some()
                    {
                        let repeats = fhir::definitions()
                            .element(&format!("{t}.{name}"))
                            .is_some_and(|e| e.max != Some(1));
                        let reference = json!({ "reference": target });
                        object.insert(name.into(), if repeats { json!([reference]) } else { reference });
                    }
                }
                f.put(Value::Object(object));
            }
            // Only where the index puts it in the compartment does the case count.
            let found =
                f.call(None, Method::Get, &format!("Patient/{b}/{t}"), &format!("_id={id_b}"), &[], None);
            if found.body_text().contains(&id_b) {
                covered.push((t, code, id_b));
            }
        }
    }
    let covered_types: std::collections::BTreeSet<&str> = covered.iter().map(|(t, _, _)| *t).collect();
    let missing: Vec<&&str> = types.iter().filter(|t| !covered_types.contains(**t)).collect();
    assert!(missing.is_empty(), "compartment types without a case: {missing:?}");

    let patient = caller(Role::Patient, Some("pa"));
    let p = Some(&patient);
    let failures: std::cell::RefCell<Vec<String>> = Default::default();
    let check = |what: String, response: Response| {
        if leaks(&response) {
            failures.borrow_mut().push(format!(
                "{what}: {} {}",
                response.status,
                response.body_text().chars().take(300).collect::<String>()
            ));
        }
    };
    for (index, (t, code, id_b)) in covered.iter().enumerate() {
        let instance = format!("{t}/{id_b}");
        for query in [
            "",
            "_elements=id",
            "_elements=meta",
            "_summary=true",
            "_summary=text",
            "_summary=data",
            "_summary=false",
        ] {
            check(format!("read {instance}?{query}"), f.call(p, Method::Get, &instance, query, &[], None));
        }
        check(
            format!("If-None-Match {instance}"),
            f.call(p, Method::Get, &instance, "", &[("if-none-match", "W/\"1\"")], None),
        );
        check(
            format!("If-Modified-Since {instance}"),
            f.call(
                p,
                Method::Get,
                &instance,
                "",
                &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
                None,
            ),
        );
        check(
            format!("history {instance}"),
            f.call(p, Method::Get, &format!("{instance}/_history"), "", &[], None),
        );
        check(
            format!("vread {instance}"),
            f.call(p, Method::Get, &format!("{instance}/_history/1"), "_elements=id", &[], None),
        );
        // Searches once per type (through its first compartment parameter); reads of every
        // case above.
        if covered[..index].iter().any(|(other, _, _)| other == t) {
            continue;
        }
        for query in [
            String::new(),
            "_elements=id".into(),
            "_summary=count".into(),
            "_total=accurate".into(),
            format!("_id={id_b}"),
            format!("{code}=Patient/{b}"),
            format!("{code}:missing=false&_summary=text"),
            "_include=*".into(),
            "_include:iterate=*".into(),
            "_revinclude=*".into(),
            "_revinclude:iterate=*&_include:iterate=*".into(),
            format!("_has:{t}:{code}:_id={id_b}"),
            "_sort=-_lastUpdated&_count=1".into(),
        ] {
            check(format!("search {t}?{query}"), f.call(p, Method::Get, t, &query, &[], None));
            check(format!("form search {t}?{query}"), f.form(p, &format!("{t}/_search"), &query));
            check(
                format!("Patient/pa/{t}?{query}"),
                f.call(p, Method::Get, &format!("Patient/pa/{t}"), &query, &[], None),
            );
        }
        // A count says only what the patient may see.
        let counted = f.call(p, Method::Get, t, "_summary=count", &[], None);
        let total =
            serde_json::from_slice::<Value>(counted.body.as_deref().unwrap_or(b"{}")).unwrap()["total"]
                .clone();
        let own = serde_json::from_slice::<Value>(
            f.call(None, Method::Get, &format!("Patient/pa/{t}"), "_summary=count", &[], None)
                .body
                .as_deref()
                .unwrap_or(b"{}"),
        )
        .unwrap()["total"]
            .as_u64()
            .unwrap_or(0);
        if total != json!(own) {
            failures.borrow_mut().push(format!("{t}?_summary=count: total {total}, {own} are the patient's"));
        }
        for compartment in [
            format!("Patient/{b}"),
            "Practitioner/prac-1".into(),
            "Device/dev-1".into(),
            "RelatedPerson/rp-1".into(),
            format!("Encounter/enc-{SECRET}"),
            "Encounter/enc-a".into(),
        ] {
            for query in ["", "_elements=id", "_summary=count"] {
                let path = format!("{compartment}/{t}");
                let response = f.call(p, Method::Get, &path, query, &[], None);
                if response.status == 200 && path.starts_with("Patient/") {
                    failures.borrow_mut().push(format!("{path}: another patient's compartment answered"));
                }
                if query == "_summary=count" && response.status == 200 {
                    let total = serde_json::from_slice::<Value>(response.body.as_deref().unwrap_or(b"{}"))
                        .unwrap()["total"]
                        .clone();
                    if total.as_u64().unwrap_or(0) > own {
                        failures.borrow_mut().push(format!("{path}?_summary=count: total {total}"));
                    }
                }
                check(format!("{path}?{query}"), response);
            }
        }
    }
    // Chains and _has from the Patient side, and the whole record.
    for query in [
        "name=Baker".to_string(),
        format!("_id={b}"),
        "link=Patient/pa".into(),
        "_revinclude=*".into(),
        format!("_has:Encounter:subject:_id=enc-{SECRET}"),
        "_has:Encounter:subject:status=finished".into(),
    ] {
        check(format!("Patient?{query}"), f.call(p, Method::Get, "Patient", &query, &[], None));
    }
    for query in [
        "subject.name=Baker",
        "subject:Patient.name=Baker",
        "patient.link=Patient/pa",
        "_include=Encounter:subject",
    ] {
        check(format!("Encounter?{query}"), f.call(p, Method::Get, "Encounter", query, &[], None));
    }
    for query in ["", "_count=1000", "_type=Observation,Encounter", "_since=2000-01-01"] {
        check(
            format!("$everything?{query}"),
            f.call(p, Method::Get, "Patient/pa/$everything", query, &[], None),
        );
    }
    check(
        format!("Patient/{b}/$everything"),
        f.call(p, Method::Get, &format!("Patient/{b}/$everything"), "", &[], None),
    );
    check(
        format!("Patient/{b}/_history"),
        f.call(p, Method::Get, &format!("Patient/{b}/_history"), "", &[], None),
    );
    // A batch of reads is refused as a whole (a patient's token does not post Bundles).
    let batch = json!({ "resourceType": "Bundle", "type": "batch",
        "entry": [{ "request": { "method": "GET", "url": format!("Patient/{b}") } }] });
    check("batch GET".into(), f.call(p, Method::Post, "", "", &[], Some(&batch)));
    let failures = failures.into_inner();
    assert!(failures.is_empty(), "{} leaks:\n{}", failures.len(), failures.join("\n"));
    // And the patient does see their own.
    let own = f.call(p, Method::Get, "Patient/pa/$everything", "_count=1000", &[], None);
    assert_eq!(own.status, 200);
    let own_count =
        serde_json::from_slice::<Value>(own.body.as_deref().unwrap()).unwrap()["total"].as_u64().unwrap();
    assert!(own_count as usize > covered.len() / 2, "{own_count} of {}", covered.len());
}

#[test]
fn read_only_roles_write_nothing_through_any_entry_url() {
    let dir = testkit::temp_dir("api-policy-entries");
    let store = testkit::open_store("policy", &dir);
    let api = Api::new(store.clone(), ApiConfig::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let f = Fixture { api, store, runtime };
    f.put(json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }] }));
    let spellings = [
        "Patient/pa",
        "/Patient/pa",
        "Patient/pa/",
        "Patient//pa",
        "%50atient/pa",
        "http://test/fhir/Patient/pa",
        "HTTP://TEST/fhir/Patient/pa",
        "http://test/fhir//Patient/pa",
        "http://test//fhir/Patient/pa?",
        "http://test/fhir/Patient/pa#x",
        "http://other/fhir/Patient/pa",
    ];
    for role in [Role::Analyst, Role::PrivacyOfficer, Role::Coder, Role::Patient] {
        let who = caller(role, (role == Role::Patient).then_some("pa"));
        for url in spellings {
            for (method, body) in [
                (
                    "PUT",
                    Some(json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Changed" }] })),
                ),
                ("DELETE", None),
                ("POST", Some(json!({ "resourceType": "Patient" }))),
                (
                    "PATCH",
                    Some(json!({ "resourceType": "Binary", "contentType": "application/json-patch+json",
                        "data": fhir::base64_encode(br#"[{"op":"replace","path":"/name/0/family","value":"Changed"}]"#) })),
                ),
                (
                    "PATCH",
                    Some(
                        json!({ "resourceType": "Parameters", "parameter": [{ "name": "operation", "part": [
                        { "name": "type", "valueCode": "replace" },
                        { "name": "path", "valueString": "Patient.name.family" },
                        { "name": "value", "valueString": "Changed" }
                    ] }] }),
                    ),
                ),
            ] {
                let url = if method == "POST" { url.replace("/pa", "") } else { url.to_string() };
                for bundle_type in ["batch", "transaction"] {
                    let mut entry = json!({ "request": { "method": method, "url": url } });
                    if let Some(body) = &body {
                        entry["resource"] = body.clone();
                    }
                    let bundle = json!({ "resourceType": "Bundle", "type": bundle_type, "entry": [entry] });
                    let response = f.call(Some(&who), Method::Post, "", "", &[], Some(&bundle));
                    let written = response.status < 300 && response.body_text().contains("\"status\":\"20");
                    assert!(
                        !written,
                        "{} {bundle_type} {method} {url}: {}",
                        role.as_str(),
                        response.body_text()
                    );
                }
            }
        }
    }
    let current = f.call(None, Method::Get, "Patient/pa", "", &[], None);
    assert_eq!(current.etag.as_deref(), Some("W/\"1\""), "Patient/pa was changed");
    assert_eq!(f.store.read("Patient", "pa").unwrap().unwrap().version, 1);
}

/// A patch is an update to the policy and the gate: refused to the roles that may not update
/// the type, to a patient's token, and on the audit trail; refused before its If-Match is
/// looked at when the caller may not see the resource; recorded as a `patch`.
#[test]
fn a_patch_passes_the_gate_of_an_update() {
    let dir = testkit::temp_dir("api-policy-patch");
    let store = testkit::open_store("policy", &dir);
    let api = Api::new(store.clone(), ApiConfig::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let f = Fixture { api, store, runtime };
    for patient in ["pa", "pb"] {
        f.put(json!({ "resourceType": "Patient", "id": patient, "name": [{ "family": "Able" }] }));
        f.put(json!({ "resourceType": "Observation", "id": format!("obs-{patient}"), "status": "final",
            "code": { "text": "pulse" }, "subject": { "reference": format!("Patient/{patient}") } }));
    }
    let patch = json!([{ "op": "replace", "path": "/status", "value": "amended" }]);
    let json_patch = [("content-type", "application/json-patch+json")];
    let patch_as = |who: &Arc<Caller>, path: &str, query: &str, headers: &[(&str, &str)]| {
        f.call(Some(who), Method::Patch, path, query, headers, Some(&patch))
    };

    let analyst = caller(Role::Analyst, None);
    assert_eq!(patch_as(&analyst, "Observation/obs-pa", "", &json_patch).status, 403);
    assert_eq!(patch_as(&analyst, "Observation", "subject=Patient/pa", &json_patch).status, 403);
    let patient = caller(Role::Patient, Some("pa"));
    assert_eq!(patch_as(&patient, "Observation/obs-pb", "", &json_patch).status, 403);
    assert_eq!(
        patch_as(&patient, "Observation/obs-pa", "", &json_patch).status,
        403,
        "a patient's token reads"
    );
    let admin = caller(Role::Admin, None);
    let trail = patch_as(&admin, "AuditEvent/audit-1", "", &json_patch);
    assert_eq!(trail.status, 405, "{}", trail.body_text());
    for id in ["obs-pa", "obs-pb"] {
        assert_eq!(f.store.read("Observation", id).unwrap().unwrap().version, 1, "{id} was changed");
    }

    // A consent directive withholds pb's observations from clinicians: a patch of one is
    // refused before its version is compared, and a conditional patch finds nothing.
    f.put(json!({
        "resourceType": "Consent", "id": "consent-b", "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": "Patient/pb" },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
        "provision": { "type": "deny", "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Observation" }] }
    }));
    let clinician = caller(Role::Clinician, None);
    let stale = [("content-type", "application/json-patch+json"), ("if-match", "W/\"99\"")];
    let withheld = patch_as(&clinician, "Observation/obs-pb", "", &stale);
    assert_eq!(withheld.status, 403, "{}", withheld.body_text());
    let searched = patch_as(&clinician, "Observation", "subject=Patient/pb", &json_patch);
    assert_eq!(searched.status, 404, "{}", searched.body_text());
    assert_eq!(f.store.read("Observation", "obs-pb").unwrap().unwrap().version, 1);
    assert_eq!(patch_as(&clinician, "Observation/obs-pa", "", &stale).status, 412);

    // What the trail records of a patch.
    let patched = patch_as(&clinician, "Observation/obs-pa", "", &json_patch);
    assert_eq!(patched.status, 200, "{}", patched.body_text());
    assert_eq!(patched.audit.interaction, "patch");
    assert_eq!(patched.audit.action, "U");
    assert_eq!(patched.audit.patients, vec!["Patient/pa".to_string()]);
    let conditional = patch_as(&clinician, "Observation", "subject=Patient/pa", &json_patch);
    assert_eq!(conditional.status, 200, "{}", conditional.body_text());
    assert_eq!(conditional.audit.interaction, "patch");
    assert_eq!(f.store.read("Observation", "obs-pa").unwrap().unwrap().version, 3);
}
