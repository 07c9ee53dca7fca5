//! HL7 escape sequences: decoding what arrives, encoding what goes out.

use crate::separators::Separators;

/// Decodes the escape sequences in one piece of text (a subcomponent or any larger piece
/// already split from its neighbours).
///
/// `\F\ \S\ \T\ \R\ \E\` become the delimiters they stand for, `\Xhh..\` the bytes it spells
/// (read as UTF-8, or as Latin-1 when they are not UTF-8), `\.br\` a newline. `\H\` and `\N\`
/// (highlighting on and off) carry no text and are dropped. Any other sequence, and an escape
/// character without its closing partner, is kept as it stands so nothing the sender wrote is
/// lost.
pub fn unescape(text: &str, separators: &Separators) -> String {
    let Some(escape) = separators.escape else {
        return text.to_string();
    };
    if !text.contains(escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + escape.len_utf8()..];
        let Some(end) = after.find(escape) else {
            // An unterminated sequence is text, not an escape.
            out.push_str(&rest[start..]);
            return out;
        };
        let body = &after[..end];
        match decode_sequence(body, separators) {
            Some(decoded) => out.push_str(&decoded),
            None => {
                out.push(escape);
                out.push_str(body);
                out.push(escape);
            }
        }
        rest = &after[end + escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn decode_sequence(body: &str, separators: &Separators) -> Option<String> {
    let single = |c: Option<char>| c.map(String::from);
    match body {
        "F" => Some(separators.field.to_string()),
        "S" => Some(separators.component.to_string()),
        "T" => single(separators.subcomponent),
        "R" => single(separators.repetition),
        "E" => single(separators.escape),
        ".br" => Some("\n".to_string()),
        "H" | "N" => Some(String::new()),
        _ => body.strip_prefix('X').and_then(decode_hex),
    }
}

fn decode_hex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks(2)
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect();
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(err) => Some(err.into_bytes().iter().map(|&b| char::from(b)).collect()),
    }
}

/// Encodes text for an outgoing message with the standard delimiters `|^~\&`: each delimiter
/// becomes its escape sequence and line breaks become `\.br\`, so the text can never break the
/// message's structure.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\r' => {
                // A CR LF pair is one line break.
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\.br\\");
            }
            '\n' => out.push_str("\\.br\\"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_standard_sequences() {
        let s = Separators::standard();
        assert_eq!(unescape(r"a\F\b\S\c\T\d\R\e\E\f", &s), r"a|b^c&d~e\f");
        assert_eq!(unescape(r"line\.br\next", &s), "line\nnext");
        assert_eq!(unescape(r"cr\X0D\lf\X0A\", &s), "cr\rlf\n");
        assert_eq!(unescape(r"caf\XC3A9\", &s), "café");
        assert_eq!(unescape(r"\H\bold\N\", &s), "bold");
    }

    #[test]
    fn keeps_unknown_and_broken_sequences() {
        let s = Separators::standard();
        assert_eq!(unescape(r"\.sp2\x", &s), r"\.sp2\x");
        assert_eq!(unescape(r"\Xzz\", &s), r"\Xzz\");
        assert_eq!(unescape(r"trailing\", &s), r"trailing\");
        assert_eq!(unescape(r"\X0\", &s), r"\X0\");
    }

    #[test]
    fn escapes_outgoing_text() {
        assert_eq!(escape("a|b^c&d~e\\f\r\ng\nh"), r"a\F\b\S\c\T\d\R\e\E\f\.br\g\.br\h");
    }
}
