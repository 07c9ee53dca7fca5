//! The revenue-cycle figures HIM managers watch, as of the end of a day.
//!
//! - An encounter is **discharged** when it is `finished` and its period ended by then.
//! - It is **final-billed** when a final Claim (`active`, use `claim`) for it was created by
//!   then (`Claim.created` is taken as the day the bill dropped; the status read is today's,
//!   so a draft turned `active` in place counts as billed from its creation). A discharged
//!   encounter that is not is **DNFB** (discharged, not final-billed). Encounters that are
//!   `partOf` another are billed on its account and are not counted.
//! - Its **charges** are those on its draft Claim (the account's charges before the bill
//!   drops); an encounter with no claim at all has no charges on file.
//! - It is **coded** when a Claim for it (draft or final, not cancelled) carries diagnoses:
//!   the coder's work is on the account. DNFB encounters not coded are the **coding backlog**.
//! - **Age**: whole days from the discharge day to the as-of day. Accounts inside the bill
//!   hold (by default 3 days) are normal; DNFB beyond it is what is watched.

use std::collections::HashMap;

use serde::Serialize;

use super::record::{Claim, Record};
use crate::record::date_of_day;

const DAY: i64 = 86_400_000;

/// Age brackets of the DNFB report, in days since discharge (the last one open).
pub const AGE_BRACKETS: &[(i64, i64)] =
    &[(0, 3), (4, 7), (8, 14), (15, 30), (31, 60), (61, 90), (91, i64::MAX)];

/// A count, an amount and an age.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub count: u64,
    /// Charges on file, in the claims' currency.
    pub amount: f64,
    /// Mean days since discharge (0 when empty).
    pub average_age_days: f64,
    pub oldest_age_days: i64,
}

impl Tally {
    fn add(&mut self, account: &Account) {
        self.average_age_days =
            (self.average_age_days * self.count as f64 + account.age_days as f64) / (self.count + 1) as f64;
        self.count += 1;
        self.amount += account.charges.unwrap_or(0.0);
        self.oldest_age_days = self.oldest_age_days.max(account.age_days);
    }
}

/// One encounter discharged and not final-billed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub encounter: String,
    pub patient: Option<String>,
    pub class: String,
    pub discharged: String,
    pub age_days: i64,
    pub coded: bool,
    /// The draft claim holding its charges, if any.
    pub claim: Option<String>,
    pub charges: Option<f64>,
}

/// One age bracket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bracket {
    pub from_days: i64,
    /// `None` for the open last bracket.
    pub to_days: Option<i64>,
    pub dnfb: Tally,
    pub coding_backlog: Tally,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevenueCycle {
    pub as_of: String,
    pub bill_hold_days: i64,
    pub discharged: u64,
    pub final_billed: u64,
    pub dnfb: Tally,
    /// DNFB older than the bill hold.
    pub dnfb_beyond_hold: Tally,
    /// DNFB not yet coded.
    pub coding_backlog: Tally,
    /// DNFB coded, waiting for the bill to drop.
    pub coded_not_billed: Tally,
    /// DNFB by encounter class.
    pub by_class: Vec<(String, Tally)>,
    pub brackets: Vec<Bracket>,
    /// Every DNFB account, oldest first.
    pub accounts: Vec<Account>,
}

pub(crate) fn revenue_cycle(record: &Record, as_of_day: i64, bill_hold_days: i64) -> RevenueCycle {
    let as_of_end = (as_of_day + 1) * DAY - 1;
    let mut by_encounter: HashMap<&str, Vec<&Claim>> = HashMap::new();
    for claim in &record.claims {
        if claim.created.is_some_and(|c| c > as_of_end) {
            continue;
        }
        for id in &claim.encounters {
            by_encounter.entry(id.as_str()).or_default().push(claim);
        }
    }
    let mut cycle = RevenueCycle { as_of: date_of_day(as_of_day), bill_hold_days, ..RevenueCycle::default() };
    for (id, encounter) in &record.encounters {
        let Some((end_text, end)) = &encounter.end else { continue };
        // A part of another encounter is billed on that one's account.
        if encounter.status != "finished" || *end > as_of_end || encounter.part_of {
            continue;
        }
        cycle.discharged += 1;
        let claims = by_encounter.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if claims.iter().any(|c| c.is_final()) {
            cycle.final_billed += 1;
            continue;
        }
        let open: Vec<&&Claim> = claims
            .iter()
            .filter(|c| !matches!(c.status.as_str(), "cancelled" | "entered-in-error"))
            .collect();
        let draft = open.iter().filter(|c| c.status == "draft").max_by_key(|c| c.created.unwrap_or(i64::MIN));
        let coded = open.iter().any(|c| !c.diagnoses.is_empty());
        cycle.accounts.push(Account {
            encounter: id.clone(),
            patient: encounter.patient.clone(),
            class: encounter.class.clone(),
            discharged: end_text.clone(),
            age_days: as_of_day - end.div_euclid(DAY),
            coded,
            claim: draft.map(|c| c.id.clone()),
            charges: draft.map(|c| c.charges()),
        });
    }
    cycle.accounts.sort_by(|a, b| b.age_days.cmp(&a.age_days).then_with(|| a.encounter.cmp(&b.encounter)));
    cycle.brackets = AGE_BRACKETS
        .iter()
        .map(|&(from, to)| Bracket {
            from_days: from,
            to_days: (to != i64::MAX).then_some(to),
            ..Bracket::default()
        })
        .collect();
    let mut by_class: HashMap<String, Tally> = HashMap::new();
    for account in &cycle.accounts {
        cycle.dnfb.add(account);
        if account.age_days > bill_hold_days {
            cycle.dnfb_beyond_hold.add(account);
        }
        if account.coded {
            cycle.coded_not_billed.add(account);
        } else {
            cycle.coding_backlog.add(account);
        }
        by_class.entry(account.class.clone()).or_default().add(account);
        if let Some(bracket) = AGE_BRACKETS
            .iter()
            .position(|&(from, to)| (from..=to).contains(&account.age_days))
            .and_then(|at| cycle.brackets.get_mut(at))
        {
            bracket.dnfb.add(account);
            if !account.coded {
                bracket.coding_backlog.add(account);
            }
        }
    }
    let mut by_class: Vec<(String, Tally)> = by_class.into_iter().collect();
    by_class.sort_by(|a, b| a.0.cmp(&b.0));
    cycle.by_class = by_class;
    cycle
}
