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
