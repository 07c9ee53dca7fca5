//! The patient's own resources, written before any encounter: the Patient, its Coverage and
//! a Condition for each entry of the problem list.

use serde_json::{Value, json};

use super::directory::{PAYERS, PROVIDERS, Plan, STAFF_SYSTEM};
use super::person::{Person, Problem};
use super::{clinical_status, confirmed, dx_concept};
use crate::calendar::*;
use crate::rng::Rng;
use crate::vocab;

pub(super) fn patient_resource(plan: &Plan, person: &Person, rng: &mut Rng) -> Value {
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    let home = &person.address;
    let mut lines = vec![Value::from(home.line.as_str())];
    if let Some(apartment) = &home.apartment {
        lines.push(Value::from(apartment.as_str()));
    }
    let address = json!({ "use": "home", "type": "physical", "line": lines, "city": home.city, "state": home.state,
                          "postalCode": home.zip, "country": "US" });
    let mut given = vec![Value::from(person.given)];
    if rng.chance(0.6) {
        let middle = if person.female { rng.pick(vocab::FEMALE_GIVEN) } else { rng.pick(vocab::MALE_GIVEN) };
        if *middle != person.given {
            given.push(Value::from(*middle));
        }
    }
    let mut names = vec![json!({ "use": "official", "family": person.family, "given": given })];
    if let Some((_, nickname)) = vocab::NICKNAMES.iter().find(|(name, _)| *name == person.given)
        && rng.chance(0.5)
    {
        names.push(json!({ "use": "nickname", "given": [nickname] }));
    }
    // 999 is never issued as an SSN area number, so these can never be real.
    let ssn = format!("999-{:02}-{:04}", rng.range(10, 99), rng.range(1, 9999));
    let mut patient = json!({
        "resourceType": "Patient",
        "id": person.id(),
        "identifier": [
            { "use": "usual", "type": concept(v2, "MR", "Medical record number"),
              "system": "http://hospital.example.org/mrn", "value": format!("M{}", person.key) },
            { "use": "official", "type": concept(v2, "SS", "Social Security number"),
              "system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn },
        ],
        "active": true,
        "name": names,
        "telecom": [{ "system": "phone", "value": format!("{}-555-01{:02}", home.area_code, rng.range(0, 99)),
                      "use": if rng.chance(0.7) { "mobile" } else { "home" } }],
        "gender": if person.female { "female" } else { "male" },
        "birthDate": date(person.birth),
    });
    if let (Some(member), Some(identifiers)) =
        (person.employee.map(|j| &plan.staff[j]), patient.get_mut("identifier").and_then(Value::as_array_mut))
    {
        identifiers.push(json!({ "use": "secondary", "type": concept(v2, "EI", "Employee number"),
                                 "system": STAFF_SYSTEM, "value": member.staff_id }));
    }
    if let (Some(death), Some(object)) = (person.death, patient.as_object_mut()) {
        object.insert("deceasedDateTime".into(), Value::from(date_time(death)));
    }
    if let Some(object) = patient.as_object_mut() {
        object.insert("address".into(), json!([address]));
        object.insert(
            "generalPractitioner".into(),
            json!([reference(&format!("Practitioner/{}", person.pcp))]),
        );
        object.insert(
            "managingOrganization".into(),
            reference(&format!("Organization/{}", PROVIDERS[person.clinic].id)),
        );
    }
    patient
}

pub(super) fn coverage_resource(person: &Person) -> Value {
    let payer = &PAYERS[person.payer];
    json!({
        "resourceType": "Coverage",
        "id": format!("cov-{}", person.key),
        "status": "active",
        "type": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EHCPOL", "extended healthcare"),
        "subscriberId": format!("{}{}", &payer.id[4..6].to_ascii_uppercase(), person.key),
        "beneficiary": person.reference(),
        "relationship": concept("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
        "payor": [reference(&format!("Organization/{}", payer.id))],
        "class": [{ "type": concept("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"),
                    "value": payer.id[4..].to_string(), "name": payer.plan }],
    })
}

pub(super) fn chronic_condition(person: &Person, problem: &Problem) -> Value {
    json!({
        "resourceType": "Condition",
        "id": problem.id,
        "clinicalStatus": clinical_status("active"),
        "verificationStatus": confirmed(),
        "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")],
        "code": dx_concept(problem.dx),
        "subject": person.reference(),
        "onsetDateTime": date(problem.onset),
        "recordedDate": date(problem.onset.max(RECORDS_FROM)),
    })
}
