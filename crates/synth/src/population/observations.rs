//! A visit's vital signs and laboratory results as Observations. They are most of the
//! output, hence a writer of JSON text of their own.

use std::fmt::Write as _;

use super::person::Person;
use super::push_str_literal;
use super::visits::{Class, Visit};
use crate::calendar::*;
use crate::clinical::Disease;
use crate::rng::Rng;
use crate::{Error, Sink};

pub(super) struct Vitals {
    pub(super) systolic: i64,
    pub(super) diastolic: i64,
    pub(super) heart_rate: i64,
    pub(super) temperature: f64,
    pub(super) respiratory_rate: i64,
    pub(super) saturation: i64,
    pub(super) weight: f64,
    height: f64,
    bmi: f64,
}

pub(super) fn draw_vitals(person: &Person, visit: &Visit, rng: &mut Rng) -> Vitals {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let problem = visit.presentation.map(|p| p.dx.icd);
    let hypertensive = person.has(Disease::Hypertension, day);
    let systolic = if age < 12 {
        rng.range(90, 112)
    } else if hypertensive {
        rng.range(128, 162)
    } else {
        rng.range(104, 132)
    };
    let diastolic = (systolic as f64 * rng.uniform(0.58, 0.68)) as i64;
    let febrile = matches!(problem, Some("J10.1" | "J18.9"));
    let temperature = if febrile { rng.uniform(38.0, 39.6) } else { rng.uniform(36.3, 37.3) };
    let heart_rate = if age < 2 {
        rng.range(100, 150)
    } else if age < 12 {
        rng.range(75, 115)
    } else if febrile {
        rng.range(92, 118)
    } else {
        rng.range(58, 92)
    };
    let respiratory_rate = if age < 2 {
        rng.range(26, 40)
    } else if age < 12 {
        rng.range(18, 26)
    } else {
        rng.range(12, 20)
    };
    let short_of_breath = matches!(problem, Some("J18.9" | "J44.1" | "I50.23" | "J45.901"));
    let saturation = if short_of_breath {
        rng.range(86, 93)
    } else if person.has(Disease::Copd, day) {
        rng.range(90, 95)
    } else {
        rng.range(95, 100)
    };
    // Height follows the same curve as at the person's present age, per age at the visit.
    let adult_height = person.height_cm;
    let height =
        if age >= 18 { adult_height } else { 50.0 + (adult_height - 50.0) * (age as f64 / 18.0).powf(0.7) };
    let bmi =
        if age >= 18 { person.bmi + rng.normal(0.0, 0.4) } else { rng.normal(17.0, 1.5).clamp(13.0, 30.0) };
    let weight = bmi * (height / 100.0) * (height / 100.0);
    Vitals { systolic, diastolic, heart_rate, temperature, respiratory_rate, saturation, weight, height, bmi }
}

/// Observations are most of the output, so they are written as JSON text directly instead of
/// through a `Value` tree; the shape is the same.
struct ObservationWriter<'a> {
    person: &'a Person,
    encounter_id: &'a str,
    effective: String,
    count: u32,
}

/// `"value":V,"unit":U,"system":UCUM,"code":U` (inside a Quantity's braces).
fn quantity_fields(out: &mut String, value: &str, unit: &str) {
    let _ = write!(out, "\"value\":{value},\"unit\":");
    push_str_literal(out, unit);
    let _ = write!(out, ",\"system\":\"{UCUM}\",\"code\":");
    push_str_literal(out, unit);
}

impl ObservationWriter<'_> {
    /// Writes one observation; `value` is the already-written value element
    /// (`"valueQuantity":{...}` or `"component":[...]`).
    fn write(
        &mut self,
        sink: &mut Sink,
        category: (&str, &str),
        code: &str,
        display: &str,
        value: &str,
        issued: Option<&str>,
    ) -> Result<(), Error> {
        self.count += 1;
        let mut out = String::with_capacity(640);
        out.push_str("{\"resourceType\":\"Observation\",\"id\":");
        push_str_literal(&mut out, &format!("obs-{}-{:02}", &self.encounter_id[4..], self.count));
        out.push_str(",\"status\":\"final\",\"category\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":");
        push_str_literal(&mut out, category.0);
        out.push_str(",\"display\":");
        push_str_literal(&mut out, category.1);
        let _ = write!(out, "}}]}}],\"code\":{{\"coding\":[{{\"system\":\"{LOINC}\",\"code\":");
        push_str_literal(&mut out, code);
        out.push_str(",\"display\":");
        push_str_literal(&mut out, display);
        out.push_str("}],\"text\":");
        push_str_literal(&mut out, display);
        out.push_str("},\"subject\":{\"reference\":");
        push_str_literal(&mut out, &format!("Patient/{}", self.person.id()));
        out.push_str("},\"encounter\":{\"reference\":");
        push_str_literal(&mut out, &format!("Encounter/{}", self.encounter_id));
        out.push_str("},\"effectiveDateTime\":");
        push_str_literal(&mut out, &self.effective);
        if let Some(issued) = issued {
            out.push_str(",\"issued\":");
            push_str_literal(&mut out, issued);
        }
        out.push(',');
        out.push_str(value);
        out.push('}');
        sink.write_json_line("Observation", out.as_bytes())
    }

    fn quantity(
        &mut self,
        sink: &mut Sink,
        category: (&str, &str),
        code: &str,
        display: &str,
        value: &str,
        unit: &str,
    ) -> Result<(), Error> {
        let mut element = String::from("\"valueQuantity\":{");
        quantity_fields(&mut element, value, unit);
        element.push('}');
        self.write(sink, category, code, display, &element, None)
    }
}

/// A laboratory result as reported, for the note and the claim.
pub(super) struct LabResult {
    pub(super) code: &'static str,
    pub(super) unit: &'static str,
    pub(super) value: f64,
    pub(super) places: usize,
}

const VITAL_SIGNS: (&str, &str) = ("vital-signs", "Vital Signs");
const LABORATORY: (&str, &str) = ("laboratory", "Laboratory");

pub(super) fn write_observations(
    person: &Person,
    visit: &Visit,
    encounter_id: &str,
    vitals: &Vitals,
    rng: &mut Rng,
    sink: &mut Sink,
) -> Result<Vec<LabResult>, Error> {
    let day = visit.start / DAY;
    let age = person.age_on(day);
    let effective = date_time(visit.start + 300 + rng.range(0, 600));
    let mut writer = ObservationWriter { person, encounter_id, effective, count: 0 };
    let v = vitals;
    let mut components = String::from("\"component\":[");
    for (i, (code, display, value)) in [
        ("8480-6", "Systolic blood pressure", v.systolic),
        ("8462-4", "Diastolic blood pressure", v.diastolic),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            components.push(',');
        }
        let _ = write!(
            components,
            "{{\"code\":{{\"coding\":[{{\"system\":\"{LOINC}\",\"code\":\"{code}\",\"display\":\"{display}\"}}]}},\"valueQuantity\":{{"
        );
        quantity_fields(&mut components, &value.to_string(), "mm[Hg]");
        components.push_str("}}");
    }
    components.push(']');
    writer.write(
        sink,
        VITAL_SIGNS,
        "85354-9",
        "Blood pressure panel with all children optional",
        &components,
        None,
    )?;
    writer.quantity(sink, VITAL_SIGNS, "8867-4", "Heart rate", &v.heart_rate.to_string(), "/min")?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "9279-1",
        "Respiratory rate",
        &v.respiratory_rate.to_string(),
        "/min",
    )?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "8310-5",
        "Body temperature",
        &format!("{:.1}", v.temperature),
        "Cel",
    )?;
    writer.quantity(
        sink,
        VITAL_SIGNS,
        "2708-6",
        "Oxygen saturation in Arterial blood",
        &v.saturation.to_string(),
        "%",
    )?;
    writer.quantity(sink, VITAL_SIGNS, "29463-7", "Body weight", &format!("{:.1}", v.weight), "kg")?;
    writer.quantity(sink, VITAL_SIGNS, "8302-2", "Body height", &format!("{:.1}", v.height), "cm")?;
    if age >= 2 {
        writer.quantity(
            sink,
            VITAL_SIGNS,
            "39156-5",
            "Body mass index (BMI) [Ratio]",
            &format!("{:.1}", v.bmi),
            "kg/m2",
        )?;
    }

    let mut labs = Vec::new();
    let diabetic = person.has(Disease::Diabetes, day);
    let kidney = person.has(Disease::ChronicKidney, day);
    let hospital = visit.class != Class::Ambulatory;
    if diabetic && (visit.class == Class::Ambulatory || rng.chance(0.3)) && rng.chance(0.6) {
        let a1c = rng.uniform(6.4, 9.8);
        labs.push(("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", a1c, 1, "%"));
    }
    if hospital || diabetic && rng.chance(0.5) {
        let glucose = if diabetic { rng.uniform(125.0, 260.0) } else { rng.uniform(72.0, 112.0) };
        labs.push(("2345-7", "Glucose [Mass/volume] in Serum or Plasma", glucose, 0, "mg/dL"));
    }
    if hospital || (kidney || diabetic) && rng.chance(0.5) {
        let creatinine = if kidney {
            rng.uniform(1.3, 2.4)
        } else if person.female {
            rng.uniform(0.55, 1.0)
        } else {
            rng.uniform(0.7, 1.2)
        };
        labs.push(("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", creatinine, 2, "mg/dL"));
    }
    let lipids = person.has(Disease::Hyperlipidemia, day);
    if visit.class == Class::Ambulatory && age >= 20 && rng.chance(if lipids { 0.5 } else { 0.15 }) {
        let cholesterol = if lipids { rng.uniform(195.0, 285.0) } else { rng.uniform(135.0, 205.0) };
        labs.push(("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", cholesterol, 0, "mg/dL"));
    }
    let mut results = Vec::new();
    for (code, display, value, places, unit) in labs {
        // Results come back a little after the sample.
        let issued = date_time(visit.start + 3600 + rng.range(0, 3600));
        let mut element = String::from("\"valueQuantity\":{");
        quantity_fields(&mut element, &format!("{value:.places$}"), unit);
        element.push('}');
        writer.write(sink, LABORATORY, code, display, &element, Some(&issued))?;
        results.push(LabResult { code, unit, value, places });
    }
    Ok(results)
}
