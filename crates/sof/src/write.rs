//! Writing record batches as CSV, NDJSON, JSON or Parquet, one batch at a time.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::str::FromStr;

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::Value as Json;

use crate::Error;
use crate::dates::{NativeDates, PRECISION_NOTE, PRECISION_NOTE_KEY};
use crate::view::ENCODING_KEY;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180: a header row, CRLF line ends, fields quoted when they hold a comma, quote or
    /// line break. Null is an empty field and the empty string `""`, so the two stay apart;
    /// collections and complex values are JSON text.
    Csv,
    /// One JSON object per row and line.
    Ndjson,
    /// One JSON array of row objects.
    Json,
    /// Parquet with the Arrow schema embedded; Snappy-compressed. `date` columns are DATE and
    /// `dateTime`/`instant` columns TIMESTAMP (microseconds, UTC) by [`NativeDates`]'s rule,
    /// which the file's key-value metadata repeats ([`PRECISION_NOTE_KEY`]).
    Parquet,
}

impl Format {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Ndjson => "application/x-ndjson",
            Format::Json => "application/json",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

impl FromStr for Format {
    type Err = Error;

    /// `csv`, `ndjson`, `json`, `parquet`, or one of their media types.
    fn from_str(name: &str) -> Result<Format, Error> {
        [Format::Csv, Format::Ndjson, Format::Json, Format::Parquet]
            .into_iter()
            .find(|f| name.eq_ignore_ascii_case(f.extension()) || name.eq_ignore_ascii_case(f.media_type()))
            .ok_or_else(|| {
                Error::Output(format!("unknown output format '{name}' (csv, ndjson, json, parquet)"))
            })
    }
}

/// Writes batches of one schema in one format.
pub struct Writer<W: Write + Send> {
    schema: SchemaRef,
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Text { format: Format, out: BufWriter<W>, keys: Vec<String>, rows: u64 },
    Parquet { out: Box<ArrowWriter<W>>, dates: NativeDates },
}

impl<W: Write + Send> Writer<W> {
    /// Starts the output (the CSV header is written here, so an empty result still has it).
    pub fn new(format: Format, schema: SchemaRef, out: W) -> Result<Writer<W>, Error> {
        let inner = match format {
            Format::Parquet => {
                let dates = NativeDates::new(&schema);
                let mut properties = WriterProperties::builder().set_compression(Compression::SNAPPY);
                if dates.any() {
                    // Readers see where the text of partial dates went.
                    let note = KeyValue::new(PRECISION_NOTE_KEY.to_string(), PRECISION_NOTE.to_string());
                    properties = properties.set_key_value_metadata(Some(vec![note]));
                }
                let out = ArrowWriter::try_new(out, dates.schema(), Some(properties.build()))?;
                Inner::Parquet { out: Box::new(out), dates }
            }
            _ => {
                let mut out = BufWriter::new(out);
                let keys = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        let mut key = String::new();
                        push_json_string(&mut key, f.name());
                        key
                    })
                    .collect();
                match format {
                    Format::Csv => {
                        let mut line = String::new();
                        for (i, field) in schema.fields().iter().enumerate() {
                            if i > 0 {
                                line.push(',');
                            }
                            push_csv_field(&mut line, field.name());
                        }
                        line.push_str("\r\n");
                        out.write_all(line.as_bytes())?;
                    }
                    Format::Json => out.write_all(b"[")?,
                    _ => {}
                }
                Inner::Text { format, out, keys, rows: 0 }
            }
        };
        Ok(Writer { schema, inner })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let fields = batch.schema_ref().fields();
        let same = fields.len() == self.schema.fields().len()
            && fields.iter().zip(self.schema.fields()).all(|(a, b)| a.name() == b.name());
        if !same {
            return Err(Error::Output("the batch's columns are not the writer's".to_string()));
        }
        match &mut self.inner {
            Inner::Parquet { out, dates } => {
                if dates.any() {
                    Ok(out.write(&dates.convert(batch)?)?)
                } else {
                    Ok(out.write(batch)?)
                }
            }
            Inner::Text { format, out, keys, rows } => {
                let columns = batch
                    .columns()
                    .iter()
                    .zip(self.schema.fields())
                    .map(|(array, field)| ColumnData::new(array.as_ref(), field))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut line = String::new();
                for row in 0..batch.num_rows() {
                    line.clear();
                    match format {
                        Format::Csv => csv_row(&mut line, &columns, row),
                        Format::Json => {
                            line.push_str(if *rows == 0 { "\n" } else { ",\n" });
                            json_row(&mut line, keys, &columns, row);
                        }
                        _ => {
                            json_row(&mut line, keys, &columns, row);
                            line.push('\n');
                        }
                    }
                    out.write_all(line.as_bytes())?;
                    *rows += 1;
                }
                Ok(())
            }
        }
    }

    /// Ends the output (the JSON array's bracket, Parquet's footer) and hands back the sink.
    pub fn finish(self) -> Result<W, Error> {
        match self.inner {
            Inner::Parquet { out, .. } => Ok(out.into_inner()?),
            Inner::Text { format, mut out, rows, .. } => {
                if format == Format::Json {
                    out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })?;
                }
                out.into_inner().map_err(|e| Error::Io(e.into_error()))
            }
        }
    }
}

/// Writes every batch and finishes; stops at the first error.
pub fn write<W, I>(format: Format, schema: SchemaRef, batches: I, out: W) -> Result<W, Error>
where
    W: Write + Send,
    I: IntoIterator<Item = Result<RecordBatch, Error>>,
{
    let mut writer = Writer::new(format, schema, out)?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.finish()
}

pub fn write_csv<W, I>(schema: SchemaRef, batches: I, out: W) -> Result<W, Error>
where
    W: Write + Send,
    I: IntoIterator<Item = Result<RecordBatch, Error>>,
{
    write(Format::Csv, schema, batches, out)
}

pub fn write_ndjson<W, I>(schema: SchemaRef, batches: I, out: W) -> Result<W, Error>
where
    W: Write + Send,
    I: IntoIterator<Item = Result<RecordBatch, Error>>,
{
    write(Format::Ndjson, schema, batches, out)
}

pub fn write_json<W, I>(schema: SchemaRef, batches: I, out: W) -> Result<W, Error>
where
    W: Write + Send,
    I: IntoIterator<Item = Result<RecordBatch, Error>>,
{
    write(Format::Json, schema, batches, out)
}

pub fn write_parquet<W, I>(schema: SchemaRef, batches: I, out: W) -> Result<W, Error>
where
    W: Write + Send,
    I: IntoIterator<Item = Result<RecordBatch, Error>>,
{
    write(Format::Parquet, schema, batches, out)
}

/// A column of a batch, downcast once per batch.
enum ColumnData<'a> {
    /// `json`: the text is JSON (a complex value) and is embedded as such in JSON output.
    Text {
        array: &'a StringArray,
        json: bool,
    },
    Boolean(&'a BooleanArray),
    Integer(&'a Int64Array),
    Decimal(&'a Float64Array),
    List {
        array: &'a ListArray,
        items: Box<ColumnData<'a>>,
    },
}

impl<'a> ColumnData<'a> {
    fn new(array: &'a dyn Array, field: &Field) -> Result<ColumnData<'a>, Error> {
        let unsupported =
            || Error::Output(format!("column '{}' has unsupported type {}", field.name(), field.data_type()));
        let any = array.as_any();
        Ok(match field.data_type() {
            DataType::Utf8 => ColumnData::Text {
                array: any.downcast_ref().ok_or_else(unsupported)?,
                json: field.metadata().get(ENCODING_KEY).is_some_and(|e| e == "json"),
            },
            DataType::Boolean => ColumnData::Boolean(any.downcast_ref().ok_or_else(unsupported)?),
            DataType::Int64 => ColumnData::Integer(any.downcast_ref().ok_or_else(unsupported)?),
            DataType::Float64 => ColumnData::Decimal(any.downcast_ref().ok_or_else(unsupported)?),
            DataType::List(item) => {
                let array: &ListArray = any.downcast_ref().ok_or_else(unsupported)?;
                let item = item.as_ref().clone().with_metadata(field.metadata().clone());
                let items = ColumnData::new(array.values().as_ref(), &item)?;
                ColumnData::List { array, items: Box::new(items) }
            }
            _ => return Err(unsupported()),
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            ColumnData::Text { array, .. } => array.is_null(row),
            ColumnData::Boolean(array) => array.is_null(row),
            ColumnData::Integer(array) => array.is_null(row),
            ColumnData::Decimal(array) => array.is_null(row),
            ColumnData::List { array, .. } => array.is_null(row),
        }
    }

    /// The value as JSON text.
    fn push_json(&self, out: &mut String, row: usize) {
        if self.is_null(row) {
            out.push_str("null");
            return;
        }
        match self {
            ColumnData::Text { array, json } => {
                let text = array.value(row);
                // Re-serialized rather than copied, so that text that is not JSON after all
                // (a batch built elsewhere) cannot break the output.
                match json.then(|| serde_json::from_str::<Json>(text)) {
                    Some(Ok(value)) => out.push_str(&value.to_string()),
                    _ => push_json_string(out, text),
                }
            }
            ColumnData::Boolean(array) => out.push_str(if array.value(row) { "true" } else { "false" }),
            ColumnData::Integer(array) => {
                let _ = write!(out, "{}", array.value(row));
            }
            ColumnData::Decimal(array) => push_decimal(out, array.value(row)),
            ColumnData::List { array, items } => {
                out.push('[');
                let offsets = array.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                for (n, item) in (start..end).enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    items.push_json(out, item);
                }
                out.push(']');
            }
        }
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Shortest text that reads back as the same double (`5`, `0.95`); not-a-number has no JSON
/// form and is written as null.
fn push_decimal(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        out.push_str("null");
    }
}

fn json_row(out: &mut String, keys: &[String], columns: &[ColumnData<'_>], row: usize) {
    out.push('{');
    for (i, (key, column)) in keys.iter().zip(columns).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push(':');
        column.push_json(out, row);
    }
    out.push('}');
}

fn csv_row(out: &mut String, columns: &[ColumnData<'_>], row: usize) {
    let mut field = String::new();
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if column.is_null(row) {
            continue;
        }
        match column {
            ColumnData::Text { array, .. } => push_csv_field(out, array.value(row)),
            ColumnData::Boolean(array) => out.push_str(if array.value(row) { "true" } else { "false" }),
            ColumnData::Integer(array) => {
                let _ = write!(out, "{}", array.value(row));
            }
            ColumnData::Decimal(array) => push_decimal(out, array.value(row)),
            ColumnData::List { .. } => {
                field.clear();
                column.push_json(&mut field, row);
                push_csv_field(out, &field);
            }
        }
    }
    out.push_str("\r\n");
}

/// A field as RFC 4180 wants it: quoted, with quotes doubled, when it holds a comma, quote or
/// line break; the empty string is quoted so that it differs from null.
fn push_csv_field(out: &mut String, text: &str) {
    if text.is_empty() || text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ViewDefinition;

    fn output(format: Format, view: &ViewDefinition, resources: &[Json]) -> String {
        let out = write(format, view.schema(), view.batches(resources, 2), Vec::new()).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn view() -> ViewDefinition {
        ViewDefinition::from_json(&json!({"resource": "Patient", "select": [{"column": [
            {"name": "id", "path": "id", "type": "id"},
            {"name": "family", "path": "name.family.first()", "type": "string"},
            {"name": "active", "path": "active", "type": "boolean"},
            {"name": "births", "path": "multipleBirth.ofType(integer)", "type": "integer"},
            {"name": "score", "path": "extension.value.ofType(decimal)", "type": "decimal"},
            {"name": "given", "path": "name.given", "type": "string", "collection": true},
            {"name": "names", "path": "name", "type": "HumanName", "collection": true}
        ]}]}))
        .unwrap()
    }

    fn resources() -> Vec<Json> {
        vec![
            fhir::parse_json(
                br#"{"resourceType": "Patient", "id": "a", "active": true, "multipleBirthInteger": 2,
                    "extension": [{"url": "http://example.org/s", "valueDecimal": 0.25}],
                    "name": [{"family": "O'Hara, \"Jr\"", "given": ["Line\nbreak", "x,y"]}]}"#,
            )
            .unwrap(),
            json!({"resourceType": "Patient", "id": "b", "active": false, "name": [{"family": ""}]}),
            json!({"resourceType": "Patient", "id": "c", "name": [{"family": "tab\there\r"}]}),
        ]
    }

    #[test]
    fn csv_quotes_what_rfc_4180_requires() {
        let csv = output(Format::Csv, &view(), &resources());
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "id,family,active,births,score,given,names");
        assert_eq!(
            &lines[1..3],
            [
                r#"a,"O'Hara, ""Jr""",true,2,0.25,"[""Line\nbreak"",""x,y""]","[{""family"":""O'Hara, \""Jr\"""",""given"":[""Line\nbreak"",""x,y""]}]""#,
                // The empty string is quoted; nulls are empty fields.
                r#"b,"",false,,,[],"[{""family"":""""}]""#,
            ]
        );
        assert_eq!(lines[3], "c,\"tab\there\r\",,,,[],\"[{\"\"family\"\":\"\"tab\\there\\r\"\"}]\"");
        assert_eq!(lines[4], "", "every record ends with CRLF");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn ndjson_and_json_hold_typed_values() {
        let ndjson = output(Format::Ndjson, &view(), &resources());
        let rows: Vec<Json> = ndjson.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            json!({"id": "a", "family": "O'Hara, \"Jr\"", "active": true, "births": 2, "score": 0.25,
                "given": ["Line\nbreak", "x,y"], "names": [{"family": "O'Hara, \"Jr\"", "given": ["Line\nbreak", "x,y"]}]})
        );
        assert_eq!(
            rows[1],
            json!({"id": "b", "family": "", "active": false, "births": null, "score": null, "given": [],
                "names": [{"family": ""}]})
        );
        let keys: Vec<&String> = rows[2].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["id", "family", "active", "births", "score", "given", "names"],
            "column order is kept"
        );

        let json = output(Format::Json, &view(), &resources());
        let array: Json = serde_json::from_str(&json).unwrap();
        assert_eq!(array, Json::Array(rows));
        assert_eq!(output(Format::Json, &view(), &[]), "[]\n");
        assert_eq!(output(Format::Ndjson, &view(), &[]), "");
        assert_eq!(output(Format::Csv, &view(), &[]), "id,family,active,births,score,given,names\r\n");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!("application/x-ndjson".parse::<Format>().unwrap(), Format::Ndjson);
        assert_eq!(Format::Parquet.extension(), "parquet");
        assert!("xlsx".parse::<Format>().unwrap_err().to_string().contains("unknown output format 'xlsx'"));
    }

    #[test]
    fn a_batch_of_other_columns_is_refused() {
        let (view, other) = (view(), names_only());
        let mut writer = Writer::new(Format::Csv, view.schema(), Vec::new()).unwrap();
        let batch = other.batches(resources(), 10).next().unwrap().unwrap();
        assert!(writer.write(&batch).is_err());
    }

    fn names_only() -> ViewDefinition {
        ViewDefinition::from_json(
            &json!({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}),
        )
        .unwrap()
    }
}
