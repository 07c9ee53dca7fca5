//! Edits over stored records, and the coder worklist.

use std::collections::HashMap;

use fhir::search_parameters::{SearchParamType, search_parameters};
use serde_json::Value as Json;
use store::search::{Condition, Filter, Sort, SortBy};
use store::{SearchQuery, Store, VersionRecord};

use crate::extract::{self, patient_facts, patient_reference, service_date, setting_of};
use crate::{Diagnosis, Edit, Error, check};

/// Encounters read per store round trip.
const BATCH: usize = 500;

fn parse(record: &VersionRecord) -> Option<Json> {
    record.body.as_deref().and_then(|body| serde_json::from_slice(body).ok())
}

fn read_reference(store: &dyn Store, reference: &str) -> Option<Json> {
    let fhir::ReferenceTarget::Local { resource_type, id, .. } = fhir::parse_reference(reference).ok()?
    else {
        return None;
    };
    parse(&store.read(resource_type, id).ok()??)
}

/// The live resources of `resource_type` whose `encounter` parameter points at one of
/// `encounter_ids` (Condition.encounter, Claim.item.encounter).
fn pointing_at_encounters(
    store: &dyn Store,
    resource_type: &str,
    encounter_ids: &[String],
) -> Result<Vec<Json>, Error> {
    let Some(key) = search_parameters().get(resource_type, "encounter").map(|a| a.key) else {
        return Ok(Vec::new());
    };
    let targets: Vec<(String, String)> =
        encounter_ids.iter().map(|id| ("Encounter".to_string(), id.clone())).collect();
    Ok(store.referencing(&[key], &targets)?.iter().filter_map(parse).collect())
}

/// The encounters a Claim's items are for.
fn claim_encounter_ids(claim: &Json) -> Vec<String> {
    let mut ids: Vec<String> = claim
        .get("item")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .flat_map(|item| item.get("encounter").and_then(Json::as_array).into_iter().flatten())
        .filter_map(|r| r.get("reference")?.as_str())
        .filter_map(|reference| match fhir::parse_reference(reference).ok()? {
            fhir::ReferenceTarget::Local { resource_type: "Encounter", id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn encounter_id_of(condition: &Json) -> Option<String> {
    let reference = condition.get("encounter")?.get("reference")?.as_str()?;
    match fhir::parse_reference(reference).ok()? {
        fhir::ReferenceTarget::Local { resource_type: "Encounter", id, .. } => Some(id.to_string()),
        _ => None,
    }
}

/// Every diagnosis of an encounter: its `diagnosis` list (ranked) and the Conditions that point
/// at it without being listed.
fn encounter_diagnoses(store: &dyn Store, encounter: &Json, pointing: &[&Json]) -> Vec<Diagnosis> {
    let resolve = |reference: &str| read_reference(store, reference);
    let mut diagnoses = extract::diagnoses(encounter, &resolve);
    // Listed references may carry a version or the server's base: compare what they point at.
    let listed: Vec<String> = encounter
        .get("diagnosis")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("condition")?.get("reference")?.as_str())
        .filter_map(|reference| match fhir::parse_reference(reference).ok()? {
            fhir::ReferenceTarget::Local { resource_type: "Condition", id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect();
    for condition in pointing.iter().filter(|c| extract::is_asserted(c)) {
        let id = condition.get("id").and_then(Json::as_str).unwrap_or("");
        let reference = format!("Condition/{id}");
        if listed.iter().any(|listed_id| listed_id == id) {
            continue;
        }
        diagnoses.extend(extract::condition_diagnoses(condition, &reference, None));
    }
    diagnoses
}

/// The edits of a Condition, Encounter, Claim or ExplanationOfBenefit, read with what the store
/// knows around it: the patient, referenced Conditions, and (for a Condition) the other
/// Conditions of its encounter, for the edits that pair codes.
pub fn edits_for(store: &dyn Store, resource: &Json) -> Result<Vec<Edit>, Error> {
    let resource_type = resource.get("resourceType").and_then(Json::as_str).unwrap_or("");
    let setting = setting_of(resource_type).ok_or_else(|| {
        Error::Invalid(format!(
            "coding edits apply to Condition, Encounter, Claim and ExplanationOfBenefit, not {resource_type}"
        ))
    })?;
    let patient = patient_reference(resource).and_then(|r| read_reference(store, r));
    let facts = patient_facts(patient.as_ref(), service_date(resource).as_deref());
    let resolve = |reference: &str| read_reference(store, reference);
    let mut diagnoses = extract::diagnoses(resource, &resolve);
    match resource_type {
        "Condition" => {
            let own_id = resource.get("id").and_then(Json::as_str);
            if let Some(encounter) = encounter_id_of(resource) {
                for sibling in pointing_at_encounters(store, "Condition", &[encounter])?
                    .into_iter()
                    .filter(extract::is_asserted)
                {
                    if sibling.get("id").and_then(Json::as_str) == own_id {
                        continue;
                    }
                    let id = sibling.get("id").and_then(Json::as_str).unwrap_or("");
                    diagnoses.extend(extract::condition_diagnoses(
                        &sibling,
                        &format!("Condition/{id}"),
                        None,
                    ));
                }
            }
            // Only what concerns this Condition: its own codes, or pairs it is part of.
            let own = |location: &str| location.starts_with("Condition.");
            Ok(check(&diagnoses, &facts, setting)
                .into_iter()
                .filter(|e| own(&e.location) || e.other_location.as_deref().is_some_and(own))
                .collect())
        }
        "Encounter" => {
            let id = resource.get("id").and_then(Json::as_str).unwrap_or("").to_string();
            let pointing =
                if id.is_empty() { Vec::new() } else { pointing_at_encounters(store, "Condition", &[id])? };
            let diagnoses = encounter_diagnoses(store, resource, &pointing.iter().collect::<Vec<_>>());
            Ok(check(&diagnoses, &facts, setting))
        }
        _ => Ok(check(&diagnoses, &facts, setting)),
    }
}

/// Instants in different zones compare by their start in time, not as text.
fn instant_millis(text: &str) -> Option<i64> {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).ok().map(|d| d.lower_bound_millis())
}

fn discharge_millis(item: &WorklistItem) -> Option<i64> {
    item.discharged.as_deref().and_then(instant_millis)
}

/// Why an encounter is on the worklist.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// Finished, and no ICD-10-CM code on it or on its Conditions.
    NotCoded,
    /// A failing edit.
    Edit(Edit),
}

/// One encounter waiting for a coder.
#[derive(Clone, Debug, PartialEq)]
pub struct WorklistItem {
    pub encounter_id: String,
    pub patient: Option<String>,
    /// When the encounter ended (`period.end`, else `period.start`) as written.
    pub discharged: Option<String>,
    pub class: Option<String>,
    pub reasons: Vec<Reason>,
}

/// The finished encounters with no coded diagnosis or with failing edits, oldest discharge
/// first (encounters with no dates last), at most `limit` of them.
///
/// Encounters are read in order of admission (the `date` index). An encounter ends no
/// earlier than it starts, so once `limit` items were discharged before the admission of the
/// encounter just read, no later encounter can come before them: a first page of a large
/// store does not read every encounter.
pub fn worklist(store: &dyn Store, limit: Option<usize>) -> Result<Vec<WorklistItem>, Error> {
    let status = search_parameters()
        .get("Encounter", "status")
        .ok_or_else(|| Error::Invalid("Encounter.status is not a search parameter".into()))?
        .key;
    let mut query = SearchQuery {
        resource_type: "Encounter".to_string(),
        filters: vec![Filter::Param {
            key: status,
            any: vec![Condition::Token { system: None, code: Some("finished".to_string()) }],
        }],
        sort: search_parameters()
            .get("Encounter", "date")
            .map(|date| Sort {
                by: SortBy::Param { key: date.key, kind: SearchParamType::Date },
                descending: false,
            })
            .into_iter()
            .collect(),
        count: BATCH,
        cursor: None,
        total: store::Total::None,
    };
    let mut items = Vec::new();
    let mut patients: HashMap<String, Option<Json>> = HashMap::new();
    loop {
        let page = store.search(&query)?;
        let encounters: Vec<Json> = page.matches.iter().filter_map(parse).collect();
        let ids: Vec<String> = encounters
            .iter()
            .filter_map(|e| e.get("id").and_then(Json::as_str))
            .map(str::to_string)
            .collect();
        let conditions = pointing_at_encounters(store, "Condition", &ids)?;
        let mut by_encounter: HashMap<String, Vec<&Json>> = HashMap::new();
        for condition in &conditions {
            if let Some(id) = encounter_id_of(condition) {
                by_encounter.entry(id).or_default().push(condition);
            }
        }
        // A claim for the encounter carries the coder's codes even where the clinical record
        // holds none: such an encounter is coded, and its claim is what gets checked.
        let claims = pointing_at_encounters(store, "Claim", &ids)?;
        let mut claims_by_encounter: HashMap<String, Vec<&Json>> = HashMap::new();
        for claim in &claims {
            for id in claim_encounter_ids(claim) {
                claims_by_encounter.entry(id).or_default().push(claim);
            }
        }
        for encounter in &encounters {
            let id = encounter.get("id").and_then(Json::as_str).unwrap_or("").to_string();
            let pointing = by_encounter.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let mut diagnoses = encounter_diagnoses(store, encounter, pointing);
            let mut setting = crate::Setting::Clinical;
            if diagnoses.is_empty() {
                let resolve = |reference: &str| read_reference(store, reference);
                for claim in claims_by_encounter.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                    diagnoses.extend(extract::diagnoses(claim, &resolve));
                }
                setting = crate::Setting::Claim;
            }
            let patient_ref = patient_reference(encounter).map(str::to_string);
            let patient = match &patient_ref {
                Some(reference) => patients
                    .entry(reference.clone())
                    .or_insert_with(|| read_reference(store, reference))
                    .as_ref(),
                None => None,
            };
            let reasons: Vec<Reason> = if diagnoses.is_empty() {
                vec![Reason::NotCoded]
            } else {
                let facts = patient_facts(patient, service_date(encounter).as_deref());
                check(&diagnoses, &facts, setting).into_iter().map(Reason::Edit).collect()
            };
            if reasons.is_empty() {
                continue;
            }
            let period = encounter.get("period");
            let discharged = period
                .and_then(|p| p.get("end").or_else(|| p.get("start")))
                .and_then(Json::as_str)
                .map(str::to_string);
            let class =
                encounter.get("class").and_then(|c| c.get("code")).and_then(Json::as_str).map(str::to_string);
            items.push(WorklistItem { encounter_id: id, patient: patient_ref, discharged, class, reasons });
        }
        if !page.has_next {
            break;
        }
        let admitted =
            encounters.last().and_then(|e| e.get("period")?.get("start")?.as_str()).and_then(instant_millis);
        if let (Some(limit), Some(admitted)) = (limit, admitted)
            && items.iter().filter(|item| discharge_millis(item).is_some_and(|d| d < admitted)).count()
                >= limit
        {
            break;
        }
        query.cursor = page.last.map(|cursor| store::search::Cursor { before: false, ..cursor });
        if query.cursor.is_none() {
            break;
        }
    }
    items.sort_by_key(|item| {
        (discharge_millis(item).is_none(), discharge_millis(item), item.encounter_id.clone())
    });
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(items)
}
