//! FHIRPath (the N1 normative release used by FHIR R4, with the later functions the official
//! test suite exercises) over FHIR JSON.
//!
//! Compile once, evaluate many: an [`Expression`] is parsed and checked once (unknown
//! functions, wrong argument counts and syntax errors are found then) and is `Send + Sync`.
//! Evaluation borrows the input JSON; elements are typed from the embedded R4 definitions, so
//! choice elements (`Observation.value`), `is`/`as`/`ofType` and type inheritance work.

mod ast;
mod boundary;
mod direct;
mod eval;
mod functions;
mod lexer;
mod parser;
mod text;
pub mod ucum;
mod value;

pub use direct::{DirectPath, Scratch, compares_as_text};
pub use eval::{Environment, Resolver, ValueSets, lookup};
pub use value::{Collection, Node, Quantity, TypeInfo, Value};

use eval::{Evaluator, Frame};
use serde_json::Value as Json;

/// What can go wrong with an expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a valid expression (syntax, unknown function, wrong argument count).
    #[error("at position {position}: {message}")]
    Parse {
        /// 0-based character offset.
        position: usize,
        message: String,
    },
    /// Evaluation failed (e.g. a collection where a single item is required).
    #[error("{0}")]
    Evaluation(String),
}

impl Error {
    pub(crate) fn parse(position: usize, message: impl Into<String>) -> Self {
        Error::Parse { position, message: message.into() }
    }

    pub(crate) fn eval(message: impl Into<String>) -> Self {
        Error::Evaluation(message.into())
    }
}

/// A parsed FHIRPath expression.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    ast: ast::Expr,
}

impl Expression {
    /// Parses and checks an expression.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Ok(Expression { source: text.to_string(), ast: parser::parse(text)? })
    }

    /// The expression as a [`DirectPath`], when it is one of the shapes that can be walked
    /// straight over the JSON.
    pub fn direct(&self) -> Option<DirectPath> {
        DirectPath::compile(&self.ast, &|_| None)
    }

    /// [`Expression::direct`] for an evaluation whose `%name` variables of text value are
    /// those `constant` gives (a ViewDefinition's constants).
    pub fn direct_with(&self, constant: &dyn Fn(&str) -> Option<String>) -> Option<DirectPath> {
        DirectPath::compile(&self.ast, constant)
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the `%variables` the expression refers to (without the `%`), each once, in
    /// order of first use: a caller supplying its own variables can reject unknown names
    /// before evaluating anything, and skip setting variables an expression does not read.
    pub fn variables(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.ast.visit(&mut |expr| {
            if let ast::Expr::Variable(name) = expr
                && !names.contains(&name.as_str())
            {
                names.push(name.as_str());
            }
        });
        names
    }

    /// Evaluates against a resource (or any FHIR JSON; a resource is typed by its
    /// `resourceType`).
    pub fn evaluate<'a>(&self, input: &'a Json, env: &Environment<'a>) -> Result<Collection<'a>, Error> {
        let item = Value::Node(Node::resource(input));
        let root = match env.root {
            Some(root) => vec![Value::Node(Node::resource(root))],
            None => vec![item.clone()],
        };
        self.evaluate_collection(vec![item], root, env)
    }

    /// Evaluates with an explicit input collection and `%resource`.
    pub fn evaluate_collection<'a>(
        &self,
        input: Collection<'a>,
        root: Collection<'a>,
        env: &Environment<'a>,
    ) -> Result<Collection<'a>, Error> {
        let evaluator = Evaluator { env, context: input.clone(), root, work: std::cell::Cell::new(0) };
        evaluator.eval(&self.ast, &input, &Frame { this: None, index: None, total: None })
    }
}

impl std::fmt::Display for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expression: &str, input: &Json) -> Vec<String> {
        let env = Environment::default();
        Expression::parse(expression)
            .unwrap()
            .evaluate(input, &env)
            .unwrap()
            .iter()
            .map(Value::display)
            .collect()
    }

    #[test]
    fn expressions_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Expression>();
    }

    #[test]
    fn paths_choice_types_and_functions() {
        let observation = serde_json::json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "subject": {"reference": "Patient/1"}
        });
        assert_eq!(eval("Observation.code.coding.code", &observation), vec!["8867-4"]);
        assert_eq!(eval("value.value", &observation), vec!["72"]);
        assert_eq!(eval("(Observation.value as Quantity).unit", &observation), vec!["/min"]);
        assert_eq!(eval("value.ofType(Quantity).value > 60", &observation), vec!["true"]);
        assert_eq!(eval("subject.reference.startsWith('Patient/')", &observation), vec!["true"]);
        assert!(eval("Patient.name", &observation).is_empty());
    }

    #[test]
    fn resolve_within_a_bundle_and_contained() {
        let bundle = serde_json::json!({
            "resourceType": "Bundle", "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:obs", "resource": {"resourceType": "Observation", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "urn:uuid:pat"},
                    "performer": [{"reference": "Practitioner/dr"}, {"reference": "#org"}],
                    "contained": [{"resourceType": "Organization", "id": "org", "name": "Lab"}]}},
                {"fullUrl": "urn:uuid:pat", "resource": {"resourceType": "Patient", "id": "p", "gender": "female"}},
                {"fullUrl": "http://example.org/fhir/Practitioner/dr", "resource": {"resourceType": "Practitioner", "id": "dr"}}
            ]
        });
        assert_eq!(eval("entry[0].resource.subject.resolve().gender", &bundle), vec!["female"]);
        assert_eq!(eval("entry[0].resource.performer[0].resolve().id", &bundle), vec!["dr"]);
        assert_eq!(eval("entry[0].resource.subject.resolve() is Patient", &bundle), vec!["true"]);
        let observation = &bundle["entry"][0]["resource"];
        assert_eq!(eval("performer[1].resolve().name", observation), vec!["Lab"]);
    }

    #[test]
    fn quantities_dates_and_extensions() {
        let empty = serde_json::json!({});
        assert_eq!(eval("1 'kg' = 1000 'g'", &empty), vec!["true"]);
        assert_eq!(
            eval("98.6 '[degF]' = 37 'Cel'", &empty),
            Vec::<String>::new(),
            "offset units do not convert"
        );
        assert_eq!(
            eval("140 'mg/dL' > 7 'mmol/L'", &empty),
            Vec::<String>::new(),
            "mass and amount do not compare"
        );
        assert_eq!(eval("120 'mm[Hg]' > 15 'kPa'", &empty), vec!["true"]);
        assert_eq!(eval("@2020-01-31 + 1 month", &empty), vec!["@2020-02-29"]);
        assert_eq!(eval("@2020-03-01T00:00:00Z - 1 day", &empty), vec!["@2020-02-29T00:00:00Z"]);
        assert_eq!(
            eval("(@2020 = @2020-01).empty()", &empty),
            vec!["true"],
            "unknown at differing precision"
        );
        let patient = serde_json::json!({"resourceType": "Patient", "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                          "valueDateTime": "1974-12-25T14:35:45-05:00"}]}});
        assert_eq!(
            eval(
                "birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value",
                &patient
            ),
            vec!["@1974-12-25T14:35:45-05:00"]
        );
        // memberOf() asks the caller's value sets (here a stand-in with one value set).
        struct Genders;
        impl ValueSets for Genders {
            fn contains(&self, url: &str, system: &str, code: &str) -> Option<bool> {
                (url == "vs-gender").then(|| system == "sys-gender" && matches!(code, "male" | "female"))
            }
            fn codes(&self, url: &str) -> Option<Vec<(String, String)>> {
                (url == "vs-gender").then(|| {
                    vec![("sys-gender".into(), "male".into()), ("sys-gender".into(), "female".into())]
                })
            }
        }
        let member = |expression: &str, resource: &serde_json::Value, value_sets: Option<&dyn ValueSets>| {
            let env = Environment { value_sets, ..Environment::default() };
            Expression::parse(expression)
                .and_then(|e| {
                    e.evaluate(resource, &env).map(|c| c.iter().map(Value::display).collect::<Vec<_>>())
                })
                .unwrap_or_default()
        };
        let male = serde_json::json!({"resourceType": "Patient", "gender": "male",
            "maritalStatus": {"coding": [{"system": "sys-gender", "code": "female"}, {"system": "other", "code": "x"}]}});
        assert_eq!(member("gender.memberOf('vs-gender')", &male, Some(&Genders)), vec!["true"]);
        assert_eq!(member("maritalStatus.memberOf('vs-gender')", &male, Some(&Genders)), vec!["true"]);
        assert_eq!(
            member("maritalStatus.coding[1].memberOf('vs-gender')", &male, Some(&Genders)),
            vec!["false"]
        );
        assert_eq!(member("gender.memberOf('vs-other')", &male, Some(&Genders)), Vec::<String>::new());
        assert_eq!(
            member("gender.memberOf('vs-gender')", &male, None),
            Vec::<String>::new(),
            "no value sets: unknown"
        );
    }

    #[test]
    fn complex_equality_compares_numbers_by_value() {
        let observation = fhir::parse_json(
            br#"{"resourceType": "Observation", "component": [
                {"code": {"text": "a"}, "valueQuantity": {"value": 1.0, "unit": "g"}},
                {"valueQuantity": {"unit": "g", "value": 1.00}, "code": {"text": "a"}},
                {"code": {"text": "a"}, "valueQuantity": {"value": 1.01, "unit": "g"}}]}"#,
        )
        .unwrap();
        assert_eq!(eval("component.distinct().count()", &observation), vec!["2"]);
        assert_eq!(eval("component[0] = component[1]", &observation), vec!["true"]);
    }

    #[test]
    fn variables_are_listed_once_in_order() {
        let expression = Expression::parse("name.where(use = %a).given | %b.select(%a & %rowIndex)").unwrap();
        assert_eq!(expression.variables(), vec!["a", "b", "rowIndex"]);
        assert!(Expression::parse("name.given").unwrap().variables().is_empty());
    }

    #[test]
    fn parse_errors_have_positions() {
        match Expression::parse("name.where(") {
            Err(Error::Parse { position, .. }) => assert_eq!(position, 11),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Expression::parse("name.nosuch()"), Err(Error::Parse { position: 5, .. })));
        assert!(matches!(Expression::parse("substring()"), Err(Error::Parse { .. })));
    }
}
