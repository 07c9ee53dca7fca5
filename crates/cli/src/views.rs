//! `chartroom view` (SQL on FHIR views: list, run, save) and `chartroom sql` (SQL over the
//! views' tables).
//!
//! SQL runs in SQLite: each view a query names is materialized as a table of
//! `DIR/analytics.sqlite`, rebuilt only when the record or the view changed since (see
//! ARCHITECTURE.md for why SQLite rather than a columnar engine).

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use api::analytics::{NamedView, ViewScope, find_view, known_views, run_view, valid_view_name};
use clap::{Subcommand, ValueEnum};
use serde_json::Value as Json;
use sof::{Cell, Format, Kind, ViewDefinition};
use store::Store;

use crate::{StoreArgs, SyncMode};

#[derive(clap::Args)]
pub struct ViewArgs {
    #[command(subcommand)]
    command: ViewCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Csv,
    Ndjson,
    Json,
    Parquet,
}

impl From<OutputFormat> for Format {
    fn from(format: OutputFormat) -> Format {
        match format {
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Ndjson => Format::Ndjson,
            OutputFormat::Json => Format::Json,
            OutputFormat::Parquet => Format::Parquet,
        }
    }
}

#[derive(Subcommand)]
enum ViewCommand {
    /// The built-in views (and those saved in DIR/views with --data): name, resource, columns.
    List {
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run a view (a ViewDefinition JSON file, or the name of a built-in or saved view) over a
    /// data directory or over NDJSON/JSON files; rows to standard output or --out.
    Run {
        view: String,
        /// Data directory to read the record from.
        #[arg(long, conflicts_with = "input", required_unless_present = "input")]
        data: Option<PathBuf>,
        /// NDJSON or JSON files (resources or Bundles), or a directory of them.
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "csv")]
        format: OutputFormat,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only this patient's resources.
        #[arg(long)]
        patient: Option<String>,
        /// Only resources changed at or after this instant (with --data).
        #[arg(long)]
        since: Option<String>,
    },
    /// Check a ViewDefinition and save it as DIR/views/NAME.json (NAME: its `name`, or
    /// --name), so that `view run`, `sql` and `ViewDefinition/$run` know it.
    Save {
        file: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
}

fn views_dir(data: &Path) -> PathBuf {
    data.join("views")
}

/// A view named on the command line: a file, else a built-in or saved view.
fn resolve_view(spec: &str, data: Option<&Path>) -> Result<ViewDefinition> {
    let path = Path::new(spec);
    if path.is_file() || spec.ends_with(".json") {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {spec}"))?;
        let json = fhir::parse_json(&bytes).map_err(|e| anyhow!("{spec}: {e}"))?;
        return api::analytics::view_definition(&json).map_err(|e| anyhow!("{spec}: {e}"));
    }
    let dir = data.map(views_dir);
    find_view(spec, dir.as_deref()).map(|named| named.view).map_err(|e| anyhow!("{}", e.message()))
}

pub fn run(args: ViewArgs) -> Result<ExitCode> {
    match args.command {
        ViewCommand::List { data } => {
            let dir = data.as_deref().map(views_dir);
            let mut out = std::io::stdout().lock();
            for NamedView { name, view, builtin, definition } in known_views(dir.as_deref()) {
                let columns: Vec<&str> = view.columns().iter().map(|c| c.name()).collect();
                let origin = if builtin { "built-in" } else { "saved" };
                let title = definition.get("title").and_then(Json::as_str).unwrap_or("");
                writeln!(out, "{name:<20} {:<18} {origin:<8} {title}", view.resource())?;
                writeln!(out, "{:<20} {}", "", columns.join(", "))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ViewCommand::Run { view, data, input, format, out, patient, since } => {
            let definition = resolve_view(&view, data.as_deref())?;
            let since = since
                .map(|since| {
                    fhir::DateTime::parse(&since, fhir::DateTimeKind::DateTime)
                        .map(|t| t.lower_bound_millis())
                        .map_err(|e| anyhow!("--since {since}: {e}"))
                })
                .transpose()?;
            let scope = ViewScope {
                patient: patient.map(|p| p.trim_start_matches("Patient/").to_string()),
                since,
                limit: None,
                // The analyst's own run on the command line takes as long as it takes.
                deadline: None,
            };
            let sink: Box<dyn Write + Send> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let sink = BufWriter::new(sink);
            let started = std::time::Instant::now();
            let (resources, rows) = match (data, input) {
                (Some(data), _) => {
                    let store = StoreArgs { data, sync: None }.open(SyncMode::Normal)?;
                    let (sink, run) = run_view(store.as_ref(), &definition, &scope, format.into(), sink)?;
                    sink.into_inner().map_err(|e| anyhow!("writing the rows: {e}"))?.flush()?;
                    (run.resources, run.rows)
                }
                (None, Some(input)) => run_over_files(&definition, &input, &scope, format.into(), sink)?,
                (None, None) => bail!("give --data DIR or --input PATH"),
            };
            eprintln!(
                "{resources} {} resources, {rows} rows in {:.2} s{}",
                definition.resource(),
                started.elapsed().as_secs_f64(),
                out.map(|p| format!(" -> {}", p.display())).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ViewCommand::Save { file, data, name } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let json = fhir::parse_json(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let view =
                api::analytics::view_definition(&json).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let name = name
                .or_else(|| view.name().map(str::to_string))
                .ok_or_else(|| anyhow!("the view has no name; give --name"))?;
            if !valid_view_name(&name) {
                bail!("'{name}' cannot name a view: letters, digits, '_' and '-' only");
            }
            if sof::builtin::get(&name).is_some() {
                bail!("'{name}' is a built-in view; save under another name");
            }
            let dir = views_dir(&data);
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "saved {name} ({} columns over {}) as {}",
                view.columns().len(),
                view.resource(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The files under `input` (itself if a file), NDJSON and JSON, in name order.
fn input_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![input.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "ndjson" || e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Calls `visit` with every resource of the files (NDJSON lines, JSON resources, the entries
/// of JSON Bundles). NDJSON lines that cannot be of `resource_type` (its name appears nowhere
/// in them, not even escaped) are only checked to be JSON, not parsed: a directory of every
/// type is read about as fast as the one file the view needs.
fn each_resource(
    input: &Path,
    resource_type: &str,
    visit: &mut dyn FnMut(&Json) -> Result<()>,
) -> Result<()> {
    let quoted_type = format!("\"{resource_type}\"");
    for file in input_files(input)? {
        let ndjson = file.extension().is_some_and(|e| e == "ndjson");
        let reader = std::io::BufReader::new(
            std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?,
        );
        if ndjson {
            for (number, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                if !line.contains(&quoted_type) && !line.contains("\\u") {
                    fhir::check_json(line.as_bytes())
                        .map_err(|e| anyhow!("{}:{}: {e}", file.display(), number + 1))?;
                    continue;
                }
                let json = fhir::parse_json(line.as_bytes())
                    .map_err(|e| anyhow!("{}:{}: {e}", file.display(), number + 1))?;
                visit(&json)?;
            }
        } else {
            let json: Json =
                serde_json::from_reader(reader).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            match json.get("entry").and_then(Json::as_array) {
                Some(entries) if json["resourceType"] == "Bundle" => {
                    for resource in entries.iter().filter_map(|e| e.get("resource")) {
                        visit(resource)?;
                    }
                }
                _ => visit(&json)?,
            }
        }
    }
    Ok(())
}

fn run_over_files<W: Write + Send>(
    view: &ViewDefinition,
    input: &Path,
    scope: &ViewScope,
    format: Format,
    out: W,
) -> Result<(u64, u64)> {
    let mut writer = sof::Writer::new(format, view.schema(), out)?;
    let mut runner = sof::Runner::new(view, sof::DEFAULT_BATCH_SIZE);
    let mut resources = 0u64;
    let mut rows = 0u64;
    each_resource(input, view.resource(), &mut |resource| {
        if resource.get("resourceType").and_then(Json::as_str) != Some(view.resource()) {
            return Ok(());
        }
        if let Some(patient) = &scope.patient
            && !is_about(resource, view.resource(), patient)
        {
            return Ok(());
        }
        resources += 1;
        for batch in runner.push(resource)? {
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        Ok(())
    })?;
    if let Some(batch) = runner.finish()? {
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.finish()?.flush()?;
    Ok((resources, rows))
}

fn is_about(resource: &Json, resource_type: &str, patient: &str) -> bool {
    if resource_type == "Patient" {
        return resource.get("id").and_then(Json::as_str) == Some(patient);
    }
    fhir::patient_reference(resource).and_then(|r| r.strip_prefix("Patient/")) == Some(patient)
}

#[derive(Clone, Copy, ValueEnum)]
enum SqlFormat {
    /// Aligned columns for reading.
    Table,
    Csv,
    /// One array of row objects.
    Json,
}

#[derive(clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The query; the built-in and saved views are its tables (`chartroom view list`).
    query: String,
    #[arg(long, value_enum, default_value = "table")]
    format: SqlFormat,
    /// Rebuild the views' tables even if the record has not changed.
    #[arg(long)]
    refresh: bool,
}

/// What a materialized table was built from: the view's definition and the record's last
/// commit. Equal stamps mean the table is current.
fn stamp(view: &NamedView, store: &dyn Store) -> Result<String> {
    let newest = store
        .history(&store::HistoryScope::System, &store::HistoryQuery { count: 1, ..Default::default() })?;
    let seq = newest.versions.first().map_or(0, |v| v.seq);
    let live = store.count_live()?;
    Ok(format!("{}|{seq}|{live}", serde_json::to_string(&view.definition)?))
}

pub fn sql(args: SqlArgs) -> Result<ExitCode> {
    let data = args.store.data.clone();
    let store = args.store.open(SyncMode::Normal)?;
    let views = known_views(Some(&views_dir(&data)));
    let lowered = args.query.to_ascii_lowercase();
    let words: std::collections::HashSet<&str> =
        lowered.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    let wanted: Vec<&NamedView> =
        views.iter().filter(|v| words.contains(v.name.to_ascii_lowercase().as_str())).collect();
    let path = data.join("analytics.sqlite");
    let mut db =
        rusqlite::Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS _materialized (view TEXT PRIMARY KEY, stamp TEXT NOT NULL, rows INTEGER NOT NULL, built TEXT NOT NULL);",
    )?;
    for view in wanted {
        let stamp = stamp(view, store.as_ref())?;
        let current: Option<String> = db
            .query_row("SELECT stamp FROM _materialized WHERE view = ?1", [&view.name], |row| row.get(0))
            .ok();
        if !args.refresh && current.as_deref() == Some(stamp.as_str()) {
            continue;
        }
        let started = std::time::Instant::now();
        let rows = materialize(&mut db, view, store.as_ref(), &stamp)?;
        eprintln!("{}: {rows} rows materialized in {:.2} s", view.name, started.elapsed().as_secs_f64());
    }
    // The user's statement reads; it must not change the tables behind the views' stamps.
    db.execute_batch("PRAGMA query_only = ON;")?;
    let mut statement = db.prepare(&args.query).map_err(|e| anyhow!("the query does not compile: {e}"))?;
    let names: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut rows = statement.query([])?;
    let mut table: Vec<Vec<rusqlite::types::Value>> = Vec::new();
    while let Some(row) = rows.next().map_err(|e| anyhow!("the query failed: {e}"))? {
        table.push(
            (0..names.len()).map(|i| row.get::<_, rusqlite::types::Value>(i)).collect::<Result<_, _>>()?,
        );
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    print_table(&mut out, &names, &table, args.format)?;
    out.flush()?;
    eprintln!("{} rows", table.len());
    Ok(ExitCode::SUCCESS)
}

fn sql_type(kind: Kind, collection: bool) -> &'static str {
    match (kind, collection) {
        (_, true) | (Kind::Text | Kind::Json, false) => "TEXT",
        (Kind::Boolean | Kind::Integer, false) => "INTEGER",
        (Kind::Decimal, false) => "REAL",
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A cell as SQLite stores it: lists as JSON arrays.
fn sql_value(cell: &Cell) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match cell {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::Integer(i64::from(*b)),
        Cell::Integer(i) => Value::Integer(*i),
        Cell::Decimal(d) => Value::Real(*d),
        Cell::Text(t) => Value::Text(t.to_string()),
        Cell::List(items) => Value::Text(
            serde_json::to_string(&items.iter().map(cell_json).collect::<Vec<_>>()).unwrap_or_default(),
        ),
    }
}

fn cell_json(cell: &Cell) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Boolean(b) => Json::Bool(*b),
        Cell::Integer(i) => Json::from(*i),
        Cell::Decimal(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Cell::Text(t) => Json::String(t.to_string()),
        Cell::List(items) => Json::Array(items.iter().map(cell_json).collect()),
    }
}

/// Rebuilds the view's table in one transaction.
fn materialize(
    db: &mut rusqlite::Connection,
    view: &NamedView,
    store: &dyn Store,
    stamp: &str,
) -> Result<u64> {
    let columns = view.view.columns();
    let table = quote_identifier(&view.name);
    let transaction = db.transaction()?;
    transaction.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))?;
    let definitions: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote_identifier(c.name()), sql_type(c.kind(), c.collection())))
        .collect();
    transaction.execute_batch(&format!("CREATE TABLE {table} ({});", definitions.join(", ")))?;
    let placeholders = vec!["?"; columns.len()].join(", ");
    let mut rows = 0u64;
    {
        let mut insert = transaction.prepare(&format!("INSERT INTO {table} VALUES ({placeholders})"))?;
        let mut failure: Option<anyhow::Error> = None;
        let scanned = store.scan_type(view.view.resource(), None, &mut |resource_type, id, body| {
            let result = (|| -> Result<()> {
                let json: Json =
                    serde_json::from_slice(body).map_err(|e| anyhow!("{resource_type}/{id}: {e}"))?;
                for row in view.view.rows(&json)? {
                    insert.execute(rusqlite::params_from_iter(row.iter().map(sql_value)))?;
                    rows += 1;
                }
                Ok(())
            })();
            result.map_err(|error| {
                failure = Some(error);
                store::Error::Stopped
            })
        });
        if let Some(error) = failure {
            return Err(error.context(format!("materializing {}", view.name)));
        }
        scanned?;
    }
    transaction.execute(
        "INSERT OR REPLACE INTO _materialized (view, stamp, rows, built) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![view.name, stamp, rows as i64, fhir::DateTime::now_utc().to_string()],
    )?;
    transaction.commit()?;
    Ok(rows)
}

fn print_table(
    out: &mut impl Write,
    names: &[String],
    table: &[Vec<rusqlite::types::Value>],
    format: SqlFormat,
) -> Result<()> {
    use rusqlite::types::Value;
    let text = |value: &Value| match value {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    };
    match format {
        SqlFormat::Json => {
            let rows: Vec<Json> = table
                .iter()
                .map(|row| {
                    let object = names.iter().zip(row).map(|(name, value)| {
                        let json = match value {
                            Value::Null => Json::Null,
                            Value::Integer(i) => Json::from(*i),
                            Value::Real(r) => {
                                serde_json::Number::from_f64(*r).map_or(Json::Null, Json::Number)
                            }
                            other => Json::String(text(other)),
                        };
                        (name.clone(), json)
                    });
                    Json::Object(object.collect())
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        }
        SqlFormat::Csv => {
            let field = |s: &str| {
                if s.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            write!(out, "{}\r\n", names.iter().map(|n| field(n)).collect::<Vec<_>>().join(","))?;
            for row in table {
                write!(out, "{}\r\n", row.iter().map(|v| field(&text(v))).collect::<Vec<_>>().join(","))?;
            }
        }
        SqlFormat::Table => {
            let cells: Vec<Vec<String>> = table.iter().map(|row| row.iter().map(text).collect()).collect();
            let widths: Vec<usize> = (0..names.len())
                .map(|i| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([names[i].len()])
                        .max()
                        .unwrap_or(0)
                        .min(60)
                })
                .collect();
            let line = |values: &[String]| {
                values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| {
                        let shown: String = v.chars().take(*w).collect();
                        format!("{shown:<w$}")
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(out, "{}", line(names))?;
            writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "))?;
            for row in &cells {
                writeln!(out, "{}", line(row).trim_end())?;
            }
        }
    }
    Ok(())
}
