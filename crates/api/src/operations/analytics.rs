//! `$surveillance` (outbreak early warning over the record) and `$cohort-compare` (two
//! treatments compared over time): the inputs read, the `analytics` crate run over the
//! store as the caller sees it, the FHIR answer returned.
//!
//! Both are reports over the whole record, so, like the data-quality report and a view's rows,
//! they are for callers who may see all of it (`gate.bulk`): a count that silently left out
//! what a directive withholds would mislead public health, and one that included it would
//! disclose it.

use analytics::outbreak::{Method, Settings};
use analytics::record::cohort::Study;
use analytics::record::syndromic::{Interval, PlaceLevel};
use fhir::IssueType;
use serde_json::Value as Json;

use super::{Inputs, json_response};
use crate::access::{Gate, ViewedStore};
use crate::{Api, ApiError, Response};

/// The control parameters `$surveillance` takes, as R spells them.
pub(crate) const CONTROL_PARAMETERS: &[&str] = &[
    "range",
    "frequency",
    "baseline",
    "alpha",
    "minSigma",
    "k",
    "h",
    "m",
    "trans",
    "reset",
    "b",
    "w",
    "reweight",
    "weightsThreshold",
    "trend",
    "pThresholdTrend",
    "limit54",
    "powertrans",
    "noPeriods",
    "pastWeeksNotIncluded",
    "thresholdMethod",
];

pub(super) fn analytics_error(error: analytics::Error) -> ApiError {
    match error {
        analytics::Error::Invalid(_) => ApiError::bad_request(IssueType::Invalid, error.to_string()),
        analytics::Error::NotEnoughData(_) => ApiError::new(422, IssueType::Processing, error.to_string()),
        analytics::Error::NoConvergence(_) => ApiError::new(422, IssueType::Processing, error.to_string()),
        analytics::Error::Store(error) => ApiError::from(error),
    }
}

impl Api {
    /// `$surveillance`: every syndrome × place series judged; a Bundle of MeasureReports and
    /// DetectedIssues (see `analytics::outbreak`).
    pub(crate) fn surveillance(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        gate.bulk(None)?;
        let interval = match inputs.get("by").unwrap_or("week") {
            "week" => Interval::Week,
            "day" => Interval::Day,
            other => {
                return Err(ApiError::bad_request(
                    IssueType::Value,
                    format!("by '{other}' is not day or week"),
                ));
            }
        };
        let level = match inputs.get("place").unwrap_or("city") {
            "city" => PlaceLevel::City,
            "zip3" => PlaceLevel::Zip3,
            "state" => PlaceLevel::State,
            other => {
                return Err(ApiError::bad_request(
                    IssueType::Value,
                    format!("place '{other}' is not city, zip3 or state"),
                ));
            }
        };
        let method = Method::parse(inputs.get("method").unwrap_or("ears-c2")).map_err(analytics_error)?;
        let mut settings = Settings::new(method);
        for name in CONTROL_PARAMETERS {
            if let Some(value) = inputs.get(name) {
                settings.set(name, value).map_err(analytics_error)?;
            }
        }
        let known = analytics::syndromes::known(self.config.syndromes_dir.as_deref())
            .map_err(|e| ApiError::internal(format!("the saved syndromes cannot be read: {e}")))?;
        let syndromes =
            analytics::syndromes::select(&known, inputs.get("syndrome")).map_err(analytics_error)?;
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let report = analytics::outbreak::run(&viewed, &syndromes, interval, level, settings)
            .map_err(analytics_error)?;
        Ok(json_response(&report.to_bundle(&fhir::DateTime::now_utc().to_string())))
    }

    /// `$cohort-compare`: the study (`study`, the definition as a JSON string) over the
    /// record; a Parameters (see `analytics::compare`).
    pub(crate) fn cohort_compare(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        gate.bulk(None)?;
        let text = inputs.get("study").ok_or_else(|| {
            ApiError::bad_request(
                IssueType::Required,
                "$cohort-compare needs a study definition: the parameter study (its JSON as a string)",
            )
        })?;
        let definition: Json = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(IssueType::Invalid, format!("study is not a JSON study definition: {e}"))
        })?;
        let study = Study::from_json(&definition).map_err(analytics_error)?;
        let viewed = ViewedStore { store: self.store.as_ref(), gate };
        let comparison = analytics::compare::compare(&viewed, &study).map_err(analytics_error)?;
        Ok(json_response(&comparison.to_parameters()))
    }
}

impl Api {
    /// `$operations-report`: how resources were used from `from` to `to`, by month and by
    /// facility or service; a Parameters, or with `_format=html` (or `Accept: text/html`) the
    /// report as an HTML page with its charts.
    pub(crate) fn operations_report(&self, call: &super::registry::Call<'_>) -> Result<Response, ApiError> {
        call.gate.bulk(None)?;
        let inputs = call.inputs;
        let (Some(from), Some(to)) = (inputs.get("from"), inputs.get("to")) else {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "$operations-report needs from and to (YYYY-MM-DD)",
            ));
        };
        let by = analytics::operations::GroupBy::parse(inputs.get("by").unwrap_or("facility"))
            .map_err(analytics_error)?;
        let html = match inputs.get("_format") {
            Some("html" | "text/html") => true,
            Some(format) if !format.contains("json") => {
                return Err(ApiError::new(
                    406,
                    IssueType::NotSupported,
                    format!("_format={format}: the operations report is JSON (a Parameters) or html"),
                ));
            }
            Some(_) => false,
            None => call.request.accept.as_deref().is_some_and(|a| a.contains("text/html")),
        };
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let report = analytics::operations::report(&viewed, from, to, by).map_err(analytics_error)?;
        let parameters = report.to_parameters();
        if html {
            let page =
                web::analytics::standalone("How resources are used", web::operations::body(&parameters));
            let mut response = Response::json(200, page.into_bytes());
            response.content_type = Some("text/html; charset=utf-8");
            return Ok(response);
        }
        Ok(json_response(&parameters))
    }
}

impl Api {
    /// `$billing-audit`: every final bill checked against the record it bills for, and the
    /// revenue-cycle figures (DNFB, the coding backlog) as of the end of `asOf` (today by
    /// default); at most `_count` findings and unbilled accounts are listed (every one is
    /// counted).
    pub(crate) fn billing_audit(&self, call: &super::registry::Call<'_>) -> Result<Response, ApiError> {
        call.gate.bulk(None)?;
        let today = fhir::DateTime::now_utc().to_string();
        let as_of = call.inputs.get("asOf").unwrap_or(&today[..10]);
        let hold = call.inputs.whole_number("billHold")?.unwrap_or(3).min(366) as i64;
        let count = call.inputs.whole_number("_count")?.unwrap_or(100).min(10_000);
        let options = analytics::billing::AuditOptions::as_of(as_of, hold).map_err(analytics_error)?;
        let viewed = ViewedStore { store: self.store.as_ref(), gate: call.gate };
        let audit = analytics::billing::audit(&viewed, &options).map_err(analytics_error)?;
        let listed = audit
            .findings
            .iter()
            .take(count)
            .filter_map(|f| f.patient.as_deref())
            .chain(audit.revenue.accounts.iter().take(count).filter_map(|a| a.patient.as_deref()));
        for patient in listed {
            call.gate.touch(patient);
        }
        Ok(json_response(&audit.to_parameters(count)))
    }
}
