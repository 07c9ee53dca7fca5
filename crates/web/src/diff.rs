//! Field-by-field differences between two versions of a resource: every leaf path whose value
//! changed, appeared or went, in document order.

use serde_json::Value;

/// One changed field: its path (`name[0].given[1]`), before and after (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What changed from `before` to `after`. `meta` is left out: it changes with every version.
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out.retain(|c| !c.path.starts_with("meta"));
    out
}

fn leaf(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Change>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in a {
                walk(&join(key), Some(value), b.get(key), out);
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    walk(&join(key), None, Some(value), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (Some(Value::Object(a)), None) => {
            for (key, value) in a {
                walk(&join(key), Some(value), None, out);
            }
        }
        (None, Some(Value::Object(b))) => {
            for (key, value) in b {
                walk(&join(key), None, Some(value), out);
            }
        }
        (Some(Value::Array(a)), None) => {
            for (i, value) in a.iter().enumerate() {
                walk(&format!("{path}[{i}]"), Some(value), None, out);
            }
        }
        (None, Some(Value::Array(b))) => {
            for (i, value) in b.iter().enumerate() {
                walk(&format!("{path}[{i}]"), None, Some(value), out);
            }
        }
        (a, b) if a != b => {
            out.push(Change { path: path.to_string(), before: a.map(leaf), after: b.map(leaf) })
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_added_and_removed_leaves_are_listed_by_path() {
        let before = json!({ "meta": { "versionId": "1" }, "name": [{ "family": "Able", "given": ["Ann"] }], "gender": "female" });
        let after = json!({ "meta": { "versionId": "2" }, "name": [{ "family": "Abel", "given": ["Ann", "B"] }], "birthDate": "1980-02-03" });
        let found = changes(&before, &after);
        fn show(c: &Change) -> (&str, Option<&str>, Option<&str>) {
            (c.path.as_str(), c.before.as_deref(), c.after.as_deref())
        }
        assert_eq!(
            found.iter().map(show).collect::<Vec<_>>(),
            [
                ("name[0].family", Some("Able"), Some("Abel")),
                ("name[0].given[1]", None, Some("B")),
                ("gender", Some("female"), None),
                ("birthDate", None, Some("1980-02-03")),
            ]
        );
    }
}
