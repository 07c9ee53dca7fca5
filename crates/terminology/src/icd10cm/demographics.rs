//! Which codes fit only one sex or only some ages.
//!
//! The tabular list does not carry these as data; claim editors (the Medicare Code Editor's
//! "diagnoses for females/males only", "newborn" and "maternity" edits) apply them. The ranges
//! here follow the classification's own chapters and blocks whose titles restrict them
//! ("female genital organs", "pregnancy, childbirth and the puerperium", "perinatal period"),
//! which is where nearly all of those editors' codes sit. The ages are the editors': newborn
//! codes at age 0, maternity codes at ages 9 to 64.

/// Administrative sex as FHIR records it (`Patient.gender`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sex {
    Female,
    Male,
}

/// A code range restricted to one sex.
#[derive(Clone, Copy, Debug)]
pub struct SexRule {
    pub sex: Sex,
    /// Why, for the edit's message.
    pub reason: &'static str,
}

/// A code range restricted to some ages (in whole years, inclusive).
#[derive(Clone, Copy, Debug)]
pub struct AgeRule {
    pub min: u32,
    pub max: u32,
    pub reason: &'static str,
    /// `false` where the guidelines allow exceptions, so a conflict is a warning: a perinatal
    /// condition that persists keeps its P code for life (guideline I.C.16.a.4).
    pub strict: bool,
}

impl AgeRule {
    /// Whether some age in `youngest..=oldest` is allowed.
    pub fn allows_any(&self, youngest: u32, oldest: u32) -> bool {
        youngest <= self.max && oldest >= self.min
    }
}

/// Ranges by code without the dot, compared on the first characters: `("C51", "C58")` holds
/// C51.0 through C58.9; `("D07", "D073")` holds D07.0 through D07.39.
const FEMALE: &[(&str, &str, &str)] = &[
    ("C51", "C58", "malignant neoplasms of female genital organs"),
    ("D06", "D06", "carcinoma in situ of cervix uteri"),
    ("D070", "D073", "carcinoma in situ of female genital organs"),
    ("D25", "D28", "benign neoplasms of female genital organs"),
    ("D39", "D39", "neoplasms of uncertain behavior of female genital organs"),
    ("N70", "N77", "inflammatory diseases of female pelvic organs"),
    ("N80", "N98", "noninflammatory disorders of female genital tract"),
    ("O00", "O9A", "pregnancy, childbirth and the puerperium"),
    ("Q50", "Q52", "congenital malformations of female genital organs"),
    ("R87", "R87", "abnormal findings in specimens from female genital organs"),
    ("Z32", "Z37", "encounters related to pregnancy and outcome of delivery"),
    ("Z39", "Z39", "postpartum care"),
    ("Z3A", "Z3A", "weeks of gestation"),
];

const MALE: &[(&str, &str, &str)] = &[
    ("C60", "C63", "malignant neoplasms of male genital organs"),
    ("D074", "D076", "carcinoma in situ of male genital organs"),
    ("D29", "D29", "benign neoplasms of male genital organs"),
    ("D40", "D40", "neoplasms of uncertain behavior of male genital organs"),
    ("N40", "N53", "diseases of male genital organs"),
    ("Q53", "Q55", "congenital malformations of male genital organs"),
    ("R86", "R86", "abnormal findings in specimens from male genital organs"),
];

const AGES: &[(&str, &str, AgeRule)] = &[
    (
        "P00",
        "P96",
        AgeRule {
            min: 0,
            max: 0,
            reason: "perinatal conditions are coded on the newborn's record, unless they persist",
            strict: false,
        },
    ),
    (
        "Z38",
        "Z38",
        AgeRule {
            min: 0,
            max: 0,
            reason: "liveborn infant codes belong on the newborn's birth record",
            strict: true,
        },
    ),
    ("O00", "O9A", AgeRule { min: 9, max: 64, reason: "maternity codes", strict: true }),
    (
        "Z37",
        "Z37",
        AgeRule { min: 9, max: 64, reason: "outcome of delivery is a maternity code", strict: true },
    ),
    (
        "Z3A",
        "Z3A",
        AgeRule { min: 9, max: 64, reason: "weeks of gestation is a maternity code", strict: true },
    ),
];

/// Whether `code` (with or without the dot) falls in `first..=last`, compared on as many
/// characters as each endpoint has.
fn in_range(code: &str, first: &str, last: &str) -> bool {
    let code: String = code.chars().filter(|c| *c != '.').map(|c| c.to_ascii_uppercase()).collect();
    let head = |n: usize| &code[..n.min(code.len())];
    head(first.len()) >= first && head(last.len()) <= last
}

/// The sex restriction of `code`, if any.
pub fn sex_rule(code: &str) -> Option<SexRule> {
    let find = |table: &[(&str, &str, &'static str)], sex: Sex| {
        table
            .iter()
            .find(|(first, last, _)| in_range(code, first, last))
            .map(|&(_, _, reason)| SexRule { sex, reason })
    };
    find(FEMALE, Sex::Female).or_else(|| find(MALE, Sex::Male))
}

/// The age restriction of `code`, if any.
pub fn age_rule(code: &str) -> Option<AgeRule> {
    AGES.iter().find(|(first, last, _)| in_range(code, first, last)).map(|&(_, _, rule)| rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compare_on_the_endpoints_length() {
        assert!(in_range("D07.39", "D070", "D073"));
        assert!(!in_range("D07.4", "D070", "D073"));
        assert!(in_range("O9A.12", "O00", "O9A"));
        assert!(in_range("O99.89", "O00", "O9A"));
        assert!(!in_range("P96.9", "O00", "O9A"));
        assert!(matches!(sex_rule("N40.0"), Some(SexRule { sex: Sex::Male, .. })));
        assert!(matches!(sex_rule("O80"), Some(SexRule { sex: Sex::Female, .. })));
        assert!(sex_rule("E11.9").is_none());
        assert!(age_rule("P07.30").is_some_and(|r| r.max == 0));
        assert!(age_rule("I10").is_none());
    }
}
