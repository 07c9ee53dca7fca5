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

/// The named inputs of one call: the common reader (`fhir::parameters`), the query's then a
/// Parameters body's, as every operation reads them.
pub(crate) struct Inputs(pub(crate) fhir::parameters::Inputs);

impl Inputs {
    pub(crate) fn new(query: &str, body: Option<&Json>) -> Result<Inputs, ApiError> {
        let pairs: Vec<(String, String)> =
            crate::query_pairs(query).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        fhir::parameters::Inputs::from_request(&pairs, body)
            .map(Inputs)
            .map_err(|e| ApiError::bad_request(IssueType::Invalid, e.0))
    }

    /// The inputs without those named `name`.
    pub(crate) fn without(&self, name: &str) -> Inputs {
        Inputs(self.0.without(name))
    }

    /// The first text value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.first_text(name)
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

    /// The resource (or complex value) given as `name`.
    pub(crate) fn resource(&self, name: &str) -> Option<&Json> {
        self.0.first_json(name)
    }
}
