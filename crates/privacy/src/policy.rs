//! The access policy: the one place that decides what a caller may do and what they may see.
//!
//! Two questions, both pure functions, tested without HTTP (`tests/policy.rs`):
//! - [`authorize`]: may this identity run this [`Route`] at all? Role and SMART scopes, the
//!   patient context of a patient's token, the audit trail's rules, the operations a patient
//!   may use. Every route the API runs is asked, a Bundle's entries each on their own.
//! - [`sight`]: may this stored resource go into an answer? Decided on what the resource *is*
//!   ([`ResourceFacts`]: its type, its Patient compartment, the patients it names, its security
//!   labels, all computed from the stored JSON before `_elements` or `_summary` trims it),
//!   against the identity's scopes, the patient context, and the patients' consent
//!   directives (which a clinician may set aside by breaking the glass).
//!
//! The API applies these answers; nothing else decides access. Invariants:
//! - An identity with a patient context (role patient, or any `patient/` scope) that names
//!   no patient is refused everything.
//! - Each scope reaches as far as its context: what only `patient/` scopes (or a patient's
//!   token) open, the identity sees only when it is their Patient, or in their compartment
//!   and in no other patient's, or of a type outside the Patient compartment naming no other
//!   patient; what `user/` or `system/` scopes open it sees beyond.
//! - Consent directives are written only by the privacy office and administrators.
//! - A resource of a type the scopes do not open for reading is never shown, however it was
//!   reached (`_include`, `_revinclude`, `$everything`, a Bundle entry).
//! - AuditEvents are read only by the privacy office and administrators, and never written.

use std::collections::HashMap;

use fhir::rest::{Level, Route};
use serde_json::Value;

use crate::{Identity, Interaction, Role};

/// Who is asking, with what they declared about the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// Purpose of use (`X-Purpose-Of-Use`, a v3-ActReason code such as TREAT).
    pub purpose: Option<String>,
    /// Why a clinician breaks the glass (`X-Break-Glass-Reason`).
    pub break_glass: Option<String>,
}

impl Caller {
    pub fn new(identity: Identity) -> Caller {
        Caller { identity, purpose: None, break_glass: None }
    }

    /// Whether a clinician broke the glass: consent directives do not withhold anything from
    /// them, and the audit trail says so.
    pub fn glass_broken(&self) -> bool {
        self.identity.role == Role::Clinician
            && self.break_glass.as_deref().is_some_and(|r| !r.trim().is_empty())
    }

    /// Whether the patients' consent directives bind what this caller reads: the roles that
    /// work with records, unless the glass is broken. The privacy office and administrators
    /// answer for the record itself; a patient sees their own record.
    pub fn consent_bound(&self) -> bool {
        matches!(self.identity.role, Role::Clinician | Role::Coder | Role::HimTechnician | Role::Analyst)
            && !self.glass_broken()
    }
}

/// A refusal: the status (401 or 403) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal { status: 403, message: message.into() }
    }
}

/// What [`authorize`] allows a request, with what the API must apply to every resource the
/// request returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The patient whose record alone the route reaches: a patient's own token, or a route
    /// only `patient/` scopes permit.
    pub confined_to: Option<String>,
}

/// The patient in context: the one a patient's token is, or the one its `patient/` scopes
/// are limited to. `Ok(None)` when the identity has no patient context; refused when it
/// needs one (role `patient` or any `patient/` scope) but names no patient.
pub fn confinement(identity: &Identity) -> Result<Option<&str>, Refusal> {
    let needs_patient = identity.role == Role::Patient || identity.scopes.has_patient_scopes();
    match (needs_patient, identity.patient.as_deref()) {
        (false, _) => Ok(None),
        (true, Some(patient)) => Ok(Some(patient)),
        (true, None) => Err(Refusal::forbidden(
            "this token has a patient context (role patient or patient/ scopes) but names no patient, so it opens no record",
        )),
    }
}

/// How the scopes open an interaction on a type (`*`: on every type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// Beyond any one patient (`user/`, `system/`).
    Everyone,
    /// Within the patient in context only (`patient/`, or any scope of a patient's token).
    PatientInContext,
    No,
}

fn reach(identity: &Identity, interaction: Interaction, resource_type: &str) -> Reach {
    // A patient is a patient whatever scopes their token carries.
    if identity.role != Role::Patient && identity.scopes.permit_beyond_patient(interaction, resource_type) {
        return Reach::Everyone;
    }
    let in_context = if identity.role == Role::Patient {
        identity.scopes.permit_beyond_patient(interaction, resource_type)
            || identity.scopes.permit_in_patient_context(interaction, resource_type)
    } else {
        identity.scopes.permit_in_patient_context(interaction, resource_type)
    };
    if in_context && identity.patient.is_some() { Reach::PatientInContext } else { Reach::No }
}

/// Whether the identity may read resources of `resource_type` at all (in some patient's
/// context or beyond; AuditEvents only the privacy office, beyond any patient). Cheap:
/// asked of every resource an answer carries.
pub fn may_read_type(identity: &Identity, resource_type: &str) -> bool {
    if resource_type == "AuditEvent" {
        return reads_trail(identity);
    }
    reach(identity, Interaction::Read, resource_type) != Reach::No
}

/// Whether resources of `resource_type` reach the identity only within the patient in
/// context (so each must be that patient's).
pub fn read_in_patient_context_only(identity: &Identity, resource_type: &str) -> bool {
    reach(identity, Interaction::Read, resource_type) == Reach::PatientInContext
}

/// Whether the identity reads the audit trail: the privacy office and administrators, with a
/// scope beyond any one patient's record.
fn reads_trail(identity: &Identity) -> bool {
    identity.role.reads_audit() && reach(identity, Interaction::Read, "AuditEvent") == Reach::Everyone
}

/// Who keeps the register of patients whole: deciding whether two registrations are one
/// person, merging them and undoing a merge rewrite whose record every resource belongs to,
/// so they are the HIM department's (HIM technicians) and administrators', beyond any one
/// patient's context.
pub fn stewards_records(identity: &Identity) -> bool {
    matches!(identity.role, Role::HimTechnician | Role::Admin) && identity.patient.is_none()
}

/// Who may write patients' consent directives: the privacy office and administrators (a
/// directive binds the very roles that would otherwise be able to lift it).
fn writes_consent(identity: &Identity) -> bool {
    matches!(identity.role, Role::PrivacyOfficer | Role::Admin)
}

/// What an operation reads of the record, for the scopes it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing of anyone's record (terminology, the validation of a posted resource).
    Nothing,
    /// The type it is invoked on (nothing at system level).
    LevelType,
    /// Resources of this type; what else it returns is judged resource by resource.
    Type(&'static str),
    /// Every type: files and reports that cannot be filtered by type afterwards.
    EveryType,
    /// The types it writes out, which only the request's parameters tell (`$export`'s
    /// `_type`): decided by [`exportable_types`] once the API has read them.
    TypesAsked,
}

/// Whether a patient's token may run an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatientUse {
    Refused,
    Allowed,
    /// On their own record only: their Patient instance, or the Patient type (the API then
    /// confines it to them).
    OwnRecord,
}

/// What an operation changes of the record, for the scopes it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    Nothing,
    /// Resources of the type it is invoked on.
    LevelType,
    /// Resources of any type (a merge moves every resource of a record); each one written is
    /// also checked by [`may_update`].
    EveryType,
}

/// The rights an operation declares (in the API's operation registry): the policy decides on
/// them as on any route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationAccess {
    pub reads: Reads,
    /// What it changes of the record (and so needs update scopes for).
    pub writes: Writes,
    pub patient: PatientUse,
    /// Whether it reads the audit trail: the privacy office's, or a patient's own accounting.
    pub trail: bool,
    /// Whether only the record's stewards may run it ([`stewards_records`]).
    pub steward: bool,
}

impl OperationAccess {
    /// Whether it changes the record.
    pub fn writes_record(&self) -> bool {
        self.writes != Writes::Nothing
    }
}

/// Where the policy finds each operation's declared rights.
pub trait OperationCatalog {
    /// The rights of operation `name` (without `$`); `None` for an operation not offered.
    fn access(&self, name: &str) -> Option<OperationAccess>;
}

/// Whether `route` is open to a request with no token at all: discovery, which a client must
/// read before it can obtain one (the CapabilityStatement says how to authenticate). Such a
/// request runs as [`Identity::unauthenticated`], whose empty scopes open nothing else.
pub fn open_to_anyone(route: &Route) -> bool {
    matches!(route, Route::Capabilities)
}

/// Decides whether `identity` may run `route`; operations by the rights `operations`
/// declares for them.
pub fn authorize(
    identity: &Identity,
    route: &Route,
    operations: &dyn OperationCatalog,
) -> Result<Grant, Refusal> {
    let context = confinement(identity)?;
    if matches!(route, Route::Capabilities) {
        return Ok(Grant { confined_to: None });
    }
    if route.resource_type() == Some("AuditEvent") {
        // No one may write it, whatever their role; a patch, which only changes what exists,
        // is not an interaction AuditEvents have at all.
        if matches!(route, Route::Patch { .. } | Route::ConditionalPatch { .. }) {
            return Err(Refusal {
                status: 405,
                message: "audit entries are never changed: AuditEvents cannot be patched".into(),
            });
        }
        if route.writes() {
            return Err(Refusal::forbidden(
                "the audit trail is append-only: AuditEvents cannot be written through the API",
            ));
        }
        if !reads_trail(identity) {
            return Err(Refusal::forbidden(
                "only privacy officers and administrators, beyond any one patient's context, may read the audit trail",
            ));
        }
        return Ok(Grant { confined_to: None });
    }
    let access = match route {
        Route::Operation { name, .. } => operations.access(name),
        _ => None,
    };
    if let Route::Operation { level, .. } = route
        && access.is_some_and(|a| a.trail)
    {
        let own = matches!(level, Level::Instance(t, id) if t == "Patient" && context == Some(id.as_str()));
        if !reads_trail(identity) && !own {
            return Err(Refusal::forbidden(
                "an accounting of disclosures is for the patient and the privacy office",
            ));
        }
        // The patient's own accounting shows only what concerns them.
        return Ok(Grant { confined_to: (!reads_trail(identity)).then(|| id_of(level)) });
    }
    if access.is_some_and(|a| a.steward) && !stewards_records(identity) {
        let name = match route {
            Route::Operation { name, .. } => format!("${name}"),
            other => other.audit_subject(),
        };
        return Err(Refusal::forbidden(format!(
            "{name} is the HIM department's work (him-technician or admin role), not the {} role's",
            identity.role.as_str()
        )));
    }
    if route.resource_type() == Some("Consent") && route.writes() && !writes_consent(identity) {
        return Err(Refusal::forbidden(
            "patients' consent directives are recorded by the privacy office (privacy-officer or admin role)",
        ));
    }
    // What an export holds is decided once its types are read (`exportable_types`); a caller
    // who may read nothing at all is refused here already.
    if access.is_some_and(|a| a.reads == Reads::TypesAsked)
        && !identity.scopes.0.iter().any(|s| s.permissions.contains('r'))
    {
        return Err(Refusal::forbidden(format!(
            "the {} role's scopes permit reading no resource type",
            identity.role.as_str()
        )));
    }
    let mut confined = identity.role == Role::Patient;
    for (interaction, resource_type) in needs(route, access) {
        match reach(identity, interaction, resource_type.unwrap_or("*")) {
            Reach::Everyone => {}
            Reach::PatientInContext => confined = true,
            Reach::No => {
                return Err(Refusal::forbidden(format!(
                    "the {} role's scopes do not permit {} on {}",
                    identity.role.as_str(),
                    route.interaction_code(),
                    resource_type.unwrap_or("all resource types")
                )));
            }
        }
    }
    let confined_to = match (confined, context) {
        (true, Some(own)) => {
            confine(route, own, access)?;
            Some(own.to_string())
        }
        (true, None) => return Err(Refusal::forbidden("this token names no patient, so it opens no record")),
        (false, _) => None,
    };
    Ok(Grant { confined_to })
}

fn id_of(level: &Level) -> String {
    level.id().unwrap_or_default().to_string()
}

/// Whether `identity` may create resources of `resource_type` (an update of what does not
/// exist creates it, and needs this too).
pub fn may_create(identity: &Identity, resource_type: &str) -> bool {
    reach(identity, Interaction::Create, resource_type) != Reach::No
        && (resource_type != "Consent" || writes_consent(identity))
        && resource_type != "AuditEvent"
}

/// Whether `identity` may change resources of `resource_type` (what an operation writing
/// every type checks of each resource it writes).
pub fn may_update(identity: &Identity, resource_type: &str) -> bool {
    reach(identity, Interaction::Update, resource_type) != Reach::No
        && (resource_type != "Consent" || writes_consent(identity))
        && resource_type != "AuditEvent"
}

/// Whether a merge of duplicate registrations by `identity` may move resources of
/// `resource_type` from the source to the target: what they may change, and, for the record's
/// stewards, consent directives too (a directive left on the merged-away registration would no
/// longer protect the person's record: moving it keeps it binding). Never the audit trail.
pub fn may_move_in_merge(identity: &Identity, resource_type: &str) -> bool {
    may_update(identity, resource_type)
        || (resource_type == "Consent"
            && stewards_records(identity)
            && reach(identity, Interaction::Update, resource_type) != Reach::No)
}

/// Whether `identity` may search `resource_type` (a conditional create asks the store a
/// search's question, and its answer shows).
pub fn may_search(identity: &Identity, resource_type: &str) -> bool {
    reach(identity, Interaction::Search, resource_type) != Reach::No
}

/// The interactions a route needs the scopes to permit, each on a type (`None`: on every
/// type). A Bundle needs nothing of its own (each entry is authorized as a route), nor do an
/// export's status and files (their starter's alone: [`may_follow_export`]).
fn needs(route: &Route, access: Option<OperationAccess>) -> Vec<(Interaction, Option<&str>)> {
    use Interaction::*;
    match route {
        Route::Capabilities | Route::Bundle | Route::ExportStatus { .. } | Route::ExportFile { .. } => {
            Vec::new()
        }
        Route::Read { resource_type, .. } | Route::Vread { resource_type, .. } => {
            vec![(Read, Some(resource_type))]
        }
        Route::Search { resource_type, .. } => vec![(Search, Some(resource_type))],
        Route::SearchSystem | Route::History(Level::System) => vec![(Search, None)],
        Route::History(Level::Type(t)) => vec![(Search, Some(t))],
        Route::History(Level::Instance(t, _)) => vec![(Read, Some(t))],
        Route::Create { resource_type } => vec![(Create, Some(resource_type))],
        Route::Update { resource_type, .. } | Route::Patch { resource_type, .. } => {
            vec![(Update, Some(resource_type))]
        }
        // A conditional write searches first, and what it does shows what the search found.
        Route::ConditionalUpdate { resource_type } | Route::ConditionalPatch { resource_type } => {
            vec![(Update, Some(resource_type)), (Search, Some(resource_type))]
        }
        Route::Delete { resource_type, .. } => vec![(Delete, Some(resource_type))],
        Route::ConditionalDelete { resource_type } => {
            vec![(Delete, Some(resource_type)), (Search, Some(resource_type))]
        }
        // Views flatten resources of any type.
        Route::ViewDefinitions | Route::ViewDefinition { .. } => vec![(Search, None)],
        Route::Operation { level, .. } => {
            // An operation not offered reads at most its level's type (and is refused by the
            // API for not being offered).
            let access = access.unwrap_or(OperationAccess {
                reads: Reads::LevelType,
                writes: Writes::Nothing,
                patient: PatientUse::Refused,
                trail: false,
                steward: false,
            });
            let mut needs = match access.reads {
                Reads::Nothing => Vec::new(),
                Reads::LevelType => level.resource_type().map(|t| vec![(Read, Some(t))]).unwrap_or_default(),
                Reads::Type(t) => vec![(Read, Some(t))],
                Reads::EveryType => vec![(Read, None)],
                Reads::TypesAsked => Vec::new(),
            };
            match access.writes {
                Writes::Nothing => {}
                Writes::LevelType => needs.push((Update, level.resource_type())),
                Writes::EveryType => needs.push((Update, None)),
            }
            needs
        }
    }
}

/// The routes a patient's token may take.
fn confine(route: &Route, own: &str, access: Option<OperationAccess>) -> Result<(), Refusal> {
    let other_patient = || Refusal::forbidden("this token gives access to one patient's record only");
    if route.writes() {
        return Err(Refusal::forbidden("a patient's token reads; it does not write"));
    }
    if let Some(("Patient", id)) = route.instance()
        && id != own
    {
        return Err(other_patient());
    }
    match route {
        Route::History(Level::System | Level::Type(_)) => {
            Err(Refusal::forbidden("history across records is not available to a patient's token"))
        }
        Route::Search { compartment: Some((compartment, id)), .. }
            if compartment == "Patient" && id != own =>
        {
            Err(other_patient())
        }
        Route::Operation { name, level, .. } => match access.map(|a| (a.patient, a.writes_record())) {
            Some((_, true)) => Err(Refusal::forbidden("a patient's token reads; it does not write")),
            Some((PatientUse::Allowed, false)) => Ok(()),
            // Their Patient (another's is refused above), or the Patient type, which the API
            // confines to them.
            Some((PatientUse::OwnRecord, false)) => match level {
                Level::Type(t) | Level::Instance(t, _) if t == "Patient" => Ok(()),
                _ => Err(Refusal::forbidden(format!(
                    "${name} runs on a patient's token's own record only (Patient/[id]/${name})"
                ))),
            },
            Some((PatientUse::Refused, _)) | None => {
                Err(Refusal::forbidden(format!("${name} is not available to a patient's token")))
            }
        },
        _ => Ok(()),
    }
}

/// The types of `asked` an export by `identity` writes out. Types the request named
/// (`named`: `_type`) must each be open to the caller, or the export is refused naming the
/// first that is not; an export of everything holds every type the caller may read (Bulk
/// Data: only what the client is authorised to access). Refused when no type is left.
pub fn exportable_types(identity: &Identity, asked: &[String], named: bool) -> Result<Vec<String>, Refusal> {
    let mut open = Vec::with_capacity(asked.len());
    for resource_type in asked {
        if may_read_type(identity, resource_type) {
            open.push(resource_type.clone());
        } else if named {
            return Err(Refusal::forbidden(format!(
                "the {} role's scopes do not permit reading {resource_type}, which _type asks to export",
                identity.role.as_str()
            )));
        }
    }
    if open.is_empty() {
        return Err(Refusal::forbidden(format!(
            "the {} role's scopes open none of the resource types this export would hold",
            identity.role.as_str()
        )));
    }
    Ok(open)
}

/// Whether `identity` may receive a de-identified extract under `profile` (`$export`'s
/// `_deidentify`). Safe Harbor data is no longer protected health information: the roles that
/// serve research and the record's stewards receive it. A date-shifted extract keeps exact
/// intervals and stable pseudonyms, which Safe Harbor does not allow: it leaves only through
/// the privacy office (or an administrator), under a data use agreement or an expert's
/// determination. A patient's token gets neither (its own record is open to it whole).
pub fn may_receive_deidentified(identity: &Identity, profile: &str) -> Result<(), Refusal> {
    let allowed = identity.patient.is_none()
        && match profile {
            "safe-harbor" => matches!(
                identity.role,
                Role::Analyst | Role::PrivacyOfficer | Role::HimTechnician | Role::Admin
            ),
            "date-shift" => matches!(identity.role, Role::PrivacyOfficer | Role::Admin),
            _ => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!(
            "a {profile} extract is not released to the {} role{}",
            identity.role.as_str(),
            if profile == "date-shift" {
                " (date-shifted extracts go through the privacy office)"
            } else {
                ""
            }
        )))
    }
}

/// Whether `identity` administers the server: its users, clients and state (the workbench's
/// administration page; the CLI acts with the data directory's own rights).
pub fn administers(identity: &Identity) -> bool {
    identity.role == Role::Admin && identity.patient.is_none()
}

/// Whether `identity` may follow (poll, fetch, cancel) an export started by `owner`: its
/// starter, or an administrator (after a restart the starter is no longer known).
pub fn may_follow_export(identity: &Identity, owner: Option<&str>) -> bool {
    identity.role == Role::Admin || owner == Some(identity.user.as_str())
}

/// What a stored resource is, for [`sight`]: computed from the stored JSON (never from a
/// trimmed answer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    pub resource_type: String,
    pub id: String,
    /// The patients whose compartment holds the resource, by the R4 Patient
    /// CompartmentDefinition (a Patient is in its own).
    pub compartment: Vec<String>,
    /// Every patient any reference in it names, relative or absolute.
    pub mentioned: Vec<String>,
    /// `meta.security` codes.
    pub labels: Vec<String>,
}

impl ResourceFacts {
    /// The facts of a resource whose compartment membership the caller computed (the
    /// compartment's search parameters are FHIRPath, evaluated where the index is built).
    pub fn of(resource: &Value, compartment: Vec<String>) -> ResourceFacts {
        let text = |name: &str| resource.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let resource_type = text("resourceType");
        let id = text("id");
        let mut compartment = compartment;
        if resource_type == "Patient" && !id.is_empty() && !compartment.contains(&id) {
            compartment.push(id.clone());
        }
        let mut mentioned: Vec<String> =
            fhir::patients_mentioned(resource).into_iter().map(str::to_string).collect();
        mentioned.sort();
        mentioned.dedup();
        let labels = resource["meta"]["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|label| label["code"].as_str().map(str::to_string))
            .collect();
        ResourceFacts { resource_type, id, compartment, mentioned, labels }
    }

    /// The patients whose directives govern the resource: a Patient's own, else every
    /// patient its compartment holds or it names (also on another server's base).
    fn patients(&self) -> Vec<&str> {
        if self.resource_type == "Patient" {
            vec![self.id.as_str()]
        } else {
            self.compartment.iter().chain(&self.mentioned).map(String::as_str).collect()
        }
    }
}

/// Whether resources of `resource_type` can be in a patient's compartment.
pub fn in_patient_compartment(resource_type: &str) -> bool {
    fhir::definitions().compartment("Patient").is_some_and(|types| types.contains_key(resource_type))
}

/// What [`sight`] decides for one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sight {
    Shown,
    /// The scopes do not open its type.
    NotInScope,
    /// It is another patient's (for a patient-context caller).
    OtherPatient,
    /// A consent directive of its patient withholds it from this caller.
    WithheldByConsent,
}

/// Whether `facts`' resource may go into an answer to `caller`.
pub fn sight(caller: &Caller, facts: &ResourceFacts, directives: &Directives) -> Sight {
    let identity = &caller.identity;
    if !may_read_type(identity, &facts.resource_type) {
        return Sight::NotInScope;
    }
    if read_in_patient_context_only(identity, &facts.resource_type) {
        let Some(own) = identity.patient.as_deref() else { return Sight::OtherPatient };
        let own_record = if facts.resource_type == "Patient" {
            facts.id == own
        } else if in_patient_compartment(&facts.resource_type) {
            facts.compartment.iter().any(|p| p == own)
                && facts.compartment.iter().chain(&facts.mentioned).all(|p| p == own)
        } else {
            facts.mentioned.iter().all(|p| p == own)
        };
        if !own_record {
            return Sight::OtherPatient;
        }
    }
    if caller.consent_bound()
        && !directives.is_empty()
        && facts
            .patients()
            .into_iter()
            .any(|patient| directives.rules_of(patient).iter().any(|rule| rule.applies(caller, facts)))
    {
        return Sight::WithheldByConsent;
    }
    Sight::Shown
}

/// What a patient's directives withhold from `caller` among resources of one type: all of
/// them (`labels` empty), or those carrying one of `labels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion<'d> {
    pub patient: &'d str,
    pub labels: Vec<&'d str>,
}

/// What the directives withhold from `caller` among resources of `resource_type`, patient by
/// patient: a search leaves it out in the store itself, so that its filters, counts and
/// `_has`/chains say nothing about what is withheld ([`sight`] judges each resource too).
pub fn exclusions<'d>(
    caller: &Caller,
    directives: &'d Directives,
    resource_type: &str,
) -> Vec<Exclusion<'d>> {
    if !caller.consent_bound() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (patient, rules) in &directives.0 {
        let applying: Vec<&DenyRule> =
            rules.iter().filter(|rule| rule.applies_to(caller, resource_type)).collect();
        if applying.is_empty() {
            continue;
        }
        if applying.iter().any(|rule| rule.labels.is_empty()) {
            found.push(Exclusion { patient: patient.as_str(), labels: Vec::new() });
        } else {
            let mut labels: Vec<&str> =
                applying.iter().flat_map(|rule| rule.labels.iter().map(String::as_str)).collect();
            labels.sort_unstable();
            labels.dedup();
            found.push(Exclusion { patient: patient.as_str(), labels });
        }
    }
    found.sort_by_key(|exclusion| exclusion.patient);
    found
}

/// The patients whose directives withhold every resource of `resource_type` from `caller`.
pub fn withheld_patients<'d>(
    caller: &Caller,
    directives: &'d Directives,
    resource_type: &str,
) -> Vec<&'d str> {
    exclusions(caller, directives, resource_type)
        .into_iter()
        .filter(|e| e.labels.is_empty())
        .map(|e| e.patient)
        .collect()
}

/// Views' rows and exports' files cannot be withheld resource by resource, so a caller bound
/// by consent runs them only while no directive could withhold anything from them: none on
/// record, or the run limited to a patient without one.
pub fn bulk_allowed(caller: &Caller, directives: &Directives, patient: Option<&str>) -> Result<(), Refusal> {
    let blocked = caller.consent_bound()
        && match patient {
            Some(patient) => !directives.rules_of(patient).is_empty(),
            None => !directives.is_empty(),
        };
    if blocked {
        return Err(Refusal::forbidden(
            "consent directives are on record that a view's rows or an export's files cannot honour; run it for one patient without a directive, or ask the privacy office",
        ));
    }
    Ok(())
}

/// One deny provision of an active Consent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyRule {
    /// `Practitioner/...` etc.; empty: everyone.
    actors: Vec<String>,
    /// Resource types; empty: all.
    classes: Vec<String>,
    /// Security label codes; empty: any.
    labels: Vec<String>,
    /// Purpose-of-use codes; empty: any.
    purposes: Vec<String>,
}

impl DenyRule {
    /// Whether the rule denies someone in particular (rather than everyone).
    pub fn names_actors(&self) -> bool {
        !self.actors.is_empty()
    }

    fn applies(&self, caller: &Caller, facts: &ResourceFacts) -> bool {
        let label = self.labels.is_empty() || facts.labels.iter().any(|l| self.labels.contains(l));
        label && self.applies_to(caller, &facts.resource_type)
    }

    /// Whether the rule binds `caller` for resources of `resource_type` (labels apart).
    fn applies_to(&self, caller: &Caller, resource_type: &str) -> bool {
        // The actor named relative or absolute (SMART's fhirUser is often a full URL): the
        // same Practitioner either way.
        let actor = self.actors.is_empty()
            || caller
                .identity
                .fhir_user
                .as_deref()
                .map(local_reference)
                .is_some_and(|me| self.actors.iter().any(|actor| local_reference(actor) == me));
        let class = self.classes.is_empty() || self.classes.iter().any(|c| c == resource_type);
        let purpose = self.purposes.is_empty()
            || caller.purpose.as_deref().is_some_and(|p| self.purposes.iter().any(|x| x == p));
        actor && class && purpose
    }
}

/// `Type/id` of a reference written relative or absolute (`http://x/fhir/Practitioner/1`,
/// with or without `/_history/n`).
fn local_reference(reference: &str) -> &str {
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let path = match path.find("/_history/") {
        Some(at) => &path[..at],
        None => path,
    };
    let mut cut = path.len();
    for _ in 0..2 {
        match path[..cut].rfind('/') {
            Some(at) => cut = at,
            None => return path,
        }
    }
    &path[cut + 1..]
}

/// The deny rules of an active Consent (its provision and nested provisions of type deny).
pub fn deny_rules(consent: &Value) -> Vec<DenyRule> {
    fn codes(list: &Value) -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["code"].as_str().or_else(|| item.as_str()).map(str::to_string))
            .collect()
    }
    fn walk(provision: &Value, rules: &mut Vec<DenyRule>, depth: usize) {
        // Provisions nest; a directive nested deeper than any real one is not walked further.
        if depth > 32 {
            return;
        }
        if provision["type"] == "deny" {
            rules.push(DenyRule {
                actors: provision["actor"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["reference"]["reference"].as_str().map(str::to_string))
                    .collect(),
                classes: codes(&provision["class"]),
                labels: codes(&provision["securityLabel"]),
                purposes: codes(&provision["purpose"]),
            });
        }
        for nested in provision["provision"].as_array().into_iter().flatten() {
            walk(nested, rules, depth + 1);
        }
    }
    let mut rules = Vec::new();
    if consent["status"] == "active" {
        walk(&consent["provision"], &mut rules, 0);
    }
    rules
}

/// The deny rules of every patient with an active directive, by patient id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives(HashMap<String, Vec<DenyRule>>);

impl Directives {
    /// Gathers the deny rules of Consent resources (inactive ones and those without deny
    /// provisions add nothing).
    pub fn from_consents<'a>(consents: impl IntoIterator<Item = &'a Value>) -> Directives {
        let mut rules: HashMap<String, Vec<DenyRule>> = HashMap::new();
        for consent in consents {
            let Some(patient) =
                consent["patient"]["reference"].as_str().and_then(fhir::patient_id_of_reference)
            else {
                continue;
            };
            let found = deny_rules(consent);
            if !found.is_empty() {
                rules.entry(patient.to_string()).or_default().extend(found);
            }
        }
        Directives(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The deny rules of one patient.
    pub fn rules_of(&self, patient: &str) -> &[DenyRule] {
        self.0.get(patient).map_or(&[], Vec::as_slice)
    }
}
