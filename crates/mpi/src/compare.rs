//! A pair's comparison vector: one level per field, level 0 when either side lacks the
//! field (then the field is no evidence either way), level 1 exact agreement, higher levels
//! weaker agreement, the last level disagreement. Fellegi–Sunter gives each level its own
//! weight, learnt from the data (`model`).

use strsim::{damerau_levenshtein, jaro_winkler};

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

fn edit_levels(a: &str, b: &str) -> u8 {
    if a.is_empty() || b.is_empty() {
        0
    } else if a == b {
        1
    } else if damerau_levenshtein(a, b) <= 1 {
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
    if damerau_levenshtein(x, y) <= 1 {
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
    let digits = |d: (u16, u8, u8)| format!("{:04}{:02}{:02}", d.0, d.1, d.2);
    let (dx, dy) = (digits(x), digits(y));
    if dx.bytes().zip(dy.bytes()).filter(|(p, q)| p != q).count() == 1 {
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
    [
        given_level(a, b),
        family_level(a, b),
        birth_level(a.birth, b.birth),
        same(&a.sex, &b.sex, 2),
        text_levels(&a.street, &b.street, 0.88),
        text_levels(&a.city, &b.city, 0.88),
        edit_levels(&a.postcode, &b.postcode),
        same(&a.state, &b.state, 2),
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
