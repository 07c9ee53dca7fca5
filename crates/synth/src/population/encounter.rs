//! One visit as the record shows it: the presenting problem's Condition and the Encounter,
//! then its observations, procedures, new prescriptions, vaccines, note and claim.
//! Procedures, prescriptions and vaccines are written inline: each feeds the note and the
//! claim's service lines, and the random draws keep their order so the output stays the same.

use serde_json::{Value, json};

use super::claims::{Account, Line, account, evaluation_line, lab_line, write_claim};
use super::directory::PROVIDERS;
use super::notes::{self, write_note};
use super::observations::{draw_vitals, write_observations};
use super::person::Person;
use super::visits::{Class, Visit};
use super::{clinical_status, confirmed, dx_concept, wellness_code};
use crate::calendar::*;
use crate::clinical::{self, Disease, Dx};
use crate::rng::Rng;
use crate::truth::TruthFile;
use crate::{Error, Sink};

/// What a patient's record has accumulated across encounters.
#[derive(Default)]
pub(super) struct Record {
    prescribed: Vec<&'static str>,
    immunizations: u32,
    procedures: u32,
    medications: u32,
    tdap_given: bool,
    covid_doses: u32,
    flu_seasons: Vec<i64>,
    screened_colon: bool,
    last_mammogram: Option<i64>,
}

pub(super) fn write_encounter(
    person: &Person,
    visit: &Visit,
    number: usize,
    record: &mut Record,
    rng: &mut Rng,
    lags: &mut Rng,
    sink: &mut Sink,
) -> Result<(), Error> {
    let encounter_id = format!("enc-{}-{:02}", person.key, number);
    let encounter_ref = reference(&format!("Encounter/{encounter_id}"));
    let day = visit.start / DAY;
    let age = person.age_on(day);

    // Diagnoses: the presenting problem first, then the chronic problems addressed.
    let mut diagnoses: Vec<(String, &'static Dx)> = Vec::new();
    if let Some(presentation) = visit.presentation {
        let id = format!("cond-{}-e{:02}", person.key, number);
        let resolved = visit.end / DAY + rng.range(5, 21);
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "clinicalStatus": clinical_status(if resolved < TODAY { "resolved" } else { "active" }),
            "verificationStatus": confirmed(),
            "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
            "code": dx_concept(presentation.dx),
            "subject": person.reference(),
            "encounter": encounter_ref.clone(),
            "onsetDateTime": date((day - rng.range(0, 3)).max(person.birth)),
            "recordedDate": date_time(visit.start + 1800),
        });
        if resolved < TODAY
            && visit.disposition.map(|d| d.0) != Some("exp")
            && let Some(object) = condition.as_object_mut()
        {
            object.insert("abatementDateTime".into(), Value::from(date(resolved)));
        }
        sink.write(&condition)?;
        diagnoses.push((id, presentation.dx));
    }
    let replaced = visit.presentation.map_or(&[][..], |p| p.replaces);
    let chronic_limit = if visit.class == Class::Inpatient { usize::MAX } else { 4 };
    for problem in person.active_problems(day) {
        if diagnoses.len() >= chronic_limit.saturating_add(usize::from(visit.presentation.is_some())) {
            break;
        }
        if replaced.contains(&problem.dx.icd) {
            continue;
        }
        diagnoses.push((problem.id.clone(), problem.dx));
    }

    // ICD-10-CM's "code first" notes: the hypertensive and diabetic combination codes come
    // before the kidney disease stage and the type of heart failure they cause.
    diagnoses.sort_by_key(|(_, dx)| dx.icd.starts_with("N18") || dx.icd.starts_with("I50"));
    let (class_code, class_display) = visit.class.code();
    let participant_type =
        concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender");
    let mut encounter = json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code, "display": class_display },
        "subject": person.reference(),
        "participant": [{ "type": [participant_type],
                          "individual": reference(&format!("Practitioner/{}", visit.practitioner)) }],
        "period": { "start": date_time(visit.start), "end": date_time(visit.end) },
    });
    let wellness = visit.presentation.is_none() && diagnoses.is_empty();
    if let Some(object) = encounter.as_object_mut() {
        if visit.class == Class::Inpatient {
            let nights = (visit.end / DAY - visit.start / DAY).max(1);
            object.insert(
                "length".into(),
                json!({ "value": nights, "unit": "days", "system": UCUM, "code": "d" }),
            );
        }
        if let Some(presentation) = visit.presentation {
            object.insert("reasonCode".into(), json!([dx_concept(presentation.dx)]));
        } else if wellness {
            let (code, display) = wellness_code(age);
            object.insert("reasonCode".into(), json!([concept(ICD10CM, code, display)]));
        }
        if !diagnoses.is_empty() {
            let role = concept("http://terminology.hl7.org/CodeSystem/diagnosis-role", "billing", "Billing");
            let listed: Vec<Value> = diagnoses
                .iter()
                .enumerate()
                .map(|(rank, (id, _))| {
                    json!({ "condition": reference(&format!("Condition/{id}")), "use": role, "rank": rank + 1 })
                })
                .collect();
            object.insert("diagnosis".into(), Value::Array(listed));
        }
        if let Some((code, display)) = visit.disposition {
            object.insert(
                "hospitalization".into(),
                json!({ "dischargeDisposition": concept("http://terminology.hl7.org/CodeSystem/discharge-disposition", code, display) }),
            );
        }
        object.insert(
            "location".into(),
            json!([{ "location": reference(&format!("Location/{}", visit.location)), "status": "completed",
                     "period": { "start": date_time(visit.start), "end": date_time(visit.end) } }]),
        );
        object.insert(
            "serviceProvider".into(),
            reference(&format!("Organization/{}", PROVIDERS[visit.provider].id)),
        );
    }
    sink.write(&encounter)?;

    let vitals = draw_vitals(person, visit, rng);
    let results = write_observations(person, visit, &encounter_id, &vitals, rng, sink)?;

    let practitioner_ref = reference(&format!("Practitioner/{}", visit.practitioner));
    let mut extra_lines: Vec<Line> = Vec::new();

    // Procedures.
    let mut procedures: Vec<(&str, &str, &str, &str, Line)> = Vec::new();
    if visit.presentation.is_some_and(|p| p.dx.icd == "S72.001A") {
        procedures.push((
            "http://www.cms.gov/Medicare/Coding/ICD10",
            "0SR9019",
            "Replacement of Right Hip Joint with Metal Synthetic Substitute, Cemented, Open Approach",
            "right hip arthroplasty",
            Line::service("27130", "Total hip arthroplasty", 18_500.0),
        ));
    }
    if visit.class == Class::Ambulatory
        && (50..=75).contains(&age)
        && !record.screened_colon
        && rng.chance(0.15)
    {
        record.screened_colon = true;
        procedures.push((
            SNOMED,
            "73761001",
            "Colonoscopy",
            "screening colonoscopy",
            Line::service("45378", "Colonoscopy, diagnostic", 1_650.0),
        ));
    }
    if visit.class == Class::Ambulatory
        && person.female
        && (50..=74).contains(&age)
        && record.last_mammogram.is_none_or(|last| day - last > 700)
        && rng.chance(0.4)
    {
        record.last_mammogram = Some(day);
        procedures.push((
            SNOMED,
            "71651007",
            "Mammography",
            "screening mammogram",
            Line::service("77067", "Screening mammography, bilateral", 260.0),
        ));
    }
    let mut procedure_words = Vec::new();
    for (system, code, display, words, line) in procedures {
        record.procedures += 1;
        let performed_start = visit.start + (visit.end - visit.start) / 3;
        let procedure_id = format!("proc-{}-{:02}", person.key, record.procedures);
        extra_lines.push(Line { procedure: Some(procedure_id.clone()), ..line });
        let mut procedure = json!({
            "resourceType": "Procedure",
            "id": procedure_id,
            "status": "completed",
            "code": { "coding": [coding(system, code, display)], "text": words },
            "subject": person.reference(),
            "encounter": encounter_ref.clone(),
            "performedPeriod": { "start": date_time(performed_start), "end": date_time(performed_start + 5400) },
            "performer": [{ "actor": practitioner_ref.clone() }],
            "location": reference(&format!("Location/{}", visit.location)),
        });
        if code == "0SR9019"
            && let (Some(object), Some((id, _))) = (procedure.as_object_mut(), diagnoses.first())
        {
            object.insert("reasonReference".into(), json!([reference(&format!("Condition/{id}"))]));
        }
        sink.write(&procedure)?;
        if system == "http://www.cms.gov/Medicare/Coding/ICD10" {
            // A surgical procedure (ICD-10-PCS, Medical and Surgical section) has its report.
            notes::write_operative_report(
                person,
                visit,
                &encounter_id,
                &procedure_id,
                words,
                performed_start + 5400,
                sink,
            )?;
        }
        procedure_words.push(words);
    }

    // New prescriptions for problems not yet treated.
    let mut started = Vec::new();
    for problem in person.active_problems(day) {
        // A cohort member's regimen is ordered at the visit that diagnoses the cancer.
        let drugs: Vec<(&'static str, &'static str, &'static str)> = match person.cohort {
            Some(member) if problem.disease == Disease::LungCancer => {
                if !visit.planted.cohort_diagnosis {
                    continue;
                }
                member
                    .arm
                    .drugs()
                    .iter()
                    .map(|&(code, name)| (code, name, "IV every 3 weeks per oncology protocol"))
                    .collect()
            }
            _ => clinical::drug_for(problem.disease)
                .map(|d| vec![(d.rxnorm, d.display, d.dosage)])
                .unwrap_or_default(),
        };
        for (rxnorm, display, dosage) in drugs {
            if record.prescribed.contains(&rxnorm) {
                continue;
            }
            record.prescribed.push(rxnorm);
            record.medications += 1;
            sink.write(&json!({
                "resourceType": "MedicationRequest",
                "id": format!("med-{}-{:02}", person.key, record.medications),
                "status": if person.death.is_some() { "stopped" } else { "active" },
                "intent": "order",
                "medicationCodeableConcept": { "coding": [coding("http://www.nlm.nih.gov/research/umls/rxnorm", rxnorm, display)],
                                               "text": display },
                "subject": person.reference(),
                "encounter": encounter_ref.clone(),
                "authoredOn": date_time(visit.end - 300),
                "requester": practitioner_ref.clone(),
                "reasonReference": [reference(&format!("Condition/{}", problem.id))],
                "dosageInstruction": [{ "text": dosage }],
            }))?;
            started.push(display);
        }
    }

    // Vaccines, at office visits.
    let mut vaccines = Vec::new();
    if visit.class == Class::Ambulatory {
        let (year, month, _) = civil_from_days(day);
        let season = if month >= 9 { year } else { year - 1 };
        let in_season = matches!(month, 9..=12 | 1..=3);
        if in_season && age >= 1 && !record.flu_seasons.contains(&season) && rng.chance(0.6) {
            record.flu_seasons.push(season);
            let vaccine = if rng.chance(0.2) {
                ("158", "influenza, injectable, quadrivalent, contains preservative")
            } else if season >= 2024 {
                ("140", "Influenza, seasonal, injectable, preservative free")
            } else {
                ("150", "Influenza, injectable, quadrivalent, preservative free")
            };
            vaccines.push(vaccine);
        }
        if (days_from_civil(2021, 1, 1)..days_from_civil(2022, 7, 1)).contains(&day)
            && age >= 12
            && record.covid_doses < 2
            && rng.chance(0.5)
        {
            record.covid_doses += 1;
            vaccines.push((
                "208",
                "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
            ));
        }
        if age >= 19 && !record.tdap_given && rng.chance(0.08) {
            record.tdap_given = true;
            vaccines.push(("115", "Tdap"));
        }
    }
    for (code, display) in &vaccines {
        record.immunizations += 1;
        sink.write(&json!({
            "resourceType": "Immunization",
            "id": format!("imm-{}-{:02}", person.key, record.immunizations),
            "status": "completed",
            "vaccineCode": { "coding": [coding("http://hl7.org/fhir/sid/cvx", code, display)], "text": display },
            "patient": person.reference(),
            "encounter": encounter_ref.clone(),
            "occurrenceDateTime": date_time(visit.end - 600),
            "primarySource": true,
            "location": reference(&format!("Location/{}", visit.location)),
            "performer": [{ "actor": practitioner_ref.clone() }],
        }))?;
        extra_lines.push(Line::service("90471", "Immunization administration", 35.0));
    }

    if visit.class == Class::Inpatient {
        notes::write_history_and_physical(person, visit, &encounter_id, sink)?;
    }
    write_note(
        person,
        visit,
        &encounter_id,
        &diagnoses,
        &vitals,
        &results,
        &procedure_words,
        &started,
        &vaccines,
        rng,
        sink,
    )?;

    // Claim and its adjudication.
    let complex = diagnoses.len() >= 3 || visit.presentation.is_some_and(|p| !p.replaces.is_empty());
    let mut lines = vec![evaluation_line(person, visit, complex)];
    if visit.class == Class::Inpatient {
        let nights = (visit.end / DAY - visit.start / DAY).max(1);
        for _ in 1..nights {
            lines.push(Line::service("99232", "Subsequent hospital inpatient care", 210.0));
        }
        lines.push(Line::service("99238", "Hospital discharge day management", 190.0));
    }
    lines.extend(results.iter().filter_map(|result| lab_line(result.code)));
    lines.extend(extra_lines);
    let account = account(visit, lags);
    let charges = write_claim(person, visit, &encounter_id, &diagnoses, &lines, age, account, sink)?;
    if let Account::Unbilled { coded } = account {
        sink.record(
            TruthFile::Unbilled,
            &json!({ "encounter": format!("Encounter/{encounter_id}"), "claim": format!("Claim/claim-{}", &encounter_id[4..]),
                     "discharged": date_time(visit.end), "coded": coded, "charges": (charges * 100.0).round() / 100.0 }),
        )?;
    }
    Ok(())
}
