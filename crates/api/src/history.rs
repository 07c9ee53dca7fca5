//! History at instance, type and system level, newest first, paged by commit sequence.

use fhir::{DateTime, DateTimeKind, IssueType};
use store::{HistoryQuery, HistoryScope, WriteMethod};

use crate::access::Gate;
use crate::headers::{Prefer, etag};
use crate::json_writer::{BundleWriter, Entry, EntryResponse};
use crate::{Api, ApiError, Request, Response, query_pairs};

/// Query parameter carrying the paging cursor (a commit sequence number).
const CURSOR: &str = "_cursor";

impl Api {
    pub(crate) fn history(
        &self,
        request: &Request,
        gate: &Gate,
        scope: HistoryScope,
    ) -> Result<Response, ApiError> {
        let strict = Prefer::parse(request.prefer.as_deref()).strict;
        let mut query = HistoryQuery { count: self.config.default_page_size, ..Default::default() };
        let mut since_text = None;
        for (name, value) in query_pairs(&request.query) {
            match name.as_ref() {
                "_count" => {
                    let count: usize = value.parse().map_err(|_| {
                        ApiError::bad_request(
                            IssueType::Value,
                            format!("_count must be a whole number, got '{value}'"),
                        )
                    })?;
                    query.count = count.min(self.config.max_page_size);
                }
                "_since" => {
                    let since = parse_instant_param("_since", &value)?;
                    query.since = Some(since.lower_bound_millis());
                    since_text = Some(value.into_owned());
                }
                CURSOR => {
                    query.before_seq = Some(value.parse().map_err(|_| {
                        ApiError::bad_request(IssueType::Value, format!("invalid paging cursor '{value}'"))
                    })?);
                }
                "_format" | "_pretty" => {}
                "_at" | "_list" => {
                    return Err(ApiError::bad_request(
                        IssueType::NotSupported,
                        format!("the history parameter {name} is not supported"),
                    ));
                }
                other if strict => {
                    return Err(ApiError::bad_request(
                        IssueType::NotSupported,
                        format!("history does not support the parameter '{other}'"),
                    ));
                }
                _ => {}
            }
        }
        let mut page = self.store.history(&scope, &query)?;
        if let HistoryScope::Instance { resource_type, id } = &scope {
            match self.store.read(resource_type, id)? {
                None if page.total == Some(0) => {
                    return Err(ApiError::not_found(format!("{resource_type}/{id} is not known")));
                }
                Some(current) => self.admit_version(gate, &current)?,
                None => {}
            }
        }
        // Each version is judged on its own content (a resource may have changed hands); a
        // tombstone by the last version that had content.
        let before = page.versions.len();
        page.versions.retain(|version| self.admit_version(gate, version).is_ok());
        let withheld = before - page.versions.len();
        if withheld > 0 {
            page.total = None;
        }

        let path = if request.path.is_empty() { "_history".to_string() } else { request.path.clone() };
        let page_url = |before: Option<i64>| {
            let mut url = format!("{}/{path}?_count={}", request.base, query.count);
            if let Some(since) = &since_text {
                url.push_str("&_since=");
                url.extend(form_urlencoded::byte_serialize(since.as_bytes()));
            }
            if let Some(before) = before {
                url.push_str(&format!("&{CURSOR}={before}"));
            }
            url
        };
        let mut links = vec![("self", page_url(query.before_seq))];
        if let Some(next) = page.next_before_seq {
            links.push(("next", page_url(Some(next))));
        }
        if query.before_seq.is_some() {
            links.push(("first", page_url(None)));
        }
        let mut bundle = BundleWriter::new("history", page.total, &links);
        for version in &page.versions {
            let full_url = format!("{}/{}/{}", request.base, version.resource_type, version.id);
            let instance_url = format!("{}/{}", version.resource_type, version.id);
            let request_url = if version.method == WriteMethod::Create {
                version.resource_type.as_str()
            } else {
                &instance_url
            };
            let status = match version.method {
                WriteMethod::Delete => "204 No Content",
                method if method.created() => "201 Created",
                _ => "200 OK",
            };
            let tag = etag(version.version);
            let last_modified = DateTime::from_epoch_millis(version.last_updated).to_string();
            bundle.entry(&Entry {
                full_url: Some(&full_url),
                search_mode: None,
                resource: version.body.as_deref(),
                request: Some((version.method.http_verb(), request_url)),
                response: Some(EntryResponse {
                    status,
                    etag: Some(&tag),
                    last_modified: Some(&last_modified),
                    ..Default::default()
                }),
            });
        }
        if withheld > 0 && gate.tells_withheld() {
            crate::search::withheld_note(&mut bundle);
        }
        Ok(Response::json(200, bundle.finish()))
    }
}

/// Parses an instant-valued parameter. A `+` in a time-zone offset often arrives decoded as a
/// space (form encoding); it is read back as `+`.
pub(crate) fn parse_instant_param(name: &str, value: &str) -> Result<DateTime, ApiError> {
    let repaired = value.replace(' ', "+");
    DateTime::parse(&repaired, DateTimeKind::DateTime)
        .map_err(|e| ApiError::bad_request(IssueType::Value, format!("{name}: {e}")))
}
