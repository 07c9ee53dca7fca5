//! Several `chartroom serve` processes on one PostgreSQL record: the database decides every
//! race (an `If-Match` on one version, two conditional creates of one identifier), a `kill -9`
//! of one server loses no write it acknowledged, and each server's audit trail verifies after.
//!
//! Skipped without a PostgreSQL server (`CHARTROOM_TEST_POSTGRES`), except under `CI=true`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::Server;

mod support;

/// `chartroom serve` on a free port, its record in `schema` of the test server's database and
/// its own data directory (audit trail), without tokens.
fn serve(url: &str, schema: &str, data: &Path) -> Server {
    serve_with(url, schema, data, &[])
}

fn serve_with(url: &str, schema: &str, data: &Path, more: &[&str]) -> Server {
    let mut more = more.to_vec();
    more.push("--insecure-no-auth");
    serve_secured(url, schema, data, &more)
}

/// `chartroom serve` as [`serve`], asking for a token unless `more` says otherwise.
fn serve_secured(url: &str, schema: &str, data: &Path, more: &[&str]) -> Server {
    let mut args = vec!["--store", url, "--store-schema", schema, "--data", support::path(data)];
    args.extend_from_slice(more);
    support::serve_with(&args)
}

fn migrate(url: &str, schema: &str, data: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["migrate", "--store", url, "--store-schema", schema, "--data"])
        .arg(data)
        .output()
        .expect("run chartroom migrate");
    assert!(output.status.success(), "migrate: {}", String::from_utf8_lossy(&output.stderr));
}

fn audit_verifies(data: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .expect("run chartroom audit verify");
    assert!(
        output.status.success(),
        "audit verify of {}: {}{}",
        data.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const FHIR_JSON: &str = "application/fhir+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_one_record_and_the_database_decides_every_race() {
    let Some(options) = testkit::postgres_options("multi_process") else { return };
    let (url, schema) = (options.url.clone(), options.schema.clone());
    let dir = testkit::temp_dir("multi-process");
    let (data_a, data_b) = (dir.join("a"), dir.join("b"));
    migrate(&url, &schema, &data_a);
    let a = serve(&url, &schema, &data_a);
    let mut b = serve(&url, &schema, &data_b);
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    // 1. If-Match races: 100 rounds, each a pair of updates of the same version, one through
    //    each server at once. Exactly one of each pair wins; no update is lost.
    let created = client
        .put(format!("{}/Patient/race", bases[0]))
        .header("content-type", FHIR_JSON)
        .body(json!({"resourceType": "Patient", "id": "race", "name": [{"family": "v1"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for round in 1..=100u32 {
        let mut pair = Vec::new();
        for (n, base) in bases.iter().enumerate() {
            let (client, base) = (client.clone(), base.clone());
            pair.push(tokio::spawn(async move {
                let body = json!({"resourceType": "Patient", "id": "race",
                                  "name": [{"family": format!("round{round}-server{n}")}]});
                client
                    .put(format!("{base}/Patient/race"))
                    .header("content-type", FHIR_JSON)
                    .header("if-match", format!("W/\"{round}\""))
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for task in pair {
            statuses.push(task.await.unwrap());
        }
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "round {round}: one update wins, the other is refused");
    }
    let history: Value = client
        .get(format!("{}/Patient/race/_history?_count=500", bases[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["total"], 101, "every accepted update is a version, none lost");

    // 2. Conditional creates: 100 identifiers, each created through both servers at once.
    let mut creates = Vec::new();
    for k in 0..100 {
        for base in &bases {
            let (client, base) = (client.clone(), base.clone());
            creates.push(tokio::spawn(async move {
                let body = json!({"resourceType": "Patient",
                                  "identifier": [{"system": "urn:mrn", "value": format!("mrn-{k}")}]});
                client
                    .post(format!("{base}/Patient"))
                    .header("content-type", FHIR_JSON)
                    .header("if-none-exist", format!("identifier=urn:mrn|mrn-{k}"))
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut created = 0;
    for task in creates {
        match task.await.unwrap() {
            201 => created += 1,
            200 => {}
            other => panic!("a conditional create answered {other}"),
        }
    }
    assert_eq!(created, 100, "one resource per identifier");
    for k in [0, 37, 99] {
        let found: Value = client
            .get(format!("{}/Patient?identifier=urn:mrn|mrn-{k}&_total=accurate", bases[k % 2]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["total"], 1, "identifier mrn-{k}");
    }
    let all: Value = client
        .get(format!("{}/Patient?identifier=urn:mrn|&_total=accurate&_count=1", bases[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["total"], 100, "no duplicate anywhere");

    // 3. kill -9 of server B in the middle of a load on both: every write either server
    //    acknowledged is there afterwards.
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base) = (client.clone(), bases[w % 2].clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..60 {
                let id = format!("load-{w}-{i}");
                let body = json!({"resourceType": "Observation", "id": id, "status": "final",
                                  "code": {"text": format!("reading {i}")},
                                  "subject": {"reference": "Patient/race"}});
                let sent = client
                    .put(format!("{base}/Observation/{id}"))
                    .header("content-type", FHIR_JSON)
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        let stored: Value = response.json().await.unwrap_or(Value::Null);
                        acknowledged.push((id, stored));
                    }
                    // The killed server's writers stop at their first refused connection.
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    b.child.kill().expect("kill -9 server B");
    b.child.wait().expect("reap server B");
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() >= 240, "server A's writers finished: {} acknowledged", acknowledged.len());
    for (id, stored) in &acknowledged {
        let response = client.get(format!("{}/Observation/{id}", bases[0])).send().await.unwrap();
        assert_eq!(response.status(), 200, "{id} was acknowledged, then lost");
        let read: Value = response.json().await.unwrap();
        assert_eq!(read["meta"]["versionId"], stored["meta"]["versionId"], "{id}");
    }

    // 4. A legal hold placed through server A binds server A's neighbour too: start a new
    //    server (B was killed) and try to change a held resource through it.
    let c = serve(&url, &schema, &dir.join("c"));
    let hold = json!({ "resourceType": "Task", "status": "requested", "intent": "order",
        "code": { "coding": [{ "system": "https://chartroom.dev/fhir/CodeSystem/him-workflow", "code": "legal-hold" }] },
        "description": "Smith v. General Hospital", "requester": { "display": "Office of General Counsel" },
        "for": { "reference": "Patient/race" } });
    let placed = client
        .post(format!("{}/Task/$hold-place", bases[0]))
        .header("content-type", FHIR_JSON)
        .body(hold.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201, "{}", placed.text().await.unwrap_or_default());
    let changed = client
        .put(format!("{}/Patient/race", c.base))
        .header("content-type", FHIR_JSON)
        .body(
            json!({"resourceType": "Patient", "id": "race", "name": [{"family": "after the hold"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 409, "the hold placed through A binds C");
    let observation = client.delete(format!("{}/Observation/load-0-0", c.base)).send().await.unwrap();
    assert_eq!(observation.status(), 409, "the hold covers the patient's observations too");
    drop(c);

    // 5. A server searching a streaming replica finds what it has just written, every time.
    if let Some(replica) = testkit::postgres_replica_url() {
        let d = serve_with(&url, &schema, &dir.join("d"), &["--read-store", &replica]);
        for k in 0..30 {
            let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:replica", "value": format!("r-{k}")}]});
            let created = client
                .post(format!("{}/Patient", d.base))
                .header("content-type", FHIR_JSON)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201);
            let found: Value = client
                .get(format!("{}/Patient?identifier=urn:replica|r-{k}&_total=accurate", d.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(found["total"], 1, "r-{k}: written through this server, then not found by its search");
        }
        drop(d);
        audit_verifies(&dir.join("d"));
    }

    // 6. The commands that read the record read it from PostgreSQL too.
    let patients: Value = client
        .get(format!("{}/Patient?_total=accurate&_count=0", bases[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let analyst = dir.join("analyst");
    let output = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["sql", "--store", &url, "--store-schema", &schema, "--data"])
        .arg(&analyst)
        .args(["--format", "json", "SELECT count(*) AS n FROM patients"])
        .output()
        .expect("run chartroom sql");
    assert!(output.status.success(), "sql: {}", String::from_utf8_lossy(&output.stderr));
    let rows: Value = serde_json::from_slice(&output.stdout).expect("JSON rows");
    assert_eq!(rows[0]["n"], patients["total"], "the views see the same patients as the servers");

    // Each server kept its own audit trail (its own chain); both verify.
    drop(a);
    drop(b);
    audit_verifies(&data_a);
    audit_verifies(&data_b);
    store::PostgresStore::drop_schema(&options).expect("drop the test schema");
}

/// `chartroom ARGS` on the record `url`/`schema`; its standard output (it must succeed).
fn chartroom_on(url: &str, schema: &str, args: &[&str]) -> String {
    support::chartroom(&[args, &["--store", url, "--store-schema", schema]].concat())
}

/// Users and clients of a PostgreSQL record are kept in its database: added or revoked once
/// (`chartroom user|client ... --store`), they hold at every server of the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_added_or_revoked_once_hold_at_every_server() {
    let Some(options) = testkit::postgres_options("multi_process_users") else { return };
    let (url, schema) = (options.url.clone(), options.schema.clone());
    let dir = testkit::temp_dir("multi-process-users");
    migrate(&url, &schema, &dir.join("a"));
    let added = chartroom_on(&url, &schema, &["user", "add", "nurse", "--role", "clinician"]);
    let nurse = added.lines().last().expect("a token").trim().to_string();
    let added = chartroom_on(&url, &schema, &["user", "add", "clerk", "--role", "him-technician"]);
    let clerk = added.lines().last().expect("a token").trim().to_string();
    let servers = [
        serve_secured(&url, &schema, &dir.join("a"), &[]),
        serve_secured(&url, &schema, &dir.join("b"), &[]),
    ];
    let client = reqwest::Client::new();
    let status = |base: String, token: String| {
        let request = client.get(format!("{base}/Patient?_count=1")).bearer_auth(token);
        async move { request.send().await.expect("GET Patient").status().as_u16() }
    };
    for server in &servers {
        assert_eq!(status(server.base.clone(), nurse.clone()).await, 200, "{}", server.base);
    }
    // Revoked before either server saw it: refused by both at once.
    chartroom_on(&url, &schema, &["user", "revoke", "clerk"]);
    for server in &servers {
        assert_eq!(status(server.base.clone(), clerk.clone()).await, 401, "{}", server.base);
    }
    // Revoked after both used it: refused by both once their token cache lapses (10 s).
    chartroom_on(&url, &schema, &["user", "revoke", "nurse"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for server in &servers {
        while status(server.base.clone(), nurse.clone()).await != 401 {
            assert!(std::time::Instant::now() < deadline, "{} still accepts a revoked token", server.base);
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    let listed = chartroom_on(&url, &schema, &["user", "list"]);
    assert!(listed.contains("0 users"), "{listed}");
    assert!(listed.contains("clerk") && listed.contains("nurse"), "both revocations are listed: {listed}");
    // A client registered once is known to the record, whichever server a token is asked of.
    let registered = chartroom_on(
        &url,
        &schema,
        &["client", "add", "Diary", "--public", "--redirect-uri", "https://app.example/cb"],
    );
    let id = registered.lines().last().expect("a client id").trim().to_string();
    assert!(chartroom_on(&url, &schema, &["client", "list"]).contains(&id));
    drop(servers);
    audit_verifies(&dir.join("a"));
    audit_verifies(&dir.join("b"));
    // The access review of a server's trail knows the record's users (from the database).
    let a = dir.join("a");
    let report =
        chartroom_on(&url, &schema, &["audit", "report", "--data", a.to_str().expect("a UTF-8 path")]);
    assert!(report.contains("entries") || report.contains("accesses"), "{report}");
    store::PostgresStore::drop_schema(&options).expect("drop the test schema");
}
