//! What the de-identification tests share.

use chartroom_deid::{Deidentifier, Report, Settings};
use serde_json::Value;

/// `resources` de-identified under `settings`, the identities learnt from them first, with
/// the report of what was removed.
pub fn deidentify(settings: Settings, resources: &[Value]) -> (Vec<Value>, Report) {
    let mut learning = Deidentifier::learning(settings);
    resources.iter().for_each(|r| learning.learn(r));
    let deidentifier = learning.finish().unwrap();
    let mut report = Report::default();
    let out = resources.iter().filter_map(|r| deidentifier.apply(r, &mut report)).collect();
    (out, report)
}
