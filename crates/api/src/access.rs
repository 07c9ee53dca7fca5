//! Where the API applies the access policy ([`privacy::policy`]): the policy decides, this
//! module makes every path of the API ask it.
//!
//! - Every route the API runs is authorized before it runs: the request's own
//!   ([`Gate::open`]) and each entry of a batch or transaction ([`Gate::authorize`]), parsed
//!   by the one route parser.
//! - Every stored resource the API puts into an answer (a read, a vread, search matches and
//!   includes, history entries, `$everything`, the instance an operation runs on) passes
//!   [`Gate::sight`] first, on the stored JSON, before `_elements` or `_summary` trims it, and
//!   before a conditional read decides on 304.
//! - Every search of a patient-context caller carries their compartment as a filter
//!   ([`Gate::confine`]), so pages and counts hold their record only; where resources may
//!   still be withheld one by one, totals count only what the caller may see.
//!
//! Invariant: with no caller (the command line, import, tests) nothing is withheld; with a
//! caller, nothing reaches an answer that `policy::sight` did not show.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fhir::IssueType;
use fhir::rest::{Method, Route};
pub use privacy::policy::Caller;
use privacy::policy::{self, Directives, Grant, ResourceFacts, Sight};
use serde_json::Value;
use store::SearchQuery;
use store::search::{Cursor, Filter};

use crate::{Api, ApiError};

/// What the audit trail records of a request, as the API saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audited {
    /// The restful-interaction code (`read`, `search-type`, `transaction`, ...).
    pub interaction: &'static str,
    /// C, R, U, D or E.
    pub action: &'static str,
    /// What was addressed: `Type/id`, a type, an operation.
    pub subject: String,
    /// `Patient/id` of every patient whose record the answer carried or the request named.
    pub patients: Vec<String>,
    /// The versions an operation wrote (`Type/id/_history/n`), each one named: a merge
    /// changes many resources in one request.
    pub written: Vec<String>,
    /// What was disclosed, to whom and why, when the request released part of a record to
    /// someone outside (release of information): the accounting of disclosures shows it.
    pub disclosure: Option<String>,
}

impl Audited {
    pub(crate) fn of(route: &Route) -> Audited {
        Audited {
            interaction: route.interaction_code(),
            action: route.action(),
            subject: route.audit_subject(),
            patients: Vec::new(),
            written: Vec::new(),
            disclosure: None,
        }
    }

    /// A request described by its route without running it (one refused before the API
    /// saw it): the interaction, and the patient its path names.
    pub fn describe(method: Method, path: &str, query: &str) -> Audited {
        match fhir::rest::Target::from_path(path, query).and_then(|target| Route::parse(method, &target)) {
            Ok(route) => {
                let mut audited = Audited::of(&route);
                if let Some(("Patient", id)) = route.instance() {
                    audited.add_patient(id);
                }
                if let Route::Search { compartment: Some((compartment, id)), .. } = &route
                    && compartment == "Patient"
                {
                    audited.add_patient(id);
                }
                audited
            }
            Err(_) => Audited::unrouted(method, path),
        }
    }

    /// A request that named no route (a malformed path).
    pub(crate) fn unrouted(method: Method, path: &str) -> Audited {
        Audited {
            interaction: "unknown",
            action: if method.is_read() { "R" } else { "E" },
            subject: path.to_string(),
            patients: Vec::new(),
            written: Vec::new(),
            disclosure: None,
        }
    }

    pub(crate) fn add_patient(&mut self, id: &str) {
        add_patient(&mut self.patients, id);
    }
}

fn add_patient(patients: &mut Vec<String>, id: &str) {
    let reference = format!("Patient/{id}");
    if !id.is_empty() && !patients.contains(&reference) {
        patients.push(reference);
    }
}

/// One request's view through the policy.
pub(crate) struct Gate {
    caller: Option<Arc<Caller>>,
    grant: Grant,
    directives: Arc<Directives>,
    /// Whether a resource must be read to decide (a patient context, or consent directives
    /// binding the caller).
    inspect: bool,
    touched: Mutex<Vec<String>>,
    /// The versions an operation wrote, for the audit trail.
    written: Mutex<Vec<String>>,
    /// What a release disclosed, for the audit trail.
    disclosure: Mutex<Option<String>>,
    /// Whether a search of this request left records out for consent directives.
    consent_excluded: std::sync::atomic::AtomicBool,
    /// The interaction as the request turned out to be (a Bundle is a batch or a
    /// transaction by its body).
    interaction: Mutex<Option<&'static str>>,
    /// The server's validation setting, which says what a write answers besides its result.
    validation: crate::Validation,
}

fn refused(refusal: policy::Refusal) -> ApiError {
    let code = match refusal.status {
        401 => IssueType::Login,
        405 => IssueType::NotSupported,
        _ => IssueType::Forbidden,
    };
    ApiError::new(refusal.status, code, refusal.message)
}

impl Gate {
    /// Authorizes `route` for the caller and prepares what its answers are checked against.
    pub(crate) fn open(api: &Api, caller: Option<Arc<Caller>>, route: &Route) -> Result<Gate, ApiError> {
        let Some(caller) = caller else {
            return Ok(Gate {
                caller: None,
                grant: Grant { confined_to: None },
                directives: Arc::default(),
                inspect: false,
                touched: Mutex::default(),
                written: Mutex::default(),
                disclosure: Mutex::default(),
                consent_excluded: Default::default(),
                interaction: Mutex::default(),
                validation: api.config.validation,
            });
        };
        let grant = policy::authorize(&caller.identity, route, &crate::operations::registry::Registry)
            .map_err(refused)?;
        let directives = if caller.consent_bound() { api.consents.directives(api)? } else { Arc::default() };
        // With a patient context, resources may be another patient's; with directives on
        // record, under one: either way each must be read to decide.
        let context = policy::confinement(&caller.identity).map_err(refused)?.is_some();
        let inspect = context || !directives.is_empty();
        Ok(Gate {
            caller: Some(caller),
            grant,
            directives,
            inspect,
            touched: Mutex::default(),
            written: Mutex::default(),
            disclosure: Mutex::default(),
            consent_excluded: Default::default(),
            interaction: Mutex::default(),
            validation: api.config.validation,
        })
    }

    /// The view a disclosure is read through: the department releasing to `recipient` (a
    /// reference, when the requester is one) for `purpose`, so the patients' consent directives
    /// aimed at that recipient or purpose apply, whoever in the department runs the release.
    /// A patient's own copy (`to_the_patient`, 164.524) is their whole record: no directive of
    /// theirs withholds it from them.
    pub(crate) fn for_disclosure(
        api: &Api,
        user: &str,
        recipient: Option<String>,
        purpose: &str,
        to_the_patient: bool,
    ) -> Result<Gate, ApiError> {
        let role = privacy::Role::HimTechnician;
        let caller = Caller {
            identity: privacy::Identity {
                user: format!("{user} (releasing)"),
                role,
                patient: None,
                scopes: role.scopes(),
                fhir_user: recipient,
            },
            purpose: Some(purpose.to_string()),
            break_glass: None,
        };
        let directives = if to_the_patient { Arc::default() } else { api.consents.directives(api)? };
        Ok(Gate {
            caller: Some(Arc::new(caller)),
            grant: Grant { confined_to: None },
            inspect: !directives.is_empty(),
            directives,
            touched: Mutex::default(),
            written: Mutex::default(),
            disclosure: Mutex::default(),
            consent_excluded: Default::default(),
            interaction: Mutex::default(),
            validation: api.config.validation,
        })
    }

    /// Whether `patient`'s directives deny their records to someone in particular.
    pub(crate) fn directives_name_actors(&self, patient: &str) -> bool {
        self.directives.rules_of(patient).iter().any(policy::DenyRule::names_actors)
    }

    /// The server's validation setting.
    pub(crate) fn validation(&self) -> crate::Validation {
        self.validation
    }

    /// Authorizes a route the request runs besides its own (a Bundle entry): a refused entry
    /// is a 403 for the Bundle, whatever the entry alone would have been answered.
    pub(crate) fn authorize(&self, route: &Route) -> Result<(), ApiError> {
        match &self.caller {
            Some(caller) => {
                policy::authorize(&caller.identity, route, &crate::operations::registry::Registry)
                    .map(|_| ())
                    .map_err(|refusal| ApiError::new(403, IssueType::Forbidden, refusal.message))
            }
            None => Ok(()),
        }
    }

    /// Whether there is a caller to check answers against.
    pub(crate) fn checks(&self) -> bool {
        self.caller.is_some()
    }

    /// The patient the caller is confined to.
    pub(crate) fn confined_to(&self) -> Option<&str> {
        self.grant.confined_to.as_deref()
    }

    /// The user asking, when there is a caller.
    pub(crate) fn user(&self) -> Option<&str> {
        self.caller.as_deref().map(|c| c.identity.user.as_str())
    }

    /// Whether some result of a search of `resource_type` may be withheld, so that the store's
    /// count of matches is not what the caller may see.
    pub(crate) fn may_withhold(&self, resource_type: &str) -> bool {
        self.caller
            .as_deref()
            .is_some_and(|caller| self.inspect || !policy::may_read_type(&caller.identity, resource_type))
    }

    /// Narrows a search, and every search inside it (the targets of chains, the sources of
    /// `_has`), to what the caller may see, in the store itself, so that no filter, count or
    /// link says anything about the rest: a type the caller reads only in a patient's context
    /// to that patient's compartment (or, for Patient, their own record); and, for a caller
    /// bound by consent, without the records of the patients whose directives withhold the
    /// type from them. Types outside the Patient compartment are judged resource by resource.
    pub(crate) fn confine(&self, query: &mut SearchQuery) {
        if self.caller.is_none() {
            return;
        }
        let resource_type = query.resource_type.clone();
        self.confine_filters(&resource_type, &mut query.filters);
    }

    fn confine_filters(&self, resource_type: &str, filters: &mut Vec<Filter>) {
        let Some(caller) = self.caller.as_deref() else { return };
        for filter in filters.iter_mut() {
            self.confine_nested(filter);
        }
        if policy::read_in_patient_context_only(&caller.identity, resource_type)
            && let Some(own) = caller.identity.patient.as_deref()
        {
            let keys = crate::search::compartment_keys("Patient", resource_type);
            if resource_type == "Patient" {
                filters.push(Filter::Ids(vec![own.to_string()]));
            } else {
                if !keys.is_empty() {
                    filters.push(Filter::Compartment {
                        keys,
                        target_type: "Patient".into(),
                        target_id: own.to_string(),
                    });
                }
                // In their compartment or not, nothing naming another patient.
                filters
                    .push(Filter::OnlyTarget { target_type: "Patient".into(), target_id: own.to_string() });
            }
        }
        for exclusion in policy::exclusions(caller, &self.directives, resource_type) {
            self.consent_excluded.store(true, std::sync::atomic::Ordering::Relaxed);
            let labelled = (!exclusion.labels.is_empty())
                .then(|| fhir::search_parameters().get(resource_type, "_security"))
                .flatten()
                .map(|applied| {
                    let codes = exclusion
                        .labels
                        .iter()
                        .map(|code| store::search::Condition::Token {
                            system: None,
                            code: Some(code.to_string()),
                        })
                        .collect();
                    (applied.key, codes)
                });
            // A Patient under a directive by its id; anything else naming them, through any
            // reference (what the policy judges a resource by: its compartment and every
            // patient it names).
            filters.push(if resource_type == "Patient" {
                Filter::ExcludedIds { ids: vec![exclusion.patient.to_string()], labelled }
            } else {
                Filter::Excluded {
                    keys: Vec::new(),
                    target_type: "Patient".into(),
                    target_id: exclusion.patient.to_string(),
                    labelled,
                }
            });
        }
    }

    fn confine_nested(&self, filter: &mut Filter) {
        match filter {
            Filter::Chain { target_type, filters, .. } => {
                let target = target_type.clone();
                self.confine_filters(&target, filters);
            }
            Filter::Has { source_type, filters, .. } => {
                let source = source_type.clone();
                self.confine_filters(&source, filters);
            }
            Filter::AnyOf(alternatives) => alternatives.iter_mut().for_each(|f| self.confine_nested(f)),
            _ => {}
        }
    }

    /// Whether the caller may create resources of `resource_type` (an update of what does not
    /// exist yet creates it).
    pub(crate) fn may_create(&self, resource_type: &str) -> bool {
        self.caller.as_deref().is_none_or(|c| policy::may_create(&c.identity, resource_type))
    }

    /// Whether a merge by the caller may move resources of `resource_type` from one
    /// registration to another ([`policy::may_move_in_merge`]).
    pub(crate) fn may_move_in_merge(&self, resource_type: &str) -> bool {
        self.caller.as_deref().is_none_or(|c| policy::may_move_in_merge(&c.identity, resource_type))
    }

    /// Who is asking, as a record of who did something names them: their `fhirUser`
    /// reference when they have one, else their user name; `None` for the embedding program.
    pub(crate) fn who(&self) -> Option<(Option<&str>, &str)> {
        self.caller.as_deref().map(|c| (c.identity.fhir_user.as_deref(), c.identity.user.as_str()))
    }

    /// Records a version the request wrote, for the audit trail.
    pub(crate) fn wrote(&self, reference: String) {
        if let Ok(mut written) = self.written.lock() {
            written.push(reference);
        }
    }

    /// Records what the request disclosed outside the organization, to whom and why.
    pub(crate) fn disclosed(&self, what: String) {
        if let Ok(mut disclosure) = self.disclosure.lock() {
            *disclosure = Some(what);
        }
    }

    /// What [`Gate::disclosed`] recorded.
    pub(crate) fn disclosure(&self) -> Option<String> {
        self.disclosure.lock().ok().and_then(|d| d.clone())
    }

    /// The versions recorded by [`Gate::wrote`].
    pub(crate) fn written(&self) -> Vec<String> {
        self.written.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Whether the caller may search `resource_type` (a conditional create's condition is a
    /// search whose answer shows).
    pub(crate) fn may_search(&self, resource_type: &str) -> bool {
        self.caller.as_deref().is_none_or(|c| policy::may_search(&c.identity, resource_type))
    }

    /// Refuses a conditional create's search to a caller who may not search the type.
    pub(crate) fn check_search(&self, resource_type: &str) -> Result<(), ApiError> {
        if self.may_search(resource_type) {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                IssueType::Forbidden,
                format!(
                    "a conditional create searches {resource_type}, which the token's scopes do not permit"
                ),
            ))
        }
    }

    /// Whether a search of this request left records out for consent directives.
    pub(crate) fn left_out_by_consent(&self) -> bool {
        self.consent_excluded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether withheld entries are said to be withheld: to a caller bound by consent (who
    /// may break the glass), not to one seeing a patient's record (for whom anything else is
    /// simply not there).
    pub(crate) fn tells_withheld(&self) -> bool {
        self.caller.as_deref().is_some_and(|c| policy::confinement(&c.identity).ok().flatten().is_none())
    }

    /// Whether the stored resource may go into the answer.
    pub(crate) fn sight(&self, resource_type: &str, body: &[u8]) -> Sight {
        let Some(caller) = self.caller.as_deref() else { return Sight::Shown };
        if !policy::may_read_type(&caller.identity, resource_type) {
            return Sight::NotInScope;
        }
        if !self.inspect {
            return Sight::Shown;
        }
        // Stored bytes always parse; if they did not, nothing could show they are the
        // caller's to see.
        let Ok(json) = fhir::parse_json(body) else { return Sight::OtherPatient };
        policy::sight(caller, &facts(resource_type, &json), &self.directives)
    }

    /// [`Gate::sight`], recording the resource as shown when it is.
    pub(crate) fn admit(&self, resource_type: &str, body: &[u8]) -> Sight {
        let sight = self.sight(resource_type, body);
        if sight == Sight::Shown {
            self.shown(body);
        }
        sight
    }

    /// [`Gate::admit`] for a single resource answer: a refusal saying why, when withheld.
    pub(crate) fn admit_one(&self, resource_type: &str, body: &[u8]) -> Result<(), ApiError> {
        match self.admit(resource_type, body) {
            Sight::Shown => Ok(()),
            sight => Err(self.refusal(sight, resource_type)),
        }
    }

    /// The refusal for a withheld resource.
    pub(crate) fn refusal(&self, sight: Sight, resource_type: &str) -> ApiError {
        let message = match sight {
            Sight::OtherPatient => "this token gives access to one patient's record only".to_string(),
            Sight::WithheldByConsent => "withheld by the patient's consent directive; a clinician may break the glass with an X-Break-Glass-Reason header".to_string(),
            Sight::NotInScope | Sight::Shown => format!(
                "the {} role's scopes do not permit reading {resource_type}",
                self.caller.as_deref().map_or("", |c| c.identity.role.as_str())
            ),
        };
        ApiError::new(403, IssueType::Forbidden, message)
    }

    /// Records the patients a shown resource is about, for the audit trail.
    pub(crate) fn shown(&self, body: &[u8]) {
        if let Ok(mut touched) = self.touched.lock() {
            for id in patients_in_stored(body) {
                add_patient(&mut touched, &id);
            }
        }
    }

    /// Records a patient the answer is about.
    pub(crate) fn touch(&self, id: &str) {
        if let Ok(mut touched) = self.touched.lock() {
            add_patient(&mut touched, id);
        }
    }

    /// Names the interaction more precisely than the route could.
    pub(crate) fn name_interaction(&self, code: &'static str) {
        if let Ok(mut interaction) = self.interaction.lock() {
            *interaction = Some(code);
        }
    }

    /// The interaction named by [`Gate::name_interaction`].
    pub(crate) fn interaction(&self) -> Option<&'static str> {
        self.interaction.lock().ok().and_then(|i| *i)
    }

    /// The patients recorded so far.
    pub(crate) fn touched(&self) -> Vec<String> {
        self.touched.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Views' rows, exports' files and reports over the record cannot be withheld resource
    /// by resource: see `policy::bulk_allowed`.
    pub(crate) fn bulk(&self, patient: Option<&str>) -> Result<(), ApiError> {
        match self.caller.as_deref() {
            Some(caller) => policy::bulk_allowed(caller, &self.directives, patient).map_err(refused),
            None => Ok(()),
        }
    }

    /// Whether the caller may receive a de-identified extract under `profile`
    /// ([`policy::may_receive_deidentified`]).
    pub(crate) fn deidentified(&self, profile: &str) -> Result<(), ApiError> {
        match self.caller.as_deref() {
            Some(caller) => policy::may_receive_deidentified(&caller.identity, profile).map_err(refused),
            None => Ok(()),
        }
    }

    /// The types of `asked` an export by the caller writes out ([`policy::exportable_types`]).
    pub(crate) fn exportable_types(&self, asked: Vec<String>, named: bool) -> Result<Vec<String>, ApiError> {
        match self.caller.as_deref() {
            Some(caller) => policy::exportable_types(&caller.identity, &asked, named).map_err(refused),
            None => Ok(asked),
        }
    }

    /// Whether the caller may follow an export started by `owner`.
    pub(crate) fn follow_export(&self, owner: Option<&str>) -> Result<(), ApiError> {
        match self.caller.as_deref() {
            Some(caller) if !policy::may_follow_export(&caller.identity, owner) => {
                Err(ApiError::new(403, IssueType::Forbidden, "this export was started by someone else"))
            }
            _ => Ok(()),
        }
    }
}

/// What a stored resource is, for the policy: its Patient compartment by the
/// CompartmentDefinition's search parameters (evaluated as the index evaluates them), the
/// patients it names, its labels.
pub(crate) fn facts(resource_type: &str, json: &Value) -> ResourceFacts {
    let mut compartment = Vec::new();
    for key in crate::search::compartment_keys("Patient", resource_type) {
        for (target_type, id) in store::index::references_of(json, key) {
            if target_type == "Patient" && !compartment.contains(&id) {
                compartment.push(id);
            }
        }
    }
    ResourceFacts::of(json, compartment)
}

/// The patients a stored resource is about, read off its bytes without parsing them: each
/// `Patient/...` reference, and a Patient's own id (stored resources begin
/// `{"resourceType":"Patient","id":"...`). For the audit trail, on every resource answered.
pub(crate) fn patients_in_stored(body: &[u8]) -> Vec<String> {
    let mut patients: Vec<String> = Vec::new();
    let id_at = |rest: &[u8]| -> String {
        let end = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
            .unwrap_or(rest.len());
        // ASCII by the test above.
        String::from_utf8_lossy(&rest[..end]).into_owned()
    };
    for needle in [&b"\"reference\":\"Patient/"[..], &b"{\"resourceType\":\"Patient\",\"id\":\""[..]] {
        for at in memchr::memmem::find_iter(body, needle) {
            let id = id_at(&body[at + needle.len()..]);
            if !id.is_empty() && !patients.contains(&id) {
                patients.push(id);
            }
        }
    }
    patients
}

/// How long the directives are remembered (Consents written by import, not through the API,
/// apply within this).
const REMEMBER: Duration = Duration::from_secs(5);

/// Directives as read: when, and the store's change stamp for Consents then.
type RememberedDirectives = (Arc<Directives>, Instant, Option<i64>);

/// The deny rules of every patient with an active directive, read in one paged search and
/// remembered briefly; a write of a Consent through the API forgets them at once.
#[derive(Default)]
pub(crate) struct ConsentCache {
    /// The directives, when they were read, and the store's change stamp for Consents then
    /// (a store shared by several processes has one: another process's Consent write moves
    /// it, and the directives are read again at once).
    snapshot: RwLock<Option<RememberedDirectives>>,
    /// Counts the writes that may have changed a Consent: directives read before one are not
    /// kept after it.
    generation: std::sync::atomic::AtomicU64,
}

impl ConsentCache {
    fn directives(&self, api: &Api) -> Result<Arc<Directives>, ApiError> {
        let stamp = api.store.changes_of("Consent")?;
        if let Ok(snapshot) = self.snapshot.read()
            && let Some((directives, when, seen)) = snapshot.as_ref()
            && when.elapsed() < REMEMBER
            && *seen == stamp
        {
            return Ok(directives.clone());
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let pairs = [("status".to_string(), "active".to_string())];
        // The directives are the policy's own input: read whole, for no caller.
        let everything = Gate::open(api, None, &Route::Capabilities)?;
        let mut query = api.parse_search(&everything, "Consent", &pairs, true, "")?.query;
        query.count = 1000;
        let mut consents: Vec<Value> = Vec::new();
        loop {
            let page = api.store.search(&query)?;
            consents.extend(
                page.matches
                    .iter()
                    .filter_map(|m| m.body.as_deref())
                    .filter_map(|b| fhir::parse_json(b).ok()),
            );
            match (page.has_next, page.last) {
                (true, Some(last)) => query.cursor = Some(Cursor { before: false, ..last }),
                _ => break,
            }
        }
        let directives = Arc::new(Directives::from_consents(&consents));
        if let Ok(mut snapshot) = self.snapshot.write()
            && self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation
        {
            *snapshot = Some((directives.clone(), Instant::now(), stamp));
        }
        Ok(directives)
    }

    /// Forgets the directives after a write that may have changed a Consent (any Bundle may
    /// hold one, however its JSON spells the type).
    pub(crate) fn forget_after(&self, route: &Route) {
        // An operation writing every type (a merge) may move a Consent to another patient.
        let moves_any = |name: &str| {
            crate::operations::registry::find(name)
                .is_some_and(|op| op.access.writes == privacy::policy::Writes::EveryType)
        };
        let consent_written = (route.writes()
            && (route.resource_type() == Some("Consent") || matches!(route, Route::Bundle)))
            || matches!(route, Route::Operation { name, .. } if moves_any(name));
        if consent_written {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Ok(mut snapshot) = self.snapshot.write() {
                *snapshot = None;
            }
        }
    }
}

/// The store as one caller sees it: what an operation reads on their behalf (a coding edit's
/// other diagnoses, a worklist's encounters) passes the same gate as what a read returns.
/// Reads of what the caller may not see find nothing; searches are confined and their
/// matches judged; writes go through unchanged (operations here only read).
pub(crate) struct ViewedStore<'a> {
    pub store: &'a dyn store::Store,
    pub gate: &'a Gate,
}

impl ViewedStore<'_> {
    fn visible(&self, record: &store::VersionRecord) -> bool {
        record.body.as_deref().is_none_or(|body| self.gate.admit(&record.resource_type, body) == Sight::Shown)
    }

    fn keep(&self, records: Vec<store::VersionRecord>) -> Vec<store::VersionRecord> {
        records.into_iter().filter(|record| self.visible(record)).collect()
    }
}

impl store::Store for ViewedStore<'_> {
    fn read(&self, resource_type: &str, id: &str) -> store::Result<Option<store::VersionRecord>> {
        Ok(self.store.read(resource_type, id)?.filter(|record| self.visible(record)))
    }

    fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> store::Result<Option<store::VersionRecord>> {
        Ok(self.store.vread(resource_type, id, version)?.filter(|record| self.visible(record)))
    }

    fn history(
        &self,
        scope: &store::HistoryScope,
        query: &store::HistoryQuery,
    ) -> store::Result<store::HistoryPage> {
        let mut page = self.store.history(scope, query)?;
        page.versions = self.keep(std::mem::take(&mut page.versions));
        page.total = None;
        Ok(page)
    }

    fn submit(&self, unit: store::WriteUnit) -> store::PendingWrite {
        self.store.submit(unit)
    }

    fn count_live(&self) -> store::Result<u64> {
        self.store.count_live()
    }

    // A scan visits every resource of a type: each judged, but not each recorded as
    // touched (the operation records the patients its answer is about).
    fn scan_current(&self, visit: &mut store::ScanVisitor<'_>) -> store::Result<u64> {
        self.store.scan_current(&mut |resource_type, id, body| {
            if self.gate.sight(resource_type, body) == Sight::Shown {
                visit(resource_type, id, body)
            } else {
                Ok(())
            }
        })
    }

    fn scan_type(
        &self,
        resource_type: &str,
        since: Option<i64>,
        visit: &mut store::ScanVisitor<'_>,
    ) -> store::Result<u64> {
        self.store.scan_type(resource_type, since, &mut |resource_type, id, body| {
            if self.gate.sight(resource_type, body) == Sight::Shown {
                visit(resource_type, id, body)
            } else {
                Ok(())
            }
        })
    }

    fn search(&self, query: &SearchQuery) -> store::Result<store::SearchPage> {
        let mut query = query.clone();
        self.gate.confine(&mut query);
        let mut page = self.store.search(&query)?;
        let matches = std::mem::take(&mut page.matches);
        let cursors = std::mem::take(&mut page.cursors);
        let kept: Vec<(store::VersionRecord, store::search::Cursor)> =
            matches.into_iter().zip(cursors).filter(|(record, _)| self.visible(record)).collect();
        (page.matches, page.cursors) = kept.into_iter().unzip();
        Ok(page)
    }

    fn read_many(&self, identities: &[(String, String)]) -> store::Result<Vec<store::VersionRecord>> {
        Ok(self.keep(self.store.read_many(identities)?))
    }

    fn referencing(
        &self,
        keys: &[fhir::search_parameters::ParamKey],
        targets: &[(String, String)],
    ) -> store::Result<Vec<store::VersionRecord>> {
        Ok(self.keep(self.store.referencing(keys, targets)?))
    }

    fn reindex(&self) -> store::Result<u64> {
        self.store.reindex()
    }
}
