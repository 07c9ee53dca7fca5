//! An in-process Chartroom server on a loopback port, with a fresh data directory.

#![allow(dead_code)]

use std::sync::Arc;

use api::{Api, ApiConfig};
use chartroom_server as server;
use serde_json::Value;
use store::Store;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
}

pub async fn start(name: &str) -> TestServer {
    start_with(name, server::ServerConfig::default()).await
}

pub async fn start_with(name: &str, config: server::ServerConfig) -> TestServer {
    let dir = testkit::temp_dir(name);
    let store = testkit::open_store("common", &dir);
    // Bulk exports write beside the store.
    let config_api = ApiConfig {
        export_dir: Some(dir.join("exports")),
        mpi_decisions: Some(dir.join("mpi").join("decisions.ndjson")),
        // What `serve` advertises when its authorization server is on.
        oauth: config
            .security
            .as_ref()
            .filter(|security| security.oauth.is_some() && config.require_auth)
            .map(|_| server::oauth::capability_uris()),
        ..ApiConfig::default()
    };
    let api = Arc::new(Api::new(store.clone(), config_api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let router = server::router(api, config);
    tokio::spawn(async move {
        let _ = server::serve(listener, router, std::future::pending()).await;
    });
    TestServer { base: format!("http://{address}/fhir"), client: reqwest::Client::new(), store }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        if path.is_empty() { self.base.clone() } else { format!("{}/{path}", self.base) }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/fhir+json")
                .body(serde_json::to_vec(body).expect("serialize"));
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, None, &[]).await
    }

    /// Number of versions in the whole store.
    pub fn version_count(&self) -> usize {
        self.store
            .history(
                &store::HistoryScope::System,
                &store::HistoryQuery { count: 1_000_000, ..Default::default() },
            )
            .expect("history")
            .versions
            .len()
    }
}

/// Reads a response body as JSON.
pub async fn json(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts an error response: status, FHIR JSON, an OperationOutcome whose first issue is an
/// error with the given code (any code if empty) and diagnostics containing `needle`. Returns
/// the outcome.
pub async fn expect_outcome(response: reqwest::Response, status: u16, code: &str, needle: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(content_type.starts_with("application/fhir+json"), "content-type {content_type}");
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    let issue = &outcome["issue"][0];
    assert_eq!(issue["severity"], "error", "{outcome}");
    if !code.is_empty() {
        assert_eq!(issue["code"], code, "{outcome}");
    }
    let diagnostics = issue["diagnostics"].as_str().unwrap_or("");
    assert!(diagnostics.contains(needle), "diagnostics {diagnostics:?} lack {needle:?}");
    outcome
}

pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
