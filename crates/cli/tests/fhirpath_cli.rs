//! `chartroom fhirpath EXPRESSION [FILE]`.

use std::io::Write;
use std::process::{Command, Stdio};

fn chartroom(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .arg("fhirpath")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chartroom fhirpath");
    if let Some(input) = stdin {
        // The command may exit (a parse error) before it reads its input: a broken pipe here
        // is expected, and the exit status is what the tests check.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    } else {
        drop(child.stdin.take());
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const PATIENT: &str = r#"{"resourceType": "Patient", "id": "p1", "birthDate": "1974-12-25",
  "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}]}"#;

#[test]
fn prints_the_result_collection_as_json() {
    let (code, stdout, _) = chartroom(&["name.given | birthDate | name.given.count()"], Some(PATIENT));
    assert_eq!(code, 0);
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result, serde_json::json!(["Peter", "James", "1974-12-25", 2]));
}

#[test]
fn reads_a_file() {
    let dir = testkit::temp_dir("fhirpath-cli");
    let file = dir.join("patient.json");
    std::fs::write(&file, PATIENT).unwrap();
    let (code, stdout, _) = chartroom(&["birthDate < @2000-01-01", file.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!([true]));
}

#[test]
fn a_parse_error_prints_the_position_and_exits_2() {
    let (code, stdout, stderr) = chartroom(&["name.where(use = )"], Some(PATIENT));
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("error at position 17"), "{stderr}");
    assert!(stderr.contains("                 ^"), "{stderr}");
    let (code, _, stderr) = chartroom(&["name.frobnicate()"], Some(PATIENT));
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown function 'frobnicate'"), "{stderr}");
}

#[test]
fn an_evaluation_error_exits_1() {
    let (code, _, stderr) = chartroom(&["name.given.single()"], Some(PATIENT));
    assert_eq!(code, 1);
    assert!(stderr.contains("single()"), "{stderr}");
}
