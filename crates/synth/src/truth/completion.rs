//! Record-completion deficiencies: a document a finished encounter owes, taken away or left
//! unsigned, so the completion rules and the delinquency report can be measured. Each kind
//! is named by the rule that should find it. Only documents already due on the as-of date are
//! touched, by the default policy: a discharge summary 14 days after discharge, a history and
//! physical 24 hours after admission, an operative report 24 hours after surgery, a signature
//! 72 hours after the note.

use serde_json::{Value, json};

use crate::calendar::{DAY, TODAY};
use crate::rng::Rng;
use crate::{Error, Sink};

const HOUR: i64 = 3600;
const DISCHARGE_SUMMARY_DUE: i64 = 14 * DAY;
const HISTORY_PHYSICAL_DUE: i64 = 24 * HOUR;
const OPERATIVE_REPORT_DUE: i64 = 24 * HOUR;
const SIGNATURE_DUE: i64 = 72 * HOUR;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deficiency {
    DischargeSummary,
    HistoryAndPhysical,
    OperativeReport,
    UnsignedNote,
}

impl Deficiency {
    pub(crate) const ALL: [Deficiency; 4] = [
        Deficiency::DischargeSummary,
        Deficiency::HistoryAndPhysical,
        Deficiency::OperativeReport,
        Deficiency::UnsignedNote,
    ];

    /// The completion rule that finds it.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Deficiency::DischargeSummary => "discharge-summary",
            Deficiency::HistoryAndPhysical => "history-and-physical",
            Deficiency::OperativeReport => "operative-report",
            Deficiency::UnsignedNote => "unsigned-note",
        }
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Deficiency::DischargeSummary => "an inpatient stay's discharge summary removed",
            Deficiency::HistoryAndPhysical => "an inpatient stay's history and physical removed",
            Deficiency::OperativeReport => "a surgical procedure's operative report removed",
            Deficiency::UnsignedNote => {
                "a visit's note left unsigned: preliminary without an authenticator, or final without one"
            }
        }
    }

    pub(crate) fn for_turn(turn: usize) -> Deficiency {
        Deficiency::ALL[turn % Deficiency::ALL.len()]
    }
}

/// Seconds since the epoch of a generated dateTime (`YYYY-MM-DDThh:mm:ssZ`).
fn seconds(text: &str) -> Option<i64> {
    let day = crate::calendar::day_of(text.get(..10)?)?;
    let clock = text.get(11..19)?;
    let mut parts = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(day * DAY + h * HOUR + m * 60 + s)
}

fn reference_id<'a>(reference: &'a Value, prefix: &str) -> Option<&'a str> {
    reference["reference"].as_str()?.strip_prefix(prefix)
}

/// Plants a deficiency of `kind` (or, when the record has nothing it applies to, of the next
/// kind that applies) in the patient's record, and returns its ground-truth line.
pub(crate) fn plant(kind: Deficiency, sink: &mut Sink, rng: &mut Rng) -> Result<Option<Value>, Error> {
    let kinds = Deficiency::ALL.len();
    let first = Deficiency::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    for step in 0..kinds {
        let kind = Deficiency::ALL[(first + step) % kinds];
        if let Some(line) = apply(kind, sink, rng)? {
            return Ok(Some(line));
        }
    }
    Ok(None)
}

fn apply(kind: Deficiency, sink: &mut Sink, rng: &mut Rng) -> Result<Option<Value>, Error> {
    let encounters = sink.parsed("Encounter")?;
    let documents = sink.parsed("DocumentReference")?;
    let now = TODAY * DAY;
    let encounter = |id: &str| encounters.iter().find(|e| e["id"] == id && e["status"] == "finished");
    let prefix = match kind {
        Deficiency::DischargeSummary => "doc-",
        Deficiency::HistoryAndPhysical => "hp-",
        Deficiency::OperativeReport => "op-",
        Deficiency::UnsignedNote => "",
    };
    let candidates: Vec<(usize, &Value, &Value)> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d["id"].as_str().is_some_and(|id| id.starts_with(prefix)) && d["docStatus"] == "final"
        })
        .filter_map(|(at, d)| {
            let encounter = encounter(reference_id(&d["context"]["encounter"][0], "Encounter/")?)?;
            let inpatient = encounter["class"]["code"] == "IMP";
            let start = seconds(encounter["period"]["start"].as_str()?)?;
            let end = seconds(encounter["period"]["end"].as_str()?)?;
            let written = seconds(d["date"].as_str()?)?;
            let due = match kind {
                Deficiency::DischargeSummary => (d["type"]["coding"][0]["code"] == "18842-5" && inpatient)
                    .then_some(end + DISCHARGE_SUMMARY_DUE)?,
                Deficiency::HistoryAndPhysical => start + HISTORY_PHYSICAL_DUE,
                Deficiency::OperativeReport => written + OPERATIVE_REPORT_DUE,
                Deficiency::UnsignedNote => written.max(end) + SIGNATURE_DUE,
            };
            (due <= now).then_some((at, d, encounter))
        })
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    let (at, document, encounter) = candidates[rng.below(candidates.len() as u64) as usize];
    let encounter_id = encounter["id"].as_str().unwrap_or_default().to_string();
    let patient = document["subject"]["reference"].clone();
    let (focus, responsible, done) = match kind {
        Deficiency::DischargeSummary | Deficiency::HistoryAndPhysical => (
            format!("Encounter/{encounter_id}"),
            encounter["participant"][0]["individual"]["reference"].clone(),
            "removed",
        ),
        Deficiency::OperativeReport => (
            document["context"]["related"][0]["reference"].as_str().unwrap_or_default().to_string(),
            document["author"][0]["reference"].clone(),
            "removed",
        ),
        Deficiency::UnsignedNote => (
            format!("DocumentReference/{}", document["id"].as_str().unwrap_or_default()),
            document["author"][0]["reference"].clone(),
            "left unsigned",
        ),
    };
    let line = json!({
        "rule": kind.id(), "focus": focus, "encounter": format!("Encounter/{encounter_id}"),
        "patient": patient, "responsible": responsible,
        "document": format!("DocumentReference/{}", document["id"].as_str().unwrap_or_default()),
        "done": done,
    });
    if kind == Deficiency::UnsignedNote {
        let mut unsigned = document.clone();
        if let Some(object) = unsigned.as_object_mut() {
            object.remove("authenticator");
            if rng.chance(0.5) {
                object.insert("docStatus".into(), json!("preliminary"));
            }
        }
        sink.replace("DocumentReference", at, &unsigned)?;
    } else {
        sink.remove("DocumentReference", at)?;
    }
    Ok(Some(line))
}
