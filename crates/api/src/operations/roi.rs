//! Release of information (`workflow::roi`) as operations on Task:
//! - `Task/$roi-request`: intake. The Task is checked (who, for whom, why, scope, delivery),
//!   the Patient must be on record, and when the disclosure needs the patient's authorization
//!   the named Consent must hold every core element of 164.508(c) (each one missing is an issue
//!   of the 422). Stored as a new Task with its due date.
//! - `Task/[id]/$roi-extend`: the one 30-day extension, with its written reason.
//! - `Task/[id]/$roi-release`: the Bundle of exactly the requested scope, read through the
//!   caller's view; the Task completed with the count, the fee and when; the disclosure named in
//!   the audit trail (recipient, purpose, authorization), so the accounting of disclosures
//!   (`$disclosures`) lists it.
//! - `$roi-overdue`: the open requests past their due date.

use fhir::{IssueType, OperationOutcome, Resource};
use serde_json::{Value as Json, json};
use store::{Precondition, VersionRecord, WriteOp, WriteOutcome, WriteUnit};
use workflow::roi::{self, Request};

use super::registry::{Call, Change};
use super::{Level, json_response};
use crate::access::{Gate, ViewedStore};
use crate::write::{new_id, prepare};
use crate::{Api, ApiError, Response};

pub(super) fn invalid(error: workflow::Error) -> ApiError {
    match error {
        workflow::Error::Invalid(message) => ApiError::bad_request(IssueType::Invalid, message),
        workflow::Error::Refused(message) => ApiError::new(422, IssueType::BusinessRule, message),
        workflow::Error::Store(error) => ApiError::from(error),
    }
}

pub(super) fn body_of(record: &VersionRecord) -> Result<Json, ApiError> {
    record
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .ok_or_else(|| ApiError::internal(format!("{}/{} does not read", record.resource_type, record.id)))
}

fn outcome_issue(message: String, expression: &str) -> fhir::Issue {
    let mut issue = fhir::Issue::new(fhir::Severity::Error, IssueType::BusinessRule, message);
    issue.expression = vec![expression.to_string()];
    issue
}

/// Who the requester is, in words, for the accounting of disclosures: their name as given,
/// never another patient's id.
fn requester_words(request: &Request) -> String {
    let reference = request.requester_name["reference"].as_str().unwrap_or("");
    let named = match request.requester_name["display"].as_str().map(str::trim).filter(|d| !d.is_empty()) {
        Some(display) => display.to_string(),
        None if reference == format!("Patient/{}", request.patient) => "the patient".to_string(),
        None if !reference.is_empty() && !reference.starts_with("Patient/") => reference.to_string(),
        None => "an unnamed requester".to_string(),
    };
    format!("{named} ({})", request.requester.code())
}

/// What a release held, in words: its record types and dates (164.528(b)(2)(iii)).
fn scope_words(request: &Request) -> String {
    let types = if request.scope.types.is_empty() {
        "the whole record".to_string()
    } else {
        request.scope.types.join(", ")
    };
    match (&request.scope.from, &request.scope.to) {
        (None, None) => types,
        (from, to) => format!(
            "{types}, {} to {}",
            from.as_deref().unwrap_or("the beginning"),
            to.as_deref().unwrap_or("the release")
        ),
    }
}

/// The stored Task with what the rules changed (status, inputs, due date, outputs), keeping
/// everything else it holds (meta and its labels, identifiers, notes, owner).
fn updated_task(stored: &Json, request: &Request) -> Json {
    let mut task = stored.clone();
    let rebuilt = request.to_task();
    for key in ["status", "input", "restriction"] {
        task[key] = rebuilt[key].clone();
    }
    task
}

impl Api {
    /// Now, by the workflows' clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The authorization a request names, checked at `now`: `Err` with every missing element.
    fn roi_authorized(&self, gate: &Gate, request: &Request, now: i64) -> Result<(), ApiError> {
        if !request.needs_authorization() {
            return Ok(());
        }
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let Some(consent_id) = &request.authorization else {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!(
                    "a disclosure to a{} {} for {} needs the patient's authorization (45 CFR 164.508): name the Consent as the input authorization",
                    if request.requester.code().starts_with(['a', 'e', 'i', 'o']) { "n" } else { "" },
                    request.requester.code(),
                    request.purpose
                ),
            ));
        };
        let consent = store::Store::read(&viewed, "Consent", consent_id)?
            .filter(|r| !r.is_deleted())
            .ok_or_else(|| {
                ApiError::new(
                    422,
                    IssueType::NotFound,
                    format!("the authorization Consent/{consent_id} is not on record"),
                )
            })?;
        let missing = roi::authorization::check(&body_of(&consent)?, request, now);
        if missing.is_empty() {
            return Ok(());
        }
        let mut outcome = OperationOutcome { issues: Vec::new() };
        for item in &missing {
            outcome
                .issues
                .push(outcome_issue(format!("Consent/{consent_id}: {}", item.message), item.location));
        }
        Err(ApiError { status: 422, outcome, etag: None })
    }

    /// The Task an instance operation (`Task/[id]/$...`) runs on, read through the caller's
    /// view: its stored version and its body.
    pub(super) fn stored_task(
        &self,
        gate: &Gate,
        level: &Level<'_>,
    ) -> Result<(VersionRecord, Json), ApiError> {
        let Level::Instance("Task", id) = *level else {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "this operation runs on a Task: Task/[id]/$...",
            ));
        };
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let record = store::Store::read(&viewed, "Task", id)?
            .filter(|r| !r.is_deleted())
            .ok_or_else(|| ApiError::not_found(format!("Task/{id} is not known")))?;
        let body = body_of(&record)?;
        Ok((record, body))
    }

    fn roi_task(&self, gate: &Gate, level: &Level<'_>) -> Result<(VersionRecord, Request), ApiError> {
        let (record, task) = self.stored_task(gate, level)?;
        let request = Request::from_task(&task).map_err(invalid)?;
        gate.touch(&request.patient);
        Ok((record, request))
    }

    /// A workflow's resource written: created, or updated from the version read.
    pub(super) fn workflow_write(&self, task: Json, if_match: Option<u64>) -> Result<WriteUnit, ApiError> {
        let prepared = prepare(&Resource::from_value(task)?, self.config.validation)?;
        let op = match if_match {
            Some(version) => {
                WriteOp::Update { resource: prepared, if_match: Some(Precondition::Versions(vec![version])) }
            }
            None => WriteOp::Create(prepared),
        };
        Ok(WriteUnit { ops: vec![op] })
    }

    /// A court's request: the order it names is on record and about this patient.
    fn roi_order_checked(&self, gate: &Gate, request: &Request) -> Result<(), ApiError> {
        let Some(order) = &request.legal_order else { return Ok(()) };
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let record = store::Store::read(&viewed, "DocumentReference", order)?
            .filter(|r| !r.is_deleted())
            .ok_or_else(|| {
                ApiError::new(
                    422,
                    IssueType::NotFound,
                    format!("the court's order DocumentReference/{order} is not on record"),
                )
            })?;
        let body = body_of(&record)?;
        let about = store::hold::subject_patient(&body);
        if about.is_some_and(|p| p != request.patient) {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("the court's order DocumentReference/{order} is about another patient"),
            ));
        }
        Ok(())
    }

    /// `Task/$roi-request`.
    pub(crate) fn roi_request(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let task = task_given(call, "roi-request")?;
        let mut request = Request::from_task(&task).map_err(invalid)?;
        let now = self.now();
        // A request cannot have been received later than now (a day's leeway for clocks).
        if request.received > now + workflow::DAY {
            return Err(ApiError::bad_request(
                IssueType::Value,
                "Task.authoredOn: a request cannot be received in the future",
            ));
        }
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let patient = store::Store::read(&viewed, "Patient", &request.patient)?.filter(|r| !r.is_deleted());
        if patient.is_none() {
            return Err(ApiError::new(
                422,
                IssueType::NotFound,
                format!("Patient/{} is not on record", request.patient),
            ));
        }
        call.gate.touch(&request.patient);
        // A personal representative is one on record for this patient.
        if request.requester == roi::Requester::PersonalRepresentative {
            let reference = request.requester_name["reference"].as_str().unwrap_or("");
            let id = reference.strip_prefix("RelatedPerson/").unwrap_or("");
            let related = store::Store::read(&viewed, "RelatedPerson", id)?
                .filter(|r| !r.is_deleted())
                .map(|r| body_of(&r))
                .transpose()?;
            let theirs = related.is_some_and(|r| {
                r["patient"]["reference"] == format!("Patient/{}", request.patient).as_str()
            });
            if !theirs {
                return Err(ApiError::new(
                    422,
                    IssueType::BusinessRule,
                    format!(
                        "{reference} is not on record as a person related to Patient/{}",
                        request.patient
                    ),
                ));
            }
        }
        self.roi_authorized(call.gate, &request, now)?;
        self.roi_order_checked(call.gate, &request)?;
        request.id = new_id();
        request.status = "requested".into();
        request.extension = None;
        let id = request.id.clone();
        self.created_task(request.to_task(), id)
    }

    /// `Task/[id]/$roi-extend`.
    pub(crate) fn roi_extend(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let (record, mut request) = self.roi_task(call.gate, &call.level)?;
        let reason = call.inputs.get("reason").unwrap_or("");
        request.extend(reason, self.now()).map_err(invalid)?;
        let unit = self.workflow_write(updated_task(&body_of(&record)?, &request), Some(record.version))?;
        let id = request.id.clone();
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 200)),
        })
    }

    /// `Task/[id]/$roi-release`.
    pub(crate) fn roi_release(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let (record, mut request) = self.roi_task(call.gate, &call.level)?;
        if !request.open() {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Task/{} is {}: it was released or closed already", request.id, request.status),
            ));
        }
        let now = self.now();
        // The answer: the Bundle, or its human-readable copy (`_format=html`, or asked as
        // text/html).
        let html = match call.inputs.get("_format") {
            Some("html" | "text/html") => true,
            Some(format) if !format.contains("json") => {
                return Err(ApiError::new(
                    406,
                    IssueType::NotSupported,
                    format!("_format={format}: a release is a FHIR Bundle (json) or its HTML copy (html)"),
                ));
            }
            Some(_) => false,
            None => call.request.accept.as_deref().is_some_and(|a| a.contains("text/html")),
        };
        self.roi_authorized(call.gate, &request, now)?;
        self.roi_order_checked(call.gate, &request)?;
        // Read as the recipient for the purpose: what the patient's directives withhold from
        // them is not released. The patient's own copy (asked by the patient, by reference) is
        // their whole record; a representative's is read as the RelatedPerson they are.
        let recipient = request.requester_name["reference"].as_str().map(str::to_string);
        let to_the_patient = request.requester == roi::Requester::Patient
            && recipient.as_deref() == Some(format!("Patient/{}", request.patient).as_str());
        let disclosure_gate = Gate::for_disclosure(
            self,
            call.gate.user().unwrap_or("the department"),
            recipient.clone(),
            &request.purpose,
            to_the_patient,
        )?;
        if recipient.is_none() && disclosure_gate.directives_name_actors(&request.patient) {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!(
                    "Patient/{}'s consent directives name who may not receive their records: name the requester by reference (Task.requester.reference) so they can be honoured",
                    request.patient
                ),
            ));
        }
        let viewed = ViewedStore { store: self.store.as_ref(), gate: &disclosure_gate };
        let mut bundle = roi::release::release(&viewed, &request, now).map_err(invalid)?;
        // What goes out is also what the steward running the release may see: a record their
        // own view withholds is never handed to them in a release. The patient's own copy is
        // whole or not given.
        if let Some(entries) = bundle["entry"].as_array_mut() {
            let mut withheld = 0;
            entries.retain(|entry| {
                let resource = &entry["resource"];
                let kind = resource["resourceType"].as_str().unwrap_or("");
                let shown = serde_json::to_vec(resource)
                    .is_ok_and(|body| call.gate.admit(kind, &body) == privacy::Sight::Shown);
                if !shown {
                    withheld += 1;
                }
                shown
            });
            if withheld > 0 && to_the_patient {
                return Err(ApiError::new(
                    403,
                    IssueType::Forbidden,
                    format!(
                        "{withheld} of the patient's records are withheld from your view: the patient's own copy is released whole, by an administrator"
                    ),
                ));
            }
        }
        let base = call.request.base.trim_end_matches('/').to_string();
        for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
            if let Some(relative) = entry["fullUrl"].as_str().map(str::to_string) {
                entry["fullUrl"] = json!(format!("{base}/{relative}"));
            }
        }
        let count = bundle["entry"].as_array().map_or(0, Vec::len) as u64;
        let pages = roi::fee::estimated_pages(count as usize);
        let fee = roi::fee::fee(&self.config.roi_fees, &request, pages);
        let disclosure = format!(
            "released {count} resources ({}) of Patient/{} to {} for {}{}{} (Task/{}; fee {fee:.2})",
            scope_words(&request),
            request.patient,
            requester_words(&request),
            request.purpose,
            request.authorization.as_ref().map(|c| format!(" under Consent/{c}")).unwrap_or_default(),
            request
                .legal_order
                .as_ref()
                .map(|o| format!(" under the court's order DocumentReference/{o}"))
                .unwrap_or_default(),
            request.id
        );
        request.status = "completed".into();
        let mut task = updated_task(&body_of(&record)?, &request);
        task["lastModified"] = json!(roi::date_time(now));
        task["output"] = json!([
            roi::input("released-resources", json!({ "valueInteger": count })),
            roi::input("fee", json!({ "valueMoney": { "value": fee, "currency": "USD" } })),
            // The disclosure as the accounting records it, kept with the request in the same
            // transaction: were the audit entry lost after the commit, the release is still
            // accounted for.
            roi::input("disclosure", json!({ "valueString": disclosure })),
        ]);
        let unit = self.workflow_write(task, Some(record.version))?;
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| {
                for w in &written {
                    if let WriteOutcome::Stored { version, .. } = &w.outcome {
                        gate.wrote(format!("{}/{}/_history/{version}", w.resource_type, w.id));
                    }
                }
                if html {
                    // The human-readable copy of the same release.
                    let page = web::roi::release_document(&bundle, &disclosure);
                    gate.disclosed(disclosure);
                    let mut response = Response::json(200, page.into_bytes());
                    response.content_type = Some("text/html; charset=utf-8");
                    return Ok(response);
                }
                gate.disclosed(disclosure);
                Ok(json_response(&bundle))
            }),
        })
    }

    /// `$roi-overdue`: the open requests past their due date, oldest due first.
    pub(crate) fn roi_overdue(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let now = self.now();
        let late = roi::overdue(&viewed, now).map_err(invalid)?;
        let entries: Vec<Json> = late
            .iter()
            .map(|request| {
                call.gate.touch(&request.patient);
                let mut task = request.to_task();
                task["id"] = json!(request.id);
                json!({ "fullUrl": format!("Task/{}", request.id), "resource": task })
            })
            .collect();
        Ok(json_response(&json!({
            "resourceType": "Bundle", "type": "collection", "entry": entries,
        })))
    }
}

/// The Task an intake operation (`$roi-request`, `$amend-request`, `$hold-place`) was given:
/// its parameter `resource`, or the body itself.
pub(super) fn task_given(call: &Call<'_>, operation: &str) -> Result<Json, ApiError> {
    call.inputs
        .resource("resource")
        .or(call.body.filter(|b| b["resourceType"] == "Task"))
        .cloned()
        .ok_or_else(|| {
            ApiError::bad_request(
                IssueType::Required,
                format!("${operation} needs a Task: the body, or the parameter resource"),
            )
        })
}

impl Api {
    /// A workflow's new Task written under `id`, answered 201 with it as stored.
    pub(super) fn created_task(&self, task: Json, id: String) -> Result<Change, ApiError> {
        let unit = self.workflow_write(task, None)?;
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 201)),
        })
    }
}

/// The Task a change wrote, as the answer.
pub(super) fn written_task(
    gate: &Gate,
    written: &[store::Written],
    id: &str,
    status: u16,
) -> Result<Response, ApiError> {
    for w in written {
        if let WriteOutcome::Stored { version, body, .. } = &w.outcome {
            gate.wrote(format!("{}/{}/_history/{version}", w.resource_type, w.id));
            if w.resource_type == "Task" && w.id == id {
                let mut response = Response::json(status, body.to_vec());
                response.location = Some(format!("Task/{id}/_history/{version}"));
                return Ok(response);
            }
        }
    }
    Err(ApiError::internal(format!("Task/{id} was not written")))
}
