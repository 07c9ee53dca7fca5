//! The billing audit (`$billing-audit`): the revenue-cycle figures (discharged not
//! final-billed, the coding backlog, by age and by class), the findings by rule, and the
//! findings and unbilled accounts themselves; read back from the audit's Parameters, so the
//! workbench page and the command line's HTML are one body.

use maud::{Markup, html};
use serde_json::Value;

use crate::views::part;
use crate::{Viewer, page, text};

fn integer(value: &Value) -> String {
    text(&value["valueInteger"])
}

fn money(value: &Value) -> String {
    value["valueDecimal"].as_f64().map(|v| format!("{v:.2}")).unwrap_or_default()
}

fn reference(value: &Value) -> String {
    value["valueReference"]["reference"].as_str().unwrap_or("").to_string()
}

/// The record page of a reference (`Claim/k1` → `/records/Claim/k1`).
fn record_link(reference: &str) -> Markup {
    html! { @if reference.is_empty() { "" } @else { a href=(format!("/records/{reference}")) { (reference) } } }
}

fn tally_row(label: &str, tally: &Value) -> Markup {
    html! { tr {
        th scope="row" { (label) }
        td { (integer(part(tally, "count"))) }
        td { (money(part(tally, "amount"))) }
        td { (text(&part(tally, "averageAgeDays")["valueDecimal"])) }
        td { (integer(part(tally, "oldestAgeDays"))) }
    } }
}

fn tally_head(first: &str) -> Markup {
    html! { thead { tr {
        th scope="col" { (first) } th scope="col" { "Accounts" } th scope="col" { "Charges on file" }
        th scope="col" { "Mean age (days)" } th scope="col" { "Oldest (days)" }
    } } }
}

/// The audit's body.
pub fn body(audit: &Value) -> Markup {
    let parameters = audit["parameter"].as_array().cloned().unwrap_or_default();
    let named = |name: &str| -> Vec<&Value> { parameters.iter().filter(|p| p["name"] == name).collect() };
    let single = |name: &str| parameters.iter().find(|p| p["name"] == name).cloned().unwrap_or_default();
    let cycle = single("revenueCycle");
    let cycle_parts: Vec<Value> = cycle["part"].as_array().cloned().unwrap_or_default();
    let cycle_named =
        |name: &str| -> Vec<&Value> { cycle_parts.iter().filter(|p| p["name"] == name).collect() };
    let hold = integer(part(&cycle, "billHoldDays"));
    html! {
        p {
            "As of the end of " (text(&single("asOf")["valueDate"])) ": "
            (integer(&single("finalClaims"))) " final bills of " (integer(&single("claims"))) " claims; "
            (integer(&single("claimsWithFindings"))) " with findings; "
            (integer(part(&cycle, "discharged"))) " encounters discharged, "
            (integer(part(&cycle, "finalBilled"))) " of them final-billed."
        }
        h2 { "Discharged, not final-billed" }
        p { "An account is final-billed once a final claim for it was created; it is coded once a claim for it (the draft holding its charges, or a final one) carries the coder's diagnoses. Charges on file are those of the draft claim." }
        div.table-wrap tabindex="0" { table {
            caption { "Unbilled accounts; the bill hold is " (hold) " days" }
            (tally_head("Accounts"))
            tbody {
                (tally_row("Discharged, not final-billed (DNFB)", part(&cycle, "dnfb")))
                (tally_row(&format!("DNFB beyond the {hold}-day hold"), part(&cycle, "dnfbBeyondHold")))
                (tally_row("Not yet coded (coding backlog)", part(&cycle, "codingBacklog")))
                (tally_row("Coded, bill not dropped", part(&cycle, "codedNotBilled")))
            }
        } }
        div.table-wrap tabindex="0" { table {
            caption { "By days since discharge" }
            thead { tr {
                th scope="col" { "Days" } th scope="col" { "DNFB accounts" } th scope="col" { "DNFB charges" }
                th scope="col" { "Not yet coded" } th scope="col" { "Not coded, charges" }
            } }
            tbody { @for bracket in cycle_named("bracket") {
                @let from = integer(part(bracket, "fromDays"));
                @let to = part(bracket, "toDays");
                tr {
                    th scope="row" { (from) @if to.is_null() { " and more" } @else { "–" (integer(to)) } }
                    td { (integer(part(part(bracket, "dnfb"), "count"))) }
                    td { (money(part(part(bracket, "dnfb"), "amount"))) }
                    td { (integer(part(part(bracket, "codingBacklog"), "count"))) }
                    td { (money(part(part(bracket, "codingBacklog"), "amount"))) }
                }
            } }
        } }
        @let classes = cycle_named("byClass");
        @if !classes.is_empty() {
            div.table-wrap tabindex="0" { table {
                caption { "DNFB by encounter class" }
                (tally_head("Class"))
                tbody { @for class in classes { (tally_row(&text(&part(class, "class")["valueCode"]), class)) } }
            } }
        }
        h2 { "Findings by rule" }
        @let rules = named("rule");
        @if rules.is_empty() { p { "No bill disagrees with the record." } } @else {
            div.table-wrap tabindex="0" { table {
                caption { "Final bills checked against the record, and the coding edits" }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Findings" } th scope="col" { "Bills" } th scope="col" { "Charges on those bills" } } }
                tbody { @for rule in rules { tr {
                    th scope="row" { code { (text(&part(rule, "rule")["valueCode"])) } }
                    td { (integer(part(rule, "findings"))) }
                    td { (integer(part(rule, "claims"))) }
                    td { (money(part(rule, "amount"))) }
                } } }
            } }
        }
        @let findings = named("finding");
        @if !findings.is_empty() {
            h2 { "Findings" }
            div.table-wrap tabindex="0" { table {
                caption { "Errors first; " (findings.len()) " of " (integer(&single("findingCount"))) " shown" }
                thead { tr {
                    th scope="col" { "Rule" } th scope="col" { "Claim" } th scope="col" { "Encounter" }
                    th scope="col" { "Code" } th scope="col" { "What is wrong" } th scope="col" { "Evidence" }
                } }
                tbody { @for finding in findings {
                    @let evidence: Vec<String> = finding["part"].as_array().into_iter().flatten()
                        .filter(|p| p["name"] == "evidence").map(|p| text(&p["valueString"])).collect();
                    tr {
                        td { code { (text(&part(finding, "rule")["valueCode"])) } " (" (text(&part(finding, "severity")["valueCode"])) ")" }
                        td { (record_link(&reference(part(finding, "claim")))) }
                        td { (record_link(&reference(part(finding, "encounter")))) }
                        td { (text(&part(finding, "code")["valueCode"])) }
                        td { (text(&part(finding, "message")["valueString"])) }
                        td { (evidence.join("; ")) }
                    }
                } }
            } }
        }
        @let accounts = named("dnfbAccount");
        @if !accounts.is_empty() {
            h2 { "Unbilled accounts, oldest first" }
            div.table-wrap tabindex="0" { table {
                caption { (accounts.len()) " of " (integer(part(part(&cycle, "dnfb"), "count"))) " shown" }
                thead { tr {
                    th scope="col" { "Encounter" } th scope="col" { "Class" } th scope="col" { "Discharged" }
                    th scope="col" { "Days" } th scope="col" { "Coded" } th scope="col" { "Charges" }
                } }
                tbody { @for account in accounts { tr {
                    td { (record_link(&reference(part(account, "encounter")))) }
                    td { (text(&part(account, "class")["valueCode"])) }
                    td { (text(&part(account, "discharged")["valueDateTime"])) }
                    td { (integer(part(account, "ageDays"))) }
                    td { @if part(account, "coded")["valueBoolean"] == true { "yes" } @else { "no" } }
                    td { (money(part(account, "charges"))) }
                } } }
            } }
        }
    }
}

/// The workbench's page: the as-of form and the audit.
pub fn billing_page(
    viewer: &Viewer,
    form: (&str, &str),
    audit: Option<&Value>,
    error: Option<&str>,
) -> String {
    let (as_of, hold) = form;
    page(
        Some(viewer),
        "Accurate bills",
        html! {
            form.inline method="get" action="/coding/billing" {
                label { "As of" input type="date" name="asOf" value=(as_of); }
                label { "Bill hold (days)" input type="number" name="billHold" min="0" max="365" value=(hold); }
                button type="submit" { "Audit" }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(audit) = audit { (body(audit)) }
        },
    )
}
