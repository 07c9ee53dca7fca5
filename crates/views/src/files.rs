//! Views over files rather than the record: NDJSON (one resource per line) and JSON
//! (a resource or a Bundle), a file or a directory of them, so that an export or another
//! system's extract can be flattened the same way.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use sof::{Format, ViewDefinition};

use crate::run::{Flattener, ViewRun, ViewScope};
use crate::{Error, Result};

/// Runs `view` over the resources in `input` (a file, or a directory searched recursively).
pub fn run_files<W: Write + Send>(
    view: &ViewDefinition,
    input: &Path,
    scope: &ViewScope,
    format: Format,
    out: W,
) -> Result<(W, ViewRun)> {
    let mut flattener = Flattener::new(view, scope, format, out)?;
    each_resource(input, view.resource(), &mut |resource| {
        if flattener.full() { Ok(()) } else { flattener.push(resource) }
    })?;
    flattener.finish()
}

/// The files under `input` (itself if a file), NDJSON and JSON, in name order.
pub fn input_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let unreadable =
        |path: &Path, e: std::io::Error| Error::Input(format!("cannot read {}: {e}", path.display()));
    let mut files = Vec::new();
    let mut pending = vec![input.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, e))? {
            let path = entry.map_err(|e| unreadable(&dir, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "ndjson" || e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Calls `visit` with every resource of the files (NDJSON lines, JSON resources, the entries
/// of JSON Bundles). NDJSON lines that cannot be of `resource_type` (its name appears nowhere
/// in them, not even escaped) are only checked to be JSON, not parsed: a directory of every
/// type is read about as fast as the one file the view needs.
pub fn each_resource(
    input: &Path,
    resource_type: &str,
    visit: &mut dyn FnMut(&Json) -> Result<()>,
) -> Result<()> {
    let quoted_type = format!("\"{resource_type}\"");
    for file in input_files(input)? {
        let at = |line: Option<usize>, e: &dyn std::fmt::Display| match line {
            Some(number) => Error::Input(format!("{}:{number}: {e}", file.display())),
            None => Error::Input(format!("{}: {e}", file.display())),
        };
        let ndjson = file.extension().is_some_and(|e| e == "ndjson");
        let reader =
            BufReader::new(std::fs::File::open(&file).map_err(|e| at(None, &format!("cannot open: {e}")))?);
        if ndjson {
            for (number, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| at(Some(number + 1), &e))?;
                if line.trim().is_empty() {
                    continue;
                }
                if !line.contains(&quoted_type) && !line.contains("\\u") {
                    fhir::check_json(line.as_bytes()).map_err(|e| at(Some(number + 1), &e))?;
                    continue;
                }
                let json = fhir::parse_json(line.as_bytes()).map_err(|e| at(Some(number + 1), &e))?;
                visit(&json)?;
            }
        } else {
            let json: Json = serde_json::from_reader(reader).map_err(|e| at(None, &e))?;
            match json.get("entry").and_then(Json::as_array) {
                Some(entries) if json["resourceType"] == "Bundle" => {
                    for resource in entries.iter().filter_map(|e| e.get("resource")) {
                        visit(resource)?;
                    }
                }
                _ => visit(&json)?,
            }
        }
    }
    Ok(())
}
