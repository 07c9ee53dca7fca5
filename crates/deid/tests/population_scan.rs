//! De-identifies the synthetic population, whose every identity the generator wrote, and
//! scans the extract (structured data and the text of notes) for each of them.
//!
//! - Safe Harbor: no name, identifier, address, phone or e-mail of any patient or staff
//!   member, and no date finer than a year, anywhere. Leaks are listed by class.
//! - Date shift: the same identities are gone; every date of a patient, in elements and in
//!   note text, is the real one moved by that patient's shift, so every interval between a
//!   patient's events survives and no real date is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

mod support;

use chartroom_deid::{IdentifierClass, Key, Report, Settings};
use regex::Regex;
use serde_json::Value;

/// The population's resources, read from the generator's files.
fn population() -> &'static Vec<Value> {
    static POPULATION: OnceLock<Vec<Value>> = OnceLock::new();
    POPULATION.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("deid-population-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        synth::generate(
            &synth::GenerateOptions { patients: 150, seed: 29, ..Default::default() },
            &dir,
            &|_| {},
        )
        .expect("generate");
        let resources = read_ndjson(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        resources
    })
}

fn read_ndjson(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Every identity value the generator wrote: (class, value).
fn identities(resources: &[Value]) -> BTreeSet<(IdentifierClass, String)> {
    let mut found = BTreeSet::new();
    for resource in resources {
        let kind = resource["resourceType"].as_str().unwrap_or("");
        if !matches!(kind, "Patient" | "Practitioner" | "RelatedPerson") {
            continue;
        }
        for name in resource["name"].as_array().into_iter().flatten() {
            if let Some(family) = name["family"].as_str() {
                found.insert((IdentifierClass::Names, family.to_string()));
            }
            for given in name["given"].as_array().into_iter().flatten() {
                found.insert((IdentifierClass::Names, given.as_str().unwrap().to_string()));
            }
        }
        for identifier in resource["identifier"].as_array().into_iter().flatten() {
            let value = identifier["value"].as_str().unwrap().to_string();
            let class = match identifier["system"].as_str().unwrap_or("") {
                s if s.contains("ssn") => IdentifierClass::Ssn,
                s if s.contains("mrn") => IdentifierClass::MedicalRecordNumber,
                s if s.contains("npi") => IdentifierClass::LicenseNumber,
                _ => IdentifierClass::OtherUnique,
            };
            found.insert((class, value));
        }
        for telecom in resource["telecom"].as_array().into_iter().flatten() {
            let class = if telecom["system"] == "email" {
                IdentifierClass::Email
            } else {
                IdentifierClass::Telephone
            };
            found.insert((class, telecom["value"].as_str().unwrap().to_string()));
        }
        for address in resource["address"].as_array().into_iter().flatten() {
            for line in address["line"].as_array().into_iter().flatten() {
                found.insert((IdentifierClass::Geographic, line.as_str().unwrap().to_string()));
            }
            for key in ["city", "postalCode"] {
                if let Some(value) = address[key].as_str() {
                    found.insert((IdentifierClass::Geographic, value.to_string()));
                }
            }
        }
    }
    found
}

/// The resource's JSON and the decoded text of its attachments.
fn texts(resource: &Value) -> Vec<String> {
    let mut texts = vec![resource.to_string()];
    fn walk(value: &Value, texts: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(data) = map.get("data").and_then(Value::as_str)
                    && let Some(bytes) = fhir::base64_decode(data)
                {
                    texts.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                map.values().for_each(|v| walk(v, texts));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, texts)),
            _ => {}
        }
    }
    walk(resource, &mut texts);
    texts
}

fn extract(settings: Settings) -> (Vec<Value>, Report) {
    support::deidentify(settings, population())
}

/// Identity values found in the extract (whole words, any case), by class.
fn leaks(
    extract: &[Value],
    identities: &BTreeSet<(IdentifierClass, String)>,
) -> BTreeMap<IdentifierClass, BTreeSet<String>> {
    let mut leaks: BTreeMap<IdentifierClass, BTreeSet<String>> = BTreeMap::new();
    let values: Vec<&(IdentifierClass, String)> = identities
        .iter()
        .filter(|(_, value)| value.chars().filter(|c| c.is_alphanumeric()).count() >= 2)
        .collect();
    let finder = aho_corasick::AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(values.iter().map(|(_, value)| value.as_str()))
        .unwrap();
    for resource in extract {
        for text in texts(resource) {
            let bytes = text.as_bytes();
            for hit in finder.find_overlapping_iter(&text) {
                let word = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_alphanumeric);
                if (hit.start() > 0 && word(hit.start() - 1)) || word(hit.end()) {
                    continue;
                }
                let (class, value) = values[hit.pattern().as_usize()];
                let around = text
                    .get(hit.start().saturating_sub(40)..(hit.end() + 40).min(text.len()))
                    .unwrap_or(value);
                leaks.entry(*class).or_default().insert(format!(
                    "{value} in …{}…",
                    around.chars().filter(|c| !c.is_control()).collect::<String>()
                ));
            }
        }
    }
    leaks
}

const AS_OF: &str = "2026-01-01";

#[test]
fn safe_harbor_leaves_no_identifier_and_no_date_finer_than_a_year() {
    let identities = identities(population());
    assert!(identities.len() > 1000, "{} identity values", identities.len());
    // The scan finds every class in the record itself.
    let in_record = leaks(population(), &identities);
    for class in [
        IdentifierClass::Names,
        IdentifierClass::Geographic,
        IdentifierClass::Ssn,
        IdentifierClass::MedicalRecordNumber,
        IdentifierClass::Telephone,
    ] {
        assert!(in_record.contains_key(&class), "the scan finds no {} in the record", class.code());
    }
    let (extract, report) = extract(Settings::safe_harbor(AS_OF).unwrap());
    if std::env::var_os("DEID_SHOW").is_some() {
        for kind in ["Patient", "DocumentReference", "Encounter", "Practitioner"] {
            let sample = extract.iter().find(|r| r["resourceType"] == kind).unwrap();
            eprintln!("{sample:#}");
            for text in texts(sample).iter().skip(1) {
                eprintln!("{text}");
            }
        }
        eprintln!("{:#}", report.to_json(chartroom_deid::Profile::SafeHarbor));
    }
    let mut leaks = leaks(&extract, &identities);
    let finer_date = Regex::new(
        r"(?i)\b\d{4}-\d{2}(-\d{2})?\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4}\b",
    )
    .unwrap();
    for resource in &extract {
        for text in texts(resource) {
            for m in finer_date.find_iter(&text) {
                leaks.entry(IdentifierClass::Dates).or_default().insert(m.as_str().to_string());
            }
        }
    }
    let listed: Vec<String> = leaks
        .iter()
        .map(|(class, values)| {
            format!("{}: {} e.g. {:?}", class.code(), values.len(), values.iter().take(3).collect::<Vec<_>>())
        })
        .collect();
    assert!(leaks.is_empty(), "leaks by class:\n{}", listed.join("\n"));
    // What was removed is counted, class by class.
    for class in [
        IdentifierClass::Names,
        IdentifierClass::Geographic,
        IdentifierClass::Dates,
        IdentifierClass::Telephone,
        IdentifierClass::Ssn,
        IdentifierClass::MedicalRecordNumber,
    ] {
        assert!(report.total(class) > 0, "{} removed: {}", class.code(), report.total(class));
    }
    assert!(report.text.get(&IdentifierClass::Names).copied().unwrap_or(0) > 0);
    assert!(report.text.get(&IdentifierClass::MedicalRecordNumber).copied().unwrap_or(0) > 0);
    assert_eq!(report.resources_out, extract.len() as u64);
    // Every patient is still there, under a code.
    let patients = population().iter().filter(|r| r["resourceType"] == "Patient").count();
    assert_eq!(extract.iter().filter(|r| r["resourceType"] == "Patient").count(), patients);
    // ZIP codes are three digits.
    for patient in extract.iter().filter(|r| r["resourceType"] == "Patient") {
        for address in patient["address"].as_array().into_iter().flatten() {
            assert!(address["postalCode"].as_str().is_none_or(|z| z.len() == 3), "{address}");
            assert!(address.get("line").is_none() && address.get("city").is_none());
        }
    }
}

#[test]
fn safe_harbor_groups_patients_aged_90_or_more() {
    let (extract, _) = extract(Settings::safe_harbor(AS_OF).unwrap());
    let old: Vec<&Value> = population()
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .filter(|r| {
            r["birthDate"].as_str().is_some_and(|b| b < "1936-01-01") && r.get("deceasedDateTime").is_none()
        })
        .collect();
    assert!(!old.is_empty(), "the population has patients of 90 or more");
    let grouped = extract
        .iter()
        .filter(|r| r["resourceType"] == "Patient" && r.to_string().contains("age-90-or-older"))
        .count();
    assert!(grouped >= old.len(), "{grouped} grouped of {} aged 90 or more", old.len());
    for patient in extract.iter().filter(|r| r.to_string().contains("age-90-or-older")) {
        assert!(patient.get("birthDate").is_none());
    }
}

/// `YYYY-MM-DD` dates (in elements and in text) of each patient's resources, by patient.
fn dated(
    resources: &[Value],
    patient_of: &dyn Fn(&Value) -> Option<String>,
) -> HashMap<String, BTreeSet<String>> {
    let day = Regex::new(r"\b\d{4}-\d{2}-\d{2}").unwrap();
    let mut dates: HashMap<String, BTreeSet<String>> = HashMap::new();
    for resource in resources {
        let Some(patient) = patient_of(resource) else { continue };
        for text in texts(resource) {
            for m in day.find_iter(&text) {
                dates.entry(patient.clone()).or_default().insert(m.as_str().to_string());
            }
        }
    }
    dates
}

fn days(date: &str) -> i64 {
    fhir::datetime::days_from_civil(
        date[..4].parse().unwrap(),
        date[5..7].parse().unwrap(),
        date[8..10].parse().unwrap(),
    )
}

#[test]
fn date_shift_moves_every_date_of_a_patient_by_one_secret_offset() {
    let key = Key::from_bytes(b"the record's de-identification key for this test");
    let identities = identities(population());
    let (extract, report) = extract(Settings::date_shift(key.clone(), AS_OF));
    let leaks = leaks(&extract, &identities);
    assert!(leaks.is_empty(), "identities left: {leaks:?}");
    assert!(report.total(IdentifierClass::Dates) > 0);

    let patient_of_original = |r: &Value| -> Option<String> {
        if r["resourceType"] == "Patient" {
            return r["id"].as_str().map(str::to_string);
        }
        fhir::resource::patients_mentioned(r).first().map(|p| p.to_string())
    };
    let pseudonyms: HashMap<String, String> = population()
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            (key.pseudonym("Patient", id), id.to_string())
        })
        .collect();
    let patient_of_extract = |r: &Value| -> Option<String> {
        let pseudonym = if r["resourceType"] == "Patient" {
            r["id"].as_str()?.to_string()
        } else {
            fhir::resource::patients_mentioned(r).first()?.to_string()
        };
        pseudonyms.get(&pseudonym).cloned()
    };
    let before = dated(population(), &patient_of_original);
    let after = dated(&extract, &patient_of_extract);
    assert!(after.len() > 100, "{} patients with dates", after.len());
    let (mut moved, mut wrong) = (0, Vec::new());
    for (patient, dates) in &after {
        let shift = key.shift_days(patient);
        assert_ne!(shift, 0);
        let real: BTreeSet<i64> = before[patient].iter().map(|d| days(d)).collect();
        for date in dates {
            // Each date is a real date of this patient moved by the patient's shift: intervals
            // between them are kept, and none is a real date left in place.
            if real.contains(&(days(date) - shift)) {
                moved += 1;
            } else {
                wrong.push(format!("{patient}: {date}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} dates not moved by their patient's shift: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(moved > 3_000, "{moved} dates checked");

    // The same key gives the same extract.
    let (again, _) = extract_again(&key);
    assert_eq!(again.len(), extract.len());
    assert_eq!(again.first(), extract.first());
}

fn extract_again(key: &Key) -> (Vec<Value>, Report) {
    extract(Settings::date_shift(key.clone(), AS_OF))
}
