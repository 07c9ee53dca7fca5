//! PV1 (with the event from MSH-9 and times from EVN) to Encounter.

use serde_json::{Value as Json, json};

use super::codes::{self, V2_0203, concept, table_concept};
use super::json::{Object, array};
use super::{Context, Event, clean, ids, missing, text};
use crate::error::{Error, ErrorCode};
use crate::message::{Repetition, Segment};

const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The Encounter for a visit, with its id; `None` when the visit cannot be identified and
/// `required` is false (an A08 that updates the patient only).
pub(crate) fn map(
    pv1: &Segment,
    pid: &Segment,
    patient_id: &str,
    context: &Context,
    required: bool,
) -> Result<Option<(String, Json)>, Error> {
    let Some(visit) = visit_key(pv1, pid, context)? else {
        return if required { Err(missing(pv1, 19, "visit number")) } else { Ok(None) };
    };
    // A visit number names the visit across the facility: the Encounter keeps its id when a
    // merge moves it to another patient. Account numbers and admit times are only unique
    // within one patient's record.
    let owner = if visit.patient_scoped { patient_id } else { "" };
    let id = ids::encounter_id(owner, &visit.system, &visit.value);

    let class_code = text(pv1, 2, 1).ok_or_else(|| missing(pv1, 2, "patient class"))?;
    let class = codes::encounter_class(&class_code).ok_or_else(|| {
        Error::at(
            ErrorCode::TableValueNotFound,
            pv1.location(2),
            format!("PV1-2 {class_code:?} is not a patient class of table 0004"),
        )
    })?;
    let (start, end) = period(pv1, context)?;
    let status = status(context.event, &class_code, end.is_some());
    let end = match context.event {
        Event::CancelDischarge | Event::CancelAdmit => None,
        _ => end,
    };

    let identifier = visit.identifier.map(|(kind, value)| {
        Object::new()
            .set("type", concept(V2_0203, kind))
            .set("system", visit.system.clone())
            .set("value", value)
            .build()
    });
    let participants = array(
        [(7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")]
            .into_iter()
            .flat_map(|(field, role)| pv1.field(field).repetitions().into_iter().map(move |xcn| (xcn, role)))
            .filter_map(|(xcn, role)| participant(&xcn, role)),
    );
    let hospitalization = Object::new()
        .maybe("admitSource", text(pv1, 14, 1).map(|c| table_concept("0023", &c)))
        .maybe("dischargeDisposition", text(pv1, 36, 1).map(|c| table_concept("0112", &c)));
    let resource = Object::new()
        .set("resourceType", "Encounter")
        .set("id", id.clone())
        .set("identifier", array(identifier))
        .set("status", status)
        .set("class", class)
        .maybe("serviceType", text(pv1, 10, 1).map(|c| table_concept("0069", &c)))
        .set("subject", json!({ "reference": format!("Patient/{patient_id}") }))
        .set("participant", participants)
        .set("period", Object::new().maybe("start", start).maybe("end", end).build())
        .set("hospitalization", hospitalization.build())
        .set("location", locations(pv1, context.event))
        .build();
    Ok(Some((id, resource)))
}

/// What identifies the visit: the visit number (PV1-19), else the patient account number
/// (PID-18), else the admission time (PV1-44). Numbers are in the configured visit system
/// whatever their CX.4 says: the authority that assigns visit numbers usually assigns the
/// medical record numbers too, and the two must not share a system. `identifier` is the identifier's type and value
/// when the key is a number.
struct VisitKey {
    system: String,
    value: String,
    identifier: Option<(&'static str, String)>,
    /// Unique only within the patient's record.
    patient_scoped: bool,
}

fn visit_key(pv1: &Segment, pid: &Segment, context: &Context) -> Result<Option<VisitKey>, Error> {
    for (segment, field, kind) in [(pv1, 19, "VN"), (pid, 18, "AN")] {
        let Some(cx) = segment.field(field).repetition(1) else { continue };
        let Some(value) = clean(cx.text(1)) else { continue };
        let system = context.config.visit_system.clone();
        // An account number is not a visit number: the two never share a key.
        let (system, patient_scoped) =
            if kind == "VN" { (system, false) } else { (format!("{system}#account"), true) };
        return Ok(Some(VisitKey {
            system,
            value: value.clone(),
            identifier: Some((kind, value)),
            patient_scoped,
        }));
    }
    Ok(context.datetime(pv1, 44)?.map(|admitted| VisitKey {
        system: "admit-time".to_string(),
        value: admitted,
        identifier: None,
        patient_scoped: true,
    }))
}

/// Encounter.status for the event (after the v2-to-FHIR map of table 0003).
///
/// A04 registers a patient who is there: "arrived" (the concept map's "planned" describes a
/// visit still to come, which is A05's business). A08 replaces the whole Encounter, so rather
/// than the map's "unknown" it keeps what PV1 says: discharged when there is a discharge time,
/// planned for a pre-admit, in progress otherwise. A11 cancels the admission: "cancelled" as
/// the concept map has it (the visit did not happen, rather than having been recorded in error).
fn status(event: Event, class_code: &str, discharged: bool) -> &'static str {
    match event {
        Event::Discharge => "finished",
        Event::Register => "arrived",
        Event::CancelAdmit => "cancelled",
        Event::UpdateVisit if discharged => "finished",
        Event::UpdateVisit if class_code == "P" => "planned",
        _ => "in-progress",
    }
}

/// period.start from PV1-44 (for an admission or registration, else when the event occurred:
/// EVN-6, then EVN-2); period.end from PV1-45 (for a discharge, else EVN-6, then EVN-2).
fn period(pv1: &Segment, context: &Context) -> Result<(Option<String>, Option<String>), Error> {
    let event_time = || -> Result<Option<String>, Error> {
        match context.message.segment("EVN") {
            Some(evn) => Ok(context.datetime(evn, 6)?.or(context.datetime(evn, 2)?)),
            None => Ok(None),
        }
    };
    let mut start = context.datetime(pv1, 44)?;
    if start.is_none() && matches!(context.event, Event::Admit | Event::Register) {
        start = event_time()?;
    }
    let mut end = context.datetime(pv1, 45)?;
    if end.is_none() && context.event == Event::Discharge {
        end = event_time()?;
    }
    Ok((start, end))
}

/// PV1-3 as where the patient is; on a transfer also PV1-6, where the patient was.
fn locations(pv1: &Segment, event: Event) -> Json {
    let current = pv1.field(3).repetition(1).and_then(|pl| location_display(&pl));
    if event == Event::Transfer {
        let prior = pv1.field(6).repetition(1).and_then(|pl| location_display(&pl));
        array([
            current
                .map(|d| json!({ "location": { "display": d }, "status": "active" }))
                .unwrap_or(Json::Null),
            prior
                .map(|d| json!({ "location": { "display": d }, "status": "completed" }))
                .unwrap_or(Json::Null),
        ])
    } else {
        array(current.map(|d| json!({ "location": { "display": d } })))
    }
}

/// A PL as one line: its description (PL.9) if it has one, else facility, building, floor,
/// point of care, room and bed, separated by " / ".
fn location_display(pl: &Repetition) -> Option<String> {
    let part = |n| clean(pl.text(n));
    if let Some(description) = part(9) {
        return Some(description);
    }
    let parts: Vec<String> =
        [part(4), part(7), part(8), part(1), part(2), part(3)].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(" / "))
}

/// An XCN as a participant of a role, by identifier value and name (no Practitioner is
/// created, and a practitioner number's authority is not a system this mapping can name).
fn participant(xcn: &Repetition, role: &str) -> Option<Json> {
    let part = |n| clean(xcn.text(n));
    let name: Vec<String> = [part(6), part(3), part(4), part(2), part(5)].into_iter().flatten().collect();
    let display = (!name.is_empty()).then(|| name.join(" "));
    let identifier = part(1).map(|value| json!({ "value": value }));
    let individual = Object::new().maybe("identifier", identifier).maybe("display", display).non_empty()?;
    Some(json!({
        "type": [{ "coding": [{ "system": PARTICIPATION_TYPE, "code": role }] }],
        "individual": individual,
    }))
}
