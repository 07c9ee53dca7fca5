//! The interfaces page: an HL7 v2 message applied by hand, a research extract and a bulk
//! import started and followed. Each is an API operation asked as the signed-in user
//! (`$hl7v2`, `$export?_deidentify=`, `$export-status`, `$import`, `$import-status`), so the
//! one policy decides and each is audited.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use web::Area;
use web::interfaces::JobView;

use super::{
    Call, Visit, ask, body_json, checked_form, html, note, outcome_message, record_change, visit_area,
};
use crate::AppState;

fn shown(visit: &Visit, message: Option<(bool, &str)>, ack: Option<&str>, job: Option<&JobView>) -> Response {
    html(StatusCode::OK, web::interfaces::interfaces_page(&visit.viewer(Area::Interfaces), message, ack, job))
}

/// `GET /interfaces`.
pub(super) async fn show(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Interfaces) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    note(&visit.slot, "workbench-interfaces", "R", "interfaces".into(), Vec::new());
    shown(&visit, None, None, None)
}

/// `POST /interfaces/hl7v2`: the message applied through `$hl7v2`.
pub(super) async fn message(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Interfaces) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    // A browser sends the textarea's lines with CR LF; HL7 segments end with CR.
    let text = form.get("message").map(|m| m.replace("\r\n", "\r").replace('\n', "\r")).unwrap_or_default();
    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "message", "valueString": text }] });
    let mut patients = Vec::new();
    let answer =
        ask(&state, &visit, Call::post("$hl7v2", parameters.to_string().into_bytes()), &mut patients).await;
    record_change(&visit, "workbench-hl7v2", "$hl7v2".into(), patients, &answer);
    if answer.status != 200 {
        return shown(&visit, Some((false, &outcome_message(&answer))), None, None);
    }
    let reply = body_json(&answer);
    let value = |name: &str| -> String {
        reply["parameter"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .and_then(|p| p["valueString"].as_str().or(p["valueCode"].as_str()))
            .unwrap_or("")
            .to_string()
    };
    let code = value("acknowledgement");
    let ok = code == "AA";
    let words = if ok { "Applied (AA)".to_string() } else { format!("Not applied ({code})") };
    shown(&visit, Some((ok, &words)), Some(&value("ack")), None)
}

/// The job id of a kick-off's `Content-Location` (`.../$export-status/JOB`, `...?job=JOB`).
fn job_of(answer: &api::Response) -> Option<String> {
    let location = answer.location.as_deref()?;
    let id = location.rsplit(['/', '=']).next()?;
    api::valid_job_id(id).then(|| id.to_string())
}

/// `POST /interfaces/extract`: `$export?_deidentify=PROFILE` started as the user.
pub(super) async fn extract(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Interfaces) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let profile = match form.get("profile").map(String::as_str) {
        Some("date-shift") => "date-shift",
        _ => "safe-harbor",
    };
    let mut query = format!("_deidentify={profile}");
    let types: String = form
        .get("types")
        .map(|t| t.chars().filter(|c| c.is_ascii_alphanumeric() || *c == ',').collect())
        .unwrap_or_default();
    if !types.is_empty() {
        query.push_str(&format!("&_type={types}"));
    }
    let mut patients = Vec::new();
    let answer =
        ask(&state, &visit, Call::get("$export", &query).prefer("respond-async"), &mut patients).await;
    record_change(&visit, "workbench-extract", "$export".into(), patients, &answer);
    match (answer.status, job_of(&answer)) {
        (202, Some(job)) => {
            let view = JobView { kind: "extract", id: &job, manifest: None, progress: Some("Started.") };
            shown(&visit, Some((true, "The extract is running")), None, Some(&view))
        }
        _ => shown(&visit, Some((false, &outcome_message(&answer))), None, None),
    }
}

/// `POST /interfaces/import`: `$import` of the listed inputs, started as the user.
pub(super) async fn import(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Interfaces) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let mut parameter = vec![json!({ "name": "inputFormat", "valueCode": "application/fhir+ndjson" })];
    for line in form.get("inputs").map(String::as_str).unwrap_or("").lines() {
        let mut words = line.split_whitespace();
        let (Some(resource_type), Some(url)) = (words.next(), words.next()) else { continue };
        parameter.push(json!({ "name": "input", "part": [
            { "name": "type", "valueCode": resource_type }, { "name": "url", "valueUri": url }] }));
    }
    let parameters = json!({ "resourceType": "Parameters", "parameter": parameter });
    let mut patients = Vec::new();
    let call = Call::post("$import", parameters.to_string().into_bytes()).prefer("respond-async");
    let answer = ask(&state, &visit, call, &mut patients).await;
    record_change(&visit, "workbench-import", "$import".into(), patients, &answer);
    match (answer.status, job_of(&answer)) {
        (202, Some(job)) => {
            let view = JobView { kind: "import", id: &job, manifest: None, progress: Some("Started.") };
            shown(&visit, Some((true, "The import is running")), None, Some(&view))
        }
        _ => shown(&visit, Some((false, &outcome_message(&answer))), None, None),
    }
}

/// `GET /interfaces/{kind}/{job}`: where an extract or import stands.
pub(super) async fn job(
    State(state): State<Arc<AppState>>,
    Path((kind, job)): Path<(String, String)>,
    parts: Parts,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Interfaces) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    if !api::valid_job_id(&job) || !matches!(kind.as_str(), "extract" | "import") {
        return shown(&visit, Some((false, "no such job")), None, None);
    }
    let mut patients = Vec::new();
    let answer = if kind == "extract" {
        ask(&state, &visit, Call::get(&format!("$export-status/{job}"), ""), &mut patients).await
    } else {
        ask(&state, &visit, Call::get("$import-status", &format!("job={job}")), &mut patients).await
    };
    note(&visit.slot, "workbench-interfaces-job", "R", format!("{kind} {job}"), patients);
    let manifest: Value = body_json(&answer);
    match answer.status {
        200 => {
            let view = JobView { kind: &kind, id: &job, manifest: Some(&manifest), progress: None };
            shown(&visit, None, None, Some(&view))
        }
        202 => {
            let progress = answer
                .headers
                .iter()
                .find(|(name, _)| *name == "x-progress")
                .map(|(_, value)| format!("Running: {value}."))
                .unwrap_or_else(|| "Running.".into());
            let view = JobView { kind: &kind, id: &job, manifest: None, progress: Some(&progress) };
            shown(&visit, None, None, Some(&view))
        }
        _ => shown(&visit, Some((false, &outcome_message(&answer))), None, None),
    }
}
