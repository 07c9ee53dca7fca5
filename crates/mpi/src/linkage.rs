//! A whole matching run over a set of people (block, compare, estimate, score), and its
//! evaluation against known true pairs.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use crate::blocking::{FIXED_BY, candidate_pairs_by_rule};
use crate::compare::{Vector, compare};
use crate::model::{Model, TermFrequencies, Training, random_u, train_by_rule};
use crate::person::Person;

/// Pairs at or above this match probability are linked without review: on the synthetic
/// population's planted duplicates it keeps precision and recall both above 99%
/// (`tests/ground_truth.rs`).
pub const LINK_THRESHOLD: f64 = 0.99;
/// Pairs at or above this probability, below the link threshold, go to human review.
pub const REVIEW_THRESHOLD: f64 = 0.5;

/// A candidate pair with its comparison vector and match probability.
#[derive(Clone, Debug)]
pub struct ScoredPair {
    pub a: u32,
    pub b: u32,
    pub vector: Vector,
    pub probability: f64,
}

/// What a run found.
pub struct Run {
    pub candidates: usize,
    pub model: Model,
    pub frequencies: TermFrequencies,
    /// Every candidate pair, scored, in pair order.
    pub pairs: Vec<ScoredPair>,
    pub seconds: f64,
}

/// Compares `pairs` on every core, in order.
fn compare_all(people: &[Person], pairs: &[(u32, u32)]) -> Vec<Vector> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = pairs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(a, b)| compare(&people[a as usize], &people[b as usize]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// Blocks, compares, estimates the model and scores every candidate pair (deduplication:
/// any two people may be the same).
pub fn run(people: &[Person], training: &Training) -> Run {
    run_split(people, None, training)
}

/// Linkage of two files: `people` is the first followed by the second, `split` the first's
/// length; only pairs with one person from each are candidates.
pub fn run_linkage(people: &[Person], split: usize, training: &Training) -> Run {
    run_split(people, Some(split), training)
}

fn run_split(people: &[Person], split: Option<usize>, training: &Training) -> Run {
    let started = Instant::now();
    let mut found = candidate_pairs_by_rule(people);
    if let Some(split) = split {
        let split = split as u32;
        found.retain(|&(a, b, _)| a < split && b >= split);
    }
    let pairs: Vec<(u32, u32)> = found.iter().map(|&(a, b, _)| (a, b)).collect();
    let rules: Vec<u16> = found.iter().map(|&(_, _, r)| r).collect();
    let vectors = compare_all(people, &pairs);
    let u = random_u(people, training);
    let model = train_by_rule(&vectors, &rules, &FIXED_BY, u, training);
    let frequencies = TermFrequencies::of(people);
    let scored = pairs
        .iter()
        .zip(&vectors)
        .map(|(&(a, b), vector)| {
            let (probability, _) = model.score(&people[a as usize], vector, &frequencies);
            ScoredPair { a, b, vector: *vector, probability }
        })
        .collect();
    Run {
        candidates: pairs.len(),
        model,
        frequencies,
        pairs: scored,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Quality against the true pairs: precision and recall over all true pairs (one lost by
/// blocking is a miss).
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub candidates: usize,
    pub threshold: f64,
    pub predicted: usize,
    #[serde(rename = "true")]
    pub true_pairs: usize,
    pub tp: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub best_f1: f64,
    pub best_threshold: f64,
    pub seconds: f64,
}

fn f1(tp: usize, predicted: usize, truth: usize) -> (f64, f64, f64) {
    let precision = if predicted == 0 { 0.0 } else { tp as f64 / predicted as f64 };
    let recall = if truth == 0 { 0.0 } else { tp as f64 / truth as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    (precision, recall, f1)
}

/// `truth` holds each true pair as (smaller id, larger id).
pub fn evaluate(
    run: &Run,
    people: &[Person],
    truth: &HashSet<(String, String)>,
    threshold: f64,
) -> Evaluation {
    let key = |p: &ScoredPair| {
        let (x, y) = (&people[p.a as usize].id, &people[p.b as usize].id);
        if x < y { (x.clone(), y.clone()) } else { (y.clone(), x.clone()) }
    };
    let mut ranked: Vec<(f64, bool)> =
        run.pairs.iter().map(|p| (p.probability, truth.contains(&key(p)))).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut best_f1, mut best_threshold) = (0.0, 1.0);
    let (mut tp, mut predicted) = (0, 0);
    let (mut tp_at, mut predicted_at) = (0, 0);
    for (index, &(probability, is_true)) in ranked.iter().enumerate() {
        predicted += 1;
        tp += usize::from(is_true);
        if probability >= threshold {
            predicted_at = predicted;
            tp_at = tp;
        }
        // A cut can fall only between different probabilities.
        if ranked.get(index + 1).is_none_or(|next| next.0 < probability) {
            let (_, _, f) = f1(tp, predicted, truth.len());
            if f > best_f1 {
                best_f1 = f;
                best_threshold = probability;
            }
        }
    }
    let (precision, recall, f1) = f1(tp_at, predicted_at, truth.len());
    Evaluation {
        candidates: run.candidates,
        threshold,
        predicted: predicted_at,
        true_pairs: truth.len(),
        tp: tp_at,
        precision,
        recall,
        f1,
        best_f1,
        best_threshold,
        seconds: run.seconds,
    }
}
