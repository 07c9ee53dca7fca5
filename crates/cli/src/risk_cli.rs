//! `chartroom risk`: comorbidity indices, of the record's patients as of a date (`--data`) or
//! of a CSV of diagnoses (`--input`, the raw mode other tools can be checked against).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use analytics::risk::comorbidity::{Index, Scheme, Scorer, age_adjusted, hfrs, survival_10yr};
use anyhow::{Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};

use crate::analysis::{csv_field, read_csv};

#[derive(clap::Args)]
pub struct RiskArgs {
    #[command(subcommand)]
    command: RiskCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum RiskCommand {
    /// Train the 30-day readmission model on the record's inpatient stays (split by patient
    /// into training and held-out sets) and keep it, with its measures, in
    /// DIR/risk/readmission-model.json; prints the held-out AUC (95% CI), Brier score,
    /// calibration and LACE's AUC.
    Train {
        #[command(flatten)]
        store: crate::DataArgs,
        /// Stays whose 30-day window ended by this date are used (today by default).
        #[arg(long)]
        as_of: Option<String>,
        /// The regularisation strength's inverse (scikit-learn's C).
        #[arg(long, default_value_t = 1.0)]
        c: f64,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// The care managers' worklist: patients discharged in the 30 days up to the as-of date,
    /// most likely to be readmitted first, with the three factors that add most to each risk.
    Worklist {
        #[command(flatten)]
        store: crate::DataArgs,
        /// The day the window ends (by default the latest discharge on record).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
    /// Comorbidity indices. With --input FILE.csv (id,code[,age] rows, codes without dots):
    /// one index, written as CSV id,measure,value rows (score; with --age, age_adj and
    /// survival_10yr; for hfrs, hfrs_category). With --data DIR: every patient's Charlson,
    /// Elixhauser and HFRS as of a date, highest Charlson first.
    Comorbidity {
        /// A CSV of diagnoses: id,code and, for --age, age.
        #[arg(long, conflicts_with_all = ["data", "as_of", "patient"], required_unless_present = "data")]
        input: Option<PathBuf>,
        /// A data directory (read as a snapshot).
        #[arg(long)]
        data: Option<PathBuf>,
        /// charlson, elixhauser or hfrs (raw mode).
        #[arg(long, default_value = "charlson")]
        score: String,
        /// The code map: quan, swedish, australian or shmi (Charlson); quan (Elixhauser).
        #[arg(long, default_value = "quan")]
        variant: String,
        /// Charlson: charlson, quan (the default), shmi, shmi_modified; Elixhauser:
        /// van_walraven (the default), swiss.
        #[arg(long)]
        weighting: Option<String>,
        /// Also the age-adjusted score and the 10-year survival (Charlson weighting only).
        #[arg(long)]
        age: bool,
        /// The date diagnoses are counted up to (--data; today by default).
        #[arg(long)]
        as_of: Option<String>,
        /// Only this patient (--data).
        #[arg(long)]
        patient: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn number(value: f64) -> String {
    format!("{value}")
}

fn today() -> String {
    fhir::DateTime::now_utc().to_string()[..10].to_string()
}

fn day(millis: i64) -> String {
    analytics::record::date_of_day(millis.div_euclid(86_400_000))
}

pub fn run(args: RiskArgs) -> Result<ExitCode> {
    use analytics::risk::readmission;
    match args.command {
        RiskCommand::Train { store, as_of, c, format } => {
            if !(c > 0.0 && c.is_finite()) {
                bail!("--c must be a positive number");
            }
            let as_of = as_of.unwrap_or_else(today);
            let snapshot = store.open_read_only()?;
            let stays = readmission::stays(snapshot.as_ref(), &as_of).map_err(|e| anyhow!("{e}"))?;
            snapshot.close();
            let model = readmission::train(&stays, &as_of, &fhir::DateTime::now_utc().to_string(), c)
                .map_err(|e| anyhow!("{e}"))?;
            let path = readmission::model_path(&store.data);
            readmission::save(&model, &path).map_err(|e| anyhow!("{e}"))?;
            let measures = &model.held_out;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&model)?);
            } else {
                println!(
                    "trained on {} stays ({} readmitted), held out {} ({} readmitted), {} patients, as of {as_of}",
                    model.data.training_stays,
                    model.data.training_readmissions,
                    model.data.held_out_stays,
                    model.data.held_out_readmissions,
                    model.data.patients
                );
                println!(
                    "held-out AUC {:.4} (95% CI {:.4}-{:.4}); LACE AUC {:.4} ({:.4}-{:.4}); Brier {:.4}",
                    measures.auc,
                    measures.auc_low,
                    measures.auc_high,
                    measures.lace_auc,
                    measures.lace_auc_low,
                    measures.lace_auc_high,
                    measures.brier
                );
                println!("calibration (tenths of predicted risk): stays, mean predicted, observed");
                for group in &measures.calibration {
                    println!("{:>6}  {:.4}  {:.4}", group.rows, group.predicted, group.observed);
                }
                println!("kept in {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        RiskCommand::Worklist { store, as_of, limit, format } => {
            let path = readmission::model_path(&store.data);
            let model = readmission::load(&path).map_err(|e| anyhow!("{e}"))?.ok_or_else(|| {
                anyhow!("no readmission model in {}: run `chartroom risk train` first", path.display())
            })?;
            let snapshot = store.open_read_only()?;
            let stays = readmission::stays(snapshot.as_ref(), as_of.as_deref().unwrap_or(&today()))
                .map_err(|e| anyhow!("{e}"))?;
            snapshot.close();
            let end = match &as_of {
                Some(date) => analytics::record::end_of_day(date)
                    .ok_or_else(|| anyhow!("--as-of '{date}' is not a date"))?,
                None => stays.iter().filter(|s| !s.died).map(|s| s.discharged).max().unwrap_or(0),
            };
            let entries = readmission::worklist(&stays, &model, end, limit);
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("patient,encounter,discharged,risk,lace,factors");
            for entry in &entries {
                let factors: Vec<String> = entry
                    .factors
                    .iter()
                    .map(|f| format!("{} = {} (+{:.2})", f.feature, f.value, f.contribution))
                    .collect();
                println!(
                    "{},{},{},{:.4},{},{}",
                    csv_field(&entry.patient),
                    csv_field(&entry.encounter),
                    day(entry.discharged),
                    entry.risk,
                    entry.lace,
                    csv_field(&factors.join("; "))
                );
            }
            eprintln!("{} patients discharged in the 30 days up to {}", entries.len(), day(end));
            Ok(ExitCode::SUCCESS)
        }
        RiskCommand::Comorbidity {
            input,
            data,
            score,
            variant,
            weighting,
            age,
            as_of,
            patient,
            format,
            out,
        } => {
            let text = match (input, data) {
                (Some(input), _) => raw(&input, &score, &variant, weighting.as_deref(), age, format)?,
                (None, Some(data)) => {
                    let store = crate::DataArgs::dir(data).open_read_only()?;
                    let today = fhir::DateTime::now_utc().to_string();
                    let as_of = as_of.unwrap_or_else(|| today[..10].to_string());
                    let risks = analytics::risk::patients(store.as_ref(), &as_of, patient.as_deref())
                        .map_err(|e| anyhow!("{e}"))?;
                    store.close();
                    record(&risks, format)?
                }
                (None, None) => bail!("give --input FILE.csv or --data DIR"),
            };
            match out {
                Some(path) => std::fs::write(&path, text)?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The raw mode: one index over a CSV of diagnoses.
fn raw(
    input: &std::path::Path,
    score: &str,
    variant: &str,
    weighting: Option<&str>,
    with_age: bool,
    format: Format,
) -> Result<String> {
    let table = read_csv(input)?;
    let (id_column, code_column) = (table.column("id")?, table.column("code")?);
    let age_column = if with_age { Some(table.column("age")?) } else { None };
    // Patients in order of first appearance, each with their codes and first age.
    let mut order: Vec<String> = Vec::new();
    let mut patients: HashMap<String, (Option<f64>, Vec<String>)> = HashMap::new();
    for (line, row) in table.rows.iter().enumerate() {
        let id = row.get(id_column).map(|c| c.trim()).unwrap_or("");
        let code = row.get(code_column).map(String::as_str).unwrap_or("");
        if id.is_empty() || code.is_empty() {
            continue;
        }
        let entry = patients.entry(id.to_string()).or_insert_with(|| {
            order.push(id.to_string());
            (None, Vec::new())
        });
        if let Some(column) = age_column
            && entry.0.is_none()
        {
            let cell = row.get(column).map(|c| c.trim()).unwrap_or("");
            let years: f64 = cell.parse().map_err(|_| {
                anyhow!("{} line {}: age '{cell}' is not a number", input.display(), line + 2)
            })?;
            entry.0 = Some(years);
        }
        entry.1.push(code.to_string());
    }
    let mut rows: Vec<(String, &'static str, String)> = Vec::new();
    if score == "hfrs" {
        for id in &order {
            let (frailty, category) = hfrs(patients[id].1.iter().map(String::as_str));
            rows.push((id.clone(), "score", number(frailty)));
            rows.push((id.clone(), "hfrs_category", category.name().to_string()));
        }
    } else {
        let index = Index::parse(score).map_err(|e| anyhow!("{e}"))?;
        let weighting = weighting.unwrap_or(index.default_weighting());
        let scheme = Scheme::new(index, variant, weighting).map_err(|e| anyhow!("{e}"))?;
        if with_age && (index, weighting) != (Index::Charlson, "charlson") {
            bail!(
                "--age gives the age-adjusted Charlson score, which uses the charlson weighting (--weighting charlson)"
            );
        }
        let mut scorer = Scorer::new(scheme).map_err(|e| anyhow!("{e}"))?;
        for id in &order {
            let (age, codes) = &patients[id];
            let found = scorer.score(codes.iter().map(String::as_str));
            rows.push((id.clone(), "score", number(found.score)));
            if let Some(age) = age {
                let adjusted = age_adjusted(found.score, *age);
                rows.push((id.clone(), "age_adj", number(adjusted)));
                rows.push((id.clone(), "survival_10yr", number(survival_10yr(adjusted))));
            }
        }
    }
    Ok(match format {
        Format::Csv => {
            let mut text = String::from("id,measure,value\n");
            for (id, measure, value) in rows {
                text.push_str(&format!("{},{measure},{value}\n", csv_field(&id)));
            }
            text
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(id, measure, value)| serde_json::json!({ "id": id, "measure": measure, "value": value }))
                .collect();
            serde_json::to_string_pretty(&rows)? + "\n"
        }
    })
}

/// Every patient's indices over the record.
fn record(risks: &[analytics::risk::PatientRisk], format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(risks)? + "\n",
        Format::Csv => {
            let mut text = String::from(
                "patient,age,charlson,charlson_age_adjusted,survival_10yr,elixhauser,hfrs,hfrs_category,charlson_categories,elixhauser_categories\n",
            );
            let optional = |v: Option<f64>| v.map(number).unwrap_or_default();
            for risk in risks {
                text.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{}\n",
                    csv_field(&risk.patient),
                    risk.age.map(|a| a.to_string()).unwrap_or_default(),
                    number(risk.charlson),
                    optional(risk.charlson_age_adjusted),
                    optional(risk.survival_10yr),
                    number(risk.elixhauser),
                    number(risk.hfrs),
                    risk.hfrs_category,
                    risk.charlson_categories.join(" "),
                    risk.elixhauser_categories.join(" "),
                ));
            }
            text
        }
    })
}
