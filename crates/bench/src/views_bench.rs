//! `chartroom-bench views`: how fast the built-in SQL on FHIR views flatten a large generated
//! record into Arrow batches, on one core and on all.
//!
//! The population is generated to a work directory, and every built-in view is run over the
//! NDJSON of its resource type: each line is parsed and pushed through the runner at once, as
//! `view run` does with stored resources, and the time in the runner is counted apart from the
//! parsing (both are printed). Once on one thread, then with the lines split across all cores
//! (one runner per thread and view). A resource counts once per view it goes through; each view is run `--rounds`
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

#[derive(Clone, Copy, Default)]
struct Timing {
    resources: u64,
    rows: u64,
    /// Time spent in the runner.
    flatten: Duration,
    /// Parsing, flattening and freeing: the whole run.
    total: Duration,
}

impl Timing {
    fn add(self, other: Timing) -> Timing {
        Timing {
            resources: self.resources + other.resources,
            rows: self.rows + other.rows,
            flatten: self.flatten + other.flatten,
            total: self.total + other.total,
        }
    }
}

/// Parses each line and pushes it through a runner at once, as `view run` does with stored
/// resources: the runner sees each resource just parsed.
fn flatten(view: &sof::ViewDefinition, lines: &[&str]) -> Result<Timing> {
    let started = Instant::now();
    let mut runner = sof::Runner::new(view, sof::DEFAULT_BATCH_SIZE);
    let (mut rows, mut flatten) = (0u64, Duration::ZERO);
    for line in lines {
        let resource: Json = serde_json::from_str(line)?;
        let pushed = Instant::now();
        for batch in runner.push(&resource)? {
            rows += batch.num_rows() as u64;
        }
        flatten += pushed.elapsed();
    }
    let finished = Instant::now();
    if let Some(batch) = runner.finish()? {
        rows += batch.num_rows() as u64;
    }
    flatten += finished.elapsed();
    Ok(Timing { resources: lines.len() as u64, rows, flatten, total: started.elapsed() })
}

/// The lines split across `threads`, one runner each; the flattening time is the longest of
/// any thread's.
fn flatten_parallel(view: &sof::ViewDefinition, lines: &[&str], threads: usize) -> Result<Timing> {
    let chunk = lines.len().div_ceil(threads.max(1)).max(1);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            lines.chunks(chunk).map(|part| scope.spawn(move || flatten(view, part))).collect();
        let mut total = Timing::default();
        for handle in handles {
            let part = handle.join().map_err(|_| anyhow!("a flattening thread panicked"))??;
            total = Timing {
                resources: total.resources + part.resources,
                rows: total.rows + part.rows,
                flatten: total.flatten.max(part.flatten),
                total: Duration::ZERO,
            };
        }
        total.total = started.elapsed();
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
    let (mut single, mut parallel) = (Timing::default(), Timing::default());
    for resource_type in types {
        let path = args.work.join(format!("{resource_type}.ndjson"));
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for builtin in views.iter().filter(|v| v.view().resource() == resource_type) {
            let fastest = |a: Timing, b: Timing| if b.flatten < a.flatten { b } else { a };
            let (mut one, mut all): (Option<Timing>, Option<Timing>) = (None, None);
            for _ in 0..args.rounds.max(1) {
                let run = flatten(builtin.view(), &lines)?;
                one = Some(one.map_or(run, |best| fastest(best, run)));
                let run = flatten_parallel(builtin.view(), &lines, threads)?;
                all = Some(all.map_or(run, |best| fastest(best, run)));
            }
            let (Some(one), Some(all)) = (one, all) else { continue };
            if one.rows != all.rows || one.resources != all.resources {
                return Err(anyhow!(
                    "{}: {} rows on one thread, {} on {threads}",
                    builtin.name(),
                    one.rows,
                    all.rows
                ));
            }
            println!(
                "  {:<20} {:>9} resources {:>9} rows: 1 thread {:>9.0} res/s, {threads} threads {:>9.0} res/s",
                builtin.name(),
                one.resources,
                one.rows,
                one.resources as f64 / one.flatten.as_secs_f64(),
                all.resources as f64 / all.flatten.as_secs_f64()
            );
            single = single.add(one);
            parallel = parallel.add(all);
        }
    }
    for (label, timing) in [("1 thread", &single), (&*format!("{threads} threads"), &parallel)] {
        println!(
            "all built-in views, {label}: {} resource-views, {} rows flattened in {:.2} s = {:.0} resources/s \
             (with parsing: {:.2} s = {:.0} resources/s)",
            timing.resources,
            timing.rows,
            timing.flatten.as_secs_f64(),
            timing.resources as f64 / timing.flatten.as_secs_f64(),
            timing.total.as_secs_f64(),
            timing.resources as f64 / timing.total.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
