//! The CapabilityStatement: exactly what this server supports, no more.

use fhir::definitions;
use fhir::search_parameters::{SearchParamType, search_parameters};
use serde_json::{Value, json};

use crate::operations::registry::OPERATIONS;
use crate::{Api, Request, Response};

impl Api {
    pub(crate) fn capabilities(&self, request: &Request) -> Response {
        let interactions: Vec<Value> = [
            "read",
            "vread",
            "update",
            "patch",
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
                let operations: Vec<Value> = OPERATIONS
                    .iter()
                    .filter(|op| op.levels.on_type(name))
                    .map(|op| op.capability(&request.base))
                    .collect();
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
            // JSON Patch, and FHIRPath Patch as a Parameters resource in FHIR JSON.
            "patchFormat": [crate::JSON_PATCH, crate::MERGE_PATCH, "application/fhir+json"],
            "rest": [{
                "mode": "server",
                "documentation": "FHIR R4 over a versioned store: every change is a new version; \
                                  deletes write tombstones. JSON only. Every R4 search parameter is indexed; \
                                  _text, _content, _list and _filter are not supported. Terminology: ICD-10-CM FY2026 and \
                                  the R4 code systems and value sets, built in. Every create, update and \
                                  transaction entry is validated against the R4 definitions (422 with every issue). \
                                  PATCH takes a JSON Patch (application/json-patch+json) or a FHIRPath \
                                  Patch (a Parameters resource), applied to the current version and \
                                  stored as an update.",
                "resource": resources,
                // System-level operations, and those of types outside R4 (a SQL on FHIR
                // ViewDefinition's `$run`), which have no resource entry of their own.
                "operation": OPERATIONS
                    .iter()
                    .filter(|op| op.levels.system || op.levels.beyond_r4())
                    .map(|op| op.capability(&request.base))
                    .collect::<Vec<_>>(),
                "interaction": [
                    { "code": "transaction" },
                    { "code": "batch" },
                    { "code": "history-system" }
                ]
            }]
        });
        let mut statement = statement;
        if let Some(uris) = &self.config.oauth {
            statement["rest"][0]["security"] = security(&request.base, uris);
        }
        Response::json(200, serde_json::to_vec(&statement).unwrap_or_default())
    }
}

/// `rest.security`: SMART on FHIR, with the authorization server's endpoints in the
/// oauth-uris extension (what SMART clients read to find where to sign in).
fn security(base: &str, uris: &crate::OAuthUris) -> Value {
    let mut endpoints = vec![
        json!({ "url": "authorize", "valueUri": crate::OAuthUris::resolve(base, &uris.authorize) }),
        json!({ "url": "token", "valueUri": crate::OAuthUris::resolve(base, &uris.token) }),
    ];
    if let Some(introspect) = &uris.introspect {
        endpoints
            .push(json!({ "url": "introspect", "valueUri": crate::OAuthUris::resolve(base, introspect) }));
    }
    if let Some(revoke) = &uris.revoke {
        endpoints.push(json!({ "url": "revoke", "valueUri": crate::OAuthUris::resolve(base, revoke) }));
    }
    json!({
        "cors": false,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
                "display": "SMART-on-FHIR"
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": endpoints
        }]
    })
}
