//! De-identified extracts of the record.
//!
//! Two profiles, both applied to resources on their way out (an extract, a bulk export), never
//! to the stored record:
//!
//! - [`Profile::SafeHarbor`]: HIPAA's Safe Harbor method (45 CFR 164.514(b)(2)). All 18
//!   identifier classes are removed or generalized, from structured elements (by their FHIR
//!   type: `HumanName`, `Address`, `ContactPoint`, `Identifier`, dates, `Attachment`...) and
//!   from free text. ZIP codes keep three digits (`000` for the restricted prefixes), dates keep
//!   their year, ages of 90 and over become one group. Resource ids become codes drawn from a
//!   key made for the one extract and then forgotten, so no code can be traced back or linked
//!   across extracts (164.514(c)).
//! - [`Profile::DateShift`]: for research that needs intervals. Direct identifiers go as in
//!   Safe Harbor, but every date of a patient moves by that patient's own secret offset (the
//!   same for the same patient in every run), and ids become stable keyed pseudonyms. The key
//!   is kept beside the record ([`Key::load_or_create`]) and never leaves it.
//!
//! Which element is which identifier class is data ([`rules`]); what each extract removed is
//! counted per class in a [`Report`] that goes with it.
//!
//! Invariants:
//! - A string value is kept only if its element type carries no identity (codes, uris, ids of
//!   definitions) or it went through the text scrubber.
//! - The identities known to the record (names, numbers, addresses of patients, relatives and
//!   staff) are learnt before any resource goes out ([`Deidentifier::learn`]), so free text is
//!   scrubbed of them even where no pattern would find them.

mod classes;
mod dates;
pub mod extract;
mod key;
pub mod rules;
mod text;
mod walk;

pub use classes::{IdentifierClass, Report};
pub use key::Key;
pub use text::DateRule;
pub use walk::{Deidentifier, Learning};

use std::collections::BTreeSet;

/// Why an extract could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown de-identification profile `{0}` (safe-harbor or date-shift)")]
    UnknownProfile(String),
    #[error("the de-identification key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the restricted ZIP prefixes: {0}")]
    RestrictedZip(String),
    #[error("no randomness for a key: {0}")]
    Random(String),
    #[error("the matcher of known identities could not be built: {0}")]
    Matcher(String),
    #[error("reading the record: {0}")]
    Store(String),
    #[error("writing the extract: {0}")]
    Output(String),
}

/// The record's de-identification key, in its data directory.
pub const KEY_FILE: &str = "deid.key";

/// The count of what an extract removed, beside its files.
pub const REPORT_FILE: &str = "deid-report.json";

/// Which de-identification method an extract follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    SafeHarbor,
    DateShift,
}

impl Profile {
    /// The profile's name on the command line and in `_deidentify=`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::SafeHarbor => "safe-harbor",
            Profile::DateShift => "date-shift",
        }
    }

    pub fn parse(name: &str) -> Result<Profile, Error> {
        match name {
            "safe-harbor" | "safeharbor" | "safe_harbor" => Ok(Profile::SafeHarbor),
            "date-shift" | "dateshift" | "date_shift" => Ok(Profile::DateShift),
            other => Err(Error::UnknownProfile(other.to_string())),
        }
    }
}

/// The three-digit ZIP prefixes of 20,000 or fewer people (2000 Census) that HHS's
/// de-identification guidance says become `000`; replace with [`parse_restricted_zip3`] when
/// newer Census figures apply.
pub const RESTRICTED_ZIP3_HHS_2000: &[&str] = &[
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884",
    "890", "893",
];

/// Reads a restricted-prefix list: one prefix per line, or a TSV whose first column is the
/// prefix (a header line and `#` comments are skipped).
pub fn parse_restricted_zip3(text: &str) -> Result<BTreeSet<String>, Error> {
    let mut prefixes = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let first = line.split('\t').next().unwrap_or("").trim();
        if first.is_empty()
            || first.starts_with('#')
            || (number == 0 && !first.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if first.len() != 3 || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::RestrictedZip(format!(
                "line {}: `{first}` is not a three-digit ZIP prefix",
                number + 1
            )));
        }
        prefixes.insert(first.to_string());
    }
    Ok(prefixes)
}

/// What an extract is made with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub profile: Profile,
    /// Three-digit ZIP prefixes that become `000`.
    pub restricted_zip3: BTreeSet<String>,
    /// The key of pseudonyms and date shifts. Safe Harbor: a fresh random key per extract.
    pub key: Key,
    /// The extract's date (`YYYY-MM-DD`), against which living patients' ages are counted.
    pub as_of: String,
}

impl Settings {
    /// Safe Harbor with the HHS list and a key of its own.
    pub fn safe_harbor(as_of: &str) -> Result<Settings, Error> {
        Ok(Settings {
            profile: Profile::SafeHarbor,
            restricted_zip3: RESTRICTED_ZIP3_HHS_2000.iter().map(|p| p.to_string()).collect(),
            key: Key::random()?,
            as_of: as_of.to_string(),
        })
    }

    /// The date-shift profile with the record's key.
    pub fn date_shift(key: Key, as_of: &str) -> Settings {
        Settings {
            profile: Profile::DateShift,
            restricted_zip3: RESTRICTED_ZIP3_HHS_2000.iter().map(|p| p.to_string()).collect(),
            key,
            as_of: as_of.to_string(),
        }
    }
}
