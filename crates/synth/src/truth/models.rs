//! The planted epidemiology: outbreaks, the two-treatment survival cohort and the 30-day
//! readmission model. Each is a small, stated model whose parameters go to `parameters.json`.

use serde_json::{Value, json};

use super::TruthOptions;
use crate::calendar::{DAY, RECORDS_FROM, TODAY, date, date_time, days_from_civil};
use crate::rng::Rng;
use crate::vocab;

pub(crate) fn records_from_date() -> String {
    date(RECORDS_FROM)
}

pub(crate) fn as_of_date() -> String {
    date(TODAY)
}

// ---------------------------------------------------------------------------------------------
// Outbreaks.

pub(crate) const MAX_OUTBREAKS: usize = 12;
/// Days an outbreak lasts.
pub(crate) const OUTBREAK_DAYS: i64 = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syndrome {
    /// Influenza-like illness, seeded out of season so it stands apart from the winter peaks.
    InfluenzaLike,
    Gastroenteritis,
}

impl Syndrome {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Syndrome::InfluenzaLike => "influenza-like-illness",
            Syndrome::Gastroenteritis => "gastroenteritis",
        }
    }

    /// The ICD-10-CM code the cases are diagnosed with.
    pub(crate) fn icd10cm(self) -> &'static str {
        match self {
            Syndrome::InfluenzaLike => "J10.1",
            Syndrome::Gastroenteritis => "A08.4",
        }
    }
}

/// A syndrome in one city over [`OUTBREAK_DAYS`] days, its cases peaking at `peak`.
#[derive(Clone, Debug)]
pub(crate) struct Outbreak {
    pub(crate) id: String,
    pub(crate) syndrome: Syndrome,
    pub(crate) city: &'static str,
    pub(crate) state: &'static str,
    pub(crate) zip3: &'static str,
    pub(crate) start: i64,
    pub(crate) peak: i64,
    pub(crate) attack_rate: f64,
}

impl Outbreak {
    pub(crate) fn end(&self) -> i64 {
        self.start + OUTBREAK_DAYS - 1
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "syndrome": self.syndrome.id(),
            "icd10cm": self.syndrome.icd10cm(),
            "city": self.city,
            "state": self.state,
            "zip3": self.zip3,
            "start": date(self.start),
            "peak": date(self.peak),
            "end": date(self.end()),
            "attackRate": self.attack_rate,
            "cases": "outbreak-cases.ndjson lists every case encounter; residents of the city alive during the outbreak fall ill at the attack rate, on a day drawn from a triangular curve over the window",
        })
    }

    /// The day a resident who falls ill presents: triangular over the window, mode at the peak.
    pub(crate) fn onset_day(&self, rng: &mut Rng) -> i64 {
        let (low, mode, high) = (self.start as f64, self.peak as f64, (self.end() + 1) as f64);
        let u = rng.unit();
        let split = (mode - low) / (high - low);
        let day = if u < split {
            low + (u * (high - low) * (mode - low)).sqrt()
        } else {
            high - ((1.0 - u) * (high - low) * (high - mode)).sqrt()
        };
        (day.floor() as i64).clamp(self.start, self.end())
    }
}

/// The outbreaks of a seed: syndromes alternate, cities differ, influenza-like ones fall in
/// May to August.
pub(crate) fn outbreaks(seed: u64, options: &TruthOptions) -> Vec<Outbreak> {
    let mut rng = Rng::stream(seed, 0x0B7B_4EA4);
    let mut cities: Vec<(&str, &str, &str)> = Vec::new();
    for &(city, state, zip3, _) in vocab::CITIES {
        if !cities.iter().any(|c| c.0 == city) {
            cities.push((city, state, zip3));
        }
    }
    let mut out: Vec<Outbreak> = Vec::new();
    for number in 0..options.outbreaks.min(MAX_OUTBREAKS) {
        let syndrome = if number % 2 == 0 { Syndrome::Gastroenteritis } else { Syndrome::InfluenzaLike };
        // Big cities first: an outbreak needs residents to show.
        let choices = &cities[..cities.len().min(6)];
        let mut pick = rng.below(choices.len() as u64) as usize;
        while out.iter().any(|o| o.city == choices[pick].0) && out.len() < choices.len() {
            pick = (pick + 1) % choices.len();
        }
        let (city, state, zip3) = choices[pick];
        let year = rng.range(2020, 2025);
        let start = match syndrome {
            Syndrome::InfluenzaLike => days_from_civil(year, 5, 1) + rng.range(0, 90),
            Syndrome::Gastroenteritis => days_from_civil(year, 1, 1) + rng.range(0, 330),
        };
        out.push(Outbreak {
            id: format!("outbreak-{}", number + 1),
            syndrome,
            city,
            state,
            zip3,
            start,
            peak: start + rng.range(7, 14),
            attack_rate: options.attack_rate,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The two-treatment cohort.

/// The youngest and oldest age at which a cohort member is diagnosed.
pub(crate) const COHORT_AGES: (i64, i64) = (45, 85);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arm {
    A,
    B,
}

impl Arm {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Arm::A => "A",
            Arm::B => "B",
        }
    }

    pub(crate) fn regimen(self) -> &'static str {
        match self {
            Arm::A => "carboplatin and paclitaxel",
            Arm::B => "pembrolizumab",
        }
    }

    /// The RxNorm ingredients ordered, with their names.
    pub(crate) fn drugs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Arm::A => &[("40048", "carboplatin"), ("56946", "paclitaxel")],
            Arm::B => &[("1547545", "pembrolizumab")],
        }
    }
}

/// A cohort member: diagnosed at the end of an office visit on `diagnosed_day`, then survival
/// drawn from an exponential distribution with the arm's hazard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CohortMember {
    pub(crate) arm: Arm,
    pub(crate) diagnosed_day: i64,
    /// The second the diagnosing visit ends: time zero.
    pub(crate) time_zero: i64,
    /// The second of death, when before the population's "today".
    pub(crate) death: Option<i64>,
}

/// The diagnosing office visit's start and end on its day.
pub(crate) fn cohort_visit(day: i64) -> (i64, i64) {
    (day * DAY + 10 * 3600, day * DAY + 10 * 3600 + 1800)
}

/// Enrols a person born on `birth` (alive until `death`, if known) with the cohort's chance.
pub(crate) fn enrol(options: &TruthOptions, birth: i64, rng: &mut Rng) -> Option<CohortMember> {
    if options.cohort_rate <= 0.0 || !rng.chance(options.cohort_rate) {
        return None;
    }
    let diagnosed_day = rng.range(RECORDS_FROM + 30, TODAY - 180);
    let age = crate::calendar::years_between(birth, diagnosed_day);
    if !(COHORT_AGES.0..=COHORT_AGES.1).contains(&age) {
        return None;
    }
    let arm = if rng.chance(0.5) { Arm::A } else { Arm::B };
    let hazard_a = std::f64::consts::LN_2 / options.median_survival_days;
    let hazard = if arm == Arm::A { hazard_a } else { hazard_a * options.hazard_ratio };
    // Inverse transform; 1 - u is in (0, 1].
    let days = -(1.0 - rng.unit()).ln() / hazard;
    let (_, time_zero) = cohort_visit(diagnosed_day);
    let death_second = time_zero as f64 + days * DAY as f64;
    let death = (death_second < (TODAY * DAY) as f64).then_some(death_second.ceil() as i64);
    Some(CohortMember { arm, diagnosed_day, time_zero, death })
}

impl CohortMember {
    pub(crate) fn to_json(self, patient: &str) -> Value {
        let end = self.death.unwrap_or(TODAY * DAY);
        json!({
            "patient": format!("Patient/{patient}"),
            "arm": self.arm.id(),
            "regimen": self.arm.regimen(),
            "diagnosed": date_time(self.time_zero),
            "event": if self.death.is_some() { "death" } else { "censored" },
            "end": date_time(end),
            "days": (end - self.time_zero) as f64 / DAY as f64,
        })
    }
}

pub(crate) fn cohort_parameters(options: &TruthOptions) -> Value {
    let arms: Vec<Value> = [Arm::A, Arm::B]
        .iter()
        .map(|arm| {
            json!({
                "arm": arm.id(), "regimen": arm.regimen(),
                "rxnorm": arm.drugs().iter().map(|(code, _)| *code).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "rate": options.cohort_rate,
        "condition": { "icd10cm": "C34.90", "display": "Malignant neoplasm of unspecified part of unspecified bronchus or lung" },
        "ages": [COHORT_AGES.0, COHORT_AGES.1],
        "arms": arms,
        "allocation": "1:1 at random",
        "timeZero": "the end of the office visit at which lung cancer is diagnosed and the regimen ordered",
        "survival": "exponential; hazard ln(2)/medianSurvivalDaysArmA on arm A and hazardRatio times that on arm B; censored at asOf",
        "medianSurvivalDaysArmA": options.median_survival_days,
        "hazardRatio": options.hazard_ratio,
    })
}

// ---------------------------------------------------------------------------------------------
// 30-day readmissions.

/// Days after discharge within which a new inpatient admission is a readmission.
pub(crate) const READMISSION_WINDOW: i64 = 30;

/// The modelled chance of a readmission after a discharge with `diseases` chronic diseases.
pub(crate) fn readmission_risk(options: &TruthOptions, diseases: usize) -> f64 {
    let log_odds = options.readmission_intercept + options.readmission_per_disease * diseases as f64;
    1.0 / (1.0 + (-log_odds).exp())
}

pub(crate) fn readmission_parameters(options: &TruthOptions) -> Value {
    json!({
        "windowDays": READMISSION_WINDOW,
        "model": "logistic: logit(risk) = intercept + perDisease * chronic diseases present at discharge",
        "intercept": options.readmission_intercept,
        "perDisease": options.readmission_per_disease,
        "chronicDiseases": "the problem-list conditions with onset on or before the discharge day (one per disease)",
        "indexStays": "inpatient stays not ending in death whose 30-day window ends before asOf; no other admission is planned inside a window, so every readmission listed as modelled was drawn from the model; an admission that ends in death may still fall inside a window and is listed as not modelled",
    })
}
