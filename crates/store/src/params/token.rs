//! Token parameters: `[system|]code` against codes, identifiers, contact points, booleans and
//! the like (`idx_token`), `:text` against displays and texts (`idx_token_text`), `:of-type`
//! against typed identifiers (`idx_identifier_type`), `:not` as the filter's negation.
//! `:in`, `:not-in`, `:above` and `:below` are expanded to codes by the terminology before
//! they reach the store (the store knows no terminology).

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment, Value};
use rusqlite::types::Value as SqlValue;
use serde_json::Value as Json;

use super::{ParamType, ParamValue, ValueError, split_escaped, unescape};
use crate::index::{IndexEntries, field, get, node_json, normalize, primitive_text, truncate};
use crate::search::Condition;
use crate::search::sql::{Sql, prefix_end};

/// Above this many alternatives, codes are grouped by system.
const GROUP_TOKENS_OVER: usize = 8;

pub struct TokenParam;

/// `[system|]code` as a condition: `system|` is any code of the system, `|code` a code without
/// a system.
pub fn condition(value: &str) -> Condition {
    let parts = split_escaped(value, '|');
    match parts.as_slice() {
        [code] => Condition::Token { system: None, code: Some(unescape(code)) },
        [system, code] => Condition::Token {
            system: Some(unescape(system)),
            code: if code.is_empty() { None } else { Some(unescape(code)) },
        },
        _ => Condition::Token { system: None, code: Some(unescape(value)) },
    }
}

impl ParamType for TokenParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Token
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        let value = param.value;
        match modifier {
            None | Some("not") => Ok(condition(value)),
            Some("text") => Ok(Condition::TokenText(normalize(&unescape(value)))),
            Some("of-type") => {
                match split_escaped(value, '|').as_slice() {
                    [system, code, identifier] => Ok(Condition::OfType {
                        system: unescape(system),
                        code: unescape(code),
                        value: unescape(identifier),
                    }),
                    _ => Err(param
                        .invalid(format!("{}:of-type needs system|code|value, got '{value}'", param.code()))),
                }
            }
            Some(other) => Err(param.unsupported_modifier(other)),
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
            tokens(rows, key, value);
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_token"
    }

    fn table(&self, condition: &Condition) -> &'static str {
        match condition {
            Condition::TokenText(_) => "idx_token_text",
            Condition::OfType { .. } => "idx_identifier_type",
            _ => "idx_token",
        }
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        match condition {
            Condition::Token { system, code } => {
                let mut parts = 0;
                sql.push("(");
                if let Some(code) = code {
                    sql.push("x.code = ");
                    sql.bind(code.clone());
                    parts += 1;
                }
                if let Some(system) = system {
                    if parts > 0 {
                        sql.push(" AND ");
                    }
                    sql.push("x.system = ");
                    sql.bind(system.clone());
                    parts += 1;
                }
                if parts == 0 {
                    sql.push("1 = 1");
                }
                sql.push(")");
            }
            Condition::TokenText(text) => {
                sql.push("((x.text >= ");
                sql.bind(text.clone());
                sql.push(" AND x.text < ");
                sql.bind(prefix_end(text));
                sql.push(") OR instr(x.text, ");
                sql.bind(format!(" {text}"));
                sql.push(") > 0)");
            }
            Condition::OfType { system, code, value } => {
                sql.push("(x.value = ");
                sql.bind(value.clone());
                sql.push(" AND x.type_system = ");
                sql.bind(system.clone());
                sql.push(" AND x.type_code = ");
                sql.bind(code.clone());
                sql.push(")");
            }
            _ => sql.push("1 = 0"),
        }
    }

    /// Many codes of one system (a value set under `:in`, a hierarchy under `:below`) are
    /// bound as one array: SQLite limits an expression's depth to 1000, and one `IN` over an
    /// array is also faster than a chain of ORs.
    fn any_sql(&self, sql: &mut Sql, any: &[Condition], ranges: bool) {
        let mut groups: Vec<(&str, Vec<SqlValue>)> = Vec::new();
        let mut rest: Vec<&Condition> = Vec::new();
        for condition in any {
            match condition {
                Condition::Token { system: Some(system), code: Some(code) }
                    if any.len() > GROUP_TOKENS_OVER =>
                {
                    match groups.iter_mut().find(|(s, _)| s == system) {
                        Some((_, codes)) => codes.push(SqlValue::Text(code.clone())),
                        None => groups.push((system, vec![SqlValue::Text(code.clone())])),
                    }
                }
                other => rest.push(other),
            }
        }
        let mut first = true;
        let mut separate = |sql: &mut Sql| {
            if !first {
                sql.push(" OR ");
            }
            first = false;
        };
        for (system, codes) in groups {
            separate(sql);
            sql.push("(x.system = ");
            sql.bind(system.to_string());
            sql.push(" AND x.code IN ");
            sql.bind_list(codes);
            sql.push(")");
        }
        for condition in rest {
            separate(sql);
            self.condition_sql(sql, condition, ranges);
        }
    }

    fn selective(&self, condition: &Condition) -> bool {
        matches!(condition, Condition::Token { code: Some(_), .. } | Condition::OfType { .. })
    }

    fn streams(&self, condition: &Condition) -> bool {
        matches!(condition, Condition::Token { code: Some(_), .. })
    }

    fn probes(&self, condition: &Condition) -> bool {
        self.selective(condition)
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_token", "code")
    }
}

/// The token rows of one value: a code with its system (and its display for `:text`), an
/// identifier (and its type for `:of-type`), a contact point, a quantity's unit, a
/// reference's text, or a primitive as a code without a system.
pub(crate) fn tokens(entries: &mut IndexEntries, key: ParamKey, value: &Value<'_>) {
    let Some((node, object)) = node_json(value) else {
        if let Some(text) = primitive_text(value) {
            entries.tokens.push((key, String::new(), truncate(text)));
        }
        return;
    };
    let coding = |entries: &mut IndexEntries, coding: &serde_json::Map<String, Json>| {
        let system = field(coding, "system").unwrap_or("");
        if let Some(code) = field(coding, "code") {
            entries.tokens.push((key, system.to_string(), truncate(code.to_string())));
        }
        if let Some(display) = field(coding, "display") {
            entries.token_texts.push((key, normalize(display)));
        }
    };
    match node.type_name {
        "Coding" => coding(entries, object),
        "CodeableConcept" => {
            for item in get(object, "coding").and_then(Json::as_array).into_iter().flatten() {
                if let Some(item) = item.as_object() {
                    coding(entries, item);
                }
            }
            if let Some(text) = field(object, "text") {
                entries.token_texts.push((key, normalize(text)));
            }
        }
        "Identifier" => {
            let system = field(object, "system").unwrap_or("");
            if let Some(value) = field(object, "value") {
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
                let types = object.get("type").and_then(|t| t.get("coding")).and_then(Json::as_array);
                for ty in types.into_iter().flatten() {
                    if let (Some(ty_system), Some(ty_code)) = (ty["system"].as_str(), ty["code"].as_str()) {
                        entries.identifier_types.push((
                            key,
                            ty_system.to_string(),
                            ty_code.to_string(),
                            truncate(value.to_string()),
                        ));
                    }
                }
            }
            if let Some(text) = object.get("type").and_then(|t| t.get("text")).and_then(Json::as_str) {
                entries.token_texts.push((key, normalize(text)));
            }
        }
        "ContactPoint" => {
            if let Some(value) = field(object, "value") {
                let system = field(object, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
            }
        }
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity" => {
            if let Some(code) = field(object, "code") {
                let system = field(object, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), code.to_string()));
            }
        }
        "Reference" => {
            if let Some(reference) = field(object, "reference") {
                entries.tokens.push((key, String::new(), truncate(reference.to_string())));
            }
        }
        _ => {}
    }
}
