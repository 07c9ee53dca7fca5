//! HL7 v2 messages in: each one parsed and mapped ([`hl7`]), then applied through the FHIR API
//! itself, as the caller, so that the one policy decides and the audit records it like any
//! request. A message is one request, so it is applied whole or not at all:
//!
//! - ADT and ORU: the mapped transaction Bundle, `POST [base]` (one store unit);
//! - ADT^A40: `Patient/$merge` of the MRG registration into the PID one (one transaction,
//!   recorded by a Provenance, undone by `$unmerge`).
//!
//! The answer is an ACK: AA when the request succeeded, AR for what cannot be processed at all
//! (the header, an unsupported message type, event or version), AE with ERR segments naming
//! segment and field for content errors and for what the server refused (the diagnostics of
//! its OperationOutcome).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hl7::{AckCode, ErrorCode, ErrorDetail, Message};
use serde_json::{Value, json};

use crate::{Api, Audited, Caller, Method, Request, Response};

/// How this server maps and answers HL7 v2.
#[derive(Clone, Debug)]
pub struct V2Config {
    pub mapping: hl7::MappingConfig,
    /// MSH-3 and MSH-4 of the ACKs (this application and facility).
    pub application: String,
    pub facility: String,
    /// The processing ids (MSH-11) this record takes: production (`P`) only by default, so a
    /// sender's training (`T`) or debugging (`D`) messages never reach real charts.
    pub processing: Vec<String>,
}

impl Default for V2Config {
    fn default() -> Self {
        V2Config {
            mapping: hl7::MappingConfig::default(),
            application: "CHARTROOM".into(),
            facility: "HIM".into(),
            processing: vec!["P".into()],
        }
    }
}

/// What came of one message.
#[derive(Debug)]
pub struct V2Receipt {
    /// The ACK to send back (segments end with CR).
    pub ack: String,
    pub code: AckCode,
    /// The FHIR request the message became and what the audit trail is to record of it;
    /// `None` when the message was refused before (unparsable, unmappable).
    pub applied: Option<(u16, Audited)>,
    /// The message type and trigger (`ADT^A01`), when known.
    pub event: Option<String>,
}

/// The ACKs' own control ids: unique in this process, at most 20 characters (MSH-10 in 2.5.1).
fn next_control_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seconds = fhir::datetime::epoch_millis_now() / 1000;
    format!("CR{seconds:x}{:06x}", n & 0xff_ffff)
}

/// Now as an HL7 DTM in UTC (`20260307101500+0000`).
fn hl7_now() -> String {
    let now = fhir::DateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        now.year, now.month, now.day, now.hour, now.minute, now.second
    )
}

impl Api {
    /// Applies one HL7 v2 message as `caller` and says what to acknowledge.
    pub async fn receive_v2(&self, caller: Option<Arc<Caller>>, text: &str, config: &V2Config) -> V2Receipt {
        let sending = (config.application.as_str(), config.facility.as_str());
        let refuse = |message: Option<&Message>, error: &hl7::Error| {
            let code = error.ack_code();
            V2Receipt {
                ack: hl7::ack(
                    message,
                    code,
                    &[ErrorDetail::from(error)],
                    sending,
                    &next_control_id(),
                    &hl7_now(),
                ),
                code,
                applied: None,
                event: message.map(event_of),
            }
        };
        let message = match Message::parse(text) {
            Ok(message) => message,
            Err(error) => {
                // The header may still be readable enough to address the ACK.
                let header = Message::parse_unvalidated(text).ok();
                return refuse(header.as_ref(), &error);
            }
        };
        let processing = message.processing_id().unwrap_or_else(|| "P".into());
        if !config.processing.contains(&processing) {
            let refusal = hl7::Error::Message {
                code: ErrorCode::UnsupportedProcessingId,
                location: Some(hl7::Location::field("MSH", 1, 11)),
                text: format!(
                    "processing id {processing:?}: this server takes {} messages only",
                    config.processing.join(", ")
                ),
            };
            return refuse(Some(&message), &refusal);
        }
        let action = match hl7::map(&message, &config.mapping) {
            Ok(action) => action,
            Err(error) => return refuse(Some(&message), &error),
        };
        let event = event_of(&message);
        // A PUT made against the version read fails when the record changed meanwhile (two
        // messages about one patient at once): read, reconcile and apply again.
        let mut attempt = 0;
        let (request, body, response) = loop {
            attempt += 1;
            let (path, body) = match action.clone() {
                hl7::Action::Transaction(mut bundle) => {
                    if let Err(detail) = self.reconcile(&mut bundle, &event) {
                        let code = if detail.code == ErrorCode::ApplicationRecordLocked {
                            AckCode::Reject
                        } else {
                            AckCode::Error
                        };
                        return V2Receipt {
                            ack: hl7::ack(
                                Some(&message),
                                code,
                                &[*detail],
                                sending,
                                &next_control_id(),
                                &hl7_now(),
                            ),
                            code,
                            applied: None,
                            event: Some(event),
                        };
                    }
                    (String::new(), bundle)
                }
                hl7::Action::Merge { target_identifier, source_identifier, .. } => {
                    let identifier =
                        |(system, value): (String, String)| json!({ "system": system, "value": value });
                    let parameters = json!({
                        "resourceType": "Parameters",
                        "parameter": [
                            { "name": "source-patient-identifier", "valueIdentifier": identifier(source_identifier) },
                            { "name": "target-patient-identifier", "valueIdentifier": identifier(target_identifier) },
                        ],
                    });
                    ("Patient/$merge".to_string(), parameters)
                }
            };
            let request = Request {
                method: Some(Method::Post),
                base: "urn:chartroom:hl7v2".into(),
                path,
                content_type: Some("application/fhir+json".into()),
                body: body.to_string().into_bytes(),
                caller: caller.clone(),
                ..Default::default()
            };
            let response = self.handle(&request).await;
            if response.status != 412 || attempt >= 3 {
                break (request, body, response);
            }
        };
        let (code, errors) = if (200..300).contains(&response.status) {
            (AckCode::Accept, Vec::new())
        } else if response.status >= 500 || response.status == 429 || response.status == 412 {
            // The server could not take it now: AR, which senders send again.
            (AckCode::Reject, vec![refusal_detail(&response)])
        } else if request.path == "Patient/$merge" && self.already_merged(&body) {
            // A resent A40 (its first ACK lost): the merge it asks for is the record's state.
            (AckCode::Accept, Vec::new())
        } else {
            (AckCode::Error, vec![refusal_detail(&response)])
        };
        V2Receipt {
            ack: hl7::ack(Some(&message), code, &errors, sending, &next_control_id(), &hl7_now()),
            code,
            applied: Some((response.status, response.audit)),
            event: Some(event),
        }
    }
}

impl Api {
    /// Brings a message's PUTs together with what the record holds, so that a message changes
    /// what it carries and nothing else:
    ///
    /// - a registration that was merged away is not written again (that would bring it back
    ///   beside its survivor): the message is refused, naming the survivor;
    /// - a Patient on file keeps what the message does not say (other identifiers, links,
    ///   contacts, extensions); a result message (ORU) does not rewrite it at all;
    /// - an Encounter on file keeps its start, its end unless a cancel-discharge (A13) takes
    ///   it away, and its status on an update (A08);
    /// - each PUT is made against the version read (`If-Match`), so a change made meanwhile
    ///   fails the message (AE) rather than being overwritten.
    fn reconcile(&self, bundle: &mut Value, event: &str) -> Result<(), Box<ErrorDetail>> {
        let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else { return Ok(()) };
        let mut kept = Vec::with_capacity(entries.len());
        for mut entry in std::mem::take(entries) {
            let url = entry["request"]["url"].as_str().unwrap_or("").to_string();
            let Some((resource_type, id)) = url.split_once('/') else {
                kept.push(entry);
                continue;
            };
            if !matches!(resource_type, "Patient" | "Encounter") {
                kept.push(entry);
                continue;
            }
            let stored = match self.store.read(resource_type, id) {
                Ok(Some(record)) if !record.is_deleted() => record,
                Ok(_) => {
                    kept.push(entry);
                    continue;
                }
                Err(e) => {
                    return Err(Box::new(ErrorDetail::new(
                        ErrorCode::ApplicationRecordLocked,
                        e.to_string(),
                    )));
                }
            };
            let Ok(mut on_file) = serde_json::from_slice::<Value>(stored.body.as_deref().unwrap_or_default())
            else {
                kept.push(entry);
                continue;
            };
            let mapped = entry["resource"].take();
            if resource_type == "Patient" {
                if let Some(survivor) = replaced_by(&on_file) {
                    return Err(Box::new(ErrorDetail::new(
                        ErrorCode::UnknownKeyIdentifier,
                        format!(
                            "Patient/{id} was merged into {survivor}: send messages for the surviving registration"
                        ),
                    )));
                }
                if event.starts_with("ORU") {
                    continue;
                }
                overlay_patient(&mut on_file, &mapped);
            } else {
                overlay_encounter(&mut on_file, &mapped, event);
            }
            // The security labels, tags and profiles on file stay (a restricted registration
            // stays restricted); the store sets the version and time.
            if let Some(meta) = on_file.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                if meta.is_empty()
                    && let Some(object) = on_file.as_object_mut()
                {
                    object.remove("meta");
                }
            }
            entry["resource"] = on_file;
            entry["request"]["ifMatch"] = Value::from(format!("W/\"{}\"", stored.version));
            kept.push(entry);
        }
        *entries = kept;
        Ok(())
    }

    /// Whether the `$merge` a resent A40 asks for is already done: its source is replaced by
    /// its target.
    fn already_merged(&self, parameters: &Value) -> bool {
        let identifier = |name: &str| {
            parameters["parameter"].as_array().into_iter().flatten().find(|p| p["name"] == name).map(|p| {
                (
                    p["valueIdentifier"]["system"].as_str().unwrap_or(""),
                    p["valueIdentifier"]["value"].as_str().unwrap_or(""),
                )
            })
        };
        let (Some(source), Some(target)) =
            (identifier("source-patient-identifier"), identifier("target-patient-identifier"))
        else {
            return false;
        };
        let read = |(system, value): (&str, &str)| -> Option<Value> {
            let record = self.store.read("Patient", &hl7::map::patient_id(system, value)).ok()??;
            serde_json::from_slice(record.body.as_deref()?).ok()
        };
        let (Some(source), Some(target)) = (read(source), read(target)) else { return false };
        let target_id = target["id"].as_str().unwrap_or("");
        replaced_by(&source).is_some_and(|survivor| survivor == format!("Patient/{target_id}"))
    }
}

/// The Patient a merged-away registration points to (`link` of type replaced-by).
fn replaced_by(patient: &Value) -> Option<String> {
    patient["link"]
        .as_array()?
        .iter()
        .find(|link| link["type"] == "replaced-by")
        .and_then(|link| link["other"]["reference"].as_str())
        .map(str::to_string)
}

/// `on_file` with what `mapped` says: its elements replace those on file, and its identifiers
/// join those on file.
fn overlay_patient(on_file: &mut Value, mapped: &Value) {
    let (Some(target), Some(source)) = (on_file.as_object_mut(), mapped.as_object()) else { return };
    for (key, value) in source {
        // One variant of a choice element at a time (`deceasedBoolean` or `deceasedDateTime`),
        // and no extension of a value that is replaced.
        for stem in ["deceased", "multipleBirth"] {
            if key.starts_with(stem) {
                target.retain(|k, _| !k.trim_start_matches('_').starts_with(stem) || k == key);
            }
        }
        target.remove(&format!("_{key}"));
        if key == "identifier" {
            let mut identifiers =
                target.get("identifier").and_then(Value::as_array).cloned().unwrap_or_default();
            for identifier in value.as_array().into_iter().flatten() {
                let same =
                    |i: &Value| i["system"] == identifier["system"] && i["value"] == identifier["value"];
                if !identifiers.iter().any(same) {
                    identifiers.push(identifier.clone());
                }
            }
            target.insert(key.clone(), Value::Array(identifiers));
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// `on_file` with what the event says of the visit.
fn overlay_encounter(on_file: &mut Value, mapped: &Value, event: &str) {
    let status_on_file = on_file["status"].clone();
    let period_on_file = on_file["period"].clone();
    let (Some(target), Some(source)) = (on_file.as_object_mut(), mapped.as_object()) else { return };
    for (key, value) in source {
        target.insert(key.clone(), value.clone());
    }
    // An update says what the visit is, not where it stands (unless it brings the discharge).
    let discharged = mapped["period"].get("end").is_some();
    if event.ends_with("^A08") && !status_on_file.is_null() && !discharged {
        target.insert("status".into(), status_on_file);
    }
    // A cancelled discharge takes the discharge's disposition back too.
    if event.ends_with("^A13")
        && let Some(hospitalization) = target.get_mut("hospitalization").and_then(Value::as_object_mut)
    {
        hospitalization.remove("dischargeDisposition");
        if hospitalization.is_empty() {
            target.remove("hospitalization");
        }
    }
    let mut period = period_on_file.as_object().cloned().unwrap_or_default();
    for (key, value) in mapped["period"].as_object().into_iter().flatten() {
        period.insert(key.clone(), value.clone());
    }
    if event.ends_with("^A13") {
        period.remove("end");
    }
    if period.is_empty() {
        target.remove("period");
    } else {
        target.insert("period".into(), Value::Object(period));
    }
}

impl V2Receipt {
    /// The audit trail's entry for the message, received from `address` by `identity`.
    pub fn access(&self, identity: &privacy::Identity, address: Option<String>) -> privacy::Access {
        let (status, audited) = match &self.applied {
            Some((status, audited)) => (*status, Some(audited)),
            None => (400, None),
        };
        privacy::Access {
            user: identity.user.clone(),
            role: identity.role.as_str().to_string(),
            interaction: audited.map_or("hl7v2", |a| a.interaction).to_string(),
            action: audited.map_or("C", |a| a.action),
            status,
            outcome_text: Some(format!(
                "HL7 v2 {} acknowledged {}",
                self.event.as_deref().filter(|e| !e.is_empty()).unwrap_or("message"),
                self.code.as_str()
            )),
            patients: audited.map(|a| a.patients.clone()).unwrap_or_default(),
            resources: audited
                .map(|a| std::iter::once(a.subject.clone()).chain(a.written.iter().cloned()).collect())
                .unwrap_or_default(),
            address,
            ..Default::default()
        }
    }
}

fn event_of(message: &Message) -> String {
    match (message.message_type(), message.trigger_event()) {
        (Some(kind), Some(event)) => format!("{kind}^{event}"),
        (Some(kind), None) => kind.to_string(),
        _ => String::new(),
    }
}

/// The server's refusal as an ERR: table 0357's nearest code, the OperationOutcome's words.
fn refusal_detail(response: &Response) -> ErrorDetail {
    let code = match response.status {
        404 => ErrorCode::UnknownKeyIdentifier,
        409 | 412 => ErrorCode::ApplicationRecordLocked,
        _ => ErrorCode::ApplicationInternalError,
    };
    let outcome: Value =
        serde_json::from_slice(response.body.as_deref().unwrap_or(b"{}")).unwrap_or(Value::Null);
    let mut words: Vec<String> = Vec::new();
    collect_diagnostics(&outcome, &mut words);
    let text = if words.is_empty() {
        format!("the server refused the message (HTTP {})", response.status)
    } else {
        words.join("; ")
    };
    ErrorDetail::new(code, text)
}

/// Diagnostics of an OperationOutcome, or of the outcomes inside a transaction's answer.
fn collect_diagnostics(value: &Value, words: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if map.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome") {
                for issue in map.get("issue").and_then(Value::as_array).into_iter().flatten() {
                    if issue["severity"] == "error" || issue["severity"] == "fatal" {
                        let where_ =
                            issue["expression"][0].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
                        if let Some(text) = issue["diagnostics"].as_str() {
                            words.push(format!("{text}{where_}"));
                        }
                    }
                }
            } else {
                map.values().for_each(|v| collect_diagnostics(v, words));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_diagnostics(v, words)),
        _ => {}
    }
}
