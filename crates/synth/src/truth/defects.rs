//! Data-quality defects planted in finished patient records, one per chosen patient, each
//! listed with its class, the resource it is in, the element and what was done.
//!
//! A defect is applied to the patient's already-written resources (parsed back, changed,
//! written again), so the clean generator stays simple and a defect is exactly one change.

use serde_json::{Value, json};

use crate::calendar::{DAY, ICD10CM, LOINC, date_time};
use crate::rng::Rng;
use crate::{Error, Sink};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefectClass {
    InvalidCode,
    NonBillableCode,
    UnspecifiedCode,
    MissingDiagnosis,
    MissingDischargeDisposition,
    ImplausibleVitalSign,
    EndBeforeStart,
    EventAfterDeath,
    DanglingReference,
    SexInconsistentCode,
    DuplicateIdentifier,
}

impl DefectClass {
    pub(crate) const ALL: [DefectClass; 11] = [
        DefectClass::InvalidCode,
        DefectClass::NonBillableCode,
        DefectClass::UnspecifiedCode,
        DefectClass::MissingDiagnosis,
        DefectClass::MissingDischargeDisposition,
        DefectClass::ImplausibleVitalSign,
        DefectClass::EndBeforeStart,
        DefectClass::EventAfterDeath,
        DefectClass::DanglingReference,
        DefectClass::SexInconsistentCode,
        DefectClass::DuplicateIdentifier,
    ];

    pub(crate) fn id(self) -> &'static str {
        match self {
            DefectClass::InvalidCode => "invalid-code",
            DefectClass::NonBillableCode => "non-billable-code",
            DefectClass::UnspecifiedCode => "unspecified-code",
            DefectClass::MissingDiagnosis => "missing-diagnosis",
            DefectClass::MissingDischargeDisposition => "missing-discharge-disposition",
            DefectClass::ImplausibleVitalSign => "implausible-vital-sign",
            DefectClass::EndBeforeStart => "end-before-start",
            DefectClass::EventAfterDeath => "event-after-death",
            DefectClass::DanglingReference => "dangling-reference",
            DefectClass::SexInconsistentCode => "sex-inconsistent-code",
            DefectClass::DuplicateIdentifier => "duplicate-identifier",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            DefectClass::InvalidCode => "a Condition coded with an ICD-10-CM code that does not exist",
            DefectClass::NonBillableCode => {
                "a Condition coded with an ICD-10-CM category or subcategory header (not valid for submission)"
            }
            DefectClass::UnspecifiedCode => {
                "a Condition coded as unspecified although its text documents the specific (lateral) code"
            }
            DefectClass::MissingDiagnosis => "a finished inpatient Encounter without any diagnosis",
            DefectClass::MissingDischargeDisposition => {
                "a finished inpatient Encounter without a discharge disposition"
            }
            DefectClass::ImplausibleVitalSign => {
                "a vital-sign Observation with a physiologically impossible value"
            }
            DefectClass::EndBeforeStart => "an Encounter whose period ends before it starts",
            DefectClass::EventAfterDeath => {
                "a Patient recorded as deceased before events of their record (every such resource is listed)"
            }
            DefectClass::DanglingReference => "an Observation referring to an Encounter that does not exist",
            DefectClass::SexInconsistentCode => "a Condition coded with a code for the other sex",
            DefectClass::DuplicateIdentifier => {
                "a Patient given another patient's medical record number (both are listed)"
            }
        }
    }
}

/// What a defect needs to know about the patient besides the resources.
pub(crate) struct PatientFacts<'a> {
    pub(crate) id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) female: bool,
    /// The medical record number of the patient generated just before, when that patient
    /// can never be given a copied number itself.
    pub(crate) borrowable_mrn: Option<(String, String)>,
}

impl DefectClass {
    /// Classes take turns.
    pub(crate) fn for_turn(turn: usize) -> DefectClass {
        DefectClass::ALL[turn % DefectClass::ALL.len()]
    }

    /// Whether the class needs an inpatient stay in the record.
    pub(crate) fn needs_inpatient_stay(self) -> bool {
        matches!(self, DefectClass::MissingDiagnosis | DefectClass::MissingDischargeDisposition)
    }
}

/// The specific codes whose unspecified siblings [`DefectClass::UnspecifiedCode`] plants.
pub(crate) fn has_unspecified_sibling(code: &str) -> bool {
    UNSPECIFIED.iter().any(|(specific, _, _)| *specific == code)
}

/// Plants the defect of `class` (or, when the record cannot show it, of the next class that
/// it can) and returns its ground-truth line.
pub(crate) fn inject(
    class: DefectClass,
    facts: &PatientFacts<'_>,
    sink: &mut Sink,
    rng: &mut Rng,
) -> Result<Option<Value>, Error> {
    let classes = DefectClass::ALL.len();
    let first = DefectClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
    for step in 0..classes {
        let class = DefectClass::ALL[(first + step) % classes];
        if let Some(found) = apply(class, facts, sink, rng)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn finding(
    class: DefectClass,
    resource: String,
    path: &str,
    was: Value,
    now: Value,
    related: Vec<String>,
) -> Value {
    json!({
        "class": class.id(),
        "resource": resource,
        "path": path,
        "original": was,
        "defective": now,
        "related": related,
    })
}

fn id_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )
}

/// The position of the ICD-10-CM coding within `Condition.code.coding`.
fn icd_coding(condition: &Value) -> Option<(usize, String)> {
    condition["code"]["coding"].as_array()?.iter().enumerate().find_map(|(i, coding)| {
        (coding["system"] == ICD10CM).then(|| coding["code"].as_str().map(|c| (i, c.to_string()))).flatten()
    })
}

fn pick<T>(rng: &mut Rng, mut items: Vec<T>) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let at = rng.below(items.len() as u64) as usize;
    Some(items.swap_remove(at))
}

/// Replaces the ICD-10-CM code (and, when given, display) of a Condition chosen by `choose`.
fn recode(
    class: DefectClass,
    sink: &mut Sink,
    rng: &mut Rng,
    choose: impl Fn(&str) -> Option<(String, Option<&'static str>)>,
) -> Result<Option<Value>, Error> {
    let conditions = sink.parsed("Condition")?;
    let candidates: Vec<(usize, usize, String, String, Option<&'static str>)> = conditions
        .iter()
        .enumerate()
        .filter_map(|(position, condition)| {
            let (coding, code) = icd_coding(condition)?;
            let (new_code, display) = choose(&code)?;
            Some((position, coding, code, new_code, display))
        })
        .collect();
    let Some((position, coding, code, new_code, display)) = pick(rng, candidates) else { return Ok(None) };
    let mut condition = conditions[position].clone();
    let element = &mut condition["code"]["coding"][coding];
    element["code"] = Value::from(new_code.as_str());
    if let Some(display) = display {
        element["display"] = Value::from(display);
    }
    sink.replace("Condition", position, &condition)?;
    let path = format!("Condition.code.coding[{coding}].code");
    Ok(Some(finding(class, id_of(&condition), &path, Value::from(code), Value::from(new_code), vec![])))
}

/// Unspecified codes whose specific siblings the generated text documents (laterality).
const UNSPECIFIED: &[(&str, &str, &str)] = &[
    ("M17.11", "M17.10", "Unilateral primary osteoarthritis, unspecified knee"),
    (
        "S72.001A",
        "S72.009A",
        "Fracture of unspecified part of neck of unspecified femur, initial encounter for closed fracture",
    ),
    (
        "S52.501A",
        "S52.509A",
        "Unspecified fracture of the lower end of unspecified radius, initial encounter for closed fracture",
    ),
    ("C50.911", "C50.919", "Malignant neoplasm of unspecified site of unspecified female breast"),
];

/// Codes of one sex's organs, planted on the other sex's record.
const FEMALE_ONLY: (&str, &str) = ("N83.201", "Unspecified ovarian cyst, right side");
const MALE_ONLY: (&str, &str) =
    ("N40.0", "Benign prostatic hyperplasia without lower urinary tract symptoms");

/// Values no living person has, by LOINC vital sign.
const IMPOSSIBLE_VITALS: &[(&str, f64)] =
    &[("8867-4", 412.0), ("8310-5", 51.3), ("9279-1", 142.0), ("29463-7", 880.0), ("8302-2", 318.0)];

fn apply(
    class: DefectClass,
    facts: &PatientFacts<'_>,
    sink: &mut Sink,
    rng: &mut Rng,
) -> Result<Option<Value>, Error> {
    match class {
        DefectClass::InvalidCode => recode(class, sink, rng, |code| {
            // A billable code has no children, so one more character never names a code.
            let invalid = if code.contains('.') { format!("{code}9") } else { format!("{code}.9") };
            Some((invalid, None))
        }),
        DefectClass::NonBillableCode => recode(class, sink, rng, |code| {
            // The parent of a code with a dot has children, so it is a header.
            code.contains('.').then(|| (code[..code.len() - 1].trim_end_matches('.').to_string(), None))
        }),
        DefectClass::UnspecifiedCode => recode(class, sink, rng, |code| {
            UNSPECIFIED
                .iter()
                .find(|(specific, _, _)| *specific == code)
                .map(|(_, unspecified, display)| (unspecified.to_string(), Some(*display)))
        }),
        DefectClass::SexInconsistentCode => {
            let (code, display) = if facts.female { MALE_ONLY } else { FEMALE_ONLY };
            recode(class, sink, rng, |_| Some((code.to_string(), Some(display))))
        }
        DefectClass::MissingDiagnosis => drop_from_inpatient(class, sink, rng, "diagnosis"),
        DefectClass::MissingDischargeDisposition => drop_from_inpatient(class, sink, rng, "hospitalization"),
        DefectClass::ImplausibleVitalSign => {
            let observations = sink.parsed("Observation")?;
            let candidates: Vec<(usize, f64)> = observations
                .iter()
                .enumerate()
                .filter_map(|(position, observation)| {
                    let coding = &observation["code"]["coding"][0];
                    if coding["system"] != LOINC || observation["valueQuantity"]["value"].is_null() {
                        return None;
                    }
                    let code = coding["code"].as_str()?;
                    IMPOSSIBLE_VITALS.iter().find(|(c, _)| *c == code).map(|&(_, value)| (position, value))
                })
                .collect();
            let Some((position, value)) = pick(rng, candidates) else { return Ok(None) };
            let mut observation = observations[position].clone();
            let was = observation["valueQuantity"]["value"].clone();
            observation["valueQuantity"]["value"] = Value::from(value);
            sink.replace("Observation", position, &observation)?;
            let found = finding(
                class,
                id_of(&observation),
                "Observation.valueQuantity.value",
                was,
                Value::from(value),
                vec![],
            );
            Ok(Some(found))
        }
        DefectClass::EndBeforeStart => {
            let encounters = sink.parsed("Encounter")?;
            let Some(position) = pick(rng, (0..encounters.len()).collect()) else { return Ok(None) };
            let mut encounter = encounters[position].clone();
            let period = encounter["period"].clone();
            let (Some(start), Some(end)) = (period["start"].as_str(), period["end"].as_str()) else {
                return Ok(None);
            };
            encounter["period"] = json!({ "start": end, "end": start });
            sink.replace("Encounter", position, &encounter)?;
            Ok(Some(finding(
                class,
                id_of(&encounter),
                "Encounter.period",
                period.clone(),
                encounter["period"].clone(),
                vec![],
            )))
        }
        DefectClass::EventAfterDeath => event_after_death(facts, sink),
        DefectClass::DanglingReference => {
            let observations = sink.parsed("Observation")?;
            let Some(position) = pick(rng, (0..observations.len()).collect()) else { return Ok(None) };
            let mut observation = observations[position].clone();
            let was = observation["encounter"]["reference"].clone();
            // Encounters are numbered from 01, so 00 never exists.
            let missing = format!("Encounter/enc-{}-00", facts.key);
            observation["encounter"] = json!({ "reference": missing });
            sink.replace("Observation", position, &observation)?;
            Ok(Some(finding(
                class,
                id_of(&observation),
                "Observation.encounter",
                was,
                Value::from(missing),
                vec![],
            )))
        }
        DefectClass::DuplicateIdentifier => {
            let Some((other_patient, mrn)) = &facts.borrowable_mrn else { return Ok(None) };
            let mut patients = sink.parsed("Patient")?;
            let Some(patient) = patients.first_mut() else { return Ok(None) };
            let Some(identifiers) = patient["identifier"].as_array_mut() else { return Ok(None) };
            let Some((at, identifier)) = identifiers
                .iter_mut()
                .enumerate()
                .find(|(_, i)| i["system"] == "http://hospital.example.org/mrn")
            else {
                return Ok(None);
            };
            let was = identifier["value"].clone();
            identifier["value"] = Value::from(mrn.as_str());
            let path = format!("Patient.identifier[{at}].value");
            sink.replace("Patient", 0, patient)?;
            let other = format!("Patient/{other_patient}");
            Ok(Some(finding(class, id_of(patient), &path, was, Value::from(mrn.as_str()), vec![other])))
        }
    }
}

fn drop_from_inpatient(
    class: DefectClass,
    sink: &mut Sink,
    rng: &mut Rng,
    element: &str,
) -> Result<Option<Value>, Error> {
    let encounters = sink.parsed("Encounter")?;
    let candidates: Vec<usize> = (0..encounters.len())
        .filter(|&i| encounters[i]["class"]["code"] == "IMP" && !encounters[i][element].is_null())
        .collect();
    let Some(position) = pick(rng, candidates) else { return Ok(None) };
    let mut encounter = encounters[position].clone();
    let was = encounter.as_object_mut().and_then(|o| o.remove(element)).unwrap_or(Value::Null);
    sink.replace("Encounter", position, &encounter)?;
    let path = format!("Encounter.{element}");
    Ok(Some(finding(class, id_of(&encounter), &path, was, Value::Null, vec![])))
}

/// The date an event of the record happened (not when it was billed or adjudicated).
pub(crate) fn event_date(resource: &Value) -> Option<&str> {
    let element = match resource["resourceType"].as_str()? {
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
    element.as_str()
}

/// Records the patient as dying the day before their last encounter (or moves their death
/// there); every event dated after that day is listed.
fn event_after_death(facts: &PatientFacts<'_>, sink: &mut Sink) -> Result<Option<Value>, Error> {
    let encounters = sink.parsed("Encounter")?;
    let Some(last_start) =
        encounters.iter().filter_map(|e| e["period"]["start"].as_str()).max().map(str::to_string)
    else {
        return Ok(None);
    };
    let Some(last_day) = crate::calendar::day_of(&last_start) else { return Ok(None) };
    let death = (last_day - 1) * DAY + 12 * 3600;
    let death_text = date_time(death);
    let death_date = &death_text[..10];
    let mut patients = sink.parsed("Patient")?;
    let Some(patient) = patients.first_mut() else { return Ok(None) };
    if patient["birthDate"].as_str().is_none_or(|birth| birth >= death_date) {
        return Ok(None);
    }
    let was = patient["deceasedDateTime"].clone();
    patient["deceasedDateTime"] = Value::from(death_text.as_str());
    sink.replace("Patient", 0, patient)?;
    let mut related = Vec::new();
    for resource_type in crate::RESOURCE_TYPES {
        for resource in sink.parsed(resource_type)? {
            if event_date(&resource).is_some_and(|d| &d[..10.min(d.len())] > death_date) {
                related.push(id_of(&resource));
            }
        }
    }
    let resource = format!("Patient/{}", facts.id);
    Ok(Some(finding(
        DefectClass::EventAfterDeath,
        resource,
        "Patient.deceasedDateTime",
        was,
        Value::from(death_text),
        related,
    )))
}
