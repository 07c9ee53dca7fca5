//! Outbreak early warning over the record: every syndrome × place series counted from the
//! record ([`crate::record::syndromic`]) and judged by one aberration-detection method
//! ([`crate::surveillance`]), with the answer as FHIR resources.
//!
//! The method and its control parameters are given by name ([`Settings::set`]), with R's names
//! in kebab case (`min-sigma`) or as R spells them (`minSigma`), so the command line and the
//! `$surveillance` operation read them the same way.
//!
//! The answer ([`SurveillanceReport::to_bundle`]) is a `collection` Bundle: one `MeasureReport`
//! per series (its syndrome as `group.code`, its place in the `surveillance-place`
//! extension, every period's count in `surveillance-counts`, one `stratum` per judged period
//! with the count as its population and the period's number, threshold and alarm as
//! extensions) and one `DetectedIssue` per alarmed period, whose
//! `evidence` points at its series.

use serde::Serialize;
use serde_json::{Value as Json, json};
use store::Store;

use crate::record::date_of_day;
use crate::record::syndromic::{Interval, PlaceLevel, SyndromicCounts, Timeline, count_syndromes};
use crate::surveillance::{
    CusumControl, CusumTrans, EarsControl, EarsMethod, FarringtonControl, Judgement, PowerTrans,
    ThresholdMethod, cusum, ears, farrington_flexible,
};
use crate::syndromes::Matcher;
use crate::{Error, Result};

/// The base of the extensions and code systems the report defines.
pub const DEFINITIONS: &str = "https://chartroom.dev/fhir";

/// An aberration-detection method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    EarsC1,
    EarsC2,
    EarsC3,
    Cusum,
    Farrington,
}

impl Method {
    pub const ALL: [Method; 5] =
        [Method::EarsC1, Method::EarsC2, Method::EarsC3, Method::Cusum, Method::Farrington];

    pub fn name(self) -> &'static str {
        match self {
            Method::EarsC1 => "ears-c1",
            Method::EarsC2 => "ears-c2",
            Method::EarsC3 => "ears-c3",
            Method::Cusum => "cusum",
            Method::Farrington => "farrington",
        }
    }

    pub fn parse(text: &str) -> Result<Method> {
        Method::ALL.into_iter().find(|m| m.name() == text).ok_or_else(|| {
            Error::Invalid(format!(
                "method '{text}' is not known (one of {})",
                Method::ALL.map(Method::name).join(", ")
            ))
        })
    }
}

/// A method with its control parameters, ready to judge series.
#[derive(Clone, Debug)]
pub enum Detector {
    Ears(EarsControl),
    Cusum(CusumControl),
    Farrington(FarringtonControl),
}

impl Detector {
    /// Judges one series (R's `control$range` where the control sets one).
    pub fn judge(&self, counts: &[f64]) -> Result<Vec<Judgement>> {
        match self {
            Detector::Ears(control) => ears(counts, control),
            Detector::Cusum(control) => cusum(counts, control),
            Detector::Farrington(control) => farrington_flexible(counts, control),
        }
    }
}

/// The method and the control parameters given by name; those not given take R's defaults
/// (or, over the record, [`Settings::for_record`]'s).
#[derive(Clone, Debug)]
pub struct Settings {
    pub method: Method,
    given: Vec<(String, String)>,
}

/// Every control parameter's name in kebab case, the methods it applies to, and what it is.
pub const PARAMETERS: &[(&str, &str, &str)] = &[
    ("range", "all", "FROM:TO, the 1-based periods to judge (R's control$range)"),
    ("frequency", "farrington", "periods per year (52 weekly, 365 daily)"),
    ("baseline", "ears", "reference periods B (7)"),
    ("alpha", "ears, farrington", "one-sided level (EARS C1/C2 0.001, C3 0.025; Farrington 0.05)"),
    ("min-sigma", "ears", "floor on the reference standard deviation (0)"),
    ("k", "cusum", "reference value k (1.04)"),
    ("h", "cusum", "decision interval h (2.26)"),
    ("m", "cusum", "expected count m (the mean of the periods before the range)"),
    ("trans", "cusum", "standard or rossi (standard)"),
    ("reset", "cusum", "reset the statistic after an alarm (false)"),
    ("b", "farrington", "years back (5)"),
    ("w", "farrington", "half-window in periods (3)"),
    ("reweight", "farrington", "reweight past outbreaks (true)"),
    ("weights-threshold", "farrington", "Anscombe residual above which a period is down-weighted (2.58)"),
    ("trend", "farrington", "fit a time trend (true)"),
    ("p-threshold-trend", "farrington", "p-value below which the trend is kept (0.05)"),
    ("limit54", "farrington", "CASES,PERIODS: no alarm with fewer cases in the last periods (5,4)"),
    ("powertrans", "farrington", "2/3, 1/2 or none (2/3)"),
    ("no-periods", "farrington", "levels of the seasonal factor (1; 10 in Noufaily 2012)"),
    ("past-weeks-not-included", "farrington", "recent periods left out of the fit (w; 26 in Noufaily 2012)"),
    ("threshold-method", "farrington", "delta, nbPlugin or muan (delta)"),
];

/// `minSigma` and `min-sigma` are the same parameter.
fn canonical(name: &str) -> String {
    name.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect()
}

impl Settings {
    pub fn new(method: Method) -> Settings {
        Settings { method, given: Vec::new() }
    }

    /// Sets a control parameter by its R name (kebab case or as R spells it).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = canonical(name);
        let Some((kebab, applies, _)) = PARAMETERS.iter().find(|(n, _, _)| canonical(n) == key) else {
            return Err(Error::Invalid(format!(
                "'{name}' is not a control parameter (known: {})",
                PARAMETERS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            )));
        };
        let family = match self.method {
            Method::EarsC1 | Method::EarsC2 | Method::EarsC3 => "ears",
            Method::Cusum => "cusum",
            Method::Farrington => "farrington",
        };
        if *applies != "all" && !applies.contains(family) {
            return Err(Error::Invalid(format!(
                "'{kebab}' does not apply to {} (it is for {applies})",
                self.method.name()
            )));
        }
        self.given.retain(|(n, _)| n != kebab);
        self.given.push((kebab.to_string(), value.trim().to_string()));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.given.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The settings in effect, for reports: `ears-c2(baseline=7, min-sigma=1)`.
    pub fn describe(&self) -> String {
        if self.given.is_empty() {
            return self.method.name().to_string();
        }
        let given: Vec<String> = self.given.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{}({})", self.method.name(), given.join(", "))
    }

    /// Over the record, where counts are sparse in small places and the history may be short:
    /// EARS C2 with a standard-deviation floor of 1 (Burkom's advice for sparse counts, so a
    /// single case after quiet weeks is no alarm); CUSUM judged after the first year, whose
    /// mean is `m`; Farrington with as many years back (up to R's 5) as leave half the series
    /// to judge. Parameters given explicitly win.
    pub fn for_record(mut self, interval: Interval, periods: usize) -> Settings {
        match self.method {
            Method::EarsC1 | Method::EarsC2 | Method::EarsC3 if self.get("min-sigma").is_none() => {
                self.given.push(("min-sigma".into(), "1".into()));
            }
            // R's algo.cusum has no default range; over the record the first year sets m.
            Method::Cusum if self.get("range").is_none() && self.get("m").is_none() => {
                let start = interval.frequency() + 1;
                if periods > start {
                    self.given.push(("range".into(), format!("{start}:{periods}")));
                }
            }
            Method::Farrington => {
                if self.get("frequency").is_none() {
                    self.given.push(("frequency".into(), interval.frequency().to_string()));
                }
                if self.get("b").is_none() {
                    let frequency = interval.frequency();
                    let years = ((periods / 2).saturating_sub(4) / frequency).clamp(1, 5);
                    self.given.push(("b".into(), years.to_string()));
                }
            }
            _ => {}
        }
        self
    }

    /// The detector with every given parameter parsed and checked.
    pub fn detector(&self) -> Result<Detector> {
        let range = self.get("range").map(parse_range).transpose()?;
        Ok(match self.method {
            Method::EarsC1 | Method::EarsC2 | Method::EarsC3 => {
                let mut control = EarsControl {
                    method: match self.method {
                        Method::EarsC1 => EarsMethod::C1,
                        Method::EarsC2 => EarsMethod::C2,
                        _ => EarsMethod::C3,
                    },
                    range,
                    ..EarsControl::default()
                };
                if let Some(v) = self.get("baseline") {
                    control.baseline = number(v, "baseline")?;
                }
                if let Some(v) = self.get("alpha") {
                    control.alpha = Some(number(v, "alpha")?);
                }
                if let Some(v) = self.get("min-sigma") {
                    control.min_sigma = number(v, "min-sigma")?;
                }
                Detector::Ears(control)
            }
            Method::Cusum => {
                let mut control = CusumControl { range, ..CusumControl::default() };
                if let Some(v) = self.get("k") {
                    control.k = number(v, "k")?;
                }
                if let Some(v) = self.get("h") {
                    control.h = number(v, "h")?;
                }
                if let Some(v) = self.get("m") {
                    control.m = Some(number(v, "m")?);
                }
                if let Some(v) = self.get("trans") {
                    control.trans = match v {
                        "standard" => CusumTrans::Standard,
                        "rossi" => CusumTrans::Rossi,
                        other => {
                            return Err(Error::Invalid(format!("trans '{other}' is not standard or rossi")));
                        }
                    };
                }
                if let Some(v) = self.get("reset") {
                    control.reset = boolean(v, "reset")?;
                }
                Detector::Cusum(control)
            }
            Method::Farrington => {
                let mut control = FarringtonControl { range, ..FarringtonControl::default() };
                if let Some(v) = self.get("frequency") {
                    control.frequency = number(v, "frequency")?;
                }
                if let Some(v) = self.get("alpha") {
                    control.alpha = number(v, "alpha")?;
                }
                if let Some(v) = self.get("b") {
                    control.b = number(v, "b")?;
                }
                if let Some(v) = self.get("w") {
                    control.w = number(v, "w")?;
                }
                if let Some(v) = self.get("reweight") {
                    control.reweight = boolean(v, "reweight")?;
                }
                if let Some(v) = self.get("weights-threshold") {
                    control.weights_threshold = number(v, "weights-threshold")?;
                }
                if let Some(v) = self.get("trend") {
                    control.trend = boolean(v, "trend")?;
                }
                if let Some(v) = self.get("p-threshold-trend") {
                    control.p_threshold_trend = number(v, "p-threshold-trend")?;
                }
                if let Some(v) = self.get("limit54") {
                    let (cases, periods) = v.split_once(',').ok_or_else(|| {
                        Error::Invalid(format!("limit54 '{v}' is not CASES,PERIODS (e.g. 5,4)"))
                    })?;
                    control.limit54 = (number(cases, "limit54")?, number(periods, "limit54")?);
                }
                if let Some(v) = self.get("powertrans") {
                    control.powertrans = match v {
                        "2/3" => PowerTrans::TwoThirds,
                        "1/2" => PowerTrans::Half,
                        "none" => PowerTrans::None,
                        other => {
                            return Err(Error::Invalid(format!(
                                "powertrans '{other}' is not 2/3, 1/2 or none"
                            )));
                        }
                    };
                }
                if let Some(v) = self.get("no-periods") {
                    control.no_periods = number(v, "no-periods")?;
                }
                if let Some(v) = self.get("past-weeks-not-included") {
                    control.past_weeks_not_included = Some(number(v, "past-weeks-not-included")?);
                }
                if let Some(v) = self.get("threshold-method") {
                    control.threshold_method = match v {
                        "delta" => ThresholdMethod::Delta,
                        "nbPlugin" | "nbplugin" => ThresholdMethod::NbPlugin,
                        "muan" => ThresholdMethod::Muan,
                        other => {
                            return Err(Error::Invalid(format!(
                                "threshold-method '{other}' is not delta, nbPlugin or muan"
                            )));
                        }
                    };
                }
                Detector::Farrington(control)
            }
        })
    }
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T> {
    text.trim().parse().map_err(|_| Error::Invalid(format!("{name} '{text}' is not a valid number here")))
}

fn boolean(text: &str, name: &str) -> Result<bool> {
    match text.trim() {
        "true" | "TRUE" | "1" | "yes" => Ok(true),
        "false" | "FALSE" | "0" | "no" => Ok(false),
        other => Err(Error::Invalid(format!("{name} '{other}' is not true or false"))),
    }
}

/// `FROM:TO`, 1-based and inclusive.
pub fn parse_range(text: &str) -> Result<(usize, usize)> {
    let (from, to) = text.split_once(':').ok_or_else(|| {
        Error::Invalid(format!("range '{text}' is not FROM:TO (1-based periods, e.g. 105:312)"))
    })?;
    Ok((number(from, "range")?, number(to, "range")?))
}

/// One series with its judgement.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesReport {
    pub syndrome: String,
    pub title: String,
    pub place: String,
    pub counts: Vec<f64>,
    pub judgements: Vec<Judgement>,
    /// Why the series was not judged (too short for the method), if it was not.
    pub not_judged: Option<String>,
}

impl SeriesReport {
    pub fn alarms(&self) -> impl Iterator<Item = &Judgement> {
        self.judgements.iter().filter(|j| j.alarm)
    }
}

/// Every series of the record judged.
#[derive(Clone, Debug, Serialize)]
pub struct SurveillanceReport {
    #[serde(flatten)]
    pub timeline: Timeline,
    pub place_level: PlaceLevel,
    pub method: String,
    pub series: Vec<SeriesReport>,
    pub conditions_read: u64,
    pub unreadable: u64,
}

/// Counts the syndromes over the record and judges every series.
pub fn run(
    store: &dyn Store,
    syndromes: &[Matcher],
    interval: Interval,
    level: PlaceLevel,
    settings: Settings,
) -> Result<SurveillanceReport> {
    let counts = count_syndromes(store, syndromes, interval, level)?;
    judge_all(counts, settings)
}

/// Judges every counted series with the settings (completed for the record).
pub fn judge_all(counts: SyndromicCounts, settings: Settings) -> Result<SurveillanceReport> {
    let settings = settings.for_record(counts.timeline.interval, counts.timeline.periods);
    let detector = settings.detector()?;
    // Series are independent: they are judged on every core, each thread a contiguous share,
    // put back in order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(counts.series.len().max(1));
    let share = counts.series.len().div_ceil(threads).max(1);
    let judged: Vec<Vec<Result<Vec<Judgement>>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = counts
            .series
            .chunks(share)
            .map(|part| {
                let detector = &detector;
                scope.spawn(move || part.iter().map(|one| detector.judge(&one.counts)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut series = Vec::with_capacity(counts.series.len());
    // A series the method cannot judge (too short, or CUSUM's m of 0 over a quiet first year)
    // is reported as not judged; a parameter out of range fails every series alike, and is
    // then the caller's error.
    let mut refusals: Vec<Error> = Vec::new();
    for (one, outcome) in counts.series.iter().zip(judged.into_iter().flatten()) {
        let (judgements, not_judged) = match outcome {
            Ok(judgements) => (judgements, None),
            Err(Error::NotEnoughData(why)) => (Vec::new(), Some(why)),
            Err(other) => {
                let why = other.to_string();
                refusals.push(other);
                (Vec::new(), Some(why))
            }
        };
        series.push(SeriesReport {
            syndrome: one.syndrome.clone(),
            title: one.title.clone(),
            place: one.place.clone(),
            counts: one.counts.clone(),
            judgements,
            not_judged,
        });
    }
    if !series.is_empty() && refusals.len() == series.len() {
        let first = refusals.swap_remove(0);
        if refusals.iter().all(|e| e.to_string() == first.to_string()) {
            return Err(first);
        }
    }
    Ok(SurveillanceReport {
        timeline: counts.timeline,
        place_level: counts.place_level,
        method: settings.describe(),
        series,
        conditions_read: counts.conditions_read,
        unreadable: counts.unreadable,
    })
}

impl SurveillanceReport {
    /// Alarmed periods over all series.
    pub fn alarm_count(&self) -> usize {
        self.series.iter().map(|s| s.alarms().count()).sum()
    }

    /// The answer as a `collection` Bundle: a MeasureReport per series, a DetectedIssue per
    /// alarm (see the module's documentation).
    pub fn to_bundle(&self, now: &str) -> Json {
        let place_kind = match self.place_level {
            PlaceLevel::City => "city",
            PlaceLevel::Zip3 => "zip3",
            PlaceLevel::State => "state",
        };
        let interval = match self.timeline.interval {
            Interval::Day => "day",
            Interval::Week => "week",
        };
        let mut entries = Vec::new();
        let mut issues = Vec::new();
        for (number, series) in self.series.iter().enumerate() {
            let id = format!("surveillance-{}", number + 1);
            let full_url = format!("urn:uuid:7c6f0a52-5e1d-4c1e-9a3b-{:012x}", number + 1);
            let strata: Vec<Json> = series
                .judgements
                .iter()
                .map(|j| {
                    let mut extension = vec![
                        json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-period"), "valueInteger": j.t }),
                        json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-alarm"), "valueBoolean": j.alarm }),
                    ];
                    if j.upperbound.is_finite() {
                        extension.push(json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-upperbound"),
                                              "valueDecimal": round6(j.upperbound) }));
                    }
                    json!({
                        "extension": extension,
                        "value": { "text": self.timeline.period_label(j.t) },
                        "population": [{ "code": population_code(), "count": j.observed.round() as i64 }],
                    })
                })
                .collect();
            let total: f64 = series.counts.iter().sum();
            let mut extension = vec![
                json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-place"),
                        "valueCoding": { "system": format!("{DEFINITIONS}/CodeSystem/place-{place_kind}"), "code": series.place } }),
                json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-method"), "valueString": self.method }),
                json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-interval"), "valueCode": interval }),
                json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-counts"),
                        "valueString": series.counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ") }),
            ];
            if let Some(why) = &series.not_judged {
                extension.push(json!({ "url": format!("{DEFINITIONS}/StructureDefinition/surveillance-not-judged"), "valueString": why }));
            }
            let last_day =
                self.timeline.period_start(self.timeline.periods.max(1)) + self.timeline.interval.days() - 1;
            entries.push(json!({
                "fullUrl": full_url,
                "resource": {
                    "resourceType": "MeasureReport",
                    "id": id,
                    "extension": extension,
                    "status": "complete",
                    "type": "summary",
                    "measure": format!("{DEFINITIONS}/Measure/syndrome-{}", series.syndrome),
                    "date": now,
                    "period": { "start": date_of_day(self.timeline.first_day), "end": date_of_day(last_day) },
                    "group": [{
                        "code": { "coding": [{ "system": format!("{DEFINITIONS}/CodeSystem/syndrome"), "code": series.syndrome, "display": series.title }],
                                  "text": series.title },
                        "population": [{ "code": population_code(), "count": total.round() as i64 }],
                        "stratifier": [{ "code": [{ "text": format!("{interval} of onset") }], "stratum": strata }],
                    }],
                }
            }));
            for alarm in series.alarms() {
                let label = self.timeline.period_label(alarm.t);
                issues.push(json!({
                    "fullUrl": format!("urn:uuid:3e1b2c4d-8f6a-4b5c-9d7e-{:06x}{:06x}", number + 1, alarm.t),
                    "resource": {
                        "resourceType": "DetectedIssue",
                        "status": "final",
                        "code": { "coding": [{ "system": format!("{DEFINITIONS}/CodeSystem/surveillance"), "code": "aberration",
                                               "display": "Unusual count of cases" }],
                                  "text": format!("Unusual count of {} in {}", series.title, series.place) },
                        "severity": "moderate",
                        "identifiedDateTime": date_of_day(self.timeline.period_start(alarm.t)),
                        "detail": format!("{} cases of {} in {} in {label}, above the threshold {} ({})",
                                          alarm.observed, series.title, series.place, round6(alarm.upperbound), self.method),
                        "evidence": [{ "detail": [{ "reference": full_url, "display": format!("{} in {}", series.title, series.place) }] }],
                    }
                }));
            }
        }
        entries.extend(issues);
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": now,
            "total": entries.len(),
            "entry": entries,
        })
    }
}

fn population_code() -> Json {
    json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": "initial-population" }] })
}

fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}
