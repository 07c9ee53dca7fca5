//! `chartroom mpi eval` on the FEBRL layout (one file deduplicated, two linked) and `chartroom
//! mpi run` over a generated data directory with planted duplicate registrations.

mod support;

use support::{chartroom, path, run};

use serde_json::Value;

#[test]
fn eval_reports_quality_on_febrl_files() {
    let Some(dir) = testkit::shared_dir("data/febrl") else { return };
    let answer: Value = serde_json::from_str(&chartroom(&[
        "mpi",
        "eval",
        "--input",
        path(&dir.join("febrl1.csv")),
        "--pairs",
        path(&dir.join("febrl1_true_pairs.csv")),
        "--format",
        "json",
    ]))
    .unwrap();
    for key in ["candidates", "predicted", "true", "tp", "precision", "recall", "f1", "best_f1", "seconds"] {
        assert!(answer[key].is_number(), "{key} missing: {answer}");
    }
    assert_eq!(answer["true"], 500);
    assert!(answer["f1"].as_f64().unwrap() > 0.95, "{answer}");

    // Two files: the originals in one, their duplicates in the other.
    let work = testkit::temp_dir("cli-mpi-linkage");
    let text = std::fs::read_to_string(dir.join("febrl1.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (originals, duplicates): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.contains("-org,"));
    std::fs::write(work.join("a.csv"), format!("{header}\n{}\n", originals.join("\n"))).unwrap();
    std::fs::write(work.join("b.csv"), format!("{header}\n{}\n", duplicates.join("\n"))).unwrap();
    let linked: Value = serde_json::from_str(&chartroom(&[
        "mpi",
        "eval",
        "--input",
        path(&work.join("a.csv")),
        "--input-b",
        path(&work.join("b.csv")),
        "--pairs",
        path(&dir.join("febrl1_true_pairs.csv")),
    ]))
    .unwrap();
    assert!(linked["f1"].as_f64().unwrap() > 0.95, "{linked}");
    // Bad input names what and where.
    std::fs::write(work.join("bad.csv"), "id,name\n1,x\n").unwrap();
    let output = run(&[
        "mpi",
        "eval",
        "--input",
        path(&work.join("bad.csv")),
        "--pairs",
        path(&dir.join("febrl1_true_pairs.csv")),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no column 'rec_id'"));
}

#[test]
fn run_writes_the_candidate_pairs_of_the_record() {
    let dir = testkit::temp_dir("cli-mpi-run");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&[
        "generate",
        "--patients",
        "300",
        "--seed",
        "5",
        "--duplicate-rate",
        "0.1",
        "--out",
        path(&ndjson),
    ]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let listed = chartroom(&["mpi", "run", "--data", path(&data)]);
    assert!(listed.contains("link") && listed.contains("candidate pairs"), "{listed}");
    let candidates = std::fs::read_to_string(data.join("mpi/candidates.ndjson")).unwrap();
    let planted = std::fs::read_to_string(ndjson.join("ground-truth/duplicates.ndjson")).unwrap();
    let first: Value = serde_json::from_str(planted.lines().next().unwrap()).unwrap();
    let (a, b) = (first["original"].as_str().unwrap(), first["duplicate"].as_str().unwrap());
    let line = candidates
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| (c["a"] == a && c["b"] == b) || (c["a"] == b && c["b"] == a))
        .expect("the planted pair is a candidate");
    assert_eq!(line["proposed"], "link", "{line}");
    assert_eq!(line["evidence"].as_array().unwrap().len(), 10);

    // A reviewer decides the pair is two different people: it is not proposed again.
    let data_arg = path(&data);
    chartroom(&[
        "mpi",
        "review",
        "--data",
        data_arg,
        "--decide",
        "different-people",
        "--a",
        a,
        "--b",
        b,
        "--by",
        "hana",
    ]);
    let decisions = std::fs::read_to_string(data.join("mpi/decisions.ndjson")).unwrap();
    assert!(decisions.contains("\"by\":\"hana\"") && decisions.contains("different-people"), "{decisions}");
    chartroom(&["mpi", "run", "--data", data_arg]);
    let again = std::fs::read_to_string(data.join("mpi/candidates.ndjson")).unwrap();
    let (a_id, b_id) = (a.trim_start_matches("Patient/"), b.trim_start_matches("Patient/"));
    assert!(
        !again
            .lines()
            .any(|l| l.contains(&format!("Patient/{a_id}\"")) && l.contains(&format!("Patient/{b_id}\""))),
        "a pair decided different is proposed again"
    );
    let listed = chartroom(&["mpi", "review", "--data", data_arg]);
    assert!(listed.contains("wait for a decision"), "{listed}");
    let output =
        run(&["mpi", "review", "--data", data_arg, "--decide", "maybe", "--a", a, "--b", b, "--by", "hana"]);
    assert!(!output.status.success());
}

#[test]
fn merge_and_unmerge_from_the_command_line_are_recorded() {
    let dir = testkit::temp_dir("cli-mpi-merge");
    let (ndjson, data) = (dir.join("ndjson"), dir.join("data"));
    chartroom(&[
        "generate",
        "--patients",
        "120",
        "--seed",
        "9",
        "--duplicate-rate",
        "0.1",
        "--out",
        path(&ndjson),
    ]);
    chartroom(&["import", "--data", path(&data), path(&ndjson), "--no-validate", "--quiet"]);
    let planted = std::fs::read_to_string(ndjson.join("ground-truth/duplicates.ndjson")).unwrap();
    let first: Value = serde_json::from_str(planted.lines().next().unwrap()).unwrap();
    let (keep, dup) = (first["original"].as_str().unwrap(), first["duplicate"].as_str().unwrap());
    let data_arg = path(&data);
    let merge = |extra: &[&str]| {
        let mut args =
            vec!["mpi", "merge", "--data", data_arg, "--source", dup, "--target", keep, "--by", "hana"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let preview = merge(&["--preview"]);
    let said = String::from_utf8_lossy(&preview.stdout).into_owned();
    assert!(
        preview.status.success() && said.contains("preview") && said.contains("nothing was changed"),
        "{said}"
    );
    let merged = merge(&[]);
    let said = String::from_utf8_lossy(&merged.stdout).into_owned();
    assert!(merged.status.success() && said.contains("merged") && said.contains("Provenance/"), "{said}");
    // A second merge of the same registration is refused (exit 1, the reason printed).
    let again = merge(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already merged"));
    // The merged registration is no longer matched.
    chartroom(&["mpi", "run", "--data", data_arg]);
    let candidates = std::fs::read_to_string(data.join("mpi/candidates.ndjson")).unwrap();
    assert!(!candidates.contains(&format!("{dup}\"")), "a merged registration is proposed");
    let undone = chartroom(&["mpi", "unmerge", "--data", data_arg, "--source", dup, "--by", "hana"]);
    assert!(undone.contains("unmerged"), "{undone}");
    // Both changes are in the audit trail, which still verifies.
    let disclosures = chartroom(&[
        "audit",
        "disclosures",
        "--data",
        data_arg,
        "--patient",
        dup.trim_start_matches("Patient/"),
    ]);
    assert!(disclosures.matches("hana").count() >= 2, "{disclosures}");
    chartroom(&["audit", "verify", "--data", data_arg]);
}
