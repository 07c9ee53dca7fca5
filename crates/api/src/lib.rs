//! The FHIR R4 RESTful API over a [`Store`], independent of any HTTP library.
//!
//! A [`Request`] (method, path below the base, query, the headers FHIR gives meaning to, body)
//! goes in; a [`Response`] (status, FHIR headers, JSON body) comes out. The HTTP server and
//! the entries of batch/transaction Bundles both go through here, so an interaction behaves
//! the same whichever way it arrives.
//!
//! Writes are two-phase: *prepare* (parse, check, serialize: on the caller's thread) and
//! *commit* (the store's single writer). Batches prepare every entry first and submit them
//! together, so they share one commit.

mod access;
mod audit_trail;
mod bulk_import;
mod bundle;
mod capabilities;
mod error;
mod export;
mod headers;
mod history;
pub mod import;
mod json_writer;
mod operations;
mod patch;
mod read;
mod resolve;
mod search;
mod v2;
mod write;

use std::sync::Arc;

use fhir::rest::{Level, Route, Target};
use store::Store;

pub use access::{Audited, Caller};
pub use audit_trail::AuditTrail;
pub use error::ApiError;
pub use export::valid_job_id;
pub use fhir::rest::Method;
pub use headers::{Prefer, ReturnPreference};
pub use operations::matching::DuplicateCheck;
pub use patch::{JSON_PATCH, MERGE_PATCH};
pub use resolve::StoreResolver;
pub use typed_arena::Arena;
pub use v2::{V2Config, V2Receipt};
pub use write::Validation;

/// A FHIR RESTful request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: Option<Method>,
    /// The service base URL the client used (`http://host:8080/fhir`), for links and
    /// `Location`.
    pub base: String,
    /// The path below the base, without leading or trailing `/` (`Patient/1/_history/2`).
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_exist: Option<String>,
    pub prefer: Option<String>,
    /// The `Accept` header: FHIR JSON for everything but a view's rows, which `$run` gives
    /// in the format it names when `_format` does not.
    pub accept: Option<String>,
    /// The body's media type, lower case and without parameters (`application/fhir+json`,
    /// `application/json-patch+json`); `None` when not said. A PATCH body is read by it.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Who is asking. The HTTP server sets it on every request it serves, and the access
    /// policy then decides what runs and what is returned; `None` is the embedding program
    /// itself (the command line, import, tests), which sees everything.
    pub caller: Option<Arc<Caller>>,
}

/// A FHIR RESTful response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub etag: Option<String>,
    /// `meta.lastUpdated` of what the response is about, in ms since the epoch (sent as
    /// `Last-Modified`).
    pub last_modified: Option<i64>,
    pub location: Option<String>,
    /// The body, if any: FHIR JSON unless `content_type` says otherwise.
    pub body: Option<Vec<u8>>,
    /// The media type of a body that is not FHIR JSON (a view's CSV or Parquet rows).
    pub content_type: Option<&'static str>,
    /// An OperationOutcome accompanying a successful write: the issues a resource was stored
    /// with under `--validation warn` (a Bundle entry's `response.outcome`).
    pub outcome: Option<Vec<u8>>,
    /// Further response headers an interaction defines (`X-Progress` and `Retry-After` of a
    /// bulk export's status).
    pub headers: Vec<(&'static str, String)>,
    /// What the audit trail records of the request: the interaction and the patients whose
    /// records the answer carried.
    pub audit: Audited,
}

impl Response {
    /// A response with a JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            etag: None,
            last_modified: None,
            location: None,
            body: Some(body),
            content_type: None,
            outcome: None,
            headers: Vec::new(),
            audit: Audited::default(),
        }
    }

    fn empty(status: u16) -> Self {
        Response {
            status,
            etag: None,
            last_modified: None,
            location: None,
            body: None,
            content_type: None,
            outcome: None,
            headers: Vec::new(),
            audit: Audited::default(),
        }
    }

    /// The body as UTF-8 text (for logs and tests).
    pub fn body_text(&self) -> &str {
        self.body.as_deref().and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }
}

/// Limits and defaults of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Page size when a client gives no `_count`.
    pub default_page_size: usize,
    /// Largest page a client may ask for.
    pub max_page_size: usize,
    /// Most entries accepted in one batch or transaction Bundle.
    pub max_bundle_entries: usize,
    /// Where saved SQL on FHIR views are (`NAME.json`), besides the built-in ones.
    pub views_dir: Option<std::path::PathBuf>,
    /// Where saved syndrome definitions are (`NAME.json`), besides the built-in ones.
    pub syndromes_dir: Option<std::path::PathBuf>,
    /// The views' tables `$sql` queries (`DIR/analytics.sqlite`, shared with `chartroom sql`);
    /// `None`: no `$sql`.
    pub analytics_tables: Option<std::path::PathBuf>,
    /// Where bulk export jobs write their files; `None`: no bulk export.
    pub export_dir: Option<std::path::PathBuf>,
    /// How HL7 v2 messages are mapped and acknowledged (`$hl7v2`, the MLLP listener).
    pub v2: V2Config,
    /// Where bulk import jobs keep their state and downloads; `None`: no `$import`.
    pub import_dir: Option<std::path::PathBuf>,
    /// The directories `$import` may read `file://` inputs from.
    pub import_roots: Vec<std::path::PathBuf>,
    /// The record's de-identification key (`DIR/deid.key`, made on first use); `None`: no
    /// date-shifted extracts.
    pub deid_key: Option<std::path::PathBuf>,
    /// Whether the server requires a bearer token, which a bulk export's manifest says to
    /// its clients (`requiresAccessToken`).
    pub requires_access_token: bool,
    /// Whether writes are validated against the R4 definitions, and what an invalid one
    /// gets: refused (`strict`, the default), stored with its issues reported (`warn`), or
    /// stored unchecked (`off`).
    pub validation: Validation,
    /// Matches a search counts for `Bundle.total` when the client does not say `_total`:
    /// beyond it the total is left out. The store counts by default only where it is cheap
    /// (a small driving set, or no filter), so a total never costs a search more than its
    /// page (BENCHMARKS.md, search at a million resources).
    pub total_bound: usize,
    /// What a create of a Patient that probably duplicates one on file gets: created with a
    /// warning (the default), refused with 409, or no check.
    pub duplicate_check: DuplicateCheck,
    /// The review queue's decisions (`DIR/mpi/decisions.ndjson`): pairs decided to be
    /// different people are not offered as matches.
    pub mpi_decisions: Option<std::path::PathBuf>,
    /// The readmission model `chartroom risk train` keeps (`DIR/risk/readmission-model.json`),
    /// which `$high-risk` ranks patients by.
    pub readmission_model: Option<std::path::PathBuf>,
    /// The department's fees for releases of information (`DIR/roi-fees.json`).
    pub roi_fees: workflow::roi::fee::FeePolicy,
    /// The authorization server's endpoints the CapabilityStatement advertises
    /// (`rest.security`, SMART's oauth-uris extension); `None` when the server needs no token.
    pub oauth: Option<OAuthUris>,
}

/// Where SMART clients obtain tokens: absolute URLs (an outside authorization server) or
/// paths from the server's root (the built-in one: `/oauth/token`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthUris {
    pub authorize: String,
    pub token: String,
    pub introspect: Option<String>,
    pub revoke: Option<String>,
}

impl OAuthUris {
    /// `uri` made absolute against the FHIR base `base` (whose root is `base` without its
    /// final `/fhir`).
    pub fn resolve(base: &str, uri: &str) -> String {
        if uri.starts_with('/') {
            format!("{}{uri}", base.strip_suffix("/fhir").unwrap_or(base))
        } else {
            uri.to_string()
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_page_size: 50,
            max_page_size: 1000,
            max_bundle_entries: 100_000,
            views_dir: None,
            syndromes_dir: None,
            analytics_tables: None,
            export_dir: None,
            deid_key: None,
            import_dir: None,
            import_roots: Vec::new(),
            v2: V2Config::default(),
            requires_access_token: true,
            validation: Validation::Enforce,
            total_bound: 10_000,
            oauth: None,
            duplicate_check: DuplicateCheck::Warn,
            mpi_decisions: None,
            readmission_model: None,
            roi_fees: workflow::roi::fee::FeePolicy::default(),
        }
    }
}

/// The FHIR API over a store. Cloning shares the store and the export jobs (a bulk export
/// runs on its own thread with a clone).
#[derive(Clone)]
pub struct Api {
    store: Arc<dyn Store>,
    config: ApiConfig,
    started: String,
    exports: Arc<export::Exports>,
    imports: Arc<bulk_import::Imports>,
    consents: Arc<access::ConsentCache>,
    /// The audit trail AuditEvents are read from (it is not in the store), when there is one.
    trail: Option<Arc<AuditTrail>>,
    /// Every Patient by blocking key, for `$match` and the check at registration.
    patient_index: Arc<operations::matching::PatientIndex>,
    /// The time the workflows' legal clocks read (the system's; tests move their own).
    clock: Arc<dyn workflow::Clock>,
}

impl Api {
    /// An API serving `store`.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        let exports = Arc::new(export::Exports::new(config.export_dir.clone()));
        Api {
            store,
            config,
            started: fhir::DateTime::now_utc().to_string(),
            exports,
            imports: Arc::default(),
            consents: Arc::default(),
            trail: None,
            patient_index: Arc::default(),
            clock: Arc::new(workflow::SystemClock),
        }
    }

    /// Reads the workflows' time from `clock` (a test's, to move the legal clocks).
    pub fn with_clock(mut self, clock: Arc<dyn workflow::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Answers AuditEvent reads and searches, and `Patient/[id]/$disclosures`, from `trail`.
    pub fn with_audit_trail(mut self, trail: Arc<AuditTrail>) -> Self {
        self.trail = Some(trail);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether the one policy lets `identity` take the route of `method` on `path` (with its
    /// query): what the workbench asks before it shows an area or a link, so that it offers
    /// only what the API would do.
    pub fn permits(identity: &privacy::Identity, method: Method, path: &str, query: &str) -> bool {
        Target::from_path(path, query).and_then(|target| Route::parse(method, &target)).is_ok_and(|route| {
            privacy::policy::authorize(identity, &route, &crate::operations::registry::Registry).is_ok()
        })
    }

    /// Handles one request: parses its route, asks the access policy, runs it, and says
    /// what the audit trail is to record of it.
    pub async fn handle(&self, request: &Request) -> Response {
        let pretty = query_pairs(&request.query).any(|(k, v)| k == "_pretty" && v == "true");
        let method = request.method.unwrap_or(Method::Get);
        let route = Target::from_path(&request.path, &request.query)
            .and_then(|target| Route::parse(method, &target))
            .map_err(ApiError::from);
        let (mut response, audited) = match route {
            Err(error) => {
                let audited = Audited::unrouted(method, &request.path);
                (error.into_response(), audited)
            }
            Ok(route) => {
                let mut audited = Audited::of(&route);
                let response = match access::Gate::open(self, request.caller.clone(), &route) {
                    Err(error) => error.into_response(),
                    Ok(gate) => {
                        let response = match self.dispatch(request, &gate, &route).await {
                            Ok(response) => response,
                            Err(error) => error.into_response(),
                        };
                        audited.patients = gate.touched();
                        audited.written = gate.written();
                        audited.disclosure = gate.disclosure();
                        if let Some(code) = gate.interaction() {
                            audited.interaction = code;
                        }
                        response
                    }
                };
                if let Some(("Patient", id)) = route.instance() {
                    audited.add_patient(id);
                }
                if let Route::Search { compartment: Some((compartment, id)), .. } = &route
                    && compartment == "Patient"
                {
                    audited.add_patient(id);
                }
                self.consents.forget_after(&route);
                (response, audited)
            }
        };
        response.audit = audited;
        if pretty && let Some(body) = response.body.take() {
            response.body = Some(pretty_print(body));
        }
        response
    }

    async fn dispatch(
        &self,
        request: &Request,
        gate: &access::Gate,
        route: &Route,
    ) -> Result<Response, ApiError> {
        match route {
            Route::Bundle => self.bundle(request, gate).await,
            Route::Create { resource_type } => self.create(request, gate, resource_type).await,
            Route::Update { resource_type, id } => self.update(request, gate, resource_type, id).await,
            Route::ConditionalUpdate { resource_type } => {
                self.conditional_update(request, gate, resource_type).await
            }
            Route::Delete { resource_type, id } => self.delete(request, gate, resource_type, id).await,
            Route::ConditionalDelete { resource_type } => {
                self.conditional_delete(request, gate, resource_type).await
            }
            Route::Patch { resource_type, id } => self.patch(request, gate, resource_type, Some(id)).await,
            Route::ConditionalPatch { resource_type } => self.patch(request, gate, resource_type, None).await,
            Route::ExportStatus { job, cancel: true } => {
                gate.follow_export(self.export_owner(job).as_deref())?;
                self.export_delete(job)
            }
            Route::Operation { name, level, method } => {
                self.operation_committing(request, gate, *method, name, level).await
            }
            _ => self.dispatch_read(request, gate, route),
        }
    }

    /// The routes that do not wait for the writer (reads, searches, operations): they run
    /// synchronously, and a Bundle's GET entries come here too.
    fn dispatch_read(
        &self,
        request: &Request,
        gate: &access::Gate,
        route: &Route,
    ) -> Result<Response, ApiError> {
        if route.resource_type() == Some("AuditEvent")
            && let Some(trail) = &self.trail
        {
            return trail.answer(request, route, gate);
        }
        match route {
            Route::Capabilities => Ok(self.capabilities(request)),
            Route::SearchSystem => Err(ApiError::not_supported(
                "search across all resource types is not supported; search a resource type",
            )),
            Route::ExportStatus { job, .. } => {
                gate.follow_export(self.export_owner(job).as_deref())?;
                self.export_status(job)
            }
            Route::ExportFile { job, file } => {
                gate.follow_export(self.export_owner(job).as_deref())?;
                let response = self.export_file(job, file)?;
                for patient in self.export_file_patients(job, file) {
                    gate.touch(&patient);
                }
                Ok(response)
            }
            Route::ViewDefinitions => Ok(self.list_views()),
            Route::ViewDefinition { name } => self.read_view(name),
            Route::History(level) => {
                let scope = match level {
                    Level::System => store::HistoryScope::System,
                    Level::Type(t) => store::HistoryScope::Type(t.clone()),
                    Level::Instance(t, id) => {
                        store::HistoryScope::Instance { resource_type: t.clone(), id: id.clone() }
                    }
                };
                self.history(request, gate, scope)
            }
            Route::Search { resource_type, compartment, form } => {
                let mut pairs = decoded_pairs(&request.query);
                if *form {
                    // Parameters in the form body and the URL both count.
                    pairs.extend(
                        form_urlencoded::parse(&request.body).map(|(n, v)| (n.into_owned(), v.into_owned())),
                    );
                }
                let path = match compartment {
                    Some((t, id)) => format!("{t}/{id}/{resource_type}"),
                    None => resource_type.clone(),
                };
                let compartment = compartment.as_ref().map(|(t, id)| (t.as_str(), id.as_str()));
                self.search(request, gate, resource_type, &pairs, compartment, &path)
            }
            // The operations' definitions come from the registry (stored ones from the store).
            Route::Read { resource_type, id }
                if resource_type == "OperationDefinition" && operations::registry::find(id).is_some() =>
            {
                let operation =
                    operations::registry::find(id).ok_or_else(|| ApiError::internal("lost operation"))?;
                Ok(Response::json(
                    200,
                    serde_json::to_vec(&operation.definition_resource(&request.base)).unwrap_or_default(),
                ))
            }
            Route::Read { resource_type, id } => {
                let mut response = self.read(request, gate, resource_type, id)?;
                if response.status == 200 {
                    search::shape_read(&mut response, resource_type, &request.query)?;
                }
                Ok(response)
            }
            Route::Vread { resource_type, id, version } => {
                self.vread(request, gate, resource_type, id, version)
            }
            Route::Operation { name, level, method } => self.operation(request, gate, *method, name, level),
            Route::Bundle
            | Route::Create { .. }
            | Route::Update { .. }
            | Route::ConditionalUpdate { .. }
            | Route::Patch { .. }
            | Route::ConditionalPatch { .. }
            | Route::Delete { .. }
            | Route::ConditionalDelete { .. } => Err(ApiError::internal("a write reached the read path")),
        }
    }
}

impl From<fhir::rest::RouteError> for ApiError {
    fn from(error: fhir::rest::RouteError) -> Self {
        match error.expression {
            Some(expression) => ApiError::at(error.status, error.code, error.message, expression),
            None => ApiError::new(error.status, error.code, error.message),
        }
    }
}

/// Decoded `name=value` pairs, owned.
fn decoded_pairs(query: &str) -> Vec<(String, String)> {
    query_pairs(query).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
}

/// Decoded `name=value` pairs of a query string.
pub(crate) fn query_pairs(
    query: &str,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

fn pretty_print(body: Vec<u8>) -> Vec<u8> {
    match fhir::parse_json(&body) {
        Ok(value) => serde_json::to_vec_pretty(&value).unwrap_or(body),
        Err(_) => body,
    }
}
