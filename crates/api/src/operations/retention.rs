//! Retention and legal hold (`workflow::retention`, enforced by the store's `hold`):
//! - `Task/$hold-place`: a legal hold (a Task with code legal-hold naming a patient, an
//!   encounter or dates, and the matter), placed now; from then the store refuses every change
//!   to what it covers, by any path.
//! - `Task/[id]/$hold-release`: the hold lifted, with the reason.
//! - `$retention-report`: what a purge now would destroy under a schedule, patient by patient,
//!   and what is kept under hold.
//! - `$retention-purge`: the purge: every resource past retention and under no hold destroyed
//!   (all versions), with the certificate of destruction written in the same transaction. The
//!   audit trail keeps its entries.

use fhir::IssueType;
use serde_json::{Value as Json, json};
use store::{Precondition, WriteOp, WriteUnit};
use workflow::retention::{self, Plan, Schedule};

use super::json_response;
use super::registry::{Call, Change};
use super::roi::{body_of, invalid, task_given, written_task};
use crate::access::ViewedStore;
use crate::write::{new_id, prepare};
use crate::{Api, ApiError, Response};

impl Api {
    /// The schedule a call names: `schedule` (a built-in: default, CA, NY, TX) or
    /// `scheduleDefinition` (JSON).
    fn schedule(call: &Call<'_>) -> Result<Schedule, ApiError> {
        if let Some(text) = call.inputs.get("scheduleDefinition") {
            let json: Json = serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request(IssueType::Invalid, format!("scheduleDefinition: not JSON ({e})"))
            })?;
            return Schedule::from_json(&json).map_err(invalid);
        }
        let name = call.inputs.get("schedule").unwrap_or("default");
        Schedule::builtin(name).ok_or_else(|| {
            ApiError::bad_request(
                IssueType::Value,
                format!("schedule: '{name}' is not a built-in schedule (default, CA, NY, TX); give scheduleDefinition"),
            )
        })
    }

    fn retention_plan(&self, call: &Call<'_>) -> Result<Plan, ApiError> {
        // The registry lets only the record's stewards here; the answer names records, never
        // their content.
        let schedule = Self::schedule(call)?;
        // The plan reads the whole record: what is destroyed cannot depend on who looks.
        let plan = retention::plan(self.store.as_ref(), &schedule, self.now()).map_err(invalid)?;
        for expired in &plan.expired {
            call.gate.touch(&expired.patient);
        }
        Ok(plan)
    }

    /// `$retention-report`.
    pub(crate) fn retention_report(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        let plan = self.retention_plan(call)?;
        let count = call.inputs.whole_number("_count")?.unwrap_or(100).min(10_000);
        Ok(json_response(&plan_parameters(&plan, count)))
    }

    /// `$retention-purge`.
    pub(crate) fn retention_purge(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let plan = self.retention_plan(call)?;
        let now = self.now();
        let who = call.gate.user().unwrap_or("the HIM department").to_string();
        let mut ops: Vec<WriteOp> = plan
            .expired
            .iter()
            .flat_map(|e| e.purge.iter().zip(&e.versions))
            .map(|((resource_type, id), version)| WriteOp::Purge {
                resource_type: resource_type.clone(),
                id: id.clone(),
                if_match: Some(Precondition::Versions(vec![*version])),
            })
            .collect();
        if ops.is_empty() {
            // Nothing past retention: nothing destroyed, no certificate.
            let answer = plan_parameters(&plan, 0);
            return Ok(Change { unit: None, answer: Box::new(move |_, _, _| Ok(json_response(&answer))) });
        }
        let mut certificate = retention::certificate(&plan, &who, now);
        let certificate_id = new_id();
        certificate["id"] = json!(certificate_id);
        ops.push(WriteOp::Create(prepare(
            &fhir::Resource::from_value(certificate)?,
            self.config.validation,
        )?));
        let mut answer = plan_parameters(&plan, 0);
        if let Some(list) = answer["parameter"].as_array_mut() {
            list.push(json!({ "name": "certificate", "valueReference": { "reference": format!("DocumentReference/{certificate_id}") } }));
        }
        Ok(Change {
            unit: Some(WriteUnit { ops }),
            answer: Box::new(move |_, gate, written| {
                for w in &written {
                    if let store::WriteOutcome::Stored { version, .. } = &w.outcome {
                        gate.wrote(format!("{}/{}/_history/{version}", w.resource_type, w.id));
                    }
                }
                Ok(json_response(&answer))
            }),
        })
    }

    /// `Task/$hold-place`.
    pub(crate) fn hold_place(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let mut task = task_given(call, "hold-place")?;
        retention::hold_task(&task).map_err(invalid)?;
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        if let Some(patient) = task["for"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")) {
            if store::Store::read(&viewed, "Patient", patient)?.filter(|r| !r.is_deleted()).is_none() {
                return Err(ApiError::new(
                    422,
                    IssueType::NotFound,
                    format!("Patient/{patient} is not on record"),
                ));
            }
            call.gate.touch(patient);
        }
        if let Some(encounter) =
            task["focus"]["reference"].as_str().and_then(|r| r.strip_prefix("Encounter/")).map(str::to_string)
        {
            let record = store::Store::read(&viewed, "Encounter", &encounter)?
                .filter(|r| !r.is_deleted())
                .ok_or_else(|| {
                    ApiError::new(422, IssueType::NotFound, format!("Encounter/{encounter} is not on record"))
                })?;
            // An encounter's hold is on its patient's record: named, so the Patient is kept and
            // the audit names them.
            let body = body_of(&record)?;
            let Some(patient) = store::hold::subject_patient(&body).map(str::to_string) else {
                return Err(ApiError::new(
                    422,
                    IssueType::BusinessRule,
                    format!("Encounter/{encounter} names no patient"),
                ));
            };
            match task["for"]["reference"].as_str() {
                Some(named) if fhir::patient_id_of_reference(named) != Some(patient.as_str()) => {
                    return Err(ApiError::new(
                        422,
                        IssueType::BusinessRule,
                        format!("Task.for: Encounter/{encounter} is Patient/{patient}'s, not {named}'s"),
                    ));
                }
                _ => task["for"] = json!({ "reference": format!("Patient/{patient}") }),
            }
            call.gate.touch(&patient);
        }
        let id = new_id();
        let now = workflow::date_time(self.now());
        task["id"] = json!(id);
        task["status"] = json!("in-progress");
        task["intent"] = json!("order");
        if task["authoredOn"].is_null() {
            task["authoredOn"] = json!(now);
        }
        task["executionPeriod"] = json!({ "start": now });
        self.created_task(task, id)
    }

    /// `Task/[id]/$hold-release`.
    pub(crate) fn hold_release(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let super::Level::Instance("Task", id) = call.level else {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "$hold-release runs on a hold: Task/[id]/$hold-release",
            ));
        };
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let record = store::Store::read(&viewed, "Task", id)?
            .filter(|r| !r.is_deleted())
            .ok_or_else(|| ApiError::not_found(format!("Task/{id} is not known")))?;
        let mut task = body_of(&record)?;
        if !store::hold::is_hold_task(&task) || task["status"] != "in-progress" {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Task/{id} is not a legal hold in force"),
            ));
        }
        let reason = call.inputs.get("reason").map(str::trim).filter(|r| !r.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                IssueType::Required,
                "reason: why the hold is lifted (the matter closed, counsel's release)",
            )
        })?;
        if let Some(patient) = task["for"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")) {
            call.gate.touch(patient);
        }
        let now = workflow::date_time(self.now());
        task["status"] = json!("completed");
        task["statusReason"] = json!({ "text": reason });
        task["lastModified"] = json!(now);
        if !task["executionPeriod"].is_object() {
            task["executionPeriod"] = json!({});
        }
        task["executionPeriod"]["end"] = json!(now);
        let unit = WriteUnit {
            ops: vec![WriteOp::Update {
                resource: prepare(&fhir::Resource::from_value(task)?, self.config.validation)?,
                if_match: Some(Precondition::Versions(vec![record.version])),
            }],
        };
        let id = id.to_string();
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| written_task(gate, &written, &id, 200)),
        })
    }
}

/// A purge plan as a Parameters: the schedule, the counts, and up to `count` patients with
/// their rule, the date retention ended, and what is destroyed and kept.
fn plan_parameters(plan: &Plan, count: usize) -> Json {
    let mut parameter = vec![
        json!({ "name": "asOf", "valueDateTime": workflow::date_time(plan.as_of) }),
        json!({ "name": "schedule", "valueString": plan.schedule.name }),
        json!({ "name": "patients", "valueInteger": plan.expired.len() }),
        json!({ "name": "resources", "valueInteger": plan.resources() }),
        json!({ "name": "held", "valueInteger": plan.held() }),
    ];
    for expired in plan.expired.iter().take(count) {
        let mut part = vec![
            json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{}", expired.patient) } }),
            json!({ "name": "rule", "valueString": expired.rule }),
            json!({ "name": "retentionEnded", "valueDate": &workflow::date_time(expired.retention_end)[..10] }),
            json!({ "name": "destroyed", "valueInteger": expired.purge.len() }),
        ];
        for (resource_type, id, hold) in &expired.held {
            part.push(json!({ "name": "kept", "part": [
                { "name": "resource", "valueReference": { "reference": format!("{resource_type}/{id}") } },
                { "name": "hold", "valueReference": { "reference": format!("Task/{hold}") } } ] }));
        }
        parameter.push(json!({ "name": "expired", "part": part }));
    }
    json!({ "resourceType": "Parameters", "parameter": parameter })
}
