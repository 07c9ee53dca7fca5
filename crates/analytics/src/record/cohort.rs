//! A retrospective cohort study over the record: patients with a condition, the first of two
//! treatments each received on or after the diagnosis, and how long until the outcome.
//!
//! The study is data ([`Study`], a JSON document): the condition (ICD-10-CM codes and ranges,
//! each with the codes below it), two arms (medication or procedure codes), the rule for
//! patients exposed to both, the outcome (death and/or a condition), censoring (a cut-off
//! date, optionally the last encounter) and a minimum age. [`extract`] reads the record in one
//! pass per type and returns each member's duration, event and covariates, and how many
//! patients were left out and why.
//!
//! - Diagnosis: the earliest onset of a non-withdrawn Condition with a study code.
//! - Exposure: a MedicationRequest (`authoredOn`), MedicationAdministration or
//!   MedicationStatement (`effective[x]`) whose medication, or a Procedure
//!   (`performed[x]`) whose code, is one of an arm's codes, on or after the diagnosis day.
//! - Index: the first exposure; its arm is the member's arm.
//! - Event: death (`Patient.deceasedDateTime`) or the onset of an outcome condition after the
//!   index, whichever comes first, at or before the cut-off.
//! - Censoring: at the cut-off, or at the end of the patient's last encounter when the study
//!   says so and that is earlier (an event recorded after that encounter still counts).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use store::Store;

use super::{
    CodeableConcept, ConditionFacts, EncounterFacts, PatientFacts, Period, Reference, facts, millis,
    patient_id,
};
use crate::syndromes::{Matcher, Syndrome};
use crate::{Error, Result};

const MILLIS_PER_DAY: f64 = 86_400_000.0;
const DAYS_PER_YEAR: f64 = 365.25;

/// A study to start from (the workbench's form, `chartroom cohort example`): the demo
/// population's two lung-cancer regimens.
pub const EXAMPLE_STUDY: &str = r#"{
  "name": "lung-cancer-regimens",
  "title": "Carboplatin and paclitaxel against pembrolizumab in lung cancer",
  "condition": ["C34"],
  "arms": [
    { "name": "A", "title": "carboplatin and paclitaxel",
      "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048" },
                { "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "56946" }] },
    { "name": "B", "title": "pembrolizumab",
      "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545" }] }
  ],
  "bothArms": "exclude",
  "outcome": { "death": true },
  "censoring": { "atLastEncounter": false },
  "minimumAge": 18,
  "covariates": ["age", "sex", "comorbidities"],
  "survivalAt": [180, 365, 730]
}"#;

/// A study definition.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Study {
    /// A short name for reports.
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    /// The condition: ICD-10-CM codes and ranges (`C34`, `C33-C34`), each with the codes below.
    pub condition: Vec<String>,
    /// Exactly two arms; the second is compared with the first (hazard ratio of arm 2 vs arm 1).
    pub arms: Vec<Arm>,
    #[serde(default)]
    pub both_arms: BothArms,
    #[serde(default)]
    pub outcome: Outcome,
    #[serde(default)]
    pub censoring: Censoring,
    /// Age in years at the index date below which a patient is left out.
    #[serde(default)]
    pub minimum_age: Option<f64>,
    /// The Cox model's covariates besides the arm.
    #[serde(default = "default_covariates")]
    pub covariates: Vec<Covariate>,
    /// Days after the index at which survival is reported.
    #[serde(default = "default_survival_at")]
    pub survival_at: Vec<f64>,
    /// One minus the confidence level of every interval (0.05 gives 95% intervals).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_covariates() -> Vec<Covariate> {
    vec![Covariate::Age, Covariate::Sex, Covariate::Comorbidities]
}

fn default_survival_at() -> Vec<f64> {
    vec![180.0, 365.0, 730.0]
}

fn default_alpha() -> f64 {
    0.05
}

/// One arm: the codes that expose a patient to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    pub codes: Vec<ArmCode>,
}

/// A medication or procedure code (RxNorm, SNOMED CT, CPT, ICD-10-PCS...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmCode {
    pub system: String,
    pub code: String,
}

/// What happens to a patient exposed to both arms on or after the diagnosis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BothArms {
    /// Left out of the study (no crossover contaminates either arm).
    #[default]
    Exclude,
    /// Kept in the arm given first (intention to treat); left out when both came at once.
    FirstExposure,
}

/// The outcome: death, an outcome condition, or both (whichever comes first).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    #[serde(default = "yes")]
    pub death: bool,
    /// ICD-10-CM codes and ranges whose onset after the index is an event.
    #[serde(default)]
    pub condition: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome { death: true, condition: Vec::new() }
    }
}

/// Where follow-up ends for patients without the event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Censoring {
    /// The data cut-off (a date or dateTime); without one, the latest encounter in the record.
    #[serde(default)]
    pub cutoff: Option<String>,
    /// Also end follow-up at the end of the patient's last encounter, when that is earlier.
    #[serde(default)]
    pub at_last_encounter: bool,
}

/// A covariate of the Cox model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Covariate {
    /// Age in years at the index date.
    Age,
    /// 1 for male, 0 otherwise.
    Sex,
    /// Distinct ICD-10-CM categories (three characters) among the patient's conditions with
    /// onset before the index, the study's condition apart.
    Comorbidities,
}

impl Covariate {
    pub fn name(self) -> &'static str {
        match self {
            Covariate::Age => "age",
            Covariate::Sex => "male",
            Covariate::Comorbidities => "comorbidities",
        }
    }
}

impl Study {
    /// Reads and checks a study definition.
    pub fn from_json(value: &serde_json::Value) -> Result<Study> {
        let study: Study = serde_json::from_value(value.clone())
            .map_err(|e| Error::Invalid(format!("the study definition: {e}")))?;
        study.check()?;
        Ok(study)
    }

    /// Refuses a definition that cannot run, saying which part.
    pub fn check(&self) -> Result<()> {
        if self.arms.len() != 2 {
            return Err(Error::Invalid(format!(
                "the study has {} arms; it compares exactly two",
                self.arms.len()
            )));
        }
        for (index, arm) in self.arms.iter().enumerate() {
            if arm.codes.is_empty() {
                return Err(Error::Invalid(format!("arms[{index}] ('{}') lists no codes", arm.name)));
            }
        }
        if self.arms[0].name == self.arms[1].name {
            return Err(Error::Invalid("the two arms have the same name".into()));
        }
        self.condition_matcher()?;
        self.outcome_matcher()?;
        if !self.outcome.death && self.outcome.condition.is_empty() {
            return Err(Error::Invalid("the outcome is neither death nor a condition".into()));
        }
        if let Some(cutoff) = &self.censoring.cutoff
            && millis(cutoff).is_none()
        {
            return Err(Error::Invalid(format!("censoring.cutoff '{cutoff}' is not a date")));
        }
        if let Some(age) = self.minimum_age
            && !(age.is_finite() && age >= 0.0)
        {
            return Err(Error::Invalid(format!("minimumAge {age} is not an age")));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::Invalid(format!("alpha {} is not between 0 and 1", self.alpha)));
        }
        if let Some(bad) = self.survival_at.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
            return Err(Error::Invalid(format!("survivalAt {bad} is not a number of days")));
        }
        Ok(())
    }

    fn condition_matcher(&self) -> Result<Matcher> {
        Syndrome { name: "condition".into(), title: self.name.clone(), codes: self.condition.clone() }
            .matcher()
            .map_err(|e| Error::Invalid(format!("the study's condition: {e}")))
    }

    fn outcome_matcher(&self) -> Result<Option<Matcher>> {
        if self.outcome.condition.is_empty() {
            return Ok(None);
        }
        Syndrome { name: "outcome".into(), title: "outcome".into(), codes: self.outcome.condition.clone() }
            .matcher()
            .map(Some)
            .map_err(|e| Error::Invalid(format!("the study's outcome condition: {e}")))
    }
}

/// One member of the cohort.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub patient: String,
    /// 0 for the first arm, 1 for the second.
    pub arm: usize,
    /// The index moment (ms since the epoch).
    pub index: i64,
    /// Days from the index to the event or censoring.
    pub duration: f64,
    pub event: bool,
    pub age: Option<f64>,
    pub male: bool,
    pub comorbidities: usize,
}

impl Member {
    pub fn covariate(&self, covariate: Covariate) -> f64 {
        match covariate {
            Covariate::Age => self.age.unwrap_or(f64::NAN),
            Covariate::Sex => f64::from(u8::from(self.male)),
            Covariate::Comorbidities => self.comorbidities as f64,
        }
    }
}

/// Why a diagnosed patient is not in the cohort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusion {
    /// Neither arm's codes on or after the diagnosis.
    NotExposed,
    /// Exposed to both arms (under `bothArms: exclude`).
    BothArms,
    /// Both arms begun at the same moment (under `bothArms: first-exposure`).
    BothArmsAtOnce,
    /// Younger than the minimum age at the index.
    UnderMinimumAge,
    /// No birth date, and the study needs the age.
    NoBirthDate,
    /// The index falls after the cut-off.
    IndexAfterCutoff,
    /// Dead, or the outcome condition begun, at or before the index.
    OutcomeBeforeIndex,
    /// No Patient resource for the condition's subject.
    NoPatient,
}

impl Exclusion {
    pub fn describe(self) -> &'static str {
        match self {
            Exclusion::NotExposed => "not exposed to either arm on or after the diagnosis",
            Exclusion::BothArms => "exposed to both arms",
            Exclusion::BothArmsAtOnce => "both arms begun at the same moment",
            Exclusion::UnderMinimumAge => "younger than the minimum age at the index date",
            Exclusion::NoBirthDate => "no birth date recorded",
            Exclusion::IndexAfterCutoff => "first exposure after the data cut-off",
            Exclusion::OutcomeBeforeIndex => "outcome at or before the index date",
            Exclusion::NoPatient => "the condition's patient is not in the record",
        }
    }
}

/// The cohort as extracted.
#[derive(Clone, Debug, Serialize)]
pub struct Cohort {
    /// Patients with the condition.
    pub diagnosed: usize,
    pub members: Vec<Member>,
    /// Patients left out, by reason, in reason order.
    pub excluded: Vec<(Exclusion, usize)>,
    /// The cut-off used (ms since the epoch).
    pub cutoff: i64,
    /// Resources that could not be read for the study (not counted).
    pub unreadable: u64,
}

#[derive(Default)]
struct Patient {
    diagnosis: Option<i64>,
    birth: Option<i64>,
    male: bool,
    death: Option<i64>,
    found: bool,
    /// (arm, moment) of each exposure.
    exposures: Vec<(usize, i64)>,
    /// (three-character category, onset) of every condition.
    conditions: Vec<([u8; 3], i64, bool)>,
    outcome_onsets: Vec<i64>,
    last_encounter: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ExposureFacts {
    status: Option<String>,
    subject: Option<Reference>,
    #[serde(rename = "medicationCodeableConcept")]
    medication: Option<CodeableConcept>,
    code: Option<CodeableConcept>,
    #[serde(rename = "authoredOn")]
    authored_on: Option<String>,
    #[serde(rename = "effectiveDateTime")]
    effective_date_time: Option<String>,
    #[serde(rename = "effectivePeriod")]
    effective_period: Option<Period>,
    #[serde(rename = "performedDateTime")]
    performed_date_time: Option<String>,
    #[serde(rename = "performedPeriod")]
    performed_period: Option<Period>,
}

impl ExposureFacts {
    fn moment(&self) -> Option<i64> {
        self.authored_on
            .as_deref()
            .or(self.effective_date_time.as_deref())
            .or(self.effective_period.as_ref().and_then(|p| p.start.as_deref()))
            .or(self.performed_date_time.as_deref())
            .or(self.performed_period.as_ref().and_then(|p| p.start.as_deref()))
            .and_then(millis)
    }
}

/// The types whose resources expose a patient to an arm.
const EXPOSURE_TYPES: [&str; 4] =
    ["MedicationRequest", "MedicationAdministration", "MedicationStatement", "Procedure"];

/// Extracts the study's cohort from the record.
pub fn extract(store: &dyn Store, study: &Study) -> Result<Cohort> {
    study.check()?;
    let condition = study.condition_matcher()?;
    let outcome = study.outcome_matcher()?;
    let mut patients: HashMap<String, Patient> = HashMap::new();
    let mut unreadable = 0u64;

    // Conditions first: who is diagnosed, and every patient's conditions (for comorbidities
    // and outcomes, judged once the index is known).
    store.scan_type("Condition", None, &mut |_, _, body| {
        let Some(facts) = facts::<ConditionFacts>(body) else {
            unreadable += 1;
            return Ok(());
        };
        if facts.withdrawn() {
            return Ok(());
        }
        let (Some(patient), Some(onset)) =
            (facts.subject.as_ref().and_then(patient_id), facts.onset_millis())
        else {
            return Ok(());
        };
        let mut is_study = false;
        let mut is_outcome = false;
        let mut category = None;
        for code in facts.icd10cm_codes() {
            is_study |= condition.matches(code);
            is_outcome |= outcome.as_ref().is_some_and(|m| m.matches(code));
            let bytes = code.as_bytes();
            if bytes.len() >= 3 && category.is_none() {
                category = Some([bytes[0].to_ascii_uppercase(), bytes[1], bytes[2].to_ascii_uppercase()]);
            }
        }
        let entry = patients.entry(patient.to_string()).or_default();
        if is_study {
            entry.diagnosis = Some(entry.diagnosis.map_or(onset, |d| d.min(onset)));
        }
        if is_outcome {
            entry.outcome_onsets.push(onset);
        }
        if let Some(category) = category {
            entry.conditions.push((category, onset, is_study));
        }
        Ok(())
    })?;
    patients.retain(|_, p| p.diagnosis.is_some());
    let diagnosed = patients.len();

    store.scan_type("Patient", None, &mut |_, id, body| {
        let Some(patient) = patients.get_mut(id) else { return Ok(()) };
        let Some(facts) = facts::<PatientFacts>(body) else {
            unreadable += 1;
            return Ok(());
        };
        patient.found = true;
        patient.birth = facts.birth_date.as_deref().and_then(millis);
        patient.male = facts.gender.as_deref() == Some("male");
        patient.death = facts.deceased_date_time.as_deref().and_then(millis);
        Ok(())
    })?;

    for resource_type in EXPOSURE_TYPES {
        store.scan_type(resource_type, None, &mut |_, _, body| {
            let Some(facts) = facts::<ExposureFacts>(body) else {
                unreadable += 1;
                return Ok(());
            };
            let Some(patient) =
                facts.subject.as_ref().and_then(patient_id).and_then(|id| patients.get_mut(id))
            else {
                return Ok(());
            };
            if matches!(facts.status.as_deref(), Some("entered-in-error" | "not-done" | "not-taken")) {
                return Ok(());
            }
            let codes = facts.medication.as_ref().or(facts.code.as_ref());
            let Some(codes) = codes else { return Ok(()) };
            for (arm_number, arm) in study.arms.iter().enumerate() {
                let hit = codes.coding.iter().any(|c| {
                    arm.codes
                        .iter()
                        .any(|a| c.system.as_deref() == Some(&a.system) && c.code.as_deref() == Some(&a.code))
                });
                if hit && let Some(moment) = facts.moment() {
                    patient.exposures.push((arm_number, moment));
                }
            }
            Ok(())
        })?;
    }

    let mut latest_encounter = i64::MIN;
    store.scan_type("Encounter", None, &mut |_, _, body| {
        let Some(facts) = facts::<EncounterFacts>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let Some(moment) =
            facts.period.as_ref().and_then(|p| p.end.as_deref().or(p.start.as_deref())).and_then(millis)
        else {
            return Ok(());
        };
        latest_encounter = latest_encounter.max(moment);
        if let Some(patient) = facts.subject.as_ref().and_then(patient_id).and_then(|id| patients.get_mut(id))
        {
            patient.last_encounter = Some(patient.last_encounter.map_or(moment, |m| m.max(moment)));
        }
        Ok(())
    })?;

    let cutoff = match &study.censoring.cutoff {
        Some(text) => {
            millis(text).ok_or_else(|| Error::Invalid(format!("censoring.cutoff '{text}' is not a date")))?
        }
        None if latest_encounter == i64::MIN => {
            return Err(Error::NotEnoughData(
                "the record has no encounters to take a data cut-off from".into(),
            ));
        }
        None => latest_encounter,
    };

    let mut excluded: HashMap<Exclusion, usize> = HashMap::new();
    let mut members = Vec::new();
    let mut ids: Vec<&String> = patients.keys().collect();
    ids.sort();
    for id in ids {
        let patient = &patients[id];
        match member(study, id, patient, cutoff) {
            Ok(member) => members.push(member),
            Err(reason) => *excluded.entry(reason).or_default() += 1,
        }
    }
    let mut excluded: Vec<(Exclusion, usize)> = excluded.into_iter().collect();
    excluded.sort();
    Ok(Cohort { diagnosed, members, excluded, cutoff, unreadable })
}

fn member(study: &Study, id: &str, patient: &Patient, cutoff: i64) -> Result<Member, Exclusion> {
    if !patient.found {
        return Err(Exclusion::NoPatient);
    }
    let diagnosis = patient.diagnosis.ok_or(Exclusion::NotExposed)?;
    // Exposure counts from the diagnosis day: a date-only onset is the day's first moment.
    let diagnosis_day = diagnosis.div_euclid(86_400_000) * 86_400_000;
    let mut exposures: Vec<(i64, usize)> =
        patient.exposures.iter().filter(|(_, at)| *at >= diagnosis_day).map(|&(arm, at)| (at, arm)).collect();
    exposures.sort();
    let &(index, arm) = exposures.first().ok_or(Exclusion::NotExposed)?;
    if exposures.iter().any(|&(_, other)| other != arm) {
        match study.both_arms {
            BothArms::Exclude => return Err(Exclusion::BothArms),
            BothArms::FirstExposure => {
                if exposures.iter().any(|&(at, other)| at == index && other != arm) {
                    return Err(Exclusion::BothArmsAtOnce);
                }
            }
        }
    }
    if index > cutoff {
        return Err(Exclusion::IndexAfterCutoff);
    }
    let age = patient.birth.map(|birth| (index - birth) as f64 / MILLIS_PER_DAY / DAYS_PER_YEAR);
    let needs_age = study.minimum_age.is_some() || study.covariates.contains(&Covariate::Age);
    if needs_age && age.is_none() {
        return Err(Exclusion::NoBirthDate);
    }
    if let (Some(minimum), Some(age)) = (study.minimum_age, age)
        && age < minimum
    {
        return Err(Exclusion::UnderMinimumAge);
    }
    let mut event_at: Option<i64> = None;
    if study.outcome.death
        && let Some(death) = patient.death
    {
        event_at = Some(death);
    }
    for &onset in &patient.outcome_onsets {
        if onset > index || event_at.is_some_and(|e| e <= index) {
            event_at = Some(event_at.map_or(onset, |e| e.min(onset)));
        }
    }
    if event_at.is_some_and(|e| e <= index) {
        return Err(Exclusion::OutcomeBeforeIndex);
    }
    let mut end = cutoff;
    if study.censoring.at_last_encounter
        && let Some(last) = patient.last_encounter
    {
        end = end.min(last.max(index));
    }
    let (stop, event) = match event_at {
        // A death recorded after the last encounter is still known: only the cut-off ends it.
        Some(at) if at <= cutoff => (at, true),
        _ => (end, false),
    };
    let mut categories: Vec<[u8; 3]> = patient
        .conditions
        .iter()
        .filter(|(_, onset, is_study)| !is_study && *onset < index)
        .map(|(category, _, _)| *category)
        .collect();
    categories.sort_unstable();
    categories.dedup();
    Ok(Member {
        patient: id.to_string(),
        arm,
        index,
        duration: (stop - index) as f64 / MILLIS_PER_DAY,
        event,
        age,
        male: patient.male,
        comorbidities: categories.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_study_is_a_valid_study() {
        let value: serde_json::Value = serde_json::from_str(EXAMPLE_STUDY).expect("JSON");
        let study = Study::from_json(&value).expect("a valid study");
        assert_eq!(study.arms.len(), 2);
        assert_eq!(study.covariates, default_covariates());
    }

    #[test]
    fn bad_studies_are_refused_saying_which_part() {
        let refused = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut value: serde_json::Value = serde_json::from_str(EXAMPLE_STUDY).expect("JSON");
            change(&mut value);
            Study::from_json(&value).expect_err("refused").to_string()
        };
        assert!(
            refused(&|v| v["arms"].as_array_mut().into_iter().for_each(|a| a.truncate(1)))
                .contains("exactly two")
        );
        assert!(refused(&|v| v["condition"] = serde_json::json!(["12"])).contains("condition"));
        assert!(refused(&|v| v["censoring"]["cutoff"] = serde_json::json!("soon")).contains("cutoff"));
        assert!(refused(&|v| v["alpha"] = serde_json::json!(1.5)).contains("alpha"));
        assert!(refused(&|v| v["surprise"] = serde_json::json!(1)).contains("surprise"));
        assert!(refused(&|v| v["outcome"] = serde_json::json!({ "death": false })).contains("neither"));
    }
}
