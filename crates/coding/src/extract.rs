//! Diagnoses and patient facts out of FHIR resources.

use serde_json::Value as Json;

use crate::{Diagnosis, PatientFacts, Setting, Sex};

/// The canonical URL of ICD-10-CM, and its OID form, which older interfaces still send.
pub fn is_icd10cm_system(system: &str) -> bool {
    system == terminology::icd10cm::SYSTEM || system == "urn:oid:2.16.840.1.113883.6.90"
}

/// The resource types the edits apply to, with the setting each implies.
pub fn setting_of(resource_type: &str) -> Option<Setting> {
    match resource_type {
        "Condition" | "Encounter" => Some(Setting::Clinical),
        "Claim" | "ExplanationOfBenefit" => Some(Setting::Claim),
        _ => None,
    }
}

fn text_of(value: Option<&Json>) -> Option<String> {
    value.and_then(Json::as_str).map(str::to_string)
}

/// What a CodeableConcept says in words: its text and the displays of its non-ICD codings
/// (a SNOMED CT display is often more specific than the ICD code next to it).
fn concept_words(concept: &Json, out: &mut Vec<String>) {
    out.extend(text_of(concept.get("text")));
    for coding in concept.get("coding").and_then(Json::as_array).into_iter().flatten() {
        let system = coding.get("system").and_then(Json::as_str).unwrap_or("");
        if !is_icd10cm_system(system) {
            out.extend(text_of(coding.get("display")));
        }
    }
}

/// The documentation a Condition gives about itself.
fn condition_documentation(condition: &Json) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(code) = condition.get("code") {
        concept_words(code, &mut words);
    }
    for site in condition.get("bodySite").and_then(Json::as_array).into_iter().flatten() {
        concept_words(site, &mut words);
    }
    if let Some(severity) = condition.get("severity") {
        concept_words(severity, &mut words);
    }
    for stage in condition.get("stage").and_then(Json::as_array).into_iter().flatten() {
        if let Some(summary) = stage.get("summary") {
            concept_words(summary, &mut words);
        }
    }
    for note in condition.get("note").and_then(Json::as_array).into_iter().flatten() {
        words.extend(text_of(note.get("text")));
    }
    words
}

/// The ICD-10-CM codings of a CodeableConcept at `path`.
fn icd_codings(
    concept: &Json,
    path: &str,
    sequence: Option<u32>,
    documentation: &[String],
    out: &mut Vec<Diagnosis>,
) {
    for (i, coding) in concept.get("coding").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let system = coding.get("system").and_then(Json::as_str).unwrap_or("");
        if let (true, Some(code)) = (is_icd10cm_system(system), coding.get("code").and_then(Json::as_str)) {
            out.push(Diagnosis {
                code: code.to_string(),
                location: format!("{path}.coding[{i}]"),
                sequence,
                documentation: documentation.to_vec(),
            });
        }
    }
}

/// The ICD-10-CM codes of a Condition.
pub fn condition_diagnoses(condition: &Json, path: &str, sequence: Option<u32>) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    if let Some(code) = condition.get("code") {
        icd_codings(code, &format!("{path}.code"), sequence, &condition_documentation(condition), &mut out);
    }
    out
}

fn whole_number(value: Option<&Json>) -> Option<u32> {
    value.and_then(Json::as_u64).and_then(|n| u32::try_from(n).ok())
}

/// The ICD-10-CM diagnoses of a Condition, Encounter, Claim or ExplanationOfBenefit, in the
/// order the resource gives them. `resolve` reads referenced Conditions (`Condition/123`).
pub fn diagnoses(resource: &Json, resolve: &dyn Fn(&str) -> Option<Json>) -> Vec<Diagnosis> {
    let resource_type = resource.get("resourceType").and_then(Json::as_str).unwrap_or("");
    // `#id` points into the resource's own `contained`; anything else is the caller's.
    let resolve = |reference: &str| match reference.strip_prefix('#') {
        Some(id) => resource
            .get("contained")
            .and_then(Json::as_array)?
            .iter()
            .find(|c| c.get("id").and_then(Json::as_str) == Some(id))
            .cloned(),
        None => resolve(reference),
    };
    let resolve = |reference: &str| resolve(reference).filter(is_asserted);
    let mut out = Vec::new();
    match resource_type {
        "Condition" if is_asserted(resource) => out = condition_diagnoses(resource, "Condition", None),
        "Encounter" => {
            let ranked_use = ranked_use(resource);
            for (i, entry) in
                resource.get("diagnosis").and_then(Json::as_array).into_iter().flatten().enumerate()
            {
                // Ranks order the diagnoses of one use (admission, discharge, billing) only.
                let rank = whole_number(entry.get("rank")).filter(|_| use_of(entry) == ranked_use);
                let reference =
                    entry.get("condition").and_then(|r| r.get("reference")).and_then(Json::as_str);
                if let Some(condition) = reference.and_then(resolve) {
                    out.extend(condition_diagnoses(
                        &condition,
                        &format!("Encounter.diagnosis[{i}].condition"),
                        rank,
                    ));
                }
            }
        }
        "Claim" | "ExplanationOfBenefit" => {
            for (i, entry) in
                resource.get("diagnosis").and_then(Json::as_array).into_iter().flatten().enumerate()
            {
                let sequence = whole_number(entry.get("sequence"));
                let path = format!("{resource_type}.diagnosis[{i}]");
                if let Some(concept) = entry.get("diagnosisCodeableConcept") {
                    let mut documentation = Vec::new();
                    concept_words(concept, &mut documentation);
                    icd_codings(
                        concept,
                        &format!("{path}.diagnosisCodeableConcept"),
                        sequence,
                        &documentation,
                        &mut out,
                    );
                } else if let Some(condition) = entry
                    .get("diagnosisReference")
                    .and_then(|r| r.get("reference"))
                    .and_then(Json::as_str)
                    .and_then(resolve)
                {
                    out.extend(condition_diagnoses(
                        &condition,
                        &format!("{path}.diagnosisReference"),
                        sequence,
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether a Condition stands: not entered in error, not refuted.
pub fn is_asserted(condition: &Json) -> bool {
    let verification = condition
        .get("verificationStatus")
        .and_then(|v| v.get("coding"))
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Json::as_str));
    !verification.into_iter().any(|code| matches!(code, "entered-in-error" | "refuted"))
}

fn use_of(entry: &Json) -> Option<&str> {
    entry.get("use")?.get("coding")?.as_array()?.iter().find_map(|c| c.get("code")?.as_str())
}

/// The diagnosis use whose ranks give the order: billing, else discharge, else whatever the
/// first ranked entry uses.
fn ranked_use(encounter: &Json) -> Option<&str> {
    let entries: Vec<&Json> =
        encounter.get("diagnosis").and_then(Json::as_array).into_iter().flatten().collect();
    let uses: Vec<Option<&str>> =
        entries.iter().filter(|e| e.get("rank").is_some()).map(|e| use_of(e)).collect();
    ["billing", "DD"]
        .into_iter()
        .find(|wanted| uses.contains(&Some(*wanted)))
        .map(Some)
        .unwrap_or_else(|| uses.first().copied().flatten())
}

/// The date of service a resource gives (for the patient's age).
pub fn service_date(resource: &Json) -> Option<String> {
    let resource_type = resource.get("resourceType").and_then(Json::as_str)?;
    let first = |paths: &[&[&str]]| {
        paths.iter().find_map(|path| {
            let mut value = resource;
            for step in *path {
                value = value.get(*step)?;
            }
            value.as_str().map(str::to_string)
        })
    };
    match resource_type {
        // When the condition was coded, not when it began: a condition present since birth is
        // still coded on an adult's record.
        "Condition" => first(&[&["recordedDate"], &["onsetDateTime"], &["onsetPeriod", "start"]]),
        "Encounter" => first(&[&["period", "start"], &["period", "end"]]),
        "Claim" | "ExplanationOfBenefit" => first(&[&["billablePeriod", "start"], &["created"]]),
        "DocumentReference" => first(&[&["context", "period", "start"], &["date"]]),
        _ => None,
    }
}

/// The patient reference of a resource (`subject` or `patient`).
pub fn patient_reference(resource: &Json) -> Option<&str> {
    resource
        .get("subject")
        .or_else(|| resource.get("patient"))
        .and_then(|r| r.get("reference"))
        .and_then(Json::as_str)
}

/// The patient's sex and possible ages at `service_date`.
pub fn patient_facts(patient: Option<&Json>, service_date: Option<&str>) -> PatientFacts {
    let Some(patient) = patient else { return PatientFacts::default() };
    let sex = match patient.get("gender").and_then(Json::as_str) {
        Some("female") => Some(Sex::Female),
        Some("male") => Some(Sex::Male),
        _ => None,
    };
    let age_years = patient
        .get("birthDate")
        .and_then(Json::as_str)
        .zip(service_date)
        .and_then(|(birth, service)| possible_ages(birth, service));
    PatientFacts { sex, age_years }
}

/// Youngest and oldest whole-year ages between a birth date and a service date, each of any
/// precision. Ages are counted in calendar days (the time of day and zone do not change
/// someone's age in years for these edits).
pub fn possible_ages(birth: &str, service: &str) -> Option<(u32, u32)> {
    let (birth_first, birth_last) = day_span(birth)?;
    let (service_first, service_last) = day_span(service)?;
    let youngest = whole_years(birth_last, service_first);
    let oldest = whole_years(birth_first, service_last);
    (oldest >= 0).then(|| (youngest.max(0) as u32, oldest as u32))
}

type Day = (i32, u8, u8);

/// The first and last calendar day a date of year, month or day precision can mean.
fn day_span(text: &str) -> Option<(Day, Day)> {
    let date = text.get(..text.len().min(10))?;
    let mut parts = date.split('-');
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month: Option<u8> = parts.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?.into();
    let (first_month, last_month) = match month {
        Some(0) | None => (1, 12),
        Some(m @ 1..=12) => (m, m),
        Some(_) => return None,
    };
    let day: Option<u8> = match parts.next() {
        Some(d) => Some(d.parse().ok()?),
        None => None,
    };
    let last_day_of = |m: u8| fhir::datetime::days_in_month(year, m);
    match day {
        Some(d) if (1..=last_day_of(first_month)).contains(&d) && first_month == last_month => {
            Some(((year, first_month, d), (year, first_month, d)))
        }
        Some(_) => None,
        None => Some(((year, first_month, 1), (year, last_month, last_day_of(last_month)))),
    }
}

fn whole_years(from: Day, to: Day) -> i64 {
    let mut years = i64::from(to.0) - i64::from(from.0);
    if (to.1, to.2) < (from.1, from.2) {
        years -= 1;
    }
    years
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_conditions_ranks_of_one_use_and_refuted_conditions() {
        let icd = |code: &str| serde_json::json!({"coding": [{"system": terminology::icd10cm::SYSTEM, "code": code}]});
        let encounter = serde_json::json!({
            "resourceType": "Encounter",
            "contained": [
                {"resourceType": "Condition", "id": "a", "code": icd("E11.9")},
                {"resourceType": "Condition", "id": "b", "code": icd("I10")},
                {"resourceType": "Condition", "id": "x", "code": icd("J10.1"),
                 "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
            ],
            "diagnosis": [
                {"condition": {"reference": "#a"}, "rank": 1,
                 "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "AD"}]}},
                {"condition": {"reference": "#b"}, "rank": 1,
                 "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "billing"}]}},
                {"condition": {"reference": "#x"}, "rank": 2,
                 "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "billing"}]}}
            ]
        });
        let found = diagnoses(&encounter, &|_| None);
        let summary: Vec<(&str, Option<u32>)> = found.iter().map(|d| (d.code.as_str(), d.sequence)).collect();
        // The admission diagnosis keeps no rank (billing ranks the list); the condition entered
        // in error is not a diagnosis.
        assert_eq!(summary, vec![("E11.9", None), ("I10", Some(1))]);
    }

    #[test]
    fn ages_widen_with_partial_dates() {
        assert_eq!(possible_ages("2000-06-15", "2020-06-14"), Some((19, 19)));
        assert_eq!(possible_ages("2000-06-15", "2020-06-15"), Some((20, 20)));
        assert_eq!(possible_ages("2000", "2020-03-01"), Some((19, 20)));
        assert_eq!(possible_ages("2024-01-10", "2024-01-12T10:00:00Z"), Some((0, 0)));
        assert_eq!(possible_ages("not a date", "2024-01-12"), None);
        assert_eq!(possible_ages("2000-02-30", "2024-01-12"), None);
        assert_eq!(possible_ages("2030-01-01", "2024-01-12"), None);
    }
}
