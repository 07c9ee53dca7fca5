//! Elements the synthetic population does not have, each with the identity it could carry:
//! narratives, primitive extensions, contained resources, stored Bundles, relatives' names,
//! ages as quantities, addresses of other servers. What must go, goes; what is left is still
//! valid FHIR.

mod support;

use chartroom_deid::{IdentifierClass, Key, Settings};
use serde_json::{Value, json};
use support::deidentify;

fn patient() -> Value {
    json!({
        "resourceType": "Patient", "id": "p1",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ana González, SSN 999-12-3456</div>"},
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Iturbide"},
            {"url": "http://example.org/homepage", "valueUrl": "https://ana.example.net/me"},
        ],
        "name": [{"family": "González", "given": ["Ana"]}],
        "birthDate": "1930-05-06",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1930-05-06T08:15:00Z"}]},
        "contact": [{"name": {"family": "Iturbide", "given": ["Rosa"]}, "telecom": [{"system": "phone", "value": "555-0100"}]}],
    })
}

#[test]
fn narratives_primitive_extensions_and_relatives_go() {
    let note = json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8251-1", "display": "Call back 217-555-0142 on 2021-03-04"}]},
        "subject": {"reference": "Patient/p1", "display": "Ana González"},
        "performer": [{"display": "Dr Welby"}],
        "note": [{"authorString": "Rosa Iturbide", "text": "GONZÁLEZ, ANA seen; daughter Rosa called; 93 yo; DOB 05/06/1930; acct no: 88123"}],
        "valueQuantity": {"value": 93, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
        "effectiveDateTime": "2021-03-04T10:00:00Z",
        "meta": {"lastUpdated": "2026-01-01T00:00:00Z", "source": "http://ehr.example.org/feed"},
    });
    let family = json!({
        "resourceType": "FamilyMemberHistory", "id": "f1", "status": "completed",
        "patient": {"reference": "Patient/p1"}, "relationship": {"text": "daughter"}, "name": "Rosa Iturbide",
    });
    let (out, report) = deidentify(Settings::safe_harbor("2026-01-01").unwrap(), &[patient(), note, family]);
    let text = serde_json::to_string(&out).unwrap();
    for gone in [
        "González",
        "GONZÁLEZ",
        "Gonzalez",
        "Ana",
        "ANA",
        "Iturbide",
        "Rosa",
        "999-12-3456",
        "555-0142",
        "555-0100",
        "2021-03",
        "1930",
        "ana.example",
        "ehr.example",
        "Welby",
        "88123",
        "93",
        "xhtml",
        "birthTime",
        "lastUpdated",
    ] {
        assert!(!text.contains(gone), "{gone} left in {text}");
    }
    let observation = &out[1];
    assert_eq!(observation["valueQuantity"]["value"], 90);
    assert_eq!(observation["valueQuantity"]["comparator"], ">=");
    assert_eq!(observation["code"]["coding"][0]["display"], "Call back [PHONE] on 2021");
    // No empty leftovers: the performer named by display only is gone altogether.
    assert!(observation.get("performer").is_none(), "{observation}");
    assert!(out[0].get("birthDate").is_none() && text.contains("age-90-or-older"));
    assert!(report.total(IdentifierClass::Names) >= 4);
}

#[test]
fn stored_bundles_and_contained_resources_lose_their_addresses_and_ids() {
    let bundle = json!({
        "resourceType": "Bundle", "id": "b1", "type": "collection",
        "link": [{"relation": "self", "url": "http://ehr.example.org/fhir/Patient?identifier=999-12-3456"}],
        "entry": [{
            "fullUrl": "http://ehr.example.org/fhir/Patient/p1",
            "resource": patient(),
            "request": {"method": "PUT", "url": "Patient?identifier=999-12-3456"},
        }],
    });
    let medication = json!({
        "resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
        "subject": {"reference": "http://other.example.org/fhir/Patient/p1"},
        "contained": [{"resourceType": "Medication", "id": "med", "batch": {"lotNumber": "LOT-7781"}}],
        "medicationReference": {"reference": "#med"},
    });
    let (out, _) = deidentify(Settings::safe_harbor("2026-01-01").unwrap(), &[bundle, medication]);
    let text = serde_json::to_string(&out).unwrap();
    for gone in ["ehr.example", "999-12-3456", "\"p1\"", "Patient/p1", "LOT-7781", "other.example"] {
        assert!(!text.contains(gone), "{gone} left in {text}");
    }
    assert_eq!(out[0]["entry"][0]["resource"]["resourceType"], "Patient");
    assert!(out[0].get("extension").is_none(), "a Bundle has no extensions: {}", out[0]);
    // The required subject pointed at another server: the request cannot stay without it.
    assert_eq!(out.len(), 1, "{text}");
}

#[test]
fn date_shift_follows_the_resources_own_patient() {
    let key = Key::from_bytes(b"shift key");
    let child = json!({"resourceType": "Patient", "id": "child", "birthDate": "2020-01-10"});
    let observation = json!({
        "resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "weight"},
        "performer": [{"reference": "Patient/mother"}],
        "subject": {"reference": "Patient/child"},
        "effectiveDateTime": "2020-01-20",
    });
    let group = json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/child"}, "period": {"start": "2020-02-01"}},
                   {"entity": {"reference": "Patient/mother"}, "period": {"start": "2020-02-01"}}]});
    let (out, report) =
        deidentify(Settings::date_shift(key.clone(), "2026-01-01"), &[child, observation, group]);
    let born = fhir::datetime::days_from_civil(2020, 1, 10);
    let seen = fhir::datetime::days_from_civil(2020, 1, 20);
    let day = |text: &str| {
        fhir::datetime::days_from_civil(
            text[..4].parse().unwrap(),
            text[5..7].parse().unwrap(),
            text[8..10].parse().unwrap(),
        )
    };
    assert_eq!(day(out[0]["birthDate"].as_str().unwrap()) - born, key.shift_days("child"));
    assert_eq!(day(out[1]["effectiveDateTime"].as_str().unwrap()) - seen, key.shift_days("child"));
    assert_eq!(out.len(), 2, "a resource about two patients and owned by neither is left out");
    assert_eq!(report.dropped.values().sum::<u64>(), 1);
}
