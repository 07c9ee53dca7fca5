//! HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) and its FHIR renderings.

/// A UTC offset in minutes east of Greenwich.
type Offset = i32;

/// A checked HL7 date/time of any precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtm {
    year: u32,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
    minute: Option<u32>,
    second: Option<u32>,
    /// The digits after the decimal point, as sent.
    fraction: Option<String>,
    offset: Option<Offset>,
}

impl Dtm {
    /// Reads a DTM; `None` for anything that is not a real date and time.
    pub fn parse(text: &str) -> Option<Dtm> {
        let text = text.trim();
        let (main, offset) = match text.char_indices().skip(4).find(|(_, c)| *c == '+' || *c == '-') {
            Some((at, _)) => (&text[..at], Some(parse_offset(&text[at..])?)),
            None => (text, None),
        };
        let (digits, fraction) = match main.split_once('.') {
            Some((digits, fraction)) => (digits, Some(fraction)),
            None => (main, None),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
            return None;
        }
        if let Some(fraction) = fraction
            && (digits.len() != 14 || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let part = |from: usize| digits.get(from..from + 2).and_then(|p| p.parse::<u32>().ok());
        let dtm = Dtm {
            year: digits.get(..4)?.parse().ok()?,
            month: part(4),
            day: part(6),
            hour: part(8),
            minute: part(10),
            second: part(12),
            fraction: fraction.map(str::to_string),
            offset,
        };
        dtm.is_valid().then_some(dtm)
    }

    fn is_valid(&self) -> bool {
        let month_ok = self.month.is_none_or(|m| (1..=12).contains(&m));
        let day_ok = match (self.month, self.day) {
            (Some(m), Some(d)) => d >= 1 && d <= days_in_month(self.year, m),
            _ => true,
        };
        self.year >= 1
            && month_ok
            && day_ok
            && self.hour.is_none_or(|h| h < 24)
            && self.minute.is_none_or(|m| m < 60)
            && self.second.is_none_or(|s| s <= 60)
    }

    /// Whether the value carries a time of day.
    pub fn has_time(&self) -> bool {
        self.hour.is_some()
    }

    /// The date part at its own precision: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub fn to_fhir_date(&self) -> String {
        let mut out = format!("{:04}", self.year);
        if let Some(month) = self.month {
            out.push_str(&format!("-{month:02}"));
            if let Some(day) = self.day {
                out.push_str(&format!("-{day:02}"));
            }
        }
        out
    }

    /// A FHIR dateTime. FHIR wants seconds and a zone whenever there is a time, so missing
    /// minutes or seconds become zero and a missing zone becomes `default_offset` (an
    /// `+hh:mm`/`-hh:mm`/`Z` the caller has checked).
    pub fn to_fhir_datetime(&self, default_offset: &str) -> String {
        let Some(hour) = self.hour else {
            return self.to_fhir_date();
        };
        let mut out = format!(
            "{}T{hour:02}:{:02}:{:02}",
            self.to_fhir_date(),
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0)
        );
        if let Some(fraction) = &self.fraction {
            out.push('.');
            out.push_str(fraction);
        }
        match self.offset {
            Some(offset) => out.push_str(&format_offset(offset)),
            None => out.push_str(default_offset),
        }
        out
    }

    /// A FHIR instant, only when the value is precise to the second and says its own zone: an
    /// instant made up from a guess would claim more than the sender said.
    pub fn to_fhir_instant(&self) -> Option<String> {
        if self.second.is_none() || self.day.is_none() {
            return None;
        }
        let offset = self.offset?;
        Some(self.to_fhir_datetime(&format_offset(offset)))
    }
}

/// Whether a configured default offset is usable in a FHIR dateTime.
pub fn valid_offset(offset: &str) -> bool {
    if offset == "Z" {
        return true;
    }
    let bytes = offset.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        offset
            .get(range)
            .and_then(|d| d.parse::<u32>().ok().filter(|_| d.bytes().all(|b| b.is_ascii_digit())))
    };
    bytes.len() == 6
        && matches!(bytes.first(), Some(b'+') | Some(b'-'))
        && bytes.get(3) == Some(&b':')
        && digits(1..3).is_some_and(|h| h <= 14)
        && digits(4..6).is_some_and(|m| m < 60)
}

fn parse_offset(text: &str) -> Option<Offset> {
    let (sign, digits) = match text.split_at_checked(1)? {
        ("+", digits) => (1, digits),
        ("-", digits) => (-1, digits),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits.get(..2)?.parse().ok()?;
    let minutes: i32 = digits.get(2..)?.parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

fn format_offset(offset: Offset) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.abs();
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datetime(text: &str) -> Option<String> {
        Dtm::parse(text).map(|d| d.to_fhir_datetime("+00:00"))
    }

    #[test]
    fn renders_each_precision() {
        assert_eq!(datetime("1962").as_deref(), Some("1962"));
        assert_eq!(datetime("196203").as_deref(), Some("1962-03"));
        assert_eq!(datetime("19620320").as_deref(), Some("1962-03-20"));
        assert_eq!(datetime("1962032014").as_deref(), Some("1962-03-20T14:00:00+00:00"));
        assert_eq!(datetime("196203201405").as_deref(), Some("1962-03-20T14:05:00+00:00"));
        assert_eq!(datetime("20240229140501.25-0500").as_deref(), Some("2024-02-29T14:05:01.25-05:00"));
        assert_eq!(datetime("19620320+0100").as_deref(), Some("1962-03-20"));
    }

    #[test]
    fn refuses_what_is_no_date() {
        for bad in [
            "",
            "abc",
            "196",
            "19621",
            "20230229",
            "19621301",
            "2024010125",
            "202401011260",
            "1962.5",
            "20240101120000.",
            "20240101+01",
            "20240101+1500",
        ] {
            assert_eq!(datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_need_seconds_and_zone() {
        assert_eq!(
            Dtm::parse("20240101120000+0000").and_then(|d| d.to_fhir_instant()).as_deref(),
            Some("2024-01-01T12:00:00+00:00")
        );
        assert_eq!(Dtm::parse("20240101120000").and_then(|d| d.to_fhir_instant()), None);
        assert_eq!(Dtm::parse("202401011200+0000").and_then(|d| d.to_fhir_instant()), None);
    }

    #[test]
    fn offsets() {
        assert!(valid_offset("+00:00") && valid_offset("-05:30") && valid_offset("Z"));
        assert!(!valid_offset("+0000") && !valid_offset("UTC") && !valid_offset("+15:00"));
    }
}
