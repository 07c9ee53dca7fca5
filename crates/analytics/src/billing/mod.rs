//! Accurate bills: every final Claim reconciled with the record it bills for
//! ([`reconcile`]), and the revenue-cycle figures (discharged not final-billed, the coding
//! backlog) as of a day ([`revenue`]).
//!
//! Each finding names the claim, the rule and the evidence (the elements and resources that
//! show it), so a coder or auditor can act on it without redoing the search. The audit reads
//! through `store::Store` only: on the server it runs over the caller's view of the record.

mod reconcile;
mod record;
pub mod revenue;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value as Json, json};
use store::Store;

pub use reconcile::RULES;
pub use revenue::{AGE_BRACKETS, Account, Bracket, RevenueCycle, Tally};

use crate::{Error, Result};

/// How serious a finding is: the coding edits' scale (an error: the bill is wrong as it
/// stands; a warning: probably wrong, or money left on the table).
pub use coding::Severity;

fn severity_text<S: serde::Serializer>(severity: &Severity, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(severity.as_str())
}

/// One problem with one bill.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// A reconciliation rule ([`RULES`]) or a coding edit's id (`icd-...`).
    pub rule: String,
    #[serde(serialize_with = "severity_text")]
    pub severity: Severity,
    /// The Claim's id.
    pub claim: String,
    pub encounter: Option<String>,
    pub patient: Option<String>,
    /// The diagnosis or procedure code concerned, when there is one.
    pub code: Option<String>,
    /// For a person: what is wrong.
    pub message: String,
    /// What shows it: element locations and resources.
    pub evidence: Vec<String>,
    /// The bill's charges.
    pub amount: f64,
}

/// What the audit covers.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditOptions {
    /// The day the revenue-cycle figures are taken at the end of (days since the epoch).
    pub as_of_day: i64,
    /// Days after discharge within which an unbilled account is normal.
    pub bill_hold_days: i64,
}

impl AuditOptions {
    /// As of `as_of` (`YYYY-MM-DD`).
    pub fn as_of(as_of: &str, bill_hold_days: i64) -> Result<AuditOptions> {
        let day = crate::record::end_of_day(as_of)
            .ok_or_else(|| Error::Invalid(format!("asOf '{as_of}' is not a date (YYYY-MM-DD)")))?
            .div_euclid(86_400_000);
        if !(0..=365).contains(&bill_hold_days) {
            return Err(Error::Invalid(format!("the bill hold must be 0 to 365 days, not {bill_hold_days}")));
        }
        Ok(AuditOptions { as_of_day: day, bill_hold_days })
    }
}

/// Findings of one rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCount {
    pub findings: u64,
    pub claims: u64,
    /// Charges on the claims concerned.
    pub amount: f64,
}

/// The audit's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingAudit {
    pub claims: u64,
    pub final_claims: u64,
    /// Final claims with at least one finding.
    pub claims_with_findings: u64,
    pub by_rule: BTreeMap<String, RuleCount>,
    /// Every finding, errors first, then by rule and claim.
    pub findings: Vec<Finding>,
    pub revenue: RevenueCycle,
    /// Resources whose shape could not be read (left out).
    pub unreadable: u64,
}

/// Runs the audit.
pub fn audit(store: &dyn Store, options: &AuditOptions) -> Result<BillingAudit> {
    let record = record::read(store)?;
    let mut findings = reconcile::reconcile(store, &record)?;
    findings.sort_by(|a, b| {
        (a.severity, &a.rule, &a.claim, &a.code).cmp(&(b.severity, &b.rule, &b.claim, &b.code))
    });
    let mut by_rule: BTreeMap<String, RuleCount> = BTreeMap::new();
    let mut claims_per_rule: BTreeMap<&str, std::collections::HashSet<&str>> = BTreeMap::new();
    for finding in &findings {
        let count = by_rule.entry(finding.rule.clone()).or_default();
        count.findings += 1;
        if claims_per_rule.entry(&finding.rule).or_default().insert(&finding.claim) {
            count.claims += 1;
            count.amount += finding.amount;
        }
    }
    let flagged: std::collections::HashSet<&str> = findings.iter().map(|f| f.claim.as_str()).collect();
    let claims_with_findings = flagged.len() as u64;
    let revenue = revenue::revenue_cycle(&record, options.as_of_day, options.bill_hold_days);
    Ok(BillingAudit {
        claims: record.claims.len() as u64,
        final_claims: record.claims.iter().filter(|c| c.is_final()).count() as u64,
        claims_with_findings,
        by_rule,
        findings,
        revenue,
        unreadable: record.unreadable,
    })
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// A CSV field: quoted when it must be, and never read by a spreadsheet as a formula (text
/// from the record could start with `=`).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn tally_parts(name: &str, tally: &Tally) -> Json {
    json!({ "name": name, "part": [
        { "name": "count", "valueInteger": tally.count },
        { "name": "amount", "valueDecimal": cents(tally.amount) },
        { "name": "averageAgeDays", "valueDecimal": (tally.average_age_days * 10.0).round() / 10.0 },
        { "name": "oldestAgeDays", "valueInteger": tally.oldest_age_days },
    ]})
}

impl BillingAudit {
    /// The findings as CSV: one row per finding.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("rule,severity,claim,encounter,patient,code,amount,message,evidence\n");
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{:.2},{},{}",
                csv_field(&f.rule),
                f.severity.as_str(),
                csv_field(&f.claim),
                csv_field(f.encounter.as_deref().unwrap_or("")),
                csv_field(f.patient.as_deref().unwrap_or("")),
                csv_field(f.code.as_deref().unwrap_or("")),
                f.amount,
                csv_field(&f.message),
                csv_field(&f.evidence.join("; ")),
            );
        }
        out
    }

    /// A FHIR Parameters: the counts, the revenue-cycle figures, at most `limit` findings and
    /// at most `limit` DNFB accounts (oldest first).
    pub fn to_parameters(&self, limit: usize) -> Json {
        let mut parameter = vec![
            json!({ "name": "asOf", "valueDate": self.revenue.as_of }),
            json!({ "name": "claims", "valueInteger": self.claims }),
            json!({ "name": "finalClaims", "valueInteger": self.final_claims }),
            json!({ "name": "claimsWithFindings", "valueInteger": self.claims_with_findings }),
            json!({ "name": "findingCount", "valueInteger": self.findings.len() }),
        ];
        for (rule, count) in &self.by_rule {
            parameter.push(json!({ "name": "rule", "part": [
                { "name": "rule", "valueCode": rule },
                { "name": "findings", "valueInteger": count.findings },
                { "name": "claims", "valueInteger": count.claims },
                { "name": "amount", "valueDecimal": cents(count.amount) },
            ]}));
        }
        let revenue = &self.revenue;
        let mut cycle = vec![
            json!({ "name": "billHoldDays", "valueInteger": revenue.bill_hold_days }),
            json!({ "name": "discharged", "valueInteger": revenue.discharged }),
            json!({ "name": "finalBilled", "valueInteger": revenue.final_billed }),
            tally_parts("dnfb", &revenue.dnfb),
            tally_parts("dnfbBeyondHold", &revenue.dnfb_beyond_hold),
            tally_parts("codingBacklog", &revenue.coding_backlog),
            tally_parts("codedNotBilled", &revenue.coded_not_billed),
        ];
        for (class, tally) in &revenue.by_class {
            let mut part = tally_parts("byClass", tally);
            if let Some(parts) = part["part"].as_array_mut() {
                parts.insert(0, json!({ "name": "class", "valueCode": class }));
            }
            cycle.push(part);
        }
        for bracket in &revenue.brackets {
            let mut parts = vec![json!({ "name": "fromDays", "valueInteger": bracket.from_days })];
            if let Some(to) = bracket.to_days {
                parts.push(json!({ "name": "toDays", "valueInteger": to }));
            }
            parts.push(tally_parts("dnfb", &bracket.dnfb));
            parts.push(tally_parts("codingBacklog", &bracket.coding_backlog));
            cycle.push(json!({ "name": "bracket", "part": parts }));
        }
        parameter.push(json!({ "name": "revenueCycle", "part": cycle }));
        for account in revenue.accounts.iter().take(limit) {
            let mut parts = vec![
                json!({ "name": "encounter", "valueReference": { "reference": format!("Encounter/{}", account.encounter) } }),
                json!({ "name": "class", "valueCode": account.class }),
                json!({ "name": "discharged", "valueDateTime": account.discharged }),
                json!({ "name": "ageDays", "valueInteger": account.age_days }),
                json!({ "name": "coded", "valueBoolean": account.coded }),
            ];
            if let Some(patient) = &account.patient {
                parts.push(json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{patient}") } }));
            }
            if let Some(claim) = &account.claim {
                parts.push(
                    json!({ "name": "claim", "valueReference": { "reference": format!("Claim/{claim}") } }),
                );
            }
            if let Some(charges) = account.charges {
                parts.push(json!({ "name": "charges", "valueDecimal": cents(charges) }));
            }
            parameter.push(json!({ "name": "dnfbAccount", "part": parts }));
        }
        for f in self.findings.iter().take(limit) {
            let mut parts = vec![
                json!({ "name": "rule", "valueCode": f.rule }),
                json!({ "name": "severity", "valueCode": f.severity.as_str() }),
                json!({ "name": "claim", "valueReference": { "reference": format!("Claim/{}", f.claim) } }),
                json!({ "name": "message", "valueString": f.message }),
                json!({ "name": "amount", "valueDecimal": cents(f.amount) }),
            ];
            if let Some(encounter) = &f.encounter {
                parts.push(json!({ "name": "encounter", "valueReference": { "reference": format!("Encounter/{encounter}") } }));
            }
            if let Some(patient) = &f.patient {
                parts.push(json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{patient}") } }));
            }
            if let Some(code) = &f.code {
                parts.push(json!({ "name": "code", "valueCode": code }));
            }
            for evidence in &f.evidence {
                parts.push(json!({ "name": "evidence", "valueString": evidence }));
            }
            parameter.push(json!({ "name": "finding", "part": parts }));
        }
        json!({ "resourceType": "Parameters", "parameter": parameter })
    }
}
