//! Evaluation of a parsed expression over FHIR JSON.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use fhir::definitions::{ElementDef, Member, ResolvedChild, TypeKind, definitions};
use fhir::{DateTime, Precision, Time};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use serde_json::Value as Json;

use crate::Error;
use crate::ast::{BinaryOp, Expr, Literal, TypeSpecifier};
use crate::value::{
    Collection, Node, Quantity, TypeInfo, Value, compare_date_times, compare_times, is_primitive_type,
};

/// Resolves references for `resolve()` beyond the evaluated resource itself (e.g. from a
/// store). Returned resources must outlive the evaluation.
pub trait Resolver<'a> {
    /// The resource a reference (`Patient/1`, an absolute URL) points at.
    fn resolve(&self, reference: &str) -> Option<&'a Json>;
}

/// Receives `trace()` output: the name and the traced collection.
pub type TraceSink<'a> = dyn Fn(&str, &Collection<'a>) + Sync;

/// The value sets `memberOf()` asks about: the caller's terminology (the language knows none
/// of its own). Without one, membership is unknown and `memberOf()` is empty, as the
/// specification says for a value set the evaluator cannot use.
pub trait ValueSets: Sync {
    /// Whether `system|code` is in value set `url`; `None` when that is unknown.
    fn contains(&self, url: &str, system: &str, code: &str) -> Option<bool>;
    /// Every (system, code) of value set `url`; `None` when it cannot be expanded.
    fn codes(&self, url: &str) -> Option<Vec<(String, String)>>;
}

/// Everything an evaluation can see besides its input.
pub struct Environment<'a> {
    /// `%resource` / `%rootResource` / `%context` default to the input; set to give
    /// `resolve()` a containing Bundle, for example.
    pub root: Option<&'a Json>,
    /// `%rootResource` when it differs from `%resource`: the container of a contained
    /// resource.
    pub root_resource: Option<&'a Json>,
    /// Extra `%variables`.
    pub variables: HashMap<String, Collection<'a>>,
    pub resolver: Option<&'a dyn Resolver<'a>>,
    /// Strict semantic checking: unknown elements and mismatched type names are errors.
    pub strict: bool,
    /// Where `trace()` output goes (stderr when `None`).
    pub trace: Option<&'a TraceSink<'a>>,
    /// The instant `now()`/`today()` report; fixed for the whole evaluation.
    pub now: DateTime,
    /// What `memberOf()` asks.
    pub value_sets: Option<&'a dyn ValueSets>,
}

impl Default for Environment<'_> {
    fn default() -> Self {
        let mut now = DateTime::now_utc();
        now.offset_minutes = Some(0);
        Environment {
            root: None,
            root_resource: None,
            variables: HashMap::new(),
            resolver: None,
            strict: false,
            trace: None,
            now,
            value_sets: None,
        }
    }
}

/// The iteration state of a lambda argument: `$this`, `$index`, `$total`.
#[derive(Clone)]
pub(crate) struct Frame<'a> {
    pub this: Option<Value<'a>>,
    pub index: Option<usize>,
    pub total: Option<Collection<'a>>,
}

pub(crate) struct Evaluator<'a, 'e> {
    pub env: &'e Environment<'a>,
    pub context: Collection<'a>,
    pub root: Collection<'a>,
    /// Items produced so far by this evaluation, against [`MAX_WORK`].
    pub work: std::cell::Cell<usize>,
}

/// Items one evaluation may produce in all its steps. An expression from outside (a view's
/// column) can multiply collections (`descendants().select(descendants())`); real
/// expressions over one resource produce thousands at most.
pub(crate) const MAX_WORK: usize = 5_000_000;

pub(crate) type Result<T> = std::result::Result<T, Error>;

pub(crate) fn error<T>(message: impl Into<String>) -> Result<T> {
    Err(Error::eval(message))
}

/// The single item of a collection (`None` when empty); more than one item is an error.
pub(crate) fn singleton<'a>(collection: &Collection<'a>, what: &str) -> Result<Option<Value<'a>>> {
    match collection.len() {
        0 => Ok(None),
        1 => Ok(Some(collection[0].system().into_owned())),
        n => error(format!("{what} expects a single item, got a collection of {n}")),
    }
}

/// Singleton evaluation to a Boolean: a single Boolean is itself, any other single item is
/// `true`, empty is unknown.
pub(crate) fn to_boolean(collection: &Collection<'_>, what: &str) -> Result<Option<bool>> {
    Ok(match singleton(collection, what)? {
        None => None,
        Some(Value::Boolean(b)) => Some(b),
        Some(_) => Some(true),
    })
}

/// A criterion (`where`, `all`, `iif`): empty, or exactly one Boolean.
pub(crate) fn criterion(collection: &Collection<'_>, what: &str) -> Result<Option<bool>> {
    match singleton(collection, what)? {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(b)),
        Some(other) => error(format!("{what} must be a Boolean, got {}", other.type_label())),
    }
}

fn boolean<'a>(value: Option<bool>) -> Collection<'a> {
    value.map(|b| vec![Value::Boolean(b)]).unwrap_or_default()
}

impl<'a, 'e> Evaluator<'a, 'e> {
    pub(crate) fn eval(
        &self,
        expr: &Expr,
        focus: &Collection<'a>,
        frame: &Frame<'a>,
    ) -> Result<Collection<'a>> {
        let result = self.eval_node(expr, focus, frame)?;
        let work = self.work.get() + result.len() + 1;
        if work > MAX_WORK {
            return error(format!(
                "the expression produces more than {MAX_WORK} items over one resource; it is too costly to evaluate"
            ));
        }
        self.work.set(work);
        Ok(result)
    }

    fn eval_node(&self, expr: &Expr, focus: &Collection<'a>, frame: &Frame<'a>) -> Result<Collection<'a>> {
        match expr {
            Expr::Literal(literal) => Ok(vec![literal_value(literal)]),
            Expr::Empty => Ok(Vec::new()),
            Expr::This => Ok(frame.this.clone().map(|v| vec![v]).unwrap_or_else(|| focus.clone())),
            Expr::Index => Ok(frame.index.map(|i| vec![Value::Integer(i as i64)]).unwrap_or_default()),
            Expr::Total => Ok(frame.total.clone().unwrap_or_default()),
            Expr::Variable(name) => self.variable(name),
            Expr::TypeFilter(name) => self.type_filter(focus, name),
            Expr::Member { target, name } => match target {
                Some(target) => {
                    if self.env.strict {
                        self.check_member_of_cast(target, name)?;
                    }
                    let input = self.eval(target, focus, frame)?;
                    self.members(&input, name)
                }
                None => self.path_start(focus, name),
            },
            Expr::Call { target, function, args } => {
                if self.env.strict
                    && let Some(target) = target
                {
                    check_ordered_input(*function, target)?;
                }
                let input = match target {
                    Some(target) => self.eval(target, focus, frame)?,
                    None => frame.this.clone().map(|v| vec![v]).unwrap_or_else(|| focus.clone()),
                };
                self.call(*function, &input, args, focus, frame, target.is_some())
            }
            Expr::Indexer { target, index } => {
                let input = self.eval(target, focus, frame)?;
                let index = self.eval(index, focus, frame)?;
                match singleton(&index, "an indexer")? {
                    None => Ok(Vec::new()),
                    Some(Value::Integer(i)) => {
                        Ok(usize::try_from(i).ok().and_then(|i| input.get(i).cloned()).into_iter().collect())
                    }
                    Some(other) => {
                        error(format!("an indexer must be an Integer, got {}", other.type_label()))
                    }
                }
            }
            Expr::Negate(operand) => {
                let value = self.eval(operand, focus, frame)?;
                match singleton(&value, "unary minus")? {
                    None => Ok(Vec::new()),
                    Some(Value::Integer(i)) => Ok(vec![Value::Integer(-i)]),
                    Some(Value::Long(i)) => Ok(vec![Value::Long(-i)]),
                    Some(Value::Decimal(d)) => {
                        let mut negated = -d;
                        if negated.is_zero() {
                            negated.set_sign_positive(true);
                        }
                        Ok(vec![Value::Decimal(negated)])
                    }
                    Some(Value::Quantity(q)) => {
                        Ok(vec![Value::Quantity(Quantity { value: -q.value, unit: q.unit })])
                    }
                    Some(other) => error(format!("cannot negate {}", other.type_label())),
                }
            }
            Expr::Binary { op, left, right } => self.binary(*op, left, right, focus, frame),
            Expr::Is { operand, type_name } => {
                let value = self.eval(operand, focus, frame)?;
                if value.len() > 1 {
                    return error(format!("'is' expects a single item, got a collection of {}", value.len()));
                }
                match value.first() {
                    None => Ok(Vec::new()),
                    Some(item) => Ok(vec![Value::Boolean(self.is_type(item, type_name, false)?)]),
                }
            }
            Expr::As { operand, type_name } => {
                // Over a collection the operator filters: FHIR R4's own SearchParameters
                // write `useContext.value as Quantity` for resources with many contexts. (The
                // `as()` function keeps the single-item rule.)
                let value = self.eval(operand, focus, frame)?;
                let mut out = Vec::new();
                for item in value {
                    if self.is_type(&item, type_name, true)? {
                        out.push(item);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Strict mode: `(x as T).name` must name an element of `T`, even when nothing is `T`.
    fn check_member_of_cast(&self, target: &Expr, name: &str) -> Result<()> {
        let type_name = match target {
            Expr::As { type_name, .. } => type_name.name.as_str(),
            Expr::Call {
                function: crate::functions::Function::As | crate::functions::Function::OfType,
                args,
                ..
            } => match args.first().and_then(crate::parser::type_of_expr) {
                Some(spec) => return self.check_member_of_type(&spec.name, name),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        self.check_member_of_type(type_name, name)
    }

    fn check_member_of_type(&self, type_name: &str, name: &str) -> Result<()> {
        if definitions().type_def(type_name).is_some()
            && definitions().child(type_name, name).is_none()
            && definitions().choice(type_name, name).is_none()
        {
            return error(format!("{type_name} has no element '{name}'"));
        }
        Ok(())
    }

    fn variable(&self, name: &str) -> Result<Collection<'a>> {
        let text = |s: &str| Ok(vec![Value::String(Cow::Owned(s.to_string()))]);
        match name {
            "rootResource" if self.env.root_resource.is_some() => {
                Ok(self.env.root_resource.map(|r| Value::Node(Node::resource(r))).into_iter().collect())
            }
            "resource" | "rootResource" => Ok(self.root.clone()),
            "context" => Ok(self.context.clone()),
            other if let Some(system) = code_system_variable(other) => text(system),
            other => {
                if let Some(value) = self.env.variables.get(other) {
                    return Ok(value.clone());
                }
                if let Some(value_set) = other.strip_prefix("vs-") {
                    return text(&format!("http://hl7.org/fhir/ValueSet/{value_set}"));
                }
                if let Some(extension) = other.strip_prefix("ext-") {
                    return text(&format!("http://hl7.org/fhir/StructureDefinition/{extension}"));
                }
                error(format!("unknown variable %{other}"))
            }
        }
    }

    /// An identifier at the start of a path: a type name filters the focus to items of that
    /// type (`Patient.name` on a Patient); anything else is a child element name.
    fn path_start(&self, focus: &Collection<'a>, name: &str) -> Result<Collection<'a>> {
        self.members(focus, name)
    }

    /// The focus items of type `name` (a type name starting a path).
    fn type_filter(&self, focus: &Collection<'a>, name: &str) -> Result<Collection<'a>> {
        let matching: Collection<'a> = focus
            .iter()
            .filter(|item| match item {
                Value::Node(node) => node.type_name == name || definitions().is_subtype(node.type_name, name),
                _ => false,
            })
            .cloned()
            .collect();
        if matching.is_empty() && self.env.strict && !focus.is_empty() {
            return error(format!("the context is not a {name}"));
        }
        Ok(matching)
    }

    /// The children called `name` of every item.
    pub(crate) fn members(&self, input: &Collection<'a>, name: &str) -> Result<Collection<'a>> {
        let mut out = Vec::new();
        for item in input {
            match item {
                Value::Node(node) => self.node_members(node, name, &mut out)?,
                Value::Type(info) => match name {
                    "namespace" => out.push(Value::String(Cow::Borrowed(info.namespace))),
                    "name" => out.push(Value::String(Cow::Owned(info.name.clone()))),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(out)
    }

    fn node_members(&self, node: &Node<'a>, name: &str, out: &mut Collection<'a>) -> Result<()> {
        let Some(Json::Object(object)) = node.json else {
            if self.env.strict && node.is_primitive() && !matches!(name, "id" | "extension" | "value") {
                return error(format!("{} has no element '{name}'", node.type_name));
            }
            // A primitive's own `id` and `extension` live in its `_name` sibling.
            if let Some(Json::Object(sidecar)) = node.sidecar
                && let Some(value) = lookup(sidecar, name)
            {
                push_json(out, value, None, if name == "extension" { "Extension" } else { "string" }, None);
            }
            return Ok(());
        };
        let defs = definitions();
        if !node.root.is_empty() {
            match defs.member(node.root, name) {
                Some(Member::Choice(element)) => {
                    for (key, value, type_code, root) in choice_entries(object, name, element) {
                        push_json(out, value, sidecar_of(object, key), type_code, Some(root));
                    }
                    return Ok(());
                }
                Some(Member::Child(child)) if child.element.path.ends_with("[x]") => {
                    // `valueQuantity`: FHIRPath names the choice element `value`.
                    if self.env.strict {
                        return error(format!("'{name}' is not an element name; use value.ofType(...)"));
                    }
                    return Ok(());
                }
                Some(Member::Child(child)) => {
                    let type_code = member_type_code(&child, name, is_resource_type(node.type_name));
                    let root = defs.children_root(child.element, child.type_code);
                    let value = lookup(object, name);
                    let sidecar = if is_primitive_type(type_code) { sidecar_of(object, name) } else { None };
                    match value {
                        Some(value) => push_json(out, value, sidecar, type_code, Some(root)),
                        None => {
                            if let Some(sidecar) = sidecar {
                                push_sidecar_only(out, sidecar, type_code);
                            }
                        }
                    }
                    return Ok(());
                }
                None => {
                    if self.env.strict {
                        return error(format!("{} has no element '{name}'", node.type_name));
                    }
                }
            }
        }
        // Unknown to the definitions (an extension-free guess): navigate the JSON as it is.
        if let Some(value) = lookup(object, name) {
            push_json(out, value, sidecar_of(object, name), "", None);
        }
        Ok(())
    }

    /// Every child element of every item (`children()`).
    pub(crate) fn children(&self, input: &Collection<'a>) -> Result<Collection<'a>> {
        let mut out = Vec::new();
        for item in input {
            let Value::Node(node) = item else { continue };
            let Some(Json::Object(object)) = node.json else { continue };
            let mut names: Vec<String> = Vec::new();
            for key in object.keys() {
                if key == "resourceType" {
                    continue;
                }
                let base = key.strip_prefix('_').unwrap_or(key);
                let name = choice_base(node.root, base).unwrap_or_else(|| base.to_string());
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            for name in names {
                self.node_members(node, &name, &mut out)?;
            }
        }
        Ok(out)
    }

    fn binary(
        &self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        focus: &Collection<'a>,
        frame: &Frame<'a>,
    ) -> Result<Collection<'a>> {
        // Boolean operators evaluate lazily where the left side decides.
        match op {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Implies => {
                let l = to_boolean(&self.eval(left, focus, frame)?, "a Boolean operator")?;
                let decided = match (op, l) {
                    (BinaryOp::And, Some(false)) => Some(false),
                    (BinaryOp::Or, Some(true)) => Some(true),
                    (BinaryOp::Implies, Some(false)) => Some(true),
                    _ => None,
                };
                if decided.is_some() {
                    return Ok(boolean(decided));
                }
                let r = to_boolean(&self.eval(right, focus, frame)?, "a Boolean operator")?;
                let result = match op {
                    BinaryOp::And => match (l, r) {
                        (Some(true), Some(true)) => Some(true),
                        (_, Some(false)) => Some(false),
                        _ => None,
                    },
                    BinaryOp::Or => match (l, r) {
                        (Some(false), Some(false)) => Some(false),
                        (_, Some(true)) => Some(true),
                        _ => None,
                    },
                    _ => match (l, r) {
                        (Some(true), r) => r,
                        (None, Some(true)) => Some(true),
                        _ => None,
                    },
                };
                return Ok(boolean(result));
            }
            _ => {}
        }
        let l = self.eval(left, focus, frame)?;
        let r = self.eval(right, focus, frame)?;
        match op {
            BinaryOp::Xor => {
                let (a, b) = (to_boolean(&l, "xor")?, to_boolean(&r, "xor")?);
                Ok(boolean(a.zip(b).map(|(a, b)| a != b)))
            }
            BinaryOp::Union => Ok(union(l, r)),
            BinaryOp::Equal => Ok(boolean(collections_equal(&l, &r)?)),
            BinaryOp::NotEqual => Ok(boolean(collections_equal(&l, &r)?.map(|b| !b))),
            BinaryOp::Equivalent => Ok(vec![Value::Boolean(collections_equivalent(&l, &r))]),
            BinaryOp::NotEquivalent => Ok(vec![Value::Boolean(!collections_equivalent(&l, &r))]),
            BinaryOp::In | BinaryOp::Contains => {
                let (element, collection) = if op == BinaryOp::In { (&l, &r) } else { (&r, &l) };
                match singleton(element, "in/contains")? {
                    None => Ok(Vec::new()),
                    Some(item) => {
                        let mut found = false;
                        for candidate in collection {
                            if items_equal(&item, &candidate.system())? == Some(true) {
                                found = true;
                                break;
                            }
                        }
                        Ok(vec![Value::Boolean(found)])
                    }
                }
            }
            BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual => {
                let (Some(a), Some(b)) = (singleton(&l, "a comparison")?, singleton(&r, "a comparison")?)
                else {
                    return Ok(Vec::new());
                };
                let ordering = compare(&a, &b)?;
                Ok(boolean(ordering.map(|o| match op {
                    BinaryOp::Less => o == Ordering::Less,
                    BinaryOp::LessOrEqual => o != Ordering::Greater,
                    BinaryOp::Greater => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                })))
            }
            BinaryOp::Concatenate => {
                let text = |c: &Collection<'a>| -> Result<String> {
                    match singleton(c, "&")? {
                        None => Ok(String::new()),
                        Some(Value::String(s)) => Ok(s.into_owned()),
                        Some(other) => error(format!("& expects strings, got {}", other.type_label())),
                    }
                };
                Ok(vec![Value::String(Cow::Owned(text(&l)? + &text(&r)?))])
            }
            _ => {
                let (Some(a), Some(b)) = (singleton(&l, "arithmetic")?, singleton(&r, "arithmetic")?) else {
                    return Ok(Vec::new());
                };
                Ok(arithmetic(op, &a, &b)?.into_iter().collect())
            }
        }
    }

    /// Whether `value` is of the named type: exactly (`as`, `ofType` on primitives) or as a
    /// subtype (`is`).
    pub(crate) fn is_type(&self, value: &Value<'a>, spec: &TypeSpecifier, exact: bool) -> Result<bool> {
        let namespace = spec.namespace.as_deref();
        let defs = definitions();
        let fhir_type = if namespace == Some("System") { None } else { defs.type_def(&spec.name) };
        let system_type = if namespace == Some("FHIR") { None } else { system_type_name(&spec.name) };
        if fhir_type.is_none() && system_type.is_none() {
            // A qualified name (`System.Patient`) names a type no value has; an unqualified
            // unknown name is a mistake in the expression.
            if namespace.is_some() {
                return Ok(false);
            }
            return error(format!("unknown type '{spec}'"));
        }
        match value {
            Value::Node(node) => {
                let Some(target) = fhir_type else { return Ok(false) };
                if node.type_name.is_empty() {
                    return Ok(false);
                }
                if exact && target.kind == TypeKind::PrimitiveType {
                    return Ok(node.type_name == target.name);
                }
                Ok(defs.is_subtype(node.type_name, target.name))
            }
            Value::Type(_) => Ok(false),
            system => {
                let Some(name) = system_type else { return Ok(false) };
                let label = match system {
                    Value::Boolean(_) => "Boolean",
                    Value::Integer(_) => "Integer",
                    Value::Long(_) => "Long",
                    Value::Decimal(_) => "Decimal",
                    Value::String(_) => "String",
                    Value::Date(_) => "Date",
                    Value::DateTime(_) => "DateTime",
                    Value::Time(_) => "Time",
                    Value::Quantity(_) => "Quantity",
                    _ => "",
                };
                Ok(label == name)
            }
        }
    }

    /// `type()` of an item.
    pub(crate) fn type_of(&self, value: &Value<'a>) -> TypeInfo {
        match value {
            Value::Node(node) => TypeInfo { namespace: "FHIR", name: node.type_name.to_string() },
            other => {
                let name = match other {
                    Value::Boolean(_) => "Boolean",
                    Value::Integer(_) => "Integer",
                    Value::Long(_) => "Long",
                    Value::Decimal(_) => "Decimal",
                    Value::String(_) => "String",
                    Value::Date(_) => "Date",
                    Value::DateTime(_) => "DateTime",
                    Value::Time(_) => "Time",
                    Value::Quantity(_) => "Quantity",
                    _ => "TypeInfo",
                };
                TypeInfo { namespace: "System", name: name.to_string() }
            }
        }
    }
}

/// Strict mode: functions that depend on order cannot follow `children()`/`descendants()`,
/// whose order is not defined.
fn check_ordered_input(function: crate::functions::Function, target: &Expr) -> Result<()> {
    use crate::functions::Function;
    let unordered = matches!(target, Expr::Call { function: Function::Children | Function::Descendants, .. });
    let needs_order = matches!(
        function,
        Function::Skip | Function::Take | Function::First | Function::Last | Function::Tail
    );
    if unordered && needs_order {
        return error(format!(
            "{function:?}() depends on order, which children()/descendants() do not define"
        ));
    }
    Ok(())
}

/// The FHIR type of child element `name` (of a resource when `of_resource`), as FHIRPath
/// types it; empty when the definitions give none.
pub(crate) fn member_type_code(
    child: &ResolvedChild<'static>,
    name: &str,
    of_resource: bool,
) -> &'static str {
    let type_code = child.type_code.or_else(|| {
        child
            .element
            .content_reference
            .map(|_| "BackboneElement")
            .or_else(|| child.element.types.first().map(|t| t.code))
    });
    match type_code {
        // The logical id of a resource is a FHIR `id`; other `id`s are strings.
        Some(_) if name == "id" && of_resource => "id",
        Some(code) if code.starts_with("http://hl7.org/fhirpath/System.") => system_fhir_type(code),
        Some(code) => code,
        None => "",
    }
}

/// The code-system variables of FHIRPath (`%ucum`, `%sct`, `%loinc`): answered before any of
/// the environment's, so no environment can change them.
pub(crate) fn code_system_variable(name: &str) -> Option<&'static str> {
    match name {
        "ucum" => Some("http://unitsofmeasure.org"),
        "sct" => Some("http://snomed.info/sct"),
        "loinc" => Some("http://loinc.org"),
        _ => None,
    }
}

pub(crate) fn is_resource_type(name: &str) -> bool {
    definitions().type_def(name).is_some_and(|t| t.kind == TypeKind::Resource)
}

fn system_type_name(name: &str) -> Option<&'static str> {
    ["Boolean", "Integer", "Long", "Decimal", "String", "Date", "DateTime", "Time", "Quantity"]
        .into_iter()
        .find(|t| *t == name)
}

/// The FHIR type of elements typed with a System type in the definitions (`id`, primitive
/// `value`s): the `id` of an element is a FHIR string.
fn system_fhir_type(code: &str) -> &'static str {
    match code.rsplit('.').next() {
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        _ => "string",
    }
}

/// Looks a property up in a JSON object. FHIR objects are small: a linear scan beats hashing
/// the key (serde_json's map uses SipHash).
pub fn lookup<'j>(object: &'j serde_json::Map<String, Json>, key: &str) -> Option<&'j Json> {
    if object.len() <= 16 {
        object.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        object.get(key)
    }
}

/// The `_name` sibling that carries a primitive's id and extensions.
fn sidecar_of<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<&'j Json> {
    object.iter().find(|(k, _)| k.strip_prefix('_') == Some(name)).map(|(_, v)| v)
}

/// The values of choice element `name` (`value`) in an object, in the JSON's order, each
/// with its key (`valueQuantity`), its type, and the root of its children: the JSON names
/// the choice by its type.
pub(crate) fn choice_entries<'j>(
    object: &'j serde_json::Map<String, Json>,
    name: &str,
    element: &'static ElementDef,
) -> impl Iterator<Item = (&'j str, &'j Json, &'static str, &'static str)> {
    object.iter().filter_map(move |(key, value)| {
        let suffix = key.strip_prefix(name)?;
        let ty = element.types.iter().find(|t| is_type_suffix(t.code, suffix))?;
        Some((key.as_str(), value, ty.code, definitions().children_root(element, Some(ty.code))))
    })
}

/// Whether `suffix` is type `code` capitalised (`Quantity` for `Quantity`, `String` for `string`).
fn is_type_suffix(code: &str, suffix: &str) -> bool {
    let (mut c, mut s) = (code.chars(), suffix.chars());
    match (c.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && c.eq(s),
        _ => false,
    }
}

/// For a JSON key of a choice element (`valueQuantity`), the element name (`value`).
fn choice_base(root: &str, key: &str) -> Option<String> {
    let child = definitions().child(root, key)?;
    let path = child.element.path;
    let name = path.rsplit('.').next()?;
    name.strip_suffix("[x]").map(str::to_string)
}

/// Appends the items of a JSON value (one, or each of an array) as nodes of `type_name`.
fn push_json<'a>(
    out: &mut Collection<'a>,
    value: &'a Json,
    sidecar: Option<&'a Json>,
    type_name: &'static str,
    root: Option<&'static str>,
) {
    let make = |json: Option<&'a Json>, sidecar: Option<&'a Json>| {
        let (type_name, root) = match json {
            Some(Json::Object(object)) if type_name == "Resource" || type_name.is_empty() => match object
                .get("resourceType")
                .and_then(Json::as_str)
                .and_then(|t| definitions().type_def(t))
            {
                Some(t) => (t.name, t.name),
                None => (type_name, root.unwrap_or(type_name)),
            },
            _ => (type_name, root.unwrap_or(type_name)),
        };
        Node { json, sidecar, type_name, root }
    };
    match value {
        Json::Array(items) => {
            let sidecars = sidecar.and_then(Json::as_array);
            for (i, item) in items.iter().enumerate() {
                let item_sidecar = sidecars.and_then(|s| s.get(i)).filter(|s| !s.is_null());
                let json = if item.is_null() { None } else { Some(item) };
                if json.is_none() && item_sidecar.is_none() {
                    continue;
                }
                out.push(Value::Node(make(json, item_sidecar)));
            }
        }
        Json::Null => {
            if let Some(sidecar) = sidecar {
                out.push(Value::Node(make(None, Some(sidecar))));
            }
        }
        single => out.push(Value::Node(make(Some(single), sidecar))),
    }
}

fn push_sidecar_only<'a>(out: &mut Collection<'a>, sidecar: &'a Json, type_name: &'static str) {
    match sidecar {
        Json::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                out.push(Value::Node(Node { json: None, sidecar: Some(item), type_name, root: type_name }));
            }
        }
        single => {
            out.push(Value::Node(Node { json: None, sidecar: Some(single), type_name, root: type_name }))
        }
    }
}

pub(crate) fn literal_value<'a>(literal: &Literal) -> Value<'a> {
    match literal {
        Literal::Boolean(b) => Value::Boolean(*b),
        Literal::String(s) => Value::String(Cow::Owned(s.clone())),
        Literal::Integer(i) => Value::Integer(*i),
        Literal::Long(i) => Value::Long(*i),
        Literal::Decimal(d) => Value::Decimal(*d),
        Literal::Date(d) => Value::Date(*d),
        Literal::DateTime(d) => Value::DateTime(*d),
        Literal::Time(t) => Value::Time(*t),
        Literal::Quantity(q) => Value::Quantity(q.clone()),
    }
}

/// `a | b`: both collections, duplicates removed.
pub(crate) fn union<'a>(left: Collection<'a>, right: Collection<'a>) -> Collection<'a> {
    let mut out: Collection<'a> = Vec::with_capacity(left.len() + right.len());
    for item in left.into_iter().chain(right) {
        if !contains(&out, &item) {
            out.push(item);
        }
    }
    out
}

/// Whether `collection` has an item equal to `item`.
pub(crate) fn contains(collection: &Collection<'_>, item: &Value<'_>) -> bool {
    let item = item.system();
    collection.iter().any(|c| items_equal(&c.system(), &item).ok().flatten() == Some(true))
}

/// `=` on collections.
pub(crate) fn collections_equal(left: &Collection<'_>, right: &Collection<'_>) -> Result<Option<bool>> {
    if left.is_empty() || right.is_empty() {
        return Ok(None);
    }
    if left.len() != right.len() {
        return Ok(Some(false));
    }
    let mut unknown = false;
    for (a, b) in left.iter().zip(right) {
        match items_equal(&a.system(), &b.system())? {
            Some(false) => return Ok(Some(false)),
            None => unknown = true,
            Some(true) => {}
        }
    }
    Ok(if unknown { None } else { Some(true) })
}

/// `=` on two items (FHIR primitives already converted to System values).
pub(crate) fn items_equal(a: &Value<'_>, b: &Value<'_>) -> Result<Option<bool>> {
    Ok(match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => Some(x == y),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Date(x) | Value::DateTime(x), Value::Date(y) | Value::DateTime(y)) => {
            compare_date_times(x, y).map(|o| o == Ordering::Equal)
        }
        (Value::Time(x), Value::Time(y)) => compare_times(x, y).map(|o| o == Ordering::Equal),
        (Value::Quantity(x), Value::Quantity(y)) => x.common(y).map(|(a, b)| a == b),
        (Value::Node(x), Value::Node(y)) => Some(match (x.json, y.json) {
            (Some(a), Some(b)) => json_equal(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }),
        (Value::Type(x), Value::Type(y)) => Some(x == y),
        (x, y) => match (number(x), number(y)) {
            (Some(x), Some(y)) => Some(x == y),
            _ => Some(false),
        },
    })
}

/// Structural equality of FHIR elements: every child equal, numbers by value (`1.0` = `1.00`),
/// property order irrelevant.
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            match (
                crate::value::decimal_from_text(&x.to_string()),
                crate::value::decimal_from_text(&y.to_string()),
            ) {
                (Some(p), Some(q)) => p == q,
                _ => x == y,
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, p)| y.get(key).is_some_and(|q| json_equal(p, q)))
        }
        (x, y) => x == y,
    }
}

fn number(value: &Value<'_>) -> Option<Decimal> {
    match value {
        Value::Integer(i) | Value::Long(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// `~` on collections: order does not matter, empty is equivalent to empty.
pub(crate) fn collections_equivalent(left: &Collection<'_>, right: &Collection<'_>) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut used = vec![false; right.len()];
    'outer: for a in left {
        let a = a.system();
        for (i, b) in right.iter().enumerate() {
            if !used[i] && items_equivalent(&a, &b.system()) {
                used[i] = true;
                continue 'outer;
            }
        }
        return false;
    }
    true
}

fn normalize_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Decimals are equivalent when equal at the precision of the less precise one.
fn decimals_equivalent(a: Decimal, b: Decimal) -> bool {
    let scale = a.scale().min(b.scale());
    a.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
        == b.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
}

/// Seconds and fractions of seconds are one precision for comparisons.
fn same_precision(a: Precision, b: Precision) -> bool {
    let merge = |p: Precision| if p == Precision::Fraction { Precision::Second } else { p };
    merge(a) == merge(b)
}

pub(crate) fn items_equivalent(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => normalize_text(x) == normalize_text(y),
        (Value::Date(x) | Value::DateTime(x), Value::Date(y) | Value::DateTime(y)) => {
            same_precision(x.precision, y.precision) && compare_date_times(x, y) == Some(Ordering::Equal)
        }
        (Value::Time(x), Value::Time(y)) => {
            same_precision(x.precision, y.precision) && compare_times(x, y) == Some(Ordering::Equal)
        }
        (Value::Quantity(x), Value::Quantity(y)) => {
            x.common(y).is_some_and(|(p, q)| decimals_equivalent(p, q))
        }
        (Value::Node(x), Value::Node(y)) => match (x.json, y.json) {
            (Some(a), Some(b)) => json_equal(a, b),
            (a, b) => a.is_none() && b.is_none(),
        },
        (x, y) => match (number(x), number(y)) {
            (Some(p), Some(q)) => decimals_equivalent(p, q),
            _ => items_equal(x, y).ok().flatten() == Some(true),
        },
    }
}

/// Orders two items for `<`, `>`, `sort()`: `None` when unknown (partial dates), an error
/// when the types cannot be compared.
pub(crate) fn compare(a: &Value<'_>, b: &Value<'_>) -> Result<Option<Ordering>> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Date(x) | Value::DateTime(x), Value::Date(y) | Value::DateTime(y)) => {
            Ok(compare_date_times(x, y))
        }
        (Value::Time(x), Value::Time(y)) => Ok(compare_times(x, y)),
        // Quantities in units that do not convert into each other compare as unknown.
        (Value::Quantity(x), Value::Quantity(y)) => Ok(x.common(y).map(|(p, q)| p.cmp(&q))),
        (x, y) => match (number(x), number(y)) {
            (Some(p), Some(q)) => Ok(Some(p.cmp(&q))),
            _ => error(format!("cannot compare {} with {}", x.type_label(), y.type_label())),
        },
    }
}

fn integer_result<'a>(value: Option<i64>, long: bool) -> Option<Value<'a>> {
    let value = value?;
    if long {
        Some(Value::Long(value))
    } else {
        i32::try_from(value).ok().map(|v| Value::Integer(i64::from(v)))
    }
}

/// `+ - * / div mod` on two items; `None` for an empty result (division by zero, overflow).
pub(crate) fn arithmetic<'a>(op: BinaryOp, a: &Value<'a>, b: &Value<'a>) -> Result<Option<Value<'a>>> {
    use BinaryOp::*;
    match (a, b) {
        (Value::Integer(x) | Value::Long(x), Value::Integer(y) | Value::Long(y)) if op != Divide => {
            let long = matches!(a, Value::Long(_)) || matches!(b, Value::Long(_));
            let result = match op {
                Add => x.checked_add(*y),
                Subtract => x.checked_sub(*y),
                Multiply => x.checked_mul(*y),
                Div => x.checked_div(*y),
                Mod => x.checked_rem(*y),
                _ => None,
            };
            Ok(integer_result(result, long))
        }
        (Value::String(x), Value::String(y)) if op == Add => {
            Ok(Some(Value::String(Cow::Owned(format!("{x}{y}")))))
        }
        (Value::Date(d), Value::Quantity(q)) | (Value::DateTime(d), Value::Quantity(q))
            if matches!(op, Add | Subtract) =>
        {
            let sign = if op == Add { 1 } else { -1 };
            let moved = add_duration(d, q, sign)?;
            Ok(moved.map(|m| if matches!(a, Value::Date(_)) { Value::Date(m) } else { Value::DateTime(m) }))
        }
        (Value::Time(t), Value::Quantity(q)) if matches!(op, Add | Subtract) => {
            let sign = if op == Add { 1 } else { -1 };
            Ok(add_time_duration(t, q, sign)?.map(Value::Time))
        }
        (Value::Quantity(x), Value::Quantity(y)) => quantity_arithmetic(op, x, y),
        (Value::Quantity(x), other) | (other, Value::Quantity(x))
            if number(other).is_some() && matches!(op, Multiply | Divide) =>
        {
            let n = number(other).unwrap_or_default();
            let value = if op == Multiply {
                x.value.checked_mul(n)
            } else if matches!(a, Value::Quantity(_)) {
                x.value.checked_div(n)
            } else {
                return error("cannot divide a number by a quantity");
            };
            Ok(value.map(|v| Value::Quantity(Quantity { value: v, unit: x.unit.clone() })))
        }
        (x, y) => match (number(x), number(y)) {
            (Some(p), Some(q)) => {
                let result = match op {
                    Add => p.checked_add(q),
                    Subtract => p.checked_sub(q),
                    Multiply => p.checked_mul(q),
                    Divide => p.checked_div(q).map(|d| d.normalize()),
                    Div => p.checked_div(q).map(|d| d.trunc()),
                    Mod => p.checked_rem(q),
                    _ => None,
                };
                Ok(result.map(Value::Decimal))
            }
            _ => error(format!("cannot apply {op:?} to {} and {}", x.type_label(), y.type_label())),
        },
    }
}

fn quantity_arithmetic<'a>(op: BinaryOp, x: &Quantity, y: &Quantity) -> Result<Option<Value<'a>>> {
    use BinaryOp::*;
    match op {
        Add | Subtract => {
            let Some((p, q)) = x.common(y) else {
                return error(format!("cannot add {x} and {y}: the units are not comparable"));
            };
            // Result in the left operand's unit.
            let (p_unit, _) = if x.unit == y.unit { (p, q) } else { (x.value, q) };
            let q_in_x = if x.unit == y.unit {
                q
            } else {
                let (Some(xu), Some(yu)) = (x.ucum_unit(), y.ucum_unit()) else { return Ok(None) };
                match crate::ucum::convert(y.value, yu, xu) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            };
            let value = if op == Add { p_unit.checked_add(q_in_x) } else { p_unit.checked_sub(q_in_x) };
            Ok(value.map(|v| Value::Quantity(Quantity { value: v, unit: x.unit.clone() })))
        }
        Multiply | Divide => {
            let (Some(xu), Some(yu)) = (x.ucum_unit(), y.ucum_unit()) else {
                return error("calendar durations cannot be multiplied or divided");
            };
            let (Some(a), Some(b)) =
                (crate::ucum::canonical(x.value, xu), crate::ucum::canonical(y.value, yu))
            else {
                return Ok(None);
            };
            let mut dimension = a.dimension;
            for (exponent, other) in dimension.iter_mut().zip(b.dimension) {
                *exponent = if op == Multiply { *exponent + other } else { *exponent - other };
            }
            let value =
                if op == Multiply { a.value.checked_mul(b.value) } else { a.value.checked_div(b.value) };
            Ok(value.map(|v| Value::Quantity(Quantity { value: v, unit: crate::ucum::unit_for(&dimension) })))
        }
        _ => error(format!("cannot apply {op:?} to quantities")),
    }
}

/// A calendar or UCUM time quantity as (months, milliseconds), or an error for units that
/// cannot be added to a date (`'mo'`, `'a'`: their length varies).
fn duration_parts(q: &Quantity) -> Result<(i64, i64, Precision)> {
    let whole = q.value.trunc().to_i64().ok_or_else(|| Error::eval("duration out of range"))?;
    let (months, millis, precision) = match q.unit.as_str() {
        "year" => (whole * 12, 0, Precision::Year),
        "month" => (whole, 0, Precision::Month),
        "week" | "wk" => (0, whole * 7 * 86_400_000, Precision::Day),
        "day" | "d" => (0, whole * 86_400_000, Precision::Day),
        "hour" | "h" => (0, whole * 3_600_000, Precision::Hour),
        "minute" | "min" => (0, whole * 60_000, Precision::Minute),
        "second" | "s" => (0, whole * 1000, Precision::Second),
        "millisecond" | "ms" => (0, whole, Precision::Fraction),
        other => {
            return error(format!("cannot add '{other}' to a date: use a calendar duration (e.g. 1 month)"));
        }
    };
    Ok((months, millis, precision))
}

fn add_duration(date: &DateTime, q: &Quantity, sign: i64) -> Result<Option<DateTime>> {
    let (months, millis, _) = duration_parts(q)?;
    let mut result = *date;
    if months != 0 {
        let total = i64::from(date.year) * 12 + i64::from(date.month) - 1 + sign * months;
        result.year = i32::try_from(total.div_euclid(12)).map_err(|_| Error::eval("date out of range"))?;
        result.month = (total.rem_euclid(12) + 1) as u8;
        let last = fhir::datetime::days_in_month(result.year, result.month);
        result.day = result.day.min(last);
    }
    if millis != 0 {
        let step = match date.precision {
            // Coarser than a day: a duration in days or less does not move a year or month.
            Precision::Year | Precision::Month => return Ok(Some(result)),
            Precision::Day => (millis / 86_400_000) * 86_400_000,
            Precision::Hour => (millis / 3_600_000) * 3_600_000,
            Precision::Minute => (millis / 60_000) * 60_000,
            Precision::Second => (millis / 1000) * 1000,
            Precision::Fraction => millis,
        };
        let days = fhir::datetime::days_from_civil(
            i64::from(result.year),
            u32::from(result.month),
            u32::from(result.day),
        );
        let local = days * 86_400_000
            + i64::from(result.hour) * 3_600_000
            + i64::from(result.minute) * 60_000
            + i64::from(result.second) * 1000
            + i64::from(result.nanosecond / 1_000_000)
            + sign * step;
        let moved = DateTime::from_epoch_millis(local);
        result.year = moved.year;
        result.month = moved.month;
        result.day = moved.day;
        result.hour = moved.hour;
        result.minute = moved.minute;
        result.second = moved.second;
        result.nanosecond = moved.nanosecond + result.nanosecond % 1_000_000;
    }
    if !(1..=9999).contains(&result.year) {
        return Ok(None);
    }
    Ok(Some(result))
}

fn add_time_duration(time: &Time, q: &Quantity, sign: i64) -> Result<Option<Time>> {
    let (months, millis, _) = duration_parts(q)?;
    if months != 0 {
        return error("cannot add years or months to a time");
    }
    let day = 86_400_000;
    let total = (time.millis_of_day() + sign * millis).rem_euclid(day);
    let mut result = *time;
    result.hour = (total / 3_600_000) as u8;
    result.minute = (total / 60_000 % 60) as u8;
    result.second = (total / 1000 % 60) as u8;
    result.nanosecond = (total % 1000) as u32 * 1_000_000;
    Ok(Some(result))
}
