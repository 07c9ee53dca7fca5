//! Ranked ICD-10-CM code suggestion from free text: a diagnosis phrase ("fx neck of right
//! femur") or a whole clinical note.
//!
//! Every billable code is a document of a BM25F index (see [`build`]) whose fields are, from
//! most to least telling: the code's description; its inclusion terms (and "includes" notes);
//! those of its ancestors; its ancestors' descriptions; block- and chapter-level "includes"
//! notes; phrases of notes elsewhere that refer to it ("tuberculous enteritis (A18.32)"); the
//! seventh character's definition; inclusion terms of parallel codes reworded for it. Text on
//! both sides goes through the same normalisation (see [`text`]): folding, clinical shorthand
//! ("htn", "t2dm", "fx", "rt"), words that carry no meaning for coding, Porter stemming.
//!
//! A query is expanded with word associations learned from the classification itself (see
//! [`assoc`]: "ringworm" stands for "tinea"), with prefix variants ("tuberculous",
//! "tuberculosis"), with general medical vocabulary the classification does not spell out (see
//! [`vocabulary`]: "shingles" is "zoster", "nephrosclerosis" is about the kidney) and, for a
//! word no code uses, with words spelt alike or built on the same beginning or ending
//! ("pnuemonia", "chylopericardium"). The best BM25F candidates are then compared phrase by
//! phrase (see [`Ranking`]): a code one of whose phrases says what the text says, and not much
//! more, wins over one that merely shares many words across its fields.
//!
//! Results list billable codes only, and at most one code per family of seventh-character
//! codes: the one whose character the text speaks for ("subsequent encounter"), else the
//! first the tabular list gives (usually "initial encounter"). A coder picks the character;
//! five encounter variants of the same injury would hide the other candidates.
//!
//! [`Suggester::suggest_note`] reads a note first (see [`note`]): negated findings and family
//! history are dropped, the rest is matched clause by clause and the clauses' candidates are
//! merged, each with the clause that supports it as evidence.
//!
//! Quality is measured by [`evaluate_held_out`] (inclusion terms held out of the index and
//! used as queries).

mod assoc;
mod build;
mod evaluate;
mod index;
mod lexicon;
mod note;
mod stem;
mod text;
mod vocabulary;

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

pub use evaluate::{
    DEEPEST_RANK, HeldOutReport, HeldOutTerm, Miss, Statement, StatementReport, evaluate_held_out,
    evaluate_statements, evaluate_terms, held_out_options, held_out_terms, parse_statements,
};
use index::{Bm25f, FIELDS, Index};
pub use note::demographics as note_demographics;
use terminology::icd10cm::Icd10Cm;
use terminology::icd10cm::demographics::{self, Sex};

/// One suggested code.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    pub code: String,
    pub display: String,
    /// Relevance; comparable between the suggestions of one call only.
    pub score: f64,
    /// The words of the text that the code matched, as written there, in text order.
    pub matched_words: Vec<String>,
    /// For a note: the clause that supports the code.
    pub evidence: Option<String>,
}

/// Who a text is about, as far as coding cares: codes for the other sex or for another age
/// group ("routine child health examination" for an adult, a maternity code for a man) are
/// not suggested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demographics {
    /// Age in whole years at the time the text describes.
    pub age_years: Option<u32>,
    pub sex: Option<Sex>,
}

/// The patients a code can be for: the claim editors' sex and age ranges (see
/// [`demographics`]) and what the code's title says ("female breast", "adult", "child").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fit {
    sex: Option<Sex>,
    min_age: u8,
    max_age: u8,
}

impl Fit {
    fn of(code: &str, title: &str) -> Fit {
        let words: Vec<String> =
            title.split(|c: char| !c.is_ascii_alphabetic()).map(|w| w.to_ascii_lowercase()).collect();
        let has = |word: &str| words.iter().any(|w| w == word);
        let female = has("female") || has("gynecological") || has("gynecologic");
        let sex = demographics::sex_rule(code).map(|rule| rule.sex).or(match (female, has("male")) {
            (true, false) => Some(Sex::Female),
            (false, true) => Some(Sex::Male),
            _ => None,
        });
        let (mut min_age, mut max_age) = match demographics::age_rule(code) {
            Some(rule) => (rule.min.min(124) as u8, rule.max.min(124) as u8),
            None => (0, 124),
        };
        if has("newborn") || has("neonatal") {
            max_age = 0;
        }
        // "Obstructive sleep apnea (adult) (pediatric)" is for anyone.
        let child = has("child") || has("pediatric");
        match (child, has("adult")) {
            (true, false) => max_age = max_age.min(17),
            (false, true) => min_age = min_age.max(15),
            _ => {}
        }
        Fit { sex, min_age, max_age: max_age.max(min_age) }
    }

    fn allows(&self, patient: &Demographics) -> bool {
        let sex = match (self.sex, patient.sex) {
            (Some(code), Some(patient)) => code == patient,
            _ => true,
        };
        let age = patient.age_years.is_none_or(|age| {
            let age = age.min(124) as u8;
            (self.min_age..=self.max_age).contains(&age)
        });
        sex && age
    }
}

/// How documents are scored; see [`BuildOptions::ranking`].
///
/// Scoring has two stages. BM25F over all fields finds candidates and weighs the evidence
/// of the whole hierarchy. Then each candidate's best matching phrase (its description or
/// one of its own inclusion terms) is compared with the text in both directions (an
/// idf-weighted Dice coefficient): a code whose title has important words the text does not
/// mention ("Tuberculosis of heart" for "tuberculosis of muscle") loses to one whose title
/// leaves nothing out ("Tuberculosis of other sites").
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    /// BM25 term-frequency saturation.
    pub k1: f32,
    /// Field weights: description, own inclusion terms, inherited inclusion terms, ancestors'
    /// descriptions, includes notes, phrases of notes elsewhere that refer to the code, the
    /// seventh character's definition, analogues (inclusion terms of parallel codes).
    pub field_weights: [f32; FIELDS],
    /// Length normalisation per field.
    pub field_b: [f32; FIELDS],
    /// How many of the best BM25F candidates (families of codes) are compared phrase by
    /// phrase.
    pub candidates: usize,
    /// The exponent of the phrase similarity in the final score (0: BM25F alone).
    pub phrase_exponent: f32,
    /// The balance of the phrase similarity, an F-measure over idf-weighted words: 1 weighs
    /// the text's words the code's phrase lacks and the phrase's words the text lacks alike
    /// (Dice), below 1 the phrase's more.
    pub phrase_beta: f32,
    /// Added to the phrase similarity before the exponent, so that a code matched only
    /// through its ancestors or notes keeps some score.
    pub phrase_floor: f32,
    /// The weight, relative to their idf, of words that mark residual categories ("other",
    /// "unspecified", "site", "without complications") in phrase similarity: leaving them
    /// out of a text is no evidence against a code.
    pub residual_word_weight: f32,
    /// How much an analogue counts in phrase similarity, relative to an inclusion term.
    pub analogue_factor: f32,
    /// How much an ancestor's inclusion term counts in phrase similarity, relative to the
    /// code's own.
    pub inherited_factor: f32,
    /// The factor applied to a code whose description contradicts the text (see
    /// [`Suggester::suggest`]).
    pub contradiction_factor: f32,
    /// The factor applied to a code one of whose phrases (its description or an inclusion
    /// term) has all the text's words and no other but residual or bracketed ones.
    pub exact_factor: f32,
    /// The factor applied to an "other specified" code whose description contains every word
    /// of the text: a text that says no more than "anemia" means "Anemia, unspecified".
    pub other_factor: f32,
    /// The exponent of the share of the text's weight a code matches (0: not used).
    pub coverage_exponent: f32,
    /// The weight of a word's learned associates relative to the word (0: no expansion).
    pub expansion_weight: f32,
    /// The weight of a word's variants by prefix relative to the word (0: none).
    pub variant_weight: f32,
    /// Favours codes listing many inclusion terms, by `1 + prior * ln(1 + terms)`: such codes
    /// ("other specified ...") are where conditions the classification does not name go.
    pub inclusion_prior: f32,
    /// The weight of a word's names in general medical vocabulary (see [`vocabulary`])
    /// relative to the word (0: none).
    pub synonym_weight: f32,
    /// The weight of the plain words for a word's roots and ending, and of the words built on
    /// a plain word's roots, relative to the word (0: none).
    pub root_weight: f32,
    /// The weight of the terms resembling a word no code uses (see `Index::similar`)
    /// relative to the word (0: none).
    pub similar_weight: f32,
}

impl Default for Ranking {
    /// The settings [`evaluate_held_out`] measures; they were chosen on a different tenth of
    /// the inclusion terms (the 5th, 15th, ...) than the one it holds out.
    fn default() -> Self {
        Ranking {
            k1: 1.2,
            field_weights: [1.0, 0.9, 0.35, 0.3, 0.1, 0.3, 0.5, 0.0],
            field_b: [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.0, 0.3],
            candidates: 500,
            phrase_exponent: 1.5,
            phrase_floor: 0.1,
            phrase_beta: 0.7,
            residual_word_weight: 0.2,
            analogue_factor: 0.5,
            inherited_factor: 0.5,
            contradiction_factor: 0.5,
            other_factor: 0.6,
            exact_factor: 2.0,
            coverage_exponent: 1.0,
            inclusion_prior: 0.2,
            expansion_weight: 1.3,
            variant_weight: 0.4,
            synonym_weight: 0.8,
            root_weight: 0.3,
            similar_weight: 0.3,
        }
    }
}

impl Ranking {
    fn bm25f(&self) -> Bm25f {
        Bm25f { k1: self.k1, b: self.field_b, weight: self.field_weights }
    }
}

/// What goes into a [`Suggester`].
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Inclusion terms left out of the index, as (concept position in tabular order,
    /// position among the concept's own notes). Used by the held-out evaluation.
    pub held_out: FxHashSet<(usize, usize)>,
    pub ranking: Ranking,
}

/// `base` to the `exponent`, without `powf` in the common cases (this runs for every
/// document a query touches).
fn power(base: f32, exponent: f32) -> f32 {
    if exponent == 1.0 {
        base
    } else if exponent == 0.0 {
        1.0
    } else {
        base.powf(exponent)
    }
}

/// Per-thread buffers for scoring a query, sized to the documents; only the entries a query
/// touched are cleared after it.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    /// Per document, bit i: query term i matched.
    matched: Vec<u64>,
    /// Per document, bit i: an associate or variant of query term i matched.
    expanded: Vec<u64>,
    touched: Vec<u32>,
    /// Per family (by its first document), its position among the candidates.
    family_slot: Vec<u32>,
    /// The families given a slot.
    slotted: Vec<u32>,
}

const NO_SLOT: u32 = u32::MAX;

impl Scratch {
    fn prepare(&mut self, docs: usize) {
        if self.scores.len() != docs {
            *self = Scratch {
                scores: vec![0.0; docs],
                matched: vec![0; docs],
                expanded: vec![0; docs],
                touched: Vec::new(),
                family_slot: vec![NO_SLOT; docs],
                slotted: Vec::new(),
            };
        }
    }

    fn clear(&mut self) {
        for &doc in &self.touched {
            let d = doc as usize;
            self.scores[d] = 0.0;
            self.matched[d] = 0;
            self.expanded[d] = 0;
        }
        for &family in &self.slotted {
            self.family_slot[family as usize] = NO_SLOT;
        }
        self.touched.clear();
        self.slotted.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Whether the word at `text[start..end]` of a note's clause only says when or how long, or
/// is "acquired" in "community acquired" or "hospital acquired".
fn is_filler(text: &str, start: usize, end: usize) -> bool {
    let word = &text[start..end];
    if lexicon::NOTE_FILLER.iter().any(|filler| word.eq_ignore_ascii_case(filler)) {
        return true;
    }
    let before = text[..start].trim_end_matches([' ', '-']).to_ascii_lowercase();
    word.eq_ignore_ascii_case("acquired") && (before.ends_with("community") || before.ends_with("hospital"))
}

/// Marks a phrase term that is a nonessential modifier (bracketed in the tabular list): it
/// counts when the text has it and is not missed when it does not.
const OPTIONAL_TERM: u32 = 1 << 31;

/// Word variants (see [`index::Index::variants`]) share this many characters at least and
/// differ by this many at most.
const VARIANT_MIN_COMMON: usize = 5;
const VARIANT_SLACK: usize = 4;

/// Stems that say which diabetes a text means (a type, or a cause other than type 1 or 2).
const DIABETES_TYPES: &[&str] = &[
    "type",
    "1",
    "2",
    "gestat",
    "neonat",
    "underli",
    "drug",
    "chemic",
    "induc",
    "secondari",
    "other",
    "pregnanc",
    "insipidu",
    "prediabet",
    "steroid",
];

/// The most distinct terms of a text that are matched; longer texts keep their first ones.
const MAX_QUERY_TERMS: usize = 64;

/// A billable code, as a document.
struct Doc {
    code: Box<str>,
    display: Box<str>,
    /// The document number of the first code of its seventh-character family (its own number
    /// for other codes).
    family: u32,
    phrases: Phrases,
    fit: Fit,
}

/// A code's phrases, as positions in `Suggester::phrase_bounds`: its description at `first`,
/// its inclusion terms up to `analogues`, its analogues up to `inherited`, then the inclusion
/// terms of its ancestors up to `end`.
#[derive(Clone, Copy, Debug)]
struct Phrases {
    first: u32,
    analogues: u32,
    inherited: u32,
    end: u32,
    /// The terms its description denies ("without complications"), as a range of
    /// `Suggester::denied_terms`.
    denied: (u32, u32),
    /// The description names a residual category of other specified conditions ("Other
    /// specified anemias").
    other: bool,
}

/// Code suggestion over ICD-10-CM; build once, query from any thread.
pub struct Suggester {
    index: Index,
    docs: Vec<Doc>,
    ranking: Ranking,
    build_time: Duration,
    /// Flattened phrases (distinct term ids) of each code: its description and own inclusion
    /// terms; phrase `i` is `phrase_terms[phrase_bounds[i]..phrase_bounds[i + 1]]`.
    phrase_terms: Vec<u32>,
    phrase_bounds: Vec<u32>,
    denied_terms: Vec<u32>,
    /// Per term id: its weight in phrase similarity.
    term_weights: Vec<f32>,
    /// Term ids of the words of residual categories.
    residual_terms: FxHashSet<u32>,
    associations: assoc::Associations,
    /// Every code without its dot, sorted, with its document.
    codes: Vec<(Box<str>, u32)>,
    /// Copies of held-out terms left out (see [`evaluate_held_out`]).
    held_out_copies: usize,
}

impl std::fmt::Debug for Suggester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suggester")
            .field("codes", &self.docs.len())
            .field("build_time", &self.build_time)
            .finish()
    }
}

/// A text's terms, ready for matching.
#[derive(Default)]
struct Query {
    /// The text's own known terms, distinct, in text order (at most 64).
    terms: Vec<QueryTerm>,
    /// Associates of those terms.
    expansions: Vec<Expansion>,
    /// Terms the text says the opposite of: "unidentified" for "identified", "complicated"
    /// for "uncomplicated".
    opposites: Vec<u32>,
}

impl Query {
    fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// A query term: an index term and where it came from in the text.
struct QueryTerm {
    /// `None` for a word no code uses (it may still have variants that are used).
    id: Option<u32>,
    /// Every occurrence is denied ("without complications").
    denied: bool,
    idf: f32,
    spans: Vec<(usize, usize)>,
}

/// A term looked for on behalf of a query term.
struct Expansion {
    id: u32,
    /// Relative to the query term's.
    weight: f32,
    /// The query term's position in [`Query::terms`].
    source: usize,
}

/// A document's score for a query, before the final ordering.
#[derive(Clone, Copy, Debug)]
struct Scored {
    doc: u32,
    score: f32,
    /// The BM25F score alone.
    bm25: f32,
    /// The share of the query's idf the document matched.
    coverage: f32,
    /// Bit i: query term i matched.
    matched: u64,
}

impl Suggester {
    /// The suggester over the embedded ICD-10-CM, built on first use (see
    /// [`Suggester::build_time`]).
    pub fn icd10cm() -> &'static Suggester {
        static SUGGESTER: OnceLock<Suggester> = OnceLock::new();
        SUGGESTER.get_or_init(|| Suggester::build(Icd10Cm::get(), &BuildOptions::default()))
    }

    /// Indexes every billable code of `icd`.
    pub fn build(icd: &Icd10Cm, options: &BuildOptions) -> Suggester {
        build::build(icd, options)
    }

    /// How long [`Suggester::build`] took for this suggester.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// The number of codes indexed.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn ranking(&self) -> &Ranking {
        &self.ranking
    }

    /// Changes the scoring without rebuilding the index.
    pub fn set_ranking(&mut self, ranking: Ranking) {
        self.index.set_params(ranking.bm25f());
        self.ranking = ranking;
        self.term_weights = build::term_weights(&self.index, &self.residual_terms, &self.ranking);
    }

    /// Codes for a diagnosis phrase, best first, at most `limit`. A text that is a code or
    /// the start of one ("E11.9", "s72.00") gives the billable codes it starts, in tabular
    /// order.
    pub fn suggest(&self, text: &str, limit: usize) -> Vec<Suggestion> {
        self.suggest_for(text, &Demographics::default(), limit)
    }

    /// [`Suggester::suggest`] for a patient: codes that do not fit the patient's sex or age
    /// are left out.
    pub fn suggest_for(&self, text: &str, patient: &Demographics, limit: usize) -> Vec<Suggestion> {
        if let Some(codes) = self.codes_starting(text, limit) {
            return codes;
        }
        let query = self.query(text);
        self.rank(&query, limit, patient)
            .into_iter()
            .map(|scored| self.suggestion(text, &query, scored, None))
            .collect()
    }

    /// Codes for a clinical note, best first, at most `limit`, for the patient the note
    /// describes (its "56-year-old man", see [`note::demographics`]).
    pub fn suggest_note(&self, note: &str, limit: usize) -> Vec<Suggestion> {
        self.suggest_note_for(note, &note::demographics(note), limit)
    }

    /// Codes for a clinical note about `patient`, best first, at most `limit`: each affirmed
    /// clause is matched on its own (see the module documentation), and a code is ranked by
    /// the best clause supporting it, given as its evidence. The diagnoses a note lists
    /// (its assessment or impression) come first, in the note's order, each with its best
    /// code before any list entry's second-best (the first-listed diagnosis is the reason for
    /// the visit; a list usually repeats what the history says); the other clauses' codes
    /// follow. Measured both ways on generated notes, this order found more of the coded
    /// diagnoses in the first five than the clauses' best codes first.
    pub fn suggest_note_for(&self, note: &str, patient: &Demographics, limit: usize) -> Vec<Suggestion> {
        /// Per clause, candidates beyond this rank are not considered.
        const PER_CLAUSE: usize = 5;
        /// A clause's candidate must match this share of the clause's weight; more for a
        /// clause whose parts are also matched, so that it only adds codes that account for
        /// several of them ("type 2 diabetes with chronic kidney disease, stage 3").
        const MIN_COVERAGE: f32 = 0.6;
        const MIN_COVERAGE_OF_WHOLE: f32 = 0.85;
        /// A list entry's statement grows by its comma parts while its best code still
        /// accounts for this share of it ("major depressive disorder, recurrent, moderate",
        /// but not "..., continue SSRI").
        const STATEMENT_COVERAGE: f32 = 0.9;
        struct Candidate {
            /// 0 for a list entry's statement, 1 for any other clause.
            tier: u8,
            rank: usize,
            /// The entry's place in the list (0 outside lists).
            listed: u32,
            key: f32,
            scored: Scored,
            evidence: (usize, usize),
        }
        impl Candidate {
            fn order(&self) -> (u8, usize, u32, std::cmp::Reverse<u32>) {
                (self.tier, self.rank, self.listed, std::cmp::Reverse(self.key.to_bits()))
            }
        }
        let mut best: FxHashMap<u32, Candidate> = FxHashMap::default();
        let offer = |candidate: Candidate, best: &mut FxHashMap<u32, Candidate>| {
            let family = self.docs[candidate.scored.doc as usize].family;
            match best.get(&family) {
                Some(held)
                    if (held.tier, held.rank, held.listed, -held.key)
                        <= (candidate.tier, candidate.rank, candidate.listed, -candidate.key) => {}
                _ => {
                    best.insert(family, candidate);
                }
            }
        };
        let units = note::affirmed_units(note);
        let mut i = 0;
        while i < units.len() {
            let unit = units[i];
            // A whole stretch is followed by its parts.
            let parts_end = if unit.has_parts {
                i + 1 + units[i + 1..].iter().take_while(|u| !u.whole).count()
            } else {
                i + 1
            };
            if let (Some(listed), true) = (unit.listed, unit.whole) {
                let parts: Vec<(usize, usize)> = if unit.has_parts {
                    units[i + 1..parts_end].iter().map(|u| (u.start, u.end)).collect()
                } else {
                    vec![(unit.start, unit.end)]
                };
                if let Some((statement, ranked)) = self.statement(note, &parts, patient, STATEMENT_COVERAGE) {
                    let top = ranked.first().map_or(0.0, |s| s.score);
                    for (rank, scored) in ranked.into_iter().enumerate() {
                        if scored.coverage < MIN_COVERAGE || scored.score < 0.5 * top {
                            continue;
                        }
                        let key = scored.score * scored.coverage * scored.coverage;
                        offer(
                            Candidate { tier: 0, rank, listed, key, scored, evidence: statement },
                            &mut best,
                        );
                    }
                }
            }
            for unit in &units[i..parts_end] {
                let text = &note[unit.start..unit.end];
                let query = self.note_query(text);
                if query.is_empty() {
                    continue;
                }
                let ranked = self.rank(&query, PER_CLAUSE, patient);
                let top = ranked.first().map_or(0.0, |s| s.score);
                for (rank, scored) in ranked.into_iter().enumerate() {
                    let min_coverage = if unit.has_parts { MIN_COVERAGE_OF_WHOLE } else { MIN_COVERAGE };
                    if scored.coverage < min_coverage || scored.score < 0.5 * top {
                        continue;
                    }
                    let key = scored.score * scored.coverage * scored.coverage;
                    let evidence = (unit.start, unit.end);
                    offer(Candidate { tier: 1, rank, listed: 0, key, scored, evidence }, &mut best);
                }
            }
            i = parts_end;
        }
        let mut candidates: Vec<Candidate> = best.into_values().collect();
        candidates.sort_by(|a, b| a.order().cmp(&b.order()).then(a.scored.doc.cmp(&b.scored.doc)));
        candidates.truncate(limit);
        candidates
            .into_iter()
            .map(|candidate| {
                let text = &note[candidate.evidence.0..candidate.evidence.1];
                let query = self.note_query(text);
                let mut suggestion = self.suggestion(text, &query, candidate.scored, Some(text.to_string()));
                suggestion.score = f64::from(candidate.key);
                suggestion
            })
            .collect()
    }

    /// The statement of a diagnosis-list entry and its ranked codes: the entry's first part,
    /// extended by the parts after it for as long as the best code still accounts for
    /// `coverage` of the words ("Asthma, uncomplicated" but not "Asthma, uncomplicated,
    /// continue inhalers"). `None` when not even the first part names a code.
    fn statement(
        &self,
        note: &str,
        parts: &[(usize, usize)],
        patient: &Demographics,
        coverage: f32,
    ) -> Option<((usize, usize), Vec<Scored>)> {
        const PER_CLAUSE: usize = 5;
        const MOST_PARTS: usize = 4;
        let first = *parts.first()?;
        let mut chosen: Option<((usize, usize), Vec<Scored>)> = None;
        for &(_, end) in parts.iter().take(MOST_PARTS) {
            let span = (first.0, end);
            let query = self.note_query(&note[span.0..span.1]);
            if query.is_empty() {
                break;
            }
            let ranked = self.rank(&query, PER_CLAUSE, patient);
            // Expansions can lift coverage above 1, so every word must be matched as well.
            let all_terms = if query.terms.len() >= 64 { u64::MAX } else { (1u64 << query.terms.len()) - 1 };
            let full =
                ranked.first().is_some_and(|s| s.coverage >= coverage && s.matched & all_terms == all_terms);
            if !full && chosen.is_some() {
                break;
            }
            chosen = Some((span, ranked));
            if !full {
                break;
            }
        }
        chosen.filter(|(_, ranked)| !ranked.is_empty())
    }

    /// The billable codes that `text`, read as a code or its start, begins; `None` when it is
    /// not one or begins none.
    fn codes_starting(&self, text: &str, limit: usize) -> Option<Vec<Suggestion>> {
        let text = text.trim();
        let key: String = text.chars().filter(|&c| c != '.').map(|c| c.to_ascii_uppercase()).collect();
        let bytes = key.as_bytes();
        let code_like = (3..=7).contains(&bytes.len())
            && bytes[0].is_ascii_uppercase()
            && bytes[1].is_ascii_digit()
            && bytes.iter().all(u8::is_ascii_alphanumeric)
            && text.chars().filter(|&c| c == '.').count() <= 1;
        if !code_like {
            return None;
        }
        let start = self.codes.partition_point(|(code, _)| **code < *key);
        let found: Vec<Suggestion> = self.codes[start..]
            .iter()
            .take_while(|(code, _)| code.starts_with(&key))
            .take(limit)
            .map(|&(ref code, doc)| {
                let doc = &self.docs[doc as usize];
                Suggestion {
                    code: doc.code.to_string(),
                    display: doc.display.to_string(),
                    score: if **code == *key { 1.0 } else { 0.5 },
                    matched_words: vec![text.to_string()],
                    evidence: None,
                }
            })
            .collect();
        (!found.is_empty()).then_some(found)
    }

    /// The known terms of a text, distinct, in text order, and their associates.
    fn query(&self, text: &str) -> Query {
        self.query_of(text, false)
    }

    /// The query for a clause of a note: without words that only say when or how long.
    fn note_query(&self, text: &str) -> Query {
        self.query_of(text, true)
    }

    fn query_of(&self, text: &str, in_note: bool) -> Query {
        let mut query = Query::default();
        let mut stems: Vec<String> = Vec::new();
        let analysed = text::with_trimesters(text::analyse(text));
        let denied = text::denied(text, &analysed);
        for (term, denied) in analysed.into_iter().zip(denied) {
            if in_note && is_filler(text, term.start, term.end) {
                continue;
            }
            let id = self.index.used_term_id(&term.stem);
            if let Some(position) = stems.iter().position(|s| *s == term.stem) {
                query.terms[position].spans.push((term.start, term.end));
                query.terms[position].denied &= denied;
            } else if query.terms.len() < MAX_QUERY_TERMS {
                let idf = id.map_or_else(|| self.index.unseen_idf(), |id| self.index.idf(id));
                query.terms.push(QueryTerm { id, idf, denied, spans: vec![(term.start, term.end)] });
                stems.push(term.stem);
            }
        }
        let expand = |id: u32, weight: f32, source: usize, query: &mut Query| {
            if weight <= 0.0 || query.terms.iter().any(|t| t.id == Some(id)) {
                return;
            }
            match query.expansions.iter_mut().find(|e| e.id == id) {
                Some(existing) if existing.weight >= weight => {}
                Some(existing) => *existing = Expansion { id, weight, source },
                None => query.expansions.push(Expansion { id, weight, source }),
            }
        };
        for (source, stem) in stems.iter().enumerate() {
            if let Some(id) = query.terms[source].id {
                for &(associate, strength) in self.associations.of(id) {
                    expand(associate, self.ranking.expansion_weight * strength, source, &mut query);
                }
            }
            let mut variants = Vec::new();
            self.index.variants(stem, VARIANT_MIN_COMMON, VARIANT_SLACK, |id| variants.push(id));
            for id in variants {
                expand(id, self.ranking.variant_weight, source, &mut query);
            }
        }
        for (source, stem) in stems.iter().enumerate() {
            if query.terms[source].id.is_none() {
                let mut similar = Vec::new();
                self.index.similar(stem, |id| similar.push(id));
                for id in similar {
                    expand(id, self.ranking.similar_weight, source, &mut query);
                }
            }
        }
        for (term, stem) in query.terms.iter().zip(&stems) {
            if term.denied {
                continue;
            }
            let opposite = match stem.strip_prefix("un") {
                Some(rest) if rest.len() >= 4 => self.index.used_term_id(rest),
                _ => self.index.used_term_id(&format!("un{stem}")),
            };
            query.opposites.extend(opposite);
        }
        // Diabetes of no stated type is type 2 (Official Guidelines I.C.4.a.2).
        if let Some(source) = stems.iter().position(|s| s == "diabet")
            && !stems.iter().any(|s| DIABETES_TYPES.contains(&s.as_str()))
        {
            for word in ["type", "2"] {
                if let Some(id) = self.index.used_term_id(word) {
                    expand(id, 1.0, source, &mut query);
                }
            }
        }
        let mut offered = Vec::new();
        vocabulary::expand(&stems, &self.index, |id, source, kind| offered.push((id, source, kind)));
        for (id, source, kind) in offered {
            let weight = match kind {
                vocabulary::Source::Synonym => self.ranking.synonym_weight,
                vocabulary::Source::Root => self.ranking.root_weight,
            };
            expand(id, weight, source, &mut query);
        }
        query
    }

    /// BM25F over the query and its expansions: the best-scoring document of each family,
    /// with the share of the query it matched.
    fn accumulate(&self, query: &Query, scratch: &mut Scratch) -> Vec<Scored> {
        let Scratch { scores, matched, expanded, touched, family_slot, slotted } = scratch;
        for (i, term) in query.terms.iter().enumerate() {
            let Some(id) = term.id else { continue };
            self.index.for_each_match(id, |doc, score| {
                let d = doc as usize;
                if matched[d] == 0 && expanded[d] == 0 {
                    touched.push(doc);
                }
                scores[d] += score;
                matched[d] |= 1 << i;
            });
        }
        for expansion in &query.expansions {
            self.index.for_each_match(expansion.id, |doc, score| {
                let d = doc as usize;
                if matched[d] == 0 && expanded[d] == 0 {
                    touched.push(doc);
                }
                scores[d] += expansion.weight * score;
                expanded[d] |= 1 << expansion.source;
            });
        }
        // The best variant of each family; among equals the first in tabular order.
        let mut best: Vec<Scored> = Vec::new();
        let total_idf: f32 = query.terms.iter().map(|t| t.idf).sum();
        let expansion_weight = self.ranking.expansion_weight;
        for &doc in touched.iter() {
            let d = doc as usize;
            let (direct, indirect) = (matched[d], expanded[d] & !matched[d]);
            let matched_idf: f32 = query
                .terms
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if direct & (1 << i) != 0 {
                        t.idf
                    } else if indirect & (1 << i) != 0 {
                        t.idf * expansion_weight
                    } else {
                        0.0
                    }
                })
                .sum();
            let coverage = if total_idf > 0.0 { matched_idf / total_idf } else { 0.0 };
            let candidate =
                Scored { doc, score: scores[d], bm25: scores[d], coverage, matched: direct | indirect };
            let family = self.docs[d].family as usize;
            match family_slot[family] {
                NO_SLOT => {
                    family_slot[family] = best.len() as u32;
                    slotted.push(family as u32);
                    best.push(candidate);
                }
                slot => {
                    let held = &mut best[slot as usize];
                    if (candidate.bm25, std::cmp::Reverse(candidate.doc))
                        > (held.bm25, std::cmp::Reverse(held.doc))
                    {
                        *held = candidate;
                    }
                }
            }
        }
        best
    }

    /// The best `limit` documents for a query, one per seventh-character family, among the
    /// codes that fit the patient.
    fn rank(&self, query: &Query, limit: usize, patient: &Demographics) -> Vec<Scored> {
        if query.is_empty() || limit == 0 {
            return Vec::new();
        }
        let mut scored: Vec<Scored> = SCRATCH.with_borrow_mut(|scratch| {
            scratch.prepare(self.docs.len());
            let scored = self.accumulate(query, scratch);
            scratch.clear();
            scored
        });
        if *patient != Demographics::default() {
            scored.retain(|candidate| self.docs[candidate.doc as usize].fit.allows(patient));
        }
        // Candidates are chosen by BM25F and the share of the text they match, both part of
        // the final score: many codes share two of three words in some field, few all three.
        for candidate in &mut scored {
            candidate.score = candidate.bm25 * power(candidate.coverage, self.ranking.coverage_exponent);
        }
        let by_score = |a: &Scored, b: &Scored| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc));
        let depth = self.ranking.candidates.max(limit);
        if scored.len() > depth {
            scored.select_nth_unstable_by(depth - 1, by_score);
            scored.truncate(depth);
        }
        let query_weight: f32 =
            query.terms.iter().map(|t| t.id.map_or(t.idf, |id| self.term_weights[id as usize])).sum();
        // How fully each term is found: 1 for the text's own, an expansion's weight otherwise.
        let mut found: FxHashMap<u32, f32> = FxHashMap::default();
        for expansion in &query.expansions {
            found.insert(expansion.id, expansion.weight.min(1.0));
        }
        for id in query.terms.iter().filter_map(|t| t.id) {
            found.insert(id, 1.0);
        }
        for candidate in &mut scored {
            let (similarity, exact) = self.phrase_similarity(candidate.doc, query, &found, query_weight);
            let phrases = self.docs[candidate.doc as usize].phrases;
            let inclusion_terms = (phrases.analogues - phrases.first).saturating_sub(1) as f32;
            let contradiction =
                if self.contradicts(phrases, query) { self.ranking.contradiction_factor } else { 1.0 };
            // "Other specified X" is for an X the text names more precisely; when the
            // description already accounts for every word, the text means plain X.
            let other = if phrases.other && self.described_fully(phrases, query) {
                self.ranking.other_factor
            } else {
                1.0
            };
            // Every word of a phrase of the code, and nothing else: the text names the code.
            let exact = if exact { self.ranking.exact_factor } else { 1.0 };
            candidate.score = candidate.bm25
                * exact
                * contradiction
                * other
                * (self.ranking.phrase_floor + similarity).powf(self.ranking.phrase_exponent)
                * power(candidate.coverage, self.ranking.coverage_exponent)
                * (1.0 + self.ranking.inclusion_prior * inclusion_terms.ln_1p());
        }
        scored.sort_unstable_by(by_score);
        scored.truncate(limit);
        scored
    }

    /// Whether every word of the text is in the code's description.
    /// Residual words of the text ("unspecified") need not be there; a word counts when one
    /// of its stronger expansions is ("dyslipidemia" by "hyperlipidemia", "distal" by "lower
    /// end").
    fn described_fully(&self, phrases: Phrases, query: &Query) -> bool {
        let start = self.phrase_bounds[phrases.first as usize] as usize;
        let end = self.phrase_bounds[phrases.first as usize + 1] as usize;
        let description = &self.phrase_terms[start..end];
        let described = |id: u32| description.iter().any(|&entry| entry & !OPTIONAL_TERM == id);
        let by_expansion =
            |i: usize| query.expansions.iter().any(|e| e.source == i && e.weight >= 0.5 && described(e.id));
        query.terms.iter().enumerate().all(|(i, term)| match term.id {
            Some(id) => self.residual_terms.contains(&id) || described(id) || by_expansion(i),
            None => by_expansion(i),
        })
    }

    /// Whether the code's description denies what the text states ("Hypertensive heart
    /// disease without heart failure" for "hypertensive heart failure") or states what the text
    /// denies.
    fn contradicts(&self, phrases: Phrases, query: &Query) -> bool {
        let start = self.phrase_bounds[phrases.first as usize] as usize;
        let end = self.phrase_bounds[phrases.first as usize + 1] as usize;
        let description = &self.phrase_terms[start..end];
        let denied = &self.denied_terms[phrases.denied.0 as usize..phrases.denied.1 as usize];
        let described = |id: u32| description.iter().any(|&entry| entry & !OPTIONAL_TERM == id);
        query.terms.iter().any(|term| match term.id {
            Some(id) if term.denied => described(id) && !denied.contains(&id),
            Some(id) => denied.contains(&id),
            None => false,
        }) || query.opposites.iter().any(|&id| described(id) && !denied.contains(&id))
    }

    /// The best idf-weighted F-measure (see [`Ranking::phrase_beta`]) between the query and one
    /// of the document's phrases; a phrase word found through an associate counts with the
    /// associate's weight.
    fn phrase_similarity(
        &self,
        doc: u32,
        query: &Query,
        found_weights: &FxHashMap<u32, f32>,
        query_weight: f32,
    ) -> (f32, bool) {
        let phrases = self.docs[doc as usize].phrases;
        let essential_query_terms =
            query.terms.iter().filter(|t| t.id.is_none_or(|id| !self.residual_terms.contains(&id))).count();
        let mut best = 0f32;
        let mut exact = false;
        for phrase in phrases.first..phrases.end {
            let start = self.phrase_bounds[phrase as usize] as usize;
            let end = self.phrase_bounds[phrase as usize + 1] as usize;
            let mut shared = 0f32;
            let mut weight = 0f32;
            let mut found_terms = 0;
            let mut essential_missing = false;
            for &entry in &self.phrase_terms[start..end] {
                let term = entry & !OPTIONAL_TERM;
                let w = self.term_weights[term as usize];
                let found = found_weights.get(&term).copied().unwrap_or(0.0);
                if found >= 1.0 && !self.residual_terms.contains(&term) {
                    found_terms += 1;
                }
                if found > 0.0 || entry & OPTIONAL_TERM == 0 {
                    weight += w;
                    shared += w * found;
                }
                essential_missing |=
                    found < 1.0 && entry & OPTIONAL_TERM == 0 && !self.residual_terms.contains(&term);
            }
            if shared > 0.0 {
                let factor = if phrase >= phrases.inherited {
                    self.ranking.inherited_factor
                } else if phrase >= phrases.analogues {
                    self.ranking.analogue_factor
                } else {
                    1.0
                };
                let precision = shared / weight;
                let recall = (shared / query_weight).min(1.0);
                let beta2 = self.ranking.phrase_beta * self.ranking.phrase_beta;
                let f = (1.0 + beta2) * precision * recall / (beta2 * precision + recall);
                best = best.max(factor * f);
                // The phrase's words, bar residual ones, and all the text's words.
                exact |=
                    phrase < phrases.analogues && !essential_missing && found_terms == essential_query_terms;
            }
        }
        (best, exact)
    }

    fn suggestion(&self, text: &str, query: &Query, scored: Scored, evidence: Option<String>) -> Suggestion {
        let doc = &self.docs[scored.doc as usize];
        let mut spans: Vec<(usize, usize)> = query
            .terms
            .iter()
            .enumerate()
            .filter(|(i, _)| scored.matched & (1 << i) != 0)
            .flat_map(|(_, term)| term.spans.iter().copied())
            .collect();
        spans.sort_unstable();
        spans.dedup();
        let mut matched_words: Vec<String> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            let word = &text[start..end];
            if !matched_words.iter().any(|w| w == word) {
                matched_words.push(word.to_string());
            }
        }
        Suggestion {
            code: doc.code.to_string(),
            display: doc.display.to_string(),
            score: f64::from(scored.score),
            matched_words,
            evidence,
        }
    }
}
