//! Searches over more matches than the planner materializes or sorts in memory: the index
//! walks must give the same answers, pages and links as the simple definitions below.

use chartroom_api::{Api, ApiConfig, Method, Request, Response};
use serde_json::{Value, json};

const OBSERVATIONS: usize = 6000;

/// The date of observation `i`, or none for every 7th: dates repeat (ties) and run backwards
/// and forwards through the years, so commit order and date order differ.
fn date_of(i: usize) -> Option<String> {
    if i % 7 == 3 {
        return None;
    }
    let day = (i * 7919) % 1500;
    let year = 2015 + day / 365;
    let day_of_year = day % 365;
    Some(format!("{year}-{:02}-{:02}", 1 + day_of_year / 31 % 12, 1 + day_of_year % 28))
}

/// 600 heart rates (a small set), 5,400 blood pressures (more than the planner materializes).
fn code_of(i: usize) -> &'static str {
    if i.is_multiple_of(10) { "8867-4" } else { "8480-6" }
}

struct Fixture {
    api: Api,
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with("search-large", ApiConfig::default())
    }

    fn with(name: &str, config: ApiConfig) -> Fixture {
        let dir = testkit::temp_dir(name);
        let store = testkit::open_store("search_large", &dir);
        let api = Api::new(store, config);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fixture = Fixture { api, runtime };
        // One transaction per 500, in order: commit order is index order.
        for chunk in (0..OBSERVATIONS).collect::<Vec<_>>().chunks(500) {
            let entries: Vec<Value> = chunk
                .iter()
                .map(|&i| {
                    let mut observation = json!({
                        "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": code_of(i)}]}
                    });
                    if let Some(date) = date_of(i) {
                        observation["effectiveDateTime"] = json!(date);
                    }
                    json!({"resource": observation, "request": {"method": "PUT", "url": format!("Observation/o{i}")}})
                })
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let response = fixture.send(Method::Post, "", "", Some(bundle));
            assert_eq!(response.status, 200, "{}", response.body_text());
        }
        fixture
    }

    fn send(&self, method: Method, path: &str, query: &str, body: Option<Value>) -> Response {
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            body: body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default(),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    fn get(&self, path_and_query: &str) -> Value {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let response = self.send(Method::Get, path, query, None);
        assert_eq!(response.status, 200, "{path_and_query}: {}", response.body_text());
        serde_json::from_slice(response.body.as_deref().unwrap()).unwrap()
    }

    /// Every page, following `next` (or `previous` when `backward`) from the first page.
    fn all_pages(&self, first: &str, relation: &str) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut pages = 0;
        let mut bundle = self.get(first);
        loop {
            pages += 1;
            ids.extend(page_ids(&bundle));
            let Some(next) = link(&bundle, relation) else { break };
            bundle = self.get(next.strip_prefix("http://test/fhir/").unwrap());
        }
        (ids, pages)
    }
}

fn page_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == relation)?["url"].as_str().map(str::to_string)
}

/// The expected order: by date (descending if asked), ties in commit order, undated last.
fn expected(filter: impl Fn(usize) -> bool, descending: bool) -> Vec<String> {
    let mut dated: Vec<(String, usize)> =
        (0..OBSERVATIONS).filter(|&i| filter(i)).filter_map(|i| date_of(i).map(|d| (d, i))).collect();
    dated.sort_by(|a, b| if descending { b.0.cmp(&a.0).then(a.1.cmp(&b.1)) } else { a.cmp(b) });
    let undated = (0..OBSERVATIONS).filter(|&i| filter(i) && date_of(i).is_none());
    dated.into_iter().map(|(_, i)| i).chain(undated).map(|i| format!("o{i}")).collect()
}

#[test]
fn large_sorted_and_unsorted_results_page_exactly() {
    let fixture = Fixture::new();

    // Unsorted: commit order, every match once, from a small set and from a streamed one.
    let (ids, pages) = fixture.all_pages("Observation?code=8867-4&_count=200", "next");
    let heart_rates: Vec<String> =
        (0..OBSERVATIONS).filter(|i| code_of(*i) == "8867-4").map(|i| format!("o{i}")).collect();
    assert_eq!(ids, heart_rates);
    assert_eq!(pages, heart_rates.len().div_ceil(200));
    let (ids, _) = fixture.all_pages("Observation?code=8480-6&_count=1000", "next");
    let pressures: Vec<String> =
        (0..OBSERVATIONS).filter(|i| code_of(*i) == "8480-6").map(|i| format!("o{i}")).collect();
    assert_eq!(ids, pressures);

    // Sorted, both directions, with and without a filter: the index walk.
    for descending in [false, true] {
        let sort = if descending { "-date" } else { "date" };
        let (ids, _) = fixture.all_pages(&format!("Observation?_sort={sort}&_count=500"), "next");
        assert_eq!(ids, expected(|_| true, descending), "_sort={sort}");
        let (ids, _) = fixture.all_pages(&format!("Observation?code=8480-6&_sort={sort}&_count=397"), "next");
        assert_eq!(ids, expected(|i| code_of(i) == "8480-6", descending), "code and _sort={sort}");
        // Small enough to sort in memory: the same order.
        let (ids, _) = fixture.all_pages(&format!("Observation?code=8867-4&_sort={sort}&_count=97"), "next");
        assert_eq!(ids, expected(|i| code_of(i) == "8867-4", descending), "in memory, _sort={sort}");
    }

    // Backward from the last page gives the same pages in reverse.
    let mut bundle = fixture.get("Observation?_sort=-date&_count=250");
    let mut forward = vec![page_ids(&bundle)];
    while let Some(next) = link(&bundle, "next") {
        bundle = fixture.get(next.strip_prefix("http://test/fhir/").unwrap());
        forward.push(page_ids(&bundle));
    }
    let mut backward = vec![page_ids(&bundle)];
    while let Some(previous) = link(&bundle, "previous") {
        bundle = fixture.get(previous.strip_prefix("http://test/fhir/").unwrap());
        backward.push(page_ids(&bundle));
    }
    backward.reverse();
    assert_eq!(backward, forward);

    // A date range over two filters, and _lastUpdated ranges, find exactly the matches.
    let (ids, _) = fixture.all_pages("Observation?date=ge2016-01-01&date=lt2017-01-01&_count=1000", "next");
    let in_2016: Vec<String> = (0..OBSERVATIONS)
        .filter(|&i| date_of(i).is_some_and(|d| d.starts_with("2016")))
        .map(|i| format!("o{i}"))
        .collect();
    assert_eq!(ids, in_2016);
    let total = fixture.get("Observation?_lastUpdated=gt2000-01-01&_lastUpdated=lt2999-01-01&_summary=count");
    assert_eq!(total["total"], OBSERVATIONS);

    // _total=accurate counts past the page.
    assert_eq!(fixture.get("Observation?code=8867-4&_count=1&_total=accurate")["total"], heart_rates.len());
}

/// `Bundle.total` is there by default up to the bound (on every page, sorted or not), always
/// for `_count=0` and `_summary=count`, and beyond the bound only when `_total` asks.
#[test]
fn totals_by_default_within_the_bound_and_always_when_asked() {
    let fixture = Fixture::with("search-totals", ApiConfig { total_bound: 1000, ..ApiConfig::default() });
    let heart_rates = (0..OBSERVATIONS).filter(|&i| code_of(i) == "8867-4").count();
    for search in [
        "Observation?code=8867-4",
        "Observation?code=8867-4&_sort=-date",
        "Observation?code=8867-4&_sort=_id",
    ] {
        let first = fixture.get(search);
        assert_eq!(first["total"], heart_rates, "{search}");
        let next = link(&first, "next").expect("a next page");
        let second = fixture.get(next.strip_prefix("http://test/fhir/").unwrap());
        assert_eq!(second["total"], heart_rates, "{search}, page 2");
    }
    // `_total=none`: left out where counting would cost anything (a sort done in memory has
    // counted already, and may say so).
    let none = fixture.get("Observation?code=8867-4&_total=none");
    assert!(none.get("total").is_none(), "{}", none["total"]);
    // 5,400 blood pressures are past the bound of 1,000.
    let past = fixture.get("Observation?code=8480-6");
    assert!(past.get("total").is_none(), "{}", past["total"]);
    assert_eq!(fixture.get("Observation?code=8480-6&_total=accurate")["total"], OBSERVATIONS - heart_rates);
    assert_eq!(fixture.get("Observation?code=8480-6&_total=estimate")["total"], OBSERVATIONS - heart_rates);
    // `_count=0` (how clients such as fhirpy count) and `_summary=count` always count.
    let counted = fixture.get("Observation?code=8480-6&_count=0");
    assert_eq!(counted["total"], OBSERVATIONS - heart_rates);
    assert_eq!(counted.get("entry").map(|e| e.as_array().unwrap().len()).unwrap_or(0), 0);
    assert_eq!(fixture.get("Observation?_summary=count")["total"], OBSERVATIONS);
    // A bad value is a 400 naming it.
    let bad = fixture.send(Method::Get, "Observation", "_total=some", None);
    assert_eq!(bad.status, 400, "{}", bad.body_text());
    assert!(bad.body_text().contains("_total"));
}
