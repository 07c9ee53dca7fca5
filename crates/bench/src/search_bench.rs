//! `chartroom-bench search`: first-page latency of the searches HIM staff run all day, over
//! HTTP against a store of generated patients, after timing the import that built it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig};

use crate::bench::{HttpClient, WorkDir, dir_size, machine, open_store, percentile};
use crate::fixture;

#[derive(clap::Args)]
pub struct SearchBenchArgs {
    /// Resources to generate and import (25 per patient).
    #[arg(long, default_value_t = 1_000_000)]
    resources: usize,
    /// Measured requests per search kind (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Working directory. A data directory already loaded there by an earlier run with the
    /// same --resources is reused (the import is then not timed again).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Matches counted for `Bundle.total` when a search does not say `_total` (the server's
    /// default; 0 counts nothing beyond a first page that holds every match).
    #[arg(long, default_value_t = ApiConfig::default().total_bound)]
    total_bound: usize,
    /// Keep the record in PostgreSQL (`postgres://...`) instead of SQLite: the same import,
    /// server and searches, for the two backends side by side. A schema already holding the
    /// population (an earlier run with the same --resources) is reused.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema (made when missing).
    #[arg(long, default_value = "bench_search", requires = "store")]
    store_schema: String,
}

/// A search kind and how to build its n-th request.
struct Kind {
    label: &'static str,
    path: Box<dyn Fn(u64) -> String>,
}

/// Deterministic spread over the population for the n-th request.
fn spread(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}

fn kinds(patients: u64) -> Vec<Kind> {
    let vitals = fixture::VITALS;
    let families = fixture::FAMILY;
    vec![
        Kind {
            label: "token      Observation?code=http://loinc.org|{code}",
            path: Box::new(move |n| {
                let code = vitals[(spread(n) % vitals.len() as u64) as usize].0;
                format!("/fhir/Observation?code=http%3A%2F%2Floinc.org%7C{code}")
            }),
        },
        Kind {
            label: "date range Observation?date=ge{day}&date=lt{day+7}",
            path: Box::new(|n| {
                let day = spread(n) % 3500;
                let start = fhir::DateTime::from_epoch_millis((1_420_070_400 + day as i64 * 86_400) * 1000);
                let end =
                    fhir::DateTime::from_epoch_millis((1_420_070_400 + (day as i64 + 7) * 86_400) * 1000);
                format!(
                    "/fhir/Observation?date=ge{}&date=lt{}",
                    &start.to_string()[..10],
                    &end.to_string()[..10]
                )
            }),
        },
        Kind {
            label: "chain      Observation?subject.name={family}",
            path: Box::new(move |n| {
                format!(
                    "/fhir/Observation?subject.name={}",
                    families[(spread(n) % families.len() as u64) as usize].replace('\'', "%27")
                )
            }),
        },
        Kind {
            label: "chain      Observation?subject:Patient.identifier={mrn}",
            path: Box::new(move |n| {
                format!(
                    "/fhir/Observation?subject:Patient.identifier=http%3A%2F%2Fhospital.example.org%2Fmrn%7CMRN{:08}",
                    spread(n) % patients
                )
            }),
        },
        Kind {
            label: "_revinclude Patient?identifier={mrn}&_revinclude=Observation:subject",
            path: Box::new(move |n| {
                format!(
                    "/fhir/Patient?identifier=http%3A%2F%2Fhospital.example.org%2Fmrn%7CMRN{:08}&_revinclude=Observation:subject",
                    spread(n) % patients
                )
            }),
        },
        Kind {
            label: "_sort      Observation?code={code}&_sort=-date",
            path: Box::new(move |n| {
                let code = vitals[(spread(n) % vitals.len() as u64) as usize].0;
                format!("/fhir/Observation?code=http%3A%2F%2Floinc.org%7C{code}&_sort=-date")
            }),
        },
        Kind {
            label: "_sort      Patient?name={family}&_sort=birthdate",
            path: Box::new(move |n| {
                format!(
                    "/fhir/Patient?name={}&_sort=birthdate",
                    families[(spread(n) % families.len() as u64) as usize].replace('\'', "%27")
                )
            }),
        },
        Kind {
            label: "$everything Patient/{id}/$everything",
            path: Box::new(move |n| format!("/fhir/Patient/pat-{:08}/$everything", spread(n) % patients)),
        },
    ]
}

/// The data directory holding `resources` generated resources under `work`: loaded by an
/// earlier run (reused), or generated and imported now (the import timed and printed).
pub(crate) fn load(work: &std::path::Path, resources: usize) -> Result<PathBuf> {
    let data = work.join(format!("data-{resources}"));
    if data.join("bench-loaded").exists() {
        println!("reusing the store loaded earlier in {}", data.display());
        return Ok(data);
    }
    let _ = std::fs::remove_dir_all(&data);
    let store = open_store(&data, true)?;
    import_population(work, resources, store.clone(), || store.close())?;
    std::fs::write(data.join("bench-loaded"), b"")?;
    Ok(data)
}

/// The PostgreSQL record holding `resources` generated resources in `options.schema`: loaded
/// by an earlier run (reused when it holds as many), or generated and imported now.
fn load_postgres(work: &std::path::Path, resources: usize, options: &store::PostgresOptions) -> Result<()> {
    let opened = store::PostgresStore::open(options.clone()).context("cannot open the PostgreSQL record")?;
    let live = store::Store::count_live(&opened).context("cannot count resources")?;
    opened.close();
    drop(opened);
    if live >= resources as u64 {
        println!("reusing the {live} resources loaded earlier in schema {}", options.schema);
        return Ok(());
    }
    store::PostgresStore::drop_schema(options).context("cannot drop the earlier schema")?;
    let store =
        Arc::new(store::PostgresStore::open(options.clone()).context("cannot open the PostgreSQL record")?);
    import_population(work, resources, store.clone(), || store.close())
}

/// Generates `resources` resources and imports them into `store` through the real import
/// path, timed until `close` (which closes the store) returns.
fn import_population(
    work: &std::path::Path,
    resources: usize,
    store: Arc<dyn store::Store>,
    close: impl FnOnce(),
) -> Result<()> {
    let input = work.join("ndjson");
    let _ = std::fs::remove_dir_all(&input);
    let counts = fixture::write_ndjson(&input, resources, 42)?;
    println!(
        "input: {} resources ({} patients), {:.0} MiB of NDJSON",
        counts.total,
        counts.patients,
        dir_size(&input) as f64 / 1048576.0
    );
    let started = Instant::now();
    let api = Api::new(store.clone(), ApiConfig::default());
    let report = api::import::import(&api, &input, &api::import::ImportOptions::default(), &|_| {})
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(api);
    close();
    let elapsed = started.elapsed();
    if !report.rejections.is_empty() {
        bail!("{} resources were rejected, first: {}", report.rejections.len(), report.rejections[0]);
    }
    println!(
        "import with full indexing: {} resources in {:.1} s = {:.0} resources/s",
        report.imported,
        elapsed.as_secs_f64(),
        report.imported as f64 / elapsed.as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&input);
    Ok(())
}

pub fn run(args: SearchBenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(args.work, "search")?;
    let patients = (args.resources / 25).max(1) as u64;
    let store: Arc<dyn store::Store> = match &args.store {
        Some(url) => {
            let options = store::PostgresOptions {
                schema: args.store_schema.clone(),
                ..store::PostgresOptions::new(url)
            };
            load_postgres(&work.path, args.resources, &options)?;
            println!("record: PostgreSQL schema {}", options.schema);
            Arc::new(store::PostgresStore::open(options).context("cannot open the PostgreSQL record")?)
        }
        None => {
            let data = load(&work.path, args.resources)?;
            println!("record: SQLite, {:.0} MiB", dir_size(&data) as f64 / 1048576.0);
            open_store(&data, false)?
        }
    };
    crate::ensure_index(store.as_ref())?;
    let api = Arc::new(Api::new(
        store.clone(),
        ApiConfig { total_bound: args.total_bound, ..ApiConfig::default() },
    ));
    let runtime = crate::runtime()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address: SocketAddr = listener.local_addr()?;
    let router = server::router(api, server::ServerConfig::default());
    runtime.spawn(async move {
        let _ = server::serve(listener, router, std::future::pending()).await;
    });
    let mut client = HttpClient::connect(address)?;
    println!(
        "{} resources; first page (_count default 50), 1 client over HTTP, {} requests per kind, totals counted up to {}:",
        store_count(&store)?,
        args.requests,
        args.total_bound
    );
    let mut worst_p99 = Duration::ZERO;
    for kind in kinds(patients) {
        let warm_up = (args.requests / 10).max(1) as u64;
        for n in 0..warm_up {
            let path = (kind.path)(n + 1_000_000);
            client.get(&path)?;
        }
        let mut latencies = Vec::with_capacity(args.requests);
        let mut entries = 0usize;
        let mut with_total = 0usize;
        for n in 0..args.requests as u64 {
            let path = (kind.path)(n);
            let started = Instant::now();
            let status = client.get(&path)?;
            latencies.push(started.elapsed());
            if status != 200 {
                bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&client.body));
            }
            entries += count_entries(&client.body);
            with_total += usize::from(has_total(&client.body));
        }
        latencies.sort();
        let p99 = percentile(&latencies, 0.99);
        worst_p99 = worst_p99.max(p99);
        println!(
            "  {:<72} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({:.1} entries/page, total on {}%)",
            kind.label,
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            entries as f64 / args.requests as f64,
            100 * with_total / args.requests.max(1)
        );
    }
    println!("worst p99: {:.2} ms", worst_p99.as_secs_f64() * 1e3);
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(store);
    Ok(ExitCode::SUCCESS)
}

/// Whether a searchset says `total` (near its start, where the writer puts it).
fn has_total(body: &[u8]) -> bool {
    body.windows(8).take(400).any(|w| w == b"\"total\":")
}

fn store_count(store: &Arc<dyn store::Store>) -> Result<u64> {
    store.count_live().context("cannot count resources")
}

/// Entries in a searchset Bundle, counted without parsing the resources.
fn count_entries(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|bundle| bundle.get("entry").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0)
}
