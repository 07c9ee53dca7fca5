//! A Bundle entry's `request.url`, however it is spelled (relative, absolute on the base in
//! any case or with doubled slashes, percent-encoded), names the same route as the same
//! request sent alone: the property that keeps the access policy's view of an entry equal to
//! what the API runs. Generated over methods, paths, queries and base spellings.

use chartroom_fhir::rest::{Method, Route, RouteError, Target};

const BASE: &str = "http://host.example:8080/fhir";

/// The same base as a client might write it in an entry.
const BASE_SPELLINGS: &[&str] = &[
    "http://host.example:8080/fhir",
    "HTTP://HOST.EXAMPLE:8080/fhir",
    "http://host.example:8080/fhir/",
    "http://host.example:8080//fhir",
    "Http://Host.Example:8080/fhir//",
];

const SEGMENTS: &[&str] = &[
    "Patient",
    "Observation",
    "AuditEvent",
    "Encounter",
    "ViewDefinition",
    "Patent",
    "pa",
    "pat-000001",
    "a.b",
    "-",
    ".",
    "..",
    "%2E%2E",
    "%2e",
    "p%61",
    "%50atient",
    "x%2Fy",
    "%ZZ",
    "%C3%A9",
    "_history",
    "_search",
    "1",
    "$everything",
    "$export",
    "$export-status",
    "$export-file",
    "$run",
    "$validate",
    "$",
    "metadata",
    "Consent",
    "c1",
];

const QUERIES: &[&str] = &["", "identifier=a|b", "_elements=code", "name=x&_count=1", "_format=json"];

const METHODS: &[Method] =
    &[Method::Get, Method::Head, Method::Post, Method::Put, Method::Delete, Method::Patch, Method::Other];

/// A small deterministic generator (xorshift), so a failure is reproducible by its case.
struct Cases(u64);

impl Cases {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

fn comparable(result: Result<Route, RouteError>) -> Result<Route, u16> {
    result.map_err(|e| e.status)
}

/// The route the HTTP server parses for `METHOD /fhir/{path}?{query}`.
fn alone(method: Method, path: &str, query: &str) -> Result<Route, u16> {
    comparable(Target::from_path(path, query).and_then(|target| Route::parse(method, &target)))
}

/// The route a Bundle entry with `url` names.
fn entry(method: Method, url: &str) -> Result<Route, u16> {
    comparable(Target::parse(url, BASE).and_then(|target| Route::parse(method, &target)))
}

#[test]
fn an_entry_names_the_route_of_the_same_request_sent_alone() {
    let mut cases = Cases(0x5eed_cafe_f00d_beef);
    let mut checked = 0;
    for case in 0..20_000 {
        let depth = cases.next(5);
        let segments: Vec<&str> = (0..depth).map(|_| SEGMENTS[cases.next(SEGMENTS.len())]).collect();
        let path = segments.join("/");
        let query = QUERIES[cases.next(QUERIES.len())];
        let method = METHODS[cases.next(METHODS.len())];
        let sent_alone = alone(method, &path, query);
        let with_query = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let base = BASE_SPELLINGS[cases.next(BASE_SPELLINGS.len())];
        let spellings = [
            with_query.clone(),
            format!("/{with_query}"),
            format!("{base}/{with_query}"),
            format!("{}/{with_query}", base.trim_end_matches('/')),
            format!("{base}//{with_query}"),
        ];
        for url in spellings {
            assert_eq!(
                entry(method, &url),
                sent_alone,
                "case {case}: {method:?} '{url}' vs /fhir/{path}?{query}"
            );
            checked += 1;
        }
        // On another server, never a route.
        let elsewhere = format!("http://other.example/fhir/{with_query}");
        assert!(entry(method, &elsewhere).is_err(), "case {case}: {elsewhere}");
        let longer_base = format!("http://host.example:8080/fhirx/{with_query}");
        assert!(entry(method, &longer_base).is_err(), "case {case}: {longer_base}");
    }
    assert_eq!(checked, 100_000);
}

#[test]
fn writes_stay_writes_however_the_url_is_spelled() {
    for url in [
        "http://host.example:8080/fhir/Patient/pa",
        "HTTP://host.example:8080/fhir//Patient/pa",
        "http://HOST.example:8080/fhir/%50atient/pa",
        "//Patient/pa",
    ] {
        let route = entry(Method::Put, url).unwrap();
        assert!(route.writes(), "{url}: {route:?}");
        assert_eq!(route.instance(), Some(("Patient", "pa")), "{url}");
    }
    for url in ["Patient/..", "http://host.example:8080/fhir/Patient/%2E%2E", "Patient/x%2Fy"] {
        assert_eq!(entry(Method::Put, url), Err(400), "{url}");
    }
}
