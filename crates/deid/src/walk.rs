//! Walking a resource element by element, each one known by its FHIR type from the R4
//! definitions, and applying the profile's rule for that type or path.

use std::collections::HashSet;

use fhir::Definitions;
use serde_json::{Map, Value, json};

use crate::classes::{IdentifierClass, Report};
use crate::rules::{self, DROPPED_TYPES, TERMINOLOGY_TEXT};
use crate::text::{DateRule, Lexicon, Scrubber};
use crate::{Profile, Settings, dates};

/// Gathers what the record knows of identities before an extract is made.
pub struct Learning {
    settings: Settings,
    lexicon: Lexicon,
    ninety_or_older: HashSet<String>,
}

impl Learning {
    /// Learns the identities in one resource: every name, address, contact, identifier
    /// (of patients, relatives and staff alike), and whether a patient is 90 or older.
    pub fn learn(&mut self, resource: &Value) {
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else { return };
        if resource_type == "Patient"
            && let (Some(id), Some(born)) = (
                resource.get("id").and_then(Value::as_str),
                resource.get("birthDate").and_then(Value::as_str),
            )
        {
            let until =
                resource.get("deceasedDateTime").and_then(Value::as_str).unwrap_or(&self.settings.as_of);
            if dates::age_on(born, until).is_some_and(|age| age >= 90) {
                self.ninety_or_older.insert(id.to_string());
            }
        }
        if let Some(object) = resource.as_object() {
            let lexicon = &mut self.lexicon;
            each_element(fhir::definitions(), resource_type, object, &mut |path, type_code, value| {
                learn_element(lexicon, path, type_code, value)
            });
        }
    }

    /// Ready to de-identify: the known identities compiled into the text scrubber.
    pub fn finish(self) -> Result<Deidentifier, crate::Error> {
        let oldest = self.settings.as_of.get(..4).and_then(|y| y.parse::<i64>().ok()).unwrap_or(0) - 90;
        Ok(Deidentifier {
            scrubber: Scrubber::new(&self.lexicon)?,
            known_values: self.lexicon.len(),
            settings: self.settings,
            ninety_or_older: self.ninety_or_older,
            oldest_year: oldest,
        })
    }
}

fn learn_element(lexicon: &mut Lexicon, path: &str, type_code: Option<&str>, value: &Value) {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    match type_code {
        Some("HumanName") => {
            for key in ["family", "text"] {
                if let Some(v) = text(key) {
                    lexicon.add(v, IdentifierClass::Names);
                }
            }
            for given in value.get("given").and_then(Value::as_array).into_iter().flatten() {
                if let Some(v) = given.as_str() {
                    lexicon.add(v, IdentifierClass::Names);
                }
            }
        }
        Some("Address") => {
            for key in ["city", "district", "text"] {
                if let Some(v) = text(key) {
                    lexicon.add(v, IdentifierClass::Geographic);
                }
            }
            for line in value.get("line").and_then(Value::as_array).into_iter().flatten() {
                if let Some(v) = line.as_str() {
                    lexicon.add(v, IdentifierClass::Geographic);
                }
            }
            if let Some(zip) = text("postalCode") {
                lexicon.add(zip, IdentifierClass::Geographic);
            }
        }
        Some("ContactPoint") => {
            if let Some(v) = text("value") {
                lexicon.add(v, rules::contact_class(value));
            }
        }
        Some("Identifier") => {
            if let Some(v) = text("value") {
                lexicon.add(v, rules::identifier_class(value));
            }
        }
        Some("Extension") => {
            let url = value.get("url").and_then(Value::as_str).unwrap_or("");
            if rules::NAME_EXTENSIONS.contains(&url)
                && let Some(v) = value.get("valueString").and_then(Value::as_str)
            {
                lexicon.add(v, IdentifierClass::Names);
            }
        }
        _ => {
            if let (Some(class), Some(v)) = (rules::path_class(path), value.as_str()) {
                lexicon.add(v, class);
            }
        }
    }
}

/// Calls `visit(path, type, value)` for every element under `object` (whose elements are
/// rooted at `root`), array items one by one, depth first.
fn each_element(
    definitions: &Definitions,
    root: &str,
    object: &Map<String, Value>,
    visit: &mut dyn FnMut(&str, Option<&str>, &Value),
) {
    for (key, value) in object {
        let Some(child) = definitions.child(root, key) else { continue };
        let child_root = definitions.children_root(child.element, child.type_code);
        let items: &[Value] = match value {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        for item in items {
            visit(child.element.path, child.type_code, item);
            if let Some(inner) = item.as_object() {
                let root = if child.type_code == Some("Resource") {
                    inner.get("resourceType").and_then(Value::as_str).unwrap_or(child_root)
                } else {
                    child_root
                };
                each_element(definitions, root, inner, visit);
            }
        }
    }
}

/// Applies a profile to resources. Shared by the threads of an extract.
pub struct Deidentifier {
    settings: Settings,
    scrubber: Scrubber,
    ninety_or_older: HashSet<String>,
    known_values: usize,
    /// Safe Harbor: a year this old or older says its patient is 90 or more, and goes.
    oldest_year: i64,
}

/// What one resource's walk needs to know.
struct Walk<'a> {
    definitions: &'static Definitions,
    date_rule: DateRule,
    /// The resource's patient is 90 or older (Safe Harbor drops the birth date).
    ninety_or_older: bool,
    removed_birth_date: bool,
    /// How deep in resources the walk is: 0 in the resource itself, more in contained ones
    /// and a Bundle's entries.
    depth: usize,
    report: &'a mut Report,
}

impl Deidentifier {
    /// Starts learning the record's identities under `settings`.
    pub fn learning(settings: Settings) -> Learning {
        Learning { settings, lexicon: Lexicon::default(), ninety_or_older: HashSet::new() }
    }

    pub fn profile(&self) -> Profile {
        self.settings.profile
    }

    /// How many known identity values the text scrubber looks for.
    pub fn known_values(&self) -> usize {
        self.known_values
    }

    /// The id a resource has in this extract.
    pub fn pseudonym(&self, resource_type: &str, id: &str) -> String {
        self.settings.key.pseudonym(resource_type, id)
    }

    /// The resource as it may leave, or `None` when its type never does. Counts what was
    /// removed in `report`.
    pub fn apply(&self, resource: &Value, report: &mut Report) -> Option<Value> {
        report.resources_in += 1;
        let resource_type = resource.get("resourceType").and_then(Value::as_str)?;
        if DROPPED_TYPES.contains(&resource_type) || resource.as_object().is_none() {
            *report.dropped.entry(resource_type.to_string()).or_default() += 1;
            return None;
        }
        let id = resource.get("id").and_then(Value::as_str);
        // Whose dates these are: the resource's own patient (subject, patient, beneficiary),
        // else the one patient it mentions.
        let mentioned = {
            let mut all = fhir::resource::patients_mentioned(resource);
            all.sort_unstable();
            all.dedup();
            all
        };
        let patient = if resource_type == "Patient" {
            id
        } else {
            fhir::resource::patient_reference(resource).and_then(|r| r.strip_prefix("Patient/")).or(
                match mentioned.as_slice() {
                    [only] => Some(*only),
                    _ => None,
                },
            )
        };
        // Shifted by one patient's days, a resource about several others would show the
        // difference between their shifts.
        if self.settings.profile == Profile::DateShift && patient.is_none() && mentioned.len() > 1 {
            *report.dropped.entry(format!("{resource_type} (about several patients)")).or_default() += 1;
            return None;
        }
        let date_rule = match self.settings.profile {
            Profile::SafeHarbor => DateRule::Year { oldest: self.oldest_year },
            // Resources of no patient (staff, organizations) move together by one shift.
            Profile::DateShift => DateRule::Shift(self.settings.key.shift_days(patient.unwrap_or(""))),
        };
        let mut walk = Walk {
            definitions: fhir::definitions(),
            date_rule,
            ninety_or_older: self.settings.profile == Profile::SafeHarbor
                && patient.is_some_and(|p| self.ninety_or_older.contains(p)),
            removed_birth_date: false,
            depth: 0,
            report,
        };
        let mut out = resource.as_object().cloned().unwrap_or_default();
        if !self.object(resource_type, &mut out, &mut walk) {
            // Something it cannot be without (a required element) had to go.
            *walk
                .report
                .dropped
                .entry(format!("{resource_type} (a required element removed)"))
                .or_default() += 1;
            return None;
        }
        if let Some(id) = id {
            out.insert("id".into(), Value::from(self.pseudonym(resource_type, id)));
            walk.report.ids_replaced += 1;
        }
        if walk.removed_birth_date {
            let mut extensions = match out.remove("extension") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            extensions.push(json!({ "url": rules::AGE_90_OR_OLDER, "valueBoolean": true }));
            out.insert("extension".into(), Value::Array(extensions));
        }
        walk.report.resources_out += 1;
        let mut ordered = Map::new();
        ordered.insert("resourceType".into(), Value::from(resource_type));
        for (key, value) in out {
            if key != "resourceType" {
                ordered.insert(key, value);
            }
        }
        Some(Value::Object(ordered))
    }

    /// De-identifies an object's elements in place; `false` when an element the object must
    /// have (minimum cardinality 1) had to be removed, so the object cannot stay either.
    fn object(&self, root: &str, object: &mut Map<String, Value>, walk: &mut Walk<'_>) -> bool {
        let definitions = walk.definitions;
        let mut intact = true;
        for (key, value) in std::mem::take(object) {
            if key == "resourceType" {
                object.insert(key, value);
                continue;
            }
            // `_birthDate` and the like (a primitive's id and extensions: a birth time, a
            // data-absent reason) are not kept: what they say of a value is as identifying
            // as the value, and no rule reads them.
            if key.starts_with('_') {
                continue;
            }
            // Anything the definitions do not know is not known to be harmless.
            let Some(child) = definitions.child(root, &key) else { continue };
            let child_root = definitions.children_root(child.element, child.type_code).to_string();
            let path = child.element.path;
            let kept = match value {
                Value::Array(items) => {
                    let items: Vec<Value> = items
                        .into_iter()
                        .filter_map(|item| self.element(path, child.type_code, &child_root, item, walk))
                        .filter(|item| !is_empty(item))
                        .collect();
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                single => {
                    self.element(path, child.type_code, &child_root, single, walk).filter(|v| !is_empty(v))
                }
            };
            match kept {
                Some(value) => {
                    object.insert(key, value);
                }
                None if child.element.min > 0 => intact = false,
                None => {}
            }
        }
        // An extension left with neither a value nor extensions says nothing (ext-1).
        if root == "Extension" && !object.keys().any(|k| k.starts_with("value") || k == "extension") {
            return false;
        }
        intact
    }

    fn element(
        &self,
        path: &str,
        type_code: Option<&str>,
        child_root: &str,
        value: Value,
        walk: &mut Walk<'_>,
    ) -> Option<Value> {
        if let Some(class) = rules::path_class(path) {
            walk.report.structured(class);
            return None;
        }
        match (path, type_code) {
            (_, Some("Narrative" | "xhtml")) => None,
            // A resource's id is replaced where the resource is (`apply`, a Bundle's entry);
            // a contained resource's is a local name its container refers to by `#id`.
            (_, Some("id")) => Some(value),
            ("Reference.reference", _) => self.reference(value.as_str()?, walk),
            ("Reference.display", _) => {
                walk.report.structured(IdentifierClass::Names);
                None
            }
            (_, Some("HumanName")) => {
                walk.report.structured(IdentifierClass::Names);
                None
            }
            (_, Some("ContactPoint")) => {
                walk.report.structured(rules::contact_class(&value));
                None
            }
            (_, Some("Identifier")) => {
                walk.report.structured(rules::identifier_class(&value));
                None
            }
            (_, Some("Address")) => self.address(&value, walk),
            (_, Some("Attachment")) => self.attachment(value, walk),
            (_, Some(kind @ ("Age" | "Quantity"))) => self.age(kind, path, value, walk),
            (_, Some("Extension")) => {
                let url = value.get("url").and_then(Value::as_str).unwrap_or("");
                if rules::NAME_EXTENSIONS.contains(&url) {
                    walk.report.structured(IdentifierClass::Names);
                    return None;
                }
                let mut value = value;
                let intact = self.object(child_root, value.as_object_mut()?, walk);
                intact.then_some(value)
            }
            (_, Some("uri" | "url" | "oid" | "uuid")) => {
                if rules::kept_uri(path) {
                    Some(value)
                } else {
                    walk.report.structured(IdentifierClass::Url);
                    None
                }
            }
            (_, Some(kind @ ("date" | "dateTime" | "instant"))) => {
                self.date(path, kind, value.as_str()?, walk)
            }
            (_, Some("base64Binary")) => {
                walk.report.structured(IdentifierClass::OtherUnique);
                None
            }
            (_, Some("string" | "markdown")) => {
                let text = value.as_str()?;
                // A code system's words are matched against the patterns only.
                let known = !TERMINOLOGY_TEXT.contains(&path);
                let scrubbed = self
                    .scrubber
                    .scrub(
                        text,
                        walk.date_rule,
                        self.settings.profile == Profile::SafeHarbor,
                        known,
                        walk.report,
                    )
                    .into_owned();
                (!scrubbed.trim().is_empty()).then(|| Value::from(scrubbed))
            }
            (_, Some("Resource")) => {
                let mut value = value;
                let resource_type = value.get("resourceType").and_then(Value::as_str)?.to_string();
                if DROPPED_TYPES.contains(&resource_type.as_str()) {
                    *walk.report.dropped.entry(resource_type).or_default() += 1;
                    return None;
                }
                walk.depth += 1;
                let intact = self.object(&resource_type, value.as_object_mut()?, walk);
                walk.depth -= 1;
                // A Bundle's resources are resources of the record: their ids go too.
                if !path.ends_with(".contained")
                    && let Some(id) = value.get("id").and_then(Value::as_str).map(str::to_string)
                {
                    value["id"] = Value::from(self.pseudonym(&resource_type, &id));
                }
                intact.then_some(value)
            }
            _ => {
                let mut value = value;
                match value.as_object_mut() {
                    Some(inner) => self.object(child_root, inner, walk).then_some(value),
                    None => Some(value),
                }
            }
        }
    }

    /// `Type/id` with the id's pseudonym; a local `#id` as it is. Absolute references lose
    /// their server; anything else (conditional, `urn:`) cannot be kept without its target.
    fn reference(&self, reference: &str, walk: &mut Walk<'_>) -> Option<Value> {
        if reference.starts_with('#') {
            return Some(Value::from(reference));
        }
        // Another server's resource is not this record's: its id would take the pseudonym of
        // a local one and link two people falsely.
        if reference.contains("://") {
            walk.report.structured(IdentifierClass::OtherUnique);
            return None;
        }
        let parts: Vec<&str> = reference.split('/').collect();
        for (i, window) in parts.windows(2).enumerate() {
            let (resource_type, id) = (window[0], window[1]);
            // `Type/id` followed by nothing or by `_history/v`.
            let rest = &parts[i + 2..];
            if i == 0
                && walk.definitions.is_resource_type(resource_type)
                && !id.is_empty()
                && !id.contains('?')
                && (rest.is_empty() || rest.first() == Some(&"_history"))
            {
                return Some(Value::from(format!("{resource_type}/{}", self.pseudonym(resource_type, id))));
            }
        }
        walk.report.structured(IdentifierClass::OtherUnique);
        None
    }

    /// An address cut to its state, country and three-digit ZIP (`000` for the restricted
    /// prefixes).
    fn address(&self, address: &Value, walk: &mut Walk<'_>) -> Option<Value> {
        let mut out = Map::new();
        for key in ["use", "type", "state", "country"] {
            if let Some(v) = address.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        let fine = ["line", "city", "district", "text", "period"].iter().any(|k| address.get(*k).is_some());
        let mut generalized = fine;
        if let Some(zip) = address.get("postalCode").and_then(Value::as_str) {
            let digits: String = zip.chars().filter(char::is_ascii_digit).take(3).collect();
            if digits.len() == 3 {
                let zip3 =
                    if self.settings.restricted_zip3.contains(&digits) { "000".to_string() } else { digits };
                generalized |= zip3 != zip;
                out.insert("postalCode".into(), Value::from(zip3));
            } else {
                generalized = true;
            }
        }
        if generalized {
            walk.report.structured(IdentifierClass::Geographic);
        }
        let kept = ["state", "country", "postalCode"].iter().any(|k| out.contains_key(*k));
        kept.then_some(Value::Object(out))
    }

    fn attachment(&self, value: Value, walk: &mut Walk<'_>) -> Option<Value> {
        let content_type =
            value.get("contentType").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("image/") || content_type.starts_with("video/") {
            walk.report.structured(IdentifierClass::Photo);
            return None;
        }
        let Value::Object(attachment) = value else { return None };
        let mut out = Map::new();
        for (key, item) in attachment {
            match key.as_str() {
                "contentType" | "language" => {
                    out.insert(key, item);
                }
                "data" => {
                    let text = item
                        .as_str()
                        .and_then(fhir::base64_decode)
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .filter(|_| content_type.is_empty() || content_type.starts_with("text/"));
                    match text {
                        Some(text) => {
                            let scrubbed = self.scrubber.scrub(
                                &text,
                                walk.date_rule,
                                self.settings.profile == Profile::SafeHarbor,
                                true,
                                walk.report,
                            );
                            out.insert(key, Value::from(fhir::base64_encode(scrubbed.as_bytes())));
                        }
                        // PDFs, scans, anything not plain text: no rule can read them.
                        None => walk.report.structured(IdentifierClass::OtherUnique),
                    }
                }
                "url" => walk.report.structured(IdentifierClass::Url),
                "title" => {
                    if let Some(text) = item.as_str() {
                        let scrubbed = self.scrubber.scrub(
                            text,
                            walk.date_rule,
                            self.settings.profile == Profile::SafeHarbor,
                            true,
                            walk.report,
                        );
                        out.insert(key, Value::from(scrubbed.into_owned()));
                    }
                }
                "creation" => {
                    if let Some(date) =
                        item.as_str().and_then(|d| self.date("Attachment.creation", "dateTime", d, walk))
                    {
                        out.insert(key, date);
                    }
                }
                // Size and hash would fingerprint the original content.
                _ => {}
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }

    /// Safe Harbor: ages of 90 and over become the one category ">= 90".
    /// Safe Harbor: ages of 90 and over become the one category "90 or more": an `Age` in
    /// any unit of time, or a quantity of years.
    fn age(&self, kind: &str, path: &str, value: Value, walk: &mut Walk<'_>) -> Option<Value> {
        let mut value = value;
        if self.settings.profile != Profile::SafeHarbor {
            return Some(value);
        }
        let amount = value.get("value").and_then(Value::as_f64);
        let unit = value.get("code").or_else(|| value.get("unit")).and_then(Value::as_str).unwrap_or("a");
        let per_year = match (kind, unit) {
            (_, "a" | "yr" | "year" | "years") => 1.0,
            ("Age", "mo" | "month" | "months") => 12.0,
            ("Age", "wk" | "week" | "weeks") => 52.18,
            ("Age", "d" | "day" | "days") => 365.25,
            ("Age", "h" | "hour" | "hours") => 8766.0,
            _ => return Some(value),
        };
        if let (Some(amount), Some(object)) = (amount, value.as_object_mut())
            && amount / per_year >= 90.0
        {
            object.insert("value".into(), Value::from(90));
            object.insert("unit".into(), Value::from("years"));
            object.insert("code".into(), Value::from("a"));
            object.insert("system".into(), Value::from("http://unitsofmeasure.org"));
            // A Range's ends are simple quantities, which carry no comparator.
            if !path.starts_with("Range.") {
                object.insert("comparator".into(), Value::from(">="));
            }
            walk.report.structured(IdentifierClass::Dates);
        }
        Some(value)
    }

    fn date(&self, path: &str, kind: &str, text: &str, walk: &mut Walk<'_>) -> Option<Value> {
        match walk.date_rule {
            DateRule::Year { oldest } => {
                if path == "Patient.birthDate" && walk.ninety_or_older {
                    // The resource itself says so; a Patient inside another only loses it.
                    walk.removed_birth_date |= walk.depth == 0;
                    walk.report.structured(IdentifierClass::Dates);
                    return None;
                }
                // An instant cannot be cut to a year and stay an instant.
                if kind == "instant" {
                    walk.report.structured(IdentifierClass::Dates);
                    return None;
                }
                let year = dates::year_of(text)?;
                // So old a year says its patient is 90 or more.
                if year.parse::<i64>().ok()? <= oldest {
                    walk.report.structured(IdentifierClass::Dates);
                    return None;
                }
                if dates::finer_than_year(text) {
                    walk.report.structured(IdentifierClass::Dates);
                }
                Some(Value::from(year))
            }
            DateRule::Shift(days) => {
                walk.report.structured(IdentifierClass::Dates);
                dates::shift(text, days).map(Value::from)
            }
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty() || map.keys().all(|k| k == "id"),
        _ => false,
    }
}
