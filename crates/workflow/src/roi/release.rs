//! The release: a Bundle of exactly the requested scope.
//!
//! - The resources are those of the patient's compartment of the requested types (every
//!   compartment type when none is named), and the Patient itself when no types are named or
//!   `Patient` is one of them.
//! - A resource about another patient is never in it: its own subject (`subject`, `patient`
//!   or `beneficiary`) must be this patient, whatever else links it to the compartment.
//! - With a date range, a resource is in it when its clinical date (the first of its `date`,
//!   `onset-date`, `recorded-date`, `authoredon`, `created`, `period` search parameters that
//!   has a value) overlaps the range; a resource without one is left out. The Patient is in it
//!   whatever the dates.
//! - Records under their own law are never in it: psychotherapy notes (164.508(a)(2)) and
//!   substance-use treatment records (42 CFR Part 2), by their security labels (`PSYTHPN`,
//!   `ETH`, `SUD`). They need their own authorization and are released by hand.

use serde_json::{Value as Json, json};
use store::Store;

use super::Request;
use crate::{DAY, Error, Result};

/// Security labels (v3-ActCode) of records a general release never holds.
const OWN_LAW: &[&str] = &["PSYTHPN", "ETH", "SUD"];

fn under_own_law(json: &Json) -> bool {
    json["meta"]["security"]
        .as_array()
        .is_some_and(|labels| labels.iter().any(|l| l["code"].as_str().is_some_and(|c| OWN_LAW.contains(&c))))
}

fn day_start(date: &str) -> Option<i64> {
    fhir::DateTime::parse(date, fhir::DateTimeKind::Date).ok().map(|d| d.lower_bound_millis())
}

/// The compartment's resource types, sorted.
fn compartment_types() -> Vec<String> {
    let mut types: Vec<String> = fhir::definitions()
        .compartment("Patient")
        .map(|c| c.keys().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    types.sort();
    types
}

/// The Bundle released for `request`, stamped `now` (ms).
pub fn release(store: &dyn Store, request: &Request, now: i64) -> Result<Json> {
    let patient_reference = format!("Patient/{}", request.patient);
    let patient = store
        .read("Patient", &request.patient)?
        .filter(|record| !record.is_deleted())
        .and_then(|record| record.body.as_deref().and_then(|b| serde_json::from_slice::<Json>(b).ok()))
        .ok_or_else(|| Error::Invalid(format!("{patient_reference} is not on record")))?;
    let from = request.scope.from.as_deref().and_then(day_start);
    let to = request.scope.to.as_deref().and_then(day_start).map(|start| start + DAY);
    let in_range = |resource_type: &str, json: &Json| -> bool {
        if from.is_none() && to.is_none() {
            return true;
        }
        store::hold::clinical_dates(resource_type, json)
            .is_some_and(|(low, high)| from.is_none_or(|from| high > from) && to.is_none_or(|to| low < to))
    };
    let types =
        if request.scope.types.is_empty() { compartment_types() } else { request.scope.types.clone() };
    let mut entries = Vec::new();
    let patient_asked = request.scope.types.is_empty() || request.scope.types.iter().any(|t| t == "Patient");
    if patient_asked && !under_own_law(&patient) {
        entries.push(json!({ "fullUrl": patient_reference, "resource": patient }));
    }
    let target = vec![("Patient".to_string(), request.patient.clone())];
    for resource_type in types.iter().filter(|t| *t != "Patient") {
        let keys = fhir::search_parameters::compartment_keys("Patient", resource_type);
        if keys.is_empty() {
            continue;
        }
        let mut members: Vec<(String, Json)> = store
            .referencing(&keys, &target)?
            .into_iter()
            .filter(|record| record.resource_type == *resource_type)
            .filter_map(|record| {
                let json = serde_json::from_slice::<Json>(record.body.as_deref()?).ok()?;
                Some((record.id, json))
            })
            // About this patient, and naming no other.
            .filter(|(_, json)| fhir::patient_reference(json) == Some(patient_reference.as_str()))
            .filter(|(_, json)| fhir::patients_mentioned(json).iter().all(|id| *id == request.patient))
            .filter(|(_, json)| in_range(resource_type, json) && !under_own_law(json))
            // The department's own documents (letters, notices) are not the record; the
            // disputes that go with it are added below.
            .filter(|(_, json)| crate::written_only_by(resource_type, json).is_none())
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|a, b| a.0 == b.0);
        for (id, json) in members {
            entries.push(json!({ "fullUrl": format!("{resource_type}/{id}"), "resource": json }));
        }
    }
    // The patient's statement of disagreement with a denied amendment, and the denial letter
    // with it, go with every release of what they dispute (164.526(d)(5)(i)), whatever types
    // were asked for. A letter without a statement does not (the patient has not asked).
    let released: std::collections::HashSet<String> =
        entries.iter().filter_map(|e| e["fullUrl"].as_str().map(str::to_string)).collect();
    let keys = fhir::search_parameters::compartment_keys("Patient", "DocumentReference");
    let candidates: Vec<(String, Json)> = store
        .referencing(&keys, &target)?
        .into_iter()
        .filter(|record| record.resource_type == "DocumentReference" && !record.is_deleted())
        .filter_map(|record| Some((record.id, serde_json::from_slice::<Json>(record.body.as_deref()?).ok()?)))
        .filter(|(id, json)| {
            !released.contains(&format!("DocumentReference/{id}"))
                && fhir::patient_reference(json) == Some(patient_reference.as_str())
                && fhir::patients_mentioned(json).iter().all(|id| *id == request.patient)
                && !under_own_law(json)
                && crate::amendment::disputes(json)
                    .is_some_and(|(_, _, disputed)| disputed.iter().any(|r| released.contains(*r)))
        })
        .collect();
    let answered: std::collections::HashSet<String> = candidates
        .iter()
        .filter_map(|(_, json)| crate::amendment::disputes(json))
        .filter(|(kind, _, _)| *kind == crate::amendment::STATEMENT_OF_DISAGREEMENT)
        .map(|(_, task, _)| task.to_string())
        .collect();
    let mut disputing: Vec<(String, Json)> = candidates
        .into_iter()
        .filter(|(_, json)| {
            crate::amendment::disputes(json).is_some_and(|(_, task, _)| answered.contains(task))
        })
        .collect();
    disputing.sort_by(|a, b| a.0.cmp(&b.0));
    disputing.dedup_by(|a, b| a.0 == b.0);
    for (id, json) in disputing {
        entries.push(json!({ "fullUrl": format!("DocumentReference/{id}"), "resource": json }));
    }
    Ok(json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": super::date_time(now),
        "meta": { "tag": [{ "system": super::WORKFLOW_SYSTEM, "code": super::ROI_CODE }] },
        "identifier": { "system": "https://chartroom.dev/fhir/release", "value": request.id },
        "entry": entries,
    }))
}
