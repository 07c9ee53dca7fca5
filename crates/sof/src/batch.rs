//! Rows into Arrow record batches, a bounded number at a time.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, ListArray, RecordBatch};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, FieldRef};
use fhir::DateTime;
use serde_json::Value as Json;

use crate::Error;
use crate::row::{Cell, Lists, now};
use crate::view::{Kind, ViewDefinition};

/// The default number of rows per batch: small enough that a batch's buffers (a few hundred
/// kilobytes) are reused by the allocator rather than faulted in afresh, which at 8,192 rows
/// cost about 4% of the time (`chartroom-bench views`).
pub const DEFAULT_BATCH_SIZE: usize = 2048;

/// Runs a view over resources pushed one at a time. Memory holds at most one batch of rows
/// plus the rows of the resource being added.
pub struct Runner<'v> {
    view: &'v ViewDefinition,
    batch_size: usize,
    columns: Vec<ColumnBuilder>,
    pending: usize,
    rows: u64,
    /// One `now()` for the whole run.
    now: DateTime,
    lists: Lists,
}

impl<'v> Runner<'v> {
    /// A runner emitting batches of `batch_size` rows (at least 1).
    pub fn new(view: &'v ViewDefinition, batch_size: usize) -> Runner<'v> {
        let batch_size = batch_size.max(1);
        let columns = view
            .columns()
            .iter()
            .zip(view.schema().fields())
            .map(|(column, field)| ColumnBuilder::new(column.kind(), column.collection(), field, batch_size))
            .collect();
        Runner { view, batch_size, columns, pending: 0, rows: 0, now: now(), lists: Lists::default() }
    }

    /// Adds one resource's rows (none if it is not of the view's type); returns the batches
    /// that filled up. On an error no row of this resource has been added.
    pub fn push(&mut self, resource: &Json) -> Result<Vec<RecordBatch>, Error> {
        let rows = self.view.rows_at(resource, self.now, &mut self.lists)?;
        let mut full = Vec::new();
        for row in rows {
            for (builder, cell) in self.columns.iter_mut().zip(row) {
                builder.append(cell);
            }
            self.pending += 1;
            self.rows += 1;
            if self.pending == self.batch_size {
                full.push(self.flush()?);
            }
        }
        Ok(full)
    }

    /// The rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The last, partly filled batch (`None` when nothing is pending).
    pub fn finish(mut self) -> Result<Option<RecordBatch>, Error> {
        if self.pending == 0 {
            return Ok(None);
        }
        self.flush().map(Some)
    }

    fn flush(&mut self) -> Result<RecordBatch, Error> {
        self.pending = 0;
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.view.schema(), arrays)?)
    }
}

impl ViewDefinition {
    /// The view over `resources` as an iterator of batches of `batch_size` rows (the last may
    /// be shorter). It stops after the first error.
    pub fn batches<I>(&self, resources: I, batch_size: usize) -> Batches<'_, I::IntoIter>
    where
        I: IntoIterator,
        I::Item: Borrow<Json>,
    {
        Batches {
            runner: Some(Runner::new(self, batch_size)),
            resources: resources.into_iter(),
            ready: VecDeque::new(),
        }
    }
}

/// See [`ViewDefinition::batches`].
pub struct Batches<'v, I> {
    runner: Option<Runner<'v>>,
    resources: I,
    ready: VecDeque<RecordBatch>,
}

impl<I> Iterator for Batches<'_, I>
where
    I: Iterator,
    I::Item: Borrow<Json>,
{
    type Item = Result<RecordBatch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Some(Ok(batch));
            }
            let runner = self.runner.as_mut()?;
            match self.resources.next() {
                Some(resource) => match runner.push(resource.borrow()) {
                    Ok(batches) => self.ready.extend(batches),
                    Err(e) => {
                        self.runner = None;
                        return Some(Err(e));
                    }
                },
                None => return self.runner.take()?.finish().transpose(),
            }
        }
    }
}

/// The values of one kind.
enum Values {
    Text(StringBuilder),
    Boolean(BooleanBuilder),
    Integer(Int64Builder),
    Decimal(Float64Builder),
}

impl Values {
    fn new(kind: Kind, capacity: usize) -> Values {
        match kind {
            Kind::Text | Kind::Json => Values::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Boolean => Values::Boolean(BooleanBuilder::with_capacity(capacity)),
            Kind::Integer => Values::Integer(Int64Builder::with_capacity(capacity)),
            Kind::Decimal => Values::Decimal(Float64Builder::with_capacity(capacity)),
        }
    }

    /// Cells come typed for their column (see `row::scalar`); anything else is stored as null.
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Values::Text(b), Cell::Text(s)) => b.append_value(&*s),
            (Values::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
            (Values::Integer(b), Cell::Integer(v)) => b.append_value(v),
            (Values::Decimal(b), Cell::Decimal(v)) => b.append_value(v),
            (Values::Text(b), _) => b.append_null(),
            (Values::Boolean(b), _) => b.append_null(),
            (Values::Integer(b), _) => b.append_null(),
            (Values::Decimal(b), _) => b.append_null(),
        }
    }

    /// The values so far, leaving a builder sized like the batch just finished (Arrow's own
    /// `finish` leaves empty buffers that grow by doubling, reallocating every batch).
    fn finish(&mut self) -> ArrayRef {
        match self {
            Values::Text(b) => {
                let (count, bytes) = (b.len(), b.values_slice().len());
                Arc::new(std::mem::replace(b, StringBuilder::with_capacity(count, bytes)).finish())
            }
            Values::Boolean(b) => {
                let count = b.len();
                Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(count)).finish())
            }
            Values::Integer(b) => {
                let count = b.len();
                Arc::new(std::mem::replace(b, Int64Builder::with_capacity(count)).finish())
            }
            Values::Decimal(b) => {
                let count = b.len();
                Arc::new(std::mem::replace(b, Float64Builder::with_capacity(count)).finish())
            }
        }
    }
}

enum ColumnBuilder {
    Single(Values),
    /// A list column: the items in one values builder, with offsets and validity alongside.
    List {
        item: FieldRef,
        values: Values,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
        capacity: usize,
    },
}

impl ColumnBuilder {
    fn new(kind: Kind, collection: bool, field: &FieldRef, capacity: usize) -> ColumnBuilder {
        if !collection {
            return ColumnBuilder::Single(Values::new(kind, capacity));
        }
        let item = match field.data_type() {
            DataType::List(item) => item.clone(),
            _ => Arc::new(arrow_schema::Field::new_list_field(DataType::Utf8, true)),
        };
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        ColumnBuilder::List {
            item,
            values: Values::new(kind, capacity),
            offsets,
            validity: NullBufferBuilder::new(capacity),
            capacity,
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match self {
            ColumnBuilder::Single(values) => values.append(cell),
            ColumnBuilder::List { values, offsets, validity, .. } => {
                let mut end = offsets.last().copied().unwrap_or(0);
                match cell {
                    Cell::List(items) => {
                        end += items.len() as i32;
                        for item in items {
                            values.append(item);
                        }
                        validity.append_non_null();
                    }
                    _ => validity.append_null(),
                }
                offsets.push(end);
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow_schema::ArrowError> {
        match self {
            ColumnBuilder::Single(values) => Ok(values.finish()),
            ColumnBuilder::List { item, values, offsets, validity, capacity } => {
                let ended = std::mem::replace(offsets, Vec::with_capacity(*capacity + 1));
                offsets.push(0);
                let list = ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ended.into()),
                    values.finish(),
                    validity.finish(),
                )?;
                Ok(Arc::new(list))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use serde_json::json;

    use super::*;

    fn names_view() -> ViewDefinition {
        ViewDefinition::from_json(&json!({"resource": "Patient", "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {"forEach": "name", "column": [{"name": "n", "path": "%rowIndex", "type": "integer"},
                {"name": "given", "path": "given", "type": "string", "collection": true}]}
        ]}))
        .unwrap()
    }

    fn patient(id: usize, names: usize) -> Json {
        let names: Vec<Json> = (0..names).map(|i| json!({"given": [format!("g{i}")]})).collect();
        json!({"resourceType": "Patient", "id": format!("p{id}"), "name": names})
    }

    #[test]
    fn batches_are_full_except_the_last() {
        let view = names_view();
        let mut runner = Runner::new(&view, 4);
        let mut sizes = Vec::new();
        for id in 0..5 {
            sizes.extend(runner.push(&patient(id, 3)).unwrap().iter().map(RecordBatch::num_rows));
        }
        // One resource of ten rows fills two batches at once.
        sizes.extend(runner.push(&patient(5, 10)).unwrap().iter().map(RecordBatch::num_rows));
        sizes.extend(
            runner.push(&json!({"resourceType": "Observation"})).unwrap().iter().map(RecordBatch::num_rows),
        );
        assert_eq!(runner.rows(), 25);
        let last = runner.finish().unwrap().unwrap();
        sizes.push(last.num_rows());
        assert_eq!(sizes, vec![4, 4, 4, 4, 4, 4, 1]);
        assert_eq!(last.column(0).as_string::<i32>().value(0), "p5");
        assert_eq!(last.column(1).as_primitive::<Int64Type>().value(0), 9);
        let given = last.column(2).as_list::<i32>();
        assert_eq!(given.value(0).as_string::<i32>().value(0), "g9");
    }

    #[test]
    fn iterator_matches_the_runner_and_stops_at_an_error() {
        let view = names_view();
        let resources: Vec<Json> = (0..7).map(|id| patient(id, 2)).collect();
        let batches: Vec<RecordBatch> = view.batches(&resources, 3).collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(), vec![3, 3, 3, 3, 2]);
        assert!(view.batches(Vec::<Json>::new(), 3).next().is_none());

        let strict = ViewDefinition::from_json(&json!({"resource": "Patient", "select": [
            {"column": [{"name": "given", "path": "name.given"}]}]}))
        .unwrap();
        let bad = vec![patient(0, 1), patient(1, 2), patient(2, 1)];
        let mut runner = Runner::new(&strict, 10);
        runner.push(&bad[0]).unwrap();
        assert!(runner.push(&bad[1]).is_err());
        assert_eq!(runner.rows(), 1, "a failed resource adds no rows");
        let results: Vec<_> = strict.batches(&bad, 10).collect();
        assert_eq!(results.len(), 1);
        assert!(matches!(&results[0], Err(Error::Evaluation { resource, .. }) if resource == "Patient/p1"));
    }

    #[test]
    fn nulls_and_empty_lists_differ() {
        let view = ViewDefinition::from_json(&json!({"resource": "Patient", "select": [
            {"column": [{"name": "given", "path": "name.given", "type": "string", "collection": true}]},
            {"forEachOrNull": "contact", "column": [{"name": "tel", "path": "telecom.value", "type": "string", "collection": true}]}
        ]}))
        .unwrap();
        let batch = view.batches([json!({"resourceType": "Patient"})], 10).next().unwrap().unwrap();
        let (given, tel) = (batch.column(0).as_list::<i32>(), batch.column(1).as_list::<i32>());
        assert!(given.is_valid(0) && given.value(0).is_empty());
        assert!(tel.is_null(0));
    }
}
