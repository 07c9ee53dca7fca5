//! `chartroom deid`: a de-identified extract of the record for research. NDJSON per resource
//! type, the built-in SQL-on-FHIR views over it as Parquet (`views/NAME.parquet`), and
//! `deid-report.json`, the count of what was removed per HIPAA identifier class. The extract
//! is recorded in the audit trail like any disclosure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProfileArg {
    /// HIPAA Safe Harbor: the 18 identifier classes removed, dates to the year, ZIP to 3 digits.
    SafeHarbor,
    /// Research: identifiers removed, each patient's dates shifted by a secret offset kept
    /// in DIR/deid.key, ids replaced by stable keyed pseudonyms.
    DateShift,
}

#[derive(clap::Args)]
pub struct DeidArgs {
    #[command(flatten)]
    store: crate::DataArgs,
    #[arg(long, value_enum)]
    profile: ProfileArg,
    /// The directory to write the extract to (created; must be empty or new).
    #[arg(long)]
    out: PathBuf,
    /// The three-digit ZIP prefixes that become 000: one per line, or a TSV with the prefix
    /// first (default: HHS's 2000-Census list).
    #[arg(long)]
    restricted_zip3: Option<PathBuf>,
    /// Only these resource types (comma-separated); default every type in the record.
    #[arg(long, value_delimiter = ',')]
    types: Vec<String>,
    /// The date ages are counted to (YYYY-MM-DD); default today.
    #[arg(long)]
    as_of: Option<String>,
    /// Who makes the extract, for the audit trail.
    #[arg(long)]
    by: String,
}

pub fn run(args: DeidArgs) -> Result<ExitCode> {
    if args.by.trim().is_empty() {
        bail!("--by must name who makes the extract");
    }
    args.store.check()?;
    if args.out.exists() && std::fs::read_dir(&args.out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} is not empty: an extract is written to a new or empty directory", args.out.display());
    }
    for resource_type in &args.types {
        if !fhir::definitions().is_resource_type(resource_type) {
            bail!("--types: '{resource_type}' is not a resource type");
        }
    }
    let as_of = match args.as_of {
        Some(date) => {
            fhir::DateTime::parse(&date, fhir::DateTimeKind::Date)
                .map_err(|e| anyhow!("--as-of {date}: {e}"))?;
            date
        }
        None => fhir::DateTime::now_utc().to_string()[..10].to_string(),
    };
    let mut settings = match args.profile {
        ProfileArg::SafeHarbor => deid::Settings::safe_harbor(&as_of)?,
        ProfileArg::DateShift => deid::Settings::date_shift(
            deid::Key::load_or_create(&args.store.data.join(deid::KEY_FILE))?,
            &as_of,
        ),
    };
    if let Some(path) = &args.restricted_zip3 {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        settings.restricted_zip3 = deid::parse_restricted_zip3(&text)?;
    }
    let profile = settings.profile;
    let snapshot = args.store.open_read_only()?;
    let deidentifier = deid::extract::learn(snapshot.as_ref(), settings)?;
    let types = (!args.types.is_empty()).then_some(args.types.as_slice());
    let (files, report) = deid::extract::write_ndjson(snapshot.as_ref(), &deidentifier, types, &args.out)?;
    snapshot.close();

    // The built-in views over the extract, as Parquet for cluster engines.
    let views_out = args.out.join("views");
    std::fs::create_dir_all(&views_out).with_context(|| format!("cannot create {}", views_out.display()))?;
    let mut tables = 0;
    for builtin in sof::builtin::views() {
        if !files.iter().any(|(t, _, _)| t == builtin.view().resource()) {
            continue;
        }
        let path = views_out.join(format!("{}.parquet", builtin.name()));
        let file =
            std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        ::views::run_files(
            builtin.view(),
            &args.out,
            &::views::ViewScope::default(),
            sof::Format::Parquet,
            file,
        )
        .map_err(|e| anyhow!("view {}: {e}", builtin.name()))?;
        tables += 1;
    }
    let report_json = report.to_json(profile);
    std::fs::write(args.out.join(deid::REPORT_FILE), serde_json::to_vec_pretty(&report_json)?)?;

    let summary = format!(
        "{} extract of {} resources ({} left out) in {} files and {tables} Parquet views",
        profile.name(),
        report.resources_out,
        report.resources_in - report.resources_out,
        files.len()
    );
    crate::in_process::record_command(
        &args.store.data,
        &args.by,
        "deid-extract",
        format!("{summary} to {}", args.out.display()),
    )?;
    println!("{summary}; written to {}", args.out.display());
    for class in deid::IdentifierClass::ALL {
        let total = report.total(class);
        if total > 0 {
            println!("  {:<14} {total}", class.code());
        }
    }
    Ok(ExitCode::SUCCESS)
}
