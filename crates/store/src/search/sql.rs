//! SQL text built with its bound values, shared by the planner, the executor and the
//! parameter types' conditions. Every value is bound, never spliced into the text; only
//! table and column names (constants of this crate) are.
//!
//! The text is written once, in the dialect both backends read (SQLite's, kept to what
//! PostgreSQL also accepts: aliased subqueries, `1 = 0` for false); the few spellings that
//! differ (`?` placeholders, `rarray(?)` lists, `CROSS JOIN` as SQLite's join-order hint,
//! `instr`) are rewritten for PostgreSQL by [`Sql::postgres_text`], in one place.

use std::rc::Rc;

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value as SqlValue};

/// A value bound to one placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Bound {
    One(SqlValue),
    /// A list bound as one parameter (`IN rarray(?)`).
    List(Rc<Vec<SqlValue>>),
}

impl ToSql for Bound {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Bound::One(value) => value.to_sql(),
            Bound::List(values) => values.to_sql(),
        }
    }
}

/// SQL text with its bound values.
#[derive(Default)]
pub struct Sql {
    pub(crate) text: String,
    pub(crate) values: Vec<Bound>,
}

impl Sql {
    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(crate) fn bind(&mut self, value: impl Into<SqlValue>) {
        self.text.push('?');
        self.values.push(Bound::One(value.into()));
    }

    /// Binds a list of values as one parameter: `column IN ` followed by this.
    pub(crate) fn bind_list(&mut self, values: Vec<SqlValue>) {
        self.text.push_str("rarray(?)");
        self.values.push(Bound::List(Rc::new(values)));
    }

    pub(crate) fn bind_rkeys(&mut self, rkeys: &[i64]) {
        self.bind_list(rkeys.iter().map(|k| SqlValue::Integer(*k)).collect());
    }

    /// The text as PostgreSQL reads it: numbered, typed placeholders (`$3::bigint`), lists as
    /// `= ANY($n::text[])`, `JOIN` for SQLite's `CROSS JOIN ... ON` (there only a hint to keep
    /// the join order), `strpos` for `instr`, and no unary `+` (SQLite's hint not to use an
    /// index). Quoted literals are copied as they are.
    pub(crate) fn postgres_text(&self) -> String {
        let text = self.text.replace(" CROSS JOIN ", " JOIN ").replace("instr(", "strpos(");
        let text = text.replace("(+c", "(c").replace(", +c", ", c").replace("IN rarray(?)", "= ANY(?)");
        let mut out = String::with_capacity(text.len() + 16 * self.values.len());
        let mut in_quote = false;
        let mut next = 0;
        for c in text.chars() {
            match c {
                '\'' => {
                    in_quote = !in_quote;
                    out.push(c);
                }
                '?' if !in_quote => {
                    let cast = match self.values.get(next) {
                        Some(Bound::One(value)) => postgres_type(value),
                        Some(Bound::List(values)) => match values.first() {
                            Some(SqlValue::Text(_)) => "text[]",
                            Some(SqlValue::Real(_)) => "float8[]",
                            _ => "bigint[]",
                        },
                        None => "text",
                    };
                    next += 1;
                    out.push_str(&format!("${next}::{cast}"));
                }
                _ => out.push(c),
            }
        }
        out
    }
}

fn postgres_type(value: &SqlValue) -> &'static str {
    match value {
        SqlValue::Integer(_) => "bigint",
        SqlValue::Real(_) => "float8",
        SqlValue::Blob(_) => "bytea",
        SqlValue::Text(_) | SqlValue::Null => "text",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spelling() {
        let mut sql = Sql::default();
        sql.push("SELECT r.rkey FROM (SELECT x.rkey FROM idx_token x WHERE x.param = ");
        sql.bind(7i64);
        sql.push(" AND x.code IN ");
        sql.bind_list(vec![SqlValue::Text("a".into())]);
        sql.push(" AND instr(x.code, ");
        sql.bind("?".to_string());
        sql.push(") > 0 AND x.system <> '?') d CROSS JOIN resources r ON r.rkey = d.rkey");
        sql.push(" AND (+c0.target_type, +c0.target) IN (SELECT 1, 2) AND r.rkey IN ");
        sql.bind_rkeys(&[1, 2]);
        assert_eq!(
            sql.postgres_text(),
            "SELECT r.rkey FROM (SELECT x.rkey FROM idx_token x WHERE x.param = $1::bigint AND x.code = \
             ANY($2::text[]) AND strpos(x.code, $3::text) > 0 AND x.system <> '?') d JOIN resources r ON \
             r.rkey = d.rkey AND (c0.target_type, c0.target) IN (SELECT 1, 2) AND r.rkey = ANY($4::bigint[])"
        );
    }
}
