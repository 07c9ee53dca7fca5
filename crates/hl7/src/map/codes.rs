//! Code systems and the HL7 tables the mapping translates (following the v2-to-FHIR concept
//! maps), and the CWE data type as a CodeableConcept.

use serde_json::{Value as Json, json};

use super::clean;
use super::json::{Object, array};
use crate::message::Repetition;

pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const LOCAL: &str = "urn:chartroom:v2:local";

/// A coding system name from CWE.3 (HL7 table 0396) as a FHIR system URI.
///
/// I10 goes to ICD-10-CM rather than WHO ICD-10: senders in the US use it for ICD-10-CM,
/// which is the edition this server's terminology holds.
pub fn system_uri(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let known = match upper.as_str() {
        "" => return None,
        "LN" | "LOINC" => "http://loinc.org",
        "SCT" | "SNM" | "SNOMED" | "SNOMEDCT" | "SNM3" => "http://snomed.info/sct",
        "I10" | "I10C" | "ICD10CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I9C" | "I9CM" => "http://hl7.org/fhir/sid/icd-9-cm",
        "UCUM" => UCUM,
        "C4" | "CPT" => "http://www.ama-assn.org/go/cpt",
        "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "L" | "LOCAL" => LOCAL,
        _ if upper.starts_with("99") => LOCAL,
        _ => {
            if let Some(table) = upper.strip_prefix("HL7").filter(|t| is_table_number(t)) {
                return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
            }
            return Some(format!("urn:chartroom:v2:codesystem:{}", urn_part(name.trim())));
        }
    };
    Some(known.to_string())
}

fn is_table_number(text: &str) -> bool {
    text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Percent-encodes what may not stand in a URN as it is.
pub fn urn_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn coding(system: Option<String>, code: Option<String>, display: Option<String>) -> Option<Json> {
    let code = code?;
    Some(Object::new().maybe("system", system).set("code", code).maybe("display", display).build())
}

/// A coding in a known system.
pub fn fixed_coding(system: &str, code: &str) -> Json {
    json!({ "system": system, "code": code })
}

/// A CodeableConcept with one coding.
pub fn concept(system: &str, code: &str) -> Json {
    json!({ "coding": [fixed_coding(system, code)] })
}

/// A CWE (or CE/CNE) repetition as a CodeableConcept: the primary coding (1-3), the alternate
/// coding (4-6) and the original text (9), falling back on the primary text when there is no
/// code at all. `None` when the CWE is empty.
pub fn codeable_concept(cwe: &Repetition) -> Option<Json> {
    let part = |n| clean(cwe.text(n));
    let codings = [
        coding(part(3).and_then(|s| system_uri(&s)), part(1), part(2)),
        coding(part(6).and_then(|s| system_uri(&s)), part(4), part(5)),
    ];
    let has_coding = codings.iter().any(Option::is_some);
    let text = part(9).or_else(|| if has_coding { None } else { part(2).or_else(|| part(5)) });
    Object::new().set("coding", array(codings.into_iter().flatten())).maybe("text", text).non_empty()
}

/// A code from an HL7 table kept as it is, in that table's code system.
pub fn table_concept(table: &str, code: &str) -> Json {
    concept(&format!("http://terminology.hl7.org/CodeSystem/v2-{table}"), code)
}

/// Table 0001 to AdministrativeGender.
pub fn gender(code: &str) -> Option<&'static str> {
    match code {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        _ => None,
    }
}

/// Table 0200 (name type) to NameUse. A (alias) is a name used instead of the person's own,
/// which is what FHIR's "anonymous" covers ("alias or pseudonym").
pub fn name_use(code: &str) -> Option<&'static str> {
    match code {
        "L" => Some("official"),
        "D" => Some("usual"),
        "M" => Some("maiden"),
        "N" => Some("nickname"),
        "A" | "S" => Some("anonymous"),
        "BAD" => Some("old"),
        "TEMP" => Some("temp"),
        _ => None,
    }
}

/// Table 0190 (address type) to AddressUse.
pub fn address_use(code: &str) -> Option<&'static str> {
    match code {
        "H" => Some("home"),
        "B" | "O" => Some("work"),
        "C" => Some("temp"),
        "BA" => Some("old"),
        "BI" => Some("billing"),
        _ => None,
    }
}

/// Table 0190 (address type) to AddressType.
pub fn address_type(code: &str) -> Option<&'static str> {
    match code {
        "M" | "SH" => Some("postal"),
        _ => None,
    }
}

/// Table 0002 (marital status) to the v3 MaritalStatus code system.
pub fn marital_status(code: &str) -> Option<(&'static str, &'static str)> {
    const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
    const NULL_FLAVOR: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
    let mapped = match code {
        "A" | "E" => (V3, "L"),
        "D" => (V3, "D"),
        "M" => (V3, "M"),
        "S" => (V3, "S"),
        "W" => (V3, "W"),
        "C" => (V3, "C"),
        "G" | "P" | "R" => (V3, "T"),
        "N" => (V3, "A"),
        "I" => (V3, "I"),
        "B" => (V3, "U"),
        "U" | "T" => (NULL_FLAVOR, "UNK"),
        "O" => (NULL_FLAVOR, "OTH"),
        _ => return None,
    };
    Some(mapped)
}

/// Table 0004 (patient class) to Encounter.class: the four the v3 ActCode system has, the rest
/// in table 0004 itself, as the v2-to-FHIR concept map does.
pub fn encounter_class(code: &str) -> Option<Json> {
    const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    const V2_0004: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
    let (system, code) = match code {
        "E" => (ACT_CODE, "EMER"),
        "I" => (ACT_CODE, "IMP"),
        "O" => (ACT_CODE, "AMB"),
        "P" => (ACT_CODE, "PRENC"),
        "R" | "B" | "C" | "N" | "U" => (V2_0004, code),
        _ => return None,
    };
    Some(fixed_coding(system, code))
}

/// Table 0085 (observation result status) to Observation.status.
pub fn observation_status(code: &str) -> Option<&'static str> {
    match code {
        "F" | "U" => Some("final"),
        "P" | "R" | "S" => Some("preliminary"),
        "C" => Some("corrected"),
        "A" => Some("amended"),
        "D" | "W" => Some("entered-in-error"),
        "X" | "N" => Some("cancelled"),
        "I" | "O" => Some("registered"),
        _ => None,
    }
}

/// Table 0123 (result status) to DiagnosticReport.status.
pub fn report_status(code: &str) -> Option<&'static str> {
    match code {
        "O" | "I" => Some("registered"),
        "S" | "A" => Some("partial"),
        "P" | "R" => Some("preliminary"),
        "C" => Some("corrected"),
        "M" => Some("amended"),
        "F" => Some("final"),
        "X" => Some("cancelled"),
        "Y" | "Z" => Some("unknown"),
        _ => None,
    }
}

/// Table 0078 (interpretation) as a coding: in the v3 ObservationInterpretation system, which
/// took over the v2 codes, or in table 0078 for a code it does not have.
pub fn interpretation(code: &str) -> Json {
    const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    const KNOWN: &[&str] = &[
        "<", ">", "A", "AA", "B", "D", "DET", "H", "HH", "HU", "HX", "I", "IND", "L", "LL", "LU", "LX", "MS",
        "N", "NEG", "ND", "NR", "NS", "POS", "R", "RR", "S", "SDD", "SYN-R", "SYN-S", "U", "VS", "W", "WR",
        "E", "EX", "IE", "EXP", "UNE", "CAR", "TOX", "QCF", "OBX",
    ];
    if KNOWN.contains(&code) { concept(V3, code) } else { table_concept("0078", code) }
}
