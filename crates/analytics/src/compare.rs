//! Comparing two treatments over time: a study's cohort extracted from the record
//! ([`crate::record::cohort`]), then Kaplan–Meier per arm, the log-rank test and a Cox model
//! of the arm with the study's covariates ([`crate::survival`]).
//!
//! [`Comparison::to_parameters`] is the FHIR answer of `$cohort-compare`: a `Parameters` with
//! `cohort` (sizes and exclusions), one `arm` per arm (size, events, median with its interval,
//! survival at the study's times, the curve as `step` parts), `logRank` and `cox` (one
//! `coefficient` per covariate, the arm first: its hazard ratio is the second arm's against
//! the first).

use serde::Serialize;
use serde_json::{Value as Json, json};
use store::Store;

use crate::record::cohort::{Cohort, Exclusion, Study, extract};
use crate::survival::{CoxFit, KaplanMeier, LogRank, cox_ph, kaplan_meier, logrank};
use crate::{Error, Result};

/// One arm's survival.
#[derive(Clone, Debug, Serialize)]
pub struct ArmSurvival {
    pub name: String,
    pub title: String,
    pub patients: usize,
    pub events: usize,
    pub kaplan_meier: KaplanMeier,
    /// (days, survival, lower, upper, at risk) at each of the study's times.
    pub survival_at: Vec<SurvivalAt>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SurvivalAt {
    pub days: f64,
    pub survival: f64,
    pub lower: f64,
    pub upper: f64,
    pub at_risk: usize,
}

/// The study's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub study: Study,
    pub diagnosed: usize,
    pub included: usize,
    pub excluded: Vec<(Exclusion, usize)>,
    pub cutoff: String,
    pub arms: Vec<ArmSurvival>,
    pub log_rank: Option<LogRank>,
    pub cox: Option<CoxFit>,
    /// Why a statistic could not be computed (e.g. an arm without events), if one could not.
    pub notes: Vec<String>,
}

/// Runs the study over the record.
pub fn compare(store: &dyn Store, study: &Study) -> Result<Comparison> {
    let cohort = extract(store, study)?;
    analyse(study, cohort)
}

/// The statistics over an extracted cohort.
pub fn analyse(study: &Study, cohort: Cohort) -> Result<Comparison> {
    let mut notes = Vec::new();
    let mut arms = Vec::new();
    for (number, arm) in study.arms.iter().enumerate() {
        let members: Vec<_> = cohort.members.iter().filter(|m| m.arm == number).collect();
        if members.is_empty() {
            return Err(Error::NotEnoughData(format!(
                "arm '{}' has no patients ({} diagnosed; see the exclusions)",
                arm.name, cohort.diagnosed
            )));
        }
        let durations: Vec<f64> = members.iter().map(|m| m.duration).collect();
        let events: Vec<bool> = members.iter().map(|m| m.event).collect();
        let curve = kaplan_meier(&durations, &events, study.alpha)?;
        let survival_at = study
            .survival_at
            .iter()
            .map(|&days| {
                let at = curve.timeline.partition_point(|&p| p <= days).saturating_sub(1);
                SurvivalAt {
                    days,
                    survival: curve.survival_at(days),
                    lower: curve.ci_lower.get(at).copied().unwrap_or(f64::NAN),
                    upper: curve.ci_upper.get(at).copied().unwrap_or(f64::NAN),
                    at_risk: curve.at_risk_at(days),
                }
            })
            .collect();
        arms.push(ArmSurvival {
            name: arm.name.clone(),
            title: arm.title.clone().unwrap_or_else(|| arm.name.clone()),
            patients: members.len(),
            events: events.iter().filter(|e| **e).count(),
            kaplan_meier: curve,
            survival_at,
        });
    }
    let durations: Vec<f64> = cohort.members.iter().map(|m| m.duration).collect();
    let events: Vec<bool> = cohort.members.iter().map(|m| m.event).collect();
    let groups: Vec<usize> = cohort.members.iter().map(|m| m.arm).collect();
    let log_rank = match logrank(&durations, &events, &groups) {
        Ok(test) => Some(test),
        Err(e) => {
            notes.push(format!("log-rank test: {e}"));
            None
        }
    };
    let mut names = vec![format!("arm[{}]", study.arms[1].name)];
    let mut columns = vec![groups.iter().map(|&g| g as f64).collect::<Vec<f64>>()];
    for covariate in &study.covariates {
        names.push(covariate.name().to_string());
        columns.push(cohort.members.iter().map(|m| m.covariate(*covariate)).collect());
    }
    let cox = match cox_ph(&durations, &events, &columns, &names, study.alpha) {
        Ok(fit) => Some(fit),
        Err(e) => {
            notes.push(format!("Cox model: {e}"));
            None
        }
    };
    Ok(Comparison {
        study: study.clone(),
        diagnosed: cohort.diagnosed,
        included: cohort.members.len(),
        excluded: cohort.excluded,
        cutoff: fhir::DateTime::from_epoch_millis(cohort.cutoff).to_string(),
        arms,
        log_rank,
        cox,
        notes,
    })
}

fn decimal(value: f64) -> Json {
    if value.is_finite() { json!({ "valueDecimal": (value * 1e9).round() / 1e9 }) } else { json!({}) }
}

fn part(name: &str, value: Json) -> Json {
    let mut object = json!({ "name": name });
    if let (Some(target), Some(source)) = (object.as_object_mut(), value.as_object()) {
        for (key, value) in source {
            target.insert(key.clone(), value.clone());
        }
    }
    object
}

fn days(value: Option<f64>) -> Json {
    value.map_or(json!({}), decimal)
}

impl Comparison {
    /// The FHIR answer (see the module's documentation). Missing values (a median never
    /// reached) are parts without a value.
    pub fn to_parameters(&self) -> Json {
        let mut parameters = Vec::new();
        parameters.push(part("study", json!({ "valueString": self.study.name })));
        let mut cohort = vec![
            part("diagnosed", json!({ "valueInteger": self.diagnosed })),
            part("included", json!({ "valueInteger": self.included })),
            part("cutoff", json!({ "valueDateTime": self.cutoff })),
        ];
        for (reason, count) in &self.excluded {
            cohort.push(json!({ "name": "excluded", "part": [
                part("reason", json!({ "valueCode": serde_json::to_value(reason).unwrap_or(Json::Null) })),
                part("description", json!({ "valueString": reason.describe() })),
                part("count", json!({ "valueInteger": count })),
            ]}));
        }
        parameters.push(json!({ "name": "cohort", "part": cohort }));
        for arm in &self.arms {
            let curve = &arm.kaplan_meier;
            let mut parts = vec![
                part("name", json!({ "valueString": arm.name })),
                part("title", json!({ "valueString": arm.title })),
                part("patients", json!({ "valueInteger": arm.patients })),
                part("events", json!({ "valueInteger": arm.events })),
                part("median", days(curve.median)),
                part("medianLower", days(curve.median_ci.0)),
                part("medianUpper", days(curve.median_ci.1)),
            ];
            for at in &arm.survival_at {
                parts.push(json!({ "name": "survivalAt", "part": [
                    part("days", decimal(at.days)), part("survival", decimal(at.survival)),
                    part("lower", decimal(at.lower)), part("upper", decimal(at.upper)),
                    part("atRisk", json!({ "valueInteger": at.at_risk })),
                ]}));
            }
            for i in 0..curve.timeline.len() {
                parts.push(json!({ "name": "step", "part": [
                    part("days", decimal(curve.timeline[i])), part("survival", decimal(curve.survival[i])),
                    part("lower", decimal(curve.ci_lower[i])), part("upper", decimal(curve.ci_upper[i])),
                    part("atRisk", json!({ "valueInteger": curve.at_risk[i] })),
                    part("events", json!({ "valueInteger": curve.observed[i] })),
                    part("censored", json!({ "valueInteger": curve.censored[i] })),
                ]}));
            }
            parameters.push(json!({ "name": "arm", "part": parts }));
        }
        if let Some(test) = &self.log_rank {
            parameters.push(json!({ "name": "logRank", "part": [
                part("testStatistic", decimal(test.test_statistic)),
                part("pValue", decimal(test.p_value)),
                part("degreesOfFreedom", json!({ "valueInteger": test.degrees_of_freedom })),
            ]}));
        }
        if let Some(fit) = &self.cox {
            let mut parts = vec![
                part("concordance", decimal(fit.concordance_index)),
                part("logLikelihood", decimal(fit.log_likelihood)),
            ];
            for i in 0..fit.names.len() {
                parts.push(json!({ "name": "coefficient", "part": [
                    part("covariate", json!({ "valueString": fit.names[i] })),
                    part("coef", decimal(fit.params[i])),
                    part("se", decimal(fit.standard_errors[i])),
                    part("hazardRatio", decimal(fit.hazard_ratios[i])),
                    part("hazardRatioLower", decimal(fit.ci_lower[i].exp())),
                    part("hazardRatioUpper", decimal(fit.ci_upper[i].exp())),
                    part("z", decimal(fit.z[i])),
                    part("pValue", decimal(fit.p_values[i])),
                ]}));
            }
            parameters.push(json!({ "name": "cox", "part": parts }));
        }
        for note in &self.notes {
            parameters.push(part("note", json!({ "valueString": note })));
        }
        json!({ "resourceType": "Parameters", "parameter": parameters })
    }
}
