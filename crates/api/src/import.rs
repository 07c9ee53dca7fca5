//! Bulk import of NDJSON (one resource per line, the Bulk Data / Synthea layout) and of JSON
//! files holding a resource or a Bundle, from a file or a directory tree.
//!
//! A reader thread cuts the input into chunks (lines of NDJSON, or whole JSON files); worker
//! threads parse, check and serialize each chunk and submit it to the store as one unit, so
//! the single writer only inserts. A line or file that cannot be read, parsed or checked is
//! reported as `file:line: reason` (or `file: reason`) and skipped; the rest of its chunk
//! still imports. (If the store itself fails to commit a chunk, every resource of the chunk is
//! reported.) Transaction and batch Bundles are executed exactly as if POSTed to the service
//! base.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhir::{IssueType, Resource};
use serde_json::Value;
use store::{PendingWrite, WriteOp, WriteUnit};

use crate::write::{Validation, prepare_loaded};
use crate::{Api, ApiError};

/// Most bytes of JSON files gathered into one chunk.
const JSON_CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// What to do with a transaction or batch Bundle found in a JSON file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BundleMode {
    /// Execute it, as if POSTed to the service base (Synthea's layout).
    #[default]
    Execute,
    /// Store it as a Bundle resource, like any other file.
    Store,
}

/// Tuning for an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Threads that parse and prepare resources.
    pub workers: usize,
    /// NDJSON lines (or JSON files) per store unit.
    pub chunk_size: usize,
    /// Base URL that Bundles are executed against (matters for absolute `fullUrl`s).
    pub base: String,
    pub bundles: BundleMode,
    /// Whether resources are validated (invalid ones rejected) or stored as given.
    pub validation: Validation,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            // The store's single writer is the bottleneck: it gets a core of its own, and
            // workers that would compete with it for that core only slow it down.
            workers: std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)).max(1),
            chunk_size: 1000,
            base: "http://localhost/fhir".to_string(),
            bundles: BundleMode::Execute,
            validation: Validation::Enforce,
        }
    }
}

/// A line or file that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub file: PathBuf,
    /// 1-based line for NDJSON.
    pub line: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub files: u64,
    pub imported: u64,
    pub rejections: Vec<Rejection>,
    /// Resources stored with validation issues (under `Validation::Warn`).
    pub stored_with_issues: u64,
    /// Those issues, one per line, where each such resource came from.
    pub warnings: Vec<Rejection>,
    pub elapsed: Duration,
}

impl ImportReport {
    /// Resources stored per second.
    pub fn resources_per_second(&self) -> f64 {
        self.imported as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Directories that sit beside resources without holding any: a generated population's
/// answers (`chartroom generate` writes them to `ground-truth/`).
const NOT_RESOURCES: &[&str] = &["ground-truth"];

/// Files under `path` to import: `.ndjson` and `.json`, in name order.
pub fn import_files(path: &Path) -> Result<Vec<PathBuf>, ApiError> {
    let metadata =
        std::fs::metadata(path).map_err(|e| ApiError::not_found(format!("{}: {e}", path.display())))?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ApiError::bad_request(IssueType::Exception, format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let entry_path = entry.path();
            if entry_path.is_dir() {
                if !NOT_RESOURCES.iter().any(|name| entry_path.file_name().is_some_and(|n| n == *name)) {
                    pending.push(entry_path);
                }
            } else if matches!(entry_path.extension().and_then(|e| e.to_str()), Some("ndjson" | "json")) {
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One resource's text and where it came from.
struct Item {
    file: Arc<Path>,
    /// 1-based line for NDJSON; `None` for a whole JSON file.
    line: Option<usize>,
    text: String,
}

struct Submitted {
    pending: PendingWrite,
    /// Where each op of the unit came from, to report a failed commit.
    origins: Vec<(Arc<Path>, Option<usize>)>,
}

/// Shared tallies of an import in progress.
struct Tally<'a> {
    imported: AtomicU64,
    rejections: Mutex<Vec<Rejection>>,
    stored_with_issues: AtomicU64,
    warnings: Mutex<Vec<Rejection>>,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl Tally<'_> {
    fn stored(&self, count: u64) {
        if count > 0 {
            self.imported.fetch_add(count, Ordering::Relaxed);
            (self.progress)(count);
        }
    }

    fn reject(&self, file: &Path, line: Option<usize>, reason: String) {
        if let Ok(mut list) = self.rejections.lock() {
            list.push(Rejection { file: file.to_path_buf(), line, reason });
        }
    }

    /// A resource stored with `issues` (validation warn).
    /// `issues`: each issue's diagnostics and first location.
    fn warn(&self, file: &Path, line: Option<usize>, what: &str, issues: &[(&str, Option<&str>)]) {
        self.stored_with_issues.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut list) = self.warnings.lock() {
            for (diagnostics, expression) in issues {
                let at = expression.map(|e| format!(" at {e}")).unwrap_or_default();
                let reason = format!("{what}: stored with an issue{at}: {diagnostics}");
                list.push(Rejection { file: file.to_path_buf(), line, reason });
            }
        }
    }
}

/// Imports everything under `path`. `progress` is called with the number of resources stored
/// since its last call.
pub fn import(
    api: &Api,
    path: &Path,
    options: &ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportReport, ApiError> {
    let started = Instant::now();
    let files = import_files(path)?;
    let tally = Tally {
        imported: AtomicU64::new(0),
        rejections: Mutex::new(Vec::new()),
        stored_with_issues: AtomicU64::new(0),
        warnings: Mutex::new(Vec::new()),
        progress,
    };
    let workers = options.workers.max(1);
    let (chunk_sender, chunk_receiver) = sync_channel::<Vec<Item>>(workers * 2);
    let chunk_receiver = Mutex::new(chunk_receiver);

    std::thread::scope(|scope| {
        let (submitted_sender, submitted_receiver) = sync_channel::<Submitted>(workers * 16);
        for _ in 0..workers {
            let submitted_sender = submitted_sender.clone();
            let (chunk_receiver, tally) = (&chunk_receiver, &tally);
            scope.spawn(move || prepare_chunks(api, options, chunk_receiver, submitted_sender, tally));
        }
        drop(submitted_sender);
        let collector = scope.spawn(|| collect(submitted_receiver, &tally));

        let mut json_items = Vec::new();
        let mut json_bytes = 0usize;
        for file in &files {
            let origin: Arc<Path> = Arc::from(file.as_path());
            let sent = if file.extension().and_then(|e| e.to_str()) == Some("ndjson") {
                read_ndjson(&origin, options.chunk_size, &chunk_sender)
            } else {
                match std::fs::read_to_string(file) {
                    Ok(text) => {
                        json_bytes += text.len();
                        json_items.push(Item { file: origin, line: None, text });
                        // Whole files can be large (a Synthea bundle is megabytes): a chunk is
                        // bounded by bytes as well as by count.
                        if json_items.len() >= options.chunk_size || json_bytes >= JSON_CHUNK_BYTES {
                            json_bytes = 0;
                            chunk_sender
                                .send(std::mem::take(&mut json_items))
                                .map_err(|_| "import stopped".into())
                        } else {
                            Ok(())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            };
            if let Err(reason) = sent {
                tally.reject(file, None, reason);
            }
        }
        if !json_items.is_empty() {
            let _ = chunk_sender.send(json_items);
        }
        drop(chunk_sender);
        let _ = collector.join();
    });

    let mut rejections = tally.rejections.into_inner().unwrap_or_default();
    rejections.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let mut warnings = tally.warnings.into_inner().unwrap_or_default();
    warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(ImportReport {
        files: files.len() as u64,
        imported: tally.imported.into_inner(),
        rejections,
        stored_with_issues: tally.stored_with_issues.into_inner(),
        warnings,
        elapsed: started.elapsed(),
    })
}

fn read_ndjson(file: &Arc<Path>, chunk_size: usize, sender: &SyncSender<Vec<Item>>) -> Result<(), String> {
    let reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(|e| e.to_string())?);
    let mut chunk = Vec::with_capacity(chunk_size);
    for (index, line) in reader.lines().enumerate() {
        let text = line.map_err(|e| format!("line {}: {e}", index + 1))?;
        if text.trim().is_empty() {
            continue;
        }
        chunk.push(Item { file: file.clone(), line: Some(index + 1), text });
        if chunk.len() >= chunk_size {
            sender.send(std::mem::take(&mut chunk)).map_err(|_| "import stopped".to_string())?;
        }
    }
    if !chunk.is_empty() {
        sender.send(chunk).map_err(|_| "import stopped".to_string())?;
    }
    Ok(())
}

/// Turns a resource into a write: resources with an id keep it (update semantics, so
/// references between files hold and a re-import adds versions instead of duplicates).
fn prepare_resource(resource: Resource, validation: Validation) -> Result<WriteOp, String> {
    prepare_loaded(resource, validation).map_err(|e| e.message())
}

fn is_executable_bundle(resource: &Resource) -> bool {
    resource.resource_type() == "Bundle"
        && matches!(resource.as_object().get("type").and_then(Value::as_str), Some("transaction" | "batch"))
}

fn prepare_chunks(
    api: &Api,
    options: &ImportOptions,
    chunks: &Mutex<Receiver<Vec<Item>>>,
    submitted: SyncSender<Submitted>,
    tally: &Tally<'_>,
) {
    let mut runtime = None;
    loop {
        let chunk = match chunks.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(chunk) = chunk else { return };
        let mut ops = Vec::with_capacity(chunk.len());
        let mut origins = Vec::with_capacity(chunk.len());
        for item in chunk {
            let resource = match Resource::from_slice(item.text.as_bytes()) {
                Ok(resource) => resource,
                Err(error) => {
                    tally.reject(&item.file, item.line, error.to_string());
                    continue;
                }
            };
            if options.bundles == BundleMode::Execute && is_executable_bundle(&resource) {
                let runtime = match &mut runtime {
                    Some(runtime) => runtime,
                    None => match tokio::runtime::Builder::new_current_thread().build() {
                        Ok(built) => runtime.insert(built),
                        Err(error) => {
                            tally.reject(&item.file, item.line, format!("cannot run the Bundle: {error}"));
                            continue;
                        }
                    },
                };
                execute_bundle(api, runtime, &options.base, resource, &item, tally);
                continue;
            }
            // The same issues, worded the same, as a Bundle entry stored under `Warn` reports.
            if options.validation == Validation::Warn
                && let Some(outcome) = crate::write::stored_with(resource.as_json())
            {
                let what = format!("{}/{}", resource.resource_type(), resource.id().unwrap_or("(new)"));
                let issues: Vec<(&str, Option<&str>)> = outcome
                    .issues
                    .iter()
                    .map(|i| (i.diagnostics.as_str(), i.expression.first().map(String::as_str)))
                    .collect();
                tally.warn(&item.file, item.line, &what, &issues);
            }
            // A workflow's record is loaded once: one already on record is left as it is (and
            // said), so the rest of the chunk is stored.
            if let Some(id) = resource.id()
                && workflow::written_only_by(resource.resource_type(), resource.as_json()).is_some()
                && api.store().read(resource.resource_type(), id).ok().flatten().is_some()
            {
                tally.reject(
                    &item.file,
                    item.line,
                    format!(
                        "{}/{id} is a workflow's record already on record: a load does not overwrite it",
                        resource.resource_type()
                    ),
                );
                continue;
            }
            match prepare_resource(resource, options.validation) {
                Ok(op) => {
                    ops.push(op);
                    origins.push((item.file, item.line));
                }
                Err(reason) => tally.reject(&item.file, item.line, reason),
            }
        }
        if ops.is_empty() {
            continue;
        }
        let pending = api.store().submit(WriteUnit { ops });
        if submitted.send(Submitted { pending, origins }).is_err() {
            return;
        }
    }
}

fn collect(submitted: Receiver<Submitted>, tally: &Tally<'_>) {
    for unit in submitted {
        match unit.pending.wait_blocking() {
            Ok(written) => tally.stored(written.len() as u64),
            Err(error) => {
                for (file, line) in unit.origins {
                    tally.reject(&file, line, format!("not stored: {error}"));
                }
            }
        }
    }
}

/// Runs a transaction or batch Bundle and tallies what it stored and what failed.
fn execute_bundle(
    api: &Api,
    runtime: &tokio::runtime::Runtime,
    base: &str,
    bundle: Resource,
    item: &Item,
    tally: &Tally<'_>,
) {
    let result = runtime.block_on(api.process_bundle(base, Some("return=minimal"), bundle));
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            tally.reject(&item.file, item.line, error.located_message());
            return;
        }
    };
    let Ok(Value::Object(result)) =
        serde_json::from_slice::<Value>(response.body.as_deref().unwrap_or(b"{}"))
    else {
        return;
    };
    let mut stored = 0;
    for (index, entry) in result.get("entry").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let status = entry["response"]["status"].as_str().unwrap_or("");
        if status.starts_with('2') {
            // Writes that stored a version carry a location; reads and deletes do not.
            if let Some(location) = entry["response"]["location"].as_str() {
                stored += 1;
                // Stored with issues (validation warn): they ride as the entry's outcome.
                if let Some(issues) = entry["response"]["outcome"]["issue"].as_array() {
                    let issues: Vec<(&str, Option<&str>)> = issues
                        .iter()
                        .filter(|i| i["severity"] == "warning")
                        .map(|i| (i["diagnostics"].as_str().unwrap_or(""), i["expression"][0].as_str()))
                        .collect();
                    let path = location.split("/_history").next().unwrap_or(location);
                    let mut segments = path.rsplit('/');
                    let (id, resource_type) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
                    let what = format!("entry {index} ({resource_type}/{id})");
                    tally.warn(&item.file, item.line, &what, &issues);
                }
            }
        } else {
            let reason = entry["response"]["outcome"]["issue"][0]["diagnostics"].as_str().unwrap_or("");
            tally.reject(&item.file, item.line, format!("entry {index}: {status}: {reason}"));
        }
    }
    tally.stored(stored);
}
