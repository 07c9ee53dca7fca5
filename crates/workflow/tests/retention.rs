//! Retention and legal hold: the store refuses every change to what an active hold covers (a
//! patient, an encounter, dates) until it is released, whoever writes; the schedule's rules
//! for adults, minors and the deceased; a purge that destroys only what is past retention and
//! under no hold, leaving held and unexpired records byte-identical, with its certificate.

mod support;

use chartroom_workflow::retention::{self, Schedule};
use chartroom_workflow::{DAY, date_time};
use fhir::Resource;
use serde_json::{Value, json};
use store::{HistoryQuery, HistoryScope, PreparedResource, Store, WriteOp, WriteUnit};
use support::{at, empty_store, put};

fn submit(store: &dyn Store, op: WriteOp) -> store::Result<Vec<store::Written>> {
    store.submit(WriteUnit::single(op)).wait_blocking()
}

fn update(store: &dyn Store, resource: Value) -> store::Result<Vec<store::Written>> {
    let prepared = PreparedResource::new(&Resource::from_value(resource).unwrap()).unwrap();
    submit(store, WriteOp::Update { resource: prepared, if_match: None })
}

fn held(result: store::Result<Vec<store::Written>>) -> bool {
    matches!(result, Err(store::Error::Held { .. }))
}

fn hold(id: &str, status: &str, extra: Value) -> Value {
    let mut task = json!({ "resourceType": "Task", "id": id, "status": status, "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "legal-hold" }] },
        "description": "Smith v. General Hospital" });
    task.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    task
}

fn observation(id: &str, patient: &str, date: &str, encounter: Option<&str>) -> Value {
    let mut obs = json!({ "resourceType": "Observation", "id": id, "status": "final", "code": { "text": "Weight" },
        "subject": { "reference": format!("Patient/{patient}") }, "effectiveDateTime": date });
    if let Some(encounter) = encounter {
        obs["encounter"] = json!({ "reference": format!("Encounter/{encounter}") });
    }
    obs
}

#[test]
fn nothing_under_hold_changes_by_any_path_until_it_is_released() {
    let dir = testkit::temp_dir("retention-hold");
    let store = store::SqliteStore::open(&dir, store::StoreOptions::default()).unwrap();
    put(&store, json!({ "resourceType": "Patient", "id": "pa" }));
    put(&store, json!({ "resourceType": "Patient", "id": "pb" }));
    put(&store, observation("a1", "pa", "2020-01-01", None));
    put(&store, observation("b1", "pb", "2020-01-01", Some("eb")));
    put(&store, observation("b2", "pb", "2023-06-01", None));
    // A hold on a patient: their Patient and records, not another's.
    put(&store, hold("h-pa", "in-progress", json!({ "for": { "reference": "Patient/pa" } })));
    assert!(held(update(&store, observation("a1", "pa", "2020-01-02", None))));
    assert!(held(submit(
        &store,
        WriteOp::Delete { resource_type: "Observation".into(), id: "a1".into(), if_match: None }
    )));
    assert!(held(submit(
        &store,
        WriteOp::Purge { resource_type: "Observation".into(), id: "a1".into(), if_match: None }
    )));
    assert!(held(update(&store, json!({ "resourceType": "Patient", "id": "pa", "gender": "female" }))));
    assert!(update(&store, observation("b1", "pb", "2020-01-02", Some("eb"))).is_ok());
    // A unit that fails leaves no hold behind: a hold placed in it is gone with it.
    let phantom = hold("h-phantom", "in-progress", json!({ "for": { "reference": "Patient/pb" } }));
    let unit = WriteUnit {
        ops: vec![
            WriteOp::Update {
                resource: PreparedResource::new(&Resource::from_value(phantom).unwrap()).unwrap(),
                if_match: None,
            },
            WriteOp::Create(
                PreparedResource::new(
                    &Resource::from_value(json!({ "resourceType": "Patient", "id": "pa" })).unwrap(),
                )
                .unwrap(),
            ),
        ],
    };
    assert!(store.submit(unit).wait_blocking().is_err());
    assert!(update(&store, observation("b1", "pb", "2020-01-03", Some("eb"))).is_ok());
    // An encounter hold covers what refers to it; a date hold what falls in its dates.
    put(&store, hold("h-enc", "in-progress", json!({ "focus": { "reference": "Encounter/eb" } })));
    assert!(held(update(&store, observation("b1", "pb", "2020-01-04", Some("eb")))));
    assert!(update(&store, observation("b2", "pb", "2023-06-02", None)).is_ok());
    put(
        &store,
        hold(
            "h-2023",
            "in-progress",
            json!({ "restriction": { "period": { "start": "2023-01-01", "end": "2023-12-31" } } }),
        ),
    );
    assert!(held(update(&store, observation("b2", "pb", "2023-06-03", None))));
    // Released: changes go through again.
    for id in ["h-pa", "h-enc", "h-2023"] {
        let json: Value =
            serde_json::from_slice(store.read("Task", id).unwrap().unwrap().body.as_deref().unwrap())
                .unwrap();
        let mut released = json.clone();
        released["status"] = json!("completed");
        put(&store, released);
    }
    assert!(update(&store, observation("a1", "pa", "2020-01-05", None)).is_ok());
    assert!(update(&store, observation("b2", "pb", "2023-06-04", None)).is_ok());
    // Holds are read back when the store is opened again.
    put(&store, hold("h-again", "in-progress", json!({ "for": { "reference": "Patient/pb" } })));
    store.close();
    drop(store);
    let reopened = store::SqliteStore::open(&dir, store::StoreOptions::default()).unwrap();
    assert!(held(update(&reopened, observation("b2", "pb", "2023-06-05", None))));
}

#[test]
fn the_schedule_keeps_adults_minors_and_the_deceased_as_long_as_it_says() {
    let default = Schedule::builtin("default").unwrap();
    let last = at("2010-06-01T00:00:00Z");
    // An adult: ten years after the last care.
    let (end, _, rule) = default.retention_end(last, last, Some(at("1970-01-01T00:00:00Z")), None);
    assert_eq!(&date_time(end)[..10], "2020-06-01");
    assert!(rule.starts_with("adult: 10 years"), "{rule}");
    // A child seen at 5: until 28 (18 plus 10), later than ten years after the visit.
    let (end, _, rule) = default.retention_end(last, last, Some(at("2005-03-01T00:00:00Z")), None);
    assert_eq!(&date_time(end)[..7], "2033-03");
    assert!(rule.starts_with("minor: until 18 years of age plus 10"), "{rule}");
    // The deceased: ten years after death.
    let (end, class, _) = default.retention_end(last, last, None, Some(at("2012-01-01T00:00:00Z")));
    assert_eq!((&date_time(end)[..4], class), ("2022", "deceased"));
    // Texas: minors at least to 20; California at least 7 years.
    let texas = Schedule::builtin("TX").unwrap();
    let (end, _, _) = texas.retention_end(
        at("2020-01-01T00:00:00Z"),
        at("2020-01-01T00:00:00Z"),
        Some(at("2015-01-01T00:00:00Z")),
        None,
    );
    assert_eq!(&date_time(end)[..4], "2035");
    let california = Schedule::builtin("CA").unwrap();
    assert_eq!(&date_time(california.retention_end(last, last, None, None).0)[..4], "2017");
    assert!(Schedule::builtin("ZZ").is_none());
    let own = Schedule::from_json(
        &json!({ "name": "ours", "adultYears": 8, "majorityAge": 18, "minorYearsAfterMajority": 3 }),
    )
    .unwrap();
    assert_eq!(own.deceased_years, None);
    assert!(
        Schedule::from_json(&json!({ "adultYears": -1, "majorityAge": 18, "minorYearsAfterMajority": 3 }))
            .is_err()
    );
    // A hold names what it holds and why.
    assert!(
        retention::hold_task(&hold("h", "requested", json!({ "for": { "reference": "Patient/pa" } })))
            .is_ok()
    );
    assert!(retention::hold_task(&hold("h", "requested", json!({}))).is_err());
    assert!(
        retention::hold_task(&hold("h", "requested", json!({ "for": { "reference": "Group/g" } }))).is_err()
    );
}

fn snapshot(store: &dyn Store, resource_type: &str, id: &str) -> Vec<Vec<u8>> {
    let page = store
        .history(
            &HistoryScope::Instance { resource_type: resource_type.into(), id: id.into() },
            &HistoryQuery { count: 100, ..HistoryQuery::default() },
        )
        .unwrap();
    page.versions.into_iter().map(|v| v.body.unwrap_or_default()).collect()
}

#[test]
fn a_purge_destroys_only_what_is_past_retention_and_under_no_hold() {
    let store = empty_store("retention-purge");
    // Old records of pa (an adult, last seen 2010) and pc (last seen 2010, one encounter held);
    // recent records of pb.
    for patient in ["pa", "pb", "pc"] {
        put(&store, json!({ "resourceType": "Patient", "id": patient, "birthDate": "1960-01-01" }));
    }
    put(&store, observation("a1", "pa", "2009-01-01", None));
    put(&store, observation("a1", "pa", "2010-01-01", None));
    put(&store, observation("a2", "pa", "2010-06-01", None));
    put(&store, observation("b1", "pb", "2024-01-01", None));
    put(
        &store,
        json!({ "resourceType": "Encounter", "id": "ec", "status": "finished", "class": { "code": "AMB" },
        "subject": { "reference": "Patient/pc" }, "period": { "start": "2010-02-01", "end": "2010-02-01" } }),
    );
    put(&store, observation("c1", "pc", "2010-02-01", Some("ec")));
    put(&store, observation("c2", "pc", "2010-03-01", None));
    put(&store, hold("h-ec", "in-progress", json!({ "focus": { "reference": "Encounter/ec" } })));
    let kept: Vec<(&str, &str)> = vec![
        ("Patient", "pb"),
        ("Observation", "b1"),
        ("Patient", "pc"),
        ("Encounter", "ec"),
        ("Observation", "c1"),
    ];
    let before: Vec<Vec<Vec<u8>>> = kept.iter().map(|(t, id)| snapshot(&store, t, id)).collect();

    let now = at("2026-12-01T00:00:00Z");
    let plan = retention::plan(&store, &Schedule::builtin("default").unwrap(), now).unwrap();
    let patients: Vec<&str> = plan.expired.iter().map(|e| e.patient.as_str()).collect();
    assert_eq!(patients, ["pa", "pc"]);
    assert_eq!(
        plan.expired[0].purge,
        [
            ("Observation".into(), "a1".into()),
            ("Observation".into(), "a2".into()),
            ("Patient".into(), "pa".into())
        ]
    );
    assert_eq!(plan.expired[1].purge, [("Observation".into(), "c2".into())]);
    let kept_for_pc: Vec<&str> = plan.expired[1].held.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(kept_for_pc, ["ec", "c1", "pc"]);

    let mut ops: Vec<WriteOp> = plan
        .expired
        .iter()
        .flat_map(|e| e.purge.iter().zip(&e.versions))
        .map(|((t, id), version)| WriteOp::Purge {
            resource_type: t.clone(),
            id: id.clone(),
            if_match: Some(store::Precondition::Versions(vec![*version])),
        })
        .collect();
    let mut certificate = retention::certificate(&plan, "hana", now);
    certificate["id"] = json!("cert-1");
    ops.push(WriteOp::Create(PreparedResource::new(&Resource::from_value(certificate).unwrap()).unwrap()));
    let written = store.submit(WriteUnit { ops }).wait_blocking().unwrap();
    assert_eq!(written[0].outcome, store::WriteOutcome::Purged { versions: 2 });
    // Gone, every version; the held and the unexpired byte-identical.
    for (t, id) in [("Observation", "a1"), ("Observation", "a2"), ("Patient", "pa"), ("Observation", "c2")] {
        assert!(store.read(t, id).unwrap().is_none(), "{t}/{id}");
        assert!(snapshot(&store, t, id).is_empty(), "{t}/{id}");
    }
    let after: Vec<Vec<Vec<u8>>> = kept.iter().map(|(t, id)| snapshot(&store, t, id)).collect();
    assert_eq!(before, after);
    // The certificate says what, when, under which rule and by whom.
    let stored: Value = serde_json::from_slice(
        store.read("DocumentReference", "cert-1").unwrap().unwrap().body.as_deref().unwrap(),
    )
    .unwrap();
    let csv = String::from_utf8(
        fhir::base64_decode(stored["content"][0]["attachment"]["data"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // Each record and the class whose term ended, no dates.
    assert!(csv.contains("Patient/pa,Observation/a1,adult,default\n"), "{csv}");
    assert!(!csv.contains("2010"), "{csv}");
    let description = stored["description"].as_str().unwrap();
    assert!(
        description.contains("Destroyed 4 resources of 2 patients")
            && description.contains("by hana")
            && description.contains("3 kept under legal hold or for an open request"),
        "{description}"
    );
    // A purge again finds nothing more to destroy but what the hold keeps.
    let again = retention::plan(&store, &Schedule::builtin("default").unwrap(), now + DAY).unwrap();
    assert_eq!(again.resources(), 0);
}
