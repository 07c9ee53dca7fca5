//! Held-out evaluation: how often the suggester finds the code an ICD-10-CM inclusion term is
//! listed under when that term is not in the index.
//!
//! Every `every`-th inclusion term of the tabular list (the `every`-th, `2·every`-th, ... in
//! tabular order, counting the terms listed under codes, categories and subcategories; the
//! shared inclusion terms of seventh characters are not counted) is removed from the index
//! (from its code's own field and from every descendant's inherited field) and used as a
//! query. So that the term is truly absent, any other text with the same normalised words
//! that would be indexed in the same line of descent (the code, an ancestor or a descendant)
//! is left out too: a copy of the inclusion term, an "includes" note, a phrase of a note
//! elsewhere referring to the code, or an inclusion term of a parallel code reworded for it.
//! Word associations are learned from the index's own text, so never from held-out terms.
//! The ground truth is the node the term is listed under; as that node may be non-billable, a
//! suggestion counts as correct when it is that node or one of its billable descendants.

use std::time::{Duration, Instant};

use super::{BuildOptions, Suggester};
use terminology::icd10cm::{Icd10Cm, NoteKind};

/// How deep [`evaluate_terms`] looks for the right code in a query that misses the first ten.
pub const DEEPEST_RANK: usize = 200;

/// An inclusion term used as a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOutTerm {
    pub text: String,
    /// The code it is listed under.
    pub code: String,
    /// The position of that code in tabular order.
    pub concept: usize,
    /// The term's position among the code's own notes.
    pub position: usize,
}

/// A query whose code was not among the first five suggestions.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    pub query: String,
    pub expected: String,
    /// The codes suggested, best first (up to ten).
    pub suggested: Vec<String>,
    /// The 1-based rank of the first correct suggestion within [`DEEPEST_RANK`], if any.
    pub rank: Option<usize>,
}

/// The outcome of [`evaluate_held_out`]. A suggestion is correct when it is the code the term
/// is listed under or, for a term listed under a non-billable node, one of that node's
/// billable descendants.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldOutReport {
    /// Held-out terms queried.
    pub queries: usize,
    /// Queries whose first suggestion is correct.
    pub top1: usize,
    /// Queries with a correct suggestion among the first five.
    pub top5: usize,
    /// Queries with a correct suggestion among the first ten.
    pub top10: usize,
    /// Among the first fifty.
    pub top50: usize,
    /// Among the first [`DEEPEST_RANK`]: what no reordering of the best candidates can
    /// exceed, the share of queries for which the index holds any usable evidence.
    pub deepest: usize,
    /// The mean over queries of 1/rank of the first correct suggestion (0 beyond ten).
    pub mean_reciprocal_rank: f64,
    /// Copies of held-out terms also left out of the index (see the module documentation).
    pub duplicates_removed: usize,
    /// The time to build the index without the held-out terms.
    pub build_time: Duration,
    /// The mean time of one query of ten suggestions.
    pub mean_query_time: Duration,
    /// The longest.
    pub max_query_time: Duration,
    /// Queries that missed the first five.
    pub misses: Vec<Miss>,
}

impl HeldOutReport {
    pub fn top1_rate(&self) -> f64 {
        rate(self.top1, self.queries)
    }

    pub fn top5_rate(&self) -> f64 {
        rate(self.top5, self.queries)
    }

    pub fn top10_rate(&self) -> f64 {
        rate(self.top10, self.queries)
    }

    pub fn top50_rate(&self) -> f64 {
        rate(self.top50, self.queries)
    }

    pub fn deepest_rate(&self) -> f64 {
        rate(self.deepest, self.queries)
    }
}

fn rate(hits: usize, total: usize) -> f64 {
    if total == 0 { 0.0 } else { hits as f64 / total as f64 }
}

impl std::fmt::Display for HeldOutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} held-out inclusion terms: top-1 {} ({:.1}%), top-5 {} ({:.1}%), top-10 {} ({:.1}%), \
             top-50 {:.1}%, top-{DEEPEST_RANK} {:.1}%, MRR {:.3}; index built in {:.0} ms, {:.2} ms per query ({:.2} ms at most)",
            self.queries,
            self.top1,
            100.0 * self.top1_rate(),
            self.top5,
            100.0 * self.top5_rate(),
            self.top10,
            100.0 * self.top10_rate(),
            100.0 * self.top50_rate(),
            100.0 * self.deepest_rate(),
            self.mean_reciprocal_rank,
            self.build_time.as_secs_f64() * 1000.0,
            self.mean_query_time.as_secs_f64() * 1000.0,
            self.max_query_time.as_secs_f64() * 1000.0,
        )
    }
}

/// Every `every`-th inclusion term in tabular order (none when `every` is 0).
pub fn held_out_terms(icd: &Icd10Cm, every: usize) -> Vec<HeldOutTerm> {
    let mut terms = Vec::new();
    if every == 0 {
        return terms;
    }
    let mut count = 0;
    for concept in icd.concepts().filter(|c| c.seventh_character().is_none()) {
        for (position, note) in concept.own_notes().iter().enumerate() {
            if note.kind != NoteKind::InclusionTerm {
                continue;
            }
            count += 1;
            if count % every == 0 {
                terms.push(HeldOutTerm {
                    text: note.text.clone(),
                    code: concept.code().to_string(),
                    concept: concept.index(),
                    position,
                });
            }
        }
    }
    terms
}

/// Builds a suggester without every `every`-th inclusion term and queries it with them.
pub fn evaluate_held_out(icd: &Icd10Cm, every: usize) -> HeldOutReport {
    let terms = held_out_terms(icd, every);
    let suggester = Suggester::build(icd, &held_out_options(&terms));
    evaluate_terms(icd, &suggester, &terms)
}

/// Options leaving out `terms` (and their copies in the same line of descent).
pub fn held_out_options(terms: &[HeldOutTerm]) -> BuildOptions {
    BuildOptions { held_out: terms.iter().map(|t| (t.concept, t.position)).collect(), ..Default::default() }
}

/// Queries `suggester` with each term and scores the answers (see [`HeldOutReport`]).
pub fn evaluate_terms(icd: &Icd10Cm, suggester: &Suggester, terms: &[HeldOutTerm]) -> HeldOutReport {
    let mut report = HeldOutReport {
        queries: terms.len(),
        top1: 0,
        top5: 0,
        top10: 0,
        top50: 0,
        deepest: 0,
        mean_reciprocal_rank: 0.0,
        duplicates_removed: suggester.held_out_copies,
        build_time: suggester.build_time(),
        mean_query_time: Duration::ZERO,
        max_query_time: Duration::ZERO,
        misses: Vec::new(),
    };
    let mut reciprocal_ranks = 0.0;
    let mut query_time = Duration::ZERO;
    for term in terms {
        let Some(target) = icd.concept(term.concept) else { continue };
        let started = Instant::now();
        let suggestions = suggester.suggest(&term.text, 10);
        let elapsed = started.elapsed();
        query_time += elapsed;
        report.max_query_time = report.max_query_time.max(elapsed);
        let correct = |s: &super::Suggestion| {
            s.code == term.code || icd.lookup(&s.code).is_some_and(|c| c.is_descendant_of(target))
        };
        let rank = suggestions.iter().position(correct);
        // Only queries missing the first ten are asked again for more, untimed.
        let deep_rank = rank.or_else(|| suggester.suggest(&term.text, DEEPEST_RANK).iter().position(correct));
        if rank == Some(0) {
            report.top1 += 1;
        }
        if rank.is_some_and(|r| r < 5) {
            report.top5 += 1;
        }
        if let Some(r) = rank {
            report.top10 += 1;
            reciprocal_ranks += 1.0 / (r + 1) as f64;
        }
        if deep_rank.is_some_and(|r| r < 50) {
            report.top50 += 1;
        }
        if deep_rank.is_some() {
            report.deepest += 1;
        }
        if rank.is_none_or(|r| r >= 5) {
            report.misses.push(Miss {
                query: term.text.clone(),
                expected: term.code.clone(),
                suggested: suggestions.into_iter().map(|s| s.code).collect(),
                rank: deep_rank.map(|r| r + 1),
            });
        }
    }
    if !terms.is_empty() {
        report.mean_query_time = query_time / terms.len() as u32;
        report.mean_reciprocal_rank = reciprocal_ranks / terms.len() as f64;
    }
    report
}

/// A diagnosis statement as a clinician writes it, with the code a coder assigns (see
/// `tests/data/clinical-statements.tsv`).
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub text: String,
    pub code: String,
    /// Sex and age where the code depends on them.
    pub patient: super::Demographics,
}

/// Reads statements from tab-separated lines `statement, code, sex (F/M/-), age (years/-),
/// note`; `#` lines are comments.
pub fn parse_statements(tsv: &str) -> Result<Vec<Statement>, String> {
    use terminology::icd10cm::demographics::Sex;
    let mut statements = Vec::new();
    for (number, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [text, code, sex, age, ..] = fields[..] else {
            return Err(format!("line {}: expected statement, code, sex, age and note", number + 1));
        };
        let sex = match sex {
            "F" => Some(Sex::Female),
            "M" => Some(Sex::Male),
            "-" | "" => None,
            other => return Err(format!("line {}: sex must be F, M or -, not {other:?}", number + 1)),
        };
        let age_years = match age {
            "-" | "" => None,
            other => Some(
                other
                    .parse()
                    .map_err(|_| format!("line {}: age must be whole years, not {other:?}", number + 1))?,
            ),
        };
        statements.push(Statement {
            text: text.to_string(),
            code: code.to_string(),
            patient: super::Demographics { age_years, sex },
        });
    }
    Ok(statements)
}

/// Top-1 and top-5 accuracy over statements.
#[derive(Clone, Debug, PartialEq)]
pub struct StatementReport {
    pub queries: usize,
    pub top1: usize,
    pub top5: usize,
    /// Statements whose code was not among the first five.
    pub misses: Vec<Miss>,
}

impl std::fmt::Display for StatementReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} clinical statements: top-1 {} ({:.1}%), top-5 {} ({:.1}%)",
            self.queries,
            self.top1,
            100.0 * rate(self.top1, self.queries),
            self.top5,
            100.0 * rate(self.top5, self.queries)
        )
    }
}

impl StatementReport {
    pub fn top1_rate(&self) -> f64 {
        rate(self.top1, self.queries)
    }

    pub fn top5_rate(&self) -> f64 {
        rate(self.top5, self.queries)
    }
}

/// Suggests codes for each statement (for its patient) and scores the answers: correct is the
/// statement's code exactly.
pub fn evaluate_statements(suggester: &Suggester, statements: &[Statement]) -> StatementReport {
    let mut report = StatementReport { queries: statements.len(), top1: 0, top5: 0, misses: Vec::new() };
    for statement in statements {
        let suggested: Vec<String> = suggester
            .suggest_for(&statement.text, &statement.patient, 10)
            .into_iter()
            .map(|s| s.code)
            .collect();
        let rank = suggested.iter().position(|code| *code == statement.code);
        report.top1 += usize::from(rank == Some(0));
        report.top5 += usize::from(rank.is_some_and(|r| r < 5));
        if rank.is_none_or(|r| r >= 5) {
            report.misses.push(Miss {
                query: statement.text.clone(),
                expected: statement.code.clone(),
                suggested,
                rank: rank.map(|r| r + 1),
            });
        }
    }
    report
}
