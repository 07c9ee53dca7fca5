//! Release of information: the open requests with their clocks, the intake form, and the
//! human-readable rendering of a release (what the requester gets besides the Bundle).

use maud::{Markup, html};
use serde_json::Value;

use crate::{Viewer, csrf_field, page, text};

/// One open request as listed.
pub struct RequestRow {
    pub id: String,
    pub patient: String,
    pub requester: String,
    pub purpose: String,
    pub received: String,
    pub due: String,
    /// Days until due (negative: overdue by that many).
    pub days_left: i64,
    pub extended: bool,
    pub delivery: String,
}

/// Requester kinds and delivery forms offered by the intake form.
const REQUESTERS: &[&str] = &[
    "patient",
    "personal-representative",
    "attorney",
    "insurer",
    "provider",
    "public-health",
    "court",
    "other",
];
const DELIVERIES: &[&str] = &["html", "fhir", "paper"];
const PURPOSES: &[(&str, &str)] = &[
    ("PATRQT", "Patient's own request"),
    ("TREAT", "Treatment"),
    ("HPAYMT", "Payment"),
    ("HLEGAL", "Legal"),
    ("COVERAGE", "Insurance coverage"),
    ("HRESCH", "Research"),
    ("PUBHLTH", "Public health"),
];

/// The requests page: open requests (overdue first), each with its extension and release
/// forms, and the intake form.
pub fn requests_page(viewer: &Viewer, rows: &[RequestRow], message: Option<(bool, &str)>) -> String {
    page(
        Some(viewer),
        "Release of information",
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            p { "A request must be acted on within 30 days of receipt; one extension of 30 days may be taken, before the first 30 days end, with its reason told to the requester (45 CFR 164.524). Disclosures other than to the patient, or for treatment or payment, need the patient's signed authorization (164.508)." }
            p { a href="/requests/amendments" { "Amendment requests (45 CFR 164.526)" } }
            h2 { "Open requests" }
            @if rows.is_empty() { p { "No open requests." } } @else {
                div.table-wrap tabindex="0" { table {
                    caption { (rows.len()) " open requests, soonest due first" }
                    thead { tr {
                        th scope="col" { "Request" } th scope="col" { "Patient" } th scope="col" { "Requester" }
                        th scope="col" { "Purpose" } th scope="col" { "Received" } th scope="col" { "Due" }
                        th scope="col" { "Extend" } th scope="col" { "Release" }
                    } }
                    tbody { @for row in rows { tr {
                        td { (row.id) }
                        td { a href=(format!("/patients/{}", row.patient)) { (row.patient) } }
                        td { (row.requester) }
                        td { (row.purpose) }
                        td { (row.received) }
                        td {
                            (row.due) br;
                            @if row.days_left < 0 { strong.error { "overdue by " (-row.days_left) " days" } }
                            @else { (row.days_left) " days left" }
                            @if row.extended { br; "(extended)" }
                        }
                        td {
                            @if !row.extended {
                                form method="post" action=(format!("/requests/{}/extend", row.id)) {
                                    (csrf_field(viewer.csrf))
                                    label { "Reason" input type="text" name="reason" required; }
                                    button.secondary type="submit" { "Extend 30 days" }
                                }
                            }
                        }
                        td {
                            form method="post" action=(format!("/requests/{}/release", row.id)) {
                                (csrf_field(viewer.csrf))
                                button type="submit" { "Release (" (row.delivery) ")" }
                            }
                        }
                    } } }
                } }
            }
            h2 { "Take in a request" }
            form method="post" action="/requests" {
                (csrf_field(viewer.csrf))
                label { "Patient id" input type="text" name="patient" required; }
                label { "Requester" input type="text" name="requester" required; }
                label { "Requester is" select name="kind" { @for kind in REQUESTERS { option value=(kind) { (kind) } } } }
                label { "Purpose" select name="purpose" { @for (code, words) in PURPOSES { option value=(code) { (words) } } } }
                label { "From" input type="date" name="from"; }
                label { "To" input type="date" name="to"; }
                label { "Record types (comma-separated; none: all)" input type="text" name="types"; }
                label { "Delivery" select name="delivery" { @for delivery in DELIVERIES { option value=(delivery) { (delivery) } } } }
                label { "Authorization (Consent id, when needed)" input type="text" name="authorization"; }
                label { "Court's order (DocumentReference id, for a court)" input type="text" name="order"; }
                button type="submit" { "Take in" }
            }
        },
    )
}

/// A resource's date as the rendering shows it.
fn date_of(resource: &Value) -> String {
    for path in [
        &["period", "start"][..],
        &["effectiveDateTime"],
        &["recordedDate"],
        &["onsetDateTime"],
        &["authoredOn"],
        &["occurrenceDateTime"],
        &["performedPeriod", "start"],
        &["performedDateTime"],
        &["date"],
        &["created"],
    ] {
        let value = path.iter().fold(resource, |v, key| &v[*key]);
        if let Some(text) = value.as_str() {
            return text.chars().take(10).collect();
        }
    }
    String::new()
}

/// What a resource says, in a few words.
fn summary(resource: &Value) -> String {
    for key in ["code", "type", "vaccineCode", "medicationCodeableConcept", "class"] {
        let concept = &resource[key];
        let concept = if concept.is_array() { &concept[0] } else { concept };
        if let Some(words) = concept["text"]
            .as_str()
            .or(concept["coding"][0]["display"].as_str())
            .or(concept["display"].as_str())
        {
            return words.to_string();
        }
    }
    if resource["resourceType"] == "Patient" {
        let name = &resource["name"][0];
        let given: Vec<String> = name["given"].as_array().into_iter().flatten().map(text).collect();
        return format!(
            "{} {}, born {}",
            given.join(" "),
            text(&name["family"]),
            text(&resource["birthDate"])
        );
    }
    text(&resource["status"])
}

/// The release as a person reads it: each resource with its date and what it says.
pub fn release_body(bundle: &Value) -> Markup {
    let entries: Vec<&Value> =
        bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).collect();
    html! {
        p { "Released " (text(&bundle["timestamp"])) ": " (entries.len()) " records." }
        div.table-wrap tabindex="0" { table {
            caption { "The records released" }
            thead { tr { th scope="col" { "Record" } th scope="col" { "Date" } th scope="col" { "What it says" } } }
            tbody { @for resource in &entries { tr {
                td { (text(&resource["resourceType"])) "/" (text(&resource["id"])) }
                td { (date_of(resource)) }
                td { (summary(resource)) }
            } } }
        } }
    }
}

/// The release as a document of its own, for the requester: what was released, to whom and
/// why (the disclosure as recorded), and each record with its date and what it says.
pub fn release_document(bundle: &Value, disclosed: &str) -> String {
    crate::analytics::standalone(
        "Copy of health records",
        html! {
            p { "This is a copy of health records " (disclosed) "." }
            p { "Request " (text(&bundle["identifier"]["value"])) "." }
            (release_body(bundle))
        },
    )
}

/// The page after a release.
pub fn release_page(viewer: &Viewer, task: &str, bundle: &Value, disclosed: &str) -> String {
    page(
        Some(viewer),
        "Released",
        html! {
            p.ok role="status" { "Request " (task) " released; recorded in the accounting of disclosures: " (disclosed) }
            (release_body(bundle))
            p { a href="/requests" { "Back to the requests" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Area;
    use serde_json::json;

    fn viewer() -> Viewer<'static> {
        Viewer {
            user: "hana",
            role: "him-technician",
            areas: &[Area::Home, Area::Requests],
            csrf: "t",
            current: Area::Requests,
        }
    }

    #[test]
    fn the_release_reads_as_words_and_escapes() {
        let bundle = json!({ "timestamp": "2025-03-10T12:00:00Z", "entry": [
            { "resource": { "resourceType": "Encounter", "id": "e1", "class": { "code": "AMB", "display": "ambulatory" },
                            "period": { "start": "2024-06-01T09:00:00Z" } } },
            { "resource": { "resourceType": "Condition", "id": "c1", "code": { "text": "<b>asthma</b>" }, "recordedDate": "2024-06-02" } },
        ]});
        let page = release_page(&viewer(), "Task/t1", &bundle, "released 2 resources");
        assert!(
            page.contains("Encounter/e1") && page.contains("2024-06-01") && page.contains("ambulatory"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;asthma") && !page.contains("<b>asthma"), "{page}");
    }

    #[test]
    fn overdue_requests_say_so_and_extended_ones_offer_no_second_extension() {
        let row = |id: &str, days_left: i64, extended: bool| RequestRow {
            id: id.into(),
            patient: "pa".into(),
            requester: "Law office (attorney)".into(),
            purpose: "HLEGAL".into(),
            received: "2025-01-01".into(),
            due: "2025-01-31".into(),
            days_left,
            extended,
            delivery: "html".into(),
        };
        let page = requests_page(&viewer(), &[row("late", -4, false), row("ext", 12, true)], None);
        assert!(page.contains("overdue by 4 days") && page.contains("12 days left"), "{page}");
        assert!(page.contains("/requests/late/extend") && !page.contains("/requests/ext/extend"), "{page}");
    }
}
