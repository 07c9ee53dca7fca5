//! People registered twice: a second Patient for the same person, made with the errors of a
//! busy registration desk, and an office visit recorded under it. The true pairs and every
//! error are listed.

use serde_json::{Value, json};

use crate::calendar::{DAY, ICD10CM, concept, date_time, reference};
use crate::rng::Rng;
use crate::vocab;
use crate::{Error, Sink};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegistrationError {
    FamilyTypo,
    GivenTypo,
    Nickname,
    DayMonthTransposed,
    NewAddress,
    MissingSsn,
    MaidenName,
}

impl RegistrationError {
    pub(crate) const ALL: [RegistrationError; 7] = [
        RegistrationError::FamilyTypo,
        RegistrationError::GivenTypo,
        RegistrationError::Nickname,
        RegistrationError::DayMonthTransposed,
        RegistrationError::NewAddress,
        RegistrationError::MissingSsn,
        RegistrationError::MaidenName,
    ];

    pub(crate) fn id(self) -> &'static str {
        match self {
            RegistrationError::FamilyTypo => "family-typo",
            RegistrationError::GivenTypo => "given-typo",
            RegistrationError::Nickname => "nickname",
            RegistrationError::DayMonthTransposed => "day-month-transposed",
            RegistrationError::NewAddress => "new-address",
            RegistrationError::MissingSsn => "missing-ssn",
            RegistrationError::MaidenName => "maiden-name",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            RegistrationError::FamilyTypo => {
                "one keying error in the family name (substitution, transposition, omission or doubling)"
            }
            RegistrationError::GivenTypo => "one keying error in the first given name",
            RegistrationError::Nickname => "the first given name registered as its common nickname",
            RegistrationError::DayMonthTransposed => "day and month of the birth date swapped",
            RegistrationError::NewAddress => "registered at a later home address",
            RegistrationError::MissingSsn => "no Social Security number recorded",
            RegistrationError::MaidenName => "registered under another family name (maiden name)",
        }
    }
}

/// Where the second registration's visit happens.
pub(crate) struct Visit<'a> {
    pub(crate) key: &'a str,
    pub(crate) organization: String,
    pub(crate) location: String,
    pub(crate) practitioner: String,
    /// The days the visit may fall on.
    pub(crate) first_day: i64,
    pub(crate) last_day: i64,
}

/// One keying error: substitution, transposition, omission or doubling of a letter.
fn typo(word: &str, rng: &mut Rng) -> String {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        return format!("{word}{}", chars.last().copied().unwrap_or('a'));
    }
    // Never the first letter: registrars rarely get that wrong, and matchers block on it.
    let at = rng.range(1, chars.len() as i64 - 1) as usize;
    let mut out = chars.clone();
    match rng.below(4) {
        0 => {
            let replacement = b"aeioulnrst"[rng.below(10) as usize] as char;
            let replacement = if replacement == chars[at].to_ascii_lowercase() { 'y' } else { replacement };
            out[at] = replacement;
        }
        1 if at + 1 < chars.len() && chars[at] != chars[at + 1] => out.swap(at, at + 1),
        2 => {
            out.remove(at);
        }
        _ => out.insert(at, chars[at]),
    }
    let result: String = out.into_iter().collect();
    if result == word { format!("{word}e") } else { result }
}

/// Registers the person of `original` (a Patient as written) a second time and records the
/// pair; returns whether a duplicate was written.
pub(crate) fn register_again(
    original: &Value,
    visit: &Visit<'_>,
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<bool, Error> {
    let female = original["gender"] == "female";
    let birth = original["birthDate"].as_str().unwrap_or_default().to_string();
    let given = original["name"][0]["given"][0].as_str().unwrap_or_default().to_string();
    let nickname = vocab::NICKNAMES.iter().find(|(name, _)| *name == given).map(|(_, nick)| *nick);
    let adult = birth.get(..4).and_then(|y| y.parse::<i64>().ok()).is_some_and(|year| year <= 2006);
    let applicable: Vec<RegistrationError> = RegistrationError::ALL
        .into_iter()
        .filter(|error| match error {
            RegistrationError::Nickname => nickname.is_some(),
            RegistrationError::DayMonthTransposed => {
                let (month, day) = (birth.get(5..7).unwrap_or("00"), birth.get(8..10).unwrap_or("00"));
                day != month && day <= "12"
            }
            RegistrationError::MaidenName => female && adult,
            _ => true,
        })
        .collect();
    // One to three errors, never a family-name typo together with a maiden name.
    let mut errors: Vec<RegistrationError> = Vec::new();
    let wanted = rng.range(1, 3) as usize;
    let mut pool = applicable;
    while errors.len() < wanted && !pool.is_empty() {
        let error = pool.swap_remove(rng.below(pool.len() as u64) as usize);
        if error == RegistrationError::MaidenName {
            pool.retain(|e| *e != RegistrationError::FamilyTypo);
        }
        if error == RegistrationError::FamilyTypo {
            pool.retain(|e| *e != RegistrationError::MaidenName);
        }
        if error == RegistrationError::Nickname {
            pool.retain(|e| *e != RegistrationError::GivenTypo);
        }
        if error == RegistrationError::GivenTypo {
            pool.retain(|e| *e != RegistrationError::Nickname);
        }
        errors.push(error);
    }
    errors.sort_by_key(|e| RegistrationError::ALL.iter().position(|x| x == e));

    let original_id = original["id"].as_str().unwrap_or_default();
    let id = format!("pat-r{}", visit.key);
    let mut duplicate = original.clone();
    let Some(object) = duplicate.as_object_mut() else { return Ok(false) };
    object.insert("id".into(), Value::from(id.as_str()));
    // A new registration: one official name, a new record number, alive when registered.
    object.remove("deceasedDateTime");
    let official = original["name"][0].clone();
    object.insert("name".into(), json!([official]));
    if let Some(identifiers) = object.get_mut("identifier").and_then(Value::as_array_mut) {
        for identifier in identifiers.iter_mut() {
            if identifier["system"] == "http://hospital.example.org/mrn" {
                identifier["value"] = Value::from(format!("M9{}", visit.key));
            }
        }
        identifiers.retain(|i| {
            i["system"] == "http://hospital.example.org/mrn"
                || i["system"] == "http://hl7.org/fhir/sid/us-ssn"
        });
    }
    let mut listed = Vec::new();
    for error in &errors {
        let (path, was, now) = match error {
            RegistrationError::FamilyTypo | RegistrationError::MaidenName => {
                let was = duplicate["name"][0]["family"].clone();
                let family = was.as_str().unwrap_or_default();
                let now = if *error == RegistrationError::FamilyTypo {
                    typo(family, rng)
                } else {
                    let mut other = rng.pick(vocab::SURNAMES).to_string();
                    if other == family {
                        other = rng.pick(vocab::MULTI_PART_SURNAMES).to_string();
                    }
                    other
                };
                duplicate["name"][0]["family"] = Value::from(now.as_str());
                ("Patient.name[0].family", was, Value::from(now))
            }
            RegistrationError::GivenTypo | RegistrationError::Nickname => {
                let was = duplicate["name"][0]["given"][0].clone();
                let now = match (error, nickname) {
                    (RegistrationError::Nickname, Some(nick)) => nick.to_string(),
                    _ => typo(was.as_str().unwrap_or_default(), rng),
                };
                duplicate["name"][0]["given"][0] = Value::from(now.as_str());
                ("Patient.name[0].given[0]", was, Value::from(now))
            }
            RegistrationError::DayMonthTransposed => {
                let was = duplicate["birthDate"].clone();
                let text = was.as_str().unwrap_or_default();
                let now = format!("{}-{}-{}", &text[..4], &text[8..10], &text[5..7]);
                duplicate["birthDate"] = Value::from(now.as_str());
                ("Patient.birthDate", was, Value::from(now))
            }
            RegistrationError::NewAddress => {
                let was = duplicate["address"][0].clone();
                let (city, state, zip3, _) = *rng.pick(vocab::CITIES);
                let line = format!(
                    "{} {} {}",
                    rng.range(10, 9899),
                    rng.pick(vocab::STREET_NAMES),
                    rng.pick(vocab::STREET_SUFFIXES)
                );
                let now = json!({ "use": "home", "type": "physical", "line": [line], "city": city, "state": state,
                                  "postalCode": format!("{zip3}{:02}", rng.range(1, 99)), "country": "US" });
                duplicate["address"] = json!([now.clone()]);
                ("Patient.address[0]", was, now)
            }
            RegistrationError::MissingSsn => {
                let mut was = Value::Null;
                if let Some(identifiers) = duplicate["identifier"].as_array_mut() {
                    if let Some(ssn) =
                        identifiers.iter().find(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
                    {
                        was = ssn["value"].clone();
                    }
                    identifiers.retain(|i| i["system"] != "http://hl7.org/fhir/sid/us-ssn");
                }
                ("Patient.identifier (SSN)", was, Value::Null)
            }
        };
        listed.push(json!({ "kind": error.id(), "path": path, "original": was, "duplicate": now }));
    }
    sink.write(&duplicate)?;

    // The visit recorded under the second registration: a cold, seen at the usual clinic.
    let day = visit.first_day + rng.below((visit.last_day - visit.first_day).max(1) as u64) as i64;
    let start = day * DAY + 9 * 3600 + rng.range(0, 28) * 900;
    let encounter_id = format!("enc-r{}-01", visit.key);
    let condition_id = format!("cond-r{}-e01", visit.key);
    let subject = reference(&format!("Patient/{id}"));
    let cold = concept(ICD10CM, "J06.9", "Acute upper respiratory infection, unspecified");
    let mut condition = json!({
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved"),
        "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
        "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
        "code": cold,
        "subject": subject,
        "encounter": reference(&format!("Encounter/{encounter_id}")),
        "onsetDateTime": crate::calendar::date(day - 2),
        "recordedDate": date_time(start + 1200),
    });
    condition["code"]["text"] = Value::from("upper respiratory infection");
    sink.write(&condition)?;
    sink.write(&json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
        "subject": reference(&format!("Patient/{id}")),
        "participant": [{ "type": [concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender")],
                          "individual": reference(&format!("Practitioner/{}", visit.practitioner)) }],
        "period": { "start": date_time(start), "end": date_time(start + 1800) },
        "reasonCode": [condition["code"].clone()],
        "diagnosis": [{ "condition": reference(&format!("Condition/{condition_id}")),
                        "use": concept("http://terminology.hl7.org/CodeSystem/diagnosis-role", "billing", "Billing"), "rank": 1 }],
        "location": [{ "location": reference(&format!("Location/{}", visit.location)), "status": "completed",
                       "period": { "start": date_time(start), "end": date_time(start + 1800) } }],
        "serviceProvider": reference(&format!("Organization/{}", visit.organization)),
    }))?;
    // Charges were never posted to the second registration's visit: it stays unbilled.
    sink.record(
        super::TruthFile::Unbilled,
        &json!({ "encounter": format!("Encounter/{encounter_id}"), "claim": null,
                 "discharged": date_time(start + 1800), "coded": false, "charges": null }),
    )?;
    sink.record(
        super::TruthFile::Duplicates,
        &json!({
            "original": format!("Patient/{original_id}"),
            "duplicate": format!("Patient/{id}"),
            "errors": listed,
            "duplicateRecords": [format!("Encounter/{encounter_id}"), format!("Condition/{condition_id}")],
        }),
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance_one(a: &str, b: &str) -> bool {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        if a.len() == b.len() {
            let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            differ.len() == 1
                || (differ.len() == 2
                    && differ[1] == differ[0] + 1
                    && a[differ[0]] == b[differ[1]]
                    && a[differ[1]] == b[differ[0]])
        } else {
            let (short, long) = if a.len() < b.len() { (&a, &b) } else { (&b, &a) };
            long.len() == short.len() + 1
                && (0..long.len()).any(|skip| {
                    let mut rest = long.clone();
                    rest.remove(skip);
                    &rest == short
                })
        }
    }

    #[test]
    fn a_typo_is_one_keying_error_away_and_keeps_the_first_letter() {
        let mut rng = Rng::stream(3, 3);
        for word in ["Johnson", "Lee", "Nguyen", "Ann", "Castellanos", "Oo"] {
            for _ in 0..200 {
                let typed = typo(word, &mut rng);
                assert_ne!(typed, word);
                assert!(distance_one(word, &typed), "{word} -> {typed}");
                assert_eq!(typed.chars().next(), word.chars().next());
            }
        }
    }
}
