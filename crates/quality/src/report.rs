//! A run's results, how they are kept between runs, and how they are shown (JSON, HTML, and a
//! FHIR `Parameters` for the HTTP operation).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::checks::{CheckDef, CheckId};

/// One check's outcome.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub check: CheckId,
    pub numerator: u64,
    pub denominator: u64,
    /// Up to the asked number of failing resources (`Type/id`).
    pub examples: Vec<String>,
}

impl CheckResult {
    pub fn new(check: CheckId, numerator: u64, denominator: u64, examples: Vec<String>) -> Self {
        CheckResult { check, numerator, denominator, examples }
    }

    /// The check's entry in the catalogue.
    pub fn definition(&self) -> &'static CheckDef {
        self.check.definition()
    }

    /// Failing resources, in percent of those checked (0 when none was checked).
    pub fn percent(&self) -> f64 {
        if self.denominator == 0 { 0.0 } else { 100.0 * self.numerator as f64 / self.denominator as f64 }
    }

    pub fn passed(&self) -> bool {
        self.percent() <= self.definition().threshold
    }
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub resources: u64,
    pub elapsed: Duration,
    pub checks: Vec<CheckResult>,
    /// The run before, for the trend.
    pub previous: Option<RunSummary>,
}

/// What is kept of a run: when, and each check's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub timestamp: String,
    pub resources: u64,
    /// (check id, numerator, denominator)
    pub checks: Vec<(String, u64, u64)>,
}

impl RunSummary {
    /// The percent of resources failing check `id` in this run, if it ran.
    pub fn percent(&self, id: &str) -> Option<f64> {
        self.checks
            .iter()
            .find(|(check, _, _)| check == id)
            .map(|&(_, n, d)| if d == 0 { 0.0 } else { 100.0 * n as f64 / d as f64 })
    }
}

const RUNS_FILE: &str = "quality-runs.ndjson";

/// Appends a run to the data directory's list of runs.
pub fn record_run(data_dir: &Path, timestamp: &str, report: &Report) -> Result<(), crate::Error> {
    let line = json!({
        "timestamp": timestamp,
        "resources": report.resources,
        "checks": report.checks.iter().map(|c| json!([c.check.as_str(), c.numerator, c.denominator])).collect::<Vec<_>>(),
    });
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join(RUNS_FILE))?;
    // One write of the whole line: two reports appending at once (they run beside the server
    // and beside each other) cannot interleave their lines.
    file.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// The runs kept in the data directory, oldest first.
pub fn load_runs(data_dir: &Path) -> Result<Vec<RunSummary>, crate::Error> {
    let text = match std::fs::read_to_string(data_dir.join(RUNS_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Json =
                serde_json::from_str(line).map_err(|e| crate::Error::Invalid(format!("{RUNS_FILE}: {e}")))?;
            let checks = value["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| Some((c[0].as_str()?.to_string(), c[1].as_u64()?, c[2].as_u64()?)))
                .collect();
            Ok(RunSummary {
                timestamp: value["timestamp"].as_str().unwrap_or_default().to_string(),
                resources: value["resources"].as_u64().unwrap_or_default(),
                checks,
            })
        })
        .collect()
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed()).count()
    }

    /// The report as JSON.
    pub fn to_json(&self, timestamp: &str) -> Json {
        let checks: Vec<Json> = self
            .checks
            .iter()
            .map(|c| {
                let d = c.definition();
                json!({
                    "id": d.id,
                    "name": d.name,
                    "description": d.description,
                    "category": d.category.as_str(),
                    "subcategory": d.subcategory,
                    "context": d.context.as_str(),
                    "resourceType": d.resource_type,
                    "threshold": d.threshold,
                    "dqdCheck": d.dqd_check,
                    "numerator": c.numerator,
                    "denominator": c.denominator,
                    "percent": (c.percent() * 1000.0).round() / 1000.0,
                    "passed": c.passed(),
                    "previousPercent": self.previous.as_ref().and_then(|p| p.percent(d.id)).map(|p| (p * 1000.0).round() / 1000.0),
                    "examples": c.examples,
                })
            })
            .collect();
        json!({
            "timestamp": timestamp,
            "resources": self.resources,
            "seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "passed": self.checks.len() - self.failed(),
            "failed": self.failed(),
            "previousRun": self.previous.as_ref().map(|p| p.timestamp.clone()),
            "checks": checks,
        })
    }

    /// The report as a FHIR `Parameters`: one `check` per check, its fields as parts.
    pub fn to_parameters(&self, timestamp: &str) -> Json {
        let mut parameters = vec![
            json!({ "name": "timestamp", "valueInstant": timestamp }),
            json!({ "name": "resources", "valueInteger": self.resources.min(i32::MAX as u64) }),
        ];
        for c in &self.checks {
            let d = c.definition();
            let mut parts = vec![
                json!({ "name": "id", "valueCode": d.id }),
                json!({ "name": "name", "valueString": d.name }),
                json!({ "name": "category", "valueCode": d.category.as_str() }),
                json!({ "name": "subcategory", "valueCode": d.subcategory }),
                json!({ "name": "context", "valueCode": d.context.as_str() }),
                json!({ "name": "threshold", "valueDecimal": d.threshold }),
                json!({ "name": "numerator", "valueInteger": c.numerator.min(i32::MAX as u64) }),
                json!({ "name": "denominator", "valueInteger": c.denominator.min(i32::MAX as u64) }),
                json!({ "name": "percent", "valueDecimal": (c.percent() * 1000.0).round() / 1000.0 }),
                json!({ "name": "passed", "valueBoolean": c.passed() }),
            ];
            parts.extend(
                c.examples.iter().map(|r| json!({ "name": "example", "valueReference": { "reference": r } })),
            );
            parameters.push(json!({ "name": "check", "part": parts }));
        }
        json!({ "resourceType": "Parameters", "parameter": parameters })
    }

    /// The report as a self-contained HTML page: each check with what it means, the share
    /// failing against its threshold, the trend, and every example the run kept.
    pub fn to_html(&self, timestamp: &str) -> String {
        let escape = |text: &str| {
            text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
        };
        let mut rows = String::new();
        for c in &self.checks {
            let d = c.definition();
            let share = match self.previous.as_ref().and_then(|p| p.percent(d.id)) {
                Some(before) => format!("{} &rarr; {}", percent_text(before), percent_text(c.percent())),
                None => percent_text(c.percent()),
            };
            let examples = if c.examples.is_empty() {
                String::new()
            } else {
                let listed: Vec<String> = c.examples.iter().map(|e| escape(e)).collect();
                let more = c.numerator.saturating_sub(c.examples.len() as u64);
                format!(
                    "<details><summary>{} example{}{}</summary>{}</details>",
                    c.examples.len(),
                    if c.examples.len() == 1 { "" } else { "s" },
                    if more > 0 { format!(" of {}", c.numerator) } else { String::new() },
                    listed.join(", ")
                )
            };
            rows.push_str(&format!(
                "<tr class=\"{class}\"><td><b>{name}</b><br><small>{description}</small></td><td>{category} / {subcategory}</td>\
                 <td>{context}</td><td>{resource_type}</td><td class=\"n\">{numerator}</td><td class=\"n\">{denominator}</td>\
                 <td class=\"n\">{share}</td><td class=\"n\">&le; {threshold}</td><td>{result}</td><td>{examples}</td></tr>\n",
                class = if c.passed() { "pass" } else { "fail" },
                name = escape(d.name),
                description = escape(d.description),
                category = d.category.as_str(),
                subcategory = d.subcategory,
                context = d.context.as_str(),
                resource_type = d.resource_type,
                numerator = c.numerator,
                denominator = c.denominator,
                threshold = percent_text(d.threshold),
                result = if c.passed() { "pass" } else { "FAIL" },
            ));
        }
        let previous = match &self.previous {
            Some(run) => format!(" Trend against the run of {}.", escape(&run.timestamp)),
            None => String::new(),
        };
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chartroom data quality {timestamp}</title>\n\
             <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}\
             td.n{{text-align:right;white-space:nowrap}}small{{color:#444}}tr.fail{{background:#fde2e2}}tr.pass{{background:#e6f4e6}}</style></head><body>\n\
             <h1>Data quality</h1><p>{timestamp}: {} resources, {} checks passed, {} failed.{previous} \
             A check fails when the share of failing resources is above its threshold.</p>\n\
             <table><tr><th>Check</th><th>Category</th><th>Context</th><th>Resources</th>\
             <th>Failing</th><th>Checked</th><th>Failing share</th><th>Threshold</th><th>Result</th><th>Examples</th></tr>\n{rows}</table></body></html>\n",
            self.resources,
            self.checks.len() - self.failed(),
            self.failed(),
        )
    }
}

/// A share in percent as people read it: two decimals, but never "0.00%" for a share that is
/// not zero (a failing check must not look clean), and whole numbers without decimals.
pub fn percent_text(percent: f64) -> String {
    if percent == 0.0 {
        "0%".to_string()
    } else if percent.fract() == 0.0 {
        format!("{percent:.0}%")
    } else if percent < 0.01 {
        // Two significant digits.
        let digits = (-percent.log10().floor()) as usize + 1;
        format!("{percent:.digits$}%")
    } else {
        format!("{percent:.2}%")
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckResult, Report, percent_text};
    use crate::checks::CheckId;

    #[test]
    fn the_html_lists_every_example_kept() {
        let examples: Vec<String> = (1..=8).map(|i| format!("Patient/p{i}")).collect();
        let report = Report {
            resources: 100,
            elapsed: std::time::Duration::ZERO,
            checks: vec![CheckResult::new(CheckId::ALL[0], 9, 100, examples.clone())],
            previous: None,
        };
        let html = report.to_html("2026-12-06T00:00:00Z");
        assert!(examples.iter().all(|e| html.contains(e.as_str())), "{html}");
        assert!(html.contains("8 examples of 9"), "{html}");
    }

    #[test]
    fn a_small_share_never_reads_as_zero() {
        assert_eq!(percent_text(0.0), "0%");
        assert_eq!(percent_text(0.0031), "0.0031%");
        assert_eq!(percent_text(0.004), "0.0040%");
        assert_eq!(percent_text(12.3456), "12.35%");
        assert_eq!(percent_text(5.0), "5%");
        assert_eq!(percent_text(100.0), "100%");
    }
}
