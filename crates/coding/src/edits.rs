//! The edits themselves, over diagnoses already pulled out of their resources.

use terminology::icd10cm::{Concept, Icd10Cm, Kind, NoteKind};

use crate::specificity;
use terminology::icd10cm::demographics::{self, AgeRule};

/// One ICD-10-CM code as recorded on a resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diagnosis {
    /// The code as written (with or without the dot).
    pub code: String,
    /// Where it is, as a FHIRPath-like location (`Claim.diagnosis[1].diagnosisCodeableConcept.coding[0]`).
    pub location: String,
    /// Claim `sequence` or Encounter.diagnosis `rank`; `None` when the record gives no order.
    pub sequence: Option<u32>,
    /// What the record says about this diagnosis in words: the code's text, other codings'
    /// displays, body site, severity, stage, notes. Specificity queries are built from it.
    pub documentation: Vec<String>,
}

/// What a record is for: a bill needs billable codes; a problem list may hold a category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Condition, Encounter.diagnosis.
    Clinical,
    /// Claim, ExplanationOfBenefit.
    Claim,
}

pub use terminology::icd10cm::demographics::Sex;

/// What the edits need to know about the patient at the time of service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatientFacts {
    /// `None` when unknown, other, or not recorded: no sex edit then.
    pub sex: Option<Sex>,
    /// Youngest and oldest age in whole years the patient can have had at the time of service
    /// (a birth date or service date given only to the year or month widens the range); age
    /// edits fire only when every possible age conflicts.
    pub age_years: Option<(u32, u32)>,
}

/// How serious an edit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The record or claim is wrong as it stands.
    Error,
    /// Probably wrong, or needs a coder's (or a clinician's) look.
    Warning,
}

impl Severity {
    /// The FHIR `OperationOutcome.issue.severity` code.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// The kinds of edits, each with a stable identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EditId {
    /// Not a code of ICD-10-CM FY2026.
    InvalidCode,
    /// A category or subcategory with codes below it, on a claim.
    HeaderCodeOnClaim,
    /// A category or subcategory with codes below it, on a clinical record.
    IncompleteCode,
    /// An unspecified code where the record's words fit a more specific sibling: a candidate
    /// for a clinical documentation improvement (CDI) query.
    UnspecifiedWithSpecificDocumentation,
    /// Two codes one of whose Excludes1 notes names the other.
    Excludes1Pair,
    /// A manifestation code sequenced before the etiology its "code first" note names.
    CodeFirstOrder,
    /// A code sequenced before the code whose "use additional code" note asks for it.
    UseAdditionalCodeOrder,
    /// A manifestation code ("in diseases classified elsewhere") as the first-listed diagnosis.
    ManifestationFirstListed,
    /// A manifestation code with none of the etiologies its "code first" note names.
    ManifestationWithoutEtiology,
    /// A code for one sex only, on a patient of the other.
    SexConflict,
    /// A code outside the ages it applies to (newborn, maternity).
    AgeConflict,
}

impl EditId {
    /// The identifier reported with the edit.
    pub fn as_str(self) -> &'static str {
        match self {
            EditId::InvalidCode => "icd-invalid-code",
            EditId::HeaderCodeOnClaim => "icd-header-code-on-claim",
            EditId::IncompleteCode => "icd-incomplete-code",
            EditId::UnspecifiedWithSpecificDocumentation => "icd-cdi-specificity",
            EditId::Excludes1Pair => "icd-excludes1-pair",
            EditId::CodeFirstOrder => "icd-code-first-order",
            EditId::UseAdditionalCodeOrder => "icd-use-additional-code-order",
            EditId::ManifestationFirstListed => "icd-manifestation-first-listed",
            EditId::ManifestationWithoutEtiology => "icd-manifestation-without-etiology",
            EditId::SexConflict => "icd-sex-conflict",
            EditId::AgeConflict => "icd-age-conflict",
        }
    }

    /// Every edit, for documentation and capability listings.
    pub const ALL: [EditId; 11] = [
        EditId::InvalidCode,
        EditId::HeaderCodeOnClaim,
        EditId::IncompleteCode,
        EditId::UnspecifiedWithSpecificDocumentation,
        EditId::Excludes1Pair,
        EditId::CodeFirstOrder,
        EditId::UseAdditionalCodeOrder,
        EditId::ManifestationFirstListed,
        EditId::ManifestationWithoutEtiology,
        EditId::SexConflict,
        EditId::AgeConflict,
    ];
}

/// One failed edit.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    pub id: EditId,
    pub severity: Severity,
    /// For a person: what is wrong and what to do.
    pub message: String,
    /// The code the edit is about (as written).
    pub code: String,
    /// Where that code is.
    pub location: String,
    /// For edits about a pair of codes, where the other one is.
    pub other_location: Option<String>,
}

/// Runs every edit over the diagnoses of one episode of care (one encounter, one claim).
pub fn check(diagnoses: &[Diagnosis], patient: &PatientFacts, setting: Setting) -> Vec<Edit> {
    let icd = Icd10Cm::get();
    let mut edits = Vec::new();
    let mut valid: Vec<(&Diagnosis, Concept<'_>)> = Vec::new();
    for diagnosis in diagnoses {
        match icd.lookup(&diagnosis.code).filter(|c| matches!(c.kind(), Kind::Category | Kind::Code)) {
            None => edits.push(edit(
                EditId::InvalidCode,
                Severity::Error,
                diagnosis,
                format!("'{}' is not an ICD-10-CM {} code", diagnosis.code, icd.version()),
            )),
            Some(concept) => valid.push((diagnosis, concept)),
        }
    }
    for &(diagnosis, concept) in &valid {
        single_code_edits(diagnosis, concept, patient, setting, &mut edits);
    }
    // First-listed is first among all the codes, valid or not.
    let first_sequence = diagnoses.iter().filter_map(|d| d.sequence).min();
    pair_edits(&valid, first_sequence, &mut edits);
    edits
}

fn edit(id: EditId, severity: Severity, diagnosis: &Diagnosis, message: String) -> Edit {
    Edit {
        id,
        severity,
        message,
        code: diagnosis.code.clone(),
        location: diagnosis.location.clone(),
        other_location: None,
    }
}

fn pair_edit(
    id: EditId,
    severity: Severity,
    diagnosis: &Diagnosis,
    other: &Diagnosis,
    message: String,
) -> Edit {
    Edit { other_location: Some(other.location.clone()), ..edit(id, severity, diagnosis, message) }
}

fn single_code_edits(
    diagnosis: &Diagnosis,
    concept: Concept<'_>,
    patient: &PatientFacts,
    setting: Setting,
    edits: &mut Vec<Edit>,
) {
    let code = concept.code();
    if !concept.billable() {
        let below = concept.children().take(3).map(|c| c.code()).collect::<Vec<_>>().join(", ");
        let (id, severity, what) = match setting {
            Setting::Claim => (EditId::HeaderCodeOnClaim, Severity::Error, "cannot be billed"),
            Setting::Clinical => (EditId::IncompleteCode, Severity::Warning, "is incomplete"),
        };
        edits.push(edit(
            id,
            severity,
            diagnosis,
            format!(
                "{code} ({}) has codes below it and {what}: code to the full depth ({below}, ...)",
                concept.display()
            ),
        ));
    } else if let Some(query) = specificity::query_candidate(concept, &diagnosis.documentation) {
        let candidates = query
            .candidates
            .iter()
            .map(|c| format!("{} ({})", c.code, c.display))
            .collect::<Vec<_>>()
            .join("; ");
        edits.push(edit(
            EditId::UnspecifiedWithSpecificDocumentation,
            Severity::Warning,
            diagnosis,
            format!(
                "{code} ({}) is unspecified, but the record documents '{}': query the provider or consider {candidates}",
                concept.display(),
                query.documented_words.join(" ")
            ),
        ));
    }
    if let Some(sex) = patient.sex
        && let Some(rule) = demographics::sex_rule(code)
        && rule.sex != sex
    {
        edits.push(edit(
            EditId::SexConflict,
            Severity::Error,
            diagnosis,
            format!(
                "{code} ({}) applies to {} patients only ({}), but the patient is {}",
                concept.display(),
                sex_name(rule.sex),
                rule.reason,
                sex_name(sex)
            ),
        ));
    }
    if let Some((youngest, oldest)) = patient.age_years
        && let Some(rule) = demographics::age_rule(code)
        && !rule.allows_any(youngest, oldest)
    {
        let AgeRule { min, max, reason, strict } = rule;
        let age = if youngest == oldest { format!("{youngest}") } else { format!("{youngest}-{oldest}") };
        edits.push(edit(
            EditId::AgeConflict,
            if strict { Severity::Error } else { Severity::Warning },
            diagnosis,
            format!(
                "{code} ({}) applies to ages {min}-{max} ({reason}), but the patient was {age} at the time of service",
                concept.display()
            ),
        ));
    }
}

fn sex_name(sex: Sex) -> &'static str {
    match sex {
        Sex::Female => "female",
        Sex::Male => "male",
    }
}

/// Manifestation codes say so in their title or their category's, by the classification's
/// convention ("... in diseases classified elsewhere", "... in other diseases classified
/// elsewhere", D63 "Anemia in chronic diseases classified elsewhere").
fn is_manifestation(concept: Concept<'_>) -> bool {
    std::iter::once(concept)
        .chain(concept.ancestors())
        .take_while(|c| matches!(c.kind(), Kind::Category | Kind::Code))
        .any(|c| c.display().to_ascii_lowercase().contains("classified elsewhere"))
}

/// The notes of `kind` on `concept` or inherited, whose code references cover `other`.
fn note_names(concept: Concept<'_>, kind: NoteKind, other: Concept<'_>) -> Option<String> {
    let plain = other.code().replace('.', "");
    concept
        .notes()
        .find(|(_, note)| note.kind == kind && note.references().iter().any(|r| r.contains(&plain)))
        .map(|(declared_at, note)| {
            format!("{} at {}: \"{}\"", note_kind_name(kind), declared_at.code(), note.text)
        })
}

fn note_kind_name(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Excludes1 => "Excludes1",
        NoteKind::CodeFirst => "Code first",
        NoteKind::UseAdditionalCode => "Use additional code",
        _ => "Note",
    }
}

fn pair_edits(valid: &[(&Diagnosis, Concept<'_>)], first_sequence: Option<u32>, edits: &mut Vec<Edit>) {
    for (i, &(a, concept_a)) in valid.iter().enumerate() {
        for &(b, concept_b) in &valid[i + 1..] {
            if concept_a.code() == concept_b.code() {
                continue;
            }
            let excludes = note_names(concept_a, NoteKind::Excludes1, concept_b)
                .or_else(|| note_names(concept_b, NoteKind::Excludes1, concept_a));
            if let Some(note) = excludes {
                edits.push(pair_edit(
                    EditId::Excludes1Pair,
                    Severity::Error,
                    b,
                    a,
                    format!(
                        "{} and {} may not be reported together ({note}); keep the one the record supports",
                        concept_a.code(),
                        concept_b.code()
                    ),
                ));
            }
        }
    }
    for &(manifestation, concept) in valid {
        if !is_manifestation(concept) {
            continue;
        }
        if manifestation.sequence.is_some() && manifestation.sequence == first_sequence {
            edits.push(edit(
                EditId::ManifestationFirstListed,
                Severity::Error,
                manifestation,
                format!(
                    "{} ({}) is a manifestation code and may not be the first-listed diagnosis; sequence the underlying condition first",
                    concept.code(),
                    concept.display()
                ),
            ));
        }
        let names_an_etiology = concept
            .notes()
            .any(|(_, note)| note.kind == NoteKind::CodeFirst && !note.references().is_empty());
        let etiology_present =
            valid.iter().any(|&(_, other)| note_names(concept, NoteKind::CodeFirst, other).is_some());
        if names_an_etiology && !etiology_present {
            edits.push(edit(
                EditId::ManifestationWithoutEtiology,
                Severity::Warning,
                manifestation,
                format!(
                    "{} ({}) is a manifestation code; none of the underlying conditions its 'code first' note names is coded",
                    concept.code(),
                    concept.display()
                ),
            ));
        }
    }
    // Sequencing needs an order on both codes.
    for &(later, concept_later) in valid {
        for &(earlier, concept_earlier) in valid {
            let (Some(seq_later), Some(seq_earlier)) = (later.sequence, earlier.sequence) else { continue };
            if seq_earlier >= seq_later || concept_later.code() == concept_earlier.code() {
                continue;
            }
            // `earlier` comes first; wrong if `earlier`'s code-first note names `later`, or
            // `later`'s use-additional-code note names `earlier`.
            if let Some(note) = note_names(concept_earlier, NoteKind::CodeFirst, concept_later) {
                edits.push(pair_edit(
                    EditId::CodeFirstOrder,
                    Severity::Error,
                    earlier,
                    later,
                    format!(
                        "{} is sequenced before {}, but {note}: sequence {} first",
                        concept_earlier.code(),
                        concept_later.code(),
                        concept_later.code()
                    ),
                ));
            } else if let Some(note) = note_names(concept_later, NoteKind::UseAdditionalCode, concept_earlier)
            {
                edits.push(pair_edit(
                    EditId::UseAdditionalCodeOrder,
                    Severity::Warning,
                    earlier,
                    later,
                    format!(
                        "{} is sequenced before {}, but {note}: the additional code follows",
                        concept_earlier.code(),
                        concept_later.code()
                    ),
                ));
            }
        }
    }
}
