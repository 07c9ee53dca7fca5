//! A resource serialized ahead of commit, with a gap for the version and timestamp that only
//! the writer knows. All JSON work happens on the caller's thread; the single writer only
//! splices in two short strings.

use fhir::Resource;
use serde_json::Value;

use crate::index::{IndexEntries, extract};
use crate::{Error, Result};

/// A resource ready to store: `resourceType`, `id` and `meta` are moved to the front (their
/// place in the specification's element order) and the server-owned `meta.versionId` and
/// `meta.lastUpdated` are left out, to be written in at commit.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedResource {
    resource_type: String,
    id: String,
    /// `{"resourceType":"T","id":"I","meta":{"versionId":"`
    head: Vec<u8>,
    /// Everything after the `lastUpdated` value's closing quote.
    tail: Vec<u8>,
    /// The search index rows of this resource.
    index: IndexEntries,
}

impl PreparedResource {
    /// Serializes `resource`, which must carry an id.
    pub fn new(resource: &Resource) -> Result<Self> {
        let resource_type = resource.resource_type().to_string();
        let id = resource.id().ok_or_else(|| Error::MissingId(resource_type.clone()))?.to_string();
        let object = resource.as_object();
        let mut head = Vec::with_capacity(64 + resource_type.len() + id.len());
        head.extend_from_slice(b"{\"resourceType\":");
        write_json(&mut head, &resource_type);
        head.extend_from_slice(b",\"id\":");
        write_json(&mut head, &id);
        head.extend_from_slice(b",\"meta\":{\"versionId\":\"");

        let mut tail = Vec::with_capacity(1024);
        tail.push(b'"');
        if let Some(Value::Object(meta)) = object.get("meta") {
            for (key, value) in meta {
                if matches!(key.as_str(), "versionId" | "lastUpdated" | "_versionId" | "_lastUpdated") {
                    continue;
                }
                tail.push(b',');
                write_json(&mut tail, key);
                tail.push(b':');
                write_json(&mut tail, value);
            }
        }
        tail.push(b'}');
        for (key, value) in object {
            if matches!(key.as_str(), "resourceType" | "id" | "meta") {
                continue;
            }
            tail.push(b',');
            write_json(&mut tail, key);
            tail.push(b':');
            write_json(&mut tail, value);
        }
        tail.push(b'}');
        let index = extract(resource);
        Ok(PreparedResource { resource_type, id, head, tail, index })
    }

    /// The resource type.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The logical id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The search index rows.
    pub fn index(&self) -> &IndexEntries {
        &self.index
    }

    /// The same resource under another id (a conditional update that matched).
    pub fn with_id(&self, id: &str) -> PreparedResource {
        let mut head = Vec::with_capacity(self.head.len() + id.len());
        head.extend_from_slice(b"{\"resourceType\":");
        write_json(&mut head, &self.resource_type);
        head.extend_from_slice(b",\"id\":");
        write_json(&mut head, id);
        head.extend_from_slice(b",\"meta\":{\"versionId\":\"");
        PreparedResource {
            resource_type: self.resource_type.clone(),
            id: id.to_string(),
            head,
            tail: self.tail.clone(),
            index: self.index.clone(),
        }
    }

    /// The stored JSON for a given version and `lastUpdated` instant text.
    pub fn render(&self, version: u64, last_updated: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.head.len() + self.tail.len() + 48 + last_updated.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(version.to_string().as_bytes());
        body.extend_from_slice(b"\",\"lastUpdated\":\"");
        body.extend_from_slice(last_updated.as_bytes());
        body.extend_from_slice(&self.tail);
        body
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing a JSON value or a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_meta_first_and_keeps_other_meta() {
        let resource = Resource::from_value(json!({
            "resourceType": "Patient",
            "active": true,
            "meta": {"versionId": "7", "profile": ["http://x/p"], "lastUpdated": "2001-01-01T00:00:00Z"},
            "id": "p1",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]
        }))
        .unwrap();
        let prepared = PreparedResource::new(&resource).unwrap();
        let body = prepared.render(3, "2026-01-02T03:04:05.678Z");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05.678Z","profile":["http://x/p"]},"active":true,"name":[{"family":"Chalmers","given":["Peter","James"]}]}"#
        );
    }

    #[test]
    fn rendered_json_parses_back_to_the_same_content() {
        // Parsed from text: a Rust float literal would lose the trailing zero before the test.
        let input = fhir::parse_json(
            br#"{"resourceType": "Observation", "id": "o", "status": "final",
                 "valueQuantity": {"value": 1.50, "unit": "mmol/L"}, "note": [{"text": "\"quoted\"\n"}]}"#,
        )
        .unwrap();
        let prepared = PreparedResource::new(&Resource::from_value(input.clone()).unwrap()).unwrap();
        let mut back: Value =
            serde_json::from_slice(&prepared.render(1, "2026-01-01T00:00:00.000Z")).unwrap();
        back.as_object_mut().unwrap().remove("meta");
        assert_eq!(back, input);
        assert!(String::from_utf8(prepared.render(1, "x")).unwrap().contains("1.50"));
    }

    #[test]
    fn requires_an_id() {
        let resource = Resource::from_value(json!({"resourceType": "Patient"})).unwrap();
        assert!(matches!(PreparedResource::new(&resource), Err(Error::MissingId(_))));
    }
}
