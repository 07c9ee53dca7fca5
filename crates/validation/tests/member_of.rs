//! FHIRPath's `memberOf()` answered by the built-in terminology, as validation, views and the
//! command line give it to their evaluations.

use chartroom_validation::TERMINOLOGY;
use fhirpath::{Environment, Expression, Value};
use serde_json::json;

fn eval(expression: &str, input: &serde_json::Value) -> Vec<String> {
    let env = Environment { value_sets: Some(&TERMINOLOGY), ..Environment::default() };
    Expression::parse(expression).unwrap().evaluate(input, &env).unwrap().iter().map(Value::display).collect()
}

#[test]
fn member_of_asks_the_built_in_terminology() {
    let gender_in = |gender: &str| {
        eval(
            "gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')",
            &json!({"resourceType": "Patient", "gender": gender}),
        )
    };
    assert_eq!(gender_in("male"), vec!["true"]);
    assert_eq!(gender_in("man"), vec!["false"]);
    let condition = json!({"resourceType": "Condition", "code": {"coding": [
        {"system": "http://snomed.info/sct", "code": "44054006"},
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}
    ]}, "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}});
    assert_eq!(
        eval("code.memberOf('http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/E11')", &condition),
        vec!["true"]
    );
    assert_eq!(
        eval("code.memberOf('http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/I10')", &condition),
        vec!["false"]
    );
    assert_eq!(
        eval("clinicalStatus.memberOf('http://hl7.org/fhir/ValueSet/condition-clinical')", &condition),
        vec!["true"]
    );
    // An unknown value set gives no answer.
    assert_eq!(eval("code.memberOf('http://example.org/unknown')", &condition), Vec::<String>::new());
}
