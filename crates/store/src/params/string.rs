//! String parameters: matched case- and accent-insensitively from the start (default), exactly
//! (`:exact`) or anywhere (`:contains`). Indexed as (normalized, exact) pairs in `idx_string`;
//! a HumanName or Address is searched by its parts.

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment, Value};
use serde_json::Value as Json;

use super::{ParamType, ParamValue, ValueError, unescape};
use crate::index::{IndexEntries, node_json, normalize, primitive_text, truncate};
use crate::search::Condition;
use crate::search::sql::{Sql, prefix_end};

/// How a string value matches.
#[derive(Clone, Debug, PartialEq)]
pub enum StringMode {
    /// The value starts with the (normalized) search text: the default.
    Prefix,
    /// `:exact`: the value is exactly this text.
    Exact(String),
    /// `:contains`
    Contains,
}

pub struct StringParam;

impl ParamType for StringParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::String
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        let text = unescape(param.value);
        let normalized = normalize(&text);
        let mode = match modifier {
            None => StringMode::Prefix,
            Some("exact") => StringMode::Exact(text),
            Some("contains") => StringMode::Contains,
            Some(other) => return Err(param.unsupported_modifier(other)),
        };
        Ok(Condition::String { value: normalized, mode })
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            for text in strings(value) {
                rows.strings.push((key, normalize(&text), truncate(text)));
            }
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_string"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        let Condition::String { value, mode } = condition else { return sql.push("1 = 0") };
        match mode {
            StringMode::Prefix => {
                sql.push("(x.norm >= ");
                sql.bind(value.clone());
                sql.push(" AND x.norm < ");
                sql.bind(prefix_end(value));
                sql.push(")");
            }
            StringMode::Exact(exact) => {
                sql.push("(x.norm = ");
                sql.bind(value.clone());
                sql.push(" AND x.exact = ");
                sql.bind(exact.clone());
                sql.push(")");
            }
            StringMode::Contains => {
                sql.push("instr(x.norm, ");
                sql.bind(value.clone());
                sql.push(") > 0");
            }
        }
    }

    fn selective(&self, condition: &Condition) -> bool {
        matches!(condition, Condition::String { mode: StringMode::Exact(_), .. })
    }

    fn streams(&self, condition: &Condition) -> bool {
        self.selective(condition)
    }

    fn probes(&self, condition: &Condition) -> bool {
        self.selective(condition)
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_string", "norm")
    }
}

/// The strings a string parameter matches: a primitive itself, the parts of a name or an
/// address, or the string leaves of another complex value.
pub(crate) fn strings(value: &Value<'_>) -> Vec<String> {
    if let Some(text) = primitive_text(value) {
        return vec![text];
    }
    let Some((node, object)) = node_json(value) else { return Vec::new() };
    let parts: &[&str] = match node.type_name {
        "HumanName" => &["family", "given", "prefix", "suffix", "text"],
        "Address" => &["line", "city", "district", "state", "postalCode", "country", "text"],
        _ => &[],
    };
    let mut out = Vec::new();
    let mut push = |json: &Json| match json {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => out.extend(items.iter().filter_map(Json::as_str).map(str::to_string)),
        _ => {}
    };
    if parts.is_empty() {
        for (key, json) in object {
            if !matches!(key.as_str(), "extension" | "id" | "system" | "use") {
                push(json);
            }
        }
    } else {
        for part in parts {
            if let Some(json) = object.get(*part) {
                push(json);
            }
        }
    }
    out
}
