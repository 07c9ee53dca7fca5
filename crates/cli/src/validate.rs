//! `chartroom validate FILE...`: every issue of each resource against the R4 definitions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use fhir::Severity;
use validation::Validator;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// JSON files (one resource each) or NDJSON files (one resource per line).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Prints one line per issue (`FILE[:LINE]: severity location: message`) and a summary;
/// exits 1 when any resource has an error.
pub fn run(args: ValidateArgs) -> Result<ExitCode> {
    let validator = Validator::r4();
    let (mut resources, mut invalid, mut warnings) = (0usize, 0usize, 0usize);
    for file in &args.files {
        let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let ndjson = file.extension().is_some_and(|e| e == "ndjson");
        let units: Vec<(Option<usize>, &[u8])> = if ndjson {
            text.split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .map(|(n, line)| (Some(n + 1), line))
                .collect()
        } else {
            vec![(None, text.as_slice())]
        };
        for (line, bytes) in units {
            resources += 1;
            let place = match line {
                Some(n) => format!("{}:{n}", file.display()),
                None => file.display().to_string(),
            };
            let resource = match fhir::parse_json(bytes) {
                Ok(resource) => resource,
                Err(error) => {
                    invalid += 1;
                    println!("{place}: error: {error}");
                    continue;
                }
            };
            let issues = validator.validate(&resource);
            if validation::has_errors(&issues) {
                invalid += 1;
            }
            for issue in issues {
                if issue.severity == Severity::Warning {
                    warnings += 1;
                }
                let location = issue.expression.first().map(String::as_str).unwrap_or("");
                println!("{place}: {} {location}: {}", issue.severity.code(), issue.diagnostics);
            }
        }
    }
    println!("{resources} resources checked: {invalid} with errors, {warnings} warnings");
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
