//! The people and their records: the care directory (organizations, locations,
//! practitioners), then each patient with a problem list, encounters and what each encounter
//! produces (observations, notes, orders, claims).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::calendar::*;
use crate::clinical::{self, Disease, Dx, Presentation};
use crate::rng::Rng;
use crate::truth::models::{self, CohortMember, Outbreak, Syndrome};
use crate::truth::{self, TruthFile, TruthOptions, defects, duplicates};
use crate::vocab;
use crate::{Error, GenerateOptions, Sink};

fn dx_concept(dx: &Dx) -> Value {
    let mut codings = vec![coding(ICD10CM, dx.icd, dx.display)];
    if let Some((code, display)) = dx.snomed {
        codings.push(coding(SNOMED, code, display));
    }
    json!({ "coding": codings, "text": dx.words[0] })
}

/// Encounter reasons that are not conditions: the wellness visits (claims only).
pub const WELLNESS_CODES: &[(&str, &str)] = &[
    ("Z00.00", "Encounter for general adult medical examination without abnormal findings"),
    ("Z00.129", "Encounter for routine child health examination without abnormal findings"),
];

// ---------------------------------------------------------------------------------------------
// The care directory.

struct Provider {
    id: &'static str,
    name: &'static str,
    hospital: bool,
    line: &'static str,
    city: &'static str,
    zip: &'static str,
    phone: &'static str,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        id: "org-riverside",
        name: "Riverside General Hospital",
        hospital: true,
        line: "3535 Olentangy River Rd",
        city: "Columbus",
        zip: "43214",
        phone: "614-555-0100",
    },
    Provider {
        id: "org-stbrendan",
        name: "St. Brendan Medical Center",
        hospital: true,
        line: "500 Hospital Dr",
        city: "Newark",
        zip: "43055",
        phone: "740-555-0110",
    },
    Provider {
        id: "org-maplestreet",
        name: "Maple Street Family Medicine",
        hospital: false,
        line: "120 Maple St",
        city: "Columbus",
        zip: "43215",
        phone: "614-555-0120",
    },
    Provider {
        id: "org-lakeview",
        name: "Lakeview Primary Care",
        hospital: false,
        line: "88 Lakeview Ave",
        city: "Delaware",
        zip: "43015",
        phone: "740-555-0130",
    },
    Provider {
        id: "org-northgate",
        name: "Northgate Community Health Center",
        hospital: false,
        line: "2100 Northgate Blvd",
        city: "Lancaster",
        zip: "43130",
        phone: "740-555-0140",
    },
];

const HOSPITALS: &[usize] = &[0, 1];
const CLINICS: &[usize] = &[2, 3, 4];

struct Payer {
    id: &'static str,
    name: &'static str,
    plan: &'static str,
}

const MEDICARE: usize = 0;
const MEDICAID: usize = 1;
const PAYERS: &[Payer] = &[
    Payer { id: "org-medicare", name: "Medicare", plan: "Medicare Part A and B" },
    Payer { id: "org-medicaid", name: "Ohio Medicaid", plan: "Medicaid managed care" },
    Payer { id: "org-buckeye", name: "Buckeye Mutual Health Plan", plan: "Buckeye PPO" },
    Payer { id: "org-greatlakes", name: "Great Lakes Health Insurance", plan: "Great Lakes HMO" },
];

const PRACTITIONERS_PER_PROVIDER: usize = 8;

fn practitioner_id(provider: usize, slot: usize) -> String {
    format!("prac-{:03}", provider * PRACTITIONERS_PER_PROVIDER + slot + 1)
}

fn ed_location(provider: usize) -> String {
    format!("loc-{}-ed", &PROVIDERS[provider].id[4..])
}

fn ward_location(provider: usize) -> String {
    format!("loc-{}-ward", &PROVIDERS[provider].id[4..])
}

fn clinic_location(provider: usize) -> String {
    format!("loc-{}-clinic", &PROVIDERS[provider].id[4..])
}

/// The stream of the directory, apart from every patient's.
const DIRECTORY_STREAM: u64 = u64::MAX;

/// A practitioner of the directory.
pub(crate) struct StaffMember {
    given: &'static str,
    family: &'static str,
    female: bool,
    birth: i64,
    staff_id: String,
}

const STAFF_SYSTEM: &str = "http://hospital.example.org/staff";

fn draw_staff(seed: u64) -> Vec<StaffMember> {
    let mut rng = Rng::stream(seed, DIRECTORY_STREAM);
    let mut staff = Vec::new();
    for provider in 0..PROVIDERS.len() {
        for slot in 0..PRACTITIONERS_PER_PROVIDER {
            let female = rng.chance(0.5);
            let given = if female { rng.pick(vocab::FEMALE_GIVEN) } else { rng.pick(vocab::MALE_GIVEN) };
            let family = rng.pick(vocab::SURNAMES);
            let age = rng.range(28, 66);
            let birth = TODAY - age * 365 - age / 4 - rng.range(1, 364);
            let staff_id = format!("S{:05}", 1000 + provider * 100 + slot);
            staff.push(StaffMember { given, family, female, birth, staff_id });
        }
    }
    staff
}

/// Every third practitioner is also a patient: practitioner `3k` is patient `3 + 51k`.
fn employee_of(index: usize, staff: usize) -> Option<usize> {
    let k = index.checked_sub(3)?;
    (k % 51 == 0 && 3 * (k / 51) < staff).then_some(3 * (k / 51))
}

/// What every patient's generation shares: the seed, what to plant, the directory's staff
/// and the outbreaks.
pub(crate) struct Plan {
    seed: u64,
    truth: TruthOptions,
    staff: Vec<StaffMember>,
    outbreaks: Vec<Outbreak>,
}

impl Plan {
    pub(crate) fn new(options: &GenerateOptions) -> Plan {
        Plan {
            seed: options.seed,
            truth: options.truth.clone(),
            staff: draw_staff(options.seed),
            outbreaks: models::outbreaks(options.seed, &options.truth),
        }
    }

    pub(crate) fn parameters(&self, patients: usize) -> Value {
        truth::parameters(self.seed, patients, &self.truth, &self.outbreaks)
    }
}

pub(crate) fn write_directory(plan: &Plan, sink: &mut Sink) -> Result<(), Error> {
    let org_type = "http://terminology.hl7.org/CodeSystem/organization-type";
    for provider in PROVIDERS {
        sink.write(&json!({
            "resourceType": "Organization",
            "id": provider.id,
            "active": true,
            "type": [concept(org_type, "prov", "Healthcare Provider")],
            "name": provider.name,
            "telecom": [{ "system": "phone", "value": provider.phone, "use": "work" }],
            "address": [{ "use": "work", "line": [provider.line], "city": provider.city, "state": "OH",
                          "postalCode": provider.zip, "country": "US" }],
        }))?;
    }
    for payer in PAYERS {
        sink.write(&json!({
            "resourceType": "Organization",
            "id": payer.id,
            "active": true,
            "type": [concept(org_type, "pay", "Payer")],
            "name": payer.name,
        }))?;
    }
    let role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
    for (index, provider) in PROVIDERS.iter().enumerate() {
        let mut sites = Vec::new();
        if provider.hospital {
            sites.push((
                ed_location(index),
                format!("{} Emergency Department", provider.name),
                "ER",
                "Emergency room",
            ));
            sites.push((
                ward_location(index),
                format!("{} Medical-Surgical Unit", provider.name),
                "HU",
                "Hospital unit",
            ));
        } else {
            sites.push((clinic_location(index), provider.name.to_string(), "PC", "Primary care clinic"));
        }
        for (id, name, code, display) in sites {
            sink.write(&json!({
                "resourceType": "Location",
                "id": id,
                "status": "active",
                "name": name,
                "mode": "instance",
                "type": [concept(role, code, display)],
                "telecom": [{ "system": "phone", "value": provider.phone, "use": "work" }],
                "address": { "use": "work", "line": [provider.line], "city": provider.city, "state": "OH",
                             "postalCode": provider.zip, "country": "US" },
                "managingOrganization": reference(&format!("Organization/{}", provider.id)),
            }))?;
        }
    }
    for (number, member) in plan.staff.iter().enumerate() {
        let (given, family) = (member.given, member.family);
        sink.write(&json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(number / PRACTITIONERS_PER_PROVIDER, number % PRACTITIONERS_PER_PROVIDER),
            "identifier": [{ "system": STAFF_SYSTEM, "value": member.staff_id }],
            "active": true,
            "name": [{ "use": "official", "family": family, "given": [given], "prefix": ["Dr."] }],
            "telecom": [{ "system": "email", "value": format!("{}.{}@hospital.example.org",
                given.to_ascii_lowercase(), family.to_ascii_lowercase().replace(['\'', ' ', '.'], "")), "use": "work" }],
            "gender": if member.female { "female" } else { "male" },
            "birthDate": date(member.birth),
        }))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A patient.

struct Problem {
    disease: Disease,
    dx: &'static Dx,
    onset: i64,
    id: String,
}

struct Person {
    key: String,
    given: &'static str,
    family: String,
    female: bool,
    birth: i64,
    /// Second of death, if the person died.
    death: Option<i64>,
    height_cm: f64,
    bmi: f64,
    diseases: Vec<(Disease, i64)>,
    problems: Vec<Problem>,
    clinic: usize,
    hospital: usize,
    pcp: String,
    payer: usize,
    address: Address,
    /// The practitioner (index into the staff) this patient is, if an employee.
    employee: Option<usize>,
    cohort: Option<CohortMember>,
}

struct Address {
    line: String,
    apartment: Option<String>,
    city: &'static str,
    state: &'static str,
    zip: String,
    area_code: &'static str,
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
    fn id(&self) -> String {
        format!("pat-{}", self.key)
    }

    fn reference(&self) -> Value {
        reference(&format!("Patient/{}", self.id()))
    }

    fn age_on(&self, day: i64) -> i64 {
        years_between(self.birth, day)
    }

    fn has(&self, disease: Disease, on: i64) -> bool {
        self.diseases.iter().any(|&(d, onset)| d == disease && onset <= on)
    }

    fn has_ever(&self, disease: Disease) -> bool {
        self.diseases.iter().any(|&(d, _)| d == disease)
    }

    fn active_problems(&self, on: i64) -> impl Iterator<Item = &Problem> {
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

fn draw_person(plan: &Plan, rng: &mut Rng, index: usize) -> Person {
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

/// The planted features' streams (see [`truth::feature_stream`]).
const COHORT: u64 = 1;
const DEFECTS: u64 = 2;
const DUPLICATES: u64 = 3;
const OUTBREAKS: u64 = 4;
const READMISSIONS: u64 = 5;

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

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Ambulatory,
    Emergency,
    Inpatient,
}

impl Class {
    fn code(self) -> (&'static str, &'static str) {
        match self {
            Class::Ambulatory => ("AMB", "ambulatory"),
            Class::Emergency => ("EMER", "emergency"),
            Class::Inpatient => ("IMP", "inpatient encounter"),
        }
    }
}

struct Visit {
    class: Class,
    start: i64,
    end: i64,
    presentation: Option<&'static Presentation>,
    /// Discharge disposition code and display, for inpatient stays.
    disposition: Option<(&'static str, &'static str)>,
    provider: usize,
    location: String,
    practitioner: String,
    planted: Planted,
}

/// What ground truth a visit carries.
#[derive(Default)]
struct Planted {
    /// The outbreak (index into the plan's) this visit is a case of.
    outbreak: Option<usize>,
    /// For a stay whose readmission window is complete: chronic diseases at discharge and the
    /// modelled readmission risk.
    index_stay: Option<(usize, f64)>,
    /// A readmission drawn from the model.
    readmission: bool,
    /// The visit at which a cohort member's lung cancer is diagnosed and treatment ordered.
    cohort_diagnosis: bool,
}

fn plan_visits(plan: &Plan, person: &Person, index: usize, rng: &mut Rng) -> Vec<Visit> {
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
fn stay_and_readmissions(
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

fn hospital_visit(
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

// ---------------------------------------------------------------------------------------------
// Writing a patient.

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
    for (number, visit) in visits.iter().enumerate() {
        write_encounter(&person, visit, number + 1, &mut record, &mut rng, &mut sink)?;
    }
    record_truth(plan, &person, &visits, &mut sink)?;
    if let Some(class) = defect {
        plant_defect(class, plan, &person, index, &mut sink)?;
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

fn encounter_reference(person: &Person, number: usize) -> String {
    format!("Encounter/enc-{}-{:02}", person.key, number + 1)
}

/// Lists the patient's part in the cohort, outbreaks, readmissions and staff.
fn record_truth(plan: &Plan, person: &Person, visits: &[Visit], sink: &mut Sink) -> Result<(), Error> {
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

fn plant_defect(
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
        sink.record(TruthFile::Defects, &found)?;
    }
    Ok(())
}

/// Gives a record what its planted defect needs when it lacks it: an inpatient stay, or a
/// diagnosis with a documented laterality (a wrist fracture seen in the emergency department).
fn make_room_for_defect(
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

/// What a patient's record has accumulated across encounters.
#[derive(Default)]
struct Record {
    prescribed: Vec<&'static str>,
    immunizations: u32,
    procedures: u32,
    medications: u32,
    tdap_given: bool,
    covid_doses: u32,
    flu_seasons: Vec<i64>,
    screened_colon: bool,
    last_mammogram: Option<i64>,
}

fn patient_resource(plan: &Plan, person: &Person, rng: &mut Rng) -> Value {
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    let home = &person.address;
    let mut lines = vec![Value::from(home.line.as_str())];
    if let Some(apartment) = &home.apartment {
        lines.push(Value::from(apartment.as_str()));
    }
    let address = json!({ "use": "home", "type": "physical", "line": lines, "city": home.city, "state": home.state,
                          "postalCode": home.zip, "country": "US" });
    let mut given = vec![Value::from(person.given)];
    if rng.chance(0.6) {
        let middle = if person.female { rng.pick(vocab::FEMALE_GIVEN) } else { rng.pick(vocab::MALE_GIVEN) };
        if *middle != person.given {
            given.push(Value::from(*middle));
        }
    }
    let mut names = vec![json!({ "use": "official", "family": person.family, "given": given })];
    if let Some((_, nickname)) = vocab::NICKNAMES.iter().find(|(name, _)| *name == person.given)
        && rng.chance(0.5)
    {
        names.push(json!({ "use": "nickname", "given": [nickname] }));
    }
    // 999 is never issued as an SSN area number, so these can never be real.
    let ssn = format!("999-{:02}-{:04}", rng.range(10, 99), rng.range(1, 9999));
    let mut patient = json!({
        "resourceType": "Patient",
        "id": person.id(),
        "identifier": [
            { "use": "usual", "type": concept(v2, "MR", "Medical record number"),
              "system": "http://hospital.example.org/mrn", "value": format!("M{}", person.key) },
            { "use": "official", "type": concept(v2, "SS", "Social Security number"),
              "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn },
        ],
        "active": true,
        "name": names,
        "telecom": [{ "system": "phone", "value": format!("{}-555-01{:02}", home.area_code, rng.range(0, 99)),
                      "use": if rng.chance(0.7) { "mobile" } else { "home" } }],
        "gender": if person.female { "female" } else { "male" },
        "birthDate": date(person.birth),
    });
    if let (Some(member), Some(identifiers)) =
        (person.employee.map(|j| &plan.staff[j]), patient.get_mut("identifier").and_then(Value::as_array_mut))
    {
        identifiers.push(json!({ "use": "secondary", "type": concept(v2, "EI", "Employee number"),
                                 "system": STAFF_SYSTEM, "value": member.staff_id }));
    }
    if let (Some(death), Some(object)) = (person.death, patient.as_object_mut()) {
        object.insert("deceasedDateTime".into(), Value::from(date_time(death)));
    }
    if let Some(object) = patient.as_object_mut() {
        object.insert("address".into(), json!([address]));
        object.insert(
            "generalPractitioner".into(),
            json!([reference(&format!("Practitioner/{}", person.pcp))]),
        );
        object.insert(
            "managingOrganization".into(),
            reference(&format!("Organization/{}", PROVIDERS[person.clinic].id)),
        );
    }
    patient
}

fn coverage_resource(person: &Person) -> Value {
    let payer = &PAYERS[person.payer];
    json!({
        "resourceType": "Coverage",
        "id": format!("cov-{}", person.key),
        "status": "active",
        "type": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EHCPOL", "extended healthcare"),
        "subscriberId": format!("{}{}", &payer.id[4..6].to_ascii_uppercase(), person.key),
        "beneficiary": person.reference(),
        "relationship": concept("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
        "payor": [reference(&format!("Organization/{}", payer.id))],
        "class": [{ "type": concept("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"),
                    "value": payer.id[4..].to_string(), "name": payer.plan }],
    })
}

fn clinical_status(code: &str) -> Value {
    let display = if code == "active" { "Active" } else { "Resolved" };
    concept("http://terminology.hl7.org/CodeSystem/condition-clinical", code, display)
}

fn confirmed() -> Value {
    concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")
}

fn chronic_condition(person: &Person, problem: &Problem) -> Value {
    json!({
        "resourceType": "Condition",
        "id": problem.id,
        "clinicalStatus": clinical_status("active"),
        "verificationStatus": confirmed(),
        "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")],
        "code": dx_concept(problem.dx),
        "subject": person.reference(),
        "onsetDateTime": date(problem.onset),
        "recordedDate": date(problem.onset.max(RECORDS_FROM)),
    })
}

/// One of several phrases for the same thing, so notes do not all read alike.
fn phrase(rng: &mut Rng, words: &'static [&'static str]) -> &'static str {
    if rng.chance(0.5) { words[0] } else { words[rng.below(words.len() as u64) as usize] }
}

struct Vitals {
    systolic: i64,
    diastolic: i64,
    heart_rate: i64,
    temperature: f64,
    respiratory_rate: i64,
    saturation: i64,
    weight: f64,
    height: f64,
    bmi: f64,
}

fn draw_vitals(person: &Person, visit: &Visit, rng: &mut Rng) -> Vitals {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let problem = visit.presentation.map(|p| p.dx.icd);
    let hypertensive = person.has(Disease::Hypertension, day);
    let systolic = if age < 12 {
        rng.range(90, 112)
    } else if hypertensive {
        rng.range(128, 162)
    } else {
        rng.range(104, 132)
    };
    let diastolic = (systolic as f64 * rng.uniform(0.58, 0.68)) as i64;
    let febrile = matches!(problem, Some("J10.1" | "J18.9"));
    let temperature = if febrile { rng.uniform(38.0, 39.6) } else { rng.uniform(36.3, 37.3) };
    let heart_rate = if age < 2 {
        rng.range(100, 150)
    } else if age < 12 {
        rng.range(75, 115)
    } else if febrile {
        rng.range(92, 118)
    } else {
        rng.range(58, 92)
    };
    let respiratory_rate = if age < 2 {
        rng.range(26, 40)
    } else if age < 12 {
        rng.range(18, 26)
    } else {
        rng.range(12, 20)
    };
    let short_of_breath = matches!(problem, Some("J18.9" | "J44.1" | "I50.23" | "J45.901"));
    let saturation = if short_of_breath {
        rng.range(86, 93)
    } else if person.has(Disease::Copd, day) {
        rng.range(90, 95)
    } else {
        rng.range(95, 100)
    };
    // Height follows the same curve as at the person's present age, per age at the visit.
    let adult_height = person.height_cm;
    let height =
        if age >= 18 { adult_height } else { 50.0 + (adult_height - 50.0) * (age as f64 / 18.0).powf(0.7) };
    let bmi =
        if age >= 18 { person.bmi + rng.normal(0.0, 0.4) } else { rng.normal(17.0, 1.5).clamp(13.0, 30.0) };
    let weight = bmi * (height / 100.0) * (height / 100.0);
    Vitals { systolic, diastolic, heart_rate, temperature, respiratory_rate, saturation, weight, height, bmi }
}

/// Observations are most of the output, so they are written as JSON text directly instead of
/// through a `Value` tree; the shape is the same.
struct ObservationWriter<'a> {
    person: &'a Person,
    encounter_id: &'a str,
    effective: String,
    count: u32,
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

/// `"value":V,"unit":U,"system":UCUM,"code":U` (inside a Quantity's braces).
fn quantity_fields(out: &mut String, value: &str, unit: &str) {
    let _ = write!(out, "\"value\":{value},\"unit\":");
    push_str_literal(out, unit);
    let _ = write!(out, ",\"system\":\"{UCUM}\",\"code\":");
    push_str_literal(out, unit);
}

impl ObservationWriter<'_> {
    /// Writes one observation; `value` is the already-written value element
    /// (`"valueQuantity":{...}` or `"component":[...]`).
    fn write(
        &mut self,
        sink: &mut Sink,
        category: (&str, &str),
        code: &str,
        display: &str,
        value: &str,
        issued: Option<&str>,
    ) -> Result<(), Error> {
        self.count += 1;
        let mut out = String::with_capacity(640);
        out.push_str("{\"resourceType\":\"Observation\",\"id\":");
        push_str_literal(&mut out, &format!("obs-{}-{:02}", &self.encounter_id[4..], self.count));
        out.push_str(",\"status\":\"final\",\"category\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":");
        push_str_literal(&mut out, category.0);
        out.push_str(",\"display\":");
        push_str_literal(&mut out, category.1);
        let _ = write!(out, "}}]}}],\"code\":{{\"coding\":[{{\"system\":\"{LOINC}\",\"code\":");
        push_str_literal(&mut out, code);
        out.push_str(",\"display\":");
        push_str_literal(&mut out, display);
        out.push_str("}],\"text\":");
        push_str_literal(&mut out, display);
        out.push_str("},\"subject\":{\"reference\":");
        push_str_literal(&mut out, &format!("Patient/{}", self.person.id()));
        out.push_str("},\"encounter\":{\"reference\":");
        push_str_literal(&mut out, &format!("Encounter/{}", self.encounter_id));
        out.push_str("},\"effectiveDateTime\":");
        push_str_literal(&mut out, &self.effective);
        if let Some(issued) = issued {
            out.push_str(",\"issued\":");
            push_str_literal(&mut out, issued);
        }
        out.push(',');
        out.push_str(value);
        out.push('}');
        sink.write_json_line("Observation", out.as_bytes())
    }

    fn quantity(
        &mut self,
        sink: &mut Sink,
        category: (&str, &str),
        code: &str,
        display: &str,
        value: &str,
        unit: &str,
    ) -> Result<(), Error> {
        let mut element = String::from("\"valueQuantity\":{");
        quantity_fields(&mut element, value, unit);
        element.push('}');
        self.write(sink, category, code, display, &element, None)
    }
}

/// A laboratory result as reported, for the note and the claim.
struct LabResult {
    code: &'static str,
    unit: &'static str,
    value: f64,
    places: usize,
}

const VITAL_SIGNS: (&str, &str) = ("vital-signs", "Vital Signs");
const LABORATORY: (&str, &str) = ("laboratory", "Laboratory");

fn write_observations(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    vitals: &Vitals,
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<Vec<LabResult>, Error> {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let effective = date_time(visit.start + 300 + rng.range(0, 600));
    let mut writer = ObservationWriter { person, encounter_id, effective, count: 0 };
    let v = vitals;
    let mut components = String::from("\"component\":[");
    for (i, (code, display, value)) in [
        ("8480-6", "Systolic blood pressure", v.systolic),
        ("8462-4", "Diastolic blood pressure", v.diastolic),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            components.push(',');
        }
        let _ = write!(
            components,
            "{{\"code\":{{\"coding\":[{{\"system\":\"{LOINC}\",\"code\":\"{code}\",\"display\":\"{display}\"}}]}},\"valueQuantity\":{{"
        );
        quantity_fields(&mut components, &value.to_string(), "mm[Hg]");
        components.push_str("}}");
    }
    components.push(']');
    writer.write(
        sink,
        VITAL_SIGNS,
        "85354-9",
        "Blood pressure panel with all children optional",
        &components,
        None,
    )?;
    writer.quantity(sink, VITAL_SIGNS, "8867-4", "Heart rate", &v.heart_rate.to_string(), "/min")?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "9279-1",
        "Respiratory rate",
        &v.respiratory_rate.to_string(),
        "/min",
    )?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "8310-5",
        "Body temperature",
        &format!("{:.1}", v.temperature),
        "Cel",
    )?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "2708-6",
        "Oxygen saturation in Arterial blood",
        &v.saturation.to_string(),
        "%",
    )?;
    writer.quantity(sink, VITAL_SIGNS, "29463-7", "Body weight", &format!("{:.1}", v.weight), "kg")?;
    writer.quantity(sink, VITAL_SIGNS, "8302-2", "Body height", &format!("{:.1}", v.height), "cm")?;
    if age >= 2 {
        writer.quantity(
            sink,
            VITAL_SIGNS,
            "39156-5",
            "Body mass index (BMI) [Ratio]",
            &format!("{:.1}", v.bmi),
            "kg/m2",
        )?;
    }

    let mut labs = Vec::new();
    let diabetic = person.has(Disease::Diabetes, day);
    let kidney = person.has(Disease::ChronicKidney, day);
    let hospital = visit.class != Class::Ambulatory;
    if diabetic && (visit.class == Class::Ambulatory || rng.chance(0.3)) && rng.chance(0.6) {
        let a1c = rng.uniform(6.4, 9.8);
        labs.push(("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", a1c, 1, "%"));
    }
    if hospital || diabetic && rng.chance(0.5) {
        let glucose = if diabetic { rng.uniform(125.0, 260.0) } else { rng.uniform(72.0, 112.0) };
        labs.push(("2345-7", "Glucose [Mass/volume] in Serum or Plasma", glucose, 0, "mg/dL"));
    }
    if hospital || (kidney || diabetic) && rng.chance(0.5) {
        let creatinine = if kidney {
            rng.uniform(1.3, 2.4)
        } else if person.female {
            rng.uniform(0.55, 1.0)
        } else {
            rng.uniform(0.7, 1.2)
        };
        labs.push(("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", creatinine, 2, "mg/dL"));
    }
    let lipids = person.has(Disease::Hyperlipidemia, day);
    if visit.class == Class::Ambulatory && age >= 20 && rng.chance(if lipids { 0.5 } else { 0.15 }) {
        let cholesterol = if lipids { rng.uniform(195.0, 285.0) } else { rng.uniform(135.0, 205.0) };
        labs.push(("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", cholesterol, 0, "mg/dL"));
    }
    let mut results = Vec::new();
    for (code, display, value, places, unit) in labs {
        // Results come back a little after the sample.
        let issued = date_time(visit.start + 3600 + rng.range(0, 3600));
        let mut element = String::from("\"valueQuantity\":{");
        quantity_fields(&mut element, &format!("{value:.places$}"), unit);
        element.push('}');
        writer.write(sink, LABORATORY, code, display, &element, Some(&issued))?;
        results.push(LabResult { code, unit, value, places });
    }
    Ok(results)
}

/// A service line of a claim: code, words, charge.
struct Line {
    code: &'static str,
    text: &'static str,
    charge: f64,
}

fn evaluation_line(person: &Person, visit: &Visit, complex: bool) -> Line {
    let age = person.age_on(visit.start / DAY);
    match visit.class {
        Class::Ambulatory if visit.presentation.is_none() && !complex => match age {
            0 => Line { code: "99391", text: "Preventive visit, established patient, infant", charge: 210.0 },
            1..=4 => {
                Line { code: "99392", text: "Preventive visit, established patient, age 1-4", charge: 220.0 }
            }
            5..=11 => {
                Line { code: "99393", text: "Preventive visit, established patient, age 5-11", charge: 220.0 }
            }
            12..=17 => Line {
                code: "99394",
                text: "Preventive visit, established patient, age 12-17",
                charge: 235.0,
            },
            18..=39 => Line {
                code: "99395",
                text: "Preventive visit, established patient, age 18-39",
                charge: 245.0,
            },
            40..=64 => Line {
                code: "99396",
                text: "Preventive visit, established patient, age 40-64",
                charge: 265.0,
            },
            _ => Line {
                code: "99397",
                text: "Preventive visit, established patient, 65 and over",
                charge: 285.0,
            },
        },
        Class::Ambulatory if complex => {
            Line { code: "99214", text: "Office visit, established patient, moderate", charge: 225.0 }
        }
        Class::Ambulatory => {
            Line { code: "99213", text: "Office visit, established patient, low", charge: 150.0 }
        }
        Class::Emergency if complex => {
            Line { code: "99285", text: "Emergency department visit, high", charge: 1250.0 }
        }
        Class::Emergency => {
            Line { code: "99284", text: "Emergency department visit, moderate", charge: 780.0 }
        }
        Class::Inpatient => {
            Line { code: "99223", text: "Initial hospital inpatient care, high", charge: 520.0 }
        }
    }
}

fn lab_line(code: &str) -> Option<Line> {
    match code {
        "4548-4" => Some(Line { code: "83036", text: "Hemoglobin A1c", charge: 45.0 }),
        "2345-7" => Some(Line { code: "82947", text: "Glucose, quantitative, blood", charge: 22.0 }),
        "2160-0" => Some(Line { code: "82565", text: "Creatinine, blood", charge: 28.0 }),
        "2093-3" => Some(Line { code: "82465", text: "Cholesterol, serum, total", charge: 30.0 }),
        _ => None,
    }
}

fn write_encounter(
    person: &Person,
    visit: &Visit,
    number: usize,
    record: &mut Record,
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<(), Error> {
    let encounter_id = format!("enc-{}-{:02}", person.key, number);
    let encounter_ref = reference(&format!("Encounter/{encounter_id}"));
    let day = visit.start / DAY;
    let age = person.age_on(day);

    // Diagnoses: the presenting problem first, then the chronic problems addressed.
    let mut diagnoses: Vec<(String, &'static Dx)> = Vec::new();
    if let Some(presentation) = visit.presentation {
        let id = format!("cond-{}-e{:02}", person.key, number);
        let resolved = visit.end / DAY + rng.range(5, 21);
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "clinicalStatus": clinical_status(if resolved < TODAY { "resolved" } else { "active" }),
            "verificationStatus": confirmed(),
            "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
            "code": dx_concept(presentation.dx),
            "subject": person.reference(),
            "encounter": encounter_ref.clone(),
            "onsetDateTime": date((day - rng.range(0, 3)).max(person.birth)),
            "recordedDate": date_time(visit.start + 1800),
        });
        if resolved < TODAY
            && visit.disposition.map(|d| d.0) != Some("exp")
            && let Some(object) = condition.as_object_mut()
        {
            object.insert("abatementDateTime".into(), Value::from(date(resolved)));
        }
        sink.write(&condition)?;
        diagnoses.push((id, presentation.dx));
    }
    let replaced = visit.presentation.map_or(&[][..], |p| p.replaces);
    let chronic_limit = if visit.class == Class::Inpatient { usize::MAX } else { 4 };
    for problem in person.active_problems(day) {
        if diagnoses.len() >= chronic_limit.saturating_add(usize::from(visit.presentation.is_some())) {
            break;
        }
        if replaced.contains(&problem.dx.icd) {
            continue;
        }
        diagnoses.push((problem.id.clone(), problem.dx));
    }

    // ICD-10-CM's "code first" notes: the hypertensive and diabetic combination codes come
    // before the kidney disease stage and the type of heart failure they cause.
    diagnoses.sort_by_key(|(_, dx)| dx.icd.starts_with("N18") || dx.icd.starts_with("I50"));
    let (class_code, class_display) = visit.class.code();
    let participant_type =
        concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender");
    let mut encounter = json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code, "display": class_display },
        "subject": person.reference(),
        "participant": [{ "type": [participant_type],
                          "individual": reference(&format!("Practitioner/{}", visit.practitioner)) }],
        "period": { "start": date_time(visit.start), "end": date_time(visit.end) },
    });
    let wellness = visit.presentation.is_none() && diagnoses.is_empty();
    if let Some(object) = encounter.as_object_mut() {
        if visit.class == Class::Inpatient {
            let nights = (visit.end / DAY - visit.start / DAY).max(1);
            object.insert(
                "length".into(),
                json!({ "value": nights, "unit": "days", "system": UCUM, "code": "d" }),
            );
        }
        if let Some(presentation) = visit.presentation {
            object.insert("reasonCode".into(), json!([dx_concept(presentation.dx)]));
        } else if wellness {
            let (code, display) = wellness_code(age);
            object.insert("reasonCode".into(), json!([concept(ICD10CM, code, display)]));
        }
        if !diagnoses.is_empty() {
            let role = concept("http://terminology.hl7.org/CodeSystem/diagnosis-role", "billing", "Billing");
            let listed: Vec<Value> = diagnoses
                .iter()
                .enumerate()
                .map(|(rank, (id, _))| {
                    json!({ "condition": reference(&format!("Condition/{id}")), "use": role, "rank": rank + 1 })
                })
                .collect();
            object.insert("diagnosis".into(), Value::Array(listed));
        }
        if let Some((code, display)) = visit.disposition {
            object.insert(
                "hospitalization".into(),
                json!({ "dischargeDisposition": concept("http://terminology.hl7.org/CodeSystem/discharge-disposition", code, display) }),
            );
        }
        object.insert(
            "location".into(),
            json!([{ "location": reference(&format!("Location/{}", visit.location)), "status": "completed",
                     "period": { "start": date_time(visit.start), "end": date_time(visit.end) } }]),
        );
        object.insert(
            "serviceProvider".into(),
            reference(&format!("Organization/{}", PROVIDERS[visit.provider].id)),
        );
    }
    sink.write(&encounter)?;

    let vitals = draw_vitals(person, visit, rng);
    let results = write_observations(person, visit, &encounter_id, &vitals, rng, sink)?;

    let practitioner_ref = reference(&format!("Practitioner/{}", visit.practitioner));
    let mut extra_lines: Vec<Line> = Vec::new();

    // Procedures.
    let mut procedures: Vec<(&str, &str, &str, &str)> = Vec::new();
    if visit.presentation.is_some_and(|p| p.dx.icd == "S72.001A") {
        procedures.push((
            "http://www.cms.gov/Medicare/Coding/ICD10",
            "0SR9019",
            "Replacement of Right Hip Joint with Metal Synthetic Substitute, Cemented, Open Approach",
            "right hip arthroplasty",
        ));
        extra_lines.push(Line { code: "27130", text: "Total hip arthroplasty", charge: 18_500.0 });
    }
    if visit.class == Class::Ambulatory
        && (50..=75).contains(&age)
        && !record.screened_colon
        && rng.chance(0.15)
    {
        record.screened_colon = true;
        procedures.push((SNOMED, "73761001", "Colonoscopy", "screening colonoscopy"));
        extra_lines.push(Line { code: "45378", text: "Colonoscopy, diagnostic", charge: 1_650.0 });
    }
    if visit.class == Class::Ambulatory
        && person.female
        && (50..=74).contains(&age)
        && record.last_mammogram.is_none_or(|last| day - last > 700)
        && rng.chance(0.4)
    {
        record.last_mammogram = Some(day);
        procedures.push((SNOMED, "71651007", "Mammography", "screening mammogram"));
        extra_lines.push(Line { code: "77067", text: "Screening mammography, bilateral", charge: 260.0 });
    }
    let mut procedure_words = Vec::new();
    for (system, code, display, words) in procedures {
        record.procedures += 1;
        let performed_start = visit.start + (visit.end - visit.start) / 3;
        let mut procedure = json!({
            "resourceType": "Procedure",
            "id": format!("proc-{}-{:02}", person.key, record.procedures),
            "status": "completed",
            "code": { "coding": [coding(system, code, display)], "text": words },
            "subject": person.reference(),
            "encounter": encounter_ref.clone(),
            "performedPeriod": { "start": date_time(performed_start), "end": date_time(performed_start + 5400) },
            "performer": [{ "actor": practitioner_ref.clone() }],
            "location": reference(&format!("Location/{}", visit.location)),
        });
        if code == "0SR9019"
            && let (Some(object), Some((id, _))) = (procedure.as_object_mut(), diagnoses.first())
        {
            object.insert("reasonReference".into(), json!([reference(&format!("Condition/{id}"))]));
        }
        sink.write(&procedure)?;
        procedure_words.push(words);
    }

    // New prescriptions for problems not yet treated.
    let mut started = Vec::new();
    for problem in person.active_problems(day) {
        // A cohort member's regimen is ordered at the visit that diagnoses the cancer.
        let drugs: Vec<(&'static str, &'static str, &'static str)> = match person.cohort {
            Some(member) if problem.disease == Disease::LungCancer => {
                if !visit.planted.cohort_diagnosis {
                    continue;
                }
                member
                    .arm
                    .drugs()
                    .iter()
                    .map(|&(code, name)| (code, name, "IV every 3 weeks per oncology protocol"))
                    .collect()
            }
            _ => clinical::drug_for(problem.disease)
                .map(|d| vec![(d.rxnorm, d.display, d.dosage)])
                .unwrap_or_default(),
        };
        for (rxnorm, display, dosage) in drugs {
            if record.prescribed.contains(&rxnorm) {
                continue;
            }
            record.prescribed.push(rxnorm);
            record.medications += 1;
            sink.write(&json!({
                "resourceType": "MedicationRequest",
                "id": format!("med-{}-{:02}", person.key, record.medications),
                "status": if person.death.is_some() { "stopped" } else { "active" },
                "intent": "order",
                "medicationCodeableConcept": { "coding": [coding("http://www.nlm.nih.gov/research/umls/rxnorm", rxnorm, display)],
                                               "text": display },
                "subject": person.reference(),
                "encounter": encounter_ref.clone(),
                "authoredOn": date_time(visit.end - 300),
                "requester": practitioner_ref.clone(),
                "reasonReference": [reference(&format!("Condition/{}", problem.id))],
                "dosageInstruction": [{ "text": dosage }],
            }))?;
            started.push(display);
        }
    }

    // Vaccines, at office visits.
    let mut vaccines = Vec::new();
    if visit.class == Class::Ambulatory {
        let (year, month, _) = civil_from_days(day);
        let season = if month >= 9 { year } else { year - 1 };
        let in_season = matches!(month, 9..=12 | 1..=3);
        if in_season && age >= 1 && !record.flu_seasons.contains(&season) && rng.chance(0.6) {
            record.flu_seasons.push(season);
            let vaccine = if rng.chance(0.2) {
                ("158", "influenza, injectable, quadrivalent, contains preservative")
            } else if season >= 2024 {
                ("140", "Influenza, seasonal, injectable, preservative free")
            } else {
                ("150", "Influenza, injectable, quadrivalent, preservative free")
            };
            vaccines.push(vaccine);
        }
        if (days_from_civil(2021, 1, 1)..days_from_civil(2022, 7, 1)).contains(&day)
            && age >= 12
            && record.covid_doses < 2
            && rng.chance(0.5)
        {
            record.covid_doses += 1;
            vaccines.push((
                "208",
                "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
            ));
        }
        if age >= 19 && !record.tdap_given && rng.chance(0.08) {
            record.tdap_given = true;
            vaccines.push(("115", "Tdap"));
        }
    }
    for (code, display) in &vaccines {
        record.immunizations += 1;
        sink.write(&json!({
            "resourceType": "Immunization",
            "id": format!("imm-{}-{:02}", person.key, record.immunizations),
            "status": "completed",
            "vaccineCode": { "coding": [coding("http://hl7.org/fhir/sid/cvx", code, display)], "text": display },
            "patient": person.reference(),
            "encounter": encounter_ref.clone(),
            "occurrenceDateTime": date_time(visit.end - 600),
            "primarySource": true,
            "location": reference(&format!("Location/{}", visit.location)),
            "performer": [{ "actor": practitioner_ref.clone() }],
        }))?;
        extra_lines.push(Line { code: "90471", text: "Immunization administration", charge: 35.0 });
    }

    write_note(
        person,
        visit,
        &encounter_id,
        &diagnoses,
        &vitals,
        &results,
        &procedure_words,
        &started,
        &vaccines,
        rng,
        sink,
    )?;

    // Claim and its adjudication.
    let complex = diagnoses.len() >= 3 || visit.presentation.is_some_and(|p| !p.replaces.is_empty());
    let mut lines = vec![evaluation_line(person, visit, complex)];
    if visit.class == Class::Inpatient {
        let nights = (visit.end / DAY - visit.start / DAY).max(1);
        for _ in 1..nights {
            lines.push(Line { code: "99232", text: "Subsequent hospital inpatient care", charge: 210.0 });
        }
        lines.push(Line { code: "99238", text: "Hospital discharge day management", charge: 190.0 });
    }
    lines.extend(results.iter().filter_map(|result| lab_line(result.code)));
    lines.extend(extra_lines);
    write_claim(person, visit, &encounter_id, &diagnoses, &lines, age, sink)
}

fn wellness_code(age: i64) -> (&'static str, &'static str) {
    if age >= 18 { WELLNESS_CODES[0] } else { WELLNESS_CODES[1] }
}

/// Claims and their adjudications are the bulkiest resources after observations, so they
/// are written as JSON text directly too.
fn write_claim(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    diagnoses: &[(String, &'static Dx)],
    lines: &[Line],
    age: i64,
    sink: &mut Sink,
) -> Result<(), Error> {
    let (type_code, type_display) = if visit.class == Class::Ambulatory {
        ("professional", "Professional")
    } else {
        ("institutional", "Institutional")
    };
    let mut codes: Vec<(&str, &str)> = diagnoses.iter().map(|(_, dx)| (dx.icd, dx.display)).collect();
    if codes.is_empty() {
        codes.push(wellness_code(age));
    }
    let patient = format!("Patient/{}", person.id());
    let period = (date_time(visit.start), date_time(visit.end));
    let provider = format!("Organization/{}", PROVIDERS[visit.provider].id);
    let insurer = format!("Organization/{}", PAYERS[person.payer].id);
    let coverage = format!("Coverage/cov-{}", person.key);
    let claim_id = format!("claim-{}", &encounter_id[4..]);
    let served = date(visit.start / DAY);
    let encounter = format!("Encounter/{encounter_id}");
    let total: f64 = lines.iter().map(|l| l.charge).sum();

    // The parts a claim and its adjudication share.
    let mut head = String::with_capacity(512);
    head.push_str(",\"status\":\"active\",\"type\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/claim-type\",\"code\":");
    push_str_literal(&mut head, type_code);
    head.push_str(",\"display\":");
    push_str_literal(&mut head, type_display);
    head.push_str("}]},\"use\":\"claim\",\"patient\":{\"reference\":");
    push_str_literal(&mut head, &patient);
    head.push_str("},\"billablePeriod\":{\"start\":");
    push_str_literal(&mut head, &period.0);
    head.push_str(",\"end\":");
    push_str_literal(&mut head, &period.1);
    head.push('}');
    let mut parties = String::with_capacity(128);
    parties.push_str(",\"insurer\":{\"reference\":");
    push_str_literal(&mut parties, &insurer);
    parties.push_str("},\"provider\":{\"reference\":");
    push_str_literal(&mut parties, &provider);
    parties.push('}');
    let mut diagnosis = String::from(",\"diagnosis\":[");
    for (i, (code, display)) in codes.iter().enumerate() {
        if i > 0 {
            diagnosis.push(',');
        }
        let _ = write!(
            diagnosis,
            "{{\"sequence\":{},\"diagnosisCodeableConcept\":{{\"coding\":[{{\"system\":\"{ICD10CM}\",\"code\":",
            i + 1
        );
        push_str_literal(&mut diagnosis, code);
        diagnosis.push_str(",\"display\":");
        push_str_literal(&mut diagnosis, display);
        diagnosis.push_str("}]}}");
    }
    diagnosis.push(']');
    let pointers: Vec<String> = (1..=codes.len().min(4)).map(|n| n.to_string()).collect();
    let pointers = pointers.join(",");
    let item = |out: &mut String, i: usize, line: &Line| {
        let _ = write!(
            out,
            "{{\"sequence\":{},\"diagnosisSequence\":[{pointers}],\"productOrService\":{{\"coding\":[{{\"system\":\"{CPT}\",\"code\":",
            i + 1
        );
        push_str_literal(out, line.code);
        out.push_str("}],\"text\":");
        push_str_literal(out, line.text);
        out.push_str("},\"servicedDate\":");
        push_str_literal(out, &served);
        out.push_str(",\"encounter\":[{\"reference\":");
        push_str_literal(out, &encounter);
        let _ = write!(out, "}}],\"net\":{{\"value\":{:.2},\"currency\":\"USD\"}}", line.charge);
    };

    let mut claim = String::with_capacity(2048);
    claim.push_str("{\"resourceType\":\"Claim\",\"id\":");
    push_str_literal(&mut claim, &claim_id);
    claim.push_str(&head);
    claim.push_str(",\"created\":");
    push_str_literal(&mut claim, &date_time(visit.end + 2 * DAY));
    claim.push_str(&parties);
    claim.push_str(",\"priority\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/processpriority\",\"code\":\"normal\",\"display\":\"Normal\"}]}");
    claim.push_str(&diagnosis);
    claim.push_str(",\"insurance\":[{\"sequence\":1,\"focal\":true,\"coverage\":{\"reference\":");
    push_str_literal(&mut claim, &coverage);
    claim.push_str("}}],\"item\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            claim.push(',');
        }
        item(&mut claim, i, line);
        claim.push('}');
    }
    let _ = write!(claim, "],\"total\":{{\"value\":{total:.2},\"currency\":\"USD\"}}}}");
    sink.write_json_line("Claim", claim.as_bytes())?;

    // What the payer allowed and paid, as a fixed share per plan.
    let paid_share = match person.payer {
        MEDICARE => 0.52,
        MEDICAID => 0.45,
        _ => 0.68,
    };
    let adjudication = |out: &mut String, code: &str, display: &str, amount: f64| {
        let _ = write!(
            out,
            "{{\"category\":{{\"coding\":[{{\"system\":\"http://terminology.hl7.org/CodeSystem/adjudication\",\"code\":\"{code}\",\"display\":\"{display}\"}}]}},\"amount\":{{\"value\":{amount:.2},\"currency\":\"USD\"}}}}"
        );
    };
    let paid_line = |charge: f64| (charge * paid_share * 100.0).round() / 100.0;
    let paid: f64 = lines.iter().map(|l| paid_line(l.charge)).sum();
    let mut eob = String::with_capacity(3072);
    eob.push_str("{\"resourceType\":\"ExplanationOfBenefit\",\"id\":");
    push_str_literal(&mut eob, &format!("eob-{}", &encounter_id[4..]));
    eob.push_str(&head);
    eob.push_str(",\"created\":");
    push_str_literal(&mut eob, &date_time(visit.end + 16 * DAY));
    eob.push_str(&parties);
    eob.push_str(",\"claim\":{\"reference\":");
    push_str_literal(&mut eob, &format!("Claim/{claim_id}"));
    eob.push_str("},\"outcome\":\"complete\"");
    eob.push_str(&diagnosis);
    eob.push_str(",\"insurance\":[{\"focal\":true,\"coverage\":{\"reference\":");
    push_str_literal(&mut eob, &coverage);
    eob.push_str("}}],\"item\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            eob.push(',');
        }
        item(&mut eob, i, line);
        eob.push_str(",\"adjudication\":[");
        adjudication(&mut eob, "submitted", "Submitted Amount", line.charge);
        eob.push(',');
        adjudication(&mut eob, "benefit", "Benefit Amount", paid_line(line.charge));
        eob.push_str("]}");
    }
    eob.push_str("],\"total\":[");
    adjudication(&mut eob, "submitted", "Submitted Amount", total);
    eob.push(',');
    adjudication(&mut eob, "benefit", "Benefit Amount", paid);
    let _ = write!(eob, "],\"payment\":{{\"amount\":{{\"value\":{paid:.2},\"currency\":\"USD\"}}}}}}");
    sink.write_json_line("ExplanationOfBenefit", eob.as_bytes())
}

#[allow(clippy::too_many_arguments)]
fn write_note(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    diagnoses: &[(String, &'static Dx)],
    vitals: &Vitals,
    results: &[LabResult],
    procedures: &[&str],
    started: &[&str],
    vaccines: &[(&str, &str)],
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<(), Error> {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let (type_code, type_display, title) = match visit.class {
        Class::Ambulatory => ("11506-3", "Progress note", "Progress note"),
        Class::Emergency => ("34111-5", "Emergency department Note", "Emergency department note"),
        Class::Inpatient => ("18842-5", "Discharge summary", "Discharge summary"),
    };
    let who = match (age >= 18, person.female) {
        (true, true) => "woman",
        (true, false) => "man",
        (false, true) => "girl",
        (false, false) => "boy",
    };
    let mut text = String::with_capacity(1024);
    let _ = writeln!(
        text,
        "{title}\nDate of service: {}\nPatient: {} {}, {age}-year-old {who}\n",
        date(day),
        person.given,
        person.family
    );
    let history: Vec<&str> = person
        .active_problems(day)
        .filter(|p| !visit.presentation.is_some_and(|pr| pr.replaces.contains(&p.dx.icd)))
        .take(4)
        .map(|p| phrase(rng, p.dx.words))
        .collect();
    let history_text = match history.len() {
        0 => String::from("no significant past medical history"),
        1 => format!("a history of {}", history[0]),
        n => format!("a history of {} and {}", history[..n - 1].join(", "), history[n - 1]),
    };
    match visit.presentation {
        Some(presentation) => {
            let _ = writeln!(text, "Chief complaint: {}\n", presentation.complaint);
            let _ = write!(
                text,
                "History of present illness: {} is a {age}-year-old {who} with {history_text} who {}.",
                person.given, presentation.history
            );
            for denial in presentation.denies {
                if rng.chance(0.7) {
                    let _ = write!(text, " {denial}");
                }
            }
            text.push_str("\n\n");
        }
        None if !history.is_empty() => {
            let _ = writeln!(text, "Chief complaint: follow-up of chronic conditions\n");
            let _ = writeln!(
                text,
                "History of present illness: {} is a {age}-year-old {who} with {history_text}, here for routine follow-up. Feels well overall. Denies chest pain. Denies shortness of breath.\n",
                person.given
            );
        }
        None => {
            let _ = writeln!(text, "Chief complaint: annual physical\n");
            let _ = writeln!(
                text,
                "History of present illness: {} is a healthy {age}-year-old {who} here for a routine examination. No concerns today. Denies fever, weight loss or night sweats.\n",
                person.given
            );
        }
    }
    let _ = writeln!(
        text,
        "Vital signs: BP {}/{}, HR {}, T {:.1} C, RR {}, SpO2 {}%, weight {:.1} kg.",
        vitals.systolic,
        vitals.diastolic,
        vitals.heart_rate,
        vitals.temperature,
        vitals.respiratory_rate,
        vitals.saturation,
        vitals.weight
    );
    for LabResult { code, unit, value, places } in results {
        let name = match *code {
            "4548-4" => "HbA1c",
            "2345-7" => "glucose",
            "2160-0" => "creatinine",
            _ => "total cholesterol",
        };
        let _ = writeln!(text, "Lab: {name} {value:.places$} {unit}.");
    }
    if visit.class == Class::Inpatient {
        let nights = (visit.end / DAY - visit.start / DAY).max(1);
        let reason = visit.presentation.map_or("evaluation", |p| p.dx.words[0]);
        let _ = write!(text, "\nHospital course: admitted for {reason}; length of stay {nights} days.");
        for procedure in procedures {
            let _ = write!(text, " Underwent {procedure} without complication.");
        }
        let _ = writeln!(
            text,
            " {}",
            match visit.disposition.map(|d| d.0) {
                Some("exp") => "The patient died during the admission; family was at the bedside.",
                Some("snf") => "Discharged to a skilled nursing facility.",
                Some("rehab") => "Discharged to inpatient rehabilitation.",
                _ => "Discharged home in stable condition.",
            }
        );
    } else {
        for procedure in procedures {
            let _ = writeln!(text, "Procedure: {procedure} performed today.");
        }
    }
    text.push_str("\nAssessment and plan:\n");
    if diagnoses.is_empty() {
        // As clinicians write it: an adult's annual physical, a child's well-child check.
        text.push_str(if age >= 18 {
            "1. Annual physical, no abnormal findings; age-appropriate screening reviewed.\n"
        } else {
            "1. Well-child check, normal growth and development; anticipatory guidance given.\n"
        });
    }
    for (i, (_, dx)) in diagnoses.iter().enumerate() {
        let _ = writeln!(text, "{}. {}, {}.", i + 1, capitalize(phrase(rng, dx.words)), *rng.pick(dx.plan));
    }
    for drug in started {
        let _ = writeln!(text, "Started {drug}.");
    }
    for (_, vaccine) in vaccines {
        let _ = writeln!(text, "Vaccine given: {vaccine}.");
    }
    if visit.disposition.map(|d| d.0) != Some("exp") {
        let follow_up = match visit.class {
            Class::Ambulatory => "Follow-up in 3 months or sooner if symptoms worsen.",
            Class::Emergency => "Follow up with primary care within one week; return precautions given.",
            Class::Inpatient => "Follow up with primary care within 7 days of discharge.",
        };
        let _ = writeln!(text, "{follow_up}");
    }
    let _ = writeln!(text, "\nElectronically signed by the attending clinician.");

    let written = date_time(visit.end + 600);
    sink.write(&json!({
        "resourceType": "DocumentReference",
        "id": format!("doc-{}", &encounter_id[4..]),
        "status": "current",
        "docStatus": "final",
        "type": { "coding": [coding(LOINC, type_code, type_display)], "text": title },
        "category": [concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")],
        "subject": person.reference(),
        "date": written,
        "author": [reference(&format!("Practitioner/{}", visit.practitioner))],
        "custodian": reference(&format!("Organization/{}", PROVIDERS[visit.provider].id)),
        "description": title,
        "content": [{ "attachment": { "contentType": "text/plain; charset=utf-8", "language": "en-US",
                                       "data": base64(text.as_bytes()), "title": title, "creation": written } }],
        "context": { "encounter": [reference(&format!("Encounter/{encounter_id}"))],
                     "period": { "start": date_time(visit.start), "end": date_time(visit.end) } },
    }))
}

fn capitalize(words: &str) -> String {
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Standard base64 with padding (RFC 4648), as FHIR's `base64Binary` requires.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
