//! The workbench in a real browser: headless Chromium (Debian `chromium` and
//! `chromium-driver`) driven by Selenium (`tests/browser/browser_check.py`) against a real
//! `chartroom serve` holding the demo population. Each role signs in through the form, opens
//! every page it may use (HTTP 200, no console error, no serious or critical axe-core
//! violation, a screenshot under `target/screenshots/` that is not blank, also at a phone's
//! width) and is refused the pages it may not; then the key flows run end to end: find a
//! patient and open the chart, code an encounter from the worklist, drill down from a failing
//! data-quality check to a record, ask the views' tables in SQL, verify the audit chain.
//! `.ci/run` installs the browser, the driver, Selenium and axe-core; without them the test
//! is skipped, except under `CI=true`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{chartroom, chartroom_with_input, demo_data, serve, tool};

const PASSWORD: &str = "a workbench passphrase";

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn every_role_works_in_the_workbench_in_a_real_browser() {
    let tools = [
        "CHARTROOM_TEST_PYTHON",
        "CHARTROOM_TEST_NODE_PATH",
        "CHARTROOM_TEST_CHROMIUM",
        "CHARTROOM_TEST_CHROMEDRIVER",
    ]
    .map(tool);
    let [Some(python), Some(node_path), Some(chromium), Some(chromedriver)] = tools else { return };
    let dir = testkit::temp_dir("workbench-browser");
    demo_data(&dir);
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let patients: Vec<Value> = std::fs::read_to_string(dir.join("population/Patient.ndjson"))
        .expect("patients")
        .lines()
        .take(2)
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let own = patients[0]["id"].as_str().unwrap().to_string();
    let other = patients[1]["id"].as_str().unwrap().to_string();
    let family = patients[0]["name"][0]["family"].as_str().unwrap().to_string();
    // An encounter waiting for a coder, with its note, at the head of the worklist.
    let waiting = dir.join("waiting");
    std::fs::create_dir_all(&waiting).unwrap();
    let encounter = json!({ "resourceType": "Encounter", "id": "enc-waiting", "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
        "subject": { "reference": format!("Patient/{own}") },
        "period": { "start": "2001-01-02T09:00:00Z", "end": "2001-01-02T10:00:00Z" } });
    let note = "Follow-up of type 2 diabetes mellitus without complications; metformin continued.";
    let document = json!({ "resourceType": "DocumentReference", "id": "note-waiting", "status": "current",
        "subject": { "reference": format!("Patient/{own}") },
        "content": [{ "attachment": { "contentType": "text/plain", "data": base64(note.as_bytes()) } }],
        "context": { "encounter": [{ "reference": "Encounter/enc-waiting" }] } });
    // Six patients with lung cancer on the two regimens the example study compares, so the
    // treatment comparison draws its curves.
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    let (mut patients_cohort, mut conditions, mut orders) = (String::new(), String::new(), String::new());
    for n in 0..6 {
        let mut patient = json!({ "resourceType": "Patient", "id": format!("lung-{n}"), "gender": if n % 2 == 0 { "male" } else { "female" },
            "birthDate": "1950-01-01", "address": [{ "city": "Springfield", "state": "OH" }] });
        if n < 4 {
            patient["deceasedDateTime"] = json!(format!("2022-0{}-01T00:00:00Z", n + 3));
        }
        patients_cohort.push_str(&format!("{patient}\n"));
        conditions.push_str(&format!(
            "{}\n",
            json!({ "resourceType": "Condition", "id": format!("lung-dx-{n}"),
            "subject": { "reference": format!("Patient/lung-{n}") }, "onsetDateTime": "2021-12-01",
            "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C34.90" }] } })
        ));
        let code = if n % 2 == 0 { "40048" } else { "1547545" };
        orders.push_str(&format!("{}\n", json!({ "resourceType": "MedicationRequest", "id": format!("lung-rx-{n}"),
            "status": "active", "intent": "order", "subject": { "reference": format!("Patient/lung-{n}") },
            "medicationCodeableConcept": { "coding": [{ "system": rxnorm, "code": code }] }, "authoredOn": "2021-12-02T10:00:00Z" })));
    }
    // The patient registered a second time, for the duplicates flow.
    let mut twin = patients[0].clone();
    twin["id"] = json!("zz-twin");
    patients_cohort.push_str(&format!("{twin}\n"));
    std::fs::write(waiting.join("Patient.ndjson"), patients_cohort).unwrap();
    std::fs::write(waiting.join("Condition.ndjson"), conditions).unwrap();
    std::fs::write(waiting.join("MedicationRequest.ndjson"), orders).unwrap();
    std::fs::write(waiting.join("Encounter.ndjson"), format!("{encounter}\n")).unwrap();
    std::fs::write(waiting.join("DocumentReference.ndjson"), format!("{document}\n")).unwrap();
    chartroom(&["import", waiting.to_str().unwrap(), "--quiet", "--data", data_arg]);
    for (user, role, patient) in [
        ("cody", "coder", None),
        ("priv", "privacy-officer", None),
        ("ana", "analyst", None),
        ("hana", "him-technician", None),
        ("pat", "patient", Some(own.as_str())),
        ("root", "admin", None),
    ] {
        let mut args = vec!["user", "add", user, "--role", role, "--data", data_arg];
        if let Some(patient) = patient {
            args.extend(["--patient", patient]);
        }
        chartroom(&args);
        chartroom_with_input(&["user", "password", user, "--data", data_arg], &format!("{PASSWORD}\n"));
    }
    let check = quality::checks::CheckId::ALL[0].definition().id;
    let server = serve(&data);
    let root = server.base.strip_suffix("/fhir").unwrap().to_string();
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let user = |name: &str, role: &str, allowed: Vec<String>, refused: Vec<String>| json!({ "name": name, "password": PASSWORD, "role": role, "allowed": allowed, "refused": refused });
    let paths = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let plan = json!({
        "base": root,
        "chromedriver": chromedriver,
        "chromium": chromium,
        "axe": node_path.join("axe-core/axe.min.js"),
        "screenshots": screenshots,
        "users": [
            user("cody", "coder",
                 paths(&["/", "/patients", &format!("/patients/{own}"), "/coding", "/coding/encounters/enc-waiting", "/coding/billing?asOf=2026-01-01", "/quality", "/analytics", "/analytics/views/patients"]),
                 paths(&["/privacy/audit", "/admin", "/requests", "/completion", "/retention", "/interfaces"])),
            user("priv", "privacy-officer",
                 paths(&["/", "/privacy/audit", "/privacy/monitor", "/privacy/monitor?kind=break-the-glass", &format!("/patients/{own}"), &format!("/patients/{own}/viewers")]),
                 paths(&["/admin"])),
            user("ana", "analyst",
                 paths(&["/", "/analytics", "/analytics/views/encounters", "/analytics/sql?query=SELECT+gender%2C+count(*)+AS+patients+FROM+patients+GROUP+BY+gender",
                         "/analytics/surveillance", "/analytics/surveillance?syndrome=&by=week&place=state&method=ears-c1", "/analytics/cohort",
                         "/analytics/operations?from=2020-01-01&to=2025-12-31"]),
                 paths(&["/privacy/audit", "/privacy/monitor", "/admin"])),
            user("pat", "patient",
                 paths(&["/", "/patients", &format!("/patients/{own}"), &format!("/patients/{own}/viewers")]),
                 paths(&[&format!("/patients/{other}"), &format!("/records/Patient/{other}"), "/coding", "/coding/billing", "/privacy/audit", "/admin", "/quality"])),
            user("hana", "him-technician",
                 paths(&["/", "/duplicates", "/duplicates?status=decided", "/patients", "/requests", "/requests/amendments", "/completion", "/retention", "/interfaces"]),
                 paths(&["/privacy/audit", "/admin"])),
            user("root", "admin",
                 paths(&["/", "/admin", "/quality", &format!("/quality/{check}"), &format!("/records/Patient/{own}"), "/privacy/audit", &format!("/patients/{own}/history/Patient/{own}")]),
                 Vec::new()),
        ],
        "flows": [
            { "user": "cody", "steps": [
                { "goto": "/patients" },
                { "fill": { "name": "name" }, "value": family },
                { "submit": "form[action='/patients']" },
                { "click": "main a[href^='/patients/']" },
                { "expect_text": "Encounters" },
                { "screenshot": "flow-chart" },
            ] },
            { "user": "cody", "steps": [
                { "goto": "/coding" },
                { "click": "main a[href^='/coding/encounters/']" },
                { "expect_text": "Suggested codes" },
                { "fill": { "css": "form.inline input[name=code]" }, "value": "E11.9" },
                { "click": "form.inline button[name=assign]" },
                { "expect_text": "assigned" },
                { "screenshot": "flow-coded" },
            ] },
            { "user": "root", "steps": [
                { "goto": "/quality" },
                { "click": "main a[href^='/quality/']" },
                { "expect_text": "fail" },
                { "click": "main ul a" },
                { "expect_status": 200 },
                { "screenshot": "flow-quality-record" },
            ] },
            { "user": "ana", "steps": [
                { "goto": "/analytics" },
                { "fill": { "name": "query" }, "value": "SELECT count(*) AS encounters FROM encounters" },
                { "submit": "form[action='/analytics/sql']" },
                { "expect_text": "1 rows." },
                { "screenshot": "flow-sql" },
            ] },
            { "user": "ana", "steps": [
                { "goto": "/analytics/surveillance" },
                { "submit": "form[action='/analytics/surveillance']" },
                { "expect_text": "series judged by" },
                { "screenshot": "flow-surveillance" },
            ] },
            { "user": "ana", "steps": [
                { "goto": "/analytics/cohort" },
                { "submit": "form[action='/analytics/cohort']" },
                { "expect_text": "Survival by arm" },
                { "expect_text": "Numbers at risk" },
                { "screenshot": "flow-cohort" },
            ] },
            { "user": "hana", "steps": [
                { "goto": "/duplicates" },
                { "expect_text": "Pairs waiting for a decision" },
                { "click": "form[action='/duplicates/decide'] button[value=same-person]" },
                { "expect_text": "recorded" },
                { "goto": "/duplicates?status=decided" },
                { "click": "main a[href^='/duplicates/merge']" },
                { "expect_text": "What would change" },
                { "submit": "form[action='/duplicates/merge']" },
                { "expect_text": "Undo this merge" },
                { "screenshot": "flow-merged" },
                { "submit": "form[action='/duplicates/unmerge']" },
                { "expect_text": "unmerged" },
            ] },
            { "user": "priv", "steps": [
                { "goto": "/privacy/audit" },
                { "click": "form[action='/privacy/verify'] button" },
                { "expect_text": "the chain is intact" },
                { "screenshot": "flow-audit-verified" },
            ] },
        ],
    });
    let plan_path = dir.join("browser-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/browser_check.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&plan_path)
        .output()
        .expect("run the browser check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "browser check failed:\n{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("summary");
    assert!(summary["pages"].as_u64().unwrap_or(0) >= 20, "{summary}");
    assert_eq!(summary["flows_ok"], 8, "{summary}");
    drop(server);
    // The code assigned in the browser is in the audit trail, as the coder's write.
    let entries = privacy::audit::entries(&data).expect("the trail");
    assert!(
        entries.iter().any(|(_, _, a)| a.user == "cody"
            && a.interaction == "workbench-coding-assign"
            && a.status == 200),
        "the assignment is audited"
    );
}
