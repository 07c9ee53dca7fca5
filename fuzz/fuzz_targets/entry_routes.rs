#![no_main]
//! Any text as a Bundle entry's `request.url`: it names the same route whether written
//! relative, on the base as given, or on the base spelled with other case and doubled
//! slashes, and the same as that path sent alone; and parsing never panics.
use fhir::rest::{Method, Route, Target};
use libfuzzer_sys::fuzz_target;

const BASE: &str = "http://host.example:8080/fhir";
const METHODS: &[Method] = &[Method::Get, Method::Head, Method::Post, Method::Put, Method::Delete, Method::Patch];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let method = METHODS[selector as usize % METHODS.len()];
    let route = |url: &str| Target::parse(url, BASE).and_then(|t| Route::parse(method, &t)).map_err(|e| e.status);
    let relative = text.trim_start_matches('/');
    // Only what names a path below the base; a URL of its own is another server's.
    if relative.contains("://") || relative.contains('#') {
        let _ = route(text);
        return;
    }
    let expected = route(relative);
    for url in [format!("{BASE}/{relative}"), format!("HTTP://HOST.example:8080//fhir//{relative}"), format!("/{relative}")] {
        assert_eq!(route(&url), expected, "{url}");
    }
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let alone = Target::from_path(path, query).and_then(|t| Route::parse(method, &t)).map_err(|e| e.status);
    assert_eq!(alone, expected, "{relative}");
});
