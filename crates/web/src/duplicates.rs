//! The duplicates pages: the review queue of probable duplicate registrations (each pair with
//! its probability and every field's evidence, and the decision forms), the merge preview,
//! and the answer to a merge or an unmerge (with the form that undoes it).

use maud::{Markup, html};
use serde_json::Value;

use crate::views::part;
use crate::{Viewer, csrf_field, page};

/// One field's evidence on a pair: the comparison level and its weight (ln m/u).
pub struct Evidence {
    pub field: String,
    pub level: String,
    pub weight: f64,
}

/// A decision taken on a pair.
pub struct Decided {
    pub verdict: String,
    pub by: String,
    pub at: String,
}

/// A pair of registrations, as `Patient/$duplicates` lists it.
pub struct Pair {
    /// (id, display) of each.
    pub a: (String, String),
    pub b: (String, String),
    pub probability: Option<f64>,
    pub grade: String,
    pub proposed: String,
    pub evidence: Vec<Evidence>,
    pub decision: Option<Decided>,
}

impl Pair {
    /// The pair from one `pair` parameter of `Patient/$duplicates`.
    pub fn from_parameter(parameter: &Value) -> Pair {
        let patient = |name: &str| {
            let reference = &part(parameter, name)["valueReference"];
            (
                reference["reference"].as_str().unwrap_or("").trim_start_matches("Patient/").to_string(),
                reference["display"].as_str().unwrap_or("").to_string(),
            )
        };
        let evidence = parameter["part"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == "evidence")
            .map(|e| Evidence {
                field: part(e, "field")["valueString"].as_str().unwrap_or("").to_string(),
                level: part(e, "level")["valueString"].as_str().unwrap_or("").to_string(),
                weight: part(e, "weight")["valueDecimal"].as_f64().unwrap_or(0.0),
            })
            .collect();
        let decision = part(parameter, "decision");
        Pair {
            a: patient("a"),
            b: patient("b"),
            probability: part(parameter, "probability")["valueDecimal"].as_f64(),
            grade: part(parameter, "grade")["valueCode"].as_str().unwrap_or("").to_string(),
            proposed: part(parameter, "proposed")["valueCode"].as_str().unwrap_or("").to_string(),
            evidence,
            decision: decision.is_object().then(|| Decided {
                verdict: part(decision, "verdict")["valueCode"].as_str().unwrap_or("").to_string(),
                by: part(decision, "by")["valueString"].as_str().unwrap_or("").to_string(),
                at: part(decision, "at")["valueDateTime"].as_str().unwrap_or("").to_string(),
            }),
        }
    }
}

fn patient_link(id: &str, display: &str) -> Markup {
    html! { a href=(format!("/patients/{id}")) { (if display.is_empty() { id } else { display }) } " " span.muted { "Patient/" (id) } }
}

fn evidence_list(evidence: &[Evidence]) -> Markup {
    html! {
        ul.evidence {
            @for e in evidence {
                li {
                    (e.field) ": " (e.level) " "
                    span.muted { "(" (if e.weight >= 0.0 { "+" } else { "" }) (format!("{:.1}", e.weight)) ")" }
                }
            }
        }
    }
}

fn decide_form(viewer: &Viewer, pair: &Pair) -> Markup {
    html! {
        form method="post" action="/duplicates/decide" {
            (csrf_field(viewer.csrf))
            input type="hidden" name="a" value=(pair.a.0);
            input type="hidden" name="b" value=(pair.b.0);
            button type="submit" name="decision" value="same-person" { "Same person" }
            " "
            button.secondary type="submit" name="decision" value="different-people" { "Different people" }
        }
    }
}

/// The review queue. `listed` is `waiting` or `decided`; `stewards` says whether the viewer
/// may decide and merge (the forms are shown only then).
pub fn queue(
    viewer: &Viewer,
    pairs: &[Pair],
    listed: &str,
    stewards: bool,
    message: Option<(bool, &str)>,
) -> String {
    let title = "Duplicate registrations";
    page(
        Some(viewer),
        title,
        html! {
            @if let Some((ok, text)) = message {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            nav aria-label="Which pairs" {
                p {
                    @if listed == "waiting" { strong { "Waiting for a decision" } } @else { a href="/duplicates" { "Waiting for a decision" } }
                    " · "
                    @if listed == "decided" { strong { "Decided" } } @else { a href="/duplicates?status=decided" { "Decided" } }
                }
            }
            p {
                (pairs.len()) " pairs. A pair is proposed for linking at a match probability of 0.99 or more, "
                "and for review from 0.5. Each field's evidence is its weight for (+) or against (−) one person."
            }
            div.table-wrap tabindex="0" { table {
                caption { (if listed == "decided" { "Pairs decided" } else { "Pairs waiting for a decision" }) }
                thead { tr {
                    th scope="col" { "Registration" } th scope="col" { "Possible duplicate" }
                    th scope="col" { "Probability" } th scope="col" { "Evidence" } th scope="col" { "Decision" }
                } }
                tbody { @for pair in pairs { tr {
                    td { (patient_link(&pair.a.0, &pair.a.1)) }
                    td { (patient_link(&pair.b.0, &pair.b.1)) }
                    td {
                        @if let Some(p) = pair.probability { (format!("{p:.4}")) br; span.muted { (pair.grade) ", " (pair.proposed) } }
                        @else { span.muted { "no longer a candidate" } }
                    }
                    td { (evidence_list(&pair.evidence)) }
                    td {
                        @if let Some(decision) = &pair.decision {
                            (decision.verdict.replace('-', " ")) br; span.muted { "by " (decision.by) ", " (decision.at) }
                            @if stewards && decision.verdict == "same-person" && pair.probability.is_some() {
                                br;
                                a href=(format!("/duplicates/merge?source={}&target={}", pair.b.0, pair.a.0)) { "Merge…" }
                            }
                        } @else if stewards {
                            (decide_form(viewer, pair))
                        } @else {
                            span.muted { "waiting" }
                        }
                    }
                } } }
            } }
        },
    )
}

/// One registration, side by side with the other on the merge page.
pub struct Registration<'a> {
    pub id: &'a str,
    pub resource: &'a Value,
}

fn registration(title: &str, r: &Registration) -> Markup {
    let names: Vec<String> = r.resource["name"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let given: Vec<&str> =
                n["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or("")).trim().to_string()
        })
        .collect();
    let identifiers: Vec<String> = r.resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| format!("{} {}", i["value"].as_str().unwrap_or(""), i["system"].as_str().unwrap_or("")))
        .collect();
    let address = r.resource["address"][0].clone();
    html! {
        section.card {
            h2 { (title) }
            dl {
                dt { "Record" } dd { a href=(format!("/patients/{}", r.id)) { "Patient/" (r.id) } }
                dt { "Names" } dd { (names.join("; ")) }
                dt { "Born" } dd { (crate::text(&r.resource["birthDate"])) }
                dt { "Sex" } dd { (crate::text(&r.resource["gender"])) }
                dt { "Address" } dd {
                    (address["line"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                    " " (crate::text(&address["city"])) " " (crate::text(&address["state"])) " " (crate::text(&address["postalCode"]))
                }
                dt { "Identifiers" } dd { (identifiers.join("; ")) }
            }
        }
    }
}

/// The merge preview: both registrations, what would move, and the form that merges (or a
/// link to merge the other way round).
pub fn merge_preview(
    viewer: &Viewer,
    source: &Registration,
    target: &Registration,
    would: &[String],
) -> String {
    page(
        Some(viewer),
        "Merge duplicate registrations",
        html! {
            p { "The source is merged into the target, which survives. Every resource of the source's record moves to the target as a new version; the source is kept, inactive, linked to the target; the merge can be undone." }
            div.cards {
                (registration("Source (merged away)", source))
                (registration("Target (survives)", target))
            }
            h2 { "What would change" }
            ul { @for line in would { li { (line) } } }
            form method="post" action="/duplicates/merge" {
                (csrf_field(viewer.csrf))
                input type="hidden" name="source" value=(source.id);
                input type="hidden" name="target" value=(target.id);
                button type="submit" { "Merge Patient/" (source.id) " into Patient/" (target.id) }
            }
            p {
                a href=(format!("/duplicates/merge?source={}&target={}", target.id, source.id)) { "Keep Patient/" (source.id) " instead" }
                " · " a href="/duplicates?status=decided" { "Back to the decided pairs" }
            }
        },
    )
}

/// The answer to a merge (with the form that undoes it) or to an unmerge.
pub fn changed(viewer: &Viewer, ok: bool, text: &str, undo: Option<&str>, chart: Option<&str>) -> String {
    page(
        Some(viewer),
        if undo.is_some() { "Merged" } else { "Duplicate registrations" },
        html! {
            @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            @if let Some(chart) = chart { p { a href=(format!("/patients/{chart}")) { "Open the chart of Patient/" (chart) } } }
            @if let Some(source) = undo {
                form method="post" action="/duplicates/unmerge" {
                    (csrf_field(viewer.csrf))
                    input type="hidden" name="source" value=(source);
                    button.secondary type="submit" { "Undo this merge" }
                }
            }
            p { a href="/duplicates" { "Back to the duplicates" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Area;

    #[test]
    fn the_queue_escapes_and_offers_decisions_to_stewards_only() {
        let parameter = serde_json::json!({ "name": "pair", "part": [
            { "name": "a", "valueReference": { "reference": "Patient/p1", "display": "<b>Ann</b>" } },
            { "name": "b", "valueReference": { "reference": "Patient/p2", "display": "Ann" } },
            { "name": "probability", "valueDecimal": 0.97 },
            { "name": "grade", "valueCode": "probable" },
            { "name": "proposed", "valueCode": "review" },
            { "name": "evidence", "part": [
                { "name": "field", "valueString": "given" }, { "name": "level", "valueString": "exact" },
                { "name": "weight", "valueDecimal": 3.2 } ] },
        ]});
        let pair = Pair::from_parameter(&parameter);
        let areas = [Area::Home];
        let viewer =
            Viewer { user: "hana", role: "him-technician", areas: &areas, csrf: "t0k", current: Area::Home };
        let html = queue(&viewer, std::slice::from_ref(&pair), "waiting", true, None);
        assert!(html.contains("&lt;b&gt;Ann&lt;/b&gt;") && !html.contains("<b>Ann"));
        assert!(html.contains("value=\"same-person\"") && html.contains("name=\"csrf\" value=\"t0k\""));
        assert!(html.contains("given: exact"));
        let html = queue(&viewer, &[pair], "waiting", false, None);
        assert!(!html.contains("same-person"));
    }
}
