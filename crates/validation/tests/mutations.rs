//! A corpus of hand-written faults: each case takes a valid resource, changes one thing, and
//! names the issue the validator must report and where (FHIRPath location, and a piece of
//! the message: a constraint key like `(per-1)` or the kind of problem).

use chartroom_validation::Validator;
use serde_json::{Value, json};

fn bases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "patient",
            json!({
                "resourceType": "Patient", "id": "p1", "active": true,
                "identifier": [{ "system": "http://hospital.example.org/mrn", "value": "M1" }],
                "name": [{ "use": "official", "family": "Chalmers", "given": ["Peter", "James"] }],
                "telecom": [{ "system": "phone", "value": "555-0100", "use": "home" }],
                "gender": "male", "birthDate": "1974-12-25", "deceasedBoolean": false,
                "address": [{ "line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999" }],
                "contact": [{ "relationship": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N" }] }],
                              "name": { "family": "du Marché", "given": ["Bénédicte"] } }],
                "managingOrganization": { "reference": "Organization/1" },
                "communication": [{ "language": { "text": "French" } }]
            }),
        ),
        (
            "observation",
            json!({
                "resourceType": "Observation", "id": "o1", "status": "final",
                "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
                "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4", "display": "Heart rate" }] },
                "subject": { "reference": "Patient/p1" }, "encounter": { "reference": "Encounter/e1" },
                "effectiveDateTime": "2024-01-02T10:00:00Z", "issued": "2024-01-02T10:05:00Z",
                "valueQuantity": { "value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" },
                "referenceRange": [{ "low": { "value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" },
                                     "high": { "value": 100, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min" } }]
            }),
        ),
        (
            "encounter",
            json!({
                "resourceType": "Encounter", "id": "e1", "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP" },
                "subject": { "reference": "Patient/p1" },
                "period": { "start": "2024-01-01T08:00:00Z", "end": "2024-01-03T10:00:00Z" },
                "diagnosis": [{ "condition": { "reference": "Condition/c1" }, "rank": 1 }],
                "hospitalization": { "dischargeDisposition": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home" }] } },
                "length": { "value": 2, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d" }
            }),
        ),
        (
            "condition",
            json!({
                "resourceType": "Condition", "id": "c1",
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
                "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9" }], "text": "type 2 diabetes" },
                "subject": { "reference": "Patient/p1" }, "onsetDateTime": "2020-05-01", "recordedDate": "2020-05-02"
            }),
        ),
        (
            "medication-request",
            json!({
                "resourceType": "MedicationRequest", "id": "m1",
                "contained": [{ "resourceType": "Medication", "id": "med1", "code": { "text": "metformin" } }],
                "status": "active", "intent": "order", "medicationReference": { "reference": "#med1" },
                "subject": { "reference": "Patient/p1" }, "authoredOn": "2024-01-02",
                "dosageInstruction": [{ "text": "500 mg twice daily", "timing": { "repeat": { "frequency": 2, "period": 1, "periodUnit": "d" } } }]
            }),
        ),
        (
            "bundle",
            json!({
                "resourceType": "Bundle", "type": "transaction",
                "entry": [{ "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                            "resource": { "resourceType": "Patient", "active": true },
                            "request": { "method": "POST", "url": "Patient" } }]
            }),
        ),
    ]
}

enum Change {
    Set(&'static str, Value),
    Remove(&'static str),
}
use Change::{Remove, Set};

/// (base, change, expected location, a piece of the expected message)
fn cases() -> Vec<(&'static str, Change, &'static str, &'static str)> {
    vec![
        // Patient: names, cardinality, primitives.
        ("patient", Set("/foo", json!(1)), "Patient.foo", "unknown element"),
        ("patient", Set("/name/0/given/1", json!("")), "Patient.name[0].given[1]", "empty string"),
        ("patient", Set("/gender", json!("man")), "Patient.gender", "required value set"),
        ("patient", Set("/gender", json!("MALE")), "Patient.gender", "required value set"),
        ("patient", Set("/birthDate", json!("1974-13-25")), "Patient.birthDate", "not a valid date"),
        ("patient", Set("/birthDate", json!("25/12/1974")), "Patient.birthDate", "not a valid date"),
        ("patient", Set("/birthDate", json!(1974)), "Patient.birthDate", "expected a string"),
        ("patient", Set("/active", json!("true")), "Patient.active", "expected true or false"),
        ("patient", Set("/name", json!({ "family": "X" })), "Patient.name", "expected an array"),
        ("patient", Set("/name", json!([])), "Patient.name", "must not be empty"),
        ("patient", Set("/gender", json!(["male"])), "Patient.gender", "does not repeat"),
        ("patient", Set("/deceasedString", json!("yes")), "Patient.deceasedString", "unknown element"),
        ("patient", Set("/deceased", json!(true)), "Patient.deceased", "choice element"),
        (
            "patient",
            Set("/deceasedDateTime", json!("2020-01-01")),
            "Patient.deceasedDateTime",
            "only one of deceased[x]",
        ),
        ("patient", Set("/id", json!("bad_id!")), "Patient.id", "not a valid id"),
        (
            "patient",
            Set("/telecom/0/system", json!("fax-machine")),
            "Patient.telecom[0].system",
            "required value set",
        ),
        ("patient", Set("/telecom/0/use", json!("cell")), "Patient.telecom[0].use", "required value set"),
        ("patient", Remove("/telecom/0/system"), "Patient.telecom[0]", "(cpt-2)"),
        (
            "patient",
            Set("/address/0/use", json!("residence")),
            "Patient.address[0].use",
            "required value set",
        ),
        (
            "patient",
            Set("/address/0/line", json!("534 Erewhon St")),
            "Patient.address[0].line",
            "expected an array",
        ),
        ("patient", Set("/contact/0", json!({})), "Patient.contact[0]", "value or children"),
        ("patient", Remove("/contact/0/name"), "Patient.contact[0]", "(pat-1)"),
        (
            "patient",
            Set("/managingOrganization/reference", json!("Patient/p2")),
            "Patient.managingOrganization.reference",
            "not allowed here",
        ),
        (
            "patient",
            Set("/managingOrganization/reference", json!("Organisation/1")),
            "Patient.managingOrganization.reference",
            "not a resource type",
        ),
        (
            "patient",
            Set("/managingOrganization/reference", json!("Organization/a_b")),
            "Patient.managingOrganization.reference",
            "not a valid id",
        ),
        (
            "patient",
            Set("/generalPractitioner", json!([{ "reference": "Device/1" }])),
            "Patient.generalPractitioner[0].reference",
            "not allowed here",
        ),
        (
            "patient",
            Set("/identifier/0/use", json!("primary")),
            "Patient.identifier[0].use",
            "required value set",
        ),
        (
            "patient",
            Set("/identifier/0/period", json!({ "start": "2020-01-02", "end": "2020-01-01" })),
            "Patient.identifier[0].period",
            "(per-1)",
        ),
        ("patient", Set("/name/0/use", json!("legal")), "Patient.name[0].use", "required value set"),
        ("patient", Set("/multipleBirthInteger", json!(1.5)), "Patient.multipleBirthInteger", "whole number"),
        ("patient", Set("/multipleBirthInteger", json!("2")), "Patient.multipleBirthInteger", "whole number"),
        (
            "patient",
            Set("/photo", json!([{ "contentType": "image/png", "data": "abc" }])),
            "Patient.photo[0].data",
            "not a valid base64Binary",
        ),
        ("patient", Set("/photo", json!([{ "data": "aGVsbG8=" }])), "Patient.photo[0]", "(att-1)"),
        (
            "patient",
            Set("/communication/0/preferred", json!("yes")),
            "Patient.communication[0].preferred",
            "expected true or false",
        ),
        ("patient", Remove("/communication/0/language"), "Patient.communication[0].language", "is required"),
        ("patient", Set("/link", json!([{ "type": "seealso" }])), "Patient.link[0].other", "is required"),
        (
            "patient",
            Set("/link", json!([{ "other": { "reference": "Patient/2" }, "type": "alias" }])),
            "Patient.link[0].type",
            "required value set",
        ),
        (
            "patient",
            Set("/extension", json!([{ "url": "http://example.org/x" }])),
            "Patient.extension[0]",
            "(ext-1)",
        ),
        (
            "patient",
            Set("/extension", json!([{ "valueString": "x" }])),
            "Patient.extension[0].url",
            "is required",
        ),
        (
            "patient",
            Set(
                "/extension",
                json!([{ "url": "http://example.org/x", "valueString": "x", "extension": [{ "url": "a", "valueString": "b" }] }]),
            ),
            "Patient.extension[0]",
            "(ext-1)",
        ),
        (
            "patient",
            Set("/extension", json!([{ "url": "http://example.org/x", "valueFoo": "x" }])),
            "Patient.extension[0].valueFoo",
            "unknown element",
        ),
        (
            "patient",
            Set("/_birthDate", json!({ "value": "1974" })),
            "Patient._birthDate",
            "goes in the element itself",
        ),
        ("patient", Set("/_gender", json!([{ "id": "a" }])), "Patient._gender", "array shape"),
        ("patient", Set("/_foo", json!({ "id": "a" })), "Patient._foo", "unknown element"),
        ("patient", Set("/name/0/given", json!([null])), "Patient.name[0].given[0]", "null is only allowed"),
        (
            "patient",
            Set("/text", json!({ "status": "generated", "div": "plain text" })),
            "Patient.text.div",
            "not a valid xhtml",
        ),
        (
            "patient",
            Set(
                "/text",
                json!({ "status": "made-up", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>" }),
            ),
            "Patient.text.status",
            "required value set",
        ),
        ("patient", Set("/text", json!({ "status": "generated" })), "Patient.text.div", "is required"),
        (
            "patient",
            Set("/meta", json!({ "lastUpdated": "2020-01-01" })),
            "Patient.meta.lastUpdated",
            "not a valid instant",
        ),
        (
            "patient",
            Set("/meta", json!({ "profile": ["not a uri"] })),
            "Patient.meta.profile[0]",
            "not a valid canonical",
        ),
        (
            "patient",
            Set("/contained", json!([{ "resourceType": "Organization", "id": "o1", "name": "X" }])),
            "Patient",
            "(dom-3)",
        ),
        (
            "patient",
            Set("/contained", json!([{ "resourceType": "Foo", "id": "x" }])),
            "Patient.contained[0].resourceType",
            "not an R4 resource type",
        ),
        (
            "patient",
            Set(
                "/contained",
                json!([{ "resourceType": "Organization", "id": "o1", "name": "X", "contained": [{ "resourceType": "Organization", "id": "o2", "name": "Y" }] }]),
            ),
            "Patient",
            "(dom-2)",
        ),
        (
            "patient",
            Set(
                "/contained",
                json!([{ "resourceType": "Organization", "id": "o1", "name": "X", "meta": { "versionId": "2" } }]),
            ),
            "Patient",
            "(dom-4)",
        ),
        (
            "patient",
            Set("/managingOrganization/reference", json!("#missing")),
            "Patient.managingOrganization",
            "(ref-1)",
        ),
        ("patient", Remove("/resourceType"), "Resource", "needs a resourceType"),
        (
            "patient",
            Set(
                "/maritalStatus",
                json!({ "coding": [{ "system": "http://example.org", "code": "x" }], "text": "" }),
            ),
            "Patient.maritalStatus.text",
            "empty string",
        ),
        // Observation.
        ("observation", Remove("/status"), "Observation.status", "is required"),
        ("observation", Set("/status", json!("done")), "Observation.status", "required value set"),
        ("observation", Remove("/code"), "Observation.code", "is required"),
        (
            "observation",
            Set("/valueQuantity/value", json!("72")),
            "Observation.valueQuantity.value",
            "expected a number",
        ),
        (
            "observation",
            Set("/valueQuantity/comparator", json!("=")),
            "Observation.valueQuantity.comparator",
            "required value set",
        ),
        ("observation", Set("/valueString", json!("x")), "Observation.valueString", "only one of value[x]"),
        (
            "observation",
            Set("/effectiveDateTime", json!("2024-01-02T10:00")),
            "Observation.effectiveDateTime",
            "not a valid dateTime",
        ),
        ("observation", Set("/issued", json!("2024-01-02")), "Observation.issued", "not a valid instant"),
        (
            "observation",
            Set("/subject/reference", json!("Observation/o2")),
            "Observation.subject.reference",
            "not allowed here",
        ),
        (
            "observation",
            Set("/referenceRange/0", json!({ "appliesTo": [{ "text": "adults" }] })),
            "Observation.referenceRange[0]",
            "(obs-3)",
        ),
        ("observation", Set("/dataAbsentReason", json!({ "text": "not done" })), "Observation", "(obs-6)"),
        (
            "observation",
            Set("/component", json!([{ "valueString": "x" }])),
            "Observation.component[0].code",
            "is required",
        ),
        (
            "observation",
            Set("/valueQuantity", json!({ "value": 72, "code": "/min" })),
            "Observation.valueQuantity",
            "(qty-3)",
        ),
        (
            "observation",
            Set("/interpretation", json!({ "text": "high" })),
            "Observation.interpretation",
            "expected an array",
        ),
        (
            "observation",
            Set("/category/0/coding/0/system", json!("not a uri")),
            "Observation.category[0].coding[0].system",
            "not a valid uri",
        ),
        (
            "observation",
            Set("/code/coding/0/code", json!("")),
            "Observation.code.coding[0].code",
            "empty string",
        ),
        (
            "observation",
            Set("/code/coding/0/code", json!(" 8867-4")),
            "Observation.code.coding[0].code",
            "not a valid code",
        ),
        (
            "observation",
            Set("/code/coding/0/userSelected", json!("yes")),
            "Observation.code.coding[0].userSelected",
            "expected true or false",
        ),
        (
            "observation",
            Set("/code/coding/0/version", json!(2)),
            "Observation.code.coding[0].version",
            "expected a string",
        ),
        (
            "observation",
            Set("/performer", json!([{ "reference": "Encounter/e1" }])),
            "Observation.performer[0].reference",
            "not allowed here",
        ),
        (
            "observation",
            Set("/hasMember", json!([{ "reference": "Patient/p1" }])),
            "Observation.hasMember[0].reference",
            "not allowed here",
        ),
        (
            "observation",
            Set("/bodySite", json!([{ "text": "arm" }])),
            "Observation.bodySite",
            "does not repeat",
        ),
        (
            "observation",
            Set("/valueQuantity/unitt", json!("x")),
            "Observation.valueQuantity.unitt",
            "unknown element",
        ),
        (
            "observation",
            Set("/referenceRange/0/low/value", json!(true)),
            "Observation.referenceRange[0].low.value",
            "expected a number",
        ),
        (
            "observation",
            Set("/effectivePeriod", json!({ "start": "2024-01-02" })),
            "Observation.effectivePeriod",
            "only one of effective[x]",
        ),
        // Encounter.
        ("encounter", Set("/status", json!("completed")), "Encounter.status", "required value set"),
        ("encounter", Remove("/status"), "Encounter.status", "is required"),
        ("encounter", Remove("/class"), "Encounter.class", "is required"),
        ("encounter", Set("/class", json!([{ "code": "IMP" }])), "Encounter.class", "does not repeat"),
        (
            "encounter",
            Set("/period", json!({ "start": "2024-01-03T10:00:00Z", "end": "2024-01-01T08:00:00Z" })),
            "Encounter.period",
            "(per-1)",
        ),
        (
            "encounter",
            Set("/diagnosis/0/rank", json!(0)),
            "Encounter.diagnosis[0].rank",
            "outside the range of positiveInt",
        ),
        ("encounter", Remove("/diagnosis/0/condition"), "Encounter.diagnosis[0].condition", "is required"),
        (
            "encounter",
            Set("/diagnosis/0/condition/reference", json!("Observation/o1")),
            "Encounter.diagnosis[0].condition.reference",
            "not allowed here",
        ),
        (
            "encounter",
            Set("/length", json!({ "value": 2, "code": "d", "system": "http://example.org" })),
            "Encounter.length",
            "(drt-1)",
        ),
        (
            "encounter",
            Set("/location", json!([{ "location": { "reference": "Location/l1" }, "status": "done" }])),
            "Encounter.location[0].status",
            "required value set",
        ),
        (
            "encounter",
            Set("/hospitalization/dischargeDisposition", json!([])),
            "Encounter.hospitalization.dischargeDisposition",
            "does not repeat",
        ),
        (
            "encounter",
            Set("/classHistory", json!([{ "class": { "code": "AMB" } }])),
            "Encounter.classHistory[0].period",
            "is required",
        ),
        (
            "encounter",
            Set("/statusHistory", json!([{ "status": "finished" }])),
            "Encounter.statusHistory[0].period",
            "is required",
        ),
        (
            "encounter",
            Set("/subject/reference", json!("Practitioner/1")),
            "Encounter.subject.reference",
            "not allowed here",
        ),
        // Condition.
        (
            "condition",
            Set("/clinicalStatus/coding/0/code", json!("on")),
            "Condition.clinicalStatus",
            "required value set",
        ),
        (
            "condition",
            Set("/verificationStatus/coding/0/code", json!("maybe")),
            "Condition.verificationStatus",
            "required value set",
        ),
        ("condition", Remove("/subject"), "Condition.subject", "is required"),
        ("condition", Set("/abatementDateTime", json!("2021-01-01")), "Condition", "(con-4)"),
        (
            "condition",
            Set("/verificationStatus/coding/0/code", json!("entered-in-error")),
            "Condition",
            "(con-5)",
        ),
        (
            "condition",
            Set("/onsetDateTime", json!("2020-02-30")),
            "Condition.onsetDateTime",
            "not a valid dateTime",
        ),
        ("condition", Set("/stage", json!([{}])), "Condition.stage[0]", "value or children"),
        (
            "condition",
            Set("/evidence", json!([{ "detail": [] }])),
            "Condition.evidence[0].detail",
            "must not be empty",
        ),
        (
            "condition",
            Set(
                "/note",
                json!([{ "text": "x", "authorString": "a", "authorReference": { "reference": "Practitioner/1" } }]),
            ),
            "Condition.note[0].authorReference",
            "only one of author[x]",
        ),
        (
            "condition",
            Set("/note", json!([{ "authorString": "a" }])),
            "Condition.note[0].text",
            "is required",
        ),
        (
            "condition",
            Set("/recordedDate", json!("yesterday")),
            "Condition.recordedDate",
            "not a valid dateTime",
        ),
        (
            "condition",
            Set("/subject/reference", json!("Condition/c2")),
            "Condition.subject.reference",
            "not allowed here",
        ),
        // MedicationRequest with a contained Medication.
        (
            "medication-request",
            Set("/intent", json!("prescription")),
            "MedicationRequest.intent",
            "required value set",
        ),
        ("medication-request", Remove("/intent"), "MedicationRequest.intent", "is required"),
        (
            "medication-request",
            Set("/medicationReference/reference", json!("#nope")),
            "MedicationRequest.medicationReference",
            "(ref-1)",
        ),
        (
            "medication-request",
            Set("/contained/0/meta", json!({ "versionId": "1" })),
            "MedicationRequest",
            "(dom-4)",
        ),
        (
            "medication-request",
            Set("/dosageInstruction/0/timing/repeat/periodUnit", json!("days")),
            "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit",
            "required value set",
        ),
        (
            "medication-request",
            Set("/dosageInstruction/0/timing/repeat/duration", json!(5)),
            "MedicationRequest.dosageInstruction[0].timing.repeat",
            "(tim-1)",
        ),
        (
            "medication-request",
            Set("/dosageInstruction/0/timing/repeat/frequency", json!(0)),
            "MedicationRequest.dosageInstruction[0].timing.repeat.frequency",
            "outside the range of positiveInt",
        ),
        (
            "medication-request",
            Set("/contained/0/resourceType", json!("Medicine")),
            "MedicationRequest.contained[0].resourceType",
            "not an R4 resource type",
        ),
        (
            "medication-request",
            Set("/contained/0/code/text", json!(7)),
            "MedicationRequest.contained[0].code.text",
            "expected a string",
        ),
        // Bundle.
        ("bundle", Set("/type", json!("collectionx")), "Bundle.type", "required value set"),
        ("bundle", Remove("/entry/0/request"), "Bundle", "(bdl-3)"),
        (
            "bundle",
            Set("/entry/0/request/method", json!("FETCH")),
            "Bundle.entry[0].request.method",
            "required value set",
        ),
        (
            "bundle",
            Set("/entry/0/resource", json!({ "resourceType": "Patient", "active": "yes" })),
            "Bundle.entry[0].resource.active",
            "expected true or false",
        ),
        ("bundle", Set("/total", json!(1)), "Bundle", "(bdl-1)"),
        ("bundle", Set("/entry/0/search", json!({ "mode": "match" })), "Bundle", "(bdl-2)"),
    ]
}

fn apply(resource: &mut Value, change: &Change) {
    let (pointer, value) = match change {
        Set(pointer, value) => (*pointer, Some(value.clone())),
        Remove(pointer) => (*pointer, None),
    };
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = resource.pointer_mut(parent).unwrap_or_else(|| panic!("{parent} is not in the base"));
    match (target, value) {
        (Value::Object(object), Some(value)) => {
            object.insert(key.to_string(), value);
        }
        (Value::Object(object), None) => {
            object.remove(key).unwrap_or_else(|| panic!("{pointer} is not in the base"));
        }
        (Value::Array(items), Some(value)) => {
            let index: usize = key.parse().expect("an index");
            if index < items.len() { items[index] = value } else { items.push(value) }
        }
        (Value::Array(items), None) => {
            items.remove(key.parse().expect("an index"));
        }
        _ => panic!("{parent} is not an object or array"),
    }
}

#[test]
fn the_bases_are_valid() {
    for (name, base) in bases() {
        let errors: Vec<_> = Validator::r4().validate(&base);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn each_fault_is_reported_at_its_location() {
    let bases = bases();
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (base, change, location, message) in &cases {
        let mut resource = bases.iter().find(|(n, _)| n == base).expect("a base").1.clone();
        apply(&mut resource, change);
        let issues = Validator::r4().validate(&resource);
        let found = issues.iter().any(|issue| {
            matches!(issue.severity, fhir::Severity::Error)
                && issue.expression.first().is_some_and(|e| e == location)
                && issue.diagnostics.contains(message)
        });
        if !found {
            let seen: Vec<String> = issues
                .iter()
                .map(|i| format!("{} {}: {}", i.severity.code(), i.expression.join(","), i.diagnostics))
                .collect();
            failures.push(format!("{base} {location} '{message}': got {seen:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
