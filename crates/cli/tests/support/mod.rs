//! What the tests that drive a real `chartroom serve` share: running the binary, the demo
//! population, a served data directory, and the outside tools `.ci/run` installs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Runs `chartroom` with `args`, whatever comes of it.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

/// Runs `chartroom` with `args`, which must succeed; its standard output.
pub fn chartroom(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "chartroom {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The interpreter or module directory named by `variable`, or `None` (skip) outside CI.
pub fn tool(variable: &str) -> Option<PathBuf> {
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

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory holding the demo population (stored as generated, as `demo` does) and
/// a clinician's token; the types generated.
pub fn demo_data(dir: &Path) -> (String, Vec<String>) {
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

/// `chartroom serve` on a free port with the data directory `data`.
pub fn serve(data: &Path) -> Server {
    serve_with(&["--data", path(data)])
}

/// `chartroom serve --port 0 ARGS`, once it has printed its address (what it prints after is
/// drained); killed when dropped.
pub fn serve_with(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--port", "0"])
        .args(args)
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

pub fn run_check(dir: &str, program: &Path, script: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir).join(script);
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
pub fn chartroom_with_input(args: &[&str], input: &str) -> String {
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
pub fn generated_counts(dir: &Path) -> std::collections::HashMap<String, usize> {
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
