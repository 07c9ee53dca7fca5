//! For every SearchParameter that has a value in the specification's examples, searching by
//! that value finds the example it came from.

use std::collections::BTreeMap;

use chartroom_api::{Api, ApiConfig, Method, Request};
use fhir::search_parameters::{SearchParamType, search_parameters};
use serde_json::Value;

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,").replace('|', "\\|").replace('$', "\\$")
}

fn instant(ms: i64) -> String {
    fhir::DateTime::from_epoch_millis(ms).to_string()
}

/// A search value that must match an indexed date range.
fn date_value(low: i64, high: i64) -> Option<String> {
    if low != i64::MIN && low > -62_135_596_800_000 {
        Some(format!("ge{}", instant(low)))
    } else if high != i64::MAX && high < 253_402_300_800_000 {
        Some(format!("le{}", instant(high - 1)))
    } else {
        None
    }
}

#[test]
fn every_indexed_example_value_finds_its_resource() {
    let Some(examples) = testkit::shared_dir("fhir-r4/examples") else { return };
    let dir = testkit::temp_dir("search-examples");
    let store = testkit::open_store("search_examples", &dir);
    let api = Api::new(store.clone(), ApiConfig { max_page_size: 1000, ..ApiConfig::default() });
    let options = chartroom_api::import::ImportOptions {
        bundles: chartroom_api::import::BundleMode::Store,
        base: "http://test/fhir".into(),
        // Four examples break reference-target rules; searching them is still tested.
        validation: chartroom_api::Validation::Skip,
        ..Default::default()
    };
    let report = chartroom_api::import::import(&api, &examples, &options, &|_| {}).unwrap();
    assert!(report.rejections.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();

    let params = search_parameters();
    let mut files: Vec<_> = std::fs::read_dir(&examples).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut searches = 0;
    let mut by_parameter: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in files {
        let json: Value = fhir::parse_json(&std::fs::read(&file).unwrap()).unwrap();
        let resource_type = json["resourceType"].as_str().unwrap().to_string();
        let id = json["id"].as_str().unwrap().to_string();
        let entries = store::index::extract_json(&resource_type, &json);
        let mut queries: Vec<(u32, String)> = Vec::new();
        queries.extend(entries.strings.iter().map(|(k, _, exact)| (*k, escape(exact))));
        queries.extend(entries.tokens.iter().map(|(k, system, code)| {
            (
                *k,
                if system.is_empty() { escape(code) } else { format!("{}|{}", escape(system), escape(code)) },
            )
        }));
        queries.extend(
            entries.references.iter().map(|(k, t, target)| {
                (*k, if t.is_empty() { escape(target) } else { format!("{t}/{target}") })
            }),
        );
        queries
            .extend(entries.dates.iter().filter_map(|(k, low, high)| Some((*k, date_value(*low, *high)?))));
        queries.extend(entries.numbers.iter().map(|(k, low, _)| (*k, format!("{low}"))));
        queries.extend(entries.quantities.iter().filter(|q| q.low.is_finite()).map(|q| {
            let unit = if q.code.is_empty() {
                String::new()
            } else {
                format!("|{}|{}", escape(&q.system), escape(&q.code))
            };
            (q.param, format!("{}{unit}", q.low))
        }));
        queries.extend(entries.uris.iter().map(|(k, uri)| (*k, escape(uri))));
        queries.extend(entries.composites.iter().filter_map(|c| {
            let first = if c.system.is_empty() {
                escape(&c.code)
            } else {
                format!("{}|{}", escape(&c.system), escape(&c.code))
            };
            let applied = params.by_key(c.param)?;
            let second_kind = params.by_id(params.parameter(applied).components.get(1)?.parameter)?.kind;
            let second = match second_kind {
                SearchParamType::Date => date_value(c.second_low as i64, c.second_high as i64)?,
                SearchParamType::Number => format!("{}", c.second_low),
                // Base-unit copies ('=' + dimension) are found through a unit search instead.
                SearchParamType::Quantity if c.second_system.starts_with('=') => return None,
                SearchParamType::Quantity if c.second_text.is_empty() => format!("{}", c.second_low),
                SearchParamType::Quantity => {
                    format!("{}|{}|{}", c.second_low, escape(&c.second_system), escape(&c.second_text))
                }
                SearchParamType::Token if !c.second_system.is_empty() => {
                    format!("{}|{}", escape(&c.second_system), escape(&c.second_text))
                }
                _ => escape(&c.second_text),
            };
            Some((c.param, format!("{first}${second}")))
        }));
        // Identifiers of references are searched with `:identifier`.
        let identifier_tokens: Vec<(u32, String)> = entries
            .tokens
            .iter()
            .filter(|(k, _, _)| {
                params.by_key(*k).is_some_and(|a| params.parameter(a).kind == SearchParamType::Reference)
            })
            .map(|(k, system, code)| (*k, format!("{}|{}", escape(system), escape(code))))
            .collect();
        queries.retain(|(k, v)| {
            !identifier_tokens.iter().any(|(ik, iv)| ik == k && (iv == v || iv.ends_with(&format!("|{v}"))))
        });
        let queries = queries
            .into_iter()
            .map(|(k, v)| (k, String::new(), v))
            .chain(identifier_tokens.into_iter().map(|(k, v)| (k, ":identifier".to_string(), v)));
        for (key, modifier, value) in queries {
            let Some(applied) = params.by_key(key) else { continue };
            let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let query = format!("{}{modifier}={encoded}&_id={id}&_count=1000", applied.code);
            let request = Request {
                method: Some(Method::Get),
                base: "http://test/fhir".into(),
                path: resource_type.clone(),
                query: query.clone(),
                prefer: Some("handling=strict".into()),
                ..Default::default()
            };
            let response = runtime.block_on(api.handle(&request));
            searches += 1;
            *by_parameter.entry(format!("{resource_type}.{}", applied.code)).or_default() += 1;
            let found = response.status == 200
                && serde_json::from_slice::<Value>(response.body.as_deref().unwrap_or(b"{}")).is_ok_and(
                    |bundle| {
                        bundle["entry"]
                            .as_array()
                            .is_some_and(|entries| entries.iter().any(|e| e["resource"]["id"] == id.as_str()))
                    },
                );
            if !found {
                failures.push(format!(
                    "{resource_type}/{id}: {resource_type}?{query} -> {} {}",
                    response.status,
                    &response.body_text().chars().take(200).collect::<String>()
                ));
            }
        }
    }
    println!(
        "{searches} searches over {} (type, parameter) pairs with values in the examples; {} failures",
        by_parameter.len(),
        failures.len()
    );
    for failure in failures.iter().take(60) {
        println!("  {failure}");
    }
    assert!(by_parameter.len() > 900, "only {} parameters had values", by_parameter.len());
    assert!(failures.is_empty(), "{} searches did not find their resource", failures.len());
}
