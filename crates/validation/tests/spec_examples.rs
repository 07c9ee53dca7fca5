//! Every example of the R4 specification validates without errors, apart from the few the
//! specification itself gets wrong, each listed with the reason.

use std::collections::BTreeMap;

use chartroom_validation::Validator;

/// Examples with genuine errors, by file, with the (start of the) diagnostics expected and
/// why the example is wrong.
const INVALID_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "DeviceMetric-example.json",
        "a reference to DeviceDefinition is not allowed here",
        "DeviceMetric.parent may only refer to a Device",
    ),
    (
        "DeviceUseStatement-example.json",
        "a reference to Procedure is not allowed here",
        "DeviceUseStatement.reasonReference does not list Procedure among its targets",
    ),
    (
        "MedicationRequest-medrx0301.json",
        "a reference to Practitioner is not allowed here",
        "dispenseRequest.performer may only refer to an Organization",
    ),
    (
        "Observation-clinical-gender.json",
        "a reference to Encounter is not allowed here",
        "an Encounter is not a performer of an Observation",
    ),
];

#[test]
fn every_specification_example_is_valid() {
    let Some(dir) = testkit::shared_dir("fhir-r4/examples") else { return };
    let validator = Validator::r4();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let resource = fhir::parse_json(&std::fs::read(path).unwrap()).expect("an example parses");
        checked += 1;
        let errors: Vec<String> = validator
            .validate(&resource)
            .into_iter()
            .filter(|i| matches!(i.severity, fhir::Severity::Error | fhir::Severity::Fatal))
            .map(|i| format!("{}: {}", i.expression.first().cloned().unwrap_or_default(), i.diagnostics))
            .collect();
        let expected = INVALID_EXAMPLES.iter().filter(|(file, _, _)| *file == name).collect::<Vec<_>>();
        if expected.is_empty() {
            if !errors.is_empty() {
                failures.insert(name, errors);
            }
        } else {
            for (_, diagnostics, why) in &expected {
                assert!(
                    errors.iter().any(|e| e.contains(diagnostics)),
                    "{name}: expected '{diagnostics}' ({why}), got {errors:?}"
                );
            }
            let unexpected: Vec<&String> =
                errors.iter().filter(|e| !expected.iter().any(|(_, d, _)| e.contains(d))).collect();
            assert!(unexpected.is_empty(), "{name}: {unexpected:?}");
        }
    }
    assert_eq!(checked, 710);
    let report: Vec<String> =
        failures.iter().map(|(file, errors)| format!("{file}:\n  {}", errors.join("\n  "))).collect();
    assert!(failures.is_empty(), "{} examples with errors:\n{}", failures.len(), report.join("\n"));
}

/// Each error-severity invariant of the specification is evaluated; the few the engine cannot
/// parse are known and listed here (they are skipped, never reported as failures).
#[test]
fn the_engine_parses_the_specifications_invariants() {
    let unparsed = Validator::r4().unparsed_invariants();
    assert!(unparsed.len() <= 3, "{unparsed:?}");
}
