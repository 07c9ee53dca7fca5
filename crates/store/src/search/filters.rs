//! Filters as SQL: the set of resource keys a filter selects (to drive a query) and the
//! check of one resource against it (to probe). Conditions on parameter values are the
//! parameter types' own (`crate::params`); this module joins them into sets, chains, `_has`,
//! compartments and the policy's exclusions.

use fhir::search_parameters::{ParamKey, search_parameters};

use super::planner::driver_rank;
use super::sql::{Sql, has_rkey_index};
use super::{Condition, Filter, Prefix};
use crate::params;
use crate::params::date::approximate;

/// Any of the conditions on a lastUpdated column. A lastUpdated is an instant, the range
/// [t, t+1ms), so every prefix is a plain comparison the `(res_type, last_updated)` index serves.
pub(crate) fn last_updated_sql(sql: &mut Sql, column: &str, conditions: &[(Prefix, i64, i64)]) {
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

/// Whether a number or quantity parameter can hold Range values (`context-quantity`,
/// `onset-age`, ...), which need range-aware comparisons.
pub(crate) fn indexes_ranges(key: ParamKey) -> bool {
    search_parameters()
        .by_key(key)
        .and_then(|applied| applied.expression.as_deref())
        .is_some_and(|e| e.contains("Range"))
}

/// The resources with a value of parameter `key` meeting any of the conditions, as its type
/// finds them.
pub(crate) fn conditions_set(sql: &mut Sql, key: ParamKey, any: &[Condition]) {
    match any.first() {
        Some(first) => first.param_type().set_sql(sql, key, any, indexes_ranges(key)),
        // No alternative at all (an empty value set) matches nothing.
        None => {
            sql.push("SELECT x.rkey FROM idx_token x WHERE x.param = ");
            sql.bind(i64::from(key));
            sql.push(" AND (1 = 0)");
        }
    }
}

/// The alternatives of one parameter joined with OR, as its type writes them. No alternative
/// at all matches nothing (an empty value set).
pub(crate) fn any_sql(sql: &mut Sql, any: &[Condition], ranges: bool) {
    match any.first() {
        Some(first) => first.param_type().any_sql(sql, any, ranges),
        None => sql.push("1 = 0"),
    }
}

/// The keys of the resources of `resource_type` that match every filter (unordered): driven
/// by the filter most likely to be selective, the others probed.
pub(crate) fn resources_set(sql: &mut Sql, resource_type: &str, filters: &[Filter]) {
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
pub(crate) fn filter_set(sql: &mut Sql, resource_type: &str, filter: &Filter) -> bool {
    match filter {
        Filter::Ids(ids) => {
            sql.push("SELECT rkey FROM resources WHERE res_type = ");
            sql.bind(resource_type.to_string());
            // No id at all (`:in` over an empty value set) matches nothing; `IN ()` is not SQL
            // PostgreSQL reads.
            if ids.is_empty() {
                sql.push(" AND 1 = 0");
                return true;
            }
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
                    sql.push("SELECT rkey FROM resources WHERE 1 = 0");
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
pub(crate) fn filter_check(sql: &mut Sql, resource_type: &str, filter: &Filter) {
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
            let table = params::of(*kind).values_table();
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
                sql.push("1 = 0");
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
pub(crate) type ChainTargets<'q> = Vec<(&'q str, &'q [Filter])>;

pub(crate) fn chain_join(filter: &Filter) -> Option<(ParamKey, ChainTargets<'_>)> {
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

/// SQL for one condition on index-row alias `x`: its parameter type's.
pub(crate) fn condition_sql(sql: &mut Sql, condition: &Condition, ranges: bool) {
    condition.param_type().condition_sql(sql, condition, ranges)
}

/// The index table a condition reads.
pub(crate) fn table_of(condition: &Condition) -> &'static str {
    condition.param_type().table(condition)
}

/// Whether every condition can be checked by an index lookup that includes the rkey.
pub(crate) fn probeable(any: &[Condition]) -> bool {
    any.iter().all(|condition| condition.param_type().probes(condition))
}
