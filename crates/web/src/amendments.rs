//! Amendments (45 CFR 164.526): the open requests with their 60-day clocks, each with its
//! extension, acceptance (the amended resource) and denial forms; the denied ones awaiting the
//! patient's statement; and the intake form.

use maud::html;

use crate::{Viewer, csrf_field, page};

/// One amendment request as listed.
pub struct AmendmentRow {
    pub id: String,
    pub patient: String,
    pub focus: String,
    pub requested: String,
    pub received: String,
    pub due: String,
    /// Days until due (negative: overdue by that many).
    pub days_left: i64,
    pub extended: bool,
    pub status: String,
    /// The current content of the resource to amend, to edit for an acceptance.
    pub current: String,
}

const GROUNDS: &[(&str, &str)] = &[
    ("accurate-and-complete", "The information is accurate and complete"),
    ("not-created-here", "Not created here (its author can act on it)"),
    ("not-designated-record-set", "Not part of the designated record set"),
    ("not-available-for-inspection", "Not available for inspection"),
];

/// The amendments page.
pub fn amendments_page(
    viewer: &Viewer,
    open: &[AmendmentRow],
    denied: &[AmendmentRow],
    message: Option<(bool, &str)>,
) -> String {
    page(
        Some(viewer),
        "Amendments",
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            p { "A patient may ask to amend their record. The request is accepted or denied within 60 days; one 30-day extension may be taken, with its reason told to the patient, before the 60 days end (45 CFR 164.526). An accepted amendment is a new version of the resource with its provenance; a denial is a letter, and the patient's statement of disagreement then goes with every later release of what it disputes." }
            p { a href="/requests" { "Release of information requests" } }
            h2 { "Open requests" }
            @if open.is_empty() { p { "No open amendment requests." } }
            @for row in open {
                section.card aria-label=(format!("Request Task/{}", row.id)) {
                    h3 { "Task/" (row.id) ": " (row.focus) " of " a href=(format!("/patients/{}", row.patient)) { (row.patient) } }
                    p { "Asked: " q { (row.requested) } }
                    p { "Received " (row.received) "; due " (row.due) ", "
                        @if row.days_left < 0 { strong.error { "overdue by " (-row.days_left) " days" } } @else { (row.days_left) " days left" }
                        @if row.extended { " (extended)" } }
                    @if !row.extended {
                        form method="post" action=(format!("/requests/amendments/{}/extend", row.id)) {
                            (csrf_field(viewer.csrf))
                            label { "Reason for the extension" input type="text" name="reason" required; }
                            button.secondary type="submit" { "Extend 30 days" }
                        }
                    }
                    form method="post" action=(format!("/requests/amendments/{}/accept", row.id)) {
                        (csrf_field(viewer.csrf))
                        label { "The amended resource (JSON)" textarea name="resource" rows="8" required { (row.current) } }
                        button type="submit" { "Accept" }
                    }
                    form method="post" action=(format!("/requests/amendments/{}/deny", row.id)) {
                        (csrf_field(viewer.csrf))
                        label { "Ground" select name="basis" { @for (code, words) in GROUNDS { option value=(code) { (words) } } } }
                        label { "Explanation for the letter" input type="text" name="explanation"; }
                        button.secondary type="submit" { "Deny" }
                    }
                }
            }
            h2 { "Denied: the patient's statement of disagreement" }
            @if denied.is_empty() { p { "No denied requests." } }
            @for row in denied {
                form method="post" action=(format!("/requests/amendments/{}/disagree", row.id)) {
                    (csrf_field(viewer.csrf))
                    p { "Task/" (row.id) ": " (row.focus) " of " (row.patient) ", asked: " q { (row.requested) } }
                    label { "Statement of disagreement" textarea name="statement" rows="3" required {} }
                    button.secondary type="submit" { "Keep the statement with the record" }
                }
            }
            h2 { "Take in a request" }
            form method="post" action="/requests/amendments" {
                (csrf_field(viewer.csrf))
                label { "Patient id" input type="text" name="patient" required; }
                label { "Resource to amend (Type/id)" input type="text" name="focus" required; }
                label { "What the patient asks to change, and why" textarea name="requested" rows="3" required {} }
                label { "People to notify (comma-separated)" input type="text" name="notify"; }
                button type="submit" { "Take in" }
            }
        },
    )
}
