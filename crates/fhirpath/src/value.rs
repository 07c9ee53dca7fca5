//! FHIRPath values: System primitives, Quantities, and FHIR elements of the input tree.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use fhir::definitions::definitions;
use fhir::{DateTime, DateTimeKind, Precision, Time};
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::ucum;

/// The UCUM code system URL.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// A quantity: a decimal and a unit, either a UCUM code (`'mg'`) or a calendar duration
/// keyword (`week`, normalised to the singular).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: String,
}

/// Calendar duration keywords, singular.
const CALENDAR: &[&str] = &["year", "month", "week", "day", "hour", "minute", "second", "millisecond"];

impl Quantity {
    /// A quantity; plural calendar keywords are normalised (`days` -> `day`).
    pub fn new(value: Decimal, unit: impl Into<String>) -> Self {
        let unit = unit.into();
        let unit = match unit.strip_suffix('s') {
            Some(singular) if CALENDAR.contains(&singular) => singular.to_string(),
            _ => unit,
        };
        Quantity { value, unit }
    }

    /// Whether the unit is a calendar keyword rather than a UCUM code.
    pub fn is_calendar(&self) -> bool {
        CALENDAR.contains(&self.unit.as_str())
    }

    /// The UCUM code for the unit, where there is an exact one (`week` -> `wk`); year and
    /// month have none (a calendar year is not UCUM's `a`).
    pub fn ucum_unit(&self) -> Option<&str> {
        if !self.is_calendar() {
            return Some(&self.unit);
        }
        match self.unit.as_str() {
            "week" => Some("wk"),
            "day" => Some("d"),
            "hour" => Some("h"),
            "minute" => Some("min"),
            "second" => Some("s"),
            "millisecond" => Some("ms"),
            _ => None,
        }
    }

    /// Both quantities expressed in one unit, if their units are comparable.
    pub fn common(&self, other: &Quantity) -> Option<(Decimal, Decimal)> {
        if self.unit == other.unit {
            return Some((self.value, other.value));
        }
        let (a, b) = (self.ucum_unit()?, other.ucum_unit()?);
        let a = ucum::canonical(self.value, a)?;
        let b = ucum::canonical(other.value, b)?;
        (a.dimension == b.dimension).then_some((a.value, b.value))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_calendar() {
            let plural = if self.value == Decimal::ONE { "" } else { "s" };
            write!(f, "{} {}{plural}", self.value, self.unit)
        } else {
            write!(f, "{} '{}'", self.value, self.unit)
        }
    }
}

/// A FHIR element of the input: a resource, a complex value, or a primitive (with its
/// `_name` sibling, which carries the primitive's `id` and extensions).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub json: Option<&'a Json>,
    pub sidecar: Option<&'a Json>,
    /// FHIR type code (`HumanName`, `date`, `Patient`), or "" when unknown.
    pub type_name: &'static str,
    /// Where the element's children are defined: a type name, or a backbone element path.
    pub root: &'static str,
}

impl<'a> Node<'a> {
    /// A resource node; its type comes from `resourceType`.
    pub fn resource(json: &'a Json) -> Self {
        let type_name = json
            .as_object()
            .and_then(|object| crate::eval::lookup(object, "resourceType"))
            .and_then(Json::as_str)
            .and_then(|t| definitions().type_def(t))
            .map_or("", |t| t.name);
        Node { json: Some(json), sidecar: None, type_name, root: type_name }
    }

    /// Whether the node's FHIR type is a primitive type.
    pub fn is_primitive(&self) -> bool {
        is_primitive_type(self.type_name)
            || (self.type_name.is_empty() && self.json.is_some_and(|j| !j.is_object() && !j.is_array()))
    }

    /// The System value of a primitive node.
    pub fn primitive(&self) -> Option<Value<'a>> {
        let json = self.json?;
        let value = match (self.type_name, json) {
            (_, Json::Bool(b)) => Value::Boolean(*b),
            ("decimal", Json::Number(n)) => Value::Decimal(decimal_from_text(&n.to_string())?),
            ("integer64", Json::String(s)) => Value::Long(s.parse().ok()?),
            (_, Json::Number(n)) => {
                let text = n.to_string();
                match text.parse::<i64>() {
                    Ok(i) if matches!(self.type_name, "integer" | "unsignedInt" | "positiveInt" | "") => {
                        Value::Integer(i)
                    }
                    _ => Value::Decimal(decimal_from_text(&text)?),
                }
            }
            ("date", Json::String(s)) => Value::Date(DateTime::parse(s, DateTimeKind::Partial).ok()?),
            ("dateTime" | "instant", Json::String(s)) => {
                let parsed = DateTime::parse(s, DateTimeKind::Partial).ok()?;
                Value::DateTime(parsed)
            }
            ("time", Json::String(s)) => Value::Time(Time::parse(s, true).ok()?),
            (_, Json::String(s)) => Value::String(Cow::Borrowed(s.as_str())),
            _ => return None,
        };
        Some(value)
    }

    /// The node as a System Quantity, for the FHIR Quantity types.
    pub fn quantity(&self) -> Option<Quantity> {
        if !is_quantity_type(self.type_name) {
            return None;
        }
        let json = self.json?;
        let value = decimal_from_text(&json.get("value")?.as_number()?.to_string())?;
        let system = json.get("system").and_then(Json::as_str);
        let code = json.get("code").and_then(Json::as_str);
        let unit = match (system, code) {
            (Some(UCUM), Some(code)) => code.to_string(),
            _ => match json.get("unit").and_then(Json::as_str).or(code) {
                Some(unit) => calendar_from_text(unit).unwrap_or(unit).to_string(),
                None => "1".to_string(),
            },
        };
        Some(Quantity::new(value, unit))
    }
}

fn calendar_from_text(unit: &str) -> Option<&'static str> {
    let singular = unit.strip_suffix('s').unwrap_or(unit);
    CALENDAR.iter().copied().find(|c| *c == singular)
}

/// Whether `name` is a FHIR primitive type (the R4 list; checked on every value, so spelled
/// out rather than looked up).
pub fn is_primitive_type(name: &str) -> bool {
    matches!(
        name,
        "boolean"
            | "integer"
            | "string"
            | "decimal"
            | "uri"
            | "url"
            | "canonical"
            | "base64Binary"
            | "instant"
            | "date"
            | "dateTime"
            | "time"
            | "code"
            | "oid"
            | "id"
            | "markdown"
            | "unsignedInt"
            | "positiveInt"
            | "uuid"
            | "xhtml"
            | "integer64"
    )
}

/// Whether `name` is FHIR Quantity or one of its specializations.
pub fn is_quantity_type(name: &str) -> bool {
    matches!(
        name,
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity"
    )
}

/// Parses decimal text (also with an exponent) into a Decimal.
pub fn decimal_from_text(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text).ok().or_else(|| Decimal::from_scientific(text).ok())
}

/// A type as reported by `type()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub namespace: &'static str,
    pub name: String,
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug)]
pub enum Value<'a> {
    Boolean(bool),
    Integer(i64),
    Long(i64),
    Decimal(Decimal),
    String(Cow<'a, str>),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
    Node(Node<'a>),
    Type(TypeInfo),
}

/// A collection: the input and output of every FHIRPath expression.
pub type Collection<'a> = Vec<Value<'a>>;

impl<'a> Value<'a> {
    /// The value with FHIR primitives replaced by their System values (complex nodes stay).
    pub fn system(&self) -> Cow<'_, Value<'a>> {
        match self {
            Value::Node(node) if node.is_primitive() => match node.primitive() {
                Some(value) => Cow::Owned(value),
                None => Cow::Borrowed(self),
            },
            Value::Node(node) if is_quantity_type(node.type_name) => match node.quantity() {
                Some(quantity) => Cow::Owned(Value::Quantity(quantity)),
                None => Cow::Borrowed(self),
            },
            other => Cow::Borrowed(other),
        }
    }

    /// The FHIRPath type name used in test expectations (`boolean`, `code`, `Quantity`).
    pub fn type_label(&self) -> String {
        match self {
            Value::Boolean(_) => "boolean".into(),
            Value::Integer(_) => "integer".into(),
            Value::Long(_) => "long".into(),
            Value::Decimal(_) => "decimal".into(),
            Value::String(_) => "string".into(),
            Value::Date(_) => "date".into(),
            Value::DateTime(_) => "dateTime".into(),
            Value::Time(_) => "time".into(),
            Value::Quantity(_) => "Quantity".into(),
            Value::Node(node) => node.type_name.to_string(),
            Value::Type(_) => "TypeInfo".into(),
        }
    }

    /// A string form: literal-like for System values (`@2015-02-04`, `1 'mg'`), the value
    /// for primitives, JSON for complex nodes.
    pub fn display(&self) -> String {
        match self.system().as_ref() {
            Value::Boolean(b) => b.to_string(),
            Value::Integer(i) | Value::Long(i) => i.to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::String(s) => s.to_string(),
            Value::Date(d) | Value::DateTime(d) => format!("@{d}"),
            Value::Time(t) => format!("@T{t}"),
            Value::Quantity(q) => q.to_string(),
            Value::Node(node) => node.json.map(|j| j.to_string()).unwrap_or_default(),
            Value::Type(t) => format!("{}.{}", t.namespace, t.name),
        }
    }

    /// The value as JSON (for output): System values as FHIR JSON primitives, Quantities as
    /// FHIR Quantity objects, nodes as they are in the input.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Node(node) => node.json.cloned().unwrap_or(Json::Null),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Integer(i) | Value::Long(i) => Json::from(*i),
            Value::Decimal(d) => {
                d.to_string().parse::<serde_json::Number>().map(Json::Number).unwrap_or(Json::Null)
            }
            Value::String(s) => Json::String(s.to_string()),
            Value::Date(d) | Value::DateTime(d) => Json::String(d.to_string()),
            Value::Time(t) => Json::String(t.to_string()),
            Value::Quantity(q) => {
                let mut object = serde_json::Map::new();
                if let Ok(number) = q.value.to_string().parse::<serde_json::Number>() {
                    object.insert("value".into(), Json::Number(number));
                }
                object.insert("unit".into(), Json::String(q.unit.clone()));
                if let Some(code) = q.ucum_unit() {
                    object.insert("system".into(), Json::String(UCUM.into()));
                    object.insert("code".into(), Json::String(code.into()));
                }
                Json::Object(object)
            }
            Value::Type(t) => serde_json::json!({"namespace": t.namespace, "name": t.name}),
        }
    }
}

/// Compares two date/times FHIRPath's way: component by component; `None` when one stops
/// before the other and they agree so far (the answer is unknown).
pub fn compare_date_times(a: &DateTime, b: &DateTime) -> Option<Ordering> {
    // A time with a zone and one without cannot be ordered: the zone of the second is unknown.
    if a.has_time() && b.has_time() && a.offset_minutes.is_some() != b.offset_minutes.is_some() {
        return None;
    }
    let (a, b) = if a.offset_minutes.is_some() || b.offset_minutes.is_some() {
        (to_utc(a), to_utc(b))
    } else {
        (*a, *b)
    };
    let precision = |p: Precision| if p == Precision::Fraction { Precision::Second } else { p };
    let (pa, pb) = (precision(a.precision), precision(b.precision));
    let components = [
        (Precision::Year, i64::from(a.year), i64::from(b.year)),
        (Precision::Month, i64::from(a.month), i64::from(b.month)),
        (Precision::Day, i64::from(a.day), i64::from(b.day)),
        (Precision::Hour, i64::from(a.hour), i64::from(b.hour)),
        (Precision::Minute, i64::from(a.minute), i64::from(b.minute)),
        (
            Precision::Second,
            i64::from(a.second) * 1_000_000_000 + i64::from(a.nanosecond),
            i64::from(b.second) * 1_000_000_000 + i64::from(b.nanosecond),
        ),
    ];
    for (level, x, y) in components {
        let (has_a, has_b) = (pa >= level, pb >= level);
        match (has_a, has_b) {
            (true, true) => match x.cmp(&y) {
                Ordering::Equal => continue,
                other => return Some(other),
            },
            (false, false) => return Some(Ordering::Equal),
            _ => return None,
        }
    }
    Some(Ordering::Equal)
}

/// The same instant in UTC (a value without a zone is taken as UTC), keeping precision.
fn to_utc(value: &DateTime) -> DateTime {
    let Some(offset) = value.offset_minutes else { return *value };
    if offset == 0 || value.precision < Precision::Hour {
        return *value;
    }
    let millis = value.lower_bound_millis();
    let mut utc = DateTime::from_epoch_millis(millis);
    utc.nanosecond = value.nanosecond;
    utc.fraction_digits = value.fraction_digits;
    utc.precision = value.precision;
    utc.offset_minutes = Some(0);
    utc
}

/// Compares two times component by component (`None` when precision makes it unknown).
pub fn compare_times(a: &Time, b: &Time) -> Option<Ordering> {
    let precision = |p: Precision| if p == Precision::Fraction { Precision::Second } else { p };
    let (pa, pb) = (precision(a.precision), precision(b.precision));
    let components = [
        (Precision::Hour, i64::from(a.hour), i64::from(b.hour)),
        (Precision::Minute, i64::from(a.minute), i64::from(b.minute)),
        (
            Precision::Second,
            i64::from(a.second) * 1_000_000_000 + i64::from(a.nanosecond),
            i64::from(b.second) * 1_000_000_000 + i64::from(b.nanosecond),
        ),
    ];
    for (level, x, y) in components {
        match (pa >= level, pb >= level) {
            (true, true) => match x.cmp(&y) {
                Ordering::Equal => continue,
                other => return Some(other),
            },
            (false, false) => return Some(Ordering::Equal),
            _ => return None,
        }
    }
    Some(Ordering::Equal)
}
