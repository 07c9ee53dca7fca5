//! `chartroom user add|list|revoke` and `chartroom audit verify|report|disclosures`.
//!
//! The audit commands only read: the trail (`privacy.sqlite`, SQLite in WAL mode, no lock of
//! its own) through a read-only [`privacy::TrailSnapshot`] and the record through a
//! read-only store, so they run beside the server that appends to both. `user add` and
//! `user revoke` write the users table, which SQLite lets it do beside the server too (the server looks tokens
//! up as requests arrive, so the new one works at once).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::DataArgs;

#[derive(clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Adds a user (or replaces their token); the token is printed as the last line, and only
    /// its hash is kept. Works while the server runs (it accepts the new token at once); the
    /// data directory must exist (made by `serve`, `import` or `demo`, or beforehand).
    Add {
        name: String,
        /// clinician, coder, him-technician, privacy-officer, analyst, patient or admin.
        #[arg(long)]
        role: String,
        /// For a patient: the id of the Patient they are.
        #[arg(long)]
        patient: Option<String>,
        /// The FHIR resource the user is (`Practitioner/prac-001`).
        #[arg(long)]
        fhir_user: Option<String>,
        #[command(flatten)]
        at: TablesArgs,
    },
    /// Lists the users: name, role, the patient or FHIR resource they are, when their token
    /// was issued (tokens themselves are never kept); then the tokens revoked or replaced.
    List {
        #[command(flatten)]
        at: TablesArgs,
    },
    /// Sets the password the user signs in with at the authorization server (SMART apps),
    /// read from standard input (one line; at least 12 characters). Only a salted PBKDF2
    /// hash is kept.
    Password {
        name: String,
        #[command(flatten)]
        at: TablesArgs,
    },
    /// Removes a user and their token: a running server refuses it within 10 seconds.
    Revoke {
        name: String,
        #[command(flatten)]
        at: TablesArgs,
    },
}

#[derive(clap::Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(clap::Subcommand)]
enum ClientCommand {
    /// Registers an app or backend service; prints its client id as the last line.
    Add {
        name: String,
        /// Where the authorization server may send a user back (https, or http to localhost
        /// for a native app); compared exactly. Repeat for several.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// An app that keeps no secret (browser, phone): PKCE protects its codes.
        #[arg(long, conflicts_with = "jwks", required_unless_present = "jwks")]
        public: bool,
        /// The client's public keys (a JWKS file): it authenticates with signed assertions
        /// (backend services).
        #[arg(long)]
        jwks: Option<std::path::PathBuf>,
        #[command(flatten)]
        at: TablesArgs,
    },
    /// Lists the clients: id, name, how they authenticate, redirect URIs.
    List {
        #[command(flatten)]
        at: TablesArgs,
    },
    /// Removes a client: it obtains no further token.
    Revoke {
        id: String,
        #[command(flatten)]
        at: TablesArgs,
    },
}

/// Where the users and clients are: the server's data directory, or (for the servers of a
/// PostgreSQL record) the record's database, which all of them share.
#[derive(clap::Args)]
pub struct TablesArgs {
    /// Data directory of the server; it must exist.
    #[arg(long, default_value = "./chartroom-data")]
    data: std::path::PathBuf,
    /// The PostgreSQL record the servers serve (their `--store`): users and clients are kept
    /// in its database, one set for every server of the record.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema the record lives in.
    #[arg(long, default_value = "chartroom", requires = "store")]
    store_schema: String,
}

impl TablesArgs {
    fn open(&self) -> Result<std::sync::Arc<database::Database>> {
        match &self.store {
            Some(url) => crate::record::shared_tables(url, &self.store_schema),
            None => {
                users_directory(&self.data)?;
                Ok(privacy::open_directory(&self.data)?)
            }
        }
    }

    fn users(&self) -> Result<privacy::Users> {
        Ok(privacy::Users::on(self.open()?)?)
    }

    fn clients(&self) -> Result<privacy::Clients> {
        Ok(privacy::Clients::on(self.open()?)?)
    }

    /// Where, for messages.
    fn describe(&self) -> String {
        match &self.store {
            Some(url) => database::redact(url),
            None => self.data.display().to_string(),
        }
    }
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Checks the hash chain: reports every edited, deleted, inserted or moved entry; exits 1
    /// when any is found.
    Verify {
        #[command(flatten)]
        store: DataArgs,
    },
    /// Accesses worth a privacy officer's look: no treatment relationship, same surname or
    /// address, employee-patients and VIPs, unusual volume, break-the-glass.
    Report {
        #[command(flatten)]
        store: DataArgs,
    },
    /// Who accessed a patient's record, when and why (the accounting of disclosures).
    Disclosures {
        /// The Patient's id.
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        store: DataArgs,
    },
}

pub fn run_user(args: UserArgs) -> Result<ExitCode> {
    match args.command {
        UserCommand::Add { name, role, patient, fhir_user, at } => {
            let role = privacy::Role::parse(&role)?;
            // The users table shares its database with the audit trail a running server
            // appends to: SQLite serializes the two, waiting up to 5 s for the server's commit.
            let token =
                at.users()?.add(&name, role, patient.as_deref(), fhir_user.as_deref()).map_err(|error| {
                    match error {
                    privacy::Error::Tables(_) => anyhow::Error::new(error).context(format!(
                        "cannot add the user to {} (if a server is busy writing its audit trail, try again)",
                        at.describe()
                    )),
                    other => other.into(),
                }
                })?;
            println!(
                "user {name} ({}) added to {}; their API token (shown once):",
                role.as_str(),
                at.describe()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::List { at } => {
            let table = at.users()?;
            let users = table.list()?;
            println!("{:<24} {:<16} {:<28} issued", "user", "role", "is");
            for ((name, role, patient, fhir_user), issued) in &users {
                let is = match (patient, fhir_user) {
                    (Some(patient), _) => format!("Patient/{patient}"),
                    (None, Some(fhir_user)) => fhir_user.clone(),
                    (None, None) => "-".into(),
                };
                println!("{name:<24} {:<16} {is:<28} {issued}", role.as_str());
            }
            println!("{} users in {}", users.len(), at.describe());
            let revoked = table.revocations()?;
            if !revoked.is_empty() {
                println!("\ntokens revoked or replaced (newest first):");
                println!("{:<24} {:<16} {:<28} {:<28} why", "user", "role", "issued", "ended");
                for r in &revoked {
                    println!("{:<24} {:<16} {:<28} {:<28} {}", r.name, r.role, r.issued, r.revoked, r.why);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Password { name, at } => {
            let users = at.users()?;
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("new password for {name} (input is shown; pipe it in to keep it off the screen):");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\n', '\r']);
            if users.set_password(&name, password)? {
                println!("password set for {name}: they can sign in to SMART apps");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no user {name} in {} (`chartroom user add` first)", at.describe());
                Ok(ExitCode::from(1))
            }
        }
        UserCommand::Revoke { name, at } => {
            if at.users()?.revoke(&name)? {
                println!(
                    "user {name} revoked: their token no longer works (a running server refuses it within 10 s)"
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no user {name} in {} (`chartroom user list` shows them)", at.describe());
                Ok(ExitCode::from(1))
            }
        }
    }
}

pub fn run_client(args: ClientArgs) -> Result<ExitCode> {
    match args.command {
        ClientCommand::Add { name, redirect_uris, public: _, jwks, at } => {
            let auth = match jwks {
                None => privacy::ClientAuth::Public,
                Some(path) => privacy::ClientAuth::PrivateKeyJwt {
                    jwks: std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read the JWKS {}", path.display()))?,
                },
            };
            let client = at.clients()?.add(&name, &redirect_uris, auth)?;
            println!("client {name} registered in {}; its client id:", at.describe());
            println!("{}", client.id);
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::List { at } => {
            let clients = at.clients()?.list()?;
            println!("{:<36} {:<24} {:<16} redirect URIs", "client id", "name", "authenticates");
            for client in &clients {
                let auth = match client.auth {
                    privacy::ClientAuth::Public => "public (PKCE)",
                    privacy::ClientAuth::PrivateKeyJwt { .. } => "signed assertion",
                };
                println!(
                    "{:<36} {:<24} {auth:<16} {}",
                    client.id,
                    client.name,
                    client.redirect_uris.join(" ")
                );
            }
            println!("{} clients in {}", clients.len(), at.describe());
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Revoke { id, at } => {
            if at.clients()?.revoke(&id)? {
                println!("client {id} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no client {id} in {} (`chartroom client list` shows them)", at.describe());
                Ok(ExitCode::from(1))
            }
        }
    }
}

pub fn run_audit(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify { store } => {
            // A server whose record is in PostgreSQL keeps only its trail (and users) here.
            if !store.data.join(privacy::users::PRIVACY_FILE).is_file() {
                store.check()?;
            }
            crate::snapshot_notice(&store.data);
            let result = privacy::audit::verify(&store.data)
                .with_context(|| format!("cannot verify the audit trail of {}", store.data.display()))?;
            for problem in &result.problems {
                println!("{problem}");
            }
            // Not tampering, but what the privacy office should know of: runs that ended
            // without closing the trail (under fast durability their last moments may lack
            // entries).
            for (seq, recorded, note) in &result.unclean_runs {
                println!("note: entry {seq} ({recorded}): {note}");
            }
            println!(
                "{} entries checked: {}",
                result.entries,
                if result.problems.is_empty() {
                    "the chain is intact".to_string()
                } else {
                    format!("{} problems", result.problems.len())
                }
            );
            Ok(if result.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        AuditCommand::Report { store } => {
            store.check()?;
            let trail = privacy::TrailSnapshot::open(&store.data)?;
            let entries = trail.entries()?;
            // The users of a PostgreSQL record are in its database, not the trail's.
            let users = match &store.store {
                Some(url) => {
                    privacy::Users::on(crate::record::shared_tables(url, &store.store_schema)?)?.all()?
                }
                None => trail.users()?,
            };
            let facts = facts(&store, &users)?;
            drop(trail);
            let findings = privacy::monitor::review(&entries, &facts);
            print!("{}", access_report(entries.len(), &findings));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Disclosures { patient, store } => {
            store.check()?;
            crate::snapshot_notice(&store.data);
            let events = privacy::TrailSnapshot::open(&store.data)?
                .events_for_patient(&format!("Patient/{patient}"))?;
            print!("{}", disclosures(&patient, &events));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The access-monitoring report: one line per kind of finding, user and patient, with how
/// many accesses and over what time, under a header; then the totals by kind.
fn access_report(reviewed: usize, findings: &[privacy::monitor::Finding]) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    struct Group<'a> {
        accesses: usize,
        first: &'a str,
        last: &'a str,
        detail: &'a str,
    }
    let mut groups: BTreeMap<(&str, &str, &str), Group> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in findings {
        *kinds.entry(finding.kind.as_str()).or_default() += 1;
        let key = (finding.kind.as_str(), finding.user.as_str(), finding.patient.as_deref().unwrap_or("-"));
        let group = groups.entry(key).or_insert(Group {
            accesses: 0,
            first: &finding.recorded,
            last: &finding.recorded,
            detail: &finding.detail,
        });
        group.accesses += 1;
        group.first = group.first.min(finding.recorded.as_str());
        group.last = group.last.max(finding.recorded.as_str());
    }
    let mut out = String::new();
    if !groups.is_empty() {
        let _ = writeln!(
            out,
            "{:<26} {:<20} {:<22} {:>8}  {:<24} {:<24} why",
            "finding", "user", "patient", "accesses", "first", "last"
        );
        for ((kind, user, patient), group) in &groups {
            let _ = writeln!(
                out,
                "{kind:<26} {user:<20} {patient:<22} {:>8}  {:<24} {:<24} {}",
                group.accesses, group.first, group.last, group.detail
            );
        }
        out.push('\n');
    }
    let summary: Vec<String> = kinds.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    let _ = writeln!(
        out,
        "{reviewed} accesses reviewed: {}",
        if summary.is_empty() {
            "nothing to look at".to_string()
        } else {
            format!("{} (in {} user-patient groups)", summary.join(", "), groups.len())
        }
    );
    out
}

/// The accounting of disclosures of one patient's record: when, who in what role, what,
/// for what purpose (as the request stated it, else the one the role implies, marked so),
/// and whether it was allowed.
fn disclosures(patient: &str, events: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ =
        writeln!(out, "{:<24} {:<20} {:<16} {:<12} {:<36} outcome", "when", "who", "role", "what", "purpose");
    for event in events {
        let agent = &event["agent"][0];
        let who = agent["who"]["identifier"]["value"].as_str().unwrap_or("?");
        let role = agent["role"][0]["text"].as_str().unwrap_or("");
        let purpose = match agent["purposeOfUse"][0]["coding"][0]["code"].as_str() {
            Some(stated) => format!("{stated} (stated)"),
            None => match privacy::Role::parse(role) {
                Ok(role) => {
                    let (code, display) = role.usual_purpose();
                    format!("{code} ({display}, implied by role)")
                }
                Err(_) => "not stated".to_string(),
            },
        };
        let what = event["subtype"][0]["code"].as_str().unwrap_or("?");
        let outcome = if event["outcome"] == "0" { "allowed" } else { "refused" };
        let _ = writeln!(
            out,
            "{:<24} {who:<20} {role:<16} {what:<12} {purpose:<36} {outcome}",
            event["recorded"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(out, "{} accesses to Patient/{patient}", events.len());
    out
}

/// Where `user` and `client` commands may write: an existing directory (a data directory, or
/// one made for it before the first `serve`, as users are often added first). A missing path
/// is most likely a mistyped `--data`: refused, and not created, so a token or client is never
/// issued for a directory no server reads.
fn users_directory(data: &Path) -> Result<()> {
    if data.is_dir() {
        return Ok(());
    }
    bail!(
        "{} is not a Chartroom data directory (it does not exist); give the server's data directory \
         (a data directory is made by `chartroom serve`, `import` or `demo`, or make an empty one first)",
        data.display()
    )
}

/// What the access-monitoring report needs from the record and the users.
fn facts(store_args: &DataArgs, users: &[privacy::users::UserRecord]) -> Result<privacy::monitor::Facts> {
    let mut builder = privacy::monitor::FactsBuilder::new(users);
    let store = store_args.open_read_only()?;
    for resource_type in privacy::monitor::FactsBuilder::TYPES {
        store.as_ref().scan_type(resource_type, None, &mut |resource_type, id, body| {
            if let Ok(resource) = serde_json::from_slice::<serde_json::Value>(body) {
                builder.add(resource_type, id, &resource);
            }
            Ok(())
        })?;
    }
    store.close();
    Ok(builder.finish())
}
