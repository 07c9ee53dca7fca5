//! `chartroom-bench risk`: comorbidity indices for a large population. A million patients (by
//! default) get 0 to 20 diagnoses each, about half of them codes of the comorbidity maps (with
//! their further characters) and the rest other ICD-10-CM-shaped codes; the Charlson (Quan
//! codes, Charlson weights, age-adjusted with the 10-year survival), Elixhauser (van Walraven)
//! and HFRS scores of every patient are timed, on one core and on all.

use std::process::ExitCode;
use std::time::Instant;

use analytics::risk::comorbidity::{Index, Scheme, Scorer, age_adjusted, all_prefixes, hfrs, survival_10yr};
use anyhow::{Result, anyhow};

use crate::bench::machine;
use crate::fixture::Rng;

#[derive(clap::Args)]
pub struct RiskBenchArgs {
    /// Patients scored.
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    /// Stays the readmission model is trained on.
    #[arg(long, default_value_t = 100_000)]
    stays: usize,
}

/// Stays with the readmission model's 17 features (standardised), drawn at random, and
/// outcomes drawn from a known logistic model over them.
fn training_stays(count: usize) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = Rng(30);
    let uniform = |rng: &mut Rng| (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let weights: Vec<f64> = (0..17).map(|j| if j % 3 == 0 { 0.3 } else { 0.05 }).collect();
    let mut x = Vec::with_capacity(count);
    let mut y = Vec::with_capacity(count);
    for _ in 0..count {
        let row: Vec<f64> = (0..17).map(|_| (uniform(&mut rng) - 0.5) * 3.46).collect();
        let z = -1.8 + row.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>();
        y.push(uniform(&mut rng) < 1.0 / (1.0 + (-z).exp()));
        x.push(row);
    }
    (x, y)
}

/// Each patient's age and codes.
fn population(patients: usize) -> Vec<(u32, Vec<String>)> {
    let prefixes = all_prefixes();
    let mut rng = Rng(26);
    let digits = b"0123456789";
    (0..patients)
        .map(|_| {
            let age = 18 + rng.below(85) as u32;
            let count = rng.below(21) as usize;
            let codes = (0..count)
                .map(|_| {
                    let mut code = if rng.below(2) == 0 {
                        prefixes[rng.below(prefixes.len() as u64) as usize].to_string()
                    } else {
                        let letter = (b'A' + rng.below(26) as u8) as char;
                        format!("{letter}{:02}", rng.below(100))
                    };
                    for _ in 0..rng.below(3) {
                        code.push(digits[rng.below(10) as usize] as char);
                    }
                    code
                })
                .collect();
            (age, codes)
        })
        .collect()
}

/// Scores a slice of the population; the sum of the scores keeps the work from being optimised
/// away.
fn score(patients: &[(u32, Vec<String>)]) -> Result<f64> {
    let mut charlson =
        Scorer::new(Scheme::new(Index::Charlson, "quan", "charlson").map_err(|e| anyhow!("{e}"))?)
            .map_err(|e| anyhow!("{e}"))?;
    let mut elixhauser =
        Scorer::new(Scheme::new(Index::Elixhauser, "quan", "van_walraven").map_err(|e| anyhow!("{e}"))?)
            .map_err(|e| anyhow!("{e}"))?;
    let mut total = 0.0;
    for (age, codes) in patients {
        let c = charlson.score(codes.iter().map(String::as_str));
        let adjusted = age_adjusted(c.score, f64::from(*age));
        let e = elixhauser.score(codes.iter().map(String::as_str));
        let (frailty, _) = hfrs(codes.iter().map(String::as_str));
        total += c.score + survival_10yr(adjusted) + e.score + frailty;
    }
    Ok(total)
}

pub fn run(args: RiskBenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let started = Instant::now();
    let patients = population(args.patients);
    let diagnoses: usize = patients.iter().map(|(_, c)| c.len()).sum();
    println!(
        "{} patients, {diagnoses} diagnoses, made in {:.1} s",
        patients.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let one = score(&patients)?;
    let single = started.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let chunk = patients.len().div_ceil(cores).max(1);
    let all: f64 = std::thread::scope(|scope| {
        let handles: Vec<_> = patients.chunks(chunk).map(|part| scope.spawn(move || score(part))).collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("a thread failed"))?).sum::<Result<f64>>()
    })?;
    let parallel = started.elapsed().as_secs_f64();
    println!(
        "Charlson (age-adjusted, 10-year survival), Elixhauser and HFRS of every patient: {single:.2} s on one core, {parallel:.2} s on {cores} ({:.0} patients/s); checksum {:.3} / {:.3}",
        patients.len() as f64 / parallel.max(1e-9),
        one,
        all
    );
    let (x, y) = training_stays(args.stays);
    let started = Instant::now();
    let fit = analytics::risk::logistic::fit(&x, &y, 1.0).map_err(|e| anyhow!("{e}"))?;
    let predicted: Vec<f64> = x.iter().map(|row| fit.predict(row)).collect();
    let measured = analytics::risk::logistic::auc(&predicted, &y).map_err(|e| anyhow!("{e}"))?;
    let training = started.elapsed().as_secs_f64();
    println!(
        "readmission model: {} stays x 17 features trained in {training:.2} s ({} Newton steps), AUC with DeLong's interval {:.4} [{:.4}, {:.4}]",
        x.len(),
        fit.iterations,
        measured.auc,
        measured.low,
        measured.high
    );
    Ok(ExitCode::SUCCESS)
}
