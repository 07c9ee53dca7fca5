//! Composite parameters (`code-value-quantity`, `combo-code-value-concept`, ...): two
//! components found together in one element, searched as `first$second`. The first is a code;
//! the second any other type, kept in one row beside it (`idx_composite`): text for tokens,
//! strings and references, a numeric range for dates, numbers and quantities.

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhirpath::{Collection, Environment, Expression};

use super::date::{approximate, range_sql};
use super::number::point_sql;
use super::quantity::QuantityUnit;
use super::string::StringMode;
use super::{ParamType, ParamValue, ValueError, date, number, quantity, split_escaped, token, unescape};
use crate::index::{COMPONENTS, CompositeRow, IndexEntries, normalize};
use crate::search::Condition;
use crate::search::sql::{Sql, prefix_end};

pub struct CompositeParam;

impl ParamType for CompositeParam {
    fn kind(&self) -> SearchParamType {
        SearchParamType::Composite
    }

    fn parse(&self, param: &ParamValue<'_>, modifier: Option<&str>) -> Result<Condition, ValueError> {
        param.no_modifier(modifier)?;
        let (name, value) = (param.code(), param.value);
        let parts = split_escaped(value, '$');
        let [first, second] = parts.as_slice() else {
            return Err(param.invalid(format!("{name}: a composite value is 'first$second', got '{value}'")));
        };
        let parameter = search_parameters().parameter(param.applied);
        let second_kind = parameter
            .components
            .get(1)
            .and_then(|c| search_parameters().by_id(c.parameter))
            .map(|p| p.kind)
            .ok_or_else(|| ValueError::Unsupported(name.to_string()))?;
        let Condition::Token { system, code: Some(code) } = token::condition(first) else {
            return Err(param.invalid(format!("{name}: the first part of '{value}' needs a code")));
        };
        let second = match second_kind {
            SearchParamType::Quantity => quantity::condition(name, second)?,
            SearchParamType::Date => {
                let (prefix, low, high) = date::range(name, second)?;
                Condition::Date { prefix, low, high }
            }
            SearchParamType::Number => {
                let (prefix, number, low, high) = number::condition(name, second)?;
                Condition::Number { prefix, value: number, low, high }
            }
            SearchParamType::String => {
                Condition::String { value: normalize(&unescape(second)), mode: StringMode::Prefix }
            }
            SearchParamType::Reference => {
                Condition::Reference { target_types: Vec::new(), target: unescape(second), url: false }
            }
            _ => token::condition(second),
        };
        Ok(Condition::Composite { system, code, second: Box::new(second) })
    }

    fn extract<'a>(
        &self,
        rows: &mut IndexEntries,
        key: ParamKey,
        values: &Collection<'a>,
        env: &Environment<'a>,
    ) {
        composite(rows, key, values, env)
    }

    fn values_table(&self) -> &'static str {
        "idx_composite"
    }

    fn condition_sql(&self, sql: &mut Sql, condition: &Condition, _ranges: bool) {
        let Condition::Composite { system, code, second } = condition else { return sql.push("1 = 0") };
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
            _ => sql.push("1 = 0"),
        }
        sql.push(")");
    }

    fn streams(&self, _condition: &Condition) -> bool {
        true
    }

    fn probes(&self, _condition: &Condition) -> bool {
        true
    }

    fn sort_column(&self) -> (&'static str, &'static str) {
        ("idx_token", "code")
    }
}

/// The rows of one component: what its type extracts (a composite inside a composite has no
/// rows of its own).
fn component<'a>(
    rows: &mut IndexEntries,
    key: ParamKey,
    kind: SearchParamType,
    values: &Collection<'a>,
    env: &Environment<'a>,
) {
    if kind != SearchParamType::Composite {
        super::of(kind).extract(rows, key, values, env);
    }
}

pub(crate) fn composite<'a>(
    entries: &mut IndexEntries,
    key: ParamKey,
    items: &Collection<'a>,
    env: &Environment<'a>,
) {
    let Some(components) = COMPONENTS.get(key as usize) else { return };
    if components.len() < 2 {
        return;
    }
    for item in items {
        let evaluate = |expression: &Expression| {
            expression.evaluate_collection(vec![item.clone()], vec![item.clone()], env).unwrap_or_default()
        };
        let mut first = IndexEntries::default();
        component(&mut first, key, components[0].0, &evaluate(&components[0].1), env);
        let firsts: Vec<(String, String)> = first
            .tokens
            .into_iter()
            .map(|(_, system, code)| (system, code))
            .chain(first.references.into_iter().map(|(_, t, id)| (t, id)))
            .chain(first.uris.into_iter().map(|(_, uri)| (String::new(), uri)))
            .collect();
        let mut second = IndexEntries::default();
        let (kind, expression) = &components[1];
        component(&mut second, key, *kind, &evaluate(expression), env);
        let mut seconds: Vec<(String, String, f64, f64)> = Vec::new();
        seconds.extend(second.tokens.into_iter().map(|(_, s, c)| (s, c, 0.0, 0.0)));
        seconds.extend(second.strings.into_iter().map(|(_, norm, _)| (String::new(), norm, 0.0, 0.0)));
        seconds.extend(second.references.into_iter().map(|(_, t, id)| (t, id, 0.0, 0.0)));
        seconds.extend(second.uris.into_iter().map(|(_, u)| (String::new(), u, 0.0, 0.0)));
        seconds.extend(
            second.dates.into_iter().map(|(_, l, h)| (String::new(), String::new(), l as f64, h as f64)),
        );
        seconds.extend(second.numbers.into_iter().map(|(_, l, h)| (String::new(), String::new(), l, h)));
        // A quantity is stored as written and, where its unit converts, once more in UCUM base
        // units under its dimension, marked with a leading '='.
        for q in second.quantities {
            if let Some((dimension, low, high)) = q.canonical {
                seconds.push((format!("={dimension}"), String::new(), low, high));
            }
            seconds.push((q.system, q.code, q.low, q.high));
        }
        for (system, code) in &firsts {
            for (second_system, second_text, low, high) in &seconds {
                entries.composites.push(CompositeRow {
                    param: key,
                    system: system.clone(),
                    code: code.clone(),
                    second_system: second_system.clone(),
                    second_text: second_text.clone(),
                    second_low: *low,
                    second_high: *high,
                });
            }
        }
    }
}
