//! `chartroom surveil` (outbreak early warning: one series from a CSV, or every syndrome ×
//! place series of the record), `chartroom survival` (Kaplan–Meier, log-rank, Cox over a CSV)
//! and `chartroom cohort compare` (a treatment comparison over the record): arguments in,
//! the `analytics` crate's answer rendered out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use analytics::outbreak::{Method, Settings};
use analytics::record::cohort::Study;
use analytics::record::syndromic::{Interval, PlaceLevel};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value as Json, json};

use crate::DataArgs;

#[derive(clap::Args)]
pub struct SurveilArgs {
    #[command(subcommand)]
    command: SurveilCommand,
}

#[derive(Subcommand)]
enum SurveilCommand {
    /// Judge one count series (a CSV with a header; the counts in column `count` or
    /// --column), as R's surveillance package does; CSV `t,observed,upperbound,alarm` out.
    Series {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = "count")]
        column: String,
        #[arg(long, value_parser = method)]
        method: Method,
        #[command(flatten)]
        control: Control,
    },
    /// Count every syndrome per place and day or ISO week from the record's Conditions and
    /// judge every series.
    Run {
        #[command(flatten)]
        store: DataArgs,
        /// Only this syndrome (built-in, or saved in DIR/syndromes/NAME.json).
        #[arg(long)]
        syndrome: Option<String>,
        #[arg(long, value_enum, default_value = "week")]
        by: By,
        #[arg(long, value_enum, default_value = "city")]
        place: Place,
        /// The method; over the record EARS gets --min-sigma 1 and Farrington as many years
        /// back as leave half the series judged, unless given.
        #[arg(long, value_parser = method, default_value = "ears-c2")]
        method: Method,
        #[command(flatten)]
        control: Control,
        /// json: the FHIR Bundle (a MeasureReport per series, a DetectedIssue per alarm);
        /// html: the report with an epidemic curve per alarmed series; csv: one row per
        /// judged period.
        #[arg(long, value_enum, default_value = "json")]
        format: ReportFormat,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The syndromes known: built in, and saved in DIR/syndromes.
    Syndromes {
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn method(text: &str) -> Result<Method, String> {
    Method::parse(text).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    Day,
    Week,
}

#[derive(Clone, Copy, ValueEnum)]
enum Place {
    City,
    Zip3,
    State,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Json,
    Html,
    Csv,
}

/// Every control parameter of R's functions, named as R names them in kebab case; R's
/// defaults apply to those not given.
#[derive(clap::Args, Default)]
struct Control {
    /// FROM:TO, the 1-based periods to judge (R's control$range).
    #[arg(long)]
    range: Option<String>,
    /// Periods per year (Farrington; 52 weekly).
    #[arg(long)]
    frequency: Option<String>,
    /// EARS: reference periods (7).
    #[arg(long)]
    baseline: Option<String>,
    /// EARS (C1/C2 0.001, C3 0.025) and Farrington (0.05): the one-sided level.
    #[arg(long)]
    alpha: Option<String>,
    /// EARS: floor on the reference standard deviation (0).
    #[arg(long)]
    min_sigma: Option<String>,
    /// CUSUM: reference value (1.04).
    #[arg(long)]
    k: Option<String>,
    /// CUSUM: decision interval (2.26).
    #[arg(long)]
    h: Option<String>,
    /// CUSUM: the expected count (the mean of the periods before the range).
    #[arg(long)]
    m: Option<String>,
    /// CUSUM: standard or rossi.
    #[arg(long)]
    trans: Option<String>,
    /// CUSUM: reset after an alarm (false).
    #[arg(long)]
    reset: Option<String>,
    /// Farrington: years back (5).
    #[arg(long)]
    b: Option<String>,
    /// Farrington: half-window in periods (3).
    #[arg(long)]
    w: Option<String>,
    /// Farrington: reweight past outbreaks (true).
    #[arg(long)]
    reweight: Option<String>,
    /// Farrington: Anscombe residual above which a period is down-weighted (2.58).
    #[arg(long)]
    weights_threshold: Option<String>,
    /// Farrington: fit a time trend (true).
    #[arg(long)]
    trend: Option<String>,
    /// Farrington: p-value below which the trend is kept (0.05).
    #[arg(long)]
    p_threshold_trend: Option<String>,
    /// Farrington: CASES,PERIODS (5,4).
    #[arg(long)]
    limit54: Option<String>,
    /// Farrington: 2/3, 1/2 or none (2/3).
    #[arg(long)]
    powertrans: Option<String>,
    /// Farrington: levels of the seasonal factor (1).
    #[arg(long)]
    no_periods: Option<String>,
    /// Farrington: recent periods left out of the fit (w).
    #[arg(long)]
    past_weeks_not_included: Option<String>,
    /// Farrington: delta, nbPlugin or muan (delta).
    #[arg(long)]
    threshold_method: Option<String>,
}

impl Control {
    fn settings(&self, method: Method) -> Result<Settings> {
        let mut settings = Settings::new(method);
        let given = [
            ("range", &self.range),
            ("frequency", &self.frequency),
            ("baseline", &self.baseline),
            ("alpha", &self.alpha),
            ("min-sigma", &self.min_sigma),
            ("k", &self.k),
            ("h", &self.h),
            ("m", &self.m),
            ("trans", &self.trans),
            ("reset", &self.reset),
            ("b", &self.b),
            ("w", &self.w),
            ("reweight", &self.reweight),
            ("weights-threshold", &self.weights_threshold),
            ("trend", &self.trend),
            ("p-threshold-trend", &self.p_threshold_trend),
            ("limit54", &self.limit54),
            ("powertrans", &self.powertrans),
            ("no-periods", &self.no_periods),
            ("past-weeks-not-included", &self.past_weeks_not_included),
            ("threshold-method", &self.threshold_method),
        ];
        for (name, value) in given {
            if let Some(value) = value {
                settings.set(name, value).map_err(|e| anyhow!("--{name}: {e}"))?;
            }
        }
        Ok(settings)
    }
}

pub fn run_surveil(args: SurveilArgs) -> Result<ExitCode> {
    match args.command {
        SurveilCommand::Series { input, column, method, control } => {
            let table = read_csv(&input)?;
            let counts = table.numbers(&column)?;
            let judgements = control.settings(method)?.detector()?.judge(&counts)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            writeln!(out, "t,observed,upperbound,alarm")?;
            for j in judgements {
                let bound = if j.upperbound.is_finite() { format!("{}", j.upperbound) } else { "NA".into() };
                writeln!(out, "{},{},{},{}", j.t, j.observed, bound, u8::from(j.alarm))?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        SurveilCommand::Run { store, syndrome, by, place, method, control, format, out } => {
            let settings = control.settings(method)?;
            let known = analytics::syndromes::known(Some(&analytics::syndromes::syndromes_dir(&store.data)))?;
            let syndromes = analytics::syndromes::select(&known, syndrome.as_deref())?;
            let interval = match by {
                By::Day => Interval::Day,
                By::Week => Interval::Week,
            };
            let level = match place {
                Place::City => PlaceLevel::City,
                Place::Zip3 => PlaceLevel::Zip3,
                Place::State => PlaceLevel::State,
            };
            let snapshot = store.open_read_only()?;
            let started = std::time::Instant::now();
            let report = analytics::outbreak::run(snapshot.as_ref(), &syndromes, interval, level, settings)?;
            snapshot.close();
            let now = fhir::DateTime::now_utc().to_string();
            let text = match format {
                ReportFormat::Json => serde_json::to_string_pretty(&report.to_bundle(&now))?,
                ReportFormat::Html => web::analytics::standalone(
                    "Outbreak early warning",
                    web::analytics::surveillance_body(&report.to_bundle(&now)),
                ),
                ReportFormat::Csv => {
                    let mut text = String::from("syndrome,place,t,period,observed,upperbound,alarm\n");
                    for series in &report.series {
                        for j in &series.judgements {
                            let bound =
                                if j.upperbound.is_finite() { j.upperbound.to_string() } else { "NA".into() };
                            text.push_str(&format!(
                                "{},{},{},{},{},{},{}\n",
                                series.syndrome,
                                csv_field(&series.place),
                                j.t,
                                report.timeline.period_label(j.t),
                                j.observed,
                                bound,
                                u8::from(j.alarm)
                            ));
                        }
                    }
                    text
                }
            };
            let summary = format!(
                "{} series over {} periods judged by {}: {} alarms, in {:.1} s",
                report.series.len(),
                report.timeline.periods,
                report.method,
                report.alarm_count(),
                started.elapsed().as_secs_f64()
            );
            crate::emit_report(&text, out.as_deref(), &summary)
        }
        SurveilCommand::Syndromes { data } => {
            for syndrome in analytics::syndromes::known(
                data.as_deref().map(analytics::syndromes::syndromes_dir).as_deref(),
            )? {
                println!("{}\t{}\t{}", syndrome.name, syndrome.title, syndrome.codes.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

// ---- survival ---------------------------------------------------------------------------

#[derive(clap::Args)]
pub struct SurvivalArgs {
    #[arg(value_enum)]
    analysis: Analysis,
    /// A CSV with a header line.
    #[arg(long)]
    input: PathBuf,
    /// The column of follow-up times.
    #[arg(long)]
    duration: String,
    /// The column of event flags (1/0, true/false).
    #[arg(long)]
    event: String,
    /// The column naming each subject's group (km: a curve per group; logrank: required).
    #[arg(long)]
    group: Option<String>,
    /// Cox: the covariate columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    covariates: Vec<String>,
    /// One minus the confidence level.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    #[arg(long, value_enum, default_value = "json")]
    format: JsonOnly,
}

#[derive(Clone, Copy, ValueEnum)]
enum Analysis {
    Km,
    Logrank,
    Cox,
}

#[derive(Clone, Copy, ValueEnum)]
enum JsonOnly {
    Json,
}

pub fn run_survival(args: SurvivalArgs) -> Result<ExitCode> {
    let table = read_csv(&args.input)?;
    let durations = table.numbers(&args.duration)?;
    let events: Vec<bool> = table.numbers(&args.event)?.into_iter().map(|v| v != 0.0).collect();
    let groups = args.group.as_deref().map(|column| table.labels(column)).transpose()?;
    let answer = match args.analysis {
        Analysis::Km => match &groups {
            None => km_json(&analytics::survival::kaplan_meier(&durations, &events, args.alpha)?),
            Some((labels, names)) => {
                let mut by_group = serde_json::Map::new();
                for (number, name) in names.iter().enumerate() {
                    let (d, e): (Vec<f64>, Vec<bool>) = labels
                        .iter()
                        .zip(durations.iter().zip(&events))
                        .filter(|(g, _)| **g == number)
                        .map(|(_, (d, e))| (*d, *e))
                        .unzip();
                    by_group.insert(
                        name.clone(),
                        km_json(&analytics::survival::kaplan_meier(&d, &e, args.alpha)?),
                    );
                }
                json!({ "groups": by_group })
            }
        },
        Analysis::Logrank => {
            let (labels, _) = groups.as_ref().ok_or_else(|| anyhow!("logrank needs --group"))?;
            let test = analytics::survival::logrank(&durations, &events, labels)?;
            json!({ "test_statistic": test.test_statistic, "p_value": test.p_value, "degrees_of_freedom": test.degrees_of_freedom })
        }
        Analysis::Cox => {
            if args.covariates.is_empty() {
                bail!("cox needs --covariates A,B,...");
            }
            let columns = args.covariates.iter().map(|c| table.numbers(c)).collect::<Result<Vec<_>>>()?;
            let fit =
                analytics::survival::cox_ph(&durations, &events, &columns, &args.covariates, args.alpha)?;
            let by_name = |values: &[f64]| -> Json {
                fit.names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (n.clone(), json!(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            let intervals: serde_json::Map<String, Json> = fit
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), json!([fit.ci_lower[i], fit.ci_upper[i]])))
                .collect();
            json!({
                "params": by_name(&fit.params),
                "standard_errors": by_name(&fit.standard_errors),
                "hazard_ratios": by_name(&fit.hazard_ratios),
                "confidence_intervals": intervals,
                "z": by_name(&fit.z),
                "p_values": by_name(&fit.p_values),
                "concordance_index": fit.concordance_index,
                "log_likelihood": fit.log_likelihood,
                "log_likelihood_ratio_test": { "test_statistic": fit.log_likelihood_ratio_test.0,
                    "degrees_of_freedom": fit.log_likelihood_ratio_test.1, "p_value": fit.log_likelihood_ratio_test.2 },
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

fn km_json(curve: &analytics::survival::KaplanMeier) -> Json {
    let infinite = |v: Option<f64>| v.map_or(json!("inf"), |v| json!(v));
    json!({
        "timeline": curve.timeline,
        "survival_function": curve.survival,
        "confidence_interval": { "lower": curve.ci_lower, "upper": curve.ci_upper },
        "median_survival_time": infinite(curve.median),
        "median_confidence_interval": [infinite(curve.median_ci.0), infinite(curve.median_ci.1)],
        "event_table": { "at_risk": curve.at_risk, "observed": curve.observed, "censored": curve.censored },
    })
}

// ---- cohort -----------------------------------------------------------------------------

#[derive(clap::Args)]
pub struct CohortArgs {
    #[command(subcommand)]
    command: CohortCommand,
}

#[derive(Subcommand)]
enum CohortCommand {
    /// Compare two treatments over the record: the cohort with its exclusions, Kaplan–Meier
    /// per arm, the log-rank test and a Cox model.
    Compare {
        #[command(flatten)]
        store: DataArgs,
        /// The study definition (JSON).
        #[arg(long)]
        study: PathBuf,
        /// json: the FHIR Parameters of $cohort-compare; html: the report with the
        /// Kaplan–Meier plot.
        #[arg(long, value_enum, default_value = "json")]
        format: CohortFormat,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a study definition to start from (the demo population's two lung-cancer
    /// regimens).
    Example,
}

#[derive(Clone, Copy, ValueEnum)]
enum CohortFormat {
    Json,
    Html,
}

pub fn run_cohort(args: CohortArgs) -> Result<ExitCode> {
    let (store, study, format, out) = match args.command {
        CohortCommand::Example => {
            println!("{}", analytics::record::cohort::EXAMPLE_STUDY);
            return Ok(ExitCode::SUCCESS);
        }
        CohortCommand::Compare { store, study, format, out } => (store, study, format, out),
    };
    let text = std::fs::read_to_string(&study).with_context(|| format!("cannot read {}", study.display()))?;
    let value: Json =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", study.display()))?;
    let study = Study::from_json(&value)?;
    let snapshot = store.open_read_only()?;
    let started = std::time::Instant::now();
    let comparison = analytics::compare::compare(snapshot.as_ref(), &study)?;
    snapshot.close();
    let parameters = comparison.to_parameters();
    let text = match format {
        CohortFormat::Json => serde_json::to_string_pretty(&parameters)?,
        CohortFormat::Html => web::analytics::standalone(
            &format!("Treatment comparison: {}", study.title.as_deref().unwrap_or(&study.name)),
            web::analytics::cohort_body(&parameters),
        ),
    };
    let hazard = comparison
        .cox
        .as_ref()
        .map(|fit| {
            format!(
                "; hazard ratio {:.3} ({:.3}–{:.3})",
                fit.hazard_ratios[0],
                fit.ci_lower[0].exp(),
                fit.ci_upper[0].exp()
            )
        })
        .unwrap_or_default();
    let summary = format!(
        "{} diagnosed, {} in the cohort ({}){hazard}, in {:.1} s",
        comparison.diagnosed,
        comparison.included,
        comparison.arms.iter().map(|a| format!("{}: {}", a.name, a.patients)).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    crate::emit_report(&text, out.as_deref(), &summary)
}

// ---- CSV input --------------------------------------------------------------------------

/// A CSV file read whole: the header's names and the rows' fields (RFC 4180 quoting).
pub(crate) struct Table {
    path: PathBuf,
    header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

pub(crate) fn read_csv(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = parse_csv(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?.into_iter();
    let header =
        records.next().ok_or_else(|| anyhow!("{} is empty: a header line is needed", path.display()))?;
    let rows: Vec<Vec<String>> = records.filter(|r| !(r.len() == 1 && r[0].is_empty())).collect();
    Ok(Table { path: path.to_path_buf(), header, rows })
}

fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("a quoted field opened before line {line} is never closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

impl Table {
    pub(crate) fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            anyhow!(
                "{} has no column '{name}' (its columns: {})",
                self.path.display(),
                self.header.join(", ")
            )
        })
    }

    /// A column's numbers; an empty, `NA` or non-numeric cell is an error naming its line.
    fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        let column = self.column(name)?;
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let cell = row.get(column).map(|c| c.trim()).unwrap_or("");
                match cell {
                    "true" | "TRUE" | "True" => Ok(1.0),
                    "false" | "FALSE" | "False" => Ok(0.0),
                    _ => cell.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                        anyhow!(
                            "{} line {}: column '{name}' holds '{cell}', not a number",
                            self.path.display(),
                            i + 2
                        )
                    }),
                }
            })
            .collect()
    }

    /// A column's labels as group numbers (in order of first appearance), with the names.
    fn labels(&self, name: &str) -> Result<(Vec<usize>, Vec<String>)> {
        let column = self.column(name)?;
        let mut names: Vec<String> = Vec::new();
        let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
        let labels = self
            .rows
            .iter()
            .map(|row| {
                let cell = row.get(column).cloned().unwrap_or_default();
                *numbers.entry(cell.clone()).or_insert_with(|| {
                    names.push(cell);
                    names.len() - 1
                })
            })
            .collect();
        Ok((labels, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted() {
        let records = parse_csv("\"t\",\"count\"\n1,\"a,\"\"b\"\"\"\r\n2,3").expect("parses");
        assert_eq!(records, vec![vec!["t", "count"], vec!["1", "a,\"b\""], vec!["2", "3"]]);
        assert!(parse_csv("\"open").is_err());
    }
}
