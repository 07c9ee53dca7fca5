//! Terminology for Chartroom: ICD-10-CM (the CDC's FY2026 tabular list) and the code systems and
//! value sets of FHIR R4, with the operations FHIR defines on them (`$lookup`,
//! `$validate-code`, `$expand`, `$subsumes`). Code suggestion from free text is
//! `chartroom-suggest`'s, over the ICD-10-CM model here.
//!
//! Everything here is in memory and built from tables embedded in the binary, so it works
//! without network access and without the `../shared` reference folder.

mod error;
mod expand;
pub mod icd10cm;
mod operations;
pub mod r4;
mod registry;

pub use error::Error;
pub use operations::{
    Coding, EXPANSION_LIMIT, ExpandRequest, Expansion, ExpansionEntry, LookupProperty, LookupRequest,
    LookupResult, SubsumesRequest, Subsumption, ValidateCodeRequest, ValidateCodeResult,
};
pub use registry::{NoResolver, Resolver, Terminology};
