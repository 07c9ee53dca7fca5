//! `chartroom bench views`: how fast the built-in SQL on FHIR views flatten a large generated
//! record into Arrow batches, on one core and on all.
//!
//! The population is generated to a work directory, one resource type at a time is parsed into
//! memory (parsing is timed apart), and every built-in view over that type is run over it:
//! once on one thread, then with the resources split across all cores (one runner per thread
//! and view). A resource counts once per view it goes through; each view is run `--rounds`
//! times each way and its fastest run counts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::Value as Json;

#[derive(clap::Args)]
pub struct ViewsBenchArgs {
    /// Patients to generate (about 125 resources each).
    #[arg(long, default_value_t = 8_200)]
    patients: usize,
    /// Work directory for the generated NDJSON (kept for reruns when it already holds a
    /// population of this size).
    #[arg(long, default_value = "/tmp/chartroom-bench-views")]
    work: PathBuf,
    /// Threads for the parallel run (all cores by default).
    #[arg(long)]
    threads: Option<usize>,
    /// Times each view is run each way; the fastest run counts (the machine's speed varies
    /// from second to second, the work does not).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these built-in views (all by default).
    #[arg(long = "view")]
    views: Vec<String>,
}

struct Timing {
    resources: u64,
    rows: u64,
    elapsed: Duration,
}

fn flatten(view: &sof::ViewDefinition, resources: &[Json]) -> Result<(u64, u64)> {
    let mut runner = sof::Runner::new(view, sof::DEFAULT_BATCH_SIZE);
    let mut rows = 0u64;
    for resource in resources {
        for batch in runner.push(resource)? {
            rows += batch.num_rows() as u64;
        }
    }
    if let Some(batch) = runner.finish()? {
        rows += batch.num_rows() as u64;
    }
    Ok((resources.len() as u64, rows))
}

fn flatten_parallel(view: &sof::ViewDefinition, resources: &[Json], threads: usize) -> Result<(u64, u64)> {
    let chunk = resources.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            resources.chunks(chunk).map(|part| scope.spawn(move || flatten(view, part))).collect();
        let mut total = (0, 0);
        for handle in handles {
            let (resources, rows) = handle.join().map_err(|_| anyhow!("a flattening thread panicked"))??;
            total.0 += resources;
            total.1 += rows;
        }
        Ok(total)
    })
}

pub fn run(args: ViewsBenchArgs) -> Result<ExitCode> {
    println!("{}", crate::bench::machine());
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let marker = args.work.join(format!(".patients-{}", args.patients));
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&args.work);
        let started = Instant::now();
        let options = synth::GenerateOptions { patients: args.patients, ..Default::default() };
        let summary = synth::generate(&options, &args.work, &|_| {})?;
        std::fs::write(&marker, b"")?;
        println!(
            "generated {} patients, {} resources in {:.1} s",
            args.patients,
            summary.total(),
            started.elapsed().as_secs_f64()
        );
    }
    let views: Vec<&sof::builtin::Builtin> = sof::builtin::views()
        .iter()
        .filter(|v| args.views.is_empty() || args.views.iter().any(|name| name == v.name()))
        .collect();
    if views.is_empty() {
        return Err(anyhow!(
            "no built-in view is named {} (see `chartroom view list`)",
            args.views.join(", ")
        ));
    }
    let mut types: Vec<&str> = views.iter().map(|v| v.view().resource()).collect();
    types.sort_unstable();
    types.dedup();
    let (mut single, mut parallel) = (
        Timing { resources: 0, rows: 0, elapsed: Duration::ZERO },
        Timing { resources: 0, rows: 0, elapsed: Duration::ZERO },
    );
    let mut parse_time = Duration::ZERO;
    let mut parsed_resources = 0u64;
    for resource_type in types {
        let path = args.work.join(format!("{resource_type}.ndjson"));
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let started = Instant::now();
        let resources: Vec<Json> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        parse_time += started.elapsed();
        parsed_resources += resources.len() as u64;
        drop(text);
        for builtin in views.iter().filter(|v| v.view().resource() == resource_type) {
            let (mut one, mut all) = (Duration::MAX, Duration::MAX);
            let (mut count, mut rows, mut count_all, mut rows_all) = (0, 0, 0, 0);
            for _ in 0..args.rounds.max(1) {
                let started = Instant::now();
                (count, rows) = flatten(builtin.view(), &resources)?;
                one = one.min(started.elapsed());
                let started = Instant::now();
                (count_all, rows_all) = flatten_parallel(builtin.view(), &resources, threads)?;
                all = all.min(started.elapsed());
            }
            if rows != rows_all || count != count_all {
                return Err(anyhow!(
                    "{}: {rows} rows on one thread, {rows_all} on {threads}",
                    builtin.name()
                ));
            }
            println!(
                "  {:<20} {:>9} resources {:>9} rows: 1 thread {:>9.0} res/s, {threads} threads {:>9.0} res/s",
                builtin.name(),
                count,
                rows,
                count as f64 / one.as_secs_f64(),
                count as f64 / all.as_secs_f64()
            );
            single = Timing {
                resources: single.resources + count,
                rows: single.rows + rows,
                elapsed: single.elapsed + one,
            };
            parallel = Timing {
                resources: parallel.resources + count,
                rows: parallel.rows + rows,
                elapsed: parallel.elapsed + all,
            };
        }
    }
    println!(
        "parsed {parsed_resources} resources in {:.1} s ({:.0} res/s, not counted below)",
        parse_time.as_secs_f64(),
        parsed_resources as f64 / parse_time.as_secs_f64()
    );
    for (label, timing) in [("1 thread", &single), (&*format!("{threads} threads"), &parallel)] {
        println!(
            "all built-in views, {label}: {} resource-views, {} rows in {:.2} s = {:.0} resources/s",
            timing.resources,
            timing.rows,
            timing.elapsed.as_secs_f64(),
            timing.resources as f64 / timing.elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
