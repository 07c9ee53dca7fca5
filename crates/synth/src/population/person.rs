//! Who a patient is: demographics, address, body size, payer, clinic and primary care
//! practitioner, the chronic diseases with their onsets, and the coded problem list. An
//! employee-patient takes their name, sex and birth date from the directory's staff.

use serde_json::Value;

use super::COHORT;
use super::directory::{
    CLINICS, HOSPITALS, MEDICAID, MEDICARE, PRACTITIONERS_PER_PROVIDER, Plan, employee_of, practitioner_id,
};
use crate::calendar::*;
use crate::clinical::{self, Disease, Dx};
use crate::rng::Rng;
use crate::truth;
use crate::truth::models::{self, CohortMember};
use crate::vocab;

pub(super) struct Problem {
    pub(super) disease: Disease,
    pub(super) dx: &'static Dx,
    pub(super) onset: i64,
    pub(super) id: String,
}

pub(super) struct Person {
    pub(super) key: String,
    pub(super) given: &'static str,
    pub(super) family: String,
    pub(super) female: bool,
    pub(super) birth: i64,
    /// Second of death, if the person died.
    pub(super) death: Option<i64>,
    pub(super) height_cm: f64,
    pub(super) bmi: f64,
    pub(super) diseases: Vec<(Disease, i64)>,
    pub(super) problems: Vec<Problem>,
    pub(super) clinic: usize,
    pub(super) hospital: usize,
    pub(super) pcp: String,
    pub(super) payer: usize,
    pub(super) address: Address,
    /// The practitioner (index into the staff) this patient is, if an employee.
    pub(super) employee: Option<usize>,
    pub(super) cohort: Option<CohortMember>,
}

pub(super) struct Address {
    pub(super) line: String,
    pub(super) apartment: Option<String>,
    pub(super) city: &'static str,
    pub(super) state: &'static str,
    pub(super) zip: String,
    pub(super) area_code: &'static str,
}

fn draw_address(rng: &mut Rng) -> Address {
    let (city, state, zip3, area_code) = *rng.pick(vocab::CITIES);
    let line = format!(
        "{} {} {}",
        rng.range(10, 9899),
        rng.pick(vocab::STREET_NAMES),
        rng.pick(vocab::STREET_SUFFIXES)
    );
    let zip = format!("{zip3}{:02}", rng.range(1, 99));
    let apartment = rng.chance(0.12).then(|| format!("Apt {}", rng.range(1, 40)));
    Address { line, apartment, city, state, zip, area_code }
}

impl Person {
    pub(super) fn id(&self) -> String {
        format!("pat-{}", self.key)
    }

    pub(super) fn reference(&self) -> Value {
        reference(&format!("Patient/{}", self.id()))
    }

    pub(super) fn age_on(&self, day: i64) -> i64 {
        years_between(self.birth, day)
    }

    pub(super) fn has(&self, disease: Disease, on: i64) -> bool {
        self.diseases.iter().any(|&(d, onset)| d == disease && onset <= on)
    }

    fn has_ever(&self, disease: Disease) -> bool {
        self.diseases.iter().any(|&(d, _)| d == disease)
    }

    pub(super) fn active_problems(&self, on: i64) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.onset <= on)
    }
}

/// Age in years at `TODAY`, roughly the US age pyramid by decade.
fn draw_age(rng: &mut Rng) -> i64 {
    const WEIGHTS: [f64; 10] = [12.0, 13.0, 13.0, 13.5, 12.5, 13.0, 12.0, 7.5, 3.2, 0.8];
    let total: f64 = WEIGHTS.iter().sum();
    let mut draw = rng.uniform(0.0, total);
    for (decade, weight) in WEIGHTS.iter().enumerate() {
        if draw < *weight {
            return decade as i64 * 10 + rng.range(0, 9);
        }
        draw -= weight;
    }
    95
}

pub(super) fn draw_person(plan: &Plan, rng: &mut Rng, index: usize) -> Person {
    let key = format!("{:06}", index + 1);
    let employee = employee_of(index, plan.staff.len());
    let mut female = rng.chance(0.505);
    let mut age = draw_age(rng);
    let mut birth = TODAY - age * 365 - age / 4 - rng.range(1, 364);
    if let Some(member) = employee.map(|j| &plan.staff[j]) {
        female = member.female;
        birth = member.birth;
        age = years_between(birth, TODAY);
    }
    let death_risk = match age {
        0..=39 => 0.003,
        40..=64 => 0.02,
        65..=79 => 0.08,
        _ => 0.25,
    };
    let death = rng.chance(death_risk).then(|| {
        let day = rng.range(RECORDS_FROM.max(birth + 30), TODAY - 2);
        day * DAY + rng.range(0, DAY - 1)
    });
    let last_day = death.map_or(TODAY, |s| s / DAY);
    let mut given = if female { rng.pick(vocab::FEMALE_GIVEN) } else { rng.pick(vocab::MALE_GIVEN) };
    let mut family = if rng.chance(0.04) {
        rng.pick(vocab::MULTI_PART_SURNAMES).to_string()
    } else if rng.chance(0.06) {
        format!("{}-{}", rng.pick(vocab::SURNAMES), rng.pick(vocab::SURNAMES))
    } else {
        rng.pick(vocab::SURNAMES).to_string()
    };
    if let Some(member) = employee.map(|j| &plan.staff[j]) {
        given = &member.given;
        family = member.family.to_string();
    }
    let address = draw_address(rng);
    let adult_age = age.min(18) as f64;
    let adult_height = if female { rng.normal(162.0, 6.5) } else { rng.normal(175.5, 7.0) };
    // A rough growth curve: 50 cm at birth, adult height at 18.
    let height_cm =
        if age >= 18 { adult_height } else { 50.0 + (adult_height - 50.0) * (adult_age / 18.0).powf(0.7) };
    let bmi = if age >= 18 {
        rng.normal(28.5, 5.5).clamp(16.5, 55.0)
    } else {
        rng.normal(18.0, 2.5).clamp(13.0, 32.0)
    };

    let clinic = CLINICS[rng.below(CLINICS.len() as u64) as usize];
    let hospital = HOSPITALS[rng.below(HOSPITALS.len() as u64) as usize];
    let pcp = practitioner_id(clinic, rng.below(PRACTITIONERS_PER_PROVIDER as u64) as usize);
    let payer = if age >= 65 {
        MEDICARE
    } else if rng.chance(0.2) {
        MEDICAID
    } else {
        2 + rng.below(2) as usize
    };

    let mut person = Person {
        key,
        given,
        family,
        female,
        birth,
        death,
        height_cm,
        bmi,
        diseases: Vec::new(),
        problems: Vec::new(),
        clinic,
        hospital,
        pcp,
        payer,
        address,
        employee,
        cohort: None,
    };
    let age_at_end = person.age_on(last_day);
    for &disease in clinical::DISEASES {
        let chance = if disease == Disease::Obesity {
            if age_at_end >= 18 && person.bmi >= 30.0 { 1.0 } else { 0.0 }
        } else {
            let has = |d: Disease| person.has_ever(d);
            clinical::prevalence(disease, age_at_end, female, &has)
        };
        let earliest = birth + clinical::earliest_onset_age(disease) * 365;
        if earliest >= last_day - 30 || !rng.chance(chance) {
            continue;
        }
        // Most chronic disease was diagnosed before the records start; some during.
        let onset = rng.range(earliest.max(last_day - 25 * 365), last_day - 30);
        person.diseases.push((disease, onset));
    }
    if !person.has_ever(Disease::LungCancer)
        && let Some(member) =
            models::enrol(&plan.truth, birth, &mut truth::feature_stream(plan.seed, COHORT, index))
        && death.is_none_or(|d| d / DAY > member.diagnosed_day + 1)
    {
        // Lung cancer decides this person's survival; nothing else starts after their death.
        person.death = member.death;
        let end = member.death.map_or(TODAY, |s| s / DAY);
        person.diseases.retain(|&(_, onset)| onset < end - 1);
        person.diseases.push((Disease::LungCancer, member.diagnosed_day));
        person.cohort = Some(member);
    }
    person.problems = problem_list(&person, rng);
    person
}

/// The coded problem list: combination codes where ICD-10-CM requires them.
fn problem_list(person: &Person, rng: &mut Rng) -> Vec<Problem> {
    let onset = |d: Disease| person.diseases.iter().find(|(x, _)| *x == d).map(|&(_, o)| o);
    let ckd = onset(Disease::ChronicKidney);
    let hf = onset(Disease::HeartFailure);
    let mut list: Vec<(Disease, &'static Dx, i64)> = Vec::new();
    let ckd_stage = match rng.below(3) {
        0 => &clinical::CKD3,
        1 => &clinical::CKD3A,
        _ => &clinical::CKD3B,
    };
    for &(disease, start) in &person.diseases {
        let dx: &'static Dx = match disease {
            Disease::Hypertension => match (hf.is_some(), ckd.is_some()) {
                (true, true) => &clinical::HTN_HF_CKD,
                (true, false) => &clinical::HTN_HF,
                (false, true) => &clinical::HTN_CKD,
                (false, false) => &clinical::HTN,
            },
            Disease::Diabetes => {
                if ckd.is_some() {
                    &clinical::T2DM_CKD
                } else {
                    &clinical::T2DM
                }
            }
            Disease::ChronicKidney => ckd_stage,
            Disease::HeartFailure => &clinical::HF,
            Disease::Copd => &clinical::COPD,
            Disease::CoronaryArtery => &clinical::CAD,
            Disease::AtrialFibrillation => &clinical::AFIB,
            Disease::Asthma => &clinical::ASTHMA,
            Disease::Depression => {
                if rng.chance(0.3) {
                    &clinical::MDD_RECURRENT
                } else {
                    &clinical::DEPRESSION
                }
            }
            Disease::Anxiety => &clinical::ANXIETY,
            Disease::Hyperlipidemia => &clinical::HYPERLIPIDEMIA,
            Disease::Obesity => &clinical::OBESITY,
            Disease::Reflux => &clinical::GERD,
            Disease::SleepApnea => &clinical::OSA,
            Disease::KneeArthritis => &clinical::KNEE_OA,
            Disease::BreastCancer => &clinical::BREAST_CANCER,
            Disease::ProstateCancer => &clinical::PROSTATE_CANCER,
            Disease::LungCancer => &clinical::LUNG_CANCER,
        };
        // A combination code is recorded once both parts are known.
        let recorded = match disease {
            Disease::Hypertension | Disease::Diabetes if dx.icd != "I10" && dx.icd != "E11.9" => {
                start.max(ckd.unwrap_or(start)).max(hf.unwrap_or(start))
            }
            _ => start,
        };
        list.push((disease, dx, recorded));
    }
    list.sort_by_key(|&(disease, _, onset)| (onset, disease));
    list.into_iter()
        .enumerate()
        .map(|(i, (disease, dx, onset))| Problem {
            disease,
            dx,
            onset,
            id: format!("cond-{}-p{:02}", person.key, i + 1),
        })
        .collect()
}
