//! The HIM workbench over HTTP: sign-in and sessions, CSRF, the pages each role may and may
//! not open, what a patient's session reaches, escaping of record values, coding an encounter
//! through the API's write path, and the audit entries pages leave.

mod common;

use std::sync::Arc;

use chartroom_server as server;
use common::{TestServer, start_with};
use privacy::Role;
use serde_json::{Value, json};

const PASSWORD: &str = "a workbench passphrase";
const NOTE: &str = "Patient seen for type 2 diabetes mellitus without complications. Continue metformin.";

struct Fixture {
    server: TestServer,
    dir: std::path::PathBuf,
    security: Arc<server::Security>,
    browser: reqwest::Client,
    root: String,
}

async fn fixture(name: &str) -> Fixture {
    let dir = testkit::temp_dir(&format!("{name}-privacy"));
    let security = server::Security::open(&dir).unwrap();
    let admin = security.users.add("root", Role::Admin, None, None).unwrap();
    for (user, role, patient) in [
        ("cody", Role::Coder, None),
        ("alice", Role::Patient, Some("pa")),
        ("pat-officer", Role::PrivacyOfficer, None),
        ("ana", Role::Analyst, None),
        ("hana", Role::HimTechnician, None),
        ("root", Role::Admin, None),
    ] {
        if user != "root" {
            security.users.add(user, role, patient, None).unwrap();
        }
        security.users.set_password(user, PASSWORD).unwrap();
    }
    let security = Arc::new(security);
    let config = server::ServerConfig { security: Some(security.clone()), ..Default::default() };
    let server = start_with(name, config).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let root = server.base.strip_suffix("/fhir").unwrap().to_string();
    let note = fhir_base64(NOTE.as_bytes());
    let entries: Vec<Value> = [
        json!({ "resourceType": "Patient", "id": "pa", "name": [{ "family": "<script>alert(1)</script>", "given": ["Ann"] }],
                "birthDate": "1980-02-03", "gender": "female" }),
        json!({ "resourceType": "Patient", "id": "pb", "name": [{ "family": "Baker", "given": ["Bo"] }], "birthDate": "1975-05-06" }),
        json!({ "resourceType": "Encounter", "id": "enc-a", "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                "subject": { "reference": "Patient/pa" },
                "period": { "start": "2024-03-01T09:00:00Z", "end": "2024-03-01T10:00:00Z" } }),
        json!({ "resourceType": "DocumentReference", "id": "note-a", "status": "current",
                "subject": { "reference": "Patient/pa" },
                "content": [{ "attachment": { "contentType": "text/plain", "data": note } }],
                "context": { "encounter": [{ "reference": "Encounter/enc-a" }] } }),
        json!({ "resourceType": "Observation", "id": "obs-a1", "status": "final", "code": { "text": "Body weight" },
                "subject": { "reference": "Patient/pa" }, "effectiveDateTime": "2024-01-01",
                "valueQuantity": { "value": 70, "unit": "kg" } }),
        json!({ "resourceType": "Observation", "id": "obs-a2", "status": "final", "code": { "text": "Body weight" },
                "subject": { "reference": "Patient/pa" }, "effectiveDateTime": "2024-02-01",
                "valueQuantity": { "value": 72, "unit": "kg" } }),
    ]
    .into_iter()
    .map(|resource| {
        let url = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        json!({ "resource": resource, "request": { "method": "PUT", "url": url } })
    })
    .collect();
    let response = server
        .client
        .post(server.url(""))
        .bearer_auth(&admin)
        .header("content-type", "application/fhir+json")
        .body(json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    Fixture { server, dir, security, browser, root }
}

fn fhir_base64(bytes: &[u8]) -> String {
    fhir::base64_encode(bytes)
}

fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[start..].split('"').next().unwrap().to_string()
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// A signed-in browser: its session cookie and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn get(
    f: &Fixture,
    session: Option<&Session>,
    path: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut request = f.browser.get(format!("{}{path}", f.root));
    if let Some(session) = session {
        request = request.header("cookie", &session.cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

async fn post(f: &Fixture, session: &Session, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form {
        serializer.append_pair(name, value);
    }
    let response = f
        .browser
        .post(format!("{}{path}", f.root))
        .header("cookie", &session.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serializer.finish())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn sign_in(f: &Fixture, user: &str) -> Session {
    let page = f.browser.get(format!("{}/signin", f.root)).send().await.unwrap();
    let doubled = cookie_of(&page, "chartroom_signin").expect("sign-in cookie");
    let csrf = csrf_of(&page.text().await.unwrap());
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("next", "/")
        .append_pair("username", user)
        .append_pair("password", PASSWORD)
        .finish();
    let response = f
        .browser
        .post(format!("{}/signin", f.root))
        .header("cookie", &doubled)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{user} signs in");
    let cookie = cookie_of(&response, "chartroom_session").expect("session cookie");
    let (status, home, _) = get(f, Some(&Session { cookie: cookie.clone(), csrf: String::new() }), "/").await;
    assert_eq!(status, 200);
    Session { cookie, csrf: csrf_of(&home) }
}

fn audited(f: &Fixture, interaction: &str) -> Vec<privacy::Access> {
    f.security.audit.flush();
    privacy::audit::entries(&f.dir)
        .unwrap()
        .into_iter()
        .map(|(_, _, a)| a)
        .filter(|a| a.interaction == interaction)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_and_see_only_what_their_role_may_use() {
    let f = fixture("workbench-roles").await;
    // Not signed in: to the sign-in page, keeping where they were going.
    let (status, _, headers) = get(&f, None, "/patients").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/signin?next=%2Fpatients");
    // The sign-in form without its doubled token is refused.
    let page = f.browser.get(format!("{}/signin", f.root)).send().await.unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let response = f
        .browser
        .post(format!("{}/signin", f.root))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&username=cody&password=a+workbench+passphrase"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "no sign-in cookie, no sign-in");

    let coder = sign_in(&f, "cody").await;
    let (status, home, headers) = get(&f, Some(&coder), "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    for offered in ["href=\"/patients\"", "href=\"/coding\""] {
        assert!(home.contains(offered), "{offered}");
    }
    for hidden in ["href=\"/privacy\"", "href=\"/admin\""] {
        assert!(!home.contains(hidden), "{hidden} offered to a coder");
    }
    let (status, page, _) = get(&f, Some(&coder), "/privacy/audit").await;
    assert_eq!(status, 403);
    assert!(page.contains("Not permitted"));
    assert_eq!(get(&f, Some(&coder), "/admin").await.0, 403);

    let officer = sign_in(&f, "pat-officer").await;
    assert_eq!(get(&f, Some(&officer), "/privacy/audit?user=cody").await.0, 200);
    let (status, page, _) = get(&f, Some(&officer), "/privacy/monitor").await;
    assert_eq!(status, 200);
    assert!(page.contains("findings"), "{page}");
    assert_eq!(get(&f, Some(&officer), "/privacy/monitor?kind=break-the-glass").await.0, 200);
    assert_eq!(post(&f, &officer, "/privacy/monitor/run", &[("csrf", &officer.csrf)]).await.0, 303);
    let (status, page) = post(&f, &officer, "/privacy/verify", &[("csrf", &officer.csrf)]).await;
    assert_eq!(status, 200);
    assert!(page.contains("the chain is intact"), "{page}");
    // Another session's token does not do.
    let (status, _) = post(&f, &officer, "/privacy/verify", &[("csrf", &coder.csrf)]).await;
    assert_eq!(status, 403);

    // A revoked user's token is listed as ended on the administration page.
    f.security.users.add("temp", Role::Analyst, None, None).unwrap();
    assert!(f.security.users.revoke("temp").unwrap());
    let admin = sign_in(&f, "root").await;
    let (status, page, _) = get(&f, Some(&admin), "/admin").await;
    assert_eq!(status, 200);
    assert!(page.contains("cody") && page.contains("coder"));
    // Resources by type: the fixture's two patients among them.
    assert!(page.contains("<td>Patient</td><td>2</td>"), "{page}");
    assert!(page.contains("Audit backlog") && page.contains("Search index</dt><dd>current"), "{page}");
    assert!(page.contains("<td>temp</td><td>analyst</td>") && page.contains("<td>revoked</td>"), "{page}");
    assert_eq!(get(&f, Some(&admin), "/quality").await.0, 200);
    // The report is kept a while; "run again" runs it at once (a form: its CSRF token needed).
    assert_eq!(post(&f, &admin, "/quality/run", &[]).await.0, 403);
    assert_eq!(post(&f, &admin, "/quality/run", &[("csrf", &admin.csrf)]).await.0, 303);
    let analyst = sign_in(&f, "ana").await;
    let (status, page, _) = get(&f, Some(&analyst), "/analytics").await;
    assert_eq!(status, 200);
    assert!(page.contains("/analytics/views/patients"), "{page}");
    let (status, page, _) = get(&f, Some(&analyst), "/analytics/views/patients").await;
    assert_eq!(status, 200, "{page}");
    // The uses of the record: the outbreak page's form, then its answer through $surveillance;
    // the treatment comparison's form, and a study posted (with the form's CSRF token).
    let (status, page, _) = get(&f, Some(&analyst), "/analytics/surveillance").await;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"method\"") && page.contains("Gastrointestinal illness"), "{page}");
    let (status, page, _) =
        get(&f, Some(&analyst), "/analytics/surveillance?by=week&place=city&method=nope").await;
    assert_eq!(status, 200);
    assert!(page.contains("role=\"alert\"") && page.contains("nope"), "{page}");
    let (status, page, _) =
        get(&f, Some(&analyst), "/analytics/surveillance?by=week&place=state&method=ears-c2").await;
    assert_eq!(status, 200);
    assert!(page.contains("series judged by"), "{page}");
    assert!(!audited(&f, "workbench-surveillance").is_empty());
    let (status, page, _) = get(&f, Some(&analyst), "/analytics/cohort").await;
    assert_eq!(status, 200);
    assert!(page.contains("lung-cancer-regimens"), "{page}");
    let study = r#"{"name": "x", "condition": ["C34"], "arms": [
        {"name": "A", "codes": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "40048"}]},
        {"name": "B", "codes": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545"}]}]}"#;
    assert_eq!(post(&f, &analyst, "/analytics/cohort", &[("study", study)]).await.0, 403);
    let (status, page) =
        post(&f, &analyst, "/analytics/cohort", &[("csrf", &analyst.csrf), ("study", study)]).await;
    assert_eq!(status, 200);
    // The fixture has no one with lung cancer: the answer says so.
    assert!(page.contains("role=\"alert\"") && page.contains("no patients"), "{page}");

    // Signed out: the session is gone.
    let (status, _) = post(&f, &coder, "/signout", &[("csrf", &coder.csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(get(&f, Some(&coder), "/").await.0, 303);
    assert!(!audited(&f, "workbench-sign-in").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_escapes_the_record_and_a_patient_reaches_only_their_own() {
    let f = fixture("workbench-chart").await;
    let coder = sign_in(&f, "cody").await;
    let (status, page, _) = get(&f, Some(&coder), "/patients?name=Ann").await;
    assert_eq!(status, 200);
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(!page.contains("<script>"), "no record value is markup");
    let (status, chart, _) = get(&f, Some(&coder), "/patients/pa").await;
    assert_eq!(status, 200);
    for section in ["Encounters (1)", "Body weight", "72 kg", "<svg", "Charlson index", "Frailty (HFRS)"] {
        assert!(chart.contains(section), "{section}");
    }
    let views = audited(&f, "workbench-chart");
    assert!(
        views.iter().any(|a| a.user == "cody" && a.patients.contains(&"Patient/pa".to_string())),
        "{views:?}"
    );
    let (status, history, _) = get(&f, Some(&coder), "/patients/pa/history/Patient/pa").await;
    assert_eq!(status, 200);
    assert!(history.contains("Version 1"));

    let alice = sign_in(&f, "alice").await;
    assert_eq!(get(&f, Some(&alice), "/patients/pa").await.0, 200);
    let (status, page, _) = get(&f, Some(&alice), "/patients/pb").await;
    assert!(status == 403 || status == 404, "{status}");
    assert!(!page.contains("Baker"));
    let (status, own, _) = get(&f, Some(&alice), "/patients").await;
    assert_eq!(status, 200);
    assert!(!own.contains("Baker"), "a patient's search is their own record");
    // The patient sees who viewed their chart; the coder may not.
    assert_eq!(get(&f, Some(&alice), "/patients/pa/viewers").await.0, 200);
    assert_eq!(get(&f, Some(&coder), "/patients/pa/viewers").await.0, 403);
    assert_eq!(get(&f, Some(&alice), "/coding").await.0, 403);
    // A patient's own chart has no comorbidity indices (a report the policy keeps for staff).
    let (_, own_chart, _) = get(&f, Some(&alice), "/patients/pa").await;
    assert!(!own_chart.contains("Charlson index"));
    // Without a trained model the high-risk page says what to do.
    let ana = sign_in(&f, "ana").await;
    let (status, page, _) = get(&f, Some(&ana), "/analytics/high-risk").await;
    assert!(status == 400 && page.contains("no readmission model"), "{status} {page}");
    let (status, page, _) = get(&f, Some(&ana), "/analytics/operations?from=2024-01-01&to=2024-12-31").await;
    assert!(status == 200 && page.contains("Daily census") && page.contains("<svg"), "{status} {page}");
    let (status, page, _) = get(&f, Some(&ana), "/analytics/operations?from=2024-12-31&to=2024-01-01").await;
    assert!(status == 400 && page.contains("before it starts"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coder_codes_an_encounter_from_the_worklist_through_the_api() {
    let f = fixture("workbench-coding").await;
    let coder = sign_in(&f, "cody").await;
    let (status, worklist, _) = get(&f, Some(&coder), "/coding").await;
    assert_eq!(status, 200);
    assert!(worklist.contains("/coding/encounters/enc-a"), "{worklist}");
    let (status, screen, _) = get(&f, Some(&coder), "/coding/encounters/enc-a").await;
    assert_eq!(status, 200);
    assert!(screen.contains("<mark>"), "evidence marked in the note: {screen}");
    assert!(screen.contains("E11.9"), "suggested: {screen}");
    // Without the CSRF token: refused, nothing written.
    let (status, _) = post(&f, &coder, "/coding/encounters/enc-a", &[("code", "E11.9")]).await;
    assert_eq!(status, 403);
    let (status, page) =
        post(&f, &coder, "/coding/encounters/enc-a", &[("csrf", &coder.csrf), ("code", "e11.9")]).await;
    assert_eq!(status, 200);
    assert!(page.contains("class=\"ok\""), "{page}");
    let coded = page.split("Codes on record").nth(1).unwrap_or("");
    assert!(
        coded.contains("E11.9") && coded.contains("(Condition/"),
        "the new diagnosis is on record: {coded}"
    );
    // The stored Condition, as the store has it.
    let id = coded.split("(Condition/").nth(1).and_then(|rest| rest.split(')').next()).unwrap();
    let stored = store::Store::read(f.server.store.as_ref(), "Condition", id).unwrap().expect("stored");
    let condition: Value = serde_json::from_slice(stored.body.as_deref().unwrap()).unwrap();
    assert_eq!(condition["code"]["coding"][0]["code"], "E11.9");
    assert_eq!(condition["encounter"]["reference"], "Encounter/enc-a");
    let assigned = audited(&f, "workbench-coding-assign");
    assert_eq!(assigned.len(), 1);
    assert!(assigned[0].outcome_text.as_deref().unwrap_or("").contains("assigned E11.9"));
    // A code that is not ICD-10-CM is refused with a message, nothing written.
    let (status, page) =
        post(&f, &coder, "/coding/encounters/enc-a", &[("csrf", &coder.csrf), ("code", "ZZZ.99")]).await;
    assert_eq!(status, 200);
    assert!(page.contains("is not an ICD-10-CM code"));

    // The claims audit: the visit was never billed, so it is discharged-not-final-billed.
    let (status, page, _) = get(&f, Some(&coder), "/coding/billing?asOf=2024-03-10&billHold=3").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Discharged, not final-billed") && page.contains("/records/Encounter/enc-a"),
        "{page}"
    );
    assert!(page.contains("<td>9</td>"), "nine days since discharge: {page}");
    assert_eq!(audited(&f, "workbench-billing-audit").len(), 1);
    let (status, page, _) = get(&f, Some(&coder), "/coding/billing?asOf=soon").await;
    assert_eq!(status, 400);
    assert!(page.contains("role=\"alert\""), "{page}");
    let patient = sign_in(&f, "alice").await;
    let (status, _, _) = get(&f, Some(&patient), "/coding/billing").await;
    assert_ne!(status, 200, "a patient has no claims audit");
}

/// What a page writes is in the scans exports, views and the access review read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_see_what_a_page_just_wrote() {
    let f = fixture("workbench-scan").await;
    let coder = sign_in(&f, "cody").await;
    let (status, page) =
        post(&f, &coder, "/coding/encounters/enc-a", &[("csrf", &coder.csrf), ("code", "E11.9")]).await;
    assert_eq!(status, 200);
    assert!(page.contains("class=\"ok\""), "{page}");
    let mut conditions = 0;
    store::Store::scan_type(f.server.store.as_ref(), "Condition", None, &mut |_, _, _| {
        conditions += 1;
        Ok(())
    })
    .unwrap();
    let mut everything = 0;
    store::Store::scan_current(f.server.store.as_ref(), &mut |kind, _, _| {
        everything += usize::from(kind == "Condition");
        Ok(())
    })
    .unwrap();
    assert_eq!((conditions, everything), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_reviews_merges_and_unmerges_duplicates() {
    let f = fixture("workbench-duplicates").await;
    // Forty people, and Dana Whitfield registered twice.
    let admin = f.security.users.add("loader", Role::Admin, None, None).unwrap();
    let mut entries = Vec::new();
    let mut person = |id: String, given: &str, family: &str, birth: String, street: String| {
        let resource = json!({ "resourceType": "Patient", "id": id, "gender": "female", "birthDate": birth,
            "name": [{ "use": "official", "family": family, "given": [given] }],
            "address": [{ "use": "home", "line": [street], "city": "Dayton", "state": "OH", "postalCode": "45402" }] });
        entries.push(
            json!({ "resource": resource, "request": { "method": "PUT", "url": format!("Patient/{id}") } }),
        );
    };
    let given = ["Ann", "Bo", "Cyd", "Dee", "Eli", "Fay", "Gus", "Hal"];
    let family = ["Adams", "Baker", "Clark", "Dunn", "Evans"];
    for n in 0..40 {
        person(
            format!("p{n}"),
            given[n % 8],
            family[n / 8],
            format!("19{:02}-0{}-1{}", 40 + n, 1 + n % 9, n % 10),
            format!("{} Main St", 100 + n),
        );
    }
    person("dw1".into(), "Danielle", "Whitfield", "1984-07-21".into(), "42 Oak Ave".into());
    person("dw2".into(), "Dani", "Whitfield", "1984-07-21".into(), "42 Oak Ave".into());
    entries.push(json!({ "resource": { "resourceType": "Observation", "id": "obs-dw2", "status": "final",
        "code": { "text": "Pulse" }, "subject": { "reference": "Patient/dw2" } },
        "request": { "method": "PUT", "url": "Observation/obs-dw2" } }));
    let response = f
        .server
        .client
        .post(f.server.url(""))
        .bearer_auth(&admin)
        .header("content-type", "application/fhir+json")
        .body(json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let hana = sign_in(&f, "hana").await;
    let (status, page, _) = get(&f, Some(&hana), "/duplicates").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Whitfield") && page.contains("value=\"same-person\""), "{page}");
    // An analyst sees the queue but cannot decide; a patient does not see it.
    let ana = sign_in(&f, "ana").await;
    let (status, page, _) = get(&f, Some(&ana), "/duplicates").await;
    assert!(status == 200 && page.contains("Whitfield") && !page.contains("same-person"), "{page}");
    let alice = sign_in(&f, "alice").await;
    assert_eq!(get(&f, Some(&alice), "/duplicates").await.0, 403);
    let decide = [("csrf", hana.csrf.as_str()), ("a", "dw1"), ("b", "dw2"), ("decision", "same-person")];
    assert_eq!(
        post(
            &f,
            &hana,
            "/duplicates/decide",
            &[("csrf", "forged"), ("a", "dw1"), ("b", "dw2"), ("decision", "same-person")]
        )
        .await
        .0,
        403
    );
    let (status, page) = post(&f, &hana, "/duplicates/decide", &decide).await;
    assert!(status == 200 && page.contains("recorded"), "{page}");
    let (_, page, _) = get(&f, Some(&hana), "/duplicates?status=decided").await;
    assert!(page.contains("/duplicates/merge?source=dw2&amp;target=dw1"), "{page}");
    let (status, page, _) = get(&f, Some(&hana), "/duplicates/merge?source=dw2&target=dw1").await;
    assert!(status == 200 && page.contains("would move Observation/obs-dw2"), "{page}");
    // The analyst may not merge; the technician may, and undo it.
    let (status, _) =
        post(&f, &ana, "/duplicates/merge", &[("csrf", &ana.csrf), ("source", "dw2"), ("target", "dw1")])
            .await;
    assert_eq!(status, 403);
    let (status, page) =
        post(&f, &hana, "/duplicates/merge", &[("csrf", &hana.csrf), ("source", "dw2"), ("target", "dw1")])
            .await;
    assert!(
        status == 200
            && page.contains("merged Patient/dw2 into Patient/dw1")
            && page.contains("Undo this merge"),
        "{page}"
    );
    let entry = audited(&f, "workbench-duplicates-merge").pop().expect("the merge's audit entry");
    assert!(
        entry.user == "hana" && entry.resources.iter().any(|r| r == "Observation/obs-dw2/_history/2"),
        "{entry:?}"
    );
    let (status, page) =
        post(&f, &hana, "/duplicates/unmerge", &[("csrf", &hana.csrf), ("source", "dw2")]).await;
    assert!(status == 200 && page.contains("unmerged Patient/dw2"), "{page}");
    assert_eq!(audited(&f, "workbench-duplicates-unmerge").len(), 1);
}

/// Release of information from the workbench: a patient's own request taken in, extended,
/// released and shown as words; the release's audit entry names the disclosure; coders have no
/// Requests area.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_takes_in_and_releases_a_request() {
    let f = fixture("workbench-roi").await;
    let him = sign_in(&f, "hana").await;
    let (status, page, _) = get(&f, Some(&him), "/requests").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("No open requests"), "{page}");
    let form = [
        ("csrf", him.csrf.as_str()),
        ("patient", "pa"),
        ("requester", "Ann Ames"),
        ("kind", "patient"),
        ("purpose", "PATRQT"),
        ("from", ""),
        ("to", ""),
        ("types", "Encounter, DocumentReference"),
        ("delivery", "html"),
        ("authorization", ""),
    ];
    let (status, page) = post(&f, &him, "/requests", &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("taken in; due"), "{page}");
    let id =
        page.split("action=\"/requests/").nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_string();
    let (status, page) = post(
        &f,
        &him,
        &format!("/requests/{id}/extend"),
        &[("csrf", &him.csrf), ("reason", "records off-site")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("extended; due") && page.contains("(extended)"), "{page}");
    let (status, page) = post(&f, &him, &format!("/requests/{id}/release"), &[("csrf", &him.csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Encounter/enc-a") && page.contains("DocumentReference/note-a"), "{page}");
    assert!(!page.contains("Baker"), "nothing of another patient: {page}");
    let released = audited(&f, "workbench-roi-release");
    assert_eq!(released.len(), 1);
    let disclosure = released[0].outcome_text.clone().unwrap_or_default();
    assert!(disclosure.contains("Ann Ames (patient)") && disclosure.contains("PATRQT"), "{disclosure}");
    assert!(released[0].patients.contains(&"Patient/pa".to_string()));
    // Released once: the request is no longer open.
    let (_, page, _) = get(&f, Some(&him), "/requests").await;
    assert!(page.contains("No open requests"), "{page}");
    // An attorney's request without an authorization is refused, saying why.
    let mut attorney = form;
    attorney[3] = ("kind", "attorney");
    attorney[4] = ("purpose", "HLEGAL");
    let (_, page) = post(&f, &him, "/requests", &attorney).await;
    assert!(page.contains("164.508") && page.contains("role=\"alert\""), "{page}");

    let coder = sign_in(&f, "cody").await;
    let (status, _, _) = get(&f, Some(&coder), "/requests").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_follows_record_completion() {
    let f = fixture("workbench-completion").await;
    let him = sign_in(&f, "hana").await;
    // The visit's note has no signature: owed, and long past due.
    let (status, page, _) = get(&f, Some(&him), "/completion").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Note not signed") && page.contains("DocumentReference/note-a"), "{page}");
    assert!(page.contains("(no one named)"), "{page}");
    let (status, page) = post(&f, &him, "/completion/scan", &[("csrf", &him.csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("1 deficiencies opened, 0 closed, 1 open"), "{page}");
    let scans = audited(&f, "workbench-completion-scan");
    assert_eq!(scans.len(), 1);
    assert!(scans[0].patients.contains(&"Patient/pa".to_string()), "{:?}", scans[0].patients);
    assert_eq!(audited(&f, "workbench-completion").len(), 1);
    let coder = sign_in(&f, "cody").await;
    let (status, _, _) = get(&f, Some(&coder), "/completion").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_decides_amendments_from_the_requests_area() {
    let f = fixture("workbench-amendments").await;
    let him = sign_in(&f, "hana").await;
    let (status, page, _) = get(&f, Some(&him), "/requests/amendments").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("No open amendment requests"), "{page}");
    let intake = |requested: &'static str| {
        [
            ("csrf", him.csrf.clone()),
            ("patient", "pa".to_string()),
            ("focus", "Observation/obs-a1".to_string()),
            ("requested", requested.to_string()),
            ("notify", "Dr. Lee".to_string()),
        ]
    };
    let form = intake("My weight was 71 kg");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page) = post(&f, &him, "/requests/amendments", &pairs).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("taken in; due"), "{page}");
    let id = page
        .split("/requests/amendments/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    // The acceptance form holds the resource as it is; the amended one is sent back.
    assert!(page.contains("&quot;value&quot;: 70"), "{page}");
    let amended = json!({ "resourceType": "Observation", "id": "obs-a1", "status": "final", "code": { "text": "Body weight" },
        "subject": { "reference": "Patient/pa" }, "effectiveDateTime": "2024-01-01", "valueQuantity": { "value": 71, "unit": "kg" } });
    let amended = amended.to_string();
    let (status, page) = post(
        &f,
        &him,
        &format!("/requests/amendments/{id}/accept"),
        &[("csrf", &him.csrf), ("resource", &amended)],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("accepted; amended: Observation/obs-a1/_history/2; notify: Dr. Lee"), "{page}");
    // Another, denied, then the patient's statement kept.
    let form = intake("I never weighed that");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, page) = post(&f, &him, "/requests/amendments", &pairs).await;
    let id = page
        .split("/requests/amendments/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let (_, page) = post(
        &f,
        &him,
        &format!("/requests/amendments/{id}/deny"),
        &[("csrf", &him.csrf), ("basis", "accurate-and-complete"), ("explanation", "Measured at the visit.")],
    )
    .await;
    assert!(page.contains("denied; denial-letter: DocumentReference/"), "{page}");
    let (_, page) = post(
        &f,
        &him,
        &format!("/requests/amendments/{id}/disagree"),
        &[("csrf", &him.csrf), ("statement", "The scale was wrong.")],
    )
    .await;
    assert!(page.contains("statement-of-disagreement: DocumentReference/"), "{page}");
    assert_eq!(audited(&f, "workbench-amend").len(), 3);
    let coder = sign_in(&f, "cody").await;
    let (status, _, _) = get(&f, Some(&coder), "/requests/amendments").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_places_and_releases_holds_and_purges() {
    let f = fixture("workbench-retention").await;
    let him = sign_in(&f, "hana").await;
    let (status, page, _) = get(&f, Some(&him), "/retention").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("No holds in force") && page.contains("would destroy <strong>0</strong>"),
        "{page}"
    );
    let (status, page) = post(
        &f,
        &him,
        "/retention/holds",
        &[("csrf", &him.csrf), ("matter", "Ames v. General"), ("patient", "pa"), ("requested_by", "Counsel")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("placed") && page.contains("Ames v. General") && page.contains("Patient/pa"),
        "{page}"
    );
    let id =
        page.split("/retention/holds/").nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_string();
    let (_, page) = post(&f, &him, "/retention/purge", &[("csrf", &him.csrf), ("schedule", "CA")]).await;
    assert!(page.contains("confirm the destruction first"), "{page}");
    let (_, page) =
        post(&f, &him, "/retention/purge", &[("csrf", &him.csrf), ("schedule", "CA"), ("confirm", "yes")])
            .await;
    assert!(page.contains("nothing was destroyed"), "{page}");
    let (_, page) = post(
        &f,
        &him,
        &format!("/retention/holds/{id}/release"),
        &[("csrf", &him.csrf), ("reason", "settled")],
    )
    .await;
    assert!(page.contains("released") && page.contains("No holds in force"), "{page}");
    assert_eq!(audited(&f, "workbench-retention-purge").len(), 1);
    let coder = sign_in(&f, "cody").await;
    let (status, _, _) = get(&f, Some(&coder), "/retention").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_him_department_applies_a_message_and_follows_an_extract() {
    let f = fixture("workbench-interfaces").await;
    let him = sign_in(&f, "hana").await;
    let (status, page, _) = get(&f, Some(&him), "/interfaces").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("HL7 v2 message") && page.contains("Research extract"), "{page}");
    // Lines as a browser sends a textarea's: CR LF.
    let message = "MSH|^~\\&|REG|GHH|CHARTROOM|HIM|202402011000||ADT^A28^ADT_A05|W1|P|2.5.1\r\nPID|1||970001^^^^MR||DOE^JO||19700101|F";
    let (status, page) =
        post(&f, &him, "/interfaces/hl7v2", &[("csrf", &him.csrf), ("message", message)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Applied (AA)") && page.contains("MSA|AA|W1"), "{page}");
    assert_eq!(audited(&f, "workbench-hl7v2").len(), 1);
    let (_, page) = post(&f, &him, "/interfaces/hl7v2", &[("csrf", &him.csrf), ("message", "PID|1")]).await;
    assert!(page.contains("Not applied (AR)"), "{page}");

    let (status, page) =
        post(&f, &him, "/interfaces/extract", &[("csrf", &him.csrf), ("profile", "safe-harbor")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("The extract is running"), "{page}");
    let job = page
        .split("/interfaces/extract/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let mut finished = String::new();
    for _ in 0..100 {
        let (_, page, _) = get(&f, Some(&him), &format!("/interfaces/extract/{job}")).await;
        if page.contains("Removed, by identifier class") {
            finished = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(finished.contains("Names") && finished.contains("safe-harbor"), "{finished}");
    assert!(!finished.contains("DOE"), "no name in what the page shows");
    // No import directory on this server: the page says so.
    let (_, page) = post(
        &f,
        &him,
        "/interfaces/import",
        &[("csrf", &him.csrf), ("inputs", "Patient http://127.0.0.1:9/x.ndjson")],
    )
    .await;
    assert!(page.contains("data directory"), "{page}");
    // Analysts and coders have no interfaces area.
    for user in ["ana", "cody"] {
        let session = sign_in(&f, user).await;
        let (status, _, _) = get(&f, Some(&session), "/interfaces").await;
        assert_eq!(status, 403, "{user}");
    }
}
