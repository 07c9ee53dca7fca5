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

fn run_check(program: &Path, script: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
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
    stdout.into_owned()
}

/// Runs `chartroom` with `input` on its standard input.
fn chartroom_with_input(args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chartroom");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("chartroom ends");
    assert!(output.status.success(), "chartroom {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The NDJSON lines of each generated type.
fn generated_counts(dir: &Path) -> std::collections::HashMap<String, usize> {
    std::fs::read_dir(dir.join("population"))
        .expect("generated population")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let resource_type = name.strip_suffix(".ndjson")?.to_string();
            let text = std::fs::read_to_string(entry.path()).ok()?;
            Some((resource_type, text.lines().filter(|l| !l.trim().is_empty()).count()))
        })
        .collect()
}

/// A patient's app signs in through the built-in authorization server with PyPI `fhirclient`
/// (SMART standalone launch: discovery, PKCE, sign-in and consent, code exchange, refresh)
/// and reads only that patient's record; a registry pulls everything with PyPI `smart-fetch`
/// (SMART Backend Services token from an ES384 assertion, `$export` to completion, every file
/// downloaded) and gets every resource of the types it asked for.
#[test]
fn smart_apps_and_bulk_clients_sign_in_through_the_authorization_server() {
    let Some(python) = tool("CHARTROOM_TEST_PYTHON") else { return };
    let dir = testkit::temp_dir("smart-clients");
    demo_data(&dir);
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let patients: Vec<String> = std::fs::read_to_string(dir.join("population/Patient.ndjson"))
        .expect("patients")
        .lines()
        .take(2)
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON")["id"].as_str().unwrap().to_string()
        })
        .collect();
    chartroom(&[
        "user",
        "add",
        "pat-app-user",
        "--role",
        "patient",
        "--patient",
        &patients[0],
        "--data",
        data_arg,
    ]);
    let password = "a long passphrase for the test";
    chartroom_with_input(&["user", "password", "pat-app-user", "--data", data_arg], &format!("{password}\n"));
    let redirect = "http://127.0.0.1:9/callback";
    let added = chartroom(&[
        "client",
        "add",
        "Health Diary",
        "--public",
        "--redirect-uri",
        redirect,
        "--data",
        data_arg,
    ]);
    let app = added.lines().last().expect("client id").trim().to_string();
    let keys = dir.join("registry-keys");
    run_check(&python, "bulk_client_check.py", &["keys", keys.to_str().unwrap()], &[]);
    let added = chartroom(&[
        "client",
        "add",
        "State registry",
        "--jwks",
        keys.join("jwks.json").to_str().unwrap(),
        "--data",
        data_arg,
    ]);
    let registry = added.lines().last().expect("client id").trim().to_string();

    let server = serve(&data);
    let base = server.base.clone();
    let launched = run_check(
        &python,
        "smart_launch_check.py",
        &[&base, &app, redirect, "pat-app-user", password, &patients[0], &patients[1]],
        &[],
    );
    assert!(
        launched.contains("\"other_refused\": true") || launched.contains("\"other_refused\":true"),
        "{launched}"
    );

    let exported = run_check(
        &python,
        "bulk_client_check.py",
        &["export", &base, &registry, keys.to_str().unwrap()],
        &[],
    );
    let counts: std::collections::HashMap<String, usize> =
        serde_json::from_str(exported.lines().last().expect("counts")).expect("counts are JSON");
    let generated = generated_counts(&dir);
    assert!(counts.get("Patient").is_some_and(|n| *n == generated["Patient"]), "{counts:?}");
    for (resource_type, count) in &counts {
        assert_eq!(Some(count), generated.get(resource_type), "{resource_type}: exported {count}");
    }
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
