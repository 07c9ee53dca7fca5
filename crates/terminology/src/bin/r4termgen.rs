//! Regenerates `crates/terminology/data/r4-terminology.tsv` from the FHIR R4 terminology
//! bundles.
//!
//! Usage: `cargo run -p chartroom-terminology --bin r4termgen [DEFINITIONS_DIR]`
//! (default `../shared/fhir-r4/definitions`, relative to the workspace root).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn load(dir: &Path, name: &str) -> Result<serde_json::Value, String> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("../shared/fhir-r4/definitions"));
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/r4-terminology.tsv");
    let result = (|| {
        let valuesets = load(&dir, "valuesets.json")?;
        let v3 = load(&dir, "v3-codesystems.json")?;
        let v2 = load(&dir, "v2-tables.json")?;
        let table = chartroom_terminology::r4::derive::derive_table(&valuesets, &v3, &v2);
        std::fs::write(&out, table).map_err(|e| format!("{}: {e}", out.display()))
    })();
    match result {
        Ok(()) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("r4termgen: {message}");
            ExitCode::FAILURE
        }
    }
}
