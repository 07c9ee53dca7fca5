//! `chartroom generate` is deterministic; `chartroom demo` fills an empty data directory with
//! the demo population, serves it, and leaves a populated one as it is.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn chartroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read output")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).expect("read file"),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn generate_is_deterministic_and_writes_one_file_per_type() {
    let dir = testkit::temp_dir("cli-generate");
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let output = chartroom(&[
            "generate",
            "--patients",
            "30",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("generated 30 patients"));
        files(&out)
    };
    let first = run("a", "7");
    let again = run("b", "7");
    let other = run("c", "8");
    assert!(first.iter().any(|(name, _)| name == "Patient.ndjson"));
    assert!(first.iter().any(|(name, _)| name == "Encounter.ndjson"));
    assert_eq!(first, again, "same seed, same bytes");
    assert_ne!(first, other, "another seed, other data");
    assert_eq!(files(&dir.join("a/ground-truth")), files(&dir.join("b/ground-truth")));
}

#[test]
fn generate_plants_what_the_flags_ask_for() {
    let dir = testkit::temp_dir("cli-generate-truth");
    let lines = |out: &Path, file: &str| {
        std::fs::read_to_string(out.join("ground-truth").join(file))
            .expect("ground-truth file")
            .lines()
            .count()
    };
    let out = dir.join("planted");
    let planted = chartroom(&[
        "generate",
        "--patients",
        "40",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--defect-rate",
        "0.25",
        "--duplicate-rate",
        "0.1",
        "--outbreaks",
        "0",
    ]);
    assert!(planted.status.success(), "{}", String::from_utf8_lossy(&planted.stderr));
    assert!(String::from_utf8_lossy(&planted.stdout).contains("ground truth"));
    assert_eq!(lines(&out, "defects.ndjson"), 10, "a quarter of 40 patients");
    assert_eq!(lines(&out, "duplicates.ndjson"), 4);
    assert_eq!(lines(&out, "outbreak-cases.ndjson"), 0);
    let parameters: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ground-truth/parameters.json")).unwrap()).unwrap();
    assert_eq!(parameters["defects"]["rate"], 0.25);

    let clean = dir.join("clean");
    let output =
        chartroom(&["generate", "--patients", "40", "--out", clean.to_str().unwrap(), "--quiet", "--clean"]);
    assert!(output.status.success());
    assert_eq!(
        lines(&clean, "defects.ndjson") + lines(&clean, "duplicates.ndjson") + lines(&clean, "cohort.ndjson"),
        0
    );

    let refused =
        chartroom(&["generate", "--patients", "5", "--out", clean.to_str().unwrap(), "--defect-rate", "2"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("defect rate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// Starts `chartroom demo` on a free port; returns the process, its FHIR base URL and what it
/// printed before serving.
// A failed read panics the test, whose process exit reaps the child.
#[allow(clippy::zombie_processes)]
fn start_demo(data: &Path) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["demo", "--patients", "20", "--port", "0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chartroom demo");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read demo output") == 0 {
            let status = child.wait().expect("wait for demo");
            panic!("demo ended ({status}) before serving:\n{printed}");
        }
        printed.push_str(&line);
        if let Some(base) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            return (child, base.to_string(), printed);
        }
    }
}

#[test]
fn demo_populates_an_empty_data_directory_once() {
    let data = testkit::temp_dir("cli-demo");
    let (mut server, base, printed) = start_demo(&data);
    assert!(printed.contains("generating a demo population of 20 patients"), "{printed}");
    assert!(printed.contains("0 rejected"), "{printed}");
    let body: serde_json::Value = reqwest::blocking_get(&format!("{base}/Patient?_summary=count"));
    assert_eq!(body["total"], 20, "{body}");
    server.kill().expect("stop demo");
    server.wait().expect("wait for demo");
    // A second start serves what is there.
    let (mut server, base, printed) = start_demo(&data);
    assert!(!printed.contains("generating"), "{printed}");
    let body: serde_json::Value = reqwest::blocking_get(&format!("{base}/Patient?_summary=count"));
    assert_eq!(body["total"], 20, "{body}");
    server.kill().expect("stop demo");
    server.wait().expect("wait for demo");
}

mod reqwest {
    /// A GET with a fresh single-threaded runtime (the tests themselves are synchronous).
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async { ::reqwest::get(url).await.expect("GET").json().await.expect("JSON body") })
    }
}
