//! SQL on FHIR views: `ViewDefinition/$run` and reading the views the server knows.
//!
//! ViewDefinition is a logical model of the SQL on FHIR specification, not an R4 resource
//! type, so views are not kept in the versioned record: the server knows the built-in HIM views
//! (`sof::builtin`) and the definitions saved as `NAME.json` in the data directory's `views/`
//! folder. `GET ViewDefinition` lists them, `GET ViewDefinition/NAME` returns one, and `$run`
//! runs one of them, or a definition given inline, over the record (or over resources given
//! inline).

use fhir::IssueType;
use serde_json::{Value as Json, json};
use sof::Format;

use super::{Inputs, Level};
use crate::access::{Gate, ViewedStore};
use crate::{Api, ApiError, Response};
use views::{NamedView, ViewScope, find_view, known_views, run_inline, run_view};

/// How long a `$run` over HTTP may take: its work is on a server thread others wait for.
const RUN_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Api {
    /// A built-in view, else one saved in the views folder.
    pub fn named_view(&self, name: &str) -> Result<NamedView, ApiError> {
        find_view(name, self.config.views_dir.as_deref()).map_err(view_error)
    }

    /// Every view the server knows: the built-in ones, then the saved ones by name.
    pub fn known_views(&self) -> Vec<NamedView> {
        known_views(self.config.views_dir.as_deref())
    }

    /// `$sql`: one read-only SQL statement over the views' tables (what `chartroom sql` runs),
    /// the tables it names brought up to date with the record first; the rows as a JSON
    /// array of objects, column by column.
    pub(crate) fn sql_operation(&self, inputs: &Inputs, gate: &Gate) -> Result<Response, ApiError> {
        // The tables hold every resource of their views: the caller must be able to see all of
        // them (no directive they cannot honour), as for a view's rows over the record.
        gate.bulk(None)?;
        let Some(path) = &self.config.analytics_tables else {
            return Err(ApiError::not_supported(
                "$sql needs a data directory for the views' tables; this server has none",
            ));
        };
        let query = inputs.get("query").filter(|q| !q.trim().is_empty()).ok_or_else(|| {
            ApiError::bad_request(IssueType::Required, "$sql needs a query (one SELECT statement)")
        })?;
        let mut tables = views::Tables::open(path).map_err(view_error)?;
        tables
            .refresh_for_query(query, &self.known_views(), self.store.as_ref(), false)
            .map_err(view_error)?;
        let answer = tables.query(query).map_err(view_error)?;
        let rows: Vec<Json> = answer
            .rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                for (name, value) in answer.columns.iter().zip(row) {
                    let value = match value {
                        views::tables::Value::Null => Json::Null,
                        views::tables::Value::Integer(i) => Json::from(*i),
                        views::tables::Value::Real(f) => {
                            serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
                        }
                        views::tables::Value::Text(t) => Json::from(t.as_str()),
                        views::tables::Value::Blob(b) => Json::from(fhir::base64_encode(b)),
                    };
                    object.insert(name.clone(), value);
                }
                Json::Object(object)
            })
            .collect();
        Ok(Response::json(200, serde_json::to_vec(&rows).unwrap_or_default()))
    }

    /// `GET ViewDefinition`: the known views as a searchset Bundle.
    pub(crate) fn list_views(&self) -> Response {
        let entries: Vec<Json> = self
            .known_views()
            .into_iter()
            .map(|view| json!({"fullUrl": format!("ViewDefinition/{}", view.name), "resource": view.definition, "search": {"mode": "match"}}))
            .collect();
        let bundle =
            json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
        Response::json(200, serde_json::to_vec(&bundle).unwrap_or_default())
    }

    /// `GET ViewDefinition/NAME`.
    pub(crate) fn read_view(&self, name: &str) -> Result<Response, ApiError> {
        let view = self.named_view(name)?;
        Ok(Response::json(200, serde_json::to_vec(&view.definition).unwrap_or_default()))
    }

    /// `ViewDefinition/$run` and `ViewDefinition/NAME/$run`. Inputs: the view (`viewResource`,
    /// a ViewDefinition body, or `viewReference` naming a known view), `_format` (json, ndjson,
    /// csv, parquet; json by default), `patient`, `_since`, `_limit`, and `resource` (inline
    /// resources to run over instead of the record).
    pub(crate) fn run_view_operation(
        &self,
        level: Level<'_>,
        inputs: &Inputs,
        body: Option<&Json>,
        gate: &Gate,
        accept: Option<&str>,
    ) -> Result<Response, ApiError> {
        // Rows over many records cannot withhold one resource of them.
        let patient = inputs.get("patient").map(|p| p.trim_start_matches("Patient/"));
        gate.bulk(patient)?;
        if let Some(patient) = patient {
            gate.touch(patient);
        }
        let view = match level {
            Level::Instance(_, name) => self.named_view(name)?.view,
            _ => match (body, inputs.resource("viewResource"), view_reference(inputs)) {
                (Some(body), _, _)
                    if body.get("resourceType").and_then(Json::as_str) == Some("ViewDefinition") =>
                {
                    views::view_definition(body).map_err(view_error)?
                }
                (_, Some(resource), _) => views::view_definition(resource).map_err(view_error)?,
                (_, None, Some(reference)) => {
                    let name = reference.trim_start_matches("ViewDefinition/");
                    self.named_view(name)?.view
                }
                _ => {
                    return Err(ApiError::bad_request(
                        IssueType::Required,
                        "$run needs a view: viewResource, viewReference, a ViewDefinition body, or ViewDefinition/NAME/$run",
                    ));
                }
            },
        };
        let format = match inputs.get("_format") {
            None => format_accepted(accept)?,
            Some(name) => name.parse::<Format>().map_err(|_| {
                ApiError::bad_request(
                    IssueType::Value,
                    format!("_format={name} is not an output of $run; use json, ndjson, csv or parquet"),
                )
            })?,
        };
        let scope = ViewScope {
            patient: inputs.get("patient").map(|p| p.trim_start_matches("Patient/").to_string()),
            since: inputs
                .get("_since")
                .map(|since| {
                    fhir::DateTime::parse(since, fhir::DateTimeKind::DateTime)
                        .map(|t| t.lower_bound_millis())
                        .map_err(|_| {
                            ApiError::bad_request(
                                IssueType::Value,
                                format!("_since must be an instant, got '{since}'"),
                            )
                        })
                })
                .transpose()?,
            limit: inputs.whole_number("_limit")?.map(|n| n as u64),
            deadline: Some(std::time::Instant::now() + RUN_TIME_LIMIT),
        };
        if let Some(patient) = &scope.patient
            && !fhir::is_valid_id(patient)
        {
            return Err(ApiError::bad_request(
                IssueType::Value,
                format!("patient must be Patient/ID, got '{patient}'"),
            ));
        }
        let inline = inline_resources(inputs);
        let bytes = if inline.is_empty() {
            // Each resource flattened is one the caller may see (a patient's run holds nothing
            // naming another patient, whatever its subject).
            let viewed = ViewedStore { store: self.store.as_ref(), gate };
            run_view(&viewed, &view, &scope, format, Vec::new()).map(|(bytes, _)| bytes)
        } else {
            run_inline(&view, &inline, &scope, format, Vec::new()).map(|(bytes, _)| bytes)
        }
        .map_err(|error| match error {
            views::Error::TooLong => ApiError::bad_request(
                IssueType::TooCostly,
                format!(
                    "the view ran longer than {} s; narrow it (patient, _since, _limit) or run it with `chartroom view run`",
                    RUN_TIME_LIMIT.as_secs()
                ),
            ),
            error => view_error(error),
        })?;
        let mut response = Response::json(200, bytes);
        response.content_type = Some(format.media_type());
        Ok(response)
    }
}

/// The `viewReference` input: a Reference in a Parameters body, or text.
fn view_reference(inputs: &Inputs) -> Option<&str> {
    let in_body = inputs.resource("viewReference").and_then(|r| r.get("reference")?.as_str());
    in_body.or_else(|| inputs.get("viewReference"))
}

/// The `resource` parameters of a Parameters body.
fn inline_resources(inputs: &Inputs) -> Vec<&Json> {
    inputs
        .0
        .all("resource")
        .filter_map(|input| match input {
            fhir::parameters::Input::Json(resource) => Some(resource),
            fhir::parameters::Input::Text(_) => None,
        })
        .collect()
}

/// What a view's failure means to the caller.
fn view_error(error: views::Error) -> ApiError {
    match error {
        views::Error::Unknown(_) => ApiError::not_found(error.to_string()),
        views::Error::Invalid(_) | views::Error::Input(_) | views::Error::Query(_) => {
            ApiError::bad_request(IssueType::Invalid, error.to_string())
        }
        views::Error::View(error @ sof::Error::Evaluation { .. }) => {
            ApiError::new(422, IssueType::Processing, error.to_string())
        }
        views::Error::View(error) => ApiError::internal(format!("the view could not be written: {error}")),
        views::Error::Store(error) => ApiError::from(error),
        views::Error::TooLong => ApiError::bad_request(IssueType::TooCostly, error.to_string()),
        views::Error::Broken(_) | views::Error::Tables(_) => ApiError::internal(error.to_string()),
    }
}

/// The output format `Accept` asks for when `_format` does not: the first media type listed
/// that is a format of `$run` (JSON for `*/*`, FHIR JSON or none); 406 when none is.
fn format_accepted(accept: Option<&str>) -> Result<Format, ApiError> {
    let Some(accept) = accept else { return Ok(Format::Json) };
    let mut ranges: Vec<(f32, usize, String)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(order, range)| {
            let mut parts = range.split(';');
            let media_type = parts.next()?.trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (quality > 0.0 && !media_type.is_empty()).then_some((quality, order, media_type))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, media_type) in &ranges {
        let format = match media_type.as_str() {
            "*/*"
            | "application/*"
            | "application/json"
            | "application/fhir+json"
            | "application/json+fhir" => Some(Format::Json),
            "text/*" | "text/csv" => Some(Format::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/fhir+ndjson" => Some(Format::Ndjson),
            "application/vnd.apache.parquet" | "application/parquet" | "application/x-parquet" => {
                Some(Format::Parquet)
            }
            _ => None,
        };
        if let Some(format) = format {
            return Ok(format);
        }
    }
    if ranges.is_empty() {
        return Ok(Format::Json);
    }
    Err(ApiError::new(
        406,
        IssueType::NotSupported,
        format!(
            "$run cannot answer in {accept}; it gives text/csv, application/x-ndjson, application/json or application/vnd.apache.parquet"
        ),
    ))
}
