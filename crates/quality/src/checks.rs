//! The catalogue: each check's identity in the Kahn framework that OHDSI's
//! DataQualityDashboard uses (category, subcategory, context), adapted to FHIR resources.

/// Kahn category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Conformance,
    Completeness,
    Plausibility,
}

/// Kahn context: checked against rules (verification) or against what is expected of the
/// real world (validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Verification,
    Validation,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Conformance => "Conformance",
            Category::Completeness => "Completeness",
            Category::Plausibility => "Plausibility",
        }
    }
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Verification => "Verification",
            Context::Validation => "Validation",
        }
    }
}

/// One check of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct CheckDef {
    /// Stable: reports show it and stored runs are matched by it.
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: Category,
    /// Value, Relational, Computational, Atemporal or Temporal.
    pub subcategory: &'static str,
    pub context: Context,
    /// The resources checked.
    pub resource_type: &'static str,
    /// The highest share of failing resources, in percent, at which the check passes.
    pub threshold: f64,
    /// The DataQualityDashboard check (OMOP CDM v5.4 catalogue) this one mirrors, if any.
    pub dqd_check: Option<&'static str>,
}

macro_rules! check {
    ($id:expr, $name:expr, $description:expr, $category:ident, $subcategory:expr, $context:ident, $resource:expr, $threshold:expr, $dqd:expr) => {
        CheckDef {
            id: $id,
            name: $name,
            description: $description,
            category: Category::$category,
            subcategory: $subcategory,
            context: Context::$context,
            resource_type: $resource,
            threshold: $threshold,
            dqd_check: $dqd,
        }
    };
}

/// Declares [`CheckId`] from one list of `Variant => definition`, in report order: the enum,
/// [`CheckId::ALL`] and [`CheckId::definition`] come from the same list, so every check has
/// exactly one definition and `ALL` misses none.
macro_rules! catalogue {
    ($($variant:ident => $definition:expr,)*) => {
        /// A check of the catalogue.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckId {
            $($variant,)*
        }

        impl CheckId {
            /// Every check, in the order reports and stored runs list them.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$variant,)*];

            /// The check's entry in the catalogue.
            pub const fn definition(self) -> &'static CheckDef {
                match self {
                    $(CheckId::$variant => {
                        const DEFINITION: CheckDef = $definition;
                        &DEFINITION
                    })*
                }
            }
        }
    };
}

impl CheckId {
    /// The check's stable id, as reports and stored runs name it.
    pub const fn as_str(self) -> &'static str {
        self.definition().id
    }
}

// The catalogue, in report order.
catalogue! {
    R4Valid => check!(
        "r4-valid",
        "Valid FHIR R4",
        "The resource validates against the R4 StructureDefinitions (structure, cardinality, formats, required bindings, invariants)",
        Conformance,
        "Value",
        Verification,
        "any",
        0.0,
        Some("cdmDatatype")
    ),
    CodeExists => check!(
        "icd10cm-code-exists",
        "ICD-10-CM code exists",
        "Every ICD-10-CM code of a Condition is a code of ICD-10-CM FY2026",
        Conformance,
        "Value",
        Verification,
        "Condition",
        0.0,
        Some("isStandardValidConcept")
    ),
    CodeBillable => check!(
        "icd10cm-code-billable",
        "ICD-10-CM code is billable",
        "Every ICD-10-CM code of a Condition is valid for submission, not a category or subcategory header",
        Conformance,
        "Value",
        Verification,
        "Condition",
        0.0,
        Some("isStandardValidConcept")
    ),
    ReferenceResolves => check!(
        "reference-resolves",
        "References resolve",
        "Every relative reference (Type/id) points to a live resource of the record",
        Conformance,
        "Relational",
        Verification,
        "any",
        0.0,
        Some("isForeignKey")
    ),
    UnitPerLoinc => check!(
        "unit-per-loinc",
        "Plausible unit for the LOINC code",
        "The UCUM unit of a measurement is one expected for its LOINC code",
        Plausibility,
        "Atemporal",
        Verification,
        "Observation",
        0.0,
        Some("plausibleUnitConceptIds")
    ),
    BirthDatePresent => check!(
        "patient-birth-date",
        "Patient has a birth date",
        "Patient.birthDate is recorded",
        Completeness,
        "Atemporal",
        Verification,
        "Patient",
        0.0,
        Some("measureValueCompleteness")
    ),
    GenderPresent => check!(
        "patient-gender",
        "Patient has an administrative gender",
        "Patient.gender is recorded",
        Completeness,
        "Atemporal",
        Verification,
        "Patient",
        0.0,
        Some("measureValueCompleteness")
    ),
    DispositionPresent => check!(
        "inpatient-discharge-disposition",
        "Finished inpatient stay has a discharge disposition",
        "A finished inpatient Encounter records hospitalization.dischargeDisposition",
        Completeness,
        "Atemporal",
        Verification,
        "Encounter",
        0.0,
        Some("measureValueCompleteness")
    ),
    DiagnosisPresent => check!(
        "inpatient-diagnosis",
        "Finished inpatient stay has a diagnosis",
        "A finished inpatient Encounter lists at least one diagnosis",
        Completeness,
        "Atemporal",
        Verification,
        "Encounter",
        0.0,
        Some("measureValueCompleteness")
    ),
    PatientHasEncounter => check!(
        "patient-has-encounter",
        "Patient has an encounter",
        "Every Patient is the subject of at least one Encounter",
        Completeness,
        "Relational",
        Validation,
        "Patient",
        0.0,
        Some("measurePersonCompleteness")
    ),
    IdentifierUnique => check!(
        "identifier-unique",
        "Patient identifiers are unique",
        "No two Patients share an identifier (system and value)",
        Conformance,
        "Relational",
        Verification,
        "Patient",
        0.0,
        Some("isPrimaryKey")
    ),
    ValueInRange => check!(
        "value-in-range",
        "Plausible value for the LOINC code",
        "A vital sign's value lies within what a living person can have",
        Plausibility,
        "Atemporal",
        Verification,
        "Observation",
        0.0,
        Some("plausibleValueHigh")
    ),
    EndAfterStart => check!(
        "end-after-start",
        "Period ends after it starts",
        "An Encounter's period does not end before it starts",
        Plausibility,
        "Temporal",
        Verification,
        "Encounter",
        0.0,
        Some("plausibleStartBeforeEnd")
    ),
    NothingAfterDeath => check!(
        "nothing-after-death",
        "No event after death",
        "No clinical or billing event of a patient is dated after the patient's death",
        Plausibility,
        "Temporal",
        Verification,
        "any",
        0.0,
        Some("plausibleBeforeDeath")
    ),
    NothingBeforeBirth => check!(
        "nothing-before-birth",
        "No event before birth",
        "No clinical or billing event of a patient is dated before the patient's birth",
        Plausibility,
        "Temporal",
        Verification,
        "any",
        0.0,
        Some("plausibleAfterBirth")
    ),
    SexSpecificCode => check!(
        "sex-specific-code",
        "Code fits the patient's sex",
        "No Condition carries an ICD-10-CM code for the other sex",
        Plausibility,
        "Atemporal",
        Validation,
        "Condition",
        0.0,
        Some("plausibleGenderUseDescendants")
    ),
    Specificity => check!(
        "specific-code-documented",
        "Unspecified code, specific documentation",
        "A Condition coded as unspecified whose own words document a more specific code (a CDI query candidate)",
        Plausibility,
        "Atemporal",
        Validation,
        "Condition",
        0.0,
        None
    ),
}

/// Plausible measurements: (LOINC code, UCUM unit, lowest, highest). A code's units are the
/// units listed for it; values outside the range no living person has.
pub const MEASUREMENTS: &[(&str, &str, f64, f64)] = &[
    ("8867-4", "/min", 20.0, 300.0),
    ("8310-5", "Cel", 25.0, 45.0),
    ("8310-5", "[degF]", 77.0, 113.0),
    ("9279-1", "/min", 4.0, 80.0),
    ("29463-7", "kg", 0.3, 400.0),
    ("29463-7", "[lb_av]", 0.6, 880.0),
    ("8302-2", "cm", 20.0, 260.0),
    ("8302-2", "[in_i]", 8.0, 102.0),
    ("39156-5", "kg/m2", 5.0, 100.0),
    ("2708-6", "%", 40.0, 100.0),
    ("59408-5", "%", 40.0, 100.0),
    ("8480-6", "mm[Hg]", 40.0, 300.0),
    ("8462-4", "mm[Hg]", 20.0, 200.0),
    ("4548-4", "%", 2.0, 25.0),
    ("2160-0", "mg/dL", 0.05, 30.0),
    ("2160-0", "umol/L", 4.0, 2650.0),
    ("2345-7", "mg/dL", 10.0, 2000.0),
    ("2345-7", "mmol/L", 0.5, 110.0),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored runs are matched by id, and reports list the checks in this order.
    #[test]
    fn ids_and_order_are_stable() {
        let ids: Vec<&str> = CheckId::ALL.iter().map(|check| check.as_str()).collect();
        assert_eq!(
            ids,
            [
                "r4-valid",
                "icd10cm-code-exists",
                "icd10cm-code-billable",
                "reference-resolves",
                "unit-per-loinc",
                "patient-birth-date",
                "patient-gender",
                "inpatient-discharge-disposition",
                "inpatient-diagnosis",
                "patient-has-encounter",
                "identifier-unique",
                "value-in-range",
                "end-after-start",
                "nothing-after-death",
                "nothing-before-birth",
                "sex-specific-code",
                "specific-code-documented",
            ]
        );
        for (place, check) in CheckId::ALL.iter().enumerate() {
            assert_eq!(*check as usize, place, "{check:?}");
        }
    }
}
