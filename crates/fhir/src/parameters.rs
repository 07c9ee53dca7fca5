//! The inputs of an operation, read once for every operation: from the query string (`GET`,
//! every value text) and from a `Parameters` body (`POST`: simple values as text, complex
//! ones and resources as JSON), in that order.

use serde_json::Value;

/// One input value.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A simple value (a query value, or a primitive `value[x]`), as text.
    Text(String),
    /// A complex value (`valueCoding`, ...) or a `resource`, as JSON.
    Json(Value),
}

/// Why inputs cannot be read as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// An operation's named inputs, in the order given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs(pub Vec<(String, Input)>);

impl Inputs {
    /// Decoded query pairs, every value text.
    pub fn from_query(pairs: &[(String, String)]) -> Inputs {
        Inputs(pairs.iter().map(|(n, v)| (n.clone(), Input::Text(v.clone()))).collect())
    }

    /// The parameters of a `Parameters` resource.
    pub fn from_parameters(parameters: &Value) -> Result<Inputs, InputError> {
        if parameters["resourceType"] != "Parameters" {
            return Err(InputError("the request body must be a Parameters resource".into()));
        }
        let mut out = Vec::new();
        for (i, parameter) in parameters["parameter"].as_array().into_iter().flatten().enumerate() {
            let Some(name) = parameter["name"].as_str() else {
                return Err(InputError(format!("Parameters.parameter[{i}] has no name")));
            };
            let value = if parameter["resource"].is_object() {
                Input::Json(parameter["resource"].clone())
            } else {
                let value = parameter
                    .as_object()
                    .and_then(|p| p.iter().find(|(k, _)| k.starts_with("value")))
                    .map(|(_, v)| v);
                match value {
                    Some(Value::String(s)) => Input::Text(s.clone()),
                    Some(Value::Bool(b)) => Input::Text(b.to_string()),
                    Some(Value::Number(n)) => Input::Text(n.to_string()),
                    Some(other @ Value::Object(_)) => Input::Json(other.clone()),
                    // A parameter with parts only (`part`) is passed on as it is.
                    _ if parameter["part"].is_array() => Input::Json(parameter.clone()),
                    _ => return Err(InputError(format!("parameter {name} has no value"))),
                }
            };
            out.push((name.to_owned(), value));
        }
        Ok(Inputs(out))
    }

    /// The query's inputs, then a `Parameters` body's (a body of another type is not one).
    pub fn from_request(query: &[(String, String)], body: Option<&Value>) -> Result<Inputs, InputError> {
        let mut inputs = Inputs::from_query(query);
        if let Some(body) = body.filter(|b| b["resourceType"] == "Parameters") {
            inputs.0.extend(Inputs::from_parameters(body)?.0);
        }
        Ok(inputs)
    }

    /// Every input's name, in order, with repeats.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Input> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
    }

    /// The one value of `name`; an error if it is given more than once.
    pub fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a Input>, InputError> {
        let mut found = self.all(name);
        let first = found.next();
        if found.next().is_some() {
            return Err(InputError(format!("the parameter {name} may appear only once")));
        }
        Ok(first)
    }

    /// The first text value of `name` (lenient: repeats and complex values are not errors).
    pub fn first_text(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|(n, v)| match v {
            Input::Text(t) if n == name => Some(t.as_str()),
            _ => None,
        })
    }

    /// The one simple value of `name`.
    pub fn text(&self, name: &str) -> Result<Option<String>, InputError> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Text(t)) => Ok(Some(t.clone())),
            Some(Input::Json(_)) => Err(InputError(format!("the parameter {name} must be a simple value"))),
        }
    }

    /// Every simple value of `name`.
    pub fn texts(&self, name: &str) -> Result<Vec<String>, InputError> {
        self.all(name)
            .map(|v| match v {
                Input::Text(t) => Ok(t.clone()),
                Input::Json(_) => Err(InputError(format!("the parameter {name} must be a simple value"))),
            })
            .collect()
    }

    /// `true` or `false`.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, InputError> {
        match self.text(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => {
                Err(InputError(format!("the parameter {name} must be true or false, not {other:?}")))
            }
        }
    }

    /// A non-negative whole number.
    pub fn count(&self, name: &str) -> Result<Option<usize>, InputError> {
        match self.text(name)? {
            None => Ok(None),
            Some(t) => t.trim().parse::<usize>().map(Some).map_err(|_| {
                InputError(format!("the parameter {name} must be a non-negative integer, not {t:?}"))
            }),
        }
    }

    /// The one complex value or resource of `name`.
    pub fn json(&self, name: &str) -> Result<Option<&Value>, InputError> {
        let mut found = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(InputError(format!("the parameter {name} may appear only once")));
        }
        match first {
            None => Ok(None),
            Some(Input::Json(v)) => Ok(Some(v)),
            Some(Input::Text(_)) => {
                Err(InputError(format!("the parameter {name} must be a complex value or a resource")))
            }
        }
    }

    /// The first resource (or complex value) of `name` (lenient).
    pub fn first_json(&self, name: &str) -> Option<&Value> {
        self.0.iter().find_map(|(n, v)| match v {
            Input::Json(j) if n == name => Some(j),
            _ => None,
        })
    }

    /// The inputs without those named `name`.
    pub fn without(&self, name: &str) -> Inputs {
        Inputs(self.0.iter().filter(|(n, _)| n != name).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms_are_read_alike() {
        let body = json!({ "resourceType": "Parameters", "parameter": [
            { "name": "code", "valueCode": "E11.9" },
            { "name": "count", "valueInteger": 5 },
            { "name": "coding", "valueCoding": { "system": "s", "code": "c" } },
            { "name": "resource", "resource": { "resourceType": "Patient" } } ] });
        let inputs = Inputs::from_request(&[("system".into(), "icd".into())], Some(&body)).unwrap();
        assert_eq!(inputs.names().collect::<Vec<_>>(), vec!["system", "code", "count", "coding", "resource"]);
        assert_eq!(inputs.text("code").unwrap().as_deref(), Some("E11.9"));
        assert_eq!(inputs.count("count").unwrap(), Some(5));
        assert_eq!(inputs.json("coding").unwrap().unwrap()["code"], "c");
        assert!(inputs.text("coding").is_err());
        assert!(Inputs::from_parameters(&json!({ "resourceType": "Patient" })).is_err());
        let twice = Inputs::from_query(&[("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert!(twice.one("a").is_err());
        assert_eq!(twice.first_text("a"), Some("1"));
    }
}
