//! Reading a clinical note for codable statements: which parts of it assert something about
//! the patient.
//!
//! A note is split into sections, sentences and clauses. Statements the patient does not have
//! are removed before matching: negated findings ("denies chest pain", "negative for
//! fever", "no evidence of fracture", "pneumonia was ruled out") and the family's history
//! ("family history of colon cancer", "mother had breast cancer", a "Family History:"
//! section). A trigger's scope runs to the end of its sentence or to a word that turns the
//! sentence around ("but", "however"), so "denies fever, chills or cough" removes all three.
//!
//! Diagnosis lists are recognised: the numbered or bulleted lines of an assessment,
//! impression or diagnoses section (or the text right after its heading) carry their place in
//! the list, since the first-listed diagnosis is the one the visit is coded for.

use super::Demographics;
use terminology::icd10cm::demographics::Sex;

/// A stretch of the note to suggest codes for, as a byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub start: usize,
    pub end: usize,
    /// A whole affirmed stretch of a sentence (`false`: one of its comma or "and" parts).
    pub whole: bool,
    /// A whole stretch that also has parts: a code for it must account for most of it.
    pub has_parts: bool,
    /// The place (0-based) of the line in a diagnosis list, for the stretches of its lines.
    pub listed: Option<u32>,
}

/// The patient's age and sex as a note states them ("56-year-old man", "3 month old girl",
/// "45 yo F"): the first such statement.
pub fn demographics(note: &str) -> Demographics {
    let lower = note.to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '/')).filter(|w| !w.is_empty()).collect();
    for (i, word) in words.iter().enumerate() {
        let Ok(number) = word.parse::<u32>() else { continue };
        let next = |k: usize| words.get(i + k).copied().unwrap_or("");
        let (unit, after) = match (next(1), next(2)) {
            ("year" | "years", "old") => ("year", 3),
            ("yo" | "y/o" | "yr", _) => ("year", 2),
            ("month" | "months", "old") => ("month", 3),
            ("week" | "weeks" | "day" | "days", "old") => ("day", 3),
            _ => continue,
        };
        let age_years = match unit {
            "year" => number,
            "month" => number / 12,
            _ => 0,
        };
        let sex = match next(after) {
            "man" | "male" | "boy" | "gentleman" | "m" => Some(Sex::Male),
            "woman" | "female" | "girl" | "lady" | "f" => Some(Sex::Female),
            _ => None,
        };
        return Demographics { age_years: Some(age_years), sex };
    }
    Demographics::default()
}

/// Phrases that negate what follows them.
const NEGATION_BEFORE: &[&str] = &[
    "no",
    "not",
    "denies",
    "denied",
    "deny",
    "denying",
    "negative for",
    "without evidence of",
    "without any evidence of",
    "without signs of",
    "without symptoms of",
    "no evidence of",
    "no signs of",
    "no sign of",
    "no history of",
    "no hx of",
    "no h/o",
    "free of",
    "rule out",
    "rules out",
    "ruled out",
    "r/o",
    "never had",
    "never",
    "nor",
    "neither",
    "resolution of",
    "resolved",
    "unremarkable for",
    "fails to reveal",
    "failed to reveal",
    "no complaints of",
    "not have",
    "doesn't have",
    "does not have",
    "did not have",
];

/// Phrases that negate what precedes them in the clause ("pneumonia was ruled out").
const NEGATION_AFTER: &[&str] = &[
    "ruled out",
    "was ruled out",
    "has been ruled out",
    "is ruled out",
    "were ruled out",
    "is negative",
    "was negative",
    "were negative",
    "are negative",
    "negative",
    "unlikely",
    "has resolved",
    "resolved",
    "not present",
    "not seen",
    "excluded",
    "was excluded",
    "denied",
];

/// Phrases naming someone else's history.
const FAMILY: &[&str] = &[
    "family history of",
    "family history",
    "family hx of",
    "family hx",
    "fhx of",
    "fhx",
    "fh of",
    "fh:",
    "mother",
    "father",
    "mom",
    "dad",
    "sister",
    "brother",
    "sibling",
    "siblings",
    "parents",
    "parent",
    "grandmother",
    "grandfather",
    "grandparent",
    "aunt",
    "uncle",
    "cousin",
    "son",
    "daughter",
];

/// Phrases that look like triggers but are not ("no longer" still talks about the patient,
/// "not intractable" is a diagnostic qualifier).
const PSEUDO_TRIGGERS: &[&str] = &[
    "not intractable",
    "no change",
    "no longer",
    "not only",
    "gram negative",
    "not elsewhere",
    "no increase",
    "not certain if",
    "without complication",
    "without complications",
    "non st",
    "non-st",
    "negative pressure",
];

/// Words that end a trigger's scope.
const TERMINATORS: &[&str] = &[
    "but",
    "however",
    "although",
    "though",
    "except",
    "aside from",
    "apart from",
    "yet",
    "which",
    "presents with",
    "presenting with",
    "complains of",
    "reports",
    "has",
    "with a",
    "now with",
    "positive for",
    "significant for",
    "notable for",
    "consistent with",
    "diagnosed with",
    "secondary to",
    "as well as",
    "admitted for",
];

/// Terminators that also separate what they join.
const CONTRASTS: &[&str] = &["but", "however", "although", "though", "except", "yet"];

/// Section names whose whole section is about other people.
const FAMILY_SECTIONS: &[&str] = &["family history", "family hx", "fhx", "fh", "family medical history"];

/// Names of the other usual sections; the name itself is not matched against codes.
const SECTIONS: &[&str] = &[
    "hpi",
    "history of present illness",
    "history",
    "pmh",
    "past medical history",
    "psh",
    "past surgical history",
    "assessment",
    "plan",
    "assessment and plan",
    "assessment/plan",
    "a/p",
    "a&p",
    "diagnosis",
    "diagnoses",
    "impression",
    "chief complaint",
    "cc",
    "ros",
    "review of systems",
    "social history",
    "sh",
    "meds",
    "medications",
    "allergies",
    "exam",
    "physical exam",
    "physical examination",
    "problem list",
    "problems",
    "active problems",
    "subjective",
    "objective",
    "labs",
    "imaging",
    "vitals",
    "reason for visit",
    "discharge diagnoses",
    "discharge diagnosis",
    "admitting diagnosis",
    "final diagnosis",
    "postoperative diagnosis",
    "preoperative diagnosis",
    "indication",
    "findings",
    "course",
    "hospital course",
];

/// Sections whose lines list the diagnoses, most important first.
const DIAGNOSIS_SECTIONS: &[&str] = &[
    "assessment",
    "assessment and plan",
    "assessment/plan",
    "a/p",
    "a&p",
    "impression",
    "diagnosis",
    "diagnoses",
    "discharge diagnoses",
    "discharge diagnosis",
    "admitting diagnosis",
    "final diagnosis",
    "postoperative diagnosis",
    "preoperative diagnosis",
    "problem list",
    "problems",
    "active problems",
];

/// The stretches of `note` that state something about the patient, with their parts.
pub fn affirmed_units(note: &str) -> Vec<Unit> {
    let lower = note.to_ascii_lowercase();
    let mut units = Vec::new();
    let mut in_family_section = false;
    let mut in_diagnosis_section = false;
    let mut listed_lines = 0u32;
    let mut line_start = 0;
    for line in note.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let mut body_start = line_start;
        let mut listed = None;
        if let Some((name, after)) = section_header(&lower[line_start..line_end]) {
            in_family_section = FAMILY_SECTIONS.contains(&name);
            in_diagnosis_section = DIAGNOSIS_SECTIONS.contains(&name);
            listed_lines = 0;
            body_start = line_start + after;
            // "Impression: community-acquired pneumonia" lists on the heading's own line.
            if in_diagnosis_section && note[body_start..line_end].bytes().any(|b| b.is_ascii_alphabetic()) {
                listed = Some(listed_lines);
                listed_lines += 1;
            }
        } else if line.trim().is_empty() {
            in_family_section = false;
            in_diagnosis_section = false;
        } else if in_diagnosis_section && let Some(marker) = list_marker(line) {
            listed = Some(listed_lines);
            listed_lines += 1;
            body_start = line_start + marker;
        }
        if !in_family_section {
            let first = units.len();
            for (start, end) in sentences(note, body_start, line_end) {
                affirmed_parts(note, &lower, start, end, &mut units);
            }
            for unit in &mut units[first..] {
                unit.listed = listed;
            }
        }
        line_start = line_end;
    }
    units
}

/// The length of the list marker opening `line` ("1. ", "2) ", "#3 ", "- ", "* ", "• "), if
/// it has one.
fn list_marker(line: &str) -> Option<usize> {
    let text = line.trim_start();
    let indent = line.len() - text.len();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let marker = if digits > 0 {
        match text.as_bytes().get(digits) {
            Some(b'.' | b')' | b':') => digits + 1,
            _ => return None,
        }
    } else if let Some(rest) = text.strip_prefix('#') {
        1 + rest.bytes().take_while(u8::is_ascii_digit).count()
    } else if text.starts_with(['-', '*']) {
        1
    } else if text.starts_with('•') {
        '•'.len_utf8()
    } else {
        return None;
    };
    text[marker..].starts_with([' ', '\t']).then_some(indent + marker)
}

/// A line that opens a known section, "Family History:" or "ASSESSMENT AND PLAN:": the
/// section's name and the offset of what follows the colon. Other "word: text" lines
/// ("Hypertension: well controlled") are ordinary text.
fn section_header(line: &str) -> Option<(&str, usize)> {
    let colon = line.find(':')?;
    let name = line[..colon].trim();
    (FAMILY_SECTIONS.contains(&name) || SECTIONS.contains(&name)).then_some((name, colon + 1))
}

/// Sentence ranges in `note[start..end]`: split at ".", "!", "?" and ";" (a period only when
/// followed by a space or the end, so "2.5 cm" and "E11.9" stay whole).
fn sentences(note: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let bytes = note.as_bytes();
    let mut ranges = Vec::new();
    let mut from = start;
    for i in start..end {
        let boundary = match bytes[i] {
            b'!' | b'?' | b';' | b'\n' | b'\r' => true,
            b'.' => bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()) && !abbreviation_dot(note, i),
            _ => false,
        };
        if boundary {
            push_trimmed(note, from, i, &mut ranges);
            from = i + 1;
        }
    }
    push_trimmed(note, from, end, &mut ranges);
    ranges
}

/// Whether the period at `dot` ends a title or abbreviation rather than a sentence.
fn abbreviation_dot(note: &str, dot: usize) -> bool {
    let before = &note[..dot];
    let word_start = before.rfind(|c: char| !c.is_ascii_alphabetic()).map_or(0, |i| i + 1);
    let word = before[word_start..].to_ascii_lowercase();
    matches!(word.as_str(), "dr" | "mr" | "mrs" | "ms" | "vs" | "st" | "approx" | "e" | "i" | "g")
}

/// Pushes `note[start..end]` without surrounding spaces and list punctuation, unless empty.
fn push_trimmed(note: &str, start: usize, end: usize, ranges: &mut Vec<(usize, usize)>) {
    let text = &note[start..end];
    let loose = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-' | '*' | '.');
    let leading = text.len() - text.trim_start_matches(loose).len();
    let trailing = text.len() - text.trim_end_matches(loose).len();
    if start + leading < end - trailing {
        ranges.push((start + leading, end - trailing));
    }
}

/// A phrase found in the sentence, as a byte range.
#[derive(Clone, Copy, Debug)]
struct Found {
    start: usize,
    end: usize,
}

/// Every occurrence of any of `phrases` in `lower[start..end]` at word boundaries, longest
/// first where they overlap.
fn find_phrases(lower: &str, start: usize, end: usize, phrases: &[&str]) -> Vec<Found> {
    let text = &lower[start..end];
    let mut found: Vec<Found> = Vec::new();
    for phrase in phrases {
        let mut from = 0;
        while let Some(at) = text[from..].find(phrase) {
            let s = from + at;
            let e = s + phrase.len();
            let open_before = s == 0 || !is_word_byte(text.as_bytes()[s - 1]);
            let phrase_ends_in_word = phrase.as_bytes().last().is_some_and(|&b| is_word_byte(b));
            let open_after = !phrase_ends_in_word || e == text.len() || !is_word_byte(text.as_bytes()[e]);
            if open_before && open_after {
                found.push(Found { start: start + s, end: start + e });
            }
            from = s + 1;
        }
    }
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut kept: Vec<Found> = Vec::new();
    for f in found {
        if kept.last().is_none_or(|last| f.start >= last.end) {
            kept.push(f);
        }
    }
    kept
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'\''
}

/// Removes negated and family scopes from the sentence and pushes what is left, with its
/// comma and "and" parts.
fn affirmed_parts(note: &str, lower: &str, start: usize, end: usize, units: &mut Vec<Unit>) {
    let pseudo = find_phrases(lower, start, end, PSEUDO_TRIGGERS);
    let inside_pseudo = |f: &Found| pseudo.iter().any(|p| f.start >= p.start && f.start < p.end);
    let terminators = find_phrases(lower, start, end, TERMINATORS);
    let scope_end = |from: usize| terminators.iter().find(|t| t.start >= from).map_or(end, |t| t.start);
    let scope_start = |to: usize| {
        let boundary = terminators.iter().rev().find(|t| t.end <= to).map_or(start, |t| t.end);
        // A trigger after the finding reaches back to the start of its clause only.
        let comma = lower[boundary..to].rfind([',', ':']).map_or(boundary, |c| boundary + c + 1);
        comma.max(boundary)
    };
    // Conjunctions that turn a sentence around separate its affirmed pieces.
    let mut removed: Vec<(usize, usize)> = terminators
        .iter()
        .filter(|t| CONTRASTS.contains(&&lower[t.start..t.end]))
        .map(|t| (t.start, t.end))
        .collect();
    let mut before = find_phrases(lower, start, end, NEGATION_BEFORE);
    before.extend(find_phrases(lower, start, end, FAMILY));
    for trigger in before.iter().filter(|f| !inside_pseudo(f)) {
        removed.push((trigger.start, scope_end(trigger.end)));
    }
    for trigger in find_phrases(lower, start, end, NEGATION_AFTER).iter().filter(|f| !inside_pseudo(f)) {
        removed.push((scope_start(trigger.start), trigger.end));
    }
    removed.sort_unstable();
    let mut cursor = start;
    let mut pieces = Vec::new();
    for (s, e) in removed {
        if s > cursor {
            pieces.push((cursor, s));
        }
        cursor = cursor.max(e);
    }
    if cursor < end {
        pieces.push((cursor, end));
    }
    for (s, e) in pieces {
        let mut whole = Vec::new();
        push_trimmed(note, s, e, &mut whole);
        let Some(&(s, e)) = whole.first() else { continue };
        let text = &note[s..e];
        if !text.bytes().any(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let mut parts = Vec::new();
        split_parts(note, lower, s, e, &mut parts);
        let has_parts = parts.len() > 1 || parts.first().is_some_and(|&part| part != (s, e));
        units.push(Unit { start: s, end: e, whole: true, has_parts, listed: None });
        if has_parts {
            units.extend(parts.into_iter().map(|(start, end)| Unit {
                start,
                end,
                whole: false,
                has_parts: false,
                listed: None,
            }));
        }
    }
}

/// Splits a stretch at commas, colons and the word "and" (lists of diagnoses are written
/// so), and takes "history of" off what follows it: a past medical history names conditions
/// the patient still has as often as resolved ones.
fn split_parts(note: &str, lower: &str, start: usize, end: usize, parts: &mut Vec<(usize, usize)>) {
    let mut from = start;
    let bytes = lower.as_bytes();
    let mut i = start;
    while i < end {
        let word_start = i == start || !bytes[i - 1].is_ascii_alphanumeric();
        let rest = &lower[i..end];
        let separator_len = match bytes[i] {
            b',' | b':' => 1,
            b' ' if rest.starts_with(" and ") => 5,
            b' ' if rest.starts_with(" plus ") => 6,
            b'h' if word_start && rest.starts_with("history of ") => 11,
            b'h' if word_start && rest.starts_with("hx of ") => 6,
            b'h' if word_start && rest.starts_with("h/o ") => 4,
            _ => 0,
        };
        if separator_len > 0 {
            push_trimmed(note, from, i, parts);
            from = i + separator_len;
            i += separator_len;
        } else {
            i += 1;
        }
    }
    push_trimmed(note, from, end, parts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_of_is_taken_off() {
        assert_eq!(parts("History of hypertension and type 2 diabetes"), ["hypertension", "type 2 diabetes"]);
        assert_eq!(parts("hx of MI"), ["MI"]);
        assert!(parts("Chest pain").is_empty());
    }

    fn texts(note: &str) -> Vec<&str> {
        affirmed_units(note).into_iter().filter(|u| u.whole).map(|u| &note[u.start..u.end]).collect()
    }

    fn parts(note: &str) -> Vec<&str> {
        affirmed_units(note).into_iter().filter(|u| !u.whole).map(|u| &note[u.start..u.end]).collect()
    }

    #[test]
    fn negated_findings_are_removed() {
        assert_eq!(texts("Patient denies chest pain."), ["Patient"]);
        assert_eq!(texts("Denies fever, chills or cough. Has hypertension."), ["Has hypertension"]);
        assert_eq!(texts("Cough but no fever"), ["Cough"]);
        assert_eq!(texts("Negative for pneumonia; positive for influenza A"), ["positive for influenza A"]);
        assert_eq!(texts("Chest x-ray without evidence of pneumonia."), ["Chest x-ray"]);
        assert_eq!(texts("Acute appendicitis, perforation ruled out."), ["Acute appendicitis"]);
        assert_eq!(texts("Pulmonary embolism was ruled out"), Vec::<&str>::new());
    }

    #[test]
    fn family_history_is_removed() {
        assert_eq!(texts("Family history of colon cancer. Type 2 diabetes."), ["Type 2 diabetes"]);
        assert_eq!(texts("Mother had breast cancer"), Vec::<&str>::new());
        let note = "HPI: cough for 3 days\nFamily History:\nfather: MI at 50\nCAD in brother\n\nPlan: rest";
        assert_eq!(texts(note), ["cough for 3 days", "rest"]);
    }

    #[test]
    fn diagnostic_qualifiers_are_not_negations() {
        assert_eq!(
            texts("Type 2 diabetes mellitus without complications"),
            ["Type 2 diabetes mellitus without complications"]
        );
        assert_eq!(texts("Epilepsy, not intractable"), ["Epilepsy, not intractable"]);
    }

    #[test]
    fn age_and_sex_as_notes_state_them() {
        let of = |note: &str| {
            let d = demographics(note);
            (d.age_years, d.sex)
        };
        assert_eq!(of("Patient: Robert Wright, 56-year-old man"), (Some(56), Some(Sex::Male)));
        assert_eq!(of("a 3 month old girl with fever"), (Some(0), Some(Sex::Female)));
        assert_eq!(of("18-month-old boy"), (Some(1), Some(Sex::Male)));
        assert_eq!(of("45 yo F with cough"), (Some(45), Some(Sex::Female)));
        assert_eq!(of("70 year old with CHF"), (Some(70), None));
        assert_eq!(of("BP 120/80, 3 days of cough"), (None, None));
    }

    #[test]
    fn diagnosis_lists_keep_their_order() {
        let note = "HPI: cough.\nAssessment and plan:\n1. Pneumonia, antibiotics.\n2) Hypertension, continue lisinopril.\nVaccine given: influenza.\n\nImpression: sepsis\n- UTI\n";
        let listed: Vec<(&str, Option<u32>)> = affirmed_units(note)
            .into_iter()
            .filter(|u| u.whole)
            .map(|u| (&note[u.start..u.end], u.listed))
            .collect();
        assert_eq!(
            listed,
            [
                ("cough", None),
                ("Pneumonia, antibiotics", Some(0)),
                ("Hypertension, continue lisinopril", Some(1)),
                ("Vaccine given: influenza", None),
                ("sepsis", Some(0)),
                ("UTI", Some(1)),
            ]
        );
        assert_eq!(list_marker("12. Asthma"), Some(3));
        assert_eq!(list_marker("#2 CKD"), Some(2));
        assert_eq!(list_marker("2.5 cm mass"), None);
        assert_eq!(list_marker("-1 degree"), None);
    }

    #[test]
    fn sentences_and_parts() {
        let note = "Assessment: hypertension, hyperlipidemia and obesity. HbA1c 7.5 today.";
        assert_eq!(texts(note), ["hypertension, hyperlipidemia and obesity", "HbA1c 7.5 today"]);
        assert_eq!(parts(note), ["hypertension", "hyperlipidemia", "obesity"]);
        assert_eq!(texts("Seen by Dr. Smith for E11.9 follow-up"), ["Seen by Dr. Smith for E11.9 follow-up"]);
    }
}
