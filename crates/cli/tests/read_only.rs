//! The commands that only read a data directory (`dq`, `view run`, `sql`, `coding worklist`,
//! `audit verify|report|disclosures`) run beside the server writing to it, without holding it
//! up; a writer is still alone; and a path that is no data directory is refused with nothing
//! created there.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn chartroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `chartroom serve` without tokens on a free port; the process and its FHIR base URL.
// A failed read panics the test, whose process exit reaps the child.
#[allow(clippy::zombie_processes)]
fn serve(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--port", "0", "--insecure-no-auth", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chartroom serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read serve output") > 0, "serve ended");
        if let Some(base) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            return (child, base.to_string());
        }
    }
}

/// What the writing client saw: when each acknowledged write was sent and answered, and every
/// failure.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<(Instant, Instant)>,
    failed: Vec<String>,
}

/// A client POSTing new patients one after another until `stop`.
fn keep_writing(base: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Writes> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            // A stalled write shows as a failure, not as a test that never ends.
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut writes = Writes::default();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = serde_json::json!({"resourceType": "Patient", "name": [{"family": format!("Writer{n}")}]});
                let sent = Instant::now();
                let response = client
                    .post(format!("{base}/Patient"))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == 201 => writes.acknowledged.push((sent, Instant::now())),
                    Ok(response) => writes.failed.push(format!(
                        "{}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                    Err(error) => writes.failed.push(error.to_string()),
                }
            }
            writes
        })
    })
}

fn get_json(url: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        response.json().await.unwrap()
    })
}

#[test]
fn reports_run_beside_a_writing_server_and_do_not_hold_it_up() {
    let dir = testkit::temp_dir("cli-read-only");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    let generated =
        chartroom(&["generate", "--patients", "30", "--seed", "7", "--clean", "--out", path(&ndjson)]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    let imported = chartroom(&["import", "--quiet", "--data", path(&data), path(&ndjson)]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(text(&imported.stderr).contains(&format!("created data directory {}", data.display())));
    let first_patient: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(ndjson.join("Patient.ndjson")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    let patient_id = first_patient["id"].as_str().unwrap().to_string();
    let patients_before = first_patient_count(&ndjson);

    let (mut server, base) = serve(&data);
    // One audited access to the patient, for the accounting of disclosures.
    get_json(&format!("{base}/Patient/{patient_id}"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_writing(base.clone(), stop.clone());
    // The writer is under way before the first report starts.
    std::thread::sleep(Duration::from_millis(300));

    let data_arg = path(&data);
    let disclosures = ["audit", "disclosures", "--patient", patient_id.as_str(), "--data", data_arg];
    let reports: Vec<Vec<&str>> = vec![
        vec!["dq", "--data", data_arg],
        vec!["view", "run", "patients", "--data", data_arg, "--format", "csv"],
        vec!["sql", "--data", data_arg, "SELECT count(*) AS n FROM patients"],
        vec!["coding", "worklist", "--data", data_arg, "--limit", "5"],
        vec!["audit", "verify", "--data", data_arg],
        vec!["audit", "report", "--data", data_arg],
        disclosures.to_vec(),
    ];
    let mut ran = Vec::new();
    for args in &reports {
        let started = Instant::now();
        let output = chartroom(args);
        ran.push((args.join(" "), started, Instant::now(), output));
    }
    // A second writer is still refused while the server runs, saying so once.
    let second = chartroom(&["import", "--quiet", "--data", data_arg, path(&ndjson)]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let writes = writer.join().expect("the writing client");

    for (command, _, _, output) in &ran {
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "chartroom {command} failed beside the server: {stderr}");
        assert!(
            stderr.contains(&format!("reading a snapshot of {data_arg} as of")),
            "chartroom {command}: {stderr}"
        );
        assert!(!stdout.is_empty(), "chartroom {command} printed nothing");
    }
    let output_of = |name: &str| {
        let (_, _, _, output) = ran.iter().find(|(command, ..)| command.starts_with(name)).unwrap();
        (text(&output.stdout), text(&output.stderr))
    };
    let (dq, dq_summary) = output_of("dq");
    let report: serde_json::Value = serde_json::from_str(&dq).unwrap();
    assert!(report["resources"].as_u64().unwrap() > 0, "{dq_summary}");
    let (rows, _) = output_of("view run");
    assert!(rows.lines().count() > patients_before, "header and a row per patient: {rows}");
    let (verified, _) = output_of("audit verify");
    assert!(verified.contains("the chain is intact"), "{verified}");
    let (disclosed, _) = output_of("audit disclosures");
    assert!(disclosed.contains(&format!("1 accesses to Patient/{patient_id}")), "{disclosed}");

    let refused = text(&second.stderr);
    assert!(!second.status.success());
    assert_eq!(refused.matches("in use by another Chartroom process").count(), 1, "{refused}");

    // The writer never failed, kept being answered while the reports ran, and never waited
    // long for an answer.
    assert!(writes.failed.is_empty(), "writes failed beside the reports: {:?}", writes.failed);
    for (command, started, ended, _) in &ran {
        let during =
            writes.acknowledged.iter().filter(|(_, answered)| answered > started && answered < ended).count();
        if command.starts_with("dq") {
            assert!(during > 0, "no write was answered while `chartroom {command}` ran");
        }
    }
    let (first, last) = (ran[0].1, ran[ran.len() - 1].2);
    let during_all =
        writes.acknowledged.iter().filter(|(_, answered)| *answered > first && *answered < last).count();
    assert!(during_all >= 10, "only {during_all} writes were answered during the reports");
    let slowest = writes.acknowledged.iter().map(|(sent, answered)| *answered - *sent).max().unwrap();
    assert!(slowest < Duration::from_secs(5), "a write waited {slowest:?}");

    // Every acknowledged write is there.
    let count = get_json(&format!("{base}/Patient?_summary=count"));
    assert_eq!(
        count["total"].as_u64().unwrap() as usize,
        patients_before + writes.acknowledged.len(),
        "{count}"
    );
    let stopped = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    server.wait().unwrap();

    // And with no server running, the same commands read the directory as it was left.
    let verified = chartroom(&["audit", "verify", "--data", data_arg]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let counted =
        chartroom(&["sql", "--data", data_arg, "--format", "csv", "SELECT count(*) AS n FROM patients"]);
    assert!(counted.status.success(), "{}", text(&counted.stderr));
    let total = text(&counted.stdout).lines().nth(1).unwrap().trim().parse::<usize>().unwrap();
    assert_eq!(total, patients_before + writes.acknowledged.len());
}

/// Patients in the generated population.
fn first_patient_count(ndjson: &Path) -> usize {
    std::fs::read_to_string(ndjson.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn a_path_that_is_no_data_directory_is_refused_and_nothing_is_created() {
    let dir = testkit::temp_dir("cli-wrong-data");
    let missing = dir.join("no-such-data");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for wrong in [&missing, &empty] {
        let wrong_arg = path(wrong);
        for args in [
            vec!["dq", "--data", wrong_arg],
            vec!["view", "run", "patients", "--data", wrong_arg],
            vec!["sql", "--data", wrong_arg, "SELECT 1"],
            vec!["coding", "worklist", "--data", wrong_arg],
            vec!["audit", "verify", "--data", wrong_arg],
            vec!["audit", "report", "--data", wrong_arg],
            vec!["audit", "disclosures", "--patient", "p1", "--data", wrong_arg],
            vec!["reindex", "--data", wrong_arg],
        ] {
            let output = chartroom(&args);
            let stderr = text(&output.stderr);
            let command = args.join(" ");
            assert_eq!(output.status.code(), Some(2), "chartroom {command}: {stderr}");
            assert!(
                stderr.contains(&format!("{wrong_arg} is not a Chartroom data directory")),
                "chartroom {command}: {stderr}"
            );
            assert!(stderr.contains("is made by `chartroom serve`"), "chartroom {command}: {stderr}");
            assert_eq!(
                stderr.matches("not a Chartroom data directory").count(),
                1,
                "said once: chartroom {command}: {stderr}"
            );
        }
    }
    let dq = text(&chartroom(&["dq", "--data", path(&missing)]).stderr);
    assert!(dq.contains("it does not exist"), "{dq}");
    let dq = text(&chartroom(&["dq", "--data", path(&empty)]).stderr);
    assert!(dq.contains("it holds no chartroom.db"), "{dq}");
    assert!(!missing.exists(), "a missing directory stays missing");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "an empty directory stays empty");

    // `user add` needs the directory to exist (a data directory, or one made for it).
    let user = chartroom(&["user", "add", "root", "--role", "admin", "--data", path(&missing)]);
    assert!(!user.status.success());
    assert!(text(&user.stderr).contains("does not exist"), "{}", text(&user.stderr));
    assert!(!missing.exists());
    let user = chartroom(&["user", "add", "root", "--role", "admin", "--data", path(&empty)]);
    assert!(user.status.success(), "{}", text(&user.stderr));
}
