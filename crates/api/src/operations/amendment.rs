//! Amendments (`workflow::amendment`, 45 CFR 164.526) as operations on Task:
//! - `Task/$amend-request`: intake; the Patient and the resource to amend must be on record,
//!   the resource the patient's own. Stored with its 60-day due date.
//! - `Task/[id]/$amend-extend`: the one 30-day extension, with its written reason.
//! - `Task/[id]/$amend-decide`: `accept` with the amended resource (stored as a new version
//!   over the one read, with a Provenance linking both versions and the request; the answer
//!   lists who must be told), or `deny` with the ground and an explanation (the denial letter
//!   stored with the record).
//! - `Task/[id]/$amend-disagree`: the patient's statement of disagreement, kept with the
//!   record; later releases of the disputed resource carry it and the letter.

use fhir::IssueType;
use serde_json::{Value as Json, json};
use store::{Precondition, WriteOp, WriteUnit};
use workflow::amendment::{self, Amendment, Denial};

use super::Level;
use super::registry::{Call, Change};
use super::roi::{body_of, invalid, task_given, written_task};
use crate::access::{Gate, ViewedStore};
use crate::write::{new_id, prepare};
use crate::{Api, ApiError};

fn refused(message: String) -> ApiError {
    ApiError::new(422, IssueType::BusinessRule, message)
}

impl Api {
    fn amendment_task(
        &self,
        gate: &Gate,
        level: &Level<'_>,
    ) -> Result<(store::VersionRecord, Amendment), ApiError> {
        let (record, task) = self.stored_task(gate, level)?;
        let request = Amendment::from_task(&task).map_err(invalid)?;
        gate.touch(&request.patient);
        Ok((record, request))
    }

    /// The stored focus of a request: (its version record, its body).
    fn amendment_focus(
        &self,
        gate: &Gate,
        request: &Amendment,
    ) -> Result<(store::VersionRecord, Json), ApiError> {
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let (kind, id) = request.focus.split_once('/').unwrap_or(("", ""));
        let record = store::Store::read(&viewed, kind, id)?
            .filter(|r| !r.is_deleted())
            .ok_or_else(|| refused(format!("{} is not on record", request.focus)))?;
        let body = body_of(&record)?;
        let own = if kind == "Patient" {
            id == request.patient
        } else {
            fhir::patient_reference(&body) == Some(format!("Patient/{}", request.patient).as_str())
        };
        if !own {
            return Err(refused(format!(
                "{} is not part of Patient/{}'s record",
                request.focus, request.patient
            )));
        }
        Ok((record, body))
    }

    /// `Task/$amend-request`.
    pub(crate) fn amend_request(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let task = task_given(call, "amend-request")?;
        let mut request = Amendment::from_task(&task).map_err(invalid)?;
        if request.received > self.now() + workflow::DAY {
            return Err(ApiError::bad_request(
                IssueType::Value,
                "Task.authoredOn: a request cannot be received in the future",
            ));
        }
        call.gate.touch(&request.patient);
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        if store::Store::read(&viewed, "Patient", &request.patient)?.filter(|r| !r.is_deleted()).is_none() {
            return Err(refused(format!("Patient/{} is not on record", request.patient)));
        }
        self.amendment_focus(call.gate, &request)?;
        request.id = new_id();
        request.status = "requested".into();
        request.extension = None;
        let id = request.id.clone();
        self.created_task(request.to_task(), id)
    }

    /// `Task/[id]/$amend-extend`.
    pub(crate) fn amend_extend(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let (record, mut request) = self.amendment_task(call.gate, &call.level)?;
        request.extend(call.inputs.get("reason").unwrap_or(""), self.now()).map_err(invalid)?;
        let mut task = body_of(&record)?;
        let rebuilt = request.to_task();
        for key in ["input", "restriction"] {
            task[key] = rebuilt[key].clone();
        }
        let unit = self.workflow_write(task, Some(record.version))?;
        let id = request.id.clone();
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 200)),
        })
    }

    /// `Task/[id]/$amend-decide`.
    pub(crate) fn amend_decide(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let (record, request) = self.amendment_task(call.gate, &call.level)?;
        if !request.open() {
            return Err(refused(format!(
                "Task/{} is {}: it was decided already",
                request.id, request.status
            )));
        }
        let now = self.now();
        let who = call.gate.user().unwrap_or("the HIM department").to_string();
        let mut task = body_of(&record)?;
        task["lastModified"] = json!(workflow::date_time(now));
        let mut ops = Vec::new();
        let outputs: Vec<Json>;
        match call.inputs.get("decision") {
            Some("accept") => {
                let amended = call.inputs.resource("resource").cloned().ok_or_else(|| {
                    ApiError::bad_request(
                        IssueType::Required,
                        "resource: an accepted amendment needs the amended resource",
                    )
                })?;
                let (focus_record, _) = self.amendment_focus(call.gate, &request)?;
                let named = format!(
                    "{}/{}",
                    amended["resourceType"].as_str().unwrap_or(""),
                    amended["id"].as_str().unwrap_or("")
                );
                if named != request.focus {
                    return Err(refused(format!(
                        "resource: the amendment is of {}, not {named}",
                        request.focus
                    )));
                }
                // Still the patient's, and about no one else.
                let own = format!("Patient/{}", request.patient);
                let still_theirs = amended["resourceType"] == "Patient"
                    || fhir::patient_reference(&amended) == Some(own.as_str());
                if !still_theirs || fhir::patients_mentioned(&amended).iter().any(|p| *p != request.patient) {
                    return Err(refused(format!(
                        "resource: an amendment of {} stays in {own}'s record and names no other patient",
                        request.focus
                    )));
                }
                // Over the version the amendment was made from, when it says which.
                let based_on = amended["meta"]["versionId"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(focus_record.version);
                let resource = fhir::Resource::from_value(amended)?;
                crate::write::check_not_workflow(resource.resource_type(), resource.as_json())?;
                ops.push(WriteOp::Update {
                    resource: prepare(&resource, self.config.validation)?,
                    if_match: Some(Precondition::Versions(vec![based_on])),
                });
                let mut provenance = amendment::provenance(&request, focus_record.version, &who, now);
                provenance["id"] = json!(new_id());
                ops.push(WriteOp::Create(prepare(
                    &fhir::Resource::from_value(provenance)?,
                    self.config.validation,
                )?));
                let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
                // Everyone who may have received the wrong information: since the resource was
                // first written.
                let (kind, id) = request.focus.split_once('/').unwrap_or(("", ""));
                let first_written = store::Store::vread(&viewed, kind, id, 1)?.map_or(0, |v| v.last_updated);
                let notify = amendment::recipients(&viewed, &request, first_written).map_err(invalid)?;
                task["status"] = json!("completed");
                task["businessStatus"] = json!({ "text": "accepted" });
                let mut list = vec![
                    json!({ "type": { "text": "amended" }, "valueReference": { "reference": format!("{}/_history/{}", request.focus, focus_record.version + 1) } }),
                ];
                list.extend(notify.iter().map(|n| json!({ "type": { "text": "notify" }, "valueString": n })));
                let mut notice = amendment::acceptance_notice(&request, &notify, &who, now);
                let notice_id = new_id();
                notice["id"] = json!(notice_id);
                ops.push(WriteOp::Create(prepare(
                    &fhir::Resource::from_value(notice)?,
                    self.config.validation,
                )?));
                list.push(json!({ "type": { "text": "acceptance-notice" }, "valueReference": { "reference": format!("DocumentReference/{notice_id}") } }));
                outputs = list;
            }
            Some("deny") => {
                let basis = call.inputs.get("basis").and_then(Denial::parse).ok_or_else(|| {
                    let known: Vec<&str> = Denial::ALL.iter().map(|d| d.code()).collect();
                    ApiError::bad_request(
                        IssueType::Value,
                        format!(
                            "basis: a denial is on one of the grounds of 164.526(a)(2): {}",
                            known.join(", ")
                        ),
                    )
                })?;
                let mut letter = amendment::denial_letter(
                    &request,
                    basis,
                    call.inputs.get("explanation").unwrap_or(""),
                    &who,
                    call.inputs.get("contact").unwrap_or(amendment::DEFAULT_CONTACT),
                    now,
                );
                let letter_id = new_id();
                letter["id"] = json!(letter_id);
                ops.push(WriteOp::Create(prepare(
                    &fhir::Resource::from_value(letter)?,
                    self.config.validation,
                )?));
                task["status"] = json!("rejected");
                task["businessStatus"] = json!({ "text": "denied" });
                task["statusReason"] = json!({ "coding": [{ "system": amendment::INPUT_SYSTEM, "code": basis.code() }], "text": basis.words() });
                outputs = vec![
                    json!({ "type": { "text": "denial-letter" }, "valueReference": { "reference": format!("DocumentReference/{letter_id}") } }),
                ];
            }
            _ => return Err(ApiError::bad_request(IssueType::Required, "decision: accept or deny")),
        }
        task["output"] = json!(outputs);
        ops.push(WriteOp::Update {
            resource: prepare(&fhir::Resource::from_value(task)?, self.config.validation)?,
            if_match: Some(Precondition::Versions(vec![record.version])),
        });
        let id = request.id.clone();
        Ok(Change {
            unit: Some(WriteUnit { ops }),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 200)),
        })
    }

    /// `Task/$amend-overdue`: the open requests past their due date, oldest due first.
    pub(crate) fn amend_overdue(&self, call: &Call<'_>) -> Result<crate::Response, ApiError> {
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let late = amendment::overdue(&viewed, self.now()).map_err(invalid)?;
        let entries: Vec<Json> = late
            .iter()
            .map(|request| {
                call.gate.touch(&request.patient);
                json!({ "fullUrl": format!("Task/{}", request.id), "resource": request.to_task() })
            })
            .collect();
        Ok(super::json_response(&json!({ "resourceType": "Bundle", "type": "collection", "entry": entries })))
    }

    /// `Task/[id]/$amend-disagree`.
    pub(crate) fn amend_disagree(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let (record, request) = self.amendment_task(call.gate, &call.level)?;
        if request.status != "rejected" {
            return Err(refused(format!(
                "Task/{}: a statement of disagreement answers a denial; this request is {}",
                request.id, request.status
            )));
        }
        let now = self.now();
        let mut statement = amendment::statement(&request, call.inputs.get("statement").unwrap_or(""), now)
            .map_err(invalid)?;
        let statement_id = new_id();
        statement["id"] = json!(statement_id);
        let mut task = body_of(&record)?;
        task["lastModified"] = json!(workflow::date_time(now));
        if let Some(outputs) = task["output"].as_array_mut() {
            outputs.push(json!({ "type": { "text": "statement-of-disagreement" }, "valueReference": { "reference": format!("DocumentReference/{statement_id}") } }));
        }
        let ops = vec![
            WriteOp::Create(prepare(&fhir::Resource::from_value(statement)?, self.config.validation)?),
            WriteOp::Update {
                resource: prepare(&fhir::Resource::from_value(task)?, self.config.validation)?,
                if_match: Some(Precondition::Versions(vec![record.version])),
            },
        ];
        let id = request.id.clone();
        Ok(Change {
            unit: Some(WriteUnit { ops }),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 200)),
        })
    }
}
