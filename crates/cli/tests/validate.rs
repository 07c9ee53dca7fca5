//! `chartroom validate FILE...`: one line per issue, exit 1 when any resource has an error.

use std::process::Command;

fn validate(files: &[&std::path::Path]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chartroom")).arg("validate").args(files).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn valid_files_pass_and_invalid_ones_fail_naming_file_line_and_location() {
    let dir = testkit::temp_dir("cli-validate");
    let valid = dir.join("valid.json");
    std::fs::write(&valid, r#"{"resourceType":"Patient","gender":"female","birthDate":"1990-02-01"}"#)
        .unwrap();
    let (code, out) = validate(&[&valid]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 resources checked: 0 with errors"), "{out}");

    let lines = dir.join("some.ndjson");
    std::fs::write(
        &lines,
        "{\"resourceType\":\"Patient\",\"gender\":\"female\"}\n{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":\"72\"}}\nnot json\n",
    )
    .unwrap();
    let (code, out) = validate(&[&valid, &lines]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("some.ndjson:2: error Observation.valueQuantity.value: expected a number"), "{out}");
    assert!(out.contains("some.ndjson:3: error"), "{out}");
    assert!(out.contains("4 resources checked: 2 with errors"), "{out}");
}
