//! The views shipped in the binary: flat tables for health-information management over R4
//! data (patients, encounters, diagnoses, procedures, observations, medications,
//! immunizations, claims and their lines).
//!
//! Each is a ViewDefinition JSON file in `crates/sof/views/`, embedded at build time, so the
//! definitions can be read, copied and run by any SQL on FHIR runner as they are. They follow
//! one convention: columns in snake_case, each with a `type` and a `description`; `id` (or
//! `<thing>_id` where the row is not the resource's own) is `getResourceKey()`, and every
//! foreign key is `getReferenceKey(<Type>)`, so the tables join on equal values:
//!
//! ```text
//! patients.id = <any>.patient_id
//! encounters.id = encounter_diagnoses.encounter_id = diagnoses/procedures/observations/... .encounter_id
//! diagnoses.id = encounter_diagnoses.condition_id
//! claims.id = claim_lines.claim_id
//! ```
//!
//! A view reads one resource type, so "ICD-10-CM diagnoses per encounter, with rank" is the
//! join of `encounter_diagnoses` (Encounter.diagnosis: condition, rank, use) with `diagnoses`
//! (Condition: its ICD-10-CM code); the views' descriptions say so.

use std::sync::OnceLock;

use serde_json::Value as Json;

use crate::ViewDefinition;

/// A built-in view: its definition as shipped and parsed.
#[derive(Debug)]
pub struct Builtin {
    name: &'static str,
    title: String,
    description: String,
    json: &'static str,
    view: ViewDefinition,
}

impl Builtin {
    /// The view's `name` (`patients`), also the usual table name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The view's `title` (`Patients`).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The view's `description`: what one row is and how the view joins the others.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The ViewDefinition JSON exactly as shipped.
    pub fn json(&self) -> &'static str {
        self.json
    }

    /// The parsed and checked definition, ready to run.
    pub fn view(&self) -> &ViewDefinition {
        &self.view
    }
}

/// (name, file contents), in the order [`views`] lists them; the name must equal the file's
/// `name` (checked on load).
const SOURCES: &[(&str, &str)] = &[
    ("patients", include_str!("../views/patients.json")),
    ("encounters", include_str!("../views/encounters.json")),
    ("encounter_diagnoses", include_str!("../views/encounter_diagnoses.json")),
    ("diagnoses", include_str!("../views/diagnoses.json")),
    ("procedures", include_str!("../views/procedures.json")),
    ("observations", include_str!("../views/observations.json")),
    ("medications", include_str!("../views/medications.json")),
    ("immunizations", include_str!("../views/immunizations.json")),
    ("claims", include_str!("../views/claims.json")),
    ("claim_lines", include_str!("../views/claim_lines.json")),
];

/// Every built-in view, parsed on first use.
///
/// # Panics
///
/// If an embedded definition is invalid. They are part of the build and the tests check
/// every one, so this would be a defect of the build, not of its input.
pub fn views() -> &'static [Builtin] {
    static VIEWS: OnceLock<Vec<Builtin>> = OnceLock::new();
    VIEWS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|&(name, json)| load(name, json).unwrap_or_else(|message| panic!("built-in view {message}")))
            .collect()
    })
}

/// The built-in view called `name`.
pub fn get(name: &str) -> Option<&'static Builtin> {
    views().iter().find(|view| view.name == name)
}

fn load(name: &'static str, json: &'static str) -> Result<Builtin, String> {
    // fhir::parse_json rejects duplicate keys, which serde_json would silently resolve to
    // the last one: a column defined twice by mistake must not pass.
    let parsed = fhir::parse_json(json.as_bytes()).map_err(|e| format!("'{name}' is not JSON: {e}"))?;
    let view = ViewDefinition::from_json(&parsed).map_err(|e| format!("'{name}': {e}"))?;
    if view.name() != Some(name) {
        return Err(format!("'{name}' is named {:?} in its file", view.name()));
    }
    let text = |key: &str| parsed.get(key).and_then(Json::as_str).unwrap_or_default().to_string();
    Ok(Builtin { name, title: text("title"), description: text("description"), json, view })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Cell;

    /// Days since 1970-01-01 of a proleptic Gregorian date, by counting whole years and
    /// months: a different method from the view's, so the two check each other.
    fn epoch_day(year: i64, month: i64, day: i64) -> i64 {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let year_length = |y: i64| if leap(y) { 366 } else { 365 };
        let mut days: i64 = if year >= 1970 {
            (1970..year).map(year_length).sum()
        } else {
            -(year..1970).map(year_length).sum::<i64>()
        };
        const MONTHS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for m in 1..month {
            days += MONTHS[m as usize - 1] + i64::from(m == 2 && leap(year));
        }
        days + day - 1
    }

    #[test]
    fn built_in_paths_are_walked_directly() {
        let general: Vec<String> = views()
            .iter()
            .flat_map(|b| b.view().general_paths().into_iter().map(|p| format!("{}: {p}", b.name())))
            .collect();
        assert_eq!(general, Vec::<String>::new());
    }

    fn stay(class: &str, start: &str, end: Option<&str>) -> Json {
        let mut period = json!({"start": start});
        if let Some(end) = end {
            period["end"] = json!(end);
        }
        json!({"resourceType": "Encounter", "id": "e", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
               "period": period})
    }

    fn length_of_stay(encounter: &Json) -> Cell<'_> {
        let view = get("encounters").expect("encounters").view();
        let column =
            view.columns().iter().position(|c| c.name() == "length_of_stay_days").expect("the column");
        let rows = view.rows(encounter).expect("rows");
        assert_eq!(rows.len(), 1);
        rows[0][column].clone()
    }

    #[test]
    fn every_view_loads_under_its_name() {
        let names: Vec<&str> = views().iter().map(Builtin::name).collect();
        assert_eq!(names.len(), SOURCES.len());
        for (name, _) in SOURCES {
            let view = get(name).expect("listed");
            assert_eq!(view.view().name(), Some(*name));
            assert!(!view.title().is_empty() && !view.description().is_empty(), "{name}");
        }
        assert!(get("nonexistent").is_none());
        assert!(load("patients", "{\"name\": 1, \"name\": 2}").unwrap_err().contains("not JSON"));
        let misnamed = load("other", include_str!("../views/patients.json")).unwrap_err();
        assert!(misnamed.contains("is named Some(\"patients\")"), "{misnamed}");
    }

    #[test]
    fn length_of_stay_is_the_calendar_day_difference() {
        // Across month ends, leap days (2000 is a leap year, 1900 and 2100 are not) and years.
        let dates = [
            (1899, 12, 31),
            (1900, 2, 28),
            (1900, 3, 1),
            (1999, 12, 31),
            (2000, 2, 28),
            (2000, 2, 29),
            (2000, 3, 1),
            (2019, 1, 1),
            (2023, 12, 31),
            (2024, 1, 31),
            (2024, 2, 28),
            (2024, 2, 29),
            (2024, 3, 1),
            (2025, 7, 15),
            (2100, 2, 28),
            (2100, 3, 1),
        ];
        for &(y1, m1, d1) in &dates {
            for &(y2, m2, d2) in &dates {
                let start = format!("{y1:04}-{m1:02}-{d1:02}T08:30:00Z");
                let end = format!("{y2:04}-{m2:02}-{d2:02}T17:05:00Z");
                let expected = epoch_day(y2, m2, d2) - epoch_day(y1, m1, d1);
                assert_eq!(
                    length_of_stay(&stay("IMP", &start, Some(&end))),
                    Cell::Integer(expected),
                    "{start} to {end}"
                );
            }
        }
        // Each date as written, in its own offset: late evening to early morning is a day.
        let overnight = stay("IMP", "2024-03-01T23:30:00-05:00", Some("2024-03-02T00:15:00-05:00"));
        assert_eq!(length_of_stay(&overnight), Cell::Integer(1));
        let same_day = stay("ACUTE", "2024-03-01T08:00:00Z", Some("2024-03-01T20:00:00Z"));
        assert_eq!(length_of_stay(&same_day), Cell::Integer(0));
        let dates_only = stay("IMP", "2024-03-01", Some("2024-03-11"));
        assert_eq!(length_of_stay(&dates_only), Cell::Integer(10));
        // Not an inpatient stay, not finished, or not precise to the day: no length.
        assert_eq!(length_of_stay(&stay("AMB", "2024-03-01", Some("2024-03-11"))), Cell::Null);
        assert_eq!(length_of_stay(&stay("IMP", "2024-03-01T08:00:00Z", None)), Cell::Null);
        assert_eq!(length_of_stay(&stay("IMP", "2024-03", Some("2024-04"))), Cell::Null);
        assert_eq!(length_of_stay(&stay("IMP", "2024", Some("2024-03-02"))), Cell::Null);
    }
}
