//! The duplicates pages: the review queue, the decision forms, the merge preview, the merge
//! and its undo. Every action is an operation of the API asked as the signed-in user
//! (`Patient/$duplicates`, `$decide-duplicate`, `$merge`, `$unmerge`), so the one policy
//! decides and the page's audit entry names what was read and written.

use std::sync::Arc;

use api::Method;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use web::Area;
use web::duplicates::{Pair, Registration};

use super::{
    Call, Visit, ask, body_json, checked_form, failed, html, note, note_change, outcome_message, query_map,
    visit_area,
};
use crate::AppState;

/// Whether the visitor may decide on pairs and merge (the forms are shown only then).
fn stewards(visit: &Visit) -> bool {
    api::Api::permits(visit.identity(), Method::Post, "Patient/$merge", "")
}

/// A Patient id from a form or query, checked before it goes into a path.
fn patient_id(text: Option<&String>) -> Option<String> {
    fhir::patient_id_input(text?).map(str::to_string)
}

fn reference(name: &str, id: &str) -> Value {
    json!({ "name": name, "valueReference": { "reference": format!("Patient/{id}") } })
}

fn bad(visit: &Visit, text: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        web::duplicates::changed(&visit.viewer(Area::Duplicates), false, text, None, None),
    )
}

/// The outcome's messages of an operation's Parameters answer (or of an OperationOutcome).
fn outcome_lines(answer: &Value) -> Vec<String> {
    let outcome = match answer["resourceType"].as_str() {
        Some("Parameters") => answer["parameter"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "outcome")
            .map(|p| p["resource"].clone())
            .unwrap_or_default(),
        _ => answer.clone(),
    };
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["diagnostics"].as_str().map(str::to_string))
        .collect()
}

async fn queue_page(
    state: &AppState,
    visit: &Visit,
    listed: &str,
    message: Option<(bool, &str)>,
) -> Response {
    let mut patients = Vec::new();
    let query = if listed == "decided" { "status=decided" } else { "" };
    let answer = ask(state, visit, Call::get("Patient/$duplicates", query), &mut patients).await;
    note(&visit.slot, "workbench-duplicates", "R", "Patient/$duplicates".into(), patients);
    if answer.status != 200 {
        return failed(visit, Area::Duplicates, &answer);
    }
    let pairs: Vec<Pair> = body_json(&answer)["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "pair")
        .map(Pair::from_parameter)
        .collect();
    html(
        StatusCode::OK,
        web::duplicates::queue(&visit.viewer(Area::Duplicates), &pairs, listed, stewards(visit), message),
    )
}

/// `GET /duplicates[?status=decided]`.
pub(super) async fn queue(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Duplicates) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let listed = if query_map(&parts).get("status").map(String::as_str) == Some("decided") {
        "decided"
    } else {
        "waiting"
    };
    queue_page(&state, &visit, listed, None).await
}

/// `POST /duplicates/decide`: same person or different people, recorded as the visitor.
pub(super) async fn decide(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Duplicates) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let (Some(a), Some(b)) = (patient_id(form.get("a")), patient_id(form.get("b"))) else {
        return bad(&visit, "the form names no pair of Patients");
    };
    let decision = form.get("decision").cloned().unwrap_or_default();
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        reference("a", &a), reference("b", &b), { "name": "decision", "valueCode": decision },
    ]});
    let mut patients = Vec::new();
    let answer = ask(
        &state,
        &visit,
        Call::post("Patient/$decide-duplicate", parameters.to_string().into_bytes()),
        &mut patients,
    )
    .await;
    let ok = answer.status == 200;
    let text = outcome_message(&answer);
    let page = queue_page(&state, &visit, "waiting", Some((ok, &text))).await;
    // The entry is the decision's, whatever the page read to show its result.
    note(&visit.slot, "workbench-duplicates-decide", "U", "Patient/$decide-duplicate".into(), patients);
    visit.slot.refused_because(Some(text));
    page
}

/// `GET /duplicates/merge?source=&target=`: both registrations and what a merge would move
/// (the API's preview: nothing is written).
pub(super) async fn merge_form(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Duplicates) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = query_map(&parts);
    let (Some(source), Some(target)) = (patient_id(query.get("source")), patient_id(query.get("target")))
    else {
        return bad(&visit, "say which registration is merged (source) into which (target)");
    };
    let mut patients = Vec::new();
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        reference("source-patient", &source), reference("target-patient", &target),
        { "name": "preview", "valueBoolean": true },
    ]});
    let preview =
        ask(&state, &visit, Call::post("Patient/$merge", parameters.to_string().into_bytes()), &mut patients)
            .await;
    let source_read = ask(&state, &visit, Call::get(&format!("Patient/{source}"), ""), &mut patients).await;
    let target_read = ask(&state, &visit, Call::get(&format!("Patient/{target}"), ""), &mut patients).await;
    note(&visit.slot, "workbench-duplicates-merge-preview", "R", "Patient/$merge".into(), patients);
    for answer in [&preview, &source_read, &target_read] {
        if answer.status != 200 {
            return failed(&visit, Area::Duplicates, answer);
        }
    }
    let (source_json, target_json) = (body_json(&source_read), body_json(&target_read));
    html(
        StatusCode::OK,
        web::duplicates::merge_preview(
            &visit.viewer(Area::Duplicates),
            &Registration { id: &source, resource: &source_json },
            &Registration { id: &target, resource: &target_json },
            &outcome_lines(&body_json(&preview)),
        ),
    )
}

/// `POST /duplicates/merge`.
pub(super) async fn merge(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    change(state, parts, body, "merge").await
}

/// `POST /duplicates/unmerge`.
pub(super) async fn unmerge(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    change(state, parts, body, "unmerge").await
}

async fn change(state: Arc<AppState>, parts: Parts, body: Body, operation: &'static str) -> Response {
    let visit = match visit_area(&state, &parts, Area::Duplicates) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let Some(source) = patient_id(form.get("source")) else {
        return bad(&visit, "the form names no source registration");
    };
    let target = patient_id(form.get("target"));
    let mut parameter = vec![reference("source-patient", &source)];
    if operation == "merge" {
        let Some(target) = &target else { return bad(&visit, "the form names no target registration") };
        parameter.push(reference("target-patient", target));
    }
    let parameters = json!({ "resourceType": "Parameters", "parameter": parameter });
    let mut patients = Vec::new();
    let path = format!("Patient/${operation}");
    let answer =
        ask(&state, &visit, Call::post(&path, parameters.to_string().into_bytes()), &mut patients).await;
    let ok = answer.status == 200;
    let text = outcome_lines(&body_json(&answer)).join(" ");
    let text = if text.is_empty() { outcome_message(&answer) } else { text };
    let interaction =
        if operation == "merge" { "workbench-duplicates-merge" } else { "workbench-duplicates-unmerge" };
    note_change(&visit.slot, interaction, path, patients, answer.audit.written.clone());
    visit.slot.refused_because(Some(text.clone()));
    if answer.status == 403 {
        return failed(&visit, Area::Duplicates, &answer);
    }
    let status = if ok { StatusCode::OK } else { StatusCode::CONFLICT };
    let (undo, chart) = match (ok, operation) {
        (true, "merge") => (Some(source.as_str()), target.as_deref()),
        (true, _) => (None, Some(source.as_str())),
        _ => (None, None),
    };
    html(status, web::duplicates::changed(&visit.viewer(Area::Duplicates), ok, &text, undo, chart))
}
