//! `chartroom-bench suggest` (code-suggestion quality on held-out ICD-10-CM inclusion terms)
//! and `chartroom-bench terminology` (in-process latency of the terminology operations).

use std::process::ExitCode;

use anyhow::Result;
use terminology::icd10cm::Icd10Cm;

/// Held-out inclusion terms as queries; prints top-1/top-5 accuracy and some misses.
pub fn bench_suggest(every: usize, show_misses: usize) -> Result<ExitCode> {
    println!("{}", crate::bench::machine());
    let report = suggest::evaluate_held_out(Icd10Cm::get(), every.max(2));
    println!("{report}");
    for miss in report.misses.iter().take(show_misses) {
        println!(
            "  miss: \"{}\" -> expected {}, got {} (rank {})",
            miss.query,
            miss.expected,
            miss.suggested.iter().take(5).cloned().collect::<Vec<_>>().join(" "),
            miss.rank.map_or("-".to_string(), |r| r.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Code suggestion on hand-coded clinical statements, each for its patient's sex and age.
pub fn bench_suggest_statements(file: &std::path::Path, show_misses: usize) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let statements =
        suggest::parse_statements(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let suggester = suggest::Suggester::icd10cm();
    let started = std::time::Instant::now();
    let report = suggest::evaluate_statements(suggester, &statements);
    println!(
        "{report}; {:.2} ms per statement",
        started.elapsed().as_secs_f64() * 1e3 / statements.len().max(1) as f64
    );
    // Misses of the even-numbered statements (0-based) were studied to improve the suggester;
    // the odd ones were not.
    for (half, parity) in [("studied half (even lines)", 0), ("unstudied half (odd lines)", 1)] {
        let part: Vec<_> =
            statements.iter().enumerate().filter(|(i, _)| i % 2 == parity).map(|(_, s)| s.clone()).collect();
        println!("  {half}: {}", suggest::evaluate_statements(suggester, &part));
    }
    for miss in report.misses.iter().take(show_misses) {
        println!(
            "  miss: \"{}\" -> expected {}, got {} (rank {})",
            miss.query,
            miss.expected,
            miss.suggested.iter().take(5).cloned().collect::<Vec<_>>().join(" "),
            miss.rank.map_or("-".to_string(), |r| r.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Latency of `$lookup`, `$validate-code` and `$expand` with a text filter, called in
/// process (no HTTP), over codes spread through all of ICD-10-CM; each timing includes
/// rendering the result as FHIR JSON.
pub fn bench_terminology(requests: usize) -> Result<ExitCode> {
    use std::time::Instant;
    use terminology::{ExpandRequest, LookupRequest, NoResolver, Terminology, ValidateCodeRequest};

    println!("{}", crate::bench::machine());
    let started = Instant::now();
    let terminology = Terminology::get();
    terminology.preload();
    let icd = Icd10Cm::get();
    println!("loaded ICD-10-CM and the R4 terminology in {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    let requests = requests.max(100);
    let billable: Vec<&str> = icd.concepts().filter(|c| c.billable()).map(|c| c.code()).collect();
    let step = (billable.len() / requests).max(1);
    let codes: Vec<&str> = billable.iter().step_by(step).take(requests).copied().collect();
    let system = terminology::icd10cm::SYSTEM.to_string();

    let mut lookups = Vec::with_capacity(codes.len());
    for code in &codes {
        let request = LookupRequest {
            system: Some(system.clone()),
            code: Some(code.to_string()),
            ..Default::default()
        };
        let t = Instant::now();
        let result = terminology.lookup(&request, &NoResolver).map(|r| r.to_parameters());
        lookups.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "lookup of {code} failed");
    }
    report("$lookup (ICD-10-CM code, with notes)", &mut lookups);

    let implicit = format!("{system}?fhir_vs");
    let mut validations = Vec::with_capacity(codes.len());
    for code in &codes {
        let request = ValidateCodeRequest {
            url: Some(implicit.clone()),
            system: Some(system.clone()),
            code: Some(code.to_string()),
            ..Default::default()
        };
        let t = Instant::now();
        let result = terminology.validate_code(&request, &NoResolver).map(|r| r.to_parameters());
        validations.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "validate-code of {code} failed");
    }
    report("$validate-code (ICD-10-CM, all codes)", &mut validations);

    let mut bindings = Vec::with_capacity(codes.len());
    let gender = ["male", "female", "other", "unknown", "nonsense"];
    for i in 0..codes.len() {
        let request = ValidateCodeRequest {
            url: Some("http://hl7.org/fhir/ValueSet/administrative-gender".into()),
            system: Some("http://hl7.org/fhir/administrative-gender".into()),
            code: Some(gender[i % gender.len()].into()),
            ..Default::default()
        };
        let t = Instant::now();
        let result = terminology.validate_code(&request, &NoResolver).map(|r| r.to_parameters());
        bindings.push(t.elapsed());
        anyhow::ensure!(result.is_ok(), "validate-code of administrative-gender failed");
    }
    report("$validate-code (R4 administrative-gender)", &mut bindings);

    // Filters: the first one or two words of titles spread through the classification, so
    // both common words ("fracture") and rare ones are asked for.
    let filters: Vec<String> = codes
        .iter()
        .enumerate()
        .filter_map(|(i, code)| {
            let display = icd.lookup(code)?.display().to_lowercase();
            let words: Vec<&str> = display
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() > 3)
                .take(1 + i % 2)
                .collect();
            (!words.is_empty()).then(|| words.join(" "))
        })
        .collect();
    let mut expansions = Vec::with_capacity(filters.len());
    let mut matched = 0u64;
    for filter in &filters {
        let request = ExpandRequest {
            url: Some(implicit.clone()),
            filter: Some(filter.clone()),
            count: Some(50),
            ..Default::default()
        };
        let t = Instant::now();
        let expansion = terminology.expand(&request, &NoResolver).map(|e| e.to_value_set());
        expansions.push(t.elapsed());
        let value_set = expansion.map_err(|e| anyhow::anyhow!("expand filter '{filter}': {e}"))?;
        matched += value_set["expansion"]["total"].as_u64().unwrap_or(0);
    }
    report("$expand filter over all ICD-10-CM (count=50)", &mut expansions);
    println!("  (mean {} matching codes per filter)", matched / filters.len().max(1) as u64);
    Ok(ExitCode::SUCCESS)
}

fn report(what: &str, samples: &mut [std::time::Duration]) {
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{what}: {} calls, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Code suggestion on generated clinical notes: each DocumentReference's text against the
/// ICD-10-CM codes of the Claim of the same encounter (`doc-X` ↔ `claim-X`, as `chartroom
/// generate` names them).
pub fn bench_suggest_notes(
    dir: &std::path::Path,
    limit_notes: usize,
    print_misses: usize,
) -> Result<ExitCode> {
    use std::collections::HashMap;
    use std::io::BufRead;

    let lines = |name: &str| -> Result<Vec<serde_json::Value>> {
        let path = dir.join(name);
        let file = std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(std::io::BufReader::new(file)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    };
    let mut coded: HashMap<String, Vec<String>> = HashMap::new();
    for claim in lines("Claim.ndjson")? {
        let Some(key) = claim["id"].as_str().and_then(|id| id.strip_prefix("claim-")) else { continue };
        let mut diagnoses: Vec<(u64, String)> = claim["diagnosis"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let coding = d["diagnosisCodeableConcept"]["coding"]
                    .as_array()?
                    .iter()
                    .find(|c| c["system"].as_str() == Some(terminology::icd10cm::SYSTEM))?;
                Some((d["sequence"].as_u64().unwrap_or(u64::MAX), coding["code"].as_str()?.to_string()))
            })
            .collect();
        diagnoses.sort();
        coded.insert(key.to_string(), diagnoses.into_iter().map(|(_, code)| code).collect());
    }
    let suggester = suggest::Suggester::icd10cm();
    let (mut notes, mut primary_top1, mut primary_top5, mut diagnoses, mut recalled5) = (0, 0, 0, 0, 0);
    let started = std::time::Instant::now();
    let mut misses = Vec::new();
    for document in lines("DocumentReference.ndjson")?.iter().take(limit_notes) {
        let Some(key) = document["id"].as_str().and_then(|id| id.strip_prefix("doc-")) else { continue };
        let Some(codes) = coded.get(key).filter(|c| !c.is_empty()) else { continue };
        let Some(data) = document["content"][0]["attachment"]["data"].as_str() else { continue };
        let Some(text) = fhir::base64_decode(data).map(|b| String::from_utf8_lossy(&b).into_owned()) else {
            continue;
        };
        let suggested: Vec<String> = suggester.suggest_note(&text, 5).into_iter().map(|s| s.code).collect();
        notes += 1;
        primary_top1 += usize::from(suggested.first() == Some(&codes[0]));
        primary_top5 += usize::from(suggested.contains(&codes[0]));
        if !suggested.contains(&codes[0]) && misses.len() < print_misses {
            misses.push(format!(
                "  miss: {key}: expected {} (of {}), got {}",
                codes[0],
                codes.join(" "),
                suggested.join(" ")
            ));
        }
        diagnoses += codes.len();
        recalled5 += codes.iter().filter(|c| suggested.contains(c)).count();
    }
    let rate = |n: usize, d: usize| 100.0 * n as f64 / d.max(1) as f64;
    println!(
        "{notes} notes: first-listed diagnosis top-1 {primary_top1} ({:.1}%), top-5 {primary_top5} ({:.1}%); \
         all {diagnoses} coded diagnoses in the top 5: {recalled5} ({:.1}%); {:.1} ms per note",
        rate(primary_top1, notes),
        rate(primary_top5, notes),
        rate(recalled5, diagnoses),
        started.elapsed().as_secs_f64() * 1e3 / notes.max(1) as f64
    );
    for miss in misses {
        println!("{miss}");
    }
    Ok(ExitCode::SUCCESS)
}
