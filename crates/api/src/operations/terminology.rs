//! The FHIR terminology operations: `CodeSystem/$lookup`, `CodeSystem/$subsumes`,
//! `ValueSet/$expand`, `ValueSet/$validate-code`, at type level and on stored instances.
//!
//! The built-in terminology (ICD-10-CM, the R4 code systems and value sets) answers first;
//! CodeSystem and ValueSet resources stored on this server are found by their canonical URL.

use fhir::IssueType;
use fhir::search_parameters::search_parameters;
use serde_json::Value as Json;
use store::search::{Condition, Filter, UriMode};
use store::{SearchQuery, Store};
use terminology::{
    ExpandRequest, LookupRequest, Resolver, SubsumesRequest, Terminology, ValidateCodeRequest,
};

use super::registry::Call;
use super::{Invocation, Level, json_response};
use crate::access::ViewedStore;
use crate::{Api, ApiError, Response};

/// Finds stored CodeSystem and ValueSet resources by `url`.
pub(crate) struct StoreTerminology<'a> {
    pub store: &'a dyn Store,
}

impl StoreTerminology<'_> {
    fn by_url(&self, resource_type: &str, url: &str) -> Option<Json> {
        let key = search_parameters().get(resource_type, "url")?.key;
        let query = SearchQuery {
            resource_type: resource_type.to_string(),
            filters: vec![Filter::Param {
                key,
                any: vec![Condition::Uri { value: url.to_string(), mode: UriMode::Exact }],
            }],
            sort: Vec::new(),
            count: 1,
            cursor: None,
            total: store::Total::None,
        };
        let page = self.store.search(&query).ok()?;
        let body = page.matches.first()?.body.as_deref()?;
        fhir::parse_json(body).ok()
    }
}

impl Resolver for StoreTerminology<'_> {
    fn value_set(&self, url: &str) -> Option<Json> {
        self.by_url("ValueSet", url)
    }

    fn code_system(&self, url: &str) -> Option<Json> {
        self.by_url("CodeSystem", url)
    }
}

/// Maps the terminology crate's errors onto HTTP: unknown things are 404, bad requests 400.
pub(crate) fn terminology_error(error: terminology::Error) -> ApiError {
    match error {
        terminology::Error::NotFound(message) => ApiError::not_found(message),
        terminology::Error::Invalid(message) if message.starts_with("too costly") => {
            ApiError::bad_request(IssueType::TooCostly, message)
        }
        terminology::Error::Invalid(message) => ApiError::bad_request(IssueType::Invalid, message),
        other => ApiError::internal(other.to_string()),
    }
}

impl Api {
    /// A terminology operation: `$lookup`, `$validate-code`, `$subsumes`, `$expand`.
    pub(crate) fn terminology_operation(&self, call: &Call<'_>, name: &str) -> Result<Response, ApiError> {
        let (inputs, gate) = (call.inputs, call.gate);
        let invocation = Invocation { level: call.level, name };
        let terminology = Terminology::get();
        // Stored code systems and value sets are read as the caller may see them.
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let resolver = StoreTerminology { store: &viewed };
        let instance = match invocation.level {
            Level::Instance(resource_type, id) => Some(self.read_live(resource_type, id)?),
            _ => None,
        };
        // A stored CodeSystem's operations are about its canonical URL.
        let instance_url = || -> Result<Option<String>, ApiError> {
            match &instance {
                None => Ok(None),
                Some(resource) => {
                    resource.get("url").and_then(Json::as_str).map(|u| Some(u.to_string())).ok_or_else(|| {
                        ApiError::bad_request(
                            IssueType::Invalid,
                            "the stored resource has no url, so it cannot be used as terminology",
                        )
                    })
                }
            }
        };
        match invocation.name {
            "lookup" => {
                let mut request = LookupRequest::from_inputs(&inputs.0).map_err(terminology_error)?;
                if let Some(url) = instance_url()? {
                    request.system = Some(url);
                }
                let result = terminology.lookup(&request, &resolver).map_err(terminology_error)?;
                Ok(json_response(&result.to_parameters()))
            }
            "subsumes" => {
                let mut request = SubsumesRequest::from_inputs(&inputs.0).map_err(terminology_error)?;
                if let Some(url) = instance_url()? {
                    request.system = Some(url);
                }
                let result = terminology.subsumption(&request, &resolver).map_err(terminology_error)?;
                Ok(json_response(&result.to_parameters()))
            }
            "expand" => {
                let mut request = ExpandRequest::from_inputs(&inputs.0).map_err(terminology_error)?;
                if let Some(value_set) = instance {
                    request.value_set = Some(value_set);
                } else if request.value_set.is_none() {
                    request.value_set = inputs.resource("valueSet").cloned();
                }
                let expansion = terminology.expand(&request, &resolver).map_err(terminology_error)?;
                Ok(json_response(&expansion.to_value_set()))
            }
            "validate-code"
                if matches!(
                    invocation.level,
                    Level::Type("CodeSystem") | Level::Instance("CodeSystem", _)
                ) =>
            {
                // CodeSystem/$validate-code: `url` names the code system; membership of the
                // whole system is its implicit value set.
                let mut request = ValidateCodeRequest::from_inputs(&inputs.0).map_err(terminology_error)?;
                let system = match instance_url()? {
                    Some(url) => Some(url),
                    None => request.url.take().or_else(|| request.system.clone()),
                };
                let system = system.ok_or_else(|| {
                    ApiError::bad_request(
                        IssueType::Required,
                        "CodeSystem/$validate-code needs url (the code system)",
                    )
                })?;
                if request.system.is_none() && request.coding.is_none() && request.codeable_concept.is_none()
                {
                    request.system = Some(system.clone());
                }
                request.url = Some(format!("{system}?fhir_vs"));
                let result = terminology.validate_code(&request, &resolver).map_err(terminology_error)?;
                Ok(json_response(&result.to_parameters()))
            }
            "validate-code" => {
                let mut request = ValidateCodeRequest::from_inputs(&inputs.0).map_err(terminology_error)?;
                if let Some(value_set) = instance {
                    request.value_set = Some(value_set);
                } else if request.value_set.is_none() {
                    request.value_set = inputs.resource("valueSet").cloned();
                }
                let result = terminology.validate_code(&request, &resolver).map_err(terminology_error)?;
                Ok(json_response(&result.to_parameters()))
            }
            other => Err(ApiError::bad_request(
                IssueType::NotSupported,
                format!("operation ${other} is not supported"),
            )),
        }
    }
}
