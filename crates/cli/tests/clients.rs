//! The client libraries integrators and analysts already use, unchanged, against a real
//! `chartroom serve` with tokens: PyPI `fhirpy`, `fhirclient` and `fhir.resources`, npm
//! `fhir-kit-client`, at the versions pinned in `tests/clients/`. `.ci/run` installs them
//! and names them in `CHARTROOM_TEST_PYTHON` (a virtual environment's python) and
//! `CHARTROOM_TEST_NODE_PATH` (a `node_modules`); without them the test is skipped, except
//! under `CI=true`, where a missing client is a failure.

mod support;

use std::path::Path;

use support::{chartroom, chartroom_with_input, demo_data, generated_counts, serve, tool};

fn run_check(program: &Path, script: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    support::run_check("clients", program, script, args, env)
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
