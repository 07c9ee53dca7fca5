//! Code references inside ICD-10-CM note texts, such as "(A00-B99)", "(K52.2-)",
//! "(E10.-, E11.-)" or "(T36-T65 with fifth or sixth character 1-4 or 6)".
//!
//! The tabular list writes references by hand, so the parser is lenient about spacing and
//! stray punctuation ("D29.2.-", "I70.2--I70.7-", "P28.3- - P28.4-", "S00 - S09") but only
//! reads a parenthesised group that starts with a code, which keeps words such as "(G6PD)" or
//! "(due to)" out.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A span of codes named by a note: a single code ("E08.42", "O24.-") or a range
/// ("A00-B99", "I63.3-I63.5").
///
/// Membership follows how the tabular list writes references: a code belongs when its leading
/// characters, compared at each endpoint's own length, fall between the endpoints. So
/// "K50-K52" holds K52.2 and "K52.2-" holds K52.21; a code written without a dash also holds
/// its extensions (the seventh-character codes of "S09.90" are S09.90 injuries), and a range
/// never holds an ancestor broader than its endpoints (K52 is not in "K52.2-").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodeRange {
    first: String,
    last: String,
    /// Written with a trailing dash ("K52.2-", "O24.-"), the tabular list's sign that the
    /// code needs further characters. Membership does not depend on it.
    dashed: bool,
}

impl CodeRange {
    /// A range between two codes, given with or without the dot and trailing dash.
    pub fn new(first: &str, last: &str) -> Result<CodeRange, Error> {
        let parse = |text: &str| {
            let mut scanner = Scanner::new(text.trim());
            match scanner.code() {
                Some(code) if scanner.rest().trim_start_matches(['.', '-']).trim().is_empty() => Ok(code),
                _ => Err(Error::Invalid(format!("not an ICD-10-CM code: {text:?}"))),
            }
        };
        let dashed = last.trim().ends_with('-');
        let (first, last) = (parse(first)?, parse(last)?);
        if dotless(&first).gt(dotless(&last)) {
            return Err(Error::Invalid(format!("range {first}-{last} ends before it starts")));
        }
        Ok(CodeRange { first, last, dashed })
    }

    /// The first code, with its dot ("K52.2" for "K52.2-").
    pub fn first(&self) -> &str {
        &self.first
    }

    /// The last code, with its dot; the same as [`first`](Self::first) for a single code.
    pub fn last(&self) -> &str {
        &self.last
    }

    /// Whether this names one code (and everything below it) rather than a span.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }

    /// Whether the reference ends in a dash ("K52.2-", "O24.-"): the code is incomplete and
    /// stands for the codes below it.
    pub fn is_dashed(&self) -> bool {
        self.dashed
    }

    /// Whether `code` (with or without its dot, any case) falls in this range.
    pub fn contains(&self, code: &str) -> bool {
        let mut buffer = [0u8; 16];
        let Some(code) = normalise(code, &mut buffer) else { return false };
        let at_length = |bound: &str| {
            let length = dotless(bound).count();
            code.iter().copied().take(length).cmp(dotless(bound))
        };
        at_length(&self.first).is_ge() && at_length(&self.last).is_le()
    }
}

/// Written as the tabular list writes it: "A00-B99", "E11.9", "K52.2-", "O24.-".
impl fmt::Display for CodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_single() {
            write!(f, "{}-", self.first)?;
        }
        f.write_str(&self.last)?;
        match (self.dashed, self.last.len()) {
            (false, _) => Ok(()),
            (true, 3) => f.write_str(".-"),
            (true, _) => f.write_str("-"),
        }
    }
}

impl FromStr for CodeRange {
    type Err = Error;

    /// Reads one reference as the tabular list writes it: "A00-B99", "K52.2-", "O24.-", "E11.9".
    fn from_str(text: &str) -> Result<CodeRange, Error> {
        let mut scanner = Scanner::new(text.trim());
        match scanner.reference() {
            Some(range) if scanner.rest().trim().is_empty() => Ok(range),
            _ => Err(Error::Invalid(format!("not an ICD-10-CM code reference: {text:?}"))),
        }
    }
}

/// Every code reference in a note text, in order of appearance.
pub fn parse_references(text: &str) -> Vec<CodeRange> {
    let mut references = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let after = &rest[open + 1..];
        // The innermost group: "(in) (due to) (E11.-)" has three, none nested in practice.
        let Some(close) = after.find([')', '(']) else { break };
        if after.as_bytes()[close] == b')' {
            read_group(&after[..close], &mut references);
            rest = &after[close + 1..];
        } else {
            rest = &after[close..];
        }
    }
    references
}

/// Reads "E10.-, E11.-", "A00-R94 and T80-T88.6, T88.8" or "T36-T65 with fifth ... 6",
/// stopping at the first thing that is not a reference: what follows "with" qualifies the
/// range and is not part of it.
fn read_group(group: &str, references: &mut Vec<CodeRange>) {
    let mut scanner = Scanner::new(group);
    scanner.skip_spaces();
    let _ = scanner.eat("i.e.") || scanner.eat("e.g.");
    loop {
        scanner.skip_spaces();
        let Some(range) = scanner.reference() else { return };
        references.push(range);
        scanner.skip_spaces();
        if !(scanner.eat(",") || scanner.eat("and ") || scanner.eat("or ")) {
            return;
        }
    }
}

/// The code's characters without the dot.
fn dotless(code: &str) -> impl Iterator<Item = u8> + '_ {
    code.bytes().filter(|&b| b != b'.')
}

/// Upper-cases `code` without its dot into `buffer`; None when it cannot be a code.
fn normalise<'b>(code: &str, buffer: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    let mut length = 0;
    for byte in code.trim().bytes().filter(|&b| b != b'.') {
        if !byte.is_ascii_alphanumeric() || length == buffer.len() {
            return None;
        }
        buffer[length] = byte.to_ascii_uppercase();
        length += 1;
    }
    (length >= 3).then_some(&buffer[..length])
}

struct Scanner<'t> {
    text: &'t str,
    position: usize,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Scanner<'t> {
        Scanner { text, position: 0 }
    }

    fn rest(&self) -> &'t str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn eat(&mut self, word: &str) -> bool {
        let found = self.rest().starts_with(word);
        if found {
            self.position += word.len();
        }
        found
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.position += 1;
        }
    }

    /// One code or range, with its trailing dashes.
    fn reference(&mut self) -> Option<CodeRange> {
        let first = self.code()?;
        let mut last = None;
        let mut dashed = false;
        loop {
            let before = self.position;
            self.skip_spaces();
            if !self.eat("-") {
                self.position = before;
                break;
            }
            // A dash either marks "and the codes below" or separates the range's ends.
            let marker = self.position;
            self.skip_spaces();
            match (&last, self.code()) {
                (None, Some(end)) => {
                    last = Some(end);
                    dashed = false;
                }
                (_, _) => {
                    self.position = marker;
                    dashed = true;
                }
            }
        }
        let last = last.unwrap_or_else(|| first.clone());
        let ordered = dotless(&first).cmp(dotless(&last)).is_le();
        ordered.then_some(CodeRange { first, last, dashed })
    }

    /// A code such as "A00", "E11.9", "C7A.026", "S06.0X-" or the sloppy "D29.2.": three
    /// characters (letter, digit, digit or letter), then optionally a dot and up to four more.
    /// Returns it with its dot and without trailing punctuation.
    fn code(&mut self) -> Option<String> {
        let bytes = self.rest().as_bytes();
        let category = bytes.get(..3)?;
        if !(category[0].is_ascii_uppercase()
            && category[1].is_ascii_digit()
            && (category[2].is_ascii_digit() || category[2].is_ascii_uppercase()))
        {
            return None;
        }
        let mut length = 3;
        let mut code = String::from_utf8_lossy(category).into_owned();
        if bytes.get(length) == Some(&b'.') {
            length += 1;
            let start = length;
            while length - start < 4 && bytes.get(length).is_some_and(|b| is_code_character(*b)) {
                length += 1;
            }
            if length > start {
                code.push('.');
                code.push_str(&self.rest()[start..length]);
            }
            // "D29.2.-", "I69. with final characters -23"
            if bytes.get(length) == Some(&b'.') {
                length += 1;
            }
        }
        // "G6PD" and "T2DM" are words, not codes.
        if bytes.get(length).is_some_and(|b| is_code_character(*b)) {
            return None;
        }
        self.position += length;
        Some(code)
    }
}

fn is_code_character(byte: u8) -> bool {
    byte.is_ascii_digit() || byte.is_ascii_uppercase()
}
