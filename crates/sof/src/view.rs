//! Reading and checking a ViewDefinition: everything that can be wrong with a definition is
//! found here, once, before any resource is read.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use fhir::definitions::{TypeKind, definitions};
use fhir::{DateTime, DateTimeKind, Time};
use fhirpath::Expression;
use serde_json::{Map, Value as Json};

use crate::Error;
use crate::row::Cell;

/// Field metadata key: the column's declared FHIR type (`date`, `HumanName`), when it has one.
pub const FHIR_TYPE_KEY: &str = "fhir_type";
/// Field metadata key: set to `json` on text columns holding a complex value as JSON text, so
/// the JSON writers can embed it rather than quote it.
pub const ENCODING_KEY: &str = "encoding";
/// Field metadata key: the column's `description`.
pub const DESCRIPTION_KEY: &str = "description";

/// How a column's values are represented in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Strings, codes, uris, ids, base64Binary, and date, dateTime, instant and time in their
    /// FHIR lexical form (the text as written, partial dates included); Arrow `Utf8`. Parquet
    /// output gives date, dateTime and instant native types (see [`crate::dates`]).
    Text,
    /// Arrow `Boolean`.
    Boolean,
    /// integer, positiveInt, unsignedInt, integer64; Arrow `Int64` (one type for all of them,
    /// so `integer64` and FHIRPath Longs fit).
    Integer,
    /// decimal; Arrow `Float64`. Analytics tools read it natively; digits beyond a double's
    /// ~15 significant ones and trailing zeros (`1.50`) are not kept.
    Decimal,
    /// A complex type (`HumanName`, `Observation.referenceRange`): the element as JSON text in
    /// a `Utf8` column.
    Json,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text | Kind::Json => DataType::Utf8,
            Kind::Boolean => DataType::Boolean,
            Kind::Integer => DataType::Int64,
            Kind::Decimal => DataType::Float64,
        }
    }
}

/// A column of the view's output, in output order.
#[derive(Clone, Debug)]
pub struct Column {
    name: String,
    fhir_type: Option<String>,
    kind: Kind,
    collection: bool,
    description: Option<String>,
    /// Where it is defined (`select[0].column[1]`), for messages.
    location: String,
}

impl Column {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared `type`, without the `http://hl7.org/fhir/StructureDefinition/` prefix.
    pub fn fhir_type(&self) -> Option<&str> {
        self.fhir_type.as_deref()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the column holds a list of values (`collection: true`).
    pub fn collection(&self) -> bool {
        self.collection
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    fn field(&self) -> Field {
        let item = self.kind.data_type();
        let data_type =
            if self.collection { DataType::List(Arc::new(Field::new_list_field(item, true))) } else { item };
        let mut metadata = HashMap::new();
        if let Some(fhir_type) = &self.fhir_type {
            metadata.insert(FHIR_TYPE_KEY.to_string(), fhir_type.clone());
        }
        if self.kind == Kind::Json {
            metadata.insert(ENCODING_KEY.to_string(), "json".to_string());
        }
        if let Some(description) = &self.description {
            metadata.insert(DESCRIPTION_KEY.to_string(), description.clone());
        }
        Field::new(&self.name, data_type, true).with_metadata(metadata)
    }
}

/// A compiled FHIRPath expression with where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    pub expression: Expression,
    pub location: String,
    /// Whether it reads `%rowIndex`, which is then set before each evaluation.
    pub uses_row_index: bool,
    /// The expression walked straight over the JSON, when it has such a shape.
    pub direct: Option<fhirpath::DirectPath>,
    /// Whether the expression is just `%rowIndex`.
    pub row_index_only: bool,
}

/// What a selection iterates over.
#[derive(Clone, Debug)]
pub(crate) enum Iteration {
    /// The parent's node itself.
    Parent,
    ForEach(Path),
    ForEachOrNull(Path),
    Repeat(Vec<Path>),
}

#[derive(Clone, Debug)]
pub(crate) struct ColumnDef {
    pub path: Path,
    pub kind: Kind,
    pub collection: bool,
}

/// A selection structure (`select`, a `unionAll` branch, or the view itself). Its rows are
/// `width` cells: its own columns, then each nested select's, then the union's, which is
/// exactly the view's column order, so combining rows is concatenation.
#[derive(Clone, Debug)]
pub(crate) struct Select {
    pub iteration: Iteration,
    pub columns: Vec<ColumnDef>,
    pub selects: Vec<Select>,
    pub union_all: Vec<Select>,
    pub width: usize,
    /// The row `forEachOrNull` emits for an empty collection: nulls, except `%rowIndex`
    /// columns, which are 0.
    pub null_row: Vec<Cell<'static>>,
}

/// A constant's value, typed so that `birthDate = %date` compares dates, not strings.
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    pub name: String,
    pub value: Json,
    pub fhir_type: &'static str,
}

/// The value sets `memberOf()` in a view's paths asks: the caller's terminology.
#[derive(Clone, Copy, Default)]
pub(crate) struct ValueSetSource(pub Option<&'static dyn fhirpath::ValueSets>);

impl std::fmt::Debug for ValueSetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ValueSetSource(given)" } else { "ValueSetSource(none)" })
    }
}

/// A parsed and checked ViewDefinition.
#[derive(Clone, Debug)]
pub struct ViewDefinition {
    name: Option<String>,
    resource: String,
    pub(crate) constants: Vec<Constant>,
    pub(crate) filters: Vec<Path>,
    pub(crate) root: Select,
    columns: Vec<Column>,
    schema: SchemaRef,
    pub(crate) direct_paths: bool,
    pub(crate) value_sets: ValueSetSource,
}

/// Variables the evaluator or the runner provide besides the constants.
const BUILT_IN_VARIABLES: &[&str] =
    &["rowIndex", "resource", "rootResource", "context", "ucum", "sct", "loinc"];

/// Constant kinds (`value[x]`) and the FHIR type each is evaluated as.
const CONSTANT_TYPES: &[(&str, &str)] = &[
    ("valueBase64Binary", "base64Binary"),
    ("valueBoolean", "boolean"),
    ("valueCanonical", "canonical"),
    ("valueCode", "code"),
    ("valueDate", "date"),
    ("valueDateTime", "dateTime"),
    ("valueDecimal", "decimal"),
    ("valueId", "id"),
    ("valueInstant", "instant"),
    ("valueInteger", "integer"),
    ("valueInteger64", "integer64"),
    ("valueOid", "oid"),
    ("valuePositiveInt", "positiveInt"),
    ("valueString", "string"),
    ("valueTime", "time"),
    ("valueUnsignedInt", "unsignedInt"),
    ("valueUri", "uri"),
    ("valueUrl", "url"),
    ("valueUuid", "uuid"),
];

/// Every backbone element may carry these.
const ELEMENT_KEYS: &[&str] = &["id", "extension", "modifierExtension"];

const SELECT_KEYS: &[&str] = &["column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"];
const COLUMN_KEYS: &[&str] = &["name", "path", "type", "collection", "description", "tag"];
const WHERE_KEYS: &[&str] = &["path", "description"];

impl ViewDefinition {
    /// The same view evaluating every path through the general FHIRPath evaluator, never
    /// walking one directly: the rows must be the same, which the tests check.
    pub fn without_direct_paths(mut self) -> ViewDefinition {
        self.direct_paths = false;
        self
    }

    /// The same view with `memberOf()` answered by `value_sets` (without, membership is
    /// unknown and `memberOf()` empty).
    pub fn with_value_sets(mut self, value_sets: &'static dyn fhirpath::ValueSets) -> ViewDefinition {
        self.value_sets = ValueSetSource(Some(value_sets));
        self
    }

    /// Where the view has paths the general evaluator runs for every resource (none of
    /// their shape can be walked directly): the places an analyst's view is slowest.
    pub fn general_paths(&self) -> Vec<&str> {
        fn walk<'v>(select: &'v Select, out: &mut Vec<&'v str>) {
            let iterated = match &select.iteration {
                Iteration::Parent => Vec::new(),
                Iteration::ForEach(path) | Iteration::ForEachOrNull(path) => vec![path],
                Iteration::Repeat(paths) => paths.iter().collect(),
            };
            let columns = select.columns.iter().map(|c| &c.path);
            for path in iterated.into_iter().chain(columns) {
                if path.direct.is_none() && !path.row_index_only {
                    out.push(&path.location);
                }
            }
            for nested in select.selects.iter().chain(&select.union_all) {
                walk(nested, out);
            }
        }
        let mut out: Vec<&str> =
            self.filters.iter().filter(|p| p.direct.is_none()).map(|p| p.location.as_str()).collect();
        walk(&self.root, &mut out);
        out
    }

    /// Reads and checks a ViewDefinition. The error names the first problem and where it is
    /// (`select[0].column[2].path: ...`).
    pub fn from_json(json: &Json) -> Result<ViewDefinition, Error> {
        let view = object(json, "ViewDefinition")?;
        if let Some(resource_type) = view.get("resourceType")
            && resource_type.as_str() != Some("ViewDefinition")
        {
            return invalid("resourceType", format!("expected \"ViewDefinition\", found {resource_type}"));
        }
        let resource = match view.get("resource") {
            None => return invalid("resource", "is required (the resource type the view reads)"),
            Some(Json::String(resource)) => resource.clone(),
            Some(other) => return invalid("resource", format!("must be a string, found {other}")),
        };
        if !definitions().is_resource_type(&resource) {
            return invalid("resource", format!("'{resource}' is not a FHIR R4 resource type"));
        }
        let name = optional_string(view, "name", "name")?.map(str::to_string);
        if let Some(name) = &name
            && !is_sql_name(name)
        {
            return invalid("name", format!("'{name}' {SQL_NAME_RULE}"));
        }

        let constants = constants(view.get("constant"))?;
        let mut known: Vec<&str> = BUILT_IN_VARIABLES.to_vec();
        known.extend(constants.iter().map(|c| c.name.as_str()));
        let compiler = Compiler { known: &known, constants: &constants };

        let mut filters = Vec::new();
        for (i, item) in array(view.get("where"), "where")?.iter().enumerate() {
            let location = format!("where[{i}]");
            let filter = object(item, &location)?;
            check_keys(filter, WHERE_KEYS, &location)?;
            let location = format!("{location}.path");
            match filter.get("path") {
                Some(Json::String(text)) => filters.push(compiler.path(text, &location)?),
                Some(other) => return invalid(&location, format!("must be a string, found {other}")),
                None => return invalid(&location, "is required"),
            }
        }

        let selects = array(view.get("select"), "select")?;
        if selects.is_empty() {
            return invalid("select", "is required: at least one select");
        }
        let mut columns = Vec::new();
        let mut nested = Vec::new();
        for (i, item) in selects.iter().enumerate() {
            nested.push(compiler.select(item, &format!("select[{i}]"), &mut columns)?);
        }
        let root = Select::new(Iteration::Parent, Vec::new(), nested, Vec::new(), &[]);
        if columns.is_empty() {
            return invalid("select", "the view defines no columns");
        }
        for (i, column) in columns.iter().enumerate() {
            if let Some(first) = columns[..i].iter().find(|c| c.name == column.name) {
                return invalid(
                    &format!("{}.name", column.location),
                    format!("column '{}' is already defined at {}", column.name, first.location),
                );
            }
        }
        let schema = Arc::new(Schema::new(columns.iter().map(Column::field).collect::<Vec<_>>()));
        Ok(ViewDefinition {
            name,
            resource,
            constants,
            filters,
            root,
            columns,
            schema,
            direct_paths: true,
            value_sets: ValueSetSource::default(),
        })
    }

    /// The view's `name`, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The resource type the view reads; other resources are skipped.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The output columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The Arrow schema of the output: one nullable field per column, with the declared FHIR
    /// type in the field metadata (`fhir_type`).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

struct Compiler<'k> {
    /// Names a `%variable` may have.
    known: &'k [&'k str],
    constants: &'k [Constant],
}

impl Compiler<'_> {
    fn path(&self, text: &str, location: &str) -> Result<Path, Error> {
        let expression = Expression::parse(text).map_err(|e| {
            Error::invalid(location, format!("'{text}' is not a valid FHIRPath expression: {e}"))
        })?;
        let variables = expression.variables();
        for variable in &variables {
            let known =
                self.known.contains(variable) || variable.starts_with("vs-") || variable.starts_with("ext-");
            if !known {
                return invalid(location, format!("'%{variable}' is not a defined constant"));
            }
        }
        let uses_row_index = variables.contains(&"rowIndex");
        // Direct paths compare with constants only as text.
        let text_constant = |name: &str| {
            self.constants
                .iter()
                .find(|c| c.name == name)
                .filter(|c| fhirpath::compares_as_text(c.fhir_type))
                .and_then(|c| c.value.as_str().map(str::to_string))
        };
        let direct = expression.direct_with(&text_constant);
        let row_index_only = expression.source().trim() == "%rowIndex";
        Ok(Path { expression, location: location.to_string(), uses_row_index, direct, row_index_only })
    }

    /// One selection structure; its columns (in output order) are appended to `out`.
    fn select(&self, json: &Json, location: &str, out: &mut Vec<Column>) -> Result<Select, Error> {
        let select = object(json, location)?;
        check_keys(select, SELECT_KEYS, location)?;
        let start = out.len();

        let iterations = ["forEach", "forEachOrNull", "repeat"];
        let present: Vec<&str> = iterations.into_iter().filter(|k| select.contains_key(*k)).collect();
        if present.len() > 1 {
            return invalid(
                location,
                format!("has {}: at most one of forEach, forEachOrNull and repeat", present.join(" and ")),
            );
        }
        let expression = |key: &str| -> Result<Path, Error> {
            let location = format!("{location}.{key}");
            match &select[key] {
                Json::String(text) => self.path(text, &location),
                other => invalid(&location, format!("must be a FHIRPath string, found {other}")),
            }
        };
        let iteration = match present.first().copied() {
            Some("forEach") => Iteration::ForEach(expression("forEach")?),
            Some("forEachOrNull") => Iteration::ForEachOrNull(expression("forEachOrNull")?),
            Some(_) => {
                let key_location = format!("{location}.repeat");
                let items = array(select.get("repeat"), &key_location)?;
                if items.is_empty() {
                    return invalid(&key_location, "must list at least one path");
                }
                let mut paths = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item_location = format!("{key_location}[{i}]");
                    match item {
                        Json::String(text) => paths.push(self.path(text, &item_location)?),
                        other => {
                            return invalid(
                                &item_location,
                                format!("must be a FHIRPath string, found {other}"),
                            );
                        }
                    }
                }
                Iteration::Repeat(paths)
            }
            None => Iteration::Parent,
        };

        let mut columns = Vec::new();
        let mut row_index_columns = Vec::new();
        for (i, item) in array(select.get("column"), &format!("{location}.column"))?.iter().enumerate() {
            let column_location = format!("{location}.column[{i}]");
            let (column, def) = self.column(item, &column_location)?;
            row_index_columns.push(def.path.expression.source().trim() == "%rowIndex");
            out.push(column);
            columns.push(def);
        }

        let mut selects = Vec::new();
        for (i, item) in array(select.get("select"), &format!("{location}.select"))?.iter().enumerate() {
            let nested_location = format!("{location}.select[{i}]");
            let before = out.len();
            selects.push(self.select(item, &nested_location, out)?);
            row_index_columns.extend(std::iter::repeat_n(false, out.len() - before));
        }

        let mut union_all = Vec::new();
        let branches = array(select.get("unionAll"), &format!("{location}.unionAll"))?;
        let mut first: Option<Vec<Column>> = None;
        for (i, item) in branches.iter().enumerate() {
            let branch_location = format!("{location}.unionAll[{i}]");
            let mut branch_columns = Vec::new();
            union_all.push(self.select(item, &branch_location, &mut branch_columns)?);
            match &first {
                None => first = Some(branch_columns),
                Some(first) => check_union_branch(first, &branch_columns, &branch_location, location)?,
            }
        }
        if let Some(first) = first {
            row_index_columns.extend(std::iter::repeat_n(false, first.len()));
            out.extend(first);
        }

        Ok(Select::new(iteration, columns, selects, union_all, &null_row(&out[start..], &row_index_columns)))
    }

    fn column(&self, json: &Json, location: &str) -> Result<(Column, ColumnDef), Error> {
        let column = object(json, location)?;
        check_keys(column, COLUMN_KEYS, location)?;
        let name = match column.get("name") {
            Some(Json::String(name)) if is_sql_name(name) => name.clone(),
            Some(Json::String(name)) => {
                return invalid(&format!("{location}.name"), format!("'{name}' {SQL_NAME_RULE}"));
            }
            Some(other) => {
                return invalid(&format!("{location}.name"), format!("must be a string, found {other}"));
            }
            None => return invalid(&format!("{location}.name"), "is required"),
        };
        let path_location = format!("{location}.path");
        let path = match column.get("path") {
            Some(Json::String(text)) => self.path(text, &path_location)?,
            Some(other) => {
                return invalid(&path_location, format!("must be a FHIRPath string, found {other}"));
            }
            None => return invalid(&path_location, "is required"),
        };
        let collection = match column.get("collection") {
            None => false,
            Some(Json::Bool(collection)) => *collection,
            Some(other) => {
                return invalid(
                    &format!("{location}.collection"),
                    format!("must be true or false, found {other}"),
                );
            }
        };
        let type_location = format!("{location}.type");
        let fhir_type = optional_string(column, "type", &type_location)?
            .map(|t| t.strip_prefix("http://hl7.org/fhir/StructureDefinition/").unwrap_or(t).to_string());
        let kind = match &fhir_type {
            // Without a type the value is written as text (the specification allows treating
            // untyped columns as strings).
            None => Kind::Text,
            Some(fhir_type) => kind_of(fhir_type)
                .ok_or_else(|| Error::invalid(&type_location, format!("'{fhir_type}' is not a FHIR type")))?,
        };
        let description =
            optional_string(column, "description", &format!("{location}.description"))?.map(str::to_string);
        if let Some(tags) = column.get("tag") {
            for (i, tag) in array(Some(tags), &format!("{location}.tag"))?.iter().enumerate() {
                let tag_location = format!("{location}.tag[{i}]");
                let tag = object(tag, &tag_location)?;
                check_keys(tag, &["name", "value"], &tag_location)?;
            }
        }
        let info = Column { name, fhir_type, kind, collection, description, location: location.to_string() };
        Ok((info, ColumnDef { path, kind, collection }))
    }
}

impl Select {
    fn new(
        iteration: Iteration,
        columns: Vec<ColumnDef>,
        selects: Vec<Select>,
        union_all: Vec<Select>,
        null_row: &[Cell<'static>],
    ) -> Select {
        let width = columns.len()
            + selects.iter().map(|s| s.width).sum::<usize>()
            + union_all.first().map_or(0, |u| u.width);
        let null_row = if null_row.len() == width { null_row.to_vec() } else { vec![Cell::Null; width] };
        Select { iteration, columns, selects, union_all, width, null_row }
    }
}

fn null_row(columns: &[Column], row_index: &[bool]) -> Vec<Cell<'static>> {
    columns
        .iter()
        .zip(row_index)
        .map(|(column, is_row_index)| match (is_row_index, column.kind, column.collection) {
            (true, Kind::Integer, false) => Cell::Integer(0),
            (true, Kind::Integer, true) => Cell::List(vec![Cell::Integer(0)]),
            (true, Kind::Decimal, false) => Cell::Decimal(0.0),
            (true, Kind::Text, false) => Cell::Text("0".into()),
            _ => Cell::Null,
        })
        .collect()
}

fn check_union_branch(
    first: &[Column],
    branch: &[Column],
    branch_location: &str,
    location: &str,
) -> Result<(), Error> {
    let names = |columns: &[Column]| columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    if first.len() != branch.len() || first.iter().zip(branch).any(|(a, b)| a.name != b.name) {
        return invalid(
            branch_location,
            format!(
                "unionAll branches must have the same columns in the same order: ({}) here, ({}) in {location}.unionAll[0]",
                names(branch),
                names(first)
            ),
        );
    }
    for (a, b) in first.iter().zip(branch) {
        if a.kind != b.kind || a.collection != b.collection {
            let describe = |c: &Column| {
                let ty = c.fhir_type.as_deref().unwrap_or("untyped");
                if c.collection { format!("a collection of {ty}") } else { ty.to_string() }
            };
            return invalid(
                &b.location,
                format!(
                    "column '{}' is {} here but {} in {location}.unionAll[0]: unionAll branches must agree on types",
                    b.name,
                    describe(b),
                    describe(a)
                ),
            );
        }
    }
    Ok(())
}

/// The representation of a declared column type; `None` for a name that is no FHIR type.
fn kind_of(fhir_type: &str) -> Option<Kind> {
    if let Some(system) = fhir_type.strip_prefix("http://hl7.org/fhirpath/System.") {
        return match system {
            "Boolean" => Some(Kind::Boolean),
            "Integer" | "Long" => Some(Kind::Integer),
            "Decimal" => Some(Kind::Decimal),
            "String" | "Date" | "DateTime" | "Time" => Some(Kind::Text),
            "Quantity" => Some(Kind::Json),
            _ => None,
        };
    }
    match fhir_type {
        "boolean" => Some(Kind::Boolean),
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => Some(Kind::Integer),
        "decimal" => Some(Kind::Decimal),
        "string" | "code" | "id" | "uri" | "url" | "canonical" | "oid" | "uuid" | "markdown"
        | "base64Binary" | "date" | "dateTime" | "instant" | "time" | "xhtml" => Some(Kind::Text),
        _ => {
            let defs = definitions();
            // A complex type, or a backbone element in element-id notation.
            let complex = defs.type_def(fhir_type).is_some_and(|t| t.kind != TypeKind::PrimitiveType)
                || (fhir_type.contains('.') && defs.element(fhir_type).is_some());
            complex.then_some(Kind::Json)
        }
    }
}

fn constants(json: Option<&Json>) -> Result<Vec<Constant>, Error> {
    let mut constants: Vec<Constant> = Vec::new();
    for (i, item) in array(json, "constant")?.iter().enumerate() {
        let location = format!("constant[{i}]");
        let constant = object(item, &location)?;
        let name = match constant.get("name") {
            Some(Json::String(name)) if is_sql_name(name) => name.clone(),
            Some(Json::String(name)) => {
                return invalid(&format!("{location}.name"), format!("'{name}' {SQL_NAME_RULE}"));
            }
            Some(other) => {
                return invalid(&format!("{location}.name"), format!("must be a string, found {other}"));
            }
            None => return invalid(&format!("{location}.name"), "is required"),
        };
        if BUILT_IN_VARIABLES.contains(&name.as_str()) {
            return invalid(
                &format!("{location}.name"),
                format!("'{name}' is reserved (%{name} is built in)"),
            );
        }
        if constants.iter().any(|c| c.name == name) {
            return invalid(&format!("{location}.name"), format!("constant '{name}' is defined twice"));
        }
        let mut value: Option<(Json, &'static str)> = None;
        for (key, json) in constant {
            if key == "name" || key.starts_with('_') || ELEMENT_KEYS.contains(&key.as_str()) {
                continue;
            }
            let value_location = format!("{location}.{key}");
            let Some((_, fhir_type)) = CONSTANT_TYPES.iter().find(|(k, _)| k == key) else {
                return invalid(
                    &value_location,
                    "is not a constant value type (valueString, valueInteger, ...)",
                );
            };
            if value.is_some() {
                return invalid(&location, "has more than one value[x]");
            }
            value = Some((constant_value(json, fhir_type, &value_location)?, fhir_type));
        }
        let Some((value, fhir_type)) = value else {
            return invalid(
                &location,
                format!("constant '{name}' has no value (valueString, valueInteger, ...)"),
            );
        };
        constants.push(Constant { name, value, fhir_type });
    }
    Ok(constants)
}

/// Checks a constant's JSON against its type; the value is kept as FHIR JSON so that it is
/// evaluated exactly like an element of that type in a resource.
fn constant_value(json: &Json, fhir_type: &str, location: &str) -> Result<Json, Error> {
    let wrong = |expected: &str| invalid(location, format!("must be {expected}, found {json}"));
    match fhir_type {
        "boolean" => match json {
            Json::Bool(_) => Ok(json.clone()),
            _ => wrong("true or false"),
        },
        "decimal" => match json {
            Json::Number(_) => Ok(json.clone()),
            _ => wrong("a number"),
        },
        "integer" | "positiveInt" | "unsignedInt" => {
            let minimum = match fhir_type {
                "positiveInt" => 1,
                "unsignedInt" => 0,
                _ => i64::from(i32::MIN),
            };
            match json.as_i64() {
                Some(i) if (minimum..=i64::from(i32::MAX)).contains(&i) => Ok(json.clone()),
                _ => wrong(&format!("an integer of at least {minimum} that fits in 32 bits")),
            }
        }
        // FHIR JSON writes integer64 as a string; a number is accepted and kept as text.
        "integer64" => match json {
            Json::String(text) if text.parse::<i64>().is_ok() => Ok(json.clone()),
            Json::Number(n) if n.as_i64().is_some() => Ok(Json::String(n.to_string())),
            _ => wrong("a 64-bit integer"),
        },
        _ => {
            let Json::String(text) = json else { return wrong("a string") };
            let parsed = match fhir_type {
                "date" => DateTime::parse(text, DateTimeKind::Date).map(drop),
                "dateTime" => DateTime::parse(text, DateTimeKind::DateTime).map(drop),
                "instant" => DateTime::parse(text, DateTimeKind::Instant).map(drop),
                "time" => Time::parse(text, false).map(drop),
                _ => Ok(()),
            };
            match parsed {
                Ok(()) => Ok(json.clone()),
                Err(e) => invalid(location, format!("'{text}' is not a valid {fhir_type}: {e}")),
            }
        }
    }
}

const SQL_NAME_RULE: &str =
    "is not a valid name: letters, digits and underscores, starting with a letter (^[A-Za-z][A-Za-z0-9_]*$)";

/// The `sql-name` invariant: usable unquoted as a column or table name in any database.
fn is_sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn invalid<T>(location: &str, message: impl Into<String>) -> Result<T, Error> {
    Err(Error::invalid(location, message))
}

fn object<'j>(json: &'j Json, location: &str) -> Result<&'j Map<String, Json>, Error> {
    json.as_object().ok_or_else(|| Error::invalid(location, format!("must be an object, found {json}")))
}

/// An optional array property (absent is empty).
fn array<'j>(json: Option<&'j Json>, location: &str) -> Result<&'j [Json], Error> {
    match json {
        None => Ok(&[]),
        Some(Json::Array(items)) => Ok(items),
        Some(other) => invalid(location, format!("must be an array, found {other}")),
    }
}

fn optional_string<'j>(
    object: &'j Map<String, Json>,
    key: &str,
    location: &str,
) -> Result<Option<&'j str>, Error> {
    match object.get(key) {
        None => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(other) => invalid(location, format!("must be a string, found {other}")),
    }
}

/// Rejects misspelt properties (`colum`, `forEachOrNul`), which would otherwise be ignored
/// silently and change the result.
fn check_keys(object: &Map<String, Json>, allowed: &[&str], location: &str) -> Result<(), Error> {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) && !ELEMENT_KEYS.contains(&key.as_str()) && !key.starts_with('_')
        {
            return invalid(
                location,
                format!("unknown property '{key}' (expected one of {})", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The message of the error the definition gives; it must be an `Invalid` one.
    fn error(view: Json) -> String {
        match ViewDefinition::from_json(&view) {
            Err(e @ Error::Invalid { .. }) => e.to_string(),
            Err(other) => panic!("not a definition error: {other}"),
            Ok(_) => panic!("accepted: {view}"),
        }
    }

    fn patient_view(select: Json) -> Json {
        json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": select})
    }

    fn id_column() -> Json {
        json!({"name": "id", "path": "id", "type": "id"})
    }

    #[test]
    fn views_can_be_shared_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<ViewDefinition>();
    }

    #[test]
    fn the_definition_itself() {
        assert!(error(json!([])).contains("ViewDefinition: must be an object"));
        assert!(
            error(json!({"resourceType": "Patient", "resource": "Patient"}))
                .contains("resourceType: expected")
        );
        assert!(error(json!({"select": [{"column": [id_column()]}]})).contains("resource: is required"));
        assert!(error(json!({"resource": 3, "select": []})).contains("resource: must be a string"));
        let unknown = error(json!({"resource": "Patient2", "select": [{"column": [id_column()]}]}));
        assert!(unknown.contains("resource: 'Patient2' is not a FHIR R4 resource type"), "{unknown}");
        assert!(error(json!({"resource": "Patient"})).contains("select: is required"));
        assert!(error(patient_view(json!({"column": []}))).contains("select: must be an array"));
        assert!(
            error(patient_view(json!([{"forEach": "name"}]))).contains("select: the view defines no columns")
        );
        let name = error(
            json!({"resource": "Patient", "name": "patient view", "select": [{"column": [id_column()]}]}),
        );
        assert!(name.contains("name: 'patient view' is not a valid name"), "{name}");
    }

    #[test]
    fn selects_and_columns() {
        let misspelt = error(patient_view(json!([{"colum": [id_column()]}])));
        assert!(misspelt.contains("select[0]: unknown property 'colum'"), "{misspelt}");
        let nameless = error(patient_view(json!([{"column": [id_column(), {"path": "gender"}]}])));
        assert!(nameless.contains("select[0].column[1].name: is required"), "{nameless}");
        let bad_name = error(patient_view(json!([{"column": [{"name": "1st", "path": "id"}]}])));
        assert!(bad_name.contains("select[0].column[0].name: '1st' is not a valid name"), "{bad_name}");
        let pathless = error(patient_view(json!([{"column": [{"name": "id"}]}])));
        assert!(pathless.contains("select[0].column[0].path: is required"), "{pathless}");
        let syntax = error(patient_view(
            json!([{"column": [id_column(), id_column(), {"name": "g", "path": "name.where("}]}]),
        ));
        assert!(
            syntax.contains("select[0].column[2].path: 'name.where(' is not a valid FHIRPath expression"),
            "{syntax}"
        );
        let unknown_function =
            error(patient_view(json!([{"column": [{"name": "g", "path": "name.nosuch()"}]}])));
        assert!(unknown_function.contains("select[0].column[0].path:"), "{unknown_function}");
        let collection =
            error(patient_view(json!([{"column": [{"name": "g", "path": "name", "collection": "yes"}]}])));
        assert!(collection.contains("select[0].column[0].collection: must be true or false"), "{collection}");
        let ty = error(patient_view(json!([{"column": [{"name": "g", "path": "gender", "type": "text"}]}])));
        assert!(ty.contains("select[0].column[0].type: 'text' is not a FHIR type"), "{ty}");
        let for_each = error(patient_view(json!([{"forEach": 1, "column": [id_column()]}])));
        assert!(for_each.contains("select[0].forEach: must be a FHIRPath string"), "{for_each}");
        let both = error(patient_view(
            json!([{"forEach": "name", "forEachOrNull": "name", "column": [id_column()]}]),
        ));
        assert!(both.contains("select[0]: has forEach and forEachOrNull"), "{both}");
        let repeat = error(patient_view(json!([{"repeat": [], "column": [id_column()]}])));
        assert!(repeat.contains("select[0].repeat: must list at least one path"), "{repeat}");
        let repeat_path = error(patient_view(json!([{"repeat": ["link", "(("], "column": [id_column()]}])));
        assert!(repeat_path.contains("select[0].repeat[1]:"), "{repeat_path}");
    }

    #[test]
    fn column_names_are_unique_across_the_row() {
        let nested = error(patient_view(json!([
            {"column": [id_column()]},
            {"forEach": "name", "select": [{"column": [{"name": "family", "path": "family"}, {"name": "id", "path": "given"}]}]}
        ])));
        assert!(
            nested.contains(
                "select[1].select[0].column[1].name: column 'id' is already defined at select[0].column[0]"
            ),
            "{nested}"
        );
        let in_union = error(patient_view(json!([
            {"column": [{"name": "tel", "path": "id"}], "unionAll": [
                {"forEach": "telecom", "column": [{"name": "tel", "path": "value"}]},
                {"forEach": "contact.telecom", "column": [{"name": "tel", "path": "value"}]}
            ]}
        ])));
        assert!(
            in_union.contains("select[0].unionAll[0].column[0].name: column 'tel' is already defined"),
            "{in_union}"
        );
    }

    #[test]
    fn union_branches_must_agree() {
        let branches = |a: Json, b: Json| patient_view(json!([{"unionAll": [{"column": a}, {"column": b}]}]));
        let names =
            error(branches(json!([{"name": "a", "path": "id"}]), json!([{"name": "b", "path": "id"}])));
        assert!(
            names.contains("select[0].unionAll[1]: unionAll branches must have the same columns"),
            "{names}"
        );
        let count = error(branches(
            json!([{"name": "a", "path": "id"}]),
            json!([{"name": "a", "path": "id"}, {"name": "b", "path": "id"}]),
        ));
        assert!(count.contains("(a, b) here, (a) in select[0].unionAll[0]"), "{count}");
        let types = error(branches(
            json!([{"name": "a", "path": "active", "type": "boolean"}]),
            json!([{"name": "a", "path": "id", "type": "string"}]),
        ));
        assert!(
            types.contains("select[0].unionAll[1].column[0]: column 'a' is string here but boolean"),
            "{types}"
        );
        let collection = error(branches(
            json!([{"name": "a", "path": "name.given", "type": "string", "collection": true}]),
            json!([{"name": "a", "path": "id", "type": "string"}]),
        ));
        assert!(collection.contains("is string here but a collection of string"), "{collection}");
    }

    #[test]
    fn constants_and_where() {
        let view = |constant: Json, path: &str| json!({"resource": "Patient", "constant": constant, "select": [{"column": [{"name": "v", "path": path}]}]});
        let undefined = error(view(json!([{"name": "a", "valueString": "x"}]), "name.where(use = %b)"));
        assert!(
            undefined.contains("select[0].column[0].path: '%b' is not a defined constant"),
            "{undefined}"
        );
        let valueless = error(view(json!([{"name": "a"}]), "%a"));
        assert!(valueless.contains("constant[0]: constant 'a' has no value"), "{valueless}");
        let two = error(view(json!([{"name": "a", "valueString": "x", "valueCode": "y"}]), "%a"));
        assert!(two.contains("constant[0]: has more than one value[x]"), "{two}");
        let kind = error(view(json!([{"name": "a", "valueQuantity": {"value": 1}}]), "%a"));
        assert!(kind.contains("constant[0].valueQuantity: is not a constant value type"), "{kind}");
        let date = error(view(json!([{"name": "a", "valueDate": "1978-13-12"}]), "%a"));
        assert!(date.contains("constant[0].valueDate: '1978-13-12' is not a valid date"), "{date}");
        let integer = error(view(json!([{"name": "a", "valuePositiveInt": 0}]), "%a"));
        assert!(
            integer.contains("constant[0].valuePositiveInt: must be an integer of at least 1"),
            "{integer}"
        );
        let boolean = error(view(json!([{"name": "a", "valueBoolean": "true"}]), "%a"));
        assert!(boolean.contains("constant[0].valueBoolean: must be true or false"), "{boolean}");
        let twice =
            error(view(json!([{"name": "a", "valueString": "x"}, {"name": "a", "valueString": "y"}]), "%a"));
        assert!(twice.contains("constant[1].name: constant 'a' is defined twice"), "{twice}");
        let reserved = error(view(json!([{"name": "rowIndex", "valueInteger": 1}]), "%rowIndex"));
        assert!(reserved.contains("constant[0].name: 'rowIndex' is reserved"), "{reserved}");
        let in_where =
            error(json!({"resource": "Patient", "where": [{"path": "active"}, {"path": "%missing"}],
            "select": [{"column": [id_column()]}]}));
        assert!(in_where.contains("where[1].path: '%missing' is not a defined constant"), "{in_where}");
        let where_pathless = error(json!({"resource": "Patient", "where": [{"description": "x"}],
            "select": [{"column": [id_column()]}]}));
        assert!(where_pathless.contains("where[0].path: is required"), "{where_pathless}");
    }

    #[test]
    fn columns_schema_and_metadata() {
        let view = ViewDefinition::from_json(&json!({
            "resource": "Patient", "name": "patients",
            "select": [{"column": [
                {"name": "id", "path": "getResourceKey()", "type": "http://hl7.org/fhir/StructureDefinition/id"},
                {"name": "active", "path": "active", "type": "boolean", "description": "Is active"},
                {"name": "given", "path": "name.given", "type": "string", "collection": true},
                {"name": "names", "path": "name", "type": "HumanName", "collection": true},
                {"name": "untyped", "path": "gender"}
            ]}, {"forEach": "contact", "column": [{"name": "rank", "path": "%rowIndex", "type": "integer"},
                {"name": "weight", "path": "1.5", "type": "decimal"}]}]
        }))
        .unwrap();
        assert_eq!(view.name(), Some("patients"));
        assert_eq!(view.resource(), "Patient");
        let kinds: Vec<_> = view.columns().iter().map(|c| (c.name(), c.kind(), c.collection())).collect();
        assert_eq!(
            kinds,
            vec![
                ("id", Kind::Text, false),
                ("active", Kind::Boolean, false),
                ("given", Kind::Text, true),
                ("names", Kind::Json, true),
                ("untyped", Kind::Text, false),
                ("rank", Kind::Integer, false),
                ("weight", Kind::Decimal, false),
            ]
        );
        let schema = view.schema();
        assert_eq!(schema.field(0).metadata()[FHIR_TYPE_KEY], "id");
        assert_eq!(schema.field(1).metadata()[DESCRIPTION_KEY], "Is active");
        assert!(
            matches!(schema.field(2).data_type(), DataType::List(item) if item.data_type() == &DataType::Utf8)
        );
        assert_eq!(schema.field(3).metadata()[ENCODING_KEY], "json");
        assert_eq!(schema.field(5).data_type(), &DataType::Int64);
        assert_eq!(schema.field(6).data_type(), &DataType::Float64);
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
    }
}
