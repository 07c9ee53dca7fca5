//! Direct paths: the expressions analytics runs most — member chains, `first()`, `ofType()`
//! on a choice, `where()`/`exists()`/`iif()` over exists, empty and equality tests joined by
//! `and`/`or`, unions, `getResourceKey()` and `getReferenceKey()` — walked straight over the
//! JSON, without the evaluator's collections of intermediate results.
//!
//! A direct path gives exactly what [`crate::Expression::evaluate_collection`] gives in
//! non-strict mode, or nothing at all: whenever the JSON is not of the usual shape (a
//! primitive's `_name` extension sibling, an element the definitions do not know, a
//! contained resource, several values where a comparison wants one), [`DirectPath::evaluate`]
//! returns `None` and the caller evaluates the expression the ordinary way. The SQL on FHIR
//! tests run every view both ways and compare.

use std::borrow::Cow;
use std::sync::OnceLock;

use fhir::definitions::{ElementDef, Member, TypeKind, choice_key, definitions};
use serde_json::Value as Json;

use crate::ast::{BinaryOp, Expr, Literal};
use crate::eval::{
    choice_entries, code_system_variable, contains, is_resource_type, lookup, member_type_code,
};
use crate::functions::{Function, reference_key, substring, to_string_value};
use crate::parser::type_of_expr;
use crate::value::{Collection, Node, Value, is_primitive_type};

/// An expression that can be walked directly (see the module documentation).
#[derive(Clone, Debug)]
pub struct DirectPath {
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
enum Step {
    /// `.name` of a non-choice element.
    Member(Resolving),
    /// `.name.ofType(T)` of a choice element: the JSON keys `nameT` (and `nameU` for types
    /// `U` that are `T`).
    Choice {
        name: String,
        type_name: String,
        resolved: OnceLock<(Key, Vec<ChoiceKey>)>,
    },
    First,
    /// `where(criterion)`.
    Where(Criterion),
    /// `iif(criterion, then, otherwise)` at the start of the path (on the focus); a branch
    /// that cannot be walked directly is left to the evaluator when it is the one chosen.
    Iif {
        criterion: Criterion,
        then: Branch,
        otherwise: Branch,
    },
    /// `a | b | ...`, the whole path.
    Union(Vec<DirectPath>),
    Empty,
    // Steps that end the walk over elements: what follows them works on their values.
    ResourceKey,
    ReferenceKey(Option<String>),
    ToString,
    /// `exists()` as a value (not a criterion).
    Exists,
    Count,
    // Steps over values.
    Distinct,
    Substring(i64, Option<i64>),
}

impl Step {
    /// Whether the step turns the elements walked so far into values.
    fn makes_values(&self) -> bool {
        matches!(
            self,
            Step::ResourceKey | Step::ReferenceKey(_) | Step::ToString | Step::Exists | Step::Count
        )
    }

    /// Whether the step works on values, elements walked so far being taken as such.
    fn reads_values(&self) -> bool {
        matches!(self, Step::ToString | Step::Exists | Step::Count | Step::Distinct | Step::Substring(..))
    }

    /// Whether the step can follow one that made values.
    fn takes_values(&self) -> bool {
        matches!(
            self,
            Step::ToString | Step::Exists | Step::Count | Step::First | Step::Distinct | Step::Substring(..)
        )
    }
}

#[derive(Clone, Debug)]
enum Branch {
    Direct(DirectPath),
    /// Not walked directly.
    General,
    /// `iif()` without its third argument.
    Absent,
}

/// The lists a [`DirectPath`] walks with, kept between calls (a view runs many paths per
/// resource; each would otherwise allocate its own).
#[derive(Debug, Default)]
pub struct Scratch<'a> {
    items: Vec<Node<'a>>,
    next: Vec<Node<'a>>,
    /// What the last path gave.
    out: Vec<Value<'a>>,
    /// For criteria and sub-paths, walked while the lists above are in use: none or one
    /// (a list, so that recycling keeps its allocation).
    inner: Vec<Scratch<'a>>,
}

impl<'a> Scratch<'a> {
    /// The same lists, emptied, for values of another lifetime: a runner keeps one scratch
    /// from one resource to the next.
    pub fn recycle<'b>(self) -> Scratch<'b> {
        Scratch {
            items: reuse(self.items),
            next: reuse(self.next),
            out: reuse(self.out),
            inner: self.inner.into_iter().map(Scratch::recycle).collect(),
        }
    }

    fn inner<'s>(inner: &'s mut Vec<Scratch<'a>>) -> &'s mut Scratch<'a> {
        if inner.is_empty() {
            inner.push(Scratch::default());
        }
        &mut inner[0]
    }
}

/// An emptied list's allocation, for items of another lifetime (collecting an empty iterator
/// of a type of the same layout keeps the allocation).
fn reuse<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter().filter_map(|_| None).collect()
}

/// A test of one item: what `where()`, `exists()` and `iif()` take. `exists()` and
/// `empty()` are never empty, and an empty comparison counts as false, which `and` and `or`
/// in a `where` or `iif` criterion give too (no `not()`, under which they would differ).
#[derive(Clone, Debug)]
enum Criterion {
    Exists(DirectPath),
    Empty(DirectPath),
    /// `path.exists(criterion)`.
    ExistsWhere(DirectPath, Box<Criterion>),
    /// `path = literal`.
    Equals(DirectPath, Expected),
    /// `path in (literal | literal ...)`.
    In(DirectPath, Vec<Expected>),
    And(Box<Criterion>, Box<Criterion>),
    Or(Box<Criterion>, Box<Criterion>),
}

#[derive(Clone, Debug)]
enum Expected {
    Text(String),
    Boolean(bool),
    Integer(i64),
}

impl Criterion {
    fn test<'a>(&self, item: &Value<'a>, scratch: &mut Scratch<'a>) -> Option<bool> {
        Some(match self {
            Criterion::Exists(path) => !path.evaluate_in(item, scratch)?.is_empty(),
            Criterion::Empty(path) => path.evaluate_in(item, scratch)?.is_empty(),
            Criterion::ExistsWhere(path, criterion) => {
                let found = path.evaluate_in(item, scratch)?.to_vec();
                for found in &found {
                    if criterion.test(found, scratch)? {
                        return Some(true);
                    }
                }
                false
            }
            Criterion::Equals(path, expected) => {
                // `member = value`, the usual criterion, without building a list.
                if let [Step::Member(member)] = path.steps.as_slice()
                    && let Value::Node(node) = item
                {
                    let object = node.json?.as_object()?;
                    let resolved = member.resolve(node)?;
                    if !resolved.primitive {
                        return None;
                    }
                    return match primitive_member(object, &member.name)? {
                        None | Some(Json::Null) => Some(false),
                        Some(Json::Array(_)) => None,
                        Some(json) => equals(expected, json, resolved.type_code),
                    };
                }
                let found = path.evaluate_in(item, scratch)?;
                let [value] = found else { return Some(false) };
                return value_equals(expected, value);
            }
            Criterion::In(path, wanted) => {
                // `{} in (...)` is empty, false to `where()` and `iif()`; several items are an
                // error the evaluator reports.
                match path.evaluate_in(item, scratch)? {
                    [] => false,
                    [value] => {
                        for expected in wanted {
                            if value_equals(expected, value)? {
                                return Some(true);
                            }
                        }
                        false
                    }
                    _ => return None,
                }
            }
            Criterion::And(left, right) => left.test(item, scratch)? && right.test(item, scratch)?,
            Criterion::Or(left, right) => left.test(item, scratch)? || right.test(item, scratch)?,
        })
    }
}

/// Whether one value equals the literal (`None`: not a comparison this walk answers).
fn value_equals(expected: &Expected, value: &Value<'_>) -> Option<bool> {
    match (value, expected) {
        (Value::Node(node), _) => equals(expected, node.json?, node.type_name),
        (Value::String(text), Expected::Text(wanted)) => Some(text == wanted),
        (Value::Integer(n), Expected::Integer(wanted)) => Some(n == wanted),
        (Value::Boolean(b), Expected::Boolean(wanted)) => Some(b == wanted),
        _ => None,
    }
}

/// Whether a primitive's JSON value equals the literal (`None`: not a comparison this
/// walk answers).
fn equals(expected: &Expected, json: &Json, type_name: &str) -> Option<bool> {
    Some(match (expected, json) {
        (Expected::Text(wanted), Json::String(text)) if compares_as_text(type_name) => text == wanted,
        (Expected::Boolean(wanted), Json::Bool(b)) => b == wanted,
        (Expected::Integer(wanted), Json::Number(n)) if type_name != "decimal" => n.as_i64()? == *wanted,
        _ => return None,
    })
}

/// Primitive types whose values a direct path compares with a string literal as text (a
/// constant of another type is left to the evaluator).
pub fn compares_as_text(type_name: &str) -> bool {
    matches!(type_name, "string" | "code" | "uri" | "url" | "canonical" | "id" | "oid" | "uuid" | "markdown")
}

/// A JSON key of a choice element (`valueQuantity`), its type and the root of its children.
type ChoiceKey = (String, &'static str, &'static str);

/// Where the definitions were asked: the item's definitions root and type name.
type Key = (usize, usize);

fn key_of(node: &Node<'_>) -> Key {
    (node.root.as_ptr() as usize ^ (node.root.len() << 48), node.type_name.as_ptr() as usize)
}

/// A member name and what the definitions say of it for the first kind of item it met (the
/// items at one place in a view are nearly always of one kind; others are resolved afresh).
#[derive(Clone, Debug)]
struct Resolving {
    name: String,
    resolved: OnceLock<(Key, Option<Resolved>)>,
}

#[derive(Clone, Copy, Debug)]
struct Resolved {
    type_code: &'static str,
    root: &'static str,
    primitive: bool,
    /// A choice element named without its type (`value`): its JSON keys are `value` and a
    /// type name, and `type_code` and `root` say nothing.
    choice: Option<&'static ElementDef>,
}

impl Resolving {
    fn new(name: &str) -> Resolving {
        Resolving { name: name.to_string(), resolved: OnceLock::new() }
    }

    fn resolve(&self, node: &Node<'_>) -> Option<Resolved> {
        let key = key_of(node);
        let (cached_key, cached) = self.resolved.get_or_init(|| (key, resolve_member(node, &self.name)));
        if *cached_key == key { *cached } else { resolve_member(node, &self.name) }
    }
}

fn resolve_member(node: &Node<'_>, name: &str) -> Option<Resolved> {
    if node.root.is_empty() {
        return None;
    }
    let defs = definitions();
    let child = match defs.member(node.root, name)? {
        Member::Choice(element) => {
            return Some(Resolved { type_code: "", root: "", primitive: false, choice: Some(element) });
        }
        Member::Child(child) => child,
    };
    if child.element.path.ends_with("[x]") {
        return None;
    }
    let type_code = member_type_code(&child, name, is_resource_type(node.type_name));
    // A contained resource is typed by its own `resourceType`, an unknown type not at all.
    if type_code.is_empty() || type_code == "Resource" {
        return None;
    }
    let root = defs.children_root(child.element, child.type_code);
    Some(Resolved { type_code, root, primitive: is_primitive_type(type_code), choice: None })
}

impl DirectPath {
    /// `constant` gives the text of a view's `%name` constants that are strings.
    pub(crate) fn compile(expr: &Expr, constant: &dyn Fn(&str) -> Option<String>) -> Option<DirectPath> {
        let mut steps = Vec::new();
        match expr {
            Expr::Empty => steps.push(Step::Empty),
            Expr::Binary { op: BinaryOp::Union, .. } => {
                let mut branches = Vec::new();
                union_branches(expr, constant, &mut branches)?;
                steps.push(Step::Union(branches));
            }
            _ => compile_into(expr, constant, &mut steps)?,
        }
        // Values are not elements: only steps over values may follow them.
        if let Some(at) = steps.iter().position(Step::makes_values)
            && !steps[at + 1..].iter().all(Step::takes_values)
        {
            return None;
        }
        // `distinct()` of elements compares them as the evaluator does: left to it.
        if let Some(at) = steps.iter().position(|s| matches!(s, Step::Distinct))
            && !steps[..at].iter().any(Step::makes_values)
        {
            return None;
        }
        Some(DirectPath { steps })
    }

    /// What the expression gives for `focus`, or `None` when it must be evaluated the
    /// ordinary way.
    pub fn evaluate<'a>(&self, focus: &Value<'a>) -> Option<Collection<'a>> {
        self.evaluate_in(focus, &mut Scratch::default()).map(<[Value<'a>]>::to_vec)
    }

    /// [`DirectPath::evaluate`] into lists kept from one call to the next: the values are in
    /// `scratch` until its next use.
    pub fn evaluate_in<'s, 'a>(
        &self,
        focus: &Value<'a>,
        scratch: &'s mut Scratch<'a>,
    ) -> Option<&'s [Value<'a>]> {
        let Value::Node(node) = focus else { return None };
        let Scratch { items, next, out, inner } = scratch;
        out.clear();
        items.clear();
        items.push(*node);
        // Whether the walk has turned to values (in `out`).
        let mut values = false;
        for step in &self.steps {
            if !values && step.reads_values() {
                out.extend(items.iter().copied().map(Value::Node));
                values = true;
            }
            match step {
                Step::Member(member) => {
                    next.clear();
                    for item in items.iter() {
                        let object = item.json?.as_object()?;
                        let resolved = member.resolve(item)?;
                        if let Some(element) = resolved.choice {
                            // Every type present, in the JSON's order, as the evaluator does.
                            for (key, value, type_code, root) in choice_entries(object, &member.name, element)
                            {
                                if has_sidecar(object, key) {
                                    return None;
                                }
                                push(next, value, type_code, root);
                            }
                            continue;
                        }
                        let value = if resolved.primitive {
                            primitive_member(object, &member.name)?
                        } else {
                            lookup(object, &member.name)
                        };
                        if let Some(value) = value {
                            push(next, value, resolved.type_code, resolved.root);
                        }
                    }
                    std::mem::swap(items, next);
                }
                Step::Choice { name, type_name, resolved } => {
                    next.clear();
                    for item in items.iter() {
                        let object = item.json?.as_object()?;
                        let key = key_of(item);
                        let (cached_key, cached) = resolved
                            .get_or_init(|| (key, choice_keys(item, name, type_name).unwrap_or_default()));
                        let fresh;
                        let keys = if *cached_key == key {
                            cached
                        } else {
                            fresh = choice_keys(item, name, type_name)?;
                            &fresh
                        };
                        if keys.is_empty() {
                            return None;
                        }
                        let mut found = 0;
                        for (json_key, type_code, root) in keys {
                            if let Some(value) = primitive_member(object, json_key)? {
                                found += 1;
                                push(next, value, type_code, root);
                            }
                        }
                        // Two choices present: the ordinary path keeps the JSON's order.
                        if found > 1 {
                            return None;
                        }
                    }
                    std::mem::swap(items, next);
                }
                Step::First if values => out.truncate(1),
                Step::First => items.truncate(1),
                Step::Where(criterion) => {
                    let inner = Scratch::inner(inner);
                    let mut declined = false;
                    items.retain(|item| match criterion.test(&Value::Node(*item), inner) {
                        Some(keep) => keep,
                        None => {
                            declined = true;
                            false
                        }
                    });
                    if declined {
                        return None;
                    }
                }
                Step::Iif { criterion, then, otherwise } => {
                    let [item] = items.as_slice() else { return None };
                    let focus = Value::Node(*item);
                    let inner = Scratch::inner(inner);
                    let chosen = if criterion.test(&focus, inner)? { then } else { otherwise };
                    let chosen = match chosen {
                        Branch::Direct(path) => path,
                        Branch::General => return None,
                        Branch::Absent => {
                            items.clear();
                            continue;
                        }
                    };
                    let found = chosen.evaluate_in(&focus, inner)?;
                    if self.steps.len() == 1 {
                        out.extend_from_slice(found);
                        return Some(out);
                    }
                    items.clear();
                    for value in found {
                        // Keys are not elements to go on from.
                        let Value::Node(node) = value else { return None };
                        items.push(*node);
                    }
                }
                Step::Union(branches) => {
                    let inner = Scratch::inner(inner);
                    for branch in branches {
                        for value in branch.evaluate_in(focus, inner)? {
                            // (`contains` compares System values, which for a date means
                            // parsing it: not for the first.)
                            if out.is_empty() || !contains(out, value) {
                                out.push(value.clone());
                            }
                        }
                    }
                    return Some(out);
                }
                Step::Empty => return Some(out),
                Step::ResourceKey => {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|node| lookup(node.json?.as_object()?, "id")?.as_str())
                            .map(|id| Value::String(Cow::Borrowed(id))),
                    );
                    values = true;
                }
                Step::ReferenceKey(wanted) => {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|node| {
                                let reference = lookup(node.json?.as_object()?, "reference")?.as_str()?;
                                reference_key(reference, wanted.as_deref())
                            })
                            .map(|id| Value::String(Cow::Borrowed(id))),
                    );
                    values = true;
                }
                Step::ToString => match out.as_slice() {
                    [] => {}
                    [value] => {
                        let text = to_string_value(&value.system());
                        out.clear();
                        out.extend(text);
                    }
                    _ => return None,
                },
                Step::Exists | Step::Count => {
                    let count = out.len();
                    out.clear();
                    out.push(match step {
                        Step::Exists => Value::Boolean(count > 0),
                        _ => Value::Integer(count as i64),
                    });
                }
                Step::Distinct => {
                    // In place: the first of each text, in order.
                    let mut kept = 0;
                    for i in 0..out.len() {
                        let Value::String(text) = &out[i] else { return None };
                        let seen = out[..kept].iter().any(|k| matches!(k, Value::String(t) if t == text));
                        if !seen {
                            out.swap(kept, i);
                            kept += 1;
                        }
                    }
                    out.truncate(kept);
                }
                Step::Substring(start, length) => match out.as_slice() {
                    [] => {}
                    [value] => {
                        let Value::String(text) = value.system().into_owned() else { return None };
                        let part = substring(&text, *start, *length);
                        out.clear();
                        out.extend(part.map(|part| Value::String(Cow::Owned(part))));
                    }
                    _ => return None,
                },
            }
        }
        if !values {
            out.extend(items.iter().copied().map(Value::Node));
        }
        Some(out)
    }
}

fn union_branches(
    expr: &Expr,
    constant: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<DirectPath>,
) -> Option<()> {
    match expr {
        Expr::Binary { op: BinaryOp::Union, left, right } => {
            union_branches(left, constant, out)?;
            union_branches(right, constant, out)
        }
        other => {
            out.push(DirectPath::compile(other, constant)?);
            Some(())
        }
    }
}

fn compile_criterion(expr: &Expr, constant: &dyn Fn(&str) -> Option<String>) -> Option<Criterion> {
    let path = |e: &Expr| DirectPath::compile(e, constant);
    match expr {
        Expr::Binary { op: BinaryOp::And, left, right } => Some(Criterion::And(
            Box::new(compile_criterion(left, constant)?),
            Box::new(compile_criterion(right, constant)?),
        )),
        Expr::Binary { op: BinaryOp::Or, left, right } => Some(Criterion::Or(
            Box::new(compile_criterion(left, constant)?),
            Box::new(compile_criterion(right, constant)?),
        )),
        Expr::Binary { op: BinaryOp::In, left, right } => {
            let mut wanted = Vec::new();
            literals(right, constant, &mut wanted)?;
            Some(Criterion::In(path(left)?, wanted))
        }
        Expr::Binary { op: BinaryOp::Equal, left, right } => {
            Some(Criterion::Equals(path(left)?, expected(right, constant)?))
        }
        Expr::Call { target, function: Function::Exists, args } => {
            let target = match target {
                Some(target) => path(target)?,
                None => DirectPath { steps: Vec::new() },
            };
            match args.as_slice() {
                [] => Some(Criterion::Exists(target)),
                [criterion] => {
                    Some(Criterion::ExistsWhere(target, Box::new(compile_criterion(criterion, constant)?)))
                }
                _ => None,
            }
        }
        Expr::Call { target: Some(target), function: Function::Empty, args } if args.is_empty() => {
            Some(Criterion::Empty(path(target)?))
        }
        _ => None,
    }
}

/// A literal, or a constant that is text.
fn expected(expr: &Expr, constant: &dyn Fn(&str) -> Option<String>) -> Option<Expected> {
    Some(match expr {
        Expr::Literal(Literal::String(text)) => Expected::Text(text.clone()),
        Expr::Literal(Literal::Boolean(b)) => Expected::Boolean(*b),
        Expr::Literal(Literal::Integer(i)) => Expected::Integer(*i),
        Expr::Variable(variable) => Expected::Text(variable_text(variable, constant)?),
        _ => return None,
    })
}

/// The literals of `a | b | ...`.
fn literals(expr: &Expr, constant: &dyn Fn(&str) -> Option<String>, out: &mut Vec<Expected>) -> Option<()> {
    match expr {
        Expr::Binary { op: BinaryOp::Union, left, right } => {
            literals(left, constant, out)?;
            literals(right, constant, out)
        }
        other => {
            out.push(expected(other, constant)?);
            Some(())
        }
    }
}

/// A `%variable` as text: the evaluator's own first, then the view's string constants.
fn variable_text(name: &str, constant: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match name {
        "resource" | "rootResource" | "context" => None,
        _ => code_system_variable(name).map(str::to_string).or_else(|| {
            if name.starts_with("vs-") || name.starts_with("ext-") { None } else { constant(name) }
        }),
    }
}

fn compile_into(expr: &Expr, constant: &dyn Fn(&str) -> Option<String>, steps: &mut Vec<Step>) -> Option<()> {
    match expr {
        Expr::This => Some(()),
        Expr::Member { target, name } => {
            if let Some(target) = target {
                compile_into(target, constant, steps)?;
            }
            steps.push(Step::Member(Resolving::new(name)));
            Some(())
        }
        Expr::Call { target, function, args } => {
            match (function, args.as_slice()) {
                (Function::OfType, [type_arg]) => {
                    // Only `name.ofType(T)`: the choice element, by the type it is written in.
                    let Some(Expr::Member { target: inner, name }) = target.as_deref() else { return None };
                    let spec = type_of_expr(type_arg)?;
                    if spec.namespace.as_deref().is_some_and(|n| n != "FHIR") {
                        return None;
                    }
                    definitions().type_def(&spec.name)?;
                    if let Some(inner) = inner {
                        compile_into(inner, constant, steps)?;
                    }
                    steps.push(Step::Choice {
                        name: name.clone(),
                        type_name: spec.name,
                        resolved: OnceLock::new(),
                    });
                    return Some(());
                }
                (Function::Where, [criterion]) => {
                    let criterion = compile_criterion(criterion, constant)?;
                    if let Some(target) = target {
                        compile_into(target, constant, steps)?;
                    }
                    steps.push(Step::Where(criterion));
                    return Some(());
                }
                (Function::Iif, [criterion, then, rest @ ..]) if target.is_none() && steps.is_empty() => {
                    let branch =
                        |e: &Expr| DirectPath::compile(e, constant).map_or(Branch::General, Branch::Direct);
                    let (then, otherwise) = match rest {
                        [] => (branch(then), Branch::Absent),
                        [otherwise] => (branch(then), branch(otherwise)),
                        _ => return None,
                    };
                    // Neither walked directly: the evaluator would do all the work after the
                    // criterion.
                    if matches!(then, Branch::General) && !matches!(otherwise, Branch::Direct(_)) {
                        return None;
                    }
                    steps.push(Step::Iif {
                        criterion: compile_criterion(criterion, constant)?,
                        then,
                        otherwise,
                    });
                    return Some(());
                }
                _ => {}
            }
            if let Some(target) = target {
                compile_into(target, constant, steps)?;
            }
            match (function, args.as_slice()) {
                (Function::First, []) => steps.push(Step::First),
                (Function::ToStringFn, []) => steps.push(Step::ToString),
                (Function::Exists, []) => steps.push(Step::Exists),
                (Function::Count, []) => steps.push(Step::Count),
                (Function::Distinct, []) => steps.push(Step::Distinct),
                (Function::Substring, [start, rest @ ..]) => {
                    let literal = |e: &Expr| match e {
                        Expr::Literal(Literal::Integer(i)) => Some(*i),
                        _ => None,
                    };
                    let length = match rest {
                        [] => None,
                        [length] => Some(literal(length)?),
                        _ => return None,
                    };
                    steps.push(Step::Substring(literal(start)?, length))
                }
                (Function::GetResourceKey, []) => steps.push(Step::ResourceKey),
                (Function::GetReferenceKey, []) => steps.push(Step::ReferenceKey(None)),
                (Function::GetReferenceKey, [type_arg]) => {
                    steps.push(Step::ReferenceKey(Some(type_of_expr(type_arg)?.name)))
                }
                _ => return None,
            }
            Some(())
        }
        _ => None,
    }
}

/// The JSON keys of choice element `name` of `item` whose type is `type_name` (exactly, for
/// a primitive; or a specialization of it), with their types and roots.
fn choice_keys(
    item: &Node<'_>,
    name: &str,
    type_name: &str,
) -> Option<Vec<(String, &'static str, &'static str)>> {
    if item.root.is_empty() {
        return None;
    }
    let defs = definitions();
    let Some(Member::Choice(element)) = defs.member(item.root, name) else { return None };
    let target = defs.type_def(type_name)?;
    let keys: Vec<_> = element
        .types
        .iter()
        .filter(|t| {
            if target.kind == TypeKind::PrimitiveType {
                t.code == target.name
            } else {
                defs.is_subtype(t.code, target.name)
            }
        })
        .map(|t| (choice_key(name, t.code), t.code, defs.children_root(element, Some(t.code))))
        .collect();
    // A choice with none of the type: nothing to find, which the ordinary path also says.
    if keys.is_empty() { None } else { Some(keys) }
}

fn has_sidecar(object: &serde_json::Map<String, Json>, name: &str) -> bool {
    object.keys().any(|k| is_sidecar_key(k, name))
}

fn is_sidecar_key(key: &str, name: &str) -> bool {
    key.len() == name.len() + 1 && key.as_bytes()[0] == b'_' && &key[1..] == name
}

/// The value of primitive member `name`, in one pass over the keys that also looks for its
/// `_name` sibling (`None`: there is one, which only the evaluator reads).
fn primitive_member<'j>(object: &'j serde_json::Map<String, Json>, name: &str) -> Option<Option<&'j Json>> {
    let mut found = None;
    for (key, value) in object {
        if key.len() == name.len() {
            if found.is_none() && key == name {
                found = Some(value);
            }
        } else if is_sidecar_key(key, name) {
            return None;
        }
    }
    Some(found)
}

fn push<'a>(out: &mut Vec<Node<'a>>, value: &'a Json, type_name: &'static str, root: &'static str) {
    match value {
        Json::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                out.push(Node { json: Some(item), sidecar: None, type_name, root });
            }
        }
        Json::Null => {}
        single => out.push(Node { json: Some(single), sidecar: None, type_name, root }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Environment, Expression};

    fn observation() -> Json {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"},
                                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "http://x/fhir/Encounter/e1/_history/2"},
            "valueQuantity": {"value": 69, "unit": "/min"},
            "component": [{"code": {"text": "a"}}, {"code": {"text": "b"}}]})
    }

    /// The direct walk, and the general evaluator's answer, as display strings.
    fn both(expression: &str, resource: &Json) -> (Option<Vec<String>>, Vec<String>) {
        let parsed = Expression::parse(expression).unwrap();
        let direct = parsed.direct().unwrap_or_else(|| panic!("{expression} is not direct"));
        let focus = Value::Node(Node::resource(resource));
        let walked = direct.evaluate(&focus).map(|c| c.iter().map(Value::display).collect());
        let general = parsed.evaluate(resource, &Environment::default()).unwrap();
        (walked, general.iter().map(Value::display).collect())
    }

    #[test]
    fn the_shapes_analytics_uses_are_walked_directly_and_agree() {
        let resource = observation();
        for (expression, expected) in [
            ("getResourceKey()", vec!["o1"]),
            ("subject.getReferenceKey(Patient)", vec!["p1"]),
            ("subject.getReferenceKey(Encounter)", vec![]),
            ("encounter.getReferenceKey()", vec!["e1"]),
            ("status", vec!["final"]),
            ("code.coding.where(system = %loinc).first().code", vec!["8867-4"]),
            ("code.coding.where(system = 'http://snomed.info/sct').code", vec!["1"]),
            ("code.coding.code", vec!["1", "8867-4"]),
            ("value.ofType(Quantity).unit", vec!["/min"]),
            ("value.ofType(string)", vec![]),
            ("component.code.text", vec!["a", "b"]),
            ("component.first().code.text", vec!["a"]),
            ("{}", vec![]),
            ("encounter.getReferenceKey(Encounter).first()", vec!["e1"]),
            ("status | code.coding.code | status", vec!["final", "1", "8867-4"]),
            ("value.ofType(Quantity).value | value.ofType(integer)", vec!["69"]),
            ("code.coding.where(system = %loinc and code = '8867-4').display", vec!["Heart rate"]),
            ("code.coding.where(system = %sct or display = 'Heart rate').code", vec!["1", "8867-4"]),
            ("code.coding.where(code.exists() and display.empty()).code", vec!["1"]),
            ("component.where(code.exists(text = 'b')).code.text", vec!["b"]),
            ("iif(value.ofType(Quantity).exists(), value.ofType(Quantity).unit, status)", vec!["/min"]),
            ("iif(component.empty(), status, code.coding.first().code)", vec!["1"]),
            ("iif(status = 'final', subject.getReferenceKey())", vec!["p1"]),
            ("iif(status = 'draft', subject.getReferenceKey())", vec![]),
            ("iif(status in ('draft' | 'final'), code.coding.first().code, {})", vec!["1"]),
            ("iif(status in ('draft' | 'preliminary'), code.coding.first().code, {})", vec![]),
            ("iif(status in 'final', status)", vec!["final"]),
            ("code.coding.code.exists()", vec!["true"]),
            ("component.code.coding.exists()", vec!["false"]),
            ("code.coding.count()", vec!["2"]),
            ("subject.getReferenceKey().count()", vec!["1"]),
            ("iif(code.coding.count() = 2, status, {})", vec!["final"]),
            ("component.code.text.count()", vec!["2"]),
            ("status.toString()", vec!["final"]),
            ("status.substring(1, 3)", vec!["ina"]),
            ("status.substring(2)", vec!["nal"]),
            ("status.substring(9, 1)", vec![]),
            ("status.toString().substring(0, 2)", vec!["fi"]),
            ("value.ofType(Quantity).value.toString()", vec!["69"]),
            ("code.coding.system.first().substring(7, 6)", vec!["snomed"]),
            ("iif(component.exists(), component.code.text.first(), {})", vec!["a"]),
        ] {
            let (walked, general) = both(expression, &resource);
            assert_eq!(
                walked.as_deref(),
                Some(&expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
                "{expression}"
            );
            assert_eq!(general, expected, "{expression}");
        }
    }

    #[test]
    fn unusual_json_is_left_to_the_general_evaluator() {
        let mut resource = observation();
        resource["_status"] = json!({"extension": [{"url": "http://x", "valueString": "y"}]});
        resource["valueString"] = json!("two values");
        let (walked, _) = both("status", &resource);
        assert_eq!(walked, None, "status has an extension sibling");
        // Another type of the choice beside it changes nothing.
        let (walked, general) = both("value.ofType(Quantity)", &resource);
        assert_eq!(walked, Some(general));
        // Not a direct shape at all.
        // A choice named without its type: every type present, in the JSON's order.
        let (walked, general) = both("value", &resource);
        assert_eq!((walked.clone(), general.len()), (Some(general), 2));
        let (walked, _) = both("where(value.exists() or component.empty()).id", &resource);
        assert_eq!(walked, Some(vec!["o1".to_string()]));
        for expression in [
            "status.not()",
            "code.coding.where(code.exists().not())",
            "code.coding.where(code.length() > 2)",
            "name.given.first() + 'x'",
        ] {
            assert!(Expression::parse(expression).unwrap().direct().is_none(), "{expression}");
        }
        // A branch of an iif() that is not walked directly is left to the evaluator when it
        // is the one chosen.
        let (walked, general) = both("iif(id = 'o1', id.length(), id)", &resource);
        assert_eq!((walked, general), (None, vec!["2".to_string()]));
        let (walked, general) = both("iif(id = 'o2', id.length(), id)", &resource);
        assert_eq!((walked, general.clone()), (Some(general), vec!["o1".to_string()]));
        // Several items where one is wanted: the evaluator says what is wrong.
        for expression in [
            "code.coding.code.substring(0, 1)",
            "code.coding.code.toString()",
            "iif(code.coding.code in 'x', id)",
        ] {
            let parsed = Expression::parse(expression).unwrap();
            let direct = parsed.direct().unwrap_or_else(|| panic!("{expression} is not direct"));
            assert!(direct.evaluate(&Value::Node(Node::resource(&resource))).is_none(), "{expression}");
        }
        // Distinct keys are strings; distinct elements are compared by the evaluator.
        let claim = json!({"resourceType": "Claim", "item": [
            {"encounter": [{"reference": "Encounter/e1"}]}, {"encounter": [{"reference": "Encounter/e2"}]},
            {"encounter": [{"reference": "Encounter/e1"}]}]});
        for (expression, expected) in [
            ("item.encounter.getReferenceKey(Encounter).distinct()", vec!["e1", "e2"]),
            ("item.encounter.getReferenceKey(Encounter).distinct().count()", vec!["2"]),
            ("item.encounter.getReferenceKey(Encounter).count()", vec!["3"]),
            (
                "iif(item.encounter.getReferenceKey().distinct().count() = 1, item.encounter.getReferenceKey(), {})",
                vec![],
            ),
            (
                "iif(item.first().encounter.getReferenceKey().distinct().count() = 1, item.first().encounter.getReferenceKey())",
                vec!["e1"],
            ),
        ] {
            let (walked, general) = both(expression, &claim);
            assert_eq!(walked.as_ref(), Some(&general), "{expression}");
            assert_eq!(general, expected, "{expression}");
        }
        assert!(Expression::parse("code.coding.distinct()").unwrap().direct().is_none());
        // An element the definitions do not know.
        let (walked, general) = both("nosuch", &json!({"resourceType": "Patient", "nosuch": "x"}));
        assert_eq!((walked, general), (None, vec!["x".to_string()]));
    }
}
