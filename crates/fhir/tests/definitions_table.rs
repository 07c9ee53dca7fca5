//! The embedded definition table is exactly what the generator derives from the
//! specification's definition bundles (so nobody edits it by hand, and a regeneration is
//! never forgotten).

#[test]
fn committed_table_matches_the_specification() {
    let Some(dir) = testkit::shared_dir("fhir-r4/definitions") else { return };
    let load = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).expect("read definitions"))
            .expect("parse definitions")
    };
    let derived = chartroom_fhir::definitions::derive::derive_table(
        &load("profiles-types.json"),
        &load("profiles-resources.json"),
    );
    let committed = include_str!("../data/r4-definitions.tsv");
    assert!(
        derived == committed,
        "crates/fhir/data/r4-definitions.tsv is stale: run `cargo run -p chartroom-fhir --bin r4gen`"
    );
}

#[test]
fn committed_search_parameter_table_matches_the_specification() {
    let Some(dir) = testkit::shared_dir("fhir-r4/definitions") else { return };
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("search-parameters.json")).expect("read"))
            .expect("parse");
    let derived = chartroom_fhir::definitions::derive::derive_search_table(&bundle);
    assert!(
        derived == include_str!("../data/r4-search-parameters.tsv"),
        "crates/fhir/data/r4-search-parameters.tsv is stale: run `cargo run -p chartroom-fhir --bin r4gen`"
    );
}
