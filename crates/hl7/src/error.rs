//! The crate's one error type, with the HL7 table 0357 code and the place in the message that
//! an acknowledgement reports back to the sender.

use std::fmt;

/// HL7 table 0357, "Message error condition codes": the codes an ERR segment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 100: segments out of order, or a required segment missing.
    SegmentSequenceError,
    /// 101: a required field is missing.
    RequiredFieldMissing,
    /// 102: a value does not fit its data type (a date that is no date, a number that is no
    /// number).
    DataTypeError,
    /// 103: a coded value is not in its table.
    TableValueNotFound,
    /// 200: MSH-9.1 names a message type this receiver does not take.
    UnsupportedMessageType,
    /// 201: MSH-9.2 names a trigger event this receiver does not take.
    UnsupportedEventCode,
    /// 202: MSH-11 names a processing id this receiver does not take.
    UnsupportedProcessingId,
    /// 203: MSH-12 names a version this receiver does not take.
    UnsupportedVersionId,
    /// 204: the key identifier (e.g. a patient) is unknown.
    UnknownKeyIdentifier,
    /// 205: the key identifier is already in use.
    DuplicateKeyIdentifier,
    /// 206: the record is locked.
    ApplicationRecordLocked,
    /// 207: anything else on the receiving side.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code as it goes into ERR-3.1.
    pub fn number(self) -> u16 {
        match self {
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationRecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The table's description, as it goes into ERR-3.2.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.description())
    }
}

/// Where in a message an error sits: the parts of an ERL (ERR-2).
///
/// `sequence` is the segment's occurrence among the message's segments of its id (1 for the
/// first PID, wherever it is); a required segment that is missing is reported as its first
/// occurrence. Field numbers follow HL7, so MSH-3
/// is the first field after the encoding characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: String,
    pub sequence: usize,
    pub field: Option<usize>,
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

impl Location {
    /// A whole segment.
    pub fn segment(segment: &str, sequence: usize) -> Location {
        Location {
            segment: segment.to_string(),
            sequence,
            field: None,
            repetition: None,
            component: None,
            subcomponent: None,
        }
    }

    /// A field of a segment (its first repetition).
    pub fn field(segment: &str, sequence: usize, field: usize) -> Location {
        Location { field: Some(field), repetition: Some(1), ..Location::segment(segment, sequence) }
    }

    /// The same place, narrowed to one repetition of the field.
    pub fn with_repetition(mut self, repetition: usize) -> Location {
        self.repetition = Some(repetition);
        self
    }

    /// The same place, narrowed to one component.
    pub fn with_component(mut self, component: usize) -> Location {
        self.component = Some(component);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment)?;
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(component) = self.component {
                write!(f, ".{component}")?;
                if let Some(subcomponent) = self.subcomponent {
                    write!(f, ".{subcomponent}")?;
                }
            }
            if let Some(repetition) = self.repetition.filter(|r| *r > 1) {
                write!(f, " (repetition {repetition})")?;
            }
        }
        if self.sequence == usize::MAX {
            write!(f, " (segment absent)")
        } else {
            write!(f, " (segment {})", self.sequence)
        }
    }
}

/// How the receiver answers: MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept: the message was applied.
    Accept,
    /// Application error: the message was understood but its content could not be applied.
    Error,
    /// Application reject: the message could not be processed at all.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A message that cannot be parsed or mapped; the code and place go back in the ACK.
    #[error("{code}{}: {text}", display_location(.location))]
    Message { code: ErrorCode, location: Option<Location>, text: String },
    /// An MLLP frame longer than the configured limit; the decoder skips to the next frame.
    #[error("MLLP frame longer than {limit} bytes")]
    FrameTooLarge { limit: usize },
}

fn display_location(location: &Option<Location>) -> String {
    location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default()
}

/// Errors from [`crate::Message::parse`].
pub type ParseError = Error;
/// Errors from [`crate::map()`].
pub type MapError = Error;

impl Error {
    pub(crate) fn at(code: ErrorCode, location: Location, text: impl Into<String>) -> Error {
        Error::Message { code, location: Some(location), text: text.into() }
    }

    /// The table 0357 code. An oversized frame has no code of its own: 207.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Message { code, .. } => *code,
            Error::FrameTooLarge { .. } => ErrorCode::ApplicationInternalError,
        }
    }

    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Message { location, .. } => location.as_ref(),
            Error::FrameTooLarge { .. } => None,
        }
    }

    /// The human-readable text for ERR-8.
    pub fn text(&self) -> String {
        match self {
            Error::Message { text, .. } => text.clone(),
            Error::FrameTooLarge { .. } => self.to_string(),
        }
    }

    /// The acknowledgement this error calls for.
    ///
    /// AR when the message cannot be processed at all: no usable MSH (anything located in MSH,
    /// or a message whose first segment is not MSH), or an unsupported message type, event,
    /// processing id or version. AE for everything about the content: a missing field or
    /// segment, a bad value, a value not in its table.
    pub fn ack_code(&self) -> AckCode {
        let code = self.code();
        let unsupported = matches!(
            code,
            ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEventCode
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersionId
        );
        let header = match self.location() {
            Some(location) => location.segment == "MSH",
            None => true,
        };
        if unsupported || header { AckCode::Reject } else { AckCode::Error }
    }
}
