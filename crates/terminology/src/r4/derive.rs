//! Derives the compact terminology table (`data/r4-terminology.tsv`) from the specification's
//! terminology bundles. Run by `cargo run -p chartroom-terminology --bin r4termgen`; a test
//! checks that the committed table matches what this produces from
//! `../shared/fhir-r4/definitions/`.
//!
//! The same writer turns a CodeSystem or ValueSet supplied at run time into table lines, so
//! built-in and user-supplied resources go through one loader and behave identically.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;
use serde_json::Value;

const HEADER: &str = "\
# FHIR R4 (4.0.1) code systems and value sets, derived from HL7's valuesets.json,
# v3-codesystems.json and v2-tables.json (CC0). Regenerate with
# `cargo run -p chartroom-terminology --bin r4termgen`; see PROVENANCE.md.
# Tab-separated; \\t \\n \\r \\\\ are escaped; an empty field is an absent value.
# S id url version name title status content caseSensitive hierarchyMeaning valueSet supplements
# Q code type uri (a property the code system defines)
# C depth code display definition (a concept; depth gives the nesting, i.e. the hierarchy)
# K code (the preceding concept is also a parent of that code: property `child`)
# P code type value (another property of the preceding concept)
# D language use value (a designation of the preceding concept; use is system|code, or a
#   code of http://terminology.hl7.org/CodeSystem/designation-usage)
# V id url version name title status inactive (a value set)
# I system version | X system version (an include / exclude of its compose)
# c code display (a listed concept; no display when it repeats the code system's)
# f property op value (a filter) | v url (an imported value set)
";

/// The code system of most designation uses, written as just the code.
pub(crate) const DESIGNATION_USAGE: &str = "http://terminology.hl7.org/CodeSystem/designation-usage";

/// Builds the table from the three terminology bundles of the R4 definitions.
pub fn derive_table(valuesets: &Value, v3_code_systems: &Value, v2_tables: &Value) -> String {
    let bundles = [valuesets, v3_code_systems, v2_tables];
    let resources = || bundles.into_iter().flat_map(entries);
    let mut displays: FxHashMap<&str, FxHashMap<&str, &str>> = FxHashMap::default();
    for cs in resources().filter(|r| r["resourceType"] == "CodeSystem") {
        let map = displays.entry(text(&cs["url"])).or_default();
        collect_displays(&cs["concept"], map);
    }
    let mut out = String::from(HEADER);
    for cs in resources().filter(|r| r["resourceType"] == "CodeSystem") {
        write_code_system(&mut out, cs);
    }
    for vs in resources().filter(|r| r["resourceType"] == "ValueSet") {
        write_value_set(&mut out, vs, &|system, code, display| {
            displays.get(system).and_then(|m| m.get(code)) == Some(&display)
        });
    }
    out
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

fn collect_displays<'a>(concepts: &'a Value, map: &mut FxHashMap<&'a str, &'a str>) {
    for concept in concepts.as_array().into_iter().flatten() {
        if let (Some(code), Some(display)) = (concept["code"].as_str(), concept["display"].as_str()) {
            map.insert(code, display);
        }
        collect_displays(&concept["concept"], map);
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Escapes a field so that tabs and line breaks cannot break the line format.
pub(crate) fn escape(value: &str) -> String {
    if !value.contains(['\t', '\n', '\r', '\\']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        match ch {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
    out
}

fn field(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Appends one CodeSystem (header, declared properties, concepts in nesting order).
pub(crate) fn write_code_system(out: &mut String, cs: &Value) {
    let _ = writeln!(
        out,
        "S\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        field(&cs["id"]),
        field(&cs["url"]),
        field(&cs["version"]),
        field(&cs["name"]),
        field(&cs["title"]),
        field(&cs["status"]),
        field(&cs["content"]),
        field(&cs["caseSensitive"]),
        field(&cs["hierarchyMeaning"]),
        field(&cs["valueSet"]),
        field(&cs["supplements"]),
    );
    for property in cs["property"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "Q\t{}\t{}\t{}",
            field(&property["code"]),
            field(&property["type"]),
            field(&property["uri"])
        );
    }
    write_concepts(out, &cs["concept"], 0);
}

fn write_concepts(out: &mut String, concepts: &Value, depth: usize) {
    for concept in concepts.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "C\t{depth}\t{}\t{}\t{}",
            field(&concept["code"]),
            field(&concept["display"]),
            field(&concept["definition"])
        );
        for property in concept["property"].as_array().into_iter().flatten() {
            let code = text(&property["code"]);
            let Some((kind, value)) = property_value(property) else { continue };
            if code == "child" && kind == "code" {
                let _ = writeln!(out, "K\t{}", escape(&value));
            } else {
                let _ = writeln!(out, "P\t{}\t{kind}\t{}", escape(code), escape(&value));
            }
        }
        for designation in concept["designation"].as_array().into_iter().flatten() {
            let usage = &designation["use"];
            let usage = match text(&usage["system"]) {
                _ if !usage.is_object() => String::new(),
                DESIGNATION_USAGE => text(&usage["code"]).to_owned(),
                system => format!("{system}|{}", text(&usage["code"])),
            };
            let _ = writeln!(
                out,
                "D\t{}\t{}\t{}",
                field(&designation["language"]),
                escape(&usage),
                field(&designation["value"])
            );
        }
        write_concepts(out, &concept["concept"], depth + 1);
    }
}

/// The type and text of a concept property's value; a Coding is written as `system|code`.
fn property_value(property: &Value) -> Option<(&'static str, String)> {
    const SIMPLE: [(&str, &str); 6] = [
        ("valueCode", "code"),
        ("valueString", "string"),
        ("valueBoolean", "boolean"),
        ("valueDateTime", "dateTime"),
        ("valueInteger", "integer"),
        ("valueDecimal", "decimal"),
    ];
    for (key, kind) in SIMPLE {
        let value = &property[key];
        if !value.is_null() {
            let text = match value {
                Value::Bool(b) => b.to_string(),
                other => field(other),
            };
            return Some((kind, text));
        }
    }
    let coding = &property["valueCoding"];
    coding.is_object().then(|| ("Coding", format!("{}|{}", text(&coding["system"]), text(&coding["code"]))))
}

/// Appends one ValueSet and its compose. `is_system_display(system, code, display)` tells
/// whether a listed concept's display merely repeats the code system's, so that it is left out.
pub(crate) fn write_value_set(
    out: &mut String,
    vs: &Value,
    is_system_display: &dyn Fn(&str, &str, &str) -> bool,
) {
    let compose = &vs["compose"];
    let _ = writeln!(
        out,
        "V\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        field(&vs["id"]),
        field(&vs["url"]),
        field(&vs["version"]),
        field(&vs["name"]),
        field(&vs["title"]),
        field(&vs["status"]),
        field(&compose["inactive"]),
    );
    for (tag, key) in [("I", "include"), ("X", "exclude")] {
        for set in compose[key].as_array().into_iter().flatten() {
            let system = text(&set["system"]);
            let _ = writeln!(out, "{tag}\t{}\t{}", escape(system), field(&set["version"]));
            for concept in set["concept"].as_array().into_iter().flatten() {
                let code = text(&concept["code"]);
                let display = text(&concept["display"]);
                let display = if is_system_display(system, code, display) { "" } else { display };
                let _ = writeln!(out, "c\t{}\t{}", escape(code), escape(display));
            }
            for filter in set["filter"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "f\t{}\t{}\t{}",
                    field(&filter["property"]),
                    field(&filter["op"]),
                    field(&filter["value"])
                );
            }
            for url in set["valueSet"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "v\t{}", field(url));
            }
        }
    }
}
