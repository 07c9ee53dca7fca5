//! What every backend's writer decides the same way: preconditions and the errors of
//! conditional operations.

use crate::search::SearchQuery;
use crate::{Error, Precondition, Result};

/// A resource's current row, as the writer sees it inside its transaction.
pub(crate) struct Current {
    pub(crate) rkey: i64,
    pub(crate) version: u64,
    pub(crate) deleted: bool,
    /// The current version's commit sequence (where its body is).
    pub(crate) seq: i64,
    /// The current version's lastUpdated (epoch ms): a new version is never earlier, even
    /// when it comes from a server whose clock is behind the one that wrote this.
    pub(crate) last_updated: i64,
}

impl Current {
    /// The time of a version written at `now` after this one: `now`, or this one's time when
    /// that is later, with its text.
    pub(crate) fn next_time(&self, now: i64, now_text: &str) -> (i64, String) {
        if self.last_updated > now {
            (self.last_updated, fhir::DateTime::from_epoch_millis(self.last_updated).to_string())
        } else {
            (now, now_text.to_string())
        }
    }
}

pub(crate) fn describe(query: &SearchQuery) -> String {
    format!("the search on {}", query.resource_type)
}

pub(crate) fn multiple(query: &SearchQuery, count: usize) -> Error {
    Error::MultipleMatches(format!(
        "{} matches {}{} resources; a conditional operation needs at most one",
        describe(query),
        if count > 1 { "more than " } else { "" },
        count.saturating_sub(1).max(1)
    ))
}

pub(crate) fn check_if_match(
    resource_type: &str,
    id: &str,
    if_match: Option<&Precondition>,
    current: Option<&Current>,
) -> Result<()> {
    let Some(precondition) = if_match else { return Ok(()) };
    let met = match (precondition, current) {
        (Precondition::Exists, Some(current)) => !current.deleted,
        (Precondition::Versions(versions), Some(current)) => versions.contains(&current.version),
        (_, None) => false,
    };
    if met {
        return Ok(());
    }
    Err(Error::VersionConflict {
        resource: format!("{resource_type}/{id}"),
        expected: precondition.to_string(),
        current: match current {
            None => "none (it does not exist)".to_string(),
            Some(c) if c.deleted => format!("{} (deleted)", c.version),
            Some(c) => c.version.to_string(),
        },
    })
}
