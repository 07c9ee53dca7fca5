//! The search index: values extracted from each resource with the FHIRPath expressions of the
//! R4 SearchParameters, at write time, on the caller's thread.
//!
//! One narrow table per kind of value (string, token, date, ...), keyed by the parameter's
//! [`ParamKey`] and the value, with the resource's `rkey` last so that rows of one value come
//! out in commit order (first pages stream straight from the index).

use std::sync::LazyLock;

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhir::{ReferenceTarget, Resource};
use fhirpath::{Environment, Expression, Node, Value};
use serde_json::Value as Json;
use typed_arena::Arena;

/// Longest string kept in the index (longer values are cut at a character boundary).
const MAX_INDEXED: usize = 256;

/// Index rows for one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexEntries {
    /// (param, normalized, exact)
    pub strings: Vec<(ParamKey, String, String)>,
    /// (param, system, code)
    pub tokens: Vec<(ParamKey, String, String)>,
    /// (param, normalized display or text) for `:text`
    pub token_texts: Vec<(ParamKey, String)>,
    /// (param, type system, type code, value) for `:of-type`
    pub identifier_types: Vec<(ParamKey, String, String, String)>,
    /// (param, low ms inclusive, high ms exclusive)
    pub dates: Vec<(ParamKey, i64, i64)>,
    /// (param, low, high)
    pub numbers: Vec<(ParamKey, f64, f64)>,
    pub quantities: Vec<QuantityRow>,
    /// (param, target type, target id or URL)
    pub references: Vec<(ParamKey, String, String)>,
    /// (param, uri)
    pub uris: Vec<(ParamKey, String)>,
    pub composites: Vec<CompositeRow>,
}

/// A quantity value: as written, and in UCUM base units where the unit converts.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantityRow {
    pub param: ParamKey,
    pub low: f64,
    pub high: f64,
    pub system: String,
    pub code: String,
    /// (dimension, low, high) in base units.
    pub canonical: Option<(String, f64, f64)>,
}

/// A composite value: the first component (a code) and the second (text or a range).
#[derive(Clone, Debug, PartialEq)]
pub struct CompositeRow {
    pub param: ParamKey,
    pub system: String,
    pub code: String,
    /// Second component: system and text for tokens/strings/references, a numeric range for
    /// dates (ms), numbers and quantities (canonical units where they convert).
    pub second_system: String,
    pub second_text: String,
    pub second_low: f64,
    pub second_high: f64,
}

impl IndexEntries {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.strings.len()
            + self.tokens.len()
            + self.token_texts.len()
            + self.identifier_types.len()
            + self.dates.len()
            + self.numbers.len()
            + self.quantities.len()
            + self.references.len()
            + self.uris.len()
            + self.composites.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lowercase, accents folded, whitespace collapsed: how string search compares.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        let mut out = String::with_capacity(text.len());
        for word in text.split_ascii_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(word.bytes().map(|b| b.to_ascii_lowercase() as char));
        }
        return truncate(out);
    }
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        for lower in fold_accent(c).to_lowercase() {
            out.push(lower);
        }
    }
    truncate(out)
}

pub(crate) fn truncate(mut text: String) -> String {
    if text.len() > MAX_INDEXED {
        let mut end = MAX_INDEXED;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The base letter of the accented Latin letters names carry (é -> e, ß stays).
fn fold_accent(c: char) -> char {
    match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => 'A',
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => 'c',
        'Ç' | 'Ć' | 'Č' | 'Ĉ' | 'Ċ' => 'C',
        'ď' | 'đ' => 'd',
        'Ď' | 'Đ' => 'D',
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'È'..='Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => 'E',
        'ğ' | 'ġ' | 'ģ' => 'g',
        'Ğ' | 'Ġ' | 'Ģ' => 'G',
        'ì'..='ï' | 'ī' | 'į' | 'ı' => 'i',
        'Ì'..='Ï' | 'Ī' | 'Į' | 'İ' => 'I',
        'ł' | 'ľ' | 'ĺ' | 'ļ' => 'l',
        'Ł' | 'Ľ' | 'Ĺ' | 'Ļ' => 'L',
        'ñ' | 'ń' | 'ň' | 'ņ' => 'n',
        'Ñ' | 'Ń' | 'Ň' | 'Ņ' => 'N',
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => 'o',
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ő' => 'O',
        'ř' | 'ŕ' => 'r',
        'Ř' | 'Ŕ' => 'R',
        'ś' | 'š' | 'ş' => 's',
        'Ś' | 'Š' | 'Ş' => 'S',
        'ť' | 'ţ' => 't',
        'Ť' | 'Ţ' => 'T',
        'ù'..='ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'Ù'..='Ü' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => 'U',
        'ý' | 'ÿ' => 'y',
        'Ý' | 'Ÿ' => 'Y',
        'ź' | 'ž' | 'ż' => 'z',
        'Ź' | 'Ž' | 'Ż' => 'Z',
        other => other,
    }
}

/// Compiled expressions for every (resource type, code) key, compiled once.
static COMPILED: LazyLock<Vec<Option<Expression>>> = LazyLock::new(|| {
    let params = search_parameters();
    (0..params.key_count() as ParamKey)
        .map(|key| {
            let applied = params.by_key(key)?;
            let expression = applied.expression.as_deref().filter(|e| !e.is_empty())?;
            // `_id` and `_lastUpdated` are columns of the resources table.
            if matches!(applied.code, "_id" | "_lastUpdated") {
                return None;
            }
            Expression::parse(expression).ok()
        })
        .collect()
});

pub(crate) static COMPONENTS: LazyLock<Vec<Vec<(SearchParamType, Expression)>>> = LazyLock::new(|| {
    let params = search_parameters();
    (0..params.key_count() as ParamKey)
        .map(|key| {
            let Some(applied) = params.by_key(key) else { return Vec::new() };
            params
                .parameter(applied)
                .components
                .iter()
                .filter_map(|component| {
                    let kind = params.by_id(component.parameter)?.kind;
                    Some((kind, Expression::parse(component.expression).ok()?))
                })
                .collect()
        })
        .collect()
});

/// At index time `resolve()` only needs the target's type (`where(resolve() is Patient)`):
/// it answers with a stub resource made from the reference itself.
struct TypeOnlyResolver<'a> {
    arena: &'a Arena<Json>,
}

impl<'a> fhirpath::Resolver<'a> for TypeOnlyResolver<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Json> {
        let (resource_type, id) = local_identity(reference)?;
        Some(self.arena.alloc(serde_json::json!({"resourceType": resource_type, "id": id})))
    }
}

/// `Patient/1`, `Patient/1/_history/2` or `http://server/fhir/Patient/1` -> (Patient, 1).
pub(crate) fn local_identity(reference: &str) -> Option<(&str, &str)> {
    match fhir::parse_reference(reference).ok()? {
        ReferenceTarget::Local { resource_type, id, .. } => Some((resource_type, id)),
        ReferenceTarget::Absolute(url) => {
            let parts: Vec<&str> = url.trim_end_matches('/').split('/').collect();
            let n = parts.len();
            let (resource_type, id) = if n >= 4 && parts[n - 2] == "_history" {
                (parts[n - 4], parts[n - 3])
            } else if n >= 2 {
                (parts[n - 2], parts[n - 1])
            } else {
                return None;
            };
            (fhir::definitions().is_resource_type(resource_type) && fhir::is_valid_id(id))
                .then_some((resource_type, id))
        }
        _ => None,
    }
}

/// Extracts the index rows of a resource.
pub fn extract(resource: &Resource) -> IndexEntries {
    extract_json(resource.resource_type(), resource.as_json())
}

/// Extracts the index rows of a resource given as JSON.
pub fn extract_json(resource_type: &str, json: &Json) -> IndexEntries {
    let params = search_parameters();
    let arena = Arena::new();
    let resolver = TypeOnlyResolver { arena: &arena };
    let env = Environment { resolver: Some(&resolver), trace: Some(&|_, _| {}), ..Environment::default() };
    let mut entries = IndexEntries::default();
    for applied in params.for_type(resource_type) {
        let kind = params.parameter(applied).kind;
        let Some(Some(expression)) = COMPILED.get(applied.key as usize) else { continue };
        let Ok(values) = expression.evaluate(json, &env) else { continue };
        crate::params::of(kind).extract(&mut entries, applied.key, &values, &env);
    }
    entries
}

/// The local references (type, id) that reference parameter `key` finds in a resource (for
/// `_include`).
pub fn references_of(json: &Json, key: ParamKey) -> Vec<(String, String)> {
    let Some(Some(expression)) = COMPILED.get(key as usize) else { return Vec::new() };
    let arena = Arena::new();
    let resolver = TypeOnlyResolver { arena: &arena };
    let env = Environment { resolver: Some(&resolver), trace: Some(&|_, _| {}), ..Environment::default() };
    let Ok(values) = expression.evaluate(json, &env) else { return Vec::new() };
    let mut entries = IndexEntries::default();
    crate::params::of(SearchParamType::Reference).extract(&mut entries, key, &values, &env);
    entries.references.into_iter().filter(|(_, t, _)| !t.is_empty()).map(|(_, t, id)| (t, id)).collect()
}

pub(crate) fn node_json<'v>(
    value: &'v Value<'_>,
) -> Option<(&'v Node<'v>, &'v serde_json::Map<String, Json>)> {
    match value {
        Value::Node(node) => match node.json {
            Some(Json::Object(object)) => Some((node, object)),
            _ => None,
        },
        _ => None,
    }
}

/// A property of a (small) JSON object, found by scanning rather than hashing.
pub(crate) fn get<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<&'j Json> {
    object.iter().find(|(key, _)| key.as_str() == name).map(|(_, value)| value)
}

pub(crate) fn field<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<&'j str> {
    get(object, name).and_then(Json::as_str)
}

/// The text of a primitive value, if it is one.
pub(crate) fn primitive_text(value: &Value<'_>) -> Option<String> {
    match value.system().as_ref() {
        Value::String(s) => Some(s.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Integer(i) | Value::Long(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::Date(d) | Value::DateTime(d) => Some(d.to_string()),
        Value::Time(t) => Some(t.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(resource_type: &str, code: &str) -> ParamKey {
        search_parameters().get(resource_type, code).unwrap().key
    }

    #[test]
    fn normalizes_for_string_search() {
        assert_eq!(normalize("  Bénédicte   DU Marché "), "benedicte du marche");
        assert_eq!(normalize(&"x".repeat(1000)).len(), MAX_INDEXED);
    }

    #[test]
    fn extracts_every_kind_of_value() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "active": true, "gender": "female",
            "birthDate": "1974-12-25",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "identifier": [{"system": "http://hospital/mrn", "value": "12345",
                            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "managingOrganization": {"reference": "Organization/o1"},
            "meta": {"tag": [{"system": "http://tags", "code": "vip"}], "profile": ["http://example.org/p"]}});
        let entries = extract_json("Patient", &patient);
        assert!(entries.strings.contains(&(key("Patient", "family"), "chalmers".into(), "Chalmers".into())));
        assert!(entries.strings.iter().any(|s| s.0 == key("Patient", "name") && s.1 == "james"));
        assert!(entries.tokens.contains(&(key("Patient", "gender"), String::new(), "female".into())));
        assert!(entries.tokens.contains(&(key("Patient", "active"), String::new(), "true".into())));
        assert!(entries.tokens.contains(&(
            key("Patient", "identifier"),
            "http://hospital/mrn".into(),
            "12345".into()
        )));
        assert!(entries.tokens.contains(&(key("Patient", "_tag"), "http://tags".into(), "vip".into())));
        assert!(entries.uris.contains(&(key("Patient", "_profile"), "http://example.org/p".into())));
        assert_eq!(entries.identifier_types[0].2, "MR");
        assert!(entries.references.contains(&(
            key("Patient", "organization"),
            "Organization".into(),
            "o1".into()
        )));
        let birth = entries.dates.iter().find(|d| d.0 == key("Patient", "birthdate")).unwrap();
        assert_eq!(birth.2 - birth.1, 86_400_000);
    }

    #[test]
    fn resolve_is_answered_from_the_reference_alone() {
        let observation = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2020-01-01"},
            "valueQuantity": {"value": 4.5, "system": "http://unitsofmeasure.org", "code": "g"}});
        let entries = extract_json("Observation", &observation);
        // Observation-patient is `Observation.subject.where(resolve() is Patient)`.
        assert!(entries.references.contains(&(key("Observation", "patient"), "Patient".into(), "p1".into())));
        let date = entries.dates.iter().find(|d| d.0 == key("Observation", "date")).unwrap();
        assert_eq!(date.2, i64::MAX, "an open period extends forever");
        let quantity =
            entries.quantities.iter().find(|q| q.param == key("Observation", "value-quantity")).unwrap();
        assert_eq!(quantity.canonical.as_ref().map(|c| c.1), Some(4.5));
        let combo =
            entries.composites.iter().find(|c| c.param == key("Observation", "code-value-quantity")).unwrap();
        assert_eq!((combo.code.as_str(), combo.second_low), ("29463-7", 4.5));
    }
}
