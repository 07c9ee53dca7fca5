//! Data quality over the whole record: the checks of [`checks::CheckId`] (conformance,
//! completeness, plausibility in the Kahn framework), each with a numerator of failing
//! resources over a denominator of resources checked, a threshold and up to `examples`
//! offending references. Runs are kept (`runs.ndjson` in the data directory) so a report
//! shows the trend since the previous one.
//!
//! Two scans of the store's current resources: the first collects what checks need across
//! resources (every live `Type/id`, each Patient, who has an encounter), the second runs every
//! check on every resource.

pub mod checks;
mod report;

use std::time::{Duration, Instant};

use checks::{CheckId, MEASUREMENTS};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value as Json;
use terminology::icd10cm::Icd10Cm;

pub use report::{CheckResult, Report, RunSummary, load_runs, percent_text, record_run};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the store: {0}")]
    Store(#[from] store::Error),
    #[error("cannot keep the run: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How a run is done.
#[derive(Clone, Debug)]
pub struct Options {
    /// Offending references listed per check.
    pub examples: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { examples: 20 }
    }
}

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const LOINC: &str = "http://loinc.org";

/// What the first scan learns.
#[derive(Default)]
struct Context {
    live: FxHashSet<String>,
    patients: FxHashMap<String, Json>,
    with_encounter: FxHashSet<String>,
    /// (identifier system, value) -> Patients holding it.
    identifiers: FxHashMap<(String, String), Vec<String>>,
}

/// Failing resources of one check. The examples kept are the first in `Type/id` order, so a
/// report does not depend on how the work was shared between threads.
#[derive(Default)]
struct Tally {
    denominator: u64,
    numerator: u64,
    examples: std::collections::BTreeSet<String>,
}

impl Tally {
    fn count(&mut self, failed: bool, resource: &str, examples: usize) {
        self.denominator += 1;
        if failed {
            self.numerator += 1;
            let keep = self.examples.len() < examples
                || self.examples.last().is_some_and(|last| resource < last.as_str());
            if keep && examples > 0 {
                self.examples.insert(resource.to_string());
                if self.examples.len() > examples {
                    self.examples.pop_last();
                }
            }
        }
    }

    fn merge(&mut self, other: Tally, examples: usize) {
        self.denominator += other.denominator;
        self.numerator += other.numerator;
        self.examples.extend(other.examples);
        while self.examples.len() > examples {
            self.examples.pop_last();
        }
    }
}

/// One tally per check.
struct Tallies([Tally; CheckId::ALL.len()]);

impl Default for Tallies {
    fn default() -> Self {
        Tallies(std::array::from_fn(|_| Tally::default()))
    }
}

// `CheckId::ALL` lists every check in declaration order, so a check's discriminant is its
// place in the array.
impl std::ops::Index<CheckId> for Tallies {
    type Output = Tally;

    fn index(&self, check: CheckId) -> &Tally {
        &self.0[check as usize]
    }
}

impl std::ops::IndexMut<CheckId> for Tallies {
    fn index_mut(&mut self, check: CheckId) -> &mut Tally {
        &mut self.0[check as usize]
    }
}

/// Resources handed to a checking thread at a time.
const BATCH: usize = 2048;

/// Runs every check over the store's current resources.
pub fn run(store: &dyn store::Store, options: &Options) -> Result<Report, Error> {
    let started = Instant::now();
    let mut context = Context::default();
    store.scan_current(&mut |resource_type, id, body| {
        let key = format!("{resource_type}/{id}");
        if matches!(resource_type, "Patient" | "Encounter")
            && let Ok(resource) = serde_json::from_slice::<Json>(body)
        {
            if resource_type == "Encounter" {
                if let Some(subject) = resource["subject"]["reference"].as_str() {
                    context.with_encounter.insert(subject.to_string());
                }
            } else {
                for identifier in resource["identifier"].as_array().into_iter().flatten() {
                    if let (Some(system), Some(value)) =
                        (identifier["system"].as_str(), identifier["value"].as_str())
                    {
                        context
                            .identifiers
                            .entry((system.to_string(), value.to_string()))
                            .or_default()
                            .push(key.clone());
                    }
                }
                context.patients.insert(key.clone(), resource);
            }
        }
        context.live.insert(key);
        Ok(())
    })?;

    // The second scan reads on this thread and checks on all cores.
    let examples = options.examples;
    let workers = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let context = &context;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<(String, Vec<u8>)>>(workers * 2);
    let receiver = std::sync::Mutex::new(receiver);
    let (resources, mut tallies) = std::thread::scope(|scope| -> Result<(u64, Tallies), Error> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let receiver = &receiver;
                scope.spawn(move || {
                    let validator = validation::Validator::r4();
                    let icd = Icd10Cm::get();
                    let mut tallies = Tallies::default();
                    loop {
                        let batch = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => break,
                        };
                        let Ok(batch) = batch else { break };
                        for (key, body) in batch {
                            let resource_type = key.split('/').next().unwrap_or_default();
                            match serde_json::from_slice::<Json>(&body) {
                                Ok(resource) => check_resource(
                                    context,
                                    &resource,
                                    resource_type,
                                    &key,
                                    validator,
                                    icd,
                                    &mut tallies,
                                    examples,
                                ),
                                Err(_) => tallies[CheckId::R4Valid].count(true, &key, examples),
                            }
                        }
                    }
                    tallies
                })
            })
            .collect();
        let mut batch = Vec::with_capacity(BATCH);
        let scanned = store.scan_current(&mut |resource_type, id, body| {
            batch.push((format!("{resource_type}/{id}"), body.to_vec()));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                sender.send(full).map_err(|_| store::Error::Closed)?;
            }
            Ok(())
        });
        if !batch.is_empty() {
            let _ = sender.send(batch);
        }
        drop(sender);
        let mut tallies = Tallies::default();
        for handle in handles {
            let mut done = handle.join().map_err(|_| Error::Invalid("a checking thread panicked".into()))?;
            for &check in CheckId::ALL {
                tallies[check].merge(std::mem::take(&mut done[check]), examples);
            }
        }
        Ok((scanned?, tallies))
    })?;
    let results = CheckId::ALL
        .iter()
        .map(|&check| {
            let tally = std::mem::take(&mut tallies[check]);
            CheckResult::new(check, tally.numerator, tally.denominator, tally.examples.into_iter().collect())
        })
        .collect();
    Ok(Report { resources, elapsed: started.elapsed(), checks: results, previous: None })
}

#[allow(clippy::too_many_arguments)]
fn check_resource(
    context: &Context,
    resource: &Json,
    resource_type: &str,
    key: &str,
    validator: &validation::Validator,
    icd: &Icd10Cm,
    tallies: &mut Tallies,
    examples: usize,
) {
    let invalid = validation::has_errors(&validator.validate(resource));
    tallies[CheckId::R4Valid].count(invalid, key, examples);

    let mut targets = Vec::new();
    references(resource, &mut targets);
    let relative: Vec<&String> = targets.iter().filter(|t| is_relative(t)).collect();
    if !relative.is_empty() {
        let dangling = relative.iter().any(|t| !context.live.contains(t.as_str()));
        tallies[CheckId::ReferenceResolves].count(dangling, key, examples);
    }

    let patient_key = fhir::patient_reference(resource);
    let patient = patient_key.and_then(|p| context.patients.get(p));
    if let (Some(patient), Some(day)) = (patient, event_day(resource)) {
        if let Some(death) = patient["deceasedDateTime"].as_str().and_then(|d| d.get(..10)) {
            tallies[CheckId::NothingAfterDeath].count(day > death, key, examples);
        }
        if let Some(birth) = patient["birthDate"].as_str() {
            // A birth date given to the year or month: compare as far as it goes.
            let day = &day[..birth.len().min(day.len())];
            tallies[CheckId::NothingBeforeBirth].count(day < birth, key, examples);
        }
    }

    match resource_type {
        "Patient" => {
            tallies[CheckId::BirthDatePresent].count(resource.get("birthDate").is_none(), key, examples);
            tallies[CheckId::GenderPresent].count(resource.get("gender").is_none(), key, examples);
            tallies[CheckId::PatientHasEncounter].count(!context.with_encounter.contains(key), key, examples);
            let shared = resource["identifier"].as_array().into_iter().flatten().any(|identifier| {
                match (identifier["system"].as_str(), identifier["value"].as_str()) {
                    (Some(system), Some(value)) => context
                        .identifiers
                        .get(&(system.to_string(), value.to_string()))
                        .is_some_and(|holders| holders.len() > 1),
                    _ => false,
                }
            });
            tallies[CheckId::IdentifierUnique].count(shared, key, examples);
        }
        "Encounter" => {
            if let (Some(start), Some(end)) =
                (resource["period"]["start"].as_str(), resource["period"]["end"].as_str())
            {
                let ends_before = fhir::DateTime::parse(start, fhir::DateTimeKind::DateTime)
                    .ok()
                    .zip(fhir::DateTime::parse(end, fhir::DateTimeKind::DateTime).ok())
                    .is_some_and(|(s, e)| e.upper_bound_millis() < s.lower_bound_millis());
                tallies[CheckId::EndAfterStart].count(ends_before, key, examples);
            }
            if resource["class"]["code"] == "IMP" && resource["status"] == "finished" {
                let disposition = resource["hospitalization"]["dischargeDisposition"].is_object();
                tallies[CheckId::DispositionPresent].count(!disposition, key, examples);
                let diagnosis = resource["diagnosis"].as_array().is_some_and(|d| !d.is_empty());
                tallies[CheckId::DiagnosisPresent].count(!diagnosis, key, examples);
            }
        }
        "Observation" => measurement(resource, key, tallies, examples),
        "Condition" => {
            let codes: Vec<&str> = resource["code"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["system"] == ICD10CM)
                .filter_map(|c| c["code"].as_str())
                .collect();
            if !codes.is_empty() {
                let concepts: Vec<_> = codes.iter().map(|c| icd.lookup(c)).collect();
                tallies[CheckId::CodeExists].count(concepts.iter().any(Option::is_none), key, examples);
                let known: Vec<_> = concepts.iter().flatten().collect();
                if !known.is_empty() {
                    tallies[CheckId::CodeBillable].count(known.iter().any(|c| !c.billable()), key, examples);
                }
                let diagnoses = coding::extract::condition_diagnoses(resource, "Condition", Some(1));
                let facts = coding::extract::patient_facts(patient, resource["recordedDate"].as_str());
                let edits = coding::check(&diagnoses, &facts, coding::Setting::Clinical);
                let sex = edits.iter().any(|e| e.id == coding::EditId::SexConflict);
                if facts.sex.is_some() {
                    tallies[CheckId::SexSpecificCode].count(sex, key, examples);
                }
                let specific =
                    edits.iter().any(|e| e.id == coding::EditId::UnspecifiedWithSpecificDocumentation);
                tallies[CheckId::Specificity].count(specific, key, examples);
            }
        }
        _ => {}
    }
}

/// The unit and value checks of an Observation and its components.
fn measurement(observation: &Json, key: &str, tallies: &mut Tallies, examples: usize) {
    let mut quantities: Vec<(&Json, &Json)> = vec![(&observation["code"], &observation["valueQuantity"])];
    for component in observation["component"].as_array().into_iter().flatten() {
        quantities.push((&component["code"], &component["valueQuantity"]));
    }
    let (mut checked_unit, mut bad_unit, mut checked_value, mut bad_value) = (false, false, false, false);
    for (code, quantity) in quantities {
        let Some(loinc) = code["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["system"] == LOINC)
            .and_then(|c| c["code"].as_str())
        else {
            continue;
        };
        let known: Vec<&(&str, &str, f64, f64)> = MEASUREMENTS.iter().filter(|m| m.0 == loinc).collect();
        if known.is_empty() || !quantity.is_object() {
            continue;
        }
        let unit = quantity["code"].as_str().or_else(|| quantity["unit"].as_str()).unwrap_or_default();
        checked_unit = true;
        let Some(range) = known.iter().find(|m| m.1 == unit) else {
            bad_unit = true;
            continue;
        };
        if let Some(value) = quantity["value"].as_f64() {
            checked_value = true;
            bad_value |= !(range.2..=range.3).contains(&value);
        }
    }
    if checked_unit {
        tallies[CheckId::UnitPerLoinc].count(bad_unit, key, examples);
    }
    if checked_value {
        tallies[CheckId::ValueInRange].count(bad_value, key, examples);
    }
}

fn is_relative(reference: &str) -> bool {
    !reference.starts_with('#') && !reference.contains(':') && reference.split('/').count() == 2
}

fn references(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(object) => {
            if let Some(Json::String(target)) = object.get("reference") {
                out.push(target.clone());
            }
            for (name, child) in object {
                // Resources carried inside (contained) resolve locally.
                if name != "contained" {
                    references(child, out);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The day an event of the record happened (`YYYY-MM-DD`): when care was given or billed for,
/// not when a claim was created or adjudicated.
pub fn event_day(resource: &Json) -> Option<&str> {
    let value = match resource["resourceType"].as_str()? {
        "Encounter" => &resource["period"]["start"],
        "Condition" => &resource["recordedDate"],
        "Observation" => &resource["effectiveDateTime"],
        "Procedure" => &resource["performedPeriod"]["start"],
        "MedicationRequest" => &resource["authoredOn"],
        "Immunization" => &resource["occurrenceDateTime"],
        "DocumentReference" => &resource["date"],
        "Claim" | "ExplanationOfBenefit" => &resource["billablePeriod"]["start"],
        _ => return None,
    };
    value.as_str().and_then(|v| v.get(..10))
}

/// A run's duration, for reports.
pub fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}
