//! The access policy on its own, without HTTP: every role and scope form against every kind
//! of route on every resource type, and what a stored resource is against a patient context,
//! for every type in the Patient compartment.

use chartroom_privacy::policy::{
    self, Caller, Directives, OperationAccess, OperationCatalog, PatientUse, Reads, ResourceFacts, Sight,
    Writes,
};
use chartroom_privacy::{Identity, Role, Scopes};
use fhir::rest::{Level, Method, Route, Target};
use serde_json::json;

fn identity(role: Role, patient: Option<&str>, scopes: Option<&str>) -> Identity {
    Identity {
        user: format!("{}-user", role.as_str()),
        role,
        patient: patient.map(str::to_string),
        scopes: scopes.map_or_else(|| role.scopes(), |s| Scopes::parse(s).unwrap()),
        fhir_user: Some("Practitioner/p1".into()),
    }
}

fn route(method: Method, url: &str) -> Route {
    Route::parse(method, &Target::parse(url, "http://h/fhir").unwrap()).unwrap()
}

fn allowed(identity: &Identity, route: &Route) -> bool {
    policy::authorize(identity, route, &Catalog).is_ok()
}

/// The rights the API's operation registry declares (the API's own tests check the policy
/// against the registry itself).
struct Catalog;

impl OperationCatalog for Catalog {
    fn access(&self, name: &str) -> Option<OperationAccess> {
        let declared = |reads, patient| OperationAccess {
            reads,
            writes: Writes::Nothing,
            patient,
            trail: false,
            steward: false,
        };
        Some(match name {
            "everything" => declared(Reads::Type("Patient"), PatientUse::OwnRecord),
            "disclosures" => {
                OperationAccess { trail: true, ..declared(Reads::Nothing, PatientUse::OwnRecord) }
            }
            "export" => declared(Reads::TypesAsked, PatientUse::OwnRecord),
            "lookup" | "expand" | "validate-code" | "subsumes" | "validate" => {
                declared(Reads::LevelType, PatientUse::Allowed)
            }
            "data-quality" | "coding-worklist" | "coding-edits" | "run" | "sql" | "surveillance"
            | "cohort-compare" | "comorbidity" | "high-risk" | "operations-report" | "billing-audit" => {
                declared(Reads::EveryType, PatientUse::Refused)
            }
            "suggest-codes" => declared(Reads::Type("DocumentReference"), PatientUse::Refused),
            "match" | "duplicates" => declared(Reads::Type("Patient"), PatientUse::Refused),
            "decide-duplicate" => OperationAccess {
                writes: Writes::LevelType,
                steward: true,
                ..declared(Reads::Type("Patient"), PatientUse::Refused)
            },
            "merge" | "unmerge" | "amend-decide" | "amend-disagree" | "retention-purge" => OperationAccess {
                writes: Writes::EveryType,
                steward: true,
                ..declared(Reads::EveryType, PatientUse::Refused)
            },
            "roi-request" | "roi-extend" | "roi-release" | "completion-scan" | "amend-request"
            | "amend-extend" | "hold-place" | "hold-release" => OperationAccess {
                writes: Writes::LevelType,
                steward: true,
                ..declared(Reads::EveryType, PatientUse::Refused)
            },
            "roi-overdue" | "amend-overdue" => {
                OperationAccess { steward: true, ..declared(Reads::Type("Task"), PatientUse::Refused) }
            }
            "completion-report" | "retention-report" => {
                OperationAccess { steward: true, ..declared(Reads::EveryType, PatientUse::Refused) }
            }
            "import" | "hl7v2" => OperationAccess {
                writes: Writes::EveryType,
                steward: true,
                ..declared(Reads::Nothing, PatientUse::Refused)
            },
            "import-status" => {
                OperationAccess { steward: true, ..declared(Reads::Nothing, PatientUse::Refused) }
            }
            _ => return None,
        })
    }
}

/// Every R4 resource type but AuditEvent (whose own rules are tested apart).
fn types() -> Vec<&'static str> {
    let mut types: Vec<&str> = fhir::definitions().resource_types().filter(|t| *t != "AuditEvent").collect();
    types.sort();
    types
}

/// Interactions on one type, as routes: (what, read-only?, route).
fn routes_on(t: &str) -> Vec<(&'static str, bool, Route)> {
    vec![
        ("read", true, route(Method::Get, &format!("{t}/x1"))),
        ("vread", true, route(Method::Get, &format!("{t}/x1/_history/1"))),
        ("search", true, route(Method::Get, &format!("{t}?_id=x1"))),
        ("search by form", true, route(Method::Post, &format!("{t}/_search"))),
        ("instance history", true, route(Method::Get, &format!("{t}/x1/_history"))),
        ("create", false, route(Method::Post, t)),
        ("update", false, route(Method::Put, &format!("{t}/x1"))),
        ("conditional update", false, route(Method::Put, &format!("{t}?identifier=a"))),
        ("patch", false, route(Method::Patch, &format!("{t}/x1"))),
        ("conditional patch", false, route(Method::Patch, &format!("{t}?identifier=a"))),
        ("delete", false, route(Method::Delete, &format!("{t}/x1"))),
        ("conditional delete", false, route(Method::Delete, &format!("{t}?identifier=a"))),
    ]
}

#[test]
fn read_only_roles_read_everything_and_write_nothing() {
    for role in [Role::Analyst, Role::PrivacyOfficer] {
        let who = identity(role, None, None);
        for t in types() {
            for (what, reads, route) in routes_on(t) {
                // The privacy office records consent directives (create, update, delete).
                let consent_write = role == Role::PrivacyOfficer
                    && t == "Consent"
                    && matches!(
                        what,
                        "create"
                            | "update"
                            | "delete"
                            | "conditional update"
                            | "conditional delete"
                            | "patch"
                            | "conditional patch"
                    );
                assert_eq!(allowed(&who, &route), reads || consent_write, "{} {what} {t}", role.as_str());
            }
        }
        assert!(
            allowed(&who, &route(Method::Get, "_history")),
            "{}: history of the whole record",
            role.as_str()
        );
        assert!(
            allowed(&who, &route(Method::Post, "")),
            "{}: a Bundle's entries are authorized one by one",
            role.as_str()
        );
    }
}

#[test]
fn clinicians_technicians_and_administrators_do_everything_but_write_the_trail() {
    for role in [Role::Clinician, Role::HimTechnician, Role::Admin] {
        let who = identity(role, None, None);
        for t in types() {
            for (what, reads, route) in routes_on(t) {
                // Consent directives bind clinicians and technicians: they cannot lift them.
                let expected = reads || t != "Consent" || role == Role::Admin;
                assert_eq!(allowed(&who, &route), expected, "{} {what} {t}", role.as_str());
            }
        }
        assert!(allowed(&who, &route(Method::Get, "_history")));
        assert!(allowed(&who, &route(Method::Post, "")), "a Bundle's entries are authorized one by one");
    }
}

#[test]
fn coders_read_and_write_codes_only() {
    let coder = identity(Role::Coder, None, None);
    for t in types() {
        for (what, reads, route) in routes_on(t) {
            let writes_codes = match what {
                "create" => matches!(t, "Condition" | "Claim"),
                "update" | "conditional update" | "patch" | "conditional patch" => {
                    matches!(t, "Condition" | "Claim" | "Encounter")
                }
                _ => false,
            };
            assert_eq!(allowed(&coder, &route), reads || writes_codes, "coder {what} {t}");
        }
    }
    // The claims audit reads every type, as the coding worklist does: coders run it, and so
    // do HIM technicians; what it reads is then each resource's own decision.
    // Release of information is the record's stewards' work: HIM technicians, not coders.
    let him = identity(Role::HimTechnician, None, None);
    for route in [
        route(Method::Post, "Task/$roi-request"),
        route(Method::Post, "Task/t1/$roi-extend"),
        route(Method::Post, "Task/t1/$roi-release"),
        route(Method::Get, "$roi-overdue"),
        route(Method::Post, "Task/$completion-scan"),
        route(Method::Get, "Task/$completion-report"),
        route(Method::Post, "Task/$amend-request"),
        route(Method::Post, "Task/t1/$amend-extend"),
        route(Method::Post, "Task/t1/$amend-decide"),
        route(Method::Post, "Task/t1/$amend-disagree"),
        route(Method::Post, "Task/$hold-place"),
        route(Method::Post, "Task/t1/$hold-release"),
        route(Method::Get, "Task/$amend-overdue"),
        route(Method::Get, "$retention-report"),
        route(Method::Post, "$retention-purge"),
    ] {
        assert!(allowed(&him, &route), "{route:?}");
        assert!(!allowed(&coder, &route), "{route:?}");
    }
    for role in [Role::Coder, Role::HimTechnician] {
        assert!(allowed(&identity(role, None, None), &route(Method::Get, "$billing-audit")), "{role:?}");
        assert!(
            allowed(&identity(role, None, None), &route(Method::Get, "Encounter/$coding-worklist")),
            "{role:?}"
        );
    }
}

#[test]
fn only_the_privacy_office_reads_the_trail_and_nobody_writes_it() {
    let trail_reads = [
        route(Method::Get, "AuditEvent"),
        route(Method::Get, "AuditEvent/audit-1"),
        route(Method::Get, "Patient/pa/AuditEvent"),
        route(Method::Post, "AuditEvent/_search"),
    ];
    let trail_writes = [
        route(Method::Post, "AuditEvent"),
        route(Method::Put, "AuditEvent/audit-1"),
        route(Method::Delete, "AuditEvent/audit-1"),
        route(Method::Patch, "AuditEvent/audit-1"),
        route(Method::Patch, "AuditEvent?entity=x"),
        route(Method::Put, "AuditEvent?entity=x"),
    ];
    for role in Role::ALL {
        let who = identity(role, (role == Role::Patient).then_some("pa"), None);
        for read in &trail_reads {
            let expected = role.reads_audit();
            assert_eq!(allowed(&who, read), expected, "{} {read:?}", role.as_str());
        }
        for write in &trail_writes {
            assert!(!allowed(&who, write), "{} {write:?}", role.as_str());
        }
    }
    // Disclosures: the patient's own, and the privacy office's.
    let disclosures = |id: &str| route(Method::Get, &format!("Patient/{id}/$disclosures"));
    assert!(allowed(&identity(Role::Patient, Some("pa"), None), &disclosures("pa")));
    assert!(!allowed(&identity(Role::Patient, Some("pa"), None), &disclosures("pb")));
    assert!(allowed(&identity(Role::PrivacyOfficer, None, None), &disclosures("pb")));
    assert!(!allowed(&identity(Role::Clinician, None, None), &disclosures("pb")));
}

#[test]
fn a_patients_token_reads_its_own_record_only() {
    let patient = identity(Role::Patient, Some("pa"), None);
    for t in types() {
        for (what, reads, route) in routes_on(t) {
            // Reads are allowed as routes and confined by what each resource is; a Patient
            // other than their own is refused by its id at once.
            let expected = reads && !(t == "Patient" && route.instance().is_some());
            assert_eq!(allowed(&patient, &route), expected, "patient {what} {t}");
        }
        if policy::in_patient_compartment(t) {
            assert!(
                allowed(&patient, &route(Method::Get, &format!("Patient/pa/{t}"))),
                "own {t} compartment"
            );
            assert!(
                !allowed(&patient, &route(Method::Get, &format!("Patient/pb/{t}"))),
                "other {t} compartment"
            );
        }
    }
    let grant = policy::authorize(&patient, &route(Method::Get, "Observation"), &Catalog).unwrap();
    assert_eq!(grant.confined_to.as_deref(), Some("pa"));
    for refused in [
        route(Method::Get, "Patient/pb"),
        route(Method::Get, "Patient/pb/$everything"),
        route(Method::Get, "_history"),
        route(Method::Get, "Observation/_history"),
        route(Method::Post, ""),
        route(Method::Get, "$export"),
        route(Method::Get, "Group/g1/$export"),
        route(Method::Get, "Patient/pb/$export"),
        route(Method::Get, "$data-quality"),
        route(Method::Get, "$surveillance"),
        route(Method::Post, "$cohort-compare"),
        route(Method::Get, "$comorbidity"),
        route(Method::Get, "Patient/pa/$comorbidity"),
        route(Method::Get, "$high-risk"),
        route(Method::Get, "$operations-report"),
        route(Method::Get, "$billing-audit"),
        route(Method::Post, "Task/$roi-request"),
        route(Method::Post, "Task/t1/$roi-release"),
        route(Method::Get, "$roi-overdue"),
        route(Method::Post, "Task/$completion-scan"),
        route(Method::Get, "Task/$completion-report"),
        route(Method::Post, "Task/$amend-request"),
        route(Method::Post, "Task/t1/$amend-decide"),
        route(Method::Post, "Task/$hold-place"),
        route(Method::Post, "$retention-purge"),
        route(Method::Get, "$retention-report"),
        route(Method::Post, "Patient/$match"),
        route(Method::Get, "Encounter/$coding-worklist"),
        route(Method::Post, "ViewDefinition/$run"),
        route(Method::Get, "DocumentReference/d1/$suggest-codes"),
    ] {
        assert!(!allowed(&patient, &refused), "{refused:?}");
    }
    for own in [
        route(Method::Get, "Patient/pa"),
        route(Method::Get, "Patient/pa/$everything"),
        route(Method::Get, "Patient/pa/_history"),
        route(Method::Get, "Patient/$export"),
        route(Method::Get, "Patient/pa/$export"),
        route(Method::Get, "CodeSystem/$lookup"),
        route(Method::Get, "ValueSet/$expand"),
        route(Method::Get, "metadata"),
    ] {
        assert!(allowed(&patient, &own), "{own:?}");
    }
}

#[test]
fn every_scope_form_is_honoured() {
    let cases: &[(&str, &str, Method, bool)] = &[
        ("user/Observation.rs", "Observation/o1", Method::Get, true),
        ("user/Observation.rs", "Observation", Method::Post, false),
        ("user/Observation.rs", "Condition/c1", Method::Get, false),
        ("user/Observation.read", "Observation?code=x", Method::Get, true),
        ("user/Observation.write", "Observation/o1", Method::Put, true),
        ("user/Observation.write", "Observation/o1", Method::Get, false),
        ("user/*.r", "Observation?code=x", Method::Get, false),
        ("user/*.s", "Observation/o1", Method::Get, false),
        ("user/*.c", "Observation", Method::Post, true),
        ("user/*.c", "Observation/o1", Method::Put, false),
        ("user/*.cruds", "Observation/o1", Method::Delete, true),
        ("system/*.read", "Observation/o1", Method::Get, true),
        ("system/*.read", "$export", Method::Get, true),
        // An export holds what the scopes open (`exportable_types`), nothing for no read scope.
        ("user/Patient.rs", "$export", Method::Get, true),
        ("user/Patient.c", "$export", Method::Get, false),
        ("user/Patient.rs", "Patient/p1/$everything", Method::Get, true),
        ("user/Patient.rs", "_history", Method::Get, false),
        ("user/*.*", "_history", Method::Get, true),
    ];
    for (scopes, url, method, expected) in cases {
        let who = identity(Role::Clinician, None, Some(scopes));
        assert_eq!(allowed(&who, &route(*method, url)), *expected, "{scopes} {method:?} {url}");
    }
    // Patient scopes confine to the patient in context; without one they open nothing.
    let confined = identity(Role::Clinician, Some("pa"), Some("patient/Observation.rs"));
    assert_eq!(
        policy::authorize(&confined, &route(Method::Get, "Observation"), &Catalog)
            .unwrap()
            .confined_to
            .as_deref(),
        Some("pa")
    );
    assert!(!allowed(&confined, &route(Method::Put, "Observation/o1")));
    for role in [Role::Patient, Role::Clinician] {
        let scopes = if role == Role::Patient { None } else { Some("patient/*.rs") };
        let nobody = identity(role, None, scopes);
        for url in ["metadata", "Patient/pa", "Observation"] {
            assert_eq!(
                policy::authorize(&nobody, &route(Method::Get, url), &Catalog).map_err(|r| r.status),
                Err(403),
                "{url}"
            );
        }
    }
    // A user in a patient's context (user scopes and a patient claim) is not confined.
    let in_context = identity(Role::Clinician, Some("pa"), Some("user/*.rs"));
    assert_eq!(
        policy::authorize(&in_context, &route(Method::Get, "Observation"), &Catalog).unwrap().confined_to,
        None
    );
}

#[test]
fn exports_are_followed_by_their_starter() {
    let analyst = identity(Role::Analyst, None, None);
    assert!(policy::may_follow_export(&analyst, Some("analyst-user")));
    assert!(!policy::may_follow_export(&analyst, Some("someone-else")));
    assert!(!policy::may_follow_export(&analyst, None));
    assert!(policy::may_follow_export(&identity(Role::Admin, None, None), Some("someone-else")));
}

/// A resource of `t` whose Patient compartment is `patients`, and which names `mentioned`.
fn facts(t: &str, compartment: &[&str], mentioned: &[&str]) -> ResourceFacts {
    ResourceFacts {
        resource_type: t.to_string(),
        id: "r1".into(),
        compartment: compartment.iter().map(|p| p.to_string()).collect(),
        mentioned: mentioned.iter().map(|p| p.to_string()).collect(),
        labels: Vec::new(),
    }
}

#[test]
fn a_patient_sees_a_resource_by_what_it_is_for_every_compartment_type() {
    let caller = Caller::new(identity(Role::Patient, Some("pa"), None));
    let none = Directives::default();
    let compartment = fhir::definitions().compartment("Patient").unwrap();
    let mut compartment_types: Vec<&&str> = compartment.keys().collect();
    compartment_types.sort();
    assert!(compartment_types.len() > 60, "{}", compartment_types.len());
    for t in compartment_types.into_iter().filter(|t| **t != "Patient" && **t != "AuditEvent") {
        let sight = |compartment: &[&str], mentioned: &[&str]| {
            policy::sight(&caller, &facts(t, compartment, mentioned), &none)
        };
        assert_eq!(sight(&["pa"], &["pa"]), Sight::Shown, "{t} of pa");
        assert_eq!(sight(&["pb"], &["pb"]), Sight::OtherPatient, "{t} of pb");
        assert_eq!(sight(&["pa", "pb"], &["pa", "pb"]), Sight::OtherPatient, "{t} of pa and pb");
        assert_eq!(sight(&["pa"], &["pa", "pb"]), Sight::OtherPatient, "{t} of pa naming pb");
        assert_eq!(sight(&[], &[]), Sight::OtherPatient, "{t} of no patient");
        assert_eq!(sight(&[], &["pa"]), Sight::OtherPatient, "{t} naming pa outside its compartment");
    }
    let patient = |id: &str| ResourceFacts { id: id.into(), ..facts("Patient", &[id], &[id]) };
    assert_eq!(policy::sight(&caller, &patient("pa"), &none), Sight::Shown);
    assert_eq!(policy::sight(&caller, &patient("pb"), &none), Sight::OtherPatient);
    // Outside the compartment: shown unless it names another patient.
    assert_eq!(policy::sight(&caller, &facts("Practitioner", &[], &[]), &none), Sight::Shown);
    assert_eq!(policy::sight(&caller, &facts("Bundle", &[], &["pb"]), &none), Sight::OtherPatient);
    assert_eq!(policy::sight(&caller, &facts("AuditEvent", &["pa"], &["pa"]), &none), Sight::NotInScope);
}

#[test]
fn facts_come_from_the_stored_resource() {
    let observation = json!({ "resourceType": "Observation", "id": "o1",
        "subject": { "reference": "Patient/pa" },
        "performer": [{ "reference": "http://elsewhere/fhir/Patient/pb/_history/2" }],
        "meta": { "security": [{ "code": "PSY" }] } });
    let facts = ResourceFacts::of(&observation, vec!["pa".into()]);
    assert_eq!(facts.mentioned, vec!["pa", "pb"]);
    assert_eq!(facts.labels, vec!["PSY"]);
    let patient = ResourceFacts::of(&json!({ "resourceType": "Patient", "id": "pa" }), Vec::new());
    assert_eq!(patient.compartment, vec!["pa"]);
}

#[test]
fn consent_directives_bind_the_roles_that_work_with_records() {
    let consent = json!({ "resourceType": "Consent", "status": "active", "patient": { "reference": "Patient/pa" },
        "provision": { "type": "permit", "provision": [
            { "type": "deny", "actor": [{ "reference": { "reference": "Practitioner/p1" } }],
              "class": [{ "code": "Observation" }] },
            { "type": "deny", "securityLabel": [{ "code": "PSY" }] } ] } });
    let directives = Directives::from_consents([&consent]);
    let observation = facts("Observation", &["pa"], &["pa"]);
    let labelled = ResourceFacts { labels: vec!["PSY".into()], ..facts("Condition", &["pa"], &["pa"]) };
    let others = facts("Observation", &["pb"], &["pb"]);
    for role in Role::ALL.into_iter().filter(|r| *r != Role::Patient) {
        let caller = Caller::new(identity(role, None, None));
        let bound = matches!(role, Role::Clinician | Role::Coder | Role::HimTechnician | Role::Analyst);
        let expected = if bound { Sight::WithheldByConsent } else { Sight::Shown };
        assert_eq!(policy::sight(&caller, &observation, &directives), expected, "{}", role.as_str());
        assert_eq!(policy::sight(&caller, &labelled, &directives), expected, "{}", role.as_str());
        assert_eq!(policy::sight(&caller, &others, &directives), Sight::Shown, "{}", role.as_str());
        assert_eq!(policy::bulk_allowed(&caller, &directives, None).is_ok(), !bound, "{}", role.as_str());
        assert!(policy::bulk_allowed(&caller, &directives, Some("pb")).is_ok());
    }
    // Another practitioner is not the actor the first provision names.
    let other = Caller::new(Identity {
        fhir_user: Some("Practitioner/p2".into()),
        ..identity(Role::Clinician, None, None)
    });
    assert_eq!(policy::sight(&other, &observation, &directives), Sight::Shown);
    // Breaking the glass is a clinician's, with a reason.
    let mut glass = Caller::new(identity(Role::Clinician, None, None));
    glass.break_glass = Some("unconscious in the emergency department".into());
    assert_eq!(policy::sight(&glass, &observation, &directives), Sight::Shown);
    let mut coder = Caller::new(identity(Role::Coder, None, None));
    coder.break_glass = Some("curious".into());
    assert_eq!(policy::sight(&coder, &observation, &directives), Sight::WithheldByConsent);
    // Inactive directives withhold nothing.
    let inactive = json!({ "status": "inactive", "patient": { "reference": "Patient/pa" }, "provision": { "type": "deny" } });
    assert!(Directives::from_consents([&inactive]).is_empty());
}

#[test]
fn operations_are_authorized_by_what_they_read() {
    let narrow = identity(Role::Clinician, None, Some("user/Observation.rs user/Patient.rs"));
    for (url, method, expected) in [
        ("Patient/p1/$everything", Method::Get, true),
        ("ViewDefinition/$run", Method::Post, false),
        ("$sql", Method::Get, false),
        ("$data-quality", Method::Get, false),
        ("$surveillance", Method::Get, false),
        ("$cohort-compare", Method::Post, false),
        ("Patient/$match", Method::Post, true),
        ("CodeSystem/$lookup", Method::Get, false),
        ("Observation/$validate", Method::Post, true),
        ("$validate", Method::Post, true),
    ] {
        let route = route(method, url);
        assert!(matches!(route, Route::Operation { .. }));
        assert_eq!(allowed(&narrow, &route), expected, "{url}");
    }
    let level = |route: Route| match route {
        Route::Operation { level, .. } => level,
        _ => Level::System,
    };
    assert_eq!(
        level(route(Method::Get, "Patient/p1/$everything")),
        Level::Instance("Patient".into(), "p1".into())
    );
}

#[test]
fn each_scope_reaches_as_far_as_its_context() {
    // A SMART app in a patient's context that also reads practitioners beyond it.
    let app = identity(
        Role::Clinician,
        Some("pa"),
        Some("launch/patient openid fhirUser patient/*.rs user/Practitioner.rs"),
    );
    let confined =
        |url: &str| policy::authorize(&app, &route(Method::Get, url), &Catalog).unwrap().confined_to;
    assert_eq!(confined("Observation").as_deref(), Some("pa"));
    assert_eq!(confined("Patient").as_deref(), Some("pa"));
    assert_eq!(confined("Practitioner"), None);
    assert!(!allowed(&app, &route(Method::Get, "Patient/pb")));
    assert!(!allowed(&app, &route(Method::Get, "Observation/_history")));
    assert!(!allowed(&app, &route(Method::Put, "Practitioner/p1")));
    let caller = Caller::new(app.clone());
    let none = Directives::default();
    assert_eq!(policy::sight(&caller, &facts("Observation", &["pb"], &["pb"]), &none), Sight::OtherPatient);
    assert_eq!(policy::sight(&caller, &facts("Observation", &["pa"], &["pa"]), &none), Sight::Shown);
    assert_eq!(policy::sight(&caller, &facts("Practitioner", &[], &[]), &none), Sight::Shown);
    assert!(policy::read_in_patient_context_only(&app, "Observation"));
    assert!(!policy::read_in_patient_context_only(&app, "Practitioner"));
    // The same scopes without the patient open nothing.
    let lost = identity(Role::Clinician, None, Some("patient/*.rs user/Practitioner.rs"));
    assert!(!allowed(&lost, &route(Method::Get, "Practitioner")));
    // A privacy officer in a patient's context does not read the trail, nor others' accounting.
    let officer = identity(Role::PrivacyOfficer, Some("pa"), Some("patient/*.rs"));
    assert!(!allowed(&officer, &route(Method::Get, "AuditEvent")));
    assert!(!allowed(&officer, &route(Method::Get, "Patient/pb/$disclosures")));
    assert!(allowed(&officer, &route(Method::Get, "Patient/pa/$disclosures")));
    let own = policy::authorize(&officer, &route(Method::Get, "Patient/pa/$disclosures"), &Catalog).unwrap();
    assert_eq!(own.confined_to.as_deref(), Some("pa"), "the patient's own accounting, redacted");
}

#[test]
fn an_update_that_creates_needs_create_and_a_conditional_write_needs_search() {
    let coder = identity(Role::Coder, None, None);
    assert!(policy::may_create(&coder, "Condition"));
    assert!(!policy::may_create(&coder, "Encounter"), "Encounter.u only");
    assert!(!policy::may_create(&identity(Role::Admin, None, None), "AuditEvent"));
    assert!(!policy::may_create(&identity(Role::Clinician, None, None), "Consent"));
    assert!(policy::may_create(&identity(Role::PrivacyOfficer, None, None), "Consent"));
    let writer = identity(Role::Clinician, None, Some("user/Observation.cud"));
    assert!(allowed(&writer, &route(Method::Put, "Observation/o1")));
    assert!(!allowed(&writer, &route(Method::Put, "Observation?code=x")), "a conditional update searches");
    assert!(!allowed(&writer, &route(Method::Delete, "Observation?code=x")), "a conditional delete searches");
    assert!(!policy::may_search(&writer, "Observation"));
}

#[test]
fn a_consent_actor_is_the_same_practitioner_however_its_reference_is_written() {
    let consent = json!({ "resourceType": "Consent", "status": "active", "patient": { "reference": "Patient/pa" },
        "provision": { "type": "deny", "actor": [{ "reference": { "reference": "Practitioner/p1" } }] } });
    let directives = Directives::from_consents([&consent]);
    for fhir_user in [
        "Practitioner/p1",
        "https://ehr.example.org/fhir/Practitioner/p1",
        "http://h/fhir/Practitioner/p1/_history/3",
    ] {
        let caller = Caller::new(Identity {
            fhir_user: Some(fhir_user.into()),
            ..identity(Role::Clinician, None, None)
        });
        assert_eq!(
            policy::sight(&caller, &facts("Observation", &["pa"], &["pa"]), &directives),
            Sight::WithheldByConsent,
            "{fhir_user}"
        );
        assert_eq!(policy::withheld_patients(&caller, &directives, "Observation"), vec!["pa"], "{fhir_user}");
    }
    let other = Caller::new(Identity {
        fhir_user: Some("https://ehr.example.org/fhir/Practitioner/p10".into()),
        ..identity(Role::Clinician, None, None)
    });
    assert_eq!(policy::sight(&other, &facts("Observation", &["pa"], &["pa"]), &directives), Sight::Shown);
    // A resource naming a patient on another server's base is still theirs for consent.
    let caller = Caller::new(identity(Role::Clinician, None, None));
    assert_eq!(
        policy::sight(&caller, &facts("Condition", &[], &["pa"]), &directives),
        Sight::WithheldByConsent
    );
}

/// Without a token, discovery only: the CapabilityStatement is open to anyone, and the
/// identity such a request runs as opens no other route of any type, operation, history,
/// export or the trail.
#[test]
fn without_a_token_only_discovery_opens() {
    let anyone = Identity::unauthenticated();
    let metadata = route(Method::Get, "metadata");
    assert!(policy::open_to_anyone(&metadata) && allowed(&anyone, &metadata));
    for t in types() {
        for (what, _, route) in routes_on(t) {
            assert!(!policy::open_to_anyone(&route), "{what} on {t} is open to anyone");
            assert!(!allowed(&anyone, &route), "{what} on {t} allowed without a token");
        }
    }
    for url in [
        "_history",
        "Patient/x1/$everything",
        "$export",
        "Patient/x1/$disclosures",
        "AuditEvent",
        "CodeSystem/$lookup?system=http://loinc.org&code=1",
        "$data-quality",
        "$surveillance",
        "$cohort-compare",
        "ViewDefinition/patients/$run",
    ] {
        let route = route(Method::Get, url);
        assert!(!policy::open_to_anyone(&route) && !allowed(&anyone, &route), "{url} opens without a token");
    }
}

/// An export holds the types the caller may read: each type `_type` names must be open, and
/// an export of everything narrows to what is.
#[test]
fn exports_hold_only_the_types_the_scopes_open() {
    let backend = identity(Role::Analyst, None, Some("system/Patient.rs system/Observation.rs"));
    let asked: Vec<String> = ["Condition", "Observation", "Patient"].map(String::from).to_vec();
    assert_eq!(policy::exportable_types(&backend, &asked, false).unwrap(), ["Observation", "Patient"]);
    let refused = policy::exportable_types(&backend, &asked, true).unwrap_err();
    assert!(refused.message.contains("Condition"), "{}", refused.message);
    assert!(policy::exportable_types(&backend, &["Encounter".to_string()], false).is_err());
    let everything = identity(Role::Analyst, None, Some("system/*.rs"));
    assert_eq!(policy::exportable_types(&everything, &asked, true).unwrap(), asked);
    // The audit trail is the privacy office's even in an export of everything.
    let audit = vec!["AuditEvent".to_string(), "Patient".to_string()];
    assert_eq!(policy::exportable_types(&everything, &audit, false).unwrap(), ["Patient"]);
}

#[test]
fn only_the_records_stewards_merge_unmerge_and_decide_duplicates() {
    for url in ["Patient/$merge", "Patient/$unmerge", "Patient/$decide-duplicate"] {
        let change = route(Method::Post, url);
        for role in Role::ALL {
            let who = identity(role, (role == Role::Patient).then_some("pa"), None);
            let expected = matches!(role, Role::HimTechnician | Role::Admin);
            assert_eq!(allowed(&who, &change), expected, "{} {url}", role.as_str());
        }
        // A technician whose token was narrowed to Patients decides on pairs, but a merge
        // writes every type.
        let narrow = identity(Role::HimTechnician, None, Some("user/Patient.cruds"));
        assert_eq!(allowed(&narrow, &change), url.ends_with("decide-duplicate"), "{url}");
        // In one patient's context (an app launched for them) no one merges registrations.
        let launched = identity(Role::Admin, Some("pa"), Some("patient/*.cruds"));
        assert!(!allowed(&launched, &change), "{url} in a patient's context");
    }
    // The queue is read by whoever reads Patients beyond one record.
    assert!(allowed(&identity(Role::Analyst, None, None), &route(Method::Get, "Patient/$duplicates")));
    assert!(!allowed(&identity(Role::Patient, Some("pa"), None), &route(Method::Get, "Patient/$duplicates")));
    // What a merge moves is checked type by type: consent directives are the privacy
    // office's to change, and the trail no one's.
    assert!(!policy::may_update(&identity(Role::HimTechnician, None, None), "Consent"));
    assert!(policy::may_update(&identity(Role::HimTechnician, None, None), "Observation"));
    assert!(policy::may_update(&identity(Role::Admin, None, None), "Consent"));
    assert!(!policy::may_update(&identity(Role::Admin, None, None), "AuditEvent"));
    assert!(!policy::may_update(&identity(Role::Analyst, None, None), "Observation"));
    // A merge keeps consent directives binding by moving them with the record.
    assert!(policy::may_move_in_merge(&identity(Role::HimTechnician, None, None), "Consent"));
    assert!(!policy::may_move_in_merge(&identity(Role::Clinician, None, None), "Consent"));
    assert!(!policy::may_move_in_merge(&identity(Role::Admin, None, None), "AuditEvent"));
}

#[test]
fn de_identified_extracts_go_to_research_roles_and_date_shifted_ones_through_the_privacy_office() {
    for role in Role::ALL {
        let who = identity(role, None, None);
        let safe_harbor = policy::may_receive_deidentified(&who, "safe-harbor").is_ok();
        let date_shift = policy::may_receive_deidentified(&who, "date-shift").is_ok();
        let expected_safe_harbor =
            matches!(role, Role::Analyst | Role::PrivacyOfficer | Role::HimTechnician | Role::Admin);
        let expected_date_shift = matches!(role, Role::PrivacyOfficer | Role::Admin);
        assert_eq!(safe_harbor, expected_safe_harbor, "{} safe-harbor", role.as_str());
        assert_eq!(date_shift, expected_date_shift, "{} date-shift", role.as_str());
        assert!(policy::may_receive_deidentified(&who, "limited-data-set").is_err());
    }
    // A patient's token: its own record is open to it whole; extracts are not for it.
    let patient = identity(Role::Patient, Some("p1"), Some("patient/*.rs"));
    assert!(policy::may_receive_deidentified(&patient, "safe-harbor").is_err());
}

#[test]
fn only_the_records_stewards_import_in_bulk_and_apply_hl7_messages() {
    let kickoff = route(Method::Post, "$import");
    let status = route(Method::Get, "$import-status");
    let message = route(Method::Post, "$hl7v2");
    for role in Role::ALL {
        let who = identity(role, (role == Role::Patient).then_some("pa"), None);
        let expected = matches!(role, Role::HimTechnician | Role::Admin);
        assert_eq!(allowed(&who, &kickoff), expected, "{} $import", role.as_str());
        assert_eq!(allowed(&who, &status), expected, "{} $import-status", role.as_str());
        assert_eq!(allowed(&who, &message), expected, "{} $hl7v2", role.as_str());
    }
    // What an import writes is not filtered type by type: a token narrowed to some types
    // cannot start one.
    let narrow = identity(Role::HimTechnician, None, Some("user/Patient.cruds"));
    assert!(!allowed(&narrow, &kickoff));
}
