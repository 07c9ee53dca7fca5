//! `chartroom-bench`: the numbers in BENCHMARKS.md, measured the way clients see them. Kept
//! out of the `chartroom` binary so that the server HIM staff run carries no load generators,
//! and so that changing a benchmark rebuilds only this binary.

mod analytics_bench;
mod bench;
mod fixture;
mod hl7_bench;
mod mixed_bench;
mod mpi_bench;
mod risk_bench;
mod roundtrip_bench;
mod search_bench;
mod terminology_bench;
mod views_bench;
mod workbench_bench;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

// The same allocator as the server, so that in-process measurements match what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Chartroom's benchmarks: import, read, search, mixed load across a kill, FHIRPath,
/// terminology, code suggestion and SQL on FHIR views.
#[derive(Parser)]
#[command(name = "chartroom-bench", version)]
struct Cli {
    #[command(flatten)]
    bench: bench::BenchArgs,
}

fn main() -> ExitCode {
    match bench::run(Cli::parse().bench) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chartroom-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded runtime for the in-process servers the benchmarks start.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// A store written by another build has a stale search index: rebuild it before measuring.
fn ensure_index(store: &dyn store::Store) -> Result<()> {
    if store.index_is_stale() {
        eprintln!("the search index was built by a different version; rebuilding it");
        store.reindex().context("reindex failed")?;
    }
    Ok(())
}
