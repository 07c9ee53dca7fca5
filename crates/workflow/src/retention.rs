//! Retention and legal hold: how long a patient's record is kept, what may be destroyed, and
//! the certificate of what was.
//!
//! - **Holds** are `Task`s (code `legal-hold`, `in-progress` while in force) on a patient
//!   (`for`), an encounter (`focus`) or a date range (`restriction.period`), read and enforced
//!   by the store itself (`store::hold`): nothing they cover can be changed, deleted or purged
//!   by any path. [`hold_task`] checks one before it is placed.
//! - **A schedule** ([`Schedule`]) per record class: an adult's record is kept a number of
//!   years after the last care; a minor's (younger than the age of majority at the last care)
//!   also until the age of majority plus some years; a deceased patient's, when the schedule
//!   says so, a number of years after death. Built-in schedules ([`Schedule::builtin`]) follow
//!   common readings of state rules; the department sets its own (JSON, [`Schedule::from_json`]).
//! - **The purge plan** ([`plan`]): for each patient whose retention has ended, the resources
//!   of their record (whose own subject is the patient, and the Patient itself), less those an
//!   active hold covers; the Patient is kept while anything of theirs is.
//! - **The certificate of destruction** ([`certificate`]): a `DocumentReference` saying what
//!   was destroyed (each resource, its patient, the rule and the date retention ended), when,
//!   under which schedule and by whom. The audit trail is not touched by a purge: its entries,
//!   those about purged records included, stay in its chain.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use store::Store;
pub use store::hold::{HOLD_CODE, HOLD_SYSTEM};
use store::hold::{Hold, clinical_dates};

use crate::roi::WORKFLOW_SYSTEM;
use crate::{DAY, Error, Result, date_time, instant, instant_after};

pub const CERTIFICATE_CODE: &str = "certificate-of-destruction";
/// `years` calendar years after an instant (29 February to 1 March in a common year: never
/// a day early).
fn years_after(millis: i64, years: i64) -> i64 {
    let days = millis.div_euclid(DAY);
    let (y, m, d) = fhir::datetime::civil_from_days(days);
    let target = fhir::datetime::days_from_civil(y + years, m, d);
    // days_from_civil runs 29 February of a common year on to 1 March.
    target * DAY + millis.rem_euclid(DAY)
}

/// How long records are kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub name: String,
    /// Years after the last care.
    pub adult_years: i64,
    /// The age of majority, and the years after it a minor's record is kept at least.
    pub majority_age: i64,
    pub minor_years_after_majority: i64,
    /// Years after death a deceased patient's record is kept (`None`: the rule of the living).
    pub deceased_years: Option<i64>,
}

impl Schedule {
    /// The built-in schedules: `default` (10 years; minors to 18 plus 10; deceased 10 years
    /// after death), and common readings of California (7 years; minors at least to 19), New
    /// York (6 years; minors at least to 21) and Texas (10 years; minors at least to 20). A
    /// department confirms its own with counsel.
    pub fn builtin(name: &str) -> Option<Schedule> {
        let (adult_years, majority_age, minor_years_after_majority, deceased_years) = match name {
            "default" => (10, 18, 10, Some(10)),
            "CA" => (7, 18, 1, None),
            "NY" => (6, 18, 3, None),
            "TX" => (10, 20, 0, None),
            _ => return None,
        };
        Some(Schedule {
            name: name.to_string(),
            adult_years,
            majority_age,
            minor_years_after_majority,
            deceased_years,
        })
    }

    /// A schedule as JSON: `{"name", "adultYears", "majorityAge", "minorYearsAfterMajority",
    /// "deceasedYears"?}`.
    pub fn from_json(json: &Json) -> Result<Schedule> {
        let years = |key: &str| -> Result<i64> {
            json[key].as_i64().filter(|n| (0..=100).contains(n)).ok_or_else(|| {
                Error::Invalid(format!("schedule.{key}: a whole number of years (0 to 100) is required"))
            })
        };
        Ok(Schedule {
            name: json["name"].as_str().filter(|n| !n.trim().is_empty()).unwrap_or("department").to_string(),
            adult_years: years("adultYears")?,
            majority_age: years("majorityAge")?,
            minor_years_after_majority: years("minorYearsAfterMajority")?,
            deceased_years: if json["deceasedYears"].is_null() {
                None
            } else {
                Some(years("deceasedYears")?)
            },
        })
    }

    /// When a record's retention ends: the latest of the terms that apply (the adult term after
    /// the last care; the minor term when any care came before the age of majority; the
    /// deceased term when the patient died and the schedule has one), with the class that sets
    /// it and the rule in words.
    pub fn retention_end(
        &self,
        first_care: i64,
        last_care: i64,
        born: Option<i64>,
        died: Option<i64>,
    ) -> (i64, &'static str, String) {
        let care =
            format!("{} years after the last care ({})", self.adult_years, &date_time(last_care)[..10]);
        let mut end = (years_after(last_care, self.adult_years), "adult", format!("adult: {care}"));
        if let Some(born) = born
            && first_care < years_after(born, self.majority_age)
        {
            let minor = years_after(born, self.majority_age + self.minor_years_after_majority);
            end = if minor > end.0 {
                (
                    minor,
                    "minor",
                    format!(
                        "minor: until {} years of age plus {} years",
                        self.majority_age, self.minor_years_after_majority
                    ),
                )
            } else {
                (end.0, "minor", format!("minor: {care}"))
            };
        }
        if let (Some(died), Some(years)) = (died, self.deceased_years) {
            let deceased = years_after(died, years);
            if deceased >= end.0 {
                end = (
                    deceased,
                    "deceased",
                    format!("deceased: {years} years after death ({})", &date_time(died)[..10]),
                );
            }
        }
        end
    }
}

/// Checks a legal hold before it is placed: a `Task` with code `legal-hold`, naming what it
/// holds (a patient, an encounter, dates) and why (`description`, the matter).
pub fn hold_task(task: &Json) -> Result<()> {
    if !store::hold::is_hold_task(task) {
        return Err(Error::Invalid(format!(
            "a legal hold is a Task with code {WORKFLOW_SYSTEM}|{HOLD_CODE}"
        )));
    }
    let mut active = task.clone();
    active["status"] = json!("in-progress");
    let hold = Hold::from_task(&active).ok_or_else(|| Error::Invalid("the hold does not read".into()))?;
    if hold.patient.is_none() && hold.encounter.is_none() && hold.from.is_none() && hold.to.is_none() {
        return Err(Error::Invalid(
            "Task: a hold names what it holds: a patient (for), an encounter (focus) or dates (restriction.period)".into(),
        ));
    }
    for (element, value, kind) in [("for", &task["for"], "Patient"), ("focus", &task["focus"], "Encounter")] {
        if let Some(reference) = value["reference"].as_str()
            && !reference.starts_with(&format!("{kind}/"))
        {
            return Err(Error::Invalid(format!(
                "Task.{element}: a hold's {element} is a {kind}, not {reference}"
            )));
        }
    }
    if let (Some(from), Some(to)) = (hold.from, hold.to)
        && from >= to
    {
        return Err(Error::Invalid("Task.restriction.period: the hold's dates end before they start".into()));
    }
    if task["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
        return Err(Error::Invalid("Task.description: the matter the hold is for is required".into()));
    }
    Ok(())
}

/// The active holds on record.
pub fn active_holds(store: &dyn Store) -> Result<Vec<Hold>> {
    let mut holds = Vec::new();
    store.scan_type("Task", None, &mut |_, _, body| {
        if let Ok(json) = serde_json::from_slice::<Json>(body)
            && let Some(hold) = Hold::from_task(&json)
        {
            holds.push(hold);
        }
        Ok(())
    })?;
    Ok(holds)
}

/// One patient whose retention has ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Expired {
    pub patient: String,
    /// The record class whose term ended (adult, minor, deceased), and the rule in words.
    pub class: &'static str,
    pub rule: String,
    pub retention_end: i64,
    /// What is destroyed: (type, id), the Patient last.
    pub purge: Vec<(String, String)>,
    /// The version each of `purge` was planned on: a purge of one changed since is refused.
    pub versions: Vec<u64>,
    /// What is kept: (type, id, the Task keeping it: a hold in force, or an open request
    /// about the patient).
    pub held: Vec<(String, String, String)>,
}

/// What a purge at a moment would destroy.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub as_of: i64,
    pub schedule: Schedule,
    pub expired: Vec<Expired>,
}

impl Plan {
    pub fn resources(&self) -> usize {
        self.expired.iter().map(|e| e.purge.len()).sum()
    }

    pub fn held(&self) -> usize {
        self.expired.iter().map(|e| e.held.len()).sum()
    }
}

#[derive(Default)]
struct PatientRecord {
    born: Option<i64>,
    died: Option<i64>,
    registered: i64,
    version: u64,
    first_care: Option<i64>,
    last_care: Option<i64>,
    members: Vec<(String, String, u64, Option<String>)>,
    patient_held: Option<String>,
}

fn version_of(json: &Json) -> u64 {
    json["meta"]["versionId"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The open release-of-information and amendment requests, by patient: a record with a
/// request pending is kept until it is answered.
fn open_requests(store: &dyn Store) -> Result<BTreeMap<String, String>> {
    let mut open = BTreeMap::new();
    store.scan_type("Task", None, &mut |_, id, body| {
        let Ok(task) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        let patient =
            match (crate::roi::Request::from_task(&task), crate::amendment::Amendment::from_task(&task)) {
                (Ok(request), _) if request.open() => Some(request.patient),
                (_, Ok(request)) if request.open() => Some(request.patient),
                _ => None,
            };
        if let Some(patient) = patient {
            open.entry(patient).or_insert_with(|| id.to_string());
        }
        Ok(())
    })?;
    Ok(open)
}

/// The purge plan at `now` under `schedule`.
pub fn plan(store: &dyn Store, schedule: &Schedule, now: i64) -> Result<Plan> {
    let holds = active_holds(store)?;
    let held_by = |resource_type: &str, json: &Json| {
        store::hold::held_by(&holds, resource_type, json).map(|h| h.id.clone())
    };
    let mut patients: BTreeMap<String, PatientRecord> = BTreeMap::new();
    store.scan_type("Patient", None, &mut |_, id, body| {
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        let record = patients.entry(id.to_string()).or_default();
        // A partial date is read at its end: never a day early.
        record.born = json["birthDate"].as_str().and_then(instant_after);
        record.died = json["deceasedDateTime"].as_str().and_then(instant_after);
        record.registered = json["meta"]["lastUpdated"].as_str().and_then(instant).unwrap_or(now);
        record.version = version_of(&json);
        record.patient_held = held_by("Patient", &json);
        Ok(())
    })?;
    let mut types: Vec<String> = fhir::definitions()
        .compartment("Patient")
        .map(|c| c.keys().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    types.sort();
    for resource_type in types.iter().filter(|t| *t != "Patient") {
        store.scan_type(resource_type, None, &mut |_, id, body| {
            let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
            let Some(patient) = store::hold::subject_patient(&json) else { return Ok(()) };
            let Some(record) = patients.get_mut(patient) else { return Ok(()) };
            // The last care: the latest clinical date, never later than now.
            if let Some((low, high)) = clinical_dates(resource_type, &json) {
                let low = low.min(now);
                record.first_care = Some(record.first_care.map_or(low, |first| first.min(low)));
                // The last instant the date covers (its bound is the first one after).
                let high = (high - 1).min(now);
                record.last_care = Some(record.last_care.map_or(high, |last| last.max(high)));
            }
            record.members.push((
                resource_type.clone(),
                id.to_string(),
                version_of(&json),
                held_by(resource_type, &json),
            ));
            Ok(())
        })?;
    }
    let requests = open_requests(store)?;
    let mut expired = Vec::new();
    for (patient, record) in patients {
        let last_care = record.last_care.unwrap_or(record.registered);
        let first_care = record.first_care.unwrap_or(last_care);
        let (end, class, rule) = schedule.retention_end(first_care, last_care, record.born, record.died);
        if end > now {
            continue;
        }
        let request = requests.get(&patient);
        let mut purge = Vec::new();
        let mut versions = Vec::new();
        let mut held = Vec::new();
        for (resource_type, id, version, hold) in record.members {
            match hold.or_else(|| request.cloned()) {
                Some(keeper) => held.push((resource_type, id, keeper)),
                None => {
                    purge.push((resource_type, id));
                    versions.push(version);
                }
            }
        }
        match record.patient_held.or_else(|| request.cloned()) {
            Some(keeper) => held.push(("Patient".into(), patient.clone(), keeper)),
            None if held.is_empty() => {
                purge.push(("Patient".into(), patient.clone()));
                versions.push(record.version);
            }
            // Kept: held records refer to it.
            None => held.push(("Patient".into(), patient.clone(), held[0].2.clone())),
        }
        expired.push(Expired { patient, class, rule, retention_end: end, purge, versions, held });
    }
    Ok(Plan { as_of: now, schedule: schedule.clone(), expired })
}

/// The certificate of destruction of `plan`, carried out by `who` at `now`.
pub fn certificate(plan: &Plan, who: &str, now: i64) -> Json {
    // Each line names the record and the class whose term ended, not the dates (which would
    // tell a minor's birth date or a death to whoever reads the certificate).
    let mut csv = String::from("patient,resource,class,schedule\n");
    for expired in &plan.expired {
        for (resource_type, id) in &expired.purge {
            csv.push_str(&format!(
                "Patient/{},{resource_type}/{id},{},{}\n",
                expired.patient,
                expired.class,
                plan.schedule.name.replace([',', '"', '\n'], " ")
            ));
        }
    }
    let description = format!(
        "Destroyed {} resources of {} patients whose retention had ended, under the {} schedule ({} kept under legal hold or for an open request); by {who} on {}; the audit trail keeps its entries about them",
        plan.resources(),
        plan.expired.iter().filter(|e| !e.purge.is_empty()).count(),
        plan.schedule.name,
        plan.held(),
        &date_time(now)[..10]
    );
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": { "coding": [{ "system": WORKFLOW_SYSTEM, "code": CERTIFICATE_CODE, "display": "Certificate of destruction" }],
                  "text": "Certificate of destruction" },
        "date": date_time(now),
        "author": [{ "display": who }],
        "description": description,
        "content": [{ "attachment": { "contentType": "text/csv; charset=utf-8", "title": "Records destroyed",
                                       "data": fhir::base64_encode(csv.as_bytes()), "creation": date_time(now) } }],
    })
}
