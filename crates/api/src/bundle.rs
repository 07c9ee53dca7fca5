//! `batch` and `transaction` Bundles POSTed to the service base.
//!
//! A batch runs each entry on its own: one entry failing does not affect the others. A
//! transaction is one store unit: every write commits or none does. In a transaction,
//! `fullUrl`s of new resources (`urn:uuid:...`) are replaced by the ids the server assigns,
//! in every reference and narrative of the Bundle. Writes run in the specification's order
//! (DELETE, POST, PUT), then the reads (GET), and the response lists entries in request order.

use std::collections::{HashMap, HashSet};

use fhir::{IssueType, Resource};
use serde_json::Value;
use store::{WriteOp, WriteUnit};

use crate::json_writer::{BundleWriter, Entry, EntryResponse};
use fhir::rest::{Route, Target};

use crate::access::Gate;
use crate::patch::PatchDocument;
use crate::write::{
    check_type, complete, new_id, prepare_create, prepare_delete, prepare_update, with_warnings,
};
use crate::{Api, ApiError, Method, Prefer, Request, Response, ReturnPreference};

/// One entry's `request`, parsed.
struct EntryRequest {
    method: Method,
    /// What the entry asks for, by the same parser as a request sent alone.
    route: Route,
    target: Target,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    if_none_exist: Option<String>,
    resource: Option<Resource>,
    full_url: Option<String>,
}

impl EntryRequest {
    fn read_request(&self, base: &str) -> Request {
        Request {
            method: Some(Method::Get),
            base: base.to_string(),
            path: self.target.path(),
            query: self.target.query.clone(),
            if_none_match: self.if_none_match.clone(),
            if_modified_since: self.if_modified_since.clone(),
            ..Default::default()
        }
    }
}

fn entry_string(entry: &Value, field: &str) -> Option<String> {
    entry.get("request")?.get(field)?.as_str().map(str::to_string)
}

/// Whether `text` is a UUID in its canonical form (8-4-4-4-12 hexadecimal digits), as a
/// `urn:uuid:` must be.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn parse_entry(mut entry: Value, base: &str) -> Result<EntryRequest, ApiError> {
    let Some(request) = entry.get("request").filter(|r| r.is_object()) else {
        return Err(ApiError::at(400, IssueType::Required, "the entry has no request", "request"));
    };
    let method = match request.get("method").and_then(Value::as_str) {
        Some(name) => Method::parse(name),
        None => {
            return Err(ApiError::at(
                400,
                IssueType::Required,
                "request.method is missing",
                "request.method",
            ));
        }
    };
    let Some(url) = request.get("url").and_then(Value::as_str) else {
        return Err(ApiError::at(400, IssueType::Required, "request.url is missing", "request.url"));
    };
    let at_url =
        |error: fhir::rest::RouteError| ApiError::at(error.status, error.code, error.message, "request.url");
    let target = Target::parse(url, base).map_err(at_url)?;
    let route = Route::parse(method, &target).map_err(at_url)?;
    let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_string);
    if let Some(uuid) = full_url.as_deref().and_then(|u| u.strip_prefix("urn:uuid:"))
        && !is_uuid(uuid)
    {
        return Err(ApiError::at(
            400,
            IssueType::Value,
            format!("fullUrl 'urn:uuid:{uuid}' is not a UUID (8-4-4-4-12 hexadecimal digits)"),
            "fullUrl",
        ));
    }
    let parsed = EntryRequest {
        method,
        route,
        target,
        if_match: entry_string(&entry, "ifMatch"),
        if_none_match: entry_string(&entry, "ifNoneMatch"),
        if_modified_since: entry_string(&entry, "ifModifiedSince"),
        if_none_exist: entry_string(&entry, "ifNoneExist"),
        full_url,
        resource: match entry.get_mut("resource").map(Value::take) {
            Some(value) => {
                let mut resource = Resource::from_value(value)?;
                crate::write::localize_references(&mut resource, base);
                Some(resource)
            }
            None => None,
        },
    };
    Ok(parsed)
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        _ => "",
    };
    if reason.is_empty() { status.to_string() } else { format!("{status} {reason}") }
}

/// What a successful entry's response body is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Resource,
    Outcome,
}

/// What an entry's result was, and what its body holds.
type EntryResult = Option<(Result<Response, ApiError>, BodyKind)>;

fn write_body_kind(preference: ReturnPreference) -> BodyKind {
    if preference == ReturnPreference::OperationOutcome { BodyKind::Outcome } else { BodyKind::Resource }
}

/// Appends the Bundle entry that reports `result`.
fn write_entry(bundle: &mut BundleWriter, result: &Result<Response, ApiError>, kind: BodyKind) {
    let error_response;
    let (response, outcome, resource) = match result {
        Ok(response) => {
            let body = response.body.as_deref();
            match kind {
                BodyKind::Resource => (response, response.outcome.as_deref(), body),
                BodyKind::Outcome => (response, body, None),
            }
        }
        Err(error) => {
            error_response = error.clone().into_response();
            (&error_response, error_response.body.as_deref(), None)
        }
    };
    let status = status_line(response.status);
    let last_modified = response.last_modified.map(|ms| fhir::DateTime::from_epoch_millis(ms).to_string());
    bundle.entry(&Entry {
        full_url: None,
        search_mode: None,
        resource,
        request: None,
        response: Some(EntryResponse {
            status: &status,
            location: response.location.as_deref(),
            etag: response.etag.as_deref(),
            last_modified: last_modified.as_deref(),
            outcome,
        }),
    });
}

fn finish_response(bundle_type: &str, results: Vec<EntryResult>) -> Response {
    let mut bundle = BundleWriter::new(bundle_type, None, &[]);
    for (result, kind) in results.into_iter().flatten() {
        write_entry(&mut bundle, &result, kind);
    }
    Response::json(200, bundle.finish())
}

/// Replaces `urn:uuid:`/`urn:oid:` identities inside narrative XHTML (links and images).
fn rewrite_urns_in_text(text: &str, identities: &HashMap<String, String>) -> Option<String> {
    if !text.contains("urn:") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("urn:") {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| c == '"' || c == '\'' || c == '<' || c == '>' || c.is_whitespace())
            .unwrap_or(candidate.len());
        let token = &candidate[..end];
        match identities.get(token) {
            Some(replacement) => {
                out.push_str(replacement);
                changed = true;
            }
            None => out.push_str(token),
        }
        rest = &candidate[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Bytes the read entries of one Bundle may answer together: the response is built in
/// memory, and a few hundred searches of a thousand resources each would otherwise hold
/// gigabytes for one request.
const READ_BYTES: usize = 64 * 1024 * 1024;

/// What a Bundle's read entries have answered so far.
#[derive(Default)]
struct ReadBudget {
    spent: usize,
}

impl ReadBudget {
    fn check(&self) -> Result<(), ApiError> {
        if self.spent > READ_BYTES {
            return Err(ApiError::bad_request(
                IssueType::TooCostly,
                format!(
                    "the Bundle's reads already answer more than {} MiB; send the remaining reads in another request",
                    READ_BYTES / (1024 * 1024)
                ),
            ));
        }
        Ok(())
    }

    fn spend(&mut self, result: &Result<Response, ApiError>) {
        if let Ok(response) = result {
            self.spent += response.body.as_ref().map_or(0, Vec::len);
        }
    }
}

/// A write entry of a transaction, checked and with its identity fixed.
struct PlannedWrite {
    index: usize,
    method: Method,
    resource_type: String,
    id: String,
    /// The search of a conditional create/update/delete, checked again inside the commit.
    condition: Option<store::SearchQuery>,
    /// A conditional create whose condition already matches: nothing is written.
    existing: Option<store::VersionRecord>,
    /// A conditional delete that matched nothing: nothing is written.
    nothing: bool,
    /// A patch's document, applied to the resource's current version when the unit is built.
    patch: Option<PatchDocument>,
    /// A new Patient's probable duplicates on file, warned about in its entry's outcome.
    duplicates: Option<fhir::OperationOutcome>,
}

impl Api {
    pub(crate) async fn bundle(&self, request: &Request, gate: &Gate) -> Result<Response, ApiError> {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "POST to the service base needs a batch or transaction Bundle as its body",
            ));
        }
        let value = fhir::parse_json(&request.body)?;
        let bundle = Resource::from_value(value)?;
        self.bundle_as(&request.base, request.prefer.as_deref(), bundle, gate).await
    }

    /// Processes a parsed batch or transaction Bundle as if it were POSTed to `base` by the
    /// embedding program itself (import).
    pub async fn process_bundle(
        &self,
        base: &str,
        prefer: Option<&str>,
        bundle: Resource,
    ) -> Result<Response, ApiError> {
        let route = Route::Bundle;
        let gate = Gate::open(self, None, &route)?;
        self.bundle_as(base, prefer, bundle, &gate).await
    }

    async fn bundle_as(
        &self,
        base: &str,
        prefer: Option<&str>,
        bundle: Resource,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        if bundle.resource_type() != "Bundle" {
            return Err(ApiError::at(
                400,
                IssueType::Invalid,
                format!(
                    "POST to the service base needs a Bundle, not {}; to create a resource POST it to [base]/{}",
                    bundle.resource_type(),
                    bundle.resource_type()
                ),
                "resourceType",
            ));
        }
        let mut object = bundle.into_value();
        let bundle_type = object.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let entries = match object.get_mut("entry").map(Value::take) {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(ApiError::at(
                    400,
                    IssueType::Structure,
                    "Bundle.entry must be an array",
                    "Bundle.entry",
                ));
            }
        };
        if entries.len() > self.config.max_bundle_entries {
            return Err(ApiError::bad_request(
                IssueType::TooCostly,
                format!(
                    "the Bundle has {} entries; at most {} are accepted in one request",
                    entries.len(),
                    self.config.max_bundle_entries
                ),
            ));
        }
        let preference = Prefer::parse(prefer).return_preference;
        match bundle_type.as_str() {
            "transaction" => {
                gate.name_interaction("transaction");
                self.transaction(base, entries, preference, gate).await
            }
            "batch" => self.batch(base, entries, preference, gate).await,
            other => Err(ApiError::at(
                400,
                IssueType::Invalid,
                format!(
                    "a Bundle POSTed to the service base must be of type 'transaction' or 'batch', not '{other}'"
                ),
                "Bundle.type",
            )),
        }
    }

    /// Prepares one write entry of a batch (no identity rewriting: batch entries may not
    /// depend on each other).
    fn prepare_batch_write(
        &self,
        mut entry: EntryRequest,
        siblings: &HashSet<String>,
        base: &str,
        gate: &Gate,
    ) -> Result<WriteOp, ApiError> {
        let resource = entry.resource.take();
        if let Some(resource) = &resource {
            for site in resource.references() {
                if siblings.contains(site.reference) && entry.full_url.as_deref() != Some(site.reference) {
                    return Err(ApiError::at(
                        400,
                        IssueType::Invalid,
                        format!(
                            "'{}' refers to another entry of the batch; entries of a batch are independent \
                             (send a transaction to link new resources)",
                            site.reference
                        ),
                        site.path.clone(),
                    ));
                }
            }
        }
        match &entry.route {
            Route::Create { resource_type } => {
                let op = prepare_create(
                    require_resource(resource, resource_type)?,
                    &new_id(),
                    self.config.validation,
                )?;
                match (&entry.if_none_exist, op) {
                    (Some(condition), WriteOp::Create(resource)) => {
                        gate.check_search(resource_type)?;
                        Ok(WriteOp::CreateIfNoneExist {
                            resource,
                            query: self.conditional_query(gate, resource_type, condition, base)?,
                        })
                    }
                    (_, op) => Ok(op),
                }
            }
            Route::Update { resource_type, id } => {
                self.check_update_creates(gate, resource_type, Some(id), None)?;
                self.admit_existing(gate, resource_type, id)?;
                let resource = require_resource(resource, resource_type)?;
                prepare_update(&resource, id, entry.if_match.as_deref(), self.config.validation)
            }
            Route::Delete { resource_type, id } => {
                self.admit_existing(gate, resource_type, id)?;
                prepare_delete(resource_type, id, entry.if_match.as_deref())
            }
            Route::ConditionalUpdate { resource_type } => {
                let query = self.conditional_query(gate, resource_type, &entry.target.query, base)?;
                self.check_update_creates(gate, resource_type, None, Some(&query))?;
                self.admit_matches(gate, resource_type, &query)?;
                let mut resource = require_resource(resource, resource_type)?;
                crate::write::check_not_workflow(resource.resource_type(), resource.as_json())?;
                let id_given = resource.id().is_some();
                if !id_given {
                    resource.set_id(&new_id());
                }
                Ok(WriteOp::ConditionalUpdate {
                    resource: crate::write::prepare(&resource, self.config.validation)?,
                    query,
                    id_given,
                })
            }
            Route::ConditionalDelete { resource_type } => {
                let query = self.conditional_query(gate, resource_type, &entry.target.query, base)?;
                self.admit_matches(gate, resource_type, &query)?;
                Ok(WriteOp::ConditionalDelete { query })
            }
            Route::Patch { resource_type, id } => {
                let document = patch_document(resource.as_ref())?;
                self.patched(gate, resource_type, id, &document, entry.if_match.as_deref(), base)?
                    .into_update(id, self.config.validation)
            }
            Route::ConditionalPatch { resource_type } => {
                let document = patch_document(resource.as_ref())?;
                let id = self.conditional_patch_target(gate, resource_type, &entry.target.query, base)?;
                self.patched(gate, resource_type, &id, &document, entry.if_match.as_deref(), base)?
                    .into_update(&id, self.config.validation)
            }
            _ => Err(unsupported_entry(entry.method, &entry.target.path())),
        }
    }

    async fn batch(
        &self,
        base: &str,
        entries: Vec<Value>,
        preference: Option<ReturnPreference>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        let preference = preference.unwrap_or(ReturnPreference::Minimal);
        let written_kind = write_body_kind(preference);
        let mut results: Vec<EntryResult> = Vec::new();
        results.resize_with(entries.len(), || None);
        let siblings: HashSet<String> =
            entries.iter().filter_map(|e| e.get("fullUrl")?.as_str()).map(str::to_string).collect();
        // Every entry is parsed and authorized before any is run: a refused entry refuses the
        // whole Bundle, and nothing of it is written.
        let mut parsed = Vec::with_capacity(entries.len());
        for (index, raw) in entries.into_iter().enumerate() {
            match parse_entry(raw, base) {
                Ok(entry) => {
                    gate.authorize(&entry.route).map_err(|e| e.in_entry(index))?;
                    parsed.push((index, entry));
                }
                Err(error) => results[index] = Some((Err(error.in_entry(index)), BodyKind::Outcome)),
            }
        }
        let mut pending = Vec::new();
        let mut reads = Vec::new();
        for (index, entry) in parsed {
            if entry.method.is_read() {
                reads.push((index, entry));
                continue;
            }
            // A new registration is checked against those on file, as a create alone is.
            let duplicates = match (&entry.route, &entry.if_none_exist, &entry.resource) {
                (Route::Create { resource_type }, None, Some(resource)) if resource_type == "Patient" => {
                    match self.registration_check(resource.as_json(), gate) {
                        Ok(duplicates) => duplicates,
                        Err(error) => {
                            results[index] = Some((Err(error.in_entry(index)), BodyKind::Outcome));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            match self.prepare_batch_write(entry, &siblings, base, gate) {
                // Submitted without waiting, so the whole batch shares one commit.
                Ok(op) => pending.push((index, self.store.submit(WriteUnit::single(op)), duplicates)),
                Err(error) => results[index] = Some((Err(error.in_entry(index)), BodyKind::Outcome)),
            }
        }
        for (index, write, duplicates) in pending {
            let result = match write.wait().await {
                Ok(mut written) => match written.pop() {
                    Some(written) => {
                        let mut response = complete(base, written, preference, gate);
                        if let Some(duplicates) = duplicates {
                            with_warnings(&mut response, duplicates);
                        }
                        Ok(response)
                    }
                    None => Err(ApiError::internal("the store acknowledged a write without a result")),
                },
                Err(error) => Err(ApiError::from(error).in_entry(index)),
            };
            results[index] = Some((result, written_kind));
        }
        let mut budget = ReadBudget::default();
        for (index, entry) in reads {
            let result = budget
                .check()
                .and_then(|()| self.dispatch_read(&entry.read_request(base), gate, &entry.route))
                .map_err(|e| e.in_entry(index));
            budget.spend(&result);
            results[index] = Some((result, BodyKind::Resource));
        }
        Ok(finish_response("batch-response", results))
    }

    async fn transaction(
        &self,
        base: &str,
        entries: Vec<Value>,
        preference: Option<ReturnPreference>,
        gate: &Gate,
    ) -> Result<Response, ApiError> {
        let preference = preference.unwrap_or(ReturnPreference::Minimal);
        let mut parsed = Vec::with_capacity(entries.len());
        for (index, raw) in entries.into_iter().enumerate() {
            let entry = parse_entry(raw, base).map_err(|e| e.in_entry(index))?;
            gate.authorize(&entry.route).map_err(|e| e.in_entry(index))?;
            parsed.push(entry);
        }

        // Fix every write's identity, and map fullUrls to the identities they stand for.
        let mut identities: HashMap<String, String> = HashMap::new();
        let mut targets: HashMap<String, Method> = HashMap::new();
        let mut plans: Vec<PlannedWrite> = Vec::new();
        let mut full_urls: HashSet<&str> = HashSet::new();
        for (index, entry) in parsed.iter().enumerate() {
            if let Some(full_url) = &entry.full_url
                && !full_urls.insert(full_url)
            {
                return Err(ApiError::bad_request(
                    IssueType::Duplicate,
                    format!("fullUrl '{full_url}' appears in more than one entry (bdl-7)"),
                )
                .in_entry(index));
            }
            let plan =
                self.plan_transaction_entry(index, entry, base, gate).map_err(|e| e.in_entry(index))?;
            let Some(plan) = plan else { continue };
            let identity = format!("{}/{}", plan.resource_type, plan.id);
            if !plan.nothing && targets.insert(identity.clone(), plan.method).is_some() {
                return Err(ApiError::bad_request(
                    IssueType::Duplicate,
                    format!("{identity} is the target of more than one entry; a transaction may change a resource only once"),
                )
                .in_entry(index));
            }
            if let Some(full_url) = &entry.full_url
                && plan.method != Method::Delete
            {
                identities.insert(full_url.clone(), identity);
            }
            plans.push(plan);
        }
        // `http://example.org/fhir/Patient/1` also stands for `Patient/1`, unless that name
        // already means something else in this transaction.
        let aliases: Vec<(String, String)> = identities
            .iter()
            .filter_map(|(full_url, identity)| {
                let (_, tail) = full_url.split_once("://")?;
                let relative = relative_identity(tail)?;
                (relative != *identity).then_some((relative, identity.clone()))
            })
            .collect();
        for (relative, identity) in aliases {
            if !targets.contains_key(&relative) && !identities.contains_key(&relative) {
                identities.insert(relative, identity);
            }
        }
        // Reads run after the writes, but a read that would fail must fail the transaction
        // before anything is written.
        for (index, entry) in parsed.iter().enumerate() {
            if entry.method.is_read() {
                self.check_transaction_read(entry, &targets, base, gate).map_err(|e| e.in_entry(index))?;
            }
        }

        // Rewrite references to the bundle's own entries, then prepare in processing order.
        for plan in &plans {
            // A patch's resource is the patch; the references of what it makes are resolved
            // once it is applied.
            if plan.method == Method::Patch {
                continue;
            }
            let entry = &mut parsed[plan.index];
            if let Some(resource) = entry.resource.as_mut() {
                self.resolve_bundle_references(resource, &identities, base, gate)
                    .map_err(|e| e.in_entry(plan.index))?;
            }
        }
        let order = |method: Method| match method {
            Method::Delete => 0,
            Method::Post => 1,
            _ => 2,
        };
        let mut sequence: Vec<&PlannedWrite> =
            plans.iter().filter(|plan| plan.existing.is_none() && !plan.nothing).collect();
        sequence.sort_by_key(|plan| (order(plan.method), plan.index));
        let mut ops = Vec::with_capacity(sequence.len());
        for plan in &sequence {
            let entry = &mut parsed[plan.index];
            let op = match (plan.method, &plan.condition) {
                (Method::Delete, Some(query)) => Ok(WriteOp::ConditionalDelete { query: query.clone() }),
                (Method::Delete, None) => {
                    prepare_delete(&plan.resource_type, &plan.id, entry.if_match.as_deref())
                }
                (Method::Post, condition) => match entry.resource.take() {
                    Some(resource) => {
                        match (prepare_create(resource, &plan.id, self.config.validation), condition) {
                            (Ok(WriteOp::Create(resource)), Some(query)) => {
                                Ok(WriteOp::CreateIfNoneExist { resource, query: query.clone() })
                            }
                            (op, _) => op,
                        }
                    }
                    None => Err(ApiError::internal("planned create lost its resource")),
                },
                (Method::Patch, _) => match &plan.patch {
                    Some(document) => self
                        .patched(
                            gate,
                            &plan.resource_type,
                            &plan.id,
                            document,
                            entry.if_match.as_deref(),
                            base,
                        )
                        .and_then(|mut patched| {
                            self.resolve_bundle_references(&mut patched.resource, &identities, base, gate)?;
                            patched.into_update(&plan.id, self.config.validation)
                        }),
                    None => Err(ApiError::internal("planned patch lost its document")),
                },
                (_, condition) => match entry.resource.as_mut() {
                    Some(resource) => {
                        resource.set_id(&plan.id);
                        match (
                            prepare_update(
                                resource,
                                &plan.id,
                                entry.if_match.as_deref(),
                                self.config.validation,
                            ),
                            condition,
                        ) {
                            (Ok(WriteOp::Update { resource, .. }), Some(query)) => {
                                Ok(WriteOp::ConditionalUpdate {
                                    resource,
                                    query: query.clone(),
                                    id_given: true,
                                })
                            }
                            (op, _) => op,
                        }
                    }
                    None => Err(ApiError::internal("planned update lost its resource")),
                },
            };
            ops.push(op.map_err(|e| e.in_entry(plan.index))?);
        }

        let written = self.store.submit(WriteUnit { ops }).wait().await.map_err(|error| {
            let mut error = ApiError::from(error);
            for issue in &mut error.outcome.issues {
                issue.diagnostics = format!("transaction rolled back: {}", issue.diagnostics);
            }
            error
        })?;
        let written_kind = write_body_kind(preference);
        let mut results: Vec<EntryResult> = Vec::new();
        results.resize_with(parsed.len(), || None);
        for (plan, written) in sequence.iter().zip(written) {
            let mut response = complete(base, written, preference, gate);
            if let Some(duplicates) = &plan.duplicates {
                with_warnings(&mut response, duplicates.clone());
            }
            results[plan.index] = Some((Ok(response), written_kind));
        }
        for plan in &plans {
            if let Some(existing) = &plan.existing {
                let written = store::Written {
                    resource_type: existing.resource_type.clone(),
                    id: existing.id.clone(),
                    outcome: store::WriteOutcome::Existing {
                        version: existing.version,
                        last_updated: existing.last_updated,
                        body: existing.body.clone().unwrap_or_default(),
                    },
                };
                results[plan.index] = Some((Ok(complete(base, written, preference, gate)), written_kind));
            } else if plan.nothing {
                results[plan.index] = Some((Ok(Response::empty(204)), written_kind));
            }
        }
        let mut budget = ReadBudget::default();
        for (index, entry) in parsed.iter().enumerate() {
            if results[index].is_none() {
                let result = budget
                    .check()
                    .and_then(|()| self.dispatch_read(&entry.read_request(base), gate, &entry.route))
                    .map_err(|e| e.in_entry(index));
                budget.spend(&result);
                results[index] = Some((result, BodyKind::Resource));
            }
        }
        Ok(finish_response("transaction-response", results))
    }

    /// Checks one transaction entry and decides the identity it writes (`None` for reads).
    /// Conditional operations are resolved here, by search, so that references to their
    /// entries can be rewritten; the commit checks the condition again.
    fn plan_transaction_entry(
        &self,
        index: usize,
        entry: &EntryRequest,
        base: &str,
        gate: &Gate,
    ) -> Result<Option<PlannedWrite>, ApiError> {
        let plan = |resource_type: &str, id: String| PlannedWrite {
            index,
            method: entry.method,
            resource_type: resource_type.to_string(),
            id,
            condition: None,
            existing: None,
            nothing: false,
            patch: None,
            duplicates: None,
        };
        if entry.method.is_read() {
            return Ok(None);
        }
        match &entry.route {
            Route::Create { resource_type } => {
                let resource = entry.resource.as_ref().ok_or_else(|| missing_resource(resource_type))?;
                check_type(resource, resource_type)?;
                let Some(condition) = &entry.if_none_exist else {
                    // A new registration that probably duplicates one on file: warned about
                    // (or, refused, the whole transaction with it) as a create alone is.
                    let duplicates = if resource_type == "Patient" {
                        self.registration_check(resource.as_json(), gate)?
                    } else {
                        None
                    };
                    return Ok(Some(PlannedWrite { duplicates, ..plan(resource_type, new_id()) }));
                };
                gate.check_search(resource_type)?;
                let query = self.conditional_query(gate, resource_type, condition, base)?;
                let mut matches =
                    self.store.search(&store::SearchQuery { count: 2, ..query.clone() })?.matches;
                match matches.len() {
                    0 => Ok(Some(PlannedWrite { condition: Some(query), ..plan(resource_type, new_id()) })),
                    1 => {
                        let existing = matches.remove(0);
                        Ok(Some(PlannedWrite {
                            existing: Some(existing.clone()),
                            ..plan(resource_type, existing.id)
                        }))
                    }
                    _ => Err(ApiError::new(
                        412,
                        IssueType::MultipleMatches,
                        format!("ifNoneExist '{condition}' matches more than one {resource_type}"),
                    )),
                }
            }
            Route::Update { resource_type, id } => {
                let resource = entry.resource.as_ref().ok_or_else(|| missing_resource(resource_type))?;
                check_type(resource, resource_type)?;
                self.check_update_creates(gate, resource_type, Some(id), None)?;
                self.admit_existing(gate, resource_type, id)?;
                Ok(Some(plan(resource_type, id.clone())))
            }
            Route::Delete { resource_type, id } => {
                self.admit_existing(gate, resource_type, id)?;
                Ok(Some(plan(resource_type, id.clone())))
            }
            Route::ConditionalUpdate { resource_type } => {
                let resource = entry.resource.as_ref().ok_or_else(|| missing_resource(resource_type))?;
                check_type(resource, resource_type)?;
                let query = self.conditional_query(gate, resource_type, &entry.target.query, base)?;
                self.check_update_creates(gate, resource_type, None, Some(&query))?;
                let matches = self.store.search(&store::SearchQuery { count: 2, ..query.clone() })?.matches;
                let id = match (matches.as_slice(), resource.id()) {
                    ([], Some(id)) => id.to_string(),
                    ([], None) => new_id(),
                    ([found], Some(id)) if found.id != id => {
                        return Err(ApiError::bad_request(
                            IssueType::Invalid,
                            format!(
                                "the id '{id}' differs from {resource_type}/{} that the condition matches",
                                found.id
                            ),
                        ));
                    }
                    ([found], _) => {
                        self.admit_existing(gate, resource_type, &found.id)?;
                        found.id.clone()
                    }
                    _ => {
                        return Err(ApiError::new(
                            412,
                            IssueType::MultipleMatches,
                            format!(
                                "'{resource_type}?{}' matches more than one resource",
                                entry.target.query
                            ),
                        ));
                    }
                };
                Ok(Some(PlannedWrite { condition: Some(query), ..plan(resource_type, id) }))
            }
            Route::ConditionalDelete { resource_type } => {
                let query = self.conditional_query(gate, resource_type, &entry.target.query, base)?;
                let matches = self.store.search(&store::SearchQuery { count: 2, ..query.clone() })?.matches;
                match matches.as_slice() {
                    [] => Ok(Some(PlannedWrite { nothing: true, ..plan(resource_type, String::new()) })),
                    [found] => {
                        self.admit_existing(gate, resource_type, &found.id)?;
                        Ok(Some(PlannedWrite {
                            condition: Some(query),
                            ..plan(resource_type, found.id.clone())
                        }))
                    }
                    _ => Err(ApiError::new(
                        412,
                        IssueType::MultipleMatches,
                        format!("'{resource_type}?{}' matches more than one resource", entry.target.query),
                    )),
                }
            }
            Route::Patch { resource_type, id } => {
                let patch = Some(patch_document(entry.resource.as_ref())?);
                self.admit_existing(gate, resource_type, id)?;
                Ok(Some(PlannedWrite { patch, ..plan(resource_type, id.clone()) }))
            }
            Route::ConditionalPatch { resource_type } => {
                let patch = Some(patch_document(entry.resource.as_ref())?);
                let id = self.conditional_patch_target(gate, resource_type, &entry.target.query, base)?;
                Ok(Some(PlannedWrite { patch, ..plan(resource_type, id) }))
            }
            _ => Err(unsupported_entry(entry.method, &entry.target.path())),
        }
    }
}

impl Api {
    /// Fails now if a GET entry of a transaction could not succeed after the commit: a read
    /// of something neither existing nor written here, a read of something deleted here, or
    /// a request this server does not support.
    fn check_transaction_read(
        &self,
        entry: &EntryRequest,
        targets: &HashMap<String, Method>,
        base: &str,
        gate: &Gate,
    ) -> Result<(), ApiError> {
        let identity = match &entry.route {
            // History and metadata always answer; the route parser checked their form.
            Route::History(_) | Route::Capabilities => return Ok(()),
            Route::Read { resource_type, id } | Route::Vread { resource_type, id, .. } => {
                format!("{resource_type}/{id}")
            }
            route => return self.dispatch_read(&entry.read_request(base), gate, route).map(|_| ()),
        };
        match targets.get(&identity) {
            Some(Method::Delete) => Err(ApiError::new(
                410,
                IssueType::Deleted,
                format!("{identity} is deleted by this transaction and cannot be read in it"),
            )),
            Some(_) if matches!(entry.route, Route::Read { .. }) => Ok(()),
            _ => self.dispatch_read(&entry.read_request(base), gate, &entry.route).map(|_| ()),
        }
    }
}

/// `host/fhir/Patient/1` -> `Patient/1` when the last two segments are a type and an id.
fn relative_identity(url_tail: &str) -> Option<String> {
    let mut parts = url_tail.rsplit('/');
    let id = parts.next()?;
    let resource_type = parts.next()?;
    (fhir::definitions().is_resource_type(resource_type) && fhir::is_valid_id(id))
        .then(|| format!("{resource_type}/{id}"))
}

/// Points references at the identities the transaction assigns, and refuses references that
/// can only be resolved by features not available (conditional references) or that name a
/// `urn:uuid:` no entry carries.
impl Api {
    /// Points references at the identities the transaction assigns, resolves conditional
    /// references (`Patient?identifier=x`) by search (exactly one match), and refuses a
    /// `urn:uuid:` no entry carries.
    fn resolve_bundle_references(
        &self,
        resource: &mut Resource,
        identities: &HashMap<String, String>,
        base: &str,
        gate: &Gate,
    ) -> Result<(), ApiError> {
        resource.rewrite_references(&mut |reference| identities.get(reference).cloned());
        resource.rewrite_narratives(&mut |div| rewrite_urns_in_text(div, identities));
        let mut resolved: HashMap<String, String> = HashMap::new();
        for site in resource.references() {
            if site.reference.starts_with("urn:uuid:") {
                return Err(ApiError::at(
                    400,
                    IssueType::NotFound,
                    format!(
                        "reference '{}' matches the fullUrl of no entry in the transaction",
                        site.reference
                    ),
                    site.path.clone(),
                ));
            }
            if let Ok(fhir::ReferenceTarget::Conditional { resource_type, query }) =
                fhir::parse_reference(site.reference)
            {
                let matches = self.resolve_condition(gate, resource_type, query, base).map_err(|mut e| {
                    for issue in &mut e.outcome.issues {
                        issue.expression = vec![site.path.clone()];
                    }
                    e
                })?;
                match matches.as_slice() {
                    [found] => {
                        resolved.insert(site.reference.to_string(), format!("{resource_type}/{}", found.id));
                    }
                    [] => {
                        return Err(ApiError::at(
                            400,
                            IssueType::NotFound,
                            format!("conditional reference '{}' matches no resource", site.reference),
                            site.path.clone(),
                        ));
                    }
                    _ => {
                        return Err(ApiError::at(
                            412,
                            IssueType::MultipleMatches,
                            format!(
                                "conditional reference '{}' matches more than one resource",
                                site.reference
                            ),
                            site.path.clone(),
                        ));
                    }
                }
            }
        }
        if !resolved.is_empty() {
            resource.rewrite_references(&mut |reference| resolved.get(reference).cloned());
        }
        Ok(())
    }
}

fn require_resource(resource: Option<Resource>, resource_type: &str) -> Result<Resource, ApiError> {
    let resource = resource.ok_or_else(|| missing_resource(resource_type))?;
    check_type(&resource, resource_type)?;
    Ok(resource)
}

fn missing_resource(resource_type: &str) -> ApiError {
    ApiError::at(400, IssueType::Required, format!("the entry needs a {resource_type} resource"), "resource")
}

fn unsupported_entry(method: Method, path: &str) -> ApiError {
    ApiError::at(
        400,
        IssueType::NotSupported,
        format!("{method:?} {path} is not a supported Bundle request"),
        "request",
    )
}

/// The patch a PATCH entry carries as its resource.
fn patch_document(resource: Option<&Resource>) -> Result<PatchDocument, ApiError> {
    match resource {
        Some(resource) => PatchDocument::from_entry(resource),
        None => Err(ApiError::at(
            400,
            IssueType::Required,
            "a PATCH entry needs its patch as the resource: a Binary (contentType application/json-patch+json, \
             the JSON Patch in data) or a Parameters resource (FHIRPath Patch)",
            "resource",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrative_urns_are_rewritten_in_place() {
        let mut identities = HashMap::new();
        identities.insert("urn:uuid:a".to_string(), "Patient/1".to_string());
        let div = r#"<div><a href="urn:uuid:a">x</a> urn:uuid:b</div>"#;
        assert_eq!(
            rewrite_urns_in_text(div, &identities).unwrap(),
            r#"<div><a href="Patient/1">x</a> urn:uuid:b</div>"#
        );
        assert_eq!(rewrite_urns_in_text("<div>none</div>", &identities), None);
    }

    #[test]
    fn relative_identity_of_absolute_urls() {
        assert_eq!(relative_identity("example.org/fhir/Patient/1"), Some("Patient/1".into()));
        assert_eq!(relative_identity("example.org/fhir/Nope/1"), None);
    }
}
