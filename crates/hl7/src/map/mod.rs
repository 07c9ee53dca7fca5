//! Mapping a parsed message to FHIR R4, after the HL7 v2-to-FHIR implementation guide.
//!
//! A message becomes one [`Action`]: a transaction Bundle of PUTs with deterministic ids (so a
//! repeated message updates what the first one wrote), or a patient merge. PUT replaces the
//! whole resource, so each resource is rebuilt from the message alone; an explicit HL7 null
//! (`""`) and an empty field therefore both leave the element out.

mod codes;
mod encounter;
mod ids;
mod json;
mod patient;
mod results;
mod values;

use serde_json::{Value as Json, json};

use crate::datetime::{Dtm, valid_offset};
use crate::error::{Error, ErrorCode, Location};
use crate::message::{Message, Segment};

pub use ids::{encounter_id, observation_id, patient_id, report_id};

/// Where identifiers and times without their own context are placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingConfig {
    /// System of a patient identifier (PID-3) of type MR, or of no type, with no assigning
    /// authority.
    pub mrn_system: String,
    /// Assigning authority (HD namespace id or universal id, as in CX.4) to the system of the
    /// medical record numbers it assigns (PID-3 and MRG-1 of type MR or of no type). An
    /// authority not listed becomes its OID/URI/UUID, else `urn:chartroom:v2:authority:<namespace>`.
    pub authority_systems: Vec<(String, String)>,
    /// System of visit numbers (PV1-19) and account numbers (PID-18).
    pub visit_system: String,
    /// System of filler order numbers (OBR-3).
    pub order_system: String,
    /// System of placer order numbers (OBR-2).
    pub placer_order_system: String,
    /// The zone given to a time that comes without one, as FHIR requires a zone with every
    /// time: `+hh:mm`, `-hh:mm` or `Z`. The default, `+00:00`, suits senders on UTC; a sender
    /// on local time needs its own offset here (one offset cannot follow daylight saving).
    pub default_offset: String,
}

impl Default for MappingConfig {
    fn default() -> MappingConfig {
        MappingConfig {
            mrn_system: "http://hospital.example.org/mrn".to_string(),
            authority_systems: Vec::new(),
            visit_system: "http://hospital.example.org/visit".to_string(),
            order_system: "http://hospital.example.org/filler-order".to_string(),
            placer_order_system: "http://hospital.example.org/placer-order".to_string(),
            default_offset: "+00:00".to_string(),
        }
    }
}

/// What the server does with one message, as one unit: all of it or none of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A FHIR transaction Bundle of PUTs.
    Transaction(Json),
    /// ADT^A40: the patient known by `source_identifier` (MRG-1) is merged into the one known by
    /// `target_identifier` (PID-3). Identifiers are (system, value). `target_update` is the
    /// Patient built from PID when PID says more than its identifiers, else `None` so that a
    /// bare merge does not erase the surviving patient's demographics.
    Merge {
        target_identifier: (String, String),
        source_identifier: (String, String),
        target_update: Option<Json>,
    },
}

/// The trigger events this receiver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Admit,
    Transfer,
    Discharge,
    Register,
    UpdateVisit,
    CancelAdmit,
    CancelDischarge,
    AddPerson,
    UpdatePerson,
    Merge,
    Results,
}

impl Event {
    fn of(message: &Message) -> Result<Event, Error> {
        let msh = message.header();
        let message_type = message.message_type().unwrap_or_default();
        let trigger = message.trigger_event().unwrap_or_default();
        let unsupported_event = || {
            Error::at(
                ErrorCode::UnsupportedEventCode,
                msh.location(9).with_component(2),
                format!("{message_type}^{trigger} is not supported"),
            )
        };
        match message_type.as_str() {
            "ADT" => match trigger.as_str() {
                "A01" => Ok(Event::Admit),
                "A02" => Ok(Event::Transfer),
                "A03" => Ok(Event::Discharge),
                "A04" => Ok(Event::Register),
                "A08" => Ok(Event::UpdateVisit),
                "A11" => Ok(Event::CancelAdmit),
                "A13" => Ok(Event::CancelDischarge),
                "A28" => Ok(Event::AddPerson),
                "A31" => Ok(Event::UpdatePerson),
                "A40" => Ok(Event::Merge),
                _ => Err(unsupported_event()),
            },
            "ORU" => match trigger.as_str() {
                "R01" => Ok(Event::Results),
                _ => Err(unsupported_event()),
            },
            _ => Err(Error::at(
                ErrorCode::UnsupportedMessageType,
                msh.location(9).with_component(1),
                format!("message type {message_type:?} is not supported (ADT and ORU are)"),
            )),
        }
    }
}

/// What every part of the mapping needs to hand.
pub(crate) struct Context<'a> {
    pub config: &'a MappingConfig,
    pub message: &'a Message,
    pub event: Event,
}

impl Context<'_> {
    /// A DTM field as a FHIR dateTime; a value that is no date/time is a data type error.
    pub fn datetime(&self, segment: &Segment, field: usize) -> Result<Option<String>, Error> {
        Ok(dtm(segment, field)?.map(|d| d.to_fhir_datetime(&self.config.default_offset)))
    }

    /// A DTM field as a FHIR date (the time, if any, dropped).
    pub fn date(&self, segment: &Segment, field: usize) -> Result<Option<String>, Error> {
        Ok(dtm(segment, field)?.map(|d| d.to_fhir_date()))
    }

    /// A DTM field as a FHIR instant, when it is precise enough to be one.
    pub fn instant(&self, segment: &Segment, field: usize) -> Result<Option<String>, Error> {
        Ok(dtm(segment, field)?.and_then(|d| d.to_fhir_instant()))
    }
}

/// Reads a DTM (or the first component of a TS) from a field.
fn dtm(segment: &Segment, field: usize) -> Result<Option<Dtm>, Error> {
    let Some(text) = text(segment, field, 1) else {
        return Ok(None);
    };
    match Dtm::parse(&text) {
        Some(dtm) => Ok(Some(dtm)),
        None => Err(Error::at(
            ErrorCode::DataTypeError,
            segment.location(field).with_component(1),
            format!("{}-{field} {text:?} is not a valid date/time", segment.id()),
        )),
    }
}

/// Maps a parsed message to what the server should do with it.
pub fn map(message: &Message, config: &MappingConfig) -> Result<Action, Error> {
    if !valid_offset(&config.default_offset) {
        return Err(Error::Message {
            code: ErrorCode::ApplicationInternalError,
            location: None,
            text: format!(
                "the configured default offset {:?} is not +hh:mm, -hh:mm or Z",
                config.default_offset
            ),
        });
    }
    let event = Event::of(message)?;
    let context = Context { config, message, event };
    match event {
        Event::Merge => merge(&context),
        Event::Results => results::map(&context).map(|entries| Action::Transaction(bundle(entries))),
        _ => adt(&context).map(|entries| Action::Transaction(bundle(entries))),
    }
}

/// One resource to PUT.
pub(crate) struct Entry {
    pub resource_type: &'static str,
    pub id: String,
    pub resource: Json,
}

fn bundle(entries: Vec<Entry>) -> Json {
    let entries: Vec<Json> = entries
        .into_iter()
        .map(|entry| {
            let url = format!("{}/{}", entry.resource_type, entry.id);
            json!({ "resource": entry.resource, "request": { "method": "PUT", "url": url } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn adt(context: &Context) -> Result<Vec<Entry>, Error> {
    let pid = required_segment(context.message, "PID")?;
    let patient = patient::map(pid, context)?;
    let mut entries = Vec::new();
    let patient_id = patient.id.clone();
    entries.push(Entry { resource_type: "Patient", id: patient.id, resource: patient.resource });
    let visit = match context.event {
        Event::AddPerson | Event::UpdatePerson => None,
        // An update may carry no visit at all; without one it updates the patient only.
        Event::UpdateVisit => match context.message.segment("PV1") {
            Some(pv1) => encounter::map(pv1, pid, &patient_id, context, false)?,
            None => None,
        },
        _ => {
            let pv1 = required_segment(context.message, "PV1")?;
            encounter::map(pv1, pid, &patient_id, context, true)?
        }
    };
    if let Some((id, resource)) = visit {
        entries.push(Entry { resource_type: "Encounter", id, resource });
    }
    Ok(entries)
}

fn merge(context: &Context) -> Result<Action, Error> {
    let pid = required_segment(context.message, "PID")?;
    let patient = patient::map(pid, context)?;
    let mrg = required_segment(context.message, "MRG")?;
    let source = patient::key_identifier(mrg, 1, context.config)?;
    let target_update = patient.has_demographics.then_some(patient.resource);
    Ok(Action::Merge {
        target_identifier: (patient.key.system, patient.key.value),
        source_identifier: (source.system, source.value),
        target_update,
    })
}

/// A segment the event cannot do without. Its absence is a segment sequence error (table
/// 0357: "required segments are missing"), reported at sequence 0.
pub(crate) fn required_segment<'a>(message: &'a Message, id: &str) -> Result<&'a Segment, Error> {
    message.segment(id).ok_or_else(|| {
        Error::at(
            ErrorCode::SegmentSequenceError,
            Location::segment(id, 1),
            format!("the required {id} segment is missing"),
        )
    })
}

/// The error for a required field left empty.
pub(crate) fn missing(segment: &Segment, field: usize, what: &str) -> Error {
    Error::at(
        ErrorCode::RequiredFieldMissing,
        segment.location(field),
        format!("{}-{field} ({what}) is missing", segment.id()),
    )
}

/// Trimmed text of component `component` of the first repetition; blank is `None`.
pub(crate) fn text(segment: &Segment, field: usize, component: usize) -> Option<String> {
    clean(segment.text(field, component))
}

/// Trims text and drops what is left blank: FHIR allows neither empty strings nor strings
/// padded with spaces.
pub(crate) fn clean(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}
