//! The CapabilityStatement: exactly what this server supports, no more.

use fhir::definitions;
use serde_json::{Value, json};

use crate::{Api, Request, Response};

impl Api {
    pub(crate) fn capabilities(&self, request: &Request) -> Response {
        let interactions: Vec<Value> =
            ["read", "vread", "update", "delete", "history-instance", "history-type", "create"]
                .iter()
                .map(|code| json!({ "code": code }))
                .collect();
        let resources: Vec<Value> = definitions()
            .resource_types()
            .map(|name| {
                json!({
                    "type": name,
                    "profile": format!("http://hl7.org/fhir/StructureDefinition/{name}"),
                    "interaction": interactions,
                    "versioning": "versioned-update",
                    "readHistory": true,
                    "updateCreate": true,
                    "conditionalCreate": false,
                    "conditionalRead": "full-support",
                    "conditionalUpdate": false,
                    "conditionalDelete": "not-supported",
                    "referencePolicy": ["literal", "local"]
                })
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
                                  deletes write tombstones. JSON only. Search is not yet available.",
                "resource": resources,
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
