//! Final bills checked against the record they bill for.
//!
//! A claim's encounter is what it is for (`Claim.item.encounter`). For each final claim:
//! 1. **void-encounter**: the encounter was cancelled, entered in error or only planned; the
//!    whole bill is wrong, so nothing else is checked on it.
//! 2. **encounter-missing**: it names no encounter, or one the record does not hold; it cannot
//!    be reconciled.
//! 3. **duplicate-claim**: another final claim for the same patient and encounter bills the
//!    same services (same codes and amounts) and was submitted first; a claim that names the
//!    other as `related` (a correction) is not a duplicate. Nothing else is checked on it.
//! 4. **total-mismatch**: `total` is not the sum of the lines' `net`; **line-net-mismatch**:
//!    a line's `net` is not quantity × unit price × factor.
//! 5. **undocumented-diagnosis**: a billed ICD-10-CM code that no asserted Condition of the
//!    encounter (listed in its `diagnosis`, given as its reason, or recorded at it), no
//!    `reasonCode` and no note of the encounter (its code or its ICD-10-CM title) documents.
//! 6. **unbilled-diagnosis**: a code of the encounter's Conditions on none of its final bills.
//! 7. **unbilled-procedure**: a completed Procedure of the encounter that none of its final
//!    bills carries, by reference or by code (`Claim.procedure`, or a line's
//!    `productOrService`).
//! 8. The coding edits (`coding::check` in the claim setting) over its diagnoses.
//!
//! Codes compare without the dot and in upper case.

use std::collections::{HashMap, HashSet};

use store::Store;

use super::record::{Claim, Record, notes};
use super::{Finding, Severity};
use crate::Result;

/// Rules besides the coding edits, in the order they are documented.
pub const RULES: &[(&str, &str)] = &[
    ("void-encounter", "a final bill for an encounter that was cancelled, entered in error or only planned"),
    ("encounter-missing", "a final bill that names no encounter, or one the record does not hold"),
    ("duplicate-claim", "a second final bill for the same encounter and services"),
    ("total-mismatch", "a bill whose total is not the sum of its lines"),
    ("line-net-mismatch", "a line whose net is not quantity times unit price times factor"),
    ("undocumented-diagnosis", "a billed diagnosis that nothing in the encounter's record documents"),
    ("unbilled-diagnosis", "a diagnosis documented at the encounter that none of its bills carries"),
    ("unbilled-procedure", "a procedure done at the encounter that none of its bills carries"),
];

/// Cents: amounts agree when they differ by less than half of one.
const CENT: f64 = 0.005;

fn finding(rule: &str, severity: Severity, claim: &Claim, message: String) -> Finding {
    Finding {
        rule: rule.to_string(),
        severity,
        claim: claim.id.clone(),
        encounter: claim.encounters.first().cloned(),
        patient: claim.patient.clone(),
        code: None,
        message,
        evidence: Vec::new(),
        amount: claim.charges(),
    }
}

/// What makes two bills the same: patient, provider, kind of bill, payer and coverage,
/// encounters (or, without any, the service date) and the services with their amounts.
fn sameness(claim: &Claim) -> String {
    let mut lines: Vec<String> = claim
        .lines
        .iter()
        .map(|l| {
            let codes: Vec<String> = l.codes.iter().map(|(s, c)| format!("{s}|{c}")).collect();
            format!("{}={:.2}", codes.join("+"), l.net.unwrap_or(0.0))
        })
        .collect();
    lines.sort();
    let place = if claim.encounters.is_empty() {
        format!("@{}", claim.service_start.as_deref().unwrap_or(""))
    } else {
        claim.encounters.join(",")
    };
    format!(
        "{}#{}#{}#{place}#{}",
        claim.patient.as_deref().unwrap_or(""),
        claim.provider.as_deref().unwrap_or(""),
        claim.payer,
        lines.join(";")
    )
}

pub(crate) fn reconcile(store: &dyn Store, record: &Record) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let finals: Vec<&Claim> = record.claims.iter().filter(|c| c.is_final()).collect();

    // Duplicates: the first submitted of each set of identical bills stands.
    let mut by_sameness: HashMap<String, Vec<&Claim>> = HashMap::new();
    for claim in &finals {
        by_sameness.entry(sameness(claim)).or_default().push(claim);
    }
    let mut duplicates: HashMap<&str, &Claim> = HashMap::new();
    for group in by_sameness.values_mut().filter(|g| g.len() > 1) {
        group.sort_by(|a, b| {
            (a.created.unwrap_or(i64::MAX), &a.id).cmp(&(b.created.unwrap_or(i64::MAX), &b.id))
        });
        // A bill that names an earlier one as related (or is named by it) corrects it: a
        // chain of corrections is one bill.
        let first = group[0];
        for (at, later) in group.iter().enumerate().skip(1) {
            let corrects = group[..at]
                .iter()
                .any(|earlier| later.related.contains(&earlier.id) || earlier.related.contains(&later.id));
            if !corrects {
                duplicates.insert(later.id.as_str(), first);
            }
        }
    }

    let mut checked: Vec<&Claim> = Vec::new();
    for claim in &finals {
        let encounters: Vec<_> = claim.encounters.iter().map(|id| (id, record.encounters.get(id))).collect();
        if let Some((id, Some(encounter))) = encounters.iter().find(|(_, e)| e.is_some_and(|e| e.void())) {
            let mut f = finding(
                "void-encounter",
                Severity::Error,
                claim,
                format!(
                    "billed for Encounter/{id}, whose status is {}: the visit did not take place",
                    encounter.status
                ),
            );
            f.encounter = Some((*id).clone());
            f.evidence.push(format!("Encounter/{id}.status = {}", encounter.status));
            findings.push(f);
            continue;
        }
        if encounters.is_empty() || encounters.iter().any(|(_, e)| e.is_none()) {
            let missing: Vec<String> = encounters
                .iter()
                .filter(|(_, e)| e.is_none())
                .map(|(id, _)| format!("Encounter/{id}"))
                .collect();
            let message = if encounters.is_empty() {
                "names no encounter (Claim.item.encounter): it cannot be checked against the record"
                    .to_string()
            } else {
                format!("names {} which the record does not hold", missing.join(", "))
            };
            let mut f = finding("encounter-missing", Severity::Warning, claim, message);
            f.evidence = missing;
            findings.push(f);
            continue;
        }
        if let Some(first) = duplicates.get(claim.id.as_str()) {
            let mut f = finding(
                "duplicate-claim",
                Severity::Error,
                claim,
                format!("bills the same encounter and services as Claim/{}, submitted before it", first.id),
            );
            f.evidence.push(format!("Claim/{}", first.id));
            findings.push(f);
            continue;
        }
        checked.push(claim);
        let lines_total: f64 = claim.lines.iter().filter_map(|l| l.net).sum();
        if let Some(total) = claim.total
            && claim.lines.iter().any(|l| l.net.is_some())
            && (total - lines_total).abs() >= CENT
        {
            let mut f = finding(
                "total-mismatch",
                Severity::Error,
                claim,
                format!("total {total:.2} is not the sum of its lines, {lines_total:.2}"),
            );
            f.evidence.push(format!("Claim.total = {total:.2}; sum of Claim.item.net = {lines_total:.2}"));
            findings.push(f);
        }
        for (i, line) in claim.lines.iter().enumerate() {
            let (Some(net), Some(unit)) = (line.net, line.unit_price) else { continue };
            let expected = line.quantity.unwrap_or(1.0) * unit * line.factor.unwrap_or(1.0);
            if (net - expected).abs() >= CENT {
                let mut f = finding(
                    "line-net-mismatch",
                    Severity::Error,
                    claim,
                    format!(
                        "line {} has net {net:.2}, not quantity x unit price x factor = {expected:.2}",
                        i + 1
                    ),
                );
                f.evidence.push(format!("Claim.item[{i}]"));
                findings.push(f);
            }
        }
    }

    // What each encounter documents, and what its checked final bills carry.
    let mut billed_by_encounter: HashMap<&str, Vec<&Claim>> = HashMap::new();
    for claim in &checked {
        for id in &claim.encounters {
            billed_by_encounter.entry(id.as_str()).or_default().push(claim);
        }
    }
    let mut recorded_at: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, condition) in &record.conditions {
        if let Some(encounter) = &condition.encounter {
            recorded_at.entry(encounter.as_str()).or_default().push(id.as_str());
        }
    }
    // (normalized code, code as written, the Condition, whether it is certain)
    let diagnosed = |encounter: &str| -> Vec<(String, String, String, bool)> {
        let mut ids: Vec<&str> = record.encounters[encounter].conditions.iter().map(String::as_str).collect();
        ids.extend(recorded_at.get(encounter).into_iter().flatten());
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| record.conditions.get(*id).map(|c| (id, c)))
            .flat_map(|(id, c)| {
                c.codes
                    .iter()
                    .map(move |(n, code)| (n.clone(), code.clone(), format!("Condition/{id}"), c.certain))
            })
            .collect()
    };

    // Billed codes nothing structured documents, to be looked for in the notes.
    let mut candidates: Vec<(&Claim, &str, usize)> = Vec::new();
    for claim in &checked {
        let mut documented: HashSet<String> = HashSet::new();
        for id in &claim.encounters {
            documented.extend(diagnosed(id).into_iter().map(|(n, _, _, _)| n));
            documented.extend(record.encounters[id].reasons.iter().cloned());
        }
        for (at, diagnosis) in claim.diagnoses.iter().enumerate() {
            if !documented.contains(&diagnosis.normalized) {
                candidates.push((claim, claim.encounters[0].as_str(), at));
            }
        }
    }
    let wanted: HashSet<&str> =
        candidates.iter().flat_map(|(claim, _, _)| claim.encounters.iter().map(String::as_str)).collect();
    let notes = notes(store, &wanted)?;
    let icd = terminology::icd10cm::Icd10Cm::get();
    for (claim, encounter, at) in candidates {
        let diagnosis = &claim.diagnoses[at];
        let title = icd.lookup(&diagnosis.code).map(|c| c.display().to_lowercase()).unwrap_or_default();
        let bare = diagnosis.normalized.to_lowercase();
        // Notes write codes with the dot after the category, claims often without.
        let dotted = match (bare.get(..3), bare.get(3..)) {
            (Some(category), Some(rest)) if !rest.is_empty() => format!("{category}.{rest}"),
            _ => bare.clone(),
        };
        let mentioned = claim
            .encounters
            .iter()
            .flat_map(|id| notes.get(id).into_iter().flatten())
            .any(|(_, text)| [&dotted, &bare, &title].iter().any(|needle| affirmed(text, needle)));
        if mentioned {
            continue;
        }
        let mut documented: Vec<String> = claim
            .encounters
            .iter()
            .flat_map(|id| diagnosed(id))
            .map(|(_, code, condition, _)| format!("{code} ({condition})"))
            .collect();
        documented.sort();
        documented.dedup();
        let note_count: usize = claim.encounters.iter().map(|id| notes.get(id).map_or(0, Vec::len)).sum();
        let mut f = finding(
            "undocumented-diagnosis",
            Severity::Error,
            claim,
            format!(
                "bills {} but no Condition, diagnosis, reason or note of Encounter/{encounter} documents it",
                diagnosis.code
            ),
        );
        f.code = Some(diagnosis.code.clone());
        f.evidence.push(diagnosis.location.clone());
        f.evidence.push(if documented.is_empty() {
            "the encounter documents no coded diagnosis".to_string()
        } else {
            format!("the encounter documents {}", documented.join(", "))
        });
        f.evidence.push(format!("{note_count} note(s) of the encounter read; none mentions it"));
        findings.push(f);
    }

    // Documented at the encounter, billed on none of its final bills.
    let mut encounters: Vec<&&str> = billed_by_encounter.keys().collect();
    encounters.sort();
    for encounter in encounters {
        let bills = &billed_by_encounter[*encounter];
        let billed: HashSet<&str> =
            bills.iter().flat_map(|c| c.diagnoses.iter().map(|d| d.normalized.as_str())).collect();
        let first = bills[0];
        let mut seen = HashSet::new();
        for (normalized, code, condition, certain) in diagnosed(encounter) {
            // Uncertain diagnoses are not billed as such (ICD-10-CM guidelines, IV.H).
            if !certain || billed.contains(normalized.as_str()) || !seen.insert(normalized.clone()) {
                continue;
            }
            let mut f = finding(
                "unbilled-diagnosis",
                Severity::Warning,
                first,
                format!(
                    "{condition} documents {code} at Encounter/{encounter}, but no final bill for it carries the code"
                ),
            );
            f.encounter = Some(encounter.to_string());
            f.code = Some(code);
            f.evidence.push(condition);
            findings.push(f);
        }
        for procedure in record.procedures.get(*encounter).into_iter().flatten() {
            let carried = bills.iter().any(|c| {
                c.procedure_references.contains(&procedure.id)
                    || c.procedure_codes.iter().any(|k| procedure.codes.contains(k))
                    || c.lines.iter().any(|l| l.codes.iter().any(|k| procedure.codes.contains(k)))
            });
            if carried {
                continue;
            }
            let code = procedure.codes.first().map(|(_, c)| c.clone());
            let mut f = finding(
                "unbilled-procedure",
                Severity::Warning,
                first,
                format!(
                    "Procedure/{} ({}) was done at Encounter/{encounter}, but no final bill for it carries it",
                    procedure.id,
                    if procedure.text.is_empty() {
                        code.as_deref().unwrap_or("no code")
                    } else {
                        &procedure.text
                    }
                ),
            );
            f.encounter = Some(encounter.to_string());
            f.code = code;
            f.evidence.push(format!("Procedure/{}", procedure.id));
            findings.push(f);
        }
    }

    // The coding edits, over each checked bill's diagnoses.
    for claim in &checked {
        if claim.diagnoses.is_empty() {
            continue;
        }
        let diagnoses: Vec<coding::Diagnosis> = claim
            .diagnoses
            .iter()
            .map(|d| coding::Diagnosis {
                code: d.code.clone(),
                location: d.location.clone(),
                sequence: d.sequence,
                documentation: Vec::new(),
            })
            .collect();
        let (gender, birth) =
            claim.patient.as_ref().and_then(|p| record.patients.get(p)).cloned().unwrap_or_default();
        let service = claim.service_start.as_deref().map(|s| s.get(..10).unwrap_or(s));
        let facts = coding::PatientFacts {
            sex: match gender.as_deref() {
                Some("female") => Some(coding::Sex::Female),
                Some("male") => Some(coding::Sex::Male),
                _ => None,
            },
            age_years: birth.as_deref().zip(service).and_then(|(b, s)| coding::extract::possible_ages(b, s)),
        };
        for edit in coding::check(&diagnoses, &facts, coding::Setting::Claim) {
            let mut f = finding(edit.id.as_str(), edit.severity, claim, edit.message);
            f.code = Some(edit.code);
            f.evidence.push(edit.location);
            f.evidence.extend(edit.other_location);
            findings.push(f);
        }
    }
    Ok(findings)
}

/// Words that, earlier in the same sentence, deny or doubt what follows (each with the
/// blanks around it, so "no" is not found in "piano").
const NEGATIONS: &[&str] = &[
    " no ",
    " not ",
    " denies ",
    " denied ",
    " negative for ",
    " rule out ",
    " ruled out ",
    " r/o ",
    " free of ",
    " without ",
];

/// Whether `needle` occurs in `text` as a whole code or phrase (not part of a longer code or
/// word) in a sentence that does not deny or doubt it before the mention.
fn affirmed(text: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let bytes = text.as_bytes();
    let joins = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    text.match_indices(needle).any(|(at, _)| {
        let end = at + needle.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        // A following dot ends a sentence, unless more of a code follows it.
        let after = bytes.get(end).copied();
        let continues_code = after == Some(b'.') && joins(bytes.get(end + 1).copied());
        if joins(before) || before == Some(b'.') || joins(after) || continues_code {
            return false;
        }
        let sentence_start = text[..at].rfind(['.', '\n', ';']).map_or(0, |i| i + 1);
        let lead = format!(" {} ", text[sentence_start..at].trim_end());
        !NEGATIONS.iter().any(|n| lead.contains(n))
    })
}

#[cfg(test)]
mod tests {
    use super::affirmed;

    #[test]
    fn codes_and_titles_are_found_whole_and_affirmed() {
        assert!(affirmed("assessment: n17.9 acute kidney injury", "n17.9"));
        assert!(affirmed("code n17.9.", "n17.9"));
        assert!(!affirmed("n17.91", "n17.9"));
        assert!(!affirmed("n17.9.1", "n17.9"));
        assert!(!affirmed("xn17.9", "n17.9"));
        assert!(!affirmed("anything", ""));
        assert!(affirmed("2. dehydration, oral fluids.", "dehydration"));
        assert!(!affirmed("no dehydration on exam.", "dehydration"));
        assert!(!affirmed("rule out acute kidney failure, unspecified", "acute kidney failure, unspecified"));
        assert!(affirmed(
            "denies pain. acute kidney failure, unspecified.",
            "acute kidney failure, unspecified"
        ));
        assert!(!affirmed("dehydrations", "dehydration"));
        assert!(affirmed("piano player with dehydration", "dehydration"));
    }
}
