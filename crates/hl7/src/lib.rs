//! HL7 v2 inbound messages (target version 2.5.1; 2.3 to 2.8 accepted): parsing, mapping to
//! FHIR R4, acknowledgements and MLLP framing.
//!
//! - [`message`]: [`Message::parse`] splits a message into segments (separated by CR, LF or
//!   CRLF) with the delimiters MSH declares, checks the header (MSH-9, MSH-10, MSH-12) and
//!   gives access by HL7 position (`segment.get(field, repetition, component, subcomponent)`),
//!   with escape sequences decoded and the explicit null `""` told apart from empty.
//!   Z-segments are kept and reachable like any other.
//! - [`map`](mod@map): [`map()`] turns ADT^A01/A02/A03/A04/A08/A11/A13/A28/A31/A40 and ORU^R01 into
//!   an [`Action`], following the HL7 v2-to-FHIR implementation guide: a transaction Bundle
//!   of PUTs (Patient, Encounter, DiagnosticReport, Observation), or a patient merge.
//! - [`ack`](mod@ack): [`ack()`] writes the ACK (MSH, MSA, one ERR per error) for any outcome.
//! - [`mllp`]: MLLP frames and an incremental decoder; no sockets.
//! - [`Error`]: the one error type, carrying an HL7 table 0357 code and an error location, so
//!   every failure can go back to the sender in an ERR segment.
//!
//! Invariants:
//! - No input panics: every position that may be absent is read as absent, every value that
//!   may be malformed is checked and reported as an [`Error`].
//! - Ids are deterministic ([`map::patient_id`] and friends): the same patient, visit, report or
//!   result always maps to the same resource id, so a resent message updates rather than
//!   duplicates, and mapping is a pure function of the message and the [`MappingConfig`].
//! - One message gives one [`Action`], which the server applies as one unit (a FHIR
//!   transaction, or a merge), so a message is either applied whole or not at all, and is
//!   acknowledged AA or AE/AR accordingly.
//! - Mapped resources hold no empty strings, arrays or objects.

pub mod ack;
pub mod datetime;
pub mod error;
pub mod escape;
pub mod map;
pub mod message;
pub mod mllp;
pub mod separators;

pub use ack::{ErrorDetail, Severity, ack};
pub use error::{AckCode, Error, ErrorCode, Location, MapError, ParseError};
pub use map::{Action, MappingConfig, map};
pub use message::{Component, Field, Message, Repetition, Segment, Value};
pub use separators::Separators;
