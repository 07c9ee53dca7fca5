//! The terminology operations on the built-in R4 terminology, ICD-10-CM and resources supplied
//! at run time, with expectations checked by hand against the specification's definitions and
//! the CDC tabular list.

use std::collections::HashMap;
use std::time::Instant;

use chartroom_terminology::icd10cm::{Icd10Cm, Kind};
use chartroom_terminology::{
    Coding, Error, ExpandRequest, LookupRequest, NoResolver, Resolver, SubsumesRequest, Subsumption,
    Terminology, ValidateCodeRequest,
};
use serde_json::{Value, json};

const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";
const GENDER_VS: &str = "http://hl7.org/fhir/ValueSet/administrative-gender";
const OBSERVATION_STATUS: &str = "http://hl7.org/fhir/observation-status";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn term() -> &'static Terminology {
    Terminology::get()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The `value[x]` of the named output parameter.
fn output<'a>(parameters: &'a Value, name: &str) -> Option<&'a Value> {
    parameters["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
}

/// `(code, value, description)` of every `property` part group.
fn properties(parameters: &Value) -> Vec<(String, Value, Option<String>)> {
    parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "property")
        .map(|p| {
            let part =
                |name: &str| p["part"].as_array().and_then(|parts| parts.iter().find(|x| x["name"] == name));
            let code = part("code").and_then(|x| x["valueCode"].as_str()).unwrap_or("").to_owned();
            let value = part("value")
                .and_then(|x| {
                    x.as_object()?.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v.clone())
                })
                .unwrap_or(Value::Null);
            let description = part("description").and_then(|x| x["valueString"].as_str()).map(str::to_owned);
            (code, value, description)
        })
        .collect()
}

fn expand(request: ExpandRequest) -> Value {
    term().expand(&request, &NoResolver).expect("expand").to_value_set()
}

fn expand_url(url: &str) -> ExpandRequest {
    ExpandRequest { url: Some(url.to_owned()), ..ExpandRequest::default() }
}

fn codes(expansion: &Value) -> Vec<String> {
    expansion["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["code"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn validate(url: &str, system: &str, code: &str, display: Option<&str>) -> Value {
    let request = ValidateCodeRequest {
        url: Some(url.to_owned()),
        system: Some(system.to_owned()),
        code: Some(code.to_owned()),
        display: display.map(str::to_owned),
        ..ValidateCodeRequest::default()
    };
    term().validate_code(&request, &NoResolver).expect("validate-code").to_parameters()
}

fn result(parameters: &Value) -> bool {
    output(parameters, "result").and_then(Value::as_bool).expect("result")
}

// ---------------------------------------------------------------------------------------------
// $lookup

#[test]
fn lookup_of_an_r4_code() {
    let request =
        LookupRequest::from_query(&pairs(&[("system", GENDER), ("code", "male")])).expect("request");
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    assert_eq!(out["resourceType"], "Parameters");
    assert_eq!(output(&out, "name"), Some(&json!("AdministrativeGender")));
    assert_eq!(output(&out, "version"), Some(&json!("4.0.1")));
    assert_eq!(output(&out, "display"), Some(&json!("Male")));
    assert!(properties(&out).contains(&("definition".into(), json!("Male."), None)));

    // Nested concepts: observation-status `corrected` sits under `amended`.
    let request = LookupRequest::from_parameters(&json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "coding", "valueCoding": { "system": OBSERVATION_STATUS, "code": "corrected" } },
            { "name": "property", "valueCode": "parent" }
        ]
    }))
    .expect("request");
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    assert_eq!(output(&out, "display"), Some(&json!("Corrected")));
    assert_eq!(properties(&out), [("parent".to_owned(), json!("amended"), Some("Amended".to_owned()))]);

    // A v2 table's translations come back as designations.
    let request = LookupRequest {
        system: Some("http://terminology.hl7.org/CodeSystem/v2-0001".into()),
        code: Some("F".into()),
        ..Default::default()
    };
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    let designations: Vec<&Value> = out["parameter"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["name"] == "designation")
        .collect();
    assert_eq!(designations.len(), 2);
    assert_eq!(designations[0]["part"][0], json!({ "name": "language", "valueCode": "de" }));
    assert_eq!(designations[0]["part"][2], json!({ "name": "value", "valueString": "weiblich" }));
    let dutch = LookupRequest { display_language: Some("nl".into()), ..request };
    let out = term().lookup(&dutch, &NoResolver).expect("lookup").to_parameters();
    assert_eq!(output(&out, "display"), Some(&json!("Vrouw")));
}

#[test]
fn lookup_of_an_icd10cm_code() {
    let request =
        LookupRequest { system: Some(ICD.into()), code: Some("E11.9".into()), ..Default::default() };
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    assert_eq!(output(&out, "name"), Some(&json!("ICD-10-CM")));
    assert_eq!(output(&out, "version"), Some(&json!(Icd10Cm::get().version())));
    assert_eq!(output(&out, "display"), Some(&json!("Type 2 diabetes mellitus without complications")));
    let props = properties(&out);
    assert!(props.contains(&("parent".into(), json!("E11"), Some("Type 2 diabetes mellitus".into()))));
    assert!(props.contains(&("billable".into(), json!(true), None)));
    assert!(!props.iter().any(|(code, _, _)| code == "child"));
    // E11's Excludes1 notes apply to E11.9 as well.
    assert!(props.contains(&("excludes1".into(), json!("type 1 diabetes mellitus (E10.-)"), None)));

    // A category: not billable, with its subdivisions as children.
    let request = LookupRequest {
        system: Some(ICD.into()),
        code: Some("E11".into()),
        properties: vec!["billable".into(), "child".into()],
        ..Default::default()
    };
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    let props = properties(&out);
    assert_eq!(props[0], ("billable".into(), json!(false), None));
    assert!(props.contains(&(
        "child".into(),
        json!("E11.9"),
        Some("Type 2 diabetes mellitus without complications".into())
    )));

    // A block is found and flagged as not selectable.
    let request =
        LookupRequest { system: Some(ICD.into()), code: Some("E08-E13".into()), ..Default::default() };
    let out = term().lookup(&request, &NoResolver).expect("lookup").to_parameters();
    assert_eq!(output(&out, "display"), Some(&json!("Diabetes mellitus (E08-E13)")));
    let props = properties(&out);
    assert!(props.contains(&("notSelectable".into(), json!(true), None)));
    assert!(props.contains(&("child".into(), json!("E11"), Some("Type 2 diabetes mellitus".into()))));
}

#[test]
fn lookup_errors() {
    let unknown_code =
        LookupRequest { system: Some(GENDER.into()), code: Some("robot".into()), ..Default::default() };
    assert!(matches!(term().lookup(&unknown_code, &NoResolver), Err(Error::NotFound(_))));
    let unknown_icd =
        LookupRequest { system: Some(ICD.into()), code: Some("E11.99".into()), ..Default::default() };
    assert!(matches!(term().lookup(&unknown_icd, &NoResolver), Err(Error::NotFound(_))));
    let unknown_system = LookupRequest {
        system: Some("http://example.org/nothing".into()),
        code: Some("x".into()),
        ..Default::default()
    };
    assert!(matches!(term().lookup(&unknown_system, &NoResolver), Err(Error::NotFound(_))));
    let no_code = LookupRequest { system: Some(GENDER.into()), ..Default::default() };
    assert!(matches!(term().lookup(&no_code, &NoResolver), Err(Error::Invalid(_))));
    assert!(matches!(
        LookupRequest::from_parameters(&json!({ "resourceType": "Patient" })),
        Err(Error::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// $validate-code

#[test]
fn validate_code_against_a_whole_code_system() {
    let out = validate(GENDER_VS, GENDER, "male", None);
    assert_eq!(
        out,
        json!({ "resourceType": "Parameters", "parameter": [
            { "name": "result", "valueBoolean": true },
            { "name": "display", "valueString": "Male" }
        ]})
    );
    let out = validate(GENDER_VS, GENDER, "robot", None);
    assert!(!result(&out));
    assert!(output(&out, "message").and_then(Value::as_str).is_some_and(|m| m.contains("robot")));

    // Display checks: a wrong display makes the code invalid; case does not matter.
    let out = validate(GENDER_VS, GENDER, "male", Some("Female"));
    assert!(!result(&out));
    let message = output(&out, "message").and_then(Value::as_str).expect("message");
    assert!(message.contains("\"Female\"") && message.contains("\"Male\""), "{message}");
    assert_eq!(output(&out, "display"), Some(&json!("Male")));
    assert!(result(&validate(GENDER_VS, GENDER, "male", Some("male"))));

    // A nested concept of the code system belongs to the value set.
    let status_vs = "http://hl7.org/fhir/ValueSet/observation-status";
    assert!(result(&validate(status_vs, OBSERVATION_STATUS, "corrected", Some("Corrected"))));
    assert!(!result(&validate(status_vs, GENDER, "male", None)));

    // The simple form used for bindings and memberOf.
    assert_eq!(term().validate(status_vs, OBSERVATION_STATUS, "final").ok(), Some(true));
    assert_eq!(term().validate(status_vs, OBSERVATION_STATUS, "finished").ok(), Some(false));
    assert!(matches!(
        term().validate("http://example.org/no-such-vs", GENDER, "male"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn validate_code_with_filters_excludes_and_imports() {
    // v3-ActEncounterCode: is-a _ActEncounterCode, excluding the abstract root itself.
    let encounter = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode";
    assert!(result(&validate(encounter, ACT_CODE, "AMB", Some("ambulatory"))));
    assert!(result(&validate(encounter, ACT_CODE, "ACUTE", None)));
    assert!(!result(&validate(encounter, ACT_CODE, "_ActEncounterCode", None)));
    // An ActCode that is not an encounter code.
    assert!(!result(&validate(encounter, ACT_CODE, "_ActAccountCode", None)));
    assert!(!result(&validate(encounter, ACT_CODE, "CASH", None)));

    // patient-contactrelationship: v2-0131 is-not-a O.
    let contact = "http://hl7.org/fhir/ValueSet/patient-contactrelationship";
    let v2_0131 = "http://terminology.hl7.org/CodeSystem/v2-0131";
    assert!(result(&validate(contact, v2_0131, "C", None)));
    assert!(!result(&validate(contact, v2_0131, "O", None)));

    // security-labels imports v3-ConfidentialityClassification (a list of six codes).
    let labels = "http://hl7.org/fhir/ValueSet/security-labels";
    let confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
    assert!(result(&validate(labels, confidentiality, "R", Some("restricted"))));
    assert!(!result(&validate(labels, confidentiality, "_Confidentiality", None)));

    // consent-category lists LOINC codes; LOINC itself is not known here.
    let consent = "http://hl7.org/fhir/ValueSet/consent-category";
    let out = validate(consent, "http://loinc.org", "59284-0", None);
    assert!(result(&out));
    assert_eq!(output(&out, "display"), Some(&json!("Patient Consent")));
    assert!(!result(&validate(consent, "http://loinc.org", "1234-5", None)));

    // SNOMED CT filters cannot be evaluated: not false, but undecided.
    let condition = "http://hl7.org/fhir/ValueSet/condition-code";
    let out = validate(condition, "http://snomed.info/sct", "44054006", None);
    assert!(!result(&out));
    assert!(
        output(&out, "message").and_then(Value::as_str).is_some_and(|m| m.contains("cannot be validated"))
    );
    assert!(matches!(
        term().validate(condition, "http://snomed.info/sct", "44054006"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn validate_code_request_forms() {
    // A CodeableConcept is valid when one of its codings is.
    let request = ValidateCodeRequest::from_parameters(&json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "url", "valueUri": GENDER_VS },
            { "name": "codeableConcept", "valueCodeableConcept": { "coding": [
                { "system": "http://example.org/other", "code": "m" },
                { "system": GENDER, "code": "female", "display": "Female" }
            ]}}
        ]
    }))
    .expect("request");
    let out = term().validate_code(&request, &NoResolver).expect("validate");
    assert!(out.result);
    assert_eq!(out.display.as_deref(), Some("Female"));

    // A coding in the query form `system|code`, and a code without a system in a value set
    // drawing on one code system.
    let request = ValidateCodeRequest::from_query(&pairs(&[
        ("url", GENDER_VS),
        ("coding", "http://hl7.org/fhir/administrative-gender|other"),
    ]))
    .expect("request");
    assert!(term().validate_code(&request, &NoResolver).expect("validate").result);
    let request =
        ValidateCodeRequest::from_query(&pairs(&[("url", GENDER_VS), ("code", "unknown")])).expect("request");
    assert!(term().validate_code(&request, &NoResolver).expect("validate").result);

    // A value set given in the request.
    let value_set = json!({
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/binary-gender",
        "status": "active",
        "compose": { "include": [{ "system": GENDER, "concept": [{ "code": "male" }, { "code": "female" }] }] }
    });
    let request = ValidateCodeRequest {
        value_set: Some(value_set),
        system: Some(GENDER.into()),
        code: Some("other".into()),
        ..Default::default()
    };
    assert!(!term().validate_code(&request, &NoResolver).expect("validate").result);

    // Errors: an unknown value set, and no code at all.
    let request = ValidateCodeRequest {
        url: Some("http://example.org/none".into()),
        code: Some("x".into()),
        system: Some(GENDER.into()),
        ..Default::default()
    };
    assert!(matches!(term().validate_code(&request, &NoResolver), Err(Error::NotFound(_))));
    let request = ValidateCodeRequest { url: Some(GENDER_VS.into()), ..Default::default() };
    assert!(matches!(term().validate_code(&request, &NoResolver), Err(Error::Invalid(_))));
    assert!(matches!(
        ValidateCodeRequest::from_query(&pairs(&[("abstract", "maybe")])),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn validate_code_in_icd10cm() {
    let diabetes = "http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/E11";
    let out = validate(diabetes, ICD, "E11.9", Some("Type 2 diabetes mellitus without complications"));
    assert!(result(&out));
    assert!(!result(&validate(diabetes, ICD, "E10.9", None)));
    // The category is a code (not billable, which is said as a hint).
    let out = validate(diabetes, ICD, "E11", None);
    assert!(result(&out));
    assert!(output(&out, "message").and_then(Value::as_str).is_some_and(|m| m.contains("not billable")));

    let all = "http://hl7.org/fhir/sid/icd-10-cm?fhir_vs";
    assert!(result(&validate(all, ICD, "S72.001A", None)));
    // Blocks and chapters are groupings, not codes.
    assert!(!result(&validate(all, ICD, "E08-E13", None)));
    assert!(!result(&validate(all, ICD, "4", None)));
    assert!(!result(&validate(all, ICD, "E11.99", None)));
    // Without the dot, or in lower case, the code is found and its usual form given.
    let out = validate(all, ICD, "e119", None);
    assert!(result(&out));
    assert_eq!(output(&out, "message"), Some(&json!("the code is written \"E11.9\" in ICD-10-CM")));
    assert_eq!(term().validate(all, ICD, "J45.909").ok(), Some(true));
    assert_eq!(term().validate(all, ICD, "E08-E13").ok(), Some(false));
}

// ---------------------------------------------------------------------------------------------
// $expand

#[test]
fn expand_pages_through_a_value_set() {
    let full = expand(expand_url(GENDER_VS));
    assert_eq!(codes(&full), ["male", "female", "other", "unknown"]);
    let expansion = &full["expansion"];
    assert_eq!(expansion["total"], 4);
    assert_eq!(expansion["offset"], 0);
    assert!(expansion["identifier"].as_str().is_some_and(|i| i.starts_with("urn:uuid:") && i.len() == 45));
    let timestamp = expansion["timestamp"].as_str().expect("timestamp");
    assert!(
        timestamp.len() == 20 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
        "{timestamp}"
    );
    assert_eq!(expansion["contains"][0], json!({ "system": GENDER, "code": "male", "display": "Male" }));
    assert!(expansion["parameter"].as_array().expect("parameters").contains(
        &json!({ "name": "version", "valueUri": "http://hl7.org/fhir/administrative-gender|4.0.1" })
    ));
    assert_eq!(full["url"], GENDER_VS);
    assert_eq!(full["version"], "4.0.1");

    let request = ExpandRequest::from_query(&pairs(&[("url", GENDER_VS), ("count", "2"), ("offset", "1")]))
        .expect("request");
    let page = expand(request);
    assert_eq!(codes(&page), ["female", "other"]);
    assert_eq!(page["expansion"]["total"], 4);
    assert_eq!(page["expansion"]["offset"], 1);
    let parameters = page["expansion"]["parameter"].as_array().expect("parameters");
    assert!(parameters.contains(&json!({ "name": "count", "valueInteger": 2 })));
    assert!(parameters.contains(&json!({ "name": "offset", "valueInteger": 1 })));

    // count=0 asks only for the size; an offset past the end gives an empty page.
    let size = expand(ExpandRequest { count: Some(0), ..expand_url(GENDER_VS) });
    assert_eq!(size["expansion"]["total"], 4);
    assert!(size["expansion"]["contains"].is_null());
    let past = expand(ExpandRequest { count: Some(10), offset: 9, ..expand_url(GENDER_VS) });
    assert_eq!(past["expansion"]["total"], 4);
    assert!(codes(&past).is_empty());

    assert!(matches!(ExpandRequest::from_query(&pairs(&[("count", "-1")])), Err(Error::Invalid(_))));
    assert!(matches!(ExpandRequest::from_query(&pairs(&[("context", "x")])), Err(Error::Invalid(_))));
    let unknown = term().expand(&expand_url("http://example.org/none"), &NoResolver);
    assert!(matches!(unknown, Err(Error::NotFound(_))));
}

#[test]
fn expand_applies_excludes_abstract_and_status_rules() {
    // is-a _ActEncounterCode minus the root: the eleven codes HL7 lists.
    let encounter = expand(expand_url("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"));
    assert_eq!(
        codes(&encounter),
        ["AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"]
    );

    // item-type: `question` is notSelectable, left out unless the client asks for abstract codes.
    let item_type = "http://hl7.org/fhir/ValueSet/item-type";
    assert!(!codes(&expand(expand_url(item_type))).contains(&"question".to_owned()));
    let for_ui = expand(ExpandRequest { exclude_not_for_ui: Some(false), ..expand_url(item_type) });
    let question = for_ui["expansion"]["contains"]
        .as_array()
        .expect("contains")
        .iter()
        .find(|c| c["code"] == "question")
        .expect("question");
    assert_eq!(question["abstract"], true);

    // v3-ActReason: retired BONUS is kept (marked inactive) unless activeOnly.
    let reasons = "http://terminology.hl7.org/ValueSet/v3-ActReason";
    let all = expand(expand_url(reasons));
    let bonus = all["expansion"]["contains"]
        .as_array()
        .expect("contains")
        .iter()
        .find(|c| c["code"] == "BONUS")
        .expect("BONUS");
    assert_eq!(bonus["inactive"], true);
    let active = expand(ExpandRequest { active_only: true, ..expand_url(reasons) });
    assert!(!codes(&active).contains(&"BONUS".to_owned()));
    assert!(active["expansion"]["total"].as_u64() < all["expansion"]["total"].as_u64());

    // Designations on request, and displays in another language.
    let sex = "http://terminology.hl7.org/ValueSet/v2-0001";
    let with = expand(ExpandRequest {
        include_designations: true,
        display_language: Some("de".into()),
        ..expand_url(sex)
    });
    let female = with["expansion"]["contains"]
        .as_array()
        .expect("contains")
        .iter()
        .find(|c| c["code"] == "F")
        .expect("F");
    assert_eq!(female["display"], "weiblich");
    assert_eq!(female["designation"][1]["value"], "Vrouw");
}

#[test]
fn expand_icd10cm_implicit_value_sets() {
    let icd = Icd10Cm::get();
    // isa/E11: E11 and its 116 subdivisions (64 in the tabular list, 52 more from the
    // seventh characters for the eye), in tabular order.
    let diabetes = expand(expand_url("http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/E11"));
    let found = codes(&diabetes);
    assert_eq!(diabetes["expansion"]["total"], 117);
    assert_eq!(found[0], "E11");
    assert_eq!(found[1], "E11.0");
    assert_eq!(found.last().map(String::as_str), Some("E11.A"));
    assert!(found.contains(&"E11.9".to_owned()));
    assert!(found.contains(&"E11.3211".to_owned()));
    assert!(found.iter().all(|c| c.starts_with("E11")));

    // The whole classification is refused without paging, and pages through with it.
    let all = "http://hl7.org/fhir/sid/icd-10-cm?fhir_vs";
    match term().expand(&expand_url(all), &NoResolver) {
        Err(Error::Invalid(message)) => assert!(message.contains("too costly"), "{message}"),
        other => panic!("expected too costly, got {other:?}"),
    }
    let codes_in_icd = icd.concepts().filter(|c| c.kind().is_code()).count();
    let page = expand(ExpandRequest { count: Some(3), offset: 2, ..expand_url(all) });
    assert_eq!(page["expansion"]["total"], codes_in_icd);
    let first_codes: Vec<String> =
        icd.concepts().filter(|c| c.kind().is_code()).skip(2).take(3).map(|c| c.code().to_owned()).collect();
    assert_eq!(codes(&page), first_codes);

    // Text filter: every word begins a word of the display.
    let filter = "fracture neck femur right";
    let request = ExpandRequest { filter: Some(filter.into()), count: Some(1000), ..expand_url(all) };
    let matched = expand(request);
    let found = codes(&matched);
    assert!(found.contains(&"S72.001A".to_owned()));
    assert!(found.contains(&"S72.001".to_owned()));
    assert!(!found.contains(&"S72.002A".to_owned()), "left femur");
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    };
    let expected: Vec<String> = icd
        .concepts()
        .filter(|c| c.kind().is_code())
        .filter(|c| {
            let display = words(c.display());
            words(filter).iter().all(|f| display.iter().any(|d| d.starts_with(f.as_str())))
        })
        .map(|c| c.code().to_owned())
        .collect();
    assert_eq!(matched["expansion"]["total"], expected.len());
    assert_eq!(found, expected);

    // A filter shaped like a code matches code prefixes too, dot or not.
    let by_code = expand(ExpandRequest { filter: Some("E119".into()), ..expand_url(all) });
    assert_eq!(codes(&by_code), ["E11.9"]);
    let within = expand(ExpandRequest {
        filter: Some("retinopathy macular".into()),
        ..expand_url("http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/E11.3")
    });
    assert!(codes(&within).iter().all(|c| c.starts_with("E11.3")));
    assert!(codes(&within).contains(&"E11.311".to_owned()));

    // Blocks are accepted by is-a and, for a UI, shown as abstract.
    let block = expand(ExpandRequest {
        exclude_not_for_ui: Some(false),
        count: Some(5),
        ..expand_url("http://hl7.org/fhir/sid/icd-10-cm?fhir_vs=isa/E08-E13")
    });
    assert_eq!(
        block["expansion"]["contains"][0],
        json!({ "system": ICD, "abstract": true, "code": "E08-E13", "display": "Diabetes mellitus (E08-E13)" })
    );
    assert_eq!(block["expansion"]["contains"][1]["code"], "E08");

    assert!(term().value_set_resource(diabetes["url"].as_str().expect("url")).is_some());
}

#[test]
fn expand_of_icd10cm_with_a_text_filter_is_fast() {
    let all = "http://hl7.org/fhir/sid/icd-10-cm?fhir_vs";
    let filters = [
        "fracture neck femur right",
        "diabetes",
        "asthma",
        "e11",
        "pain",
        "malignant neoplasm breast",
        "sepsis",
    ];
    // The first call builds the word index.
    expand(ExpandRequest { filter: Some("warm up".into()), count: Some(20), ..expand_url(all) });
    let mut times = Vec::new();
    for _ in 0..20 {
        for filter in filters {
            let request = ExpandRequest { filter: Some(filter.into()), count: Some(20), ..expand_url(all) };
            let start = Instant::now();
            let expansion = term().expand(&request, &NoResolver).expect("expand");
            times.push(start.elapsed());
            assert!(expansion.total > 0, "{filter}");
        }
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    eprintln!("ICD-10-CM $expand with a text filter: p50 {p50:?}, p99 {p99:?} over {} calls", times.len());
    if !cfg!(debug_assertions) {
        assert!(p99.as_millis() < 10, "p99 {p99:?}");
    }
}

#[test]
fn expand_a_value_set_given_in_the_request() {
    let request = ExpandRequest::from_parameters(&json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "valueSet", "resource": {
                "resourceType": "ValueSet",
                "status": "draft",
                "compose": {
                    "include": [
                        { "system": OBSERVATION_STATUS, "filter": [{ "property": "concept", "op": "is-a", "value": "amended" }] },
                        { "valueSet": [GENDER_VS] }
                    ],
                    "exclude": [{ "system": GENDER, "concept": [{ "code": "unknown" }] }]
                }
            }},
            { "name": "includeDefinition", "valueBoolean": true }
        ]
    }))
    .expect("request");
    let out = term().expand(&request, &NoResolver).expect("expand").to_value_set();
    assert_eq!(codes(&out), ["amended", "corrected", "male", "female", "other"]);
    assert_eq!(out["compose"]["exclude"][0]["concept"][0]["code"], "unknown");
}

// ---------------------------------------------------------------------------------------------
// $subsumes and the plain hierarchy calls

#[test]
fn subsumes_gives_all_four_outcomes() {
    let ask = |a: &str, b: &str| {
        let request = SubsumesRequest::from_query(&pairs(&[
            ("system", OBSERVATION_STATUS),
            ("codeA", a),
            ("codeB", b),
        ]))
        .expect("request");
        term().subsumption(&request, &NoResolver).expect("subsumes")
    };
    assert_eq!(ask("amended", "corrected"), Subsumption::Subsumes);
    assert_eq!(ask("corrected", "amended"), Subsumption::SubsumedBy);
    assert_eq!(ask("final", "final"), Subsumption::Equivalent);
    assert_eq!(ask("final", "amended"), Subsumption::NotSubsumed);
    assert_eq!(
        Subsumption::SubsumedBy.to_parameters(),
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "outcome", "valueCode": "subsumed-by" }] })
    );

    // Codings, in ICD-10-CM, across levels (block above category above code).
    let request = SubsumesRequest {
        coding_a: Some(Coding {
            system: Some(ICD.into()),
            code: Some("E08-E13".into()),
            ..Default::default()
        }),
        coding_b: Some(Coding { system: Some(ICD.into()), code: Some("E11.9".into()), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(term().subsumption(&request, &NoResolver).expect("subsumes"), Subsumption::Subsumes);
    // v3 polyhierarchy through the `child` property: NOMATCH is below _RefusalReasonCode.
    let reason = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    assert_eq!(term().subsumes(reason, "_RefusalReasonCode", "NOMATCH"), Some(Subsumption::Subsumes));
    assert_eq!(term().subsumes(ICD, "E11.9", "E10.9"), Some(Subsumption::NotSubsumed));
    assert_eq!(term().subsumes(ICD, "E11.9", "E99.9"), None);

    let unknown = SubsumesRequest {
        system: Some(ICD.into()),
        code_a: Some("E11".into()),
        code_b: Some("XX".into()),
        ..Default::default()
    };
    assert!(matches!(term().subsumption(&unknown, &NoResolver), Err(Error::NotFound(_))));

    assert_eq!(term().is_a(ICD, "S72.001A", "S72"), Some(true));
    assert_eq!(term().is_a(ICD, "S72", "S72.001A"), Some(false));
    assert_eq!(term().is_a(ICD, "E11", "E11"), Some(true));
    assert_eq!(term().is_a(OBSERVATION_STATUS, "corrected", "amended"), Some(true));
    assert_eq!(term().is_a("http://example.org/none", "a", "b"), None);
    assert_eq!(term().display(ICD, "J45.909").as_deref(), Some("Unspecified asthma, uncomplicated"));
    assert_eq!(term().display(GENDER, "other").as_deref(), Some("Other"));
    assert_eq!(term().display(GENDER, "robot"), None);
}

#[test]
fn expand_codes_and_resources() {
    let status = term().expand_codes("http://hl7.org/fhir/ValueSet/observation-status").expect("codes");
    assert_eq!(status.len(), 8);
    assert_eq!(status[3], (OBSERVATION_STATUS.to_owned(), "amended".to_owned()));
    assert!(matches!(
        term().expand_codes("http://hl7.org/fhir/sid/icd-10-cm?fhir_vs"),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        term().expand_codes("http://hl7.org/fhir/ValueSet/condition-code"),
        Err(Error::NotFound(_))
    ));

    let icd = term().code_system_resource(ICD).expect("ICD-10-CM");
    assert_eq!(icd["content"], "not-present");
    assert_eq!(
        icd["count"],
        Icd10Cm::get().concepts().filter(|c| c.kind() != Kind::Chapter && c.kind() != Kind::Block).count()
    );
    let gender = term().code_system_resource(GENDER).expect("gender");
    assert_eq!(gender["concept"][0], json!({ "code": "male", "display": "Male", "definition": "Male." }));
    let versioned = term()
        .code_system_resource("http://terminology.hl7.org/CodeSystem/v2-0360|2.7")
        .expect("v2-0360|2.7");
    assert_eq!(versioned["url"], "http://terminology.hl7.org/CodeSystem/v2-0360|2.7");
    let vs = term().value_set_resource(GENDER_VS).expect("value set");
    assert_eq!(vs["compose"], json!({ "include": [{ "system": GENDER }] }));
    assert!(term().value_set_resource("http://example.org/none?fhir_vs").is_none());
}

// ---------------------------------------------------------------------------------------------
// Resources stored by the server

struct Stored(HashMap<String, Value>);

impl Resolver for Stored {
    fn value_set(&self, url: &str) -> Option<Value> {
        self.0.get(url).filter(|r| r["resourceType"] == "ValueSet").cloned()
    }

    fn code_system(&self, url: &str) -> Option<Value> {
        self.0.get(url).filter(|r| r["resourceType"] == "CodeSystem").cloned()
    }
}

fn stored() -> Stored {
    let code_system = json!({
        "resourceType": "CodeSystem",
        "url": "http://example.org/fhir/CodeSystem/wards",
        "version": "3",
        "name": "Wards",
        "status": "active",
        "content": "complete",
        "caseSensitive": false,
        "concept": [
            { "code": "MED", "display": "Medicine", "concept": [
                { "code": "CARD", "display": "Cardiology" },
                { "code": "NEPH", "display": "Nephrology", "property": [{ "code": "status", "valueCode": "retired" }] }
            ]},
            { "code": "SURG", "display": "Surgery", "property": [{ "code": "notSelectable", "valueBoolean": true }], "concept": [
                { "code": "ORTH", "display": "Orthopaedic surgery" }
            ]}
        ]
    });
    let value_set = json!({
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/surgical-wards",
        "status": "active",
        "compose": { "include": [{ "system": "http://example.org/fhir/CodeSystem/wards", "filter": [{ "property": "concept", "op": "is-a", "value": "SURG" }] }] }
    });
    Stored(HashMap::from([
        ("http://example.org/fhir/CodeSystem/wards".to_owned(), code_system),
        ("http://example.org/fhir/ValueSet/surgical-wards".to_owned(), value_set),
    ]))
}

#[test]
fn operations_on_stored_resources() {
    let store = stored();
    let wards = "http://example.org/fhir/CodeSystem/wards";
    let request =
        LookupRequest { system: Some(wards.into()), code: Some("card".into()), ..Default::default() };
    let out = term().lookup(&request, &store).expect("lookup").to_parameters();
    assert_eq!(output(&out, "display"), Some(&json!("Cardiology")), "caseSensitive false");
    assert_eq!(output(&out, "version"), Some(&json!("3")));

    let surgical = "http://example.org/fhir/ValueSet/surgical-wards";
    assert_eq!(term().validate_with(surgical, wards, "ORTH", &store).ok(), Some(true));
    assert_eq!(term().validate_with(surgical, wards, "SURG", &store).ok(), Some(false), "abstract");
    assert_eq!(term().validate_with(surgical, wards, "CARD", &store).ok(), Some(false));
    assert_eq!(
        term().validate_with(&format!("{wards}?fhir_vs=isa/MED"), wards, "NEPH", &store).ok(),
        Some(true)
    );
    assert!(
        matches!(term().validate(surgical, wards, "ORTH"), Err(Error::NotFound(_))),
        "not without the store"
    );

    let expansion =
        term().expand(&expand_url(&format!("{wards}?fhir_vs")), &store).expect("expand").to_value_set();
    assert_eq!(codes(&expansion), ["MED", "CARD", "NEPH", "ORTH"]);
    assert_eq!(expansion["expansion"]["contains"][2]["inactive"], true);
    let request = ValidateCodeRequest {
        url: Some(surgical.into()),
        system: Some(wards.into()),
        code: Some("SURG".into()),
        abstract_ok: true,
        ..Default::default()
    };
    assert!(term().validate_code(&request, &store).expect("validate").result);
    assert_eq!(
        term().expand_codes_with(surgical, &store).expect("codes"),
        [(wards.to_owned(), "ORTH".to_owned())]
    );
}

#[test]
fn a_requested_version_must_be_the_one_held() {
    let lookup = |version: &str| {
        let request =
            LookupRequest::from_query(&pairs(&[("system", ICD), ("code", "E11.9"), ("version", version)]))
                .expect("request");
        term().lookup(&request, &NoResolver)
    };
    assert!(lookup("2026").is_ok());
    assert!(
        matches!(lookup("2019"), Err(Error::NotFound(message)) if message.contains("2026") && message.contains("2019"))
    );
    // $validate-code: a coding of another edition is not valid here.
    let validate = |version: &str| {
        let request = ValidateCodeRequest {
            url: Some(GENDER_VS.to_string()),
            coding: Some(Coding {
                system: Some(GENDER.into()),
                version: Some(version.into()),
                code: Some("male".into()),
                display: None,
            }),
            ..Default::default()
        };
        term().validate_code(&request, &NoResolver).expect("validate")
    };
    assert!(validate("4.0.1").result);
    let other = validate("3.0.2");
    assert!(!other.result);
    assert!(other.message.is_some_and(|m| m.contains("3.0.2")));
}
