//! The access-monitoring report a privacy officer reviews: accesses that deserve a second
//! look, from the audit trail and what the record says about users and patients.
//!
//! - no treatment relationship: a clinician opened a patient they have no encounter with and
//!   are not the general practitioner of;
//! - same surname, same address: possible snooping on family or neighbours;
//! - employee-patients and flagged VIPs (`meta.security` or `meta.tag` code `VIP`);
//! - volume far above the user's own baseline (a day with more than three times their median
//!   daily accesses, and at least [`VOLUME_FLOOR`]);
//! - every break-the-glass access.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::audit::Access;

/// Fewest accesses in a day that can count as unusual volume.
pub const VOLUME_FLOOR: usize = 50;

/// What the record says about one person.
#[derive(Clone, Debug, Default)]
pub struct Person {
    pub family: Option<String>,
    pub address: Option<String>,
}

/// What the report needs to know besides the trail.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// User name → their FHIR resource (`Practitioner/...`).
    pub fhir_users: HashMap<String, String>,
    /// A user's FHIR resource → their name and address (their own Patient record's address,
    /// for staff who are also patients).
    pub staff: HashMap<String, Person>,
    /// `Patient/...` → name and address.
    pub patients: HashMap<String, Person>,
    /// Patients who are employees, with the staff member (`Practitioner/...`) they are.
    pub employees: HashMap<String, String>,
    pub vips: HashSet<String>,
    /// (`Practitioner/...`, `Patient/...`) with an encounter or a general-practitioner link.
    pub relationships: HashSet<(String, String)>,
}

/// Gathers [`Facts`] from the users and one pass over the record: the CLI's report and the
/// workbench's page feed it the same way, so both judge accesses on the same facts.
#[derive(Default)]
pub struct FactsBuilder {
    facts: Facts,
    /// Staff numbers (a Practitioner's identifiers) → `Practitioner/...`.
    staff_numbers: HashMap<String, String>,
    /// (`Patient/...`, employee number) of patients with an employee identifier (`EI`).
    employee_numbers: Vec<(String, String)>,
}

impl FactsBuilder {
    /// The resource types whose resources [`FactsBuilder::add`] reads: a caller need feed it
    /// no others.
    pub const TYPES: [&'static str; 3] = ["Encounter", "Patient", "Practitioner"];

    /// Starts from the users (name, role, patient, FHIR resource).
    pub fn new(users: &[crate::users::UserRecord]) -> FactsBuilder {
        let mut builder = FactsBuilder::default();
        for (name, _, _, fhir_user) in users {
            if let Some(fhir_user) = fhir_user {
                builder.facts.fhir_users.insert(name.clone(), fhir_user.clone());
            }
        }
        builder
    }

    /// Takes in what one stored resource says: encounters' participants, practitioners,
    /// patients' addresses, general practitioners, employee numbers and VIP flags.
    pub fn add(&mut self, resource_type: &str, id: &str, resource: &serde_json::Value) {
        let key = format!("{resource_type}/{id}");
        let family = resource["name"][0]["family"].as_str().map(str::to_string);
        match resource_type {
            "Encounter" => {
                if let Some(subject) = resource["subject"]["reference"].as_str() {
                    for participant in resource["participant"].as_array().into_iter().flatten() {
                        if let Some(who) = participant["individual"]["reference"].as_str() {
                            self.facts.relationships.insert((who.to_string(), subject.to_string()));
                        }
                    }
                }
            }
            "Practitioner" => {
                for identifier in resource["identifier"].as_array().into_iter().flatten() {
                    if let Some(value) = identifier["value"].as_str() {
                        self.staff_numbers.insert(value.to_string(), key.clone());
                    }
                }
                self.facts.staff.insert(key, Person { family, address: None });
            }
            "Patient" => {
                let address = resource["address"][0]["line"][0].as_str().map(str::to_string);
                for gp in resource["generalPractitioner"].as_array().into_iter().flatten() {
                    if let Some(who) = gp["reference"].as_str() {
                        self.facts.relationships.insert((who.to_string(), key.clone()));
                    }
                }
                for identifier in resource["identifier"].as_array().into_iter().flatten() {
                    if identifier["type"]["coding"][0]["code"] == "EI"
                        && let Some(value) = identifier["value"].as_str()
                    {
                        self.employee_numbers.push((key.clone(), value.to_string()));
                    }
                }
                let flagged = ["security", "tag"].iter().any(|list| {
                    resource["meta"][*list].as_array().into_iter().flatten().any(|c| c["code"] == "VIP")
                });
                if flagged {
                    self.facts.vips.insert(key.clone());
                }
                self.facts.patients.insert(key, Person { family, address });
            }
            _ => {}
        }
    }

    /// The facts, once every resource was added: staff who are patients get their own
    /// record's home address.
    pub fn finish(mut self) -> Facts {
        for (patient, number) in std::mem::take(&mut self.employee_numbers) {
            if let Some(practitioner) = self.staff_numbers.get(&number) {
                let address = self.facts.patients.get(&patient).and_then(|p| p.address.clone());
                if let Some(person) = self.facts.staff.get_mut(practitioner) {
                    person.address = address;
                }
                self.facts.employees.insert(patient, practitioner.clone());
            }
        }
        self.facts
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    NoTreatmentRelationship,
    SameSurname,
    SameAddress,
    EmployeePatient,
    Vip,
    UnusualVolume,
    BreakTheGlass,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NoTreatmentRelationship => "no-treatment-relationship",
            FindingKind::SameSurname => "same-surname",
            FindingKind::SameAddress => "same-address",
            FindingKind::EmployeePatient => "employee-patient",
            FindingKind::Vip => "vip",
            FindingKind::UnusualVolume => "unusual-volume",
            FindingKind::BreakTheGlass => "break-the-glass",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub seq: i64,
    pub recorded: String,
    pub user: String,
    pub patient: Option<String>,
    pub detail: String,
}

fn same(a: &Option<String>, b: &Option<String>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if !a.is_empty() && a.eq_ignore_ascii_case(b))
}

/// The findings over `entries` (seq, recorded, access), in trail order.
pub fn review(entries: &[(i64, String, Access)], facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut per_day: BTreeMap<(String, String), (usize, i64, String)> = BTreeMap::new();
    for (seq, recorded, access) in entries {
        let allowed = access.status < 400;
        let day = recorded.get(..10).unwrap_or(recorded).to_string();
        let slot = per_day.entry((access.user.clone(), day)).or_insert((0, *seq, recorded.clone()));
        slot.0 += 1;
        let mut found = |kind: FindingKind, patient: Option<&String>, detail: String| {
            findings.push(Finding {
                kind,
                seq: *seq,
                recorded: recorded.clone(),
                user: access.user.clone(),
                patient: patient.cloned(),
                detail,
            });
        };
        if let Some(reason) = &access.break_glass_reason {
            found(FindingKind::BreakTheGlass, access.patients.first(), format!("reason: {reason}"));
        }
        if !allowed {
            continue;
        }
        let me = facts.fhir_users.get(&access.user);
        let my_person = me.and_then(|m| facts.staff.get(m));
        for patient in &access.patients {
            let person = facts.patients.get(patient);
            if access.role == "clinician"
                && let Some(me) = me
                && !facts.relationships.contains(&(me.clone(), patient.clone()))
            {
                found(
                    FindingKind::NoTreatmentRelationship,
                    Some(patient),
                    format!("{me} has no encounter with {patient}"),
                );
            }
            if let (Some(mine), Some(theirs)) = (my_person, person) {
                if same(&mine.family, &theirs.family) {
                    found(
                        FindingKind::SameSurname,
                        Some(patient),
                        format!("both named {}", theirs.family.as_deref().unwrap_or("")),
                    );
                }
                if same(&mine.address, &theirs.address) {
                    found(
                        FindingKind::SameAddress,
                        Some(patient),
                        format!("both at {}", theirs.address.as_deref().unwrap_or("")),
                    );
                }
            }
            if let Some(employee) = facts.employees.get(patient)
                && me != Some(employee)
            {
                found(
                    FindingKind::EmployeePatient,
                    Some(patient),
                    format!("{patient} is staff member {employee}"),
                );
            }
            if facts.vips.contains(patient) {
                found(FindingKind::Vip, Some(patient), "flagged VIP".to_string());
            }
        }
    }
    // Volume: each user's days against the user's own median day.
    let mut days_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for ((user, _), (count, _, _)) in &per_day {
        days_of.entry(user).or_default().push(*count);
    }
    for ((user, day), (count, seq, recorded)) in &per_day {
        let mut counts = days_of[user.as_str()].clone();
        counts.sort_unstable();
        let median = counts[counts.len() / 2];
        if counts.len() > 1 && *count >= VOLUME_FLOOR && *count > 3 * median.max(1) {
            findings.push(Finding {
                kind: FindingKind::UnusualVolume,
                seq: *seq,
                recorded: recorded.clone(),
                user: user.clone(),
                patient: None,
                detail: format!("{count} accesses on {day}; their median day is {median}"),
            });
        }
    }
    findings.sort_by_key(|f| (f.seq, f.kind));
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(user: &str, role: &str, patient: &str) -> Access {
        Access {
            user: user.into(),
            role: role.into(),
            interaction: "read".into(),
            action: "R",
            status: 200,
            patients: vec![patient.into()],
            ..Access::default()
        }
    }

    #[test]
    fn each_kind_of_access_worth_a_look_is_found_and_care_is_not() {
        let mut facts = Facts::default();
        facts.fhir_users.insert("grey".into(), "Practitioner/1".into());
        facts.staff.insert(
            "Practitioner/1".into(),
            Person { family: Some("Grey".into()), address: Some("1 Elm St".into()) },
        );
        let person = |family: &str, address: &str| Person {
            family: Some(family.into()),
            address: Some(address.into()),
        };
        facts.patients.insert("Patient/cared".into(), person("Smith", "9 Oak Ave"));
        facts.patients.insert("Patient/brother".into(), person("Grey", "5 Pine Rd"));
        facts.patients.insert("Patient/neighbour".into(), person("Jones", "1 Elm St"));
        facts.patients.insert("Patient/nurse".into(), person("Lee", "7 Ash Ct"));
        facts.patients.insert("Patient/star".into(), person("Star", "1 Sunset Blvd"));
        facts.employees.insert("Patient/nurse".into(), "Practitioner/2".into());
        facts.vips.insert("Patient/star".into());
        facts.relationships.insert(("Practitioner/1".into(), "Patient/cared".into()));
        let mut entries = Vec::new();
        let mut seq = 0;
        let mut push = |day: &str, access: Access| {
            seq += 1;
            entries.push((seq, format!("{day}T10:00:00Z"), access));
        };
        push("2026-01-01", access("grey", "clinician", "Patient/cared"));
        push("2026-01-01", access("grey", "clinician", "Patient/brother"));
        push("2026-01-01", access("grey", "clinician", "Patient/neighbour"));
        push("2026-01-01", access("kim", "coder", "Patient/nurse"));
        push("2026-01-01", access("kim", "coder", "Patient/star"));
        let mut glass = access("grey", "clinician", "Patient/cared");
        glass.break_glass_reason = Some("unconscious".into());
        push("2026-01-01", glass);
        for _ in 0..80 {
            push("2026-01-02", access("kim", "coder", "Patient/cared"));
        }
        push("2026-01-03", access("kim", "coder", "Patient/cared"));
        push("2026-01-04", access("kim", "coder", "Patient/cared"));
        let findings = review(&entries, &facts);
        let kinds = |patient: &str| -> Vec<FindingKind> {
            findings.iter().filter(|f| f.patient.as_deref() == Some(patient)).map(|f| f.kind).collect()
        };
        assert!(kinds("Patient/brother").contains(&FindingKind::SameSurname));
        assert!(kinds("Patient/brother").contains(&FindingKind::NoTreatmentRelationship));
        assert!(kinds("Patient/neighbour").contains(&FindingKind::SameAddress));
        assert_eq!(kinds("Patient/nurse"), vec![FindingKind::EmployeePatient]);
        assert_eq!(kinds("Patient/star"), vec![FindingKind::Vip]);
        assert_eq!(findings.iter().filter(|f| f.kind == FindingKind::BreakTheGlass).count(), 1);
        let volume: Vec<&Finding> =
            findings.iter().filter(|f| f.kind == FindingKind::UnusualVolume).collect();
        assert_eq!(volume.len(), 1);
        assert!(volume[0].detail.starts_with("80 accesses on 2026-01-02"), "{}", volume[0].detail);
        // Caring for one's own patient raises nothing.
        assert!(findings.iter().all(|f| f.seq != 1), "{findings:?}");
    }
}
