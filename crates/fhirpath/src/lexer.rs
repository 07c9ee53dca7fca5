//! Tokens of FHIRPath text.

use crate::Error;

/// One token, with the character offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// 0-based character offset in the expression.
    pub at: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// A plain identifier (keywords such as `and` are identifiers to the lexer).
    Identifier(String),
    /// A `` `delimited` `` identifier: never a keyword.
    DelimitedIdentifier(String),
    String(String),
    /// Digits with an optional fraction, as written.
    Number(String),
    /// Digits followed by `L`.
    Long(String),
    /// `@...` date or date-time text without the `@`.
    DateTime(String),
    /// `@T...` time text without the `@T`.
    Time(String),
    /// `%name`, `` %`name` `` or `%'name'`.
    Variable(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    Symbol(&'static str),
    End,
}

impl TokenKind {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Identifier(name) | TokenKind::DelimitedIdentifier(name) => format!("'{name}'"),
            TokenKind::String(text) => format!("string '{text}'"),
            TokenKind::Number(text) | TokenKind::Long(text) => format!("number {text}"),
            TokenKind::DateTime(text) => format!("@{text}"),
            TokenKind::Time(text) => format!("@T{text}"),
            TokenKind::Variable(name) => format!("%{name}"),
            TokenKind::Special(name) => format!("${name}"),
            TokenKind::Symbol(symbol) => format!("'{symbol}'"),
            TokenKind::End => "the end of the expression".to_string(),
        }
    }
}

const SYMBOLS: &[&str] = &[
    "!=", "!~", "<=", ">=", ".", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "&", "|", "=", "~",
    "<", ">",
];

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, Error> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(Error::parse(start, "comment '/*' is never closed with '*/'"));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let at = i;
        let kind = if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            TokenKind::Identifier(chars[start..i].iter().collect())
        } else if c == '`' {
            let (value, next) = quoted(&chars, i, '`')?;
            i = next;
            TokenKind::DelimitedIdentifier(value)
        } else if c == '\'' {
            let (value, next) = quoted(&chars, i, '\'')?;
            i = next;
            TokenKind::String(value)
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let digits: String = chars[start..i].iter().collect();
            if chars.get(i) == Some(&'L') {
                i += 1;
                TokenKind::Long(digits)
            } else {
                TokenKind::Number(digits)
            }
        } else if c == '@' {
            i += 1;
            if chars.get(i) == Some(&'T') {
                i += 1;
                let start = i;
                // `hh[:mm[:ss[.fff]]]`: a ':' or '.' belongs to the time only if a digit follows,
                // so `@T14.is(Time)` ends the literal before the dot.
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || (matches!(chars[i], ':' | '.')
                            && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
                {
                    i += 1;
                }
                TokenKind::Time(chars[start..i].iter().collect())
            } else {
                let start = i;
                i = scan_date_time(&chars, i);
                if i == start {
                    return Err(Error::parse(at, "'@' must be followed by a date, date-time or time"));
                }
                TokenKind::DateTime(chars[start..i].iter().collect())
            }
        } else if c == '%' {
            i += 1;
            match chars.get(i) {
                Some('`') => {
                    let (value, next) = quoted(&chars, i, '`')?;
                    i = next;
                    TokenKind::Variable(value)
                }
                Some('\'') => {
                    let (value, next) = quoted(&chars, i, '\'')?;
                    i = next;
                    TokenKind::Variable(value)
                }
                Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                    let start = i;
                    while i < chars.len()
                        && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '-'))
                    {
                        i += 1;
                    }
                    TokenKind::Variable(chars[start..i].iter().collect())
                }
                _ => return Err(Error::parse(at, "'%' must be followed by a variable name")),
            }
        } else if c == '$' {
            i += 1;
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if !matches!(name.as_str(), "this" | "index" | "total") {
                return Err(Error::parse(at, format!("unknown special variable '${name}'")));
            }
            TokenKind::Special(name)
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                Some(symbol) => {
                    i += symbol.chars().count();
                    TokenKind::Symbol(symbol)
                }
                None => return Err(Error::parse(at, format!("unexpected character '{c}'"))),
            }
        };
        tokens.push(Token { kind, at });
    }
    tokens.push(Token { kind: TokenKind::End, at: chars.len() });
    Ok(tokens)
}

/// Scans `YYYY[-MM[-DD]][T[hh[:mm[:ss[.fff]]]][zone]]` and returns the end offset.
fn scan_date_time(chars: &[char], mut i: usize) -> usize {
    let digits = |i: usize, n: usize| (i..i + n).all(|k| chars.get(k).is_some_and(char::is_ascii_digit));
    if !digits(i, 4) {
        return i;
    }
    i += 4;
    for _ in 0..2 {
        if chars.get(i) == Some(&'-') && digits(i + 1, 2) {
            i += 3;
        } else {
            break;
        }
    }
    if chars.get(i) != Some(&'T') {
        return i;
    }
    i += 1;
    if digits(i, 2) {
        i += 2;
        for _ in 0..2 {
            if chars.get(i) == Some(&':') && digits(i + 1, 2) {
                i += 3;
            } else {
                break;
            }
        }
        if chars.get(i) == Some(&'.') && digits(i + 1, 1) {
            i += 1;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
        }
    }
    if chars.get(i) == Some(&'Z') {
        i += 1;
    } else if matches!(chars.get(i), Some('+' | '-'))
        && digits(i + 1, 2)
        && chars.get(i + 3) == Some(&':')
        && digits(i + 4, 2)
    {
        i += 6;
    }
    i
}

/// Reads a quoted string or delimited identifier starting at `start` (the opening quote).
fn quoted(chars: &[char], start: usize, quote: char) -> Result<(String, usize), Error> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(Error::parse(start, format!("{quote} is never closed")));
        };
        i += 1;
        if c == quote {
            return Ok((value, i));
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        let Some(&escaped) = chars.get(i) else {
            return Err(Error::parse(start, format!("{quote} is never closed")));
        };
        i += 1;
        match escaped {
            '\'' | '"' | '`' | '\\' | '/' => value.push(escaped),
            'f' => value.push('\u{000C}'),
            'n' => value.push('\n'),
            'r' => value.push('\r'),
            't' => value.push('\t'),
            'u' => {
                let hex: String = chars.get(i..i + 4).map(|h| h.iter().collect()).unwrap_or_default();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| Error::parse(i - 2, "\\u must be followed by four hex digits"))?;
                value.push(code);
                i += 4;
            }
            other => return Err(Error::parse(i - 2, format!("unknown escape '\\{other}'"))),
        }
    }
}
