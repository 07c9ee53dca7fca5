//! `Patient/$merge` (FHIR R5's Patient merge) and `Patient/$unmerge`: one registration
//! folded into another and unfolded again, each as one store transaction.
//!
//! A merge writes, as new versions: every resource that refers to the source (its
//! references to the source now name the target), the source (inactive, `link` replaced-by
//! the target) and the target (`link` replaces the source; the source's identifiers kept as
//! `old` ones). A `Provenance` (ISO 21089 `merge`) written in the same transaction names each
//! version written (`target`) and each version it replaced (`entity`, role `revision`). An
//! unmerge reads that Provenance and writes each of those resources back with its content
//! from before the merge, byte for byte (only `meta.versionId` and `meta.lastUpdated` are
//! new), recorded by a Provenance of its own (`unmerge`).
//!
//! Invariants:
//! - Every write is conditional on the version planned from (`If-Match`), so a change made
//!   meanwhile fails the whole transaction: nothing is written, and the caller can try again.
//! - Provenance and AuditEvent keep their references: they record what happened to the
//!   registration under its own id.
//! - The caller must see, and be allowed to change, every resource written; a resource
//!   withheld from them refuses the whole merge (half a record would be left behind).
//! - An unmerge is refused if any resource the merge wrote changed since: restoring it would
//!   undo a later change without anyone deciding so.

use std::collections::BTreeMap;

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhir::{IssueType, OperationOutcome, Resource};
use serde_json::{Value as Json, json};
use store::{Precondition, PreparedResource, VersionRecord, WriteOp, WriteOutcome, WriteUnit};

use super::matching::patient_input;
use super::registry::{Call, Change};
use super::{Inputs, json_response};
use crate::access::Gate;
use crate::write::{Validation, new_id, prepare};
use crate::{Api, ApiError, Response};

/// ISO 21089 record lifecycle events (`merge`, `unmerge`) as FHIR names them.
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";

/// Identifiers a merge party may be named by.
const MAX_IDENTIFIERS: usize = 10;

/// Types whose references to a merged registration stay as they are.
const KEPT: &[&str] = &["Provenance", "AuditEvent"];

/// A version a merge wrote: type, id, version.
type Written = (String, String, u64);

/// A stored current version.
struct Current {
    resource_type: String,
    id: String,
    version: u64,
    json: Json,
}

impl Current {
    fn of(record: VersionRecord) -> Result<Current, ApiError> {
        let what = format!("{}/{}", record.resource_type, record.id);
        let body = record
            .body
            .ok_or_else(|| ApiError::new(410, IssueType::Deleted, format!("{what} was deleted")))?;
        let json = fhir::parse_json(&body)
            .map_err(|e| ApiError::internal(format!("stored {what} does not parse: {e}")))?;
        Ok(Current { resource_type: record.resource_type, id: record.id, version: record.version, json })
    }

    fn reference(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

/// One resource a merge or an unmerge writes: the version it replaces and its new content.
struct Step {
    before: Current,
    after: Json,
    /// Checked against the R4 definitions under the server's setting (the two Patients);
    /// a moved resource only has its references changed, and keeps its standing.
    validate: bool,
}

impl Step {
    fn written_reference(&self) -> String {
        format!("{}/_history/{}", self.before.reference(), self.before.version + 1)
    }

    fn replaced_reference(&self) -> String {
        format!("{}/_history/{}", self.before.reference(), self.before.version)
    }
}

/// Reference parameters that can point at a Patient, on every type.
fn patient_reference_keys() -> Vec<ParamKey> {
    search_parameters()
        .all_applied()
        .filter(|a| {
            let parameter = search_parameters().parameter(a);
            parameter.kind == SearchParamType::Reference && parameter.targets.contains(&"Patient")
        })
        .map(|a| a.key)
        .collect()
}

fn has_link(patient: &Json, kind: &str) -> Option<String> {
    patient["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["type"] == kind)
        .and_then(|l| l["other"]["reference"].as_str().map(|r| r.trim_start_matches("Patient/").to_string()))
}

fn add_link(patient: &mut Json, other: &str, kind: &str) {
    let link = json!({ "other": { "reference": format!("Patient/{other}") }, "type": kind });
    match patient.get_mut("link").and_then(Json::as_array_mut) {
        Some(links) => links.push(link),
        None => patient["link"] = json!([link]),
    }
}

fn boolean(inputs: &Inputs, name: &str) -> Result<bool, ApiError> {
    inputs
        .0
        .boolean(name)
        .map(|b| b.unwrap_or(false))
        .map_err(|e| ApiError::bad_request(IssueType::Value, e.0))
}

/// The Provenance recording a merge or an unmerge.
fn provenance(activity: &str, display: &str, steps: &[Step], also: &[String], gate: &Gate) -> Json {
    let who = match gate.who() {
        Some((Some(fhir_user), user)) => json!({ "reference": fhir_user, "display": user }),
        Some((None, user)) => json!({ "display": user }),
        None => json!({ "display": "chartroom (command line)" }),
    };
    let mut entity: Vec<Json> = steps
        .iter()
        .map(|s| json!({ "role": "revision", "what": { "reference": s.replaced_reference() } }))
        .collect();
    entity.extend(also.iter().map(|r| json!({ "role": "source", "what": { "reference": r } })));
    json!({
        "resourceType": "Provenance",
        "id": new_id(),
        "target": steps.iter().map(|s| json!({ "reference": s.written_reference() })).collect::<Vec<_>>(),
        "recorded": fhir::DateTime::now_utc().to_string(),
        "activity": { "coding": [{ "system": LIFECYCLE, "code": activity, "display": display }] },
        "agent": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author" }] },
            "who": who,
        }],
        "entity": entity,
    })
}

/// The store transaction of `steps` and their Provenance: every write conditional on the
/// version planned from.
fn unit(steps: &[Step], provenance: &Json, validation: Validation) -> Result<WriteUnit, ApiError> {
    let mut ops = Vec::with_capacity(steps.len() + 1);
    for step in steps {
        let resource = Resource::from_value(step.after.clone())?;
        let prepared = if step.validate {
            prepare(&resource, validation)?
        } else {
            resource.check_reference_formats()?;
            PreparedResource::new(&resource)?
        };
        ops.push(WriteOp::Update {
            resource: prepared,
            if_match: Some(Precondition::Versions(vec![step.before.version])),
        });
    }
    ops.push(WriteOp::Create(prepare(&Resource::from_value(provenance.clone())?, validation)?));
    Ok(WriteUnit { ops })
}

/// Whether two stored versions hold the same resource, apart from their version and time.
fn same_content(a: &[u8], b: &[u8]) -> bool {
    let content = |bytes: &[u8]| {
        let mut json: Json = serde_json::from_slice(bytes).ok()?;
        if let Some(meta) = json.get_mut("meta").and_then(Json::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        Some(json)
    };
    content(a).is_some_and(|a| Some(a) == content(b))
}

/// "Observation 3, Encounter 1" of the moved resources.
fn by_type(steps: &[Step]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for step in steps {
        *counts.entry(step.before.resource_type.as_str()).or_default() += 1;
    }
    counts.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
}

/// The operation's answer: the input, an outcome, and the resulting Patient.
fn answer(input: Option<&Json>, outcome: OperationOutcome, result: Option<Json>) -> Response {
    let mut parameter = Vec::new();
    if let Some(input) = input {
        parameter.push(json!({ "name": "input", "resource": input }));
    }
    parameter.push(json!({ "name": "outcome", "resource": outcome.to_json() }));
    if let Some(result) = result {
        parameter.push(json!({ "name": "result", "resource": result }));
    }
    json_response(&json!({ "resourceType": "Parameters", "parameter": parameter }))
}

/// Records what a committed change wrote, for the audit trail, and finds the body stored
/// for `wanted`.
fn note_written(gate: &Gate, written: &[store::Written], wanted: &str) -> Option<Json> {
    let mut found = None;
    for w in written {
        if let WriteOutcome::Stored { version, body, .. } = &w.outcome {
            gate.wrote(format!("{}/{}/_history/{version}", w.resource_type, w.id));
            if format!("{}/{}", w.resource_type, w.id) == wanted {
                found = serde_json::from_slice(body).ok();
            }
        }
    }
    found
}

impl Api {
    fn current(&self, resource_type: &str, id: &str) -> Result<Current, ApiError> {
        let record = self
            .store
            .read(resource_type, id)?
            .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} is not known")))?;
        Current::of(record)
    }

    /// The Patient a merge names, by reference and/or identifiers (which must all be on one
    /// Patient, the referenced one if both are given).
    fn merge_party(&self, call: &Call<'_>, role: &str) -> Result<String, ApiError> {
        let by_reference = patient_input(call.inputs, &format!("{role}-patient"))?;
        let name = format!("{role}-patient-identifier");
        let mut identifiers: Vec<String> = Vec::new();
        for input in call.inputs.0.all(&name) {
            // A token search value: `system|value`, the separators in each escaped.
            let token = match input {
                fhir::parameters::Input::Text(text) => text.clone(),
                fhir::parameters::Input::Json(identifier) => {
                    let value =
                        identifier["value"].as_str().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                            ApiError::bad_request(
                                IssueType::Required,
                                format!("{name}: an Identifier needs a value"),
                            )
                        })?;
                    let escape = |text: &str| {
                        text.replace('\\', "\\\\").replace(',', "\\,").replace('|', "\\|").replace('$', "\\$")
                    };
                    match identifier["system"].as_str() {
                        Some(system) => format!("{}|{}", escape(system), escape(value)),
                        None => escape(value),
                    }
                }
            };
            if token.trim().is_empty() || token.ends_with('|') {
                return Err(ApiError::bad_request(
                    IssueType::Required,
                    format!("{name}: an Identifier needs a value"),
                ));
            }
            identifiers.push(token);
        }
        if identifiers.len() > MAX_IDENTIFIERS {
            return Err(ApiError::bad_request(
                IssueType::TooCostly,
                format!("{name}: at most {MAX_IDENTIFIERS} identifiers"),
            ));
        }
        let mut by_identifier: Option<String> = None;
        if !identifiers.is_empty() {
            let mut found: Option<Vec<String>> = None;
            for identifier in &identifiers {
                let condition = form_urlencoded::Serializer::new(String::new())
                    .append_pair("identifier", identifier)
                    .finish();
                let query = self.conditional_query(call.gate, "Patient", &condition, &call.request.base)?;
                let ids: Vec<String> = self
                    .store
                    .search(&store::SearchQuery { count: 2, ..query })?
                    .matches
                    .into_iter()
                    .map(|m| m.id)
                    .collect();
                found = Some(match found {
                    None => ids,
                    Some(before) => before.into_iter().filter(|id| ids.contains(id)).collect(),
                });
            }
            match found.unwrap_or_default().as_slice() {
                [one] => by_identifier = Some(one.clone()),
                [] => {
                    return Err(ApiError::bad_request(
                        IssueType::NotFound,
                        format!(
                            "{role}-patient-identifier: no one Patient carries {}",
                            identifiers.join(" and ")
                        ),
                    ));
                }
                _ => {
                    return Err(ApiError::bad_request(
                        IssueType::MultipleMatches,
                        format!(
                            "{role}-patient-identifier: more than one Patient carries {}",
                            identifiers.join(" and ")
                        ),
                    ));
                }
            }
        }
        match (by_reference, by_identifier) {
            (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
                IssueType::Conflict,
                format!("{role}-patient is Patient/{a} but its identifiers are Patient/{b}'s"),
            )),
            (Some(id), _) | (None, Some(id)) => Ok(id),
            (None, None) => Err(ApiError::bad_request(
                IssueType::Required,
                format!("$merge needs {role}-patient or {role}-patient-identifier"),
            )),
        }
    }

    /// `Patient/$merge`.
    pub(crate) fn merge_patients(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let gate = call.gate;
        let source_id = self.merge_party(call, "source")?;
        let target_id = self.merge_party(call, "target")?;
        if source_id == target_id {
            return Err(ApiError::bad_request(
                IssueType::Value,
                format!(
                    "source and target are both Patient/{source_id}: a Patient is not merged into itself"
                ),
            ));
        }
        let preview = boolean(call.inputs, "preview")?;
        let source = self.current("Patient", &source_id)?;
        let target = self.current("Patient", &target_id)?;
        for party in [&source, &target] {
            let body = serde_json::to_vec(&party.json).unwrap_or_default();
            gate.admit_one("Patient", &body)?;
        }
        if let Some(into) = has_link(&source.json, "replaced-by") {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Patient/{source_id} was already merged into Patient/{into}"),
            ));
        }
        if let Some(into) = has_link(&target.json, "replaced-by") {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Patient/{target_id} was merged into Patient/{into}; merge into that one"),
            ));
        }
        if target.json["active"] == false {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Patient/{target_id} is inactive; the surviving registration must be active"),
            ));
        }

        // The target as it is to be: the client's result-patient, or the target with the
        // source's identifiers kept as old ones (found by them still).
        let mut target_after = match call.inputs.resource("result-patient") {
            Some(result) => {
                if result["resourceType"] != "Patient" || result["id"] != target_id.as_str() {
                    return Err(ApiError::bad_request(
                        IssueType::Invalid,
                        format!("result-patient must be the target, Patient/{target_id}, with its id"),
                    ));
                }
                if result["active"] == false || has_link(result, "replaced-by").is_some() {
                    return Err(ApiError::new(
                        422,
                        IssueType::BusinessRule,
                        "result-patient is the surviving registration: it cannot be inactive or replaced by another",
                    ));
                }
                // Edits to the target since the client read it are not overwritten unseen.
                if let Some(read) = result["meta"]["versionId"].as_str()
                    && read != target.version.to_string()
                {
                    return Err(ApiError::new(
                        409,
                        IssueType::Conflict,
                        format!(
                            "result-patient is based on version {read} of Patient/{target_id}, which is now at version {}; read it again",
                            target.version
                        ),
                    ));
                }
                result.clone()
            }
            None => {
                let mut after = target.json.clone();
                let known: Vec<(Json, Json)> = after["identifier"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| (i["system"].clone(), i["value"].clone()))
                    .collect();
                let carried: Vec<Json> = source.json["identifier"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| !known.contains(&(i["system"].clone(), i["value"].clone())))
                    .map(|i| {
                        let mut old = i.clone();
                        old["use"] = json!("old");
                        old
                    })
                    .collect();
                if !carried.is_empty() {
                    match after.get_mut("identifier").and_then(Json::as_array_mut) {
                        Some(identifiers) => identifiers.extend(carried),
                        None => after["identifier"] = Json::Array(carried),
                    }
                }
                after
            }
        };
        if !target_after["link"].as_array().into_iter().flatten().any(|l| {
            l["type"] == "replaces" && l["other"]["reference"] == format!("Patient/{source_id}").as_str()
        }) {
            add_link(&mut target_after, &source_id, "replaces");
        }
        let mut source_after = source.json.clone();
        source_after["active"] = json!(false);
        add_link(&mut source_after, &target_id, "replaced-by");

        // Everything else that refers to the source.
        let from = format!("Patient/{source_id}");
        let to = format!("Patient/{target_id}");
        let mut moved = Vec::new();
        let mut withheld = 0;
        let referring = self
            .store
            .referencing(&patient_reference_keys(), &[("Patient".to_string(), source_id.clone())])?;
        for record in referring {
            if KEPT.contains(&record.resource_type.as_str())
                || (record.resource_type == "Patient" && (record.id == source_id || record.id == target_id))
            {
                continue;
            }
            if let Some(body) = &record.body
                && gate.sight(&record.resource_type, body) != privacy::Sight::Shown
            {
                // Counted, not named: what is withheld stays unsaid.
                withheld += 1;
                continue;
            }
            if !gate.may_move_in_merge(&record.resource_type) {
                return Err(ApiError::new(
                    403,
                    IssueType::Forbidden,
                    format!(
                        "moving {}/{} is not yours to do (your role may not change {} resources); nothing was changed",
                        record.resource_type, record.id, record.resource_type
                    ),
                ));
            }
            let before = Current::of(record)?;
            let mut resource = Resource::from_value(before.json.clone())?;
            // Another registration's replaced-by and replaces links are the history of earlier
            // merges: they keep naming the registration they were about.
            let history_links: Vec<(usize, Json)> = if before.resource_type == "Patient" {
                before.json["link"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .filter(|(_, l)| l["type"] == "replaced-by" || l["type"] == "replaces")
                    .map(|(at, l)| (at, l.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let mut changed = false;
            resource.rewrite_references(&mut |reference| {
                let names_source = reference == from
                    || reference.strip_prefix(&from).is_some_and(|rest| rest.starts_with("/_history/"));
                changed |= names_source;
                names_source.then(|| to.clone())
            });
            let mut after = resource.as_json().clone();
            for (at, link) in history_links {
                if let Some(slot) = after["link"].get_mut(at) {
                    *slot = link;
                }
            }
            if changed && after != before.json {
                moved.push(Step { before, after, validate: false });
            }
        }
        if withheld > 0 {
            return Err(ApiError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "{withheld} resources of Patient/{source_id}'s record are withheld from you; a merge must move all of it, so nothing was changed (an administrator can merge these registrations)"
                ),
            ));
        }
        moved.sort_by_key(|step| step.before.reference());
        let summary = if moved.is_empty() {
            "no other resource refers to it".to_string()
        } else {
            format!("{} resources moved ({})", moved.len(), by_type(&moved))
        };
        gate.touch(&source_id);
        gate.touch(&target_id);
        let input = call.body.cloned();
        if preview {
            let mut outcome = OperationOutcome::information(format!(
                "preview: merging Patient/{source_id} into Patient/{target_id} would write {} versions: the two Patients and {summary}; nothing was changed",
                moved.len() + 2
            ));
            for step in &moved {
                outcome.issues.push(fhir::Issue::new(
                    fhir::Severity::Information,
                    IssueType::Informational,
                    format!("would move {} to Patient/{target_id}", step.before.reference()),
                ));
            }
            let response = answer(input.as_ref(), outcome, Some(target_after));
            return Ok(Change { unit: None, answer: Box::new(move |_, _, _| Ok(response)) });
        }
        let mut steps = vec![
            Step { before: source, after: source_after, validate: true },
            Step { before: target, after: target_after, validate: true },
        ];
        steps.extend(moved);
        let provenance = provenance("merge", "Merge Record Lifecycle Event", &steps, &[], gate);
        let provenance_id = provenance["id"].as_str().unwrap_or("").to_string();
        let unit = unit(&steps, &provenance, self.config.validation)?;
        let count = steps.len();
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| {
                let result = note_written(gate, &written, &format!("Patient/{target_id}"));
                Ok(answer(
                    input.as_ref(),
                    OperationOutcome::information(format!(
                        "merged Patient/{source_id} into Patient/{target_id}: {count} versions written, {summary}; recorded in Provenance/{provenance_id} (undo with Patient/$unmerge)"
                    )),
                    result,
                ))
            }),
        })
    }

    /// What a stored Provenance says a merge of `source` into `target` wrote (type, id, the
    /// version written; each replaced the one before), if the server itself wrote it: a
    /// `merge` Provenance never changed since it was created, whose every named version was
    /// written in the same transaction just before it, as the one version after the one it
    /// names as replaced, and in which the source was linked replaced-by the target. A
    /// Provenance anyone could write through the API does not pass, so an unmerge never
    /// restores what a look-alike names.
    fn merge_written(
        &self,
        record: VersionRecord,
        source: &str,
        target: &str,
    ) -> Result<Option<Vec<Written>>, ApiError> {
        if record.version != 1 || record.method != store::WriteMethod::Create {
            return Ok(None);
        }
        let seq = record.seq;
        let Ok(provenance) = Current::of(record) else { return Ok(None) };
        let is_merge = provenance.json["activity"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == LIFECYCLE && c["code"] == "merge");
        if !is_merge {
            return Ok(None);
        }
        let versioned = |reference: &Json| -> Option<(String, String, u64)> {
            let text = reference["reference"].as_str()?;
            match text.split('/').collect::<Vec<_>>().as_slice() {
                [t, id, "_history", v] => Some((t.to_string(), id.to_string(), v.parse().ok()?)),
                _ => None,
            }
        };
        let targets = provenance.json["target"].as_array().cloned().unwrap_or_default();
        let written: Vec<(String, String, u64)> = targets.iter().filter_map(versioned).collect();
        let replaced: BTreeMap<(String, String), u64> = provenance.json["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["role"] == "revision")
            .filter_map(|e| versioned(&e["what"]))
            .map(|(t, id, v)| ((t, id), v))
            .collect();
        let count = written.len() as i64;
        if written.len() != targets.len() || replaced.len() != written.len() || count == 0 {
            return Ok(None);
        }
        let mut linked = (false, false);
        for (resource_type, id, version) in &written {
            if replaced.get(&(resource_type.clone(), id.clone())) != Some(&version.saturating_sub(1)) {
                return Ok(None);
            }
            let Some(version_record) = self.store.vread(resource_type, id, *version)? else {
                return Ok(None);
            };
            if version_record.seq >= seq || version_record.seq < seq - count {
                return Ok(None);
            }
            if resource_type == "Patient" {
                let body: Json = version_record
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                if id == source && has_link(&body, "replaced-by").as_deref() == Some(target) {
                    linked.0 = true;
                }
                if id == target
                    && body["link"].as_array().into_iter().flatten().any(|l| {
                        l["type"] == "replaces"
                            && l["other"]["reference"] == format!("Patient/{source}").as_str()
                    })
                {
                    linked.1 = true;
                }
            }
        }
        Ok((linked == (true, true)).then_some(written))
    }

    /// `Patient/$unmerge`: the latest merge of the source undone.
    pub(crate) fn unmerge_patients(&self, call: &Call<'_>) -> Result<Change, ApiError> {
        let gate = call.gate;
        let source_id = patient_input(call.inputs, "source-patient")?.ok_or_else(|| {
            ApiError::bad_request(
                IssueType::Required,
                "$unmerge needs source-patient: the Patient merged away",
            )
        })?;
        let preview = boolean(call.inputs, "preview")?;
        let source = self.current("Patient", &source_id)?;
        gate.admit_one("Patient", &serde_json::to_vec(&source.json).unwrap_or_default())?;
        let target_id = has_link(&source.json, "replaced-by").ok_or_else(|| {
            ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Patient/{source_id} is not merged into another Patient"),
            )
        })?;
        if let Some(given) = patient_input(call.inputs, "target-patient")?
            && given != target_id
        {
            return Err(ApiError::new(
                422,
                IssueType::BusinessRule,
                format!("Patient/{source_id} was merged into Patient/{target_id}, not Patient/{given}"),
            ));
        }
        // The latest merge of this source into this target that the server itself wrote.
        let keys: Vec<ParamKey> =
            search_parameters().get("Provenance", "target").map(|a| a.key).into_iter().collect();
        let mut recorded: Vec<VersionRecord> = self
            .store
            .referencing(&keys, &[("Patient".to_string(), source_id.clone())])?
            .into_iter()
            .filter(|record| record.resource_type == "Provenance")
            .collect();
        recorded.sort_by_key(|record| std::cmp::Reverse(record.seq));
        let mut found = None;
        for record in recorded {
            let id = record.id.clone();
            if let Some(plan) = self.merge_written(record, &source_id, &target_id)? {
                found = Some((id, plan));
                break;
            }
        }
        let (merge_id, plan) = found.ok_or_else(|| {
            ApiError::new(
                422,
                IssueType::BusinessRule,
                format!(
                    "no merge of Patient/{source_id} into Patient/{target_id} is recorded (a Provenance of $merge); restore its resources from their history"
                ),
            )
        })?;
        let mut steps = Vec::new();
        let mut changed_since = Vec::new();
        for (resource_type, id, version) in plan {
            let record = self
                .store
                .read(&resource_type, &id)?
                .ok_or_else(|| ApiError::internal(format!("{resource_type}/{id} is gone from the store")))?;
            // Judged before anything about it is said.
            let visible = record
                .body
                .as_deref()
                .is_some_and(|b| gate.sight(&resource_type, b) == privacy::Sight::Shown);
            if !visible || !gate.may_move_in_merge(&resource_type) {
                return Err(ApiError::new(
                    403,
                    IssueType::Forbidden,
                    "a resource the merge moved is not yours to see or change; nothing was changed (an administrator can undo this merge)",
                ));
            }
            // Unchanged since: the content the merge wrote, whatever the version now (an
            // unmerge of a later merge writes it back as a newer version).
            let wrote = self.store.vread(&resource_type, &id, version)?.and_then(|r| r.body);
            let unchanged = match (&record.body, &wrote) {
                (Some(now), Some(wrote)) => record.version == version || same_content(now, wrote),
                _ => false,
            };
            if !unchanged {
                changed_since.push(format!(
                    "{resource_type}/{id} (now version {}, the merge wrote {version})",
                    record.version
                ));
                continue;
            }
            let current = Current::of(record)?;
            let before_merge =
                self.store.vread(&resource_type, &id, version - 1)?.and_then(|r| r.body).ok_or_else(
                    || {
                        ApiError::internal(format!(
                            "{resource_type}/{id} version {} is missing from its history",
                            version - 1
                        ))
                    },
                )?;
            let after = fhir::parse_json(&before_merge).map_err(|e| {
                ApiError::internal(format!("stored {resource_type}/{id} does not parse: {e}"))
            })?;
            steps.push(Step { before: current, after, validate: false });
        }
        if !changed_since.is_empty() {
            return Err(ApiError::new(
                409,
                IssueType::Conflict,
                format!(
                    "changed since the merge, so restoring them would undo later work: {}; nothing was changed (correct these by hand from their history)",
                    changed_since.join(", ")
                ),
            ));
        }
        gate.touch(&source_id);
        gate.touch(&target_id);
        let moved = steps.len().saturating_sub(2);
        let merge_reference = format!("Provenance/{merge_id}");
        let input = call.body.cloned();
        if preview {
            let outcome = OperationOutcome::information(format!(
                "preview: undoing {merge_reference} would give Patient/{source_id}, Patient/{target_id} and {moved} moved resources their content from before the merge; nothing was changed"
            ));
            let result = steps
                .iter()
                .find(|s| s.before.reference() == format!("Patient/{source_id}"))
                .map(|s| s.after.clone());
            let response = answer(input.as_ref(), outcome, result);
            return Ok(Change { unit: None, answer: Box::new(move |_, _, _| Ok(response)) });
        }
        let provenance = provenance(
            "unmerge",
            "Unmerge Record Lifecycle Event",
            &steps,
            std::slice::from_ref(&merge_reference),
            gate,
        );
        let provenance_id = provenance["id"].as_str().unwrap_or("").to_string();
        let unit = unit(&steps, &provenance, self.config.validation)?;
        Ok(Change {
            unit: Some(unit),
            answer: Box::new(move |_, gate, written| {
                let result = note_written(gate, &written, &format!("Patient/{source_id}"));
                Ok(answer(
                    input.as_ref(),
                    OperationOutcome::information(format!(
                        "unmerged Patient/{source_id} from Patient/{target_id}: {merge_reference} undone, {} versions written with their content from before it; recorded in Provenance/{provenance_id}",
                        written.len().saturating_sub(1)
                    )),
                    result,
                ))
            }),
        })
    }
}
