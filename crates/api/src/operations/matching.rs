//! Duplicate patients at the API: `Patient/$match` (FHIR R4: the Patients that may be the
//! one given, graded) and the check at registration (a create of a Patient that probably
//! duplicates one on file is answered with the candidates as a warning, or refused with 409).
//!
//! Matching uses an index of every Patient kept by the API (`mpi::index::Index`), brought up
//! to date with the Patient versions written since it last looked; once a tenth of the register
//! changed, a fresh one (the model estimated again) is built in the background and swapped in.
//! A server builds the first one at start ([`Api::warm_patient_index`]). What a caller is shown of it passes the
//! gate: a candidate they may not see is left out, as in a search.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fhir::{IssueType, OperationOutcome};
use mpi::compare::Vector;
use mpi::index::{Found, Index, grade};
use mpi::linkage::{LINK_THRESHOLD, REVIEW_THRESHOLD};
use mpi::person::Person;
use serde_json::{Value as Json, json};

use super::{Inputs, json_response};
use crate::access::Gate;
use crate::{Api, ApiError, Response};
use store::Store;

/// What a create of a Patient that probably duplicates one on file gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateCheck {
    /// No check.
    Off,
    /// Created, with the probable duplicates as warnings in the answer's OperationOutcome
    /// (`Prefer: return=OperationOutcome`, a Bundle entry's `response.outcome`).
    #[default]
    Warn,
    /// Refused with 409 and the probable duplicates; nothing written.
    Refuse,
}

/// The index of every active Patient, the newest Patient write it has seen, and whether a
/// fresh one is being built beside it.
#[derive(Default)]
pub(crate) struct PatientIndex {
    current: Mutex<Option<(i64, Index)>>,
    rebuilding: AtomicBool,
}

const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

/// The newest Patient versions, a page before `before` (newest first).
fn patient_versions(store: &dyn Store, before: Option<i64>) -> Result<store::HistoryPage, ApiError> {
    Ok(store.history(
        &store::HistoryScope::Type("Patient".into()),
        &store::HistoryQuery { count: 500, before_seq: before, ..Default::default() },
    )?)
}

/// A new index of every active Patient, stamped with the newest Patient write before the
/// scan (versions written during it are applied again later, which changes nothing).
fn build_index(store: &dyn Store) -> Result<(i64, Index), ApiError> {
    let stamp = patient_versions(store, None)?.versions.first().map_or(0, |v| v.seq);
    let mut people = Vec::new();
    store.scan_type("Patient", None, &mut |_, _, body| {
        if let Ok(patient) = serde_json::from_slice::<Json>(body)
            // Records merged away are not matched again.
            && patient["active"] != false
        {
            people.push(Person::from_patient(&patient));
        }
        Ok(())
    })?;
    Ok((stamp, Index::build(people, &mpi::model::Training::default())))
}

impl PatientIndex {
    /// Builds a fresh index on a thread of its own and swaps it in when done; requests go on
    /// matching against the one in place meanwhile (kept current one write at a time). With
    /// no index yet, the first requests wait for this one.
    fn rebuild_in_background(self: &Arc<Self>, store: Arc<dyn Store>) {
        if self.rebuilding.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let started = std::thread::Builder::new().name("patient-index".into()).spawn(move || {
            // With nothing in place, hold the lock while building: a request waits for this
            // build rather than starting a second one.
            let mut waiting = match this.current.lock() {
                Ok(guard) if guard.is_none() => Some(guard),
                _ => None,
            };
            match build_index(store.as_ref()) {
                Ok(built) => match waiting.as_mut() {
                    Some(guard) => **guard = Some(built),
                    None => {
                        if let Ok(mut guard) = this.current.lock() {
                            *guard = Some(built);
                        }
                    }
                },
                Err(error) => eprintln!("the patient index could not be built: {error:?}"),
            }
            drop(waiting);
            this.rebuilding.store(false, Ordering::SeqCst);
        });
        if started.is_err() {
            self.rebuilding.store(false, Ordering::SeqCst);
        }
    }
}

impl Api {
    /// Starts building the index of Patients in the background (a server calls this at
    /// start, so the first `$match` or registration does not wait for it).
    pub fn warm_patient_index(&self) {
        self.patient_index.rebuild_in_background(self.store.clone());
    }

    /// Runs `use_index` on the index of every active Patient, brought up to date first: the
    /// Patient versions written since it last looked are applied one by one. Once a tenth of
    /// it changed, a fresh index (the model estimated again) is built in the background.
    fn with_patient_index<T>(&self, use_index: impl FnOnce(&Index) -> T) -> Result<T, ApiError> {
        let stamp = patient_versions(self.store.as_ref(), None)?.versions.first().map_or(0, |v| v.seq);
        let mut cached = self
            .patient_index
            .current
            .lock()
            .map_err(|_| ApiError::internal("the patient index lock is poisoned"))?;
        if cached.is_none() {
            *cached = Some(build_index(self.store.as_ref())?);
        }
        let (seen, index) =
            cached.as_mut().ok_or_else(|| ApiError::internal("the patient index is missing"))?;
        if *seen < stamp {
            // Newest first: the first version seen of each Patient is its current one.
            let mut applied = std::collections::HashSet::new();
            let mut before = None;
            'pages: loop {
                let page = patient_versions(self.store.as_ref(), before)?;
                for version in &page.versions {
                    if version.seq <= *seen {
                        break 'pages;
                    }
                    if !applied.insert(version.id.clone()) {
                        continue;
                    }
                    let patient =
                        version.body.as_deref().and_then(|b| serde_json::from_slice::<Json>(b).ok());
                    match patient {
                        Some(patient) if patient["active"] != false => {
                            index.upsert(Person::from_patient(&patient))
                        }
                        _ => index.remove(&version.id),
                    }
                }
                match page.next_before_seq {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            *seen = stamp;
        }
        if index.needs_estimate() {
            self.patient_index.rebuild_in_background(self.store.clone());
        }
        Ok(use_index(index))
    }

    /// The registered Patients that may be `patient`, each read through the gate (those the
    /// caller may not see are left out), with their Patient resource.
    fn visible_matches(&self, patient: &Json, gate: &Gate) -> Result<Vec<(Found, Json)>, ApiError> {
        let person = Person::from_patient(patient);
        let found = self.with_patient_index(|index| index.matches(&person))?;
        let decisions = match &self.config.mpi_decisions {
            Some(path) => mpi::review::Decisions::load(path)
                .map_err(|e| ApiError::internal(format!("the review decisions cannot be read: {e}")))?,
            None => mpi::review::Decisions::default(),
        };
        let mut shown = Vec::new();
        for found in found {
            // A reviewer decided these are different people.
            if !person.id.is_empty() && decisions.different(&person.id, &found.id) {
                continue;
            }
            let Some(record) = self.store.read("Patient", &found.id)? else { continue };
            let Some(body) = record.body else { continue };
            if gate.admit("Patient", &body) != privacy::Sight::Shown {
                continue;
            }
            let resource: Json = serde_json::from_slice(&body)
                .map_err(|e| ApiError::internal(format!("Patient/{} is not JSON: {e}", found.id)))?;
            shown.push((found, resource));
        }
        Ok(shown)
    }

    /// `Patient/$match`: a searchset of the Patients that may be the one given, each with
    /// `search.score` (the match probability) and the `match-grade` extension.
    pub(crate) fn match_patients(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        let patient = inputs.resource("resource").cloned().ok_or_else(|| {
            ApiError::bad_request(IssueType::Required, "$match needs resource: the Patient to find")
        })?;
        if patient["resourceType"] != "Patient" {
            return Err(ApiError::bad_request(
                IssueType::Invalid,
                format!("$match's resource must be a Patient, not {}", patient["resourceType"]),
            ));
        }
        let only_certain = match inputs.get("onlyCertainMatches") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    IssueType::Value,
                    format!("onlyCertainMatches must be true or false, not '{other}'"),
                ));
            }
        };
        let count = inputs.whole_number("count")?.unwrap_or(10).clamp(1, 100);
        let mut matches = self.visible_matches(&patient, gate)?;
        if only_certain {
            matches.retain(|(found, _)| found.probability >= LINK_THRESHOLD);
            // The specification: with several certain matches none is certain enough to use.
            if matches.len() > 1 {
                matches.clear();
            }
        }
        matches.truncate(count);
        let entries: Vec<Json> = matches
            .iter()
            .map(|(found, resource)| {
                gate.touch(&found.id);
                json!({
                    "fullUrl": format!("Patient/{}", found.id),
                    "resource": resource,
                    "search": {
                        "extension": [{ "url": MATCH_GRADE, "valueCode": grade(found.probability) }],
                        "mode": "match",
                        "score": (found.probability * 1e6).round() / 1e6,
                    }
                })
            })
            .collect();
        Ok(json_response(&json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": entries.len(),
            "entry": entries,
        })))
    }

    /// The check at registration, before a Patient is created: `Ok(None)` when no registered
    /// Patient is a probable duplicate (or the check is off); the warnings to answer with
    /// under `Warn`; a 409 under `Refuse`.
    pub(crate) fn registration_check(
        &self,
        patient: &Json,
        gate: &Gate,
    ) -> Result<Option<OperationOutcome>, ApiError> {
        if self.config.duplicate_check == DuplicateCheck::Off {
            return Ok(None);
        }
        let probable: Vec<(Found, Json)> = self
            .visible_matches(patient, gate)?
            .into_iter()
            .filter(|(found, _)| found.probability >= REVIEW_THRESHOLD)
            .collect();
        if probable.is_empty() {
            return Ok(None);
        }
        let mut outcome = OperationOutcome { issues: Vec::new() };
        for (found, _) in &probable {
            gate.touch(&found.id);
            let mut issue = fhir::Issue::new(
                fhir::Severity::Warning,
                IssueType::Duplicate,
                format!(
                    "this Patient may be Patient/{} already on file ({} match, probability {:.4}); see Patient/$match",
                    found.id,
                    grade(found.probability),
                    found.probability
                ),
            );
            issue.expression = vec![format!("Patient/{}", found.id)];
            outcome.issues.push(issue);
        }
        if self.config.duplicate_check == DuplicateCheck::Refuse {
            for issue in &mut outcome.issues {
                issue.severity = fhir::Severity::Error;
            }
            return Err(ApiError { status: 409, outcome, etag: None });
        }
        Ok(Some(outcome))
    }
}

/// A candidate pair's probability and comparison vector (none: no longer a candidate).
type Scored = Option<(f64, Vector)>;

/// Which pairs the review queue lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listed {
    Waiting,
    Decided,
    All,
}

/// `Patient/[id]` (or the id alone) given as a Reference or as text, checked to be a
/// Patient's id.
pub(crate) fn patient_input(inputs: &Inputs, name: &str) -> Result<Option<String>, ApiError> {
    let value = match inputs.0.one(name).map_err(|e| ApiError::bad_request(IssueType::Invalid, e.0))? {
        None => return Ok(None),
        Some(fhir::parameters::Input::Text(text)) => text.clone(),
        Some(fhir::parameters::Input::Json(json)) => json["reference"].as_str().unwrap_or("").to_string(),
    };
    match fhir::patient_id_input(&value) {
        Some(id) => Ok(Some(id.to_string())),
        None => Err(ApiError::bad_request(
            IssueType::Value,
            format!("{name} must be a reference to a Patient (Patient/[id]), not '{value}'"),
        )),
    }
}

/// How a Patient is shown in a list: official name and birth date.
fn display(patient: &Json) -> String {
    let name = patient["name"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["use"] == "official").or(names.first()))
        .map(|name| {
            let given: Vec<&str> =
                name["given"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
            format!("{} {}", given.join(" "), name["family"].as_str().unwrap_or("")).trim().to_string()
        })
        .unwrap_or_default();
    match patient["birthDate"].as_str() {
        Some(born) => format!("{name} (born {born})"),
        None => name,
    }
}

impl Api {
    fn decisions(&self) -> Result<mpi::review::Decisions, ApiError> {
        match &self.config.mpi_decisions {
            Some(path) => mpi::review::Decisions::load(path)
                .map_err(|e| ApiError::internal(format!("the review decisions cannot be read: {e}"))),
            None => Ok(mpi::review::Decisions::default()),
        }
    }

    /// The Patient `id` if the caller may see it.
    fn visible_patient(&self, id: &str, gate: &Gate) -> Result<Option<Json>, ApiError> {
        let Some(record) = self.store.read("Patient", id)? else { return Ok(None) };
        let Some(body) = record.body else { return Ok(None) };
        if gate.admit("Patient", &body) != privacy::Sight::Shown {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&body).ok())
    }

    /// `Patient/$duplicates`: the review queue. Waiting pairs are the registered Patients'
    /// pairs at or above the review threshold not yet decided; decided ones come from the
    /// decisions (with their probability when they are still candidates). A pair is listed
    /// only if the caller may see both Patients.
    pub(crate) fn duplicate_pairs(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        let listed = match inputs.get("status") {
            None | Some("waiting") => Listed::Waiting,
            Some("decided") => Listed::Decided,
            Some("all") => Listed::All,
            Some(other) => {
                return Err(ApiError::bad_request(
                    IssueType::Value,
                    format!("status must be waiting, decided or all, not '{other}'"),
                ));
            }
        };
        let count = inputs.whole_number("_count")?.unwrap_or(100).clamp(1, 1000);
        let decisions = self.decisions()?;
        // The candidate pairs; each field's evidence is worked out below for the pairs shown.
        let candidates: Vec<(String, String, f64, Vector)> = self.with_patient_index(|index| {
            index
                .pairs(REVIEW_THRESHOLD)
                .into_iter()
                .map(|(a, f)| (a, f.id, f.probability, f.vector))
                .collect()
        })?;
        let mut rows: Vec<(String, String, Scored)> = Vec::new();
        if listed != Listed::Decided {
            rows.extend(
                candidates
                    .iter()
                    .filter(|(a, b, ..)| listed == Listed::All || decisions.on(a, b).is_none())
                    .map(|(a, b, p, v)| (a.clone(), b.clone(), Some((*p, *v)))),
            );
        }
        if listed != Listed::Waiting {
            for decision in decisions.all() {
                let known = candidates.iter().find(|(a, b, ..)| {
                    (a, b) == (&decision.a, &decision.b) || (b, a) == (&decision.a, &decision.b)
                });
                if listed == Listed::All && known.is_some() {
                    continue; // listed with the candidates already
                }
                rows.push((decision.a.clone(), decision.b.clone(), known.map(|k| (k.2, k.3))));
            }
        }
        // The pairs shown: at most `count`, both registrations visible to the caller.
        let mut shown = Vec::new();
        for (a, b, scored) in rows {
            if shown.len() >= count {
                break;
            }
            if let (Some(first), Some(second)) =
                (self.visible_patient(&a, gate)?, self.visible_patient(&b, gate)?)
            {
                shown.push((a, b, scored, first, second));
            }
        }
        let evidence: Vec<Json> = self.with_patient_index(|index| {
            shown
                .iter()
                .map(|(a, _, scored, ..)| {
                    let explained = match (index.person(a), scored) {
                        (Some(person), Some((_, vector))) => index.model.explain(person, vector, &index.frequencies),
                        _ => Vec::new(),
                    };
                    Json::Array(
                        explained
                            .iter()
                            .filter(|e| e.level != "missing")
                            .map(|e| {
                                json!({ "name": "evidence", "part": [
                                    { "name": "field", "valueString": e.field },
                                    { "name": "level", "valueString": e.level },
                                    { "name": "weight", "valueDecimal": (e.weight * 1000.0).round() / 1000.0 },
                                ]})
                            })
                            .collect(),
                    )
                })
                .collect()
        })?;
        let mut parameter = Vec::new();
        for ((a, b, scored, first, second), evidence) in shown.into_iter().zip(evidence) {
            gate.touch(&a);
            gate.touch(&b);
            let mut part = vec![
                json!({ "name": "a", "valueReference": { "reference": format!("Patient/{a}"), "display": display(&first) } }),
                json!({ "name": "b", "valueReference": { "reference": format!("Patient/{b}"), "display": display(&second) } }),
            ];
            if let Some((probability, _)) = scored {
                part.push(
                    json!({ "name": "probability", "valueDecimal": (probability * 1e6).round() / 1e6 }),
                );
                part.push(json!({ "name": "grade", "valueCode": grade(probability) }));
                let proposed = if probability >= LINK_THRESHOLD { "link" } else { "review" };
                part.push(json!({ "name": "proposed", "valueCode": proposed }));
            }
            part.extend(evidence.as_array().cloned().unwrap_or_default());
            if let Some(decision) = decisions.on(&a, &b) {
                let verdict = match decision.verdict {
                    mpi::review::Verdict::SamePerson => "same-person",
                    mpi::review::Verdict::DifferentPeople => "different-people",
                };
                part.push(json!({ "name": "decision", "part": [
                    { "name": "verdict", "valueCode": verdict },
                    { "name": "by", "valueString": decision.by },
                    { "name": "at", "valueDateTime": decision.at },
                ]}));
            }
            parameter.push(json!({ "name": "pair", "part": part }));
        }
        Ok(json_response(&json!({ "resourceType": "Parameters", "parameter": parameter })))
    }

    /// `Patient/$decide-duplicate`: records the caller's decision on a pair, now, in the
    /// append-only decisions file; both Patients must exist and be the caller's to see.
    pub(crate) fn decide_duplicate(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        let required = |name: &str| {
            patient_input(inputs, name)?.ok_or_else(|| {
                ApiError::bad_request(
                    IssueType::Required,
                    format!("$decide-duplicate needs {name}: a Patient"),
                )
            })
        };
        let (a, b) = (required("a")?, required("b")?);
        if a == b {
            return Err(ApiError::bad_request(
                IssueType::Value,
                "a decision is about two different registrations; a and b are the same",
            ));
        }
        let verdict = mpi::review::Verdict::parse(inputs.get("decision").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(IssueType::Value, e.to_string()))?;
        for id in [&a, &b] {
            let record = self
                .store
                .read("Patient", id)?
                .ok_or_else(|| ApiError::not_found(format!("Patient/{id} is not known")))?;
            let body = record
                .body
                .ok_or_else(|| ApiError::new(410, IssueType::Deleted, format!("Patient/{id} was deleted")))?;
            gate.admit_one("Patient", &body)?;
        }
        let path = self.config.mpi_decisions.as_ref().ok_or_else(|| {
            ApiError::not_supported("this server keeps no review decisions (it has no data directory)")
        })?;
        let by = gate.who().map_or("chartroom", |(_, user)| user).to_string();
        let decision = mpi::review::Decision {
            a: a.clone(),
            b: b.clone(),
            verdict,
            by,
            at: fhir::DateTime::now_utc().to_string(),
        };
        mpi::review::record(path, &decision)
            .map_err(|e| ApiError::internal(format!("the decision could not be recorded: {e}")))?;
        gate.touch(&a);
        gate.touch(&b);
        let said = match verdict {
            mpi::review::Verdict::SamePerson => "the same person (merge them with Patient/$merge)",
            mpi::review::Verdict::DifferentPeople => "different people (the pair is not proposed again)",
        };
        Ok(json_response(
            &OperationOutcome::information(format!(
                "recorded: Patient/{a} and Patient/{b} are {said}, by {} at {}",
                decision.by, decision.at
            ))
            .to_json(),
        ))
    }
}
