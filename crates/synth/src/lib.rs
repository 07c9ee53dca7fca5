//! A deterministic synthetic population as FHIR R4 NDJSON in the Bulk Data layout: one file
//! per resource type, one compact resource per line.
//!
//! Every patient draws from its own random stream, derived from the seed and the patient's
//! index, so a patient's record does not depend on the others and the same seed always gives
//! the same bytes. Patients are generated one at a time and streamed out, so memory stays flat
//! however many are asked for.

mod calendar;
mod clinical;
mod population;
mod rng;
mod truth;
mod vocab;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use truth::TruthFile;
pub use truth::{GROUND_TRUTH_DIR, TruthOptions};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub patients: usize,
    pub seed: u64,
    /// What to plant, and list in `ground-truth/`.
    pub truth: TruthOptions,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { patients: 1000, seed: 1, truth: TruthOptions::default() }
    }
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct Summary {
    pub patients: usize,
    /// Resources written per resource type.
    pub resources: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl Summary {
    /// Resources written in all.
    pub fn total(&self) -> u64 {
        self.resources.values().sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the population: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The most patients one run generates: ids and dates stay well-formed far beyond, but a run
/// this large is a mistake rather than a request.
const MAX_PATIENTS: usize = 100_000_000;

/// The resource types written, each to `<type>.ndjson`; all files are created (and emptied)
/// up front so a directory never mixes runs.
pub(crate) const RESOURCE_TYPES: &[&str] = &[
    "Claim",
    "Condition",
    "Coverage",
    "DocumentReference",
    "Encounter",
    "ExplanationOfBenefit",
    "Immunization",
    "Location",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Procedure",
    "Task",
];

/// Generates `options.patients` patients (with the organizations, locations and practitioners
/// they refer to) into `out`, and what was planted into `out/ground-truth/`, calling
/// `progress` with the number of resources written since its last call.
///
/// Patients are generated in batches on worker threads and written in patient order, so the
/// bytes do not depend on the number of threads.
pub fn generate(options: &GenerateOptions, out: &Path, progress: &dyn Fn(u64)) -> Result<Summary, Error> {
    if options.patients > MAX_PATIENTS {
        return Err(Error::Invalid(format!(
            "{} patients asked for; at most {MAX_PATIENTS} are generated in one run",
            options.patients
        )));
    }
    options.truth.check().map_err(Error::Invalid)?;
    let started = Instant::now();
    std::fs::create_dir_all(out.join(GROUND_TRUTH_DIR))?;
    let plan = population::Plan::new(options);
    std::fs::write(
        out.join(GROUND_TRUTH_DIR).join("parameters.json"),
        serde_json::to_vec_pretty(&plan.parameters(options.patients)).map_err(std::io::Error::from)?,
    )?;
    let mut files = Files::create(out, progress)?;
    let mut directory = Sink::default();
    population::write_directory(&plan, &mut directory)?;
    files.append(directory)?;

    let batches = options.patients.div_ceil(BATCH);
    let workers =
        std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_WORKERS).min(batches.max(1));
    let patients = options.patients;
    let plan = &plan;
    std::thread::scope(|scope| -> Result<(), Error> {
        // One bounded channel per worker, read round-robin: batches arrive in order and at most
        // a few per worker are held in memory.
        let receivers: Vec<_> = (0..workers)
            .map(|worker| {
                let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Sink, Error>>(2);
                scope.spawn(move || {
                    for batch in (worker..batches).step_by(workers) {
                        let mut sink = Sink::default();
                        let result = (batch * BATCH..((batch + 1) * BATCH).min(patients))
                            .try_for_each(|index| population::write_patient(plan, index, &mut sink))
                            .map(|()| sink);
                        let failed = result.is_err();
                        if sender.send(result).is_err() || failed {
                            return;
                        }
                    }
                });
                receiver
            })
            .collect();
        for batch in 0..batches {
            let sink = receivers[batch % workers]
                .recv()
                .map_err(|_| Error::Invalid("a generator thread stopped unexpectedly".into()))??;
            files.append(sink)?;
        }
        Ok(())
    })?;
    let resources = files.finish()?;
    Ok(Summary { patients: options.patients, resources, elapsed: started.elapsed() })
}

/// Patients per unit of work handed to a thread.
const BATCH: usize = 16;
/// One thread writes the files in order; beyond a few generating threads the writer is the
/// limit.
const MAX_WORKERS: usize = 4;

/// Resources of some patients, serialized per resource type, waiting to be appended.
#[derive(Default)]
pub(crate) struct Sink {
    buffers: Vec<Vec<u8>>,
    counts: Vec<u64>,
    /// Ground-truth lines, per [`TruthFile`].
    truth: Vec<Vec<u8>>,
}

impl Sink {
    /// Serializes one resource as a line of its type's file.
    pub(crate) fn write(&mut self, resource: &Value) -> Result<(), Error> {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let slot = self.slot(resource_type)?;
        let buffer = &mut self.buffers[slot];
        serde_json::to_writer(&mut *buffer, resource).map_err(std::io::Error::from)?;
        buffer.push(b'\n');
        self.counts[slot] += 1;
        Ok(())
    }

    /// Appends a resource already written as compact JSON text.
    pub(crate) fn write_json_line(&mut self, resource_type: &str, json: &[u8]) -> Result<(), Error> {
        let slot = self.slot(resource_type)?;
        let buffer = &mut self.buffers[slot];
        buffer.extend_from_slice(json);
        buffer.push(b'\n');
        self.counts[slot] += 1;
        Ok(())
    }

    /// Lists a finding in a ground-truth file.
    pub(crate) fn record(&mut self, file: TruthFile, line: &Value) -> Result<(), Error> {
        if self.truth.is_empty() {
            self.truth = vec![Vec::new(); TruthFile::ALL.len()];
        }
        let buffer = &mut self.truth[file as usize];
        serde_json::to_writer(&mut *buffer, line).map_err(std::io::Error::from)?;
        buffer.push(b'\n');
        Ok(())
    }

    /// The resources of a type written so far, parsed back.
    pub(crate) fn parsed(&self, resource_type: &str) -> Result<Vec<Value>, Error> {
        let Ok(slot) = RESOURCE_TYPES.binary_search(&resource_type) else { return Ok(Vec::new()) };
        let Some(buffer) = self.buffers.get(slot) else { return Ok(Vec::new()) };
        buffer
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line)
                    .map_err(|e| Error::Invalid(format!("a generated line does not parse: {e}")))
            })
            .collect()
    }

    /// Replaces the `position`-th resource of its type with `resource`.
    pub(crate) fn replace(
        &mut self,
        resource_type: &str,
        position: usize,
        resource: &Value,
    ) -> Result<(), Error> {
        let slot = self.slot(resource_type)?;
        let old = std::mem::take(&mut self.buffers[slot]);
        let mut new = Vec::with_capacity(old.len() + 64);
        for (at, line) in old.split(|&b| b == b'\n').filter(|line| !line.is_empty()).enumerate() {
            if at == position {
                serde_json::to_writer(&mut new, resource).map_err(std::io::Error::from)?;
            } else {
                new.extend_from_slice(line);
            }
            new.push(b'\n');
        }
        self.buffers[slot] = new;
        Ok(())
    }

    /// Removes the `position`-th resource of its type.
    pub(crate) fn remove(&mut self, resource_type: &str, position: usize) -> Result<(), Error> {
        let slot = self.slot(resource_type)?;
        let old = std::mem::take(&mut self.buffers[slot]);
        let mut new = Vec::with_capacity(old.len());
        let mut removed = false;
        for (at, line) in old.split(|&b| b == b'\n').filter(|line| !line.is_empty()).enumerate() {
            if at == position {
                removed = true;
                continue;
            }
            new.extend_from_slice(line);
            new.push(b'\n');
        }
        self.buffers[slot] = new;
        if removed {
            self.counts[slot] -= 1;
        }
        Ok(())
    }

    /// Appends everything `other` holds.
    pub(crate) fn extend(&mut self, other: Sink) {
        if other.buffers.is_empty() && other.truth.is_empty() {
            return;
        }
        if self.buffers.is_empty() {
            *self = other;
            return;
        }
        for ((buffer, count), (more, added)) in self
            .buffers
            .iter_mut()
            .zip(self.counts.iter_mut())
            .zip(other.buffers.into_iter().zip(other.counts))
        {
            buffer.extend_from_slice(&more);
            *count += added;
        }
        if self.truth.is_empty() {
            self.truth = other.truth;
        } else {
            for (buffer, more) in self.truth.iter_mut().zip(other.truth) {
                buffer.extend_from_slice(&more);
            }
        }
    }

    fn slot(&mut self, resource_type: &str) -> Result<usize, Error> {
        let slot = RESOURCE_TYPES
            .binary_search(&resource_type)
            .map_err(|_| Error::Invalid(format!("no output file for resource type '{resource_type}'")))?;
        if self.buffers.is_empty() {
            self.buffers = vec![Vec::new(); RESOURCE_TYPES.len()];
            self.counts = vec![0; RESOURCE_TYPES.len()];
        }
        Ok(slot)
    }
}

/// The open NDJSON files and the counts.
struct Files<'p> {
    writers: Vec<BufWriter<File>>,
    truth: Vec<BufWriter<File>>,
    counts: Vec<u64>,
    unreported: u64,
    progress: &'p dyn Fn(u64),
}

const PROGRESS_EVERY: u64 = 1000;

impl<'p> Files<'p> {
    fn create(out: &Path, progress: &'p dyn Fn(u64)) -> Result<Self, Error> {
        let writers = RESOURCE_TYPES
            .iter()
            .map(|t| Ok(BufWriter::with_capacity(1 << 16, File::create(out.join(format!("{t}.ndjson")))?)))
            .collect::<Result<Vec<_>, std::io::Error>>()?;
        let truth = TruthFile::ALL
            .iter()
            .map(|file| Ok(BufWriter::new(File::create(out.join(GROUND_TRUTH_DIR).join(file.file_name()))?)))
            .collect::<Result<Vec<_>, std::io::Error>>()?;
        Ok(Files { writers, truth, counts: vec![0; RESOURCE_TYPES.len()], unreported: 0, progress })
    }

    fn append(&mut self, sink: Sink) -> Result<(), Error> {
        for ((writer, buffer), (total, count)) in
            self.writers.iter_mut().zip(&sink.buffers).zip(self.counts.iter_mut().zip(&sink.counts))
        {
            writer.write_all(buffer)?;
            *total += count;
            self.unreported += count;
        }
        for (writer, buffer) in self.truth.iter_mut().zip(&sink.truth) {
            writer.write_all(buffer)?;
        }
        if self.unreported >= PROGRESS_EVERY {
            (self.progress)(self.unreported);
            self.unreported = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<BTreeMap<String, u64>, Error> {
        for writer in self.writers.iter_mut().chain(self.truth.iter_mut()) {
            writer.flush()?;
        }
        if self.unreported > 0 {
            (self.progress)(self.unreported);
        }
        Ok(RESOURCE_TYPES.iter().zip(&self.counts).map(|(t, &n)| (t.to_string(), n)).collect())
    }
}

/// The ICD-10-CM codes the generator can write, with the titles it writes for them.
pub fn icd10cm_codes() -> impl Iterator<Item = (&'static str, &'static str)> {
    clinical::ALL.iter().map(|dx| (dx.icd, dx.display)).chain(population::WELLNESS_CODES.iter().copied())
}
