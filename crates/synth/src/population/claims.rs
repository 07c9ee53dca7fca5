//! What a visit is billed as: the service lines (evaluation and management, hospital days,
//! labs, procedures, vaccines) and the Claim with its ExplanationOfBenefit.

use std::fmt::Write as _;

use super::directory::{MEDICAID, MEDICARE, PAYERS, PROVIDERS};
use super::person::Person;
use super::visits::{Class, Visit};
use super::{push_str_literal, wellness_code};
use crate::calendar::*;
use crate::clinical::Dx;
use crate::{Error, Sink};

/// A service line of a claim: code, words, charge.
pub(super) struct Line {
    pub(super) code: &'static str,
    pub(super) text: &'static str,
    pub(super) charge: f64,
}

pub(super) fn evaluation_line(person: &Person, visit: &Visit, complex: bool) -> Line {
    let age = person.age_on(visit.start / DAY);
    match visit.class {
        Class::Ambulatory if visit.presentation.is_none() && !complex => match age {
            0 => Line { code: "99391", text: "Preventive visit, established patient, infant", charge: 210.0 },
            1..=4 => {
                Line { code: "99392", text: "Preventive visit, established patient, age 1-4", charge: 220.0 }
            }
            5..=11 => {
                Line { code: "99393", text: "Preventive visit, established patient, age 5-11", charge: 220.0 }
            }
            12..=17 => Line {
                code: "99394",
                text: "Preventive visit, established patient, age 12-17",
                charge: 235.0,
            },
            18..=39 => Line {
                code: "99395",
                text: "Preventive visit, established patient, age 18-39",
                charge: 245.0,
            },
            40..=64 => Line {
                code: "99396",
                text: "Preventive visit, established patient, age 40-64",
                charge: 265.0,
            },
            _ => Line {
                code: "99397",
                text: "Preventive visit, established patient, 65 and over",
                charge: 285.0,
            },
        },
        Class::Ambulatory if complex => {
            Line { code: "99214", text: "Office visit, established patient, moderate", charge: 225.0 }
        }
        Class::Ambulatory => {
            Line { code: "99213", text: "Office visit, established patient, low", charge: 150.0 }
        }
        Class::Emergency if complex => {
            Line { code: "99285", text: "Emergency department visit, high", charge: 1250.0 }
        }
        Class::Emergency => {
            Line { code: "99284", text: "Emergency department visit, moderate", charge: 780.0 }
        }
        Class::Inpatient => {
            Line { code: "99223", text: "Initial hospital inpatient care, high", charge: 520.0 }
        }
    }
}

pub(super) fn lab_line(code: &str) -> Option<Line> {
    match code {
        "4548-4" => Some(Line { code: "83036", text: "Hemoglobin A1c", charge: 45.0 }),
        "2345-7" => Some(Line { code: "82947", text: "Glucose, quantitative, blood", charge: 22.0 }),
        "2160-0" => Some(Line { code: "82565", text: "Creatinine, blood", charge: 28.0 }),
        "2093-3" => Some(Line { code: "82465", text: "Cholesterol, serum, total", charge: 30.0 }),
        _ => None,
    }
}

/// Claims and their adjudications are the bulkiest resources after observations, so they
/// are written as JSON text directly too.
pub(super) fn write_claim(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    diagnoses: &[(String, &'static Dx)],
    lines: &[Line],
    age: i64,
    sink: &mut Sink,
) -> Result<(), Error> {
    let (type_code, type_display) = if visit.class == Class::Ambulatory {
        ("professional", "Professional")
    } else {
        ("institutional", "Institutional")
    };
    let mut codes: Vec<(&str, &str)> = diagnoses.iter().map(|(_, dx)| (dx.icd, dx.display)).collect();
    if codes.is_empty() {
        codes.push(wellness_code(age));
    }
    let patient = format!("Patient/{}", person.id());
    let period = (date_time(visit.start), date_time(visit.end));
    let provider = format!("Organization/{}", PROVIDERS[visit.provider].id);
    let insurer = format!("Organization/{}", PAYERS[person.payer].id);
    let coverage = format!("Coverage/cov-{}", person.key);
    let claim_id = format!("claim-{}", &encounter_id[4..]);
    let served = date(visit.start / DAY);
    let encounter = format!("Encounter/{encounter_id}");
    let total: f64 = lines.iter().map(|l| l.charge).sum();

    // The parts a claim and its adjudication share.
    let mut head = String::with_capacity(512);
    head.push_str(",\"status\":\"active\",\"type\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/claim-type\",\"code\":");
    push_str_literal(&mut head, type_code);
    head.push_str(",\"display\":");
    push_str_literal(&mut head, type_display);
    head.push_str("}]},\"use\":\"claim\",\"patient\":{\"reference\":");
    push_str_literal(&mut head, &patient);
    head.push_str("},\"billablePeriod\":{\"start\":");
    push_str_literal(&mut head, &period.0);
    head.push_str(",\"end\":");
    push_str_literal(&mut head, &period.1);
    head.push('}');
    let mut parties = String::with_capacity(128);
    parties.push_str(",\"insurer\":{\"reference\":");
    push_str_literal(&mut parties, &insurer);
    parties.push_str("},\"provider\":{\"reference\":");
    push_str_literal(&mut parties, &provider);
    parties.push('}');
    let mut diagnosis = String::from(",\"diagnosis\":[");
    for (i, (code, display)) in codes.iter().enumerate() {
        if i > 0 {
            diagnosis.push(',');
        }
        let _ = write!(
            diagnosis,
            "{{\"sequence\":{},\"diagnosisCodeableConcept\":{{\"coding\":[{{\"system\":\"{ICD10CM}\",\"code\":",
            i + 1
        );
        push_str_literal(&mut diagnosis, code);
        diagnosis.push_str(",\"display\":");
        push_str_literal(&mut diagnosis, display);
        diagnosis.push_str("}]}}");
    }
    diagnosis.push(']');
    let pointers: Vec<String> = (1..=codes.len().min(4)).map(|n| n.to_string()).collect();
    let pointers = pointers.join(",");
    let item = |out: &mut String, i: usize, line: &Line| {
        let _ = write!(
            out,
            "{{\"sequence\":{},\"diagnosisSequence\":[{pointers}],\"productOrService\":{{\"coding\":[{{\"system\":\"{CPT}\",\"code\":",
            i + 1
        );
        push_str_literal(out, line.code);
        out.push_str("}],\"text\":");
        push_str_literal(out, line.text);
        out.push_str("},\"servicedDate\":");
        push_str_literal(out, &served);
        out.push_str(",\"encounter\":[{\"reference\":");
        push_str_literal(out, &encounter);
        let _ = write!(out, "}}],\"net\":{{\"value\":{:.2},\"currency\":\"USD\"}}", line.charge);
    };

    let mut claim = String::with_capacity(2048);
    claim.push_str("{\"resourceType\":\"Claim\",\"id\":");
    push_str_literal(&mut claim, &claim_id);
    claim.push_str(&head);
    claim.push_str(",\"created\":");
    push_str_literal(&mut claim, &date_time(visit.end + 2 * DAY));
    claim.push_str(&parties);
    claim.push_str(",\"priority\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/processpriority\",\"code\":\"normal\",\"display\":\"Normal\"}]}");
    claim.push_str(&diagnosis);
    claim.push_str(",\"insurance\":[{\"sequence\":1,\"focal\":true,\"coverage\":{\"reference\":");
    push_str_literal(&mut claim, &coverage);
    claim.push_str("}}],\"item\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            claim.push(',');
        }
        item(&mut claim, i, line);
        claim.push('}');
    }
    let _ = write!(claim, "],\"total\":{{\"value\":{total:.2},\"currency\":\"USD\"}}}}");
    sink.write_json_line("Claim", claim.as_bytes())?;

    // What the payer allowed and paid, as a fixed share per plan.
    let paid_share = match person.payer {
        MEDICARE => 0.52,
        MEDICAID => 0.45,
        _ => 0.68,
    };
    let adjudication = |out: &mut String, code: &str, display: &str, amount: f64| {
        let _ = write!(
            out,
            "{{\"category\":{{\"coding\":[{{\"system\":\"http://terminology.hl7.org/CodeSystem/adjudication\",\"code\":\"{code}\",\"display\":\"{display}\"}}]}},\"amount\":{{\"value\":{amount:.2},\"currency\":\"USD\"}}}}"
        );
    };
    let paid_line = |charge: f64| (charge * paid_share * 100.0).round() / 100.0;
    let paid: f64 = lines.iter().map(|l| paid_line(l.charge)).sum();
    let mut eob = String::with_capacity(3072);
    eob.push_str("{\"resourceType\":\"ExplanationOfBenefit\",\"id\":");
    push_str_literal(&mut eob, &format!("eob-{}", &encounter_id[4..]));
    eob.push_str(&head);
    eob.push_str(",\"created\":");
    push_str_literal(&mut eob, &date_time(visit.end + 16 * DAY));
    eob.push_str(&parties);
    eob.push_str(",\"claim\":{\"reference\":");
    push_str_literal(&mut eob, &format!("Claim/{claim_id}"));
    eob.push_str("},\"outcome\":\"complete\"");
    eob.push_str(&diagnosis);
    eob.push_str(",\"insurance\":[{\"focal\":true,\"coverage\":{\"reference\":");
    push_str_literal(&mut eob, &coverage);
    eob.push_str("}}],\"item\":[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            eob.push(',');
        }
        item(&mut eob, i, line);
        eob.push_str(",\"adjudication\":[");
        adjudication(&mut eob, "submitted", "Submitted Amount", line.charge);
        eob.push(',');
        adjudication(&mut eob, "benefit", "Benefit Amount", paid_line(line.charge));
        eob.push_str("]}");
    }
    eob.push_str("],\"total\":[");
    adjudication(&mut eob, "submitted", "Submitted Amount", total);
    eob.push(',');
    adjudication(&mut eob, "benefit", "Benefit Amount", paid);
    let _ = write!(eob, "],\"payment\":{{\"amount\":{{\"value\":{paid:.2},\"currency\":\"USD\"}}}}}}");
    sink.write_json_line("ExplanationOfBenefit", eob.as_bytes())
}
