//! The views as Parquet files for cluster engines (Apache Spark, DuckDB, Trino): Hive-style
//! partitions by resource type and month, `OUT/VIEW/resource_type=TYPE/month=YYYY-MM/part-0.parquet`,
//! which those engines read as a partitioned table without being told the layout.
//!
//! A resource's month is that of its clinical date (`store::hold::clinical_dates`: the first
//! of its date, onset, recorded, authored, created or period parameters), else of its last
//! update; one without either is in Hive's default partition. Each view costs two passes:
//! one finds every resource's month (ids only), the second flattens one month at a time, so
//! one Parquet writer is open at a time whatever the number of months.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use sof::Format;
use store::Store;

use crate::{Error, Flattener, NamedView, Result, ViewScope};

/// Hive's name for the partition of rows without a value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Resources read back per call in the second pass.
const READ_CHUNK: usize = 1_000;

/// What one view's export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionedView {
    pub view: String,
    pub resource_type: String,
    pub resources: u64,
    pub rows: u64,
    /// Partition files written (one per month with resources).
    pub files: Vec<PathBuf>,
}

/// The `month=` value of a resource.
pub fn month_of(resource_type: &str, resource: &Json) -> String {
    let millis = store::hold::clinical_dates(resource_type, resource).map(|(low, _)| low).or_else(|| {
        let updated = resource.get("meta")?.get("lastUpdated")?.as_str()?;
        Some(fhir::DateTime::parse(updated, fhir::DateTimeKind::Instant).ok()?.lower_bound_millis())
    });
    match millis {
        Some(millis) => {
            let text = fhir::DateTime::from_epoch_millis(millis).to_string();
            text.get(..7).map_or_else(|| DEFAULT_PARTITION.to_string(), str::to_string)
        }
        None => DEFAULT_PARTITION.to_string(),
    }
}

/// Writes `view`'s rows under `out/VIEW/resource_type=TYPE/month=M/part-0.parquet`, replacing
/// an earlier export of the view.
pub fn export_view(store: &dyn Store, view: &NamedView, out: &Path) -> Result<PartitionedView> {
    let resource_type = view.view.resource().to_string();
    let io = |path: &Path, e: std::io::Error| Error::Input(format!("{}: {e}", path.display()));
    // Pass 1: each resource's month, by id.
    let mut months: BTreeMap<String, Vec<String>> = BTreeMap::new();
    store.scan_type(&resource_type, None, &mut |resource_type, id, body| {
        let resource: Json = serde_json::from_slice(body).map_err(|e| {
            store::Error::Corrupt(format!("{resource_type}/{id} stored as invalid JSON: {e}"))
        })?;
        months.entry(month_of(resource_type, &resource)).or_default().push(id.to_string());
        Ok(())
    })?;
    let root = out.join(&view.name);
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| io(&root, e))?;
    }
    let mut export = PartitionedView {
        view: view.name.clone(),
        resource_type: resource_type.clone(),
        ..Default::default()
    };
    // Pass 2: one month at a time.
    for (month, ids) in &months {
        let dir = root.join(format!("resource_type={resource_type}")).join(format!("month={month}"));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join("part-0.parquet");
        let file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        let mut flattener =
            Flattener::new(&view.view, &ViewScope::default(), Format::Parquet, BufWriter::new(file))?;
        for chunk in ids.chunks(READ_CHUNK) {
            let identities: Vec<(String, String)> =
                chunk.iter().map(|id| (resource_type.clone(), id.clone())).collect();
            for version in store.read_many(&identities)? {
                let Some(body) = version.body else { continue };
                let resource: Json = serde_json::from_slice(&body).map_err(|e| {
                    store::Error::Corrupt(format!(
                        "{resource_type}/{} stored as invalid JSON: {e}",
                        version.id
                    ))
                })?;
                flattener.push(&resource)?;
            }
        }
        let (writer, run) = flattener.finish()?;
        writer.into_inner().map_err(|e| io(&path, e.into_error()))?.sync_all().map_err(|e| io(&path, e))?;
        export.resources += run.resources;
        export.rows += run.rows;
        export.files.push(path);
    }
    Ok(export)
}
