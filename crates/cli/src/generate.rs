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
    #[command(flatten)]
    truth: TruthArgs,
}

/// What to plant in the population; all of it is listed in `OUT/ground-truth/`.
#[derive(clap::Args)]
struct TruthArgs {
    /// Share of patients given one data-quality defect (the classes take turns).
    #[arg(long, default_value_t = synth::TruthOptions::default().defect_rate)]
    defect_rate: f64,
    /// Share of patients one of whose final bills gets a billing defect (the kinds take turns).
    #[arg(long, default_value_t = synth::TruthOptions::default().billing_defect_rate)]
    billing_defect_rate: f64,
    /// Share of patients given a record-completion deficiency: a document missing or unsigned
    /// (the rules take turns).
    #[arg(long, default_value_t = synth::TruthOptions::default().completion_defect_rate)]
    completion_defect_rate: f64,
    /// Share of patients with an open release-of-information request on the as-of date.
    #[arg(long, default_value_t = synth::TruthOptions::default().roi_request_rate)]
    roi_request_rate: f64,
    /// Share of patients with an open amendment request.
    #[arg(long, default_value_t = synth::TruthOptions::default().amendment_rate)]
    amendment_rate: f64,
    /// Share of patients under a legal hold (on the patient or one encounter).
    #[arg(long, default_value_t = synth::TruthOptions::default().hold_rate)]
    hold_rate: f64,
    /// Share of patients registered twice with registration errors.
    #[arg(long, default_value_t = synth::TruthOptions::default().duplicate_rate)]
    duplicate_rate: f64,
    /// Outbreaks to seed (a syndrome in one city for four weeks).
    #[arg(long, default_value_t = synth::TruthOptions::default().outbreaks)]
    outbreaks: usize,
    /// Share of an outbreak city's residents who fall ill.
    #[arg(long, default_value_t = synth::TruthOptions::default().attack_rate)]
    attack_rate: f64,
    /// Share of 45- to 85-year-olds diagnosed with lung cancer and given one of two regimens.
    #[arg(long, default_value_t = synth::TruthOptions::default().cohort_rate)]
    cohort_rate: f64,
    /// Hazard of death on regimen B relative to regimen A.
    #[arg(long, default_value_t = synth::TruthOptions::default().hazard_ratio)]
    hazard_ratio: f64,
    /// Median survival on regimen A, in days.
    #[arg(long, default_value_t = synth::TruthOptions::default().median_survival_days)]
    median_survival_days: f64,
    /// Log-odds of a 30-day readmission with no chronic disease.
    #[arg(long, default_value_t = synth::TruthOptions::default().readmission_intercept, allow_hyphen_values = true)]
    readmission_intercept: f64,
    /// Log-odds added per chronic disease present at discharge.
    #[arg(long, default_value_t = synth::TruthOptions::default().readmission_per_disease, allow_hyphen_values = true)]
    readmission_per_disease: f64,
    /// Plant nothing: no defects, duplicates, outbreaks or cohort.
    #[arg(long, conflicts_with_all = ["defect_rate", "billing_defect_rate", "completion_defect_rate", "roi_request_rate", "amendment_rate", "hold_rate", "duplicate_rate", "outbreaks", "cohort_rate"])]
    clean: bool,
}

impl TruthArgs {
    fn options(&self) -> synth::TruthOptions {
        if self.clean {
            return synth::TruthOptions {
                readmission_intercept: self.readmission_intercept,
                readmission_per_disease: self.readmission_per_disease,
                ..synth::TruthOptions::none()
            };
        }
        synth::TruthOptions {
            defect_rate: self.defect_rate,
            billing_defect_rate: self.billing_defect_rate,
            completion_defect_rate: self.completion_defect_rate,
            roi_request_rate: self.roi_request_rate,
            amendment_rate: self.amendment_rate,
            hold_rate: self.hold_rate,
            duplicate_rate: self.duplicate_rate,
            outbreaks: self.outbreaks,
            attack_rate: self.attack_rate,
            cohort_rate: self.cohort_rate,
            hazard_ratio: self.hazard_ratio,
            median_survival_days: self.median_survival_days,
            readmission_intercept: self.readmission_intercept,
            readmission_per_disease: self.readmission_per_disease,
        }
    }
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

fn run_generate(
    options: &synth::GenerateOptions,
    out: &std::path::Path,
    quiet: bool,
) -> Result<synth::Summary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let bar = progress(quiet, "generated");
    let summary = synth::generate(options, out, &|n| bar.inc(n)).map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    Ok(summary)
}

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let options =
        synth::GenerateOptions { patients: args.patients, seed: args.seed, truth: args.truth.options() };
    let summary = run_generate(&options, &args.out, args.quiet)?;
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
    println!(
        "ground truth (planted defects, duplicates, outbreaks, cohort, readmissions, billing defects, unbilled visits) in {}",
        args.out.join(synth::GROUND_TRUTH_DIR).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the data directory holds no resources yet.
fn is_empty(store: &dyn store::Store) -> Result<bool> {
    Ok(store.count_live().context("cannot count the stored resources")? == 0)
}

pub fn demo(args: DemoArgs) -> Result<ExitCode> {
    let store_args = StoreArgs {
        data: args.data.clone(),
        sync: None,
        store: None,
        store_schema: "chartroom".into(),
        read_store: None,
    };
    let record = store_args.open(SyncMode::Normal)?;
    let store = record.store();
    if is_empty(store.as_ref())? {
        println!(
            "{} is empty: generating a demo population of {} patients",
            args.data.display(),
            args.patients
        );
        let generated = args.data.join("demo-population");
        let options = synth::GenerateOptions { patients: args.patients, seed: 1, ..Default::default() };
        let summary = run_generate(&options, &generated, false)?;
        println!("generated {} resources in {:.1} s", summary.total(), summary.elapsed.as_secs_f64());
        crate::ensure_index(store.as_ref())?;
        let api = Api::new(store.clone(), ApiConfig::default());
        // Stored as generated, planted defects included: `chartroom dq` is to find them.
        let options = api::import::ImportOptions { validation: api::Validation::Skip, ..Default::default() };
        let report = crate::run_import(&api, &generated, &options, false)?;
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
    record.close();
    // The lock on the data directory goes with the last handle; serving opens it anew.
    drop(store);
    drop(record);
    crate::serve(ServeArgs {
        store: store_args,
        bind: args.bind,
        port: args.port,
        max_body_mib: 16,
        base_url: None,
        // The demo runs open, with the warning serve prints; `chartroom serve` requires tokens.
        insecure_no_auth: true,
        jwt_hs256_secret_file: None,
        jwks_file: None,
        jwt_issuer: None,
        smart_configuration: None,
        jwt_audience: None,
        audit_durability: crate::AuditDurability::Strict,
        body_timeout_secs: 30,
        demo_ground_truth: Some(args.data.join("demo-population").join("ground-truth")),
        validation: Default::default(),
        duplicate_check: crate::DuplicateCheckArg::Warn,
        mllp_port: None,
        mllp_bind: "127.0.0.1".into(),
        mllp_user: "hl7-interface".into(),
        import_from: Vec::new(),
    })
}
