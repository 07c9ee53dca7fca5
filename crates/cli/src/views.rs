//! `chartroom view` (SQL on FHIR views: list, run, save) and `chartroom sql` (SQL over the
//! views' tables, see `views::tables`): arguments in, the `views` crate's answer rendered out.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::Value as Json;
use sof::{Format, ViewDefinition};
use views::{NamedView, ViewScope, find_view, known_views, run_files, run_view, valid_view_name, views_dir};

use crate::DataArgs;

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
    /// Write views as Parquet for cluster engines (Spark, DuckDB): Hive partitions by resource
    /// type and month, OUT/VIEW/resource_type=TYPE/month=YYYY-MM/part-0.parquet.
    Export {
        #[command(flatten)]
        store: DataArgs,
        /// Directory to write into (each view's folder in it is replaced).
        #[arg(long)]
        out: PathBuf,
        /// Only these views (built-in or saved names); all of them by default.
        #[arg(long = "view")]
        views: Vec<String>,
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

/// A view named on the command line: a file, else a built-in or saved view.
fn resolve_view(spec: &str, data: Option<&Path>) -> Result<ViewDefinition> {
    let path = Path::new(spec);
    if path.is_file() || spec.ends_with(".json") {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {spec}"))?;
        let json = fhir::parse_json(&bytes).map_err(|e| anyhow!("{spec}: {e}"))?;
        return views::view_definition(&json).map_err(|e| anyhow!("{spec}: {e}"));
    }
    let dir = data.map(views_dir);
    Ok(find_view(spec, dir.as_deref())?.view)
}

pub fn run(args: ViewArgs) -> Result<ExitCode> {
    match args.command {
        ViewCommand::List { data } => {
            if let Some(data) = &data {
                DataArgs::dir(data.clone()).check()?;
            }
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
            if let Some(data) = &data {
                DataArgs::dir(data.clone()).check()?;
            }
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
                    let store = DataArgs::dir(data).open_read_only()?;
                    let (sink, run) = run_view(store.as_ref(), &definition, &scope, format.into(), sink)?;
                    store.close();
                    sink.into_inner().map_err(|e| anyhow!("writing the rows: {e}"))?.flush()?;
                    (run.resources, run.rows)
                }
                (None, Some(input)) => {
                    let (sink, run) = run_files(&definition, &input, &scope, format.into(), sink)?;
                    sink.into_inner().map_err(|e| anyhow!("writing the rows: {e}"))?.flush()?;
                    (run.resources, run.rows)
                }
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
        ViewCommand::Export { store, out, views } => {
            let known = known_views(Some(&views_dir(&store.data)));
            let chosen: Vec<&NamedView> = if views.is_empty() {
                known.iter().collect()
            } else {
                views
                    .iter()
                    .map(|name| {
                        known
                            .iter()
                            .find(|v| &v.name == name)
                            .ok_or_else(|| anyhow!("no view is named {name}"))
                    })
                    .collect::<Result<_>>()?
            };
            let snapshot = store.open_read_only()?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            for view in chosen {
                let started = std::time::Instant::now();
                let export = views::partitioned::export_view(snapshot.as_ref(), view, &out)?;
                println!(
                    "{:<20} {:>9} rows from {:>8} {} resources in {:>4} partitions, {:.2} s",
                    export.view,
                    export.rows,
                    export.resources,
                    export.resource_type,
                    export.files.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            snapshot.close();
            Ok(ExitCode::SUCCESS)
        }
        ViewCommand::Save { file, data, name } => {
            DataArgs::dir(data.clone()).check()?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let json = fhir::parse_json(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let view = views::view_definition(&json).map_err(|e| anyhow!("{}: {e}", file.display()))?;
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
    store: DataArgs,
    /// The query; the built-in and saved views are its tables (`chartroom view list`).
    query: String,
    #[arg(long, value_enum, default_value = "table")]
    format: SqlFormat,
    /// Rebuild the views' tables even if the record has not changed.
    #[arg(long)]
    refresh: bool,
}

pub fn sql(args: SqlArgs) -> Result<ExitCode> {
    let data = args.store.data.clone();
    // The record is read as one snapshot; only the views' tables (DIR/analytics.sqlite, this
    // command's own) are written.
    let store = args.store.open_read_only()?;
    let known = known_views(Some(&views_dir(&data)));
    let path = views::tables::tables_path(&data);
    let mut tables = views::Tables::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    for rebuilt in tables.refresh_for_query(&args.query, &known, store.as_ref(), args.refresh)? {
        eprintln!("{}: {} rows materialized in {:.2} s", rebuilt.view, rebuilt.rows, rebuilt.seconds);
    }
    store.close();
    let answer = tables.query(&args.query)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    print_table(&mut out, &answer.columns, &answer.rows, args.format)?;
    out.flush()?;
    eprintln!("{} rows", answer.rows.len());
    Ok(ExitCode::SUCCESS)
}

fn print_table(
    out: &mut impl Write,
    names: &[String],
    table: &[Vec<views::tables::Value>],
    format: SqlFormat,
) -> Result<()> {
    use views::tables::Value;
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
