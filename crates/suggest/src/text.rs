//! From text to index terms: words are folded to lowercase ASCII, shorthand is expanded,
//! words without meaning for coding are dropped and the rest are stemmed. Classification text
//! and queries go through the same steps, so they meet on the same terms.

use std::borrow::Cow;
use std::sync::OnceLock;

use rustc_hash::{FxHashMap, FxHashSet};

use super::lexicon::{
    ABBREVIATIONS, BRITISH_SPELLINGS, EQUIVALENTS, GENUS_INITIALS, ROMAN, ROMAN_CONTEXT, SPINAL_LEVELS,
    STOP_WORDS,
};
use super::stem::stem;

/// One term of analysed text, with the byte range of the word it came from. A word expanded
/// from shorthand ("htn") yields several terms with the same range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub stem: String,
    pub start: usize,
    pub end: usize,
}

/// A word as it appears in the text: lowercase ASCII letters and digits.
#[derive(Debug)]
struct Word {
    text: String,
    start: usize,
    end: usize,
    /// The word was joined to the previous one by a slash ("w/o", "s/p").
    after_slash: bool,
}

struct Tables {
    stop: FxHashSet<&'static str>,
    abbreviations: FxHashMap<&'static str, Vec<&'static str>>,
    equivalents: FxHashMap<&'static str, &'static str>,
    roman: FxHashMap<&'static str, &'static str>,
    roman_context: FxHashSet<&'static str>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables {
        stop: STOP_WORDS.iter().copied().collect(),
        abbreviations: ABBREVIATIONS
            .iter()
            .map(|(short, long)| (*short, long.split(' ').collect()))
            .collect(),
        equivalents: EQUIVALENTS.iter().copied().collect(),
        roman: ROMAN.iter().copied().collect(),
        roman_context: ROMAN_CONTEXT.iter().copied().collect(),
    })
}

/// Shorthand written with a slash, read as one word: "w/o" is "without", not "w" and "o".
const SLASHED: &[(&str, &str, &str)] = &[
    ("w", "o", "without"),
    ("s", "p", "status post"),
    ("h", "o", "history"),
    ("n", "v", "nausea vomiting"),
    ("c", "o", ""),
    ("y", "o", ""),
    ("f", "u", ""),
];

/// The terms of `text`, in order.
pub fn analyse(text: &str) -> Vec<Term> {
    let tables = tables();
    let words = words(text);
    let mut terms = Vec::with_capacity(words.len() + 4);
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        // Slashed shorthand spans two words.
        if let Some(next) = words.get(i + 1).filter(|next| next.after_slash)
            && let Some((_, _, long)) = SLASHED.iter().find(|(a, b, _)| *a == word.text && *b == next.text)
        {
            for part in long.split(' ').filter(|part| !part.is_empty()) {
                push_word(&mut terms, tables, part, word.start, next.end);
            }
            i += 2;
            continue;
        }
        if word.text == "w" && words.get(i + 1).is_some_and(|next| next.after_slash) {
            push_word(&mut terms, tables, "with", word.start, word.end);
            i += 1;
            continue;
        }
        // "Of unknown cause", "of unclear etiology": the classification says "unspecified"
        // (its "fever of unknown origin" goes the same way, so both sides still meet).
        if matches!(word.text.as_str(), "unclear" | "unknown" | "undetermined")
            && let Some(next) = words.get(i + 1).filter(|next| {
                matches!(next.text.as_str(), "cause" | "causes" | "etiology" | "origin" | "source")
            })
        {
            push_word(&mut terms, tables, "unspecified", word.start, next.end);
            i += 2;
            continue;
        }
        // "Influenza A" (or B) names an identified virus, which the classification codes as
        // "due to other identified influenza virus", apart from the unidentified one.
        if matches!(word.text.as_str(), "influenza" | "flu")
            && let Some(next) = words.get(i + 1).filter(|next| matches!(next.text.as_str(), "a" | "b"))
        {
            push_word(&mut terms, tables, "influenza", word.start, word.end);
            push_word(&mut terms, tables, "identified", next.start, next.end);
            i += 2;
            continue;
        }
        // "S. aureus": the genus, then the species as the next word.
        if let Some(next) = words.get(i + 1)
            && let Some((_, _, genus)) = GENUS_INITIALS
                .iter()
                .find(|(initial, species, _)| *initial == word.text && *species == next.text)
        {
            push_word(&mut terms, tables, genus, word.start, word.end);
            // "C. diff" shortens the species too.
            if next.text == "diff" {
                push_word(&mut terms, tables, "difficile", next.start, next.end);
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        let previous = i.checked_sub(1).map(|p| words[p].text.as_str());
        if let Some(number) = tables.roman.get(word.text.as_str())
            && (word.text.len() > 1 && word.text != "iv" && word.text != "ix"
                || previous.is_some_and(|p| tables.roman_context.contains(p)))
        {
            push_word(&mut terms, tables, number, word.start, word.end);
        } else if let Some((region, level)) = spinal_level(&word.text) {
            push_word(&mut terms, tables, region, word.start, word.end);
            push_word(&mut terms, tables, level, word.start, word.end);
        } else if let Some(expansion) = tables.abbreviations.get(word.text.as_str()) {
            for part in expansion {
                push_word(&mut terms, tables, part, word.start, word.end);
            }
        } else {
            push_word(&mut terms, tables, &word.text, word.start, word.end);
        }
        i += 1;
    }
    terms
}

/// Adds the trimester a stated week of pregnancy falls in ("at 34 weeks": third trimester),
/// as the classification's chapter 15 counts them: under 14 weeks the first, 14 to under 28
/// the second, 28 and over the third. Codes name the trimester, notes the week.
pub fn with_trimesters(mut terms: Vec<Term>) -> Vec<Term> {
    let mut added = Vec::new();
    for pair in terms.windows(2) {
        let (number, unit) = (&pair[0], &pair[1]);
        let Ok(week) = number.stem.parse::<u32>() else { continue };
        if !matches!(unit.stem.as_str(), "week" | "wk" | "wks") || !(1..=43).contains(&week) {
            continue;
        }
        let ordinal = match week {
            0..=13 => "first",
            14..=27 => "second",
            _ => "third",
        };
        for word in [ordinal, "trimester"] {
            added.push(Term { stem: stem(word), start: number.start, end: unit.end });
        }
    }
    terms.extend(added);
    terms
}

/// Which terms are denied by "without", "no" or "not": "without" and "no" reach to the next
/// "with" or clause break (comma, semicolon, colon), "not" only to the next word. In "Type 2
/// diabetes mellitus without complications" the complications are denied; in "Acute
/// appendicitis with generalized peritonitis, without abscess" only the abscess is.
pub fn denied(text: &str, terms: &[Term]) -> Vec<bool> {
    #[derive(PartialEq)]
    enum Scope {
        Closed,
        Open,
        NextWord,
    }
    let mut denied = vec![false; terms.len()];
    let mut scope = Scope::Closed;
    for (i, term) in terms.iter().enumerate() {
        let gap = i.checked_sub(1).map(|p| terms[p].end).filter(|&end| end <= term.start);
        if gap.is_some_and(|end| text[end..term.start].contains([',', ';', ':'])) {
            scope = Scope::Closed;
        }
        match term.stem.as_str() {
            "without" | "no" => scope = Scope::Open,
            "not" => scope = Scope::NextWord,
            "with" => scope = Scope::Closed,
            _ if scope != Scope::Closed => {
                denied[i] = true;
                if scope == Scope::NextWord {
                    scope = Scope::Closed;
                }
            }
            _ => {}
        }
    }
    denied
}

/// [`denied`], with a denial also reaching over a list whose items commas separate and whose
/// last item "and" or "or" opens: "without behavioral disturbance, psychotic disturbance, mood
/// disturbance, and anxiety" denies all four, while in "without foreign body, left hand" the
/// comma ends the denial.
pub fn denied_with_lists(text: &str, terms: &[Term]) -> Vec<bool> {
    let mut denied = denied(text, terms);
    let gap = |i: usize| -> &str {
        let start = terms[i - 1].end;
        text.get(start..terms[i].start).filter(|_| start <= terms[i].start).unwrap_or("")
    };
    let mut i = 0;
    while i < terms.len() {
        if !matches!(terms[i].stem.as_str(), "without" | "no") {
            i += 1;
            continue;
        }
        // The denial's reach, up to "with" or the end; the list's last item, if one is found.
        let mut end = i + 1;
        let mut last_item = None;
        while end < terms.len() && terms[end].stem != "with" {
            let between = gap(end);
            if between.contains(',') {
                let lower = between.to_ascii_lowercase();
                if lower.contains(" and ") || lower.contains(" or ") {
                    last_item = Some(end);
                } else if last_item.is_some() {
                    break;
                }
            }
            end += 1;
        }
        if let Some(last) = last_item {
            let stop = (last + 1..end).find(|&j| gap(j).contains([',', ';', ':'])).unwrap_or(end);
            for flag in &mut denied[i + 1..stop] {
                *flag = true;
            }
            i = stop;
        } else {
            i += 1;
        }
    }
    denied
}

/// Which terms stand inside parentheses or square brackets. The tabular list encloses
/// nonessential modifiers in parentheses ("Essential (primary) hypertension") and synonyms
/// or explanations in brackets: a text without them still names the same condition.
pub fn bracketed(text: &str, terms: &[Term]) -> Vec<bool> {
    let mut depth_at = Vec::with_capacity(text.len() + 1);
    let mut depth = 0i32;
    for byte in text.bytes() {
        depth_at.push(depth);
        match byte {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = (depth - 1).max(0),
            _ => {}
        }
    }
    depth_at.push(depth);
    terms.iter().map(|term| depth_at.get(term.start).is_some_and(|&d| d > 0)).collect()
}

/// Which terms a phrase leaves unspecified after a comma: "eye" in "Glaucoma, unspecified
/// eye", "organism" in "Pneumonia, unspecified organism". A text that does not say which eye
/// or organism names that code; one that does names a sibling. The scope ends at a clause
/// break or at "with", "without" or "due".
pub fn left_unspecified(text: &str, terms: &[Term]) -> Vec<bool> {
    static UNSPECIFIED: OnceLock<String> = OnceLock::new();
    let unspecified = UNSPECIFIED.get_or_init(|| stem("unspecified"));
    let mut left = vec![false; terms.len()];
    let mut open = false;
    for (i, term) in terms.iter().enumerate() {
        let before = i.checked_sub(1).map_or(0, |p| terms[p].end).min(term.start);
        let after_break = text[before..term.start].contains([',', ';', ':']);
        if after_break || matches!(term.stem.as_str(), "with" | "without" | "due") {
            open = false;
        }
        if term.stem == *unspecified {
            open = after_break;
        } else {
            left[i] = open;
        }
    }
    left
}

/// The region and number of a spinal level ("l4" is lumbar 4).
fn spinal_level(word: &str) -> Option<(&'static str, &str)> {
    let mut chars = word.chars();
    let letter = chars.next()?;
    let number = chars.as_str();
    let (_, region, last) = SPINAL_LEVELS.iter().find(|(l, _, _)| *l == letter)?;
    let level: u32 = number.parse().ok().filter(|_| number.bytes().all(|b| b.is_ascii_digit()))?;
    (1..=*last).contains(&level).then_some((*region, number))
}

/// The American spelling of a word.
fn american(word: &str) -> Cow<'_, str> {
    // Every British spelling has one of these pairs of letters; most words have none.
    let bytes = word.as_bytes();
    if !bytes.windows(2).any(|pair| matches!(pair, b"ae" | b"oe" | b"ou" | b"uc" | b"ph" | b"ey")) {
        return Cow::Borrowed(word);
    }
    let mut word = Cow::Borrowed(word);
    for (british, american) in BRITISH_SPELLINGS {
        if word.contains(british) {
            word = Cow::Owned(word.replace(british, american));
        }
    }
    word
}

fn push_word(terms: &mut Vec<Term>, tables: &Tables, word: &str, start: usize, end: usize) {
    if tables.stop.contains(word) {
        return;
    }
    let american = american(word);
    let word = american.as_ref();
    let word = tables.equivalents.get(word).copied().unwrap_or(word);
    terms.push(Term { stem: stem(word), start, end });
}

/// Splits text into words of ASCII letters and digits. Accented letters are folded
/// ("Ménière" is "meniere"), apostrophes vanish inside words ("Crohn's" is "crohns", which
/// stems like "Crohn"), anything else separates words.
fn words(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut end = 0;
    let mut after_slash = false;
    let mut separator_was_slash = false;
    let mut chars = text.char_indices().peekable();
    while let Some((offset, ch)) = chars.next() {
        if let Some(folded) = fold(ch) {
            if current.is_empty() {
                start = offset;
                after_slash = separator_was_slash;
            }
            current.push_str(folded);
            end = offset + ch.len_utf8();
            continue;
        }
        let apostrophe = matches!(ch, '\'' | '\u{2019}');
        let inside_word =
            !current.is_empty() && chars.peek().is_some_and(|&(_, next)| next.is_ascii_alphabetic());
        if apostrophe && inside_word {
            continue;
        }
        if !current.is_empty() {
            words.push(Word { text: std::mem::take(&mut current), start, end, after_slash });
            separator_was_slash = ch == '/';
        } else {
            separator_was_slash = false;
        }
    }
    if !current.is_empty() {
        words.push(Word { text: current, start, end, after_slash });
    }
    words
}

/// The lowercase ASCII spelling of a word character, or `None` for a separator.
fn fold(ch: char) -> Option<&'static str> {
    const ASCII: [&str; 36] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
        "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    if ch.is_ascii_digit() {
        return Some(ASCII[(ch as u8 - b'0') as usize]);
    }
    if ch.is_ascii_alphabetic() {
        return Some(ASCII[(ch.to_ascii_lowercase() as u8 - b'a') as usize + 10]);
    }
    if ch.is_ascii() {
        return None;
    }
    Some(match ch {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'ç' | 'Ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ß' => "ss",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(text: &str) -> Vec<String> {
        analyse(text).into_iter().map(|term| term.stem).collect()
    }

    #[test]
    fn words_are_folded_and_stemmed() {
        assert_eq!(stems("Fractures of the Femur"), ["fractur", "femur"]);
        assert_eq!(stems("Ménière's disease"), ["menier", "diseas"]);
        assert_eq!(stems("Crohn's disease"), stems("Crohn disease"));
        assert_eq!(
            stems("Type 2 diabetes mellitus without complications"),
            ["type", "2", "diabet", "mellitu", "without", "complic"]
        );
    }

    #[test]
    fn what_a_title_leaves_unspecified_after_a_comma() {
        let left = |text: &str| -> Vec<String> {
            let terms = analyse(text);
            let flags = left_unspecified(text, &terms);
            terms.into_iter().zip(flags).filter(|(_, left)| *left).map(|(term, _)| term.stem).collect()
        };
        assert_eq!(left("Glaucoma, unspecified eye"), ["ey"]);
        assert_eq!(left("Pneumonia, unspecified organism"), ["organ"]);
        assert!(left("Unspecified fracture of the lower end of right radius").is_empty());
        assert!(left("Fracture of unspecified part of neck of right femur").is_empty());
        assert!(left("Alcohol use, unspecified with intoxication").is_empty());
    }

    #[test]
    fn a_week_of_pregnancy_names_its_trimester() {
        let stems_of = |text: &str| -> Vec<String> {
            with_trimesters(analyse(text)).into_iter().map(|t| t.stem).collect()
        };
        assert!(stems_of("preeclampsia at 34 weeks").ends_with(&[stem("third"), stem("trimester")]));
        assert!(stems_of("UTI at 20 weeks").ends_with(&[stem("second"), stem("trimester")]));
        assert!(stems_of("bleeding at 9 weeks").ends_with(&[stem("first"), stem("trimester")]));
        assert!(!stems_of("cough for 3 days").contains(&stem("trimester")));
        assert_eq!(stems("C. diff colitis"), stems("clostridium difficile colitis"));
    }

    #[test]
    fn an_unknown_cause_is_unspecified() {
        assert_eq!(stems("chest pain of unclear cause"), stems("chest pain unspecified"));
        assert_eq!(stems("Fever of unknown origin"), stems("fever unspecified"));
        assert_eq!(stems("unknown"), ["unknown"]);
    }

    #[test]
    fn influenza_a_or_b_is_an_identified_virus() {
        assert_eq!(stems("Influenza A"), stems("influenza identified"));
        assert_eq!(stems("flu B"), stems("influenza identified"));
        assert_eq!(stems("influenza"), ["influenza"]);
    }

    #[test]
    fn shorthand_is_expanded_with_the_span_of_its_word() {
        assert_eq!(stems("T2DM"), stems("type 2 diabetes mellitus"));
        assert_eq!(stems("htn"), stems("hypertension"));
        assert_eq!(stems("fx rt femur"), stems("fracture right femur"));
        assert_eq!(stems("DM w/o complications"), stems("diabetes mellitus without complications"));
        assert_eq!(stems("s/p MI"), stems("status post myocardial infarction"));
        let terms = analyse("acute MI");
        assert_eq!(terms.len(), 3);
        assert_eq!((terms[1].start, terms[1].end), (6, 8));
        assert_eq!((terms[2].start, terms[2].end), (6, 8));
    }

    #[test]
    fn roman_numerals_become_numbers_where_they_are_numbers() {
        assert_eq!(stems("Type II diabetes"), stems("type 2 diabetes"));
        assert_eq!(stems("type I"), stems("type 1"));
        assert_eq!(stems("stage IV"), stems("stage 4"));
        // "IV" alone is intravenous, not four.
        assert_eq!(stems("iv fluids"), ["iv", "fluid"]);
    }

    #[test]
    fn denial_reaches_to_the_clause_end() {
        let denied_stems = |text: &str| -> Vec<String> {
            let terms = analyse(text);
            let denied = denied(text, &terms);
            terms.into_iter().zip(denied).filter(|(_, d)| *d).map(|(t, _)| t.stem).collect()
        };
        assert_eq!(denied_stems("Type 2 diabetes mellitus without complications"), ["complic"]);
        assert_eq!(
            denied_stems("Acute appendicitis with generalized peritonitis, without abscess"),
            ["abscess"]
        );
        assert_eq!(
            denied_stems("Epilepsy, not intractable, without status epilepticus"),
            ["intract", "statu", "epilepticu"]
        );
        assert_eq!(denied_stems("Migraine without aura with status migrainosus"), ["aura"]);
        assert!(denied_stems("Hypertensive heart disease with heart failure").is_empty());
    }

    #[test]
    fn denial_reaches_over_a_list() {
        let denied_stems = |text: &str| -> Vec<String> {
            let terms = analyse(text);
            let denied = denied_with_lists(text, &terms);
            terms.into_iter().zip(denied).filter(|(_, d)| *d).map(|(t, _)| t.stem).collect()
        };
        assert_eq!(
            denied_stems(
                "Dementia, mild, without behavioral disturbance, psychotic disturbance, and anxiety"
            ),
            ["behavior", "disturb", "psychot", "disturb", "anxieti"]
        );
        assert_eq!(denied_stems("Laceration without foreign body, left hand"), ["foreign", "bodi"]);
        assert_eq!(denied_stems("Migraine without aura, with status migrainosus"), ["aura"]);
    }

    #[test]
    fn nonessential_modifiers_are_bracketed() {
        let text = "Hypertension (arterial) (benign) [essential]";
        let terms = analyse(text);
        assert_eq!(bracketed(text, &terms), [false, true, true, true]);
    }

    #[test]
    fn british_spellings_and_spinal_levels_meet_the_classification() {
        assert_eq!(stems("oesophageal haemorrhage"), stems("esophageal hemorrhage"));
        assert_eq!(stems("paediatric anaemia, tumour"), stems("pediatric anemia, tumor"));
        assert_eq!(stems("L4 level"), stems("lumbar 4 level"));
        assert_eq!(stems("T12"), stems("thoracic 12"));
        assert_eq!(stems("t13"), ["t13"]);
        assert_eq!(stems("C1 esterase"), ["c1", "esteras"]);
        assert_eq!(stems("S. aureus"), stems("Staphylococcus aureus"));
        assert_eq!(stems("hepatitis c"), ["hepatitis", "c"]);
    }

    #[test]
    fn meaningful_small_words_are_kept() {
        assert_eq!(stems("due to underlying condition"), ["due", "underli", "condit"]);
        assert_eq!(stems("epilepsy, not intractable"), ["epilepsi", "not", "intract"]);
        assert_eq!(stems("hepatitis C"), ["hepatitis", "c"]);
    }
}
