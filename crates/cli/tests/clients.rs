//! The client libraries integrators and analysts already use, unchanged, against a real
//! `chartroom serve` with tokens: PyPI `fhirpy`, `fhirclient` and `fhir.resources`, npm
//! `fhir-kit-client`, at the versions pinned in `tests/clients/`. `.ci/run` installs them
//! and names them in `CHARTROOM_TEST_PYTHON` (a virtual environment's python) and
//! `CHARTROOM_TEST_NODE_PATH` (a `node_modules`); without them the test is skipped, except
//! under `CI=true`, where a missing client is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn chartroom(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom");
    assert!(output.status.success(), "chartroom {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The interpreter or module directory named by `variable`, or `None` (skip) outside CI.
fn tool(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{variable} is not set: .ci/run installs the client libraries and sets it")
        }
        None => {
            eprintln!("skipped: {variable} not set (see .ci/run)");
            None
        }
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory holding the demo population (stored as generated, as `demo` does) and
/// a clinician's token; the types generated.
fn demo_data(dir: &Path) -> (String, Vec<String>) {
    let generated = dir.join("population");
    let data = dir.join("data");
    chartroom(&["generate", "--patients", "40", "--quiet", "--out", generated.to_str().unwrap()]);
    chartroom(&[
        "import",
        generated.to_str().unwrap(),
        "--no-validate",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
    ]);
    let added =
        chartroom(&["user", "add", "compatibility", "--role", "clinician", "--data", data.to_str().unwrap()]);
    let token = added.lines().last().expect("token line").trim().to_string();
    let mut types: Vec<String> = std::fs::read_dir(&generated)
        .expect("generated population")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".ndjson")?.to_string())
        })
        .collect();
    types.sort();
    (token, types)
}

fn serve(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--port", "0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chartroom serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let base = loop {
        line.clear();
        if stdout.read_line(&mut line).expect("banner") == 0 {
            panic!("serve ended before printing its address");
        }
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.trim_end_matches('/').to_string();
        }
    };
    // Keep draining what serve prints, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stdout.lines() {});
    Server { child, base }
}

fn run_check(program: &Path, script: &str, args: &[&str], env: &[(&str, &Path)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let mut command = Command::new(program);
    command.arg(&path).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap_or_else(|e| panic!("run {script} with {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn real_client_libraries_work_unchanged() {
    let python = tool("CHARTROOM_TEST_PYTHON");
    let node_path = tool("CHARTROOM_TEST_NODE_PATH");
    if python.is_none() && node_path.is_none() {
        return;
    }
    let dir = testkit::temp_dir("clients");
    let (token, types) = demo_data(&dir);
    let server = serve(&dir.join("data"));
    let base = server.base.clone();
    if let Some(python) = &python {
        run_check(python, "fhir_resources_check.py", &[&base, &token, &types.join(",")], &[]);
        run_check(python, "fhirclient_check.py", &[&base, &token], &[]);
        run_check(python, "fhirpy_check.py", &[&base, &token], &[]);
    }
    if let Some(node_path) = &node_path {
        run_check(
            Path::new("node"),
            "fhir_kit_check.mjs",
            &[&base, &token, &node_path.to_string_lossy()],
            &[],
        );
    }
}
