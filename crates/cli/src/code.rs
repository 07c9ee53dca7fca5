//! `chartroom code` (ICD-10-CM at the command line) and `chartroom coding` (the coder's
//! worklist over a data directory).

use std::process::ExitCode;

use anyhow::{Result, bail};
use suggest::Suggester;
use terminology::icd10cm::{Icd10Cm, Kind, NoteKind};

use crate::DataArgs;

#[derive(clap::Args)]
pub struct CodeArgs {
    #[command(subcommand)]
    command: CodeCommand,
}

#[derive(clap::Subcommand)]
enum CodeCommand {
    /// Show an ICD-10-CM code: title, billable or not, hierarchy, and every note that applies
    /// (with where it is declared).
    Lookup {
        /// The code, with or without the dot (E11.9, S72001A), or a block (E08-E13).
        code: String,
    },
    /// Find ICD-10-CM codes whose titles contain every word of TEXT (word prefixes).
    Search {
        text: Vec<String>,
        /// Most codes to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only billable codes.
        #[arg(long)]
        billable: bool,
    },
    /// Suggest billable ICD-10-CM codes for clinical text (a phrase, or a note with --note or
    /// from a file with --file), ranked, with the words that matched.
    Suggest {
        text: Vec<String>,
        /// Read the text from this file (a clinical note).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Treat the text as a note: read clause by clause, skip negated findings.
        #[arg(long)]
        note: bool,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(clap::Args)]
pub struct CodingArgs {
    #[command(subcommand)]
    command: CodingCommand,
}

#[derive(clap::Subcommand)]
enum CodingCommand {
    /// Finished encounters with no coded diagnosis or with failing coding edits, oldest
    /// discharge first, with the reasons.
    Worklist {
        #[command(flatten)]
        store: DataArgs,
        /// Most encounters to list.
        #[arg(long)]
        limit: Option<usize>,
    },
}

pub fn run_code(args: CodeArgs) -> Result<ExitCode> {
    match args.command {
        CodeCommand::Lookup { code } => lookup(&code),
        CodeCommand::Search { text, limit, billable } => search(&text.join(" "), limit, billable),
        CodeCommand::Suggest { text, file, note, limit } => {
            let (text, note) = match file {
                Some(path) => (std::fs::read_to_string(&path)?, true),
                None => (text.join(" "), note),
            };
            if text.trim().is_empty() {
                bail!("give the text to suggest codes for (or --file)");
            }
            let suggester = Suggester::icd10cm();
            let suggestions =
                if note { suggester.suggest_note(&text, limit) } else { suggester.suggest(&text, limit) };
            if suggestions.is_empty() {
                println!("no suggestion");
            }
            for (rank, s) in suggestions.iter().enumerate() {
                println!("{:>2}. {:<9} {:>7.2}  {}", rank + 1, s.code, s.score, s.display);
                println!("    matched: {}", s.matched_words.join(", "));
                if let Some(evidence) = &s.evidence {
                    println!("    from: \"{evidence}\"");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn note_kind_label(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::InclusionTerm => "Inclusion term",
        NoteKind::Includes => "Includes",
        NoteKind::Excludes1 => "Excludes1",
        NoteKind::Excludes2 => "Excludes2",
        NoteKind::CodeFirst => "Code first",
        NoteKind::UseAdditionalCode => "Use additional code",
        NoteKind::CodeAlso => "Code also",
        NoteKind::Note => "Note",
        NoteKind::SevenCharacterNote => "7th character note",
    }
}

fn lookup(code: &str) -> Result<ExitCode> {
    let icd = Icd10Cm::get();
    let Some(concept) = icd.lookup(code) else {
        eprintln!("{code}: not an ICD-10-CM {} code", icd.version());
        return Ok(ExitCode::from(1));
    };
    let kind = match concept.kind() {
        Kind::Chapter => "chapter",
        Kind::Block => "block",
        Kind::Category => "category",
        Kind::Code => "code",
    };
    println!("{}  {}", concept.code(), concept.display());
    println!(
        "  {kind}, {}",
        if concept.billable() {
            "billable (valid for submission)"
        } else {
            "not billable (has codes below it)"
        }
    );
    let path: Vec<String> = concept.ancestors().map(|a| format!("{} {}", a.code(), a.display())).collect();
    for (depth, ancestor) in path.iter().rev().enumerate() {
        println!("  {}{ancestor}", "  ".repeat(depth));
    }
    let children: Vec<_> = concept.children().collect();
    if !children.is_empty() {
        println!("  codes below: {}", children.len());
        for child in children.iter().take(12) {
            println!("    {} {}", child.code(), child.display());
        }
        if children.len() > 12 {
            println!("    ...");
        }
    }
    for (declared_at, note) in concept.notes() {
        let from = if declared_at.code() == concept.code() {
            String::new()
        } else {
            format!(" (from {})", declared_at.code())
        };
        println!("  {}{from}: {}", note_kind_label(note.kind), note.text);
    }
    Ok(ExitCode::SUCCESS)
}

fn search(text: &str, limit: usize, billable_only: bool) -> Result<ExitCode> {
    let words: Vec<String> = text.split_whitespace().map(|w| w.to_lowercase()).collect();
    if words.is_empty() {
        bail!("give words to search for");
    }
    let icd = Icd10Cm::get();
    let mut found = 0;
    for concept in icd.concepts() {
        if billable_only && !concept.billable() {
            continue;
        }
        let title = concept.display().to_lowercase();
        let title_words: Vec<&str> = title.split(|c: char| !c.is_alphanumeric()).collect();
        if words.iter().all(|w| title_words.iter().any(|t| t.starts_with(w.as_str()))) {
            found += 1;
            if found <= limit {
                let mark = if concept.billable() { ' ' } else { '*' };
                println!("{mark}{:<9} {}", concept.code(), concept.display());
            }
        }
    }
    if found > limit {
        println!("... {found} codes in all (--limit to see more)");
    } else if found == 0 {
        println!("no code matches");
    }
    if found > 0 {
        println!("(* = not billable: has codes below it)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_coding(args: CodingArgs) -> Result<ExitCode> {
    match args.command {
        CodingCommand::Worklist { store, limit } => {
            let store = store.open_read_only()?;
            let items = coding::worklist(store.as_ref(), limit)?;
            store.close();
            for item in &items {
                println!(
                    "Encounter/{}  discharged {}  {}{}",
                    item.encounter_id,
                    item.discharged.as_deref().unwrap_or("(no date)"),
                    item.patient.as_deref().unwrap_or("(no patient)"),
                    item.class.as_deref().map(|c| format!("  class {c}")).unwrap_or_default()
                );
                for reason in &item.reasons {
                    match reason {
                        coding::Reason::NotCoded => println!("    not-coded: no ICD-10-CM diagnosis"),
                        coding::Reason::Edit(edit) => {
                            println!(
                                "    {} [{}] {}: {}",
                                edit.id.as_str(),
                                edit.severity.as_str(),
                                edit.code,
                                edit.message
                            )
                        }
                    }
                }
            }
            println!("{} encounters need coding", items.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
