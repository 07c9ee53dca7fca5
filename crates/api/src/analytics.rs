//! SQL on FHIR views over the store: the rows a ViewDefinition makes of the current record,
//! for `ViewDefinition/$run` and `chartroom view run`.
//!
//! Only the view's resource type is read (one type scan, see `Store::scan_type`), optionally
//! narrowed to one patient's resources and to those changed since a time; rows leave in
//! batches, so memory stays bounded by one batch whatever the size of the record.

use std::io::Write;
use std::path::Path;

use fhir::IssueType;
use serde_json::Value as Json;
use sof::{Format, ViewDefinition, Writer};
use store::Store;

use crate::ApiError;

/// A view known by name, with its definition as JSON.
pub struct NamedView {
    pub name: String,
    pub definition: Json,
    pub view: ViewDefinition,
    /// Shipped with the server rather than saved in the data directory.
    pub builtin: bool,
}

/// Whether `name` can name a saved view file (no path separators or dots).
pub fn valid_view_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn invalid_view(error: sof::Error) -> ApiError {
    ApiError::bad_request(IssueType::Invalid, error.to_string())
}

/// A built-in view, else one saved as `NAME.json` in `views_dir`.
pub fn find_view(name: &str, views_dir: Option<&Path>) -> Result<NamedView, ApiError> {
    if let Some(builtin) = sof::builtin::get(name) {
        let definition = fhir::parse_json(builtin.json().as_bytes())
            .map_err(|e| ApiError::internal(format!("the built-in view {name} does not parse: {e}")))?;
        let view = view_definition(&definition).map_err(invalid_view)?;
        return Ok(NamedView { name: name.to_string(), definition, view, builtin: true });
    }
    let unknown =
        || ApiError::not_found(format!("ViewDefinition/{name} is not known (see GET ViewDefinition)"));
    if !valid_view_name(name) {
        return Err(unknown());
    }
    let path = views_dir.ok_or_else(unknown)?.join(format!("{name}.json"));
    let bytes = std::fs::read(&path).map_err(|_| unknown())?;
    let definition = fhir::parse_json(&bytes)
        .map_err(|e| ApiError::internal(format!("the saved view {} does not parse: {e}", path.display())))?;
    let view = view_definition(&definition)
        .map_err(|e| ApiError::internal(format!("the saved view {} is not valid: {e}", path.display())))?;
    Ok(NamedView { name: name.to_string(), definition, view, builtin: false })
}

/// Every known view: the built-in ones, then those saved in `views_dir` by name. A saved
/// file that is not a valid view is left out (and logged).
pub fn known_views(views_dir: Option<&Path>) -> Vec<NamedView> {
    let mut views: Vec<NamedView> =
        sof::builtin::views().iter().filter_map(|builtin| find_view(builtin.name(), None).ok()).collect();
    let Some(dir) = views_dir else { return views };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            entry.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(str::to_string)
        })
        .filter(|name| valid_view_name(name) && sof::builtin::get(name).is_none())
        .collect();
    names.sort();
    for name in names {
        match find_view(&name, Some(dir)) {
            Ok(view) => views.push(view),
            Err(error) => tracing::warn!("views/{name}.json left out: {}", error.message()),
        }
    }
    views
}

/// Which of the view's resources to flatten.
#[derive(Clone, Debug, Default)]
pub struct ViewScope {
    /// Only the Patient with this id and the resources about it (`subject`, `patient`,
    /// `beneficiary`).
    pub patient: Option<String>,
    /// Only resources last updated at or after this (ms since the epoch).
    pub since: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Stop with [`ViewRunError::TooLong`] past this instant (a run over HTTP is bounded; the
    /// command line's is not).
    pub deadline: Option<std::time::Instant>,
}

/// What a run produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewRun {
    pub resources: u64,
    pub rows: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewRunError {
    /// A resource could not be flattened, or the output could not be written.
    #[error(transparent)]
    View(#[from] sof::Error),
    #[error("reading the record failed: {0}")]
    Store(#[from] store::Error),
    /// The run went past its deadline.
    #[error("the view ran past its time limit")]
    TooLong,
}

/// Whether a resource is in the scope's patient's part of the record.
pub(crate) fn about_patient(resource_type: &str, resource: &Json, patient: &str) -> bool {
    if resource_type == "Patient" {
        return resource.get("id").and_then(Json::as_str) == Some(patient);
    }
    fhir::patient_reference(resource).and_then(|r| r.strip_prefix("Patient/")) == Some(patient)
}

/// Runs `view` over the store's current resources of its type and writes the rows to `out`
/// in `format`; returns the writer and what was flattened.
/// A ViewDefinition as this server runs it: checked, with `memberOf()` answered by the
/// built-in terminology.
pub fn view_definition(json: &serde_json::Value) -> Result<ViewDefinition, sof::Error> {
    Ok(ViewDefinition::from_json(json)?.with_value_sets(&validation::TERMINOLOGY))
}

pub fn run_view<W: Write + Send>(
    store: &dyn Store,
    view: &ViewDefinition,
    scope: &ViewScope,
    format: Format,
    out: W,
) -> Result<(W, ViewRun), ViewRunError> {
    let mut writer = Writer::new(format, view.schema(), out)?;
    let mut runner = sof::Runner::new(view, sof::DEFAULT_BATCH_SIZE);
    let mut run = ViewRun::default();
    let limit = scope.limit.unwrap_or(u64::MAX);
    // The store's scan wants its own error type back; a view failure is kept aside and the
    // scan stopped with a marker error.
    let mut failure: Option<sof::Error> = None;
    let emit = |batch: arrow_array::RecordBatch, writer: &mut Writer<W>, run: &mut ViewRun| {
        let room = (limit - run.rows) as usize;
        let batch = if batch.num_rows() > room { batch.slice(0, room) } else { batch };
        run.rows += batch.num_rows() as u64;
        writer.write(&batch)
    };
    let mut too_long = false;
    let scanned = store.scan_type(view.resource(), scope.since, &mut |resource_type, _id, body| {
        if run.rows >= limit {
            return Err(store::Error::Stopped);
        }
        if scope.deadline.is_some_and(|deadline| std::time::Instant::now() > deadline) {
            too_long = true;
            return Err(store::Error::Stopped);
        }
        let resource: Json = serde_json::from_slice(body)
            .map_err(|e| store::Error::Corrupt(format!("{resource_type} stored as invalid JSON: {e}")))?;
        if let Some(patient) = &scope.patient
            && !about_patient(resource_type, &resource, patient)
        {
            return Ok(());
        }
        run.resources += 1;
        let result = runner
            .push(&resource)
            .and_then(|batches| batches.into_iter().try_for_each(|batch| emit(batch, &mut writer, &mut run)));
        result.map_err(|error| {
            failure = Some(error);
            store::Error::Stopped
        })
    });
    if let Some(error) = failure {
        return Err(error.into());
    }
    if too_long {
        return Err(ViewRunError::TooLong);
    }
    match scanned {
        Ok(_) | Err(store::Error::Stopped) => {}
        Err(error) => return Err(error.into()),
    }
    if run.rows < limit
        && let Some(batch) = runner.finish()?
    {
        emit(batch, &mut writer, &mut run)?;
    }
    Ok((writer.finish()?, run))
}
