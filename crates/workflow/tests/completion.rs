//! Record completion with a test clock: each deficiency rule opens when its document is due
//! and missing (not before), is owed by the right clinician, becomes a Task, and closes when
//! the document arrives; the delinquency report counts ages, the 30-day line and the
//! completion rate.

mod support;

use chartroom_workflow::completion::{self, Policy, Rule};
use chartroom_workflow::{Clock, DAY, FixedClock, HOUR};
use serde_json::{Value, json};
use store::Store;
use support::{at, empty_store, put};

const DISCHARGED: &str = "2025-03-05T12:00:00Z";

fn document(id: &str, loinc: &str, encounter: &str, extra: Value) -> Value {
    let mut doc = json!({
        "resourceType": "DocumentReference", "id": id, "status": "current", "docStatus": "final",
        "type": { "coding": [{ "system": "http://loinc.org", "code": loinc }] },
        "subject": { "reference": "Patient/pa" }, "date": "2025-03-05T13:00:00Z",
        "author": [{ "reference": "Practitioner/dr-author" }],
        "authenticator": { "reference": "Practitioner/dr-author" },
        "content": [{ "attachment": { "contentType": "text/plain", "data": "Tm90ZQ==" } }],
        "context": { "encounter": [{ "reference": format!("Encounter/{encounter}") }] },
    });
    doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    doc
}

fn stay(store: &dyn Store) {
    put(store, json!({ "resourceType": "Patient", "id": "pa" }));
    put(
        store,
        json!({ "resourceType": "Encounter", "id": "stay", "status": "finished", "class": { "code": "IMP" },
            "subject": { "reference": "Patient/pa" },
            "participant": [
                { "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CON" }] }],
                  "individual": { "reference": "Practitioner/dr-consultant" } },
                { "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND" }] }],
                  "individual": { "reference": "Practitioner/dr-attending" } }],
            "period": { "start": "2025-03-01T08:00:00Z", "end": DISCHARGED } }),
    );
}

fn rules(found: &[completion::Deficiency]) -> Vec<(&'static str, String, Option<String>)> {
    found.iter().map(|d| (d.rule.code(), d.focus.clone(), d.responsible.clone())).collect()
}

#[test]
fn a_stay_owes_its_summary_and_history_when_due_and_not_before() {
    let store = empty_store("completion-stay");
    stay(&store);
    let policy = Policy::default();
    // Admitted 2025-03-01 08:00: the history and physical is due 24 hours later.
    assert!(completion::find(&store, &policy, at("2025-03-02T07:59:00Z")).unwrap().is_empty());
    let found = completion::find(&store, &policy, at("2025-03-02T08:00:00Z")).unwrap();
    assert_eq!(
        rules(&found),
        vec![("history-and-physical", "Encounter/stay".into(), Some("Practitioner/dr-attending".into()))]
    );
    // The discharge summary is due 14 days after discharge, owed by the attending.
    let clock = FixedClock::at(at(DISCHARGED) + 14 * DAY - 1);
    assert_eq!(completion::find(&store, &policy, clock.now_millis()).unwrap().len(), 1);
    clock.advance(1);
    let found = completion::find(&store, &policy, clock.now_millis()).unwrap();
    assert_eq!(found[0].rule, Rule::DischargeSummary);
    assert_eq!(found[0].responsible.as_deref(), Some("Practitioner/dr-attending"));
    assert_eq!(found[0].due, at(DISCHARGED) + 14 * DAY);

    // A summary entered in error is not the record's; a current one is.
    put(&store, document("ds-wrong", "18842-5", "stay", json!({ "status": "entered-in-error" })));
    put(&store, document("hp", "34117-2", "stay", json!({})));
    let found = completion::find(&store, &policy, clock.now_millis()).unwrap();
    assert_eq!(
        rules(&found),
        vec![("discharge-summary", "Encounter/stay".into(), Some("Practitioner/dr-attending".into()))]
    );
    put(&store, document("ds", "18842-5", "stay", json!({})));
    assert!(completion::find(&store, &policy, clock.now_millis()).unwrap().is_empty());

    // An ambulatory visit owes neither.
    put(
        &store,
        json!({ "resourceType": "Encounter", "id": "visit", "status": "finished", "class": { "code": "AMB" },
            "subject": { "reference": "Patient/pa" }, "period": { "start": "2025-03-01T08:00:00Z", "end": "2025-03-01T09:00:00Z" } }),
    );
    assert!(completion::find(&store, &policy, clock.now_millis()).unwrap().is_empty());
}

#[test]
fn a_note_must_be_final_and_authenticated_by_its_author() {
    let store = empty_store("completion-signature");
    stay(&store);
    put(&store, document("hp", "34117-2", "stay", json!({})));
    put(&store, document("ds", "18842-5", "stay", json!({ "docStatus": "preliminary" })));
    let mut unauthenticated = document("progress", "11506-3", "stay", json!({}));
    unauthenticated.as_object_mut().unwrap().remove("authenticator");
    put(&store, unauthenticated);
    let policy = Policy::default();
    // Written at 13:00 on the day of discharge: due signed 72 hours later.
    let written = at("2025-03-05T13:00:00Z");
    assert!(completion::find(&store, &policy, written + 72 * HOUR - 1).unwrap().is_empty());
    let found = completion::find(&store, &policy, written + 72 * HOUR).unwrap();
    assert_eq!(
        rules(&found),
        vec![
            ("unsigned-note", "DocumentReference/ds".into(), Some("Practitioner/dr-author".into())),
            ("unsigned-note", "DocumentReference/progress".into(), Some("Practitioner/dr-author".into())),
        ]
    );
}

#[test]
fn a_surgical_procedure_owes_its_operative_report_to_the_surgeon() {
    let store = empty_store("completion-operative");
    stay(&store);
    put(&store, document("hp", "34117-2", "stay", json!({})));
    put(&store, document("ds", "18842-5", "stay", json!({})));
    let procedure = |id: &str, system: &str, code: &str| {
        json!({ "resourceType": "Procedure", "id": id, "status": "completed",
            "code": { "coding": [{ "system": system, "code": code }] },
            "subject": { "reference": "Patient/pa" }, "encounter": { "reference": "Encounter/stay" },
            "performedPeriod": { "start": "2025-03-02T10:00:00Z", "end": "2025-03-02T12:00:00Z" },
            "performer": [{ "actor": { "reference": "Practitioner/dr-surgeon" } }] })
    };
    put(&store, procedure("hip", "http://www.cms.gov/Medicare/Coding/ICD10", "0SR9019"));
    // A colonoscopy coded in SNOMED with no surgical category is not surgery here.
    put(&store, procedure("scope", "http://snomed.info/sct", "73761001"));
    let policy = Policy::default();
    assert!(completion::find(&store, &policy, at("2025-03-03T11:59:00Z")).unwrap().is_empty());
    let found = completion::find(&store, &policy, at("2025-03-03T12:00:00Z")).unwrap();
    assert_eq!(
        rules(&found),
        vec![("operative-report", "Procedure/hip".into(), Some("Practitioner/dr-surgeon".into()))]
    );
    let mut report = document("op", "11504-8", "stay", json!({}));
    report["context"]["related"] = json!([{ "reference": "Procedure/hip" }]);
    put(&store, report);
    assert!(completion::find(&store, &policy, at("2025-03-03T12:00:00Z")).unwrap().is_empty());
}

#[test]
fn deficiencies_become_tasks_once_and_close_when_the_document_arrives() {
    let store = empty_store("completion-tasks");
    stay(&store);
    put(&store, document("hp", "34117-2", "stay", json!({})));
    let policy = Policy::default();
    let clock = FixedClock::at(at(DISCHARGED) + 20 * DAY);
    let first = completion::sync(&store, &policy, clock.now_millis()).unwrap();
    assert_eq!(first.open.len(), 1);
    assert!(first.close.is_empty());
    let task = &first.open[0];
    assert_eq!(task["owner"]["reference"], "Practitioner/dr-attending");
    assert_eq!(task["focus"]["reference"], "Encounter/stay");
    assert_eq!(task["for"]["reference"], "Patient/pa");
    assert_eq!(task["input"][0]["valueCode"], "discharge-summary");
    assert_eq!(task["authoredOn"], "2025-03-19T12:00:00Z");
    put(&store, task.clone());
    // Running again opens nothing twice.
    let again = completion::sync(&store, &policy, clock.now_millis()).unwrap();
    assert!(again.open.is_empty() && again.close.is_empty() && again.reassign.is_empty());
    // The attending changes: the Task follows.
    let mut encounter: Value =
        serde_json::from_slice(store.read("Encounter", "stay").unwrap().unwrap().body.as_deref().unwrap())
            .unwrap();
    encounter["participant"][1]["individual"]["reference"] = json!("Practitioner/dr-new");
    put(&store, encounter);
    let moved = completion::sync(&store, &policy, clock.now_millis()).unwrap();
    assert_eq!(moved.reassign.len(), 1);
    assert_eq!(moved.reassign[0].1["owner"]["reference"], "Practitioner/dr-new");
    put(&store, moved.reassign[0].1.clone());
    // The summary arrives: the Task is completed, when seen.
    clock.advance(DAY);
    put(&store, document("ds", "18842-5", "stay", json!({})));
    let closed = completion::sync(&store, &policy, clock.now_millis()).unwrap();
    assert!(closed.open.is_empty());
    assert_eq!(closed.close.len(), 1);
    let (version, task) = &closed.close[0];
    assert_eq!(*version, 2);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["executionPeriod"]["end"], "2025-03-26T12:00:00Z");
    put(&store, task.clone());
    assert!(completion::open_tasks(&store).unwrap().is_empty());
}

#[test]
fn the_delinquency_report_counts_ages_the_thirty_day_line_and_the_rate() {
    let store = empty_store("completion-report");
    stay(&store);
    put(&store, document("hp", "34117-2", "stay", json!({})));
    // A second stay, complete.
    put(
        &store,
        json!({ "resourceType": "Encounter", "id": "stay-2", "status": "finished", "class": { "code": "IMP" },
            "subject": { "reference": "Patient/pa" },
            "participant": [{ "individual": { "reference": "Practitioner/dr-other" } }],
            "period": { "start": "2025-03-10T08:00:00Z", "end": "2025-03-12T12:00:00Z" } }),
    );
    put(&store, document("hp-2", "34117-2", "stay-2", json!({})));
    put(&store, document("ds-2", "18842-5", "stay-2", json!({})));
    let policy = Policy::default();
    // 30 days after discharge: owed, not yet delinquent.
    let report = completion::report(&store, &policy, at(DISCHARGED) + 30 * DAY, 90).unwrap();
    assert_eq!(report.deficiencies.len(), 1);
    assert_eq!(report.delinquent_records, 0);
    assert_eq!((report.discharges, report.complete), (2, 1));
    assert!((report.completion_rate - 0.5).abs() < 1e-9);
    let line = &report.clinicians[0];
    assert_eq!(line.practitioner, "Practitioner/dr-attending");
    assert_eq!((line.open, line.records, line.delinquent_records), (1, 1, 0));
    assert_eq!(line.by_age, [0, 0, 1, 0]);
    assert_eq!(line.oldest_days, 16);
    // A day later it is delinquent; the rate is over the average monthly discharges (2 in
    // 90 days: 2/3 a month).
    let report = completion::report(&store, &policy, at(DISCHARGED) + 31 * DAY, 90).unwrap();
    assert_eq!(report.delinquent_records, 1);
    assert!((report.delinquency_rate - 1.5).abs() < 1e-9);
    let parameters = report.to_parameters(10);
    assert_eq!(parameters["parameter"][6]["name"], "delinquentRecords");
    assert_eq!(parameters["parameter"][6]["valueInteger"], 1);
    assert!(report.to_csv().contains(
        "discharge-summary,Encounter/stay,stay,pa,Practitioner/dr-attending,2025-03-19T12:00:00Z,17,true"
    ));
}
