//! What the planted features add to a patient's record beyond its clinical content: the
//! ground-truth lines for the cohort, outbreaks, readmissions and employee-patients, the
//! planted data-quality defect, and the visit a defect needs when the record lacks it.

use serde_json::json;

use super::directory::{PRACTITIONERS_PER_PROVIDER, Plan, practitioner_id};
use super::person::Person;
use super::visits::{Class, Visit, hospital_visit, stay_and_readmissions};
use super::{DEFECTS, READMISSIONS};
use crate::calendar::*;
use crate::clinical;
use crate::truth::models;
use crate::truth::{self, TruthFile, billing, defects};
use crate::{Error, Sink};

fn encounter_reference(person: &Person, number: usize) -> String {
    format!("Encounter/enc-{}-{:02}", person.key, number + 1)
}

/// Lists the patient's part in the cohort, outbreaks, readmissions and staff.
pub(super) fn record_truth(
    plan: &Plan,
    person: &Person,
    visits: &[Visit],
    sink: &mut Sink,
) -> Result<(), Error> {
    let patient = format!("Patient/{}", person.id());
    if let Some(j) = person.employee {
        let practitioner = format!(
            "Practitioner/{}",
            practitioner_id(j / PRACTITIONERS_PER_PROVIDER, j % PRACTITIONERS_PER_PROVIDER)
        );
        sink.record(
            TruthFile::Employees,
            &json!({ "practitioner": practitioner, "patient": patient, "staffId": plan.staff[j].staff_id }),
        )?;
    }
    if let Some(member) = person.cohort
        && visits.iter().any(|v| v.planted.cohort_diagnosis)
    {
        sink.record(TruthFile::Cohort, &member.to_json(&person.id()))?;
    }
    let limit_day = person.death.map_or(TODAY, |s| s / DAY);
    for (number, visit) in visits.iter().enumerate() {
        if let Some(outbreak) = visit.planted.outbreak.map(|o| &plan.outbreaks[o]) {
            sink.record(
                TruthFile::OutbreakCases,
                &json!({ "outbreak": outbreak.id, "syndrome": outbreak.syndrome.id(), "patient": patient,
                         "encounter": encounter_reference(person, number), "date": date(visit.start / DAY) }),
            )?;
        }
        let Some((diseases, risk)) = visit.planted.index_stay else { continue };
        let discharged = visit.end / DAY;
        if discharged + models::READMISSION_WINDOW >= limit_day {
            continue;
        }
        let next = visits
            .iter()
            .enumerate()
            .skip(number + 1)
            .find(|(_, v)| v.class == Class::Inpatient)
            .filter(|(_, v)| v.start / DAY - discharged <= models::READMISSION_WINDOW);
        sink.record(
            TruthFile::Readmissions,
            &json!({
                "patient": patient,
                "index": encounter_reference(person, number),
                "discharged": date_time(visit.end),
                "chronicDiseases": diseases,
                "risk": (risk * 1e6).round() / 1e6,
                "readmitted": next.is_some(),
                "readmission": next.map(|(n, _)| encounter_reference(person, n)),
                "days": next.map(|(_, v)| v.start / DAY - discharged),
                "modelled": next.map(|(_, v)| v.planted.readmission),
            }),
        )?;
    }
    Ok(())
}

pub(super) fn plant_defect(
    class: defects::DefectClass,
    plan: &Plan,
    person: &Person,
    index: usize,
    sink: &mut Sink,
) -> Result<(), Error> {
    // A patient borrows the number of the one before, who has no defect and so keeps it.
    let lender = index
        .checked_sub(1)
        .filter(|&lender| truth::turn(plan.seed, DEFECTS, plan.truth.defect_rate, lender).is_none());
    let borrowable_mrn = lender.map(|lender| {
        let key = format!("{:06}", lender + 1);
        (format!("pat-{key}"), format!("M{key}"))
    });
    let facts =
        defects::PatientFacts { id: &person.id(), key: &person.key, female: person.female, borrowable_mrn };
    let mut rng = truth::feature_stream(plan.seed, DEFECTS, index);
    if let Some(found) = defects::inject(class, &facts, sink, &mut rng)? {
        billing::record_disagreements(&found, sink)?;
        sink.record(TruthFile::Defects, &found)?;
    }
    Ok(())
}

/// Gives a record what its planted defect needs when it lacks it: an inpatient stay, or a
/// diagnosis with a documented laterality (a wrist fracture seen in the emergency department).
pub(super) fn make_room_for_defect(
    class: defects::DefectClass,
    plan: &Plan,
    person: &Person,
    index: usize,
    visits: &mut Vec<Visit>,
) {
    let has_stay = visits.iter().any(|v| v.class == Class::Inpatient);
    let has_lateral = person.problems.iter().any(|p| defects::has_unspecified_sibling(p.dx.icd))
        || visits.iter().filter_map(|v| v.presentation).any(|p| defects::has_unspecified_sibling(p.dx.icd));
    let needs_stay = class.needs_inpatient_stay() && !has_stay;
    let needs_lateral = class == defects::DefectClass::UnspecifiedCode && !has_lateral;
    if !needs_stay && !needs_lateral {
        return;
    }
    let first_day = RECORDS_FROM.max(person.birth + 1);
    let last_day = person.death.map_or(TODAY - 1, |s| s / DAY - 1) - 8;
    if last_day <= first_day {
        return;
    }
    let mut rng = truth::feature_stream(plan.seed, DEFECTS + 64, index);
    let mut readmissions = truth::feature_stream(plan.seed, READMISSIONS + 64, index);
    let limit = person.death.unwrap_or(TODAY * DAY);
    for _ in 0..8 {
        let day = rng.range(first_day, last_day);
        let added = if needs_stay {
            stay_and_readmissions(plan, person, day, last_day + 7, &mut rng, &mut readmissions)
        } else {
            let start = day * DAY + rng.range(0, DAY - 8 * 3600);
            let end = start + rng.range(2 * 3600, 6 * 3600);
            vec![hospital_visit(person, Class::Emergency, start, end, &clinical::WRIST, None, &mut rng)]
        };
        // Nothing in the way, and no other stay within a readmission window either side.
        let (Some(first), Some(last)) = (added.first(), added.last()) else { continue };
        let margin = if needs_stay { (models::READMISSION_WINDOW + 1) * DAY } else { 0 };
        let clear = !visits.iter().any(|v| {
            let reach = if v.class == Class::Inpatient { margin } else { 0 };
            v.start - reach < last.end && first.start - reach < v.end
        });
        if clear && last.end <= limit {
            visits.extend(added);
            visits.sort_by_key(|v| (v.start, v.class));
            return;
        }
    }
}
