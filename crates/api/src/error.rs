//! The API's one error type: an HTTP status and the `OperationOutcome` that explains it.

use fhir::{Issue, IssueType, OperationOutcome, Severity};

use crate::{Method, Response};

/// A failed interaction: the status to answer with and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {}", first_diagnostics(.outcome))]
pub struct ApiError {
    pub status: u16,
    pub outcome: OperationOutcome,
    /// `ETag` to send along (e.g. the tombstone version on 410 Gone).
    pub etag: Option<String>,
}

fn first_diagnostics(outcome: &OperationOutcome) -> &str {
    outcome.issues.first().map_or("", |i| i.diagnostics.as_str())
}

impl ApiError {
    /// The diagnostics of every issue, joined (for logs and command-line reports).
    pub fn message(&self) -> String {
        self.outcome.issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
    }

    /// Each issue's diagnostics with its location, for reports on a terminal.
    pub fn located_message(&self) -> String {
        self.outcome
            .issues
            .iter()
            .map(|i| match i.expression.first() {
                Some(at) => format!("{} (at {at})", i.diagnostics),
                None => i.diagnostics.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// An error with one issue.
    pub fn new(status: u16, code: IssueType, diagnostics: impl Into<String>) -> Self {
        ApiError { status, outcome: OperationOutcome::error(code, diagnostics), etag: None }
    }

    /// An error with one issue at a FHIRPath location.
    pub fn at(
        status: u16,
        code: IssueType,
        diagnostics: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            outcome: Issue::new(Severity::Error, code, diagnostics).at(expression).into(),
            etag: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::new(400, code, diagnostics)
    }

    /// 404 Not Found.
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(404, IssueType::NotFound, diagnostics)
    }

    /// 404 for a resource type this server (and R4) does not know.
    pub fn unknown_type(name: &str) -> Self {
        Self::new(404, IssueType::NotSupported, format!("'{name}' is not a FHIR R4 resource type"))
    }

    /// A capability the server does not have. 400 with `not-supported`, so clients see a
    /// clear, non-retryable refusal rather than a server fault.
    pub fn not_supported(diagnostics: impl Into<String>) -> Self {
        Self::new(400, IssueType::NotSupported, diagnostics)
    }

    /// 405 Method Not Allowed.
    pub fn method_not_allowed(method: Method, target: &str, allowed: &str) -> Self {
        Self::new(
            405,
            IssueType::NotSupported,
            format!("{method:?} is not allowed on {target}; allowed: {allowed}")
                .replace("Other", "this method"),
        )
    }

    /// 500, for failures that are the server's own.
    pub fn internal(diagnostics: impl Into<String>) -> Self {
        Self::new(500, IssueType::Exception, diagnostics)
    }

    /// The error as an HTTP response.
    pub fn into_response(self) -> Response {
        let mut response = Response::json(self.status, self.outcome.to_bytes());
        response.etag = self.etag;
        response
    }

    /// Prefixes every issue's location with where in a Bundle it arose.
    pub fn in_entry(mut self, index: usize) -> Self {
        for issue in &mut self.outcome.issues {
            let prefix = format!("Bundle.entry[{index}]");
            // The entry's resource type, which the rewritten location no longer names.
            let resource_type = issue
                .expression
                .first()
                .and_then(|e| e.split_once('.'))
                .map(|(head, _)| head)
                .filter(|head| head.starts_with(char::is_uppercase));
            issue.diagnostics = match resource_type {
                Some(resource_type) => format!("{prefix} ({resource_type}): {}", issue.diagnostics),
                None => format!("{prefix}: {}", issue.diagnostics),
            };
            if issue.expression.is_empty() {
                issue.expression.push(prefix);
            } else {
                for expression in &mut issue.expression {
                    *expression = match expression.split_once('.') {
                        Some((head, rest)) if head.starts_with(char::is_uppercase) => {
                            format!("{prefix}.resource.{rest}")
                        }
                        None if expression == "resourceType" => format!("{prefix}.resource.resourceType"),
                        _ => format!("{prefix}.{expression}"),
                    };
                }
            }
        }
        self
    }
}

impl From<fhir::Error> for ApiError {
    fn from(error: fhir::Error) -> Self {
        let status = match error {
            fhir::Error::InvalidReference { .. } | fhir::Error::InvalidValue { .. } => 422,
            _ => 400,
        };
        ApiError { status, outcome: error.to_outcome(), etag: None }
    }
}

/// The first 300 characters of a message, marked when cut.
fn brief(message: &str) -> String {
    match message.char_indices().nth(300) {
        Some((at, _)) => format!("{}... ({} characters)", &message[..at], message.len()),
        None => message.to_string(),
    }
}

/// Whether SQLite refused a statement for its size or shape rather than failing.
fn is_query_limit(error: &rusqlite::Error) -> bool {
    let text = error.to_string();
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::TooBig))
        || [
            "too many SQL variables",
            "Expression tree is too large",
            "tables in a join",
            "too many terms",
            "too many FROM clause terms",
            "parser stack overflow",
        ]
        .iter()
        .any(|needle| text.contains(needle))
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        match &error {
            store::Error::VersionConflict { .. } => Self::new(412, IssueType::Conflict, error.to_string()),
            store::Error::AlreadyExists(_) => Self::new(409, IssueType::Duplicate, error.to_string()),
            store::Error::MissingId(_) => Self::new(400, IssueType::Required, error.to_string()),
            store::Error::Closed => Self::new(503, IssueType::Transient, error.to_string()),
            store::Error::MultipleMatches(_) => Self::new(412, IssueType::MultipleMatches, error.to_string()),
            store::Error::IdMismatch(_) => Self::new(400, IssueType::Invalid, error.to_string()),
            store::Error::Held { .. } => Self::new(409, IssueType::LockError, error.to_string()),
            store::Error::IndexStale => Self::new(503, IssueType::Transient, error.to_string()),
            // A query beyond what SQLite takes (the search limits keep searches well inside;
            // this is the backstop): the request's fault, said without the SQL.
            store::Error::Database(database) if is_query_limit(database) => {
                tracing::warn!("a query beyond the database's limits: {}", brief(&error.to_string()));
                Self::bad_request(
                    IssueType::TooCostly,
                    "the request is too complex for the store; narrow it (fewer parameters, values or chains)",
                )
            }
            // PostgreSQL: a statement beyond its limits (class 54) is the request's fault, as
            // above; a value it cannot hold (class 22: a NUL character, a number out of range)
            // too; a lost or restarting server (class 08, 57P0x) is transient.
            store::Error::Postgres { code, .. } if code.starts_with("54") => {
                tracing::warn!("a query beyond the database's limits: {}", brief(&error.to_string()));
                Self::bad_request(
                    IssueType::TooCostly,
                    "the request is too complex for the store; narrow it (fewer parameters, values or chains)",
                )
            }
            store::Error::Postgres { code, message } if code.starts_with("22") => Self::bad_request(
                IssueType::Invalid,
                format!("a value the store cannot hold: {}", brief(message)),
            ),
            store::Error::CommitUnknown(_) => {
                tracing::error!("{}", brief(&error.to_string()));
                Self::new(
                    503,
                    IssueType::Transient,
                    "the database did not answer the commit: the write may have been stored; read it before trying again",
                )
            }
            store::Error::Postgres { code, .. }
                if code.is_empty() || code.starts_with("08") || code.starts_with("57P") =>
            {
                tracing::error!("store unavailable: {}", brief(&error.to_string()));
                Self::new(503, IssueType::Transient, "the store is unavailable; try again shortly")
            }
            store::Error::Database(_)
            | store::Error::Postgres { .. }
            | store::Error::Stopped
            | store::Error::DataDirectory { .. }
            | store::Error::InUse { .. }
            | store::Error::NotADataDirectory { .. }
            | store::Error::NeedsWriter { .. }
            | store::Error::ReadOnly
            | store::Error::SnapshotBusy
            | store::Error::Corrupt(_)
            | store::Error::CommitFailed(_) => {
                // The whole message (it may hold a statement of any size) only when asked for.
                tracing::error!("store failure: {}", brief(&error.to_string()));
                tracing::debug!("store failure in full: {error}");
                Self::internal(format!(
                    "the store could not complete the request: {}",
                    brief(&error.to_string())
                ))
            }
        }
    }
}
