//! The CapabilityStatement: exactly what this server supports, no more.

use fhir::definitions;
use fhir::search_parameters::{SearchParamType, search_parameters};
use serde_json::{Value, json};

use crate::{Api, Request, Response};

impl Api {
    pub(crate) fn capabilities(&self, request: &Request) -> Response {
        let interactions: Vec<Value> = [
            "read",
            "vread",
            "update",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type",
        ]
        .iter()
        .map(|code| json!({ "code": code }))
        .collect();
        let parameters = search_parameters();
        let resources: Vec<Value> = definitions()
            .resource_types()
            .map(|name| {
                let mut search: Vec<Value> = Vec::new();
                let mut includes: Vec<String> = vec![format!("{name}:*")];
                for applied in parameters.for_type(name) {
                    let parameter = parameters.parameter(applied);
                    if applied.expression.as_deref().is_none_or(str::is_empty)
                        && !matches!(applied.code, "_id" | "_lastUpdated")
                    {
                        continue;
                    }
                    if parameter.kind == SearchParamType::Reference {
                        includes.push(format!("{name}:{}", applied.code));
                    }
                    search.push(json!({
                        "name": applied.code,
                        "definition": parameter.url(),
                        "type": parameter.kind.code()
                    }));
                }
                let mut resource = json!({
                    "type": name,
                    "profile": format!("http://hl7.org/fhir/StructureDefinition/{name}"),
                    "interaction": interactions,
                    "versioning": "versioned-update",
                    "readHistory": true,
                    "updateCreate": true,
                    "conditionalCreate": true,
                    "conditionalRead": "full-support",
                    "conditionalUpdate": true,
                    "conditionalDelete": "single",
                    "referencePolicy": ["literal", "local"],
                    "searchInclude": includes,
                    "searchRevInclude": ["*"],
                    "searchParam": search
                });
                let operations = resource_operations(name);
                if !operations.is_empty() {
                    resource["operation"] = Value::Array(operations);
                }
                resource
            })
            .collect();
        let statement = json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": self.started,
            "publisher": "Chartroom",
            "kind": "instance",
            "software": { "name": "Chartroom", "version": env!("CARGO_PKG_VERSION") },
            "implementation": {
                "description": "Chartroom health information management server",
                "url": request.base
            },
            "fhirVersion": fhir::FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "rest": [{
                "mode": "server",
                "documentation": "FHIR R4 over a versioned store: every change is a new version; \
                                  deletes write tombstones. JSON only. Every R4 search parameter is indexed; \
                                  _text, _content, _list and _filter are not supported. Terminology: ICD-10-CM FY2026 and \
                                  the R4 code systems and value sets, built in. Every create, update and \
                                  transaction entry is validated against the R4 definitions (422 with every issue).",
                "resource": resources,
                "operation": [{
                    "name": "suggest-codes",
                    "definition": "urn:chartroom:operation:suggest-codes",
                    "documentation": "Ranked billable ICD-10-CM codes for clinical text (text=...)"
                }, {
                    "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                    "documentation": "Bulk export of the whole record as NDJSON (Prefer: respond-async; _type, _since); poll $export-status/JOB"
                }, {
                    "name": "data-quality",
                    "definition": "urn:chartroom:operation:data-quality",
                    "documentation": "Data-quality checks over the whole record (conformance, completeness, plausibility), as a Parameters with one check each"
                }],
                "interaction": [
                    { "code": "transaction" },
                    { "code": "batch" },
                    { "code": "history-system" }
                ]
            }]
        });
        Response::json(200, serde_json::to_vec(&statement).unwrap_or_default())
    }
}

/// The operations a resource type supports, as CapabilityStatement entries.
fn resource_operations(resource_type: &str) -> Vec<Value> {
    let standard = |name: &str, definition: &str| json!({"name": name, "definition": format!("http://hl7.org/fhir/OperationDefinition/{definition}")});
    let own = |name: &str, documentation: &str| json!({"name": name, "definition": format!("urn:chartroom:operation:{name}"), "documentation": documentation});
    let edits = "ICD-10-CM coding edits of the record, as an OperationOutcome";
    let mut operations = own_operations(resource_type, &standard, &own, edits);
    operations.push(standard("validate", "Resource-validate"));
    operations
}

fn own_operations(
    resource_type: &str,
    standard: &dyn Fn(&str, &str) -> Value,
    own: &dyn Fn(&str, &str) -> Value,
    edits: &str,
) -> Vec<Value> {
    match resource_type {
        "Patient" => vec![
            standard("everything", "Patient-everything"),
            json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}),
        ],
        "Group" => {
            vec![
                json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}),
            ]
        }
        "CodeSystem" => {
            vec![standard("lookup", "CodeSystem-lookup"), standard("subsumes", "CodeSystem-subsumes")]
        }
        "ValueSet" => {
            vec![standard("expand", "ValueSet-expand"), standard("validate-code", "ValueSet-validate-code")]
        }
        "Encounter" => vec![
            own("coding-edits", edits),
            own("coding-worklist", "Finished encounters needing a coder, oldest discharge first"),
        ],
        "Condition" | "Claim" | "ExplanationOfBenefit" => vec![own("coding-edits", edits)],
        "DocumentReference" => {
            vec![own("suggest-codes", "Ranked billable ICD-10-CM codes for the document's text")]
        }
        _ => Vec::new(),
    }
}
