//! The amendment pages (in the Requests area): the open requests with their clocks, the
//! extension, acceptance, denial and statement forms, and intake. Every action is an API
//! operation asked as the signed-in user (`Task` search, `Task/$amend-*`), so the one policy
//! decides and each is audited.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use web::Area;
use web::amendments::AmendmentRow;
use workflow::amendment::{AMENDMENT_CODE, Amendment, INPUT_SYSTEM};

use super::{
    Call, Visit, ask, body_json, checked_form, failed, html, note, outcome_message, record_change, visit_area,
};
use crate::AppState;

/// The amendment Tasks, as a search.
const SEARCH: &str = "code=https%3A%2F%2Fchartroom.dev%2Ffhir%2FCodeSystem%2Fhim-workflow%7Camendment&status=requested,in-progress,rejected&_count=1000";

fn now() -> i64 {
    workflow::instant(&fhir::DateTime::now_utc().to_string()).unwrap_or(0)
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
    let tasks: Vec<Value> =
        body_json(&answer)["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect();
    let now = now();
    let mut open = Vec::new();
    let mut denied = Vec::new();
    for task in &tasks {
        let Ok(request) = Amendment::from_task(task) else { continue };
        patients.push(format!("Patient/{}", request.patient));
        let answered = task["output"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["type"]["text"] == "statement-of-disagreement"));
        let mut row = AmendmentRow {
            id: request.id.clone(),
            patient: request.patient.clone(),
            focus: request.focus.clone(),
            requested: request.requested.clone(),
            received: workflow::date_time(request.received)[..10].to_string(),
            due: workflow::date_time(request.due())[..10].to_string(),
            days_left: (request.due() - now).div_euclid(workflow::DAY),
            extended: request.extension.is_some(),
            status: request.status.clone(),
            current: String::new(),
        };
        if request.open() {
            let focus = ask(state, visit, Call::get(&request.focus, ""), patients).await;
            if focus.status == 200 {
                row.current = serde_json::to_string_pretty(&body_json(&focus)).unwrap_or_default();
            }
            open.push(row);
        } else if request.status == "rejected" && !answered {
            denied.push(row);
        }
    }
    open.sort_by_key(|r| r.days_left);
    html(
        StatusCode::OK,
        web::amendments::amendments_page(&visit.viewer(Area::Requests), &open, &denied, message),
    )
}

/// `GET /requests/amendments`.
pub(super) async fn list(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Requests) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let page = list_page(&state, &visit, None, &mut patients).await;
    note(&visit.slot, "workbench-amendments", "R", "Task".into(), patients);
    page
}

fn input(name: &str, value: Value) -> Value {
    let mut entry = json!({ "type": { "coding": [{ "system": INPUT_SYSTEM, "code": name }] } });
    if let (Some(entry), Some(value)) = (entry.as_object_mut(), value.as_object()) {
        entry.extend(value.clone());
    }
    entry
}

/// The Task the intake form describes.
fn task_of(form: &HashMap<String, String>) -> Value {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let patient = field("patient").trim_start_matches("Patient/");
    let mut inputs = vec![input("requested-change", json!({ "valueString": field("requested") }))];
    for who in field("notify").split(',').map(str::trim).filter(|w| !w.is_empty()) {
        inputs.push(input("notify", json!({ "valueReference": { "display": who } })));
    }
    json!({
        "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": workflow::roi::WORKFLOW_SYSTEM, "code": AMENDMENT_CODE }] },
        "for": { "reference": format!("Patient/{patient}") },
        "focus": { "reference": field("focus") },
        "authoredOn": fhir::DateTime::now_utc().to_string(),
        "requester": { "reference": format!("Patient/{patient}") },
        "input": inputs,
    })
}

/// `POST /requests/amendments`: intake.
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
    let call = Call::post("Task/$amend-request", task_of(&form).to_string().into_bytes());
    let answer = ask(&state, &visit, call, &mut patients).await;
    let ok = answer.status == 201;
    let text = if ok {
        let task = body_json(&answer);
        format!(
            "Amendment request Task/{} taken in; due {}",
            task["id"].as_str().unwrap_or(""),
            task["restriction"]["period"]["end"].as_str().unwrap_or("")
        )
    } else {
        outcome_message(&answer)
    };
    let page = list_page(&state, &visit, Some((ok, &text)), &mut patients).await;
    record_change(&visit, "workbench-amend-request", "Task/$amend-request".into(), patients, &answer);
    page
}

/// `POST /requests/amendments/{id}/{action}`: extend, accept, deny or disagree.
pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    parts: Parts,
    body: Body,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Requests) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let string = |name: &str, value: String| json!({ "name": name, "valueString": value });
    let (operation, parameter) = match action.as_str() {
        "extend" => ("amend-extend", vec![string("reason", field("reason"))]),
        "accept" => match serde_json::from_str::<Value>(&field("resource")) {
            Ok(resource) if resource.is_object() => (
                "amend-decide",
                vec![
                    json!({ "name": "decision", "valueCode": "accept" }),
                    json!({ "name": "resource", "resource": resource }),
                ],
            ),
            _ => {
                let mut patients = Vec::new();
                return list_page(
                    &state,
                    &visit,
                    Some((false, "the amended resource is not JSON")),
                    &mut patients,
                )
                .await;
            }
        },
        "deny" => (
            "amend-decide",
            vec![
                json!({ "name": "decision", "valueCode": "deny" }),
                json!({ "name": "basis", "valueCode": field("basis") }),
                string("explanation", field("explanation")),
            ],
        ),
        "disagree" => ("amend-disagree", vec![string("statement", field("statement"))]),
        _ => {
            let mut patients = Vec::new();
            return list_page(&state, &visit, Some((false, "no such action")), &mut patients).await;
        }
    };
    if !fhir::is_valid_id(&id) {
        let mut patients = Vec::new();
        return list_page(&state, &visit, Some((false, "no such request")), &mut patients).await;
    }
    let path = format!("Task/{id}/${operation}");
    let parameters = json!({ "resourceType": "Parameters", "parameter": parameter });
    let mut patients = Vec::new();
    let answer =
        ask(&state, &visit, Call::post(&path, parameters.to_string().into_bytes()), &mut patients).await;
    let ok = answer.status == 200;
    let text = if ok {
        let task = body_json(&answer);
        let outputs: Vec<String> = task["output"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                format!(
                    "{}: {}",
                    o["type"]["text"].as_str().unwrap_or(""),
                    o["valueReference"]["reference"].as_str().or(o["valueString"].as_str()).unwrap_or("")
                )
            })
            .collect();
        format!(
            "Task/{id} {}; {}",
            task["businessStatus"]["text"].as_str().or(task["status"].as_str()).unwrap_or(""),
            if outputs.is_empty() {
                format!("due {}", task["restriction"]["period"]["end"].as_str().unwrap_or(""))
            } else {
                outputs.join("; ")
            }
        )
    } else {
        outcome_message(&answer)
    };
    let page = list_page(&state, &visit, Some((ok, &text)), &mut patients).await;
    record_change(&visit, "workbench-amend", path, patients, &answer);
    page
}
