#![no_main]
use libfuzzer_sys::fuzz_target;

// Primitives with `_name` siblings, repeats, extensions and a reference: the shapes direct
// paths treat specially.
const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","active":true,"_active":{"extension":[{"url":"x","valueString":"y"}]},
"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]},{"use":"usual","given":["Jim"],"_given":[{"id":"g"}]}],
"telecom":[{"system":"phone","value":"555","rank":2}],"gender":"male","birthDate":"1974-12-25",
"extension":[{"url":"http://e/a","valueInteger":3},{"url":"http://e/b","valueDecimal":1.50}],
"address":[{"line":["1 Main"],"city":"X","period":{"start":"2020-01-01T10:00:00Z"}}],
"contact":[{"name":{"family":"Du"},"gender":"female"}],"multipleBirthInteger":2,
"generalPractitioner":[{"reference":"Practitioner/pr1"}],"identifier":[{"system":"urn:s","value":"12"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.len() > 200 { return; }
    let Ok(expression) = fhirpath::Expression::parse(text) else { return };
    let patient: serde_json::Value = serde_json::from_str(PATIENT).expect("the fixed Patient is JSON");
    let env = fhirpath::Environment::default();
    let general = expression.evaluate(&patient, &env);
    if let Some(direct) = expression.direct() {
        let focus = fhirpath::Value::Node(fhirpath::Node::resource(&patient));
        if let (Some(d), Ok(g)) = (direct.evaluate(&focus), &general) {
            let d: Vec<String> = d.iter().map(|v| v.to_json().to_string()).collect();
            let g: Vec<String> = g.iter().map(|v| v.to_json().to_string()).collect();
            assert_eq!(d, g, "direct and general differ for {text:?}");
        }
    }
});
