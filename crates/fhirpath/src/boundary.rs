//! `lowBoundary()`, `highBoundary()` and `precision()`: the range a value of limited
//! precision stands for.

use fhir::{DateTime, Precision, Time};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::value::{Quantity, Value};

/// The number of digits a value is given to (`1.58700` -> 5, `@2014` -> 4, `@T10:30` -> 4).
pub fn precision(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Decimal(d) => Some(i64::from(d.scale())),
        Value::Integer(_) | Value::Long(_) => Some(0),
        Value::Date(d) | Value::DateTime(d) => Some(date_digits(d.precision)),
        Value::Time(t) => Some(match t.precision {
            Precision::Hour => 2,
            Precision::Minute => 4,
            Precision::Second => 6,
            _ => 9,
        }),
        _ => None,
    }
}

fn date_digits(precision: Precision) -> i64 {
    match precision {
        Precision::Year => 4,
        Precision::Month => 6,
        Precision::Day => 8,
        Precision::Hour => 10,
        Precision::Minute => 12,
        Precision::Second => 14,
        Precision::Fraction => 17,
    }
}

fn date_precision(digits: i64) -> Option<Precision> {
    Some(match digits {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 => Precision::Hour,
        12 => Precision::Minute,
        14 => Precision::Second,
        17 => Precision::Fraction,
        _ => return None,
    })
}

/// The least (`high == false`) or greatest value `value` could stand for, given to `digits`.
pub fn boundary<'a>(value: &Value<'a>, digits: Option<i64>, high: bool) -> Option<Value<'a>> {
    match value {
        Value::Decimal(d) => decimal_boundary(*d, digits, high).map(Value::Decimal),
        Value::Integer(i) | Value::Long(i) => {
            decimal_boundary(Decimal::from(*i), digits, high).map(Value::Decimal)
        }
        Value::Quantity(q) => decimal_boundary(q.value, digits, high)
            .map(|v| Value::Quantity(Quantity { value: v, unit: q.unit.clone() })),
        Value::Date(d) => date_boundary(d, digits.unwrap_or(8), high, true).map(Value::Date),
        Value::DateTime(d) => date_boundary(d, digits.unwrap_or(17), high, false).map(Value::DateTime),
        Value::Time(t) => time_boundary(t, digits.unwrap_or(9), high).map(Value::Time),
        _ => None,
    }
}

fn decimal_boundary(value: Decimal, digits: Option<i64>, high: bool) -> Option<Decimal> {
    let digits = digits.unwrap_or(8);
    if !(0..=28).contains(&digits) {
        return None;
    }
    let digits = digits as u32;
    let half = Decimal::new(5, value.scale() + 1);
    let bound = if high { value.checked_add(half)? } else { value.checked_sub(half)? };
    let strategy =
        if high { RoundingStrategy::ToPositiveInfinity } else { RoundingStrategy::ToNegativeInfinity };
    let mut result = bound.round_dp_with_strategy(digits, strategy);
    result.rescale(digits);
    if result.is_zero() {
        result.set_sign_positive(true);
    }
    Some(result)
}

fn date_boundary(value: &DateTime, digits: i64, high: bool, is_date: bool) -> Option<DateTime> {
    let target = date_precision(digits)?;
    if is_date && target > Precision::Day {
        return None;
    }
    let mut result = *value;
    let had = value.precision;
    if had < Precision::Month {
        result.month = if high { 12 } else { 1 };
    }
    if had < Precision::Day {
        result.day = if high { fhir::datetime::days_in_month(result.year, result.month) } else { 1 };
    }
    if had < Precision::Hour {
        result.hour = if high { 23 } else { 0 };
    }
    if had < Precision::Minute {
        // The conformance suite reads the high boundary of an hour-precision value as the
        // last second of its first minute (`T08` -> `08:00:59.999`); followed here.
        result.minute = if high && had < Precision::Hour { 59 } else { 0 };
    }
    if had < Precision::Second {
        result.second = if high { 59 } else { 0 };
    }
    if had < Precision::Fraction {
        result.nanosecond = if high { 999_000_000 } else { 0 };
    }
    result.precision = target;
    result.fraction_digits = if target == Precision::Fraction { 3 } else { 0 };
    if target >= Precision::Hour && result.offset_minutes.is_none() {
        // Without a zone the instant could be anywhere from UTC+14 to UTC-12.
        result.offset_minutes = Some(if high { -12 * 60 } else { 14 * 60 });
    }
    if target < Precision::Hour {
        result.offset_minutes = None;
    }
    Some(result)
}

fn time_boundary(value: &Time, digits: i64, high: bool) -> Option<Time> {
    let target = match digits {
        2 => Precision::Hour,
        4 => Precision::Minute,
        6 => Precision::Second,
        9 => Precision::Fraction,
        _ => return None,
    };
    let mut result = *value;
    if value.precision < Precision::Minute {
        result.minute = if high { 59 } else { 0 };
    }
    if value.precision < Precision::Second {
        result.second = if high { 59 } else { 0 };
    }
    if value.precision < Precision::Fraction {
        result.nanosecond = if high { 999_000_000 } else { 0 };
    }
    result.precision = target;
    result.fraction_digits = if target == Precision::Fraction { 3 } else { 0 };
    Some(result)
}
