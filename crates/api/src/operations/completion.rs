//! Record completion (`workflow::completion`) as operations on Task:
//! - `Task/$completion-scan`: runs the deficiency rules now; opens a Task (owned by the
//!   clinician who owes the document) for each new deficiency and completes the Tasks whose
//!   document has arrived, in one transaction.
//! - `Task/$completion-report`: the delinquency report per clinician, the chart completion rate
//!   and the delinquency rate, with the open deficiencies oldest first.
//!
//! Both are for the record's stewards and read the whole record: what is owed does not depend
//! on who asks, and the answers name records and clinicians, never their content.

use serde_json::json;
use store::{Precondition, WriteOp, WriteOutcome, WriteUnit};
use workflow::completion::{self, Policy};

use super::json_response;
use super::registry::{Call, Change};
use crate::write::prepare;
use crate::{Api, ApiError, Response};

fn workflow_error(error: workflow::Error) -> ApiError {
    match error {
        workflow::Error::Store(error) => ApiError::from(error),
        other => ApiError::bad_request(fhir::IssueType::Invalid, other.to_string()),
    }
}

impl Api {
    /// `Task/$completion-scan`.
    pub(crate) fn completion_scan(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        // The rules read the whole record, whoever runs them, so the Tasks do not depend on
        // the runner's view; each Task carries the labels of what it is about, and the answer
        // is counts.
        let now = self.now();
        let sync = completion::sync(self.store.as_ref(), &Policy::default(), now).map_err(workflow_error)?;
        let mut ops = Vec::new();
        for task in &sync.open {
            let prepared = prepare(&fhir::Resource::from_value(task.clone())?, self.config.validation)?;
            ops.push(WriteOp::Update { resource: prepared, if_match: None });
        }
        for (version, task) in sync.close.iter().chain(&sync.reassign) {
            let prepared = prepare(&fhir::Resource::from_value(task.clone())?, self.config.validation)?;
            ops.push(WriteOp::Update {
                resource: prepared,
                if_match: Some(Precondition::Versions(vec![*version])),
            });
        }
        for d in &sync.deficiencies {
            call.gate.touch(&d.patient);
        }
        for (_, task) in sync.close.iter().chain(&sync.reassign) {
            if let Some(patient) = task["for"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/"))
            {
                call.gate.touch(patient);
            }
        }
        let (opened, closed, open) = (sync.open.len(), sync.close.len(), sync.deficiencies.len());
        Ok(Change {
            unit: (!ops.is_empty()).then_some(WriteUnit { ops }),
            answer: Box::new(move |_, gate, written| {
                for w in &written {
                    if let WriteOutcome::Stored { version, .. } = &w.outcome {
                        gate.wrote(format!("{}/{}/_history/{version}", w.resource_type, w.id));
                    }
                }
                Ok(json_response(&json!({
                    "resourceType": "Parameters",
                    "parameter": [
                        { "name": "asOf", "valueDateTime": workflow::date_time(now) },
                        { "name": "opened", "valueInteger": opened },
                        { "name": "closed", "valueInteger": closed },
                        { "name": "open", "valueInteger": open },
                    ],
                })))
            }),
        })
    }

    /// `Task/$completion-report`.
    pub(crate) fn completion_report(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        let now = match call.inputs.get("asOf") {
            Some(text) => workflow::instant_after(text).ok_or_else(|| {
                ApiError::bad_request(
                    fhir::IssueType::Value,
                    format!("asOf: '{text}' is not a date or dateTime"),
                )
            })?,
            None => self.now(),
        };
        let period = call.inputs.whole_number("periodDays")?.unwrap_or(90).clamp(1, 3660) as i64;
        let count = call.inputs.whole_number("_count")?.unwrap_or(100).min(10_000);
        // The rules read the whole record, whoever asks (the registry lets only the record's
        // stewards here); the report names records and clinicians, never content.
        let report = completion::report(self.store.as_ref(), &Policy::default(), now, period)
            .map_err(workflow_error)?;
        for d in report.listed(count) {
            call.gate.touch(&d.patient);
        }
        Ok(json_response(&report.to_parameters(count)))
    }
}
