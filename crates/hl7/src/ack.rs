//! Building the acknowledgement (ACK) returned for every inbound message.
//!
//! Convention: AR ("application reject") when the message cannot be processed at all: no
//! usable MSH, or an unsupported message type, trigger event or version. AE ("application
//! error") when the message was understood but its content cannot be applied: a missing
//! required field or segment, a value of the wrong data type, a code not in its table, or the
//! server refusing the resulting resources (for instance its validation rejecting one). AA when
//! everything was applied. [`crate::Error::ack_code`] picks AR or AE for this crate's errors.

use crate::error::{AckCode, Error, ErrorCode, Location};
use crate::escape::escape;
use crate::message::Message;

/// ERR-4, table 0516.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// One ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub severity: Severity,
    pub location: Option<Location>,
    /// ERR-8, the message for a person; escaped on the way out.
    pub text: String,
}

impl ErrorDetail {
    /// An error with no particular place, e.g. the server rejecting a mapped resource
    /// (code 207 suits that case).
    pub fn new(code: ErrorCode, text: impl Into<String>) -> ErrorDetail {
        ErrorDetail { code, severity: Severity::Error, location: None, text: text.into() }
    }
}

impl From<&Error> for ErrorDetail {
    fn from(error: &Error) -> ErrorDetail {
        ErrorDetail {
            code: error.code(),
            severity: Severity::Error,
            location: error.location().cloned(),
            text: error.text(),
        }
    }
}

/// Builds an ACK for `message` (or for a message too broken to parse, when `None`).
///
/// `sending` is this receiver's application and facility, which go into MSH-3 and MSH-4; the
/// original sender's MSH-3 and MSH-4 become MSH-5 and MSH-6. `control_id` is the ACK's own
/// MSH-10 and `now` its MSH-7 (an HL7 DTM). Segments end with `\r`.
pub fn ack(
    message: Option<&Message>,
    code: AckCode,
    errors: &[ErrorDetail],
    sending: (&str, &str),
    control_id: &str,
    now: &str,
) -> String {
    let header = message.map(Message::header);
    let hd = |field: usize| header.map(|h| hierarchic_designator(h, field)).unwrap_or_default();
    let trigger = message.and_then(Message::trigger_event).map(|t| escape(&t));
    let message_type = match trigger {
        Some(trigger) => format!("ACK^{trigger}^ACK"),
        None => "ACK".to_string(),
    };
    let processing = message
        .and_then(Message::processing_id)
        .filter(|p| matches!(p.as_str(), "P" | "T" | "D"))
        .unwrap_or_else(|| "P".to_string());
    let original_control_id = message.and_then(Message::control_id).map(|c| escape(&c)).unwrap_or_default();

    let msh = [
        "MSH",
        "^~\\&",
        &escape(sending.0),
        &escape(sending.1),
        &hd(3),
        &hd(4),
        &escape(now),
        "",
        &message_type,
        &escape(control_id),
        &processing,
        "2.5.1",
    ]
    .join("|");
    let mut out = format!("{msh}\rMSA|{code}|{original_control_id}\r");
    for error in errors {
        out.push_str(&err_segment(error));
        out.push('\r');
    }
    out
}

/// An HD field (namespace^universal id^type) re-encoded with the standard delimiters, since the
/// original may have used others.
fn hierarchic_designator(header: &crate::message::Segment, field: usize) -> String {
    let components: Vec<String> = header
        .field(field)
        .repetition(1)
        .map(|r| r.components().iter().map(|c| c.value().into_text().unwrap_or_default()).collect())
        .unwrap_or_default();
    let mut encoded: Vec<String> = components.iter().map(|c| escape(c)).collect();
    while encoded.last().is_some_and(String::is_empty) {
        encoded.pop();
    }
    encoded.join("^")
}

fn err_segment(error: &ErrorDetail) -> String {
    let location = error.location.as_ref().map(error_location).unwrap_or_default();
    let code = format!("{}^{}^HL70357", error.code.number(), escape(error.code.description()));
    ["ERR", "", &location, &code, error.severity.as_str(), "", "", "", &escape(&error.text)].join("|")
}

/// ERR-2, an ERL: segment^sequence^field^repetition^component^subcomponent, trailing empty
/// parts left off.
fn error_location(location: &Location) -> String {
    let number = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut parts = vec![
        escape(&location.segment),
        location.sequence.to_string(),
        number(location.field),
        number(location.repetition),
        number(location.component),
        number(location.subcomponent),
    ];
    while parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts.join("^")
}
