//! `chartroom code lookup|search|suggest` and `chartroom coding worklist`, run as the binary.

use std::process::{Command, Output};

use serde_json::json;

fn chartroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn lookup_shows_title_billable_hierarchy_and_inherited_notes() {
    let output = chartroom(&["code", "lookup", "E119"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.starts_with("E11.9  Type 2 diabetes mellitus without complications\n"), "{text}");
    assert!(text.contains("billable (valid for submission)"), "{text}");
    assert!(text.contains("E08-E13 Diabetes mellitus"), "{text}");
    // Declared on E11, shown on E11.9 with where it comes from.
    assert!(text.contains("Excludes1 (from E11): type 1 diabetes mellitus (E10.-)"), "{text}");
    let header = stdout(&chartroom(&["code", "lookup", "E11"]));
    assert!(header.contains("not billable"), "{header}");
    let unknown = chartroom(&["code", "lookup", "E11.99X"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not an ICD-10-CM"));
}

#[test]
fn search_finds_titles_with_every_word() {
    let text = stdout(&chartroom(&[
        "code",
        "search",
        "--billable",
        "--limit",
        "50",
        "neck",
        "right",
        "femur",
        "initial",
        "closed",
    ]));
    assert!(text.contains(" S72.001A  Fracture of unspecified part of neck of right femur, initial encounter for closed fracture"), "{text}");
    assert!(!text.contains("left femur"), "{text}");
    let none = stdout(&chartroom(&["code", "search", "zzzzqqq"]));
    assert!(none.contains("no code matches"));
}

#[test]
fn suggest_ranks_codes_for_a_phrase_and_a_note() {
    let text = stdout(&chartroom(&["code", "suggest", "essential", "hypertension"]));
    assert!(text.trim_start().starts_with("1. I10 "), "{text}");
    let dir = testkit::temp_dir("cli-suggest");
    let note = dir.join("note.txt");
    std::fs::write(
        &note,
        "Chief complaint: cough.\nAssessment: acute bronchitis. No fever. Denies chest pain.\n",
    )
    .unwrap();
    let text = stdout(&chartroom(&["code", "suggest", "--file", note.to_str().unwrap()]));
    assert!(text.contains("J20.9"), "{text}");
    assert!(!text.contains("R07."), "{text}");
    assert!(!text.contains("R50."), "{text}");
}

#[test]
fn the_worklist_reads_a_data_directory() {
    let dir = testkit::temp_dir("cli-worklist");
    let input = dir.join("records.ndjson");
    let lines = [
        json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1970-01-01"}),
        json!({"resourceType": "Encounter", "id": "late", "status": "finished", "subject": {"reference": "Patient/p1"},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2024-05-02T09:00:00Z", "end": "2024-05-02T10:00:00Z"}}),
        json!({"resourceType": "Encounter", "id": "early", "status": "finished", "subject": {"reference": "Patient/p1"},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2024-04-01T09:00:00Z", "end": "2024-04-01T10:00:00Z"}}),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/late"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "O80"}]}}),
    ];
    std::fs::write(&input, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let data = dir.join("data");
    let import = chartroom(&["import", input.to_str().unwrap(), "--data", data.to_str().unwrap(), "--quiet"]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let output = chartroom(&["coding", "worklist", "--data", data.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    let early = text.find("Encounter/early").expect("early listed");
    let late = text.find("Encounter/late").expect("late listed");
    assert!(early < late, "oldest discharge first:\n{text}");
    assert!(text.contains("not-coded"), "{text}");
    assert!(text.contains("icd-sex-conflict"), "{text}");
    assert!(text.contains("2 encounters need coding"), "{text}");
}
