//! HL7 v2 messages applied through the API: what each event stores, the ACK of each outcome,
//! a message applied whole or not at all, a merge through `Patient/$merge`, and the policy
//! deciding on the interface's identity like on any caller's.

mod support;

use chartroom_api::{Method, V2Config};
use hl7::AckCode;
use privacy::Role;
use serde_json::Value;
use support::{Fixture, body, caller};

fn message(segments: &[&str]) -> String {
    segments.join("\r")
}

fn messages_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hl7/tests/messages")
}

impl Fixture {
    fn receive(&self, text: &str) -> chartroom_api::V2Receipt {
        self.receive_as(None, text)
    }

    fn receive_as(
        &self,
        who: Option<&std::sync::Arc<chartroom_api::Caller>>,
        text: &str,
    ) -> chartroom_api::V2Receipt {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(self.api.receive_v2(who.cloned(), text, &V2Config::default()))
    }

    /// Registers one outpatient visit (A04) for each MRN, the same person's details each time.
    fn register_twins(&self, mrns: &[&str]) {
        for mrn in mrns {
            let register = message(&[
                &format!("MSH|^~\\&|REG|GHH|CHARTROOM|HIM|202402011000||ADT^A04^ADT_A01|R{mrn}|P|2.5.1"),
                &format!("PID|1||{mrn}^^^^MR||ROE^RICHARD||19750101|M"),
                &format!("PV1|1|O|CLINIC||||||||||||||||V{mrn}|||||||||||||||||||||||||20240201095500"),
            ]);
            assert_eq!(self.receive(&register).code, AckCode::Accept);
        }
    }

    fn read(&self, path: &str) -> Option<Value> {
        let response = self.call(None, Method::Get, path, None);
        (response.status == 200).then(|| body(&response))
    }

    fn count(&self, resource_type: &str) -> u64 {
        body(&self.call(None, Method::Get, &format!("{resource_type}?_summary=count"), None))["total"]
            .as_u64()
            .unwrap()
    }
}

fn msa(ack: &str) -> Vec<&str> {
    ack.split('\r').find(|s| s.starts_with("MSA|")).unwrap().split('|').collect()
}

fn errs(ack: &str) -> Vec<&str> {
    ack.split('\r').filter(|s| s.starts_with("ERR|")).collect()
}

fn patient_id(mrn: &str) -> String {
    hl7::map::patient_id("http://hospital.example.org/mrn", mrn)
}

#[test]
fn admit_transfer_discharge_and_results_are_stored_and_acknowledged() {
    let fixture = Fixture::new("v2-adt", None);
    let admit = message(&[
        "MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|202401151030||ADT^A01^ADT_A01|A1|P|2.5.1",
        "EVN|A01|202401151025",
        "PID|1||300001^^^^MR~999-12-3456^^^^SS||O'NEIL^MARY^\\T\\ JANE||19500304|F|||1 OAK ST^^PEORIA^IL^61602||^PRN^PH^^^309^5550111",
        "PV1|1|I|4W^401^A||||1234^WELBY^MARCUS|||MED||||7|||||V3001|||||||||||||||||||||||||202401151020",
        "ZPI|custom|segment",
    ]);
    let receipt = fixture.receive(&admit);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    assert_eq!(msa(&receipt.ack)[1..3], ["AA", "A1"]);
    let patient = fixture.read(&format!("Patient/{}", patient_id("300001"))).expect("the patient is stored");
    assert_eq!(patient["name"][0]["family"], "O'NEIL");
    assert_eq!(patient["name"][0]["given"][1], "& JANE", "the escape \\T\\ is an ampersand");
    assert_eq!(patient["birthDate"], "1950-03-04");
    assert!(patient["identifier"].as_array().unwrap().iter().any(|i| i["value"] == "999-12-3456"));
    let encounters = body(&fixture.call(
        None,
        Method::Get,
        &format!("Encounter?subject=Patient/{}", patient_id("300001")),
        None,
    ));
    let encounter = &encounters["entry"][0]["resource"];
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["class"]["code"], "IMP");
    let encounter_id = encounter["id"].as_str().unwrap().to_string();

    let discharge = admit
        .replace("ADT^A01^ADT_A01|A1", "ADT^A03^ADT_A03|A2")
        .replace("EVN|A01", "EVN|A03")
        .replace("|202401151020\r", "|202401151020|202401201100\r");
    let receipt = fixture.receive(&discharge);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    let encounter = fixture.read(&format!("Encounter/{encounter_id}")).unwrap();
    assert_eq!(encounter["status"], "finished");
    assert!(encounter["period"]["end"].as_str().unwrap().starts_with("2024-01-20T11:00"));
    assert_eq!(encounter["meta"]["versionId"], "2", "the same visit is updated, not duplicated");

    let results = std::fs::read_to_string(messages_dir().join("oru_r01.hl7")).unwrap();
    let receipt = fixture.receive(&results);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    assert_eq!(fixture.count("Observation"), 8);
    assert_eq!(fixture.count("DiagnosticReport"), 1);
    // Sent again, it changes nothing new.
    assert_eq!(fixture.receive(&results).code, AckCode::Accept);
    assert_eq!(fixture.count("Observation"), 8);
}

#[test]
fn every_example_message_is_acknowledged_and_bad_ones_change_nothing() {
    let fixture = Fixture::new("v2-examples", None);
    let mut files: Vec<_> = std::fs::read_dir(messages_dir()).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 15);
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let before: u64 = ["Patient", "Encounter", "Observation", "DiagnosticReport"]
            .iter()
            .map(|t| fixture.count(t))
            .sum();
        let receipt = fixture.receive(&text);
        let after: u64 = ["Patient", "Encounter", "Observation", "DiagnosticReport"]
            .iter()
            .map(|t| fixture.count(t))
            .sum();
        if name.starts_with("bad_") {
            assert_ne!(receipt.code, AckCode::Accept, "{name}: {}", receipt.ack);
            assert!(!errs(&receipt.ack).is_empty(), "{name}: an ERR names what is wrong: {}", receipt.ack);
            assert_eq!(before, after, "{name} changed the record");
        } else if name != "adt_a40.hl7" {
            assert_eq!(receipt.code, AckCode::Accept, "{name}: {}", receipt.ack);
        }
    }
}

#[test]
fn a_malformed_message_is_refused_with_its_segment_and_field() {
    let fixture = Fixture::new("v2-malformed", None);
    let missing_identifier = message(&[
        "MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|202401151030||ADT^A04^ADT_A01|B1|P|2.5.1",
        "PID|1||||DOE^JANE|||F",
        "PV1|1|O",
    ]);
    let receipt = fixture.receive(&missing_identifier);
    assert_eq!(receipt.code, AckCode::Error);
    assert_eq!(msa(&receipt.ack)[1..3], ["AE", "B1"]);
    let err = errs(&receipt.ack)[0];
    // ERR-2: the segment (the first PID), field 3.
    assert!(err.contains("PID^1^3"), "{err}");
    assert!(err.contains("101"), "{err}");

    let bad_date =
        missing_identifier.replace("PID|1||||DOE^JANE|||F", "PID|1||400001^^^^MR||DOE^JANE||19501399|F");
    let receipt = fixture.receive(&bad_date);
    assert_eq!(receipt.code, AckCode::Error);
    assert!(errs(&receipt.ack)[0].contains("PID^1^7"), "{}", receipt.ack);

    let unsupported = missing_identifier.replace("ADT^A04^ADT_A01", "ADT^A99");
    assert_eq!(fixture.receive(&unsupported).code, AckCode::Reject);
    // A sender's training message never reaches the record.
    let training = bad_date.replace("19501399", "19500101").replace("|B1|P|", "|B2|T|");
    let receipt = fixture.receive(&training);
    assert_eq!(receipt.code, AckCode::Reject, "{}", receipt.ack);
    assert!(
        errs(&receipt.ack)[0].contains("MSH^1^11") && errs(&receipt.ack)[0].contains("202"),
        "{}",
        receipt.ack
    );
    let receipt = fixture.receive("this is not HL7");
    assert_eq!(receipt.code, AckCode::Reject);
    assert!(receipt.ack.starts_with("MSH|"));
    assert_eq!(fixture.count("Patient"), 0);
}

#[test]
fn a_merge_moves_the_record_and_an_unknown_registration_is_refused_whole() {
    let fixture = Fixture::new("v2-merge", None);
    fixture.register_twins(&["500001", "500099"]);
    let merge = message(&[
        "MSH|^~\\&|MPI|GHH|CHARTROOM|HIM|202403051000||ADT^A40^ADT_A39|M1|P|2.5.1",
        "EVN|A40|202403051000",
        "PID|1||500001^^^^MR||ROE^RICHARD||19750101|M",
        "MRG|500099^^^^MR",
    ]);
    let receipt = fixture.receive(&merge);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    let source = fixture.read(&format!("Patient/{}", patient_id("500099"))).unwrap();
    assert_eq!(source["active"], false);
    assert_eq!(source["link"][0]["type"], "replaced-by");
    let moved = body(&fixture.call(
        None,
        Method::Get,
        &format!("Encounter?subject=Patient/{}", patient_id("500001")),
        None,
    ));
    assert_eq!(moved["entry"].as_array().map_or(0, Vec::len), 2, "the merged registration's visit moved");

    let unknown = merge.replace("MRG|500099", "MRG|599999").replace("|M1|", "|M2|");
    let receipt = fixture.receive(&unknown);
    assert_eq!(receipt.code, AckCode::Error, "{}", receipt.ack);
    assert!(errs(&receipt.ack)[0].contains("599999"), "{}", receipt.ack);
}

#[test]
fn the_policy_decides_on_the_interfaces_identity() {
    let fixture = Fixture::new("v2-policy", None);
    let register = message(&[
        "MSH|^~\\&|REG|GHH|CHARTROOM|HIM|202402011000||ADT^A28^ADT_A05|P1|P|2.5.1",
        "EVN|A28|202402011000",
        "PID|1||600001^^^^MR||ROE^RICHARD||19750101|M",
    ]);
    let analyst = caller("reporting", Role::Analyst, None);
    let receipt = fixture.receive_as(Some(&analyst), &register);
    assert_eq!(receipt.code, AckCode::Error, "{}", receipt.ack);
    let (status, _) = receipt.applied.as_ref().unwrap();
    assert_eq!(*status, 403);
    assert_eq!(fixture.count("Patient"), 0);
    let interface = caller("hl7-interface", Role::HimTechnician, None);
    let receipt = fixture.receive_as(Some(&interface), &register);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    let (_, audited) = receipt.applied.as_ref().unwrap();
    assert_eq!(audited.interaction, "transaction");
    assert!(
        audited.patients.iter().any(|p| p == &format!("Patient/{}", patient_id("600001"))),
        "{audited:?}"
    );
}

#[test]
fn updates_change_what_they_carry_and_keep_the_rest() {
    let fixture = Fixture::new("v2-updates", None);
    let admit = message(&[
        "MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|202401151030||ADT^A01^ADT_A01|U1|P|2.5.1",
        "PID|1||700001^^^^MR||SHAW^ELLEN||19600101|F|||9 BIRCH RD^^PEORIA^IL^61602||^PRN^PH^^^309^5550177",
        "PV1|1|I|4W^401^A||||||||||||||||V7001|||||||||||||||||||||||||202401151020",
    ]);
    assert_eq!(fixture.receive(&admit).code, AckCode::Accept);
    let patient_path = format!("Patient/{}", patient_id("700001"));
    // Something the interface never sends, added through the FHIR API.
    let mut patient = fixture.read(&patient_path).unwrap();
    patient["generalPractitioner"] = serde_json::json!([{"display": "Dr Welby"}]);
    patient["deceasedBoolean"] = serde_json::json!(false);
    patient["meta"] = serde_json::json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
    assert_eq!(fixture.call(None, Method::Put, &patient_path, Some(&patient)).status, 200);

    // A sparse update: a new name, a second identifier; nothing about the address.
    let update = message(&[
        "MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|202401161030||ADT^A08^ADT_A01|U2|P|2.5.1",
        "PID|1||700001^^^^MR~E5551^^^^PI||SHAW-KIM^ELLEN||19600101|F",
        "PV1|1|I|4W^402^A||||||||||||||||V7001",
    ]);
    let receipt = fixture.receive(&update);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    let patient = fixture.read(&patient_path).unwrap();
    assert_eq!(patient["name"][0]["family"], "SHAW-KIM", "{patient}");
    assert_eq!(patient["address"][0]["city"], "PEORIA", "the address on file stays");
    assert_eq!(patient["telecom"][0]["value"].as_str().map(|v| v.contains("5550177")), Some(true));
    assert_eq!(patient["generalPractitioner"][0]["display"], "Dr Welby");
    assert_eq!(patient["meta"]["security"][0]["code"], "R", "a restricted registration stays restricted");
    assert_eq!(patient["identifier"].as_array().unwrap().len(), 2);
    let encounter_path = {
        let found =
            body(&fixture.call(None, Method::Get, &format!("Encounter?subject={patient_path}"), None));
        format!("Encounter/{}", found["entry"][0]["resource"]["id"].as_str().unwrap())
    };
    let encounter = fixture.read(&encounter_path).unwrap();
    assert!(
        encounter["period"]["start"].as_str().unwrap().starts_with("2024-01-15"),
        "the admit time stays: {encounter}"
    );

    // Discharged; a late A08 without the discharge time leaves the visit finished.
    let discharge = admit
        .replace("ADT^A01^ADT_A01|U1", "ADT^A03^ADT_A03|U3")
        .replace("|202401151020", "|202401151020|202401201100");
    assert_eq!(fixture.receive(&discharge).code, AckCode::Accept);
    assert_eq!(fixture.receive(&update.replace("|U2|", "|U4|")).code, AckCode::Accept);
    let encounter = fixture.read(&encounter_path).unwrap();
    assert_eq!(encounter["status"], "finished");
    assert!(encounter["period"]["end"].as_str().unwrap().starts_with("2024-01-20"));
    // A13 takes the discharge back.
    let cancel = admit.replace("ADT^A01^ADT_A01|U1", "ADT^A13^ADT_A01|U5");
    assert_eq!(fixture.receive(&cancel).code, AckCode::Accept);
    let encounter = fixture.read(&encounter_path).unwrap();
    assert_eq!(encounter["status"], "in-progress");
    assert!(encounter["period"].get("end").is_none(), "{encounter}");

    // A death reported by the registration system replaces the flag on file: one variant.
    let death = update.replace("|U2|", "|U6|").replace(
        "PID|1||700001^^^^MR~E5551^^^^PI||SHAW-KIM^ELLEN||19600101|F",
        "PID|1||700001^^^^MR||SHAW-KIM^ELLEN||19600101|F|||||||||||||||||||||202401210930|Y",
    );
    let receipt = fixture.receive(&death);
    assert_eq!(receipt.code, AckCode::Accept, "{}", receipt.ack);
    let patient = fixture.read(&patient_path).unwrap();
    assert!(
        patient.get("deceasedBoolean").is_none() && patient.get("deceasedDateTime").is_some(),
        "{patient}"
    );

    // A lab's result message names the patient without rewriting the registration.
    let before = fixture.read(&patient_path).unwrap();
    let results = message(&[
        "MSH|^~\\&|LAB|GHH|CHARTROOM|HIM|202401171200||ORU^R01^ORU_R01|L1|P|2.5.1",
        "PID|1||700001^^^^MR||SHAW^E",
        "OBR|1|O77|F77|2345-7^Glucose^LN|||202401170800",
        "OBX|1|NM|2345-7^Glucose^LN||99|mg/dL|||||F",
    ]);
    assert_eq!(fixture.receive(&results).code, AckCode::Accept);
    let patient = fixture.read(&patient_path).unwrap();
    assert_eq!(patient, before, "the result message left the registration as it was");
}

#[test]
fn a_merged_away_registration_is_not_brought_back_and_a_resent_merge_is_accepted() {
    let fixture = Fixture::new("v2-merged-away", None);
    fixture.register_twins(&["800001", "800099"]);
    let merge = message(&[
        "MSH|^~\\&|MPI|GHH|CHARTROOM|HIM|202403051000||ADT^A40^ADT_A39|M1|P|2.5.1",
        "PID|1||800001^^^^MR||ROE^RICHARD||19750101|M",
        "MRG|800099^^^^MR",
    ]);
    assert_eq!(fixture.receive(&merge).code, AckCode::Accept);
    let again = fixture.receive(&merge.replace("|M1|", "|M2|"));
    assert_eq!(again.code, AckCode::Accept, "a resent merge: {}", again.ack);
    // The laboratory still uses the old number.
    let late = message(&[
        "MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|202403061000||ADT^A08^ADT_A01|M3|P|2.5.1",
        "PID|1||800099^^^^MR||ROE^RICHARD||19750101|M",
        "PV1|1|O|CLINIC||||||||||||||||V800099",
    ]);
    let receipt = fixture.receive(&late);
    assert_eq!(receipt.code, AckCode::Error, "{}", receipt.ack);
    assert!(errs(&receipt.ack)[0].contains(&patient_id("800001")), "{}", receipt.ack);
    let source = fixture.read(&format!("Patient/{}", patient_id("800099"))).unwrap();
    assert_eq!(source["active"], false, "still merged away");
}

#[test]
fn a_message_posted_to_the_operation_is_applied_as_its_caller_and_answered_with_its_ack() {
    let fixture = Fixture::new("v2-operation", None);
    let register = message(&[
        "MSH|^~\\&|REG|GHH|CHARTROOM|HIM|202402011000||ADT^A28^ADT_A05|O1|P|2.5.1",
        "PID|1||950001^^^^MR||LANE^LOIS||19700101|F",
    ]);
    let parameters = serde_json::json!({"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": register}]});
    let technician = caller("registration-desk", Role::HimTechnician, None);
    let response = fixture.call(Some(&technician), Method::Post, "$hl7v2", Some(&parameters));
    assert_eq!(response.status, 200, "{}", response.body_text());
    let answer = body(&response);
    assert_eq!(answer["parameter"][1]["valueCode"], "AA");
    assert!(answer["parameter"][0]["valueString"].as_str().unwrap().contains("MSA|AA|O1"));
    assert!(
        response.audit.patients.iter().any(|p| p.ends_with(&patient_id("950001"))),
        "{:?}",
        response.audit
    );
    assert!(fixture.read(&format!("Patient/{}", patient_id("950001"))).is_some());
    // Whoever may not write the record may not send it messages either.
    let analyst = caller("reporting", Role::Analyst, None);
    assert_eq!(fixture.call(Some(&analyst), Method::Post, "$hl7v2", Some(&parameters)).status, 403);
    let missing = serde_json::json!({"resourceType": "Parameters", "parameter": []});
    assert_eq!(fixture.call(Some(&technician), Method::Post, "$hl7v2", Some(&missing)).status, 400);
}
