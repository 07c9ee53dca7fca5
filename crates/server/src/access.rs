//! Who may do what, and the trace every request leaves: authentication by bearer token,
//! authorization by role and SMART scopes, the patient-context rules, and the audit record.
//!
//! A patient-context token (a patient's own) reaches only that patient's record: searches on
//! types of the Patient compartment are answered as compartment searches
//! (`Patient/{own}/Observation?...`), `Patient` searches are limited to the own id, and every
//! response is filtered so that no resource of another patient leaves, whatever `_include`
//! or operation brought it (the Bundle then says that entries were withheld).

use std::path::PathBuf;

use api::Method;
use fhir::{IssueType, OperationOutcome};
use privacy::{Access, AuditLog, Identity, Interaction, Role, Users};
use serde_json::{Value, json};

/// Authentication and the audit trail of a served data directory.
pub struct Security {
    pub users: Users,
    pub audit: AuditLog,
    pub data_dir: PathBuf,
    /// JWT bearer tokens accepted besides API tokens, when configured: HS256 with a shared
    /// secret, RS256 / ES256 with an authorization server's JWKS, or both.
    pub jwt: Option<privacy::jwt::Verifier>,
}

impl Security {
    pub fn open(data_dir: &std::path::Path) -> Result<Security, privacy::Error> {
        Ok(Security {
            users: Users::open(data_dir)?,
            audit: AuditLog::open(data_dir)?,
            data_dir: data_dir.to_path_buf(),
            jwt: None,
        })
    }

    /// The identity a bearer token stands for: an API token, or a JWT if configured;
    /// `Ok(None)` for a token of neither kind, an error saying why a JWT is refused.
    pub fn authenticate(&self, token: &str) -> Result<Option<Identity>, privacy::Error> {
        if let Some(identity) = self.users.authenticate(token).ok().flatten() {
            return Ok(Some(identity));
        }
        let Some(jwt) = &self.jwt else { return Ok(None) };
        jwt.authenticate(token, fhir::datetime::epoch_millis_now() / 1000)
    }
}

/// What a request does, for authorization and the audit trail.
#[derive(Clone, Debug)]
pub(crate) struct Classified {
    pub interaction: Option<Interaction>,
    /// The RESTful interaction's code (`read`, `search-type`, ...).
    pub name: &'static str,
    pub action: &'static str,
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub operation: Option<String>,
}

pub(crate) fn classify(method: Method, path: &str) -> Classified {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let read = matches!(method, Method::Get | Method::Head);
    let owned = |s: &&str| Some(s.to_string());
    let op = segments.iter().find(|s| s.starts_with('$')).map(|s| s.trim_start_matches('$').to_string());
    let mut classified = Classified {
        interaction: None,
        name: "operation",
        action: "E",
        resource_type: segments
            .first()
            .filter(|s| !s.starts_with('$') && !s.starts_with('_') && **s != "metadata")
            .and_then(owned),
        id: None,
        operation: op.clone(),
    };
    if op.is_some() {
        classified.id = if segments.len() == 3 { segments.get(1).and_then(owned) } else { None };
        classified.interaction =
            Some(if read || classified.id.is_some() { Interaction::Read } else { Interaction::Search });
        return classified;
    }
    let (interaction, name, action) = match (segments.as_slice(), method) {
        ([], Method::Post) => (None, "transaction", "E"),
        (["metadata"], _) => (None, "capabilities", "R"),
        ([] | ["_history"], _) => (Some(Interaction::Search), "history-system", "R"),
        ([_], Method::Get | Method::Head) | ([_, "_search"], _) => {
            (Some(Interaction::Search), "search-type", "R")
        }
        ([_, "_history"], _) => (Some(Interaction::Search), "history-type", "R"),
        ([_], Method::Post) => (Some(Interaction::Create), "create", "C"),
        ([_], Method::Put) => (Some(Interaction::Update), "update", "U"),
        ([_], Method::Delete) => (Some(Interaction::Delete), "delete", "D"),
        ([_, _], Method::Put) => (Some(Interaction::Update), "update", "U"),
        ([_, _], Method::Delete) => (Some(Interaction::Delete), "delete", "D"),
        ([_, _], _) => (Some(Interaction::Read), "read", "R"),
        ([_, _, "_history"], _) => (Some(Interaction::Read), "history-instance", "R"),
        ([_, _, "_history", _], _) => (Some(Interaction::Read), "vread", "R"),
        // A compartment search: `Patient/{id}/Observation`.
        (["Patient", _, _], _) => (Some(Interaction::Search), "search-type", "R"),
        _ => (Some(Interaction::Read), "read", "R"),
    };
    classified.interaction = interaction;
    classified.name = name;
    classified.action = action;
    if let (["Patient", _, target], Some(Interaction::Search)) = (segments.as_slice(), interaction) {
        classified.resource_type = Some(target.to_string());
        classified.id = None;
        classified.operation = None;
    } else if segments.len() >= 2 && !segments[1].starts_with('_') {
        classified.id = segments.get(1).and_then(owned);
    }
    classified
}

/// A refusal: status and the OperationOutcome saying why.
pub(crate) struct Denied {
    pub status: u16,
    pub code: IssueType,
    pub message: String,
}

impl Denied {
    fn forbidden(message: impl Into<String>) -> Denied {
        Denied { status: 403, code: IssueType::Forbidden, message: message.into() }
    }

    pub fn body(&self) -> Vec<u8> {
        OperationOutcome::error(self.code, self.message.clone()).to_bytes()
    }
}

/// What the API is to be asked instead, for a patient-context token.
pub(crate) struct Rewrite {
    pub path: String,
    pub query: String,
}

/// Whether the identity is confined to one patient's record.
pub(crate) fn patient_context(identity: &Identity) -> Option<&str> {
    if identity.role == Role::Patient || identity.scopes.patient_only() {
        identity.patient.as_deref()
    } else {
        None
    }
}

/// Operations a patient may run on their own record or on terminology.
const PATIENT_OPERATIONS: &[&str] = &[
    "everything",
    "disclosures",
    "lookup",
    "expand",
    "validate-code",
    "subsumes",
    "validate",
    "export",
    "export-status",
    "export-file",
];

/// Checks the request against the identity's role and scopes; for a patient-context token,
/// returns how to confine it to the patient's record.
pub(crate) fn authorize(
    identity: &Identity,
    method: Method,
    path: &str,
    query: &str,
    body: &[u8],
    classified: &Classified,
) -> Result<Option<Rewrite>, Denied> {
    if classified.name == "capabilities" {
        return Ok(None);
    }
    if classified.resource_type.as_deref() == Some("AuditEvent") {
        if !identity.role.reads_audit() {
            return Err(Denied::forbidden(
                "only privacy officers and administrators may read the audit trail",
            ));
        }
        if classified.action != "R" {
            return Err(Denied::forbidden(
                "the audit trail is append-only: AuditEvents cannot be written through the API",
            ));
        }
    }
    if classified.operation.as_deref() == Some("disclosures") {
        let own = patient_context(identity).is_some_and(|p| classified.id.as_deref() == Some(p));
        if !identity.role.reads_audit() && !own {
            return Err(Denied::forbidden(
                "an accounting of disclosures is for the patient and the privacy office",
            ));
        }
        return Ok(None);
    }
    if let Some(own) = patient_context(identity) {
        return confine_to_patient(identity, own, method, path, query, classified).map(Some);
    }
    if classified.name == "transaction" {
        return authorize_bundle(identity, body);
    }
    check_scopes(identity, classified)?;
    Ok(None)
}

fn check_scopes(identity: &Identity, classified: &Classified) -> Result<(), Denied> {
    let Some(interaction) = classified.interaction else { return Ok(()) };
    let resource_type = classified.resource_type.as_deref().unwrap_or("*");
    let permitted = if resource_type == "*" {
        // System-wide: every type must be open to the interaction.
        identity.scopes.0.iter().any(|s| s.resource_type.is_none() && s.permits(interaction, "*"))
    } else {
        identity.scopes.permit(interaction, resource_type)
    };
    if permitted {
        return Ok(());
    }
    Err(Denied::forbidden(format!(
        "the {} role's scopes do not permit {} on {}",
        identity.role.as_str(),
        classified.name,
        if resource_type == "*" { "all resource types" } else { resource_type }
    )))
}

/// Each entry of a batch or transaction is an interaction of its own.
fn authorize_bundle(identity: &Identity, body: &[u8]) -> Result<Option<Rewrite>, Denied> {
    let Ok(bundle) = serde_json::from_slice::<Value>(body) else { return Ok(None) };
    for (index, entry) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
        let method = entry["request"]["method"].as_str().map_or(Method::Get, Method::parse);
        let url = entry["request"]["url"].as_str().unwrap_or_default();
        let path = url.split('?').next().unwrap_or_default();
        let classified = classify(method, path);
        if classified.resource_type.as_deref() == Some("AuditEvent") && !identity.role.reads_audit() {
            return Err(Denied::forbidden(format!(
                "Bundle.entry[{index}]: only privacy officers may read the audit trail"
            )));
        }
        check_scopes(identity, &classified)
            .map_err(|d| Denied::forbidden(format!("Bundle.entry[{index}]: {}", d.message)))?;
    }
    Ok(None)
}

fn confine_to_patient(
    identity: &Identity,
    own: &str,
    method: Method,
    path: &str,
    query: &str,
    classified: &Classified,
) -> Result<Rewrite, Denied> {
    if !matches!(method, Method::Get | Method::Head) {
        return Err(Denied::forbidden("a patient's token reads; it does not write"));
    }
    check_scopes(identity, classified)?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let unchanged = || Rewrite { path: path.to_string(), query: query.to_string() };
    if let Some(operation) = &classified.operation
        && !PATIENT_OPERATIONS.contains(&operation.as_str())
    {
        return Err(Denied::forbidden(format!("${operation} is not available to a patient's token")));
    }
    // A patient exports their own record only (the job's files are theirs alone: see
    // `lib.rs`).
    if classified.operation.as_deref() == Some("export") {
        return match segments.as_slice() {
            ["Patient", "$export"] | ["Patient", _, "$export"] => {
                if let ["Patient", id, _] = segments.as_slice()
                    && *id != own
                {
                    return Err(Denied::forbidden("this token gives access to one patient's record only"));
                }
                let kept: Vec<String> = form_urlencoded::parse(query.as_bytes())
                    .filter(|(name, _)| name != "patient")
                    .map(|(name, value)| {
                        format!(
                            "{}={}",
                            name,
                            form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
                        )
                    })
                    .collect();
                Ok(Rewrite { path: format!("Patient/{own}/$export"), query: kept.join("&") })
            }
            _ => Err(Denied::forbidden("a patient's token exports its own record only (Patient/$export)")),
        };
    }
    match segments.as_slice() {
        ["Patient", id, ..] if *id != own && !id.starts_with('$') => {
            Err(Denied::forbidden("this token gives access to one patient's record only"))
        }
        [] | ["_history"] | [_, "_history"] => {
            Err(Denied::forbidden("history across records is not available to a patient's token"))
        }
        ["Patient"] | ["Patient", "_search"] => {
            let joined = if query.is_empty() { format!("_id={own}") } else { format!("{query}&_id={own}") };
            Ok(Rewrite { path: "Patient".into(), query: joined })
        }
        [resource_type] | [resource_type, "_search"] if in_patient_compartment(resource_type) => {
            Ok(Rewrite { path: format!("Patient/{own}/{resource_type}"), query: query.to_string() })
        }
        _ => Ok(unchanged()),
    }
}

fn in_patient_compartment(resource_type: &str) -> bool {
    fhir::definitions().compartment("Patient").is_some_and(|types| types.contains_key(resource_type))
}

/// Whether a resource belongs to (or points at) a patient other than `own`.
pub(crate) fn foreign(resource: &Value, own: &str) -> bool {
    fhir::patients_mentioned(resource).iter().any(|patient| *patient != own)
}

/// Removes from a response body everything about other patients; `None` when the whole
/// response is another patient's.
pub(crate) fn filter_for_patient(body: &[u8], own: &str) -> Option<Vec<u8>> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Some(body.to_vec()) };
    if value["resourceType"] == "Bundle" {
        let Some(entries) = value.get_mut("entry").and_then(Value::as_array_mut) else {
            return Some(body.to_vec());
        };
        let before = entries.len();
        entries.retain(|entry| !foreign(&entry["resource"], own));
        let withheld = before - entries.len();
        if withheld > 0 {
            let note = json!({ "fullUrl": "urn:chartroom:withheld",
                "resource": OperationOutcome::information(format!("{withheld} entries about other patients were withheld")).to_json(),
                "search": { "mode": "outcome" } });
            entries.push(note);
            if let Some(object) = value.as_object_mut() {
                object.remove("total");
            }
        }
        return serde_json::to_vec(&value).ok();
    }
    if foreign(&value, own) { None } else { Some(body.to_vec()) }
}

/// The patients a request touched: the path's, and those in the response (each Patient
/// returned and each `Patient/...` reference). Read off the serialized JSON, without parsing
/// it: this runs on every response.
pub(crate) fn patients_touched(path: &str, body: Option<&[u8]>) -> Vec<String> {
    let mut patients: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        let reference = format!("Patient/{id}");
        if !id.is_empty() && !patients.contains(&reference) {
            patients.push(reference);
        }
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["Patient", id, ..] = segments.as_slice()
        && !id.starts_with('$')
        && !id.starts_with('_')
    {
        add(id);
    }
    let Some(body) = body else { return patients };
    let id_at = |rest: &[u8]| -> String {
        let end = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
            .unwrap_or(rest.len());
        // ASCII by the test above.
        String::from_utf8_lossy(&rest[..end]).into_owned()
    };
    // References, and stored resources, which begin `{"resourceType":"Patient","id":"...`.
    for needle in [&b"\"reference\":\"Patient/"[..], &b"\"resourceType\":\"Patient\",\"id\":\""[..]] {
        for at in memchr::memmem::find_iter(body, needle) {
            add(&id_at(&body[at + needle.len()..]));
        }
    }
    patients
}

/// The audit record of a request.
#[allow(clippy::too_many_arguments)]
pub(crate) fn access_record(
    identity: Option<&Identity>,
    classified: &Classified,
    path: &str,
    query: &str,
    status: u16,
    patients: Vec<String>,
    address: Option<String>,
    purpose: Option<String>,
    break_glass: Option<String>,
) -> Access {
    let mut resources = Vec::new();
    match (&classified.resource_type, &classified.id) {
        (Some(t), Some(id)) => resources.push(format!("{t}/{id}")),
        (Some(t), None) => resources.push(t.clone()),
        _ => resources.push(path.to_string()),
    }
    Access {
        user: identity.map_or_else(|| "unauthenticated".to_string(), |i| i.user.clone()),
        role: identity.map_or_else(String::new, |i| i.role.as_str().to_string()),
        interaction: classified.name.to_string(),
        action: classified.action,
        status,
        outcome_text: None,
        patients,
        resources,
        query: (!query.is_empty()).then(|| query.to_string()),
        purpose,
        address,
        client: None,
        break_glass_reason: break_glass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_interaction() {
        let cases = [
            (Method::Get, "Patient/1", "read", Some("Patient"), Some("1")),
            (Method::Get, "Observation", "search-type", Some("Observation"), None),
            (Method::Get, "Patient/1/Observation", "search-type", Some("Observation"), None),
            (Method::Post, "Observation", "create", Some("Observation"), None),
            (Method::Put, "Observation/2", "update", Some("Observation"), Some("2")),
            (Method::Delete, "Observation/2", "delete", Some("Observation"), Some("2")),
            (Method::Get, "Patient/1/_history/2", "vread", Some("Patient"), Some("1")),
            (Method::Get, "Patient/1/$everything", "operation", Some("Patient"), Some("1")),
            (Method::Post, "", "transaction", None, None),
            (Method::Get, "metadata", "capabilities", None, None),
        ];
        for (method, path, name, resource_type, id) in cases {
            let classified = classify(method, path);
            assert_eq!(classified.name, name, "{path}");
            assert_eq!(classified.resource_type.as_deref(), resource_type, "{path}");
            assert_eq!(classified.id.as_deref(), id, "{path}");
        }
    }

    #[test]
    fn another_patients_resources_are_foreign() {
        assert!(foreign(&json!({"resourceType": "Patient", "id": "b"}), "a"));
        assert!(!foreign(&json!({"resourceType": "Patient", "id": "a"}), "a"));
        assert!(foreign(&json!({"resourceType": "Observation", "subject": {"reference": "Patient/b"}}), "a"));
        assert!(!foreign(
            &json!({"resourceType": "Observation", "subject": {"reference": "Patient/a/_history/2"}}),
            "a"
        ));
        assert!(!foreign(&json!({"resourceType": "Practitioner", "id": "x"}), "a"));
    }
}
