//! Billing defects: what goes wrong between the record and the bill, planted on one of a
//! patient's final bills so a claims audit can be measured. Each kind has the identifier of
//! the audit rule that should find it. A changed bill has not been adjudicated yet: its
//! ExplanationOfBenefit is removed.

use serde_json::{Value, json};

use crate::calendar::{DAY, TODAY, date_time, day_of};
use crate::rng::Rng;
use crate::{Error, Sink};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BillingDefect {
    UndocumentedDiagnosis,
    UnbilledDiagnosis,
    UnbilledProcedure,
    VoidEncounter,
    DuplicateClaim,
    TotalMismatch,
}

/// Diagnoses that raise a stay's severity (complications and comorbidities) and that nothing
/// in the generated record documents: what an unsupported code on a bill usually is.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("E43", "Unspecified severe protein-calorie malnutrition"),
    ("J96.01", "Acute respiratory failure with hypoxia"),
    ("N17.9", "Acute kidney failure, unspecified"),
    ("E87.1", "Hypo-osmolality and hyponatremia"),
    ("D62", "Acute posthemorrhagic anemia"),
    ("E86.0", "Dehydration"),
];

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

impl BillingDefect {
    pub(crate) const ALL: [BillingDefect; 6] = [
        BillingDefect::UndocumentedDiagnosis,
        BillingDefect::UnbilledDiagnosis,
        BillingDefect::UnbilledProcedure,
        BillingDefect::VoidEncounter,
        BillingDefect::DuplicateClaim,
        BillingDefect::TotalMismatch,
    ];

    /// The audit rule that finds it.
    pub(crate) fn id(self) -> &'static str {
        match self {
            BillingDefect::UndocumentedDiagnosis => "undocumented-diagnosis",
            BillingDefect::UnbilledDiagnosis => "unbilled-diagnosis",
            BillingDefect::UnbilledProcedure => "unbilled-procedure",
            BillingDefect::VoidEncounter => "void-encounter",
            BillingDefect::DuplicateClaim => "duplicate-claim",
            BillingDefect::TotalMismatch => "total-mismatch",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            BillingDefect::UndocumentedDiagnosis => {
                "a final Claim given a diagnosis (a complication or comorbidity) that nothing in the encounter's record documents"
            }
            BillingDefect::UnbilledDiagnosis => {
                "a diagnosis of the encounter (not the principal one) left off its final Claim"
            }
            BillingDefect::UnbilledProcedure => {
                "a Procedure of the encounter left off its final Claim (its entry and its service line)"
            }
            BillingDefect::VoidEncounter => {
                "a final Claim for an Encounter that was cancelled or entered in error (both written new)"
            }
            BillingDefect::DuplicateClaim => {
                "a second final Claim for the same encounter and services, submitted a few days after the first"
            }
            BillingDefect::TotalMismatch => "a final Claim whose total is not the sum of its lines",
        }
    }

    pub(crate) fn for_turn(turn: usize) -> BillingDefect {
        BillingDefect::ALL[turn % BillingDefect::ALL.len()]
    }
}

fn pick<T>(rng: &mut Rng, mut items: Vec<T>) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let at = rng.below(items.len() as u64) as usize;
    Some(items.swap_remove(at))
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The encounter a generated claim is for.
fn encounter_of(claim: &Value) -> Option<&str> {
    claim["item"][0]["encounter"][0]["reference"].as_str()
}

fn codes_of(claim: &Value) -> Vec<String> {
    claim["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["diagnosisCodeableConcept"]["coding"][0]["code"].as_str())
        .map(str::to_string)
        .collect()
}

/// Plants the defect of `kind` (or, when the record cannot show it, of the next kind it can)
/// on one of the patient's final bills, and returns its ground-truth line.
pub(crate) fn inject(
    kind: BillingDefect,
    key: &str,
    sink: &mut Sink,
    rng: &mut Rng,
) -> Result<Option<Value>, Error> {
    let kinds = BillingDefect::ALL.len();
    let first = BillingDefect::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    for step in 0..kinds {
        let kind = BillingDefect::ALL[(first + step) % kinds];
        if let Some(found) = apply(kind, key, sink, rng)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn apply(kind: BillingDefect, key: &str, sink: &mut Sink, rng: &mut Rng) -> Result<Option<Value>, Error> {
    let claims = sink.parsed("Claim")?;
    let own = format!("claim-{key}-");
    let candidates: Vec<usize> = (0..claims.len())
        .filter(|&i| {
            let claim = &claims[i];
            claim["status"] == "active"
                && claim["id"].as_str().is_some_and(|id| id.starts_with(&own))
                && encounter_of(claim).is_some()
                && match kind {
                    BillingDefect::UnbilledDiagnosis => codes_of(claim).len() >= 2,
                    BillingDefect::UnbilledProcedure => claim["procedure"].is_array(),
                    BillingDefect::TotalMismatch => claim["item"].as_array().is_some_and(|i| i.len() >= 2),
                    _ => true,
                }
        })
        .collect();
    let Some(position) = pick(rng, candidates) else { return Ok(None) };
    let mut claim = claims[position].clone();
    let claim_id = claim["id"].as_str().unwrap_or_default().to_string();
    let encounter = encounter_of(&claim).unwrap_or_default().to_string();
    let mut line = json!({ "rule": kind.id(), "claim": format!("Claim/{claim_id}"), "encounter": encounter });
    match kind {
        BillingDefect::UndocumentedDiagnosis => {
            let billed = codes_of(&claim);
            let unsupported: Vec<&(&str, &str)> =
                UNSUPPORTED.iter().filter(|(code, _)| !billed.iter().any(|b| b == code)).collect();
            let Some(&(code, display)) = pick(rng, unsupported) else { return Ok(None) };
            let Some(diagnoses) = claim["diagnosis"].as_array_mut() else { return Ok(None) };
            diagnoses.push(json!({ "sequence": diagnoses.len() + 1,
                                   "diagnosisCodeableConcept": { "coding": [{ "system": ICD10CM, "code": code, "display": display }] } }));
            line["code"] = Value::from(code);
        }
        BillingDefect::UnbilledDiagnosis => {
            let billed = codes_of(&claim);
            let once: Vec<usize> = (1..billed.len())
                .filter(|&i| billed.iter().filter(|c| **c == billed[i]).count() == 1)
                .collect();
            let Some(at) = pick(rng, once) else { return Ok(None) };
            let Some(diagnoses) = claim["diagnosis"].as_array_mut() else { return Ok(None) };
            diagnoses.remove(at);
            for (i, diagnosis) in diagnoses.iter_mut().enumerate() {
                diagnosis["sequence"] = Value::from(i + 1);
            }
            let pointers: Vec<usize> = (1..=diagnoses.len().min(4)).collect();
            for item in claim["item"].as_array_mut().into_iter().flatten() {
                item["diagnosisSequence"] = json!(pointers);
            }
            line["code"] = Value::from(billed[at].as_str());
        }
        BillingDefect::UnbilledProcedure => {
            let Some(procedures) = claim["procedure"].as_array() else { return Ok(None) };
            let Some(at) = pick(rng, (0..procedures.len()).collect()) else { return Ok(None) };
            let sequence = procedures[at]["sequence"].clone();
            let procedure = procedures[at]["procedureReference"]["reference"].clone();
            if let Some(procedures) = claim["procedure"].as_array_mut() {
                procedures.remove(at);
            }
            if claim["procedure"].as_array().is_some_and(Vec::is_empty)
                && let Some(object) = claim.as_object_mut()
            {
                object.remove("procedure");
            }
            if let Some(items) = claim["item"].as_array_mut() {
                items.retain(|item| {
                    !item["procedureSequence"].as_array().is_some_and(|s| s.contains(&sequence))
                });
                for (i, item) in items.iter_mut().enumerate() {
                    item["sequence"] = Value::from(i + 1);
                }
            }
            let total: f64 = claim["item"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["net"]["value"].as_f64())
                .sum();
            claim["total"]["value"] = Value::from(cents(total));
            line["procedure"] = procedure;
        }
        BillingDefect::VoidEncounter => {
            let encounter_id = format!("enc-{key}-void");
            let status = if rng.chance(0.5) { "cancelled" } else { "entered-in-error" };
            sink.write(&json!({
                "resourceType": "Encounter",
                "id": encounter_id,
                "status": status,
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
                "subject": claim["patient"].clone(),
                "period": claim["billablePeriod"].clone(),
                "serviceProvider": claim["provider"].clone(),
            }))?;
            let mut billed = claim.clone();
            billed["id"] = Value::from(format!("claim-{key}-void"));
            // The other visit's procedures are not this one's.
            if let Some(object) = billed.as_object_mut() {
                object.remove("procedure");
            }
            for item in billed["item"].as_array_mut().into_iter().flatten() {
                item["encounter"] = json!([{ "reference": format!("Encounter/{encounter_id}") }]);
                if let Some(object) = item.as_object_mut() {
                    object.remove("procedureSequence");
                }
            }
            sink.write(&billed)?;
            line["claim"] = Value::from(format!("Claim/claim-{key}-void"));
            line["encounter"] = Value::from(format!("Encounter/{encounter_id}"));
            line["status"] = Value::from(status);
            return Ok(Some(line));
        }
        BillingDefect::DuplicateClaim => {
            let mut copy = claim.clone();
            copy["id"] = Value::from(format!("{claim_id}-dup"));
            if let Some(day) = claim["created"].as_str().and_then(day_of)
                && day + 5 < TODAY
            {
                copy["created"] = Value::from(date_time((day + 5) * DAY + 10 * 3600));
            }
            sink.write(&copy)?;
            line["claim"] = Value::from(format!("Claim/{claim_id}-dup"));
            line["original"] = Value::from(format!("Claim/{claim_id}"));
            return Ok(Some(line));
        }
        BillingDefect::TotalMismatch => {
            let nets: Vec<f64> = claim["item"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["net"]["value"].as_f64())
                .collect();
            let lines = cents(nets.iter().sum());
            // The last line counted twice.
            let stated = cents(lines + nets.last().copied().unwrap_or(100.0));
            claim["total"]["value"] = Value::from(stated);
            line["stated"] = Value::from(stated);
            line["lines"] = Value::from(lines);
        }
    }
    sink.replace("Claim", position, &claim)?;
    // The bill as changed has not been adjudicated: its ExplanationOfBenefit would disagree.
    let adjudicated = format!("Claim/{claim_id}");
    if let Some(at) = sink
        .parsed("ExplanationOfBenefit")?
        .iter()
        .position(|e| e["claim"]["reference"] == adjudicated.as_str())
    {
        sink.remove("ExplanationOfBenefit", at)?;
    }
    Ok(Some(line))
}

/// The ICD-10-CM codes of a CodeableConcept.
fn concept_codes(concept: &Value) -> impl Iterator<Item = &str> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == ICD10CM)
        .filter_map(|c| c["code"].as_str())
}

/// A data-quality defect that changes what an encounter documents (a Condition recoded, an
/// inpatient stay's diagnosis list dropped) leaves the encounter's final bill disagreeing with
/// the record: lists those disagreements as what the claims audit should also find, with the
/// defect as their cause.
pub(crate) fn record_disagreements(defect: &Value, sink: &mut Sink) -> Result<(), Error> {
    let resource = defect["resource"].as_str().unwrap_or_default();
    let class = defect["class"].as_str().unwrap_or_default();
    let encounters = sink.parsed("Encounter")?;
    let conditions = sink.parsed("Condition")?;
    let condition_reference = |c: &Value| format!("Condition/{}", c["id"].as_str().unwrap_or_default());
    let touched: Vec<&Value> = match class {
        "missing-diagnosis" => encounters
            .iter()
            .filter(|e| format!("Encounter/{}", e["id"].as_str().unwrap_or_default()) == resource)
            .collect(),
        "invalid-code" | "non-billable-code" | "unspecified-code" | "sex-inconsistent-code" => {
            let pointed = conditions
                .iter()
                .find(|c| condition_reference(c) == resource)
                .and_then(|c| c["encounter"]["reference"].as_str())
                .map(str::to_string);
            encounters
                .iter()
                .filter(|e| {
                    let own = format!("Encounter/{}", e["id"].as_str().unwrap_or_default());
                    pointed.as_deref() == Some(own.as_str())
                        || e["diagnosis"].as_array().is_some_and(|listed| {
                            listed.iter().any(|d| d["condition"]["reference"] == resource)
                        })
                })
                .collect()
        }
        _ => return Ok(()),
    };
    let claims = sink.parsed("Claim")?;
    let mut lines = Vec::new();
    for encounter in touched {
        let own = format!("Encounter/{}", encounter["id"].as_str().unwrap_or_default());
        // What the encounter documents: its diagnosis list, the Conditions recorded at it, its reasons.
        let listed: Vec<&str> = encounter["diagnosis"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["condition"]["reference"].as_str())
            .collect();
        let mut documented: Vec<&str> = conditions
            .iter()
            .filter(|c| {
                c["encounter"]["reference"] == own.as_str()
                    || listed.contains(&condition_reference(c).as_str())
            })
            .flat_map(|c| concept_codes(&c["code"]))
            .collect();
        let diagnosed = documented.clone();
        documented.extend(encounter["reasonCode"].as_array().into_iter().flatten().flat_map(concept_codes));
        for claim in
            claims.iter().filter(|c| c["status"] == "active" && encounter_of(c) == Some(own.as_str()))
        {
            let billed = codes_of(claim);
            let claim_reference = format!("Claim/{}", claim["id"].as_str().unwrap_or_default());
            for code in billed.iter().filter(|b| !documented.contains(&b.as_str())) {
                lines.push(json!({ "rule": "undocumented-diagnosis", "claim": claim_reference, "encounter": own, "code": code, "cause": class }));
            }
            for code in diagnosed.iter().filter(|d| !billed.iter().any(|b| b == *d)) {
                lines.push(json!({ "rule": "unbilled-diagnosis", "claim": claim_reference, "encounter": own, "code": code, "cause": class }));
            }
        }
    }
    for line in lines {
        sink.record(super::TruthFile::Billing, &line)?;
    }
    Ok(())
}
