//! Search over the index: a query model (what the API parsed from the URL) and its execution
//! as SQL.
//!
//! Planning, in short: every filter is a set of resource keys. The query is driven by the
//! most selective one: a small set (at most [`SMALL_SET`] keys) is materialized and sorted;
//! otherwise a single-value equality streams keys in commit order straight from its index
//! (first pages cost a page, not the whole set); otherwise the resources of the type are
//! walked in order and each filter is probed. Sorted searches materialize all matches and
//! sort them in memory, which makes paging in both directions exact.

mod executor;
mod filters;
mod planner;
pub mod sql;

use std::cmp::Ordering;

use fhir::search_parameters::{ParamKey, SearchParamType};

use crate::VersionRecord;
pub use crate::params::quantity::QuantityUnit;
pub use crate::params::string::StringMode;
pub use crate::params::uri::UriMode;
pub(crate) use executor::{fetch, referencing, rkeys_of, search};

/// What a search asks of a database connection: the one seam between the shared planner and
/// executor and a backend (SQLite, PostgreSQL). Each runs [`sql::Sql`] in its own spelling.
pub(crate) trait Db {
    /// The first column of every row, as integers (rkeys, a count).
    fn integers(&self, sql: &sql::Sql) -> crate::Result<Vec<i64>>;
    /// Rows of an rkey and the value it sorts by, in the query's order.
    fn keyed_values(&self, sql: &sql::Sql) -> crate::Result<Vec<(i64, SortValue)>>;
    /// Rows of `rkey, res_type, res_id, version, last_updated, method, body, seq`.
    fn versions(&self, sql: &sql::Sql) -> crate::Result<Vec<(i64, VersionRecord)>>;
}

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

/// One condition on one parameter value; each variant belongs to one parameter type
/// ([`Condition::param_type`]), which parses, indexes and compiles it.
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

impl SortBy {
    /// Whether a cursor's value is of the kind this key sorts by (a forged or stale cursor's
    /// may not be; PostgreSQL refuses to compare across kinds, SQLite orders them apart).
    pub fn fits(&self, value: &SortValue) -> bool {
        let column = match self {
            SortBy::Id => 't',
            SortBy::LastUpdated => 'i',
            SortBy::Param { kind, .. } => match crate::params::of(*kind).sort_column().0 {
                "idx_date" => 'i',
                "idx_number" | "idx_quantity" => 'r',
                _ => 't',
            },
        };
        matches!(
            (column, value),
            (_, SortValue::Missing)
                | ('i', SortValue::Integer(_))
                | ('r', SortValue::Real(_))
                | ('t', SortValue::Text(_))
        )
    }
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
    /// How far to count all matches for `Bundle.total`.
    pub total: Total,
}

/// How far a search counts all its matches (`Bundle.total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Total {
    /// Not counted (`_total=none`, and the store's own probes); a first page that holds
    /// every match still says how many it holds.
    #[default]
    None,
    /// Counted when there are at most this many matches, else left out: the default, so a
    /// count costs a search no more than walking that many index entries.
    UpTo(usize),
    /// Counted whatever it costs (`_total=accurate`, `_summary=count`, `_count=0`).
    Accurate,
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
