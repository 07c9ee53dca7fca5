//! Generates a population and prints what was written and how fast:
//! `cargo run --release -p chartroom-synth --example population -- OUT [PATIENTS] [SEED]`.

use std::path::PathBuf;
use std::process::ExitCode;

use chartroom_synth::{GenerateOptions, generate};

// The `chartroom` binary's allocator, so the rate printed is the one the CLI sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: population OUT [PATIENTS] [SEED]");
        return ExitCode::FAILURE;
    };
    let defaults = GenerateOptions::default();
    let patients = args.next().and_then(|a| a.parse().ok()).unwrap_or(defaults.patients);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(defaults.seed);
    match generate(&GenerateOptions { patients, seed, ..Default::default() }, &out, &|_| {}) {
        Ok(summary) => {
            for (resource_type, count) in &summary.resources {
                println!("{count:>10}  {resource_type}");
            }
            let seconds = summary.elapsed.as_secs_f64().max(1e-9);
            println!(
                "{} patients, {} resources in {seconds:.2} s: {:.0} patients/s, {:.0} resources/s",
                summary.patients,
                summary.total(),
                summary.patients as f64 / seconds,
                summary.total() as f64 / seconds
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
