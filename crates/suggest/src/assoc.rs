//! Word associations learned from the classification itself: which words stand for which.
//!
//! A code's inclusion terms say the same thing as its title in other words: B35.3 "Tinea
//! pedis" lists "Athlete's foot", the B35 codes pair "ringworm" with "tinea" again and again,
//! the E08-E13 codes pair "Kimmelstiel-Wilson disease" with "diabetic nephropathy". Aligning
//! the words a title and its inclusion term do not share (and likewise a phrase of a note
//! elsewhere with the title of the code it refers to) and counting the pairs over the whole
//! classification gives, for a word, the words it is most often written for. A query word is
//! then also looked for as its associates, with less weight (query expansion with a
//! translation model, learned from the index's own text, so never from held-out terms).

use rustc_hash::{FxHashMap, FxHashSet};

/// A differing part longer than this is not aligned: the pair is a paraphrase, not a
/// substitution, and its word pairs would be mostly noise.
const MAX_DIFFERENCE: usize = 3;

/// Associates kept per word.
const MAX_ASSOCIATES: usize = 8;

/// The least evidence for a pair, in aligned occurrences: one pairing where the word had two
/// words to stand for is enough.
const MIN_EVIDENCE: f32 = 0.49;

/// The least share of a word's phrases that must pair it with an associate.
const MIN_STRENGTH: f32 = 0.05;

/// Counts aligned word pairs.
#[derive(Default)]
pub struct AssociationLearner {
    pairs: FxHashMap<(u32, u32), f32>,
    /// Phrases each word occurs in.
    phrases: FxHashMap<u32, u32>,
    ignored: FxHashSet<u32>,
}

/// For each word, its associates and their strength (0..1].
#[derive(Default)]
pub struct Associations {
    map: FxHashMap<u32, Vec<(u32, f32)>>,
}

impl AssociationLearner {
    /// `ignored`: words that never take part (residual words such as "other").
    pub fn new(ignored: FxHashSet<u32>) -> AssociationLearner {
        AssociationLearner { ignored, ..Default::default() }
    }

    /// Counts a phrase's words, once per phrase; every phrase given to [`pair`] must be
    /// counted.
    ///
    /// [`pair`]: AssociationLearner::pair
    pub fn count_phrase(&mut self, phrase: &[u32]) {
        for term in distinct(phrase, &FxHashSet::default()) {
            *self.phrases.entry(term).or_default() += 1;
        }
    }

    /// Aligns two phrases that name the same thing.
    pub fn pair(&mut self, a: &[u32], b: &[u32]) {
        let a = distinct(a, &self.ignored);
        let b = distinct(b, &self.ignored);
        let only_a: Vec<u32> = a.iter().copied().filter(|t| !b.contains(t)).collect();
        let only_b: Vec<u32> = b.iter().copied().filter(|t| !a.contains(t)).collect();
        if only_a.is_empty()
            || only_b.is_empty()
            || only_a.len() > MAX_DIFFERENCE
            || only_b.len() > MAX_DIFFERENCE
        {
            return;
        }
        // Each word spreads one occurrence over the words it may stand for.
        for &x in &only_a {
            for &y in &only_b {
                *self.pairs.entry((x, y)).or_default() += 1.0 / only_b.len() as f32;
                *self.pairs.entry((y, x)).or_default() += 1.0 / only_a.len() as f32;
            }
        }
    }

    pub fn finish(self) -> Associations {
        let mut map: FxHashMap<u32, Vec<(u32, f32)>> = FxHashMap::default();
        for ((from, to), evidence) in self.pairs {
            if evidence < MIN_EVIDENCE {
                continue;
            }
            let occurrences = self.phrases.get(&from).copied().unwrap_or(1).max(1) as f32;
            let strength = (evidence / occurrences).min(1.0);
            if strength >= MIN_STRENGTH {
                map.entry(from).or_default().push((to, strength));
            }
        }
        for associates in map.values_mut() {
            associates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            associates.truncate(MAX_ASSOCIATES);
        }
        Associations { map }
    }
}

impl Associations {
    /// The associates of a word, strongest first.
    pub fn of(&self, term: u32) -> &[(u32, f32)] {
        self.map.get(&term).map_or(&[], Vec::as_slice)
    }
}

fn distinct(phrase: &[u32], ignored: &FxHashSet<u32>) -> Vec<u32> {
    let mut terms: Vec<u32> = phrase.iter().copied().filter(|t| !ignored.contains(t)).collect();
    terms.sort_unstable();
    terms.dedup();
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substituted_words_become_associates() {
        // 1 tinea, 2 pedis, 3 ringworm, 4 foot, 5 corporis, 6 body, 7 unguium, 8 nail.
        let mut learner = AssociationLearner::new(FxHashSet::default());
        let pairs: [(&[u32], &[u32]); 3] = [(&[1, 2], &[3, 4]), (&[1, 5], &[3, 6]), (&[1, 7], &[3, 8])];
        for (title, term) in pairs {
            learner.count_phrase(title);
            learner.count_phrase(term);
            learner.pair(title, term);
        }
        // "foot" is in many other phrases: one pairing says little about it.
        for other in 100..120 {
            learner.count_phrase(&[4, other]);
        }
        let associations = learner.finish();
        assert_eq!(associations.of(3).first().map(|a| a.0), Some(1));
        assert_eq!(associations.of(1).first().map(|a| a.0), Some(3));
        assert!(associations.of(2).iter().any(|a| a.0 == 4), "pedis stands for foot");
        assert!(associations.of(4).is_empty());
    }
}
