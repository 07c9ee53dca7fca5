//! The review queue's decisions: for a pair of registrations, "same person" or "different
//! people", who decided and when. Kept as lines appended to a file (`DIR/mpi/decisions.ndjson`),
//! never rewritten, so the history of every decision stays; the latest decision on a pair
//! counts. A pair decided "different" is never proposed again.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    SamePerson,
    DifferentPeople,
}

impl Verdict {
    pub fn parse(text: &str) -> Result<Verdict> {
        match text {
            "same" | "same-person" => Ok(Verdict::SamePerson),
            "different" | "different-people" => Ok(Verdict::DifferentPeople),
            other => {
                Err(Error::Invalid(format!("decision '{other}' is not same-person or different-people")))
            }
        }
    }
}

/// One decision on a pair of Patients (ids, in either order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub a: String,
    pub b: String,
    pub verdict: Verdict,
    pub by: String,
    pub at: String,
}

/// Where a data directory keeps its decisions.
pub fn decisions_path(data: &Path) -> PathBuf {
    data.join("mpi").join("decisions.ndjson")
}

fn key(a: &str, b: &str) -> (String, String) {
    if a < b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) }
}

/// The decisions of a file, the latest per pair.
#[derive(Clone, Debug, Default)]
pub struct Decisions {
    latest: HashMap<(String, String), Decision>,
}

impl Decisions {
    /// Reads the file (none yet: no decisions); a line that is not a decision is an error
    /// naming it.
    pub fn load(path: &Path) -> Result<Decisions> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Decisions::default()),
            Err(e) => return Err(Error::Input(format!("cannot read {}: {e}", path.display()))),
        };
        let mut decisions = Decisions::default();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let decision: Decision = serde_json::from_str(line).map_err(|e| {
                Error::Input(format!("{} line {}: not a decision: {e}", path.display(), number + 1))
            })?;
            decisions.latest.insert(key(&decision.a, &decision.b), decision);
        }
        Ok(decisions)
    }

    /// The latest decision on a pair.
    pub fn on(&self, a: &str, b: &str) -> Option<&Decision> {
        self.latest.get(&key(a, b))
    }

    /// Every pair's latest decision, latest first.
    pub fn all(&self) -> Vec<&Decision> {
        let mut all: Vec<&Decision> = self.latest.values().collect();
        all.sort_by(|x, y| y.at.cmp(&x.at).then_with(|| x.a.cmp(&y.a)).then_with(|| x.b.cmp(&y.b)));
        all
    }

    /// Whether the pair was decided to be different people (then it is not proposed).
    pub fn different(&self, a: &str, b: &str) -> bool {
        self.on(a, b).is_some_and(|d| d.verdict == Verdict::DifferentPeople)
    }
}

/// Appends a decision to the file (creating it), after checking it names two registrations.
pub fn record(path: &Path, decision: &Decision) -> Result<()> {
    if decision.a.is_empty() || decision.b.is_empty() || decision.a == decision.b {
        return Err(Error::Invalid("a decision is about two different registrations".into()));
    }
    if decision.by.trim().is_empty() {
        return Err(Error::Invalid("a decision says who made it".into()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Input(format!("cannot create {}: {e}", dir.display())))?;
    }
    let line = serde_json::to_string(decision).map_err(|e| Error::Input(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))?;
    writeln!(file, "{line}").map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_decision_on_a_pair_counts_either_way_round() {
        let dir = std::env::temp_dir().join(format!("chartroom-mpi-review-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = decisions_path(&dir);
        assert!(Decisions::load(&path).expect("no file yet").on("a", "b").is_none());
        let decide = |a: &str, b: &str, verdict| Decision {
            a: a.into(),
            b: b.into(),
            verdict,
            by: "hana".into(),
            at: "2026-12-07T10:00:00Z".into(),
        };
        record(&path, &decide("p1", "p2", Verdict::SamePerson)).expect("recorded");
        record(&path, &decide("p2", "p1", Verdict::DifferentPeople)).expect("recorded");
        let decisions = Decisions::load(&path).expect("loaded");
        assert!(decisions.different("p1", "p2"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2, "nothing rewritten");
        assert!(record(&path, &decide("p1", "p1", Verdict::SamePerson)).is_err());
        assert!(
            record(&path, &Decision { by: " ".into(), ..decide("p1", "p3", Verdict::SamePerson) }).is_err()
        );
        assert!(Verdict::parse("maybe").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
