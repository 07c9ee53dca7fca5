//! Comorbidity indices from ICD-10 diagnoses, as the comorbidipy 0.8 package computes them:
//! Charlson (code maps quan, swedish, australian, shmi; weightings charlson, quan, shmi,
//! shmi_modified; with an age, the age-adjusted score and the 10-year survival), Elixhauser
//! (code map quan; weightings van_walraven, swiss) and the Hospital Frailty Risk Score. The
//! maps and weights are the published ones (`data/comorbidity.tsv`, see its PROVENANCE.md),
//! embedded in the binary.
//!
//! A [`Maps`] is built once and looks each distinct code up once (a code's categories are kept
//! by code), so scoring a million patients costs a hash lookup per diagnosis.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::{Error, Result};

const TABLE: &str = include_str!("../../data/comorbidity.tsv");

/// Which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    Charlson,
    Elixhauser,
}

impl Index {
    pub fn parse(text: &str) -> Result<Index> {
        match text {
            "charlson" => Ok(Index::Charlson),
            "elixhauser" => Ok(Index::Elixhauser),
            other => Err(Error::Invalid(format!("score '{other}' is not charlson, elixhauser or hfrs"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Index::Charlson => "charlson",
            Index::Elixhauser => "elixhauser",
        }
    }

    /// The code maps it has.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            Index::Charlson => &["quan", "swedish", "australian", "shmi"],
            Index::Elixhauser => &["quan"],
        }
    }

    /// The weightings it has.
    pub fn weightings(self) -> &'static [&'static str] {
        match self {
            Index::Charlson => &["charlson", "quan", "shmi", "shmi_modified"],
            Index::Elixhauser => &["van_walraven", "swiss"],
        }
    }

    /// The default weighting (comorbidipy's default, quan, has no Elixhauser weights).
    pub fn default_weighting(self) -> &'static str {
        match self {
            Index::Charlson => "quan",
            Index::Elixhauser => "van_walraven",
        }
    }

    /// The categories whose presence cancels a milder one: (severe, mild).
    fn hierarchy(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Index::Charlson => &[("msld", "mld"), ("diabwc", "diab"), ("metacanc", "canc")],
            Index::Elixhauser => &[("hypc", "hypunc"), ("diabc", "diabunc"), ("metacanc", "solidtum")],
        }
    }
}

/// One index under one code map and one weighting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub index: Index,
    pub variant: &'static str,
    pub weighting: &'static str,
}

impl Scheme {
    /// A scheme by names, checked against what the tables hold.
    pub fn new(index: Index, variant: &str, weighting: &str) -> Result<Scheme> {
        let variant = index.variants().iter().find(|v| **v == variant).ok_or_else(|| {
            Error::Invalid(format!(
                "variant '{variant}' of {}: one of {}",
                index.name(),
                index.variants().join(", ")
            ))
        })?;
        let weighting = index.weightings().iter().find(|w| **w == weighting).ok_or_else(|| {
            Error::Invalid(format!(
                "weighting '{weighting}' of {}: one of {}",
                index.name(),
                index.weightings().join(", ")
            ))
        })?;
        Ok(Scheme { index, variant, weighting })
    }

    fn map_name(&self) -> String {
        format!("{}_icd10_{}", self.index.name(), self.variant)
    }
}

/// A patient's comorbidities under a scheme.
#[derive(Clone, Debug, PartialEq)]
pub struct Comorbidity {
    /// The categories present after the severe-cancels-mild rule, in the table's order.
    pub categories: Vec<&'static str>,
    pub score: f64,
}

/// The HFRS risk category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frailty {
    Low,
    Intermediate,
    High,
}

impl Frailty {
    pub fn of(score: f64) -> Frailty {
        if score < 5.0 {
            Frailty::Low
        } else if score <= 15.0 {
            Frailty::Intermediate
        } else {
            Frailty::High
        }
    }

    /// As comorbidipy names it.
    pub fn name(self) -> &'static str {
        match self {
            Frailty::Low => "Low",
            Frailty::Intermediate => "Intermediate",
            Frailty::High => "High",
        }
    }
}

/// One code map: categories with their prefixes.
struct CodeMap {
    /// (category, prefixes), in the table's order.
    categories: Vec<(&'static str, Vec<&'static str>)>,
}

/// The embedded tables.
pub struct Tables {
    maps: HashMap<String, CodeMap>,
    /// (map name, weighting) -> category -> weight.
    weights: HashMap<(String, String), HashMap<&'static str, f64>>,
    /// HFRS: three-character category -> points.
    hfrs: HashMap<&'static str, f64>,
}

/// The embedded tables, parsed once.
pub fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| parse_tables(TABLE))
}

fn parse_tables(text: &'static str) -> Tables {
    let mut tables = Tables { maps: HashMap::new(), weights: HashMap::new(), hfrs: HashMap::new() };
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&'static str> = line.split('\t').collect();
        match fields.as_slice() {
            ["map", name, category, prefixes] => tables
                .maps
                .entry(name.to_string())
                .or_insert_with(|| CodeMap { categories: Vec::new() })
                .categories
                .push((category, prefixes.split(',').filter(|p| !p.is_empty()).collect())),
            ["weight", name, weighting, category, weight] => {
                tables
                    .weights
                    .entry((name.to_string(), weighting.to_string()))
                    .or_default()
                    .insert(category, weight.parse().unwrap_or(0.0));
            }
            ["hfrs", code, weight] => {
                tables.hfrs.insert(code, weight.parse().unwrap_or(0.0));
            }
            // The table is embedded and checked by the tests; a line of another kind is not
            // one of its kinds and means nothing here.
            _ => {}
        }
    }
    tables
}

/// Every code prefix of every embedded map and every HFRS category (for generating test and
/// benchmark diagnoses).
pub fn all_prefixes() -> Vec<&'static str> {
    let tables = tables();
    let mut all: Vec<&'static str> = tables
        .maps
        .values()
        .flat_map(|map| map.categories.iter().flat_map(|(_, prefixes)| prefixes.iter().copied()))
        .chain(tables.hfrs.keys().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// A scheme ready to score: its code map, weights and a cache of each code's categories.
pub struct Scorer {
    scheme: Scheme,
    categories: &'static [(&'static str, Vec<&'static str>)],
    weights: &'static HashMap<&'static str, f64>,
    /// Code (without dot) -> indices into `categories`.
    by_code: HashMap<String, Vec<u8>>,
}

impl Scorer {
    pub fn new(scheme: Scheme) -> Result<Scorer> {
        let tables = tables();
        let map = tables
            .maps
            .get(&scheme.map_name())
            .ok_or_else(|| Error::Invalid(format!("no code map {}", scheme.map_name())))?;
        let weights =
            tables.weights.get(&(scheme.map_name(), scheme.weighting.to_string())).ok_or_else(|| {
                Error::Invalid(format!("no {} weights for {}", scheme.weighting, scheme.map_name()))
            })?;
        Ok(Scorer { scheme, categories: &map.categories, weights, by_code: HashMap::new() })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The categories a code (without its dot) counts for.
    fn categories_of(&mut self, code: &str) -> &[u8] {
        if !self.by_code.contains_key(code) {
            let found: Vec<u8> = self
                .categories
                .iter()
                .enumerate()
                .filter(|(_, (_, prefixes))| prefixes.iter().any(|p| code.starts_with(p)))
                .map(|(at, _)| at as u8)
                .collect();
            self.by_code.insert(code.to_string(), found);
        }
        self.by_code.get(code).map_or(&[], Vec::as_slice)
    }

    /// The comorbidities of one patient's codes (without dots; as given, as comorbidipy
    /// matches them).
    pub fn score<'a>(&mut self, codes: impl IntoIterator<Item = &'a str>) -> Comorbidity {
        let mut present = [false; 64];
        for code in codes {
            for &at in self.categories_of(code) {
                present[at as usize] = true;
            }
        }
        let position = |name: &str| self.categories.iter().position(|(c, _)| *c == name);
        for (severe, mild) in self.scheme.index.hierarchy() {
            if let (Some(severe), Some(mild)) = (position(severe), position(mild))
                && present[severe]
            {
                present[mild] = false;
            }
        }
        let categories: Vec<&'static str> =
            self.categories.iter().enumerate().filter(|(at, _)| present[*at]).map(|(_, (c, _))| *c).collect();
        // Summed in the weights' order over the categories present, from 0.0, as comorbidipy
        // sums its columns.
        let mut score = 0.0;
        for category in &categories {
            score += self.weights.get(category).copied().unwrap_or(0.0);
        }
        if matches!(self.scheme.weighting, "shmi" | "shmi_modified") && score < 0.0 {
            score = 0.0;
        }
        Comorbidity { categories, score }
    }
}

/// The Charlson score adjusted for age: a point per decade over 40, at most 4.
pub fn age_adjusted(score: f64, age: f64) -> f64 {
    score + ((age - 40.0) / 10.0).floor().clamp(0.0, 4.0)
}

/// The Charlson 10-year survival of an age-adjusted score: 0.983^exp(0.9 × score).
pub fn survival_10yr(age_adjusted_score: f64) -> f64 {
    0.983f64.powf((0.9 * age_adjusted_score).exp())
}

/// The Hospital Frailty Risk Score of a patient's codes: each distinct code whose first three
/// characters (trimmed, upper case) are an HFRS category adds its points.
pub fn hfrs<'a>(codes: impl IntoIterator<Item = &'a str>) -> (f64, Frailty) {
    let table = &tables().hfrs;
    let mut seen: Vec<&str> = Vec::new();
    let mut score = 0.0;
    for code in codes {
        if seen.contains(&code) {
            continue;
        }
        seen.push(code);
        let key: String = code.trim().chars().take(3).collect::<String>().to_uppercase();
        if let Some(points) = table.get(key.as_str()) {
            score += points;
        }
    }
    (score, Frailty::of(score))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(index: Index, variant: &str, weighting: &str) -> Scorer {
        Scorer::new(Scheme::new(index, variant, weighting).unwrap()).unwrap()
    }

    /// Hand-computed from the published tables (Quan 2005 codes, Charlson 1987 and Quan 2011
    /// weights), as comorbidipy 0.8 printed them for the same input.
    #[test]
    fn charlson_by_hand() {
        let mut charlson = scorer(Index::Charlson, "quan", "charlson");
        // I21 (acute MI, 1) and K703 (alcoholic cirrhosis: mild liver disease, 1).
        let a = charlson.score(["I21", "K703"]);
        assert_eq!(a.categories, vec!["ami", "mld"]);
        assert_eq!(a.score, 2.0);
        assert_eq!(age_adjusted(a.score, 70.0), 5.0);
        assert!((survival_10yr(5.0) - 0.213_643).abs() < 1e-6);
        // C78 (metastatic, 6); age 30 adds nothing.
        let b = charlson.score(["C78"]);
        assert_eq!((b.score, age_adjusted(b.score, 30.0)), (6.0, 6.0));
        assert!((survival_10yr(6.0) - 0.022_454).abs() < 1e-6);
        // Severe cancels mild: diabetes with complications (E112) cancels without (E119).
        let c = charlson.score(["E119", "E112"]);
        assert_eq!((c.categories.clone(), c.score), (vec!["diabwc"], 2.0));
        let mut quan = scorer(Index::Charlson, "quan", "quan");
        assert_eq!(quan.score(["E119", "E112"]).score, 1.0);
        assert_eq!(quan.score(["I21"]).score, 0.0);
        assert_eq!(charlson.score(["Z000"]).score, 0.0);
    }

    #[test]
    fn elixhauser_and_hfrs_by_hand() {
        let mut vw = scorer(Index::Elixhauser, "quan", "van_walraven");
        // I50 congestive heart failure (7), I10 hypertension uncomplicated (0), I110
        // hypertensive heart disease with failure: complicated (0, cancels uncomplicated, and
        // also heart failure).
        let e = vw.score(["I50", "I10", "I110"]);
        assert!(e.categories.contains(&"chf") && e.categories.contains(&"hypc"));
        assert!(!e.categories.contains(&"hypunc"));
        assert_eq!(e.score, 7.0);
        // Valvular disease weighs -1.
        assert_eq!(vw.score(["I05"]).score, -1.0);
        // HFRS: two codes of one category both count, as in comorbidipy; F00 is 7.1.
        let (score, category) = hfrs(["F001", "F002"]);
        assert!((score - 14.2).abs() < 1e-12);
        assert_eq!(category, Frailty::Intermediate);
        assert_eq!(hfrs(["F00", "F00"]).0, 7.1);
        assert_eq!(hfrs(["Z00"]).1, Frailty::Low);
        assert!(Scheme::new(Index::Elixhauser, "quan", "charlson").is_err());
        assert!(Scheme::new(Index::Charlson, "german", "quan").is_err());
    }
}
