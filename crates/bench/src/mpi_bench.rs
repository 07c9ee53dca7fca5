//! `chartroom-bench mpi`: deduplicating a large register. A million people (by default) are
//! made here, a share of them registered a second time with the registration errors the
//! synthetic population plants (a typo in a name, a nickname, day and month transposed, a new
//! address, no SSN, a maiden name), and the whole run (blocking, comparison, estimation,
//! scoring) is timed, with the peak memory of the process and the quality on the planted
//! pairs.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use mpi::linkage::{LINK_THRESHOLD, evaluate, run};
use mpi::model::Training;
use mpi::person::Person;

use crate::bench::machine;
use crate::fixture::Rng;

#[derive(clap::Args)]
pub struct MpiBenchArgs {
    /// People registered (before the duplicates).
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    /// Share of them registered a second time.
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
}

/// Picks from the generator the benchmark fixtures share.
trait Draw {
    /// Uniform in `0..n`.
    fn index(&mut self, n: usize) -> usize;
    /// Skewed towards the front of a list, as names are (a few common, many rare).
    fn skewed(&mut self, n: usize) -> usize;
}

impl Draw for Rng {
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as usize % n.max(1)
    }
}

const SYLLABLES: &[&str] = &[
    "an", "ber", "car", "dal", "el", "fen", "gar", "hol", "in", "jor", "kel", "lan", "mor", "nel", "or",
    "par", "quin", "ros", "sel", "tor", "ul", "van", "wel", "yor", "zan", "ston", "ley", "son", "ton",
    "ford", "wood", "field",
];
const GIVEN: &[&str] = &[
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "nancy",
    "matthew",
    "lisa",
    "anthony",
    "betty",
    "mark",
    "margaret",
    "donald",
    "sandra",
    "steven",
    "ashley",
    "paul",
    "kimberly",
    "andrew",
    "emily",
    "joshua",
    "donna",
    "kenneth",
    "michelle",
    "kevin",
    "carol",
    "brian",
    "amanda",
    "george",
    "melissa",
    "timothy",
    "deborah",
    "ronald",
    "stephanie",
    "jason",
    "rebecca",
    "edward",
    "sharon",
    "jeffrey",
    "laura",
    "ryan",
    "cynthia",
    "jacob",
    "amy",
    "gary",
    "kathleen",
    "nicholas",
    "angela",
    "eric",
    "shirley",
    "jonathan",
    "brenda",
    "stephen",
    "emma",
    "larry",
    "anna",
    "justin",
    "pamela",
    "scott",
    "nicole",
    "brandon",
    "samantha",
    "benjamin",
    "katherine",
    "samuel",
    "christine",
    "gregory",
    "debra",
    "alexander",
    "rachel",
    "patrick",
    "carolyn",
    "frank",
    "janet",
    "raymond",
    "maria",
    "jack",
    "olivia",
    "dennis",
    "heather",
];
const NICKS: &[(&str, &str)] = &[
    ("william", "bill"),
    ("robert", "bob"),
    ("richard", "rick"),
    ("james", "jim"),
    ("michael", "mike"),
    ("joseph", "joe"),
    ("thomas", "tom"),
    ("elizabeth", "liz"),
    ("margaret", "peggy"),
    ("jennifer", "jen"),
];
const CITIES: usize = 400;

fn family(rng: &mut Rng) -> String {
    let parts = 2 + rng.index(2);
    (0..parts).map(|_| SYLLABLES[rng.skewed(SYLLABLES.len())]).collect()
}

fn person(n: usize, rng: &mut Rng) -> Person {
    let female = rng.index(2) == 0;
    let city = rng.skewed(CITIES);
    Person {
        id: format!("p{n}"),
        given: GIVEN[rng.skewed(GIVEN.len())].to_string(),
        family: family(rng),
        birth: Some((1925 + rng.index(98) as u16, 1 + rng.index(12) as u8, 1 + rng.index(28) as u8)),
        sex: if female { "f" } else { "m" }.to_string(),
        street: format!("{} {} st", 1 + rng.index(9999), SYLLABLES[rng.index(SYLLABLES.len())]),
        city: format!("city{city}"),
        postcode: format!("{:05}", 10000 + city * 100 + rng.index(60)),
        state: format!("s{}", city % 50),
        phone: format!("{:010}", 2_000_000_000 + rng.index(7_999_999_999)),
        national_id: format!("{:09}", rng.index(999_999_999)),
        ..Person::default()
    }
}

/// A second registration with one or two of the planted kinds of error.
fn again(original: &Person, n: usize, rng: &mut Rng) -> Person {
    let mut copy = Person { id: format!("d{n}"), phone: String::new(), ..original.clone() };
    for _ in 0..1 + rng.index(2) {
        match rng.index(6) {
            0 => {
                let mut chars: Vec<char> = copy.family.chars().collect();
                let at = 1 + rng.index(chars.len().saturating_sub(2).max(1));
                if at < chars.len() {
                    chars.remove(at);
                }
                copy.family = chars.into_iter().collect();
            }
            1 => {
                if let Some((_, nick)) = NICKS.iter().find(|(name, _)| *name == copy.given) {
                    copy.given = nick.to_string();
                }
            }
            2 => {
                if let Some((y, m, d)) = copy.birth
                    && d <= 12
                {
                    copy.birth = Some((y, d, m));
                }
            }
            3 => {
                copy.street =
                    format!("{} {} ave", 1 + rng.index(9999), SYLLABLES[rng.index(SYLLABLES.len())]);
                copy.postcode = format!("{:05}", 10000 + rng.index(40000));
            }
            4 => copy.national_id.clear(),
            _ => {
                if copy.sex == "f" {
                    copy.other_families = vec![copy.family.clone()];
                    copy.family = family(rng);
                }
            }
        }
    }
    copy
}

fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run_bench(args: MpiBenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    let mut rng = Rng(42);
    let mut people: Vec<Person> = (0..args.patients).map(|n| person(n, &mut rng)).collect();
    let mut truth: HashSet<(String, String)> = HashSet::new();
    let duplicates = (args.patients as f64 * args.duplicate_rate) as usize;
    for n in 0..duplicates {
        let original = rng.index(args.patients);
        let copy = again(&people[original], n, &mut rng);
        let (a, b) = (people[original].id.clone(), copy.id.clone());
        truth.insert(if a < b { (a, b) } else { (b, a) });
        people.push(copy);
    }
    println!(
        "{} people, {} registered twice; peak memory before matching {:.0} MiB",
        people.len(),
        duplicates,
        peak_memory_mib().unwrap_or(f64::NAN)
    );
    let started = Instant::now();
    let result = run(&people, &Training::default());
    let seconds = started.elapsed().as_secs_f64();
    let evaluation = evaluate(&result, &people, &truth, LINK_THRESHOLD);
    if std::env::var_os("CHARTROOM_BENCH_SHOW_MODEL").is_some() {
        println!("lambda {:.6}", result.model.lambda);
        let mut shown = 0;
        for pair in result.pairs.iter().filter(|p| p.probability >= LINK_THRESHOLD) {
            let (a, b) = (&people[pair.a as usize], &people[pair.b as usize]);
            let key = if a.id < b.id { (a.id.clone(), b.id.clone()) } else { (b.id.clone(), a.id.clone()) };
            if !truth.contains(&key) && shown < 5 {
                shown += 1;
                println!("false link {:.4} {:?}\n  {a:?}\n  {b:?}", pair.probability, pair.vector);
            }
        }
        for (field, definition) in mpi::compare::FIELDS.iter().enumerate() {
            let show = |v: &[f64]| v[1..].iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" ");
            println!(
                "{:<10} m {}  u {}",
                definition.name,
                show(&result.model.m[field]),
                show(&result.model.u[field])
            );
        }
    }
    println!(
        "deduplicated in {seconds:.1} s: {} candidate pairs, EM {} iterations; at {LINK_THRESHOLD}: precision {:.4}, recall {:.4}, F1 {:.4}; peak memory {:.0} MiB",
        result.candidates,
        result.model.iterations,
        evaluation.precision,
        evaluation.recall,
        evaluation.f1,
        peak_memory_mib().unwrap_or(f64::NAN)
    );
    Ok(ExitCode::SUCCESS)
}
