/// Errors of the terminology crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A derived table or source file does not have the expected shape.
    #[error("{0}")]
    Format(String),
    /// A request names something that does not exist (code system, value set, code).
    #[error("{0}")]
    NotFound(String),
    /// A request is malformed or asks for something unsupported.
    #[error("{0}")]
    Invalid(String),
}

impl From<fhir::parameters::InputError> for Error {
    fn from(error: fhir::parameters::InputError) -> Self {
        Error::Invalid(error.0)
    }
}
