//! A person as matching sees them: every field normalised once (lower case ASCII letters and
//! digits, single spaces), so comparisons are byte comparisons.

use serde_json::Value;

/// One registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    /// The record's id (a Patient id, a FEBRL `rec_id`).
    pub id: String,
    pub given: String,
    pub family: String,
    /// Other family names the person is known by (maiden, previous), and the parts of a
    /// hyphenated or multi-part family name.
    pub other_families: Vec<String>,
    /// Year, month, day.
    pub birth: Option<(u16, u8, u8)>,
    /// `m` or `f`; empty when unknown.
    pub sex: String,
    /// Street number and street.
    pub street: String,
    pub city: String,
    pub postcode: String,
    pub state: String,
    /// Digits only.
    pub phone: String,
    /// A national identifier (SSN-like), digits only.
    pub national_id: String,
}

/// Lower case ASCII letters, digits and single spaces; accents and punctuation dropped.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = fold(c);
        if c.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c.to_ascii_lowercase());
        } else if c.is_whitespace() || c == '-' || c == '\'' || c == '.' || c == ',' {
            // Hyphens and apostrophes separate parts ("Garcia-Lopez", "O'Brien" -> "o brien").
            space = c != '\'' || space;
        }
    }
    out
}

/// The few accented Latin letters registrations hold, as their base letter.
fn fold(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'À' | 'Â' | 'Ä' => 'a',
        'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' => 'e',
        'í' | 'ì' | 'î' | 'ï' | 'Í' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'Ó' | 'Ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ü' => 'u',
        'ñ' | 'Ñ' => 'n',
        'ç' | 'Ç' => 'c',
        other => other,
    }
}

/// Digits only.
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// `YYYY-MM-DD` or `YYYYMMDD` as a date, if it is one.
pub fn parse_birth(text: &str) -> Option<(u16, u8, u8)> {
    let d = digits(text);
    if d.len() != 8 {
        return None;
    }
    let year: u16 = d[..4].parse().ok()?;
    let month: u8 = d[4..6].parse().ok()?;
    let day: u8 = d[6..8].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day) && year >= 1800).then_some((year, month, day))
}

const SSN_SYSTEMS: [&str; 2] = ["http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"];

impl Person {
    /// A FHIR Patient as matching sees it: the official (or first usual) name, other names'
    /// family names (maiden, old), the current home address, a phone, the SSN.
    pub fn from_patient(patient: &Value) -> Person {
        let id = patient["id"].as_str().unwrap_or_default().to_string();
        let names: Vec<&Value> = patient["name"].as_array().map(|n| n.iter().collect()).unwrap_or_default();
        let chosen = names
            .iter()
            .find(|n| n["use"] == "official")
            .or_else(|| names.iter().find(|n| n["use"] == "usual"))
            .or_else(|| names.iter().find(|n| n["use"] != "old" && n["use"] != "maiden"))
            .or(names.first())
            .copied();
        let given = chosen
            .and_then(|n| n["given"].as_array())
            .and_then(|g| g.first())
            .and_then(Value::as_str)
            .map(normalise)
            .unwrap_or_default();
        let family = chosen.and_then(|n| n["family"].as_str()).map(normalise).unwrap_or_default();
        let mut other_families: Vec<String> = names
            .iter()
            .filter(|n| Some(**n) != chosen)
            .filter_map(|n| n["family"].as_str())
            .map(normalise)
            .filter(|f| !f.is_empty() && *f != family)
            .collect();
        if family.contains(' ') {
            other_families.extend(family.split(' ').filter(|p| p.len() > 1).map(str::to_string));
        }
        let addresses: Vec<&Value> =
            patient["address"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let current = |a: &&&Value| a["use"] != "old" && a["period"]["end"].is_null();
        let address = addresses
            .iter()
            .filter(current)
            .find(|a| a["use"] == "home")
            .or_else(|| addresses.iter().find(current))
            .copied();
        let street = address
            .and_then(|a| a["line"].as_array())
            .and_then(|l| l.first())
            .and_then(Value::as_str)
            .map(normalise)
            .unwrap_or_default();
        let field = |name: &str| address.and_then(|a| a[name].as_str()).map(normalise).unwrap_or_default();
        let phone = patient["telecom"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["system"] == "phone")
            .and_then(|t| t["value"].as_str())
            .map(digits)
            .map(|d| if d.len() > 10 { d[d.len() - 10..].to_string() } else { d })
            .unwrap_or_default();
        let national_id = patient["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["system"].as_str().is_some_and(|s| SSN_SYSTEMS.contains(&s)))
            .and_then(|i| i["value"].as_str())
            .map(digits)
            .unwrap_or_default();
        let sex = match patient["gender"].as_str() {
            Some("male") => "m",
            Some("female") => "f",
            _ => "",
        };
        Person {
            id,
            given,
            family,
            other_families,
            birth: patient["birthDate"].as_str().and_then(parse_birth),
            sex: sex.to_string(),
            street,
            city: field("city"),
            // The five-digit ZIP: a ZIP+4 on one registration only is no disagreement.
            postcode: address
                .and_then(|a| a["postalCode"].as_str())
                .map(|p| digits(p).chars().take(5).collect())
                .unwrap_or_default(),
            state: field("state"),
            phone,
            national_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_to_letters_and_single_spaces() {
        assert_eq!(normalise("  García-López "), "garcia lopez");
        assert_eq!(normalise("O'Brien"), "obrien");
        assert_eq!(normalise("St. James"), "st james");
        assert_eq!(parse_birth("1908-12-09"), Some((1908, 12, 9)));
        assert_eq!(parse_birth("19081309"), None);
        assert_eq!(parse_birth(""), None);
    }

    #[test]
    fn a_patient_keeps_its_official_name_and_other_family_names() {
        let patient = serde_json::json!({ "resourceType": "Patient", "id": "p1", "gender": "female",
            "name": [{ "use": "maiden", "family": "Smith" }, { "use": "official", "family": "Jones-Hart", "given": ["Ann", "Marie"] }],
            "birthDate": "1980-02-03",
            "identifier": [{ "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456" }],
            "telecom": [{ "system": "phone", "value": "+1 (304) 555-0196" }],
            "address": [{ "use": "old", "city": "Akron" }, { "use": "home", "line": ["12 High St"], "city": "Dayton", "postalCode": "45402-1234", "state": "OH" }] });
        let person = Person::from_patient(&patient);
        assert_eq!(person.given, "ann");
        assert_eq!(person.family, "jones hart");
        assert_eq!(person.other_families, vec!["smith", "jones", "hart"]);
        assert_eq!(person.birth, Some((1980, 2, 3)));
        assert_eq!((person.city.as_str(), person.postcode.as_str()), ("dayton", "45402"));
        assert_eq!((person.phone.as_str(), person.national_id.as_str()), ("3045550196", "999123456"));
    }
}
