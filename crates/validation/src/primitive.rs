//! The lexical rules of the R4 primitive types (the `regex` extension of each primitive's
//! `value` element), written out by hand: the specification's patterns are simple, and a
//! regex engine per value would cost more than the whole walk.

use fhir::{DateTime, DateTimeKind};
use serde_json::Value as Json;

/// Why `value` is not a valid `type_code`, or `None` when it is.
pub fn problem(type_code: &str, value: &Json) -> Option<String> {
    let expected_json = match type_code {
        "boolean" => return (!value.is_boolean()).then(|| "expected true or false".to_string()),
        "integer" | "unsignedInt" | "positiveInt" => {
            let Some(number) = value.as_i64().filter(|_| value.is_i64() || value.is_u64()) else {
                return Some("expected a whole number".into());
            };
            let low = match type_code {
                "integer" => i64::from(i32::MIN),
                "unsignedInt" => 0,
                _ => 1,
            };
            return (!(low..=i64::from(i32::MAX)).contains(&number))
                .then(|| format!("{number} is outside the range of {type_code}"));
        }
        "decimal" => {
            if !value.is_number() {
                return Some("expected a number".into());
            }
            // Lexically valid, but search and comparison need a double: refusing is better
            // than a value that no search can find.
            return value.as_f64().is_none_or(|v| !v.is_finite()).then(|| {
                format!(
                    "{} is outside the range of decimals this server can compare (about ±1.8e308)",
                    shorten(&value.to_string())
                )
            });
        }
        _ => "a string",
    };
    let Some(text) = value.as_str() else { return Some(format!("expected {expected_json}")) };
    if text.is_empty() {
        return Some("an empty string is not a value (leave the element out)".into());
    }
    if STRING_TYPES.contains(&type_code) && text.len() > MAX_STRING_BYTES {
        return Some(format!(
            "the {type_code} is {} bytes; FHIR strings shall not exceed 1 MB ({MAX_STRING_BYTES} bytes)",
            text.len()
        ));
    }
    let fits = match type_code {
        "string" | "markdown" => !text.trim().is_empty(),
        "code" => text.trim() == text && !text.contains(['\t', '\n', '\r']) && !text.contains("  "),
        "id" => fhir::is_valid_id(text),
        "uri" | "url" | "canonical" => !text.contains(char::is_whitespace),
        "uuid" => is_uuid(text),
        "oid" => is_oid(text),
        "date" => DateTime::parse(text, DateTimeKind::Date).is_ok(),
        "dateTime" => DateTime::parse(text, DateTimeKind::DateTime).is_ok(),
        "instant" => DateTime::parse(text, DateTimeKind::Instant).is_ok(),
        "time" => is_time(text),
        "base64Binary" => is_base64(text),
        "xhtml" => {
            let trimmed = text.trim();
            trimmed.starts_with("<div") && (trimmed.ends_with("</div>") || trimmed.ends_with("/>"))
        }
        _ => true,
    };
    (!fits).then(|| format!("'{}' is not a valid {type_code}", shorten(text)))
}

/// The string type and its specializations in R4, to which the 1 MB limit applies.
const STRING_TYPES: &[&str] = &["string", "markdown", "code", "id"];

/// "FHIR strings SHALL NOT exceed 1MB in size" (the `string` definition).
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// What is questionable but allowed about a valid `value` of `type_code`: R4 says strings
/// SHOULD NOT hold control characters other than tab, carriage return and line feed, which
/// usually come from a broken export or a pasted binary.
pub fn warning(type_code: &str, value: &Json) -> Option<String> {
    if !STRING_TYPES.contains(&type_code) {
        return None;
    }
    let text = value.as_str()?;
    let control = text.chars().find(|&c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))?;
    Some(format!(
        "the {type_code} contains the control character U+{:04X}; strings should hold only tab, carriage return and line feed below U+0020",
        u32::from(control)
    ))
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        return text.to_string();
    }
    let cut: String = text.chars().take(57).collect();
    format!("{cut}...")
}

fn is_uuid(text: &str) -> bool {
    let Some(hex) = text.strip_prefix("urn:uuid:") else { return false };
    let groups: Vec<&str> = hex.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, len)| {
            g.len() == len && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn is_oid(text: &str) -> bool {
    let Some(arcs) = text.strip_prefix("urn:oid:") else { return false };
    let parts: Vec<&str> = arcs.split('.').collect();
    parts.len() >= 2
        && matches!(parts[0], "0" | "1" | "2")
        && parts[1..].iter().all(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0'))
        })
}

fn is_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let two = |at: usize, max: u8| {
        bytes.get(at..at + 2).is_some_and(|d| {
            d[0].is_ascii_digit() && d[1].is_ascii_digit() && (d[0] - b'0') * 10 + (d[1] - b'0') <= max
        })
    };
    if bytes.len() < 8 || !two(0, 23) || bytes[2] != b':' || !two(3, 59) || bytes[5] != b':' || !two(6, 60) {
        return false;
    }
    match &text[8..] {
        "" => true,
        fraction => {
            fraction.strip_prefix('.').is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

fn is_base64(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    compact.len().is_multiple_of(4) && compact.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{MAX_STRING_BYTES, problem, warning};

    #[test]
    fn each_primitive_accepts_its_forms_and_refuses_others() {
        let good = [
            ("boolean", json!(true)),
            ("integer", json!(-5)),
            ("positiveInt", json!(1)),
            ("unsignedInt", json!(0)),
            ("decimal", json!(1.50)),
            ("string", json!("a b")),
            ("code", json!("in progress")),
            ("id", json!("a-1.B")),
            ("uri", json!("http://x.org/a")),
            ("uuid", json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")),
            ("oid", json!("urn:oid:1.2.840.10008")),
            ("date", json!("2024-02")),
            ("dateTime", json!("2024-02-29T10:00:00+01:00")),
            ("instant", json!("2024-02-29T10:00:00.123Z")),
            ("time", json!("23:59:60.5")),
            ("base64Binary", json!("aGVsbG8=")),
            ("xhtml", json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>")),
        ];
        for (type_code, value) in good {
            assert_eq!(problem(type_code, &value), None, "{type_code} {value}");
        }
        let bad = [
            ("boolean", json!("true")),
            ("integer", json!(1.5)),
            ("integer", json!(3_000_000_000i64)),
            ("positiveInt", json!(0)),
            ("unsignedInt", json!(-1)),
            ("decimal", json!("1.5")),
            ("decimal", serde_json::from_str::<serde_json::Value>("1e999999").expect("a number")),
            ("string", json!("")),
            ("string", json!("   ")),
            ("code", json!(" x")),
            ("code", json!("a  b")),
            ("id", json!("a_b")),
            ("uri", json!("http://x.org/a b")),
            ("uuid", json!("urn:uuid:C757873D-EC9A-4326-A141-556F43239520")),
            ("oid", json!("urn:oid:3.1")),
            ("date", json!("2024-02-30")),
            ("dateTime", json!("2024-02-29T10:00")),
            ("instant", json!("2024-02-29")),
            ("time", json!("24:00:00")),
            ("base64Binary", json!("abc")),
            ("xhtml", json!("plain text")),
        ];
        for (type_code, value) in bad {
            assert!(problem(type_code, &value).is_some(), "{type_code} {value} should be refused");
        }
    }

    #[test]
    fn strings_over_one_megabyte_are_refused() {
        let at_limit = "a".repeat(MAX_STRING_BYTES);
        assert_eq!(problem("string", &json!(at_limit)), None);
        let over = "é".repeat(MAX_STRING_BYTES / 2 + 1);
        let found = problem("markdown", &json!(over)).expect("over the limit");
        assert!(found.contains("1048578 bytes"), "{found}");
        // Binary content has no such limit.
        assert_eq!(problem("base64Binary", &json!("QUJD".repeat(MAX_STRING_BYTES / 2))), None);
    }

    #[test]
    fn control_characters_in_strings_are_warned_about() {
        let found = warning("string", &json!("a\u{0}b")).expect("NUL");
        assert!(found.contains("U+0000"), "{found}");
        assert!(warning("markdown", &json!("bell \u{7}")).is_some());
        assert_eq!(warning("string", &json!("line one\r\n\tline two")), None);
        assert_eq!(warning("base64Binary", &json!("a\u{0}")), None);
    }
}
