//! Derives the compact definition table (`data/r4-definitions.tsv`) from the specification's
//! definition bundles. Run by `cargo run -p chartroom-fhir --bin r4gen`; a test checks that the
//! committed table matches what this produces from `../shared/fhir-r4/definitions/`.

use std::fmt::Write as _;

use serde_json::Value;

/// Builds the table from `profiles-types.json` and `profiles-resources.json` (both Bundles).
pub fn derive_table(profiles_types: &Value, profiles_resources: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "# Compact FHIR R4 (4.0.1) definitions, derived from the HL7 definition bundles (CC0).\n\
         # Regenerate with `cargo run -p chartroom-fhir --bin r4gen`; see PROVENANCE.md.\n\
         # T name kind base abstract url | E path min max types binding valueSet summary |\n\
         # C path key severity human expression | K compartment resourceType params\n",
    );
    for bundle in [profiles_types, profiles_resources] {
        for resource in entries(bundle) {
            if resource["resourceType"] == "StructureDefinition" {
                write_structure(&mut out, resource);
            }
        }
    }
    for resource in entries(profiles_resources) {
        if resource["resourceType"] == "CompartmentDefinition" {
            write_compartment(&mut out, resource);
        }
    }
    out
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Tabs and newlines would break the line format; the human texts are prose, so spaces do.
fn clean(value: &str) -> String {
    value.replace(['\t', '\n', '\r'], " ")
}

fn write_structure(out: &mut String, sd: &Value) {
    let name = text(&sd["id"]);
    let kind = text(&sd["kind"]);
    let base = text(&sd["baseDefinition"]).rsplit('/').next().unwrap_or("");
    let is_abstract = sd["abstract"].as_bool().unwrap_or(false);
    let url = text(&sd["url"]);
    let _ = writeln!(
        out,
        "T\t{name}\t{kind}\t{}\t{}\t{url}",
        if base.is_empty() { "-" } else { base },
        u8::from(is_abstract)
    );
    // A constraint profile (SimpleQuantity) keeps its base type's paths; file them under the
    // profile's own name so they do not collide with the base type's elements.
    let own_type = text(&sd["type"]);
    for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
        let raw_path = text(&element["path"]);
        let path = match raw_path.strip_prefix(own_type) {
            Some(rest) if own_type != name => format!("{name}{rest}"),
            _ => raw_path.to_string(),
        };
        let min = element["min"].as_u64().unwrap_or(0);
        let max = text(&element["max"]);
        let types = if let Some(reference) = element["contentReference"].as_str() {
            reference.to_string()
        } else {
            element_types(element)
        };
        let (strength, value_set) = match element.get("binding") {
            Some(binding) if binding["strength"] != "example" => {
                (text(&binding["strength"]).to_string(), text(&binding["valueSet"]).to_string())
            }
            _ => ("-".to_string(), "-".to_string()),
        };
        let summary = element["isSummary"].as_bool().unwrap_or(false);
        let _ = writeln!(
            out,
            "E\t{path}\t{min}\t{}\t{}\t{strength}\t{}\t{}",
            if max.is_empty() { "*" } else { max },
            if types.is_empty() { "-" } else { &types },
            if value_set.is_empty() { "-" } else { &value_set },
            u8::from(summary)
        );
        for constraint in element["constraint"].as_array().into_iter().flatten() {
            // Inherited constraints (ele-1 on every element, dom-* on every resource) are
            // written once, on the type that defines them.
            let source = text(&constraint["source"]);
            if !source.is_empty() && source != url {
                continue;
            }
            let expression = text(&constraint["expression"]);
            if expression.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "C\t{path}\t{}\t{}\t{}\t{}",
                text(&constraint["key"]),
                text(&constraint["severity"]),
                clean(text(&constraint["human"])),
                clean(expression)
            );
        }
    }
}

fn element_types(element: &Value) -> String {
    let mut parts = Vec::new();
    for ty in element["type"].as_array().into_iter().flatten() {
        let code = text(&ty["code"]);
        let targets: Vec<&str> = ty["targetProfile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .filter_map(|p| p.rsplit('/').next())
            .collect();
        // The FHIR type of `id` and primitive `value` elements is given as an extension on
        // the System type; the System type is what FHIRPath sees, so it is kept.
        if targets.is_empty() {
            parts.push(code.to_string());
        } else {
            parts.push(format!("{code}({})", targets.join("|")));
        }
    }
    parts.join(",")
}

fn write_compartment(out: &mut String, definition: &Value) {
    let compartment = text(&definition["code"]);
    for member in definition["resource"].as_array().into_iter().flatten() {
        let params: Vec<&str> =
            member["param"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
        if params.is_empty() {
            continue;
        }
        let _ = writeln!(out, "K\t{compartment}\t{}\t{}", text(&member["code"]), params.join(","));
    }
}

/// Builds the search parameter table from `search-parameters.json` (a Bundle).
///
/// `S id code type bases targets expression` for each parameter, then `K id component
/// expression` for each component of a composite.
pub fn derive_search_table(search_parameters: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "# FHIR R4 (4.0.1) SearchParameters, derived from search-parameters.json (CC0).\n\
         # Regenerate with `cargo run -p chartroom-fhir --bin r4gen`; see PROVENANCE.md.\n\
         # S id code type bases targets expression | K composite component-id expression\n",
    );
    for parameter in entries(search_parameters) {
        if parameter["resourceType"] != "SearchParameter" {
            continue;
        }
        let list = |field: &str| -> String {
            let items: Vec<&str> =
                parameter[field].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
            if items.is_empty() { "-".to_string() } else { items.join(",") }
        };
        let expression = clean(text(&parameter["expression"]));
        let _ = writeln!(
            out,
            "S\t{}\t{}\t{}\t{}\t{}\t{}",
            text(&parameter["id"]),
            text(&parameter["code"]),
            text(&parameter["type"]),
            list("base"),
            list("target"),
            if expression.is_empty() { "-" } else { &expression }
        );
        for component in parameter["component"].as_array().into_iter().flatten() {
            let definition = text(&component["definition"]);
            let _ = writeln!(
                out,
                "K\t{}\t{}\t{}",
                text(&parameter["id"]),
                definition.rsplit('/').next().unwrap_or(definition),
                clean(text(&component["expression"]))
            );
        }
    }
    out
}
