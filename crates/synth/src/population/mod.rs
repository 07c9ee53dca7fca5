//! The people and their records: the care directory (organizations, locations,
//! practitioners), then each patient with a problem list, encounters and what each encounter
//! produces (observations, notes, orders, claims).
//!
//! One file per part of a record. This one writes a patient's record from them, in the
//! order that fixes the output, and holds what several parts write alike.

mod claims;
mod directory;
mod encounter;
mod notes;
mod observations;
mod patient;
mod person;
mod planted;
mod visits;

use std::fmt::Write as _;

use serde_json::{Value, json};

use directory::{PROVIDERS, clinic_location};
pub(crate) use directory::{Plan, write_directory};
use encounter::{Record, write_encounter};
use patient::{chronic_condition, coverage_resource, patient_resource};
use person::draw_person;
use planted::{make_room_for_defect, plant_defect, record_truth};
use visits::plan_visits;

use crate::calendar::*;
use crate::clinical::Dx;
use crate::rng::Rng;
use crate::truth::{self, billing, completion, defects, duplicates, requests};
use crate::{Error, Sink};

// What several parts write alike.

/// Encounter reasons that are not conditions: the wellness visits (claims only).
pub const WELLNESS_CODES: &[(&str, &str)] = &[
    ("Z00.00", "Encounter for general adult medical examination without abnormal findings"),
    ("Z00.129", "Encounter for routine child health examination without abnormal findings"),
];

/// A diagnosis as coded: ICD-10-CM, and SNOMED CT when the diagnosis has a concept there.
fn dx_concept(dx: &Dx) -> Value {
    let mut codings = vec![coding(ICD10CM, dx.icd, dx.display)];
    if let Some((code, display)) = dx.snomed {
        codings.push(coding(SNOMED, code, display));
    }
    json!({ "coding": codings, "text": dx.words[0] })
}

fn clinical_status(code: &str) -> Value {
    let display = if code == "active" { "Active" } else { "Resolved" };
    concept("http://terminology.hl7.org/CodeSystem/condition-clinical", code, display)
}

fn confirmed() -> Value {
    concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")
}

/// A JSON string literal.
fn push_str_literal(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn wellness_code(age: i64) -> (&'static str, &'static str) {
    if age >= 18 { WELLNESS_CODES[0] } else { WELLNESS_CODES[1] }
}

/// The planted features' streams (see [`truth::feature_stream`]).
const COHORT: u64 = 1;
const DEFECTS: u64 = 2;
const DUPLICATES: u64 = 3;
const OUTBREAKS: u64 = 4;
const READMISSIONS: u64 = 5;
const BILLING: u64 = 6;
const BILLING_LAGS: u64 = 7;
const COMPLETION: u64 = 8;
const ROI_REQUESTS: u64 = 9;
const AMENDMENTS: u64 = 10;
const HOLDS: u64 = 11;

/// Resources of one patient are numbered within the patient so ids never depend on others.
pub(crate) fn write_patient(plan: &Plan, index: usize, batch: &mut Sink) -> Result<(), Error> {
    let mut rng = Rng::stream(plan.seed, index as u64);
    let person = draw_person(plan, &mut rng, index);
    // The patient's own resources, so that planted defects change only this record.
    let mut sink = Sink::default();
    sink.write(&patient_resource(plan, &person, &mut rng))?;
    sink.write(&coverage_resource(&person))?;
    for problem in &person.problems {
        sink.write(&chronic_condition(&person, problem))?;
    }
    let defect = truth::turn(plan.seed, DEFECTS, plan.truth.defect_rate, index).map(|turn| {
        let first = Rng::stream(plan.seed, 0xDEFEC7).below(defects::DefectClass::ALL.len() as u64) as usize;
        defects::DefectClass::for_turn(turn + first)
    });
    let mut visits = plan_visits(plan, &person, index, &mut rng);
    if let Some(class) = defect {
        make_room_for_defect(class, plan, &person, index, &mut visits);
    }
    let mut record = Record::default();
    let mut lags = truth::feature_stream(plan.seed, BILLING_LAGS, index);
    for (number, visit) in visits.iter().enumerate() {
        write_encounter(&person, visit, number + 1, &mut record, &mut rng, &mut lags, &mut sink)?;
    }
    record_truth(plan, &person, &visits, &mut sink)?;
    if let Some(class) = defect {
        plant_defect(class, plan, &person, index, &mut sink)?;
    }
    if let Some(turn) = truth::turn(plan.seed, BILLING, plan.truth.billing_defect_rate, index) {
        let first = Rng::stream(plan.seed, 0xB111).below(billing::BillingDefect::ALL.len() as u64) as usize;
        let kind = billing::BillingDefect::for_turn(turn + first);
        let mut rng = truth::feature_stream(plan.seed, BILLING, index);
        if let Some(found) = billing::inject(kind, &person.key, &mut sink, &mut rng)? {
            sink.record(truth::TruthFile::Billing, &found)?;
        }
    }
    if let Some(turn) = truth::turn(plan.seed, COMPLETION, plan.truth.completion_defect_rate, index) {
        let first = Rng::stream(plan.seed, 0xC0A1).below(completion::Deficiency::ALL.len() as u64) as usize;
        let kind = completion::Deficiency::for_turn(turn + first);
        let mut rng = truth::feature_stream(plan.seed, COMPLETION, index);
        if let Some(found) = completion::plant(kind, &mut sink, &mut rng)? {
            sink.record(truth::TruthFile::Deficiencies, &found)?;
        }
    }
    if truth::turn(plan.seed, ROI_REQUESTS, plan.truth.roi_request_rate, index).is_some() {
        let mut rng = truth::feature_stream(plan.seed, ROI_REQUESTS, index);
        let line = requests::roi_request(&person.key, &person.id(), &mut sink, &mut rng)?;
        sink.record(truth::TruthFile::RoiRequests, &line)?;
    }
    if truth::turn(plan.seed, AMENDMENTS, plan.truth.amendment_rate, index).is_some() {
        let mut rng = truth::feature_stream(plan.seed, AMENDMENTS, index);
        if let Some(line) = requests::amendment_request(&person.key, &person.id(), &mut sink, &mut rng)? {
            sink.record(truth::TruthFile::Amendments, &line)?;
        }
    }
    // A held record cannot be merged: holds go to people registered once.
    let registered_twice = truth::turn(plan.seed, DUPLICATES, plan.truth.duplicate_rate, index).is_some();
    if let Some(turn) = truth::turn(plan.seed, HOLDS, plan.truth.hold_rate, index)
        && !registered_twice
    {
        let mut rng = truth::feature_stream(plan.seed, HOLDS, index);
        if let Some(line) = requests::hold(&person.key, &person.id(), turn % 2 == 0, &mut sink, &mut rng)? {
            sink.record(truth::TruthFile::Holds, &line)?;
        }
    }
    if truth::turn(plan.seed, DUPLICATES, plan.truth.duplicate_rate, index).is_some()
        && let Some(original) = sink.parsed("Patient")?.into_iter().next()
    {
        let first_day = RECORDS_FROM.max(person.birth + 1);
        let last_day = person.death.map_or(TODAY - 1, |s| s / DAY - 1);
        if last_day > first_day {
            let visit = duplicates::Visit {
                key: &person.key,
                organization: PROVIDERS[person.clinic].id.to_string(),
                location: clinic_location(person.clinic),
                practitioner: person.pcp.clone(),
                first_day,
                last_day,
            };
            let mut rng = truth::feature_stream(plan.seed, DUPLICATES, index);
            duplicates::register_again(&original, &visit, &mut rng, &mut sink)?;
        }
    }
    batch.extend(sink);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1), TODAY);
        assert_eq!(days_from_civil(2019, 1, 1), RECORDS_FROM);
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_454] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_time(TODAY * DAY + 3661), "2026-01-01T01:01:01Z");
        assert_eq!(years_between(days_from_civil(2000, 3, 1), days_from_civil(2026, 2, 28)), 25);
    }
}
