//! Running a planned query: the page of matches in rkey order (or sorted, in memory or by
//! walking the sort key's index), the cursors to page on from, totals, and fetching the
//! current versions.

use std::cmp::Ordering;

use fhir::search_parameters::ParamKey;

use super::Db;
use super::filters::{
    ChainTargets, chain_join, condition_sql, filter_check, indexes_ranges, resources_set, table_of,
};
use super::planner::{Driver, Plan, driver_set, plan, streamable, walkable};
use super::sql::Sql;
use super::{Cursor, Filter, SearchPage, SearchQuery, SortBy, SortValue, Total, WALK_OVER};
use crate::{Result, VersionRecord, params};

pub(crate) fn query_rkeys(connection: &dyn Db, sql: &Sql) -> Result<Vec<i64>> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let values: Vec<String> = sql.values.iter().map(|v| format!("{v:?}")).collect();
        tracing::debug!(sql = %sql.text, values = %values.join(" | "), "search query");
    }
    connection.integers(sql)
}

/// The one integer a query answers (a count).
fn query_integer(connection: &dyn Db, sql: &Sql) -> Result<i64> {
    connection
        .integers(sql)?
        .first()
        .copied()
        .ok_or_else(|| crate::Error::Corrupt("a count answered no row".into()))
}

pub(crate) fn count_capped(connection: &dyn Db, set: &Sql, cap: usize) -> Result<usize> {
    let sql = Sql {
        text: format!("SELECT count(*) FROM ({} LIMIT {}) capped", set.text, cap + 1),
        values: set.values.clone(),
    };
    Ok(query_integer(connection, &sql)? as usize)
}

/// All matches of `query` counted as far as its [`Total`] asks: `None` when not asked, beyond
/// the bound, or (for a bounded count) when counting would cost more than the page.
fn count_total(connection: &dyn Db, query: &SearchQuery, plan: &Plan) -> Result<Option<u64>> {
    let all = || ordered_matches(query, plan, None, None, None);
    Ok(match query.total {
        Total::None => None,
        // Cheap only where the planner found a small driving set (at most SMALL_SET keys to
        // probe), or where there is nothing to probe (every resource of the type): streamed
        // and walked plans would probe every match, which for a chain over 80,000
        // observations costs ten times the page (BENCHMARKS.md).
        Total::UpTo(bound) if matches!(plan, Plan::Small(..)) || query.filters.is_empty() => {
            let n = count_capped(connection, &all(), bound)?;
            (n <= bound).then_some(n as u64)
        }
        Total::UpTo(_) => None,
        Total::Accurate => {
            let all = all();
            let sql =
                Sql { text: format!("SELECT count(*) FROM ({}) counted", all.text), values: all.values };
            Some(query_integer(connection, &sql)? as u64)
        }
    })
}

/// Builds the query producing matching rkeys in ascending order, from `after` (exclusive),
/// at most `limit` (all when `None`).
pub(crate) fn ordered_matches(
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
            sql.push(") s) d CROSS JOIN resources r ON r.rkey = d.rkey");
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
pub(crate) fn search(connection: &dyn Db, query: &SearchQuery) -> Result<SearchPage> {
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
    let total = if cursor.is_none() && !has_next {
        Some(rkeys.len() as u64)
    } else {
        count_total(connection, query, &plan)?
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

pub(crate) fn sort_value_sql(sql: &mut Sql, value: &SortValue) {
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
pub(crate) fn walk_valued(
    connection: &dyn Db,
    query: &SearchQuery,
    position: Option<(&SortValue, i64)>,
    backward: bool,
    limit: usize,
) -> Result<Vec<(SortValue, i64)>> {
    let sort = &query.sort[0];
    let mut sql = Sql::default();
    let column = match &sort.by {
        SortBy::Id => {
            sql.push("SELECT r.rkey, r.res_id FROM resources r WHERE 1 = 1");
            "r.res_id"
        }
        SortBy::LastUpdated => {
            sql.push("SELECT r.rkey, r.last_updated FROM resources r WHERE 1 = 1");
            "r.last_updated"
        }
        SortBy::Param { key, kind } => {
            let table = params::of(*kind).values_table();
            let beyond = if sort.descending { ">" } else { "<" };
            // A resource is met once, at the row holding its sort value (none of its rows
            // further on). Said as NOT EXISTS rather than `= (SELECT max(...))`: PostgreSQL
            // estimates the anti-join well and walks the index in sort order, where it
            // guessed the equality rare and sorted every match (0.6 s for 91,000).
            sql.push(&format!(
                "SELECT x.rkey, x.low FROM {table} x CROSS JOIN resources r ON r.rkey = x.rkey WHERE x.param = "
            ));
            sql.bind(i64::from(*key));
            sql.push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {table} y WHERE y.rkey = x.rkey AND y.param = x.param AND y.low {beyond} x.low)"
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
        let page = Sql { text: format!("{} LIMIT {fetch_rows}", sql.text), values: sql.values.clone() };
        let raw: Vec<(SortValue, i64)> =
            connection.keyed_values(&page)?.into_iter().map(|(rkey, value)| (value, rkey)).collect();
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
pub(crate) fn walk_missing(
    connection: &dyn Db,
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
pub(crate) fn sorted_walk(connection: &dyn Db, query: &SearchQuery, plan: &Plan) -> Result<SearchPage> {
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
    let total = if cursor.is_none() && !has_next {
        Some(entries.len() as u64)
    } else {
        count_total(connection, query, plan)?
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

pub(crate) fn sorted_search(connection: &dyn Db, query: &SearchQuery, plan: &Plan) -> Result<SearchPage> {
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
pub(crate) fn sort_values(
    connection: &dyn Db,
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
            let (table, column) = params::of(*kind).sort_column();
            let column = format!("{}({column})", if descending { "max" } else { "min" });
            sql.push(&format!("SELECT rkey, {column} FROM {table} WHERE param = "));
            sql.bind(i64::from(*key));
            sql.push(" AND rkey IN ");
        }
    }
    sql.bind_rkeys(rkeys);
    if matches!(by, SortBy::Param { .. }) {
        sql.push(" GROUP BY rkey");
    }
    Ok(connection.keyed_values(&sql)?.into_iter().collect())
}

/// The current versions of resources by rkey, in the given order (deleted ones left out).
pub(crate) fn fetch(connection: &dyn Db, rkeys: &[i64]) -> Result<Vec<VersionRecord>> {
    if rkeys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::default();
    sql.push(
        "SELECT r.rkey, r.res_type, r.res_id, r.version, r.last_updated, v.method, v.body, r.seq
           FROM resources r JOIN versions v ON v.seq = r.seq WHERE r.deleted = 0 AND r.rkey IN ",
    );
    sql.bind_rkeys(rkeys);
    let mut by_key: std::collections::HashMap<i64, VersionRecord> =
        connection.versions(&sql)?.into_iter().collect();
    Ok(rkeys.iter().filter_map(|k| by_key.remove(k)).collect())
}

/// rkeys of the live resources of `resource_type` with these ids.
pub(crate) fn rkeys_of(connection: &dyn Db, identities: &[(String, String)]) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for (resource_type, id) in identities {
        let mut sql = Sql::default();
        sql.push("SELECT rkey FROM resources WHERE res_type = ");
        sql.bind(resource_type.clone());
        sql.push(" AND res_id = ");
        sql.bind(id.clone());
        sql.push(" AND deleted = 0");
        out.extend(connection.integers(&sql)?);
    }
    Ok(out)
}

/// rkeys of resources whose reference parameter (one of `keys`) points to one of `targets`.
pub(crate) fn referencing(
    connection: &dyn Db,
    keys: &[ParamKey],
    targets: &[(String, String)],
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    if keys.is_empty() {
        return Ok(out);
    }
    // One query per target, every parameter at once (a round trip each on PostgreSQL).
    let keys: Vec<rusqlite::types::Value> =
        keys.iter().map(|key| rusqlite::types::Value::Integer(i64::from(*key))).collect();
    for (resource_type, id) in targets {
        let mut sql = Sql::default();
        sql.push("SELECT x.rkey FROM idx_reference x JOIN resources r ON r.rkey = x.rkey WHERE x.param IN ");
        sql.bind_list(keys.clone());
        sql.push(" AND x.target_type = ");
        sql.bind(resource_type.clone());
        sql.push(" AND x.target = ");
        sql.bind(id.clone());
        sql.push(" AND r.deleted = 0 ORDER BY x.rkey");
        out.extend(connection.integers(&sql)?);
    }
    Ok(out)
}
