//! Helpers shared by the tests of several crates.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A folder of `../shared` (conformance suites, FHIR definitions and examples, reference
/// data), which sits beside the project checkout.
///
/// When it is missing the test is skipped with a message, except under `CI=true`, where a
/// missing suite must fail the run rather than pass silently.
pub fn shared_dir(relative: &str) -> Option<PathBuf> {
    let dir = workspace_root().join("../shared").join(relative);
    if dir.exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is missing; under CI=true the shared suites are required", dir.display());
    }
    eprintln!("SKIPPED: {} is not present", dir.display());
    None
}

/// A fresh, empty temporary directory for one test. The directories earlier runs left under
/// the same name are removed, so repeated runs do not fill the disk.
pub fn temp_dir(name: &str) -> PathBuf {
    let prefix = format!("chartroom-test-{name}-");
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            // Only `<prefix><pid>`: another test's name may extend this one's.
            let earlier = file_name.strip_prefix(&prefix).is_some_and(|pid| {
                pid.bytes().all(|b| b.is_ascii_digit()) && pid != std::process::id().to_string()
            });
            if earlier {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("chartroom-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temporary directory");
    dir
}
