//! What the workflow tests share: instants from text, and a store to write a small record in.

#![allow(dead_code)]

use fhir::Resource;
use serde_json::Value;
use store::{PreparedResource, SqliteStore, Store, StoreOptions, WriteOp, WriteUnit};

/// The first instant (ms) of a dateTime.
pub fn at(text: &str) -> i64 {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).unwrap().lower_bound_millis()
}

/// Stores `resource` under its own id (a new version if it exists).
pub fn put(store: &dyn Store, resource: Value) {
    let prepared = PreparedResource::new(&Resource::from_value(resource).unwrap()).unwrap();
    store
        .submit(WriteUnit::single(WriteOp::Update { resource: prepared, if_match: None }))
        .wait_blocking()
        .unwrap();
}

/// An empty store in a directory of its own.
pub fn empty_store(name: &str) -> SqliteStore {
    SqliteStore::open(&testkit::temp_dir(name), StoreOptions::default()).unwrap()
}
