//! `chartroom-bench mixed`: many clients reading and writing against a `chartroom serve`
//! process that is killed with SIGKILL part way through and started again on the same data
//! directory. Afterwards every acknowledged write, every written resource's version history
//! and the audit trail are checked against what the clients were told.
//!
//! `--read-cost` instead measures what strict audit durability costs reads: the same
//! read-only load against `--audit-durability strict` and `fast`, in alternating rounds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{DefaultHasher, Hasher as _};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::{Api, ApiConfig};
use serde_json::Value;

use crate::bench::{self, HttpClient, WorkDir};
use crate::fixture;

#[derive(clap::Args)]
pub struct MixedArgs {
    /// Seconds of load (default 180; with --read-cost, 20 per measured round).
    #[arg(long)]
    seconds: Option<u64>,
    /// Concurrent clients, each on its own keep-alive connection and writing its own resources.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Percentage of requests that are writes (a quarter creates, the rest updates).
    #[arg(long, default_value_t = 20)]
    write_percent: u64,
    /// Second of the run at which the server gets SIGKILL and is started again (default:
    /// half time).
    #[arg(long)]
    kill_at: Option<u64>,
    /// Leave the server running for the whole load.
    #[arg(long, conflicts_with = "kill_at")]
    no_kill: bool,
    /// The server's --sync (default: serve's, full); the audit trail is synced as the store is.
    #[arg(long, value_enum)]
    sync: Option<SyncMode>,
    /// The server's --audit-durability.
    #[arg(long, value_enum, default_value = "strict")]
    audit_durability: AuditDurability,
    /// Patients in the population loaded first (25 resources each).
    #[arg(long, default_value_t = 400)]
    patients: usize,
    /// Instead of the mixed load: GET Patient/[id] from --connections connections against a
    /// server with strict and one with fast audit durability, alternating for --rounds.
    #[arg(long)]
    read_cost: bool,
    /// Connections of the --read-cost load.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Rounds of each durability with --read-cost; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Working directory (default: a temporary one, removed afterwards unless a check failed).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The `chartroom` binary to run (default: the one beside this benchmark's binary, as
    /// `cargo build --release` leaves them).
    #[arg(long)]
    chartroom: Option<PathBuf>,
}

/// `chartroom serve --sync`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SyncMode {
    Full,
    Normal,
}

impl MixedArgs {
    /// The server binary under test: given, or the sibling of this executable.
    fn chartroom_binary(&self) -> Result<PathBuf> {
        if let Some(path) = &self.chartroom {
            return Ok(path.clone());
        }
        let own = std::env::current_exe().context("cannot find this benchmark's binary")?;
        let sibling = own.with_file_name(format!("chartroom{}", std::env::consts::EXE_SUFFIX));
        if !sibling.is_file() {
            bail!(
                "no chartroom binary at {} (build it with `cargo build --release -p chartroom`, or pass --chartroom)",
                sibling.display()
            );
        }
        Ok(sibling)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuditDurability {
    Strict,
    Fast,
}

impl AuditDurability {
    fn as_str(self) -> &'static str {
        match self {
            AuditDurability::Strict => "strict",
            AuditDurability::Fast => "fast",
        }
    }
}

pub fn run(args: MixedArgs) -> Result<ExitCode> {
    println!("machine: {}", bench::machine());
    if args.read_cost { read_cost(&args) } else { mixed(&args) }
}

// ---------------------------------------------------------------------------------------
// The population and the server process

/// A data directory holding the fixture population and a clinician's token.
struct Population {
    data: PathBuf,
    patients: usize,
    resources: u64,
    token: String,
}

fn prepare_population(work: &Path, patients: usize) -> Result<Population> {
    let input = work.join("ndjson");
    let counts = fixture::write_ndjson(&input, patients.max(1) * 25, 11)
        .with_context(|| format!("cannot write the population to {}", input.display()))?;
    let data = work.join("data");
    let store = bench::open_store(&data, true)?;
    let api = Api::new(store.clone(), ApiConfig::default());
    let report = api::import::import(&api, &input, &api::import::ImportOptions::default(), &|_| {})
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Closing syncs the import; the server then opens the directory as `chartroom serve` does.
    store.close();
    if let Some(first) = report.rejections.first() {
        bail!("{} resources of the population were rejected, first: {first}", report.rejections.len());
    }
    let users = privacy::Users::open(&data).context("cannot open the users")?;
    let token = users.add("bench-clinician", privacy::Role::Clinician, None, None)?;
    Ok(Population { data, patients: counts.patients, resources: report.imported, token })
}

fn patient_path(index: usize, patients: usize) -> String {
    format!("/fhir/Patient/pat-{:08}", index % patients.max(1))
}

/// A `chartroom serve` child process; killed if dropped while still running.
struct Server {
    child: Option<Child>,
    address: SocketAddr,
}

impl Server {
    /// Starts `chartroom serve` on a free port over `data`, its stderr appended to `log`, and
    /// waits for the banner that says where it listens.
    fn start(
        exe: &Path,
        data: &Path,
        durability: AuditDurability,
        sync: Option<SyncMode>,
        log: &Path,
    ) -> Result<Server> {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--port", "0", "--audit-durability", durability.as_str()])
            .args(match sync {
                Some(SyncMode::Normal) => &["--sync", "normal"][..],
                Some(SyncMode::Full) => &["--sync", "full"][..],
                None => &[][..],
            })
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("cannot start chartroom serve")?;
        let stdout = child.stdout.take().context("chartroom serve has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // A stale index is rebuilt (and said so) before the banner.
        let banner = lines.by_ref().map_while(|line| line.ok()).find(|line| line.contains("http://"));
        let address = banner.as_deref().and_then(banner_address);
        let Some(address) = address else {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!("chartroom serve did not start (exit {status:?}); see {}", log.display());
        };
        // Nothing else is printed, but a full pipe must never block the server.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child: Some(child), address })
    }

    /// SIGKILL: no shutdown, no final commit of anything.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill chartroom serve")?;
            child.wait().context("cannot reap chartroom serve")?;
        }
        Ok(())
    }

    /// SIGTERM, as an operator stops the server: it finishes and commits the audit trail.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().context("cannot run kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if child.try_wait().context("cannot wait for chartroom serve")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("chartroom serve did not stop within 60 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `... at http://127.0.0.1:41234/fhir (data: ...)` -> 127.0.0.1:41234.
fn banner_address(line: &str) -> Option<SocketAddr> {
    let url = line.split_whitespace().find(|word| word.starts_with("http://"))?;
    url.trim_start_matches("http://").trim_end_matches("/fhir").parse().ok()
}

// ---------------------------------------------------------------------------------------
// HTTP

/// Replies slower than this count as lost (the client reconnects); far above any latency seen.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One keep-alive HTTP/1.1 connection for any method, with the headers the workload needs:
/// like `bench::HttpClient`, nothing between the timing and the socket.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
    request: Vec<u8>,
    line: String,
}

/// A request of the workload. Every one carries its own `X-Request-Id`.
struct Call<'a> {
    method: &'static str,
    path: &'a str,
    request_id: &'a str,
    if_match: Option<u64>,
    body: Option<&'a [u8]>,
}

struct Reply {
    status: u16,
    /// The version in the `ETag` (`W/"3"`).
    version: Option<u64>,
    body: Vec<u8>,
    /// The server will close the connection after this reply.
    close: bool,
}

impl Connection {
    fn open(address: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Connection {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
            host: address.to_string(),
            request: Vec::with_capacity(2048),
            line: String::with_capacity(256),
        })
    }

    fn send(&mut self, call: &Call, token: &str) -> io::Result<Reply> {
        self.request.clear();
        write!(
            self.request,
            "{} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\nAuthorization: Bearer {token}\r\nX-Request-Id: {}\r\n",
            call.method, call.path, self.host, call.request_id
        )?;
        if let Some(version) = call.if_match {
            write!(self.request, "If-Match: W/\"{version}\"\r\n")?;
        }
        if let Some(body) = call.body {
            write!(
                self.request,
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        self.request.extend_from_slice(b"\r\n");
        if let Some(body) = call.body {
            self.request.extend_from_slice(body);
        }
        self.writer.write_all(&self.request)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let status = self.read_line()?.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        let status = status.ok_or_else(|| invalid("bad status line"))?;
        let (mut length, mut chunked, mut version, mut close) = (None, false, None, false);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "etag" => version = value.trim_start_matches("W/").trim_matches('"').parse().ok(),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else if let Some(length) = length {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            body
        } else if status == 204 || status == 304 {
            Vec::new()
        } else {
            close = true;
            let mut body = Vec::new();
            self.reader.read_to_end(&mut body)?;
            body
        };
        Ok(Reply { status, version, body, close })
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size = self.read_line()?.split(';').next().map(str::trim).unwrap_or("").to_string();
            let size = usize::from_str_radix(&size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            self.read_line()?;
        }
    }

    /// The next line without its CRLF; end of stream is an error (the server went away).
    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn body_hash(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    hasher.finish()
}

/// `mb-{client}-{n}`: unique per request of the run, and read back from the audit trail.
fn request_id(client: u32, number: u32) -> String {
    format!("mb-{client}-{number}")
}

fn parse_request_id(id: &str) -> Option<(u32, u32)> {
    let (client, number) = id.strip_prefix("mb-")?.split_once('-')?;
    Some((client.parse().ok()?, number.parse().ok()?))
}

fn request_key(client: u32, number: u32) -> u64 {
    (u64::from(client) << 32) | u64::from(number)
}

// ---------------------------------------------------------------------------------------
// The mixed workload: clients

/// What each client does next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// `GET Patient/[id]` of the population.
    ReadPatient,
    /// `GET Observation/[id]` of one of the client's own resources: at least the version
    /// last acknowledged to it.
    ReadOwn,
    /// `GET Observation?subject=Patient/[id]&_count=10`.
    Search,
    /// `PUT Observation/[new id]`: a create with an id the client chose.
    Create,
    /// `PUT Observation/[id]` with `If-Match` on the version the client last saw.
    Update,
}

const OPERATIONS: [Operation; 5] =
    [Operation::ReadPatient, Operation::ReadOwn, Operation::Search, Operation::Create, Operation::Update];

impl Operation {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Operation::ReadPatient => "read Patient/[id]",
            Operation::ReadOwn => "read own Observation/[id]",
            Operation::Search => "search Observation?subject",
            Operation::Create => "create (PUT new id)",
            Operation::Update => "update (PUT, If-Match)",
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Operation::ReadPatient | Operation::ReadOwn | Operation::Search)
    }

    fn expected_status(self) -> u16 {
        if self == Operation::Create { 201 } else { 200 }
    }
}

/// SplitMix64: each client its own reproducible stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// What a client knows of one of its resources.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    /// The current version.
    Version(u64),
    /// A write went out and no answer came back: read the resource before writing again.
    Unsettled,
    /// Not stored (its create was refused, or never arrived).
    Absent,
}

#[derive(Clone, Copy)]
enum WriteOutcome {
    /// Answered 2xx with this version and body.
    Acknowledged { version: u64, body_hash: u64 },
    /// Sent, but the connection broke before the answer: stored or not, both are right.
    InDoubt,
    /// Answered with this (non-2xx) status: must not be stored.
    Refused(u16),
}

struct WriteRecord {
    request: u32,
    outcome: WriteOutcome,
}

/// A resource one client creates and alone updates, with every write it sent, in order.
struct Owned {
    id: String,
    subject: usize,
    vital: usize,
    known: Known,
    writes: Vec<WriteRecord>,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    by_class: [u64; 6],
    /// Requests sent whose answer never came (the connection broke).
    connection_errors: u64,
    /// Connection attempts refused (the server was down).
    refused_connects: u64,
    /// Request numbers that were answered, for the audit check.
    delivered: Vec<u32>,
    /// Microseconds per answered request, by operation.
    latencies: [Vec<u32>; 5],
    unexpected: u64,
    unexpected_examples: Vec<String>,
    /// Reads of an own resource older than the version last acknowledged.
    stale_reads: u64,
    stale_examples: Vec<String>,
    /// Reads that settled what a broken connection left unknown.
    settling_reads: u64,
}

impl Tally {
    fn unexpected(&mut self, what: String) {
        self.unexpected += 1;
        if self.unexpected_examples.len() < 5 {
            self.unexpected_examples.push(what);
        }
    }

    fn answered(&mut self, number: u32, status: u16) {
        self.delivered.push(number);
        self.by_class[usize::from(status / 100).min(5)] += 1;
    }
}

/// Shared by the clients and the conductor.
struct Shared {
    /// Where the server listens now (it moves to a new port when restarted).
    address: RwLock<SocketAddr>,
    stop: AtomicBool,
    started: Instant,
    /// Answers per second of the run.
    timeline: Vec<AtomicU64>,
    token: String,
    patients: usize,
    write_percent: u64,
}

impl Shared {
    fn address(&self) -> SocketAddr {
        *self.address.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count_answer(&self) {
        let second = self.started.elapsed().as_secs() as usize;
        if let Some(slot) = self.timeline.get(second) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Client {
    id: u32,
    rng: Rng,
    next_request: u32,
    connection: Option<Connection>,
    owned: Vec<Owned>,
    tally: Tally,
}

impl Client {
    fn new(id: u32) -> Client {
        Client {
            id,
            rng: Rng(0x5EED_0000 + u64::from(id)),
            next_request: 0,
            connection: None,
            owned: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn run(mut self, shared: &Shared) -> Client {
        while !shared.stop.load(Ordering::Relaxed) {
            if self.connection.is_none() && !self.connect(shared) {
                continue;
            }
            if let Some(index) = self.owned.iter().position(|o| o.known == Known::Unsettled) {
                self.settle(index, shared);
                continue;
            }
            let operation = self.choose(shared.write_percent);
            self.perform(operation, shared);
        }
        self.connection = None;
        self
    }

    /// A new connection to wherever the server is now; while it is down, retried shortly.
    fn connect(&mut self, shared: &Shared) -> bool {
        match Connection::open(shared.address()) {
            Ok(connection) => {
                self.connection = Some(connection);
                true
            }
            Err(_) => {
                self.tally.refused_connects += 1;
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        }
    }

    fn choose(&mut self, write_percent: u64) -> Operation {
        if self.rng.below(100) < write_percent {
            // A quarter of writes create, the rest update what exists.
            return if self.rng.below(4) == 0 || self.known_resource().is_none() {
                Operation::Create
            } else {
                Operation::Update
            };
        }
        match self.rng.below(10) {
            0..6 => Operation::ReadPatient,
            6..8 if self.known_resource().is_some() => Operation::ReadOwn,
            6..8 => Operation::ReadPatient,
            _ => Operation::Search,
        }
    }

    /// Whether any own resource has a known version (and so can be read or updated).
    fn known_resource(&self) -> Option<usize> {
        self.owned.iter().rposition(|o| matches!(o.known, Known::Version(_)))
    }

    /// A random own resource with a known version.
    fn pick_known(&mut self) -> Option<usize> {
        for _ in 0..8 {
            let index = self.rng.below(self.owned.len() as u64) as usize;
            if matches!(self.owned[index].known, Known::Version(_)) {
                return Some(index);
            }
        }
        self.known_resource()
    }

    fn next_request_id(&mut self) -> (u32, String) {
        let number = self.next_request;
        self.next_request += 1;
        (number, request_id(self.id, number))
    }

    /// Sends one request; `None` when the connection broke before the answer.
    fn exchange(&mut self, shared: &Shared, call: &Call) -> Option<(Reply, Duration)> {
        let connection = self.connection.as_mut()?;
        self.tally.sent += 1;
        let started = Instant::now();
        match connection.send(call, &shared.token) {
            Ok(reply) => {
                let elapsed = started.elapsed();
                shared.count_answer();
                if reply.close {
                    self.connection = None;
                }
                Some((reply, elapsed))
            }
            Err(_) => {
                self.tally.connection_errors += 1;
                self.connection = None;
                None
            }
        }
    }

    fn perform(&mut self, operation: Operation, shared: &Shared) {
        match operation {
            Operation::ReadPatient => {
                let path = patient_path(self.rng.below(shared.patients as u64) as usize, shared.patients);
                self.read(operation, &path, None, shared);
            }
            Operation::Search => {
                let patient = self.rng.below(shared.patients as u64);
                let path = format!("/fhir/Observation?subject=Patient/pat-{patient:08}&_count=10");
                self.read(operation, &path, None, shared);
            }
            Operation::ReadOwn => {
                if let Some(index) = self.pick_known() {
                    let path = format!("/fhir/Observation/{}", self.owned[index].id);
                    self.read(operation, &path, Some(index), shared);
                }
            }
            Operation::Create => self.create(shared),
            Operation::Update => {
                if let Some(index) = self.pick_known() {
                    self.update(index, shared);
                }
            }
        }
    }

    fn read(&mut self, operation: Operation, path: &str, own: Option<usize>, shared: &Shared) {
        let (number, request_id) = self.next_request_id();
        let call = Call { method: "GET", path, request_id: &request_id, if_match: None, body: None };
        let Some((reply, elapsed)) = self.exchange(shared, &call) else { return };
        self.tally.answered(number, reply.status);
        self.tally.latencies[operation.index()].push(micros(elapsed));
        if reply.status != operation.expected_status() {
            self.tally.unexpected(format!("GET {path} ({request_id}): {}", describe(&reply)));
            return;
        }
        if let Some(index) = own
            && let Known::Version(known) = self.owned[index].known
            && reply.version.is_none_or(|read| read < known)
        {
            self.tally.stale_reads += 1;
            if self.tally.stale_examples.len() < 5 {
                self.tally.stale_examples.push(format!(
                    "GET {path} ({request_id}) returned version {:?} after version {known} was acknowledged",
                    reply.version
                ));
            }
        }
    }

    fn create(&mut self, shared: &Shared) {
        let index = self.owned.len();
        self.owned.push(Owned {
            id: format!("mb-c{}-r{}", self.id, self.next_request),
            subject: self.rng.below(shared.patients as u64) as usize,
            vital: self.rng.below(fixture::VITALS.len() as u64) as usize,
            known: Known::Absent,
            writes: Vec::new(),
        });
        self.write(index, Operation::Create, shared);
    }

    fn update(&mut self, index: usize, shared: &Shared) {
        self.write(index, Operation::Update, shared);
    }

    /// A create or an update of an own resource, its request id in the resource itself so
    /// that each stored version names the request that wrote it.
    fn write(&mut self, index: usize, operation: Operation, shared: &Shared) {
        let (number, request_id) = self.next_request_id();
        let if_match = match (operation, self.owned[index].known) {
            (Operation::Update, Known::Version(version)) => Some(version),
            _ => None,
        };
        let value = self.rng.below(1000);
        let body = observation(&self.owned[index], value, &request_id);
        let path = format!("/fhir/Observation/{}", self.owned[index].id);
        let call = Call { method: "PUT", path: &path, request_id: &request_id, if_match, body: Some(&body) };
        let Some((reply, elapsed)) = self.exchange(shared, &call) else {
            let owned = &mut self.owned[index];
            owned.writes.push(WriteRecord { request: number, outcome: WriteOutcome::InDoubt });
            owned.known = Known::Unsettled;
            return;
        };
        self.tally.answered(number, reply.status);
        self.tally.latencies[operation.index()].push(micros(elapsed));
        let expected = reply.status == operation.expected_status()
            && reply.version.is_some_and(|v| if_match.map_or(v == 1, |before| v == before + 1));
        let outcome = match reply.version {
            Some(version) if expected => {
                WriteOutcome::Acknowledged { version, body_hash: body_hash(&reply.body) }
            }
            _ => WriteOutcome::Refused(reply.status),
        };
        if !expected {
            let what = format!("PUT {path} If-Match {if_match:?} ({request_id}): {}", describe(&reply));
            self.tally.unexpected(what);
        }
        let owned = &mut self.owned[index];
        owned.writes.push(WriteRecord { request: number, outcome });
        owned.known = match outcome {
            WriteOutcome::Acknowledged { version, .. } => Known::Version(version),
            // Whatever it is now, read it before the next write.
            _ if operation == Operation::Update => Known::Unsettled,
            _ => Known::Absent,
        };
    }

    /// After a broken connection: reads the resource to learn whether the write in flight
    /// was stored, so that the next update names the version that really is current.
    fn settle(&mut self, index: usize, shared: &Shared) {
        let (number, request_id) = self.next_request_id();
        let path = format!("/fhir/Observation/{}", self.owned[index].id);
        let call = Call { method: "GET", path: &path, request_id: &request_id, if_match: None, body: None };
        let Some((reply, _)) = self.exchange(shared, &call) else { return };
        self.tally.answered(number, reply.status);
        self.tally.settling_reads += 1;
        self.owned[index].known = match (reply.status, reply.version) {
            (200, Some(version)) => Known::Version(version),
            (404, _) => Known::Absent,
            _ => {
                self.tally.unexpected(format!("GET {path} ({request_id}): {}", describe(&reply)));
                Known::Absent
            }
        };
    }
}

/// A vital-sign Observation of the population; `note` names the request that wrote it.
fn observation(owned: &Owned, value: u64, request_id: &str) -> Vec<u8> {
    let (code, display, unit, low, high) = fixture::VITALS[owned.vital];
    let value = low + (high - low) * (value as f64 / 1000.0);
    format!(
        r#"{{"resourceType":"Observation","id":"{}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"Patient/pat-{:08}"}},"effectiveDateTime":"2026-01-15T09:10:00Z","valueQuantity":{{"value":{value:.1},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}},"note":[{{"text":"{request_id}"}}]}}"#,
        owned.id, owned.subject
    )
    .into_bytes()
}

fn describe(reply: &Reply) -> String {
    let text = String::from_utf8_lossy(&reply.body);
    let text: String = text.chars().take(200).collect();
    format!("{} version {:?} {text}", reply.status, reply.version)
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// The mixed workload: the run

/// When the server was killed and how long until it served again.
struct Restart {
    at: Duration,
    down: Duration,
}

fn mixed(args: &MixedArgs) -> Result<ExitCode> {
    let seconds = args.seconds.unwrap_or(180).max(1);
    let kill_at = (!args.no_kill).then(|| args.kill_at.unwrap_or(seconds / 2));
    let work = WorkDir::new(args.work.clone(), "mixed")?;
    let population = prepare_population(&work.path, args.patients)?;
    let log = work.path.join("serve.log");
    let mut server =
        Server::start(&args.chartroom_binary()?, &population.data, args.audit_durability, args.sync, &log)?;
    println!(
        "population: {} patients, {} resources; {} clients, {}% writes, {seconds} s, audit {}, {}",
        population.patients,
        population.resources,
        args.clients,
        args.write_percent,
        args.audit_durability.as_str(),
        kill_at.map_or_else(|| "no kill".to_string(), |at| format!("SIGKILL at {at} s"))
    );
    let shared = Arc::new(Shared {
        address: RwLock::new(server.address),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        timeline: (0..seconds + 120).map(|_| AtomicU64::new(0)).collect(),
        token: population.token.clone(),
        patients: population.patients,
        write_percent: args.write_percent.min(100),
    });
    let threads: Vec<_> = (0..args.clients as u32)
        .map(|id| {
            let shared = shared.clone();
            std::thread::spawn(move || Client::new(id).run(&shared))
        })
        .collect();
    let restart = match kill_at {
        Some(at) if at < seconds => {
            Some(kill_and_restart(&mut server, &shared, at, args, &population, &log)?)
        }
        _ => None,
    };
    sleep_until(shared.started + Duration::from_secs(seconds));
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = shared.started.elapsed();
    let mut clients = Vec::with_capacity(threads.len());
    for thread in threads {
        clients.push(thread.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?);
    }
    let timeline: Vec<u64> = shared.timeline.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let first_verifier = args.clients as u32;
    let (histories, verifier_delivered) =
        read_histories(server.address, &population.token, &clients, first_verifier)?;
    server.stop()?;
    let audit = check_audit(&population.data, &clients, &verifier_delivered)?;
    let findings = Findings::of(&clients, &histories, audit, args.audit_durability);
    print_report(&clients, elapsed, restart.as_ref(), &timeline, &findings);
    if findings.failed() {
        println!(
            "data directory kept for inspection: {} (server log {})",
            population.data.display(),
            log.display()
        );
        // Dropping the work directory would remove the evidence.
        std::mem::forget(work);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn kill_and_restart(
    server: &mut Server,
    shared: &Shared,
    at: u64,
    args: &MixedArgs,
    population: &Population,
    log: &Path,
) -> Result<Restart> {
    sleep_until(shared.started + Duration::from_secs(at));
    let killed = Instant::now();
    server.kill()?;
    *server =
        Server::start(&args.chartroom_binary()?, &population.data, args.audit_durability, args.sync, log)?;
    let down = killed.elapsed();
    *shared.address.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = server.address;
    println!(
        "SIGKILL at {:.1} s; serving again {:.2} s later on {}",
        (killed - shared.started).as_secs_f64(),
        down.as_secs_f64(),
        server.address
    );
    Ok(Restart { at: killed - shared.started, down })
}

// ---------------------------------------------------------------------------------------
// Checks after the run

/// One stored version as `_history/N` returns it.
struct StoredVersion {
    status: u16,
    /// The request id in the version's `note`.
    written_by: Option<String>,
    version_id: Option<String>,
    body_hash: u64,
}

/// (client, resource) -> every stored version, oldest first.
type Histories = HashMap<(u32, usize), Vec<StoredVersion>>;

/// The request numbers answered, per client id.
type Answered = Vec<(u32, Vec<u32>)>;

/// Reads every version of every resource the clients wrote, on a few connections of its own
/// (their request ids are audited too: returned as request numbers per verifier).
fn read_histories(
    address: SocketAddr,
    token: &str,
    clients: &[Client],
    first_verifier: u32,
) -> Result<(Histories, Answered)> {
    let work: Vec<(u32, usize, String)> = clients
        .iter()
        .flat_map(|c| c.owned.iter().enumerate().map(move |(i, o)| (c.id, i, o.id.clone())))
        .collect();
    let next = AtomicUsize::new(0);
    let histories = Mutex::new(Histories::new());
    let delivered = Mutex::new(Vec::new());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..16u32)
            .map(|w| {
                let (work, next, histories, delivered) = (&work, &next, &histories, &delivered);
                scope.spawn(move || -> Result<()> {
                    let mut verifier = Verifier::new(address, token, first_verifier + w)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((client, index, id)) = work.get(i) else { break };
                        let history = verifier.history(id)?;
                        lock(histories).insert((*client, *index), history);
                    }
                    lock(delivered).push((verifier.client, verifier.delivered));
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a verifier thread panicked"))??;
        }
        Ok(())
    })?;
    let histories = histories.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    let delivered = delivered.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok((histories, delivered))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads after the run, each with its own request id.
struct Verifier {
    connection: Connection,
    token: String,
    client: u32,
    next_request: u32,
    delivered: Vec<u32>,
}

impl Verifier {
    fn new(address: SocketAddr, token: &str, client: u32) -> Result<Verifier> {
        let connection = Connection::open(address).context("cannot connect to check the histories")?;
        Ok(Verifier { connection, token: token.to_string(), client, next_request: 0, delivered: Vec::new() })
    }

    fn get(&mut self, path: &str) -> Result<Reply> {
        let number = self.next_request;
        self.next_request += 1;
        let request_id = request_id(self.client, number);
        let call = Call { method: "GET", path, request_id: &request_id, if_match: None, body: None };
        let reply = self.connection.send(&call, &self.token).with_context(|| format!("GET {path}"))?;
        self.delivered.push(number);
        if reply.close {
            bail!("the server closed the connection after GET {path}");
        }
        Ok(reply)
    }

    fn history(&mut self, id: &str) -> Result<Vec<StoredVersion>> {
        let current = self.get(&format!("/fhir/Observation/{id}"))?;
        let versions = match (current.status, current.version) {
            (200, Some(version)) => version,
            (404, _) => 0,
            _ => bail!("GET Observation/{id}: {}", describe(&current)),
        };
        (1..=versions).map(|v| self.version(id, v)).collect()
    }

    fn version(&mut self, id: &str, version: u64) -> Result<StoredVersion> {
        let reply = self.get(&format!("/fhir/Observation/{id}/_history/{version}"))?;
        let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok(StoredVersion {
            status: reply.status,
            written_by: json["note"][0]["text"].as_str().map(str::to_string),
            version_id: json["meta"]["versionId"].as_str().map(str::to_string),
            body_hash: body_hash(&reply.body),
        })
    }
}

/// What the audit trail holds of the run's requests.
struct AuditCheck {
    entries: usize,
    delivered: u64,
    missing: u64,
    missing_examples: Vec<String>,
    /// Entries of requests whose answer never reached the client (in flight at the kill).
    undelivered: u64,
    chain_problems: Vec<String>,
}

fn check_audit(data: &Path, clients: &[Client], verifiers: &Answered) -> Result<AuditCheck> {
    let entries = privacy::audit::entries(data).context("cannot read the audit trail")?;
    let recorded: HashSet<u64> = entries
        .iter()
        .filter_map(|(_, _, access)| access.request_id.as_deref().and_then(parse_request_id))
        .map(|(client, number)| request_key(client, number))
        .collect();
    let answered = clients
        .iter()
        .map(|c| (c.id, &c.tally.delivered))
        .chain(verifiers.iter().map(|(id, delivered)| (*id, delivered)));
    let mut check = AuditCheck {
        entries: entries.len(),
        delivered: 0,
        missing: 0,
        missing_examples: Vec::new(),
        undelivered: 0,
        chain_problems: Vec::new(),
    };
    let mut delivered_keys = HashSet::new();
    for (client, numbers) in answered {
        for &number in numbers {
            check.delivered += 1;
            delivered_keys.insert(request_key(client, number));
            if !recorded.contains(&request_key(client, number)) {
                check.missing += 1;
                if check.missing_examples.len() < 5 {
                    check.missing_examples.push(request_id(client, number));
                }
            }
        }
    }
    check.undelivered = recorded.difference(&delivered_keys).count() as u64;
    let verification = privacy::audit::verify(data).context("cannot verify the audit trail")?;
    check.chain_problems = verification.problems.iter().map(ToString::to_string).collect();
    Ok(check)
}

/// Every invariant, counted.
struct Findings {
    server_errors: u64,
    unexpected: u64,
    unexpected_examples: Vec<String>,
    stale_reads: u64,
    stale_examples: Vec<String>,
    acknowledged: u64,
    acknowledged_lost: u64,
    lost_examples: Vec<String>,
    resources: usize,
    versions: usize,
    out_of_sequence: u64,
    sequence_examples: Vec<String>,
    in_doubt: u64,
    in_doubt_stored: u64,
    audit: AuditCheck,
    /// Whether a missing audit entry fails the run (strict durability promises none).
    audit_strict: bool,
}

impl Findings {
    fn of(
        clients: &[Client],
        histories: &Histories,
        audit: AuditCheck,
        durability: AuditDurability,
    ) -> Findings {
        let mut findings = Findings {
            server_errors: clients.iter().map(|c| c.tally.by_class[5]).sum(),
            unexpected: clients.iter().map(|c| c.tally.unexpected).sum(),
            unexpected_examples: clients
                .iter()
                .flat_map(|c| c.tally.unexpected_examples.clone())
                .take(5)
                .collect(),
            stale_reads: clients.iter().map(|c| c.tally.stale_reads).sum(),
            stale_examples: clients.iter().flat_map(|c| c.tally.stale_examples.clone()).take(5).collect(),
            acknowledged: 0,
            acknowledged_lost: 0,
            lost_examples: Vec::new(),
            resources: histories.len(),
            versions: histories.values().map(Vec::len).sum(),
            out_of_sequence: 0,
            sequence_examples: Vec::new(),
            in_doubt: 0,
            in_doubt_stored: 0,
            audit,
            audit_strict: durability == AuditDurability::Strict,
        };
        for client in clients {
            for (index, owned) in client.owned.iter().enumerate() {
                let stored = histories.get(&(client.id, index)).map_or(&[][..], Vec::as_slice);
                findings.add(client.id, owned, stored);
            }
        }
        findings
    }

    /// Compares one resource's stored versions with its owner's writes: each version must be
    /// one of them, in the order sent, and each acknowledged one at the version it was
    /// acknowledged with and with the body the client was given.
    fn add(&mut self, client: u32, owned: &Owned, stored: &[StoredVersion]) {
        let position: HashMap<u32, usize> =
            owned.writes.iter().enumerate().map(|(i, w)| (w.request, i)).collect();
        let mut found: Vec<Option<(u64, &StoredVersion)>> = vec![None; owned.writes.len()];
        let mut last = None;
        for (version, stored_version) in (1u64..).zip(stored) {
            let writer = stored_version.written_by.as_deref().and_then(parse_request_id);
            let index = writer.filter(|(c, _)| *c == client).and_then(|(_, n)| position.get(&n).copied());
            let problem = match index {
                _ if stored_version.status != 200 => Some(format!("answered {}", stored_version.status)),
                None => Some(format!("written by {:?}, not by its owner", stored_version.written_by)),
                Some(i) if last.is_some_and(|l| i <= l) => {
                    Some(format!("written by {:?}, out of the order sent", stored_version.written_by))
                }
                Some(i) => match owned.writes[i].outcome {
                    WriteOutcome::Refused(status) => Some(format!(
                        "written by {:?}, which was answered {status}",
                        stored_version.written_by
                    )),
                    _ => None,
                },
            };
            if let Some(problem) = problem {
                self.out_of_sequence += 1;
                if self.sequence_examples.len() < 5 {
                    self.sequence_examples
                        .push(format!("Observation/{} version {version}: {problem}", owned.id));
                }
            }
            if let Some(i) = index {
                last = Some(i);
                found[i] = Some((version, stored_version));
            }
        }
        for (write, found) in owned.writes.iter().zip(found) {
            match write.outcome {
                WriteOutcome::Acknowledged { version, body_hash } => {
                    self.acknowledged += 1;
                    let kept = found.is_some_and(|(at, stored)| {
                        at == version
                            && stored.body_hash == body_hash
                            && stored.version_id.as_deref() == Some(version.to_string().as_str())
                    });
                    if !kept {
                        self.acknowledged_lost += 1;
                        if self.lost_examples.len() < 5 {
                            self.lost_examples.push(format!(
                                "Observation/{} version {version} ({}): {}",
                                owned.id,
                                request_id(client, write.request),
                                match found {
                                    None => "not in the history".to_string(),
                                    Some((at, _)) if at != version => format!("stored as version {at}"),
                                    Some(_) => "stored with another body".to_string(),
                                }
                            ));
                        }
                    }
                }
                WriteOutcome::InDoubt => {
                    self.in_doubt += 1;
                    self.in_doubt_stored += u64::from(found.is_some());
                }
                WriteOutcome::Refused(_) => {}
            }
        }
    }

    fn audit_failed(&self) -> bool {
        self.audit_strict && self.audit.missing > 0
    }

    fn failed(&self) -> bool {
        self.server_errors > 0
            || self.unexpected > 0
            || self.stale_reads > 0
            || self.acknowledged_lost > 0
            || self.out_of_sequence > 0
            || self.audit_failed()
    }
}

// ---------------------------------------------------------------------------------------
// The report

fn print_report(
    clients: &[Client],
    elapsed: Duration,
    restart: Option<&Restart>,
    timeline: &[u64],
    findings: &Findings,
) {
    let sum = |f: &dyn Fn(&Tally) -> u64| clients.iter().map(|c| f(&c.tally)).sum::<u64>();
    let sent = sum(&|t| t.sent);
    let answered: u64 = sum(&|t| t.by_class.iter().sum());
    let class = |c: usize| sum(&|t| t.by_class[c]);
    let seconds = elapsed.as_secs_f64();
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| requests sent | {} |", thousands(sent));
    println!(
        "| responses delivered | {} (2xx {}, 3xx {}, 4xx {}, 5xx {}) |",
        thousands(answered),
        thousands(class(2)),
        thousands(class(3)),
        thousands(class(4)),
        thousands(class(5))
    );
    println!(
        "| throughput over the whole run | {:.0} responses/s ({seconds:.1} s) |",
        answered as f64 / seconds
    );
    println!(
        "| requests cut off by the kill (no response) | {} (connection attempts refused while down: {}) |",
        thousands(sum(&|t| t.connection_errors)),
        thousands(sum(&|t| t.refused_connects))
    );
    if let Some(restart) = restart {
        println!(
            "| SIGKILL at | {:.1} s; serving again {:.2} s later |",
            restart.at.as_secs_f64(),
            restart.down.as_secs_f64()
        );
    }
    print_latencies(clients);
    println!(
        "| writes in doubt (sent, no answer) | {} ({} stored, {} not); settled by {} reads |",
        findings.in_doubt,
        findings.in_doubt_stored,
        findings.in_doubt - findings.in_doubt_stored,
        sum(&|t| t.settling_reads)
    );
    println!("| audit entries in the trail | {} |", thousands(findings.audit.entries as u64));
    println!(
        "| audit entries of requests never answered (in flight at the kill) | {} |",
        findings.audit.undelivered
    );
    println!();
    println!("answers/s in each 10 s: {}", per_ten_seconds(timeline, elapsed.as_secs()));
    println!();
    print_checks(findings);
}

fn print_latencies(clients: &[Client]) {
    let mut reads = Vec::new();
    for operation in OPERATIONS {
        let mut latencies: Vec<u32> =
            clients.iter().flat_map(|c| c.tally.latencies[operation.index()].iter().copied()).collect();
        if operation.is_read() {
            reads.extend_from_slice(&latencies);
        }
        println!("| {} | {} |", operation.label(), latency_summary(&mut latencies));
    }
    println!("| **all reads** | {} |", latency_summary(&mut reads));
}

/// `n, p50 x ms, p99 y ms`.
fn latency_summary(micros: &mut [u32]) -> String {
    if micros.is_empty() {
        return "none".to_string();
    }
    micros.sort_unstable();
    let at = |p: f64| f64::from(micros[((micros.len() - 1) as f64 * p).round() as usize]) / 1000.0;
    format!("{}, p50 {:.2} ms, p99 {:.2} ms", thousands(micros.len() as u64), at(0.5), at(0.99))
}

/// Answers per second in each 10 s of the run (the last part may be shorter).
fn per_ten_seconds(timeline: &[u64], seconds: u64) -> String {
    let run = &timeline[..(seconds as usize).min(timeline.len())];
    run.chunks(10)
        .map(|chunk| format!("{:.0}", chunk.iter().sum::<u64>() as f64 / chunk.len() as f64))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_checks(findings: &Findings) {
    let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
    let row = |name: &str, count: u64, of: String, examples: &[String]| {
        println!("| {name} | {count} | {of} | {} |", verdict(count == 0));
        for example in examples {
            println!("    {example}");
        }
    };
    println!("| check | count | of | |");
    println!("|---|---|---|---|");
    row("5xx responses", findings.server_errors, String::new(), &[]);
    row("unexpected statuses", findings.unexpected, String::new(), &findings.unexpected_examples);
    row("stale reads of own resources", findings.stale_reads, String::new(), &findings.stale_examples);
    row(
        "acknowledged writes lost (vread of the acknowledged version)",
        findings.acknowledged_lost,
        format!("{} acknowledged", thousands(findings.acknowledged)),
        &findings.lost_examples,
    );
    row(
        "lost updates (versions not in the owner's sequence)",
        findings.out_of_sequence,
        format!(
            "{} versions of {} resources",
            thousands(findings.versions as u64),
            thousands(findings.resources as u64)
        ),
        &findings.sequence_examples,
    );
    let audit = &findings.audit;
    let of = format!("{} delivered", thousands(audit.delivered));
    if findings.audit_strict {
        row("delivered responses without an audit entry", audit.missing, of, &audit.missing_examples);
    } else {
        println!(
            "| delivered responses without an audit entry (fast: allowed) | {} | {of} | |",
            audit.missing
        );
    }
    println!(
        "| audit chain problems reported by verify (not checked) | {} | | |",
        audit.chain_problems.len()
    );
    for problem in audit.chain_problems.iter().take(5) {
        println!("    {problem}");
    }
    println!();
    println!(
        "{}",
        if findings.failed() { "FAILED: an invariant does not hold" } else { "all invariants hold" }
    );
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// --read-cost

/// One measured round: answers per second and latency.
struct ReadRound {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn read_cost(args: &MixedArgs) -> Result<ExitCode> {
    let seconds = args.seconds.unwrap_or(20).max(1);
    let connections = args.connections.max(1);
    let work = WorkDir::new(args.work.clone(), "read-cost")?;
    let population = prepare_population(&work.path, args.patients)?;
    let log = work.path.join("serve.log");
    println!(
        "population: {} patients, {} resources; GET Patient/[id] as a clinician, {connections} connections, {seconds} s per round, {} rounds each, alternating",
        population.patients,
        population.resources,
        args.rounds.max(1)
    );
    let durabilities = [AuditDurability::Strict, AuditDurability::Fast];
    let mut rounds: [Vec<ReadRound>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.rounds.max(1) {
        for (slot, durability) in durabilities.iter().enumerate() {
            let mut server =
                Server::start(&args.chartroom_binary()?, &population.data, *durability, args.sync, &log)?;
            // Warm the page cache and the token cache; not measured.
            measure_reads(server.address, &population, connections, Duration::from_secs(2))?;
            let round =
                measure_reads(server.address, &population, connections, Duration::from_secs(seconds))?;
            server.stop()?;
            println!(
                "audit {:<6}: {:>8.0} requests/s, p50 {:.3} ms, p99 {:.3} ms ({} errors)",
                durability.as_str(),
                round.per_second,
                ms(round.p50),
                ms(round.p99),
                round.errors
            );
            rounds[slot].push(round);
        }
    }
    let [strict, fast] = rounds.map(median_round);
    println!();
    println!("| audit durability | requests/s | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, round) in [("strict", &strict), ("fast", &fast)] {
        println!("| {name} | {:.0} | {:.3} ms | {:.3} ms |", round.per_second, ms(round.p50), ms(round.p99));
    }
    println!(
        "| strict / fast | {:.2} | {:.2} | {:.2} |",
        strict.per_second / fast.per_second,
        ms(strict.p50) / ms(fast.p50),
        ms(strict.p99) / ms(fast.p99)
    );
    Ok(ExitCode::SUCCESS)
}

/// The median round by throughput, each figure taken separately.
fn median_round(rounds: Vec<ReadRound>) -> ReadRound {
    let middle = rounds.len() / 2;
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[middle]
    };
    let per_second = median(rounds.iter().map(|r| r.per_second).collect());
    let p50 = median(rounds.iter().map(|r| r.p50.as_secs_f64()).collect());
    let p99 = median(rounds.iter().map(|r| r.p99.as_secs_f64()).collect());
    let errors = rounds.iter().map(|r| r.errors).sum();
    ReadRound { per_second, p50: Duration::from_secs_f64(p50), p99: Duration::from_secs_f64(p99), errors }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `connections` clients reading patients for `length`: answers per second and latency.
fn measure_reads(
    address: SocketAddr,
    population: &Population,
    connections: usize,
    length: Duration,
) -> Result<ReadRound> {
    let stop = AtomicBool::new(false);
    let patients = population.patients;
    let (latencies, errors, elapsed) =
        std::thread::scope(|scope| -> Result<(Vec<Duration>, u64, Duration)> {
            let threads: Vec<_> = (0..connections)
                .map(|c| {
                    let stop = &stop;
                    let token = population.token.as_str();
                    scope.spawn(move || -> Result<(Vec<Duration>, u64)> {
                        let mut client = HttpClient::connect(address)?.with_token(Some(token));
                        let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0);
                        let mut i = c * 1_000_003;
                        while !stop.load(Ordering::Relaxed) {
                            i += 7919;
                            let started = Instant::now();
                            match client.get(&patient_path(i, patients)) {
                                Ok(200) => latencies.push(started.elapsed()),
                                _ => errors += 1,
                            }
                        }
                        Ok((latencies, errors))
                    })
                })
                .collect();
            let started = Instant::now();
            std::thread::sleep(length);
            stop.store(true, Ordering::Relaxed);
            let elapsed = started.elapsed();
            let (mut latencies, mut errors) = (Vec::new(), 0);
            for thread in threads {
                let (mut own, own_errors) =
                    thread.join().map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
                latencies.append(&mut own);
                errors += own_errors;
            }
            Ok((latencies, errors, elapsed))
        })?;
    let mut latencies = latencies;
    if latencies.is_empty() {
        bail!("no read was answered 200 ({errors} errors)");
    }
    latencies.sort_unstable();
    Ok(ReadRound {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: bench::percentile(&latencies, 0.5),
        p99: bench::percentile(&latencies, 0.99),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_read_back() {
        assert_eq!(parse_request_id(&request_id(63, 41_000)), Some((63, 41_000)));
        assert_eq!(parse_request_id("other-1-2"), None);
        assert_ne!(request_key(1, 2), request_key(2, 1));
    }

    #[test]
    fn banner_gives_the_address() {
        let line = "Chartroom serving FHIR R4 at http://127.0.0.1:41234/fhir (data: /tmp/x)";
        assert_eq!(banner_address(line), Some("127.0.0.1:41234".parse().unwrap()));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    fn stored(client: u32, request: u32, version: u64, hash: u64) -> StoredVersion {
        StoredVersion {
            status: 200,
            written_by: Some(request_id(client, request)),
            version_id: Some(version.to_string()),
            body_hash: hash,
        }
    }

    fn owned(writes: Vec<WriteRecord>) -> Owned {
        Owned { id: "x".into(), subject: 0, vital: 0, known: Known::Absent, writes }
    }

    fn findings() -> Findings {
        let audit = AuditCheck {
            entries: 0,
            delivered: 0,
            missing: 0,
            missing_examples: Vec::new(),
            undelivered: 0,
            chain_problems: Vec::new(),
        };
        Findings::of(&[], &Histories::new(), audit, AuditDurability::Strict)
    }

    fn acked(request: u32, version: u64, body_hash: u64) -> WriteRecord {
        WriteRecord { request, outcome: WriteOutcome::Acknowledged { version, body_hash } }
    }

    #[test]
    fn a_history_of_the_owners_writes_passes() {
        let mut f = findings();
        let writes = vec![
            acked(1, 1, 11),
            WriteRecord { request: 2, outcome: WriteOutcome::InDoubt },
            acked(3, 3, 33),
        ];
        f.add(7, &owned(writes), &[stored(7, 1, 1, 11), stored(7, 2, 2, 22), stored(7, 3, 3, 33)]);
        assert_eq!((f.acknowledged, f.acknowledged_lost, f.out_of_sequence), (2, 0, 0));
        assert_eq!((f.in_doubt, f.in_doubt_stored), (1, 1));
        assert!(!f.failed());
    }

    #[test]
    fn an_overwritten_acknowledged_update_is_found() {
        let mut f = findings();
        let writes = vec![acked(1, 1, 11), acked(2, 2, 22)];
        // Version 2 holds another client's write: the acknowledged update was lost.
        f.add(7, &owned(writes), &[stored(7, 1, 1, 11), stored(8, 2, 2, 99)]);
        assert_eq!((f.acknowledged_lost, f.out_of_sequence), (1, 1));
        assert!(f.failed());
    }

    #[test]
    fn a_missing_or_changed_acknowledged_write_is_found() {
        let mut f = findings();
        f.add(7, &owned(vec![acked(1, 1, 11), acked(2, 2, 22)]), &[stored(7, 1, 1, 11)]);
        assert_eq!(f.acknowledged_lost, 1);
        let mut f = findings();
        f.add(7, &owned(vec![acked(1, 1, 11)]), &[stored(7, 1, 1, 12)]);
        assert_eq!(f.acknowledged_lost, 1);
    }

    #[test]
    fn a_stored_refused_write_is_out_of_sequence() {
        let mut f = findings();
        let writes = vec![acked(1, 1, 11), WriteRecord { request: 2, outcome: WriteOutcome::Refused(412) }];
        f.add(7, &owned(writes), &[stored(7, 1, 1, 11), stored(7, 2, 2, 22)]);
        assert_eq!((f.acknowledged_lost, f.out_of_sequence), (0, 1));
    }
}
