//! OBX-5 by its value type (OBX-2), with the units of OBX-6 and the range of OBX-7.

use std::str::FromStr;

use serde_json::{Number, Value as Json, json};

use super::codes::{self, UCUM};
use super::json::Object;
use super::{Context, clean, missing};
use crate::datetime::Dtm;
use crate::error::{Error, ErrorCode};
use crate::message::{Repetition, Segment};

/// An HL7 NM as a JSON number with its digits kept as sent (the workspace's serde_json keeps
/// arbitrary precision), after the rewriting FHIR's decimal grammar needs: no leading "+", no
/// leading zeros, a digit on each side of the point.
pub(crate) fn decimal(text: &str) -> Option<Number> {
    let text = text.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !digits(integer) || !digits(fraction) {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(if integer.is_empty() { "0" } else { integer });
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Number::from_str(&out).ok()
}

/// The units of OBX-6. UCUM when the coding system says so or says nothing.
pub(crate) struct Unit {
    text: Option<String>,
    code: Option<String>,
    ucum: bool,
}

pub(crate) fn unit(obx: &Segment) -> Unit {
    let Some(cwe) = obx.field(6).repetition(1) else {
        return Unit { text: None, code: None, ucum: false };
    };
    let code = clean(cwe.text(1));
    let system = clean(cwe.text(3));
    let ucum = system.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("UCUM"));
    Unit { text: clean(cwe.text(2)).or_else(|| code.clone()), code, ucum }
}

fn quantity(value: Number, unit: &Unit, comparator: Option<&str>) -> Json {
    let coded = unit.ucum && unit.code.is_some();
    Object::new()
        .set("value", Json::Number(value))
        .maybe("comparator", comparator)
        .maybe("unit", unit.text.clone())
        .maybe("system", coded.then_some(UCUM))
        .maybe("code", if coded { unit.code.clone() } else { None })
        .build()
}

/// The value[x] element name and value for one OBX, or `None` when OBX-5 is empty.
pub(crate) fn observation_value(
    obx: &Segment,
    context: &Context,
) -> Result<Option<(&'static str, Json)>, Error> {
    let repetitions = obx.field(5).repetitions();
    let Some(first) = repetitions.first() else {
        return Ok(None);
    };
    let Some(value_type) = clean(obx.text(2, 1)) else {
        return Err(missing(obx, 2, "value type"));
    };
    let bad = |what: &str| {
        Error::at(
            ErrorCode::DataTypeError,
            obx.location(5),
            format!("OBX-5 {:?} is not a valid {value_type} value{what}", first.raw()),
        )
    };
    let unit = unit(obx);
    let mapped = match value_type.as_str() {
        "NM" => {
            let Some(text) = clean(first.text(1)) else { return Ok(None) };
            ("valueQuantity", quantity(decimal(&text).ok_or_else(|| bad(""))?, &unit, None))
        }
        "ST" | "TX" | "FT" => {
            // Repetitions of free text are its lines.
            let lines: Vec<String> = repetitions.iter().filter_map(Repetition::whole_text).collect();
            let text = lines.join("\n");
            if text.trim().is_empty() {
                return Ok(None);
            }
            ("valueString", Json::String(text))
        }
        "CWE" | "CE" | "CNE" | "CF" => match codes::codeable_concept(first) {
            Some(concept) => ("valueCodeableConcept", concept),
            None => return Ok(None),
        },
        "IS" | "ID" => match clean(first.text(1)) {
            Some(code) => ("valueCodeableConcept", json!({ "coding": [{ "code": code }] })),
            None => return Ok(None),
        },
        "DT" | "TS" | "DTM" => {
            let Some(text) = clean(first.text(1)) else { return Ok(None) };
            let dtm = Dtm::parse(&text).ok_or_else(|| bad(""))?;
            ("valueDateTime", Json::String(dtm.to_fhir_datetime(&context.config.default_offset)))
        }
        "TM" => {
            let Some(text) = clean(first.text(1)) else { return Ok(None) };
            ("valueTime", Json::String(time(&text).ok_or_else(|| bad(""))?))
        }
        "SN" => structured_numeric(first, &unit).map_err(bad)?,
        _ => {
            return Err(Error::at(
                ErrorCode::DataTypeError,
                obx.location(2),
                format!("OBX-2 value type {value_type:?} is not supported"),
            ));
        }
    };
    Ok(Some(mapped))
}

/// An SN (comparator ^ number ^ separator ^ number): a quantity with its comparator, a range
/// ("-"), a ratio (":" or "/"), or, for the forms FHIR has no type for ("2+", "1.5" split at
/// "."), the text as sent.
fn structured_numeric(sn: &Repetition, unit: &Unit) -> Result<(&'static str, Json), &'static str> {
    let part = |n| clean(sn.text(n));
    let comparator = part(1);
    let first = part(2).ok_or(" (no number)")?;
    let number = |text: &str| decimal(text).ok_or(" (not a number)");
    match (part(3).as_deref(), part(4)) {
        (None, None) => {
            let comparator = match comparator.as_deref() {
                None | Some("=") => None,
                Some(c @ ("<" | "<=" | ">" | ">=")) => Some(c),
                Some(_) => return Err(" (unknown comparator)"),
            };
            Ok(("valueQuantity", quantity(number(&first)?, unit, comparator)))
        }
        (Some("-"), Some(second)) if comparator.is_none() => Ok((
            "valueRange",
            json!({ "low": quantity(number(&first)?, unit, None), "high": quantity(number(&second)?, unit, None) }),
        )),
        (Some(":" | "/"), Some(second)) if comparator.is_none() => Ok((
            "valueRatio",
            json!({ "numerator": quantity(number(&first)?, unit, None), "denominator": { "value": Json::Number(number(&second)?) } }),
        )),
        (Some(separator @ ("+" | ".")), second) if comparator.is_none() => {
            number(&first)?;
            let second = second.unwrap_or_default();
            Ok(("valueString", Json::String(format!("{first}{separator}{second}"))))
        }
        _ => Err(" (unknown form)"),
    }
}

/// An HL7 TM (HH[MM[SS[.S+]]]) as a FHIR time (hh:mm:ss).
fn time(text: &str) -> Option<String> {
    let text = text.split(['+', '-']).next().unwrap_or(text);
    let (digits, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !matches!(digits.len(), 2 | 4 | 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |from: usize| digits.get(from..from + 2).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    let (hour, minute, second) = (part(0), part(2), part(4));
    if hour > 23 || minute > 59 || second > 59 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = format!("{hour:02}:{minute:02}:{second:02}");
    if !fraction.is_empty() && digits.len() == 6 {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// OBX-7 as a referenceRange: "low-high", "<high", "<=high", ">low" and ">=low" become low
/// and high in the result's units; anything else is kept as text.
pub(crate) fn reference_range(obx: &Segment, unit: &Unit) -> Option<Json> {
    let range = clean(obx.text(7, 1))?;
    let bound = |text: &str| decimal(text).map(|n| quantity(n, unit, None));
    let parsed = if let Some(high) = range.strip_prefix("<=").or_else(|| range.strip_prefix('<')) {
        bound(high).map(|high| json!({ "high": high }))
    } else if let Some(low) = range.strip_prefix(">=").or_else(|| range.strip_prefix('>')) {
        bound(low).map(|low| json!({ "low": low }))
    } else {
        // The dash between the bounds is the first one after a digit or point, so a negative
        // lower bound keeps its sign.
        let dash = range
            .char_indices()
            .skip(1)
            .find(|(i, c)| *c == '-' && range[..*i].ends_with(|p: char| p.is_ascii_digit() || p == '.'));
        dash.and_then(|(i, _)| {
            let (low, high) = (range[..i].trim(), range[i + 1..].trim());
            Some(json!({ "low": bound(low)?, "high": bound(high)? }))
        })
    };
    Some(parsed.unwrap_or_else(|| json!({ "text": range })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_digits() {
        let shown = |t: &str| decimal(t).map(|n| n.to_string());
        assert_eq!(shown("5.10").as_deref(), Some("5.10"));
        assert_eq!(shown("+007.50").as_deref(), Some("7.50"));
        assert_eq!(shown(".5").as_deref(), Some("0.5"));
        assert_eq!(shown("5.").as_deref(), Some("5"));
        assert_eq!(shown("-0.25").as_deref(), Some("-0.25"));
        for bad in ["", "abc", "1e5", "1.2.3", "-", ".", "--1", "1,5"] {
            assert_eq!(shown(bad), None, "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(time("1430").as_deref(), Some("14:30:00"));
        assert_eq!(time("143005.5").as_deref(), Some("14:30:05.5"));
        assert_eq!(time("2530"), None);
    }
}
