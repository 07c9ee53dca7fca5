//! Record completion: the documents a finished encounter owes, who owes them, and how late.
//!
//! - **Deficiency rules** ([`find`]) over finished encounters, each due a set time after the
//!   event, by the medical staff's rules ([`Policy`]; the defaults follow the CMS conditions of
//!   participation and common bylaws):
//!   - `discharge-summary`: an inpatient stay without a discharge summary (LOINC 18842-5 or
//!     11490-0) [`Policy::discharge_summary_days`] after discharge (482.24(c)(4)(vii));
//!   - `history-and-physical`: an inpatient stay without a history and physical (34117-2,
//!     11492-6) [`Policy::history_physical_hours`] after admission (482.22(c)(5)(i));
//!   - `operative-report`: a surgical procedure (SNOMED category 387713003, or an ICD-10-PCS
//!     code of the Medical and Surgical section) without an operative note (11504-8, 34874-8)
//!     for it or its encounter [`Policy::operative_report_hours`] after it ended
//!     (482.51(b)(6));
//!   - `unsigned-note`: a current note of a finished encounter that is not final or has no
//!     authenticator [`Policy::signature_hours`] after it was written or the encounter ended,
//!     whichever is later (482.24(c)(1)).
//!
//!   A document counts only while it is `current`: one entered in error or superseded is not
//!   the record's.
//! - **Who owes it:** the note's author for a signature, the surgeon (the procedure's first
//!   performer) for an operative report, and the attending (the encounter's `ATND` participant,
//!   else its first) for the rest.
//! - **Deficiencies as Tasks** ([`sync`]): each open deficiency is a `Task` (code
//!   `record-deficiency`, `owner` the clinician, `focus` what lacks the document, `encounter`,
//!   `authoredOn` when it fell due), with an id derived from its rule and focus, so running the
//!   rules again opens nothing twice; a Task whose deficiency is gone (the document arrived, the
//!   note was signed) is completed with the time it was seen closed; one now owed by someone
//!   else (the attending changed) gets its new owner.
//! - **The delinquency report** ([`report`]): per clinician, the open deficiencies by age and
//!   the records still incomplete [`Policy::delinquent_days`] after discharge (delinquent); the
//!   chart completion rate over the encounters discharged in a period, and the delinquency rate
//!   as the Joint Commission counts it (delinquent records over the average monthly discharges).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Value as Json, json};
use store::Store;

use crate::{DAY, HOUR, Result, date_time, instant, instant_after};

/// The Task code of a deficiency, and the name of its input carrying the rule.
pub const DEFICIENCY_CODE: &str = "record-deficiency";
pub const INPUT_SYSTEM: &str = "https://chartroom.dev/fhir/CodeSystem/completion-input";

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const ICD10_PCS: &[&str] =
    &["http://www.cms.gov/Medicare/Coding/ICD10", "http://hl7.org/fhir/sid/icd-10-pcs"];
const DISCHARGE_SUMMARY: &[&str] = &["18842-5", "11490-0"];
const HISTORY_AND_PHYSICAL: &[&str] = &["34117-2", "11492-6"];
const OPERATIVE_NOTE: &[&str] = &["11504-8", "34874-8"];
const INPATIENT: &[&str] = &["IMP", "ACUTE", "NONAC"];

/// The deficiency rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    DischargeSummary,
    HistoryAndPhysical,
    OperativeReport,
    UnsignedNote,
}

impl Rule {
    pub const ALL: [Rule; 4] =
        [Rule::DischargeSummary, Rule::HistoryAndPhysical, Rule::OperativeReport, Rule::UnsignedNote];

    pub fn code(self) -> &'static str {
        match self {
            Rule::DischargeSummary => "discharge-summary",
            Rule::HistoryAndPhysical => "history-and-physical",
            Rule::OperativeReport => "operative-report",
            Rule::UnsignedNote => "unsigned-note",
        }
    }

    pub fn parse(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == code)
    }

    /// What is owed, in words.
    pub fn words(self) -> &'static str {
        match self {
            Rule::DischargeSummary => "discharge summary missing",
            Rule::HistoryAndPhysical => "history and physical missing",
            Rule::OperativeReport => "operative report missing",
            Rule::UnsignedNote => "note not signed",
        }
    }
}

/// The medical staff's completion rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Days after discharge a discharge summary is due.
    pub discharge_summary_days: i64,
    /// Hours after admission a history and physical is due.
    pub history_physical_hours: i64,
    /// Hours after a surgical procedure ends its operative report is due.
    pub operative_report_hours: i64,
    /// Hours after a note is written it is due signed.
    pub signature_hours: i64,
    /// Days after discharge an incomplete record is delinquent.
    pub delinquent_days: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            discharge_summary_days: 14,
            history_physical_hours: 24,
            operative_report_hours: 24,
            signature_hours: 72,
            delinquent_days: 30,
        }
    }
}

/// One document a finished encounter owes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deficiency {
    pub rule: Rule,
    /// What lacks the document: `Encounter/..`, `Procedure/..` or the unsigned
    /// `DocumentReference/..`.
    pub focus: String,
    /// The encounter's id.
    pub encounter: String,
    /// The Patient id.
    pub patient: String,
    /// Who owes it: `Practitioner/..`, if the record names one.
    pub responsible: Option<String>,
    /// When it fell due (ms).
    pub due: i64,
    /// When the encounter ended (ms).
    pub discharged: i64,
    /// The security labels (system, code) of what lacks the document, which its Task carries
    /// so it is seen only by those who may see that.
    pub labels: Vec<(String, String)>,
}

impl Deficiency {
    /// Its Task's id: the same deficiency always has the same one.
    pub fn task_id(&self) -> String {
        task_id(self.rule, &self.focus)
    }

    /// Whether the record is past the delinquency line at `now`.
    pub fn delinquent(&self, policy: &Policy, now: i64) -> bool {
        now - self.discharged > policy.delinquent_days * DAY
    }
}

/// The id of the Task of a deficiency by `rule` on `focus`.
pub fn task_id(rule: Rule, focus: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike the standard hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rule.code().bytes().chain([b'|']).chain(focus.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("deficiency-{hash:016x}")
}

fn codes<'a>(concept: &'a Json, system: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| c["system"] == system)
        .filter_map(|c| c["code"].as_str())
}

fn id_of<'a>(reference: &'a Json, resource_type: &str) -> Option<&'a str> {
    reference["reference"].as_str()?.strip_prefix(resource_type)?.strip_prefix('/')
}

fn practitioner(reference: &Json) -> Option<String> {
    id_of(reference, "Practitioner").map(|id| format!("Practitioner/{id}"))
}

fn labels(json: &Json) -> Vec<(String, String)> {
    json["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["system"].as_str()?.to_string(), l["code"].as_str()?.to_string())))
        .collect()
}

struct Encounter {
    labels: Vec<(String, String)>,
    patient: String,
    inpatient: bool,
    start: i64,
    end: i64,
    attending: Option<String>,
}

struct Procedure {
    labels: Vec<(String, String)>,
    id: String,
    encounter: String,
    end: i64,
    surgeon: Option<String>,
}

struct Document {
    labels: Vec<(String, String)>,
    id: String,
    loinc: Vec<String>,
    encounters: Vec<String>,
    related: Vec<String>,
    signed: bool,
    written: Option<i64>,
    author: Option<String>,
}

/// What the rules read of the record.
struct Record {
    encounters: HashMap<String, Encounter>,
    procedures: Vec<Procedure>,
    documents: Vec<Document>,
}

fn surgical(procedure: &Json) -> bool {
    let by_category =
        procedure["category"].is_object() && codes(&procedure["category"], SNOMED).any(|c| c == "387713003");
    let by_code = ICD10_PCS
        .iter()
        .any(|system| codes(&procedure["code"], system).any(|c| c.len() == 7 && c.starts_with('0')));
    by_category || by_code
}

fn read_record(store: &dyn Store) -> Result<Record> {
    let mut encounters = HashMap::new();
    store.scan_type("Encounter", None, &mut |_, id, body| {
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        if json["status"] != "finished" {
            return Ok(());
        }
        let (Some(patient), Some(start), Some(end)) = (
            id_of(&json["subject"], "Patient"),
            json["period"]["start"].as_str().and_then(instant),
            json["period"]["end"].as_str().and_then(instant),
        ) else {
            return Ok(());
        };
        let participants = json["participant"].as_array().map(Vec::as_slice).unwrap_or_default();
        let attending = participants
            .iter()
            .find(|p| {
                p["type"].as_array().into_iter().flatten().any(|t| {
                    codes(t, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType")
                        .any(|c| c == "ATND")
                })
            })
            .or(participants.first())
            .and_then(|p| practitioner(&p["individual"]));
        let inpatient = json["class"]["code"].as_str().is_some_and(|c| INPATIENT.contains(&c));
        encounters.insert(
            id.to_string(),
            Encounter {
                labels: labels(&json),
                patient: patient.to_string(),
                inpatient,
                start,
                end,
                attending,
            },
        );
        Ok(())
    })?;
    let mut procedures = Vec::new();
    store.scan_type("Procedure", None, &mut |_, id, body| {
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        if json["status"] != "completed" || !surgical(&json) {
            return Ok(());
        }
        let Some(encounter) = id_of(&json["encounter"], "Encounter") else { return Ok(()) };
        let end = json["performedPeriod"]["end"]
            .as_str()
            .or(json["performedPeriod"]["start"].as_str())
            .or(json["performedDateTime"].as_str())
            .and_then(instant);
        let Some(end) = end else { return Ok(()) };
        let surgeon =
            json["performer"].as_array().and_then(|p| p.first()).and_then(|p| practitioner(&p["actor"]));
        procedures.push(Procedure {
            labels: labels(&json),
            id: id.to_string(),
            encounter: encounter.to_string(),
            end,
            surgeon,
        });
        Ok(())
    })?;
    let mut documents = Vec::new();
    store.scan_type("DocumentReference", None, &mut |_, id, body| {
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        if json["status"] != "current" {
            return Ok(());
        }
        let references = |element: &Json| -> Vec<String> {
            element
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["reference"].as_str().map(str::to_string))
                .collect()
        };
        let encounters: Vec<String> = references(&json["context"]["encounter"])
            .into_iter()
            .filter_map(|r| r.strip_prefix("Encounter/").map(str::to_string))
            .collect();
        let signed = matches!(json["docStatus"].as_str(), Some("final" | "amended"))
            && json["authenticator"]["reference"].as_str().is_some_and(|r| !r.is_empty());
        documents.push(Document {
            labels: labels(&json),
            id: id.to_string(),
            loinc: codes(&json["type"], LOINC).map(str::to_string).collect(),
            encounters,
            related: references(&json["context"]["related"]),
            signed,
            written: json["date"].as_str().and_then(instant),
            author: json["author"].as_array().and_then(|a| a.iter().find_map(practitioner)),
        });
        Ok(())
    })?;
    Ok(Record { encounters, procedures, documents })
}

/// The deficiencies open at `now`, by rule, then focus.
pub fn find(store: &dyn Store, policy: &Policy, now: i64) -> Result<Vec<Deficiency>> {
    let record = read_record(store)?;
    // Which kinds of document each encounter, and each procedure, has.
    let mut has: HashSet<(&str, &str)> = HashSet::new();
    for document in &record.documents {
        for code in &document.loinc {
            for encounter in &document.encounters {
                has.insert((encounter.as_str(), code.as_str()));
            }
            for related in &document.related {
                has.insert((related.as_str(), code.as_str()));
            }
        }
    }
    let documented = |key: &str, kinds: &[&str]| kinds.iter().any(|k| has.contains(&(key, *k)));
    let mut found = Vec::new();
    // The Task carries the labels of the encounter and of what lacks the document.
    let mut owe = |rule: Rule,
                   focus: String,
                   encounter_id: &str,
                   encounter: &Encounter,
                   responsible,
                   due: i64,
                   own_labels: &[(String, String)]| {
        if due <= now {
            let mut labels: Vec<(String, String)> =
                encounter.labels.iter().chain(own_labels).cloned().collect();
            labels.sort();
            labels.dedup();
            found.push(Deficiency {
                rule,
                focus,
                encounter: encounter_id.to_string(),
                patient: encounter.patient.clone(),
                responsible,
                due,
                discharged: encounter.end,
                labels,
            });
        }
    };
    for (id, encounter) in &record.encounters {
        if !encounter.inpatient {
            continue;
        }
        if !documented(id, DISCHARGE_SUMMARY) {
            let due = encounter.end + policy.discharge_summary_days * DAY;
            owe(
                Rule::DischargeSummary,
                format!("Encounter/{id}"),
                id,
                encounter,
                encounter.attending.clone(),
                due,
                &[],
            );
        }
        if !documented(id, HISTORY_AND_PHYSICAL) {
            let due = encounter.start + policy.history_physical_hours * HOUR;
            owe(
                Rule::HistoryAndPhysical,
                format!("Encounter/{id}"),
                id,
                encounter,
                encounter.attending.clone(),
                due,
                &[],
            );
        }
    }
    for procedure in &record.procedures {
        let Some(encounter) = record.encounters.get(&procedure.encounter) else { continue };
        let focus = format!("Procedure/{}", procedure.id);
        if documented(&focus, OPERATIVE_NOTE) || documented(&procedure.encounter, OPERATIVE_NOTE) {
            continue;
        }
        let due = procedure.end + policy.operative_report_hours * HOUR;
        let surgeon = procedure.surgeon.clone().or(encounter.attending.clone());
        owe(Rule::OperativeReport, focus, &procedure.encounter, encounter, surgeon, due, &procedure.labels);
    }
    for document in record.documents.iter().filter(|d| !d.signed) {
        let Some((encounter_id, encounter)) =
            document.encounters.iter().find_map(|e| record.encounters.get_key_value(e))
        else {
            continue;
        };
        let written = document.written.unwrap_or(encounter.end).max(encounter.end);
        let due = written + policy.signature_hours * HOUR;
        let author = document.author.clone().or(encounter.attending.clone());
        owe(
            Rule::UnsignedNote,
            format!("DocumentReference/{}", document.id),
            encounter_id,
            encounter,
            author,
            due,
            &document.labels,
        );
    }
    found.sort();
    Ok(found)
}

/// A deficiency as its open Task.
pub fn to_task(deficiency: &Deficiency) -> Json {
    let mut task = json!({
        "resourceType": "Task",
        "id": deficiency.task_id(),
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": { "coding": [{ "system": crate::roi::WORKFLOW_SYSTEM, "code": DEFICIENCY_CODE }] },
        "description": deficiency.rule.words(),
        "focus": { "reference": deficiency.focus },
        "for": { "reference": format!("Patient/{}", deficiency.patient) },
        "encounter": { "reference": format!("Encounter/{}", deficiency.encounter) },
        "authoredOn": date_time(deficiency.due),
        "executionPeriod": { "start": date_time(deficiency.due) },
        "input": [{
            "type": { "coding": [{ "system": INPUT_SYSTEM, "code": "rule" }] },
            "valueCode": deficiency.rule.code(),
        }],
    });
    if let Some(owner) = &deficiency.responsible {
        task["owner"] = json!({ "reference": owner });
    }
    if !deficiency.labels.is_empty() {
        let labels: Vec<Json> = deficiency
            .labels
            .iter()
            .map(|(system, code)| json!({ "system": system, "code": code }))
            .collect();
        task["meta"] = json!({ "security": labels });
    }
    task
}

/// An open deficiency Task as it is stored.
#[derive(Clone, Debug)]
pub struct OpenTask {
    pub id: String,
    pub version: u64,
    pub task: Json,
}

/// The deficiency Tasks that are open, by id.
pub fn open_tasks(store: &dyn Store) -> Result<BTreeMap<String, OpenTask>> {
    let mut open = BTreeMap::new();
    store.scan_type("Task", None, &mut |_, id, body| {
        let Ok(task) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        let ours = codes(&task["code"], crate::roi::WORKFLOW_SYSTEM).any(|c| c == DEFICIENCY_CODE);
        if ours && matches!(task["status"].as_str(), Some("requested" | "in-progress")) {
            let version = task["meta"]["versionId"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
            open.insert(id.to_string(), OpenTask { id: id.to_string(), version, task });
        }
        Ok(())
    })?;
    Ok(open)
}

/// What running the rules changes in the Tasks.
#[derive(Debug, Default)]
pub struct Sync {
    /// Deficiencies found with no open Task: their new Tasks.
    pub open: Vec<Json>,
    /// Open Tasks whose deficiency is gone: (their stored version, the completed Task).
    pub close: Vec<(u64, Json)>,
    /// Open Tasks whose deficiency is now owed by someone else: (stored version, the Task with
    /// its new owner).
    pub reassign: Vec<(u64, Json)>,
    /// Every deficiency open at `now`.
    pub deficiencies: Vec<Deficiency>,
}

/// The rules run at `now` against the open Tasks: which to open and which to close.
pub fn sync(store: &dyn Store, policy: &Policy, now: i64) -> Result<Sync> {
    let deficiencies = find(store, policy, now)?;
    let tasks = open_tasks(store)?;
    let wanted: BTreeSet<String> = deficiencies.iter().map(Deficiency::task_id).collect();
    let open = deficiencies.iter().filter(|d| !tasks.contains_key(&d.task_id())).map(to_task).collect();
    let close = tasks
        .values()
        .filter(|t| !wanted.contains(&t.id))
        .map(|t| {
            let mut task = t.task.clone();
            task["status"] = json!("completed");
            task["lastModified"] = json!(date_time(now));
            if !task["executionPeriod"].is_object() {
                task["executionPeriod"] = json!({});
            }
            task["executionPeriod"]["end"] = json!(date_time(now));
            task["statusReason"] =
                json!({ "text": "no longer owed: the document is on record and signed, or the encounter changed" });
            (t.version, task)
        })
        .collect();
    // Still owed, by someone else now (the attending changed): the Task follows the record.
    let reassign = deficiencies
        .iter()
        .filter_map(|d| {
            let stored = tasks.get(&d.task_id())?;
            let owner = stored.task["owner"]["reference"].as_str();
            if owner == d.responsible.as_deref() {
                return None;
            }
            let mut task = stored.task.clone();
            match &d.responsible {
                Some(who) => task["owner"] = json!({ "reference": who }),
                None => {
                    if let Some(object) = task.as_object_mut() {
                        object.remove("owner");
                    }
                }
            }
            task["lastModified"] = json!(date_time(now));
            Some((stored.version, task))
        })
        .collect();
    Ok(Sync { open, close, reassign, deficiencies })
}

/// One clinician's line of the delinquency report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clinician {
    /// `Practitioner/..`, or empty when the record names no one.
    pub practitioner: String,
    /// Open deficiencies, and by rule.
    pub open: usize,
    pub by_rule: BTreeMap<&'static str, usize>,
    /// Open deficiencies by days past due: 0–7, 8–14, 15–30, over 30.
    pub by_age: [usize; 4],
    /// Days the oldest is past due.
    pub oldest_days: i64,
    /// Incomplete records (encounters), and those past the delinquency line.
    pub records: usize,
    pub delinquent_records: usize,
}

/// The delinquency report at a moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub as_of: i64,
    pub policy: Policy,
    pub deficiencies: Vec<Deficiency>,
    /// By clinician, most delinquent records first.
    pub clinicians: Vec<Clinician>,
    /// Encounters discharged in the period, those with no open deficiency, and the rate.
    pub period_days: i64,
    pub discharges: usize,
    pub complete: usize,
    pub completion_rate: f64,
    /// Records past the delinquency line, and their rate over the average monthly discharges.
    pub delinquent_records: usize,
    pub delinquency_rate: f64,
}

/// The delinquency report at `now`, with the completion rate over the encounters discharged
/// in the `period_days` before it.
pub fn report(store: &dyn Store, policy: &Policy, now: i64, period_days: i64) -> Result<Report> {
    let deficiencies = find(store, policy, now)?;
    let mut discharged_in_period: HashSet<String> = HashSet::new();
    store.scan_type("Encounter", None, &mut |_, id, body| {
        let Ok(json) = serde_json::from_slice::<Json>(body) else { return Ok(()) };
        let end = json["period"]["end"].as_str().and_then(instant_after);
        if json["status"] == "finished" && end.is_some_and(|end| end <= now && end > now - period_days * DAY)
        {
            discharged_in_period.insert(id.to_string());
        }
        Ok(())
    })?;
    let mut by_clinician: BTreeMap<String, (Clinician, BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for d in &deficiencies {
        let who = d.responsible.clone().unwrap_or_default();
        let (line, records, delinquent) = by_clinician.entry(who.clone()).or_default();
        line.practitioner = who;
        line.open += 1;
        *line.by_rule.entry(d.rule.code()).or_default() += 1;
        let days = (now - d.due) / DAY;
        line.by_age[match days {
            ..=7 => 0,
            8..=14 => 1,
            15..=30 => 2,
            _ => 3,
        }] += 1;
        line.oldest_days = line.oldest_days.max(days);
        records.insert(&d.encounter);
        if d.delinquent(policy, now) {
            delinquent.insert(&d.encounter);
        }
    }
    let mut clinicians: Vec<Clinician> = by_clinician
        .into_values()
        .map(|(mut line, records, delinquent)| {
            line.records = records.len();
            line.delinquent_records = delinquent.len();
            line
        })
        .collect();
    clinicians.sort_by(|a, b| {
        (b.delinquent_records, b.open, &a.practitioner).cmp(&(a.delinquent_records, a.open, &b.practitioner))
    });
    let incomplete: HashSet<&str> = deficiencies.iter().map(|d| d.encounter.as_str()).collect();
    let discharges = discharged_in_period.len();
    let complete = discharged_in_period.iter().filter(|e| !incomplete.contains(e.as_str())).count();
    let delinquent: HashSet<&str> =
        deficiencies.iter().filter(|d| d.delinquent(policy, now)).map(|d| d.encounter.as_str()).collect();
    let monthly_discharges = discharges as f64 * 30.0 / period_days.max(1) as f64;
    Ok(Report {
        as_of: now,
        policy: policy.clone(),
        clinicians,
        period_days,
        discharges,
        complete,
        completion_rate: if discharges == 0 { 1.0 } else { complete as f64 / discharges as f64 },
        delinquent_records: delinquent.len(),
        delinquency_rate: if monthly_discharges > 0.0 {
            delinquent.len() as f64 / monthly_discharges
        } else {
            0.0
        },
        deficiencies,
    })
}

impl Report {
    /// The deficiencies a report of `count` lists: the oldest due first.
    pub fn listed(&self, count: usize) -> Vec<&Deficiency> {
        let mut oldest: Vec<&Deficiency> = self.deficiencies.iter().collect();
        oldest.sort_by(|a, b| (a.due, &a.focus).cmp(&(b.due, &b.focus)));
        oldest.truncate(count);
        oldest
    }

    /// The report as a FHIR Parameters: the figures, a part per clinician, and up to `count`
    /// deficiencies, oldest first.
    pub fn to_parameters(&self, count: usize) -> Json {
        let mut parameter = vec![
            json!({ "name": "asOf", "valueDateTime": date_time(self.as_of) }),
            json!({ "name": "periodDays", "valueInteger": self.period_days }),
            json!({ "name": "discharges", "valueInteger": self.discharges }),
            json!({ "name": "complete", "valueInteger": self.complete }),
            json!({ "name": "completionRate", "valueDecimal": round(self.completion_rate) }),
            json!({ "name": "delinquentDays", "valueInteger": self.policy.delinquent_days }),
            json!({ "name": "delinquentRecords", "valueInteger": self.delinquent_records }),
            json!({ "name": "delinquencyRate", "valueDecimal": round(self.delinquency_rate) }),
            json!({ "name": "openDeficiencies", "valueInteger": self.deficiencies.len() }),
        ];
        for line in &self.clinicians {
            let mut part = vec![
                json!({ "name": "open", "valueInteger": line.open }),
                json!({ "name": "records", "valueInteger": line.records }),
                json!({ "name": "delinquentRecords", "valueInteger": line.delinquent_records }),
                json!({ "name": "oldestDays", "valueInteger": line.oldest_days }),
            ];
            if !line.practitioner.is_empty() {
                part.insert(
                    0,
                    json!({ "name": "practitioner", "valueReference": { "reference": line.practitioner } }),
                );
            }
            for (label, n) in ["0-7", "8-14", "15-30", "over-30"].iter().zip(line.by_age) {
                part.push(json!({ "name": "daysPastDue", "part": [
                    { "name": "range", "valueString": label }, { "name": "count", "valueInteger": n } ] }));
            }
            for (rule, n) in &line.by_rule {
                part.push(json!({ "name": "rule", "part": [
                    { "name": "code", "valueCode": rule }, { "name": "count", "valueInteger": n } ] }));
            }
            parameter.push(json!({ "name": "clinician", "part": part }));
        }
        for d in self.listed(count) {
            let mut part = vec![
                json!({ "name": "rule", "valueCode": d.rule.code() }),
                json!({ "name": "focus", "valueReference": { "reference": d.focus } }),
                json!({ "name": "encounter", "valueReference": { "reference": format!("Encounter/{}", d.encounter) } }),
                json!({ "name": "patient", "valueReference": { "reference": format!("Patient/{}", d.patient) } }),
                json!({ "name": "due", "valueDateTime": date_time(d.due) }),
                json!({ "name": "delinquent", "valueBoolean": d.delinquent(&self.policy, self.as_of) }),
            ];
            if let Some(who) = &d.responsible {
                part.push(json!({ "name": "responsible", "valueReference": { "reference": who } }));
            }
            parameter.push(json!({ "name": "deficiency", "part": part }));
        }
        json!({ "resourceType": "Parameters", "parameter": parameter })
    }

    /// The deficiencies as CSV: rule, focus, encounter, patient, responsible, due, days past
    /// due, delinquent.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("rule,focus,encounter,patient,responsible,due,days_past_due,delinquent\n");
        for d in &self.deficiencies {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                d.rule.code(),
                d.focus,
                d.encounter,
                d.patient,
                d.responsible.as_deref().unwrap_or(""),
                date_time(d.due),
                (self.as_of - d.due) / DAY,
                d.delinquent(&self.policy, self.as_of)
            ));
        }
        out
    }
}

fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}
