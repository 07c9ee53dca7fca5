//! The 18 identifier classes of 45 CFR 164.514(b)(2)(i)(A)–(R), and the count of what an
//! extract removed from each.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One class of identifier, by its paragraph of 164.514(b)(2)(i).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentifierClass {
    Names,
    Geographic,
    Dates,
    Telephone,
    Fax,
    Email,
    Ssn,
    MedicalRecordNumber,
    HealthPlanNumber,
    AccountNumber,
    LicenseNumber,
    VehicleIdentifier,
    DeviceIdentifier,
    Url,
    IpAddress,
    Biometric,
    Photo,
    OtherUnique,
}

impl IdentifierClass {
    pub const ALL: [IdentifierClass; 18] = [
        IdentifierClass::Names,
        IdentifierClass::Geographic,
        IdentifierClass::Dates,
        IdentifierClass::Telephone,
        IdentifierClass::Fax,
        IdentifierClass::Email,
        IdentifierClass::Ssn,
        IdentifierClass::MedicalRecordNumber,
        IdentifierClass::HealthPlanNumber,
        IdentifierClass::AccountNumber,
        IdentifierClass::LicenseNumber,
        IdentifierClass::VehicleIdentifier,
        IdentifierClass::DeviceIdentifier,
        IdentifierClass::Url,
        IdentifierClass::IpAddress,
        IdentifierClass::Biometric,
        IdentifierClass::Photo,
        IdentifierClass::OtherUnique,
    ];

    /// The paragraph letter, (A) to (R).
    pub fn paragraph(self) -> char {
        (b'A' + self as u8) as char
    }

    /// A short name for reports and the command line.
    pub fn code(self) -> &'static str {
        match self {
            IdentifierClass::Names => "names",
            IdentifierClass::Geographic => "geographic",
            IdentifierClass::Dates => "dates",
            IdentifierClass::Telephone => "telephone",
            IdentifierClass::Fax => "fax",
            IdentifierClass::Email => "email",
            IdentifierClass::Ssn => "ssn",
            IdentifierClass::MedicalRecordNumber => "mrn",
            IdentifierClass::HealthPlanNumber => "health-plan",
            IdentifierClass::AccountNumber => "account",
            IdentifierClass::LicenseNumber => "license",
            IdentifierClass::VehicleIdentifier => "vehicle",
            IdentifierClass::DeviceIdentifier => "device",
            IdentifierClass::Url => "url",
            IdentifierClass::IpAddress => "ip",
            IdentifierClass::Biometric => "biometric",
            IdentifierClass::Photo => "photo",
            IdentifierClass::OtherUnique => "other-unique",
        }
    }

    /// The regulation's words for the class.
    pub fn title(self) -> &'static str {
        match self {
            IdentifierClass::Names => "Names",
            IdentifierClass::Geographic => "Geographic subdivisions smaller than a state",
            IdentifierClass::Dates => "Dates (except year) and ages over 89",
            IdentifierClass::Telephone => "Telephone numbers",
            IdentifierClass::Fax => "Fax numbers",
            IdentifierClass::Email => "Electronic mail addresses",
            IdentifierClass::Ssn => "Social security numbers",
            IdentifierClass::MedicalRecordNumber => "Medical record numbers",
            IdentifierClass::HealthPlanNumber => "Health plan beneficiary numbers",
            IdentifierClass::AccountNumber => "Account numbers",
            IdentifierClass::LicenseNumber => "Certificate/license numbers",
            IdentifierClass::VehicleIdentifier => "Vehicle identifiers and serial numbers",
            IdentifierClass::DeviceIdentifier => "Device identifiers and serial numbers",
            IdentifierClass::Url => "Web universal resource locators",
            IdentifierClass::IpAddress => "Internet protocol addresses",
            IdentifierClass::Biometric => "Biometric identifiers",
            IdentifierClass::Photo => "Full-face photographs and comparable images",
            IdentifierClass::OtherUnique => "Any other unique identifying number, characteristic, or code",
        }
    }
}

/// What one extract removed or generalized, per class, and where from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Values removed or generalized in structured elements.
    pub structured: BTreeMap<IdentifierClass, u64>,
    /// Values removed or generalized in free text.
    pub text: BTreeMap<IdentifierClass, u64>,
    pub resources_in: u64,
    pub resources_out: u64,
    /// Resources left out whole, by type (audit trails, workflow records, raw binaries).
    pub dropped: BTreeMap<String, u64>,
    /// Resource ids replaced by codes or pseudonyms.
    pub ids_replaced: u64,
}

impl Report {
    pub(crate) fn structured(&mut self, class: IdentifierClass) {
        *self.structured.entry(class).or_default() += 1;
    }

    pub(crate) fn text(&mut self, class: IdentifierClass) {
        *self.text.entry(class).or_default() += 1;
    }

    /// Adds another report's counts (extracts made in parallel parts).
    pub fn absorb(&mut self, other: &Report) {
        for (class, n) in &other.structured {
            *self.structured.entry(*class).or_default() += n;
        }
        for (class, n) in &other.text {
            *self.text.entry(*class).or_default() += n;
        }
        for (kind, n) in &other.dropped {
            *self.dropped.entry(kind.clone()).or_default() += n;
        }
        self.resources_in += other.resources_in;
        self.resources_out += other.resources_out;
        self.ids_replaced += other.ids_replaced;
    }

    /// Removed from both structured data and text.
    pub fn total(&self, class: IdentifierClass) -> u64 {
        self.structured.get(&class).copied().unwrap_or(0) + self.text.get(&class).copied().unwrap_or(0)
    }

    /// The report as JSON: every class, even those with nothing removed.
    pub fn to_json(&self, profile: crate::Profile) -> Value {
        let classes: Vec<Value> = IdentifierClass::ALL
            .iter()
            .map(|class| {
                json!({
                    "paragraph": format!("164.514(b)(2)(i)({})", class.paragraph()),
                    "class": class.code(),
                    "title": class.title(),
                    "structured": self.structured.get(class).copied().unwrap_or(0),
                    "text": self.text.get(class).copied().unwrap_or(0),
                })
            })
            .collect();
        json!({
            "profile": profile.name(),
            "resourcesIn": self.resources_in,
            "resourcesOut": self.resources_out,
            "idsReplaced": self.ids_replaced,
            "dropped": self.dropped,
            "classes": classes,
        })
    }
}
