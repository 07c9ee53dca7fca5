//! `chartroom amend`: a patient's request to amend their record (45 CFR 164.526), as the
//! `Task/$amend-*` operations do it, run in this process on a data directory, each step
//! recorded in the audit trail as the named person.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct AmendArgs {
    #[command(subcommand)]
    command: AmendCommand,
}

#[derive(Subcommand)]
enum AmendCommand {
    /// Take in a request (a Task with code amendment, as JSON), stored with its 60-day due date.
    Request {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        task: PathBuf,
        /// Who takes it in (recorded in the audit trail).
        #[arg(long)]
        by: String,
    },
    /// Take the one 30-day extension, with its written reason.
    Extend {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Accept, with the amended resource (JSON), or deny on a ground of 164.526(a)(2).
    Decide {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        id: String,
        /// accept or deny.
        #[arg(long)]
        decision: String,
        /// accept: the amended resource, as a JSON file.
        #[arg(long)]
        resource: Option<PathBuf>,
        /// deny: not-created-here, not-designated-record-set, not-available-for-inspection or
        /// accurate-and-complete.
        #[arg(long)]
        basis: Option<String>,
        /// deny: the reason in words, for the letter.
        #[arg(long, default_value = "")]
        explanation: String,
        #[arg(long)]
        by: String,
    },
    /// The open requests past their due date.
    Overdue {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        by: String,
    },
    /// Keep the patient's statement of disagreement with a denial.
    Disagree {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        statement: String,
        #[arg(long)]
        by: String,
    },
}

fn task_path(id: &str, operation: &str) -> Result<String> {
    let id = id.trim().trim_start_matches("Task/");
    if !fhir::is_valid_id(id) {
        bail!("--id must be a Task id, not '{id}'");
    }
    Ok(format!("Task/{id}/${operation}"))
}

fn read_json(path: &PathBuf) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn parameters(parameter: Vec<Value>) -> Value {
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

fn string(name: &str, value: &str) -> Value {
    json!({ "name": name, "valueString": value })
}

pub fn run(args: AmendArgs) -> Result<ExitCode> {
    use crate::in_process::call_as;
    let answer = match args.command {
        AmendCommand::Request { store, task, by } => {
            call_as(&store, api::Method::Post, "Task/$amend-request", Some(&read_json(&task)?), &by)?
        }
        AmendCommand::Extend { store, id, reason, by } => {
            let body = parameters(vec![string("reason", &reason)]);
            call_as(&store, api::Method::Post, &task_path(&id, "amend-extend")?, Some(&body), &by)?
        }
        AmendCommand::Decide { store, id, decision, resource, basis, explanation, by } => {
            let mut parameter = vec![json!({ "name": "decision", "valueCode": decision })];
            if let Some(resource) = &resource {
                parameter.push(json!({ "name": "resource", "resource": read_json(resource)? }));
            }
            if let Some(basis) = &basis {
                parameter.push(json!({ "name": "basis", "valueCode": basis }));
            }
            if !explanation.is_empty() {
                parameter.push(string("explanation", &explanation));
            }
            let body = parameters(parameter);
            call_as(&store, api::Method::Post, &task_path(&id, "amend-decide")?, Some(&body), &by)?
        }
        AmendCommand::Overdue { store, by } => {
            let answer = call_as(&store, api::Method::Get, "Task/$amend-overdue", None, &by)?;
            for entry in answer.body["entry"].as_array().into_iter().flatten() {
                let task = &entry["resource"];
                println!(
                    "Task/{}\t{}\t{}\tdue {}",
                    task["id"].as_str().unwrap_or(""),
                    task["for"]["reference"].as_str().unwrap_or(""),
                    task["focus"]["reference"].as_str().unwrap_or(""),
                    task["restriction"]["period"]["end"].as_str().unwrap_or("")
                );
            }
            answer.print_issues();
            return Ok(answer.exit_code());
        }
        AmendCommand::Disagree { store, id, statement, by } => {
            let body = parameters(vec![string("statement", &statement)]);
            call_as(&store, api::Method::Post, &task_path(&id, "amend-disagree")?, Some(&body), &by)?
        }
    };
    if (200..300).contains(&answer.status) {
        let task = &answer.body;
        println!(
            "Task/{} {}; due {}",
            task["id"].as_str().unwrap_or(""),
            task["businessStatus"]["text"].as_str().or(task["status"].as_str()).unwrap_or(""),
            task["restriction"]["period"]["end"].as_str().unwrap_or("")
        );
        for output in task["output"].as_array().into_iter().flatten() {
            let value = output["valueReference"]["reference"]
                .as_str()
                .or(output["valueString"].as_str())
                .unwrap_or("");
            println!("  {}: {value}", output["type"]["text"].as_str().unwrap_or(""));
        }
    }
    answer.print_issues();
    Ok(answer.exit_code())
}
