//! The FHIR R4 definitions the binary carries: every resource and data type, its elements
//! (cardinality, types, reference targets, bindings), its invariants, and the compartments.
//!
//! The table is generated from the specification (see `derive`) and embedded; it is parsed
//! once, on first use, into structures that borrow from the embedded text.

pub mod derive;

use std::collections::HashMap;
use std::sync::LazyLock;

use rustc_hash::FxHashMap;

static TABLE: &str = include_str!("../../data/r4-definitions.tsv");

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| Definitions::parse(TABLE));

/// The embedded R4 definitions.
pub fn definitions() -> &'static Definitions {
    &DEFINITIONS
}

/// What a StructureDefinition defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeKind {
    PrimitiveType,
    ComplexType,
    Resource,
    Logical,
}

/// A resource or data type.
#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub kind: TypeKind,
    /// The type this one specializes or constrains (`DomainResource` for `Patient`).
    pub base: Option<&'static str>,
    pub is_abstract: bool,
    pub url: &'static str,
    /// The snapshot elements, root first, in definition order.
    pub elements: Vec<ElementDef>,
}

/// One element of a type (`Patient.name`, `Observation.value[x]`).
#[derive(Debug)]
pub struct ElementDef {
    pub path: &'static str,
    pub min: u32,
    /// `None` for `*`.
    pub max: Option<u32>,
    pub types: Vec<ElementType>,
    /// For elements defined as "same as" another (`Questionnaire.item.item`): that element's path.
    pub content_reference: Option<&'static str>,
    pub binding: Option<Binding>,
    pub constraints: Vec<Constraint>,
    /// Part of the summary view (`_summary=true`).
    pub is_summary: bool,
}

/// One allowed type of an element, with reference targets for `Reference`/`canonical`.
#[derive(Debug)]
pub struct ElementType {
    pub code: &'static str,
    pub target_types: Vec<&'static str>,
}

/// How strongly an element's codes are bound to a value set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingStrength {
    Required,
    Extensible,
    Preferred,
}

/// An element's terminology binding.
#[derive(Debug)]
pub struct Binding {
    pub strength: BindingStrength,
    /// Canonical URL of the value set, possibly with `|version`.
    pub value_set: &'static str,
}

/// An invariant (`constraint`) with its FHIRPath expression.
#[derive(Debug)]
pub struct Constraint {
    pub key: &'static str,
    /// `error` or `warning`.
    pub severity: &'static str,
    pub human: &'static str,
    pub expression: &'static str,
}

/// A JSON property of an element resolved against the definitions.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedChild<'d> {
    pub element: &'d ElementDef,
    /// The concrete type chosen by the property name for a choice element (`Quantity` for
    /// `valueQuantity`), or the element's only type.
    pub type_code: Option<&'d str>,
}

/// A name under a root, as [`Definitions::member`] resolves it.
#[derive(Debug, Clone, Copy)]
pub enum Member<'d> {
    /// The FHIRPath name of a choice element (`value` for `Observation.value[x]`).
    Choice(&'d ElementDef),
    /// A JSON property name: what [`Definitions::child`] gives.
    Child(ResolvedChild<'d>),
}

/// Where a child's element definition is: (type index, element index).
#[derive(Clone, Copy, Debug)]
struct Slot {
    type_index: u32,
    element_index: u32,
    /// For a concrete choice key (`valueQuantity`), the chosen type's position in the
    /// element's types.
    chosen: Option<u32>,
}

/// All definitions, indexed.
#[derive(Debug)]
pub struct Definitions {
    types: Vec<TypeDef>,
    type_index: FxHashMap<&'static str, usize>,
    element_index: FxHashMap<&'static str, (usize, usize)>,
    /// root (a type name or backbone element path) -> JSON property name -> element. Choice
    /// elements appear under each concrete name (`valueQuantity`) and their stem (`value`).
    children: FxHashMap<&'static str, FxHashMap<String, Slot>>,
    /// compartment -> resource type -> search parameters linking a resource to the compartment
    compartments: HashMap<&'static str, HashMap<&'static str, Vec<&'static str>>>,
}

impl Definitions {
    fn parse(table: &'static str) -> Self {
        let mut types: Vec<TypeDef> = Vec::new();
        let mut compartments: HashMap<&str, HashMap<&str, Vec<&str>>> = HashMap::new();
        for line in table.lines() {
            let mut fields = line.split('\t');
            match fields.next() {
                Some("T") => {
                    let name = fields.next().unwrap_or("");
                    let kind = match fields.next().unwrap_or("") {
                        "primitive-type" => TypeKind::PrimitiveType,
                        "complex-type" => TypeKind::ComplexType,
                        "resource" => TypeKind::Resource,
                        _ => TypeKind::Logical,
                    };
                    let base = fields.next().filter(|b| *b != "-");
                    let is_abstract = fields.next() == Some("1");
                    let url = fields.next().unwrap_or("");
                    types.push(TypeDef { name, kind, base, is_abstract, url, elements: Vec::new() });
                }
                Some("E") => {
                    let Some(current) = types.last_mut() else { continue };
                    let path = fields.next().unwrap_or("");
                    let min = fields.next().and_then(|m| m.parse().ok()).unwrap_or(0);
                    let max = fields.next().and_then(|m| m.parse().ok());
                    let type_field = fields.next().unwrap_or("-");
                    let strength = fields.next().unwrap_or("-");
                    let value_set = fields.next().unwrap_or("-");
                    let is_summary = fields.next() == Some("1");
                    let (types_list, content_reference) = if let Some(r) = type_field.strip_prefix('#') {
                        (Vec::new(), Some(r))
                    } else if type_field == "-" {
                        (Vec::new(), None)
                    } else {
                        (type_field.split(',').map(parse_element_type).collect(), None)
                    };
                    let binding = match strength {
                        "required" => Some(BindingStrength::Required),
                        "extensible" => Some(BindingStrength::Extensible),
                        "preferred" => Some(BindingStrength::Preferred),
                        _ => None,
                    }
                    .map(|strength| Binding { strength, value_set });
                    current.elements.push(ElementDef {
                        path,
                        min,
                        max,
                        types: types_list,
                        content_reference,
                        binding,
                        constraints: Vec::new(),
                        is_summary,
                    });
                }
                Some("C") => {
                    let Some(current) = types.last_mut() else { continue };
                    let path = fields.next().unwrap_or("");
                    let constraint = Constraint {
                        key: fields.next().unwrap_or(""),
                        severity: fields.next().unwrap_or(""),
                        human: fields.next().unwrap_or(""),
                        expression: fields.next().unwrap_or(""),
                    };
                    if let Some(element) = current.elements.iter_mut().rev().find(|e| e.path == path) {
                        element.constraints.push(constraint);
                    }
                }
                Some("K") => {
                    let compartment = fields.next().unwrap_or("");
                    let resource_type = fields.next().unwrap_or("");
                    let params = fields.next().unwrap_or("").split(',').collect();
                    compartments.entry(compartment).or_default().insert(resource_type, params);
                }
                _ => {}
            }
        }
        let mut type_index = FxHashMap::default();
        let mut element_index = FxHashMap::default();
        let mut children: FxHashMap<&'static str, FxHashMap<String, Slot>> = FxHashMap::default();
        for (t, ty) in types.iter().enumerate() {
            type_index.insert(ty.name, t);
            for (e, element) in ty.elements.iter().enumerate() {
                element_index.insert(element.path, (t, e));
                let Some((parent, name)) = element.path.rsplit_once('.') else { continue };
                let table = children.entry(parent).or_default();
                let slot = Slot { type_index: t as u32, element_index: e as u32, chosen: None };
                match name.strip_suffix("[x]") {
                    Some(stem) => {
                        table.insert(stem.to_string(), slot);
                        for (i, choice) in element.types.iter().enumerate() {
                            let key = choice_key(stem, choice.code);
                            table.insert(key, Slot { chosen: Some(i as u32), ..slot });
                        }
                    }
                    None => {
                        table.insert(name.to_string(), slot);
                    }
                }
            }
        }
        Definitions { types, type_index, element_index, children, compartments }
    }

    /// A type by name (`Patient`, `HumanName`, `string`).
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.type_index.get(name).map(|&i| &self.types[i])
    }

    /// All types.
    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.iter()
    }

    /// Whether `name` is a resource type a client can create (not abstract).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.type_def(name).is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    /// The names of all concrete resource types, in definition order.
    pub fn resource_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.iter().filter(|t| t.kind == TypeKind::Resource && !t.is_abstract).map(|t| t.name)
    }

    /// The element at a full path (`Patient.contact.name`).
    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.element_index.get(path).map(|&(t, e)| &self.types[t].elements[e])
    }

    /// Whether `derived` is `ancestor` or specializes it (`Patient` is a `DomainResource`).
    pub fn is_subtype(&self, derived: &str, ancestor: &str) -> bool {
        let mut current = Some(derived);
        while let Some(name) = current {
            if name == ancestor {
                return true;
            }
            current = self.type_def(name).and_then(|t| t.base);
        }
        false
    }

    /// Where the children of `element` are defined: its own path for backbone elements, the
    /// referenced path for `contentReference`, or the type's name for a typed element.
    pub fn children_root<'a>(&'a self, element: &'a ElementDef, type_code: Option<&'a str>) -> &'a str {
        if let Some(target) = element.content_reference {
            return target.rsplit_once('#').map_or(target, |(_, p)| p);
        }
        match type_code.or_else(|| element.types.first().map(|t| t.code)) {
            Some("BackboneElement" | "Element") if element.path.contains('.') => element.path,
            Some(code) => code,
            None => element.path,
        }
    }

    /// Resolves JSON property `name` of an object whose elements are rooted at `parent_root`
    /// (a type name like `HumanName` or a backbone path like `Patient.contact`). Handles choice
    /// elements: `valueQuantity` resolves to `Observation.value[x]` with type `Quantity`.
    pub fn child(&self, parent_root: &str, name: &str) -> Option<ResolvedChild<'_>> {
        let (element, slot) = self.slot(parent_root, name)?;
        if element.path.ends_with("[x]") {
            // The stem (`value`) is not a JSON property name.
            let chosen = slot.chosen?;
            return Some(ResolvedChild { element, type_code: Some(element.types[chosen as usize].code) });
        }
        let type_code = if element.types.len() == 1 { Some(element.types[0].code) } else { None };
        Some(ResolvedChild { element, type_code })
    }

    /// The choice element `name[x]` under `parent_root`, by its FHIRPath name (`value`).
    pub fn choice(&self, parent_root: &str, name: &str) -> Option<&ElementDef> {
        let (element, slot) = self.slot(parent_root, name)?;
        (slot.chosen.is_none() && element.path.ends_with("[x]")).then_some(element)
    }

    /// [`Definitions::choice`] and else [`Definitions::child`] from one lookup: FHIRPath
    /// member access asks both for every step, and each walks the base chain.
    pub fn member(&self, parent_root: &str, name: &str) -> Option<Member<'_>> {
        let (element, slot) = self.slot(parent_root, name)?;
        if element.path.ends_with("[x]") {
            return Some(match slot.chosen {
                None => Member::Choice(element),
                Some(chosen) => Member::Child(ResolvedChild {
                    element,
                    type_code: Some(element.types[chosen as usize].code),
                }),
            });
        }
        let type_code = if element.types.len() == 1 { Some(element.types[0].code) } else { None };
        Some(Member::Child(ResolvedChild { element, type_code }))
    }

    fn slot(&self, parent_root: &str, name: &str) -> Option<(&ElementDef, Slot)> {
        let mut root = Some(parent_root);
        while let Some(current_root) = root {
            if let Some(slot) = self.children.get(current_root).and_then(|table| table.get(name)) {
                let element = &self.types[slot.type_index as usize].elements[slot.element_index as usize];
                return Some((element, *slot));
            }
            // A type name root inherits from its base (e.g. `Duration` from `Quantity`).
            root = if current_root.contains('.') {
                None
            } else {
                self.type_def(current_root).and_then(|t| t.base)
            };
        }
        None
    }

    /// For a compartment (`Patient`), the search parameters that link each resource type to it.
    pub fn compartment(&self, compartment: &str) -> Option<&HashMap<&'static str, Vec<&'static str>>> {
        self.compartments.get(compartment)
    }
}

/// The JSON name of choice element `stem` (`value`) in type `code` (`valueQuantity`,
/// `valueString`).
pub fn choice_key(stem: &str, code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => format!("{stem}{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => stem.to_string(),
    }
}

fn parse_element_type(spec: &'static str) -> ElementType {
    match spec.split_once('(') {
        Some((code, targets)) => {
            ElementType { code, target_types: targets.trim_end_matches(')').split('|').collect() }
        }
        None => ElementType { code: spec, target_types: Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_every_r4_resource_type() {
        let defs = definitions();
        let count = defs.resource_types().count();
        assert_eq!(count, 146, "R4 has 146 concrete resource types");
        assert!(defs.is_resource_type("Patient"));
        assert!(defs.is_resource_type("Bundle"));
        assert!(!defs.is_resource_type("DomainResource"));
        assert!(!defs.is_resource_type("HumanName"));
        assert!(!defs.is_resource_type("Patients"));
        assert!(defs.is_subtype("Patient", "Resource"));
        assert!(defs.is_subtype("Duration", "Quantity"));
        assert!(!defs.is_subtype("Quantity", "Duration"));
    }

    #[test]
    fn elements_carry_cardinality_types_and_bindings() {
        let defs = definitions();
        let birth = defs.element("Patient.birthDate").unwrap();
        assert_eq!((birth.min, birth.max), (0, Some(1)));
        assert_eq!(birth.types[0].code, "date");
        let status = defs.element("Observation.status").unwrap();
        assert_eq!(status.min, 1);
        let binding = status.binding.as_ref().unwrap();
        assert_eq!(binding.strength, BindingStrength::Required);
        assert!(binding.value_set.starts_with("http://hl7.org/fhir/ValueSet/observation-status"));
        let subject = defs.element("Observation.subject").unwrap();
        assert!(subject.types[0].target_types.contains(&"Patient"));
        let item = defs.element("Questionnaire.item.item").unwrap();
        assert_eq!(item.content_reference, Some("Questionnaire.item"));
        let pat1 = defs.element("Patient.contact").unwrap();
        assert!(pat1.constraints.iter().any(|c| c.key == "pat-1"));
    }

    #[test]
    fn resolves_choice_and_inherited_children() {
        let defs = definitions();
        let value = defs.child("Observation", "valueQuantity").unwrap();
        assert_eq!(value.element.path, "Observation.value[x]");
        assert_eq!(value.type_code, Some("Quantity"));
        let deceased = defs.child("Patient", "deceasedDateTime").unwrap();
        assert_eq!(deceased.type_code, Some("dateTime"));
        assert!(defs.child("Observation", "valueFoo").is_none());
        assert!(defs.child("Observation", "value").is_none(), "the stem is not a JSON property");
        assert_eq!(defs.choice("Observation", "value").unwrap().path, "Observation.value[x]");
        assert!(defs.choice("Observation", "status").is_none());
        // `member` agrees with `choice` and then `child`.
        for (root, name) in [
            ("Observation", "value"),
            ("Observation", "valueQuantity"),
            ("Observation", "status"),
            ("Observation", "nosuch"),
            ("Duration", "code"),
            ("Patient.contact", "relationship"),
        ] {
            match defs.member(root, name) {
                Some(Member::Choice(element)) => {
                    assert_eq!(defs.choice(root, name).map(|e| e.path), Some(element.path))
                }
                Some(Member::Child(child)) => {
                    assert!(defs.choice(root, name).is_none());
                    let expected = defs.child(root, name).unwrap();
                    assert_eq!(
                        (child.element.path, child.type_code),
                        (expected.element.path, expected.type_code)
                    );
                }
                None => assert!(defs.choice(root, name).is_none() && defs.child(root, name).is_none()),
            }
        }
        assert!(defs.child("Patient", "meta").is_some());
        let given = defs.child("HumanName", "given").unwrap();
        assert_eq!(given.element.max, None);
        let contact = defs.child("Patient", "contact").unwrap();
        let root = defs.children_root(contact.element, contact.type_code);
        assert_eq!(root, "Patient.contact");
        assert!(defs.child(root, "relationship").is_some());
        let code = defs.child("Duration", "code").unwrap();
        assert_eq!(code.element.path, "Duration.code");
    }

    #[test]
    fn patient_compartment_is_known() {
        let compartment = definitions().compartment("Patient").unwrap();
        assert_eq!(compartment["Observation"], vec!["subject", "performer"]);
        assert!(!compartment.contains_key("Organization"));
    }
}
