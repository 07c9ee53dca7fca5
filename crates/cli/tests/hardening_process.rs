//! Regression tests that need the real `chartroom serve` process: requests that could take
//! the whole process down, audit entries that must outlive a `kill -9`, and a request body
//! that stops arriving.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use privacy::{Role, Users};
use serde_json::{Value, json};

/// A `chartroom serve` process, killed when dropped.
struct Served {
    child: Child,
    base: String,
    data: PathBuf,
    admin: String,
    patient_a: String,
    reader: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `chartroom serve --port 0` on a fresh data directory with three users (an
/// administrator, patient pa's own token, and an analyst called `reader`) and patient pa.
async fn serve(name: &str, extra: &[&str]) -> Served {
    let data = testkit::temp_dir(name);
    let users = Users::open(&data).expect("users");
    let admin = users.add("root", Role::Admin, None, None).expect("admin");
    let patient_a = users.add("alice", Role::Patient, Some("pa"), None).expect("patient");
    let reader = users.add("reader", Role::Analyst, None, None).expect("analyst");
    drop(users);
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chartroom serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let Some(base) = line.split_whitespace().find(|word| word.starts_with("http://")).map(str::to_string)
    else {
        let _ = child.kill();
        let status = child.wait().ok();
        panic!("chartroom serve {extra:?} did not start (exit {status:?}, banner {line:?})");
    };
    let served = Served { child, base, data, admin, patient_a, reader };
    let patient = json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "Able" }] });
    let client = reqwest::Client::new();
    let response = client
        .put(format!("{}/Patient/pa", served.base))
        .bearer_auth(&served.admin)
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .await
        .expect("store Patient/pa");
    assert!(response.status().is_success(), "{}", response.status());
    served
}

impl Served {
    fn address(&self) -> String {
        self.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string()
    }

    fn data(&self) -> &Path {
        &self.data
    }

    /// Whether the process still answers an ordinary read.
    async fn still_answers(&self, context: &str) {
        let response = reqwest::Client::new()
            .get(format!("{}/Patient/pa", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{context}: the server no longer answers ({e})"));
        assert_eq!(response.status(), 200, "{context}");
    }
}

/// The status and body of a response, or why none came.
async fn outcome_of(response: reqwest::Result<reqwest::Response>) -> Result<(u16, Value), String> {
    let response = response.map_err(|e| format!("no response: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| format!("{status}, body lost: {e}"))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

fn assert_bad_request(result: Result<(u16, Value), String>, context: &str) {
    let (status, body) = result.unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(status, 400, "{context}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: {body}");
}

// Finding 4: one request must not take the process down.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chain_in_a_search_url_is_refused_not_fatal() {
    let served = serve("hardening-deep-chain-url", &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/Patient?{}name=x", served.base, "link.".repeat(2_400));
    for (who, token) in [("patient", &served.patient_a), ("admin", &served.admin)] {
        let result = outcome_of(client.get(&url).bearer_auth(token).send().await).await;
        assert_bad_request(result, &format!("{who}: link. x 2,400"));
        served.still_answers(&format!("after {who}'s deep chain")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_has_chain_in_a_search_url_is_refused_not_fatal() {
    let served = serve("hardening-deep-has-url", &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/Patient?{}name=x", served.base, "_has:Patient:link:".repeat(2_400));
    for (who, token) in [("patient", &served.patient_a), ("admin", &served.admin)] {
        let result = outcome_of(client.get(&url).bearer_auth(token).send().await).await;
        assert_bad_request(result, &format!("{who}: _has:Patient:link: x 2,400"));
        served.still_answers(&format!("after {who}'s deep _has")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chains_in_a_search_form_are_refused_not_fatal() {
    let served = serve("hardening-deep-chain-form", &[]).await;
    let client = reqwest::Client::new();
    for (what, form) in [
        ("link. x 2,400", format!("{}name=x", "link.".repeat(2_400))),
        ("link. x 20,000", format!("{}name=x", "link.".repeat(20_000))),
        ("_has:Patient:link: x 2,400", format!("{}name=x", "_has:Patient:link:".repeat(2_400))),
        ("_has:Patient:link: x 20,000", format!("{}name=x", "_has:Patient:link:".repeat(20_000))),
    ] {
        let request = client
            .post(format!("{}/Patient/_search", served.base))
            .bearer_auth(&served.admin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        assert_bad_request(outcome_of(request.send().await).await, &format!("form {what}"));
        served.still_answers(&format!("after the form {what}")).await;
    }
}

// Finding 9: an entry for every response delivered, even when the process is killed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_responses_are_audited_before_a_kill() {
    let mut served = serve("hardening-audit-kill", &[]).await;
    let client = reqwest::Client::new();
    let mut delivered = 0;
    for _ in 0..200 {
        let response =
            client.get(format!("{}/Patient/pa", served.base)).bearer_auth(&served.reader).send().await;
        if let Ok(response) = response
            && response.status() == 200
            && response.bytes().await.is_ok()
        {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 200);
    // SIGKILL: no shutdown, no final flush of the trail.
    served.child.kill().expect("kill -9");
    served.child.wait().expect("reap");
    let audited = privacy::audit::entries(served.data())
        .expect("read the trail")
        .into_iter()
        .filter(|(_, _, access)| access.user == "reader")
        .count();
    assert!(audited >= delivered, "{delivered} responses delivered, {audited} audited");
}

// Finding 10a: a request body that stops arriving.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_times_out_with_408() {
    let served = serve("hardening-body-timeout", &["--body-timeout-secs", "2"]).await;
    let (address, token) = (served.address(), served.admin.clone());
    let (status, head, body, elapsed) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let request = format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{\"resource"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let started = Instant::now();
        let mut response = Vec::new();
        let mut buffer = [0u8; 8192];
        // Until the server has said all it will, or the read timeout passes.
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            }
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|length| response.len() >= end + 4 + length) {
                    break;
                }
            }
        }
        let elapsed = started.elapsed();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..end]).to_string();
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.get(end + 4..).unwrap_or_default().to_vec();
        (status, head, body, elapsed)
    })
    .await
    .unwrap();
    assert_eq!(status, 408, "after {elapsed:?}: {head}");
    assert!(elapsed <= Duration::from_secs(7), "answered only after {elapsed:?}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/fhir+json"), "{head}");
    let outcome: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{}", String::from_utf8_lossy(&body));
    served.still_answers("after the stalled body").await;
}
