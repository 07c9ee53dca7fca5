//! Patients: the search, the chart (from `Patient/[id]/$everything`), a resource's versions
//! with what changed, and who viewed the record (from `$disclosures`).

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::Value;

use crate::{Viewer, diff, page, svg, text};

/// What the search form was given.
#[derive(Default)]
pub struct PatientQuery {
    pub name: String,
    pub birthdate: String,
    pub identifier: String,
}

/// A display name: `Family, Given Given`.
pub fn patient_name(patient: &Value) -> String {
    let Some(name) = patient["name"].as_array().and_then(|names| names.first()) else {
        return "(no name)".into();
    };
    if let Some(text) = name["text"].as_str().filter(|_| name["family"].is_null()) {
        return text.to_string();
    }
    let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let family = name["family"].as_str().unwrap_or("");
    let text = format!("{family}, {}", given.join(" "));
    text.trim_matches([',', ' ']).to_string()
}

/// The medical record number (an identifier typed MR, else the first).
pub fn mrn(patient: &Value) -> String {
    let identifiers = patient["identifier"].as_array().cloned().unwrap_or_default();
    let typed = identifiers
        .iter()
        .find(|i| i["type"]["coding"].as_array().into_iter().flatten().any(|c| c["code"] == "MR"));
    typed.or(identifiers.first()).and_then(|i| i["value"].as_str()).unwrap_or("").to_string()
}

/// A CodeableConcept's text: its text, else the first coding's display, else its code.
pub fn concept(value: &Value) -> String {
    if let Some(text) = value["text"].as_str() {
        return text.to_string();
    }
    let coding = &value["coding"][0];
    coding["display"].as_str().or(coding["code"].as_str()).unwrap_or("").to_string()
}

fn code_of(value: &Value) -> String {
    let coding = &value["coding"][0];
    coding["code"].as_str().unwrap_or("").to_string()
}

/// The search page, with results when a search was made.
pub fn search(
    viewer: &Viewer,
    query: &PatientQuery,
    results: Option<&[Value]>,
    note: Option<&str>,
) -> String {
    page(
        Some(viewer),
        "Patients",
        html! {
            form.inline method="get" action="/patients" role="search" {
                div { label for="name" { "Name" } input id="name" name="name" value=(query.name); }
                div { label for="birthdate" { "Birth date" } input id="birthdate" name="birthdate" type="date" value=(query.birthdate); }
                div { label for="identifier" { "MRN" } input id="identifier" name="identifier" value=(query.identifier); }
                div { button type="submit" { "Search" } }
            }
            @if let Some(note) = note { p.error role="alert" { (note) } }
            @if let Some(results) = results {
                h2 { (results.len()) " patients found" }
                div.table-wrap tabindex="0" {
                    table {
                        caption { "Patients matching the search" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Birth date" } th scope="col" { "Gender" } th scope="col" { "MRN" } } }
                        tbody {
                            @for patient in results {
                                @let id = patient["id"].as_str().unwrap_or("");
                                tr {
                                    td { a href=(format!("/patients/{id}")) { (patient_name(patient)) } }
                                    td { (text(&patient["birthDate"])) }
                                    td { (text(&patient["gender"])) }
                                    td { (mrn(patient)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn history_link(patient: &str, resource: &Value) -> Markup {
    let (Some(kind), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) else {
        return html! {};
    };
    let version = resource["meta"]["versionId"].as_str().unwrap_or("1");
    html! { a href=(format!("/patients/{patient}/history/{kind}/{id}")) { "v" (version) } }
}

fn date_of(resource: &Value, paths: &[&str]) -> String {
    for path in paths {
        let mut value = resource;
        for part in path.split('.') {
            value = &value[part];
        }
        if let Some(text) = value.as_str() {
            return text.get(..10).unwrap_or(text).to_string();
        }
    }
    String::new()
}

/// What the chart may show besides the record.
pub struct ChartLinks {
    /// Whether "who viewed this chart" is open to the viewer.
    pub viewers: bool,
    /// Whether encounters link to the coding screen.
    pub coding: bool,
    /// The patient's comorbidity indices (`Patient/[id]/$comorbidity`), when the viewer may
    /// see them.
    pub comorbidity: Option<Value>,
}

/// The comorbidity line of the demographics: Charlson (age-adjusted, 10-year survival),
/// Elixhauser, frailty.
fn comorbidity(answer: &Value) -> Option<Markup> {
    let patient = answer["parameter"].as_array()?.iter().find(|p| p["name"] == "patient")?;
    let value = |name: &str| crate::views::part(patient, name).clone();
    let number = |v: Value| v.as_f64().map(|n| format!("{n}")).unwrap_or_default();
    let categories = |name: &str| -> String {
        patient["part"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == name)
            .filter_map(|p| p["valueCode"].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let survival = value("survival10yr")["valueDecimal"].as_f64();
    Some(html! {
        dt { "Charlson index" } dd {
            (number(value("charlson")["valueDecimal"].clone()))
            @if let Some(adjusted) = value("charlsonAgeAdjusted")["valueDecimal"].as_f64() {
                " (age-adjusted " (format!("{adjusted}"))
                @if let Some(survival) = survival { "; 10-year survival " (format!("{:.0}%", survival * 100.0)) }
                ")"
            }
            @let named = categories("charlsonCategory");
            @if !named.is_empty() { " " span.muted { (named) } }
        }
        dt { "Elixhauser index" } dd {
            (number(value("elixhauser")["valueDecimal"].clone()))
            @let named = categories("elixhauserCategory");
            @if !named.is_empty() { " " span.muted { (named) } }
        }
        dt { "Frailty (HFRS)" } dd {
            (number(value("hfrs")["valueDecimal"].clone())) " "
            span.muted { (value("hfrsCategory")["valueCode"].as_str().unwrap_or("").to_lowercase()) " risk" }
        }
    })
}

/// The chart: demographics, encounters, problems, medications, results with trends,
/// documents, coverage; each resource links to its versions.
pub fn chart(viewer: &Viewer, patient: &Value, record: &[Value], links: &ChartLinks) -> String {
    let id = patient["id"].as_str().unwrap_or("");
    let of = |kind: &str| -> Vec<&Value> { record.iter().filter(|r| r["resourceType"] == kind).collect() };
    let mut encounters = of("Encounter");
    encounters.sort_by_key(|e| std::cmp::Reverse(date_of(e, &["period.start"])));
    let conditions = of("Condition");
    let medications = of("MedicationRequest");
    let documents = of("DocumentReference");
    let coverage = of("Coverage");
    let immunizations = of("Immunization");
    // Results by what was measured, oldest first, for the trend.
    let mut results: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for observation in of("Observation") {
        results.entry(concept(&observation["code"])).or_default().push(observation);
    }
    for series in results.values_mut() {
        series.sort_by_key(|o| date_of(o, &["effectiveDateTime", "issued"]));
    }
    let title = format!("{} · chart", patient_name(patient));
    page(
        Some(viewer),
        &title,
        html! {
            section aria-labelledby="demographics" {
                h2 id="demographics" { "Demographics" }
                dl.facts {
                    dt { "Name" } dd { (patient_name(patient)) }
                    dt { "Birth date" } dd { (text(&patient["birthDate"])) }
                    dt { "Gender" } dd { (text(&patient["gender"])) }
                    dt { "MRN" } dd { (mrn(patient)) }
                    dt { "Address" } dd {
                        @if let Some(address) = patient["address"].as_array().and_then(|a| a.first()) {
                            (address["line"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                            " " (text(&address["city"])) " " (text(&address["postalCode"]))
                        }
                    }
                    dt { "Record" } dd { (history_link(id, patient)) }
                    @if let Some(line) = links.comorbidity.as_ref().and_then(comorbidity) { (line) }
                }
                @if links.viewers { p { a href=(format!("/patients/{id}/viewers")) { "Who has viewed this chart" } } }
            }
            section aria-labelledby="encounters" {
                h2 id="encounters" { "Encounters (" (encounters.len()) ")" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Start" } th scope="col" { "End" } th scope="col" { "Class" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Version" } } }
                    tbody { @for e in &encounters {
                        @let eid = e["id"].as_str().unwrap_or("");
                        tr {
                            td { @if links.coding { a href=(format!("/coding/encounters/{eid}")) { (date_of(e, &["period.start"])) } } @else { (date_of(e, &["period.start"])) } }
                            td { (date_of(e, &["period.end"])) }
                            td { (text(&e["class"]["code"])) }
                            td { (e["type"].as_array().and_then(|t| t.first()).map(concept).unwrap_or_default()) }
                            td { (text(&e["status"])) }
                            td { (history_link(id, e)) }
                        }
                    } }
                } }
            }
            section aria-labelledby="problems" {
                h2 id="problems" { "Problems (" (conditions.len()) ")" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Problem" } th scope="col" { "Code" } th scope="col" { "Status" } th scope="col" { "Onset" } th scope="col" { "Version" } } }
                    tbody { @for c in &conditions { tr {
                        td { (concept(&c["code"])) }
                        td { (code_of(&c["code"])) }
                        td { (code_of(&c["clinicalStatus"])) }
                        td { (date_of(c, &["onsetDateTime", "recordedDate"])) }
                        td { (history_link(id, c)) }
                    } } }
                } }
            }
            section aria-labelledby="medications" {
                h2 id="medications" { "Medications (" (medications.len()) ")" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Medication" } th scope="col" { "Status" } th scope="col" { "Ordered" } th scope="col" { "Version" } } }
                    tbody { @for m in &medications { tr {
                        td { (concept(&m["medicationCodeableConcept"])) }
                        td { (text(&m["status"])) }
                        td { (date_of(m, &["authoredOn"])) }
                        td { (history_link(id, m)) }
                    } } }
                } }
            }
            section aria-labelledby="results" {
                h2 id="results" { "Results (" (results.len()) " kinds)" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Result" } th scope="col" { "Latest" } th scope="col" { "Date" } th scope="col" { "Trend" } th scope="col" { "Count" } } }
                    tbody { @for (name, series) in &results {
                        @let latest = series.last().copied().unwrap_or(&Value::Null);
                        @let values: Vec<f64> = series.iter().filter_map(|o| o["valueQuantity"]["value"].as_f64()).collect();
                        tr {
                            td { (name) }
                            td { (value_text(latest)) }
                            td { (date_of(latest, &["effectiveDateTime", "issued"])) }
                            td { (svg::sparkline(&values, 120, 24, &format!("{name}: {} values over time", values.len()))) }
                            td { (series.len()) }
                        }
                    } }
                } }
            }
            section aria-labelledby="immunizations" {
                h2 id="immunizations" { "Immunizations (" (immunizations.len()) ")" }
                ul { @for i in &immunizations { li { (date_of(i, &["occurrenceDateTime"])) " · " (concept(&i["vaccineCode"])) } } }
            }
            section aria-labelledby="documents" {
                h2 id="documents" { "Documents (" (documents.len()) ")" }
                div.table-wrap tabindex="0" { table {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Version" } } }
                    tbody { @for d in &documents { tr {
                        td { (date_of(d, &["date", "context.period.start"])) }
                        td { (concept(&d["type"])) }
                        td { (text(&d["status"])) }
                        td { (history_link(id, d)) }
                    } } }
                } }
            }
            section aria-labelledby="coverage" {
                h2 id="coverage" { "Coverage (" (coverage.len()) ")" }
                ul { @for c in &coverage { li {
                    (c["payor"].as_array().and_then(|p| p.first()).and_then(|p| p["display"].as_str().or(p["reference"].as_str())).unwrap_or("payer not named"))
                    " · " (text(&c["status"]))
                } } }
            }
        },
    )
}

/// A result's value as text.
pub fn value_text(observation: &Value) -> String {
    if let Some(value) = observation["valueQuantity"]["value"].as_f64() {
        let unit =
            observation["valueQuantity"]["unit"].as_str().or(observation["valueQuantity"]["code"].as_str());
        return format!("{value} {}", unit.unwrap_or("")).trim().to_string();
    }
    if !observation["valueCodeableConcept"].is_null() {
        return concept(&observation["valueCodeableConcept"]);
    }
    text(&observation["valueString"])
}

/// A resource's versions, newest first, each with what changed from the one before.
pub fn history(viewer: &Viewer, patient: &str, reference: &str, versions: &[Value]) -> String {
    let mut ordered: Vec<&Value> = versions.iter().collect();
    ordered.sort_by_key(|v| v["meta"]["versionId"].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0));
    page(
        Some(viewer),
        &format!("{reference} · versions"),
        html! {
            p { a href=(format!("/patients/{patient}")) { "Back to the chart" } }
            @for (i, version) in ordered.iter().enumerate().rev() {
                section {
                    h2 { "Version " (text(&version["meta"]["versionId"])) " · " (text(&version["meta"]["lastUpdated"])) }
                    @if i == 0 {
                        p.muted { "The first version." }
                    } @else {
                        @let changes = diff::changes(ordered[i - 1], version);
                        @if changes.is_empty() { p.muted { "No field changed." } } @else {
                            div.table-wrap tabindex="0" { table {
                                caption { "Changed fields" }
                                thead { tr { th scope="col" { "Field" } th scope="col" { "Before" } th scope="col" { "After" } } }
                                tbody { @for change in &changes { tr {
                                    td { code { (change.path) } }
                                    td { @if let Some(b) = &change.before { del { (b) } } }
                                    td { @if let Some(a) = &change.after { ins { (a) } } }
                                } } }
                            } }
                        }
                    }
                }
            }
        },
    )
}

/// Who viewed a patient's record: the accounting of disclosures.
pub fn viewers(viewer: &Viewer, patient: &str, events: &[Value]) -> String {
    page(
        Some(viewer),
        "Who has viewed this chart",
        html! {
            p { a href=(format!("/patients/{patient}")) { "Back to the chart" } }
            p { (events.len()) " accesses recorded." }
            div.table-wrap tabindex="0" { table {
                caption { "Accesses to the record, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Purpose" } th scope="col" { "Outcome" } } }
                tbody { @for event in events.iter().rev() { tr {
                    td { (text(&event["recorded"])) }
                    td { (text(&event["agent"][0]["name"])) }
                    td { (event["subtype"][0]["code"].as_str().or(event["action"].as_str()).unwrap_or("")) }
                    td { (text(&event["agent"][0]["purposeOfUse"][0]["coding"][0]["code"])) }
                    td { (text(&event["outcome"])) }
                } } }
            } }
        },
    )
}
