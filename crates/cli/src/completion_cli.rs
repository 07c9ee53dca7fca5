//! `chartroom completion`: record completion, as `Task/$completion-scan` and
//! `Task/$completion-report` do it, run in this process on a data directory, each run recorded
//! in the audit trail as the named person.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct CompletionArgs {
    #[command(subcommand)]
    command: CompletionCommand,
}

#[derive(Subcommand)]
enum CompletionCommand {
    /// Run the deficiency rules: open a Task for each new deficiency, owned by the clinician
    /// who owes the document, and complete those whose document has arrived.
    Scan {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// Run as of this date or dateTime instead of now.
        #[arg(long)]
        as_of: Option<String>,
        /// Who runs it (recorded in the audit trail).
        #[arg(long)]
        by: String,
    },
    /// The delinquent-record report per clinician, the completion and delinquency rates, and
    /// the open deficiencies oldest first.
    Report {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        as_of: Option<String>,
        /// Days of discharges the completion rate is over.
        #[arg(long, default_value_t = 90)]
        period_days: u32,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(long)]
        by: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A summary and a line per clinician.
    Text,
    /// The Parameters.
    Json,
}

fn moment(as_of: Option<&str>) -> Result<Option<i64>> {
    match as_of {
        None => Ok(None),
        Some(text) => match workflow::instant_after(text) {
            Some(at) => Ok(Some(at)),
            None => bail!("--as-of must be a date or dateTime, not '{text}'"),
        },
    }
}

fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"].as_array().and_then(|list| list.iter().find(|p| p["name"] == name)).map_or(
        &Value::Null,
        |p| {
            ["valueInteger", "valueDecimal", "valueDateTime", "valueReference", "valueString"]
                .iter()
                .map(|k| &p[*k])
                .find(|v| !v.is_null())
                .unwrap_or(&Value::Null)
        },
    )
}

pub fn run(args: CompletionArgs) -> Result<ExitCode> {
    use crate::in_process::call_as_at;
    let answer = match args.command {
        CompletionCommand::Scan { store, as_of, by } => {
            let now = moment(as_of.as_deref())?;
            let answer = call_as_at(&store, api::Method::Post, "Task/$completion-scan", None, &by, now)?;
            if answer.status == 200 {
                println!(
                    "{} deficiencies open ({} opened, {} closed) as of {}",
                    value(&answer.body, "open"),
                    value(&answer.body, "opened"),
                    value(&answer.body, "closed"),
                    value(&answer.body, "asOf").as_str().unwrap_or("")
                );
            }
            answer
        }
        CompletionCommand::Report { store, as_of, period_days, format, by } => {
            let mut parameter = vec![json!({ "name": "periodDays", "valueInteger": period_days })];
            if let Some(as_of) = &as_of {
                moment(Some(as_of))?;
                parameter.push(json!({ "name": "asOf", "valueDateTime": as_of }));
            }
            let body = json!({ "resourceType": "Parameters", "parameter": parameter });
            let answer =
                call_as_at(&store, api::Method::Post, "Task/$completion-report", Some(&body), &by, None)?;
            if answer.status == 200 {
                match format {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&answer.body)?),
                    Format::Text => print_report(&answer.body),
                }
            }
            answer
        }
    };
    answer.print_issues();
    Ok(answer.exit_code())
}

fn print_report(report: &Value) {
    println!(
        "as of {}: {} open deficiencies; completion rate {:.1}% of {} discharges in {} days; {} delinquent records (over {} days), delinquency rate {:.2}",
        value(report, "asOf").as_str().unwrap_or(""),
        value(report, "openDeficiencies"),
        value(report, "completionRate").as_f64().unwrap_or(0.0) * 100.0,
        value(report, "discharges"),
        value(report, "periodDays"),
        value(report, "delinquentRecords"),
        value(report, "delinquentDays"),
        value(report, "delinquencyRate").as_f64().unwrap_or(0.0),
    );
    println!("clinician\topen\trecords\tdelinquent\toldest (days past due)");
    for line in report["parameter"].as_array().into_iter().flatten().filter(|p| p["name"] == "clinician") {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            value(line, "practitioner")["reference"].as_str().unwrap_or("(no one named)"),
            value(line, "open"),
            value(line, "records"),
            value(line, "delinquentRecords"),
            value(line, "oldestDays"),
        );
    }
}
