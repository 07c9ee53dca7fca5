//! The comorbidity indices against comorbidipy 0.8: `tests/oracles/comorbidipy_oracle.py`
//! scores generated patients under every ICD-10 code map and weighting (Charlson, Elixhauser)
//! and the HFRS; this test scores the same patients with the kernels and holds every number to
//! comorbidipy's within 1e-9, and every HFRS category equal.
//!
//! comorbidipy needs Python ≥ 3.13: the Python comes from `CHARTROOM_TEST_PYTHON313` (a
//! virtual environment with comorbidipy, which `.ci/run` makes when a Python 3.13 is on the
//! machine). Without it the test is skipped with a notice; the hand-computed cases of
//! `risk::comorbidity`'s unit tests still run. With it set but comorbidipy missing, it fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chartroom_analytics::risk::comorbidity::{Index, Scheme, Scorer, age_adjusted, hfrs, survival_10yr};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

/// A small deterministic generator (xorshift64*), so the cases are the same on every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every prefix of every embedded map, and every HFRS category.
fn prefixes() -> Vec<String> {
    let table = include_str!("../data/comorbidity.tsv");
    let mut all = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["map", _, _, prefixes] => all.extend(prefixes.split(',').map(str::to_string)),
            ["hfrs", code, _] => all.push(code.to_string()),
            _ => {}
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Patients with ages and codes: codes from the maps (with 0 to 2 more characters), codes of
/// no map, repeated codes, and a few in lower case or with spaces (which the HFRS trims and
/// raises).
fn patients() -> BTreeMap<String, (i64, Vec<String>)> {
    let prefixes = prefixes();
    let mut draw = Draw(0x9E37_79B9_7F4A_7C15);
    let alphabet: Vec<char> = "0123456789ABX".chars().collect();
    let mut patients = BTreeMap::new();
    for n in 0..4000 {
        let age = 18 + draw.below(90) as i64;
        let count = 1 + draw.below(14);
        let mut codes = Vec::new();
        for _ in 0..count {
            let code = match draw.below(10) {
                0..=6 => {
                    let mut code = prefixes[draw.below(prefixes.len())].clone();
                    for _ in 0..draw.below(3) {
                        code.push(alphabet[draw.below(alphabet.len())]);
                    }
                    code
                }
                7 => format!("Z{:02}{}", draw.below(100), draw.below(10)),
                8 => codes.last().cloned().unwrap_or_else(|| "R69".to_string()),
                _ => {
                    let code = prefixes[draw.below(prefixes.len())].to_lowercase();
                    if draw.below(2) == 0 { format!(" {code}") } else { code }
                }
            };
            codes.push(code);
        }
        patients.insert(format!("p{n:05}"), (age, codes));
    }
    patients
}

fn python() -> Option<String> {
    let python = std::env::var("CHARTROOM_TEST_PYTHON313").ok().filter(|p| !p.is_empty());
    let Some(python) = python else {
        eprintln!(
            "SKIPPED comorbidity oracle: CHARTROOM_TEST_PYTHON313 is not set (a Python >= 3.13 with comorbidipy); the hand-computed cases still run"
        );
        return None;
    };
    let check = Command::new(&python).args(["-c", "import comorbidipy"]).output();
    match check {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => panic!(
            "comorbidity oracle: {python} cannot import comorbidipy: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("comorbidity oracle: {python} cannot be run: {e}"),
    }
}

#[test]
fn scores_equal_comorbidipys() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("chartroom-comorbidity-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let patients = patients();
    let mut csv = String::from("id,code,age\n");
    for (id, (age, codes)) in &patients {
        for code in codes {
            csv.push_str(&format!("{id},{code},{age}\n"));
        }
    }
    let (input, output) = (dir.join("input.csv"), dir.join("output.json"));
    std::fs::write(&input, csv).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/comorbidipy_oracle.py");
    let run = Command::new(&python).arg(&script).arg(&input).arg(&output).output().expect("run the oracle");
    assert!(run.status.success(), "the oracle failed: {}", String::from_utf8_lossy(&run.stderr));
    let theirs: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(theirs["version"], "0.8.0");

    let mut compared = 0usize;
    let mut failures = Vec::new();
    let mut close = |what: String, ours: f64, theirs: f64| {
        compared += 1;
        if (ours - theirs).abs() > TOLERANCE {
            failures.push(format!("{what}: ours {ours}, comorbidipy {theirs}"));
        }
    };
    let schemes = theirs["schemes"].as_object().unwrap();
    assert_eq!(schemes.len(), 18, "every code map and weighting");
    for (key, rows) in schemes {
        let parts: Vec<&str> = key.split('/').collect();
        let scheme = Scheme::new(Index::parse(parts[0]).unwrap(), parts[1], parts[2]).unwrap();
        let mut scorer = Scorer::new(scheme).unwrap();
        let rows = rows.as_object().unwrap();
        assert_eq!(rows.len(), patients.len(), "{key}: every patient scored");
        for (id, (age, codes)) in &patients {
            let ours = scorer.score(codes.iter().map(String::as_str));
            let row = &rows[id];
            close(format!("{key} {id} score"), ours.score, row["score"].as_f64().unwrap());
            if let Some(adjusted) = row.get("age_adj") {
                let ours_adjusted = age_adjusted(ours.score, *age as f64);
                close(format!("{key} {id} age_adj"), ours_adjusted, adjusted.as_f64().unwrap());
                close(
                    format!("{key} {id} survival_10yr"),
                    survival_10yr(ours_adjusted),
                    row["survival_10yr"].as_f64().unwrap(),
                );
            }
        }
    }
    let frailty = theirs["hfrs"].as_object().unwrap();
    for (id, (_, codes)) in &patients {
        let (score, category) = hfrs(codes.iter().map(String::as_str));
        close(format!("hfrs {id}"), score, frailty[id]["score"].as_f64().unwrap());
        let theirs = frailty[id]["category"].as_str().unwrap_or("");
        let differs = f64::from(u8::from(theirs != category.name()));
        close(format!("hfrs category {id} (ours {}, comorbidipy {theirs})", category.name()), 0.0, differs);
    }
    eprintln!("comorbidity oracle: {compared} values compared with comorbidipy 0.8.0");
    assert!(compared >= 100_000, "only {compared} values compared");
    assert!(
        failures.is_empty(),
        "{} differences, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

#[test]
fn the_embedded_maps_are_the_published_ones() {
    let Some(shared) = testkit::shared_dir("data/comorbidity") else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/derive_comorbidity.py");
    let derived = Command::new("python3").arg(&script).arg(&shared).output().expect("run python3");
    assert!(derived.status.success(), "{}", String::from_utf8_lossy(&derived.stderr));
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/comorbidity.tsv")).unwrap();
    assert!(
        String::from_utf8_lossy(&derived.stdout) == committed,
        "data/comorbidity.tsv differs from what ../shared/data/comorbidity derives: regenerate it (see data/PROVENANCE.md)"
    );
}
