//! A pair's comparison vector: one level per field, level 0 when either side lacks the
//! field, or when another field already says it (a shared postcode says the city and state)
//! (then the field is no evidence either way), level 1 exact agreement, higher levels
//! weaker agreement, the last level disagreement. Fellegi–Sunter gives each level its own
//! weight, learnt from the data (`model`).

use crate::names::nickname_of;
use crate::person::Person;

/// A field compared, with its levels' names (index = level).
pub struct Field {
    pub name: &'static str,
    pub levels: &'static [&'static str],
}

pub const FIELDS: [Field; 10] = [
    Field {
        name: "given",
        levels: &[
            "missing",
            "exact",
            "nickname or swapped with family",
            "jaro-winkler >= 0.92",
            "jaro-winkler >= 0.80",
            "different",
        ],
    },
    Field {
        name: "family",
        levels: &[
            "missing",
            "exact",
            "another of their family names",
            "one edit",
            "jaro-winkler >= 0.80",
            "different",
        ],
    },
    Field {
        name: "birthDate",
        levels: &[
            "missing",
            "exact",
            "day and month transposed",
            "one digit off",
            "year off by one or same year and month",
            "different",
        ],
    },
    Field { name: "sex", levels: &["missing", "same", "different"] },
    Field { name: "street", levels: &["missing", "exact", "jaro-winkler >= 0.88", "different"] },
    Field { name: "city", levels: &["missing", "exact", "jaro-winkler >= 0.88", "different"] },
    Field { name: "postcode", levels: &["missing", "exact", "one edit", "different"] },
    Field { name: "state", levels: &["missing", "exact", "different"] },
    Field { name: "phone", levels: &["missing", "exact", "one edit", "different"] },
    Field { name: "nationalId", levels: &["missing", "exact", "one edit", "different"] },
];

/// Indices into [`FIELDS`] of the fields whose exact agreement is weighed by how common the
/// value is (term-frequency adjustment).
pub const GIVEN: usize = 0;
pub const FAMILY: usize = 1;
pub const CITY: usize = 5;

pub type Vector = [u8; 10];

fn text_levels(a: &str, b: &str, close: f64) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else if jaro_winkler(a, b) >= close {
        2
    } else {
        3
    }
}

/// Jaro–Winkler similarity (prefix scale 0.1, up to 4 letters), without allocating for the
/// short strings registrations hold (longer ones fall back to `strsim`).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if x.len() > 64 || y.len() > 64 || !a.is_ascii() || !b.is_ascii() {
        return strsim::jaro_winkler(a, b);
    }
    if x.is_empty() && y.is_empty() {
        return 1.0;
    }
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let window = (x.len().max(y.len()) / 2).saturating_sub(1);
    let (mut x_matched, mut y_matched) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &c) in x.iter().enumerate() {
        let low = i.saturating_sub(window);
        let high = (i + window + 1).min(y.len());
        for (j, &d) in y.iter().enumerate().take(high).skip(low) {
            if y_matched & (1 << j) == 0 && d == c {
                x_matched |= 1 << i;
                y_matched |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0usize;
    for (i, &c) in x.iter().enumerate() {
        if x_matched & (1 << i) == 0 {
            continue;
        }
        while y_matched & (1 << j) == 0 {
            j += 1;
        }
        if c != y[j] {
            transpositions += 1;
        }
        j += 1;
    }
    let m = matches as f64;
    let jaro = (m / x.len() as f64 + m / y.len() as f64 + (m - (transpositions / 2) as f64) / m) / 3.0;
    let prefix = x.iter().zip(y).take(4).take_while(|(p, q)| p == q).count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

/// Whether `b` is `a` with at most one edit: a letter changed, added or dropped, or two
/// neighbours swapped (Damerau–Levenshtein distance ≤ 1), without allocating.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    let suffix = ra.iter().rev().zip(rb.iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&ra[..ra.len() - suffix.min(ra.len())], &rb[..rb.len() - suffix.min(rb.len())]);
    match (ma.len(), mb.len()) {
        (0, 0) | (1, 1) | (1, 0) | (0, 1) => true,
        (2, 2) => ma[0] == mb[1] && ma[1] == mb[0],
        _ => false,
    }
}

fn edit_levels(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else if within_one_edit(a, b) {
        2
    } else {
        3
    }
}

fn given_level(a: &Person, b: &Person) -> u8 {
    let (x, y) = (a.given.as_str(), b.given.as_str());
    if x.is_empty() || y.is_empty() {
        return 0;
    }
    if x == y {
        return 1;
    }
    let swapped = !a.family.is_empty() && x == b.family && y == a.family;
    if swapped || nickname_of(x, y) {
        return 2;
    }
    let similarity = jaro_winkler(x, y);
    if similarity >= 0.92 {
        3
    } else if similarity >= 0.80 {
        4
    } else {
        5
    }
}

fn family_level(a: &Person, b: &Person) -> u8 {
    let (x, y) = (a.family.as_str(), b.family.as_str());
    if x.is_empty() || y.is_empty() {
        return 0;
    }
    if x == y {
        return 1;
    }
    let swapped = x == b.given && y == a.given;
    let known = a.other_families.iter().any(|f| f == y || b.other_families.contains(f))
        || b.other_families.iter().any(|f| f == x);
    if swapped || known {
        return 2;
    }
    if within_one_edit(x, y) {
        3
    } else if jaro_winkler(x, y) >= 0.80 {
        4
    } else {
        5
    }
}

fn birth_level(a: Option<(u16, u8, u8)>, b: Option<(u16, u8, u8)>) -> u8 {
    let (Some(x), Some(y)) = (a, b) else { return 0 };
    if x == y {
        return 1;
    }
    if x.0 == y.0 && x.1 == y.2 && x.2 == y.1 {
        return 2;
    }
    let digits = |d: (u16, u8, u8)| {
        let (y, m, d) = (d.0 as u32, d.1 as u32, d.2 as u32);
        [y / 1000 % 10, y / 100 % 10, y / 10 % 10, y % 10, m / 10, m % 10, d / 10, d % 10]
    };
    if digits(x).iter().zip(digits(y).iter()).filter(|(p, q)| p != q).count() == 1 {
        return 3;
    }
    if (x.1 == y.1 && x.2 == y.2 && x.0.abs_diff(y.0) == 1) || (x.0 == y.0 && x.1 == y.1) { 4 } else { 5 }
}

/// The comparison vector of two people.
pub fn compare(a: &Person, b: &Person) -> Vector {
    let same = |x: &str, y: &str, different: u8| {
        if x.is_empty() || y.is_empty() {
            0
        } else if x == y {
            1
        } else {
            different
        }
    };
    let postcode = edit_levels(&a.postcode, &b.postcode);
    let mut city = text_levels(&a.city, &b.city, 0.88);
    let mut state = same(&a.state, &b.state, 2);
    // A shared postcode implies the city and state, a shared city the state: counting them
    // again would weigh one fact (living nearby) three times.
    if matches!(postcode, 1 | 2) {
        city = 0;
        state = 0;
    } else if city == 1 {
        state = 0;
    }
    [
        given_level(a, b),
        family_level(a, b),
        birth_level(a.birth, b.birth),
        same(&a.sex, &b.sex, 2),
        text_levels(&a.street, &b.street, 0.88),
        city,
        postcode,
        state,
        edit_levels(&a.phone, &b.phone),
        edit_levels(&a.national_id, &b.national_id),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, family: &str, birth: (u16, u8, u8)) -> Person {
        Person { given: given.into(), family: family.into(), birth: Some(birth), ..Person::default() }
    }

    #[test]
    fn jaro_winkler_agrees_with_strsim() {
        for (a, b) in [
            ("martha", "marhta"),
            ("dwayne", "duane"),
            ("dixon", "dicksonx"),
            ("nelson", "nelsn"),
            ("a", "b"),
            ("", "x"),
            ("abc", "abc"),
            ("crate", "trace"),
        ] {
            assert!((jaro_winkler(a, b) - strsim::jaro_winkler(a, b)).abs() < 1e-12, "{a} {b}");
        }
    }

    #[test]
    fn one_edit_is_one_change_addition_omission_or_swap() {
        for (a, b) in [
            ("nelson", "nelson"),
            ("nelson", "nelsn"),
            ("nelson", "nellson"),
            ("nelson", "nelsen"),
            ("nelson", "nelosn"),
            ("ab", "ba"),
            ("", "a"),
        ] {
            assert!(within_one_edit(a, b) && within_one_edit(b, a), "{a} {b}");
        }
        for (a, b) in
            [("nelson", "nlesno"), ("nelson", "nels"), ("abc", "cba"), ("ab", "cd"), ("nelson", "nelsonxx")]
        {
            assert!(!within_one_edit(a, b) && !within_one_edit(b, a), "{a} {b}");
        }
    }

    #[test]
    fn each_kind_of_registration_error_has_its_level() {
        let original = person("william", "nelson", (1970, 3, 4));
        assert_eq!(compare(&original, &original)[..3], [1, 1, 1]);
        assert_eq!(compare(&original, &person("bill", "nelson", (1970, 4, 3)))[..3], [2, 1, 2]);
        assert_eq!(compare(&original, &person("wiliam", "nelsn", (1971, 3, 4)))[..3], [3, 3, 3]);
        assert_eq!(compare(&original, &person("nelson", "william", (1970, 3, 4)))[..3], [2, 2, 1]);
        let mut married = person("william", "smith", (1970, 3, 4));
        married.other_families = vec!["nelson".into()];
        assert_eq!(compare(&original, &married)[1], 2);
        assert_eq!(compare(&original, &person("", "nelson", (1969, 3, 4)))[..3], [0, 1, 4]);
        assert_eq!(compare(&original, &person("mary", "jones", (1985, 11, 20)))[..3], [5, 5, 5]);
    }
}
