//! The request headers FHIR gives meaning to: `Prefer`, `If-Match`, `If-None-Match`.

use fhir::IssueType;

use store::Precondition;

use crate::ApiError;

/// What the client wants back from a write (`Prefer: return=...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReturnPreference {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// A parsed `Prefer` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefer {
    /// `None` when the client did not say.
    pub return_preference: Option<ReturnPreference>,
    /// `handling=strict`: unknown search parameters are errors instead of being ignored.
    pub strict: bool,
}

impl Prefer {
    /// Parses `Prefer` (comma- or semicolon-separated tokens; unknown tokens are ignored, as
    /// RFC 7240 asks).
    pub fn parse(header: Option<&str>) -> Prefer {
        let mut prefer = Prefer::default();
        for token in header.unwrap_or("").split([',', ';']).map(str::trim) {
            let (name, value) = token.split_once('=').unwrap_or((token, ""));
            let value = value.trim().trim_matches('"');
            match (name.trim().to_ascii_lowercase().as_str(), value) {
                ("return", "minimal") => prefer.return_preference = Some(ReturnPreference::Minimal),
                ("return", "representation") => {
                    prefer.return_preference = Some(ReturnPreference::Representation)
                }
                ("return", "OperationOutcome") => {
                    prefer.return_preference = Some(ReturnPreference::OperationOutcome)
                }
                ("handling", "strict") => prefer.strict = true,
                ("handling", "lenient") => prefer.strict = false,
                _ => {}
            }
        }
        prefer
    }
}

/// An `If-Match` header: `*`, or one or more versions as ETags (`W/"3"`, `"3"`).
pub fn parse_if_match(header: &str) -> Result<Precondition, ApiError> {
    if header.trim() == "*" {
        return Ok(Precondition::Exists);
    }
    let versions: Option<Vec<u64>> = header.split(',').map(parse_etag).collect();
    match versions {
        Some(versions) if !versions.is_empty() => Ok(Precondition::Versions(versions)),
        _ => Err(ApiError::bad_request(
            IssueType::Value,
            format!("If-Match must be * or versions as W/\"<versionId>\", got '{header}'"),
        )),
    }
}

/// The version of a weak or strong ETag holding a version number.
pub fn parse_etag(header: &str) -> Option<u64> {
    let trimmed = header.trim();
    let inner = trimmed.strip_prefix("W/").unwrap_or(trimmed);
    let inner = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(inner);
    inner.parse().ok()
}

/// The ETag for a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_tokens() {
        assert_eq!(Prefer::parse(None).return_preference, None);
        assert_eq!(Prefer::parse(Some("return=minimal")).return_preference, Some(ReturnPreference::Minimal));
        let both = Prefer::parse(Some("handling=strict, return=OperationOutcome"));
        assert!(both.strict);
        assert_eq!(both.return_preference, Some(ReturnPreference::OperationOutcome));
        assert_eq!(Prefer::parse(Some("respond-async")).return_preference, None);
    }

    #[test]
    fn etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
        assert!(parse_if_match("W/\"\"").is_err());
        assert_eq!(parse_if_match(" * ").unwrap(), Precondition::Exists);
        assert_eq!(parse_if_match("W/\"1\", W/\"2\"").unwrap(), Precondition::Versions(vec![1, 2]));
        assert_eq!(etag(4), "W/\"4\"");
    }
}
