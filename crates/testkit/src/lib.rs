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

/// The PostgreSQL server the tests may use: `CHARTROOM_TEST_POSTGRES`
/// (`postgres://user@127.0.0.1:port/db`, as `.ci/postgres` prints). Unset, the PostgreSQL
/// cases are skipped with a message, except under `CI=true`, where they must run.
pub fn postgres_url() -> Option<String> {
    required_server(
        "CHARTROOM_TEST_POSTGRES",
        "the PostgreSQL backend is tested (.ci/postgres)",
        "the PostgreSQL cases",
    )
}

/// A server a test needs, named by an environment variable: `None` (with a message) when the
/// variable is unset or empty, except under `CI=true`, where that fails the test.
fn required_server(variable: &str, under_ci: &str, cases: &str) -> Option<String> {
    if let Ok(url) = std::env::var(variable)
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{variable} is not set; under CI=true {under_ci}");
    }
    eprintln!("SKIPPED: {cases} ({variable} is not set)");
    None
}

/// Whether this run keeps the tests' records on PostgreSQL (`CHARTROOM_TEST_STORE=postgres`):
/// the API and HTTP suites run once on each backend.
pub fn on_postgres() -> bool {
    std::env::var("CHARTROOM_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// Options for a PostgreSQL record of its own for one test: a fresh schema of the test
/// server's database, named after the test and the process.
pub fn postgres_options(name: &str) -> Option<store::PostgresOptions> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = postgres_url()?;
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(32)
        .collect();
    let schema = format!("t_{cleaned}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let options = store::PostgresOptions { schema, ..store::PostgresOptions::new(&url) };
    store::PostgresStore::drop_schema(&options).expect("drop an earlier test schema");
    Some(options)
}

/// A fresh, empty store for one test, on the backend this run tests ([`on_postgres`]): a
/// schema of its own on PostgreSQL, or SQLite in `dir`.
pub fn open_store(name: &str, dir: &Path) -> std::sync::Arc<dyn store::Store> {
    if on_postgres() {
        let options =
            postgres_options(name).expect("CHARTROOM_TEST_STORE=postgres needs CHARTROOM_TEST_POSTGRES");
        return std::sync::Arc::new(store::PostgresStore::open(options).expect("open the PostgreSQL store"));
    }
    std::sync::Arc::new(
        store::SqliteStore::open(dir, store::StoreOptions::default()).expect("open the store"),
    )
}

/// The tables of users, clients and tokens for one test: in a fresh PostgreSQL schema under
/// `CHARTROOM_TEST_STORE=postgres` (where the servers of a record share them), else in
/// `dir`'s privacy database.
pub fn privacy_tables(name: &str, dir: &Path) -> std::sync::Arc<database::Database> {
    if on_postgres() {
        let options =
            postgres_options(name).expect("CHARTROOM_TEST_STORE=postgres needs CHARTROOM_TEST_POSTGRES");
        return database::Database::postgres(&options.url, &options.schema).expect("open the privacy tables");
    }
    std::fs::create_dir_all(dir).expect("make the test directory");
    database::Database::sqlite(&dir.join("privacy.sqlite")).expect("open the privacy tables")
}

/// A streaming replica of [`postgres_url`]'s server (`CHARTROOM_TEST_POSTGRES_REPLICA`, as
/// `.ci/postgres replica` prints); skipped when unset, except under `CI=true`.
pub fn postgres_replica_url() -> Option<String> {
    required_server(
        "CHARTROOM_TEST_POSTGRES_REPLICA",
        "the read replica is tested (.ci/postgres replica)",
        "the read-replica cases",
    )
}
