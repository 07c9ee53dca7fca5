//! Amendments (45 CFR 164.526): a patient's request to amend part of their record, accepted
//! or denied on the law's clock.
//!
//! - **The request** is a `Task` (code `amendment`): `for` the Patient, `focus` the resource to
//!   amend, `authoredOn` when it was received, `requester` the patient or their
//!   representative, the input `requested-change` in the patient's words, and `notify` inputs
//!   for the people the patient names as having received the wrong information (164.526(c)(3)).
//! - **The clock** ([`Amendment::due`]): acted on within 60 days of receipt, with one 30-day
//!   extension given in writing, with its reason, before the 60 days end (164.526(b)(2)).
//! - **Accepted** ([`provenance`], [`recipients`]): the amended resource is stored as a new
//!   version, and a `Provenance` links that version to the one it replaces and to the request.
//!   Those to notify are the people the patient named, and everyone the wrong version was
//!   released to since it was written (the completed release-of-information requests of the
//!   patient whose scope held the resource's type).
//! - **Denied** ([`Denial`], [`denial_letter`]): on one of the grounds of 164.526(a)(2), with a
//!   letter in plain words saying why, the patient's right to a statement of disagreement and
//!   how to complain. The patient's statement ([`statement`]) is kept with the record: both are
//!   `DocumentReference`s whose `context.related` names the disputed resource, and every later
//!   release holding that resource holds them too (164.526(d)(5), in [`crate::roi::release`]).

use serde_json::{Value as Json, json};
use store::Store;

use crate::roi::{self, Extension, WORKFLOW_SYSTEM};
use crate::{DAY, Error, Result, date_time, instant};

pub const AMENDMENT_CODE: &str = "amendment";
pub const INPUT_SYSTEM: &str = "https://chartroom.dev/fhir/CodeSystem/amendment-input";
/// The document types of a denial letter and of a statement of disagreement (in the workflow
/// code system: LOINC has no codes for them).
pub const DENIAL_LETTER: &str = "amendment-denial";
pub const STATEMENT_OF_DISAGREEMENT: &str = "statement-of-disagreement";
pub const ACCEPTANCE_NOTICE: &str = "amendment-acceptance";

pub const DAYS_TO_ACT: i64 = 60;
pub const EXTENSION_DAYS: i64 = 30;

/// The grounds on which 164.526(a)(2) lets a request be denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    NotCreatedHere,
    NotDesignatedRecordSet,
    NotAvailableForInspection,
    AccurateAndComplete,
}

impl Denial {
    pub const ALL: [Denial; 4] = [
        Denial::NotCreatedHere,
        Denial::NotDesignatedRecordSet,
        Denial::NotAvailableForInspection,
        Denial::AccurateAndComplete,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Denial::NotCreatedHere => "not-created-here",
            Denial::NotDesignatedRecordSet => "not-designated-record-set",
            Denial::NotAvailableForInspection => "not-available-for-inspection",
            Denial::AccurateAndComplete => "accurate-and-complete",
        }
    }

    pub fn parse(code: &str) -> Option<Denial> {
        Denial::ALL.into_iter().find(|d| d.code() == code)
    }

    /// The ground, in the letter's words.
    pub fn words(self) -> &'static str {
        match self {
            Denial::NotCreatedHere => {
                "the information was not created by us, and its author is available to act on your request"
            }
            Denial::NotDesignatedRecordSet => {
                "the information is not part of the records we use to make decisions about you"
            }
            Denial::NotAvailableForInspection => {
                "the information is not information you have a right to inspect"
            }
            Denial::AccurateAndComplete => "we have reviewed the information and it is accurate and complete",
        }
    }
}

/// An amendment request.
#[derive(Clone, Debug, PartialEq)]
pub struct Amendment {
    pub id: String,
    pub patient: String,
    /// The resource to amend: `Type/id`.
    pub focus: String,
    pub requester: Json,
    /// What the patient asks to change, and why, in their words.
    pub requested: String,
    /// When it was received (ms).
    pub received: i64,
    /// People the patient names as having received the wrong information.
    pub notify: Vec<Json>,
    pub extension: Option<Extension>,
    pub status: String,
}

fn input(name: &str, value: Json) -> Json {
    let mut entry = json!({ "type": { "coding": [{ "system": INPUT_SYSTEM, "code": name }] } });
    if let (Some(entry), Some(value)) = (entry.as_object_mut(), value.as_object()) {
        entry.extend(value.clone());
    }
    entry
}

/// Whether a Task is an amendment request.
pub fn is_amendment(task: &Json) -> bool {
    task["code"]["coding"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["system"] == WORKFLOW_SYSTEM && c["code"] == AMENDMENT_CODE))
}

impl Amendment {
    /// Reads a request from its Task, naming the element at fault when it cannot.
    pub fn from_task(task: &Json) -> Result<Amendment> {
        if task["resourceType"] != "Task" || !is_amendment(task) {
            return Err(Error::Invalid(format!(
                "an amendment request is a Task with code {WORKFLOW_SYSTEM}|{AMENDMENT_CODE}"
            )));
        }
        let patient = task["for"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .filter(|id| fhir::is_valid_id(id))
            .ok_or_else(|| {
                Error::Invalid("Task.for: the request must be for a Patient (Patient/[id])".into())
            })?;
        let focus = task["focus"]["reference"]
            .as_str()
            .and_then(|r| {
                let (kind, id) = r.split_once('/')?;
                let id = id.split('/').next()?;
                (fhir::definitions().resource_types().any(|t| t == kind) && fhir::is_valid_id(id))
                    .then(|| format!("{kind}/{id}"))
            })
            .ok_or_else(|| {
                Error::Invalid("Task.focus: the resource to amend is required (Type/[id])".into())
            })?;
        let received = task["authoredOn"].as_str().and_then(instant).ok_or_else(|| {
            Error::Invalid("Task.authoredOn: when the request was received is required".into())
        })?;
        if !(task["requester"]["reference"].is_string() || task["requester"]["display"].is_string()) {
            return Err(Error::Invalid("Task.requester: who asks is required".into()));
        }
        let mut requested = None;
        let mut notify = Vec::new();
        let (mut reason, mut given) = (None, None);
        for (i, entry) in task["input"].as_array().into_iter().flatten().enumerate() {
            let location = format!("Task.input[{i}]");
            let text = |key: &str| {
                entry[key].as_str().ok_or_else(|| Error::Invalid(format!("{location}: {key} is required")))
            };
            match entry["type"]["coding"][0]["code"].as_str().unwrap_or("") {
                "requested-change" => requested = Some(text("valueString")?.to_string()),
                "notify" => notify.push(entry["valueReference"].clone()),
                "extension-reason" => reason = Some(text("valueString")?.to_string()),
                "extension-given" => {
                    given = Some(
                        instant(text("valueDateTime")?)
                            .ok_or_else(|| Error::Invalid(format!("{location}: not a dateTime")))?,
                    )
                }
                other => return Err(Error::Invalid(format!("{location}: unknown input '{other}'"))),
            }
        }
        let requested = requested.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            Error::Invalid("Task.input: requested-change (what to amend and why) is required".into())
        })?;
        let extension = match (reason, given) {
            (Some(reason), Some(given_at)) if given_at <= received + DAYS_TO_ACT * DAY => {
                Some(Extension { reason, given_at })
            }
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "Task.input: an extension needs its reason, given within 60 days".into(),
                ));
            }
        };
        Ok(Amendment {
            id: task["id"].as_str().unwrap_or("").to_string(),
            patient: patient.to_string(),
            focus,
            requester: task["requester"].clone(),
            requested,
            received,
            notify,
            extension,
            status: task["status"].as_str().unwrap_or("requested").to_string(),
        })
    }

    /// The request as its Task (its due date as `restriction.period.end`).
    pub fn to_task(&self) -> Json {
        let mut inputs = vec![input("requested-change", json!({ "valueString": self.requested }))];
        for who in &self.notify {
            inputs.push(input("notify", json!({ "valueReference": who })));
        }
        if let Some(extension) = &self.extension {
            inputs.push(input("extension-reason", json!({ "valueString": extension.reason })));
            inputs.push(input("extension-given", json!({ "valueDateTime": date_time(extension.given_at) })));
        }
        let mut task = json!({
            "resourceType": "Task", "status": self.status, "intent": "order",
            "code": { "coding": [{ "system": WORKFLOW_SYSTEM, "code": AMENDMENT_CODE }] },
            "for": { "reference": format!("Patient/{}", self.patient) },
            "focus": { "reference": self.focus },
            "authoredOn": date_time(self.received),
            "requester": self.requester,
            "restriction": { "period": { "end": date_time(self.due()) } },
            "input": inputs,
        });
        if !self.id.is_empty() {
            task["id"] = json!(self.id);
        }
        task
    }

    /// When it must be acted on: 60 days from receipt, 90 with the extension.
    pub fn due(&self) -> i64 {
        self.received + (DAYS_TO_ACT + if self.extension.is_some() { EXTENSION_DAYS } else { 0 }) * DAY
    }

    pub fn open(&self) -> bool {
        matches!(self.status.as_str(), "requested" | "received" | "accepted" | "in-progress")
    }

    /// The one extension, with its reason, before the first 60 days end.
    pub fn extend(&mut self, reason: &str, now: i64) -> Result<()> {
        if !self.open() {
            return Err(Error::Refused(format!("the request is {}: it was decided already", self.status)));
        }
        if self.extension.is_some() {
            return Err(Error::Refused("the one 30-day extension was taken already (164.526(b)(2))".into()));
        }
        if reason.trim().is_empty() {
            return Err(Error::Invalid("reason: the extension's written reason is required".into()));
        }
        if now > self.received + DAYS_TO_ACT * DAY {
            return Err(Error::Refused("the 60 days have run out: an extension must be given before".into()));
        }
        self.extension = Some(Extension { reason: reason.trim().to_string(), given_at: now });
        Ok(())
    }
}

/// The Provenance of an accepted amendment: the new version of the focus, the version it
/// replaces, and the request it answers.
pub fn provenance(amendment: &Amendment, old_version: u64, who: &str, now: i64) -> Json {
    json!({
        "resourceType": "Provenance",
        "target": [{ "reference": format!("{}/_history/{}", amendment.focus, old_version + 1) }],
        "recorded": date_time(now),
        "reason": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PATADMIN", "display": "patient administration" }],
                     "text": format!("amendment requested by the patient (45 CFR 164.526): {}", amendment.requested) }],
        "activity": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE" }] },
        "agent": [{ "who": { "display": who } }],
        "entity": [
            { "role": "revision", "what": { "reference": format!("{}/_history/{old_version}", amendment.focus) } },
            { "role": "source", "what": { "reference": format!("Task/{}", amendment.id) } },
        ],
    })
}

/// Who must be told of an accepted amendment: the people the patient named, then each
/// recipient of a release since `wrong_since` (ms, when the wrong version was written) whose
/// scope held the focus's type.
pub fn recipients(store: &dyn Store, amendment: &Amendment, wrong_since: i64) -> Result<Vec<String>> {
    let mut named: Vec<String> = amendment
        .notify
        .iter()
        .filter_map(|r| r["display"].as_str().or(r["reference"].as_str()).map(str::to_string))
        .collect();
    let focus_type = amendment.focus.split('/').next().unwrap_or("");
    store.scan_type("Task", None, &mut |_, _, body| {
        let Ok(task) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        let Ok(request) = roi::Request::from_task(&task) else { return Ok(()) };
        let released_at = task["lastModified"].as_str().and_then(instant).unwrap_or(0);
        let held = request.scope.types.is_empty() || request.scope.types.iter().any(|t| t == focus_type);
        if request.status == "completed"
            && request.patient == amendment.patient
            && held
            && released_at >= wrong_since
        {
            let who = request.requester_name["display"]
                .as_str()
                .or(request.requester_name["reference"].as_str())
                .unwrap_or("the requester");
            named.push(format!("{who} (release Task/{})", request.id));
        }
        Ok(())
    })?;
    let mut seen = std::collections::HashSet::new();
    named.retain(|n| seen.insert(n.clone()));
    Ok(named)
}

fn document(amendment: &Amendment, code: &str, title: &str, text: &str, author: Json, now: i64) -> Json {
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": { "coding": [{ "system": WORKFLOW_SYSTEM, "code": code, "display": title }], "text": title },
        "subject": { "reference": format!("Patient/{}", amendment.patient) },
        "date": date_time(now),
        "author": [author],
        "description": title,
        "content": [{ "attachment": { "contentType": "text/plain; charset=utf-8", "language": "en-US",
                                       "data": fhir::base64_encode(text.as_bytes()), "title": title, "creation": date_time(now) } }],
        "context": { "related": [{ "reference": amendment.focus }, { "reference": format!("Task/{}", amendment.id) }] },
    })
}

/// Who a denial letter names for statements and complaints when the department names no one.
pub const DEFAULT_CONTACT: &str = "the Privacy Officer, Health Information Management department";

/// The denial letter, in plain words (164.526(d)(1)): the basis, the right to a statement of
/// disagreement and how to file it, what happens if none is filed, and how to complain (to
/// `contact`, and to the Secretary).
pub fn denial_letter(
    amendment: &Amendment,
    basis: Denial,
    explanation: &str,
    who: &str,
    contact: &str,
    now: i64,
) -> Json {
    let text = format!(
        "Your request to amend your record\n\nWe received your request on {} to amend {}: \"{}\".\n\nWe have denied it because {}.{}\n\nYou may send us a written statement disagreeing with this denial and saying why: send it to {contact}, quoting request Task/{}. We will keep it with your record and include it, with this letter, whenever we disclose the information your request is about. If you do not send one, you may ask that your request and this letter be included with any future disclosure of that information.\n\nYou may complain to {contact}, or to the Secretary of Health and Human Services (Office for Civil Rights, www.hhs.gov/ocr/complaints).\n\n{who}\n",
        &date_time(amendment.received)[..10],
        amendment.focus,
        amendment.requested,
        basis.words(),
        if explanation.trim().is_empty() { String::new() } else { format!(" {}", explanation.trim()) },
        amendment.id,
    );
    document(amendment, DENIAL_LETTER, "Denial of a request to amend", &text, json!({ "display": who }), now)
}

/// The notice to the patient that their amendment was accepted, naming whom it will be sent
/// to and asking whom else (164.526(c)(2)).
pub fn acceptance_notice(amendment: &Amendment, notify: &[String], who: &str, now: i64) -> Json {
    // The people the patient named, by name; those the department released to, only counted
    // (the notice is part of the record, and who received what is the accounting's to say).
    let named: Vec<String> = amendment
        .notify
        .iter()
        .filter_map(|r| r["display"].as_str().or(r["reference"].as_str()).map(str::to_string))
        .collect();
    let others = notify.iter().filter(|n| !named.contains(n)).count();
    let mut parts = named;
    if others > 0 {
        parts.push(format!("{others} recipient{} of earlier releases", if others == 1 { "" } else { "s" }));
    }
    let recipients = if parts.is_empty() { "no one so far".to_string() } else { parts.join("; ") };
    let text = format!(
        "Your request to amend your record\n\nWe received your request on {} to amend {}: \"{}\".\n\nWe have accepted it and amended your record. We will send the amendment to the people you named and to those we know received the information: {recipients}. Tell us of anyone else who should receive it.\n\n{who}\n",
        &date_time(amendment.received)[..10],
        amendment.focus,
        amendment.requested,
    );
    document(
        amendment,
        ACCEPTANCE_NOTICE,
        "Acceptance of a request to amend",
        &text,
        json!({ "display": who }),
        now,
    )
}

/// The patient's statement of disagreement (164.526(d)(1)(iii)), kept with the record.
pub fn statement(amendment: &Amendment, text: &str, now: i64) -> Result<Json> {
    if text.trim().is_empty() {
        return Err(Error::Invalid("statement: the patient's statement of disagreement is required".into()));
    }
    Ok(document(
        amendment,
        STATEMENT_OF_DISAGREEMENT,
        "Statement of disagreement",
        text.trim(),
        json!({ "reference": format!("Patient/{}", amendment.patient) }),
        now,
    ))
}

/// What a denial letter or statement of disagreement is: its kind, the request it answers
/// (`Task/..`) and the resources it disputes; `None` for any other document.
pub fn disputes(document: &Json) -> Option<(&str, &str, Vec<&str>)> {
    let kind = document["type"]["coding"].as_array()?.iter().find_map(|c| {
        let code = c["code"].as_str()?;
        (c["system"] == WORKFLOW_SYSTEM && (code == DENIAL_LETTER || code == STATEMENT_OF_DISAGREEMENT))
            .then_some(code)
    })?;
    if document["status"] != "current" {
        return None;
    }
    let related: Vec<&str> =
        document["context"]["related"].as_array()?.iter().filter_map(|r| r["reference"].as_str()).collect();
    let task = related.iter().copied().find(|r| r.starts_with("Task/"))?;
    Some((kind, task, related.into_iter().filter(|r| !r.starts_with("Task/")).collect()))
}

/// The open amendment requests past their due date, oldest due first.
pub fn overdue(store: &dyn Store, now: i64) -> Result<Vec<Amendment>> {
    let mut found = Vec::new();
    store.scan_type("Task", None, &mut |_, _, body| {
        let Ok(task) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        if is_amendment(&task)
            && let Ok(request) = Amendment::from_task(&task)
            && request.open()
            && request.due() < now
        {
            found.push(request);
        }
        Ok(())
    })?;
    found.sort_by(|a, b| (a.due(), &a.id).cmp(&(b.due(), &b.id)));
    Ok(found)
}
