//! Writes Bundles straight to bytes, embedding stored resource JSON as it is: a page of
//! history or search results is never parsed and re-serialized.

use serde::Serialize;

/// `Bundle.entry.response`.
#[derive(Debug, Default)]
pub struct EntryResponse<'a> {
    pub status: &'a str,
    pub location: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    /// Raw JSON of an OperationOutcome.
    pub outcome: Option<&'a [u8]>,
}

/// One `Bundle.entry`.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub full_url: Option<&'a str>,
    /// Raw JSON of the resource.
    pub resource: Option<&'a [u8]>,
    /// `search.mode` (`match`, `include`).
    pub search_mode: Option<&'a str>,
    /// `request.method` and `request.url` (history).
    pub request: Option<(&'a str, &'a str)>,
    pub response: Option<EntryResponse<'a>>,
}

/// A Bundle under construction.
pub struct BundleWriter {
    out: Vec<u8>,
    entries: usize,
}

fn push_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn push_field(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    push_json(out, name);
    out.push(b':');
}

impl BundleWriter {
    /// Starts a Bundle of `bundle_type` with optional `total` and `link`s (relation, url).
    pub fn new(bundle_type: &str, total: Option<u64>, links: &[(&str, String)]) -> Self {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"resourceType\":\"Bundle\",\"id\":");
        push_json(&mut out, &uuid::Uuid::now_v7().to_string());
        out.extend_from_slice(b",\"meta\":{\"lastUpdated\":");
        push_json(&mut out, &fhir::DateTime::now_utc().to_string());
        out.extend_from_slice(b"},\"type\":");
        push_json(&mut out, bundle_type);
        if let Some(total) = total {
            out.extend_from_slice(b",\"total\":");
            out.extend_from_slice(total.to_string().as_bytes());
        }
        if !links.is_empty() {
            out.extend_from_slice(b",\"link\":[");
            for (i, (relation, url)) in links.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"relation\":");
                push_json(&mut out, relation);
                out.extend_from_slice(b",\"url\":");
                push_json(&mut out, url);
                out.push(b'}');
            }
            out.push(b']');
        }
        BundleWriter { out, entries: 0 }
    }

    /// Appends an entry.
    pub fn entry(&mut self, entry: &Entry<'_>) {
        let out = &mut self.out;
        out.extend_from_slice(if self.entries == 0 { b",\"entry\":[{" } else { b",{" });
        self.entries += 1;
        let mut first = true;
        if let Some(full_url) = entry.full_url {
            push_field(out, &mut first, "fullUrl");
            push_json(out, full_url);
        }
        if let Some(resource) = entry.resource {
            push_field(out, &mut first, "resource");
            out.extend_from_slice(resource);
        }
        if let Some(mode) = entry.search_mode {
            push_field(out, &mut first, "search");
            out.extend_from_slice(b"{\"mode\":");
            push_json(out, mode);
            out.push(b'}');
        }
        if let Some((method, url)) = entry.request {
            push_field(out, &mut first, "request");
            out.extend_from_slice(b"{\"method\":");
            push_json(out, method);
            out.extend_from_slice(b",\"url\":");
            push_json(out, url);
            out.push(b'}');
        }
        if let Some(response) = &entry.response {
            push_field(out, &mut first, "response");
            let mut inner_first = true;
            out.push(b'{');
            push_field(out, &mut inner_first, "status");
            push_json(out, response.status);
            for (name, value) in [
                ("location", response.location),
                ("etag", response.etag),
                ("lastModified", response.last_modified),
            ] {
                if let Some(value) = value {
                    push_field(out, &mut inner_first, name);
                    push_json(out, value);
                }
            }
            if let Some(outcome) = response.outcome {
                push_field(out, &mut inner_first, "outcome");
                out.extend_from_slice(outcome);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// Closes the Bundle and returns its JSON.
    pub fn finish(mut self) -> Vec<u8> {
        if self.entries > 0 {
            self.out.push(b']');
        }
        self.out.push(b'}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn writes_valid_bundle_json() {
        let mut bundle = BundleWriter::new("history", Some(2), &[("self", "http://x/fhir/_history".into())]);
        bundle.entry(&Entry {
            full_url: Some("http://x/fhir/Patient/1"),
            resource: Some(br#"{"resourceType":"Patient","id":"1"}"#),
            request: Some(("PUT", "Patient/1")),
            response: Some(EntryResponse { status: "200 OK", etag: Some("W/\"2\""), ..Default::default() }),
            search_mode: None,
        });
        bundle.entry(&Entry { request: Some(("DELETE", "Patient/2")), ..Default::default() });
        let json: Value = serde_json::from_slice(&bundle.finish()).unwrap();
        assert_eq!(json["type"], "history");
        assert_eq!(json["total"], 2);
        assert_eq!(json["entry"][0]["resource"]["id"], "1");
        assert_eq!(json["entry"][0]["response"]["etag"], "W/\"2\"");
        assert_eq!(json["entry"][1]["request"]["method"], "DELETE");
        assert!(json["entry"][1].get("resource").is_none());
    }

    #[test]
    fn empty_bundle_has_no_entry_array() {
        let json: Value =
            serde_json::from_slice(&BundleWriter::new("searchset", Some(0), &[]).finish()).unwrap();
        assert!(json.get("entry").is_none());
        assert!(json.get("link").is_none());
    }
}
