//! Thirty-day readmission risk: every inpatient stay of the record with its features at
//! discharge, the LACE index, a logistic-regression model trained on the record (L2, on
//! standardised features), its held-out measures, and the worklist of recent discharges ranked
//! by predicted risk with the three factors that add most to it.
//!
//! Why logistic regression rather than boosted trees: each patient's risk decomposes into one
//! term per feature (coefficient × standardised value), which is what a care manager is shown
//! as "why"; the model is a short JSON file anyone can audit; and its fit is checked against
//! scikit-learn's to 1e-6. On the record's features (counts, flags, a comorbidity index) the
//! ranking trees would add is small, and the held-out AUC says how far from the best we are.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use store::Store;

use super::comorbidity::{Index, Scheme, Scorer};
use super::logistic::{self, Auc, CalibrationGroup};
use crate::record::{
    CodeableConcept, ConditionFacts, EncounterFacts, INPATIENT_CLASSES, PatientFacts, Reference, date_of_day,
    facts, millis, patient_id,
};
use crate::{Error, Result};

const DAY: i64 = 86_400_000;
/// Days after discharge within which an admission is a readmission.
pub const WINDOW_DAYS: i64 = 30;

/// The features, in the model's order, with what each means.
pub const FEATURES: &[(&str, &str)] = &[
    ("age", "age at discharge, in decades"),
    ("male", "male"),
    ("lengthOfStay", "nights in hospital"),
    ("acute", "acute or emergency admission"),
    ("priorAdmissions", "admissions in the year before"),
    ("edVisits", "emergency department visits in the 6 months before"),
    ("charlson", "Charlson comorbidity index"),
    ("chronicConditions", "chronic conditions on the problem list"),
    ("toNursingFacility", "discharged to a skilled nursing facility"),
    ("toRehabilitation", "discharged to rehabilitation"),
    ("abnormalResults", "abnormal laboratory results during the stay"),
    ("chf", "congestive heart failure"),
    ("copd", "chronic pulmonary disease"),
    ("diabetes", "diabetes"),
    ("renal", "renal disease"),
    ("cancer", "cancer"),
    ("dementia", "dementia"),
];

/// One inpatient stay with its features at discharge and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stay {
    pub patient: String,
    pub encounter: String,
    pub admitted: i64,
    pub discharged: i64,
    pub features: Vec<f64>,
    pub lace: u32,
    /// Whether the 30-day window after discharge ended on or before the as-of date.
    pub window_complete: bool,
    /// Readmitted within the window (as far as the record shows).
    pub readmitted: bool,
    /// Died during the stay (not an index stay).
    pub died: bool,
    /// When the patient died, if the record says.
    pub death: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ObservationFacts {
    subject: Option<Reference>,
    #[serde(default)]
    interpretation: Vec<CodeableConcept>,
    #[serde(rename = "effectiveDateTime")]
    effective: Option<String>,
    issued: Option<String>,
}

/// What a patient's record says, in time order.
#[derive(Default)]
struct History {
    birth: Option<String>,
    male: bool,
    death: Option<i64>,
    /// (id, start, end (none while in hospital), acute, disposition code).
    stays: Vec<(String, i64, Option<i64>, bool, String)>,
    /// (start, end) of each emergency visit.
    emergencies: Vec<(i64, Option<i64>)>,
    /// (onset, code without dot, problem list).
    conditions: Vec<(i64, String, bool)>,
    abnormal: Vec<i64>,
}

const ABNORMAL: &[&str] = &["A", "AA", "H", "HH", "L", "LL", "HU", "LU", "POS", "DET"];

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every inpatient stay of the record, as of `as_of` (`YYYY-MM-DD`): stays admitted on or
/// before it, their features at discharge, and whether a new admission followed within 30
/// days (by the as-of date).
pub fn stays(store: &dyn Store, as_of: &str) -> Result<Vec<Stay>> {
    let limit = millis(as_of)
        .filter(|_| as_of.len() == 10)
        .map(|start| start + DAY - 1)
        .ok_or_else(|| Error::Invalid(format!("as-of '{as_of}' is not a date (YYYY-MM-DD)")))?;
    let mut people: HashMap<String, History> = HashMap::new();
    store.scan_type("Encounter", None, &mut |_, id, body| {
        let Some(encounter) = facts::<EncounterFacts>(body) else { return Ok(()) };
        if encounter.void() {
            return Ok(());
        }
        let Some(patient) = encounter.subject.as_ref().and_then(patient_id) else { return Ok(()) };
        let Some(start) = encounter.start_millis() else { return Ok(()) };
        if start > limit {
            return Ok(());
        }
        let class = encounter.class_code();
        let history = people.entry(patient.to_string()).or_default();
        if class == "EMER" {
            history.emergencies.push((start, encounter.end_millis()));
        } else if INPATIENT_CLASSES.contains(&class) {
            // A stay without an end is one the patient is still in: a readmission if it
            // follows a discharge, never an index stay.
            let end = encounter.end_millis();
            let acute = encounter.priority.as_ref().is_some_and(|p| p.has_code(&["EM", "UR", "A", "S"]))
                || encounter
                    .hospitalization
                    .as_ref()
                    .and_then(|h| h.admit_source.as_ref())
                    .is_some_and(|s| s.has_code(&["emd"]));
            history.stays.push((id.to_string(), start, end, acute, encounter.disposition().to_string()));
        }
        Ok(())
    })?;
    // Only patients with a stay matter from here on.
    people.retain(|_, history| !history.stays.is_empty());
    store.scan_type("Condition", None, &mut |_, _, body| {
        let Some(condition) = facts::<ConditionFacts>(body) else { return Ok(()) };
        if condition.withdrawn() {
            return Ok(());
        }
        let Some(patient) = condition.subject.as_ref().and_then(patient_id) else { return Ok(()) };
        let Some(history) = people.get_mut(patient) else { return Ok(()) };
        let Some(onset) = condition.onset_millis() else { return Ok(()) };
        let problem = condition_is_problem(body);
        for code in condition.icd10cm_codes() {
            history.conditions.push((onset, code.replace('.', "").to_ascii_uppercase(), problem));
        }
        Ok(())
    })?;
    store.scan_type("Observation", None, &mut |_, _, body| {
        // Most results carry no interpretation: skip them before parsing.
        if !contains(body, b"\"interpretation\"") {
            return Ok(());
        }
        let Some(observation) = facts::<ObservationFacts>(body) else { return Ok(()) };
        if !observation.interpretation.iter().any(|i| i.has_code(ABNORMAL)) {
            return Ok(());
        }
        let Some(patient) = observation.subject.as_ref().and_then(patient_id) else { return Ok(()) };
        let Some(history) = people.get_mut(patient) else { return Ok(()) };
        if let Some(at) = observation.effective.as_deref().or(observation.issued.as_deref()).and_then(millis)
        {
            history.abnormal.push(at);
        }
        Ok(())
    })?;
    store.scan_type("Patient", None, &mut |_, id, body| {
        let Some(history) = people.get_mut(id) else { return Ok(()) };
        let patient = facts::<PatientFacts>(body).unwrap_or_default();
        history.birth = patient.birth_date;
        history.male = patient.gender.as_deref() == Some("male");
        history.death = patient.deceased_date_time.as_deref().and_then(millis);
        Ok(())
    })?;
    let mut charlson = Scorer::new(Scheme::new(Index::Charlson, "quan", "charlson")?)?;
    let mut all = Vec::new();
    let mut ids: Vec<&String> = people.keys().collect();
    ids.sort();
    for patient in ids {
        let history = &people[patient];
        let mut stays = history.stays.clone();
        stays.sort_by_key(|s| s.1);
        for (at, (encounter, admitted, end, acute, disposition)) in stays.iter().enumerate() {
            let Some(discharged) = end else { continue };
            let codes: Vec<&str> = history
                .conditions
                .iter()
                .filter(|(onset, ..)| *onset <= *discharged)
                .map(|(_, code, _)| code.as_str())
                .collect();
            let found = charlson.score(codes.iter().copied());
            let mut chronic: Vec<&str> = history
                .conditions
                .iter()
                .filter(|(onset, _, problem)| *problem && *onset <= *discharged)
                .map(|(_, code, _)| code.as_str())
                .collect();
            chronic.sort_unstable();
            chronic.dedup();
            let prior = stays[..at].iter().filter(|s| s.1 >= admitted - 365 * DAY).count();
            // An emergency visit that led to this admission (overlapping it, or ending within a
            // day before it) makes the admission acute, and is not one of the visits before.
            let led_here = |(start, finish): &(i64, Option<i64>)| {
                *start <= *admitted && finish.unwrap_or(*start) >= admitted - DAY
            };
            let acute = *acute || history.emergencies.iter().any(led_here);
            let emergencies = history
                .emergencies
                .iter()
                .filter(|visit| !led_here(visit) && visit.0 < *admitted && visit.0 >= admitted - 183 * DAY)
                .count();
            let abnormal = history.abnormal.iter().filter(|&&t| t >= *admitted && t <= *discharged).count();
            // Nights: midnights between admission and discharge.
            let nights = (discharged.div_euclid(DAY) - admitted.div_euclid(DAY)).max(0) as f64;
            let has = |category: &str| f64::from(u8::from(found.categories.contains(&category)));
            // Unknown ages are left NaN and standardised to the mean.
            let age = history
                .birth
                .as_deref()
                .and_then(|b| super::age_at(b, &date_of_day(discharged.div_euclid(DAY))))
                .map_or(f64::NAN, f64::from);
            let features = vec![
                age / 10.0,
                f64::from(u8::from(history.male)),
                nights,
                f64::from(u8::from(acute)),
                prior as f64,
                emergencies as f64,
                found.score,
                chronic.len() as f64,
                f64::from(u8::from(disposition == "snf")),
                f64::from(u8::from(disposition == "rehab")),
                (abnormal as f64).ln_1p(),
                has("chf"),
                has("copd"),
                f64::from(u8::from(has("diab") + has("diabwc") > 0.0)),
                has("rend"),
                f64::from(u8::from(has("canc") + has("metacanc") > 0.0)),
                has("dementia"),
            ];
            let died = disposition == "exp"
                || history.death.is_some_and(|d| d >= *admitted && d <= discharged + DAY);
            // Counted in days, as readmission measures are: admitted on or before the 30th
            // day after the day of discharge (stays are in admission order).
            let discharge_day = discharged.div_euclid(DAY);
            let readmitted = stays[at + 1..]
                .iter()
                .take_while(|s| s.1.div_euclid(DAY) - discharge_day <= WINDOW_DAYS)
                .any(|s| s.1 > *discharged);
            all.push(Stay {
                patient: patient.clone(),
                encounter: encounter.clone(),
                admitted: *admitted,
                discharged: *discharged,
                lace: lace(nights as u32, acute, found.score, emergencies),
                features,
                // The window (the discharge day's 30 days after it) ended by the as-of day.
                window_complete: discharge_day + WINDOW_DAYS <= limit.div_euclid(DAY),
                readmitted,
                died,
                death: history.death,
            });
        }
    }
    Ok(all)
}

fn condition_is_problem(body: &[u8]) -> bool {
    #[derive(Deserialize, Default)]
    struct Category {
        #[serde(default)]
        category: Vec<CodeableConcept>,
    }
    facts::<Category>(body).is_some_and(|c| {
        c.category
            .iter()
            .any(|concept| concept.coding.iter().any(|x| x.code.as_deref() == Some("problem-list-item")))
    })
}

/// The LACE index (van Walraven et al. 2010): length of stay, acuity of admission, Charlson
/// index, emergency visits in the six months before.
pub fn lace(nights: u32, acute: bool, charlson: f64, emergencies: usize) -> u32 {
    let l = match nights {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4..=6 => 4,
        7..=13 => 5,
        _ => 7,
    };
    let a = if acute { 3 } else { 0 };
    let c = match charlson {
        x if x >= 4.0 => 5,
        x => x.max(0.0) as u32,
    };
    let e = emergencies.min(4) as u32;
    l + a + c + e
}

/// Whether a patient's stays are in the training set (the rest are held out): a fixed hash of
/// the patient id, so a patient's stays are never on both sides and the split is the same on
/// every run.
pub fn in_training(patient: &str) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in patient.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 10 < 7
}

/// A trained model with its measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub trained_at: String,
    pub as_of: String,
    /// What it was trained on: stays, patients and readmissions on each side.
    pub data: TrainingData,
    pub features: Vec<String>,
    pub means: Vec<f64>,
    pub deviations: Vec<f64>,
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    pub penalty_c: f64,
    pub held_out: Measures,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingData {
    pub stays: usize,
    pub training_stays: usize,
    pub training_readmissions: usize,
    pub held_out_stays: usize,
    pub held_out_readmissions: usize,
    pub patients: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measures {
    pub auc: f64,
    pub auc_low: f64,
    pub auc_high: f64,
    pub brier: f64,
    pub calibration: Vec<CalibrationGroup>,
    pub lace_auc: f64,
    pub lace_auc_low: f64,
    pub lace_auc_high: f64,
}

/// The stays a model learns from and is measured on: complete windows, not ending in death.
pub fn index_stays(stays: &[Stay]) -> impl Iterator<Item = &Stay> {
    stays.iter().filter(|s| s.window_complete && !s.died)
}

impl Model {
    /// A stay's features standardised as in training.
    pub fn standardise(&self, features: &[f64]) -> Vec<f64> {
        features
            .iter()
            .zip(self.means.iter().zip(&self.deviations))
            // What the record does not say (an unknown age) counts as the mean.
            .map(|(x, (mean, deviation))| if x.is_nan() { 0.0 } else { (x - mean) / deviation })
            .collect()
    }

    pub fn predict(&self, features: &[f64]) -> f64 {
        let fit = logistic::Fit {
            intercept: self.intercept,
            coefficients: self.coefficients.clone(),
            iterations: 0,
        };
        fit.predict(&self.standardise(features))
    }

    /// The three features that add most to a stay's risk (coefficient × standardised value),
    /// among those above their mean with a positive coefficient, largest first, with their
    /// values: the "why" a care manager is shown.
    pub fn factors(&self, features: &[f64]) -> Vec<Factor> {
        let standardised = self.standardise(features);
        let mut all: Vec<Factor> = self
            .features
            .iter()
            .zip(&standardised)
            .zip(&self.coefficients)
            .zip(features)
            .map(|(((name, z), w), value)| Factor {
                feature: name.clone(),
                description: FEATURES.iter().find(|(n, _)| n == name).map_or("", |(_, d)| d).to_string(),
                value: shown_value(name, *value),
                contribution: z * w,
            })
            .filter(|f| f.contribution > 0.0)
            .collect();
        // Only what the patient has more of than usual, and what raises the risk: a low value
        // of a protective feature is no reason to give a care manager.
        all.retain(|f| {
            let at = self.features.iter().position(|n| *n == f.feature).unwrap_or(0);
            standardised.get(at).is_some_and(|z| *z > 0.0)
        });
        all.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        all.truncate(3);
        all
    }
}

/// A feature's value as a person reads it: age in years, abnormal results as a count.
fn shown_value(feature: &str, value: f64) -> f64 {
    match feature {
        "age" => (value * 10.0).round(),
        "abnormalResults" => value.exp_m1().round(),
        _ => value,
    }
}

/// One factor of a patient's risk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Factor {
    pub feature: String,
    pub description: String,
    pub value: f64,
    pub contribution: f64,
}

/// The training rows: features standardised by the training set's means and (population)
/// standard deviations; a constant feature gets deviation 1.
pub fn standardisation(rows: &[&Stay]) -> (Vec<f64>, Vec<f64>) {
    let columns = FEATURES.len();
    let known = |j: usize| rows.iter().map(move |s| s.features[j]).filter(|v| !v.is_nan());
    let means: Vec<f64> = (0..columns)
        .map(|j| {
            let count = known(j).count();
            if count == 0 { 0.0 } else { known(j).sum::<f64>() / count as f64 }
        })
        .collect();
    let deviations: Vec<f64> = (0..columns)
        .map(|j| {
            let count = known(j).count().max(1) as f64;
            let variance = known(j).map(|v| (v - means[j]).powi(2)).sum::<f64>() / count;
            if variance > 1e-12 { variance.sqrt() } else { 1.0 }
        })
        .collect();
    (means, deviations)
}

/// Trains the model on the record's stays as of `as_of`, split by patient, and measures it on
/// the held-out stays beside LACE.
pub fn train(stays: &[Stay], as_of: &str, trained_at: &str, penalty_c: f64) -> Result<Model> {
    let index: Vec<&Stay> = index_stays(stays).collect();
    let (training, held_out): (Vec<&Stay>, Vec<&Stay>) = index.iter().partition(|s| in_training(&s.patient));
    if training.len() < 20 || held_out.len() < 10 {
        return Err(Error::NotEnoughData(format!(
            "{} index stays ({} to train on, {} held out): too few to train a readmission model",
            index.len(),
            training.len(),
            held_out.len()
        )));
    }
    let (means, deviations) = standardisation(&training);
    let mut model = Model {
        trained_at: trained_at.to_string(),
        as_of: as_of.to_string(),
        data: TrainingData {
            stays: index.len(),
            training_stays: training.len(),
            training_readmissions: training.iter().filter(|s| s.readmitted).count(),
            held_out_stays: held_out.len(),
            held_out_readmissions: held_out.iter().filter(|s| s.readmitted).count(),
            patients: {
                let mut ids: Vec<&str> = index.iter().map(|s| s.patient.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                ids.len()
            },
        },
        features: FEATURES.iter().map(|(n, _)| n.to_string()).collect(),
        means,
        deviations,
        intercept: 0.0,
        coefficients: Vec::new(),
        penalty_c,
        held_out: Measures {
            auc: f64::NAN,
            auc_low: f64::NAN,
            auc_high: f64::NAN,
            brier: f64::NAN,
            calibration: Vec::new(),
            lace_auc: f64::NAN,
            lace_auc_low: f64::NAN,
            lace_auc_high: f64::NAN,
        },
    };
    let x: Vec<Vec<f64>> = training.iter().map(|s| model.standardise(&s.features)).collect();
    let y: Vec<bool> = training.iter().map(|s| s.readmitted).collect();
    let fit = logistic::fit(&x, &y, penalty_c)?;
    model.intercept = fit.intercept;
    model.coefficients = fit.coefficients;
    let predicted: Vec<f64> = held_out.iter().map(|s| model.predict(&s.features)).collect();
    let outcomes: Vec<bool> = held_out.iter().map(|s| s.readmitted).collect();
    let measured: Auc = logistic::auc(&predicted, &outcomes)?;
    let lace_scores: Vec<f64> = held_out.iter().map(|s| f64::from(s.lace)).collect();
    let lace: Auc = logistic::auc(&lace_scores, &outcomes)?;
    model.held_out = Measures {
        auc: measured.auc,
        auc_low: measured.low,
        auc_high: measured.high,
        brier: logistic::brier(&predicted, &outcomes),
        calibration: logistic::calibration(&predicted, &outcomes, 10),
        lace_auc: lace.auc,
        lace_auc_low: lace.low,
        lace_auc_high: lace.high,
    };
    Ok(model)
}

/// Where a data directory keeps its readmission model.
pub fn model_path(data: &std::path::Path) -> std::path::PathBuf {
    data.join("risk").join("readmission-model.json")
}

/// Writes the model (creating its directory).
pub fn save(model: &Model, path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(model).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))
}

/// Reads a saved model; `None` when none was trained.
pub fn load(path: &std::path::Path) -> Result<Option<Model>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let model: Model = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{} is not a readmission model: {e}", path.display())))?;
            let names: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
            let sound = model.features.iter().map(String::as_str).eq(names.iter().copied())
                && [&model.means, &model.deviations, &model.coefficients]
                    .iter()
                    .all(|v| v.len() == names.len())
                && model
                    .means
                    .iter()
                    .chain(&model.coefficients)
                    .chain([&model.intercept])
                    .all(|v| v.is_finite())
                && model.deviations.iter().all(|d| d.is_finite() && *d > 0.0);
            if !sound {
                return Err(Error::Invalid(format!(
                    "{} is not a readmission model of this version (its features or numbers do not fit): train it again",
                    path.display()
                )));
            }
            Ok(Some(model))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Invalid(format!("cannot read {}: {e}", path.display()))),
    }
}

/// One patient on the care managers' worklist: their latest discharge in the window, its
/// predicted risk, LACE and the factors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub patient: String,
    pub encounter: String,
    pub discharged: i64,
    pub risk: f64,
    pub lace: u32,
    pub factors: Vec<Factor>,
}

/// The patients discharged alive in the 30 days up to the as-of date (their latest stay), most
/// likely to be readmitted first.
pub fn worklist(stays: &[Stay], model: &Model, as_of_end: i64, limit: usize) -> Vec<Entry> {
    let mut latest: HashMap<&str, &Stay> = HashMap::new();
    // Neither those who died since nor those already back in hospital are anyone's call.
    for stay in
        stays.iter().filter(|s| !s.died && s.discharged <= as_of_end && s.death.is_none_or(|d| d > as_of_end))
    {
        let entry = latest.entry(stay.patient.as_str()).or_insert(stay);
        if stay.discharged > entry.discharged {
            *entry = stay;
        }
    }
    let mut entries: Vec<Entry> = latest
        .values()
        .filter(|s| s.discharged > as_of_end - WINDOW_DAYS * DAY && !s.readmitted)
        .map(|s| Entry {
            patient: s.patient.clone(),
            encounter: s.encounter.clone(),
            discharged: s.discharged,
            risk: model.predict(&s.features),
            lace: s.lace,
            factors: model.factors(&s.features),
        })
        .collect();
    entries.sort_by(|a, b| b.risk.total_cmp(&a.risk).then_with(|| a.patient.cmp(&b.patient)));
    entries.truncate(limit);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lace_points_follow_the_published_table() {
        assert_eq!(lace(0, false, 0.0, 0), 0);
        assert_eq!(lace(5, true, 2.0, 1), 4 + 3 + 2 + 1);
        assert_eq!(lace(20, true, 6.0, 9), 7 + 3 + 5 + 4);
        assert_eq!(lace(10, false, 4.0, 0), 5 + 5);
    }

    #[test]
    fn the_split_is_by_patient_and_about_seven_in_ten() {
        let trained = (0..10_000).filter(|n| in_training(&format!("patient-{n}"))).count();
        assert!((6_700..7_300).contains(&trained), "{trained}");
        assert_eq!(in_training("p1"), in_training("p1"));
    }
}
