//! What a visit is billed as: the service lines (evaluation and management, hospital days,
//! labs, procedures, vaccines) and the Claim with its ExplanationOfBenefit.
//!
//! A visit's account follows the revenue cycle: charges are posted at discharge (a `draft`
//! Claim with its lines), a coder adds the diagnoses some days later, and the final bill drops
//! (the Claim becomes `active`) after the bill hold; the payer adjudicates two weeks later.
//! Visits discharged shortly before the generation date are still somewhere on that road,
//! which is what the discharged-not-final-billed figures count.

use std::fmt::Write as _;

use super::directory::{MEDICAID, MEDICARE, PAYERS, PROVIDERS};
use super::person::Person;
use super::visits::{Class, Visit};
use super::{push_str_literal, wellness_code};
use crate::calendar::*;
use crate::clinical::Dx;
use crate::rng::Rng;
use crate::{Error, Sink};

/// A service line of a claim: code, words, charge, and the Procedure it bills, if any.
pub(super) struct Line {
    pub(super) code: &'static str,
    pub(super) text: &'static str,
    pub(super) charge: f64,
    pub(super) procedure: Option<String>,
}

impl Line {
    pub(super) fn service(code: &'static str, text: &'static str, charge: f64) -> Line {
        Line { code, text, charge, procedure: None }
    }
}

/// Where a visit's account stands on the generation date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Account {
    /// Final-billed at this instant (seconds).
    Billed(i64),
    /// Charges posted; coded (diagnoses on the draft) or not yet.
    Unbilled { coded: bool },
}

/// Days from discharge to coding and to the final bill: most accounts are coded within
/// three days and billed after a short hold; some wait on a query to the physician, some
/// are held by an edit.
pub(super) fn account(visit: &Visit, lags: &mut Rng) -> Account {
    let coding_days = match lags.below(100) {
        0..70 => lags.range(1, 4),
        70..90 => lags.range(4, 11),
        _ => lags.range(11, 46),
    };
    let hold_days = if lags.chance(0.05) { lags.range(10, 31) } else { lags.range(1, 4) };
    let coded = visit.end + coding_days * DAY;
    let billed = coded + hold_days * DAY;
    // The as-of date is the generation date's end: what the record shows when it closes.
    let as_of = (TODAY + 1) * DAY;
    if billed < as_of { Account::Billed(billed) } else { Account::Unbilled { coded: coded < as_of } }
}

pub(super) fn evaluation_line(person: &Person, visit: &Visit, complex: bool) -> Line {
    let age = person.age_on(visit.start / DAY);
    match visit.class {
        Class::Ambulatory if visit.presentation.is_none() && !complex => match age {
            0 => Line::service("99391", "Preventive visit, established patient, infant", 210.0),
            1..=4 => Line::service("99392", "Preventive visit, established patient, age 1-4", 220.0),
            5..=11 => Line::service("99393", "Preventive visit, established patient, age 5-11", 220.0),
            12..=17 => Line::service("99394", "Preventive visit, established patient, age 12-17", 235.0),
            18..=39 => Line::service("99395", "Preventive visit, established patient, age 18-39", 245.0),
            40..=64 => Line::service("99396", "Preventive visit, established patient, age 40-64", 265.0),
            _ => Line::service("99397", "Preventive visit, established patient, 65 and over", 285.0),
        },
        Class::Ambulatory if complex => {
            Line::service("99214", "Office visit, established patient, moderate", 225.0)
        }
        Class::Ambulatory => Line::service("99213", "Office visit, established patient, low", 150.0),
        Class::Emergency if complex => Line::service("99285", "Emergency department visit, high", 1250.0),
        Class::Emergency => Line::service("99284", "Emergency department visit, moderate", 780.0),
        Class::Inpatient => Line::service("99223", "Initial hospital inpatient care, high", 520.0),
    }
}

pub(super) fn lab_line(code: &str) -> Option<Line> {
    match code {
        "4548-4" => Some(Line::service("83036", "Hemoglobin A1c", 45.0)),
        "2345-7" => Some(Line::service("82947", "Glucose, quantitative, blood", 22.0)),
        "2160-0" => Some(Line::service("82565", "Creatinine, blood", 28.0)),
        "2093-3" => Some(Line::service("82465", "Cholesterol, serum, total", 30.0)),
        _ => None,
    }
}

/// Claims and their adjudications are the bulkiest resources after observations, so they
/// are written as JSON text directly too. Returns the claim's total charge.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_claim(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    diagnoses: &[(String, &'static Dx)],
    lines: &[Line],
    age: i64,
    account: Account,
    sink: &mut Sink,
) -> Result<f64, Error> {
    let (type_code, type_display) = if visit.class == Class::Ambulatory {
        ("professional", "Professional")
    } else {
        ("institutional", "Institutional")
    };
    let mut codes: Vec<(&str, &str)> = diagnoses.iter().map(|(_, dx)| (dx.icd, dx.display)).collect();
    if codes.is_empty() {
        codes.push(wellness_code(age));
    }
    // Until a coder has been through the account, the draft carries no diagnoses.
    if account == (Account::Unbilled { coded: false }) {
        codes.clear();
    }
    let (status, created) = match account {
        Account::Billed(at) => ("active", at),
        Account::Unbilled { .. } => ("draft", visit.end + 3600),
    };
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
    head.push_str(",\"status\":");
    push_str_literal(&mut head, status);
    head.push_str(
        ",\"type\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/claim-type\",\"code\":",
    );
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
    let mut diagnosis = String::new();
    if !codes.is_empty() {
        diagnosis.push_str(",\"diagnosis\":[");
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
    }
    // The procedures billed, each pointing at the Procedure that documents it.
    let mut procedure = String::new();
    let mut procedure_sequence = vec![None; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        let Some(id) = &line.procedure else { continue };
        let sequence = procedure_sequence.iter().flatten().count() + 1;
        procedure_sequence[i] = Some(sequence);
        procedure.push_str(if sequence == 1 { ",\"procedure\":[" } else { "," });
        let _ = write!(procedure, "{{\"sequence\":{sequence},\"date\":");
        push_str_literal(&mut procedure, &date_time(visit.start));
        procedure.push_str(",\"procedureReference\":{\"reference\":");
        push_str_literal(&mut procedure, &format!("Procedure/{id}"));
        procedure.push_str("}}");
    }
    if !procedure.is_empty() {
        procedure.push(']');
    }
    let pointers: Vec<String> = (1..=codes.len().min(4)).map(|n| n.to_string()).collect();
    let pointers = pointers.join(",");
    let item = |out: &mut String, i: usize, line: &Line| {
        let _ = write!(out, "{{\"sequence\":{}", i + 1);
        if !pointers.is_empty() {
            let _ = write!(out, ",\"diagnosisSequence\":[{pointers}]");
        }
        if let Some(sequence) = procedure_sequence[i] {
            let _ = write!(out, ",\"procedureSequence\":[{sequence}]");
        }
        let _ = write!(out, ",\"productOrService\":{{\"coding\":[{{\"system\":\"{CPT}\",\"code\":");
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
    push_str_literal(&mut claim, &date_time(created));
    claim.push_str(&parties);
    claim.push_str(",\"priority\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/processpriority\",\"code\":\"normal\",\"display\":\"Normal\"}]}");
    claim.push_str(&diagnosis);
    claim.push_str(&procedure);
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

    // The payer adjudicates a final bill two weeks after it drops.
    let adjudicated = created + 14 * DAY;
    if status != "active" || adjudicated >= (TODAY + 1) * DAY {
        return Ok(total);
    }
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
    push_str_literal(&mut eob, &date_time(adjudicated));
    eob.push_str(&parties);
    eob.push_str(",\"claim\":{\"reference\":");
    push_str_literal(&mut eob, &format!("Claim/{claim_id}"));
    eob.push_str("},\"outcome\":\"complete\"");
    eob.push_str(&diagnosis);
    eob.push_str(&procedure);
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
    sink.write_json_line("ExplanationOfBenefit", eob.as_bytes())?;
    Ok(total)
}
