//! Changes the command line makes through the API in this process (merges, releases of
//! information): as the named person with an administrator's rights, since the command line
//! holds the data directory; each recorded in the audit trail like a request to the server.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What the API answered.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    /// What the call disclosed, as the audit trail records it.
    pub disclosure: Option<String>,
}

impl Answer {
    /// Prints the OperationOutcome's diagnostics (or those of a Parameters' `outcome`).
    pub(crate) fn print_issues(&self) {
        let issues = match self.body["resourceType"].as_str() {
            Some("Parameters") => self.body["parameter"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "outcome")
                .map(|p| p["resource"]["issue"].clone())
                .unwrap_or_default(),
            _ => self.body["issue"].clone(),
        };
        for issue in issues.as_array().into_iter().flatten() {
            println!("{}", issue["diagnostics"].as_str().unwrap_or(""));
        }
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        if (200..300).contains(&self.status) { ExitCode::SUCCESS } else { ExitCode::from(1) }
    }
}

/// Calls `path` (`Patient/$merge`, `Task/1/$roi-release`) with `body` as `by`, and records
/// the call in the audit trail.
pub(crate) fn call_as(
    store_args: &crate::StoreArgs,
    method: api::Method,
    path: &str,
    body: Option<&Value>,
    by: &str,
) -> Result<Answer> {
    call_as_at(store_args, method, path, body, by, None)
}

/// [`call_as`] with the workflows' clock set to `now` (ms) when given: a deficiency scan or a
/// report as of a past moment.
pub(crate) fn call_as_at(
    store_args: &crate::StoreArgs,
    method: api::Method,
    path: &str,
    body: Option<&Value>,
    by: &str,
    now: Option<i64>,
) -> Result<Answer> {
    if by.trim().is_empty() {
        bail!("--by must name who makes the change");
    }
    let store = store_args.open_existing(crate::SyncMode::Full)?;
    let config = api::ApiConfig {
        mpi_decisions: Some(mpi::review::decisions_path(&store_args.data)),
        roi_fees: workflow::roi::fee::FeePolicy::load(&store_args.data)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ..api::ApiConfig::default()
    };
    let mut api = api::Api::new(store.store(), config);
    if let Some(now) = now {
        api = api.with_clock(std::sync::Arc::new(workflow::FixedClock::at(now)));
    }
    let identity = privacy::Identity {
        user: by.to_string(),
        role: privacy::Role::Admin,
        patient: None,
        scopes: privacy::Role::Admin.scopes(),
        fhir_user: None,
    };
    let request = api::Request {
        method: Some(method),
        base: "urn:chartroom:command-line".into(),
        path: path.to_string(),
        content_type: Some("application/fhir+json".into()),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        caller: Some(std::sync::Arc::new(api::Caller::new(identity))),
        ..Default::default()
    };
    let runtime = crate::runtime()?;
    let response = runtime.block_on(api.handle(&request));
    let audit = privacy::AuditLog::open(&store_args.data)
        .with_context(|| format!("cannot open the audit trail in {}", store_args.data.display()))?;
    let audited = response.audit.clone();
    let access = privacy::Access {
        user: by.to_string(),
        role: "command-line".into(),
        interaction: audited.interaction.to_string(),
        action: audited.action,
        status: response.status,
        outcome_text: audited.disclosure,
        patients: audited.patients,
        resources: std::iter::once(audited.subject).chain(audited.written).collect(),
        ..Default::default()
    };
    let recorded = runtime.block_on(audit.record(access).durable());
    audit.close();
    store.close();
    if !recorded {
        bail!("the change was made but could not be recorded in the audit trail");
    }
    let body = serde_json::from_slice(response.body.as_deref().unwrap_or(b"{}")).unwrap_or(Value::Null);
    Ok(Answer { status: response.status, body, disclosure: response.audit.disclosure.clone() })
}

/// Records in the audit trail a command that read the record directly (an extract), as `by`.
pub(crate) fn record_command(
    data: &std::path::Path,
    by: &str,
    interaction: &str,
    text: String,
) -> Result<()> {
    let runtime = crate::runtime()?;
    let audit = privacy::AuditLog::open(data)
        .with_context(|| format!("cannot open the audit trail in {}", data.display()))?;
    let access = privacy::Access {
        user: by.to_string(),
        role: "command-line".into(),
        interaction: interaction.to_string(),
        action: "E",
        status: 200,
        outcome_text: Some(text),
        ..Default::default()
    };
    let recorded = runtime.block_on(audit.record(access).durable());
    audit.close();
    if !recorded {
        bail!("the extract was written but could not be recorded in the audit trail");
    }
    Ok(())
}
