//! What the API's workflow tests share: an API over a fresh store (with a clock the test can
//! move), callers of each role, and calls.

#![allow(dead_code)]

use std::sync::Arc;

use chartroom_api::{Api, ApiConfig, Caller, Method, Request, Response};
use privacy::{Identity, Role};
use serde_json::Value;
use store::Store;
use workflow::FixedClock;

pub struct Fixture {
    pub api: Api,
    pub clock: Arc<FixedClock>,
    pub store: Arc<dyn Store>,
    runtime: tokio::runtime::Runtime,
}

pub fn caller(user: &str, role: Role, patient: Option<&str>) -> Arc<Caller> {
    Arc::new(Caller::new(Identity {
        user: user.into(),
        role,
        patient: patient.map(str::to_string),
        scopes: role.scopes(),
        fhir_user: None,
    }))
}

pub fn body(response: &Response) -> Value {
    serde_json::from_slice(response.body.as_deref().unwrap_or(b"null")).unwrap_or(Value::Null)
}

/// The instant (ms) of a dateTime.
pub fn at(text: &str) -> i64 {
    fhir::DateTime::parse(text, fhir::DateTimeKind::DateTime).unwrap().lower_bound_millis()
}

impl Fixture {
    /// An API over an empty store, its workflows' clock at `now` (the system's if `None`).
    pub fn new(name: &str, now: Option<&str>) -> Fixture {
        Fixture::with_config(name, now, ApiConfig::default())
    }

    /// [`Fixture::new`] with the API configured as `config` says.
    pub fn with_config(name: &str, now: Option<&str>, config: ApiConfig) -> Fixture {
        let dir = testkit::temp_dir(name);
        let store = testkit::open_store("support", &dir);
        let clock = Arc::new(FixedClock::at(now.map_or(0, at)));
        let mut api = Api::new(store.clone(), config);
        if now.is_some() {
            api = api.with_clock(clock.clone());
        }
        Fixture { api, clock, store, runtime: tokio::runtime::Builder::new_current_thread().build().unwrap() }
    }

    pub fn call(
        &self,
        caller: Option<&Arc<Caller>>,
        method: Method,
        path: &str,
        payload: Option<&Value>,
    ) -> Response {
        self.call_accepting(caller, method, path, payload, None)
    }

    /// [`Fixture::call`] asking for a media type.
    pub fn call_accepting(
        &self,
        caller: Option<&Arc<Caller>>,
        method: Method,
        path: &str,
        payload: Option<&Value>,
        accept: Option<&str>,
    ) -> Response {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let request = Request {
            method: Some(method),
            base: "http://test/fhir".into(),
            path: path.into(),
            query: query.into(),
            body: payload.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default(),
            caller: caller.cloned(),
            accept: accept.map(str::to_string),
            ..Default::default()
        };
        self.runtime.block_on(self.api.handle(&request))
    }

    /// Stores each resource by PUT as the embedding program.
    pub fn put_all(&self, resources: &[Value]) {
        for resource in resources {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            let response = self.call(None, Method::Put, &path, Some(resource));
            assert!(response.status < 300, "{path}: {}", body(&response));
        }
    }
}
