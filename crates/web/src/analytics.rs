//! The uses of the record: outbreak early warning (epidemic curves of the alarmed series) and
//! treatment comparison (Kaplan–Meier plot, numbers at risk, the tests), drawn from the FHIR
//! answers of `$surveillance` (a Bundle of MeasureReports and DetectedIssues) and
//! `$cohort-compare` (a Parameters). The same functions make the workbench's pages and the
//! command line's HTML reports.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::views::parameter_parts;
use crate::{STYLESHEET, Viewer, page, svg, table, text};

const EXTENSIONS: &str = "https://chartroom.dev/fhir/StructureDefinition/";

fn extension<'a>(element: &'a Value, name: &str) -> Option<&'a Value> {
    element["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str().and_then(|u| u.strip_prefix(EXTENSIONS)) == Some(name))
}

/// One period of a series as the report shows it.
pub struct Period {
    pub t: usize,
    pub label: String,
    pub observed: f64,
    pub upperbound: Option<f64>,
    pub alarm: bool,
}

/// One series read back from its MeasureReport.
pub struct Series {
    pub syndrome: String,
    pub place: String,
    pub method: String,
    pub counts: Vec<f64>,
    pub judged: Vec<Period>,
    pub not_judged: Option<String>,
}

impl Series {
    pub fn alarms(&self) -> impl Iterator<Item = &Period> {
        self.judged.iter().filter(|p| p.alarm)
    }
}

/// The series of a `$surveillance` Bundle.
pub fn series_of(bundle: &Value) -> Vec<Series> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "MeasureReport")
        .map(|report| {
            let group = &report["group"][0];
            let judged = group["stratifier"][0]["stratum"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|stratum| Period {
                    t: extension(stratum, "surveillance-period")
                        .and_then(|e| e["valueInteger"].as_u64())
                        .unwrap_or(0) as usize,
                    label: text(&stratum["value"]["text"]),
                    observed: stratum["population"][0]["count"].as_f64().unwrap_or(0.0),
                    upperbound: extension(stratum, "surveillance-upperbound")
                        .and_then(|e| e["valueDecimal"].as_f64()),
                    alarm: extension(stratum, "surveillance-alarm").and_then(|e| e["valueBoolean"].as_bool())
                        == Some(true),
                })
                .collect();
            Series {
                syndrome: text(&group["code"]["text"]),
                place: extension(report, "surveillance-place")
                    .map(|e| text(&e["valueCoding"]["code"]))
                    .unwrap_or_default(),
                method: extension(report, "surveillance-method")
                    .map(|e| text(&e["valueString"]))
                    .unwrap_or_default(),
                counts: extension(report, "surveillance-counts")
                    .and_then(|e| e["valueString"].as_str())
                    .map(|s| s.split_whitespace().filter_map(|c| c.parse().ok()).collect())
                    .unwrap_or_default(),
                judged,
                not_judged: extension(report, "surveillance-not-judged").map(|e| text(&e["valueString"])),
            }
        })
        .collect()
}

/// Epidemic curves drawn on one page at most: the series with the latest alarms.
const CURVES_SHOWN: usize = 20;

/// The surveillance report: the alarms, latest first; an epidemic curve for each alarmed
/// series (those with the latest alarms first); then every series with its totals.
pub fn surveillance_body(bundle: &Value) -> Markup {
    let series = series_of(bundle);
    let mut alarmed: Vec<&Series> = series.iter().filter(|s| s.alarms().next().is_some()).collect();
    let latest = |s: &Series| s.alarms().map(|p| p.t).max().unwrap_or(0);
    alarmed.sort_by_key(|s| std::cmp::Reverse(latest(s)));
    let mut alarms: Vec<(&Series, &Period)> =
        series.iter().flat_map(|s| s.alarms().map(move |p| (s, p))).collect();
    alarms.sort_by_key(|(_, p)| std::cmp::Reverse(p.t));
    let alarm_rows: Vec<Vec<String>> = alarms
        .iter()
        .map(|(s, p)| {
            vec![
                p.label.clone(),
                s.syndrome.clone(),
                s.place.clone(),
                p.observed.to_string(),
                p.upperbound.map(|u| format!("{u:.2}")).unwrap_or_default(),
            ]
        })
        .collect();
    let rows: Vec<Vec<String>> = series
        .iter()
        .map(|s| {
            let judged = s.judged.len();
            vec![
                s.syndrome.clone(),
                s.place.clone(),
                format!("{}", s.counts.iter().sum::<f64>()),
                if judged == 0 {
                    s.not_judged.clone().unwrap_or_else(|| "not judged".into())
                } else {
                    judged.to_string()
                },
                s.alarms().count().to_string(),
            ]
        })
        .collect();
    let method = series.first().map(|s| s.method.clone()).unwrap_or_default();
    html! {
        p { (series.len()) " series judged by " code { (method) } "; " (alarms.len()) " alarms in " (alarmed.len()) " series." }
        @if !alarm_rows.is_empty() {
            (table("Alarms, latest first", &["Period", "Syndrome", "Place", "Cases", "Threshold"], &alarm_rows))
        }
        @for s in alarmed.iter().take(CURVES_SHOWN) {
            h2 { (s.syndrome) " in " (s.place) }
            (svg::epidemic_curve(&s.counts, &s.judged, &format!("{} in {}: cases per period, threshold and alarms", s.syndrome, s.place)))
        }
        @if alarmed.len() > CURVES_SHOWN {
            p.muted { "Curves of " (alarmed.len() - CURVES_SHOWN) " more alarmed series are left out; choose a syndrome to see them." }
        }
        (table("Every syndrome and place", &["Syndrome", "Place", "Cases", "Periods judged", "Alarms"], &rows))
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn days(value: &Value) -> String {
    number(value).map(|d| format!("{d:.0}")).unwrap_or_else(|| "not reached".into())
}

fn decimal(value: &Value, digits: usize) -> String {
    number(value).map(|d| format!("{d:.digits$}")).unwrap_or_default()
}

/// One arm's curve read back from its `step` parts.
pub struct Curve {
    pub name: String,
    /// (days, survival, lower, upper, at risk, censored).
    pub steps: Vec<(f64, f64, f64, f64, u64, u64)>,
}

fn arms_of(parameters: &Value) -> Vec<(serde_json::Map<String, Value>, Curve)> {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "arm")
        .zip(parameter_parts(parameters, "arm"))
        .map(|(arm, fields)| {
            let steps = arm["part"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == "step")
                .map(|step| {
                    let get = |name: &str| crate::views::part(step, name);
                    (
                        get("days")["valueDecimal"].as_f64().unwrap_or(0.0),
                        get("survival")["valueDecimal"].as_f64().unwrap_or(f64::NAN),
                        get("lower")["valueDecimal"].as_f64().unwrap_or(f64::NAN),
                        get("upper")["valueDecimal"].as_f64().unwrap_or(f64::NAN),
                        get("atRisk")["valueInteger"].as_u64().unwrap_or(0),
                        get("censored")["valueInteger"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let name = text(&fields.get("title").cloned().unwrap_or(Value::Null));
            (fields, Curve { name, steps })
        })
        .collect()
}

/// The treatment comparison: who is in the cohort and who was left out, the Kaplan–Meier plot
/// with numbers at risk, medians and survival at the study's times, the log-rank test and the
/// Cox model.
pub fn cohort_body(parameters: &Value) -> Markup {
    let cohort = parameter_parts(parameters, "cohort").into_iter().next().unwrap_or_default();
    let exclusions: Vec<Vec<String>> = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "cohort")
        .flat_map(|p| p["part"].as_array().into_iter().flatten())
        .filter(|p| p["name"] == "excluded")
        .map(|p| {
            let get = |name: &str| {
                p["part"].as_array().into_iter().flatten().find(|q| q["name"] == name).map(|q| {
                    q.as_object()
                        .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| text(v)))
                        .unwrap_or_default()
                })
            };
            vec![get("description").unwrap_or_default(), get("count").unwrap_or_default()]
        })
        .collect();
    let arms = arms_of(parameters);
    let curves: Vec<&Curve> = arms.iter().map(|(_, c)| c).collect();
    let arm_rows: Vec<Vec<String>> = arms
        .iter()
        .map(|(f, c)| {
            let get = |name: &str| f.get(name).cloned().unwrap_or(Value::Null);
            vec![
                c.name.clone(),
                text(&get("patients")),
                text(&get("events")),
                days(&get("median")),
                format!("{} – {}", days(&get("medianLower")), days(&get("medianUpper"))),
            ]
        })
        .collect();
    let survival_rows: Vec<Vec<String>> = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "arm")
        .zip(arms.iter())
        .flat_map(|(arm, (_, curve))| {
            arm["part"].as_array().into_iter().flatten().filter(|p| p["name"] == "survivalAt").map(move |p| {
                let get = |name: &str| crate::views::part(p, name);
                vec![
                    curve.name.clone(),
                    days(&get("days")["valueDecimal"]),
                    decimal(&get("survival")["valueDecimal"], 3),
                    format!(
                        "{} – {}",
                        decimal(&get("lower")["valueDecimal"], 3),
                        decimal(&get("upper")["valueDecimal"], 3)
                    ),
                    text(&get("atRisk")["valueInteger"]),
                ]
            })
        })
        .collect();
    let log_rank = parameter_parts(parameters, "logRank").into_iter().next();
    let cox_rows: Vec<Vec<String>> = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "cox")
        .flat_map(|p| p["part"].as_array().into_iter().flatten())
        .filter(|p| p["name"] == "coefficient")
        .map(|p| {
            let get = |name: &str| crate::views::part(p, name);
            vec![
                text(&get("covariate")["valueString"]),
                decimal(&get("coef")["valueDecimal"], 4),
                decimal(&get("se")["valueDecimal"], 4),
                decimal(&get("hazardRatio")["valueDecimal"], 3),
                format!(
                    "{} – {}",
                    decimal(&get("hazardRatioLower")["valueDecimal"], 3),
                    decimal(&get("hazardRatioUpper")["valueDecimal"], 3)
                ),
                decimal(&get("pValue")["valueDecimal"], 4),
            ]
        })
        .collect();
    let cox = parameter_parts(parameters, "cox").into_iter().next();
    let note_texts: Vec<String> = parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "note")
        .map(|p| text(&p["valueString"]))
        .collect();
    html! {
        dl.facts {
            dt { "Study" } dd { (parameter_value(parameters, "study")) }
            dt { "Patients with the condition" } dd { (text(cohort.get("diagnosed").unwrap_or(&Value::Null))) }
            dt { "In the cohort" } dd { (text(cohort.get("included").unwrap_or(&Value::Null))) }
            dt { "Data cut-off" } dd { (text(cohort.get("cutoff").unwrap_or(&Value::Null))) }
        }
        (table("Left out of the cohort", &["Why", "Patients"], &exclusions))
        h2 { "Survival by arm" }
        (svg::kaplan_meier(&curves, "Kaplan–Meier survival by arm with 95% confidence bands; ticks mark censored patients"))
        (at_risk_table(&curves))
        (table("Arms", &["Arm", "Patients", "Deaths", "Median survival (days)", "Median's confidence interval"], &arm_rows))
        (table("Survival at set times", &["Arm", "Days", "Survival", "Confidence interval", "At risk"], &survival_rows))
        @if let Some(test) = log_rank {
            p { "Log-rank test: χ² = " (decimal(test.get("testStatistic").unwrap_or(&Value::Null), 3))
                ", " (text(test.get("degreesOfFreedom").unwrap_or(&Value::Null))) " degree(s) of freedom, p = "
                (decimal(test.get("pValue").unwrap_or(&Value::Null), 4)) "." }
        }
        @if let Some(cox) = cox {
            (table("Cox proportional hazards (Efron ties); the arm's hazard ratio compares the second arm with the first",
                   &["Covariate", "Coefficient", "Standard error", "Hazard ratio", "95% CI", "p"], &cox_rows))
            p { "Concordance " (decimal(cox.get("concordance").unwrap_or(&Value::Null), 3))
                "; partial log-likelihood " (decimal(cox.get("logLikelihood").unwrap_or(&Value::Null), 3)) "." }
        }
        @for note in &note_texts { p.muted { (note) } }
    }
}

fn parameter_value(parameters: &Value, name: &str) -> String {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object())
        .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| text(v)))
        .unwrap_or_default()
}

/// The numbers at risk under the plot, at the plot's ticks.
fn at_risk_table(curves: &[&Curve]) -> Markup {
    let horizon = svg::horizon(curves);
    let ticks: Vec<f64> = (0..=5).map(|i| horizon * f64::from(i) / 5.0).collect();
    let mut header: Vec<String> = vec!["Days".into()];
    header.extend(ticks.iter().map(|t| format!("{t:.0}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = curves
        .iter()
        .map(|curve| {
            let mut row = vec![curve.name.clone()];
            // At risk just after t: those whose follow-up lasts beyond it, the at-risk count of
            // the first point after t.
            row.extend(ticks.iter().map(|&t| {
                let next = curve.steps.partition_point(|s| s.0 <= t);
                curve.steps.get(next).map_or(0, |s| s.4).to_string()
            }));
            row
        })
        .collect();
    table("Numbers at risk", &header, &rows)
}

/// A report as a page of its own (the command line's `--html`), the stylesheet inline.
pub fn standalone(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Chartroom" }
                style { (PreEscaped(STYLESHEET)) }
            }
            body { main id="content" { h1 { (title) } (body) } }
        }
    }
    .into_string()
}

/// The workbench's outbreak page: the form (syndrome, period, place, method) and the report.
pub fn surveillance_page(
    viewer: &Viewer,
    form: &SurveillanceForm,
    bundle: Option<&Value>,
    error: Option<&str>,
) -> String {
    page(
        Some(viewer),
        "Outbreak early warning",
        html! {
            form.inline method="get" action="/analytics/surveillance" {
                label { "Syndrome" select name="syndrome" {
                    option value="" selected[form.syndrome.is_empty()] { "All" }
                    @for (name, title) in &form.syndromes { option value=(name) selected[*name == form.syndrome] { (title) } }
                } }
                label { "Period" select name="by" {
                    @for by in ["week", "day"] { option value=(by) selected[by == form.by] { (by) } }
                } }
                label { "Place" select name="place" {
                    @for place in ["city", "zip3", "state"] { option value=(place) selected[place == form.place] { (place) } }
                } }
                label { "Method" select name="method" {
                    @for method in ["ears-c1", "ears-c2", "ears-c3", "cusum", "farrington"] {
                        option value=(method) selected[method == form.method] { (method) }
                    }
                } }
                button type="submit" { "Run" }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(bundle) = bundle { (surveillance_body(bundle)) }
        },
    )
}

/// The outbreak form's values.
#[derive(Default)]
pub struct SurveillanceForm {
    pub syndromes: Vec<(String, String)>,
    pub syndrome: String,
    pub by: String,
    pub place: String,
    pub method: String,
}

/// The workbench's treatment-comparison page: the study definition and the comparison.
pub fn cohort_page(
    viewer: &Viewer,
    csrf: &str,
    study: &str,
    parameters: Option<&Value>,
    error: Option<&str>,
) -> String {
    page(
        Some(viewer),
        "Treatment comparison",
        html! {
            form method="post" action="/analytics/cohort" {
                (crate::csrf_field(csrf))
                label for="study" { "Study definition (JSON: condition, two arms, outcome, censoring)" }
                textarea id="study" name="study" rows="12" { (study) }
                p { button type="submit" { "Compare" } }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(parameters) = parameters { (cohort_body(parameters)) }
        },
    )
}

/// The care managers' worklist (`$high-risk`): each patient discharged in the window, their
/// predicted 30-day readmission risk, LACE, and the three factors that add most.
pub fn high_risk_page(viewer: &Viewer, answer: &Value) -> String {
    let parameters = answer["parameter"].as_array().cloned().unwrap_or_default();
    let value = |name: &str| parameters.iter().find(|p| p["name"] == name).cloned().unwrap_or_default();
    let patients: Vec<&Value> = parameters.iter().filter(|p| p["name"] == "patient").collect();
    let as_of = value("asOf")["valueDate"].as_str().unwrap_or("").to_string();
    let auc = value("modelAuc")["valueDecimal"].as_f64();
    page(
        Some(viewer),
        "High-risk patients",
        html! {
            p {
                (patients.len()) " patients discharged in the 30 days up to " (as_of)
                ", most likely to be readmitted first."
                @if let Some(auc) = auc { " The model's held-out AUC is " (format!("{auc:.3}")) "." }
            }
            div.table-wrap tabindex="0" { table {
                caption { "Predicted 30-day readmission risk" }
                thead { tr {
                    th scope="col" { "Patient" } th scope="col" { "Discharged" } th scope="col" { "Risk" }
                    th scope="col" { "LACE" } th scope="col" { "Why" }
                } }
                tbody { @for patient in &patients { tr {
                    @let reference = crate::views::part(patient, "patient")["valueReference"]["reference"].as_str().unwrap_or("").to_string();
                    @let id = reference.trim_start_matches("Patient/").to_string();
                    td { a href=(format!("/patients/{id}")) { (reference) } }
                    td { (crate::text(&crate::views::part(patient, "discharged")["valueDate"])) }
                    td { (crate::views::part(patient, "risk")["valueDecimal"].as_f64().map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_default()) }
                    td { (crate::text(&crate::views::part(patient, "lace")["valueInteger"])) }
                    td { ul {
                        @for factor in patient["part"].as_array().into_iter().flatten().filter(|p| p["name"] == "factor") {
                            li {
                                (crate::views::part(factor, "description")["valueString"].as_str().unwrap_or(""))
                                ": " (crate::text(&crate::views::part(factor, "value")["valueDecimal"]))
                            }
                        }
                    } }
                } } }
            } }
        },
    )
}
