//! ORU^R01: PID to Patient, each OBR to a DiagnosticReport, each OBX under it to an
//! Observation the report lists among its results.

use serde_json::{Value as Json, json};

use super::codes::{self, V2_0203, codeable_concept, concept, table_concept};
use super::json::{Object, array};
use super::patient;
use super::values::{observation_value, reference_range, unit};
use super::{Context, Entry, clean, ids, missing, required_segment, text};
use crate::error::{Error, ErrorCode, Location};
use crate::message::Segment;

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// One OBR and what has been read of its OBX so far.
struct Report<'a> {
    obr: &'a Segment,
    id: String,
    patient_id: String,
    observations: Vec<Entry>,
    /// Set ids (with sub-ids) already given out, to keep ids unique within the report.
    keys: std::collections::HashSet<String>,
}

pub(crate) fn map(context: &Context) -> Result<Vec<Entry>, Error> {
    required_segment(context.message, "PID")?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut patient_id: Option<String> = None;
    let mut report: Option<Report> = None;
    for segment in context.message.all_segments() {
        match segment.id() {
            "PID" => {
                finish(report.take(), context, &mut entries)?;
                let patient = patient::map(segment, context)?;
                // Several result groups may name the same patient; one PUT per resource.
                if !entries.iter().any(|e| e.resource_type == "Patient" && e.id == patient.id) {
                    entries.push(Entry {
                        resource_type: "Patient",
                        id: patient.id.clone(),
                        resource: patient.resource,
                    });
                }
                patient_id = Some(patient.id);
            }
            "OBR" => {
                finish(report.take(), context, &mut entries)?;
                let Some(patient_id) = patient_id.clone() else {
                    return Err(out_of_order(segment, "an OBR before any PID"));
                };
                report = Some(Report {
                    obr: segment,
                    id: report_id(segment, context)?,
                    patient_id,
                    observations: Vec::new(),
                    keys: std::collections::HashSet::new(),
                });
            }
            "OBX" => {
                let Some(report) = report.as_mut() else {
                    return Err(out_of_order(segment, "an OBX outside any OBR group"));
                };
                let observation = observation(segment, report, context)?;
                report.observations.push(observation);
            }
            "NTE" => {
                if let Some(last) = report.as_mut().and_then(|r| r.observations.last_mut()) {
                    add_note(&mut last.resource, segment);
                }
            }
            _ => {}
        }
    }
    finish(report, context, &mut entries)?;
    Ok(entries)
}

fn out_of_order(segment: &Segment, what: &str) -> Error {
    Error::at(
        ErrorCode::SegmentSequenceError,
        Location::segment(segment.id(), segment.sequence()),
        format!("segment {} is {what}", segment.sequence()),
    )
}

/// The report id from the filler order number (OBR-3), else the placer's (OBR-2).
fn report_id(obr: &Segment, context: &Context) -> Result<String, Error> {
    match order_numbers(obr, context).into_iter().next() {
        Some((_, system, value)) => Ok(ids::report_id(&system, &value)),
        None => Err(missing(obr, 3, "filler order number, or placer order number in OBR-2")),
    }
}

/// The order numbers of an OBR, filler first: (identifier type, system, value), in the
/// configured filler and placer systems (an EI's namespace is not used: one filler and one
/// placer numbering per deployment).
fn order_numbers(obr: &Segment, context: &Context) -> Vec<(&'static str, String, String)> {
    let config = context.config;
    [(3, "FILL", &config.order_system), (2, "PLAC", &config.placer_order_system)]
        .into_iter()
        .filter_map(|(field, kind, default)| {
            let value = text(obr, field, 1)?;
            Some((kind, default.clone(), value))
        })
        .collect()
}

fn finish(report: Option<Report>, context: &Context, entries: &mut Vec<Entry>) -> Result<(), Error> {
    let Some(report) = report else { return Ok(()) };
    let obr = report.obr;
    let code = obr.field(4).repetition(1).and_then(|cwe| codeable_concept(&cwe));
    let code = code.ok_or_else(|| missing(obr, 4, "universal service identifier"))?;
    let status = match text(obr, 25, 1) {
        Some(status) => codes::report_status(&status).ok_or_else(|| {
            Error::at(
                ErrorCode::TableValueNotFound,
                obr.location(25),
                format!("OBR-25 {status:?} is not a result status of table 0123"),
            )
        })?,
        None => "unknown",
    };
    let identifiers = order_numbers(obr, context).into_iter().map(
        |(kind, system, value)| json!({ "type": concept(V2_0203, kind), "system": system, "value": value }),
    );
    let mut categories = vec![table_concept("0074", "LAB")];
    if let Some(section) = text(obr, 24, 1).filter(|s| s != "LAB") {
        categories.push(table_concept("0074", &section));
    }
    let results = report.observations.iter().map(|o| json!({ "reference": format!("Observation/{}", o.id) }));
    let resource = Object::new()
        .set("resourceType", "DiagnosticReport")
        .set("id", report.id.clone())
        .set("identifier", array(identifiers))
        .set("status", status)
        .set("category", categories)
        .set("code", code)
        .set("subject", json!({ "reference": format!("Patient/{}", report.patient_id) }))
        .maybe("effectiveDateTime", context.datetime(obr, 7)?)
        .maybe("issued", context.instant(obr, 22)?)
        .set("result", array(results))
        .build();
    entries.push(Entry { resource_type: "DiagnosticReport", id: report.id, resource });
    entries.extend(report.observations);
    Ok(())
}

fn observation(obx: &Segment, report: &mut Report, context: &Context) -> Result<Entry, Error> {
    let obr = report.obr;
    let position = report.observations.len() + 1;
    let set_id = text(obx, 1, 1).unwrap_or_else(|| format!("#{position}"));
    let sub_id = text(obx, 4, 1).unwrap_or_default();
    // A set id the report has already used (some senders number every OBX 1) falls back on the
    // position, which is just as stable for a resent message.
    let mut key = format!("{set_id}\u{1f}{sub_id}");
    if report.keys.contains(&key) {
        key = format!("#{position}\u{1f}{sub_id}");
    }
    report.keys.insert(key.clone());
    let (set_id, sub_id) = key.split_once('\u{1f}').unwrap_or((&key, ""));
    let id = ids::observation_id(&report.id, set_id, sub_id);

    let code = obx.field(3).repetition(1).and_then(|cwe| codeable_concept(&cwe));
    let code = code.ok_or_else(|| missing(obx, 3, "observation identifier"))?;
    let status_code = text(obx, 11, 1).ok_or_else(|| missing(obx, 11, "observation result status"))?;
    let status = codes::observation_status(&status_code).ok_or_else(|| {
        Error::at(
            ErrorCode::TableValueNotFound,
            obx.location(11),
            format!("OBX-11 {status_code:?} is not a result status of table 0085"),
        )
    })?;
    let value = observation_value(obx, context)?;
    let interpretation = array(
        obx.field(8).repetitions().iter().filter_map(|r| clean(r.text(1))).map(|c| codes::interpretation(&c)),
    );
    let effective = match context.datetime(obx, 14)? {
        Some(effective) => Some(effective),
        None => context.datetime(obr, 7)?,
    };
    let mut resource = Object::new()
        .set("resourceType", "Observation")
        .set("id", id.clone())
        .set("status", status)
        .set("category", json!([concept(OBSERVATION_CATEGORY, "laboratory")]))
        .set("code", code)
        .set("subject", json!({ "reference": format!("Patient/{}", report.patient_id) }))
        .maybe("effectiveDateTime", effective)
        .maybe("issued", context.instant(obr, 22)?);
    if let Some((name, value)) = value {
        resource = resource.set(name, value);
    }
    let resource = resource
        .set("interpretation", interpretation)
        .set("referenceRange", array(reference_range(obx, &unit(obx))))
        .build();
    Ok(Entry { resource_type: "Observation", id, resource })
}

/// NTE-3 after an OBX as a note on its Observation.
fn add_note(resource: &mut Json, nte: &Segment) {
    let lines: Vec<String> = nte.field(3).repetitions().iter().filter_map(|r| r.whole_text()).collect();
    let text = lines.join("\n");
    if text.trim().is_empty() {
        return;
    }
    if let Json::Object(resource) = resource {
        let notes = resource.entry("note").or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(notes) = notes {
            notes.push(json!({ "text": text }));
        }
    }
}
