//! Uri parameters: exact by default, `:below` (the value starts with the search uri) and
//! `:above` (the search uri starts with the value, at `/` boundaries), over `idx_uri`.

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment};

use super::{ParamType, ParamValue, ValueError, unescape};
use crate::index::{IndexEntries, primitive_text, truncate};
use crate::search::Condition;
use crate::search::sql::{Sql, prefix_end};

/// How a uri matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    /// `:below`: the value starts with the search uri.
    Below,
    /// `:above`: the search uri starts with the value.
    Above,
}

pub struct UriParam;

impl ParamType for UriParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Uri
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        let mode = match modifier {
            None => UriMode::Exact,
            Some("above") => UriMode::Above,
            Some("below") => UriMode::Below,
            Some(other) => return Err(param.unsupported_modifier(other)),
        };
        Ok(Condition::Uri { value: unescape(param.value), mode })
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        _: &Environment<'a>,
    ) {
        for value in values {
            if let Some(text) = primitive_text(value) {
                rows.uris.push((key, truncate(text)));
            }
        }
    }

    fn values_table(&self) -> &'static str {
        "idx_uri"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        let Condition::Uri { value, mode } = condition else { return sql.push("1 = 0") };
        match mode {
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
        }
    }

    fn selective(&self, condition: &Condition) -> bool {
        matches!(condition, Condition::Uri { mode: UriMode::Exact, .. })
    }

    fn streams(&self, condition: &Condition) -> bool {
        self.selective(condition)
    }

    fn probes(&self, condition: &Condition) -> bool {
        self.selective(condition)
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_uri", "value")
    }
}
