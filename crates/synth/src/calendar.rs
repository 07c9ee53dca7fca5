//! Time and the JSON shapes every generated resource shares. Everything is placed relative to
//! a fixed "today" so output never depends on the clock.

use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Time. Everything is placed relative to a fixed "today" so output never depends on the clock.

pub(crate) const DAY: i64 = 86_400;
/// 2026-01-01: the population is as of this date.
pub(crate) const TODAY: i64 = 20_454;
/// 2019-01-01: encounters are recorded from here on.
pub(crate) const RECORDS_FROM: i64 = 17_897;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

pub(crate) fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A FHIR dateTime (also a valid instant) in UTC.
pub(crate) fn date_time(seconds: i64) -> String {
    let days = seconds.div_euclid(DAY);
    let of_day = seconds.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

pub(crate) fn month_of(days: i64) -> i64 {
    civil_from_days(days).1
}

/// Whole years between two days.
pub(crate) fn years_between(from: i64, to: i64) -> i64 {
    let (y1, m1, d1) = civil_from_days(from);
    let (y2, m2, d2) = civil_from_days(to);
    y2 - y1 - i64::from((m2, d2) < (m1, d1))
}

// ---------------------------------------------------------------------------------------------
// JSON helpers.

pub(crate) fn reference(target: &str) -> Value {
    json!({ "reference": target })
}

pub(crate) fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

pub(crate) fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [coding(system, code, display)] })
}

pub(crate) const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const CPT: &str = "http://www.ama-assn.org/go/cpt";

/// The day of a FHIR date or dateTime (its first ten characters, `YYYY-MM-DD`).
pub(crate) fn day_of(text: &str) -> Option<i64> {
    let part = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    Some(days_from_civil(part(0..4)?, part(5..7)?, part(8..10)?))
}
