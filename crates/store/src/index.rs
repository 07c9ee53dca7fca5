//! The search index: values extracted from each resource with the FHIRPath expressions of the
//! R4 SearchParameters, at write time, on the caller's thread.
//!
//! One narrow table per kind of value (string, token, date, ...), keyed by the parameter's
//! [`ParamKey`] and the value, with the resource's `rkey` last so that rows of one value come
//! out in commit order (first pages stream straight from the index).

use std::sync::LazyLock;

use fhir::search_parameters::{ParamKey, SearchParamType, search_parameters};
use fhir::{DateTime, DateTimeKind, ReferenceTarget, Resource};
use fhirpath::{Collection, Environment, Expression, Node, Value};
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

fn truncate(mut text: String) -> String {
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

static COMPONENTS: LazyLock<Vec<Vec<(SearchParamType, Expression)>>> = LazyLock::new(|| {
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
fn local_identity(reference: &str) -> Option<(&str, &str)> {
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
        if kind == SearchParamType::Composite {
            composite(&mut entries, applied.key, &values, &env);
        } else {
            add(&mut entries, applied.key, kind, &values);
        }
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
    add(&mut entries, key, SearchParamType::Reference, &values);
    entries.references.into_iter().filter(|(_, t, _)| !t.is_empty()).map(|(_, t, id)| (t, id)).collect()
}

fn add(entries: &mut IndexEntries, key: ParamKey, kind: SearchParamType, values: &Collection<'_>) {
    for value in values {
        match kind {
            SearchParamType::String => {
                for text in strings(value) {
                    entries.strings.push((key, normalize(&text), truncate(text)));
                }
            }
            SearchParamType::Token => tokens(entries, key, value),
            SearchParamType::Reference => references(entries, key, value),
            SearchParamType::Date => {
                if let Some((low, high)) = date_range(value) {
                    entries.dates.push((key, low, high));
                }
            }
            SearchParamType::Number => {
                if let Some(number) = number(value) {
                    entries.numbers.push((key, number, number));
                }
            }
            SearchParamType::Quantity => {
                if let Some(row) = quantity(key, value) {
                    entries.quantities.push(row);
                }
            }
            SearchParamType::Uri => {
                if let Some(text) = primitive_text(value) {
                    entries.uris.push((key, truncate(text)));
                }
            }
            SearchParamType::Composite | SearchParamType::Special => {}
        }
    }
}

fn node_json<'v>(value: &'v Value<'_>) -> Option<(&'v Node<'v>, &'v serde_json::Map<String, Json>)> {
    match value {
        Value::Node(node) => match node.json {
            Some(Json::Object(object)) => Some((node, object)),
            _ => None,
        },
        _ => None,
    }
}

/// A property of a (small) JSON object, found by scanning rather than hashing.
fn get<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<&'j Json> {
    object.iter().find(|(key, _)| key.as_str() == name).map(|(_, value)| value)
}

fn field<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<&'j str> {
    get(object, name).and_then(Json::as_str)
}

/// The text of a primitive value, if it is one.
fn primitive_text(value: &Value<'_>) -> Option<String> {
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

/// The strings a string parameter matches: a primitive itself, the parts of a name or an
/// address, or the string leaves of another complex value.
fn strings(value: &Value<'_>) -> Vec<String> {
    if let Some(text) = primitive_text(value) {
        return vec![text];
    }
    let Some((node, object)) = node_json(value) else { return Vec::new() };
    let parts: &[&str] = match node.type_name {
        "HumanName" => &["family", "given", "prefix", "suffix", "text"],
        "Address" => &["line", "city", "district", "state", "postalCode", "country", "text"],
        _ => &[],
    };
    let mut out = Vec::new();
    let mut push = |json: &Json| match json {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => out.extend(items.iter().filter_map(Json::as_str).map(str::to_string)),
        _ => {}
    };
    if parts.is_empty() {
        for (key, json) in object {
            if !matches!(key.as_str(), "extension" | "id" | "system" | "use") {
                push(json);
            }
        }
    } else {
        for part in parts {
            if let Some(json) = object.get(*part) {
                push(json);
            }
        }
    }
    out
}

fn tokens(entries: &mut IndexEntries, key: ParamKey, value: &Value<'_>) {
    let Some((node, object)) = node_json(value) else {
        if let Some(text) = primitive_text(value) {
            entries.tokens.push((key, String::new(), truncate(text)));
        }
        return;
    };
    let coding = |entries: &mut IndexEntries, coding: &serde_json::Map<String, Json>| {
        let system = field(coding, "system").unwrap_or("");
        if let Some(code) = field(coding, "code") {
            entries.tokens.push((key, system.to_string(), truncate(code.to_string())));
        }
        if let Some(display) = field(coding, "display") {
            entries.token_texts.push((key, normalize(display)));
        }
    };
    match node.type_name {
        "Coding" => coding(entries, object),
        "CodeableConcept" => {
            for item in get(object, "coding").and_then(Json::as_array).into_iter().flatten() {
                if let Some(item) = item.as_object() {
                    coding(entries, item);
                }
            }
            if let Some(text) = field(object, "text") {
                entries.token_texts.push((key, normalize(text)));
            }
        }
        "Identifier" => {
            let system = field(object, "system").unwrap_or("");
            if let Some(value) = field(object, "value") {
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
                let types = object.get("type").and_then(|t| t.get("coding")).and_then(Json::as_array);
                for ty in types.into_iter().flatten() {
                    if let (Some(ty_system), Some(ty_code)) = (ty["system"].as_str(), ty["code"].as_str()) {
                        entries.identifier_types.push((
                            key,
                            ty_system.to_string(),
                            ty_code.to_string(),
                            truncate(value.to_string()),
                        ));
                    }
                }
            }
            if let Some(text) = object.get("type").and_then(|t| t.get("text")).and_then(Json::as_str) {
                entries.token_texts.push((key, normalize(text)));
            }
        }
        "ContactPoint" => {
            if let Some(value) = field(object, "value") {
                let system = field(object, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
            }
        }
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity" => {
            if let Some(code) = field(object, "code") {
                let system = field(object, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), code.to_string()));
            }
        }
        "Reference" => {
            if let Some(reference) = field(object, "reference") {
                entries.tokens.push((key, String::new(), truncate(reference.to_string())));
            }
        }
        _ => {}
    }
}

fn references(entries: &mut IndexEntries, key: ParamKey, value: &Value<'_>) {
    let reference = match node_json(value) {
        Some((_, object)) => {
            if let Some(identifier) = get(object, "identifier").and_then(Json::as_object)
                && let Some(value) = field(identifier, "value")
            {
                let system = field(identifier, "system").unwrap_or("");
                entries.tokens.push((key, system.to_string(), truncate(value.to_string())));
            }
            match field(object, "reference") {
                Some(reference) => reference.to_string(),
                None => return,
            }
        }
        // canonical and uri values of reference parameters
        None => match primitive_text(value) {
            Some(text) => text,
            None => return,
        },
    };
    if reference.starts_with('#') {
        return;
    }
    match local_identity(&reference) {
        Some((resource_type, id)) if !reference.contains("://") => {
            entries.references.push((key, resource_type.to_string(), id.to_string()))
        }
        _ => entries.references.push((key, String::new(), truncate(reference))),
    }
}

/// The instant range a date value covers: [low, high) in ms.
pub fn date_range(value: &Value<'_>) -> Option<(i64, i64)> {
    match value.system().as_ref() {
        Value::Date(d) | Value::DateTime(d) => return Some((d.lower_bound_millis(), d.upper_bound_millis())),
        Value::String(s) => {
            let d = DateTime::parse(s, DateTimeKind::Partial).ok()?;
            return Some((d.lower_bound_millis(), d.upper_bound_millis()));
        }
        _ => {}
    }
    let (node, object) = node_json(value)?;
    let bound = |name: &str, upper: bool| -> Option<i64> {
        let d = DateTime::parse(field(object, name)?, DateTimeKind::Partial).ok()?;
        Some(if upper { d.upper_bound_millis() } else { d.lower_bound_millis() })
    };
    match node.type_name {
        "Period" => {
            let (low, high) = (bound("start", false), bound("end", true));
            if low.is_none() && high.is_none() {
                return None;
            }
            Some((low.unwrap_or(i64::MIN), high.unwrap_or(i64::MAX)))
        }
        "Timing" => {
            let events: Vec<(i64, i64)> = object
                .get("event")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .filter_map(|e| DateTime::parse(e, DateTimeKind::Partial).ok())
                .map(|d| (d.lower_bound_millis(), d.upper_bound_millis()))
                .collect();
            let bounds = object.get("repeat").and_then(|r| r.get("boundsPeriod")).and_then(Json::as_object);
            let period = bounds.map(|p| {
                let start = p
                    .get("start")
                    .and_then(Json::as_str)
                    .and_then(|s| DateTime::parse(s, DateTimeKind::Partial).ok());
                let end = p
                    .get("end")
                    .and_then(Json::as_str)
                    .and_then(|s| DateTime::parse(s, DateTimeKind::Partial).ok());
                (
                    start.map_or(i64::MIN, |d| d.lower_bound_millis()),
                    end.map_or(i64::MAX, |d| d.upper_bound_millis()),
                )
            });
            let low = events.iter().map(|e| e.0).chain(period.map(|p| p.0)).min()?;
            let high = events.iter().map(|e| e.1).chain(period.map(|p| p.1)).max()?;
            Some((low, high))
        }
        _ => None,
    }
}

fn number(value: &Value<'_>) -> Option<f64> {
    match value.system().as_ref() {
        Value::Integer(i) | Value::Long(i) => Some(*i as f64),
        Value::Decimal(d) => d.to_string().parse().ok(),
        _ => None,
    }
}

fn decimal_of(json: Option<&Json>) -> Option<rust_decimal::Decimal> {
    fhirpath_decimal(&json?.as_number()?.to_string())
}

fn fhirpath_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(text)
        .ok()
        .or_else(|| rust_decimal::Decimal::from_scientific(text).ok())
}

fn to_f64(decimal: rust_decimal::Decimal) -> f64 {
    decimal.to_string().parse().unwrap_or(f64::NAN)
}

/// A quantity row for a Quantity (or Money, or Range) value.
fn quantity(key: ParamKey, value: &Value<'_>) -> Option<QuantityRow> {
    let (node, object) = node_json(value)?;
    if node.type_name == "Range" {
        let low = object.get("low").and_then(|l| decimal_of(l.get("value")));
        let high = object.get("high").and_then(|h| decimal_of(h.get("value")));
        let unit_of = |side: &str| {
            object.get(side).and_then(|q| q.get("code").or_else(|| q.get("unit"))).and_then(Json::as_str)
        };
        let code = unit_of("low").or_else(|| unit_of("high")).unwrap_or("").to_string();
        let system = object
            .get("low")
            .or_else(|| object.get("high"))
            .and_then(|q| q.get("system"))
            .and_then(Json::as_str)
            .unwrap_or("");
        if low.is_none() && high.is_none() {
            return None;
        }
        let ucum_unit = if code.is_empty() { "1" } else { &code };
        let canonical_of = |side: Option<rust_decimal::Decimal>, unbounded: f64| match side {
            None => Some((None, unbounded)),
            Some(amount) => {
                fhirpath::ucum::canonical(amount, ucum_unit).map(|c| (Some(c.dimension), to_f64(c.value)))
            }
        };
        let canonical = match (canonical_of(low, f64::NEG_INFINITY), canonical_of(high, f64::INFINITY)) {
            (Some((low_dimension, low)), Some((high_dimension, high))) => {
                low_dimension.or(high_dimension).map(|dimension| (dimension_key(&dimension), low, high))
            }
            _ => None,
        };
        let (low, high) = (low.map_or(f64::NEG_INFINITY, to_f64), high.map_or(f64::INFINITY, to_f64));
        return Some(QuantityRow { param: key, low, high, system: system.to_string(), code, canonical });
    }
    let amount = decimal_of(get(object, "value"))?;
    let system = field(object, "system").unwrap_or("").to_string();
    let code = field(object, "code")
        .or_else(|| field(object, "currency"))
        .or_else(|| field(object, "unit"))
        .unwrap_or("")
        .to_string();
    let canonical = fhirpath::ucum::canonical(amount, if code.is_empty() { "1" } else { &code }).map(|c| {
        let value = to_f64(c.value);
        (dimension_key(&c.dimension), value, value)
    });
    let value = to_f64(amount);
    Some(QuantityRow { param: key, low: value, high: value, system, code, canonical })
}

/// A compact text form of a UCUM dimension vector, for equality in SQL.
pub fn dimension_key(dimension: &fhirpath::ucum::Dimension) -> String {
    dimension.iter().map(i8::to_string).collect::<Vec<_>>().join(",")
}

fn composite<'a>(entries: &mut IndexEntries, key: ParamKey, items: &Collection<'a>, env: &Environment<'a>) {
    let Some(components) = COMPONENTS.get(key as usize) else { return };
    if components.len() < 2 {
        return;
    }
    for item in items {
        let evaluate = |expression: &Expression| {
            expression.evaluate_collection(vec![item.clone()], vec![item.clone()], env).unwrap_or_default()
        };
        let mut first = IndexEntries::default();
        add(&mut first, key, components[0].0, &evaluate(&components[0].1));
        let firsts: Vec<(String, String)> = first
            .tokens
            .into_iter()
            .map(|(_, system, code)| (system, code))
            .chain(first.references.into_iter().map(|(_, t, id)| (t, id)))
            .chain(first.uris.into_iter().map(|(_, uri)| (String::new(), uri)))
            .collect();
        let mut second = IndexEntries::default();
        let (kind, expression) = &components[1];
        add(&mut second, key, *kind, &evaluate(expression));
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
