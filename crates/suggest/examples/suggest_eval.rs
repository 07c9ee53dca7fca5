//! Held-out evaluation of code suggestion, and a look at single queries:
//! `cargo run --release -p chartroom-terminology --example suggest_eval [every] [misses]`.
//!
//! - `RANKING="k1=1.2 w=1,0.9,... b=... pe=1.5 beta=0.7 ew=1.3 n=500"` overrides ranking
//!   settings (see `parse_ranking`); several separated by `;` are evaluated in turn over the
//!   same index.
//! - `SPLIT=dev` holds out the 5th, 15th, ... terms instead of the 10th, 20th, ...
//! - `CEILING=1` also reports where the expected code ranks among all matches.
//! - `SHOW_RANK=2` lists the queries whose expected code comes second, with the codes before it.
//! - `QUERY="htn|chf"` prints the suggestions for each phrase (`NOTE=1`: for each note;
//!   `SPLIT=dev`: over the index without the dev tenth).

use std::time::Instant;

use chartroom_suggest::{
    BuildOptions, HeldOutTerm, Ranking, Suggester, evaluate_terms, held_out_options, held_out_terms,
};
use terminology::icd10cm::{Icd10Cm, NoteKind};

fn main() {
    if let Ok(queries) = std::env::var("QUERY") {
        // Suggestions for phrases separated by `|`, or for a note with `NOTE=1`.
        let started = Instant::now();
        let ranking = parse_ranking(&std::env::var("RANKING").unwrap_or_default());
        // With `SPLIT=dev`, over the index without the dev tenth.
        let held_out = match std::env::var("SPLIT").as_deref() {
            Ok("dev") => held_out_options(&dev_terms(Icd10Cm::get(), 10)).held_out,
            _ => Default::default(),
        };
        let suggester = Suggester::build(Icd10Cm::get(), &BuildOptions { ranking, held_out });
        println!("built in {:?} ({:?} measured inside)", started.elapsed(), suggester.build_time());
        for query in queries.split('|') {
            let started = Instant::now();
            let suggestions = if std::env::var_os("NOTE").is_some() {
                suggester.suggest_note(query, 10)
            } else {
                suggester.suggest(query, 5)
            };
            println!("{query:?} ({:?})", started.elapsed());
            for s in suggestions {
                println!(
                    "    {} {:.2} {:?} {:?} {:?}",
                    s.code, s.score, s.display, s.matched_words, s.evidence
                );
            }
        }
        return;
    }
    let mut args = std::env::args().skip(1);
    let every: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let show_misses: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let started = Instant::now();
    let icd = Icd10Cm::get();
    println!("ICD-10-CM loaded in {:?}", started.elapsed());
    // `SPLIT=dev` holds out a different tenth (the 5th, 15th, ... terms), for comparing
    // settings without looking at the benchmark's own tenth.
    let terms = match std::env::var("SPLIT").as_deref() {
        Ok("dev") => dev_terms(icd, every),
        _ => held_out_terms(icd, every),
    };
    let options = held_out_options(&terms);
    let mut suggester = Suggester::build(icd, &options);
    if let Ok(rank) = std::env::var("SHOW_RANK") {
        // Queries whose expected code comes at this rank, for studying near misses.
        let wanted: usize = rank.parse().unwrap_or(2);
        suggester.set_ranking(parse_ranking(&std::env::var("RANKING").unwrap_or_default()));
        let display = |code: &str| icd.lookup(code).map_or("?", |c| c.display());
        for term in terms.iter().step_by(3) {
            let Some(target) = icd.concept(term.concept) else { continue };
            let suggestions = suggester.suggest(&term.text, 10);
            let rank = suggestions.iter().position(|s| {
                s.code == term.code || icd.lookup(&s.code).is_some_and(|c| c.is_descendant_of(target))
            });
            if rank == Some(wanted - 1) {
                println!("{:?} -> {} {:?}", term.text, term.code, display(&term.code));
                for s in suggestions.iter().take(wanted) {
                    println!("    {} {:.2} {:?} {:?}", s.code, s.score, s.display, s.matched_words);
                }
            }
        }
        return;
    }
    let settings = std::env::var("RANKING").unwrap_or_default();
    for setting in settings.split(';') {
        let ranking = parse_ranking(setting);
        suggester.set_ranking(ranking);
        let report = evaluate_terms(icd, &suggester, &terms);
        println!("[{setting}] {report}; {} copies of held-out terms left out", report.duplicates_removed);
        let display = |code: &str| icd.lookup(code).map_or("?", |c| c.display());
        for miss in report
            .misses
            .iter()
            .step_by(report.misses.len().div_ceil(show_misses.max(1)).max(1))
            .take(show_misses)
        {
            println!(
                "  {:?} -> {} {:?} (rank {:?})",
                miss.query,
                miss.expected,
                display(&miss.expected),
                miss.rank
            );
            for code in miss.suggested.iter().take(3) {
                println!("      {code} {:?}", display(code));
            }
        }
        if std::env::var_os("CEILING").is_some() {
            ceiling(icd, &suggester, &terms);
        }
    }
}

fn dev_terms(icd: &Icd10Cm, every: usize) -> Vec<HeldOutTerm> {
    let mut terms = Vec::new();
    let mut count = 0;
    for concept in icd.concepts().filter(|c| c.seventh_character().is_none()) {
        for (position, note) in concept.own_notes().iter().enumerate() {
            if note.kind != NoteKind::InclusionTerm {
                continue;
            }
            count += 1;
            if count % every == every / 2 {
                terms.push(HeldOutTerm {
                    text: note.text.clone(),
                    code: concept.code().to_string(),
                    concept: concept.index(),
                    position,
                });
            }
        }
    }
    terms
}

fn parse_ranking(setting: &str) -> Ranking {
    let mut ranking = Ranking::default();
    let floats = |value: &str| -> Vec<f32> { value.split(',').filter_map(|v| v.parse().ok()).collect() };
    for pair in setting.split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else { continue };
        let single = floats(value).first().copied().unwrap_or(0.0);
        match key {
            "k1" => ranking.k1 = single,
            "w" => floats(value).iter().enumerate().for_each(|(i, &v)| ranking.field_weights[i] = v),
            "b" => floats(value).iter().enumerate().for_each(|(i, &v)| ranking.field_b[i] = v),
            "pe" => ranking.phrase_exponent = single,
            "pf" => ranking.phrase_floor = single,
            "rw" => ranking.residual_word_weight = single,
            "ce" => ranking.coverage_exponent = single,
            "n" => ranking.candidates = single as usize,
            "ip" => ranking.inclusion_prior = single,
            "ew" => ranking.expansion_weight = single,
            "af" => ranking.analogue_factor = single,
            "vw" => ranking.variant_weight = single,
            "if" => ranking.inherited_factor = single,
            "cf" => ranking.contradiction_factor = single,
            "of" => ranking.other_factor = single,
            "xf" => ranking.exact_factor = single,
            "beta" => ranking.phrase_beta = single,
            "sw" => ranking.synonym_weight = single,
            "rtw" => ranking.root_weight = single,
            "simw" => ranking.similar_weight = single,
            other => eprintln!("unknown setting {other}"),
        }
    }
    ranking
}

/// Where the expected code lands among all matches, to tell ranking failures from
/// vocabulary gaps.
fn ceiling(icd: &Icd10Cm, suggester: &Suggester, terms: &[HeldOutTerm]) {
    let mut buckets = [0usize; 6];
    for term in terms {
        let Some(target) = icd.concept(term.concept) else { continue };
        let all = suggester.suggest(&term.text, 100_000);
        let rank = all.iter().position(|s| {
            s.code == term.code || icd.lookup(&s.code).is_some_and(|c| c.is_descendant_of(target))
        });
        let bucket = match rank {
            None => 5,
            Some(r) if r < 5 => 0,
            Some(r) if r < 20 => 1,
            Some(r) if r < 100 => 2,
            Some(r) if r < 1000 => 3,
            Some(_) => 4,
        };
        buckets[bucket] += 1;
    }
    println!(
        "  rank <5: {}, <20: {}, <100: {}, <1000: {}, beyond: {}, not matched: {}",
        buckets[0], buckets[1], buckets[2], buckets[3], buckets[4], buckets[5]
    );
}
