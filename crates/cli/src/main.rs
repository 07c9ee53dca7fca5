//! `chartroom`: the one binary. Each subcommand parses its arguments, calls a library, and
//! renders the result.

mod amend_cli;
mod analysis;
mod billing_cli;
mod code;
mod completion_cli;
mod deid_cli;
mod dq;
mod generate;
mod hl7_cli;
mod in_process;
mod mpi_cli;
mod path;
mod privacy_cli;
mod record;
mod report_cli;
mod retention_cli;
mod risk_cli;
mod roi_cli;
mod validate;
mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use store::{SqliteStore, StoreOptions, Synchronous};

// glibc's per-thread arenas grow and trim with an mprotect call per step; under the import's
// allocation churn across threads that cost tens of thousands of system calls per 100k
// resources. mimalloc keeps thread-local pages instead.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Chartroom: a FHIR R4 health information management server.
#[derive(Parser)]
#[command(name = "chartroom", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a demo population on first run (empty data directory), import it, and serve.
    Demo(generate::DemoArgs),
    /// Serve the FHIR R4 REST API at /fhir.
    Serve(ServeArgs),
    /// Write a deterministic synthetic population as NDJSON, one file per resource type.
    Generate(generate::GenerateArgs),
    /// Import NDJSON files (one resource per line) and JSON resources or Bundles.
    Import(ImportArgs),
    /// Evaluate a FHIRPath expression against a resource (FILE, or stdin) and print the
    /// result collection as a JSON array.
    Fhirpath(path::FhirpathArgs),
    /// Rebuild the search index from the current version of every resource.
    Reindex(ReindexArgs),
    /// Make the record's schema, or bring it up to this version (also done by every command
    /// that opens the record for writing): for a PostgreSQL record, before the servers start.
    Migrate(ReindexArgs),
    /// Users and their API tokens.
    User(privacy_cli::UserArgs),
    /// SMART clients: the apps and backend services that may ask for tokens.
    Client(privacy_cli::ClientArgs),
    /// The audit trail: verify its integrity, account for disclosures.
    Audit(privacy_cli::AuditArgs),
    /// Data-quality report over a data directory (conformance, completeness, plausibility);
    /// each run is kept so the next shows the trend.
    Dq(dq::DqArgs),
    /// Validate resources (JSON or NDJSON files) against the R4 definitions; exits 1 when
    /// any has an error.
    Validate(validate::ValidateArgs),
    /// ICD-10-CM: look up a code, search titles, suggest codes for clinical text.
    Code(code::CodeArgs),
    /// The coder's tools over a data directory: the worklist of encounters to code.
    Coding(code::CodingArgs),
    /// SQL on FHIR views: list the built-in and saved ones, run one to CSV, NDJSON, JSON or
    /// Parquet, save a new one.
    View(views::ViewArgs),
    /// Run SQL over the views' tables (materialized in DIR/analytics.sqlite when the record
    /// changed).
    Sql(views::SqlArgs),
    /// Outbreak early warning: judge one count series (EARS, CUSUM, Farrington, as R's
    /// surveillance package), or every syndrome × place series of the record.
    Surveil(Box<analysis::SurveilArgs>),
    /// Survival analysis over a CSV: Kaplan–Meier, log-rank test, Cox proportional hazards
    /// (as lifelines computes them).
    Survival(analysis::SurvivalArgs),
    /// Retrospective cohort studies over the record: compare two treatments over time.
    Cohort(analysis::CohortArgs),
    /// Duplicate patients: match the record's Patients (probabilistic, Fellegi–Sunter), or
    /// measure matching on linkage files with known true pairs.
    Mpi(mpi_cli::MpiArgs),
    /// Risk: comorbidity indices (Charlson, Elixhauser, HFRS) of the record or of a CSV
    Risk(risk_cli::RiskArgs),
    /// Reports over the record: how resources are used (operations)
    Report(report_cli::ReportArgs),
    /// Accurate bills: final bills checked against the record, DNFB and the coding backlog
    Billing(billing_cli::BillingArgs),
    /// Release of information: requests, their authorization and 30-day clock, releases
    Roi(roi_cli::RoiArgs),
    /// Amendments: a patient's request to amend their record, accepted or denied (164.526)
    Amend(amend_cli::AmendArgs),
    /// Legal holds: nothing held can be changed, deleted or purged
    Hold(retention_cli::HoldArgs),
    /// Retention: what is past its schedule, and the purge with its certificate
    Retention(retention_cli::RetentionArgs),
    /// Record completion: deficiencies owed by clinicians, the delinquency report
    Completion(completion_cli::CompletionArgs),
    /// De-identified research extract: NDJSON and the built-in views as Parquet, HIPAA Safe
    /// Harbor or date-shifted with keyed pseudonyms, with the count of what was removed
    Deid(deid_cli::DeidArgs),
    /// HL7 v2 messages (ADT, ORU^R01): apply a file of them as the MLLP listener does
    Hl7(hl7_cli::Hl7Args),
}

#[derive(Clone, Copy, ValueEnum)]
enum SyncMode {
    /// Commits survive power loss (fsync on every group commit).
    Full,
    /// Commits survive a killed process; the last ones may be lost on power loss.
    Normal,
}

/// The data directory of a command that writes the record: the one writer process
/// (`serve`, `import`, `demo`, `reindex`), holding the directory's lock.
#[derive(clap::Args)]
struct StoreArgs {
    /// Data directory (`serve`, `import` and `demo` create it when missing).
    #[arg(long, default_value = "./chartroom-data")]
    data: PathBuf,
    /// Durability of each commit. `serve` defaults to full (every acknowledged write survives
    /// power loss). `import` defaults to normal and syncs everything once before it reports
    /// success.
    #[arg(long, value_enum)]
    sync: Option<SyncMode>,
    /// Keep the record in PostgreSQL (`postgres://user@host:port/database`) instead of the
    /// data directory's SQLite database: several `serve` processes, each with its own data
    /// directory, share it. The schema is made (or migrated) when missing.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema the record lives in (one database may hold several records).
    #[arg(long, default_value = "chartroom", requires = "store")]
    store_schema: String,
    /// A streaming replica of the `--store` database to serve searches from: a search goes to
    /// it once it has replayed everything this process committed (so this server always reads
    /// its own writes), to the primary until then.
    #[arg(long, value_name = "URL", requires = "store")]
    read_store: Option<String>,
}

impl StoreArgs {
    fn options(&self, default: SyncMode) -> StoreOptions {
        StoreOptions {
            synchronous: match self.sync.unwrap_or(default) {
                SyncMode::Full => Synchronous::Full,
                SyncMode::Normal => Synchronous::Normal,
            },
            ..StoreOptions::default()
        }
    }

    /// Where the users, clients and tokens are: the record's PostgreSQL database (shared by
    /// every server of the record), else the data directory's privacy database.
    fn privacy_tables(&self) -> Result<Arc<privacy::Database>> {
        match &self.store {
            Some(url) => record::shared_tables(url, &self.store_schema),
            None => Ok(privacy::open_directory(&self.data)?),
        }
    }

    /// Opens the record for writing, creating it when missing (and saying so).
    fn open(&self, default: SyncMode) -> Result<record::Record> {
        self.open_record(default, true)
    }

    /// Opens an existing record for writing; a missing one is refused.
    fn open_existing(&self, default: SyncMode) -> Result<record::Record> {
        self.open_record(default, false)
    }

    fn open_record(&self, default: SyncMode, create: bool) -> Result<record::Record> {
        let record = match &self.store {
            Some(url) => {
                if !store::is_postgres_url(url) {
                    bail!("--store {url}: only postgres:// (or postgresql://) URLs name a store");
                }
                if let Some(replica) = &self.read_store
                    && !store::is_postgres_url(replica)
                {
                    bail!("--read-store {replica}: only postgres:// (or postgresql://) URLs name a replica");
                }
                let options = store::PostgresOptions {
                    schema: self.store_schema.clone(),
                    create,
                    replica_url: self.read_store.clone(),
                    ..store::PostgresOptions::new(url)
                };
                std::fs::create_dir_all(&self.data)
                    .with_context(|| format!("cannot make the data directory {}", self.data.display()))?;
                let store =
                    store::PostgresStore::open(options).context("cannot open the record in PostgreSQL")?;
                record::Record::Postgres(Arc::new(store))
            }
            None => {
                let options = StoreOptions { create, ..self.options(default) };
                let store =
                    SqliteStore::open(&self.data, options).map_err(|error| store_error(&self.data, error))?;
                record::Record::Sqlite(Arc::new(store))
            }
        };
        if record.created() {
            match &record {
                record::Record::Sqlite(_) => eprintln!("created data directory {}", self.data.display()),
                record::Record::Postgres(_) => {
                    eprintln!("created the record in PostgreSQL (schema {})", self.store_schema)
                }
            }
        }
        Ok(record)
    }
}

/// The data directory of a command that only reads the record (a report, a query): it opens
/// a read-only snapshot, beside a server that may be writing, and never creates anything
/// there but its own output.
#[derive(clap::Args)]
struct DataArgs {
    /// Data directory to read (made by `chartroom serve`, `import` or `demo`); read as a
    /// snapshot, also while a server writes to it.
    #[arg(long, default_value = "./chartroom-data")]
    data: PathBuf,
    /// Read the record from PostgreSQL (`postgres://...`, as the servers' `--store`) instead
    /// of the data directory's SQLite database; the data directory still takes this command's
    /// own files (saved views, the analytics tables). Each read sees the record as of that
    /// read, not one snapshot for the whole report.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema the record lives in.
    #[arg(long, default_value = "chartroom", requires = "store")]
    store_schema: String,
}

impl DataArgs {
    /// A data directory's own record (SQLite).
    fn dir(data: PathBuf) -> DataArgs {
        DataArgs { data, store: None, store_schema: "chartroom".into() }
    }

    /// The record as of now, read-only ([`SqliteStore::open_read_only`]: no lock, no writer),
    /// or the PostgreSQL record named by `--store` (which must exist).
    fn open_read_only(&self) -> Result<record::Snapshot> {
        if let Some(url) = &self.store {
            if !store::is_postgres_url(url) {
                bail!("--store {url}: only postgres:// (or postgresql://) URLs name a store");
            }
            let options = store::PostgresOptions {
                schema: self.store_schema.clone(),
                create: false,
                ..store::PostgresOptions::new(url)
            };
            let store =
                store::PostgresStore::open(options).context("cannot open the record in PostgreSQL")?;
            // The directory takes this command's own files (the analytics tables, saved views).
            self.check()?;
            return Ok(record::Snapshot::Postgres(Arc::new(store)));
        }
        let store =
            SqliteStore::open_read_only(&self.data).map_err(|error| store_error(&self.data, error))?;
        snapshot_notice(&self.data);
        Ok(record::Snapshot::Sqlite(Arc::new(store)))
    }

    /// Refuses a path that is not a data directory (before anything is read or written
    /// there); with `--store`, the directory only takes outputs and is made when missing.
    fn check(&self) -> Result<()> {
        if self.store.is_some() {
            return std::fs::create_dir_all(&self.data)
                .with_context(|| format!("cannot make the data directory {}", self.data.display()));
        }
        SqliteStore::check_data_directory(&self.data).map_err(|error| store_error(&self.data, error))
    }
}

/// A report to `out`, with its summary on standard output; or, without `out`, the report on
/// standard output and the summary on standard error (so the report can be piped).
pub(crate) fn emit_report(text: &str, out: Option<&Path>, summary: &str) -> Result<ExitCode> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            println!("{summary}; report in {}", path.display());
        }
        None => {
            // CSV ends with its last row's newline; JSON and HTML get one.
            if text.ends_with('\n') {
                print!("{text}");
            } else {
                println!("{text}");
            }
            eprintln!("{summary}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one line a read-only command prints: what it reads is the record as of now, and a
/// server may go on writing meanwhile.
fn snapshot_notice(data: &Path) {
    eprintln!(
        "reading a snapshot of {} as of {} (a server may be writing; later writes are not in this report)",
        data.display(),
        fhir::DateTime::now_utc()
    );
}

/// A store error when opening `data`: those that name the directory as they are, the others
/// with it.
fn store_error(data: &Path, error: store::Error) -> anyhow::Error {
    match error {
        store::Error::DataDirectory { .. }
        | store::Error::InUse { .. }
        | store::Error::NotADataDirectory { .. }
        | store::Error::NeedsWriter { .. } => error.into(),
        other => {
            anyhow::Error::new(other).context(format!("cannot open the data directory {}", data.display()))
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Set by `demo`: where its population's planted ground truth is, for the first steps it
    /// prints once serving.
    #[arg(skip)]
    demo_ground_truth: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Largest request body accepted, in MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mib: usize,
    /// Public base URL of the FHIR API, if it differs from http://<Host>/fhir (e.g. behind a proxy).
    #[arg(long)]
    base_url: Option<String>,
    /// Serve without requiring a token: every request acts as an anonymous administrator (and
    /// is still audited). For trying Chartroom out only, never with real patient data.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Also accept JWT bearer tokens signed with HS256 by the secret in this file (SMART
    /// claims: scope, patient, fhirUser, sub, role; exp required, nbf enforced).
    #[arg(long)]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Also accept JWT bearer tokens signed RS256, RS384, ES256 (P-256) or ES384 (P-384) by an authorization server
    /// whose public keys are in this JWKS file ({"keys": [...]}); the key is chosen by the
    /// token's kid. May be given with --jwt-hs256-secret-file: the token's alg decides, and
    /// HS256 tokens are refused unless a secret is configured.
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// Accept only JWTs whose iss is this (e.g. https://auth.example.org).
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// Use an outside authorization server instead of the built-in one: its SMART discovery
    /// document (JSON), which is served as this server's .well-known/smart-configuration and
    /// whose endpoints the CapabilityStatement advertises. Its tokens are checked with
    /// --jwks-file (and --jwt-issuer, --jwt-audience).
    #[arg(long)]
    smart_configuration: Option<PathBuf>,
    /// Accept only JWTs whose aud names this (e.g. this server's base URL).
    #[arg(long)]
    jwt_audience: Option<String>,
    /// When a response may leave relative to its audit entry. strict: only once the entry is
    /// committed (a delivered response always has its entry, even if the process is killed;
    /// with --sync full the entry is also synced to disk). fast: entries are committed every
    /// 20 ms without waiting (a killed process loses its last moments' entries; the gap is
    /// recorded at the next start).
    #[arg(long, value_enum, default_value = "strict")]
    audit_durability: AuditDurability,
    /// Seconds a request body may take to arrive once its headers have (408 after).
    #[arg(long, default_value_t = 30)]
    body_timeout_secs: u64,
    #[command(flatten)]
    validation: ValidationArgs,
    /// A new Patient that probably duplicates one on file (match probability 0.5 or more):
    /// warn (created; the answer's OperationOutcome names the candidates), refuse (409, not
    /// created), or off.
    #[arg(long, value_enum, default_value = "warn")]
    duplicate_check: DuplicateCheckArg,
    /// Also accept HL7 v2 messages (ADT, ORU^R01) over MLLP on this port (0 picks a free
    /// one), on --mllp-bind.
    #[arg(long)]
    mllp_port: Option<u16>,
    /// Address the MLLP listener binds. MLLP carries no credentials: whoever can connect
    /// writes as the feed's identity, so it listens on loopback unless told otherwise (put
    /// the interface engine on a private network, or behind a TLS tunnel).
    #[arg(long, default_value = "127.0.0.1")]
    mllp_bind: String,
    /// Who the HL7 v2 feed acts as, in the audit trail (with the HIM technician's rights).
    #[arg(long, default_value = "hl7-interface")]
    mllp_user: String,
    /// A directory `$import` may read file:// inputs from (repeatable; default DIR/import).
    #[arg(long)]
    import_from: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DuplicateCheckArg {
    Warn,
    Refuse,
    Off,
}

/// What happens to a resource that does not validate against the R4 definitions.
#[derive(clap::Args, Clone, Copy, Default)]
pub(crate) struct ValidationArgs {
    /// strict: refused (422 with every issue; a transaction fails whole). warn: stored as
    /// given, the answer carrying its issues as warnings (a Bundle entry's outcome; import
    /// lists them), for taking in real data to fix later; `chartroom dq` counts them. off:
    /// stored unchecked.
    #[arg(long, value_enum, default_value = "strict")]
    validation: ValidationMode,
    /// The same as --validation off.
    #[arg(long, hide = true)]
    no_validate: bool,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum ValidationMode {
    #[default]
    Strict,
    Warn,
    Off,
}

impl ValidationArgs {
    fn mode(self) -> api::Validation {
        match (self.no_validate, self.validation) {
            (true, _) | (false, ValidationMode::Off) => api::Validation::Skip,
            (false, ValidationMode::Strict) => api::Validation::Enforce,
            (false, ValidationMode::Warn) => api::Validation::Warn,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditDurability {
    Strict,
    Fast,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// An NDJSON or JSON file, or a directory searched recursively for them.
    path: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Threads that parse and check resources.
    #[arg(long)]
    workers: Option<usize>,
    /// Transaction and batch Bundles in JSON files: execute them (as if POSTed to the
    /// service base) or store them as Bundle resources.
    #[arg(long, value_enum, default_value = "execute")]
    bundles: BundlesArg,
    #[command(flatten)]
    validation: ValidationArgs,
    /// Print no progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ReindexArgs {
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum BundlesArg {
    Execute,
    Store,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHARTROOM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo(args) => generate::demo(args),
        Command::Serve(args) => serve(args),
        Command::Generate(args) => generate::generate(args),
        Command::Import(args) => import(args),
        Command::Fhirpath(args) => path::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Dq(args) => dq::run(args),
        Command::User(args) => privacy_cli::run_user(args),
        Command::Client(args) => privacy_cli::run_client(args),
        Command::Audit(args) => privacy_cli::run_audit(args),
        Command::Reindex(args) => reindex(args),
        Command::Migrate(args) => migrate(args),
        Command::Code(args) => code::run_code(args),
        Command::Coding(args) => code::run_coding(args),
        Command::View(args) => views::run(args),
        Command::Sql(args) => views::sql(args),
        Command::Surveil(args) => analysis::run_surveil(*args),
        Command::Survival(args) => analysis::run_survival(args),
        Command::Cohort(args) => analysis::run_cohort(args),
        Command::Mpi(args) => mpi_cli::run(args),
        Command::Risk(args) => risk_cli::run(args),
        Command::Report(args) => report_cli::run(args),
        Command::Billing(args) => billing_cli::run(args),
        Command::Roi(args) => roi_cli::run(args),
        Command::Completion(args) => completion_cli::run(args),
        Command::Deid(args) => deid_cli::run(args),
        Command::Hl7(args) => hl7_cli::run(args),
        Command::Amend(args) => amend_cli::run(args),
        Command::Hold(args) => retention_cli::run_hold(args),
        Command::Retention(args) => retention_cli::run_retention(args),
    };
    match result {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not a failure of the command.
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chartroom: {error:#}");
            // A path that is no data directory is a usage error, like a bad argument.
            let wrong_directory = error.chain().any(|cause| {
                matches!(cause.downcast_ref::<store::Error>(), Some(store::Error::NotADataDirectory { .. }))
            });
            if wrong_directory { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    // Before the store opens (and perhaps reindexes): a key file that cannot work stops serve
    // at once.
    let jwt = jwt_verifier(&args)?;
    let outside = outside_authorization_server(&args)?;
    let record = args.store.open(SyncMode::Full)?;
    let store = record.store();
    ensure_index(store.as_ref())?;
    let api_config = ApiConfig {
        views_dir: Some(args.store.data.join("views")),
        syndromes_dir: Some(analytics::syndromes::syndromes_dir(&args.store.data)),
        mpi_decisions: Some(mpi::review::decisions_path(&args.store.data)),
        roi_fees: workflow::roi::fee::FeePolicy::load(&args.store.data)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        readmission_model: Some(analytics::risk::readmission::model_path(&args.store.data)),
        analytics_tables: Some(::views::tables::tables_path(&args.store.data)),
        export_dir: Some(args.store.data.join("exports")),
        deid_key: Some(args.store.data.join(deid::KEY_FILE)),
        import_dir: Some(args.store.data.join("imports")),
        import_roots: if args.import_from.is_empty() {
            vec![args.store.data.join("import")]
        } else {
            args.import_from.clone()
        },
        validation: args.validation.mode(),
        duplicate_check: match args.duplicate_check {
            DuplicateCheckArg::Warn => api::DuplicateCheck::Warn,
            DuplicateCheckArg::Refuse => api::DuplicateCheck::Refuse,
            DuplicateCheckArg::Off => api::DuplicateCheck::Off,
        },
        requires_access_token: !args.insecure_no_auth,
        oauth: match &outside {
            _ if args.insecure_no_auth => None,
            Some((_, uris)) => Some(uris.clone()),
            None => Some(server::oauth::capability_uris()),
        },
        ..ApiConfig::default()
    };
    let api = Arc::new(Api::new(store.clone(), api_config));
    // Matching needs the index of Patients; building it (about half a minute for a million)
    // starts now rather than under the first registration.
    api.warm_patient_index();
    let audit = privacy::AuditOptions {
        durability: match args.audit_durability {
            AuditDurability::Strict => privacy::Durability::Strict,
            AuditDurability::Fast => privacy::Durability::Fast,
        },
        // The trail is as durable as the record: synced on every commit when the store is.
        sync_full: matches!(args.store.sync.unwrap_or(SyncMode::Full), SyncMode::Full),
    };
    let mut security = server::Security::open_on(&args.store.data, args.store.privacy_tables()?, audit)
        .with_context(|| format!("cannot open the users and audit trail in {}", args.store.data.display()))?;
    security.jwt = jwt;
    if let Some((document, _)) = outside {
        security = security.with_outside_authorization_server(document);
    }
    let config = server::ServerConfig {
        max_body_bytes: args.max_body_mib.saturating_mul(1024 * 1024),
        body_timeout: std::time::Duration::from_secs(args.body_timeout_secs.max(1)),
        base_url: args.base_url.clone(),
        security: Some(Arc::new(security)),
        require_auth: !args.insecure_no_auth,
        ..server::ServerConfig::default()
    };
    if args.insecure_no_auth {
        eprintln!(
            "\n  *** WARNING: serving WITHOUT AUTHENTICATION. Anyone who can reach this port can read and change \n  *** every record (as an anonymous administrator; accesses are audited). Never use this with real patient data.\n"
        );
    }
    let security = config.security.clone();
    let router = server::router(api.clone(), config);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
        let address: SocketAddr = listener.local_addr()?;
        println!("Chartroom serving FHIR R4 at http://{address}/fhir (data: {})", args.store.data.display());
        // One signal stops both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        if let Some(port) = args.mllp_port {
            let mllp = tokio::net::TcpListener::bind((args.mllp_bind.as_str(), port))
                .await
                .with_context(|| format!("cannot listen for MLLP on {}:{port}", args.mllp_bind))?;
            println!("Chartroom accepting HL7 v2 over MLLP at {} as {}", mllp.local_addr()?, args.mllp_user);
            let mut stopped = stopped.clone();
            let until = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let config = server::MllpConfig::interface(&args.mllp_user);
            tokio::spawn(server::serve_mllp(mllp, api.clone(), security, config, until));
        }
        if let Some(ground_truth) = &args.demo_ground_truth {
            print_demo_steps(&format!("http://{address}/fhir"), &args.store.data, ground_truth);
        }
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        server::serve(listener, router, shutdown).await.context("server failed")
    })?;
    record.close();
    Ok(ExitCode::SUCCESS)
}

/// What to try first with the demo running, printed under the banner.
fn print_demo_steps(base: &str, data: &std::path::Path, ground_truth: &std::path::Path) {
    use std::io::Write as _;
    let data = data.display();
    // Whoever started the demo may have stopped reading once it served: a closed standard
    // output must not stop the server.
    let _ = writeln!(
        std::io::stdout(),
        "\nOpen {root}/ in a browser: the HIM workbench (the demo acts as an administrator).\n\
Try this (in another terminal):\n\
         \x20 curl -s '{base}/Patient?_count=3&_summary=true'                  # patients, with Bundle.total\n\
         \x20 curl -s '{base}/Patient/pat-000001/$everything'                 # one patient's whole record\n\
         \x20 curl -s '{base}/Observation?code=http://loinc.org|8867-4&_count=5' # heart rates\n\
         \x20 chartroom dq --data {data} --format html --out dq.html             # data-quality report\n\
         \x20 chartroom view run patients --data {data} --format csv             # a table of patients\n\
         \x20 chartroom sql --data {data} \"SELECT gender, count(*) FROM patients GROUP BY gender\"\n\
         \x20 chartroom coding worklist --data {data}                            # encounters to code\n\
         \x20 chartroom audit report --data {data}                               # accesses to look at\n\
         \x20 chartroom surveil run --data {data} --format html --out outbreaks.html # unusual counts by city\n\
         \x20 chartroom cohort example > study.json                              # a study of two treatments;\n\
         \x20 chartroom cohort compare --data {data} --study study.json --format html --out cohort.html\n\
         The reports read beside the running server. What the population has planted (defects,\n\
         duplicate registrations, outbreaks, a treatment cohort, readmissions) is listed in\n\
         {}; `chartroom --help` lists every command.\n",
        ground_truth.display(),
        root = base.strip_suffix("/fhir").unwrap_or(base)
    );
}

/// An outside authorization server's discovery document and the endpoints it names, from
/// `--smart-configuration`.
fn outside_authorization_server(args: &ServeArgs) -> Result<Option<(serde_json::Value, api::OAuthUris)>> {
    let Some(file) = &args.smart_configuration else { return Ok(None) };
    if args.jwks_file.is_none() && args.jwt_hs256_secret_file.is_none() {
        anyhow::bail!("--smart-configuration needs --jwks-file: the outside server's tokens must be checked");
    }
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let document: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let endpoint = |name: &str| -> Result<String> {
        document[name]
            .as_str()
            .filter(|uri| uri.starts_with("https://") || uri.starts_with("http://"))
            .map(str::to_string)
            .with_context(|| format!("{}: {name} must be an absolute URL", file.display()))
    };
    let uris = api::OAuthUris {
        authorize: endpoint("authorization_endpoint")?,
        token: endpoint("token_endpoint")?,
        introspect: document["introspection_endpoint"].as_str().map(str::to_string),
        revoke: document["revocation_endpoint"].as_str().map(str::to_string),
    };
    Ok(Some((document, uris)))
}

/// The JWTs `serve` accepts, from its flags (`None`: API tokens only).
fn jwt_verifier(args: &ServeArgs) -> Result<Option<privacy::jwt::Verifier>> {
    if args.jwt_hs256_secret_file.is_none() && args.jwks_file.is_none() {
        if args.jwt_issuer.is_some() || args.jwt_audience.is_some() {
            anyhow::bail!("--jwt-issuer and --jwt-audience need --jwks-file or --jwt-hs256-secret-file");
        }
        return Ok(None);
    }
    let mut verifier = privacy::jwt::Verifier::default();
    if let Some(file) = &args.jwt_hs256_secret_file {
        let secret = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let trimmed = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
        verifier = verifier.with_hs256(privacy::jwt::Hs256::new(&trimmed)?);
    }
    if let Some(file) = &args.jwks_file {
        verifier = verifier.with_jwks(privacy::jwt::Jwks::load(file)?);
    }
    if let Some(issuer) = &args.jwt_issuer {
        verifier = verifier.with_issuer(issuer);
    }
    if let Some(audience) = &args.jwt_audience {
        verifier = verifier.with_audience(audience);
    }
    Ok(Some(verifier))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn import(args: ImportArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let record = args.store.open(SyncMode::Normal)?;
    let store = record.store();
    ensure_index(store.as_ref())?;
    let validation = args.validation.mode();
    let api = Api::new(store.clone(), ApiConfig { validation, ..ApiConfig::default() });
    let mut options = api::import::ImportOptions { validation, ..Default::default() };
    if let Some(workers) = args.workers {
        options.workers = workers;
    }
    options.bundles = match args.bundles {
        BundlesArg::Execute => api::import::BundleMode::Execute,
        BundlesArg::Store => api::import::BundleMode::Store,
    };
    let mut report = run_import(&api, &args.path, &options, args.quiet)?;
    // Closing checkpoints the log into the database and syncs it: only then is the import
    // durable, so its time counts.
    record.close();
    report.elapsed = started.elapsed();
    for rejection in &report.rejections {
        eprintln!("{rejection}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let with_issues = if validation == api::Validation::Warn {
        format!(
            ", {} stored with validation issues{}",
            report.stored_with_issues,
            if report.stored_with_issues > 0 { " (listed above; `chartroom dq` counts them)" } else { "" }
        )
    } else {
        String::new()
    };
    println!(
        "imported {} resources from {} files, rejected {}{with_issues}, in {:.2} s ({:.0} resources/s)",
        report.imported,
        report.files,
        report.rejections.len(),
        report.elapsed.as_secs_f64(),
        report.resources_per_second()
    );
    Ok(if report.rejections.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn reindex(args: ReindexArgs) -> Result<ExitCode> {
    let record = args.store.open_existing(SyncMode::Normal)?;
    rebuild_index(record.store().as_ref())?;
    record.close();
    Ok(ExitCode::SUCCESS)
}

fn migrate(args: ReindexArgs) -> Result<ExitCode> {
    let record = args.store.open(SyncMode::Full)?;
    let store = record.store();
    ensure_index(store.as_ref())?;
    let live = store.count_live().context("cannot count the stored resources")?;
    println!(
        "the record in {} is at this version's schema ({live} live resources)",
        record.describe(&args.store.data)
    );
    record.close();
    Ok(ExitCode::SUCCESS)
}

/// An index written by another build cannot answer searches: rebuild it before serving.
fn ensure_index(store: &dyn store::Store) -> Result<()> {
    if store.index_is_stale() {
        eprintln!("the search index was built by a different version; rebuilding it");
        rebuild_index(store)?;
    }
    Ok(())
}

fn rebuild_index(store: &dyn store::Store) -> Result<()> {
    let started = std::time::Instant::now();
    let count = store.reindex().context("reindex failed")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "reindexed {count} resources in {seconds:.2} s ({:.0} resources/s)",
        count as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Runs an import with a progress bar showing resources/s.
fn run_import(
    api: &Api,
    path: &Path,
    options: &api::import::ImportOptions,
    quiet: bool,
) -> Result<api::import::ImportReport> {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} resources  {per_sec}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report =
        api::import::import(api, path, options, &|n| bar.inc(n)).map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    Ok(report)
}
