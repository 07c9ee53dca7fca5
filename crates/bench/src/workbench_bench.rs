//! `chartroom-bench workbench`: how long each workbench page takes the server, over HTTP,
//! with the population `search` loads (a million resources by default; the same working
//! directory reuses it). The pages are asked as a browser asks them, with the session cookie.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use api::{Api, ApiConfig};

use crate::bench::{HttpClient, WorkDir, machine, open_store, percentile};
use crate::{fixture, search_bench};

#[derive(clap::Args)]
pub struct WorkbenchBenchArgs {
    /// Resources to generate and import (25 per patient), unless already loaded in --work.
    #[arg(long, default_value_t = 1_000_000)]
    resources: usize,
    /// Measured requests per page (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Working directory (shared with `search`, whose loaded store is reused).
    #[arg(long)]
    work: Option<PathBuf>,
}

struct Page {
    label: &'static str,
    path: Box<dyn Fn(u64) -> String>,
    /// Fewer requests for a page that reads the whole record on every visit.
    requests: Option<usize>,
}

fn spread(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}

fn pages(patients: u64) -> Vec<Page> {
    let families = fixture::FAMILY;
    let page = |label, path: Box<dyn Fn(u64) -> String>| Page { label, path, requests: None };
    vec![
        page("home                 /", Box::new(|_| "/".into())),
        page(
            "patient search       /patients?name={family}",
            Box::new(move |n| {
                format!(
                    "/patients?name={}",
                    families[(spread(n) % families.len() as u64) as usize].replace('\'', "%27")
                )
            }),
        ),
        page(
            "chart                /patients/{id}",
            Box::new(move |n| format!("/patients/pat-{:08}", spread(n) % patients)),
        ),
        page(
            "versions             /patients/{id}/history/Patient/{id}",
            Box::new(move |n| {
                let id = format!("pat-{:08}", spread(n) % patients);
                format!("/patients/{id}/history/Patient/{id}")
            }),
        ),
        page("coding worklist      /coding", Box::new(|_| "/coding".into())),
        page(
            "coding screen        /coding/encounters/{id}",
            Box::new(move |n| format!("/coding/encounters/enc-{:08}-0", spread(n) % patients)),
        ),
        page(
            "audit search         /privacy/audit?user=anonymous",
            Box::new(|_| "/privacy/audit?user=anonymous".into()),
        ),
        page(
            "analytics table      /analytics/views/patients",
            Box::new(|_| "/analytics/views/patients".into()),
        ),
        page("administration       /admin", Box::new(|_| "/admin".into())),
        Page {
            label: "data quality         /quality",
            path: Box::new(|_| "/quality".into()),
            requests: Some(3),
        },
        Page {
            label: "access review        /privacy/monitor",
            path: Box::new(|_| "/privacy/monitor".into()),
            requests: Some(3),
        },
    ]
}

pub fn run(args: WorkbenchBenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(args.work, "search")?;
    let data = search_bench::load(&work.path, args.resources)?;
    let patients = (args.resources / 25).max(1) as u64;
    let store = open_store(&data, false)?;
    crate::ensure_index(store.as_ref())?;
    let api = Arc::new(Api::new(
        store.clone(),
        ApiConfig {
            views_dir: Some(data.join("views")),
            analytics_tables: Some(views::tables::tables_path(&data)),
            ..ApiConfig::default()
        },
    ));
    // The pages leave audit entries as in production (strict durability).
    let security = Arc::new(server::Security::open(&data)?);
    let config = server::ServerConfig { security: Some(security), require_auth: false, ..Default::default() };
    let runtime = crate::runtime()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address: SocketAddr = listener.local_addr()?;
    let router = server::router(api, config);
    runtime.spawn(async move {
        let _ = server::serve(listener, router, std::future::pending()).await;
    });
    // Served without authentication, the first page opens an administrator's session.
    let mut client = HttpClient::connect(address)?;
    client.get("/")?;
    let Some(cookie) = client.set_cookie.clone() else { bail!("the workbench opened no session") };
    let mut client = HttpClient::connect(address)?.with_cookie(&cookie);
    println!("{} patients; one browser over HTTP, server time per page:", patients);
    let mut worst = Duration::ZERO;
    for page in pages(patients) {
        let requests = page.requests.unwrap_or(args.requests);
        // The first visit: what a page that keeps its answer a while (data quality, the
        // administration page's counts) costs when it has nothing kept.
        let started = Instant::now();
        client.get(&(page.path)(1_000_000))?;
        let first = started.elapsed();
        for n in 1..(requests / 10).max(1) as u64 {
            client.get(&(page.path)(n + 1_000_000))?;
        }
        let mut latencies = Vec::with_capacity(requests);
        for n in 0..requests as u64 {
            let path = (page.path)(n);
            let started = Instant::now();
            let status = client.get(&path)?;
            latencies.push(started.elapsed());
            if status != 200 {
                bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&client.body));
            }
        }
        latencies.sort();
        let p99 = percentile(&latencies, 0.99);
        if page.requests.is_none() {
            worst = worst.max(p99);
        }
        println!(
            "  {:<58} first {:>9.2} ms  p50 {:>8.2} ms  p99 {:>8.2} ms  ({} requests, {:.0} KiB)",
            page.label,
            first.as_secs_f64() * 1e3,
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            requests,
            client.body.len() as f64 / 1024.0
        );
    }
    println!(
        "worst p99 (all pages but those kept: data quality, access review): {:.2} ms",
        worst.as_secs_f64() * 1e3
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
    store.close();
    Ok(ExitCode::SUCCESS)
}
