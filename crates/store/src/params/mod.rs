//! The search parameter types, one module each (string, token, reference, date, number,
//! quantity, uri, composite, special), behind one trait, [`ParamType`]. A type owns everything
//! that differs between types:
//!
//! - parsing a search value (with its modifier) into a [`Condition`];
//! - extracting index rows from the values a parameter's FHIRPath expression finds;
//! - the SQL of one condition over its index table, and what the planner needs to know about
//!   it (selective enough to drive, streamable in commit order, probeable by resource key,
//!   sortable and how).
//!
//! The query model (`crate::search`), the planner and the executor know no type in
//! particular: they ask [`of`] (by the parameter's type) or [`Condition::param_type`].
//! Adding a type, or a second SQL dialect, is work inside these modules.

pub mod composite;
pub mod date;
pub mod number;
pub mod quantity;
pub mod reference;
pub mod special;
pub mod string;
pub mod token;
pub mod uri;

use fhir::search_parameters::{Applied, ParamKey, SearchParamType};
use fhirpath::{Collection, Environment};

use crate::index::IndexEntries;
use crate::search::sql::{Sql, has_rkey_index};
use crate::search::{Condition, Prefix};

/// What one search parameter type does; see the module documentation.
pub trait ParamType: Sync {
    /// The FHIR search parameter type.
    fn kind(&self) -> SearchParamType;

    /// Parses one value (of a comma-separated list) of `param`, given with `modifier`.
    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError>;

    /// Adds the index rows of the values the parameter's expression found in a resource.
    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        env: &Environment<'a>,
    );

    /// The index table holding this type's values (`:missing`, sorting).
    fn values_table(&self) -> &'static str;

    /// The index table a condition reads (a type may keep some conditions apart).
    fn table(&self, _condition: &Condition) -> &'static str {
        self.values_table()
    }

    /// SQL for one condition on index-row alias `x`; `ranges` when the parameter's values can
    /// be ranges rather than points.
    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, ranges: bool);

    /// Several alternatives of one parameter, joined with OR.
    fn any_sql(&self, sql: &mut Sql, any: &[Condition], ranges: bool) {
        for (i, condition) in any.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            self.condition_sql(sql, condition, ranges);
        }
    }

    /// The resources with a value of parameter `key` meeting any of the conditions (at least
    /// one), as a set of resource keys.
    fn set_sql(&self, sql: &mut Sql, key: ParamKey, any: &[Condition], ranges: bool) {
        index_set(self, sql, key, any, ranges)
    }

    /// Whether the condition is an equality likely to select few resources (it may drive a
    /// nested search that is planned without counting).
    fn selective(&self, _condition: &Condition) -> bool {
        false
    }

    /// Whether the condition's index key fixes every column before the resource key, so its
    /// matches come out in commit order (a first page costs a page).
    fn streams(&self, _condition: &Condition) -> bool {
        false
    }

    /// Whether one resource can be checked against the condition by an index lookup that
    /// includes its key.
    fn probes(&self, condition: &Condition) -> bool {
        has_rkey_index(self.table(condition))
    }

    /// The table and column whose smallest (largest, descending) value a resource sorts by.
    fn sort_column(&self) -> (&'static str, &'static str);

    /// Whether a sort on this type can walk its index in value order (one point per row).
    fn walks(&self) -> bool {
        false
    }
}

/// `SELECT x.rkey FROM <table> x WHERE x.param = key AND (any of the conditions)`.
pub(crate) fn index_set<T: ParamType + ?Sized>(
    param_type: &T,
    sql: &mut Sql,
    key: ParamKey,
    any: &[Condition],
    ranges: bool,
) {
    let table = any.first().map_or(param_type.values_table(), |c| param_type.table(c));
    sql.push(&format!("SELECT x.rkey FROM {table} x WHERE x.param = "));
    sql.bind(i64::from(key));
    sql.push(" AND (");
    param_type.any_sql(sql, any, ranges);
    sql.push(")");
}

/// The type module of a search parameter type.
pub fn of(kind: SearchParamType) -> &'static dyn ParamType {
    match kind {
        SearchParamType::String => &string::StringParam,
        SearchParamType::Token => &token::TokenParam,
        SearchParamType::Reference => &reference::ReferenceParam,
        SearchParamType::Date => &date::DateParam,
        SearchParamType::Number => &number::NumberParam,
        SearchParamType::Quantity => &quantity::QuantityParam,
        SearchParamType::Uri => &uri::UriParam,
        SearchParamType::Composite => &composite::CompositeParam,
        SearchParamType::Special => &special::SpecialParam,
    }
}

impl Condition {
    /// The type this condition belongs to.
    pub fn param_type(&self) -> &'static dyn ParamType {
        match self {
            Condition::String { .. } => &string::StringParam,
            Condition::Token { .. } | Condition::TokenText(_) | Condition::OfType { .. } => {
                &token::TokenParam
            }
            Condition::Reference { .. } => &reference::ReferenceParam,
            Condition::Date { .. } => &date::DateParam,
            Condition::Number { .. } => &number::NumberParam,
            Condition::Quantity { .. } => &quantity::QuantityParam,
            Condition::Uri { .. } => &uri::UriParam,
            Condition::Composite { .. } => &composite::CompositeParam,
        }
    }
}

/// One search value to parse, with what parsing may need to know.
pub struct ParamValue<'a> {
    /// The parameter as it applies to the searched type.
    pub applied: &'a Applied,
    /// The value as given (escapes still in, one of a comma-separated list).
    pub value: &'a str,
    /// The server's base URL: a reference given absolute on this server is local.
    pub base: &'a str,
}

impl ParamValue<'_> {
    /// The parameter's code (for messages).
    pub fn code(&self) -> &str {
        self.applied.code
    }

    fn invalid(&self, message: impl Into<String>) -> ValueError {
        ValueError::Invalid(message.into())
    }

    /// Refuses any modifier (for types that take none).
    fn no_modifier(&self, modifier: Option<&str>) -> Result<(), ValueError> {
        modifier.map_or(Ok(()), |modifier| Err(self.unsupported_modifier(modifier)))
    }

    fn unsupported_modifier(&self, modifier: &str) -> ValueError {
        ValueError::UnsupportedModifier { parameter: self.code().to_string(), modifier: modifier.to_string() }
    }
}

/// Why a search value was not turned into a condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value is malformed for its type (always an error).
    #[error("{0}")]
    Invalid(String),
    /// A modifier this server does not apply to this type. Always an error, even under
    /// lenient handling: ignoring `:not` or `:below` would silently return the wrong resources.
    #[error("the modifier ':{modifier}' is not supported on the search parameter '{parameter}'")]
    UnsupportedModifier { parameter: String, modifier: String },
    /// The parameter cannot be searched here (ignored unless `handling=strict`).
    #[error("{0}")]
    Unsupported(String),
}

/// Splits at unescaped `separator` and removes the escapes (`\,` `\|` `\$` `\\`) of other
/// separators; an escaped `separator` stays escaped, for [`unescape`] once split.
pub fn split_escaped(value: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) if matches!(next, ',' | '|' | '$' | '\\') && next != separator => {
                    if let Some(part) = parts.last_mut() {
                        part.push('\\');
                        part.push(next);
                    }
                }
                Some(next) => {
                    if let Some(part) = parts.last_mut() {
                        if next == separator {
                            part.push('\\');
                        }
                        part.push(next);
                    }
                }
                None => {}
            }
        } else if c == separator {
            parts.push(String::new());
        } else if let Some(part) = parts.last_mut() {
            part.push(c);
        }
    }
    parts
}

/// Removes escapes once a value has been split.
pub fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The comparison prefix of an ordered value (`ge2020`), `eq` when there is none.
pub fn split_prefix(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (text, prefix) in prefixes {
        if let Some(rest) = value.strip_prefix(text)
            && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

#[cfg(test)]
mod tests {
    use fhir::search_parameters::search_parameters;

    use super::*;

    fn parse(
        resource_type: &str,
        code: &str,
        modifier: Option<&str>,
        value: &str,
    ) -> Result<Condition, ValueError> {
        let applied = search_parameters().get(resource_type, code).expect("a parameter of the type");
        of(search_parameters().parameter(applied).kind)
            .parse(&ParamValue { applied, value, base: "http://chartroom.example/fhir" }, modifier)
    }

    #[test]
    fn escaping_and_prefixes() {
        assert_eq!(split_escaped("a,b\\,c,d", ','), vec!["a", "b\\,c", "d"]);
        assert_eq!(unescape("b\\,c"), "b,c");
        assert!(
            matches!(token::condition("http://loinc.org|1234-5"), Condition::Token { system: Some(s), code: Some(c) } if s == "http://loinc.org" && c == "1234-5")
        );
        assert!(matches!(token::condition("|x"), Condition::Token { system: Some(s), .. } if s.is_empty()));
        assert!(matches!(token::condition("sys|"), Condition::Token { code: None, .. }));
        assert_eq!(split_prefix("ge2020").0, Prefix::Ge);
        assert_eq!(split_prefix("2020").0, Prefix::Eq);
        let (_, value, low, high) = number::condition("n", "100").unwrap_or((Prefix::Eq, 0.0, 0.0, 0.0));
        assert_eq!((value, low, high), (100.0, 99.5, 100.5));
        let (_, _, low, high) = number::condition("n", "100.00").unwrap_or((Prefix::Eq, 0.0, 0.0, 0.0));
        assert!((low - 99.995).abs() < 1e-9 && (high - 100.005).abs() < 1e-9);
    }

    #[test]
    fn each_type_parses_its_own_values_and_modifiers() {
        assert!(matches!(parse("Patient", "family", Some("exact"), "Chalmers"),
            Ok(Condition::String { value, mode: string::StringMode::Exact(e) }) if value == "chalmers" && e == "Chalmers"));
        assert!(
            matches!(parse("Patient", "gender", Some("text"), "Fe"), Ok(Condition::TokenText(t)) if t == "fe")
        );
        assert!(matches!(parse("Observation", "subject", None, "http://chartroom.example/fhir/Patient/p1"),
            Ok(Condition::Reference { target_types, target, url: false }) if target_types == ["Patient"] && target == "p1"));
        assert!(matches!(
            parse("Observation", "subject", Some("identifier"), "urn:mrn|7"),
            Ok(Condition::Token { .. })
        ));
        assert!(matches!(
            parse("Observation", "date", None, "ge2020-03"),
            Ok(Condition::Date { prefix: Prefix::Ge, .. })
        ));
        assert!(matches!(
            parse("Observation", "value-quantity", None, "5.4|http://unitsofmeasure.org|mg"),
            Ok(Condition::Quantity { unit: quantity::QuantityUnit::Canonical(_), .. })
        ));
        assert!(matches!(
            parse("ValueSet", "url", Some("below"), "http://x/y"),
            Ok(Condition::Uri { mode: uri::UriMode::Below, .. })
        ));
        assert!(matches!(
            parse(
                "Observation",
                "code-value-quantity",
                None,
                "http://loinc.org|29463-7$gt70|http://unitsofmeasure.org|kg"
            ),
            Ok(Condition::Composite { .. })
        ));
        // What each type refuses, and how.
        assert!(matches!(parse("Observation", "date", None, "yesterday"), Err(ValueError::Invalid(_))));
        assert!(matches!(
            parse("Observation", "date", Some("exact"), "2020"),
            Err(ValueError::UnsupportedModifier { .. })
        ));
        assert!(matches!(
            parse("Patient", "family", Some("below"), "x"),
            Err(ValueError::UnsupportedModifier { .. })
        ));
        assert!(matches!(
            parse("Observation", "subject", Some("Nonsense"), "p1"),
            Err(ValueError::UnsupportedModifier { .. })
        ));
        assert!(matches!(
            parse("Observation", "subject", Some("Group"), "Patient/p1"),
            Err(ValueError::Invalid(_))
        ));
        assert!(matches!(
            parse("Observation", "value-quantity", None, "1|2|3|4"),
            Err(ValueError::Invalid(_))
        ));
        assert!(matches!(
            parse("Observation", "code-value-quantity", None, "no-dollar"),
            Err(ValueError::Invalid(_))
        ));
    }

    #[test]
    fn every_condition_belongs_to_the_type_that_parsed_it() {
        for (resource_type, code, value) in [
            ("Patient", "family", "x"),
            ("Patient", "gender", "female"),
            ("Observation", "subject", "Patient/p1"),
            ("Observation", "date", "2020"),
            ("RiskAssessment", "probability", "0.5"),
            ("Observation", "value-quantity", "5"),
            ("ValueSet", "url", "http://x"),
            ("Observation", "code-value-quantity", "a$5"),
        ] {
            let applied = search_parameters().get(resource_type, code).expect("known");
            let kind = search_parameters().parameter(applied).kind;
            let condition = parse(resource_type, code, None, value).expect(code);
            assert_eq!(condition.param_type().kind(), kind, "{resource_type}.{code}");
        }
    }
}
