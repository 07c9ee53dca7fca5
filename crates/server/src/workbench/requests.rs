//! The release-of-information pages: the open requests with their clocks, intake, the
//! extension and the release. Every action is an operation of the API asked as the signed-in
//! user (`Task` search, `Task/$roi-request`, `$roi-extend`, `$roi-release`), so the one policy
//! decides; a release's audit entry names the disclosure, as the API's does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use web::Area;
use web::roi::RequestRow;
use workflow::roi::{self, Request, input};

use super::{
    Call, Visit, ask, body_json, checked_form, failed, html, note, outcome_message, record_change, visit_area,
};
use crate::AppState;

const DAY: i64 = 86_400_000;

/// The ROI Tasks, as a search.
const SEARCH: &str = "code=https%3A%2F%2Fchartroom.dev%2Ffhir%2FCodeSystem%2Fhim-workflow%7Crelease-of-information&status=requested,received,accepted,ready,in-progress,on-hold&_count=1000";

fn now() -> i64 {
    fhir::DateTime::parse(&fhir::DateTime::now_utc().to_string(), fhir::DateTimeKind::DateTime)
        .map(|d| d.lower_bound_millis())
        .unwrap_or(0)
}

fn row(request: &Request, now: i64) -> RequestRow {
    let named = request.requester_name["display"]
        .as_str()
        .or(request.requester_name["reference"].as_str())
        .unwrap_or("");
    RequestRow {
        id: request.id.clone(),
        patient: request.patient.clone(),
        requester: format!("{named} ({})", request.requester.code()),
        purpose: request.purpose.clone(),
        received: roi::date_time(request.received)[..10].to_string(),
        due: roi::date_time(request.due())[..10].to_string(),
        days_left: (request.due() - now).div_euclid(DAY),
        extended: request.extension.is_some(),
        delivery: request.delivery.code().to_string(),
    }
}

async fn list_page(
    state: &AppState,
    visit: &Visit,
    message: Option<(bool, &str)>,
    patients: &mut Vec<String>,
) -> Response {
    let answer = ask(state, visit, Call::get("Task", SEARCH), patients).await;
    if answer.status != 200 {
        return failed(visit, Area::Requests, &answer);
    }
    let now = now();
    let mut requests: Vec<Request> = body_json(&answer)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Request::from_task(&e["resource"]).ok())
        .filter(Request::open)
        .collect();
    requests.sort_by_key(|r| r.due());
    let rows: Vec<RequestRow> = requests.iter().map(|r| row(r, now)).collect();
    patients.extend(requests.iter().map(|r| format!("Patient/{}", r.patient)));
    html(StatusCode::OK, web::roi::requests_page(&visit.viewer(Area::Requests), &rows, message))
}

/// `GET /requests`.
pub(super) async fn list(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Requests) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let page = list_page(&state, &visit, None, &mut patients).await;
    note(&visit.slot, "workbench-roi", "R", "Task".into(), patients);
    page
}

/// The Task the intake form describes.
fn task_of(form: &std::collections::HashMap<String, String>) -> Value {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let mut inputs = vec![
        input("requester-type", json!({ "valueCode": field("kind") })),
        input("delivery", json!({ "valueCode": field("delivery") })),
    ];
    for (name, code) in [("from", "scope-start"), ("to", "scope-end")] {
        if !field(name).is_empty() {
            inputs.push(input(code, json!({ "valueDate": field(name) })));
        }
    }
    for resource_type in field("types").split(',').map(str::trim).filter(|t| !t.is_empty()) {
        inputs.push(input("record-type", json!({ "valueCode": resource_type })));
    }
    if !field("order").is_empty() {
        let id = field("order").trim_start_matches("DocumentReference/");
        inputs.push(input(
            "legal-order",
            json!({ "valueReference": { "reference": format!("DocumentReference/{id}") } }),
        ));
    }
    if !field("authorization").is_empty() {
        let id = field("authorization").trim_start_matches("Consent/");
        inputs.push(input(
            "authorization",
            json!({ "valueReference": { "reference": format!("Consent/{id}") } }),
        ));
    }
    json!({
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": roi::WORKFLOW_SYSTEM, "code": roi::ROI_CODE }] },
        "for": { "reference": format!("Patient/{}", field("patient").trim_start_matches("Patient/")) },
        "authoredOn": fhir::DateTime::now_utc().to_string(),
        "requester": { "display": field("requester") },
        "reasonCode": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": field("purpose") }] },
        "input": inputs,
    })
}

/// `POST /requests`: intake.
pub(super) async fn intake(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Requests) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let mut patients = Vec::new();
    let answer = ask(
        &state,
        &visit,
        Call::post("Task/$roi-request", task_of(&form).to_string().into_bytes()),
        &mut patients,
    )
    .await;
    let ok = answer.status == 201;
    let text = if ok {
        let task = body_json(&answer);
        format!(
            "Request Task/{} taken in; due {}",
            task["id"].as_str().unwrap_or(""),
            task["restriction"]["period"]["end"].as_str().unwrap_or("")
        )
    } else {
        outcome_message(&answer)
    };
    let page = list_page(&state, &visit, Some((ok, &text)), &mut patients).await;
    record_change(&visit, "workbench-roi-request", "Task/$roi-request".into(), patients, &answer);
    page
}

/// A POST on one request (`/requests/{id}/...`): the visitor, their checked form and the
/// request's id, or the page that answers instead.
async fn acting_on(
    state: &AppState,
    parts: &Parts,
    body: Body,
    id: &str,
) -> Result<(Visit, std::collections::HashMap<String, String>, String), Response> {
    let visit = visit_area(state, parts, Area::Requests)?;
    let form = checked_form(state, &visit, &parts.headers, body).await?;
    if !fhir::is_valid_id(id) {
        return Err(list_page(state, &visit, Some((false, "no such request")), &mut Vec::new()).await);
    }
    Ok((visit, form, id.to_string()))
}

/// `POST /requests/{id}/extend`.
pub(super) async fn extend(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Body,
) -> Response {
    let (visit, form, id) = match acting_on(&state, &parts, body, &id).await {
        Ok(acting) => acting,
        Err(response) => return response,
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": reason }] });
    let path = format!("Task/{id}/$roi-extend");
    let mut patients = Vec::new();
    let answer =
        ask(&state, &visit, Call::post(&path, parameters.to_string().into_bytes()), &mut patients).await;
    let ok = answer.status == 200;
    let text = if ok {
        format!(
            "Task/{id} extended; due {}",
            body_json(&answer)["restriction"]["period"]["end"].as_str().unwrap_or("")
        )
    } else {
        outcome_message(&answer)
    };
    let page = list_page(&state, &visit, Some((ok, &text)), &mut patients).await;
    record_change(&visit, "workbench-roi-extend", path, patients, &answer);
    page
}

/// `POST /requests/{id}/release`: the release, shown as the requester reads it.
pub(super) async fn release(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Body,
) -> Response {
    let (visit, _, id) = match acting_on(&state, &parts, body, &id).await {
        Ok(acting) => acting,
        Err(response) => return response,
    };
    let path = format!("Task/{id}/$roi-release");
    let mut patients = Vec::new();
    let answer = ask(&state, &visit, Call::post(&path, Vec::new()), &mut patients).await;
    let page = if answer.status == 200 {
        let disclosed = answer.audit.disclosure.clone().unwrap_or_default();
        html(
            StatusCode::OK,
            web::roi::release_page(
                &visit.viewer(Area::Requests),
                &format!("Task/{id}"),
                &body_json(&answer),
                &disclosed,
            ),
        )
    } else {
        list_page(&state, &visit, Some((false, &outcome_message(&answer))), &mut patients).await
    };
    record_change(&visit, "workbench-roi-release", path, patients, &answer);
    page
}
