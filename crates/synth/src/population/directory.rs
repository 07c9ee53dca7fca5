//! The care directory every record refers to: the provider organizations and their
//! locations, the payers, and the practitioners (some of whom are also patients). It comes
//! first in the output and is drawn from a stream of its own, apart from every patient's.

use serde_json::{Value, json};

use crate::calendar::*;
use crate::rng::Rng;
use crate::truth::models::{self, Outbreak};
use crate::truth::{self, TruthOptions};
use crate::vocab;
use crate::{Error, GenerateOptions, Sink};

pub(super) struct Provider {
    pub(super) id: &'static str,
    name: &'static str,
    hospital: bool,
    line: &'static str,
    city: &'static str,
    zip: &'static str,
    phone: &'static str,
}

pub(super) const PROVIDERS: &[Provider] = &[
    Provider {
        id: "org-riverside",
        name: "Riverside General Hospital",
        hospital: true,
        line: "3535 Olentangy River Rd",
        city: "Columbus",
        zip: "43214",
        phone: "614-555-0100",
    },
    Provider {
        id: "org-stbrendan",
        name: "St. Brendan Medical Center",
        hospital: true,
        line: "500 Hospital Dr",
        city: "Newark",
        zip: "43055",
        phone: "740-555-0110",
    },
    Provider {
        id: "org-maplestreet",
        name: "Maple Street Family Medicine",
        hospital: false,
        line: "120 Maple St",
        city: "Columbus",
        zip: "43215",
        phone: "614-555-0120",
    },
    Provider {
        id: "org-lakeview",
        name: "Lakeview Primary Care",
        hospital: false,
        line: "88 Lakeview Ave",
        city: "Delaware",
        zip: "43015",
        phone: "740-555-0130",
    },
    Provider {
        id: "org-northgate",
        name: "Northgate Community Health Center",
        hospital: false,
        line: "2100 Northgate Blvd",
        city: "Lancaster",
        zip: "43130",
        phone: "740-555-0140",
    },
];

pub(super) const HOSPITALS: &[usize] = &[0, 1];
pub(super) const CLINICS: &[usize] = &[2, 3, 4];

pub(super) struct Payer {
    pub(super) id: &'static str,
    name: &'static str,
    pub(super) plan: &'static str,
}

pub(super) const MEDICARE: usize = 0;
pub(super) const MEDICAID: usize = 1;
pub(super) const PAYERS: &[Payer] = &[
    Payer { id: "org-medicare", name: "Medicare", plan: "Medicare Part A and B" },
    Payer { id: "org-medicaid", name: "Ohio Medicaid", plan: "Medicaid managed care" },
    Payer { id: "org-buckeye", name: "Buckeye Mutual Health Plan", plan: "Buckeye PPO" },
    Payer { id: "org-greatlakes", name: "Great Lakes Health Insurance", plan: "Great Lakes HMO" },
];

pub(super) const PRACTITIONERS_PER_PROVIDER: usize = 8;

pub(super) fn practitioner_id(provider: usize, slot: usize) -> String {
    format!("prac-{:03}", provider * PRACTITIONERS_PER_PROVIDER + slot + 1)
}

pub(super) fn ed_location(provider: usize) -> String {
    format!("loc-{}-ed", &PROVIDERS[provider].id[4..])
}

pub(super) fn ward_location(provider: usize) -> String {
    format!("loc-{}-ward", &PROVIDERS[provider].id[4..])
}

pub(super) fn clinic_location(provider: usize) -> String {
    format!("loc-{}-clinic", &PROVIDERS[provider].id[4..])
}

/// The stream of the directory, apart from every patient's.
const DIRECTORY_STREAM: u64 = u64::MAX;

/// A practitioner of the directory.
pub(crate) struct StaffMember {
    pub(super) given: &'static str,
    pub(super) family: &'static str,
    pub(super) female: bool,
    pub(super) birth: i64,
    pub(super) staff_id: String,
}

pub(super) const STAFF_SYSTEM: &str = "http://hospital.example.org/staff";

fn draw_staff(seed: u64) -> Vec<StaffMember> {
    let mut rng = Rng::stream(seed, DIRECTORY_STREAM);
    let mut staff = Vec::new();
    for provider in 0..PROVIDERS.len() {
        for slot in 0..PRACTITIONERS_PER_PROVIDER {
            let female = rng.chance(0.5);
            let given = if female { rng.pick(vocab::FEMALE_GIVEN) } else { rng.pick(vocab::MALE_GIVEN) };
            let family = rng.pick(vocab::SURNAMES);
            let age = rng.range(28, 66);
            let birth = TODAY - age * 365 - age / 4 - rng.range(1, 364);
            let staff_id = format!("S{:05}", 1000 + provider * 100 + slot);
            staff.push(StaffMember { given, family, female, birth, staff_id });
        }
    }
    staff
}

/// Every third practitioner is also a patient: practitioner `3k` is patient `3 + 51k`.
pub(super) fn employee_of(index: usize, staff: usize) -> Option<usize> {
    let k = index.checked_sub(3)?;
    (k % 51 == 0 && 3 * (k / 51) < staff).then_some(3 * (k / 51))
}

/// What every patient's generation shares: the seed, what to plant, the directory's staff
/// and the outbreaks.
pub(crate) struct Plan {
    pub(super) seed: u64,
    pub(super) truth: TruthOptions,
    pub(super) staff: Vec<StaffMember>,
    pub(super) outbreaks: Vec<Outbreak>,
}

impl Plan {
    pub(crate) fn new(options: &GenerateOptions) -> Plan {
        Plan {
            seed: options.seed,
            truth: options.truth.clone(),
            staff: draw_staff(options.seed),
            outbreaks: models::outbreaks(options.seed, &options.truth),
        }
    }

    pub(crate) fn parameters(&self, patients: usize) -> Value {
        truth::parameters(self.seed, patients, &self.truth, &self.outbreaks)
    }
}

pub(crate) fn write_directory(plan: &Plan, sink: &mut Sink) -> Result<(), Error> {
    let org_type = "http://terminology.hl7.org/CodeSystem/organization-type";
    for provider in PROVIDERS {
        sink.write(&json!({
            "resourceType": "Organization",
            "id": provider.id,
            "active": true,
            "type": [concept(org_type, "prov", "Healthcare Provider")],
            "name": provider.name,
            "telecom": [{ "system": "phone", "value": provider.phone, "use": "work" }],
            "address": [{ "use": "work", "line": [provider.line], "city": provider.city, "state": "OH",
                          "postalCode": provider.zip, "country": "US" }],
        }))?;
    }
    for payer in PAYERS {
        sink.write(&json!({
            "resourceType": "Organization",
            "id": payer.id,
            "active": true,
            "type": [concept(org_type, "pay", "Payer")],
            "name": payer.name,
        }))?;
    }
    let role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
    for (index, provider) in PROVIDERS.iter().enumerate() {
        let mut sites = Vec::new();
        if provider.hospital {
            sites.push((
                ed_location(index),
                format!("{} Emergency Department", provider.name),
                "ER",
                "Emergency room",
            ));
            sites.push((
                ward_location(index),
                format!("{} Medical-Surgical Unit", provider.name),
                "HU",
                "Hospital unit",
            ));
        } else {
            sites.push((clinic_location(index), provider.name.to_string(), "PC", "Primary care clinic"));
        }
        for (id, name, code, display) in sites {
            sink.write(&json!({
                "resourceType": "Location",
                "id": id,
                "status": "active",
                "name": name,
                "mode": "instance",
                "type": [concept(role, code, display)],
                "telecom": [{ "system": "phone", "value": provider.phone, "use": "work" }],
                "address": { "use": "work", "line": [provider.line], "city": provider.city, "state": "OH",
                             "postalCode": provider.zip, "country": "US" },
                "managingOrganization": reference(&format!("Organization/{}", provider.id)),
            }))?;
        }
    }
    for (number, member) in plan.staff.iter().enumerate() {
        let (given, family) = (member.given, member.family);
        sink.write(&json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(number / PRACTITIONERS_PER_PROVIDER, number % PRACTITIONERS_PER_PROVIDER),
            "identifier": [{ "system": STAFF_SYSTEM, "value": member.staff_id }],
            "active": true,
            "name": [{ "use": "official", "family": family, "given": [given], "prefix": ["Dr."] }],
            "telecom": [{ "system": "email", "value": format!("{}.{}@hospital.example.org",
                given.to_ascii_lowercase(), family.to_ascii_lowercase().replace(['\'', ' ', '.'], "")), "use": "work" }],
            "gender": if member.female { "female" } else { "male" },
            "birthDate": date(member.birth),
        }))?;
    }
    Ok(())
}
