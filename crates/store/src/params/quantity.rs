//! Quantity parameters: `[prefix]number|system|code`. Values whose unit UCUM converts are
//! indexed (and searched) in base units under their dimension, so `5.4|http://unitsofmeasure.org|mg`
//! finds `5400 ug`; other units are compared as written, with their code (`idx_quantity`).
//! A Range is indexed as its low and high.

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment, Value};
use serde_json::Value as Json;

use super::number::point_sql;
use super::{ParamType, ParamValue, ValueError, number, split_escaped, unescape};
use crate::index::{IndexEntries, QuantityRow, field, get, node_json};
use crate::search::Condition;
use crate::search::sql::Sql;

const UCUM: &str = "http://unitsofmeasure.org";

/// The unit side of a quantity condition.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantityUnit {
    /// No unit given: compare values as written.
    Any,
    /// A UCUM unit: compare in base units of this dimension.
    Canonical(String),
    /// A unit that does not convert: compare values written with exactly this code.
    Code { system: Option<String>, code: String },
}

pub struct QuantityParam;

/// A quantity search value as a condition.
pub fn condition(code_name: &str, value: &str) -> Result<Condition, ValueError> {
    let parts = split_escaped(value, '|');
    if parts.len() > 3 {
        return Err(ValueError::Invalid(format!(
            "{code_name}: '{value}' has {} parts; a quantity is [prefix]number|system|code (escape a '|' in a code as '\\|')",
            parts.len()
        )));
    }
    let number = parts.first().map(String::as_str).unwrap_or("");
    let (prefix, amount, low, high) = number::condition(code_name, number)?;
    let system = parts.get(1).map(|s| unescape(s)).filter(|s| !s.is_empty());
    let code = parts.get(2).map(|s| unescape(s)).filter(|s| !s.is_empty());
    let Some(code) = code else {
        return Ok(Condition::Quantity { prefix, value: amount, low, high, unit: QuantityUnit::Any });
    };
    let ucum = system.as_deref().is_none_or(|s| s == UCUM);
    if ucum && let Some((factor, dimension)) = fhirpath::ucum::parse(&code) {
        let factor: f64 = factor.to_string().parse().unwrap_or(1.0);
        return Ok(Condition::Quantity {
            prefix,
            value: amount * factor,
            low: low * factor,
            high: high * factor,
            unit: QuantityUnit::Canonical(dimension_key(&dimension)),
        });
    }
    Ok(Condition::Quantity { prefix, value: amount, low, high, unit: QuantityUnit::Code { system, code } })
}

impl ParamType for QuantityParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Quantity
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        param.no_modifier(modifier)?;
        condition(param.code(), param.value)
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            if let Some(row) = quantity(key, value) {
                rows.quantities.push(row);
            }
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_quantity"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, ranges: bool) {
        let Condition::Quantity { prefix, value, low, high, unit } = condition else {
            return sql.push("1 = 0");
        };
        sql.push("(");
        match unit {
            QuantityUnit::Any => point_sql(sql, ("x.low", "x.high"), ranges, *prefix, *value, *low, *high),
            QuantityUnit::Canonical(dimension) => {
                sql.push("x.dimension = ");
                sql.bind(dimension.clone());
                sql.push(" AND ");
                point_sql(sql, ("x.canonical_low", "x.canonical_high"), ranges, *prefix, *value, *low, *high);
            }
            QuantityUnit::Code { system, code } => {
                sql.push("x.code = ");
                sql.bind(code.clone());
                if let Some(system) = system {
                    sql.push(" AND x.system = ");
                    sql.bind(system.clone());
                }
                sql.push(" AND ");
                point_sql(sql, ("x.low", "x.high"), ranges, *prefix, *value, *low, *high);
            }
        }
        sql.push(")");
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_quantity", "low")
    }
}

pub(crate) fn decimal_of(json: Option<&Json>) -> Option<rust_decimal::Decimal> {
    fhirpath_decimal(&json?.as_number()?.to_string())
}

pub(crate) fn fhirpath_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(text)
        .ok()
        .or_else(|| rust_decimal::Decimal::from_scientific(text).ok())
}

pub(crate) fn to_f64(decimal: rust_decimal::Decimal) -> f64 {
    decimal.to_string().parse().unwrap_or(f64::NAN)
}

/// A quantity row for a Quantity (or Money, or Range) value.
pub(crate) fn quantity(key: ParamKey, value: &Value<'_>) -> Option<QuantityRow> {
    let (node, object) = node_json(value)?;
    if node.type_name == "Range" {
        let low = object.get("low").and_then(|l| decimal_of(l.get("value")));
        let high = object.get("high").and_then(|h| decimal_of(h.get("value")));
        let unit_of = |side: &str| {
            object.get(side).and_then(|q| q.get("code").or_else(|| q.get("unit"))).and_then(Json::as_str)
        };
        let code = unit_of("low").or_else(|| unit_of("high")).unwrap_or("").to_string();
        let system = object
            .get("low")
            .or_else(|| object.get("high"))
            .and_then(|q| q.get("system"))
            .and_then(Json::as_str)
            .unwrap_or("");
        if low.is_none() && high.is_none() {
            return None;
        }
        let ucum_unit = if code.is_empty() { "1" } else { &code };
        let canonical_of = |side: Option<rust_decimal::Decimal>, unbounded: f64| match side {
            None => Some((None, unbounded)),
            Some(amount) => {
                fhirpath::ucum::canonical(amount, ucum_unit).map(|c| (Some(c.dimension), to_f64(c.value)))
            }
        };
        let canonical = match (canonical_of(low, f64::NEG_INFINITY), canonical_of(high, f64::INFINITY)) {
            (Some((low_dimension, low)), Some((high_dimension, high))) => {
                low_dimension.or(high_dimension).map(|dimension| (dimension_key(&dimension), low, high))
            }
            _ => None,
        };
        let (low, high) = (low.map_or(f64::NEG_INFINITY, to_f64), high.map_or(f64::INFINITY, to_f64));
        return Some(QuantityRow { param: key, low, high, system: system.to_string(), code, canonical });
    }
    let amount = decimal_of(get(object, "value"))?;
    let system = field(object, "system").unwrap_or("").to_string();
    let code = field(object, "code")
        .or_else(|| field(object, "currency"))
        .or_else(|| field(object, "unit"))
        .unwrap_or("")
        .to_string();
    let canonical = fhirpath::ucum::canonical(amount, if code.is_empty() { "1" } else { &code }).map(|c| {
        let value = to_f64(c.value);
        (dimension_key(&c.dimension), value, value)
    });
    let value = to_f64(amount);
    Some(QuantityRow { param: key, low: value, high: value, system, code, canonical })
}

/// A compact text form of a UCUM dimension vector, for equality in SQL.
pub fn dimension_key(dimension: &fhirpath::ucum::Dimension) -> String {
    dimension.iter().map(i8::to_string).collect::<Vec<_>>().join(",")
}
