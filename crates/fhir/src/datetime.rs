//! FHIR `date`, `dateTime`, `instant` and `time` values that remember the precision they were
//! written with.
//!
//! FHIR dates are partial: `2015` means "some time in 2015", not "2015-01-01T00:00". Search and
//! FHIRPath comparison both need the range a value covers, so every value here can report its
//! bounds, and formats back exactly as precise as it was given.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;

/// How much of a date/time was given, from coarsest to finest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds with a fractional part (the number of digits is kept on the value).
    Fraction,
}

/// Which FHIR (or FHIRPath) lexical form a string must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateTimeKind {
    /// `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    Date,
    /// `dateTime`: a date, or a full date and time to the second with a mandatory time zone.
    DateTime,
    /// `instant`: a full date and time to the second (or finer) with a mandatory time zone.
    Instant,
    /// FHIRPath's partial date/time: any prefix down to the hour, time zone optional.
    Partial,
}

/// A calendar date with optional time of day and time-zone offset, at a known precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    /// Digits written after the decimal point of the seconds (0 unless `Precision::Fraction`).
    pub fraction_digits: u8,
    /// Offset from UTC in minutes; `None` when the value named no time zone.
    pub offset_minutes: Option<i16>,
    pub precision: Precision,
}

/// A FHIR `time` (time of day without date or zone), at a known precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    pub fraction_digits: u8,
    pub precision: Precision,
}

const MILLIS_PER_DAY: i64 = 86_400_000;

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.text.get(self.pos..self.pos + count)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos += count;
        Some(value)
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.text.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn done(&self) -> bool {
        self.pos == self.text.len()
    }
}

fn invalid(kind: &str, text: &str, why: &str) -> Error {
    Error::InvalidValue { kind: kind.to_string(), value: text.to_string(), reason: why.to_string() }
}

/// Days in `month` of `year` in the proleptic Gregorian calendar.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn parse_fraction(cursor: &mut Cursor<'_>) -> Option<(u32, u8)> {
    let start = cursor.pos;
    let mut nanos = 0u32;
    let mut digits = 0u8;
    while let Some(b) = cursor.peek().filter(u8::is_ascii_digit) {
        if digits < 9 {
            nanos = nanos * 10 + u32::from(b - b'0');
        }
        digits = digits.saturating_add(1);
        cursor.pos += 1;
    }
    if cursor.pos == start {
        return None;
    }
    for _ in digits.min(9)..9 {
        nanos *= 10;
    }
    Some((nanos, digits))
}

fn parse_offset(cursor: &mut Cursor<'_>) -> Result<Option<i16>, &'static str> {
    match cursor.peek() {
        Some(b'Z') => {
            cursor.pos += 1;
            Ok(Some(0))
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.pos += 1;
            let hours = cursor.digits(2).ok_or("time-zone hours must be two digits")?;
            if !cursor.eat(b':') {
                return Err("time-zone offset must be written ±hh:mm");
            }
            let minutes = cursor.digits(2).ok_or("time-zone minutes must be two digits")?;
            if minutes > 59 || hours > 14 || (hours == 14 && minutes != 0) {
                return Err("time-zone offset out of range (±14:00)");
            }
            let total = (hours * 60 + minutes) as i16;
            Ok(Some(if sign == b'-' { -total } else { total }))
        }
        _ => Ok(None),
    }
}

impl DateTime {
    /// Parses `text` in the lexical form of `kind`.
    pub fn parse(text: &str, kind: DateTimeKind) -> Result<Self, Error> {
        let label = match kind {
            DateTimeKind::Date => "date",
            DateTimeKind::DateTime => "dateTime",
            DateTimeKind::Instant => "instant",
            DateTimeKind::Partial => "date/time",
        };
        Self::parse_inner(text, kind).map_err(|why| invalid(label, text, why))
    }

    fn parse_inner(text: &str, kind: DateTimeKind) -> Result<Self, &'static str> {
        let mut c = Cursor { text: text.as_bytes(), pos: 0 };
        let year = c.digits(4).ok_or("year must be four digits")?;
        if year == 0 && kind != DateTimeKind::Partial {
            return Err("year 0000 is not allowed");
        }
        let mut value = DateTime {
            year: year as i32,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanosecond: 0,
            fraction_digits: 0,
            offset_minutes: None,
            precision: Precision::Year,
        };
        let finish = |c: &Cursor<'_>, value: DateTime| {
            if !c.done() {
                return Err("unexpected characters after the value");
            }
            if kind == DateTimeKind::Instant && value.precision < Precision::Second {
                return Err("an instant needs a full date and time to the second");
            }
            Ok(value)
        };
        if !c.eat(b'-') {
            if kind == DateTimeKind::Partial && c.peek() == Some(b'T') {
                c.pos += 1;
            }
            return finish(&c, value);
        }
        let month = c.digits(2).ok_or("month must be two digits")?;
        if !(1..=12).contains(&month) {
            return Err("month must be 01-12");
        }
        value.month = month as u8;
        value.precision = Precision::Month;
        if !c.eat(b'-') {
            if kind == DateTimeKind::Partial && c.peek() == Some(b'T') {
                c.pos += 1;
            }
            return finish(&c, value);
        }
        let day = c.digits(2).ok_or("day must be two digits")?;
        if day == 0 || day > u32::from(days_in_month(value.year, value.month)) {
            return Err("day does not exist in that month");
        }
        value.day = day as u8;
        value.precision = Precision::Day;
        if !c.eat(b'T') {
            return finish(&c, value);
        }
        if kind == DateTimeKind::Date {
            return Err("a date has no time part");
        }
        if kind == DateTimeKind::Partial && c.done() {
            return finish(&c, value);
        }
        let hour = c.digits(2).ok_or("hour must be two digits")?;
        if hour > 23 {
            return Err("hour must be 00-23");
        }
        value.hour = hour as u8;
        value.precision = Precision::Hour;
        if c.eat(b':') {
            let minute = c.digits(2).ok_or("minute must be two digits")?;
            if minute > 59 {
                return Err("minute must be 00-59");
            }
            value.minute = minute as u8;
            value.precision = Precision::Minute;
            if c.eat(b':') {
                let second = c.digits(2).ok_or("second must be two digits")?;
                if second > 60 {
                    return Err("second must be 00-60");
                }
                value.second = second as u8;
                value.precision = Precision::Second;
                if c.eat(b'.') {
                    let (nanos, digits) =
                        parse_fraction(&mut c).ok_or("a decimal point must be followed by digits")?;
                    value.nanosecond = nanos;
                    value.fraction_digits = digits;
                    value.precision = Precision::Fraction;
                }
            }
        }
        if kind != DateTimeKind::Partial && value.precision < Precision::Second {
            return Err("a time must give hours, minutes and seconds (hh:mm:ss)");
        }
        value.offset_minutes = parse_offset(&mut c)?;
        if kind != DateTimeKind::Partial && value.offset_minutes.is_none() {
            return Err("a time must carry a time zone (Z or ±hh:mm)");
        }
        finish(&c, value)
    }

    /// The current time as an instant in UTC, to the millisecond.
    pub fn now_utc() -> Self {
        Self::from_epoch_millis(epoch_millis_now())
    }

    /// The UTC instant `millis` milliseconds after 1970-01-01T00:00:00Z.
    pub fn from_epoch_millis(millis: i64) -> Self {
        let days = millis.div_euclid(MILLIS_PER_DAY);
        let in_day = millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year: year as i32,
            month: month as u8,
            day: day as u8,
            hour: (in_day / 3_600_000) as u8,
            minute: (in_day / 60_000 % 60) as u8,
            second: (in_day / 1000 % 60) as u8,
            nanosecond: (in_day % 1000) as u32 * 1_000_000,
            fraction_digits: 3,
            offset_minutes: Some(0),
            precision: Precision::Fraction,
        }
    }

    /// Whether the value has a time-of-day part.
    pub fn has_time(&self) -> bool {
        self.precision >= Precision::Hour
    }

    /// The first millisecond (UTC, since the epoch) the value covers. A value without a time
    /// zone is read as UTC.
    pub fn lower_bound_millis(&self) -> i64 {
        // Flooring keeps the millisecond the microsecond falls in, before 1970 too.
        self.lower_bound_micros().div_euclid(1000)
    }

    /// The first microsecond (UTC, since the epoch) the value covers; finer digits are cut
    /// off. A value without a time zone is read as UTC.
    pub fn lower_bound_micros(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day));
        let local = days * MILLIS_PER_DAY * 1000
            + i64::from(self.hour) * 3_600_000_000
            + i64::from(self.minute) * 60_000_000
            + i64::from(self.second) * 1_000_000
            + i64::from(self.nanosecond / 1000);
        local - i64::from(self.offset_minutes.unwrap_or(0)) * 60_000_000
    }

    /// The first millisecond after the range the value covers (exclusive upper bound).
    pub fn upper_bound_millis(&self) -> i64 {
        let lower = self.lower_bound_millis();
        match self.precision {
            Precision::Year => {
                let next = days_from_civil(i64::from(self.year) + 1, 1, 1) * MILLIS_PER_DAY;
                next - i64::from(self.offset_minutes.unwrap_or(0)) * 60_000
            }
            Precision::Month => {
                let (y, m) = if self.month == 12 {
                    (i64::from(self.year) + 1, 1)
                } else {
                    (i64::from(self.year), u32::from(self.month) + 1)
                };
                days_from_civil(y, m, 1) * MILLIS_PER_DAY
                    - i64::from(self.offset_minutes.unwrap_or(0)) * 60_000
            }
            Precision::Day => lower + MILLIS_PER_DAY,
            Precision::Hour => lower + 3_600_000,
            Precision::Minute => lower + 60_000,
            Precision::Second => lower + 1000,
            Precision::Fraction => {
                let digits = u32::from(self.fraction_digits.min(3));
                lower + 10i64.pow(3 - digits).max(1)
            }
        }
    }

    /// Formats as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), for `Last-Modified`.
    pub fn to_http_date(&self) -> String {
        let utc = Self::from_epoch_millis(self.lower_bound_millis());
        let days = days_from_civil(i64::from(utc.year), u32::from(utc.month), u32::from(utc.day));
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            WEEKDAYS[days.rem_euclid(7) as usize],
            utc.day,
            MONTHS[usize::from(utc.month - 1)],
            utc.year,
            utc.hour,
            utc.minute,
            utc.second
        )
    }

    /// Parses an IMF-fixdate HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
    pub fn parse_http_date(text: &str) -> Result<Self, Error> {
        let bad = || invalid("HTTP-date", text, "expected the form 'Sun, 06 Nov 1994 08:49:37 GMT'");
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 6 || parts[5] != "GMT" {
            return Err(bad());
        }
        const MONTHS: [&str; 12] =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let month = MONTHS.iter().position(|m| *m == parts[2]).ok_or_else(bad)? + 1;
        let iso = format!("{}-{:02}-{}T{}Z", parts[3], month, parts[1], parts[4]);
        Self::parse(&iso, DateTimeKind::Instant).map_err(|_| bad())
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if self.precision >= Precision::Month {
            write!(f, "-{:02}", self.month)?;
        }
        if self.precision >= Precision::Day {
            write!(f, "-{:02}", self.day)?;
        }
        if self.precision >= Precision::Hour {
            write!(f, "T{:02}", self.hour)?;
        }
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision == Precision::Fraction {
            write_fraction(f, self.nanosecond, self.fraction_digits)?;
        }
        match self.offset_minutes {
            Some(0) => f.write_str("Z"),
            Some(offset) => {
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
            }
            None => Ok(()),
        }
    }
}

fn write_fraction(f: &mut fmt::Formatter<'_>, nanos: u32, digits: u8) -> fmt::Result {
    let shown = u32::from(digits.clamp(1, 9));
    write!(f, ".{:0width$}", nanos / 10u32.pow(9 - shown), width = shown as usize)?;
    for _ in 9..digits {
        f.write_str("0")?;
    }
    Ok(())
}

impl Time {
    /// Parses a FHIR `time` (`hh:mm:ss` with optional fraction); with `partial`, FHIRPath's
    /// `hh` and `hh:mm` are accepted too.
    pub fn parse(text: &str, partial: bool) -> Result<Self, Error> {
        Self::parse_inner(text, partial).map_err(|why| invalid("time", text, why))
    }

    fn parse_inner(text: &str, partial: bool) -> Result<Self, &'static str> {
        let mut c = Cursor { text: text.as_bytes(), pos: 0 };
        let hour = c.digits(2).ok_or("hour must be two digits")?;
        if hour > 23 {
            return Err("hour must be 00-23");
        }
        let mut value = Time {
            hour: hour as u8,
            minute: 0,
            second: 0,
            nanosecond: 0,
            fraction_digits: 0,
            precision: Precision::Hour,
        };
        if c.eat(b':') {
            let minute = c.digits(2).ok_or("minute must be two digits")?;
            if minute > 59 {
                return Err("minute must be 00-59");
            }
            value.minute = minute as u8;
            value.precision = Precision::Minute;
            if c.eat(b':') {
                let second = c.digits(2).ok_or("second must be two digits")?;
                if second > 60 {
                    return Err("second must be 00-60");
                }
                value.second = second as u8;
                value.precision = Precision::Second;
                if c.eat(b'.') {
                    let (nanos, digits) =
                        parse_fraction(&mut c).ok_or("a decimal point must be followed by digits")?;
                    value.nanosecond = nanos;
                    value.fraction_digits = digits;
                    value.precision = Precision::Fraction;
                }
            }
        }
        if !c.done() {
            return Err("unexpected characters after the time");
        }
        if !partial && value.precision < Precision::Second {
            return Err("a time must be written hh:mm:ss");
        }
        Ok(value)
    }

    /// Milliseconds since midnight of the earliest moment the value covers.
    pub fn millis_of_day(&self) -> i64 {
        i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.nanosecond / 1_000_000)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision == Precision::Fraction {
            write_fraction(f, self.nanosecond, self.fraction_digits)?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn epoch_millis_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(text: &str) -> DateTime {
        DateTime::parse(text, DateTimeKind::DateTime).expect(text)
    }

    #[test]
    fn keeps_precision_and_round_trips() {
        for text in [
            "2015",
            "2015-02",
            "2015-02-07",
            "2015-02-07T13:28:17-05:00",
            "2017-01-01T00:00:00.000Z",
            "2017-01-01T00:00:00.1234+14:00",
        ] {
            assert_eq!(dt(text).to_string(), text);
        }
        assert_eq!(dt("2015").precision, Precision::Year);
        assert_eq!(dt("2015-02-07T13:28:17Z").precision, Precision::Second);
    }

    #[test]
    fn rejects_what_the_fhir_regex_rejects() {
        for text in [
            "15",
            "2015-13",
            "2015-02-30",
            "2015-02-07T13:28",
            "2015-02-07T13:28:17",
            "2015-02-07T25:00:00Z",
            "2015-02-07T13:28:17+15:00",
            "2015-02-07 13:28:17Z",
            "0000-01-01",
            "2015-02-07T13:28:17.Z",
        ] {
            assert!(DateTime::parse(text, DateTimeKind::DateTime).is_err(), "{text} accepted");
        }
        assert!(DateTime::parse("2016-02-29", DateTimeKind::Date).is_ok());
        assert!(DateTime::parse("2015-02-29", DateTimeKind::Date).is_err());
        assert!(DateTime::parse("2015-02-07T13:28:17Z", DateTimeKind::Date).is_err());
        assert!(DateTime::parse("2015-02-07", DateTimeKind::Instant).is_err());
    }

    #[test]
    fn partial_fhirpath_forms() {
        let v = DateTime::parse("2015-02-04T14", DateTimeKind::Partial).unwrap();
        assert_eq!(v.precision, Precision::Hour);
        assert_eq!(v.offset_minutes, None);
        let v = DateTime::parse("2015T", DateTimeKind::Partial).unwrap();
        assert_eq!(v.precision, Precision::Year);
        assert_eq!(Time::parse("14:30", true).unwrap().precision, Precision::Minute);
        assert!(Time::parse("14:30", false).is_err());
    }

    #[test]
    fn bounds_cover_the_precision() {
        let year = dt("2015");
        assert_eq!(year.lower_bound_millis(), 1_420_070_400_000);
        assert_eq!(year.upper_bound_millis(), 1_451_606_400_000);
        let feb = dt("2016-02");
        assert_eq!(feb.upper_bound_millis() - feb.lower_bound_millis(), 29 * MILLIS_PER_DAY);
        let zoned = dt("2015-01-01T00:00:00+01:00");
        assert_eq!(zoned.lower_bound_millis(), 1_420_070_400_000 - 3_600_000);
        assert_eq!(zoned.upper_bound_millis() - zoned.lower_bound_millis(), 1000);
    }

    #[test]
    fn epoch_conversions_agree() {
        for days in [-800_000i64, -1, 0, 1, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let t = DateTime::from_epoch_millis(1_764_058_092_123);
        assert_eq!(t.to_string(), "2025-11-25T08:08:12.123Z");
        assert_eq!(t.to_http_date(), "Tue, 25 Nov 2025 08:08:12 GMT");
        let back = DateTime::parse_http_date("Tue, 25 Nov 2025 08:08:12 GMT").unwrap();
        assert_eq!(back.lower_bound_millis(), 1_764_058_092_000);
    }
}
