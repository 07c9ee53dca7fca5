//! The retention page: the holds in force, placing and releasing one, what a purge would
//! destroy, and the purge. Every action is an API operation asked as the signed-in user
//! (`Task` search, `Task/$hold-place`, `$hold-release`, `$retention-report`,
//! `$retention-purge`), so the one policy decides and each is audited.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use web::Area;
use web::retention::HoldRow;

use super::{
    Call, Visit, ask, body_json, checked_form, failed, html, note, outcome_message, record_change, visit_area,
};
use crate::AppState;

/// The holds in force, as a search.
const HOLDS: &str = "code=https%3A%2F%2Fchartroom.dev%2Ffhir%2FCodeSystem%2Fhim-workflow%7Clegal-hold&status=in-progress&_count=1000";

fn schedule_of(text: Option<&String>) -> &'static str {
    match text.map(String::as_str) {
        Some("CA") => "CA",
        Some("NY") => "NY",
        Some("TX") => "TX",
        _ => "default",
    }
}

fn holds_in_words(task: &Value) -> String {
    let mut words = Vec::new();
    if let Some(patient) = task["for"]["reference"].as_str() {
        words.push(patient.to_string());
    }
    if let Some(encounter) = task["focus"]["reference"].as_str() {
        words.push(encounter.to_string());
    }
    let period = &task["restriction"]["period"];
    if period.is_object() {
        words.push(format!(
            "{} to {}",
            period["start"].as_str().unwrap_or("the beginning"),
            period["end"].as_str().unwrap_or("now")
        ));
    }
    words.join(", ")
}

async fn page(
    state: &AppState,
    visit: &Visit,
    schedule: &str,
    message: Option<(bool, &str)>,
    patients: &mut Vec<String>,
) -> Response {
    let answer = ask(state, visit, Call::get("Task", HOLDS), patients).await;
    if answer.status != 200 {
        return failed(visit, Area::Retention, &answer);
    }
    let holds: Vec<HoldRow> = body_json(&answer)["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .map(|task| HoldRow {
            id: task["id"].as_str().unwrap_or("").to_string(),
            matter: task["description"].as_str().unwrap_or("").to_string(),
            holds: holds_in_words(task),
            placed: task["authoredOn"].as_str().unwrap_or("").chars().take(10).collect(),
        })
        .collect();
    let query = format!("schedule={schedule}&_count=200");
    let report = ask(state, visit, Call::get("$retention-report", &query), patients).await;
    if report.status != 200 {
        return failed(visit, Area::Retention, &report);
    }
    html(
        StatusCode::OK,
        web::retention::retention_page(
            &visit.viewer(Area::Retention),
            &holds,
            schedule,
            &body_json(&report),
            message,
        ),
    )
}

/// `GET /retention`.
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Retention) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let shown = page(&state, &visit, schedule_of(query.get("schedule")), None, &mut patients).await;
    note(&visit.slot, "workbench-retention", "R", "$retention-report".into(), patients);
    shown
}

async fn acted(
    state: &AppState,
    visit: &Visit,
    interaction: &'static str,
    path: String,
    body: Value,
    schedule: &str,
    success: impl Fn(&Value) -> String,
) -> Response {
    let mut patients = Vec::new();
    let answer = ask(state, visit, Call::post(&path, body.to_string().into_bytes()), &mut patients).await;
    let ok = (200..300).contains(&answer.status);
    let text = if ok { success(&body_json(&answer)) } else { outcome_message(&answer) };
    let shown = page(state, visit, schedule, Some((ok, &text)), &mut patients).await;
    record_change(visit, interaction, path, patients, &answer);
    shown
}

/// `POST /retention/holds`: place a hold.
pub(super) async fn place(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Retention) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut task = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": workflow::retention::HOLD_SYSTEM, "code": workflow::retention::HOLD_CODE }] },
        "description": field("matter").unwrap_or("") });
    if let Some(patient) = field("patient") {
        task["for"] = json!({ "reference": format!("Patient/{}", patient.trim_start_matches("Patient/")) });
    }
    if let Some(encounter) = field("encounter") {
        task["focus"] =
            json!({ "reference": format!("Encounter/{}", encounter.trim_start_matches("Encounter/")) });
    }
    if field("from").is_some() || field("to").is_some() {
        let mut period = serde_json::Map::new();
        if let Some(from) = field("from") {
            period.insert("start".into(), json!(from));
        }
        if let Some(to) = field("to") {
            period.insert("end".into(), json!(to));
        }
        task["restriction"] = json!({ "period": period });
    }
    if let Some(who) = field("requested_by") {
        task["requester"] = json!({ "display": who });
    }
    acted(&state, &visit, "workbench-hold-place", "Task/$hold-place".into(), task, "default", |t| {
        format!("Hold Task/{} placed", t["id"].as_str().unwrap_or(""))
    })
    .await
}

/// `POST /retention/holds/{id}/release`.
pub(super) async fn release(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Body,
) -> Response {
    let visit = match visit_area(&state, &parts, Area::Retention) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    if !fhir::is_valid_id(&id) {
        let mut patients = Vec::new();
        return page(&state, &visit, "default", Some((false, "no such hold")), &mut patients).await;
    }
    let reason = form.get("reason").cloned().unwrap_or_default();
    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": reason }] });
    let path = format!("Task/{id}/$hold-release");
    acted(&state, &visit, "workbench-hold-release", path, parameters, "default", |_| {
        format!("Hold Task/{id} released")
    })
    .await
}

/// `POST /retention/purge`.
pub(super) async fn purge(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Retention) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let form = match checked_form(&state, &visit, &parts.headers, body).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let schedule = schedule_of(form.get("schedule"));
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let mut patients = Vec::new();
        return page(&state, &visit, schedule, Some((false, "confirm the destruction first")), &mut patients)
            .await;
    }
    let parameters =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "schedule", "valueCode": schedule }] });
    acted(
        &state,
        &visit,
        "workbench-retention-purge",
        "$retention-purge".into(),
        parameters,
        schedule,
        |answer| {
            let count = |name: &str| {
                answer["parameter"]
                    .as_array()
                    .and_then(|p| p.iter().find(|p| p["name"] == name))
                    .map(|p| p["valueInteger"].to_string())
                    .unwrap_or_default()
            };
            let certificate = answer["parameter"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "certificate"))
                .and_then(|p| p["valueReference"]["reference"].as_str())
                .unwrap_or("");
            if certificate.is_empty() {
                "Nothing is past retention under this schedule: nothing was destroyed".to_string()
            } else {
                format!(
                    "Destroyed {} resources; certificate of destruction {certificate}",
                    count("resources")
                )
            }
        },
    )
    .await
}
