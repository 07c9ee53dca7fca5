//! FHIRPath `resolve()` against the store.

use chartroom_api::{Arena, StoreResolver};
use fhir::Resource;
use fhirpath::{Environment, Expression, Value};
use store::{PreparedResource, WriteOp, WriteUnit};

#[test]
fn resolve_reads_references_from_the_store() {
    let dir = testkit::temp_dir("api-resolve");
    let store = testkit::open_store("resolve", &dir);
    let patient =
        Resource::from_value(serde_json::json!({"resourceType": "Patient", "id": "p1", "gender": "female"}))
            .unwrap();
    store
        .submit(WriteUnit::single(WriteOp::Update {
            resource: PreparedResource::new(&patient).unwrap(),
            if_match: None,
        }))
        .wait_blocking()
        .unwrap();
    let observation = serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/missing"}]});
    let arena = Arena::new();
    let resolver = StoreResolver::new(store.as_ref(), &arena);
    let env = Environment { resolver: Some(&resolver), ..Environment::default() };
    let gender = Expression::parse("subject.resolve().gender").unwrap().evaluate(&observation, &env).unwrap();
    assert_eq!(gender.iter().map(Value::display).collect::<Vec<_>>(), vec!["female"]);
    let versioned = Expression::parse("subject.reference.replace('p1', 'p1/_history/1')").unwrap();
    assert_eq!(versioned.evaluate(&observation, &env).unwrap()[0].display(), "Patient/p1/_history/1");
    let missing = Expression::parse("performer.resolve()").unwrap().evaluate(&observation, &env).unwrap();
    assert!(missing.is_empty());
}
