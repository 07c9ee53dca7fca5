//! `OperationOutcome`: how every error, warning and note reaches a client.

use serde_json::{Map, Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (the R4 IssueType value set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Expired => "expired",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::LockError => "lock-error",
            IssueType::NoStore => "no-store",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Incomplete => "incomplete",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    /// FHIRPath locations of the problem (`Patient.name[0].given[1]`).
    pub expression: Vec<String>,
    /// Other locations (e.g. `line 3, column 7` of a JSON body that did not parse).
    pub location: Vec<String>,
}

impl Issue {
    /// A new issue with no location.
    pub fn new(severity: Severity, code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity,
            code,
            diagnostics: diagnostics.into(),
            expression: Vec::new(),
            location: Vec::new(),
        }
    }

    /// Adds a FHIRPath location.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression.push(expression.into());
        self
    }

    /// Adds a non-FHIRPath location.
    pub fn located(mut self, location: impl Into<String>) -> Self {
        self.location.push(location.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), Value::from(self.severity.code()));
        issue.insert("code".into(), Value::from(self.code.code()));
        if !self.diagnostics.is_empty() {
            issue.insert("diagnostics".into(), Value::from(self.diagnostics.as_str()));
        }
        if !self.location.is_empty() {
            issue.insert("location".into(), json!(self.location));
        }
        if !self.expression.is_empty() {
            issue.insert("expression".into(), json!(self.expression));
        }
        Value::Object(issue)
    }
}

/// An `OperationOutcome` under construction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    /// An outcome with a single issue.
    pub fn single(issue: Issue) -> Self {
        OperationOutcome { issues: vec![issue] }
    }

    /// An outcome with one error.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self::single(Issue::new(Severity::Error, code, diagnostics))
    }

    /// An outcome with one informational note, e.g. to confirm a successful interaction.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self::single(Issue::new(Severity::Information, IssueType::Informational, diagnostics))
    }

    /// Adds an issue.
    pub fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    /// Whether any issue is an error or fatal.
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity <= Severity::Error)
    }

    /// The OperationOutcome resource. An outcome without issues gets the "all OK" issue the
    /// specification asks for (`issue` is 1..*).
    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![Issue::new(Severity::Information, IssueType::Informational, "All OK").to_json()]
        } else {
            self.issues.iter().map(Issue::to_json).collect()
        };
        json!({ "resourceType": "OperationOutcome", "issue": issues })
    }

    /// The resource serialized as compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

impl From<Issue> for OperationOutcome {
    fn from(issue: Issue) -> Self {
        Self::single(issue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_issues_with_locations() {
        let outcome = OperationOutcome::single(
            Issue::new(Severity::Error, IssueType::Value, "bad date").at("Patient.birthDate"),
        );
        assert!(outcome.has_errors());
        assert_eq!(
            outcome.to_json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "value", "diagnostics": "bad date",
                "expression": ["Patient.birthDate"]}]})
        );
    }

    #[test]
    fn empty_outcome_is_still_valid() {
        let outcome = OperationOutcome::default();
        assert!(!outcome.has_errors());
        assert_eq!(outcome.to_json()["issue"][0]["code"], "informational");
    }
}
