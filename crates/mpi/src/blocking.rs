//! Candidate pairs: people who share at least one blocking key. Each key is cheap to compute
//! and selective, and a duplicate with one kind of registration error still shares the keys
//! that error leaves alone, so together they find pairs that differ in any one or two fields
//! while the number of pairs grows about linearly with the number of people.
//!
//! | key | catches a duplicate with |
//! |---|---|
//! | Soundex(family) + birth year | a typo in the given name, a transposed day and month, a new address |
//! | national id | any change of name, birth date or address |
//! | postcode + birth date | a new family name (maiden), a typo in either name |
//! | given name's first 3 letters (nicknames as their formal name) + birth date | a new family name and a new address |
//! | Soundex(given) + Soundex(family) + postcode | a wrong birth date |
//! | Soundex(family) + street number and first letters of the street | a wrong birth date at the same address |
//! | both names' Soundex codes in order + birth year | given and family names swapped |
//! | birth date + state | typos in both names and the postcode |
//! | Soundex(given) + street number and first letters of the street | a new family name and a wrong birth date |
//!
//! A key value shared by more than [`MAX_BLOCK`] people (a missing value, a very common name
//! in one year) is not a block: it would add pairs by the thousand and nearly no matches.

use crate::names::{formal, soundex};
use crate::person::Person;

/// The most people one key value may gather.
pub const MAX_BLOCK: usize = 200;

/// The blocking keys of a person, one per rule (empty when the rule's fields are missing).
pub const KEYS: usize = 9;

pub fn keys(person: &Person) -> [String; KEYS] {
    let year = person.birth.map(|(y, _, _)| y.to_string()).unwrap_or_default();
    let date = person.birth.map(|(y, m, d)| format!("{y:04}{m:02}{d:02}")).unwrap_or_default();
    let family = soundex(&person.family);
    let given_formal = formal(&person.given);
    let given = soundex(given_formal);
    let both =
        |a: &str, b: &str| if a.is_empty() || b.is_empty() { String::new() } else { format!("{a}|{b}") };
    let prefix: String = given_formal.chars().take(3).collect();
    let street: String = person.street.chars().filter(|c| !c.is_whitespace()).take(6).collect();
    [
        both(&family, &year),
        person.national_id.clone(),
        both(&person.postcode, &date),
        both(&prefix, &date),
        if person.postcode.is_empty() {
            String::new()
        } else {
            both(&both(&given, &family), &person.postcode)
        },
        both(&family, &street),
        {
            let (low, high) = if given <= family { (&given, &family) } else { (&family, &given) };
            if low.is_empty() { String::new() } else { both(&both(low, high), &year) }
        },
        both(&date, &person.state),
        both(&given, &street),
    ]
}

/// The fields (indices into `compare::FIELDS`) a pair found by each rule agrees on by
/// construction, or nearly (a shared postcode or street means a shared city and state): the
/// estimation of a rule's pairs learns nothing about them.
pub const FIXED_BY: [&[usize]; KEYS] = [
    &[1, 2],
    &[9],
    &[2, 4, 5, 6, 7],
    &[0, 2],
    &[0, 1, 4, 5, 6, 7],
    &[1, 4, 5, 6, 7],
    &[0, 1, 2],
    &[2, 4, 5, 6, 7],
    &[0, 4, 5, 6, 7],
];

/// Every pair (i < j, indices into `people`) sharing a key, each once, in order.
pub fn candidate_pairs(people: &[Person]) -> Vec<(u32, u32)> {
    candidate_pairs_by_rule(people).into_iter().map(|(a, b, _)| (a, b)).collect()
}

/// Every candidate pair with the rules (bit `r` for rule `r`) that found it.
pub fn candidate_pairs_by_rule(people: &[Person]) -> Vec<(u32, u32, u16)> {
    let keyed: Vec<[String; KEYS]> = people.iter().map(keys).collect();
    let mut pairs: Vec<(u64, u16)> = Vec::new();
    let mut order: Vec<u32> = Vec::with_capacity(people.len());
    // `rule` picks one key of every person's array, not an element of `keyed`.
    #[allow(clippy::needless_range_loop)]
    for rule in 0..KEYS {
        order.clear();
        order.extend((0..people.len() as u32).filter(|&i| !keyed[i as usize][rule].is_empty()));
        order.sort_unstable_by(|&a, &b| keyed[a as usize][rule].cmp(&keyed[b as usize][rule]));
        let mut start = 0;
        while start < order.len() {
            let key = &keyed[order[start] as usize][rule];
            let mut end = start + 1;
            while end < order.len() && keyed[order[end] as usize][rule] == *key {
                end += 1;
            }
            if end - start <= MAX_BLOCK {
                for a in start..end {
                    for b in a + 1..end {
                        let (i, j) = (order[a].min(order[b]), order[a].max(order[b]));
                        pairs.push((u64::from(i) << 32 | u64::from(j), 1 << rule));
                    }
                }
            }
            start = end;
        }
    }
    pairs.sort_unstable_by_key(|p| p.0);
    let mut merged: Vec<(u32, u32, u16)> = Vec::with_capacity(pairs.len());
    for (pair, rule) in pairs {
        let (a, b) = ((pair >> 32) as u32, pair as u32);
        match merged.last_mut() {
            Some(last) if last.0 == a && last.1 == b => last.2 |= rule,
            _ => merged.push((a, b, rule)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, family: &str, birth: (u16, u8, u8), postcode: &str, id: &str) -> Person {
        Person {
            given: given.into(),
            family: family.into(),
            birth: Some(birth),
            postcode: postcode.into(),
            national_id: id.into(),
            ..Person::default()
        }
    }

    #[test]
    fn a_duplicate_with_one_error_shares_a_key() {
        let people = vec![
            person("robert", "nelson", (1970, 3, 4), "43215", "123"),
            person("bob", "nelson", (1970, 3, 4), "43215", ""), // nickname, no id
            person("robert", "smith", (1970, 3, 4), "43215", ""), // maiden name
            person("robert", "nelsn", (1970, 4, 3), "43215", ""), // typo, transposed date
            person("alice", "other", (1990, 1, 1), "10001", "999"), // nobody
        ];
        let pairs = candidate_pairs(&people);
        for pair in [(0, 1), (0, 2), (0, 3)] {
            assert!(pairs.contains(&pair), "{pair:?} in {pairs:?}");
        }
        assert!(!pairs.iter().any(|&(a, b)| a == 4 || b == 4));
        // Sorted and unique.
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
    }
}
