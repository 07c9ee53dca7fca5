//! The rows of one resource: the specification's processing algorithm over the compiled view.

use std::borrow::Cow;
use std::collections::HashMap;

use fhir::DateTime;
use fhirpath::{Collection, Environment, Node, Value};
use serde_json::Value as Json;

use crate::Error;
use crate::view::{ColumnDef, Iteration, Kind, Path, Select, ViewDefinition};

/// One value of a row, already in its column's representation; text is borrowed from the
/// resource where it is written there as it is output.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'r> {
    Null,
    Boolean(bool),
    Integer(i64),
    Decimal(f64),
    /// Text, and complex values as JSON text.
    Text(Cow<'r, str>),
    /// A `collection: true` column (empty when the path found nothing).
    List(Vec<Cell<'r>>),
}

impl Cell<'_> {
    /// The cell with its text copied out of the resource.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Boolean(b) => Cell::Boolean(b),
            Cell::Integer(i) => Cell::Integer(i),
            Cell::Decimal(d) => Cell::Decimal(d),
            Cell::Text(text) => Cell::Text(Cow::Owned(text.into_owned())),
            Cell::List(items) => Cell::List(items.into_iter().map(Cell::into_owned).collect()),
        }
    }
}

/// A row: one cell per column of the view, in [`ViewDefinition::columns`] order.
pub type Row<'r> = Vec<Cell<'r>>;

/// The lists a view's paths walk with, kept by a runner from one resource to the next.
#[derive(Default)]
pub(crate) struct Lists {
    scratch: fhirpath::Scratch<'static>,
}

/// `repeat` follows paths that should descend; these bound a path that does not (`$this`).
const REPEAT_MAX_DEPTH: usize = 64;
const REPEAT_MAX_NODES: usize = 100_000;

impl ViewDefinition {
    /// The rows a resource contributes (none when its `resourceType` is not the view's
    /// resource or a `where` excludes it).
    pub fn rows<'r>(&'r self, resource: &'r Json) -> Result<Vec<Row<'r>>, Error> {
        self.rows_at(resource, now(), &mut Lists::default())
    }

    /// [`ViewDefinition::rows`] with `now()`/`today()` fixed, so that a whole run sees one
    /// instant.
    pub(crate) fn rows_at<'r>(
        &'r self,
        resource: &'r Json,
        now: DateTime,
        lists: &mut Lists,
    ) -> Result<Vec<Row<'r>>, Error> {
        let resource_type =
            resource.as_object().and_then(|o| fhirpath::lookup(o, "resourceType")).and_then(Json::as_str);
        if resource_type != Some(self.resource()) {
            return Ok(Vec::new());
        }
        let node = Value::Node(Node::resource(resource));
        let mut evaluation = Evaluation {
            view: self,
            now,
            direct: self.direct_paths,
            resource,
            env: None,
            scratch: std::mem::take(&mut lists.scratch).recycle(),
        };
        let rows = evaluation.rows(self, &node);
        lists.scratch = evaluation.scratch.recycle();
        rows
    }
}

const ROW_INDEX: &str = "rowIndex";

pub(crate) fn now() -> DateTime {
    let mut now = DateTime::now_utc();
    now.offset_minutes = Some(0);
    now
}

struct Evaluation<'r> {
    view: &'r ViewDefinition,
    now: DateTime,
    /// Whether paths that can be walked directly are (see [`fhirpath::DirectPath`]).
    direct: bool,
    resource: &'r Json,
    /// Made when a path first needs the general evaluator.
    env: Option<Environment<'r>>,
    scratch: fhirpath::Scratch<'r>,
}

/// The variables of a view's paths: its constants and `%rowIndex`.
fn environment<'r>(view: &'r ViewDefinition, now: DateTime) -> Environment<'r> {
    let mut variables = HashMap::with_capacity(view.constants.len() + 1);
    for constant in &view.constants {
        let node = Node {
            json: Some(&constant.value),
            sidecar: None,
            type_name: constant.fhir_type,
            root: constant.fhir_type,
        };
        variables.insert(constant.name.clone(), vec![Value::Node(node)]);
    }
    variables.insert(ROW_INDEX.to_string(), vec![Value::Integer(0)]);
    Environment {
        root: None,
        root_resource: None,
        variables,
        resolver: None,
        strict: false,
        trace: None,
        now,
        value_sets: view.value_sets.0,
    }
}

impl<'r> Evaluation<'r> {
    fn rows(&mut self, view: &ViewDefinition, node: &Value<'r>) -> Result<Vec<Row<'r>>, Error> {
        for filter in &view.filters {
            if !self.filter(filter, node)? {
                return Ok(Vec::new());
            }
        }
        self.process(&view.root, node, 0)
    }

    /// What `path` gives for `focus`; a path walked directly leaves its values in the
    /// scratch lists.
    fn evaluate<'s>(
        &'s mut self,
        path: &Path,
        focus: &Value<'r>,
        row_index: usize,
    ) -> Result<Cow<'s, [Value<'r>]>, Error> {
        if self.direct
            && let Some(direct) = &path.direct
            && let Some(values) = direct.evaluate_in(focus, &mut self.scratch)
        {
            return Ok(Cow::Borrowed(values));
        }
        if self.direct && path.row_index_only {
            return Ok(Cow::Owned(vec![Value::Integer(row_index as i64)]));
        }
        let (view, now) = (self.view, self.now);
        let env = self.env.get_or_insert_with(|| environment(view, now));
        if path.uses_row_index
            && let Some(slot) = env.variables.get_mut(ROW_INDEX)
        {
            *slot = vec![Value::Integer(row_index as i64)];
        }
        let root = vec![Value::Node(Node::resource(self.resource))];
        match path.expression.evaluate_collection(vec![focus.clone()], root, env) {
            Ok(values) => Ok(Cow::Owned(values)),
            Err(e) => Err(evaluation_error(self.resource, &path.location, e.to_string())),
        }
    }

    fn error(&self, location: &str, message: impl Into<String>) -> Error {
        evaluation_error(self.resource, location, message)
    }

    /// A `where`: empty excludes the resource; anything but one Boolean is an error.
    fn filter(&mut self, filter: &Path, node: &Value<'r>) -> Result<bool, Error> {
        let result = self.evaluate(filter, node, 0)?;
        let wrong = match &*result {
            [] => return Ok(false),
            [value] => match value.system().as_ref() {
                Value::Boolean(b) => return Ok(*b),
                other => {
                    format!("must evaluate to a boolean, found {} ({})", other.type_label(), other.display())
                }
            },
            values => format!("must evaluate to a single boolean, found {} values", values.len()),
        };
        Err(self.error(&filter.location, wrong))
    }

    /// The rows of `select` over `node`; `row_index` is the enclosing `%rowIndex`, kept when
    /// the select does not iterate.
    fn process(
        &mut self,
        select: &Select,
        node: &Value<'r>,
        row_index: usize,
    ) -> Result<Vec<Row<'r>>, Error> {
        let foci = match &select.iteration {
            Iteration::Parent => return self.combine(select, node, row_index),
            Iteration::ForEach(path) | Iteration::ForEachOrNull(path) => {
                self.evaluate(path, node, row_index)?.into_owned()
            }
            Iteration::Repeat(paths) => {
                let mut foci = Vec::new();
                self.repeat(paths, node, row_index, 0, &mut foci)?;
                foci
            }
        };
        if foci.is_empty() && matches!(select.iteration, Iteration::ForEachOrNull(_)) {
            return Ok(vec![select.null_row.clone()]);
        }
        let mut rows = Vec::new();
        for (i, focus) in foci.iter().enumerate() {
            rows.extend(self.combine(select, focus, i)?);
        }
        Ok(rows)
    }

    /// Depth-first, parents before children: the order the elements appear in the resource.
    fn repeat(
        &mut self,
        paths: &[Path],
        node: &Value<'r>,
        row_index: usize,
        depth: usize,
        out: &mut Collection<'r>,
    ) -> Result<(), Error> {
        for path in paths {
            let children = self.evaluate(path, node, row_index)?.into_owned();
            if !children.is_empty() && depth >= REPEAT_MAX_DEPTH {
                return Err(self.error(
                    &path.location,
                    format!("repeat went deeper than {REPEAT_MAX_DEPTH} levels; the path must lead to child elements"),
                ));
            }
            for child in children {
                if out.len() >= REPEAT_MAX_NODES {
                    return Err(self.error(
                        &path.location,
                        format!("repeat found more than {REPEAT_MAX_NODES} elements"),
                    ));
                }
                out.push(child.clone());
                self.repeat(paths, &child, row_index, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// The rows for one focus: its columns, times each nested select's rows, times the
    /// union's rows (the Cartesian product; a part with no rows leaves no rows).
    fn combine(
        &mut self,
        select: &Select,
        focus: &Value<'r>,
        row_index: usize,
    ) -> Result<Vec<Row<'r>>, Error> {
        let mut own = Vec::with_capacity(select.width);
        for column in &select.columns {
            let values = self.evaluate(&column.path, focus, row_index)?;
            let cell = cell(column, &values);
            own.push(cell.map_err(|message| self.error(&column.path.location, message))?);
        }
        let mut rows = vec![own];
        for nested in &select.selects {
            let part = self.process(nested, focus, row_index)?;
            rows = product(rows, part);
        }
        if !select.union_all.is_empty() {
            let mut part = Vec::new();
            for branch in &select.union_all {
                part.extend(self.process(branch, focus, row_index)?);
            }
            rows = product(rows, part);
        }
        Ok(rows)
    }
}

fn evaluation_error(resource: &Json, location: &str, message: impl Into<String>) -> Error {
    let resource_type = resource.get("resourceType").and_then(Json::as_str).unwrap_or("?");
    let resource = match resource.get("id").and_then(Json::as_str) {
        Some(id) => format!("{resource_type}/{id}"),
        None => format!("{resource_type} (without id)"),
    };
    Error::Evaluation { resource, location: location.to_string(), message: message.into() }
}

fn product<'r>(left: Vec<Row<'r>>, right: Vec<Row<'r>>) -> Vec<Row<'r>> {
    match right.len() {
        0 => Vec::new(),
        1 => {
            let Some(only) = right.into_iter().next() else { return Vec::new() };
            let mut rows = left;
            if let Some((last, others)) = rows.split_last_mut() {
                for row in others {
                    row.extend(only.iter().cloned());
                }
                last.extend(only);
            }
            rows
        }
        _ => {
            let mut rows = Vec::with_capacity(left.len() * right.len());
            for row in &left {
                for part in &right {
                    let mut combined = row.clone();
                    combined.extend(part.iter().cloned());
                    rows.push(combined);
                }
            }
            rows
        }
    }
}

/// A column's cell from what its path found; the message says what is wrong.
fn cell<'r>(column: &ColumnDef, values: &[Value<'r>]) -> Result<Cell<'r>, String> {
    if column.collection {
        return values.iter().map(|v| scalar(column.kind, v)).collect::<Result<_, _>>().map(Cell::List);
    }
    match values {
        [] => Ok(Cell::Null),
        [value] => scalar(column.kind, value),
        values => Err(format!(
            "found {} values ({}) but the column is not a collection (set \"collection\": true)",
            values.len(),
            values.iter().take(3).map(Value::display).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn scalar<'r>(kind: Kind, value: &Value<'r>) -> Result<Cell<'r>, String> {
    // Text needs no System value (which for a date means parsing it), and neither do numbers
    // and Booleans as the resource writes them.
    match kind {
        Kind::Text => return Ok(Cell::Text(text(value))),
        Kind::Json => {
            return Ok(Cell::Text(match value {
                Value::Node(node) if !node.is_primitive() => {
                    Cow::Owned(node.json.map(Json::to_string).unwrap_or_default())
                }
                Value::Quantity(_) => Cow::Owned(value.to_json().to_string()),
                _ => text(value),
            }));
        }
        Kind::Boolean | Kind::Integer | Kind::Decimal => {
            if let Some(cell) = written_number(kind, value) {
                return Ok(cell);
            }
        }
    }
    let system = value.system();
    let mismatch = |expected: &str| {
        Err(format!("expected {expected}, found {} ({})", system.type_label(), system.display()))
    };
    match kind {
        Kind::Boolean => match system.as_ref() {
            Value::Boolean(b) => Ok(Cell::Boolean(*b)),
            _ => mismatch("a boolean"),
        },
        Kind::Integer => match system.as_ref() {
            Value::Integer(i) | Value::Long(i) => Ok(Cell::Integer(*i)),
            _ => mismatch("an integer"),
        },
        Kind::Decimal => match system.as_ref() {
            Value::Integer(i) | Value::Long(i) => Ok(Cell::Decimal(*i as f64)),
            // Through the decimal text: the nearest double, where the Decimal's own conversion
            // may be off by one unit in the last place.
            Value::Decimal(d) => {
                d.to_string().parse().map(Cell::Decimal).map_err(|_| format!("decimal {d} is out of range"))
            }
            _ => mismatch("a decimal"),
        },
        Kind::Text | Kind::Json => Ok(Cell::Text(text(value))),
    }
}

/// A number or Boolean element's cell straight from its JSON (`None`: ask its System value,
/// which also says what is wrong).
fn written_number<'r>(kind: Kind, value: &Value<'r>) -> Option<Cell<'r>> {
    let Value::Node(node) = value else { return None };
    let integer_type = matches!(node.type_name, "integer" | "positiveInt" | "unsignedInt");
    match (kind, node.json?) {
        (Kind::Boolean, Json::Bool(b)) => Some(Cell::Boolean(*b)),
        (Kind::Integer, Json::Number(n)) if integer_type => n.as_i64().map(Cell::Integer),
        // The nearest double to the number as written, for the plain decimals a Decimal holds
        // exactly (an exponent or a 29th digit is left to it).
        (Kind::Decimal, Json::Number(n))
            if (integer_type || node.type_name == "decimal")
                && n.as_str().len() <= 24
                && !n.as_str().contains(['e', 'E']) =>
        {
            n.as_str().parse().ok().map(Cell::Decimal)
        }
        _ => None,
    }
}

/// A value in its FHIR string form: a primitive element as written in the resource (`1.50`
/// keeps its zero), System values without FHIRPath's `@`, complex elements as JSON.
fn text<'r>(value: &Value<'r>) -> Cow<'r, str> {
    match value {
        Value::Node(node) => match node.json {
            Some(Json::String(s)) => return Cow::Borrowed(s),
            Some(Json::Number(n)) => return Cow::Borrowed(n.as_str()),
            Some(Json::Bool(b)) => return Cow::Borrowed(if *b { "true" } else { "false" }),
            Some(json) if !node.is_primitive() => return Cow::Owned(json.to_string()),
            _ => {}
        },
        Value::String(s) => return s.clone(),
        _ => {}
    }
    Cow::Owned(match value.system().as_ref() {
        Value::String(s) => s.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) | Value::Long(i) => i.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Date(d) | Value::DateTime(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Quantity(q) => q.to_string(),
        Value::Type(t) => format!("{}.{}", t.namespace, t.name),
        Value::Node(node) => node.json.map(Json::to_string).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(json: Json) -> ViewDefinition {
        ViewDefinition::from_json(&json).unwrap()
    }

    fn patient() -> Json {
        fhir::parse_json(
            br#"{"resourceType": "Patient", "id": "p1", "active": true,
                "name": [{"family": "Ng", "given": ["Ann", "Bea"]}, {"family": "Lu"}],
                "extension": [{"url": "http://example.org/weight", "valueDecimal": 1.50}]}"#,
        )
        .unwrap()
    }

    fn run_error(view: &ViewDefinition, resource: &Json) -> String {
        match view.rows(resource) {
            Err(e @ Error::Evaluation { .. }) => e.to_string(),
            other => panic!("expected an evaluation error, got {other:?}"),
        }
    }

    #[test]
    fn other_resource_types_give_no_rows() {
        let view =
            view(json!({"resource": "Observation", "select": [{"column": [{"name": "id", "path": "id"}]}]}));
        assert!(view.rows(&patient()).unwrap().is_empty());
        assert!(view.rows(&json!({"id": "x"})).unwrap().is_empty());
        assert!(view.rows(&json!("Observation")).unwrap().is_empty());
    }

    #[test]
    fn for_each_or_null_emits_one_null_row_for_all_its_columns() {
        let view = view(json!({"resource": "Patient", "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {"forEachOrNull": "contact", "column": [
                {"name": "i", "path": "%rowIndex", "type": "integer"},
                {"name": "label", "path": "'contact'"}],
             "select": [{"forEach": "telecom", "column": [{"name": "tel", "path": "value"}]}]}
        ]}));
        assert_eq!(
            view.rows(&patient()).unwrap(),
            vec![vec![Cell::Text("p1".into()), Cell::Integer(0), Cell::Null, Cell::Null]]
        );
    }

    #[test]
    fn values_keep_their_fhir_form() {
        let view = view(json!({"resource": "Patient", "select": [{"column": [
            {"name": "weight_text", "path": "extension.value", "type": "string"},
            {"name": "weight", "path": "extension.value", "type": "decimal"},
            {"name": "name", "path": "name.first()"},
            {"name": "given", "path": "name.given", "type": "string", "collection": true},
            {"name": "none", "path": "telecom.value", "type": "string", "collection": true},
            {"name": "next_year", "path": "@2020-01 + 1 year", "type": "date"}
        ]}]}));
        assert_eq!(
            view.rows(&patient()).unwrap(),
            vec![vec![
                Cell::Text("1.50".into()),
                Cell::Decimal(1.5),
                Cell::Text(r#"{"family":"Ng","given":["Ann","Bea"]}"#.into()),
                Cell::List(vec![Cell::Text("Ann".into()), Cell::Text("Bea".into())]),
                Cell::List(Vec::new()),
                Cell::Text("2021-01".into()),
            ]]
        );
    }

    #[test]
    fn errors_name_the_resource_and_the_place() {
        let several = view(json!({"resource": "Patient", "select": [{"forEach": "name", "column": [
            {"name": "given", "path": "given"}]}]}));
        let message = run_error(&several, &patient());
        assert!(
            message.contains("Patient/p1: select[0].column[0].path: found 2 values (Ann, Bea) but the column is not a collection"),
            "{message}"
        );
        let wrong_type = view(json!({"resource": "Patient", "select": [{"column": [
            {"name": "id", "path": "id"}, {"name": "active", "path": "name.family.first()", "type": "boolean"}]}]}));
        let message = run_error(&wrong_type, &patient());
        assert!(
            message.contains("select[0].column[1].path: expected a boolean, found string (Ng)"),
            "{message}"
        );
        let not_boolean = view(
            json!({"resource": "Patient", "where": [{"path": "active"}, {"path": "name.family.first()"}],
            "select": [{"column": [{"name": "id", "path": "id"}]}]}),
        );
        let message = run_error(&not_boolean, &patient());
        assert!(
            message.contains("Patient/p1: where[1].path: must evaluate to a boolean, found string"),
            "{message}"
        );
        let several_booleans =
            view(json!({"resource": "Patient", "where": [{"path": "name.exists() | true"}],
            "select": [{"column": [{"name": "id", "path": "id"}]}]}));
        let resource = patient();
        let ok = several_booleans.rows(&resource);
        assert!(ok.is_ok(), "a union of equal Booleans is one Boolean: {ok:?}");
        let multiple = view(
            json!({"resource": "Patient", "where": [{"path": "name.family.exists()"}, {"path": "name.given.empty()"}],
            "select": [{"column": [{"name": "id", "path": "id"}]}]}),
        );
        assert!(multiple.rows(&patient()).unwrap().is_empty());
        let anonymous =
            run_error(&several, &json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]}));
        assert!(anonymous.starts_with("Patient (without id): "), "{anonymous}");
    }

    #[test]
    fn repeat_that_does_not_descend_is_stopped() {
        let view = view(
            json!({"resource": "Patient", "select": [{"repeat": ["$this"], "column": [{"name": "id", "path": "id"}]}]}),
        );
        let message = run_error(&view, &patient());
        assert!(message.contains("select[0].repeat[0]: repeat went deeper than 64 levels"), "{message}");
    }
}
