//! A BM25F inverted index: documents made of a fixed number of weighted fields.
//!
//! Term frequencies and field lengths are stored raw and combined at query time, so field
//! weights and the BM25 parameters can change without rebuilding (see [`Bm25f`]). Following
//! BM25F, the weighted, length-normalised frequencies of a term across the fields of a document
//! are summed before saturation: a word found both in a code's title and in its inclusion
//! terms is not counted as two independent pieces of evidence.

use rustc_hash::FxHashMap;

/// The number of fields of every document.
pub const FIELDS: usize = 8;

/// Scoring parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Bm25f {
    /// Saturation of term frequency.
    pub k1: f32,
    /// Length normalisation per field (0: none, 1: full).
    pub b: [f32; FIELDS],
    /// Weight per field.
    pub weight: [f32; FIELDS],
}

/// One document's frequencies of one term, per field.
#[derive(Clone, Copy, Debug)]
struct Posting {
    doc: u32,
    tf: [u8; FIELDS],
}

/// Builds an [`Index`] one document at a time; documents are numbered in the order added.
#[derive(Default)]
pub struct IndexBuilder {
    term_ids: FxHashMap<String, u32>,
    postings: Vec<Vec<Posting>>,
    lengths: Vec<[u16; FIELDS]>,
    /// Scratch: the postings of the document being added, by term id.
    current: FxHashMap<u32, [u8; FIELDS]>,
}

impl IndexBuilder {
    /// The id of a term, assigned on first sight.
    pub fn term_id(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.term_ids.get(term) {
            return id;
        }
        let id = self.postings.len() as u32;
        self.term_ids.insert(term.to_string(), id);
        self.postings.push(Vec::new());
        id
    }

    /// The id of a term already seen.
    pub fn existing_term(&self, term: &str) -> Option<u32> {
        self.term_ids.get(term).copied()
    }

    /// Adds a document given the term ids of each field; returns its number.
    pub fn add(&mut self, fields: &[Vec<u32>; FIELDS]) -> u32 {
        let doc = self.lengths.len() as u32;
        let mut lengths = [0u16; FIELDS];
        self.current.clear();
        for (field, terms) in fields.iter().enumerate() {
            for &term in terms {
                let tf = self.current.entry(term).or_default();
                tf[field] = tf[field].saturating_add(1);
                lengths[field] = lengths[field].saturating_add(1);
            }
        }
        for (&term, &tf) in &self.current {
            self.postings[term as usize].push(Posting { doc, tf });
        }
        self.lengths.push(lengths);
        doc
    }

    /// Finishes the index. Documents with the same `groups` entry are variants of one thing
    /// (the seventh-character codes of one code): term rarity counts each group once, so a
    /// word is not made common by the number of variants of the few codes that use it.
    pub fn finish(self, params: Bm25f, groups: &[u32]) -> Index {
        let docs = self.lengths.len();
        let mut totals = [0f64; FIELDS];
        for lengths in &self.lengths {
            for (total, &length) in totals.iter_mut().zip(lengths) {
                *total += f64::from(length);
            }
        }
        let average = totals.map(|total| (total / docs.max(1) as f64).max(1.0) as f32);
        let mut postings = self.postings;
        for list in &mut postings {
            list.sort_unstable_by_key(|posting| posting.doc);
            list.shrink_to_fit();
        }
        let group_of = |doc: u32| groups.get(doc as usize).copied().unwrap_or(doc);
        let mut distinct: Vec<u32> = groups.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let total = if groups.is_empty() { docs } else { distinct.len() } as f32;
        let idf = postings
            .iter()
            .map(|list| {
                let mut n = 0usize;
                let mut previous = None;
                for posting in list {
                    let group = group_of(posting.doc);
                    if previous != Some(group) {
                        n += 1;
                        previous = Some(group);
                    }
                }
                let n = n as f32;
                (1.0 + (total - n + 0.5) / (n + 0.5)).ln()
            })
            .collect();
        let mut sorted_terms: Vec<(Box<str>, u32)> =
            self.term_ids.iter().map(|(term, &id)| (term.as_str().into(), id)).collect();
        sorted_terms.sort_unstable();
        let mut reversed_terms: Vec<(Box<str>, u32)> = sorted_terms
            .iter()
            .map(|(term, id)| (term.chars().rev().collect::<String>().into(), *id))
            .collect();
        reversed_terms.sort_unstable();
        let mut trigrams: FxHashMap<[u8; 3], Vec<u32>> = FxHashMap::default();
        let mut trigram_counts = vec![0u16; postings.len()];
        for (term, &id) in &self.term_ids {
            let grams = trigrams_of(term);
            trigram_counts[id as usize] = grams.len() as u16;
            for gram in grams {
                trigrams.entry(gram).or_default().push(id);
            }
        }
        let mut index = Index {
            sorted_terms,
            reversed_terms,
            trigrams,
            trigram_counts,
            term_ids: self.term_ids,
            postings,
            idf,
            lengths: self.lengths,
            average,
            norms: Vec::new(),
            params: params.clone(),
        };
        index.set_params(params);
        index
    }
}

/// The built index.
pub struct Index {
    term_ids: FxHashMap<String, u32>,
    /// Every term, sorted, for finding terms by prefix.
    sorted_terms: Vec<(Box<str>, u32)>,
    /// Every term spelt backwards, sorted, for finding terms by ending.
    reversed_terms: Vec<(Box<str>, u32)>,
    /// The terms containing each trigram of letters (padded at both ends), and per term id
    /// its number of distinct trigrams.
    trigrams: FxHashMap<[u8; 3], Vec<u32>>,
    trigram_counts: Vec<u16>,
    postings: Vec<Vec<Posting>>,
    idf: Vec<f32>,
    lengths: Vec<[u16; FIELDS]>,
    average: [f32; FIELDS],
    /// Per document and field: weight / length normalisation, the factor applied to raw tf.
    norms: Vec<[f32; FIELDS]>,
    params: Bm25f,
}

impl Index {
    pub fn set_params(&mut self, params: Bm25f) {
        self.norms = self
            .lengths
            .iter()
            .map(|lengths| {
                std::array::from_fn(|f| {
                    let relative = f32::from(lengths[f]) / self.average[f];
                    params.weight[f] / (1.0 - params.b[f] + params.b[f] * relative)
                })
            })
            .collect();
        self.params = params;
    }

    #[cfg(test)]
    fn doc_count(&self) -> usize {
        self.lengths.len()
    }

    pub fn term_count(&self) -> usize {
        self.idf.len()
    }

    /// The idf of a term no document contains.
    pub fn unseen_idf(&self) -> f32 {
        let groups = self.idf.iter().copied().fold(0f32, f32::max);
        groups.max(1.0)
    }

    pub fn term_id(&self, term: &str) -> Option<u32> {
        self.term_ids.get(term).copied()
    }

    /// The id of a term some document contains (a term can be known without any: the words
    /// of texts left out of the index).
    pub fn used_term_id(&self, term: &str) -> Option<u32> {
        self.term_id(term).filter(|&id| !self.postings[id as usize].is_empty())
    }

    /// Terms that extend `term` or that it extends, by up to `slack` characters, sharing at
    /// least `min_common` characters: "tuberculosi" and "tubercul", "bancroftian" and
    /// "bancrofti". Stemming leaves such pairs apart where the suffixes are not English ones.
    pub fn variants(&self, term: &str, min_common: usize, slack: usize, mut found: impl FnMut(u32)) {
        if term.len() < min_common {
            return;
        }
        let start = self.sorted_terms.partition_point(|(t, _)| &**t < term);
        for (t, id) in &self.sorted_terms[start..] {
            if !t.starts_with(term) {
                break;
            }
            if t.len() > term.len() && t.len() <= term.len() + slack {
                found(*id);
            }
        }
        for length in min_common.max(term.len().saturating_sub(slack))..term.len() {
            if let Some(prefix) = term.get(..length)
                && let Some(&id) = self.term_ids.get(prefix)
            {
                found(id);
            }
        }
    }

    /// Terms resembling a word no document contains: spelt alike (a misspelling, a variant
    /// spelling), or sharing its longest beginning or ending with it ("chylopericardium" and
    /// "pericardium", "urethrorrhea" and "urethra"), as compound medical words are built.
    pub fn similar(&self, term: &str, mut found: impl FnMut(u32)) {
        /// Shared beginnings and endings shorter than this are too common to mean anything.
        const MIN_SHARED: usize = 5;
        /// The most terms taken for one shared beginning or ending.
        const MAX_SHARING: usize = 6;
        /// The least Dice coefficient over trigrams.
        const MIN_SPELLING_SIMILARITY: f32 = 0.5;
        if term.len() < MIN_SHARED || !term.is_ascii() {
            return;
        }
        let grams = trigrams_of(term);
        let mut shared: FxHashMap<u32, u16> = FxHashMap::default();
        for gram in &grams {
            for &id in self.trigrams.get(gram).map_or(&[][..], Vec::as_slice) {
                *shared.entry(id).or_default() += 1;
            }
        }
        for (id, count) in shared {
            let total = grams.len() + usize::from(self.trigram_counts[id as usize]);
            if 2.0 * f32::from(count) / total as f32 >= MIN_SPELLING_SIMILARITY {
                found(id);
            }
        }
        let reversed: String = term.chars().rev().collect();
        for (list, key) in [(&self.sorted_terms, term), (&self.reversed_terms, reversed.as_str())] {
            let at = list.partition_point(|(t, _)| &**t < key);
            let common = |i: usize| {
                list.get(i).map_or(0, |(t, _)| t.bytes().zip(key.bytes()).take_while(|(a, b)| a == b).count())
            };
            let longest = common(at).max(at.checked_sub(1).map_or(0, common));
            if longest < MIN_SHARED || longest >= key.len() {
                continue;
            }
            let stem = &key[..longest];
            let first = list.partition_point(|(t, _)| &**t < stem);
            for (_, id) in list[first..].iter().take_while(|(t, _)| t.starts_with(stem)).take(MAX_SHARING) {
                found(*id);
            }
        }
    }

    /// The first `limit` terms, in alphabetical order, that begin with `prefix`.
    pub fn with_prefix(&self, prefix: &str, limit: usize, mut found: impl FnMut(u32)) {
        let start = self.sorted_terms.partition_point(|(t, _)| &**t < prefix);
        for (_, id) in
            self.sorted_terms[start..].iter().take_while(|(t, _)| t.starts_with(prefix)).take(limit)
        {
            found(*id);
        }
    }

    pub fn idf(&self, term: u32) -> f32 {
        self.idf[term as usize]
    }

    /// Calls `visit(doc, contribution)` for every document containing `term`.
    pub fn for_each_match(&self, term: u32, mut visit: impl FnMut(u32, f32)) {
        let idf = self.idf[term as usize];
        let k1 = self.params.k1;
        for posting in &self.postings[term as usize] {
            let norms = &self.norms[posting.doc as usize];
            let tf: f32 = posting.tf.iter().zip(norms).map(|(&tf, &norm)| f32::from(tf) * norm).sum();
            // Scaled by (k1 + 1) so that a single occurrence at average length scores about idf.
            visit(posting.doc, idf * tf * (k1 + 1.0) / (k1 + tf));
        }
    }
}

/// The distinct letter trigrams of a term padded with a space at both ends.
fn trigrams_of(term: &str) -> Vec<[u8; 3]> {
    let padded: Vec<u8> = std::iter::once(b' ').chain(term.bytes()).chain(std::iter::once(b' ')).collect();
    let mut grams: Vec<[u8; 3]> = padded.windows(3).map(|w| [w[0], w[1], w[2]]).collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Bm25f {
        Bm25f { k1: 1.2, b: [0.75; FIELDS], weight: [1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] }
    }

    fn build(docs: &[[&str; 2]]) -> Index {
        let mut builder = IndexBuilder::default();
        for fields in docs {
            let mut ids: [Vec<u32>; FIELDS] = Default::default();
            for (field, text) in fields.iter().enumerate() {
                ids[field] = text.split_whitespace().map(|word| builder.term_id(word)).collect();
            }
            builder.add(&ids);
        }
        builder.finish(params(), &[])
    }

    fn scores(index: &Index, query: &str) -> Vec<f32> {
        let mut scores = vec![0.0; index.doc_count()];
        for word in query.split_whitespace() {
            if let Some(term) = index.term_id(word) {
                index.for_each_match(term, |doc, score| scores[doc as usize] += score);
            }
        }
        scores
    }

    #[test]
    fn rare_terms_and_heavier_fields_win() {
        let index = build(&[
            ["cholera vibrio", ""],
            ["typhoid fever", "enteric fever"],
            ["paratyphoid fever", ""],
            ["fever unspecified", "pyrexia"],
        ]);
        let s = scores(&index, "typhoid fever");
        assert!(s[1] > s[2] && s[1] > s[3] && s[0] == 0.0);
        // "enteric" only in the lighter field still finds document 1.
        let s = scores(&index, "enteric");
        assert!(s[1] > 0.0 && s.iter().enumerate().all(|(i, &v)| i == 1 || v == 0.0));
        // The same single word counts for more in the heavier field.
        let index = build(&[["pyrexia", "fever"], ["fever", "pyrexia"]]);
        let s = scores(&index, "pyrexia");
        assert!(s[0] > s[1] && s[1] > 0.0);
    }

    #[test]
    fn variants_of_a_group_count_once_for_rarity() {
        let mut builder = IndexBuilder::default();
        let add = |text: &str, builder: &mut IndexBuilder| {
            let mut fields: [Vec<u32>; FIELDS] = Default::default();
            fields[0] = text.split_whitespace().map(|word| builder.term_id(word)).collect();
            builder.add(&fields)
        };
        // Three variants of one fracture, two other documents.
        for text in
            ["fractur femur initi", "fractur femur subsequ", "fractur femur sequela", "femur cyst", "cyst"]
        {
            add(text, &mut builder);
        }
        let index = builder.finish(params(), &[0, 0, 0, 3, 4]);
        let id = |term: &str| index.term_id(term).unwrap_or(u32::MAX);
        // Over three groups, "fractur" is in one and "femur" in two.
        assert!(index.idf(id("fractur")) > index.idf(id("femur")));
        assert!((index.idf(id("fractur")) - index.idf(id("initi"))).abs() < 1e-6);
    }

    #[test]
    fn variants_extend_or_shorten_a_term() {
        let mut builder = IndexBuilder::default();
        let mut fields: [Vec<u32>; FIELDS] = Default::default();
        fields[0] = ["tubercul", "tuberculosi", "bancrofti", "tub", "tuberculin"]
            .map(|w| builder.term_id(w))
            .to_vec();
        builder.add(&fields);
        let index = builder.finish(params(), &[]);
        let names = |term: &str| {
            let mut found = Vec::new();
            index.variants(term, 5, 4, |id| found.push(id));
            let mut names: Vec<&str> = index
                .sorted_terms
                .iter()
                .filter(|(_, id)| found.contains(id))
                .map(|(name, _)| &**name)
                .collect();
            names.sort_unstable();
            names
        };
        assert_eq!(names("tubercul"), ["tuberculin", "tuberculosi"]);
        assert_eq!(names("tuberculous"), ["tubercul"]);
        assert_eq!(names("bancroftian"), ["bancrofti"]);
        assert!(names("tub").is_empty());
    }
}
