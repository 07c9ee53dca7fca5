//! `chartroom billing`: accurate bills. `audit`: every final Claim checked against the record
//! it bills for (with the coding edits), and the revenue-cycle figures (discharged not
//! final-billed, the coding backlog) as of a day.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Subcommand, ValueEnum};

#[derive(clap::Args)]
pub struct BillingArgs {
    #[command(subcommand)]
    command: BillingCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Everything: figures, findings and unbilled accounts.
    Json,
    /// The findings, one row each.
    Csv,
    /// The workbench's page, standalone.
    Html,
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Checks every final bill against the record (diagnoses billed but not documented,
    /// documented but not billed, procedures not billed, bills for cancelled encounters,
    /// duplicate bills, totals that do not add up, the coding edits), and reports DNFB and the
    /// coding backlog with their age.
    Audit {
        #[command(flatten)]
        store: crate::DataArgs,
        /// The day the revenue-cycle figures are taken at the end of (YYYY-MM-DD; today by
        /// default).
        #[arg(long)]
        as_of: Option<String>,
        /// Days after discharge within which an unbilled account is normal.
        #[arg(long, default_value_t = 3)]
        bill_hold: i64,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Findings and unbilled accounts in the HTML page at most (JSON and CSV have all).
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Write the report to this file (the summary goes to standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: BillingArgs) -> Result<ExitCode> {
    match args.command {
        BillingCommand::Audit { store, as_of, bill_hold, format, limit, out } => {
            let as_of = as_of.unwrap_or_else(|| fhir::DateTime::now_utc().to_string()[..10].to_string());
            let options =
                analytics::billing::AuditOptions::as_of(&as_of, bill_hold).map_err(|e| anyhow!("{e}"))?;
            let snapshot = store.open_read_only()?;
            let audit = analytics::billing::audit(snapshot.as_ref(), &options).map_err(|e| anyhow!("{e}"))?;
            snapshot.close();
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&audit)?,
                Format::Csv => audit.to_csv(),
                Format::Html => web::analytics::standalone(
                    "Accurate bills",
                    web::billing::body(&audit.to_parameters(limit)),
                ),
            };
            let revenue = &audit.revenue;
            let summary = format!(
                "{} final bills, {} findings on {}; as of {}: {} discharged not final-billed ({:.2} on file, mean age {:.1} days), {} not yet coded",
                audit.final_claims,
                audit.findings.len(),
                audit.claims_with_findings,
                revenue.as_of,
                revenue.dnfb.count,
                revenue.dnfb.amount,
                revenue.dnfb.average_age_days,
                revenue.coding_backlog.count
            );
            crate::emit_report(&text, out.as_deref(), &summary)
        }
    }
}
