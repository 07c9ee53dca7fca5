//! The record-completion page: the delinquency report and the button that runs the rules.
//! Both are API operations asked as the signed-in user (`Task/$completion-report`,
//! `Task/$completion-scan`), so the one policy decides and each is audited.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, request::Parts};
use axum::response::Response;
use web::Area;

use super::{
    Call, Visit, ask, body_json, checked_form, failed, html, note, outcome_message, record_change, visit_area,
};
use crate::AppState;

async fn report_page(
    state: &AppState,
    visit: &Visit,
    message: Option<(bool, &str)>,
    patients: &mut Vec<String>,
) -> Response {
    let answer = ask(state, visit, Call::get("Task/$completion-report", "_count=200"), patients).await;
    if answer.status != 200 {
        return failed(visit, Area::Completion, &answer);
    }
    html(
        StatusCode::OK,
        web::completion::completion_page(&visit.viewer(Area::Completion), &body_json(&answer), message),
    )
}

/// `GET /completion`.
pub(super) async fn report(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let visit = match visit_area(&state, &parts, Area::Completion) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let mut patients = Vec::new();
    let page = report_page(&state, &visit, None, &mut patients).await;
    note(&visit.slot, "workbench-completion", "R", "Task/$completion-report".into(), patients);
    page
}

/// `POST /completion/scan`.
pub(super) async fn scan(State(state): State<Arc<AppState>>, parts: Parts, body: Body) -> Response {
    let visit = match visit_area(&state, &parts, Area::Completion) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    if let Err(refused) = checked_form(&state, &visit, &parts.headers, body).await {
        return refused;
    }
    let mut patients = Vec::new();
    let answer = ask(&state, &visit, Call::post("Task/$completion-scan", Vec::new()), &mut patients).await;
    let ok = answer.status == 200;
    let text = if ok {
        let result = body_json(&answer);
        let count = |name: &str| {
            result["parameter"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == name))
                .and_then(|p| p["valueInteger"].as_u64())
                .unwrap_or(0)
        };
        format!(
            "Rules run: {} deficiencies opened, {} closed, {} open",
            count("opened"),
            count("closed"),
            count("open")
        )
    } else {
        outcome_message(&answer)
    };
    let page = report_page(&state, &visit, Some((ok, &text)), &mut patients).await;
    record_change(&visit, "workbench-completion-scan", "Task/$completion-scan".into(), patients, &answer);
    page
}
