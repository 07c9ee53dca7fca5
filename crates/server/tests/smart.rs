//! SMART App Launch 2.0 and SMART Backend Services against the built-in authorization
//! server, over HTTP: discovery without a token, the standalone launch of a patient's app and
//! of a staff app with the patient picker, the EHR launch, backend services, refresh,
//! introspection and revocation; and every way a request can be wrong, each refused with the
//! OAuth error the specifications name and recorded in the audit trail.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chartroom_server as server;
use common::{TestServer, json, start_with};
use privacy::Role;
use privacy::jwt::Signer;
use serde_json::{Value, json};

const APP_REDIRECT: &str = "http://127.0.0.1:9/app/callback";
const PASSWORD: &str = "correct horse battery staple";

struct Fixture {
    server: TestServer,
    dir: std::path::PathBuf,
    security: Arc<server::Security>,
    /// The users, clients and tokens (shared by the servers of a PostgreSQL record).
    tables: Arc<privacy::Database>,
    /// A browser that does not follow redirects (they go to the app).
    browser: reqwest::Client,
    app: String,
    admin: String,
    clinician: String,
}

async fn fixture(name: &str) -> Fixture {
    let dir = testkit::temp_dir(&format!("{name}-privacy"));
    let tables = testkit::privacy_tables(name, &dir);
    let mut security =
        server::Security::open_on(&dir, tables.clone(), privacy::AuditOptions::default()).unwrap();
    security.oauth =
        Some(Arc::new(privacy::AuthorizationServer::on(&dir, tables.clone()).unwrap().with_code_lifetime(2)));
    let users = &security.users;
    let admin = users.add("root", Role::Admin, None, None).unwrap();
    let clinician = users.add("dr-grey", Role::Clinician, None, Some("Practitioner/prac-1")).unwrap();
    users.add("alice", Role::Patient, Some("pa"), Some("Patient/pa")).unwrap();
    users.add("ana-lyst", Role::Analyst, None, None).unwrap();
    for user in ["alice", "dr-grey", "ana-lyst"] {
        assert!(users.set_password(user, PASSWORD).unwrap());
    }
    assert!(users.set_password("alice", "short").is_err(), "passwords have a minimum length");
    let app = security
        .oauth
        .as_ref()
        .unwrap()
        .clients()
        .add("Health Diary", &[APP_REDIRECT.to_string()], privacy::ClientAuth::Public)
        .unwrap()
        .id;
    let security = Arc::new(security);
    let config = server::ServerConfig { security: Some(security.clone()), ..Default::default() };
    let server = start_with(name, config).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let f = Fixture { server, dir, security, tables, browser, app, admin, clinician };
    let mut entries = Vec::new();
    for (id, family) in [("pa", "Able"), ("pb", "Baker"), ("pc", "Carter")] {
        entries.push(json!({ "resource": { "resourceType": "Patient", "id": id, "name": [{ "family": family, "given": ["Ann"] }],
                                           "birthDate": "1980-02-03" },
                             "request": { "method": "PUT", "url": format!("Patient/{id}") } }));
        entries.push(json!({ "resource": { "resourceType": "Observation", "id": format!("obs-{id}"), "status": "final",
                                           "code": { "text": "weight" }, "subject": { "reference": format!("Patient/{id}") } },
                             "request": { "method": "PUT", "url": format!("Observation/obs-{id}") } }));
    }
    let response = f
        .server
        .client
        .post(f.server.url(""))
        .bearer_auth(&f.admin)
        .header("content-type", "application/fhir+json")
        .body(json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    f
}

fn root(f: &Fixture) -> String {
    f.server.base.strip_suffix("/fhir").unwrap().to_string()
}

/// A PKCE pair (RFC 7636): the verifier and its S256 challenge.
fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("{seed:-<43}").replace(' ', "-");
    let digest = ring_sha256(verifier.as_bytes());
    (verifier, base64url(&digest))
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2_lite::digest;
    digest(bytes)
}

/// SHA-256, written out so the test checks PKCE independently of the server's code.
mod sha2_lite {
    pub fn digest(message: &[u8]) -> Vec<u8> {
        const K: [u32; 64] = [
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
        ];
        let mut h: [u32; 8] =
            [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
        let mut data = message.to_vec();
        data.push(0x80);
        while data.len() % 64 != 56 {
            data.push(0);
        }
        data.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
        for block in data.chunks(64) {
            let mut w = [0u32; 64];
            for i in 0..16 {
                w[i] =
                    u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
            }
            let mut v = h;
            for i in 0..64 {
                let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
                let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
                let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
                let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
                let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
                let t2 = s0.wrapping_add(maj);
                v = [t1.wrapping_add(t2), v[0], v[1], v[2], v[3].wrapping_add(t1), v[4], v[5], v[6]];
            }
            for i in 0..8 {
                h[i] = h[i].wrapping_add(v[i]);
            }
        }
        h.iter().flat_map(|x| x.to_be_bytes()).collect()
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn decode_claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in part.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        } as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// The value of the hidden `request` field of a page.
fn request_field(page: &str) -> String {
    let start = page.find("name=\"request\" value=\"").expect("request field") + 22;
    page[start..].split('"').next().unwrap().to_string()
}

const FORM: &str = "application/x-www-form-urlencoded";

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

#[derive(Debug)]
struct Browser {
    cookie: String,
    request: String,
}

/// Opens the authorize URL; the sign-in page's request id and cookie, or the response.
async fn authorize(f: &Fixture, params: &[(&str, &str)]) -> Result<Browser, reqwest::Response> {
    let url = format!("{}/oauth/authorize", root(f));
    let response = f.browser.get(format!("{url}?{}", encode(params))).send().await.unwrap();
    if response.status() != 200 {
        return Err(response);
    }
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a browser cookie")
        .to_string();
    let page = response.text().await.unwrap();
    assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""), "{page}");
    Ok(Browser { cookie, request: request_field(&page) })
}

async fn post_form(f: &Fixture, browser: &Browser, form: &[(&str, &str)]) -> reqwest::Response {
    let mut fields = vec![("request", browser.request.as_str())];
    fields.extend_from_slice(form);
    f.browser
        .post(format!("{}/oauth/authorize", root(f)))
        .header("cookie", &browser.cookie)
        .header("content-type", FORM)
        .body(encode(&fields))
        .send()
        .await
        .unwrap()
}

fn standard_params<'a>(
    f: &'a Fixture,
    scope: &'a str,
    challenge: &'a str,
    aud: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", f.app.as_str()),
        ("redirect_uri", APP_REDIRECT),
        ("scope", scope),
        ("state", "s-123"),
        ("aud", aud),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Signs in and approves; the redirect's query (code and state).
async fn launch_to_code(
    f: &Fixture,
    user: &str,
    scope: &str,
    challenge: &str,
    patient: Option<&str>,
) -> std::collections::HashMap<String, String> {
    let base = f.server.base.clone();
    let browser = authorize(f, &standard_params(f, scope, challenge, &base)).await.expect("sign-in page");
    let consent = post_form(f, &browser, &[("username", user), ("password", PASSWORD)]).await;
    assert_eq!(consent.status(), 200);
    let page = consent.text().await.unwrap();
    assert!(page.contains("value=\"approve\""), "{page}");
    let mut decision = vec![("decision", "approve")];
    if let Some(patient) = patient {
        assert!(page.contains(&format!("value=\"{patient}\"")), "the picker offers {patient}: {page}");
        decision.push(("patient", patient));
    }
    let redirected = post_form(f, &browser, &decision).await;
    assert_eq!(redirected.status(), 303);
    let location = redirected.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(APP_REDIRECT), "{location}");
    query_of(&location)
}

async fn token_request(f: &Fixture, form: &[(&str, &str)]) -> (u16, Value) {
    let response = f
        .browser
        .post(format!("{}/oauth/token", root(f)))
        .header("content-type", FORM)
        .body(encode(form))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    (status, json(response).await)
}

async fn exchange(f: &Fixture, code: &str, verifier: &str) -> (u16, Value) {
    token_request(
        f,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_REDIRECT),
            ("code_verifier", verifier),
            ("client_id", &f.app),
        ],
    )
    .await
}

async fn fhir_get(f: &Fixture, token: &str, path: &str) -> (u16, Value) {
    let response = f.server.client.get(f.server.url(path)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, json(response).await)
}

/// The audit entries whose outcome text contains `needle`.
fn audited(f: &Fixture, needle: &str) -> Vec<privacy::Access> {
    f.security.audit.flush();
    privacy::audit::entries(&f.dir)
        .unwrap()
        .into_iter()
        .map(|(_, _, access)| access)
        .filter(|access| access.outcome_text.as_deref().is_some_and(|t| t.contains(needle)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_are_public_and_complete() {
    let f = fixture("smart-discovery").await;
    let response = f.server.get(".well-known/smart-configuration").await;
    assert_eq!(response.status(), 200);
    let document = json(response).await;
    // SMART App Launch 2.0, 2.0.0 §Metadata: the required fields.
    for field in [
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "token_endpoint_auth_methods_supported",
        "grant_types_supported",
        "scopes_supported",
        "response_types_supported",
        "code_challenge_methods_supported",
        "capabilities",
    ] {
        assert!(!document[field].is_null(), "{field} missing: {document}");
    }
    assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
    assert!(document["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")));
    for capability in [
        "launch-standalone",
        "launch-ehr",
        "client-public",
        "client-confidential-asymmetric",
        "context-standalone-patient",
        "permission-v2",
        "permission-offline",
    ] {
        assert!(document["capabilities"].as_array().unwrap().contains(&json!(capability)), "{capability}");
    }
    let jwks = json(f.browser.get(document["jwks_uri"].as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "only the public key");

    let metadata = json(f.server.get("metadata").await).await;
    let security = &metadata["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris = &security["extension"][0];
    assert_eq!(uris["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    let uri = |name: &str| {
        uris["extension"].as_array().unwrap().iter().find(|e| e["url"] == name).unwrap()["valueUri"].clone()
    };
    assert_eq!(uri("authorize"), document["authorization_endpoint"]);
    assert_eq!(uri("token"), document["token_endpoint"]);
    // Nothing else opens without a token.
    assert_eq!(f.server.get("Patient/pa").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_app_reads_only_its_patients_record_and_its_tokens_refresh_and_revoke() {
    let f = fixture("smart-patient-launch").await;
    let (verifier, challenge) = pkce("patient-app-verifier");
    let scope = "launch/patient openid fhirUser patient/*.read offline_access";
    let redirect = launch_to_code(&f, "alice", scope, &challenge, None).await;
    assert_eq!(redirect["state"], "s-123");
    let (status, tokens) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "pa");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["scope"].as_str().unwrap().contains("patient/*.rs"), "{tokens}");
    let id_token = decode_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], f.app.as_str());
    assert_eq!(id_token["fhirUser"], format!("{}/Patient/pa", f.server.base));
    let access = tokens["access_token"].as_str().unwrap().to_string();

    assert_eq!(fhir_get(&f, &access, "Patient/pa").await.0, 200);
    assert!(matches!(fhir_get(&f, &access, "Patient/pb").await.0, 403 | 404));
    let (status, bundle) = fhir_get(&f, &access, "Observation").await;
    assert_eq!(status, 200);
    let subjects: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["subject"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Patient/pa"], "only the patient's own observations");
    let used = audited(&f, "patient/*.rs offline_access to cl_");
    assert_eq!(used.len(), 1, "the grant is audited");
    assert_eq!(used[0].patients, ["Patient/pa"]);
    // Each use of the token is audited under the user's name.
    f.security.audit.flush();
    let reads: Vec<_> = privacy::audit::entries(&f.dir)
        .unwrap()
        .into_iter()
        .filter(|(_, _, a)| a.user == "alice" && a.interaction == "read")
        .collect();
    assert!(reads.len() >= 2, "reads audited as alice");

    // Introspection, as the resource server or an administrator would ask.
    let introspect = |token: String| {
        let f = &f;
        async move {
            let response = f
                .browser
                .post(format!("{}/oauth/introspect", root(f)))
                .bearer_auth(&f.admin)
                .header("content-type", FORM)
                .body(encode(&[("token", token.as_str())]))
                .send()
                .await
                .unwrap();
            json(response).await
        }
    };
    let active = introspect(access.clone()).await;
    assert_eq!((active["active"].clone(), active["patient"].clone()), (json!(true), json!("pa")));

    // Refresh: a new access token; the refresh token is rotated.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, renewed) = token_request(
        &f,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &f.app)],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["patient"], "pa");
    assert_eq!(fhir_get(&f, renewed["access_token"].as_str().unwrap(), "Patient/pa").await.0, 200);
    let (status, again) = token_request(
        &f,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &f.app)],
    )
    .await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")));

    // Revocation by the app: the access token stops at once.
    let response = f
        .browser
        .post(format!("{}/oauth/revoke", root(&f)))
        .header("content-type", FORM)
        .body(encode(&[("token", access.as_str()), ("client_id", f.app.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, outcome) = fhir_get(&f, &access, "Patient/pa").await;
    assert_eq!(status, 401, "{outcome}");
    assert!(outcome.to_string().contains("revoked"), "{outcome}");
    assert_eq!(introspect(access).await["active"], false);
    assert!(!audited(&f, "token revoked").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_pick_the_patient_and_get_no_more_than_their_role_permits() {
    let f = fixture("smart-staff-launch").await;
    let (verifier, challenge) = pkce("staff-app-verifier");
    // The analyst asks for write access; the role reads only.
    let redirect = launch_to_code(
        &f,
        "ana-lyst",
        "launch/patient patient/*.cruds openid fhirUser",
        &challenge,
        Some("pb"),
    )
    .await;
    let (status, tokens) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "pb");
    assert_eq!(tokens["scope"], "launch/patient patient/*.rs openid fhirUser");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&f, access, "Observation/obs-pb").await.0, 200);
    assert!(matches!(fhir_get(&f, access, "Observation/obs-pa").await.0, 403 | 404));
    let response = f
        .server
        .client
        .put(f.server.url("Observation/obs-pb"))
        .bearer_auth(access)
        .header("content-type", "application/fhir+json")
        .body(json!({ "resourceType": "Observation", "id": "obs-pb", "status": "final", "code": { "text": "x" },
                      "subject": { "reference": "Patient/pb" } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "no writes were granted");
    // The patients the picker showed are in the audit trail.
    let shown = audited(&f, "patient picker shown");
    assert!(shown.iter().any(|a| a.patients.contains(&"Patient/pc".to_string())), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_opened_from_the_workbench_gets_the_launch_context() {
    let f = fixture("smart-ehr-launch").await;
    let response = f
        .browser
        .post(format!("{}/oauth/launch", root(&f)))
        .bearer_auth(&f.clinician)
        .header("content-type", FORM)
        .body(encode(&[("patient", "pc")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let launch = json(response).await["launch"].as_str().unwrap().to_string();
    let (verifier, challenge) = pkce("ehr-launch-verifier");
    let base = f.server.base.clone();
    let mut params = standard_params(&f, "launch patient/*.rs openid fhirUser", &challenge, &base);
    params.push(("launch", &launch));
    let browser = authorize(&f, &params).await.expect("sign-in page");
    let consent = post_form(&f, &browser, &[("username", "dr-grey"), ("password", PASSWORD)]).await;
    let page = consent.text().await.unwrap();
    assert!(!page.contains("name=\"patient\""), "the launch names the patient: no picker");
    let redirected = post_form(&f, &browser, &[("decision", "approve")]).await;
    let redirect = query_of(redirected.headers()["location"].to_str().unwrap());
    let (status, tokens) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "pc");
    assert!(tokens["scope"].as_str().unwrap().split(' ').any(|s| s == "launch"));
    // A patient may not open launches; an unknown patient is refused.
    let response = f
        .browser
        .post(format!("{}/oauth/launch", root(&f)))
        .bearer_auth(&f.clinician)
        .header("content-type", FORM)
        .body(encode(&[("patient", "nobody")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

/// The ES384 key of a backend service, registered with the server.
fn backend_client(f: &Fixture) -> (String, Signer) {
    let (signer, _) = Signer::generate_es384("backend-key-1").unwrap();
    let jwks = json!({ "keys": [signer.public_jwk()] }).to_string();
    let client = f
        .security
        .oauth
        .as_ref()
        .unwrap()
        .clients()
        .add("Registry extract", &[], privacy::ClientAuth::PrivateKeyJwt { jwks })
        .unwrap();
    (client.id, signer)
}

fn assertion(f: &Fixture, client: &str, signer: &Signer, jti: &str, lifetime: i64) -> String {
    let now = fhir::datetime::epoch_millis_now() / 1000;
    signer
        .sign(&json!({ "iss": client, "sub": client, "aud": format!("{}/oauth/token", root(f)),
                       "exp": now + lifetime, "jti": jti }))
        .unwrap()
}

async fn client_credentials(f: &Fixture, assertion: &str, scope: &str) -> (u16, Value) {
    token_request(
        f,
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_services_sign_their_assertions_and_each_is_used_once() {
    let f = fixture("smart-backend").await;
    let (client, signer) = backend_client(&f);
    let first = assertion(&f, &client, &signer, "jti-1", 240);
    let (status, tokens) = client_credentials(&f, &first, "system/Patient.read system/Observation.rs").await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "system/Patient.rs system/Observation.rs");
    let access = tokens["access_token"].as_str().unwrap();
    let (status, bundle) = fhir_get(&f, access, "Patient").await;
    assert_eq!((status, bundle["entry"].as_array().map(Vec::len)), (200, Some(3)));
    assert_eq!(fhir_get(&f, access, "Encounter").await.0, 403, "not granted");

    // Replayed: refused, and audited.
    let (status, error) = client_credentials(&f, &first, "system/Patient.rs").await;
    assert_eq!((status, error["error"].as_str()), (401, Some("invalid_client")), "{error}");
    assert!(error["error_description"].as_str().unwrap().contains("already used"));
    assert!(!audited(&f, "refused: invalid_client: the client assertion was already used").is_empty());
    // Longer than five minutes: refused.
    let (status, error) =
        client_credentials(&f, &assertion(&f, &client, &signer, "jti-2", 3600), "system/Patient.rs").await;
    assert_eq!((status, error["error"].as_str()), (401, Some("invalid_client")), "{error}");
    // Signed by another key: refused.
    let (stranger, _) = Signer::generate_es384("backend-key-1").unwrap();
    let (status, _) =
        client_credentials(&f, &assertion(&f, &client, &stranger, "jti-3", 60), "system/Patient.rs").await;
    assert_eq!(status, 401);
    // Asking for user or patient scopes: invalid_scope.
    let (status, error) =
        client_credentials(&f, &assertion(&f, &client, &signer, "jti-4", 60), "user/*.rs").await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_scope")));
    // A public client has no keys to use client_credentials with.
    let (status, error) = token_request(
        &f,
        &[("grant_type", "client_credentials"), ("client_id", &f.app), ("scope", "system/*.rs")],
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (400, Some("unauthorized_client")), "{error}");
    // Revoking the client ends its tokens.
    assert!(f.security.oauth.as_ref().unwrap().clients().revoke(&client).unwrap());
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    assert_eq!(fhir_get(&f, access, "Patient").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_authorization_requests_are_refused_with_the_oauth_error_and_audited() {
    let f = fixture("smart-refusals").await;
    let base = f.server.base.clone();
    let (verifier, challenge) = pkce("refusal-verifier");
    let scope = "launch/patient patient/*.rs";

    // An unregistered redirect URI: never redirected to (no open redirect), a page instead.
    let mut params = standard_params(&f, scope, &challenge, &base);
    params[2] = ("redirect_uri", "https://evil.example.org/steal");
    let response = authorize(&f, &params).await.expect_err("refused");
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("not a redirect URI registered"));
    let mut params = standard_params(&f, scope, &challenge, &base);
    params[1] = ("client_id", "cl_unknown");
    assert_eq!(authorize(&f, &params).await.expect_err("refused").status(), 400);

    // Errors the app can be told about go back to it, with its state.
    for (change, error) in [
        (("code_challenge_method", "plain"), "invalid_request"),
        (("aud", "https://elsewhere.example.org/fhir"), "invalid_request"),
        (("response_type", "token"), "unsupported_response_type"),
        (("scope", "patient/Nonsense.rs"), "invalid_scope"),
    ] {
        let mut params = standard_params(&f, scope, &challenge, &base);
        params.retain(|(name, _)| *name != change.0);
        params.push(change);
        let response = authorize(&f, &params).await.expect_err("refused");
        assert_eq!(response.status(), 303, "{change:?}");
        let redirect = query_of(response.headers()["location"].to_str().unwrap());
        assert_eq!((redirect["error"].as_str(), redirect["state"].as_str()), (error, "s-123"), "{change:?}");
    }
    let mut params = standard_params(&f, scope, &challenge, &base);
    params.retain(|(name, _)| *name != "code_challenge");
    let response = authorize(&f, &params).await.expect_err("PKCE is required");
    assert_eq!(query_of(response.headers()["location"].to_str().unwrap())["error"], "invalid_request");
    assert!(!audited(&f, "refused: invalid_request: PKCE is required").is_empty());

    // A patient's app asking for user/ scopes.
    let browser = authorize(&f, &standard_params(&f, "user/*.rs", &challenge, &base)).await.unwrap();
    let response = post_form(&f, &browser, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(query_of(response.headers()["location"].to_str().unwrap())["error"], "invalid_scope");
    assert!(!audited(&f, "a patient's app may ask for patient/ scopes only").is_empty());

    // A wrong password: asked again (401), audited; the form from another browser: refused.
    let browser = authorize(&f, &standard_params(&f, scope, &challenge, &base)).await.unwrap();
    let response = post_form(&f, &browser, &[("username", "alice"), ("password", "not the password")]).await;
    assert_eq!(response.status(), 401);
    assert!(!audited(&f, "refused: sign-in as \"alice\"").is_empty());
    let stolen = Browser { cookie: "chartroom_authorize=forged".into(), request: browser.request.clone() };
    let response = post_form(&f, &stolen, &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 400, "a request id alone does not continue a sign-in");

    // Five wrong passwords lock the name for a while, even against the right one.
    let browser = authorize(&f, &standard_params(&f, scope, &challenge, &base)).await.unwrap();
    for _ in 0..5 {
        let response = post_form(&f, &browser, &[("username", "ana-lyst"), ("password", "guess")]).await;
        assert_eq!(response.status(), 401);
    }
    let response = post_form(&f, &browser, &[("username", "ana-lyst"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("too many failed sign-ins"));

    // Denied consent.
    let browser = authorize(&f, &standard_params(&f, scope, &challenge, &base)).await.unwrap();
    post_form(&f, &browser, &[("username", "alice"), ("password", PASSWORD)]).await;
    let response = post_form(&f, &browser, &[("decision", "deny")]).await;
    assert_eq!(query_of(response.headers()["location"].to_str().unwrap())["error"], "access_denied");

    // At the token endpoint: a PKCE verifier that does not match.
    let redirect = launch_to_code(&f, "alice", scope, &challenge, None).await;
    let (status, error) = exchange(&f, &redirect["code"], &format!("{verifier}-other")).await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_grant")), "{error}");
    assert!(!audited(&f, "code_verifier does not match").is_empty());
    // A wrong redirect URI.
    let redirect = launch_to_code(&f, "alice", scope, &challenge, None).await;
    let (status, error) = token_request(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &redirect["code"]),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &verifier),
            ("client_id", &f.app),
        ],
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_grant")), "{error}");
    // A code used twice: refused, and what the first exchange issued is revoked.
    let redirect = launch_to_code(&f, "alice", scope, &challenge, None).await;
    let (status, first) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(fhir_get(&f, access, "Patient/pa").await.0, 200);
    let (status, error) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(fhir_get(&f, access, "Patient/pa").await.0, 401, "revoked with its code");
    // An expired code (the fixture's codes last 2 seconds).
    let redirect = launch_to_code(&f, "alice", scope, &challenge, None).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, error) = exchange(&f, &redirect["code"], &verifier).await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_grant")));
    assert!(error["error_description"].as_str().unwrap().contains("expired"));
    assert!(!audited(&f, "refused: invalid_grant: the authorization code has expired").is_empty());
    // Unsupported grant types and unknown clients.
    let (status, error) = token_request(&f, &[("grant_type", "password"), ("client_id", &f.app)]).await;
    assert_eq!((status, error["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (status, error) =
        token_request(&f, &[("grant_type", "authorization_code"), ("client_id", "cl_nobody")]).await;
    assert_eq!((status, error["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    let f = fixture("smart-token-forgery").await;
    let (verifier, challenge) = pkce("forgery-verifier");
    let redirect = launch_to_code(&f, "alice", "patient/*.rs", &challenge, None).await;
    let (_, tokens) = exchange(&f, &redirect["code"], &verifier).await;
    let access = tokens["access_token"].as_str().unwrap();
    // The payload widened after signing.
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims = decode_claims(access);
    claims["scope"] = json!("system/*.cruds");
    claims["role"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], base64url(claims.to_string().as_bytes()), parts[2]);
    let response = f.server.client.get(f.server.url("Patient/pb")).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // RFC 6750 §3.1: the resource server names the error.
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    // Signed with the server's own key but expired.
    // The key is beside the privacy database, or in a PostgreSQL record's tables.
    let key = match f.tables.query_opt("SELECT pkcs8 FROM oauth_signing_key", &[]) {
        Ok(Some(row)) => row.blob(0).unwrap(),
        _ => std::fs::read(f.dir.join(privacy::oauth::SIGNING_KEY_FILE)).unwrap(),
    };
    let kid = json(f.browser.get(format!("{}/oauth/jwks", root(&f))).send().await.unwrap()).await["keys"][0]
        ["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let signer = Signer::es256(&kid, &key).unwrap();
    let mut expired = decode_claims(access);
    expired["exp"] = json!(fhir::datetime::epoch_millis_now() / 1000 - 10);
    let (status, outcome) = fhir_get(&f, &signer.sign(&expired).unwrap(), "Patient/pa").await;
    assert_eq!(status, 401);
    assert!(outcome.to_string().contains("expired"), "{outcome}");
    // A user removed: their tokens end.
    assert_eq!(fhir_get(&f, access, "Patient/pa").await.0, 200);
    assert!(f.security.users.revoke("alice").unwrap());
    assert_eq!(fhir_get(&f, access, "Patient/pa").await.0, 401);
    // The refusals are in the trail.
    f.security.audit.flush();
    let refused =
        privacy::audit::entries(&f.dir).unwrap().into_iter().filter(|(_, _, a)| a.status == 401).count();
    assert!(refused >= 3, "{refused}");
}

/// Two servers of one PostgreSQL record (in production two processes; here each with its own
/// connection to the record's tables) are one authorization server to their users: a token
/// from either works at both, a client assertion is used once across them, and a user or
/// token revoked through one is refused by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_of_a_postgresql_record_share_users_clients_and_revocations() {
    if !testkit::on_postgres() {
        eprintln!("SKIPPED: shared tables are a PostgreSQL record's (CHARTROOM_TEST_STORE=postgres)");
        return;
    }
    let f = fixture("smart-shared").await;
    let dir_b = testkit::temp_dir("smart-shared-b");
    let security_b = Arc::new(
        server::Security::open_on(&dir_b, f.tables.another().unwrap(), privacy::AuditOptions::default())
            .unwrap(),
    );
    let b = start_with(
        "smart-shared-b",
        server::ServerConfig { security: Some(security_b.clone()), ..Default::default() },
    )
    .await;
    let root_b = b.base.strip_suffix("/fhir").unwrap().to_string();
    let get_b = |token: String, path: &'static str| {
        let request = b.client.get(b.url(path)).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // An API token issued through A works at B; one revoked through A before B saw it does not.
    assert_eq!(get_b(f.clinician.clone(), "Patient").await, 200);
    let short_lived = f.security.users.add("temp-clerk", Role::HimTechnician, None, None).unwrap();
    assert!(f.security.users.revoke("temp-clerk").unwrap());
    assert_eq!(get_b(short_lived, "Patient").await, 401);

    // A backend client registered through A gets a token at B, which A accepts: one signing key.
    let (client, signer) = backend_client(&f);
    let now = fhir::datetime::epoch_millis_now() / 1000;
    let assertion_b = signer
        .sign(&json!({ "iss": client, "sub": client, "aud": format!("{root_b}/oauth/token"),
                       "exp": now + 120, "jti": "shared-1" }))
        .unwrap();
    let token_at_b = |assertion: String| {
        let request =
            f.browser.post(format!("{root_b}/oauth/token")).header("content-type", FORM).body(encode(&[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &assertion),
            ]));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), json(response).await)
        }
    };
    let (status, tokens) = token_at_b(assertion_b).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(fhir_get(&f, &access, "Patient").await.0, 200, "A accepts B's token");
    // The assertion's jti, spent at B, is refused at A (aud aside, which names B).
    let replay = assertion(&f, &client, &signer, "shared-1", 120);
    let (status, error) = client_credentials(&f, &replay, "system/Patient.rs").await;
    assert_eq!((status, error["error"].as_str()), (401, Some("invalid_client")), "{error}");
    assert!(error["error_description"].as_str().unwrap().contains("already used"), "{error}");

    // Revoked through A (RFC 7009): B refuses it once it has read the revocations again.
    let revoke = f
        .browser
        .post(format!("{}/oauth/revoke", root(&f)))
        .header("content-type", FORM)
        .body(encode(&[
            ("token", &access),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion(&f, &client, &signer, "shared-2", 120)),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    assert_eq!(fhir_get(&f, &access, "Patient").await.0, 401, "refused at once where it was revoked");
    let deadline = std::time::Instant::now() + privacy::oauth::REVOCATIONS_RELOAD + Duration::from_secs(3);
    loop {
        let status = get_b(access.clone(), "Patient").await;
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "B still accepts a token revoked through A");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A sign-in moving between the servers at every step: the page from A, the password to
    // B, the decision to A, the code exchanged at B; exchanged again at A, it is refused and
    // what B issued for it is revoked.
    let (verifier, challenge) = pkce("shared-sign-in");
    let browser = authorize(&f, &standard_params(&f, "patient/Patient.rs", &challenge, &f.server.base))
        .await
        .expect("sign-in page");
    let post_to = |root: String, form: Vec<(&'static str, String)>| {
        let mut fields = vec![("request".to_string(), browser.request.clone())];
        fields.extend(form.into_iter().map(|(k, v)| (k.to_string(), v)));
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let request = f
            .browser
            .post(format!("{root}/oauth/authorize"))
            .header("cookie", &browser.cookie)
            .header("content-type", FORM)
            .body(encode(&pairs));
        async move { request.send().await.unwrap() }
    };
    let consent =
        post_to(root_b.clone(), vec![("username", "alice".into()), ("password", PASSWORD.into())]).await;
    assert_eq!(consent.status(), 200, "B continues the sign-in A began");
    assert!(consent.text().await.unwrap().contains("value=\"approve\""));
    let redirected = post_to(root(&f), vec![("decision", "approve".into())]).await;
    assert_eq!(redirected.status(), 303, "A takes the decision of a sign-in B carried on");
    let code = query_of(redirected.headers()["location"].to_str().unwrap())["code"].clone();
    let exchange_at = |root: String| {
        let request =
            f.browser.post(format!("{root}/oauth/token")).header("content-type", FORM).body(encode(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", APP_REDIRECT),
                ("code_verifier", &verifier),
                ("client_id", &f.app),
            ]));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), json(response).await)
        }
    };
    let (status, tokens) = exchange_at(root_b.clone()).await;
    assert_eq!(status, 200, "B exchanges the code A issued: {tokens}");
    let alice_token = tokens["access_token"].as_str().unwrap().to_string();
    // (B serves another record here: a search answers, where a read of pa would not find it.)
    assert_eq!(get_b(alice_token.clone(), "Patient").await, 200);
    let (status, error) = exchange_at(root(&f)).await;
    assert_eq!((status, error["error"].as_str()), (400, Some("invalid_grant")), "{error}");
    assert!(error["error_description"].as_str().unwrap().contains("already used"), "{error}");
    let deadline = std::time::Instant::now() + privacy::oauth::REVOCATIONS_RELOAD + Duration::from_secs(3);
    while get_b(alice_token.clone(), "Patient").await != 401 {
        assert!(std::time::Instant::now() < deadline, "the tokens of a code used twice stay good at B");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Wrong passwords spread over both servers count once: the name locks at both.
    let (_, challenge) = pkce("shared-guesses");
    let browser = authorize(&f, &standard_params(&f, "user/Patient.rs", &challenge, &f.server.base))
        .await
        .expect("sign-in page");
    let post_to = |root: String, password: &'static str| {
        let request = f
            .browser
            .post(format!("{root}/oauth/authorize"))
            .header("cookie", &browser.cookie)
            .header("content-type", FORM)
            .body(encode(&[("request", &browser.request), ("username", "ana-lyst"), ("password", password)]));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for attempt in 0..5 {
        let root = if attempt % 2 == 0 { root(&f) } else { root_b.clone() };
        assert_eq!(post_to(root, "guess").await.0, 401);
    }
    let (status, page) = post_to(root_b.clone(), PASSWORD).await;
    assert_eq!(status, 401);
    assert!(page.contains("too many failed sign-ins"), "three guesses at A and two at B lock the name at B");
}
