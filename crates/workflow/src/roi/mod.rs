//! Release of information: a request to disclose part of a patient's record, from intake to
//! release.
//!
//! - **The request** is a `Task` ([`Request::from_task`], [`Request::to_task`]): `for` the
//!   Patient, `authoredOn` when it was received, `requester` and an input saying what kind of
//!   requester it is (patient, personal representative, attorney, insurer, provider, other),
//!   `reasonCode` the purpose (a v3-ActReason code: TREAT, HPAYMT, HOPERAT, PATRQT, HLEGAL...),
//!   inputs for the scope (first and last date, the record types) and the delivery (a FHIR
//!   Bundle, an HTML rendering, paper), and the authorization (a `Consent`) when one is needed.
//! - **Whether an authorization is needed** ([`Request::needs_authorization`]): not for the
//!   patient's own access or a personal representative's (164.524), nor for a provider's
//!   treatment or an insurer's payment (164.506), nor for a public health authority's public
//!   health purpose (164.512(b)) or a court's order, named as the input `legal-order`
//!   (164.512(e)); for everything else (164.508).
//! - **The authorization** ([`authorization::check`]) must hold the core elements of
//!   164.508(c)(1): a description of the information, who may disclose it, the recipient, the
//!   purpose, an expiry, and the signature with its date; and be the patient's, in force, and
//!   for the request's purpose.
//! - **The clock** ([`Request::due`], [`Request::extend`]): 30 days from receipt; one extension of
//!   up to 30 days, with its written reason, given before the first 30 days run out (164.524(b)(2)).
//!   The law sets this clock for a patient's own access; the department holds every requester's
//!   request to it too, so no request waits longer than a patient's would.
//! - **The release** ([`release::release`]): a Bundle of exactly the requested scope.
//! - **The fee** ([`fee::fee`]): cost-based, by the department's policy.

pub mod authorization;
pub mod fee;
pub mod release;

use serde_json::{Value as Json, json};

use crate::{DAY, Error, Result};

/// The Task code of a release-of-information request, and the names of its inputs.
pub const WORKFLOW_SYSTEM: &str = "https://chartroom.dev/fhir/CodeSystem/him-workflow";
pub const ROI_CODE: &str = "release-of-information";
pub const INPUT_SYSTEM: &str = "https://chartroom.dev/fhir/CodeSystem/roi-input";
const REASON_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Days the law gives to act on a request, and the one extension.
pub const DAYS_TO_ACT: i64 = 30;
pub const EXTENSION_DAYS: i64 = 30;

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    Patient,
    PersonalRepresentative,
    Attorney,
    Insurer,
    Provider,
    /// A public health authority (164.512(b)).
    PublicHealth,
    /// A court or tribunal, by its order (164.512(e)(1)(i)).
    Court,
    Other,
}

impl Requester {
    pub const ALL: [Requester; 8] = [
        Requester::Patient,
        Requester::PersonalRepresentative,
        Requester::Attorney,
        Requester::Insurer,
        Requester::Provider,
        Requester::PublicHealth,
        Requester::Court,
        Requester::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Requester::Patient => "patient",
            Requester::PersonalRepresentative => "personal-representative",
            Requester::Attorney => "attorney",
            Requester::Insurer => "insurer",
            Requester::Provider => "provider",
            Requester::PublicHealth => "public-health",
            Requester::Court => "court",
            Requester::Other => "other",
        }
    }

    pub fn parse(code: &str) -> Option<Requester> {
        Requester::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The form the release takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A FHIR Bundle.
    Fhir,
    /// A human-readable HTML rendering (with the Bundle).
    Html,
    /// Printed and mailed.
    Paper,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [Delivery::Fhir, Delivery::Html, Delivery::Paper];

    pub fn code(self) -> &'static str {
        match self {
            Delivery::Fhir => "fhir",
            Delivery::Html => "html",
            Delivery::Paper => "paper",
        }
    }

    pub fn parse(code: &str) -> Option<Delivery> {
        Delivery::ALL.into_iter().find(|d| d.code() == code)
    }

    pub fn electronic(self) -> bool {
        self != Delivery::Paper
    }
}

/// What part of the record is asked for: dates (inclusive, `YYYY-MM-DD`) and resource types
/// (none: every type of the patient's compartment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub from: Option<String>,
    pub to: Option<String>,
    pub types: Vec<String>,
}

/// The one extension of the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Extension {
    pub reason: String,
    /// When the requester was told (ms).
    pub given_at: i64,
}

/// A release-of-information request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: String,
    /// The Patient id.
    pub patient: String,
    pub requester: Requester,
    /// The requester as named (a reference or a display).
    pub requester_name: Json,
    /// The purpose, a v3-ActReason code.
    pub purpose: String,
    pub scope: Scope,
    pub delivery: Delivery,
    /// When it was received (ms).
    pub received: i64,
    /// The Consent holding the authorization, if one was given.
    pub authorization: Option<String>,
    /// The court's order a court's request is made under (a DocumentReference).
    pub legal_order: Option<String>,
    pub extension: Option<Extension>,
    /// The Task's status: requested, in-progress, completed, rejected, cancelled.
    pub status: String,
}

fn millis(text: &str, location: &str) -> Result<i64> {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime)
        .map(|d| d.lower_bound_millis())
        .map_err(|_| Error::Invalid(format!("{location}: '{text}' is not a date or dateTime")))
}

pub use crate::date_time;

/// The id a `Type/id` reference names, checked.
fn referenced_id<'a>(reference: Option<&'a str>, resource_type: &str) -> Option<&'a str> {
    let id = reference?.strip_prefix(resource_type)?.strip_prefix('/')?;
    fhir::is_valid_id(id).then_some(id)
}

/// A Task input (or output) of the request: its `roi-input` name and its `value[x]` (given as
/// `{"valueCode": ...}`).
pub fn input(name: &str, value: Json) -> Json {
    let mut entry = json!({ "type": { "coding": [{ "system": INPUT_SYSTEM, "code": name }] } });
    if let (Some(entry), Some(value)) = (entry.as_object_mut(), value.as_object()) {
        entry.extend(value.clone());
    }
    entry
}

impl Request {
    /// Reads a request from its Task, naming the element at fault when it cannot.
    pub fn from_task(task: &Json) -> Result<Request> {
        let is_roi = task["code"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["system"] == WORKFLOW_SYSTEM && c["code"] == ROI_CODE));
        if task["resourceType"] != "Task" || !is_roi {
            return Err(Error::Invalid(format!(
                "a release-of-information request is a Task with code {WORKFLOW_SYSTEM}|{ROI_CODE}"
            )));
        }
        let patient = referenced_id(task["for"]["reference"].as_str(), "Patient").ok_or_else(|| {
            Error::Invalid("Task.for: the request must be for a Patient (Patient/[id])".into())
        })?;
        let received = millis(
            task["authoredOn"].as_str().ok_or_else(|| {
                Error::Invalid("Task.authoredOn: when the request was received is required".into())
            })?,
            "Task.authoredOn",
        )?;
        let requester_name = task["requester"].clone();
        let named = |key: &str| requester_name[key].as_str().is_some_and(|t| !t.trim().is_empty());
        if !named("reference") && !named("display") {
            return Err(Error::Invalid(
                "Task.requester: who asks is required (a reference or a display)".into(),
            ));
        }
        let purpose = task["reasonCode"]["coding"]
            .as_array()
            .and_then(|c| c.iter().filter(|c| c["system"] == REASON_SYSTEM).find_map(|c| c["code"].as_str()))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "Task.reasonCode: the purpose of the request is required, as a {REASON_SYSTEM} code"
                ))
            })?
            .to_string();
        let mut requester = None;
        let mut delivery = Delivery::Fhir;
        let mut scope = Scope::default();
        let mut authorization = None;
        let mut legal_order = None;
        let mut extension_reason = None;
        let mut extension_at = None;
        for (i, entry) in task["input"].as_array().into_iter().flatten().enumerate() {
            let name = entry["type"]["coding"][0]["code"].as_str().unwrap_or("");
            let location = format!("Task.input[{i}]");
            let text = |key: &str| -> Result<&str> {
                entry[key]
                    .as_str()
                    .ok_or_else(|| Error::Invalid(format!("{location} ({name}): {key} is required")))
            };
            match name {
                "requester-type" => {
                    let code = text("valueCode")?;
                    requester = Some(Requester::parse(code).ok_or_else(|| {
                        let known: Vec<&str> = Requester::ALL.iter().map(|r| r.code()).collect();
                        Error::Invalid(format!(
                            "{location}: requester type '{code}' is not one of {}",
                            known.join(", ")
                        ))
                    })?);
                }
                "delivery" => {
                    let code = text("valueCode")?;
                    delivery = Delivery::parse(code).ok_or_else(|| {
                        Error::Invalid(format!("{location}: delivery '{code}' is not fhir, html or paper"))
                    })?;
                }
                "scope-start" | "scope-end" => {
                    let date = text("valueDate")?;
                    if date.len() != 10 || fhir::DateTime::parse(date, fhir::DateTimeKind::Date).is_err() {
                        return Err(Error::Invalid(format!(
                            "{location}: '{date}' is not a date (YYYY-MM-DD)"
                        )));
                    }
                    if name == "scope-start" {
                        scope.from = Some(date.to_string());
                    } else {
                        scope.to = Some(date.to_string());
                    }
                }
                "record-type" => {
                    let code = text("valueCode")?;
                    if code != "Patient"
                        && !fhir::definitions().compartment("Patient").is_some_and(|c| c.contains_key(code))
                    {
                        return Err(Error::Invalid(format!(
                            "{location}: '{code}' is not a resource type of a patient's record"
                        )));
                    }
                    scope.types.push(code.to_string());
                }
                "authorization" => {
                    let reference = entry["valueReference"]["reference"].as_str();
                    authorization = Some(
                        referenced_id(reference, "Consent")
                            .ok_or_else(|| {
                                Error::Invalid(format!("{location}: the authorization is a Consent/[id]"))
                            })?
                            .to_string(),
                    );
                }
                "legal-order" => {
                    let reference = entry["valueReference"]["reference"].as_str();
                    legal_order = Some(
                        referenced_id(reference, "DocumentReference")
                            .ok_or_else(|| {
                                Error::Invalid(format!(
                                    "{location}: the court's order is a DocumentReference/[id] holding it"
                                ))
                            })?
                            .to_string(),
                    );
                }
                "extension-reason" => extension_reason = Some(text("valueString")?.to_string()),
                "extension-given" => extension_at = Some(millis(text("valueDateTime")?, &location)?),
                other => return Err(Error::Invalid(format!("{location}: unknown input '{other}'"))),
            }
        }
        if let (Some(from), Some(to)) = (&scope.from, &scope.to)
            && from > to
        {
            return Err(Error::Invalid(format!(
                "Task.input: the scope starts ({from}) after it ends ({to})"
            )));
        }
        let requester = requester
            .ok_or_else(|| Error::Invalid("Task.input: requester-type (who asks) is required".into()))?;
        // Whether an authorization is needed turns on who asks: a patient asks for their own
        // record, a personal representative is a RelatedPerson on record.
        let reference = requester_name["reference"].as_str();
        match requester {
            Requester::Patient if reference.is_some_and(|r| r != format!("Patient/{patient}")) => {
                return Err(Error::Invalid(format!(
                    "Task.requester: a patient's own request comes from Patient/{patient}, not {}",
                    reference.unwrap_or("")
                )));
            }
            Requester::PersonalRepresentative if referenced_id(reference, "RelatedPerson").is_none() => {
                return Err(Error::Invalid(
                    "Task.requester: a personal representative is named by their RelatedPerson (RelatedPerson/[id])".into(),
                ));
            }
            _ => {}
        }
        if requester == Requester::Court && legal_order.is_none() {
            return Err(Error::Invalid(
                "Task.input: a court's request is made under its order: name it as the input legal-order (a DocumentReference)".into(),
            ));
        }
        let extension = match (extension_reason, extension_at) {
            // The law's one extension is given within the first 30 days: a Task saying
            // otherwise was not written by these rules.
            (Some(_), Some(given_at)) if given_at > received + DAYS_TO_ACT * DAY => {
                return Err(Error::Invalid(
                    "Task.input: the extension was given after the first 30 days, which the law does not allow".into(),
                ));
            }
            (Some(reason), Some(given_at)) => Some(Extension { reason, given_at }),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "Task.input: an extension needs both its reason and when it was given".into(),
                ));
            }
        };
        Ok(Request {
            id: task["id"].as_str().unwrap_or("").to_string(),
            patient: patient.to_string(),
            requester,
            requester_name,
            purpose,
            scope,
            delivery,
            received,
            authorization,
            legal_order,
            extension,
            status: task["status"].as_str().unwrap_or("requested").to_string(),
        })
    }

    /// The request as its Task.
    pub fn to_task(&self) -> Json {
        let mut inputs = vec![
            input("requester-type", json!({ "valueCode": self.requester.code() })),
            input("delivery", json!({ "valueCode": self.delivery.code() })),
        ];
        if let Some(from) = &self.scope.from {
            inputs.push(input("scope-start", json!({ "valueDate": from })));
        }
        if let Some(to) = &self.scope.to {
            inputs.push(input("scope-end", json!({ "valueDate": to })));
        }
        for resource_type in &self.scope.types {
            inputs.push(input("record-type", json!({ "valueCode": resource_type })));
        }
        if let Some(consent) = &self.authorization {
            inputs.push(input(
                "authorization",
                json!({ "valueReference": { "reference": format!("Consent/{consent}") } }),
            ));
        }
        if let Some(order) = &self.legal_order {
            inputs.push(input(
                "legal-order",
                json!({ "valueReference": { "reference": format!("DocumentReference/{order}") } }),
            ));
        }
        if let Some(extension) = &self.extension {
            inputs.push(input("extension-reason", json!({ "valueString": extension.reason })));
            inputs.push(input("extension-given", json!({ "valueDateTime": date_time(extension.given_at) })));
        }
        let mut task = json!({
            "resourceType": "Task",
            "status": self.status,
            "intent": "order",
            "code": { "coding": [{ "system": WORKFLOW_SYSTEM, "code": ROI_CODE, "display": "Release of information" }] },
            "for": { "reference": format!("Patient/{}", self.patient) },
            "authoredOn": date_time(self.received),
            "requester": self.requester_name,
            "reasonCode": { "coding": [{ "system": REASON_SYSTEM, "code": self.purpose }] },
            "restriction": { "period": { "end": date_time(self.due()) } },
            "input": inputs,
        });
        if !self.id.is_empty() {
            task["id"] = json!(self.id);
        }
        task
    }

    /// Whether the disclosure needs the patient's authorization (164.508): not for the
    /// patient's own access or their personal representative's (164.524), a provider's
    /// treatment or an insurer's payment (164.506), a public health authority's public health
    /// purpose (164.512(b)), or a court's order (164.512(e)(1)(i)). The last two are still in
    /// the patient's accounting of disclosures (164.528), as every release is.
    pub fn needs_authorization(&self) -> bool {
        !matches!(
            (self.requester, self.purpose.as_str()),
            (Requester::Patient | Requester::PersonalRepresentative, _)
                | (Requester::Provider, "TREAT")
                | (Requester::Insurer, "HPAYMT")
                | (Requester::PublicHealth, "PUBHLTH")
                | (Requester::Court, "HLEGAL")
        )
    }

    /// When the request must be acted on: 30 days after receipt, 60 with the extension.
    pub fn due(&self) -> i64 {
        let days = DAYS_TO_ACT + if self.extension.is_some() { EXTENSION_DAYS } else { 0 };
        self.received + days * DAY
    }

    /// Whether it is still open.
    pub fn open(&self) -> bool {
        matches!(
            self.status.as_str(),
            "requested" | "received" | "accepted" | "ready" | "in-progress" | "on-hold"
        )
    }

    /// Whether it is open past its due time.
    pub fn overdue(&self, now: i64) -> bool {
        self.open() && now > self.due()
    }

    /// Takes the one extension: with a written reason, told to the requester before the first
    /// 30 days run out.
    pub fn extend(&mut self, reason: &str, now: i64) -> Result<()> {
        if !self.open() {
            return Err(Error::Refused(format!(
                "the request is {}: there is nothing to extend",
                self.status
            )));
        }
        if self.extension.is_some() {
            return Err(Error::Refused(
                "the request was extended once already; the law allows one extension".into(),
            ));
        }
        if reason.trim().is_empty() {
            return Err(Error::Invalid(
                "an extension needs its reason, in writing, for the requester".into(),
            ));
        }
        if now > self.received + DAYS_TO_ACT * DAY {
            return Err(Error::Refused(format!(
                "the first {DAYS_TO_ACT} days ended on {}: an extension must be given before then",
                date_time(self.received + DAYS_TO_ACT * DAY)
            )));
        }
        self.extension = Some(Extension { reason: reason.trim().to_string(), given_at: now });
        Ok(())
    }
}

/// The open requests past their due time, oldest due first.
pub fn overdue(store: &dyn store::Store, now: i64) -> Result<Vec<Request>> {
    let mut found = Vec::new();
    store.scan_type("Task", None, &mut |_, _, body| {
        let Ok(task) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        if let Ok(request) = Request::from_task(&task)
            && request.overdue(now)
        {
            found.push(request);
        }
        Ok(())
    })?;
    found.sort_by(|a, b| (a.due(), &a.id).cmp(&(b.due(), &b.id)));
    Ok(found)
}
