//! Reads the line format written by `derive` into the model.

use super::{
    CodeSystemData, ConceptData, ConceptSet, Designation, Filter, PropertyDef, PropertyValue, R4Tables,
    ValueSetDef,
};
use crate::Error;

fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn optional(field: &str) -> Option<String> {
    (!field.is_empty()).then(|| unescape(field))
}

fn flag(field: &str) -> Option<bool> {
    match field {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn pair(field: &str) -> Option<(String, String)> {
    let (system, code) = field.split_once('|')?;
    Some((unescape(system), unescape(code)))
}

/// The state of the code system being read: concepts so far and their nesting path.
struct OpenCodeSystem {
    cs: CodeSystemData,
    /// The concept at each depth of the current nesting path.
    path: Vec<u32>,
    /// `(parent, child code)` from property `child`, resolved once all codes are known.
    pending_children: Vec<(u32, String)>,
}

pub(super) fn parse(text: &str) -> Result<R4Tables, Error> {
    let mut tables = R4Tables::default();
    let mut open: Option<OpenCodeSystem> = None;
    let close = |open: &mut Option<OpenCodeSystem>, tables: &mut R4Tables| {
        if let Some(mut done) = open.take() {
            done.cs.finish(done.pending_children);
            tables.code_systems.push(done.cs);
        }
    };
    for (number, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| fields.get(i).copied().unwrap_or("");
        let bad = || Error::Format(format!("terminology table line {}: {line}", number + 1));
        match fields[0] {
            "S" => {
                close(&mut open, &mut tables);
                let cs = CodeSystemData {
                    id: unescape(get(1)),
                    url: unescape(get(2)),
                    version: optional(get(3)),
                    name: optional(get(4)),
                    title: optional(get(5)),
                    status: optional(get(6)),
                    content: optional(get(7)),
                    case_sensitive: flag(get(8)),
                    hierarchy_meaning: optional(get(9)),
                    value_set: optional(get(10)),
                    supplements: optional(get(11)),
                    ..CodeSystemData::default()
                };
                open = Some(OpenCodeSystem { cs, path: Vec::new(), pending_children: Vec::new() });
            }
            "Q" => {
                let state = open.as_mut().ok_or_else(bad)?;
                state.cs.properties.push(PropertyDef {
                    code: unescape(get(1)),
                    kind: unescape(get(2)),
                    uri: optional(get(3)),
                });
            }
            "C" => {
                let state = open.as_mut().ok_or_else(bad)?;
                let depth: usize = get(1).parse().map_err(|_| bad())?;
                if depth > state.path.len() {
                    return Err(bad());
                }
                state.path.truncate(depth);
                let id = state.cs.concepts.len() as u32;
                let parent = state.path.last().copied();
                if let Some(p) = parent {
                    state.cs.concepts[p as usize].children.push(id);
                }
                state.cs.concepts.push(ConceptData {
                    code: unescape(get(2)),
                    display: optional(get(3)),
                    definition: optional(get(4)),
                    nested_in: parent,
                    parents: parent.into_iter().collect(),
                    children: Vec::new(),
                    extra_children: Vec::new(),
                    properties: Vec::new(),
                    designations: Vec::new(),
                    is_abstract: false,
                    is_inactive: false,
                    is_deprecated: false,
                });
                state.path.push(id);
            }
            "K" => {
                let state = open.as_mut().ok_or_else(bad)?;
                let parent = state.path.last().copied().ok_or_else(bad)?;
                state.pending_children.push((parent, unescape(get(1))));
            }
            "P" => {
                let state = open.as_mut().ok_or_else(bad)?;
                let concept = state.cs.concepts.last_mut().ok_or_else(bad)?;
                let code = unescape(get(1));
                let raw = unescape(get(3));
                let value = match get(2) {
                    "code" => PropertyValue::Code(raw),
                    "string" => PropertyValue::String(raw),
                    "boolean" => PropertyValue::Boolean(raw == "true"),
                    "dateTime" => PropertyValue::DateTime(raw),
                    "integer" => PropertyValue::Integer(raw),
                    "decimal" => PropertyValue::Decimal(raw),
                    "Coding" => {
                        let (system, code) = pair(get(3)).ok_or_else(bad)?;
                        PropertyValue::Coding { system, code }
                    }
                    _ => return Err(bad()),
                };
                match (code.as_str(), &value) {
                    ("notSelectable" | "abstract", PropertyValue::Boolean(true)) => {
                        concept.is_abstract = true
                    }
                    ("inactive", PropertyValue::Boolean(true)) => concept.is_inactive = true,
                    ("deprecationDate", _) => concept.is_deprecated = true,
                    ("status", PropertyValue::Code(status)) => match status.as_str() {
                        "retired" | "inactive" => concept.is_inactive = true,
                        "deprecated" => concept.is_deprecated = true,
                        _ => {}
                    },
                    _ => {}
                }
                concept.properties.push((code, value));
            }
            "D" => {
                let state = open.as_mut().ok_or_else(bad)?;
                let concept = state.cs.concepts.last_mut().ok_or_else(bad)?;
                concept.designations.push(Designation {
                    language: optional(get(1)),
                    usage: match get(2) {
                        "" => None,
                        usage if !usage.contains('|') => {
                            Some((super::derive::DESIGNATION_USAGE.to_owned(), unescape(usage)))
                        }
                        usage => pair(usage),
                    },
                    value: unescape(get(3)),
                });
            }
            "V" => {
                close(&mut open, &mut tables);
                let mut vs = ValueSetDef {
                    id: unescape(get(1)),
                    url: unescape(get(2)),
                    version: optional(get(3)),
                    name: optional(get(4)),
                    title: optional(get(5)),
                    status: optional(get(6)),
                    ..ValueSetDef::default()
                };
                vs.compose.inactive = flag(get(7));
                tables.value_sets.push(vs);
            }
            tag @ ("I" | "X") => {
                let vs = tables.value_sets.last_mut().ok_or_else(bad)?;
                let set =
                    ConceptSet { system: optional(get(1)), version: optional(get(2)), ..Default::default() };
                if tag == "I" {
                    vs.compose.include.push(set);
                } else {
                    vs.compose.exclude.push(set);
                }
            }
            tag @ ("c" | "f" | "v") => {
                let vs = tables.value_sets.last_mut().ok_or_else(bad)?;
                let compose = &mut vs.compose;
                // Includes are all written before excludes, so the open set is the last one.
                let set = if compose.exclude.is_empty() {
                    compose.include.last_mut()
                } else {
                    compose.exclude.last_mut()
                };
                let set = set.ok_or_else(bad)?;
                match tag {
                    "c" => set.concepts.push((unescape(get(1)), optional(get(2)))),
                    "f" => set.filters.push(Filter {
                        property: unescape(get(1)),
                        op: unescape(get(2)),
                        value: unescape(get(3)),
                    }),
                    _ => set.value_sets.push(unescape(get(1))),
                }
            }
            _ => return Err(bad()),
        }
    }
    close(&mut open, &mut tables);
    tables.index();
    Ok(tables)
}
