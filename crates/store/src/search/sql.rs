//! SQL text built with its bound values, shared by the planner, the executor and the
//! parameter types' conditions. Every value is bound, never spliced into the text; only
//! table and column names (constants of this crate) are.

use std::rc::Rc;

use rusqlite::ToSql;
use rusqlite::types::Value as SqlValue;

/// SQL text with its bound values.
#[derive(Default)]
pub struct Sql {
    pub(crate) text: String,
    pub(crate) values: Vec<Box<dyn ToSql>>,
}

impl Sql {
    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(crate) fn bind(&mut self, value: impl Into<SqlValue>) {
        self.text.push('?');
        self.values.push(Box::new(value.into()));
    }

    pub(crate) fn bind_rkeys(&mut self, rkeys: &[i64]) {
        self.text.push_str("rarray(?)");
        let values: Vec<SqlValue> = rkeys.iter().map(|k| SqlValue::Integer(*k)).collect();
        self.values.push(Box::new(Rc::new(values)));
    }
}

/// Whether a table can be probed by rkey for any condition (it has an `(rkey, param)` index).
pub(crate) fn has_rkey_index(table: &str) -> bool {
    matches!(table, "idx_date" | "idx_number" | "idx_quantity" | "idx_reference")
}

/// The upper bound for a prefix range: every string starting with `prefix` sorts below it.
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}
