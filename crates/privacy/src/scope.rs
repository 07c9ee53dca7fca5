//! SMART on FHIR scopes, v1 (`patient/Observation.read`, `user/*.write`, `.*`) and v2
//! (`patient/Observation.rs`, `user/*.cruds`, `system/*.read`).

use crate::Error;

/// What a request does to resources of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }
}

/// Whose data a scope opens: the patient in context, what the user may see, or a system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Patient,
    User,
    System,
}

/// One scope: a context, a resource type (`None` for `*`) and the interactions it permits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    pub resource_type: Option<String>,
    /// Letters of `cruds` permitted.
    pub permissions: String,
}

impl Scope {
    /// Parses one clinical scope. Non-clinical scopes (`openid`, `launch/patient`, ...) are
    /// `Ok(None)`.
    pub fn parse(text: &str) -> Result<Option<Scope>, Error> {
        let Some((context, rest)) = text.split_once('/') else { return Ok(None) };
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            "launch" => return Ok(None),
            other => return Err(Error::Scope(format!("'{text}': unknown context '{other}'"))),
        };
        let Some((resource_type, permission)) = rest.split_once('.') else {
            return Err(Error::Scope(format!("'{text}': expected context/Type.permissions")));
        };
        // v2 granular scopes narrow by search parameters (`?category=...`): not narrowed here,
        // so refused rather than silently widened.
        if permission.contains('?') {
            return Err(Error::Scope(format!("'{text}': scopes with search parameters are not supported")));
        }
        let permissions = match permission {
            "read" => "rs".to_string(),
            "write" => "cud".to_string(),
            "*" => "cruds".to_string(),
            letters
                if !letters.is_empty()
                    && letters.chars().all(|c| "cruds".contains(c))
                    && is_in_order(letters) =>
            {
                letters.to_string()
            }
            _ => {
                return Err(Error::Scope(format!(
                    "'{text}': permissions must be read, write, * or a subset of cruds in that order"
                )));
            }
        };
        let resource_type = match resource_type {
            "*" => None,
            name if fhir::definitions().is_resource_type(name) => Some(name.to_string()),
            name => return Err(Error::Scope(format!("'{text}': '{name}' is not a resource type"))),
        };
        Ok(Some(Scope { context, resource_type, permissions }))
    }

    /// Whether the scope permits `interaction` on `resource_type`.
    pub fn permits(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|t| t == resource_type)
            && self.permissions.contains(interaction.letter())
    }

    /// [`Scope::permits`], where `*` asks for every type: only a `*` scope permits that.
    fn permits_type(&self, interaction: Interaction, resource_type: &str) -> bool {
        if resource_type == "*" {
            self.resource_type.is_none() && self.permissions.contains(interaction.letter())
        } else {
            self.permits(interaction, resource_type)
        }
    }
}

fn is_in_order(letters: &str) -> bool {
    let positions: Vec<usize> = letters.chars().filter_map(|c| "cruds".find(c)).collect();
    positions.windows(2).all(|w| w[0] < w[1])
}

/// The clinical scopes of a token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(pub Vec<Scope>);

impl Scopes {
    /// Parses a space-separated scope string.
    pub fn parse(text: &str) -> Result<Scopes, Error> {
        let mut scopes = Vec::new();
        for part in text.split_whitespace() {
            if let Some(scope) = Scope::parse(part)? {
                scopes.push(scope);
            }
        }
        Ok(Scopes(scopes))
    }

    /// Whether some scope permits `interaction` on `resource_type`.
    pub fn permit(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.0.iter().any(|s| s.permits(interaction, resource_type))
    }

    /// Whether every scope is limited to the patient in context.
    pub fn patient_only(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|s| s.context == Context::Patient)
    }

    /// Whether some scope is limited to the patient in context (`patient/...`).
    pub fn has_patient_scopes(&self) -> bool {
        self.0.iter().any(|s| s.context == Context::Patient)
    }

    /// Whether some `user/` or `system/` scope permits `interaction` on `resource_type` (`*`:
    /// on every type): access beyond any one patient's record.
    pub fn permit_beyond_patient(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.0
            .iter()
            .filter(|s| s.context != Context::Patient)
            .any(|s| s.permits_type(interaction, resource_type))
    }

    /// Whether some `patient/` scope permits `interaction` on `resource_type` (`*`: on every
    /// type), within the patient in context.
    pub fn permit_in_patient_context(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.0
            .iter()
            .filter(|s| s.context == Context::Patient)
            .any(|s| s.permits_type(interaction, resource_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_permit_what_they_say() {
        let scopes = Scopes::parse(
            "openid fhirUser launch/patient patient/Observation.rs user/Patient.read system/*.c",
        )
        .unwrap();
        assert_eq!(scopes.0.len(), 3);
        assert!(scopes.permit(Interaction::Read, "Observation"));
        assert!(scopes.permit(Interaction::Search, "Observation"));
        assert!(!scopes.permit(Interaction::Update, "Observation"));
        assert!(scopes.permit(Interaction::Search, "Patient"));
        assert!(!scopes.permit(Interaction::Delete, "Patient"));
        assert!(scopes.permit(Interaction::Create, "Encounter"));
        assert!(!scopes.permit(Interaction::Read, "Encounter"));
        let all = Scopes::parse("user/*.cruds").unwrap();
        assert!(all.permit(Interaction::Delete, "Claim"));
        assert!(Scopes::parse("patient/*.read").unwrap().patient_only());
        assert!(!Scopes::parse("patient/*.read user/Patient.r").unwrap().patient_only());
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "patient/Observation",
            "user/Foo.read",
            "user/*.rc",
            "group/*.read",
            "user/*.x",
            "patient/Observation.rs?category=laboratory",
        ] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
    }
}
