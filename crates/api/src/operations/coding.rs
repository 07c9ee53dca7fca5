//! `$coding-edits`, `$coding-worklist` and `$suggest-codes`: the medical coder's operations.

use fhir::IssueType;
use serde_json::{Value as Json, json};
use suggest::{Demographics, Suggester};

use super::{Inputs, Level, json_response};
use crate::access::{Gate, ViewedStore};
use crate::{Api, ApiError, Response};

/// The code system of the edit identifiers in `OperationOutcome.issue.details`.
pub(crate) const EDIT_SYSTEM: &str = "urn:chartroom:coding-edit";

/// Most suggestions one call returns.
const MOST_SUGGESTIONS: usize = 50;

/// Longest text read for suggestions: a long discharge summary is tens of kilobytes.
const MOST_TEXT_BYTES: usize = 256 * 1024;

fn coding_error(error: coding::Error) -> ApiError {
    match error {
        coding::Error::Store(e) => ApiError::from(e),
        coding::Error::Invalid(message) => ApiError::bad_request(IssueType::NotSupported, message),
    }
}

/// The edits as an OperationOutcome: one issue per failed edit, its identifier in
/// `details`, the code's location in `expression`.
fn edits_outcome(edits: &[coding::Edit]) -> Json {
    let issues: Vec<Json> = if edits.is_empty() {
        vec![
            json!({"severity": "information", "code": "informational", "diagnostics": "No coding edit failed"}),
        ]
    } else {
        edits.iter().map(edit_issue).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

fn edit_issue(edit: &coding::Edit) -> Json {
    let mut expression = vec![edit.location.clone()];
    expression.extend(edit.other_location.clone());
    json!({
        "severity": edit.severity.as_str(),
        "code": if edit.id == coding::EditId::InvalidCode { "code-invalid" } else { "business-rule" },
        "details": {"coding": [{"system": EDIT_SYSTEM, "code": edit.id.as_str()}], "text": edit.code},
        "diagnostics": edit.message,
        "expression": expression,
    })
}

impl Api {
    /// `[type]/[id]/$coding-edits` (a stored record) or `POST [type]/$coding-edits` (a record
    /// in the body, checked against what the store knows about its patient and encounter).
    pub(crate) fn coding_edits(
        &self,
        level: Level<'_>,
        body: Option<&Json>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        if level == Level::System {
            return Err(ApiError::bad_request(
                IssueType::NotSupported,
                "$coding-edits runs on a Condition, Encounter, Claim or ExplanationOfBenefit",
            ));
        }
        let resource = self.operation_resource(level, body)?;
        // The patient's other diagnoses and the records referred to are read as the caller
        // sees them.
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let edits = coding::edits_for(&viewed, &resource).map_err(coding_error)?;
        Ok(json_response(&edits_outcome(&edits)))
    }

    /// `Encounter/$coding-worklist`: finished encounters needing a coder, oldest discharge
    /// first, as a Parameters resource with one `encounter` part per item.
    pub(crate) fn coding_worklist(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        let limit = inputs.whole_number("_count")?.unwrap_or(self.config.default_page_size);
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let items = coding::worklist(&viewed, Some(limit)).map_err(coding_error)?;
        let parameters: Vec<Json> = items.iter().map(worklist_parameter).collect();
        Ok(json_response(&json!({"resourceType": "Parameters", "parameter": parameters})))
    }

    /// `$suggest-codes`: ranked billable ICD-10-CM codes for free text (`text`), for a
    /// DocumentReference in the body or stored (its text/plain attachments).
    pub(crate) fn suggest_codes(
        &self,
        level: Level<'_>,
        inputs: &Inputs,
        body: Option<&Json>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        let limit = inputs.whole_number("count")?.unwrap_or(10).clamp(1, MOST_SUGGESTIONS);
        let stored;
        let document = match (level, body) {
            (Level::Instance(_, id), _) => {
                stored = self.read_live("DocumentReference", id)?;
                Some(&stored)
            }
            (_, Some(document))
                if document.get("resourceType").and_then(Json::as_str) == Some("DocumentReference") =>
            {
                Some(document)
            }
            _ => inputs.resource("document"),
        };
        let text = match document {
            Some(document) => document_text(self, document, gate)?,
            None => inputs.get("text").map(str::to_string).ok_or_else(|| {
                ApiError::bad_request(
                    IssueType::Required,
                    "$suggest-codes needs a 'text' (or a DocumentReference)",
                )
            })?,
        };
        if text.len() > MOST_TEXT_BYTES {
            return Err(ApiError::bad_request(
                IssueType::TooLong,
                format!("the text is {} bytes; code suggestion reads at most {MOST_TEXT_BYTES}", text.len()),
            ));
        }
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(IssueType::Required, "the text to suggest codes for is empty"));
        }
        let suggester = Suggester::icd10cm();
        // A short phrase is one finding; a longer text is a note, read clause by clause.
        let patient =
            document.map(|document| self.document_patient(document, &text, gate)).unwrap_or_default();
        let suggestions = if text.len() <= 200 && !text.contains(['.', '\n']) {
            suggester.suggest_for(&text, &patient, limit)
        } else {
            suggester.suggest_note_for(&text, &patient, limit)
        };
        let parameters: Vec<Json> = suggestions
            .iter()
            .map(|s| {
                let mut parts = vec![
                    json!({"name": "code", "valueCoding": {"system": terminology::icd10cm::SYSTEM, "code": s.code, "display": s.display}}),
                    json!({"name": "score", "valueDecimal": (s.score * 1000.0).round() / 1000.0}),
                ];
                parts.extend(s.matched_words.iter().map(|w| json!({"name": "matchedWord", "valueString": w})));
                parts.extend(s.evidence.iter().map(|e| json!({"name": "evidence", "valueString": e})));
                json!({"name": "suggestion", "part": parts})
            })
            .collect();
        Ok(json_response(&json!({"resourceType": "Parameters", "parameter": parameters})))
    }
}

impl Api {
    /// Who a document is about: the sex and age (at the document's date) its subject's
    /// Patient record gives, else what the note itself states ("56-year-old man").
    fn document_patient(&self, document: &Json, text: &str, gate: &Gate) -> Demographics {
        let stated = suggest::note_demographics(text);
        let patient = coding::extract::patient_reference(document)
            .and_then(|reference| reference.strip_prefix("Patient/"))
            // Read as the caller may see it: a suggestion shaped by a withheld record's sex
            // or age would tell them.
            .and_then(|id| self.read_live_as("Patient", id, gate).ok());
        let service_date = coding::extract::service_date(document);
        let facts = coding::extract::patient_facts(patient.as_ref(), service_date.as_deref());
        Demographics {
            // An age known only within a range (a birth year, a document month) is not used.
            age_years: facts
                .age_years
                .filter(|(low, high)| low == high)
                .map(|(age, _)| age)
                .or(stated.age_years),
            sex: facts.sex.or(stated.sex),
        }
    }
}

fn worklist_parameter(item: &coding::WorklistItem) -> Json {
    let mut parts = vec![
        json!({"name": "encounter", "valueReference": {"reference": format!("Encounter/{}", item.encounter_id)}}),
    ];
    if let Some(patient) = &item.patient {
        parts.push(json!({"name": "patient", "valueReference": {"reference": patient}}));
    }
    if let Some(discharged) = &item.discharged {
        parts.push(json!({"name": "discharged", "valueDateTime": discharged}));
    }
    if let Some(class) = &item.class {
        parts.push(json!({"name": "class", "valueCode": class}));
    }
    for reason in &item.reasons {
        parts.push(match reason {
            coding::Reason::NotCoded => json!({"name": "reason", "part": [
                {"name": "edit", "valueCode": "not-coded"},
                {"name": "message", "valueString": "finished, with no ICD-10-CM diagnosis coded"}
            ]}),
            coding::Reason::Edit(edit) => json!({"name": "reason", "part": [
                {"name": "edit", "valueCode": edit.id.as_str()},
                {"name": "severity", "valueCode": edit.severity.as_str()},
                {"name": "code", "valueString": edit.code},
                {"name": "location", "valueString": edit.location},
                {"name": "message", "valueString": edit.message}
            ]}),
        });
    }
    json!({"name": "item", "part": parts})
}

/// The text of a DocumentReference's text attachments: inline `data` (base64) or a `Binary`
/// on this server.
fn document_text(api: &Api, document: &Json, gate: &Gate) -> Result<String, ApiError> {
    let mut text = String::new();
    let mut kinds = Vec::new();
    for (i, content) in document.get("content").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let Some(attachment) = content.get("attachment") else { continue };
        let content_type = attachment.get("contentType").and_then(Json::as_str).unwrap_or("text/plain");
        if !content_type.starts_with("text/") {
            kinds.push(content_type.to_string());
            continue;
        }
        let location = format!("DocumentReference.content[{i}].attachment");
        let data = if let Some(data) = attachment.get("data").and_then(Json::as_str) {
            data.to_string()
        } else if let Some(url) = attachment.get("url").and_then(Json::as_str)
            && let Some(id) = url.strip_prefix("Binary/")
        {
            let binary = api.read_live_as("Binary", id, gate).map_err(|error| {
                ApiError::at(400, IssueType::NotFound, error.message(), format!("{location}.url"))
            })?;
            binary.get("data").and_then(Json::as_str).unwrap_or("").to_string()
        } else {
            continue;
        };
        let bytes = fhir::base64_decode(&data).ok_or_else(|| {
            ApiError::at(
                400,
                IssueType::Invalid,
                "the attachment's data is not base64",
                format!("{location}.data"),
            )
        })?;
        text.push_str(&String::from_utf8_lossy(&bytes));
        text.push('\n');
    }
    if text.trim().is_empty() {
        let detail = if kinds.is_empty() { String::new() } else { format!(" (only {})", kinds.join(", ")) };
        return Err(ApiError::bad_request(
            IssueType::Required,
            format!("the DocumentReference has no text attachment to read{detail}"),
        ));
    }
    Ok(text)
}
