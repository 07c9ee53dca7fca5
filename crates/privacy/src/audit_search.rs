//! The audit trail searched as FHIR AuditEvents (`GET [base]/AuditEvent?...`).
//!
//! Parameters: `_id`, `patient`, `entity`, `agent` (the user's name, also as
//! `agent:identifier=urn:chartroom:user|name`), `agent-name` (`:exact`, `:contains`),
//! `date` (`eq` `ge` `gt` `le` `lt`), `action`, `outcome`, `type`, `subtype`; `_sort=-date`
//! (the default: newest first) or `_sort=date`, `_count` (default 50, at most 1,000),
//! `_total=accurate`. Anything else is refused, by name.
//!
//! Every filter becomes a set of index terms (see [`crate::audit`]); the filter whose terms
//! are rarest in the date range walks the index in time order and the others are probed
//! per entry, so a page costs about what it returns. Pages continue from a cursor (time and
//! position of the last entry shown), so links stay right while the trail grows.

use std::path::Path;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params, params_from_iter};
use serde_json::Value;

use crate::Error;
use crate::audit::{self, Access};

/// Results on a page when `_count` is not given.
pub const DEFAULT_COUNT: usize = 50;
/// The largest page.
pub const MAX_COUNT: usize = 1_000;
/// How far an index term is counted when choosing which filter walks the index.
const ESTIMATE_CAP: i64 = 5_000;

const ACTION_SYSTEM: &str = "http://hl7.org/fhir/audit-event-action";
const OUTCOME_SYSTEM: &str = "http://hl7.org/fhir/audit-event-outcome";
const SUBTYPE_SYSTEM: &str = "http://hl7.org/fhir/restful-interaction";
const TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const USER_SYSTEM: &str = "urn:chartroom:user";

const SUPPORTED: &str =
    "_id, patient, entity, agent, agent-name, date, action, outcome, type, subtype, _sort, _count, _total";

#[derive(Clone, Debug)]
enum NameMatch {
    Prefix,
    Exact,
    Contains,
}

/// One search parameter: entries match when they have any of its terms.
#[derive(Clone, Debug)]
enum Filter {
    Terms(Vec<String>),
    /// `agent-name`: turned into `user|...` terms through the table of agents.
    AgentName(Vec<(String, NameMatch)>),
}

/// A parsed AuditEvent search.
#[derive(Clone, Debug)]
pub struct Query {
    filters: Vec<Filter>,
    /// `recorded` in `[from, to)`, in ms since the epoch.
    from: Option<i64>,
    to: Option<i64>,
    ids: Option<Vec<i64>>,
    count: usize,
    newest_first: bool,
    /// Where the previous page ended: time recorded and position.
    cursor: Option<(i64, i64)>,
    total: bool,
    /// The parameters as given, but `_cursor`: what links repeat.
    params: Vec<(String, String)>,
    patients: Vec<String>,
}

/// One page of results.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub events: Vec<Value>,
    /// The `_cursor` of the next page, when there is one.
    pub next: Option<String>,
    /// With `_total=accurate`: how many entries match in all.
    pub total: Option<u64>,
}

fn invalid(message: String) -> Error {
    Error::Search { code: fhir::IssueType::Invalid, message }
}

impl Query {
    /// Reads the parameters of a search (URL-decoded pairs).
    pub fn parse<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Query, Error> {
        let mut query = Query {
            filters: Vec::new(),
            from: None,
            to: None,
            ids: None,
            count: DEFAULT_COUNT,
            newest_first: true,
            cursor: None,
            total: false,
            params: Vec::new(),
            patients: Vec::new(),
        };
        let mut unsupported: Vec<String> = Vec::new();
        for (name, value) in params {
            if name == "_cursor" {
                query.cursor = Some(parse_cursor(value)?);
                continue;
            }
            query.params.push((name.to_string(), value.to_string()));
            // FHIR: a parameter without a value is ignored.
            if value.is_empty() {
                continue;
            }
            let values = || value.split(',').map(str::trim);
            match name {
                "_format" | "_pretty" => {}
                "_count" => {
                    let count: usize = value
                        .parse()
                        .map_err(|_| invalid(format!("_count must be a number of entries, not '{value}'")))?;
                    query.count = count.min(MAX_COUNT);
                }
                "_sort" => {
                    query.newest_first = match value {
                        "-date" => true,
                        "date" => false,
                        other => {
                            return Err(Error::Search {
                                code: fhir::IssueType::NotSupported,
                                message: format!(
                                    "_sort={other} is not supported for AuditEvent: use -date (newest first, the default) or date"
                                ),
                            });
                        }
                    }
                }
                "_total" => query.total = matches!(value, "accurate" | "estimate"),
                "_id" => {
                    let seqs = values().filter_map(audit::parse_event_id);
                    match &mut query.ids {
                        // Several _id parameters: entries named by each.
                        Some(ids) => {
                            let these: Vec<i64> = seqs.collect();
                            ids.retain(|id| these.contains(id));
                        }
                        None => query.ids = Some(seqs.collect()),
                    }
                }
                "patient" => {
                    let mut terms = Vec::new();
                    for value in values() {
                        if let Some(reference) = reference(value, Some("Patient")) {
                            query.patients.push(reference.clone());
                            terms.push(format!("entity|{reference}"));
                        }
                    }
                    query.filters.push(Filter::Terms(terms));
                }
                "entity" => {
                    let mut terms = Vec::new();
                    for value in values() {
                        let reference = reference(value, None)
                            .ok_or_else(|| invalid(format!("entity={value}: give the entity as Type/id")))?;
                        if reference.starts_with("Patient/") {
                            query.patients.push(reference.clone());
                        }
                        terms.push(format!("entity|{reference}"));
                    }
                    query.filters.push(Filter::Terms(terms));
                }
                "agent" => query.filters.push(Filter::Terms(values().map(|v| format!("user|{v}")).collect())),
                "agent:identifier" => query.filters.push(Filter::Terms(
                    values().filter_map(|v| token(v, USER_SYSTEM)).map(|v| format!("user|{v}")).collect(),
                )),
                "agent-name" | "agent-name:exact" | "agent-name:contains" => {
                    let mode = match name {
                        "agent-name:exact" => NameMatch::Exact,
                        "agent-name:contains" => NameMatch::Contains,
                        _ => NameMatch::Prefix,
                    };
                    query
                        .filters
                        .push(Filter::AgentName(values().map(|v| (v.to_string(), mode.clone())).collect()));
                }
                "action" | "outcome" | "subtype" => {
                    let system = match name {
                        "action" => ACTION_SYSTEM,
                        "outcome" => OUTCOME_SYSTEM,
                        _ => SUBTYPE_SYSTEM,
                    };
                    query.filters.push(Filter::Terms(
                        values()
                            .filter_map(|v| token(v, system))
                            .map(|code| format!("{name}|{code}"))
                            .collect(),
                    ));
                }
                // Every entry is a RESTful operation.
                "type" => {
                    let rest = values().any(|v| token(v, TYPE_SYSTEM).as_deref() == Some("rest"));
                    let terms = if rest { vec![audit::EVERY_ENTRY.to_string()] } else { Vec::new() };
                    query.filters.push(Filter::Terms(terms));
                }
                "date" => query.restrict_dates(value)?,
                other => unsupported.push(other.to_string()),
            }
        }
        if !unsupported.is_empty() {
            return Err(Error::Search {
                code: fhir::IssueType::NotSupported,
                message: format!(
                    "unsupported AuditEvent search parameter{} {}; supported: {SUPPORTED}",
                    if unsupported.len() > 1 { "s" } else { "" },
                    unsupported.join(", ")
                ),
            });
        }
        // A request for no entries asks how many there are (clients count with `_count=0`).
        if query.count == 0 {
            query.total = true;
        }
        Ok(query)
    }

    /// Confines the search to one patient's entries (`Patient/[id]/AuditEvent`).
    pub fn within_patient(&mut self, id: &str) {
        let reference = format!("Patient/{id}");
        self.filters.push(Filter::Terms(vec![format!("entity|{reference}")]));
        self.patients.push(reference);
    }

    /// The parameters as given, but `_cursor` (for the links of a page).
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The cursor this page starts from, as written in a link.
    pub fn cursor(&self) -> Option<String> {
        self.cursor.map(|(ms, seq)| format!("{ms}.{seq}"))
    }

    /// The patients the search is about (`Patient/id`).
    pub fn patients(&self) -> &[String] {
        &self.patients
    }

    fn restrict_dates(&mut self, value: &str) -> Result<(), Error> {
        if value.contains(',') {
            return Err(Error::Search {
                code: fhir::IssueType::NotSupported,
                message: "date takes one value per parameter here (repeat the parameter for a range)".into(),
            });
        }
        let (prefix, text) = match value.get(..2) {
            Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => (p, &value[2..]),
            _ => ("eq", value),
        };
        let date = fhir::DateTime::parse(text, fhir::DateTimeKind::Partial)
            .map_err(|e| invalid(format!("date={value}: {e}")))?;
        let (low, high) = (date.lower_bound_millis(), date.upper_bound_millis());
        let (from, to) = match prefix {
            "eq" => (Some(low), Some(high)),
            "ge" => (Some(low), None),
            "gt" => (Some(high), None),
            "le" => (None, Some(high)),
            "lt" => (None, Some(low)),
            other => {
                return Err(Error::Search {
                    code: fhir::IssueType::NotSupported,
                    message: format!(
                        "date prefix {other} is not supported for AuditEvent (eq, ge, gt, le, lt)"
                    ),
                });
            }
        };
        if let Some(from) = from {
            self.from = Some(self.from.map_or(from, |f| f.max(from)));
        }
        if let Some(to) = to {
            self.to = Some(self.to.map_or(to, |t| t.min(to)));
        }
        Ok(())
    }
}

fn parse_cursor(value: &str) -> Result<(i64, i64), Error> {
    value
        .split_once('.')
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
        .ok_or_else(|| invalid(format!("_cursor={value} is not a cursor of this server")))
}

/// `Type/id` from a reference value: `id` (when the type is implied), `Type/id`, or an
/// absolute URL ending in `Type/id`.
fn reference(value: &str, implied: Option<&str>) -> Option<String> {
    let segments: Vec<&str> = value.trim_end_matches('/').rsplit('/').take(2).collect();
    match (segments.as_slice(), implied) {
        ([id, kind], Some(implied)) if *kind == implied && !id.is_empty() => Some(format!("{kind}/{id}")),
        ([id, kind], None) if !id.is_empty() && kind.starts_with(|c: char| c.is_ascii_uppercase()) => {
            Some(format!("{kind}/{id}"))
        }
        ([id], Some(implied)) if !id.is_empty() => Some(format!("{implied}/{id}")),
        _ => None,
    }
}

/// The code of a token value (`code`, `|code`, `system|code`) in `system`; `None` when it
/// names another system.
fn token(value: &str, system: &str) -> Option<String> {
    match value.split_once('|') {
        None => Some(value.to_string()),
        Some((given, code)) if given.is_empty() || given == system => Some(code.to_string()),
        Some(_) => None,
    }
}

/// The entries of a data directory's trail matching `query`, one page.
pub fn search(data_dir: &Path, query: &Query) -> Result<Page, Error> {
    let connection = audit::open_reader(data_dir)?;
    let mut filters: Vec<Vec<String>> = Vec::with_capacity(query.filters.len());
    for filter in &query.filters {
        filters.push(resolve(&connection, filter)?);
    }
    let empty = filters.iter().any(Vec::is_empty) || query.from.zip(query.to).is_some_and(|(f, t)| f >= t);
    if empty {
        return Ok(Page { total: query.total.then_some(0), ..Page::default() });
    }
    let (mut candidates, total) = match &query.ids {
        Some(ids) => named(&connection, ids, &filters, query)?,
        None => walk(&connection, &filters, query)?,
    };
    let next = (candidates.len() > query.count).then(|| {
        let (ms, seq) = candidates[query.count - 1];
        format!("{ms}.{seq}")
    });
    candidates.truncate(query.count);
    let mut events = Vec::with_capacity(candidates.len());
    for (ms, seq) in candidates {
        if let Some((recorded, access)) = load(&connection, seq)?
            && matches(&access, audit::recorded_millis(&recorded), ms, &filters, query)
        {
            events.push(audit::event(seq, &recorded, &access));
        }
    }
    // A first page holding every match is its own count.
    let total = match total {
        None if query.cursor.is_none() && next.is_none() => Some(events.len() as u64),
        total => total,
    };
    Ok(Page { events, next, total })
}

/// One AuditEvent by id (`audit-{seq}`).
pub fn read(data_dir: &Path, id: &str) -> Result<Option<Value>, Error> {
    let Some(seq) = audit::parse_event_id(id) else { return Ok(None) };
    let connection = audit::open_reader(data_dir)?;
    Ok(load(&connection, seq)?.map(|(recorded, access)| audit::event(seq, &recorded, &access)))
}

/// Every entry touching `entity` (`Type/id`), oldest first.
pub(crate) fn events_for_entity(data_dir: &Path, entity: &str) -> Result<Vec<Value>, Error> {
    let connection = audit::open_reader(data_dir)?;
    entity_events(&connection, entity)
}

/// Every entry touching `entity` on `connection`: through the index, and the entries past
/// what it covers from their lines (a read-only snapshot does not bring the index up to
/// date).
pub(crate) fn entity_events(connection: &Connection, entity: &str) -> Result<Vec<Value>, Error> {
    let term = format!("entity|{entity}");
    let mut statement = connection
        .prepare("SELECT recorded_ms, seq FROM audit_terms WHERE term = ?1 ORDER BY recorded_ms, seq")?;
    let found: Vec<(i64, i64)> =
        statement.query_map(params![term], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let filters = vec![vec![term]];
    let query = Query::parse(std::iter::empty())?;
    let mut events = Vec::with_capacity(found.len());
    for (ms, seq) in found {
        if let Some((recorded, access)) = load(connection, seq)?
            && matches(&access, audit::recorded_millis(&recorded), ms, &filters, &query)
        {
            events.push((ms, seq, audit::event(seq, &recorded, &access)));
        }
    }
    let indexed = audit::indexed_through(connection)?;
    let mut unindexed =
        connection.prepare("SELECT seq, recorded, event FROM audit WHERE seq > ?1 ORDER BY seq")?;
    let mut rows = unindexed.query(params![indexed])?;
    while let Some(row) = rows.next()? {
        let (seq, recorded, line): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        // An entry that does not read back is left to `verify` to report, as the index does.
        if let Some(access) = Access::from_line(&line) {
            let ms = audit::recorded_millis(&recorded);
            if matches(&access, ms, ms, &filters, &query) {
                events.push((ms, seq, audit::event(seq, &recorded, &access)));
            }
        }
    }
    events.sort_by_key(|(ms, seq, _)| (*ms, *seq));
    Ok(events.into_iter().map(|(_, _, event)| event).collect())
}

/// The index terms a filter stands for.
fn resolve(connection: &Connection, filter: &Filter) -> Result<Vec<String>, Error> {
    let names = match filter {
        Filter::Terms(terms) => return Ok(terms.clone()),
        Filter::AgentName(names) => names,
    };
    let mut terms = Vec::new();
    let mut like =
        connection.prepare_cached("SELECT name FROM audit_agents WHERE name LIKE ?1 ESCAPE '\\'")?;
    for (text, mode) in names {
        let escaped: String = text
            .chars()
            .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
            .collect();
        let pattern = match mode {
            NameMatch::Exact => {
                terms.push(format!("user|{text}"));
                continue;
            }
            NameMatch::Prefix => format!("{escaped}%"),
            NameMatch::Contains => format!("%{escaped}%"),
        };
        for name in like.query_map(params![pattern], |r| r.get::<_, String>(0))? {
            terms.push(format!("user|{}", name?));
        }
    }
    Ok(terms)
}

/// Whether a loaded entry matches: its terms as derived from the line (not as the index
/// says), its time as recorded (and as indexed).
fn matches(
    access: &Access,
    recorded_ms: i64,
    indexed_ms: i64,
    filters: &[Vec<String>],
    query: &Query,
) -> bool {
    let terms = access.index_terms();
    recorded_ms == indexed_ms
        && query.from.is_none_or(|from| recorded_ms >= from)
        && query.to.is_none_or(|to| recorded_ms < to)
        && filters.iter().all(|any| any.iter().any(|t| terms.contains(t)))
}

fn load(connection: &Connection, seq: i64) -> Result<Option<(String, Access)>, Error> {
    let mut statement = connection.prepare_cached("SELECT recorded, event FROM audit WHERE seq = ?1")?;
    let mut rows = statement.query(params![seq])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let (recorded, line): (String, String) = (row.get(0)?, row.get(1)?);
    let access = Access::from_line(&line).ok_or_else(|| {
        Error::Invalid(format!("audit entry {seq} does not read back (chartroom audit verify reports why)"))
    })?;
    Ok(Some((recorded, access)))
}

/// Entries to show, as (time recorded, position), up to one past the page; and the total
/// when it was asked for.
type Candidates = (Vec<(i64, i64)>, Option<u64>);

/// `_id` searches: the named entries that match, in order.
fn named(
    connection: &Connection,
    ids: &[i64],
    filters: &[Vec<String>],
    query: &Query,
) -> Result<Candidates, Error> {
    let mut found = Vec::new();
    for &seq in ids {
        if let Some((recorded, access)) = load(connection, seq)? {
            let ms = audit::recorded_millis(&recorded);
            if matches(&access, ms, ms, filters, query) && !found.contains(&(ms, seq)) {
                found.push((ms, seq));
            }
        }
    }
    found.sort_unstable();
    if query.newest_first {
        found.reverse();
    }
    let total = query.total.then_some(found.len() as u64);
    if let Some(cursor) = query.cursor {
        found.retain(|key| if query.newest_first { *key < cursor } else { *key > cursor });
    }
    found.truncate(query.count + 1);
    Ok((found, total))
}

/// Index searches: the rarest filter walks the index in time order, the others are probed.
fn walk(connection: &Connection, filters: &[Vec<String>], query: &Query) -> Result<Candidates, Error> {
    let every = vec![audit::EVERY_ENTRY.to_string()];
    let mut driver = &every;
    let mut smallest = i64::MAX;
    let mut driver_index = None;
    for (index, terms) in filters.iter().enumerate() {
        let estimate = estimate(connection, terms, query)?;
        if estimate < smallest {
            (smallest, driver, driver_index) = (estimate, terms, Some(index));
        }
    }
    let probes: Vec<&Vec<String>> =
        filters.iter().enumerate().filter(|(i, _)| Some(*i) != driver_index).map(|(_, f)| f).collect();
    let total = if query.total {
        let (sql, values) = select(driver, &probes, query, false);
        let count: i64 = connection.query_row(
            &format!("SELECT count(*) FROM ({sql})"),
            params_from_iter(values),
            |r| r.get(0),
        )?;
        Some(count as u64)
    } else {
        None
    };
    if query.count == 0 {
        return Ok((Vec::new(), total));
    }
    let (mut sql, mut values) = select(driver, &probes, query, true);
    let direction = if query.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY d.recorded_ms {direction}, d.seq {direction} LIMIT ?"));
    values.push(Sql::Integer(query.count as i64 + 1));
    let mut statement = connection.prepare(&sql)?;
    let found = statement
        .query_map(params_from_iter(values), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok((found, total))
}

/// How many entries have one of `terms` in the date range, counted up to a cap.
fn estimate(connection: &Connection, terms: &[String], query: &Query) -> Result<i64, Error> {
    let mut sql = String::from("SELECT count(*) FROM (SELECT 1 FROM audit_terms WHERE term = ?1");
    if query.from.is_some() {
        sql.push_str(" AND recorded_ms >= ?2");
    }
    if query.to.is_some() {
        sql.push_str(" AND recorded_ms < ?3");
    }
    sql.push_str(" LIMIT ?4)");
    let mut statement = connection.prepare_cached(&sql)?;
    let mut total = 0;
    for term in terms {
        let mut bound = vec![Sql::Text(term.clone())];
        bound.push(query.from.map_or(Sql::Null, Sql::Integer));
        bound.push(query.to.map_or(Sql::Null, Sql::Integer));
        bound.push(Sql::Integer(ESTIMATE_CAP));
        // Unused numbered parameters are fine to bind: SQLite sizes them by the highest.
        total += statement.query_row(params_from_iter(bound), |r| r.get::<_, i64>(0))?;
    }
    Ok(total)
}

/// The candidates' query: `(recorded_ms, seq)` of the driver's index rows in the range,
/// past the cursor, that every probe filter also has.
fn select(
    driver: &[String],
    probes: &[&Vec<String>],
    query: &Query,
    with_cursor: bool,
) -> (String, Vec<Sql>) {
    let mut values: Vec<Sql> = Vec::new();
    let mut sql = String::from(if driver.len() > 1 { "SELECT DISTINCT" } else { "SELECT" });
    sql.push_str(" d.recorded_ms, d.seq FROM audit_terms d WHERE ");
    term_condition("d", driver, &mut sql, &mut values);
    if let Some(from) = query.from {
        sql.push_str(" AND d.recorded_ms >= ?");
        values.push(Sql::Integer(from));
    }
    if let Some(to) = query.to {
        sql.push_str(" AND d.recorded_ms < ?");
        values.push(Sql::Integer(to));
    }
    if with_cursor && let Some((ms, seq)) = query.cursor {
        sql.push_str(if query.newest_first {
            " AND (d.recorded_ms, d.seq) < (?, ?)"
        } else {
            " AND (d.recorded_ms, d.seq) > (?, ?)"
        });
        values.push(Sql::Integer(ms));
        values.push(Sql::Integer(seq));
    }
    for probe in probes {
        sql.push_str(" AND EXISTS (SELECT 1 FROM audit_terms p WHERE ");
        term_condition("p", probe, &mut sql, &mut values);
        sql.push_str(" AND p.recorded_ms = d.recorded_ms AND p.seq = d.seq)");
    }
    (sql, values)
}

fn term_condition(table: &str, terms: &[String], sql: &mut String, values: &mut Vec<Sql>) {
    if let [term] = terms {
        sql.push_str(&format!("{table}.term = ?"));
        values.push(Sql::Text(term.clone()));
    } else {
        let marks = vec!["?"; terms.len()].join(", ");
        sql.push_str(&format!("{table}.term IN ({marks})"));
        values.extend(terms.iter().cloned().map(Sql::Text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Query, Error> {
        Query::parse(pairs.iter().copied())
    }

    #[test]
    fn parameters_are_read_and_unsupported_ones_named() {
        let query = parse(&[
            ("patient", "pa,Patient/pb"),
            ("date", "ge2025-01-02"),
            ("date", "lt2025-02"),
            ("_count", "5"),
        ])
        .unwrap();
        assert_eq!(query.patients(), ["Patient/pa", "Patient/pb"]);
        assert_eq!(
            query.from,
            Some(
                fhir::DateTime::parse("2025-01-02T00:00:00Z", fhir::DateTimeKind::Instant)
                    .unwrap()
                    .lower_bound_millis()
            )
        );
        assert_eq!(
            query.to,
            Some(
                fhir::DateTime::parse("2025-02-01T00:00:00Z", fhir::DateTimeKind::Instant)
                    .unwrap()
                    .lower_bound_millis()
            )
        );
        assert_eq!(query.count, 5);
        let day = parse(&[("date", "2025-03-04")]).unwrap();
        assert_eq!(day.to.unwrap() - day.from.unwrap(), 86_400_000);
        assert_eq!(parse(&[("_count", "100000")]).unwrap().count, MAX_COUNT);
        match parse(&[("name", "x"), ("action:not", "R"), ("action", "R")]) {
            Err(Error::Search { code: fhir::IssueType::NotSupported, message }) => {
                assert!(message.contains("parameters name, action:not;"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            ("date", "sa2025"),
            ("date", "2025-13"),
            ("date", "ge2025,le2026"),
            ("_count", "-1"),
            ("_sort", "agent"),
            ("_cursor", "x"),
            ("entity", "o1"),
        ] {
            assert!(matches!(parse(&[bad]), Err(Error::Search { .. })), "{bad:?}");
        }
        assert_eq!(reference("http://h/fhir/Patient/pa", Some("Patient")).as_deref(), Some("Patient/pa"));
        assert_eq!(reference("Practitioner/x", Some("Patient")), None);
        assert_eq!(token("http://hl7.org/fhir/audit-event-action|C", ACTION_SYSTEM).as_deref(), Some("C"));
        assert_eq!(token("http://other|C", ACTION_SYSTEM), None);
    }
}
