//! The record turned into the kernels' input: syndrome counts per place and period
//! ([`syndromic`]), and a retrospective cohort with its durations and covariates ([`cohort`]).
//!
//! Both read through `store::Store` (`scan_type`, one type at a time, one pass each), never
//! a database directly, so they run on whatever store the server has and on the caller's
//! view of it (`api` hands them the store as the caller sees it).

pub mod cohort;
pub mod syndromic;

use serde::Deserialize;

pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// A dateTime, date or instant as milliseconds since the epoch (its earliest moment), or
/// `None` when it is no FHIR date.
pub(crate) fn millis(text: &str) -> Option<i64> {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).ok().map(|d| d.lower_bound_millis())
}

/// The last millisecond of the day `date` (`YYYY-MM-DD`).
pub fn end_of_day(date: &str) -> Option<i64> {
    millis(date).filter(|_| date.len() == 10).map(|start| start + 86_400_000 - 1)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date_of_day(day: i64) -> String {
    let (year, month, day) = fhir::datetime::civil_from_days(day);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The id of the Patient a reference names (`Patient/1`, or an absolute URL ending so).
pub(crate) fn patient_id(reference: &Reference) -> Option<&str> {
    let text = reference.reference.as_deref()?;
    let at = text.rfind("Patient/")?;
    let id = &text[at + "Patient/".len()..];
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[derive(Deserialize, Default)]
pub(crate) struct Reference {
    pub reference: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Coding {
    pub system: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

impl CodeableConcept {
    /// Whether one of its codings has one of `codes` (any system).
    pub(crate) fn has_code(&self, codes: &[&str]) -> bool {
        self.coding.iter().any(|c| c.code.as_deref().is_some_and(|code| codes.contains(&code)))
    }

    /// Its first code.
    pub(crate) fn first_code(&self) -> Option<&str> {
        self.coding.iter().find_map(|c| c.code.as_deref())
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Hospitalization {
    #[serde(rename = "admitSource")]
    pub admit_source: Option<CodeableConcept>,
    #[serde(rename = "dischargeDisposition")]
    pub discharge_disposition: Option<CodeableConcept>,
}

/// What the analyses read of an Encounter (the readmission model's stays, the operations
/// report).
#[derive(Deserialize, Default)]
pub(crate) struct EncounterFacts {
    pub status: Option<String>,
    pub class: Option<Coding>,
    pub subject: Option<Reference>,
    pub period: Option<Period>,
    pub priority: Option<CodeableConcept>,
    #[serde(rename = "serviceProvider")]
    pub service_provider: Option<Reference>,
    #[serde(rename = "serviceType")]
    pub service_type: Option<CodeableConcept>,
    pub hospitalization: Option<Hospitalization>,
}

/// Encounter classes of a stay in hospital.
pub(crate) const INPATIENT_CLASSES: &[&str] = &["IMP", "ACUTE", "NONAC"];

impl EncounterFacts {
    /// Whether it never happened: cancelled, entered in error, or only planned.
    pub(crate) fn void(&self) -> bool {
        matches!(self.status.as_deref(), Some("cancelled" | "entered-in-error" | "planned"))
    }

    pub(crate) fn class_code(&self) -> &str {
        self.class.as_ref().and_then(|c| c.code.as_deref()).unwrap_or("")
    }

    pub(crate) fn start_millis(&self) -> Option<i64> {
        self.period.as_ref().and_then(|p| p.start.as_deref()).and_then(millis)
    }

    pub(crate) fn end_millis(&self) -> Option<i64> {
        self.period.as_ref().and_then(|p| p.end.as_deref()).and_then(millis)
    }

    /// The discharge disposition's code (`home`, `snf`, `exp`, ...), empty when not said.
    pub(crate) fn disposition(&self) -> &str {
        self.hospitalization
            .as_ref()
            .and_then(|h| h.discharge_disposition.as_ref())
            .and_then(CodeableConcept::first_code)
            .unwrap_or("")
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Period {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Address {
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    #[serde(rename = "postalCode")]
    pub postal_code: Option<String>,
    pub period: Option<Period>,
}

/// What the analyses read of a Patient.
#[derive(Deserialize, Default)]
pub(crate) struct PatientFacts {
    #[serde(default)]
    pub address: Vec<Address>,
    pub gender: Option<String>,
    #[serde(rename = "birthDate")]
    pub birth_date: Option<String>,
    #[serde(rename = "deceasedDateTime")]
    pub deceased_date_time: Option<String>,
}

impl PatientFacts {
    /// The home address: `use` home if there is one still current, else the first that is
    /// not old.
    pub(crate) fn home(&self) -> Option<&Address> {
        let current = |a: &&Address| {
            a.use_.as_deref() != Some("old") && a.period.as_ref().is_none_or(|p| p.end.is_none())
        };
        self.address
            .iter()
            .filter(current)
            .find(|a| a.use_.as_deref() == Some("home"))
            .or_else(|| self.address.iter().find(current))
    }
}

/// What the analyses read of a Condition.
#[derive(Deserialize, Default)]
pub(crate) struct ConditionFacts {
    pub code: Option<CodeableConcept>,
    pub subject: Option<Reference>,
    #[serde(rename = "verificationStatus")]
    pub verification_status: Option<CodeableConcept>,
    #[serde(rename = "onsetDateTime")]
    pub onset_date_time: Option<String>,
    #[serde(rename = "onsetPeriod")]
    pub onset_period: Option<Period>,
    #[serde(rename = "recordedDate")]
    pub recorded_date: Option<String>,
}

impl ConditionFacts {
    /// Whether the condition was refuted or entered in error (then it is not counted).
    pub(crate) fn withdrawn(&self) -> bool {
        self.verification_status.as_ref().is_some_and(|status| {
            status.coding.iter().any(|c| matches!(c.code.as_deref(), Some("refuted" | "entered-in-error")))
        })
    }

    /// When it began: onset, else when it was recorded (ms since the epoch).
    pub(crate) fn onset_millis(&self) -> Option<i64> {
        self.onset_date_time
            .as_deref()
            .or(self.onset_period.as_ref().and_then(|p| p.start.as_deref()))
            .or(self.recorded_date.as_deref())
            .and_then(millis)
    }

    /// The ICD-10-CM codes it carries.
    pub(crate) fn icd10cm_codes(&self) -> impl Iterator<Item = &str> {
        self.code
            .iter()
            .flat_map(|c| c.coding.iter())
            .filter(|c| c.system.as_deref() == Some(ICD10CM))
            .filter_map(|c| c.code.as_deref())
    }
}

/// Reads a resource body into the facts an analysis needs, or `None` when it does not have
/// their shape (stored without validation): the caller counts it as unreadable and goes on.
pub(crate) fn facts<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}
