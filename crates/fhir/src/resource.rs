//! A FHIR resource held as JSON, with typed access to what the server needs.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::Error;
use crate::definitions::{Definitions, definitions};

/// A resource: a JSON object whose `resourceType` names a concrete R4 resource type and whose
/// `id`, when present, is a valid FHIR id. Numbers keep their exact written form.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Always a `Value::Object`; kept as a `Value` so it can be handed to code that takes JSON.
    json: Value,
}

/// Whether `id` matches the FHIR id rule `[A-Za-z0-9\-\.]{1,64}` and is not made of dots
/// only: `.` and `..` are legal by the rule, but as a URL path segment they mean "this" and
/// "the parent", which clients and proxies resolve away, so such a resource could never be
/// addressed.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.bytes().all(|b| b == b'.')
}

/// The Patient id a form field or operation input names: `Patient/[id]` or the bare id, with
/// surrounding blanks ignored; `None` unless the id is a valid FHIR id.
pub fn patient_id_input(text: &str) -> Option<&str> {
    let text = text.trim();
    let id = text.strip_prefix("Patient/").unwrap_or(text);
    is_valid_id(id).then_some(id)
}

/// The Patient a resource is about: its `subject`, `patient` or `beneficiary` when that refers
/// to a Patient (`Patient/id`).
pub fn patient_reference(resource: &Value) -> Option<&str> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|name| resource.get(*name)?.get("reference")?.as_str())
        .find(|r| r.starts_with("Patient/"))
}

/// The Patients a resource is about: a Patient's own id, or else the id of every
/// `Patient/...` reference in it (any element named `reference`, relative or absolute on any
/// base), in order, with repeats. What a patient's view of the record must not show of anyone
/// else. (A Patient's links to other Patients say nothing about them beyond the link.)
pub fn patients_mentioned(resource: &Value) -> Vec<&str> {
    fn walk<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(target)) = object.get("reference")
                    && let Some(id) = patient_id_of_reference(target)
                {
                    found.push(id);
                }
                object.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    if resource.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return resource.get("id").and_then(Value::as_str).into_iter().collect();
    }
    let mut found = Vec::new();
    walk(resource, &mut found);
    found
}

/// The Patient id a reference names: `Patient/id`, `Patient/id/_history/n`, or an absolute
/// URL whose path ends so (on any base: what another server calls a Patient is still one).
pub fn patient_id_of_reference(reference: &str) -> Option<&str> {
    let tail = match reference.strip_prefix("Patient/") {
        Some(tail) => tail,
        None if reference.contains("://") => &reference[reference.rfind("/Patient/")? + "/Patient/".len()..],
        None => return None,
    };
    let id = tail.split('/').next().unwrap_or(tail);
    is_valid_id(id).then_some(id)
}

/// Parses JSON text into a `Value`, rejecting duplicate property names (FHIR forbids them,
/// and a plain map would silently keep only the last).
pub fn parse_json(bytes: &[u8]) -> Result<Value, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v.0))
        .map_err(|e| Error::Json { line: e.line(), column: e.column(), message: json_message(&e) })?;
    Ok(value)
}

/// Checks that `bytes` are one well-formed JSON value, without building it: for input a
/// reader skips (another resource type) but must still not accept if it is broken.
pub fn check_json(bytes: &[u8]) -> Result<(), Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde::de::IgnoredAny::deserialize(&mut deserializer)
        .and_then(|_| deserializer.end())
        .map_err(|e| Error::Json { line: e.line(), column: e.column(), message: json_message(&e) })
}

/// serde_json's message without its own " at line X column Y" suffix (reported separately).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl Resource {
    /// Parses a resource from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_value(parse_json(bytes)?)
    }

    /// Checks that `value` is a resource of a known type with a valid id.
    pub fn from_value(value: Value) -> Result<Self, Error> {
        let Value::Object(json) = value else {
            return Err(Error::NotAnObject);
        };
        let resource_type = match json.get("resourceType") {
            Some(Value::String(t)) => t,
            Some(_) => {
                return Err(Error::WrongType {
                    element: "resourceType".into(),
                    expected: "a string naming the resource type",
                });
            }
            None => return Err(Error::MissingResourceType),
        };
        if !definitions().is_resource_type(resource_type) {
            return Err(Error::UnknownResourceType(resource_type.clone()));
        }
        match json.get("id") {
            None => {}
            Some(Value::String(id)) if is_valid_id(id) => {}
            Some(Value::String(id)) => {
                return Err(Error::InvalidId { resource_type: resource_type.clone(), id: id.clone() });
            }
            Some(_) => {
                return Err(Error::WrongType {
                    element: format!("{resource_type}.id"),
                    expected: "a string",
                });
            }
        }
        if let Some(meta) = json.get("meta")
            && !meta.is_object()
        {
            return Err(Error::WrongType { element: format!("{resource_type}.meta"), expected: "an object" });
        }
        Ok(Resource { json: Value::Object(json) })
    }

    /// The resource type (`Patient`).
    pub fn resource_type(&self) -> &str {
        self.as_object().get("resourceType").and_then(Value::as_str).unwrap_or_default()
    }

    /// The logical id, if present.
    pub fn id(&self) -> Option<&str> {
        self.as_object().get("id").and_then(Value::as_str)
    }

    /// Sets the logical id. Callers pass ids they generated or checked with [`is_valid_id`].
    pub fn set_id(&mut self, id: &str) {
        self.as_object_mut().insert("id".into(), Value::from(id));
    }

    /// Removes the logical id (a create ignores any id the client sent).
    pub fn clear_id(&mut self) {
        self.as_object_mut().shift_remove("id");
    }

    /// `meta`, if present.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.as_object().get("meta").and_then(Value::as_object)
    }

    /// `meta.versionId`, if present.
    pub fn version_id(&self) -> Option<&str> {
        self.meta()?.get("versionId")?.as_str()
    }

    /// The JSON object.
    pub fn as_object(&self) -> &Map<String, Value> {
        match &self.json {
            Value::Object(object) => object,
            _ => unreachable!("a Resource always holds an object"),
        }
    }

    /// The JSON object, for changes that keep the resource's type and id valid.
    pub fn as_object_mut(&mut self) -> &mut Map<String, Value> {
        match &mut self.json {
            Value::Object(object) => object,
            _ => unreachable!("a Resource always holds an object"),
        }
    }

    /// The resource as a JSON value.
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    /// The resource as a JSON value.
    pub fn into_value(self) -> Value {
        self.json
    }

    /// Every `Reference.reference` in the resource (contained resources and extensions
    /// included, resources carried in a Bundle or Parameters not), with its FHIRPath location.
    pub fn references(&self) -> Vec<ReferenceSite<'_>> {
        let mut sites = Vec::new();
        let resource_type = self.resource_type();
        walk_references(
            definitions(),
            resource_type,
            Some(resource_type),
            self.as_object(),
            &mut |path, reference| sites.push(ReferenceSite { path: path.unwrap_or_default(), reference }),
        );
        sites
    }

    /// Checks the form of every reference: a relative reference must name a known resource
    /// type and a valid id (`Patient/123`, `Patient/123/_history/2`); absolute URLs, `urn:`
    /// references and `#fragment`s are accepted as they are.
    pub fn check_reference_formats(&self) -> Result<(), Error> {
        // Walk without building paths; only a failure needs to say where.
        let mut valid = true;
        walk_references(definitions(), self.resource_type(), None, self.as_object(), &mut |_, reference| {
            valid &= check_reference_format(reference).is_ok();
        });
        if valid {
            return Ok(());
        }
        for site in self.references() {
            check_reference_format(site.reference).map_err(|reason| Error::InvalidReference {
                path: site.path.clone(),
                reference: site.reference.to_string(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Replaces every `Reference.reference`, and every `uri`/`url`/`oid`/`uuid` value, for
    /// which `rewrite` returns `Some` (contained resources and extensions included; resources
    /// carried in a Bundle or Parameters are left alone).
    pub fn rewrite_references(&mut self, rewrite: &mut dyn FnMut(&str) -> Option<String>) {
        let resource_type = self.resource_type().to_string();
        rewrite_references(definitions(), &resource_type, self.as_object_mut(), rewrite);
    }

    /// Calls `rewrite` on the XHTML of every narrative (`text.div`, also in contained
    /// resources) and replaces it when `rewrite` returns `Some`.
    pub fn rewrite_narratives(&mut self, rewrite: &mut dyn FnMut(&str) -> Option<String>) {
        rewrite_narrative(self.as_object_mut(), rewrite);
        if let Some(Value::Array(contained)) = self.as_object_mut().get_mut("contained") {
            for item in contained {
                if let Value::Object(inner) = item {
                    rewrite_narrative(inner, rewrite);
                }
            }
        }
    }
}

fn rewrite_narrative(object: &mut Map<String, Value>, rewrite: &mut dyn FnMut(&str) -> Option<String>) {
    if let Some(Value::String(div)) = object.get_mut("text").and_then(|t| t.get_mut("div"))
        && let Some(replacement) = rewrite(div)
    {
        *div = replacement;
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{}/{}", self.resource_type(), id),
            None => write!(f, "{} (no id)", self.resource_type()),
        }
    }
}

/// A `Reference.reference` found in a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceSite<'a> {
    /// FHIRPath location, e.g. `Observation.performer[1].reference`.
    pub path: String,
    pub reference: &'a str,
}

/// What a reference string points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceTarget<'a> {
    /// `Type/id` or `Type/id/_history/version` on this server.
    Local { resource_type: &'a str, id: &'a str, version: Option<&'a str> },
    /// `#id`: a contained resource (or `#` for the container).
    Contained(&'a str),
    /// `urn:uuid:...` / `urn:oid:...`: a bundle-local or logical identity.
    Urn(&'a str),
    /// An absolute URL on some server.
    Absolute(&'a str),
    /// A conditional reference (`Patient?identifier=x`), meaningful only inside a transaction.
    Conditional { resource_type: &'a str, query: &'a str },
}

/// Classifies a reference string, or says what is wrong with it.
pub fn parse_reference(reference: &str) -> Result<ReferenceTarget<'_>, String> {
    if let Some(fragment) = reference.strip_prefix('#') {
        return Ok(ReferenceTarget::Contained(fragment));
    }
    if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
        return Ok(ReferenceTarget::Urn(reference));
    }
    if reference.contains("://") {
        return Ok(ReferenceTarget::Absolute(reference));
    }
    if let Some((resource_type, query)) = reference.split_once('?') {
        if !definitions().is_resource_type(resource_type) {
            return Err(format!("'{resource_type}' is not a resource type"));
        }
        return Ok(ReferenceTarget::Conditional { resource_type, query });
    }
    let parts: Vec<&str> = reference.split('/').collect();
    let (resource_type, id, version) = match parts.as_slice() {
        [t, id] => (*t, *id, None),
        [t, id, "_history", v] => (*t, *id, Some(*v)),
        _ => {
            return Err("expected 'Type/id', 'Type/id/_history/version', an absolute URL, \
                        a urn: or a #fragment"
                .to_string());
        }
    };
    if !definitions().is_resource_type(resource_type) {
        return Err(format!("'{resource_type}' is not a resource type"));
    }
    if !is_valid_id(id) {
        return Err(format!("'{id}' is not a valid id"));
    }
    if let Some(v) = version
        && !is_valid_id(v)
    {
        return Err(format!("'{v}' is not a valid version id"));
    }
    Ok(ReferenceTarget::Local { resource_type, id, version })
}

fn check_reference_format(reference: &str) -> Result<(), String> {
    match parse_reference(reference)? {
        ReferenceTarget::Conditional { .. } => {
            Err("a conditional reference is only allowed inside a transaction Bundle".to_string())
        }
        _ => Ok(()),
    }
}

/// How a JSON property of an object rooted at `root` is to be walked for references.
struct ChildKind<'d> {
    /// Where the property's own children are defined.
    root: &'d str,
    is_reference: bool,
    /// An inline resource that belongs to this one (`contained`): walked into.
    is_resource: bool,
    /// A `uri`, `url`, `oid` or `uuid` primitive (whose value may name a Bundle entry).
    is_uri: bool,
}

fn child_kind<'d>(defs: &'d Definitions, root: &str, key: &str) -> Option<ChildKind<'d>> {
    // `_given: [{extension: ...}]` carries extensions of primitive values.
    if let Some(primitive) = key.strip_prefix('_') {
        defs.child(root, primitive)?;
        return Some(ChildKind { root: "Element", is_reference: false, is_resource: false, is_uri: false });
    }
    // A Bundle's entries (their fullUrls, requests and resources) are its payload: they are
    // resolved within the Bundle, never rewritten from outside.
    if root == "Bundle" && key == "entry" {
        return None;
    }
    let child = defs.child(root, key)?;
    let code = child.type_code;
    // Resources carried as parameters have references of their own: they are not walked.
    let is_payload = root.starts_with("Parameters.");
    if code == Some("Resource") && is_payload {
        return None;
    }
    Some(ChildKind {
        root: defs.children_root(child.element, code),
        is_reference: code == Some("Reference"),
        is_resource: code == Some("Resource"),
        is_uri: matches!(code, Some("uri" | "url" | "oid" | "uuid")),
    })
}

/// The type name of a contained/inline resource, if it is a known one.
fn inline_resource_type<'m>(defs: &Definitions, object: &'m Map<String, Value>) -> Option<&'m str> {
    match object.get("resourceType") {
        Some(Value::String(t)) if defs.is_resource_type(t) => Some(t),
        _ => None,
    }
}

/// Walks the `Reference.reference` strings of an object. `path` is the FHIRPath location
/// of `object`; when it is `None` no paths are built (the common case of only checking).
fn walk_references<'a>(
    defs: &Definitions,
    root: &str,
    path: Option<&str>,
    object: &'a Map<String, Value>,
    visit: &mut dyn FnMut(Option<String>, &'a str),
) {
    for (key, value) in object {
        let Some(kind) = child_kind(defs, root, key) else { continue };
        let items: &[Value] = match value {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        for (index, item) in items.iter().enumerate() {
            let Value::Object(child) = item else { continue };
            let child_path = path.map(|path| {
                if value.is_array() { format!("{path}.{key}[{index}]") } else { format!("{path}.{key}") }
            });
            if kind.is_reference
                && let Some(Value::String(reference)) = child.get("reference")
            {
                visit(child_path.as_ref().map(|p| format!("{p}.reference")), reference);
            }
            let child_root =
                if kind.is_resource { inline_resource_type(defs, child) } else { Some(kind.root) };
            if let Some(child_root) = child_root {
                walk_references(defs, child_root, child_path.as_deref(), child, visit);
            }
        }
    }
}

fn rewrite_references(
    defs: &Definitions,
    root: &str,
    object: &mut Map<String, Value>,
    rewrite: &mut dyn FnMut(&str) -> Option<String>,
) {
    for (key, value) in object.iter_mut() {
        let Some(kind) = child_kind(defs, root, key) else { continue };
        let items: &mut [Value] = match value {
            Value::Array(items) => items,
            single => std::slice::from_mut(single),
        };
        for item in items {
            if kind.is_uri {
                if let Value::String(text) = item
                    && let Some(replacement) = rewrite(text)
                {
                    *text = replacement;
                }
                continue;
            }
            let Value::Object(child) = item else { continue };
            if kind.is_reference
                && let Some(Value::String(reference)) = child.get_mut("reference")
                && let Some(replacement) = rewrite(reference)
            {
                *reference = replacement;
            }
            let child_root: Option<String> = if kind.is_resource {
                inline_resource_type(defs, child).map(str::to_string)
            } else {
                Some(kind.root.to_string())
            };
            if let Some(child_root) = child_root {
                rewrite_references(defs, &child_root, child, rewrite);
            }
        }
    }
}

/// serde_json's marker for numbers kept as text under `arbitrary_precision`; it arrives as a
/// single-entry map when deserializing through a custom visitor.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let Some(first_key) = map.next_key::<String>()? else {
            return Ok(Value::Object(object));
        };
        if first_key == NUMBER_TOKEN {
            let text: String = map.next_value()?;
            return Number::from_str(&text).map(Value::Number).map_err(de::Error::custom);
        }
        let mut key = first_key;
        loop {
            let StrictValue(value) = map.next_value_seed(StrictSeed)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate property \"{key}\"")));
            }
            object.insert(key, value);
            match map.next_key::<String>()? {
                Some(next) => key = next,
                None => break,
            }
        }
        Ok(Value::Object(object))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = StrictValue;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patient_inputs_name_a_valid_id() {
        assert_eq!(patient_id_input(" Patient/pa-1 "), Some("pa-1"));
        assert_eq!(patient_id_input("pa.2"), Some("pa.2"));
        for bad in ["", "Patient/", "Patient/..", "Patient/a b", "Observation/o1", &"x".repeat(65)] {
            assert_eq!(patient_id_input(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_keep_their_written_form() {
        let value =
            parse_json(br#"{"a": 1.50, "b": 100, "c": -0.000001, "d": 12345678901234567890.5}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"a":1.50,"b":100,"c":-0.000001,"d":12345678901234567890.5}"#
        );
    }

    #[test]
    fn duplicate_properties_are_rejected_with_position() {
        let error = parse_json(b"{\n \"a\": 1,\n \"a\": 2}").unwrap_err();
        match error {
            Error::Json { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(message.contains("duplicate property \"a\""), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let error = parse_json(b"{\"resourceType\": \"Patient\",\n  \"active\": tru }").unwrap_err();
        assert!(matches!(error, Error::Json { line: 2, .. }), "{error:?}");
    }

    #[test]
    fn resource_checks() {
        assert!(matches!(Resource::from_value(json!([])), Err(Error::NotAnObject)));
        assert!(matches!(Resource::from_value(json!({})), Err(Error::MissingResourceType)));
        assert!(matches!(
            Resource::from_value(json!({"resourceType": "Patiant"})),
            Err(Error::UnknownResourceType(t)) if t == "Patiant"
        ));
        assert!(matches!(
            Resource::from_value(json!({"resourceType": "Patient", "id": "a b"})),
            Err(Error::InvalidId { .. })
        ));
        assert!(Resource::from_value(json!({"resourceType": "Patient", "id": "x".repeat(65)})).is_err());
        let ok = Resource::from_value(json!({"resourceType": "Patient", "id": "A-1.b"})).unwrap();
        assert_eq!(ok.resource_type(), "Patient");
        assert_eq!(ok.id(), Some("A-1.b"));
    }

    #[test]
    fn finds_typed_references_only() {
        let resource = Resource::from_value(json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/1"},
            "performer": [{"reference": "Practitioner/2"}, {"display": "no ref"}, {"reference": "#org"}],
            "contained": [{"resourceType": "Organization", "id": "org",
                            "partOf": {"reference": "Organization/9"}}],
            "extension": [{"url": "http://x", "valueReference": {"reference": "Device/3"}}],
            "valueString": "reference"
        }))
        .unwrap();
        let refs: Vec<(String, &str)> =
            resource.references().into_iter().map(|s| (s.path, s.reference)).collect();
        assert_eq!(
            refs,
            vec![
                ("Observation.subject.reference".to_string(), "Patient/1"),
                ("Observation.performer[0].reference".to_string(), "Practitioner/2"),
                ("Observation.performer[2].reference".to_string(), "#org"),
                ("Observation.contained[0].partOf.reference".to_string(), "Organization/9"),
                ("Observation.extension[0].valueReference.reference".to_string(), "Device/3"),
            ]
        );
        // DetectedIssue.reference is a uri, not a Reference.
        let issue = Resource::from_value(json!({
            "resourceType": "DetectedIssue", "status": "final", "reference": "not/a/reference"
        }))
        .unwrap();
        assert!(issue.references().is_empty());
    }

    #[test]
    fn rewrites_references_but_not_look_alike_strings() {
        let mut resource = Resource::from_value(json!({
            "resourceType": "Observation",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}],
            "subject": {"reference": "urn:uuid:1"},
            "contained": [{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:1"}]}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">urn:uuid:1</div>"}
        }))
        .unwrap();
        resource.rewrite_references(&mut |r| (r == "urn:uuid:1").then(|| "Patient/abc".to_string()));
        resource.rewrite_narratives(&mut |div| Some(div.replace("urn:uuid:1", "Patient/abc")));
        let json = resource.into_value();
        assert_eq!(json["subject"]["reference"], "Patient/abc");
        assert_eq!(json["contained"][0]["target"][0]["reference"], "Patient/abc");
        assert_eq!(json["identifier"][0]["value"], "urn:uuid:1");
        assert!(json["text"]["div"].as_str().unwrap().contains("Patient/abc"));
    }

    #[test]
    fn resources_carried_in_a_bundle_are_not_walked() {
        let mut document = Resource::from_value(json!({
            "resourceType": "Bundle", "type": "document",
            "entry": [{"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Composition",
                        "subject": {"reference": "urn:uuid:b"}}}]
        }))
        .unwrap();
        assert!(document.references().is_empty());
        document.rewrite_references(&mut |_| Some("Patient/x".into()));
        let document = document.into_value();
        assert_eq!(document["entry"][0]["resource"]["subject"]["reference"], "urn:uuid:b");
        assert_eq!(document["entry"][0]["fullUrl"], "urn:uuid:a");
        let mut reference = Resource::from_value(json!({
            "resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"url": "urn:uuid:bin"}}]
        }))
        .unwrap();
        reference.rewrite_references(&mut |r| (r == "urn:uuid:bin").then(|| "Binary/1".to_string()));
        assert_eq!(reference.into_value()["content"][0]["attachment"]["url"], "Binary/1");
    }

    #[test]
    fn reference_formats() {
        assert!(parse_reference("Patient/123").is_ok());
        assert!(parse_reference("Patient/123/_history/2").is_ok());
        assert!(parse_reference("http://other.org/fhir/Patient/1").is_ok());
        assert!(parse_reference("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a").is_ok());
        assert!(parse_reference("#p1").is_ok());
        assert!(parse_reference("Patiant/123").is_err());
        assert!(parse_reference("Patient/1 2").is_err());
        assert!(parse_reference("Patient").is_err());
        let resource = Resource::from_value(json!({
            "resourceType": "Observation", "subject": {"reference": "Patient?identifier=1"}
        }))
        .unwrap();
        let error = resource.check_reference_formats().unwrap_err();
        assert!(
            matches!(error, Error::InvalidReference { ref path, .. } if path == "Observation.subject.reference")
        );
    }
}
