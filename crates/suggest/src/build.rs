//! Turning the classification into documents: one per billable code, its fields gathered
//! from the code, its ancestors and the notes elsewhere that point at it.

use std::borrow::Cow;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use super::assoc::{AssociationLearner, Associations};
use super::index::{FIELDS, Index, IndexBuilder};
use super::{BuildOptions, Doc, Fit, OPTIONAL_TERM, Phrases, Ranking, Suggester, stem, text};
use terminology::icd10cm::{Concept, Icd10Cm, Kind, NoteKind, parse_references};

/// Field numbers.
pub const DESCRIPTION: usize = 0;
pub const OWN_TERMS: usize = 1;
pub const INHERITED_TERMS: usize = 2;
pub const ANCESTOR_DESCRIPTIONS: usize = 3;
pub const INCLUDES: usize = 4;
pub const CROSS_REFERENCES: usize = 5;
/// A seventh-character code's character definition ("initial encounter for closed fracture").
pub const EXTENSION: usize = 6;
/// Inclusion terms of parallel codes, reworded for this one (see [`attach_analogues`]).
pub const ANALOGUES: usize = 7;

/// A note elsewhere naming a span of codes larger than this (in codes, counting a family of
/// seventh-character codes once) says little about any one of them and is not indexed.
const MAX_CROSS_REFERENCE_CODES: usize = 40;

/// A concept's texts as term ids.
#[derive(Default)]
struct Texts {
    description: Vec<u32>,
    inclusions: Vec<Vec<u32>>,
    /// The bracketed (nonessential) terms of the description, then of each inclusion term.
    optional: Vec<Vec<u32>>,
    includes: Vec<u32>,
    /// Phrases of notes elsewhere that refer to this concept.
    cross_references: Vec<Vec<u32>>,
    /// For a seventh-character code: its character's definition and inclusion terms (its
    /// description is then its six-character code's).
    extension: Vec<u32>,
    /// Inclusion terms of parallel codes, reworded for this one.
    analogues: Vec<Vec<u32>>,
    /// The description's terms denied by "without", "no" or "not".
    denied: Vec<u32>,
}

/// Texts identical (as bags of terms) to held-out inclusion terms, and where those terms
/// were listed: a copy within the same line of descent is left out as well.
struct HeldOut {
    targets: FxHashMap<Vec<u32>, Vec<usize>>,
    /// One past the last descendant of each concept, by position.
    ends: Vec<usize>,
    copies: usize,
}

impl HeldOut {
    fn new(icd: &Icd10Cm, options: &BuildOptions, ends: Vec<usize>, builder: &mut IndexBuilder) -> HeldOut {
        let mut targets: FxHashMap<Vec<u32>, Vec<usize>> = FxHashMap::default();
        for &(concept, position) in &options.held_out {
            let Some(note) = icd.concept(concept).and_then(|c| c.own_notes().get(position)) else { continue };
            targets.entry(bag(&term_ids(&note.text, builder))).or_default().push(concept);
        }
        HeldOut { targets, ends, copies: 0 }
    }

    /// Whether a text with these terms, indexed for `concept`, copies a held-out term listed
    /// in the same line of descent.
    fn is_copy(&mut self, terms: &[u32], concept: usize) -> bool {
        if self.targets.is_empty() {
            return false;
        }
        let Some(targets) = self.targets.get(&bag(terms)) else { return false };
        let related = |a: usize, b: usize| a <= b && b < self.ends[a];
        let copy = targets.iter().any(|&target| related(target, concept) || related(concept, target));
        self.copies += usize::from(copy);
        copy
    }
}

fn bag(terms: &[u32]) -> Vec<u32> {
    let mut bag = terms.to_vec();
    bag.sort_unstable();
    bag.dedup();
    bag
}

fn term_ids(text: &str, builder: &mut IndexBuilder) -> Vec<u32> {
    text::analyse(&without_code_references(text)).iter().map(|term| builder.term_id(&term.stem)).collect()
}

/// A phrase's term ids, those of them only found in brackets, and those it denies.
struct AnalysedPhrase {
    terms: Vec<u32>,
    optional: Vec<u32>,
    denied: Vec<u32>,
}

/// The words that open a denial, as stems.
const DENIAL: &[&str] = &["not", "without", "no"];

fn analyse_phrase(text: &str, builder: &mut IndexBuilder) -> AnalysedPhrase {
    let text = without_code_references(text);
    let terms = text::analyse(&text);
    let denied = text::denied(&text, &terms);
    let bracketed = text::bracketed(&text, &terms);
    let ids: Vec<u32> = terms.iter().map(|term| builder.term_id(&term.stem)).collect();
    // What a phrase denies ("not intractable, without status migrainosus") is the default
    // case: a text that does not mention it still names the phrase's condition.
    let default_case = text::denied_with_lists(&text, &terms);
    let unspecified = text::left_unspecified(&text, &terms);
    let essential: FxHashSet<u32> = ids
        .iter()
        .zip(terms.iter().zip(&bracketed).zip(default_case.iter().zip(&unspecified)))
        .filter(|(_, ((term, bracketed), (denied, unspecified)))| {
            !**bracketed && !**denied && !**unspecified && !DENIAL.contains(&term.stem.as_str())
        })
        .map(|(&id, _)| id)
        .collect();
    let optional = bag(&ids.iter().copied().filter(|id| !essential.contains(id)).collect::<Vec<_>>());
    let denied = ids.iter().zip(&denied).filter(|(_, denied)| **denied).map(|(&id, _)| id).collect();
    AnalysedPhrase { terms: ids, optional, denied }
}

pub fn build(icd: &Icd10Cm, options: &BuildOptions) -> Suggester {
    let started = Instant::now();
    let mut builder = IndexBuilder::default();
    let ends = subtree_ends(icd);
    let mut held_out = HeldOut::new(icd, options, ends, &mut builder);
    let mut texts = analyse_concepts(icd, options, &mut builder, &mut held_out);
    attach_cross_references(icd, &mut texts, &mut builder, &mut held_out);
    let residual_terms: FxHashSet<u32> = RESIDUAL_WORDS
        .iter()
        .flat_map(|word| text::analyse(word))
        .filter_map(|term| builder.existing_term(&term.stem))
        .collect();
    let associations = learn_associations(icd, &texts, &residual_terms);
    attach_analogues(icd, &mut texts, &mut held_out);

    let mut docs = Vec::with_capacity(icd.billable_count());
    let mut families = Vec::with_capacity(icd.billable_count());
    let mut phrase_terms: Vec<u32> = Vec::new();
    let mut phrase_bounds: Vec<u32> = vec![0];
    let mut denied_terms: Vec<u32> = Vec::new();
    let mut family_phrases: FxHashMap<usize, Phrases> = FxHashMap::default();
    let mut fields: [Vec<u32>; FIELDS] = Default::default();
    let mut family_start: FxHashMap<usize, u32> = FxHashMap::default();
    for concept in icd.concepts().filter(Concept::billable) {
        // A seventh-character code is its six-character code plus the character.
        let base = match concept.seventh_character() {
            Some(_) => concept.parent().unwrap_or(concept),
            None => concept,
        };
        for field in &mut fields {
            field.clear();
        }
        let own = &texts[concept.index()];
        fields[DESCRIPTION].extend_from_slice(&own.description);
        for term in &own.inclusions {
            fields[OWN_TERMS].extend_from_slice(term);
        }
        fields[INCLUDES].extend_from_slice(&own.includes);
        fields[CROSS_REFERENCES].extend(own.cross_references.iter().flatten());
        if base.index() != concept.index() {
            let base_texts = &texts[base.index()];
            for term in &base_texts.inclusions {
                fields[OWN_TERMS].extend_from_slice(term);
            }
            fields[INCLUDES].extend_from_slice(&base_texts.includes);
            fields[CROSS_REFERENCES].extend(base_texts.cross_references.iter().flatten());
        }
        fields[ANALOGUES].extend(texts[base.index()].analogues.iter().flatten());
        for ancestor in base.ancestors() {
            let ancestor_texts = &texts[ancestor.index()];
            for term in &ancestor_texts.inclusions {
                fields[INHERITED_TERMS].extend_from_slice(term);
            }
            fields[ANALOGUES].extend(ancestor_texts.analogues.iter().flatten());
            if ancestor.kind() != Kind::Chapter {
                fields[ANCESTOR_DESCRIPTIONS].extend_from_slice(&ancestor_texts.description);
            }
            fields[INCLUDES].extend_from_slice(&ancestor_texts.includes);
        }
        fields[EXTENSION].extend_from_slice(&own.extension);
        let doc = builder.add(&fields);
        let family = *family_start.entry(base.index()).or_insert(doc);
        families.push(family);
        let phrases = *family_phrases.entry(base.index()).or_insert_with(|| {
            let first = phrase_bounds.len() as u32 - 1;
            let base_texts = &texts[base.index()];
            let phrases = std::iter::once(&base_texts.description).chain(&base_texts.inclusions);
            for (phrase, optional) in phrases.zip(&base_texts.optional) {
                phrase_terms.extend(
                    bag(phrase)
                        .into_iter()
                        .map(|term| if optional.contains(&term) { term | OPTIONAL_TERM } else { term }),
                );
                phrase_bounds.push(phrase_terms.len() as u32);
            }
            let analogues = phrase_bounds.len() as u32 - 1;
            for phrase in &base_texts.analogues {
                phrase_terms.extend_from_slice(&bag(phrase));
                phrase_bounds.push(phrase_terms.len() as u32);
            }
            let inherited = phrase_bounds.len() as u32 - 1;
            for ancestor in base.ancestors().filter(|a| a.kind().is_code()) {
                let ancestor_texts = &texts[ancestor.index()];
                for (phrase, optional) in ancestor_texts.inclusions.iter().zip(&ancestor_texts.optional[1..])
                {
                    phrase_terms.extend(
                        bag(phrase)
                            .into_iter()
                            .map(|term| if optional.contains(&term) { term | OPTIONAL_TERM } else { term }),
                    );
                    phrase_bounds.push(phrase_terms.len() as u32);
                }
            }
            let denied_start = denied_terms.len() as u32;
            denied_terms.extend_from_slice(&bag(&base_texts.denied));
            // A residual category's title opens with "Other" ("Other chest pain"); "Influenza
            // due to other identified influenza virus" is not one.
            let other = base
                .display()
                .split(|c: char| !c.is_ascii_alphabetic())
                .find(|w| !w.is_empty())
                .is_some_and(|w| w.eq_ignore_ascii_case("other"));
            Phrases {
                first,
                analogues,
                inherited,
                end: phrase_bounds.len() as u32 - 1,
                denied: (denied_start, denied_terms.len() as u32),
                other,
            }
        });
        let fit = Fit::of(concept.code(), base.display());
        docs.push(Doc {
            code: concept.code().into(),
            display: concept.display().into(),
            family,
            phrases,
            fit,
        });
    }
    let mut codes: Vec<(Box<str>, u32)> = docs
        .iter()
        .enumerate()
        .map(|(doc, d)| (d.code.chars().filter(|&c| c != '.').collect::<String>().into(), doc as u32))
        .collect();
    codes.sort_unstable();
    let index = builder.finish(options.ranking.bm25f(), &families);
    super::vocabulary::prepare();
    let term_weights = term_weights(&index, &residual_terms, &options.ranking);
    Suggester {
        index,
        docs,
        ranking: options.ranking.clone(),
        build_time: started.elapsed(),
        phrase_terms,
        phrase_bounds,
        denied_terms,
        term_weights,
        residual_terms,
        associations,
        codes,
        held_out_copies: held_out.copies,
    }
}

/// Learns word associations from each code's title paired with its inclusion terms, with
/// the phrases elsewhere that refer to it and with its parent's title, and from its inclusion
/// terms paired with each other.
fn learn_associations(icd: &Icd10Cm, all: &[Texts], residual: &FxHashSet<u32>) -> Associations {
    let mut learner = AssociationLearner::new(residual.clone());
    for concept in icd.concepts().filter(|c| c.seventh_character().is_none()) {
        let texts = &all[concept.index()];
        learner.count_phrase(&texts.description);
        for phrase in texts.inclusions.iter().chain(&texts.cross_references) {
            learner.count_phrase(phrase);
            learner.pair(&texts.description, phrase);
        }
        for (i, a) in texts.inclusions.iter().enumerate() {
            for b in &texts.inclusions[i + 1..] {
                learner.pair(a, b);
            }
        }
        if let Some(parent) = concept.parent().filter(|p| p.kind() != Kind::Chapter) {
            learner.pair(&texts.description, &all[parent.index()].description);
        }
    }
    learner.finish()
}

/// Words of residual categories and of the default case, and words implied by others
/// ("diabetes" is "diabetes mellitus" unless it says otherwise): a text that leaves them out
/// may still mean the code that has them.
const RESIDUAL_WORDS: &[&str] = &[
    "other",
    "unspecified",
    "specified",
    "site",
    "sites",
    "part",
    "elsewhere",
    "classified",
    "without",
    "complication",
    "complications",
    "mellitus",
    "with",
    // The patient's sex, which the record gives (see `Demographics`) and a text seldom says:
    // "breast cancer" names "... of female breast" as much as "... of breast".
    "female",
    "male",
];

/// Per term id, its weight in phrase similarity: its idf, less for residual words.
pub fn term_weights(index: &Index, residual: &FxHashSet<u32>, ranking: &Ranking) -> Vec<f32> {
    (0..index.term_count() as u32)
        .map(|term| {
            let idf = index.idf(term);
            if residual.contains(&term) { idf * ranking.residual_word_weight } else { idf }
        })
        .collect()
}

/// For each concept position, one past the position of its last descendant.
fn subtree_ends(icd: &Icd10Cm) -> Vec<usize> {
    let mut ends: Vec<usize> = (1..=icd.len()).collect();
    let parents: Vec<Option<usize>> = icd.concepts().map(|c| c.parent().map(|p| p.index())).collect();
    for position in (0..parents.len()).rev() {
        if let Some(parent) = parents[position] {
            ends[parent] = ends[parent].max(ends[position]);
        }
    }
    ends
}

/// Analyses every concept's description and notes once; documents then share them.
fn analyse_concepts(
    icd: &Icd10Cm,
    options: &BuildOptions,
    builder: &mut IndexBuilder,
    held_out: &mut HeldOut,
) -> Vec<Texts> {
    let mut all: Vec<Texts> = Vec::with_capacity(icd.len());
    // The ~20 seventh-character definitions (with their inclusion terms) recur across the
    // 40,000 codes generated from them.
    let mut extensions: FxHashMap<(&str, usize), Vec<u32>> = FxHashMap::default();
    for concept in icd.concepts() {
        let mut texts = Texts::default();
        let display = concept.display();
        let parent = concept.parent();
        let definition = parent.and_then(|parent| display.strip_prefix(parent.display()));
        if let (Some(_), Some(parent), Some(definition)) = (concept.seventh_character(), parent, definition) {
            // A seventh-character code is described as its six-character code, analysed just
            // before it.
            let base = &all[parent.index()];
            texts.description.clone_from(&base.description);
            texts.denied.clone_from(&base.denied);
            texts.optional.push(base.optional.first().cloned().unwrap_or_default());
            let notes = concept.own_notes();
            texts.extension = extensions
                .entry((definition, notes.as_ptr() as usize))
                .or_insert_with(|| {
                    let mut extension = term_ids(definition, builder);
                    for note in notes.iter().filter(|note| note.kind == NoteKind::InclusionTerm) {
                        extension.extend(term_ids(&note.text, builder));
                    }
                    // "With routine healing" must not make a text's "with" ("fall with a
                    // fracture") speak for the subsequent encounter.
                    if let Some(with) = builder.existing_term("with") {
                        extension.retain(|&term| term != with);
                    }
                    // Words repeated by the character's inclusion terms ("initial encounter for
                    // open fracture NOS") should not outweigh another character's definition.
                    bag(&extension)
                })
                .clone();
            all.push(texts);
            continue;
        }
        let phrase = analyse_phrase(display, builder);
        (texts.description, texts.denied) = (phrase.terms, phrase.denied);
        texts.optional.push(phrase.optional);
        for (position, note) in concept.own_notes().iter().enumerate() {
            match note.kind {
                // Under a category or code, an "includes" note names what the code covers just
                // as an inclusion term does ("high blood pressure" under I10).
                NoteKind::InclusionTerm | NoteKind::Includes if concept.kind().is_code() => {
                    if options.held_out.contains(&(concept.index(), position)) {
                        continue;
                    }
                    let phrase = analyse_phrase(&note.text, builder);
                    if held_out.is_copy(&phrase.terms, concept.index()) {
                        continue;
                    }
                    texts.inclusions.push(phrase.terms);
                    texts.optional.push(phrase.optional);
                }
                NoteKind::Includes => {
                    let terms = term_ids(&note.text, builder);
                    if !held_out.is_copy(&terms, concept.index()) {
                        texts.includes.extend(terms);
                    }
                }
                _ => {}
            }
        }
        all.push(texts);
    }
    all
}

/// Parallel codes whose titles differ by more words than this on either side are not
/// analogues.
const MAX_ANALOGUE_DIFFERENCE: usize = 2;

/// Analogues kept per code.
const MAX_ANALOGUES: usize = 40;

/// Rewords inclusion terms for parallel codes. Codes of one category often differ by a word
/// or two in their titles ("Pressure ulcer of left elbow, stage 4" and "... of left hip,
/// stage 4"), and an inclusion term of one that contains those words ("Pressure ulcer with
/// necrosis of soft tissues through to underlying muscle, tendon, or bone, left elbow")
/// describes the other once they are swapped ("..., left hip"). Inclusion terms are often
/// listed under only some of a family of parallel codes.
fn attach_analogues(icd: &Icd10Cm, texts: &mut [Texts], held_out: &mut HeldOut) {
    let bags: Vec<Vec<u32>> = texts.iter().map(|t| bag(&t.description)).collect();
    for category in icd.concepts().filter(|c| c.kind() == Kind::Category) {
        let members: Vec<usize> = (category.index()..held_out.ends[category.index()])
            .filter(|&position| icd.concept(position).is_some_and(|c| c.seventh_character().is_none()))
            .collect();
        let mut found: Vec<(usize, Vec<u32>)> = Vec::new();
        for &source in &members {
            if texts[source].inclusions.is_empty() {
                continue;
            }
            for &target in &members {
                if target == source {
                    continue;
                }
                let Some((removed, added)) = substitution(&bags[source], &bags[target]) else { continue };
                for inclusion in &texts[source].inclusions {
                    if !removed.iter().all(|term| inclusion.contains(term)) {
                        continue;
                    }
                    let mut analogue: Vec<u32> =
                        inclusion.iter().copied().filter(|term| !removed.contains(term)).collect();
                    analogue.extend_from_slice(&added);
                    found.push((target, analogue));
                }
            }
        }
        for (target, analogue) in found {
            if texts[target].analogues.len() < MAX_ANALOGUES && !held_out.is_copy(&analogue, target) {
                texts[target].analogues.push(analogue);
            }
        }
    }
}

/// The words only in `from` and only in `to` (both sorted and distinct), when `from` has one
/// or two of its own and `to` at most two.
fn substitution(from: &[u32], to: &[u32]) -> Option<(Vec<u32>, Vec<u32>)> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        match (from.get(i), to.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
        if removed.len() > MAX_ANALOGUE_DIFFERENCE || added.len() > MAX_ANALOGUE_DIFFERENCE {
            return None;
        }
    }
    (!removed.is_empty()).then_some((removed, added))
}

/// Words that introduce a reference rather than describe the condition referred to.
const REFERENCE_WORDING: &[&str] = &["code", "codes", "identify", "use", "additional", "first", "also"];

/// Adds the phrases of notes that refer to codes ("tuberculous enteritis (A18.32)" under
/// K52's excludes) to the codes referred to: the classification's own synonyms, written
/// where a coder might look for the condition in the wrong place.
fn attach_cross_references(
    icd: &Icd10Cm,
    texts: &mut [Texts],
    builder: &mut IndexBuilder,
    held_out: &mut HeldOut,
) {
    let wording: FxHashSet<String> = REFERENCE_WORDING.iter().map(|w| stem::stem(w)).collect();
    for concept in icd.concepts().filter(|c| c.seventh_character().is_none()) {
        for note in concept.own_notes() {
            if note.kind == NoteKind::InclusionTerm || note.references().is_empty() {
                continue;
            }
            for (phrase, group) in referring_phrases(&note.text) {
                let terms: Vec<u32> = text::analyse(phrase)
                    .iter()
                    .filter(|term| !wording.contains(&term.stem))
                    .map(|term| builder.term_id(&term.stem))
                    .collect();
                if terms.is_empty() {
                    continue;
                }
                for range in parse_references(group) {
                    let Some(first) = icd.lookup(range.first()) else { continue };
                    let Some(last) = icd.lookup(range.last()) else { continue };
                    let (start, end) = (first.index(), held_out.ends[last.index()]);
                    if start >= end {
                        continue;
                    }
                    let targets: Vec<usize> = (start..end)
                        .filter_map(|position| icd.concept(position))
                        .filter(|c| c.billable() && c.seventh_character().is_none() || first_generated(c))
                        .map(|c| if c.seventh_character().is_some() { c.parent().unwrap_or(c) } else { c })
                        .map(|c| c.index())
                        .take(MAX_CROSS_REFERENCE_CODES + 1)
                        .collect();
                    if targets.len() > MAX_CROSS_REFERENCE_CODES {
                        continue;
                    }
                    for target in targets {
                        if !held_out.is_copy(&terms, target) {
                            texts[target].cross_references.push(terms.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Whether a concept is the first seventh-character code of its family.
fn first_generated(concept: &Concept<'_>) -> bool {
    concept.seventh_character().is_some()
        && concept.parent().is_some_and(|parent| parent.index() + 1 == concept.index())
}

/// The phrases of a note and the parenthesised reference group each leads to: "X (A01), Y
/// (B02-B03)" gives ("X", "(A01)") and (", Y", "(B02-B03)"). Groups that are words, such as
/// "(acute)", stay part of the phrase.
fn referring_phrases(text: &str) -> Vec<(&str, &str)> {
    let mut phrases = Vec::new();
    let mut phrase_start = 0;
    let mut from = 0;
    while let Some(open) = text[from..].find('(').map(|o| from + o) {
        let Some(close) = text[open..].find(')').map(|c| open + c) else { break };
        let group = &text[open..=close];
        if !parse_references(group).is_empty() {
            phrases.push((&text[phrase_start..open], group));
            phrase_start = close + 1;
        }
        from = close + 1;
    }
    phrases
}

/// The text without parenthesised code references such as "(A00-B99)" or "(E11.-)", which
/// name codes rather than describe the condition.
fn without_code_references(text: &str) -> Cow<'_, str> {
    if !text.contains('(') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(')') else {
            out.push_str(&rest[open..]);
            return Cow::Owned(out);
        };
        let group = after[..close].trim();
        let bytes = group.as_bytes();
        let is_code = bytes.len() >= 3
            && bytes[0].is_ascii_uppercase()
            && bytes[1].is_ascii_digit()
            && (bytes[2].is_ascii_digit() || bytes[2].is_ascii_uppercase())
            && bytes.get(3).is_none_or(|b| matches!(b, b'.' | b'-' | b',' | b' '));
        if !is_code {
            out.push('(');
            out.push_str(&after[..close]);
            out.push(')');
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_references_are_not_text() {
        assert_eq!(
            without_code_references("Intestinal infectious diseases (A00-A09)"),
            "Intestinal infectious diseases "
        );
        assert_eq!(without_code_references("diabetes (E11.-) (with) x"), "diabetes  (with) x");
        assert_eq!(without_code_references("deficiency (G6PD)"), "deficiency (G6PD)");
    }

    #[test]
    fn phrases_lead_to_their_references() {
        assert_eq!(
            referring_phrases("tuberculous enteritis (A18.32)"),
            [("tuberculous enteritis ", "(A18.32)")]
        );
        assert_eq!(
            referring_phrases("gingivitis (acute) (K05.0), periodontitis (K05.2-K05.3)"),
            [("gingivitis (acute) ", "(K05.0)"), (", periodontitis ", "(K05.2-K05.3)")]
        );
        assert!(referring_phrases("see body system-related chapters").is_empty());
    }
}
