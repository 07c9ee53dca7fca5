//! AuditEvents, answered from the audit trail (the store holds none: the trail is written by
//! the server for every request and chained, see `privacy::audit`): read, vread of the one
//! version, search (also as `Patient/[id]/AuditEvent`), and `Patient/[id]/$disclosures`, the
//! accounting of disclosures. Who may ask is the access policy's to say, as for any route.

use std::path::PathBuf;
use std::sync::Arc;

use fhir::IssueType;
use fhir::rest::Route;
use privacy::AuditLog;

use crate::access::Gate;
use crate::{ApiError, Method, Request, Response};

/// The audit trail of a data directory, as the API reads it.
pub struct AuditTrail {
    log: Arc<AuditLog>,
    dir: PathBuf,
}

impl AuditTrail {
    /// The trail `log` writes into `dir`.
    pub fn new(log: Arc<AuditLog>, dir: PathBuf) -> AuditTrail {
        AuditTrail { log, dir }
    }

    /// The writer, for recording accesses.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    fn failed(error: privacy::Error) -> ApiError {
        match error {
            privacy::Error::Search { code, message } => ApiError::bad_request(code, message),
            other => ApiError::internal(format!("the audit trail cannot be read: {other}")),
        }
    }

    /// An AuditEvent route.
    pub(crate) fn answer(&self, request: &Request, route: &Route, gate: &Gate) -> Result<Response, ApiError> {
        // What was recorded up to this request (the reader's own earlier requests included)
        // is committed before it is searched.
        self.log.flush();
        match route {
            Route::Search { compartment: None, .. } => self.search(request, "AuditEvent", None, gate),
            Route::Search { compartment: Some((t, id)), .. } if t == "Patient" => {
                self.search(request, &format!("Patient/{id}/AuditEvent"), Some(id), gate)
            }
            Route::History(_) => Err(ApiError::bad_request(
                IssueType::NotSupported,
                "audit entries are never changed, so AuditEvents have no history: search them instead",
            )),
            Route::Read { id, .. } => self.read(id),
            Route::Vread { id, version, .. } if version == "1" => self.read(id),
            Route::Vread { id, version, .. } => Err(ApiError::not_found(format!(
                "AuditEvent/{id} has no version {version}: audit entries are never changed"
            ))),
            _ if request.method.is_some_and(|m| !m.is_read())
                && !matches!(route, Route::Search { form: true, .. }) =>
            {
                Err(ApiError::new(
                    405,
                    IssueType::NotSupported,
                    "the audit trail is read with GET (or POST [base]/AuditEvent/_search)",
                ))
            }
            _ => Err(ApiError::bad_request(
                IssueType::NotSupported,
                "the audit trail answers read, vread and search of AuditEvents only",
            )),
        }
    }

    fn read(&self, id: &str) -> Result<Response, ApiError> {
        match privacy::audit_search::read(&self.dir, id) {
            Ok(Some(event)) => Ok(Response::json(200, serde_json::to_vec(&event).unwrap_or_default())),
            Ok(None) => Err(ApiError::not_found(format!("AuditEvent/{id} is not in the audit trail"))),
            Err(error) => Err(Self::failed(error)),
        }
    }

    /// `Patient/[id]/$disclosures`: every audited access to the patient's record (oldest
    /// first) as a Bundle of AuditEvents.
    pub(crate) fn disclosures(
        &self,
        request: &Request,
        level: &crate::operations::Level<'_>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        let crate::operations::Level::Instance("Patient", patient) = *level else {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "$disclosures runs on a Patient: Patient/[id]/$disclosures",
            ));
        };
        self.log.flush();
        gate.touch(patient);
        let events = privacy::audit::events_for_patient(&self.dir, &format!("Patient/{patient}"))
            .map_err(|error| ApiError::internal(format!("the audit trail cannot be read: {error}")))?;
        // The patient's own accounting says who accessed their record, when, how and why; not
        // whom else the same request touched, what it searched for, or from where.
        let own = gate.confined_to().map(str::to_string);
        let entries: Vec<serde_json::Value> = events
            .into_iter()
            .map(|event| match &own {
                Some(own) => for_the_patient(event, own),
                None => event,
            })
            .map(|e| serde_json::json!({ "resource": e }))
            .collect();
        let bundle = serde_json::json!({
            "resourceType": "Bundle", "type": "collection", "total": entries.len(),
            "link": [{ "relation": "self", "url": format!("{}/{}", request.base, request.path) }],
            "entry": entries,
        });
        Ok(Response::json(200, serde_json::to_vec(&bundle).unwrap_or_default()))
    }

    /// An AuditEvent search: a searchset Bundle, newest first unless `_sort=date`, with a
    /// `next` link while more remain. The patients the query names are the ones touched (a
    /// review of the trail is not an access to every patient its entries name).
    fn search(
        &self,
        request: &Request,
        path: &str,
        patient: Option<&str>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(request.query.as_bytes()).into_owned().collect();
        if request.method == Some(Method::Post) {
            pairs.extend(form_urlencoded::parse(&request.body).into_owned());
        }
        let mut query =
            privacy::audit_search::Query::parse(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .map_err(|error| match error {
                    privacy::Error::Search { code, message } => ApiError::bad_request(code, message),
                    other => ApiError::bad_request(IssueType::Invalid, other.to_string()),
                })?;
        if let Some(patient) = patient {
            query.within_patient(patient);
        }
        for named in query.patients() {
            gate.touch(named.trim_start_matches("Patient/"));
        }
        let page = privacy::audit_search::search(&self.dir, &query).map_err(Self::failed)?;
        let link = |cursor: Option<&str>| {
            let mut serializer = form_urlencoded::Serializer::new(String::new());
            for (name, value) in query.params() {
                serializer.append_pair(name, value);
            }
            if let Some(cursor) = cursor {
                serializer.append_pair("_cursor", cursor);
            }
            let encoded = serializer.finish();
            if encoded.is_empty() {
                format!("{}/{path}", request.base)
            } else {
                format!("{}/{path}?{encoded}", request.base)
            }
        };
        let mut links =
            vec![serde_json::json!({ "relation": "self", "url": link(query.cursor().as_deref()) })];
        if let Some(next) = &page.next {
            links.push(serde_json::json!({ "relation": "next", "url": link(Some(next)) }));
        }
        let entries: Vec<serde_json::Value> = page
            .events
            .into_iter()
            .map(|event| {
                let full_url =
                    format!("{}/AuditEvent/{}", request.base, event["id"].as_str().unwrap_or_default());
                serde_json::json!({ "fullUrl": full_url, "resource": event, "search": { "mode": "match" } })
            })
            .collect();
        let mut bundle = serde_json::json!({ "resourceType": "Bundle", "type": "searchset" });
        if let Some(total) = page.total {
            bundle["total"] = serde_json::Value::from(total);
        }
        bundle["link"] = serde_json::Value::Array(links);
        bundle["entry"] = serde_json::Value::Array(entries);
        Ok(Response::json(200, serde_json::to_vec(&bundle).unwrap_or_default()))
    }
}

/// An AuditEvent as the patient's own accounting of disclosures shows it.
fn for_the_patient(mut event: serde_json::Value, own: &str) -> serde_json::Value {
    use serde_json::Value;
    let own_reference = format!("Patient/{own}");
    for agent in event["agent"].as_array_mut().into_iter().flatten() {
        if let Some(agent) = agent.as_object_mut() {
            agent.remove("network");
        }
    }
    // Why a request was refused is the privacy office's; what a release of information
    // disclosed, to whom and why, is the patient's to know (45 CFR 164.528).
    let released = event["outcomeDesc"].as_str().is_some_and(|text| {
        text.starts_with("released ") && text.contains(&format!(" of {own_reference} to "))
    });
    if let Some(object) = event.as_object_mut()
        && !released
    {
        object.remove("outcomeDesc");
    }
    if let Some(entities) = event.get_mut("entity").and_then(Value::as_array_mut) {
        entities.retain_mut(|entity| {
            let reference = entity["what"]["reference"].as_str().map(str::to_string);
            match reference {
                Some(reference) if reference.starts_with("Patient/") => reference == own_reference,
                // Another resource: named by its type only.
                Some(reference) => {
                    let resource_type = reference.split('/').next().unwrap_or_default().to_string();
                    if let Some(entity) = entity.as_object_mut() {
                        entity.remove("what");
                        entity.insert("name".into(), Value::from(resource_type));
                    }
                    true
                }
                None if entity.get("query").is_some() => false,
                None if entity["name"] == "break-the-glass" => {
                    if let Some(entity) = entity.as_object_mut() {
                        entity.remove("description");
                    }
                    true
                }
                None => entity["what"]["identifier"].is_null() && entity["name"].is_string(),
            }
        });
    }
    event
}
