//! Building FHIR JSON without empty elements: the server rejects empty strings, arrays and
//! objects, and a v2 message leaves many fields blank.

use serde_json::{Map, Value as Json};

/// An object under construction that silently drops empty members.
#[derive(Debug, Default)]
pub(crate) struct Object(Map<String, Json>);

impl Object {
    pub fn new() -> Object {
        Object(Map::new())
    }

    /// Adds a member unless it is empty.
    pub fn set(mut self, key: &str, value: impl Into<Json>) -> Object {
        let value = value.into();
        if !is_empty(&value) {
            self.0.insert(key.to_string(), value);
        }
        self
    }

    /// Adds a member if there is one and it is not empty.
    pub fn maybe(self, key: &str, value: Option<impl Into<Json>>) -> Object {
        match value {
            Some(value) => self.set(key, value),
            None => self,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn build(self) -> Json {
        Json::Object(self.0)
    }

    /// The object, or `None` when nothing went into it.
    pub fn non_empty(self) -> Option<Json> {
        (!self.0.is_empty()).then(|| Json::Object(self.0))
    }
}

/// An array of what is not empty.
pub(crate) fn array(items: impl IntoIterator<Item = Json>) -> Json {
    Json::Array(items.into_iter().filter(|i| !is_empty(i)).collect())
}

pub(crate) fn is_empty(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.iter().all(is_empty),
        Json::Object(o) => o.values().all(is_empty),
        Json::Bool(_) | Json::Number(_) => false,
    }
}
