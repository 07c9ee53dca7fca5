//! Every operation the API offers, declared once: its name and definition, where it may be
//! invoked (system, type, instance; which types), its parameters with their types and
//! cardinality, whether it changes the record, the rights the access policy decides on, and
//! its handler. Dispatch, parameter checking (an undeclared parameter is refused), the
//! CapabilityStatement's `operation` lists, the OperationDefinitions
//! (`GET OperationDefinition/[name]`) and the policy's view of each operation all come from
//! [`OPERATIONS`].
//!
//! Adding an operation is one entry here and its handler.

use privacy::policy::{OperationAccess, OperationCatalog, PatientUse, Reads, Writes};
use serde_json::{Value as Json, json};

use super::{Inputs, Level};
use crate::access::Gate;
use crate::{Api, ApiError, Request, Response};

/// One call of an operation, as its handler gets it.
pub(crate) struct Call<'a> {
    pub request: &'a Request,
    pub gate: &'a Gate,
    pub level: Level<'a>,
    pub inputs: &'a Inputs,
    /// The POST body, when there is one (a Parameters resource, or a resource itself).
    pub body: Option<&'a Json>,
}

/// What an operation's handler does.
pub(crate) enum Handler {
    /// Answers from the record as it is.
    Reads(fn(&Api, &Call<'_>) -> Result<Response, ApiError>),
    /// Plans a change of the record, which the API commits as one store transaction before
    /// the plan answers from what was written.
    Changes(fn(&Api, &Call<'_>) -> Result<Change, ApiError>),
    /// Gives an HL7 v2 message, which the API applies as a request of its own.
    Relays(fn(&Api, &Call<'_>) -> Result<String, ApiError>),
}

/// Makes a change's answer from what its writes stored.
pub(crate) type Answer =
    Box<dyn FnOnce(&Api, &Gate, Vec<store::Written>) -> Result<Response, ApiError> + Send>;

/// A planned change: the writes that commit together or not at all (none: a preview), and
/// the answer made from what they wrote.
pub(crate) struct Change {
    pub unit: Option<store::WriteUnit>,
    pub answer: Answer,
}

/// Where an operation may be invoked.
pub(crate) struct Levels {
    pub system: bool,
    /// Types it runs on at type level (`*`: any).
    pub types: &'static [&'static str],
    /// Types it runs on at instance level (`*`: any).
    pub instances: &'static [&'static str],
}

impl Levels {
    pub(crate) fn allows(&self, level: &Level<'_>) -> bool {
        let listed = |list: &[&str], t: &str| list.iter().any(|x| *x == "*" || *x == t);
        match level {
            Level::System => self.system,
            Level::Type(t) => listed(self.types, t),
            Level::Instance(t, _) => listed(self.instances, t),
        }
    }

    /// Where it runs, in words.
    pub(crate) fn describe(&self) -> String {
        let mut places = Vec::new();
        if self.system {
            places.push("the system level".to_string());
        }
        let mut types: Vec<&str> = self.types.iter().chain(self.instances).copied().collect();
        types.dedup();
        let mut seen = Vec::new();
        for t in types {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        if seen.contains(&"*") {
            places.push("any resource type".to_string());
        } else if !seen.is_empty() {
            places.push(seen.join(", "));
        }
        places.join(" and ")
    }

    /// Whether it runs on a type that is not an R4 resource type (SQL on FHIR's
    /// ViewDefinition).
    pub(crate) fn beyond_r4(&self) -> bool {
        self.types.iter().chain(self.instances).any(|t| *t != "*" && !fhir::definitions().is_resource_type(t))
    }

    /// Whether the operation runs on `resource_type` at type or instance level.
    pub(crate) fn on_type(&self, resource_type: &str) -> bool {
        self.types.iter().chain(self.instances).any(|t| *t == "*" || *t == resource_type)
    }
}

/// One declared parameter (an input; outputs are described by each handler's answer).
pub(crate) struct Parameter {
    pub name: &'static str,
    /// Its FHIR type (`string`, `integer`, `boolean`, `Coding`, `Resource`, ...).
    pub kind: &'static str,
    pub min: u32,
    /// `None`: any number.
    pub max: Option<u32>,
    pub documentation: &'static str,
}

const fn one(name: &'static str, kind: &'static str, documentation: &'static str) -> Parameter {
    Parameter { name, kind, min: 0, max: Some(1), documentation }
}

const fn many(name: &'static str, kind: &'static str, documentation: &'static str) -> Parameter {
    Parameter { name, kind, min: 0, max: None, documentation }
}

/// Where an operation's definition is published.
pub(crate) enum Definition {
    /// A definition of the FHIR specification or an implementation guide, by canonical URL.
    Standard(&'static str),
    /// Chartroom's own, served at `[base]/OperationDefinition/[name]`.
    Own,
}

/// One operation.
pub(crate) struct Operation {
    pub name: &'static str,
    pub definition: Definition,
    pub documentation: &'static str,
    pub levels: Levels,
    pub parameters: &'static [Parameter],
    /// Whether it changes the record (then it is invoked with POST only).
    pub affects_state: bool,
    pub access: OperationAccess,
    pub handler: Handler,
}

/// The extension of a served OperationDefinition saying what the access policy decides on:
/// what it reads, whether it writes, whether a patient's token may call it, whether it reads
/// the audit trail.
pub(crate) const ACCESS_EXTENSION: &str = "urn:chartroom:operation-access";

/// Parameters every interaction takes.
const GLOBAL_PARAMETERS: &[&str] = &["_format", "_pretty"];

const fn reads(reads: Reads, patient: PatientUse) -> OperationAccess {
    OperationAccess { reads, writes: Writes::Nothing, patient, trail: false, steward: false }
}

/// The rights of an operation only the record's stewards run (`policy::stewards_records`).
const fn stewards(reads: Reads, writes: Writes) -> OperationAccess {
    OperationAccess { reads, writes, patient: PatientUse::Refused, trail: false, steward: true }
}

const CODING_TYPES: &[&str] = &["Encounter", "Condition", "Claim", "ExplanationOfBenefit"];

/// Every operation, in the order the CapabilityStatement lists them.
pub(crate) static OPERATIONS: &[Operation] = &[
    Operation {
        name: "everything",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/Patient-everything"),
        documentation: "The patient's whole record: the Patient, every resource of its compartment, and what they refer to; paged",
        levels: Levels { system: false, types: &[], instances: &["Patient"] },
        parameters: &[
            one("_since", "instant", "Only resources changed since"),
            one("_type", "string", "Only these resource types (comma-separated)"),
            one("_count", "integer", "Entries per page"),
            one("_cursor", "string", "Where a page starts (from a next link)"),
        ],
        affects_state: false,
        access: reads(Reads::Type("Patient"), PatientUse::OwnRecord),
        handler: Handler::Reads(|api, call| match call.level {
            Level::Instance(_, id) => api.everything(call.request, call.gate, id),
            _ => Err(ApiError::not_supported("$everything runs on a Patient: Patient/[id]/$everything")),
        }),
    },
    Operation {
        name: "disclosures",
        definition: Definition::Own,
        documentation: "The accounting of disclosures: every audited access to the patient's record, oldest first (the patient's own view names no one else)",
        levels: Levels { system: false, types: &[], instances: &["Patient"] },
        parameters: &[],
        affects_state: false,
        access: OperationAccess {
            reads: Reads::Nothing,
            writes: Writes::Nothing,
            patient: PatientUse::OwnRecord,
            trail: true,
            steward: false,
        },
        handler: Handler::Reads(|api, call| match &api.trail {
            Some(trail) => trail.disclosures(call.request, &call.level, call.gate),
            None => {
                Err(ApiError::not_supported("$disclosures needs the audit trail; this server keeps none"))
            }
        }),
    },
    Operation {
        name: "export",
        definition: Definition::Standard("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"),
        documentation: "Bulk export as NDJSON files (Prefer: respond-async); poll $export-status/JOB",
        levels: Levels { system: true, types: &["Patient"], instances: &["Patient", "Group"] },
        parameters: &[
            one("_outputFormat", "string", "application/fhir+ndjson"),
            one("_since", "instant", "Only resources changed since"),
            one("_type", "string", "Only these resource types (comma-separated)"),
            one("patient", "string", "Only these patients (Patient/$export; comma-separated)"),
            one("_elements", "string", "Not supported: refused"),
            many(
                "_typeFilter",
                "string",
                "Search queries (Type?parameters, comma-separated or repeated): a resource of a type named is exported only if it matches one of its type's queries",
            ),
            one("includeAssociatedData", "string", "Not supported: refused"),
            one(
                "_deidentify",
                "code",
                "Extension: safe-harbor (HIPAA Safe Harbor) or date-shift (per-patient secret date shift, keyed pseudonyms); the manifest's extension counts what was removed per identifier class",
            ),
        ],
        affects_state: false,
        access: reads(Reads::TypesAsked, PatientUse::OwnRecord),
        handler: Handler::Reads(|api, call| api.export_operation(call)),
    },
    Operation {
        name: "import",
        definition: Definition::Standard("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import"),
        documentation: "Bulk import of NDJSON files named by URL (http://, or file:// under the server's import directories), async (Prefer: respond-async); poll $import-status?job=JOB. Each resource is validated and stored as by chartroom import",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one("inputFormat", "code", "application/fhir+ndjson"),
            one("inputSource", "uri", "Where the data comes from (recorded in the manifest)"),
            one("storageDetail", "string", "Accepted and ignored: inputs are read by their URL's scheme"),
            many("input", "string", "A file: parts type (resource type) and url"),
        ],
        affects_state: true,
        access: stewards(Reads::Nothing, Writes::EveryType),
        handler: Handler::Reads(|api, call| api.import_kickoff(call.request, call.gate, call.body)),
    },
    Operation {
        name: "import-status",
        definition: Definition::Own,
        documentation: "The state of a bulk import: 202 with X-Progress while it runs, its manifest (resources stored and refused per input) when done",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[one("job", "string", "The job, from the kick-off's Content-Location")],
        affects_state: false,
        access: stewards(Reads::Nothing, Writes::Nothing),
        handler: Handler::Reads(|api, call| api.import_status(call.gate, call.inputs.get("job"))),
    },
    Operation {
        name: "hl7v2",
        definition: Definition::Own,
        documentation: "Applies one HL7 v2.5.1 message (ADT A01/A02/A03/A04/A08/A11/A13/A28/A31/A40, ORU^R01) as the MLLP listener does: mapped after the v2-to-FHIR guide, applied whole or not at all as the caller; answers its ACK (AA, or AE/AR with ERR segments)",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[one("message", "string", "The message, segments separated by carriage returns")],
        affects_state: true,
        access: stewards(Reads::Nothing, Writes::EveryType),
        handler: Handler::Relays(|api, call| api.hl7v2_operation(call)),
    },
    Operation {
        name: "lookup",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"),
        documentation: "A code's display, designations and properties",
        levels: Levels { system: false, types: &["CodeSystem"], instances: &["CodeSystem"] },
        parameters: &[
            one("code", "code", "The code"),
            one("system", "uri", "Its code system"),
            one("version", "string", "The code system's version"),
            one("coding", "Coding", "The code as a Coding"),
            one("displayLanguage", "code", "The language of the display"),
            many("property", "code", "Properties to return"),
        ],
        affects_state: false,
        access: reads(Reads::LevelType, PatientUse::Allowed),
        handler: Handler::Reads(|api, call| api.terminology_operation(call, "lookup")),
    },
    Operation {
        name: "validate-code",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"),
        documentation: "Whether a code is in a value set (or a code system)",
        levels: Levels {
            system: false,
            types: &["ValueSet", "CodeSystem"],
            instances: &["ValueSet", "CodeSystem"],
        },
        parameters: &[
            one("url", "uri", "The value set (or code system)"),
            one("valueSet", "Resource", "The value set itself"),
            one("valueSetVersion", "string", "The value set's version"),
            one("code", "code", "The code"),
            one("system", "uri", "Its code system"),
            one("systemVersion", "string", "The code system's version"),
            one("version", "string", "The code system's version (on a CodeSystem)"),
            one("display", "string", "A display to check"),
            one("coding", "Coding", "The code as a Coding"),
            one("codeableConcept", "CodeableConcept", "The code as a CodeableConcept"),
            one("abstract", "boolean", "Whether abstract codes count"),
            one("displayLanguage", "code", "The language of the display"),
        ],
        affects_state: false,
        access: reads(Reads::LevelType, PatientUse::Allowed),
        handler: Handler::Reads(|api, call| api.terminology_operation(call, "validate-code")),
    },
    Operation {
        name: "subsumes",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes"),
        documentation: "How two codes of a code system relate (equivalent, subsumes, subsumed-by, not-subsumed)",
        levels: Levels { system: false, types: &["CodeSystem"], instances: &["CodeSystem"] },
        parameters: &[
            one("codeA", "code", "The first code"),
            one("codeB", "code", "The second code"),
            one("system", "uri", "Their code system"),
            one("version", "string", "The code system's version"),
            one("codingA", "Coding", "The first code as a Coding"),
            one("codingB", "Coding", "The second code as a Coding"),
        ],
        affects_state: false,
        access: reads(Reads::LevelType, PatientUse::Allowed),
        handler: Handler::Reads(|api, call| api.terminology_operation(call, "subsumes")),
    },
    Operation {
        name: "expand",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/ValueSet-expand"),
        documentation: "A value set's codes, filtered and paged",
        levels: Levels { system: false, types: &["ValueSet"], instances: &["ValueSet"] },
        parameters: &[
            one("url", "uri", "The value set"),
            one("valueSet", "Resource", "The value set itself"),
            one("valueSetVersion", "string", "The value set's version"),
            one("filter", "string", "Text the codes' displays must match"),
            one("count", "integer", "Codes per page"),
            one("offset", "integer", "Where the page starts"),
            one("includeDesignations", "boolean", "Whether designations are returned"),
            one("includeDefinition", "boolean", "Whether the value set's definition is returned"),
            one("activeOnly", "boolean", "Only active codes"),
            one("excludeNotForUI", "boolean", "Leave out codes not for display"),
            one("displayLanguage", "code", "The language of the displays"),
        ],
        affects_state: false,
        access: reads(Reads::LevelType, PatientUse::Allowed),
        handler: Handler::Reads(|api, call| api.terminology_operation(call, "expand")),
    },
    Operation {
        name: "validate",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/Resource-validate"),
        documentation: "Validation against the R4 definitions, as an OperationOutcome",
        levels: Levels { system: true, types: &["*"], instances: &["*"] },
        parameters: &[
            one("resource", "Resource", "The resource to validate (or the body)"),
            one("mode", "code", "create, update or delete: validated the same"),
            one("profile", "uri", "Only the base R4 definitions are used"),
        ],
        affects_state: false,
        access: reads(Reads::LevelType, PatientUse::Allowed),
        handler: Handler::Reads(|api, call| {
            let resource = api.operation_resource(call.level, call.body)?;
            Ok(super::json_response(&validation::Validator::r4().outcome(&resource).to_json()))
        }),
    },
    Operation {
        name: "coding-edits",
        definition: Definition::Own,
        documentation: "ICD-10-CM coding edits of the record, as an OperationOutcome",
        levels: Levels { system: false, types: CODING_TYPES, instances: CODING_TYPES },
        parameters: &[one("resource", "Resource", "The record to check (or the body)")],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.coding_edits_operation(call)),
    },
    Operation {
        name: "coding-worklist",
        definition: Definition::Own,
        documentation: "Finished encounters needing a coder, oldest discharge first",
        levels: Levels { system: true, types: &["Encounter"], instances: &[] },
        parameters: &[one("_count", "integer", "Encounters to list")],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.coding_worklist(call.inputs, call.gate)),
    },
    Operation {
        name: "data-quality",
        definition: Definition::Own,
        documentation: "Data-quality checks over the whole record (conformance, completeness, plausibility), as a Parameters with one check each",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.data_quality(call.gate)),
    },
    Operation {
        name: "surveillance",
        definition: Definition::Own,
        documentation: "Outbreak early warning: every syndrome x place series of the record judged by EARS, CUSUM or Farrington (as R's surveillance package); a Bundle of MeasureReports, with a DetectedIssue per alarm",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one("syndrome", "string", "Only this syndrome (built-in or saved)"),
            one("by", "code", "day or week (ISO week; the default)"),
            one("place", "code", "city (the default), zip3 or state of the patient's home address"),
            one("method", "code", "ears-c1, ears-c2 (the default), ears-c3, cusum or farrington"),
            one("range", "string", "FROM:TO, the 1-based periods to judge"),
            one("frequency", "string", "Periods per year (Farrington)"),
            one("baseline", "string", "EARS: reference periods"),
            one("alpha", "string", "EARS and Farrington: one-sided level"),
            one("minSigma", "string", "EARS: floor on the standard deviation (1 over the record)"),
            one("k", "string", "CUSUM: reference value"),
            one("h", "string", "CUSUM: decision interval"),
            one("m", "string", "CUSUM: expected count"),
            one("trans", "string", "CUSUM: standard or rossi"),
            one("reset", "string", "CUSUM: reset after an alarm"),
            one("b", "string", "Farrington: years back"),
            one("w", "string", "Farrington: half-window"),
            one("reweight", "string", "Farrington: reweight past outbreaks"),
            one("weightsThreshold", "string", "Farrington: residual threshold for reweighting"),
            one("trend", "string", "Farrington: fit a time trend"),
            one("pThresholdTrend", "string", "Farrington: p-value to keep the trend"),
            one("limit54", "string", "Farrington: CASES,PERIODS"),
            one("powertrans", "string", "Farrington: 2/3, 1/2 or none"),
            one("noPeriods", "string", "Farrington: levels of the seasonal factor"),
            one("pastWeeksNotIncluded", "string", "Farrington: recent periods left out of the fit"),
            one("thresholdMethod", "string", "Farrington: delta, nbPlugin or muan"),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.surveillance(call.inputs, call.gate)),
    },
    Operation {
        name: "cohort-compare",
        definition: Definition::Own,
        documentation: "Two treatments compared over time in a retrospective cohort: exclusions, Kaplan-Meier per arm, log-rank test, Cox model; a Parameters",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[one("study", "string", "The study definition (its JSON as a string)")],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.cohort_compare(call.inputs, call.gate)),
    },
    Operation {
        name: "comorbidity",
        definition: Definition::Own,
        documentation: "Comorbidity indices from the ICD-10-CM diagnoses as of a date: Charlson (Quan's codes, Charlson's weights; with the age, the age-adjusted score and 10-year survival), Elixhauser (van Walraven's weights) and the Hospital Frailty Risk Score with its category; of one patient, or of every patient, highest Charlson first",
        levels: Levels { system: true, types: &[], instances: &["Patient"] },
        parameters: &[
            one("asOf", "date", "The date the diagnoses are counted up to (today by default)"),
            one("_count", "integer", "Patients listed at the system level (100 by default)"),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.comorbidity_operation(call)),
    },
    Operation {
        name: "high-risk",
        definition: Definition::Own,
        documentation: "Patients likely to be readmitted within 30 days: those discharged in the 30 days up to asOf, ranked by the readmission model chartroom risk train keeps, each with LACE and the three factors that add most to the risk",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one(
                "asOf",
                "date",
                "The last day of the 30-day window (the latest discharge on record by default)",
            ),
            one("_count", "integer", "Patients listed (20 by default)"),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.high_risk(call)),
    },
    Operation {
        name: "operations-report",
        definition: Definition::Own,
        documentation: "How resources were used over a period: daily census, admissions, discharges, average length of stay, bed-days, 30-day readmission rate and emergency visits, by month and by facility or service; a Parameters, or HTML with charts (_format=html)",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            Parameter { min: 1, ..one("from", "date", "The first day of the period") },
            Parameter { min: 1, ..one("to", "date", "The last day of the period") },
            one("by", "code", "facility (the default: the encounter's serviceProvider) or service"),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.operations_report(call)),
    },
    Operation {
        name: "billing-audit",
        definition: Definition::Own,
        documentation: "Accurate bills: every final Claim checked against the record it bills for (diagnoses billed but not documented, documented but not billed, procedures not billed, bills for cancelled encounters, duplicate bills, totals that do not add up, the coding edits), each finding with the claim, the rule and the evidence; and the revenue-cycle figures: discharged-not-final-billed count, charges and age, the coding backlog and its age",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one(
                "asOf",
                "date",
                "The day the revenue-cycle figures are taken at the end of (today by default)",
            ),
            one("billHold", "integer", "Days after discharge an unbilled account is normal (3 by default)"),
            one(
                "_count",
                "integer",
                "Findings and unbilled accounts listed at most (100 by default; all are counted)",
            ),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.billing_audit(call)),
    },
    Operation {
        name: "match",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/Patient-match"),
        documentation: "The Patients that may be the one given (Fellegi-Sunter over blocking keys), graded with match-grade and search.score",
        levels: Levels { system: false, types: &["Patient"], instances: &[] },
        parameters: &[
            one("resource", "Resource", "The Patient to find"),
            one("onlyCertainMatches", "boolean", "Only a single certain match"),
            one("count", "integer", "Matches to return at most"),
        ],
        affects_state: false,
        access: reads(Reads::Type("Patient"), PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.match_patients(call.inputs, call.gate)),
    },
    Operation {
        name: "duplicates",
        definition: Definition::Own,
        documentation: "The review queue of probable duplicate registrations: pairs of Patients with their match probability, proposal (link or review), each field's evidence and any decision taken",
        levels: Levels { system: false, types: &["Patient"], instances: &[] },
        parameters: &[
            one("status", "code", "waiting (the default: not yet decided), decided, or all"),
            one("_count", "integer", "Pairs to list at most (100 by default)"),
        ],
        affects_state: false,
        access: reads(Reads::Type("Patient"), PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.duplicate_pairs(call.inputs, call.gate)),
    },
    Operation {
        name: "decide-duplicate",
        definition: Definition::Own,
        documentation: "Records a review decision on a pair of Patients: same-person or different-people, by the caller, now; pairs decided different are not proposed again",
        levels: Levels { system: false, types: &["Patient"], instances: &[] },
        parameters: &[
            Parameter { min: 1, ..one("a", "Reference", "One Patient of the pair") },
            Parameter { min: 1, ..one("b", "Reference", "The other Patient") },
            Parameter { min: 1, ..one("decision", "code", "same-person or different-people") },
        ],
        affects_state: true,
        access: stewards(Reads::Type("Patient"), Writes::LevelType),
        handler: Handler::Reads(|api, call| api.decide_duplicate(call.inputs, call.gate)),
    },
    Operation {
        name: "merge",
        definition: Definition::Standard("http://hl7.org/fhir/OperationDefinition/Patient-merge"),
        documentation: "Merges a duplicate registration (source) into the surviving one (target), as FHIR R5's Patient $merge: every resource referring to the source is moved to the target as a new version, the two are linked (replaced-by, replaces), the source made inactive, all in one transaction recorded by a Provenance; preview shows what would change",
        levels: Levels { system: false, types: &["Patient"], instances: &[] },
        parameters: &[
            one("source-patient", "Reference", "The registration merged away"),
            many("source-patient-identifier", "Identifier", "The source, by identifiers it all carries"),
            one("target-patient", "Reference", "The surviving registration"),
            many("target-patient-identifier", "Identifier", "The target, by identifiers it all carries"),
            one(
                "result-patient",
                "Resource",
                "The target as it is to be after the merge (its id; the replaces link is added if missing)",
            ),
            one("preview", "boolean", "Only say what would change"),
        ],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::EveryType),
        handler: Handler::Changes(|api, call| api.merge_patients(call)),
    },
    Operation {
        name: "unmerge",
        definition: Definition::Own,
        documentation: "Undoes the latest merge of a source Patient: every resource the merge wrote gets its content from before the merge back, as a new version, in one transaction recorded by a Provenance; refused if any changed since",
        levels: Levels { system: false, types: &["Patient"], instances: &[] },
        parameters: &[
            Parameter {
                min: 1,
                ..one("source-patient", "Reference", "The registration that was merged away")
            },
            one("target-patient", "Reference", "The registration it was merged into (checked)"),
            one("preview", "boolean", "Only say what would change"),
        ],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::EveryType),
        handler: Handler::Changes(|api, call| api.unmerge_patients(call)),
    },
    Operation {
        name: "roi-request",
        definition: Definition::Own,
        documentation: "Release of information, intake: a Task (code release-of-information) naming the patient, the requester and their kind, the purpose, the scope (dates, record types) and the delivery; refused with every missing element when the disclosure needs the patient's authorization (45 CFR 164.508) and the named Consent lacks one; stored with its 30-day due date (164.524)",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[one(
            "resource",
            "Resource",
            "The request, a Task (or send the Task itself as the body)",
        )],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.roi_request(call)),
    },
    Operation {
        name: "roi-extend",
        definition: Definition::Own,
        documentation: "Release of information: the one 30-day extension of the request's clock, with its written reason, given before the first 30 days end (164.524(b)(2))",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[Parameter {
            min: 1,
            ..one("reason", "string", "Why more time is needed, as told to the requester")
        }],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.roi_extend(call)),
    },
    Operation {
        name: "roi-release",
        definition: Definition::Own,
        documentation: "Release of information: the Bundle of exactly the requested scope (the patient's own resources of the requested types and dates, nothing naming another patient); the authorization checked again; the request completed with the count and the fee; the disclosure (recipient, purpose, authorization) recorded in the audit trail, so $disclosures lists it",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.roi_release(call)),
    },
    Operation {
        name: "roi-overdue",
        definition: Definition::Own,
        documentation: "Release of information: the open requests past their due date (30 days, 60 with the extension), oldest due first",
        levels: Levels { system: true, types: &["Task"], instances: &[] },
        parameters: &[],
        affects_state: false,
        access: stewards(Reads::Type("Task"), Writes::Nothing),
        handler: Handler::Reads(|api, call| api.roi_overdue(call)),
    },
    Operation {
        name: "amend-request",
        definition: Definition::Own,
        documentation: "Amendments (45 CFR 164.526), intake: a Task (code amendment) for the Patient, focus the resource to amend (the patient's own), the requested change in the patient's words and whom to notify; stored with its 60-day due date",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[one(
            "resource",
            "Resource",
            "The request, a Task (or send the Task itself as the body)",
        )],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.amend_request(call)),
    },
    Operation {
        name: "amend-extend",
        definition: Definition::Own,
        documentation: "Amendments: the one 30-day extension of the 60-day clock, with its written reason, given before the 60 days end (164.526(b)(2))",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[Parameter {
            min: 1,
            ..one("reason", "string", "Why more time is needed, as told to the patient")
        }],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.amend_extend(call)),
    },
    Operation {
        name: "amend-decide",
        definition: Definition::Own,
        documentation: "Amendments: accept (the amended resource stored as a new version over the one read, a Provenance linking both versions and the request, the people to notify listed) or deny (on a ground of 164.526(a)(2), with a denial letter kept with the record)",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[
            Parameter { min: 1, ..one("decision", "code", "accept or deny") },
            one("resource", "Resource", "accept: the amended resource"),
            one(
                "basis",
                "code",
                "deny: not-created-here, not-designated-record-set, not-available-for-inspection or accurate-and-complete",
            ),
            one("explanation", "string", "deny: the reason in words, for the letter"),
            one(
                "contact",
                "string",
                "deny: whom the letter names for statements and complaints (name or title, and telephone number)",
            ),
        ],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::EveryType),
        handler: Handler::Changes(|api, call| api.amend_decide(call)),
    },
    Operation {
        name: "amend-disagree",
        definition: Definition::Own,
        documentation: "Amendments: the patient's statement of disagreement with a denial, kept with the record and carried, with the denial letter, in every later release of the disputed resource (164.526(d))",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[Parameter {
            min: 1,
            ..one("statement", "string", "The patient's statement, in their words")
        }],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::EveryType),
        handler: Handler::Changes(|api, call| api.amend_disagree(call)),
    },
    Operation {
        name: "hold-place",
        definition: Definition::Own,
        documentation: "Legal hold: places a hold (a Task with code legal-hold naming a patient, an encounter or a date range, and the matter); from then nothing it covers can be changed, deleted or purged, by any path",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[one("resource", "Resource", "The hold, a Task (or send the Task itself as the body)")],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.hold_place(call)),
    },
    Operation {
        name: "hold-release",
        definition: Definition::Own,
        documentation: "Legal hold: lifts a hold in force, with the reason",
        levels: Levels { system: false, types: &[], instances: &["Task"] },
        parameters: &[Parameter { min: 1, ..one("reason", "string", "Why the hold is lifted") }],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.hold_release(call)),
    },
    Operation {
        name: "retention-report",
        definition: Definition::Own,
        documentation: "Retention: what a purge now would destroy under a schedule (adult, minor, deceased; by state), patient by patient with the rule and the date retention ended, and what is kept under legal hold",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one("schedule", "code", "A built-in schedule: default (the default), CA, NY or TX"),
            one(
                "scheduleDefinition",
                "string",
                "The department's schedule as JSON: adultYears, majorityAge, minorYearsAfterMajority, deceasedYears",
            ),
            one("_count", "integer", "Patients listed at most (100 by default; all are counted)"),
        ],
        affects_state: false,
        access: stewards(Reads::EveryType, Writes::Nothing),
        handler: Handler::Reads(|api, call| api.retention_report(call)),
    },
    Operation {
        name: "retention-purge",
        definition: Definition::Own,
        documentation: "Retention: destroys every resource past retention and under no legal hold (all its versions), writing a certificate of destruction (what, when, under which rule, by whom) in the same transaction; the audit trail keeps its entries",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[
            one("schedule", "code", "A built-in schedule: default (the default), CA, NY or TX"),
            one("scheduleDefinition", "string", "The department's schedule as JSON"),
        ],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::EveryType),
        handler: Handler::Changes(|api, call| api.retention_purge(call)),
    },
    Operation {
        name: "amend-overdue",
        definition: Definition::Own,
        documentation: "Amendments: the open requests past their due date (60 days, 90 with the extension), oldest due first",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[],
        affects_state: false,
        access: stewards(Reads::Type("Task"), Writes::Nothing),
        handler: Handler::Reads(|api, call| api.amend_overdue(call)),
    },
    Operation {
        name: "completion-scan",
        definition: Definition::Own,
        documentation: "Record completion: runs the deficiency rules over finished encounters now (discharge summary 14 days after discharge, history and physical 24 hours after admission, operative report 24 hours after surgery, notes signed within 72 hours); opens a Task owned by the clinician who owes each new deficiency and completes those whose document has arrived",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[],
        affects_state: true,
        access: stewards(Reads::EveryType, Writes::LevelType),
        handler: Handler::Changes(|api, call| api.completion_scan(call)),
    },
    Operation {
        name: "completion-report",
        definition: Definition::Own,
        documentation: "Record completion: the delinquent-record report per clinician (open deficiencies by rule and by days past due, incomplete and delinquent records against the 30-day line), the chart completion rate over a period's discharges and the delinquency rate over the average monthly discharges, with the open deficiencies oldest first",
        levels: Levels { system: false, types: &["Task"], instances: &[] },
        parameters: &[
            one(
                "asOf",
                "dateTime",
                "The moment the report is taken at (now by default; a date means its end)",
            ),
            one("periodDays", "integer", "Days of discharges the completion rate is over (90 by default)"),
            one("_count", "integer", "Deficiencies listed at most (100 by default; all are counted)"),
        ],
        affects_state: false,
        access: stewards(Reads::EveryType, Writes::Nothing),
        handler: Handler::Reads(|api, call| api.completion_report(call)),
    },
    Operation {
        name: "run",
        definition: Definition::Standard("http://sql-on-fhir.org/OperationDefinition/$run"),
        documentation: "A SQL on FHIR view's rows (json, ndjson, csv or parquet)",
        levels: Levels { system: false, types: &["ViewDefinition"], instances: &["ViewDefinition"] },
        parameters: &[
            one("viewReference", "Reference", "A view by reference (ViewDefinition/NAME)"),
            one("viewResource", "Resource", "A view given with the call"),
            one("patient", "string", "Only this patient's part of the record"),
            one("_since", "instant", "Only resources changed since"),
            one("_limit", "integer", "At most this many rows"),
            many("resource", "Resource", "Resources to run the view over instead of the record"),
        ],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| {
            api.run_view_operation(
                call.level,
                call.inputs,
                call.body,
                call.gate,
                call.request.accept.as_deref(),
            )
        }),
    },
    Operation {
        name: "sql",
        definition: Definition::Own,
        documentation: "One read-only SQL statement over the SQL on FHIR views' tables (chartroom sql), as JSON rows",
        levels: Levels { system: true, types: &[], instances: &[] },
        parameters: &[one(
            "query",
            "string",
            "One SELECT statement over the views' tables (patients, encounters, ...)",
        )],
        affects_state: false,
        access: reads(Reads::EveryType, PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.sql_operation(call.inputs, call.gate)),
    },
    Operation {
        name: "suggest-codes",
        definition: Definition::Own,
        documentation: "Ranked billable ICD-10-CM codes for clinical text or a document's text",
        levels: Levels { system: true, types: &["DocumentReference"], instances: &["DocumentReference"] },
        parameters: &[
            one("text", "string", "Clinical text"),
            one("count", "integer", "Suggestions to return"),
            one("document", "Resource", "A DocumentReference whose text is read"),
        ],
        affects_state: false,
        access: reads(Reads::Type("DocumentReference"), PatientUse::Refused),
        handler: Handler::Reads(|api, call| api.suggest_codes(call.level, call.inputs, call.body, call.gate)),
    },
];

/// The operation named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|op| op.name == name)
}

/// The registry as the access policy reads it.
pub(crate) struct Registry;

impl OperationCatalog for Registry {
    fn access(&self, name: &str) -> Option<OperationAccess> {
        find(name).map(|op| op.access)
    }
}

impl Operation {
    /// Refuses an input the operation does not declare, one given more often than declared,
    /// and a simple value that is not of its declared type.
    pub(crate) fn check(&self, inputs: &Inputs) -> Result<(), ApiError> {
        for name in inputs.0.names() {
            if GLOBAL_PARAMETERS.contains(&name) {
                continue;
            }
            let Some(parameter) = self.parameters.iter().find(|p| p.name == name) else {
                let takes = if self.parameters.is_empty() {
                    "it takes no parameters".to_string()
                } else {
                    format!(
                        "it takes {}",
                        self.parameters.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(ApiError::bad_request(
                    fhir::IssueType::NotSupported,
                    format!("${} has no parameter '{name}': {takes}", self.name),
                ));
            };
            let given = inputs.0.all(name).count();
            if parameter.max.is_some_and(|max| given > max as usize) {
                return Err(ApiError::bad_request(
                    fhir::IssueType::Value,
                    format!("${}: the parameter {name} may appear only once", self.name),
                ));
            }
            for value in inputs.0.all(name) {
                let fhir::parameters::Input::Text(text) = value else { continue };
                let fits = match parameter.kind {
                    "integer" => text.trim().parse::<i64>().is_ok(),
                    "boolean" => matches!(text.as_str(), "true" | "false"),
                    _ => true,
                };
                if !fits {
                    return Err(ApiError::bad_request(
                        fhir::IssueType::Value,
                        format!("${}: {name} must be {} , got '{text}'", self.name, parameter.kind)
                            .replace(" ,", ","),
                    ));
                }
            }
        }
        if let Some(missing) =
            self.parameters.iter().find(|p| p.min > 0 && inputs.0.all(p.name).next().is_none())
        {
            return Err(ApiError::bad_request(
                fhir::IssueType::Required,
                format!("${} needs {}: {}", self.name, missing.name, missing.documentation),
            ));
        }
        Ok(())
    }

    /// Its entry in a CapabilityStatement.
    pub(crate) fn capability(&self, base: &str) -> Json {
        json!({
            "name": self.name,
            "definition": self.canonical(base),
            "documentation": self.documentation,
        })
    }

    fn canonical(&self, base: &str) -> String {
        match self.definition {
            Definition::Standard(url) => url.to_string(),
            Definition::Own => format!("{base}/OperationDefinition/{}", self.name),
        }
    }

    /// The OperationDefinition this server serves for it.
    pub(crate) fn definition_resource(&self, base: &str) -> Json {
        let mut resources: Vec<&str> =
            self.levels.types.iter().chain(self.levels.instances).copied().collect();
        resources.sort_unstable();
        resources.dedup();
        let resources: Vec<&str> = if resources.contains(&"*") { vec!["Resource"] } else { resources };
        let parameters: Vec<Json> = self
            .parameters
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "use": "in",
                    "min": p.min,
                    "max": p.max.map_or_else(|| "*".to_string(), |m| m.to_string()),
                    "documentation": p.documentation,
                    "type": p.kind,
                })
            })
            .collect();
        let mut definition = json!({
            "resourceType": "OperationDefinition",
            "id": self.name,
            "url": self.canonical(base),
            "name": self.name.replace('-', "_"),
            "status": "active",
            "kind": "operation",
            "description": self.documentation,
            "affectsState": self.affects_state,
            "code": self.name,
            "system": self.levels.system,
            "type": !self.levels.types.is_empty(),
            "instance": !self.levels.instances.is_empty(),
        });
        if !resources.is_empty() {
            definition["resource"] = json!(resources);
        }
        if !parameters.is_empty() {
            definition["parameter"] = Json::Array(parameters);
        }
        // Who may call it, as the access policy reads it.
        let reads = match self.access.reads {
            Reads::Nothing => "nothing".to_string(),
            Reads::LevelType => "the type it runs on".to_string(),
            Reads::Type(t) => t.to_string(),
            Reads::EveryType => "every type".to_string(),
            Reads::TypesAsked => "the types it exports (_type)".to_string(),
        };
        let writes = match self.access.writes {
            Writes::Nothing => "nothing",
            Writes::LevelType => "the type it runs on",
            Writes::EveryType => "every type",
        };
        let patient = match self.access.patient {
            PatientUse::Refused => "refused",
            PatientUse::Allowed => "allowed",
            PatientUse::OwnRecord => "own-record",
        };
        definition["extension"] = json!([{
            "url": ACCESS_EXTENSION,
            "extension": [
                { "url": "reads", "valueString": reads },
                { "url": "writes", "valueString": writes },
                { "url": "steward", "valueBoolean": self.access.steward },
                { "url": "patient", "valueCode": patient },
                { "url": "trail", "valueBoolean": self.access.trail },
            ]
        }]);
        definition
    }
}
