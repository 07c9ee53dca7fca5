//! An extract of a whole record: the identities learnt from the store, then every live
//! resource of the asked types de-identified and written as NDJSON, one file per type.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use store::Store;

use crate::{Deidentifier, Error, Report, Settings, rules};

/// Learns the record's identities (the [`rules::LEARN_FROM`] types) from `store`.
pub fn learn(store: &dyn Store, settings: Settings) -> Result<Deidentifier, Error> {
    let mut learning = Deidentifier::learning(settings);
    for resource_type in rules::LEARN_FROM {
        store
            .scan_type(resource_type, None, &mut |_, _, body| {
                if let Ok(resource) = serde_json::from_slice::<Value>(body) {
                    learning.learn(&resource);
                }
                Ok(())
            })
            .map_err(|e| Error::Store(e.to_string()))?;
    }
    learning.finish()
}

/// A file of an extract: its type, path and resources.
pub type ExtractFile = (String, PathBuf, u64);

/// Writes `OUT/TYPE.ndjson` for every type of `types` (every live type when `None`) that has
/// a resource left after de-identification; returns the files and the report.
pub fn write_ndjson(
    store: &dyn Store,
    deidentifier: &Deidentifier,
    types: Option<&[String]>,
    out: &Path,
) -> Result<(Vec<ExtractFile>, Report), Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("{}: {e}", out.display())))?;
    let types: Vec<String> = match types {
        Some(types) => types.to_vec(),
        None => store
            .count_by_type()
            .map_err(|e| Error::Store(e.to_string()))?
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
    };
    let mut report = Report::default();
    let mut files = Vec::new();
    for resource_type in types {
        let path = out.join(format!("{resource_type}.ndjson"));
        let mut writer = None;
        let mut written = 0u64;
        let mut failure = None;
        store
            .scan_type(&resource_type, None, &mut |_, _, body| {
                let Ok(resource) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
                let Some(clean) = deidentifier.apply(&resource, &mut report) else { return Ok(()) };
                if writer.is_none() {
                    match std::fs::File::create(&path) {
                        Ok(file) => writer = Some(std::io::BufWriter::new(file)),
                        Err(e) => {
                            failure = Some(e.to_string());
                            return Err(store::Error::Stopped);
                        }
                    }
                }
                if let Some(writer) = writer.as_mut()
                    && let Err(e) = serde_json::to_writer(&mut *writer, &clean)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writer.write_all(b"\n"))
                {
                    failure = Some(e.to_string());
                    return Err(store::Error::Stopped);
                }
                written += 1;
                Ok(())
            })
            .map_err(|e| Error::Output(failure.take().unwrap_or_else(|| e.to_string())))?;
        if let Some(mut writer) = writer {
            writer.flush().map_err(|e| Error::Output(format!("{}: {e}", path.display())))?;
            files.push((resource_type, path, written));
        }
    }
    Ok((files, report))
}
