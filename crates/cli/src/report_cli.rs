//! `chartroom report`: reports over the record. `operations`: how resources were used over a
//! period (census, admissions, discharges, length of stay, bed-days, readmissions, emergency
//! visits), by month and by facility or service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Subcommand, ValueEnum};

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Csv,
    Html,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Facility,
    Service,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// How resources were used from --from to --to (inclusive): daily census, admissions,
    /// discharges, average length of stay, bed-days, 30-day readmission rate and emergency
    /// visits, by month and by facility (the encounter's serviceProvider) or service.
    Operations {
        #[command(flatten)]
        store: crate::DataArgs,
        /// The first day (YYYY-MM-DD).
        #[arg(long)]
        from: String,
        /// The last day (YYYY-MM-DD).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value = "facility")]
        by: By,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Write the report to this file (the summary goes to standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    match args.command {
        ReportCommand::Operations { store, from, to, by, format, out } => {
            let by = match by {
                By::Facility => analytics::operations::GroupBy::Facility,
                By::Service => analytics::operations::GroupBy::Service,
            };
            let snapshot = store.open_read_only()?;
            let report = analytics::operations::report(snapshot.as_ref(), &from, &to, by)
                .map_err(|e| anyhow!("{e}"))?;
            snapshot.close();
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&report)?,
                Format::Csv => report.to_csv(),
                Format::Html => web::analytics::standalone(
                    "How resources are used",
                    web::operations::body(&report.to_parameters()),
                ),
            };
            let total = &report.total;
            let summary = format!(
                "{from} to {to}: {} admissions, {} discharges, {} bed-days, {} emergency visits",
                total.admissions, total.discharges, total.bed_days, total.emergency_visits
            );
            crate::emit_report(&text, out.as_deref(), &summary)
        }
    }
}
