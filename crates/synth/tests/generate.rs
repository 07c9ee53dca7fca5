//! The generated population: deterministic, parseable, internally consistent, structurally
//! valid FHIR R4, coded with billable ICD-10-CM codes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use chartroom_synth::{self as synth, GenerateOptions, TruthOptions, generate};
use fhir::definitions::TypeKind;
use fhir::{DateTime, DateTimeKind, Resource, definitions};
use serde_json::Value;
use terminology::icd10cm::Icd10Cm;

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// The NDJSON files by name, and the ground-truth files as `ground-truth/NAME`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let read = |dir: &Path, prefix: &str| -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(dir)
            .expect("read output")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.is_file())
            .map(|path| {
                let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
                (name, std::fs::read(&path).expect("read file"))
            })
            .collect()
    };
    let mut all: BTreeMap<String, Vec<u8>> = read(dir, "").into_iter().collect();
    all.extend(read(&dir.join(synth::GROUND_TRUTH_DIR), "ground-truth/"));
    all
}

fn run(
    dir: &Path,
    patients: usize,
    seed: u64,
    truth: TruthOptions,
) -> (synth::Summary, BTreeMap<String, Vec<u8>>) {
    let reported = std::cell::Cell::new(0u64);
    let summary =
        generate(&GenerateOptions { patients, seed, truth }, dir, &|n| reported.set(reported.get() + n))
            .expect("generate");
    assert_eq!(reported.get(), summary.total(), "progress adds up to what was written");
    (summary, files(dir))
}

/// One population shared by the checks that only read it: the generator's clean output
/// (what is planted on purpose is checked against its listing in `ground_truth.rs`).
fn population() -> &'static (synth::Summary, BTreeMap<String, Vec<u8>>) {
    static POPULATION: OnceLock<(synth::Summary, BTreeMap<String, Vec<u8>>)> = OnceLock::new();
    POPULATION.get_or_init(|| run(&testkit::temp_dir("synth-population"), 200, 42, TruthOptions::none()))
}

fn resources() -> impl Iterator<Item = (String, Value)> {
    population().1.iter().filter(|(name, _)| !name.contains('/')).flat_map(|(name, bytes)| {
        let expected_type = name.strip_suffix(".ndjson").expect("ndjson file").to_string();
        std::str::from_utf8(bytes).expect("utf-8").lines().map(move |line| {
            let resource = Resource::from_slice(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(resource.resource_type(), expected_type, "a resource in the wrong file");
            (line.to_string(), resource.into_value())
        })
    })
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    let dir = testkit::temp_dir("synth-determinism");
    // With everything planted at high rates, so the ground truth is compared too.
    let truth = TruthOptions {
        defect_rate: 0.2,
        duplicate_rate: 0.1,
        cohort_rate: 0.3,
        attack_rate: 0.5,
        ..TruthOptions::default()
    };
    let (first_summary, first) = run(&dir.join("a"), 40, 7, truth.clone());
    let (_, again) = run(&dir.join("b"), 40, 7, truth.clone());
    let (_, other) = run(&dir.join("c"), 40, 8, truth.clone());
    assert!(
        first["ground-truth/defects.ndjson"].len() > 100 && first["ground-truth/cohort.ndjson"].len() > 10
    );
    assert_eq!(first, again, "same seed, same bytes");
    assert_ne!(first, other, "another seed, other data");
    assert_eq!(first_summary.patients, 40);
    assert!(first.contains_key("Patient.ndjson") && first.contains_key("Encounter.ndjson"));
    // A patient's record does not depend on how many come after it.
    let (_, fewer) = run(&dir.join("d"), 20, 7, truth);
    let first_lines = |files: &BTreeMap<String, Vec<u8>>, n: usize| {
        String::from_utf8_lossy(&files["Patient.ndjson"])
            .lines()
            .take(n)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(first_lines(&first, 20), first_lines(&fewer, 20));
}

#[test]
fn every_line_is_a_resource_with_a_unique_id_and_the_counts_match() {
    let (summary, files) = population();
    let mut ids = BTreeSet::new();
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    for (line, resource) in resources() {
        assert!(!line.contains('\n') && !line.contains(": "), "compact, one per line");
        let resource_type = resource["resourceType"].as_str().expect("resourceType").to_string();
        let id = resource["id"].as_str().expect("id");
        assert!(ids.insert(format!("{resource_type}/{id}")), "duplicate {resource_type}/{id}");
        *per_type.entry(resource_type).or_default() += 1;
    }
    for (resource_type, count) in &summary.resources {
        assert_eq!(per_type.get(resource_type).copied().unwrap_or(0), *count, "{resource_type}");
        assert!(files.contains_key(&format!("{resource_type}.ndjson")));
    }
    assert_eq!(summary.total(), ids.len() as u64);
}

#[test]
fn every_reference_resolves_to_a_generated_resource() {
    let all: Vec<(String, Value)> = resources().collect();
    let ids: BTreeSet<String> = all
        .iter()
        .map(|(_, r)| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    let mut checked = 0;
    for (line, value) in &all {
        let resource = Resource::from_value(value.clone()).expect("resource");
        resource.check_reference_formats().unwrap_or_else(|e| panic!("{e}: {line}"));
        for site in resource.references() {
            assert!(
                ids.contains(site.reference),
                "{} at {} does not resolve in {resource}",
                site.reference,
                site.path
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000, "{checked} references checked");
}

fn codings(value: &Value, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Object(object) => {
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (object.get("system"), object.get("code"))
            {
                let display = object.get("display").and_then(Value::as_str).unwrap_or_default();
                out.push((system.clone(), code.clone(), display.to_string()));
            }
            object.values().for_each(|v| codings(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| codings(v, out)),
        _ => {}
    }
}

#[test]
fn every_icd10cm_code_is_billable_in_fy2026_with_its_official_title() {
    let icd = Icd10Cm::get();
    for (code, display) in synth::icd10cm_codes() {
        let concept = icd.lookup(code).unwrap_or_else(|| panic!("{code} is not an ICD-10-CM code"));
        assert!(concept.billable(), "{code} is not billable");
        assert_eq!(concept.display(), display, "title of {code}");
    }
    let mut seen = BTreeSet::new();
    for (_, resource) in resources() {
        let mut found = Vec::new();
        codings(&resource, &mut found);
        for (system, code, _) in found {
            if system == ICD10CM && seen.insert(code.clone()) {
                assert!(icd.lookup(&code).is_some_and(|c| c.billable()), "{code} is not a billable code");
            }
        }
    }
    assert!(seen.len() >= 15, "a variety of diagnoses: {seen:?}");
}

/// The checks the API makes on a write, plus a walk of every element against the R4
/// definitions: known names, arrays where the cardinality says so, JSON types and lexical
/// forms of primitives, required elements, reference target types.
fn check_structure(value: &Value, root: &str, path: &str, problems: &mut Vec<String>) {
    let defs = definitions();
    let Value::Object(object) = value else {
        problems.push(format!("{path}: expected an object"));
        return;
    };
    for (name, child) in object {
        if path.find('.').is_none() && name == "resourceType" {
            continue;
        }
        let here = format!("{path}.{name}");
        let Some(resolved) = defs.child(root, name) else {
            problems.push(format!("{here}: not an element of {root}"));
            continue;
        };
        let element = resolved.element;
        let many = element.max != Some(1);
        let items: Vec<&Value> = match (child, many) {
            (Value::Array(items), true) => items.iter().collect(),
            (Value::Array(_), false) => {
                problems.push(format!("{here}: an array for a single element"));
                continue;
            }
            (_, true) => {
                problems.push(format!("{here}: a repeating element must be an array"));
                continue;
            }
            (item, false) => vec![item],
        };
        let type_code = resolved.type_code.unwrap_or("");
        for item in items {
            if type_code.starts_with("http://hl7.org/fhirpath/System.") {
                if !item.is_string() {
                    problems.push(format!("{here}: expected a string"));
                }
                continue;
            }
            let is_primitive = defs.type_def(type_code).is_some_and(|t| t.kind == TypeKind::PrimitiveType);
            if is_primitive {
                check_primitive(type_code, item, &here, problems);
                continue;
            }
            if type_code == "Reference"
                && let Some(Value::String(target)) = item.get("reference")
                && let Some((target_type, _)) = target.split_once('/')
            {
                let allowed = element.types.iter().find(|t| t.code == "Reference").map(|t| &t.target_types);
                if let Some(allowed) = allowed
                    && !allowed.is_empty()
                    && !allowed.iter().any(|t| *t == target_type || *t == "Resource")
                {
                    problems.push(format!("{here}: a {target_type} is not allowed, only {allowed:?}"));
                }
            }
            let child_root = defs.children_root(element, resolved.type_code);
            check_structure(item, child_root, &here, problems);
        }
    }
    // Required elements of this root.
    let type_name = root.split('.').next().unwrap_or(root);
    if let Some(type_def) = defs.type_def(type_name) {
        for element in &type_def.elements {
            let Some((parent, name)) = element.path.rsplit_once('.') else { continue };
            if parent != root || element.min == 0 {
                continue;
            }
            let present = match name.strip_suffix("[x]") {
                Some(stem) => object.keys().any(|k| k.starts_with(stem) && defs.child(root, k).is_some()),
                None => object.contains_key(name),
            };
            if !present {
                problems.push(format!("{path}: required {name} is missing"));
            }
        }
    }
}

fn check_primitive(type_code: &str, value: &Value, path: &str, problems: &mut Vec<String>) {
    let ok = match type_code {
        "boolean" => value.is_boolean(),
        "integer" | "unsignedInt" | "positiveInt" => value
            .as_i64()
            .is_some_and(|n| type_code == "integer" || n >= i64::from(type_code == "positiveInt")),
        "decimal" => value.is_number(),
        _ => match value.as_str() {
            None => false,
            Some(text) => match type_code {
                "date" => DateTime::parse(text, DateTimeKind::Date).is_ok(),
                "dateTime" => DateTime::parse(text, DateTimeKind::DateTime).is_ok(),
                "instant" => DateTime::parse(text, DateTimeKind::Instant).is_ok(),
                "code" => !text.is_empty() && text.trim() == text && !text.contains("  "),
                "id" => fhir::is_valid_id(text),
                "base64Binary" => {
                    text.len() % 4 == 0
                        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                }
                _ => !text.is_empty() && text.trim() == text,
            },
        },
    };
    if !ok {
        problems.push(format!("{path}: {value} is not a valid {type_code}"));
    }
}

#[test]
fn every_resource_is_structurally_valid_r4() {
    let mut problems = Vec::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    // The clean population, and one with everything planted at high rates: a planted defect
    // is wrong in content, never in structure.
    let truth =
        TruthOptions { defect_rate: 0.3, duplicate_rate: 0.2, cohort_rate: 0.3, ..TruthOptions::default() };
    let (_, planted) = run(&testkit::temp_dir("synth-planted"), 100, 3, truth);
    let planted = planted.into_iter().filter(|(name, _)| !name.contains('/')).flat_map(|(_, bytes)| {
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    });
    for value in resources().map(|(_, v)| v).chain(planted) {
        let value = &value;
        let resource_type = value["resourceType"].as_str().unwrap().to_string();
        let mut found = Vec::new();
        check_structure(value, &resource_type, &resource_type, &mut found);
        for problem in found {
            let seen = by_type.entry(problem.clone()).or_default();
            *seen += 1;
            if *seen == 1 {
                problems.push(problem);
            }
        }
    }
    assert!(problems.is_empty(), "{} kinds of problem:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_population_is_plausible() {
    let (summary, _) = population();
    let all: Vec<Value> = resources().map(|(_, v)| v).collect();
    let patients: Vec<&Value> = all.iter().filter(|r| r["resourceType"] == "Patient").collect();
    assert_eq!(patients.len(), 200);
    let female = patients.iter().filter(|p| p["gender"] == "female").count();
    assert!((70..=130).contains(&female), "{female} of 200 are female");
    let with_encounters: BTreeSet<&str> = all
        .iter()
        .filter(|r| r["resourceType"] == "Encounter")
        .filter_map(|e| e["subject"]["reference"].as_str())
        .collect();
    assert_eq!(with_encounters.len(), 200, "everyone has at least one encounter");
    let per_patient = summary.total() as f64 / 200.0;
    assert!((40.0..=170.0).contains(&per_patient), "{per_patient} resources per patient");
    for class in ["AMB", "EMER", "IMP"] {
        assert!(
            all.iter().any(|r| r["resourceType"] == "Encounter" && r["class"]["code"] == class),
            "no {class} encounter"
        );
    }
    assert!(patients.iter().any(|p| p.get("deceasedDateTime").is_some()), "some have died");
    assert!(
        patients
            .iter()
            .any(|p| p["name"].as_array().is_some_and(|n| n.iter().any(|n| n["use"] == "nickname"))),
        "some have nicknames"
    );
    for patient in &patients {
        let ssn = patient["identifier"][1]["value"].as_str().unwrap();
        assert!(ssn.starts_with("999-") && ssn.len() == 11, "{ssn}");
        let zip = patient["address"][0]["postalCode"].as_str().unwrap();
        assert!(zip.len() == 5 && zip.bytes().all(|b| b.is_ascii_digit()), "{zip}");
    }
    // Men have no breast cancer code for the female breast, women no prostate cancer.
    let gender: BTreeMap<String, &str> = patients
        .iter()
        .map(|p| (format!("Patient/{}", p["id"].as_str().unwrap()), p["gender"].as_str().unwrap()))
        .collect();
    for condition in all.iter().filter(|r| r["resourceType"] == "Condition") {
        let code = condition["code"]["coding"][0]["code"].as_str().unwrap();
        let sex = gender[condition["subject"]["reference"].as_str().unwrap()];
        let mismatch = code == "C61" && sex == "female" || code.starts_with("C50") && sex == "male";
        assert!(!mismatch, "{code} for a {sex} patient");
    }
}

#[test]
fn notes_mention_the_encounter_diagnoses_in_words() {
    let all: Vec<Value> = resources().map(|(_, v)| v).collect();
    let documents: Vec<&Value> = all.iter().filter(|r| r["resourceType"] == "DocumentReference").collect();
    let of_kind = |prefix: &str| -> Vec<&Value> {
        documents.iter().copied().filter(|d| d["id"].as_str().unwrap().starts_with(prefix)).collect()
    };
    let notes = of_kind("doc-");
    let encounters = all.iter().filter(|r| r["resourceType"] == "Encounter").count();
    assert_eq!(notes.len(), encounters, "one note per encounter");
    // Every inpatient stay has its history and physical, every surgical procedure its
    // operative report; every document is final and authenticated.
    let stays =
        all.iter().filter(|r| r["resourceType"] == "Encounter" && r["class"]["code"] == "IMP").count();
    assert_eq!(of_kind("hp-").len(), stays);
    let surgical = all
        .iter()
        .filter(|r| r["resourceType"] == "Procedure" && r["code"]["coding"][0]["code"] == "0SR9019")
        .count();
    assert_eq!(of_kind("op-").len(), surgical);
    assert_eq!(notes.len() + stays + surgical, documents.len());
    assert!(
        documents.iter().all(|d| d["docStatus"] == "final" && d["authenticator"]["reference"].is_string())
    );
    let decoded: Vec<String> = notes
        .iter()
        .map(|n| {
            let data = n["content"][0]["attachment"]["data"].as_str().unwrap();
            String::from_utf8(decode_base64(data)).expect("utf-8 text")
        })
        .collect();
    assert!(decoded.iter().all(|t| t.contains("Assessment and plan:")));
    assert!(decoded.iter().any(|t| t.contains("Denies")));
    assert!(
        decoded
            .iter()
            .any(|t| t.contains("T2DM") || t.contains("type 2 diabetes") || t.contains("Type 2 diabetes"))
    );
    assert!(
        decoded
            .iter()
            .any(|t| t.contains("hypertension") || t.contains("HTN") || t.contains("high blood pressure"))
    );
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .take_while(|&&c| c != b'=')
            .fold((0u32, 0u32), |(acc, k), &c| (acc | (u32::from(value(c)) << (18 - 6 * k)), k + 1));
        let bytes = [(n.0 >> 16) as u8, (n.0 >> 8) as u8, n.0 as u8];
        out.extend_from_slice(&bytes[..n.1.saturating_sub(1) as usize]);
    }
    out
}

#[test]
fn the_structural_check_finds_what_is_wrong() {
    let broken = serde_json::json!({
        "resourceType": "Encounter",
        "id": "bad",
        "class": [{ "code": "AMB" }],
        "period": { "start": "yesterday" },
        "diagnosis": { "condition": { "reference": "Patient/x" } },
        "colour": "blue",
    });
    let mut problems = Vec::new();
    check_structure(&broken, "Encounter", "Encounter", &mut problems);
    let text = problems.join("\n");
    for expected in [
        "Encounter: required status is missing",
        "Encounter.class: an array for a single element",
        "Encounter.period.start: \"yesterday\" is not a valid dateTime",
        "Encounter.diagnosis: a repeating element must be an array",
        "Encounter.colour: not an element of Encounter",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }
    let wrong_target = serde_json::json!({
        "resourceType": "Encounter", "id": "bad", "status": "finished",
        "class": { "code": "AMB" }, "subject": { "reference": "Practitioner/p" },
    });
    let mut problems = Vec::new();
    check_structure(&wrong_target, "Encounter", "Encounter", &mut problems);
    assert!(problems.iter().any(|p| p.contains("a Practitioner is not allowed")), "{problems:?}");
}

#[test]
fn codes_of_the_r4_code_systems_exist_with_their_displays() {
    let tables = terminology::r4::tables();
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    for (_, resource) in resources() {
        let mut found = Vec::new();
        codings(&resource, &mut found);
        for (system, code, display) in found {
            let Some(code_system) = tables.code_system(&system).filter(|cs| cs.is_complete()) else {
                continue;
            };
            if !checked.insert((system.clone(), code.clone(), display.clone())) {
                continue;
            }
            match code_system.find(&code).map(|id| code_system.concept(id)) {
                None => problems.push(format!("{code} is not a code of {system}")),
                Some(concept)
                    if !display.is_empty() && concept.display.as_deref() != Some(display.as_str()) =>
                {
                    problems.push(format!("{system}|{code}: '{display}' should be {:?}", concept.display));
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let systems: BTreeSet<&str> = checked.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(systems.len() >= 10, "{systems:?}");
}

/// The project's own coding edits (invalid codes, Excludes1 pairs, sex and age conflicts,
/// etiology/manifestation order) find no error on any claim.
#[test]
fn claims_pass_the_coding_edits() {
    let all: Vec<Value> = resources().map(|(_, v)| v).collect();
    let patients: BTreeMap<String, &Value> = all
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .map(|p| (format!("Patient/{}", p["id"].as_str().unwrap()), p))
        .collect();
    let mut errors = BTreeMap::new();
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    let mut claims = 0;
    for claim in all.iter().filter(|r| r["resourceType"] == "Claim") {
        claims += 1;
        let diagnoses = coding::extract::diagnoses(claim, &|_| None);
        let service = coding::extract::service_date(claim);
        let patient = coding::extract::patient_reference(claim).and_then(|r| patients.get(r).copied());
        let facts = coding::extract::patient_facts(patient, service.as_deref());
        for edit in coding::check(&diagnoses, &facts, coding::Setting::Claim) {
            let key = format!("{} {}: {}", edit.id.as_str(), edit.code, edit.message);
            if edit.severity == coding::Severity::Error {
                errors.entry(key).or_insert_with(|| claim["id"].as_str().unwrap().to_string());
            } else {
                *warnings.entry(format!("{} {}", edit.id.as_str(), edit.code)).or_default() += 1;
            }
        }
    }
    assert!(claims > 500);
    eprintln!("coding warnings over {claims} claims: {warnings:?}");
    assert!(errors.is_empty(), "{errors:#?}");
}
