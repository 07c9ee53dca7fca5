//! The operations report over a small record worked out by hand: two hospitals, four stays
//! (one a readmission, one ending in death, one still in hospital) and two emergency visits,
//! over March and April 2024.

mod support;

use chartroom_analytics::operations::{GroupBy, report};
use serde_json::{Value, json};
use support::FileStore;

fn stay(id: &str, patient: &str, hospital: &str, start: &str, end: Option<&str>, disposition: &str) -> Value {
    let mut encounter = json!({ "resourceType": "Encounter", "id": id, "status": if end.is_some() { "finished" } else { "in-progress" },
        "class": { "code": "IMP" }, "subject": { "reference": format!("Patient/{patient}") },
        "serviceProvider": { "reference": format!("Organization/{hospital}") },
        "period": { "start": start },
        "hospitalization": { "dischargeDisposition": { "coding": [{ "code": disposition }] } } });
    if let Some(end) = end {
        encounter["period"]["end"] = json!(end);
    }
    encounter
}

fn record() -> FileStore {
    let dir = std::env::temp_dir().join(format!("chartroom-operations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let encounters = [
        // a: 3 nights in March (1 to 4), readmitted on the 20th (2 nights).
        stay("s1", "a", "north", "2024-03-01T10:00:00Z", Some("2024-03-04T11:00:00Z"), "home"),
        stay("s2", "a", "north", "2024-03-20T08:00:00Z", Some("2024-03-22T09:00:00Z"), "home"),
        // b: dies after 5 nights spanning the month end (March 29 to April 3).
        stay("s3", "b", "south", "2024-03-29T12:00:00Z", Some("2024-04-03T06:00:00Z"), "exp"),
        // c: admitted on April 28, still in on April 30 (3 nights in April: 28, 29, 30).
        stay("s4", "c", "south", "2024-04-28T12:00:00Z", None, ""),
        json!({ "resourceType": "Encounter", "id": "e1", "status": "finished", "class": { "code": "EMER" },
                "subject": { "reference": "Patient/a" }, "serviceProvider": { "reference": "Organization/north" },
                "period": { "start": "2024-03-19T22:00:00Z", "end": "2024-03-20T07:00:00Z" } }),
        // A finished stay whose end the record lost is not counted (it would fill the census).
        json!({ "resourceType": "Encounter", "id": "lost", "status": "finished", "class": { "code": "IMP" },
                "subject": { "reference": "Patient/d" }, "period": { "start": "2024-03-02T10:00:00Z" } }),
        json!({ "resourceType": "Encounter", "id": "e2", "status": "entered-in-error", "class": { "code": "EMER" },
                "subject": { "reference": "Patient/c" }, "period": { "start": "2024-04-10T22:00:00Z" } }),
    ];
    let lines: Vec<String> = encounters.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("Encounter.ndjson"), lines.join("\n")).unwrap();
    std::fs::write(
        dir.join("Organization.ndjson"),
        [
            json!({ "resourceType": "Organization", "id": "north", "name": "North General" }).to_string(),
            json!({ "resourceType": "Organization", "id": "south", "name": "South Hospital" }).to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let store = FileStore::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    store
}

#[test]
fn census_stays_and_readmissions_are_counted_by_hand() {
    let store = record();
    let report = report(&store, "2024-03-01", "2024-04-30", GroupBy::Facility).unwrap();
    let total = &report.total;
    assert_eq!((total.admissions, total.discharges), (4, 3));
    // Nights: s1 3, s2 2, s3 5 (29, 30, 31 March, 1, 2 April), s4 3.
    assert_eq!(total.bed_days, 13);
    assert!((total.average_daily_census - 13.0 / 61.0).abs() < 1e-12);
    assert!((total.average_length_of_stay - 10.0 / 3.0).abs() < 1e-12);
    // One of the two live discharges was followed by an admission within 30 days.
    assert_eq!(total.readmissions, 1);
    assert!((total.readmission_rate - 0.5).abs() < 1e-12);
    assert_eq!(total.emergency_visits, 1, "the entered-in-error visit is not counted");
    let march = &report.months[0];
    assert_eq!(march.label, "2024-03");
    assert_eq!((march.figures.admissions, march.figures.discharges, march.figures.bed_days), (3, 2, 8));
    let april = &report.months[1];
    assert_eq!((april.figures.admissions, april.figures.discharges, april.figures.bed_days), (1, 1, 5));
    assert!(april.figures.readmission_rate.is_nan(), "April's only discharge ended in death");
    // The census at midnight: March 1 (s1), March 31 (s3), April 30 (s4).
    let census = |day: &str| report.daily_census.iter().find(|(d, _)| d == day).unwrap().1;
    assert_eq!(
        (census("2024-03-01"), census("2024-03-04"), census("2024-03-31"), census("2024-04-30")),
        (1, 0, 1, 1)
    );
    let north = report.groups.iter().find(|g| g.label == "North General").unwrap();
    assert_eq!((north.figures.admissions, north.figures.bed_days, north.figures.emergency_visits), (2, 5, 1));
    assert_eq!(north.reference.as_deref(), Some("Organization/north"));
    let csv = report.to_csv();
    assert!(csv.lines().count() == 1 + 1 + 2 + 2, "{csv}");
    assert!(
        chartroom_analytics::operations::report(&store, "2024-04-30", "2024-03-01", GroupBy::Facility)
            .is_err()
    );
}
