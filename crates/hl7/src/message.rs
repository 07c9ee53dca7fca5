//! Parsing an HL7 v2 message and reading its parts.
//!
//! A message is kept as its segments' raw field texts; fields, repetitions, components and
//! subcomponents are split out on demand, and escape sequences are decoded only in the values
//! handed out, so a delimiter written as `\F\` never splits anything.

use crate::error::{Error, ErrorCode, Location};
use crate::escape::unescape;
use crate::separators::{Separators, split};

/// The explicit null: a value of two double quotes tells the receiver to delete what it holds.
const NULL: &str = "\"\"";

/// One value read from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Not sent, or sent empty: the receiver keeps what it has.
    Empty,
    /// Sent as `""`: the receiver deletes what it has.
    Null,
    /// Text, with escape sequences decoded.
    Text(String),
}

impl Value {
    fn from_raw(raw: &str, separators: &Separators, opaque: bool) -> Value {
        if raw.is_empty() {
            Value::Empty
        } else if opaque {
            Value::Text(raw.to_string())
        } else if raw == NULL {
            Value::Null
        } else {
            Value::Text(unescape(raw, separators))
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text, or `None` for empty and null alike; an empty decoded text is `None` too.
    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

/// One field of a segment, possibly repeated.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    raw: &'a str,
    separators: &'a Separators,
    /// MSH-1 and MSH-2 hold the delimiters themselves and are never split or unescaped.
    opaque: bool,
}

impl<'a> Field<'a> {
    /// The field exactly as it stands in the message.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the whole field is the explicit null `""`.
    pub fn is_null(&self) -> bool {
        !self.opaque && self.raw == NULL
    }

    /// The repetitions; none for an empty field.
    pub fn repetitions(&self) -> Vec<Repetition<'a>> {
        if self.raw.is_empty() {
            return Vec::new();
        }
        let pieces = if self.opaque { vec![self.raw] } else { split(self.raw, self.separators.repetition) };
        pieces
            .into_iter()
            .map(|raw| Repetition { raw, separators: self.separators, opaque: self.opaque })
            .collect()
    }

    /// Repetition `n`, counting from 1.
    pub fn repetition(&self, n: usize) -> Option<Repetition<'a>> {
        n.checked_sub(1).and_then(|i| self.repetitions().into_iter().nth(i))
    }

    /// Component `n` of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.repetition(1).and_then(|r| r.component(n))
    }

    /// The first subcomponent of the first component of the first repetition: the whole value
    /// of a field of a simple type.
    pub fn value(&self) -> Value {
        match self.repetition(1) {
            Some(repetition) => repetition.value(),
            None => Value::Empty,
        }
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Repetition<'a> {
    raw: &'a str,
    separators: &'a Separators,
    opaque: bool,
}

impl<'a> Repetition<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn components(&self) -> Vec<Component<'a>> {
        let pieces =
            if self.opaque { vec![self.raw] } else { self.raw.split(self.separators.component).collect() };
        pieces
            .into_iter()
            .map(|raw| Component { raw, separators: self.separators, opaque: self.opaque })
            .collect()
    }

    /// Component `n`, counting from 1.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        n.checked_sub(1).and_then(|i| self.components().into_iter().nth(i))
    }

    /// The first subcomponent of the first component.
    pub fn value(&self) -> Value {
        self.component(1).map(|c| c.value()).unwrap_or(Value::Empty)
    }

    /// The whole repetition as one decoded text, delimiters included: for free text (ST, TX,
    /// FT) whose sender left a delimiter unescaped.
    pub fn whole_text(&self) -> Option<String> {
        Value::from_raw(self.raw, self.separators, self.opaque).into_text()
    }

    /// Shorthand for the text of subcomponent 1 of component `n`.
    pub fn text(&self, n: usize) -> Option<String> {
        self.component(n).and_then(|c| c.value().into_text())
    }
}

/// One component of a field.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    raw: &'a str,
    separators: &'a Separators,
    opaque: bool,
}

impl<'a> Component<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    fn pieces(&self) -> Vec<&'a str> {
        if self.opaque { vec![self.raw] } else { split(self.raw, self.separators.subcomponent) }
    }

    /// Subcomponent `n`, counting from 1.
    pub fn subcomponent(&self, n: usize) -> Value {
        match n.checked_sub(1).and_then(|i| self.pieces().into_iter().nth(i)) {
            Some(raw) => Value::from_raw(raw, self.separators, self.opaque),
            None => Value::Empty,
        }
    }

    /// The first subcomponent: the whole value of a component of a simple type.
    pub fn value(&self) -> Value {
        self.subcomponent(1)
    }
}

/// One segment: its id, its place in the message and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    sequence: usize,
    /// `fields[n]` is field n in HL7 numbering; `fields[0]` is the segment id. In MSH,
    /// `fields[1]` is the field separator itself so that MSH-2 and on line up.
    fields: Vec<String>,
    separators: Separators,
}

impl Segment {
    /// The segment id ("PID", "ZPI", ...).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The 1-based position of the segment in its message.
    pub fn sequence(&self) -> usize {
        self.sequence
    }

    /// How many fields the segment carries (the highest field number present).
    pub fn field_count(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// Field `n` in HL7 numbering; a field beyond the end of the segment is an empty field.
    pub fn field(&self, n: usize) -> Field<'_> {
        let raw = if n == 0 { "" } else { self.fields.get(n).map(String::as_str).unwrap_or("") };
        Field { raw, separators: &self.separators, opaque: self.id == "MSH" && (n == 1 || n == 2) }
    }

    /// One value, all positions counting from 1.
    pub fn value(&self, field: usize, repetition: usize, component: usize, subcomponent: usize) -> Value {
        self.field(field)
            .repetition(repetition)
            .and_then(|r| r.component(component))
            .map(|c| c.subcomponent(subcomponent))
            .unwrap_or(Value::Empty)
    }

    /// One value as decoded text; empty and null are both `None` (see [`Segment::value`] to
    /// tell them apart).
    pub fn get(
        &self,
        field: usize,
        repetition: usize,
        component: usize,
        subcomponent: usize,
    ) -> Option<String> {
        self.value(field, repetition, component, subcomponent).into_text()
    }

    /// Shorthand for component `component` of the first repetition of `field`.
    pub fn text(&self, field: usize, component: usize) -> Option<String> {
        self.get(field, 1, component, 1)
    }

    /// The place of a field of this segment, for error reports.
    pub fn location(&self, field: usize) -> Location {
        Location::field(&self.id, self.sequence, field)
    }
}

/// A parsed message: its delimiters and segments, the first of which is MSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    separators: Separators,
    segments: Vec<Segment>,
}

/// Most segments one message may have: a long laboratory report has hundreds; more is a
/// batch that should be split, or an attack.
pub const MAX_SEGMENTS: usize = 5_000;

impl Message {
    /// Parses a message and checks its header: MSH-9 (type and trigger event), MSH-10 (control
    /// id) and MSH-12 (a version from 2.3 to 2.8).
    pub fn parse(text: &str) -> Result<Message, Error> {
        let message = Message::parse_unvalidated(text)?;
        message.validate()?;
        Ok(message)
    }

    /// Parses the structure only (MSH first, delimiters, segment ids) without checking the
    /// header's fields, so that a message rejected by [`Message::validate`] can still be
    /// acknowledged with its control id and sender.
    pub fn parse_unvalidated(text: &str) -> Result<Message, Error> {
        let text = text.trim_start_matches(['\u{feff}', '\u{0b}']).trim_start();
        // Segments end with CR. A message without any CR was written with line feeds; in one
        // with CRs, a bare line feed is text inside a field (a report's line break).
        let ends: &[char] = if text.contains('\r') { &['\r'] } else { &['\n'] };
        let lines: Vec<&str> = text
            .split(ends)
            .map(|line| line.trim_start_matches('\n').trim_end_matches('\u{1c}'))
            .filter(|line| !line.trim().is_empty())
            .collect();
        if lines.len() > MAX_SEGMENTS {
            return Err(Error::at(
                ErrorCode::SegmentSequenceError,
                Location::segment("MSH", 1),
                format!(
                    "the message has {} segments; at most {MAX_SEGMENTS} are taken in one message",
                    lines.len()
                ),
            ));
        }
        let Some(first) = lines.first() else {
            return Err(Error::at(
                ErrorCode::SegmentSequenceError,
                Location::segment("MSH", 1),
                "the message is empty: no MSH segment",
            ));
        };
        let Some(after_msh) = first.strip_prefix("MSH") else {
            let id: String = first.chars().take(3).collect();
            return Err(Error::at(
                ErrorCode::SegmentSequenceError,
                Location::segment("MSH", 1),
                format!("the message does not start with an MSH segment (it starts with {id:?})"),
            ));
        };
        let separators = Separators::from_header(after_msh)?;
        let mut segments = Vec::with_capacity(lines.len());
        // ERR-2's segment sequence is the occurrence of that segment id in the message (the
        // first OBX is OBX 1 wherever it is).
        let mut occurrences: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for line in &lines {
            let id = line.split(separators.field).next().unwrap_or("");
            let occurrence = occurrences.entry(id).or_default();
            *occurrence += 1;
            segments.push(parse_segment(line, *occurrence, &separators)?);
        }
        Ok(Message { separators, segments })
    }

    /// Checks the header fields every message needs before anything else can be done with it.
    pub fn validate(&self) -> Result<(), Error> {
        let msh = self.header();
        let missing =
            |location: Location, text: &str| Error::at(ErrorCode::RequiredFieldMissing, location, text);
        if msh.text(9, 1).is_none() {
            return Err(missing(msh.location(9).with_component(1), "MSH-9.1 (message type) is missing"));
        }
        if msh.text(9, 2).is_none() {
            return Err(missing(msh.location(9).with_component(2), "MSH-9.2 (trigger event) is missing"));
        }
        if msh.text(10, 1).is_none() {
            return Err(missing(msh.location(10), "MSH-10 (message control id) is missing"));
        }
        if let Some(processing) = msh.text(11, 1)
            && !matches!(processing.as_str(), "P" | "T" | "D")
        {
            return Err(Error::at(
                ErrorCode::UnsupportedProcessingId,
                msh.location(11),
                format!("processing id {processing:?} is not P, T or D"),
            ));
        }
        let Some(version) = msh.text(12, 1) else {
            return Err(missing(msh.location(12), "MSH-12 (version id) is missing"));
        };
        if !supported_version(&version) {
            return Err(Error::at(
                ErrorCode::UnsupportedVersionId,
                msh.location(12),
                format!("version {version:?} is not supported (2.3 to 2.8; 2.5.1 is the target)"),
            ));
        }
        Ok(())
    }

    pub fn separators(&self) -> &Separators {
        &self.separators
    }

    /// Every segment, in order.
    pub fn all_segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The segments with one id, in order.
    pub fn segments<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// The first segment with an id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// The MSH segment.
    pub fn header(&self) -> &Segment {
        // Parsing guarantees MSH is the first segment; the fallback keeps this total anyway.
        match self.segments.first() {
            Some(msh) => msh,
            None => &EMPTY_MSH,
        }
    }

    /// MSH-9.1, e.g. "ADT".
    pub fn message_type(&self) -> Option<String> {
        self.header().text(9, 1)
    }

    /// MSH-9.2, e.g. "A01".
    pub fn trigger_event(&self) -> Option<String> {
        self.header().text(9, 2)
    }

    /// MSH-9.3, e.g. "ADT_A01".
    pub fn message_structure(&self) -> Option<String> {
        self.header().text(9, 3)
    }

    /// MSH-10.
    pub fn control_id(&self) -> Option<String> {
        self.header().text(10, 1)
    }

    /// MSH-11.1.
    pub fn processing_id(&self) -> Option<String> {
        self.header().text(11, 1)
    }

    /// MSH-12.1.
    pub fn version(&self) -> Option<String> {
        self.header().text(12, 1)
    }
}

static EMPTY_MSH: Segment = Segment {
    id: String::new(),
    sequence: 0,
    fields: Vec::new(),
    separators: Separators { field: '|', component: '^', repetition: None, escape: None, subcomponent: None },
};

fn parse_segment(line: &str, sequence: usize, separators: &Separators) -> Result<Segment, Error> {
    let mut fields: Vec<String> = line.split(separators.field).map(str::to_string).collect();
    let id = fields.first().cloned().unwrap_or_default();
    let valid_id = id.len() == 3
        && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && id.starts_with(|c: char| c.is_ascii_uppercase());
    if !valid_id {
        let shown: String = id.chars().take(10).collect();
        return Err(Error::at(
            ErrorCode::SegmentSequenceError,
            Location::segment(&shown, sequence),
            format!("segment {sequence} has no valid segment id: {shown:?}"),
        ));
    }
    if id == "MSH" {
        if sequence != 1 {
            return Err(Error::at(
                ErrorCode::SegmentSequenceError,
                Location::segment("MSH", sequence),
                "a second MSH segment: batches are not supported",
            ));
        }
        fields.insert(1, separators.field.to_string());
    }
    Ok(Segment { id, sequence, fields, separators: separators.clone() })
}

/// 2.3 through 2.8 with any minor release; anything else is another standard.
fn supported_version(version: &str) -> bool {
    let mut parts = version.split('.');
    let major = parts.next();
    let minor = parts.next().and_then(|m| m.parse::<u32>().ok());
    let rest_numeric = parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    major == Some("2") && matches!(minor, Some(3..=8)) && rest_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7.1", "2.8.2"] {
            assert!(supported_version(ok), "{ok}");
        }
        for bad in ["2", "2.2", "2.9", "3.0", "2.5.x", "", "2.5."] {
            assert!(!supported_version(bad), "{bad}");
        }
    }
}
