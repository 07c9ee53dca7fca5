//! The terminology registry: which code systems and value sets exist (the R4 ones, ICD-10-CM,
//! implicit value sets, and resources the server stores), and the uniform view of a code
//! system that the operations work on.

use std::cell::RefCell;
use std::rc::Rc;

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use crate::Error;
use crate::icd10cm::{self, Icd10Cm, NoteKind};
use crate::r4::{self, CodeSystemData, Compose, ConceptSet, Designation, Filter, PropertyValue, ValueSetDef};

/// Supplies code systems and value sets that are not built in, as FHIR resource JSON (the
/// server's stored CodeSystem and ValueSet resources). URLs come without `|version`.
pub trait Resolver {
    fn value_set(&self, url: &str) -> Option<Value>;
    fn code_system(&self, url: &str) -> Option<Value>;
}

/// A resolver that knows nothing beyond the built-in terminology.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn value_set(&self, _url: &str) -> Option<Value> {
        None
    }

    fn code_system(&self, _url: &str) -> Option<Value> {
        None
    }
}

/// The suffix that turns a code system URL into its implicit value sets (`X?fhir_vs`,
/// `X?fhir_vs=isa/CODE`).
const IMPLICIT: &str = "?fhir_vs";

/// The terminology service: built-in code systems and value sets plus the operations on them.
///
/// The built-in data is embedded in the binary and loaded on first use.
pub struct Terminology {
    _private: (),
}

static TERMINOLOGY: Terminology = Terminology { _private: () };

impl Terminology {
    /// The built-in terminology.
    pub fn get() -> &'static Terminology {
        &TERMINOLOGY
    }

    /// Loads the embedded tables and builds the ICD-10-CM word index now rather than on first
    /// use (a fraction of a second), so that the first requests are as fast as the rest.
    pub fn preload(&self) {
        let _ = r4::tables();
        crate::expand::preload_icd_index();
    }

    /// The number of built-in code systems: the R4 ones and ICD-10-CM.
    pub fn code_system_count(&self) -> usize {
        r4::tables().code_systems.len() + 1
    }

    /// The number of built-in (explicit) value sets.
    pub fn value_set_count(&self) -> usize {
        r4::tables().value_sets.len()
    }

    /// The canonical URLs of the built-in code systems.
    pub fn code_system_urls(&self) -> impl Iterator<Item = &'static str> {
        r4::tables().code_systems.iter().map(|cs| cs.url.as_str()).chain([icd10cm::SYSTEM])
    }

    /// The canonical URLs of the built-in value sets.
    pub fn value_set_urls(&self) -> impl Iterator<Item = &'static str> {
        r4::tables().value_sets.iter().map(|vs| vs.url.as_str())
    }

    /// A built-in code system as a FHIR CodeSystem resource (ICD-10-CM without its concepts:
    /// `content` is `not-present`). `url` may carry `|version`.
    pub fn code_system_resource(&self, url: &str) -> Option<Value> {
        let (url, _) = split_version(url);
        if url == icd10cm::SYSTEM {
            let icd = Icd10Cm::get();
            return Some(json!({
                "resourceType": "CodeSystem",
                "id": "icd-10-cm",
                "url": icd10cm::SYSTEM,
                "version": icd.version(),
                "name": "ICD10CM",
                "title": "International Classification of Diseases, Tenth Revision, Clinical Modification",
                "status": "active",
                "publisher": "National Center for Health Statistics (NCHS), CDC",
                "caseSensitive": false,
                "valueSet": format!("{}{IMPLICIT}", icd10cm::SYSTEM),
                "hierarchyMeaning": "is-a",
                "content": "not-present",
                "count": icd.concepts().filter(|c| c.kind().is_code()).count(),
            }));
        }
        r4::tables().code_system(url).map(render_code_system)
    }

    /// A built-in value set as a FHIR ValueSet resource (definition only, no expansion); also
    /// the implicit value sets of known code systems. `url` may carry `|version`.
    pub fn value_set_resource(&self, url: &str) -> Option<Value> {
        let (url, _) = split_version(url);
        if let Some(vs) = r4::tables().value_set(url) {
            return Some(render_value_set(vs));
        }
        let vs = implicit_value_set(url)?;
        let engine = Engine::new(&NoResolver);
        engine.system(vs.compose.include.first()?.system.as_deref()?)?;
        Some(render_value_set(&vs))
    }
}

/// Splits `url|version`. A few HL7 v2 tables have a `|` in the URL itself
/// (`http://terminology.hl7.org/CodeSystem/v2-0360|2.7`); those are kept whole.
pub(crate) fn split_version(canonical: &str) -> (&str, Option<&str>) {
    let tables = r4::tables();
    if canonical.contains('|')
        && (tables.code_system(canonical).is_some() || tables.value_set(canonical).is_some())
    {
        return (canonical, None);
    }
    match canonical.split_once('|') {
        Some((url, version)) if !version.is_empty() => (url, Some(version)),
        Some((url, _)) => (url, None),
        None => (canonical, None),
    }
}

/// The definition of an implicit value set: `X?fhir_vs` (every code of X) or
/// `X?fhir_vs=isa/CODE` (CODE and its descendants).
fn implicit_value_set(url: &str) -> Option<ValueSetDef> {
    let at = url.find(IMPLICIT)?;
    let system = &url[..at];
    let rest = &url[at + IMPLICIT.len()..];
    let filters = match rest {
        "" => Vec::new(),
        _ => {
            let code = rest.strip_prefix("=isa/").filter(|c| !c.is_empty())?;
            vec![Filter { property: "concept".into(), op: "is-a".into(), value: code.to_owned() }]
        }
    };
    if system.is_empty() {
        return None;
    }
    Some(ValueSetDef {
        id: String::new(),
        url: url.to_owned(),
        version: None,
        name: None,
        title: None,
        status: Some("active".into()),
        compose: Compose {
            inactive: None,
            include: vec![ConceptSet { system: Some(system.to_owned()), filters, ..ConceptSet::default() }],
            exclude: Vec::new(),
        },
    })
}

/// A value set definition, built in or supplied at run time.
#[derive(Clone)]
pub(crate) enum ValueSetRef {
    Builtin(&'static ValueSetDef),
    Owned(Rc<ValueSetDef>),
}

impl std::ops::Deref for ValueSetRef {
    type Target = ValueSetDef;
    fn deref(&self) -> &ValueSetDef {
        match self {
            ValueSetRef::Builtin(vs) => vs,
            ValueSetRef::Owned(vs) => vs,
        }
    }
}

/// A code system as the operations see it, whatever its origin. Concepts are numbered in
/// definition (pre-)order.
#[derive(Clone)]
pub(crate) enum System {
    Table(&'static CodeSystemData),
    Runtime(Rc<CodeSystemData>),
    Icd(&'static Icd10Cm),
}

impl System {
    fn table(&self) -> Option<&CodeSystemData> {
        match self {
            System::Table(cs) => Some(cs),
            System::Runtime(cs) => Some(cs),
            System::Icd(_) => None,
        }
    }

    fn icd_concept(icd: &'static Icd10Cm, id: u32) -> icd10cm::Concept<'static> {
        icd.concept(id as usize).unwrap_or_else(|| unreachable!("ICD-10-CM concept {id} out of range"))
    }

    pub fn url(&self) -> &str {
        match self {
            System::Icd(_) => icd10cm::SYSTEM,
            other => other.table().map_or("", |cs| cs.url.as_str()),
        }
    }

    pub fn version(&self) -> Option<&str> {
        match self {
            System::Icd(icd) => Some(icd.version()),
            other => other.table().and_then(|cs| cs.version.as_deref()),
        }
    }

    /// The name `$lookup` reports.
    pub fn label(&self) -> &str {
        match self {
            System::Icd(_) => "ICD-10-CM",
            other => other.table().map_or("", CodeSystemData::label),
        }
    }

    /// Whether every code of the system is here, so that it can be enumerated and a code
    /// missing from it is not a code.
    pub fn is_complete(&self) -> bool {
        match self {
            System::Icd(_) => true,
            other => other.table().is_some_and(CodeSystemData::is_complete),
        }
    }

    pub fn len(&self) -> u32 {
        match self {
            System::Icd(icd) => icd.len() as u32,
            other => other.table().map_or(0, |cs| cs.concepts.len() as u32),
        }
    }

    pub fn find(&self, code: &str) -> Option<u32> {
        match self {
            System::Icd(icd) => icd.lookup(code).map(|c| c.index() as u32),
            other => other.table().and_then(|cs| cs.find(code)),
        }
    }

    pub fn code(&self, id: u32) -> &str {
        match self {
            System::Icd(icd) => Self::icd_concept(icd, id).code(),
            other => other.table().map_or("", |cs| cs.concept(id).code.as_str()),
        }
    }

    pub fn display(&self, id: u32) -> Option<&str> {
        match self {
            System::Icd(icd) => Some(Self::icd_concept(icd, id).display()),
            other => other.table().and_then(|cs| cs.concept(id).display.as_deref()),
        }
    }

    pub fn definition(&self, id: u32) -> Option<&str> {
        self.table().and_then(|cs| cs.concept(id).definition.as_deref())
    }

    pub fn designations(&self, id: u32) -> &[Designation] {
        self.table().map_or(&[], |cs| cs.concept(id).designations.as_slice())
    }

    /// Whether the concept is a code of the system at all: ICD-10-CM chapters and blocks are
    /// groupings, not codes.
    pub fn is_code(&self, id: u32) -> bool {
        match self {
            System::Icd(icd) => Self::icd_concept(icd, id).kind().is_code(),
            _ => true,
        }
    }

    /// `notSelectable`/`abstract`: for navigation, not for data.
    pub fn is_abstract(&self, id: u32) -> bool {
        match self {
            System::Icd(_) => !self.is_code(id),
            other => other.table().is_some_and(|cs| cs.concept(id).is_abstract),
        }
    }

    pub fn is_inactive(&self, id: u32) -> bool {
        self.table().is_some_and(|cs| cs.concept(id).is_inactive)
    }

    pub fn is_deprecated(&self, id: u32) -> bool {
        self.table().is_some_and(|cs| cs.concept(id).is_deprecated)
    }

    pub fn parents(&self, id: u32) -> Vec<u32> {
        match self {
            System::Icd(icd) => {
                Self::icd_concept(icd, id).parent().map(|p| p.index() as u32).into_iter().collect()
            }
            other => other.table().map_or_else(Vec::new, |cs| cs.concept(id).parents.clone()),
        }
    }

    pub fn children(&self, id: u32) -> Vec<u32> {
        match self {
            System::Icd(icd) => Self::icd_concept(icd, id).children().map(|c| c.index() as u32).collect(),
            other => other.table().map_or_else(Vec::new, |cs| cs.concept(id).children.clone()),
        }
    }

    /// Every concept below `id`, in definition order.
    pub fn descendants(&self, id: u32) -> Vec<u32> {
        match self {
            System::Icd(icd) => Self::icd_concept(icd, id).descendants().map(|c| c.index() as u32).collect(),
            other => {
                let Some(cs) = other.table() else { return Vec::new() };
                let mut seen = vec![false; cs.concepts.len()];
                let mut stack = cs.concept(id).children.clone();
                let mut out = Vec::new();
                while let Some(next) = stack.pop() {
                    if std::mem::replace(&mut seen[next as usize], true) || next == id {
                        continue;
                    }
                    out.push(next);
                    stack.extend(cs.concept(next).children.iter().copied());
                }
                out.sort_unstable();
                out
            }
        }
    }

    /// Whether `id` is `ancestor` or lies below it.
    pub fn is_self_or_descendant(&self, id: u32, ancestor: u32) -> bool {
        if id == ancestor {
            return true;
        }
        match self {
            System::Icd(icd) => Self::icd_concept(icd, id).is_descendant_of(Self::icd_concept(icd, ancestor)),
            other => {
                let Some(cs) = other.table() else { return false };
                // Ancestor sets are small (a few levels, rarely two parents): a list will do.
                let mut seen: Vec<u32> = Vec::new();
                let mut stack = cs.concept(id).parents.clone();
                while let Some(next) = stack.pop() {
                    if next == ancestor {
                        return true;
                    }
                    if !seen.contains(&next) {
                        seen.push(next);
                        stack.extend(cs.concept(next).parents.iter().copied());
                    }
                }
                false
            }
        }
    }

    /// The values of a property of a concept, for filters and `$lookup`. Besides the
    /// properties a code system states, `parent`, `child`, `display`, `notSelectable` and
    /// `inactive` are available everywhere, and ICD-10-CM adds `billable` and `kind`.
    pub fn property_values(&self, id: u32, name: &str) -> Vec<PropertyValue> {
        let code = |i: u32| PropertyValue::Code(self.code(i).to_owned());
        match name {
            "parent" => return self.parents(id).into_iter().map(code).collect(),
            "child" => return self.children(id).into_iter().map(code).collect(),
            "display" => {
                return self.display(id).map(|d| PropertyValue::String(d.to_owned())).into_iter().collect();
            }
            _ => {}
        }
        if let System::Icd(icd) = self {
            let concept = Self::icd_concept(icd, id);
            return match name {
                "billable" => vec![PropertyValue::Boolean(concept.billable())],
                "kind" => vec![PropertyValue::Code(concept.kind().as_str().to_owned())],
                "notSelectable" | "abstract" => vec![PropertyValue::Boolean(!concept.kind().is_code())],
                "inactive" => vec![PropertyValue::Boolean(false)],
                _ => note_kind(name)
                    .map(|kind| {
                        concept
                            .notes()
                            .filter(|(_, note)| note.kind == kind)
                            .map(|(_, note)| PropertyValue::String(note.text.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
        }
        let Some(cs) = self.table() else { return Vec::new() };
        let concept = cs.concept(id);
        let stated: Vec<PropertyValue> =
            concept.properties.iter().filter(|(code, _)| code == name).map(|(_, v)| v.clone()).collect();
        if !stated.is_empty() {
            return stated;
        }
        match name {
            "notSelectable" | "abstract" => vec![PropertyValue::Boolean(concept.is_abstract)],
            "inactive" => vec![PropertyValue::Boolean(concept.is_inactive)],
            _ => Vec::new(),
        }
    }

    /// The properties `$lookup` reports when the client names none: `(code, value)` pairs.
    pub fn lookup_properties(&self, id: u32) -> Vec<(String, PropertyValue)> {
        let mut out = Vec::new();
        for parent in self.parents(id) {
            out.push(("parent".to_owned(), PropertyValue::Code(self.code(parent).to_owned())));
        }
        for child in self.children(id) {
            out.push(("child".to_owned(), PropertyValue::Code(self.code(child).to_owned())));
        }
        match self {
            System::Icd(icd) => {
                let concept = Self::icd_concept(icd, id);
                if concept.kind().is_code() {
                    out.push(("billable".to_owned(), PropertyValue::Boolean(concept.billable())));
                } else {
                    out.push(("notSelectable".to_owned(), PropertyValue::Boolean(true)));
                }
                for (_, note) in concept.notes() {
                    out.push((note_property(note.kind).to_owned(), PropertyValue::String(note.text.clone())));
                }
            }
            other => {
                if let Some(cs) = other.table() {
                    let concept = cs.concept(id);
                    if let Some(definition) = &concept.definition {
                        out.push(("definition".to_owned(), PropertyValue::String(definition.clone())));
                    }
                    out.extend(concept.properties.iter().cloned());
                    if concept.is_inactive && !concept.properties.iter().any(|(c, _)| c == "inactive") {
                        out.push(("inactive".to_owned(), PropertyValue::Boolean(true)));
                    }
                }
            }
        }
        out
    }
}

/// The `$lookup` property code of an ICD-10-CM note.
pub(crate) fn note_property(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::InclusionTerm => "inclusionTerm",
        NoteKind::Includes => "includes",
        NoteKind::Excludes1 => "excludes1",
        NoteKind::Excludes2 => "excludes2",
        NoteKind::CodeFirst => "codeFirst",
        NoteKind::UseAdditionalCode => "useAdditionalCode",
        NoteKind::CodeAlso => "codeAlso",
        NoteKind::Note => "note",
        NoteKind::SevenCharacterNote => "sevenCharacterNote",
    }
}

fn note_kind(property: &str) -> Option<NoteKind> {
    NoteKind::ALL.into_iter().find(|&kind| note_property(kind) == property)
}

/// Resolves code systems and value sets for one operation, remembering what it parsed from
/// the resolver so that nested imports do not parse a resource twice.
pub(crate) struct Engine<'r> {
    resolver: &'r dyn Resolver,
    systems: RefCell<FxHashMap<String, Option<System>>>,
    value_sets: RefCell<FxHashMap<String, Option<ValueSetRef>>>,
}

impl<'r> Engine<'r> {
    pub fn new(resolver: &'r dyn Resolver) -> Engine<'r> {
        Engine { resolver, systems: RefCell::default(), value_sets: RefCell::default() }
    }

    /// The code system with this canonical URL (`|version` ignored), if known.
    pub fn system(&self, url: &str) -> Option<System> {
        let (url, _) = split_version(url);
        if url == icd10cm::SYSTEM {
            return Some(System::Icd(Icd10Cm::get()));
        }
        if let Some(cs) = r4::tables().code_system(url) {
            return Some(System::Table(cs));
        }
        if let Some(found) = self.systems.borrow().get(url) {
            return found.clone();
        }
        let found = self
            .resolver
            .code_system(url)
            .and_then(|resource| r4::code_system_from_resource(&resource).ok())
            .map(|cs| System::Runtime(Rc::new(cs)));
        self.systems.borrow_mut().insert(url.to_owned(), found.clone());
        found
    }

    /// The value set with this canonical URL: built in, implicit, or from the resolver. A
    /// `|version` that names another version than the built-in one is looked for in the
    /// resolver only.
    pub fn value_set(&self, canonical: &str) -> Result<ValueSetRef, Error> {
        let (url, version) = split_version(canonical);
        if let Some(vs) = r4::tables().value_set(url)
            && (version.is_none() || version == vs.version.as_deref())
        {
            return Ok(ValueSetRef::Builtin(vs));
        }
        if let Some(found) = self.value_sets.borrow().get(canonical) {
            return found.clone().ok_or_else(|| unknown_value_set(canonical));
        }
        let found = match implicit_value_set(url) {
            Some(vs) => Some(ValueSetRef::Owned(Rc::new(vs))),
            None => match self.resolver.value_set(url) {
                Some(resource) => {
                    let vs = r4::value_set_from_resource(&resource)?;
                    if version.is_some_and(|v| vs.version.as_deref() != Some(v)) {
                        None
                    } else {
                        Some(ValueSetRef::Owned(Rc::new(vs)))
                    }
                }
                None => None,
            },
        };
        self.value_sets.borrow_mut().insert(canonical.to_owned(), found.clone());
        found.ok_or_else(|| unknown_value_set(canonical))
    }
}

fn unknown_value_set(url: &str) -> Error {
    Error::NotFound(format!("the value set {url} is not known"))
}

/// Renders a code system of the table as a CodeSystem resource, concepts nested as defined.
fn render_code_system(cs: &CodeSystemData) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("resourceType".into(), "CodeSystem".into());
    put(&mut out, "id", Some(cs.id.as_str()));
    put(&mut out, "url", Some(cs.url.as_str()));
    put(&mut out, "version", cs.version.as_deref());
    put(&mut out, "name", cs.name.as_deref());
    put(&mut out, "title", cs.title.as_deref());
    put(&mut out, "status", cs.status.as_deref());
    if let Some(case_sensitive) = cs.case_sensitive {
        out.insert("caseSensitive".into(), case_sensitive.into());
    }
    put(&mut out, "valueSet", cs.value_set.as_deref());
    put(&mut out, "hierarchyMeaning", cs.hierarchy_meaning.as_deref());
    put(&mut out, "content", cs.content.as_deref());
    put(&mut out, "supplements", cs.supplements.as_deref());
    if cs.is_complete() {
        out.insert("count".into(), cs.concepts.len().into());
    }
    if !cs.properties.is_empty() {
        let properties = cs
            .properties
            .iter()
            .map(|p| {
                let mut property = serde_json::Map::new();
                property.insert("code".into(), p.code.as_str().into());
                put(&mut property, "uri", p.uri.as_deref());
                property.insert("type".into(), p.kind.as_str().into());
                Value::Object(property)
            })
            .collect();
        out.insert("property".into(), Value::Array(properties));
    }
    let top: Vec<u32> =
        (0..cs.concepts.len() as u32).filter(|&i| cs.concept(i).nested_in.is_none()).collect();
    if !top.is_empty() {
        out.insert("concept".into(), render_concepts(cs, &top));
    }
    Value::Object(out)
}

fn render_concepts(cs: &CodeSystemData, ids: &[u32]) -> Value {
    let concepts = ids
        .iter()
        .map(|&id| {
            let concept = cs.concept(id);
            let mut out = serde_json::Map::new();
            out.insert("code".into(), concept.code.as_str().into());
            put(&mut out, "display", concept.display.as_deref());
            put(&mut out, "definition", concept.definition.as_deref());
            if !concept.designations.is_empty() {
                let designations = concept.designations.iter().map(designation_json).collect();
                out.insert("designation".into(), Value::Array(designations));
            }
            let mut properties: Vec<Value> = concept
                .properties
                .iter()
                .map(|(code, value)| {
                    let (key, value) = value.json_member();
                    json!({ "code": code, key: value })
                })
                .collect();
            properties.extend(
                concept
                    .extra_children
                    .iter()
                    .map(|&c| json!({ "code": "child", "valueCode": cs.concept(c).code })),
            );
            if !properties.is_empty() {
                out.insert("property".into(), Value::Array(properties));
            }
            let nested: Vec<u32> =
                concept.children.iter().copied().filter(|&c| cs.concept(c).nested_in == Some(id)).collect();
            if !nested.is_empty() {
                out.insert("concept".into(), render_concepts(cs, &nested));
            }
            Value::Object(out)
        })
        .collect();
    Value::Array(concepts)
}

pub(crate) fn designation_json(designation: &Designation) -> Value {
    let mut out = serde_json::Map::new();
    put(&mut out, "language", designation.language.as_deref());
    if let Some((system, code)) = &designation.usage {
        out.insert("use".into(), json!({ "system": system, "code": code }));
    }
    out.insert("value".into(), designation.value.as_str().into());
    Value::Object(out)
}

/// Renders a value set definition as a ValueSet resource.
pub(crate) fn render_value_set(vs: &ValueSetDef) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("resourceType".into(), "ValueSet".into());
    put(&mut out, "id", Some(vs.id.as_str()).filter(|id| !id.is_empty()));
    put(&mut out, "url", Some(vs.url.as_str()));
    put(&mut out, "version", vs.version.as_deref());
    put(&mut out, "name", vs.name.as_deref());
    put(&mut out, "title", vs.title.as_deref());
    put(&mut out, "status", vs.status.as_deref());
    out.insert("compose".into(), compose_json(&vs.compose));
    Value::Object(out)
}

pub(crate) fn compose_json(compose: &Compose) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(inactive) = compose.inactive {
        out.insert("inactive".into(), inactive.into());
    }
    let set_json = |set: &ConceptSet| {
        let mut out = serde_json::Map::new();
        put(&mut out, "system", set.system.as_deref());
        put(&mut out, "version", set.version.as_deref());
        // Displays the table leaves out because they repeat the code system's come back.
        let system = set.system.as_deref().and_then(|s| r4::tables().code_system(s));
        if !set.concepts.is_empty() {
            let concepts = set
                .concepts
                .iter()
                .map(|(code, display)| {
                    let display = display.as_deref().or_else(|| {
                        system
                            .and_then(|cs| cs.find(code))
                            .and_then(|id| system?.concept(id).display.as_deref())
                    });
                    let mut concept = serde_json::Map::new();
                    concept.insert("code".into(), code.as_str().into());
                    put(&mut concept, "display", display);
                    Value::Object(concept)
                })
                .collect();
            out.insert("concept".into(), Value::Array(concepts));
        }
        if !set.filters.is_empty() {
            let filters = set
                .filters
                .iter()
                .map(|f| json!({ "property": f.property, "op": f.op, "value": f.value }))
                .collect();
            out.insert("filter".into(), Value::Array(filters));
        }
        if !set.value_sets.is_empty() {
            out.insert("valueSet".into(), set.value_sets.iter().map(|v| Value::from(v.as_str())).collect());
        }
        Value::Object(out)
    };
    if !compose.include.is_empty() {
        out.insert("include".into(), compose.include.iter().map(set_json).collect());
    }
    if !compose.exclude.is_empty() {
        out.insert("exclude".into(), compose.exclude.iter().map(set_json).collect());
    }
    Value::Object(out)
}

fn put(out: &mut serde_json::Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.insert(key.to_owned(), value.into());
    }
}
