//! The delimiters a message declares in MSH-1 and MSH-2.

use crate::error::{Error, ErrorCode, Location};

/// The delimiters of one message. Only the field and component separators are mandatory:
/// MSH-2 may stop short, and a delimiter it does not declare is simply not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: Option<char>,
    pub escape: Option<char>,
    pub subcomponent: Option<char>,
}

impl Separators {
    /// `|^~\&`, which every outgoing message uses.
    pub fn standard() -> Separators {
        Separators {
            field: '|',
            component: '^',
            repetition: Some('~'),
            escape: Some('\\'),
            subcomponent: Some('&'),
        }
    }

    /// Reads the delimiters from the text right after "MSH": the field separator, then MSH-2 up
    /// to the next field separator.
    pub(crate) fn from_header(after_msh: &str) -> Result<Separators, Error> {
        let mut chars = after_msh.chars();
        let bad = |text: &str, field: usize| {
            Error::at(ErrorCode::DataTypeError, Location::field("MSH", 1, field), text)
        };
        let Some(field) = chars.next() else {
            return Err(Error::at(
                ErrorCode::RequiredFieldMissing,
                Location::field("MSH", 1, 1),
                "MSH has no field separator",
            ));
        };
        if field.is_alphanumeric() || field.is_whitespace() {
            return Err(bad("the field separator must be a punctuation character", 1));
        }
        let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
        let Some(&component) = encoding.first() else {
            return Err(Error::at(
                ErrorCode::RequiredFieldMissing,
                Location::field("MSH", 1, 2),
                "MSH-2 (encoding characters) is empty",
            ));
        };
        // 2.7 adds a truncation character as the fifth; it changes nothing on the way in.
        if encoding.len() > 5 {
            return Err(bad("MSH-2 has more than five encoding characters", 2));
        }
        let mut seen = vec![field];
        for c in &encoding {
            if c.is_alphanumeric() || c.is_whitespace() || seen.contains(c) {
                return Err(bad("the encoding characters must be distinct punctuation characters", 2));
            }
            seen.push(*c);
        }
        Ok(Separators {
            field,
            component,
            repetition: encoding.get(1).copied(),
            escape: encoding.get(2).copied(),
            subcomponent: encoding.get(3).copied(),
        })
    }
}

/// Splits on a delimiter the message may not declare; without it the text is one piece.
pub(crate) fn split(text: &str, delimiter: Option<char>) -> Vec<&str> {
    match delimiter {
        Some(d) => text.split(d).collect(),
        None => vec![text],
    }
}
