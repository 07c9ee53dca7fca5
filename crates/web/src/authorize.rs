//! The authorization server's pages: sign-in, consent with the patient picker, and refusals
//! (SMART App Launch). Framed like the workbench's, without its navigation.

use maud::{Markup, html};

use crate::page;

/// The path the pages' forms post to.
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";

/// One patient the picker offers.
pub struct PatientChoice {
    pub id: String,
    pub name: String,
    pub birth_date: String,
}

/// What an app asks to do, in words.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" | "profile" => "Know who you are (your name and user account)".into(),
        "fhirUser" => "Know which person in the record you are".into(),
        "launch" => "Open with the patient and visit chosen in Chartroom".into(),
        "launch/patient" => "Work with one patient's record, chosen now".into(),
        "launch/encounter" => "Work with the visit chosen in Chartroom".into(),
        "offline_access" => "Keep access when you are not using it (until you revoke it)".into(),
        "online_access" => "Keep access while you are signed in".into(),
        clinical => {
            // `context/Type.letters`, as the server grants them (v2 form).
            let Some((context, rest)) = clinical.split_once('/') else { return clinical.to_string() };
            let Some((kind, letters)) = rest.split_once('.') else { return clinical.to_string() };
            let what = if kind == "*" { "all record types".to_string() } else { format!("{kind} records") };
            let verbs: Vec<&str> =
                [('c', "create"), ('r', "read"), ('u', "update"), ('d', "delete"), ('s', "search")]
                    .into_iter()
                    .filter(|(letter, _)| letters.contains(*letter))
                    .map(|(_, verb)| verb)
                    .collect();
            let whose = match context {
                "patient" => "of the patient in context",
                "user" => "you may see",
                "system" => "of every patient",
                _ => "",
            };
            let verbs = verbs.join(", ");
            let mut chars = verbs.chars();
            let verbs =
                chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect());
            format!("{verbs} {what} {whose}").trim().to_string()
        }
    }
}

fn alert(message: Option<&str>) -> Markup {
    html! { @if let Some(message) = message { p.error role="alert" { (message) } } }
}

/// The sign-in form of an authorization request.
pub fn sign_in(client: &str, request: &str, message: Option<&str>) -> String {
    page(
        None,
        "Sign in",
        html! {
            p { strong { (client) } " asks to use your Chartroom record. Sign in to continue." }
            (alert(message))
            form method="post" action=(AUTHORIZE_PATH) {
                input type="hidden" name="request" value=(request);
                label for="username" { "User name" }
                input id="username" name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// The consent screen: what the app would be granted, the patient picker when the user must
/// choose one, and allow / deny.
pub fn consent(
    user: &str,
    client: &str,
    request: &str,
    scopes: &[String],
    picker: Option<&[PatientChoice]>,
    message: Option<&str>,
) -> String {
    page(
        None,
        "Allow access?",
        html! {
            p { "Signed in as " strong { (user) } ". " strong { (client) } " asks to:" }
            ul { @for scope in scopes { li { (describe_scope(scope)) " " code { (scope) } } } }
            (alert(message))
            form method="post" action=(AUTHORIZE_PATH) {
                input type="hidden" name="request" value=(request);
                @if let Some(patients) = picker {
                    h2 { "Which patient?" }
                    label for="name" { "Find by name" }
                    input id="name" name="name";
                    button.secondary type="submit" name="search" value="1" { "Find" }
                    label for="patient" { "Patient (" (patients.len()) " shown)" }
                    select id="patient" name="patient" size="8" {
                        @for p in patients {
                            option value=(p.id) { (p.name) " · born " (if p.birth_date.is_empty() { "unknown" } else { &p.birth_date }) " · " (p.id) }
                        }
                    }
                }
                p {
                    button type="submit" name="decision" value="approve" { "Allow" } " "
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    )
}

/// A request that cannot go on and cannot be sent back to the app.
pub fn refusal(why: &str) -> String {
    page(None, "Sign-in refused", html! { p.error role="alert" { (why) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_as_what_they_permit_and_pages_escape() {
        assert_eq!(describe_scope("patient/*.rs"), "Read, search all record types of the patient in context");
        assert_eq!(describe_scope("user/Condition.cu"), "Create, update Condition records you may see");
        let page = sign_in("<b>App</b>", "r1", None);
        assert!(page.contains("&lt;b&gt;App&lt;/b&gt;") && !page.contains("<b>App"));
    }
}
