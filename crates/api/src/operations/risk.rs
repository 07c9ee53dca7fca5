//! `$comorbidity`: comorbidity indices from the record's ICD-10-CM diagnoses as of a date, for
//! one patient (`Patient/[id]/$comorbidity`, their record read as the caller may see it) or
//! every patient (`$comorbidity`, a report over the whole record: `gate.bulk`).

use fhir::IssueType;
use serde_json::{Value as Json, json};

use super::analytics::analytics_error;
use super::registry::Call;
use super::{Level, json_response};
use crate::access::ViewedStore;
use crate::{Api, ApiError, Response};

/// One patient's indices as a `patient` parameter's parts.
fn patient_parameter(risk: &analytics::risk::PatientRisk) -> Json {
    let mut part = vec![
        json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{}", risk.patient) } }),
    ];
    if let Some(age) = risk.age {
        part.push(json!({ "name": "age", "valueInteger": age }));
    }
    part.push(json!({ "name": "charlson", "valueDecimal": risk.charlson }));
    if let (Some(adjusted), Some(survival)) = (risk.charlson_age_adjusted, risk.survival_10yr) {
        part.push(json!({ "name": "charlsonAgeAdjusted", "valueDecimal": adjusted }));
        part.push(json!({ "name": "survival10yr", "valueDecimal": (survival * 1e6).round() / 1e6 }));
    }
    part.extend(
        risk.charlson_categories.iter().map(|c| json!({ "name": "charlsonCategory", "valueCode": c })),
    );
    part.push(json!({ "name": "elixhauser", "valueDecimal": risk.elixhauser }));
    part.extend(
        risk.elixhauser_categories.iter().map(|c| json!({ "name": "elixhauserCategory", "valueCode": c })),
    );
    part.push(json!({ "name": "hfrs", "valueDecimal": (risk.hfrs * 1e6).round() / 1e6 }));
    part.push(json!({ "name": "hfrsCategory", "valueCode": risk.hfrs_category }));
    json!({ "name": "patient", "part": part })
}

impl Api {
    pub(crate) fn comorbidity_operation(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        let today = fhir::DateTime::now_utc().to_string();
        let as_of = call.inputs.get("asOf").unwrap_or(today.get(..10).unwrap_or(&today)).to_string();
        let count = call.inputs.whole_number("_count")?.unwrap_or(100).clamp(1, 10_000);
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let risks = match call.level {
            Level::Instance(_, id) => {
                call.gate.touch(id);
                let risk = analytics::risk::patient(&viewed, id, &as_of).map_err(analytics_error)?;
                vec![risk.ok_or_else(|| ApiError::not_found(format!("Patient/{id} is not known")))?]
            }
            _ => {
                // Every patient's scores: a report over the whole record.
                call.gate.bulk(None)?;
                let mut all = analytics::risk::patients(&viewed, &as_of, None).map_err(analytics_error)?;
                all.truncate(count);
                all
            }
        };
        let mut parameter = vec![json!({ "name": "asOf", "valueDate": as_of })];
        for risk in &risks {
            call.gate.touch(&risk.patient);
            parameter.push(patient_parameter(risk));
        }
        if risks.is_empty() && !matches!(call.level, Level::Instance(..)) {
            return Err(ApiError::new(422, IssueType::NotFound, "the record holds no Patient to score"));
        }
        Ok(json_response(&json!({ "resourceType": "Parameters", "parameter": parameter })))
    }
}

impl Api {
    /// `$high-risk`: the patients discharged in the 30 days up to `asOf` (by default the
    /// latest discharge on record), ranked by the trained readmission model's predicted risk,
    /// each with LACE and the three factors that add most. A ranking over the whole record.
    pub(crate) fn high_risk(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        use analytics::risk::readmission;
        call.gate.bulk(None)?;
        let path = self.config.readmission_model.as_ref().ok_or_else(|| {
            ApiError::not_supported("this server keeps no readmission model (it has no data directory)")
        })?;
        // A model file that does not read is the server's fault, not the request's.
        let model =
            readmission::load(path).map_err(|e| ApiError::internal(e.to_string()))?.ok_or_else(|| {
                ApiError::new(
                    422,
                    IssueType::NotFound,
                    "no readmission model has been trained yet: run chartroom risk train --data DIR",
                )
            })?;
        let count = call.inputs.whole_number("_count")?.unwrap_or(20).clamp(1, 1000);
        let today = fhir::DateTime::now_utc().to_string();
        let as_of = call.inputs.get("asOf").map(str::to_string);
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let stays =
            readmission::stays(&viewed, as_of.as_deref().unwrap_or(&today[..10])).map_err(analytics_error)?;
        let end = match &as_of {
            Some(date) => analytics::record::end_of_day(date).ok_or_else(|| {
                ApiError::bad_request(IssueType::Value, format!("asOf '{date}' is not a date (YYYY-MM-DD)"))
            })?,
            None => stays.iter().filter(|s| !s.died).map(|s| s.discharged).max().unwrap_or(0),
        };
        let entries = readmission::worklist(&stays, &model, end, count);
        let mut parameter = vec![
            json!({ "name": "asOf", "valueDate": analytics::record::date_of_day(end.div_euclid(86_400_000)) }),
            json!({ "name": "modelTrainedAt", "valueDateTime": model.trained_at }),
            json!({ "name": "modelAuc", "valueDecimal": (model.held_out.auc * 1e4).round() / 1e4 }),
        ];
        for entry in &entries {
            call.gate.touch(&entry.patient);
            let mut part = vec![
                json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{}", entry.patient) } }),
                json!({ "name": "encounter", "valueReference": { "reference": format!("Encounter/{}", entry.encounter) } }),
                json!({ "name": "discharged", "valueDate": analytics::record::date_of_day(entry.discharged.div_euclid(86_400_000)) }),
                json!({ "name": "risk", "valueDecimal": (entry.risk * 1e4).round() / 1e4 }),
                json!({ "name": "lace", "valueInteger": entry.lace }),
            ];
            for factor in &entry.factors {
                part.push(json!({ "name": "factor", "part": [
                    { "name": "feature", "valueCode": factor.feature },
                    { "name": "description", "valueString": factor.description },
                    { "name": "value", "valueDecimal": factor.value },
                    { "name": "contribution", "valueDecimal": (factor.contribution * 1e4).round() / 1e4 },
                ]}));
            }
            parameter.push(json!({ "name": "patient", "part": part }));
        }
        Ok(json_response(&json!({ "resourceType": "Parameters", "parameter": parameter })))
    }
}
