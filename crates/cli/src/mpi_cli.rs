//! `chartroom mpi`: duplicate patients. `run` matches the record's Patients and keeps the
//! candidate pairs in the data directory; `review` lists those waiting for a decision and
//! records decisions; `eval` measures matching on linkage files with
//! known true pairs (the FEBRL layout).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use mpi::model::Training;
use mpi::person::Person;
use serde_json::json;

use crate::DataArgs;

#[derive(clap::Args)]
pub struct MpiArgs {
    #[command(subcommand)]
    command: MpiCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum JsonOnly {
    Json,
}

#[derive(Subcommand)]
enum MpiCommand {
    /// Match every Patient of the record with every other: the candidate pairs at or above
    /// the review threshold, with their probability and each field's evidence, written to
    /// DIR/mpi/candidates.ndjson and listed.
    Run {
        #[command(flatten)]
        store: DataArgs,
        /// Pairs at or above this probability are linked without review.
        #[arg(long, default_value_t = mpi::linkage::LINK_THRESHOLD)]
        link_threshold: f64,
        /// Pairs at or above this probability (and below the link threshold) go to review.
        #[arg(long, default_value_t = mpi::linkage::REVIEW_THRESHOLD)]
        review_threshold: f64,
        /// Pairs listed on standard output (all are written to the file).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The review queue: the pairs of the last `mpi run` waiting for a decision (below the
    /// link threshold, not yet decided), or, with --decide, record one.
    Review {
        #[command(flatten)]
        store: DataArgs,
        /// Record a decision on the pair --a/--b: same-person or different-people.
        #[arg(long, requires_all = ["a", "b", "by"])]
        decide: Option<String>,
        #[arg(long)]
        a: Option<String>,
        #[arg(long)]
        b: Option<String>,
        /// Who decides (their user name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Merge a duplicate registration (--source) into the surviving one (--target), as
    /// Patient/$merge does: every resource referring to the source moves to the target, the
    /// two are linked and the source made inactive, in one transaction recorded by a
    /// Provenance and in the audit trail. Run with the server stopped (it holds the
    /// directory's lock).
    Merge {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The registration merged away (Patient/ID or ID).
        #[arg(long)]
        source: String,
        /// The surviving registration.
        #[arg(long)]
        target: String,
        /// Only say what would change.
        #[arg(long)]
        preview: bool,
        /// Who merges (their user name, recorded in the Provenance and the audit trail).
        #[arg(long)]
        by: String,
    },
    /// Undo the latest merge of --source, as Patient/$unmerge does: every resource the merge
    /// wrote gets its content from before back.
    Unmerge {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The registration that was merged away.
        #[arg(long)]
        source: String,
        /// Only say what would change.
        #[arg(long)]
        preview: bool,
        /// Who unmerges.
        #[arg(long)]
        by: String,
    },
    /// Matching quality on FEBRL-layout files: one file deduplicated, or two linked; JSON
    /// with candidates, predicted, true, tp, precision, recall, f1, best_f1 and seconds.
    Eval {
        #[arg(long)]
        input: PathBuf,
        /// A second file to link the first with (pairs across the two only).
        #[arg(long)]
        input_b: Option<PathBuf>,
        /// The true pairs (rec_id_1,rec_id_2).
        #[arg(long)]
        pairs: PathBuf,
        /// The match probability at or above which a pair counts as predicted (the automatic
        /// link threshold by default).
        #[arg(long, default_value_t = mpi::linkage::LINK_THRESHOLD)]
        threshold: f64,
        #[arg(long, value_enum, default_value = "json")]
        format: JsonOnly,
    },
}

/// `Patient/ID` or `ID` as the id.
fn patient_id(text: &str) -> String {
    text.trim().trim_start_matches("Patient/").to_string()
}

/// Runs a merge or an unmerge through the API as `by` and prints the outcome.
fn change(
    store_args: &crate::StoreArgs,
    operation: &str,
    parameters: serde_json::Value,
    by: &str,
) -> Result<ExitCode> {
    let path = format!("Patient/${operation}");
    let answer = crate::in_process::call_as(store_args, api::Method::Post, &path, Some(&parameters), by)?;
    answer.print_issues();
    Ok(if answer.status == 200 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn reference_parameter(name: &str, id: &str) -> serde_json::Value {
    json!({ "name": name, "valueReference": { "reference": format!("Patient/{}", patient_id(id)) } })
}

pub fn run(args: MpiArgs) -> Result<ExitCode> {
    match args.command {
        MpiCommand::Merge { store, source, target, preview, by } => {
            let parameters = json!({ "resourceType": "Parameters", "parameter": [
                reference_parameter("source-patient", &source),
                reference_parameter("target-patient", &target),
                { "name": "preview", "valueBoolean": preview },
            ]});
            change(&store, "merge", parameters, &by)
        }
        MpiCommand::Unmerge { store, source, preview, by } => {
            let parameters = json!({ "resourceType": "Parameters", "parameter": [
                reference_parameter("source-patient", &source),
                { "name": "preview", "valueBoolean": preview },
            ]});
            change(&store, "unmerge", parameters, &by)
        }
        MpiCommand::Review { store, decide, a, b, by } => {
            store.check()?;
            let path = mpi::review::decisions_path(&store.data);
            if let (Some(decide), Some(a), Some(b), Some(by)) = (decide, a, b, by) {
                let decision = mpi::review::Decision {
                    a: patient_id(&a),
                    b: patient_id(&b),
                    verdict: mpi::review::Verdict::parse(&decide)?,
                    by,
                    at: fhir::DateTime::now_utc().to_string(),
                };
                mpi::review::record(&path, &decision)?;
                println!(
                    "recorded: Patient/{} and Patient/{} are {decide}, by {}",
                    decision.a, decision.b, decision.by
                );
                return Ok(ExitCode::SUCCESS);
            }
            let decisions = mpi::review::Decisions::load(&path)?;
            let candidates = store.data.join("mpi").join("candidates.ndjson");
            let text = std::fs::read_to_string(&candidates).with_context(|| {
                format!("no candidate pairs yet ({}): run `chartroom mpi run` first", candidates.display())
            })?;
            let mut waiting = 0;
            println!("probability  patients");
            for line in text.lines() {
                let pair: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{} holds a line that is not JSON", candidates.display()))?;
                let (a, b) = (
                    patient_id(pair["a"].as_str().unwrap_or("")),
                    patient_id(pair["b"].as_str().unwrap_or("")),
                );
                if pair["proposed"] != "review" || decisions.on(&a, &b).is_some() {
                    continue;
                }
                waiting += 1;
                println!(
                    "{:>11.6}  Patient/{a} Patient/{b}",
                    pair["probability"].as_f64().unwrap_or(f64::NAN)
                );
            }
            println!(
                "{waiting} pairs wait for a decision (chartroom mpi review --decide same-person|different-people --a ID --b ID --by NAME)"
            );
            Ok(ExitCode::SUCCESS)
        }
        MpiCommand::Eval { input, input_b, pairs, threshold, format: JsonOnly::Json } => {
            if !(0.0..=1.0).contains(&threshold) {
                bail!("--threshold {threshold} is not a probability");
            }
            let mut people = mpi::febrl::read_people(&input)?;
            let truth = mpi::febrl::read_pairs(&pairs)?;
            let run = match input_b {
                None => mpi::linkage::run(&people, &Training::default()),
                Some(second) => {
                    let split = people.len();
                    people.extend(mpi::febrl::read_people(&second)?);
                    mpi::linkage::run_linkage(&people, split, &Training::default())
                }
            };
            let evaluation = mpi::linkage::evaluate(&run, &people, &truth, threshold);
            println!("{}", serde_json::to_string_pretty(&evaluation)?);
            Ok(ExitCode::SUCCESS)
        }
        MpiCommand::Run { store, link_threshold, review_threshold, limit } => {
            if !(0.0 < review_threshold && review_threshold <= link_threshold && link_threshold <= 1.0) {
                bail!("the thresholds must satisfy 0 < --review-threshold <= --link-threshold <= 1");
            }
            let snapshot = store.open_read_only()?;
            let mut people: Vec<Person> = Vec::new();
            store::Store::scan_type(snapshot.as_ref(), "Patient", None, &mut |_, _, body| {
                if let Ok(patient) = serde_json::from_slice::<serde_json::Value>(body)
                    // Records already merged away (inactive, replaced by another) are not
                    // matched again.
                    && patient["active"] != false
                {
                    people.push(Person::from_patient(&patient));
                }
                Ok(())
            })?;
            snapshot.close();
            let run = mpi::linkage::run(&people, &Training::default());
            // Pairs a reviewer decided are different people are not proposed again.
            let decisions = mpi::review::Decisions::load(&mpi::review::decisions_path(&store.data))?;
            let mut found: Vec<&mpi::linkage::ScoredPair> = run
                .pairs
                .iter()
                .filter(|p| p.probability >= review_threshold)
                .filter(|p| !decisions.different(&people[p.a as usize].id, &people[p.b as usize].id))
                .collect();
            found.sort_by(|a, b| b.probability.total_cmp(&a.probability));
            let dir = store.data.join("mpi");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("candidates.ndjson");
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?,
            );
            for pair in &found {
                let (a, b) = (&people[pair.a as usize], &people[pair.b as usize]);
                let decision = if pair.probability >= link_threshold { "link" } else { "review" };
                let line = json!({
                    "a": format!("Patient/{}", a.id), "b": format!("Patient/{}", b.id),
                    "probability": pair.probability, "proposed": decision,
                    "evidence": run.model.explain(a, &pair.vector, &run.frequencies),
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            let links = found.iter().filter(|p| p.probability >= link_threshold).count();
            println!("probability  proposed  patients");
            for pair in found.iter().take(limit) {
                let decision = if pair.probability >= link_threshold { "link" } else { "review" };
                println!(
                    "{:>11.6}  {decision:<8}  Patient/{} Patient/{}",
                    pair.probability, people[pair.a as usize].id, people[pair.b as usize].id
                );
            }
            println!(
                "{} patients, {} candidate pairs: {links} to link, {} to review, in {:.1} s; all in {}",
                people.len(),
                run.candidates,
                found.len() - links,
                run.seconds,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
