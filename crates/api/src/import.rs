//! Bulk import of NDJSON (one resource per line, the Bulk Data / Synthea layout) and of JSON
//! files holding a resource or a Bundle, from a file or a directory tree.
//!
//! NDJSON is read in chunks; worker threads parse, check and serialize each chunk and submit
//! it to the store as one unit, so the single writer only inserts. A line that fails is
//! reported as `file:line: reason` and skipped; the rest of the chunk still imports.
//! Transaction and batch Bundles go through the same code as `POST [base]`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use fhir::{IssueType, Resource};
use serde_json::Value;
use store::{PendingWrite, WriteOp, WriteUnit};

use crate::write::{new_id, prepare_create, prepare_update};
use crate::{Api, ApiError, Method, Request};

/// Tuning for an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Threads that parse and prepare NDJSON lines.
    pub workers: usize,
    /// NDJSON lines per store unit.
    pub chunk_lines: usize,
    /// Base URL used for references in Bundles (only matters for absolute `fullUrl`s).
    pub base: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_lines: 1000,
            base: "http://localhost/fhir".to_string(),
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
    pub elapsed: Duration,
}

impl ImportReport {
    /// Resources stored per second.
    pub fn resources_per_second(&self) -> f64 {
        self.imported as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Files under `path` to import: `.ndjson` and `.json`, in name order.
pub fn import_files(path: &Path) -> Result<Vec<PathBuf>, ApiError> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| ApiError::not_found(format!("{}: {e}", path.display())))?;
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
                pending.push(entry_path);
            } else if matches!(entry_path.extension().and_then(|e| e.to_str()), Some("ndjson" | "json")) {
                files.push(entry_path);
            }
        }
    }
    files.sort();
    Ok(files)
}

struct Chunk {
    file: PathBuf,
    first_line: usize,
    lines: Vec<String>,
}

struct Submitted {
    pending: PendingWrite,
    /// (file, line) of each op in the unit, to report a failed commit.
    lines: Vec<(PathBuf, usize)>,
}

/// Imports everything under `path`. `progress` is called with the number of resources stored
/// since the last call.
pub fn import(
    api: &Api,
    path: &Path,
    options: &ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportReport, ApiError> {
    let started = Instant::now();
    let files = import_files(path)?;
    let rejections = Mutex::new(Vec::new());
    let imported = std::sync::atomic::AtomicU64::new(0);
    let reject = |file: &Path, line: Option<usize>, reason: String| {
        if let Ok(mut list) = rejections.lock() {
            list.push(Rejection { file: file.to_path_buf(), line, reason });
        }
    };
    let count = |n: u64| {
        imported.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        progress(n);
    };

    let (ndjson, json): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|f| f.extension().and_then(|e| e.to_str()) == Some("ndjson"));

    let workers = options.workers.max(1);
    let (chunk_sender, chunk_receiver) = sync_channel::<Chunk>(workers * 2);
    let chunk_receiver = Mutex::new(chunk_receiver);
    std::thread::scope(|scope| {
        let (submitted_sender, submitted_receiver) = sync_channel::<Submitted>(workers * 4);

        for _ in 0..workers {
            let submitted_sender = submitted_sender.clone();
            let chunk_receiver = &chunk_receiver;
            let reject = &reject;
            scope.spawn(move || prepare_chunks(api, chunk_receiver, submitted_sender, reject));
        }
        drop(submitted_sender);
        let collector = scope.spawn(|| collect(submitted_receiver, &reject, &count));

        for file in &ndjson {
            if let Err(reason) = read_ndjson(file, options.chunk_lines, &chunk_sender) {
                reject(file, None, reason);
            }
        }
        drop(chunk_sender);
        let _ = collector.join();
    });

    if !json.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| ApiError::internal(format!("cannot start the import runtime: {e}")))?;
        for file in &json {
            match runtime.block_on(import_json_file(api, file, &options.base)) {
                Ok(stored) => count(stored),
                Err(failures) => {
                    for (stored, reason) in failures {
                        count(stored);
                        if !reason.is_empty() {
                            reject(file, None, reason);
                        }
                    }
                }
            }
        }
    }

    let mut rejections = rejections.into_inner().unwrap_or_default();
    rejections.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(ImportReport {
        files: files.len() as u64,
        imported: imported.into_inner(),
        rejections,
        elapsed: started.elapsed(),
    })
}

fn read_ndjson(file: &Path, chunk_lines: usize, sender: &SyncSender<Chunk>) -> Result<(), String> {
    let reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(|e| e.to_string())?);
    let mut lines = Vec::with_capacity(chunk_lines);
    let mut first_line = 1;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", index + 1))?;
        if lines.is_empty() {
            first_line = index + 1;
        }
        lines.push(line);
        if lines.len() >= chunk_lines {
            let chunk = Chunk { file: file.to_path_buf(), first_line, lines: std::mem::take(&mut lines) };
            sender.send(chunk).map_err(|_| "import stopped".to_string())?;
        }
    }
    if !lines.is_empty() {
        sender
            .send(Chunk { file: file.to_path_buf(), first_line, lines })
            .map_err(|_| "import stopped".to_string())?;
    }
    Ok(())
}

/// Parses one NDJSON line into a write: resources with an id keep it (update semantics, so
/// references between files hold and a re-import adds versions instead of duplicates).
fn prepare_line(line: &str) -> Result<WriteOp, String> {
    let resource = Resource::from_slice(line.as_bytes()).map_err(|e| e.to_string())?;
    let result = match resource.id().map(str::to_string) {
        Some(id) => prepare_update(&resource, &id, None),
        None => prepare_create(resource, &new_id()),
    };
    result.map_err(|e| e.to_string())
}

fn prepare_chunks(
    api: &Api,
    chunks: &Mutex<Receiver<Chunk>>,
    submitted: SyncSender<Submitted>,
    reject: &(dyn Fn(&Path, Option<usize>, String) + Sync),
) {
    loop {
        let chunk = match chunks.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(chunk) = chunk else { return };
        let mut ops = Vec::with_capacity(chunk.lines.len());
        let mut lines = Vec::with_capacity(chunk.lines.len());
        for (offset, line) in chunk.lines.iter().enumerate() {
            let line_number = chunk.first_line + offset;
            if line.trim().is_empty() {
                continue;
            }
            match prepare_line(line) {
                Ok(op) => {
                    ops.push(op);
                    lines.push((chunk.file.clone(), line_number));
                }
                Err(reason) => reject(&chunk.file, Some(line_number), reason),
            }
        }
        if ops.is_empty() {
            continue;
        }
        let pending = api.store().submit(WriteUnit { ops });
        if submitted.send(Submitted { pending, lines }).is_err() {
            return;
        }
    }
}

fn collect(
    submitted: Receiver<Submitted>,
    reject: &(dyn Fn(&Path, Option<usize>, String) + Sync),
    count: &(dyn Fn(u64) + Sync),
) {
    for unit in submitted {
        match unit.pending.wait_blocking() {
            Ok(written) => count(written.len() as u64),
            Err(error) => {
                for (file, line) in unit.lines {
                    reject(&file, Some(line), format!("not stored: {error}"));
                }
            }
        }
    }
}

/// Imports one JSON file. `Ok(n)`: n resources stored. `Err`: (stored, reason) pairs for a
/// file that failed in whole or in part.
async fn import_json_file(api: &Api, file: &Path, base: &str) -> Result<u64, Vec<(u64, String)>> {
    let bytes = std::fs::read(file).map_err(|e| vec![(0, e.to_string())])?;
    let value = fhir::parse_json(&bytes).map_err(|e| vec![(0, e.to_string())])?;
    let bundle_type = match &value {
        Value::Object(object) if object.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
            object.get("type").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    };
    let request = match bundle_type.as_deref() {
        Some("transaction" | "batch") => Request {
            method: Some(Method::Post),
            base: base.to_string(),
            prefer: Some("return=minimal".to_string()),
            body: bytes,
            ..Default::default()
        },
        _ => {
            // Any other resource (a document or collection Bundle too) is stored as itself.
            let resource = Resource::from_value(value).map_err(|e| vec![(0, e.to_string())])?;
            let (method, path) = match resource.id() {
                Some(id) => (Method::Put, format!("{}/{id}", resource.resource_type())),
                None => (Method::Post, resource.resource_type().to_string()),
            };
            Request {
                method: Some(method),
                base: base.to_string(),
                path,
                prefer: Some("return=minimal".to_string()),
                body: bytes,
                ..Default::default()
            }
        }
    };
    let response = api.handle(&request).await;
    if response.status >= 300 {
        return Err(vec![(0, diagnostics(response.body_text()))]);
    }
    if bundle_type.is_none() || !matches!(bundle_type.as_deref(), Some("transaction" | "batch")) {
        return Ok(1);
    }
    // A transaction succeeded whole; a batch may have failed entries.
    let Ok(Value::Object(result)) = serde_json::from_slice::<Value>(response.body.as_deref().unwrap_or(b"{}")) else {
        return Ok(0);
    };
    let mut stored = 0;
    let mut failures = Vec::new();
    for (index, entry) in result.get("entry").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let status = entry["response"]["status"].as_str().unwrap_or("");
        if status.starts_with('2') {
            // Writes that stored a version carry a location; reads and deletes do not.
            if entry["response"]["location"].is_string() {
                stored += 1;
            }
        } else {
            let outcome = serde_json::to_string(&entry["response"]["outcome"]).unwrap_or_default();
            failures.push((0, format!("entry {index}: {status} {}", diagnostics(&outcome))));
        }
    }
    if failures.is_empty() {
        Ok(stored)
    } else {
        failures.push((stored, String::new()));
        Err(failures)
    }
}

/// The diagnostics of an OperationOutcome body, or the body itself.
fn diagnostics(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else { return body.to_string() };
    let messages: Vec<&str> = value["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|issue| issue["diagnostics"].as_str())
        .collect();
    if messages.is_empty() { body.to_string() } else { messages.join("; ") }
}
