//! Regenerates `crates/fhir/data/r4-definitions.tsv` from the FHIR R4 definition bundles.
//!
//! Usage: `cargo run -p chartroom-fhir --bin r4gen [DEFINITIONS_DIR]`
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
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let write = |name: &str, table: String| -> Result<PathBuf, String> {
        let out = data.join(name);
        std::fs::write(&out, table).map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(out)
    };
    let result = load(&dir, "profiles-types.json").and_then(|types| {
        let resources = load(&dir, "profiles-resources.json")?;
        let search = load(&dir, "search-parameters.json")?;
        let derive = chartroom_fhir::definitions::derive::derive_table(&types, &resources);
        let definitions = write("r4-definitions.tsv", derive)?;
        let parameters = write(
            "r4-search-parameters.tsv",
            chartroom_fhir::definitions::derive::derive_search_table(&search),
        )?;
        Ok(format!("{}\nwrote {}", definitions.display(), parameters.display()))
    });
    match result {
        Ok(out) => {
            println!("wrote {out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("r4gen: {message}");
            ExitCode::FAILURE
        }
    }
}
