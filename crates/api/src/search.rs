//! Search: FHIR search parameters parsed into a store query, run, and answered with a
//! searchset Bundle (includes, paging links, `_summary`/`_elements`).

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhir::{IssueType, ReferenceTarget};
use serde_json::{Map, Value};
use store::params::{self, ParamValue, ValueError, split_escaped, unescape};
use store::search::{Condition, Cursor, Filter, Sort, SortBy, SortValue};
use store::{SearchPage, SearchQuery, Total, VersionRecord};

use privacy::Sight;

use crate::access::Gate;
use crate::json_writer::{BundleWriter, Entry};
use crate::{Api, ApiError, Prefer, Request, Response};

/// Bounds on what one search may ask, so that every search runs in bounded time, stack and
/// SQL: a search beyond them is a 400 naming the bound (never a store error, a 500, or a
/// thread's stack overflowing on a chain parsed recursively).
pub(crate) mod limits {
    use fhir::IssueType;
    use store::search::Filter;

    use crate::ApiError;

    /// Search parameters (AND-ed filters) in one search.
    pub const PARAMETERS: usize = 50;
    /// Values given in all of a search's parameters together (`a,b,c` is three); codes that a
    /// `:below` or `:in` expands to are not counted.
    pub const VALUES: usize = 500;
    /// Links in one chained or `_has` parameter (`subject:Patient.organization.name` is two).
    pub const CHAIN_DEPTH: usize = 4;
    /// Chain and `_has` links in one search, counted after a chain without a type is tried
    /// on each type its reference may point to.
    pub const CHAIN_LINKS: usize = 16;
    /// `_include` and `_revinclude` parameters in one search.
    pub const INCLUDES: usize = 10;
    /// Resources `_include` and `_revinclude` add to one page.
    pub const INCLUDED: usize = 1000;
    /// Characters in one parameter name.
    pub const NAME_LENGTH: usize = 512;

    fn too_costly(message: String) -> ApiError {
        ApiError::bad_request(IssueType::TooCostly, message)
    }

    /// A parameter name, before it is parsed (chains are parsed recursively).
    pub fn check_name(name: &str) -> Result<(), ApiError> {
        if name.len() > NAME_LENGTH {
            return Err(too_costly(format!(
                "a search parameter name is at most {NAME_LENGTH} characters long"
            )));
        }
        let depth = name.matches('.').count() + name.matches("_has:").count();
        if depth > CHAIN_DEPTH {
            return Err(too_costly(format!(
                "the search parameter '{}...' chains {depth} links; at most {CHAIN_DEPTH} are accepted",
                name.chars().take(60).collect::<String>()
            )));
        }
        Ok(())
    }

    /// Chain and `_has` links in a parsed filter.
    pub fn chain_links(filter: &Filter) -> usize {
        match filter {
            Filter::Chain { filters, .. } | Filter::Has { filters, .. } => {
                1 + filters.iter().map(chain_links).sum::<usize>()
            }
            Filter::AnyOf(filters) => filters.iter().map(chain_links).sum(),
            _ => 0,
        }
    }

    /// The search as a whole.
    pub fn check_search(
        parameters: usize,
        values: usize,
        links: usize,
        includes: usize,
    ) -> Result<(), ApiError> {
        if parameters > PARAMETERS {
            return Err(too_costly(format!(
                "the search has {parameters} parameters; at most {PARAMETERS} are accepted"
            )));
        }
        if values > VALUES {
            return Err(too_costly(format!(
                "the search's parameters hold {values} values together; at most {VALUES} are accepted (split the search)"
            )));
        }
        if links > CHAIN_LINKS {
            return Err(too_costly(format!(
                "the search's chains and _has parameters come to {links} links (a chain without a type counts once per type it may reach); at most {CHAIN_LINKS} are accepted"
            )));
        }
        if includes > INCLUDES {
            return Err(too_costly(format!(
                "the search has {includes} _include and _revinclude parameters; at most {INCLUDES} are accepted"
            )));
        }
        Ok(())
    }
}

/// Matches read one by one to count what a caller may see, at most: beyond it a search
/// answers without `total`.
const VISIBLE_COUNT_LIMIT: usize = 10_000;

/// The entry saying that the access policy left entries out. It says no number: how many
/// were withheld would tell what the search's filters matched among them.
pub(crate) fn withheld_note(bundle: &mut BundleWriter) {
    let note = fhir::OperationOutcome::information(
        "entries under a patient's consent directive, or of types the token's scopes do not open, are left out of this answer; a clinician may break the glass with an X-Break-Glass-Reason header",
    )
    .to_bytes();
    bundle.entry(&Entry {
        full_url: Some("urn:chartroom:withheld"),
        resource: Some(&note),
        search_mode: Some("outcome"),
        ..Default::default()
    });
}

/// Query parameter carrying the paging cursor.
pub(crate) const CURSOR: &str = "_cursor";

/// How much of each resource to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Summary {
    Full,
    True,
    Text,
    Data,
    Count,
}

/// `_include` / `_revinclude`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Include {
    /// `None` for `_include=*` / `_revinclude=*`: any type.
    pub source_type: Option<String>,
    /// `None` for `*`.
    pub key: Option<ParamKey>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// A search request, parsed.
#[derive(Debug)]
pub(crate) struct ParsedSearch {
    pub query: SearchQuery,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
    /// The parameters applied, as given (for the self link).
    pub used: Vec<(String, String)>,
}

/// Why a parameter was not used.
enum Rejected {
    /// Not a parameter of this type (ignored unless `handling=strict`).
    Unknown(String),
    /// A parameter this server knows but cannot apply (ignored unless strict).
    Unsupported(String),
    /// A known parameter with a bad value: always an error.
    Invalid(ApiError),
}

impl From<ApiError> for Rejected {
    fn from(error: ApiError) -> Self {
        Rejected::Invalid(error)
    }
}

impl From<ValueError> for Rejected {
    fn from(error: ValueError) -> Self {
        match error {
            ValueError::Invalid(message) => invalid(message),
            ValueError::UnsupportedModifier { .. } => {
                Rejected::Invalid(ApiError::bad_request(IssueType::NotSupported, error.to_string()))
            }
            ValueError::Unsupported(what) => Rejected::Unsupported(what),
        }
    }
}

fn invalid(message: impl Into<String>) -> Rejected {
    Rejected::Invalid(ApiError::bad_request(IssueType::Value, message))
}

impl Api {
    /// Parses one search parameter (`name[:modifier][.chain]=value`) of `resource_type`.
    fn filter(
        &self,
        resource_type: &str,
        name: &str,
        value: &str,
        base: &str,
        gate: &Gate,
    ) -> Result<Filter, Rejected> {
        if name == "_has" {
            return Err(invalid("'_has': _has is _has:Type:reference:parameter".to_string()));
        }
        if let Some(rest) = name.strip_prefix("_has:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(source_type), Some(reference), Some(inner)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid(format!("'{name}': _has is _has:Type:reference:parameter")));
            };
            if !fhir::definitions().is_resource_type(source_type) {
                return Err(invalid(format!("'{name}': '{source_type}' is not a resource type")));
            }
            let applied = search_parameters()
                .get(source_type, reference)
                .filter(|a| search_parameters().parameter(a).kind == SearchParamType::Reference)
                .ok_or_else(|| Rejected::Unknown(format!("{source_type}:{reference}")))?;
            let inner = self.filter(source_type, inner, value, base, gate)?;
            return Ok(Filter::Has {
                source_type: source_type.to_string(),
                key: applied.key,
                filters: vec![inner],
            });
        }
        let (head, chain) = match name.split_once('.') {
            Some((head, chain)) => (head, Some(chain)),
            None => (name, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (head, None),
        };
        let values = split_escaped(value, ',');
        if values.iter().any(String::is_empty) && chain.is_none() && modifier != Some("missing") {
            return Err(invalid(format!("{name}: empty value")));
        }
        match code {
            "_id" if chain.is_none() && modifier.is_none() => {
                return Ok(Filter::Ids(values.iter().map(|v| unescape(v)).collect()));
            }
            "_lastUpdated" if chain.is_none() && modifier.is_none() => {
                let mut conditions = Vec::new();
                for v in &values {
                    conditions.push(params::date::range(code, v)?);
                }
                return Ok(Filter::LastUpdated(conditions));
            }
            _ => {}
        }
        let applied = search_parameters()
            .get(resource_type, code)
            .ok_or_else(|| Rejected::Unknown(code.to_string()))?;
        let parameter = search_parameters().parameter(applied);
        let kind = parameter.kind;
        if applied.expression.as_deref().is_none_or(str::is_empty) {
            return Err(Rejected::Unsupported(code.to_string()));
        }
        if let Some(chain) = chain {
            if kind != SearchParamType::Reference {
                return Err(invalid(format!("'{name}': only reference parameters can be chained")));
            }
            let targets: Vec<String> = match modifier {
                Some(t) if fhir::definitions().is_resource_type(t) => vec![t.to_string()],
                Some(other) => return Err(invalid(format!("'{name}': ':{other}' is not a resource type"))),
                None => parameter.targets.iter().map(|t| t.to_string()).collect(),
            };
            let next = chain.split(['.', ':']).next().unwrap_or(chain);
            let mut chains = Vec::new();
            for target in targets {
                let known = matches!(next, "_id" | "_lastUpdated" | "_has")
                    || next.starts_with("_has")
                    || search_parameters().get(&target, next).is_some();
                if !known {
                    continue;
                }
                let inner = self.filter(&target, chain, value, base, gate)?;
                chains.push(Filter::Chain { key: applied.key, target_type: target, filters: vec![inner] });
            }
            return match chains.len() {
                0 => Err(Rejected::Unknown(name.to_string())),
                1 => Ok(chains.remove(0)),
                _ => Ok(Filter::AnyOf(chains)),
            };
        }
        if modifier == Some("missing") {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(format!("{name} must be true or false, got '{value}'"))),
            };
            return Ok(Filter::Missing { key: applied.key, kind, missing });
        }
        if let Some(modifier @ ("above" | "below" | "in" | "not-in")) = modifier
            && kind == SearchParamType::Token
        {
            let mut any = Vec::new();
            for v in &values {
                any.extend(self.terminology_conditions(applied.code, modifier, v, gate)?);
            }
            return Ok(match modifier {
                "not-in" => Filter::Not { key: applied.key, any },
                // An empty set of codes matches nothing.
                _ if any.is_empty() => Filter::Ids(Vec::new()),
                _ => Filter::Param { key: applied.key, any },
            });
        }
        let mut any = Vec::with_capacity(values.len());
        for v in &values {
            any.push(params::of(kind).parse(&ParamValue { applied, value: v, base }, modifier)?);
        }
        if modifier == Some("not") {
            return Ok(Filter::Not { key: applied.key, any });
        }
        Ok(Filter::Param { key: applied.key, any })
    }

    /// The codes a token `:above`, `:below`, `:in` or `:not-in` stands for, as token
    /// conditions: subsumption and value-set membership are decided by the terminology
    /// service here, so the index needs nothing beyond the codes themselves.
    fn terminology_conditions(
        &self,
        name: &str,
        modifier: &str,
        value: &str,
        gate: &Gate,
    ) -> Result<Vec<Condition>, Rejected> {
        // Stored value sets and code systems are read as the caller may see them.
        let viewed = crate::access::ViewedStore { store: self.store.as_ref(), gate };
        use terminology::Terminology;
        let terminology = Terminology::get();
        let fail = |error: terminology::Error| {
            let mut error = crate::operations::terminology_error(error);
            for issue in &mut error.outcome.issues {
                issue.diagnostics = format!("{name}:{modifier}={value}: {}", issue.diagnostics);
            }
            // Whatever the terminology could not find is a bad search value, not a missing page.
            if error.status == 404 {
                error.status = 400;
            }
            Rejected::Invalid(error)
        };
        let codes: Vec<(String, String)> = match modifier {
            "in" | "not-in" => {
                let resolver = crate::operations::StoreTerminology { store: &viewed };
                let value = unescape(value);
                // A literal reference (`ValueSet/123`) names a stored value set by id; a
                // canonical URL by its `url`.
                let url = match fhir::parse_reference(&value) {
                    Ok(ReferenceTarget::Local { resource_type: "ValueSet", id, .. }) => {
                        store::Store::read(&viewed, "ValueSet", id)
                            .ok()
                            .flatten()
                            .and_then(|record| record.body)
                            .and_then(|body| fhir::parse_json(&body).ok())
                            .and_then(|vs| vs.get("url").and_then(Value::as_str).map(str::to_string))
                            .ok_or_else(|| {
                                invalid(format!(
                                    "{name}:{modifier}: {value} is not a stored ValueSet with a url"
                                ))
                            })?
                    }
                    _ => value,
                };
                terminology.expand_codes_with(&url, &resolver).map_err(fail)?
            }
            _ => {
                let Condition::Token { system: Some(system), code: Some(code) } =
                    params::token::condition(value)
                else {
                    return Err(invalid(format!("{name}:{modifier} needs system|code, got '{value}'")));
                };
                if modifier == "below" {
                    let mut codes =
                        terminology.expand_codes(&format!("{system}?fhir_vs=isa/{code}")).map_err(fail)?;
                    // The code itself, even where the expansion leaves out abstract codes.
                    if !codes.iter().any(|(_, c)| *c == code) {
                        codes.push((system.clone(), code.clone()));
                    }
                    codes
                } else {
                    terminology
                        .ancestors_and_self(&system, &code)
                        .map_err(fail)?
                        .into_iter()
                        .map(|c| (system.clone(), c))
                        .collect()
                }
            }
        };
        Ok(codes
            .into_iter()
            .map(|(system, code)| Condition::Token { system: Some(system), code: Some(code) })
            .collect())
    }

    /// Parses a search of `resource_type` from decoded (name, value) pairs.
    pub(crate) fn parse_search(
        &self,
        gate: &Gate,
        resource_type: &str,
        pairs: &[(String, String)],
        strict: bool,
        base: &str,
    ) -> Result<ParsedSearch, ApiError> {
        let mut query = SearchQuery {
            resource_type: resource_type.to_string(),
            filters: Vec::new(),
            sort: Vec::new(),
            count: self.config.default_page_size,
            cursor: None,
            total: Total::UpTo(self.config.total_bound),
        };
        let mut total_asked = None;
        let mut parsed = ParsedSearch {
            query: SearchQuery { ..query.clone() },
            includes: Vec::new(),
            revincludes: Vec::new(),
            summary: Summary::Full,
            elements: None,
            used: Vec::new(),
        };
        let mut used = Vec::new();
        // What the search asks of the store, against `limits`.
        let (mut values, mut links) = (0usize, 0usize);
        for (name, value) in pairs {
            let keep = |used: &mut Vec<(String, String)>| used.push((name.clone(), value.clone()));
            match name.as_str() {
                "_count" => {
                    let count: usize = value.parse().map_err(|_| {
                        ApiError::bad_request(
                            IssueType::Value,
                            format!("_count must be a whole number, got '{value}'"),
                        )
                    })?;
                    query.count = count.min(self.config.max_page_size);
                }
                "_sort" => {
                    for part in value.split(',').filter(|p| !p.is_empty()) {
                        let (descending, code) = match part.strip_prefix('-') {
                            Some(code) => (true, code),
                            None => (false, part),
                        };
                        let by = match code {
                            "_id" => SortBy::Id,
                            "_lastUpdated" => SortBy::LastUpdated,
                            _ => {
                                let applied = search_parameters()
                                    .get(resource_type, code)
                                    .filter(|a| !matches!(search_parameters().parameter(a).kind, SearchParamType::Composite | SearchParamType::Special))
                                    .ok_or_else(|| {
                                        ApiError::bad_request(
                                            IssueType::NotSupported,
                                            format!("_sort: '{code}' is not a search parameter of {resource_type} that can be sorted on"),
                                        )
                                    })?;
                                SortBy::Param {
                                    key: applied.key,
                                    kind: search_parameters().parameter(applied).kind,
                                }
                            }
                        };
                        query.sort.push(Sort { by, descending });
                    }
                    keep(&mut used);
                }
                "_include" | "_include:iterate" | "_revinclude" | "_revinclude:iterate" => {
                    let include = parse_include(value, name.ends_with(":iterate"))?;
                    if name.starts_with("_include") {
                        parsed.includes.push(include);
                    } else {
                        parsed.revincludes.push(include);
                    }
                    keep(&mut used);
                }
                "_summary" => {
                    parsed.summary = match value.as_str() {
                        "true" => Summary::True,
                        "text" => Summary::Text,
                        "data" => Summary::Data,
                        "count" => Summary::Count,
                        "false" => Summary::Full,
                        other => {
                            return Err(ApiError::bad_request(
                                IssueType::Value,
                                format!("_summary must be true, false, text, data or count, got '{other}'"),
                            ));
                        }
                    };
                    keep(&mut used);
                }
                "_elements" => {
                    parsed.elements = Some(
                        value.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect(),
                    );
                    keep(&mut used);
                }
                "_total" => {
                    total_asked = Some(match value.as_str() {
                        // An estimate is given as the exact count: there is no cheaper one.
                        "accurate" | "estimate" => Total::Accurate,
                        "none" => Total::None,
                        other => {
                            return Err(ApiError::bad_request(
                                IssueType::Value,
                                format!("_total must be none, estimate or accurate, got '{other}'"),
                            ));
                        }
                    });
                    keep(&mut used);
                }
                CURSOR => {
                    query.cursor = Some(decode_cursor(value).ok_or_else(|| {
                        ApiError::bad_request(IssueType::Value, format!("invalid paging cursor '{value}'"))
                    })?);
                }
                "_format" | "_pretty" => {}
                _ => match limits::check_name(name)
                    .map_err(Rejected::Invalid)
                    .and_then(|()| self.filter(resource_type, name, value, base, gate))
                {
                    Ok(filter) => {
                        values += split_escaped(value, ',').len();
                        links += limits::chain_links(&filter);
                        query.filters.push(filter);
                        keep(&mut used);
                    }
                    Err(Rejected::Invalid(error)) => return Err(error),
                    Err(Rejected::Unknown(what)) => {
                        if strict {
                            return Err(ApiError::bad_request(
                                IssueType::NotSupported,
                                format!("unknown search parameter '{name}' for {resource_type} ({what})"),
                            ));
                        }
                    }
                    Err(Rejected::Unsupported(what)) => {
                        if strict {
                            return Err(ApiError::bad_request(
                                IssueType::NotSupported,
                                format!("the search parameter '{name}' is not supported ({what})"),
                            ));
                        }
                    }
                },
            }
        }
        limits::check_search(
            query.filters.len(),
            values,
            links,
            parsed.includes.len() + parsed.revincludes.len(),
        )?;
        // A cursor is a position in this search's order: one value per sort key.
        if let Some(cursor) = &query.cursor
            && (cursor.sort_values.len() != query.sort.len()
                || cursor.sort_values.iter().zip(&query.sort).any(|(value, sort)| !sort.by.fits(value)))
        {
            return Err(ApiError::bad_request(
                IssueType::Value,
                "the paging cursor does not belong to this search (its _sort differs); follow the links of the search's own pages",
            ));
        }
        if parsed.summary == Summary::Count {
            query.count = 0;
        }
        // A request for no entries asks only how many there are (clients count with
        // `_count=0`), whatever the cost; otherwise as asked, or the bounded default.
        query.total = match total_asked {
            _ if query.count == 0 => Total::Accurate,
            Some(asked) => asked,
            None => query.total,
        };
        parsed.query = query;
        parsed.used = used;
        Ok(parsed)
    }

    /// Runs a search of `resource_type` and builds the searchset Bundle.
    pub(crate) fn search(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        pairs: &[(String, String)],
        compartment: Option<(&str, &str)>,
        path: &str,
    ) -> Result<Response, ApiError> {
        let strict = Prefer::parse(request.prefer.as_deref()).strict;
        let mut parsed = self.parse_search(gate, resource_type, pairs, strict, &request.base)?;
        if let Some((compartment_type, id)) = compartment {
            let keys = compartment_keys(compartment_type, resource_type);
            if keys.is_empty() {
                return Err(ApiError::bad_request(
                    IssueType::NotSupported,
                    format!("{resource_type} is not in the {compartment_type} compartment"),
                ));
            }
            parsed.query.filters.push(Filter::Compartment {
                keys,
                target_type: compartment_type.to_string(),
                target_id: id.to_string(),
            });
        }
        gate.confine(&mut parsed.query);
        // Where the policy may withhold matches one by one, the store's count is not the
        // caller's: count what they may see instead.
        let page = if gate.may_withhold(resource_type) {
            let asked = std::mem::take(&mut parsed.query.total);
            let mut page = self.visible_page(gate, &parsed.query)?;
            page.total = match asked {
                Total::None => None,
                // A first page holding every visible match is its own count.
                _ if parsed.query.cursor.is_none() && !page.has_next && parsed.query.count > 0 => {
                    Some(page.matches.len() as u64)
                }
                Total::UpTo(_) | Total::Accurate => self.visible_total(gate, &parsed.query)?,
            };
            page
        } else {
            self.store.search(&parsed.query)?
        };
        Ok(Response::json(200, self.searchset(request, gate, path, &parsed, page)?))
    }

    /// A page of what the caller may see, when the store's matches may hold what they may
    /// not: filled from as many of the store's pages as it takes, its links built only from
    /// matches the caller sees (a cursor holds its match's sort values), and a next page
    /// offered only when a further visible match exists.
    fn visible_page(&self, gate: &Gate, query: &SearchQuery) -> Result<SearchPage, ApiError> {
        if query.cursor.as_ref().is_some_and(|c| c.before) {
            return Err(ApiError::bad_request(
                IssueType::NotSupported,
                "earlier pages are not offered to this token; page forward from the first page",
            ));
        }
        let wanted = query.count;
        if wanted == 0 {
            return Ok(SearchPage::default());
        }
        let mut walk = SearchQuery { total: Total::None, count: wanted.max(50), ..query.clone() };
        let mut kept: Vec<(VersionRecord, Cursor)> = Vec::new();
        let (mut scanned, mut more) = (0usize, false);
        'pages: loop {
            let page = self.store.search(&walk)?;
            let next = page.last.clone().filter(|_| page.has_next);
            for (record, cursor) in page.matches.into_iter().zip(page.cursors) {
                scanned += 1;
                let visible = record
                    .body
                    .as_deref()
                    .is_some_and(|body| gate.sight(&record.resource_type, body) == Sight::Shown);
                if visible {
                    if kept.len() == wanted {
                        more = true;
                        break 'pages;
                    }
                    kept.push((record, cursor));
                }
            }
            match next {
                Some(last) if scanned < VISIBLE_COUNT_LIMIT => {
                    walk.cursor = Some(Cursor { before: false, ..last })
                }
                _ => break,
            }
        }
        let (matches, cursors): (Vec<VersionRecord>, Vec<Cursor>) = kept.into_iter().unzip();
        Ok(SearchPage {
            first: cursors.first().cloned(),
            last: cursors.last().cloned(),
            matches,
            cursors,
            has_next: more,
            has_previous: false,
            total: None,
        })
    }

    /// How many matches of `query` the caller may see; `None` beyond [`VISIBLE_COUNT_LIMIT`]
    /// (each must be read to decide).
    fn visible_total(&self, gate: &Gate, query: &SearchQuery) -> Result<Option<u64>, ApiError> {
        let mut walk =
            SearchQuery { count: 1000, cursor: None, sort: Vec::new(), total: Total::None, ..query.clone() };
        let (mut seen, mut visible) = (0usize, 0u64);
        loop {
            let page = self.store.search(&walk)?;
            for record in &page.matches {
                seen += 1;
                if let Some(body) = &record.body
                    && gate.sight(&record.resource_type, body) == Sight::Shown
                {
                    visible += 1;
                }
            }
            if seen > VISIBLE_COUNT_LIMIT {
                return Ok(None);
            }
            match (page.has_next, page.last) {
                (true, Some(last)) => walk.cursor = Some(Cursor { before: false, ..last }),
                _ => return Ok(Some(visible)),
            }
        }
    }

    fn searchset(
        &self,
        request: &Request,
        gate: &Gate,
        path: &str,
        parsed: &ParsedSearch,
        page: SearchPage,
    ) -> Result<Vec<u8>, ApiError> {
        let link = |cursor: Option<(&Cursor, bool)>| {
            let mut url = format!("{}/{path}?", request.base);
            let mut first = true;
            let mut add = |name: &str, value: &str| {
                if !first {
                    url.push('&');
                }
                first = false;
                url.extend(form_urlencoded::byte_serialize(name.as_bytes()));
                url.push('=');
                url.extend(form_urlencoded::byte_serialize(value.as_bytes()));
            };
            for (name, value) in &parsed.used {
                add(name, value);
            }
            add("_count", &parsed.query.count.to_string());
            if let Some((cursor, before)) = cursor {
                add(CURSOR, &encode_cursor(cursor, before));
            }
            url
        };
        let mut links = vec![("self", link(parsed.query.cursor.as_ref().map(|c| (c, c.before))))];
        if page.has_next
            && let Some(last) = &page.last
        {
            links.push(("next", link(Some((last, false)))));
        }
        if page.has_previous
            && let Some(first) = &page.first
        {
            links.push(("previous", link(Some((first, true)))));
        }
        if parsed.query.cursor.is_some() {
            links.push(("first", link(None)));
        }
        let mut bundle = BundleWriter::new("searchset", page.total, &links);
        if parsed.summary == Summary::Count {
            return Ok(bundle.finish());
        }
        let mut seen: std::collections::HashSet<(String, String)> =
            page.matches.iter().map(|m| (m.resource_type.clone(), m.id.clone())).collect();
        // Includes follow only what the caller may see.
        let matches: Vec<VersionRecord> = page
            .matches
            .into_iter()
            .filter(|m| {
                m.body.as_deref().is_some_and(|body| gate.sight(&m.resource_type, body) == Sight::Shown)
            })
            .collect();
        let withheld = seen.len() - matches.len();
        let included = self.includes(parsed, &matches, &mut seen, gate)?;
        for (record, mode) in
            matches.iter().map(|m| (m, "match")).chain(included.iter().map(|m| (m, "include")))
        {
            let Some(body) = &record.body else { continue };
            gate.shown(body);
            let full_url = format!("{}/{}/{}", request.base, record.resource_type, record.id);
            let shaped = shape(body, &record.resource_type, parsed.summary, parsed.elements.as_deref());
            bundle.entry(&Entry {
                full_url: Some(&full_url),
                resource: Some(shaped.as_deref().unwrap_or(body)),
                search_mode: Some(mode),
                ..Default::default()
            });
        }
        if (withheld > 0 || gate.left_out_by_consent()) && gate.tells_withheld() {
            withheld_note(&mut bundle);
        }
        Ok(bundle.finish())
    }

    /// `_include` and `_revinclude` (with `:iterate`, up to a bound).
    fn includes(
        &self,
        parsed: &ParsedSearch,
        matches: &[VersionRecord],
        seen: &mut std::collections::HashSet<(String, String)>,
        gate: &Gate,
    ) -> Result<Vec<VersionRecord>, ApiError> {
        let mut included: Vec<VersionRecord> = Vec::new();
        let mut frontier: Vec<VersionRecord> = matches.to_vec();
        for round in 0..4 {
            let mut found: Vec<VersionRecord> = Vec::new();
            for include in parsed.includes.iter().filter(|i| round == 0 || i.iterate) {
                let mut targets: Vec<(String, String)> = Vec::new();
                for record in frontier
                    .iter()
                    .filter(|r| include.source_type.as_ref().is_none_or(|t| *t == r.resource_type))
                {
                    let Some(body) = &record.body else { continue };
                    let Ok(json) = fhir::parse_json(body) else { continue };
                    let keys: Vec<ParamKey> = match include.key {
                        Some(key) => vec![key],
                        None => search_parameters()
                            .for_type(&record.resource_type)
                            .filter(|a| search_parameters().parameter(a).kind == SearchParamType::Reference)
                            .map(|a| a.key)
                            .collect(),
                    };
                    for key in keys {
                        for target in store::index::references_of(&json, key) {
                            if include.target_type.as_ref().is_none_or(|t| *t == target.0)
                                && !seen.contains(&target)
                            {
                                targets.push(target);
                            }
                        }
                    }
                }
                targets.sort();
                targets.dedup();
                for record in self.store.read_many(&targets)? {
                    if seen.insert((record.resource_type.clone(), record.id.clone())) {
                        found.push(record);
                    }
                }
            }
            for include in parsed.revincludes.iter().filter(|i| round == 0 || i.iterate) {
                let targets: Vec<(String, String)> = frontier
                    .iter()
                    .filter(|r| include.target_type.as_ref().is_none_or(|t| *t == r.resource_type))
                    .map(|r| (r.resource_type.clone(), r.id.clone()))
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                let keys: Vec<ParamKey> = match (&include.source_type, include.key) {
                    (_, Some(key)) => vec![key],
                    (Some(source_type), None) => search_parameters()
                        .for_type(source_type)
                        .filter(|a| search_parameters().parameter(a).kind == SearchParamType::Reference)
                        .map(|a| a.key)
                        .collect(),
                    // `*`: every reference parameter of every type that can point at a target.
                    (None, None) => search_parameters()
                        .all_applied()
                        .filter(|a| {
                            let parameter = search_parameters().parameter(a);
                            parameter.kind == SearchParamType::Reference
                                && targets.iter().any(|(t, _)| parameter.targets.contains(&t.as_str()))
                        })
                        .map(|a| a.key)
                        .collect(),
                };
                for record in self.store.referencing(&keys, &targets)? {
                    if include.source_type.as_ref().is_none_or(|t| *t == record.resource_type)
                        && seen.insert((record.resource_type.clone(), record.id.clone()))
                    {
                        found.push(record);
                    }
                }
            }
            // What the caller may not see is neither included, nor counted against the bound,
            // nor followed further (an iteration through another patient's record would say
            // what it links to).
            found.retain(|record| {
                record
                    .body
                    .as_deref()
                    .is_some_and(|body| gate.sight(&record.resource_type, body) == Sight::Shown)
            });
            if found.is_empty() {
                break;
            }
            included.extend(found.iter().cloned());
            if included.len() > limits::INCLUDED {
                return Err(ApiError::bad_request(
                    IssueType::TooCostly,
                    format!(
                        "the _include and _revinclude of this page reach more than {} resources; ask for a smaller _count or fewer includes",
                        limits::INCLUDED
                    ),
                ));
            }
            frontier = found;
        }
        Ok(included)
    }

    /// A patient's whole record, as `$everything` and a patient's bulk export give it: the
    /// Patient, every resource of its compartment, then what they reference; optionally only
    /// some types and what changed since a time; in (type, id) order.
    pub(crate) fn everything_members(
        &self,
        patient: VersionRecord,
        types: Option<&[String]>,
        since: Option<i64>,
    ) -> Result<Vec<VersionRecord>, ApiError> {
        let id = patient.id.clone();
        let mut members: Vec<VersionRecord> = vec![patient];
        let compartment = fhir::definitions().compartment("Patient").cloned().unwrap_or_default();
        let target = vec![("Patient".to_string(), id.to_string())];
        // A key names a (type, parameter) pair and index rows carry their resource's own keys,
        // so one lookup with every compartment type's keys finds what one per type would: one
        // statement where there were sixty (each a round trip on PostgreSQL).
        let mut keys: Vec<ParamKey> =
            compartment.keys().flat_map(|resource_type| compartment_keys("Patient", resource_type)).collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            members.extend(self.store.referencing(&keys, &target)?);
        }
        let mut seen: std::collections::HashSet<(String, String)> =
            members.iter().map(|m| (m.resource_type.clone(), m.id.clone())).collect();
        let mut referenced: Vec<(String, String)> = Vec::new();
        for member in &members {
            let Some(body) = &member.body else { continue };
            let Ok(json) = fhir::parse_json(body) else { continue };
            let Ok(resource) = fhir::Resource::from_value(json) else { continue };
            for site in resource.references() {
                if let Ok(ReferenceTarget::Local { resource_type, id, .. }) =
                    fhir::parse_reference(site.reference)
                {
                    let identity = (resource_type.to_string(), id.to_string());
                    if !seen.contains(&identity) {
                        seen.insert(identity.clone());
                        referenced.push(identity);
                    }
                }
            }
        }
        members.extend(self.store.read_many(&referenced)?);
        members.retain(|m| {
            types.is_none_or(|t| t.contains(&m.resource_type)) && since.is_none_or(|s| m.last_updated >= s)
        });
        members.sort_by(|a, b| (&a.resource_type, &a.id).cmp(&(&b.resource_type, &b.id)));
        Ok(members)
    }

    /// `Patient/[id]/$everything`: the patient, every resource in its compartment, and the
    /// resources those refer to; `_type`, `_since`, `_count` and paging by cursor.
    pub(crate) fn everything(&self, request: &Request, gate: &Gate, id: &str) -> Result<Response, ApiError> {
        let Some(patient) = self.store.read("Patient", id)? else {
            return Err(ApiError::not_found(format!("Patient/{id} is not known")));
        };
        self.admit_version(gate, &patient)?;
        if patient.is_deleted() {
            return Err(ApiError::new(410, IssueType::Deleted, format!("Patient/{id} was deleted")));
        }
        let mut count = self.config.default_page_size;
        let mut types: Option<Vec<String>> = None;
        let mut since: Option<i64> = None;
        let mut after: Option<(String, String)> = None;
        let mut used = Vec::new();
        for (name, value) in crate::query_pairs(&request.query) {
            match name.as_ref() {
                "_count" => {
                    count = value
                        .parse::<usize>()
                        .map_err(|_| {
                            ApiError::bad_request(
                                IssueType::Value,
                                format!("_count must be a whole number, got '{value}'"),
                            )
                        })?
                        .min(self.config.max_page_size)
                }
                "_type" => {
                    let list: Vec<String> = value.split(',').map(str::to_string).collect();
                    if let Some(bad) = list.iter().find(|t| !fhir::definitions().is_resource_type(t)) {
                        return Err(ApiError::bad_request(
                            IssueType::Value,
                            format!("_type: '{bad}' is not a resource type"),
                        ));
                    }
                    used.push(("_type".to_string(), value.to_string()));
                    types = Some(list);
                }
                "_since" => {
                    since = Some(crate::history::parse_instant_param("_since", &value)?.lower_bound_millis());
                    used.push(("_since".to_string(), value.to_string()));
                }
                CURSOR => {
                    after = value.split_once('/').map(|(t, i)| (t.to_string(), i.to_string()));
                }
                _ => {}
            }
        }
        let mut members = self.everything_members(patient, types.as_deref(), since)?;
        // What the caller may not see is not a member of their answer at all, so pages and
        // the total stay consistent.
        if gate.checks() {
            members.retain(|m| {
                m.body.as_deref().is_some_and(|body| gate.sight(&m.resource_type, body) == Sight::Shown)
            });
        }
        let start = match &after {
            Some(cursor) => members.partition_point(|m| (&m.resource_type, &m.id) <= (&cursor.0, &cursor.1)),
            None => 0,
        };
        let end = (start + count).min(members.len());
        let page = &members[start.min(end)..end];
        let path = format!("Patient/{id}/$everything");
        let link = |cursor: Option<String>| {
            let mut url = format!("{}/{path}?_count={count}", request.base);
            for (name, value) in &used {
                url.push_str(&format!("&{name}="));
                url.extend(form_urlencoded::byte_serialize(value.as_bytes()));
            }
            if let Some(cursor) = cursor {
                url.push_str(&format!("&{CURSOR}="));
                url.extend(form_urlencoded::byte_serialize(cursor.as_bytes()));
            }
            url
        };
        let mut links = vec![("self", link(after.as_ref().map(|(t, i)| format!("{t}/{i}"))))];
        if end < members.len()
            && let Some(last) = page.last()
        {
            links.push(("next", link(Some(format!("{}/{}", last.resource_type, last.id)))));
        }
        let mut bundle = BundleWriter::new("searchset", Some(members.len() as u64), &links);
        for record in page {
            let Some(body) = &record.body else { continue };
            gate.shown(body);
            let full_url = format!("{}/{}/{}", request.base, record.resource_type, record.id);
            bundle.entry(&Entry {
                full_url: Some(&full_url),
                resource: Some(body),
                search_mode: Some("match"),
                ..Default::default()
            });
        }
        Ok(Response::json(200, bundle.finish()))
    }

    /// The single resource a conditional query matches, for conditional references and
    /// conditional operations inside Bundles: `Ok(None)` when nothing matches.
    pub(crate) fn resolve_condition(
        &self,
        gate: &Gate,
        resource_type: &str,
        query: &str,
        base: &str,
    ) -> Result<Vec<VersionRecord>, ApiError> {
        let query = self.conditional_query(gate, resource_type, query, base)?;
        Ok(self.store.search(&SearchQuery { count: 2, ..query })?.matches)
    }

    /// A search for a conditional operation: every parameter must be understood (ignoring one
    /// could match, and change, resources the client did not mean).
    pub(crate) fn conditional_query(
        &self,
        gate: &Gate,
        resource_type: &str,
        query: &str,
        base: &str,
    ) -> Result<SearchQuery, ApiError> {
        // `ifNoneExist` is defined as the query part only, but writers often include the type
        // (`Patient?identifier=...`); accept that form when the type is the right one.
        let query = match query.split_once('?') {
            Some((named, rest)) if !named.contains('=') => {
                if !named.is_empty() && named != resource_type {
                    return Err(ApiError::bad_request(
                        IssueType::Invalid,
                        format!("the condition '{query}' searches {named}, not {resource_type}"),
                    ));
                }
                rest
            }
            _ => query,
        };
        let pairs: Vec<(String, String)> =
            crate::query_pairs(query).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        if pairs.is_empty() {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "a conditional operation needs search parameters",
            ));
        }
        let parsed = self.parse_search(gate, resource_type, &pairs, true, base)?;
        if parsed.query.filters.is_empty() {
            return Err(ApiError::bad_request(
                IssueType::Required,
                "a conditional operation needs search parameters",
            ));
        }
        // The condition finds only what the caller may see: a write addressed by search
        // neither changes nor reveals a record withheld from them.
        let mut query = parsed.query;
        gate.confine(&mut query);
        Ok(query)
    }
}

/// The reference parameters putting `resource_type` in `compartment`'s compartment.
pub(crate) fn compartment_keys(compartment: &str, resource_type: &str) -> Vec<ParamKey> {
    fhir::search_parameters::compartment_keys(compartment, resource_type)
}

fn parse_include(value: &str, iterate: bool) -> Result<Include, ApiError> {
    let bad = || {
        ApiError::bad_request(
            IssueType::Value,
            format!("_include/_revinclude '{value}': expected Type:parameter[:TargetType] or *"),
        )
    };
    if value == "*" {
        return Ok(Include { source_type: None, key: None, target_type: None, iterate });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source, code, target) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some(*target)),
        _ => return Err(bad()),
    };
    if !fhir::definitions().is_resource_type(source)
        || target.is_some_and(|t| !fhir::definitions().is_resource_type(t))
    {
        return Err(bad());
    }
    let key = if code == "*" {
        None
    } else {
        let applied = search_parameters()
            .get(source, code)
            .filter(|a| search_parameters().parameter(a).kind == SearchParamType::Reference)
            .ok_or_else(|| {
                ApiError::bad_request(
                    IssueType::NotSupported,
                    format!("'{source}:{code}' is not a reference parameter"),
                )
            })?;
        Some(applied.key)
    };
    Ok(Include {
        source_type: Some(source.to_string()),
        key,
        target_type: target.map(str::to_string),
        iterate,
    })
}

fn encode_cursor(cursor: &Cursor, before: bool) -> String {
    let mut text = format!("{}{}", if before { 'b' } else { 'a' }, cursor.rkey);
    for value in &cursor.sort_values {
        text.push('~');
        match value {
            SortValue::Missing => text.push('m'),
            SortValue::Integer(i) => text.push_str(&format!("i{i}")),
            SortValue::Real(f) => text.push_str(&format!("r{:x}", f.to_bits())),
            SortValue::Text(t) => {
                text.push('t');
                for byte in t.bytes() {
                    text.push_str(&format!("{byte:02x}"));
                }
            }
        }
    }
    text
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    let mut parts = text.split('~');
    let head = parts.next()?;
    let before = match head.chars().next()? {
        'a' => false,
        'b' => true,
        _ => return None,
    };
    let rkey = head[1..].parse().ok()?;
    let mut sort_values = Vec::new();
    for part in parts {
        let (kind, rest) = part.split_at_checked(1)?;
        sort_values.push(match kind {
            "m" => SortValue::Missing,
            "i" => SortValue::Integer(rest.parse().ok()?),
            "r" => SortValue::Real(f64::from_bits(u64::from_str_radix(rest, 16).ok()?)),
            "t" => {
                let bytes: Option<Vec<u8>> = (0..rest.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(rest.get(i..i + 2)?, 16).ok())
                    .collect();
                SortValue::Text(String::from_utf8(bytes?).ok()?)
            }
            _ => return None,
        });
    }
    Some(Cursor { sort_values, rkey, before })
}

/// A resource reduced for `_summary` or `_elements`, marked SUBSETTED; `None` when returned
/// whole.
fn shape(body: &[u8], resource_type: &str, summary: Summary, elements: Option<&[String]>) -> Option<Vec<u8>> {
    if summary == Summary::Full && elements.is_none() {
        return None;
    }
    let Ok(Value::Object(object)) = fhir::parse_json(body) else { return None };
    let defs = fhir::definitions();
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        let child = defs.child(resource_type, name);
        let mandatory = child.is_some_and(|c| c.element.min > 0);
        if let Some(elements) = elements {
            let base = child
                .map(|c| c.element.path.rsplit('.').next().unwrap_or("").trim_end_matches("[x]").to_string());
            return mandatory || elements.iter().any(|e| e == name || Some(e) == base.as_ref());
        }
        match summary {
            Summary::True => mandatory || child.is_some_and(|c| c.element.is_summary),
            Summary::Text => mandatory || name == "text",
            Summary::Data => name != "text",
            _ => true,
        }
    };
    let mut shaped: Map<String, Value> = object.into_iter().filter(|(k, _)| keep(k)).collect();
    let meta = shaped.entry("meta").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(tags) = tags {
            tags.push(serde_json::json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted"
            }));
        }
    }
    serde_json::to_vec(&Value::Object(shaped)).ok()
}

/// A read answered with `_summary` or `_elements` applied.
pub(crate) fn shape_read(response: &mut Response, resource_type: &str, query: &str) -> Result<(), ApiError> {
    let mut summary = Summary::Full;
    let mut elements: Option<Vec<String>> = None;
    for (name, value) in crate::query_pairs(query) {
        match name.as_ref() {
            "_summary" => {
                summary = match value.as_ref() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "false" => Summary::Full,
                    other => {
                        return Err(ApiError::bad_request(
                            IssueType::Value,
                            format!("_summary on a read must be true, false, text or data, got '{other}'"),
                        ));
                    }
                }
            }
            "_elements" => elements = Some(value.split(',').map(|e| e.trim().to_string()).collect()),
            _ => {}
        }
    }
    if let Some(body) = &response.body
        && let Some(shaped) = shape(body, resource_type, summary, elements.as_deref())
    {
        response.body = Some(shaped);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            sort_values: vec![
                SortValue::Text("Chalmers ~&".into()),
                SortValue::Real(-1.5),
                SortValue::Integer(7),
                SortValue::Missing,
            ],
            rkey: 42,
            before: false,
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor, false)), Some(cursor.clone()));
        let before = decode_cursor(&encode_cursor(&cursor, true)).unwrap();
        assert!(before.before);
        assert_eq!(decode_cursor("x1"), None);
    }
}
