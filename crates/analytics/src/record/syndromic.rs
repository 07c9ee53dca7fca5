//! Syndrome counts over the record: for each syndrome and place, the number of patients with
//! a condition of the syndrome whose onset falls in each day or ISO week.
//!
//! A case is one patient with one syndrome in one period, however many encounters or
//! conditions show it (a return visit the next day is not a second case). Its day is the
//! condition's onset (`onsetDateTime`, `onsetPeriod.start`, else `recordedDate`); its place is
//! the patient's current home address. Refuted conditions and those entered in error are not
//! counted. Every series spans the same periods, from the first case of any syndrome to the
//! latest onset of any condition in the record, so quiet periods are zeros rather than
//! missing.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use store::Store;

use super::{ConditionFacts, PatientFacts, date_of_day, facts, patient_id};
use crate::Result;
use crate::syndromes::Matcher;

/// The length of one period of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    /// An ISO 8601 week, Monday to Sunday.
    Week,
}

impl Interval {
    /// The periods in a year, as R's `freq`.
    pub fn frequency(self) -> usize {
        match self {
            Interval::Day => 365,
            Interval::Week => 52,
        }
    }

    /// The first day of the period holding `day`.
    pub fn start_of(self, day: i64) -> i64 {
        match self {
            Interval::Day => day,
            // 1970-01-05 was a Monday.
            Interval::Week => day - (day + 3).rem_euclid(7),
        }
    }

    pub fn days(self) -> i64 {
        match self {
            Interval::Day => 1,
            Interval::Week => 7,
        }
    }

    /// The period's name: `2024-03-05`, or the ISO week `2024-W10`.
    pub fn label(self, start: i64) -> String {
        match self {
            Interval::Day => date_of_day(start),
            Interval::Week => {
                // The ISO year is the year of the week's Thursday.
                let thursday = start + 3;
                let (year, _, _) = fhir::datetime::civil_from_days(thursday);
                let week = (thursday - fhir::datetime::days_from_civil(year, 1, 1)) / 7 + 1;
                format!("{year:04}-W{week:02}")
            }
        }
    }
}

/// What part of the home address places a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceLevel {
    City,
    /// The first three digits of the ZIP code (what HIPAA Safe Harbor may keep).
    Zip3,
    State,
}

/// The place a case is counted under when the patient has no such address part.
pub const UNKNOWN_PLACE: &str = "(unknown)";

/// One syndrome in one place, a count per period.
#[derive(Clone, Debug, Serialize)]
pub struct CountSeries {
    pub syndrome: String,
    pub title: String,
    pub place: String,
    pub counts: Vec<f64>,
}

/// The periods every series of a run spans: `periods` days or ISO weeks from `first_day`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Timeline {
    pub interval: Interval,
    /// The first day of period 1 (days since 1970-01-01); 0 with no periods.
    pub first_day: i64,
    pub periods: usize,
}

impl Timeline {
    /// The first day of period `t` (1-based).
    pub fn period_start(&self, t: usize) -> i64 {
        self.first_day + (t as i64 - 1) * self.interval.days()
    }

    pub fn period_label(&self, t: usize) -> String {
        self.interval.label(self.period_start(t))
    }

    /// The period (1-based) holding `day`, if within the series.
    pub fn period_of(&self, day: i64) -> Option<usize> {
        let offset = (self.interval.start_of(day) - self.first_day) / self.interval.days();
        (offset >= 0 && (offset as usize) < self.periods).then_some(offset as usize + 1)
    }
}

/// Every syndrome × place series over the same periods.
#[derive(Clone, Debug, Serialize)]
pub struct SyndromicCounts {
    #[serde(flatten)]
    pub timeline: Timeline,
    pub place_level: PlaceLevel,
    pub series: Vec<CountSeries>,
    /// Conditions read, and how many of those could not be read (not counted).
    pub conditions_read: u64,
    pub unreadable: u64,
}

fn place_of(patient: &PatientFacts, level: PlaceLevel) -> Option<String> {
    let home = patient.home()?;
    let value = match level {
        PlaceLevel::City => home.city.as_deref()?.trim().to_string(),
        PlaceLevel::State => home.state.as_deref()?.trim().to_string(),
        PlaceLevel::Zip3 => {
            let digits: String = home.postal_code.as_deref()?.chars().take(3).collect();
            if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits
        }
    };
    (!value.is_empty()).then_some(value)
}

/// Counts the syndromes' cases per place and period in one pass over Patients and one over
/// Conditions.
pub fn count_syndromes(
    store: &dyn Store,
    syndromes: &[Matcher],
    interval: Interval,
    level: PlaceLevel,
) -> Result<SyndromicCounts> {
    // Places are interned: a patient costs one small integer.
    let mut places: Vec<String> = vec![UNKNOWN_PLACE.to_string()];
    let mut place_index: HashMap<String, u32> = HashMap::new();
    let mut patient_place: HashMap<String, u32> = HashMap::new();
    store.scan_type("Patient", None, &mut |_, id, body| {
        let place = facts::<PatientFacts>(body).and_then(|p| place_of(&p, level));
        let index = match place {
            None => 0,
            Some(place) => *place_index.entry(place.clone()).or_insert_with(|| {
                places.push(place);
                (places.len() - 1) as u32
            }),
        };
        patient_place.insert(id.to_string(), index);
        Ok(())
    })?;

    // Cases: (syndrome, place, period start day), each patient once per period.
    let mut seen: HashSet<(u32, u32, i64)> = HashSet::new();
    let mut cases: HashMap<(u32, u32, i64), u32> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let (mut read, mut unreadable) = (0u64, 0u64);
    let mut patient_numbers: HashMap<String, u32> = HashMap::new();
    store.scan_type("Condition", None, &mut |_, _, body| {
        read += 1;
        let Some(condition) = facts::<ConditionFacts>(body) else {
            unreadable += 1;
            return Ok(());
        };
        if condition.withdrawn() {
            return Ok(());
        }
        let Some(day) = condition.onset_millis().map(|m| m.div_euclid(86_400_000)) else {
            return Ok(());
        };
        let start = interval.start_of(day);
        // The series end with the record's latest onset, and begin with the first case:
        // problem-list conditions dated decades back would otherwise add years of zeros.
        last = last.max(start);
        let Some(patient) = condition.subject.as_ref().and_then(patient_id) else {
            return Ok(());
        };
        for (number, matcher) in syndromes.iter().enumerate() {
            if !condition.icd10cm_codes().any(|code| matcher.matches(code)) {
                continue;
            }
            let next = patient_numbers.len() as u32;
            let patient_number = *patient_numbers.entry(patient.to_string()).or_insert(next);
            if !seen.insert((number as u32, patient_number, start)) {
                continue;
            }
            first = first.min(start);
            let place = patient_place.get(patient).copied().unwrap_or(0);
            *cases.entry((number as u32, place, start)).or_default() += 1;
        }
        Ok(())
    })?;

    let periods = if first > last { 0 } else { ((last - first) / interval.days() + 1) as usize };
    // Cases dated after the latest onset cannot be, but a first case with no later onset
    // leaves `first > last`: then there is nothing to count.
    let mut by_series: HashMap<(u32, u32), Vec<f64>> = HashMap::new();
    for ((syndrome, place, start), count) in cases {
        let counts = by_series.entry((syndrome, place)).or_insert_with(|| vec![0.0; periods]);
        counts[((start - first) / interval.days()) as usize] += f64::from(count);
    }
    let mut keys: Vec<(u32, u32)> = by_series.keys().copied().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| places[a.1 as usize].cmp(&places[b.1 as usize])));
    let series = keys
        .into_iter()
        .map(|key| {
            let syndrome = &syndromes[key.0 as usize].syndrome;
            CountSeries {
                syndrome: syndrome.name.clone(),
                title: syndrome.title.clone(),
                place: places[key.1 as usize].clone(),
                counts: by_series.remove(&key).unwrap_or_default(),
            }
        })
        .collect();
    Ok(SyndromicCounts {
        timeline: Timeline { interval, first_day: if periods == 0 { 0 } else { first }, periods },
        place_level: level,
        series,
        conditions_read: read,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks_start_on_monday_and_are_named_by_their_thursday() {
        let day = |y, m, d| fhir::datetime::days_from_civil(y, m, d);
        // 2021-01-03 is a Sunday in 2020-W53; 2021-01-04 starts 2021-W01.
        assert_eq!(Interval::Week.start_of(day(2021, 1, 3)), day(2020, 12, 28));
        assert_eq!(Interval::Week.label(day(2020, 12, 28)), "2020-W53");
        assert_eq!(Interval::Week.label(day(2021, 1, 4)), "2021-W01");
        assert_eq!(Interval::Week.label(day(2024, 12, 30)), "2025-W01");
        assert_eq!(Interval::Day.label(day(2024, 2, 29)), "2024-02-29");
    }
}
