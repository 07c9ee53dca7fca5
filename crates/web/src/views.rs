//! The privacy, data-quality, coding, analytics and administration pages.

use maud::{Markup, html};
use serde_json::Value;

use crate::{Viewer, csrf_field, page, svg, text};

/// The part of a Parameters parameter (or of a part) named `name`, or null.
pub fn part<'a>(parameter: &'a Value, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    parameter["part"].as_array().into_iter().flatten().find(|p| p["name"] == name).unwrap_or(&NULL)
}

/// The parts of a FHIR `Parameters` named `name`, each as its parts' values by name.
pub fn parameter_parts(parameters: &Value, name: &str) -> Vec<serde_json::Map<String, Value>> {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == name)
        .map(|p| {
            let mut fields = serde_json::Map::new();
            for part in p["part"].as_array().into_iter().flatten() {
                let Some(key) = part["name"].as_str() else { continue };
                let value = part
                    .as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v.clone()))
                    .unwrap_or(Value::Null);
                // Repeated parts (examples) gather into a list.
                match fields.get_mut(key) {
                    Some(Value::Array(list)) => list.push(value),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, value]);
                    }
                    None => {
                        fields.insert(key.to_string(), value);
                    }
                }
            }
            fields
        })
        .collect()
}

// ---- privacy ----------------------------------------------------------------------------

/// The audit search's form values.
#[derive(Default)]
pub struct AuditQuery {
    pub user: String,
    pub patient: String,
    pub from: String,
    pub to: String,
    pub action: String,
    pub outcome: String,
}

fn entity_patients(event: &Value) -> String {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["role"]["code"] == "1")
        .filter_map(|e| e["what"]["reference"].as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcome_text(code: &str) -> &'static str {
    match code {
        "0" => "success",
        "4" => "minor failure",
        "8" => "serious failure",
        "12" => "major failure",
        _ => "",
    }
}

/// The privacy office's page: audit search with results, and the tools.
pub fn audit(viewer: &Viewer, query: &AuditQuery, events: Option<&[Value]>, note: Option<&str>) -> String {
    page(
        Some(viewer),
        "Privacy: audit trail",
        html! {
            (privacy_tools(viewer))
            h2 { "Search the audit trail" }
            form.inline method="get" action="/privacy/audit" role="search" {
                div { label for="user" { "User" } input id="user" name="user" value=(query.user); }
                div { label for="patient" { "Patient id" } input id="patient" name="patient" value=(query.patient); }
                div { label for="from" { "From" } input id="from" name="from" type="date" value=(query.from); }
                div { label for="to" { "To" } input id="to" name="to" type="date" value=(query.to); }
                div { label for="action" { "Action" }
                    select id="action" name="action" {
                        @for (code, label) in [("", "any"), ("C", "create"), ("R", "read"), ("U", "update"), ("D", "delete"), ("E", "execute")] {
                            @if query.action == code { option value=(code) selected { (label) } } @else { option value=(code) { (label) } }
                        }
                    }
                }
                div { label for="outcome" { "Outcome" }
                    select id="outcome" name="outcome" {
                        @for (code, label) in [("", "any"), ("0", "success"), ("4", "refused or failed (minor)"), ("8", "serious failure")] {
                            @if query.outcome == code { option value=(code) selected { (label) } } @else { option value=(code) { (label) } }
                        }
                    }
                }
                div { button type="submit" { "Search" } }
            }
            @if let Some(note) = note { p.error role="alert" { (note) } }
            @if let Some(events) = events {
                h2 { (events.len()) " entries (newest first)" }
                div.table-wrap tabindex="0" { table {
                    caption { "Audit entries" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Interaction" } th scope="col" { "Patients" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                    tbody { @for event in events { tr {
                        td { (text(&event["recorded"])) }
                        td { (text(&event["agent"][0]["name"])) }
                        td { (text(&event["agent"][0]["role"][0]["text"])) }
                        td { (text(&event["subtype"][0]["code"])) }
                        td { (entity_patients(event)) }
                        td { (outcome_text(event["outcome"].as_str().unwrap_or(""))) }
                        td { (text(&event["outcomeDesc"])) }
                    } } }
                } }
            }
        },
    )
}

fn privacy_tools(viewer: &Viewer) -> Markup {
    html! {
        div.cards {
            section.card {
                h2 { "Verify the audit chain" }
                p { "Checks every entry's link and both anchors; any edit, deletion or insertion is named." }
                form method="post" action="/privacy/verify" { (csrf_field(viewer.csrf)) button type="submit" { "Verify now" } }
            }
            section.card {
                h2 { "Accounting of disclosures" }
                form method="get" action="/privacy/disclosures" {
                    label for="disclosure-patient" { "Patient id" }
                    input id="disclosure-patient" name="patient" required;
                    p { button type="submit" { "Show" } }
                }
            }
            section.card {
                h2 { a href="/privacy/monitor" { "Access review" } }
                p { "Accesses worth a look: no treatment relationship, same surname, VIPs, volume." }
                p { a href="/privacy/monitor?kind=break-the-glass" { "Break-the-glass review" } }
            }
        }
    }
}

/// The accesses worth a privacy officer's look, as `chartroom audit report` lists them:
/// (kind, user, patient, detail), narrowed to one kind when `kind` is given.
pub fn monitor(viewer: &Viewer, findings: &[(String, String, String, String)], kind: Option<&str>) -> String {
    let title = if kind == Some("break-the-glass") {
        "Privacy: break-the-glass review"
    } else {
        "Privacy: access review"
    };
    page(
        Some(viewer),
        title,
        html! {
            p { a href="/privacy/audit" { "Back to the audit trail" } " · "
                a href="/privacy/monitor" { "All findings" } " · "
                a href="/privacy/monitor?kind=break-the-glass" { "Break-the-glass accesses" } }
            p { (findings.len()) " findings (grouped by kind, user and patient)." }
            form method="post" action="/privacy/monitor/run" {
                (csrf_field(viewer.csrf))
                button.secondary type="submit" { "Review the trail again now" }
            }
            @if !findings.is_empty() {
                div.table-wrap tabindex="0" { table {
                    caption { "Findings" }
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "User" } th scope="col" { "Patient" } th scope="col" { "Detail" } } }
                    tbody { @for (kind, user, patient, detail) in findings { tr { td { (kind) } td { (user) } td { (patient) } td { (detail) } } } }
                } }
            }
        },
    )
}

// ---- data quality -------------------------------------------------------------------------

/// One check of a data-quality run, as `$data-quality` reports it, with its earlier shares.
pub struct CheckRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub resource_type: String,
    pub numerator: u64,
    pub denominator: u64,
    /// Percent failing (0 to 100), and the most that passes.
    pub percent: f64,
    pub threshold: Option<f64>,
    pub passed: bool,
    pub examples: Vec<String>,
    /// Shares failing (0 to 1) in earlier runs, oldest first, then this one.
    pub trend: Vec<f64>,
}

/// The data-quality report: each check with its trend and a link to its failing records.
pub fn quality(viewer: &Viewer, checks: &[CheckRow], runs: usize) -> String {
    let failed = checks.iter().filter(|c| !c.passed).count();
    page(
        Some(viewer),
        "Data quality",
        html! {
            p { (checks.len()) " checks, " span.fail { (failed) " failing" } "; " (runs) " runs recorded." }
            form method="post" action="/quality/run" {
                (csrf_field(viewer.csrf))
                button.secondary type="submit" { "Run the checks again now" }
            }
            div.table-wrap tabindex="0" { table {
                caption { "Checks, failing first" }
                thead { tr { th scope="col" { "Check" } th scope="col" { "Type" } th scope="col" { "Failing" } th scope="col" { "Share" } th scope="col" { "Threshold" } th scope="col" { "Result" } th scope="col" { "Trend" } } }
                tbody { @for check in checks { tr {
                    td { a href=(format!("/quality/{}", check.id)) { (check.name) } }
                    td { (check.resource_type) }
                    td { (check.numerator) " of " (check.denominator) }
                    td { (format!("{:.1}%", check.percent)) }
                    td { @if let Some(t) = check.threshold { (format!("{t:.1}%")) } }
                    td { @if check.passed { span.pass { "passes" } } @else { span.fail { "fails" } } }
                    td { (svg::trend(&check.trend, check.threshold.map(|t| t / 100.0), &format!("{} over {} runs", check.name, check.trend.len()))) }
                } } }
            } }
        },
    )
}

/// One check's failing records, each linked to its chart or record.
pub fn quality_check(viewer: &Viewer, check: &CheckRow, links: &[(String, String)]) -> String {
    page(
        Some(viewer),
        &format!("Data quality: {}", check.name),
        html! {
            p { a href="/quality" { "Back to the report" } }
            p { (check.description) }
            p { (check.numerator) " of " (check.denominator) " " (check.resource_type) " records fail (" (format!("{:.1}%", check.percent)) "). The first ones:" }
            ul { @for (reference, href) in links { li { a href=(href) { (reference) } } } }
        },
    )
}

// ---- coding ---------------------------------------------------------------------------------

/// One worklist entry.
pub struct WorkItem {
    pub encounter: String,
    pub patient: String,
    pub discharged: String,
    pub class: String,
    pub reasons: Vec<String>,
}

/// The coder's worklist.
pub fn worklist(viewer: &Viewer, items: &[WorkItem]) -> String {
    page(
        Some(viewer),
        "Coding worklist",
        html! {
            p { (items.len()) " encounters waiting, oldest discharge first. "
                a href="/coding/billing" { "Accurate bills: the claims audit, DNFB and the coding backlog" } }
            div.table-wrap tabindex="0" { table {
                caption { "Encounters to code" }
                thead { tr { th scope="col" { "Encounter" } th scope="col" { "Patient" } th scope="col" { "Discharged" } th scope="col" { "Class" } th scope="col" { "Why" } } }
                tbody { @for item in items { tr {
                    td { a href=(format!("/coding/encounters/{}", item.encounter)) { (item.encounter) } }
                    td { (item.patient) }
                    td { (item.discharged) }
                    td { (item.class) }
                    td { (item.reasons.join("; ")) }
                } } }
            } }
        },
    )
}

/// A suggested code with its evidence.
pub struct Suggestion {
    pub code: String,
    pub display: String,
    pub score: f64,
    pub evidence: Vec<String>,
}

/// The note with the evidence of the suggestions marked.
fn highlighted(note: &str, evidence: &[String]) -> Markup {
    let lower = note.to_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for phrase in evidence.iter().filter(|p| p.len() >= 3) {
        let needle = phrase.to_lowercase();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let start = from + at;
            spans.push((start, start + needle.len()));
            from = start + needle.len();
        }
    }
    spans.sort();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut at = 0;
    html! {
        pre.note {
            @for (s, e) in &merged {
                @if note.is_char_boundary(*s) && note.is_char_boundary(*e) && *s >= at {
                    (note[at..*s]) mark { (note[*s..*e]) }
                    ({ at = *e; "" })
                }
            }
            (note[at..])
        }
    }
}

/// The coding screen of one encounter: the note with evidence, suggestions, edits, the codes
/// on record, and the form to assign one.
pub fn encounter(
    viewer: &Viewer,
    encounter: &Value,
    note: Option<&str>,
    suggestions: &[Suggestion],
    edits: &[String],
    coded: &[(String, String, String)],
    message: Option<(bool, &str)>,
) -> String {
    let id = encounter["id"].as_str().unwrap_or("");
    let patient = encounter["subject"]["reference"].as_str().unwrap_or("");
    let evidence: Vec<String> = suggestions.iter().flat_map(|s| s.evidence.clone()).collect();
    page(
        Some(viewer),
        &format!("Coding: encounter {id}"),
        html! {
            p { a href="/coding" { "Back to the worklist" } " · " (patient) " · " (text(&encounter["period"]["start"])) }
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            h2 { "Note" }
            @match note {
                Some(note) => (highlighted(note, &evidence)),
                None => p.muted { "No note is attached to this encounter." },
            }
            h2 { "Suggested codes" }
            @if suggestions.is_empty() { p.muted { "No suggestion." } } @else {
                div.table-wrap tabindex="0" { table {
                    caption { "Suggested ICD-10-CM codes, best first" }
                    thead { tr { th scope="col" { "Code" } th scope="col" { "Description" } th scope="col" { "Score" } th scope="col" { "Evidence" } th scope="col" { "Assign" } } }
                    tbody { @for s in suggestions { tr {
                        td { (s.code) } td { (s.display) } td { (format!("{:.2}", s.score)) } td { (s.evidence.join(", ")) }
                        td { form method="post" action=(format!("/coding/encounters/{id}")) {
                            (csrf_field(viewer.csrf))
                            input type="hidden" name="code" value=(s.code);
                            button type="submit" name="assign" value="1" aria-label=(format!("Assign {}", s.code)) { "Assign" }
                        } }
                    } } }
                } }
            }
            h2 { "Coding edits" }
            @if edits.is_empty() { p.pass { "No edit fails." } } @else { ul { @for e in edits { li.fail { (e) } } } }
            h2 { "Codes on record" }
            @if coded.is_empty() { p.muted { "No diagnosis is coded yet." } } @else {
                ul { @for (code, display, condition) in coded { li { (code) " " (display) " (" (condition) ")" } } }
            }
            h2 { "Assign or correct a code" }
            form.inline method="post" action=(format!("/coding/encounters/{id}")) {
                (csrf_field(viewer.csrf))
                div { label for="code" { "ICD-10-CM code" } input id="code" name="code" required pattern="[A-Za-z][0-9A-Za-z.]{2,7}"; }
                div { button type="submit" name="assign" value="1" { "Assign" } }
            }
        },
    )
}

// ---- analytics and administration --------------------------------------------------------

/// The built-in views, each with its rows' links, and the SQL box when the user may use it.
pub fn analytics(viewer: &Viewer, views: &[(String, String)], sql: bool) -> String {
    page(
        Some(viewer),
        "Analytics",
        html! {
            h2 { "Uses of the record" }
            ul {
                li { a href="/analytics/surveillance" { "Outbreak early warning" } " · unusual counts of a syndrome by place and week" }
                li { a href="/analytics/cohort" { "Treatment comparison" } " · survival on two treatments over time" }
                li { a href="/analytics/operations" { "How resources are used" } " · census, admissions, length of stay, bed-days, readmissions and emergency visits by month and facility" }
                li { a href="/analytics/high-risk" { "High-risk patients" } " · recent discharges most likely to be readmitted within 30 days, and why" }
            }
            h2 { "Tables" }
            p { "The built-in tables. Each opens as a table of its first rows, with CSV and Parquet downloads of all of them." }
            ul { @for (name, description) in views { li { a href=(format!("/analytics/views/{name}")) { (name) } " · " (description) } } }
            @if sql { (sql_form("SELECT gender, count(*) AS patients FROM patients GROUP BY gender")) }
        },
    )
}

fn sql_form(query: &str) -> Markup {
    html! {
        h2 { "Ask in SQL" }
        form method="get" action="/analytics/sql" {
            label for="query" { "One SELECT statement over the tables above (each table is named as its view)" }
            textarea id="query" name="query" rows="4" { (query) }
            p { button type="submit" { "Run" } }
        }
    }
}

/// The answer to a SQL query: its rows, or why it failed.
pub fn sql_answer(
    viewer: &Viewer,
    query: &str,
    header: &[String],
    rows: &[Vec<String>],
    problem: Option<&str>,
) -> String {
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    page(
        Some(viewer),
        "Analytics: SQL",
        html! {
            p { a href="/analytics" { "All tables" } }
            (sql_form(query))
            @if let Some(problem) = problem { p.error role="alert" { (problem) } } @else {
                p { (rows.len()) " rows." }
                (crate::table("Query result", &header, rows))
            }
        },
    )
}

/// A view's first rows.
pub fn view_rows(
    viewer: &Viewer,
    name: &str,
    header: &[String],
    rows: &[Vec<String>],
    limit: usize,
) -> String {
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    page(
        Some(viewer),
        &format!("Analytics: {name}"),
        html! {
            p { a href="/analytics" { "All tables" } " · "
                a href=(format!("/analytics/views/{name}/download?format=csv")) { "Download CSV" } " · "
                a href=(format!("/analytics/views/{name}/download?format=parquet")) { "Download Parquet" } }
            p { "The first " (rows.len().min(limit)) " rows." }
            (crate::table(name, &header, rows))
        },
    )
}

/// The administration page: users, tokens that ended, and the server's state.
pub fn admin(
    viewer: &Viewer,
    users: &[Vec<String>],
    revoked: &[Vec<String>],
    status: &[(String, String)],
    counts: &[(String, u64)],
) -> String {
    page(
        Some(viewer),
        "Administration",
        html! {
            h2 { "Server" }
            dl.facts { @for (k, v) in status { dt { (k) } dd { (v) } } }
            h2 { "Resources by type" }
            (crate::table("Resources by type", &["Type", "Resources"], &counts.iter().map(|(t, n)| vec![t.clone(), n.to_string()]).collect::<Vec<_>>()))
            h2 { "Users" }
            p.muted { "Add, revoke and set passwords with chartroom user add | revoke | password." }
            (crate::table("Users", &["User", "Role", "Is", "Token issued", "Password"], users))
            h2 { "Tokens revoked or replaced" }
            @if revoked.is_empty() { p.muted { "None." } } @else {
                (crate::table("Tokens that no longer work, newest first", &["User", "Role", "Issued", "Ended", "Why"], revoked))
            }
        },
    )
}

/// One stored record as it is, with a link to its patient's chart and its versions.
pub fn record(viewer: &Viewer, reference: &str, resource: &Value, patient: Option<&str>) -> String {
    let pretty = serde_json::to_string_pretty(resource).unwrap_or_default();
    page(
        Some(viewer),
        reference,
        html! {
            @if let Some(patient) = patient {
                p { a href=(format!("/patients/{patient}")) { "The patient's chart" } " · "
                    a href=(format!("/patients/{patient}/history/{reference}")) { "Versions" } }
            }
            pre.note { (pretty) }
        },
    )
}
