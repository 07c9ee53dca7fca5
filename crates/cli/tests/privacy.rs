//! `chartroom user add`, a `serve` that requires its tokens, and `chartroom audit verify` and
//! `disclosures` over what the server recorded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

fn chartroom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chartroom")).args(args).output().expect("run chartroom")
}

fn serve(data: &std::path::Path) -> (Child, String) {
    serve_with(data, &[])
}

// A failed read panics the test, whose process exit reaps the child.
#[allow(clippy::zombie_processes)]
fn serve_with(data: &std::path::Path, flags: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .args(["serve", "--port", "0", "--data"])
        .arg(data)
        .args(flags)
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

fn put(url: &str, token: &str, body: &serde_json::Value) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .put(url)
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    })
}

fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    get_with(url, token.map(|t| format!("Bearer {t}")))
}

fn get_with(url: &str, authorization: Option<String>) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

fn text_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn serve_requires_a_token_and_the_trail_verifies_until_tampered_with() {
    let data = testkit::temp_dir("cli-privacy");
    let data_arg = data.to_str().unwrap();
    let added = chartroom(&[
        "user",
        "add",
        "dr-grey",
        "--role",
        "clinician",
        "--fhir-user",
        "Practitioner/prac-1",
        "--data",
        data_arg,
    ]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8_lossy(&added.stdout).lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("chr_") && token.len() > 60, "{token}");
    let refused = chartroom(&["user", "add", "x", "--role", "surgeon", "--data", data_arg]);
    assert!(!refused.status.success());

    let admin = chartroom(&["user", "add", "root", "--role", "admin", "--data", data_arg]);
    let admin = String::from_utf8_lossy(&admin.stdout).lines().last().unwrap().trim().to_string();
    let (mut server, base) = serve(&data);
    for (path, body) in [
        (
            "Practitioner/prac-1",
            serde_json::json!({ "resourceType": "Practitioner", "id": "prac-1", "name": [{ "family": "Grey" }] }),
        ),
        (
            "Patient/p2",
            serde_json::json!({ "resourceType": "Patient", "id": "p2", "name": [{ "family": "Grey" }] }),
        ),
    ] {
        assert_eq!(put(&format!("{base}/{path}"), &admin, &body), 201);
    }
    assert_eq!(get(&format!("{base}/Patient/p2"), Some(&token)).0, 200);
    assert_eq!(get(&format!("{base}/Patient"), None).0, 401);
    assert_eq!(get(&format!("{base}/Patient/p1"), Some("chr_wrong")).0, 401);
    let (status, bundle) = get(&format!("{base}/Patient"), Some(&token));
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(get(&format!("{base}/Patient/p1"), Some(&token)).0, 404);
    // A graceful stop commits the audit entries still being gathered.
    let stopped = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    server.wait().unwrap();

    let verified = chartroom(&["audit", "verify", "--data", data_arg]);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{text}");
    assert!(text.contains("7 entries checked: the chain is intact"), "{text}");
    let report = chartroom(&["audit", "report", "--data", data_arg]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    assert!(text.contains("no-treatment-relationship") && text.contains("same-surname"), "{text}");
    assert!(text.contains("Patient/p2"), "{text}");
    let disclosures = chartroom(&["audit", "disclosures", "--patient", "p1", "--data", data_arg]);
    let text = String::from_utf8_lossy(&disclosures.stdout);
    let read = text.lines().find(|line| line.contains("dr-grey") && line.contains(" read ")).expect(&text);
    assert!(read.contains("clinician") && read.contains("TREAT (treatment, implied by role)"), "{text}");
    assert!(
        text.lines().next().unwrap().starts_with("when") && text.contains("2 accesses to Patient/p1"),
        "{text}"
    );
    // The report: a header, one line per finding, user and patient with its count.
    assert!(text_of(&report).lines().next().unwrap().starts_with("finding"), "{}", text_of(&report));

    // Users are listed (never their tokens) and revoked.
    let listed = text_of(&chartroom(&["user", "list", "--data", data_arg]));
    assert!(
        listed.contains("dr-grey") && listed.contains("Practitioner/prac-1") && listed.contains("2 users"),
        "{listed}"
    );
    assert!(!listed.contains("chr_"), "{listed}");
    assert!(chartroom(&["user", "revoke", "root", "--data", data_arg]).status.success());
    assert_eq!(chartroom(&["user", "revoke", "root", "--data", data_arg]).status.code(), Some(1));
    let listed = text_of(&chartroom(&["user", "list", "--data", data_arg]));
    assert!(listed.contains("1 users") && listed.contains("tokens revoked or replaced"), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("root") && l.ends_with("revoked")), "{listed}");
    let (mut server, base) = serve(&data);
    assert_eq!(get(&format!("{base}/Patient/p2"), Some(&admin)).0, 401, "a revoked token is refused");
    assert_eq!(get(&format!("{base}/Patient/p2"), Some(&token)).0, 200);
    let _ = server.kill();
    let _ = server.wait();

    let connection = rusqlite::Connection::open(data.join("privacy.sqlite")).unwrap();
    connection.execute("UPDATE audit SET user = 'someone-else' WHERE seq = 3", []).unwrap();
    let tampered = chartroom(&["audit", "verify", "--data", data_arg]);
    let text = String::from_utf8_lossy(&tampered.stdout);
    assert_eq!(tampered.status.code(), Some(1), "{text}");
    assert!(text.contains("entry 3: edited"), "{text}");
}

#[test]
fn serve_accepts_jwts_signed_by_the_keys_in_its_jwks_file() {
    let data = testkit::temp_dir("cli-jwks");
    let data_arg = data.to_str().unwrap();
    let (signer, _) = privacy::jwt::Signer::generate_es256("ec-1").unwrap();
    let jwks = data.join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [signer.public_jwk()] }).to_string()).unwrap();
    let jwks_arg = jwks.to_str().unwrap();

    // A configuration that cannot work stops serve before it listens, saying why.
    let empty = data.join("empty-jwks.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    let refused =
        chartroom(&["serve", "--port", "0", "--data", data_arg, "--jwks-file", empty.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("no RSA or EC P-256/P-384 signing key"), "{stderr}");
    let refused =
        chartroom(&["serve", "--port", "0", "--data", data_arg, "--jwt-issuer", "https://auth.example.org"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("need --jwks-file"), "{stderr}");

    let admin = chartroom(&["user", "add", "root", "--role", "admin", "--data", data_arg]);
    let admin = String::from_utf8_lossy(&admin.stdout).lines().last().unwrap().trim().to_string();
    let flags = ["--jwks-file", jwks_arg, "--jwt-issuer", "https://auth.example.org"];
    let (mut server, base) = serve_with(&data, &flags);
    let patient = serde_json::json!({ "resourceType": "Patient", "id": "p1" });
    assert_eq!(put(&format!("{base}/Patient/p1"), &admin, &patient), 201);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({ "iss": "https://auth.example.org", "sub": "dr-who", "scope": "user/*.rs", "exp": now + 600 });
    let token = signer.sign(&claims).unwrap();
    assert_eq!(get(&format!("{base}/Patient/p1"), Some(&token)).0, 200);
    let mut elsewhere = claims.clone();
    elsewhere["iss"] = "https://evil.example.org".into();
    let (status, outcome) = get(&format!("{base}/Patient/p1"), Some(&signer.sign(&elsewhere).unwrap()));
    assert_eq!(status, 401, "{outcome}");
    // No secret is configured, so HS256 is refused whatever key it was made with.
    let hs256 = privacy::jwt::sign(b"any secret of thirty-two bytes or more", &claims);
    let (status, outcome) = get_with(&format!("{base}/Patient/p1"), Some(format!("Bearer {hs256}")));
    assert_eq!(status, 401);
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("no shared secret"), "{outcome}");
    // The trail is searchable as AuditEvents by the administrator; a JWT's subject is named
    // apart from the users `chartroom user add` makes.
    let (status, bundle) = get(&format!("{base}/AuditEvent?agent=jwt:dr-who"), Some(&admin));
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1, "{bundle}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn clients_are_registered_listed_and_revoked() {
    let data = testkit::temp_dir("cli-clients");
    let data_arg = data.to_str().unwrap();
    let added = chartroom(&[
        "client",
        "add",
        "Patient app",
        "--public",
        "--redirect-uri",
        "https://app.example.org/cb",
        "--data",
        data_arg,
    ]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let id = text_of(&added).lines().last().unwrap().trim().to_string();
    assert!(id.starts_with("cl_"), "{id}");
    // An unsafe redirect, or neither --public nor --jwks, is refused.
    let open_redirect = chartroom(&[
        "client",
        "add",
        "Bad",
        "--public",
        "--redirect-uri",
        "http://evil.example/cb",
        "--data",
        data_arg,
    ]);
    assert!(!open_redirect.status.success());
    assert!(String::from_utf8_lossy(&open_redirect.stderr).contains("plain http"));
    assert!(
        !chartroom(&[
            "client",
            "add",
            "Neither",
            "--redirect-uri",
            "https://a.example/cb",
            "--data",
            data_arg
        ])
        .status
        .success()
    );
    let listed = text_of(&chartroom(&["client", "list", "--data", data_arg]));
    assert!(
        listed.contains(&id) && listed.contains("public (PKCE)") && listed.contains("1 clients"),
        "{listed}"
    );
    assert!(chartroom(&["client", "revoke", &id, "--data", data_arg]).status.success());
    assert_eq!(chartroom(&["client", "revoke", &id, "--data", data_arg]).status.code(), Some(1));
    // A mistyped --data creates nothing.
    let missing = data.join("nope");
    let refused = chartroom(&["client", "list", "--data", missing.to_str().unwrap()]);
    assert!(!refused.status.success() && !missing.exists());
}
