//! Operation inputs: query parameters and `Parameters` bodies, read the same way.

use fhir::IssueType;
use serde_json::Value as Json;

use crate::ApiError;

/// Parses a POST body (any resource); an empty body is no body.
pub(crate) fn parse_body(body: &[u8]) -> Result<Option<Json>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value = fhir::parse_json(body)?;
    if value.get("resourceType").and_then(Json::as_str).is_none() {
        return Err(ApiError::bad_request(
            IssueType::Invalid,
            "the body is not a FHIR resource (no resourceType)",
        ));
    }
    Ok(Some(value))
}

/// The named inputs of one call.
pub(crate) struct Inputs {
    /// Decoded query pairs, then the simple-valued `Parameters.parameter` of the body as text.
    pub pairs: Vec<(String, String)>,
    /// The body, if it is a `Parameters` resource.
    pub parameters: Option<Json>,
}

impl Inputs {
    pub(crate) fn new(query: &str, body: Option<&Json>) -> Result<Inputs, ApiError> {
        let mut pairs: Vec<(String, String)> =
            crate::query_pairs(query).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        let parameters =
            body.filter(|b| b.get("resourceType").and_then(Json::as_str) == Some("Parameters")).cloned();
        if let Some(parameters) = &parameters {
            for (i, parameter) in
                parameters.get("parameter").and_then(Json::as_array).into_iter().flatten().enumerate()
            {
                let name = parameter.get("name").and_then(Json::as_str).ok_or_else(|| {
                    ApiError::at(
                        400,
                        IssueType::Required,
                        "a parameter has no name",
                        format!("Parameters.parameter[{i}]"),
                    )
                })?;
                if let Some(text) = simple_value(parameter) {
                    pairs.push((name.to_string(), text));
                }
            }
        }
        Ok(Inputs { pairs, parameters })
    }

    /// The inputs without those named `name` (the Parameters body dropped with them).
    pub(crate) fn without(&self, name: &str) -> Inputs {
        Inputs { pairs: self.pairs.iter().filter(|(n, _)| n != name).cloned().collect(), parameters: None }
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A whole number input, checked.
    pub(crate) fn whole_number(&self, name: &str) -> Result<Option<usize>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(
                        IssueType::Value,
                        format!("{name} must be a whole number, got '{v}'"),
                    )
                })
            })
            .transpose()
    }

    /// Refuses any input but `accepted` (and `_format`/`_pretty`, which every interaction
    /// takes): for operations Chartroom defines, a misspelt parameter ("cuont") is an error,
    /// not a silently different answer.
    pub(crate) fn only(&self, operation: &str, accepted: &[&str]) -> Result<(), ApiError> {
        let body_names = self
            .parameters
            .as_ref()
            .and_then(|p| p.get("parameter"))
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("name").and_then(Json::as_str));
        let names = self.pairs.iter().map(|(n, _)| n.as_str()).chain(body_names);
        for name in names {
            if !accepted.contains(&name) && !matches!(name, "_format" | "_pretty") {
                let takes = if accepted.is_empty() {
                    "it takes no parameters".to_string()
                } else {
                    format!("it takes {}", accepted.join(", "))
                };
                return Err(ApiError::bad_request(
                    IssueType::NotSupported,
                    format!("${operation} has no parameter '{name}': {takes}"),
                ));
            }
        }
        Ok(())
    }

    /// The `resource` of the parameter `name` in a Parameters body.
    pub(crate) fn resource(&self, name: &str) -> Option<&Json> {
        self.parameters
            .as_ref()?
            .get("parameter")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(Json::as_str) == Some(name))?
            .get("resource")
    }
}

/// A primitive `value[x]` as text (strings, codes, uris, numbers, booleans).
fn simple_value(parameter: &Json) -> Option<String> {
    let object = parameter.as_object()?;
    object.iter().find_map(|(key, value)| {
        if !key.starts_with("value") {
            return None;
        }
        match value {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    })
}
