//! Fellegi–Sunter with unsupervised estimation.
//!
//! For each field and level, `m` is the chance a true pair shows that level and `u` the chance
//! a pair of different people does; a pair's evidence is the sum over its fields of
//! `ln(m/u)` (a missing field adds nothing), and with the prior share of matches `λ` among
//! the candidates, its match probability is `1 / (1 + exp(-(logit λ + evidence)))`.
//!
//! Estimation needs no labels. `u` comes from pairs drawn at random, which are different
//! people almost always. `m` comes from EM ([`train`]: the match probability of every pair
//! and the m and λ those probabilities imply, alternated until they stop moving, each distinct
//! comparison vector weighed by how often it occurs), run once per blocking rule over the pairs
//! that rule found with the fields it fixes masked ([`train_by_rule`]); over all candidates at
//! once, EM takes the clusters blocking makes (people of one postcode and birth date) for
//! matches.
//!
//! Exact agreement on a name or city is weighed by how common the value is: agreeing on a
//! rare surname is stronger evidence than agreeing on "smith" ([`TermFrequencies`]).

use std::collections::HashMap;

use serde::Serialize;

use crate::compare::{CITY, FAMILY, FIELDS, GIVEN, Vector, compare};
use crate::person::Person;

/// Estimation settings.
#[derive(Clone, Debug)]
pub struct Training {
    /// Random pairs for the starting `u`.
    pub random_pairs: usize,
    /// EM iterations at most.
    pub max_iterations: usize,
    /// Whether EM updates `u` too (else `u` stays as the random pairs gave it).
    pub update_u: bool,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Training { random_pairs: 200_000, max_iterations: 100, update_u: false, seed: 0x5eed }
    }
}

/// The estimated model.
#[derive(Clone, Debug, Serialize)]
pub struct Model {
    /// Share of matches among the candidate pairs.
    pub lambda: f64,
    /// `m[field][level]`, `u[field][level]`; level 0 (missing) unused.
    pub m: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    pub iterations: usize,
}

/// Smallest probability any level is given: a level never seen is rare, not impossible.
const FLOOR: f64 = 1e-6;

fn normalise(levels: &mut [f64]) {
    let total: f64 = levels[1..].iter().sum();
    let even = 1.0 / (levels.len() - 1) as f64;
    for level in levels[1..].iter_mut() {
        *level = if total > 0.0 { (*level / total).max(FLOOR) } else { even };
    }
    levels[0] = 1.0;
}

/// A small deterministic generator for the random pairs.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// `u` from random pairs of people.
pub fn random_u(people: &[Person], training: &Training) -> Vec<Vec<f64>> {
    let mut counts: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels.len()]).collect();
    let mut rng = SplitMix(training.seed);
    let n = people.len() as u64;
    // Ten pairs a person is plenty for a small register; a large one stops at the setting.
    let draws = training.random_pairs.min(people.len().saturating_mul(10)).max(10_000);
    if n >= 2 {
        for _ in 0..draws {
            let a = rng.below(n) as usize;
            let mut b = rng.below(n) as usize;
            if a == b {
                b = (b + 1) % people.len();
            }
            for (field, level) in compare(&people[a], &people[b]).iter().enumerate() {
                counts[field][*level as usize] += 1.0;
            }
        }
    }
    for levels in &mut counts {
        normalise(levels);
    }
    counts
}

fn starting_m() -> Vec<Vec<f64>> {
    FIELDS
        .iter()
        .map(|f| {
            let others = (f.levels.len() - 2) as f64;
            let mut levels: Vec<f64> =
                (0..f.levels.len()).map(|l| if l == 1 { 0.9 } else { 0.1 / others }).collect();
            normalise(&mut levels);
            levels
        })
        .collect()
}

/// Evidence (sum of `ln(m/u)`) of a vector under a model, without term frequencies.
fn evidence(model_m: &[Vec<f64>], model_u: &[Vec<f64>], vector: &Vector) -> f64 {
    vector
        .iter()
        .enumerate()
        .filter(|(_, level)| **level != 0)
        .map(|(field, level)| (model_m[field][*level as usize] / model_u[field][*level as usize]).ln())
        .sum()
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Estimation aware of blocking. A rule's pairs agree on its key's fields whether they are
/// the same person or not, and pairs sharing a postcode share a city: EM over all candidates
/// at once would take "lives nearby" for "same person". So, as Splink does, EM runs once per
/// rule over the pairs that rule found, with the fields it fixes masked (missing), `u` held at
/// the random pairs' values; each field's `m` is the mean of the estimates of the rules that
/// left it free; then the share of matches among all candidates is estimated with m and u
/// held.
pub fn train_by_rule(
    vectors: &[Vector],
    rules: &[u16],
    fixed_by: &[&[usize]],
    u: Vec<Vec<f64>>,
    training: &Training,
) -> Model {
    let session = Training { update_u: false, ..training.clone() };
    let mut sums: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels.len()]).collect();
    let mut estimates = vec![0usize; FIELDS.len()];
    let mut iterations = 0;
    for (rule, fixed) in fixed_by.iter().enumerate() {
        let masked: Vec<Vector> = vectors
            .iter()
            .zip(rules)
            .filter(|(_, found)| *found & (1 << rule) != 0)
            .map(|(vector, _)| {
                let mut vector = *vector;
                for field in fixed.iter() {
                    vector[*field] = 0;
                }
                vector
            })
            .collect();
        // Too few pairs to learn from.
        if masked.len() < 50 {
            continue;
        }
        let model = train(&masked, u.clone(), &session);
        iterations += model.iterations;
        for field in (0..FIELDS.len()).filter(|f| !fixed.contains(f)) {
            for (sum, m) in sums[field].iter_mut().zip(&model.m[field]) {
                *sum += m;
            }
            estimates[field] += 1;
        }
    }
    let mut m = starting_m();
    for field in 0..FIELDS.len() {
        if estimates[field] > 0 {
            m[field] = sums[field].iter().map(|s| s / estimates[field] as f64).collect();
            normalise(&mut m[field]);
        }
    }
    // The share of matches among all candidates, m and u held.
    let mut patterns: HashMap<Vector, f64> = HashMap::new();
    for vector in vectors {
        *patterns.entry(*vector).or_default() += 1.0;
    }
    let total: f64 = patterns.values().sum();
    let mut lambda = 0.1;
    for _ in 0..training.max_iterations {
        if total == 0.0 {
            break;
        }
        let prior = logit(lambda);
        let matches: f64 =
            patterns.iter().map(|(vector, count)| count * sigmoid(prior + evidence(&m, &u, vector))).sum();
        let next = (matches / total).clamp(1e-9, 1.0 - 1e-9);
        let moved = (next - lambda).abs();
        lambda = next;
        iterations += 1;
        if moved < 1e-9 {
            break;
        }
    }
    Model { lambda, m, u, iterations }
}

/// EM over the candidate pairs' vectors.
pub fn train(vectors: &[Vector], u: Vec<Vec<f64>>, training: &Training) -> Model {
    let mut patterns: HashMap<Vector, f64> = HashMap::new();
    for vector in vectors {
        *patterns.entry(*vector).or_default() += 1.0;
    }
    let patterns: Vec<(Vector, f64)> = patterns.into_iter().collect();
    let total: f64 = patterns.iter().map(|(_, c)| c).sum();
    let mut model = Model { lambda: 0.1, m: starting_m(), u, iterations: 0 };
    if total == 0.0 {
        return model;
    }
    for iteration in 1..=training.max_iterations {
        let mut m_next: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels.len()]).collect();
        let mut u_next = m_next.clone();
        let mut matches = 0.0;
        let prior = logit(model.lambda.clamp(1e-9, 1.0 - 1e-9));
        for (vector, count) in &patterns {
            let w = sigmoid(prior + evidence(&model.m, &model.u, vector));
            matches += w * count;
            for (field, level) in vector.iter().enumerate() {
                m_next[field][*level as usize] += w * count;
                u_next[field][*level as usize] += (1.0 - w) * count;
            }
        }
        for levels in m_next.iter_mut().chain(u_next.iter_mut()) {
            normalise(levels);
        }
        let lambda = (matches / total).clamp(1e-9, 1.0 - 1e-9);
        let moved = (lambda - model.lambda).abs()
            + m_next.iter().flatten().zip(model.m.iter().flatten()).map(|(a, b)| (a - b).abs()).sum::<f64>();
        model.lambda = lambda;
        model.m = m_next;
        if training.update_u {
            model.u = u_next;
        }
        model.iterations = iteration;
        if moved < 1e-7 {
            break;
        }
    }
    model
}

/// How common each given name, family name and city is (share of the people with one).
#[derive(Clone, Debug, Default)]
pub struct TermFrequencies {
    fields: [HashMap<String, f64>; 3],
}

const TF_FIELDS: [usize; 3] = [GIVEN, FAMILY, CITY];

impl TermFrequencies {
    pub fn of(people: &[Person]) -> TermFrequencies {
        let mut fields: [HashMap<String, f64>; 3] = Default::default();
        for (slot, field) in TF_FIELDS.iter().enumerate() {
            let mut present = 0.0;
            for person in people {
                let value = value_of(person, *field);
                if !value.is_empty() {
                    *fields[slot].entry(value.to_string()).or_default() += 1.0;
                    present += 1.0;
                }
            }
            for share in fields[slot].values_mut() {
                *share /= present;
            }
        }
        TermFrequencies { fields }
    }

    fn share(&self, field: usize, value: &str) -> Option<f64> {
        let slot = TF_FIELDS.iter().position(|f| *f == field)?;
        self.fields[slot].get(value).copied()
    }
}

fn value_of(person: &Person, field: usize) -> &str {
    match field {
        GIVEN => &person.given,
        FAMILY => &person.family,
        CITY => &person.city,
        _ => "",
    }
}

/// The highest probability of a pair that cannot be compared on any name or national id.
pub const UNIDENTIFIED_MAX: f64 = 0.98;

/// Whether the pair can be compared on the given name, the family name or the national id
/// (each side has it).
fn identifies(vector: &Vector) -> bool {
    [0usize, 1, 9].iter().any(|&field| vector[field] != 0)
}

/// One field's part of a pair's evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub field: &'static str,
    pub level: &'static str,
    /// `ln(m/u)` as used (after the term-frequency adjustment).
    pub weight: f64,
}

impl Model {
    /// The match probability of a pair, and each field's evidence.
    ///
    /// A pair that cannot be compared on any name or the national id (missing on one side)
    /// is never certain, however much else agrees: two nameless registrations born the same
    /// day in one town are for a person to judge (HIM practice: an automatic link needs the
    /// name or an identifier), so such a pair is held just below
    /// [`crate::linkage::LINK_THRESHOLD`]. Names that differ are weighed by the model.
    pub fn score(&self, a: &Person, vector: &Vector, frequencies: &TermFrequencies) -> (f64, f64) {
        let mut total = logit(self.lambda.clamp(1e-9, 1.0 - 1e-9));
        for (field, level) in vector.iter().enumerate() {
            total += self.weight(a, field, *level, frequencies);
        }
        let mut probability = sigmoid(total);
        if !identifies(vector) {
            probability = probability.min(UNIDENTIFIED_MAX);
        }
        (probability, total)
    }

    fn weight(&self, a: &Person, field: usize, level: u8, frequencies: &TermFrequencies) -> f64 {
        if level == 0 {
            return 0.0;
        }
        let m = self.m[field][level as usize];
        let mut u = self.u[field][level as usize];
        if level == 1
            && let Some(share) = frequencies.share(field, value_of(a, field))
        {
            // Agreeing on this value: as likely by chance as a random person has it.
            u = share.max(FLOOR);
        }
        (m / u).ln()
    }

    /// Each field's evidence for a pair, for review.
    pub fn explain(&self, a: &Person, vector: &Vector, frequencies: &TermFrequencies) -> Vec<Evidence> {
        vector
            .iter()
            .enumerate()
            .map(|(field, level)| Evidence {
                field: FIELDS[field].name,
                level: FIELDS[field].levels[*level as usize],
                weight: self.weight(a, field, *level, frequencies),
            })
            .collect()
    }
}
