//! General medical vocabulary as query expansion: lay and clinical names of a condition,
//! organs and the Greek or Latin roots built on them, and the meanings of word endings (see
//! the tables in [`lexicon`](super::lexicon)). The classification writes "hemoperitoneum" where a
//! text says "bleeding into the peritoneum", and "zoster" where it says "shingles"; the
//! associations learned from the classification (see [`assoc`](super::assoc)) only know the
//! pairings the classification itself happens to write out.

use std::sync::OnceLock;

use super::index::Index;
use super::lexicon::{COMBINING_FORMS, SUFFIX_MEANINGS, SYNONYMS};
use super::text;

/// Words looked up per root: a common root ("cardi") begins dozens of words, and the rarest
/// of them say least about an organ named in plain words.
const MAX_TERMS_PER_ROOT: usize = 24;

/// A query stem must be this much longer than a root or ending to be read as built on it
/// ("oma" ends "carcinoma", not "coma").
const MIN_STEM_BEYOND: usize = 3;

/// Where an expansion came from; each kind has its own weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A name of the same thing.
    Synonym,
    /// A root or ending read as a plain word, or the reverse.
    Root,
}

struct Tables {
    /// Both directions: the stems a query must contain, and the stems then looked for.
    synonyms: Vec<(Vec<String>, Vec<String>)>,
    /// An organ word's stem and its roots.
    forms: Vec<(String, &'static [&'static str])>,
    /// An ending and the stems of what it means.
    endings: Vec<(&'static str, Vec<String>)>,
}

fn stems(phrase: &str) -> Vec<String> {
    text::analyse(phrase).into_iter().map(|term| term.stem).collect()
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut synonyms = Vec::with_capacity(2 * SYNONYMS.len());
        for (a, b) in SYNONYMS {
            let (a, b) = (stems(a), stems(b));
            if a.is_empty() || b.is_empty() || a == b {
                continue;
            }
            // A clinical word is not looked for as the several everyday words of a lay
            // phrase ("hypertension" as "high blood pressure"): each is common, and where the
            // classification uses the phrase it also uses the word.
            if b.len() <= a.len() + 1 {
                synonyms.push((a.clone(), b.clone()));
            }
            if a.len() <= b.len() + 1 {
                synonyms.push((b, a));
            }
        }
        let forms = COMBINING_FORMS
            .iter()
            .filter_map(|(organ, roots)| stems(organ).pop().map(|organ| (organ, *roots)))
            .collect();
        let endings = SUFFIX_MEANINGS.iter().map(|(ending, meaning)| (*ending, stems(meaning))).collect();
        Tables { synonyms, forms, endings }
    })
}

/// Analyses the tables now rather than on the first query.
pub fn prepare() {
    tables();
}

/// Calls `found(term, position, source)` for every index term the vocabulary offers for the
/// query's stems, `position` being that of the stem it is offered for.
pub fn expand(query: &[String], index: &Index, mut found: impl FnMut(u32, usize, Source)) {
    let tables = tables();
    for (from, to) in &tables.synonyms {
        let positions: Option<Vec<usize>> =
            from.iter().map(|stem| query.iter().position(|q| q == stem)).collect();
        let Some(positions) = positions.filter(|p| !p.is_empty()) else { continue };
        for (i, stem) in to.iter().enumerate() {
            if let Some(id) = index.term_id(stem) {
                found(id, positions[i % positions.len()], Source::Synonym);
            }
        }
    }
    for (position, stem) in query.iter().enumerate() {
        for (organ, roots) in &tables.forms {
            if stem == organ {
                for root in *roots {
                    index.with_prefix(root, MAX_TERMS_PER_ROOT, |id| found(id, position, Source::Root));
                }
            } else if roots
                .iter()
                .any(|root| stem.len() >= root.len() + MIN_STEM_BEYOND && stem.starts_with(root))
                && let Some(id) = index.term_id(organ)
            {
                found(id, position, Source::Root);
            }
        }
        for (ending, meaning) in &tables.endings {
            if stem.len() >= ending.len() + MIN_STEM_BEYOND && stem.ends_with(ending) {
                for word in meaning {
                    if let Some(id) = index.term_id(word) {
                        found(id, position, Source::Root);
                    }
                }
            }
        }
    }
}
