//! `chartroom-bench analytics`: outbreak early warning and treatment comparison at scale.
//!
//! - Over the record: a synthetic population of about `--resources` resources (the
//!   generator's, with its planted outbreaks and lung-cancer cohort) is imported once into
//!   the work directory; then syndrome counting (every built-in syndrome, weekly, by city),
//!   the whole surveillance run, and the cohort comparison (extraction, Kaplan–Meier per arm,
//!   log-rank, Cox) are timed on a read-only snapshot, best of `--rounds`.
//! - The kernels alone: `--series` deterministic weekly series of `--weeks` weeks (seasonal
//!   Poisson counts with outbreaks), every method over all of them, on one thread and on all.
//! - The peers on the same input, when present: R's surveillance package (`Rscript`) on the
//!   first series, and lifelines (`--python` with lifelines installed) on the extracted cohort;
//!   each as a ratio per series or per cohort.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use analytics::outbreak::{Method, Settings};
use analytics::record::syndromic::{Interval, PlaceLevel};
use anyhow::{Context, Result, bail};

use crate::bench::{WorkDir, machine};

#[derive(clap::Args)]
pub struct AnalyticsBenchArgs {
    /// Resources to generate and import (about 126 per patient), unless already loaded in --work.
    #[arg(long, default_value_t = 1_000_000)]
    resources: usize,
    /// Series for the kernels alone.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Weeks per series.
    #[arg(long, default_value_t = 520)]
    weeks: usize,
    /// Runs of each measurement; the fastest counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Series R times for EARS and CUSUM (per-series time is compared), and for Farrington.
    #[arg(long, default_value_t = 1000)]
    r_series: usize,
    #[arg(long, default_value_t = 50)]
    r_farrington_series: usize,
    /// A Python with lifelines (e.g. the venv `.ci/run` makes); lifelines is skipped without.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Working directory (the imported population is kept there for reruns).
    #[arg(long)]
    work: Option<PathBuf>,
}

fn best<T>(rounds: usize, mut run: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut fastest = Duration::MAX;
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let value = run()?;
        fastest = fastest.min(started.elapsed());
        last = Some(value);
    }
    Ok((fastest, last.context("no rounds")?))
}

/// Loads the synthetic population into `work/analytics-data` once.
fn load(work: &Path, resources: usize) -> Result<PathBuf> {
    let data = work.join("analytics-data");
    let marker = data.join(format!("loaded-{resources}"));
    if marker.exists() {
        println!("reusing the population in {}", data.display());
        return Ok(data);
    }
    let _ = std::fs::remove_dir_all(&data);
    let population = work.join("analytics-population");
    let _ = std::fs::remove_dir_all(&population);
    let patients = (resources / 126).max(10);
    let started = Instant::now();
    let summary = synth::generate(
        &synth::GenerateOptions { patients, seed: 1, ..Default::default() },
        &population,
        &|_| {},
    )?;
    println!(
        "generated {} patients, {} resources in {:.1} s",
        summary.patients,
        summary.total(),
        started.elapsed().as_secs_f64()
    );
    let store = crate::bench::open_store(&data, true)?;
    let api = api::Api::new(store.clone(), api::ApiConfig::default());
    let options = api::import::ImportOptions { validation: api::Validation::Skip, ..Default::default() };
    let started = Instant::now();
    let imported = api::import::import(&api, &population, &options, &|_| {})?;
    println!("imported {} resources in {:.1} s", imported.imported, started.elapsed().as_secs_f64());
    drop(api);
    store.close();
    std::fs::write(&marker, b"")?;
    let _ = std::fs::remove_dir_all(&population);
    Ok(data)
}

/// Weekly counts: a seasonal Poisson baseline (mean 2 to 20 by series) with a few outbreaks.
fn series(count: usize, weeks: usize) -> Vec<Vec<f64>> {
    let mut state = 0x5EED_u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    (0..count)
        .map(|n| {
            let level = 2.0 + (n % 10) as f64 * 2.0;
            (0..weeks)
                .map(|t| {
                    let season = 1.0 + 0.5 * (2.0 * std::f64::consts::PI * t as f64 / 52.0).cos();
                    let outbreak = if t % 97 == (n % 50) { 3.0 } else { 1.0 };
                    // Poisson by inversion (the means are small).
                    let mean = level * season * outbreak;
                    let (mut k, mut p, threshold) = (0.0, 1.0, (-mean).exp());
                    loop {
                        p *= uniform();
                        if p <= threshold {
                            break k;
                        }
                        k += 1.0;
                    }
                })
                .collect()
        })
        .collect()
}

fn settings(method: Method, weeks: usize) -> Settings {
    let mut settings = Settings::new(method);
    if method == Method::Cusum {
        let _ = settings.set("range", &format!("53:{weeks}"));
    }
    settings
}

fn judge_all(all: &[Vec<f64>], method: Method, weeks: usize, threads: usize) -> Result<usize> {
    let detector = settings(method, weeks).detector()?;
    let chunk = all.len().div_ceil(threads.max(1));
    let alarms: Result<Vec<usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .chunks(chunk.max(1))
            .map(|part| {
                let detector = &detector;
                scope.spawn(move || -> Result<usize> {
                    let mut alarms = 0;
                    for one in part {
                        alarms += detector.judge(one)?.iter().filter(|j| j.alarm).count();
                    }
                    Ok(alarms)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?).collect()
    });
    Ok(alarms?.into_iter().sum())
}

pub fn run(args: AnalyticsBenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(args.work, "analytics")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // ---- kernels ----
    let all = series(args.series, args.weeks);
    println!("\nkernels: {} series of {} weeks (fastest of {} runs)", args.series, args.weeks, args.rounds);
    println!("{:<12} {:>12} {:>14} {:>10}", "method", "1 thread s", format!("{cores} threads s"), "alarms");
    let mut ours: Vec<(Method, f64)> = Vec::new();
    for method in Method::ALL {
        let (one, alarms) = best(args.rounds, || judge_all(&all, method, args.weeks, 1))?;
        let (many, _) = best(args.rounds, || judge_all(&all, method, args.weeks, cores))?;
        println!(
            "{:<12} {:>12.3} {:>14.3} {:>10}",
            method.name(),
            one.as_secs_f64(),
            many.as_secs_f64(),
            alarms
        );
        ours.push((method, one.as_secs_f64() / args.series as f64));
    }

    // ---- R on the same series ----
    let csv = work.path.join("series.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        let take = args.r_series.max(args.r_farrington_series).min(all.len());
        writeln!(out, "{}", (1..=take).map(|n| format!("s{n}")).collect::<Vec<_>>().join(","))?;
        for t in 0..args.weeks {
            writeln!(out, "{}", all[..take].iter().map(|s| s[t].to_string()).collect::<Vec<_>>().join(","))?;
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/surveillance_timing.R");
    match Command::new("Rscript")
        .arg(&script)
        .arg(&csv)
        .arg(args.r_series.to_string())
        .arg(args.r_farrington_series.to_string())
        .output()
    {
        Ok(output) if output.status.success() => {
            println!(
                "\nR surveillance on the same series (one thread; per series, against ours on one thread)"
            );
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [label, seconds, count] = fields[..] else { continue };
                let (seconds, count): (f64, f64) = (seconds.parse()?, count.parse()?);
                let Some((_, per_series)) = ours.iter().find(|(m, _)| m.name() == label) else { continue };
                let theirs = seconds / count;
                println!(
                    "{label:<12} R {:>10.3} ms/series over {count} series; ours {:>8.4} ms/series; {:>7.0}x",
                    theirs * 1e3,
                    per_series * 1e3,
                    theirs / per_series
                );
            }
        }
        Ok(output) => println!("\nR surveillance failed: {}", String::from_utf8_lossy(&output.stderr)),
        Err(e) => println!("\nR surveillance not run (Rscript: {e})"),
    }

    // ---- over the record ----
    let data = load(&work.path, args.resources)?;
    let store = store::SqliteStore::open_read_only(&data)?;
    let live = store::Store::count_live(&store)?;
    println!("\nover the record: {live} resources (fastest of {} runs)", args.rounds);
    let known = analytics::syndromes::builtin();
    let syndromes = analytics::syndromes::select(&known, None)?;
    let (counting, counts) = best(args.rounds, || {
        Ok(analytics::record::syndromic::count_syndromes(
            &store,
            &syndromes,
            Interval::Week,
            PlaceLevel::City,
        )?)
    })?;
    println!(
        "syndrome counting          {:>8.3} s  ({} series of {} weeks from {} conditions)",
        counting.as_secs_f64(),
        counts.series.len(),
        counts.timeline.periods,
        counts.conditions_read
    );
    let (run, report) = best(args.rounds, || {
        Ok(analytics::outbreak::run(
            &store,
            &syndromes,
            Interval::Week,
            PlaceLevel::City,
            Settings::new(Method::EarsC2),
        )?)
    })?;
    println!("surveillance run (EARS C2) {:>8.3} s  ({} alarms)", run.as_secs_f64(), report.alarm_count());
    let study = analytics::record::cohort::Study::from_json(&serde_json::json!({
        "name": "lung", "condition": ["C34"],
        "arms": [
            { "name": "A", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048" }] },
            { "name": "B", "codes": [{ "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545" }] }
        ],
        "censoring": { "cutoff": "2026-01-01" }
    }))?;
    let (extraction, cohort) = best(args.rounds, || Ok(analytics::record::cohort::extract(&store, &study)?))?;
    let (statistics, comparison) =
        best(args.rounds.max(20), || Ok(analytics::compare::analyse(&study, cohort.clone())?))?;
    println!(
        "cohort extraction          {:>8.3} s  ({} diagnosed, {} in the cohort)",
        extraction.as_secs_f64(),
        comparison.diagnosed,
        comparison.included
    );
    println!("KM + log-rank + Cox        {:>8.6} s", statistics.as_secs_f64());
    println!("cohort comparison in all   {:>8.3} s", (extraction + statistics).as_secs_f64());

    // ---- lifelines on the same cohort ----
    let Some(python) = args.python else {
        println!("\nlifelines not run (give --python)");
        return Ok(ExitCode::SUCCESS);
    };
    let cohort_csv = work.path.join("cohort.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&cohort_csv)?);
        writeln!(out, "duration,event,group:arm,x:arm,x:age,x:male,x:comorbidities")?;
        for m in &cohort.members {
            writeln!(
                out,
                "{},{},{},{},{},{},{}",
                m.duration,
                u8::from(m.event),
                m.arm,
                m.arm,
                m.age.unwrap_or(f64::NAN),
                u8::from(m.male),
                m.comorbidities
            )?;
        }
    }
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analytics/tests/oracles/lifelines_oracle.py");
    let output = Command::new(&python).arg(&oracle).arg("--benchmark").arg(&cohort_csv).output()?;
    if !output.status.success() {
        bail!("lifelines failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let seconds: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lifelines seconds: "))
        .context("lifelines printed no time")?
        .trim()
        .parse()?;
    println!(
        "\nlifelines (KM + log-rank + Cox, same cohort) {:.4} s; ours {:.6} s: {:.0}x",
        seconds,
        statistics.as_secs_f64(),
        seconds / statistics.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
