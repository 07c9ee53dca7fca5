//! Retention and legal hold: the holds in force (each with its release form), the form that
//! places one, what a purge under a schedule would destroy now, and the purge button.

use maud::html;
use serde_json::Value;

use crate::{Viewer, csrf_field, page};

/// One hold in force as listed.
pub struct HoldRow {
    pub id: String,
    pub matter: String,
    /// What it holds, in words.
    pub holds: String,
    pub placed: String,
}

const SCHEDULES: &[(&str, &str)] = &[
    ("default", "Default: 10 years; minors to 18 plus 10; deceased 10 years after death"),
    ("CA", "California: 7 years; minors at least to 19"),
    ("NY", "New York: 6 years; minors at least to 21"),
    ("TX", "Texas: 10 years; minors at least to 20"),
];

fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"]
        .as_array()
        .or(parameters["part"].as_array())
        .and_then(|list| list.iter().find(|p| p["name"] == name))
        .and_then(|p| p.as_object())
        .and_then(|p| p.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Object(object) => object.get("reference").and_then(Value::as_str).unwrap_or("").to_string(),
        other => other.to_string(),
    }
}

/// The page, with the `$retention-report` Parameters for `schedule`.
pub fn retention_page(
    viewer: &Viewer,
    holds: &[HoldRow],
    schedule: &str,
    report: &Value,
    message: Option<(bool, &str)>,
) -> String {
    let expired: Vec<&Value> =
        report["parameter"].as_array().into_iter().flatten().filter(|p| p["name"] == "expired").collect();
    page(
        Some(viewer),
        "Retention and legal hold",
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            p { "Nothing under a legal hold can be changed, deleted or purged, by any path, until the hold is released. A purge destroys every version of the records whose retention has ended and that no hold covers, and writes a certificate of destruction; the audit trail keeps its entries." }
            h2 { "Holds in force" }
            @if holds.is_empty() { p { "No holds in force." } } @else {
                div.table-wrap tabindex="0" { table {
                    caption { (holds.len()) " holds in force" }
                    thead { tr { th scope="col" { "Hold" } th scope="col" { "Matter" } th scope="col" { "Holds" } th scope="col" { "Placed" } th scope="col" { "Release" } } }
                    tbody { @for hold in holds { tr {
                        td { "Task/" (hold.id) }
                        td { (hold.matter) }
                        td { (hold.holds) }
                        td { (hold.placed) }
                        td { form method="post" action=(format!("/retention/holds/{}/release", hold.id)) {
                            (csrf_field(viewer.csrf))
                            label { "Reason" input type="text" name="reason" required; }
                            button.secondary type="submit" { "Release" }
                        } }
                    } } }
                } }
            }
            h2 { "Place a hold" }
            form method="post" action="/retention/holds" {
                (csrf_field(viewer.csrf))
                label { "Matter" input type="text" name="matter" required; }
                label { "Requested by" input type="text" name="requested_by"; }
                label { "Patient id" input type="text" name="patient"; }
                label { "Encounter id" input type="text" name="encounter"; }
                label { "From" input type="date" name="from"; }
                label { "To" input type="date" name="to"; }
                button type="submit" { "Place the hold" }
            }
            h2 { "Past retention" }
            form method="get" action="/retention" {
                label { "Schedule" select name="schedule" { @for (code, words) in SCHEDULES {
                    @if *code == schedule { option value=(code) selected { (words) } } @else { option value=(code) { (words) } }
                } } }
                button.secondary type="submit" { "Show" }
            }
            p { "Under the " (shown(value(report, "schedule"))) " schedule, a purge now would destroy " strong { (shown(value(report, "resources"))) } " resources of " (shown(value(report, "patients"))) " patients; " (shown(value(report, "held"))) " are kept under legal hold." }
            @if !expired.is_empty() {
                div.table-wrap tabindex="0" { table {
                    caption { "Patients past retention" }
                    thead { tr { th scope="col" { "Patient" } th scope="col" { "Rule" } th scope="col" { "Retention ended" } th scope="col" { "Destroyed" } th scope="col" { "Kept under hold" } } }
                    tbody { @for e in &expired { tr {
                        td { (shown(value(e, "patient"))) }
                        td { (shown(value(e, "rule"))) }
                        td { (shown(value(e, "retentionEnded"))) }
                        td { (shown(value(e, "destroyed"))) }
                        td { (e["part"].as_array().map_or(0, |p| p.iter().filter(|p| p["name"] == "kept").count())) }
                    } } }
                } }
                form method="post" action="/retention/purge" {
                    (csrf_field(viewer.csrf))
                    input type="hidden" name="schedule" value=(schedule);
                    label { input type="checkbox" name="confirm" value="yes" required; " I confirm the destruction of these records" }
                    button type="submit" { "Purge now" }
                }
            }
        },
    )
}
