//! Reference parameters: `Type/id`, a bare id (any target type the parameter allows), an
//! absolute URL, `:Type` to narrow, `:identifier` against the reference's identifier (a token
//! row). Indexed in `idx_reference` as (target type, target id), or ('', URL) for references
//! that are not local; references inside the resource (`#id`) are not indexed.

use fhir::ReferenceTarget;
use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhirpath::{Collection, Environment, Value};
use serde_json::Value as Json;

use super::{ParamType, ParamValue, ValueError, token, unescape};
use crate::index::{IndexEntries, field, get, local_identity, node_json, primitive_text, truncate};
use crate::search::Condition;
use crate::search::sql::Sql;

pub struct ReferenceParam;

impl ParamType for ReferenceParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Reference
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        match modifier {
            Some("identifier") => Ok(token::condition(param.value)),
            Some(modifier) if !fhir::definitions().is_resource_type(modifier) => {
                Err(param.unsupported_modifier(modifier))
            }
            _ => reference_condition(param, modifier),
        }
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            references(rows, key, value);
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_reference"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        let Condition::Reference { target_types, target, url } = condition else { return sql.push("1 = 0") };
        sql.push("(x.target = ");
        sql.bind(target.clone());
        if *url {
            sql.push(" AND x.target_type = ''");
        } else if !target_types.is_empty() {
            sql.push(" AND x.target_type IN (");
            for (i, t) in target_types.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(t.clone());
            }
            sql.push(")");
        }
        sql.push(")");
    }

    fn selective(&self, _condition: &Condition) -> bool {
        true
    }

    fn streams(&self, condition: &Condition) -> bool {
        matches!(condition, Condition::Reference { target_types, url, .. } if *url || target_types.len() == 1)
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_reference", "target")
    }
}

fn reference_condition(param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
    let parameter = search_parameters().parameter(param.applied);
    let value = unescape(param.value);
    let local = match value.strip_prefix(param.base).and_then(|rest| rest.strip_prefix('/')) {
        Some(relative) => relative.to_string(),
        None => value.clone(),
    };
    if local.contains("://") {
        return Ok(Condition::Reference { target_types: Vec::new(), target: local, url: true });
    }
    if let Ok(ReferenceTarget::Local { resource_type, id, .. }) = fhir::parse_reference(&local) {
        if modifier.is_some_and(|m| m != resource_type) {
            return Err(param.invalid(format!(
                "{}: '{value}' is not a {}",
                param.code(),
                modifier.unwrap_or("")
            )));
        }
        return Ok(Condition::Reference {
            target_types: vec![resource_type.to_string()],
            target: id.to_string(),
            url: false,
        });
    }
    if !fhir::is_valid_id(&local) {
        return Err(param.invalid(format!("{}: '{value}' is neither a reference nor an id", param.code())));
    }
    let target_types = match modifier {
        Some(resource_type) => vec![resource_type.to_string()],
        // A bare id also matches canonical and relative references the index could not
        // type (stored with an empty target type).
        None => parameter.targets.iter().map(|t| t.to_string()).chain([String::new()]).collect(),
    };
    Ok(Condition::Reference { target_types, target: local, url: false })
}

/// The reference rows of one value (and a token row for a logical reference's identifier).
pub(crate) fn references(entries: &mut IndexEntries, key: ParamKey, value: &Value<'_>) {
    let reference = match node_json(value) {
        Some((_, object)) => {
            if let Some(identifier) = get(object, "identifier").and_then(Json::as_object)
                && let Some(value) = field(identifier, "value")
            {
                let system = field(identifier, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
            }
            match field(object, "reference") {
                Some(reference) => reference.to_string(),
                None => return,
            }
        }
        // canonical and uri values of reference parameters
        None => match primitive_text(value) {
            Some(text) => text,
            None => return,
        },
    };
    if reference.starts_with('#') {
        return;
    }
    match local_identity(&reference) {
        Some((resource_type, id)) if !reference.contains("://") => {
            entries.references.push((key, resource_type.to_string(), id.to_string()))
        }
        _ => entries.references.push((key, String::new(), truncate(reference))),
    }
}
