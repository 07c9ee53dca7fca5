//! Interfaces: what comes in and goes out in bulk. An HL7 v2 message applied by hand (its ACK
//! shown), a de-identified research extract started and followed, a Bulk Data import started
//! and followed.

use maud::html;
use serde_json::Value;

use crate::{Viewer, csrf_field, page};

/// A job shown on the page: an extract (`$export?_deidentify=`) or an import.
pub struct JobView<'a> {
    /// `extract` or `import`.
    pub kind: &'a str,
    pub id: &'a str,
    /// The finished job's manifest; `None` while it runs.
    pub manifest: Option<&'a Value>,
    /// What the server says of a running job.
    pub progress: Option<&'a str>,
}

/// The page, with what the last action gave: a message, an HL7 ACK, a job.
pub fn interfaces_page(
    viewer: &Viewer,
    message: Option<(bool, &str)>,
    ack: Option<&str>,
    job: Option<&JobView>,
) -> String {
    page(
        Some(viewer),
        "Interfaces",
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            @if let Some(ack) = ack {
                h2 { "Acknowledgement" }
                pre { (ack.replace('\r', "\n")) }
            }
            @if let Some(job) = job { (job_section(job)) }
            h2 { "HL7 v2 message" }
            p { "One message (ADT A01, A02, A03, A04, A08, A11, A13, A28, A31, A40 or ORU^R01), applied as the interface applies it: whole or not at all, as you." }
            form method="post" action="/interfaces/hl7v2" {
                (csrf_field(viewer.csrf))
                label { "Message (one segment per line)" textarea name="message" rows="8" cols="100" required {} }
                button type="submit" { "Apply" }
            }
            h2 { "Research extract" }
            p { "A de-identified bulk export of the record. Safe Harbor removes the 18 identifier classes; the date-shift profile keeps intervals (released through the privacy office)." }
            form method="post" action="/interfaces/extract" {
                (csrf_field(viewer.csrf))
                label { "Profile" select name="profile" {
                    option value="safe-harbor" { "Safe Harbor (45 CFR 164.514(b)(2))" }
                    option value="date-shift" { "Date shift with pseudonyms (research)" }
                } }
                label { "Types (comma-separated, empty for all)" input type="text" name="types"; }
                button type="submit" { "Start the extract" }
            }
            h2 { "Bulk import" }
            p { "NDJSON files by URL (http://, or file:// under the server's import directories), one per line: the resource type, a space, the URL." }
            form method="post" action="/interfaces/import" {
                (csrf_field(viewer.csrf))
                label { "Inputs" textarea name="inputs" rows="4" cols="100" required {} }
                button type="submit" { "Start the import" }
            }
        },
    )
}

fn job_section(job: &JobView) -> maud::Markup {
    let title = if job.kind == "extract" { "Research extract" } else { "Bulk import" };
    html! {
        h2 { (title) " " (job.id) }
        @match job.manifest {
            None => {
                p role="status" { (job.progress.unwrap_or("Running.")) " " a href=(format!("/interfaces/{}/{}", job.kind, job.id)) { "Check again" } }
            }
            Some(manifest) => {
                @let outputs = manifest["output"].as_array().cloned().unwrap_or_default();
                @let errors = manifest["error"].as_array().cloned().unwrap_or_default();
                div.table-wrap tabindex="0" { table {
                    caption { (outputs.len()) " files" }
                    thead { tr { th scope="col" { "Type" } th scope="col" { "Resources" } th scope="col" { "From" } } }
                    tbody { @for output in &outputs { tr {
                        td { (output["type"].as_str().unwrap_or("")) }
                        td { (output["count"].to_string()) }
                        td { (output["inputUrl"].as_str().or(output["url"].as_str()).unwrap_or("")) }
                    } } }
                } }
                @if !errors.is_empty() {
                    p.error { (errors.iter().filter_map(|e| e["count"].as_u64()).sum::<u64>()) " refused" }
                    ul { @for reason in manifest["extension"]["https://chartroom.dev/fhir/bulk/import-rejections"].as_array().into_iter().flatten().take(20) {
                        li { (reason.as_str().unwrap_or("")) }
                    } }
                }
                @let report = &manifest["extension"]["https://chartroom.dev/fhir/bulk/deidentification"];
                @if report.is_object() {
                    div.table-wrap tabindex="0" { table {
                        caption { "Removed, by identifier class (" (report["profile"].as_str().unwrap_or("")) ")" }
                        thead { tr { th scope="col" { "Paragraph" } th scope="col" { "Class" } th scope="col" { "Structured" } th scope="col" { "Text" } } }
                        tbody { @for class in report["classes"].as_array().into_iter().flatten() { tr {
                            td { (class["paragraph"].as_str().unwrap_or("")) }
                            td { (class["title"].as_str().unwrap_or("")) }
                            td { (class["structured"].to_string()) }
                            td { (class["text"].to_string()) }
                        } } }
                    } }
                }
            }
        }
    }
}
