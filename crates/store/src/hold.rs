//! Legal holds, as the store keeps them: a hold is a `Task` (code
//! `https://chartroom.dev/fhir/CodeSystem/him-workflow|legal-hold`) while it is `in-progress`,
//! on a patient (`for`), an encounter (`focus`), a date range (`restriction.period`), or a
//! patient's records within a date range. The writer refuses every change to a resource under
//! an active hold (an update, a delete, a purge, by any path: the API, a merge, an import), so
//! the rule holds whoever writes.
//!
//! What a hold covers ([`Hold::covers`]):
//! - on a patient: the Patient, and every resource whose own subject (`subject`, `patient`,
//!   `beneficiary`, [`subject_patient`]) is that patient;
//! - on an encounter (of a patient, `for`, which `$hold-place` fills in): the Encounter and
//!   every resource of that patient referring to it, and the Patient;
//! - with a date range: of those (or of every patient's resources, for a hold on dates alone),
//!   the ones whose clinical date overlaps it ([`clinical_dates`]; a resource without one by
//!   when it was last updated), so nothing of the period slips out for want of a date; the
//!   Patient with them when the hold names the patient.
//!
//! The department's workflow Tasks (requests, deficiencies, holds themselves) are never
//! covered: a hold keeps the clinical record, not the work on it.

use serde_json::Value as Json;

use crate::{WriteOutcome, Written};

/// Keeps a writer's active holds in step with a Task it has just written; whether they changed.
pub(crate) fn follow(holds: &mut Vec<Hold>, written: &Written) -> bool {
    let id = written.id.as_str();
    let was_hold = holds.iter().any(|h| h.id == id);
    let now_hold = match &written.outcome {
        WriteOutcome::Stored { body, .. } => {
            fhir::parse_json(body).ok().filter(is_hold_task).map(|json| Hold::from_task(&json))
        }
        WriteOutcome::Deleted { .. } | WriteOutcome::Purged { .. } => None,
        // Nothing was written (a conditional create that found it, a delete of nothing).
        _ => return false,
    };
    if !was_hold && now_hold.is_none() {
        return false;
    }
    holds.retain(|h| h.id != id);
    if let Some(Some(hold)) = now_hold {
        holds.push(hold);
    }
    true
}

pub const HOLD_SYSTEM: &str = "https://chartroom.dev/fhir/CodeSystem/him-workflow";
pub const HOLD_CODE: &str = "legal-hold";

/// One active legal hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The Task's id.
    pub id: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// First ms in the range, and first ms after it.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Whether a Task is a legal hold (active or not).
pub fn is_hold_task(json: &Json) -> bool {
    json["resourceType"] == "Task"
        && json["code"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["system"] == HOLD_SYSTEM && c["code"] == HOLD_CODE))
}

/// Whether a Task is one of the HIM department's workflows (a request, a deficiency, a hold):
/// its work records, which holds on the clinical record do not cover.
pub fn is_workflow_task(json: &Json) -> bool {
    json["resourceType"] == "Task"
        && json["code"]["coding"].as_array().is_some_and(|c| c.iter().any(|c| c["system"] == HOLD_SYSTEM))
}

/// The patient a resource is about by its own subject (`subject`, `patient`, `beneficiary`),
/// however the reference is written (relative, absolute, versioned).
pub fn subject_patient(json: &Json) -> Option<&str> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|name| json.get(*name)?.get("reference")?.as_str())
        .find_map(fhir::patient_id_of_reference)
}

fn bound(text: Option<&str>, upper: bool) -> Option<i64> {
    let parsed = fhir::DateTime::parse(text?, fhir::DateTimeKind::DateTime).ok()?;
    Some(if upper { parsed.upper_bound_millis() } else { parsed.lower_bound_millis() })
}

impl Hold {
    /// The active hold a stored Task body is, if it is one (a cheap byte test first: most
    /// Tasks are not holds).
    pub(crate) fn from_stored(body: &[u8]) -> Option<Hold> {
        if !body.windows(HOLD_CODE.len()).any(|w| w == HOLD_CODE.as_bytes()) {
            return None;
        }
        Hold::from_task(&fhir::parse_json(body).ok()?)
    }

    /// The active hold a Task is, if it is one (a hold Task that is not `in-progress` holds
    /// nothing).
    pub fn from_task(json: &Json) -> Option<Hold> {
        if !is_hold_task(json) || json["status"] != "in-progress" {
            return None;
        }
        let encounter = json["focus"]["reference"].as_str().and_then(|r| {
            // Relative or absolute, with or without a version.
            let at = r.rfind("Encounter/")?;
            let id = r[at + "Encounter/".len()..].split('/').next()?;
            (at == 0 || r[..at].ends_with('/')).then(|| id.to_string())
        });
        let period = &json["restriction"]["period"];
        Some(Hold {
            id: json["id"].as_str().unwrap_or("").to_string(),
            patient: json["for"]["reference"]
                .as_str()
                .and_then(fhir::patient_id_of_reference)
                .map(str::to_string),
            encounter,
            from: bound(period["start"].as_str(), false),
            to: bound(period["end"].as_str(), true),
        })
    }

    fn dated(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    /// Whether the hold covers this resource (its current content).
    pub fn covers(&self, resource_type: &str, json: &Json) -> bool {
        // Holds keep the clinical record: the department's workflow Tasks stay workable.
        if is_workflow_task(json) {
            return false;
        }
        let id = json["id"].as_str().unwrap_or("");
        let subject = subject_patient(json);
        match &self.patient {
            // The Patient is kept with whatever of theirs a hold keeps.
            Some(patient) if resource_type == "Patient" => return id == patient,
            Some(patient) if subject != Some(patient.as_str()) => return false,
            Some(_) => {}
            // A hold naming no patient keeps records, not Patients (the purge keeps a Patient
            // while any record of theirs is kept); a hold on dates alone keeps patients' records,
            // not the directory or the department's own records.
            None if resource_type == "Patient" => return false,
            None if subject.is_none() && self.encounter.is_none() => return false,
            None => {}
        }
        if let Some(encounter) = &self.encounter {
            let reference = format!("Encounter/{encounter}");
            let about = (resource_type == "Encounter" && id == encounter) || refers_to(json, &reference);
            if !about {
                return false;
            }
        }
        if self.dated() {
            let (low, high) = clinical_dates(resource_type, json)
                .or_else(|| {
                    let updated = bound(json["meta"]["lastUpdated"].as_str(), false)?;
                    Some((updated, updated + 1))
                })
                .unwrap_or((i64::MIN, i64::MAX));
            let (from, to) = (self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX));
            if !(high > from && low < to) {
                return false;
            }
        }
        true
    }
}

fn refers_to(value: &Json, target: &str) -> bool {
    match value {
        Json::Object(object) => object.iter().any(|(key, v)| {
            (key == "reference"
                && v.as_str().is_some_and(|r| r == target || r.ends_with(&format!("/{target}"))))
                || refers_to(v, target)
        }),
        Json::Array(items) => items.iter().any(|v| refers_to(v, target)),
        _ => false,
    }
}

/// The search parameters read, in order, for a resource's clinical date.
const DATE_PARAMETERS: &[&str] = &["date", "onset-date", "recorded-date", "authoredon", "created", "period"];

/// The clinical date of a resource: (first ms, first ms after), from its search-parameter
/// index rows: the first of its `date`, `onset-date`, `recorded-date`, `authoredon`, `created`,
/// `period` parameters that has a value.
pub fn clinical_dates(resource_type: &str, json: &Json) -> Option<(i64, i64)> {
    let params = fhir::search_parameters();
    let rows = crate::index::extract_json(resource_type, json).dates;
    DATE_PARAMETERS.iter().filter_map(|code| params.get(resource_type, code)).find_map(|applied| {
        let values: Vec<&(u32, i64, i64)> = rows.iter().filter(|(key, _, _)| *key == applied.key).collect();
        let low = values.iter().map(|(_, low, _)| *low).min()?;
        let high = values.iter().map(|(_, _, high)| *high).max()?;
        Some((low, high))
    })
}

/// The first active hold of `holds` covering the resource, if any.
pub fn held_by<'a>(holds: &'a [Hold], resource_type: &str, json: &Json) -> Option<&'a Hold> {
    holds.iter().find(|hold| hold.covers(resource_type, json))
}
