//! The clinical note of a visit as a DocumentReference: a progress note, emergency
//! department note or discharge summary in words as clinicians write them, with the text
//! base64-encoded as the attachment requires.

use std::fmt::Write as _;

use serde_json::json;

use super::directory::PROVIDERS;
use super::observations::{LabResult, Vitals};
use super::person::Person;
use super::visits::{Class, Visit};
use crate::calendar::*;
use crate::clinical::Dx;
use crate::rng::Rng;
use crate::{Error, Sink};

/// One of several phrases for the same thing, so notes do not all read alike.
fn phrase(rng: &mut Rng, words: &'static [&'static str]) -> &'static str {
    if rng.chance(0.5) { words[0] } else { words[rng.below(words.len() as u64) as usize] }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_note(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    diagnoses: &[(String, &'static Dx)],
    vitals: &Vitals,
    results: &[LabResult],
    procedures: &[&str],
    started: &[&str],
    vaccines: &[(&str, &str)],
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<(), Error> {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let (type_code, type_display, title) = match visit.class {
        Class::Ambulatory => ("11506-3", "Progress note", "Progress note"),
        Class::Emergency => ("34111-5", "Emergency department Note", "Emergency department note"),
        Class::Inpatient => ("18842-5", "Discharge summary", "Discharge summary"),
    };
    let who = match (age >= 18, person.female) {
        (true, true) => "woman",
        (true, false) => "man",
        (false, true) => "girl",
        (false, false) => "boy",
    };
    let mut text = String::with_capacity(1024);
    let _ = writeln!(
        text,
        "{title}\nDate of service: {}\nPatient: {} {}, {age}-year-old {who}\nMRN: M{}  DOB: {}\n",
        date(day),
        person.given,
        person.family,
        person.key,
        us_date(person.birth)
    );
    let history: Vec<&str> = person
        .active_problems(day)
        .filter(|p| !visit.presentation.is_some_and(|pr| pr.replaces.contains(&p.dx.icd)))
        .take(4)
        .map(|p| phrase(rng, p.dx.words))
        .collect();
    let history_text = match history.len() {
        0 => String::from("no significant past medical history"),
        1 => format!("a history of {}", history[0]),
        n => format!("a history of {} and {}", history[..n - 1].join(", "), history[n - 1]),
    };
    match visit.presentation {
        Some(presentation) => {
            let _ = writeln!(text, "Chief complaint: {}\n", presentation.complaint);
            let _ = write!(
                text,
                "History of present illness: {} is a {age}-year-old {who} with {history_text} who {}.",
                person.given, presentation.history
            );
            for denial in presentation.denies {
                if rng.chance(0.7) {
                    let _ = write!(text, " {denial}");
                }
            }
            text.push_str("\n\n");
        }
        None if !history.is_empty() => {
            let _ = writeln!(text, "Chief complaint: follow-up of chronic conditions\n");
            let _ = writeln!(
                text,
                "History of present illness: {} is a {age}-year-old {who} with {history_text}, here for routine follow-up. Feels well overall. Denies chest pain. Denies shortness of breath.\n",
                person.given
            );
        }
        None => {
            let _ = writeln!(text, "Chief complaint: annual physical\n");
            let _ = writeln!(
                text,
                "History of present illness: {} is a healthy {age}-year-old {who} here for a routine examination. No concerns today. Denies fever, weight loss or night sweats.\n",
                person.given
            );
        }
    }
    let _ = writeln!(
        text,
        "Vital signs: BP {}/{}, HR {}, T {:.1} C, RR {}, SpO2 {}%, weight {:.1} kg.",
        vitals.systolic,
        vitals.diastolic,
        vitals.heart_rate,
        vitals.temperature,
        vitals.respiratory_rate,
        vitals.saturation,
        vitals.weight
    );
    for LabResult { code, unit, value, places } in results {
        let name = match *code {
            "4548-4" => "HbA1c",
            "2345-7" => "glucose",
            "2160-0" => "creatinine",
            _ => "total cholesterol",
        };
        let _ = writeln!(text, "Lab: {name} {value:.places$} {unit}.");
    }
    if visit.class == Class::Inpatient {
        let nights = (visit.end / DAY - visit.start / DAY).max(1);
        let reason = visit.presentation.map_or("evaluation", |p| p.dx.words[0]);
        let _ = write!(text, "\nHospital course: admitted for {reason}; length of stay {nights} days.");
        for procedure in procedures {
            let _ = write!(text, " Underwent {procedure} without complication.");
        }
        let _ = writeln!(
            text,
            " {}",
            match visit.disposition.map(|d| d.0) {
                Some("exp") => "The patient died during the admission; family was at the bedside.",
                Some("snf") => "Discharged to a skilled nursing facility.",
                Some("rehab") => "Discharged to inpatient rehabilitation.",
                _ => "Discharged home in stable condition.",
            }
        );
    } else {
        for procedure in procedures {
            let _ = writeln!(text, "Procedure: {procedure} performed today.");
        }
    }
    text.push_str("\nAssessment and plan:\n");
    if diagnoses.is_empty() {
        // As clinicians write it: an adult's annual physical, a child's well-child check.
        text.push_str(if age >= 18 {
            "1. Annual physical, no abnormal findings; age-appropriate screening reviewed.\n"
        } else {
            "1. Well-child check, normal growth and development; anticipatory guidance given.\n"
        });
    }
    for (i, (_, dx)) in diagnoses.iter().enumerate() {
        let _ = writeln!(text, "{}. {}, {}.", i + 1, capitalize(phrase(rng, dx.words)), *rng.pick(dx.plan));
    }
    for drug in started {
        let _ = writeln!(text, "Started {drug}.");
    }
    for (_, vaccine) in vaccines {
        let _ = writeln!(text, "Vaccine given: {vaccine}.");
    }
    if visit.disposition.map(|d| d.0) != Some("exp") {
        let follow_up = match visit.class {
            Class::Ambulatory => "Follow-up in 3 months or sooner if symptoms worsen.",
            Class::Emergency => "Follow up with primary care within one week; return precautions given.",
            Class::Inpatient => "Follow up with primary care within 7 days of discharge.",
        };
        let _ = writeln!(text, "{follow_up}");
    }
    let _ = writeln!(text, "\nElectronically signed by the attending clinician.");

    let written = date_time(visit.end + 600);
    let document = signed_document(
        &format!("doc-{}", &encounter_id[4..]),
        (type_code, type_display, title),
        person,
        visit,
        encounter_id,
        &written,
        &text,
    );
    sink.write(&document)
}

/// The history and physical of an inpatient stay, written and signed by the attending a few
/// hours after admission (record completion expects one within 24 hours).
pub(super) fn write_history_and_physical(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    sink: &mut Sink,
) -> Result<(), Error> {
    let day = visit.start / DAY;
    let complaint = visit.presentation.map_or("elective admission", |p| p.complaint);
    let text = format!(
        "History and physical\nDate of admission: {}\nPatient: {} {}, {} years old\n\nReason for admission: {complaint}.\nAdmitted to the inpatient service; examination, assessment and plan as entered in the admission orders.\n\nElectronically signed by the attending clinician.\n",
        date(day),
        person.given,
        person.family,
        person.age_on(day)
    );
    let written = date_time(visit.start + 4 * 3600);
    let document = signed_document(
        &format!("hp-{}", &encounter_id[4..]),
        ("34117-2", "History and physical note", "History and physical"),
        person,
        visit,
        encounter_id,
        &written,
        &text,
    );
    sink.write(&document)
}

/// The operative report of a surgical procedure, written and signed by the surgeon when it
/// ends (record completion expects one within 24 hours).
pub(super) fn write_operative_report(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    procedure_id: &str,
    words: &str,
    ended: i64,
    sink: &mut Sink,
) -> Result<(), Error> {
    let text = format!(
        "Operative report\nDate of surgery: {}\nPatient: {} {}\nProcedure: {words}.\nAnesthesia, findings and technique as recorded in the anesthesia and nursing records; no complications.\n\nElectronically signed by the surgeon.\n",
        date(ended / DAY),
        person.given,
        person.family
    );
    let written = date_time(ended + 1800);
    let mut document = signed_document(
        &format!("op-{}", &procedure_id[5..]),
        ("11504-8", "Surgical operation note", "Operative report"),
        person,
        visit,
        encounter_id,
        &written,
        &text,
    );
    document["context"]["related"] = json!([reference(&format!("Procedure/{procedure_id}"))]);
    sink.write(&document)
}

/// A final note signed by the visit's clinician.
fn signed_document(
    id: &str,
    (code, display, title): (&str, &str, &str),
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    written: &str,
    text: &str,
) -> serde_json::Value {
    let clinician = reference(&format!("Practitioner/{}", visit.practitioner));
    json!({
        "resourceType": "DocumentReference",
        "id": id,
        "status": "current",
        "docStatus": "final",
        "type": { "coding": [coding(LOINC, code, display)], "text": title },
        "category": [concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")],
        "subject": person.reference(),
        "date": written,
        "author": [clinician.clone()],
        "authenticator": clinician,
        "custodian": reference(&format!("Organization/{}", PROVIDERS[visit.provider].id)),
        "description": title,
        "content": [{ "attachment": { "contentType": "text/plain; charset=utf-8", "language": "en-US",
                                       "data": base64(text.as_bytes()), "title": title, "creation": written } }],
        "context": { "encounter": [reference(&format!("Encounter/{encounter_id}"))],
                     "period": { "start": date_time(visit.start), "end": date_time(visit.end) } },
    })
}

/// A date as clinicians write it in a note header (`3/7/1954`).
fn us_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{m}/{d}/{y}")
}

fn capitalize(words: &str) -> String {
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Standard base64 with padding (RFC 4648), as FHIR's `base64Binary` requires.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
