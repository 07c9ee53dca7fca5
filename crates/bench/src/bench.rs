//! `chartroom-bench`: import throughput and read latency/throughput, measured the way clients
//! see them (the real import path; real HTTP over loopback).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig};
use store::{SqliteStore, StoreOptions, Synchronous};

use crate::fixture;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: BenchKind,
}

#[derive(clap::Subcommand)]
enum BenchKind {
    /// NDJSON import throughput on generated data (fresh data directory each run).
    Import {
        /// Resources to generate and import.
        #[arg(long, default_value_t = 200_000)]
        resources: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Sync every commit (synchronous=FULL), as `serve` does, instead of once at the end
        /// as `import` does.
        #[arg(long)]
        sync_full: bool,
        /// Working directory (default: a temporary one, removed afterwards).
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// GET Patient/[id] over HTTP: single-client latency, then throughput with many connections.
    Read {
        /// Patients in the store (25 resources each are loaded).
        #[arg(long, default_value_t = 10_000)]
        patients: usize,
        /// Sequential requests for the latency measurement.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent keep-alive connections for the throughput measurement.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds of the throughput measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Measure a running server at this address (host:port) instead of starting one; it
        /// must already hold patients pat-00000000.. as loaded by this benchmark.
        #[arg(long)]
        target: Option<String>,
        /// Keep the server running after the measurement until interrupted (for wrk/oha).
        #[arg(long)]
        hold: bool,
        /// Serve as `chartroom serve` does, a bearer token on every request and every access
        /// audited, beside an open server over the same store: the throughput of the two is
        /// measured in alternating rounds and the cost of security printed.
        #[arg(long)]
        secure: bool,
    },
    /// Per-resource cost of each step of a write before the store: parse, check, serialize,
    /// extract the search index (single thread, generated resources).
    Prepare {
        #[arg(long, default_value_t = 50_000)]
        resources: usize,
    },
    /// Code-suggestion quality: every EVERY-th ICD-10-CM inclusion term is left out of the
    /// index and used as a query; prints top-1 and top-5 accuracy.
    Suggest {
        #[arg(long, default_value_t = 10)]
        every: usize,
        /// Instead, measure on the clinical notes of a generated population (`chartroom
        /// generate --out DIR`) against the codes of each encounter's claim.
        #[arg(long)]
        notes: Option<PathBuf>,
        /// Most notes to read with --notes.
        #[arg(long, default_value_t = 5000)]
        max_notes: usize,
        /// Instead, measure on hand-coded clinical statements (tab-separated: statement,
        /// code, sex, age, note; e.g. crates/suggest/tests/data/clinical-statements.tsv).
        #[arg(long, conflicts_with = "notes")]
        statements: Option<PathBuf>,
        /// Misses to print.
        #[arg(long, default_value_t = 10)]
        misses: usize,
    },
    /// In-process latency of $lookup, $validate-code and $expand (text filter over all of
    /// ICD-10-CM).
    Terminology {
        /// Calls of each kind.
        #[arg(long, default_value_t = 5000)]
        requests: usize,
    },
    /// SQL on FHIR: resources per second through the built-in views (a generated population
    /// of about a million resources by default), on one core and on all.
    Views(crate::views_bench::ViewsBenchArgs),
    /// Search latency over HTTP with a large generated population: token, date range, chain,
    /// _revinclude, _sort and $everything (first pages), after a timed import.
    Search(crate::search_bench::SearchBenchArgs),
    /// The workbench's pages over HTTP with a large generated population: the server's time
    /// for each page, p50 and p99.
    Workbench(crate::workbench_bench::WorkbenchBenchArgs),
    /// Outbreak early warning and treatment comparison: syndrome counting, surveillance and
    /// cohort studies over a large generated record, every aberration-detection method over
    /// many long series, and R's surveillance and lifelines on the same input.
    Analytics(crate::analytics_bench::AnalyticsBenchArgs),
    /// Duplicate patients: a large register (a million people by default, a share of them
    /// registered twice with planted errors) deduplicated end to end, with peak memory.
    Mpi(crate::mpi_bench::MpiBenchArgs),
    /// Comorbidity indices (Charlson, Elixhauser, HFRS) for a large population (a million
    /// patients by default), on one core and on all.
    Risk(crate::risk_bench::RiskBenchArgs),
    /// Reads and writes from many clients against `chartroom serve`, killed with SIGKILL and
    /// restarted part way; then checks acknowledged writes, version histories and the audit
    /// trail. `--read-cost`: reads under strict against fast audit durability.
    Mixed(crate::mixed_bench::MixedArgs),
    /// HL7 v2 over MLLP: 10,000 ADT and ORU messages from concurrent senders, each
    /// acknowledged before the next, then checked to be in the record.
    Hl7(crate::hl7_bench::Hl7BenchArgs),
    /// Bulk Data round trip: `$export` from one server, `$import` over HTTP into a fresh one
    /// (100,000 resources by default), then every resource compared.
    Roundtrip(crate::roundtrip_bench::RoundTripArgs),
    /// FHIRPath evaluations per second: every R4 SearchParameter expression on every
    /// specification example of its resource types (the workload bench/fhirpath-js runs too).
    Fhirpath {
        /// The FHIR R4 package folder (with definitions/ and examples/).
        #[arg(long, default_value = "../shared/fhir-r4")]
        fhir_dir: PathBuf,
        /// Seconds to measure.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// A file of pair indices (one per line) to leave out, so that another engine's
        /// timing covers the same work.
        #[arg(long)]
        exclude_pairs: Option<PathBuf>,
    },
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.kind {
        BenchKind::Import { resources, runs, sync_full, work } => {
            bench_import(resources, runs.max(1), !sync_full, work)
        }
        BenchKind::Read { patients, requests, connections, seconds, target, hold, secure } => {
            bench_read(patients, requests, connections.max(1), seconds, target, hold, secure)
        }
        BenchKind::Prepare { resources } => bench_prepare(resources),
        BenchKind::Search(args) => crate::search_bench::run(args),
        BenchKind::Workbench(args) => crate::workbench_bench::run(args),
        BenchKind::Analytics(args) => crate::analytics_bench::run(args),
        BenchKind::Mpi(args) => crate::mpi_bench::run_bench(args),
        BenchKind::Risk(args) => crate::risk_bench::run(args),
        BenchKind::Mixed(args) => crate::mixed_bench::run(args),
        BenchKind::Hl7(args) => crate::hl7_bench::run(args),
        BenchKind::Roundtrip(args) => crate::roundtrip_bench::run(args),
        BenchKind::Views(args) => crate::views_bench::run(args),
        BenchKind::Terminology { requests } => crate::terminology_bench::bench_terminology(requests),
        BenchKind::Suggest { statements: Some(file), misses, .. } => {
            crate::terminology_bench::bench_suggest_statements(&file, misses)
        }
        BenchKind::Suggest { notes: Some(dir), max_notes, misses, .. } => {
            crate::terminology_bench::bench_suggest_notes(&dir, max_notes, misses)
        }
        BenchKind::Suggest { every, misses, .. } => crate::terminology_bench::bench_suggest(every, misses),
        BenchKind::Fhirpath { fhir_dir, seconds, exclude_pairs } => {
            bench_fhirpath(&fhir_dir, seconds, exclude_pairs.as_deref())
        }
    }
}

pub(crate) struct WorkDir {
    pub(crate) path: PathBuf,
    remove: bool,
}

impl WorkDir {
    pub(crate) fn new(given: Option<PathBuf>, name: &str) -> Result<Self> {
        let (path, remove) = match given {
            Some(path) => (path, false),
            None => {
                (std::env::temp_dir().join(format!("chartroom-bench-{name}-{}", std::process::id())), true)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir { path, remove })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cores} cores, {cpu}")
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

pub(crate) fn open_store(dir: &Path, sync_normal: bool) -> Result<Arc<SqliteStore>> {
    let options = StoreOptions {
        synchronous: if sync_normal { Synchronous::Normal } else { Synchronous::Full },
        ..StoreOptions::default()
    };
    Ok(Arc::new(SqliteStore::open(dir, options)?))
}

fn bench_import(resources: usize, runs: usize, sync_normal: bool, work: Option<PathBuf>) -> Result<ExitCode> {
    let work = WorkDir::new(work, "import")?;
    let input = work.path.join("ndjson");
    let counts = fixture::write_ndjson(&input, resources, 42)?;
    println!("machine: {}", machine());
    println!(
        "input: {} resources ({} patients) in {:.1} MiB of NDJSON; synchronous={} (timed until the store is closed and synced)",
        counts.total,
        counts.patients,
        dir_size(&input) as f64 / 1048576.0,
        if sync_normal { "NORMAL" } else { "FULL" }
    );
    let mut rates = Vec::new();
    for run in 1..=runs {
        let data = work.path.join(format!("data-{run}"));
        let _ = std::fs::remove_dir_all(&data);
        let started = Instant::now();
        let store = open_store(&data, sync_normal)?;
        let api = Api::new(store.clone(), ApiConfig::default());
        let mut report = api::import::import(&api, &input, &api::import::ImportOptions::default(), &|_| {})
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        store.close();
        report.elapsed = started.elapsed();
        if !report.rejections.is_empty() {
            bail!("{} resources were rejected, first: {}", report.rejections.len(), report.rejections[0]);
        }
        println!(
            "run {run}: {} resources in {:.2} s = {:.0} resources/s (store {:.1} MiB)",
            report.imported,
            report.elapsed.as_secs_f64(),
            report.resources_per_second(),
            dir_size(&data) as f64 / 1048576.0
        );
        rates.push(report.resources_per_second());
        let _ = std::fs::remove_dir_all(&data);
    }
    rates.sort_by(f64::total_cmp);
    println!("import median: {:.0} resources/s", rates[rates.len() / 2]);
    Ok(ExitCode::SUCCESS)
}

/// A minimal HTTP/1.1 keep-alive client: precise timing without a client library's overhead.
pub(crate) struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
    pub(crate) body: Vec<u8>,
    /// `Authorization: Bearer ...` (or `Cookie: ...`) line sent with each request, if any.
    authorization: String,
    /// The last response's `Set-Cookie`, if it had one (name=value only).
    pub(crate) set_cookie: Option<String>,
}

impl HttpClient {
    pub(crate) fn connect(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        Ok(HttpClient {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
            host: address.to_string(),
            body: Vec::with_capacity(8192),
            authorization: String::new(),
            set_cookie: None,
        })
    }

    /// Sends `token` as a bearer token with every request.
    pub(crate) fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        self
    }

    /// Sends `cookie` (`name=value`) with every request, as a browser would.
    pub(crate) fn with_cookie(mut self, cookie: &str) -> Self {
        self.authorization = format!("Cookie: {cookie}\r\n");
        self
    }

    /// GETs `path`; returns the status.
    pub(crate) fn get(&mut self, path: &str) -> Result<u16> {
        write!(
            self.writer,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\n{}\r\n",
            self.host, self.authorization
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("set-cookie") {
                    self.set_cookie = value.trim().split(';').next().map(str::to_string);
                }
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok(status)
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn bench_read(
    patients: usize,
    requests: usize,
    connections: usize,
    seconds: u64,
    target: Option<String>,
    hold: bool,
    secure: bool,
) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(None, "read")?;
    let mut background = None;
    // The server measured, and when comparing, the secured one beside it with its token.
    let mut secured: Option<(SocketAddr, String, Arc<server::Security>)> = None;
    let address: SocketAddr = match target {
        Some(target) => target.parse().context("--target must be host:port")?,
        None => {
            let input = work.path.join("ndjson");
            let counts = fixture::write_ndjson(&input, patients * 25, 7)?;
            let store = open_store(&work.path.join("data"), false)?;
            let api = Arc::new(Api::new(store.clone(), ApiConfig::default()));
            let report = api::import::import(&api, &input, &api::import::ImportOptions::default(), &|_| {})
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("loaded {} resources ({} patients)", report.imported, counts.patients);
            let runtime = crate::runtime()?;
            let listen = || -> Result<(tokio::net::TcpListener, SocketAddr)> {
                let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
                let address = listener.local_addr()?;
                Ok((listener, address))
            };
            let (listener, address) = listen()?;
            let router = server::router(api.clone(), server::ServerConfig::default());
            runtime.spawn(async move {
                let _ = server::serve(listener, router, std::future::pending()).await;
            });
            if secure {
                let privacy_dir = work.path.join("data");
                let users = privacy::Users::open(&privacy_dir)?;
                let token = users.add("bench", privacy::Role::Clinician, None, None)?;
                let security = Arc::new(server::Security::open(&privacy_dir)?);
                let config = server::ServerConfig {
                    security: Some(security.clone()),
                    ..server::ServerConfig::default()
                };
                let (listener, secure_address) = listen()?;
                let router = server::router(api, config);
                runtime.spawn(async move {
                    let _ = server::serve(listener, router, std::future::pending()).await;
                });
                secured = Some((secure_address, token, security));
                println!(
                    "secured beside open: a clinician's bearer token on every request, every access audited"
                );
            }
            background = Some((runtime, store));
            address
        }
    };
    let label = |secure: bool| if secure { "secured" } else { "open" };
    let mut servers = vec![(address, None::<String>, false)];
    if let Some((address, token, _)) = &secured {
        servers.push((*address, Some(token.clone()), true));
    }
    for (address, token, is_secure) in &servers {
        let latencies = read_latencies(*address, token.as_deref(), patients, requests)?;
        println!(
            "GET Patient/[id], {}, 1 client, {requests} requests: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            label(*is_secure),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.9).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
    }
    // Alternating rounds, so that whatever else the machine does falls on both alike.
    let rounds = if servers.len() > 1 { 3 } else { 1 };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    for _ in 0..rounds {
        for (i, (address, token, is_secure)) in servers.iter().enumerate() {
            let (rate, errors) = read_throughput(*address, token.as_deref(), patients, connections, seconds);
            println!(
                "GET Patient/[id], {}, {connections} connections, {seconds} s: {rate:.0} requests/s ({errors} errors)",
                label(*is_secure)
            );
            rates[i].push(rate);
            // The audit index is written while the writer is idle: let it finish (and say how
            // long it took) so that it does not run into the next round.
            if *is_secure && let Some((_, _, security)) = &secured {
                let started = Instant::now();
                security.audit.flush();
                println!(
                    "  audit trail committed and indexed {:.2} s after the round",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    if rates.len() > 1 {
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let (open, secure) = (median(&mut rates[0].clone()), median(&mut rates[1].clone()));
        println!(
            "median of {rounds} rounds: open {open:.0} requests/s, secured {secure:.0} requests/s: authentication + audit cost {:.1}% of throughput",
            (1.0 - secure / open) * 100.0
        );
    }
    if hold {
        println!("server still running at http://{address}/fhir (Ctrl-C to stop)");
        if let Some((runtime, _)) = &background {
            runtime.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
        }
    }
    if let Some((runtime, store)) = background {
        runtime.shutdown_timeout(Duration::from_secs(1));
        store.close();
    }
    Ok(ExitCode::SUCCESS)
}

fn patient_path(i: usize, patients: usize) -> String {
    format!("/fhir/Patient/pat-{:08}", i % patients.max(1))
}

/// One client, sequential requests (after a warm-up), sorted.
fn read_latencies(
    address: SocketAddr,
    token: Option<&str>,
    patients: usize,
    requests: usize,
) -> Result<Vec<Duration>> {
    let mut client = HttpClient::connect(address)?.with_token(token);
    for i in 0..1000.min(requests) {
        client.get(&patient_path(i * 7919, patients))?;
    }
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        let path = patient_path(i * 104_729, patients);
        let started = Instant::now();
        let status = client.get(&path)?;
        latencies.push(started.elapsed());
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// Requests per second (and errors) from `connections` keep-alive clients for `seconds`.
fn read_throughput(
    address: SocketAddr,
    token: Option<&str>,
    patients: usize,
    connections: usize,
    seconds: u64,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
            let token = token.map(str::to_string);
            std::thread::spawn(move || {
                let Ok(client) = HttpClient::connect(address) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut client = client.with_token(token.as_deref());
                let mut i = c * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    i += 7919;
                    match client.get(&patient_path(i, patients)) {
                        Ok(200) => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for thread in threads {
        let _ = thread.join();
    }
    (done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(), errors.load(Ordering::Relaxed))
}

/// The FHIRPath benchmark's expressions, resources, and (expression, resource) pairs.
struct FhirpathWorkload {
    expressions: Vec<fhirpath::Expression>,
    examples: Vec<serde_json::Value>,
    pairs: Vec<(usize, usize)>,
}

fn fhirpath_workload(fhir_dir: &Path) -> Result<FhirpathWorkload> {
    let read = |path: PathBuf| -> Result<serde_json::Value> {
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let bundle = read(fhir_dir.join("definitions/search-parameters.json"))?;
    let mut examples = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(fhir_dir.join("examples"))?.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        examples.push(read(file)?);
    }
    let mut expressions = Vec::new();
    let mut pairs = Vec::new();
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let parameter = &entry["resource"];
        let Some(text) = parameter["expression"].as_str() else { continue };
        let expression = fhirpath::Expression::parse(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
        let bases: Vec<&str> =
            parameter["base"].as_array().into_iter().flatten().filter_map(|b| b.as_str()).collect();
        let index = expressions.len();
        expressions.push(expression);
        for (e, example) in examples.iter().enumerate() {
            let resource_type = example["resourceType"].as_str().unwrap_or("");
            if bases.contains(&resource_type)
                || bases.contains(&"Resource")
                || bases.contains(&"DomainResource")
            {
                pairs.push((index, e));
            }
        }
    }
    Ok(FhirpathWorkload { expressions, examples, pairs })
}

fn bench_fhirpath(fhir_dir: &Path, seconds: u64, exclude: Option<&Path>) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let FhirpathWorkload { expressions, examples, mut pairs } = fhirpath_workload(fhir_dir)?;
    let all = pairs.len();
    if let Some(exclude) = exclude {
        let text =
            std::fs::read_to_string(exclude).with_context(|| format!("cannot read {}", exclude.display()))?;
        let excluded: std::collections::HashSet<usize> =
            text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pairs =
            pairs.into_iter().enumerate().filter(|(i, _)| !excluded.contains(i)).map(|(_, p)| p).collect();
    }
    let env = fhirpath::Environment::default();
    let pass = || -> Result<usize> {
        let mut items = 0;
        for (e, r) in &pairs {
            items +=
                expressions[*e].evaluate(&examples[*r], &env).map_err(|err| anyhow::anyhow!("{err}"))?.len();
        }
        Ok(items)
    };
    let items = pass()?;
    println!(
        "workload: {} search parameter expressions x matching examples = {all} pairs; {} timed, {items} result items",
        expressions.len(),
        pairs.len()
    );
    let started = Instant::now();
    let mut passes = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        pass()?;
        passes += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_second = (passes as f64 * pairs.len() as f64) / elapsed;
    println!("chartroom fhirpath: {passes} passes in {elapsed:.2} s = {per_second:.0} evaluations/s");
    Ok(ExitCode::SUCCESS)
}

fn bench_prepare(resources: usize) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(None, "prepare")?;
    fixture::write_ndjson(&work.path, resources, 42)?;
    let mut lines = Vec::new();
    for file in ["Patient.ndjson", "Encounter.ndjson", "Observation.ndjson", "Condition.ndjson"] {
        lines.extend(std::fs::read_to_string(work.path.join(file))?.lines().map(str::to_string));
    }
    let time = |label: &str, f: &mut dyn FnMut() -> usize| {
        let started = Instant::now();
        let count = f();
        let per = started.elapsed().as_secs_f64() * 1e6 / lines.len() as f64;
        println!("{label:<28} {per:>7.1} us/resource ({count})");
    };
    let parsed: Vec<fhir::Resource> = lines
        .iter()
        .map(|l| fhir::Resource::from_slice(l.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    time("parse (strict JSON)", &mut || {
        lines.iter().filter(|l| fhir::Resource::from_slice(l.as_bytes()).is_ok()).count()
    });
    time("check reference formats", &mut || {
        parsed.iter().filter(|r| r.check_reference_formats().is_ok()).count()
    });
    let validator = validation::Validator::r4();
    validator.validate(parsed[0].as_json());
    time("validate (R4 definitions)", &mut || {
        parsed.iter().filter(|r| !validation::has_errors(&validator.validate(r.as_json()))).count()
    });
    time("extract search index", &mut || parsed.iter().map(|r| store::index::extract(r).len()).sum());
    time("prepare (serialize+extract)", &mut || {
        parsed.iter().filter(|r| store::PreparedResource::new(r).is_ok()).count()
    });
    Ok(ExitCode::SUCCESS)
}
