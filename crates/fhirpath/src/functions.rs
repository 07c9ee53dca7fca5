//! The function library.

use std::borrow::Cow;
use std::cmp::Ordering;

use fhir::definitions::definitions;
use fhir::{DateTime, DateTimeKind, Precision, Time};
use rust_decimal::prelude::*;
use rust_decimal::{Decimal, MathematicalOps};
use serde_json::Value as Json;

use crate::ast::Expr;
use crate::eval::{
    Evaluator, Frame, Result, compare, contains, criterion, error, singleton, to_boolean, union,
};
use crate::parser::type_of_expr;
use crate::value::{Collection, Node, Quantity, Value, decimal_from_text};

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal)),* $(,)?) => {
        /// A FHIRPath function, resolved when the expression is parsed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Function { $($variant),* }

        impl Function {
            pub fn from_name(name: &str) -> Option<Function> {
                match name { $($name => Some(Function::$variant),)* _ => None }
            }

            /// (minimum, maximum) number of arguments.
            pub fn arity(self) -> (usize, usize) {
                match self { $(Function::$variant => ($min, $max)),* }
            }
        }
    };
}

functions! {
    Empty = "empty" (0, 0), Exists = "exists" (0, 1), All = "all" (1, 1), AllTrue = "allTrue" (0, 0),
    AnyTrue = "anyTrue" (0, 0), AllFalse = "allFalse" (0, 0), AnyFalse = "anyFalse" (0, 0),
    SubsetOf = "subsetOf" (1, 1), SupersetOf = "supersetOf" (1, 1), Count = "count" (0, 0),
    Distinct = "distinct" (0, 0), IsDistinct = "isDistinct" (0, 0),
    Where = "where" (1, 1), Select = "select" (1, 1), Repeat = "repeat" (1, 1), OfType = "ofType" (1, 1),
    Single = "single" (0, 0), First = "first" (0, 0), Last = "last" (0, 0), Tail = "tail" (0, 0),
    Skip = "skip" (1, 1), Take = "take" (1, 1), Intersect = "intersect" (1, 1), Exclude = "exclude" (1, 1),
    Union = "union" (1, 1), Combine = "combine" (1, 1), Iif = "iif" (2, 3),
    ToBoolean = "toBoolean" (0, 0), ConvertsToBoolean = "convertsToBoolean" (0, 0),
    ToInteger = "toInteger" (0, 0), ConvertsToInteger = "convertsToInteger" (0, 0),
    ToLong = "toLong" (0, 0), ConvertsToLong = "convertsToLong" (0, 0),
    ToDecimal = "toDecimal" (0, 0), ConvertsToDecimal = "convertsToDecimal" (0, 0),
    ToStringFn = "toString" (0, 0), ConvertsToString = "convertsToString" (0, 0),
    ToDate = "toDate" (0, 0), ConvertsToDate = "convertsToDate" (0, 0),
    ToDateTime = "toDateTime" (0, 0), ConvertsToDateTime = "convertsToDateTime" (0, 0),
    ToTime = "toTime" (0, 0), ConvertsToTime = "convertsToTime" (0, 0),
    ToQuantity = "toQuantity" (0, 1), ConvertsToQuantity = "convertsToQuantity" (0, 1),
    IndexOf = "indexOf" (1, 1), LastIndexOf = "lastIndexOf" (1, 1), Substring = "substring" (1, 2),
    StartsWith = "startsWith" (1, 1), EndsWith = "endsWith" (1, 1), ContainsFn = "contains" (1, 1),
    Upper = "upper" (0, 0), Lower = "lower" (0, 0), Replace = "replace" (2, 2), Matches = "matches" (1, 1),
    MatchesFull = "matchesFull" (1, 1), ReplaceMatches = "replaceMatches" (2, 2), Length = "length" (0, 0),
    ToChars = "toChars" (0, 0), Split = "split" (1, 1), Join = "join" (0, 1), Trim = "trim" (0, 0),
    Encode = "encode" (1, 1), Decode = "decode" (1, 1), Escape = "escape" (1, 1), Unescape = "unescape" (1, 1),
    Abs = "abs" (0, 0), Ceiling = "ceiling" (0, 0), Exp = "exp" (0, 0), Floor = "floor" (0, 0),
    Ln = "ln" (0, 0), Log = "log" (1, 1), Power = "power" (1, 1), Round = "round" (0, 1), Sqrt = "sqrt" (0, 0),
    Truncate = "truncate" (0, 0), Children = "children" (0, 0), Descendants = "descendants" (0, 0),
    Trace = "trace" (1, 2), Now = "now" (0, 0), Today = "today" (0, 0), TimeOfDay = "timeOfDay" (0, 0),
    Not = "not" (0, 0), Aggregate = "aggregate" (1, 2), Sort = "sort" (0, 9),
    LowBoundary = "lowBoundary" (0, 1), HighBoundary = "highBoundary" (0, 1), PrecisionFn = "precision" (0, 0),
    Comparable = "comparable" (1, 1), Extension = "extension" (1, 1), HasValue = "hasValue" (0, 0),
    GetValue = "getValue" (0, 0), Resolve = "resolve" (0, 0), MemberOf = "memberOf" (1, 1),
    ConformsTo = "conformsTo" (1, 1), Type = "type" (0, 0), Is = "is" (1, 1), As = "as" (1, 1),
    HtmlChecks = "htmlChecks" (0, 0), GetResourceKey = "getResourceKey" (0, 0),
    GetReferenceKey = "getReferenceKey" (0, 1),
}

impl Function {
    /// Functions whose argument is a type name rather than an expression.
    pub fn takes_type_argument(self) -> bool {
        matches!(self, Function::OfType | Function::Is | Function::As)
    }
}

fn string<'a>(text: impl Into<String>) -> Value<'a> {
    Value::String(Cow::Owned(text.into()))
}

fn one<'a>(value: Value<'a>) -> Collection<'a> {
    vec![value]
}

fn flag<'a>(value: bool) -> Collection<'a> {
    vec![Value::Boolean(value)]
}

impl<'a> Evaluator<'a, '_> {
    /// Evaluates a non-lambda argument in the context of the call.
    fn argument(&self, expr: &Expr, focus: &Collection<'a>, frame: &Frame<'a>) -> Result<Collection<'a>> {
        self.eval(expr, focus, frame)
    }

    fn single_argument(
        &self,
        expr: &Expr,
        focus: &Collection<'a>,
        frame: &Frame<'a>,
        what: &str,
    ) -> Result<Option<Value<'a>>> {
        singleton(&self.argument(expr, focus, frame)?, what)
    }

    fn string_argument(
        &self,
        expr: &Expr,
        focus: &Collection<'a>,
        frame: &Frame<'a>,
        what: &str,
    ) -> Result<Option<String>> {
        match self.single_argument(expr, focus, frame, what)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.into_owned())),
            Some(other) => error(format!("{what} expects a string argument, got {}", other.type_label())),
        }
    }

    fn integer_argument(
        &self,
        expr: &Expr,
        focus: &Collection<'a>,
        frame: &Frame<'a>,
        what: &str,
    ) -> Result<Option<i64>> {
        match self.single_argument(expr, focus, frame, what)? {
            None => Ok(None),
            Some(Value::Integer(i) | Value::Long(i)) => Ok(Some(i)),
            Some(other) => error(format!("{what} expects an integer argument, got {}", other.type_label())),
        }
    }

    /// Evaluates `expr` for one item of the input (a lambda argument).
    fn for_item(
        &self,
        expr: &Expr,
        item: &Value<'a>,
        index: usize,
        total: Option<Collection<'a>>,
    ) -> Result<Collection<'a>> {
        let frame = Frame { this: Some(item.clone()), index: Some(index), total };
        self.eval(expr, &vec![item.clone()], &frame)
    }

    pub(crate) fn call(
        &self,
        function: Function,
        input: &Collection<'a>,
        args: &[Expr],
        focus: &Collection<'a>,
        frame: &Frame<'a>,
        explicit_target: bool,
    ) -> Result<Collection<'a>> {
        use Function::*;
        match function {
            Empty => Ok(flag(input.is_empty())),
            Exists => match args.first() {
                None => Ok(flag(!input.is_empty())),
                Some(criteria) => {
                    for (i, item) in input.iter().enumerate() {
                        if criterion(&self.for_item(criteria, item, i, None)?, "exists()")? == Some(true) {
                            return Ok(flag(true));
                        }
                    }
                    Ok(flag(false))
                }
            },
            All => {
                for (i, item) in input.iter().enumerate() {
                    if criterion(&self.for_item(&args[0], item, i, None)?, "all()")? != Some(true) {
                        return Ok(flag(false));
                    }
                }
                Ok(flag(true))
            }
            AllTrue | AnyTrue | AllFalse | AnyFalse => {
                let mut values = Vec::with_capacity(input.len());
                for item in input {
                    match item.system().as_ref() {
                        Value::Boolean(b) => values.push(*b),
                        other => {
                            return error(format!(
                                "{function:?} expects Booleans, got {}",
                                other.type_label()
                            ));
                        }
                    }
                }
                Ok(flag(match function {
                    AllTrue => values.iter().all(|b| *b),
                    AnyTrue => values.iter().any(|b| *b),
                    AllFalse => values.iter().all(|b| !*b),
                    _ => values.iter().any(|b| !*b),
                }))
            }
            SubsetOf | SupersetOf => {
                let other =
                    self.argument(&args[0], &self.root, &Frame { this: None, index: None, total: None })?;
                let (small, large) = if function == SubsetOf { (input, &other) } else { (&other, input) };
                Ok(flag(small.iter().all(|item| contains(large, item))))
            }
            Count => Ok(one(Value::Integer(input.len() as i64))),
            Distinct => Ok(union(input.clone(), Vec::new())),
            IsDistinct => Ok(flag(union(input.clone(), Vec::new()).len() == input.len())),
            Where => {
                let mut out = Vec::new();
                for (i, item) in input.iter().enumerate() {
                    if criterion(&self.for_item(&args[0], item, i, None)?, "where()")? == Some(true) {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Select => {
                let mut out = Vec::new();
                for (i, item) in input.iter().enumerate() {
                    out.extend(self.for_item(&args[0], item, i, None)?);
                }
                Ok(out)
            }
            Repeat => {
                let mut out: Collection<'a> = Vec::new();
                let mut pending = input.clone();
                while !pending.is_empty() {
                    let mut next = Vec::new();
                    for (i, item) in pending.iter().enumerate() {
                        for produced in self.for_item(&args[0], item, i, None)? {
                            if !contains(&out, &produced) {
                                out.push(produced.clone());
                                next.push(produced);
                            }
                        }
                    }
                    pending = next;
                }
                Ok(out)
            }
            OfType => {
                let spec =
                    type_of_expr(&args[0]).ok_or_else(|| crate::Error::eval("ofType() needs a type name"))?;
                let mut out = Vec::new();
                for item in input {
                    if self.is_type(item, &spec, true)? {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Is | As => {
                let spec =
                    type_of_expr(&args[0]).ok_or_else(|| crate::Error::eval("is()/as() need a type name"))?;
                if input.len() > 1 {
                    return error(format!("{function:?}() expects a single item, got {}", input.len()));
                }
                let Some(item) = input.first() else { return Ok(Vec::new()) };
                let matches = self.is_type(item, &spec, function == As)?;
                Ok(if function == Is {
                    flag(matches)
                } else if matches {
                    vec![item.clone()]
                } else {
                    Vec::new()
                })
            }
            Single => match input.len() {
                0 | 1 => Ok(input.clone()),
                n => error(format!("single() found {n} items")),
            },
            First => Ok(input.first().cloned().into_iter().collect()),
            Last => Ok(input.last().cloned().into_iter().collect()),
            Tail => Ok(input.iter().skip(1).cloned().collect()),
            Skip | Take => {
                let Some(n) = self.integer_argument(&args[0], focus, frame, "skip()/take()")? else {
                    return Ok(Vec::new());
                };
                let n = usize::try_from(n.max(0)).unwrap_or(0);
                Ok(if function == Skip {
                    input.iter().skip(n).cloned().collect()
                } else {
                    input.iter().take(n).cloned().collect()
                })
            }
            Intersect => {
                let other = self.argument(&args[0], focus, frame)?;
                let mut out: Collection<'a> = Vec::new();
                for item in input {
                    if contains(&other, item) && !contains(&out, item) {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Exclude => {
                let other = self.argument(&args[0], focus, frame)?;
                Ok(input.iter().filter(|item| !contains(&other, item)).cloned().collect())
            }
            Union => Ok(union(input.clone(), self.argument(&args[0], focus, frame)?)),
            Combine => {
                let mut out = input.clone();
                out.extend(self.argument(&args[0], focus, frame)?);
                Ok(out)
            }
            Iif => {
                let (context, inner) = if explicit_target {
                    if input.len() > 1 {
                        return error(format!("iif() expects a single item, got {}", input.len()));
                    }
                    let this = input.first().cloned();
                    (input.clone(), Frame { this, index: frame.index, total: frame.total.clone() })
                } else {
                    (focus.clone(), frame.clone())
                };
                let condition = criterion(&self.eval(&args[0], &context, &inner)?, "the iif() criterion")?;
                if condition == Some(true) {
                    self.eval(&args[1], &context, &inner)
                } else if let Some(otherwise) = args.get(2) {
                    self.eval(otherwise, &context, &inner)
                } else {
                    Ok(Vec::new())
                }
            }
            ToBoolean | ConvertsToBoolean => self.convert(input, function, to_boolean_value),
            ToInteger | ConvertsToInteger => self.convert(input, function, to_integer_value),
            ToLong | ConvertsToLong => self.convert(input, function, to_long_value),
            ToDecimal | ConvertsToDecimal => self.convert(input, function, to_decimal_value),
            ToStringFn | ConvertsToString => self.convert(input, function, to_string_value),
            ToDate | ConvertsToDate => self.convert(input, function, to_date_value),
            ToDateTime | ConvertsToDateTime => self.convert(input, function, to_date_time_value),
            ToTime | ConvertsToTime => self.convert(input, function, to_time_value),
            ToQuantity | ConvertsToQuantity => {
                let unit = match args.first() {
                    Some(arg) => self.string_argument(arg, focus, frame, "toQuantity()")?,
                    None => None,
                };
                let Some(item) = singleton(input, "toQuantity()")? else { return Ok(Vec::new()) };
                let mut converted = to_quantity_value(&item);
                if let (Some(quantity), Some(unit)) = (&converted, &unit) {
                    converted = convert_quantity(quantity, unit);
                }
                Ok(if function == ToQuantity {
                    converted.map(Value::Quantity).into_iter().collect()
                } else {
                    flag(converted.is_some())
                })
            }
            IndexOf | LastIndexOf | StartsWith | EndsWith | ContainsFn | Matches | MatchesFull | Split => {
                let Some(text) = self.input_string(input, function)? else { return Ok(Vec::new()) };
                let Some(argument) = self.string_argument(&args[0], focus, frame, "a string function")?
                else {
                    return Ok(Vec::new());
                };
                Ok(match function {
                    IndexOf => one(Value::Integer(char_index(&text, text.find(&argument)))),
                    LastIndexOf => one(Value::Integer(char_index(&text, text.rfind(&argument)))),
                    StartsWith => flag(text.starts_with(&argument)),
                    EndsWith => flag(text.ends_with(&argument)),
                    ContainsFn => flag(text.contains(&argument)),
                    Matches => flag(regex(&format!("(?s){argument}"))?.is_match(&text)),
                    MatchesFull => flag(regex(&format!("(?s)^(?:{argument})$"))?.is_match(&text)),
                    _ => text.split(argument.as_str()).map(string).collect(),
                })
            }
            Substring => {
                let Some(text) = self.input_string(input, function)? else { return Ok(Vec::new()) };
                let Some(start) = self.integer_argument(&args[0], focus, frame, "substring()")? else {
                    return Ok(Vec::new());
                };
                let length = match args.get(1) {
                    Some(arg) => match self.integer_argument(arg, focus, frame, "substring()")? {
                        Some(length) => Some(length),
                        None => return Ok(Vec::new()),
                    },
                    None => None,
                };
                Ok(substring(&text, start, length).map(string).into_iter().collect())
            }
            Upper | Lower | Length | ToChars | Trim => {
                let Some(text) = self.input_string(input, function)? else { return Ok(Vec::new()) };
                Ok(match function {
                    Upper => one(string(text.to_uppercase())),
                    Lower => one(string(text.to_lowercase())),
                    Length => one(Value::Integer(text.chars().count() as i64)),
                    ToChars => text.chars().map(|c| string(c.to_string())).collect(),
                    _ => one(string(text.trim())),
                })
            }
            Replace | ReplaceMatches => {
                let Some(text) = self.input_string(input, function)? else { return Ok(Vec::new()) };
                let pattern = self.string_argument(&args[0], focus, frame, "replace()")?;
                let substitution = self.string_argument(&args[1], focus, frame, "replace()")?;
                let (Some(pattern), Some(substitution)) = (pattern, substitution) else {
                    return Ok(Vec::new());
                };
                if function == Replace {
                    let replaced = if pattern.is_empty() {
                        // '' matches between every character.
                        let mut out = substitution.clone();
                        for c in text.chars() {
                            out.push(c);
                            out.push_str(&substitution);
                        }
                        out
                    } else {
                        text.replace(&pattern, &substitution)
                    };
                    return Ok(one(string(replaced)));
                }
                if pattern.is_empty() {
                    return Ok(one(string(text)));
                }
                let substitution = braced_groups(&substitution);
                Ok(one(string(regex(&pattern)?.replace_all(&text, substitution.as_str()).into_owned())))
            }
            Join => {
                let separator = match args.first() {
                    Some(arg) => self.string_argument(arg, focus, frame, "join()")?.unwrap_or_default(),
                    None => String::new(),
                };
                let mut parts = Vec::with_capacity(input.len());
                for item in input {
                    match item.system().as_ref() {
                        Value::String(s) => parts.push(s.to_string()),
                        other => return error(format!("join() expects strings, got {}", other.type_label())),
                    }
                }
                Ok(one(string(parts.join(&separator))))
            }
            Encode | Decode | Escape | Unescape => {
                let Some(text) = self.input_string(input, function)? else { return Ok(Vec::new()) };
                let Some(format) = self.string_argument(&args[0], focus, frame, "encode()")? else {
                    return Ok(Vec::new());
                };
                let result = match function {
                    Encode => crate::text::encode(&text, &format),
                    Decode => crate::text::decode(&text, &format),
                    Escape => crate::text::escape(&text, &format),
                    _ => crate::text::unescape(&text, &format),
                };
                Ok(result.map(string).into_iter().collect())
            }
            Abs | Ceiling | Exp | Floor | Ln | Sqrt | Truncate => self.math(input, function),
            Log | Power => {
                let Some(value) = singleton(input, "log()/power()")? else { return Ok(Vec::new()) };
                let Some(argument) = self.single_argument(&args[0], focus, frame, "log()/power()")? else {
                    return Ok(Vec::new());
                };
                let (Some(base), Some(exponent)) = (as_decimal(&value), as_decimal(&argument)) else {
                    return error("log() and power() need numbers");
                };
                if function == Log {
                    if base <= Decimal::ZERO || exponent <= Decimal::ZERO || exponent == Decimal::ONE {
                        return Ok(Vec::new());
                    }
                    let result =
                        base.checked_ln().zip(exponent.checked_ln()).and_then(|(a, b)| a.checked_div(b));
                    return Ok(result
                        .map(|d| Value::Decimal(d.round_dp(15).normalize()))
                        .into_iter()
                        .collect());
                }
                let integers = matches!(value, Value::Integer(_)) && matches!(argument, Value::Integer(_));
                if integers {
                    let (Value::Integer(b), Value::Integer(e)) = (&value, &argument) else {
                        return Ok(Vec::new());
                    };
                    if *e >= 0 {
                        let result = u32::try_from(*e).ok().and_then(|e| b.checked_pow(e));
                        return Ok(result
                            .filter(|r| i32::try_from(*r).is_ok())
                            .map(Value::Integer)
                            .into_iter()
                            .collect());
                    }
                }
                if base < Decimal::ZERO && exponent.fract() != Decimal::ZERO {
                    return Ok(Vec::new());
                }
                Ok(base.checked_powd(exponent).map(|d| Value::Decimal(d.normalize())).into_iter().collect())
            }
            Round => {
                let Some(value) = singleton(input, "round()")? else { return Ok(Vec::new()) };
                let digits = match args.first() {
                    Some(arg) => match self.integer_argument(arg, focus, frame, "round()")? {
                        Some(d) if d >= 0 => d as u32,
                        Some(_) => return error("round() needs a non-negative precision"),
                        None => return Ok(Vec::new()),
                    },
                    None => 0,
                };
                let Some(number) = as_decimal(&value) else { return error("round() needs a number") };
                Ok(one(Value::Decimal(
                    number.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero),
                )))
            }
            Children => self.children(input),
            Descendants => {
                let mut out = Vec::new();
                let mut level = self.children(input)?;
                while !level.is_empty() {
                    out.extend(level.iter().cloned());
                    level = self.children(&level)?;
                }
                Ok(out)
            }
            Trace => {
                let name = self.string_argument(&args[0], focus, frame, "trace()")?.unwrap_or_default();
                let shown = match args.get(1) {
                    Some(projection) => {
                        let mut out = Vec::new();
                        for (i, item) in input.iter().enumerate() {
                            out.extend(self.for_item(projection, item, i, None)?);
                        }
                        out
                    }
                    None => input.clone(),
                };
                match self.env.trace {
                    Some(sink) => sink(&name, &shown),
                    None => {
                        let items: Vec<String> = shown.iter().map(Value::display).collect();
                        eprintln!("trace {name}: [{}]", items.join(", "));
                    }
                }
                Ok(input.clone())
            }
            Now => Ok(one(Value::DateTime(self.env.now))),
            Today => {
                let mut today = self.env.now;
                today.precision = Precision::Day;
                today.offset_minutes = None;
                Ok(one(Value::Date(today)))
            }
            TimeOfDay => {
                let now = self.env.now;
                Ok(one(Value::Time(Time {
                    hour: now.hour,
                    minute: now.minute,
                    second: now.second,
                    nanosecond: now.nanosecond,
                    fraction_digits: 3,
                    precision: Precision::Fraction,
                })))
            }
            Not => Ok(to_boolean(input, "not()")?.map(|b| flag(!b)).unwrap_or_default()),
            Aggregate => {
                let mut total = match args.get(1) {
                    Some(init) => self.argument(init, focus, frame)?,
                    None => Vec::new(),
                };
                for (i, item) in input.iter().enumerate() {
                    total = self.for_item(&args[0], item, i, Some(total))?;
                }
                Ok(total)
            }
            Sort => self.sort(input, args),
            LowBoundary | HighBoundary => {
                let Some(value) = singleton(input, "lowBoundary()/highBoundary()")? else {
                    return Ok(Vec::new());
                };
                let digits = match args.first() {
                    Some(arg) => match self.integer_argument(arg, focus, frame, "boundary precision")? {
                        Some(d) => Some(d),
                        None => return Ok(Vec::new()),
                    },
                    None => None,
                };
                Ok(crate::boundary::boundary(&value, digits, function == HighBoundary).into_iter().collect())
            }
            PrecisionFn => {
                let Some(value) = singleton(input, "precision()")? else { return Ok(Vec::new()) };
                Ok(crate::boundary::precision(&value).map(Value::Integer).into_iter().collect())
            }
            Comparable => {
                let Some(Value::Quantity(a)) = singleton(input, "comparable()")? else {
                    return Ok(Vec::new());
                };
                let Some(Value::Quantity(b)) =
                    self.single_argument(&args[0], focus, frame, "comparable()")?
                else {
                    return Ok(Vec::new());
                };
                Ok(flag(a.common(&b).is_some()))
            }
            Extension => {
                let Some(url) = self.string_argument(&args[0], focus, frame, "extension()")? else {
                    return Ok(Vec::new());
                };
                let extensions = self.members(input, "extension")?;
                Ok(extensions
                    .into_iter()
                    .filter(|e| match e {
                        Value::Node(node) => {
                            node.json.and_then(|j| j.get("url")).and_then(Json::as_str) == Some(&url)
                        }
                        _ => false,
                    })
                    .collect())
            }
            HasValue => Ok(flag(
                input.len() == 1
                    && matches!(&input[0], Value::Node(node) if node.is_primitive() && node.json.is_some_and(|j| !j.is_null())),
            )),
            GetValue => Ok(match input.as_slice() {
                [Value::Node(node)] if node.is_primitive() => node.primitive().into_iter().collect(),
                _ => Vec::new(),
            }),
            Resolve => Ok(input.iter().filter_map(|item| self.resolve(item)).collect()),
            MemberOf => {
                let Some(url) = self.string_argument(&args[0], focus, frame, "memberOf()")? else {
                    return Ok(Vec::new());
                };
                let [item] = input.as_slice() else { return Ok(Vec::new()) };
                let Some(value_sets) = self.env.value_sets else { return Ok(Vec::new()) };
                Ok(member_of(value_sets, item, &url).map(Value::Boolean).into_iter().collect())
            }
            ConformsTo => {
                let Some(url) = self.string_argument(&args[0], focus, frame, "conformsTo()")? else {
                    return Ok(Vec::new());
                };
                let Some(base) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                    return error(format!("conformsTo('{url}'): only the base FHIR profiles can be checked"));
                };
                if definitions().type_def(base).is_none() {
                    return error(format!("conformsTo('{url}'): unknown profile"));
                }
                Ok(input
                    .iter()
                    .map(|item| match item {
                        Value::Node(node) => Value::Boolean(definitions().is_subtype(node.type_name, base)),
                        _ => Value::Boolean(false),
                    })
                    .collect())
            }
            Type => Ok(input.iter().map(|item| Value::Type(self.type_of(item))).collect()),
            HtmlChecks => Ok(flag(true)),
            GetResourceKey => Ok(input
                .iter()
                .filter_map(|item| match item {
                    Value::Node(node) => {
                        node.json?.get("id")?.as_str().map(|id| Value::String(Cow::Borrowed(id)))
                    }
                    _ => None,
                })
                .collect()),
            GetReferenceKey => {
                let wanted = match args.first() {
                    Some(arg) => type_of_expr(arg).map(|t| t.name),
                    None => None,
                };
                Ok(input
                    .iter()
                    .filter_map(|item| {
                        let Value::Node(node) = item else { return None };
                        let reference = node.json?.get("reference")?.as_str()?;
                        reference_key(reference, wanted.as_deref()).map(|id| string(id.to_string()))
                    })
                    .collect())
            }
        }
    }

    fn input_string(&self, input: &Collection<'a>, function: Function) -> Result<Option<String>> {
        match singleton(input, "a string function")? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.into_owned())),
            Some(other) => error(format!("{function:?}() expects a string, got {}", other.type_label())),
        }
    }

    fn convert(
        &self,
        input: &Collection<'a>,
        function: Function,
        convert: fn(&Value<'a>) -> Option<Value<'a>>,
    ) -> Result<Collection<'a>> {
        let Some(item) = singleton(input, "a conversion function")? else { return Ok(Vec::new()) };
        let converted = convert(&item);
        let name = format!("{function:?}");
        Ok(if name.starts_with("ConvertsTo") {
            flag(converted.is_some())
        } else {
            converted.into_iter().collect()
        })
    }

    fn math(&self, input: &Collection<'a>, function: Function) -> Result<Collection<'a>> {
        use Function::*;
        let Some(value) = singleton(input, "a math function")? else { return Ok(Vec::new()) };
        if let Value::Quantity(q) = &value {
            if function == Abs {
                return Ok(one(Value::Quantity(Quantity { value: q.value.abs(), unit: q.unit.clone() })));
            }
            return error(format!("{function:?}() needs a number"));
        }
        let Some(number) = as_decimal(&value) else { return error(format!("{function:?}() needs a number")) };
        let integer = matches!(value, Value::Integer(_));
        let to_integer = |d: Decimal| d.to_i64().map(Value::Integer);
        Ok(match function {
            Abs if integer => to_integer(number.abs()),
            Abs => Some(Value::Decimal(number.abs())),
            Ceiling => to_integer(number.ceil()),
            Floor => to_integer(number.floor()),
            Truncate => to_integer(number.trunc()),
            Exp => number.checked_exp().map(|d| Value::Decimal(d.normalize())),
            Ln if number > Decimal::ZERO => {
                number.checked_ln().map(|d| Value::Decimal(d.round_dp(15).normalize()))
            }
            Sqrt if number >= Decimal::ZERO => number.sqrt().map(|d| Value::Decimal(d.normalize())),
            _ => None,
        }
        .into_iter()
        .collect())
    }

    fn sort(&self, input: &Collection<'a>, args: &[Expr]) -> Result<Collection<'a>> {
        let mut keyed: Vec<(Vec<Option<Value<'a>>>, Value<'a>)> = Vec::with_capacity(input.len());
        let keys: Vec<(&Expr, bool)> = args
            .iter()
            .map(|arg| match arg {
                Expr::Negate(inner) => (inner.as_ref(), true),
                other => (other, false),
            })
            .collect();
        for (i, item) in input.iter().enumerate() {
            let mut values = Vec::with_capacity(keys.len().max(1));
            if keys.is_empty() {
                values.push(Some(item.system().into_owned()));
            }
            for (key, _) in &keys {
                values.push(singleton(&self.for_item(key, item, i, None)?, "a sort key")?);
            }
            keyed.push((values, item.clone()));
        }
        let mut failure = None;
        keyed.sort_by(|(a, _), (b, _)| {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                let descending = keys.get(index).is_some_and(|(_, d)| *d);
                // Empty keys sort after every value.
                let ordering = match (x, y) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(x), Some(y)) => match compare(x, y) {
                        Ok(o) => o.unwrap_or(Ordering::Equal),
                        Err(e) => {
                            failure.get_or_insert(e);
                            Ordering::Equal
                        }
                    },
                };
                let ordering = if descending { ordering.reverse() } else { ordering };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(keyed.into_iter().map(|(_, item)| item).collect())
    }

    /// The resource a Reference (or a reference string) points at: a contained resource, an
    /// entry of the Bundle being evaluated, or whatever the environment's resolver finds.
    fn resolve(&self, item: &Value<'a>) -> Option<Value<'a>> {
        let reference: &str = match item {
            Value::Node(node) => match node.json? {
                Json::Object(object) => object.get("reference")?.as_str()?,
                Json::String(text) => text.as_str(),
                _ => return None,
            },
            _ => return None,
        };
        let root = match self.root.first() {
            Some(Value::Node(node)) => node.json,
            _ => None,
        };
        if let Some(fragment) = reference.strip_prefix('#') {
            let contained = root?.get("contained")?.as_array()?;
            let found = contained.iter().find(|c| c.get("id").and_then(Json::as_str) == Some(fragment))?;
            return Some(Value::Node(Node::resource(found)));
        }
        if let Some(Json::Array(entries)) = root.and_then(|r| r.get("entry")) {
            for entry in entries {
                let full_url = entry.get("fullUrl").and_then(Json::as_str).unwrap_or("");
                let resource = entry.get("resource");
                let identity = resource.and_then(|r| {
                    Some(format!("{}/{}", r.get("resourceType")?.as_str()?, r.get("id")?.as_str()?))
                });
                if full_url == reference
                    || identity.as_deref() == Some(reference)
                    || (!reference.contains("://") && full_url.ends_with(&format!("/{reference}")))
                {
                    return resource.map(|r| Value::Node(Node::resource(r)));
                }
            }
        }
        let resolved = self.env.resolver?.resolve(reference)?;
        Some(Value::Node(Node::resource(resolved)))
    }
}

fn char_index(text: &str, byte_index: Option<usize>) -> i64 {
    match byte_index {
        Some(index) => text[..index].chars().count() as i64,
        None => -1,
    }
}

/// `$1x` in a FHIRPath substitution means group 1 then `x`; the regex crate would read a group
/// named `1x`, so group numbers are braced (`${1}x`).
fn braced_groups(substitution: &str) -> String {
    let mut out = String::with_capacity(substitution.len() + 4);
    let mut chars = substitution.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

fn regex(pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| crate::Error::eval(format!("invalid regular expression: {e}")))
}

pub(crate) fn as_decimal(value: &Value<'_>) -> Option<Decimal> {
    match value {
        Value::Integer(i) | Value::Long(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn to_boolean_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    let result = match value {
        Value::Boolean(b) => *b,
        Value::Integer(1) | Value::Long(1) => true,
        Value::Integer(0) | Value::Long(0) => false,
        Value::Decimal(d) if *d == Decimal::ONE => true,
        Value::Decimal(d) if d.is_zero() => false,
        Value::String(s) => match s.to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => true,
            "false" | "f" | "no" | "n" | "0" | "0.0" => false,
            _ => return None,
        },
        _ => return None,
    };
    Some(Value::Boolean(result))
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn to_integer_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Integer(i) => Some(Value::Integer(*i)),
        Value::Long(i) => i32::try_from(*i).ok().map(|i| Value::Integer(i64::from(i))),
        Value::Boolean(b) => Some(Value::Integer(i64::from(*b))),
        Value::String(s) if is_integer_text(s) => s.parse::<i32>().ok().map(|i| Value::Integer(i64::from(i))),
        _ => None,
    }
}

fn to_long_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Integer(i) | Value::Long(i) => Some(Value::Long(*i)),
        Value::Boolean(b) => Some(Value::Long(i64::from(*b))),
        Value::String(s) if is_integer_text(s) => s.parse().ok().map(Value::Long),
        _ => None,
    }
}

fn is_decimal_text(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (!body.contains('.') || (!fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())))
}

fn to_decimal_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Integer(i) | Value::Long(i) => Some(Value::Decimal(Decimal::from(*i))),
        Value::Decimal(d) => Some(Value::Decimal(*d)),
        Value::Boolean(b) => Some(Value::Decimal(if *b { Decimal::ONE } else { Decimal::ZERO })),
        Value::String(s) if is_decimal_text(s) => {
            decimal_from_text(s.trim_start_matches('+')).map(Value::Decimal)
        }
        _ => None,
    }
}

/// `substring(start, length)` of `text`, in characters (`None`: empty, when `start` is outside it).
pub(crate) fn substring(text: &str, start: i64, length: Option<i64>) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if start < 0 || start as usize >= chars.len() {
        return None;
    }
    let start = start as usize;
    let end = match length {
        Some(length) => (start + length.max(0) as usize).min(chars.len()),
        None => chars.len(),
    };
    Some(chars[start..end].iter().collect())
}

pub(crate) fn to_string_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::String(s) => Some(Value::String(s.clone())),
        Value::Node(_) | Value::Type(_) => None,
        other => Some(string(other.display().trim_start_matches("@T").trim_start_matches('@'))),
    }
}

fn to_date_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Date(d) => Some(Value::Date(*d)),
        Value::DateTime(d) => {
            let mut date = *d;
            date.precision = date.precision.min(Precision::Day);
            date.offset_minutes = None;
            Some(Value::Date(date))
        }
        Value::String(s) => DateTime::parse(s, DateTimeKind::Date).ok().map(Value::Date),
        _ => None,
    }
}

fn to_date_time_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Date(d) | Value::DateTime(d) => Some(Value::DateTime(*d)),
        Value::String(s) => DateTime::parse(s, DateTimeKind::Partial).ok().map(Value::DateTime),
        _ => None,
    }
}

fn to_time_value<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Time(t) => Some(Value::Time(*t)),
        Value::String(s) => Time::parse(s, true).ok().map(Value::Time),
        _ => None,
    }
}

/// Calendar keywords allowed in a quantity string without quotes.
const CALENDAR_WORDS: &[&str] = &[
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

fn to_quantity_value(value: &Value<'_>) -> Option<Quantity> {
    match value {
        Value::Quantity(q) => Some(q.clone()),
        Value::Integer(i) | Value::Long(i) => Some(Quantity::new(Decimal::from(*i), "1")),
        Value::Decimal(d) => Some(Quantity::new(*d, "1")),
        Value::Boolean(b) => Some(Quantity::new(if *b { Decimal::ONE } else { Decimal::ZERO }, "1")),
        Value::String(s) => {
            let text = s.trim();
            let (number, unit) = match text.find(' ') {
                Some(at) => (&text[..at], text[at..].trim()),
                None => (text, ""),
            };
            if !is_decimal_text(number) {
                return None;
            }
            let value = decimal_from_text(number.trim_start_matches('+'))?;
            let unit = if unit.is_empty() {
                "1".to_string()
            } else if let Some(quoted) = unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
                quoted.to_string()
            } else if CALENDAR_WORDS.contains(&unit) {
                unit.to_string()
            } else {
                return None;
            };
            Some(Quantity::new(value, unit))
        }
        _ => None,
    }
}

fn convert_quantity(quantity: &Quantity, unit: &str) -> Option<Quantity> {
    if quantity.unit == unit {
        return Some(quantity.clone());
    }
    let target = Quantity::new(Decimal::ONE, unit);
    let from = quantity.ucum_unit()?;
    let to = target.ucum_unit()?;
    crate::ucum::convert(quantity.value, from, to).map(|v| Quantity::new(v.normalize(), unit))
}

/// `memberOf()` on one item: a code, Coding or CodeableConcept against a value set of the
/// caller's terminology. Empty when the value set or the answer is unknown, as the
/// specification asks.
fn member_of(value_sets: &dyn crate::eval::ValueSets, item: &Value<'_>, url: &str) -> Option<bool> {
    let coding_member = |coding: &Json| -> Option<bool> {
        let system = coding.get("system")?.as_str()?;
        let code = coding.get("code")?.as_str()?;
        value_sets.contains(url, system, code)
    };
    match item {
        Value::Node(node) => {
            let json = node.json?;
            match node.type_name {
                "Coding" => coding_member(json),
                "CodeableConcept" => {
                    let answers: Vec<Option<bool>> =
                        json.get("coding")?.as_array()?.iter().map(coding_member).collect();
                    if answers.contains(&Some(true)) {
                        Some(true)
                    } else if answers.iter().all(Option::is_some) {
                        Some(false)
                    } else {
                        None
                    }
                }
                _ => plain_code_member(value_sets, json.as_str()?, url),
            }
        }
        Value::String(code) => plain_code_member(value_sets, code, url),
        _ => None,
    }
}

/// A bare code (`Patient.gender`) carries no system: the specification decides it only
/// against a value set of a single code system (empty otherwise).
fn plain_code_member(value_sets: &dyn crate::eval::ValueSets, code: &str, url: &str) -> Option<bool> {
    let codes = value_sets.codes(url)?;
    let system = codes.first().map(|(s, _)| s);
    if codes.iter().any(|(s, _)| Some(s) != system) {
        return None;
    }
    Some(codes.iter().any(|(_, c)| c == code))
}

/// The id a reference (`Patient/p1`, `http://x/fhir/Patient/p1/_history/2`) points at, when
/// it names a resource of type `wanted` (any type when `None`).
pub(crate) fn reference_key<'r>(reference: &'r str, wanted: Option<&str>) -> Option<&'r str> {
    // From the end: `[type]/[id]`, or `[type]/[id]/_history/[version]` (`x/_history/1`, with
    // no type before its id, reads as type `_history`).
    let mut parts = reference.rsplit('/');
    let (last, before) = (parts.next()?, parts.next()?);
    let (resource_type, id) = match (before, parts.next(), parts.next()) {
        ("_history", Some(id), Some(resource_type)) => (resource_type, id),
        _ => (before, last),
    };
    if wanted.is_some_and(|w| w != resource_type) {
        return None;
    }
    Some(id)
}
