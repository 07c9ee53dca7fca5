//! `chartroom user add` and `chartroom audit verify|disclosures`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::StoreArgs;

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Adds a user (or replaces their token); the token is printed as the last line, and only
    /// its hash is kept.
    Add {
        name: String,
        /// clinician, coder, him-technician, privacy-officer, analyst, patient or admin.
        #[arg(long)]
        role: String,
        /// For a patient: the id of the Patient they are.
        #[arg(long)]
        patient: Option<String>,
        /// The FHIR resource the user is (`Practitioner/prac-001`).
        #[arg(long)]
        fhir_user: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Checks the hash chain: reports every edited, deleted, inserted or moved entry; exits 1
    /// when any is found.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Who accessed a patient's record, when and why (the accounting of disclosures).
    Disclosures {
        /// The Patient's id.
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run_user(args: UserArgs) -> Result<ExitCode> {
    match args.command {
        UserCommand::Add { name, role, patient, fhir_user, store } => {
            let role = privacy::Role::parse(&role)?;
            let users = privacy::Users::open(&store.data)?;
            let token = users.add(&name, role, patient.as_deref(), fhir_user.as_deref())?;
            println!(
                "user {name} ({}) added to {}; their API token (shown once):",
                role.as_str(),
                store.data.display()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_audit(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { store } => {
            let result = privacy::audit::verify(&store.data)
                .with_context(|| format!("cannot verify the audit trail of {}", store.data.display()))?;
            for problem in &result.problems {
                println!("{problem}");
            }
            println!(
                "{} entries checked: {}",
                result.entries,
                if result.problems.is_empty() {
                    "the chain is intact".to_string()
                } else {
                    format!("{} problems", result.problems.len())
                }
            );
            Ok(if result.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        AuditCommand::Disclosures { patient, store } => {
            let events = privacy::audit::events_for_patient(&store.data, &format!("Patient/{patient}"))?;
            for event in &events {
                let who = event["agent"][0]["who"]["identifier"]["value"].as_str().unwrap_or("?");
                let role = event["agent"][0]["role"][0]["text"].as_str().unwrap_or("");
                let why = event["agent"][0]["purposeOfUse"][0]["coding"][0]["code"].as_str().unwrap_or("-");
                let what = event["subtype"][0]["code"].as_str().unwrap_or("?");
                let outcome = if event["outcome"] == "0" { "allowed" } else { "refused" };
                println!(
                    "{}  {who} ({role})  {what}  purpose {why}  {outcome}",
                    event["recorded"].as_str().unwrap_or("")
                );
            }
            println!("{} accesses to Patient/{patient}", events.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
