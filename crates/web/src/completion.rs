//! Record completion: the delinquency report (per clinician, the open deficiencies by age,
//! the incomplete and delinquent records), the completion and delinquency rates, the open
//! deficiencies oldest first, and the button that runs the rules now.

use maud::html;
use serde_json::Value;

use crate::{Viewer, csrf_field, page};

/// The list of a Parameters, or of one of its parts.
fn members(parameters: &Value) -> &[Value] {
    parameters["parameter"]
        .as_array()
        .or(parameters["part"].as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    members(parameters)
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object())
        .and_then(|p| p.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

fn parts<'a>(parameters: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    members(parameters).iter().filter(move |p| p["name"] == name)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Object(object) => object.get("reference").and_then(Value::as_str).unwrap_or("").to_string(),
        other => other.to_string(),
    }
}

fn rule_words(code: &str) -> &str {
    match code {
        "discharge-summary" => "Discharge summary missing",
        "history-and-physical" => "History and physical missing",
        "operative-report" => "Operative report missing",
        "unsigned-note" => "Note not signed",
        other => other,
    }
}

/// The page from the `Task/$completion-report` Parameters.
pub fn completion_page(viewer: &Viewer, report: &Value, message: Option<(bool, &str)>) -> String {
    let rate = value(report, "completionRate").as_f64().unwrap_or(0.0) * 100.0;
    let clinicians: Vec<&Value> = parts(report, "clinician").collect();
    let deficiencies: Vec<&Value> = parts(report, "deficiency").collect();
    page(
        Some(viewer),
        "Record completion",
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            p { "A finished encounter owes its documents: a discharge summary within 14 days of discharge, a history and physical within 24 hours of admission, an operative report within 24 hours of surgery, and every note signed within 72 hours. A record still incomplete " (shown(value(report, "delinquentDays"))) " days after discharge is delinquent." }
            dl.figures {
                dt { "Open deficiencies" } dd { (shown(value(report, "openDeficiencies"))) }
                dt { "Chart completion rate" } dd { (format!("{rate:.1}%")) " of " (shown(value(report, "discharges"))) " discharges in the last " (shown(value(report, "periodDays"))) " days" }
                dt { "Delinquent records" } dd { (shown(value(report, "delinquentRecords"))) }
                dt { "Delinquency rate" } dd { (format!("{:.2}", value(report, "delinquencyRate").as_f64().unwrap_or(0.0))) " of the average monthly discharges (the Joint Commission's line is 0.50)" }
            }
            form method="post" action="/completion/scan" {
                (csrf_field(viewer.csrf))
                button type="submit" { "Run the rules now" }
                " (opens a Task for each new deficiency, owned by the clinician who owes it, and closes those whose document has arrived)"
            }
            h2 { "By clinician" }
            @if clinicians.is_empty() { p { "No open deficiencies." } } @else {
                div.table-wrap tabindex="0" { table {
                    caption { "Open deficiencies by clinician, most delinquent records first" }
                    thead { tr {
                        th scope="col" { "Clinician" } th scope="col" { "Open" } th scope="col" { "Records" }
                        th scope="col" { "Delinquent records" } th scope="col" { "Oldest (days past due)" }
                        th scope="col" { "0–7 days" } th scope="col" { "8–14" } th scope="col" { "15–30" } th scope="col" { "Over 30" }
                    } }
                    tbody { @for line in &clinicians {
                        @let ages: Vec<String> = parts(line, "daysPastDue").map(|p| shown(value(p, "count"))).collect();
                        tr {
                            td { @match shown(value(line, "practitioner")).as_str() { "" => "(no one named)", who => (who) } }
                            td { (shown(value(line, "open"))) }
                            td { (shown(value(line, "records"))) }
                            td { (shown(value(line, "delinquentRecords"))) }
                            td { (shown(value(line, "oldestDays"))) }
                            @for age in &ages { td { (age) } }
                        }
                    } }
                } }
            }
            h2 { "Open deficiencies, oldest first" }
            @if deficiencies.is_empty() { p { "None." } } @else {
                div.table-wrap tabindex="0" { table {
                    caption { (deficiencies.len()) " listed" }
                    thead { tr {
                        th scope="col" { "What" } th scope="col" { "Of" } th scope="col" { "Patient" }
                        th scope="col" { "Owed by" } th scope="col" { "Due" } th scope="col" { "Delinquent" }
                    } }
                    tbody { @for d in &deficiencies {
                        @let patient = shown(value(d, "patient"));
                        tr {
                            td { (rule_words(&shown(value(d, "rule")))) }
                            td { (shown(value(d, "focus"))) }
                            td { a href=(format!("/patients/{}", patient.trim_start_matches("Patient/"))) { (patient) } }
                            td { (shown(value(d, "responsible"))) }
                            td { (shown(value(d, "due")).get(..10).unwrap_or("")) }
                            td { @if value(d, "delinquent") == &Value::Bool(true) { strong.error { "yes" } } @else { "no" } }
                        }
                    } }
                } }
            }
        },
    )
}
