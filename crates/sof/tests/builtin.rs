//! The built-in views over a generated population.
//!
//! Every expected value is read from the NDJSON here, with serde_json and plain Rust, never
//! through FHIRPath, so a view that reads the wrong element, picks the wrong coding or
//! computes a length of stay wrongly fails. The population has defects planted at a high
//! rate (invalid codes, periods ending before they start, dangling references, ...): the
//! views must run over imperfect data and still say exactly what the resources say.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use chartroom_sof::builtin::{self, Builtin};
use chartroom_sof::{Cell, Runner, ViewDefinition, write_csv, write_parquet};
use fhir::{DateTime, DateTimeKind};
use serde_json::Value as Json;
use synth::{GenerateOptions, TruthOptions};

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const LOINC: &str = "http://loinc.org";

/// A view's output: one map of column name to cell per row.
type Table = Vec<BTreeMap<String, Cell<'static>>>;

struct Population {
    /// The resources of each NDJSON file, by resource type, in file order.
    resources: BTreeMap<String, Vec<Json>>,
    /// Every built-in view's rows, by view name.
    tables: BTreeMap<&'static str, Table>,
    /// (view, column) to the positions of the rows with each text value, for the columns the
    /// checks look rows up by.
    index: HashMap<(&'static str, &'static str), HashMap<String, Vec<usize>>>,
}

/// The columns rows are looked up by.
const LOOKUPS: &[(&str, &str)] = &[
    ("patients", "id"),
    ("encounters", "id"),
    ("diagnoses", "id"),
    ("procedures", "id"),
    ("observations", "id"),
    ("medications", "id"),
    ("immunizations", "id"),
    ("claims", "id"),
    ("claim_lines", "claim_id"),
];

fn population() -> &'static Population {
    static POPULATION: OnceLock<Population> = OnceLock::new();
    POPULATION.get_or_init(|| {
        let dir = testkit::temp_dir("sof-builtin");
        let truth = TruthOptions { defect_rate: 0.25, duplicate_rate: 0.05, ..TruthOptions::default() };
        let options = GenerateOptions { patients: 50, seed: 20_240_229, truth };
        synth::generate(&options, &dir, &|_| {}).expect("generate the population");
        let mut resources = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("read the output") {
            let path = entry.expect("entry").path();
            let Some(resource_type) = path.file_name().and_then(|n| n.to_str()?.strip_suffix(".ndjson"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).expect("read NDJSON");
            let parsed: Vec<Json> =
                text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
            resources.insert(resource_type.to_string(), parsed);
        }
        let tables: BTreeMap<&str, Table> = builtin::views()
            .iter()
            .map(|builtin| {
                let view = builtin.view();
                let names: Vec<String> = view.columns().iter().map(|c| c.name().to_string()).collect();
                let mut table = Table::new();
                for resource in resources.get(view.resource()).into_iter().flatten() {
                    let rows = view.rows(resource).unwrap_or_else(|e| panic!("{}: {e}", builtin.name()));
                    table.extend(rows.into_iter().map(|row| {
                        names.iter().cloned().zip(row.into_iter().map(Cell::into_owned)).collect()
                    }));
                }
                (builtin.name(), table)
            })
            .collect();
        let index = LOOKUPS
            .iter()
            .map(|&(view, column)| {
                let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
                for (i, row) in tables[view].iter().enumerate() {
                    if let Cell::Text(value) = &row[column] {
                        positions.entry(value.to_string()).or_default().push(i);
                    }
                }
                ((view, column), positions)
            })
            .collect();
        Population { resources, tables, index }
    })
}

fn resources(resource_type: &str) -> &'static [Json] {
    population().resources.get(resource_type).map_or(&[], Vec::as_slice)
}

fn table(name: &str) -> &'static Table {
    &population().tables[name]
}

/// The rows of `name` whose `column` is `value`.
fn rows_where(name: &str, column: &str, value: &str) -> Vec<&'static BTreeMap<String, Cell<'static>>> {
    let population = population();
    let positions = population.index.get(&(name, column)).expect("an indexed column");
    positions.get(value).into_iter().flatten().map(|&i| &population.tables[name][i]).collect()
}

/// The one row of `name` whose `column` is `value`.
fn row(name: &str, column: &str, value: &str) -> &'static BTreeMap<String, Cell<'static>> {
    let rows = rows_where(name, column, value);
    assert_eq!(rows.len(), 1, "{name} rows with {column} = {value}");
    rows[0]
}

fn text(value: &str) -> Cell<'static> {
    Cell::Text(value.to_string().into())
}

/// A JSON string as a text cell, anything absent as null.
fn text_of(value: Option<&Json>) -> Cell<'static> {
    value.and_then(Json::as_str).map_or(Cell::Null, text)
}

fn decimal_of(value: Option<&Json>) -> Cell<'static> {
    value.and_then(Json::as_f64).map_or(Cell::Null, Cell::Decimal)
}

fn integer_of(value: Option<&Json>) -> Cell<'static> {
    value.and_then(Json::as_i64).map_or(Cell::Null, Cell::Integer)
}

/// The id a relative reference `Type/id` names, when it names a `resource_type`.
fn reference_id(reference: Option<&Json>, resource_type: &str) -> Cell<'static> {
    reference
        .and_then(|r| r.get("reference")?.as_str()?.strip_prefix(resource_type)?.strip_prefix('/'))
        .map_or(Cell::Null, text)
}

fn array(value: Option<&Json>) -> &[Json] {
    value.and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

/// The first coding of a CodeableConcept in `system`.
fn coding<'j>(concept: Option<&'j Json>, system: &str) -> Option<&'j Json> {
    array(concept?.get("coding")).iter().find(|c| c.get("system").and_then(Json::as_str) == Some(system))
}

/// The LOINC code of a CodeableConcept, as a cell.
fn loinc(concept: Option<&Json>) -> Cell<'static> {
    text_of(coding(concept, LOINC).and_then(|c| c.get("code")))
}

/// The calendar date written at the start of a date or dateTime, as days since 1970-01-01.
fn epoch_day(written: &str) -> i64 {
    let parsed = DateTime::parse(written, DateTimeKind::DateTime).expect("a dateTime");
    fhir::datetime::days_from_civil(i64::from(parsed.year), u32::from(parsed.month), u32::from(parsed.day))
}

#[test]
fn every_builtin_view_parses_and_validates() {
    let views = builtin::views();
    assert_eq!(views.len(), 10);
    let names: BTreeSet<&str> = views.iter().map(Builtin::name).collect();
    let expected = [
        "patients",
        "encounters",
        "encounter_diagnoses",
        "diagnoses",
        "procedures",
        "observations",
        "medications",
        "immunizations",
        "claims",
        "claim_lines",
    ];
    assert_eq!(names, expected.into_iter().collect());
    for builtin in views {
        let name = builtin.name();
        assert!(std::ptr::eq(builtin::get(name).expect("get"), builtin));
        // The shipped text on its own is a valid definition (what `view()` holds was read
        // from it), and shareable: canonical url, name, FHIR version, typed columns.
        let json: Json = serde_json::from_str(builtin.json()).expect("JSON");
        let again = ViewDefinition::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again.resource(), builtin.view().resource());
        assert_eq!(json["resourceType"], "ViewDefinition");
        assert_eq!(json["url"], format!("https://chartroom.example.org/fhir/ViewDefinition/{name}"));
        assert_eq!(json["fhirVersion"], serde_json::json!(["4.0.1"]));
        assert_eq!(json["status"], "active");
        assert_eq!(Some(builtin.title()), json["title"].as_str());
        assert!(builtin.description().len() > 40, "{name} has a description");

        let columns = builtin.view().columns();
        for column in columns {
            let column_name = column.name();
            assert!(
                column_name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}.{column_name} is snake_case"
            );
            assert!(column.fhir_type().is_some(), "{name}.{column_name} has a type");
            assert!(column.description().is_some_and(|d| !d.is_empty()), "{name}.{column_name} is described");
        }
        // The row's own key first, from getResourceKey(); foreign keys from getReferenceKey.
        let key = match name {
            "claim_lines" => "claim_id",
            "encounter_diagnoses" => "encounter_id",
            _ => "id",
        };
        assert_eq!(columns[0].name(), key, "{name}");
        let paths = column_paths(&json["select"]);
        assert_eq!(paths[key], "getResourceKey()", "{name}.{key}");
        for (column_name, path) in &paths {
            if column_name.ends_with("_id") && column_name != key {
                assert!(path.contains("getReferenceKey("), "{name}.{column_name}: {path}");
            }
        }
    }
}

/// Every column's path, through nested selects and union branches.
fn column_paths(selects: &Json) -> BTreeMap<String, String> {
    let mut paths = BTreeMap::new();
    for select in array(Some(selects)) {
        for column in array(select.get("column")) {
            let name = column["name"].as_str().expect("name").to_string();
            paths.insert(name, column["path"].as_str().expect("path").to_string());
        }
        paths.extend(column_paths(&select["select"]));
        paths.extend(column_paths(&select["unionAll"]));
    }
    paths
}

#[test]
fn every_view_produces_rows_and_the_counts_match_the_resources() {
    for builtin in builtin::views() {
        assert!(!table(builtin.name()).is_empty(), "{} has rows", builtin.name());
    }
    // One row per resource.
    for (view, resource_type) in [
        ("patients", "Patient"),
        ("encounters", "Encounter"),
        ("diagnoses", "Condition"),
        ("procedures", "Procedure"),
        ("medications", "MedicationRequest"),
        ("immunizations", "Immunization"),
        ("claims", "Claim"),
    ] {
        assert!(!resources(resource_type).is_empty(), "{resource_type} generated");
        assert_eq!(table(view).len(), resources(resource_type).len(), "{view}");
        let ids: BTreeSet<String> = table(view).iter().map(|r| format!("{:?}", r["id"])).collect();
        assert_eq!(ids.len(), table(view).len(), "{view} ids are unique");
    }
    // One row per element.
    let total = |resource_type: &str, key: &str| -> usize {
        resources(resource_type).iter().map(|r| array(r.get(key)).len()).sum()
    };
    assert_eq!(table("claim_lines").len(), total("Claim", "item"));
    assert_eq!(table("encounter_diagnoses").len(), total("Encounter", "diagnosis"));
    let values: usize = resources("Observation")
        .iter()
        .map(|o| {
            let components = array(o.get("component")).len();
            let own = o.as_object().expect("object").keys().any(|k| k.starts_with("value"));
            components + usize::from(own || components == 0)
        })
        .sum();
    assert_eq!(table("observations").len(), values);
    assert!(table("observations").len() > resources("Observation").len(), "panels add rows");
}

#[test]
fn views_stream_through_the_runner_and_writers() {
    for builtin in builtin::views() {
        let view = builtin.view();
        let mut runner = Runner::new(view, 97);
        let mut batches = Vec::new();
        for resource in resources(view.resource()) {
            batches.extend(runner.push(resource).expect("rows"));
        }
        batches.extend(runner.finish().expect("last batch"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, table(builtin.name()).len(), "{}", builtin.name());
        let csv = write_csv(view.schema(), batches.iter().cloned().map(Ok), Vec::new()).expect("CSV");
        assert_eq!(String::from_utf8(csv).expect("UTF-8").lines().count(), rows + 1, "header and rows");
        let parquet = write_parquet(view.schema(), batches.into_iter().map(Ok), Vec::new()).expect("Parquet");
        assert!(parquet.starts_with(b"PAR1"));
    }
}

#[test]
fn patients_say_what_the_resources_say() {
    let v2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    for patient in resources("Patient") {
        let id = patient["id"].as_str().expect("id");
        let row = row("patients", "id", id);
        let identifiers = array(patient.get("identifier"));
        let mrn = identifiers
            .iter()
            .find(|i| coding(i.get("type"), v2_0203).is_some_and(|c| c["code"] == "MR"))
            .or(identifiers.first());
        assert_eq!(row["mrn"], text_of(mrn.and_then(|i| i.get("value"))), "{id}");
        let names = array(patient.get("name"));
        let name = names.iter().find(|n| n["use"] == "official").or(names.first());
        assert_eq!(row["family"], text_of(name.and_then(|n| n.get("family"))), "{id}");
        assert_eq!(row["given"], text_of(name.and_then(|n| array(n.get("given")).first())), "{id}");
        assert_eq!(row["birth_date"], text_of(patient.get("birthDate")));
        assert_eq!(row["gender"], text_of(patient.get("gender")));
        let deceased = patient.get("deceasedBoolean").and_then(Json::as_bool).unwrap_or(false)
            || patient.get("deceasedDateTime").is_some();
        assert_eq!(row["deceased"], Cell::Boolean(deceased), "{id}");
        assert_eq!(row["deceased_date"], text_of(patient.get("deceasedDateTime")));
        let addresses = array(patient.get("address"));
        let address = addresses.iter().find(|a| a["use"] == "home").or(addresses.first());
        for (column, key) in [("city", "city"), ("state", "state"), ("postal_code", "postalCode")] {
            assert_eq!(row[column], text_of(address.and_then(|a| a.get(key))), "{id} {column}");
        }
        assert!(matches!(&row["mrn"], Cell::Text(mrn) if mrn.starts_with('M')), "{id}: {:?}", row["mrn"]);
    }
    assert!(table("patients").iter().any(|r| r["deceased"] == Cell::Boolean(true)), "someone died");
}

#[test]
fn encounters_and_the_inpatient_length_of_stay() {
    let mut stays = 0;
    let mut longer = 0;
    for encounter in resources("Encounter") {
        let id = encounter["id"].as_str().expect("id");
        let row = row("encounters", "id", id);
        let class = encounter["class"]["code"].as_str().expect("class");
        assert_eq!(row["class"], text(class));
        assert_eq!(row["patient_id"], reference_id(encounter.get("subject"), "Patient"));
        assert_eq!(row["status"], text_of(encounter.get("status")));
        let (start, end) = (&encounter["period"]["start"], &encounter["period"]["end"]);
        assert_eq!(row["period_start"], text_of(Some(start)));
        assert_eq!(row["period_end"], text_of(Some(end)));
        assert_eq!(
            row["service_provider_id"],
            reference_id(encounter.get("serviceProvider"), "Organization")
        );
        let disposition =
            array(encounter["hospitalization"].get("dischargeDisposition").and_then(|d| d.get("coding")))
                .first();
        assert_eq!(row["discharge_disposition"], text_of(disposition.and_then(|c| c.get("code"))));
        assert_eq!(row["discharge_disposition_display"], text_of(disposition.and_then(|c| c.get("display"))));
        let reasons = array(encounter.get("reasonCode"));
        let reason = reasons.iter().find_map(|r| coding(Some(r), ICD10CM));
        assert_eq!(row["reason_code"], text_of(reason.and_then(|c| c.get("code"))), "{id}");
        assert_eq!(row["reason_system"], text_of(reason.and_then(|c| c.get("system"))), "{id}");

        if class != "IMP" {
            assert_eq!(row["length_of_stay_days"], Cell::Null, "{id} is not a stay");
            continue;
        }
        stays += 1;
        let (start, end) = (start.as_str().expect("start"), end.as_str().expect("end"));
        let days = epoch_day(end) - epoch_day(start);
        assert_eq!(row["length_of_stay_days"], Cell::Integer(days), "{id}: {start} to {end}");
        longer += usize::from(days > 1);
        // What the generator recorded as Encounter.length: nights, a same-day stay counting
        // one. A planted end-before-start defect moves the end only, so skip those.
        if end > start {
            assert_eq!(encounter["length"]["value"].as_i64(), Some(days.max(1)), "{id}");
        }
    }
    assert!(stays >= 3 && longer >= 1, "{stays} inpatient stays, {longer} longer than a day");
}

#[test]
fn icd10cm_diagnoses_per_encounter_with_rank_come_from_joining_two_views() {
    // What the resources say: each Condition's ICD-10-CM code, and each encounter's
    // diagnoses in rank order.
    let mut icd10cm: BTreeMap<&str, &str> = BTreeMap::new();
    for condition in resources("Condition") {
        let id = condition["id"].as_str().expect("id");
        let code = coding(condition.get("code"), ICD10CM).and_then(|c| c["code"].as_str());
        let row = row("diagnoses", "id", id);
        assert_eq!(row["icd10cm_code"], code.map_or(Cell::Null, text), "{id}");
        assert_eq!(row["patient_id"], reference_id(condition.get("subject"), "Patient"));
        assert_eq!(row["encounter_id"], reference_id(condition.get("encounter"), "Encounter"));
        assert_eq!(row["clinical_status"], text_of(condition["clinicalStatus"]["coding"][0].get("code")));
        assert_eq!(row["category"], text_of(condition["category"][0]["coding"][0].get("code")));
        assert_eq!(row["onset"], text_of(condition.get("onsetDateTime")));
        assert_eq!(row["recorded"], text_of(condition.get("recordedDate")));
        icd10cm.insert(id, code.expect("every generated Condition has an ICD-10-CM code"));
    }
    let mut expected: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for encounter in resources("Encounter") {
        for diagnosis in array(encounter.get("diagnosis")) {
            let reference = diagnosis["condition"]["reference"].as_str().expect("reference");
            // A planted dangling reference names no Condition: an inner join drops it.
            let Some(code) = reference.strip_prefix("Condition/").and_then(|id| icd10cm.get(id)) else {
                continue;
            };
            let rank = diagnosis["rank"].as_i64().expect("rank");
            expected
                .entry(encounter["id"].as_str().expect("id").to_string())
                .or_default()
                .push((rank, code.to_string()));
        }
    }
    for list in expected.values_mut() {
        list.sort();
    }

    // SELECT ed.encounter_id, ed.rank, d.icd10cm_code FROM encounter_diagnoses ed
    // JOIN diagnoses d ON d.id = ed.condition_id ORDER BY ed.encounter_id, ed.rank
    let by_id: BTreeMap<String, &BTreeMap<String, Cell<'static>>> =
        table("diagnoses").iter().map(|d| (format!("{:?}", d["id"]), d)).collect();
    let mut joined: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for ed in table("encounter_diagnoses") {
        let Some(d) = by_id.get(&format!("{:?}", ed["condition_id"])) else { continue };
        let (Cell::Text(encounter), Cell::Integer(rank), Cell::Text(code)) =
            (&ed["encounter_id"], &ed["rank"], &d["icd10cm_code"])
        else {
            panic!("unexpected cells {ed:?} {d:?}");
        };
        assert_eq!(ed["patient_id"], d["patient_id"], "an encounter lists its own patient's conditions");
        assert_eq!(ed["use"], text("billing"));
        joined.entry(encounter.to_string()).or_default().push((*rank, code.to_string()));
    }
    for list in joined.values_mut() {
        list.sort();
    }
    assert_eq!(joined.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "encounters");
    for (encounter, list) in &expected {
        assert_eq!(&joined[encounter], list, "{encounter}: (rank, ICD-10-CM)");
    }
    assert!(joined.values().any(|list| list.len() >= 3), "some encounter has several diagnoses");
    // Ranks as the resources give them: 1, 2, 3, ... per encounter.
    for (encounter, list) in &joined {
        let ranks: Vec<i64> = list.iter().map(|(rank, _)| *rank).collect();
        assert_eq!(ranks, (1..=list.len() as i64).collect::<Vec<_>>(), "{encounter}");
    }
}

#[test]
fn claims_and_their_lines_say_what_the_resources_say() {
    let mut lines_checked = 0;
    for claim in resources("Claim") {
        let id = claim["id"].as_str().expect("id");
        let row = row("claims", "id", id);
        let items = array(claim.get("item"));
        assert_eq!(row["patient_id"], reference_id(claim.get("patient"), "Patient"));
        let encounters: BTreeSet<&str> = items
            .iter()
            .flat_map(|item| array(item.get("encounter")))
            .filter_map(|e| e["reference"].as_str()?.strip_prefix("Encounter/"))
            .collect();
        let encounter = if encounters.len() == 1 { encounters.first().copied() } else { None };
        assert_eq!(row["encounter_id"], encounter.map_or(Cell::Null, text), "{id}");
        assert_ne!(row["encounter_id"], Cell::Null, "{id}: every generated claim is for one encounter");
        assert_eq!(row["type"], text_of(claim["type"]["coding"][0].get("code")));
        assert_eq!(row["created"], text_of(claim.get("created")));
        assert_eq!(row["billable_start"], text_of(claim["billablePeriod"].get("start")));
        assert_eq!(row["billable_end"], text_of(claim["billablePeriod"].get("end")));
        assert_eq!(row["total"], decimal_of(claim["total"].get("value")));
        assert_eq!(row["currency"], text("USD"));
        assert_eq!(row["provider_id"], reference_id(claim.get("provider"), "Organization"));
        assert_eq!(row["insurer_id"], reference_id(claim.get("insurer"), "Organization"));
        let focal = array(claim.get("insurance")).iter().find(|i| i["focal"] == true);
        assert_eq!(row["coverage_id"], reference_id(focal.and_then(|i| i.get("coverage")), "Coverage"));
        let primary = array(claim.get("diagnosis")).iter().find(|d| d["sequence"] == 1).expect("sequence 1");
        let primary = coding(primary.get("diagnosisCodeableConcept"), ICD10CM).expect("ICD-10-CM");
        assert_eq!(row["primary_diagnosis_code"], text_of(primary.get("code")), "{id}");
        assert_eq!(row["primary_diagnosis_display"], text_of(primary.get("display")), "{id}");
        let line_total: f64 = items.iter().map(|i| i["net"]["value"].as_f64().expect("net")).sum();
        assert!(matches!(row["total"], Cell::Decimal(t) if (t - line_total).abs() < 0.005), "{id}");

        let lines = rows_where("claim_lines", "claim_id", id);
        assert_eq!(lines.len(), items.len(), "{id}: one line per item");
        for (line, item) in lines.iter().zip(items) {
            assert_eq!(line["patient_id"], row["patient_id"]);
            assert_eq!(line["sequence"], integer_of(item.get("sequence")));
            let product = &item["productOrService"]["coding"][0];
            assert_eq!(line["product_or_service_system"], text_of(product.get("system")));
            assert_eq!(line["product_or_service_code"], text_of(product.get("code")));
            assert_eq!(line["product_or_service_display"], text_of(item["productOrService"].get("text")));
            assert_eq!(line["net"], decimal_of(item["net"].get("value")));
            assert_eq!(line["quantity"], decimal_of(item["quantity"].get("value")));
            assert_eq!(line["unit_price"], decimal_of(item["unitPrice"].get("value")));
            assert_eq!(line["diagnosis_sequence"], integer_of(array(item.get("diagnosisSequence")).first()));
            assert_eq!(line["service_date"], text_of(item.get("servicedDate")));
            assert_eq!(line["encounter_id"], reference_id(array(item.get("encounter")).first(), "Encounter"));
            lines_checked += 1;
        }
    }
    assert_eq!(lines_checked, table("claim_lines").len());
}

#[test]
fn observations_give_one_row_per_value_components_included() {
    let mut panels = 0;
    for observation in resources("Observation") {
        let id = observation["id"].as_str().expect("id");
        let rows = rows_where("observations", "id", id);
        let components = array(observation.get("component"));
        for row in &rows {
            assert_eq!(row["patient_id"], reference_id(observation.get("subject"), "Patient"));
            assert_eq!(row["encounter_id"], reference_id(observation.get("encounter"), "Encounter"));
            assert_eq!(row["status"], text_of(observation.get("status")));
            assert_eq!(row["category"], text_of(observation["category"][0]["coding"][0].get("code")));
            assert_eq!(row["effective"], text_of(observation.get("effectiveDateTime")));
            assert_eq!(row["issued"], text_of(observation.get("issued")));
            assert_eq!(row["observation_code"], loinc(observation.get("code")));
        }
        // The measured value, and what the row says about it.
        let expect = |row: &BTreeMap<String, Cell<'static>>, element: &Json| {
            let quantity = element.get("valueQuantity");
            assert_eq!(row["loinc_code"], loinc(element.get("code")), "{id}");
            assert_eq!(row["value"], decimal_of(quantity.and_then(|q| q.get("value"))), "{id}");
            assert_eq!(row["unit"], text_of(quantity.and_then(|q| q.get("code"))), "{id}");
            assert_eq!(row["unit_text"], text_of(quantity.and_then(|q| q.get("unit"))), "{id}");
            assert_eq!(row["value_string"], text_of(element.get("valueString")), "{id}");
        };
        if components.is_empty() {
            assert_eq!(rows.len(), 1, "{id}");
            assert_eq!(rows[0]["component"], Cell::Null);
            expect(rows[0], observation);
            assert_ne!(rows[0]["value"], Cell::Null, "{id}: every generated single value is a quantity");
        } else {
            panels += 1;
            assert_eq!(rows.len(), components.len(), "{id}: a panel without its own value");
            for (i, (row, component)) in rows.iter().zip(components).enumerate() {
                assert_eq!(row["component"], Cell::Integer(i as i64));
                expect(row, component);
            }
            let codes: Vec<&Cell> = rows.iter().map(|r| &r["loinc_code"]).collect();
            assert_eq!(codes, [&text("8480-6"), &text("8462-4")], "{id}: systolic, diastolic");
        }
    }
    assert!(panels > 0, "blood-pressure panels were generated");
}

#[test]
fn procedures_medications_and_immunizations_say_what_the_resources_say() {
    for procedure in resources("Procedure") {
        let row = row("procedures", "id", procedure["id"].as_str().expect("id"));
        let code = &procedure["code"]["coding"][0];
        assert_eq!(row["code_system"], text_of(code.get("system")));
        assert_eq!(row["code"], text_of(code.get("code")));
        assert_eq!(row["code_display"], text_of(code.get("display")));
        assert_eq!(row["encounter_id"], reference_id(procedure.get("encounter"), "Encounter"));
        assert_eq!(row["patient_id"], reference_id(procedure.get("subject"), "Patient"));
        let start = procedure.get("performedDateTime").or(procedure["performedPeriod"].get("start"));
        assert_eq!(row["performed_start"], text_of(start));
        assert_eq!(row["performed_end"], text_of(procedure["performedPeriod"].get("end")));
        assert_eq!(row["status"], text_of(procedure.get("status")));
    }
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    for request in resources("MedicationRequest") {
        let row = row("medications", "id", request["id"].as_str().expect("id"));
        let drug = coding(request.get("medicationCodeableConcept"), rxnorm).expect("RxNorm");
        assert_eq!(row["rxnorm_code"], text_of(drug.get("code")));
        assert_eq!(row["rxnorm_display"], text_of(drug.get("display")));
        assert_eq!(row["medication_text"], text_of(request["medicationCodeableConcept"].get("text")));
        assert_eq!(row["medication_id"], Cell::Null);
        assert_eq!(row["authored_on"], text_of(request.get("authoredOn")));
        assert_eq!(row["status"], text_of(request.get("status")));
        assert_eq!(row["intent"], text_of(request.get("intent")));
        assert_eq!(row["encounter_id"], reference_id(request.get("encounter"), "Encounter"));
        assert_eq!(row["patient_id"], reference_id(request.get("subject"), "Patient"));
    }
    for immunization in resources("Immunization") {
        let row = row("immunizations", "id", immunization["id"].as_str().expect("id"));
        let vaccine = coding(immunization.get("vaccineCode"), "http://hl7.org/fhir/sid/cvx").expect("CVX");
        assert_eq!(row["cvx_code"], text_of(vaccine.get("code")));
        assert_eq!(row["cvx_display"], text_of(vaccine.get("display")));
        assert_eq!(row["occurrence"], text_of(immunization.get("occurrenceDateTime")));
        assert_eq!(row["status"], text_of(immunization.get("status")));
        assert_eq!(row["patient_id"], reference_id(immunization.get("patient"), "Patient"));
        assert_eq!(row["encounter_id"], reference_id(immunization.get("encounter"), "Encounter"));
    }
}

/// The rows a built-in view gives for one resource, as maps.
#[test]
fn direct_paths_give_the_rows_of_the_general_evaluator() {
    let mut compared = 0;
    for builtin in builtin::views() {
        let general = builtin.view().clone().without_direct_paths();
        for resource in resources(builtin.view().resource()) {
            let direct = builtin.view().rows(resource).unwrap();
            assert_eq!(direct, general.rows(resource).unwrap(), "{} over {resource}", builtin.name());
            compared += direct.len();
        }
    }
    assert!(compared > 1_000, "only {compared} rows compared");
}

fn rows_of(name: &str, resource: &Json) -> Table {
    let view = builtin::get(name).expect("built-in").view();
    let names: Vec<String> = view.columns().iter().map(|c| c.name().to_string()).collect();
    let rows = view.rows(resource).unwrap_or_else(|e| panic!("{name}: {e}"));
    rows.into_iter()
        .map(|row| names.iter().cloned().zip(row.into_iter().map(Cell::into_owned)).collect())
        .collect()
}

#[test]
fn fallbacks_and_choice_types_the_generator_does_not_write() {
    use serde_json::json;

    // No MR identifier, no official name, no home address, deceasedBoolean.
    let patient = json!({"resourceType": "Patient", "id": "p",
        "identifier": [{"system": "urn:example:chart", "value": "C-1"}, {"value": "C-2"}],
        "name": [{"use": "usual", "family": "Ng", "given": ["Ann", "Bea"]}, {"family": "Lu"}],
        "deceasedBoolean": true,
        "address": [{"use": "work", "city": "Dayton"}, {"city": "Akron"}]});
    let row = &rows_of("patients", &patient)[0];
    assert_eq!(row["mrn"], text("C-1"));
    assert_eq!((&row["family"], &row["given"]), (&text("Ng"), &text("Ann")));
    assert_eq!((&row["deceased"], &row["deceased_date"]), (&Cell::Boolean(true), &Cell::Null));
    assert_eq!(row["city"], text("Dayton"));
    // Nothing at all: one row of nulls, and not deceased.
    let bare = &rows_of("patients", &json!({"resourceType": "Patient", "id": "q"}))[0];
    assert_eq!(bare["deceased"], Cell::Boolean(false));
    assert!(["mrn", "family", "given", "city", "birth_date"].iter().all(|c| bare[*c] == Cell::Null));

    // A reason coded in SNOMED CT only.
    let encounter = json!({"resourceType": "Encounter", "id": "e", "status": "finished",
        "class": {"code": "EMER"}, "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "29857009"}]}]});
    let row = &rows_of("encounters", &encounter)[0];
    assert_eq!(
        (&row["reason_system"], &row["reason_code"]),
        (&text("http://snomed.info/sct"), &text("29857009"))
    );

    // Coded, text and non-UCUM results; a component without a value of its own; a
    // dateTime-less effectivePeriod.
    let observation = json!({"resourceType": "Observation", "id": "o", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "883-9"}]},
        "effectivePeriod": {"start": "2024-01-02T03:04:05Z"},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "112144000"}]},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "10331-7"}]}, "valueString": "positive"},
                      {"code": {"text": "count"}, "valueQuantity": {"value": 3, "unit": "cells", "system": "urn:example"}}]});
    let rows = rows_of("observations", &observation);
    assert_eq!(rows.len(), 3, "its own value and two components");
    assert!(rows.iter().all(|r| r["effective"] == text("2024-01-02T03:04:05Z")));
    assert_eq!((&rows[0]["component"], &rows[0]["value_code"]), (&Cell::Null, &text("112144000")));
    assert_eq!((&rows[1]["component"], &rows[1]["value_string"]), (&Cell::Integer(0), &text("positive")));
    assert_eq!(rows[1]["loinc_code"], text("10331-7"));
    assert_eq!(rows[2]["loinc_code"], Cell::Null);
    assert_eq!(
        (&rows[2]["value"], &rows[2]["unit"], &rows[2]["unit_text"]),
        (&Cell::Decimal(3.0), &Cell::Null, &text("cells"))
    );
    // Neither value nor components: still one row.
    let pending =
        json!({"resourceType": "Observation", "id": "o2", "status": "registered", "code": {"text": "x"}});
    assert_eq!(rows_of("observations", &pending).len(), 1);

    let procedure = json!({"resourceType": "Procedure", "id": "pr", "status": "completed",
        "subject": {"reference": "Patient/p"}, "performedDateTime": "2024-05-06"});
    let row = &rows_of("procedures", &procedure)[0];
    assert_eq!((&row["performed_start"], &row["performed_end"]), (&text("2024-05-06"), &Cell::Null));

    let request = json!({"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p"}, "medicationReference": {"reference": "Medication/med-1"}});
    let row = &rows_of("medications", &request)[0];
    assert_eq!((&row["medication_id"], &row["rxnorm_code"]), (&text("med-1"), &Cell::Null));

    // Items naming two encounters: the claim names none, each line its own; a servicedPeriod
    // gives the date it starts on; no sequence-1 diagnosis, no primary diagnosis.
    let claim = json!({"resourceType": "Claim", "id": "c", "status": "active", "use": "claim",
        "patient": {"reference": "Patient/p"}, "provider": {"reference": "Practitioner/dr"},
        "diagnosis": [{"sequence": 2, "diagnosisCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]}}],
        "item": [
            {"sequence": 1, "productOrService": {"coding": [{"code": "99213", "display": "Office visit"}]},
             "servicedPeriod": {"start": "2024-02-03T22:00:00-05:00"}, "encounter": [{"reference": "Encounter/e1"}],
             "quantity": {"value": 2}, "unitPrice": {"value": 75.5, "currency": "USD"}},
            {"sequence": 2, "productOrService": {"text": "Lab"}, "encounter": [{"reference": "Encounter/e2"}]}]});
    let row = &rows_of("claims", &claim)[0];
    assert_eq!(
        (&row["encounter_id"], &row["provider_id"], &row["primary_diagnosis_code"]),
        (&Cell::Null, &Cell::Null, &Cell::Null)
    );
    let lines = rows_of("claim_lines", &claim);
    assert_eq!(lines[0]["service_date"], text("2024-02-03"));
    assert_eq!((&lines[0]["quantity"], &lines[0]["unit_price"]), (&Cell::Decimal(2.0), &Cell::Decimal(75.5)));
    assert_eq!(lines[0]["product_or_service_display"], text("Office visit"));
    assert_eq!(lines[1]["product_or_service_display"], text("Lab"));
    let encounters: Vec<&Cell> = lines.iter().map(|l| &l["encounter_id"]).collect();
    assert_eq!(encounters, [&text("e1"), &text("e2")]);
}
