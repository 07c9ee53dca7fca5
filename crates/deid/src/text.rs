//! Free-text scrubbing: the identities the record knows (every name, number and street of its
//! patients, relatives and staff) and the shapes identifiers take (phone numbers, e-mail, SSNs,
//! URLs, IPs, dates, ZIP codes, ages over 89), found in one pass over the text and replaced.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Captures, Regex};

use crate::classes::{IdentifierClass, Report};
use crate::dates;

/// Known identity values, learnt from the record before anything goes out.
#[derive(Debug, Default)]
pub struct Lexicon {
    entries: Vec<(String, IdentifierClass)>,
    seen: std::collections::HashSet<String>,
}

impl Lexicon {
    /// Adds a value and, for names, each of its words: text mentions people by parts of their
    /// names. (The words of a street line are not added: `12` or `Street` alone names no one.)
    pub fn add(&mut self, value: &str, class: IdentifierClass) {
        let value = value.trim();
        self.add_one(value, class);
        if class == IdentifierClass::Names {
            for word in value.split(|c: char| c.is_whitespace() || c == '-' || c == ',') {
                self.add_one(word.trim_matches(|c: char| !c.is_alphanumeric()), class);
            }
        }
    }

    fn add_one(&mut self, value: &str, class: IdentifierClass) {
        // One letter or digit is no identity, and matching it would erase ordinary text.
        if value.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
            return;
        }
        // The matcher folds ASCII case only: other letters' cases, the value without its
        // accents and with either apostrophe are added as values of their own.
        let variants = [
            value.to_string(),
            value.to_lowercase(),
            value.to_uppercase(),
            without_accents(value),
            value.replace('\'', "\u{2019}"),
            value.replace('\u{2019}', "'"),
        ];
        for variant in variants {
            if self.seen.insert(variant.to_ascii_lowercase()) {
                self.entries.push((variant, class));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Latin letters with their accents taken off (`González` → `Gonzalez`).
fn without_accents(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'Á' | 'À' | 'Â' | 'Ä' | 'Ã' | 'Å' => 'A',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'É' | 'È' | 'Ê' | 'Ë' => 'E',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'Í' | 'Ì' | 'Î' | 'Ï' => 'I',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' => 'o',
            'Ó' | 'Ò' | 'Ô' | 'Ö' | 'Õ' | 'Ø' => 'O',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'Ú' | 'Ù' | 'Û' | 'Ü' => 'U',
            'ñ' => 'n',
            'Ñ' => 'N',
            'ç' => 'c',
            'Ç' => 'C',
            'ý' | 'ÿ' => 'y',
            'Ý' => 'Y',
            other => other,
        })
        .collect()
}

/// What dates in text become.
#[derive(Clone, Copy, Debug)]
pub enum DateRule {
    /// Only the year stays, unless it is `oldest` or earlier (more than 89 years before the
    /// extract: so old a year says its patient is 90 or more), when nothing does.
    Year { oldest: i64 },
    /// Moved by this many days.
    Shift(i64),
}

/// One thing found in a text, to be replaced.
struct Found {
    start: usize,
    end: usize,
    class: IdentifierClass,
    replacement: String,
}

/// Every pattern and known value, compiled once per extract.
pub struct Scrubber {
    known: Option<AhoCorasick>,
    known_classes: Vec<IdentifierClass>,
    patterns: Patterns,
}

struct Patterns {
    email: Regex,
    url: Regex,
    ip: Regex,
    ssn: Regex,
    phone: Regex,
    labelled_number: Regex,
    iso_date: Regex,
    us_date: Regex,
    month_day: Regex,
    local_phone: Regex,
    month_day_year: Regex,
    day_month_year: Regex,
    month_year: Regex,
    age: Regex,
    zip: Regex,
    long_number: Regex,
}

const MONTHS: &str = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?";

fn regex(pattern: &str) -> Regex {
    // The patterns are constants of this module, checked by its tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("de-identification pattern {pattern}: {e}"))
}

impl Patterns {
    fn new() -> Patterns {
        Patterns {
            email: regex(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"),
            url: regex(r"(?i)\b(?:https?|ftp)://[^\s<>]+|\bwww\.[^\s<>]+"),
            ip: regex(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"),
            ssn: regex(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"),
            phone: regex(r"(?:\+?1[-. ]?)?(?:\(\d{3}\)\s?|\b\d{3}[-. ])\d{3}[-. ]\d{4}\b"),
            labelled_number: regex(
                r"(?i)\b(mrn|medical record (?:number|no\.?)|account(?: number| no\.?)?|acct(?: no\.?)?|member id|policy(?: number)?|subscriber id|license(?: number)?|licence(?: number)?|serial(?: number)?|vin|npi|dea)\b\s*(?:#|:|is)?\s*[:#]?\s*([A-Za-z0-9\-]*\d[A-Za-z0-9\-]*)",
            ),
            iso_date: regex(
                r"\b\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:\d{2})?)?\b",
            ),
            us_date: regex(r"\b(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})\b"),
            month_day: regex(&format!(r"(?i)\b({MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b")),
            local_phone: regex(r"\b\d{3}-\d{4}\b"),
            month_day_year: regex(&format!(
                r"(?i)\b({MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b"
            )),
            day_month_year: regex(&format!(
                r"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({MONTHS})\.?,?\s+(\d{{4}})\b"
            )),
            month_year: regex(&format!(r"(?i)\b({MONTHS})\.?,?\s+(\d{{4}})\b")),
            age: regex(
                r"(?i)\b(?:(9\d|1[0-4]\d)\s*-?\s*(?:years?|yrs?|y/?o|y\.o\.?|yo)(?:(?:\s+|-)old)?|(?:age|aged)\s*:?\s*(9\d|1[0-4]\d))(?:\b|$)",
            ),
            zip: regex(r"\b\d{5}(?:-\d{4})?\b"),
            long_number: regex(r"\b\d{7,}\b"),
        }
    }
}

fn month_number(name: &str) -> u32 {
    let lower = name.to_ascii_lowercase();
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        .iter()
        .position(|m| lower.starts_with(m))
        .map_or(1, |i| i as u32 + 1)
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Scrubber {
    /// Compiles the patterns and the known values. A matcher that cannot be built fails the
    /// extract: scrubbing without the known names would let them out.
    pub fn new(lexicon: &Lexicon) -> Result<Scrubber, crate::Error> {
        let known = if lexicon.is_empty() {
            None
        } else {
            let matcher = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(lexicon.entries.iter().map(|(value, _)| value.as_str()))
                .map_err(|e| crate::Error::Matcher(e.to_string()))?;
            Some(matcher)
        };
        Ok(Scrubber {
            known,
            known_classes: lexicon.entries.iter().map(|(_, class)| *class).collect(),
            patterns: Patterns::new(),
        })
    }

    /// `text` with every identifier found replaced; what was found is counted in `report`.
    /// `known`: look for the record's known identities too (not in a code system's words).
    pub fn scrub<'t>(
        &self,
        text: &'t str,
        rule: DateRule,
        group_ages: bool,
        known: bool,
        report: &mut Report,
    ) -> Cow<'t, str> {
        let mut found = Vec::new();
        self.find_patterns(text, rule, group_ages, &mut found);
        if known {
            self.find_known(text, &mut found);
        }
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        // Earliest first, and of those starting together the longest: an e-mail address wins
        // over the name inside it.
        found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for item in found {
            if item.start < at {
                continue;
            }
            out.push_str(&text[at..item.start]);
            out.push_str(&item.replacement);
            report.text(item.class);
            at = item.end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    fn find_known(&self, text: &str, found: &mut Vec<Found>) {
        let Some(known) = &self.known else { return };
        let bytes = text.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric();
        for hit in known.find_overlapping_iter(text) {
            let (start, end) = (hit.start(), hit.end());
            let before_ok = start == 0 || !word(bytes[start - 1]);
            let after_ok = end == bytes.len() || !word(bytes[end]);
            if !before_ok || !after_ok || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                continue;
            }
            let class = self
                .known_classes
                .get(hit.pattern().as_usize())
                .copied()
                .unwrap_or(IdentifierClass::OtherUnique);
            found.push(Found { start, end, class, replacement: placeholder(class).to_string() });
        }
    }

    fn find_patterns(&self, text: &str, rule: DateRule, group_ages: bool, found: &mut Vec<Found>) {
        let p = &self.patterns;
        let mut simple = |re: &Regex, class: IdentifierClass| {
            for m in re.find_iter(text) {
                found.push(Found {
                    start: m.start(),
                    end: m.end(),
                    class,
                    replacement: placeholder(class).to_string(),
                });
            }
        };
        simple(&p.email, IdentifierClass::Email);
        simple(&p.url, IdentifierClass::Url);
        simple(&p.ip, IdentifierClass::IpAddress);
        simple(&p.ssn, IdentifierClass::Ssn);
        simple(&p.zip, IdentifierClass::Geographic);
        simple(&p.long_number, IdentifierClass::OtherUnique);
        for m in p.phone.find_iter(text).chain(p.local_phone.find_iter(text)) {
            let lead = text[..m.start()].chars().rev().take(12).collect::<String>().to_ascii_lowercase();
            let class = if lead.contains("xaf") { IdentifierClass::Fax } else { IdentifierClass::Telephone };
            found.push(Found {
                start: m.start(),
                end: m.end(),
                class,
                replacement: placeholder(class).to_string(),
            });
        }
        for caps in p.labelled_number.captures_iter(text) {
            let (Some(whole), Some(label), Some(_)) = (caps.get(0), caps.get(1), caps.get(2)) else {
                continue;
            };
            let class = labelled_class(label.as_str());
            found.push(Found {
                start: whole.start(),
                end: whole.end(),
                class,
                replacement: format!("{} {}", label.as_str(), placeholder(class)),
            });
        }
        for m in p.iso_date.find_iter(text) {
            let replacement = iso_parts(m.as_str()).and_then(|(y, mo, d, tail)| match rule {
                DateRule::Year { .. } => kept_year(i64::from(y), rule),
                DateRule::Shift(days) => dates::shift(&format!("{y:04}-{mo:02}-{d:02}{tail}"), days),
            });
            found.push(Found {
                start: m.start(),
                end: m.end(),
                class: IdentifierClass::Dates,
                replacement: replacement.unwrap_or_else(|| placeholder(IdentifierClass::Dates).to_string()),
            });
        }
        let mut dated = |re: &Regex, parts: &DateParts<'_>| {
            for caps in re.captures_iter(text) {
                let Some(whole) = caps.get(0) else { continue };
                let replacement = parts(&caps).and_then(|(y, m, d)| written_date(y, m, d, rule));
                found.push(Found {
                    start: whole.start(),
                    end: whole.end(),
                    class: IdentifierClass::Dates,
                    replacement: replacement
                        .unwrap_or_else(|| placeholder(IdentifierClass::Dates).to_string()),
                });
            }
        };
        let number = |caps: &Captures, i: usize| caps.get(i).and_then(|m| m.as_str().parse::<u32>().ok());
        dated(&p.us_date, &|c| {
            // A two-digit year is no year to keep: the date goes whole.
            let year = number(c, 3).filter(|y| *y >= 100)?;
            Some((year, number(c, 1)?, number(c, 2)?))
        });
        dated(&p.month_day_year, &|c| Some((number(c, 3)?, month_number(c.get(1)?.as_str()), number(c, 2)?)));
        dated(&p.day_month_year, &|c| Some((number(c, 3)?, month_number(c.get(2)?.as_str()), number(c, 1)?)));
        // A month and day without a year: nothing of it may stay, and it cannot be moved.
        for m in p.month_day.find_iter(text) {
            found.push(Found {
                start: m.start(),
                end: m.end(),
                class: IdentifierClass::Dates,
                replacement: placeholder(IdentifierClass::Dates).to_string(),
            });
        }
        for caps in p.month_year.captures_iter(text) {
            let (Some(whole), Some(month), Some(year)) = (caps.get(0), caps.get(1), caps.get(2)) else {
                continue;
            };
            let Ok(year) = year.as_str().parse::<u32>() else { continue };
            let replacement = match rule {
                DateRule::Year { .. } => kept_year(i64::from(year), rule)
                    .unwrap_or_else(|| placeholder(IdentifierClass::Dates).to_string()),
                DateRule::Shift(days) => {
                    dates::shift(&format!("{year:04}-{:02}", month_number(month.as_str())), days)
                        .and_then(|shifted| {
                            let m: usize = shifted.get(5..7)?.parse().ok()?;
                            Some(format!("{} {}", MONTH_NAMES.get(m.checked_sub(1)?)?, shifted.get(..4)?))
                        })
                        .unwrap_or_else(|| placeholder(IdentifierClass::Dates).to_string())
                }
            };
            found.push(Found {
                start: whole.start(),
                end: whole.end(),
                class: IdentifierClass::Dates,
                replacement,
            });
        }
        if group_ages {
            for m in p.age.find_iter(text) {
                found.push(Found {
                    start: m.start(),
                    end: m.end(),
                    class: IdentifierClass::Dates,
                    replacement: "90 or older".to_string(),
                });
            }
        }
    }
}

/// The year that stays of a date under the year rule: none when it is too old.
fn kept_year(year: i64, rule: DateRule) -> Option<String> {
    match rule {
        DateRule::Year { oldest } if year > oldest => Some(format!("{year:04}")),
        _ => None,
    }
}

/// Year, month, day and what follows the day (a time) of `2021-03-04T...`, `2021-3-4` or
/// `2021/03/04`.
fn iso_parts(text: &str) -> Option<(u32, u32, u32, &str)> {
    let year: u32 = text.get(..4)?.parse().ok()?;
    let rest = text.get(5..)?;
    let (month, rest) = rest.split_once(['-', '/'])?;
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (day, tail) = rest.split_at(day_len);
    Some((year, month.parse().ok()?, day.parse().ok()?, tail))
}

/// Year, month and day of a written date's captures.
type DateParts<'a> = dyn Fn(&Captures) -> Option<(u32, u32, u32)> + 'a;

/// A written date (month `m`, day `d`) in its new form: the year, or the shifted date
/// spelled out (`March 4, 2021`).
fn written_date(y: u32, m: u32, d: u32, rule: DateRule) -> Option<String> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    match rule {
        DateRule::Year { .. } => kept_year(i64::from(y), rule),
        DateRule::Shift(days) => {
            let shifted = dates::shift(&format!("{y:04}-{m:02}-{d:02}"), days)?;
            let month: usize = shifted.get(5..7)?.parse().ok()?;
            let day: u32 = shifted.get(8..10)?.parse().ok()?;
            Some(format!("{} {day}, {}", MONTH_NAMES.get(month.checked_sub(1)?)?, shifted.get(..4)?))
        }
    }
}

fn labelled_class(label: &str) -> IdentifierClass {
    let label = label.to_ascii_lowercase();
    if label.starts_with("mrn") || label.starts_with("medical") {
        IdentifierClass::MedicalRecordNumber
    } else if label.starts_with("acc") || label.starts_with("acct") {
        IdentifierClass::AccountNumber
    } else if label.starts_with("member") || label.starts_with("policy") || label.starts_with("subscriber") {
        IdentifierClass::HealthPlanNumber
    } else if label.starts_with("lic") || label == "npi" || label == "dea" {
        IdentifierClass::LicenseNumber
    } else if label == "vin" {
        IdentifierClass::VehicleIdentifier
    } else if label.starts_with("serial") {
        IdentifierClass::DeviceIdentifier
    } else {
        IdentifierClass::OtherUnique
    }
}

/// What stands in a text where an identifier was.
pub fn placeholder(class: IdentifierClass) -> &'static str {
    match class {
        IdentifierClass::Names => "[NAME]",
        IdentifierClass::Geographic => "[LOCATION]",
        IdentifierClass::Dates => "[DATE]",
        IdentifierClass::Telephone => "[PHONE]",
        IdentifierClass::Fax => "[FAX]",
        IdentifierClass::Email => "[EMAIL]",
        IdentifierClass::Ssn => "[SSN]",
        IdentifierClass::Url => "[URL]",
        IdentifierClass::IpAddress => "[IP]",
        IdentifierClass::Biometric | IdentifierClass::Photo => "[IMAGE]",
        _ => "[ID]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubbed(text: &str, rule: DateRule) -> String {
        let mut lexicon = Lexicon::default();
        lexicon.add("Maria Elena Gonzalez", IdentifierClass::Names);
        lexicon.add("M102938", IdentifierClass::MedicalRecordNumber);
        lexicon.add("12 Elm Street", IdentifierClass::Geographic);
        let scrubber = Scrubber::new(&lexicon).unwrap();
        let mut report = Report::default();
        scrubber.scrub(text, rule, true, true, &mut report).into_owned()
    }

    #[test]
    fn patterns_and_known_values_are_replaced() {
        let text = "Ms. Gonzalez (MRN: M102938), 93-year-old, seen 2021-03-04T10:00:00Z and on March 9, 2021; \
                    lives at 12 Elm Street, Springfield 62704. Call (217) 555-0142, fax 217-555-0199, \
                    maria.g@example.com, SSN 999-12-3456, portal https://portal.example.org/x, from 10.0.0.12. \
                    Discharged 3/15/2021.";
        let out = scrubbed(text, DateRule::Year { oldest: 1935 });
        for gone in [
            "Gonzalez",
            "M102938",
            "93-year",
            "03-04",
            "March 9",
            "Elm",
            "62704",
            "555-0142",
            "555-0199",
            "maria.g",
            "999-12",
            "portal.example",
            "10.0.0.12",
            "3/15",
        ] {
            assert!(!out.contains(gone), "{gone} left in: {out}");
        }
        assert!(out.contains("[PHONE]") && out.contains("[FAX]") && out.contains("90 or older"), "{out}");
        assert!(out.contains("2021"), "{out}");
    }

    #[test]
    fn shifted_dates_in_text_move_by_the_patients_days() {
        let out = scrubbed(
            "Admitted 2021-03-01, seen March 9, 2021 and 3/15/2021, back in April 2021.",
            DateRule::Shift(-1),
        );
        assert_eq!(out, "Admitted 2021-02-28, seen March 8, 2021 and March 14, 2021, back in April 2021.");
    }

    #[test]
    fn words_inside_other_words_stay() {
        let out = scrubbed(
            "Gonzalezville and Marias are not names here; Maria is.",
            DateRule::Year { oldest: 1935 },
        );
        assert_eq!(out, "Gonzalezville and Marias are not names here; [NAME] is.");
    }
}
