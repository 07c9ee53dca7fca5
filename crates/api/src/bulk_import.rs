//! Bulk Data import (`$import`, after the Bulk Data Access IG's import proposal): NDJSON files
//! named by URL, pulled and loaded by an asynchronous job through the same pipeline as
//! `chartroom import` (parsed, validated and stored in units off the one writer).
//!
//! Kick-off: `POST [base]/$import` with `Prefer: respond-async` and a Parameters body:
//! `inputFormat` (`application/fhir+ndjson`), `inputSource` (where the data comes from, as
//! recorded), and one `input` per file with parts `type` (its resource type) and `url`:
//! `http://` (a Bulk Data export's file URLs, say) or `file://` under one of the directories
//! the server was told to import from. Answers 202 with `Content-Location:
//! [base]/$import-status?job=JOB`; polling answers 202 (`X-Progress`) while the job runs, then
//! 200 with a manifest: per input the resources stored (`output`) and refused (`error`, with
//! the first reasons in `extension`). Only the job's starter (or an administrator) follows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fhir::IssueType;
use serde_json::{Value as Json, json};

use crate::{Api, ApiError, Request, Response};

/// The file in a job's directory naming who started it.
const OWNER_FILE: &str = "owner";
/// The finished job's manifest.
const RESULT_FILE: &str = "result.json";
/// Refusal reasons a manifest lists (the count says how many there were).
const REASONS_LISTED: usize = 100;
/// Inputs one job may name.
const MAX_INPUTS: usize = 10_000;
/// Import jobs running at once on the server: each feeds the one writer.
const JOBS_AT_ONCE: usize = 2;
/// Most bytes one http:// input may bring (it is staged on the record's disk).
const MAX_DOWNLOAD_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// One input file of a job.
#[derive(Clone, Debug)]
struct Input {
    resource_type: String,
    url: String,
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Http(String),
}

/// The import jobs of one API.
#[derive(Default)]
pub struct Imports {
    running: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Api {
    /// `$import`: checks the request, starts the job.
    pub(crate) fn import_kickoff(
        &self,
        request: &Request,
        gate: &crate::access::Gate,
        body: Option<&Json>,
    ) -> Result<Response, ApiError> {
        let Some(dir) = &self.config.import_dir else {
            return Err(ApiError::not_supported("bulk import needs a data directory; this server has none"));
        };
        crate::export::require_async(request, "$import")?;
        let bad = |text: String| ApiError::bad_request(IssueType::Invalid, text);
        let parameters = body
            .filter(|b| b["resourceType"] == "Parameters")
            .and_then(|b| b["parameter"].as_array())
            .ok_or_else(|| bad("$import takes a Parameters body naming its inputs".into()))?;
        let text_of = |parameter: &Json| -> Option<String> {
            ["valueCode", "valueUri", "valueUrl", "valueString"]
                .iter()
                .find_map(|k| parameter.get(*k).and_then(Json::as_str))
                .map(str::to_string)
        };
        let mut inputs = Vec::new();
        let mut source_label = None;
        for parameter in parameters {
            match parameter["name"].as_str() {
                Some("inputFormat") => {
                    let format = text_of(parameter).unwrap_or_default();
                    if !matches!(format.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson")
                    {
                        return Err(ApiError::bad_request(
                            IssueType::NotSupported,
                            format!(
                                "inputFormat {format} is not supported; imports are application/fhir+ndjson"
                            ),
                        ));
                    }
                }
                Some("inputSource") => source_label = text_of(parameter),
                Some("storageDetail") => {}
                Some("input") => {
                    let parts = parameter["part"]
                        .as_array()
                        .ok_or_else(|| bad("input needs parts type and url".into()))?;
                    let part = |name: &str| parts.iter().find(|p| p["name"] == name).and_then(text_of);
                    let url =
                        part("url").ok_or_else(|| bad(format!("input {}: no url", inputs.len() + 1)))?;
                    let resource_type = part("type").unwrap_or_default();
                    if !resource_type.is_empty() && !fhir::definitions().is_resource_type(&resource_type) {
                        return Err(bad(format!("input {url}: '{resource_type}' is not a resource type")));
                    }
                    let source = self.import_source(&url)?;
                    inputs.push(Input { resource_type, url, source });
                }
                Some(other) => return Err(bad(format!("$import does not take the parameter {other}"))),
                None => return Err(bad("a parameter without a name".into())),
            }
        }
        if inputs.is_empty() {
            return Err(bad("$import needs at least one input (parts type and url)".into()));
        }
        if inputs.len() > MAX_INPUTS {
            return Err(bad(format!("at most {MAX_INPUTS} inputs per import")));
        }
        if self.imports.running.lock().map(|running| running.len()).unwrap_or(0) >= JOBS_AT_ONCE {
            return Err(ApiError::new(
                429,
                IssueType::Throttled,
                format!("{JOBS_AT_ONCE} imports are running; start this one when one has finished"),
            ));
        }
        let job = uuid::Uuid::now_v7().to_string();
        let job_dir = dir.join(&job);
        std::fs::create_dir_all(&job_dir)
            .map_err(|e| ApiError::internal(format!("cannot create the import directory: {e}")))?;
        if let Some(user) = gate.user() {
            std::fs::write(job_dir.join(OWNER_FILE), user)
                .map_err(|e| ApiError::internal(format!("cannot record the import's owner: {e}")))?;
        }
        let progress = Arc::new(AtomicU64::new(0));
        if let Ok(mut running) = self.imports.running.lock() {
            running.insert(job.clone(), progress.clone());
        }
        let api = self.clone();
        let original = format!("{}/$import", request.base);
        let base = request.base.clone();
        let owner = gate.user().map(str::to_string);
        let job_id = job.clone();
        std::thread::Builder::new()
            .name(format!("import-{job}"))
            .spawn(move || {
                let transaction_time = fhir::DateTime::now_utc().to_string();
                let manifest = api.run_import(&job_dir, &inputs, &base, &progress);
                api.audit_import(owner.as_deref(), &job_id, &manifest);
                let manifest = json!({
                    "transactionTime": transaction_time,
                    "request": original,
                    "inputSource": source_label,
                    "requiresAccessToken": false,
                    "output": manifest.output,
                    "error": manifest.error,
                    "extension": { "https://chartroom.dev/fhir/bulk/import-rejections": manifest.reasons },
                });
                // Written whole, then renamed: a poll never reads half a manifest.
                let staged = job_dir.join(format!("{RESULT_FILE}.new"));
                if std::fs::write(&staged, serde_json::to_vec_pretty(&manifest).unwrap_or_default()).is_ok() {
                    let _ = std::fs::rename(&staged, job_dir.join(RESULT_FILE));
                }
                if let Ok(mut running) = api.imports.running.lock() {
                    running.remove(&job_id);
                }
            })
            .map_err(|e| ApiError::internal(format!("cannot start the import job: {e}")))?;
        let status = format!("{}/$import-status?job={job}", request.base);
        let mut response = Response::json(
            202,
            fhir::OperationOutcome::information(format!("import {job} started; poll {status}")).to_bytes(),
        );
        response.location = Some(status);
        Ok(response)
    }

    /// Where an input URL is read from: a file under the directories imports may read, or
    /// HTTP.
    fn import_source(&self, url: &str) -> Result<Source, ApiError> {
        if let Some(path) = url.strip_prefix("file://") {
            return self.importable_file(Path::new(path)).map(Source::File).ok_or_else(|| {
                // The same answer whether the file is missing or out of bounds: the answer
                // does not tell what exists on the server.
                ApiError::new(
                    403,
                    IssueType::Forbidden,
                    format!("input {url}: not a file in the directories this server imports from"),
                )
            });
        }
        if url.starts_with("http://") {
            return Ok(Source::Http(url.to_string()));
        }
        Err(ApiError::bad_request(
            IssueType::NotSupported,
            format!(
                "input {url}: only http:// and file:// inputs are imported (https through a proxy that ends TLS)"
            ),
        ))
    }

    /// The regular file `path` names (symbolic links resolved) if it lies under one of the
    /// directories imports read from; checked when the import is asked for and again when the
    /// job opens it.
    fn importable_file(&self, path: &Path) -> Option<PathBuf> {
        let canonical = path.canonicalize().ok()?;
        let inside = self
            .config
            .import_roots
            .iter()
            .any(|root| root.canonicalize().is_ok_and(|root| canonical.starts_with(root)));
        (inside && std::fs::metadata(&canonical).is_ok_and(|m| m.is_file())).then_some(canonical)
    }

    /// Records a finished job in the audit trail: who ran it and what it stored.
    fn audit_import(&self, owner: Option<&str>, job: &str, manifest: &ImportManifest) {
        let Some(trail) = &self.trail else { return };
        let stored: u64 = manifest.output.iter().filter_map(|o| o["count"].as_u64()).sum();
        let refused: u64 = manifest.error.iter().filter_map(|o| o["count"].as_u64()).sum();
        let access = privacy::Access {
            user: owner.unwrap_or("unauthenticated").to_string(),
            role: "bulk-import".into(),
            interaction: "operation".into(),
            action: "C",
            status: 200,
            outcome_text: Some(format!(
                "$import {job} finished: {stored} resources stored, {refused} refused, from {} inputs",
                manifest.output.len()
            )),
            resources: vec!["$import".into()],
            ..Default::default()
        };
        let log = trail.log().clone();
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            let _ = runtime.block_on(log.record(access).durable());
        }
    }

    /// Pulls and loads every input; what each gave.
    fn run_import(
        &self,
        job_dir: &Path,
        inputs: &[Input],
        base: &str,
        progress: &AtomicU64,
    ) -> ImportManifest {
        let mut manifest = ImportManifest::default();
        // Bulk data is resources, not requests: a Bundle in it is stored as a Bundle, never
        // executed (its entries would run without the steward's limits).
        let options = crate::import::ImportOptions {
            validation: self.config.validation,
            bundles: crate::import::BundleMode::Store,
            base: base.to_string(),
            ..Default::default()
        };
        for (n, input) in inputs.iter().enumerate() {
            let path = match &input.source {
                Source::File(path) => self.importable_file(path).ok_or_else(|| {
                    "no longer a file in the directories this server imports from".to_string()
                }),
                Source::Http(url) => {
                    let path = job_dir.join(format!("{n:05}.ndjson"));
                    download(url, &path).map(|()| path)
                }
            };
            let report = path.and_then(|path| {
                let report = crate::import::import(self, &path, &options, &|stored| {
                    progress.fetch_add(stored, Ordering::Relaxed);
                })
                .map_err(|e| e.message());
                if matches!(input.source, Source::Http(_)) {
                    let _ = std::fs::remove_file(&path);
                }
                report
            });
            match report {
                Ok(report) => {
                    manifest.output.push(json!({ "type": input.resource_type, "inputUrl": input.url, "count": report.imported }));
                    if !report.rejections.is_empty() {
                        manifest.error.push(json!({ "type": "OperationOutcome", "inputUrl": input.url, "count": report.rejections.len() }));
                        for rejection in &report.rejections {
                            if manifest.reasons.len() < REASONS_LISTED {
                                let line = rejection.line.map(|l| format!(" line {l}")).unwrap_or_default();
                                manifest.reasons.push(format!("{}{line}: {}", input.url, rejection.reason));
                            }
                        }
                    }
                }
                Err(reason) => {
                    manifest
                        .error
                        .push(json!({ "type": "OperationOutcome", "inputUrl": input.url, "count": 1 }));
                    if manifest.reasons.len() < REASONS_LISTED {
                        manifest.reasons.push(format!("{}: {reason}", input.url));
                    }
                }
            }
        }
        manifest
    }

    /// `$import-status?job=JOB`: 202 while the job runs, its manifest when done.
    pub(crate) fn import_status(
        &self,
        gate: &crate::access::Gate,
        job: Option<&str>,
    ) -> Result<Response, ApiError> {
        let Some(dir) = &self.config.import_dir else {
            return Err(ApiError::not_supported("bulk import needs a data directory; this server has none"));
        };
        let job =
            job.ok_or_else(|| ApiError::bad_request(IssueType::Required, "$import-status needs job"))?;
        let job_dir = dir.join(job);
        if !crate::export::valid_job_id(job) || !job_dir.is_dir() {
            return Err(ApiError::not_found(format!("no import {job}")));
        }
        let owner = std::fs::read_to_string(job_dir.join(OWNER_FILE)).ok();
        gate.follow_export(owner.as_deref())?;
        if let Ok(manifest) = std::fs::read(job_dir.join(RESULT_FILE)) {
            return Ok(Response::json(200, manifest));
        }
        let stored =
            self.imports.running.lock().ok().and_then(|r| r.get(job).map(|p| p.load(Ordering::Relaxed)));
        match stored {
            Some(stored) => {
                let mut response = Response::json(
                    202,
                    fhir::OperationOutcome::information(format!(
                        "import {job}: {stored} resources stored so far"
                    ))
                    .to_bytes(),
                );
                response.headers.push(("x-progress", format!("{stored} resources stored")));
                response.headers.push(("retry-after", "2".to_string()));
                Ok(response)
            }
            // Started before a restart and never finished.
            None => Err(ApiError::new(
                410,
                IssueType::Incomplete,
                format!(
                    "import {job} stopped before it finished (the server restarted); import its inputs again"
                ),
            )),
        }
    }
}

/// What a job reports, input by input.
#[derive(Default)]
struct ImportManifest {
    output: Vec<Json>,
    error: Vec<Json>,
    reasons: Vec<String>,
}

/// Fetches `url` into `path` (HTTP/1.1, streamed to disk).
fn download(url: &str, path: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot fetch: {e}"))?;
    runtime.block_on(async {
        use std::io::Write;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            // An input is where it says: a redirect could lead the server anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot fetch: {e}"))?;
        let mut response = client
            .get(url)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .map_err(|e| format!("cannot fetch: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching it answered {}", response.status()));
        }
        // The job has its own thread: writing the file blocks nothing else.
        let file = std::fs::File::create(path).map_err(|e| format!("cannot store it: {e}"))?;
        let mut file = std::io::BufWriter::new(file);
        let mut fetched = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("fetching it failed: {e}"))? {
            fetched += chunk.len() as u64;
            if fetched > MAX_DOWNLOAD_BYTES {
                return Err(format!("it is larger than {MAX_DOWNLOAD_BYTES} bytes; split it"));
            }
            file.write_all(&chunk).map_err(|e| format!("cannot store it: {e}"))?;
        }
        file.flush().map_err(|e| format!("cannot store it: {e}"))
    })
}
