//! ADT events mapped to Patient and Encounter, field by field.

mod common;

use common::*;
use hl7::Action;

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// The Encounter of JANE DOE's visit V1001 with the parts that vary by event substituted.
fn jane_encounter(status: &str, period: &str, extra: &str) -> serde_json::Value {
    let text = format!(
        r#"{{
  "resourceType": "Encounter",
  "id": "$ENCOUNTER",
  "identifier": [{{"type": {{"coding": [{{"system": "{V2_0203}", "code": "VN"}}]}},
                  "system": "http://hospital.example.org/visit", "value": "V1001"}}],
  "status": "{status}",
  "class": {{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}},
  "subject": {{"reference": "Patient/$PATIENT"}},
  "period": {period}
  {extra}
}}"#
    );
    expected(&text, &[("$PATIENT", &jane_id()), ("$ENCOUNTER", &jane_visit_id())])
}

const LOCATION_4E: &str = r#", "location": [{"location": {"display": "GHH / 4E / 410 / A"}}]"#;

#[test]
fn a01_spec_example_maps_patient_and_inpatient_encounter() {
    let bundle = bundle("adt_a01_spec.hl7");
    let patient_id = hl7::map::patient_id(MRN, "PATID1234");
    let encounter_id = hl7::map::encounter_id(&patient_id, &format!("{VISIT}#account"), "PATID12345001");
    let expected_bundle = expected(
        r#"{
  "resourceType": "Bundle",
  "type": "transaction",
  "entry": [
    {"resource": {
      "resourceType": "Patient",
      "id": "$PATIENT",
      "identifier": [
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
         "system": "http://hospital.example.org/mrn", "value": "PATID1234"},
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
         "system": "http://hl7.org/fhir/sid/us-ssn", "value": "123456789"},
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
         "system": "http://hl7.org/fhir/sid/us-ssn", "value": "444333333"}
      ],
      "name": [{"family": "EVERYMAN", "given": ["ADAM", "A"], "suffix": ["III"]}],
      "telecom": [
        {"system": "phone", "value": "(555) 555-2004", "use": "home"},
        {"system": "phone", "value": "(555)555-2004", "use": "work"}
      ],
      "gender": "male",
      "birthDate": "1961-06-15",
      "address": [{"line": ["2222 HOME STREET"], "city": "GREENSBORO", "state": "NC", "postalCode": "27401-1020"}],
      "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "S"}]}
     },
     "request": {"method": "PUT", "url": "Patient/$PATIENT"}},
    {"resource": {
      "resourceType": "Encounter",
      "id": "$ENCOUNTER",
      "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "AN"}]},
                      "system": "http://hospital.example.org/visit#account", "value": "PATID12345001"}],
      "status": "in-progress",
      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
      "serviceType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0069", "code": "SUR"}]},
      "subject": {"reference": "Patient/$PATIENT"},
      "participant": [{
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
        "individual": {"identifier": {"value": "004777"}, "display": "AARON A ATTEND"}
      }],
      "period": {"start": "2007-08-18T11:23:00+00:00"},
      "hospitalization": {"admitSource": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0023", "code": "ADM"}]}},
      "location": [{"location": {"display": "2000 / 2012 / 01"}}]
     },
     "request": {"method": "PUT", "url": "Encounter/$ENCOUNTER"}}
  ]
}"#,
        &[("$PATIENT", &patient_id), ("$ENCOUNTER", &encounter_id)],
    );
    assert_json(&bundle, &expected_bundle);
}

#[test]
fn a02_transfer_records_new_and_prior_location() {
    let resources = resources(&bundle("adt_a02.hl7"));
    assert_eq!(resources.len(), 2);
    assert_json(&resources[0], &jane());
    let extra = r#",
  "serviceType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0069", "code": "MED"}]},
  "participant": [{
    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND"}]}],
    "individual": {"identifier": {"value": "1234"}, "display": "DR MARCUS WELBY"}
  }],
  "location": [
    {"location": {"display": "GHH / 4E / 410 / A"}, "status": "active"},
    {"location": {"display": "GHH / 3W / 301 / B"}, "status": "completed"}
  ]"#;
    assert_json(
        &resources[1],
        &jane_encounter("in-progress", r#"{"start": "2024-01-10T08:00:00-05:00"}"#, extra),
    );
}

#[test]
fn a03_discharge_finishes_the_visit_at_the_event_time() {
    let resources = resources(&bundle("adt_a03.hl7"));
    // No PV1-45, so the end is EVN-2, which has no zone: the default offset applies.
    let extra = r#",
  "serviceType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0069", "code": "MED"}]},
  "hospitalization": {"dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "01"}]}}"#;
    assert_json(
        &resources[1],
        &jane_encounter(
            "finished",
            r#"{"start": "2024-01-10T08:00:00-05:00", "end": "2024-01-20T14:15:00+00:00"}"#,
            &format!("{extra}{LOCATION_4E}"),
        ),
    );
}

#[test]
fn a04_with_structure_variant_registers_an_arrived_outpatient() {
    let message = parse("adt_a04.hl7");
    assert_eq!(message.message_structure().as_deref(), Some("ADT_A01"));
    let resources = resources(&bundle("adt_a04.hl7"));
    let patient_id = hl7::map::patient_id(MRN, "200002");
    let expected_resources = expected(
        r#"[
  {"resourceType": "Patient", "id": "$PATIENT",
   "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                   "system": "http://hospital.example.org/mrn", "value": "200002"}],
   "name": [{"family": "ROE", "given": ["RICHARD"]}],
   "gender": "male",
   "birthDate": "1975"},
  {"resourceType": "Encounter", "id": "$ENCOUNTER",
   "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "VN"}]},
                   "system": "http://hospital.example.org/visit", "value": "V2002"}],
   "status": "arrived",
   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
   "subject": {"reference": "Patient/$PATIENT"},
   "period": {"start": "2024-02-01T09:55:00+01:00"},
   "location": [{"location": {"display": "CLINIC A"}}]}
]"#,
        &[("$PATIENT", &patient_id), ("$ENCOUNTER", &hl7::map::encounter_id("", VISIT, "V2002"))],
    );
    assert_json(&serde_json::Value::Array(resources), &expected_resources);
}

#[test]
fn a08_update_keeps_what_pv1_says() {
    let resources = resources(&bundle("adt_a08.hl7"));
    assert_json(&resources[0], &jane());
    let extra = r#",
  "hospitalization": {"dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "01"}]}}"#;
    assert_json(
        &resources[1],
        &jane_encounter(
            "finished",
            r#"{"start": "2024-01-10T08:00:00-05:00", "end": "2024-01-20T14:00:00-05:00"}"#,
            &format!("{extra}{LOCATION_4E}"),
        ),
    );
}

#[test]
fn a08_without_a_visit_updates_the_patient_only() {
    let text = load("adt_a08.hl7");
    let without_visit: String =
        text.split('\r').filter(|s| !s.starts_with("PV1")).collect::<Vec<_>>().join("\r");
    let message = hl7::Message::parse(&without_visit).unwrap();
    let Action::Transaction(bundle) = hl7::map(&message, &config()).unwrap() else {
        panic!("not a transaction")
    };
    assert_json(&serde_json::Value::Array(resources(&bundle)), &serde_json::Value::Array(vec![jane()]));
}

#[test]
fn a11_cancel_admit_cancels_the_encounter() {
    let resources = resources(&bundle("adt_a11.hl7"));
    assert_json(
        &resources[1],
        &jane_encounter("cancelled", r#"{"start": "2024-01-10T08:00:00-05:00"}"#, LOCATION_4E),
    );
}

#[test]
fn a13_cancel_discharge_reopens_the_encounter_without_an_end() {
    let resources = resources(&bundle("adt_a13.hl7"));
    assert_json(
        &resources[1],
        &jane_encounter("in-progress", r#"{"start": "2024-01-10T08:00:00-05:00"}"#, LOCATION_4E),
    );
}

#[test]
fn the_same_visit_maps_to_the_same_resources_across_events() {
    let ids = |name: &str| -> Vec<String> {
        bundle(name)["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["request"]["url"].as_str().unwrap().to_string())
            .collect()
    };
    let expected_urls = vec![format!("Patient/{}", jane_id()), format!("Encounter/{}", jane_visit_id())];
    for name in ["adt_a02.hl7", "adt_a03.hl7", "adt_a08.hl7", "adt_a11.hl7", "adt_a13.hl7"] {
        assert_eq!(ids(name), expected_urls, "{name}");
    }
    // And mapping the same message twice gives the very same bundle.
    assert_eq!(bundle("adt_a01_spec.hl7"), bundle("adt_a01_spec.hl7"));
}

#[test]
fn a28_maps_repeated_identifiers_names_and_contacts_and_ignores_the_z_segment() {
    let message = parse("adt_a28_repetitions.hl7");
    let zpi = message.segment("ZPI").unwrap();
    assert_eq!(zpi.get(2, 1, 2, 1).as_deref(), Some("Very important"));
    assert_eq!(zpi.get(3, 1, 1, 1).as_deref(), Some("LOYALTY-42"));

    let resources = resources(&bundle("adt_a28_repetitions.hl7"));
    assert_eq!(resources.len(), 1, "A28 maps the person only");
    let patient_id = hl7::map::patient_id(MRN, "300003");
    let expected_patient = expected(
        r#"{
  "resourceType": "Patient",
  "id": "$PATIENT",
  "identifier": [
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]},
     "system": "urn:chartroom:v2:authority:OTHERHOSP:PI", "value": "X99"},
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
     "system": "http://hospital.example.org/mrn", "value": "300003"},
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
     "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-1234"},
    {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
     "system": "urn:oid:2.16.840.1.113883.19.5", "value": "EPI-7"}
  ],
  "name": [
    {"use": "official", "family": "SMITH", "given": ["ROBERT", "J"], "prefix": ["DR"], "suffix": ["JR", "MD"]},
    {"use": "nickname", "family": "SMITH", "given": ["BOB"]},
    {"use": "maiden", "family": "JONES", "given": ["ROBERT"]}
  ],
  "telecom": [
    {"system": "phone", "value": "+1 (555) 5550199 ext. 12", "use": "home"},
    {"system": "email", "value": "bob@example.org", "use": "home"},
    {"system": "phone", "value": "(555) 5550142", "use": "mobile"},
    {"system": "fax", "value": "(555) 5550111", "use": "work"}
  ],
  "gender": "male",
  "birthDate": "1945-07-04",
  "deceasedDateTime": "2024-02-28",
  "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}],
                    "text": "Married"}
}"#,
        &[("$PATIENT", &patient_id)],
    );
    assert_json(&resources[0], &expected_patient);
}

#[test]
fn a31_decodes_escapes_and_treats_null_as_absent() {
    let message = parse("adt_a31_escapes.hl7");
    let pid = message.segment("PID").unwrap();
    assert!(pid.field(7).is_null());
    assert_eq!(pid.get(7, 1, 1, 1), None);

    let resources = resources(&bundle("adt_a31_escapes.hl7"));
    assert_eq!(resources.len(), 1, "A31 maps the person only");
    let expected_patient = expected(
        r#"{
  "resourceType": "Patient",
  "id": "$PATIENT",
  "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                  "system": "http://hospital.example.org/mrn", "value": "400004"}],
  "name": [{"family": "O^BRIEN&SONS", "given": ["ANNE~MARIE"]}],
  "gender": "female",
  "address": [{"use": "work", "line": ["1|2 HIGH ST\\REAR\rUNIT 5", "LINE\nTWO"], "city": "BOSTON", "state": "MA",
               "postalCode": "02110"}]
}"#,
        &[("$PATIENT", &hl7::map::patient_id(MRN, "400004"))],
    );
    assert_json(&resources[0], &expected_patient);
}

#[test]
fn a40_merges_mrg_into_pid() {
    let action = hl7::map(&parse("adt_a40.hl7"), &config()).unwrap();
    let Action::Merge { target_identifier, source_identifier, target_update } = action else {
        panic!("expected a merge, got {action:?}");
    };
    assert_eq!(target_identifier, (MRN.to_string(), "100001".to_string()));
    assert_eq!(source_identifier, (MRN.to_string(), "100099".to_string()));
    let expected_patient = expected(
        r#"{
  "resourceType": "Patient",
  "id": "$PATIENT",
  "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                  "system": "http://hospital.example.org/mrn", "value": "100001"}],
  "name": [{"family": "DOE", "given": ["JANE", "Q"]}],
  "gender": "female",
  "birthDate": "1980-02-29"
}"#,
        &[("$PATIENT", &jane_id())],
    );
    assert_json(&target_update.unwrap(), &expected_patient);
}

#[test]
fn a40_with_identifiers_only_does_not_update_the_survivor() {
    let text = "MSH|^~\\&|MPI|GHH|CHARTROOM|GHH|20240305||ADT^A40^ADT_A39|M1|P|2.5.1\rEVN|A40|20240305\r\
                PID|1||100001^^^GHH^MR\rMRG|100099^^^GHH^MR\r";
    let action = hl7::map(&hl7::Message::parse(text).unwrap(), &config()).unwrap();
    assert!(matches!(action, Action::Merge { target_update: None, .. }), "{action:?}");
}
