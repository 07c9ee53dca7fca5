/// Errors of the coding crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A resource is not one the edits apply to, or is malformed.
    #[error("{0}")]
    Invalid(String),
}
