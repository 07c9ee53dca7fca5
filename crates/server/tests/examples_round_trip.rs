//! Every example of the FHIR R4 specification is stored, read back, and equals what was sent
//! except for the server-owned `meta.versionId` and `meta.lastUpdated`.

mod common;

use common::start;
use serde_json::Value;

/// The example without `meta.versionId`/`meta.lastUpdated` (and without `meta` if that
/// leaves it empty).
fn without_server_meta(mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        let now_empty = match object.get_mut("meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                meta.is_empty()
            }
            None => false,
        };
        if now_empty {
            object.remove("meta");
        }
    }
    resource
}

/// Examples that break the specification's own reference-target rules (listed with reasons
/// in crates/validation/tests/spec_examples.rs).
const INVALID_EXAMPLES: &[&str] = &[
    "DeviceMetric-example.json",
    "DeviceUseStatement-example.json",
    "MedicationRequest-medrx0301.json",
    "Observation-clinical-gender.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_example_round_trips() {
    let Some(examples) = testkit::shared_dir("fhir-r4/examples") else { return };
    let server = start("examples").await;
    let mut files: Vec<_> = std::fs::read_dir(&examples).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let sent = fhir::parse_json(&bytes).unwrap();
        let path = format!("{}/{}", sent["resourceType"].as_str().unwrap(), sent["id"].as_str().unwrap());
        let response = server
            .client
            .put(server.url(&path))
            .header("content-type", "application/fhir+json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if INVALID_EXAMPLES.contains(&name.as_str()) {
            // Validation on write refuses them, saying why.
            assert_eq!(response.status(), 422, "{name}");
            assert!(response.text().await.unwrap().contains("is not allowed here"), "{name}");
            continue;
        }
        if response.status() != 201 {
            failures.push(format!(
                "{}: PUT {path} -> {} {}",
                file.display(),
                response.status(),
                response.text().await.unwrap()
            ));
            continue;
        }
        let read = server.get(&path).await;
        let stored = fhir::parse_json(&read.bytes().await.unwrap()).unwrap();
        assert_eq!(stored["meta"]["versionId"], "1");
        if without_server_meta(stored) != without_server_meta(sent) {
            failures.push(format!("{}: read back differs", file.display()));
        }
    }
    println!(
        "{} examples stored and read back, {} refused as invalid, {} failures",
        files.len() - failures.len() - INVALID_EXAMPLES.len(),
        INVALID_EXAMPLES.len(),
        failures.len()
    );
    assert!(files.len() >= 700, "expected the 710 spec examples, found {}", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
