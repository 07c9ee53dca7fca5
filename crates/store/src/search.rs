//! Search over the index: a query model (what the API parsed from the URL) and its execution
//! as SQL.
//!
//! Planning, in short: every filter is a set of resource keys. The query is driven by the
//! most selective one: a small set (at most [`SMALL_SET`] keys) is materialized and sorted;
//! otherwise a single-value equality streams keys in commit order straight from its index
//! (first pages cost a page, not the whole set); otherwise the resources of the type are
//! walked in order and each filter is probed. Sorted searches materialize all matches and
//! sort them in memory, which makes paging in both directions exact.

use std::cmp::Ordering;
use std::rc::Rc;

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, ToSql, params_from_iter};

use crate::{Result, VersionRecord, WriteMethod};

/// A set at most this large is materialized to drive a query.
pub const SMALL_SET: usize = 5000;

/// Sorted results larger than this are produced by walking the sort key's index.
const WALK_OVER: usize = 1000;

/// A search prefix (`ge2020`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

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

/// How a uri matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// `:below`: the value starts with the search uri.
    Below,
    /// `:above`: the search uri starts with the value.
    Above,
}

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

/// One condition on one parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `value` is normalized (lowercase, no accents).
    String {
        value: String,
        mode: StringMode,
    },
    /// `system|code`; `None` for "any", `Some("")` for "no system".
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// `:text` on a token: the display or text starts with (a word starting with) this.
    TokenText(String),
    /// `:of-type`: an identifier of this type with this value.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    /// A local reference (`target_types` narrows; empty = any) or an absolute URL (`url`).
    Reference {
        target_types: Vec<String>,
        target: String,
        url: bool,
    },
    /// Date range [low, high) in ms.
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// `value` with its implicit precision range [low, high).
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        unit: QuantityUnit,
    },
    Uri {
        value: String,
        mode: UriMode,
    },
    /// First component a code, second any of the other conditions.
    Composite {
        system: Option<String>,
        code: String,
        second: Box<Condition>,
    },
}

/// One AND-ed part of a search.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `_id`: any of these ids.
    Ids(Vec<String>),
    /// `_lastUpdated`: any of these (prefix, [low, high)).
    LastUpdated(Vec<(Prefix, i64, i64)>),
    /// Any of the conditions holds for a value of the parameter.
    Param { key: ParamKey, any: Vec<Condition> },
    /// `:not`: no value of the parameter meets any condition.
    Not { key: ParamKey, any: Vec<Condition> },
    /// `:missing`: the parameter has (`false`) or has no (`true`) value.
    Missing { key: ParamKey, kind: SearchParamType, missing: bool },
    /// Chaining: reference parameter `key` points to a `target_type` resource matching all of
    /// `filters`.
    Chain { key: ParamKey, target_type: String, filters: Vec<Filter> },
    /// Any of the filters (a chain over several possible target types).
    AnyOf(Vec<Filter>),
    /// `_has`: some `source_type` resource whose reference parameter `key` points here
    /// matches all of `filters`.
    Has { source_type: String, key: ParamKey, filters: Vec<Filter> },
    /// In the compartment of `target_type/target_id`: references it through one of `keys`.
    Compartment { keys: Vec<ParamKey>, target_type: String, target_id: String },
    /// Not in the compartment of `target_type/target_id` (through `keys`, or without them
    /// through any reference the index holds); with `labelled`,
    /// only those of its resources are excluded that carry one of the codes of that token
    /// parameter (`_security`). What the access policy withholds, left out in the store.
    Excluded {
        keys: Vec<ParamKey>,
        target_type: String,
        target_id: String,
        labelled: Option<(ParamKey, Vec<Condition>)>,
    },
    /// Not these resources (by id); with `labelled`, only those of them carrying one of the
    /// codes of that token parameter. A Patient under a directive, left out in the store.
    ExcludedIds { ids: Vec<String>, labelled: Option<(ParamKey, Vec<Condition>)> },
    /// Referring to no `target_type` other than `target_id`, through any reference the
    /// index holds: a patient's view of types outside their compartment.
    OnlyTarget { target_type: String, target_id: String },
}

/// A sort key.
#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    pub by: SortBy,
    pub descending: bool,
}

/// What to sort by.
#[derive(Clone, Debug, PartialEq)]
pub enum SortBy {
    Id,
    LastUpdated,
    Param { key: ParamKey, kind: SearchParamType },
}

/// A value sorted on.
#[derive(Clone, Debug, PartialEq)]
pub enum SortValue {
    Missing,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl SortValue {
    fn compare(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            // Resources without a value sort after all others.
            (SortValue::Missing, SortValue::Missing) => Ordering::Equal,
            (SortValue::Missing, _) => Ordering::Greater,
            (_, SortValue::Missing) => Ordering::Less,
            (SortValue::Integer(a), SortValue::Integer(b)) => a.cmp(b),
            (SortValue::Real(a), SortValue::Real(b)) => a.total_cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => a.cmp(b),
            (SortValue::Integer(a), SortValue::Real(b)) => (*a as f64).total_cmp(b),
            (SortValue::Real(a), SortValue::Integer(b)) => a.total_cmp(&(*b as f64)),
            (SortValue::Integer(_) | SortValue::Real(_), SortValue::Text(_)) => Ordering::Less,
            (SortValue::Text(_), _) => Ordering::Greater,
        }
    }
}

/// Where a page starts: after (or before) this position in the result order.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub sort_values: Vec<SortValue>,
    pub rkey: i64,
    /// `true`: the page ends just before this position (a "previous" link).
    pub before: bool,
}

/// A search of one resource type.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub resource_type: String,
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
    pub count: usize,
    pub cursor: Option<Cursor>,
    /// Count all matches.
    pub total: bool,
}

/// A page of search results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchPage {
    pub matches: Vec<VersionRecord>,
    /// The position of each match, in the same order (to page on from any of them).
    pub cursors: Vec<Cursor>,
    /// Position of the first and last match (for previous/next links).
    pub first: Option<Cursor>,
    pub last: Option<Cursor>,
    pub has_next: bool,
    pub has_previous: bool,
    pub total: Option<u64>,
}

/// SQL text with its bound values.
#[derive(Default)]
struct Sql {
    text: String,
    values: Vec<Box<dyn ToSql>>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn bind(&mut self, value: impl Into<SqlValue>) {
        self.text.push('?');
        self.values.push(Box::new(value.into()));
    }

    fn bind_rkeys(&mut self, rkeys: &[i64]) {
        self.text.push_str("rarray(?)");
        let values: Vec<SqlValue> = rkeys.iter().map(|k| SqlValue::Integer(*k)).collect();
        self.values.push(Box::new(Rc::new(values)));
    }
}

fn table_of(condition: &Condition) -> &'static str {
    match condition {
        Condition::String { .. } => "idx_string",
        Condition::Token { .. } => "idx_token",
        Condition::TokenText(_) => "idx_token_text",
        Condition::OfType { .. } => "idx_identifier_type",
        Condition::Reference { .. } => "idx_reference",
        Condition::Date { .. } => "idx_date",
        Condition::Number { .. } => "idx_number",
        Condition::Quantity { .. } => "idx_quantity",
        Condition::Uri { .. } => "idx_uri",
        Condition::Composite { .. } => "idx_composite",
    }
}

fn table_of_kind(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::String => "idx_string",
        SearchParamType::Token => "idx_token",
        SearchParamType::Reference => "idx_reference",
        SearchParamType::Date => "idx_date",
        SearchParamType::Number => "idx_number",
        SearchParamType::Quantity => "idx_quantity",
        SearchParamType::Uri => "idx_uri",
        SearchParamType::Composite => "idx_composite",
        SearchParamType::Special => "idx_token",
    }
}

/// Whether a table can be probed by rkey for any condition (it has an `(rkey, param)` index).
fn has_rkey_index(table: &str) -> bool {
    matches!(table, "idx_date" | "idx_number" | "idx_quantity" | "idx_reference")
}

/// The upper bound for a prefix range: every string starting with `prefix` sorts below it.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// `[low, high)` conditions for a range prefix, on columns `lo`/`hi` (target range) against
/// the search range [sl, sh).
fn range_sql<T: Into<SqlValue> + Copy>(sql: &mut Sql, lo: &str, hi: &str, prefix: Prefix, sl: T, sh: T) {
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

/// Any of the conditions on a lastUpdated column. A lastUpdated is an instant, the range
/// [t, t+1ms), so every prefix is a plain comparison the `(res_type, last_updated)` index serves.
fn last_updated_sql(sql: &mut Sql, column: &str, conditions: &[(Prefix, i64, i64)]) {
    sql.push("(");
    for (i, &(prefix, low, high)) in conditions.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        let (low, high) = approximate(prefix, low, high);
        let compare = |sql: &mut Sql, op: &str, bound: i64| {
            sql.push(&format!("{column} {op} "));
            sql.bind(bound);
        };
        match prefix {
            Prefix::Eq | Prefix::Ap => {
                sql.push("(");
                compare(sql, ">=", low);
                sql.push(" AND ");
                compare(sql, "<", high);
                sql.push(")");
            }
            Prefix::Ne => {
                sql.push("(");
                compare(sql, "<", low);
                sql.push(" OR ");
                compare(sql, ">=", high);
                sql.push(")");
            }
            Prefix::Gt | Prefix::Sa => compare(sql, ">=", high),
            Prefix::Ge => compare(sql, ">=", low),
            Prefix::Lt | Prefix::Eb => compare(sql, "<", low),
            Prefix::Le => compare(sql, "<", high),
        }
    }
    sql.push(")");
}

/// For `ap`, the search range widened by a tenth of its width (at least a day) on both sides;
/// other prefixes use it as given.
fn approximate(prefix: Prefix, low: i64, high: i64) -> (i64, i64) {
    if prefix != Prefix::Ap {
        return (low, high);
    }
    let widen = ((high.saturating_sub(low)) / 10).max(86_400_000);
    (low.saturating_sub(widen), high.saturating_add(widen))
}

/// Conditions on an indexed value `[low_col, high_col]` (a point where both are equal, or a
/// Range) against a search value with implicit precision range [low, high].
///
/// The upper bound is inclusive: the implicit range of a value written with 15+ significant
/// digits collapses to the value itself in f64. Only parameters that index Ranges (`ranges`)
/// pay for the second disjunct; for points, every comparison stays a range scan on `low_col`.
fn point_sql(
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

/// Whether a number or quantity parameter can hold Range values (`context-quantity`,
/// `onset-age`, ...), which need range-aware comparisons.
fn indexes_ranges(key: ParamKey) -> bool {
    search_parameters()
        .by_key(key)
        .and_then(|applied| applied.expression.as_deref())
        .is_some_and(|e| e.contains("Range"))
}

/// SQL for one condition on table alias `x`.
fn condition_sql(sql: &mut Sql, condition: &Condition, ranges: bool) {
    match condition {
        Condition::String { value, mode } => match mode {
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
        },
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
                sql.push("1");
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
        Condition::Reference { target_types, target, url } => {
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
        Condition::Date { prefix, low, high } => {
            let (low, high) = approximate(*prefix, *low, *high);
            range_sql(sql, "x.low", "x.high", *prefix, low, high)
        }
        Condition::Number { prefix, value, low, high } => {
            point_sql(sql, ("x.low", "x.high"), ranges, *prefix, *value, *low, *high)
        }
        Condition::Quantity { prefix, value, low, high, unit } => {
            sql.push("(");
            match unit {
                QuantityUnit::Any => {
                    point_sql(sql, ("x.low", "x.high"), ranges, *prefix, *value, *low, *high)
                }
                QuantityUnit::Canonical(dimension) => {
                    sql.push("x.dimension = ");
                    sql.bind(dimension.clone());
                    sql.push(" AND ");
                    point_sql(
                        sql,
                        ("x.canonical_low", "x.canonical_high"),
                        ranges,
                        *prefix,
                        *value,
                        *low,
                        *high,
                    );
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
        Condition::Uri { value, mode } => match mode {
            UriMode::Exact => {
                sql.push("x.value = ");
                sql.bind(value.clone());
            }
            UriMode::Below => {
                sql.push("(x.value >= ");
                sql.bind(value.clone());
                sql.push(" AND x.value < ");
                sql.bind(prefix_end(value));
                sql.push(")");
            }
            UriMode::Above => {
                // Every `/`-prefix of the search uri (and the uri itself).
                let mut prefixes: Vec<String> = Vec::new();
                for (i, c) in value.char_indices() {
                    if c == '/' && i > 0 && !value[..i].ends_with(':') && !value[..i].ends_with('/') {
                        prefixes.push(value[..i].to_string());
                    }
                }
                prefixes.push(value.clone());
                sql.push("x.value IN (");
                for (i, p) in prefixes.into_iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(p);
                }
                sql.push(")");
            }
        },
        Condition::Composite { system, code, second } => {
            sql.push("(x.code = ");
            sql.bind(code.clone());
            if let Some(system) = system {
                sql.push(" AND x.system = ");
                sql.bind(system.clone());
            }
            sql.push(" AND ");
            match second.as_ref() {
                Condition::Token { system, code } => {
                    sql.push("(");
                    sql.push("x.second_text = ");
                    sql.bind(code.clone().unwrap_or_default());
                    if let Some(system) = system {
                        sql.push(" AND x.second_system = ");
                        sql.bind(system.clone());
                    }
                    sql.push(")");
                }
                Condition::String { value, .. } => {
                    sql.push("(x.second_text >= ");
                    sql.bind(value.clone());
                    sql.push(" AND x.second_text < ");
                    sql.bind(prefix_end(value));
                    sql.push(")");
                }
                Condition::Reference { target, .. } => {
                    sql.push("x.second_text = ");
                    sql.bind(target.clone());
                }
                Condition::Date { prefix, low, high } => {
                    let (low, high) = approximate(*prefix, *low, *high);
                    range_sql(sql, "x.second_low", "x.second_high", *prefix, low as f64, high as f64)
                }
                Condition::Number { prefix, value, low, high } => {
                    point_sql(sql, ("x.second_low", "x.second_high"), false, *prefix, *value, *low, *high)
                }
                Condition::Quantity { prefix, value, low, high, unit } => {
                    sql.push("(");
                    match unit {
                        QuantityUnit::Canonical(dimension) => {
                            sql.push("x.second_system = ");
                            sql.bind(format!("={dimension}"));
                            sql.push(" AND ");
                        }
                        QuantityUnit::Code { system, code } => {
                            sql.push("x.second_text = ");
                            sql.bind(code.clone());
                            if let Some(system) = system {
                                sql.push(" AND x.second_system = ");
                                sql.bind(system.clone());
                            }
                            sql.push(" AND ");
                        }
                        // Values as written, not their base-unit copies.
                        QuantityUnit::Any => sql.push("substr(x.second_system, 1, 1) <> '=' AND "),
                    }
                    point_sql(sql, ("x.second_low", "x.second_high"), false, *prefix, *value, *low, *high);
                    sql.push(")");
                }
                _ => sql.push("0"),
            }
            sql.push(")");
        }
    }
}

/// Bounds on `low` of the values meeting a date condition that are not wide (see
/// `idx_date_wide`): (inclusive lower, exclusive upper), and whether wide values can meet
/// the condition without being inside those bounds.
fn date_low_bounds(prefix: Prefix, low: i64, high: i64) -> (Option<i64>, Option<i64>, bool) {
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

fn date_condition_sql(sql: &mut Sql, prefix: Prefix, low: i64, high: i64) {
    let (low, high) = approximate(prefix, low, high);
    range_sql(sql, "x.low", "x.high", prefix, low, high)
}

/// The resources with a value of date parameter `key` meeting any of `conditions`, as a set:
/// each condition scans a bounded stretch of `idx_date.low`, and the few resources with wide
/// values are checked one by one.
fn date_set(sql: &mut Sql, key: ParamKey, conditions: &[(Prefix, i64, i64)]) {
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
fn date_conditions(any: &[Condition]) -> Option<Vec<(Prefix, i64, i64)>> {
    any.iter()
        .map(|condition| match condition {
            Condition::Date { prefix, low, high } => Some((*prefix, *low, *high)),
            _ => None,
        })
        .collect()
}

/// `SELECT rkey FROM table x WHERE x.param = key AND (any of conditions)`.
fn conditions_set(sql: &mut Sql, key: ParamKey, any: &[Condition]) {
    if let Some(dates) = date_conditions(any).filter(|d| !d.is_empty()) {
        return date_set(sql, key, &dates);
    }
    let table = any.first().map_or("idx_token", table_of);
    sql.push(&format!("SELECT x.rkey FROM {table} x WHERE x.param = "));
    sql.bind(i64::from(key));
    sql.push(" AND (");
    any_sql(sql, any, indexes_ranges(key));
    sql.push(")");
}

/// Above this many alternatives, token codes are grouped by system.
const GROUP_TOKENS_OVER: usize = 8;

/// The alternatives of one parameter joined with OR. Many token codes of one system (a value
/// set under `:in`, a hierarchy under `:below`) are bound as one array: SQLite limits an
/// expression's depth to 1000, and one `IN` over an array is also faster than a chain of ORs.
/// No alternative at all matches nothing (an empty value set).
fn any_sql(sql: &mut Sql, any: &[Condition], ranges: bool) {
    if any.is_empty() {
        sql.push("0");
        return;
    }
    let mut groups: Vec<(&str, Vec<SqlValue>)> = Vec::new();
    let mut rest: Vec<&Condition> = Vec::new();
    for condition in any {
        match condition {
            Condition::Token { system: Some(system), code: Some(code) } if any.len() > GROUP_TOKENS_OVER => {
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
        sql.push(" AND x.code IN rarray(?))");
        sql.values.push(Box::new(Rc::new(codes)));
    }
    for condition in rest {
        separate(sql);
        condition_sql(sql, condition, ranges);
    }
}

/// How likely a filter's set is to be small, for nested searches (chains, `_has`) that are
/// planned without counting: lower is better.
fn driver_rank(filter: &Filter) -> u8 {
    match filter {
        Filter::Ids(_) => 0,
        Filter::Param { any, .. }
            if any.iter().all(|c| {
                matches!(
                    c,
                    Condition::Token { code: Some(_), .. }
                        | Condition::Reference { .. }
                        | Condition::OfType { .. }
                        | Condition::String { mode: StringMode::Exact(_), .. }
                        | Condition::Uri { mode: UriMode::Exact, .. }
                )
            }) =>
        {
            1
        }
        Filter::Compartment { .. } => 1,
        Filter::Param { .. } | Filter::Chain { .. } | Filter::Has { .. } => 2,
        Filter::AnyOf(_) | Filter::LastUpdated(_) => 3,
        Filter::Not { .. }
        | Filter::Missing { .. }
        | Filter::Excluded { .. }
        | Filter::ExcludedIds { .. }
        | Filter::OnlyTarget { .. } => u8::MAX,
    }
}

/// The keys of the resources of `resource_type` that match every filter (unordered): driven
/// by the filter most likely to be selective, the others probed.
fn resources_set(sql: &mut Sql, resource_type: &str, filters: &[Filter]) {
    let driver = filters
        .iter()
        .enumerate()
        .filter(|(_, f)| driver_rank(f) < u8::MAX)
        .min_by_key(|(_, f)| driver_rank(f))
        .map(|(i, _)| i);
    match driver {
        Some(driver) => {
            sql.push("SELECT r.rkey FROM (");
            filter_set(sql, resource_type, &filters[driver]);
            sql.push(") d CROSS JOIN resources r ON r.rkey = d.rkey WHERE r.res_type = ");
        }
        None => sql.push("SELECT r.rkey FROM resources r WHERE r.res_type = "),
    }
    sql.bind(resource_type.to_string());
    sql.push(" AND r.deleted = 0");
    for (i, filter) in filters.iter().enumerate() {
        if Some(i) != driver {
            sql.push(" AND ");
            filter_check(sql, resource_type, filter);
        }
    }
}

/// SQL yielding the rkeys a (positive) filter selects. `None` for negative filters.
fn filter_set(sql: &mut Sql, resource_type: &str, filter: &Filter) -> bool {
    match filter {
        Filter::Ids(ids) => {
            sql.push("SELECT rkey FROM resources WHERE res_type = ");
            sql.bind(resource_type.to_string());
            sql.push(" AND res_id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(id.clone());
            }
            sql.push(")");
        }
        Filter::LastUpdated(conditions) => {
            sql.push("SELECT rkey FROM resources WHERE res_type = ");
            sql.bind(resource_type.to_string());
            sql.push(" AND ");
            last_updated_sql(sql, "last_updated", conditions);
        }
        Filter::Param { key, any } => conditions_set(sql, *key, any),
        Filter::Chain { key, target_type, filters } => {
            sql.push("SELECT x.rkey FROM (");
            resources_set(sql, target_type, filters);
            sql.push(
                ") t CROSS JOIN resources tr ON tr.rkey = t.rkey CROSS JOIN idx_reference x ON x.param = ",
            );
            sql.bind(i64::from(*key));
            sql.push(" AND x.target_type = tr.res_type AND x.target = tr.res_id");
        }
        Filter::AnyOf(filters) => {
            for (i, inner) in filters.iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ");
                }
                if !filter_set(sql, resource_type, inner) {
                    sql.push("SELECT rkey FROM resources WHERE 0");
                }
            }
        }
        Filter::Has { source_type, key, filters } => {
            // Targets of the matching sources' references, found from the target side.
            sql.push("SELECT t.rkey FROM resources t WHERE t.res_type = ");
            sql.bind(resource_type.to_string());
            sql.push(" AND EXISTS (SELECT 1 FROM idx_reference x WHERE x.param = ");
            sql.bind(i64::from(*key));
            sql.push(" AND x.target_type = t.res_type AND x.target = t.res_id AND x.rkey IN (");
            resources_set(sql, source_type, filters);
            sql.push("))");
        }
        Filter::Compartment { keys, target_type, target_id } => {
            sql.push("SELECT x.rkey FROM idx_reference x WHERE x.param IN (");
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(i64::from(*key));
            }
            sql.push(") AND x.target_type = ");
            sql.bind(target_type.clone());
            sql.push(" AND x.target = ");
            sql.bind(target_id.clone());
        }
        Filter::Not { .. }
        | Filter::Missing { .. }
        | Filter::Excluded { .. }
        | Filter::ExcludedIds { .. }
        | Filter::OnlyTarget { .. } => return false,
    }
    true
}

/// A condition on `r.rkey` (resources alias `r`) for one filter: a correlated probe where
/// the index can be entered by rkey, a set membership otherwise.
fn filter_check(sql: &mut Sql, resource_type: &str, filter: &Filter) {
    match filter {
        Filter::Param { key, any } if !any.is_empty() && probeable(any) => {
            let table = table_of(&any[0]);
            sql.push(&format!("EXISTS (SELECT 1 FROM {table} x WHERE x.param = "));
            sql.bind(i64::from(*key));
            sql.push(" AND x.rkey = r.rkey AND (");
            any_sql(sql, any, indexes_ranges(*key));
            sql.push("))");
        }
        Filter::Not { key, any } => {
            sql.push("r.rkey NOT IN (");
            conditions_set(sql, *key, any);
            sql.push(")");
        }
        Filter::Excluded { keys, target_type, target_id, labelled } => {
            sql.push("r.rkey NOT IN (SELECT e.rkey FROM idx_reference e WHERE ");
            if !keys.is_empty() {
                sql.push("e.param IN (");
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(i64::from(*key));
                }
                sql.push(") AND ");
            }
            sql.push("e.target_type = ");
            sql.bind(target_type.clone());
            sql.push(" AND e.target = ");
            sql.bind(target_id.clone());
            if let Some((key, any)) = labelled {
                sql.push(" AND e.rkey IN (");
                conditions_set(sql, *key, any);
                sql.push(")");
            }
            sql.push(")");
        }
        Filter::ExcludedIds { ids, labelled } => {
            sql.push("NOT (r.res_id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(id.clone());
            }
            if ids.is_empty() {
                sql.push("NULL");
            }
            sql.push(")");
            if let Some((key, any)) = labelled {
                sql.push(" AND r.rkey IN (");
                conditions_set(sql, *key, any);
                sql.push(")");
            }
            sql.push(")");
        }
        Filter::OnlyTarget { target_type, target_id } => {
            sql.push("NOT EXISTS (SELECT 1 FROM idx_reference o WHERE o.rkey = r.rkey AND o.target_type = ");
            sql.bind(target_type.clone());
            sql.push(" AND o.target <> ");
            sql.bind(target_id.clone());
            sql.push(")");
        }
        Filter::Missing { key, kind, missing } => {
            let table = table_of_kind(*kind);
            if has_rkey_index(table) {
                sql.push(if *missing { "NOT EXISTS (" } else { "EXISTS (" });
                sql.push(&format!("SELECT 1 FROM {table} x WHERE x.rkey = r.rkey AND x.param = "));
            } else {
                sql.push(if *missing { "r.rkey NOT IN (" } else { "r.rkey IN (" });
                sql.push(&format!("SELECT x.rkey FROM {table} x WHERE x.param = "));
            }
            sql.bind(i64::from(*key));
            sql.push(")");
        }
        Filter::AnyOf(filters) => {
            sql.push("(");
            for (i, inner) in filters.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                filter_check(sql, resource_type, inner);
            }
            if filters.is_empty() {
                sql.push("0");
            }
            sql.push(")");
        }
        other => {
            sql.push("r.rkey IN (");
            filter_set(sql, resource_type, other);
            sql.push(")");
        }
    }
}

/// A chain (or several, over the target types of one reference parameter) as a join:
/// the parameter and each target type with its filters.
/// The target types of a chain, each with the filters its targets must match.
type ChainTargets<'q> = Vec<(&'q str, &'q [Filter])>;

fn chain_join(filter: &Filter) -> Option<(ParamKey, ChainTargets<'_>)> {
    match filter {
        Filter::Chain { key, target_type, filters } => {
            Some((*key, vec![(target_type.as_str(), filters.as_slice())]))
        }
        Filter::AnyOf(inner) if !inner.is_empty() => {
            let mut key = None;
            let mut targets = Vec::new();
            for filter in inner {
                let Filter::Chain { key: k, target_type, filters } = filter else { return None };
                if key.is_some_and(|key| key != *k) {
                    return None;
                }
                key = Some(*k);
                targets.push((target_type.as_str(), filters.as_slice()));
            }
            Some((key?, targets))
        }
        _ => None,
    }
}

/// Whether every condition can be checked by an index lookup that includes the rkey.
fn probeable(any: &[Condition]) -> bool {
    any.iter().all(|condition| {
        has_rkey_index(table_of(condition))
            || matches!(
                condition,
                Condition::Token { code: Some(_), .. }
                    | Condition::String { mode: StringMode::Exact(_), .. }
                    | Condition::Reference { .. }
                    | Condition::Uri { mode: UriMode::Exact, .. }
                    | Condition::OfType { .. }
                    | Condition::Composite { .. }
            )
    })
}

/// A filter that can stream matches in rkey order from its index: one condition whose
/// index key fixes every column before `rkey`.
fn streamable(filter: &Filter) -> Option<(ParamKey, &Condition)> {
    let Filter::Param { key, any } = filter else { return None };
    let [condition] = any.as_slice() else { return None };
    let ordered = match condition {
        Condition::Token { code: Some(_), .. } => true,
        Condition::String { mode: StringMode::Exact(_), .. } => true,
        Condition::Reference { target_types, url, .. } => *url || target_types.len() == 1,
        Condition::Uri { mode: UriMode::Exact, .. } => true,
        Condition::Composite { .. } => true,
        _ => false,
    };
    ordered.then_some((*key, condition))
}

fn query_rkeys(connection: &Connection, sql: &Sql) -> Result<Vec<i64>> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let values: Vec<String> = sql.values.iter().map(|v| format!("{:?}", v.to_sql().ok())).collect();
        tracing::debug!(sql = %sql.text, values = %values.join(" | "), "search query");
    }
    let mut statement = connection.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.values.iter()), |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn count_capped(connection: &Connection, set: &Sql, cap: usize) -> Result<usize> {
    let sql = format!("SELECT count(*) FROM ({} LIMIT {})", set.text, cap + 1);
    let count: i64 =
        connection.prepare_cached(&sql)?.query_row(params_from_iter(set.values.iter()), |row| row.get(0))?;
    Ok(count as usize)
}

/// A set that can drive a query.
#[derive(Clone, Debug)]
enum Driver {
    /// One of the query's filters.
    Filter(usize),
    /// Several date filters on one parameter (`date=ge2020-03&date=lt2020-04`): the resources
    /// with one value meeting all of them, plus those with several or wide values (which
    /// the filters then check one by one). Each filter alone is half the data.
    DateRange { key: ParamKey, conditions: Vec<(Prefix, i64, i64)> },
    /// Every `_lastUpdated` filter at once: a resource has one lastUpdated, so this is exact.
    LastUpdated(Vec<Vec<(Prefix, i64, i64)>>),
}

/// How the matches of a query are produced in rkey order.
enum Plan {
    /// Materialize this (small) set, of about this many keys.
    Small(Driver, usize),
    /// Stream from this filter's index.
    Stream(usize),
    /// Walk the type's resources in order.
    Scan,
}

/// (prefix, low, high) of date conditions.
type DateConditions = Vec<(Prefix, i64, i64)>;

/// Drivers beyond single filters: combinations of filters whose intersection one index
/// range can produce.
fn combined_drivers(filters: &[Filter]) -> Vec<Driver> {
    let mut drivers = Vec::new();
    let mut by_key: Vec<(ParamKey, DateConditions)> = Vec::new();
    let mut last_updated = Vec::new();
    for filter in filters {
        match filter {
            Filter::Param { key, any } => {
                if let Some(dates) = date_conditions(any).filter(|d| d.len() == 1) {
                    match by_key.iter_mut().find(|(k, _)| k == key) {
                        Some((_, conditions)) => conditions.extend(dates),
                        None => by_key.push((*key, dates)),
                    }
                }
            }
            Filter::LastUpdated(conditions) => last_updated.push(conditions.clone()),
            _ => {}
        }
    }
    drivers.extend(
        by_key
            .into_iter()
            .filter(|(_, conditions)| conditions.len() > 1)
            .map(|(key, conditions)| Driver::DateRange { key, conditions }),
    );
    if last_updated.len() > 1 {
        drivers.push(Driver::LastUpdated(last_updated));
    }
    drivers
}

/// SQL yielding (a superset of, for `DateRange`) the rkeys of a driver.
fn driver_set(sql: &mut Sql, query: &SearchQuery, driver: &Driver) -> bool {
    match driver {
        Driver::Filter(index) => filter_set(sql, &query.resource_type, &query.filters[*index]),
        Driver::DateRange { key, conditions } => {
            sql.push("SELECT x.rkey FROM idx_date x WHERE x.param = ");
            sql.bind(i64::from(*key));
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
            sql.bind(i64::from(*key));
            sql.push(" AND w.multi = 0");
            for &(prefix, low, high) in conditions {
                sql.push(" AND ");
                date_condition_sql(sql, prefix, low, high);
            }
            sql.push(" UNION ALL SELECT rkey FROM idx_date_wide WHERE multi = 1 AND param = ");
            sql.bind(i64::from(*key));
            true
        }
        Driver::LastUpdated(groups) => {
            sql.push("SELECT rkey FROM resources WHERE res_type = ");
            sql.bind(query.resource_type.clone());
            for conditions in groups {
                sql.push(" AND ");
                last_updated_sql(sql, "last_updated", conditions);
            }
            true
        }
    }
}

fn plan(connection: &Connection, query: &SearchQuery) -> Result<Plan> {
    let mut best: Option<(Driver, usize)> = None;
    let drivers = (0..query.filters.len()).map(Driver::Filter).chain(combined_drivers(&query.filters));
    for driver in drivers {
        let count = match &driver {
            // A UNION is computed whole before any LIMIT applies: count its parts instead.
            Driver::Filter(index) if matches!(query.filters[*index], Filter::AnyOf(_)) => {
                let Filter::AnyOf(inner) = &query.filters[*index] else { unreachable!() };
                let mut total = 0;
                for filter in inner {
                    let mut set = Sql::default();
                    if !filter_set(&mut set, &query.resource_type, filter) {
                        total = usize::MAX;
                        break;
                    }
                    total += count_capped(connection, &set, SMALL_SET)?;
                    if total > SMALL_SET {
                        break;
                    }
                }
                total
            }
            _ => {
                let mut set = Sql::default();
                if !driver_set(&mut set, query, &driver) {
                    continue;
                }
                count_capped(connection, &set, SMALL_SET)?
            }
        };
        if best.as_ref().is_none_or(|(_, c)| count < *c) {
            best = Some((driver, count));
        }
    }
    if let Some((driver, count)) = best
        && count <= SMALL_SET
    {
        return Ok(Plan::Small(driver, count));
    }
    if let Some(index) = query.filters.iter().position(|f| streamable(f).is_some()) {
        return Ok(Plan::Stream(index));
    }
    Ok(Plan::Scan)
}

/// Builds the query producing matching rkeys in ascending order, from `after` (exclusive),
/// at most `limit` (all when `None`).
fn ordered_matches(
    query: &SearchQuery,
    plan: &Plan,
    after: Option<i64>,
    limit: Option<usize>,
    descending_before: Option<i64>,
) -> Sql {
    let mut sql = Sql::default();
    let others: Vec<(usize, &Filter)> = query
        .filters
        .iter()
        .enumerate()
        .filter(|(i, _)| match plan {
            Plan::Small(Driver::Filter(d), _) | Plan::Stream(d) => i != d,
            Plan::Small(..) | Plan::Scan => true,
        })
        .collect();
    // Chains are joined through the resource's own references (`idx_reference_rkey`) and
    // matched against their target set, which SQLite then computes once; as a correlated probe
    // the target set would be recomputed for every resource walked.
    let joined: Vec<(usize, ParamKey, ChainTargets<'_>)> = others
        .iter()
        .filter_map(|(i, filter)| chain_join(filter).map(|(key, targets)| (*i, key, targets)))
        .collect();
    let distinct = if joined.is_empty() { "" } else { "DISTINCT " };
    let key_column = match plan {
        Plan::Small(driver, _) => {
            sql.push(&format!("SELECT {distinct}r.rkey FROM (SELECT DISTINCT rkey FROM ("));
            driver_set(&mut sql, query, driver);
            sql.push(")) d CROSS JOIN resources r ON r.rkey = d.rkey");
            "r.rkey"
        }
        Plan::Stream(driver) => {
            let (_, condition) = streamable(&query.filters[*driver]).expect("planned as streamable");
            let table = table_of(condition);
            sql.push(&format!(
                "SELECT DISTINCT x.rkey FROM {table} x CROSS JOIN resources r ON r.rkey = x.rkey"
            ));
            "x.rkey"
        }
        Plan::Scan => {
            sql.push(&format!("SELECT {distinct}r.rkey FROM resources r"));
            "r.rkey"
        }
    };
    for (n, (_, key, _)) in joined.iter().enumerate() {
        sql.push(&format!(" CROSS JOIN idx_reference c{n} ON c{n}.rkey = r.rkey AND c{n}.param = "));
        sql.bind(i64::from(*key));
    }
    sql.push(" WHERE r.res_type = ");
    sql.bind(query.resource_type.clone());
    if let Plan::Stream(driver) = plan {
        let (key, condition) = streamable(&query.filters[*driver]).expect("planned as streamable");
        sql.push(" AND x.param = ");
        sql.bind(i64::from(key));
        sql.push(" AND ");
        condition_sql(&mut sql, condition, indexes_ranges(key));
    }
    sql.push(" AND r.deleted = 0");
    if let Some(after) = after {
        sql.push(&format!(" AND {key_column} > "));
        sql.bind(after);
    }
    if let Some(before) = descending_before {
        sql.push(&format!(" AND {key_column} < "));
        sql.bind(before);
    }
    for (n, (_, _, targets)) in joined.iter().enumerate() {
        sql.push(" AND (");
        for (t, (target_type, filters)) in targets.iter().enumerate() {
            if t > 0 {
                sql.push(" OR ");
            }
            // `+` keeps SQLite from seeking the index once per target: the set is probed instead.
            sql.push(&format!("(+c{n}.target_type, +c{n}.target) IN (SELECT tr.res_type, tr.res_id FROM ("));
            resources_set(&mut sql, target_type, filters);
            sql.push(") t CROSS JOIN resources tr ON tr.rkey = t.rkey)");
        }
        sql.push(")");
    }
    for (i, filter) in others {
        if joined.iter().any(|(j, _, _)| *j == i) {
            continue;
        }
        sql.push(" AND ");
        filter_check(&mut sql, &query.resource_type, filter);
    }
    let direction = if descending_before.is_some() { "DESC" } else { "ASC" };
    sql.push(&format!(" ORDER BY {key_column} {direction}"));
    if let Some(limit) = limit {
        sql.push(&format!(" LIMIT {limit}"));
    }
    sql
}

/// Runs a search on a read connection.
pub(crate) fn search(connection: &Connection, query: &SearchQuery) -> Result<SearchPage> {
    let plan = plan(connection, query)?;
    if !query.sort.is_empty() {
        // Sorting in memory costs a lookup per match; a walk of the sort key's index costs
        // about a page's worth of probes, once the matches are more than a few pages.
        let many = match plan {
            Plan::Small(_, count) => count > WALK_OVER,
            _ => true,
        };
        if many && walkable(&query.sort) {
            return sorted_walk(connection, query, &plan);
        }
        return sorted_search(connection, query, &plan);
    }
    let count = query.count;
    let cursor = query.cursor.as_ref();
    let mut rkeys = match cursor {
        Some(c) if c.before => {
            let mut keys =
                query_rkeys(connection, &ordered_matches(query, &plan, None, Some(count + 1), Some(c.rkey)))?;
            keys.reverse();
            keys
        }
        _ => query_rkeys(
            connection,
            &ordered_matches(query, &plan, cursor.map(|c| c.rkey), Some(count + 1), None),
        )?,
    };
    let (has_next, has_previous) = match cursor {
        Some(c) if c.before => {
            let more_before = rkeys.len() > count;
            if more_before {
                rkeys.remove(0);
            }
            (true, more_before)
        }
        Some(_) => {
            let more = rkeys.len() > count;
            rkeys.truncate(count);
            (more, true)
        }
        None => {
            let more = rkeys.len() > count;
            rkeys.truncate(count);
            (more, false)
        }
    };
    let total = if query.total || (cursor.is_none() && !has_next) {
        if !query.total {
            Some(rkeys.len() as u64)
        } else {
            let all = ordered_matches(query, &plan, None, None, None);
            let sql = format!("SELECT count(*) FROM ({})", all.text);
            let n: i64 = connection
                .prepare_cached(&sql)?
                .query_row(params_from_iter(all.values.iter()), |r| r.get(0))?;
            Some(n as u64)
        }
    } else {
        None
    };
    let position = |rkey: i64| Cursor { sort_values: Vec::new(), rkey, before: false };
    Ok(SearchPage {
        cursors: rkeys.iter().map(|k| position(*k)).collect(),
        first: rkeys.first().map(|k| position(*k)),
        last: rkeys.last().map(|k| position(*k)),
        matches: fetch(connection, &rkeys)?,
        has_next,
        has_previous,
        total,
    })
}

/// Whether the sort is one key an index yields in order: large results are then sorted by
/// walking that index (and probing the filters) instead of materializing every match.
fn walkable(sort: &[Sort]) -> bool {
    matches!(
        sort,
        [Sort { by: SortBy::Id | SortBy::LastUpdated, .. }]
            | [Sort { by: SortBy::Param { kind: SearchParamType::Date | SearchParamType::Number, .. }, .. }]
    )
}

fn sort_value_sql(sql: &mut Sql, value: &SortValue) {
    match value {
        SortValue::Integer(i) => sql.bind(*i),
        SortValue::Real(f) => sql.bind(*f),
        SortValue::Text(t) => sql.bind(t.clone()),
        SortValue::Missing => sql.push("NULL"),
    }
}

/// Matches with a value for the (single, walkable) sort key, from a position (exclusive) in
/// result order, or backward from it (then in reverse result order). Result order is the
/// value (ascending or descending) and then rkey ascending, as in [`sorted_search`].
fn walk_valued(
    connection: &Connection,
    query: &SearchQuery,
    position: Option<(&SortValue, i64)>,
    backward: bool,
    limit: usize,
) -> Result<Vec<(SortValue, i64)>> {
    let sort = &query.sort[0];
    let mut sql = Sql::default();
    let column = match &sort.by {
        SortBy::Id => {
            sql.push("SELECT r.rkey, r.res_id FROM resources r WHERE 1");
            "r.res_id"
        }
        SortBy::LastUpdated => {
            sql.push("SELECT r.rkey, r.last_updated FROM resources r WHERE 1");
            "r.last_updated"
        }
        SortBy::Param { key, kind } => {
            let table = if *kind == SearchParamType::Number { "idx_number" } else { "idx_date" };
            let aggregate = if sort.descending { "max" } else { "min" };
            // A resource is met once, at the row holding its sort value.
            sql.push(&format!(
                "SELECT x.rkey, x.low FROM {table} x CROSS JOIN resources r ON r.rkey = x.rkey WHERE x.param = "
            ));
            sql.bind(i64::from(*key));
            sql.push(&format!(
                " AND x.low = (SELECT {aggregate}(y.low) FROM {table} y WHERE y.rkey = x.rkey AND y.param = x.param)"
            ));
            "x.low"
        }
    };
    // Walking toward larger values: ascending forward, or descending backward.
    let increasing = sort.descending == backward;
    let (beyond, strictly) = if increasing { (">=", ">") } else { ("<=", "<") };
    let rkey_beyond = if backward { "<" } else { ">" };
    if let Some((value, rkey)) = position {
        sql.push(&format!(" AND {column} {beyond} "));
        sort_value_sql(&mut sql, value);
        sql.push(&format!(" AND ({column} {strictly} "));
        sort_value_sql(&mut sql, value);
        sql.push(&format!(" OR r.rkey {rkey_beyond} "));
        sql.bind(rkey);
        sql.push(")");
    }
    sql.push(" AND r.res_type = ");
    sql.bind(query.resource_type.clone());
    sql.push(" AND r.deleted = 0");
    for filter in &query.filters {
        sql.push(" AND ");
        filter_check(&mut sql, &query.resource_type, filter);
    }
    sql.push(&format!(
        " ORDER BY {column} {}, r.rkey {}",
        if increasing { "ASC" } else { "DESC" },
        if backward { "DESC" } else { "ASC" }
    ));
    // Rows with equal values and rkey (a value indexed twice) are one match.
    let mut fetch_rows = limit + 8;
    loop {
        let mut statement = connection.prepare_cached(&format!("{} LIMIT {fetch_rows}", sql.text))?;
        let rows = statement.query_map(params_from_iter(sql.values.iter()), |row| {
            let value = match row.get_ref(1)? {
                rusqlite::types::ValueRef::Integer(i) => SortValue::Integer(i),
                rusqlite::types::ValueRef::Real(f) => SortValue::Real(f),
                rusqlite::types::ValueRef::Text(t) => {
                    SortValue::Text(String::from_utf8_lossy(t).into_owned())
                }
                _ => SortValue::Missing,
            };
            Ok((value, row.get::<_, i64>(0)?))
        })?;
        let raw: Vec<(SortValue, i64)> = rows.collect::<rusqlite::Result<_>>()?;
        let exhausted = raw.len() < fetch_rows;
        let mut matches = raw;
        matches.dedup_by(|a, b| a.1 == b.1 && a.0 == b.0);
        if matches.len() >= limit || exhausted {
            matches.truncate(limit);
            return Ok(matches);
        }
        fetch_rows *= 4;
    }
}

/// Matches without a value for the sort key (they come last), in rkey order after `after`,
/// or descending before `before`.
fn walk_missing(
    connection: &Connection,
    query: &SearchQuery,
    plan: &Plan,
    after: Option<i64>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<i64>> {
    let SortBy::Param { key, kind } = query.sort[0].by else { return Ok(Vec::new()) };
    let mut missing = query.clone();
    missing.filters.push(Filter::Missing { key, kind, missing: true });
    query_rkeys(connection, &ordered_matches(&missing, plan, after, Some(limit), before))
}

/// A sorted page produced by walking the sort key's index (see [`walkable`]).
fn sorted_walk(connection: &Connection, query: &SearchQuery, plan: &Plan) -> Result<SearchPage> {
    let count = query.count;
    let cursor = query.cursor.as_ref();
    let in_missing = cursor.is_some_and(|c| matches!(c.sort_values.first(), Some(SortValue::Missing)));
    let position =
        cursor.filter(|_| !in_missing).and_then(|c| c.sort_values.first().map(|value| (value, c.rkey)));
    let (entries, has_next, has_previous) = match cursor {
        Some(c) if c.before => {
            // Reverse result order until the end.
            let mut back: Vec<(SortValue, i64)> = Vec::new();
            if in_missing {
                back.extend(
                    walk_missing(connection, query, plan, None, Some(c.rkey), count + 1)?
                        .into_iter()
                        .map(|k| (SortValue::Missing, k)),
                );
            }
            if back.len() <= count {
                back.extend(walk_valued(connection, query, position, true, count + 1 - back.len())?);
            }
            let more_before = back.len() > count;
            back.truncate(count);
            back.reverse();
            (back, true, more_before)
        }
        _ => {
            let mut forward = Vec::new();
            if !in_missing {
                forward.extend(walk_valued(connection, query, position, false, count + 1)?);
            }
            if forward.len() <= count {
                let after = if in_missing { cursor.map(|c| c.rkey) } else { None };
                forward.extend(
                    walk_missing(connection, query, plan, after, None, count + 1 - forward.len())?
                        .into_iter()
                        .map(|k| (SortValue::Missing, k)),
                );
            }
            let more = forward.len() > count;
            forward.truncate(count);
            (forward, more, cursor.is_some())
        }
    };
    let total = if query.total {
        let all = ordered_matches(query, plan, None, None, None);
        let sql = format!("SELECT count(*) FROM ({})", all.text);
        let n: i64 =
            connection.prepare_cached(&sql)?.query_row(params_from_iter(all.values.iter()), |r| r.get(0))?;
        Some(n as u64)
    } else if cursor.is_none() && !has_next {
        Some(entries.len() as u64)
    } else {
        None
    };
    let rkeys: Vec<i64> = entries.iter().map(|(_, k)| *k).collect();
    let position = |entry: &(SortValue, i64)| Cursor {
        sort_values: vec![entry.0.clone()],
        rkey: entry.1,
        before: false,
    };
    Ok(SearchPage {
        cursors: entries.iter().map(position).collect(),
        first: entries.first().map(position),
        last: entries.last().map(position),
        matches: fetch(connection, &rkeys)?,
        has_next,
        has_previous,
        total,
    })
}

fn sorted_search(connection: &Connection, query: &SearchQuery, plan: &Plan) -> Result<SearchPage> {
    let all = query_rkeys(connection, &ordered_matches(query, plan, None, None, None))?;
    let mut keyed: Vec<(Vec<SortValue>, i64)> = Vec::with_capacity(all.len());
    let mut columns: Vec<std::collections::HashMap<i64, SortValue>> = Vec::new();
    for sort in &query.sort {
        columns.push(sort_values(connection, &query.resource_type, &sort.by, sort.descending, &all)?);
    }
    for rkey in &all {
        let values = columns.iter().map(|c| c.get(rkey).cloned().unwrap_or(SortValue::Missing)).collect();
        keyed.push((values, *rkey));
    }
    let order = |a: &(Vec<SortValue>, i64), b: &(Vec<SortValue>, i64)| -> Ordering {
        for (i, sort) in query.sort.iter().enumerate() {
            let ordering = a.0[i].compare(&b.0[i]);
            // Descending reverses values, but missing values stay last.
            let ordering = match (&a.0[i], &b.0[i]) {
                (SortValue::Missing, _) | (_, SortValue::Missing) => ordering,
                _ if sort.descending => ordering.reverse(),
                _ => ordering,
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.1.cmp(&b.1)
    };
    keyed.sort_by(order);
    let count = query.count;
    let start = match &query.cursor {
        None => 0,
        Some(cursor) => {
            let probe = (cursor.sort_values.clone(), cursor.rkey);
            let position = keyed.partition_point(|entry| order(entry, &probe) == Ordering::Less);
            if cursor.before {
                position.saturating_sub(count)
            } else {
                // Skip the cursor row itself.
                position + usize::from(keyed.get(position).is_some_and(|e| e.1 == cursor.rkey))
            }
        }
    };
    let end = match &query.cursor {
        Some(cursor) if cursor.before => {
            let probe = (cursor.sort_values.clone(), cursor.rkey);
            keyed.partition_point(|entry| order(entry, &probe) == Ordering::Less)
        }
        _ => (start + count).min(keyed.len()),
    };
    let page = &keyed[start.min(end)..end];
    let rkeys: Vec<i64> = page.iter().map(|(_, k)| *k).collect();
    let position =
        |entry: &(Vec<SortValue>, i64)| Cursor { sort_values: entry.0.clone(), rkey: entry.1, before: false };
    Ok(SearchPage {
        cursors: page.iter().map(position).collect(),
        first: page.first().map(position),
        last: page.last().map(position),
        matches: fetch(connection, &rkeys)?,
        has_next: end < keyed.len(),
        has_previous: start > 0,
        total: Some(keyed.len() as u64),
    })
}

/// The value each resource sorts by.
fn sort_values(
    connection: &Connection,
    resource_type: &str,
    by: &SortBy,
    descending: bool,
    rkeys: &[i64],
) -> Result<std::collections::HashMap<i64, SortValue>> {
    let _ = resource_type;
    let mut sql = Sql::default();
    match by {
        SortBy::Id => sql.push("SELECT rkey, res_id FROM resources WHERE rkey IN "),
        SortBy::LastUpdated => sql.push("SELECT rkey, last_updated FROM resources WHERE rkey IN "),
        SortBy::Param { key, kind } => {
            let (table, column) = match kind {
                SearchParamType::Date => ("idx_date", if descending { "max(low)" } else { "min(low)" }),
                SearchParamType::Number => ("idx_number", if descending { "max(low)" } else { "min(low)" }),
                SearchParamType::Quantity => {
                    ("idx_quantity", if descending { "max(low)" } else { "min(low)" })
                }
                SearchParamType::String => ("idx_string", if descending { "max(norm)" } else { "min(norm)" }),
                SearchParamType::Reference => {
                    ("idx_reference", if descending { "max(target)" } else { "min(target)" })
                }
                SearchParamType::Uri => ("idx_uri", if descending { "max(value)" } else { "min(value)" }),
                _ => ("idx_token", if descending { "max(code)" } else { "min(code)" }),
            };
            sql.push(&format!("SELECT rkey, {column} FROM {table} WHERE param = "));
            sql.bind(i64::from(*key));
            sql.push(" AND rkey IN ");
        }
    }
    sql.bind_rkeys(rkeys);
    if matches!(by, SortBy::Param { .. }) {
        sql.push(" GROUP BY rkey");
    }
    let mut statement = connection.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.values.iter()), |row| {
        let value = match row.get_ref(1)? {
            rusqlite::types::ValueRef::Integer(i) => SortValue::Integer(i),
            rusqlite::types::ValueRef::Real(f) => SortValue::Real(f),
            rusqlite::types::ValueRef::Text(t) => SortValue::Text(String::from_utf8_lossy(t).into_owned()),
            _ => SortValue::Missing,
        };
        Ok((row.get::<_, i64>(0)?, value))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The current versions of resources by rkey, in the given order (deleted ones left out).
pub(crate) fn fetch(connection: &Connection, rkeys: &[i64]) -> Result<Vec<VersionRecord>> {
    if rkeys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push(
        "SELECT r.rkey, r.res_type, r.res_id, r.version, r.last_updated, v.method, v.body, r.seq
           FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.deleted = 0 AND r.rkey IN ",
    );
    sql.bind_rkeys(rkeys);
    let mut statement = connection.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.values.iter()), |row| {
        Ok((
            row.get::<_, i64>(0)?,
            VersionRecord {
                resource_type: row.get(1)?,
                id: row.get(2)?,
                version: row.get::<_, i64>(3)? as u64,
                last_updated: row.get(4)?,
                method: WriteMethod::from_code(row.get(5)?),
                body: row.get(6)?,
                seq: row.get(7)?,
            },
        ))
    })?;
    let mut by_key: std::collections::HashMap<i64, VersionRecord> = rows.collect::<rusqlite::Result<_>>()?;
    Ok(rkeys.iter().filter_map(|k| by_key.remove(k)).collect())
}

/// rkeys of the live resources of `resource_type` with these ids.
pub(crate) fn rkeys_of(connection: &Connection, identities: &[(String, String)]) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut statement = connection
        .prepare_cached("SELECT rkey FROM resources WHERE res_type = ?1 AND res_id = ?2 AND deleted = 0")?;
    for (resource_type, id) in identities {
        if let Some(rkey) = statement.query_row([resource_type, id], |r| r.get(0)).optional()? {
            out.push(rkey);
        }
    }
    Ok(out)
}

/// rkeys of resources whose reference parameter (one of `keys`) points to one of `targets`.
pub(crate) fn referencing(
    connection: &Connection,
    keys: &[ParamKey],
    targets: &[(String, String)],
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    let mut statement = connection.prepare_cached(
        "SELECT x.rkey FROM idx_reference x JOIN resources r ON r.rkey = x.rkey
          WHERE x.param = ?1 AND x.target_type = ?2 AND x.target = ?3 AND r.deleted = 0 ORDER BY x.rkey",
    )?;
    for key in keys {
        for (resource_type, id) in targets {
            let rows =
                statement.query_map(rusqlite::params![i64::from(*key), resource_type, id], |r| r.get(0))?;
            for rkey in rows {
                out.push(rkey?);
            }
        }
    }
    Ok(out)
}
