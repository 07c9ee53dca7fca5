//! The HIM workbench's pages, as pure functions from what the API answered to HTML: no I/O,
//! no decisions. The server crate signs staff in, asks the API (as the signed-in user, so the
//! one policy decides and the audit records) and hands the answers here.
//!
//! Invariants:
//! - Every value from the record or a request is escaped (maud escapes by default; nothing
//!   here uses `PreEscaped` on such a value).
//! - Pages carry no inline script or style (the Content-Security-Policy forbids both); the
//!   one stylesheet is [`STYLESHEET`], served by the binary.
//! - Every form that changes something carries the session's CSRF token ([`csrf_field`]).

pub mod amendments;
pub mod analytics;
pub mod authorize;
pub mod billing;
pub mod chart;
pub mod completion;
pub mod diff;
pub mod duplicates;
pub mod interfaces;
pub mod operations;
pub mod retention;
pub mod roi;
pub mod svg;
pub mod views;

use maud::{DOCTYPE, Markup, html};

pub use maud::Markup as Html;

/// The stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../assets/workbench.css");
pub const STYLESHEET_PATH: &str = "/assets/workbench.css";

/// An area of the workbench, in the navigation when the user's role may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Home,
    Patients,
    Duplicates,
    Coding,
    Requests,
    Completion,
    Retention,
    Interfaces,
    Quality,
    Privacy,
    Analytics,
    Admin,
}

impl Area {
    pub const ALL: [Area; 12] = [
        Area::Home,
        Area::Patients,
        Area::Duplicates,
        Area::Coding,
        Area::Requests,
        Area::Completion,
        Area::Retention,
        Area::Interfaces,
        Area::Quality,
        Area::Privacy,
        Area::Analytics,
        Area::Admin,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Area::Home => "/",
            Area::Patients => "/patients",
            Area::Duplicates => "/duplicates",
            Area::Coding => "/coding",
            Area::Requests => "/requests",
            Area::Completion => "/completion",
            Area::Retention => "/retention",
            Area::Interfaces => "/interfaces",
            Area::Quality => "/quality",
            Area::Privacy => "/privacy",
            Area::Analytics => "/analytics",
            Area::Admin => "/admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Area::Home => "Home",
            Area::Patients => "Patients",
            Area::Duplicates => "Duplicates",
            Area::Coding => "Coding",
            Area::Requests => "Requests",
            Area::Completion => "Completion",
            Area::Retention => "Retention",
            Area::Interfaces => "Interfaces",
            Area::Quality => "Data quality",
            Area::Privacy => "Privacy",
            Area::Analytics => "Analytics",
            Area::Admin => "Administration",
        }
    }

    /// What the area is for, on the home page.
    pub fn purpose(self) -> &'static str {
        match self {
            Area::Home => "",
            Area::Patients => "Find a patient, read the chart, see each record's versions and who viewed it.",
            Area::Duplicates => {
                "Probable duplicate registrations to review; merge those of one person, and undo a merge."
            }
            Area::Coding => {
                "Encounters waiting to be coded, with suggested codes and coding edits; bills checked against the record, and what is not yet billed."
            }
            Area::Requests => {
                "Release of information and amendments: requests for copies of a record or to amend it, their clocks, authorization, release and decision."
            }
            Area::Completion => {
                "Record completion: documents owed by clinicians (summaries, histories, operative reports, signatures), delinquent records and the completion rate."
            }
            Area::Retention => {
                "Legal holds, and the records past their retention schedule: the purge and its certificate of destruction."
            }
            Area::Interfaces => {
                "HL7 v2 messages applied by hand, de-identified research extracts, bulk imports from other servers."
            }
            Area::Quality => "The data-quality checks, their trend, and the records that fail them.",
            Area::Privacy => {
                "Search the audit trail, account for disclosures, review access, verify the chain."
            }
            Area::Analytics => "The built-in tables, to read and download.",
            Area::Admin => "Users, roles and tokens; the server's state.",
        }
    }
}

/// Who is looking, for the frame of every page.
pub struct Viewer<'a> {
    pub user: &'a str,
    pub role: &'a str,
    /// The areas the user may use.
    pub areas: &'a [Area],
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
    /// The area the page belongs to.
    pub current: Area,
}

/// The hidden field carrying the session's CSRF token.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A whole page: the bar with navigation and sign-out (when signed in), and `body` in `main`.
pub fn page(viewer: Option<&Viewer>, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Chartroom" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                a.skip href="#content" { "Skip to content" }
                header.bar {
                    a.brand href="/" { "Chartroom" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for area in viewer.areas {
                                    li {
                                        @if *area == viewer.current {
                                            a href=(area.path()) aria-current="page" { (area.label()) }
                                        } @else {
                                            a href=(area.path()) { (area.label()) }
                                        }
                                    }
                                }
                            }
                        }
                        form method="post" action="/signout" {
                            span { (viewer.user) " (" (viewer.role) ")" }
                            (csrf_field(viewer.csrf))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="content" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// The sign-in page.
pub fn sign_in(csrf: &str, next: &str, message: Option<&str>) -> String {
    page(
        None,
        "Sign in",
        html! {
            p { "Sign in with your Chartroom user name and password, or paste your API token." }
            @if let Some(message) = message { p.error role="alert" { (message) } }
            form method="post" action="/signin" {
                (csrf_field(csrf))
                input type="hidden" name="next" value=(next);
                label for="username" { "User name" }
                input id="username" name="username" autocomplete="username" autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password";
                details {
                    summary { "Use an API token instead" }
                    label for="token" { "API token" }
                    input id="token" name="token" type="password" autocomplete="off";
                }
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// The home page: the areas the user may use.
pub fn home(viewer: &Viewer) -> String {
    page(
        Some(viewer),
        "Workbench",
        html! {
            div.cards {
                @for area in viewer.areas.iter().filter(|a| **a != Area::Home) {
                    section.card {
                        h2 { a href=(area.path()) { (area.label()) } }
                        p { (area.purpose()) }
                    }
                }
            }
        },
    )
}

/// A refusal: the role may not use this page.
pub fn not_permitted(viewer: Option<&Viewer>, why: &str) -> String {
    page(
        viewer,
        "Not permitted",
        html! { p.error role="alert" { (why) } p { a href="/" { "Back to the workbench" } } },
    )
}

/// Something that is not there.
pub fn not_found(viewer: Option<&Viewer>, what: &str) -> String {
    page(
        viewer,
        "Not found",
        html! { p.error role="alert" { (what) } p { a href="/" { "Back to the workbench" } } },
    )
}

/// A plain message page (the answer to an action).
pub fn message(viewer: &Viewer, title: &str, ok: bool, text: &str, back: (&str, &str)) -> String {
    page(
        Some(viewer),
        title,
        html! {
            @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            p { a href=(back.0) { (back.1) } }
        },
    )
}

/// Text of a JSON value for a table cell: strings as they are, other values as JSON.
pub fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table with a header row, each cell escaped.
pub fn table(caption: &str, header: &[&str], rows: &[Vec<String>]) -> Markup {
    html! {
        div.table-wrap tabindex="0" {
            table {
                caption { (caption) }
                thead { tr { @for h in header { th scope="col" { (h) } } } }
                tbody {
                    @for row in rows { tr { @for cell in row { td { (cell) } } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let rows = vec![vec!["<script>alert(1)</script>".to_string()]];
        let html = table("t", &["name"], &rows).into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
