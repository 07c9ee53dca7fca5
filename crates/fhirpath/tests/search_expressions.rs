//! Every FHIRPath expression of the R4 SearchParameters parses, and evaluates without error
//! on every specification example of the resource types it applies to.

use chartroom_fhirpath::{Environment, Expression};
use serde_json::Value as Json;

#[test]
fn r4_search_parameter_expressions_parse_and_evaluate() {
    let Some(definitions) = testkit::shared_dir("fhir-r4/definitions") else { return };
    let Some(examples_dir) = testkit::shared_dir("fhir-r4/examples") else { return };
    let bundle: Json =
        serde_json::from_slice(&std::fs::read(definitions.join("search-parameters.json")).unwrap()).unwrap();
    let mut examples: Vec<Json> = Vec::new();
    for entry in std::fs::read_dir(examples_dir).unwrap().flatten() {
        examples.push(serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap());
    }
    let (mut parsed, mut evaluations, mut failures) = (0, 0, Vec::new());
    for entry in bundle["entry"].as_array().unwrap() {
        let parameter = &entry["resource"];
        let Some(text) = parameter["expression"].as_str() else { continue };
        let expression = match Expression::parse(text) {
            Ok(expression) => expression,
            Err(error) => {
                failures.push(format!("{}: parse: {error}", parameter["id"]));
                continue;
            }
        };
        parsed += 1;
        let bases: Vec<&str> =
            parameter["base"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
        for example in examples.iter().filter(|e| {
            e["resourceType"].as_str().is_some_and(|t| {
                bases.contains(&t) || bases.contains(&"Resource") || bases.contains(&"DomainResource")
            })
        }) {
            evaluations += 1;
            if let Err(error) = expression.evaluate(example, &Environment::default()) {
                failures.push(format!(
                    "{} on {}/{}: {error}",
                    parameter["id"], example["resourceType"], example["id"]
                ));
            }
        }
    }
    println!(
        "{parsed} search parameter expressions parsed, {evaluations} evaluations, {} failures",
        failures.len()
    );
    assert!(parsed > 1000, "only {parsed} expressions parsed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
