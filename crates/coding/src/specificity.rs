//! Unspecified codes the record could make specific: clinical documentation improvement (CDI)
//! query candidates.
//!
//! An unspecified code ("... of unspecified femur") has specific siblings under the same
//! category ("... of right femur"). What tells them apart is a few words. When every such
//! word of a sibling appears in what the record says about the diagnosis (its text, body
//! site, notes), the record documents more than the code, and a coder should query or recode.

use terminology::icd10cm::{Concept, Kind};

/// A query candidate: the words the record documents and the codes they point to.
#[derive(Debug)]
pub struct Query {
    pub documented_words: Vec<String>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug)]
pub struct Candidate {
    pub code: String,
    pub display: String,
}

/// Words too common in the titles to tell codes apart.
const FILLER: &[&str] = &[
    "of",
    "and",
    "or",
    "the",
    "a",
    "an",
    "in",
    "on",
    "to",
    "for",
    "by",
    "as",
    "at",
    "is",
    "with",
    "other",
    "specified",
    "encounter",
    "initial",
    "subsequent",
];

/// Most candidate codes to name in one edit.
const MOST_CANDIDATES: usize = 3;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_ascii_lowercase();
            // Plurals and singulars document the same thing.
            match w.strip_suffix('s') {
                Some(stem) if stem.len() > 3 && !w.ends_with("ss") && !w.ends_with("is") => stem.to_string(),
                _ => w,
            }
        })
        .filter(|w| !FILLER.contains(&w.as_str()))
        .collect()
}

/// How many axes the title leaves unspecified, by the classification's wording ("unspecified
/// part of neck of unspecified femur": two).
fn unspecified_axes(concept: Concept<'_>) -> usize {
    concept.display().to_ascii_lowercase().matches("unspecified").count()
}

/// The query candidate for `concept` given the record's words, if the record supports a more
/// specific code.
pub fn query_candidate(concept: Concept<'_>, documentation: &[String]) -> Option<Query> {
    let axes = unspecified_axes(concept);
    if axes == 0 || documentation.is_empty() {
        return None;
    }
    let documented: Vec<String> = documentation.iter().flat_map(|t| words(t)).collect();
    if documented.is_empty() {
        return None;
    }
    let own = words(concept.display());
    let category =
        concept.ancestors().chain(std::iter::once(concept)).find(|c| c.kind() == Kind::Category)?;
    let shared_prefix =
        |other: &str| concept.code().chars().zip(other.chars()).take_while(|(a, b)| a == b).count();
    // (documented distinguishing words, closeness in the hierarchy, sibling, its words)
    let mut scored: Vec<((usize, usize), Concept<'_>, Vec<String>)> = Vec::new();
    for sibling in category.descendants() {
        if !sibling.billable() || sibling.code() == concept.code() || unspecified_axes(sibling) >= axes {
            continue;
        }
        // A seventh character (encounter, healing) is not what documentation improves; compare
        // like with like.
        if sibling.seventh_character() != concept.seventh_character() {
            continue;
        }
        let distinguishing: Vec<String> =
            words(sibling.display()).into_iter().filter(|w| !own.contains(w)).collect();
        if distinguishing.is_empty() || !distinguishing.iter().all(|w| documented.contains(w)) {
            continue;
        }
        scored.push(((distinguishing.len(), shared_prefix(sibling.code())), sibling, distinguishing));
    }
    // The sibling that uses the most of the record's words is the best fit; among equals,
    // the nearest in the hierarchy ("right femur" under the same subcategory before "other
    // fracture of right femur" elsewhere in the category).
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.index().cmp(&b.1.index())));
    let best = scored.first()?.0;
    let mut documented_words: Vec<String> = Vec::new();
    let candidates = scored
        .into_iter()
        .filter(|(n, _, _)| *n == best)
        .take(MOST_CANDIDATES)
        .map(|(_, sibling, distinguishing)| {
            for w in distinguishing {
                if !documented_words.contains(&w) {
                    documented_words.push(w);
                }
            }
            Candidate { code: sibling.code().to_string(), display: sibling.display().to_string() }
        })
        .collect();
    Some(Query { documented_words, candidates })
}
