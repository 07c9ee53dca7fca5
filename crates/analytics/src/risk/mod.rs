//! Risk: comorbidity indices ([`comorbidity`]) and, over the record, each patient's indices as
//! of a date ([`patients`]); thirty-day readmission risk ([`readmission`]: LACE and a
//! logistic-regression model trained on the record, [`logistic`]).

pub mod comorbidity;
pub mod logistic;
pub mod readmission;

use std::collections::HashMap;

use serde::Serialize;
use store::Store;

use crate::Result;
use crate::record::{ConditionFacts, PatientFacts, facts, millis, patient_id};
use comorbidity::{Index, Scheme, Scorer, age_adjusted, hfrs, survival_10yr};

/// One patient's comorbidity indices as of a date, from the ICD-10-CM diagnoses of their
/// Conditions with onset (or recorded date) on or before it, refuted and entered-in-error ones
/// left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatientRisk {
    pub patient: String,
    /// Whole years at the date, when the birth date is known.
    pub age: Option<u32>,
    /// Charlson, Quan's code map, Charlson's weights.
    pub charlson: f64,
    pub charlson_categories: Vec<&'static str>,
    /// With an age: the age-adjusted score and the 10-year survival.
    pub charlson_age_adjusted: Option<f64>,
    pub survival_10yr: Option<f64>,
    /// Elixhauser, Quan's code map, van Walraven's weights.
    pub elixhauser: f64,
    pub elixhauser_categories: Vec<&'static str>,
    /// Hospital Frailty Risk Score and its category.
    pub hfrs: f64,
    pub hfrs_category: &'static str,
}

/// The record's default indices, ready to score patient after patient.
struct Scorers {
    charlson: Scorer,
    elixhauser: Scorer,
}

impl Scorers {
    fn new() -> Result<Scorers> {
        Ok(Scorers {
            charlson: Scorer::new(Scheme::new(Index::Charlson, "quan", "charlson")?)?,
            elixhauser: Scorer::new(Scheme::new(Index::Elixhauser, "quan", "van_walraven")?)?,
        })
    }

    fn risk(&mut self, id: &str, patient: &PatientFacts, codes: &[String], as_of: &str) -> PatientRisk {
        let age = patient.birth_date.as_deref().and_then(|birth| age_at(birth, as_of));
        let c = self.charlson.score(codes.iter().map(String::as_str));
        let e = self.elixhauser.score(codes.iter().map(String::as_str));
        let (frailty, category) = hfrs(codes.iter().map(String::as_str));
        let adjusted = age.map(|age| age_adjusted(c.score, f64::from(age)));
        PatientRisk {
            patient: id.to_string(),
            age,
            charlson: c.score,
            charlson_categories: c.categories,
            charlson_age_adjusted: adjusted,
            survival_10yr: adjusted.map(survival_10yr),
            elixhauser: e.score,
            elixhauser_categories: e.categories,
            hfrs: frailty,
            hfrs_category: category.name(),
        }
    }
}

/// The end of the day `as_of` (`YYYY-MM-DD`), in ms since the epoch.
fn end_of(as_of: &str) -> Result<i64> {
    millis(as_of)
        .filter(|_| as_of.len() == 10)
        .map(|start| start + 86_400_000 - 1)
        .ok_or_else(|| crate::Error::Invalid(format!("as-of '{as_of}' is not a date (YYYY-MM-DD)")))
}

/// The ICD-10-CM codes (without dots, upper case) of a Condition counted as of `cutoff`.
fn counted_codes(facts: &ConditionFacts, cutoff: i64) -> Vec<String> {
    if facts.withdrawn() || facts.onset_millis().is_some_and(|onset| onset > cutoff) {
        return Vec::new();
    }
    facts.icd10cm_codes().map(|code| code.replace('.', "").to_ascii_uppercase()).collect()
}

/// One patient's indices as of `as_of`, reading only their record: the Patient and the
/// Conditions that name them (by the reference search parameters of Condition). `None` when
/// there is no such live Patient.
pub fn patient(store: &dyn Store, id: &str, as_of: &str) -> Result<Option<PatientRisk>> {
    let cutoff = end_of(as_of)?;
    let Some(record) = store.read("Patient", id)? else { return Ok(None) };
    let Some(body) = record.body else { return Ok(None) };
    let patient = facts::<PatientFacts>(&body).unwrap_or_default();
    let parameters = fhir::search_parameters::search_parameters();
    let keys: Vec<_> = ["subject", "patient"]
        .iter()
        .filter_map(|code| parameters.get("Condition", code))
        .map(|applied| applied.key)
        .collect();
    let mut codes = Vec::new();
    for condition in store.referencing(&keys, &[("Patient".to_string(), id.to_string())])? {
        if condition.resource_type != "Condition" {
            continue;
        }
        if let Some(facts) = condition.body.as_deref().and_then(facts::<ConditionFacts>) {
            codes.extend(counted_codes(&facts, cutoff));
        }
    }
    Ok(Some(Scorers::new()?.risk(id, &patient, &codes, as_of)))
}

/// Whole years from a birth date to a day, both `YYYY-MM-DD`-like FHIR dates.
pub(crate) fn age_at(birth: &str, as_of: &str) -> Option<u32> {
    let parse = |text: &str| -> Option<(i32, u32, u32)> {
        let mut parts = text.get(..10).unwrap_or(text).split('-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next().map_or(Some(1), |m| m.parse().ok())?;
        let day = parts.next().map_or(Some(1), |d| d.parse().ok())?;
        Some((year, month, day))
    };
    let (by, bm, bd) = parse(birth)?;
    let (y, m, d) = parse(as_of)?;
    let mut years = y - by;
    if (m, d) < (bm, bd) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

/// Every patient's comorbidity indices as of `as_of` (`YYYY-MM-DD`; the end of that day), or
/// only `only`'s. One pass over Conditions, one over Patients.
pub fn patients(store: &dyn Store, as_of: &str, only: Option<&str>) -> Result<Vec<PatientRisk>> {
    let cutoff = end_of(as_of)?;
    let mut codes: HashMap<String, Vec<String>> = HashMap::new();
    store.scan_type("Condition", None, &mut |_, _, body| {
        let Some(facts) = facts::<ConditionFacts>(body) else { return Ok(()) };
        let Some(patient) = facts.subject.as_ref().and_then(patient_id) else { return Ok(()) };
        if only.is_some_and(|o| o != patient) {
            return Ok(());
        }
        let counted = counted_codes(&facts, cutoff);
        if !counted.is_empty() {
            codes.entry(patient.to_string()).or_default().extend(counted);
        }
        Ok(())
    })?;
    let mut scorers = Scorers::new()?;
    let mut found = Vec::new();
    store.scan_type("Patient", None, &mut |_, id, body| {
        if only.is_some_and(|o| o != id) {
            return Ok(());
        }
        let patient = facts::<PatientFacts>(body).unwrap_or_default();
        let list = codes.get(id).map(Vec::as_slice).unwrap_or_default();
        found.push(scorers.risk(id, &patient, list, as_of));
        Ok(())
    })?;
    found.sort_by(|a, b| b.charlson.total_cmp(&a.charlson).then_with(|| a.patient.cmp(&b.patient)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_whole_years_at_the_date() {
        assert_eq!(age_at("1950-06-15", "2020-06-14"), Some(69));
        assert_eq!(age_at("1950-06-15", "2020-06-15"), Some(70));
        assert_eq!(age_at("1950", "2020-01-01"), Some(70));
        assert_eq!(age_at("2030-01-01", "2020-01-01"), None);
    }
}
