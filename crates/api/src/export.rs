//! Bulk export (FHIR Bulk Data Access, `$export`): the whole record, the Patient compartment of
//! every patient, or one patient's record, as NDJSON files fetched after an asynchronous job.
//!
//! Kick-off (`[base]/$export`, `Patient/$export`, `Patient/[id]/$export`, `Group/[id]/$export`,
//! with `Prefer: respond-async`) answers 202 with the job's status URL
//! (`[base]/$export-status/JOB`). The job runs on its own thread over one snapshot per
//! resource type and writes `DIR/exports/JOB/TYPE-N.ndjson` (at most [`RESOURCES_PER_FILE`]
//! each), then `manifest.json`. Polling answers 202 while it runs and the manifest when done;
//! files are fetched from `[base]/$export-file/JOB/NAME`; DELETE on the status URL cancels the
//! job or removes its files. The manifest is on disk, so a finished export survives a restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fhir::IssueType;
use serde_json::{Value as Json, json};

use crate::access::Gate;
use crate::{Api, ApiError, Request, Response};

/// The file in a job's directory naming the user who started it (not an NDJSON file, so
/// never served).
const OWNER_FILE: &str = "owner";
/// Beside each file of a job, the patients whose records it holds, one per line (not an NDJSON
/// file, so never served).
const PATIENTS_SUFFIX: &str = ".patients";
/// Export jobs one user may have running at once.
const JOBS_PER_USER: usize = 2;

/// Resources per NDJSON file: a file is one response body.
pub const RESOURCES_PER_FILE: u64 = 100_000;

/// What a job exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportScope {
    /// Every resource (`[base]/$export`).
    System,
    /// The resources of the Patient compartment's types (`Patient/$export`).
    AllPatients,
    /// These patients' records, as `$everything` gives them (`Patient/[id]/$export`,
    /// `Group/[id]/$export`, or `Patient/$export?patient=...`).
    Patients(Vec<String>),
}

/// A job as the server tracks it while it runs.
struct Job {
    cancelled: Arc<AtomicBool>,
    exported: Arc<AtomicU64>,
    /// Who started it.
    owner: Option<String>,
}

/// The export jobs of one API.
#[derive(Default)]
pub struct Exports {
    /// Where jobs write; `None`: bulk export is not available.
    dir: Option<PathBuf>,
    running: Mutex<HashMap<String, Job>>,
}

impl Exports {
    pub fn new(dir: Option<PathBuf>) -> Exports {
        Exports { dir, running: Mutex::new(HashMap::new()) }
    }

    /// Records a job as running, unless its starter has [`JOBS_PER_USER`] running already
    /// (each job is a thread and files on disk): counted and recorded under one lock, so that
    /// kickoffs arriving together cannot all pass the count.
    fn admit(&self, id: String, job: Job) -> Result<(), ApiError> {
        let mut running =
            self.running.lock().map_err(|_| ApiError::internal("the export jobs cannot be counted"))?;
        if let Some(owner) = &job.owner
            && running.values().filter(|j| j.owner.as_ref() == Some(owner)).count() >= JOBS_PER_USER
        {
            return Err(ApiError::new(
                429,
                IssueType::Throttled,
                format!("{JOBS_PER_USER} exports of yours are running; wait for one to finish or cancel one"),
            ));
        }
        running.insert(id, job);
        Ok(())
    }
}

fn write_file_patients(
    dir: &std::path::Path,
    name: &str,
    patients: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let list: Vec<&str> = patients.iter().map(String::as_str).collect();
    std::fs::write(dir.join(format!("{name}{PATIENTS_SUFFIX}")), list.join("\n"))
        .map_err(|e| format!("cannot write the export: {e}"))
}

/// Whether `job` can name a Bulk Data job (export or import): the UUID each is given, so that
/// a job id never reaches the file system as anything but a directory name.
pub fn valid_job_id(job: &str) -> bool {
    job.len() == 36 && job.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn valid_file(name: &str) -> bool {
    name.ends_with(".ndjson")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The types a scope exports, by `_type` (checked) and the scope.
fn export_types(scope: &ExportScope, requested: Option<&str>) -> Result<Vec<String>, ApiError> {
    let defs = fhir::definitions();
    let compartment: Vec<String> =
        defs.compartment("Patient").map(|c| c.keys().map(|t| t.to_string()).collect()).unwrap_or_default();
    let mut types: Vec<String> = match requested {
        Some(list) => {
            let mut types = Vec::new();
            for name in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if !defs.is_resource_type(name) {
                    return Err(ApiError::bad_request(
                        IssueType::Value,
                        format!("_type: '{name}' is not a resource type"),
                    ));
                }
                types.push(name.to_string());
            }
            types
        }
        None if *scope == ExportScope::System => defs.resource_types().map(str::to_string).collect(),
        None => {
            let mut types = compartment.clone();
            types.push("Patient".into());
            types
        }
    };
    if *scope == ExportScope::AllPatients {
        types.retain(|t| t == "Patient" || compartment.contains(t));
    }
    types.sort();
    types.dedup();
    Ok(types)
}

/// The ids of each type `_typeFilter` names that an export keeps.
type TypeFilterMatches = HashMap<String, std::collections::HashSet<String>>;

/// What of its scope an export writes: these types (all of the scope's when `None`), changed
/// since, and of the types `_typeFilter` names only the ids kept.
#[derive(Clone, Copy)]
struct Selection<'a> {
    types: Option<&'a [String]>,
    since: Option<i64>,
    kept: &'a TypeFilterMatches,
    /// `_deidentify`: what each resource becomes before it is written (`None` from it: left
    /// out).
    deidentifier: Option<&'a deid::Deidentifier>,
}

/// The manifest's extension counting what a de-identified export removed, per class.
const DEIDENTIFICATION_EXTENSION: &str = "https://chartroom.dev/fhir/bulk/deidentification";

/// Bulk Data kick-offs run only asynchronously: the request must say `Prefer: respond-async`.
pub(crate) fn require_async(request: &Request, operation: &str) -> Result<(), ApiError> {
    if request.prefer.as_deref().is_some_and(|p| p.split(',').any(|p| p.trim() == "respond-async")) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            IssueType::Required,
            format!("{operation} runs asynchronously: send Prefer: respond-async"),
        ))
    }
}

impl Api {
    /// `$export` at system, Patient or Group level (and for one Patient): starts a job.
    pub(crate) fn export_kickoff(
        &self,
        request: &Request,
        gate: &Gate,
        scope: ExportScope,
        inputs: &crate::operations::Inputs,
    ) -> Result<Response, ApiError> {
        let Some(dir) = &self.exports.dir else {
            return Err(ApiError::not_supported("bulk export needs a data directory; this server has none"));
        };
        require_async(request, "$export")?;
        if let Some(format) = inputs.get("_outputFormat")
            && !matches!(format, "application/fhir+ndjson" | "application/ndjson" | "ndjson")
        {
            return Err(ApiError::bad_request(
                IssueType::NotSupported,
                format!("_outputFormat {format} is not supported; exports are application/fhir+ndjson"),
            ));
        }
        // `_deidentify` (an extension of this server): the files hold de-identified copies.
        let deidentify = match inputs.get("_deidentify") {
            None => None,
            Some(name) => {
                let profile = deid::Profile::parse(name)
                    .map_err(|e| ApiError::bad_request(IssueType::Value, format!("_deidentify: {e}")))?;
                gate.deidentified(profile.name())?;
                let as_of = fhir::DateTime::now_utc().to_string();
                let as_of = as_of.get(..10).unwrap_or("").to_string();
                Some(match profile {
                    deid::Profile::SafeHarbor => {
                        deid::Settings::safe_harbor(&as_of).map_err(|e| ApiError::internal(e.to_string()))?
                    }
                    deid::Profile::DateShift => {
                        let Some(path) = &self.config.deid_key else {
                            return Err(ApiError::not_supported(
                                "date-shifted extracts need the record's key in a data directory; this server has none",
                            ));
                        };
                        let key =
                            deid::Key::load_or_create(path).map_err(|e| ApiError::internal(e.to_string()))?;
                        deid::Settings::date_shift(key, &as_of)
                    }
                })
            }
        };
        for unsupported in ["_elements", "includeAssociatedData"] {
            if inputs.get(unsupported).is_some() {
                return Err(ApiError::not_supported(format!("$export does not support {unsupported}")));
            }
        }
        // `patient` narrows a Patient-level export to some patients.
        let scope = match (scope, inputs.get("patient")) {
            (ExportScope::AllPatients, Some(patients)) => ExportScope::Patients(
                patients.split(',').map(|p| p.trim().trim_start_matches("Patient/").to_string()).collect(),
            ),
            (scope, _) => scope,
        };
        let asked = export_types(&scope, inputs.get("_type"))?;
        let named = inputs.get("_type").is_some();
        let types = gate.exportable_types(asked.clone(), named)?;
        // A patient's record is everything `$everything` gives unless `_type` (or what the
        // caller may read) narrows it.
        let types = if !named && types.len() == asked.len() && matches!(scope, ExportScope::Patients(_)) {
            None
        } else {
            Some(types)
        };
        let type_filters = self.type_filters(request, gate, inputs, types.as_deref())?;
        let since = inputs
            .get("_since")
            .map(|since| crate::history::parse_instant_param("_since", since).map(|t| t.lower_bound_millis()))
            .transpose()?;
        // The files cannot withhold one resource of them: every patient they will hold must
        // be open to the caller as a whole (and is recorded as touched).
        match &scope {
            ExportScope::Patients(patients) => {
                for id in patients {
                    gate.bulk(Some(id))?;
                }
            }
            _ => gate.bulk(None)?,
        }
        if let ExportScope::Patients(patients) = &scope {
            for id in patients {
                gate.touch(id);
                if !fhir::is_valid_id(id) {
                    return Err(ApiError::bad_request(
                        IssueType::Value,
                        format!("patient: '{id}' is not a Patient id"),
                    ));
                }
                match self.store.read("Patient", id)? {
                    Some(record) if !record.is_deleted() => {}
                    _ => return Err(ApiError::not_found(format!("Patient/{id} is not known"))),
                }
            }
        }
        let job = uuid::Uuid::now_v7().to_string();
        let job_dir = dir.join(&job);
        std::fs::create_dir_all(&job_dir)
            .map_err(|e| ApiError::internal(format!("cannot create the export directory: {e}")))?;
        // Only its starter follows a job (and, after a restart too, an administrator); who
        // fetches its files touches the records of the patients it holds.
        if let Some(user) = gate.user() {
            std::fs::write(job_dir.join(OWNER_FILE), user)
                .map_err(|e| ApiError::internal(format!("cannot record the export's owner: {e}")))?;
        }
        let state = Job {
            cancelled: Arc::new(AtomicBool::new(false)),
            exported: Arc::new(AtomicU64::new(0)),
            owner: gate.user().map(str::to_string),
        };
        let (cancelled, exported) = (state.cancelled.clone(), state.exported.clone());
        if let Err(refused) = self.exports.admit(job.clone(), state) {
            let _ = std::fs::remove_dir_all(&job_dir);
            return Err(refused);
        }
        let api = self.clone();
        let base = request.base.clone();
        // A de-identified export's manifest does not repeat the request: its patients' ids
        // and its filters' values (`_typeFilter=Patient?name=...`) would go out with it.
        let original = match &deidentify {
            Some(settings) => format!("{}/$export?_deidentify={}", request.base, settings.profile.name()),
            None => format!(
                "{}/{}{}{}",
                request.base,
                request.path,
                if request.query.is_empty() { "" } else { "?" },
                request.query
            ),
        };
        let job_id = job.clone();
        let requires_access_token = self.config.requires_access_token;
        std::thread::Builder::new()
            .name(format!("export-{job}"))
            .spawn(move || {
                let transaction_time = fhir::DateTime::now_utc().to_string();
                let profile = deidentify.as_ref().map(|settings| settings.profile);
                let deidentifier = deidentify
                    .map(|settings| {
                        deid::extract::learn(api.store.as_ref(), settings).map_err(|e| e.to_string())
                    })
                    .transpose();
                let mut report = deid::Report::default();
                let result = deidentifier.and_then(|deidentifier| {
                    api.type_filter_matches(&type_filters).and_then(|kept| {
                        let selection = Selection {
                            types: types.as_deref(),
                            since,
                            kept: &kept,
                            deidentifier: deidentifier.as_ref(),
                        };
                        api.write_export(&job_dir, &scope, &selection, &cancelled, &exported, &mut report)
                    })
                });
                let manifest = match result {
                    Ok(outputs) => json!({
                        "transactionTime": transaction_time,
                        "request": original,
                        "requiresAccessToken": requires_access_token,
                        "output": outputs.iter().map(|(resource_type, name, count)| json!({
                            "type": resource_type,
                            "url": format!("{base}/$export-file/{job_id}/{name}"),
                            "count": count,
                        })).collect::<Vec<_>>(),
                        "error": [],
                        "extension": profile.map(|profile| json!({
                            DEIDENTIFICATION_EXTENSION: report.to_json(profile),
                        })).unwrap_or_else(|| json!({})),
                    }),
                    Err(message) => json!({"error": message}),
                };
                if !cancelled.load(Ordering::Relaxed) {
                    let _ = std::fs::write(
                        job_dir.join("manifest.json"),
                        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
                    );
                }
                if let Ok(mut running) = api.exports.running.lock() {
                    running.remove(&job_id);
                }
            })
            .map_err(|e| ApiError::internal(format!("cannot start the export job: {e}")))?;
        let mut response = Response::json(
            202,
            fhir::OperationOutcome::information(format!(
                "export {job} started; poll {}/$export-status/{job}",
                request.base
            ))
            .to_bytes(),
        );
        response.location = Some(format!("{}/$export-status/{job}", request.base));
        Ok(response)
    }

    /// Writes the job's files; returns (type, file name, resources) per file.
    fn write_export(
        &self,
        dir: &std::path::Path,
        scope: &ExportScope,
        selection: &Selection<'_>,
        cancelled: &AtomicBool,
        exported: &AtomicU64,
        report: &mut deid::Report,
    ) -> Result<Vec<(String, String, u64)>, String> {
        let Selection { types, since, kept, deidentifier } = *selection;
        // `_typeFilter`: a type with queries keeps only the resources that matched one.
        let filtered_out =
            |resource_type: &str, id: &str| kept.get(resource_type).is_some_and(|ids| !ids.contains(id));
        let mut outputs = Vec::new();
        let mut open: Option<(String, u32, u64, std::io::BufWriter<std::fs::File>)> = None;
        let mut files_per_type: HashMap<String, u32> = HashMap::new();
        // The patients each file holds records of: whoever fetches it is on their accounting
        // of disclosures.
        let mut file_patients: std::collections::BTreeSet<String> = Default::default();
        let mut emit = |resource_type: &str,
                        body: &[u8],
                        outputs: &mut Vec<(String, String, u64)>|
         -> Result<(), String> {
            // A de-identified copy, or nothing when its type never leaves de-identified.
            let copy;
            let original = body;
            let body = match deidentifier {
                None => body,
                Some(deidentifier) => {
                    let resource: Json =
                        serde_json::from_slice(body).map_err(|e| format!("a stored resource: {e}"))?;
                    let Some(clean) = deidentifier.apply(&resource, report) else { return Ok(()) };
                    copy = serde_json::to_vec(&clean).map_err(|e| e.to_string())?;
                    &copy[..]
                }
            };
            let switch = match &open {
                Some((current, _, count, _)) => current != resource_type || *count >= RESOURCES_PER_FILE,
                None => true,
            };
            if switch {
                if let Some((current, number, count, mut writer)) = open.take() {
                    writer.flush().map_err(|e| e.to_string())?;
                    let name = format!("{current}-{number}.ndjson");
                    write_file_patients(dir, &name, &std::mem::take(&mut file_patients))?;
                    outputs.push((current.clone(), name, count));
                }
                let number = files_per_type.entry(resource_type.to_string()).or_default();
                *number += 1;
                let file = std::fs::File::create(dir.join(format!("{resource_type}-{number}.ndjson")))
                    .map_err(|e| format!("cannot write the export: {e}"))?;
                open = Some((resource_type.to_string(), *number, 0, std::io::BufWriter::new(file)));
            }
            if let Some((_, _, count, writer)) = &mut open {
                writer
                    .write_all(body)
                    .and_then(|()| writer.write_all(b"\n"))
                    .map_err(|e| format!("cannot write the export: {e}"))?;
                *count += 1;
            }
            // Whose records the file came from, whatever it shows of them: a date-shifted
            // copy is still a disclosure to account for.
            file_patients.extend(crate::access::patients_in_stored(original));
            exported.fetch_add(1, Ordering::Relaxed);
            if cancelled.load(Ordering::Relaxed) { Err("the export was cancelled".into()) } else { Ok(()) }
        };
        match scope {
            ExportScope::System | ExportScope::AllPatients => {
                for resource_type in types.unwrap_or_default() {
                    let mut failure = None;
                    let scanned = self.store.scan_type(resource_type, since, &mut |_, id, body| {
                        if filtered_out(resource_type, id) {
                            return Ok(());
                        }
                        emit(resource_type, body, &mut outputs).map_err(|e| {
                            failure = Some(e);
                            store::Error::Stopped
                        })
                    });
                    if let Some(failure) = failure {
                        return Err(failure);
                    }
                    scanned.map_err(|e| format!("reading the record failed: {e}"))?;
                }
            }
            ExportScope::Patients(patients) => {
                let mut by_type: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
                let mut seen = std::collections::HashSet::new();
                for id in patients {
                    let Some(patient) = self.store.read("Patient", id).map_err(|e| e.to_string())? else {
                        continue;
                    };
                    let members = self.everything_members(patient, types, since).map_err(|e| e.message())?;
                    for member in members {
                        let Some(body) = member.body else { continue };
                        // The compartment reaches other patients (a linked Patient, a
                        // resource about two people): an export of some patients' records
                        // holds nothing about anyone else.
                        let about_others = serde_json::from_slice::<Json>(&body).map_or(true, |json| {
                            fhir::patients_mentioned(&json)
                                .iter()
                                .any(|p| !patients.iter().any(|own| own == p))
                        });
                        if !about_others
                            && !filtered_out(&member.resource_type, &member.id)
                            && seen.insert((member.resource_type.clone(), member.id.clone()))
                        {
                            by_type.entry(member.resource_type).or_default().push(body);
                        }
                    }
                }
                for (resource_type, bodies) in by_type {
                    for body in bodies {
                        emit(&resource_type, &body, &mut outputs)?;
                    }
                }
            }
        }
        if let Some((current, number, count, mut writer)) = open.take() {
            writer.flush().map_err(|e| e.to_string())?;
            let name = format!("{current}-{number}.ndjson");
            write_file_patients(dir, &name, &file_patients)?;
            outputs.push((current.clone(), name, count));
        }
        Ok(outputs)
    }

    /// The `_typeFilter` queries by type, parsed (strictly: an unknown parameter is a 400) and
    /// checked against the export's types.
    fn type_filters(
        &self,
        request: &Request,
        gate: &Gate,
        inputs: &crate::operations::Inputs,
        types: Option<&[String]>,
    ) -> Result<HashMap<String, Vec<store::SearchQuery>>, ApiError> {
        let mut filters: HashMap<String, Vec<store::SearchQuery>> = HashMap::new();
        let values =
            inputs.0.texts("_typeFilter").map_err(|e| ApiError::bad_request(IssueType::Invalid, e.0))?;
        // Commas inside a query's values arrive still encoded (%2C), so a bare comma
        // separates queries.
        for query in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|q| !q.is_empty()) {
            let bad = |why: String| {
                ApiError::bad_request(IssueType::Value, format!("_typeFilter '{query}': {why}"))
            };
            let (resource_type, parameters) = query
                .split_once('?')
                .ok_or_else(|| bad("a query is Type?parameters, e.g. Observation?code=8867-4".into()))?;
            if !fhir::definitions().is_resource_type(resource_type) {
                return Err(bad(format!("'{resource_type}' is not a resource type")));
            }
            if types.is_some_and(|types| !types.iter().any(|t| t == resource_type)) {
                return Err(bad(format!(
                    "{resource_type} is not among the types this export writes (_type)"
                )));
            }
            let pairs: Vec<(String, String)> = form_urlencoded::parse(parameters.as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            let parsed = self
                .parse_search(gate, resource_type, &pairs, true, &request.base)
                .map_err(|e| bad(e.message()))?;
            filters.entry(resource_type.to_string()).or_default().push(parsed.query);
        }
        Ok(filters)
    }

    /// The ids each filtered type keeps: the matches of any of its queries.
    fn type_filter_matches(
        &self,
        filters: &HashMap<String, Vec<store::SearchQuery>>,
    ) -> Result<TypeFilterMatches, String> {
        let mut kept = TypeFilterMatches::new();
        for (resource_type, queries) in filters {
            let ids = kept.entry(resource_type.clone()).or_default();
            for query in queries {
                let mut page_query = store::SearchQuery {
                    count: 1000,
                    cursor: None,
                    sort: Vec::new(),
                    total: store::Total::None,
                    ..query.clone()
                };
                loop {
                    let page = self
                        .store
                        .search(&page_query)
                        .map_err(|e| format!("_typeFilter search failed: {e}"))?;
                    ids.extend(page.matches.iter().map(|m| m.id.clone()));
                    match (page.has_next, page.last) {
                        (true, Some(last)) => {
                            page_query.cursor = Some(store::search::Cursor { before: false, ..last })
                        }
                        _ => break,
                    }
                }
            }
        }
        Ok(kept)
    }

    fn job_dir(&self, job: &str) -> Result<PathBuf, ApiError> {
        let unknown = || ApiError::not_found(format!("export {job} is not known"));
        if !valid_job_id(job) {
            return Err(unknown());
        }
        let dir = self.exports.dir.as_ref().ok_or_else(unknown)?.join(job);
        if dir.is_dir() { Ok(dir) } else { Err(unknown()) }
    }

    /// Who started an export (`None` when unknown: started without a caller).
    pub(crate) fn export_owner(&self, job: &str) -> Option<String> {
        let dir = self.job_dir(job).ok()?;
        std::fs::read_to_string(dir.join(OWNER_FILE)).ok()
    }

    /// The patients whose records an export file holds.
    pub(crate) fn export_file_patients(&self, job: &str, file: &str) -> Vec<String> {
        let Ok(dir) = self.job_dir(job) else { return Vec::new() };
        if !valid_file(file) {
            return Vec::new();
        }
        std::fs::read_to_string(dir.join(format!("{file}{PATIENTS_SUFFIX}")))
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `GET $export-status/JOB`: 202 while running, the manifest when done.
    pub(crate) fn export_status(&self, job: &str) -> Result<Response, ApiError> {
        let dir = self.job_dir(job)?;
        if let Ok(running) = self.exports.running.lock()
            && let Some(state) = running.get(job)
        {
            let written = state.exported.load(Ordering::Relaxed);
            let progress = format!("in progress: {written} resources written");
            let mut response = Response::json(202, fhir::OperationOutcome::information(&progress).to_bytes());
            // Bulk Data: a client shows X-Progress and polls again after Retry-After seconds.
            response.headers.push(("x-progress", format!("{written} resources written")));
            response.headers.push(("retry-after", "2".to_string()));
            return Ok(response);
        }
        let manifest = std::fs::read(dir.join("manifest.json"))
            .map_err(|_| ApiError::internal(format!("export {job} stopped without a manifest")))?;
        let value: Json = serde_json::from_slice(&manifest).unwrap_or(Json::Null);
        if let Some(message) = value.get("error").and_then(Json::as_str) {
            return Err(ApiError::internal(format!("export {job} failed: {message}")));
        }
        let mut response = Response::json(200, manifest);
        response.content_type = Some("application/json");
        Ok(response)
    }

    /// `GET $export-file/JOB/NAME`.
    pub(crate) fn export_file(&self, job: &str, name: &str) -> Result<Response, ApiError> {
        let dir = self.job_dir(job)?;
        if !valid_file(name) || self.exports.running.lock().is_ok_and(|r| r.contains_key(job)) {
            return Err(ApiError::not_found(format!("export {job} has no file {name} (yet)")));
        }
        let body = std::fs::read(dir.join(name))
            .map_err(|_| ApiError::not_found(format!("export {job} has no file {name}")))?;
        let mut response = Response::json(200, body);
        response.content_type = Some("application/fhir+ndjson");
        Ok(response)
    }

    /// `DELETE $export-status/JOB`: cancels a running job and removes its files.
    pub(crate) fn export_delete(&self, job: &str) -> Result<Response, ApiError> {
        let dir = self.job_dir(job)?;
        if let Ok(running) = self.exports.running.lock()
            && let Some(state) = running.get(job)
        {
            state.cancelled.store(true, Ordering::Relaxed);
        }
        std::fs::remove_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("cannot remove export {job}: {e}")))?;
        Ok(Response::json(
            202,
            fhir::OperationOutcome::information(format!("export {job} cancelled and its files removed"))
                .to_bytes(),
        ))
    }
}
