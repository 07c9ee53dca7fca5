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

pub mod analytics;
mod bundle;
mod capabilities;
mod error;
mod export;
mod headers;
mod history;
pub mod import;
mod json_writer;
mod operations;
mod read;
mod resolve;
mod search;
mod write;

use std::sync::Arc;

use fhir::definitions;
use store::Store;

pub use error::ApiError;
pub use headers::{Prefer, ReturnPreference};
pub use resolve::StoreResolver;
pub use typed_arena::Arena;
pub use write::Validation;

/// An HTTP method, as far as FHIR is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Other,
}

impl Method {
    /// Parses an HTTP method name.
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

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
    pub body: Vec<u8>,
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
        }
    }

    fn empty(status: u16) -> Self {
        Response { status, etag: None, last_modified: None, location: None, body: None, content_type: None }
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
    /// Where bulk export jobs write their files; `None`: no bulk export.
    pub export_dir: Option<std::path::PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_page_size: 50,
            max_page_size: 1000,
            max_bundle_entries: 100_000,
            views_dir: None,
            export_dir: None,
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
}

impl Api {
    /// An API serving `store`.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        let exports = Arc::new(export::Exports::new(config.export_dir.clone()));
        Api { store, config, started: fhir::DateTime::now_utc().to_string(), exports }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Handles one request.
    pub async fn handle(&self, request: &Request) -> Response {
        let pretty = query_pairs(&request.query).any(|(k, v)| k == "_pretty" && v == "true");
        let mut response = match self.route(request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        if pretty && let Some(body) = response.body.take() {
            response.body = Some(pretty_print(body));
        }
        response
    }

    async fn route(&self, request: &Request) -> Result<Response, ApiError> {
        let method = request.method.unwrap_or(Method::Get);
        if is_read(method) {
            return self.route_read(request);
        }
        let segments = path_segments(&request.path);
        if let Some(invocation) = operations::Invocation::parse(&segments) {
            return self.operation(request, method, invocation);
        }
        match segments.as_slice() {
            [] if method == Method::Post => self.bundle(request).await,
            [] => Err(ApiError::method_not_allowed(method, "the service base", "POST (batch/transaction)")),
            ["$export-status", job] if method == Method::Delete => self.export_delete(job),
            [first, ..] if first.starts_with('$') || first.starts_with('_') || *first == "metadata" => {
                Err(ApiError::method_not_allowed(method, first, "GET"))
            }
            [resource_type, rest @ ..] => {
                let resource_type = known_type(resource_type)?;
                match (rest, method) {
                    ([], Method::Post) => self.create(request, resource_type).await,
                    ([], Method::Put) if !request.query.is_empty() => {
                        self.conditional_update(request, resource_type).await
                    }
                    ([], Method::Delete) if !request.query.is_empty() => {
                        self.conditional_delete(request, resource_type).await
                    }
                    (["_search"], Method::Post) => {
                        // Parameters in the form body and the URL both count.
                        let mut pairs = decoded_pairs(&request.query);
                        pairs.extend(
                            form_urlencoded::parse(&request.body)
                                .map(|(n, v)| (n.into_owned(), v.into_owned())),
                        );
                        self.search(request, resource_type, &pairs, None, resource_type)
                    }
                    ([], _) => Err(ApiError::method_not_allowed(
                        method,
                        resource_type,
                        "GET, POST (and PUT or DELETE with search parameters)",
                    )),
                    ([id], Method::Put) => {
                        self.update(request, resource_type, valid_id(resource_type, id)?).await
                    }
                    ([id], Method::Delete) => {
                        self.delete(request, resource_type, valid_id(resource_type, id)?).await
                    }
                    ([_], Method::Patch) => Err(ApiError::not_supported(
                        "PATCH is not supported; send the whole resource with PUT",
                    )),
                    ([_], _) => Err(ApiError::method_not_allowed(method, "a resource", "GET, PUT, DELETE")),
                    ([_, operation, ..], _) if operation.starts_with('$') => {
                        Err(ApiError::not_supported(format!("operation {operation} is not supported")))
                    }
                    _ => Err(ApiError::method_not_allowed(method, &request.path, "GET")),
                }
            }
        }
    }

    /// Reads (GET/HEAD) never wait for the writer, so they run synchronously; batch and
    /// transaction Bundles reuse this for their GET entries.
    fn route_read(&self, request: &Request) -> Result<Response, ApiError> {
        let segments = path_segments(&request.path);
        if let Some(invocation) = operations::Invocation::parse(&segments) {
            return self.operation(request, request.method.unwrap_or(Method::Get), invocation);
        }
        match segments.as_slice() {
            [] => Err(ApiError::not_supported(
                "search across all resource types is not supported; search a resource type",
            )),
            ["metadata"] => Ok(self.capabilities(request)),
            ["$export-status", job] => self.export_status(job),
            ["$export-file", job, name] => self.export_file(job, name),
            ["ViewDefinition"] => Ok(self.list_views()),
            ["ViewDefinition", name] => self.read_view(name),
            ["_history"] => self.history(request, store::HistoryScope::System),
            [resource_type, rest @ ..] => {
                let resource_type = known_type(resource_type)?;
                match rest {
                    [] => self.search(
                        request,
                        resource_type,
                        &decoded_pairs(&request.query),
                        None,
                        resource_type,
                    ),
                    [id, "$everything"] if resource_type == "Patient" => {
                        self.everything(request, valid_id(resource_type, id)?)
                    }
                    [id, compartment_type] if fhir::definitions().is_resource_type(compartment_type) => {
                        let id = valid_id(resource_type, id)?;
                        let path = format!("{resource_type}/{id}/{compartment_type}");
                        let pairs = decoded_pairs(&request.query);
                        self.search(request, compartment_type, &pairs, Some((resource_type, id)), &path)
                    }
                    ["_history"] => {
                        self.history(request, store::HistoryScope::Type(resource_type.to_string()))
                    }
                    [id] => {
                        let mut response = self.read(request, resource_type, valid_id(resource_type, id)?)?;
                        if response.status == 200 {
                            search::shape_read(&mut response, resource_type, &request.query)?;
                        }
                        Ok(response)
                    }
                    [id, "_history"] => {
                        let id = valid_id(resource_type, id)?;
                        let scope = store::HistoryScope::Instance {
                            resource_type: resource_type.to_string(),
                            id: id.to_string(),
                        };
                        self.history(request, scope)
                    }
                    [id, "_history", version] => {
                        self.vread(request, resource_type, valid_id(resource_type, id)?, version)
                    }
                    [_, operation, ..] if operation.starts_with('$') => {
                        Err(ApiError::not_supported(format!("operation {operation} is not supported")))
                    }
                    _ => Err(ApiError::not_found(format!("no FHIR endpoint at '{}'", request.path))),
                }
            }
        }
    }
}

/// Decoded `name=value` pairs, owned.
fn decoded_pairs(query: &str) -> Vec<(String, String)> {
    query_pairs(query).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
}

fn path_segments(path: &str) -> Vec<&str> {
    if path.is_empty() { Vec::new() } else { path.split('/').collect() }
}

fn is_read(method: Method) -> bool {
    matches!(method, Method::Get | Method::Head)
}

fn known_type(name: &str) -> Result<&str, ApiError> {
    if definitions().is_resource_type(name) {
        Ok(name)
    } else if name.starts_with('$') {
        Err(ApiError::not_supported(format!("operation {name} is not supported")))
    } else {
        Err(ApiError::unknown_type(name))
    }
}

fn valid_id<'a>(resource_type: &str, id: &'a str) -> Result<&'a str, ApiError> {
    if fhir::is_valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::from(fhir::Error::InvalidId {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
        }))
    }
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
