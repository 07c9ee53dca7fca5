//! Validation of FHIR R4 resources against the base specification's StructureDefinitions.
//!
//! One walk over the JSON checks, at every element: that the name is an element of its
//! parent (choice types by their typed names), the cardinality (arrays where and only where
//! the element repeats, never empty, at most `max`; required elements present), the lexical
//! form of primitives, nested resources (`contained`, `Bundle.entry.resource`) as resources,
//! references (format and allowed target types) and required bindings (through the
//! terminology crate). The walk records each complex element; then every error-severity
//! invariant (`constraint.expression`) that applies to it is evaluated with the FHIRPath
//! engine. Issues carry the FHIRPath location (`Patient.name[0].given[1]`).
//!
//! `ele-1` ("all elements must have a value or children") is checked natively; invariants
//! whose expression the engine cannot evaluate (e.g. `htmlChecks()`) are skipped.

mod primitive;

use std::sync::{Arc, OnceLock, RwLock};

use fhir::definitions::{BindingStrength, Definitions, ElementDef, TypeKind, definitions};
use fhir::{Issue, IssueType, OperationOutcome, Severity};
use fhirpath::{Environment, Expression, Node, Value as PathValue};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value as Json;

pub use primitive::problem as primitive_problem;

/// The built-in terminology as the value sets FHIRPath's `memberOf()` asks: for the
/// evaluations of everyone who validates, runs views or evaluates expressions.
pub struct TerminologyValueSets;

/// The one [`TerminologyValueSets`], to hand to an evaluation environment.
pub static TERMINOLOGY: TerminologyValueSets = TerminologyValueSets;

impl fhirpath::ValueSets for TerminologyValueSets {
    fn contains(&self, url: &str, system: &str, code: &str) -> Option<bool> {
        terminology::Terminology::get().validate(url, system, code).ok()
    }

    fn codes(&self, url: &str) -> Option<Vec<(String, String)>> {
        terminology::Terminology::get().expand_codes(url).ok()
    }
}

/// The validator: compiled invariants and the required-binding value sets it has expanded.
pub struct Validator {
    definitions: &'static Definitions,
    /// Invariant expression text -> compiled expression (`None` when the engine cannot parse
    /// it).
    invariants: FxHashMap<&'static str, Option<Expression>>,
    /// Element root (type name or backbone path) -> its required child names (choice stems
    /// end in `[x]`).
    required: FxHashMap<&'static str, Vec<&'static str>>,
    /// Value set url -> its codes, when it can be enumerated.
    value_sets: RwLock<FxHashMap<String, Option<Arc<CodeSet>>>>,
}

/// The codes of an enumerable value set.
struct CodeSet {
    pairs: FxHashSet<(String, String)>,
    codes: FxHashSet<String>,
}

impl Validator {
    /// The validator of the base R4 specification (built once, on first use).
    pub fn r4() -> &'static Validator {
        static VALIDATOR: OnceLock<Validator> = OnceLock::new();
        VALIDATOR.get_or_init(Validator::new)
    }

    fn new() -> Validator {
        let definitions = definitions();
        let mut invariants = FxHashMap::default();
        let mut required: FxHashMap<&'static str, Vec<&'static str>> = FxHashMap::default();
        for type_def in definitions.types() {
            for element in &type_def.elements {
                for constraint in &element.constraints {
                    if constraint.severity == "error" && !NATIVE.contains(&constraint.key) {
                        invariants.entry(constraint.expression).or_insert_with(|| {
                            // dom-3 applies `as()` to many items (`descendants().as(canonical)`),
                            // which FHIRPath makes an error; it means a filter.
                            let text =
                                constraint.expression.replace("descendants().as(", "descendants().ofType(");
                            Expression::parse(&text).ok()
                        });
                    }
                }
                if element.min > 0
                    && let Some((parent, name)) = element.path.rsplit_once('.')
                {
                    required.entry(parent).or_default().push(name);
                }
            }
        }
        Validator { definitions, invariants, required, value_sets: RwLock::new(FxHashMap::default()) }
    }

    /// The invariant expressions the FHIRPath engine cannot parse (skipped).
    pub fn unparsed_invariants(&self) -> Vec<&'static str> {
        let mut unparsed: Vec<&'static str> =
            self.invariants.iter().filter(|(_, e)| e.is_none()).map(|(text, _)| *text).collect();
        unparsed.sort_unstable();
        unparsed
    }

    /// Every issue of `resource` (errors and warnings), in document order of the walk, then
    /// the invariants.
    pub fn validate(&self, resource: &Json) -> Vec<Issue> {
        let mut walk = Walk { validator: self, issues: Vec::new(), nodes: Vec::new() };
        let root = resource.get("resourceType").and_then(Json::as_str).unwrap_or("Resource").to_string();
        walk.resource(resource, &root, None);
        let nodes = std::mem::take(&mut walk.nodes);
        // `%rootResource` is the resource validated: contained resources' local references
        // point into it.
        let silent = |_: &str, _: &fhirpath::Collection<'_>| {};
        let environment = Environment {
            root_resource: Some(resource),
            trace: Some(&silent),
            value_sets: Some(&TERMINOLOGY),
            ..Environment::default()
        };
        for pending in &nodes {
            walk.invariants(pending, &environment);
        }
        walk.issues
    }

    /// An `OperationOutcome` of `validate`'s issues (a single information issue when there
    /// are none, as `$validate` answers).
    pub fn outcome(&self, resource: &Json) -> OperationOutcome {
        outcome_of(self.validate(resource))
    }

    fn code_set(&self, url: &str) -> Option<Arc<CodeSet>> {
        let url = url.split('|').next().unwrap_or(url);
        if let Ok(cache) = self.value_sets.read()
            && let Some(known) = cache.get(url)
        {
            return known.clone();
        }
        let expanded =
            terminology::Terminology::get().expand_codes(url).ok().filter(|c| !c.is_empty()).map(|codes| {
                Arc::new(CodeSet {
                    codes: codes.iter().map(|(_, c)| c.clone()).collect(),
                    pairs: codes.into_iter().collect(),
                })
            });
        if let Ok(mut cache) = self.value_sets.write() {
            cache.insert(url.to_string(), expanded.clone());
        }
        expanded
    }
}

/// Invariants checked by the walk itself, not by evaluating their expression.
const NATIVE: &[&str] = &["ele-1"];

/// The outcome of a list of issues: a single information issue when there are none.
pub fn outcome_of(issues: Vec<Issue>) -> OperationOutcome {
    if issues.is_empty() {
        return OperationOutcome::information("no issues: the resource is valid");
    }
    let mut outcome = OperationOutcome::single(issues[0].clone());
    for issue in issues.into_iter().skip(1) {
        outcome.push(issue);
    }
    outcome
}

/// Whether any issue is an error.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
}

/// A complex element found by the walk, to check against its invariants afterwards.
struct Pending<'j> {
    json: &'j Json,
    /// The element's FHIR type (`HumanName`, `Patient`) or backbone path.
    type_name: &'static str,
    /// Where its children are defined.
    root: &'static str,
    /// The element definition it instantiates (`None` for a resource's root).
    element: Option<&'static ElementDef>,
    /// The nearest resource: `%resource`.
    resource: &'j Json,
    path: String,
}

struct Walk<'v, 'j> {
    validator: &'v Validator,
    issues: Vec<Issue>,
    nodes: Vec<Pending<'j>>,
}

impl<'j> Walk<'_, 'j> {
    fn error(&mut self, code: IssueType, path: &str, message: impl Into<String>) {
        self.issues.push(Issue::new(Severity::Error, code, message).at(path.to_string()));
    }

    fn resource(&mut self, json: &'j Json, path: &str, element: Option<&'static ElementDef>) {
        let definitions = self.validator.definitions;
        let Some(object) = json.as_object() else {
            self.error(IssueType::Structure, path, "expected a resource (a JSON object)");
            return;
        };
        let Some(type_name) = object.get("resourceType").and_then(Json::as_str) else {
            self.error(IssueType::Required, path, "a resource needs a resourceType");
            return;
        };
        let Some(type_def) =
            definitions.type_def(type_name).filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
        else {
            self.error(
                IssueType::Value,
                &format!("{path}.resourceType"),
                format!("'{type_name}' is not an R4 resource type"),
            );
            return;
        };
        let type_name = type_def.name;
        self.object(json, type_name, path, json);
        self.nodes.push(Pending {
            json,
            type_name,
            root: type_name,
            element,
            resource: json,
            path: path.to_string(),
        });
    }

    /// The properties of a complex element whose children are defined under `root`.
    fn object(&mut self, json: &'j Json, root: &'static str, path: &str, resource: &'j Json) {
        let definitions = self.validator.definitions;
        let Some(object) = json.as_object() else {
            self.error(IssueType::Structure, path, "expected an object");
            return;
        };
        let is_resource_root = !root.contains('.') && definitions.is_resource_type(root);
        // ele-1 is about elements; a resource with nothing but its type is valid.
        if object.is_empty() {
            self.error(IssueType::Invariant, path, "an element must have a value or children (ele-1)");
        }
        let mut choices: Vec<(&'static str, &str)> = Vec::new();
        for (name, child) in object {
            if is_resource_root && name == "resourceType" {
                continue;
            }
            if let Some(primitive_name) = name.strip_prefix('_') {
                self.sidecar(object, primitive_name, child, root, path, resource);
                continue;
            }
            let here = format!("{path}.{name}");
            // Resource.id is typed System.String in R4; its rule is the `id` type's.
            if is_resource_root
                && name == "id"
                && let Some(problem) = primitive::problem("id", child)
            {
                self.error(IssueType::Value, &here, problem);
                continue;
            }
            let Some(resolved) = definitions.child(root, name) else {
                let hint = if definitions.choice(root, name).is_some() {
                    format!(
                        "'{name}' is a choice element: name it with its type, e.g. {name}String or {name}Quantity"
                    )
                } else {
                    format!("unknown element '{name}' in {root}")
                };
                self.error(IssueType::Structure, &here, hint);
                continue;
            };
            let element: &'static ElementDef = resolved.element;
            let type_code: Option<&'static str> = resolved.type_code;
            if element.path.ends_with("[x]") {
                if let Some((_, first)) = choices.iter().find(|(path, _)| *path == element.path) {
                    let stem = element.path.rsplit('.').next().unwrap_or(element.path);
                    self.error(
                        IssueType::Structure,
                        &here,
                        format!("only one of {stem} may be present, and {first} is already"),
                    );
                    continue;
                }
                choices.push((element.path, name));
            }
            let repeats = element.max != Some(1);
            let items: Vec<&'j Json> = match child {
                Json::Array(items) if repeats => {
                    if items.is_empty() {
                        self.error(
                            IssueType::Structure,
                            &here,
                            "an array must not be empty (leave the element out)",
                        );
                    }
                    if let Some(max) = element.max
                        && items.len() > max as usize
                    {
                        self.error(
                            IssueType::Structure,
                            &here,
                            format!("at most {max} allowed, {} found", items.len()),
                        );
                    }
                    items.iter().collect()
                }
                Json::Array(_) => {
                    self.error(
                        IssueType::Structure,
                        &here,
                        format!("'{name}' does not repeat: expected a single value, not an array"),
                    );
                    continue;
                }
                _ if repeats => {
                    self.error(IssueType::Structure, &here, format!("'{name}' repeats: expected an array"));
                    continue;
                }
                item => vec![item],
            };
            let sidecar = object.get(&format!("_{name}"));
            for (index, item) in items.into_iter().enumerate() {
                let item_path = if repeats { format!("{here}[{index}]") } else { here.clone() };
                if item.is_null() {
                    let explained = sidecar
                        .and_then(|s| if repeats { s.get(index) } else { Some(s) })
                        .is_some_and(|s| !s.is_null());
                    if !repeats || !explained {
                        self.error(
                            IssueType::Structure,
                            &item_path,
                            "null is only allowed in a primitive array whose _ sibling carries that entry",
                        );
                    }
                    continue;
                }
                self.item(item, element, type_code, &item_path, resource);
            }
        }
        self.required_children(object, root, path);
    }

    fn item(
        &mut self,
        item: &'j Json,
        element: &'static ElementDef,
        type_code: Option<&'static str>,
        path: &str,
        resource: &'j Json,
    ) {
        let definitions = self.validator.definitions;
        let Some(type_code) = type_code else { return };
        if type_code.starts_with("http://hl7.org/fhirpath/System.") {
            if !item.is_string() {
                self.error(IssueType::Structure, path, "expected a string");
            }
            return;
        }
        if type_code == "Resource" {
            self.resource(item, path, Some(element));
            return;
        }
        let kind = definitions.type_def(type_code).map(|t| t.kind);
        if kind == Some(TypeKind::PrimitiveType) {
            if let Some(problem) = primitive::problem(type_code, item) {
                self.error(IssueType::Value, path, problem);
            } else if let Some(code) = item.as_str() {
                if let Some(warning) = primitive::warning(type_code, item) {
                    self.issues
                        .push(Issue::new(Severity::Warning, IssueType::Value, warning).at(path.to_string()));
                }
                self.bound_code(element, code, path);
            }
            return;
        }
        let root = definitions.children_root(element, Some(type_code));
        self.object(item, root, path, resource);
        match type_code {
            "Reference" => self.reference(item, element, path),
            "Coding" | "CodeableConcept" => self.bound_concept(element, type_code, item, path),
            _ => {}
        }
        self.nodes.push(Pending {
            json: item,
            type_name: type_code,
            root,
            element: Some(element),
            resource,
            path: path.to_string(),
        });
    }

    /// `_name`: the id and extensions of primitive `name`.
    fn sidecar(
        &mut self,
        object: &serde_json::Map<String, Json>,
        name: &str,
        sidecar: &'j Json,
        root: &'static str,
        path: &str,
        resource: &'j Json,
    ) {
        let definitions = self.validator.definitions;
        let here = format!("{path}._{name}");
        let Some(resolved) = definitions.child(root, name) else {
            self.error(IssueType::Structure, &here, format!("unknown element '{name}' in {root}"));
            return;
        };
        let Some(type_code) = resolved
            .type_code
            .filter(|t| definitions.type_def(t).is_some_and(|d| d.kind == TypeKind::PrimitiveType))
        else {
            self.error(
                IssueType::Structure,
                &here,
                format!("'_{name}' is only allowed for a primitive element"),
            );
            return;
        };
        let repeats = resolved.element.max != Some(1);
        let entries: Vec<&'j Json> = match (sidecar, repeats) {
            (Json::Array(entries), true) => {
                let values = object.get(name).and_then(Json::as_array).map_or(0, Vec::len);
                if values != 0 && values != entries.len() {
                    self.error(
                        IssueType::Structure,
                        &here,
                        format!("'_{name}' must have as many entries as '{name}'"),
                    );
                }
                entries.iter().collect()
            }
            (entry, false) if !entry.is_array() => vec![entry],
            _ => {
                self.error(IssueType::Structure, &here, "the array shape must match the primitive's");
                return;
            }
        };
        for (index, entry) in entries.into_iter().enumerate() {
            if entry.is_null() {
                continue;
            }
            let entry_path = if repeats { format!("{here}[{index}]") } else { here.clone() };
            if entry.get("value").is_some() {
                self.error(
                    IssueType::Structure,
                    &entry_path,
                    "a primitive's value goes in the element itself, not in its _ sibling",
                );
                continue;
            }
            self.object(entry, type_code, &entry_path, resource);
        }
    }

    fn required_children(&mut self, object: &serde_json::Map<String, Json>, root: &'static str, path: &str) {
        let Some(required) = self.validator.required.get(root) else { return };
        for &name in required {
            let present = match name.strip_suffix("[x]") {
                Some(stem) => object.keys().any(|key| {
                    key.len() > stem.len()
                        && key.starts_with(stem)
                        && self.validator.definitions.child(root, key).is_some()
                }),
                None => object.contains_key(name) || object.contains_key(&format!("_{name}")),
            };
            if !present {
                self.error(
                    IssueType::Required,
                    &format!("{path}.{name}"),
                    format!("'{name}' is required (minimum cardinality 1)"),
                );
            }
        }
    }

    fn reference(&mut self, reference: &Json, element: &ElementDef, path: &str) {
        let Some(target) = reference.get("reference").and_then(Json::as_str) else { return };
        if let Some(local) = target.strip_prefix('#') {
            let _ = local;
            return;
        }
        if target.starts_with("urn:") || target.contains("://") {
            return;
        }
        let mut parts = target.split('/');
        let (Some(target_type), Some(id)) = (parts.next(), parts.next()) else {
            self.error(
                IssueType::Value,
                &format!("{path}.reference"),
                format!("'{target}' is not a reference: expected Type/id"),
            );
            return;
        };
        let definitions = self.validator.definitions;
        if !definitions.is_resource_type(target_type) {
            self.error(
                IssueType::Value,
                &format!("{path}.reference"),
                format!("'{target_type}' is not a resource type"),
            );
            return;
        }
        if !fhir::is_valid_id(id) {
            self.error(IssueType::Value, &format!("{path}.reference"), format!("'{id}' is not a valid id"));
            return;
        }
        let allowed: Vec<&str> = element
            .types
            .iter()
            .filter(|t| t.code == "Reference")
            .flat_map(|t| t.target_types.iter().copied())
            .collect();
        if !allowed.is_empty()
            && !allowed
                .iter()
                .any(|a| *a == target_type || *a == "Resource" || definitions.is_subtype(target_type, a))
        {
            self.error(
                IssueType::Value,
                &format!("{path}.reference"),
                format!("a reference to {target_type} is not allowed here; allowed: {}", allowed.join(", ")),
            );
        }
    }

    fn required_value_set(element: &ElementDef) -> Option<&'static str> {
        element.binding.as_ref().filter(|b| b.strength == BindingStrength::Required).map(|b| b.value_set)
    }

    fn bound_code(&mut self, element: &ElementDef, code: &str, path: &str) {
        let Some(url) = Self::required_value_set(element) else { return };
        let Some(codes) = self.validator.code_set(url) else { return };
        if !codes.codes.contains(code) {
            self.error(
                IssueType::CodeInvalid,
                path,
                format!("'{code}' is not in the required value set {url}"),
            );
        }
    }

    fn bound_concept(&mut self, element: &ElementDef, type_code: &str, item: &Json, path: &str) {
        let Some(url) = Self::required_value_set(element) else { return };
        let Some(codes) = self.validator.code_set(url) else { return };
        let member = |coding: &Json| {
            let code = coding.get("code").and_then(Json::as_str).unwrap_or_default();
            match coding.get("system").and_then(Json::as_str) {
                Some(system) => codes.pairs.contains(&(system.to_string(), code.to_string())),
                None => false,
            }
        };
        let codings: Vec<&Json> = match type_code {
            "Coding" => vec![item],
            _ => item.get("coding").and_then(Json::as_array).map(|c| c.iter().collect()).unwrap_or_default(),
        };
        // A concept given only as text carries no code to check.
        if codings.is_empty() || codings.iter().any(|c| member(c)) {
            return;
        }
        let shown: Vec<String> = codings
            .iter()
            .map(|c| {
                format!(
                    "{}#{}",
                    c.get("system").and_then(Json::as_str).unwrap_or("(no system)"),
                    c.get("code").and_then(Json::as_str).unwrap_or("(no code)")
                )
            })
            .collect();
        self.error(
            IssueType::CodeInvalid,
            path,
            format!("{} is not in the required value set {url}", shown.join(", ")),
        );
    }

    fn invariants(&mut self, pending: &Pending<'j>, environment: &Environment<'j>) {
        let definitions = self.validator.definitions;
        let mut seen: Vec<&str> = Vec::new();
        let own = pending.element.map(|e| e.constraints.as_slice()).unwrap_or_default();
        // A type's invariants, and those of the types it derives from (`dom-*` of
        // DomainResource for every resource, `qty-3` of Quantity for a Duration).
        let mut of_types: Vec<&'static fhir::definitions::Constraint> = Vec::new();
        let mut current = definitions.type_def(pending.type_name);
        while let Some(type_def) = current {
            if let Some(root) = type_def.elements.first() {
                of_types.extend(root.constraints.iter());
            }
            current = type_def.base.and_then(|base| definitions.type_def(base));
        }
        for constraint in own.iter().chain(of_types) {
            if constraint.severity != "error"
                || NATIVE.contains(&constraint.key)
                || seen.contains(&constraint.key)
            {
                continue;
            }
            seen.push(constraint.key);
            let Some(Some(expression)) = self.validator.invariants.get(constraint.expression) else {
                continue;
            };
            let node = Node {
                json: Some(pending.json),
                sidecar: None,
                type_name: pending.type_name,
                root: pending.root,
            };
            let result = expression.evaluate_collection(
                vec![PathValue::Node(node)],
                vec![PathValue::Node(Node::resource(pending.resource))],
                environment,
            );
            if let Ok(result) = result
                && result.len() == 1
                && matches!(result[0], PathValue::Boolean(false))
            {
                self.issues.push(
                    Issue::new(
                        Severity::Error,
                        IssueType::Invariant,
                        format!("{} ({})", constraint.human, constraint.key),
                    )
                    .at(pending.path.clone()),
                );
            }
        }
    }
}
