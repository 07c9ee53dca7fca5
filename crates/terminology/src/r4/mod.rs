//! The code systems and value sets published with FHIR R4 (the FHIR, HL7 v3 and HL7 v2
//! terminologies), and the in-memory model that code systems and value sets supplied at run
//! time share with them.
//!
//! The table is generated from the specification (see `derive`), embedded, and parsed once on
//! first use.

pub mod derive;
mod table;

use std::sync::LazyLock;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::Error;

static TABLE: &str = include_str!("../../data/r4-terminology.tsv");

static TABLES: LazyLock<R4Tables> =
    LazyLock::new(|| table::parse(TABLE).unwrap_or_else(|e| panic!("embedded r4-terminology.tsv: {e}")));

/// The embedded R4 code systems and value sets.
pub fn tables() -> &'static R4Tables {
    &TABLES
}

/// All code systems and value sets of the table, with lookup by canonical URL.
#[derive(Debug, Default)]
pub struct R4Tables {
    pub code_systems: Vec<CodeSystemData>,
    pub value_sets: Vec<ValueSetDef>,
    code_system_by_url: FxHashMap<String, usize>,
    value_set_by_url: FxHashMap<String, usize>,
}

impl R4Tables {
    pub fn code_system(&self, url: &str) -> Option<&CodeSystemData> {
        self.code_system_by_url.get(url).map(|&i| &self.code_systems[i])
    }

    pub fn value_set(&self, url: &str) -> Option<&ValueSetDef> {
        self.value_set_by_url.get(url).map(|&i| &self.value_sets[i])
    }

    fn index(&mut self) {
        for (i, cs) in self.code_systems.iter().enumerate() {
            self.code_system_by_url.entry(cs.url.clone()).or_insert(i);
        }
        for (i, vs) in self.value_sets.iter().enumerate() {
            self.value_set_by_url.entry(vs.url.clone()).or_insert(i);
        }
    }
}

/// Parses a CodeSystem resource supplied at run time.
pub fn code_system_from_resource(resource: &Value) -> Result<CodeSystemData, Error> {
    if resource["resourceType"] != "CodeSystem" {
        return Err(Error::Invalid("expected a CodeSystem resource".into()));
    }
    if !resource["url"].is_string() {
        return Err(Error::Invalid("the CodeSystem has no url".into()));
    }
    let mut text = String::new();
    derive::write_code_system(&mut text, resource);
    let mut tables = table::parse(&text)?;
    tables.code_systems.pop().ok_or_else(|| Error::Invalid("the CodeSystem could not be read".into()))
}

/// Parses a ValueSet resource supplied at run time.
pub fn value_set_from_resource(resource: &Value) -> Result<ValueSetDef, Error> {
    if resource["resourceType"] != "ValueSet" {
        return Err(Error::Invalid("expected a ValueSet resource".into()));
    }
    let mut text = String::new();
    derive::write_value_set(&mut text, resource, &|_, _, _| false);
    let mut tables = table::parse(&text)?;
    tables.value_sets.pop().ok_or_else(|| Error::Invalid("the ValueSet could not be read".into()))
}

/// A property a code system declares for its concepts.
#[derive(Debug, Clone)]
pub struct PropertyDef {
    pub code: String,
    pub kind: String,
    pub uri: Option<String>,
}

/// The value of a concept property, typed as in `CodeSystem.concept.property.value[x]`.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    Code(String),
    String(String),
    Boolean(bool),
    DateTime(String),
    Integer(String),
    Decimal(String),
    Coding { system: String, code: String },
}

impl PropertyValue {
    /// The value as filters compare it (`=`, `in`, `regex`).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PropertyValue::Code(s)
            | PropertyValue::String(s)
            | PropertyValue::DateTime(s)
            | PropertyValue::Integer(s)
            | PropertyValue::Decimal(s) => s.as_str().into(),
            PropertyValue::Boolean(b) => if *b { "true" } else { "false" }.into(),
            PropertyValue::Coding { code, .. } => code.as_str().into(),
        }
    }

    /// The `value[x]` member of a FHIR element carrying this value.
    pub fn json_member(&self) -> (&'static str, Value) {
        match self {
            PropertyValue::Code(s) => ("valueCode", Value::from(s.as_str())),
            PropertyValue::String(s) => ("valueString", Value::from(s.as_str())),
            PropertyValue::Boolean(b) => ("valueBoolean", Value::from(*b)),
            PropertyValue::DateTime(s) => ("valueDateTime", Value::from(s.as_str())),
            PropertyValue::Integer(s) => (
                "valueInteger",
                s.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(s.as_str())),
            ),
            PropertyValue::Decimal(s) => (
                "valueDecimal",
                serde_json::from_str::<serde_json::Number>(s)
                    .map(Value::Number)
                    .unwrap_or_else(|_| Value::from(s.as_str())),
            ),
            PropertyValue::Coding { system, code } => {
                ("valueCoding", serde_json::json!({ "system": system, "code": code }))
            }
        }
    }
}

/// A designation (another representation of a concept, usually a translation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designation {
    pub language: Option<String>,
    /// `(system, code)` of `Designation.use`.
    pub usage: Option<(String, String)>,
    pub value: String,
}

/// One concept of a code system.
#[derive(Debug, Clone)]
pub struct ConceptData {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    /// The concept this one is nested under in the resource.
    pub nested_in: Option<u32>,
    /// Every parent: the nesting parent and those naming this concept with property `child`.
    pub parents: Vec<u32>,
    /// Every child, nested ones first.
    pub children: Vec<u32>,
    /// Children given by property `child` rather than by nesting.
    pub extra_children: Vec<u32>,
    pub properties: Vec<(String, PropertyValue)>,
    pub designations: Vec<Designation>,
    /// `notSelectable` or `abstract`: a grouper that data should not use.
    pub is_abstract: bool,
    /// `status` retired or inactive, or `inactive` true.
    pub is_inactive: bool,
    /// `status` deprecated, or a `deprecationDate`: still defined, but HL7's own expansions
    /// leave such codes out.
    pub is_deprecated: bool,
}

/// A code system: its metadata and concepts in definition (pre-)order.
#[derive(Debug, Clone, Default)]
pub struct CodeSystemData {
    pub id: String,
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub content: Option<String>,
    pub case_sensitive: Option<bool>,
    pub hierarchy_meaning: Option<String>,
    pub value_set: Option<String>,
    pub supplements: Option<String>,
    pub properties: Vec<PropertyDef>,
    pub concepts: Vec<ConceptData>,
    by_code: FxHashMap<String, u32>,
    /// Codes lowercased, for code systems that declare themselves case-insensitive.
    by_folded_code: FxHashMap<String, u32>,
}

impl CodeSystemData {
    /// The concept with this code, if the code system defines it.
    pub fn find(&self, code: &str) -> Option<u32> {
        if let Some(&i) = self.by_code.get(code) {
            return Some(i);
        }
        if self.case_sensitive == Some(false) {
            return self.by_folded_code.get(&code.to_lowercase()).copied();
        }
        None
    }

    pub fn concept(&self, id: u32) -> &ConceptData {
        &self.concepts[id as usize]
    }

    /// Whether the concepts here are the whole code system (so absence means "not a code").
    pub fn is_complete(&self) -> bool {
        matches!(self.content.as_deref(), Some("complete") | None)
    }

    /// A label for the code system: its title, else its name, else its URL.
    pub fn label(&self) -> &str {
        self.title.as_deref().or(self.name.as_deref()).unwrap_or(&self.url)
    }

    fn finish(&mut self, pending_children: Vec<(u32, String)>) {
        for (i, concept) in self.concepts.iter().enumerate() {
            self.by_code.entry(concept.code.clone()).or_insert(i as u32);
        }
        if self.case_sensitive == Some(false) {
            for (i, concept) in self.concepts.iter().enumerate() {
                self.by_folded_code.entry(concept.code.to_lowercase()).or_insert(i as u32);
            }
        }
        for (parent, code) in pending_children {
            let Some(child) = self.find(&code) else { continue };
            if child == parent || self.concepts[child as usize].parents.contains(&parent) {
                continue;
            }
            self.concepts[child as usize].parents.push(parent);
            let p = &mut self.concepts[parent as usize];
            p.children.push(child);
            p.extra_children.push(child);
        }
    }
}

/// A value set definition: metadata and compose.
#[derive(Debug, Clone, Default)]
pub struct ValueSetDef {
    pub id: String,
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub compose: Compose,
}

/// `ValueSet.compose`.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// `compose.inactive`: whether inactive codes belong to the value set.
    pub inactive: Option<bool>,
    pub include: Vec<ConceptSet>,
    pub exclude: Vec<ConceptSet>,
}

/// One `compose.include` or `compose.exclude`.
#[derive(Debug, Clone, Default)]
pub struct ConceptSet {
    pub system: Option<String>,
    pub version: Option<String>,
    /// Listed codes with the display the value set gives them, if any.
    pub concepts: Vec<(String, Option<String>)>,
    pub filters: Vec<Filter>,
    pub value_sets: Vec<String>,
}

/// `compose.include.filter`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub property: String,
    pub op: String,
    pub value: String,
}
