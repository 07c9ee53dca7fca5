//! How the hospital's resources are used, over any period: the daily inpatient census,
//! admissions, discharges, average length of stay, bed-days, the 30-day readmission rate and
//! emergency visits, by month and by facility (the encounter's `serviceProvider`) or service
//! (its `serviceType`, else its class).
//!
//! Definitions (those of hospital statistics):
//! - **Census** of a day: inpatients in a bed at midnight ending it (admitted before, not yet
//!   discharged); **bed-days** of a period: nights spent in it (the sum of the census).
//! - **Admissions** and **discharges** are counted in the month they happen; **average length
//!   of stay** is over the month's discharges, in nights.
//! - **Readmission rate**: the month's discharges (alive) followed by another admission of the
//!   same patient within 30 days, over those discharges.
//! - **Emergency visits**: encounters of class EMER starting in the month.
//!
//! One pass over Encounters, one over Organizations (for their names); reads through
//! `store::Store` only.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use store::Store;

use crate::record::{EncounterFacts, INPATIENT_CLASSES, date_of_day, facts, millis};
use crate::{Error, Result};

const DAY: i64 = 86_400_000;

/// What the report groups by besides the month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Facility,
    Service,
}

impl GroupBy {
    pub fn parse(text: &str) -> Result<GroupBy> {
        match text {
            "facility" => Ok(GroupBy::Facility),
            "service" => Ok(GroupBy::Service),
            other => Err(Error::Invalid(format!("by '{other}' is not facility or service"))),
        }
    }
}

/// The figures of one month, one group, or the whole period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub admissions: u64,
    pub discharges: u64,
    pub bed_days: u64,
    /// Bed-days over the days of the period.
    pub average_daily_census: f64,
    /// Over the discharges, in nights (NaN without discharges).
    pub average_length_of_stay: f64,
    pub readmissions: u64,
    /// Readmissions over live discharges (NaN without discharges).
    pub readmission_rate: f64,
    pub emergency_visits: u64,
}

/// One row: a month or a group, with its figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// `YYYY-MM` for a month; the group's name (a facility's, a service) otherwise.
    pub label: String,
    /// The Organization reference of a facility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub figures: Figures,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationsReport {
    pub from: String,
    pub to: String,
    pub grouped_by: String,
    pub total: Figures,
    pub months: Vec<Row>,
    pub groups: Vec<Row>,
    /// (day, census) for every day of the period.
    pub daily_census: Vec<(String, u64)>,
}

#[derive(Deserialize, Default)]
struct OrganizationFacts {
    name: Option<String>,
}

struct Stay {
    patient: String,
    group: String,
    admitted: i64,
    discharged: Option<i64>,
    died: bool,
}

/// The day (since the epoch) of a `YYYY-MM-DD`.
fn day_of(date: &str) -> Result<i64> {
    millis(date)
        .filter(|_| date.len() == 10)
        .map(|m| m.div_euclid(DAY))
        .ok_or_else(|| Error::Invalid(format!("'{date}' is not a date (YYYY-MM-DD)")))
}

fn month_of(day: i64) -> String {
    date_of_day(day)[..7].to_string()
}

/// The report of `from` to `to` (inclusive days), grouped by month and by `by`.
pub fn report(store: &dyn Store, from: &str, to: &str, by: GroupBy) -> Result<OperationsReport> {
    let (first, last) = (day_of(from)?, day_of(to)?);
    if last < first {
        return Err(Error::Invalid(format!("the period ends ({to}) before it starts ({from})")));
    }
    if last - first > 366 * 50 {
        return Err(Error::Invalid("a period of more than fifty years is not a report".into()));
    }
    let mut stays: Vec<Stay> = Vec::new();
    let mut emergencies: Vec<(i64, String)> = Vec::new();
    store.scan_type("Encounter", None, &mut |_, _, body| {
        let Some(encounter) = facts::<EncounterFacts>(body) else { return Ok(()) };
        if encounter.void() {
            return Ok(());
        }
        let class = encounter.class_code();
        let Some(start) = encounter.start_millis() else { return Ok(()) };
        let group = match by {
            GroupBy::Facility => encounter
                .service_provider
                .as_ref()
                .and_then(|r| r.reference.clone())
                .unwrap_or_else(|| "(no facility)".into()),
            GroupBy::Service => encounter
                .service_type
                .as_ref()
                .and_then(|s| s.text.clone().or_else(|| s.coding.iter().find_map(|c| c.display.clone())))
                .unwrap_or_else(|| {
                    match class {
                        "EMER" => "emergency",
                        c if INPATIENT_CLASSES.contains(&c) => "inpatient",
                        _ => "other",
                    }
                    .into()
                }),
        };
        match class {
            "EMER" => emergencies.push((start.div_euclid(DAY), group)),
            c if INPATIENT_CLASSES.contains(&c) => {
                let end = encounter.end_millis();
                // No end: in hospital still, if the encounter says it is going on; otherwise
                // the record is incomplete and the stay is not counted.
                if end.is_none()
                    && !matches!(encounter.status.as_deref(), Some("in-progress" | "onleave" | "arrived"))
                {
                    return Ok(());
                }
                let died = encounter.disposition() == "exp";
                let patient =
                    encounter.subject.as_ref().and_then(crate::record::patient_id).unwrap_or("").to_string();
                stays.push(Stay { patient, group, admitted: start, discharged: end, died });
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut names: HashMap<String, String> = HashMap::new();
    if by == GroupBy::Facility {
        store.scan_type("Organization", None, &mut |_, id, body| {
            if let Some(name) = facts::<OrganizationFacts>(body).and_then(|o| o.name) {
                names.insert(format!("Organization/{id}"), name);
            }
            Ok(())
        })?;
    }
    // Readmissions: by patient, in admission order.
    stays.sort_by(|a, b| a.patient.cmp(&b.patient).then(a.admitted.cmp(&b.admitted)));
    let mut readmitted = vec![false; stays.len()];
    for i in 0..stays.len() {
        let Some(discharged) = stays[i].discharged else { continue };
        if stays[i].patient.is_empty() || stays[i].died {
            continue;
        }
        let discharge_day = discharged.div_euclid(DAY);
        readmitted[i] = stays[i + 1..]
            .iter()
            .take_while(|next| next.patient == stays[i].patient)
            .any(|next| next.admitted > discharged && next.admitted.div_euclid(DAY) - discharge_day <= 30);
    }

    // Accumulate per month and per group.
    #[derive(Default)]
    struct Tally {
        admissions: u64,
        discharges: u64,
        live_discharges: u64,
        nights_of_discharges: u64,
        bed_days: u64,
        readmissions: u64,
        emergency_visits: u64,
        days: u64,
    }
    let mut months: BTreeMap<String, Tally> = BTreeMap::new();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    let mut census = vec![0u64; (last - first + 1) as usize];
    let mut changes = vec![0i64; census.len() + 1];
    for day in first..=last {
        months.entry(month_of(day)).or_default().days += 1;
    }
    for (i, stay) in stays.iter().enumerate() {
        let admit_day = stay.admitted.div_euclid(DAY);
        let discharge_day = stay.discharged.map(|d| d.div_euclid(DAY));
        let tallies = |month: String| (month, stay.group.clone());
        if (first..=last).contains(&admit_day) {
            let (month, group) = tallies(month_of(admit_day));
            for tally in [months.entry(month).or_default(), groups.entry(group).or_default()] {
                tally.admissions += 1;
            }
            total.admissions += 1;
        }
        if let Some(day) = discharge_day
            && (first..=last).contains(&day)
        {
            let nights = (day - admit_day).max(0) as u64;
            let (month, group) = tallies(month_of(day));
            let live = !stay.died;
            for tally in [months.entry(month).or_default(), groups.entry(group).or_default(), &mut total] {
                tally.discharges += 1;
                tally.nights_of_discharges += nights;
                if live {
                    tally.live_discharges += 1;
                    tally.readmissions += u64::from(readmitted[i]);
                }
            }
        }
        // The nights of the stay inside the period (midnight ending day d counts when admitted
        // on or before d and discharged after it), as a range added to the census's
        // difference array; its length is the group's bed-days.
        let stay_last_night = discharge_day.map_or(last, |d| d - 1);
        let (from_night, to_night) = (admit_day.max(first), stay_last_night.min(last));
        if from_night <= to_night {
            changes[(from_night - first) as usize] += 1;
            changes[(to_night - first + 1) as usize] -= 1;
            let nights = (to_night - from_night + 1) as u64;
            groups.entry(stay.group.clone()).or_default().bed_days += nights;
            total.bed_days += nights;
        }
    }
    let mut running = 0i64;
    for (at, change) in changes.iter().take(census.len()).enumerate() {
        running += change;
        census[at] = running.max(0) as u64;
        months.entry(month_of(first + at as i64)).or_default().bed_days += census[at];
    }
    for (day, group) in &emergencies {
        if (first..=last).contains(day) {
            months.entry(month_of(*day)).or_default().emergency_visits += 1;
            groups.entry(group.clone()).or_default().emergency_visits += 1;
            total.emergency_visits += 1;
        }
    }
    let days_in_period = (last - first + 1) as u64;
    total.days = days_in_period;
    let figures = |t: &Tally, days: u64| Figures {
        admissions: t.admissions,
        discharges: t.discharges,
        bed_days: t.bed_days,
        average_daily_census: t.bed_days as f64 / days.max(1) as f64,
        average_length_of_stay: if t.discharges > 0 {
            t.nights_of_discharges as f64 / t.discharges as f64
        } else {
            f64::NAN
        },
        readmissions: t.readmissions,
        readmission_rate: if t.live_discharges > 0 {
            t.readmissions as f64 / t.live_discharges as f64
        } else {
            f64::NAN
        },
        emergency_visits: t.emergency_visits,
    };
    Ok(OperationsReport {
        from: from.to_string(),
        to: to.to_string(),
        grouped_by: match by {
            GroupBy::Facility => "facility",
            GroupBy::Service => "service",
        }
        .into(),
        total: figures(&total, days_in_period),
        months: months
            .iter()
            .map(|(month, t)| Row { label: month.clone(), reference: None, figures: figures(t, t.days) })
            .collect(),
        groups: groups
            .iter()
            .map(|(group, t)| Row {
                label: names.get(group).cloned().unwrap_or_else(|| group.clone()),
                reference: (by == GroupBy::Facility && group.starts_with("Organization/"))
                    .then(|| group.clone()),
                figures: figures(t, days_in_period),
            })
            .collect(),
        daily_census: census.iter().enumerate().map(|(i, n)| (date_of_day(first + i as i64), *n)).collect(),
    })
}

impl OperationsReport {
    /// The report as CSV: one line per month and per group (`kind` month or the grouping).
    pub fn to_csv(&self) -> String {
        let mut text = String::from(
            "kind,label,admissions,discharges,bed_days,average_daily_census,average_length_of_stay,readmissions,readmission_rate,emergency_visits\n",
        );
        let number = |v: f64| if v.is_finite() { format!("{v:.4}") } else { String::new() };
        let mut line = |kind: &str, label: &str, f: &Figures| {
            let label = if label.contains([',', '"']) {
                format!("\"{}\"", label.replace('"', "\"\""))
            } else {
                label.to_string()
            };
            text.push_str(&format!(
                "{kind},{label},{},{},{},{},{},{},{},{}\n",
                f.admissions,
                f.discharges,
                f.bed_days,
                number(f.average_daily_census),
                number(f.average_length_of_stay),
                f.readmissions,
                number(f.readmission_rate),
                f.emergency_visits
            ));
        };
        line("total", &format!("{} to {}", self.from, self.to), &self.total);
        for row in &self.months {
            line("month", &row.label, &row.figures);
        }
        for row in &self.groups {
            line(&self.grouped_by, &row.label, &row.figures);
        }
        text
    }

    /// The report as a FHIR Parameters (`$operations-report`).
    pub fn to_parameters(&self) -> serde_json::Value {
        use serde_json::json;
        let figures = |f: &Figures| -> Vec<serde_json::Value> {
            let mut parts = vec![
                json!({ "name": "admissions", "valueInteger": f.admissions }),
                json!({ "name": "discharges", "valueInteger": f.discharges }),
                json!({ "name": "bedDays", "valueInteger": f.bed_days }),
                json!({ "name": "averageDailyCensus", "valueDecimal": (f.average_daily_census * 1e4).round() / 1e4 }),
                json!({ "name": "readmissions", "valueInteger": f.readmissions }),
                json!({ "name": "emergencyVisits", "valueInteger": f.emergency_visits }),
            ];
            if f.average_length_of_stay.is_finite() {
                parts.push(json!({ "name": "averageLengthOfStay", "valueDecimal": (f.average_length_of_stay * 1e4).round() / 1e4 }));
            }
            if f.readmission_rate.is_finite() {
                parts.push(json!({ "name": "readmissionRate", "valueDecimal": (f.readmission_rate * 1e4).round() / 1e4 }));
            }
            parts
        };
        let mut parameter = vec![
            json!({ "name": "from", "valueDate": self.from }),
            json!({ "name": "to", "valueDate": self.to }),
            json!({ "name": "by", "valueCode": self.grouped_by }),
            json!({ "name": "total", "part": figures(&self.total) }),
        ];
        for row in &self.months {
            let mut part = vec![json!({ "name": "month", "valueString": row.label })];
            part.extend(figures(&row.figures));
            parameter.push(json!({ "name": "month", "part": part }));
        }
        for row in &self.groups {
            let mut part = vec![json!({ "name": "label", "valueString": row.label })];
            if let Some(reference) = &row.reference {
                part.push(json!({ "name": "facility", "valueReference": { "reference": reference } }));
            }
            part.extend(figures(&row.figures));
            parameter.push(json!({ "name": "group", "part": part }));
        }
        for (day, census) in &self.daily_census {
            parameter.push(json!({ "name": "census", "part": [
                { "name": "day", "valueDate": day }, { "name": "inpatients", "valueInteger": census } ] }));
        }
        json!({ "resourceType": "Parameters", "parameter": parameter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_checked() {
        assert!(day_of("2024").is_err());
        assert_eq!(month_of(day_of("2024-03-31").unwrap()), "2024-03");
        assert!(GroupBy::parse("ward").is_err());
    }
}
