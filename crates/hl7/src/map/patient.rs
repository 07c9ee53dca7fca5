//! PID to Patient.

use serde_json::Value as Json;

use super::codes::{self, V2_0203, concept, urn_part};
use super::json::{Object, array};
use super::{Context, MappingConfig, clean, ids, missing, text};
use crate::error::{Error, ErrorCode};
use crate::message::{Repetition, Segment};

const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";

/// The identifier a patient is keyed on: (system, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatientKey {
    pub system: String,
    pub value: String,
}

pub(crate) struct MappedPatient {
    pub id: String,
    pub key: PatientKey,
    pub resource: Json,
    /// Whether PID said anything beyond identifiers.
    pub has_demographics: bool,
}

pub(crate) fn map(pid: &Segment, context: &Context) -> Result<MappedPatient, Error> {
    let config = context.config;
    let key = key_identifier(pid, 3, config)?;
    let id = ids::patient_id(&key.system, &key.value);

    let mut identifiers: Vec<Json> =
        pid.field(3).repetitions().iter().filter_map(|cx| identifier(cx, config)).collect();
    if let Some(ssn) = text(pid, 19, 1) {
        identifiers.push(
            Object::new()
                .set("type", concept(V2_0203, "SS"))
                .set("system", SSN_SYSTEM)
                .set("value", ssn)
                .build(),
        );
    }
    dedup_identifiers(&mut identifiers);

    let names = array(pid.field(5).repetitions().iter().filter_map(human_name));
    let telecom = array(
        pid.field(13)
            .repetitions()
            .iter()
            .filter_map(|xtn| contact_point(xtn, "home"))
            .chain(pid.field(14).repetitions().iter().filter_map(|xtn| contact_point(xtn, "work"))),
    );
    let gender = match text(pid, 8, 1) {
        Some(code) => Some(codes::gender(&code).ok_or_else(|| {
            Error::at(
                ErrorCode::TableValueNotFound,
                pid.location(8),
                format!("PID-8 {code:?} is not an administrative sex of table 0001"),
            )
        })?),
        None => None,
    };
    let birth_date = context.date(pid, 7)?;
    let addresses = array(pid.field(11).repetitions().iter().filter_map(address));
    let marital_status = pid.field(16).repetition(1).and_then(|cwe| marital_status(&cwe));
    let deceased_date = context.datetime(pid, 29)?;
    let deceased_flag = match text(pid, 30, 1).as_deref() {
        Some("Y") => Some(true),
        Some("N") => Some(false),
        _ => None,
    };

    let demographics = Object::new()
        .set("name", names)
        .set("telecom", telecom)
        .maybe("gender", gender)
        .maybe("birthDate", birth_date)
        .maybe("deceasedDateTime", deceased_date.clone())
        .maybe("deceasedBoolean", if deceased_date.is_none() { deceased_flag } else { None })
        .set("address", addresses)
        .maybe("maritalStatus", marital_status);
    let has_demographics = !demographics.is_empty();
    let mut resource = Object::new()
        .set("resourceType", "Patient")
        .set("id", id.clone())
        .set("identifier", Json::Array(identifiers))
        .build();
    if let (Json::Object(resource), Json::Object(rest)) = (&mut resource, demographics.build()) {
        resource.extend(rest);
    }
    Ok(MappedPatient { id, key, resource, has_demographics })
}

/// The identifier a patient is keyed on, from a CX list (PID-3, MRG-1): the first of type MR,
/// else the first with a value.
pub(crate) fn key_identifier(
    segment: &Segment,
    field: usize,
    config: &MappingConfig,
) -> Result<PatientKey, Error> {
    let repetitions = segment.field(field).repetitions();
    let with_value = |cx: &&Repetition| clean(cx.text(1)).is_some();
    let chosen = repetitions
        .iter()
        .filter(with_value)
        .find(|cx| clean(cx.text(5)).as_deref() == Some("MR"))
        .or_else(|| repetitions.iter().find(with_value));
    let Some(cx) = chosen else {
        return Err(missing(segment, field, "patient identifier list"));
    };
    Ok(PatientKey { system: identifier_system(cx, config), value: clean(cx.text(1)).unwrap_or_default() })
}

/// A CX repetition as an Identifier.
fn identifier(cx: &Repetition, config: &MappingConfig) -> Option<Json> {
    let value = clean(cx.text(1))?;
    let kind = clean(cx.text(5));
    Some(
        Object::new()
            .maybe("type", kind.map(|k| concept(V2_0203, &k)))
            .set("system", identifier_system(cx, config))
            .set("value", value)
            .build(),
    )
}

/// The system of a patient identifier (CX).
///
/// A social security number is always the US SSN system. An MR number, or one of no type,
/// takes its system from its assigning authority (CX.4), as configured, else from the
/// authority's OID, URI or UUID, else a URN made from its namespace; with no authority it is
/// the configured MRN system. Any other type gets a URN of its own from authority and type, so
/// it can never be confused with the medical record numbers of the same authority.
fn identifier_system(cx: &Repetition, config: &MappingConfig) -> String {
    let kind = clean(cx.text(5));
    match kind.as_deref() {
        Some("SS") => SSN_SYSTEM.to_string(),
        None | Some("MR") => hd_system(cx, 4, config).unwrap_or_else(|| config.mrn_system.clone()),
        Some(kind) => match hd_namespace(cx, 4) {
            Some(namespace) => {
                format!("urn:chartroom:v2:authority:{}:{}", urn_part(&namespace), urn_part(kind))
            }
            None => format!("urn:chartroom:v2:identifier-type:{}", urn_part(kind)),
        },
    }
}

/// The namespace (or else universal id) of an HD in component `component`.
fn hd_namespace(repetition: &Repetition, component: usize) -> Option<String> {
    let hd = repetition.component(component)?;
    clean(hd.subcomponent(1).into_text()).or_else(|| clean(hd.subcomponent(2).into_text()))
}

/// The system for an assigning authority given as an HD in component `component` of a
/// repetition (namespace & universal id & universal id type).
fn hd_system(repetition: &Repetition, component: usize, config: &MappingConfig) -> Option<String> {
    let hd = repetition.component(component)?;
    let part = |n| clean(hd.subcomponent(n).into_text());
    authority_system(config, part(1), part(2), part(3))
}

/// An assigning authority as a system URI: as configured (by namespace or universal id); else
/// the universal id when it is an OID, URI or UUID; else a URN made from the namespace.
fn authority_system(
    config: &MappingConfig,
    namespace: Option<String>,
    universal: Option<String>,
    universal_type: Option<String>,
) -> Option<String> {
    let configured = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| config.authority_systems.iter().find(|(a, _)| a == n).map(|(_, s)| s.clone()))
    };
    if let Some(system) = configured(&namespace).or_else(|| configured(&universal)) {
        return Some(system);
    }
    if let Some(universal) = &universal {
        match universal_type.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("ISO") => return Some(format!("urn:oid:{universal}")),
            Some("UUID") => return Some(format!("urn:uuid:{}", universal.to_ascii_lowercase())),
            Some("URI") | Some("URL") => return Some(universal.clone()),
            _ => {}
        }
    }
    namespace.or(universal).map(|n| format!("urn:chartroom:v2:authority:{}", urn_part(&n)))
}

fn dedup_identifiers(identifiers: &mut Vec<Json>) {
    let mut seen = std::collections::HashSet::new();
    identifiers.retain(|identifier| {
        seen.insert((identifier["system"].to_string(), identifier["value"].to_string()))
    });
}

/// An XPN repetition as a HumanName.
pub(crate) fn human_name(xpn: &Repetition) -> Option<Json> {
    let part = |n| clean(xpn.text(n));
    let family = part(1);
    let given: Vec<Json> = [part(2), part(3)].into_iter().flatten().map(Json::from).collect();
    if family.is_none() && given.is_empty() {
        return None;
    }
    let suffix: Vec<Json> = [part(4), part(6)].into_iter().flatten().map(Json::from).collect();
    let prefix: Vec<Json> = part(5).into_iter().map(Json::from).collect();
    Some(
        Object::new()
            .maybe("use", part(7).and_then(|c| codes::name_use(&c)))
            .maybe("family", family)
            .set("given", given)
            .set("prefix", prefix)
            .set("suffix", suffix)
            .build(),
    )
}

/// An XTN repetition as a ContactPoint; `default_use` is what the field says (PID-13 home,
/// PID-14 work) unless the XTN says more.
fn contact_point(xtn: &Repetition, default_use: &'static str) -> Option<Json> {
    let part = |n| clean(xtn.text(n));
    let use_code = part(2);
    let equipment = part(3).map(|e| e.to_ascii_uppercase());
    let email = equipment.as_deref() == Some("INTERNET") || use_code.as_deref() == Some("NET");
    let (system, value) = if email {
        ("email", part(4).or_else(|| part(1))?)
    } else {
        let system = match equipment.as_deref() {
            Some("FX") => "fax",
            Some("BP") => "pager",
            Some("X.400") => "other",
            _ => "phone",
        };
        (system, part(12).or_else(|| phone_number(xtn)).or_else(|| part(1))?)
    };
    let contact_use = match (equipment.as_deref(), use_code.as_deref()) {
        (Some("CP"), _) => "mobile",
        (_, Some("WPN")) => "work",
        (_, Some("PRN" | "ORN" | "VHN")) => "home",
        _ => default_use,
    };
    Some(Object::new().set("system", system).set("value", value).set("use", contact_use).build())
}

/// A phone number from its parts (country code, area code, local number, extension).
fn phone_number(xtn: &Repetition) -> Option<String> {
    let part = |n| clean(xtn.text(n));
    let local = part(7)?;
    let mut out = String::new();
    if let Some(country) = part(5) {
        out.push_str(&format!("+{country} "));
    }
    if let Some(area) = part(6) {
        out.push_str(&format!("({area}) "));
    }
    out.push_str(&local);
    if let Some(extension) = part(8) {
        out.push_str(&format!(" ext. {extension}"));
    }
    Some(out)
}

/// An XAD repetition as an Address.
fn address(xad: &Repetition) -> Option<Json> {
    let part = |n| clean(xad.text(n));
    let lines: Vec<Json> = [part(1), part(2)].into_iter().flatten().map(Json::from).collect();
    let data = Object::new()
        .set("line", lines)
        .maybe("city", part(3))
        .maybe("district", part(9))
        .maybe("state", part(4))
        .maybe("postalCode", part(5))
        .maybe("country", part(6));
    if data.is_empty() {
        return None;
    }
    let kind = part(7);
    let mut address = Object::new()
        .maybe("use", kind.as_deref().and_then(codes::address_use))
        .maybe("type", kind.as_deref().and_then(codes::address_type))
        .build();
    if let (Json::Object(address), Json::Object(rest)) = (&mut address, data.build()) {
        address.extend(rest);
    }
    Some(address)
}

/// PID-16 as a CodeableConcept in the v3 MaritalStatus system where table 0002 maps to it.
fn marital_status(cwe: &Repetition) -> Option<Json> {
    let code = clean(cwe.text(1))?;
    let coding = match codes::marital_status(&code) {
        Some((system, mapped)) => codes::fixed_coding(system, mapped),
        None => codes::fixed_coding("http://terminology.hl7.org/CodeSystem/v2-0002", &code),
    };
    Some(Object::new().set("coding", vec![coding]).maybe("text", clean(cwe.text(2))).build())
}
