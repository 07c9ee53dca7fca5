#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = validation::Validator::r4().validate(&json);
    let _ = fhir::Resource::from_slice(data);
});
