//! [`Error`]: what an operator returns when it cannot handle a record or its
//! config.
//!
//! An error is only a message. What happens to it depends on where it is
//! returned: from `open` it stops the job, from `process` or `add` it turns the
//! one input record into a dead letter (the host names the record's origin, so
//! the message only has to say what was wrong with it).

use std::fmt;

/// An operator error: a message for a person.
///
/// `?` converts serde_json errors, `String`s and `&str`s into it, so most code
/// never names the type:
///
/// ```
/// use sluice_guest::Error;
///
/// fn parse_amount(s: &str) -> Result<f64, Error> {
///     let amount: f64 = s.parse().map_err(|e| format!("bad amount {s:?}: {e}"))?;
///     if amount < 0.0 {
///         return Err("amount is negative".into());
///     }
///     Ok(amount)
/// }
/// assert_eq!(parse_amount("-1").unwrap_err().to_string(), "amount is negative");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Error").field(&self.message).finish()
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(e.to_string())
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(e: std::str::Utf8Error) -> Self {
        Error::new(format!("not UTF-8: {e}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}
