//! Special parameters (`_text`, `_content`, `near`, ...): each needs its own engine (full
//! text, geography) that this server does not have, so they are reported as not supported
//! (ignored under lenient handling, an error under `handling=strict`) and not indexed.

use fhir::search_parameters::{ParamKey, SearchParamType};
use fhirpath::{Collection, Environment};

use super::{ParamType, ParamValue, ValueError};
use crate::index::IndexEntries;
use crate::search::Condition;
use crate::search::sql::Sql;

pub struct SpecialParam;

impl ParamType for SpecialParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Special
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        match modifier {
            Some(modifier) => Err(param.unsupported_modifier(modifier)),
            None => Err(ValueError::Unsupported(format!("{} ({})", param.code(), self.kind().code()))),
        }
    }

    fn extract<'a>(&self, _: &mut IndexEntries, _: ParamKey, _: &Collection<'a>, _: &Environment<'a>) {}

    // Nothing is indexed; `:missing` and sorting read the token table, where no row of a
    // special parameter ever is.
    fn values_table(&self) -> &'static str {
        "idx_token"
    }

    fn condition_sql(&self, sql: &mut Sql, _condition: &Condition, _ranges: bool) {
        sql.push("1 = 0")
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_token", "code")
    }
}
