//! `PATCH`: a JSON Patch (RFC 6902) or a FHIRPath Patch (a `Parameters` resource, FHIR R4
//! 3.1.0.9) applied to the current version, which is then stored exactly as an update.
//!
//! A patch is applied to a copy of the stored JSON; the result goes through the update's
//! own preparation (`write::prepare_update`: id, reference formats, validation) and is
//! committed under the version it was made from, so a write that came in between is a 412
//! rather than a lost update. The gate judges the stored resource before anything else
//! (a caller may change only what they may see), then `If-Match` is checked.
//!
//! Failures: a malformed patch document is a 400 saying what is wrong and where; a patch
//! that cannot be applied to this resource (a path that selects nothing, a failed `test`)
//! is a 422 naming the operation and its path. Nothing is written unless every operation
//! applies and the result is valid.

use std::collections::HashMap;

use fhir::definitions::{Member, choice_key};
use fhir::{IssueType, Resource, definitions};
use serde_json::{Map, Value};
use store::WriteOp;

use crate::access::Gate;
use crate::headers::{etag, parse_if_match};
use crate::write::{Validation, complete, localize_references, prepare_update};
use crate::{Api, ApiError, Prefer, Request, Response};

/// The media type of a JSON Patch document.
pub const JSON_PATCH: &str = "application/json-patch+json";

/// The media type of a JSON Merge Patch (RFC 7386): an object whose members replace those of
/// the resource, `null` removing one. Also what an object without `resourceType` sent as
/// JSON is (as clients such as fhirpy send `patch()`).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// Most operations in one patch: each may walk the whole resource (a FHIRPath evaluation,
/// a JSON Patch `test` of the root), so their number bounds the cost of one request.
const MAX_OPERATIONS: usize = 1000;

/// How deep a patched resource may nest, as deep as a request body may (a JSON Patch `copy`
/// of a document into itself would otherwise deepen it with every operation).
const MAX_DEPTH: usize = 128;

/// Roughly how large (in bytes of JSON) a patched resource may grow: `copy` doubles what it
/// copies, so a short patch could otherwise build a resource of any size.
const MAX_PATCHED_BYTES: usize = 32 * 1024 * 1024;

/// A client that sent no `If-Match` asked for no particular version: when another write
/// lands between the read and the commit, the patch is applied again to the newer version,
/// this many times at most.
const RETRIES: usize = 3;

/// A parsed patch document.
#[derive(Debug)]
pub(crate) enum PatchDocument {
    Json(Vec<JsonOperation>),
    FhirPath(Vec<FhirPathOperation>),
    Merge(serde_json::Map<String, Value>),
}

impl PatchDocument {
    /// A request body: a JSON Patch array, or a FHIRPath Patch `Parameters` resource.
    pub(crate) fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<PatchDocument, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                IssueType::Required,
                format!(
                    "PATCH needs a body: a JSON Patch array (Content-Type: {JSON_PATCH}) or a FHIRPath Patch Parameters resource (Content-Type: application/fhir+json)"
                ),
            ));
        }
        let value = fhir::parse_json(body)?;
        let json_patch = content_type == Some(JSON_PATCH);
        if content_type == Some(MERGE_PATCH) {
            return match value {
                Value::Object(object) => merge_patch(object),
                other => Err(ApiError::bad_request(
                    IssueType::Structure,
                    format!(
                        "a JSON Merge Patch ({MERGE_PATCH}) is an object; the body is {}",
                        kind_of(&other)
                    ),
                )),
            };
        }
        match value {
            Value::Array(operations) => parse_json_patch(operations),
            other if json_patch => Err(ApiError::bad_request(
                IssueType::Structure,
                format!(
                    "a JSON Patch document ({JSON_PATCH}) is an array of operations; the body is {}",
                    kind_of(&other)
                ),
            )),
            Value::Object(object) => match object.get("resourceType").and_then(Value::as_str) {
                Some("Parameters") => parse_fhirpath_patch(&object),
                Some(other) => Err(ApiError::at(
                    400,
                    IssueType::Invalid,
                    format!(
                        "a FHIR JSON PATCH body is a FHIRPath Patch (a Parameters resource), not a {other}; to send the whole resource use PUT, or send a JSON Patch array as {JSON_PATCH}"
                    ),
                    "resourceType",
                )),
                None => merge_patch(object),
            },
            other => Err(not_a_patch(kind_of(&other))),
        }
    }

    /// The patch carried by a Bundle entry: a `Binary` holding a JSON Patch, or a
    /// `Parameters` resource (FHIRPath Patch).
    pub(crate) fn from_entry(resource: &Resource) -> Result<PatchDocument, ApiError> {
        match resource.resource_type() {
            "Parameters" => parse_fhirpath_patch(resource.as_object()),
            "Binary" => {
                let object = resource.as_object();
                let content_type = object.get("contentType").and_then(Value::as_str).unwrap_or("");
                let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                if media_type != JSON_PATCH {
                    return Err(ApiError::at(
                        400,
                        IssueType::NotSupported,
                        format!(
                            "a Binary in a PATCH entry carries a JSON Patch: its contentType must be {JSON_PATCH}, not '{content_type}'"
                        ),
                        "Binary.contentType",
                    ));
                }
                let Some(data) = object.get("data").and_then(Value::as_str) else {
                    return Err(ApiError::at(
                        400,
                        IssueType::Required,
                        "the Binary has no data: put the JSON Patch in Binary.data, base64-encoded",
                        "Binary.data",
                    ));
                };
                let bytes = fhir::base64_decode(data).ok_or_else(|| {
                    ApiError::at(400, IssueType::Value, "Binary.data is not base64", "Binary.data")
                })?;
                match fhir::parse_json(&bytes) {
                    Ok(Value::Array(operations)) => parse_json_patch(operations),
                    Ok(other) => Err(ApiError::at(
                        400,
                        IssueType::Structure,
                        format!(
                            "the JSON Patch in Binary.data is {}, not an array of operations",
                            kind_of(&other)
                        ),
                        "Binary.data",
                    )),
                    Err(error) => Err(ApiError::at(
                        400,
                        IssueType::Structure,
                        format!("the JSON Patch in Binary.data is not JSON: {error}"),
                        "Binary.data",
                    )),
                }
            }
            other => Err(ApiError::at(
                400,
                IssueType::Invalid,
                format!(
                    "a PATCH entry's resource is the patch: a Binary ({JSON_PATCH}) or a Parameters resource (FHIRPath Patch), not a {other}"
                ),
                "resourceType",
            )),
        }
    }

    /// Applies every operation, in order, to `resource` (the stored JSON).
    pub(crate) fn apply(&self, resource: Value) -> Result<Value, ApiError> {
        let mut resource = resource;
        match self {
            PatchDocument::Json(operations) => {
                let mut budget = size_of(&resource);
                for operation in operations {
                    operation.apply(&mut resource, &mut budget)?;
                }
            }
            PatchDocument::FhirPath(operations) => {
                for operation in operations {
                    operation.apply(&mut resource)?;
                }
            }
            PatchDocument::Merge(members) => merge(&mut resource, members),
        }
        if depth_of(&resource) > MAX_DEPTH {
            return Err(ApiError::new(
                422,
                IssueType::TooCostly,
                format!("the patched resource would nest more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(resource)
    }
}

fn merge_patch(members: serde_json::Map<String, Value>) -> Result<PatchDocument, ApiError> {
    if members.is_empty() {
        return Err(ApiError::bad_request(
            IssueType::Structure,
            "the body is an empty object: as a JSON Merge Patch it changes nothing; name the elements to change (null removes one)",
        ));
    }
    Ok(PatchDocument::Merge(members))
}

/// RFC 7386: each member replaces the target's, `null` removes it, and objects merge into
/// objects member by member.
fn merge(target: &mut Value, patch: &serde_json::Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(members) = target else { return };
    for (name, value) in patch {
        match value {
            Value::Null => {
                members.remove(name);
            }
            Value::Object(inner) => merge(members.entry(name.clone()).or_insert(Value::Null), inner),
            other => {
                members.insert(name.clone(), other.clone());
            }
        }
    }
}

fn not_a_patch(what: &str) -> ApiError {
    ApiError::bad_request(
        IssueType::Structure,
        format!(
            "a PATCH body is a JSON Patch array (Content-Type: {JSON_PATCH}) or a FHIRPath Patch Parameters resource (Content-Type: application/fhir+json); the body is {what}"
        ),
    )
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn too_many(count: usize) -> ApiError {
    ApiError::bad_request(
        IssueType::TooCostly,
        format!("the patch has {count} operations; at most {MAX_OPERATIONS} are accepted in one request"),
    )
}

/// The depth of a JSON value (a scalar is 1), without recursion.
fn depth_of(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(object) => stack.extend(object.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// Roughly the bytes of a JSON value's serialization, without recursion.
fn size_of(value: &Value) -> usize {
    let mut size = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        size += match value {
            Value::String(text) => text.len() + 2,
            Value::Number(number) => number.as_str().len(),
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(object) => {
                stack.extend(object.values());
                2 + object.keys().map(|k| k.len() + 4).sum::<usize>()
            }
            Value::Null | Value::Bool(_) => 5,
        };
    }
    size
}

// ---------------------------------------------------------------------------------------
// JSON Patch (RFC 6902) with JSON Pointers (RFC 6901)
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl JsonOp {
    fn name(self) -> &'static str {
        match self {
            JsonOp::Add => "add",
            JsonOp::Remove => "remove",
            JsonOp::Replace => "replace",
            JsonOp::Move => "move",
            JsonOp::Copy => "copy",
            JsonOp::Test => "test",
        }
    }
}

/// A JSON Pointer, as written and as reference tokens.
#[derive(Debug)]
struct Pointer {
    text: String,
    tokens: Vec<String>,
}

/// One JSON Patch operation, checked for form.
#[derive(Debug)]
pub(crate) struct JsonOperation {
    index: usize,
    op: JsonOp,
    path: Pointer,
    from: Option<Pointer>,
    value: Option<Value>,
}

fn parse_json_patch(operations: Vec<Value>) -> Result<PatchDocument, ApiError> {
    if operations.len() > MAX_OPERATIONS {
        return Err(too_many(operations.len()));
    }
    let mut parsed = Vec::with_capacity(operations.len());
    for (index, operation) in operations.into_iter().enumerate() {
        let malformed = |message: String| {
            ApiError::bad_request(IssueType::Structure, format!("JSON Patch operation {index}: {message}"))
        };
        let Value::Object(mut object) = operation else {
            return Err(malformed(format!("is {}, not an object", kind_of(&operation))));
        };
        let op = match object.get("op") {
            Some(Value::String(name)) => match name.as_str() {
                "add" => JsonOp::Add,
                "remove" => JsonOp::Remove,
                "replace" => JsonOp::Replace,
                "move" => JsonOp::Move,
                "copy" => JsonOp::Copy,
                "test" => JsonOp::Test,
                other => {
                    return Err(malformed(format!(
                        "unknown op '{other}'; expected add, remove, replace, move, copy or test"
                    )));
                }
            },
            Some(other) => return Err(malformed(format!("op is {}, not a string", kind_of(other)))),
            None => return Err(malformed("has no op".to_string())),
        };
        let pointer = |object: &Map<String, Value>, member: &str| -> Result<Option<Pointer>, ApiError> {
            match object.get(member) {
                None => Ok(None),
                Some(Value::String(text)) => parse_pointer(text)
                    .map(|tokens| Some(Pointer { text: text.clone(), tokens }))
                    .map_err(|why| {
                        malformed(format!("({}) {member} '{text}' is not a JSON Pointer: {why}", op.name()))
                    }),
                Some(other) => {
                    Err(malformed(format!("({}) {member} is {}, not a string", op.name(), kind_of(other))))
                }
            }
        };
        let Some(path) = pointer(&object, "path")? else {
            return Err(malformed(format!("({}) has no path", op.name())));
        };
        let from = pointer(&object, "from")?;
        if matches!(op, JsonOp::Move | JsonOp::Copy) && from.is_none() {
            return Err(malformed(format!("({}) has no from", op.name())));
        }
        // `value` may be null, but must be there.
        let value = object.remove("value");
        if matches!(op, JsonOp::Add | JsonOp::Replace | JsonOp::Test) && value.is_none() {
            return Err(malformed(format!("({}) has no value", op.name())));
        }
        parsed.push(JsonOperation { index, op, path, from, value });
    }
    Ok(PatchDocument::Json(parsed))
}

/// The reference tokens of a JSON Pointer (`~1` is `/`, `~0` is `~`).
fn parse_pointer(text: &str) -> Result<Vec<String>, &'static str> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err("a pointer is empty or starts with '/'");
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err("'~' must be followed by 0 or 1"),
                    },
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn pointer_text(tokens: &[String]) -> String {
    tokens.iter().map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1"))).collect()
}

fn resolve<'v>(root: &'v Value, tokens: &[String]) -> Result<&'v Value, String> {
    let mut current = root;
    for (depth, token) in tokens.iter().enumerate() {
        let next = match current {
            Value::Object(object) => object.get(token),
            Value::Array(items) => array_index(token).and_then(|i| items.get(i)),
            _ => None,
        };
        current = next.ok_or_else(|| format!("path {} does not exist", pointer_text(&tokens[..=depth])))?;
    }
    Ok(current)
}

fn resolve_mut<'v>(root: &'v mut Value, tokens: &[String]) -> Result<&'v mut Value, String> {
    let mut current = root;
    for (depth, token) in tokens.iter().enumerate() {
        let next = match current {
            Value::Object(object) => object.get_mut(token),
            Value::Array(items) => array_index(token).and_then(|i| items.get_mut(i)),
            _ => None,
        };
        current = next.ok_or_else(|| format!("path {} does not exist", pointer_text(&tokens[..=depth])))?;
    }
    Ok(current)
}

fn json_add(root: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *root = value;
        return Ok(());
    };
    match resolve_mut(root, parent)? {
        Value::Object(object) => {
            object.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => match array_index(last) {
            Some(i) if i <= items.len() => {
                items.insert(i, value);
                Ok(())
            }
            Some(i) => Err(format!(
                "index {i} in {} is beyond the end of the array (length {})",
                pointer_text(tokens),
                items.len()
            )),
            None => Err(format!("'{last}' in {} is not an array index", pointer_text(tokens))),
        },
        other => {
            Err(format!("{} is {}, which has no members to add to", pointer_text(parent), kind_of(other)))
        }
    }
}

fn json_remove(root: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err("the whole resource cannot be removed".to_string());
    };
    let missing = || format!("path {} does not exist", pointer_text(tokens));
    match resolve_mut(root, parent)? {
        Value::Object(object) => object.shift_remove(last).ok_or_else(missing),
        Value::Array(items) => match array_index(last) {
            Some(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// JSON equality as RFC 6902 `test` defines it: numbers compare by value (`1.0` is `1`),
/// objects regardless of member order.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_key(x.as_str()) == number_key(y.as_str()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A JSON number as (negative, significant digits, exponent), so that equal values have
/// equal keys whatever their spelling. Falls back to the text when the exponent overflows.
fn number_key(text: &str) -> (bool, String, i64) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].trim_start_matches('+').parse::<i64>().ok()),
        None => (rest, Some(0)),
    };
    let Some(exponent) = exponent else { return (negative, text.to_string(), i64::MIN) };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{whole}{fraction}").trim_start_matches('0').to_string();
    let Some(mut exponent) = exponent.checked_sub(fraction.len() as i64) else {
        return (negative, text.to_string(), i64::MIN);
    };
    while digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    if digits.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, digits, exponent)
}

impl JsonOperation {
    fn apply(&self, resource: &mut Value, budget: &mut usize) -> Result<(), ApiError> {
        let path = &self.path.tokens;
        let result = match self.op {
            JsonOp::Add => self.placed(resource, path, self.value.clone().unwrap_or(Value::Null), budget),
            JsonOp::Remove => json_remove(resource, path).map(|_| ()),
            JsonOp::Replace => match resolve_mut(resource, path) {
                Ok(target) => {
                    *target = self.value.clone().unwrap_or(Value::Null);
                    Ok(())
                }
                Err(why) => Err(why),
            },
            JsonOp::Move => {
                let from = self.from.as_ref().map_or(&[][..], |f| &f.tokens[..]);
                if from == path.as_slice() {
                    resolve(resource, path).map(|_| ())
                } else if path.starts_with(from) {
                    Err(format!("{} cannot be moved into itself ({})", self.source_pointer(), self.path.text))
                } else {
                    json_remove(resource, from)
                        .map_err(|why| format!("from: {why}"))
                        .and_then(|value| json_add(resource, path, value))
                }
            }
            JsonOp::Copy => {
                let from = self.from.as_ref().map_or(&[][..], |f| &f.tokens[..]);
                match resolve(resource, from) {
                    Ok(value) => {
                        let value = value.clone();
                        self.placed(resource, path, value, budget)
                    }
                    Err(why) => Err(format!("from: {why}")),
                }
            }
            JsonOp::Test => match resolve(resource, path) {
                Ok(found) if self.value.as_ref().is_some_and(|v| json_equal(found, v)) => Ok(()),
                Ok(found) => Err(format!(
                    "test failed: {} is {}, not {}",
                    self.path.text,
                    brief(found),
                    self.value.as_ref().map_or_else(|| "null".to_string(), brief)
                )),
                Err(why) => Err(why),
            },
        };
        result.map_err(|why| {
            ApiError::new(
                422,
                IssueType::Processing,
                format!("JSON Patch operation {} ({}): {why}", self.index, self.op.name()),
            )
        })
    }

    /// `add` (and `copy`'s add): the resource may not grow beyond its bounds.
    fn placed(
        &self,
        resource: &mut Value,
        path: &[String],
        value: Value,
        budget: &mut usize,
    ) -> Result<(), String> {
        *budget += size_of(&value);
        if *budget > MAX_PATCHED_BYTES {
            return Err(format!(
                "the patched resource would exceed {} MiB",
                MAX_PATCHED_BYTES / (1024 * 1024)
            ));
        }
        if path.len() + depth_of(&value) > MAX_DEPTH {
            return Err(format!("the patched resource would nest more than {MAX_DEPTH} levels deep"));
        }
        json_add(resource, path, value)
    }

    fn source_pointer(&self) -> &str {
        self.from.as_ref().map_or("", |f| f.text.as_str())
    }
}

/// A value as a short text for a message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------
// FHIRPath Patch
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Insert => "insert",
            Kind::Delete => "delete",
            Kind::Replace => "replace",
            Kind::Move => "move",
        }
    }
}

/// The `value` of an operation.
#[derive(Clone, Debug)]
enum PatchValue {
    /// `value[x]`: the type (as in the property name: `HumanName`, `Date`) and the JSON.
    Typed { suffix: String, json: Value },
    /// `resource`.
    Resource(Value),
    /// `part`s: one per child element, by name.
    Parts(Vec<(String, PatchValue)>),
}

/// One FHIRPath Patch operation, checked for form.
#[derive(Debug)]
pub(crate) struct FhirPathOperation {
    /// The parameter's position in `Parameters.parameter`.
    index: usize,
    kind: Kind,
    path: fhirpath::Expression,
    name: Option<String>,
    value: Option<PatchValue>,
    position: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

fn parse_fhirpath_patch(parameters: &Map<String, Value>) -> Result<PatchDocument, ApiError> {
    let listed = match parameters.get("parameter") {
        None => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            return Err(ApiError::at(
                400,
                IssueType::Structure,
                "parameter must be an array",
                "Parameters.parameter",
            ));
        }
    };
    if listed.is_empty() {
        return Err(ApiError::at(
            400,
            IssueType::Required,
            "the FHIRPath Patch has no operation parameters",
            "Parameters.parameter",
        ));
    }
    if listed.len() > MAX_OPERATIONS {
        return Err(too_many(listed.len()));
    }
    listed
        .iter()
        .enumerate()
        .map(|(index, parameter)| parse_operation(index, parameter))
        .collect::<Result<_, _>>()
        .map(PatchDocument::FhirPath)
}

fn parse_operation(index: usize, parameter: &Value) -> Result<FhirPathOperation, ApiError> {
    let at = format!("Parameters.parameter[{index}]");
    let malformed = |code: IssueType, message: String, expression: String| {
        ApiError::at(400, code, format!("FHIRPath Patch operation {index}: {message}"), expression)
    };
    let name = parameter.get("name").and_then(Value::as_str);
    if name != Some("operation") {
        return Err(malformed(
            IssueType::Invalid,
            format!(
                "a FHIRPath Patch has only parameters named 'operation', not {}",
                name.map_or("one without a name".to_string(), |n| format!("'{n}'"))
            ),
            format!("{at}.name"),
        ));
    }
    let parts = match parameter.get("part") {
        Some(Value::Array(parts)) => parts.as_slice(),
        _ => {
            return Err(malformed(
                IssueType::Required,
                "the operation has no parts".to_string(),
                format!("{at}.part"),
            ));
        }
    };
    let mut found: HashMap<&str, (usize, &Value)> = HashMap::new();
    for (position, part) in parts.iter().enumerate() {
        let part_at = format!("{at}.part[{position}]");
        let Some(part_name) = part.get("name").and_then(Value::as_str) else {
            return Err(malformed(
                IssueType::Required,
                "a part has no name".to_string(),
                format!("{part_at}.name"),
            ));
        };
        if !matches!(part_name, "type" | "path" | "name" | "value" | "index" | "source" | "destination") {
            return Err(malformed(
                IssueType::Invalid,
                format!(
                    "unknown part '{part_name}'; expected type, path, name, value, index, source or destination"
                ),
                format!("{part_at}.name"),
            ));
        }
        if found.insert(part_name, (position, part)).is_some() {
            return Err(malformed(
                IssueType::Invalid,
                format!("part '{part_name}' is given more than once"),
                format!("{part_at}.name"),
            ));
        }
    }
    let text = |part: &str| -> Result<Option<String>, ApiError> {
        let Some((position, value)) = found.get(part) else { return Ok(None) };
        match primitive_value(value) {
            Some(Value::String(text)) => Ok(Some(text.clone())),
            _ => Err(malformed(
                IssueType::Value,
                format!("part '{part}' needs a text value (valueCode or valueString)"),
                format!("{at}.part[{position}]"),
            )),
        }
    };
    let integer = |part: &str| -> Result<Option<usize>, ApiError> {
        let Some((position, value)) = found.get(part) else { return Ok(None) };
        match primitive_value(value).and_then(|v| v.as_u64()).and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(malformed(
                IssueType::Value,
                format!("part '{part}' needs a valueInteger of 0 or more"),
                format!("{at}.part[{position}]"),
            )),
        }
    };
    let kind = match text("type")?.as_deref() {
        Some("add") => Kind::Add,
        Some("insert") => Kind::Insert,
        Some("delete") => Kind::Delete,
        Some("replace") => Kind::Replace,
        Some("move") => Kind::Move,
        Some(other) => {
            return Err(malformed(
                IssueType::Value,
                format!("unknown type '{other}'; expected add, insert, delete, replace or move"),
                format!("{at}.part[{}]", found.get("type").map_or(0, |f| f.0)),
            ));
        }
        None => {
            return Err(malformed(
                IssueType::Required,
                "the operation has no type".to_string(),
                format!("{at}.part"),
            ));
        }
    };
    let Some(path_text) = text("path")? else {
        return Err(malformed(
            IssueType::Required,
            format!("({}) has no path", kind.name()),
            format!("{at}.part"),
        ));
    };
    let path = fhirpath::Expression::parse(&path_text).map_err(|error| {
        malformed(
            IssueType::Invalid,
            format!("({}) path '{path_text}' is not a FHIRPath expression: {error}", kind.name()),
            format!("{at}.part[{}]", found.get("path").map_or(0, |f| f.0)),
        )
    })?;
    let value = match found.get("value") {
        Some((position, part)) => Some(parse_value(part, &format!("{at}.part[{position}]"), index)?),
        None => None,
    };
    let operation = FhirPathOperation {
        index,
        kind,
        path,
        name: text("name")?,
        value,
        position: integer("index")?,
        source: integer("source")?,
        destination: integer("destination")?,
    };
    let needs: &[&str] = match kind {
        Kind::Add => &["name", "value"],
        Kind::Insert => &["value", "index"],
        Kind::Delete => &[],
        Kind::Replace => &["value"],
        Kind::Move => &["source", "destination"],
    };
    for part in needs {
        if !found.contains_key(part) {
            return Err(malformed(
                IssueType::Required,
                format!("({}) has no {part}", kind.name()),
                format!("{at}.part"),
            ));
        }
    }
    Ok(operation)
}

/// The `value[x]` of a part, whatever its type.
fn primitive_value(part: &Value) -> Option<&Value> {
    part.as_object()?.iter().find(|(key, _)| key.starts_with("value")).map(|(_, value)| value)
}

fn parse_value(part: &Value, at: &str, index: usize) -> Result<PatchValue, ApiError> {
    let malformed = |message: String| {
        ApiError::at(
            400,
            IssueType::Invalid,
            format!("FHIRPath Patch operation {index}: {message}"),
            at.to_string(),
        )
    };
    let Some(object) = part.as_object() else { return Err(malformed("a part is not an object".to_string())) };
    let name = object.get("name").and_then(Value::as_str).unwrap_or("");
    let mut values = Vec::new();
    for (key, value) in object {
        if let Some(suffix) = key.strip_prefix("value")
            && suffix.starts_with(|c: char| c.is_ascii_uppercase())
        {
            values.push(PatchValue::Typed { suffix: suffix.to_string(), json: value.clone() });
        } else if key == "resource" {
            if !value.get("resourceType").is_some_and(Value::is_string) {
                return Err(malformed(format!("the resource of part '{name}' has no resourceType")));
            }
            values.push(PatchValue::Resource(value.clone()));
        } else if key == "part" {
            let Some(children) = value.as_array() else {
                return Err(malformed(format!("part '{name}': part must be an array")));
            };
            let mut parsed = Vec::with_capacity(children.len());
            for (position, child) in children.iter().enumerate() {
                let child_at = format!("{at}.part[{position}]");
                let Some(child_name) = child.get("name").and_then(Value::as_str) else {
                    return Err(ApiError::at(
                        400,
                        IssueType::Required,
                        format!("FHIRPath Patch operation {index}: a part of '{name}' has no name"),
                        child_at,
                    ));
                };
                parsed.push((child_name.to_string(), parse_value(child, &child_at, index)?));
            }
            values.push(PatchValue::Parts(parsed));
        }
    }
    match values.len() {
        1 => Ok(values.remove(0)),
        0 => Err(malformed(format!("part '{name}' has no value: give a value[x], a resource or parts"))),
        _ => Err(malformed(format!(
            "part '{name}' has more than one value: give one of value[x], resource or part"
        ))),
    }
}

/// A step of a location in the resource's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// An element the path selected: where it is, and what the definitions say it is.
#[derive(Debug)]
struct Selected {
    location: Vec<Step>,
    /// Where its children are defined (`HumanName`, `Patient.contact`).
    root: &'static str,
    /// Whether it is an object (an element that can have children).
    is_object: bool,
}

/// Where every element of a resource is: each node's parent and its step from there.
struct Locations {
    parents: HashMap<*const Value, (*const Value, Step)>,
    root: *const Value,
}

impl Locations {
    fn of(resource: &Value) -> Locations {
        let mut parents = HashMap::new();
        let mut stack = vec![resource];
        while let Some(value) = stack.pop() {
            let parent: *const Value = value;
            match value {
                Value::Object(object) => {
                    for (key, child) in object {
                        parents.insert(child as *const Value, (parent, Step::Key(key.clone())));
                        stack.push(child);
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        parents.insert(child as *const Value, (parent, Step::Index(i)));
                        stack.push(child);
                    }
                }
                _ => {}
            }
        }
        Locations { parents, root: resource }
    }

    fn find(&self, node: *const Value) -> Option<Vec<Step>> {
        let mut steps = Vec::new();
        let mut current = node;
        while current != self.root {
            let (parent, step) = self.parents.get(&current)?;
            steps.push(step.clone());
            current = *parent;
        }
        steps.reverse();
        Some(steps)
    }
}

fn object_at_mut<'v>(resource: &'v mut Value, location: &[Step]) -> Option<&'v mut Value> {
    let mut current = resource;
    for step in location {
        current = match (step, current) {
            (Step::Key(key), Value::Object(object)) => object.get_mut(key)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Where the children of the object at `location` are defined, by the definitions from the
/// resource type down (a contained resource by its own type).
fn root_at(resource: &Value, location: &[Step]) -> Option<&'static str> {
    let defs = definitions();
    let mut value = resource;
    let mut root: &'static str = defs.type_def(resource.get("resourceType")?.as_str()?)?.name;
    for step in location {
        match (step, value) {
            (Step::Key(key), Value::Object(object)) => {
                let child = defs.child(root, key)?;
                root = defs.children_root(child.element, child.type_code);
                value = object.get(key)?;
            }
            (Step::Index(i), Value::Array(items)) => value = items.get(*i)?,
            _ => return None,
        }
        if let Some(own) = value.get("resourceType").and_then(Value::as_str).and_then(|t| defs.type_def(t)) {
            root = own.name;
        }
    }
    Some(root)
}

/// `a.b.name` -> (`a.b`, `name`), when the path ends in a plain member name.
fn split_last_member(path: &str) -> Option<(&str, &str)> {
    let (parent, name) = path.trim().rsplit_once('.')?;
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (plain && !parent.trim().is_empty()).then_some((parent, name))
}

/// How a child element is written under an object: its JSON key, and whether it repeats.
struct ChildSlot {
    key: String,
    repeats: bool,
    /// Where the child's own children are defined, for a value given as parts.
    root: Option<&'static str>,
}

/// The JSON key for child `name` of an object rooted at `root`, holding `value`: a choice
/// element (`value`) takes the value's type (`valueQuantity`).
fn child_slot(root: &str, name: &str, value: Option<&PatchValue>) -> Result<ChildSlot, String> {
    let defs = definitions();
    if root.is_empty() {
        return Ok(ChildSlot { key: name.to_string(), repeats: false, root: None });
    }
    match defs.member(root, name) {
        Some(Member::Choice(element)) => {
            let Some(PatchValue::Typed { suffix, .. }) = value else {
                return Err(format!(
                    "'{name}' is a choice of types: give the value as value[x] with its type"
                ));
            };
            let key = format!("{name}{suffix}");
            let Some(chosen) = element.types.iter().find(|t| choice_key(name, t.code) == key) else {
                let allowed: Vec<String> =
                    element.types.iter().map(|t| choice_key("value", t.code)).collect();
                return Err(format!(
                    "{} cannot be a {suffix}; allowed: {}",
                    element.path,
                    allowed.join(", ")
                ));
            };
            Ok(ChildSlot {
                key,
                repeats: element.max != Some(1),
                root: Some(defs.children_root(element, Some(chosen.code))),
            })
        }
        Some(Member::Child(child)) => Ok(ChildSlot {
            key: name.to_string(),
            repeats: child.element.max != Some(1),
            root: Some(defs.children_root(child.element, child.type_code)),
        }),
        None => Err(format!("{root} has no element '{name}'")),
    }
}

/// The JSON of a value, its parts built into an object rooted at `root`.
fn value_json(value: &PatchValue, root: Option<&str>) -> Result<Value, String> {
    match value {
        PatchValue::Typed { json, .. } => Ok(json.clone()),
        PatchValue::Resource(json) => Ok(json.clone()),
        PatchValue::Parts(parts) => {
            let mut object = Map::new();
            for (name, part) in parts {
                let slot = match root {
                    Some(root) => child_slot(root, name, Some(part))?,
                    None => ChildSlot { key: name.clone(), repeats: false, root: None },
                };
                let json = value_json(part, slot.root)?;
                if slot.repeats {
                    match object.entry(slot.key).or_insert_with(|| Value::Array(Vec::new())) {
                        Value::Array(items) => items.push(json),
                        _ => return Err(format!("'{name}' is given as one value and as a list")),
                    }
                } else if object.insert(slot.key, json).is_some() {
                    return Err(format!("'{name}' is given more than once but does not repeat"));
                }
            }
            Ok(Value::Object(object))
        }
    }
}

impl FhirPathOperation {
    fn fail(&self, message: impl std::fmt::Display) -> ApiError {
        ApiError::at(
            422,
            IssueType::Processing,
            format!("FHIRPath Patch operation {} ({}): {message}", self.index, self.kind.name()),
            format!("Parameters.parameter[{}]", self.index),
        )
    }

    fn path_text(&self) -> &str {
        self.path.source()
    }

    fn apply(&self, resource: &mut Value) -> Result<(), ApiError> {
        let selected = self.select(resource, &self.path)?;
        match self.kind {
            Kind::Replace => self.replace(resource, selected),
            Kind::Delete => self.delete(resource, selected),
            Kind::Add => self.add(resource, selected),
            Kind::Insert => self.insert(resource, selected),
            Kind::Move => self.move_within(resource, selected),
        }
    }

    /// The elements `path` selects, each located in the resource. A value that is not an
    /// element of the resource (a function's result) cannot be changed.
    fn select(&self, resource: &Value, path: &fhirpath::Expression) -> Result<Vec<Selected>, ApiError> {
        let environment = fhirpath::Environment::default();
        let results = path.evaluate(resource, &environment).map_err(|error| {
            self.fail(format!("path '{}' could not be evaluated: {error}", path.source()))
        })?;
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let locations = Locations::of(resource);
        let mut selected = Vec::with_capacity(results.len());
        for result in &results {
            let located = match result {
                fhirpath::Value::Node(node) => match (node.json, node.sidecar) {
                    (Some(json), _) => locations.find(json).map(|l| (l, node.root, json.is_object())),
                    // A primitive with only extensions: its `_name` sibling, named as the element.
                    (None, Some(sidecar)) => {
                        locations.find(sidecar).and_then(sidecar_location).map(|l| (l, node.root, false))
                    }
                    (None, None) => None,
                },
                _ => None,
            };
            let Some((location, root, is_object)) = located else {
                return Err(self.fail(format!(
                    "path '{}' selects {}, which is not an element of the resource",
                    path.source(),
                    result.display()
                )));
            };
            selected.push(Selected { location, root, is_object });
        }
        Ok(selected)
    }

    fn single(&self, selected: Vec<Selected>) -> Result<Selected, ApiError> {
        match <[Selected; 1]>::try_from(selected) {
            Ok([one]) => Ok(one),
            Err(selected) if selected.is_empty() => {
                Err(self.fail(format!("path '{}' matches no element", self.path_text())))
            }
            Err(selected) => Err(self.fail(format!(
                "path '{}' matches {} elements; it must select exactly one",
                self.path_text(),
                selected.len()
            ))),
        }
    }

    fn value(&self) -> Result<&PatchValue, ApiError> {
        self.value.as_ref().ok_or_else(|| self.fail("no value"))
    }

    fn replace(&self, resource: &mut Value, selected: Vec<Selected>) -> Result<(), ApiError> {
        let target = self.single(selected)?;
        let value = self.value()?;
        let new = value_json(value, target.is_object.then_some(target.root)).map_err(|why| self.fail(why))?;
        let Some((last, parent_location)) = target.location.split_last() else {
            return Err(self.fail("the whole resource cannot be replaced; use PUT"));
        };
        // A choice element takes the key of the new value's type (`valueQuantity` ->
        // `valueString`).
        let mut renamed = None;
        if let (Step::Key(key), PatchValue::Typed { suffix, .. }) = (last, value)
            && let Some(parent_root) = root_at(resource, parent_location)
            && let Some(child) = definitions().child(parent_root, key)
            && let Some(stem) = child.element.path.rsplit('.').next().and_then(|n| n.strip_suffix("[x]"))
        {
            let new_key = format!("{stem}{suffix}");
            if !child.element.types.iter().any(|t| choice_key(stem, t.code) == new_key) {
                return Err(self.fail(format!("{} cannot be a {suffix}", child.element.path)));
            }
            if new_key != *key {
                renamed = Some(new_key);
            }
        }
        let parent =
            object_at_mut(resource, parent_location).ok_or_else(|| self.fail("the element moved"))?;
        match (last, parent) {
            (Step::Key(key), Value::Object(object)) => match renamed {
                Some(new_key) => {
                    // Rebuilt so that the element keeps its place among its siblings.
                    let old = std::mem::take(object);
                    for (k, v) in old {
                        if k == *key {
                            object.insert(new_key.clone(), new.clone());
                        } else if k != format!("_{key}") {
                            object.insert(k, v);
                        }
                    }
                }
                None => {
                    object.insert(key.clone(), new);
                }
            },
            (Step::Index(i), Value::Array(items)) if *i < items.len() => items[*i] = new,
            _ => {
                return Err(self.fail(format!(
                    "path '{}' selects an element that cannot be replaced",
                    self.path_text()
                )));
            }
        }
        Ok(())
    }

    fn delete(&self, resource: &mut Value, selected: Vec<Selected>) -> Result<(), ApiError> {
        if selected.is_empty() {
            // The specification: deleting what is not there changes nothing.
            return Ok(());
        }
        let target = self.single(selected)?;
        let Some((last, parent_location)) = target.location.split_last() else {
            return Err(self.fail("the whole resource cannot be deleted; use DELETE"));
        };
        match last {
            Step::Key(key) => {
                let Some(Value::Object(object)) = object_at_mut(resource, parent_location) else {
                    return Err(self.fail("the element moved"));
                };
                object.shift_remove(key);
                object.shift_remove(&format!("_{key}"));
            }
            Step::Index(i) => {
                let Some((Step::Key(key), owner_location)) = parent_location.split_last() else {
                    return Err(self.fail(format!(
                        "path '{}' selects an element that cannot be deleted",
                        self.path_text()
                    )));
                };
                let Some(Value::Object(owner)) = object_at_mut(resource, owner_location) else {
                    return Err(self.fail("the element moved"));
                };
                for list_key in [key.clone(), format!("_{key}")] {
                    if let Some(Value::Array(items)) = owner.get_mut(&list_key)
                        && *i < items.len()
                    {
                        items.remove(*i);
                    }
                }
            }
        }
        prune(resource, parent_location);
        Ok(())
    }

    fn add(&self, resource: &mut Value, selected: Vec<Selected>) -> Result<(), ApiError> {
        let target = self.single(selected)?;
        if !target.is_object {
            return Err(self.fail(format!(
                "path '{}' selects a primitive value; add needs the element to add to (use replace to change a value)",
                self.path_text()
            )));
        }
        let name = self.name.as_deref().ok_or_else(|| self.fail("no name"))?;
        let value = self.value()?;
        let slot = child_slot(target.root, name, Some(value)).map_err(|why| self.fail(why))?;
        let new = value_json(value, slot.root).map_err(|why| self.fail(why))?;
        let Some(Value::Object(object)) = object_at_mut(resource, &target.location) else {
            return Err(self.fail("the element moved"));
        };
        if slot.repeats {
            match object.entry(slot.key.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(new),
                _ => return Err(self.fail(format!("'{}' is stored as a single value, not a list", slot.key))),
            }
            // Keep a primitive list's extensions aligned with its values.
            if let Some(Value::Array(extensions)) = object.get_mut(&format!("_{}", slot.key)) {
                extensions.push(Value::Null);
            }
        } else {
            if object.contains_key(&slot.key) {
                return Err(self.fail(format!(
                    "'{}' already has a {}; it does not repeat, so use replace",
                    self.path_text(),
                    slot.key
                )));
            }
            object.insert(slot.key, new);
        }
        Ok(())
    }

    /// The list a path names (for insert and move): the owner's location, the list's key,
    /// and where its elements' children are defined. An empty list is found through its
    /// parent (`Patient.identifier` when the Patient has none).
    fn list(
        &self,
        resource: &Value,
        selected: Vec<Selected>,
    ) -> Result<(Vec<Step>, String, Option<&'static str>), ApiError> {
        let not_a_list =
            || self.fail(format!("path '{}' does not name a list (a repeating element)", self.path_text()));
        let Some(first) = selected.first() else {
            let Some((parent_text, name)) = split_last_member(self.path_text()) else {
                return Err(self.fail(format!("path '{}' matches no element", self.path_text())));
            };
            let parent_path = fhirpath::Expression::parse(parent_text)
                .map_err(|_| self.fail(format!("path '{}' matches no element", self.path_text())))?;
            let owner = self.single(self.select(resource, &parent_path)?)?;
            if !owner.is_object {
                return Err(not_a_list());
            }
            let slot = child_slot(owner.root, name, self.value.as_ref()).map_err(|why| self.fail(why))?;
            if !slot.repeats {
                return Err(not_a_list());
            }
            return Ok((owner.location, slot.key, slot.root));
        };
        let root = first.is_object.then_some(first.root);
        let Some((Step::Index(_), list_location)) = first.location.split_last() else {
            return Err(not_a_list());
        };
        let Some((Step::Key(key), owner_location)) = list_location.split_last() else {
            return Err(not_a_list());
        };
        let mut indices = Vec::with_capacity(selected.len());
        for item in &selected {
            match item.location.split_last() {
                Some((Step::Index(i), location)) if location == list_location => indices.push(*i),
                _ => {
                    return Err(self.fail(format!(
                        "path '{}' selects elements of more than one list",
                        self.path_text()
                    )));
                }
            }
        }
        // A path that selects some of a list's elements (a where() filter) names those
        // elements, not the list: where an insert or move would land is then unclear.
        let Some(Value::Object(owner)) = object_at(resource, owner_location) else {
            return Err(not_a_list());
        };
        // An item is there when it has a value or (a primitive's) extensions.
        let extensions = owner.get(&format!("_{key}")).and_then(Value::as_array);
        let present: Vec<usize> = match owner.get(key) {
            Some(Value::Array(items)) => (0..items.len())
                .filter(|&i| {
                    !items[i].is_null() || extensions.and_then(|e| e.get(i)).is_some_and(|e| !e.is_null())
                })
                .collect(),
            _ => Vec::new(),
        };
        indices.sort_unstable();
        if indices != present {
            return Err(self.fail(format!(
                "path '{}' selects some elements of {key}, not the whole list; name the list itself",
                self.path_text()
            )));
        }
        Ok((owner_location.to_vec(), key.clone(), root))
    }

    fn insert(&self, resource: &mut Value, selected: Vec<Selected>) -> Result<(), ApiError> {
        let (owner_location, key, root) = self.list(resource, selected)?;
        let new = value_json(self.value()?, root).map_err(|why| self.fail(why))?;
        let position = self.position.ok_or_else(|| self.fail("no index"))?;
        let Some(Value::Object(owner)) = object_at_mut(resource, &owner_location) else {
            return Err(self.fail("the element moved"));
        };
        let items = match owner.entry(key.clone()).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items,
            _ => return Err(self.fail(format!("'{key}' is not a list"))),
        };
        if position > items.len() {
            return Err(
                self.fail(format!("index {position} is beyond the end of {key} (length {})", items.len()))
            );
        }
        items.insert(position, new);
        if let Some(Value::Array(extensions)) = owner.get_mut(&format!("_{key}"))
            && position <= extensions.len()
        {
            extensions.insert(position, Value::Null);
        }
        Ok(())
    }

    fn move_within(&self, resource: &mut Value, selected: Vec<Selected>) -> Result<(), ApiError> {
        if selected.is_empty() {
            return Err(self.fail(format!("path '{}' matches no element", self.path_text())));
        }
        let (owner_location, key, _) = self.list(resource, selected)?;
        let (source, destination) = match (self.source, self.destination) {
            (Some(source), Some(destination)) => (source, destination),
            _ => return Err(self.fail("no source or destination")),
        };
        let Some(Value::Object(owner)) = object_at_mut(resource, &owner_location) else {
            return Err(self.fail("the element moved"));
        };
        for list_key in [key.clone(), format!("_{key}")] {
            let Some(Value::Array(items)) = owner.get_mut(&list_key) else { continue };
            let length = items.len();
            if source >= length || destination >= length {
                return Err(self.fail(format!(
                    "source {source} and destination {destination} must both be below the length of {key} ({length})"
                )));
            }
            let item = items.remove(source);
            items.insert(destination, item);
        }
        Ok(())
    }
}

fn object_at<'v>(resource: &'v Value, location: &[Step]) -> Option<&'v Value> {
    let mut current = resource;
    for step in location {
        current = match (step, current) {
            (Step::Key(key), Value::Object(object)) => object.get(key)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The location of a primitive's `_name` sibling, as the location of the element itself.
fn sidecar_location(mut location: Vec<Step>) -> Option<Vec<Step>> {
    let at = location.iter().rposition(|s| matches!(s, Step::Key(_)))?;
    if let Step::Key(key) = &mut location[at] {
        *key = key.strip_prefix('_')?.to_string();
    }
    Some(location)
}

/// Removes what a deletion left empty, from `location` up: FHIR has no empty elements (an
/// object without members, a list without items), and the resource itself stays.
fn prune(resource: &mut Value, location: &[Step]) {
    let mut location = location.to_vec();
    while let Some((last, parent)) = location.split_last() {
        let empty = match object_at(resource, &location) {
            Some(Value::Object(object)) => object.is_empty(),
            Some(Value::Array(items)) => items.iter().all(Value::is_null),
            _ => false,
        };
        if !empty {
            return;
        }
        match (last, object_at_mut(resource, parent)) {
            (Step::Key(key), Some(Value::Object(object))) => {
                object.shift_remove(key);
            }
            (Step::Index(i), Some(Value::Array(items))) if *i < items.len() => {
                items.remove(*i);
            }
            _ => return,
        }
        location = parent.to_vec();
    }
}

// ---------------------------------------------------------------------------------------
// The interaction
// ---------------------------------------------------------------------------------------

/// A patched resource and the version it was made from.
pub(crate) struct Patched {
    pub resource: Resource,
    pub version: u64,
}

impl Patched {
    /// The update that stores it: prepared as any update is, and committed only if the
    /// resource is still at the version the patch was applied to.
    pub(crate) fn into_update(self, id: &str, validation: Validation) -> Result<WriteOp, ApiError> {
        prepare_update(&self.resource, id, Some(etag(self.version).as_str()), validation)
    }
}

impl Api {
    /// `PATCH [type]/[id]` (`id` given) or `PATCH [type]?[search]`.
    pub(crate) async fn patch(
        &self,
        request: &Request,
        gate: &Gate,
        resource_type: &str,
        id: Option<&str>,
    ) -> Result<Response, ApiError> {
        let document = PatchDocument::from_body(request.content_type.as_deref(), &request.body)?;
        let preference = Prefer::parse(request.prefer.as_deref()).return_preference.unwrap_or_default();
        let mut attempt = 0;
        loop {
            let id = match id {
                Some(id) => id.to_string(),
                None => self.conditional_patch_target(gate, resource_type, &request.query, &request.base)?,
            };
            let patched = self.patched(
                gate,
                resource_type,
                &id,
                &document,
                request.if_match.as_deref(),
                &request.base,
            )?;
            match self.commit_one(patched.into_update(&id, self.config.validation)?).await {
                Ok(written) => return Ok(complete(&request.base, written, preference, gate)),
                Err(error) if error.status == 412 && request.if_match.is_none() && attempt < RETRIES => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The one resource a conditional patch's search finds (through the caller's gate):
    /// none is a 404, several a 412.
    pub(crate) fn conditional_patch_target(
        &self,
        gate: &Gate,
        resource_type: &str,
        query: &str,
        base: &str,
    ) -> Result<String, ApiError> {
        let matches = self.resolve_condition(gate, resource_type, query, base)?;
        match matches.as_slice() {
            [found] => Ok(found.id.clone()),
            [] => {
                Err(ApiError::not_found(format!("no {resource_type} matches '{query}'; nothing was patched")))
            }
            _ => Err(ApiError::new(
                412,
                IssueType::MultipleMatches,
                format!(
                    "'{resource_type}?{query}' matches more than one resource; a conditional patch changes one"
                ),
            )),
        }
    }

    /// Reads `resource_type/id`, asks the gate, checks `If-Match`, and applies the patch.
    pub(crate) fn patched(
        &self,
        gate: &Gate,
        resource_type: &str,
        id: &str,
        document: &PatchDocument,
        if_match: Option<&str>,
        base: &str,
    ) -> Result<Patched, ApiError> {
        let record = self.store.read(resource_type, id)?.ok_or_else(|| {
            ApiError::not_found(format!("{resource_type}/{id} is not known; a patch changes what exists"))
        })?;
        // The caller may change only what they may see, and learn nothing of the rest (not
        // even its version, through a 412).
        self.admit_version(gate, &record)?;
        if let Some(body) = &record.body
            && let Ok(current) = serde_json::from_slice::<serde_json::Value>(body)
        {
            crate::write::check_not_workflow(resource_type, &current)?;
        }
        let Some(body) = &record.body else {
            return Err(ApiError {
                status: 410,
                etag: Some(etag(record.version)),
                ..ApiError::new(
                    410,
                    IssueType::Deleted,
                    format!(
                        "{resource_type}/{id} was deleted (version {}); a patch changes what exists",
                        record.version
                    ),
                )
            });
        };
        if let Some(if_match) = if_match
            && let store::Precondition::Versions(versions) = parse_if_match(if_match)?
            && !versions.contains(&record.version)
        {
            let expected: Vec<String> = versions.iter().map(u64::to_string).collect();
            return Err(ApiError::new(
                412,
                IssueType::Conflict,
                format!(
                    "{resource_type}/{id} is at version {}, not the expected version {}",
                    record.version,
                    expected.join(" or ")
                ),
            ));
        }
        let current = fhir::parse_json(body)?;
        let patched = document.apply(current)?;
        let changed = |element: &str, now: Option<&Value>, before: &str| {
            ApiError::at(
                422,
                IssueType::Invalid,
                format!(
                    "the patch changes the {element} from '{before}' to {}; a resource's {element} cannot be changed",
                    now.map_or_else(|| "nothing".to_string(), brief)
                ),
                element.to_string(),
            )
        };
        if patched.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
            return Err(changed("resourceType", patched.get("resourceType"), resource_type));
        }
        if patched.get("id").and_then(Value::as_str) != Some(id) {
            return Err(changed("id", patched.get("id"), id));
        }
        let mut resource = Resource::from_value(patched)
            .map_err(|error| ApiError { status: 422, ..ApiError::from(error) })?;
        localize_references(&mut resource, base);
        Ok(Patched { resource, version: record.version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_patch(operations: Value) -> PatchDocument {
        PatchDocument::from_body(Some(JSON_PATCH), operations.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn pointers_unescape_and_refuse_bad_escapes() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_pointer("/a~1b/m~0n/0").unwrap(), vec!["a/b", "m~n", "0"]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a~2").is_err());
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("-"), None);
    }

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(number_key("1.0"), number_key("1"));
        assert_eq!(number_key("100"), number_key("1e2"));
        assert_eq!(number_key("-0.0"), number_key("0"));
        assert_ne!(number_key("1.5"), number_key("15"));
        assert!(json_equal(&json!({"a": [1.50], "b": 2}), &json!({"b": 2.0, "a": [1.5]})));
    }

    #[test]
    fn every_json_patch_operation() {
        let resource = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "A"}], "a/b": 1});
        let patched = json_patch(json!([
            {"op": "test", "path": "/name/0/family", "value": "A"},
            {"op": "add", "path": "/name/-", "value": {"family": "B"}},
            {"op": "copy", "from": "/name/1", "path": "/name/0"},
            {"op": "replace", "path": "/name/0/family", "value": "C"},
            {"op": "move", "from": "/a~1b", "path": "/x"},
            {"op": "remove", "path": "/x"}
        ]))
        .apply(resource)
        .unwrap();
        assert_eq!(
            patched,
            json!({"resourceType": "Patient", "id": "p", "name": [{"family": "C"}, {"family": "A"}, {"family": "B"}]})
        );
    }

    #[test]
    fn copies_cannot_deepen_a_resource_without_bound() {
        let operations: Vec<Value> =
            (0..200).map(|_| json!({"op": "copy", "from": "", "path": "/contained"})).collect();
        let error = json_patch(Value::Array(operations))
            .apply(json!({"resourceType": "Patient", "id": "p"}))
            .unwrap_err();
        assert_eq!(error.status, 422);
        assert!(error.message().contains("levels deep"), "{}", error.message());
    }

    #[test]
    fn last_member_of_a_path() {
        assert_eq!(split_last_member("Patient.identifier"), Some(("Patient", "identifier")));
        assert_eq!(split_last_member("Patient.where(x='a.b')"), None);
        assert_eq!(split_last_member("identifier"), None);
    }
}
