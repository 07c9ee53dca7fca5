//! The authorization server's pages: sign-in, consent (with the patient picker) and
//! refusals. Plain server-rendered HTML with no script and no outside asset; every value
//! that comes from a request or the record is escaped.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use privacy::oauth::Pending;

use crate::oauth::AUTHORIZE_PATH;

/// One patient the picker offers.
pub(crate) struct PatientChoice {
    pub id: String,
    pub name: String,
    pub birth_date: String,
}

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;\
color:#1b1b1b;line-height:1.5}h1{font-size:1.4rem}label{display:block;margin-top:.8rem;font-weight:600}\
input,select{font-size:1rem;padding:.45rem;width:100%;box-sizing:border-box;border:1px solid #555;border-radius:4px}\
button{font-size:1rem;padding:.5rem 1.2rem;margin:1rem .5rem 0 0;border-radius:4px;border:1px solid #0b4f8a;\
background:#0b4f8a;color:#fff;cursor:pointer}button.secondary{background:#fff;color:#0b4f8a}\
.error{background:#fde8e8;border-left:4px solid #b00020;padding:.5rem .8rem}\
ul.scopes li{margin:.3rem 0}code{background:#f2f2f2;padding:0 .2rem}";

/// A whole page.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} – Chartroom</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // The pages are never framed (clickjacking a consent) and run no script.
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        html,
    )
        .into_response()
}

/// A request that cannot go on and cannot be sent back to the app.
pub(crate) fn refusal(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Sign-in refused",
        &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(why)),
    )
}

fn error_block(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
}

/// The sign-in form.
pub(crate) fn sign_in(pending: &Pending, message: Option<&str>) -> Response {
    let body = format!(
        "<p><strong>{client}</strong> asks to use your Chartroom record. Sign in to continue.</p>{error}\
         <form method=\"post\" action=\"{AUTHORIZE_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape(&pending.client.name),
        error = error_block(message),
        request = escape(&pending.id),
    );
    page(StatusCode::OK, "Sign in", &body)
}

/// What a scope lets an app do, in words.
fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" | "profile" => "Know who you are (your name and user account)".into(),
        "fhirUser" => "Know which person in the record you are".into(),
        "launch" => "Open with the patient and visit chosen in Chartroom".into(),
        "launch/patient" => "Work with one patient's record, chosen now".into(),
        "launch/encounter" => "Work with the visit chosen in Chartroom".into(),
        "offline_access" => "Keep access when you are not using it (until you revoke it)".into(),
        "online_access" => "Keep access while you are signed in".into(),
        clinical => {
            let Ok(Some(parsed)) = privacy::Scope::parse(clinical) else { return clinical.to_string() };
            let what = parsed
                .resource_type
                .map_or_else(|| "all record types".to_string(), |t| format!("{t} records"));
            let mut verbs = Vec::new();
            for (letter, verb) in
                [('c', "create"), ('r', "read"), ('u', "update"), ('d', "delete"), ('s', "search")]
            {
                if parsed.permissions.contains(letter) {
                    verbs.push(verb);
                }
            }
            let whose = match parsed.context {
                privacy::Context::Patient => "of the patient in context",
                privacy::Context::User => "you may see",
                privacy::Context::System => "of every patient",
            };
            format!("{} {what} {whose}", capitalise(&verbs.join(", ")))
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// The consent screen: what the app would be granted, the patient picker when the user must
/// choose one, and approve / deny.
pub(crate) fn consent(pending: &Pending, patients: &[PatientChoice], message: Option<&str>) -> Response {
    let granted: Vec<String> = pending.grant.as_ref().map(|g| g.scopes.clone()).unwrap_or_default();
    let items: String = granted
        .iter()
        .map(|s| format!("<li>{} <code>{}</code></li>", escape(&describe_scope(s)), escape(s)))
        .collect();
    let user = pending.user.as_ref().map(|u| u.0.as_str()).unwrap_or("");
    let picker = if pending.needs_patient_picked() {
        let options: String = patients
            .iter()
            .map(|p| {
                format!(
                    "<option value=\"{id}\">{name} · born {born} · {id}</option>",
                    id = escape(&p.id),
                    name = escape(&p.name),
                    born = escape(if p.birth_date.is_empty() { "unknown" } else { &p.birth_date })
                )
            })
            .collect();
        format!(
            "<h2>Which patient?</h2>\
             <label for=\"name\">Find by name</label><input id=\"name\" name=\"name\">\
             <button type=\"submit\" name=\"search\" value=\"1\" class=\"secondary\">Find</button>\
             <label for=\"patient\">Patient ({count} shown)</label>\
             <select id=\"patient\" name=\"patient\" size=\"8\">{options}</select>",
            count = patients.len()
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>. <strong>{client}</strong> asks to:</p>\
         <ul class=\"scopes\">{items}</ul>{error}\
         <form method=\"post\" action=\"{AUTHORIZE_PATH}\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">{picker}\
         <div><button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></div></form>",
        user = escape(user),
        client = escape(&pending.client.name),
        error = error_block(message),
        request = escape(&pending.id),
    );
    page(StatusCode::OK, "Allow access?", &body)
}
