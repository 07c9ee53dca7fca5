//! `date`, `dateTime` and `instant` columns with Arrow's own temporal types, for outputs read
//! by analytics tools (Parquet): DuckDB, pandas or Spark then take `date_trunc('year',
//! effective)` or `year(birth_date)` without a cast.
//!
//! The batches a [`Runner`](crate::Runner) makes keep these columns as the text written in the
//! resource, which CSV, NDJSON and JSON output as is; [`NativeDates`] turns a batch's temporal
//! columns into `Date32` (`date`) and `Timestamp(Microsecond, "UTC")` (`dateTime`, `instant`),
//! one array per column and batch, parsing each text straight into a day or microsecond count.
//!
//! The rule for values that are not a full point in time:
//! - A partial value stands for the start of the period it names: `2020` is 2020-01-01,
//!   `2020-03` is 2020-03-01, and a `dateTime` without a time (`2020-03-04`) is
//!   2020-03-04T00:00:00Z.
//! - A time with an offset is converted to UTC (`2020-03-04T10:00:00+02:00` is 08:00:00Z); a
//!   time without one (not valid R4, accepted from files) is read as UTC, as are the partial
//!   values above.
//! - In a `date` column, a value with a time keeps the calendar date written before the `T`.
//! - Fractions of a second beyond the microsecond are cut off.
//! - Text that is no date at all is null; it never stops the run.
//!
//! The exact text (its precision and offset) is what the CSV, NDJSON and JSON outputs of the
//! same view hold; a Parquet file says so in its key-value metadata ([`PRECISION_NOTE_KEY`]).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Date32Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use fhir::datetime::days_from_civil;
use fhir::{DateTime, DateTimeKind};

use crate::Error;
use crate::view::FHIR_TYPE_KEY;

/// Parquet key-value metadata key of the note saying how partial dates were stored and where
/// their text is.
pub const PRECISION_NOTE_KEY: &str = "chartroom.partial_dates";

/// The note stored under [`PRECISION_NOTE_KEY`].
pub const PRECISION_NOTE: &str = "date columns are DATE and dateTime/instant columns TIMESTAMP \
    (microseconds, UTC). A partial value holds the start of the period it names (2020 -> \
    2020-01-01, 2020-03 -> 2020-03-01, a dateTime without time -> 00:00:00Z); a time with an \
    offset is converted to UTC, one without is read as UTC; unparsable text is null. The text as \
    written, with its precision and offset, is in the same view's CSV, NDJSON and JSON output.";

/// The time zone of timestamp columns.
const UTC: &str = "UTC";

/// The native type a column of a FHIR type takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Temporal {
    /// `date` as Arrow `Date32`: days since 1970-01-01.
    Date,
    /// `dateTime` and `instant` as Arrow `Timestamp(Microsecond, "UTC")`.
    Timestamp,
}

impl Temporal {
    /// From a field's declared FHIR type (its `fhir_type` metadata).
    fn of(field: &Field) -> Option<Temporal> {
        match field.metadata().get(FHIR_TYPE_KEY)?.as_str() {
            "date" | "http://hl7.org/fhirpath/System.Date" => Some(Temporal::Date),
            "dateTime" | "instant" | "http://hl7.org/fhirpath/System.DateTime" => Some(Temporal::Timestamp),
            _ => None,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Temporal::Date => DataType::Date32,
            Temporal::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        }
    }

    /// The text column (or its values, for a list) in the native type.
    fn convert(self, text: &StringArray) -> ArrayRef {
        match self {
            Temporal::Date => Arc::new(text.iter().map(|v| v.and_then(date_days)).collect::<Date32Array>()),
            Temporal::Timestamp => Arc::new(
                text.iter()
                    .map(|v| v.and_then(timestamp_micros))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone(UTC),
            ),
        }
    }
}

/// Turns the temporal columns of one schema's batches into Arrow's temporal types.
#[derive(Clone, Debug)]
pub struct NativeDates {
    schema: SchemaRef,
    /// Per column, the type its text becomes (`None`: left as it is).
    columns: Vec<Option<Temporal>>,
}

impl NativeDates {
    /// For batches of `schema` (a view's [`schema`](crate::ViewDefinition::schema)): columns
    /// whose `fhir_type` is `date`, `dateTime` or `instant` (or FHIRPath's `System.Date` and
    /// `System.DateTime`), single or `collection: true`, become temporal.
    pub fn new(schema: &SchemaRef) -> NativeDates {
        let columns: Vec<Option<Temporal>> = schema.fields().iter().map(|f| Temporal::of(f)).collect();
        let fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(field, temporal)| match temporal {
                Some(temporal) => Arc::new(native_field(field, *temporal)),
                None => field.clone(),
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        NativeDates { schema, columns }
    }

    /// The schema of the converted batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the schema has any temporal column (if not, batches pass unchanged).
    pub fn any(&self) -> bool {
        self.columns.iter().any(Option::is_some)
    }

    /// `batch` with its temporal columns converted; a column already of the native type is
    /// kept.
    pub fn convert(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        if batch.num_columns() != self.columns.len() {
            return Err(Error::Output("the batch's columns are not the schema's".to_string()));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(&self.columns)
            .zip(self.schema.fields())
            .map(|((array, temporal), field)| match temporal {
                Some(temporal) => convert_column(array, *temporal, field),
                None => Ok(array.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// The field with its type (or its list's item type) made temporal; metadata is kept.
fn native_field(field: &Field, temporal: Temporal) -> Field {
    let data_type = match field.data_type() {
        DataType::List(item) => {
            DataType::List(Arc::new(item.as_ref().clone().with_data_type(temporal.data_type())))
        }
        _ => temporal.data_type(),
    };
    field.clone().with_data_type(data_type)
}

fn convert_column(array: &ArrayRef, temporal: Temporal, field: &Field) -> Result<ArrayRef, Error> {
    if array.data_type() == field.data_type() {
        return Ok(array.clone());
    }
    let unexpected = || {
        Error::Output(format!(
            "column '{}' is {}, not text that can become {}",
            field.name(),
            array.data_type(),
            field.data_type()
        ))
    };
    let any = array.as_any();
    if let Some(text) = any.downcast_ref::<StringArray>() {
        return Ok(temporal.convert(text));
    }
    let (Some(list), DataType::List(item)) = (any.downcast_ref::<ListArray>(), field.data_type()) else {
        return Err(unexpected());
    };
    // The list's values are converted whole (a sliced list still points into them), and its
    // offsets and nulls kept.
    let values = list.values().as_any().downcast_ref::<StringArray>().ok_or_else(unexpected)?;
    let list = ListArray::try_new(
        item.clone(),
        list.offsets().clone(),
        temporal.convert(values),
        list.nulls().cloned(),
    )?;
    Ok(Arc::new(list))
}

/// Days since 1970-01-01 of a FHIR date (`2020`, `2020-03`, `2020-03-04`, or a dateTime's
/// date as written); `None` for text that is no date.
pub fn date_days(text: &str) -> Option<i32> {
    let value = parse(text)?;
    let days = days_from_civil(i64::from(value.year), u32::from(value.month), u32::from(value.day));
    i32::try_from(days).ok()
}

/// Microseconds since 1970-01-01T00:00:00Z of a FHIR dateTime or instant, by the rule in the
/// module documentation; `None` for text that is no dateTime.
pub fn timestamp_micros(text: &str) -> Option<i64> {
    Some(parse(text)?.lower_bound_micros())
}

/// FHIRPath's partial form is the lenient superset of date, dateTime and instant: any prefix,
/// the time zone optional. The parse allocates only to describe a failure.
fn parse(text: &str) -> Option<DateTime> {
    DateTime::parse(text, DateTimeKind::Partial).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MICROS_PER_DAY: i64 = 86_400_000_000;

    #[test]
    fn partial_values_are_the_start_of_their_period() {
        let day = |y, m, d| i32::try_from(days_from_civil(y, m, d)).unwrap();
        assert_eq!(date_days("1970-01-01"), Some(0));
        assert_eq!(date_days("2020-03-04"), Some(day(2020, 3, 4)));
        assert_eq!(date_days("2020-03"), Some(day(2020, 3, 1)));
        assert_eq!(date_days("2020"), Some(day(2020, 1, 1)));
        assert_eq!(date_days("1969-12-31"), Some(-1));
        // A dateTime in a date column keeps the date as written, whatever its offset.
        assert_eq!(date_days("2020-03-04T23:30:00-05:00"), Some(day(2020, 3, 4)));

        let midnight = |y, m, d| days_from_civil(y, m, d) * MICROS_PER_DAY;
        assert_eq!(timestamp_micros("2020"), Some(midnight(2020, 1, 1)));
        assert_eq!(timestamp_micros("2020-03"), Some(midnight(2020, 3, 1)));
        assert_eq!(timestamp_micros("2020-03-04"), Some(midnight(2020, 3, 4)));
        assert_eq!(
            timestamp_micros("2020-03-04T10:00:00+02:00"),
            Some(midnight(2020, 3, 4) + 8 * 3_600_000_000)
        );
        assert_eq!(timestamp_micros("2020-03-04T10:00:00Z"), Some(midnight(2020, 3, 4) + 10 * 3_600_000_000));
        // No offset (not valid R4 with a time): read as UTC.
        assert_eq!(timestamp_micros("2020-03-04T10:00:00"), Some(midnight(2020, 3, 4) + 10 * 3_600_000_000));
        assert_eq!(
            timestamp_micros("2021-01-01T01:00:00+02:00"),
            Some(midnight(2020, 12, 31) + 23 * 3_600_000_000)
        );
        assert_eq!(
            timestamp_micros("2020-03-04T10:00:00.123456789Z"),
            Some(midnight(2020, 3, 4) + 10 * 3_600_000_000 + 123_456),
            "cut to the microsecond"
        );
        assert_eq!(timestamp_micros("1969-12-31T23:59:59.5Z"), Some(-500_000));
    }

    #[test]
    fn text_that_is_no_date_is_none() {
        for text in [
            "",
            "soon",
            "2020-13",
            "2020-02-30",
            "20",
            "2020-03-04T25:00:00Z",
            "2020-03-04 10:00",
            "２０２０",
        ] {
            assert_eq!(date_days(text), None, "{text}");
            assert_eq!(timestamp_micros(text), None, "{text}");
        }
    }
}
