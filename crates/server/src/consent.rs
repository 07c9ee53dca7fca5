//! Patients' consent directives: active `Consent` resources whose deny provisions (by actor,
//! by resource type, by security label, by purpose of use) withhold resources from reads and
//! searches. A clinician may break the glass (`X-Break-Glass-Reason`): the access is allowed
//! and the audit trail marks it.
//!
//! The deny rules of all patients are read through the API (one paged `Consent` search) and
//! remembered briefly; a write of a Consent through this server forgets them at once. With no
//! directive on record, responses pass untouched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use api::{Api, Method, Request};
use fhir::OperationOutcome;
use privacy::Identity;
use serde_json::{Value, json};

/// How long the rules are remembered (Consents written by import, not through the server,
/// apply within this).
const REMEMBER: Duration = Duration::from_secs(5);

/// One deny provision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DenyRule {
    /// `Practitioner/...` etc.; empty: everyone.
    actors: Vec<String>,
    /// Resource types; empty: all.
    classes: Vec<String>,
    /// Security label codes; empty: any.
    labels: Vec<String>,
    /// Purpose-of-use codes; empty: any.
    purposes: Vec<String>,
}

impl DenyRule {
    fn applies(&self, identity: &Identity, purpose: Option<&str>, resource: &Value) -> bool {
        let actor =
            self.actors.is_empty() || identity.fhir_user.as_ref().is_some_and(|me| self.actors.contains(me));
        let class = self.classes.is_empty()
            || resource["resourceType"].as_str().is_some_and(|t| self.classes.iter().any(|c| c == t));
        let label = self.labels.is_empty()
            || resource["meta"]["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| l["code"].as_str().is_some_and(|code| self.labels.iter().any(|x| x == code)));
        let purpose =
            self.purposes.is_empty() || purpose.is_some_and(|p| self.purposes.iter().any(|x| x == p));
        actor && class && label && purpose
    }
}

/// The deny rules of an active Consent (its provision and nested provisions of type deny).
pub(crate) fn deny_rules(consent: &Value) -> Vec<DenyRule> {
    fn codes(list: &Value, field: &str) -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let value = if field.is_empty() { item } else { &item[field] };
                value["code"].as_str().or_else(|| value.as_str()).map(str::to_string)
            })
            .collect()
    }
    fn walk(provision: &Value, rules: &mut Vec<DenyRule>) {
        if provision["type"] == "deny" {
            rules.push(DenyRule {
                actors: provision["actor"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["reference"]["reference"].as_str().map(str::to_string))
                    .collect(),
                classes: codes(&provision["class"], ""),
                labels: codes(&provision["securityLabel"], ""),
                purposes: codes(&provision["purpose"], ""),
            });
        }
        for nested in provision["provision"].as_array().into_iter().flatten() {
            walk(nested, rules);
        }
    }
    let mut rules = Vec::new();
    if consent["status"] == "active" {
        walk(&consent["provision"], &mut rules);
    }
    rules
}

/// `Patient/...` → the deny rules of their active directives.
type RulesByPatient = HashMap<String, Vec<DenyRule>>;

/// The deny rules of every patient with an active directive, read in one search and
/// refreshed after [`REMEMBER`] (or at once after a Consent is written through the server).
#[derive(Default)]
pub(crate) struct Consents {
    snapshot: RwLock<Option<(Arc<RulesByPatient>, Instant)>>,
}

impl Consents {
    /// Forgets the rules (a Consent was written).
    pub(crate) fn forget(&self) {
        if let Ok(mut snapshot) = self.snapshot.write() {
            *snapshot = None;
        }
    }

    async fn rules(&self, api: &Api, base: &str) -> Arc<RulesByPatient> {
        if let Ok(snapshot) = self.snapshot.read()
            && let Some((rules, when)) = snapshot.as_ref()
            && when.elapsed() < REMEMBER
        {
            return rules.clone();
        }
        let mut rules: HashMap<String, Vec<DenyRule>> = HashMap::new();
        let mut query = "status=active&_count=1000".to_string();
        // Page through every active Consent.
        for _ in 0..1000 {
            let request = Request {
                method: Some(Method::Get),
                base: base.to_string(),
                path: "Consent".into(),
                query: query.clone(),
                if_match: None,
                if_none_match: None,
                if_modified_since: None,
                if_none_exist: None,
                prefer: None,
                body: Vec::new(),
            };
            let response = api.handle(&request).await;
            let bundle: Value =
                response.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let consent = &entry["resource"];
                if let Some(patient) = consent["patient"]["reference"].as_str() {
                    let found = deny_rules(consent);
                    if !found.is_empty() {
                        rules.entry(patient.to_string()).or_default().extend(found);
                    }
                }
            }
            let next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .and_then(|url| url.split_once('?').map(|(_, q)| q.to_string()));
            match next {
                Some(next) => query = next,
                None => break,
            }
        }
        let rules = Arc::new(rules);
        if let Ok(mut snapshot) = self.snapshot.write() {
            *snapshot = Some((rules.clone(), Instant::now()));
        }
        rules
    }

    /// Whether any active consent directive is on record (for `patient` only, when given).
    pub(crate) async fn any_directive(&self, api: &Api, base: &str, patient: Option<&str>) -> bool {
        let rules = self.rules(api, base).await;
        match patient {
            Some(patient) => rules.contains_key(&format!("Patient/{patient}")),
            None => !rules.is_empty(),
        }
    }

    /// Applies the consent directives of the patients a response is about.
    pub(crate) async fn enforce(
        &self,
        api: &Api,
        base: &str,
        identity: &Identity,
        purpose: Option<&str>,
        body: &[u8],
    ) -> Verdict {
        let rules_of = self.rules(api, base).await;
        // Most records carry no directive: nothing to read then.
        if rules_of.is_empty() {
            return Verdict::Unchanged;
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Verdict::Unchanged };
        let denied = |resource: &Value| {
            patient_of(resource)
                .and_then(|p| rules_of.get(&p))
                .is_some_and(|rules| rules.iter().any(|r| r.applies(identity, purpose, resource)))
        };
        if value["resourceType"] != "Bundle" {
            return if denied(&value) { Verdict::Withheld } else { Verdict::Unchanged };
        }
        let Some(entries) = value.get_mut("entry").and_then(Value::as_array_mut) else {
            return Verdict::Unchanged;
        };
        let before = entries.len();
        entries.retain(|entry| !denied(&entry["resource"]));
        let withheld = before - entries.len();
        if withheld == 0 {
            return Verdict::Unchanged;
        }
        entries.push(json!({ "fullUrl": "urn:chartroom:withheld-by-consent",
            "resource": OperationOutcome::information(format!(
                "{withheld} entries withheld by the patients' consent directives; a clinician may break the glass with X-Break-Glass-Reason"
            )).to_json(),
            "search": { "mode": "outcome" } }));
        if let Some(object) = value.as_object_mut() {
            object.remove("total");
        }
        serde_json::to_vec(&value).map_or(Verdict::Withheld, Verdict::Filtered)
    }
}

/// What the directives make of a response.
pub(crate) enum Verdict {
    Unchanged,
    /// A Bundle with entries withheld (and an OperationOutcome entry saying so).
    Filtered(Vec<u8>),
    /// The whole response is withheld.
    Withheld,
}

/// The patient a resource is about (`Patient/id`).
fn patient_of(resource: &Value) -> Option<String> {
    if resource["resourceType"] == "Patient" {
        return resource["id"].as_str().map(|id| format!("Patient/{id}"));
    }
    fhir::patient_reference(resource).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_provisions_become_rules() {
        let consent = json!({
            "resourceType": "Consent", "status": "active",
            "provision": { "type": "permit", "provision": [
                { "type": "deny", "actor": [{ "role": { "text": "x" }, "reference": { "reference": "Practitioner/p2" } }],
                  "class": [{ "system": "http://hl7.org/fhir/resource-types", "code": "Observation" }] },
                { "type": "deny", "securityLabel": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY" }] }
            ] }
        });
        let rules = deny_rules(&consent);
        assert_eq!(rules.len(), 2);
        let doctor = |who: &str| Identity {
            user: "u".into(),
            role: privacy::Role::Clinician,
            patient: None,
            scopes: privacy::Role::Clinician.scopes(),
            fhir_user: Some(who.into()),
        };
        let observation = json!({ "resourceType": "Observation", "subject": { "reference": "Patient/a" } });
        assert!(rules[0].applies(&doctor("Practitioner/p2"), None, &observation));
        assert!(!rules[0].applies(&doctor("Practitioner/p1"), None, &observation));
        let labelled = json!({ "resourceType": "Condition", "meta": { "security": [{ "code": "PSY" }] } });
        assert!(rules[1].applies(&doctor("Practitioner/p1"), None, &labelled));
        assert!(!rules[1].applies(&doctor("Practitioner/p1"), None, &observation));
        assert!(deny_rules(&json!({ "status": "inactive", "provision": { "type": "deny" } })).is_empty());
    }
}
