//! Syndrome definitions: named sets of ICD-10-CM codes and ranges that public-health
//! surveillance counts, built in or saved as `DIR/syndromes/NAME.json`.
//!
//! A rule is a code (`R19.7`: that code and every code below it, as `:below`), or a range
//! (`A00-A09`: every code whose leading characters fall between the two ends, inclusive, and
//! every code below those). Dots and case do not matter.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A named syndrome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syndrome {
    /// The name used on the command line and in `$surveillance?syndrome=` (lowercase letters,
    /// digits and hyphens).
    pub name: String,
    /// What a report calls it.
    pub title: String,
    /// The ICD-10-CM codes and ranges, each with the codes below it.
    pub codes: Vec<String>,
}

/// One rule, normalised: upper case, no dots.
#[derive(Clone, Debug)]
enum Rule {
    Below(String),
    Range(String, String),
}

/// A syndrome ready to match codes.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub syndrome: Syndrome,
    rules: Vec<Rule>,
}

fn normalise(code: &str) -> String {
    code.trim().chars().filter(|c| *c != '.').map(|c| c.to_ascii_uppercase()).collect()
}

fn valid_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && code.len() >= 3
        && code.len() <= 7
        && code.chars().all(|c| c.is_ascii_alphanumeric())
}

impl Syndrome {
    /// Checks the name and every rule, and prepares the matcher.
    pub fn matcher(&self) -> Result<Matcher> {
        if !valid_name(&self.name) {
            return Err(Error::Invalid(format!(
                "syndrome name '{}' must be 1 to 64 lowercase letters, digits and hyphens",
                self.name
            )));
        }
        if self.codes.is_empty() {
            return Err(Error::Invalid(format!("syndrome '{}' lists no codes", self.name)));
        }
        let mut rules = Vec::with_capacity(self.codes.len());
        for (index, rule) in self.codes.iter().enumerate() {
            let parsed = match rule.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (normalise(low), normalise(high));
                    if low > high {
                        return Err(Error::Invalid(format!(
                            "syndrome '{}' codes[{index}]: range '{rule}' runs backwards",
                            self.name
                        )));
                    }
                    (valid_code(&low) && valid_code(&high)).then_some(Rule::Range(low, high))
                }
                None => {
                    let code = normalise(rule);
                    valid_code(&code).then_some(Rule::Below(code))
                }
            };
            let Some(parsed) = parsed else {
                return Err(Error::Invalid(format!(
                    "syndrome '{}' codes[{index}]: '{rule}' is not an ICD-10-CM code or range (e.g. R19.7 or A00-A09)",
                    self.name
                )));
            };
            rules.push(parsed);
        }
        Ok(Matcher { syndrome: self.clone(), rules })
    }
}

impl Matcher {
    /// Whether an ICD-10-CM code (with or without its dot) falls in the syndrome.
    pub fn matches(&self, code: &str) -> bool {
        let mut buffer = [0u8; 8];
        let mut length = 0;
        for byte in code.bytes() {
            if byte == b'.' {
                continue;
            }
            if length == buffer.len() {
                return false;
            }
            buffer[length] = byte.to_ascii_uppercase();
            length += 1;
        }
        let code = &buffer[..length];
        self.rules.iter().any(|rule| match rule {
            Rule::Below(prefix) => code.starts_with(prefix.as_bytes()),
            Rule::Range(low, high) => {
                let lead = |end: &str| &code[..code.len().min(end.len())];
                lead(low) >= low.as_bytes() && lead(high) <= high.as_bytes()
            }
        })
    }
}

/// Whether `name` can name a syndrome (and its file).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The syndromes shipped with the server. Code sets follow the ICD-10-CM chapters that
/// syndromic-surveillance categories draw on (intestinal infections and their symptoms;
/// influenza; acute respiratory infections).
pub fn builtin() -> Vec<Syndrome> {
    let syndrome = |name: &str, title: &str, codes: &[&str]| Syndrome {
        name: name.into(),
        title: title.into(),
        codes: codes.iter().map(|c| c.to_string()).collect(),
    };
    vec![
        syndrome("gastrointestinal", "Gastrointestinal illness", &["A00-A09", "K52.2-K52.9", "R11", "R19.7"]),
        syndrome("influenza-like-illness", "Influenza-like illness", &["J09-J11"]),
        syndrome(
            "respiratory",
            "Acute respiratory infection",
            &["J00-J06", "J09-J18", "J20-J22", "U07.1", "R05"],
        ),
    ]
}

/// Where saved syndromes live in a data directory.
pub fn syndromes_dir(data: &Path) -> PathBuf {
    data.join("syndromes")
}

/// The built-in syndromes followed by those saved in `dir` (`DIR/syndromes` of a data
/// directory, see [`syndromes_dir`]; a saved one with a built-in's name replaces it), each
/// checked.
pub fn known(dir: Option<&Path>) -> Result<Vec<Syndrome>> {
    let mut all = builtin();
    if let Some(dir) = dir {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
            Err(e) => return Err(Error::Invalid(format!("reading {}: {e}", dir.display()))),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Invalid(format!("reading {}: {e}", path.display())))?;
            let saved: Syndrome = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{}: not a syndrome definition: {e}", path.display())))?;
            saved.matcher().map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            all.retain(|s| s.name != saved.name);
            all.push(saved);
        }
    }
    Ok(all)
}

/// The matchers of the syndromes named (all when `only` is `None`).
pub fn select(known: &[Syndrome], only: Option<&str>) -> Result<Vec<Matcher>> {
    let chosen: Vec<&Syndrome> = match only {
        None => known.iter().collect(),
        Some(name) => {
            let found: Vec<&Syndrome> = known.iter().filter(|s| s.name == name).collect();
            if found.is_empty() {
                return Err(Error::Invalid(format!(
                    "no syndrome is named '{name}' (known: {})",
                    known.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            found
        }
    };
    chosen.into_iter().map(Syndrome::matcher).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(codes: &[&str]) -> Matcher {
        Syndrome { name: "t".into(), title: "T".into(), codes: codes.iter().map(|c| c.to_string()).collect() }
            .matcher()
            .expect("valid")
    }

    #[test]
    fn ranges_and_codes_reach_the_codes_below_them() {
        let gi = matcher(&["A00-A09", "R19.7", "K52.2-K52.9"]);
        for yes in ["A08.4", "A084", "a09", "A00.0", "R19.7", "K52.89", "K52.9", "K52.21"] {
            assert!(gi.matches(yes), "{yes}");
        }
        for no in ["A10", "B00", "R19.8", "R19", "K52.1", "K53", "J10.1", "", "A08.444444444"] {
            assert!(!gi.matches(no), "{no}");
        }
    }

    #[test]
    fn bad_definitions_are_refused_with_what_and_where() {
        let bad = |name: &str, codes: &[&str]| {
            Syndrome {
                name: name.into(),
                title: "x".into(),
                codes: codes.iter().map(|c| c.to_string()).collect(),
            }
            .matcher()
            .expect_err("refused")
            .to_string()
        };
        assert!(bad("Bad Name", &["A00"]).contains("name"));
        assert!(bad("x", &[]).contains("no codes"));
        assert!(bad("x", &["A00", "12"]).contains("codes[1]"));
        assert!(bad("x", &["A09-A00"]).contains("backwards"));
    }

    #[test]
    fn every_builtin_is_valid() {
        for syndrome in builtin() {
            syndrome.matcher().expect("built-in syndromes are valid");
        }
        assert!(select(&builtin(), Some("nope")).is_err());
    }
}
