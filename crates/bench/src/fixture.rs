//! Deterministic NDJSON for benchmarks: patients with encounters, observations and
//! conditions, sized and shaped like the output of common synthetic-data generators
//! (narrative, identifiers, codings, references between files).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same files.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

pub const FAMILY: &[&str] =
    &["Smith", "Garcia", "Nguyen", "O'Brien", "Kowalski", "Okafor", "Lindqvist", "Haddad"];
const GIVEN: &[&str] = &["Maria", "James", "Aiyana", "Wei", "Fatima", "Liam", "Sofia", "Kwame"];
pub const VITALS: &[(&str, &str, &str, f64, f64)] = &[
    ("8867-4", "Heart rate", "/min", 55.0, 110.0),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95.0, 170.0),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55.0, 100.0),
    ("29463-7", "Body weight", "kg", 3.0, 140.0),
    ("8302-2", "Body height", "cm", 50.0, 200.0),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 11.0),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 3.0),
];
const CONDITIONS: &[(&str, &str)] = &[
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("N18.3", "Chronic kidney disease, stage 3 (moderate)"),
    ("F32.9", "Major depressive disorder, single episode, unspecified"),
];

/// Counts of what was written.
pub struct FixtureCounts {
    pub patients: usize,
    pub total: usize,
}

/// Writes about `resources` resources (one patient per 25) as NDJSON files into `dir`.
pub fn write_ndjson(dir: &Path, resources: usize, seed: u64) -> std::io::Result<FixtureCounts> {
    std::fs::create_dir_all(dir)?;
    let open = |name: &str| -> std::io::Result<BufWriter<File>> {
        Ok(BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?))
    };
    let mut patients = open("Patient.ndjson")?;
    let mut encounters = open("Encounter.ndjson")?;
    let mut observations = open("Observation.ndjson")?;
    let mut conditions = open("Condition.ndjson")?;
    let mut rng = Rng(seed);
    let patient_count = (resources / 25).max(1);
    let mut total = 0;
    for p in 0..patient_count {
        let patient_id = format!("pat-{p:08}");
        let family = rng.pick(FAMILY);
        let given = rng.pick(GIVEN);
        let year = 1930 + rng.below(90);
        let (month, day) = (1 + rng.below(12), 1 + rng.below(28));
        writeln!(
            patients,
            r#"{{"resourceType":"Patient","id":"{patient_id}","text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">{given} {family}</div>"}},"identifier":[{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical Record Number"}}]}},"system":"http://hospital.example.org/mrn","value":"MRN{p:08}"}}],"name":[{{"use":"official","family":"{family}","given":["{given}"]}}],"telecom":[{{"system":"phone","value":"555-{:03}-{:04}","use":"home"}}],"gender":"{}","birthDate":"{year}-{month:02}-{day:02}","address":[{{"line":["{} Main Street"],"city":"Springfield","state":"MA","postalCode":"01{:03}","country":"US"}}]}}"#,
            rng.below(1000),
            rng.below(10000),
            if rng.below(2) == 0 { "female" } else { "male" },
            1 + rng.below(999),
            rng.below(1000)
        )?;
        total += 1;
        for e in 0..4 {
            let encounter_id = format!("enc-{p:08}-{e}");
            let (ey, em, ed) = (2015 + rng.below(10), 1 + rng.below(12), 1 + rng.below(28));
            writeln!(
                encounters,
                r#"{{"resourceType":"Encounter","id":"{encounter_id}","text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Outpatient visit</div>"}},"status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}},"type":[{{"coding":[{{"system":"http://snomed.info/sct","code":"185349003","display":"Encounter for check up"}}]}}],"subject":{{"reference":"Patient/{patient_id}","display":"{given} {family}"}},"period":{{"start":"{ey}-{em:02}-{ed:02}T09:00:00Z","end":"{ey}-{em:02}-{ed:02}T09:30:00Z"}},"serviceProvider":{{"reference":"Organization/org-1"}}}}"#
            )?;
            total += 1;
            for k in 0..4 {
                let index = rng.below(VITALS.len() as u64) as usize;
                let (code, display, unit, low, high) = VITALS[index];
                let value = low + (high - low) * (rng.below(1000) as f64 / 1000.0);
                writeln!(
                    observations,
                    r#"{{"resourceType":"Observation","id":"obs-{p:08}-{e}-{k}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}","display":"{display}"}}],"text":"{display}"}},"subject":{{"reference":"Patient/{patient_id}"}},"encounter":{{"reference":"Encounter/{encounter_id}"}},"effectiveDateTime":"{ey}-{em:02}-{ed:02}T09:10:00Z","issued":"{ey}-{em:02}-{ed:02}T09:10:00.000Z","valueQuantity":{{"value":{value:.1},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}"#,
                )?;
                total += 1;
            }
        }
        for c in 0..4 {
            let (code, display) = CONDITIONS[rng.below(CONDITIONS.len() as u64) as usize];
            writeln!(
                conditions,
                r#"{{"resourceType":"Condition","id":"cond-{p:08}-{c}","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"code":{{"coding":[{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"{code}","display":"{display}"}}],"text":"{display}"}},"subject":{{"reference":"Patient/{patient_id}"}},"encounter":{{"reference":"Encounter/enc-{p:08}-0"}},"onsetDateTime":"2016-0{}-15"}}"#,
                1 + rng.below(9)
            )?;
            total += 1;
        }
    }
    for mut writer in [patients, encounters, observations, conditions] {
        writer.flush()?;
    }
    Ok(FixtureCounts { patients: patient_count, total })
}
