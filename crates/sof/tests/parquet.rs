//! Parquet output read back with the parquet crate's own Arrow reader: the same schema, the
//! same values and nulls, lists included.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use chartroom_sof::{FHIR_TYPE_KEY, ViewDefinition, write_parquet};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value as Json, json};

const BATCH: usize = 3;

fn view() -> ViewDefinition {
    ViewDefinition::from_json(&json!({
        "resource": "Patient",
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "active", "path": "active", "type": "boolean"},
                {"name": "birth_date", "path": "birthDate", "type": "date"},
                {"name": "births", "path": "multipleBirth.ofType(integer)", "type": "integer"},
                {"name": "given", "path": "name.given", "type": "string", "collection": true}
            ]},
            {"forEachOrNull": "extension.where(url = 'http://example.org/score')", "column": [
                {"name": "score", "path": "value.ofType(decimal)", "type": "decimal"},
                {"name": "flags", "path": "extension.value.ofType(boolean)", "type": "boolean", "collection": true}
            ]}
        ]
    }))
    .expect("view")
}

fn patients() -> Vec<Json> {
    (0..10)
        .map(|i| {
            let mut patient = json!({"resourceType": "Patient", "id": format!("p{i}")});
            if i % 2 == 0 {
                patient["active"] = json!(i % 4 == 0);
                patient["birthDate"] = json!(format!("19{:02}-0{}", 50 + i, 1 + i % 9));
                patient["name"] = json!([{"given": (0..i % 3).map(|g| format!("g{i}.{g}")).collect::<Vec<_>>()}]);
            }
            if i % 3 == 0 {
                patient["multipleBirthInteger"] = json!(i);
                patient["extension"] = json!([
                    {"url": "http://example.org/score", "valueDecimal": i as f64 / 4.0,
                     "extension": [{"url": "flag", "valueBoolean": true}, {"url": "flag", "valueBoolean": i > 3}]},
                    {"url": "http://example.org/score"}
                ]);
            }
            patient
        })
        .collect()
}

/// Every cell of a batch as JSON, read through Arrow's own accessors.
fn cells(batch: &RecordBatch) -> Vec<Vec<Json>> {
    (0..batch.num_rows())
        .map(|row| batch.columns().iter().map(|column| cell(column.as_ref(), row)).collect())
        .collect()
}

fn cell(array: &dyn Array, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    match array.data_type() {
        DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
        DataType::Boolean => json!(array.as_boolean().value(row)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(row)),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Json::Array((0..items.len()).map(|i| cell(items.as_ref(), i)).collect())
        }
        other => panic!("unexpected type {other}"),
    }
}

#[test]
fn parquet_reads_back_identical() {
    let view = view();
    let patients = patients();
    let written: Vec<RecordBatch> = view.batches(&patients, BATCH).collect::<Result<_, _>>().expect("rows");
    let rows: usize = written.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 14, "p0, p3, p6 and p9 have two score extensions");

    let dir = testkit::temp_dir("sof-parquet");
    let path = dir.join("patients.parquet");
    let file = File::create(&path).expect("create");
    write_parquet(view.schema(), written.iter().cloned().map(Ok), file).expect("write parquet");

    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
        .expect("a Parquet file")
        .with_batch_size(BATCH)
        .build()
        .expect("reader");
    let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("read back");

    let schema = read[0].schema();
    for (field, expected) in schema.fields().iter().zip(view.schema().fields()) {
        assert_eq!(field.name(), expected.name());
        assert_eq!(field.data_type(), expected.data_type(), "{}", field.name());
        assert_eq!(field.metadata().get(FHIR_TYPE_KEY), expected.metadata().get(FHIR_TYPE_KEY));
    }
    assert_eq!(read.len(), written.len());
    for (back, original) in read.iter().zip(&written) {
        for (a, b) in back.columns().iter().zip(original.columns()) {
            assert_eq!(a.as_ref(), b.as_ref());
        }
    }

    let all = |batches: &[RecordBatch]| batches.iter().flat_map(cells).collect::<Vec<_>>();
    let (back, original) = (all(&read), all(&written));
    assert_eq!(back, original);
    // The values themselves, so that a writer and reader agreeing on nothing would not pass.
    assert_eq!(
        back[0],
        [json!("p0"), json!(true), json!("1950-01"), json!(0), json!([]), json!(0.0), json!([true, false])]
    );
    assert_eq!(
        back[1],
        [json!("p0"), json!(true), json!("1950-01"), json!(0), json!([]), Json::Null, json!([])]
    );
    assert_eq!(back[2], [json!("p1"), Json::Null, Json::Null, Json::Null, json!([]), Json::Null, Json::Null]);
    assert_eq!(back[3][4], json!(["g2.0", "g2.1"]));
    let p9 = back.iter().find(|r| r[0] == json!("p9")).expect("p9");
    assert_eq!(p9[5..], [json!(2.25), json!([true, true])]);
}
