//! Matching quality on the FEBRL deduplication sets (`../shared/data/febrl/`): precision,
//! recall and F1 over all true pairs, at the automatic-link threshold and at the best cut.

use chartroom_mpi::{febrl, linkage, model::Training};

#[test]
fn febrl_duplicates_are_found_with_few_false_links() {
    let Some(dir) = testkit::shared_dir("data/febrl") else { return };
    for (name, least_f1) in [("febrl1", 0.95), ("febrl2", 0.95)] {
        let people = febrl::read_people(&dir.join(format!("{name}.csv"))).expect("people");
        let truth = febrl::read_pairs(&dir.join(format!("{name}_true_pairs.csv"))).expect("pairs");
        let run = linkage::run(&people, &Training::default());
        let evaluation = linkage::evaluate(&run, &people, &truth, chartroom_mpi::linkage::LINK_THRESHOLD);
        eprintln!("{name}: {}", serde_json::to_string(&evaluation).unwrap());
        assert!(evaluation.f1 >= least_f1, "{name}: F1 {:.4} below {least_f1}", evaluation.f1);
    }
}

/// The true pairs not linked, with their records and comparison vectors (for tuning).
#[test]
#[ignore]
fn show_missed_pairs() {
    let Some(dir) = testkit::shared_dir("data/febrl") else { return };
    for name in ["febrl1", "febrl2"] {
        let people = febrl::read_people(&dir.join(format!("{name}.csv"))).expect("people");
        let truth = febrl::read_pairs(&dir.join(format!("{name}_true_pairs.csv"))).expect("pairs");
        let run = linkage::run(&people, &Training::default());
        let by_id: std::collections::HashMap<&str, usize> =
            people.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
        let linked: std::collections::HashSet<(usize, usize)> =
            run.pairs.iter().filter(|p| p.probability >= 0.9).map(|p| (p.a as usize, p.b as usize)).collect();
        for (a, b) in &truth {
            let (i, j) = (by_id[a.as_str()], by_id[b.as_str()]);
            let key = (i.min(j), i.max(j));
            if !linked.contains(&key) {
                let candidate = run.pairs.iter().find(|p| (p.a as usize, p.b as usize) == key);
                eprintln!(
                    "{name} missed {a} {b}: candidate {:?}\n  {:?}\n  {:?}",
                    candidate.map(|c| (c.probability, c.vector)),
                    people[i],
                    people[j]
                );
            }
        }
    }
}

/// Where the time of a run goes (release: `cargo test --release -p chartroom-mpi --test
/// febrl stages -- --ignored --nocapture`).
#[test]
#[ignore]
fn stages() {
    use std::time::Instant;
    let Some(dir) = testkit::shared_dir("data/febrl") else { return };
    let people = febrl::read_people(&dir.join("febrl2.csv")).expect("people");
    let training = Training::default();
    let t = Instant::now();
    let found = chartroom_mpi::blocking::candidate_pairs_by_rule(&people);
    eprintln!("blocking {:?} ({} pairs)", t.elapsed(), found.len());
    let t = Instant::now();
    let vectors: Vec<_> = found
        .iter()
        .map(|&(a, b, _)| chartroom_mpi::compare::compare(&people[a as usize], &people[b as usize]))
        .collect();
    eprintln!("compare {:?}", t.elapsed());
    let t = Instant::now();
    let u = chartroom_mpi::model::random_u(&people, &training);
    eprintln!("random u {:?}", t.elapsed());
    let t = Instant::now();
    let rules: Vec<u16> = found.iter().map(|f| f.2).collect();
    let model = chartroom_mpi::model::train_by_rule(
        &vectors,
        &rules,
        &chartroom_mpi::blocking::FIXED_BY,
        u,
        &training,
    );
    eprintln!("EM {:?} ({} iterations)", t.elapsed(), model.iterations);
    let t = Instant::now();
    let frequencies = chartroom_mpi::model::TermFrequencies::of(&people);
    eprintln!("term frequencies {:?}", t.elapsed());
    let _ = frequencies;
}
