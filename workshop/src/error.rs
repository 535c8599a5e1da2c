//! One error type for every command: a sentence for the learner that says
//! what went wrong and, where it can, what to do.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What to say when a file cannot be read or written: the file, and why.
pub fn io(what: impl fmt::Display, error: std::io::Error) -> Error {
    Error(format!("{what}: {error}"))
}
