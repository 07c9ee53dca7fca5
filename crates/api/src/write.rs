//! `create`, `update` and `delete`: prepared on the caller's thread, committed by the store.

use fhir::{IssueType, OperationOutcome, Resource};
use store::{PreparedResource, WriteOp, WriteOutcome, WriteUnit, Written};

use crate::access::Gate;
use crate::headers::{etag, parse_if_match};
use crate::{Api, ApiError, Prefer, Request, Response, ReturnPreference};

/// A new server-assigned logical id. Time-ordered (UUID v7) so that new rows land at the end
/// of the store's identity index instead of at random pages.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// References on the server's own base (`{base}/Patient/1`) become relative (`Patient/1`),
/// so that the index, compartments and the access policy know them as this server's.
pub(crate) fn localize_references(resource: &mut Resource, base: &str) {
    if base.is_empty() {
        return;
    }
    resource.rewrite_references(&mut |reference| {
        let relative = reference.strip_prefix(base)?.strip_prefix('/')?;
        matches!(fhir::parse_reference(relative), Ok(fhir::ReferenceTarget::Local { .. }))
            .then(|| relative.to_string())
    });
}

/// Parses a request body as a resource of `expected_type`, its references on `base` made
/// relative.
pub(crate) fn parse_body(body: &[u8], expected_type: &str, base: &str) -> Result<Resource, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            IssueType::Required,
            format!("the request has no body; send the {expected_type} resource as JSON"),
        ));
    }
    let mut resource = Resource::from_slice(body)?;
    check_type(&resource, expected_type)?;
    localize_references(&mut resource, base);
    Ok(resource)
}

pub(crate) fn check_type(resource: &Resource, expected_type: &str) -> Result<(), ApiError> {
    if resource.resource_type() != expected_type {
        return Err(ApiError::at(
            400,
            IssueType::Invalid,
            format!(
                "resourceType '{}' in the body does not match '{expected_type}' in the URL",
                resource.resource_type()
            ),
            "resourceType",
        ));
    }
    Ok(())
}

/// Whether a write is checked against the R4 definitions before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Invalid resources are refused with 422 and every issue found.
    Enforce,
    /// Invalid resources are stored as given, and the answer carries their issues as
    /// warnings (a migration taking in real data to fix later; `chartroom dq` counts them).
    Warn,
    /// Stored as given (an import of legacy data whose defects a data-quality report is to
    /// find); reference formats are still checked.
    Skip,
}

/// Serializes a checked resource for the store (under `Warn`, what is stored is validated
/// once committed: [`complete`] reports its issues).
pub(crate) fn prepare(resource: &Resource, validation: Validation) -> Result<PreparedResource, ApiError> {
    resource.check_reference_formats()?;
    if validation == Validation::Enforce {
        check_valid(resource)?;
    }
    Ok(PreparedResource::new(resource)?)
}

/// 422 Unprocessable Entity with every issue, when the resource has errors; warnings never
/// block a write.
pub(crate) fn check_valid(resource: &Resource) -> Result<(), ApiError> {
    let issues = validation::Validator::r4().validate(resource.as_json());
    if validation::has_errors(&issues) {
        return Err(ApiError { status: 422, outcome: validation::outcome_of(issues), etag: None });
    }
    Ok(())
}

/// The issues of a resource stored under `Warn`, as warnings saying so; `None` when it is
/// valid.
pub(crate) fn stored_with(resource: &serde_json::Value) -> Option<OperationOutcome> {
    let issues = validation::Validator::r4().validate(resource);
    if !validation::has_errors(&issues) {
        return None;
    }
    let mut outcome = validation::outcome_of(issues);
    for issue in &mut outcome.issues {
        if issue.severity == fhir::Severity::Error || issue.severity == fhir::Severity::Fatal {
            issue.severity = fhir::Severity::Warning;
            issue.diagnostics = format!("stored under validation warn: {}", issue.diagnostics);
        }
    }
    Some(outcome)
}

/// A create: any client id is replaced by a new server id (the specification says a server
/// SHALL ignore it).
/// Refuses a resource only a workflow's operations may write: a release-of-information
/// request, a record deficiency... (their clocks, rules and audit are the law's).
pub(crate) fn check_not_workflow(resource_type: &str, json: &serde_json::Value) -> Result<(), ApiError> {
    match workflow::written_only_by(resource_type, json) {
        Some(operations) => Err(ApiError::new(
            422,
            IssueType::BusinessRule,
            format!("this workflow's record is written only through its operations: {operations}"),
        )),
        None => Ok(()),
    }
}

pub(crate) fn prepare_create(
    mut resource: Resource,
    id: &str,
    validation: Validation,
) -> Result<WriteOp, ApiError> {
    check_not_workflow(resource.resource_type(), resource.as_json())?;
    resource.set_id(id);
    Ok(WriteOp::Create(prepare(&resource, validation)?))
}

/// A resource loaded from files by the data directory's owner (`chartroom import`): kept under
/// its own id (or a new one), workflow records included, since a load carries them as their
/// operations wrote them where the record comes from; but a workflow record already on record
/// is not overwritten. Holds still bind: the store refuses to change what they cover.
pub(crate) fn prepare_loaded(mut resource: Resource, validation: Validation) -> Result<WriteOp, ApiError> {
    if resource.id().is_none() {
        resource.set_id(&new_id());
        return Ok(WriteOp::Create(prepare(&resource, validation)?));
    }
    // A workflow's record is loaded once: one already on record (a hold, a request, a
    // certificate) is not overwritten by a load.
    if workflow::written_only_by(resource.resource_type(), resource.as_json()).is_some() {
        return Ok(WriteOp::Create(prepare(&resource, validation)?));
    }
    Ok(WriteOp::Update { resource: prepare(&resource, validation)?, if_match: None })
}

/// An update of `id`: the body must carry the same id.
pub(crate) fn prepare_update(
    resource: &Resource,
    id: &str,
    if_match: Option<&str>,
    validation: Validation,
) -> Result<WriteOp, ApiError> {
    let resource_type = resource.resource_type();
    check_not_workflow(resource_type, resource.as_json())?;
    match resource.id() {
        None => {
            return Err(ApiError::at(
                400,
                IssueType::Required,
                format!("an update needs the id in the body; expected \"id\": \"{id}\""),
                format!("{resource_type}.id"),
            ));
        }
        Some(body_id) if body_id != id => {
            return Err(ApiError::at(
                400,
                IssueType::Invalid,
                format!("the id '{body_id}' in the body does not match '{id}' in the URL"),
                format!("{resource_type}.id"),
            ));
        }
        Some(_) => {}
    }
    let if_match = if_match.map(parse_if_match).transpose()?;
    Ok(WriteOp::Update { resource: prepare(resource, validation)?, if_match })
}

/// A delete of `resource_type/id`.
pub(crate) fn prepare_delete(
    resource_type: &str,
    id: &str,
    if_match: Option<&str>,
) -> Result<WriteOp, ApiError> {
    let if_match = if_match.map(parse_if_match).transpose()?;
    Ok(WriteOp::Delete { resource_type: resource_type.to_string(), id: id.to_string(), if_match })
}

/// The response to a committed write. What it carries back passes the gate: the caller's own
/// content is recorded as touched; a resource a conditional create found existing is shown
/// only if the caller may see it.
pub(crate) fn complete(base: &str, written: Written, preference: ReturnPreference, gate: &Gate) -> Response {
    let Written { resource_type, id, outcome } = written;
    match outcome {
        WriteOutcome::Stored { version, last_updated, created, body } => {
            gate.shown(&body);
            let status = if created { 201 } else { 200 };
            let warnings = if gate.validation() == Validation::Warn {
                serde_json::from_slice(&body).ok().and_then(|resource| stored_with(&resource))
            } else {
                None
            };
            let body = match preference {
                ReturnPreference::Representation => Some(body),
                ReturnPreference::Minimal => None,
                ReturnPreference::OperationOutcome => {
                    let mut outcome = OperationOutcome::information(format!(
                        "{} {resource_type}/{id} as version {version}",
                        if created { "Created" } else { "Updated" }
                    ));
                    if let Some(warnings) = &warnings {
                        outcome.issues.extend(warnings.issues.iter().cloned());
                    }
                    Some(outcome.to_bytes())
                }
            };
            let outcome = warnings.map(|w| w.to_bytes());
            Response {
                status,
                etag: Some(etag(version)),
                last_modified: Some(last_updated),
                location: Some(format!("{base}/{resource_type}/{id}/_history/{version}")),
                body,
                content_type: None,
        outcome,
        headers: Vec::new(),
                audit: Default::default(),
            }
        }
        WriteOutcome::Deleted { version, .. } => {
            let mut response = deleted_response(
                preference,
                format!("Deleted {resource_type}/{id} (tombstone version {version})"),
            );
            response.etag = Some(etag(version));
            response
        }
        WriteOutcome::NothingToDelete => deleted_response(
            preference,
            if id.is_empty() {
                format!("no {resource_type} matched; nothing changed")
            } else {
                format!("{resource_type}/{id} did not exist or was already deleted; nothing changed")
            },
        ),
        WriteOutcome::Existing { body, .. } if gate.admit(&resource_type, &body) != privacy::Sight::Shown => {
            Response::json(
                200,
                OperationOutcome::information(format!(
                    "a {resource_type} matching the condition already exists (withheld from this token); nothing was created"
                ))
                .to_bytes(),
            )
        }
        WriteOutcome::Existing { version, last_updated, body } => Response {
            status: 200,
            etag: Some(etag(version)),
            last_modified: Some(last_updated),
            location: Some(format!("{base}/{resource_type}/{id}/_history/{version}")),
            body: match preference {
                ReturnPreference::Representation => Some(body),
                ReturnPreference::Minimal => None,
                ReturnPreference::OperationOutcome => Some(
                    OperationOutcome::information(format!(
                        "{resource_type}/{id} already matches the condition; nothing was created"
                    ))
                    .to_bytes(),
                ),
            },
            content_type: None,
        outcome: None,
        headers: Vec::new(),
            audit: Default::default(),
        },
        WriteOutcome::Reindexed { .. } | WriteOutcome::Purged { .. } => Response::empty(204),
    }
}

/// Adds warnings to a write's answer: to its OperationOutcome body when the client asked for
/// one, and to the outcome a Bundle entry carries.
pub(crate) fn with_warnings(response: &mut Response, warnings: OperationOutcome) {
    let added: Vec<serde_json::Value> = serde_json::from_slice::<serde_json::Value>(&warnings.to_bytes())
        .ok()
        .and_then(|v| v["issue"].as_array().cloned())
        .unwrap_or_default();
    let merge = |bytes: Option<&Vec<u8>>| -> Option<Vec<u8>> {
        let mut outcome = bytes
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .filter(|v| v["resourceType"] == "OperationOutcome")
            .unwrap_or_else(|| serde_json::json!({ "resourceType": "OperationOutcome", "issue": [] }));
        outcome["issue"].as_array_mut()?.extend(added.iter().cloned());
        serde_json::to_vec(&outcome).ok()
    };
    let is_outcome = response
        .body
        .as_ref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .is_some_and(|v| v["resourceType"] == "OperationOutcome");
    if is_outcome {
        response.body = merge(response.body.as_ref()).or(response.body.take());
    }
    response.outcome = merge(response.outcome.as_ref());
}

fn deleted_response(preference: ReturnPreference, message: String) -> Response {
    if preference == ReturnPreference::OperationOutcome {
        Response::json(200, OperationOutcome::information(message).to_bytes())
    } else {
        Response::empty(204)
    }
}

impl Api {
    pub(crate) async fn commit_one(&self, op: WriteOp) -> Result<Written, ApiError> {
        let mut written = self.store.submit(WriteUnit::single(op)).wait().await?;
        written.pop().ok_or_else(|| ApiError::internal("the store acknowledged a write without a result"))
    }

    pub(crate) async fn create(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
    ) -> Result<Response, ApiError> {
        let resource = parse_body(&request.body, resource_type, &request.base)?;
        // A new registration that probably duplicates one on file: warned (or refused) before
        // anything is written.
        let duplicates = if resource_type == "Patient" && request.if_none_exist.is_none() {
            self.registration_check(resource.as_json(), gate)?
        } else {
            None
        };
        let op = match &request.if_none_exist {
            Some(condition) => {
                gate.check_search(resource_type)?;
                let query = self.conditional_query(gate, resource_type, condition, &request.base)?;
                match prepare_create(resource, &new_id(), self.config.validation)? {
                    WriteOp::Create(resource) => WriteOp::CreateIfNoneExist { resource, query },
                    other => other,
                }
            }
            None => prepare_create(resource, &new_id(), self.config.validation)?,
        };
        let written = self.commit_one(op).await?;
        let mut response = complete(&request.base, written, preference(request), gate);
        if let Some(duplicates) = duplicates {
            with_warnings(&mut response, duplicates);
        }
        Ok(response)
    }

    /// `PUT [type]?[search]`.
    pub(crate) async fn conditional_update(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
    ) -> Result<Response, ApiError> {
        let query = self.conditional_query(gate, resource_type, &request.query, &request.base)?;
        self.check_update_creates(gate, resource_type, None, Some(&query))?;
        self.admit_matches(gate, resource_type, &query)?;
        let mut resource = parse_body(&request.body, resource_type, &request.base)?;
        check_not_workflow(resource.resource_type(), resource.as_json())?;
        let id_given = resource.id().is_some();
        if !id_given {
            resource.set_id(&new_id());
        }
        let prepared = prepare(&resource, self.config.validation)?;
        let written =
            self.commit_one(WriteOp::ConditionalUpdate { resource: prepared, query, id_given }).await?;
        Ok(complete(&request.base, written, preference(request), gate))
    }

    /// `DELETE [type]?[search]`.
    pub(crate) async fn conditional_delete(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
    ) -> Result<Response, ApiError> {
        let query = self.conditional_query(gate, resource_type, &request.query, &request.base)?;
        self.admit_matches(gate, resource_type, &query)?;
        let written = self.commit_one(WriteOp::ConditionalDelete { query }).await?;
        Ok(complete(&request.base, written, preference(request), gate))
    }

    pub(crate) async fn update(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        id: &str,
    ) -> Result<Response, ApiError> {
        self.check_update_creates(gate, resource_type, Some(id), None)?;
        self.admit_existing(gate, resource_type, id)?;
        let resource = parse_body(&request.body, resource_type, &request.base)?;
        let op = prepare_update(&resource, id, request.if_match.as_deref(), self.config.validation)?;
        let written = self.commit_one(op).await?;
        Ok(complete(&request.base, written, preference(request), gate))
    }

    pub(crate) async fn delete(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        id: &str,
    ) -> Result<Response, ApiError> {
        self.admit_existing(gate, resource_type, id)?;
        let op = prepare_delete(resource_type, id, request.if_match.as_deref())?;
        let written = self.commit_one(op).await?;
        Ok(complete(&request.base, written, preference(request), gate))
    }
}

impl Api {
    /// An update creates what does not exist (or what its condition does not find): that
    /// needs the scopes' create too.
    pub(crate) fn check_update_creates(
        &self,
        gate: &Gate,
        resource_type: &str,
        id: Option<&str>,
        condition: Option<&store::SearchQuery>,
    ) -> Result<(), ApiError> {
        if gate.may_create(resource_type) {
            return Ok(());
        }
        let exists = match (id, condition) {
            (Some(id), _) => self.store.read(resource_type, id)?.is_some_and(|r| !r.is_deleted()),
            (None, Some(query)) => {
                !self.store.search(&store::SearchQuery { count: 1, ..query.clone() })?.matches.is_empty()
            }
            (None, None) => false,
        };
        if exists {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                IssueType::Forbidden,
                format!("this update would create a {resource_type}, which the token's scopes do not permit"),
            ))
        }
    }
}

fn preference(request: &Request) -> ReturnPreference {
    Prefer::parse(request.prefer.as_deref()).return_preference.unwrap_or_default()
}
