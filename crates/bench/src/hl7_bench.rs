//! HL7 v2 over MLLP: many senders' messages applied and acknowledged, as a hospital's
//! interface engine sends them (each connection waits for the ACK before the next message),
//! against the listener `serve --mllp-port` runs: the store synced on every commit, every
//! message audited with strict durability. Afterwards every message must have been
//! acknowledged AA and everything it carried must be in the record.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig, Method, Request};
use store::Store as _;

use crate::bench::{WorkDir, machine, open_store};

#[derive(clap::Args)]
pub struct Hl7BenchArgs {
    /// Messages to send in all.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Concurrent MLLP connections (senders).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Where the store goes (a temporary directory by default).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// The messages of one patient's stay, in the order a registration system and a laboratory
/// send them: registration, admission, results, a demographics update, discharge.
fn stay(n: usize) -> Vec<String> {
    let mrn = format!("B{n:07}");
    let visit = format!("V{n:07}");
    let msh = |kind: &str, control: &str| {
        format!("MSH|^~\\&|ADT|GHH|CHARTROOM|HIM|20240301080000||{kind}|{control}|P|2.5.1\r")
    };
    let pid = format!(
        "PID|1||{mrn}^^^GHH^MR||PATIENT{n}^ALEX^J||19{:02}0{}1{}|{}|||{} MAPLE AVE^^SPRINGFIELD^IL^62701||^PRN^PH^^^217^555{:04}\r",
        n % 100,
        1 + n % 9,
        n % 10,
        if n.is_multiple_of(2) { "F" } else { "M" },
        n % 900 + 1,
        n % 10_000
    );
    let pv1 = |extra: &str| {
        format!(
            "PV1|1|I|4W^4{:02}^A||||1234^WELBY^MARCUS|||MED||||7|||||{visit}|||||||||||||||||||||||||20240301073000{extra}\r",
            n % 40
        )
    };
    let mut results = format!(
        "{}{pid}OBR|1|O{n}|F{n}|24323-8^Comprehensive metabolic panel^LN|||20240301090000|||||||||||||||20240301113000|||F\r",
        msh("ORU^R01^ORU_R01", &format!("R{n}"))
    );
    for (i, (code, name, value, unit)) in [
        ("2345-7", "Glucose", "105", "mg/dL"),
        ("2951-2", "Sodium", "140", "mmol/L"),
        ("2823-3", "Potassium", "4.1", "mmol/L"),
        ("2160-0", "Creatinine", "0.9", "mg/dL"),
        ("3094-0", "Urea nitrogen", "14", "mg/dL"),
    ]
    .iter()
    .enumerate()
    {
        results.push_str(&format!("OBX|{}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|||||F\r", i + 1));
    }
    vec![
        format!("{}EVN|A04|20240301070000\r{pid}{}", msh("ADT^A04^ADT_A01", &format!("G{n}")), pv1("")),
        format!("{}EVN|A01|20240301073000\r{pid}{}", msh("ADT^A01^ADT_A01", &format!("A{n}")), pv1("")),
        results,
        format!("{}EVN|A08|20240301120000\r{pid}{}", msh("ADT^A08^ADT_A01", &format!("U{n}")), pv1("")),
        format!(
            "{}EVN|A03|20240302100000\r{pid}{}",
            msh("ADT^A03^ADT_A03", &format!("D{n}")),
            pv1("|20240302100000")
        ),
    ]
}

/// Sends `messages` one after another on one connection; returns each one's time to its ACK.
fn send_all(address: SocketAddr, messages: &[String]) -> Result<Vec<Duration>> {
    let mut stream = TcpStream::connect(address).context("cannot connect to the MLLP listener")?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(messages.len());
    let mut buffer = vec![0u8; 64 * 1024];
    let mut decoder = hl7::mllp::Decoder::new(1 << 20);
    for message in messages {
        let started = Instant::now();
        stream.write_all(&hl7::mllp::frame(message))?;
        let ack = loop {
            if let Some(ack) = decoder.next_message().map_err(|e| anyhow::anyhow!("{e}"))? {
                break ack;
            }
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                bail!("the listener closed the connection");
            }
            decoder.feed(&buffer[..read]);
        };
        latencies.push(started.elapsed());
        let ack = String::from_utf8_lossy(&ack).into_owned();
        if !ack.contains("\rMSA|AA|") {
            bail!("not accepted: {}", ack.replace('\r', "\n"));
        }
    }
    Ok(latencies)
}

pub fn run(args: Hl7BenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let work = WorkDir::new(args.work, "hl7")?;
    let data = work.path.join("data");
    let _ = std::fs::remove_dir_all(&data);
    // As `serve` runs by default: every commit synced, every access audited before it is
    // acknowledged.
    let store = open_store(&data, false)?;
    let api = Arc::new(Api::new(store.clone(), ApiConfig::default()));
    let security = Arc::new(server::Security::open(&data)?);
    let runtime = crate::runtime()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    runtime.spawn(server::serve_mllp(
        listener,
        api.clone(),
        Some(security.clone()),
        server::MllpConfig::interface("bench-interface"),
        std::future::pending(),
    ));

    let stays = args.messages.div_ceil(5);
    let connections = args.connections.max(1);
    // Each patient's messages go in order on one connection, as one sender's would.
    let mut per_connection: Vec<Vec<String>> = vec![Vec::new(); connections];
    for n in 0..stays {
        per_connection[n % connections].extend(stay(n));
    }
    let total: usize = per_connection.iter().map(Vec::len).sum();
    println!(
        "{total} messages ({stays} stays: A04, A01, ORU^R01 with 5 results, A08, A03) over {connections} MLLP connections"
    );
    let started = Instant::now();
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            per_connection.iter().map(|messages| scope.spawn(move || send_all(address, messages))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("a sender panicked"))).collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::with_capacity(total);
    for result in results {
        latencies.extend(result?);
    }
    latencies.sort();
    let quantile = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{} acknowledged AA in {:.2} s: {:.0} messages/s; ACK latency p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        quantile(0.5).as_secs_f64() * 1e3,
        quantile(0.99).as_secs_f64() * 1e3
    );

    // Everything acknowledged is in the record.
    let count = |resource_type: &str| -> Result<u64> {
        let request = Request {
            method: Some(Method::Get),
            base: "http://bench/fhir".into(),
            path: resource_type.into(),
            query: "_summary=count".into(),
            ..Default::default()
        };
        let response = runtime.block_on(api.handle(&request));
        let body: serde_json::Value = serde_json::from_slice(response.body.as_deref().unwrap_or(b"{}"))?;
        body["total"].as_u64().context("no total")
    };
    let (patients, encounters, observations, reports) =
        (count("Patient")?, count("Encounter")?, count("Observation")?, count("DiagnosticReport")?);
    println!(
        "stored: {patients} Patients, {encounters} Encounters, {observations} Observations, {reports} DiagnosticReports"
    );
    let expected = stays as u64;
    if patients != expected || encounters != expected || observations != 5 * expected || reports != expected {
        bail!(
            "the record does not hold what was acknowledged (expected {expected} patients, encounters and reports, {} observations)",
            5 * expected
        );
    }
    let finished = runtime.block_on(api.handle(&Request {
        method: Some(Method::Get),
        base: "http://bench/fhir".into(),
        path: "Encounter".into(),
        query: "status=finished&_summary=count".into(),
        ..Default::default()
    }));
    let body: serde_json::Value = serde_json::from_slice(finished.body.as_deref().unwrap_or(b"{}"))?;
    println!("{} encounters finished by their A03", body["total"]);
    println!("store: {} resources live", store.count_live()?);
    drop(runtime);
    store.close();
    Ok(ExitCode::SUCCESS)
}
