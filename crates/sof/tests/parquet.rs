//! Parquet output read back with the parquet crate's own Arrow reader: the same schema, the
//! same values and nulls, lists included; date, dateTime and instant columns as Arrow's
//! temporal types, by the rule of `chartroom_sof::dates`.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chartroom_sof::dates::PRECISION_NOTE_KEY;
use chartroom_sof::{FHIR_TYPE_KEY, NativeDates, ViewDefinition, write_json, write_parquet};
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
        DataType::Date32 => json!(array.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            json!(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
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
    let native = NativeDates::new(&view.schema());
    for (field, expected) in schema.fields().iter().zip(native.schema().fields()) {
        assert_eq!(field.name(), expected.name());
        assert_eq!(field.data_type(), expected.data_type(), "{}", field.name());
        assert_eq!(field.metadata().get(FHIR_TYPE_KEY), expected.metadata().get(FHIR_TYPE_KEY));
    }
    assert_eq!(schema.field(2).data_type(), &DataType::Date32, "birth_date");
    assert_eq!(read.len(), written.len());
    let written: Vec<RecordBatch> =
        written.iter().map(|batch| native.convert(batch)).collect::<Result<_, _>>().expect("convert");
    for (back, original) in read.iter().zip(&written) {
        for (a, b) in back.columns().iter().zip(original.columns()) {
            assert_eq!(a.as_ref(), b.as_ref());
        }
    }

    let all = |batches: &[RecordBatch]| batches.iter().flat_map(cells).collect::<Vec<_>>();
    let (back, original) = (all(&read), all(&written));
    assert_eq!(back, original);
    // The values themselves, so that a writer and reader agreeing on nothing would not pass;
    // 1950-01 is 1950-01-01, 7305 days before 1970-01-01.
    assert_eq!(
        back[0],
        [json!("p0"), json!(true), json!(-7305), json!(0), json!([]), json!(0.0), json!([true, false])]
    );
    assert_eq!(back[1], [json!("p0"), json!(true), json!(-7305), json!(0), json!([]), Json::Null, json!([])]);
    assert_eq!(back[2], [json!("p1"), Json::Null, Json::Null, Json::Null, json!([]), Json::Null, Json::Null]);
    assert_eq!(back[3][4], json!(["g2.0", "g2.1"]));
    let p9 = back.iter().find(|r| r[0] == json!("p9")).expect("p9");
    assert_eq!(p9[5..], [json!(2.25), json!([true, true])]);
}

/// Days since 1970-01-01.
fn day(year: i64, month: u32, day: u32) -> i64 {
    fhir::datetime::days_from_civil(year, month, day)
}

/// Microseconds since 1970-01-01T00:00:00Z.
fn micros(date: (i64, u32, u32), hour: i64, minute: i64, second: i64, micro: i64) -> i64 {
    ((day(date.0, date.1, date.2) * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micro
}

#[test]
fn dates_are_native_in_parquet_and_as_written_in_json() {
    let view = ViewDefinition::from_json(&json!({
        "resource": "Patient",
        "select": [{"column": [
            {"name": "id", "path": "getResourceKey()", "type": "id"},
            {"name": "birth_date", "path": "birthDate", "type": "date"},
            {"name": "deceased", "path": "deceased.ofType(dateTime)", "type": "dateTime"},
            {"name": "updated", "path": "meta.lastUpdated", "type": "instant"},
            {"name": "visits", "path": "extension.where(url = 'http://example.org/visit').value.ofType(date)",
             "type": "date", "collection": true}
        ]}]
    }))
    .expect("view");
    let visit = |date: &str| json!({"url": "http://example.org/visit", "valueDate": date});
    // As they may come from NDJSON files no one validated: p4's values are no dates at all.
    let patients = [
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1980-05-17",
            "deceasedDateTime": "2020-03-04T10:00:00+02:00",
            "meta": {"lastUpdated": "2024-02-29T12:34:56.789012Z"},
            "extension": [visit("2020"), visit("2021-06-30")]}),
        json!({"resourceType": "Patient", "id": "p2", "birthDate": "1975", "deceasedDateTime": "2020-03-04",
            "meta": {"lastUpdated": "2024-01-01T00:00:00.5+01:00"}}),
        json!({"resourceType": "Patient", "id": "p3", "birthDate": "1990-02"}),
        json!({"resourceType": "Patient", "id": "p4", "birthDate": "not a date",
            "deceasedDateTime": "2020-02-30T10:00:00Z", "meta": {"lastUpdated": "yesterday"},
            "extension": [visit("2020-13"), visit("2019-11")]}),
    ];
    let batches = || view.batches(&patients, 3);

    let dir = testkit::temp_dir("sof-parquet-dates");
    let path = dir.join("patients.parquet");
    write_parquet(view.schema(), batches(), File::create(&path).expect("create")).expect("write parquet");
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("Parquet");
    let note = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == PRECISION_NOTE_KEY).and_then(|kv| kv.value.clone()));
    assert!(
        note.is_some_and(|n| n.contains("start of the period")),
        "the file says how partial dates are kept"
    );
    let read: Vec<RecordBatch> =
        builder.build().expect("reader").collect::<Result<_, _>>().expect("read back");

    let schema = read[0].schema();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(schema.field(1).data_type(), &DataType::Date32);
    assert_eq!(schema.field(2).data_type(), &utc);
    assert_eq!(schema.field(3).data_type(), &utc);
    assert!(
        matches!(schema.field(4).data_type(), DataType::List(item) if item.data_type() == &DataType::Date32)
    );
    assert_eq!(schema.field(2).metadata().get(FHIR_TYPE_KEY).map(String::as_str), Some("dateTime"));

    let rows: Vec<Vec<Json>> = read.iter().flat_map(cells).collect();
    assert_eq!(
        rows,
        [
            vec![
                json!("p1"),
                // A full date.
                json!(day(1980, 5, 17)),
                // +02:00 is two hours ahead of UTC.
                json!(micros((2020, 3, 4), 8, 0, 0, 0)),
                // An instant with fractional seconds.
                json!(micros((2024, 2, 29), 12, 34, 56, 789_012)),
                json!([day(2020, 1, 1), day(2021, 6, 30)]),
            ],
            vec![
                json!("p2"),
                // A partial year: its first day.
                json!(day(1975, 1, 1)),
                // A dateTime without time: midnight UTC.
                json!(micros((2020, 3, 4), 0, 0, 0, 0)),
                json!(micros((2023, 12, 31), 23, 0, 0, 500_000)),
                json!([]),
            ],
            // A partial year and month: its first day.
            vec![json!("p3"), json!(day(1990, 2, 1)), Json::Null, Json::Null, json!([])],
            // Text that is no date is null, and the rest of the row is still there.
            vec![json!("p4"), Json::Null, Json::Null, Json::Null, json!([null, day(2019, 11, 1)])],
        ]
    );

    // The text outputs keep every value exactly as written.
    let json = write_json(view.schema(), batches(), Vec::new()).expect("write JSON");
    let json: Json = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(
        json,
        json!([
            {"id": "p1", "birth_date": "1980-05-17", "deceased": "2020-03-04T10:00:00+02:00",
             "updated": "2024-02-29T12:34:56.789012Z", "visits": ["2020", "2021-06-30"]},
            {"id": "p2", "birth_date": "1975", "deceased": "2020-03-04",
             "updated": "2024-01-01T00:00:00.5+01:00", "visits": []},
            {"id": "p3", "birth_date": "1990-02", "deceased": null, "updated": null, "visits": []},
            {"id": "p4", "birth_date": "not a date", "deceased": "2020-02-30T10:00:00Z",
             "updated": "yesterday", "visits": ["2020-13", "2019-11"]}
        ])
    );
}
