//! ICD-10-CM: the embedded table against the CDC's files, the hierarchy, seventh characters,
//! note inheritance and the code references inside notes.

use std::collections::HashSet;

use chartroom_terminology::icd10cm::{CodeRange, Concept, Icd10Cm, Kind, Note, NoteKind, parse_references};

fn icd() -> &'static Icd10Cm {
    Icd10Cm::get()
}

fn concept(code: &str) -> Concept<'static> {
    icd().lookup(code).unwrap_or_else(|| panic!("{code} is not in ICD-10-CM"))
}

fn range(text: &str) -> CodeRange {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn committed_table_matches_the_tabular_list() {
    let Some(dir) = testkit::shared_dir("data/icd10cm") else { return };
    let xml = std::fs::read_to_string(dir.join("icd10cm-tabular-2026-04.xml")).expect("read the tabular XML");
    let derived = chartroom_terminology::icd10cm::derive::derive_table(&xml).expect("derive the table");
    assert!(
        derived == include_str!("../data/icd10cm-2026.tsv"),
        "crates/terminology/data/icd10cm-2026.tsv is stale: run `cargo run -p chartroom-terminology --bin icd10gen`"
    );
}

#[test]
fn concepts_are_exactly_the_cdc_code_list_in_tabular_order() {
    let Some(dir) = testkit::shared_dir("data/icd10cm") else { return };
    let list = std::fs::read_to_string(dir.join("icd10cm-codes-2026-04.txt")).expect("read the code list");
    let listed: Vec<&str> = list.lines().map(|line| line.trim_end_matches('\r')).collect();
    assert_eq!(listed.len(), 98_505);
    let ours: Vec<String> = icd().concepts().map(|c| c.code().replace('.', "")).collect();

    let listed_set: HashSet<&str> = listed.iter().copied().collect();
    let our_set: HashSet<&str> = ours.iter().map(String::as_str).collect();
    let missing: Vec<_> = listed_set.difference(&our_set).take(10).collect();
    let extra: Vec<_> = our_set.difference(&listed_set).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not in the CDC list {extra:?}");

    // The list is itself in tabular order, with single-category blocks repeated as categories.
    assert_eq!(ours.len(), listed.len());
    let first_difference = ours.iter().zip(&listed).position(|(ours, listed)| ours != listed);
    assert_eq!(first_difference, None, "order differs at {first_difference:?}");
}

#[test]
fn counts() {
    let icd = icd();
    assert_eq!(icd.version(), "2026");
    assert_eq!(icd.chapters().count(), 22);
    let count = |kind: Kind| icd.concepts().filter(|c| c.kind() == kind).count();
    assert_eq!(count(Kind::Chapter), 22);
    assert_eq!(count(Kind::Block), 297);
    assert_eq!(count(Kind::Category), 1_918);
    assert_eq!(icd.len(), 98_505);
    assert_eq!(icd.billable_count(), 74_719);
    assert_eq!(icd.concepts().filter(Concept::billable).count(), 74_719);
    assert_eq!(icd.concepts().filter(|c| c.seventh_character().is_some()).count(), 51_305);
    let chapters: Vec<&str> = icd.chapters().map(|c| c.code()).collect();
    let expected: Vec<String> = (1..=22).map(|n| n.to_string()).collect();
    assert_eq!(chapters, expected);
}

#[test]
fn spot_checks() {
    let fracture = concept("S72.001A");
    assert_eq!(fracture.code(), "S72.001A");
    assert_eq!(fracture.kind(), Kind::Code);
    assert_eq!(
        fracture.display(),
        "Fracture of unspecified part of neck of right femur, initial encounter for closed fracture"
    );
    assert!(fracture.billable());
    assert_eq!(fracture.seventh_character(), Some('A'));
    let extended = fracture.parent().expect("S72.001A has a parent");
    assert_eq!(extended.code(), "S72.001");
    assert!(!extended.billable());
    assert_eq!(extended.seventh_character(), None);
    assert_eq!(extended.children().count(), 16, "S72 defines 16 seventh characters");

    let diabetes = concept("E11.9");
    assert_eq!(diabetes.display(), "Type 2 diabetes mellitus without complications");
    assert!(diabetes.billable());
    assert_eq!(diabetes.kind(), Kind::Code);
    let category = concept("E11");
    assert_eq!(category.kind(), Kind::Category);
    assert!(!category.billable());
    assert_eq!(diabetes.parent(), Some(category));

    let block = concept("A00-A09");
    assert_eq!(block.kind(), Kind::Block);
    assert_eq!(block.display(), "Intestinal infectious diseases (A00-A09)");
    assert!(!block.billable());
    assert_eq!(block.parent().map(|c| c.code()), Some("1"));

    let poisoning = concept("T36.0X1A");
    assert_eq!(
        poisoning.display(),
        "Poisoning by penicillins, accidental (unintentional), initial encounter"
    );
    assert!(poisoning.billable());

    // Padding also fills an absent fourth character, and a category can be extended directly.
    assert_eq!(concept("W08.XXXA").display(), "Fall from other furniture, initial encounter");
    assert_eq!(concept("W08XXXS").parent(), Some(concept("W08")));
    // Obstetric seventh characters identify the fetus.
    assert_eq!(
        concept("O31.8X10").display(),
        "Other complications specific to multiple gestation, first trimester, not applicable or unspecified"
    );

    let chapter = concept("19");
    assert_eq!(chapter.kind(), Kind::Chapter);
    assert!(
        chapter.display().starts_with("Injury, poisoning and certain other consequences of external causes")
    );
    assert_eq!(chapter.parent(), None);
    // A category with no subdivision is billable; a placeholder subdivision is not.
    assert!(concept("I10").billable());
    assert_eq!(concept("I10").kind(), Kind::Category);
    assert!(!concept("H21.1X").billable());
}

#[test]
fn lookup_accepts_the_usual_spellings() {
    let icd = icd();
    let expected = concept("S72.001A");
    for spelling in ["S72.001A", "S72001A", "s72.001a", "s72001a", " S72.001A "] {
        assert_eq!(icd.lookup(spelling), Some(expected), "{spelling}");
    }
    assert_eq!(icd.lookup("e11.9").map(|c| c.code()), Some("E11.9"));
    assert_eq!(icd.lookup("s70-s79").map(|c| c.code()), Some("S70-S79"));
    for missing in
        ["", "E11.", "E1.19", "S720.01A", "E11.99", "23", "0", "A00-A10", "S72.001Z", "S06.0X7D", "E11.9 X"]
    {
        assert_eq!(icd.lookup(missing), None, "{missing:?}");
    }

    // A block holding one category shares its code: the code finds the category, and the
    // block is found as a one-category range.
    let category = concept("B10");
    assert_eq!(category.kind(), Kind::Category);
    let block = concept("B10-B10");
    assert_eq!(block.kind(), Kind::Block);
    assert_eq!(block.code(), "B10");
    assert_eq!(category.parent(), Some(block));
}

#[test]
fn hierarchy_is_a_consistent_pre_order() {
    let icd = icd();
    for concept in icd.concepts() {
        let descendants = concept.descendants().count();
        let children: Vec<Concept> = concept.children().collect();
        assert_eq!(concept.billable(), concept.kind().is_code() && children.is_empty(), "{}", concept.code());
        let mut expected_next = concept.index() + 1;
        for child in &children {
            assert_eq!(child.index(), expected_next);
            assert_eq!(child.parent(), Some(concept));
            expected_next = child.index() + child.descendants().count() + 1;
        }
        assert_eq!(expected_next, concept.index() + descendants + 1, "{}", concept.code());
        match concept.parent() {
            None => assert_eq!(concept.kind(), Kind::Chapter),
            Some(parent) => {
                let expected = match parent.kind() {
                    Kind::Chapter => Kind::Block,
                    Kind::Block => Kind::Category,
                    Kind::Category | Kind::Code => Kind::Code,
                };
                assert_eq!(concept.kind(), expected, "{}", concept.code());
            }
        }
        assert_eq!(icd.concept(concept.index()), Some(concept));
    }
    assert_eq!(icd.concept(icd.len()), None);

    let code = concept("S72.001A");
    let ancestors: Vec<&str> = code.ancestors().map(|c| c.code()).collect();
    assert_eq!(ancestors, ["S72.001", "S72.00", "S72.0", "S72", "S70-S79", "19"]);
    for ancestor in code.ancestors() {
        assert!(code.is_descendant_of(ancestor));
        assert!(ancestor.descendants().any(|d| d == code));
        assert!(!ancestor.is_descendant_of(code));
    }
    assert!(!code.is_descendant_of(code));
    assert!(!code.is_descendant_of(concept("S82")));
    assert!(!concept("S82.001A").is_descendant_of(concept("S72")));
    assert!(concept("E11.9").is_descendant_of(concept("E08-E13")));
    assert!(!concept("E11.9").is_descendant_of(concept("E11.8")));
    assert_eq!(
        concept("E11").descendants().filter(Concept::billable).count(),
        concept("E11").descendants().filter(|c| c.children().next().is_none()).count()
    );
}

#[test]
fn nearer_seventh_character_definitions_win_and_stated_exceptions_hold() {
    // S12 defines A, B, D, G, K, S; S12.8 (other injuries of the neck) only A, D, S.
    assert!(concept("S12.000B").billable());
    let other: Vec<char> = concept("S12.8").children().filter_map(|c| c.seventh_character()).collect();
    assert_eq!(other, ['A', 'D', 'S']);
    assert_eq!(icd().lookup("S12.8XXB"), None);

    // "7th characters D and S do not apply to codes in category S06 with 6th character 7 ... or 8".
    assert_eq!(icd().lookup("S06.0X7"), None, "concussion has no death subdivisions");
    let death: Vec<&str> = concept("S06.1X7").children().map(|c| c.code()).collect();
    assert_eq!(death, ["S06.1X7A"]);
    let survived: Vec<&str> = concept("S06.1X6").children().map(|c| c.code()).collect();
    assert_eq!(survived, ["S06.1X6A", "S06.1X6D", "S06.1X6S"]);

    // Inclusion terms listed under a seventh character belong to the codes carrying it.
    let open = concept("S72.001B");
    let terms: Vec<(NoteKind, &str)> = open.own_notes().iter().map(|n| (n.kind, n.text.as_str())).collect();
    assert_eq!(terms, [(NoteKind::InclusionTerm, "initial encounter for open fracture NOS")]);
    assert!(concept("S72.001A").own_notes().is_empty());
}

#[test]
fn notes_are_inherited_from_the_declaring_ancestors() {
    let hyperglycemia = concept("E11.65");
    assert_eq!(hyperglycemia.display(), "Type 2 diabetes mellitus with hyperglycemia");
    let notes: Vec<(Concept, &Note)> = hyperglycemia.notes().collect();
    let (declaring, note) = notes
        .iter()
        .find(|(_, note)| note.text == "type 1 diabetes mellitus (E10.-)")
        .expect("E11's excludes1 reaches E11.65");
    assert_eq!(*declaring, concept("E11"));
    assert_eq!(note.kind, NoteKind::Excludes1);
    assert!(hyperglycemia.own_notes().is_empty());
    // Nearest first: E11's notes come before its block's and chapter's.
    let declarers: Vec<&str> = notes.iter().map(|(c, _)| c.code()).collect();
    let first_chapter_note = declarers.iter().position(|&c| c == "4").expect("chapter 4 has notes");
    assert!(declarers[..first_chapter_note].iter().all(|&c| c == "E11" || c == "E08-E13"));
    assert!(notes.iter().any(|(c, n)| c.code() == "4" && n.kind == NoteKind::Note));

    // The seventh-character note of S72 reaches the generated codes.
    let fracture = concept("S72.001A");
    let seventh: Vec<(&str, &str)> = fracture
        .notes()
        .filter(|(_, note)| note.kind == NoteKind::SevenCharacterNote)
        .map(|(c, n)| (c.code(), n.text.as_str()))
        .collect();
    assert_eq!(
        seventh,
        [("S72", "The appropriate 7th character is to be added to all codes from category S72")]
    );
    let kinds: HashSet<NoteKind> = fracture.notes().map(|(_, n)| n.kind).collect();
    assert!(kinds.is_superset(&HashSet::from([NoteKind::Excludes1, NoteKind::Excludes2, NoteKind::Note])));

    // Own notes in source order, every kind present somewhere.
    let e11: Vec<NoteKind> = concept("E11").own_notes().iter().map(|n| n.kind).collect();
    assert_eq!(e11.first(), Some(&NoteKind::Includes));
    let present: HashSet<NoteKind> = icd().concepts().flat_map(|c| c.own_notes()).map(|n| n.kind).collect();
    assert_eq!(present, HashSet::from(NoteKind::ALL));
}

#[test]
fn references_in_real_notes() {
    let references = |code: &str, kind: NoteKind, text: &str| -> Vec<String> {
        let note = concept(code)
            .own_notes()
            .iter()
            .find(|n| n.kind == kind && n.text == text)
            .unwrap_or_else(|| panic!("{code} has no {kind:?} note {text:?}"));
        note.references().iter().map(ToString::to_string).collect()
    };

    // E11's excludes1: "type 1 diabetes mellitus (E10.-)".
    let type1 = &concept("E11")
        .own_notes()
        .iter()
        .find(|n| n.text == "type 1 diabetes mellitus (E10.-)")
        .unwrap()
        .references()[0];
    assert_eq!((type1.first(), type1.last()), ("E10", "E10"));
    assert!(type1.contains("E10.65") && type1.contains("E10") && type1.contains("e109"));
    assert!(!type1.contains("E11.65") && !type1.contains("E1"));
    assert_eq!(references("E11", NoteKind::Excludes1, "gestational diabetes (O24.4-)"), ["O24.4-"]);
    assert_eq!(references("E11", NoteKind::UseAdditionalCode, "insulin (Z79.4)"), ["Z79.4"]);

    // E08's code-first list.
    let neoplasm = references("E08", NoteKind::CodeFirst, "malignant neoplasm (C00-C96)");
    assert_eq!(neoplasm, ["C00-C96"]);
    let neoplasm = range("C00-C96");
    assert!(neoplasm.contains("C50.911") && neoplasm.contains("C7A.010") && neoplasm.contains("C96.Z"));
    assert!(!neoplasm.contains("D00.00") && !neoplasm.contains("B99.9"));
    let pancreas = &references(
        "E08",
        NoteKind::CodeFirst,
        "pancreatitis and other diseases of the pancreas (K85-K86.-)",
    );
    assert_eq!(pancreas, &["K85-K86.-"]);
    assert!(range(&pancreas[0]).contains("K86.81") && !range(&pancreas[0]).contains("K87"));

    // A chapter's excludes2 range, compared at the endpoints' length.
    let perinatal = range(
        &references(
            "1",
            NoteKind::Excludes2,
            "infectious and parasitic diseases specific to the perinatal period (P35-P39)",
        )[0],
    );
    assert!(perinatal.contains("P35") && perinatal.contains("P39.9") && perinatal.contains("P37.1"));
    assert!(!perinatal.contains("P34") && !perinatal.contains("P40") && !perinatal.contains("P3"));

    // Qualifiers after "with" are not part of the range.
    let sections: Vec<Vec<String>> = icd()
        .concepts()
        .flat_map(|c| c.own_notes())
        .filter(|n| n.text.contains("(T36-T65 with fifth or sixth character 1-4 or 6)"))
        .map(|n| n.references().iter().map(ToString::to_string).collect())
        .collect();
    assert!(!sections.is_empty());
    assert!(sections.iter().all(|refs| refs == &["T36-T65"]), "{sections:?}");

    // Lists.
    let gout: Vec<String> = icd()
        .concepts()
        .flat_map(|c| c.own_notes())
        .find(|n| n.text.contains("(M1A.-, M10.-)"))
        .expect("a gout note")
        .references()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(gout, ["M1A.-", "M10.-"]);
}

#[test]
fn references_resolve_to_codes() {
    // Every reference names codes that exist, but for two slips in the source: F02's
    // "other frontotemporal neurocognitive disorder (G31.90)" (G31.9 has no subdivision) and
    // R10.4 in "localized abdominal pain (R10.1-R10.4-)".
    let mut total = 0;
    let mut unresolved = Vec::new();
    for concept in icd().concepts() {
        for note in concept.own_notes() {
            for reference in note.references() {
                total += 1;
                if icd().lookup(reference.first()).is_none() || icd().lookup(reference.last()).is_none() {
                    unresolved.push(reference.to_string());
                }
            }
        }
    }
    eprintln!("{} of {total} references do not resolve: {unresolved:?}", unresolved.len());
    assert!(total > 11_000, "{total} references");
    assert_eq!(unresolved, ["G31.90", "R10.1-R10.4-"]);
}

#[test]
fn reference_syntax() {
    let parsed =
        |text: &str| -> Vec<String> { parse_references(text).iter().map(ToString::to_string).collect() };
    assert_eq!(parsed("certain infectious diseases (A00-B99)"), ["A00-B99"]);
    assert_eq!(parsed("diabetic neuropathy (E08.42)"), ["E08.42"]);
    assert_eq!(parsed("noninfective gastroenteritis (K52.2-)"), ["K52.2-"]);
    assert_eq!(parsed("gestational diabetes (O24.-)"), ["O24.-"]);
    assert_eq!(parsed("diabetes (E10.-, E11.-)"), ["E10.-", "E11.-"]);
    assert_eq!(parsed("dementia (F01-F09)"), ["F01-F09"]);
    assert_eq!(parsed("poisoning (T36-T65 with fifth or sixth character 1-4 or 6)"), ["T36-T65"]);
    assert_eq!(parsed("dementia in ... (F10-F19, with .17, .27, .97)"), ["F10-F19"]);
    assert_eq!(parsed("adverse effects (A00-R94 and T80-T88.6, T88.8)"), ["A00-R94", "T80-T88.6", "T88.8"]);
    assert_eq!(parsed("benign neoplasm of testis (D29.2.-)"), ["D29.2-"]);
    assert_eq!(parsed("atherosclerosis (I70.2--I70.7-)"), ["I70.2-I70.7-"]);
    assert_eq!(parsed("apnea of newborn (P28.3- - P28.4-)"), ["P28.3-P28.4-"]);
    assert_eq!(parsed("drug dependence (F10.- -F19.-)"), ["F10-F19.-"]);
    assert_eq!(parsed("head injury (S00 - S09)"), ["S00-S09"]);
    assert_eq!(parsed("rheumatic fever (I01.0 -I01.9)"), ["I01.0-I01.9"]);
    assert_eq!(parsed("fluency disorder (I69. with final characters -23)"), ["I69"]);
    assert_eq!(parsed("abscess (K50.014, K50.114,)"), ["K50.014", "K50.114"]);
    assert_eq!(parsed("concussion (S06.0X- with seventh character A)"), ["S06.0X-"]);
    assert_eq!(
        parsed("ulcer (L97.-, L98.49-), if applicable, and (E11.621)"),
        ["L97.-", "L98.49-", "E11.621"]
    );
    assert_eq!(parsed("milk allergy (Z91.0112)"), ["Z91.0112"]);
    assert_eq!(parsed("neoplasms (i.e. E05.8, E16-E31, E34.-) may be"), ["E05.8", "E16-E31", "E34.-"]);
    assert!(parsed("(e.g. tracheobronchitis to bronchitis in J40)").is_empty());
    assert!(parsed("G6PD deficiency (G6PD) (due to) (in) any type in A15").is_empty());
    assert!(parsed("no parenthesis E11.9").is_empty());
    assert!(parsed("unbalanced (E11.9").is_empty());

    let single = range("K52.2-");
    assert!(single.is_single() && single.is_dashed());
    assert_eq!(single.to_string(), "K52.2-");
    assert!(!range("E11.9").is_dashed());
    assert!(single.contains("K52.2") && single.contains("K52.21") && single.contains("k5229"));
    assert!(!single.contains("K52") && !single.contains("K52.3") && !single.contains("K52-K52"));
    let wide = range("K50-K52");
    assert!(wide.contains("K52.2") && wide.contains("K50") && !wide.contains("K53.0"));
    assert_eq!(CodeRange::new("A00", "B99.9").map(|r| r.to_string()).ok().as_deref(), Some("A00-B99.9"));
    assert!(CodeRange::new("B99", "A00").is_err());
    assert!("not a code".parse::<CodeRange>().is_err());
    assert!("E11.9 and more".parse::<CodeRange>().is_err());
    assert_eq!(
        Note::new(NoteKind::Excludes1, "type 1 diabetes mellitus (E10.-)").references(),
        [range("E10.-")]
    );
}

#[test]
fn a_small_table_generates_seventh_characters() {
    let table = "\
# a hand-made fragment
version\t2099
0\t19\tInjury
1\tS70-S79\tInjuries to the hip and thigh
2\tS72\tFracture of femur
excludes1\ttraumatic amputation of hip and thigh (S78.-)
sevenChrNote\tThe appropriate 7th character is to be added
sevenChrDef\tA\tinitial encounter
sevenChrDef\tB\topen
sevenChrDefNote\topen NOS
3\tS72.0\tNeck
sevenChrOnly\tB
2\tS73\tDislocation
";
    let icd = Icd10Cm::parse(table).expect("parse the fragment");
    let codes: Vec<&str> = icd.concepts().map(|c| c.code()).collect();
    assert_eq!(codes, ["19", "S70-S79", "S72", "S72.0", "S72.0XXB", "S73"]);
    assert_eq!(icd.billable_count(), 2);
    let open = icd.lookup("S720XXB").expect("generated");
    assert_eq!(open.display(), "Neck, open");
    assert_eq!(open.own_notes()[0].text, "open NOS");
    let declared: Vec<(&str, NoteKind)> = open.notes().map(|(c, n)| (c.code(), n.kind)).collect();
    assert_eq!(
        declared,
        [
            ("S72.0XXB", NoteKind::InclusionTerm),
            ("S72", NoteKind::Excludes1),
            ("S72", NoteKind::SevenCharacterNote)
        ]
    );

    for broken in [
        "0\t1\tno version",
        "version\t1\n2\tA00\tno parents",
        "version\t1\nexcludes1\tno node",
        "version\t1\n0\t1\tx\nfrobnicate\tunknown kind",
        "version\t1\n0\t1\tx\n1\tA00-A09\ty\n2\tA00\tz\nsevenChrDef\tAB\ttwo characters",
        "version\t1\n0\t1\tx\n1\tA00-A09\ty\n2\tA00\tz\nsevenChrDef\tA\ta\nsevenChrDefNote\tb\nnotes\tafter",
        "version\t1\n0\t1\tx\n1\tA00-A09\ty\n2\tA00.0000\tz\nsevenChrDef\tA\ttoo long",
        "version\t1\n0 without a tab",
    ] {
        assert!(Icd10Cm::parse(broken).is_err(), "{broken:?}");
    }
}

#[test]
fn derivation_rejects_other_documents() {
    use chartroom_terminology::icd10cm::derive::derive_table;
    assert!(derive_table("not xml").is_err());
    assert!(derive_table("<other/>").is_err());
    assert!(
        derive_table("<ICD10CM.tabular><version>2026</version></ICD10CM.tabular>").is_err(),
        "S06 missing"
    );
}

#[test]
fn loads_quickly() {
    let table = include_str!("../data/icd10cm-2026.tsv");
    let started = std::time::Instant::now();
    let icd = Icd10Cm::parse(table).expect("parse the embedded table");
    let elapsed = started.elapsed();
    eprintln!("parsed {} concepts in {elapsed:?}", icd.len());
    // Only an optimised build says anything about production start-up.
    if !cfg!(debug_assertions) {
        assert!(elapsed < std::time::Duration::from_millis(200), "{elapsed:?}");
    }
}
