//! A write acknowledged with 2xx survives `kill -9` of the server process.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

mod support;

/// `chartroom serve` on a free port, without tokens.
fn start_server(data: &Path) -> support::Server {
    support::serve_with(&["--data", support::path(data), "--insecure-no-auth"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_dash_nine() {
    let data = testkit::temp_dir("durability");
    let mut server = start_server(&data);
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Many concurrent writers, so that acknowledgements come from shared group commits.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"resourceType": "Patient", "id": format!("p{i}"), "name": [{"family": format!("F{i}")}]});
            let response = client
                .put(format!("{base}/Patient/p{i}"))
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .ok()?;
            if !response.status().is_success() {
                return None;
            }
            let stored: Value = response.json().await.ok()?;
            Some((format!("p{i}"), stored))
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        if let Some(ack) = task.await.unwrap() {
            acknowledged.push(ack);
        }
    }
    assert_eq!(acknowledged.len(), 200);
    let deleted = client.delete(format!("{base}/Patient/p0")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);

    // SIGKILL: no shutdown hook, no checkpoint, no flush.
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");

    let restarted = start_server(&data);
    let base = restarted.base.clone();
    for (id, stored) in &acknowledged[1..] {
        let response = client.get(format!("{base}/Patient/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{id} lost after kill -9");
        let read: Value = response.json().await.unwrap();
        assert_eq!(&read, stored, "{id} changed after kill -9");
    }
    let gone = client.get(format!("{base}/Patient/p0")).send().await.unwrap();
    assert_eq!(gone.status(), 410, "the acknowledged delete survived too");
    drop(restarted);
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let data = testkit::temp_dir("exclusive");
    let first = start_server(&data);
    let second = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--port", "0", "--data"])
        .arg(&data)
        .output()
        .expect("run second server");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another Chartroom process"), "{stderr}");
    drop(first);
}
