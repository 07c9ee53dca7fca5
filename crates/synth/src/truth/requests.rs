//! The HIM department's open work on the as-of date, planted so its reports can be measured:
//! release-of-information requests and amendment requests received in the weeks before (some
//! past their legal due date), and legal holds on a patient or on one encounter, with what
//! each hold covers.
//!
//! - A release request (a `Task`, code release-of-information) is due 30 days after receipt,
//!   60 when the one extension was given (before day 30); overdue when due before the as-of
//!   date.
//! - An amendment request (code amendment) on one of the patient's Conditions is due 60 days
//!   after receipt.
//! - A hold (code legal-hold, in force, `for` the patient) covers, of the patient's own
//!   resources (whose subject, patient or beneficiary is the patient): all of them for a hold
//!   on the patient; the Encounter and every resource referring to it for a hold on an
//!   encounter (`focus`). The Patient is kept with them.

use serde_json::{Value, json};

use crate::calendar::{DAY, TODAY, date_time};
use crate::rng::Rng;
use crate::{Error, Sink};

const WORKFLOW: &str = "https://chartroom.dev/fhir/CodeSystem/him-workflow";
const ROI_INPUT: &str = "https://chartroom.dev/fhir/CodeSystem/roi-input";
const AMENDMENT_INPUT: &str = "https://chartroom.dev/fhir/CodeSystem/amendment-input";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

fn input(system: &str, code: &str, value: Value) -> Value {
    let mut entry = json!({ "type": { "coding": [{ "system": system, "code": code }] } });
    if let (Some(entry), Some(value)) = (entry.as_object_mut(), value.as_object()) {
        entry.extend(value.clone());
    }
    entry
}

/// A release-of-information request received 1 to 75 days before the as-of date.
pub(crate) fn roi_request(key: &str, patient: &str, sink: &mut Sink, rng: &mut Rng) -> Result<Value, Error> {
    let now = TODAY * DAY;
    let received = now - (1 + rng.below(75) as i64) * DAY + 9 * 3600;
    let (kind, purpose, requester) = match rng.below(3) {
        0 => ("patient", "PATRQT", json!({ "reference": format!("Patient/{patient}") })),
        1 => ("insurer", "HPAYMT", json!({ "display": "Acme Health Plan, claims review" })),
        _ => ("provider", "TREAT", json!({ "display": "Riverside Cardiology" })),
    };
    let mut inputs = vec![
        input(ROI_INPUT, "requester-type", json!({ "valueCode": kind })),
        input(ROI_INPUT, "delivery", json!({ "valueCode": "fhir" })),
        input(ROI_INPUT, "record-type", json!({ "valueCode": "Encounter" })),
    ];
    let mut due = received + 30 * DAY;
    let given = received + (1 + rng.below(28) as i64) * DAY;
    if rng.chance(0.3) && given <= now {
        inputs.push(input(ROI_INPUT, "extension-reason", json!({ "valueString": "records held off-site" })));
        inputs.push(input(ROI_INPUT, "extension-given", json!({ "valueDateTime": date_time(given) })));
        due += 30 * DAY;
    }
    let id = format!("roi-{key}");
    sink.write(&json!({
        "resourceType": "Task", "id": id, "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": WORKFLOW, "code": "release-of-information" }] },
        "for": { "reference": format!("Patient/{patient}") }, "authoredOn": date_time(received),
        "requester": requester,
        "reasonCode": { "coding": [{ "system": ACT_REASON, "code": purpose }] },
        "restriction": { "period": { "end": date_time(due) } },
        "input": inputs,
    }))?;
    Ok(json!({ "task": format!("Task/{id}"), "patient": format!("Patient/{patient}"), "requesterType": kind,
               "received": date_time(received), "due": date_time(due), "overdue": due < now }))
}

/// An amendment request on one of the patient's Conditions, received 1 to 100 days before the
/// as-of date; none when the patient has no Condition.
pub(crate) fn amendment_request(
    key: &str,
    patient: &str,
    sink: &mut Sink,
    rng: &mut Rng,
) -> Result<Option<Value>, Error> {
    let conditions: Vec<String> = sink
        .parsed("Condition")?
        .iter()
        .filter(|c| c["subject"]["reference"] == format!("Patient/{patient}").as_str())
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    if conditions.is_empty() {
        return Ok(None);
    }
    let focus = format!("Condition/{}", conditions[rng.below(conditions.len() as u64) as usize]);
    let now = TODAY * DAY;
    let received = now - (1 + rng.below(100) as i64) * DAY + 10 * 3600;
    let due = received + 60 * DAY;
    let id = format!("amend-{key}");
    sink.write(&json!({
        "resourceType": "Task", "id": id, "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": WORKFLOW, "code": "amendment" }] },
        "for": { "reference": format!("Patient/{patient}") }, "focus": { "reference": focus },
        "authoredOn": date_time(received), "requester": { "reference": format!("Patient/{patient}") },
        "restriction": { "period": { "end": date_time(due) } },
        "input": [input(AMENDMENT_INPUT, "requested-change", json!({ "valueString": "This diagnosis is not mine; please correct it." }))],
    }))?;
    Ok(Some(json!({ "task": format!("Task/{id}"), "patient": format!("Patient/{patient}"), "focus": focus,
                    "received": date_time(received), "due": date_time(due), "overdue": due < now })))
}

fn refers_to(value: &Value, target: &str) -> bool {
    match value {
        Value::Object(object) => object
            .iter()
            .any(|(key, v)| (key == "reference" && v.as_str() == Some(target)) || refers_to(v, target)),
        Value::Array(items) => items.iter().any(|v| refers_to(v, target)),
        _ => false,
    }
}

/// A legal hold on the patient (`on_patient`) or on one of their encounters, and the
/// resources it covers.
pub(crate) fn hold(
    key: &str,
    patient: &str,
    on_patient: bool,
    sink: &mut Sink,
    rng: &mut Rng,
) -> Result<Option<Value>, Error> {
    let own = format!("Patient/{patient}");
    let mut resources: Vec<(String, Value)> = Vec::new();
    for resource_type in crate::RESOURCE_TYPES {
        for resource in sink.parsed(resource_type)? {
            let subject = ["subject", "patient", "beneficiary"]
                .iter()
                .find_map(|name| resource[*name]["reference"].as_str())
                .is_some_and(|r| r == own);
            if subject {
                resources.push((resource_type.to_string(), resource));
            }
        }
    }
    let id = format!("hold-{key}");
    let mut task = json!({
        "resourceType": "Task", "id": id, "status": "in-progress", "intent": "order",
        "code": { "coding": [{ "system": WORKFLOW, "code": "legal-hold" }] },
        "description": format!("Litigation hold: matter {}", 1000 + rng.below(9000)),
        "requester": { "display": "Office of General Counsel" },
        "authoredOn": date_time(TODAY * DAY - (1 + rng.below(200) as i64) * DAY),
    });
    let mut covered: Vec<String> = if on_patient {
        task["for"] = json!({ "reference": own });
        resources.iter().map(|(t, r)| format!("{t}/{}", r["id"].as_str().unwrap_or(""))).collect()
    } else {
        let encounters: Vec<&str> = resources
            .iter()
            .filter(|(t, _)| t == "Encounter")
            .filter_map(|(_, r)| r["id"].as_str())
            .collect();
        if encounters.is_empty() {
            return Ok(None);
        }
        let encounter = format!("Encounter/{}", encounters[rng.below(encounters.len() as u64) as usize]);
        task["for"] = json!({ "reference": own });
        task["focus"] = json!({ "reference": encounter });
        resources
            .iter()
            .filter(|(t, r)| {
                format!("{t}/{}", r["id"].as_str().unwrap_or("")) == encounter || refers_to(r, &encounter)
            })
            .map(|(t, r)| format!("{t}/{}", r["id"].as_str().unwrap_or("")))
            .collect()
    };
    // The Patient is kept with anything of theirs.
    covered.push(own.clone());
    sink.write(&task)?;
    covered.sort();
    covered.dedup();
    Ok(Some(
        json!({ "task": format!("Task/{id}"), "patient": own, "kind": if on_patient { "patient" } else { "encounter" },
                    "focus": task["focus"]["reference"], "covers": covered }),
    ))
}
