//! `chartroom generate` (a synthetic population as NDJSON) and `chartroom demo` (generate,
//! import and serve on first run).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use api::{Api, ApiConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{ServeArgs, StoreArgs, SyncMode};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// People to generate.
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// The same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory: one NDJSON file per resource type.
    #[arg(long)]
    out: PathBuf,
    /// Print no progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Data directory; populated with the demo population when empty.
    #[arg(long, default_value = "./chartroom-data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// People in the demo population (fixed seed).
    #[arg(long, default_value_t = 1000)]
    patients: usize,
}

fn progress(quiet: bool, what: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{human_pos}} resources {what}  {{per_sec}}  {{elapsed}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn run_generate(patients: usize, seed: u64, out: &std::path::Path, quiet: bool) -> Result<synth::Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let bar = progress(quiet, "generated");
    let options = synth::GenerateOptions { patients, seed };
    let summary = synth::generate(&options, out, &|n| bar.inc(n)).map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    Ok(summary)
}

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let summary = run_generate(args.patients, args.seed, &args.out, args.quiet)?;
    for (resource_type, count) in &summary.resources {
        println!("{count:>10}  {resource_type}");
    }
    let seconds = summary.elapsed.as_secs_f64().max(1e-9);
    println!(
        "generated {} patients, {} resources into {} in {:.2} s ({:.0} patients/s, {:.0} resources/s)",
        summary.patients,
        summary.total(),
        args.out.display(),
        seconds,
        summary.patients as f64 / seconds,
        summary.total() as f64 / seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the data directory holds no resources yet.
fn is_empty(store: &store::SqliteStore) -> Result<bool> {
    use store::Store as _;
    Ok(store.count_live().context("cannot count the stored resources")? == 0)
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let store_args = StoreArgs { data: args.data.clone(), sync: None };
    let store = store_args.open(SyncMode::Normal)?;
    if is_empty(&store)? {
        println!(
            "{} is empty: generating a demo population of {} patients",
            args.data.display(),
            args.patients
        );
        let generated = args.data.join("demo-population");
        let summary = run_generate(args.patients, 1, &generated, false)?;
        println!("generated {} resources in {:.1} s", summary.total(), summary.elapsed.as_secs_f64());
        crate::ensure_index(&store)?;
        let api = Api::new(store.clone(), ApiConfig::default());
        let report = crate::run_import(&api, &generated, &api::import::ImportOptions::default(), false)?;
        for rejection in report.rejections.iter().take(20) {
            eprintln!("{rejection}");
        }
        println!(
            "imported {} resources ({} rejected) in {:.1} s",
            report.imported,
            report.rejections.len(),
            report.elapsed.as_secs_f64()
        );
    }
    store.close();
    // The lock on the data directory goes with the last handle; serving opens it anew.
    drop(store);
    crate::serve(ServeArgs {
        store: store_args,
        bind: args.bind,
        port: args.port,
        max_body_mib: 16,
        base_url: None,
    })
}
