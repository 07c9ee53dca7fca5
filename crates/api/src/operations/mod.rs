//! Named operations (`$name`) at system, type and instance level, other than `$everything`
//! (which is part of search).
//!
//! Inputs come from the query string (GET) or a `Parameters` body (POST); some operations
//! also take a resource as the POST body. Outputs are `Parameters`, `OperationOutcome` or a
//! resource, as each operation's definition says.

mod amendment;
mod analytics;
mod coding;
mod completion;
pub(crate) mod matching;
mod merge;
mod parameters;
pub(crate) mod registry;
mod retention;
mod risk;
mod roi;
mod terminology;
pub mod views;

use fhir::IssueType;
use serde_json::Value as Json;

use crate::access::Gate;
use crate::{Api, ApiError, Method, Request, Response};
use registry::{Call, Change, Handler};

/// What running an operation came to.
enum Ran {
    Answered(Box<Response>),
    Changes(Change),
    /// An HL7 v2 message to apply through the API (`$hl7v2`).
    Relays(String),
}

/// An operation call, by level and name (without the `$`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Invocation<'a> {
    pub level: Level<'a>,
    pub name: &'a str,
}
pub(crate) use parameters::Inputs;
pub(crate) use terminology::{StoreTerminology, terminology_error};

/// Where an operation is invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

impl Api {
    /// Runs an operation, as the registry declares it: offered at this level, invoked with a
    /// method it takes, with the parameters it declares.
    fn run_operation(
        &self,
        request: &Request,
        gate: &Gate,
        method: Method,
        name: &str,
        level: &fhir::rest::Level,
    ) -> Result<Ran, ApiError> {
        // The route parser checked the type and id (ViewDefinition is SQL on FHIR's, not
        // R4's; its instances are views named in snake_case, which `named_view` checks).
        let level = match level {
            fhir::rest::Level::System => Level::System,
            fhir::rest::Level::Type(t) => Level::Type(t),
            fhir::rest::Level::Instance(t, id) => Level::Instance(t, id),
        };
        let operation = registry::find(name).ok_or_else(|| {
            ApiError::bad_request(
                IssueType::NotSupported,
                format!("operation ${name} is not supported {}", level_name(level)),
            )
        })?;
        if !operation.levels.allows(&level) {
            return Err(ApiError::bad_request(
                IssueType::NotSupported,
                format!(
                    "operation ${name} is not supported {}; it runs on {}",
                    level_name(level),
                    operation.levels.describe()
                ),
            ));
        }
        let methods_taken = if operation.affects_state { "POST" } else { "GET, POST" };
        if !matches!(method, Method::Post)
            && (operation.affects_state || !matches!(method, Method::Get | Method::Head))
        {
            return Err(ApiError::method_not_allowed(method, &format!("${name}"), methods_taken));
        }
        // An operation on one resource reads it: the policy judges it first, as a read.
        if let Level::Instance(t, id) = level
            && t != fhir::rest::VIEW_DEFINITION
            && gate.checks()
            && let Some(record) = self.store.read(t, id)?
        {
            self.admit_version(gate, &record)?;
        }
        let body = if method == Method::Post { parameters::parse_body(&request.body)? } else { None };
        let inputs = Inputs::new(&request.query, body.as_ref())?;
        operation.check(&inputs)?;
        let call = Call { request, gate, level, inputs: &inputs, body: body.as_ref() };
        match operation.handler {
            Handler::Reads(handler) => handler(self, &call).map(|r| Ran::Answered(Box::new(r))),
            Handler::Changes(handler) => handler(self, &call).map(Ran::Changes),
            Handler::Relays(handler) => handler(self, &call).map(Ran::Relays),
        }
    }

    /// Runs an operation that answers without writing ([`Api::run_operation`]); one that
    /// changes the record is refused here (a batch's read entries come this way).
    pub(crate) fn operation(
        &self,
        request: &Request,
        gate: &Gate,
        method: Method,
        name: &str,
        level: &fhir::rest::Level,
    ) -> Result<Response, ApiError> {
        match self.run_operation(request, gate, method, name, level)? {
            Ran::Answered(response) => Ok(*response),
            Ran::Changes(_) | Ran::Relays(_) => Err(ApiError::bad_request(
                IssueType::NotSupported,
                format!("${name} changes the record; invoke it on its own, not inside a Bundle"),
            )),
        }
    }

    /// Runs any operation; a change it plans commits as one store transaction (all of it or
    /// nothing) before it answers.
    pub(crate) async fn operation_committing(
        &self,
        request: &Request,
        gate: &Gate,
        method: Method,
        name: &str,
        level: &fhir::rest::Level,
    ) -> Result<Response, ApiError> {
        match self.run_operation(request, gate, method, name, level)? {
            Ran::Answered(response) => Ok(*response),
            Ran::Changes(change) => {
                let written = match change.unit {
                    Some(unit) => self.store.submit(unit).wait().await?,
                    None => Vec::new(),
                };
                (change.answer)(self, gate, written)
            }
            // The message becomes a request of its own, as the same caller: the policy decides
            // on what it writes, and what it touched is this call's to record.
            Ran::Relays(message) => {
                let receipt =
                    Box::pin(self.receive_v2(request.caller.clone(), &message, &self.config.v2)).await;
                if let Some((_, audited)) = &receipt.applied {
                    for patient in &audited.patients {
                        gate.touch(patient.strip_prefix("Patient/").unwrap_or(patient));
                    }
                    for written in &audited.written {
                        gate.wrote(written.clone());
                    }
                }
                let parameters = serde_json::json!({
                    "resourceType": "Parameters",
                    "parameter": [
                        { "name": "ack", "valueString": receipt.ack },
                        { "name": "acknowledgement", "valueCode": receipt.code.as_str() },
                    ],
                });
                Ok(Response::json(200, serde_json::to_vec(&parameters).unwrap_or_default()))
            }
        }
    }

    /// `$hl7v2`: the message given, checked to be there.
    pub(crate) fn hl7v2_operation(&self, call: &Call<'_>) -> Result<String, ApiError> {
        call.inputs.get("message").map(str::to_string).ok_or_else(|| {
            ApiError::bad_request(IssueType::Required, "$hl7v2 needs message: the HL7 v2 message (ER7 text)")
        })
    }

    /// `$export` at system, Patient or Group level (and for one Patient).
    pub(crate) fn export_operation(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        use crate::export::ExportScope;
        let (scope, inputs) = match call.level {
            Level::System => (ExportScope::System, call.inputs.without("")),
            // A patient's token exports their own record, whatever `patient` says.
            Level::Type(_) if call.gate.confined_to().is_some() => (
                ExportScope::Patients(call.gate.confined_to().map(str::to_string).into_iter().collect()),
                call.inputs.without("patient"),
            ),
            Level::Type(_) => (ExportScope::AllPatients, call.inputs.without("")),
            Level::Instance("Group", id) => {
                (ExportScope::Patients(self.group_patients(id)?), call.inputs.without(""))
            }
            Level::Instance(_, id) => (ExportScope::Patients(vec![id.to_string()]), call.inputs.without("")),
        };
        self.export_kickoff(call.request, call.gate, scope, &inputs)
    }

    /// `$coding-edits` of a record, stored or posted.
    pub(crate) fn coding_edits_operation(&self, call: &Call<'_>) -> Result<Response, ApiError> {
        // The edits read the patient's other diagnoses from the record: all of it is theirs
        // to withhold.
        let resource = self.operation_resource(call.level, call.body).ok();
        let patient = resource
            .as_ref()
            .and_then(fhir::patient_reference)
            .and_then(fhir::patient_id_of_reference)
            .map(str::to_string);
        call.gate.bulk(patient.as_deref())?;
        if let Some(patient) = &patient {
            call.gate.touch(patient);
        }
        self.coding_edits(call.level, call.body, call.gate)
    }

    /// `$data-quality` over the whole record; `chartroom dq` keeps runs for the trend.
    pub(crate) fn data_quality(&self, gate: &Gate) -> Result<Response, ApiError> {
        // A report over the whole record, examples included: like a view's rows, it cannot
        // withhold one resource of it.
        gate.bulk(None)?;
        let report = quality::run(self.store.as_ref(), &quality::Options::default())
            .map_err(|e| ApiError::internal(format!("the data-quality run failed: {e}")))?;
        Ok(json_response(&report.to_parameters(&fhir::DateTime::now_utc().to_string())))
    }

    /// The Patients a Group lists (`Group.member.entity`), for a Group's bulk export.
    fn group_patients(&self, id: &str) -> Result<Vec<String>, ApiError> {
        let group = self.read_live("Group", id)?;
        let patients: Vec<String> = group
            .get("member")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter(|m| m.get("inactive").and_then(Json::as_bool) != Some(true))
            .filter_map(|m| {
                m.get("entity")?.get("reference")?.as_str()?.strip_prefix("Patient/").map(str::to_string)
            })
            .collect();
        if patients.is_empty() {
            return Err(ApiError::bad_request(
                IssueType::Value,
                format!("Group/{id} lists no active Patient members"),
            ));
        }
        Ok(patients)
    }

    /// The resource an operation works on: the instance's current version, or the body (the
    /// resource itself, or a Parameters with it as `resource`), of the level's type.
    pub(crate) fn operation_resource(&self, level: Level<'_>, body: Option<&Json>) -> Result<Json, ApiError> {
        if let Level::Instance(resource_type, id) = level {
            return self.read_live(resource_type, id);
        }
        let resource = match body {
            Some(parameters)
                if parameters.get("resourceType").and_then(Json::as_str) == Some("Parameters") =>
            {
                parameters
                    .get("parameter")
                    .and_then(Json::as_array)
                    .and_then(|ps| {
                        ps.iter().find(|p| p.get("name").and_then(Json::as_str) == Some("resource"))
                    })
                    .and_then(|p| p.get("resource"))
            }
            other => other,
        };
        let wanted = match level {
            Level::Type(resource_type) => resource_type,
            _ => "resource",
        };
        let resource = resource.ok_or_else(|| {
            ApiError::bad_request(IssueType::Required, format!("POST the {wanted} to check as the body"))
        })?;
        let given = resource.get("resourceType").and_then(Json::as_str).unwrap_or("");
        if let Level::Type(resource_type) = level
            && given != resource_type
        {
            return Err(ApiError::bad_request(
                IssueType::Invalid,
                format!("the body is a {given}, not a {resource_type}"),
            ));
        }
        Ok(resource.clone())
    }

    /// [`Api::read_live`], as the caller may see it (a resource an operation follows from
    /// another).
    pub(crate) fn read_live_as(&self, resource_type: &str, id: &str, gate: &Gate) -> Result<Json, ApiError> {
        if let Some(record) = self.store.read(resource_type, id)? {
            self.admit_version(gate, &record)?;
        }
        self.read_live(resource_type, id)
    }

    /// Reads a live resource for an instance-level operation.
    pub(crate) fn read_live(&self, resource_type: &str, id: &str) -> Result<Json, ApiError> {
        let record = self
            .store
            .read(resource_type, id)?
            .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} is not known")))?;
        let body = record.body.ok_or_else(|| {
            ApiError::new(410, IssueType::Deleted, format!("{resource_type}/{id} was deleted"))
        })?;
        fhir::parse_json(&body)
            .map_err(|e| ApiError::internal(format!("stored {resource_type}/{id} does not parse: {e}")))
    }
}

/// A 200 with an operation's output resource.
fn json_response(value: &Json) -> Response {
    Response::json(200, serde_json::to_vec(value).unwrap_or_default())
}

fn level_name(level: Level<'_>) -> String {
    match level {
        Level::System => "at the system level".to_string(),
        Level::Type(t) => format!("on {t}"),
        Level::Instance(t, _) => format!("on a {t} instance"),
    }
}
