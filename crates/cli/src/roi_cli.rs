//! `chartroom roi`: release of information, as the `Task/$roi-*` operations do it, run in this
//! process on a data directory (the server stopped: it holds the directory's lock), each step
//! recorded in the audit trail as the named person.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct RoiArgs {
    #[command(subcommand)]
    command: RoiCommand,
}

#[derive(Subcommand)]
enum RoiCommand {
    /// Take in a request (a Task with code release-of-information, as JSON): checked, its
    /// authorization checked when the disclosure needs one, stored with its 30-day due date.
    Request {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The Task, as a JSON file.
        #[arg(long)]
        task: PathBuf,
        /// Who takes it in (recorded in the audit trail).
        #[arg(long)]
        by: String,
    },
    /// Take the request's one 30-day extension, with its written reason.
    Extend {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The request (Task id).
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: String,
    },
    /// Release exactly the requested scope: the Bundle to --out, the request completed with
    /// its fee, the disclosure in the accounting of disclosures.
    Release {
        #[command(flatten)]
        store: crate::StoreArgs,
        #[arg(long)]
        id: String,
        /// Where the released Bundle is written.
        #[arg(long)]
        out: PathBuf,
        /// Where its human-readable copy (HTML) is written too.
        #[arg(long)]
        html: Option<PathBuf>,
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
}

fn task_path(id: &str, operation: &str) -> Result<String> {
    let id = id.trim().trim_start_matches("Task/");
    if !fhir::is_valid_id(id) {
        bail!("--id must be a Task id, not '{id}'");
    }
    Ok(format!("Task/{id}/${operation}"))
}

pub fn run(args: RoiArgs) -> Result<ExitCode> {
    use crate::in_process::call_as;
    let answer = match args.command {
        RoiCommand::Request { store, task, by } => {
            let text =
                std::fs::read_to_string(&task).with_context(|| format!("cannot read {}", task.display()))?;
            let task: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", task.display()))?;
            let answer = call_as(&store, api::Method::Post, "Task/$roi-request", Some(&task), &by)?;
            if answer.status == 201 {
                println!(
                    "request Task/{} taken in; due {}",
                    answer.body["id"].as_str().unwrap_or(""),
                    answer.body["restriction"]["period"]["end"].as_str().unwrap_or("")
                );
            }
            answer
        }
        RoiCommand::Extend { store, id, reason, by } => {
            let parameters = json!({ "resourceType": "Parameters", "parameter": [{ "name": "reason", "valueString": reason }] });
            let answer =
                call_as(&store, api::Method::Post, &task_path(&id, "roi-extend")?, Some(&parameters), &by)?;
            if answer.status == 200 {
                println!(
                    "extended; due {}",
                    answer.body["restriction"]["period"]["end"].as_str().unwrap_or("")
                );
            }
            answer
        }
        RoiCommand::Release { store, id, out, html, by } => {
            let answer = call_as(&store, api::Method::Post, &task_path(&id, "roi-release")?, None, &by)?;
            if answer.status == 200 {
                std::fs::write(&out, serde_json::to_vec_pretty(&answer.body)?)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!("released {} resources to {}", answer.body["total"], out.display());
                if let Some(html) = html {
                    let disclosed = answer.disclosure.clone().unwrap_or_default();
                    std::fs::write(&html, web::roi::release_document(&answer.body, &disclosed))
                        .with_context(|| format!("cannot write {}", html.display()))?;
                    println!("its human-readable copy: {}", html.display());
                }
            }
            answer
        }
        RoiCommand::Overdue { store, by } => {
            let answer = call_as(&store, api::Method::Get, "Task/$roi-overdue", None, &by)?;
            for entry in answer.body["entry"].as_array().into_iter().flatten() {
                let task = &entry["resource"];
                println!(
                    "Task/{}\t{}\tdue {}",
                    task["id"].as_str().unwrap_or(""),
                    task["for"]["reference"].as_str().unwrap_or(""),
                    task["restriction"]["period"]["end"].as_str().unwrap_or("")
                );
            }
            answer
        }
    };
    answer.print_issues();
    Ok(answer.exit_code())
}
