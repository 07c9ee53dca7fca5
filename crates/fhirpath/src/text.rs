//! `encode`/`decode` (base64, urlbase64, hex) and `escape`/`unescape` (html, json).

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str, alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let value = alphabet.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// Encodes a string's UTF-8 bytes.
pub fn encode(text: &str, format: &str) -> Option<String> {
    match format {
        "base64" => Some(base64_encode(text.as_bytes(), BASE64)),
        "urlbase64" => Some(base64_encode(text.as_bytes(), URL_BASE64)),
        "hex" => Some(text.bytes().map(|b| format!("{b:02x}")).collect()),
        _ => None,
    }
}

/// Decodes into a UTF-8 string (`None` if the input or the result is invalid).
pub fn decode(text: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "base64" => base64_decode(text, BASE64)?,
        "urlbase64" => base64_decode(text, URL_BASE64)?,
        "hex" => {
            if !text.len().is_multiple_of(2) {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

/// Escapes for HTML or a JSON string.
pub fn escape(text: &str, format: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    match format {
        "html" => {
            for c in text.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
        }
        "json" => {
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Reverses [`escape`].
pub fn unescape(text: &str, format: &str) -> Option<String> {
    match format {
        "html" => Some(
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        "json" => {
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode("subjects?_d", "base64").as_deref(), Some("c3ViamVjdHM/X2Q="));
        assert_eq!(encode("subjects?_d", "urlbase64").as_deref(), Some("c3ViamVjdHM_X2Q="));
        assert_eq!(decode("c3ViamVjdHM_X2Q=", "urlbase64").as_deref(), Some("subjects?_d"));
        assert_eq!(encode("test", "hex").as_deref(), Some("74657374"));
        assert_eq!(decode("74657374", "hex").as_deref(), Some("test"));
        assert_eq!(escape("\"1<2\"", "html").as_deref(), Some("&quot;1&lt;2&quot;"));
        assert_eq!(unescape("\\\"1<2\\\"", "json").as_deref(), Some("\"1<2\""));
    }
}
