//! The readmission model's numbers against scikit-learn: the L2 logistic regression's
//! intercept and coefficients (`LogisticRegression(penalty="l2", C=1)`) to 1e-6, and the AUC
//! of its held-out predictions (`roc_auc_score`) to 1e-12, on the stays of a generated
//! population. The Python is `CHARTROOM_TEST_PYTHON` with `tests/oracles/requirements.txt`;
//! without it the test is skipped, except under `CI=true`, where it fails.

mod support;

use std::path::Path;
use std::process::Command;

use chartroom_analytics::risk::logistic::{auc, fit};
use chartroom_analytics::risk::readmission::{Stay, in_training, index_stays, standardisation, stays};
use serde_json::Value;
use support::FileStore;

fn python() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let python = std::env::var("CHARTROOM_TEST_PYTHON").ok().filter(|p| !p.is_empty());
    let problem = match &python {
        None => "CHARTROOM_TEST_PYTHON is not set".to_string(),
        Some(python) => match Command::new(python).args(["-c", "import sklearn"]).output() {
            Ok(out) if out.status.success() => return Some(python.clone()),
            Ok(out) => format!("{python} cannot import sklearn: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("{python} cannot be run: {e}"),
        },
    };
    assert!(!in_ci, "readmission oracle: {problem}; CI must provide scikit-learn");
    eprintln!("SKIPPED readmission oracle: {problem}");
    None
}

#[test]
fn the_fit_and_the_auc_equal_scikit_learns() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("chartroom-readmission-oracle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    synth::generate(
        &synth::GenerateOptions { patients: 3000, seed: 11, truth: synth::TruthOptions::default() },
        &dir,
        &|_| {},
    )
    .expect("generate");
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth/parameters.json")).unwrap())
            .unwrap();
    let store = FileStore::load(&dir);
    let all = stays(&store, parameters["asOf"].as_str().unwrap()).unwrap();
    let training: Vec<&Stay> = index_stays(&all).filter(|s| in_training(&s.patient)).collect();
    let held_out: Vec<&Stay> = index_stays(&all).filter(|s| !in_training(&s.patient)).collect();
    let (means, deviations) = standardisation(&training);
    let standardise = |s: &Stay| -> Vec<f64> {
        s.features.iter().zip(means.iter().zip(&deviations)).map(|(x, (m, d))| (x - m) / d).collect()
    };
    let x: Vec<Vec<f64>> = training.iter().map(|s| standardise(s)).collect();
    let y: Vec<bool> = training.iter().map(|s| s.readmitted).collect();
    let ours = fit(&x, &y, 1.0).expect("fit");
    let predicted: Vec<f64> = held_out.iter().map(|s| ours.predict(&standardise(s))).collect();
    let outcomes: Vec<bool> = held_out.iter().map(|s| s.readmitted).collect();
    let our_auc = auc(&predicted, &outcomes).unwrap().auc;

    let mut train_csv =
        format!("y,{}\n", (0..x[0].len()).map(|j| format!("x{j}")).collect::<Vec<_>>().join(","));
    for (row, outcome) in x.iter().zip(&y) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        train_csv.push_str(&format!("{},{}\n", u8::from(*outcome), cells.join(",")));
    }
    let mut scores_csv = String::from("y,score\n");
    for (p, o) in predicted.iter().zip(&outcomes) {
        scores_csv.push_str(&format!("{},{p:e}\n", u8::from(*o)));
    }
    std::fs::write(dir.join("train.csv"), train_csv).unwrap();
    std::fs::write(dir.join("scores.csv"), scores_csv).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/sklearn_oracle.py");
    let run = Command::new(&python)
        .arg(&script)
        .args([dir.join("train.csv"), dir.join("scores.csv"), dir.join("out.json")])
        .arg("1.0")
        .output()
        .expect("run the oracle");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let theirs: Value = serde_json::from_slice(&std::fs::read(dir.join("out.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} training stays ({} readmitted), {} held out; scikit-learn {}",
        x.len(),
        y.iter().filter(|v| **v).count(),
        held_out.len(),
        theirs["version"]
    );
    let close = |what: &str, a: f64, b: f64, tolerance: f64| {
        assert!((a - b).abs() <= tolerance, "{what}: ours {a}, scikit-learn {b}");
    };
    close("intercept", ours.intercept, theirs["intercept"].as_f64().unwrap(), 1e-6);
    let coefficients = theirs["coefficients"].as_array().unwrap();
    assert_eq!(coefficients.len(), ours.coefficients.len());
    for (j, (a, b)) in ours.coefficients.iter().zip(coefficients).enumerate() {
        close(&format!("coefficient {j}"), *a, b.as_f64().unwrap(), 1e-6);
    }
    close("held-out AUC", our_auc, theirs["auc"].as_f64().unwrap(), 1e-12);
}
