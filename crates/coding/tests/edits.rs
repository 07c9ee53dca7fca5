//! Each coding edit, with a case that must fail it and a close case that must pass. The
//! notes these cases rely on are quoted from the FY2026 tabular list beside each case.

use chartroom_coding as coding;
use chartroom_coding::{Diagnosis, EditId, PatientFacts, Setting, Sex, check};

fn dx(code: &str, sequence: Option<u32>) -> Diagnosis {
    Diagnosis {
        code: code.into(),
        location: format!("Claim.diagnosis[{}]", sequence.unwrap_or(0)),
        sequence,
        documentation: Vec::new(),
    }
}

fn documented(code: &str, words: &[&str]) -> Diagnosis {
    Diagnosis { documentation: words.iter().map(|w| w.to_string()).collect(), ..dx(code, None) }
}

fn adult(sex: Sex) -> PatientFacts {
    PatientFacts { sex: Some(sex), age_years: Some((40, 40)) }
}

fn ids(diagnoses: &[Diagnosis], patient: PatientFacts, setting: Setting) -> Vec<&'static str> {
    check(diagnoses, &patient, setting).iter().map(|e| e.id.as_str()).collect()
}

fn fired(diagnoses: &[Diagnosis], patient: PatientFacts, setting: Setting, id: EditId) -> bool {
    check(diagnoses, &patient, setting).iter().any(|e| e.id == id)
}

#[test]
fn invalid_codes_are_refused_and_real_ones_pass() {
    let edits = check(&[dx("E11.99X", Some(1))], &PatientFacts::default(), Setting::Claim);
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].id, EditId::InvalidCode);
    assert_eq!(edits[0].location, "Claim.diagnosis[1]");
    // Chapters and blocks are not codes either.
    assert!(fired(&[dx("E08-E13", Some(1))], PatientFacts::default(), Setting::Claim, EditId::InvalidCode));
    // Written without the dot, lower case: still the real code.
    assert_eq!(ids(&[dx("e119", Some(1))], PatientFacts::default(), Setting::Claim), Vec::<&str>::new());
}

#[test]
fn header_codes_cannot_be_billed() {
    // E11 has codes below it (E11.0 - E11.9).
    let edits = check(&[dx("E11", Some(1))], &PatientFacts::default(), Setting::Claim);
    assert_eq!(edits.iter().map(|e| e.id).collect::<Vec<_>>(), vec![EditId::HeaderCodeOnClaim]);
    assert!(edits[0].message.contains("E11.0"), "{}", edits[0].message);
    assert!(!fired(
        &[dx("E11.9", Some(1))],
        PatientFacts::default(),
        Setting::Claim,
        EditId::HeaderCodeOnClaim
    ));
    // On a problem list it is incomplete, not a billing error.
    let clinical = check(&[dx("E11", None)], &PatientFacts::default(), Setting::Clinical);
    assert_eq!(clinical.iter().map(|e| e.id).collect::<Vec<_>>(), vec![EditId::IncompleteCode]);
    // A seventh-character code is billable; the six-character code it extends is not.
    assert!(fired(
        &[dx("S72.001", Some(1))],
        PatientFacts::default(),
        Setting::Claim,
        EditId::HeaderCodeOnClaim
    ));
    assert!(!fired(
        &[dx("S72.001A", Some(1))],
        PatientFacts::default(),
        Setting::Claim,
        EditId::HeaderCodeOnClaim
    ));
}

#[test]
fn unspecified_codes_with_specific_documentation_become_query_candidates() {
    // S72.009A: "...neck of unspecified femur"; the record says which side.
    let edits = check(
        &[documented("S72.009A", &["Closed fracture of right hip", "Fall at home"])],
        &PatientFacts::default(),
        Setting::Clinical,
    );
    let cdi: Vec<_> = edits.iter().filter(|e| e.id == EditId::UnspecifiedWithSpecificDocumentation).collect();
    assert_eq!(cdi.len(), 1, "{edits:?}");
    assert!(cdi[0].message.contains("S72.001A"), "{}", cdi[0].message);
    assert!(cdi[0].message.contains("right"), "{}", cdi[0].message);
    assert!(!cdi[0].message.contains("S72.002A"), "{}", cdi[0].message);
    // The record does not say which side: nothing to query.
    assert!(!fired(
        &[documented("S72.009A", &["Closed fracture of hip"])],
        PatientFacts::default(),
        Setting::Clinical,
        EditId::UnspecifiedWithSpecificDocumentation
    ));
    // Already specific: nothing to query.
    assert!(!fired(
        &[documented("S72.001A", &["Closed fracture of right hip"])],
        PatientFacts::default(),
        Setting::Clinical,
        EditId::UnspecifiedWithSpecificDocumentation
    ));
}

#[test]
fn excludes1_pairs_are_refused() {
    // E11 Excludes1: "type 1 diabetes mellitus (E10.-)".
    let edits = check(&[dx("E10.9", Some(1)), dx("E11.9", Some(2))], &adult(Sex::Female), Setting::Claim);
    let pair: Vec<_> = edits.iter().filter(|e| e.id == EditId::Excludes1Pair).collect();
    assert_eq!(pair.len(), 1, "{edits:?}");
    assert!(pair[0].message.contains("E10.9") && pair[0].message.contains("E11.9"));
    assert_eq!(pair[0].other_location.as_deref(), Some("Claim.diagnosis[1]"));
    // G63 Excludes1: "diabetes mellitus (E08-E13 with .42)".
    assert!(fired(
        &[dx("E11.42", Some(1)), dx("G63", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::Excludes1Pair
    ));
    // I10's Excludes2 (hypertension involving vessels of brain, I60-I69) allows both.
    assert!(!fired(
        &[dx("I10", Some(1)), dx("I63.9", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::Excludes1Pair
    ));
    assert!(!fired(
        &[dx("E11.9", Some(1)), dx("I10", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::Excludes1Pair
    ));
}

#[test]
fn manifestations_follow_their_etiology() {
    // G63 "Polyneuropathy in diseases classified elsewhere": code first amyloidosis (E85.-).
    let wrong = check(&[dx("G63", Some(1)), dx("E85.4", Some(2))], &adult(Sex::Male), Setting::Claim);
    let kinds: Vec<EditId> = wrong.iter().map(|e| e.id).collect();
    assert!(kinds.contains(&EditId::CodeFirstOrder), "{wrong:?}");
    assert!(kinds.contains(&EditId::ManifestationFirstListed), "{wrong:?}");
    assert!(!kinds.contains(&EditId::ManifestationWithoutEtiology), "{wrong:?}");
    let right = check(&[dx("E85.4", Some(1)), dx("G63", Some(2))], &adult(Sex::Male), Setting::Claim);
    assert!(right.is_empty(), "{right:?}");
    // Without any etiology its note names.
    let alone = ids(&[dx("I10", Some(1)), dx("G63", Some(2))], adult(Sex::Male), Setting::Claim);
    assert_eq!(alone, vec!["icd-manifestation-without-etiology"]);
    // Unordered codes (a problem list) are not checked for sequence.
    assert!(!fired(
        &[dx("G63", None), dx("E85.4", None)],
        adult(Sex::Male),
        Setting::Clinical,
        EditId::CodeFirstOrder
    ));
}

#[test]
fn additional_codes_follow_the_code_that_asks_for_them() {
    // E11 "Use additional code to identify control using: insulin (Z79.4)".
    let wrong = check(&[dx("Z79.4", Some(1)), dx("E11.9", Some(2))], &adult(Sex::Female), Setting::Claim);
    assert_eq!(
        wrong.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![EditId::UseAdditionalCodeOrder],
        "{wrong:?}"
    );
    assert!(
        check(&[dx("E11.9", Some(1)), dx("Z79.4", Some(2))], &adult(Sex::Female), Setting::Claim).is_empty()
    );
}

#[test]
fn codes_for_one_sex_conflict_with_the_other() {
    // N40.0 benign prostatic hyperplasia; O80 encounter for full-term uncomplicated delivery.
    assert!(fired(&[dx("N40.0", Some(1))], adult(Sex::Female), Setting::Claim, EditId::SexConflict));
    assert!(!fired(&[dx("N40.0", Some(1))], adult(Sex::Male), Setting::Claim, EditId::SexConflict));
    assert!(fired(&[dx("O80", Some(1))], adult(Sex::Male), Setting::Claim, EditId::SexConflict));
    assert!(!fired(&[dx("O80", Some(1))], adult(Sex::Female), Setting::Claim, EditId::SexConflict));
    // Sex not recorded: no edit.
    let unknown = PatientFacts { sex: None, age_years: Some((40, 40)) };
    assert!(!fired(&[dx("N40.0", Some(1))], unknown, Setting::Claim, EditId::SexConflict));
}

#[test]
fn newborn_and_maternity_codes_conflict_with_ages() {
    let aged = |years: (u32, u32)| PatientFacts { sex: Some(Sex::Female), age_years: Some(years) };
    // P07.30 preterm newborn, unspecified weeks of gestation.
    assert!(fired(&[dx("P07.30", Some(1))], aged((30, 30)), Setting::Claim, EditId::AgeConflict));
    assert!(!fired(&[dx("P07.30", Some(1))], aged((0, 0)), Setting::Claim, EditId::AgeConflict));
    // A year-only birth date might make the patient 0 or 1: no conflict can be proved.
    assert!(!fired(&[dx("P07.30", Some(1))], aged((0, 1)), Setting::Claim, EditId::AgeConflict));
    // Maternity codes: ages 9 to 64.
    assert!(fired(&[dx("O80", Some(1))], aged((70, 70)), Setting::Claim, EditId::AgeConflict));
    assert!(!fired(&[dx("O80", Some(1))], aged((30, 30)), Setting::Claim, EditId::AgeConflict));
}

#[test]
fn every_edit_has_an_id_a_severity_and_a_message() {
    let edits = check(
        &[
            dx("G63", Some(1)),
            dx("E85.4", Some(2)),
            dx("E11", Some(3)),
            dx("N40.0", Some(4)),
            dx("XYZ", Some(5)),
        ],
        &adult(Sex::Female),
        Setting::Claim,
    );
    assert!(edits.len() >= 5, "{edits:?}");
    for edit in &edits {
        assert!(edit.id.as_str().starts_with("icd-"));
        assert!(!edit.message.is_empty());
        assert!(edit.location.starts_with("Claim.diagnosis["));
    }
}

#[test]
fn manifestations_named_by_their_category_or_in_other_wording() {
    // F02.80 "Dementia in other diseases classified elsewhere, ...": code first G30.-.
    assert!(fired(
        &[dx("F02.80", Some(1)), dx("G30.9", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::ManifestationFirstListed
    ));
    // D63.1 "Anemia in chronic kidney disease", under D63 "Anemia in chronic diseases classified elsewhere".
    assert!(fired(
        &[dx("D63.1", Some(1)), dx("N18.4", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::ManifestationFirstListed
    ));
    assert!(!fired(
        &[dx("N18.4", Some(1)), dx("D63.1", Some(2))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::ManifestationFirstListed
    ));
    // First-listed counts every code, also an invalid one listed first.
    assert!(!fired(
        &[dx("E11.99X", Some(1)), dx("G63", Some(2)), dx("E85.4", Some(3))],
        adult(Sex::Male),
        Setting::Claim,
        EditId::ManifestationFirstListed
    ));
}

#[test]
fn persisting_perinatal_conditions_are_a_warning_and_delivery_outcomes_are_maternity() {
    let aged = |sex: Sex, years: u32| PatientFacts { sex: Some(sex), age_years: Some((years, years)) };
    // P27.1 bronchopulmonary dysplasia can persist: a warning, not an error.
    let edits = check(&[dx("P27.1", Some(1))], &aged(Sex::Male, 70), Setting::Claim);
    assert_eq!(
        edits.iter().map(|e| (e.id, e.severity)).collect::<Vec<_>>(),
        vec![(EditId::AgeConflict, coding::Severity::Warning)]
    );
    // Z37.0 single live birth: the mother's record.
    assert!(fired(&[dx("Z37.0", Some(2))], aged(Sex::Male, 30), Setting::Claim, EditId::SexConflict));
    assert!(!fired(&[dx("Z37.0", Some(2))], aged(Sex::Female, 30), Setting::Claim, EditId::SexConflict));
}
