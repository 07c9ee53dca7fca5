//! `chartroom import`: NDJSON and JSON, good lines stored, bad lines reported and skipped.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use store::{SqliteStore, Store, StoreOptions};

fn chartroom_import(args: &[&str], path: &Path, data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .arg("import")
        .arg(path)
        .arg("--data")
        .arg(data)
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run chartroom import")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn imports_ndjson_and_bundles_reporting_bad_lines() {
    let dir = testkit::temp_dir("import-mixed");
    let input = dir.join("input");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    let patients = [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]}).to_string(),
        "{\"resourceType\": \"Patient\", \"id\": \"p2\", ".to_string(),
        json!({"resourceType": "Patient", "id": "p3"}).to_string(),
        json!({"resourceType": "Patientt", "id": "p4"}).to_string(),
        String::new(),
        json!({"resourceType": "Patient", "id": "bad id"}).to_string(),
        json!({"resourceType": "Patient", "name": [{"family": "NoId"}]}).to_string(),
    ];
    std::fs::write(input.join("Patient.ndjson"), patients.join("\n")).unwrap();
    let observations = [
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}).to_string(),
        json!({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/"}}).to_string(),
    ];
    std::fs::write(input.join("nested/Observation.ndjson"), observations.join("\n")).unwrap();
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                      "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"}},
         "request": {"method": "PUT", "url": "Encounter/e1"}}
    ]});
    std::fs::write(input.join("nested/bundle.json"), transaction.to_string()).unwrap();
    std::fs::write(
        input.join("org.json"),
        json!({"resourceType": "Organization", "id": "org1", "name": "Hospital"}).to_string(),
    )
    .unwrap();
    std::fs::write(input.join("notes.txt"), "not imported").unwrap();

    let data = dir.join("data");
    let output = chartroom_import(&[], &input, &data);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "rejections make the exit code 1\n{stdout}\n{stderr}");
    let patient_file = input.join("Patient.ndjson").display().to_string();
    assert!(stderr.contains(&format!("{patient_file}:2: invalid JSON at line 1")), "{stderr}");
    assert!(
        stderr.contains(&format!("{patient_file}:4: 'Patientt' is not a FHIR R4 resource type")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{patient_file}:6: 'bad id' is not a valid id")), "{stderr}");
    let observation_file = input.join("nested/Observation.ndjson").display().to_string();
    assert!(stderr.contains(&format!("{observation_file}:2: invalid reference 'Patient/'")), "{stderr}");
    // A new data directory is announced, then one line per rejection.
    assert_eq!(stderr.lines().next(), Some(format!("created data directory {}", data.display()).as_str()));
    assert_eq!(stderr.lines().count(), 5, "{stderr}");
    assert!(stdout.contains("imported 7 resources from 4 files, rejected 4"), "{stdout}");
    assert!(stdout.contains("resources/s"), "{stdout}");

    let store = SqliteStore::open(&data, StoreOptions::default()).unwrap();
    assert_eq!(store.count_live().unwrap(), 7);
    for (resource_type, id) in [
        ("Patient", "p1"),
        ("Patient", "p3"),
        ("Observation", "o1"),
        ("Encounter", "e1"),
        ("Organization", "org1"),
    ] {
        assert!(store.read(resource_type, id).unwrap().is_some(), "{resource_type}/{id}");
    }
    assert!(store.read("Patient", "p2").unwrap().is_none());
    let encounter = store.read("Encounter", "e1").unwrap().unwrap();
    let encounter: serde_json::Value = serde_json::from_slice(encounter.body.as_deref().unwrap()).unwrap();
    let subject = encounter["subject"]["reference"].as_str().unwrap();
    let patient_id = subject.strip_prefix("Patient/").expect("urn:uuid resolved to Patient/<id>");
    assert!(store.read("Patient", patient_id).unwrap().is_some());
}

#[test]
fn a_clean_import_exits_zero_and_reimport_adds_versions_not_duplicates() {
    let dir = testkit::temp_dir("import-clean");
    let file = dir.join("Patient.ndjson");
    std::fs::write(
        &file,
        (0..2500)
            .map(|i| json!({"resourceType": "Patient", "id": format!("p{i}")}).to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let data = dir.join("data");
    let first = chartroom_import(&[], &file, &data);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("imported 2500 resources from 1 files, rejected 0"));
    let again = chartroom_import(&[], &file, &data);
    assert!(again.status.success());
    let store = SqliteStore::open(&data, StoreOptions::default()).unwrap();
    assert_eq!(store.count_live().unwrap(), 2500);
    assert_eq!(store.read("Patient", "p2499").unwrap().unwrap().version, 2);
}

#[test]
fn importing_a_missing_path_fails_clearly() {
    let dir = testkit::temp_dir("import-missing");
    let output = chartroom_import(&[], &dir.join("nope"), &dir.join("data"));
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("nope"));
}

/// Files (in name order) of the specification's examples that the default import (which executes
/// transaction and batch Bundles) cannot complete, and why.
const EXAMPLES_NOT_EXECUTED: &[(&str, &str)] = &[
    // Batches of reads and searches about Patient/example, which a later file creates: the
    // batch runs, and its reads of the not-yet-imported patient fail.
    ("Bundle-bundle-request-medsallergies.json", "Patient/example is not known"),
    ("Bundle-bundle-request-simplesummary.json", "Patient/example is not known"),
    // Operations inside Bundles are not supported (and this one is CodeSystem's, not ValueSet's).
    ("Bundle-bundle-transaction.json", "ValueSet/$lookup is not a supported Bundle request"),
    // Invalid: Bundle.entry.request.url is "relative to the root"; these PUT to hl7.org.
    ("Bundle-ussg-fht.json", "points to another server"),
];

/// Examples that break the specification's own rules (reference target types), refused by
/// validation on write.
const INVALID_EXAMPLES: &[&str] = &[
    "DeviceMetric-example.json",
    "DeviceUseStatement-example.json",
    "MedicationRequest-medrx0301.json",
    "Observation-clinical-gender.json",
];

#[test]
fn the_specification_examples_import() {
    let Some(examples) = testkit::shared_dir("fhir-r4/examples") else { return };
    let dir = testkit::temp_dir("import-examples");

    // Stored as given, every example imports.
    let stored =
        chartroom_import(&["--bundles", "store", "--no-validate"], &examples, &dir.join("as-resources"));
    assert!(stored.status.success(), "{}", text(&stored.stderr));
    assert!(
        text(&stored.stdout).contains("imported 710 resources from 710 files, rejected 0"),
        "{}",
        text(&stored.stdout)
    );
    // Validated, the invalid ones are refused, each saying why.
    let validated = chartroom_import(&["--bundles", "store"], &examples, &dir.join("validated"));
    assert!(
        text(&validated.stdout).contains("imported 706 resources from 710 files, rejected 4"),
        "{}",
        text(&validated.stdout)
    );
    for file in INVALID_EXAMPLES {
        assert!(
            text(&validated.stderr).lines().any(|l| l.contains(file) && l.contains("is not allowed here")),
            "{file}: {}",
            text(&validated.stderr)
        );
    }

    // Executing the transaction and batch Bundles: all but the listed files complete.
    let executed = chartroom_import(&[], &examples, &dir.join("executed"));
    let stderr = text(&executed.stderr);
    let mut failed_files: Vec<String> = stderr
        .lines()
        .filter(|line| !line.starts_with("created data directory"))
        .filter_map(|line| line.split(".json").next())
        .map(|f| format!("{}.json", f.rsplit('/').next().unwrap_or(f)))
        .collect();
    failed_files.dedup();
    let mut expected: Vec<String> = EXAMPLES_NOT_EXECUTED
        .iter()
        .map(|(f, _)| f.to_string())
        .chain(INVALID_EXAMPLES.iter().map(|f| f.to_string()))
        .collect();
    expected.sort();
    assert_eq!(failed_files, expected, "{stderr}");
    for (file, reason) in EXAMPLES_NOT_EXECUTED {
        assert!(stderr.lines().any(|l| l.contains(file) && l.contains(reason)), "{file}: {reason}\n{stderr}");
    }
}

/// A Synthea-shaped transaction Bundle: one patient's whole history as `POST` entries with
/// `urn:uuid:` full URLs and references, the practitioners, organizations and locations it
/// names among them, and one self-pay ExplanationOfBenefit whose `insurer` is the Patient
/// (R4 allows only an Organization there). Built from a clean generated population.
fn synthea_shaped_bundle(dir: &Path) -> (serde_json::Value, usize) {
    let generated = dir.join("generated");
    let status = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["generate", "--patients", "2", "--clean", "--quiet", "--out"])
        .arg(&generated)
        .status()
        .unwrap();
    assert!(status.success());
    let mut resources = Vec::new();
    for entry in std::fs::read_dir(&generated).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let resource: serde_json::Value = serde_json::from_str(line).unwrap();
            let shared = matches!(
                resource["resourceType"].as_str(),
                Some("Practitioner" | "Organization" | "Location")
            );
            if shared || resource["id"] == "pat-000001" || line.contains("\"Patient/pat-000001\"") {
                resources.push(resource);
            }
        }
    }
    let urns: std::collections::HashMap<String, String> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            (key, format!("urn:uuid:00000000-0000-4000-8000-{i:012}"))
        })
        .collect();
    fn rewrite(value: &mut serde_json::Value, urns: &std::collections::HashMap<String, String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "reference" => {
                            if let Some(urn) = urns.get(text.as_str()) {
                                *text = urn.clone();
                            }
                        }
                        _ => rewrite(child, urns),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, urns)),
            _ => {}
        }
    }
    let patient_urn = urns["Patient/pat-000001"].clone();
    let mut self_pay = false;
    let entries: Vec<serde_json::Value> = resources
        .into_iter()
        .map(|mut resource| {
            let key = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
            rewrite(&mut resource, &urns);
            if resource["resourceType"] == "ExplanationOfBenefit" && !self_pay {
                // Self-pay, as Synthea writes it: the patient is their own payer.
                resource["insurer"] = json!({"reference": patient_urn});
                self_pay = true;
            }
            let resource_type = resource["resourceType"].as_str().unwrap().to_string();
            resource.as_object_mut().unwrap().remove("id");
            json!({"fullUrl": urns[&key], "resource": resource, "request": {"method": "POST", "url": resource_type}})
        })
        .collect();
    assert!(self_pay, "the patient has an ExplanationOfBenefit");
    let count = entries.len();
    (json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), count)
}

fn stored_resources(data: &Path) -> u64 {
    let store = SqliteStore::open(data, StoreOptions::default()).unwrap();
    let mut count = 0;
    store
        .scan_current(&mut |_, _, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
    store.close();
    count
}

/// `--validation strict` (the default) refuses the whole transaction for its one invalid
/// entry; `warn` stores it whole and reports the one issue; `chartroom dq` then finds it.
#[test]
fn validation_warn_stores_a_synthea_bundle_whole_and_dq_finds_the_issue() {
    let dir = testkit::temp_dir("import-validation-modes");
    let (bundle, entries) = synthea_shaped_bundle(&dir);
    let input = dir.join("patient-bundle.json");
    std::fs::write(&input, bundle.to_string()).unwrap();

    let strict = dir.join("strict");
    let refused = chartroom_import(&[], &input, &strict);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    let said = text(&refused.stderr);
    assert!(said.contains("ExplanationOfBenefit") && said.contains("insurer"), "{said}");
    assert_eq!(stored_resources(&strict), 0, "a transaction is stored whole or not at all");

    let warn = dir.join("warn");
    let stored = chartroom_import(&["--validation", "warn"], &input, &warn);
    let out = text(&stored.stdout);
    let err = text(&stored.stderr);
    assert!(stored.status.success(), "{out}\n{err}");
    assert_eq!(stored_resources(&warn), entries as u64);
    assert!(out.contains(&format!("imported {entries} resources")), "{out}");
    assert!(out.contains("1 stored with validation issues"), "{out}");
    let warning = err.lines().find(|l| l.contains("insurer")).unwrap_or_else(|| panic!("{err}"));
    assert!(warning.contains("ExplanationOfBenefit"), "{warning}");

    let dq =
        Command::new(env!("CARGO_BIN_EXE_chartroom")).args(["dq", "--data"]).arg(&warn).output().unwrap();
    assert!(dq.status.success(), "{}", text(&dq.stderr));
    let report: serde_json::Value = serde_json::from_slice(&dq.stdout).unwrap();
    let valid =
        report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "r4-valid").expect("r4-valid check");
    assert_eq!(valid["numerator"], 1, "{valid}");
    assert!(valid["examples"][0].as_str().unwrap().starts_with("ExplanationOfBenefit/"), "{valid}");

    // NDJSON lines under `warn` report their issues the same way as Bundle entries.
    let lines = dir.join("patients.ndjson");
    std::fs::write(&lines, json!({"resourceType": "Patient", "id": "robot", "gender": "robot"}).to_string())
        .unwrap();
    let listed = chartroom_import(&["--validation", "warn"], &lines, &dir.join("warn-ndjson"));
    assert!(listed.status.success());
    let err = text(&listed.stderr);
    assert!(
        err.contains("Patient/robot: stored with an issue at Patient.gender: stored under validation warn"),
        "{err}"
    );
    assert!(text(&listed.stdout).contains("1 stored with validation issues"));

    // `off` (and the older `--no-validate`) store it with no word of the issue.
    let off = dir.join("off");
    let quiet = chartroom_import(&["--validation", "off"], &input, &off);
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert!(!text(&quiet.stderr).contains("insurer"));
    assert_eq!(stored_resources(&off), entries as u64);
}
