//! Regenerates `crates/terminology/data/icd10cm-2026.tsv` from the CDC's ICD-10-CM tabular
//! list XML.
//!
//! Usage: `cargo run -p chartroom-terminology --bin icd10gen [XML]`
//! (default `../shared/data/icd10cm/icd10cm-tabular-2026-04.xml`, relative to the workspace root).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let source = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("../shared/data/icd10cm/icd10cm-tabular-2026-04.xml"));
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/icd10cm-2026.tsv");
    let result = std::fs::read_to_string(&source)
        .map_err(|e| format!("{}: {e}", source.display()))
        .and_then(|xml| {
            chartroom_terminology::icd10cm::derive::derive_table(&xml)
                .map_err(|e| format!("{}: {e}", source.display()))
        })
        .and_then(|table| std::fs::write(&out, table).map_err(|e| format!("{}: {e}", out.display())));
    match result {
        Ok(()) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("icd10gen: {message}");
            ExitCode::FAILURE
        }
    }
}
