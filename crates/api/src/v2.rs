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
}

impl Default for V2Config {
    fn default() -> Self {
        V2Config {
            mapping: hl7::MappingConfig::default(),
            application: "CHARTROOM".into(),
            facility: "HIM".into(),
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
        let action = match hl7::map(&message, &config.mapping) {
            Ok(action) => action,
            Err(error) => return refuse(Some(&message), &error),
        };
        let (path, body) = match action {
            hl7::Action::Transaction(bundle) => (String::new(), bundle),
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
            caller,
            ..Default::default()
        };
        let response = self.handle(&request).await;
        let (code, errors) = if (200..300).contains(&response.status) {
            (AckCode::Accept, Vec::new())
        } else {
            (AckCode::Error, vec![refusal_detail(&response)])
        };
        V2Receipt {
            ack: hl7::ack(Some(&message), code, &errors, sending, &next_control_id(), &hl7_now()),
            code,
            applied: Some((response.status, response.audit)),
            event: Some(event_of(&message)),
        }
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
