//! `chartroom hl7 import FILE`: HL7 v2 messages from a file, applied to the record exactly as
//! the MLLP listener applies them (the same mapping, policy and audit), each acknowledged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

#[derive(clap::Args)]
pub struct Hl7Args {
    #[command(subcommand)]
    command: Hl7Command,
}

#[derive(Subcommand)]
enum Hl7Command {
    /// Apply the messages of FILE: MLLP-framed, or one after another with each starting at
    /// an MSH segment. Prints what each was acknowledged with; exits 1 if any was not AA.
    Import {
        #[command(flatten)]
        store: crate::StoreArgs,
        /// The messages.
        file: PathBuf,
        /// Write every ACK here (MLLP-framed, in order).
        #[arg(long)]
        acks: Option<PathBuf>,
        /// Who the import acts as, in the audit trail (with the HIM technician's rights).
        #[arg(long, default_value = "hl7-import")]
        by: String,
    },
}

/// The messages of a file: MLLP frames when it has any, else each MSH starts one.
fn split_messages(bytes: &[u8]) -> Result<Vec<String>> {
    if bytes.contains(&hl7::mllp::START) {
        let mut decoder = hl7::mllp::Decoder::new(usize::MAX);
        decoder.feed(bytes);
        let mut messages = Vec::new();
        while let Some(payload) = decoder.next_message().map_err(|e| anyhow::anyhow!("{e}"))? {
            messages.push(String::from_utf8_lossy(&payload).into_owned());
        }
        if decoder.in_frame() {
            bail!("the file ends inside a message (after {} whole ones): no end of block", messages.len());
        }
        return Ok(messages);
    }
    let text = String::from_utf8_lossy(bytes);
    let mut messages: Vec<String> = Vec::new();
    for segment in text.split(['\r', '\n']).filter(|s| !s.trim().is_empty()) {
        if segment.starts_with("MSH") || messages.is_empty() {
            messages.push(String::new());
        }
        if let Some(current) = messages.last_mut() {
            current.push_str(segment);
            current.push('\r');
        }
    }
    Ok(messages)
}

pub fn run(args: Hl7Args) -> Result<ExitCode> {
    match args.command {
        Hl7Command::Import { store, file, acks, by } => {
            if by.trim().is_empty() {
                bail!("--by must name who applies the messages");
            }
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let messages = split_messages(&bytes)?;
            let record = store.open_existing(crate::SyncMode::Full)?;
            let api = api::Api::new(record.store(), api::ApiConfig::default());
            let identity = server::MllpConfig::interface(&by).identity;
            let caller = Arc::new(api::Caller::new(identity.clone()));
            let audit = privacy::AuditLog::open(&store.data)
                .with_context(|| format!("cannot open the audit trail in {}", store.data.display()))?;
            let config = api::V2Config::default();
            let runtime = crate::runtime()?;
            let (mut accepted, mut refused) = (0u64, 0u64);
            let mut all_acks = Vec::new();
            let started = std::time::Instant::now();
            for (n, message) in messages.iter().enumerate() {
                let receipt = runtime.block_on(api.receive_v2(Some(caller.clone()), message, &config));
                if !runtime.block_on(audit.record(receipt.access(&identity, None)).durable()) {
                    bail!(
                        "message {} was applied but could not be recorded in the audit trail; stopped",
                        n + 1
                    );
                }
                if receipt.code == hl7::AckCode::Accept {
                    accepted += 1;
                } else {
                    refused += 1;
                    let errors: Vec<&str> =
                        receipt.ack.split('\r').filter(|s| s.starts_with("ERR|")).collect();
                    println!(
                        "message {} ({}): {} {}",
                        n + 1,
                        receipt.event.as_deref().unwrap_or("?"),
                        receipt.code.as_str(),
                        errors.join(" ")
                    );
                }
                all_acks.extend(hl7::mllp::frame(&receipt.ack));
            }
            audit.close();
            record.close();
            if let Some(path) = acks {
                std::fs::write(&path, &all_acks)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            println!(
                "{} messages: {accepted} accepted (AA), {refused} refused (AE/AR) in {:.2} s",
                messages.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(if refused == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
