//! The operations report (`$operations-report`): the period's totals, the daily census drawn
//! as bars, and the figures by month and by facility or service; read back from the
//! report's Parameters, so the workbench page, the command line's HTML and the operation's
//! HTML are one body.

use maud::{Markup, html};
use serde_json::Value;

use crate::views::part;
use crate::{Viewer, page, svg, text};

fn figure(parameter: &Value, name: &str) -> String {
    let value = part(parameter, name);
    if let Some(n) = value["valueDecimal"].as_f64() {
        if name == "readmissionRate" { format!("{:.1}%", n * 100.0) } else { format!("{n:.2}") }
    } else {
        text(&value["valueInteger"])
    }
}

const COLUMNS: [(&str, &str); 8] = [
    ("admissions", "Admissions"),
    ("discharges", "Discharges"),
    ("bedDays", "Bed-days"),
    ("averageDailyCensus", "Average daily census"),
    ("averageLengthOfStay", "Average length of stay (nights)"),
    ("readmissions", "Readmissions (30 days)"),
    ("readmissionRate", "Readmission rate"),
    ("emergencyVisits", "Emergency visits"),
];

fn figures_table(caption: &str, first: &str, rows: &[(String, &Value)]) -> Markup {
    html! {
        div.table-wrap tabindex="0" { table {
            caption { (caption) }
            thead { tr { th scope="col" { (first) } @for (_, title) in COLUMNS { th scope="col" { (title) } } } }
            tbody { @for (label, row) in rows { tr { th scope="row" { (label) } @for (name, _) in COLUMNS { td { (figure(row, name)) } } } } }
        } }
    }
}

/// The report's body.
pub fn body(report: &Value) -> Markup {
    let parameters = report["parameter"].as_array().cloned().unwrap_or_default();
    let named = |name: &str| -> Vec<&Value> { parameters.iter().filter(|p| p["name"] == name).collect() };
    let single = |name: &str| parameters.iter().find(|p| p["name"] == name).cloned().unwrap_or_default();
    let (from, to) = (text(&single("from")["valueDate"]), text(&single("to")["valueDate"]));
    let by = text(&single("by")["valueCode"]);
    let total = single("total");
    let census: Vec<f64> = named("census")
        .iter()
        .map(|c| part(c, "inpatients")["valueInteger"].as_f64().unwrap_or(0.0))
        .collect();
    let months: Vec<(String, &Value)> =
        named("month").into_iter().map(|m| (text(&part(m, "month")["valueString"]), m)).collect();
    let groups: Vec<(String, &Value)> =
        named("group").into_iter().map(|g| (text(&part(g, "label")["valueString"]), g)).collect();
    html! {
        p { "From " (from) " to " (to) ". Census: inpatients in a bed at midnight; bed-days: nights in the period; length of stay over the month's discharges; readmissions: live discharges followed by an admission within 30 days." }
        (figures_table("The whole period", "Period", &[(format!("{from} to {to}"), &total)]))
        h2 { "Daily census" }
        (svg::epidemic_curve(&census, &[], &format!("Inpatients at midnight, each day from {from} to {to}")))
        h2 { "By month" }
        (figures_table("Figures by month", "Month", &months))
        h2 { "By " (by) }
        (figures_table(&format!("Figures by {by}"), &by, &groups))
    }
}

/// The workbench's page: the period and grouping form, and the report.
pub fn operations_page(
    viewer: &Viewer,
    form: (&str, &str, &str),
    report: Option<&Value>,
    error: Option<&str>,
) -> String {
    let (from, to, by) = form;
    page(
        Some(viewer),
        "How resources are used",
        html! {
            form.inline method="get" action="/analytics/operations" {
                label { "From" input type="date" name="from" value=(from); }
                label { "To" input type="date" name="to" value=(to); }
                label { "By" select name="by" {
                    @for choice in ["facility", "service"] { option value=(choice) selected[choice == by] { (choice) } }
                } }
                button type="submit" { "Report" }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(report) = report { (body(report)) }
        },
    )
}
