//! Helpers shared by the integration tests.
#![allow(dead_code)]

use hl7::{Action, MappingConfig, Message};
use serde_json::Value as Json;

pub const MRN: &str = "http://hospital.example.org/mrn";
pub const VISIT: &str = "http://hospital.example.org/visit";

/// A message file from tests/messages.
pub fn load(name: &str) -> String {
    let path = format!("{}/tests/messages/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The configuration the tests map with: the hospital's authorities name the MRN system.
pub fn config() -> MappingConfig {
    MappingConfig {
        authority_systems: vec![
            ("GHH".to_string(), MRN.to_string()),
            ("GOOD HEALTH HOSPITAL".to_string(), MRN.to_string()),
        ],
        ..MappingConfig::default()
    }
}

pub fn parse(name: &str) -> Message {
    Message::parse(&load(name)).unwrap()
}

/// The transaction Bundle a message file maps to.
pub fn bundle(name: &str) -> Json {
    match hl7::map(&parse(name), &config()).unwrap() {
        Action::Transaction(bundle) => bundle,
        other => panic!("expected a transaction, got {other:?}"),
    }
}

/// The resources of a bundle, in order.
pub fn resources(bundle: &Json) -> Vec<Json> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect()
}

/// JSON text with `$NAME` placeholders replaced, parsed with the numbers' digits kept.
pub fn expected(text: &str, substitutions: &[(&str, &str)]) -> Json {
    let mut text = text.to_string();
    for (name, value) in substitutions {
        text = text.replace(name, value);
    }
    serde_json::from_str(&text).unwrap()
}

/// Asserts JSON equality with a readable diff on failure.
pub fn assert_json(actual: &Json, expected: &Json) {
    assert!(
        actual == expected,
        "actual:\n{}\nexpected:\n{}",
        serde_json::to_string_pretty(actual).unwrap(),
        serde_json::to_string_pretty(expected).unwrap()
    );
}

/// The Patient of the JANE DOE messages (PID-3 100001^^^GHH^MR).
pub fn jane_id() -> String {
    hl7::map::patient_id(MRN, "100001")
}

/// Her visit V1001.
pub fn jane_visit_id() -> String {
    hl7::map::encounter_id("", VISIT, "V1001")
}

pub const JANE: &str = r#"{
  "resourceType": "Patient",
  "id": "$PATIENT",
  "identifier": [
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
     "system": "http://hospital.example.org/mrn", "value": "100001"}
  ],
  "name": [{"use": "official", "family": "DOE", "given": ["JANE", "Q"], "prefix": ["MRS"]}],
  "telecom": [{"system": "phone", "value": "(217) 5550101", "use": "home"}],
  "gender": "female",
  "birthDate": "1980-02-29",
  "address": [{"use": "home", "line": ["12 MAIN ST", "APT 4"], "city": "SPRINGFIELD", "state": "IL",
               "postalCode": "62701", "country": "USA"}]
}"#;

pub fn jane() -> Json {
    expected(JANE, &[("$PATIENT", &jane_id())])
}

/// The error a message file gives, from parsing or mapping.
pub fn error(name: &str) -> hl7::Error {
    match Message::parse(&load(name)) {
        Err(error) => error,
        Ok(message) => hl7::map(&message, &config()).expect_err("the message should not map"),
    }
}
