//! The roles of an HIM department, each with the scopes it grants.

use crate::Error;
use crate::scope::Scopes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Clinician,
    Coder,
    HimTechnician,
    PrivacyOfficer,
    Analyst,
    Patient,
    Admin,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Clinician,
        Role::Coder,
        Role::HimTechnician,
        Role::PrivacyOfficer,
        Role::Analyst,
        Role::Patient,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Coder => "coder",
            Role::HimTechnician => "him-technician",
            Role::PrivacyOfficer => "privacy-officer",
            Role::Analyst => "analyst",
            Role::Patient => "patient",
            Role::Admin => "admin",
        }
    }

    /// The purpose of use (HL7 v3 ActReason) a role's accesses serve when a request states
    /// none (`X-Purpose-Of-Use`): what an accounting of disclosures shows as implied.
    pub fn usual_purpose(self) -> (&'static str, &'static str) {
        match self {
            Role::Clinician => ("TREAT", "treatment"),
            Role::Coder => ("HPAYMT", "healthcare payment"),
            Role::HimTechnician | Role::PrivacyOfficer | Role::Analyst => {
                ("HOPERAT", "healthcare operations")
            }
            Role::Patient => ("PATRQT", "patient requested"),
            Role::Admin => ("HSYSADMIN", "health system administration"),
        }
    }

    pub fn parse(text: &str) -> Result<Role, Error> {
        Role::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            Error::Role(format!("unknown role '{text}'; roles: {}", known.join(", ")))
        })
    }

    /// What the role may do, as SMART scopes.
    pub fn scopes(self) -> Scopes {
        let text = match self {
            // Care and the record's upkeep: everything, for the patients they serve.
            Role::Clinician | Role::HimTechnician => "user/*.cruds",
            // Coders read the record and write the codes (Conditions, Claims, Encounters).
            Role::Coder => "user/*.rs user/Condition.cu user/Claim.cu user/Encounter.u",
            // The privacy office also records patients' consent directives.
            Role::PrivacyOfficer => "user/*.rs user/Consent.cud",
            Role::Analyst => "user/*.rs",
            Role::Patient => "patient/*.rs",
            Role::Admin => "system/*.cruds",
        };
        Scopes::parse(text).unwrap_or_default()
    }

    /// Whether the role may read the audit trail (AuditEvent).
    pub fn reads_audit(self) -> bool {
        matches!(self, Role::PrivacyOfficer | Role::Admin)
    }
}

/// Who is asking, as established from their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's name (API token) or the token's subject (JWT).
    pub user: String,
    pub role: Role,
    /// The patient in context, for patient-facing tokens.
    pub patient: Option<String>,
    pub scopes: Scopes,
    /// `fhirUser` (e.g. `Practitioner/prac-001`), when known.
    pub fhir_user: Option<String>,
}

impl Identity {
    /// Whoever asks without a token where the policy lets anyone in
    /// ([`crate::policy::open_to_anyone`]): no scopes, so nothing else opens to them.
    pub fn unauthenticated() -> Identity {
        Identity {
            user: "unauthenticated".into(),
            role: Role::Analyst,
            patient: None,
            scopes: Scopes::default(),
            fhir_user: None,
        }
    }

    /// The identity of a server run without authentication (`--insecure-no-auth`, `demo`).
    pub fn anonymous_admin() -> Identity {
        Identity {
            user: "anonymous".into(),
            role: Role::Admin,
            patient: None,
            scopes: Role::Admin.scopes(),
            fhir_user: None,
        }
    }
}
