//! The ground truth matches the data: each planted defect, duplicate registration, outbreak
//! case, cohort member, readmission and employee-patient listed in `ground-truth/` is in the
//! NDJSON as described, and outside what is listed the data is clean. The checks here are
//! written from the FHIR resources, independently of how the generator plants things.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use chartroom_synth::{GROUND_TRUTH_DIR, GenerateOptions, TruthOptions, generate};
use serde_json::Value;
use terminology::icd10cm::Icd10Cm;

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const MRN: &str = "http://hospital.example.org/mrn";
const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

struct Population {
    /// `Type/id` to resource.
    resources: BTreeMap<String, Value>,
    truth: BTreeMap<String, Vec<Value>>,
    parameters: Value,
}

impl Population {
    fn of_type<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources.values().filter(move |r| r["resourceType"] == resource_type)
    }

    fn truth(&self, file: &str) -> &[Value] {
        self.truth.get(file).map_or(&[], Vec::as_slice)
    }

    fn get(&self, reference: &str) -> &Value {
        self.resources.get(reference).unwrap_or_else(|| panic!("{reference} is not in the data"))
    }

    /// The resources a defect class lists (the resource itself and the related ones).
    fn listed(&self, classes: &[&str]) -> BTreeSet<String> {
        self.truth("defects.ndjson")
            .iter()
            .filter(|d| classes.iter().any(|c| d["class"] == *c))
            .flat_map(|d| {
                let mut all = vec![d["resource"].as_str().unwrap().to_string()];
                all.extend(d["related"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()));
                all
            })
            .collect()
    }
}

/// Reads the population (only the resource types `only` names, when given) and its truth.
/// Whether each line is a FHIR resource is the other suite's concern; this one reads JSON.
fn load(dir: &Path, only: Option<&[&str]>) -> Population {
    let mut resources = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let resource_type = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "ndjson")
            && only.is_none_or(|types| types.contains(&resource_type.as_str()))
        {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let key =
                    format!("{}/{}", value["resourceType"].as_str().unwrap(), value["id"].as_str().unwrap());
                assert!(resources.insert(key.clone(), value).is_none(), "{key} twice");
            }
        }
    }
    let truth_dir = dir.join(GROUND_TRUTH_DIR);
    let mut truth = BTreeMap::new();
    for entry in std::fs::read_dir(&truth_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            let lines = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).expect("a ground-truth line is JSON"))
                .collect();
            truth.insert(path.file_name().unwrap().to_string_lossy().into_owned(), lines);
        }
    }
    let parameters = serde_json::from_slice(&std::fs::read(truth_dir.join("parameters.json")).unwrap())
        .expect("parameters");
    Population { resources, truth, parameters }
}

/// The demo's population: default rates, seed 1.
fn population() -> &'static Population {
    static POPULATION: OnceLock<Population> = OnceLock::new();
    POPULATION.get_or_init(|| {
        let dir = testkit::temp_dir("synth-ground-truth");
        generate(&GenerateOptions { patients: 1000, seed: 1, ..Default::default() }, &dir, &|_| {}).unwrap();
        load(&dir, None)
    })
}

/// A large cohort and many stays, for the checks of the planted distributions.
fn study() -> &'static Population {
    static STUDY: OnceLock<Population> = OnceLock::new();
    STUDY.get_or_init(|| {
        let dir = testkit::temp_dir("synth-study");
        let truth = TruthOptions {
            cohort_rate: 0.6,
            defect_rate: 0.0,
            duplicate_rate: 0.0,
            ..TruthOptions::default()
        };
        generate(&GenerateOptions { patients: 3000, seed: 11, truth }, &dir, &|_| {}).unwrap();
        load(&dir, Some(&["Patient", "Encounter"]))
    })
}

fn icd_codes(resource: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if object.get("system").and_then(Value::as_str) == Some(ICD10CM)
                    && let Some(code) = object.get("code").and_then(Value::as_str)
                {
                    out.push(code.to_string());
                }
                object.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, &mut out);
    out
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("reference") {
                out.push(target.clone());
            }
            object.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

fn mrn(patient: &Value) -> Option<&str> {
    patient["identifier"].as_array()?.iter().find(|i| i["system"] == MRN)?["value"].as_str()
}

fn ssn(patient: &Value) -> Option<&str> {
    patient["identifier"].as_array()?.iter().find(|i| i["system"] == SSN)?["value"].as_str()
}

/// The day an event of the record happened, by resource type (not billing or adjudication).
fn event_day(resource: &Value) -> Option<&str> {
    let value = match resource["resourceType"].as_str()? {
        "Encounter" => &resource["period"]["start"],
        "Condition" => &resource["recordedDate"],
        "Observation" => &resource["effectiveDateTime"],
        "Procedure" => &resource["performedPeriod"]["start"],
        "MedicationRequest" => &resource["authoredOn"],
        "Immunization" => &resource["occurrenceDateTime"],
        "DocumentReference" => &resource["date"],
        "Claim" | "ExplanationOfBenefit" => &resource["billablePeriod"]["start"],
        _ => return None,
    };
    value.as_str().map(|v| &v[..10])
}

fn subject(resource: &Value) -> Option<&str> {
    resource["subject"]["reference"]
        .as_str()
        .or_else(|| resource["patient"]["reference"].as_str())
        .or_else(|| resource["beneficiary"]["reference"].as_str())
}

/// Physiologically possible values per vital-sign LOINC code.
const POSSIBLE: &[(&str, f64, f64)] = &[
    ("8867-4", 20.0, 300.0),
    ("8310-5", 25.0, 45.0),
    ("9279-1", 4.0, 80.0),
    ("29463-7", 0.3, 400.0),
    ("8302-2", 20.0, 260.0),
];

fn implausible(observation: &Value) -> bool {
    let code = observation["code"]["coding"][0]["code"].as_str().unwrap_or_default();
    let Some(value) = observation["valueQuantity"]["value"].as_f64() else { return false };
    POSSIBLE.iter().any(|&(c, low, high)| c == code && !(low..=high).contains(&value))
}

fn sex_conflicts(population: &Population, condition: &Value) -> bool {
    let patient = population.resources.get(subject(condition).unwrap());
    let diagnoses = coding::extract::condition_diagnoses(condition, "Condition", Some(1));
    let facts = coding::extract::patient_facts(patient, condition["recordedDate"].as_str());
    coding::check(&diagnoses, &facts, coding::Setting::Clinical)
        .iter()
        .any(|e| e.id == coding::EditId::SexConflict)
}

#[test]
fn every_defect_class_is_planted_at_the_default_rates() {
    let population = population();
    let classes: BTreeSet<&str> = population.parameters["defects"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes.len(), 11);
    let found: BTreeSet<&str> =
        population.truth("defects.ndjson").iter().map(|d| d["class"].as_str().unwrap()).collect();
    assert_eq!(found, classes, "every class at least once in 1,000 patients");
    assert_eq!(population.truth("defects.ndjson").len(), 20, "2% of 1,000 patients");
}

#[test]
fn each_listed_defect_is_in_the_data_as_described() {
    let population = population();
    let icd = Icd10Cm::get();
    for defect in population.truth("defects.ndjson") {
        let resource = population.get(defect["resource"].as_str().unwrap());
        let now = &defect["defective"];
        let described = format!("{defect}");
        match defect["class"].as_str().unwrap() {
            "invalid-code" => {
                assert!(icd_codes(resource).contains(&now.as_str().unwrap().to_string()), "{described}");
                assert!(icd.lookup(now.as_str().unwrap()).is_none(), "{described}: the code exists");
                assert!(icd.lookup(defect["original"].as_str().unwrap()).is_some_and(|c| c.billable()));
            }
            "non-billable-code" => {
                let code = icd.lookup(now.as_str().unwrap()).expect("a header is a code");
                assert!(!code.billable(), "{described}");
                assert!(icd_codes(resource).contains(&now.as_str().unwrap().to_string()), "{described}");
            }
            "unspecified-code" => {
                assert!(icd.lookup(now.as_str().unwrap()).is_some_and(|c| c.billable()), "{described}");
                let diagnoses = coding::extract::condition_diagnoses(resource, "Condition", Some(1));
                let facts = coding::extract::patient_facts(
                    population.resources.get(subject(resource).unwrap()),
                    None,
                );
                let edits = coding::check(&diagnoses, &facts, coding::Setting::Clinical);
                assert!(
                    edits.iter().any(|e| e.id == coding::EditId::UnspecifiedWithSpecificDocumentation),
                    "{described}: the record documents the specific code: {edits:?}"
                );
            }
            "sex-inconsistent-code" => assert!(sex_conflicts(population, resource), "{described}"),
            "missing-diagnosis" => {
                assert_eq!(resource["class"]["code"], "IMP");
                assert!(resource.get("diagnosis").is_none(), "{described}");
            }
            "missing-discharge-disposition" => {
                assert_eq!(resource["class"]["code"], "IMP");
                assert!(resource["hospitalization"]["dischargeDisposition"].is_null(), "{described}");
            }
            "implausible-vital-sign" => {
                assert_eq!(resource["valueQuantity"]["value"], *now);
                assert!(implausible(resource), "{described}");
            }
            "end-before-start" => {
                assert!(
                    resource["period"]["end"].as_str() < resource["period"]["start"].as_str(),
                    "{described}"
                )
            }
            "event-after-death" => {
                let death = &resource["deceasedDateTime"].as_str().unwrap()[..10];
                assert_eq!(resource["deceasedDateTime"], *now);
                let patient = defect["resource"].as_str().unwrap();
                let after: BTreeSet<String> = population
                    .resources
                    .iter()
                    .filter(|(_, r)| subject(r) == Some(patient) && event_day(r).is_some_and(|d| d > death))
                    .map(|(k, _)| k.clone())
                    .collect();
                let listed: BTreeSet<String> = defect["related"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect();
                assert!(!after.is_empty());
                assert_eq!(after, listed, "{described}: every event after death and nothing else");
            }
            "dangling-reference" => {
                let target = resource["encounter"]["reference"].as_str().unwrap();
                assert_eq!(target, now.as_str().unwrap());
                assert!(!population.resources.contains_key(target), "{described}");
            }
            "duplicate-identifier" => {
                let other = population.get(defect["related"][0].as_str().unwrap());
                assert_eq!(mrn(resource), mrn(other), "{described}");
                assert_eq!(mrn(resource), now.as_str());
            }
            other => panic!("unknown class {other}"),
        }
    }
}

/// Outside the listed defects, the data has none of them: what a data-quality report flags
/// beyond the list is a false positive.
#[test]
fn outside_the_listed_defects_the_data_is_clean() {
    let population = population();
    let icd = Icd10Cm::get();
    let code_defects = population.listed(&["invalid-code", "non-billable-code"]);
    let unspecified = population.listed(&["unspecified-code"]);
    let sex = population.listed(&["sex-inconsistent-code"]);
    let dangling = population.listed(&["dangling-reference"]);
    let after_death = population.listed(&["event-after-death"]);
    let mut checked_codes = 0;
    for (key, resource) in &population.resources {
        for code in icd_codes(resource) {
            checked_codes += 1;
            let billable = icd.lookup(&code).is_some_and(|c| c.billable());
            assert!(billable || code_defects.contains(key), "{key}: {code} is not listed as a defect");
        }
        let mut targets = Vec::new();
        references(resource, &mut targets);
        for target in targets {
            assert!(
                population.resources.contains_key(&target) || dangling.contains(key),
                "{key} refers to {target}, which is missing and not listed"
            );
        }
        if resource["resourceType"] == "Condition" && !sex.contains(key) {
            assert!(!sex_conflicts(population, resource), "{key}: sex conflict not listed");
        }
        if resource["resourceType"] == "Condition"
            && icd_codes(resource)
                .iter()
                .any(|c| ["M17.10", "S72.009A", "S52.509A", "C50.919"].contains(&c.as_str()))
        {
            assert!(unspecified.contains(key), "{key}: unspecified code not listed");
        }
    }
    assert!(checked_codes > 10_000);
    let listed_periods = population.listed(&["end-before-start"]);
    let no_diagnosis = population.listed(&["missing-diagnosis"]);
    let no_disposition = population.listed(&["missing-discharge-disposition"]);
    for encounter in population.of_type("Encounter") {
        let key = format!("Encounter/{}", encounter["id"].as_str().unwrap());
        let (start, end) = (encounter["period"]["start"].as_str(), encounter["period"]["end"].as_str());
        assert!(end >= start || listed_periods.contains(&key), "{key}");
        if encounter["class"]["code"] == "IMP" {
            assert!(encounter.get("diagnosis").is_some() || no_diagnosis.contains(&key), "{key}");
            assert!(
                !encounter["hospitalization"]["dischargeDisposition"].is_null()
                    || no_disposition.contains(&key),
                "{key}"
            );
        }
    }
    let vitals = population.listed(&["implausible-vital-sign"]);
    let mut observations = 0;
    for observation in population.of_type("Observation") {
        observations += 1;
        let key = format!("Observation/{}", observation["id"].as_str().unwrap());
        assert!(!implausible(observation) || vitals.contains(&key), "{key}");
    }
    assert!(observations > 30_000);
    let borrowed = population.listed(&["duplicate-identifier"]);
    let mut by_mrn: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for patient in population.of_type("Patient") {
        by_mrn
            .entry(mrn(patient).unwrap())
            .or_default()
            .push(format!("Patient/{}", patient["id"].as_str().unwrap()));
    }
    for (number, holders) in by_mrn.iter().filter(|(_, h)| h.len() > 1) {
        assert!(holders.iter().all(|h| borrowed.contains(h)), "{number} shared by {holders:?}, not listed");
    }
    let deaths: BTreeMap<String, &str> = population
        .of_type("Patient")
        .filter_map(|p| {
            Some((format!("Patient/{}", p["id"].as_str()?), &p["deceasedDateTime"].as_str()?[..10]))
        })
        .collect();
    for (key, resource) in &population.resources {
        if let (Some(death), Some(day)) = (subject(resource).and_then(|s| deaths.get(s)), event_day(resource))
        {
            assert!(
                day <= *death || after_death.contains(key),
                "{key} on {day} is after its patient's death on {death}"
            );
        }
    }
}

fn one_keying_error(a: &str, b: &str) -> bool {
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
fn each_duplicate_pair_exists_and_differs_as_described() {
    let population = population();
    let pairs = population.truth("duplicates.ndjson");
    assert_eq!(pairs.len(), 10, "1% of 1,000 patients");
    let mut kinds = BTreeSet::new();
    for pair in pairs {
        let original = population.get(pair["original"].as_str().unwrap());
        let duplicate = population.get(pair["duplicate"].as_str().unwrap());
        let errors: BTreeMap<&str, &Value> =
            pair["errors"].as_array().unwrap().iter().map(|e| (e["kind"].as_str().unwrap(), e)).collect();
        assert!(!errors.is_empty() && errors.len() <= 3);
        kinds.extend(errors.keys().copied());
        assert_eq!(original["gender"], duplicate["gender"]);
        assert_ne!(mrn(original), mrn(duplicate), "a new registration has a new record number");
        let family = |p: &Value| p["name"][0]["family"].as_str().unwrap().to_string();
        let given = |p: &Value| p["name"][0]["given"][0].as_str().unwrap().to_string();
        match (errors.get("family-typo"), errors.get("maiden-name")) {
            (Some(_), _) => assert!(one_keying_error(&family(original), &family(duplicate)), "{pair}"),
            (_, Some(_)) => assert_ne!(family(original), family(duplicate)),
            _ => assert_eq!(family(original), family(duplicate)),
        }
        match (errors.get("given-typo"), errors.get("nickname")) {
            (Some(_), _) => assert!(one_keying_error(&given(original), &given(duplicate)), "{pair}"),
            (_, Some(e)) => {
                assert_eq!(e["duplicate"].as_str().unwrap(), given(duplicate));
                assert_ne!(given(original), given(duplicate));
            }
            _ => assert_eq!(given(original), given(duplicate)),
        }
        let birth = |p: &Value| p["birthDate"].as_str().unwrap().to_string();
        if errors.contains_key("day-month-transposed") {
            let (o, d) = (birth(original), birth(duplicate));
            assert_eq!((&o[..4], &o[5..7], &o[8..10]), (&d[..4], &d[8..10], &d[5..7]), "{pair}");
            assert_ne!(o, d);
        } else {
            assert_eq!(birth(original), birth(duplicate));
        }
        if errors.contains_key("new-address") {
            assert_ne!(original["address"][0]["line"], duplicate["address"][0]["line"]);
        } else {
            assert_eq!(original["address"], duplicate["address"]);
        }
        if errors.contains_key("missing-ssn") {
            assert!(ssn(duplicate).is_none());
        } else {
            assert_eq!(ssn(original), ssn(duplicate));
        }
        for error in errors.values() {
            assert_ne!(error["original"], error["duplicate"]);
        }
        // The second registration has a visit of its own.
        let id = pair["duplicate"].as_str().unwrap();
        assert!(population.of_type("Encounter").any(|e| e["subject"]["reference"] == id));
    }
    assert!(kinds.len() >= 5, "a variety of registration errors: {kinds:?}");
}

#[test]
fn outbreak_cases_stand_out_in_their_city_and_window() {
    let population = population();
    let outbreaks = population.parameters["outbreaks"].as_array().unwrap();
    assert_eq!(outbreaks.len(), 2);
    let cases = population.truth("outbreak-cases.ndjson");
    for outbreak in outbreaks {
        let id = outbreak["id"].as_str().unwrap();
        let (city, code) = (outbreak["city"].as_str().unwrap(), outbreak["icd10cm"].as_str().unwrap());
        let (start, end) = (outbreak["start"].as_str().unwrap(), outbreak["end"].as_str().unwrap());
        let listed: Vec<&Value> = cases.iter().filter(|c| c["outbreak"] == id).collect();
        assert!(listed.len() >= 5, "{id}: {} cases", listed.len());
        for case in &listed {
            let encounter = population.get(case["encounter"].as_str().unwrap());
            let patient = population.get(case["patient"].as_str().unwrap());
            assert_eq!(encounter["subject"]["reference"], case["patient"]);
            assert_eq!(patient["address"][0]["city"], city);
            let day = &encounter["period"]["start"].as_str().unwrap()[..10];
            assert!((start..=end).contains(&day), "{case}");
            assert_eq!(encounter["reasonCode"][0]["coding"][0]["code"], code);
        }
        // Weekly cases of the syndrome in the city: the outbreak's weeks against the rest.
        let residents: BTreeSet<String> = population
            .of_type("Patient")
            .filter(|p| p["address"][0]["city"] == city)
            .map(|p| format!("Patient/{}", p["id"].as_str().unwrap()))
            .collect();
        let (mut inside, mut outside) = (0usize, 0usize);
        for encounter in population.of_type("Encounter") {
            if encounter["reasonCode"][0]["coding"][0]["code"] != code
                || !residents.contains(encounter["subject"]["reference"].as_str().unwrap())
            {
                continue;
            }
            let day = &encounter["period"]["start"].as_str().unwrap()[..10];
            if (start..=end).contains(&day) { inside += 1 } else { outside += 1 }
        }
        let weeks_of_record = 7.0 * 52.0;
        let inside_rate = inside as f64 / 4.0;
        let outside_rate = outside as f64 / (weeks_of_record - 4.0);
        assert!(
            inside_rate > 5.0 * outside_rate,
            "{id}: {inside_rate:.2}/week during, {outside_rate:.2}/week otherwise"
        );
    }
}

fn survival(population: &Population) -> (BTreeMap<&str, (f64, f64)>, usize) {
    // Exponential maximum likelihood per arm: deaths over person-time.
    let mut arms: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let members = population.truth("cohort.ndjson");
    for member in members {
        let entry = arms.entry(member["arm"].as_str().unwrap()).or_default();
        entry.0 += f64::from(u8::from(member["event"] == "death"));
        entry.1 += member["days"].as_f64().unwrap();
    }
    (arms, members.len())
}

#[test]
fn cohort_members_are_diagnosed_treated_and_die_as_listed() {
    let population = population();
    let members = population.truth("cohort.ndjson");
    assert!(members.len() >= 8, "{} members", members.len());
    for member in members {
        let patient_ref = member["patient"].as_str().unwrap();
        let patient = population.get(patient_ref);
        match member["event"].as_str().unwrap() {
            "death" => assert_eq!(patient["deceasedDateTime"], member["end"], "{member}"),
            _ => assert!(patient.get("deceasedDateTime").is_none(), "{member}"),
        }
        assert!(
            population
                .of_type("Condition")
                .any(|c| c["subject"]["reference"] == patient_ref
                    && icd_codes(c).contains(&"C34.90".to_string())),
            "{member}: no lung cancer on record"
        );
        let ordered: BTreeSet<&str> = population
            .of_type("MedicationRequest")
            .filter(|m| m["subject"]["reference"] == patient_ref)
            .filter_map(|m| m["medicationCodeableConcept"]["coding"][0]["code"].as_str())
            .collect();
        let regimen: &[&str] = if member["arm"] == "A" { &["40048", "56946"] } else { &["1547545"] };
        let other: &[&str] = if member["arm"] == "A" { &["1547545"] } else { &["40048", "56946"] };
        assert!(regimen.iter().all(|c| ordered.contains(c)), "{member}: {ordered:?}");
        assert!(!other.iter().any(|c| ordered.contains(c)), "{member}: {ordered:?}");
        // Treatment is ordered at the visit that ends at time zero.
        let visit_ends = population
            .of_type("Encounter")
            .filter(|e| e["subject"]["reference"] == patient_ref)
            .any(|e| e["period"]["end"] == member["diagnosed"]);
        assert!(visit_ends, "{member}");
    }
    let (arms, _) = survival(population);
    assert_eq!(arms.len(), 2, "both arms");
}

#[test]
fn survival_follows_the_planted_hazard_ratio() {
    let study = study();
    let (arms, members) = survival(study);
    let hazard = |arm: &str| arms[arm].0 / arms[arm].1;
    let ratio = hazard("B") / hazard("A");
    let planted = study.parameters["cohort"]["hazardRatio"].as_f64().unwrap();
    let standard_error = (1.0 / arms["A"].0 + 1.0 / arms["B"].0).sqrt();
    eprintln!("{members} members, deaths {:?}, hazard ratio {ratio:.3} (planted {planted})", arms);
    assert!(members > 300);
    assert!(
        (ratio.ln() - planted.ln()).abs() < 3.0 * standard_error,
        "estimated {ratio:.3}, planted {planted}"
    );
    let median = study.parameters["cohort"]["medianSurvivalDaysArmA"].as_f64().unwrap();
    let median_a = std::f64::consts::LN_2 / hazard("A");
    assert!((median_a / median - 1.0).abs() < 0.3, "median on A {median_a:.0} days, planted {median}");
}

#[test]
fn readmissions_are_listed_for_every_complete_window_and_follow_the_model() {
    for population in [population(), study()] {
        let stays = population.truth("readmissions.ndjson");
        let listed: BTreeSet<&str> = stays.iter().map(|s| s["index"].as_str().unwrap()).collect();
        let as_of = population.parameters["asOf"].as_str().unwrap();
        let mut by_patient: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for encounter in population.of_type("Encounter").filter(|e| e["class"]["code"] == "IMP") {
            by_patient
                .entry(encounter["subject"]["reference"].as_str().unwrap())
                .or_default()
                .push(encounter);
        }
        let day = |text: &str| -> i64 {
            let (y, m, d) = (
                text[..4].parse::<i64>().unwrap(),
                text[5..7].parse::<i64>().unwrap(),
                text[8..10].parse::<i64>().unwrap(),
            );
            // Days from a fixed origin, enough for differences.
            let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
            365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d
        };
        let mut expected_readmissions = 0.0;
        let mut variance = 0.0;
        let mut observed = 0.0;
        for stay in stays {
            let encounter = population.get(stay["index"].as_str().unwrap());
            assert_eq!(encounter["class"]["code"], "IMP");
            assert_eq!(encounter["period"]["end"], stay["discharged"]);
            let discharged = day(stay["discharged"].as_str().unwrap());
            let patient = stay["patient"].as_str().unwrap();
            let next = by_patient[patient]
                .iter()
                .map(|e| (day(e["period"]["start"].as_str().unwrap()), e))
                .filter(|(start, _)| *start >= discharged && (*start - discharged) <= 30)
                .find(|(_, e)| e["id"] != encounter["id"]);
            assert_eq!(next.is_some(), stay["readmitted"].as_bool().unwrap(), "{stay}");
            if let Some((_, readmission)) = next {
                assert_eq!(
                    stay["readmission"].as_str().unwrap(),
                    format!("Encounter/{}", readmission["id"].as_str().unwrap())
                );
            }
            if stay["modelled"] != false {
                let risk = stay["risk"].as_f64().unwrap();
                expected_readmissions += risk;
                variance += risk * (1.0 - risk);
                observed += f64::from(u8::from(stay["readmitted"] == true));
            }
        }
        // Every stay not ending in death with a complete window is listed.
        for encounters in by_patient.values() {
            for encounter in encounters {
                let end = encounter["period"]["end"].as_str().unwrap();
                let expired =
                    encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "exp";
                let complete = day(end) + 30 < day(as_of);
                let key = format!("Encounter/{}", encounter["id"].as_str().unwrap());
                if !expired && complete && encounter["period"]["start"].as_str() <= Some(end) {
                    let patient = encounter["subject"]["reference"].as_str().unwrap();
                    let died_within = population.get(patient)["deceasedDateTime"]
                        .as_str()
                        .is_some_and(|d| day(d) <= day(end) + 30);
                    assert!(listed.contains(key.as_str()) || died_within, "{key} is not listed");
                }
            }
        }
        eprintln!("{} index stays, {observed} readmitted, {expected_readmissions:.1} expected", stays.len());
        assert!(stays.len() > 100);
        assert!(
            (observed - expected_readmissions).abs() < 3.5 * variance.sqrt().max(1.0),
            "observed {observed}, modelled {expected_readmissions:.1}"
        );
    }
}

#[test]
fn practitioners_who_are_patients_share_name_sex_birth_date_and_staff_number() {
    let population = population();
    let employees = population.truth("employees.ndjson");
    assert_eq!(employees.len(), 14, "every third of 40 practitioners");
    for employee in employees {
        let practitioner = population.get(employee["practitioner"].as_str().unwrap());
        let patient = population.get(employee["patient"].as_str().unwrap());
        assert_eq!(practitioner["name"][0]["family"], patient["name"][0]["family"]);
        assert_eq!(practitioner["name"][0]["given"][0], patient["name"][0]["given"][0]);
        assert_eq!(practitioner["gender"], patient["gender"]);
        assert_eq!(practitioner["birthDate"], patient["birthDate"]);
        let staff_number = practitioner["identifier"][0]["value"].as_str().unwrap();
        assert_eq!(staff_number, employee["staffId"]);
        assert!(
            patient["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["value"] == staff_number && i["type"]["coding"][0]["code"] == "EI")
        );
    }
}

#[test]
fn a_clean_population_plants_nothing() {
    let dir = testkit::temp_dir("synth-clean");
    generate(&GenerateOptions { patients: 120, seed: 5, truth: TruthOptions::none() }, &dir, &|_| {})
        .unwrap();
    let population = load(&dir, None);
    for file in ["defects.ndjson", "duplicates.ndjson", "outbreak-cases.ndjson", "cohort.ndjson"] {
        assert!(population.truth(file).is_empty(), "{file}");
    }
    assert_eq!(population.of_type("Patient").count(), 120);
    assert_eq!(population.parameters["defects"]["rate"], 0.0);
}

#[test]
fn rates_out_of_range_are_refused() {
    let dir = testkit::temp_dir("synth-refused");
    for truth in [
        TruthOptions { defect_rate: 1.5, ..TruthOptions::default() },
        TruthOptions { attack_rate: -0.1, ..TruthOptions::default() },
        TruthOptions { hazard_ratio: 0.0, ..TruthOptions::default() },
        TruthOptions { outbreaks: 1000, ..TruthOptions::default() },
    ] {
        let error = generate(&GenerateOptions { patients: 5, seed: 1, truth }, &dir, &|_| {}).unwrap_err();
        assert!(!error.to_string().is_empty());
    }
}

/// Every generated resource passes the project's R4 validation, except the planted periods
/// that end before they start (invariant per-1), which validation is there to refuse.
#[test]
fn every_resource_passes_r4_validation_except_planted_bad_periods() {
    let population = population();
    let bad_periods = population.listed(&["end-before-start"]);
    assert!(!bad_periods.is_empty());
    let validator = validation::Validator::r4();
    let mut invalid = BTreeSet::new();
    for (key, resource) in &population.resources {
        let errors: Vec<String> = validator
            .validate(resource)
            .into_iter()
            .filter(|i| i.severity == fhir::Severity::Error)
            .map(|i| format!("{}: {}", i.expression.join(","), i.diagnostics))
            .collect();
        if !errors.is_empty() {
            assert!(bad_periods.contains(key), "{key}: {errors:?}");
            assert!(errors.iter().all(|e| e.contains("(per-1)")), "{key}: {errors:?}");
            invalid.insert(key.clone());
        }
    }
    assert_eq!(invalid, bad_periods);
}
