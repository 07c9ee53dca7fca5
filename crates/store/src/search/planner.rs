//! Choosing how a query's matches are produced: which filter (or combination of filters)
//! drives it, measured by counting each candidate set up to [`SMALL_SET`]; a single-value
//! equality whose index yields keys in commit order streams; otherwise the type is walked.
//! What makes a condition selective, streamable or probeable is its parameter type's to say.

use fhir::search_parameters::ParamKey;

use super::executor::count_capped;
use super::filters::{filter_set, last_updated_sql};
use super::sql::Sql;
use super::{Condition, Filter, Prefix, SMALL_SET, SearchQuery, Sort, SortBy};
use crate::params::date::{self, date_conditions};
use crate::{Result, params};

/// How likely a filter's set is to be small, for nested searches (chains, `_has`) that are
/// planned without counting: lower is better.
pub(crate) fn driver_rank(filter: &Filter) -> u8 {
    match filter {
        Filter::Ids(_) => 0,
        Filter::Param { any, .. } if any.iter().all(|c| c.param_type().selective(c)) => 1,
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

/// A filter that can stream matches in rkey order from its index: one condition whose
/// index key fixes every column before `rkey`.
pub(crate) fn streamable(filter: &Filter) -> Option<(ParamKey, &Condition)> {
    let Filter::Param { key, any } = filter else { return None };
    let [condition] = any.as_slice() else { return None };
    let ordered = condition.param_type().streams(condition);
    ordered.then_some((*key, condition))
}

/// A set that can drive a query.
#[derive(Clone, Debug)]
pub(crate) enum Driver {
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
pub(crate) enum Plan {
    /// Materialize this (small) set, of about this many keys.
    Small(Driver, usize),
    /// Stream from this filter's index.
    Stream(usize),
    /// Walk the type's resources in order.
    Scan,
}

/// (prefix, low, high) of date conditions.
pub(crate) type DateConditions = Vec<(Prefix, i64, i64)>;

/// Drivers beyond single filters: combinations of filters whose intersection one index
/// range can produce.
pub(crate) fn combined_drivers(filters: &[Filter]) -> Vec<Driver> {
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
pub(crate) fn driver_set(sql: &mut Sql, query: &SearchQuery, driver: &Driver) -> bool {
    match driver {
        Driver::Filter(index) => filter_set(sql, &query.resource_type, &query.filters[*index]),
        Driver::DateRange { key, conditions } => {
            date::all_of_set(sql, *key, conditions);
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

pub(crate) fn plan(connection: &dyn super::Db, query: &SearchQuery) -> Result<Plan> {
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

/// Whether the sort is one key an index yields in order: large results are then sorted by
/// walking that index (and probing the filters) instead of materializing every match.
pub(crate) fn walkable(sort: &[Sort]) -> bool {
    matches!(sort, [Sort { by: SortBy::Id | SortBy::LastUpdated, .. }])
        || matches!(sort, [Sort { by: SortBy::Param { kind, .. }, .. }] if params::of(*kind).walks())
}
