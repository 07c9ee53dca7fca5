//! The profiles as data: which resources stay out, which elements are which identifier class.
//! Elements are found by their FHIR type first (every `HumanName` is a name wherever it is);
//! the paths here are the identifiers typed as plain strings or otherwise not told by type.

use serde_json::Value;

use crate::IdentifierClass;

/// Resource types left out of every extract: the audit trail (users, addresses of machines),
/// HIM workflow records (requests, letters, recipients), identity links, raw binaries no rule
/// can look inside, and technical endpoints.
pub const DROPPED_TYPES: &[&str] = &[
    "AuditEvent",
    "Binary",
    "Person",
    "Task",
    "Provenance",
    "Communication",
    "CommunicationRequest",
    "Subscription",
    "Endpoint",
];

/// Elements (by definition path) that are identifiers although their type does not say so.
pub const IDENTIFIER_PATHS: &[(&str, IdentifierClass)] = &[
    ("Coverage.subscriberId", IdentifierClass::HealthPlanNumber),
    ("Device.serialNumber", IdentifierClass::DeviceIdentifier),
    ("Device.lotNumber", IdentifierClass::DeviceIdentifier),
    ("Device.distinctIdentifier", IdentifierClass::DeviceIdentifier),
    ("Device.udiCarrier", IdentifierClass::DeviceIdentifier),
    ("DeviceDefinition.udiDeviceIdentifier", IdentifierClass::DeviceIdentifier),
    ("Location.position", IdentifierClass::Geographic),
    ("Patient.photo", IdentifierClass::Photo),
    ("Practitioner.photo", IdentifierClass::Photo),
    ("RelatedPerson.photo", IdentifierClass::Photo),
    ("Person.photo", IdentifierClass::Photo),
    ("Signature.data", IdentifierClass::Biometric),
    ("Signature.who", IdentifierClass::Names),
    ("Meta.source", IdentifierClass::Url),
    // When the server wrote a version says when it was loaded, not when care happened; moved
    // with a patient's dates it would give the patient's shift away.
    ("Meta.lastUpdated", IdentifierClass::Dates),
    ("Annotation.authorString", IdentifierClass::Names),
    ("FamilyMemberHistory.name", IdentifierClass::Names),
    ("Coverage.dependent", IdentifierClass::HealthPlanNumber),
    ("Coverage.class.value", IdentifierClass::HealthPlanNumber),
    ("Claim.insurance.preAuthRef", IdentifierClass::AccountNumber),
    ("ExplanationOfBenefit.preAuthRef", IdentifierClass::AccountNumber),
    ("ExplanationOfBenefit.insurance.preAuthRef", IdentifierClass::AccountNumber),
    ("ClaimResponse.preAuthRef", IdentifierClass::AccountNumber),
    ("MolecularSequence.repository.url", IdentifierClass::Url),
    ("MolecularSequence.repository.datasetId", IdentifierClass::OtherUnique),
    ("ImagingStudy.series.uid", IdentifierClass::DeviceIdentifier),
    ("ImagingStudy.series.instance.uid", IdentifierClass::DeviceIdentifier),
    ("Device.url", IdentifierClass::Url),
    // A stored Bundle's addresses name resources by their real ids and searches by their
    // real values.
    ("Bundle.link", IdentifierClass::Url),
    ("Bundle.entry.link", IdentifierClass::Url),
    ("Bundle.entry.fullUrl", IdentifierClass::Url),
    ("Bundle.entry.request", IdentifierClass::Url),
    ("Bundle.entry.response", IdentifierClass::Url),
    ("Immunization.lotNumber", IdentifierClass::DeviceIdentifier),
    ("Medication.batch", IdentifierClass::DeviceIdentifier),
];

/// The class of an identifier path, if it is one.
pub fn path_class(path: &str) -> Option<IdentifierClass> {
    IDENTIFIER_PATHS.iter().find(|(p, _)| *p == path).map(|(_, class)| *class)
}

/// String elements that are a code system's words rather than anyone's: kept as they are,
/// apart from the patterns (a terminology display never names a patient, but a name that is
/// also a word, like White or Hart, would otherwise erase it from every display).
pub const TERMINOLOGY_TEXT: &[&str] = &["Coding.display", "Quantity.unit", "Coding.version"];

/// Extensions whose value names a person (removed whole, learnt as names).
pub const NAME_EXTENSIONS: &[&str] = &[
    "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
    "http://hl7.org/fhir/StructureDefinition/humanname-partner-name",
    "http://hl7.org/fhir/StructureDefinition/humanname-own-name",
];

/// `uri` elements kept as they are: they name code systems, definitions and kinds, never a
/// person. Any other `uri`, `url`, `oid` or `uuid` value is removed.
pub fn kept_uri(path: &str) -> bool {
    path.ends_with(".system")
        || matches!(path, "Extension.url" | "Reference.type" | "Meta.profile" | "Coding.system")
}

/// The class of an `Identifier`, from its type (HL7 table 0203) or its system.
pub fn identifier_class(identifier: &Value) -> IdentifierClass {
    let system = identifier.get("system").and_then(Value::as_str).unwrap_or("");
    let type_code = identifier
        .pointer("/type/coding")
        .and_then(Value::as_array)
        .and_then(|codings| codings.iter().find_map(|c| c.get("code").and_then(Value::as_str)))
        .unwrap_or("");
    match type_code {
        "MR" | "MRT" | "PI" => return IdentifierClass::MedicalRecordNumber,
        "SS" | "SB" => return IdentifierClass::Ssn,
        "DL" | "PPN" | "NPI" | "MD" | "LN" | "DEA" | "SL" | "TAX" | "PRN" | "NIIP" | "EN" | "BCT" => {
            return IdentifierClass::LicenseNumber;
        }
        "MB" | "SN" | "MA" | "MC" | "NH" | "NI" | "PN" => return IdentifierClass::HealthPlanNumber,
        "AN" | "ANT" | "VN" | "ACSN" => return IdentifierClass::AccountNumber,
        "UDI" | "SNO" => return IdentifierClass::DeviceIdentifier,
        _ => {}
    }
    let system = system.to_ascii_lowercase();
    if system.contains("us-ssn") || system.contains("ssn") {
        IdentifierClass::Ssn
    } else if system.contains("npi") || system.contains("license") || system.contains("licence") {
        IdentifierClass::LicenseNumber
    } else if system.contains("mrn") || system.contains("medical-record") {
        IdentifierClass::MedicalRecordNumber
    } else if system.contains("member")
        || system.contains("subscriber")
        || system.contains("medicare")
        || system.contains("medicaid")
    {
        IdentifierClass::HealthPlanNumber
    } else if system.contains("account") || system.contains("claim") || system.contains("visit") {
        IdentifierClass::AccountNumber
    } else if system.contains("udi") || system.contains("device") || system.contains("serial") {
        IdentifierClass::DeviceIdentifier
    } else if system.contains("vin") || system.contains("vehicle") {
        IdentifierClass::VehicleIdentifier
    } else {
        IdentifierClass::OtherUnique
    }
}

/// The class of a `ContactPoint`, from its system.
pub fn contact_class(contact: &Value) -> IdentifierClass {
    match contact.get("system").and_then(Value::as_str) {
        Some("fax") => IdentifierClass::Fax,
        Some("email") => IdentifierClass::Email,
        Some("url") => IdentifierClass::Url,
        _ => IdentifierClass::Telephone,
    }
}

/// The extension that stands for a birth date removed because the patient is 90 or older
/// (Safe Harbor lets such ages be one category).
pub const AGE_90_OR_OLDER: &str = "https://chartroom.dev/fhir/StructureDefinition/age-90-or-older";

/// The types whose identities are learnt before an extract of a record is made: the people
/// (patients, relatives, staff) and the numbers that name them (plans, devices).
pub const LEARN_FROM: &[&str] =
    &["Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Person", "Coverage", "Device"];
