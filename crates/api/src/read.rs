//! `read` and `vread`, with conditional reads (`If-None-Match`, `If-Modified-Since`).

use fhir::{DateTime, IssueType, OperationOutcome};
use store::VersionRecord;

use crate::access::Gate;
use crate::headers::{etag, parse_etag};
use crate::{Api, ApiError, Request, Response};

impl Api {
    pub(crate) fn read(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        id: &str,
    ) -> Result<Response, ApiError> {
        let record = self
            .store
            .read(resource_type, id)?
            .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} is not known")))?;
        self.admit_version(gate, &record)?;
        respond_with_version(request, record)
    }

    pub(crate) fn vread(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        id: &str,
        version: &str,
    ) -> Result<Response, ApiError> {
        let missing = || ApiError::not_found(format!("{resource_type}/{id} has no version '{version}'"));
        let number: u64 = version.parse().map_err(|_| missing())?;
        let record = self.store.vread(resource_type, id, number)?.ok_or_else(missing)?;
        // What the resource is now decides too: a label or a directive added later covers its
        // earlier versions.
        if gate.checks()
            && let Some(current) = self.store.read(resource_type, id)?
        {
            self.admit_version(gate, &current)?;
        }
        self.admit_version(gate, &record)?;
        respond_with_version(request, record)
    }

    /// Asks the policy about what a write would change, before anything of it is answered (a
    /// version in a 412 or the record's removal): a caller may not change what they may not
    /// see.
    /// Admits every resource a conditional write's search matches now (at most two), as
    /// [`Api::admit_existing`] does one.
    pub(crate) fn admit_matches(
        &self,
        gate: &Gate,
        resource_type: &str,
        query: &store::SearchQuery,
    ) -> Result<(), ApiError> {
        if !matches!(resource_type, "Task" | "DocumentReference") && !gate.checks() {
            return Ok(());
        }
        let matches = self.store.search(&store::SearchQuery { count: 2, ..query.clone() })?.matches;
        for found in matches {
            self.admit_existing(gate, resource_type, &found.id)?;
        }
        Ok(())
    }

    pub(crate) fn admit_existing(&self, gate: &Gate, resource_type: &str, id: &str) -> Result<(), ApiError> {
        // What a workflow's operations keep is not changed or deleted around them, by anyone;
        // said only to a caller who may see it.
        let workflow_kept = matches!(resource_type, "Task" | "DocumentReference");
        if !workflow_kept && !gate.checks() {
            return Ok(());
        }
        let Some(current) = self.store.read(resource_type, id)? else { return Ok(()) };
        if gate.checks() {
            self.admit_version(gate, &current)?;
        }
        if workflow_kept
            && let Some(body) = &current.body
            && let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        {
            crate::write::check_not_workflow(resource_type, &json)?;
        }
        Ok(())
    }

    /// Asks the policy about one stored version before anything of it is answered, even
    /// a 304 or a 410: a tombstone is judged by the last version that had content.
    pub(crate) fn admit_version(&self, gate: &Gate, record: &VersionRecord) -> Result<(), ApiError> {
        if !gate.checks() {
            if let Some(body) = &record.body {
                gate.shown(body);
            }
            return Ok(());
        }
        if let Some(body) = &record.body {
            return gate.admit_one(&record.resource_type, body);
        }
        let mut version = record.version;
        while version > 1 {
            version -= 1;
            if let Some(earlier) = self.store.vread(&record.resource_type, &record.id, version)?
                && let Some(body) = &earlier.body
            {
                return gate.admit_one(&record.resource_type, body);
            }
        }
        Ok(())
    }
}

/// The response for a stored version: 200 with the stored bytes, 304 when the client's copy is
/// current, 410 when the version is a delete tombstone.
pub(crate) fn respond_with_version(request: &Request, record: VersionRecord) -> Result<Response, ApiError> {
    let tag = etag(record.version);
    let Some(body) = record.body else {
        return Err(ApiError {
            status: 410,
            outcome: OperationOutcome::error(
                IssueType::Deleted,
                format!("{}/{} was deleted (version {})", record.resource_type, record.id, record.version),
            ),
            etag: Some(tag),
        });
    };
    let not_modified = if let Some(if_none_match) = &request.if_none_match {
        if_none_match.split(',').any(|t| t.trim() == "*" || parse_etag(t) == Some(record.version))
    } else if let Some(since) = &request.if_modified_since {
        // HTTP dates have whole seconds: compare at that precision. A date in the future is
        // ignored (RFC 7232, 3.3).
        DateTime::parse_http_date(since).is_ok_and(|since| {
            let since = since.lower_bound_millis();
            since <= fhir::datetime::epoch_millis_now() && record.last_updated / 1000 <= since / 1000
        })
    } else {
        false
    };
    Ok(Response {
        status: if not_modified { 304 } else { 200 },
        etag: Some(tag),
        last_modified: Some(record.last_updated),
        location: None,
        body: if not_modified { None } else { Some(body) },
        content_type: None,
        outcome: None,
        headers: Vec::new(),
        audit: Default::default(),
    })
}
