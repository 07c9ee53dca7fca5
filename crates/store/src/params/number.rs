//! Number parameters: a search value is a number with the range its precision implies
//! (`100` is [99.5, 100.5)), compared under its prefix with the indexed values (`idx_number`,
//! points, or ranges where the parameter's expression can find a Range).

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment, Value};

use super::{ParamType, ParamValue, ValueError, split_prefix};
use crate::index::IndexEntries;
use crate::search::sql::Sql;
use crate::search::{Condition, Prefix};

pub struct NumberParam;

/// A number as searched, with the range its precision implies (`100` = [99.5, 100.5)):
/// (prefix, value, low, high).
pub fn condition(code: &str, value: &str) -> Result<(Prefix, f64, f64, f64), ValueError> {
    let (prefix, text) = split_prefix(value);
    let number: f64 =
        text.parse().map_err(|_| ValueError::Invalid(format!("{code}: '{value}' is not a number")))?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let exponent: i32 = text.split_once(['e', 'E']).and_then(|(_, e)| e.parse().ok()).unwrap_or(0);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Ok((prefix, number, number - half, number + half))
}

impl ParamType for NumberParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Number
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        param.no_modifier(modifier)?;
        let (prefix, value, low, high) = condition(param.code(), param.value)?;
        Ok(Condition::Number { prefix, value, low, high })
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            if let Some(number) = number(value) {
                rows.numbers.push((key, number, number));
            }
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_number"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, ranges: bool) {
        let Condition::Number { prefix, value, low, high } = condition else { return sql.push("1 = 0") };
        point_sql(sql, ("x.low", "x.high"), ranges, *prefix, *value, *low, *high)
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_number", "low")
    }

    fn walks(&self) -> bool {
        true
    }
}

pub(crate) fn number(value: &Value<'_>) -> Option<f64> {
    match value.system().as_ref() {
        Value::Integer(i) | Value::Long(i) => Some(*i as f64),
        Value::Decimal(d) => d.to_string().parse().ok(),
        _ => None,
    }
}

/// Conditions on an indexed value `[low_col, high_col]` (a point where both are equal, or a
/// Range) against a search value with implicit precision range [low, high].
///
/// The upper bound is inclusive: the implicit range of a value written with 15+ significant
/// digits collapses to the value itself in f64. Only parameters that index Ranges (`ranges`)
/// pay for the second disjunct; for points, every comparison stays a range scan on `low_col`.
pub(crate) fn point_sql(
    sql: &mut Sql,
    columns: (&str, &str),
    ranges: bool,
    prefix: Prefix,
    value: f64,
    low: f64,
    high: f64,
) {
    let (low_col, high_col) = columns;
    let compare = |sql: &mut Sql, column: &str, op: &str, bound: f64| {
        sql.push(&format!("{column} {op} "));
        sql.bind(bound);
    };
    let within = |sql: &mut Sql, from: f64, to: f64| {
        sql.push("((");
        compare(sql, low_col, ">=", from);
        sql.push(" AND ");
        compare(sql, low_col, "<=", to);
        sql.push(")");
        if ranges {
            // A Range that starts below and reaches into the search range.
            sql.push(" OR (");
            compare(sql, low_col, "<", from);
            sql.push(" AND ");
            compare(sql, high_col, ">=", from);
            sql.push(")");
        }
        sql.push(")");
    };
    let upper = if ranges { high_col } else { low_col };
    match prefix {
        Prefix::Eq => within(sql, low, high),
        Prefix::Ne => {
            sql.push("(");
            compare(sql, upper, "<", low);
            sql.push(" OR ");
            compare(sql, low_col, ">", high);
            sql.push(")");
        }
        Prefix::Gt => compare(sql, upper, ">", value),
        Prefix::Ge => compare(sql, upper, ">=", value),
        Prefix::Lt => compare(sql, low_col, "<", value),
        Prefix::Le => compare(sql, low_col, "<=", value),
        Prefix::Sa => compare(sql, low_col, ">", value),
        Prefix::Eb => compare(sql, upper, "<", value),
        Prefix::Ap => {
            // Within 10% of the value.
            let margin = (value * 0.1).abs();
            within(sql, value - margin, value + margin)
        }
    }
}
