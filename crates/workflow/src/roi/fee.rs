//! The fee for a release, by the department's policy.
//!
//! A patient's own access (and their personal representative's) may be charged only a
//! reasonable, cost-based fee (45 CFR 164.524(c)(4)): here HHS's flat-fee option for electronic
//! copies of records kept electronically, or the copying cost of paper pages plus postage.
//! Releases for a provider's treatment or an insurer's payment are not charged. Other
//! requesters, under an authorization, pay the policy's search fee and, on paper, the pages.

use serde_json::Value as Json;

use super::{Delivery, Request, Requester};
use crate::{Error, Result};

/// Where a data directory keeps the department's fee policy.
pub const POLICY_FILE: &str = "roi-fees.json";

/// The department's fees, in its currency.
#[derive(Clone, Debug, PartialEq)]
pub struct FeePolicy {
    /// The whole fee for an electronic copy to the patient.
    pub electronic_flat: f64,
    pub per_page: f64,
    pub postage: f64,
    /// What a third party pays for the search and handling.
    pub third_party_base: f64,
}

impl Default for FeePolicy {
    fn default() -> Self {
        FeePolicy { electronic_flat: 6.50, per_page: 0.25, postage: 1.50, third_party_base: 25.0 }
    }
}

impl FeePolicy {
    /// A policy as JSON: `{"electronicFlat", "perPage", "postage", "thirdPartyBase"}` (amounts
    /// of at least 0; one left out keeps the default).
    pub fn from_json(json: &Json) -> Result<FeePolicy> {
        const KEYS: [&str; 4] = ["electronicFlat", "perPage", "postage", "thirdPartyBase"];
        let Some(object) = json.as_object() else {
            return Err(Error::Invalid(format!(
                "{POLICY_FILE}: an object of amounts ({}) is expected",
                KEYS.join(", ")
            )));
        };
        if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::Invalid(format!(
                "{POLICY_FILE}: '{unknown}' is not one of {}",
                KEYS.join(", ")
            )));
        }
        let default = FeePolicy::default();
        let amount = |key: &str, fallback: f64| -> Result<f64> {
            match &json[key] {
                Json::Null => Ok(fallback),
                value => value.as_f64().filter(|a| (0.0..=100_000.0).contains(a)).ok_or_else(|| {
                    Error::Invalid(format!("{POLICY_FILE}: {key} must be an amount from 0 to 100000"))
                }),
            }
        };
        Ok(FeePolicy {
            electronic_flat: amount("electronicFlat", default.electronic_flat)?,
            per_page: amount("perPage", default.per_page)?,
            postage: amount("postage", default.postage)?,
            third_party_base: amount("thirdPartyBase", default.third_party_base)?,
        })
    }

    /// The policy a data directory keeps (`roi-fees.json`), or the default when it keeps none.
    pub fn load(data_dir: &std::path::Path) -> Result<FeePolicy> {
        let path = data_dir.join(POLICY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let json: Json = serde_json::from_str(&text)
                    .map_err(|e| Error::Invalid(format!("{}: not JSON ({e})", path.display())))?;
                FeePolicy::from_json(&json)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(FeePolicy::default()),
            Err(error) => Err(Error::Invalid(format!("{}: {error}", path.display()))),
        }
    }
}

/// Pages a paper copy of a release of `entries` resources takes: a cover page and one page per
/// five resources.
pub fn estimated_pages(entries: usize) -> u32 {
    1 + entries.div_ceil(5) as u32
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// The fee for `request` released as `pages` pages (on paper) or electronically.
pub fn fee(policy: &FeePolicy, request: &Request, pages: u32) -> f64 {
    let paper = f64::from(pages) * policy.per_page + policy.postage;
    let amount = match (request.requester, request.purpose.as_str()) {
        (Requester::Provider, "TREAT") | (Requester::Insurer, "HPAYMT") => 0.0,
        (Requester::Patient | Requester::PersonalRepresentative, _) => match request.delivery {
            Delivery::Paper => paper,
            Delivery::Fhir | Delivery::Html => policy.electronic_flat,
        },
        _ => policy.third_party_base + if request.delivery == Delivery::Paper { paper } else { 0.0 },
    };
    cents(amount)
}
