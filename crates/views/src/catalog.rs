//! The views known by name: the built-in HIM views (`sof::builtin`), then those saved as
//! `NAME.json` in a data directory's `views/` folder. ViewDefinition is a logical model of
//! SQL on FHIR, not an R4 resource type, so views are files beside the record, not part of it.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use sof::ViewDefinition;

use crate::{Error, Result};

/// A view known by name, with its definition as JSON.
pub struct NamedView {
    pub name: String,
    pub definition: Json,
    pub view: ViewDefinition,
    /// Shipped with the server rather than saved in the data directory.
    pub builtin: bool,
}

/// Where a data directory keeps its saved views.
pub fn views_dir(data: &Path) -> PathBuf {
    data.join("views")
}

/// Whether `name` can name a saved view file (no path separators or dots).
pub fn valid_view_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A ViewDefinition as this server runs it: checked, with `memberOf()` answered by the
/// built-in terminology.
pub fn view_definition(json: &Json) -> Result<ViewDefinition> {
    ViewDefinition::from_json(json)
        .map(|view| view.with_value_sets(&validation::TERMINOLOGY))
        .map_err(Error::Invalid)
}

/// A built-in view, else one saved as `NAME.json` in `views_dir`.
pub fn find_view(name: &str, views_dir: Option<&Path>) -> Result<NamedView> {
    if let Some(builtin) = sof::builtin::get(name) {
        let definition = fhir::parse_json(builtin.json().as_bytes())
            .map_err(|e| Error::Broken(format!("the built-in view {name} does not parse: {e}")))?;
        let view = view_definition(&definition)
            .map_err(|e| Error::Broken(format!("the built-in view {name} is not valid: {e}")))?;
        return Ok(NamedView { name: name.to_string(), definition, view, builtin: true });
    }
    let unknown = || Error::Unknown(name.to_string());
    if !valid_view_name(name) {
        return Err(unknown());
    }
    let path = views_dir.ok_or_else(unknown)?.join(format!("{name}.json"));
    let bytes = std::fs::read(&path).map_err(|_| unknown())?;
    let definition = fhir::parse_json(&bytes)
        .map_err(|e| Error::Broken(format!("the saved view {} does not parse: {e}", path.display())))?;
    let view = view_definition(&definition)
        .map_err(|e| Error::Broken(format!("the saved view {} is not valid: {e}", path.display())))?;
    Ok(NamedView { name: name.to_string(), definition, view, builtin: false })
}

/// Every known view: the built-in ones, then those saved in `views_dir` by name. A saved
/// file that is not a valid view is left out (and logged).
pub fn known_views(views_dir: Option<&Path>) -> Vec<NamedView> {
    let mut views: Vec<NamedView> =
        sof::builtin::views().iter().filter_map(|builtin| find_view(builtin.name(), None).ok()).collect();
    let Some(dir) = views_dir else { return views };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            entry.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(str::to_string)
        })
        .filter(|name| valid_view_name(name) && sof::builtin::get(name).is_none())
        .collect();
    names.sort();
    for name in names {
        match find_view(&name, Some(dir)) {
            Ok(view) => views.push(view),
            Err(error) => tracing::warn!("views/{name}.json left out: {error}"),
        }
    }
    views
}
