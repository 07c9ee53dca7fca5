//! The FHIR terminology operations (`CodeSystem/$lookup`, `ValueSet/$validate-code`,
//! `ValueSet/$expand`, `CodeSystem/$subsumes`): typed requests read from query parameters or a
//! `Parameters` resource, and results rendered as the R4 OperationDefinitions prescribe; plus
//! the plain calls the rest of the server uses for bindings, FHIRPath and search.

use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::FxHasher;
use serde_json::{Map, Value, json};

use fhir::parameters::{Input, Inputs};

use crate::Error;
use crate::expand::{Expander, Member, MemberCode, Membership, Policy, TextFilter};
use crate::r4::{self, Designation, PropertyValue, ValueSetDef};
use crate::registry::{
    Engine, NoResolver, Resolver, System, Terminology, ValueSetRef, compose_json, designation_json,
};

/// Expansions larger than this are refused unless the client pages with `count`.
pub const EXPANSION_LIMIT: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Operation parameters

/// A Coding given to an operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

impl Coding {
    /// Reads a FHIR Coding.
    pub fn from_json(value: &Value) -> Coding {
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        Coding {
            system: text("system"),
            version: text("version"),
            code: text("code"),
            display: text("display"),
        }
    }

    /// Reads the query form `system|code` (a bare `code` has no system).
    fn from_token(token: &str) -> Coding {
        let (system, code) = match token.split_once('|') {
            Some((system, code)) => (Some(system.to_owned()).filter(|s| !s.is_empty()), code),
            None => (None, token),
        };
        Coding { system, code: Some(code.to_owned()).filter(|c| !c.is_empty()), ..Coding::default() }
    }
}

/// Parameters that change what an operation means and that this server does not implement;
/// ignoring them would give a wrong answer rather than a partial one.
const UNSUPPORTED: [&str; 4] =
    ["context", "contextDirection", "check-system-version", "force-system-version"];

/// The terminology operations' reading of the common operation inputs, beyond the simple
/// values `Inputs` reads itself.
trait TerminologyInputs {
    fn refuse_unsupported(&self) -> Result<(), Error>;
    fn coding(&self, name: &str) -> Result<Option<Coding>, Error>;
    fn codeable_concept(&self, name: &str) -> Result<Option<Vec<Coding>>, Error>;
    fn resource(&self, name: &str) -> Result<Option<Value>, Error>;
}

impl TerminologyInputs for Inputs {
    fn refuse_unsupported(&self) -> Result<(), Error> {
        match self.names().find(|name| UNSUPPORTED.contains(name)) {
            Some(name) => Err(Error::Invalid(format!("the parameter {name} is not supported"))),
            None => Ok(()),
        }
    }

    fn coding(&self, name: &str) -> Result<Option<Coding>, Error> {
        Ok(match self.one(name)? {
            None => None,
            Some(Input::Text(t)) => Some(Coding::from_token(t)),
            Some(Input::Json(v)) => Some(Coding::from_json(v)),
        })
    }

    fn codeable_concept(&self, name: &str) -> Result<Option<Vec<Coding>>, Error> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Json(v)) => {
                Ok(Some(v["coding"].as_array().into_iter().flatten().map(Coding::from_json).collect()))
            }
            Some(Input::Text(_)) => {
                Err(Error::Invalid(format!("the parameter {name} must be a CodeableConcept")))
            }
        }
    }

    fn resource(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Json(v)) => Ok(Some(v.clone())),
            Some(Input::Text(_)) => Err(Error::Invalid(format!("the parameter {name} must be a resource"))),
        }
    }
}

/// Inputs from the query string.
fn query_inputs(pairs: &[(String, String)]) -> Result<Inputs, Error> {
    let inputs = Inputs::from_query(pairs);
    inputs.refuse_unsupported()?;
    Ok(inputs)
}

/// Inputs from a Parameters body.
fn parameters_inputs(parameters: &Value) -> Result<Inputs, Error> {
    let inputs = Inputs::from_parameters(parameters)?;
    inputs.refuse_unsupported()?;
    Ok(inputs)
}

fn parameters(parameter: Vec<Value>) -> Value {
    json!({ "resourceType": "Parameters", "parameter": parameter })
}

fn parameter(name: &str, key: &str, value: impl Into<Value>) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), name.into());
    out.insert(key.into(), value.into());
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// $lookup

/// `CodeSystem/$lookup` input.
#[derive(Clone, Debug, Default)]
pub struct LookupRequest {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub coding: Option<Coding>,
    /// Properties to return; empty means all that are available.
    pub properties: Vec<String>,
    pub display_language: Option<String>,
}

impl LookupRequest {
    pub fn from_query(pairs: &[(String, String)]) -> Result<LookupRequest, Error> {
        Self::from_inputs(&query_inputs(pairs)?)
    }

    pub fn from_parameters(parameters: &Value) -> Result<LookupRequest, Error> {
        Self::from_inputs(&parameters_inputs(parameters)?)
    }

    /// The request from an operation's inputs (the one reader every operation uses).
    pub fn from_inputs(inputs: &Inputs) -> Result<LookupRequest, Error> {
        inputs.refuse_unsupported()?;
        Ok(LookupRequest {
            system: inputs.text("system")?,
            version: inputs.text("version")?,
            code: inputs.text("code")?,
            coding: inputs.coding("coding")?,
            properties: inputs.texts("property")?,
            display_language: inputs.text("displayLanguage")?,
        })
    }
}

/// One `property` of a `$lookup` result.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupProperty {
    pub code: String,
    pub value: PropertyValue,
    /// For a code value, that code's display.
    pub description: Option<String>,
}

/// `CodeSystem/$lookup` output.
#[derive(Clone, Debug)]
pub struct LookupResult {
    pub name: String,
    pub version: Option<String>,
    pub display: String,
    pub designations: Vec<Designation>,
    pub properties: Vec<LookupProperty>,
}

impl LookupResult {
    /// The result as the operation's `Parameters` resource.
    pub fn to_parameters(&self) -> Value {
        let mut out = vec![parameter("name", "valueString", self.name.as_str())];
        if let Some(version) = &self.version {
            out.push(parameter("version", "valueString", version.as_str()));
        }
        out.push(parameter("display", "valueString", self.display.as_str()));
        for designation in &self.designations {
            let mut part = Vec::new();
            if let Some(language) = &designation.language {
                part.push(parameter("language", "valueCode", language.as_str()));
            }
            if let Some((system, code)) = &designation.usage {
                part.push(parameter("use", "valueCoding", json!({ "system": system, "code": code })));
            }
            part.push(parameter("value", "valueString", designation.value.as_str()));
            out.push(json!({ "name": "designation", "part": part }));
        }
        for property in &self.properties {
            let (key, value) = property.value.json_member();
            let mut part =
                vec![parameter("code", "valueCode", property.code.as_str()), parameter("value", key, value)];
            if let Some(description) = &property.description {
                part.push(parameter("description", "valueString", description.as_str()));
            }
            out.push(json!({ "name": "property", "part": part }));
        }
        parameters(out)
    }
}

// ---------------------------------------------------------------------------------------------
// $validate-code

/// `ValueSet/$validate-code` input.
#[derive(Clone, Debug, Default)]
pub struct ValidateCodeRequest {
    pub url: Option<String>,
    /// A ValueSet resource given in the request (or the instance the operation is invoked on).
    pub value_set: Option<Value>,
    pub value_set_version: Option<String>,
    pub code: Option<String>,
    pub system: Option<String>,
    pub system_version: Option<String>,
    pub display: Option<String>,
    pub coding: Option<Coding>,
    pub codeable_concept: Option<Vec<Coding>>,
    /// Whether abstract (`notSelectable`) concepts count as valid; false unless asked.
    pub abstract_ok: bool,
    pub display_language: Option<String>,
}

impl ValidateCodeRequest {
    pub fn from_query(pairs: &[(String, String)]) -> Result<ValidateCodeRequest, Error> {
        Self::from_inputs(&query_inputs(pairs)?)
    }

    pub fn from_parameters(parameters: &Value) -> Result<ValidateCodeRequest, Error> {
        Self::from_inputs(&parameters_inputs(parameters)?)
    }

    /// The request from an operation's inputs (the one reader every operation uses).
    pub fn from_inputs(inputs: &Inputs) -> Result<ValidateCodeRequest, Error> {
        inputs.refuse_unsupported()?;
        Ok(ValidateCodeRequest {
            url: inputs.text("url")?,
            value_set: inputs.resource("valueSet")?,
            value_set_version: inputs.text("valueSetVersion")?,
            code: inputs.text("code")?,
            system: inputs.text("system")?,
            system_version: inputs.text("systemVersion")?,
            display: inputs.text("display")?,
            coding: inputs.coding("coding")?,
            codeable_concept: inputs.codeable_concept("codeableConcept")?,
            abstract_ok: inputs.boolean("abstract")?.unwrap_or(false),
            display_language: inputs.text("displayLanguage")?,
        })
    }
}

/// `ValueSet/$validate-code` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidateCodeResult {
    pub result: bool,
    /// Why the result is false, or a hint or warning when it is true.
    pub message: Option<String>,
    /// The code's preferred display.
    pub display: Option<String>,
}

impl ValidateCodeResult {
    pub fn to_parameters(&self) -> Value {
        let mut out = vec![parameter("result", "valueBoolean", self.result)];
        if let Some(message) = &self.message {
            out.push(parameter("message", "valueString", message.as_str()));
        }
        if let Some(display) = &self.display {
            out.push(parameter("display", "valueString", display.as_str()));
        }
        parameters(out)
    }
}

// ---------------------------------------------------------------------------------------------
// $expand

/// `ValueSet/$expand` input.
#[derive(Clone, Debug, Default)]
pub struct ExpandRequest {
    pub url: Option<String>,
    /// A ValueSet resource given in the request (or the instance the operation is invoked on).
    pub value_set: Option<Value>,
    pub value_set_version: Option<String>,
    /// Text filter: every word must begin a word of the display (case-insensitive).
    pub filter: Option<String>,
    pub count: Option<usize>,
    pub offset: usize,
    pub include_designations: bool,
    pub include_definition: bool,
    pub active_only: bool,
    /// `Some(false)` asks for abstract concepts too (marked `abstract`); they are left out
    /// otherwise.
    pub exclude_not_for_ui: Option<bool>,
    pub display_language: Option<String>,
}

impl ExpandRequest {
    pub fn from_query(pairs: &[(String, String)]) -> Result<ExpandRequest, Error> {
        Self::from_inputs(&query_inputs(pairs)?)
    }

    pub fn from_parameters(parameters: &Value) -> Result<ExpandRequest, Error> {
        Self::from_inputs(&parameters_inputs(parameters)?)
    }

    /// The request from an operation's inputs (the one reader every operation uses).
    pub fn from_inputs(inputs: &Inputs) -> Result<ExpandRequest, Error> {
        inputs.refuse_unsupported()?;
        Ok(ExpandRequest {
            url: inputs.text("url")?,
            value_set: inputs.resource("valueSet")?,
            value_set_version: inputs.text("valueSetVersion")?,
            filter: inputs.text("filter")?,
            count: inputs.count("count")?,
            offset: inputs.count("offset")?.unwrap_or(0),
            include_designations: inputs.boolean("includeDesignations")?.unwrap_or(false),
            include_definition: inputs.boolean("includeDefinition")?.unwrap_or(false),
            active_only: inputs.boolean("activeOnly")?.unwrap_or(false),
            exclude_not_for_ui: inputs.boolean("excludeNotForUI")?,
            display_language: inputs.text("displayLanguage")?,
        })
    }
}

/// One code of an expansion (`ValueSet.expansion.contains`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpansionEntry {
    pub system: String,
    pub is_abstract: bool,
    pub is_inactive: bool,
    pub code: String,
    pub display: Option<String>,
    pub designations: Vec<Designation>,
}

/// `ValueSet/$expand` output: the value set's metadata and one page of its expansion.
#[derive(Clone, Debug)]
pub struct Expansion {
    pub id: Option<String>,
    pub url: Option<String>,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    /// `ValueSet.compose`, when the request asked for the definition.
    pub compose: Option<Value>,
    pub identifier: String,
    pub timestamp: String,
    /// The number of codes in the whole expansion.
    pub total: usize,
    pub offset: usize,
    /// `expansion.parameter` entries, each `{"name": .., "value[x]": ..}`.
    pub parameters: Vec<Value>,
    pub contains: Vec<ExpansionEntry>,
}

impl Expansion {
    /// The result as a ValueSet resource with `expansion`.
    pub fn to_value_set(&self) -> Value {
        let mut out = Map::new();
        out.insert("resourceType".into(), "ValueSet".into());
        let fields = [
            ("id", &self.id),
            ("url", &self.url),
            ("version", &self.version),
            ("name", &self.name),
            ("title", &self.title),
            ("status", &self.status),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                out.insert(key.into(), value.as_str().into());
            }
        }
        if let Some(compose) = &self.compose {
            out.insert("compose".into(), compose.clone());
        }
        let contains: Vec<Value> = self
            .contains
            .iter()
            .map(|entry| {
                let mut item = Map::new();
                item.insert("system".into(), entry.system.as_str().into());
                if entry.is_abstract {
                    item.insert("abstract".into(), true.into());
                }
                if entry.is_inactive {
                    item.insert("inactive".into(), true.into());
                }
                item.insert("code".into(), entry.code.as_str().into());
                if let Some(display) = &entry.display {
                    item.insert("display".into(), display.as_str().into());
                }
                if !entry.designations.is_empty() {
                    item.insert(
                        "designation".into(),
                        entry.designations.iter().map(designation_json).collect(),
                    );
                }
                Value::Object(item)
            })
            .collect();
        let mut expansion = Map::new();
        expansion.insert("identifier".into(), self.identifier.as_str().into());
        expansion.insert("timestamp".into(), self.timestamp.as_str().into());
        expansion.insert("total".into(), self.total.into());
        expansion.insert("offset".into(), self.offset.into());
        if !self.parameters.is_empty() {
            expansion.insert("parameter".into(), Value::Array(self.parameters.clone()));
        }
        if !contains.is_empty() {
            expansion.insert("contains".into(), Value::Array(contains));
        }
        out.insert("expansion".into(), Value::Object(expansion));
        Value::Object(out)
    }
}

// ---------------------------------------------------------------------------------------------
// $subsumes

/// `CodeSystem/$subsumes` input.
#[derive(Clone, Debug, Default)]
pub struct SubsumesRequest {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code_a: Option<String>,
    pub code_b: Option<String>,
    pub coding_a: Option<Coding>,
    pub coding_b: Option<Coding>,
}

impl SubsumesRequest {
    pub fn from_query(pairs: &[(String, String)]) -> Result<SubsumesRequest, Error> {
        Self::from_inputs(&query_inputs(pairs)?)
    }

    pub fn from_parameters(parameters: &Value) -> Result<SubsumesRequest, Error> {
        Self::from_inputs(&parameters_inputs(parameters)?)
    }

    /// The request from an operation's inputs (the one reader every operation uses).
    pub fn from_inputs(inputs: &Inputs) -> Result<SubsumesRequest, Error> {
        inputs.refuse_unsupported()?;
        Ok(SubsumesRequest {
            system: inputs.text("system")?,
            version: inputs.text("version")?,
            code_a: inputs.text("codeA")?,
            code_b: inputs.text("codeB")?,
            coding_a: inputs.coding("codingA")?,
            coding_b: inputs.coding("codingB")?,
        })
    }
}

/// The relationship between code A and code B (`concept-subsumption-outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsumption {
    Equivalent,
    /// A subsumes B: B is A or lies below it (A is the broader).
    Subsumes,
    /// A is subsumed by B.
    SubsumedBy,
    NotSubsumed,
}

impl Subsumption {
    pub fn as_code(self) -> &'static str {
        match self {
            Subsumption::Equivalent => "equivalent",
            Subsumption::Subsumes => "subsumes",
            Subsumption::SubsumedBy => "subsumed-by",
            Subsumption::NotSubsumed => "not-subsumed",
        }
    }

    pub fn to_parameters(self) -> Value {
        parameters(vec![parameter("outcome", "valueCode", self.as_code())])
    }
}

// ---------------------------------------------------------------------------------------------
// The operations

fn required(value: Option<String>, what: &str) -> Result<String, Error> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| Error::Invalid(format!("{what} is required")))
}

/// Why a requested version of a code system cannot be served: this server holds one edition
/// of each (ICD-10-CM 2026, the R4 code systems at 4.0.1), and a code's meaning can change
/// between editions. `None` when no version is asked for, or the system has none recorded.
fn version_mismatch(system: &System, requested: Option<&str>) -> Option<String> {
    let requested = requested.filter(|v| !v.is_empty())?;
    let held = system.version()?;
    (held != requested).then(|| {
        format!("the code system {} is known in version {held}, not in version {requested}", system.url())
    })
}

fn unknown_system(url: &str) -> Error {
    Error::NotFound(format!("the code system {url} is not known"))
}

fn unknown_code(system: &System, code: &str) -> Error {
    Error::NotFound(format!("the code {code:?} is not in the code system {}", system.url()))
}

/// A designation in the requested language, for display.
fn display_in<'a>(system: &'a System, id: u32, language: Option<&str>) -> Option<&'a str> {
    let language = language?;
    system
        .designations(id)
        .iter()
        .find(|d| {
            d.language.as_deref().is_some_and(|l| {
                l.eq_ignore_ascii_case(language)
                    || l.split('-').next().is_some_and(|base| base.eq_ignore_ascii_case(language))
            })
        })
        .map(|d| d.value.as_str())
}

/// Which value set a request names: a resource given in it, else a canonical URL.
fn requested_value_set(
    engine: &Engine<'_>,
    resource: Option<&Value>,
    url: Option<&str>,
    version: Option<&str>,
) -> Result<ValueSetRef, Error> {
    if let Some(resource) = resource {
        return Ok(ValueSetRef::Owned(Rc::new(r4::value_set_from_resource(resource)?)));
    }
    let url =
        url.filter(|u| !u.is_empty()).ok_or_else(|| Error::Invalid("url or valueSet is required".into()))?;
    match version {
        Some(version) if !url.contains('|') => engine.value_set(&format!("{url}|{version}")),
        _ => engine.value_set(url),
    }
}

impl Terminology {
    /// `CodeSystem/$lookup`.
    pub fn lookup(&self, request: &LookupRequest, resolver: &dyn Resolver) -> Result<LookupResult, Error> {
        let coding = request.coding.clone().unwrap_or_default();
        let system = required(coding.system.or_else(|| request.system.clone()), "system")?;
        let code = required(coding.code.or_else(|| request.code.clone()), "code")?;
        let engine = Engine::new(resolver);
        let cs = engine.system(&system).ok_or_else(|| unknown_system(&system))?;
        if let Some(mismatch) =
            version_mismatch(&cs, coding.version.as_deref().or(request.version.as_deref()))
        {
            return Err(Error::NotFound(mismatch));
        }
        let id = cs.find(&code).ok_or_else(|| unknown_code(&cs, &code))?;
        let wanted =
            |name: &str| request.properties.is_empty() || request.properties.iter().any(|p| p == name);
        let describe = |code: &str| cs.find(code).and_then(|i| cs.display(i)).map(str::to_owned);
        let property = |(code, value): (String, PropertyValue)| {
            let description = match &value {
                PropertyValue::Code(c) if matches!(code.as_str(), "parent" | "child") => describe(c),
                _ => None,
            };
            LookupProperty { code, value, description }
        };
        let properties = if request.properties.is_empty() {
            cs.lookup_properties(id).into_iter().map(property).collect()
        } else {
            let mut out = Vec::new();
            for name in &request.properties {
                if matches!(name.as_str(), "name" | "version" | "display" | "designation" | "url")
                    || name.starts_with("lang.")
                {
                    continue;
                }
                if name == "definition" {
                    if let Some(definition) = cs.definition(id) {
                        out.push(property((name.clone(), PropertyValue::String(definition.to_owned()))));
                    }
                    continue;
                }
                out.extend(cs.property_values(id, name).into_iter().map(|v| property((name.clone(), v))));
            }
            out
        };
        let display = display_in(&cs, id, request.display_language.as_deref())
            .or_else(|| cs.display(id))
            .unwrap_or_else(|| cs.code(id));
        Ok(LookupResult {
            name: cs.label().to_owned(),
            version: cs.version().map(str::to_owned),
            display: display.to_owned(),
            designations: if wanted("designation") { cs.designations(id).to_vec() } else { Vec::new() },
            properties,
        })
    }

    /// `ValueSet/$validate-code`. An unknown value set is `Error::NotFound`; a code that is
    /// not in it, or has a wrong display, is `result: false` with a message.
    pub fn validate_code(
        &self,
        request: &ValidateCodeRequest,
        resolver: &dyn Resolver,
    ) -> Result<ValidateCodeResult, Error> {
        let engine = Engine::new(resolver);
        let vs = requested_value_set(
            &engine,
            request.value_set.as_ref(),
            request.url.as_deref(),
            request.value_set_version.as_deref(),
        )?;
        let given = [request.code.is_some(), request.coding.is_some(), request.codeable_concept.is_some()];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(Error::Invalid("exactly one of code, coding and codeableConcept is required".into()));
        }
        let policy = Policy { abstract_ok: request.abstract_ok, active_only: false };
        let expander = Expander::new(&engine, policy, None);
        let language = request.display_language.as_deref();
        if let Some(codings) = &request.codeable_concept {
            let mut failures = Vec::new();
            for coding in codings {
                let checked = check_coding(&expander, &vs, coding, language)?;
                if checked.result {
                    return Ok(checked);
                }
                failures.extend(checked.message);
            }
            let message = if failures.is_empty() {
                "the CodeableConcept has no coding".to_owned()
            } else {
                failures.join("; ")
            };
            return Ok(ValidateCodeResult { result: false, message: Some(message), display: None });
        }
        let coding = match &request.coding {
            Some(coding) => coding.clone(),
            None => Coding {
                system: request.system.clone(),
                version: request.system_version.clone(),
                code: request.code.clone(),
                display: request.display.clone(),
            },
        };
        check_coding(&expander, &vs, &coding, language)
    }

    /// `ValueSet/$expand`. Expansions of more than [`EXPANSION_LIMIT`] codes need `count`.
    pub fn expand(&self, request: &ExpandRequest, resolver: &dyn Resolver) -> Result<Expansion, Error> {
        let engine = Engine::new(resolver);
        let vs = requested_value_set(
            &engine,
            request.value_set.as_ref(),
            request.url.as_deref(),
            request.value_set_version.as_deref(),
        )?;
        let policy = Policy {
            abstract_ok: request.exclude_not_for_ui == Some(false),
            active_only: request.active_only,
        };
        let text = request.filter.as_deref().and_then(TextFilter::new);
        let expander = Expander::new(&engine, policy, text);
        let members = expander.expand(&vs.compose)?;
        let total = members.len();
        if request.count.is_none() && total > EXPANSION_LIMIT {
            return Err(Error::Invalid(format!(
                "too costly: the expansion of {} has {total} codes (more than {EXPANSION_LIMIT}); \
                 page through it with count and offset",
                vs.url
            )));
        }
        let offset = request.offset.min(total);
        let end = request.count.map_or(total, |count| offset.saturating_add(count).min(total));
        let language = request.display_language.as_deref();
        let contains = members[offset..end]
            .iter()
            .map(|m| entry(&expander, m, language, request.include_designations))
            .collect();
        let mut parameter_list = Vec::new();
        if let Some(filter) = &request.filter {
            parameter_list.push(parameter("filter", "valueString", filter.as_str()));
        }
        if let Some(count) = request.count {
            parameter_list.push(parameter("count", "valueInteger", count));
        }
        parameter_list.push(parameter("offset", "valueInteger", request.offset));
        if request.active_only {
            parameter_list.push(parameter("activeOnly", "valueBoolean", true));
        }
        if request.include_designations {
            parameter_list.push(parameter("includeDesignations", "valueBoolean", true));
        }
        if let Some(exclude) = request.exclude_not_for_ui {
            parameter_list.push(parameter("excludeNotForUI", "valueBoolean", exclude));
        }
        if let Some(language) = &request.display_language {
            parameter_list.push(parameter("displayLanguage", "valueCode", language.as_str()));
        }
        let mut used: Vec<u16> = Vec::new();
        for m in &members {
            if !used.contains(&m.sys) {
                used.push(m.sys);
            }
        }
        let mut systems: Vec<String> = Vec::new();
        for sys in used {
            let (url, system) = expander.system_at(sys);
            let canonical = match system.as_ref().and_then(System::version) {
                Some(version) => format!("{url}|{version}"),
                None => url,
            };
            if !systems.contains(&canonical) {
                systems.push(canonical);
            }
        }
        for canonical in &systems {
            parameter_list.push(parameter("version", "valueUri", canonical.as_str()));
        }
        let identifier = expansion_identifier(&vs, request, total);
        Ok(Expansion {
            id: Some(vs.id.clone()).filter(|id| !id.is_empty()),
            url: Some(vs.url.clone()).filter(|u| !u.is_empty()),
            version: vs.version.clone(),
            name: vs.name.clone(),
            title: vs.title.clone(),
            status: vs.status.clone(),
            compose: request.include_definition.then(|| compose_json(&vs.compose)),
            identifier,
            timestamp: now(),
            total,
            offset,
            parameters: parameter_list,
            contains,
        })
    }

    /// `CodeSystem/$subsumes`.
    pub fn subsumption(
        &self,
        request: &SubsumesRequest,
        resolver: &dyn Resolver,
    ) -> Result<Subsumption, Error> {
        let a = request.coding_a.clone().unwrap_or_default();
        let b = request.coding_b.clone().unwrap_or_default();
        let system = request.system.clone().or(a.system.clone()).or(b.system.clone());
        let system = required(system, "system")?;
        for other in [&a.system, &b.system].into_iter().flatten() {
            if other != &system {
                return Err(Error::Invalid(format!(
                    "subsumption across code systems ({other} and {system}) is not supported"
                )));
            }
        }
        let code_a = required(a.code.or(request.code_a.clone()), "codeA or codingA")?;
        let code_b = required(b.code.or(request.code_b.clone()), "codeB or codingB")?;
        let engine = Engine::new(resolver);
        let cs = engine.system(&system).ok_or_else(|| unknown_system(&system))?;
        let id_a = cs.find(&code_a).ok_or_else(|| unknown_code(&cs, &code_a))?;
        let id_b = cs.find(&code_b).ok_or_else(|| unknown_code(&cs, &code_b))?;
        Ok(relate(&cs, id_a, id_b))
    }

    /// Whether `code` of `system` is in the value set (for required bindings and FHIRPath
    /// `memberOf`), built-in and implicit value sets only. `Err(NotFound)` when the value set
    /// is unknown or membership cannot be decided (a code system this server lacks).
    pub fn validate(&self, value_set_url: &str, system: &str, code: &str) -> Result<bool, Error> {
        self.validate_with(value_set_url, system, code, &NoResolver)
    }

    /// [`Terminology::validate`], also consulting `resolver` for value sets and code systems.
    pub fn validate_with(
        &self,
        value_set_url: &str,
        system: &str,
        code: &str,
        resolver: &dyn Resolver,
    ) -> Result<bool, Error> {
        let engine = Engine::new(resolver);
        let vs = engine.value_set(value_set_url)?;
        if let Some(cs) = engine.system(system) {
            match cs.find(code) {
                Some(id) if !cs.is_code(id) => return Ok(false),
                None if cs.is_complete() => return Ok(false),
                _ => {}
            }
        }
        let expander = Expander::new(&engine, Policy::default(), None);
        match expander.contains(&vs.compose, system, code)? {
            Membership::Member { .. } => Ok(true),
            Membership::NotMember => Ok(false),
            Membership::Undecided(why) => Err(Error::NotFound(why)),
        }
    }

    /// The display of a code (built-in code systems only); `None` when unknown.
    pub fn display(&self, system: &str, code: &str) -> Option<String> {
        let engine = Engine::new(&NoResolver);
        let cs = engine.system(system)?;
        let id = cs.find(code)?;
        cs.display(id).map(str::to_owned)
    }

    /// How code A relates to code B in `system`; `None` when the system or a code is unknown.
    pub fn subsumes(&self, system: &str, code_a: &str, code_b: &str) -> Option<Subsumption> {
        let engine = Engine::new(&NoResolver);
        let cs = engine.system(system)?;
        Some(relate(&cs, cs.find(code_a)?, cs.find(code_b)?))
    }

    /// Whether `code` is `ancestor` or lies below it in `system` (search `:below`, and with
    /// the arguments swapped `:above`); `None` when the system or a code is unknown.
    pub fn is_a(&self, system: &str, code: &str, ancestor: &str) -> Option<bool> {
        let engine = Engine::new(&NoResolver);
        let cs = engine.system(system)?;
        Some(cs.is_self_or_descendant(cs.find(code)?, cs.find(ancestor)?))
    }

    /// A code and every code above it (search `:above`), nearest first. `NotFound` when the
    /// system or the code is unknown.
    pub fn ancestors_and_self(&self, system: &str, code: &str) -> Result<Vec<String>, Error> {
        let engine = Engine::new(&NoResolver);
        let cs =
            engine.system(system).ok_or_else(|| Error::NotFound(format!("unknown code system {system}")))?;
        let id = cs.find(code).ok_or_else(|| Error::NotFound(format!("{code} is not a code of {system}")))?;
        let mut seen = vec![id];
        let mut next = 0;
        // Breadth-first over parents: polyhierarchies (v3) have several.
        while next < seen.len() {
            for parent in cs.parents(seen[next]) {
                if !seen.contains(&parent) {
                    seen.push(parent);
                }
            }
            next += 1;
        }
        Ok(seen.into_iter().map(|id| cs.code(id).to_string()).collect())
    }

    /// Every `(system, code)` of a value set (search `:in` / `:not-in`). Refuses expansions
    /// of more than [`EXPANSION_LIMIT`] codes.
    pub fn expand_codes(&self, value_set_url: &str) -> Result<Vec<(String, String)>, Error> {
        self.expand_codes_with(value_set_url, &NoResolver)
    }

    /// [`Terminology::expand_codes`], also consulting `resolver`.
    pub fn expand_codes_with(
        &self,
        value_set_url: &str,
        resolver: &dyn Resolver,
    ) -> Result<Vec<(String, String)>, Error> {
        let engine = Engine::new(resolver);
        let vs = engine.value_set(value_set_url)?;
        let expander = Expander::new(&engine, Policy::default(), None);
        let members = expander.expand(&vs.compose)?;
        if members.len() > EXPANSION_LIMIT {
            return Err(Error::Invalid(format!(
                "too costly: {value_set_url} has {} codes (more than {EXPANSION_LIMIT})",
                members.len()
            )));
        }
        Ok(members.iter().map(|m| (expander.system_at(m.sys).0, expander.member_code(m))).collect())
    }
}

fn relate(cs: &System, a: u32, b: u32) -> Subsumption {
    if a == b {
        Subsumption::Equivalent
    } else if cs.is_self_or_descendant(b, a) {
        Subsumption::Subsumes
    } else if cs.is_self_or_descendant(a, b) {
        Subsumption::SubsumedBy
    } else {
        Subsumption::NotSubsumed
    }
}

/// Renders one member of an expansion.
fn entry(
    expander: &Expander<'_, '_>,
    member: &Member,
    language: Option<&str>,
    designations: bool,
) -> ExpansionEntry {
    let (url, system) = expander.system_at(member.sys);
    match (&member.code, system) {
        (MemberCode::Known(id), Some(system)) => {
            let id = *id;
            let display = display_in(&system, id, language)
                .or(member.display.as_deref())
                .or_else(|| system.display(id))
                .map(str::to_owned);
            ExpansionEntry {
                system: url,
                is_abstract: system.is_abstract(id),
                is_inactive: system.is_inactive(id) || system.is_deprecated(id),
                code: system.code(id).to_owned(),
                display,
                designations: if designations { system.designations(id).to_vec() } else { Vec::new() },
            }
        }
        _ => ExpansionEntry {
            system: url,
            is_abstract: false,
            is_inactive: false,
            code: expander.member_code(member),
            display: member.display.as_deref().map(str::to_owned),
            designations: Vec::new(),
        },
    }
}

/// Validates one coding against a value set.
fn check_coding(
    expander: &Expander<'_, '_>,
    vs: &ValueSetDef,
    coding: &Coding,
    language: Option<&str>,
) -> Result<ValidateCodeResult, Error> {
    let code = required(coding.code.clone(), "code")?;
    let system = match &coding.system {
        Some(system) if !system.is_empty() => system.clone(),
        _ => infer_system(vs)?,
    };
    let invalid = |message: String, display: Option<String>| ValidateCodeResult {
        result: false,
        message: Some(message),
        display,
    };
    let cs = expander.engine.system(&system);
    if let Some(mismatch) = cs.as_ref().and_then(|cs| version_mismatch(cs, coding.version.as_deref())) {
        return Ok(invalid(mismatch, None));
    }
    let id = cs.as_ref().and_then(|cs| cs.find(&code));
    if let Some(cs) = &cs {
        match id {
            None if cs.is_complete() => {
                return Ok(invalid(format!("the code {code:?} is not in the code system {system}"), None));
            }
            Some(id) if !cs.is_code(id) => {
                return Ok(invalid(
                    format!(
                        "{code:?} is a grouping of {} ({}), not a code",
                        cs.label(),
                        cs.display(id).unwrap_or("")
                    ),
                    None,
                ));
            }
            _ => {}
        }
    }
    let known_display = match (&cs, id) {
        (Some(cs), Some(id)) => display_in(cs, id, language).or_else(|| cs.display(id)).map(str::to_owned),
        _ => None,
    };
    let listed_display = match expander.contains(&vs.compose, &system, &code)? {
        Membership::Member { display } => display.map(|d| d.trim().to_owned()),
        Membership::NotMember => {
            let why = match (&cs, id) {
                (Some(cs), Some(id)) if cs.is_abstract(id) && !expander.policy.abstract_ok => {
                    "abstract (not selectable) and "
                }
                (Some(cs), Some(id)) if cs.is_deprecated(id) => "deprecated and ",
                _ => "",
            };
            return Ok(invalid(
                format!("the code {code:?} of {system} is {why}not in the value set {}", vs.url),
                known_display,
            ));
        }
        Membership::Undecided(why) => {
            return Ok(invalid(
                format!("the code {code:?} of {system} cannot be validated: {why}"),
                known_display,
            ));
        }
    };
    let preferred = known_display.clone().or(listed_display.clone());
    if let Some(given) = coding.display.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        let mut valid: Vec<&str> = Vec::new();
        valid.extend(known_display.as_deref());
        valid.extend(listed_display.as_deref());
        if let (Some(cs), Some(id)) = (&cs, id) {
            valid.extend(cs.display(id));
            valid.extend(cs.designations(id).iter().map(|d| d.value.as_str()));
        }
        if !valid.is_empty() && !valid.iter().any(|v| v.trim().eq_ignore_ascii_case(given)) {
            let expected = preferred.as_deref().unwrap_or("");
            return Ok(invalid(
                format!(
                    "the display {given:?} is not a valid display for the code {code:?} of {system}; expected {expected:?}"
                ),
                preferred,
            ));
        }
    }
    let mut hints = Vec::new();
    if let (Some(cs), Some(id)) = (&cs, id) {
        if cs.code(id) != code {
            hints.push(format!("the code is written {:?} in {}", cs.code(id), cs.label()));
        }
        if cs.is_inactive(id) || cs.is_deprecated(id) {
            hints.push(format!("the code {code:?} is inactive"));
        }
        if let System::Icd(_) = cs
            && cs.property_values(id, "billable") == [PropertyValue::Boolean(false)]
        {
            hints.push(format!("{} is not billable: it has subdivisions", cs.code(id)));
        }
    }
    Ok(ValidateCodeResult {
        result: true,
        message: (!hints.is_empty()).then(|| hints.join("; ")),
        display: preferred,
    })
}

/// The code system of a code given without one: the only one the value set includes.
fn infer_system(vs: &ValueSetDef) -> Result<String, Error> {
    let mut systems: Vec<&str> = vs.compose.include.iter().filter_map(|s| s.system.as_deref()).collect();
    systems.sort_unstable();
    systems.dedup();
    match systems.as_slice() {
        [only] => Ok((*only).to_owned()),
        _ => Err(Error::Invalid("system is required with code".into())),
    }
}

/// An identifier that depends on the value set and every parameter that shapes the
/// expansion, so the same request gives the same identifier.
fn expansion_identifier(vs: &ValueSetDef, request: &ExpandRequest, total: usize) -> String {
    let digest = |seed: u64| {
        let mut hasher = FxHasher::default();
        seed.hash(&mut hasher);
        vs.url.hash(&mut hasher);
        vs.version.hash(&mut hasher);
        format!("{:?}", vs.compose).hash(&mut hasher);
        request.filter.hash(&mut hasher);
        request.count.hash(&mut hasher);
        request.offset.hash(&mut hasher);
        request.active_only.hash(&mut hasher);
        request.include_designations.hash(&mut hasher);
        request.exclude_not_for_ui.hash(&mut hasher);
        request.display_language.hash(&mut hasher);
        total.hash(&mut hasher);
        hasher.finish()
    };
    let (high, low) = (digest(0x5eed_0001), digest(0x5eed_0002));
    // Shaped as a version-8 (custom) UUID.
    let high = (high & !0xf000) | 0x8000;
    let low = (low & !(0xc000_u64 << 48)) | (0x8000_u64 << 48);
    format!(
        "urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// The current time as a FHIR instant in UTC, to the second.
fn now() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, (rest % 3600) / 60, rest % 60)
}
