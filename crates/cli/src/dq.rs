//! `chartroom dq`: the data-quality report over a data directory, kept for the trend.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;

use crate::DataArgs;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Html,
}

#[derive(clap::Args)]
pub struct DqArgs {
    #[command(flatten)]
    store: DataArgs,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write the report here instead of to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Offending resources listed per check.
    #[arg(long, default_value_t = 20)]
    examples: usize,
}

pub fn run(args: DqArgs) -> Result<ExitCode> {
    // Read-only: the report runs beside a server, over one snapshot of the record. Only the
    // run's summary is appended to the data directory, for the trend.
    let store = args.store.open_read_only()?;
    let data = &args.store.data;
    let runs = quality::load_runs(data)?;
    let mut report = quality::run(store.as_ref(), &quality::Options { examples: args.examples })?;
    // The snapshot ends with the report, so the server's log can be reset again.
    store.close();
    report.previous = runs.last().cloned();
    let timestamp = fhir::DateTime::now_utc().to_string();
    quality::record_run(data, &timestamp, &report)?;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report.to_json(&timestamp))?,
        Format::Html => report.to_html(&timestamp),
    };
    let summary = format!(
        "{} resources, {} checks: {} passed, {} failed, in {:.1} s",
        report.resources,
        report.checks.len(),
        report.checks.len() - report.failed(),
        report.failed(),
        report.elapsed.as_secs_f64()
    );
    crate::emit_report(&text, args.out.as_deref(), &summary)
}
