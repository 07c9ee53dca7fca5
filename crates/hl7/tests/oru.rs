//! ORU^R01 mapped to Patient, DiagnosticReport and Observations.

mod common;

use common::*;
use serde_json::Value as Json;

const FILLER: &str = "http://hospital.example.org/filler-order";

fn observation_ids() -> (String, Vec<String>) {
    let report = hl7::map::report_id(FILLER, "F777");
    let sub_ids = ["", "", "", "", "", "", "a", ""];
    let observations =
        (1..=8).map(|set| hl7::map::observation_id(&report, &set.to_string(), sub_ids[set - 1])).collect();
    (report, observations)
}

/// The parts every Observation of the panel shares.
fn observation(n: usize, status: &str, code: &str, rest: &str) -> Json {
    let (_, ids) = observation_ids();
    let effective = if n == 1 { "2024-01-15T08:05:00-05:00" } else { "2024-01-15T08:00:00-05:00" };
    let text = format!(
        r#"{{
  "resourceType": "Observation",
  "id": "{id}",
  "status": "{status}",
  "category": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}}]}}],
  "code": {code},
  "subject": {{"reference": "Patient/$PATIENT"}},
  "effectiveDateTime": "{effective}",
  "issued": "2024-01-15T11:30:00-05:00"
  {rest}
}}"#,
        id = ids[n - 1]
    );
    expected(&text, &[("$PATIENT", &jane_id())])
}

fn loinc(code: &str, display: &str) -> String {
    format!(r#"{{"coding": [{{"system": "http://loinc.org", "code": "{code}", "display": "{display}"}}]}}"#)
}

const MG_DL: &str = r#""unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL""#;
const MMOL_L: &str = r#""unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L""#;
const EGFR_UNIT: &str =
    r#""unit": "mL/min/{1.73_m2}", "system": "http://unitsofmeasure.org", "code": "mL/min/{1.73_m2}""#;

#[test]
fn panel_maps_to_patient_report_and_one_observation_per_obx() {
    let resources = resources(&bundle("oru_r01.hl7"));
    assert_eq!(resources.len(), 1 + 1 + 8);
    assert_json(&resources[0], &jane());

    let (report_id, ids) = observation_ids();
    let results: Vec<String> =
        ids.iter().map(|id| format!(r#"{{"reference": "Observation/{id}"}}"#)).collect();
    let report = expected(
        &format!(
            r#"{{
  "resourceType": "DiagnosticReport",
  "id": "{report_id}",
  "identifier": [
    {{"type": {{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}}]}},
     "system": "http://hospital.example.org/filler-order", "value": "F777"}},
    {{"type": {{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}}]}},
     "system": "http://hospital.example.org/placer-order", "value": "ORD555"}}
  ],
  "status": "final",
  "category": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}}]}}],
  "code": {code},
  "subject": {{"reference": "Patient/$PATIENT"}},
  "effectiveDateTime": "2024-01-15T08:00:00-05:00",
  "issued": "2024-01-15T11:30:00-05:00",
  "result": [{results}]
}}"#,
            code = loinc("24323-8", "Comprehensive metabolic panel"),
            results = results.join(", ")
        ),
        &[("$PATIENT", &jane_id())],
    );
    assert_json(&resources[1], &report);

    let expected_observations = [
        // NM with UCUM units, a range, an interpretation and an NTE; the decimal keeps "105.0".
        observation(
            1,
            "final",
            &loinc("2345-7", "Glucose"),
            &format!(
                r#", "valueQuantity": {{"value": 105.0, {MG_DL}}},
                "interpretation": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}}]}}],
                "referenceRange": [{{"low": {{"value": 70, {MG_DL}}}, "high": {{"value": 99, {MG_DL}}}}}],
                "note": [{{"text": "Fasting specimen\nconfirmed"}}]"#
            ),
        ),
        // "+0140" is rewritten to FHIR's decimal grammar; a unit with no coding system is UCUM.
        observation(
            2,
            "final",
            &loinc("2951-2", "Sodium"),
            &format!(
                r#", "valueQuantity": {{"value": 140, {MMOL_L}}},
                "interpretation": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}}]}}],
                "referenceRange": [{{"low": {{"value": 135, {MMOL_L}}}, "high": {{"value": 145, {MMOL_L}}}}}]"#
            ),
        ),
        observation(
            3,
            "preliminary",
            &loinc("8251-1", "Service comment"),
            r#", "valueString": "Specimen slightly hemolyzed""#,
        ),
        observation(
            4,
            "final",
            &loinc("5778-6", "Color of Urine"),
            r#", "valueCodeableConcept": {"coding": [
                {"system": "http://snomed.info/sct", "code": "371244009", "display": "Yellow"},
                {"system": "urn:chartroom:v2:local", "code": "YEL", "display": "yellow"}]}"#,
        ),
        observation(
            5,
            "corrected",
            &loinc("1920-8", "AST"),
            r#", "valueQuantity": {"value": 5, "comparator": "<", "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}"#,
        ),
        observation(
            6,
            "final",
            &loinc("5767-9", "Appearance ratio"),
            r#", "valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}"#,
        ),
        observation(
            7,
            "final",
            &loinc("33914-3", "eGFR"),
            &format!(
                r#", "valueRange": {{"low": {{"value": 60, {EGFR_UNIT}}}, "high": {{"value": 89, {EGFR_UNIT}}}}},
                "referenceRange": [{{"low": {{"value": 60, {EGFR_UNIT}}}}}]"#
            ),
        ),
        observation(
            8,
            "cancelled",
            r#"{"coding": [{"system": "urn:chartroom:v2:local", "code": "LOC1", "display": "Collection date"}]}"#,
            r#", "valueDateTime": "2024-01-14""#,
        ),
    ];
    for (n, expected_observation) in expected_observations.iter().enumerate() {
        assert_json(&resources[n + 2], expected_observation);
    }
}

#[test]
fn decimals_keep_their_written_precision() {
    let resources = resources(&bundle("oru_r01.hl7"));
    let glucose = serde_json::to_string(&resources[2]["valueQuantity"]["value"]).unwrap();
    assert_eq!(glucose, "105.0");
}

#[test]
fn results_without_set_ids_or_with_repeated_ones_still_get_distinct_stable_ids() {
    let text = "MSH|^~\\&|LAB|GHH|CHARTROOM|GHH|20240115||ORU^R01|L9|P|2.5.1\r\
                PID|1||100001^^^GHH^MR\r\
                OBR|1||F900|2345-7^Glucose^LN|||20240115||||||||||||||||||F\r\
                OBX|1|NM|2345-7^Glucose^LN||5||||||F\r\
                OBX|1|NM|2345-7^Glucose^LN||6||||||F\r\
                OBX||ST|8251-1^Comment^LN||ok||||||F\r";
    let map = || match hl7::map(&hl7::Message::parse(text).unwrap(), &config()).unwrap() {
        hl7::Action::Transaction(bundle) => bundle,
        other => panic!("{other:?}"),
    };
    let urls: Vec<String> = map()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap().to_string())
        .collect();
    let mut unique = urls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), urls.len(), "{urls:?}");
    assert_eq!(map(), map());
}

#[test]
fn obx_before_any_obr_is_a_segment_sequence_error() {
    let text = "MSH|^~\\&|LAB|GHH|CHARTROOM|GHH|20240115||ORU^R01|L9|P|2.5.1\r\
                PID|1||100001^^^GHH^MR\rOBX|1|NM|2345-7^Glucose^LN||5||||||F\r";
    let error = hl7::map(&hl7::Message::parse(text).unwrap(), &config()).unwrap_err();
    assert_eq!(error.code(), hl7::ErrorCode::SegmentSequenceError);
    assert_eq!(error.location(), Some(&hl7::Location::segment("OBX", 1)));
    assert_eq!(error.ack_code(), hl7::AckCode::Error);
}
