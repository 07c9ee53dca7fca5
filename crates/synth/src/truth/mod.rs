//! Ground truth: what the generator plants in the population on purpose, and where it is
//! listed (`ground-truth/` beside the NDJSON files), so every HIM feature can be checked
//! against answers known in advance.
//!
//! | file                     | one line per                                                |
//! |--------------------------|-------------------------------------------------------------|
//! | `parameters.json`        | (one object) the seed, the rates and every model parameter  |
//! | `defects.ndjson`         | data-quality defect: class, resource, path, what was done   |
//! | `duplicates.ndjson`      | person registered twice: both Patients and each error       |
//! | `outbreak-cases.ndjson`  | encounter caused by a seeded outbreak                        |
//! | `cohort.ndjson`          | member of the two-treatment survival cohort                 |
//! | `readmissions.ndjson`    | inpatient stay whose 30-day readmission window is complete  |
//! | `employees.ndjson`       | practitioner who is also a patient                          |
//! | `billing.ndjson`         | billing defect: rule, claim, what was done                  |
//! | `unbilled.ndjson`        | visit discharged but not final-billed on the as-of date     |
//! | `deficiencies.ndjson`    | record-completion deficiency: rule, focus, who owes it      |
//! | `roi-requests.ndjson`    | open release-of-information request: received, due, overdue |
//! | `amendments.ndjson`      | open amendment request: the resource, received, due, overdue|
//! | `holds.ndjson`           | legal hold in force: on a patient or encounter, what it covers |
//!
//! Every planted feature draws from a stream of its own, apart from the population's, so the
//! same seed gives the same people whatever the rates (apart from what a feature changes).

pub(crate) mod billing;
pub(crate) mod completion;
pub(crate) mod defects;
pub(crate) mod duplicates;
pub(crate) mod models;
pub(crate) mod requests;

use serde_json::{Value, json};

use crate::rng::Rng;

/// How much of each planted feature to generate. Rates of 0 give a clean population.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthOptions {
    /// Share of patients given one data-quality defect; the defect classes take turns.
    pub defect_rate: f64,
    /// Share of patients one of whose bills is given a billing defect; the kinds take turns.
    pub billing_defect_rate: f64,
    /// Share of patients given one record-completion deficiency (a document missing or
    /// unsigned); the rules take turns.
    pub completion_defect_rate: f64,
    /// Shares of patients with an open release-of-information request, an open amendment
    /// request, and a legal hold (on the patient or one encounter) on the as-of date.
    pub roi_request_rate: f64,
    pub amendment_rate: f64,
    pub hold_rate: f64,
    /// Share of patients registered a second time with registration errors.
    pub duplicate_rate: f64,
    /// Outbreaks seeded (a syndrome in one city for four weeks).
    pub outbreaks: usize,
    /// Share of an outbreak city's residents who fall ill during the outbreak.
    pub attack_rate: f64,
    /// Share of eligible patients (45 to 85 years old) diagnosed with lung cancer during the
    /// record and treated with one of two regimens.
    pub cohort_rate: f64,
    /// Hazard of death on regimen B relative to regimen A.
    pub hazard_ratio: f64,
    /// Median survival on regimen A, in days.
    pub median_survival_days: f64,
    /// Log-odds of a 30-day readmission with no chronic disease.
    pub readmission_intercept: f64,
    /// Added log-odds per chronic disease present at discharge.
    pub readmission_per_disease: f64,
}

impl Default for TruthOptions {
    fn default() -> Self {
        TruthOptions {
            defect_rate: 0.02,
            billing_defect_rate: 0.03,
            completion_defect_rate: 0.03,
            roi_request_rate: 0.02,
            amendment_rate: 0.01,
            hold_rate: 0.005,
            duplicate_rate: 0.01,
            outbreaks: 2,
            attack_rate: 0.15,
            cohort_rate: 0.03,
            hazard_ratio: 0.6,
            median_survival_days: 540.0,
            readmission_intercept: -2.2,
            readmission_per_disease: 0.3,
        }
    }
}

impl TruthOptions {
    /// Nothing planted: a population without known defects, duplicates, outbreaks, cohort
    /// or modelled readmissions.
    pub fn none() -> Self {
        TruthOptions {
            defect_rate: 0.0,
            billing_defect_rate: 0.0,
            completion_defect_rate: 0.0,
            roi_request_rate: 0.0,
            amendment_rate: 0.0,
            hold_rate: 0.0,
            duplicate_rate: 0.0,
            outbreaks: 0,
            attack_rate: 0.0,
            cohort_rate: 0.0,
            ..TruthOptions::default()
        }
    }

    /// Rejects rates outside [0, 1] and ratios that are not positive.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("defect rate", self.defect_rate),
            ("billing defect rate", self.billing_defect_rate),
            ("completion defect rate", self.completion_defect_rate),
            ("request rate", self.roi_request_rate),
            ("amendment rate", self.amendment_rate),
            ("hold rate", self.hold_rate),
            ("duplicate rate", self.duplicate_rate),
            ("attack rate", self.attack_rate),
            ("cohort rate", self.cohort_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("the {name} must be between 0 and 1, not {rate}"));
            }
        }
        if !(self.hazard_ratio.is_finite() && self.hazard_ratio > 0.0) {
            return Err(format!("the hazard ratio must be positive, not {}", self.hazard_ratio));
        }
        if !(self.median_survival_days.is_finite() && self.median_survival_days >= 1.0) {
            return Err(format!(
                "the median survival must be at least one day, not {}",
                self.median_survival_days
            ));
        }
        if !(self.readmission_intercept.is_finite() && self.readmission_per_disease.is_finite()) {
            return Err("the readmission model's coefficients must be finite".into());
        }
        if self.outbreaks > models::MAX_OUTBREAKS {
            return Err(format!(
                "at most {} outbreaks are seeded, not {}",
                models::MAX_OUTBREAKS,
                self.outbreaks
            ));
        }
        Ok(())
    }
}

/// The ground-truth files written one line per finding, in patient order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TruthFile {
    Defects,
    Duplicates,
    OutbreakCases,
    Cohort,
    Readmissions,
    Employees,
    Billing,
    Unbilled,
    Deficiencies,
    RoiRequests,
    Amendments,
    Holds,
}

impl TruthFile {
    pub(crate) const ALL: [TruthFile; 12] = [
        TruthFile::Defects,
        TruthFile::Duplicates,
        TruthFile::OutbreakCases,
        TruthFile::Cohort,
        TruthFile::Readmissions,
        TruthFile::Employees,
        TruthFile::Billing,
        TruthFile::Unbilled,
        TruthFile::Deficiencies,
        TruthFile::RoiRequests,
        TruthFile::Amendments,
        TruthFile::Holds,
    ];

    pub(crate) fn file_name(self) -> &'static str {
        match self {
            TruthFile::Defects => "defects.ndjson",
            TruthFile::Duplicates => "duplicates.ndjson",
            TruthFile::OutbreakCases => "outbreak-cases.ndjson",
            TruthFile::Cohort => "cohort.ndjson",
            TruthFile::Readmissions => "readmissions.ndjson",
            TruthFile::Employees => "employees.ndjson",
            TruthFile::Billing => "billing.ndjson",
            TruthFile::Unbilled => "unbilled.ndjson",
            TruthFile::Deficiencies => "deficiencies.ndjson",
            TruthFile::RoiRequests => "roi-requests.ndjson",
            TruthFile::Amendments => "amendments.ndjson",
            TruthFile::Holds => "holds.ndjson",
        }
    }
}

/// The directory, under the output directory, holding the ground truth.
pub const GROUND_TRUTH_DIR: &str = "ground-truth";

/// A stream for a planted feature of one patient, apart from the population's streams.
pub(crate) fn feature_stream(seed: u64, feature: u64, index: usize) -> Rng {
    Rng::stream(seed ^ 0x6772_6f75_6e64_0000 ^ feature.wrapping_mul(0x9E37_79B9), index as u64)
}

/// Whether patient `index` takes a turn of a feature planted at `rate`: every
/// `round(1/rate)`-th patient from an offset drawn from the seed, so small populations get
/// their share exactly and turns spread evenly. Returns the turn's number.
pub(crate) fn turn(seed: u64, feature: u64, rate: f64, index: usize) -> Option<usize> {
    if rate <= 0.0 {
        return None;
    }
    let every = (1.0 / rate).round().max(1.0) as usize;
    let offset = Rng::stream(seed, 0xFEA7_0000 + feature).below(every as u64) as usize;
    (index % every == offset).then_some(index / every)
}

/// `parameters.json`: everything needed to check analytics against the planted truth.
pub(crate) fn parameters(
    seed: u64,
    patients: usize,
    options: &TruthOptions,
    outbreaks: &[models::Outbreak],
) -> Value {
    let classes: Vec<Value> = defects::DefectClass::ALL
        .iter()
        .map(|c| json!({ "class": c.id(), "description": c.description() }))
        .collect();
    let errors: Vec<Value> = duplicates::RegistrationError::ALL
        .iter()
        .map(|e| json!({ "kind": e.id(), "description": e.description() }))
        .collect();
    let outbreaks: Vec<Value> = outbreaks.iter().map(models::Outbreak::to_json).collect();
    json!({
        "seed": seed,
        "patients": patients,
        "recordsFrom": models::records_from_date(),
        "asOf": models::as_of_date(),
        "defects": {
            "rate": options.defect_rate,
            "classes": classes,
        },
        "duplicates": {
            "rate": options.duplicate_rate,
            "errors": errors,
        },
        "outbreaks": outbreaks,
        "attackRate": options.attack_rate,
        "cohort": models::cohort_parameters(options),
        "readmissions": models::readmission_parameters(options),
        "billing": {
            "rate": options.billing_defect_rate,
            "kinds": billing::BillingDefect::ALL.iter().map(|k| json!({ "rule": k.id(), "description": k.description() })).collect::<Vec<_>>(),
            "unbilled": "visits discharged but not final-billed on the as-of date: a draft Claim with the charges, with diagnoses once coded",
        },
        "completion": {
            "rate": options.completion_defect_rate,
            "rules": completion::Deficiency::ALL.iter().map(|k| json!({ "rule": k.id(), "description": k.description() })).collect::<Vec<_>>(),
        },
        "requests": {
            "roiRate": options.roi_request_rate,
            "amendmentRate": options.amendment_rate,
            "holdRate": options.hold_rate,
            "clocks": "release of information due 30 days after receipt (60 with the extension), amendments 60 days; overdue when due before the as-of date",
            "holds": "on a patient (all their resources) or on an encounter (it and every resource referring to it); the Patient kept with them",
        },
        "employees": "every third practitioner is also registered as a patient, with the staff identifier",
    })
}
