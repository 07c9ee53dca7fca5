//! Bulk Data round trip: `$export` from one Chartroom, `$import` into a fresh one. The source
//! serves its export files over HTTP on loopback; the destination pulls them by URL, as it
//! would from another server, and loads them through its import pipeline (validation on).
//! Afterwards every resource of the source must be in the destination, identical but for
//! `meta`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig, Method, Request};
use serde_json::{Value, json};

use crate::bench::{WorkDir, machine, open_store};
use crate::fixture;

#[derive(clap::Args)]
pub struct RoundTripArgs {
    /// Resources in the source record.
    #[arg(long, default_value_t = 100_000)]
    resources: usize,
    /// Where the two stores go (a temporary directory by default).
    #[arg(long)]
    work: Option<PathBuf>,
}

fn call(
    runtime: &tokio::runtime::Runtime,
    api: &Api,
    method: Method,
    path: &str,
    query: &str,
    body: Option<&Value>,
) -> api::Response {
    let request = Request {
        method: Some(method),
        base: "http://bench/fhir".into(),
        path: path.into(),
        query: query.into(),
        prefer: Some("respond-async".into()),
        content_type: body.map(|_| "application/fhir+json".to_string()),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ..Default::default()
    };
    runtime.block_on(api.handle(&request))
}

/// Polls a job's status URL (`http://bench/fhir/...`) until it answers 200.
fn poll(runtime: &tokio::runtime::Runtime, api: &Api, status_url: &str) -> Result<Value> {
    let target = status_url.strip_prefix("http://bench/fhir/").context("a status URL on another base")?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    loop {
        let status = call(runtime, api, Method::Get, path, query, None);
        match status.status {
            202 => std::thread::sleep(Duration::from_millis(50)),
            200 => return Ok(serde_json::from_slice(status.body.as_deref().unwrap_or(b"{}"))?),
            other => bail!("status {other}: {}", status.body_text()),
        }
    }
}

/// Every live resource without its `meta`, by type and id.
fn contents(store: &dyn store::Store) -> Result<HashMap<(String, String), Value>> {
    let mut all = HashMap::new();
    store.scan_current(&mut |resource_type, id, body| {
        let mut resource: Value =
            serde_json::from_slice(body).map_err(|e| store::Error::Corrupt(e.to_string()))?;
        if let Some(object) = resource.as_object_mut() {
            object.remove("meta");
        }
        all.insert((resource_type.to_string(), id.to_string()), resource);
        Ok(())
    })?;
    Ok(all)
}

pub fn run(args: RoundTripArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(args.work, "roundtrip")?;
    let input = work.path.join("ndjson");
    let _ = std::fs::remove_dir_all(&input);
    let counts = fixture::write_ndjson(&input, args.resources, 11)?;
    let runtime = crate::runtime()?;

    // The source: the record, and its bulk export served over HTTP.
    let source_dir = work.path.join("source");
    let _ = std::fs::remove_dir_all(&source_dir);
    let source_store = open_store(&source_dir, true)?;
    let source = Arc::new(Api::new(
        source_store.clone(),
        ApiConfig {
            export_dir: Some(source_dir.join("exports")),
            requires_access_token: false,
            ..ApiConfig::default()
        },
    ));
    let loaded = api::import::import(&source, &input, &api::import::ImportOptions::default(), &|_| {})
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("source: {} resources ({} patients)", loaded.imported, counts.patients);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let router = server::router(source.clone(), server::ServerConfig::default());
    runtime.spawn(async move {
        let _ = server::serve(listener, router, std::future::pending()).await;
    });

    let started = Instant::now();
    let kickoff = call(&runtime, &source, Method::Get, "$export", "", None);
    if kickoff.status != 202 {
        bail!("$export: {}", kickoff.body_text());
    }
    let manifest = poll(&runtime, &source, kickoff.location.as_deref().unwrap_or(""))?;
    let exported = started.elapsed();
    let inputs: Vec<Value> = manifest["output"]
        .as_array()
        .context("no output")?
        .iter()
        .map(|output| {
            let url = output["url"].as_str().unwrap_or("").replace("http://bench/fhir", &format!("http://{address}/fhir"));
            json!({"name": "input", "part": [{"name": "type", "valueCode": output["type"]}, {"name": "url", "valueUri": url}]})
        })
        .collect();
    let files = inputs.len();

    // The destination: a fresh record pulling the files by URL.
    let destination_dir = work.path.join("destination");
    let _ = std::fs::remove_dir_all(&destination_dir);
    let destination_store = open_store(&destination_dir, true)?;
    let destination = Arc::new(Api::new(
        destination_store.clone(),
        ApiConfig { import_dir: Some(destination_dir.join("imports")), ..ApiConfig::default() },
    ));
    let mut parameters = vec![
        json!({"name": "inputFormat", "valueCode": "application/fhir+ndjson"}),
        json!({"name": "inputSource", "valueUri": format!("http://{address}/fhir")}),
    ];
    parameters.extend(inputs);
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    let import_started = Instant::now();
    let kickoff = call(&runtime, &destination, Method::Post, "$import", "", Some(&body));
    if kickoff.status != 202 {
        bail!("$import: {}", kickoff.body_text());
    }
    let result = poll(&runtime, &destination, kickoff.location.as_deref().unwrap_or(""))?;
    let imported = import_started.elapsed();
    let stored: u64 =
        result["output"].as_array().into_iter().flatten().filter_map(|o| o["count"].as_u64()).sum();
    let refused: u64 =
        result["error"].as_array().into_iter().flatten().filter_map(|o| o["count"].as_u64()).sum();
    println!(
        "$export: {} resources in {files} files in {:.2} s ({:.0} resources/s)",
        loaded.imported,
        exported.as_secs_f64(),
        loaded.imported as f64 / exported.as_secs_f64()
    );
    println!(
        "$import over HTTP: {stored} stored, {refused} refused in {:.2} s ({:.0} resources/s)",
        imported.as_secs_f64(),
        stored as f64 / imported.as_secs_f64()
    );
    println!(
        "round trip: {:.2} s ({:.0} resources/s)",
        started.elapsed().as_secs_f64(),
        stored as f64 / started.elapsed().as_secs_f64()
    );

    let before = contents(source_store.as_ref())?;
    let after = contents(destination_store.as_ref())?;
    let identical = before.iter().filter(|(key, resource)| after.get(*key) == Some(*resource)).count();
    println!("identical but for meta: {identical} of {} (destination holds {})", before.len(), after.len());
    drop(runtime);
    source_store.close();
    destination_store.close();
    if identical != before.len() || after.len() != before.len() || refused > 0 {
        bail!("the destination does not hold the source's resources");
    }
    Ok(ExitCode::SUCCESS)
}
