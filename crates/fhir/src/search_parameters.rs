//! The R4 SearchParameters the binary carries, by resource type and code.
//!
//! Parameters apply to several types (`clinical-code` is the `code` of AllergyIntolerance,
//! Condition, Observation...). Each (resource type, code) pair gets a small integer [`ParamKey`]
//! that the store's index uses, and the part of the expression that concerns that type.

use std::sync::LazyLock;

use rustc_hash::FxHashMap;

use crate::definitions::definitions;

static TABLE: &str = include_str!("../data/r4-search-parameters.tsv");

static PARAMETERS: LazyLock<SearchParameters> = LazyLock::new(|| SearchParameters::parse(TABLE));

/// The embedded R4 search parameters.
pub fn search_parameters() -> &'static SearchParameters {
    &PARAMETERS
}

/// The reference parameters by which a resource of `resource_type` belongs to a compartment
/// (`Patient`, `Encounter`, ...), as the compartment definition names them.
pub fn compartment_keys(compartment: &str, resource_type: &str) -> Vec<ParamKey> {
    let Some(definition) = crate::definitions().compartment(compartment) else { return Vec::new() };
    let Some(codes) = definition.get(resource_type) else { return Vec::new() };
    codes.iter().filter_map(|code| search_parameters().get(resource_type, code)).map(|a| a.key).collect()
}

/// `SearchParameter.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl SearchParamType {
    fn parse(text: &str) -> Self {
        match text {
            "number" => SearchParamType::Number,
            "date" => SearchParamType::Date,
            "string" => SearchParamType::String,
            "token" => SearchParamType::Token,
            "reference" => SearchParamType::Reference,
            "composite" => SearchParamType::Composite,
            "quantity" => SearchParamType::Quantity,
            "uri" => SearchParamType::Uri,
            _ => SearchParamType::Special,
        }
    }

    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            SearchParamType::Number => "number",
            SearchParamType::Date => "date",
            SearchParamType::String => "string",
            SearchParamType::Token => "token",
            SearchParamType::Reference => "reference",
            SearchParamType::Composite => "composite",
            SearchParamType::Quantity => "quantity",
            SearchParamType::Uri => "uri",
            SearchParamType::Special => "special",
        }
    }
}

/// One part of a composite parameter.
#[derive(Debug)]
pub struct Component {
    /// The id of the component's own SearchParameter (`Observation-code`).
    pub parameter: &'static str,
    /// Evaluated on each item the composite's expression yields.
    pub expression: &'static str,
}

/// A SearchParameter.
#[derive(Debug)]
pub struct SearchParameter {
    pub id: &'static str,
    pub code: &'static str,
    pub kind: SearchParamType,
    pub bases: Vec<&'static str>,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<&'static str>,
    pub expression: Option<&'static str>,
    pub components: Vec<Component>,
}

impl SearchParameter {
    /// The canonical URL.
    pub fn url(&self) -> String {
        format!("http://hl7.org/fhir/SearchParameter/{}", self.id)
    }
}

/// The small integer naming a (resource type, code) pair in the index.
pub type ParamKey = u32;

/// A parameter as it applies to one resource type.
#[derive(Debug)]
pub struct Applied {
    pub key: ParamKey,
    pub resource_type: &'static str,
    pub code: &'static str,
    /// Index into [`SearchParameters::all`].
    pub parameter: usize,
    /// The parts of the expression that concern this type (`Observation.code` out of
    /// `AllergyIntolerance.code | Condition.code | Observation.code`).
    pub expression: Option<String>,
}

/// All search parameters, indexed.
#[derive(Debug)]
pub struct SearchParameters {
    parameters: Vec<SearchParameter>,
    by_id: FxHashMap<&'static str, usize>,
    applied: Vec<Applied>,
    by_type: FxHashMap<&'static str, Vec<usize>>,
}

impl SearchParameters {
    fn parse(table: &'static str) -> Self {
        let mut parameters: Vec<SearchParameter> = Vec::new();
        for line in table.lines() {
            let mut fields = line.split('\t');
            match fields.next() {
                Some("S") => {
                    let id = fields.next().unwrap_or("");
                    let code = fields.next().unwrap_or("");
                    let kind = SearchParamType::parse(fields.next().unwrap_or(""));
                    let list = |field: Option<&'static str>| -> Vec<&'static str> {
                        match field {
                            Some("-") | None => Vec::new(),
                            Some(items) => items.split(',').collect(),
                        }
                    };
                    let bases = list(fields.next());
                    let targets = list(fields.next());
                    let expression = fields.next().filter(|e| *e != "-");
                    parameters.push(SearchParameter {
                        id,
                        code,
                        kind,
                        bases,
                        targets,
                        expression,
                        components: Vec::new(),
                    });
                }
                Some("K") => {
                    let composite = fields.next().unwrap_or("");
                    let component = Component {
                        parameter: fields.next().unwrap_or(""),
                        expression: fields.next().unwrap_or(""),
                    };
                    if let Some(parameter) = parameters.iter_mut().rev().find(|p| p.id == composite) {
                        parameter.components.push(component);
                    }
                }
                _ => {}
            }
        }
        let by_id = parameters.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        let defs = definitions();
        let mut applied = Vec::new();
        let mut by_type: FxHashMap<&'static str, Vec<usize>> = FxHashMap::default();
        let mut by_type_code: FxHashMap<(&'static str, &'static str), usize> = FxHashMap::default();
        for resource_type in defs.resource_types() {
            for (index, parameter) in parameters.iter().enumerate() {
                let applies = parameter.bases.iter().any(|base| defs.is_subtype(resource_type, base));
                if !applies || by_type_code.contains_key(&(resource_type, parameter.code)) {
                    continue;
                }
                let position = applied.len();
                applied.push(Applied {
                    key: position as ParamKey,
                    resource_type,
                    code: parameter.code,
                    parameter: index,
                    expression: parameter.expression.map(|e| expression_for_type(e, resource_type)),
                });
                by_type.entry(resource_type).or_default().push(position);
                by_type_code.insert((resource_type, parameter.code), position);
            }
        }
        SearchParameters { parameters, by_id, applied, by_type }
    }

    /// Every SearchParameter.
    pub fn all(&self) -> &[SearchParameter] {
        &self.parameters
    }

    /// A SearchParameter by id (`Observation-code`).
    pub fn by_id(&self, id: &str) -> Option<&SearchParameter> {
        self.by_id.get(id).map(|&i| &self.parameters[i])
    }

    /// The parameters of a resource type (its own and those of Resource/DomainResource).
    pub fn for_type(&self, resource_type: &str) -> impl Iterator<Item = &Applied> {
        self.by_type.get(resource_type).into_iter().flatten().map(|&i| &self.applied[i])
    }

    /// A parameter of a resource type by code.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&Applied> {
        // Keys are `'static` strs; look the pair up through the type's list instead of
        // allocating.
        self.by_type.get(resource_type)?.iter().map(|&i| &self.applied[i]).find(|a| a.code == code)
    }

    /// The parameter behind an applied one.
    pub fn parameter(&self, applied: &Applied) -> &SearchParameter {
        &self.parameters[applied.parameter]
    }

    /// Every (resource type, parameter) pair.
    pub fn all_applied(&self) -> impl Iterator<Item = &Applied> {
        self.applied.iter()
    }

    /// An applied parameter by key.
    pub fn by_key(&self, key: ParamKey) -> Option<&Applied> {
        self.applied.get(key as usize)
    }

    /// A fingerprint of the parameter table: stored search indexes name parameters by key, so
    /// an index built from a different table must be rebuilt.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
        TABLE
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Number of (resource type, code) pairs.
    pub fn key_count(&self) -> usize {
        self.applied.len()
    }
}

/// The top-level `|` parts of an expression that can apply to `resource_type`: a part that
/// starts with another resource type's name (`Condition.code`) is dropped.
pub fn expression_for_type(expression: &str, resource_type: &str) -> String {
    let parts: Vec<&str> = split_union(expression)
        .into_iter()
        .filter(|part| match leading_type(part) {
            Some(name) => definitions().is_subtype(resource_type, name),
            None => true,
        })
        .collect();
    parts.join(" | ")
}

/// Splits at `|` outside parentheses and quotes.
fn split_union(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0);
    for (i, c) in expression.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, '|') if depth == 0 => {
                parts.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(expression[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The resource type name a path part starts with (`(Observation.value as Quantity)` ->
/// `Observation`), if it starts with one.
fn leading_type(part: &str) -> Option<&str> {
    let trimmed = part.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let end = trimmed.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(trimmed.len());
    let name = &trimmed[..end];
    let resource = definitions().type_def(name)?;
    (resource.kind == crate::definitions::TypeKind::Resource).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_apply_per_type_with_their_own_expression() {
        let params = search_parameters();
        assert_eq!(params.all().len(), 1375);
        let code = params.get("Observation", "code").unwrap();
        assert_eq!(code.expression.as_deref(), Some("Observation.code"));
        assert_eq!(params.parameter(code).kind, SearchParamType::Token);
        let id = params.get("Patient", "_id").unwrap();
        assert_eq!(id.expression.as_deref(), Some("Resource.id"));
        let value = params.get("Observation", "value-quantity").unwrap();
        assert_eq!(
            value.expression.as_deref(),
            Some("(Observation.value as Quantity) | (Observation.value as SampledData)")
        );
        let subject = params.get("Observation", "subject").unwrap();
        assert!(params.parameter(subject).targets.contains(&"Patient"));
        let combo = params.parameter(params.get("Observation", "code-value-quantity").unwrap());
        assert_eq!(combo.components.len(), 2);
        assert_eq!(params.by_id(combo.components[0].parameter).unwrap().code, "code");
        assert!(params.get("Observation", "nonsense").is_none());
        assert!(params.for_type("Patient").any(|a| a.code == "_lastUpdated"));
        assert_eq!(params.by_key(code.key).unwrap().code, "code");
    }

    #[test]
    fn union_splitting_respects_parentheses_and_quotes() {
        assert_eq!(split_union("a | (b | c) | d.where(x = '|')"), vec!["a", "(b | c)", "d.where(x = '|')"]);
        assert_eq!(leading_type("(Observation.value as Quantity)"), Some("Observation"));
        assert_eq!(leading_type("name.given"), None);
    }
}
