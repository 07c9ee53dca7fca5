//! `chartroom fhirpath`: evaluate an expression from the command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fhirpath::{Environment, Error, Expression};

#[derive(clap::Args)]
pub struct FhirpathArgs {
    /// The FHIRPath expression.
    expression: String,
    /// A JSON resource; standard input when absent.
    file: Option<PathBuf>,
    /// Resolve references (`resolve()`) from this data directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Strict semantic checking: unknown element names are errors.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: FhirpathArgs) -> Result<ExitCode> {
    let expression = match Expression::parse(&args.expression) {
        Ok(expression) => expression,
        Err(Error::Parse { position, message }) => {
            eprintln!("error at position {position}: {message}");
            eprintln!("  {}", args.expression);
            eprintln!("  {}^", " ".repeat(args.expression[..].chars().take(position).count()));
            return Ok(ExitCode::from(2));
        }
        Err(other) => return Err(other.into()),
    };
    let bytes = match &args.file {
        Some(file) => std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        None => {
            let mut buffer = Vec::new();
            std::io::stdin().read_to_end(&mut buffer).context("cannot read standard input")?;
            buffer
        }
    };
    let input = fhir::parse_json(&bytes).map_err(|e| anyhow::anyhow!("the input is not JSON: {e}"))?;
    // resolve() only reads: a snapshot of the record, beside a server that may be writing.
    let store = match &args.data {
        Some(dir) => Some(crate::DataArgs::dir(dir.clone()).open_read_only()?),
        None => None,
    };
    let arena = api::Arena::new();
    let resolver = store.as_ref().map(|s| api::StoreResolver::new(s.as_ref(), &arena));
    let env = Environment {
        strict: args.strict,
        resolver: resolver.as_ref().map(|r| r as &dyn fhirpath::Resolver),
        value_sets: Some(&validation::TERMINOLOGY),
        ..Environment::default()
    };
    match expression.evaluate(&input, &env) {
        Ok(result) => {
            let values: Vec<serde_json::Value> = result.iter().map(fhirpath::Value::to_json).collect();
            println!("{}", serde_json::to_string_pretty(&values)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("evaluation error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
