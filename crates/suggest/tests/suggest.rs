//! ICD-10-CM code suggestion: hand-checked phrases and notes, and the held-out quality floor.

use chartroom_suggest::{DEEPEST_RANK, Suggester, Suggestion, evaluate_held_out};
use terminology::icd10cm::Icd10Cm;

fn suggest(text: &str) -> Vec<Suggestion> {
    Suggester::icd10cm().suggest(text, 10)
}

fn codes(suggestions: &[Suggestion]) -> Vec<&str> {
    suggestions.iter().map(|s| s.code.as_str()).collect()
}

/// Asserts that `code` is among the first `within` suggestions for `text`.
#[track_caller]
fn assert_ranked(text: &str, code: &str, within: usize) {
    let suggestions = suggest(text);
    let position = suggestions.iter().position(|s| s.code == code);
    assert!(
        position.is_some_and(|p| p < within),
        "{text:?}: expected {code} within the first {within}, got {:?}",
        codes(&suggestions)
    );
}

#[test]
fn diabetes_without_complications_comes_first() {
    assert_ranked("type 2 diabetes without complications", "E11.9", 1);
    assert_ranked("Type II diabetes mellitus w/o complications", "E11.9", 1);
    assert_ranked("t2dm", "E11.9", 1);
    assert_ranked("type 2 diabetes", "E11.9", 1);
    // Stated complications make the "without complications" code wrong.
    let with = suggest("type 2 diabetes with diabetic chronic kidney disease");
    assert_eq!(with[0].code, "E11.22", "{:?}", codes(&with));
    assert!(!codes(&with[..3]).contains(&"E11.9"));
}

#[test]
fn fracture_shorthand_finds_the_right_femoral_neck() {
    let suggestions = suggest("fx neck of right femur initial encounter");
    let top5 = &suggestions[..5];
    assert!(
        top5.iter().any(|s| s.code.starts_with("S72.0") && s.display.contains("right femur")),
        "{:?}",
        codes(top5)
    );
    // The encounter the text names is the one suggested; closed before open.
    assert_eq!(suggestions[0].code, "S72.001A", "{:?}", codes(top5));
    assert!(suggest("fracture of neck of right femur, subsequent encounter")[0].code.ends_with('D'));
    // One code per family of seventh characters.
    let families: Vec<&str> = suggestions.iter().map(|s| &s.code[..7]).collect();
    let mut distinct = families.clone();
    distinct.dedup();
    assert_eq!(families, distinct);
}

#[test]
fn common_clinical_phrases_and_shorthand() {
    for (text, code, within) in [
        ("htn", "I10", 1),
        ("essential hypertension", "I10", 1),
        ("high blood pressure", "I10", 3),
        ("chf", "I50.9", 1),
        ("copd", "J44.9", 1),
        ("afib", "I48.91", 1),
        ("uti", "N39.0", 1),
        ("gerd", "K21.9", 3),
        ("acute mi", "I21.9", 1),
        ("ckd stage 3", "N18.30", 1),
        ("hypertensive heart failure", "I11.0", 1),
        ("chest pain", "R07.9", 3),
        ("asthma", "J45.909", 1),
        ("hyperlipidemia", "E78.5", 3),
        ("low back pain", "M54.50", 1),
        ("left knee osteoarthritis", "M17.12", 2),
        ("major depressive disorder, recurrent, moderate", "F33.1", 3),
        ("Ménière's disease", "H81.09", 5),
    ] {
        assert_ranked(text, code, within);
    }
}

#[test]
fn a_code_finds_itself_and_its_subdivisions() {
    assert_eq!(codes(&suggest("E11.9")), ["E11.9"]);
    assert_eq!(codes(&suggest("e119")), ["E11.9"]);
    let below = suggest("S72.00");
    assert!(below.len() == 10 && below.iter().all(|s| s.code.starts_with("S72.00")));
}

#[test]
fn only_billable_codes_are_suggested() {
    let icd = Icd10Cm::get();
    for text in
        ["diabetes", "fracture of femur", "tuberculosis", "pressure ulcer of hip", "poisoning by aspirin"]
    {
        for suggestion in suggest(text) {
            let concept = icd.lookup(&suggestion.code).expect("suggested codes exist");
            assert!(concept.billable(), "{text:?}: {} is not billable", suggestion.code);
            assert_eq!(concept.display(), suggestion.display);
        }
    }
}

#[test]
fn lay_words_british_spellings_and_misspellings() {
    for (text, prefix) in [
        ("shingles", "B02"),
        ("chickenpox", "B01"),
        ("whooping cough", "A37"),
        ("heart attack", "I21"),
        ("german measles", "B06"),
        ("oesophageal varices", "I85"),
        ("iron deficiency anaemia", "D50"),
        ("pnuemonia", "J"),
        ("diabetis mellitus type 2", "E11"),
    ] {
        let suggestions = suggest(text);
        assert!(
            suggestions.iter().take(5).any(|s| s.code.starts_with(prefix)),
            "{text:?}: expected {prefix} within the first five, got {:?}",
            codes(&suggestions)
        );
    }
}

#[test]
fn matched_words_are_the_words_as_written() {
    let suggestions = suggest("Fx of the RT femoral neck");
    let first = &suggestions[0];
    assert!(first.code.starts_with("S72.0"), "{:?}", codes(&suggestions));
    assert!(first.matched_words.contains(&"Fx".to_string()), "{:?}", first.matched_words);
    assert!(first.matched_words.contains(&"RT".to_string()), "{:?}", first.matched_words);
    assert!(!first.matched_words.iter().any(|w| w == "the" || w == "of"));
    assert!(first.score >= suggestions[1].score);
    assert!(first.evidence.is_none());
    // Nothing to match: nothing suggested.
    assert!(suggest("").is_empty());
    assert!(suggest("the of and").is_empty());
    assert!(Suggester::icd10cm().suggest("asthma", 0).is_empty());
}

#[test]
fn notes_leave_out_denied_findings_and_family_history() {
    let note = "Patient presents with cough and fever for three days. Denies chest pain. \
                Family history of colon cancer. Mother had breast cancer.\n\
                Assessment: community acquired pneumonia; essential hypertension.";
    let suggestions = Suggester::icd10cm().suggest_note(note, 20);
    let found = codes(&suggestions);
    assert!(!found.iter().any(|c| c.starts_with("R07")), "chest pain was denied: {found:?}");
    assert!(
        !found.iter().any(|c| c.starts_with("C18") || c.starts_with("C50") || c.starts_with("Z80")),
        "{found:?}"
    );
    for expected in ["I10", "R05.9", "R50.9"] {
        assert!(found.contains(&expected), "{expected} missing from {found:?}");
    }
    assert!(found.iter().any(|c| c.starts_with("J18")), "{found:?}");
    // Each suggestion says which clause supports it and which of its words matched.
    for suggestion in &suggestions {
        let evidence = suggestion.evidence.as_deref().expect("notes give evidence");
        assert!(note.contains(evidence));
        for word in &suggestion.matched_words {
            assert!(evidence.contains(word.as_str()), "{word:?} not in {evidence:?}");
        }
    }
    let hypertension = suggestions.iter().find(|s| s.code == "I10").expect("I10");
    assert_eq!(hypertension.evidence.as_deref(), Some("essential hypertension"));
}

#[test]
fn notes_with_shorthand_and_sections() {
    let note = "HPI: 67 yo M with CHF exacerbation.\n\
                PMH: COPD, afib on warfarin, CKD stage 3. No history of stroke.\n\
                Family History:\nfather: MI at 50\n\n\
                Assessment: acute on chronic systolic heart failure; COPD; atrial fibrillation.";
    let suggestions = Suggester::icd10cm().suggest_note(note, 10);
    let found = codes(&suggestions);
    assert_eq!(found[0], "I50.23", "{found:?}");
    for expected in ["J44.9", "I48.91", "N18.30"] {
        assert!(found.contains(&expected), "{expected} missing from {found:?}");
    }
    assert!(!found.iter().any(|c| c.starts_with("I21") || c.starts_with("I63")), "{found:?}");
}

#[test]
fn denied_chest_pain_is_not_suggested_from_its_clause() {
    let suggestions = Suggester::icd10cm().suggest_note("Denies chest pain.", 10);
    assert!(suggestions.is_empty(), "{:?}", codes(&suggestions));
    let suggestions = Suggester::icd10cm().suggest_note("Chest pain but no shortness of breath.", 10);
    let found = codes(&suggestions);
    assert!(found.iter().any(|c| c.starts_with("R07")), "{found:?}");
    assert!(!found.contains(&"R06.02"), "{found:?}");
}

/// The quality floor: held-out inclusion terms (every tenth, in tabular order) must keep
/// finding their code. Measured at 68.1% top-5 and 40.7% top-1 (see
/// `evaluate_held_out`); this fails on a regression of more than about one point.
#[test]
fn held_out_inclusion_terms_find_their_codes() {
    let report = evaluate_held_out(Icd10Cm::get(), 10);
    println!("{report}");
    assert!(report.queries > 1200, "{report}");
    assert!(report.top5_rate() >= 0.67, "{report}");
    assert!(report.top1_rate() >= 0.395, "{report}");
    assert!(report.top10 >= report.top5 && report.top5 >= report.top1);
    assert!(report.deepest >= report.top50 && report.top50 >= report.top10, "{report}");
    // A miss reports where the right code was found, when it was within reach.
    for miss in &report.misses {
        assert!(miss.rank.is_none_or(|r| (6..=DEEPEST_RANK).contains(&r)), "{miss:?}");
    }
    let found_deeper = report.misses.iter().filter(|m| m.rank.is_some()).count();
    assert_eq!(found_deeper, report.deepest - report.top5, "{report}");
}

#[test]
fn unspecified_defaults_win_over_residual_and_specified_siblings() {
    for (text, code) in [
        ("Pneumonia", "J18.9"),
        ("GERD", "K21.9"),
        ("Gastroesophageal reflux disease", "K21.9"),
        ("Chest pain, unspecified", "R07.9"),
        ("chest pain of unclear cause", "R07.9"),
        ("Coronary artery disease", "I25.10"),
        ("Dyslipidemia", "E78.5"),
        ("Influenza A", "J10.1"),
        ("Influenza", "J11.1"),
        ("degenerative joint disease of the right knee", "M17.11"),
    ] {
        assert_ranked(text, code, 1);
    }
    // What the text states is not denied by its stem: "esophageal" is not "esophagitis".
    assert_ranked("reflux esophagitis", "K21.00", 1);
}

#[test]
fn codes_for_another_sex_or_age_are_not_suggested() {
    use chartroom_suggest::Demographics;
    use terminology::icd10cm::demographics::Sex;
    let suggester = Suggester::icd10cm();
    let for_patient = |text: &str, age: u32, sex: Sex| {
        let patient = Demographics { age_years: Some(age), sex: Some(sex) };
        suggester.suggest_for(text, &patient, 10).into_iter().map(|s| s.code).collect::<Vec<_>>()
    };
    let adult = for_patient("Annual physical", 45, Sex::Female);
    assert_eq!(adult[0], "Z00.00", "{adult:?}");
    let child = for_patient("Well-child check", 4, Sex::Male);
    assert_eq!(child[0], "Z00.129", "{child:?}");
    assert!(!child.iter().any(|c| c.starts_with("Z00.0") || c.starts_with("Z00.11")), "{child:?}");
    // Breast cancer in a man is coded to the male breast; female-only codes are left out.
    let man = for_patient("carcinoma of the right breast", 70, Sex::Male);
    assert!(man.iter().all(|c| !c.starts_with("C50.91") || c.starts_with("C50.92")), "{man:?}");
    assert!(man.iter().any(|c| c.starts_with("C50.92")), "{man:?}");
    // Without facts nothing is filtered.
    assert!(codes(&suggest("carcinoma of the right breast")).iter().any(|c| c.starts_with("C50.91")));
}

#[test]
fn a_notes_diagnosis_list_comes_first_in_its_order() {
    let note = "Patient: Ann Lee, 67-year-old woman\n\
        History of present illness: Ann has a history of hypertension, hyperlipidemia and obesity \
        and reports productive cough and fever for 4 days.\n\
        Assessment and plan:\n\
        1. Community-acquired pneumonia, ceftriaxone and azithromycin.\n\
        2. Major depressive disorder, recurrent, moderate, continue SSRI and therapy.\n\
        3. Hypertension, well controlled, continue lisinopril.\n\
        Follow-up in 2 weeks.\n";
    let suggestions = Suggester::icd10cm().suggest_note(note, 10);
    let found = codes(&suggestions);
    assert_eq!(found[..3], ["J18.9", "F33.1", "I10"], "{found:?}");
    // The statement of an entry runs over its qualifiers, not into its plan.
    assert_eq!(suggestions[1].evidence.as_deref(), Some("Major depressive disorder, recurrent, moderate"));
    // Other affirmed history follows the list.
    assert!(found.contains(&"E78.5"), "{found:?}");
}

#[test]
fn a_note_states_who_it_is_about() {
    use chartroom_suggest::{Demographics, note_demographics};
    use terminology::icd10cm::demographics::Sex;
    assert_eq!(
        note_demographics("Patient: Sam Roe, 4-year-old boy\nWell-child check."),
        Demographics { age_years: Some(4), sex: Some(Sex::Male) }
    );
    let suggestions =
        Suggester::icd10cm().suggest_note("4-year-old boy.\nAssessment:\n1. Well-child check.\n", 3);
    assert_eq!(suggestions[0].code, "Z00.129", "{:?}", codes(&suggestions));
}

/// Hand-coded clinical statements written apart from the suggester (see the file's header):
/// the accuracy is recorded in BENCHMARKS.md and must not drop below this floor. Only the
/// misses of the even-numbered statements were ever studied to improve the suggester; the odd
/// ones stay a test of what it was not shown (`chartroom-bench suggest --statements` reports
/// both halves).
#[test]
fn hand_coded_clinical_statements_find_their_codes() {
    use chartroom_suggest::{evaluate_statements, parse_statements};
    let corpus = include_str!("data/clinical-statements.tsv");
    let statements = parse_statements(corpus).expect("the corpus parses");
    assert_eq!(statements.len(), 300);
    let report = evaluate_statements(Suggester::icd10cm(), &statements);
    println!("{report}");
    for miss in &report.misses {
        println!(
            "  miss: {:?} -> {} got {:?}",
            miss.query,
            miss.expected,
            &miss.suggested[..miss.suggested.len().min(5)]
        );
    }
    assert!(report.top5_rate() >= 0.89 && report.top1_rate() >= 0.72, "{report}");
}
