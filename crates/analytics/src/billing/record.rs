//! What the claims audit reads of the record: encounters with what they document, the
//! procedures done at them, the patients' sex and birth date, and every Claim. One pass over
//! each type through `Store::scan_type`; the notes are read afterwards, and only those of
//! encounters whose bills carry a code nothing else documents.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use store::Store;

use crate::Result;
use crate::record::{CodeableConcept, Coding, ICD10CM, Period, Reference, facts, millis};

/// An ICD-10-CM code as compared: upper case, without the dot.
pub(crate) fn normalize(code: &str) -> String {
    code.trim().chars().filter(|c| *c != '.').flat_map(char::to_uppercase).collect()
}

/// The id a reference names for `resource_type` (`Encounter/1`, an absolute URL ending so,
/// or one with a version).
pub(crate) fn local_id<'a>(reference: &'a Reference, resource_type: &str) -> Option<&'a str> {
    let text = reference.reference.as_deref()?;
    let marker = format!("{resource_type}/");
    let at = text.rfind(&marker).filter(|&at| at == 0 || text[..at].ends_with('/'))?;
    let id = text[at + marker.len()..].split('/').next()?;
    fhir::is_valid_id(id).then_some(id)
}

fn icd_codes(concept: &CodeableConcept) -> impl Iterator<Item = &str> {
    concept.coding.iter().filter(|c| c.system.as_deref() == Some(ICD10CM)).filter_map(|c| c.code.as_deref())
}

/// A coding as compared across resources: system and code.
pub(crate) type CodeKey = (String, String);

fn code_keys(concept: Option<&CodeableConcept>) -> Vec<CodeKey> {
    concept
        .into_iter()
        .flat_map(|c| c.coding.iter())
        .filter_map(|c: &Coding| Some((c.system.clone().unwrap_or_default(), c.code.clone()?)))
        .collect()
}

#[derive(Deserialize, Default)]
struct EncounterBody {
    id: Option<String>,
    status: Option<String>,
    class: Option<Coding>,
    subject: Option<Reference>,
    period: Option<Period>,
    #[serde(default)]
    diagnosis: Vec<EncounterDiagnosis>,
    #[serde(default, rename = "reasonCode")]
    reason_code: Vec<CodeableConcept>,
    #[serde(default, rename = "reasonReference")]
    reason_reference: Vec<Reference>,
    #[serde(rename = "partOf")]
    part_of: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct EncounterDiagnosis {
    condition: Option<Reference>,
}

/// An encounter as the audit sees it.
pub(crate) struct Encounter {
    pub status: String,
    pub class: String,
    pub patient: Option<String>,
    /// When it ended (`period.end`), as written and in ms.
    pub end: Option<(String, i64)>,
    /// Conditions it lists or gives as reasons.
    pub conditions: Vec<String>,
    /// ICD-10-CM codes it gives as reasons (normalized).
    pub reasons: Vec<String>,
    /// Part of another encounter (`partOf`): billed on that one's account.
    pub part_of: bool,
}

impl Encounter {
    /// Whether it never happened: cancelled, entered in error, or only planned.
    pub(crate) fn void(&self) -> bool {
        matches!(self.status.as_str(), "cancelled" | "entered-in-error" | "planned")
    }
}

#[derive(Deserialize, Default)]
struct ConditionBody {
    id: Option<String>,
    code: Option<CodeableConcept>,
    encounter: Option<Reference>,
    #[serde(rename = "verificationStatus")]
    verification_status: Option<CodeableConcept>,
}

/// A Condition: its codes (normalized, with one as written), where it was recorded, and
/// whether it is certain (confirmed, or no verification status given): uncertain diagnoses
/// (provisional, differential, unconfirmed) document a code but are not to be billed as such.
pub(crate) struct Condition {
    pub codes: Vec<(String, String)>,
    pub encounter: Option<String>,
    pub certain: bool,
}

#[derive(Deserialize, Default)]
struct ProcedureBody {
    id: Option<String>,
    status: Option<String>,
    code: Option<CodeableConcept>,
    encounter: Option<Reference>,
}

/// A completed Procedure of an encounter.
pub(crate) struct Procedure {
    pub id: String,
    pub codes: Vec<CodeKey>,
    pub text: String,
}

#[derive(Deserialize, Default)]
struct PatientBody {
    id: Option<String>,
    gender: Option<String>,
    #[serde(rename = "birthDate")]
    birth_date: Option<String>,
}

#[derive(Deserialize, Default)]
struct Money {
    value: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Quantity {
    value: Option<f64>,
}

#[derive(Deserialize, Default)]
struct ClaimDiagnosisBody {
    sequence: Option<u32>,
    #[serde(rename = "diagnosisCodeableConcept")]
    concept: Option<CodeableConcept>,
    #[serde(rename = "diagnosisReference")]
    reference: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct ClaimProcedureBody {
    #[serde(rename = "procedureCodeableConcept")]
    concept: Option<CodeableConcept>,
    #[serde(rename = "procedureReference")]
    reference: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct ClaimItemBody {
    #[serde(rename = "productOrService")]
    product: Option<CodeableConcept>,
    #[serde(default)]
    encounter: Vec<Reference>,
    quantity: Option<Quantity>,
    #[serde(rename = "unitPrice")]
    unit_price: Option<Money>,
    factor: Option<f64>,
    net: Option<Money>,
}

#[derive(Deserialize, Default)]
struct ClaimInsuranceBody {
    focal: Option<bool>,
    coverage: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct ClaimRelatedBody {
    claim: Option<Reference>,
}

#[derive(Deserialize, Default)]
struct ClaimBody {
    id: Option<String>,
    status: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    patient: Option<Reference>,
    created: Option<String>,
    provider: Option<Reference>,
    insurer: Option<Reference>,
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    #[serde(default)]
    insurance: Vec<ClaimInsuranceBody>,
    #[serde(rename = "billablePeriod")]
    billable_period: Option<Period>,
    #[serde(default)]
    diagnosis: Vec<ClaimDiagnosisBody>,
    #[serde(default)]
    procedure: Vec<ClaimProcedureBody>,
    #[serde(default)]
    item: Vec<ClaimItemBody>,
    total: Option<Money>,
    #[serde(default)]
    related: Vec<ClaimRelatedBody>,
}

/// A diagnosis on a claim.
pub(crate) struct BilledDiagnosis {
    pub code: String,
    pub normalized: String,
    pub sequence: Option<u32>,
    pub location: String,
}

/// A service line.
pub(crate) struct Line {
    pub codes: Vec<CodeKey>,
    pub quantity: Option<f64>,
    pub unit_price: Option<f64>,
    pub factor: Option<f64>,
    pub net: Option<f64>,
}

/// A Claim as the audit sees it.
pub(crate) struct Claim {
    pub id: String,
    pub status: String,
    pub use_: String,
    pub patient: Option<String>,
    pub created: Option<i64>,
    pub provider: Option<String>,
    /// Who pays and under which coverage, and the kind of bill: two bills for one encounter
    /// to different payers, or a professional and an institutional one, are not duplicates.
    pub payer: String,
    pub service_start: Option<String>,
    pub encounters: Vec<String>,
    pub diagnoses: Vec<BilledDiagnosis>,
    /// Procedures billed: by reference, and by code.
    pub procedure_references: Vec<String>,
    pub procedure_codes: Vec<CodeKey>,
    pub lines: Vec<Line>,
    pub total: Option<f64>,
    pub related: Vec<String>,
}

impl Claim {
    /// A final bill: submitted (`active`) and for payment (`use` claim).
    pub(crate) fn is_final(&self) -> bool {
        self.status == "active" && (self.use_.is_empty() || self.use_ == "claim")
    }

    /// Charges on it: the total, else the sum of its lines.
    pub(crate) fn charges(&self) -> f64 {
        self.total.unwrap_or_else(|| self.lines.iter().filter_map(|l| l.net).sum())
    }
}

/// The record as the audit reads it.
#[derive(Default)]
pub(crate) struct Record {
    pub encounters: HashMap<String, Encounter>,
    pub conditions: HashMap<String, Condition>,
    pub procedures: HashMap<String, Vec<Procedure>>,
    pub patients: HashMap<String, (Option<String>, Option<String>)>,
    pub claims: Vec<Claim>,
    /// Resources read, and those whose shape could not be read.
    pub read: u64,
    pub unreadable: u64,
}

pub(crate) fn read(store: &dyn Store) -> Result<Record> {
    let mut record = Record::default();
    let mut unreadable = 0;
    record.read += store.scan_type("Encounter", None, &mut |_, _, body| {
        let Some(e) = facts::<EncounterBody>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let Some(id) = e.id else { return Ok(()) };
        let mut conditions: Vec<String> = e
            .diagnosis
            .iter()
            .filter_map(|d| d.condition.as_ref())
            .chain(e.reason_reference.iter())
            .filter_map(|r| local_id(r, "Condition"))
            .map(str::to_string)
            .collect();
        conditions.dedup();
        let reasons = e.reason_code.iter().flat_map(icd_codes).map(normalize).collect();
        let end = e.period.and_then(|p| p.end).and_then(|text| millis(&text).map(|ms| (text, ms)));
        let encounter = Encounter {
            status: e.status.unwrap_or_default(),
            class: e.class.and_then(|c| c.code).unwrap_or_default(),
            patient: e.subject.as_ref().and_then(|s| local_id(s, "Patient")).map(str::to_string),
            end,
            conditions,
            reasons,
            part_of: e.part_of.is_some(),
        };
        record.encounters.insert(id, encounter);
        Ok(())
    })?;
    record.read += store.scan_type("Condition", None, &mut |_, _, body| {
        let Some(c) = facts::<ConditionBody>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let Some(id) = c.id else { return Ok(()) };
        // Refuted or entered in error: documents nothing.
        let withdrawn =
            c.verification_status.as_ref().is_some_and(|v| v.has_code(&["refuted", "entered-in-error"]));
        if withdrawn {
            return Ok(());
        }
        let codes: Vec<(String, String)> = c
            .code
            .as_ref()
            .into_iter()
            .flat_map(icd_codes)
            .map(|code| (normalize(code), code.to_string()))
            .collect();
        if codes.is_empty() {
            return Ok(());
        }
        let encounter = c.encounter.as_ref().and_then(|r| local_id(r, "Encounter")).map(str::to_string);
        let certain =
            c.verification_status.as_ref().is_none_or(|v| v.coding.is_empty() || v.has_code(&["confirmed"]));
        record.conditions.insert(id, Condition { codes, encounter, certain });
        Ok(())
    })?;
    record.read += store.scan_type("Procedure", None, &mut |_, _, body| {
        let Some(p) = facts::<ProcedureBody>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let (Some(id), Some(encounter)) = (p.id, p.encounter.as_ref().and_then(|r| local_id(r, "Encounter")))
        else {
            return Ok(());
        };
        if p.status.as_deref() != Some("completed") {
            return Ok(());
        }
        let text = p
            .code
            .as_ref()
            .and_then(|c| c.text.clone().or_else(|| c.coding.iter().find_map(|c| c.display.clone())))
            .unwrap_or_default();
        let procedure = Procedure { id, codes: code_keys(p.code.as_ref()), text };
        record.procedures.entry(encounter.to_string()).or_default().push(procedure);
        Ok(())
    })?;
    let mut billed_patients: HashSet<String> = HashSet::new();
    let conditions = &record.conditions;
    let mut claims = Vec::new();
    let scanned = store.scan_type("Claim", None, &mut |_, _, body| {
        let Some(c) = facts::<ClaimBody>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let Some(id) = c.id else { return Ok(()) };
        let mut encounters: Vec<String> = c
            .item
            .iter()
            .flat_map(|i| i.encounter.iter())
            .filter_map(|r| local_id(r, "Encounter"))
            .map(str::to_string)
            .collect();
        encounters.sort();
        encounters.dedup();
        let mut diagnoses = Vec::new();
        for (i, d) in c.diagnosis.iter().enumerate() {
            let sequence = d.sequence;
            let codings = d.concept.iter().flat_map(|concept| concept.coding.iter().enumerate());
            for (j, coding) in codings.filter(|(_, c)| c.system.as_deref() == Some(ICD10CM)) {
                let Some(code) = coding.code.as_deref() else { continue };
                diagnoses.push(BilledDiagnosis {
                    code: code.to_string(),
                    normalized: normalize(code),
                    sequence,
                    location: format!("Claim.diagnosis[{i}].diagnosisCodeableConcept.coding[{j}]"),
                });
            }
            // A diagnosis given as a reference bills the codes of the Condition it names.
            let referenced =
                d.reference.as_ref().and_then(|r| local_id(r, "Condition")).and_then(|id| conditions.get(id));
            for (normalized, code) in referenced.into_iter().flat_map(|c| c.codes.iter()) {
                diagnoses.push(BilledDiagnosis {
                    code: code.clone(),
                    normalized: normalized.clone(),
                    sequence,
                    location: format!("Claim.diagnosis[{i}].diagnosisReference"),
                });
            }
        }
        let procedure_references = c
            .procedure
            .iter()
            .filter_map(|p| p.reference.as_ref().and_then(|r| local_id(r, "Procedure")))
            .map(str::to_string)
            .collect();
        let procedure_codes = c.procedure.iter().flat_map(|p| code_keys(p.concept.as_ref())).collect();
        let lines = c
            .item
            .iter()
            .map(|i| Line {
                codes: code_keys(i.product.as_ref()),
                quantity: i.quantity.as_ref().and_then(|q| q.value),
                unit_price: i.unit_price.as_ref().and_then(|m| m.value),
                factor: i.factor,
                net: i.net.as_ref().and_then(|m| m.value),
            })
            .collect();
        let patient = c.patient.as_ref().and_then(|r| local_id(r, "Patient")).map(str::to_string);
        if let Some(patient) = &patient {
            billed_patients.insert(patient.clone());
        }
        claims.push(Claim {
            id,
            status: c.status.unwrap_or_default(),
            use_: c.use_.unwrap_or_default(),
            patient,
            created: c.created.as_deref().and_then(millis),
            provider: c.provider.as_ref().and_then(|r| r.reference.clone()),
            payer: format!(
                "{}|{}|{}",
                c.type_.as_ref().and_then(|t| t.first_code()).unwrap_or(""),
                c.insurer.as_ref().and_then(|r| r.reference.as_deref()).unwrap_or(""),
                c.insurance
                    .iter()
                    .find(|i| i.focal == Some(true))
                    .or(c.insurance.first())
                    .and_then(|i| i.coverage.as_ref()?.reference.as_deref())
                    .unwrap_or("")
            ),
            service_start: c.billable_period.and_then(|p| p.start),
            encounters,
            diagnoses,
            procedure_references,
            procedure_codes,
            lines,
            total: c.total.and_then(|m| m.value),
            related: c
                .related
                .iter()
                .filter_map(|r| r.claim.as_ref().and_then(|r| local_id(r, "Claim")))
                .map(str::to_string)
                .collect(),
        });
        Ok(())
    })?;
    record.read += scanned;
    record.claims = claims;
    record.read += store.scan_type("Patient", None, &mut |_, id, body| {
        if !billed_patients.contains(id) {
            return Ok(());
        }
        let Some(p) = facts::<PatientBody>(body) else {
            unreadable += 1;
            return Ok(());
        };
        let id = p.id.unwrap_or_else(|| id.to_string());
        record.patients.insert(id, (p.gender, p.birth_date));
        Ok(())
    })?;
    record.unreadable = unreadable;
    Ok(record)
}

#[derive(Deserialize, Default)]
struct Attachment {
    data: Option<String>,
}

#[derive(Deserialize, Default)]
struct Content {
    attachment: Option<Attachment>,
}

#[derive(Deserialize, Default)]
struct Context {
    #[serde(default)]
    encounter: Vec<Reference>,
}

#[derive(Deserialize, Default)]
struct DocumentBody {
    id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    content: Vec<Content>,
    context: Option<Context>,
}

/// The notes (DocumentReferences with inline text) of `encounters`, lower-cased, by
/// encounter: `(DocumentReference id, text)`.
pub(crate) fn notes(
    store: &dyn Store,
    encounters: &HashSet<&str>,
) -> Result<HashMap<String, Vec<(String, String)>>> {
    let mut notes: HashMap<String, Vec<(String, String)>> = HashMap::new();
    if encounters.is_empty() {
        return Ok(notes);
    }
    store.scan_type("DocumentReference", None, &mut |_, _, body| {
        let Some(d) = facts::<DocumentBody>(body) else { return Ok(()) };
        if d.status.as_deref() == Some("entered-in-error") {
            return Ok(());
        }
        let wanted: Vec<&str> = d
            .context
            .iter()
            .flat_map(|c| c.encounter.iter())
            .filter_map(|r| local_id(r, "Encounter"))
            .filter(|id| encounters.contains(id))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let text: String = d
            .content
            .iter()
            .filter_map(|c| c.attachment.as_ref()?.data.as_deref())
            .filter_map(fhir::base64_decode)
            .map(|bytes| String::from_utf8_lossy(&bytes).to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let id = d.id.unwrap_or_default();
        for encounter in wanted {
            notes.entry(encounter.to_string()).or_default().push((id.clone(), text.clone()));
        }
        Ok(())
    })?;
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_ids() {
        let reference = |text: &str| Reference { reference: Some(text.to_string()) };
        assert_eq!(local_id(&reference("Encounter/e1"), "Encounter"), Some("e1"));
        assert_eq!(
            local_id(&reference("https://h.example/fhir/Encounter/e1/_history/2"), "Encounter"),
            Some("e1")
        );
        assert_eq!(local_id(&reference("Patient/p1"), "Encounter"), None);
        assert_eq!(local_id(&reference("XEncounter/e1"), "Encounter"), None);
        assert_eq!(normalize(" e11.9 "), "E119");
    }
}
