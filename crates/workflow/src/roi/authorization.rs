//! The authorization a disclosure needs (45 CFR 164.508), held as a `Consent`, checked for the
//! core elements of 164.508(c)(1) and for being usable for the request at hand.
//!
//! | core element (164.508(c)(1))                       | where in the Consent                                   |
//! |----------------------------------------------------|--------------------------------------------------------|
//! | (i) a description of the information               | `provision.class`, `provision.code` or `provision.data` |
//! | (ii) who may make the disclosure                    | `organization`                                         |
//! | (iii) the recipient                                 | `provision.actor` with role IRCP (information recipient) |
//! | (iv) the purpose                                    | `provision.purpose`                                    |
//! | (v) an expiration date                              | `provision.period.end`                                 |
//! | (vi) the signature and its date                     | `sourceAttachment` or `sourceReference`, and `dateTime` |
//!
//! Beyond the elements, it must be the request's patient's, `active`, a `permit` in force when
//! checked (from its start, before its end), for the request's purpose and recipient, and
//! cover what is asked (`provision.class` record types, `provision.dataPeriod` dates); an
//! authorization with nested exceptions is not applied here.

use serde_json::Value as Json;

use super::Request;

/// One thing the authorization lacks or gets wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The core element or condition (`description`, `discloser`, `recipient`, `purpose`,
    /// `expiry`, `signature`, `patient`, `status`, `expired`, `purpose-mismatch`).
    pub element: &'static str,
    /// Where in the Consent it belongs.
    pub location: &'static str,
    pub message: String,
}

fn missing(element: &'static str, location: &'static str, message: impl Into<String>) -> Missing {
    Missing { element, location, message: message.into() }
}

fn non_empty(value: &Json) -> bool {
    match value {
        Json::Array(items) => !items.is_empty(),
        Json::Object(map) => !map.is_empty(),
        Json::String(text) => !text.trim().is_empty(),
        Json::Null => false,
        _ => true,
    }
}

fn codes(concepts: &Json) -> Vec<&str> {
    let list: Vec<&Json> = match concepts {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    list.iter()
        .flat_map(|c| {
            // provision.purpose is a list of Codings; other elements hold CodeableConcepts.
            let own = c["code"].as_str();
            let coded = c["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str());
            own.into_iter().chain(coded)
        })
        .collect()
}

/// Whether a Consent's actor reference names the requester: the same reference, or the same
/// name.
fn same_party(actor: &Json, requester: &Json) -> bool {
    let text =
        |v: &Json, key: &str| v[key].as_str().map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty());
    matches!((text(actor, "reference"), text(requester, "reference")), (Some(a), Some(b)) if a == b)
        || matches!((text(actor, "display"), text(requester, "display")), (Some(a), Some(b)) if a == b)
}

/// What the authorization lacks for `request`, checked at `now` (ms); empty when it serves.
pub fn check(consent: &Json, request: &Request, now: i64) -> Vec<Missing> {
    let mut found = Vec::new();
    let provision = &consent["provision"];
    if consent["resourceType"] != "Consent" {
        found.push(missing("status", "Consent", "the authorization must be a Consent"));
        return found;
    }
    if !(non_empty(&provision["class"]) || non_empty(&provision["code"]) || non_empty(&provision["data"])) {
        found.push(missing(
            "description",
            "Consent.provision.class | code | data",
            "no description of the information to be disclosed (164.508(c)(1)(i))",
        ));
    }
    if !non_empty(&consent["organization"]) {
        found.push(missing(
            "discloser",
            "Consent.organization",
            "no name of who may make the disclosure (164.508(c)(1)(ii))",
        ));
    }
    let recipients: Vec<&Json> = provision["actor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|actor| codes(&actor["role"]).contains(&"IRCP") && non_empty(&actor["reference"]))
        .map(|actor| &actor["reference"])
        .collect();
    if recipients.is_empty() {
        found.push(missing(
            "recipient",
            "Consent.provision.actor (role IRCP)",
            "no recipient of the disclosure (164.508(c)(1)(iii))",
        ));
    } else if !recipients.iter().any(|r| same_party(r, &request.requester_name)) {
        found.push(missing(
            "recipient-mismatch",
            "Consent.provision.actor (role IRCP)",
            "the authorization names another recipient than the requester",
        ));
    }
    let purposes = codes(&provision["purpose"]);
    if purposes.is_empty() {
        found.push(missing(
            "purpose",
            "Consent.provision.purpose",
            "no purpose of the disclosure (164.508(c)(1)(iv))",
        ));
    } else if !purposes.contains(&request.purpose.as_str()) {
        found.push(missing(
            "purpose-mismatch",
            "Consent.provision.purpose",
            format!(
                "the authorization is for {}, not for the request's purpose {}",
                purposes.join(", "),
                request.purpose
            ),
        ));
    }
    // What it covers: the request may ask for no more than the authorization's record types
    // and dates.
    let classes = codes(&provision["class"]);
    if !classes.is_empty() {
        let outside: Vec<&str> =
            request.scope.types.iter().map(String::as_str).filter(|t| !classes.contains(t)).collect();
        if request.scope.types.is_empty() || !outside.is_empty() {
            found.push(missing(
                "scope-mismatch",
                "Consent.provision.class",
                format!(
                    "the authorization covers {} only; the request asks for {}",
                    classes.join(", "),
                    if outside.is_empty() { "the whole record".to_string() } else { outside.join(", ") }
                ),
            ));
        }
    }
    let data_period = &provision["dataPeriod"];
    if data_period.is_object() {
        let day = |v: &Json| v.as_str().and_then(|t| t.get(..10)).map(str::to_string);
        let starts_inside = match (request.scope.from.as_deref(), day(&data_period["start"])) {
            (_, None) => true,
            (Some(from), Some(start)) => from >= start.as_str(),
            (None, Some(_)) => false,
        };
        let ends_inside = match (request.scope.to.as_deref(), day(&data_period["end"])) {
            (_, None) => true,
            (Some(to), Some(end)) => to <= end.as_str(),
            (None, Some(_)) => false,
        };
        if !(starts_inside && ends_inside) {
            found.push(missing(
                "scope-mismatch",
                "Consent.provision.dataPeriod",
                "the request's dates reach outside the dates the authorization covers",
            ));
        }
    }
    if provision["provision"].as_array().is_some_and(|nested| !nested.is_empty()) {
        found.push(missing(
            "exceptions",
            "Consent.provision.provision",
            "the authorization has exceptions, which a release here does not apply: release by hand",
        ));
    }
    if let Some(start) = provision["period"]["start"].as_str()
        && fhir::DateTime::parse(start, fhir::DateTimeKind::DateTime)
            .is_ok_and(|d| d.lower_bound_millis() > now)
    {
        found.push(missing(
            "not-yet-valid",
            "Consent.provision.period.start",
            format!("the authorization is valid from {start}"),
        ));
    }
    match provision["period"]["end"].as_str() {
        None => found.push(missing(
            "expiry",
            "Consent.provision.period.end",
            "no expiration date (164.508(c)(1)(v))",
        )),
        Some(end) => {
            let ends =
                fhir::DateTime::parse(end, fhir::DateTimeKind::DateTime).map(|d| d.upper_bound_millis());
            match ends {
                Err(_) => found.push(missing(
                    "expiry",
                    "Consent.provision.period.end",
                    format!("'{end}' is not a date"),
                )),
                Ok(ends) if ends <= now => found.push(missing(
                    "expired",
                    "Consent.provision.period.end",
                    format!("the authorization expired on {end}"),
                )),
                Ok(_) => {}
            }
        }
    }
    let signed = non_empty(&consent["sourceAttachment"]) || non_empty(&consent["sourceReference"]);
    if !signed || consent["dateTime"].as_str().is_none() {
        found.push(missing(
            "signature",
            "Consent.sourceAttachment | sourceReference, Consent.dateTime",
            "no signed form with the date it was signed (164.508(c)(1)(vi))",
        ));
    }
    let patient = consent["patient"]["reference"].as_str();
    if patient != Some(format!("Patient/{}", request.patient).as_str()) {
        found.push(missing(
            "patient",
            "Consent.patient",
            format!("the authorization is not Patient/{}'s", request.patient),
        ));
    }
    if consent["status"] != "active" {
        found.push(missing("status", "Consent.status", "the authorization is not active"));
    }
    if provision["type"].as_str() != Some("permit") {
        found.push(missing(
            "status",
            "Consent.provision.type",
            "the authorization does not permit the disclosure",
        ));
    }
    found
}
