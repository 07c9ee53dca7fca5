//! `resolve()` for FHIRPath evaluated against the store: references are read from the store
//! and parsed into an arena that lives as long as the evaluation's results.

use fhir::ReferenceTarget;
use serde_json::Value as Json;
use store::Store;
use typed_arena::Arena;

/// Resolves `Type/id` (and `Type/id/_history/n`) references from a store.
pub struct StoreResolver<'a> {
    store: &'a dyn Store,
    arena: &'a Arena<Json>,
}

impl<'a> StoreResolver<'a> {
    /// A resolver reading from `store`, keeping what it resolves in `arena`.
    pub fn new(store: &'a dyn Store, arena: &'a Arena<Json>) -> Self {
        StoreResolver { store, arena }
    }
}

impl<'a> fhirpath::Resolver<'a> for StoreResolver<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Json> {
        let ReferenceTarget::Local { resource_type, id, version } = fhir::parse_reference(reference).ok()?
        else {
            return None;
        };
        let record = match version {
            Some(version) => self.store.vread(resource_type, id, version.parse().ok()?).ok()??,
            None => self.store.read(resource_type, id).ok()??,
        };
        let json = fhir::parse_json(record.body.as_deref()?).ok()?;
        Some(self.arena.alloc(json))
    }
}
