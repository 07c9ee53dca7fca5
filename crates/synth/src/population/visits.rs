//! When and where a patient was seen: office visits, emergency visits, inpatient stays with
//! the modelled readmissions, a last admission for most deaths, and the visits the planted
//! features add (a cohort member's diagnosis, outbreak cases). Only the schedule is drawn
//! here; what each visit produces is written in `encounter`.

use super::directory::{
    HOSPITALS, PRACTITIONERS_PER_PROVIDER, Plan, clinic_location, ed_location, practitioner_id, ward_location,
};
use super::person::Person;
use super::{OUTBREAKS, READMISSIONS};
use crate::calendar::*;
use crate::clinical::{self, Disease, Presentation};
use crate::rng::Rng;
use crate::truth;
use crate::truth::models::{self, Syndrome};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Class {
    Ambulatory,
    Emergency,
    Inpatient,
}

impl Class {
    pub(super) fn code(self) -> (&'static str, &'static str) {
        match self {
            Class::Ambulatory => ("AMB", "ambulatory"),
            Class::Emergency => ("EMER", "emergency"),
            Class::Inpatient => ("IMP", "inpatient encounter"),
        }
    }
}

pub(super) struct Visit {
    pub(super) class: Class,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) presentation: Option<&'static Presentation>,
    /// Discharge disposition code and display, for inpatient stays.
    pub(super) disposition: Option<(&'static str, &'static str)>,
    pub(super) provider: usize,
    pub(super) location: String,
    pub(super) practitioner: String,
    pub(super) planted: Planted,
}

/// What ground truth a visit carries.
#[derive(Default)]
pub(super) struct Planted {
    /// The outbreak (index into the plan's) this visit is a case of.
    pub(super) outbreak: Option<usize>,
    /// For a stay whose readmission window is complete: chronic diseases at discharge and the
    /// modelled readmission risk.
    pub(super) index_stay: Option<(usize, f64)>,
    /// A readmission drawn from the model.
    pub(super) readmission: bool,
    /// The visit at which a cohort member's lung cancer is diagnosed and treatment ordered.
    pub(super) cohort_diagnosis: bool,
}

pub(super) fn plan_visits(plan: &Plan, person: &Person, index: usize, rng: &mut Rng) -> Vec<Visit> {
    let first_day = RECORDS_FROM.max(person.birth + 1);
    let last_day = person.death.map_or(TODAY - 1, |s| s / DAY - 1);
    let mut visits = Vec::new();
    if last_day <= first_day {
        return visits;
    }
    let years = (last_day - first_day) as f64 / 365.25;
    let age = person.age_on(last_day);
    let chronic = person.diseases.len() as f64;
    let ambulatory_rate =
        0.7 + 0.3 * chronic + if age >= 65 { 0.5 } else { 0.0 } + if age < 3 { 1.5 } else { 0.0 };
    let emergency_rate = 0.08 * (1.0 + 0.25 * chronic);
    let inpatient_rate = 0.012 * (1.0 + 0.5 * chronic) * if age >= 65 { 2.0 } else { 1.0 };
    let mut ambulatory = rng.poisson((ambulatory_rate * years).min(30.0));
    let emergencies = rng.poisson(emergency_rate * years);
    let stays = rng.poisson(inpatient_rate * years);
    if ambulatory + emergencies + stays == 0 {
        ambulatory = 1;
    }
    for _ in 0..ambulatory {
        let day = rng.range(first_day, last_day);
        let start = day * DAY + 8 * 3600 + rng.range(0, 34) * 900;
        let end = start + rng.range(2, 4) * 600;
        let presentation = if rng.chance(0.35) { Some(ambulatory_problem(person, day, rng)) } else { None };
        let slot = rng.below(PRACTITIONERS_PER_PROVIDER as u64) as usize;
        let practitioner =
            if rng.chance(0.8) { person.pcp.clone() } else { practitioner_id(person.clinic, slot) };
        visits.push(Visit {
            class: Class::Ambulatory,
            start,
            end,
            presentation,
            disposition: None,
            provider: person.clinic,
            location: clinic_location(person.clinic),
            practitioner,
            planted: Planted::default(),
        });
    }
    for _ in 0..emergencies {
        let day = rng.range(first_day, last_day);
        let start = day * DAY + rng.range(0, DAY - 1);
        let end = start + rng.range(2 * 3600, 8 * 3600);
        let presentation = emergency_problem(person, day, rng);
        visits.push(hospital_visit(person, Class::Emergency, start, end, presentation, None, rng));
    }
    // Inpatient stays. After each discharge comes a 30-day window in which the only admission
    // is a readmission drawn from the model, so the readmissions on record are the model's.
    let mut admissions: Vec<i64> =
        (0..stays).map(|_| rng.range(first_day, (last_day - 8).max(first_day))).collect();
    admissions.sort_unstable();
    let mut readmissions = truth::feature_stream(plan.seed, READMISSIONS, index);
    let mut quiet_until = i64::MIN;
    for planned in admissions {
        if planned <= quiet_until {
            continue;
        }
        let chain = stay_and_readmissions(plan, person, planned, last_day, rng, &mut readmissions);
        quiet_until = chain.last().map_or(planned, |stay| stay.end / DAY + models::READMISSION_WINDOW);
        visits.extend(chain);
    }
    // Most deaths on record happen in hospital at the end of a last admission.
    if let Some(death) = person.death
        && death / DAY > first_day + 10
        && rng.chance(0.7)
    {
        let presentation = if person.has(Disease::HeartFailure, death / DAY) {
            &clinical::HF_FLARE
        } else {
            &clinical::LUNG_INFECTION
        };
        // A cohort member's last admission comes after the visit that diagnosed them.
        let after = person.cohort.map_or(i64::MIN, |member| member.time_zero + 3600);
        let start = (death - rng.range(2, 9) * DAY).max(after);
        visits.push(hospital_visit(
            person,
            Class::Inpatient,
            start,
            death,
            presentation,
            Some(("exp", "Expired")),
            rng,
        ));
    }
    visits.sort_by_key(|v| (v.start, v.class));
    // Overlapping stays are unrealistic; later visits move after the stay.
    let mut busy_until = i64::MIN;
    for visit in &mut visits {
        if visit.start < busy_until {
            let shift = busy_until - visit.start + DAY;
            visit.start += shift;
            visit.end += shift;
        }
        busy_until = busy_until.max(visit.end);
    }
    let limit = person.death.unwrap_or(TODAY * DAY);
    visits.retain(|v| v.end <= limit && v.start < v.end);
    plant_visits(plan, person, index, &mut visits);
    if visits.is_empty() {
        // Everyone in the population was seen at least once.
        let day = first_day.max(last_day - 30).min(last_day);
        let start = day * DAY + 9 * 3600;
        visits.push(Visit {
            class: Class::Ambulatory,
            start,
            end: start + 1800,
            presentation: None,
            disposition: None,
            provider: person.clinic,
            location: clinic_location(person.clinic),
            practitioner: person.pcp.clone(),
            planted: Planted::default(),
        });
    }
    visits
}

/// Adds the visits of the planted features, in place of anything they overlap: the cohort
/// member's diagnosis, then outbreak cases (which give way to what is there).
fn plant_visits(plan: &Plan, person: &Person, index: usize, visits: &mut Vec<Visit>) {
    let overlaps = |a: &Visit, start: i64, end: i64| a.start < end && start < a.end;
    if let Some(member) = person.cohort {
        let (start, end) = models::cohort_visit(member.diagnosed_day);
        visits.retain(|v| !overlaps(v, start, end));
        visits.push(Visit {
            class: Class::Ambulatory,
            start,
            end,
            presentation: None,
            disposition: None,
            provider: person.clinic,
            location: clinic_location(person.clinic),
            practitioner: person.pcp.clone(),
            planted: Planted { cohort_diagnosis: true, ..Planted::default() },
        });
    }
    let first_day = RECORDS_FROM.max(person.birth + 1);
    let last_day = person.death.map_or(TODAY - 1, |s| s / DAY - 1);
    for (number, outbreak) in plan.outbreaks.iter().enumerate() {
        if person.address.city != outbreak.city {
            continue;
        }
        let mut rng = truth::feature_stream(plan.seed, OUTBREAKS + 16 * number as u64, index);
        if !rng.chance(outbreak.attack_rate) {
            continue;
        }
        let day = outbreak.onset_day(&mut rng);
        if day < first_day || day > last_day {
            continue;
        }
        let presentation =
            if outbreak.syndrome == Syndrome::InfluenzaLike { &clinical::FLU } else { &clinical::STOMACH };
        let mut visit = if rng.chance(0.3) {
            let start = day * DAY + rng.range(0, DAY - 4 * 3600);
            hospital_visit(
                person,
                Class::Emergency,
                start,
                start + rng.range(2 * 3600, 4 * 3600),
                presentation,
                None,
                &mut rng,
            )
        } else {
            let start = day * DAY + 8 * 3600 + rng.range(0, 34) * 900;
            Visit {
                class: Class::Ambulatory,
                start,
                end: start + 1200,
                presentation: Some(presentation),
                disposition: None,
                provider: person.clinic,
                location: clinic_location(person.clinic),
                practitioner: person.pcp.clone(),
                planted: Planted::default(),
            }
        };
        if visits.iter().any(|v| overlaps(v, visit.start, visit.end)) {
            continue;
        }
        visit.planted.outbreak = Some(number);
        visits.push(visit);
    }
    visits.sort_by_key(|v| (v.start, v.class));
}

/// An inpatient stay admitted on `day` and the readmissions the model draws after it (each a
/// stay with its own window), as long as a window ends before `last_day`.
pub(super) fn stay_and_readmissions(
    plan: &Plan,
    person: &Person,
    day: i64,
    last_day: i64,
    rng: &mut Rng,
    readmissions: &mut Rng,
) -> Vec<Visit> {
    let mut chain = Vec::new();
    let mut day = day;
    loop {
        let mut stay = inpatient_stay(person, day, rng);
        stay.planted.readmission = !chain.is_empty();
        let discharged = stay.end / DAY;
        let mut again = false;
        if discharged + models::READMISSION_WINDOW < last_day {
            let diseases = person.diseases.iter().filter(|&&(_, onset)| onset <= discharged).count();
            let risk = models::readmission_risk(&plan.truth, diseases);
            stay.planted.index_stay = Some((diseases, risk));
            again = readmissions.chance(risk);
        }
        chain.push(stay);
        if !again {
            return chain;
        }
        day = discharged + readmissions.range(1, models::READMISSION_WINDOW);
    }
}

fn inpatient_stay(person: &Person, day: i64, rng: &mut Rng) -> Visit {
    let presentation = inpatient_problem(person, day, rng);
    let (start, end) = stay_times(day, rng);
    let disposition = if person.age_on(day) >= 75 && rng.chance(0.3) {
        ("snf", "Skilled nursing facility")
    } else if presentation.dx.icd == "S72.001A" && rng.chance(0.5) {
        ("rehab", "Rehabilitation")
    } else {
        ("home", "Home")
    };
    hospital_visit(person, Class::Inpatient, start, end, presentation, Some(disposition), rng)
}

fn stay_times(day: i64, rng: &mut Rng) -> (i64, i64) {
    let start = day * DAY + rng.range(0, DAY - 1);
    let nights = rng.range(1, 7);
    let end = (day + nights) * DAY + 10 * 3600 + rng.range(0, 20) * 900;
    (start, end)
}

pub(super) fn hospital_visit(
    person: &Person,
    class: Class,
    start: i64,
    end: i64,
    presentation: &'static Presentation,
    disposition: Option<(&'static str, &'static str)>,
    rng: &mut Rng,
) -> Visit {
    let provider = if rng.chance(0.85) {
        person.hospital
    } else {
        HOSPITALS[rng.below(HOSPITALS.len() as u64) as usize]
    };
    let location = if class == Class::Inpatient { ward_location(provider) } else { ed_location(provider) };
    let practitioner = practitioner_id(provider, rng.below(PRACTITIONERS_PER_PROVIDER as u64) as usize);
    Visit {
        class,
        start,
        end,
        presentation: Some(presentation),
        disposition,
        provider,
        location,
        practitioner,
        planted: Planted::default(),
    }
}

fn ambulatory_problem(person: &Person, day: i64, rng: &mut Rng) -> &'static Presentation {
    let flu_season = matches!(month_of(day), 10..=12 | 1..=3);
    let adult = person.age_on(day) >= 18;
    let mut options: Vec<&'static Presentation> = vec![&clinical::COLD, &clinical::STOMACH];
    if flu_season {
        options.push(&clinical::FLU);
        options.push(&clinical::FLU);
    }
    if adult {
        options.push(&clinical::BACK);
        options.push(&clinical::BLADDER);
        if person.female {
            options.push(&clinical::BLADDER);
        }
    }
    if person.has(Disease::Asthma, day) {
        options.push(&clinical::ASTHMA_FLARE);
    }
    options[rng.below(options.len() as u64) as usize]
}

fn emergency_problem(person: &Person, day: i64, rng: &mut Rng) -> &'static Presentation {
    let adult = person.age_on(day) >= 18;
    let mut options: Vec<&'static Presentation> =
        vec![&clinical::STOMACH, &clinical::WRIST, &clinical::LUNG_INFECTION];
    if matches!(month_of(day), 10..=12 | 1..=3) {
        options.push(&clinical::FLU);
    }
    if adult {
        options.push(&clinical::CHEST);
        options.push(&clinical::CHEST);
        options.push(&clinical::BLADDER);
    }
    if person.has(Disease::Asthma, day) {
        options.push(&clinical::ASTHMA_FLARE);
    }
    if person.has(Disease::Copd, day) {
        options.push(&clinical::COPD_FLARE);
    }
    options[rng.below(options.len() as u64) as usize]
}

fn inpatient_problem(person: &Person, day: i64, rng: &mut Rng) -> &'static Presentation {
    let mut options: Vec<&'static Presentation> = vec![&clinical::LUNG_INFECTION];
    if person.age_on(day) >= 65 {
        options.push(&clinical::HIP);
        options.push(&clinical::HIP);
    }
    if person.has(Disease::Copd, day) {
        options.push(&clinical::COPD_FLARE);
        options.push(&clinical::COPD_FLARE);
    }
    if person.has(Disease::HeartFailure, day) {
        options.push(&clinical::HF_FLARE);
        options.push(&clinical::HF_FLARE);
    }
    options[rng.below(options.len() as u64) as usize]
}
