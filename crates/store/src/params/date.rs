//! Date parameters: a date, dateTime, instant, Period or Timing is indexed as the range of
//! instants it covers, [low, high) in ms (`idx_date`); a search value is a range too, from its
//! precision (`2020-03` is all of March), compared under its prefix (`ge`, `sa`, `ap`, ...).
//! A bounded scan of `idx_date.low` finds most matches; the few resources whose values are
//! wide or several are listed in `idx_date_wide` and checked one by one.

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhir::{DateTime, DateTimeKind};
use fhirpath::{Collection, Environment, Value};
use rusqlite::types::Value as SqlValue;
use serde_json::Value as Json;

use super::{ParamType, ParamValue, ValueError, split_prefix};
use crate::index::{IndexEntries, field, node_json};
use crate::search::sql::Sql;
use crate::search::{Condition, Prefix};

pub struct DateParam;

/// A date search value as (prefix, [low, high) in ms).
pub fn range(code: &str, value: &str) -> Result<(Prefix, i64, i64), ValueError> {
    let (prefix, text) = split_prefix(value);
    // A `+` of a time-zone offset arrives decoded as a space.
    let text = text.replace(' ', "+");
    let date = DateTime::parse(&text, DateTimeKind::Partial)
        .map_err(|e| ValueError::Invalid(format!("{code}: '{value}' is not a date: {e}")))?;
    Ok((prefix, date.lower_bound_millis(), date.upper_bound_millis()))
}

impl ParamType for DateParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Date
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        param.no_modifier(modifier)?;
        let (prefix, low, high) = range(param.code(), param.value)?;
        Ok(Condition::Date { prefix, low, high })
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            if let Some((low, high)) = date_range(value) {
                rows.dates.push((key, low, high));
            }
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_date"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        let Condition::Date { prefix, low, high } = condition else { return sql.push("1 = 0") };
        date_condition_sql(sql, *prefix, *low, *high)
    }

    /// A bounded stretch of `idx_date.low` per condition, and the wide values one by one.
    fn set_sql(&self, sql: &mut Sql, key: ParamKey, any: &[Condition], ranges: bool) {
        match date_conditions(any) {
            Some(dates) if !dates.is_empty() => date_set(sql, key, &dates),
            _ => super::index_set(self, sql, key, any, ranges),
        }
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_date", "low")
    }

    fn walks(&self) -> bool {
        true
    }
}

/// `[low, high)` conditions for a range prefix, on columns `lo`/`hi` (target range) against
/// the search range [sl, sh).
pub(crate) fn range_sql<T: Into<SqlValue> + Copy>(
    sql: &mut Sql,
    lo: &str,
    hi: &str,
    prefix: Prefix,
    sl: T,
    sh: T,
) {
    match prefix {
        Prefix::Eq => {
            sql.push(&format!("({lo} >= "));
            sql.bind(sl);
            sql.push(&format!(" AND {hi} <= "));
            sql.bind(sh);
            sql.push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("({lo} < "));
            sql.bind(sl);
            sql.push(&format!(" OR {hi} > "));
            sql.bind(sh);
            sql.push(")");
        }
        Prefix::Gt => {
            sql.push(&format!("{hi} > "));
            sql.bind(sh);
        }
        Prefix::Lt => {
            sql.push(&format!("{lo} < "));
            sql.bind(sl);
        }
        Prefix::Ge => {
            sql.push(&format!("({hi} > "));
            sql.bind(sh);
            sql.push(&format!(" OR ({lo} >= "));
            sql.bind(sl);
            sql.push(&format!(" AND {hi} <= "));
            sql.bind(sh);
            sql.push("))");
        }
        Prefix::Le => {
            sql.push(&format!("({lo} < "));
            sql.bind(sl);
            sql.push(&format!(" OR ({lo} >= "));
            sql.bind(sl);
            sql.push(&format!(" AND {hi} <= "));
            sql.bind(sh);
            sql.push("))");
        }
        Prefix::Sa => {
            sql.push(&format!("{lo} >= "));
            sql.bind(sh);
        }
        Prefix::Eb => {
            sql.push(&format!("{hi} <= "));
            sql.bind(sl);
        }
        Prefix::Ap => {
            // Overlaps the search range (the caller has widened it).
            sql.push(&format!("({lo} < "));
            sql.bind(sh);
            sql.push(&format!(" AND {hi} > "));
            sql.bind(sl);
            sql.push(")");
        }
    }
}

/// For `ap`, the search range widened by a tenth of its width (at least a day) on both sides;
/// other prefixes use it as given.
pub(crate) fn approximate(prefix: Prefix, low: i64, high: i64) -> (i64, i64) {
    if prefix != Prefix::Ap {
        return (low, high);
    }
    let widen = ((high.saturating_sub(low)) / 10).max(86_400_000);
    (low.saturating_sub(widen), high.saturating_add(widen))
}

/// Bounds on `low` of the values meeting a date condition that are not wide (see
/// `idx_date_wide`): (inclusive lower, exclusive upper), and whether wide values can meet
/// the condition without being inside those bounds.
pub(crate) fn date_low_bounds(prefix: Prefix, low: i64, high: i64) -> (Option<i64>, Option<i64>, bool) {
    let (sl, sh) = approximate(prefix, low, high);
    let wide = crate::sqlite::WIDE_DATE_MS;
    match prefix {
        Prefix::Eq => (Some(sl), Some(sh), false),
        Prefix::Ne => (None, None, false),
        // The value ends after sh (or inside the range): a narrow one starts at most `wide` before.
        Prefix::Gt => (Some(sh.saturating_sub(wide)), None, true),
        Prefix::Ge => (Some(sl.saturating_sub(wide)), None, true),
        Prefix::Ap => (Some(sl.saturating_sub(wide)), Some(sh), true),
        Prefix::Lt | Prefix::Eb => (None, Some(sl), false),
        Prefix::Le => (None, Some(sh), false),
        Prefix::Sa => (Some(sh), None, false),
    }
}

pub(crate) fn date_condition_sql(sql: &mut Sql, prefix: Prefix, low: i64, high: i64) {
    let (low, high) = approximate(prefix, low, high);
    range_sql(sql, "x.low", "x.high", prefix, low, high)
}

/// The resources with a value of date parameter `key` meeting any of `conditions`, as a set:
/// each condition scans a bounded stretch of `idx_date.low`, and the few resources with wide
/// values are checked one by one.
pub(crate) fn date_set(sql: &mut Sql, key: ParamKey, conditions: &[(Prefix, i64, i64)]) {
    sql.push("SELECT x.rkey FROM idx_date x WHERE x.param = ");
    sql.bind(i64::from(key));
    sql.push(" AND (");
    let mut any_wide = false;
    for (i, &(prefix, low, high)) in conditions.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        let (from, to, wide) = date_low_bounds(prefix, low, high);
        any_wide |= wide;
        sql.push("(");
        if let Some(from) = from {
            sql.push("x.low >= ");
            sql.bind(from);
            sql.push(" AND ");
        }
        if let Some(to) = to {
            sql.push("x.low < ");
            sql.bind(to);
            sql.push(" AND ");
        }
        date_condition_sql(sql, prefix, low, high);
        sql.push(")");
    }
    sql.push(")");
    if any_wide {
        sql.push(
            " UNION ALL SELECT x.rkey FROM idx_date_wide w CROSS JOIN idx_date x ON x.rkey = w.rkey AND x.param = w.param
               WHERE w.param = ",
        );
        sql.bind(i64::from(key));
        sql.push(" AND w.wide = 1 AND (");
        for (i, &(prefix, low, high)) in conditions.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            date_condition_sql(sql, prefix, low, high);
        }
        sql.push(")");
    }
}

/// The date conditions of a filter, if it has only date conditions.
pub(crate) fn date_conditions(any: &[Condition]) -> Option<Vec<(Prefix, i64, i64)>> {
    any.iter()
        .map(|condition| match condition {
            Condition::Date { prefix, low, high } => Some((*prefix, *low, *high)),
            _ => None,
        })
        .collect()
}

/// The instant range a date value covers: [low, high) in ms.
pub fn date_range(value: &Value<'_>) -> Option<(i64, i64)> {
    match value.system().as_ref() {
        Value::Date(d) | Value::DateTime(d) => return Some((d.lower_bound_millis(), d.upper_bound_millis())),
        Value::String(s) => {
            let d = DateTime::parse(s, DateTimeKind::Partial).ok()?;
            return Some((d.lower_bound_millis(), d.upper_bound_millis()));
        }
        _ => {}
    }
    let (node, object) = node_json(value)?;
    let bound = |name: &str, upper: bool| -> Option<i64> {
        let d = DateTime::parse(field(object, name)?, DateTimeKind::Partial).ok()?;
        Some(if upper { d.upper_bound_millis() } else { d.lower_bound_millis() })
    };
    match node.type_name {
        "Period" => {
            let (low, high) = (bound("start", false), bound("end", true));
            if low.is_none() && high.is_none() {
                return None;
            }
            Some((low.unwrap_or(i64::MIN), high.unwrap_or(i64::MAX)))
        }
        "Timing" => {
            let events: Vec<(i64, i64)> = object
                .get("event")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .filter_map(|e| DateTime::parse(e, DateTimeKind::Partial).ok())
                .map(|d| (d.lower_bound_millis(), d.upper_bound_millis()))
                .collect();
            let bounds = object.get("repeat").and_then(|r| r.get("boundsPeriod")).and_then(Json::as_object);
            let period = bounds.map(|p| {
                let start = p
                    .get("start")
                    .and_then(Json::as_str)
                    .and_then(|s| DateTime::parse(s, DateTimeKind::Partial).ok());
                let end = p
                    .get("end")
                    .and_then(Json::as_str)
                    .and_then(|s| DateTime::parse(s, DateTimeKind::Partial).ok());
                (
                    start.map_or(i64::MIN, |d| d.lower_bound_millis()),
                    end.map_or(i64::MAX, |d| d.upper_bound_millis()),
                )
            });
            let low = events.iter().map(|e| e.0).chain(period.map(|p| p.0)).min()?;
            let high = events.iter().map(|e| e.1).chain(period.map(|p| p.1)).max()?;
            Some((low, high))
        }
        _ => None,
    }
}

/// The resources with one value of date parameter `key` meeting all of `conditions` (each
/// alone is often half the data; together, one stretch of `idx_date.low`), plus those with
/// several values or wide ones, which the conditions must then check one by one: a superset.
pub(crate) fn all_of_set(sql: &mut Sql, key: ParamKey, conditions: &[(Prefix, i64, i64)]) {
    sql.push("SELECT x.rkey FROM idx_date x WHERE x.param = ");
    sql.bind(i64::from(key));
    let mut from = i64::MIN;
    let mut to = i64::MAX;
    for &(prefix, low, high) in conditions {
        let (lower, upper, _) = date_low_bounds(prefix, low, high);
        from = from.max(lower.unwrap_or(i64::MIN));
        to = to.min(upper.unwrap_or(i64::MAX));
    }
    sql.push(" AND x.low >= ");
    sql.bind(from);
    sql.push(" AND x.low < ");
    sql.bind(to);
    for &(prefix, low, high) in conditions {
        sql.push(" AND ");
        date_condition_sql(sql, prefix, low, high);
    }
    // Wide single values must meet every condition; several values may each meet one.
    sql.push(
        " UNION ALL SELECT x.rkey FROM idx_date_wide w CROSS JOIN idx_date x ON x.rkey = w.rkey AND x.param = w.param
           WHERE w.param = ",
    );
    sql.bind(i64::from(key));
    sql.push(" AND w.multi = 0");
    for &(prefix, low, high) in conditions {
        sql.push(" AND ");
        date_condition_sql(sql, prefix, low, high);
    }
    sql.push(" UNION ALL SELECT rkey FROM idx_date_wide WHERE multi = 1 AND param = ");
    sql.bind(i64::from(key));
}
