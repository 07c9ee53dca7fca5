//! The RESTful interactions of FHIR R4 as typed routes: what a request's method and URL ask
//! for, parsed once.
//!
//! The HTTP server, the entries of batch and transaction Bundles and the access policy all see
//! a request through [`Route::parse`], so what the policy checks is exactly what the API runs:
//! an entry's `request.url` (relative, absolute on this server's base, with odd case, doubled
//! slashes or percent-encoded segments) gives the same route as the same request sent alone.
//!
//! Invariants:
//! - Segments are split on `/` first and percent-decoded after, so `%2F` never makes a segment.
//! - Every type segment names an R4 resource type (or `ViewDefinition`, SQL on FHIR's) and
//!   every id segment is a valid id, or parsing fails: no route carries an unchecked name.
//! - An absolute URL is accepted only on the base the request arrived at; anything else is an
//!   error, never a route of some other shape.

use std::fmt;

use crate::IssueType;
use crate::definitions::definitions;
use crate::resource::is_valid_id;

/// An HTTP method, as far as FHIR is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Parses an HTTP method name (case-sensitive, as HTTP methods are).
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

    /// Whether the method only reads.
    pub fn is_read(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// Where an operation, a history or a search is invoked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    System,
    Type(String),
    Instance(String, String),
}

impl Level {
    /// The resource type, at type and instance level.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Level::System => None,
            Level::Type(t) | Level::Instance(t, _) => Some(t),
        }
    }

    /// The instance id, at instance level.
    pub fn id(&self) -> Option<&str> {
        match self {
            Level::Instance(_, id) => Some(id),
            _ => None,
        }
    }
}

/// The SQL on FHIR view definition type: not an R4 resource type, served beside them.
pub const VIEW_DEFINITION: &str = "ViewDefinition";

/// One RESTful interaction, with the names it is about checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET metadata`.
    Capabilities,
    /// `GET [type]/[id]`.
    Read { resource_type: String, id: String },
    /// `GET [type]/[id]/_history/[vid]`.
    Vread { resource_type: String, id: String, version: String },
    /// `GET [type]`, `POST [type]/_search` (`form`), or the compartment search
    /// `GET [compartment-type]/[id]/[type]`.
    Search { resource_type: String, compartment: Option<(String, String)>, form: bool },
    /// `GET [base]?...`: a search of every type (not supported, but named).
    SearchSystem,
    /// `GET _history`, `GET [type]/_history`, `GET [type]/[id]/_history`.
    History(Level),
    /// `POST [type]`.
    Create { resource_type: String },
    /// `PUT [type]/[id]`.
    Update { resource_type: String, id: String },
    /// `PUT [type]?search`.
    ConditionalUpdate { resource_type: String },
    /// `PATCH [type]/[id]`.
    Patch { resource_type: String, id: String },
    /// `PATCH [type]?search`.
    ConditionalPatch { resource_type: String },
    /// `DELETE [type]/[id]`.
    Delete { resource_type: String, id: String },
    /// `DELETE [type]?search`.
    ConditionalDelete { resource_type: String },
    /// `$name` at system, type or instance level (`Patient/[id]/$everything` included).
    Operation { name: String, level: Level, method: Method },
    /// `GET $export-status/[job]` (and `DELETE` to cancel).
    ExportStatus { job: String, cancel: bool },
    /// `GET $export-file/[job]/[file]`.
    ExportFile { job: String, file: String },
    /// `POST [base]` with a batch or transaction Bundle.
    Bundle,
    /// `GET ViewDefinition`: the views this server runs.
    ViewDefinitions,
    /// `GET ViewDefinition/[name]`.
    ViewDefinition { name: String },
}

/// Why a request names no route: the status and issue to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    pub status: u16,
    pub code: IssueType,
    pub message: String,
    /// Where in a resource the problem is (`Patient.id` for a bad id), when it is one.
    pub expression: Option<String>,
}

impl RouteError {
    fn new(status: u16, code: IssueType, message: impl Into<String>) -> RouteError {
        RouteError { status, code, message: message.into(), expression: None }
    }

    fn not_supported(message: impl Into<String>) -> RouteError {
        RouteError::new(400, IssueType::NotSupported, message)
    }

    fn method_not_allowed(method: Method, target: &str, allowed: &str) -> RouteError {
        let method = match method {
            Method::Other => "this method".to_string(),
            other => format!("{other:?}"),
        };
        RouteError::new(
            405,
            IssueType::NotSupported,
            format!("{method} is not allowed on {target}; allowed: {allowed}"),
        )
    }

    fn unknown_type(name: &str) -> RouteError {
        if name.starts_with('$') {
            return RouteError::not_supported(format!("operation {name} is not supported"));
        }
        RouteError::new(404, IssueType::NotSupported, format!("'{name}' is not a FHIR R4 resource type"))
    }

    fn invalid_id(resource_type: &str, id: &str) -> RouteError {
        let error = crate::Error::InvalidId { resource_type: resource_type.to_string(), id: id.to_string() };
        RouteError {
            status: 400,
            code: IssueType::Value,
            message: error.to_string(),
            expression: Some(format!("{resource_type}.id")),
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for RouteError {}

/// A request target split into the path below the service base and the raw query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Decoded segments below the base, without empty ones (`Patient`, `1`).
    pub segments: Vec<String>,
    /// The raw (still percent-encoded) query string, without `?`.
    pub query: String,
}

impl Target {
    /// The segments joined with `/` (`Patient/1/_history/2`).
    pub fn path(&self) -> String {
        self.segments.join("/")
    }

    /// Splits what a client addressed: a path relative to the base (`Patient/1?x=y`,
    /// `/Patient/1`), or an absolute URL, which must be on `base` (compared with the scheme
    /// and host case-insensitively and repeated slashes ignored).
    pub fn parse(url: &str, base: &str) -> Result<Target, RouteError> {
        // A fragment never reaches a server; in an entry URL it means nothing either.
        let url = url.split('#').next().unwrap_or_default();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let relative = if let Some(scheme_end) = path.find("://").filter(|at| is_scheme(&path[..*at])) {
            strip_base(path, scheme_end, base).ok_or_else(|| {
                RouteError::new(
                    400,
                    IssueType::NotSupported,
                    format!("'{url}' points to another server (this one's base is {base}); use a URL relative to it"),
                )
            })?
        } else {
            path
        };
        let segments = relative
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| percent_decode(segment).ok_or_else(|| bad_encoding(segment)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target { segments, query: query.to_string() })
    }

    /// A path below the base as the HTTP server received it (`/fhir` already removed).
    pub fn from_path(path: &str, query: &str) -> Result<Target, RouteError> {
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| percent_decode(segment).ok_or_else(|| bad_encoding(segment)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target { segments, query: query.to_string() })
    }
}

fn bad_encoding(segment: &str) -> RouteError {
    RouteError::new(
        400,
        IssueType::Invalid,
        format!("the path segment '{segment}' is not valid percent-encoded UTF-8"),
    )
}

fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The path of `url` below `base`, if `url` is on it.
fn strip_base<'a>(url: &'a str, scheme_end: usize, base: &str) -> Option<&'a str> {
    let base_scheme_end = base.find("://")?;
    if !url[..scheme_end].eq_ignore_ascii_case(&base[..base_scheme_end]) {
        return None;
    }
    let rest = &url[scheme_end + 3..];
    let base_rest = &base[base_scheme_end + 3..];
    let (authority, mut path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (base_authority, base_path) = base_rest.split_at(base_rest.find('/').unwrap_or(base_rest.len()));
    if !authority.eq_ignore_ascii_case(base_authority) {
        return None;
    }
    for expected in base_path.split('/').filter(|s| !s.is_empty()) {
        path = path.trim_start_matches('/');
        let (segment, rest) = path.split_at(path.find('/').unwrap_or(path.len()));
        if segment != expected {
            return None;
        }
        path = rest;
    }
    // `http://host/fhirx` is not below `http://host/fhir`.
    if !(path.is_empty() || path.starts_with('/')) {
        return None;
    }
    Some(path)
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = segment.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn resource_type(name: &str) -> Result<String, RouteError> {
    if definitions().is_resource_type(name) {
        Ok(name.to_string())
    } else {
        Err(RouteError::unknown_type(name))
    }
}

fn id(resource_type: &str, id: &str) -> Result<String, RouteError> {
    if is_valid_id(id) { Ok(id.to_string()) } else { Err(RouteError::invalid_id(resource_type, id)) }
}

/// An operation's level from the segments before `$name`.
fn operation_level(before: &[String]) -> Result<Level, RouteError> {
    match before {
        [] => Ok(Level::System),
        [t] if t == VIEW_DEFINITION => Ok(Level::Type(t.clone())),
        // Views are named in snake_case, which the views module checks.
        [t, name] if t == VIEW_DEFINITION => Ok(Level::Instance(t.clone(), name.clone())),
        [t] => Ok(Level::Type(resource_type(t)?)),
        [t, i] => {
            let t = resource_type(t)?;
            let i = id(&t, i)?;
            Ok(Level::Instance(t, i))
        }
        _ => Err(RouteError::new(404, IssueType::NotFound, "no FHIR endpoint at this path")),
    }
}

impl Route {
    /// Parses a request: its method and target. `has_query` distinguishes conditional writes
    /// (`PUT [type]?identifier=...`) from the plain ones.
    pub fn parse(method: Method, target: &Target) -> Result<Route, RouteError> {
        let segments: Vec<&str> = target.segments.iter().map(String::as_str).collect();
        let has_query = !target.query.is_empty();
        let path = target.path();
        // `$name` as the last of at most three segments is an operation at that level.
        if let Some((last, before)) = segments.split_last()
            && let Some(name) = last.strip_prefix('$')
            && before.len() <= 2
            && !matches!(*last, "$export-status" | "$export-file")
        {
            let level = operation_level(&target.segments[..before.len()])?;
            if name.is_empty() {
                return Err(RouteError::not_supported("an operation needs a name after '$'"));
            }
            return Ok(Route::Operation { name: name.to_string(), level, method });
        }
        if method.is_read() {
            return Route::parse_read(&segments, &path);
        }
        match segments.as_slice() {
            [] if method == Method::Post => Ok(Route::Bundle),
            [] => Err(RouteError::method_not_allowed(method, "the service base", "POST (batch/transaction)")),
            ["$export-status", job] if method == Method::Delete => {
                Ok(Route::ExportStatus { job: job.to_string(), cancel: true })
            }
            [first, ..] if first.starts_with('$') || first.starts_with('_') || *first == "metadata" => {
                Err(RouteError::method_not_allowed(method, first, "GET"))
            }
            [t, rest @ ..] => {
                let t = resource_type(t)?;
                match (rest, method) {
                    ([], Method::Post) => Ok(Route::Create { resource_type: t }),
                    ([], Method::Put) if has_query => Ok(Route::ConditionalUpdate { resource_type: t }),
                    ([], Method::Delete) if has_query => Ok(Route::ConditionalDelete { resource_type: t }),
                    ([], Method::Patch) if has_query => Ok(Route::ConditionalPatch { resource_type: t }),
                    (["_search"], Method::Post) => {
                        Ok(Route::Search { resource_type: t, compartment: None, form: true })
                    }
                    ([], _) => Err(RouteError::method_not_allowed(
                        method,
                        &t,
                        "GET, POST (and PUT, PATCH or DELETE with search parameters)",
                    )),
                    ([i], Method::Put) => Ok(Route::Update { id: id(&t, i)?, resource_type: t }),
                    ([i], Method::Delete) => Ok(Route::Delete { id: id(&t, i)?, resource_type: t }),
                    ([i], Method::Patch) => Ok(Route::Patch { id: id(&t, i)?, resource_type: t }),
                    ([_], _) => {
                        Err(RouteError::method_not_allowed(method, "a resource", "GET, PUT, PATCH, DELETE"))
                    }
                    ([_, operation, ..], _) if operation.starts_with('$') => {
                        Err(RouteError::not_supported(format!("operation {operation} is not supported")))
                    }
                    _ => Err(RouteError::method_not_allowed(method, &path, "GET")),
                }
            }
        }
    }

    fn parse_read(segments: &[&str], path: &str) -> Result<Route, RouteError> {
        match segments {
            [] => Ok(Route::SearchSystem),
            ["metadata"] => Ok(Route::Capabilities),
            ["$export-status", job] => Ok(Route::ExportStatus { job: job.to_string(), cancel: false }),
            ["$export-file", job, file] => {
                Ok(Route::ExportFile { job: job.to_string(), file: file.to_string() })
            }
            [t] if *t == VIEW_DEFINITION => Ok(Route::ViewDefinitions),
            [t, name] if *t == VIEW_DEFINITION => Ok(Route::ViewDefinition { name: name.to_string() }),
            ["_history"] => Ok(Route::History(Level::System)),
            [t, rest @ ..] => {
                let t = resource_type(t)?;
                match rest {
                    [] | ["_search"] => {
                        Ok(Route::Search { resource_type: t, compartment: None, form: false })
                    }
                    ["_history"] => Ok(Route::History(Level::Type(t))),
                    [i] => Ok(Route::Read { id: id(&t, i)?, resource_type: t }),
                    [i, "_history"] => {
                        let i = id(&t, i)?;
                        Ok(Route::History(Level::Instance(t, i)))
                    }
                    [i, "_history", version] => {
                        Ok(Route::Vread { id: id(&t, i)?, resource_type: t, version: version.to_string() })
                    }
                    [i, target] if definitions().is_resource_type(target) => Ok(Route::Search {
                        compartment: Some((t.clone(), id(&t, i)?)),
                        resource_type: target.to_string(),
                        form: false,
                    }),
                    [_, operation, ..] if operation.starts_with('$') => {
                        Err(RouteError::not_supported(format!("operation {operation} is not supported")))
                    }
                    _ => Err(RouteError::new(
                        404,
                        IssueType::NotFound,
                        format!("no FHIR endpoint at '{path}'"),
                    )),
                }
            }
        }
    }

    /// The resource type the route is about, if one.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Route::Read { resource_type, .. }
            | Route::Vread { resource_type, .. }
            | Route::Search { resource_type, .. }
            | Route::Create { resource_type }
            | Route::Update { resource_type, .. }
            | Route::ConditionalUpdate { resource_type }
            | Route::Patch { resource_type, .. }
            | Route::ConditionalPatch { resource_type }
            | Route::Delete { resource_type, .. }
            | Route::ConditionalDelete { resource_type } => Some(resource_type),
            Route::History(level) | Route::Operation { level, .. } => level.resource_type(),
            Route::ViewDefinitions | Route::ViewDefinition { .. } => Some(VIEW_DEFINITION),
            _ => None,
        }
    }

    /// The one resource the route is about (`Type`, `id`), if one.
    pub fn instance(&self) -> Option<(&str, &str)> {
        match self {
            Route::Read { resource_type, id }
            | Route::Vread { resource_type, id, .. }
            | Route::Update { resource_type, id }
            | Route::Patch { resource_type, id }
            | Route::Delete { resource_type, id } => Some((resource_type, id)),
            Route::History(Level::Instance(t, id))
            | Route::Operation { level: Level::Instance(t, id), .. } => Some((t, id)),
            _ => None,
        }
    }

    /// The restful-interaction code (http://hl7.org/fhir/restful-interaction) the audit
    /// trail records.
    pub fn interaction_code(&self) -> &'static str {
        match self {
            Route::Capabilities => "capabilities",
            Route::Read { .. } | Route::ViewDefinition { .. } => "read",
            Route::Vread { .. } => "vread",
            Route::Search { compartment: Some(_), .. } => "search-compartment",
            Route::Search { .. } | Route::ViewDefinitions => "search-type",
            Route::SearchSystem => "search-system",
            Route::History(Level::System) => "history-system",
            Route::History(Level::Type(_)) => "history-type",
            Route::History(Level::Instance(..)) => "history-instance",
            Route::Create { .. } => "create",
            Route::Update { .. } | Route::ConditionalUpdate { .. } => "update",
            Route::Patch { .. } | Route::ConditionalPatch { .. } => "patch",
            Route::Delete { .. } | Route::ConditionalDelete { .. } => "delete",
            Route::Operation { .. } | Route::ExportStatus { .. } | Route::ExportFile { .. } => "operation",
            Route::Bundle => "batch",
        }
    }

    /// The audit action code (AuditEvent.action): C, R, U, D or E.
    pub fn action(&self) -> &'static str {
        match self {
            Route::Create { .. } => "C",
            Route::Update { .. }
            | Route::ConditionalUpdate { .. }
            | Route::Patch { .. }
            | Route::ConditionalPatch { .. } => "U",
            Route::Delete { .. } | Route::ConditionalDelete { .. } => "D",
            Route::Operation { .. } | Route::Bundle | Route::ExportStatus { cancel: true, .. } => "E",
            _ => "R",
        }
    }

    /// Whether the route can change the record.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Route::Create { .. }
                | Route::Update { .. }
                | Route::ConditionalUpdate { .. }
                | Route::Patch { .. }
                | Route::ConditionalPatch { .. }
                | Route::Delete { .. }
                | Route::ConditionalDelete { .. }
                | Route::Bundle
        )
    }

    /// What the audit trail names as the thing accessed: `Type/id`, the type, or the path.
    pub fn audit_subject(&self) -> String {
        match (self.instance(), self) {
            (Some((t, id)), _) => format!("{t}/{id}"),
            (None, Route::Operation { name, level: Level::System, .. }) => format!("${name}"),
            (None, Route::ExportStatus { job, .. }) => format!("$export-status/{job}"),
            (None, Route::ExportFile { job, file }) => format!("$export-file/{job}/{file}"),
            (None, Route::Capabilities) => "metadata".to_string(),
            (None, route) => route.resource_type().unwrap_or("").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:8080/fhir";

    fn route(method: Method, url: &str) -> Result<Route, RouteError> {
        Route::parse(method, &Target::parse(url, BASE)?)
    }

    #[test]
    fn interactions_are_recognised() {
        let read = Route::Read { resource_type: "Patient".into(), id: "1".into() };
        assert_eq!(route(Method::Get, "Patient/1"), Ok(read.clone()));
        assert_eq!(route(Method::Head, "/Patient/1/"), Ok(read.clone()));
        assert_eq!(route(Method::Get, "Patient/1/_history/2").map(|r| r.interaction_code()), Ok("vread"));
        assert_eq!(
            route(Method::Get, "Patient/1/Observation?code=x"),
            Ok(Route::Search {
                resource_type: "Observation".into(),
                compartment: Some(("Patient".into(), "1".into())),
                form: false
            })
        );
        assert_eq!(
            route(Method::Put, "Patient?identifier=a|b"),
            Ok(Route::ConditionalUpdate { resource_type: "Patient".into() })
        );
        assert_eq!(
            route(Method::Put, "Patient/1"),
            Ok(Route::Update { resource_type: "Patient".into(), id: "1".into() })
        );
        assert_eq!(route(Method::Post, ""), Ok(Route::Bundle));
        assert_eq!(route(Method::Get, "metadata"), Ok(Route::Capabilities));
        assert!(matches!(
            route(Method::Get, "Patient/1/$everything"),
            Ok(Route::Operation { ref name, level: Level::Instance(..), .. }) if name == "everything"
        ));
        assert!(matches!(route(Method::Post, "$export"), Ok(Route::Operation { level: Level::System, .. })));
        assert_eq!(
            route(Method::Delete, "$export-status/j1"),
            Ok(Route::ExportStatus { job: "j1".into(), cancel: true })
        );
        assert_eq!(
            route(Method::Get, "ViewDefinition/patients"),
            Ok(Route::ViewDefinition { name: "patients".into() })
        );
        assert!(matches!(route(Method::Post, "ViewDefinition/patients/$run"), Ok(Route::Operation { .. })));
    }

    #[test]
    fn absolute_urls_on_the_base_are_the_same_route() {
        let relative = route(Method::Put, "Patient/pat-1");
        for url in [
            "http://127.0.0.1:8080/fhir/Patient/pat-1",
            "HTTP://127.0.0.1:8080/fhir//Patient/pat-1",
            "http://127.0.0.1:8080//fhir/Patient/pat-1/",
            "http://127.0.0.1:8080/fhir/%50atient/pat-1",
        ] {
            assert_eq!(route(Method::Put, url), relative, "{url}");
        }
        for other in [
            "http://other.example/fhir/Patient/pat-1",
            "http://127.0.0.1:8080/fhirx/Patient/pat-1",
            "https://127.0.0.1:8080/fhir/Patient/pat-1",
        ] {
            assert_eq!(route(Method::Put, other).map_err(|e| e.status), Err(400), "{other}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(route(Method::Get, "Patent/1").map_err(|e| e.status), Err(404));
        assert_eq!(route(Method::Put, "Patient/..").map_err(|e| e.status), Err(400));
        assert_eq!(route(Method::Get, "Patient/a%2Fb").map_err(|e| e.status), Err(400));
        assert_eq!(route(Method::Get, "Patient/%ZZ").map_err(|e| e.status), Err(400));
        assert_eq!(route(Method::Patch, "Patient").map_err(|e| e.status), Err(405));
    }
}
