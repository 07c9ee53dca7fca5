//! A view's rows: over the store's current resources of the view's type (one type scan, see
//! `Store::scan_type`), over resources given inline, or over files. Rows leave in batches
//! through a [`Flattener`], so memory stays bounded by one batch whatever the size of the
//! record.

use std::io::Write;
use std::time::Instant;

use serde_json::Value as Json;
use sof::{Format, ViewDefinition, Writer};
use store::Store;

use crate::{Error, Result};

/// Which of the view's resources to flatten.
#[derive(Clone, Debug, Default)]
pub struct ViewScope {
    /// Only the Patient with this id and the resources about it (`subject`, `patient`,
    /// `beneficiary`).
    pub patient: Option<String>,
    /// Only resources last updated at or after this (ms since the epoch; store runs only).
    pub since: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Stop with [`Error::TooLong`] past this instant (a run over HTTP is bounded; the
    /// command line's is not).
    pub deadline: Option<Instant>,
}

/// What a run produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewRun {
    pub resources: u64,
    pub rows: u64,
}

/// Whether a resource is in `patient`'s part of the record.
pub fn about_patient(resource_type: &str, resource: &Json, patient: &str) -> bool {
    if resource_type == "Patient" {
        return resource.get("id").and_then(Json::as_str) == Some(patient);
    }
    fhir::patient_reference(resource).and_then(|r| r.strip_prefix("Patient/")) == Some(patient)
}

/// Turns resources into the view's rows, written to `out` in a format as batches fill.
/// Resources of other types, or outside the scope's patient, are passed over.
pub struct Flattener<'v, W: Write + Send> {
    view: &'v ViewDefinition,
    runner: sof::Runner<'v>,
    patient: Option<String>,
    output: Output<W>,
}

/// The rows written so far, up to the limit.
struct Output<W: Write + Send> {
    writer: Writer<W>,
    limit: u64,
    run: ViewRun,
}

impl<W: Write + Send> Output<W> {
    fn full(&self) -> bool {
        self.run.rows >= self.limit
    }

    fn emit(&mut self, batch: arrow_array::RecordBatch) -> Result<()> {
        let room = usize::try_from(self.limit - self.run.rows).unwrap_or(usize::MAX);
        let batch = if batch.num_rows() > room { batch.slice(0, room) } else { batch };
        self.run.rows += batch.num_rows() as u64;
        Ok(self.writer.write(&batch)?)
    }
}

impl<'v, W: Write + Send> Flattener<'v, W> {
    pub fn new(view: &'v ViewDefinition, scope: &ViewScope, format: Format, out: W) -> Result<Self> {
        Ok(Flattener {
            view,
            runner: sof::Runner::new(view, sof::DEFAULT_BATCH_SIZE),
            patient: scope.patient.clone(),
            output: Output {
                writer: Writer::new(format, view.schema(), out)?,
                limit: scope.limit.unwrap_or(u64::MAX),
                run: ViewRun::default(),
            },
        })
    }

    /// Whether the row limit has been reached (further resources are not looked at).
    pub fn full(&self) -> bool {
        self.output.full()
    }

    /// Flattens one resource if it is the view's type and in scope.
    pub fn push(&mut self, resource: &Json) -> Result<()> {
        let resource_type = resource.get("resourceType").and_then(Json::as_str).unwrap_or_default();
        if self.full()
            || resource_type != self.view.resource()
            || self.patient.as_deref().is_some_and(|patient| !about_patient(resource_type, resource, patient))
        {
            return Ok(());
        }
        self.output.run.resources += 1;
        for batch in self.runner.push(resource)? {
            self.output.emit(batch)?;
        }
        Ok(())
    }

    /// Writes the last partial batch and the format's ending.
    pub fn finish(self) -> Result<(W, ViewRun)> {
        let Flattener { runner, mut output, .. } = self;
        if !output.full()
            && let Some(batch) = runner.finish()?
        {
            output.emit(batch)?;
        }
        Ok((output.writer.finish()?, output.run))
    }
}

/// Runs `view` over the store's current resources of its type and writes the rows to `out`
/// in `format`; returns the writer and what was flattened.
pub fn run_view<W: Write + Send>(
    store: &dyn Store,
    view: &ViewDefinition,
    scope: &ViewScope,
    format: Format,
    out: W,
) -> Result<(W, ViewRun)> {
    let mut flattener = Flattener::new(view, scope, format, out)?;
    // The store's scan wants its own error type back; a view failure is kept aside and the
    // scan stopped with a marker error.
    let mut failure: Option<Error> = None;
    let scanned = store.scan_type(view.resource(), scope.since, &mut |resource_type, _id, body| {
        if flattener.full() {
            return Err(store::Error::Stopped);
        }
        if scope.deadline.is_some_and(|deadline| Instant::now() > deadline) {
            failure = Some(Error::TooLong);
            return Err(store::Error::Stopped);
        }
        let resource: Json = serde_json::from_slice(body)
            .map_err(|e| store::Error::Corrupt(format!("{resource_type} stored as invalid JSON: {e}")))?;
        flattener.push(&resource).map_err(|error| {
            failure = Some(error);
            store::Error::Stopped
        })
    });
    if let Some(error) = failure {
        return Err(error);
    }
    match scanned {
        Ok(_) | Err(store::Error::Stopped) => {}
        Err(error) => return Err(error.into()),
    }
    flattener.finish()
}

/// Runs `view` over resources given with the call (`$run`'s `resource` inputs).
pub fn run_inline<W: Write + Send>(
    view: &ViewDefinition,
    resources: &[&Json],
    scope: &ViewScope,
    format: Format,
    out: W,
) -> Result<(W, ViewRun)> {
    let mut flattener = Flattener::new(view, scope, format, out)?;
    for resource in resources {
        if flattener.full() {
            break;
        }
        flattener.push(resource)?;
    }
    flattener.finish()
}
