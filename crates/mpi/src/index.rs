//! The index a server keeps for matching one person at a time (`Patient/$match`, the check
//! at registration): every registered person by each blocking key, and the model estimated
//! over the whole set.

use std::collections::HashMap;

use crate::blocking::{KEYS, MAX_BLOCK, keys};
use crate::compare::{Vector, compare};
use crate::linkage::{LINK_THRESHOLD, REVIEW_THRESHOLD, run};
use crate::model::{Model, TermFrequencies, Training};
use crate::person::Person;

/// FHIR's `match-grade` of a probability.
pub fn grade(probability: f64) -> &'static str {
    if probability >= LINK_THRESHOLD {
        "certain"
    } else if probability >= REVIEW_THRESHOLD {
        "probable"
    } else {
        "possible"
    }
}

/// A registered person found for a query.
#[derive(Clone, Debug)]
pub struct Found {
    pub id: String,
    pub probability: f64,
    pub vector: Vector,
}

/// Registered people by blocking key, kept current one registration at a time; the model is
/// estimated again only once the people changed by a tenth since it was (a new registration
/// changes the m and u of a large register by nothing worth a rebuild).
pub struct Index {
    people: Vec<Person>,
    /// People replaced by a later version or no longer registered (left in place, skipped).
    gone: Vec<bool>,
    by_id: HashMap<String, u32>,
    blocks: Vec<HashMap<String, Vec<u32>>>,
    pub model: Model,
    pub frequencies: TermFrequencies,
    /// Registrations added or changed since the model was estimated.
    changed: usize,
}

/// Below this probability a registered person is not worth showing.
pub const SHOWN_FROM: f64 = 0.1;

impl Index {
    /// Estimates the model over `people` (as a deduplication run does) and indexes them.
    pub fn build(people: Vec<Person>, training: &Training) -> Index {
        let estimated = run(&people, training);
        let mut index = Index {
            people: Vec::with_capacity(people.len()),
            gone: Vec::with_capacity(people.len()),
            by_id: HashMap::with_capacity(people.len()),
            blocks: (0..KEYS).map(|_| HashMap::new()).collect(),
            model: estimated.model,
            frequencies: estimated.frequencies,
            changed: 0,
        };
        for person in people {
            index.insert(person);
        }
        index.changed = 0;
        index
    }

    fn insert(&mut self, person: Person) {
        let at = self.people.len() as u32;
        for (rule, key) in keys(&person).into_iter().enumerate() {
            if !key.is_empty() {
                self.blocks[rule].entry(key).or_default().push(at);
            }
        }
        if let Some(previous) = self.by_id.insert(person.id.clone(), at) {
            self.gone[previous as usize] = true;
        }
        self.people.push(person);
        self.gone.push(false);
        self.changed += 1;
    }

    /// A registration added or changed.
    pub fn upsert(&mut self, person: Person) {
        self.insert(person);
    }

    /// A registration deleted, or merged away.
    pub fn remove(&mut self, id: &str) {
        if let Some(at) = self.by_id.remove(id) {
            self.gone[at as usize] = true;
            self.changed += 1;
        }
    }

    /// Whether the people changed enough since the model was estimated to estimate it again.
    pub fn needs_estimate(&self) -> bool {
        self.changed * 10 > self.by_id.len().max(100)
    }

    /// The people registered now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The registered people who may be `person`, most probable first, at or above
    /// [`SHOWN_FROM`]; a registered person with the same id is left out.
    pub fn matches(&self, person: &Person) -> Vec<Found> {
        let mut candidates: Vec<u32> = Vec::new();
        for (rule, key) in keys(person).into_iter().enumerate() {
            if key.is_empty() {
                continue;
            }
            if let Some(members) = self.blocks[rule].get(&key)
                && members.len() <= MAX_BLOCK
            {
                candidates.extend(members);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut found: Vec<Found> = candidates
            .into_iter()
            .filter(|&i| !self.gone[i as usize])
            .map(|i| &self.people[i as usize])
            .filter(|other| person.id.is_empty() || other.id != person.id)
            .map(|other| {
                let vector = compare(person, other);
                let (probability, _) = self.model.score(person, &vector, &self.frequencies);
                Found { id: other.id.clone(), probability, vector }
            })
            .filter(|f| f.probability >= SHOWN_FROM)
            .collect();
        found.sort_by(|a, b| b.probability.total_cmp(&a.probability).then_with(|| a.id.cmp(&b.id)));
        found
    }
}

impl Index {
    /// The registered person with this id.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.by_id.get(id).map(|&at| &self.people[at as usize])
    }

    /// Every pair of registered people at or above `from`, each once (the lower id first),
    /// most probable first: the review queue's source.
    pub fn pairs(&self, from: f64) -> Vec<(String, Found)> {
        let mut pairs = Vec::new();
        for (at, person) in self.people.iter().enumerate() {
            if self.gone[at] {
                continue;
            }
            for found in self.matches(person) {
                if found.probability >= from && person.id < found.id {
                    pairs.push((person.id.clone(), found));
                }
            }
        }
        pairs.sort_by(|(a1, f1), (a2, f2)| {
            f2.probability.total_cmp(&f1.probability).then_with(|| a1.cmp(a2)).then_with(|| f1.id.cmp(&f2.id))
        });
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, given: &str, family: &str, birth: (u16, u8, u8)) -> Person {
        Person {
            id: id.into(),
            given: given.into(),
            family: family.into(),
            birth: Some(birth),
            ..Person::default()
        }
    }

    #[test]
    fn registrations_without_names_or_ids_are_never_certain() {
        let mut people: Vec<Person> = (0..50)
            .map(|n| person(&format!("p{n}"), "ann", &format!("family{n}"), (1950 + n as u16, 1, 2)))
            .collect();
        let nameless = |id: &str| Person {
            id: id.into(),
            birth: Some((1950, 1, 1)),
            sex: "male".into(),
            city: "springfield".into(),
            street: "1 elm st".into(),
            postcode: "45402".into(),
            ..Person::default()
        };
        people.push(nameless("n1"));
        people.push(nameless("n2"));
        let index = Index::build(people, &Training::default());
        let found = index.matches(&nameless("n1"));
        let twin = found.iter().find(|f| f.id == "n2").expect("the nameless twin is a candidate");
        assert!(twin.probability <= crate::model::UNIDENTIFIED_MAX, "{}", twin.probability);
        assert_eq!(grade(twin.probability), "probable");
    }

    #[test]
    fn registrations_are_kept_current_without_a_rebuild() {
        let people: Vec<Person> = (0..50)
            .map(|n| person(&format!("p{n}"), "ann", &format!("family{n}"), (1950 + n as u16, 1, 2)))
            .collect();
        let mut index = Index::build(people, &Training::default());
        let query = person("", "ann", "nelson", (1970, 3, 4));
        assert!(index.matches(&query).iter().all(|f| f.id != "new"));
        index.upsert(person("new", "ann", "nelson", (1970, 3, 4)));
        assert_eq!(index.matches(&query).first().map(|f| f.id.as_str()), Some("new"));
        // A changed registration replaces the old one; a removed one is gone.
        index.upsert(Person { city: "dayton".into(), ..person("new", "ann", "nelson", (1970, 3, 4)) });
        assert_eq!(index.matches(&query).iter().filter(|f| f.id == "new").count(), 1);
        let twin = person("twin", "ann", "nelson", (1970, 3, 4));
        index.upsert(twin);
        let pairs = index.pairs(0.5);
        assert_eq!(pairs.len(), 1, "each pair once");
        assert_eq!((pairs[0].0.as_str(), pairs[0].1.id.as_str()), ("new", "twin"));
        index.remove("twin");
        index.remove("new");
        assert!(index.matches(&query).iter().all(|f| f.id != "new"));
        assert_eq!(index.len(), 50);
        assert!(!index.needs_estimate());
    }
}
