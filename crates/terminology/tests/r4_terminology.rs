//! The embedded R4 terminology table: it is exactly what the generator derives from the
//! specification, it holds every code system and value set, and expanding its value sets gives
//! what HL7 published in `expansions.json`.

use std::collections::BTreeMap;

use chartroom_terminology::{ExpandRequest, NoResolver, Terminology};
use serde_json::Value;

fn load(dir: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(name)).expect("read definitions"))
        .expect("parse definitions")
}

fn resources<'a>(bundle: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(move |r| r["resourceType"] == kind)
}

#[test]
fn committed_table_matches_the_specification() {
    let Some(dir) = testkit::shared_dir("fhir-r4/definitions") else { return };
    let derived = chartroom_terminology::r4::derive::derive_table(
        &load(&dir, "valuesets.json"),
        &load(&dir, "v3-codesystems.json"),
        &load(&dir, "v2-tables.json"),
    );
    let committed = include_str!("../data/r4-terminology.tsv");
    assert!(
        derived == committed,
        "crates/terminology/data/r4-terminology.tsv is stale: run `cargo run -p chartroom-terminology --bin r4termgen`"
    );
}

#[test]
fn every_r4_code_system_and_value_set_is_built_in() {
    let terminology = Terminology::get();
    // valuesets.json 495 + v3-codesystems.json 143 + v2-tables.json 424, and ICD-10-CM.
    assert_eq!(terminology.code_system_count(), 495 + 143 + 424 + 1);
    // 672 + 216 + 428.
    assert_eq!(terminology.value_set_count(), 672 + 216 + 428);
    let tables = chartroom_terminology::r4::tables();
    let concepts: usize = tables.code_systems.iter().map(|cs| cs.concepts.len()).sum();
    assert_eq!(concepts, 20_731);
    assert!(terminology.code_system_urls().any(|u| u == "http://hl7.org/fhir/sid/icd-10-cm"));
    assert!(terminology.value_set_urls().any(|u| u == "http://hl7.org/fhir/ValueSet/administrative-gender"));

    let gender =
        tables.code_system("http://hl7.org/fhir/administrative-gender").expect("administrative-gender");
    let codes: Vec<&str> = gender.concepts.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["male", "female", "other", "unknown"]);
    assert_eq!(gender.version.as_deref(), Some("4.0.1"));
    assert_eq!(gender.case_sensitive, Some(true));

    // v3 ActReason: nesting plus `child` properties make a polyhierarchy; NOMATCH sits under
    // _ControlActNullificationRefusalReasonType by nesting and under _RefusalReasonCode by
    // property.
    let reason = tables.code_system("http://terminology.hl7.org/CodeSystem/v3-ActReason").expect("ActReason");
    let nomatch = reason.find("NOMATCH").expect("NOMATCH");
    let parents: Vec<&str> =
        reason.concept(nomatch).parents.iter().map(|&p| reason.concept(p).code.as_str()).collect();
    assert_eq!(parents, ["_ControlActNullificationRefusalReasonType", "_RefusalReasonCode"]);
    let abstract_root = reason.find("_ActAccommodationReason").expect("abstract root");
    assert!(reason.concept(abstract_root).is_abstract);

    // A v2 table with a deprecated code and Dutch designations.
    let fasting = tables.code_system("http://terminology.hl7.org/CodeSystem/v2-0916").expect("v2-0916");
    let fna = fasting.find("FNA").expect("FNA");
    assert!(fasting.concept(fna).is_deprecated);
}

/// Every concept of every code system comes back from the table with its code, display,
/// definition and nesting as the specification has them.
#[test]
fn rendered_code_systems_keep_the_specification_concepts() {
    let Some(dir) = testkit::shared_dir("fhir-r4/definitions") else { return };
    fn tree(concepts: &Value, out: &mut Vec<String>, depth: usize) {
        for concept in concepts.as_array().into_iter().flatten() {
            out.push(format!(
                "{depth}|{}|{}|{}",
                concept["code"].as_str().unwrap_or(""),
                concept["display"].as_str().unwrap_or(""),
                concept["definition"].as_str().unwrap_or("")
            ));
            tree(&concept["concept"], out, depth + 1);
        }
    }
    let terminology = Terminology::get();
    let mut compared = 0;
    for file in ["valuesets.json", "v3-codesystems.json", "v2-tables.json"] {
        let bundle = load(&dir, file);
        for source in resources(&bundle, "CodeSystem") {
            let url = source["url"].as_str().expect("url");
            let rendered =
                terminology.code_system_resource(url).unwrap_or_else(|| panic!("{url} is not built in"));
            let (mut expected, mut actual) = (Vec::new(), Vec::new());
            tree(&source["concept"], &mut expected, 0);
            tree(&rendered["concept"], &mut actual, 0);
            assert_eq!(expected, actual, "{url}");
            assert_eq!(source["content"], rendered["content"], "{url}");
            compared += 1;
        }
        for source in resources(&bundle, "ValueSet") {
            let url = source["url"].as_str().expect("url");
            let rendered =
                terminology.value_set_resource(url).unwrap_or_else(|| panic!("{url} is not built in"));
            let codes = |vs: &Value| -> Vec<String> {
                let mut out = Vec::new();
                for part in ["include", "exclude"] {
                    for set in vs["compose"][part].as_array().into_iter().flatten() {
                        for concept in set["concept"].as_array().into_iter().flatten() {
                            out.push(format!("{part} {} {}", set["system"], concept["code"]));
                        }
                        for filter in set["filter"].as_array().into_iter().flatten() {
                            out.push(format!(
                                "{part} {} {} {} {}",
                                set["system"], filter["property"], filter["op"], filter["value"]
                            ));
                        }
                        out.push(format!("{part} {} {}", set["system"], set["valueSet"]));
                    }
                }
                out
            };
            assert_eq!(codes(source), codes(&rendered), "{url}");
        }
    }
    assert_eq!(compared, 1062);
}

/// What one expansion compares as: `(system, code)` in order, with displays.
fn codes_of(expansion: &Value) -> Vec<(String, String, String)> {
    expansion["expansion"]["contains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("").to_owned();
            (text("system"), text("code"), text("display"))
        })
        .collect()
}

/// Value sets whose codes differ from HL7's published expansion, and why (sorted by URL).
const KNOWN_DIFFERENCES: [(&str, &str); 4] = [
    // HL7 cut the expansion at 1,000 codes (`limitedExpansion`); the value set lists 6,401.
    ("http://hl7.org/fhir/ValueSet/c80-doc-typecodes", "HL7's expansion is truncated"),
    // The v3 code systems state part of their hierarchy with the `child` property (ActCode
    // FF has child FFS besides its nested children). HL7's R4 expander followed nesting only;
    // here `child` is a parent-child link like nesting, so `is-a` reaches more codes.
    ("http://hl7.org/fhir/ValueSet/detectedissue-category", "is-a follows the child property"),
    // referencerange-meaning marks `type` and `endocrine` with its own property `abstract`
    // ("not for use as a real concept"); they are treated as notSelectable and left out.
    ("http://hl7.org/fhir/ValueSet/referencerange-meaning", "abstract concepts are not selectable"),
    ("http://terminology.hl7.org/ValueSet/v3-ActPharmacySupplyType", "is-a follows the child property"),
];

/// Expands every value set HL7 published an expansion for, where this server has all the
/// code systems involved, and compares the codes. Displays differ where HL7's server knew
/// SNOMED CT or LOINC displays that the value set does not state, or picked a translation.
#[test]
fn expansions_agree_with_those_hl7_published() {
    let Some(dir) = testkit::shared_dir("fhir-r4/definitions") else { return };
    let published = load(&dir, "expansions.json");
    let terminology = Terminology::get();
    let mut compared = 0;
    let mut same_codes = 0;
    let mut same_order_and_displays = 0;
    let mut not_comparable = 0;
    let mut differences: BTreeMap<String, String> = BTreeMap::new();
    for expected in resources(&published, "ValueSet") {
        let url = expected["url"].as_str().expect("url");
        let request =
            ExpandRequest { url: Some(url.to_owned()), count: Some(1_000_000), ..ExpandRequest::default() };
        let actual = match terminology.expand(&request, &NoResolver) {
            Ok(expansion) => expansion.to_value_set(),
            Err(_) => {
                not_comparable += 1;
                continue;
            }
        };
        compared += 1;
        let (want, got) = (codes_of(expected), codes_of(&actual));
        // HL7's expansion of c80-practice-codes repeats two codes; compare sets.
        let key = |v: &[(String, String, String)]| {
            let mut keys: Vec<(String, String)> = v.iter().map(|(s, c, _)| (s.clone(), c.clone())).collect();
            keys.sort();
            keys.dedup();
            keys
        };
        if key(&want) == key(&got) {
            same_codes += 1;
            if want == got {
                same_order_and_displays += 1;
            } else {
                let first = want.iter().zip(&got).find(|(w, g)| w != g);
                differences.insert(url.to_owned(), format!("order or display: first difference {first:?}"));
            }
        } else {
            let (want_keys, got_keys) = (key(&want), key(&got));
            let missing: Vec<_> = want_keys.iter().filter(|k| !got_keys.contains(k)).take(5).collect();
            let extra: Vec<_> = got_keys.iter().filter(|k| !want_keys.contains(k)).take(5).collect();
            differences.insert(
                url.to_owned(),
                format!("{} vs {} codes; missing {missing:?}; extra {extra:?}", want.len(), got.len()),
            );
        }
    }
    eprintln!(
        "expansions: {compared} compared ({not_comparable} need code systems this server lacks), \
         {same_codes} with the same codes, {same_order_and_displays} also in the same order with the same displays"
    );
    for (url, difference) in &differences {
        eprintln!("  {url}: {difference}");
    }
    assert!(compared >= 491, "only {compared} expansions compared");
    assert!(same_order_and_displays >= 470, "only {same_order_and_displays} identical expansions");
    let differing: Vec<&str> = differences
        .iter()
        .filter(|(_, d)| !d.starts_with("order or display"))
        .map(|(u, _)| u.as_str())
        .collect();
    let known: Vec<&str> = KNOWN_DIFFERENCES.iter().map(|(url, _)| *url).collect();
    assert_eq!(differing, known, "value sets whose codes differ from HL7's");
    assert_eq!(same_codes, compared - known.len());
}
