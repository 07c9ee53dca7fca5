//! `chartroom hold` and `chartroom retention`: legal holds and the retention purge, as
//! `Task/$hold-place`, `$hold-release`, `$retention-report` and `$retention-purge` do them, run
//! in this process on a data directory, each step recorded in the audit trail as the named
//! person.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct HoldArgs {
    #[command(subcommand)]
    command: HoldCommand,
}

#[derive(Subcommand)]
enum HoldCommand {
    /// Place a legal hold on a patient, an encounter or dates: nothing it covers can then be
    /// changed, deleted or purged.
    Place {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The patient held (Patient id).
        #[arg(long)]
        patient: Option<String>,
        /// The encounter held (Encounter id).
        #[arg(long)]
        encounter: Option<String>,
        /// The first and last day held (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// The matter the hold is for.
        #[arg(long)]
        matter: String,
        /// Who asked for it (counsel).
        #[arg(long)]
        requested_by: Option<String>,
        #[arg(long)]
        by: String,
    },
    /// Lift a hold, with the reason.
    Release {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
}

#[derive(clap::Args)]
pub struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// What a purge now would destroy, patient by patient, and what holds keep.
    Report {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[command(flatten)]
        schedule: ScheduleArgs,
        #[arg(long)]
        by: String,
    },
    /// Destroy every record past retention and under no hold, writing the certificate of
    /// destruction.
    Purge {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[command(flatten)]
        schedule: ScheduleArgs,
        #[arg(long)]
        by: String,
    },
}

#[derive(clap::Args)]
struct ScheduleArgs {
    /// A built-in schedule: default, CA, NY, TX.
    #[arg(long, default_value = "default")]
    schedule: String,
    /// The department's schedule, as a JSON file (adultYears, majorityAge,
    /// minorYearsAfterMajority, deceasedYears); instead of --schedule.
    #[arg(long)]
    schedule_file: Option<PathBuf>,
}

impl ScheduleArgs {
    fn parameters(&self) -> Result<Value> {
        let parameter = match &self.schedule_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                json!([{ "name": "scheduleDefinition", "valueString": text }])
            }
            None => json!([{ "name": "schedule", "valueCode": self.schedule }]),
        };
        Ok(json!({ "resourceType": "Parameters", "parameter": parameter }))
    }
}

fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name))
        .and_then(|p| p.as_object())
        .and_then(|p| p.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

pub fn run_hold(args: HoldArgs) -> Result<ExitCode> {
    use crate::in_process::call_as;
    let answer = match args.command {
        HoldCommand::Place { store, patient, encounter, from, to, matter, requested_by, by } => {
            let mut task = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
                "code": { "coding": [{ "system": store::hold::HOLD_SYSTEM, "code": store::hold::HOLD_CODE }] },
                "description": matter });
            if let Some(patient) = patient {
                task["for"] =
                    json!({ "reference": format!("Patient/{}", patient.trim_start_matches("Patient/")) });
            }
            if let Some(encounter) = encounter {
                task["focus"] = json!({ "reference": format!("Encounter/{}", encounter.trim_start_matches("Encounter/")) });
            }
            if from.is_some() || to.is_some() {
                task["restriction"] = json!({ "period": { "start": from, "end": to } });
                if let Some(period) = task["restriction"]["period"].as_object_mut() {
                    period.retain(|_, v| !v.is_null());
                }
            }
            if let Some(who) = requested_by {
                task["requester"] = json!({ "display": who });
            }
            let answer = call_as(&store, api::Method::Post, "Task/$hold-place", Some(&task), &by)?;
            if answer.status == 201 {
                println!("hold Task/{} placed", answer.body["id"].as_str().unwrap_or(""));
            }
            answer
        }
        HoldCommand::Release { store, id, reason, by } => {
            let id = id.trim().trim_start_matches("Task/");
            if !fhir::is_valid_id(id) {
                bail!("--id must be a Task id, not '{id}'");
            }
            let body = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": reason }] });
            let answer =
                call_as(&store, api::Method::Post, &format!("Task/{id}/$hold-release"), Some(&body), &by)?;
            if answer.status == 200 {
                println!("hold Task/{id} released");
            }
            answer
        }
    };
    answer.print_issues();
    Ok(answer.exit_code())
}

pub fn run_retention(args: RetentionArgs) -> Result<ExitCode> {
    use crate::in_process::call_as;
    let (answer, purged) = match args.command {
        RetentionCommand::Report { store, schedule, by } => (
            call_as(&store, api::Method::Post, "$retention-report", Some(&schedule.parameters()?), &by)?,
            false,
        ),
        RetentionCommand::Purge { store, schedule, by } => (
            call_as(&store, api::Method::Post, "$retention-purge", Some(&schedule.parameters()?), &by)?,
            true,
        ),
    };
    if answer.status == 200 {
        let body = &answer.body;
        println!(
            "{} {} resources of {} patients past retention under the {} schedule; {} kept under legal hold or for an open request",
            if purged { "destroyed" } else { "would destroy" },
            value(body, "resources"),
            value(body, "patients"),
            value(body, "schedule").as_str().unwrap_or(""),
            value(body, "held"),
        );
        if purged {
            println!(
                "certificate of destruction: {}",
                value(body, "certificate")["reference"].as_str().unwrap_or("")
            );
        }
    }
    answer.print_issues();
    Ok(answer.exit_code())
}
