//! Dates cut to their year, or moved by whole days with their precision and time of day kept
//! (so every interval between two of a patient's dates, to the day, survives the shift).

use fhir::datetime::{civil_from_days, days_from_civil};

/// The year of a FHIR date, dateTime or instant (`2021-03-04T10:00:00Z` → `2021`).
pub fn year_of(value: &str) -> Option<&str> {
    let year = value.get(..4)?;
    year.bytes().all(|b| b.is_ascii_digit()).then_some(year)
}

/// Whether the value says more than its year.
pub fn finer_than_year(value: &str) -> bool {
    value.len() > 4
}

/// `value` moved by `days`, written as precisely as it was given. A year or month alone is
/// moved from its middle, so that it changes about as often whichever way the shift goes.
pub fn shift(value: &str, days: i64) -> Option<String> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = value.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let year = digits(0..4)?;
    let month = if value.len() >= 7 { Some(digits(5..7)?) } else { None };
    let day = if value.len() >= 10 { Some(digits(8..10)?) } else { None };
    if value.len() > 4 && value.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    let start = match (month, day) {
        (None, _) => days_from_civil(i64::from(year), 7, 2),
        (Some(month), None) => days_from_civil(i64::from(year), month, 15),
        (Some(month), Some(day)) => days_from_civil(i64::from(year), month, day),
    };
    let (y, m, d) = civil_from_days(start + days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some(match (month, day) {
        (None, _) => format!("{y:04}"),
        (Some(_), None) => format!("{y:04}-{m:02}"),
        (Some(_), Some(_)) => format!("{y:04}-{m:02}-{d:02}{}", value.get(10..).unwrap_or("")),
    })
}

/// Whole years from `born` (`YYYY[-MM[-DD]]`) to `on` (`YYYY-MM-DD...`); a partial birth date
/// counts from its earliest day, so an age is never understated.
pub fn age_on(born: &str, on: &str) -> Option<i64> {
    let part = |text: &str, range: std::ops::Range<usize>, default: i64| -> Option<i64> {
        match text.get(range) {
            Some(p) if !p.is_empty() => p.parse().ok(),
            _ => Some(default),
        }
    };
    let (by, bm, bd) = (part(born, 0..4, 0)?, part(born, 5..7, 1)?, part(born, 8..10, 1)?);
    let (oy, om, od) = (part(on, 0..4, 0)?, part(on, 5..7, 1)?, part(on, 8..10, 1)?);
    let mut age = oy - by;
    if (om, od) < (bm, bd) {
        age -= 1;
    }
    Some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_keep_precision_time_and_intervals() {
        assert_eq!(shift("2021-03-01", -1).as_deref(), Some("2021-02-28"));
        assert_eq!(shift("2020-02-28T10:15:00-05:00", 1).as_deref(), Some("2020-02-29T10:15:00-05:00"));
        assert_eq!(shift("2021-12", 31).as_deref(), Some("2022-01"));
        assert_eq!(shift("2021-12", -20).as_deref(), Some("2021-11"));
        assert_eq!(shift("2021", 200).as_deref(), Some("2022"));
        assert_eq!(shift("2021", -200).as_deref(), Some("2020"));
        assert_eq!(shift("21-03-01", 1), None);
        assert_eq!(year_of("1950-07-04"), Some("1950"));
        assert_eq!(age_on("1930-07-04", "2020-07-03"), Some(89));
        assert_eq!(age_on("1930-07-04", "2020-07-04"), Some(90));
        assert_eq!(age_on("1930", "2020-01-01"), Some(90));
    }
}
